//! The body of one supervised operation task: wait for a slot (status Queued), write Running,
//! run the operation (its engine applies `execution.retries` and `deadlineSeconds` through
//! [`crate::ops::execution`]; each retry is written here as status Retrying with an Event), write
//! progress at most once per interval, then the final status, an Event, metrics and a catalog
//! notice.

use std::{path::PathBuf, sync::Arc, time::Duration};

use chrono::Utc;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api,
    api::{Patch, PatchParams},
    core::DeserializeGuard,
    runtime::events::EventType,
};
use serde_json::{Value, json};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{Instrument, debug, info, info_span, warn};

use super::{
    CatalogNotice, FIELD_MANAGER, Hooks, Written,
    events::Recorder,
    kinds::{Mode, Operation, RestartPolicy, WrittenId, parse_time},
    lifecycle::{self, CancelReason, StartReason, State, reason},
    schedule,
    supervisor::TaskHandle,
};
use crate::{
    metrics::Metrics,
    ops::{
        Context, DefaultSnapshots, Progress, ResourceRef,
        execution::{AttemptFailed, STOP_GRACE},
        time,
    },
    secrets::SecretStore,
    storage::{Location, StorageEnv},
};

/// Publishes Events about one object; failures are logged, never fatal.
#[derive(Clone)]
pub struct EventSink {
    /// The recorder.
    pub recorder: Recorder,
    /// The object.
    pub reference: ObjectReference,
}

impl EventSink {
    /// Publishes one Event.
    pub async fn emit(&self, type_: EventType, reason: &str, action: &str, note: impl Into<String>) {
        let mut note: String = note.into();
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        if let Err(e) = self
            .recorder
            .publish(type_, reason, action, &note, &self.reference)
            .await
        {
            warn!(error = %e, reason, "failed to publish Event");
        }
    }
}

/// Writes the status of one object with merge patches on the status subresource.
pub struct StatusWriter<K: Operation> {
    api: Api<DeserializeGuard<K>>,
    name: String,
}

impl<K: Operation> StatusWriter<K> {
    /// A writer for object `name` of `api`.
    pub fn new(api: Api<DeserializeGuard<K>>, name: &str) -> Self {
        StatusWriter {
            api,
            name: name.to_owned(),
        }
    }

    /// One merge patch of `status`.
    pub async fn patch(&self, status: &Value) -> Result<(), kube::Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.api
            .patch_status(&self.name, &params, &Patch::Merge(json!({ "status": status })))
            .await
            .map(drop)
    }

    /// A merge patch retried up to 5 times (1, 2, 4, 8 s apart) unless the object is gone;
    /// `false` when it could not be written.
    pub async fn patch_retrying(&self, status: &Value) -> bool {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=5 {
            match self.patch(status).await {
                Ok(()) => return true,
                Err(kube::Error::Api(e)) if e.code == 404 => return false,
                Err(e) if attempt < 5 => {
                    warn!(error = %e, attempt, "failed to write status; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => warn!(error = %e, "failed to write status; giving up"),
            }
        }
        false
    }

    /// A merge patch retried until it is written, waiting 1 s at first and doubling up to 10 s,
    /// unless the object is gone (`false`) or `give_up` says so (the operator is shutting down or
    /// lost its leadership: the next leader reads the object as it is). The final status of an
    /// operation that ran must not be lost to an API server that is away for a while: the task
    /// (and so the object's entry in the supervisor) lasts until it is written, and the next
    /// reconcile does not find the object Running without a task and start it again.
    pub async fn patch_until_written(&self, status: &Value, give_up: impl Fn() -> bool) -> bool {
        let mut wait = Duration::from_secs(1);
        let mut failures = 0u32;
        loop {
            match self.patch(status).await {
                Ok(()) => {
                    if failures > 0 {
                        info!(
                            failures,
                            "final status written once the API server answered again"
                        );
                    }
                    return true;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => return false,
                Err(e) => {
                    failures += 1;
                    if give_up() {
                        warn!(error = %e, failures, "failed to write the final status; stopping: the next leader reads the object as it is");
                        return false;
                    }
                    warn!(error = %e, failures, "failed to write the final status; retrying until the API server answers");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Everything one operation task needs.
pub struct RunEnv<K: Operation> {
    /// The object, references resolved.
    pub object: Arc<K>,
    /// Status writes.
    pub writer: StatusWriter<K>,
    /// Events about it.
    pub events: EventSink,
    /// Its namespace, name and uid.
    pub resource: ResourceRef,
    /// `metadata.generation` at start.
    pub generation: Option<i64>,
    /// Its status when the task was started.
    pub status: Value,
    /// Why it starts.
    pub reason: StartReason,
    /// Its Secrets.
    pub secrets: SecretStore,
    /// How storage is opened (ConfigMaps in its namespace).
    pub storage: StorageEnv,
    /// Least time between two progress writes.
    pub progress_interval: Duration,
    /// Scratch directory.
    pub scratch_dir: PathBuf,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Catalog hook.
    pub hooks: Hooks,
}

/// The task's own view of the status, so conditions keep their transition times.
struct View<K: Operation> {
    status: Value,
    generation: Option<i64>,
    _kind: std::marker::PhantomData<K>,
}

impl<K: Operation> View<K> {
    /// The patch for `state` plus `extra`, and the view updated with it.
    fn patch(&mut self, state: &State, extra: Value) -> Value {
        let base = lifecycle::status_patch(K::KIND, state, &self.status, self.generation, Utc::now());
        let patch = lifecycle::merged(base, extra);
        self.status = lifecycle::merged(self.status.clone(), patch.clone());
        patch
    }
}

/// Runs one operation to its end. Spawned by the supervisor; never awaited by a reconcile.
pub async fn run<K: Operation>(env: RunEnv<K>, handle: TaskHandle) {
    let span = info_span!(
        "operation",
        kind = K::KIND.as_str(),
        namespace = env.resource.namespace.as_deref().unwrap_or_default(),
        name = %env.resource.name,
        uid = env.resource.uid.as_deref().unwrap_or_default(),
    );
    run_inner(env, handle).instrument(span).await;
}

async fn run_inner<K: Operation>(env: RunEnv<K>, handle: TaskHandle) {
    let kind = K::KIND.as_str();
    let mut view = View::<K> {
        status: if env.status.is_object() {
            env.status.clone()
        } else {
            json!({})
        },
        generation: env.generation,
        _kind: std::marker::PhantomData,
    };
    let mode = env.object.mode();
    let continuous = mode == Mode::Continuous;
    // A scheduled run's Events name its tick, so those of later runs say their own facts.
    let tick = match mode {
        Mode::Scheduled(_) => env
            .status
            .get("lastScheduleTime")
            .and_then(parse_time)
            .map(schedule::tick_label),
        _ => None,
    };
    let events = RunEvents {
        sink: &env.events,
        tick,
    };

    // 1. An operation slot.
    let slot = match handle.try_slot() {
        Some(slot) => slot,
        None => {
            let message = format!(
                "waiting for a free operation slot ({} operations run at most at once, --max-concurrent-operations)",
                handle.slots()
            );
            let patch = view.patch(
                &State::Queued {
                    message: message.clone(),
                },
                json!({}),
            );
            env.writer.patch_retrying(&patch).await;
            events
                .emit(EventType::Normal, reason::QUEUED, "Run", message)
                .await;
            match handle.slot().await {
                Some(slot) => slot,
                None => {
                    debug!("cancelled while queued");
                    return;
                }
            }
        }
    };
    env.metrics.operator.running(kind, 1);
    let _running = RunningGuard {
        metrics: Arc::clone(&env.metrics),
        kind,
    };

    // 2. Running.
    let started = Utc::now();
    let clock = Instant::now();
    let resumed = env.reason == StartReason::Resumed;
    let start_message = match env.reason {
        StartReason::Resumed => "resumed after an operator restart".to_owned(),
        StartReason::Scheduled => "scheduled run started".to_owned(),
        StartReason::New => "started".to_owned(),
    };
    let mut extra = env.object.start_status();
    if let Some(field) = K::KIND.start_time_field() {
        extra[field] = json!(time(started));
    }
    if let Some(field) = K::KIND.completion_time_field() {
        extra[field] = Value::Null;
    }
    let patch = view.patch(
        &State::Running {
            resumed,
            continuous,
            message: start_message.clone(),
        },
        extra,
    );
    if !env.writer.patch_retrying(&patch).await {
        warn!("cannot write status Running; not starting the operation");
        return;
    }
    let event_reason = if resumed { reason::RESUMED } else { "Started" };
    events
        .emit(
            EventType::Normal,
            event_reason,
            "Run",
            format!("{kind} {}: {start_message}", env.resource.name),
        )
        .await;
    info!(reason = event_reason, "operation started");

    // 3. The operation, its attempts run by the engine (ops::execution); each retry is written
    // here as status Retrying with an Event.
    let (progress_tx, progress_rx) = watch::channel(None::<Progress>);
    let (failed_tx, failed_rx) = mpsc::unbounded_channel();
    let ctx = Context {
        resource: env.resource.clone(),
        secrets: env.secrets.clone(),
        storage: env.storage.clone(),
        progress: Arc::new(move |p| {
            let _ = progress_tx.send(Some(p));
        }),
        cancel: handle.cancel.child_token(),
        scratch_dir: env.scratch_dir.clone(),
        attempt_failed: Arc::new(move |failed: &AttemptFailed| {
            let _ = failed_tx.send(failed.clone());
        }),
        default_snapshots: DefaultSnapshots::Cluster(env.hooks.snapshot_lookup.clone()),
    };
    let operation = Arc::clone(&env.object).execute(ctx.clone());
    let (final_status, deadline_hit) = drive::<K>(
        operation,
        Channels {
            progress: progress_rx,
            failed: failed_rx,
        },
        ctx.cancel,
        env.progress_interval,
        &env.writer,
        &events,
        &mut view,
    )
    .await;
    drop(slot);
    let elapsed = clock.elapsed();

    // 4. The end.
    let cancel_reason = handle.cancel_reason();
    let resumable = env.object.on_restart() == RestartPolicy::Resume;
    match cancel_reason {
        Some(CancelReason::LostLeadership) => {
            info!("stopped: leadership lost; the new leader takes the operation over");
            return;
        }
        Some(CancelReason::Shutdown) if resumable => {
            info!("stopped for shutdown; the next leader resumes it");
            return;
        }
        Some(CancelReason::SpecChanged) => {
            let patch = view.patch(
                &State::Pending,
                json!({"message": "the spec changed: the run stopped and starts again with the new spec"}),
            );
            if env.writer.patch_retrying(&patch).await {
                handle.record_phase("Pending");
            }
            env.events
                .emit(
                    EventType::Normal,
                    "Restarting",
                    "Run",
                    "the spec changed: the run stopped and starts again with the new spec",
                )
                .await;
            return;
        }
        Some(CancelReason::Deleted) => {
            env.metrics
                .operator
                .operation_finished(kind, "cancelled", elapsed, None, None);
            info!("cancelled: the resource is being deleted");
            return;
        }
        _ => {}
    }
    let phase = final_status
        .get("phase")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = final_status
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut state = match cancel_reason {
        Some(CancelReason::Suspended) => State::Suspended,
        _ => State::from_final(phase.as_deref(), message.as_deref(), deadline_hit),
    };
    if cancel_reason == Some(CancelReason::Shutdown)
        && let State::Failed { message, .. }
        | State::PartiallyCompleted { message }
        | State::Completed { message, .. } = &mut state
    {
        *message = format!("{message} (stopped early: the operator was shutting down)");
    }
    let mut extra = Value::Object(lifecycle::without_lifecycle(final_status.clone()));
    if let Some(field) = K::KIND.completion_time_field()
        && extra.get(field).is_none_or(Value::is_null)
    {
        extra[field] = json!(time(Utc::now()));
    }
    if let Some(field) = K::KIND.start_time_field()
        && extra.get(field).is_none_or(Value::is_null)
    {
        extra[field] = json!(time(started));
    }
    let patch = lifecycle::with_engine_conditions(view.patch(&state, extra), &final_status);
    let stopping = || {
        matches!(
            handle.cancel_reason(),
            Some(CancelReason::Shutdown | CancelReason::LostLeadership)
        )
    };
    if env.writer.patch_until_written(&patch, stopping).await {
        handle.record_phase(state.phase(K::KIND));
    }

    let (event_type, event_reason, outcome) = match &state {
        State::Completed { .. } => (EventType::Normal, reason::COMPLETED, "completed"),
        State::PartiallyCompleted { .. } => (
            EventType::Warning,
            reason::PARTIALLY_COMPLETED,
            "partially_completed",
        ),
        State::Suspended => (EventType::Normal, reason::SUSPENDED, "cancelled"),
        State::PendingApproval { .. } if lifecycle::approval_refused(&final_status) => {
            (EventType::Warning, reason::APPROVAL_REFUSED, "pending_approval")
        }
        State::PendingApproval { .. } => (EventType::Normal, reason::PENDING_APPROVAL, "pending_approval"),
        State::Failed { reason, .. } => (EventType::Warning, *reason, "failed"),
        _ => (EventType::Warning, reason::FAILED, "failed"),
    };
    let (records, bytes) = K::records_bytes(&final_status);
    env.metrics
        .operator
        .operation_finished(kind, outcome, elapsed, records, bytes);
    events
        .emit(event_type, event_reason, "Run", state.message())
        .await;
    info!(outcome, seconds = elapsed.as_secs_f64(), "operation finished");
    notify_catalog(&env, &final_status);
}

/// Decrements the running gauge however the task ends.
struct RunningGuard {
    metrics: Arc<Metrics>,
    kind: &'static str,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.metrics.operator.running(self.kind, -1);
    }
}

/// The Events of one run: a scheduled run's notes name its tick, so those of later runs say
/// their own facts.
struct RunEvents<'a> {
    /// Where they go.
    sink: &'a EventSink,
    /// The tick of a scheduled run.
    tick: Option<String>,
}

impl RunEvents<'_> {
    async fn emit(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let note = match &self.tick {
            Some(tick) => format!("run for the tick {tick}: {note}"),
            None => note,
        };
        self.sink.emit(type_, reason, action, note).await;
    }
}

/// What an operation reports while it runs.
struct Channels {
    /// Its latest progress.
    progress: watch::Receiver<Option<Progress>>,
    /// Its failed attempts.
    failed: mpsc::UnboundedReceiver<AttemptFailed>,
}

/// Drives the operation: writes progress at a bounded rate and each retry as status Retrying
/// with a Warning Event, abandons it when it does not stop within [`STOP_GRACE`] of being
/// cancelled. Returns its status and whether it ended with an attempt stopped at its deadline.
async fn drive<K: Operation>(
    operation: BoxFuture<'static, Value>,
    channels: Channels,
    cancel: tokio_util::sync::CancellationToken,
    interval: Duration,
    writer: &StatusWriter<K>,
    events: &RunEvents<'_>,
    view: &mut View<K>,
) -> (Value, bool) {
    let Channels {
        mut progress,
        mut failed,
    } = channels;
    let mut operation = operation;
    let mut deadline_hit = false;
    let mut last_write = Instant::now();
    let mut pending: Option<Progress> = None;
    let mut progress_open = true;
    let mut failed_open = true;
    let mut stop_by: Option<Instant> = None;
    loop {
        let write_at = last_write + interval;
        tokio::select! {
            status = &mut operation => {
                // The last attempt is reported before the operation returns.
                while let Ok(attempt) = failed.try_recv() {
                    deadline_hit = attempt.ended_at_deadline();
                }
                return (status, deadline_hit);
            }
            changed = progress.changed(), if progress_open => {
                match changed {
                    Ok(()) => pending = progress.borrow_and_update().clone(),
                    Err(_) => progress_open = false,
                }
            }
            attempt = failed.recv(), if failed_open => {
                match attempt {
                    Some(attempt) => {
                        deadline_hit = attempt.ended_at_deadline();
                        if let Some(message) = attempt.retry_message() {
                            let patch = view.patch(&State::Retrying { message: message.clone() }, json!({}));
                            writer.patch_retrying(&patch).await;
                            events.emit(EventType::Warning, reason::RETRYING, "Run", message).await;
                        }
                    }
                    None => failed_open = false,
                }
            }
            () = tokio::time::sleep_until(write_at), if pending.is_some() => {
                if let Some(p) = pending.take() {
                    if let Err(e) = writer.patch(&K::progress_status(&p)).await {
                        debug!(error = %e, "progress not written");
                    }
                    last_write = Instant::now();
                }
            }
            () = cancel.cancelled(), if stop_by.is_none() => {
                stop_by = Some(Instant::now() + STOP_GRACE);
            }
            () = sleep_until_opt(stop_by) => {
                warn!("the operation did not stop within {} s of being cancelled; abandoning it", STOP_GRACE.as_secs());
                return (
                    json!({
                        "phase": "Failed",
                        "message": format!("the operation did not stop within {} s of being cancelled", STOP_GRACE.as_secs()),
                    }),
                    deadline_hit,
                );
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn notify_catalog<K: Operation>(env: &RunEnv<K>, final_status: &Value) {
    let Some(hook) = &env.hooks.catalog else {
        return;
    };
    let written_specs = env.object.written(final_status);
    if written_specs.is_empty() {
        return;
    }
    let open = |spec| Location::open(spec, &env.secrets, &env.storage);
    let mut written = Vec::new();
    for (spec, id) in &written_specs {
        match (open(spec), id) {
            (Ok(location), WrittenId::Snapshot(snapshot_id)) => written.push(Written::Snapshot {
                location,
                snapshot_id: snapshot_id.clone(),
            }),
            (Ok(location), WrittenId::BackupSet(backup_id)) => written.push(Written::BackupSet {
                location,
                backup_id: backup_id.clone(),
            }),
            (Err(e), _) => debug!(error = %e, "catalog notice: location not opened"),
        }
    }
    let locations = env
        .object
        .storage_specs()
        .iter()
        .filter_map(|s| open(s).ok())
        .collect();
    hook(CatalogNotice {
        namespace: env.resource.namespace.clone().unwrap_or_default(),
        resource: format!("{}/{}", K::KIND.as_str(), env.resource.name),
        locations,
        written,
    });
}
