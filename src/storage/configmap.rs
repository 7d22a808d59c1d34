//! ConfigMap storage: small JSON objects (offset snapshots) as keys of one ConfigMap in the
//! resource's namespace. Writes use the ConfigMap's resourceVersion, so concurrent writers never
//! lose each other's keys, and a key is never overwritten.

use std::collections::BTreeMap;

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

/// One ConfigMap used as a store.
#[derive(Clone, Debug)]
pub struct ConfigMapLocation {
    name: String,
    kube: KubeTarget,
}

impl ConfigMapLocation {
    /// The ConfigMap `name`; fails without a Kubernetes API.
    pub fn new(name: &str, kube: Option<KubeTarget>) -> Result<Self, StorageError> {
        let kube = kube.ok_or_else(|| StorageError::NoKubernetes { name: name.into() })?;
        Ok(ConfigMapLocation {
            name: name.into(),
            kube,
        })
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.kube.client.clone(), &self.kube.namespace)
    }

    /// `configmap://<name>/<key>`.
    pub fn uri(&self, key: &str) -> String {
        format!("configmap://{}/{}", self.name, key_of(key))
    }

    fn kube_error(&self, operation: &'static str, key: &str) -> impl FnOnce(kube::Error) -> StorageError {
        let uri = self.uri(key);
        move |source| StorageError::Kube {
            operation,
            uri,
            source,
        }
    }

    async fn fetch(&self) -> Result<Option<ConfigMap>, StorageError> {
        self.api()
            .get_opt(&self.name)
            .await
            .map_err(self.kube_error("read", ""))
    }

    /// Adds a key; fails when it exists or when the ConfigMap would exceed 1 MiB.
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let key = key_of(key);
        let value =
            String::from_utf8(bytes.to_vec()).map_err(|_| StorageError::NotText { uri: self.uri(key) })?;
        for _ in 0..ATTEMPTS {
            let existing = self.fetch().await?;
            let mut data = existing
                .as_ref()
                .and_then(|cm| cm.data.clone())
                .unwrap_or_default();
            if data.contains_key(key) {
                return Err(StorageError::AlreadyExists { uri: self.uri(key) });
            }
            let total = data_size(&data) + key.len() + value.len();
            if total + METADATA_ALLOWANCE > CONFIGMAP_LIMIT {
                return Err(StorageError::TooLarge {
                    uri: self.uri(key),
                    name: self.name.clone(),
                    size: value.len(),
                    total,
                });
            }
            data.insert(key.to_owned(), value.clone());
            let result = match existing {
                Some(mut cm) => {
                    cm.data = Some(data);
                    // replace() sends metadata.resourceVersion: a concurrent change makes it 409.
                    self.api().replace(&self.name, &PostParams::default(), &cm).await
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
                    self.api().create(&PostParams::default(), &cm).await
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
        Ok(self
            .fetch()
            .await?
            .and_then(|cm| cm.data)
            .and_then(|mut data| data.remove(key))
            .map(Bytes::from))
    }

    /// Removes a key; `false` when it did not exist. The ConfigMap is deleted with its last key.
    pub async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let key = key_of(key);
        for _ in 0..ATTEMPTS {
            let Some(mut cm) = self.fetch().await? else {
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
                self.api().delete(&self.name, &params).await.map(|_| ())
            } else {
                cm.data = Some(data);
                self.api()
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
    /// ConfigMaps keep no time per key.
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, StorageError> {
        let Some(cm) = self.fetch().await? else {
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
