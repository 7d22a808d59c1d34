//! `run -f FILE.yaml`: executes one resource without Kubernetes.
//!
//! The manifest (any of the five kinds, v1alpha1 or v1beta1) is judged exactly as the admission
//! webhook judges it (mutation with its warnings, then validation: a denial is an error listing
//! every field), converted to v1beta1 and handed to the same operation code the reconciler runs.
//! It is read strictly, as kubectl's default field validation reads it: a field its version's
//! schema does not have is refused, naming its path and the nearest known field
//! (`spec.topcis: unknown field; did you mean spec.topics?`), and so is a value of the wrong type
//! or outside an enum, naming its path and the allowed values.
//! The resulting status is printed as YAML on stdout; the exit code is 0 only when the operation
//! completed.
//!
//! Secrets named by the resource are read from `--secrets-dir DIR`: `DIR/<secret name>/<key>`,
//! one file per key, as a Secret volume mount lays them out. PVC storage `claimName: X` is the
//! directory `<--pvc-root>/X` (default `/data`, as in the operator's pod). ConfigMap storage and
//! references to other resources' status need the Kubernetes API and are refused with a message
//! saying so.
//!
//! Offset snapshots of a resource that names no storage go to the embedded default location: the
//! directory a local `serve` lists as its default catalog location (`--catalog-dir`, default
//! `<state-dir>/catalog`, the same flags and variables as `serve`), so `kubectl get
//! offsetsnapshots` shows them. A KafkaOffsetRollback naming a snapshot by id alone looks it up
//! there. Where a snapshot went is in the status and on stderr.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    sync::Arc,
};

mod workers;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use workers::Workers;

use crate::{
    api::{GROUP, STORAGE_VERSION, admission, conversion, v1beta1},
    ops::{self, Context, DefaultSnapshots, Progress, ResourceRef},
    secrets::SecretStore,
    storage::StorageEnv,
};

/// Arguments of `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The resource and where what it needs comes from.
    #[command(flatten)]
    pub resource: ResourceArgs,
    /// Run a scheduled resource once, now, instead of on its schedule.
    #[arg(long)]
    pub once: bool,
    /// Split a one-shot KafkaBackup or a KafkaRestore over N worker processes of this program
    /// (`worker`), each copying its share of the partitions (a backup: into the same backup set;
    /// a restore: by target partition); their results are merged when all have ended. 1:
    /// everything in this process.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: u16,
}

/// Arguments of `worker`.
#[derive(clap::Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The resource and where what it needs comes from, as for `run`.
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

/// The resource `run` and `worker` execute, and where what it needs comes from.
#[derive(clap::Args, Debug, Clone)]
pub struct ResourceArgs {
    /// The manifest: one KafkaOffsetReset, KafkaOffsetRollback, KafkaBackup, KafkaRestore or
    /// KafkaBackupValidation, either API version.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Directory of Secrets: DIR/<secret name>/<key>, one file per key.
    #[arg(long, env = "KBO_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Directory holding PVC storage: `pvc.claimName: X` is DIR/X.
    #[arg(long, env = "KBO_PVC_ROOT", default_value = "/data")]
    pub pvc_root: PathBuf,
    /// Namespace recorded for the resource when the manifest has none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// State directory, as for `serve`
    /// [default: $XDG_STATE_HOME/kafka-backup-operator or $HOME/.local/state/kafka-backup-operator].
    #[arg(long, env = "KBO_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The embedded default location, as for `serve`: offset snapshots of a resource that names no
    /// storage go there, and a snapshot named by id alone is looked up there [default:
    /// <state-dir>/catalog].
    #[arg(long, env = "KBO_CATALOG_DIR", value_name = "DIR")]
    pub catalog_dir: Option<PathBuf>,
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
    /// The file is not one YAML object.
    #[error("{path} is not a YAML manifest: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The object cannot be judged (kind, version, shape).
    #[error("{path}: {source}")]
    Admission {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: admission::AdmissionError,
    },
    /// The admission rules refuse the object.
    #[error("{path} is refused: {message}")]
    Denied {
        /// The file.
        path: PathBuf,
        /// Every error, as the webhook reports them.
        message: String,
    },
    /// Conversion to v1beta1 failed.
    #[error("{path}: {message}")]
    Convert {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Neither the embedded default location nor a state directory is known.
    #[error("no embedded default location for snapshots: {0}, or --catalog-dir")]
    NoDefaultLocation(String),
    /// This kind cannot be run here yet.
    #[error("{kind} cannot be executed by run -f")]
    Unsupported {
        /// The kind.
        kind: String,
    },
    /// The status could not be printed.
    #[error("cannot print the status: {0}")]
    Print(String),
    /// This kind runs in one process only.
    #[error(
        "{option}: {kind} runs in one process; a one-shot KafkaBackup and a KafkaRestore are split over workers"
    )]
    NotSharded {
        /// The option asking for workers.
        option: &'static str,
        /// The kind.
        kind: String,
    },
    /// The shard asked for does not exist.
    #[error(transparent)]
    Shard(#[from] ops::shard::ShardError),
}

/// The outcome of a run: the status document and whether the operation completed.
#[derive(Debug)]
pub struct RunOutcome {
    /// `status:` of the resource, as YAML.
    pub status_yaml: String,
    /// Phase Completed.
    pub completed: bool,
}

/// A resource read, admitted and ready to execute.
struct Loaded {
    kind: String,
    /// The admitted object, as v1beta1.
    hub: Value,
    ctx: Context,
    /// The embedded default location.
    embedded: PathBuf,
}

/// Reads, admits and executes the manifest; prints warnings and progress on stderr.
pub async fn run(args: &RunArgs) -> Result<RunOutcome, RunError> {
    let Loaded {
        kind,
        hub,
        ctx,
        embedded,
    } = load(&args.resource)?;
    let path = &args.resource.file;
    if args.workers > 1 && !["KafkaBackup", "KafkaRestore"].contains(&kind.as_str()) {
        return Err(RunError::NotSharded {
            option: "--workers",
            kind,
        });
    }
    let workers = (args.workers > 1)
        .then(|| Workers::processes(usize::from(args.workers), worker_args(&args.resource)));
    let status = match kind.as_str() {
        "KafkaOffsetReset" => {
            let reset: v1beta1::KafkaOffsetReset = decode(path, hub)?;
            to_value(ops::offset_reset::execute(&reset, &ctx).await)?
        }
        "KafkaOffsetRollback" => {
            let rollback: v1beta1::KafkaOffsetRollback = decode(path, hub)?;
            to_value(ops::offset_rollback::execute(&rollback, &ctx).await)?
        }
        "KafkaBackup" => {
            let backup: v1beta1::KafkaBackup = decode(path, hub)?;
            match (&backup.spec.schedule, args.once) {
                (Some(schedule), false) => {
                    to_value(scheduled_backup(&backup, schedule, &ctx, workers.as_ref()).await)?
                }
                _ => to_value(workers::backup(&backup, &ctx, workers.as_ref()).await)?,
            }
        }
        "KafkaRestore" => {
            let restore: v1beta1::KafkaRestore = decode(path, hub)?;
            to_value(workers::restore(&restore, &ctx, workers.as_ref()).await)?
        }
        "KafkaBackupValidation" => {
            let validation: v1beta1::KafkaBackupValidation = decode(path, hub)?;
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
        other => return Err(RunError::Unsupported { kind: other.into() }),
    };
    outcome(status, &embedded)
}

/// Runs one shard of a resource's run split over workers (`worker`); prints warnings and
/// progress on stderr.
pub async fn worker(args: &WorkerArgs) -> Result<RunOutcome, RunError> {
    let shard = ops::shard::ShardIndex::new(args.shard_index, args.shards)?;
    let Loaded {
        kind,
        hub,
        ctx,
        embedded,
    } = load(&args.resource)?;
    let status = match kind.as_str() {
        "KafkaBackup" => {
            let backup: v1beta1::KafkaBackup = decode(&args.resource.file, hub)?;
            to_value(ops::backup::execute_shard(&backup, &ctx, shard).await)?
        }
        "KafkaRestore" => {
            let restore: v1beta1::KafkaRestore = decode(&args.resource.file, hub)?;
            to_value(ops::restore::execute_shard(&restore, &ctx, shard).await)?
        }
        _ => {
            return Err(RunError::NotSharded {
                option: "worker",
                kind,
            });
        }
    };
    outcome(status, &embedded)
}

/// Reads and admits the manifest and makes the context to execute it in (Ctrl-C cancels it).
fn load(args: &ResourceArgs) -> Result<Loaded, RunError> {
    let path = &args.file;
    let object = read_manifest(path)?;
    let admitted = admit(path, &object)?;
    for warning in &admitted.warnings {
        eprintln!("warning: {warning}");
    }
    let hub = admitted.object;
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
    let embedded = embedded_default_dir(args)?;
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("interrupted: stopping");
            on_signal.cancel();
        }
    });
    let ctx = Context {
        resource,
        secrets: args.secrets_dir.clone().map(SecretStore::Dir).unwrap_or_default(),
        storage: StorageEnv {
            pvc_root: args.pvc_root.clone(),
            kube: None,
        },
        progress: progress_sink(),
        cancel,
        scratch_dir: std::env::temp_dir(),
        attempt_failed: Arc::new(print_retry),
        default_snapshots: DefaultSnapshots::Embedded(embedded.clone()),
    };
    Ok(Loaded {
        kind,
        hub,
        ctx,
        embedded,
    })
}

/// The outcome of a run whose status is `status`; says where a snapshot in the embedded default
/// location went.
fn outcome(status: Value, embedded: &Path) -> Result<RunOutcome, RunError> {
    if let Some(uri) = status.pointer("/snapshot/location").and_then(Value::as_str)
        && let Some(path) = uri.strip_prefix("file://")
        && Path::new(path).starts_with(embedded)
    {
        eprintln!(
            "offset snapshot {uri}: in the embedded default location {} (listed by `kubectl get offsetsnapshots` of a local `serve` with this catalog directory)",
            embedded.display()
        );
    }
    // A validation that ran but found the backup wanting is not a success either.
    let completed = status.get("phase").and_then(Value::as_str) == Some("Completed")
        && status.get("result").and_then(Value::as_str) != Some("Failed");
    let status_yaml = serde_saphyr::to_string(&serde_json::json!({ "status": status }))
        .map_err(|e| RunError::Print(e.to_string()))?;
    Ok(RunOutcome {
        status_yaml,
        completed,
    })
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

/// The arguments of `worker` that run a shard of the resource of `args` with its options; the
/// shard's index and count follow them.
fn worker_args(args: &ResourceArgs) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = vec!["worker".into(), "-f".into(), args.file.clone().into()];
    out.extend(["--pvc-root".into(), args.pvc_root.clone().into_os_string()]);
    for (flag, value) in [
        ("--secrets-dir", &args.secrets_dir),
        ("--state-dir", &args.state_dir),
        ("--catalog-dir", &args.catalog_dir),
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
    let runtime = runtime()?;
    let outcome = runtime.block_on(run(args))?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    print!("{}", outcome.status_yaml);
    Ok(outcome.completed)
}

/// Runs [`worker`] on a new runtime and prints the shard's status; the process exit code
/// follows its phase.
pub fn worker_blocking(args: &WorkerArgs) -> Result<bool, RunError> {
    let runtime = runtime()?;
    let outcome = runtime.block_on(worker(args))?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    print!("{}", outcome.status_yaml);
    Ok(outcome.completed)
}

fn runtime() -> Result<tokio::runtime::Runtime, RunError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| RunError::Read {
            path: PathBuf::from("<tokio runtime>"),
            source,
        })
}

/// The directory of the embedded default location, as `serve` computes it.
fn embedded_default_dir(args: &ResourceArgs) -> Result<PathBuf, RunError> {
    match &args.catalog_dir {
        Some(dir) => Ok(dir.clone()),
        None => crate::server::state_dir(args.state_dir.as_deref())
            .map(|state| crate::apiserver::config::default_catalog_dir(&state))
            .map_err(|e| RunError::NoDefaultLocation(e.to_string())),
    }
}

fn read_manifest(path: &Path) -> Result<Value, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Read {
        path: path.to_owned(),
        source,
    })?;
    let object: Value = serde_saphyr::from_str(&text).map_err(|e| RunError::Yaml {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if !object.is_object() {
        return Err(RunError::Yaml {
            path: path.to_owned(),
            message: "expected one object with apiVersion, kind, metadata and spec".into(),
        });
    }
    Ok(object)
}

/// The object after the webhook's mutation and validation, as v1beta1.
struct Admitted {
    object: Value,
    warnings: Vec<String>,
}

fn admit(path: &Path, object: &Value) -> Result<Admitted, RunError> {
    let admission_error = |source| RunError::Admission {
        path: path.to_owned(),
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
            path: path.to_owned(),
            message,
        });
    }
    let mut warnings = mutation.warnings;
    warnings.extend(verdict.warnings.iter().cloned());
    let hub = conversion::convert(mutation.object, &format!("{GROUP}/{STORAGE_VERSION}")).map_err(|e| {
        RunError::Convert {
            path: path.to_owned(),
            message: e.to_string(),
        }
    })?;
    Ok(Admitted {
        object: hub,
        warnings,
    })
}

fn decode<T: DeserializeOwned>(path: &Path, object: Value) -> Result<T, RunError> {
    serde_json::from_value(object).map_err(|e| RunError::Convert {
        path: path.to_owned(),
        message: e.to_string(),
    })
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
