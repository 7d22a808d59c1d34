//! Storage locations: where backups, checkpoints, offset snapshots, offset mappings and evidence
//! reports live, opened from a `storage` block.
//!
//! # Locations
//!
//! | `type`      | where                                               | status URI                       |
//! |-------------|-----------------------------------------------------|----------------------------------|
//! | `S3`        | bucket (+ endpoint, pathStyle, allowHttp), prefix   | `s3://<bucket>/<prefix>/<key>`   |
//! | `Azure`     | container of an account, prefix                     | `az://<container>/<prefix>/<key>`|
//! | `GCS`       | bucket, prefix                                      | `gs://<bucket>/<prefix>/<key>`   |
//! | `PVC`       | `<pvc root>/<claimName>/<subPath>` on the local disk | `pvc://<claim>/<subPath>/<key>` |
//! | `ConfigMap` | one key per object in a ConfigMap (snapshots only)  | `configmap://<name>/<key>`       |
//!
//! ConfigMaps are those of the resource's namespace in a cluster, and those of the local ConfigMap
//! store with `run -f` ([`configmap::local`], `--configmaps-dir`).
//!
//! The PVC root is `/data` in a cluster (the chart mounts claims there) and `--pvc-root` with
//! `run -f`, which makes any local directory a storage location. The embedded default location
//! ([`embedded_default`], `file://<dir>`) is a local directory too: `serve`'s default catalog
//! location, where `run -f` keeps the snapshots of resources that name no storage.
//!
//! # Layout below the prefix
//!
//! - `offset-snapshots/<snapshotId>.json`: consumer offset snapshots ([`snapshot`]); in a ConfigMap
//!   the key is `<snapshotId>.json`.
//! - `backups/<backupId>/`: a backup set (manifest, segments, consumer-group snapshot, restore
//!   state and offset mappings), defined in [`backup`].
//! - `<backup_id>/` and `offset-snapshots/<snapshot_id>/`: backup sets and offset snapshots of
//!   the prior art (kafka-backup 0.x), read in place and never written ([`prior_art`]); the
//!   engines open a set of either format through [`backup_set`].
//!
//! Objects that must never be overwritten (snapshots, manifests of finished backups, evidence) are
//! written create-only ([`Location::put_new`]): a conditional put that fails when the key exists,
//! so two writers cannot both believe they wrote it.

pub mod azure;
pub mod backup;
pub mod backup_set;
pub mod configmap;
mod http;
pub mod offset_mapping;
pub mod prior_art;
pub mod snapshot;

use std::{path::PathBuf, sync::Arc};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, aws::AmazonS3Builder, gcp::GoogleCloudStorageBuilder,
    local::LocalFileSystem, path::Path,
};

use crate::{
    api::v1beta1::{StorageSpec, StorageType},
    secrets::{SecretError, SecretStore},
};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage block is incomplete (the admission webhook normally catches this first).
    #[error("storage: {0}")]
    Invalid(String),
    /// A credentials Secret could not be read.
    #[error("storage: {0}")]
    Secret(#[from] SecretError),
    /// The client for the location could not be built.
    #[error("cannot open storage {uri}: {source}")]
    Open {
        /// The location.
        uri: String,
        /// Why.
        #[source]
        source: object_store::Error,
    },
    /// A create-only write found the object already there.
    #[error("{uri} already exists; it is never overwritten: choose another id")]
    AlreadyExists {
        /// The object.
        uri: String,
    },
    /// The object is not there.
    #[error("{uri} not found")]
    NotFound {
        /// The object.
        uri: String,
    },
    /// An operation on an object failed.
    #[error("{operation} {uri}: {}", causes(source))]
    Object {
        /// read, write, delete, list.
        operation: &'static str,
        /// The object or prefix.
        uri: String,
        /// Why.
        #[source]
        source: object_store::Error,
    },
    /// The storage service refused the credentials (HTTP 403 or 401): a revoked or rotated key
    /// fails the same way on every request, so nothing is retried.
    #[error(
        "{operation} {uri}: the storage refused the credentials of {credentials} ({source}); renew them or grant access to this location: not retried"
    )]
    Denied {
        /// read, write, delete, list.
        operation: &'static str,
        /// The object or prefix.
        uri: String,
        /// Where the credentials come from: `Secret NAME` or the environment's chain.
        credentials: String,
        /// The answer.
        #[source]
        source: Box<object_store::Error>,
    },
    /// The volume of a local location is full.
    #[error(
        "{operation} {uri}: no space left on device (ENOSPC) writing {path}: free space on the volume or give the claim more; what was stored before stays, and the next run resumes from it"
    )]
    Full {
        /// write.
        operation: &'static str,
        /// The object.
        uri: String,
        /// The file on the volume.
        path: String,
    },
    /// Reading a file of a local location failed.
    #[error("read {uri}: {source}")]
    LocalRead {
        /// The object.
        uri: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ConfigMap storage with neither a Kubernetes API nor a local ConfigMap store.
    #[error(
        "storage type ConfigMap (ConfigMap {name}) needs the Kubernetes API or the local ConfigMap store of run -f (--configmaps-dir), and there is neither here: use S3, Azure, GCS or PVC storage"
    )]
    NoKubernetes {
        /// The ConfigMap.
        name: String,
    },
    /// A ConfigMap key a resource names (an offset mapping) is not there.
    #[error("ConfigMap {name} has no key {key}{where_}")]
    ConfigMapKeyNotFound {
        /// The ConfigMap.
        name: String,
        /// The key.
        key: String,
        /// Where it was looked for, as " in <place>".
        where_: String,
    },
    /// A file of the local ConfigMap store could not be read or written.
    #[error("{operation} {} (local ConfigMap store): {source}", path.display())]
    LocalFile {
        /// read, write, delete, list.
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The object does not fit into a ConfigMap.
    #[error(
        "{uri} is {size} bytes, and ConfigMap {name} would then hold {total} bytes: a ConfigMap holds at most 1 MiB (1048576 bytes). Store snapshots this large in object storage (S3, Azure, GCS) or on a PVC"
    )]
    TooLarge {
        /// The object.
        uri: String,
        /// The ConfigMap.
        name: String,
        /// Size of the object.
        size: usize,
        /// Size of the ConfigMap's data with it.
        total: usize,
    },
    /// An object in a ConfigMap is not UTF-8 text.
    #[error("{uri} is not UTF-8 text; ConfigMap storage holds JSON only")]
    NotText {
        /// The object.
        uri: String,
    },
    /// A Kubernetes API call failed.
    #[error("{operation} {uri}: {source}")]
    Kube {
        /// read, write, delete, list.
        operation: &'static str,
        /// The ConfigMap or key.
        uri: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

impl StorageError {
    /// Another attempt of the operation, after a backoff, may succeed: the store answered with a
    /// server error or not at all (object_store has retried such requests itself by then), or the
    /// Kubernetes API was busy. Missing or existing objects, refused credentials and wrong
    /// settings fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Object { source, .. } => matches!(
                source,
                object_store::Error::Generic { .. } | object_store::Error::JoinError { .. }
            ),
            StorageError::Kube { source, .. } => match source {
                kube::Error::Api(status) => status.code >= 500 || matches!(status.code, 409 | 429),
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                _ => false,
            },
            StorageError::Invalid(_)
            | StorageError::Secret(_)
            | StorageError::Denied { .. }
            | StorageError::Full { .. }
            | StorageError::Open { .. }
            | StorageError::AlreadyExists { .. }
            | StorageError::NotFound { .. }
            | StorageError::LocalRead { .. }
            | StorageError::NoKubernetes { .. }
            | StorageError::ConfigMapKeyNotFound { .. }
            | StorageError::LocalFile { .. }
            | StorageError::TooLarge { .. }
            | StorageError::NotText { .. } => false,
        }
    }
}

/// What opening a location needs besides the storage block.
#[derive(Clone, Debug)]
pub struct StorageEnv {
    /// Directory under which PVCs are mounted, one directory per claim name.
    pub pvc_root: PathBuf,
    /// Where ConfigMap storage lives: the Kubernetes API in the resource's namespace, the local
    /// ConfigMap store of `run -f`, or nowhere.
    pub config_maps: configmap::ConfigMapStore,
}

impl Default for StorageEnv {
    fn default() -> Self {
        StorageEnv {
            pvc_root: PathBuf::from("/data"),
            config_maps: configmap::ConfigMapStore::None,
        }
    }
}

/// An opened storage location.
#[derive(Clone, Debug)]
pub enum Location {
    /// Object storage or a directory.
    Object(ObjectLocation),
    /// Keys of a ConfigMap.
    ConfigMap(configmap::ConfigMapLocation),
}

/// A prefix in an object store (or a directory through [`LocalFileSystem`]).
#[derive(Clone)]
pub struct ObjectLocation {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    uri_base: String,
    /// The same store when it is a local directory (PVC or `--pvc-root`).
    local: Option<Arc<LocalFileSystem>>,
    /// That directory.
    local_dir: Option<std::path::PathBuf>,
    /// Where its credentials come from, for the message when they are refused.
    credentials: Option<String>,
}

impl std::fmt::Debug for ObjectLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLocation")
            .field("uri", &self.uri_base)
            .finish()
    }
}

/// An object below a location's prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the listed directory.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

impl Location {
    /// Opens the location a storage block names, its requests retried as
    /// [`crate::ops::execution`] retries them by default.
    pub fn open(
        spec: &StorageSpec,
        secrets: &SecretStore,
        env: &StorageEnv,
    ) -> Result<Location, StorageError> {
        let retry = crate::ops::execution::Policy::of(None).storage_retry();
        Location::open_retrying(spec, secrets, env, retry)
    }

    /// Opens the location a storage block names; an HTTP store (S3, Azure, GCS) retries a
    /// request that fails for a passing reason as `retry` says (the operation's
    /// `execution.retryTimeoutSeconds`, [`crate::ops::execution::Policy::storage_retry`]) and
    /// counts each such failure in `kafka_backup_operator_retries_total`.
    pub fn open_retrying(
        spec: &StorageSpec,
        secrets: &SecretStore,
        env: &StorageEnv,
        retry: object_store::RetryConfig,
    ) -> Result<Location, StorageError> {
        let missing =
            |block: &str| StorageError::Invalid(format!("type {:?} needs the {block} block", spec.type_));
        match spec.type_ {
            StorageType::S3 => {
                let s3 = spec.s3.as_ref().ok_or_else(|| missing("s3"))?;
                let mut builder = match &s3.credentials_secret {
                    Some(secret) => AmazonS3Builder::new()
                        .with_access_key_id(secrets.get_text(&secret.name, &secret.access_key_id_key)?)
                        .with_secret_access_key(
                            secrets.get_text(&secret.name, &secret.secret_access_key_key)?,
                        ),
                    // The default AWS chain: environment, web identity (IRSA), Pod Identity, IMDS.
                    None => AmazonS3Builder::from_env(),
                };
                builder = builder
                    .with_bucket_name(&s3.bucket)
                    .with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()));
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(path_style) = s3.path_style {
                    builder = builder.with_virtual_hosted_style_request(!path_style);
                }
                if let Some(allow_http) = s3.allow_http {
                    builder = builder.with_allow_http(allow_http);
                }
                let built = builder
                    .with_retry(retry)
                    .with_http_connector(http::CountingConnector)
                    .build();
                let credentials = credentials_of(
                    s3.credentials_secret.as_ref().map(|s| s.name.as_str()),
                    "the AWS credential chain (environment, web identity, instance metadata)",
                );
                opened(
                    built,
                    format!("s3://{}", s3.bucket),
                    s3.prefix.as_deref(),
                    credentials,
                )
            }
            StorageType::Azure => {
                let azure = spec.azure.as_ref().ok_or_else(|| missing("azure"))?;
                let env = azure::AzureEnv::from_process();
                let credentials = azure::credentials(azure, secrets, &env)?;
                let builder = azure::builder(azure, &credentials, &env);
                let built = builder
                    .with_retry(retry)
                    .with_http_connector(http::CountingConnector)
                    .build();
                let secret = azure
                    .credentials_secret
                    .as_ref()
                    .map(|s| s.name.as_str())
                    .or(azure.sas_token_secret.as_ref().map(|s| s.name.as_str()))
                    .or(azure.service_principal_secret.as_ref().map(|s| s.name.as_str()));
                let credentials = credentials_of(
                    secret,
                    "the Azure credential chain (environment, workload or managed identity)",
                );
                opened(
                    built,
                    format!("az://{}", azure.container),
                    azure.prefix.as_deref(),
                    credentials,
                )
            }
            StorageType::Gcs => {
                let gcs = spec.gcs.as_ref().ok_or_else(|| missing("gcs"))?;
                let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&gcs.bucket);
                if let Some(secret) = &gcs.credentials_secret {
                    builder = builder.with_service_account_key(
                        secrets.get_text(&secret.name, &secret.service_account_json_key)?,
                    );
                }
                let built = builder
                    .with_retry(retry)
                    .with_http_connector(http::CountingConnector)
                    .build();
                let credentials = credentials_of(
                    gcs.credentials_secret.as_ref().map(|s| s.name.as_str()),
                    "the Google credential chain (environment, workload identity)",
                );
                opened(
                    built,
                    format!("gs://{}", gcs.bucket),
                    gcs.prefix.as_deref(),
                    credentials,
                )
            }
            StorageType::Pvc => {
                let pvc = spec.pvc.as_ref().ok_or_else(|| missing("pvc"))?;
                let sub_path = pvc.sub_path.as_deref().unwrap_or("").trim_matches('/');
                if pvc.claim_name.contains('/') || sub_path.split('/').any(|s| s == "..") {
                    return Err(StorageError::Invalid(format!(
                        "pvc claimName {:?} / subPath {:?} must stay inside the volume",
                        pvc.claim_name, sub_path
                    )));
                }
                let mut dir = env.pvc_root.join(&pvc.claim_name);
                let mut uri = format!("pvc://{}", pvc.claim_name);
                if !sub_path.is_empty() {
                    dir = dir.join(sub_path);
                    uri = format!("{uri}/{sub_path}");
                }
                ObjectLocation::directory(&dir, uri).map(Location::Object)
            }
            StorageType::ConfigMap => {
                let cm = spec.config_map.as_ref().ok_or_else(|| missing("configMap"))?;
                configmap::ConfigMapLocation::new(&cm.name, &env.config_maps).map(Location::ConfigMap)
            }
        }
    }

    /// The URI of a key, for status and messages.
    pub fn uri(&self, key: &str) -> String {
        match self {
            Location::Object(o) => o.uri(key),
            Location::ConfigMap(c) => c.uri(key),
        }
    }

    /// Writes a new object; fails with [`StorageError::AlreadyExists`] when the key is taken.
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        match self {
            Location::Object(o) => o.put_new(key, bytes).await,
            Location::ConfigMap(c) => c.put_new(key, bytes).await,
        }
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self {
            Location::Object(o) => o.get(key).await,
            Location::ConfigMap(c) => c.get(key).await,
        }
    }

    /// Deletes an object; `false` when it did not exist.
    pub async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        match self {
            Location::Object(o) => o.delete(key).await,
            Location::ConfigMap(c) => c.delete(key).await,
        }
    }

    /// The objects directly or indirectly below `dir` (keys relative to it).
    pub async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        match self {
            Location::Object(o) => o.list(dir).await,
            Location::ConfigMap(c) => c.list().await,
        }
    }
}

/// A local directory (created when missing) as the location `file://<dir>`: the embedded default,
/// which `serve` lists as its default catalog location and where `run -f` keeps the snapshots of
/// resources that name no storage.
pub fn embedded_default(dir: &std::path::Path) -> Result<Location, StorageError> {
    ObjectLocation::directory(dir, format!("file://{}", dir.display())).map(Location::Object)
}

impl From<ObjectLocation> for Location {
    fn from(location: ObjectLocation) -> Self {
        Location::Object(location)
    }
}

impl ObjectLocation {
    /// A prefix in a store; `uri_base` names the bucket or container (`s3://bucket`).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Option<&str>, uri_base: String) -> Self {
        let prefix = prefix.unwrap_or("").trim_matches('/');
        let uri_base = if prefix.is_empty() {
            uri_base
        } else {
            format!("{uri_base}/{prefix}")
        };
        ObjectLocation {
            store,
            prefix: Path::from(prefix),
            uri_base,
            local: None,
            local_dir: None,
            credentials: None,
        }
    }

    /// The same location, naming where its credentials come from when they are refused.
    pub fn with_credentials(mut self, credentials: String) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The error of `operation` on `key` failing with `source`: refused credentials
    /// ([`StorageError::Denied`], naming them) and a full volume ([`StorageError::Full`], naming
    /// the file) told apart from other failures.
    pub fn error(&self, operation: &'static str, key: &str, source: object_store::Error) -> StorageError {
        let uri = self.uri(key);
        if matches!(
            source,
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
        ) {
            return StorageError::Denied {
                operation,
                uri,
                credentials: self
                    .credentials
                    .clone()
                    .unwrap_or_else(|| "this location".to_owned()),
                source: Box::new(source),
            };
        }
        if is_storage_full(&source) {
            let path = self.local_dir.as_ref().map_or_else(
                || uri.clone(),
                |dir| dir.join(key.trim_start_matches('/')).display().to_string(),
            );
            return StorageError::Full { operation, uri, path };
        }
        StorageError::Object {
            operation,
            uri,
            source,
        }
    }

    /// A local directory (created when missing) as a location. Every write is durable when it
    /// returns (file and directory fsynced): a manifest that says Complete must not outlive the
    /// segments it lists when the node crashes, and a snapshot taken before a reset must survive it.
    pub fn directory(dir: &std::path::Path, uri: String) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Invalid(format!("cannot create directory {}: {e}", dir.display())))?;
        let local = Arc::new(
            LocalFileSystem::new_with_prefix(dir)
                .map_err(|source| StorageError::Open {
                    uri: uri.clone(),
                    source,
                })?
                .with_automatic_cleanup(true)
                .with_fsync(true),
        );
        Ok(ObjectLocation {
            store: local.clone(),
            prefix: Path::default(),
            uri_base: uri,
            local: Some(local),
            local_dir: Some(dir.to_owned()),
            credentials: None,
        })
    }

    /// Drops a stored object's pages from the page cache of a local location (no-op for object
    /// stores). Backups write far more than anyone reads back soon: left cached, segments would
    /// push the node's useful cache (a co-located broker's log) out, and every new segment would
    /// need fresh pages, which costs more CPU than writing it. The object must be synced (every
    /// write of a local location is), since only clean pages can be dropped. Blocking; best effort.
    pub fn drop_cached(&self, key: &str) {
        let Some(local) = &self.local else { return };
        if let Ok(file) = local.path_to_filesystem(&self.path(key))
            && let Ok(file) = std::fs::File::open(file)
        {
            let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
        }
    }

    /// The directory of a local location (PVC, `--catalog-dir`); `None` for object stores.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    /// The object store and the full path of a key, for streaming reads and multipart writes.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The full path of a key in the store.
    pub fn path(&self, key: &str) -> Path {
        let mut path = self.prefix.clone();
        for part in key.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        path
    }

    /// The URI of a key.
    pub fn uri(&self, key: &str) -> String {
        format!("{}/{}", self.uri_base, key.trim_start_matches('/'))
    }

    /// Writes a new object with a conditional put; fails when the key exists.
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store.put_opts(&self.path(key), bytes.into(), options).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Err(StorageError::AlreadyExists { uri: self.uri(key) })
            }
            Err(source) => Err(self.error("write", key, source)),
        }
    }

    /// Writes an object, replacing it (checkpoints, progress).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&self.path(key), bytes.into())
            .await
            .map(|_| ())
            .map_err(|source| self.error("write", key, source))
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let result = match self.store.get(&self.path(key)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(self.error("read", key, source));
            }
        };
        result
            .bytes()
            .await
            .map(Some)
            .map_err(|source| self.error("read", key, source))
    }

    /// Reads an object that will not be read again soon (a segment during a restore), into
    /// `buffer`'s allocation where it can; `None` when it does not exist. On a local location the
    /// file's pages leave the page cache once read, for the reasons of [`Self::drop_cached`]; the
    /// reused buffer spares the page faults of a fresh multi-MiB allocation per segment.
    pub async fn read_once(&self, key: &str, buffer: Vec<u8>) -> Result<Option<Bytes>, StorageError> {
        let Some(local) = &self.local else {
            return self.get(key).await;
        };
        let read_error = |source: std::io::Error| StorageError::LocalRead {
            uri: self.uri(key),
            source,
        };
        let file = local
            .path_to_filesystem(&self.path(key))
            .map_err(|source| self.error("read", key, source))?;
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
            use std::io::Read;
            let mut file = match std::fs::File::open(file) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
            let mut buffer = buffer;
            buffer.clear();
            file.read_to_end(&mut buffer)?;
            let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
            Ok(Some(buffer))
        })
        .await
        .map_err(|e| read_error(std::io::Error::other(e)))?;
        read.map(|b| b.map(Bytes::from)).map_err(read_error)
    }

    /// Deletes an object; `false` when it did not exist.
    pub async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let path = self.path(key);
        match self.store.head(&path).await {
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(source) => {
                return Err(self.error("delete", key, source));
            }
            Ok(_) => {}
        }
        self.store
            .delete(&path)
            .await
            .map(|()| true)
            .map_err(|source| self.error("delete", key, source))
    }

    /// Every object below `dir`, keys relative to `dir`.
    pub async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let base = self.path(dir);
        let base_str = base.to_string();
        let objects: Vec<_> = self
            .store
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|source| self.error("list", dir, source))?;
        Ok(objects
            .into_iter()
            .map(|meta| {
                let full = meta.location.to_string();
                let key = full
                    .strip_prefix(&base_str)
                    .unwrap_or(&full)
                    .trim_start_matches('/')
                    .to_owned();
                ObjectInfo {
                    key,
                    size: meta.size,
                    last_modified: meta.last_modified,
                }
            })
            .collect())
    }
}

/// An object store just built, as a location at `prefix` whose credentials come from
/// `credentials`.
fn opened(
    built: object_store::Result<impl ObjectStore>,
    uri: String,
    prefix: Option<&str>,
    credentials: String,
) -> Result<Location, StorageError> {
    let store = built.map_err(|source| StorageError::Open {
        uri: uri.clone(),
        source,
    })?;
    Ok(ObjectLocation::new(Arc::new(store), prefix, uri)
        .with_credentials(credentials)
        .into())
}

/// Where a location's credentials come from, for messages: `Secret NAME`, or `chain`.
fn credentials_of(secret: Option<&str>, chain: &str) -> String {
    secret.map_or_else(|| chain.to_owned(), |name| format!("Secret {name}"))
}

/// An error and its causes, each once: object_store's messages stop at "error sending
/// request" where the cause (a refused connection, a timeout) is what the user needs to know.
fn causes(error: &object_store::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = e.source();
    }
    text
}

/// The failure is a full file system (ENOSPC, or EDQUOT of a quota), somewhere in its chain of
/// causes (object_store's local store wraps the `io::Error`).
fn is_storage_full(error: &object_store::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::v1beta1::PvcStorage;

    fn pvc(root: &std::path::Path, sub_path: Option<&str>) -> (StorageSpec, StorageEnv) {
        let spec = StorageSpec {
            type_: StorageType::Pvc,
            pvc: Some(PvcStorage {
                claim_name: "backups".into(),
                sub_path: sub_path.map(Into::into),
            }),
            s3: None,
            azure: None,
            gcs: None,
            config_map: None,
        };
        let env = StorageEnv {
            pvc_root: root.to_owned(),
            config_maps: configmap::ConfigMapStore::None,
        };
        (spec, env)
    }

    #[tokio::test]
    async fn segments_are_read_once_into_the_given_buffer() {
        let root = tempfile::tempdir().unwrap();
        let (spec, env) = pvc(root.path(), None);
        let Location::Object(location) = Location::open(&spec, &SecretStore::None, &env).unwrap() else {
            panic!("a PVC is an object location");
        };
        let data = Bytes::from(vec![7u8; 300_000]);
        location.put_new("backups/b/seg", data.clone()).await.unwrap();
        // Stored and synced, its pages dropped: it reads back the same.
        location.drop_cached("backups/b/seg");
        let buffer = Vec::with_capacity(1 << 20);
        let at = buffer.as_ptr();
        let read = location
            .read_once("backups/b/seg", buffer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, data);
        assert_eq!(
            read.as_ptr(),
            at,
            "read into the buffer given, not a new allocation"
        );
        assert_eq!(
            location.read_once("backups/b/missing", Vec::new()).await.unwrap(),
            None
        );
        // Object stores read as `get`.
        let memory = ObjectLocation::new(
            Arc::new(object_store::memory::InMemory::new()),
            None,
            "memory://".into(),
        );
        memory.put("k", data.clone()).await.unwrap();
        assert_eq!(memory.read_once("k", Vec::new()).await.unwrap(), Some(data));
        memory.drop_cached("k");
        assert_eq!(memory.read_once("missing", Vec::new()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn pvc_location_writes_create_only_and_lists() {
        let root = tempfile::tempdir().unwrap();
        let (spec, env) = pvc(root.path(), Some("team-a"));
        let location = Location::open(&spec, &SecretStore::None, &env).unwrap();
        assert_eq!(
            location.uri("offset-snapshots/s1.json"),
            "pvc://backups/team-a/offset-snapshots/s1.json"
        );
        location
            .put_new("offset-snapshots/s1.json", Bytes::from_static(b"one"))
            .await
            .unwrap();
        let again = location
            .put_new("offset-snapshots/s1.json", Bytes::from_static(b"two"))
            .await;
        assert!(
            matches!(again, Err(StorageError::AlreadyExists { .. })),
            "{again:?}"
        );
        assert_eq!(
            location.get("offset-snapshots/s1.json").await.unwrap().unwrap(),
            "one"
        );
        assert!(
            root.path()
                .join("backups/team-a/offset-snapshots/s1.json")
                .is_file()
        );
        let listed = location.list("offset-snapshots").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "s1.json");
        assert!(location.delete("offset-snapshots/s1.json").await.unwrap());
        assert!(!location.delete("offset-snapshots/s1.json").await.unwrap());
        assert_eq!(location.get("offset-snapshots/s1.json").await.unwrap(), None);
    }

    #[test]
    fn a_full_volume_is_named_and_not_retried() {
        let root = tempfile::tempdir().unwrap();
        let (spec, env) = pvc(root.path(), Some("team"));
        let Location::Object(location) = Location::open(&spec, &SecretStore::None, &env).unwrap() else {
            panic!("a PVC is an object location");
        };
        // As object_store's local store reports a write that ran out of space.
        let full = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from_raw_os_error(28)),
        };
        let e = location.error("write", "backups/b/seg", full);
        assert!(matches!(e, StorageError::Full { .. }), "{e:?}");
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(text.contains("ENOSPC"), "{text}");
        let file = root.path().join("backups/team/backups/b/seg");
        assert!(text.contains(&file.display().to_string()), "{text}");
        // Any other local failure stays an object error.
        let other = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::other("disk on fire")),
        };
        let e = location.error("write", "k", other);
        assert!(
            matches!(e, StorageError::Object { .. }) && e.is_retryable(),
            "{e:?}"
        );
        assert!(e.to_string().contains("disk on fire"), "{e}");
    }

    #[test]
    fn refused_credentials_name_their_secret_and_are_not_retried() {
        let location = ObjectLocation::new(
            Arc::new(object_store::memory::InMemory::new()),
            Some("p"),
            "s3://bucket".into(),
        )
        .with_credentials("Secret s3-creds".into());
        let denied = object_store::Error::PermissionDenied {
            path: "p/k".into(),
            source: Box::new(std::io::Error::other("403 Forbidden: AccessDenied")),
        };
        let e = location.error("read", "k", denied);
        assert!(!e.is_retryable());
        let text = e.to_string();
        assert!(
            text.starts_with("read s3://bucket/p/k: the storage refused the credentials of Secret s3-creds"),
            "{text}"
        );
    }

    #[test]
    fn pvc_sub_path_cannot_escape_the_volume() {
        let root = tempfile::tempdir().unwrap();
        let (spec, env) = pvc(root.path(), Some("../other"));
        let e = Location::open(&spec, &SecretStore::None, &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("must stay inside the volume"), "{e}");
    }
}
