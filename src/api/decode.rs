//! Reading an object into the type of its version, strictly, with every problem named by its
//! field path: the one decoder of the webhooks, the reconciler and `run -f`.
//!
//! The object is first checked against the OpenAPI schema of its version, the one the CRD
//! publishes (generated from the same types by schemars, so the two never drift apart):
//! - every value outside an enum is an error listing the allowed values (API server reason
//!   `FieldValueNotSupported`), every value of the wrong type an error naming the type
//!   (`FieldValueTypeInvalid`), every missing required field an error (`FieldValueRequired`),
//!   all of them at once;
//! - every field the schema does not have is reported separately, with the nearest known field of
//!   the same object when one is close (`spec.topcis: unknown field; did you mean spec.topics?`):
//!   kubectl's strict field validation refuses them, and the API server drops them otherwise.
//!   What the caller does with them is its policy ([`Decoded::unknown_fields`]).
//!
//! Only then is the object deserialized; what the schema cannot see (a number out of the
//! type's range) fails there, with its path found by `serde_path_to_error`.

use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    COMPAT_VERSION, STORAGE_VERSION, v1alpha1, v1beta1,
    validation::{FieldError, Reason, index, path},
};

/// A decoded object and the fields of it that its schema does not have.
#[derive(Debug)]
pub struct Decoded<T> {
    /// The typed object.
    pub value: T,
    /// One error per unknown field, with a suggestion where one is near.
    pub unknown_fields: Vec<FieldError>,
}

/// A served kind and version, with the function generating the CRD of its type.
type Served = (&'static str, &'static str, fn() -> CustomResourceDefinition);

/// Both versions of each kind.
macro_rules! served {
    ($($kind:ident),*) => {
        [$(
            (stringify!($kind), COMPAT_VERSION, v1alpha1::$kind::crd as fn() -> CustomResourceDefinition),
            (stringify!($kind), STORAGE_VERSION, v1beta1::$kind::crd),
        )*]
    };
}

/// Every served kind and version.
const SERVED: [Served; 10] = served!(
    KafkaBackup,
    KafkaRestore,
    KafkaOffsetReset,
    KafkaOffsetRollback,
    KafkaBackupValidation
);

/// The schemas of [`SERVED`], each generated when first needed.
static SCHEMAS: [OnceLock<Option<Value>>; 10] = [const { OnceLock::new() }; 10];

/// The OpenAPI schema of `kind` in `version` (`v1alpha1`, `v1beta1`), as its CRD publishes it.
pub fn schema(kind: &str, version: &str) -> Option<&'static Value> {
    let i = SERVED.iter().position(|(k, v, _)| *k == kind && *v == version)?;
    SCHEMAS[i]
        .get_or_init(|| {
            let crd = (SERVED[i].2)();
            let schema = crd.spec.versions.into_iter().next()?.schema?.open_api_v3_schema?;
            serde_json::to_value(schema).ok()
        })
        .as_ref()
}

/// Reads `object` as `T`, the type of `kind` in `version`: every value the schema refuses, or
/// else the one deserialization failure, as errors with their field paths.
pub fn decode<T: DeserializeOwned>(
    object: &Value,
    kind: &str,
    version: &str,
) -> Result<Decoded<T>, Vec<FieldError>> {
    let mut findings = Findings::default();
    if let Some(schema) = schema(kind, version) {
        findings.walk(object, schema, "", true);
    }
    if !findings.errors.is_empty() {
        return Err(findings.errors);
    }
    match serde_path_to_error::deserialize::<_, T>(object) {
        Ok(value) => Ok(Decoded {
            value,
            unknown_fields: findings.unknown,
        }),
        Err(error) => Err(vec![deserialize_error(&error)]),
    }
}

/// What the schema walk found.
#[derive(Default)]
struct Findings {
    errors: Vec<FieldError>,
    unknown: Vec<FieldError>,
}

/// The fields every object has beside those of its schema (the API server's own).
const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

impl Findings {
    fn error(&mut self, at: &str, reason: Reason, message: String) {
        self.errors.push(FieldError {
            path: at.to_owned(),
            message,
            value: None,
            reason,
        });
    }

    fn walk(&mut self, value: &Value, schema: &Value, at: &str, root: bool) {
        // A null is an absent field: the API server drops it, serde reads it as None.
        if value.is_null() {
            return;
        }
        if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            if !(value.is_i64() || value.is_u64() || value.is_string()) {
                self.type_error(at, value, "integer or string");
            }
            return;
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.contains(value) {
                let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
                self.error(
                    at,
                    Reason::NotSupported,
                    format!(
                        "Unsupported value: {value}: supported values: {}",
                        listed.join(", ")
                    ),
                );
            }
            return;
        }
        let expected = schema.get("type").and_then(Value::as_str);
        let matches = match expected {
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            // No type (e.g. anyOf): nothing the schema says for sure.
            _ => return,
        };
        if !matches {
            self.type_error(at, value, expected.unwrap_or_default());
            return;
        }
        match value {
            Value::Object(fields) => self.object(fields, schema, at, root),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item, item_schema, &index(at, i), false);
                    }
                }
            }
            _ => {}
        }
    }

    fn object(&mut self, fields: &Map<String, Value>, schema: &Value, at: &str, root: bool) {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if fields.get(name).is_none_or(Value::is_null) {
                    self.error(&path(at, name), Reason::Required, "Required value".into());
                }
            }
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            let preserves = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            for (name, value) in fields {
                match properties.get(name) {
                    Some(property) => self.walk(value, property, &path(at, name), false),
                    None if root && ROOT_FIELDS.contains(&name.as_str()) => {}
                    None if preserves => {}
                    None => self.unknown_field(at, name, properties),
                }
            }
        } else if let Some(values @ Value::Object(_)) = schema.get("additionalProperties") {
            for (key, value) in fields {
                self.walk(value, values, &format!("{at}[{key}]"), false);
            }
        }
    }

    fn type_error(&mut self, at: &str, value: &Value, expected: &str) {
        self.error(
            at,
            Reason::TypeInvalid,
            format!("Invalid value: {value}: must be of type {expected}"),
        );
    }

    fn unknown_field(&mut self, at: &str, name: &str, known: &Map<String, Value>) {
        let message = match nearest(name, known.keys().map(String::as_str)) {
            Some(near) => format!("unknown field; did you mean {}?", path(at, near)),
            None => "unknown field".to_owned(),
        };
        self.unknown.push(FieldError {
            path: path(at, name),
            message,
            value: None,
            reason: Reason::Invalid,
        });
    }
}

/// The known field `unknown` most likely is a typo of: the same name in other case, one within
/// a third of its letters (transpositions count once), or one that contains it (`storage` for
/// `snapshotStorage`; not the reverse: `excludeTopics` is not a typo of `topics`).
fn nearest<'a>(unknown: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let typed = unknown.to_ascii_lowercase();
    known
        .filter_map(|name| {
            let candidate = name.to_ascii_lowercase();
            let distance = strsim::damerau_levenshtein(&typed, &candidate);
            let longest = typed.chars().count().max(candidate.chars().count());
            let close = distance <= (longest / 3).max(1);
            let contained = typed.len() >= 4 && candidate.contains(&typed);
            (close || contained).then_some((distance, name))
        })
        .min()
        .map(|(_, name)| name)
}

/// The error of a failed deserialization, at the path `serde_path_to_error` tracked.
fn deserialize_error(error: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let mut at = String::new();
    for segment in error.path().iter() {
        at = match segment {
            serde_path_to_error::Segment::Seq { index: i } => index(&at, *i),
            serde_path_to_error::Segment::Map { key } => path(&at, key),
            serde_path_to_error::Segment::Enum { variant } => path(&at, variant),
            serde_path_to_error::Segment::Unknown => path(&at, "?"),
        };
    }
    let message = error.inner().to_string();
    // serde names a missing field in its message, at the path of the object lacking it.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return FieldError {
            path: path(&at, field),
            message: "Required value".into(),
            value: None,
            reason: Reason::Required,
        };
    }
    FieldError {
        path: if at.is_empty() { "(root)".into() } else { at },
        message,
        value: None,
        reason: Reason::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn alpha_reset(spec: Value) -> Value {
        json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaOffsetReset",
               "metadata": {"name": "r", "namespace": "ns"}, "spec": spec})
    }

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_unknown_enum_value_is_named_with_the_allowed_values() {
        let object =
            alpha_reset(json!({"strategy": "middle", "kafkaCluster": {"securityProtocol": "TLS13"}}));
        let errors =
            decode::<v1alpha1::KafkaOffsetReset>(&object, "KafkaOffsetReset", "v1alpha1").unwrap_err();
        assert_eq!(
            messages(&errors),
            [
                "spec.kafkaCluster.securityProtocol: Unsupported value: \"TLS13\": supported values: \"PLAINTEXT\", \
                 \"SSL\", \"SASL_PLAINTEXT\", \"SASL_SSL\"",
                "spec.strategy: Unsupported value: \"middle\": supported values: \"earliest\", \"latest\", \
                 \"timestamp\", \"offset\", \"headerBased\", \"fromMapping\"",
            ]
        );
        assert!(errors.iter().all(|e| e.reason == Reason::NotSupported));
    }

    #[test]
    fn wrong_types_and_missing_fields_are_named() {
        let object = alpha_reset(json!({"parallelism": "ten", "topics": "orders"}));
        let errors =
            decode::<v1alpha1::KafkaOffsetReset>(&object, "KafkaOffsetReset", "v1alpha1").unwrap_err();
        assert_eq!(
            messages(&errors),
            [
                "spec.parallelism: Invalid value: \"ten\": must be of type integer",
                "spec.topics: Invalid value: \"orders\": must be of type array",
            ]
        );
        assert!(errors.iter().all(|e| e.reason == Reason::TypeInvalid));
        let object = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
                            "metadata": {"name": "b"}, "spec": {"topics": ["t"]}});
        let errors = decode::<v1beta1::KafkaBackup>(&object, "KafkaBackup", "v1beta1").unwrap_err();
        assert!(
            messages(&errors).contains(&"spec.kafkaCluster: Required value".to_owned()),
            "{errors:?}"
        );
        assert!(errors.iter().all(|e| e.reason == Reason::Required));
    }

    #[test]
    fn unknown_fields_are_reported_with_the_nearest_known_one() {
        let object = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaRestore",
            "metadata": {"name": "r", "labels": {"any": "thing"}},
            "spec": {"topcis": ["a"], "rollback": {"storage": {"pvcName": "p"}}, "zzz": 1,
                     "topicMapping": {"a": "b"}}});
        let decoded = decode::<v1alpha1::KafkaRestore>(&object, "KafkaRestore", "v1alpha1").unwrap();
        assert_eq!(
            messages(&decoded.unknown_fields),
            [
                "spec.rollback.storage: unknown field; did you mean spec.rollback.snapshotStorage?",
                "spec.topcis: unknown field; did you mean spec.topics?",
                "spec.zzz: unknown field",
            ]
        );
        // Map keys are data, not fields; metadata is the API server's.
        let known = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaRestore",
            "metadata": {"name": "r"}, "spec": {"topicMapping": {"anything-goes": "b"}}});
        let decoded = decode::<v1alpha1::KafkaRestore>(&known, "KafkaRestore", "v1alpha1").unwrap();
        assert!(decoded.unknown_fields.is_empty());
    }

    #[test]
    fn what_the_schema_cannot_see_fails_with_its_path() {
        // In range for the schema's int32 format only as far as JSON Schema checks it: serde
        // refuses a value beyond i32.
        let object = alpha_reset(json!({"parallelism": 99_999_999_999_i64}));
        let errors =
            decode::<v1alpha1::KafkaOffsetReset>(&object, "KafkaOffsetReset", "v1alpha1").unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.parallelism");
        assert!(errors[0].message.contains("99999999999"), "{errors:?}");
    }

    #[test]
    fn suggestions_are_near_or_contain_the_typo() {
        let known = ["topics", "topicMapping", "snapshotStorage", "enabled"];
        assert_eq!(nearest("topcis", known.into_iter()), Some("topics"));
        assert_eq!(nearest("Topics", known.into_iter()), Some("topics"));
        assert_eq!(nearest("storage", known.into_iter()), Some("snapshotStorage"));
        assert_eq!(nearest("bucket", known.into_iter()), None);
        assert_eq!(nearest("excludeTopics", known.into_iter()), None);
    }

    #[test]
    fn the_schemas_are_the_published_ones() {
        for crd in crate::api::crds().unwrap() {
            for version in crd.spec.versions {
                let published =
                    serde_json::to_value(version.schema.and_then(|s| s.open_api_v3_schema)).unwrap();
                assert_eq!(schema(&crd.spec.names.kind, &version.name), Some(&published));
            }
        }
    }
}
