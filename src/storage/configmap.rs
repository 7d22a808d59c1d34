//! ConfigMap storage: small JSON objects (offset snapshots) as keys of one ConfigMap in the
//! resource's namespace. Writes use the ConfigMap's resourceVersion, so concurrent writers never
//! lose each other's keys, and a key is never overwritten.
//!
//! Without Kubernetes (`run -f`) the same ConfigMaps live in a local directory ([`local`],
//! `--configmaps-dir DIR`: `DIR/<configmap>/<key>`, one file per key, as `--secrets-dir` lays out
//! Secrets), with the same keys, the same values and the same rules (create-only keys, 1 MiB per
//! ConfigMap, the ConfigMap gone with its last key), so what one `run -f` stores the next reads.

pub mod local;

use std::{collections::BTreeMap, path::PathBuf};

use bytes::Bytes;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, PostParams},
};

use super::{ObjectInfo, StorageError};

/// Largest ConfigMap the API server stores.
pub const CONFIGMAP_LIMIT: usize = 1024 * 1024;

/// Room left for the ConfigMap's metadata.
const METADATA_ALLOWANCE: usize = 16 * 1024;

/// Optimistic-concurrency attempts before giving up.
const ATTEMPTS: usize = 5;

/// The Kubernetes API and the namespace ConfigMaps are read and written in.
#[derive(Clone)]
pub struct KubeTarget {
    /// The client.
    pub client: kube::Client,
    /// The resource's namespace.
    pub namespace: String,
}

impl std::fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTarget")
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Where ConfigMaps are read and written.
#[derive(Clone, Debug, Default)]
pub enum ConfigMapStore {
    /// None: ConfigMap storage is refused, saying so.
    #[default]
    None,
    /// The local stand-in of `run -f` (`--configmaps-dir DIR`): `DIR/<configmap>/<key>`.
    Dir(PathBuf),
    /// The Kubernetes API, in the resource's namespace.
    Kube(KubeTarget),
}

/// One ConfigMap used as a store.
#[derive(Clone, Debug)]
pub struct ConfigMapLocation {
    name: String,
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Kube(KubeTarget),
    Dir(local::LocalConfigMap),
}

impl ConfigMapLocation {
    /// The ConfigMap `name` in `store`; fails when there is no store.
    pub fn new(name: &str, store: &ConfigMapStore) -> Result<Self, StorageError> {
        let backend = match store {
            ConfigMapStore::None => return Err(StorageError::NoKubernetes { name: name.into() }),
            ConfigMapStore::Kube(kube) => Backend::Kube(kube.clone()),
            ConfigMapStore::Dir(root) => Backend::Dir(local::LocalConfigMap::new(root, name)?),
        };
        Ok(ConfigMapLocation {
            name: name.into(),
            backend,
        })
    }

    fn api(kube: &KubeTarget) -> Api<ConfigMap> {
        Api::namespaced(kube.client.clone(), &kube.namespace)
    }

    /// `configmap://<name>/<key>`, the same in a cluster and in the local store.
    pub fn uri(&self, key: &str) -> String {
        format!("configmap://{}/{}", self.name, key_of(key))
    }

    /// The file holding `key` in the local ConfigMap store; `None` in a cluster.
    pub fn local_file(&self, key: &str) -> Option<PathBuf> {
        match &self.backend {
            Backend::Dir(dir) => Some(dir.file(key_of(key))),
            Backend::Kube(_) => None,
        }
    }

    /// The URI of `key` and, in the local store, its file: where a missing object was looked for.
    pub fn looked_at(&self, key: &str) -> String {
        match self.local_file(key) {
            Some(file) => format!(
                "{} (file {} of the local ConfigMap store)",
                self.uri(key),
                file.display()
            ),
            None => self.uri(key),
        }
    }

    /// Reads a key that must exist (an offset mapping a resource names); the error names the
    /// ConfigMap, the key and where they were looked for.
    pub async fn get_required(&self, key: &str) -> Result<Bytes, StorageError> {
        if let Some(bytes) = self.get(key).await? {
            return Ok(bytes);
        }
        let where_ = match &self.backend {
            Backend::Dir(dir) => dir.missing(key_of(key)),
            Backend::Kube(kube) => format!(" in namespace {}", kube.namespace),
        };
        Err(StorageError::ConfigMapKeyNotFound {
            name: self.name.clone(),
            key: key_of(key).to_owned(),
            where_,
        })
    }

    fn kube_error(&self, operation: &'static str, key: &str) -> impl FnOnce(kube::Error) -> StorageError {
        let uri = self.uri(key);
        move |source| StorageError::Kube {
            operation,
            uri,
            source,
        }
    }

    async fn fetch(&self, kube: &KubeTarget) -> Result<Option<ConfigMap>, StorageError> {
        Self::api(kube)
            .get_opt(&self.name)
            .await
            .map_err(self.kube_error("read", ""))
    }

    /// Adds a key; fails when it exists or when the ConfigMap would exceed 1 MiB.
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let key = key_of(key);
        let value = text_of(&bytes, || self.uri(key))?;
        match &self.backend {
            Backend::Kube(kube) => self.kube_put_new(kube, key, value).await,
            Backend::Dir(dir) => dir.put_new(key, &value, &self.uri(key)),
        }
    }

    async fn kube_put_new(&self, kube: &KubeTarget, key: &str, value: String) -> Result<(), StorageError> {
        for _ in 0..ATTEMPTS {
            let existing = self.fetch(kube).await?;
            let mut data = existing
                .as_ref()
                .and_then(|cm| cm.data.clone())
                .unwrap_or_default();
            check_new_key(&self.name, &data, key, &value, &self.uri(key))?;
            data.insert(key.to_owned(), value.clone());
            let result = match existing {
                Some(mut cm) => {
                    cm.data = Some(data);
                    // replace() sends metadata.resourceVersion: a concurrent change makes it 409.
                    Self::api(kube)
                        .replace(&self.name, &PostParams::default(), &cm)
                        .await
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/managed-by".to_owned(),
                                "kafka-backup-operator".to_owned(),
                            )])),
                            ..Default::default()
                        },
                        data: Some(data),
                        ..Default::default()
                    };
                    Self::api(kube).create(&PostParams::default(), &cm).await
                }
            };
            match result {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => return Err(self.kube_error("write", key)(e)),
            }
        }
        Err(StorageError::Invalid(format!(
            "ConfigMap {} kept changing while {} was written ({ATTEMPTS} attempts)",
            self.name, key
        )))
    }

    /// Reads a key; `None` when the ConfigMap or the key does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let key = key_of(key);
        let kube = match &self.backend {
            Backend::Kube(kube) => kube,
            Backend::Dir(dir) => return dir.get(key),
        };
        Ok(self
            .fetch(kube)
            .await?
            .and_then(|cm| cm.data)
            .and_then(|mut data| data.remove(key))
            .map(Bytes::from))
    }

    /// Removes a key; `false` when it did not exist. The ConfigMap is deleted with its last key.
    pub async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let key = key_of(key);
        let kube = match &self.backend {
            Backend::Kube(kube) => kube,
            Backend::Dir(dir) => return dir.delete(key),
        };
        for _ in 0..ATTEMPTS {
            let Some(mut cm) = self.fetch(kube).await? else {
                return Ok(false);
            };
            let mut data = cm.data.take().unwrap_or_default();
            if data.remove(key).is_none() {
                return Ok(false);
            }
            let result = if data.is_empty() && cm.binary_data.as_ref().is_none_or(BTreeMap::is_empty) {
                let params = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        resource_version: cm.metadata.resource_version.clone(),
                        uid: None,
                    }),
                    ..Default::default()
                };
                Self::api(kube).delete(&self.name, &params).await.map(|_| ())
            } else {
                cm.data = Some(data);
                Self::api(kube)
                    .replace(&self.name, &PostParams::default(), &cm)
                    .await
                    .map(|_| ())
            };
            match result {
                Ok(()) => return Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => return Err(self.kube_error("delete", key)(e)),
            }
        }
        Err(StorageError::Invalid(format!(
            "ConfigMap {} kept changing while {} was deleted ({ATTEMPTS} attempts)",
            self.name, key
        )))
    }

    /// Every key with its size; the modification time is the ConfigMap's creation time, as
    /// ConfigMaps keep no time per key (in the local store: the key's file's).
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, StorageError> {
        let kube = match &self.backend {
            Backend::Kube(kube) => kube,
            Backend::Dir(dir) => return dir.list(),
        };
        let Some(cm) = self.fetch(kube).await? else {
            return Ok(Vec::new());
        };
        let time = cm
            .metadata
            .creation_timestamp
            .map(|t| t.0)
            .and_then(|t| chrono::DateTime::from_timestamp(t.as_second(), 0))
            .unwrap_or_default();
        Ok(cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| ObjectInfo {
                key,
                size: value.len() as u64,
                last_modified: time,
            })
            .collect())
    }
}

/// ConfigMap keys cannot hold `/`: objects are stored under their last path segment
/// (`offset-snapshots/s1.json` -> `s1.json`).
fn key_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

fn data_size(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// A value of a ConfigMap's `data`: UTF-8 text. Pure.
fn text_of(bytes: &[u8], uri: impl FnOnce() -> String) -> Result<String, StorageError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| StorageError::NotText { uri: uri() })
}

/// Whether `key` = `value` may be added to ConfigMap `name` holding `data`: the key is new
/// (keys are never overwritten) and the ConfigMap stays within what the API server stores.
/// Pure; the cluster and the local store both ask it.
fn check_new_key(
    name: &str,
    data: &BTreeMap<String, String>,
    key: &str,
    value: &str,
    uri: &str,
) -> Result<(), StorageError> {
    if data.contains_key(key) {
        return Err(StorageError::AlreadyExists { uri: uri.into() });
    }
    check_size(name, data_size(data) + key.len() + value.len(), value.len(), uri)
}

/// A ConfigMap whose data would hold `total` bytes with an object of `size` bytes at `uri` fits
/// into the 1 MiB the API server stores. Pure.
fn check_size(name: &str, total: usize, size: usize, uri: &str) -> Result<(), StorageError> {
    if total + METADATA_ALLOWANCE > CONFIGMAP_LIMIT {
        return Err(StorageError::TooLarge {
            uri: uri.into(),
            name: name.into(),
            size,
            total,
        });
    }
    Ok(())
}

/// Whether `name` is a DNS subdomain, as the names of ConfigMaps and of the operator's resources
/// are: lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, at
/// most 253 characters. Pure.
pub fn is_dns_subdomain(name: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    name.len() <= 253
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
        && name.chars().all(|c| alphanumeric(c) || c == '-' || c == '.')
}

/// Whether `key` is a ConfigMap key (letters, digits, `-`, `_` and `.`, at most 253
/// characters, not `.` or `..`). Pure.
pub fn is_configmap_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
