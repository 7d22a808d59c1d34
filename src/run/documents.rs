//! The documents `run -f` is given, as `kubectl apply -f` takes them: every `-f` file, each with
//! one or more YAML documents (`---`), in order. A document is an operator resource (the five
//! kinds of kafka.oso.sh, judged by the admission rules) or a ConfigMap (`v1`), which goes to the
//! local ConfigMap store; anything else is refused, naming its file, document and kind. Pure but
//! for reading the files.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde_json::Value;

use super::RunError;
use crate::{
    api::GROUP,
    storage::configmap::{is_configmap_key, is_dns_subdomain},
};

/// Where a document comes from: its file, and its place there when the file holds several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub path: PathBuf,
    /// 1-based place among the file's documents.
    pub index: usize,
    /// Documents in the file.
    pub of: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.of == 1 {
            write!(f, "{}", self.path.display())
        } else {
            write!(
                f,
                "{} (document {} of {})",
                self.path.display(),
                self.index,
                self.of
            )
        }
    }
}

/// A document of a manifest file.
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    /// An operator resource, as written (admission judges it).
    Resource(Value),
    /// A ConfigMap for the local ConfigMap store.
    ConfigMap(ConfigMapDocument),
}

/// A ConfigMap document: its name and `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigMapDocument {
    /// `metadata.name`.
    pub name: String,
    /// `data`: key to text.
    pub data: BTreeMap<String, String>,
}

/// Every document of `files`, in order, with where it comes from.
pub fn read(files: &[PathBuf]) -> Result<Vec<(Origin, Document)>, RunError> {
    let mut documents = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| RunError::Read {
            path: path.clone(),
            source,
        })?;
        documents.extend(parse(path, &text)?);
    }
    Ok(documents)
}

/// The documents of one file's text. Empty documents are skipped, as kubectl skips them.
pub fn parse(path: &Path, text: &str) -> Result<Vec<(Origin, Document)>, RunError> {
    let values: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| RunError::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if values.is_empty() {
        return Err(RunError::Yaml {
            path: path.to_owned(),
            message: "no document in it".into(),
        });
    }
    let of = values.len();
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            let origin = Origin {
                path: path.to_owned(),
                index: i + 1,
                of,
            };
            let document = classify(&origin, value)?;
            Ok((origin, document))
        })
        .collect()
}

fn classify(origin: &Origin, value: Value) -> Result<Document, RunError> {
    if !value.is_object() {
        return Err(RunError::Yaml {
            path: origin.path.clone(),
            message: match origin.of {
                1 => "expected one object with apiVersion, kind, metadata and spec".to_owned(),
                of => format!(
                    "document {} of {of}: expected one object with apiVersion, kind, metadata and spec",
                    origin.index
                ),
            },
        });
    }
    let text = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version == "v1" && kind == "ConfigMap" {
        return config_map(origin, &value).map(Document::ConfigMap);
    }
    // Objects of the operator's group, and objects without apiVersion or kind, are for the
    // admission rules to judge (naming what is wrong with them).
    let ours = api_version.split('/').next() == Some(GROUP);
    if ours || api_version.is_empty() || kind.is_empty() {
        return Ok(Document::Resource(value));
    }
    Err(RunError::Unsupported {
        origin: origin.to_string(),
        kind: format!("{kind} ({api_version})"),
    })
}

/// A ConfigMap document, read as strictly as the resources: what the local store cannot keep
/// as the API server would is refused, naming the field.
fn config_map(origin: &Origin, value: &Value) -> Result<ConfigMapDocument, RunError> {
    let refuse = |message: String| RunError::ConfigMap {
        origin: origin.to_string(),
        message,
    };
    let fields = |object: &Value, path: &str, allowed: &[&str]| -> Result<(), RunError> {
        for field in object.as_object().into_iter().flat_map(|o| o.keys()) {
            if !allowed.contains(&field.as_str()) {
                return Err(refuse(format!(
                    "{path}{field}: not supported by the local ConfigMap store of run -f, which keeps data keys only (allowed: {})",
                    allowed
                        .iter()
                        .map(|a| format!("{path}{a}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(())
    };
    fields(value, "", &["apiVersion", "kind", "metadata", "data"])?;
    let metadata = value.get("metadata").unwrap_or(&Value::Null);
    fields(
        metadata,
        "metadata.",
        &["name", "namespace", "labels", "annotations"],
    )?;
    let name = metadata.get("name").and_then(Value::as_str).unwrap_or_default();
    if !is_dns_subdomain(name) {
        return Err(refuse(format!(
            "metadata.name: {name:?} is not a ConfigMap name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        )));
    }
    let mut data = BTreeMap::new();
    match value.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (key, v) in entries {
                let Some(text) = v.as_str() else {
                    return Err(refuse(format!("data.{key}: must be a string, not {v}")));
                };
                if !is_configmap_key(key) {
                    return Err(refuse(format!(
                        "data.{key}: not a ConfigMap key (letters, digits, '-', '_' and '.')"
                    )));
                }
                data.insert(key.clone(), text.to_owned());
            }
        }
        Some(other) => {
            return Err(refuse(format!(
                "data: must be a map of keys to strings, not {other}"
            )));
        }
    }
    Ok(ConfigMapDocument {
        name: name.to_owned(),
        data,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn parsed(text: &str) -> Result<Vec<(Origin, Document)>, String> {
        parse(Path::new("m.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn several_documents_keep_their_order_and_place() {
        let documents = parsed(
            "apiVersion: v1
kind: ConfigMap
metadata: {name: offset-mapping, namespace: team-a}
data:
  mapping.json: |
    {\"groups\": {}}
---
---
apiVersion: kafka.oso.sh/v1alpha1
kind: KafkaOffsetReset
metadata: {name: r}
spec: {}
",
        )
        .unwrap();
        assert_eq!(documents.len(), 2, "the empty document is skipped");
        let (origin, Document::ConfigMap(cm)) = &documents[0] else {
            panic!("{documents:?}")
        };
        assert_eq!(origin.to_string(), "m.yaml (document 1 of 2)");
        assert_eq!(cm.name, "offset-mapping");
        assert_eq!(cm.data["mapping.json"], "{\"groups\": {}}\n");
        let (origin, Document::Resource(r)) = &documents[1] else {
            panic!("{documents:?}")
        };
        assert_eq!(origin.index, 2);
        assert_eq!(r["kind"], "KafkaOffsetReset");
        // One document: the file alone names it, as before.
        let one = parsed("apiVersion: kafka.oso.sh/v1beta1\nkind: KafkaBackup\n").unwrap();
        assert_eq!(one[0].0.to_string(), "m.yaml");
    }

    #[test]
    fn a_kind_run_f_cannot_handle_is_refused_naming_its_document() {
        let e = parsed(
            "apiVersion: kafka.oso.sh/v1beta1\nkind: KafkaBackup\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "m.yaml (document 2 of 2): kind Secret (v1) cannot be executed by run -f: it runs KafkaBackup, KafkaRestore, KafkaOffsetReset, KafkaOffsetRollback and KafkaBackupValidation (kafka.oso.sh) and stores ConfigMaps (v1) in the local ConfigMap store"
        );
        let e = parsed("apiVersion: apps/v1\nkind: Deployment\n").unwrap_err();
        assert!(
            e.starts_with("m.yaml: kind Deployment (apps/v1) cannot be executed"),
            "{e}"
        );
        let e = parsed("- a\n- b\n").unwrap_err();
        assert!(e.contains("expected one object"), "{e}");
        let e = parsed("# nothing\n").unwrap_err();
        assert!(e.contains("no document"), "{e}");
    }

    #[test]
    fn configmap_documents_are_read_strictly() {
        for (text, expected) in [
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\nbinaryData: {k: AAAA}\n",
                "binaryData: not supported by the local ConfigMap store",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m, generateName: x}\n",
                "metadata.generateName: not supported",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ../m}\n",
                "metadata.name: \"../m\" is not a ConfigMap name",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata: {k: 3}\n",
                "data.k: must be a string",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata: {a/b: x}\n",
                "data.a/b: not a ConfigMap key",
            ),
        ] {
            let e = parsed(text).unwrap_err();
            assert!(e.starts_with("m.yaml: ConfigMap: "), "{e}");
            assert!(e.contains(expected), "{expected:?} in {e}");
        }
    }
}
