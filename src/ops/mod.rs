//! The operations the five kinds stand for, one module per operation. Each takes the admitted
//! v1beta1 resource and a [`Context`] (secrets, storage, progress, cancellation) and returns the
//! status to report; the reconciler and `run -f` call the same functions.

pub mod approval;
pub mod backup;
pub mod execution;
pub mod group_commit;
pub mod offset_reset;
pub mod offset_rollback;
pub mod restore;
pub mod shard;
pub mod validation;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Arc,
};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rdkafka::consumer::BaseConsumer;
use tokio_util::sync::CancellationToken;

use crate::{
    api::v1beta1::{BackupRef, ConfigMapStorage, ExecutionSpec, StorageSpec, StorageType},
    kafka::{
        ClusterAccess, KafkaError,
        groups::{Committed, Partition},
        protocol::GroupAdmin,
        topics,
    },
    secrets::SecretStore,
    storage::{self, Location, StorageEnv, StorageError},
};

/// A progress report: `done` of `total` units (groups, records, bytes) and what is happening.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// What the units are and what is happening, e.g. "groups reset".
    pub message: String,
    /// The operation's status so far (its kind's status type as JSON), for an operation that
    /// reports one: the reconciler writes its fields while the operation runs. A field that must
    /// be cleared is `null`.
    pub status: Option<serde_json::Value>,
}

/// Receives progress reports (a terminal bar with `run -f`, rate-limited status writes in the
/// reconciler).
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// The resource an operation runs for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRef {
    /// Its kind.
    pub kind: String,
    /// Its namespace (absent with `run -f` when the manifest has none).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid (absent with `run -f`).
    pub uid: Option<String>,
}

/// What an operation needs besides its resource.
#[derive(Clone)]
pub struct Context {
    /// The resource.
    pub resource: ResourceRef,
    /// The Secrets it names.
    pub secrets: SecretStore,
    /// How storage blocks are opened.
    pub storage: StorageEnv,
    /// Progress reports.
    pub progress: ProgressSink,
    /// Cancelled when the resource is deleted or the process stops.
    pub cancel: CancellationToken,
    /// Directory for scratch files that need not survive (never durable state).
    pub scratch_dir: PathBuf,
    /// Hears of every failed attempt ([`execution::attempts`]).
    pub attempt_failed: execution::AttemptHook,
    /// Where offset snapshots go, and are looked for, when the resource names no storage.
    pub default_snapshots: DefaultSnapshots,
}

/// Where offset snapshots go, and are looked for by id, when a resource names no storage.
#[derive(Clone)]
pub enum DefaultSnapshots {
    /// In a cluster: snapshots go to a ConfigMap named after the resource, in its namespace; a
    /// snapshot named by id alone is looked up among the catalog's locations of the namespace
    /// (`None`: there is no catalog to ask).
    Cluster(Option<SnapshotLookup>),
    /// Without Kubernetes (`run -f`): the embedded default location, the directory `serve` lists
    /// as its default catalog location (`--catalog-dir`, default `<state-dir>/catalog`). Opened
    /// when first needed.
    Embedded(PathBuf),
}

impl Default for DefaultSnapshots {
    fn default() -> Self {
        DefaultSnapshots::Cluster(None)
    }
}

impl std::fmt::Debug for DefaultSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DefaultSnapshots::Cluster(lookup) => f
                .debug_tuple("Cluster")
                .field(&lookup.as_ref().map(|_| "catalog lookup"))
                .finish(),
            DefaultSnapshots::Embedded(dir) => f.debug_tuple("Embedded").field(dir).finish(),
        }
    }
}

/// Finds a snapshot by id among the storage locations known to a namespace (the catalog's):
/// called with the namespace and the snapshot id.
pub type SnapshotLookup = Arc<dyn Fn(String, String) -> BoxFuture<'static, SnapshotSearch> + Send + Sync>;

/// The outcome of looking a snapshot id up in several locations.
#[derive(Clone, Debug, Default)]
pub struct SnapshotSearch {
    /// The locations holding it.
    pub found: Vec<Location>,
    /// Every location looked in, by URI, with why it could not be read where that happened.
    pub searched: Vec<String>,
}

impl Context {
    /// A context with no progress sink and no attempt hook, for tests and tools.
    pub fn new(resource: ResourceRef, secrets: SecretStore, storage: StorageEnv) -> Self {
        Context {
            resource,
            secrets,
            storage,
            progress: Arc::new(|_| {}),
            cancel: CancellationToken::new(),
            scratch_dir: std::env::temp_dir(),
            attempt_failed: Arc::new(|_| {}),
            default_snapshots: DefaultSnapshots::default(),
        }
    }

    /// Opens where a snapshot of the resource `resource_name` goes: `storage` when the resource
    /// names it, else the default ([`DefaultSnapshots`]: a ConfigMap named `resource_name` in a
    /// cluster, the embedded default location without one); requests retried as
    /// [`open_storage`] does.
    pub fn snapshot_location(
        &self,
        storage: Option<&StorageSpec>,
        execution: Option<&ExecutionSpec>,
        resource_name: &str,
    ) -> Result<Location, StorageError> {
        match (storage, &self.default_snapshots) {
            (Some(storage), _) => open_storage(storage, execution, self),
            (None, DefaultSnapshots::Embedded(dir)) => storage::embedded_default(dir),
            (None, DefaultSnapshots::Cluster(_)) => {
                open_storage(&default_snapshot_storage(resource_name), execution, self)
            }
        }
    }

    /// Reports progress.
    pub fn report(&self, done: u64, total: Option<u64>, message: impl Into<String>) {
        (self.progress)(Progress {
            done,
            total,
            message: message.into(),
            status: None,
        });
    }

    /// Reports progress with the operation's status so far.
    pub fn report_status(
        &self,
        done: u64,
        total: Option<u64>,
        message: impl Into<String>,
        status: serde_json::Value,
    ) {
        (self.progress)(Progress {
            done,
            total,
            message: message.into(),
            status: Some(status),
        });
    }
}

/// Opens the location a storage block names, its requests retried for the operation's
/// `execution.retryTimeoutSeconds` ([`execution::Policy::storage_retry`]).
pub fn open_storage(
    spec: &StorageSpec,
    execution: Option<&ExecutionSpec>,
    ctx: &Context,
) -> Result<Location, StorageError> {
    let retry = execution::Policy::of(execution).storage_retry();
    Location::open_retrying(spec, &ctx.secrets, &ctx.storage, retry)
}

/// A Kubernetes timestamp.
pub fn time(at: DateTime<Utc>) -> Time {
    Time(jiff_from(at))
}

fn jiff_from(at: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or_default()
}

/// The default snapshot id: `<name>-<UTC YYYYMMDD-HHMMSS>`, the name shortened so the id fits
/// the 248 characters a snapshot id may have.
pub fn default_snapshot_id(name: &str, at: DateTime<Utc>) -> String {
    let suffix = at.format("-%Y%m%d-%H%M%S").to_string();
    let keep = 248 - suffix.len();
    let name: String = name.chars().take(keep).collect();
    format!("{name}{suffix}")
}

/// Where a snapshot goes in a cluster when the resource names no storage: a ConfigMap named after
/// the resource, in its namespace (see [`Context::snapshot_location`]).
pub fn default_snapshot_storage(resource_name: &str) -> StorageSpec {
    StorageSpec {
        type_: StorageType::ConfigMap,
        pvc: None,
        s3: None,
        azure: None,
        gcs: None,
        config_map: Some(ConfigMapStorage {
            name: resource_name.to_owned(),
        }),
    }
}

/// OffsetFetch requests in flight while the backup and restore engines read group offsets.
const GROUP_READS_IN_FLIGHT: usize = 8;

/// The committed offsets on `partitions` of every consumer group of the cluster that has some
/// there, and of the groups in `also` (recorded even with none): the groups are listed once and
/// read with batched OffsetFetch requests.
pub async fn groups_committed_on(
    access: &ClusterAccess,
    admin: &GroupAdmin,
    partitions: &BTreeSet<Partition>,
    also: &[String],
) -> Result<BTreeMap<String, BTreeMap<Partition, Committed>>, KafkaError> {
    let config = access.rdkafka_config();
    let mut groups: BTreeSet<String> = blocking(move || {
        let consumer: BaseConsumer = config
            .create()
            .map_err(KafkaError::client("creating the Kafka client"))?;
        topics::list_groups(&consumer)
    })
    .await?
    .into_iter()
    .collect();
    groups.extend(also.iter().cloned());
    let groups: Vec<String> = groups.into_iter().collect();
    let mut committed = admin
        .committed_all(&groups, partitions, GROUP_READS_IN_FLIGHT)
        .await?;
    committed.retain(|group, offsets| !offsets.is_empty() || also.contains(group));
    Ok(committed)
}

/// Runs blocking Kafka client work on the blocking pool.
pub async fn blocking<T, F>(work: F) -> Result<T, crate::kafka::KafkaError>
where
    F: FnOnce() -> Result<T, crate::kafka::KafkaError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| crate::kafka::KafkaError::Join(e.to_string()))?
}

/// The storage block and backup id `backup_ref` names, as an engine reads them: the reconciler
/// has already turned a `kafkaBackupRef` into both; without the Kubernetes API (`run -f`) one is
/// refused. `Err((field, message))` names what is missing.
pub fn stored_backup_ref(backup_ref: &BackupRef) -> Result<(&StorageSpec, String), (&'static str, String)> {
    match (&backup_ref.storage, &backup_ref.kafka_backup_ref) {
        (Some(storage), _) => match &backup_ref.backup_id {
            Some(id) => Ok((storage, id.clone())),
            None => Err((
                "spec.backupRef.backupId",
                "required with backupRef.storage".into(),
            )),
        },
        (None, Some(r)) => Err((
            "spec.backupRef.kafkaBackupRef",
            format!(
                "reading KafkaBackup {} needs the Kubernetes API (the reconciler resolves it); without one, name the backup's storage and backupId in backupRef",
                r.name
            ),
        )),
        (None, None) => Err(("spec.backupRef", "needs storage and backupId".into())),
    }
}
