//! Conversion between v1alpha1 and v1beta1, hub (v1beta1) and spoke (v1alpha1), lossless.
//!
//! Each kind implements [`Hub`] on its v1beta1 root type: a typed mapping of what the two versions
//! share. Whatever that mapping cannot carry travels in an annotation and comes back on the way
//! back, so a round trip is exact:
//! - converting to v1beta1, the v1alpha1 fields it cannot represent go into
//!   [`PRESERVED_FIELDS_ANNOTATION`] (`kafka.oso.sh/v1alpha1-fields`);
//! - converting to v1alpha1, the v1beta1 fields it cannot represent go into
//!   [`HUB_FIELDS_ANNOTATION`] (`kafka.oso.sh/v1beta1-fields`).
//!
//! The residue is computed, not hand-listed: the object is converted there and back with the typed
//! mapping and the difference is kept, per section (`spec`, `status`), as
//! - `fill`: fields the way back dropped, restored wherever the result lacks them;
//! - `patch`: values the way back changed (a JSON merge patch), applied only while the section it
//!   was computed against is unchanged (a digest guards it), so an edit made through the other
//!   version is never overwritten by stale preserved values.

use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use super::{COMPAT_VERSION, GROUP, PRESERVED_FIELDS_ANNOTATION, STORAGE_VERSION, v1beta1};

mod backup;
mod backup_validation;
pub(crate) mod common;
mod offset_reset;
mod offset_rollback;
mod restore;

/// Annotation on v1alpha1 objects keeping the v1beta1 fields v1alpha1 cannot represent.
pub const HUB_FIELDS_ANNOTATION: &str = "kafka.oso.sh/v1beta1-fields";

const SECTIONS: [&str; 2] = ["spec", "status"];

/// Failures of conversion, each naming the object and what could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    /// The object lacks apiVersion or kind, or names another group.
    #[error("failed to convert object: {0}")]
    Malformed(String),
    /// The kind is not one of the five.
    #[error("failed to convert {kind}: not a kind of {GROUP}")]
    UnknownKind {
        /// The kind found.
        kind: String,
    },
    /// The version is not served.
    #[error(
        "failed to convert {kind} to or from {version}: versions are {COMPAT_VERSION} and {STORAGE_VERSION}"
    )]
    UnknownVersion {
        /// The kind.
        kind: String,
        /// The version asked for or found.
        version: String,
    },
    /// The object does not match its version's type.
    #[error("failed to read {kind} {version}: {source}")]
    Decode {
        /// The kind.
        kind: String,
        /// Its version.
        version: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A field has no representation in the other version and no way to keep it.
    #[error("failed to convert {kind}: {field}: {reason}")]
    Field {
        /// The kind.
        kind: &'static str,
        /// Path of the field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The preserved-fields annotation is not what this operator writes.
    #[error("failed to read annotation {annotation}: {source}")]
    Annotation {
        /// The annotation.
        annotation: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Serializing a converted object failed.
    #[error("failed to encode converted {kind}: {source}")]
    Encode {
        /// The kind.
        kind: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The typed mapping between a kind's hub (v1beta1, `Self`) and its spoke (v1alpha1).
///
/// Both functions map spec and status; metadata is handled by the framework. They may drop what the
/// other version cannot express (the residue keeps it) but must not invent values the framework
/// cannot undo: the round-trip tests hold every kind to that.
pub trait Hub: Serialize + DeserializeOwned + Clone {
    /// The v1alpha1 root type.
    type Spoke: Serialize + DeserializeOwned + Clone;
    /// The kind's name.
    const KIND: &'static str;
    /// v1alpha1 -> v1beta1.
    fn from_spoke(spoke: Self::Spoke) -> Result<Self, ConversionError>;
    /// v1beta1 -> v1alpha1.
    fn to_spoke(self) -> Result<Self::Spoke, ConversionError>;
}

/// Converts one object of any kind of the group into `desired_api_version`
/// (`kafka.oso.sh/v1alpha1` or `kafka.oso.sh/v1beta1`); an object already there is returned as is.
pub fn convert(object: Value, desired_api_version: &str) -> Result<Value, ConversionError> {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| ConversionError::Malformed("kind is missing".into()))?
        .to_owned();
    let current = version_of(&object, &kind)?;
    let desired = desired_api_version
        .strip_prefix(GROUP)
        .and_then(|v| v.strip_prefix('/'))
        .ok_or_else(|| ConversionError::UnknownVersion {
            kind: kind.clone(),
            version: desired_api_version.into(),
        })?;
    for version in [current.as_str(), desired] {
        if version != COMPAT_VERSION && version != STORAGE_VERSION {
            return Err(ConversionError::UnknownVersion {
                kind: kind.clone(),
                version: version.into(),
            });
        }
    }
    if current == desired {
        return Ok(object);
    }
    let up = desired == STORAGE_VERSION;
    match kind.as_str() {
        "KafkaBackup" => convert_kind::<v1beta1::KafkaBackup>(object, up),
        "KafkaRestore" => convert_kind::<v1beta1::KafkaRestore>(object, up),
        "KafkaOffsetReset" => convert_kind::<v1beta1::KafkaOffsetReset>(object, up),
        "KafkaOffsetRollback" => convert_kind::<v1beta1::KafkaOffsetRollback>(object, up),
        "KafkaBackupValidation" => convert_kind::<v1beta1::KafkaBackupValidation>(object, up),
        _ => Err(ConversionError::UnknownKind { kind }),
    }
}

fn version_of(object: &Value, kind: &str) -> Result<String, ConversionError> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| ConversionError::Malformed(format!("{kind} has no apiVersion")))?;
    api_version
        .strip_prefix(GROUP)
        .and_then(|v| v.strip_prefix('/'))
        .map(str::to_owned)
        .ok_or_else(|| {
            ConversionError::Malformed(format!("{kind} has apiVersion {api_version}, not {GROUP}/..."))
        })
}

/// Converts one object of kind `H` up to the hub (`up`) or down to the spoke.
pub fn convert_kind<H: Hub>(object: Value, up: bool) -> Result<Value, ConversionError> {
    if up {
        convert_typed::<H::Spoke, H>(
            object,
            |spoke| H::from_spoke(spoke),
            |hub| hub.to_spoke(),
            H::KIND,
            STORAGE_VERSION,
            [HUB_FIELDS_ANNOTATION, PRESERVED_FIELDS_ANNOTATION],
        )
    } else {
        convert_typed::<H, H::Spoke>(
            object,
            |hub| hub.to_spoke(),
            |spoke| H::from_spoke(spoke),
            H::KIND,
            COMPAT_VERSION,
            [PRESERVED_FIELDS_ANNOTATION, HUB_FIELDS_ANNOTATION],
        )
    }
}

/// `[consumed, written]`: the annotation holding residue for the target version, and the one that
/// receives the source's residue.
fn convert_typed<From, To>(
    mut object: Value,
    forward: impl Fn(From) -> Result<To, ConversionError>,
    back: impl Fn(To) -> Result<From, ConversionError>,
    kind: &str,
    target_version: &str,
    [consumed, written]: [&'static str; 2],
) -> Result<Value, ConversionError>
where
    From: Serialize + DeserializeOwned + Clone,
    To: Serialize + DeserializeOwned + Clone,
{
    let source_version = version_of(&object, kind)?;
    let mut metadata = object
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let residue_for_target = take_annotation(&mut metadata, consumed)?;
    // A residue for the source version would be stale once the object is in the target version.
    drop(take_annotation(&mut metadata, written));
    // The typed mapping sees the object without either annotation: they are the framework's.
    if let Some(Value::Object(annotations)) = object.pointer_mut("/metadata/annotations") {
        annotations.remove(consumed);
        annotations.remove(written);
    }
    let decode_error = |source| ConversionError::Decode {
        kind: kind.into(),
        version: source_version.clone(),
        source,
    };
    let source = From::deserialize(&object).map_err(decode_error)?;
    // Canonical form of the source (serde defaults applied), what the residue is computed against.
    let source_json = encode(&source, kind)?;
    let target = forward(source)?;
    let mut out = encode(&target, kind)?;
    if let Some(Value::Object(preserved)) = residue_for_target {
        for section in SECTIONS {
            if let Some(entry) = preserved.get(section) {
                restore_section(&mut out, section, entry, source_json.get(section));
            }
        }
    }
    // The residue is what the object as written cannot give back: convert the final object
    // (restored fields included) back and keep the difference from the source.
    // Typed roots need metadata to decode; it is replaced with the final metadata below.
    if let Value::Object(map) = &mut out {
        map.insert("metadata".into(), metadata.clone());
    }
    let written_target = To::deserialize(&out).map_err(|source| ConversionError::Decode {
        kind: kind.into(),
        version: target_version.into(),
        source,
    })?;
    let round_trip = encode(&back(written_target)?, kind)?;
    let mut residue = Map::new();
    for section in SECTIONS {
        let (fill, patch) = diff(source_json.get(section), round_trip.get(section));
        if fill.is_none() && patch.is_none() {
            continue;
        }
        let mut entry = Map::new();
        // The section as written: what the next conversion reads back as its source.
        entry.insert("digest".into(), Value::String(digest(out.get(section))));
        if let Some(fill) = fill {
            entry.insert("fill".into(), fill);
        }
        if let Some(patch) = patch {
            entry.insert("patch".into(), patch);
        }
        residue.insert(section.into(), Value::Object(entry));
    }
    if !residue.is_empty() {
        set_annotation(&mut metadata, written, Value::Object(residue).to_string());
    }
    if let Value::Object(map) = &mut out {
        map.insert(
            "apiVersion".into(),
            Value::String(format!("{GROUP}/{target_version}")),
        );
        map.insert("kind".into(), Value::String(kind.into()));
        map.insert("metadata".into(), metadata);
    }
    Ok(out)
}

fn encode<T: Serialize>(value: &T, kind: &str) -> Result<Value, ConversionError> {
    let mut json = serde_json::to_value(value).map_err(|source| ConversionError::Encode {
        kind: kind.into(),
        source,
    })?;
    if let Value::Object(map) = &mut json {
        map.remove("metadata");
    }
    Ok(json)
}

fn restore_section(out: &mut Value, section: &str, entry: &Value, source: Option<&Value>) {
    let Value::Object(map) = out else { return };
    let unchanged = entry.get("digest").and_then(Value::as_str) == Some(digest(source).as_str());
    let target = map.entry(section.to_owned()).or_insert(Value::Null);
    if let Some(fill) = entry.get("fill") {
        fill_absent(target, fill);
    }
    if unchanged && let Some(patch) = entry.get("patch") {
        json_patch::merge(target, patch);
    }
    if target.is_null() {
        map.remove(section);
    }
}

/// Splits the difference `original` - `round_trip` into fields to fill (absent after the round
/// trip) and a merge patch for the rest (changed values, `null` for fields the round trip added).
fn diff(original: Option<&Value>, round_trip: Option<&Value>) -> (Option<Value>, Option<Value>) {
    match (original, round_trip) {
        (None, None) => (None, None),
        (Some(original), None) => (Some(original.clone()), None),
        (None, Some(_)) => (None, Some(Value::Null)),
        (Some(a), Some(b)) if a == b => (None, None),
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut fill = Map::new();
            let mut patch = Map::new();
            for (key, value) in a {
                let (f, p) = diff(Some(value), b.get(key));
                if let Some(f) = f {
                    fill.insert(key.clone(), f);
                }
                if let Some(p) = p {
                    patch.insert(key.clone(), p);
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            let wrap = |m: Map<String, Value>| (!m.is_empty()).then_some(Value::Object(m));
            (wrap(fill), wrap(patch))
        }
        (Some(a), Some(_)) => (None, Some(a.clone())),
    }
}

/// Adds every field of `fill` that `target` lacks, recursing into objects present on both sides.
fn fill_absent(target: &mut Value, fill: &Value) {
    let Value::Object(fill) = fill else { return };
    if target.is_null() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else { return };
    for (key, value) in fill {
        match target.get_mut(key) {
            None | Some(Value::Null) => {
                target.insert(key.clone(), value.clone());
            }
            Some(existing @ Value::Object(_)) => fill_absent(existing, value),
            Some(_) => {}
        }
    }
}

fn digest(section: Option<&Value>) -> String {
    let bytes = section.map(Value::to_string).unwrap_or_default();
    let hash = ring::digest::digest(&ring::digest::SHA256, bytes.as_bytes());
    hash.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect()
}

fn take_annotation(metadata: &mut Value, name: &'static str) -> Result<Option<Value>, ConversionError> {
    let Some(Value::Object(annotations)) = metadata.get_mut("annotations") else {
        return Ok(None);
    };
    let Some(raw) = annotations.remove(name) else {
        return Ok(None);
    };
    if annotations.is_empty()
        && let Value::Object(meta) = metadata
    {
        meta.remove("annotations");
    }
    let text = raw.as_str().unwrap_or_default();
    serde_json::from_str(text)
        .map(Some)
        .map_err(|source| ConversionError::Annotation {
            annotation: name,
            source,
        })
}

fn set_annotation(metadata: &mut Value, name: &str, value: String) {
    if let Value::Object(meta) = metadata {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(annotations) = annotations {
            annotations.insert(name.into(), Value::String(value));
        }
    }
}

/// The fields a conversion kept in annotations, by section, for tests and diagnostics.
pub fn preserved_fields(object: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for name in [PRESERVED_FIELDS_ANNOTATION, HUB_FIELDS_ANNOTATION] {
        if let Some(raw) = object.pointer(&format!("/metadata/annotations/{}", name.replace('/', "~1")))
            && let Some(value) = raw.as_str().and_then(|s| serde_json::from_str(s).ok())
        {
            out.insert(name.to_owned(), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn diff_splits_dropped_fields_from_changed_ones() {
        let original = json!({"a": 1, "b": {"c": 2, "d": [1]}, "e": "x"});
        let round_trip = json!({"a": 1, "b": {"d": [2]}, "e": "y", "f": true});
        let (fill, patch) = diff(Some(&original), Some(&round_trip));
        assert_eq!(fill, Some(json!({"b": {"c": 2}})));
        assert_eq!(patch, Some(json!({"b": {"d": [1]}, "e": "x", "f": null})));

        let mut restored = round_trip.clone();
        fill_absent(&mut restored, &fill.unwrap());
        json_patch::merge(&mut restored, &patch.unwrap());
        assert_eq!(restored, original);
    }

    #[test]
    fn fill_never_overwrites() {
        let mut target = json!({"a": {"b": 1}});
        fill_absent(&mut target, &json!({"a": {"b": 2, "c": 3}, "d": 4}));
        assert_eq!(target, json!({"a": {"b": 1, "c": 3}, "d": 4}));
    }
}
