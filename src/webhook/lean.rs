//! The bulky metadata no rule reads: `metadata.managedFields` and the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation. Together they are often half of
//! an object as kube-apiserver sends it, and every pure function would parse, clone and decode
//! them for nothing.
//!
//! - Admission reads objects with [`Lean`], which skips both while parsing. The mutating answer is a
//!   JSON patch computed between the lean object and its mutation, so it never mentions them and
//!   applies unchanged to the full object.
//! - Conversion must hand back metadata untouched, so it [`set_aside`]s them before converting and
//!   [`put_back`]s them into the converted object: the conversion framework copies the rest of
//!   metadata through and only manages its own annotations.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor},
};
use serde_json::{Map, Value};

/// Field of `metadata` that records field ownership (server-side apply).
pub const MANAGED_FIELDS: &str = "managedFields";
/// Annotation `kubectl apply` keeps the whole last applied manifest in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A JSON value read without `metadata.managedFields` and without the last-applied annotation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lean(pub Value);

impl<'de> Deserialize<'de> for Lean {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Level::Object.deserialize(deserializer).map(Lean)
    }
}

/// Where in the object a map is.
#[derive(Clone, Copy)]
enum Level {
    /// The object itself.
    Object,
    /// `metadata`.
    Metadata,
    /// `metadata.annotations`.
    Annotations,
}

impl Level {
    /// What to do with `key` in a map at this level.
    fn child(self, key: &str) -> Child {
        match (self, key) {
            (Self::Object, "metadata") => Child::Lean(Self::Metadata),
            (Self::Metadata, "annotations") => Child::Lean(Self::Annotations),
            (Self::Metadata, MANAGED_FIELDS) | (Self::Annotations, LAST_APPLIED) => Child::Skip,
            _ => Child::Keep,
        }
    }
}

enum Child {
    Keep,
    Skip,
    Lean(Level),
}

impl<'de> DeserializeSeed<'de> for Level {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Level {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.child(&key) {
                Child::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                Child::Keep => {
                    out.insert(key, map.next_value::<Value>()?);
                }
                Child::Lean(level) => {
                    out.insert(key, map.next_value_seed(level)?);
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            out.push(item);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }
}

/// The bulky metadata of one object, set aside during its conversion.
#[derive(Debug, Default)]
pub struct SetAside {
    managed_fields: Option<Value>,
    last_applied: Option<Value>,
}

/// Takes `metadata.managedFields` and the last-applied annotation out of `object`.
pub fn set_aside(object: &mut Value) -> SetAside {
    let Some(Value::Object(metadata)) = object.get_mut("metadata") else {
        return SetAside::default();
    };
    let managed_fields = metadata.remove(MANAGED_FIELDS);
    let last_applied = match metadata.get_mut("annotations") {
        Some(Value::Object(annotations)) => annotations.remove(LAST_APPLIED),
        _ => None,
    };
    SetAside {
        managed_fields,
        last_applied,
    }
}

/// Puts what [`set_aside`] took back into `object` (its conversion).
pub fn put_back(object: &mut Value, aside: SetAside) {
    if aside.managed_fields.is_none() && aside.last_applied.is_none() {
        return;
    }
    let Value::Object(root) = object else { return };
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(metadata) = metadata else { return };
    if let Some(managed_fields) = aside.managed_fields {
        metadata.insert(MANAGED_FIELDS.to_owned(), managed_fields);
    }
    if let Some(last_applied) = aside.last_applied {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(annotations) = annotations {
            annotations.insert(LAST_APPLIED.to_owned(), last_applied);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn full() -> Value {
        json!({
            "apiVersion": "kafka.oso.sh/v1alpha1",
            "kind": "KafkaBackup",
            "metadata": {
                "name": "b",
                "annotations": {LAST_APPLIED: "{\"spec\":{}}\n", "team": "orders"},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "labels": {"managedFields": "stays", LAST_APPLIED: "stays"}
            },
            "spec": {"metadata": {"managedFields": "stays"}, "list": [1, 2.5, null, true, "x"]}
        })
    }

    #[test]
    fn lean_skips_only_the_bulky_metadata() {
        let lean: Lean = serde_json::from_value(full()).unwrap();
        let mut expected = full();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove(MANAGED_FIELDS);
        expected["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(LAST_APPLIED);
        assert_eq!(lean.0, expected);
        let from_text: Lean = serde_json::from_str(&full().to_string()).unwrap();
        assert_eq!(from_text.0, expected);
    }

    #[test]
    fn lean_reads_any_value() {
        for value in [
            json!(null),
            json!(1),
            json!(-1),
            json!(1.5),
            json!("s"),
            json!([{"metadata": 1}]),
            json!({"metadata": 7}),
        ] {
            let lean: Lean = serde_json::from_str(&value.to_string()).unwrap();
            assert_eq!(lean.0, value);
        }
    }

    #[test]
    fn set_aside_and_put_back_restore_the_object() {
        let mut object = full();
        let aside = set_aside(&mut object);
        assert!(object["metadata"].get(MANAGED_FIELDS).is_none());
        assert!(object["metadata"]["annotations"].get(LAST_APPLIED).is_none());
        put_back(&mut object, aside);
        assert_eq!(object, full());

        // Even when the annotations map went away in between.
        let mut object = full();
        let aside = set_aside(&mut object);
        object["metadata"].as_object_mut().unwrap().remove("annotations");
        put_back(&mut object, aside);
        assert_eq!(
            object["metadata"]["annotations"],
            json!({LAST_APPLIED: "{\"spec\":{}}\n"})
        );
    }
}
