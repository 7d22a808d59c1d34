//! `run -f FILE.yaml`: executes resources without Kubernetes.
//!
//! The files (repeat `-f`; a file may hold several YAML documents, as `kubectl apply -f` takes
//! them, [`documents`]) hold resources of the five kinds, v1alpha1 or v1beta1, and ConfigMaps.
//! Every resource is judged exactly as the admission webhook judges it (mutation with its
//! warnings, then validation: a denial is an error listing every field), converted to v1beta1
//! and handed to the same operation code the reconciler runs, one after the other in the order
//! given; a resource that does not complete stops the ones after it. Every document is judged
//! before anything runs. Each is read strictly, as kubectl's default field validation reads it:
//! a field its version's schema does not have is refused, naming its path and the nearest known
//! field (`spec.topcis: unknown field; did you mean spec.topics?`), and so is a value of the
//! wrong type or outside an enum, naming its path and the allowed values; a kind `run -f` does
//! not handle is refused naming its file, document and kind.
//! The status of each resource is printed as a YAML document on stdout, in order; the exit code
//! is 0 only when every one completed.
//!
//! What a cluster keeps, `run -f` keeps in local directories:
//!
//! - Secrets named by the resource are read from `--secrets-dir DIR`: `DIR/<secret name>/<key>`,
//!   one file per key, as a Secret volume mount lays them out.
//! - PVC storage `claimName: X` is the directory `<--pvc-root>/X` (default `/data`, as in the
//!   operator's pod).
//! - ConfigMaps live in the local ConfigMap store, `--configmaps-dir DIR` (default
//!   `<state-dir>/configmaps`): key `K` of ConfigMap `N` is the file `DIR/N/K`, for every
//!   namespace (as `--secrets-dir`). ConfigMap snapshot storage (`storageType: configMap`) keeps
//!   snapshots there with the keys and JSON the cluster's ConfigMaps hold, so snapshot,
//!   rollback, verify and delete work across separate runs; `mappingConfigMap` reads its key
//!   there; a ConfigMap document given with `-f` is stored there (its keys set, other keys kept)
//!   before any resource runs ([`crate::storage::configmap::local`]).
//! - Each KafkaBackup run is recorded in `<state-dir>/kafkabackups/<namespace>/<name>.yaml`
//!   ([`records`]); `backupRef: {name}` of a KafkaRestore or KafkaBackupValidation is resolved
//!   from that record by the reconciler's rule (its storage, and its current backup set unless
//!   the reference names one). A reference to a KafkaBackup never run here is refused, naming it
//!   and the file looked for.
//! - Offset snapshots of a resource that names no storage go to the embedded default location:
//!   the directory a local `serve` lists as its default catalog location (`--catalog-dir`,
//!   default `<state-dir>/catalog`, the same flags and variables as `serve`), so `kubectl get
//!   offsetsnapshots` shows them. A KafkaOffsetRollback naming a snapshot by id alone looks it
//!   up there.
//!
//! Where a snapshot went, which file a mapping was read from, where a ConfigMap or a KafkaBackup
//! was recorded and which record a `backupRef` was read from are said on stderr.
//! References to other resources' status (`snapshotFrom`, `fromMapping.restoreRef`) need the
//! Kubernetes API and are refused with a message saying so.

mod documents;
mod records;
mod workers;

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::Arc,
};

use documents::{ConfigMapDocument, Document, Origin};
use records::{DEFAULT_NAMESPACE, KafkaBackupRecords};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use workers::Workers;

use crate::{
    api::{GROUP, STORAGE_VERSION, admission, conversion, v1beta1},
    ops::{self, Context, DefaultSnapshots, Progress, ResourceRef},
    secrets::SecretStore,
    storage::{
        StorageEnv, StorageError,
        configmap::{ConfigMapStore, local::LocalConfigMap},
        snapshot::snapshot_key,
    },
};

/// Arguments of `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The resources and where what they need comes from.
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// Run a scheduled resource once, now, instead of on its schedule.
    #[arg(long)]
    pub once: bool,
    /// Split a one-shot KafkaBackup or a KafkaRestore over N worker processes of this program
    /// (`worker`), each copying its share of the partitions (a backup: into the same backup set;
    /// a restore: by target partition); their results are merged when all have ended. The files
    /// then hold exactly one such resource (and any ConfigMaps). 1: everything in this process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
    /// Compute the plan of the (one) KafkaOffsetReset as `approval: Manual` does, print it and
    /// its hash, and change nothing (exit 0 with phase PendingApproval).
    #[arg(long, conflicts_with = "approve")]
    pub plan_only: bool,
    /// Run the (one) KafkaOffsetReset only if its plan, computed afresh, still has this hash (as
    /// `--plan-only` printed it); otherwise change nothing, print the new plan and hash and exit
    /// non-zero. The same as the annotation kafka.oso.sh/approve in a cluster.
    #[arg(long, value_name = "HASH")]
    pub approve: Option<String>,
}

impl RunArgs {
    /// The flag of manual approval given, if any.
    fn approval_flag(&self) -> Option<&'static str> {
        if self.plan_only {
            Some("--plan-only")
        } else if self.approve.is_some() {
            Some("--approve")
        } else {
            None
        }
    }
}

/// Arguments of `worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The resource and where what it needs comes from, as for `run` (the files hold one
    /// KafkaBackup or KafkaRestore; their ConfigMaps were stored by the coordinator).
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// The shard this worker runs, 0 to --shards - 1 (an Indexed Job's pod has it in
    /// JOB_COMPLETION_INDEX).
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    pub shard_index: usize,
    /// How many shards the coordinator split the run into.
    #[arg(long)]
    pub shards: usize,
}

/// The resources `run` and `worker` execute, and where what they need comes from.
#[derive(clap::Args, Debug, Clone)]
pub struct ResourceArgs {
    /// The manifests, as for `kubectl apply -f`: repeat -f for several files, and a file may hold
    /// several YAML documents (`---`). KafkaOffsetReset, KafkaOffsetRollback, KafkaBackup,
    /// KafkaRestore and KafkaBackupValidation (either API version) run one after the other, in
    /// order; ConfigMaps (v1) are stored in the local ConfigMap store before any runs.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Directory of Secrets: DIR/<secret name>/<key>, one file per key.
    #[arg(long, env = "KBO_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Directory holding PVC storage: `pvc.claimName: X` is DIR/X.
    #[arg(long, env = "KBO_PVC_ROOT", default_value = "/data")]
    pub pvc_root: PathBuf,
    /// Namespace recorded for the resource when the manifest has none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// State directory, as for `serve`; KafkaBackups run are recorded in
    /// <state-dir>/kafkabackups/<namespace>/<name>.yaml, for `backupRef` of later runs
    /// [default: $XDG_STATE_HOME/kafka-backup-operator or $HOME/.local/state/kafka-backup-operator].
    #[arg(long, env = "KBO_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The embedded default location, as for `serve`: offset snapshots of a resource that names no
    /// storage go there, and a snapshot named by id alone is looked up there [default:
    /// <state-dir>/catalog].
    #[arg(long, env = "KBO_CATALOG_DIR", value_name = "DIR")]
    pub catalog_dir: Option<PathBuf>,
    /// The local ConfigMap store, standing for the ConfigMaps of a cluster: key K of ConfigMap N
    /// is the file DIR/N/K (all namespaces share it, as --secrets-dir). ConfigMap snapshot
    /// storage and mappingConfigMap use it; ConfigMap documents given with -f are stored in it
    /// [default: <state-dir>/configmaps].
    #[arg(long, env = "KBO_CONFIGMAPS_DIR", value_name = "DIR")]
    pub configmaps_dir: Option<PathBuf>,
}

/// Why `run` could not execute the resource.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML, or a document is not one object.
    #[error("{path} is not a YAML manifest: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The object cannot be judged (kind, version, shape).
    #[error("{origin}: {source}")]
    Admission {
        /// The file (and document).
        origin: String,
        /// Why.
        #[source]
        source: admission::AdmissionError,
    },
    /// The admission rules refuse the object.
    #[error("{origin} is refused: {message}")]
    Denied {
        /// The file (and document).
        origin: String,
        /// Every error, as the webhook reports them.
        message: String,
    },
    /// `--plan-only` or `--approve` with something other than one KafkaOffsetReset that commits.
    #[error("{flag} plans and approves one KafkaOffsetReset: {message}")]
    ApprovalScope {
        /// The flag.
        flag: &'static str,
        /// What the manifests hold instead.
        message: String,
    },
    /// Conversion to v1beta1 failed.
    #[error("{origin}: {message}")]
    Convert {
        /// The file (and document).
        origin: String,
        /// Why.
        message: String,
    },
    /// A directory of the local state is not given and there is no state directory.
    #[error("no {what}: {reason}, or {flag}")]
    NoStateDir {
        /// What was needed.
        what: &'static str,
        /// The flag naming it.
        flag: &'static str,
        /// Why there is no state directory.
        reason: String,
    },
    /// A document of a kind `run -f` does not handle.
    #[error(
        "{origin}: kind {kind} cannot be executed by run -f: it runs KafkaBackup, KafkaRestore, KafkaOffsetReset, KafkaOffsetRollback and KafkaBackupValidation ({GROUP}) and stores ConfigMaps (v1) in the local ConfigMap store"
    )]
    Unsupported {
        /// The file (and document).
        origin: String,
        /// The kind and its apiVersion.
        kind: String,
    },
    /// A ConfigMap document the local ConfigMap store cannot keep.
    #[error("{origin}: ConfigMap: {message}")]
    ConfigMap {
        /// The file (and document).
        origin: String,
        /// Why, naming the field.
        message: String,
    },
    /// A ConfigMap document could not be stored.
    #[error("{origin}: ConfigMap {name} cannot be stored: {source}")]
    StoreConfigMap {
        /// The file (and document).
        origin: String,
        /// The ConfigMap.
        name: String,
        /// Why.
        #[source]
        source: Box<StorageError>,
    },
    /// The record of a KafkaBackup cannot be written or read.
    #[error("KafkaBackup record {path}: {message}")]
    Record {
        /// The file (or the records' directory).
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A `backupRef` names a KafkaBackup `run -f` has no record of.
    #[error(
        "spec.backupRef: KafkaBackup {namespace}/{name} was never run by run -f here: there is no {path} (run -f records each KafkaBackup it runs there; run the KafkaBackup first with the same --state-dir, or name the backup's storage and backupId in backupRef)"
    )]
    BackupNotRecorded {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The record looked for.
        path: PathBuf,
    },
    /// The status could not be printed.
    #[error("cannot print the status: {0}")]
    Print(String),
    /// This kind, or this many resources, cannot be split over workers.
    #[error("{option}: {what}; a run is split over workers for one one-shot KafkaBackup or one KafkaRestore")]
    NotSharded {
        /// The option asking for workers.
        option: &'static str,
        /// What is given instead.
        what: String,
    },
    /// The shard asked for does not exist.
    #[error(transparent)]
    Shard(#[from] ops::shard::ShardError),
}

/// The outcome of a run: the status documents and whether every operation completed.
#[derive(Debug)]
pub struct RunOutcome {
    /// `status:` of each resource run, as YAML documents, in order.
    pub status_yaml: String,
    /// Every resource ran to phase Completed.
    pub completed: bool,
}

/// Where `run -f` keeps what a cluster would keep: the embedded default location, the local
/// ConfigMap store and the records of the KafkaBackups run (`None`: neither a flag nor a state
/// directory gives it).
struct LocalState {
    embedded: PathBuf,
    config_maps: Option<PathBuf>,
    backups: Option<KafkaBackupRecords>,
    /// Why there is no state directory, when there is none.
    no_state_dir: String,
}

impl LocalState {
    fn of(args: &ResourceArgs) -> Result<Self, RunError> {
        let (state, no_state_dir) = match crate::server::state_dir(args.state_dir.as_deref()) {
            Ok(state) => (Some(state), String::new()),
            Err(e) => (None, e.to_string()),
        };
        let below = |flag: &Option<PathBuf>, default: fn(&Path) -> PathBuf| {
            flag.clone().or_else(|| state.as_deref().map(default))
        };
        let embedded =
            below(&args.catalog_dir, crate::apiserver::config::default_catalog_dir).ok_or_else(|| {
                RunError::NoStateDir {
                    what: "embedded default location for snapshots",
                    flag: "--catalog-dir",
                    reason: no_state_dir.clone(),
                }
            })?;
        Ok(LocalState {
            embedded,
            config_maps: below(&args.configmaps_dir, |state| state.join("configmaps")),
            backups: below(&None, |state| state.join("kafkabackups")).map(KafkaBackupRecords::new),
            no_state_dir,
        })
    }

    fn no_state(&self, what: &'static str, flag: &'static str) -> RunError {
        RunError::NoStateDir {
            what,
            flag,
            reason: self.no_state_dir.clone(),
        }
    }

    fn config_map_dir(&self) -> Result<&Path, RunError> {
        self.config_maps
            .as_deref()
            .ok_or_else(|| self.no_state("local ConfigMap store", "--configmaps-dir"))
    }

    fn backups(&self) -> Result<&KafkaBackupRecords, RunError> {
        self.backups
            .as_ref()
            .ok_or_else(|| self.no_state("records of the KafkaBackups run", "--state-dir"))
    }
}

/// Reads every document, admits every resource, stores the ConfigMaps, then executes the
/// resources in order (stopping at the first that does not complete); prints warnings and
/// progress on stderr.
pub async fn run(args: &RunArgs) -> Result<RunOutcome, RunError> {
    let (config_maps, resources) = judge(&args.resource)?;
    let workers = match args.workers {
        1 => None,
        n => {
            splittable(&resources, "--workers")?;
            Some(Workers::processes(usize::from(n), worker_args(&args.resource)))
        }
    };
    check_approval_scope(&resources, args)?;
    let local = LocalState::of(&args.resource)?;
    check_backup_refs(&resources, &args.resource, &local)?;
    for (origin, cm) in &config_maps {
        store_config_map(&local, origin, cm)?;
    }
    let cancel = cancel_on_ctrl_c();
    let mut statuses = Vec::new();
    let mut completed = true;
    let count = resources.len();
    for (i, (origin, admitted)) in resources.into_iter().enumerate() {
        if !completed || cancel.is_cancelled() {
            eprintln!(
                "not run: {origin}, as the resource before it did not complete ({} of {count} not run)",
                count - i
            );
            break;
        }
        for warning in &admitted.warnings {
            eprintln!("warning: {origin}: {warning}");
        }
        let status = execute(
            args,
            workers.as_ref(),
            &local,
            &origin,
            admitted.object,
            cancel.clone(),
        )
        .await?;
        let phase = status.get("phase").and_then(Value::as_str);
        if phase == Some("PendingApproval") {
            say_plan(&status, args);
        }
        // A validation that ran but found the backup wanting is not a success either; a plan is
        // what --plan-only asks for.
        completed = (phase == Some("Completed")
            && status.get("result").and_then(Value::as_str) != Some("Failed"))
            || (args.plan_only && phase == Some("PendingApproval"));
        statuses.push(status_document(&status)?);
    }
    Ok(RunOutcome {
        status_yaml: statuses.join("---\n"),
        completed,
    })
}

/// Runs one shard of a resource's run split over workers (`worker`); prints warnings and
/// progress on stderr, and returns the shard's status.
pub async fn worker(args: &WorkerArgs) -> Result<RunOutcome, RunError> {
    let shard = ops::shard::ShardIndex::new(args.shard_index, args.shards)?;
    let (_, mut resources) = judge(&args.resource)?;
    splittable(&resources, "worker")?;
    let Some((origin, admitted)) = resources.pop() else {
        return Err(RunError::NotSharded {
            option: "worker",
            what: "no resource given".into(),
        });
    };
    let local = LocalState::of(&args.resource)?;
    let hub = admitted.object;
    let (ctx, namespace) = context(&args.resource, &local, &hub, cancel_on_ctrl_c());
    let status = if hub.get("kind").and_then(Value::as_str) == Some("KafkaBackup") {
        let backup: v1beta1::KafkaBackup = decode(&origin, hub)?;
        to_value(ops::backup::execute_shard(&backup, &ctx, shard).await)?
    } else {
        let mut restore: v1beta1::KafkaRestore = decode(&origin, hub)?;
        resolve_backup_ref(&local, &mut restore.spec.backup_ref, &namespace)?;
        to_value(ops::restore::execute_shard(&restore, &ctx, shard).await)?
    };
    let completed = status.get("phase").and_then(Value::as_str) == Some("Completed");
    Ok(RunOutcome {
        status_yaml: status_document(&status)?,
        completed,
    })
}

/// The ConfigMap documents and the admitted resources of the files, in order: everything is
/// judged before anything is stored or run.
#[allow(clippy::type_complexity)]
fn judge(
    args: &ResourceArgs,
) -> Result<(Vec<(Origin, ConfigMapDocument)>, Vec<(Origin, Admitted)>), RunError> {
    let mut config_maps = Vec::new();
    let mut resources = Vec::new();
    for (origin, document) in documents::read(&args.files)? {
        match document {
            Document::ConfigMap(cm) => config_maps.push((origin, cm)),
            Document::Resource(object) => {
                let admitted = admit(&origin, &object)?;
                resources.push((origin, admitted));
            }
        }
    }
    Ok((config_maps, resources))
}

/// Refuses a split over workers (`option`) unless the resources are one KafkaBackup or one
/// KafkaRestore (a continuous backup is refused by the backup itself, in its status).
fn splittable(resources: &[(Origin, Admitted)], option: &'static str) -> Result<(), RunError> {
    let refuse = |what: String| Err(RunError::NotSharded { option, what });
    let [(origin, admitted)] = resources else {
        return refuse(format!("{} resources given", resources.len()));
    };
    match admitted
        .object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "KafkaBackup" | "KafkaRestore" => Ok(()),
        other => refuse(format!("{other} runs in one process ({origin})")),
    }
}

/// A cancellation token cancelled by Ctrl-C.
fn cancel_on_ctrl_c() -> CancellationToken {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping");
            on_signal.cancel();
        }
    });
    cancel
}

/// The arguments of `worker` that run a shard of the resource of `args` with its options; the
/// shard's index and count follow them.
fn worker_args(args: &ResourceArgs) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = vec!["worker".into()];
    for file in &args.files {
        out.extend(["-f".into(), file.clone().into_os_string()]);
    }
    out.extend(["--pvc-root".into(), args.pvc_root.clone().into_os_string()]);
    for (flag, value) in [
        ("--secrets-dir", &args.secrets_dir),
        ("--state-dir", &args.state_dir),
        ("--catalog-dir", &args.catalog_dir),
        ("--configmaps-dir", &args.configmaps_dir),
    ] {
        if let Some(value) = value {
            out.extend([flag.into(), value.clone().into_os_string()]);
        }
    }
    if let Some(namespace) = &args.namespace {
        out.extend(["--namespace".into(), namespace.into()]);
    }
    out
}

/// The namespace of an admitted resource: its own, else `-n`'s, else `default`.
fn namespace_of(hub: &Value, args: &ResourceArgs) -> String {
    hub.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| args.namespace.clone())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

/// Refuses `--plan-only` and `--approve` unless the manifests hold exactly one KafkaOffsetReset,
/// not a dry run: a hash approves one plan.
fn check_approval_scope(resources: &[(Origin, Admitted)], args: &RunArgs) -> Result<(), RunError> {
    let Some(flag) = args.approval_flag() else {
        return Ok(());
    };
    let refuse = |message: String| RunError::ApprovalScope { flag, message };
    let [(origin, admitted)] = resources else {
        return Err(refuse(format!(
            "the manifests hold {} resources",
            resources.len()
        )));
    };
    let hub = &admitted.object;
    match hub.get("kind").and_then(Value::as_str) {
        Some("KafkaOffsetReset") => {}
        other => {
            return Err(refuse(format!(
                "{origin} is a {}",
                other.unwrap_or("resource without a kind")
            )));
        }
    }
    if hub.pointer("/spec/dryRun") == Some(&Value::Bool(true)) {
        return Err(refuse(format!(
            "{origin}: spec.dryRun is true, which plans without approval; remove it"
        )));
    }
    Ok(())
}

/// Prints the plan waiting for approval and how to approve it.
fn say_plan(status: &Value, args: &RunArgs) {
    let hash = status.get("planHash").and_then(Value::as_str).unwrap_or_default();
    let plan = status
        .get("plan")
        .and_then(|p| serde_saphyr::to_string(p).ok())
        .unwrap_or_default();
    let files: Vec<String> = args
        .resource
        .files
        .iter()
        .map(|f| format!("-f {}", f.display()))
        .collect();
    eprintln!(
        "plan (hash {hash}):\n{plan}{}\nnothing was changed; to carry out this plan: run {} --approve {hash}",
        status.get("message").and_then(Value::as_str).unwrap_or_default(),
        files.join(" ")
    );
}

/// Refuses, before anything runs, a `kafkaBackupRef` to a KafkaBackup that was never run here
/// and does not run earlier in this invocation.
fn check_backup_refs(
    resources: &[(Origin, Admitted)],
    args: &ResourceArgs,
    local: &LocalState,
) -> Result<(), RunError> {
    let mut run_before = std::collections::BTreeSet::new();
    for (_, admitted) in resources {
        let hub = &admitted.object;
        let namespace = namespace_of(hub, args);
        let text = |pointer: &str| hub.pointer(pointer).and_then(Value::as_str);
        match text("/kind") {
            Some("KafkaBackup") => {
                run_before.insert((namespace, text("/metadata/name").unwrap_or_default().to_owned()));
            }
            Some("KafkaRestore" | "KafkaBackupValidation") => {
                let Some(name) = text("/spec/backupRef/kafkaBackupRef/name") else {
                    continue;
                };
                let namespace =
                    text("/spec/backupRef/kafkaBackupRef/namespace").map_or(namespace, str::to_owned);
                if !run_before.contains(&(namespace.clone(), name.to_owned())) {
                    local.backups()?.find(&namespace, name)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Stores a ConfigMap document in the local ConfigMap store, saying where.
fn store_config_map(local: &LocalState, origin: &Origin, cm: &ConfigMapDocument) -> Result<(), RunError> {
    let stored = local.config_map_dir().and_then(|root| {
        LocalConfigMap::new(root, &cm.name)
            .and_then(|store| store.apply(&cm.data))
            .map_err(|source| RunError::StoreConfigMap {
                origin: origin.to_string(),
                name: cm.name.clone(),
                source: Box::new(source),
            })
    })?;
    let keys = cm.data.keys().cloned().collect::<Vec<_>>().join(", ");
    eprintln!(
        "ConfigMap {} ({origin}): key(s) {keys} stored in the local ConfigMap store: {}",
        cm.name,
        stored.display()
    );
    Ok(())
}

/// The context an admitted resource executes in, and its namespace.
fn context(
    args: &ResourceArgs,
    local: &LocalState,
    hub: &Value,
    cancel: CancellationToken,
) -> (Context, String) {
    let kind = hub
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let metadata = hub.get("metadata").cloned().unwrap_or(Value::Null);
    let text = |k: &str| metadata.get(k).and_then(Value::as_str).map(str::to_owned);
    let resource = ResourceRef {
        kind: kind.clone(),
        namespace: text("namespace").or_else(|| args.namespace.clone()),
        name: text("name").unwrap_or_default(),
        uid: text("uid"),
    };
    let namespace = namespace_of(hub, args);
    let config_maps = match local.config_map_dir() {
        Ok(dir) => ConfigMapStore::Dir(dir.to_owned()),
        Err(_) => ConfigMapStore::None,
    };
    let ctx = Context {
        resource,
        secrets: args.secrets_dir.clone().map(SecretStore::Dir).unwrap_or_default(),
        storage: StorageEnv {
            pvc_root: args.pvc_root.clone(),
            config_maps,
        },
        progress: progress_sink(),
        cancel,
        scratch_dir: std::env::temp_dir(),
        attempt_failed: Arc::new(print_retry),
        default_snapshots: DefaultSnapshots::Embedded(local.embedded.clone()),
    };
    (ctx, namespace)
}

/// Executes one admitted resource (a KafkaBackup or KafkaRestore over `workers` when given);
/// returns its status.
async fn execute(
    args: &RunArgs,
    workers: Option<&Workers>,
    local: &LocalState,
    origin: &Origin,
    hub: Value,
    cancel: CancellationToken,
) -> Result<Value, RunError> {
    let (ctx, namespace) = context(&args.resource, local, &hub, cancel);
    let kind = ctx.resource.kind.clone();
    let resolved = |what: &str, path: Option<PathBuf>| {
        if let Some(path) = path {
            eprintln!("{what}: read from the record {}", path.display());
        }
    };
    let status = match kind.as_str() {
        "KafkaOffsetReset" => {
            let mut reset: v1beta1::KafkaOffsetReset = decode(origin, hub)?;
            if args.approval_flag().is_some() {
                approve_as_asked(&mut reset, args.approve.as_deref());
            }
            say_mapping_file(&reset, local);
            to_value(ops::offset_reset::execute(&reset, &ctx).await)?
        }
        "KafkaOffsetRollback" => {
            let rollback: v1beta1::KafkaOffsetRollback = decode(origin, hub)?;
            let status = to_value(ops::offset_rollback::execute(&rollback, &ctx).await)?;
            say_deleted_snapshot(&rollback, &status, local);
            status
        }
        "KafkaBackup" => {
            let backup: v1beta1::KafkaBackup = decode(origin, hub)?;
            let records = local.backups()?;
            let initial = v1beta1::KafkaBackupStatus {
                backup_id: Some(ops::backup::backup_id(&backup)),
                ..Default::default()
            };
            let path = records.record(&backup, &namespace, &initial)?;
            let status = match (&backup.spec.schedule, args.once) {
                (Some(schedule), false) => scheduled_backup(&backup, schedule, &ctx, workers).await,
                _ => workers::backup(&backup, &ctx, workers).await,
            };
            records.record(&backup, &namespace, &status)?;
            eprintln!(
                "KafkaBackup {namespace}/{}: recorded in {} (for backupRef of later runs)",
                ctx.resource.name,
                path.display()
            );
            to_value(status)?
        }
        "KafkaRestore" => {
            let mut restore: v1beta1::KafkaRestore = decode(origin, hub)?;
            let path = resolve_backup_ref(local, &mut restore.spec.backup_ref, &namespace)?;
            resolved("spec.backupRef", path);
            to_value(workers::restore(&restore, &ctx, workers).await)?
        }
        "KafkaBackupValidation" => {
            let mut validation: v1beta1::KafkaBackupValidation = decode(origin, hub)?;
            let path = resolve_backup_ref(local, &mut validation.spec.backup_ref, &namespace)?;
            resolved("spec.backupRef", path);
            match (&validation.spec.schedule, args.once || validation.spec.suspend) {
                (Some(schedule), false) => {
                    let initial = v1beta1::KafkaBackupValidationStatus {
                        phase: Some(v1beta1::RunPhase::Pending),
                        backup_id: validation.spec.backup_ref.backup_id.clone(),
                        ..Default::default()
                    };
                    let run = || ops::validation::execute(&validation, &ctx);
                    to_value(on_schedule(schedule, &ctx, initial, run).await)?
                }
                _ => to_value(ops::validation::execute(&validation, &ctx).await)?,
            }
        }
        other => {
            return Err(RunError::Unsupported {
                origin: origin.to_string(),
                kind: format!("{other} ({GROUP})"),
            });
        }
    };
    say_snapshot_location(&status, local);
    Ok(status)
}

/// Makes the reset one with `approval: Manual` whose only approval is `--approve`'s hash.
fn approve_as_asked(reset: &mut v1beta1::KafkaOffsetReset, hash: Option<&str>) {
    reset.spec.approval = v1beta1::Approval::Manual;
    let annotations = reset.metadata.annotations.get_or_insert_default();
    annotations.remove(ops::approval::REFRESH_PLAN_ANNOTATION);
    match hash {
        Some(hash) => annotations.insert(ops::approval::APPROVE_ANNOTATION.to_owned(), hash.to_owned()),
        None => annotations.remove(ops::approval::APPROVE_ANNOTATION),
    };
}

/// Resolves a `kafkaBackupRef` from the records of the KafkaBackups run here.
fn resolve_backup_ref(
    local: &LocalState,
    backup_ref: &mut v1beta1::BackupRef,
    namespace: &str,
) -> Result<Option<PathBuf>, RunError> {
    if backup_ref.kafka_backup_ref.is_none() {
        return Ok(None);
    }
    local.backups()?.resolve(backup_ref, namespace)
}

/// Says where an offset snapshot went: the embedded default location or the local ConfigMap
/// store.
fn say_snapshot_location(status: &Value, local: &LocalState) {
    let Some(uri) = status.pointer("/snapshot/location").and_then(Value::as_str) else {
        return;
    };
    if let Some(path) = uri.strip_prefix("file://")
        && Path::new(path).starts_with(&local.embedded)
    {
        eprintln!(
            "offset snapshot {uri}: in the embedded default location {} (listed by `kubectl get offsetsnapshots` of a local `serve` with this catalog directory)",
            local.embedded.display()
        );
    } else if let Some(file) = config_map_file(uri, local) {
        eprintln!(
            "offset snapshot {uri}: file {} of the local ConfigMap store",
            file.display()
        );
    }
}

/// The file of `configmap://<name>/<key>` in the local ConfigMap store.
fn config_map_file(uri: &str, local: &LocalState) -> Option<PathBuf> {
    let (name, key) = uri.strip_prefix("configmap://")?.split_once('/')?;
    Some(local.config_map_dir().ok()?.join(name).join(key))
}

/// Says which file of the local ConfigMap store an offset mapping is read from.
fn say_mapping_file(reset: &v1beta1::KafkaOffsetReset, local: &LocalState) {
    let key_ref = reset
        .spec
        .from_mapping
        .as_ref()
        .and_then(|m| m.config_map_key_ref.as_ref());
    if let Some(key_ref) = key_ref
        && let Some(file) = config_map_file(&format!("configmap://{}/{}", key_ref.name, key_ref.key), local)
    {
        eprintln!(
            "offset mapping: ConfigMap {} key {}, the file {} of the local ConfigMap store",
            key_ref.name,
            key_ref.key,
            file.display()
        );
    }
}

/// Says which file of the local ConfigMap store a deleted snapshot was.
fn say_deleted_snapshot(rollback: &v1beta1::KafkaOffsetRollback, status: &Value, local: &LocalState) {
    let spec = &rollback.spec;
    let config_map = spec.storage.as_ref().and_then(|s| s.config_map.as_ref());
    if spec.operation == v1beta1::RollbackOperation::Delete
        && !spec.dry_run
        && status.get("phase").and_then(Value::as_str) == Some("Completed")
        && let (Some(cm), Some(id)) = (config_map, &spec.snapshot_id)
        && let Some(file) = config_map_file(&format!("configmap://{}/{}", cm.name, snapshot_key(id)), local)
    {
        eprintln!(
            "offset snapshot {id}: file {} removed from the local ConfigMap store",
            file.display()
        );
    }
}

/// Runs a scheduled KafkaBackup on its schedule until interrupted (see [`on_schedule`]).
async fn scheduled_backup(
    backup: &v1beta1::KafkaBackup,
    schedule: &str,
    ctx: &Context,
    workers: Option<&Workers>,
) -> v1beta1::KafkaBackupStatus {
    let initial = v1beta1::KafkaBackupStatus {
        phase: Some(v1beta1::RunPhase::Pending),
        backup_id: Some(ops::backup::backup_id(backup)),
        ..Default::default()
    };
    on_schedule(schedule, ctx, initial, || workers::backup(backup, ctx, workers)).await
}

/// The status of a resource that runs on a schedule (KafkaBackup, KafkaBackupValidation).
trait ScheduledStatus: Serialize {
    /// Records why the schedule stops: a message, and with `failed` the phase Failed.
    fn stop(&mut self, failed: bool, message: String);
    /// Records the next tick.
    fn set_next(&mut self, next: chrono::DateTime<chrono::Utc>);
    /// Records the tick a run was started for.
    fn set_tick(&mut self, tick: chrono::DateTime<chrono::Utc>);
}

macro_rules! scheduled_status {
    ($status:ty) => {
        impl ScheduledStatus for $status {
            fn stop(&mut self, failed: bool, message: String) {
                if failed {
                    self.phase = Some(v1beta1::RunPhase::Failed);
                }
                self.message = Some(message);
            }
            fn set_next(&mut self, next: chrono::DateTime<chrono::Utc>) {
                self.next_schedule_time = Some(ops::time(next));
            }
            fn set_tick(&mut self, tick: chrono::DateTime<chrono::Utc>) {
                self.last_schedule_time = Some(ops::time(tick));
            }
        }
    };
}

scheduled_status!(v1beta1::KafkaBackupStatus);
scheduled_status!(v1beta1::KafkaBackupValidationStatus);

/// Runs a scheduled resource on its schedule until interrupted: each tick starts a run (runs
/// never overlap: a tick missed while a run was going is skipped). The status of every run is
/// printed as a YAML document; the last one is returned.
async fn on_schedule<S, F, Fut>(schedule: &str, ctx: &Context, mut last: S, run: F) -> S
where
    S: ScheduledStatus,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    loop {
        let next = match ops::backup::next_tick(schedule, chrono::Utc::now()) {
            Ok(Some(next)) => next,
            Ok(None) => {
                last.stop(false, format!("spec.schedule {schedule:?} has no future tick"));
                return last;
            }
            Err(message) => {
                last.stop(true, message);
                return last;
            }
        };
        last.set_next(next);
        eprintln!("next run at {}", next.to_rfc3339());
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.cancel.cancelled() => return last,
        }
        let mut status = run().await;
        status.set_tick(next);
        if ctx.cancel.is_cancelled() {
            return status;
        }
        if let Ok(yaml) = serde_saphyr::to_string(&serde_json::json!({ "status": &status })) {
            println!("{yaml}---");
        }
        last = status;
    }
}

/// Runs [`run`] on a new runtime and prints the status; the process exit code follows the phase.
pub fn run_blocking(args: &RunArgs) -> Result<bool, RunError> {
    block_on_and_print(run(args))
}

/// Runs [`worker`] on a new runtime and prints the shard's status; the process exit code
/// follows its phase.
pub fn worker_blocking(args: &WorkerArgs) -> Result<bool, RunError> {
    block_on_and_print(worker(args))
}

/// Runs `outcome` on a new runtime and prints its status documents; `Ok(true)` when it completed.
fn block_on_and_print(
    outcome: impl std::future::Future<Output = Result<RunOutcome, RunError>>,
) -> Result<bool, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| RunError::Read {
            path: PathBuf::from("<tokio runtime>"),
            source,
        })?;
    let outcome = runtime.block_on(outcome)?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    print!("{}", outcome.status_yaml);
    Ok(outcome.completed)
}

/// The object after the webhook's mutation and validation, as v1beta1.
struct Admitted {
    object: Value,
    warnings: Vec<String>,
}

fn admit(origin: &Origin, object: &Value) -> Result<Admitted, RunError> {
    let admission_error = |source| RunError::Admission {
        origin: origin.to_string(),
        source,
    };
    let mutation = admission::mutate(object).map_err(admission_error)?;
    let verdict = admission::validate(&mutation.object, None).map_err(admission_error)?;
    // Strict, as kubectl's default field validation: a field the schema does not have is most
    // likely a typo, and would otherwise be ignored without a word.
    if !verdict.is_allowed() || !verdict.unknown_fields.is_empty() {
        let message = verdict
            .unknown_fields
            .iter()
            .chain(&verdict.errors)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(RunError::Denied {
            origin: origin.to_string(),
            message,
        });
    }
    let mut warnings = mutation.warnings;
    warnings.extend(verdict.warnings.iter().cloned());
    let hub = conversion::convert(mutation.object, &format!("{GROUP}/{STORAGE_VERSION}")).map_err(|e| {
        RunError::Convert {
            origin: origin.to_string(),
            message: e.to_string(),
        }
    })?;
    Ok(Admitted {
        object: hub,
        warnings,
    })
}

fn decode<T: DeserializeOwned>(origin: &Origin, object: Value) -> Result<T, RunError> {
    serde_json::from_value(object).map_err(|e| RunError::Convert {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

/// `status:` as a YAML document.
fn status_document(status: &Value) -> Result<String, RunError> {
    serde_saphyr::to_string(&serde_json::json!({ "status": status }))
        .map_err(|e| RunError::Print(e.to_string()))
}

fn to_value<T: Serialize>(status: T) -> Result<Value, RunError> {
    serde_json::to_value(status).map_err(|e| RunError::Print(e.to_string()))
}

/// Says on stderr that an attempt failed and when the next starts (`execution.retries`).
fn print_retry(failed: &ops::execution::AttemptFailed) {
    if let Some(message) = failed.retry_message() {
        eprintln!("{message}");
    }
}

/// A progress bar on a terminal, plain lines otherwise (at most one per second).
fn progress_sink() -> ops::ProgressSink {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Arc::new(move |p: Progress| {
            if let Some(total) = p.total {
                bar.set_length(total);
            }
            bar.set_position(p.done);
            bar.set_message(p.message);
        })
    } else {
        let last = std::sync::Mutex::new(None::<std::time::Instant>);
        Arc::new(move |p: Progress| {
            let Ok(mut last) = last.lock() else { return };
            let finished = p.total.is_some_and(|t| p.done >= t);
            if finished || last.is_none_or(|at| at.elapsed().as_secs() >= 1) {
                *last = Some(std::time::Instant::now());
                match p.total {
                    Some(total) => eprintln!("progress: {}/{} {}", p.done, total, p.message),
                    None => eprintln!("progress: {} {}", p.done, p.message),
                }
            }
        })
    }
}
