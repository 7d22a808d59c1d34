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
//! - `fill`: fields the way back dropped that mean nothing in the other version (`resources` of
//!   a v1alpha1 object, whatever value it has), restored wherever the result lacks them;
//! - `patch`: the spelling as written (a JSON merge patch): values the way back changed, and
//!   fields it dropped that do mean something there, such as a pre-1.0 spelling (`spec.storage`
//!   of a v1alpha1 KafkaRestore, read as `spec.backupRef.storage`). It is applied when the
//!   section it was computed against is unchanged (a digest says so), or when it still says what
//!   the section says after an edit made through the other version: read back, it must mean the
//!   same, and every field it restores must agree with the edited object. Otherwise the edit wins
//!   and the section keeps the spelling of the conversion.
//!
//! Which dropped fields mean something is found by converting each alone: a field whose value
//! (or absence, or another value of its type) changes the converted object is a spelling of
//! something there.

use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

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
    // What the residue is computed against: the typed form of the source (its defaults applied,
    // fields its type does not have left out) with the values as written, so that a value the
    // typed form writes differently (a quantity given as a number) comes back as it was given.
    let mut source_json = encode(&source, kind)?;
    as_written(&mut source_json, &object);
    let target = forward(source)?;
    let mut out = encode(&target, kind)?;
    // Typed roots need metadata to decode; it is replaced with the final metadata below.
    if let Value::Object(map) = &mut out {
        map.insert("metadata".into(), metadata.clone());
    }
    if let Some(Value::Object(preserved)) = residue_for_target {
        for section in SECTIONS {
            if let Some(entry) = preserved.get(section) {
                restore_section::<To, From>(&mut out, section, entry, &source_json, &back);
            }
        }
    }
    // The residue is what the object as written cannot give back: convert the final object
    // (restored fields included) back and keep the difference from the source.
    let written_target = To::deserialize(&out).map_err(|source| ConversionError::Decode {
        kind: kind.into(),
        version: target_version.into(),
        source,
    })?;
    let round_trip = encode(&back(written_target)?, kind)?;
    // An object of the source version holding only the parents of one field, for [`reading`].
    let frame = json!({
        "apiVersion": object.get("apiVersion"),
        "kind": kind,
        "metadata": metadata.clone(),
        "spec": {},
    });
    let mut residue = Map::new();
    for section in SECTIONS {
        let (fill, patch) = diff(source_json.get(section), round_trip.get(section));
        let (fill, patch) = separate_spellings(fill, patch, round_trip.get(section), |at, value| {
            reading::<From, To>(&forward, &frame, section, at, value).is_some_and(|r| !r.is_empty())
        });
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

/// Replaces every value of `typed` with the one `written` gives at the same place, where
/// `written` gives one; fields only `written` has are left out.
fn as_written(typed: &mut Value, written: &Value) {
    match (typed, written) {
        (Value::Object(typed), Value::Object(written)) => {
            for (key, value) in typed.iter_mut() {
                if let Some(given) = written.get(key).filter(|v| !v.is_null()) {
                    as_written(value, given);
                }
            }
        }
        (Value::Array(typed), Value::Array(written)) if typed.len() == written.len() => {
            for (value, given) in typed.iter_mut().zip(written) {
                as_written(value, given);
            }
        }
        (typed, written) => *typed = written.clone(),
    }
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

/// Restores the residue `entry` of one section into `out` (see the module documentation);
/// `source` is the object being converted, `back` its typed mapping from `out`'s version.
fn restore_section<To, From>(
    out: &mut Value,
    section: &str,
    entry: &Value,
    source: &Value,
    back: &impl Fn(To) -> Result<From, ConversionError>,
) where
    To: DeserializeOwned,
    From: Serialize,
{
    let unchanged = entry.get("digest").and_then(Value::as_str) == Some(digest(source.get(section)).as_str());
    let Value::Object(map) = out else { return };
    let mut restored = map.remove(section).unwrap_or(Value::Null);
    if let Some(fill) = entry.get("fill") {
        fill_absent(&mut restored, fill);
    }
    if !restored.is_null() {
        map.insert(section.to_owned(), restored.clone());
    }
    let Some(patch) = entry.get("patch") else {
        return;
    };
    json_patch::merge(&mut restored, patch);
    if unchanged || says_the_same::<To, From>(out, section, &restored, patch, source, back) {
        let Value::Object(map) = out else { return };
        if restored.is_null() {
            map.remove(section);
        } else {
            map.insert(section.to_owned(), restored);
        }
    }
}

/// Whether `candidate`, the section of `out` with the preserved spelling `patch` applied, still
/// says what `source` says after an edit made through `source`'s version: it converts back to
/// what `out` converts back to, and every field `patch` sets reads as what `source` holds.
fn says_the_same<To, From>(
    out: &Value,
    section: &str,
    candidate: &Value,
    patch: &Value,
    source: &Value,
    back: &impl Fn(To) -> Result<From, ConversionError>,
) -> bool
where
    To: DeserializeOwned,
    From: Serialize,
{
    let read = |object: &Value| {
        To::deserialize(object)
            .ok()
            .and_then(|typed| back(typed).ok())
            .and_then(|converted| serde_json::to_value(converted).ok())
            .map(|mut converted| converted.get_mut(section).map(Value::take))
    };
    let mut with_patch = out.clone();
    if let Value::Object(map) = &mut with_patch {
        map.insert(section.to_owned(), candidate.clone());
    }
    let (Some(before), Some(after)) = (read(out), read(&with_patch)) else {
        return false;
    };
    if before != after {
        return false;
    }
    let mut frame = out.clone();
    if let Value::Object(map) = &mut frame {
        map.remove("status");
        map.insert("spec".into(), json!({}));
    }
    let mut set = Vec::new();
    leaves(patch, out.get(section), &mut Vec::new(), &mut set);
    set.iter()
        .filter(|(_, value)| !value.is_null())
        .all(|(at, value)| {
            reading::<To, From>(back, &frame, section, at, value).is_some_and(|fields| {
                fields
                    .iter()
                    .all(|(pointer, value)| source.pointer(pointer).unwrap_or(&Value::Null) == value)
            })
        })
}

/// The fields of the other version that the field `at` (below `section`) with `value` decides:
/// `frame` holding only that field and its parents is converted with `convert`, and compared
/// with the same frame without the field and with other values of its type. `None` when such a
/// frame is not an object of its version (a version with required fields).
fn reading<A, B>(
    convert: &impl Fn(A) -> Result<B, ConversionError>,
    frame: &Value,
    section: &str,
    at: &[String],
    value: &Value,
) -> Option<Vec<(String, Value)>>
where
    A: DeserializeOwned,
    B: Serialize,
{
    let converted = |value: Option<&Value>| {
        let mut object = frame.clone();
        let mut slot = object
            .as_object_mut()?
            .entry(section)
            .or_insert_with(|| json!({}));
        for (i, name) in at.iter().enumerate() {
            if i + 1 == at.len() {
                if let Some(value) = value {
                    slot.as_object_mut()?.insert(name.clone(), value.clone());
                }
            } else {
                slot = slot
                    .as_object_mut()?
                    .entry(name.clone())
                    .or_insert_with(|| json!({}));
            }
        }
        let typed = A::deserialize(&object).ok()?;
        let mut converted = serde_json::to_value(convert(typed).ok()?).ok()?;
        converted.as_object_mut()?.remove("metadata");
        let mut flat = BTreeMap::new();
        flatten(&converted, &mut String::new(), &mut flat);
        Some(flat)
    };
    let given = converted(Some(value))?;
    let others: Vec<BTreeMap<String, Value>> = std::iter::once(converted(None)?)
        .chain(other_values(value).iter().filter_map(|v| converted(Some(v))))
        .collect();
    let decided = given
        .keys()
        .chain(others.iter().flat_map(BTreeMap::keys))
        .filter(|pointer| {
            others
                .iter()
                .any(|other| other.get(*pointer) != given.get(*pointer))
        })
        .map(|pointer| {
            (
                pointer.clone(),
                given.get(pointer).cloned().unwrap_or(Value::Null),
            )
        })
        .collect::<BTreeMap<_, _>>();
    Some(decided.into_iter().collect())
}

/// Other values of the type of `value`, to find what it decides beyond its default.
fn other_values(value: &Value) -> Vec<Value> {
    match value {
        Value::Bool(b) => vec![Value::Bool(!b)],
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => vec![Value::from(i.wrapping_add(1))],
            (None, Some(f)) => vec![json!(f + 1.0)],
            (None, None) => Vec::new(),
        },
        Value::String(s) => vec![Value::String(format!("{s}x"))],
        _ => Vec::new(),
    }
}

/// Every leaf of `value` by JSON pointer (objects are walked, anything else is a leaf; an empty
/// object holds nothing).
fn flatten(value: &Value, at: &mut String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let len = at.len();
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                flatten(child, at, out);
                at.truncate(len);
            }
        }
        _ => {
            out.insert(at.clone(), value.clone());
        }
    }
}

/// The leaves of a residue tree (a fill or a merge patch) laid over `base`: a node is walked into
/// where `base` holds an object at its place, else it is a leaf (a value set or dropped whole).
fn leaves(tree: &Value, base: Option<&Value>, at: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    let Value::Object(map) = tree else { return };
    for (key, value) in map {
        at.push(key.clone());
        let below = base.and_then(|b| b.get(key));
        match (value, below) {
            (Value::Object(_), Some(Value::Object(_))) => leaves(value, below, at, out),
            _ => out.push((at.clone(), value.clone())),
        }
        at.pop();
    }
}

/// Moves the fields of `fill` that `is_spelling` says mean something in the other version into
/// `patch`, where the spelling as written is kept ([`restore_section`] explains why).
fn separate_spellings(
    fill: Option<Value>,
    patch: Option<Value>,
    round_trip: Option<&Value>,
    is_spelling: impl Fn(&[String], &Value) -> bool,
) -> (Option<Value>, Option<Value>) {
    let Some(fill) = fill else {
        return (None, patch);
    };
    let mut dropped = Vec::new();
    leaves(&fill, round_trip, &mut Vec::new(), &mut dropped);
    let mut inert = Value::Null;
    let mut spellings = patch.unwrap_or(Value::Null);
    for (at, value) in dropped {
        let into = if is_spelling(&at, &value) {
            &mut spellings
        } else {
            &mut inert
        };
        set_path(into, &at, value);
    }
    let some = |v: Value| (!v.is_null()).then_some(v);
    (some(inert), some(spellings))
}

/// Sets `value` at `at` below `tree`, creating the objects on the way.
fn set_path(tree: &mut Value, at: &[String], value: Value) {
    let Some((last, parents)) = at.split_last() else {
        return;
    };
    let mut node = tree;
    for name in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map.entry(name.clone()).or_insert(Value::Null);
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
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

    fn restore(spec: Value) -> Value {
        json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaRestore",
               "metadata": {"name": "r", "namespace": "ns"}, "spec": spec})
    }

    const BETA: &str = "kafka.oso.sh/v1beta1";
    const ALPHA: &str = "kafka.oso.sh/v1alpha1";

    #[test]
    fn a_pre_1_0_spelling_comes_back_unless_an_edit_changed_what_it_says() {
        let spoke = restore(json!({"backupId": "b-1", "storage": {"s3": {"bucket": "old"}},
            "kafkaCluster": {"bootstrapServers": ["k:9092"]}, "topics": ["a"],
            "resources": {"limits": {"cpu": "1"}}}));
        let hub = convert(spoke.clone(), BETA).unwrap();
        assert_eq!(hub["spec"]["backupRef"]["storage"]["s3"]["bucket"], "old");
        assert_eq!(convert(hub.clone(), ALPHA).unwrap(), spoke, "unedited: exact");

        // An edit of another field keeps the spelling as written.
        let mut edited = hub.clone();
        edited["spec"]["topics"] = json!(["a", "b"]);
        let down = convert(edited, ALPHA).unwrap();
        let mut expected = spoke.clone();
        expected["spec"]["topics"] = json!(["a", "b"]);
        assert_eq!(down, expected);

        // An edit of the field spelled the old way wins: the v1.0.0 spelling shows it, and the
        // stale old spelling is not restored beside it.
        let mut edited = hub;
        edited["spec"]["backupRef"]["storage"]["s3"]["bucket"] = json!("new");
        let down = convert(edited.clone(), ALPHA).unwrap();
        assert_eq!(down["spec"].get("storage"), None, "{down:#}");
        assert_eq!(down["spec"]["backupRef"]["storage"]["s3"]["bucket"], "new");
        assert_eq!(
            down["spec"]["resources"], spoke["spec"]["resources"],
            "inert fields stay"
        );
        let up = convert(down, BETA).unwrap();
        assert_eq!(up["spec"], edited["spec"]);
    }

    #[test]
    fn a_spelling_that_repeats_a_default_does_not_come_back_against_an_edit() {
        // `rollback.enabled: true` says what the default says; it is still the pre-1.0 spelling
        // of snapshotBeforeRestore.enabled and must not come back beside an edit to false.
        let spoke = restore(
            json!({"backupRef": {"name": "b"}, "kafkaCluster": {"bootstrapServers": ["k:9092"]},
            "rollback": {"enabled": true}}),
        );
        let mut hub = convert(spoke.clone(), BETA).unwrap();
        assert_eq!(convert(hub.clone(), ALPHA).unwrap(), spoke);
        hub["spec"]["snapshotBeforeRestore"]["enabled"] = json!(false);
        let down = convert(hub, ALPHA).unwrap();
        assert_eq!(
            down["spec"]["rollback"],
            json!({"snapshotBeforeRestore": false}),
            "{down:#}"
        );
    }

    #[test]
    fn fields_without_meaning_elsewhere_are_filled_the_others_kept_as_spelling() {
        let spoke = restore(
            json!({"storage": {"s3": {"bucket": "b"}}, "resources": {"limits": {"cpu": "1"}},
            "produceBatchSize": 1000}),
        );
        let hub = convert(spoke, BETA).unwrap();
        let residue = &preserved_fields(&hub)[PRESERVED_FIELDS_ANNOTATION]["spec"];
        assert_eq!(residue["fill"], json!({"resources": {"limits": {"cpu": "1"}}}));
        assert_eq!(residue["patch"]["storage"], json!({"s3": {"bucket": "b"}}));
        assert_eq!(residue["patch"]["produceBatchSize"], json!(1000));
    }

    #[test]
    fn fill_never_overwrites() {
        let mut target = json!({"a": {"b": 1}});
        fill_absent(&mut target, &json!({"a": {"b": 2, "c": 3}, "d": 4}));
        assert_eq!(target, json!({"a": {"b": 1, "c": 3}, "d": 4}));
    }
}
