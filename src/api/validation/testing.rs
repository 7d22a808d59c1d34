//! Helpers of the admission unit tests of every kind.

use serde_json::{Value, json};

use crate::api::admission::{mutate, validate};

/// A v1alpha1 object of `kind` with `spec`.
pub(super) fn alpha(kind: &str, spec: Value) -> Value {
    object("kafka.oso.sh/v1alpha1", kind, spec)
}

/// A v1beta1 object of `kind` with `spec`.
pub(super) fn beta(kind: &str, spec: Value) -> Value {
    object("kafka.oso.sh/v1beta1", kind, spec)
}

fn object(api_version: &str, kind: &str, spec: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "test", "namespace": "ns"}, "spec": spec})
}

/// The errors of validate(mutate(object)), the way the webhooks judge it, as `path: message` lines.
pub(super) fn errors(object: &Value) -> Vec<String> {
    let mutated = mutate(object).unwrap().object;
    validate(&mutated, None)
        .unwrap()
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Asserts that validate(mutate(object)) has an error containing `expected`.
pub(super) fn assert_refused(object: Value, expected: &str) {
    let errors = errors(&object);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected {expected:?} in {errors:#?}"
    );
}

/// Whether every field of `part` is in `whole` with the same value (`whole` may have more, also
/// in the elements of lists).
pub(super) fn contains(whole: &Value, part: &Value) -> bool {
    match (whole, part) {
        (Value::Object(whole), Value::Object(part)) => part
            .iter()
            .all(|(k, v)| whole.get(k).is_some_and(|w| contains(w, v))),
        (Value::Array(whole), Value::Array(part)) => {
            whole.len() == part.len() && whole.iter().zip(part).all(|(w, p)| contains(w, p))
        }
        _ => whole == part,
    }
}
