//! The Secrets a resource names (Kafka TLS and SASL material, storage credentials, signing keys).
//!
//! In a cluster they are read from the resource's namespace and handed over as a map; with
//! `run -f` they come from a directory laid out like a mounted Secret: one subdirectory per
//! Secret name, one file per key (`--secrets-dir DIR` -> `DIR/<secret>/<key>`), which is what
//! `kubectl get secret X -o json | jq` or a Secret volume mount produces.

pub mod refs;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

/// Why a secret value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Secret itself does not exist.
    #[error("Secret {secret} not found{where_}")]
    MissingSecret {
        /// Secret name.
        secret: String,
        /// Where it was looked for, as " in <place>".
        where_: String,
    },
    /// The Secret exists but has no such key.
    #[error("Secret {secret} has no key {key}{where_}")]
    MissingKey {
        /// Secret name.
        secret: String,
        /// The missing key.
        key: String,
        /// Where it was looked for, as " in <place>".
        where_: String,
    },
    /// The file of a key could not be read.
    #[error("cannot read key {key} of Secret {secret} from {path}: {source}")]
    Unreadable {
        /// Secret name.
        secret: String,
        /// Key.
        key: String,
        /// File.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No secrets are available at all, but the resource names one.
    #[error(
        "the resource names Secret {secret} (key {key}), but no secrets are available: pass --secrets-dir DIR with DIR/{secret}/{key}"
    )]
    NoSource {
        /// Secret name.
        secret: String,
        /// Key.
        key: String,
    },
    /// A value that must be text is not UTF-8.
    #[error("key {key} of Secret {secret} is not UTF-8 text")]
    NotText {
        /// Secret name.
        secret: String,
        /// Key.
        key: String,
    },
}

/// Where Secret values are read from.
#[derive(Clone, Debug, Default)]
pub enum SecretStore {
    /// No Secrets available: naming one is an error that says how to provide it.
    #[default]
    None,
    /// `DIR/<secret>/<key>` files (`run -f --secrets-dir`).
    Dir(PathBuf),
    /// Secrets already fetched (from the Kubernetes API, or built by tests): name -> key -> bytes.
    Map {
        /// Where they came from, for messages (e.g. "namespace kafka").
        origin: String,
        /// The Secrets.
        secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    },
}

impl SecretStore {
    /// The value of `key` in Secret `secret`.
    pub fn get(&self, secret: &str, key: &str) -> Result<Vec<u8>, SecretError> {
        match self {
            SecretStore::None => Err(SecretError::NoSource {
                secret: secret.into(),
                key: key.into(),
            }),
            SecretStore::Dir(dir) => read_dir_secret(dir, secret, key),
            SecretStore::Map { origin, secrets } => {
                let where_ = format!(" in {origin}");
                let data = secrets.get(secret).ok_or_else(|| SecretError::MissingSecret {
                    secret: secret.into(),
                    where_: where_.clone(),
                })?;
                data.get(key).cloned().ok_or_else(|| SecretError::MissingKey {
                    secret: secret.into(),
                    key: key.into(),
                    where_,
                })
            }
        }
    }

    /// The value of `key` in Secret `secret` as text, without surrounding whitespace (a trailing
    /// newline from `echo` into a file is the classic mistake).
    pub fn get_text(&self, secret: &str, key: &str) -> Result<String, SecretError> {
        let bytes = self.get(secret, key)?;
        let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText {
            secret: secret.into(),
            key: key.into(),
        })?;
        Ok(text.trim().to_owned())
    }
}

fn read_dir_secret(dir: &Path, secret: &str, key: &str) -> Result<Vec<u8>, SecretError> {
    // Names come from the manifest: refuse anything that could leave the directory.
    let safe = |s: &str| !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != "..";
    let where_ = format!(" in {}", dir.display());
    let secret_dir = dir.join(secret);
    if !safe(secret) || !secret_dir.is_dir() {
        return Err(SecretError::MissingSecret {
            secret: secret.into(),
            where_: format!("{where_} (expected directory {})", secret_dir.display()),
        });
    }
    let path = secret_dir.join(key);
    if !safe(key) || !path.is_file() {
        return Err(SecretError::MissingKey {
            secret: secret.into(),
            key: key.into(),
            where_: format!("{where_} (expected file {})", path.display()),
        });
    }
    std::fs::read(&path).map_err(|source| SecretError::Unreadable {
        secret: secret.into(),
        key: key.into(),
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dir_store_reads_files_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("kafka-user")).unwrap();
        std::fs::write(dir.path().join("kafka-user/password"), "s3cret\n").unwrap();
        let store = SecretStore::Dir(dir.path().to_owned());
        assert_eq!(store.get_text("kafka-user", "password").unwrap(), "s3cret");
        let e = store.get("kafka-user", "username").unwrap_err().to_string();
        assert!(e.contains("Secret kafka-user has no key username"), "{e}");
        let e = store.get("other", "x").unwrap_err().to_string();
        assert!(e.contains("Secret other not found"), "{e}");
        let e = store.get("..", "x").unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
    }

    #[test]
    fn no_store_says_how_to_provide_secrets() {
        let e = SecretStore::None.get("s", "k").unwrap_err().to_string();
        assert!(e.contains("--secrets-dir"), "{e}");
    }
}
