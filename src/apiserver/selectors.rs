//! Label and field selectors (`?labelSelector=`, `?fieldSelector=`) as Kubernetes parses them, and
//! the `limit` / `continue` paging of lists. Pure functions only.
//!
//! Label selectors support every operator of the Kubernetes syntax: `k=v`, `k==v`, `k!=v`,
//! `k in (a,b)`, `k notin (a,b)`, `k` (exists) and `!k` (does not exist), comma-separated (all must
//! hold). Field selectors support `k=v`, `k==v` and `k!=v` over the fields a resource declares
//! (always `metadata.name` and `metadata.namespace`); an unknown field is a 400, as in Kubernetes.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Why a selector or a continue token cannot be used; answered with 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The label selector does not parse.
    #[error("unable to parse requirement: {0}")]
    Label(String),
    /// The field selector does not parse.
    #[error("invalid field selector: {0}")]
    Field(String),
    /// The field selector names a field the resource does not support.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
    /// The `continue` token was not issued by this server.
    #[error("invalid continue token: {0}")]
    Continue(String),
    /// `limit` is not a non-negative integer.
    #[error("invalid limit {0:?}: must be a non-negative integer")]
    Limit(String),
}

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    /// `key=value`, `key==value`, `key in (values)`.
    In(String, Vec<String>),
    /// `key!=value`, `key notin (values)`: also true when the label is absent.
    NotIn(String, Vec<String>),
    /// `key`.
    Exists(String),
    /// `!key`.
    DoesNotExist(String),
}

/// A parsed label selector: every requirement must hold. Empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<LabelRequirement>);

impl LabelSelector {
    /// Parses the Kubernetes label selector syntax.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        split_top_level(text)
            .into_iter()
            .filter(|part| !part.trim().is_empty())
            .map(|part| parse_requirement(part.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map(LabelSelector)
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|req| match req {
            LabelRequirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            LabelRequirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            LabelRequirement::Exists(key) => labels.contains_key(key),
            LabelRequirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<LabelRequirement, SelectorError> {
    let bad = |why: &str| SelectorError::Label(format!("{part:?}: {why}"));
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        check_key(key).map_err(|why| bad(&why))?;
        return Ok(LabelRequirement::DoesNotExist(key.to_owned()));
    }
    for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(op) {
            let (key, value) = (key.trim(), value.trim());
            check_key(key).map_err(|why| bad(&why))?;
            check_value(value).map_err(|why| bad(&why))?;
            let values = vec![value.to_owned()];
            return Ok(if negate {
                LabelRequirement::NotIn(key.to_owned(), values)
            } else {
                LabelRequirement::In(key.to_owned(), values)
            });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim_start();
        let (negate, list) = if let Some(list) = rest.strip_prefix("notin") {
            (true, list)
        } else if let Some(list) = rest.strip_prefix("in") {
            (false, list)
        } else {
            return Err(bad("expected one of =, ==, !=, in, notin"));
        };
        let list = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| bad("a set must be in parentheses"))?;
        check_key(key).map_err(|why| bad(&why))?;
        let values = list
            .split(',')
            .map(|v| {
                let v = v.trim();
                check_value(v).map(|()| v.to_owned())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| bad(&why))?;
        return Ok(if negate {
            LabelRequirement::NotIn((*key).to_owned(), values)
        } else {
            LabelRequirement::In((*key).to_owned(), values)
        });
    }
    check_key(part).map_err(|why| bad(&why))?;
    Ok(LabelRequirement::Exists(part.to_owned()))
}

fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty()
            || prefix.len() > 253
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'))
    {
        return Err(format!("prefix of key {key:?} must be a DNS subdomain"));
    }
    if name.is_empty() || !is_label_value(name) {
        return Err(format!(
            "name part of key {key:?} must be 1-63 alphanumerics, '-', '_' or '.'"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_value(value) {
        Ok(())
    } else {
        Err(format!(
            "value {value:?} must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

/// Whether `value` is a valid (non-empty) label value: at most 63 characters, alphanumerics, `-`,
/// `_`, `.`, beginning and ending with an alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// One requirement of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field, e.g. `metadata.name`.
    pub field: String,
    /// The value compared with.
    pub value: String,
    /// `!=` instead of `=`.
    pub negate: bool,
}

/// A parsed field selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    /// Parses `field=value,field!=value`; each field must be one of `supported`.
    pub fn parse(text: &str, supported: &[&str]) -> Result<Self, SelectorError> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, value, negate) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(SelectorError::Field(format!(
                    "{part:?}: expected field=value or field!=value"
                )));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(SelectorError::UnsupportedField(field.to_owned()));
            }
            out.push(FieldRequirement {
                field: field.to_owned(),
                value: value.trim().to_owned(),
                negate,
            });
        }
        Ok(FieldSelector(out))
    }

    /// Whether the object's fields (given by `value_of`) satisfy every requirement; an absent field
    /// compares as the empty string, as in Kubernetes.
    pub fn matches<'a>(&self, value_of: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|req| {
            let actual = value_of(&req.field).unwrap_or("");
            (actual == req.value) != req.negate
        })
    }

    /// The value an `=` requirement on `field` pins, if any (to narrow a list to one namespace).
    pub fn pinned(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|r| r.field == field && !r.negate)
            .map(|r| r.value.as_str())
    }
}

/// Where a page of a list starts: after the object with this namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContinueToken {
    /// Namespace of the last object of the previous page.
    #[serde(rename = "ns")]
    pub namespace: String,
    /// Name of the last object of the previous page.
    #[serde(rename = "n")]
    pub name: String,
}

impl ContinueToken {
    /// The opaque form handed to clients (base64url of a small JSON document).
    pub fn encode(&self) -> String {
        // A struct of two strings always serializes.
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a token made by [`ContinueToken::encode`].
    pub fn decode(token: &str) -> Result<Self, SelectorError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|e| SelectorError::Continue(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| SelectorError::Continue(e.to_string()))
    }
}

/// Parses `limit`: absent or 0 means no limit.
pub fn parse_limit(limit: Option<&str>) -> Result<Option<usize>, SelectorError> {
    match limit.map(str::trim).filter(|l| !l.is_empty()) {
        None => Ok(None),
        Some(text) => {
            let n: i64 = text.parse().map_err(|_| SelectorError::Limit(text.to_owned()))?;
            match n {
                0 => Ok(None),
                n if n > 0 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
                _ => Err(SelectorError::Limit(text.to_owned())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_selectors_follow_kubernetes_semantics() {
        let l = labels(&[("app", "orders"), ("tier", "db")]);
        let cases = [
            ("", true),
            ("app=orders", true),
            ("app==orders", true),
            ("app!=orders", false),
            ("app!=x", true),
            ("missing!=x", true),
            ("app in (x, orders)", true),
            ("app notin (x,orders)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=orders,tier=db", true),
            ("app=orders,tier=web", false),
            ("example.com/app", false),
        ];
        for (text, expected) in cases {
            let selector = LabelSelector::parse(text).unwrap();
            assert_eq!(selector.matches(&l), expected, "{text}");
        }
        for bad in ["app in orders", "app=-x", "=x", "a b c", "Bad_/x=1"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors_accept_declared_fields_only() {
        let supported = ["metadata.name", "metadata.namespace", "cluster"];
        let selector = FieldSelector::parse("metadata.name=a,metadata.namespace!=b", &supported).unwrap();
        let fields = |f: &str| match f {
            "metadata.name" => Some("a"),
            "metadata.namespace" => Some("c"),
            _ => None,
        };
        assert!(selector.matches(fields));
        assert_eq!(selector.pinned("metadata.name"), Some("a"));
        assert_eq!(selector.pinned("metadata.namespace"), None);
        assert!(
            !FieldSelector::parse("cluster=x", &supported)
                .unwrap()
                .matches(fields)
        );
        assert!(
            FieldSelector::parse("cluster!=x", &supported)
                .unwrap()
                .matches(fields)
        );
        assert_eq!(
            FieldSelector::parse("spec.x=1", &supported).unwrap_err(),
            SelectorError::UnsupportedField("spec.x".into())
        );
        assert!(FieldSelector::parse("metadata.name", &supported).is_err());
    }

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_refused() {
        let token = ContinueToken {
            namespace: "team-a".into(),
            name: "snap/1".into(),
        };
        assert_eq!(ContinueToken::decode(&token.encode()).unwrap(), token);
        assert!(ContinueToken::decode("not a token").is_err());
        assert!(ContinueToken::decode("e30").is_err(), "{{}} lacks the fields");
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), None);
        assert_eq!(parse_limit(Some("0")).unwrap(), None);
        assert_eq!(parse_limit(Some("500")).unwrap(), Some(500));
        assert!(parse_limit(Some("-1")).is_err());
        assert!(parse_limit(Some("many")).is_err());
    }
}
