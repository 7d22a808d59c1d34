//! Admission, as pure functions: judge ([`validate`]) and complete ([`mutate`]) an object of any
//! kind and version. The webhooks, the reconciler and `run -f` all call these.
//!
//! Objects are read with [`crate::api::decode`]: a value of the wrong type or outside an enum,
//! a missing required field, refuse the object with its field path (and the allowed values);
//! fields the schema does not have are listed in [`Verdict::unknown_fields`].
//!
//! Rules are written once, on the hub (v1beta1). A v1alpha1 object is first checked for what only
//! its spellings can get wrong ([`Admit::validate_spoke`]: two spellings of one field, seconds
//! passed as milliseconds, settings v1beta1 has no meaning for), then converted and judged as
//! v1beta1, with the error paths translated back to the v1alpha1 spelling.
//!
//! The mutation never rewrites, moves or removes what the object says: it only adds defaults that
//! are absent, and only those whose presence means exactly what their absence means, whatever
//! else the spec says (so a default left behind by `kubectl apply` can never change what a later
//! file means). The pre-1.0 spellings and the v1.0.0 migrations that change a value (a 5-field
//! cron, epoch-millisecond times, renamed fields and enum values) are read by the v1alpha1 ->
//! v1beta1 conversion, which is what everything that executes reads; converting back gives the
//! spelling as written. The mutation only tells the user, in a warning, what such a spelling
//! means in v1.0.0 terms. This keeps apply's bookkeeping (the last-applied annotation of
//! client-side apply, the managed fields of server-side apply) in step with the object.

use serde_json::Value;

use super::{
    COMPAT_VERSION, GROUP, STORAGE_VERSION,
    conversion::{ConversionError, Hub},
    decode::{self, Decoded},
    v1beta1,
    validation::{FieldError, Verdict},
};

/// What a kind adds to its conversion to be admitted.
pub trait Admit: Hub {
    /// Spec fields that may still change once the operation has started (phase past Pending).
    const MUTABLE_WHILE_STARTED: &'static [&'static str] = &[];

    /// The v1alpha1 path of a v1beta1 field path, for messages on v1alpha1 objects.
    fn spoke_path(hub_path: &str) -> String {
        hub_path.to_owned()
    }

    /// Checks only a v1alpha1 object can fail: conflicting spellings of one field, values that have
    /// no v1beta1 meaning, epoch seconds passed as milliseconds.
    fn validate_spoke(spoke: &Self::Spoke, verdict: &mut Verdict);

    /// Makes absent defaults explicit and explains the pre-1.0 spellings and v1.0.0 migrations
    /// the object relies on, one warning sentence each. Only absent fields may be set (anything
    /// else it changes is not applied), and only to values that mean what their absence means.
    fn mutate_spoke(spoke: &mut Self::Spoke, warnings: &mut Vec<String>);

    /// Every rule on the hub type.
    fn validate_hub(hub: &Self, verdict: &mut Verdict);
}

/// Why an object could not be judged at all.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// apiVersion or kind is missing or names another group.
    #[error("{0}")]
    Malformed(String),
    /// Not one of the five kinds.
    #[error(
        "kind {0} is not served by this webhook; it handles {GROUP} KafkaBackup, KafkaRestore, KafkaOffsetReset, KafkaOffsetRollback and KafkaBackupValidation"
    )]
    UnknownKind(String),
    /// Not a served version.
    #[error("version {0} is not served; use {COMPAT_VERSION} or {STORAGE_VERSION}")]
    UnknownVersion(String),
    /// The object does not have the shape of its version.
    #[error("{kind} {version} cannot be read: {}", joined(errors))]
    Decode {
        /// The kind.
        kind: String,
        /// The version.
        version: String,
        /// Every field at fault.
        errors: Vec<FieldError>,
    },
}

fn joined(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// An object completed by [`mutate`], with the warnings that explain each change.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    /// The object after mutation.
    pub object: Value,
    /// One sentence per change.
    pub warnings: Vec<String>,
}

enum Version {
    Alpha,
    Beta,
}

fn identify(object: &Value) -> Result<(String, Version), AdmissionError> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| AdmissionError::Malformed("the object has no kind".into()))?;
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| AdmissionError::Malformed(format!("the {kind} has no apiVersion")))?;
    let version = api_version
        .strip_prefix(GROUP)
        .and_then(|v| v.strip_prefix('/'))
        .ok_or_else(|| {
            AdmissionError::Malformed(format!("apiVersion {api_version} is not in group {GROUP}"))
        })?;
    let version = match version {
        COMPAT_VERSION => Version::Alpha,
        STORAGE_VERSION => Version::Beta,
        other => return Err(AdmissionError::UnknownVersion(other.into())),
    };
    Ok((kind.to_owned(), version))
}

macro_rules! dispatch {
    ($kind:expr, $function:ident, $($arg:expr),*) => {
        match $kind.as_str() {
            "KafkaBackup" => $function::<v1beta1::KafkaBackup>($($arg),*),
            "KafkaRestore" => $function::<v1beta1::KafkaRestore>($($arg),*),
            "KafkaOffsetReset" => $function::<v1beta1::KafkaOffsetReset>($($arg),*),
            "KafkaOffsetRollback" => $function::<v1beta1::KafkaOffsetRollback>($($arg),*),
            "KafkaBackupValidation" => $function::<v1beta1::KafkaBackupValidation>($($arg),*),
            other => Err(AdmissionError::UnknownKind(other.to_owned())),
        }
    };
}

/// Judges an object (and, on UPDATE, the change from `old`): every error and warning.
pub fn validate(object: &Value, old: Option<&Value>) -> Result<Verdict, AdmissionError> {
    let (kind, version) = identify(object)?;
    dispatch!(kind, validate_kind, object, old, &version)
}

/// Completes an object: migrations, v1.0.0 spellings, explicit defaults.
pub fn mutate(object: &Value) -> Result<Mutation, AdmissionError> {
    let (kind, version) = identify(object)?;
    dispatch!(kind, mutate_kind, object, &version)
}

fn decode<T: serde::de::DeserializeOwned>(
    object: &Value,
    kind: &str,
    version: &str,
) -> Result<Decoded<T>, AdmissionError> {
    decode::decode(object, kind, version).map_err(|errors| AdmissionError::Decode {
        kind: kind.into(),
        version: version.into(),
        errors,
    })
}

fn validate_kind<H: Admit>(
    object: &Value,
    old: Option<&Value>,
    version: &Version,
) -> Result<Verdict, AdmissionError> {
    let mut verdict = Verdict::default();
    match version {
        Version::Alpha => {
            let Decoded {
                value: spoke,
                unknown_fields,
            } = decode::<H::Spoke>(object, H::KIND, COMPAT_VERSION)?;
            verdict.unknown_fields = unknown_fields;
            H::validate_spoke(&spoke, &mut verdict);
            match H::from_spoke(spoke) {
                Ok(hub) => {
                    let mut on_hub = Verdict::default();
                    H::validate_hub(&hub, &mut on_hub);
                    let on_hub = on_hub.map_paths(H::spoke_path);
                    merge(&mut verdict, on_hub);
                }
                Err(ConversionError::Field { field, reason, .. }) => verdict.missing(field, reason),
                Err(other) => verdict.missing("spec", other.to_string()),
            }
        }
        Version::Beta => {
            let Decoded {
                value: hub,
                unknown_fields,
            } = decode::<H>(object, H::KIND, STORAGE_VERSION)?;
            verdict.unknown_fields = unknown_fields;
            H::validate_hub(&hub, &mut verdict);
        }
    }
    if let Some(old) = old {
        immutable_once_started::<H>(object, old, &mut verdict);
    }
    verdict.errors.dedup();
    verdict.warnings.dedup();
    Ok(verdict)
}

fn merge(into: &mut Verdict, other: Verdict) {
    for error in other.errors {
        if !into
            .errors
            .iter()
            .any(|e| e.path == error.path && e.message == error.message)
        {
            into.errors.push(error);
        }
    }
    into.warnings.extend(other.warnings);
}

/// Once an operation has started, its spec is fixed: a changed spec would describe something other
/// than what ran. Only the kind's [`Admit::MUTABLE_WHILE_STARTED`] fields may change.
fn immutable_once_started<H: Admit>(object: &Value, old: &Value, verdict: &mut Verdict) {
    let phase = old
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    // A plan waiting for approval has changed nothing: editing the spec asks for a new plan.
    if phase == "Pending" || phase == "PendingApproval" {
        return;
    }
    let strip = |value: &Value| {
        let mut spec = value.get("spec").cloned().unwrap_or(Value::Null);
        if let Value::Object(map) = &mut spec {
            for field in H::MUTABLE_WHILE_STARTED {
                map.remove(*field);
            }
        }
        spec
    };
    if strip(object) != strip(old) {
        let allowed = if H::MUTABLE_WHILE_STARTED.is_empty() {
            "no field may change".to_owned()
        } else {
            format!("only {} may change", H::MUTABLE_WHILE_STARTED.join(", "))
        };
        verdict.missing(
            "spec",
            format!(
                "is immutable once the {} has started (phase {phase}): {allowed}; delete it and create a new one to run again",
                H::KIND
            ),
        );
    }
}

fn mutate_kind<H: Admit>(object: &Value, version: &Version) -> Result<Mutation, AdmissionError> {
    let mut warnings = Vec::new();
    let completed = match version {
        Version::Alpha => {
            let mut spoke = decode::<H::Spoke>(object, H::KIND, COMPAT_VERSION)?.value;
            H::mutate_spoke(&mut spoke, &mut warnings);
            spec_of(&spoke)
        }
        // v1beta1 defaults are schema defaults; those the API server has not filled in yet (a
        // request that bypassed it) are what the typed form adds.
        Version::Beta => spec_of(&decode::<H>(object, H::KIND, STORAGE_VERSION)?.value),
    };
    let mut mutated = object.clone();
    // Only fields absent from the spec are added: metadata, status and every value the object
    // gives stay as received.
    if let (Value::Object(map), Some(completed)) = (&mut mutated, completed) {
        add_absent(map.entry("spec").or_insert(Value::Null), &completed);
    }
    Ok(Mutation {
        object: mutated,
        warnings,
    })
}

/// Adds to `target` every field of `source` it lacks (a null counts as absent), recursing into
/// objects, and into lists of the same length element by element; nothing `target` has changes.
fn add_absent(target: &mut Value, source: &Value) {
    match (target, source) {
        (target @ Value::Null, _) => *target = source.clone(),
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source.iter().filter(|(_, value)| !value.is_null()) {
                add_absent(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (Value::Array(target), Value::Array(source)) if target.len() == source.len() => {
            for (item, value) in target.iter_mut().zip(source) {
                add_absent(item, value);
            }
        }
        _ => {}
    }
}

fn spec_of<T: serde::Serialize>(resource: &T) -> Option<Value> {
    serde_json::to_value(resource)
        .ok()
        .and_then(|mut v| v.get_mut("spec").map(Value::take))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_absent_fields_are_added() {
        let mut target = json!({"a": 1, "b": {"c": "x"}, "d": [{"e": 1}], "f": null, "g": [1, 2]});
        add_absent(
            &mut target,
            &json!({"a": 2, "b": {"c": "y", "h": true}, "d": [{"e": 2, "i": 3}], "f": 4, "g": [3], "j": {}}),
        );
        assert_eq!(
            target,
            json!({"a": 1, "b": {"c": "x", "h": true}, "d": [{"e": 1, "i": 3}], "f": 4, "g": [1, 2], "j": {}})
        );
    }
}
