//! Pure validation: every rule the webhooks, the engines and `run -f` apply to a resource.
//!
//! A [`Verdict`] collects every error at once (field path, what is wrong, the offending value) and
//! the warnings; nothing here does I/O. Rules live on the hub types (v1beta1); a v1alpha1 object is
//! checked for what only its spellings can get wrong, then converted and judged as v1beta1 with
//! error paths translated back (see [`crate::api::admission`]).

use std::fmt;

use serde::Serialize;
use serde_json::Value;

mod backup;
mod backup_validation;
pub mod common;
mod offset_reset;
mod offset_rollback;
mod restore;
mod spoke;
#[cfg(test)]
mod testing;

/// What kind of problem a [`FieldError`] is, named as the API server names it in the
/// `details.causes[].reason` of a 422 Invalid answer (kubectl prints one line per cause).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Reason {
    /// A value that breaks a rule.
    #[default]
    #[serde(rename = "FieldValueInvalid")]
    Invalid,
    /// A field that must be given.
    #[serde(rename = "FieldValueRequired")]
    Required,
    /// A value outside a closed set (an enum), the allowed values listed.
    #[serde(rename = "FieldValueNotSupported")]
    NotSupported,
    /// A value of the wrong type (a string where a number is expected).
    #[serde(rename = "FieldValueTypeInvalid")]
    TypeInvalid,
    /// A list entry given twice.
    #[serde(rename = "FieldValueDuplicate")]
    Duplicate,
}

impl Reason {
    /// The API server's name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "FieldValueInvalid",
            Reason::Required => "FieldValueRequired",
            Reason::NotSupported => "FieldValueNotSupported",
            Reason::TypeInvalid => "FieldValueTypeInvalid",
            Reason::Duplicate => "FieldValueDuplicate",
        }
    }

    /// The reason of a rule's message, by the convention every rule follows: `is required ...`
    /// for a missing field, `is listed twice` for a repeated entry.
    fn of_message(message: &str) -> Self {
        if message.starts_with("is required") {
            Reason::Required
        } else if message.starts_with("is listed twice") {
            Reason::Duplicate
        } else {
            Reason::Invalid
        }
    }
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `spec.kafkaCluster.bootstrapServers[0]`.
    pub path: String,
    /// What is wrong, in a sentence that can stand after the path.
    pub message: String,
    /// The offending value, when there is one to show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The kind of problem.
    pub reason: Reason,
}

impl FieldError {
    /// What is wrong without the path, as a `details.causes[].message` (the path is its `field`).
    pub fn cause_message(&self) -> String {
        let text = self.to_string();
        match text.strip_prefix(&format!("{}: ", self.path)) {
            Some(rest) => rest.to_owned(),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        match &self.value {
            Some(Value::String(s)) => write!(f, " (got {s:?})"),
            Some(value) => write!(f, " (got {value})"),
            None => Ok(()),
        }
    }
}

/// The judgement on a resource: every error and every warning.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    /// Reasons to refuse the resource; empty when it is acceptable.
    pub errors: Vec<FieldError>,
    /// Sentences for the user that do not refuse the resource (kubectl prints them).
    pub warnings: Vec<String>,
    /// Fields the schema of the object's version does not have. The webhooks answer them as
    /// warnings (the API server drops unknown fields); `run -f` refuses them, as kubectl's strict
    /// field validation does.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_fields: Vec<FieldError>,
}

impl Verdict {
    /// Records an error on `path` with the offending value.
    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>, value: impl Serialize) {
        let message = message.into();
        self.errors.push(FieldError {
            path: path.into(),
            reason: Reason::of_message(&message),
            message,
            value: serde_json::to_value(value).ok().filter(|v| !v.is_null()),
        });
    }

    /// Records an error on `path` that has no single value to show (a missing field).
    pub fn missing(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let message = message.into();
        self.errors.push(FieldError {
            path: path.into(),
            reason: Reason::of_message(&message),
            message,
            value: None,
        });
    }

    /// Records a warning.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// Whether the resource is acceptable.
    pub fn is_allowed(&self) -> bool {
        self.errors.is_empty()
    }

    /// One message listing every error, for a denial or a failed status.
    pub fn message(&self) -> String {
        self.errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Rewrites the path of every error (v1beta1 paths into the v1alpha1 spelling).
    pub fn map_paths(mut self, map: impl Fn(&str) -> String) -> Self {
        for error in &mut self.errors {
            error.path = map(&error.path);
        }
        self
    }
}

/// Joins a field path and a child name: `path("spec", "topics")` is `spec.topics`.
pub fn path(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// The path of a list element: `index("spec.topics", 2)` is `spec.topics[2]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}
