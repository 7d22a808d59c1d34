//! The in-process reconciler: one kube-runtime controller per kind (and per watched namespace)
//! that drives every KafkaBackup, KafkaRestore, KafkaOffsetReset, KafkaOffsetRollback and
//! KafkaBackupValidation through its lifecycle, gated by a Lease so one replica runs it.
//!
//! # Shape
//!
//! - [`kinds`]: the [`kinds::Operation`] trait, one impl per kind (how it runs, which Secrets it
//!   names, what to do with it after an operator restart). Adding a kind is one impl and one line in
//!   [`controller::run_controllers`].
//! - [`lifecycle`]: pure decisions: the next step for an object ([`lifecycle::decide`]), conditions,
//!   status patches, TTL.
//! - [`schedule`]: pure cron arithmetic: which tick fires now, how many were missed, the next one.
//! - [`crate::secrets::refs`]: the Secrets (and keys) a spec names, and reading them from the resource's
//!   namespace.
//! - [`supervisor`]: operations as tokio tasks keyed by UID: at most one per object, a global
//!   concurrency limit, cancellation.
//! - [`runner`]: the body of one supervised task: queueing, each retry of the engine's attempts
//!   ([`crate::ops::execution`]) as status Retrying and an Event, progress written at a bounded
//!   rate, the final status, Events, metrics, catalog notices.
//! - [`events`]: Kubernetes Events, a repeated one counted in a series.
//! - [`controller`]: the reconcile function (finalizer, validation, Secrets, start/cancel/TTL) and
//!   the controllers.
//! - [`leader`]: leader election on a `coordination.k8s.io/v1` Lease.
//! - [`resolve`]: references to other resources (`snapshotFrom`, `kafkaBackupRef`) turned into
//!   concrete ids and storage blocks before an operation starts.
//!
//! # Lifecycle
//!
//! A new object gets the finalizer [`FINALIZER`] and `status.phase: Pending`. The reconcile that
//! starts it re-judges it with [`crate::api::admission::validate`] (InvalidSpec: Failed), reads the
//! Secrets it names from its namespace (missing: stays Pending, `Ready=False` reason
//! SecretMissing, a Warning Event, retried every 30 s) and hands it to the supervisor; the task
//! writes `Running`, progress at most every [`ReconcilerArgs::progress_interval`], and the final
//! phase (Completed, PartiallyCompleted, Failed; KafkaBackup and KafkaBackupValidation also
//! Suspended). Every phase change is an Event. A KafkaOffsetReset with `approval: Manual` ends
//! its run in PendingApproval with its plan instead ([`crate::ops::approval`]), and runs again
//! only for an approval not refused before, a `kafka.oso.sh/refresh-plan: "true"` (removed from
//! the object before the run) or a new spec. Deleting the object cancels its task; the
//! finalizer is removed once the task has stopped. Nothing stored (backups, snapshots, mappings,
//! evidence) is deleted with the resource: those are listed by the catalog and deleted by
//! retention or a KafkaOffsetRollback `Delete`.
//!
//! # After an operator restart (or a leader change)
//!
//! An object found `Running` that no task of this process runs is judged by
//! [`kinds::Operation::on_restart`]:
//!
//! - KafkaBackup, KafkaRestore, KafkaBackupValidation: **resumed** — the operation runs again and
//!   continues from the checkpoints it keeps in storage (a validation is read-only and restarts).
//! - KafkaOffsetRollback `Rollback` and `Verify` and every dry run: **resumed** — they commit or
//!   compare the absolute offsets of a stored snapshot, so running them again is idempotent. So is
//!   a KafkaOffsetReset with `approval: Manual` and no `kafka.oso.sh/approve` annotation: it can
//!   only have planned.
//! - KafkaOffsetReset (not dry run), KafkaOffsetRollback `Snapshot` and `Delete`: **Failed, reason
//!   Interrupted**, with a message saying what may have happened and what to do. A reset is not
//!   re-run because a second run would snapshot the partly reset offsets as its "pre-change"
//!   snapshot (and ShiftBy/ByDuration would move offsets again); the pre-change snapshot of the
//!   first run, if it was stored, is still in the catalog and restores the groups with a
//!   KafkaOffsetRollback.
//!
//! On a clean shutdown (SIGTERM) resumable operations are cancelled without touching their status
//! (the next leader resumes them); the others get a few seconds to report what they did.
//!
//! # Schedules
//!
//! `lastScheduleTime` is written (with the object's resourceVersion as precondition) before a
//! scheduled run starts, and a tick is only fired when it is later than `lastScheduleTime`, so a
//! tick fires once across restarts and leader changes. Ticks that passed while the operator was
//! down or while the previous run was still running are counted and reported (Event
//! MissedSchedule, condition `Degraded`) when the next run starts, never replayed.
//!
//! The requeue contract: kube-runtime's controller holds at most one pending reconcile per
//! object, and a watch event takes the place of a requeue asked for earlier (a run's own status
//! patches, `lastScheduleTime`, Running, progress, the final status, each come back as one).
//! So every reconcile of a scheduled object that is not suspended returns a requeue no later than
//! just after its next tick ([`lifecycle::requeue_after`]), whatever it decided: when it fires
//! the tick, while the run is still in progress, and when it sees the run's final status, with
//! the task still registered or not. In addition, every task that ends triggers one more
//! reconcile of its object ([`supervisor::Supervisor::subscribe_finished`], fed to the controller
//! with `reconcile_on`), so what follows a run (the next tick, a one-shot's TTL, a continuous
//! backup's restart with a new spec) never waits on a watch event that arrived while the task
//! was still registered.
//!
//! Each scheduled run's Events name its tick (`run for the tick ...: ...`), and Events are only
//! counted in a series when their note is the same ([`events`]), so every run's Events say that
//! run's tick and result.

pub mod controller;
pub mod events;
pub mod kinds;
pub mod leader;
pub mod lifecycle;
pub mod resolve;
pub mod runner;
pub mod schedule;

pub mod supervisor;

use std::{sync::Arc, time::Duration};

use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    metrics::Metrics,
    ops::SnapshotLookup,
    storage::{Location, StorageEnv},
};

/// The finalizer that makes deletion cancel a running operation first.
pub const FINALIZER: &str = "kafka.oso.sh/operation";

/// Field manager of every write the reconciler makes.
pub const FIELD_MANAGER: &str = "kafka-backup-operator";

/// Name of the reporting controller in Events.
pub const REPORTER: &str = "kafka-backup-operator";

/// Errors of the reconciler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What was being done, e.g. "patch status of KafkaBackup team-a/nightly".
        action: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The object has no uid, name or namespace (never the case for objects from the API).
    #[error("object has no {0}")]
    MissingMetadata(&'static str),
    /// A Lease could not be read or written.
    #[error("leader election: {0}")]
    Lease(String),
}

impl Error {
    /// A short label for the `reason` of the reconcile-error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::MissingMetadata(_) => "metadata",
            Error::Lease(_) => "lease",
        }
    }

    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

/// Flags of `serve` that concern the reconciler.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcilerArgs {
    /// Do not start the reconciler even when a Kubernetes API is reachable (webhooks and the
    /// aggregated API are still served).
    #[arg(long, env = "KBO_NO_RECONCILER")]
    pub no_reconciler: bool,
    /// Namespaces whose resources are reconciled, comma-separated; empty: all namespaces.
    #[arg(long, env = "KBO_NAMESPACES", value_delimiter = ',', value_name = "NS,...")]
    pub namespaces: Vec<String>,
    /// Operations (backups, restores, offset resets, ...) running at the same time in this
    /// process; more wait in phase Pending with condition Progressing reason Queued.
    #[arg(
        long,
        env = "KBO_MAX_CONCURRENT_OPERATIONS",
        default_value = "8",
        value_parser = clap::value_parser!(u32).range(1..=1024),
    )]
    pub max_concurrent_operations: u32,
    /// Least seconds between two progress updates of one object's status.
    #[arg(long, env = "KBO_PROGRESS_INTERVAL", default_value = "5", value_name = "SECONDS", value_parser = parse_seconds)]
    pub progress_interval: Duration,
    /// Do not elect a leader: this process reconciles as if it held the Lease. Only for a single
    /// replica (development); two such replicas would run every operation twice.
    #[arg(long, env = "KBO_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Namespace of the leader-election Lease [default: $POD_NAMESPACE, else the client's
    /// default namespace].
    #[arg(long, env = "KBO_LEADER_ELECTION_NAMESPACE", value_name = "NS")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, env = "KBO_LEASE_NAME", default_value = "kafka-backup-operator")]
    pub lease_name: String,
    /// Seconds a Lease stays valid without renewal; another replica takes over after that.
    #[arg(long, env = "KBO_LEASE_DURATION", default_value = "15", value_parser = parse_seconds)]
    pub lease_duration: Duration,
    /// Identity in the Lease [default: $POD_NAME, else the host name and process id].
    #[arg(long, env = "KBO_LEADER_IDENTITY", value_name = "ID")]
    pub leader_identity: Option<String>,
    /// Directory under which PersistentVolumeClaims are mounted (storage type PVC), one
    /// directory per claim name: `serve` sets it from `--pvc-root` (shared with the catalog).
    #[arg(skip = std::path::PathBuf::from("/data"))]
    pub pvc_root: std::path::PathBuf,
}

fn parse_seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err("must be more than 0 and at most 86400 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl Default for ReconcilerArgs {
    fn default() -> Self {
        ReconcilerArgs {
            no_reconciler: false,
            namespaces: Vec::new(),
            max_concurrent_operations: 8,
            progress_interval: Duration::from_secs(5),
            no_leader_election: false,
            leader_election_namespace: None,
            lease_name: "kafka-backup-operator".into(),
            lease_duration: Duration::from_secs(15),
            leader_identity: None,
            pvc_root: "/data".into(),
        }
    }
}

impl ReconcilerArgs {
    /// The identity written into the Lease: `--leader-identity`, `$POD_NAME`, or host name and pid.
    pub fn identity(&self) -> String {
        if let Some(id) = self.leader_identity.clone().filter(|s| !s.is_empty()) {
            return id;
        }
        if let Ok(pod) = std::env::var("POD_NAME")
            && !pod.is_empty()
        {
            return pod;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}-{}", std::process::id())
    }
}

/// What the reconciler tells the snapshot and backup catalog (the aggregated API) when an
/// operation has written something, so it is listed at once instead of at the next refresh.
#[derive(Clone, Debug)]
pub struct CatalogNotice {
    /// Namespace of the resource that ran the operation.
    pub namespace: String,
    /// `<Kind>/<name>` of that resource.
    pub resource: String,
    /// Every storage location the resource names, opened with its Secrets (locations known to the
    /// namespace).
    pub locations: Vec<Location>,
    /// What the operation wrote.
    pub written: Vec<Written>,
}

/// Something an operation stored.
#[derive(Clone, Debug)]
pub enum Written {
    /// An offset snapshot `<id>.json` (key [`crate::storage::snapshot::snapshot_key`]) in the
    /// location.
    Snapshot {
        /// Where.
        location: Location,
        /// Its id.
        snapshot_id: String,
    },
    /// A backup set (`backups/<id>/`) in the location.
    BackupSet {
        /// Where.
        location: Location,
        /// Its id.
        backup_id: String,
    },
}

/// The catalog hook: called (from the operation's task, must not block) after every finished
/// operation that stored a snapshot or a backup set.
pub type CatalogHook = Arc<dyn Fn(CatalogNotice) + Send + Sync>;

/// What the reconciler needs from the rest of the process.
#[derive(Clone)]
pub struct Hooks {
    /// Told about stored snapshots and backup sets; `None`: nobody listens.
    pub catalog: Option<CatalogHook>,
    /// Finds a snapshot a KafkaOffsetRollback names by id alone among the catalog's locations of
    /// its namespace; `None`: such a rollback fails, asking for its storage.
    pub snapshot_lookup: Option<SnapshotLookup>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("catalog", &self.catalog.is_some())
            .field("snapshot_lookup", &self.snapshot_lookup.is_some())
            .finish()
    }
}

/// Connects to the Kubernetes API if one is reachable: `kube::Client::try_default` (in-cluster
/// config or KUBECONFIG) and a version request. `None` (with the reason logged) when there is
/// none; `serve` then runs without the reconciler.
pub async fn connect() -> Option<Client> {
    let client = match Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            info!(reason = %e, "no Kubernetes API configured: the reconciler is off (webhooks and the aggregated API are served)");
            return None;
        }
    };
    // In a pod the API may be briefly unavailable at start: try for a minute there.
    let attempts = if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        12
    } else {
        1
    };
    for attempt in 1..=attempts {
        match client.apiserver_version().await {
            Ok(version) => {
                info!(version = %version.git_version, "Kubernetes API reachable");
                return Some(client);
            }
            Err(e) if attempt == attempts => {
                warn!(reason = %e, "Kubernetes API configured but not reachable: the reconciler is off (webhooks and the aggregated API are served)");
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(5)).await,
        }
    }
    None
}

/// Runs the reconciler until `shutdown` fires: elects a leader (unless
/// `--no-leader-election`), and while this process leads runs the controllers and their
/// operations. Losing the Lease cancels every operation without writing their status (the new
/// leader takes them over); `shutdown` cancels them, lets the non-resumable ones report for a few
/// seconds, and releases the Lease.
pub async fn run(
    client: Client,
    args: ReconcilerArgs,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let storage = StorageEnv {
        pvc_root: args.pvc_root.clone(),
        config_maps: crate::storage::configmap::ConfigMapStore::None,
    };
    let config = controller::Config {
        namespaces: args.namespaces.clone(),
        max_concurrent_operations: args.max_concurrent_operations as usize,
        progress_interval: args.progress_interval,
        storage,
        reporter_instance: Some(args.identity()),
    };
    if args.no_leader_election {
        warn!("leader election disabled (--no-leader-election): run one replica only");
        metrics.operator.set_leader(true);
        controller::run_controllers(client, config, metrics, hooks, shutdown.clone(), shutdown).await;
        return Ok(());
    }
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let elector = leader::LeaderElector::new(
        client.clone(),
        &namespace,
        &args.lease_name,
        &args.identity(),
        args.lease_duration,
    );
    info!(lease = %format!("{namespace}/{}", args.lease_name), identity = %elector.identity(), "leader election: waiting for the Lease");
    let metrics_for_leading = Arc::clone(&metrics);
    elector
        .run(
            shutdown.clone(),
            metrics.clone(),
            move |leading: CancellationToken| {
                let client = client.clone();
                let config = config.clone();
                let metrics = Arc::clone(&metrics_for_leading);
                let hooks = hooks.clone();
                let shutdown = shutdown.clone();
                async move {
                    controller::run_controllers(client, config, metrics, hooks, leading, shutdown).await;
                }
            },
        )
        .await
}
