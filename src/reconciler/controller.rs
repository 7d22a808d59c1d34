//! The reconcile function and the controllers.
//!
//! [`reconcile`] is generic over [`Operation`] and watches `DeserializeGuard<K>`, so one object
//! that does not deserialize is reported (status Failed, reason InvalidSpec, an Event) without
//! stopping the watch. Each pass: finalizer handling, then one [`lifecycle::decide`] step. It makes
//! Kubernetes API calls but never waits for an operation.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::{self, Action},
        events::EventType,
        reflector::ObjectRef,
        watcher,
    },
};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::{
    Error, FIELD_MANAGER, FINALIZER, Hooks, REPORTER,
    events::Recorder,
    kinds::{Kind, Mode, Operation},
    lifecycle::{self, CancelReason, Decision, Observed, StartReason, State, reason},
    runner::{self, EventSink, RunEnv, StatusWriter},
    schedule::{self, Schedule},
    supervisor::{Supervisor, TaskOwner},
};
use crate::{
    api::{
        admission,
        v1beta1::{KafkaBackup, KafkaBackupValidation, KafkaOffsetReset, KafkaOffsetRollback, KafkaRestore},
    },
    metrics::Metrics,
    ops::ResourceRef,
    secrets::refs::{self as secret_refs, SecretRefError},
    storage::{
        StorageEnv,
        configmap::{ConfigMapStore, KubeTarget},
    },
};

/// How long a blocked object (Secret missing, reference not ready) waits before the next try.
pub const BLOCKED_RETRY: Duration = Duration::from_secs(30);

/// Settings of the controllers.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespaces watched; empty: all.
    pub namespaces: Vec<String>,
    /// Operations at once.
    pub max_concurrent_operations: usize,
    /// Least time between two progress writes of one object.
    pub progress_interval: Duration,
    /// How storage is opened (the PVC root; the Kubernetes target is set per resource).
    pub storage: StorageEnv,
    /// Instance name in Events (the pod name).
    pub reporter_instance: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespaces: Vec::new(),
            max_concurrent_operations: 8,
            progress_interval: Duration::from_secs(5),
            storage: StorageEnv::default(),
            reporter_instance: None,
        }
    }
}

/// A clock, replaceable in tests.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// State shared by every reconcile.
pub struct Ctx {
    /// The Kubernetes client.
    pub client: Client,
    /// Settings.
    pub config: Config,
    /// The running operations.
    pub supervisor: Arc<Supervisor>,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The catalog hook.
    pub hooks: Hooks,
    /// Now.
    pub clock: Clock,
    /// Malformed objects already reported: uid -> the resourceVersion after the report.
    invalid_reported: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("config", &self.config)
            .field("supervisor", &self.supervisor)
            .finish()
    }
}

impl Ctx {
    /// A context with a fresh supervisor and the system clock.
    pub fn new(client: Client, config: Config, metrics: Arc<Metrics>, hooks: Hooks) -> Arc<Ctx> {
        let recorder = Recorder::new(client.clone(), REPORTER, config.reporter_instance.clone());
        Arc::new(Ctx {
            supervisor: Arc::new(Supervisor::new(config.max_concurrent_operations)),
            client,
            config,
            recorder,
            metrics,
            hooks,
            clock: Arc::new(Utc::now),
            invalid_reported: Mutex::default(),
        })
    }

    /// The same context with another clock (tests).
    pub fn with_clock(
        client: Client,
        config: Config,
        metrics: Arc<Metrics>,
        hooks: Hooks,
        clock: Clock,
    ) -> Arc<Ctx> {
        let ctx = Ctx::new(client, config, metrics, hooks);
        match Arc::try_unwrap(ctx) {
            Ok(mut ctx) => {
                ctx.clock = clock;
                Arc::new(ctx)
            }
            Err(ctx) => ctx,
        }
    }
}

/// Identity of the object a reconcile works on.
struct Target {
    namespace: String,
    name: String,
    uid: String,
}

fn target<K: Resource>(object: &K) -> Result<Target, Error> {
    let meta = object.meta();
    Ok(Target {
        namespace: meta
            .namespace
            .clone()
            .ok_or(Error::MissingMetadata("namespace"))?,
        name: meta.name.clone().ok_or(Error::MissingMetadata("name"))?,
        uid: meta.uid.clone().ok_or(Error::MissingMetadata("uid"))?,
    })
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Reconciles one object of kind `K`.
pub async fn reconcile<K: Operation>(
    object: Arc<DeserializeGuard<K>>,
    ctx: Arc<Ctx>,
) -> Result<Action, Error> {
    let kind = K::KIND.as_str();
    ctx.metrics.operator.reconciled(kind);
    let t = target(object.as_ref())?;
    let span = info_span!("reconcile", kind, namespace = %t.namespace, name = %t.name, uid = %t.uid);
    reconcile_inner::<K>(object, ctx, t).instrument(span).await
}

async fn reconcile_inner<K: Operation>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Ctx>,
    t: Target,
) -> Result<Action, Error> {
    let api: Api<DeserializeGuard<K>> = Api::namespaced(ctx.client.clone(), &t.namespace);
    let meta = guard.meta();
    let has_finalizer = meta.finalizers.iter().flatten().any(|f| f == FINALIZER);
    let events = EventSink {
        recorder: ctx.recorder.clone(),
        reference: guard.object_ref(&()),
    };
    if meta.deletion_timestamp.is_some() {
        return finalize(&api, guard.as_ref(), &ctx, &t, &events, has_finalizer).await;
    }
    let object = match &guard.0 {
        Ok(object) => object,
        Err(invalid) => return report_invalid::<K>(&api, &ctx, &t, &events, &invalid.error, meta).await,
    };
    if !has_finalizer {
        add_finalizer(&api, guard.as_ref(), &t).await?;
        return Ok(Action::await_change());
    }
    let status = serde_json::to_value(object)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .unwrap_or(Value::Null);
    let now = (ctx.clock)();
    let mode = object.mode();
    let task = ctx.supervisor.task(&t.uid);
    let schedule = match &mode {
        Mode::Scheduled(cron) => Some(Schedule::parse(cron).map_err(|e| e.to_string()).map(|s| {
            let created = meta.creation_timestamp.as_ref().map_or(now, |c| {
                DateTime::from_timestamp_millis(c.0.as_millisecond()).unwrap_or(now)
            });
            schedule::decide(
                &s,
                status.get("lastScheduleTime").and_then(super::kinds::parse_time),
                K::last_finished(&status),
                created,
                now,
                task.is_some(),
            )
        })),
        _ => None,
    };
    let observed = Observed {
        kind: K::KIND,
        mode: &mode,
        suspended: object.suspended(),
        generation: meta.generation,
        status: &status,
        task,
        recently_written: ctx.supervisor.recently_written_phase(&t.uid),
        ttl: object.execution().and_then(|e| e.ttl_seconds_after_finished),
        finished_at: K::last_finished(&status),
        schedule,
        on_restart: object.on_restart(),
        approval_asked: object.approval_asked(),
        now,
    };
    let decision = lifecycle::decide(&observed);
    tracing::debug!(?decision, "decided");
    let writer = StatusWriter::new(api.clone(), &t.name);
    let patch_state = |state: &State, extra: Value| {
        lifecycle::merged(
            lifecycle::status_patch(K::KIND, state, &status, meta.generation, now),
            extra,
        )
    };
    let what = format!("write status of {} {}/{}", K::KIND, t.namespace, t.name);
    let write = |patch: Value| {
        let writer = &writer;
        let what = what.clone();
        async move { writer.patch(&patch).await.map_err(Error::kube(what)) }
    };
    let after = match decision {
        Decision::Initialize => {
            let mut extra = json!({});
            if let Some(Ok(d)) = &observed.schedule {
                extra["nextScheduleTime"] = json!(d.next.map(crate::ops::time));
            }
            write(patch_state(&State::Pending, extra)).await?;
            Some(Duration::from_secs(1))
        }
        Decision::Start(reason) => start::<K>(&ctx, &api, object, &status, &t, &events, reason).await?,
        Decision::Interrupted(message) => {
            let extra = completion_extra(K::KIND, now);
            write(patch_state(
                &State::Failed {
                    reason: reason::INTERRUPTED,
                    message: message.clone(),
                },
                extra,
            ))
            .await?;
            ctx.metrics
                .operator
                .operation_finished(K::KIND.as_str(), "failed", Duration::ZERO, None, None);
            events
                .emit(EventType::Warning, reason::INTERRUPTED, "Reconcile", message)
                .await;
            None
        }
        Decision::Cancel(why) => {
            if ctx.supervisor.cancel(&t.uid, why) {
                events
                    .emit(
                        EventType::Normal,
                        reason::CANCELLED,
                        "Reconcile",
                        format!("cancelling the running operation: {}", why.describe()),
                    )
                    .await;
            }
            Some(Duration::from_secs(2))
        }
        Decision::MarkSuspended => {
            write(patch_state(&State::Suspended, json!({"nextScheduleTime": null}))).await?;
            events
                .emit(
                    EventType::Normal,
                    reason::SUSPENDED,
                    "Reconcile",
                    State::Suspended.message(),
                )
                .await;
            None
        }
        Decision::Fire { tick, next, missed } => {
            // lastScheduleTime is persisted first, with the resourceVersion as precondition: a tick
            // fires once, even if another replica or an earlier process looked at it too.
            let patch = json!({
                "metadata": {"resourceVersion": meta.resource_version},
                "status": {
                    "lastScheduleTime": crate::ops::time(tick),
                    "nextScheduleTime": next.map(crate::ops::time),
                },
            });
            match api.patch_status(&t.name, &params(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    info!("status changed meanwhile; looking again before firing the tick");
                    return Ok(Action::requeue(Duration::from_millis(500)));
                }
                Err(e) => return Err(Error::kube(format!("record schedule tick of {}", t.name))(e)),
            }
            if missed > 0 {
                ctx.metrics.operator.missed_runs(K::KIND.as_str(), missed);
                events
                    .emit(
                        EventType::Warning,
                        reason::MISSED_SCHEDULE,
                        "Schedule",
                        format!(
                            "{missed} scheduled run(s) missed before the tick {} (operator down, or the previous run still running); they are not replayed",
                            schedule::tick_label(tick)
                        ),
                    )
                    .await;
            }
            events
                .emit(
                    EventType::Normal,
                    reason::SCHEDULED,
                    "Schedule",
                    format!("run for the tick {} starts", schedule::tick_label(tick)),
                )
                .await;
            let mut status = status.clone();
            if let Some(map) = status.as_object_mut() {
                map.insert("lastScheduleTime".into(), json!(crate::ops::time(tick)));
            }
            start::<K>(&ctx, &api, object, &status, &t, &events, StartReason::Scheduled).await?
        }
        Decision::UpdateNext { next, missed: _ } => {
            write(json!({ "nextScheduleTime": next.map(crate::ops::time) })).await?;
            None
        }
        Decision::InvalidSchedule(message) => {
            write(patch_state(
                &State::Failed {
                    reason: reason::INVALID_SCHEDULE,
                    message: message.clone(),
                },
                json!({"nextScheduleTime": null}),
            ))
            .await?;
            events
                .emit(EventType::Warning, reason::INVALID_SCHEDULE, "Schedule", message)
                .await;
            None
        }
        Decision::ExpireTtl => {
            info!("ttlSecondsAfterFinished passed: deleting the resource");
            events
                .emit(
                    EventType::Normal,
                    reason::TTL_EXPIRED,
                    "Delete",
                    "execution.ttlSecondsAfterFinished passed since the operation finished: deleting the resource",
                )
                .await;
            match api.delete(&t.name, &DeleteParams::default()).await {
                Ok(_) => None,
                Err(kube::Error::Api(e)) if e.code == 404 => None,
                Err(e) => return Err(Error::kube(format!("delete {} after its TTL", t.name))(e)),
            }
        }
        Decision::Wait(after) => after,
    };
    let after = lifecycle::requeue_after(&observed, after);
    tracing::debug!(?after, "requeue");
    Ok(after.map_or_else(Action::await_change, Action::requeue))
}

fn completion_extra(kind: Kind, now: DateTime<Utc>) -> Value {
    let mut extra = json!({});
    if let Some(field) = kind.completion_time_field() {
        extra[field] = json!(crate::ops::time(now));
    }
    extra
}

/// Starts the operation: re-judge, resolve references, read Secrets, hand over to the supervisor.
/// Returns when to look again (a blocked start is retried).
async fn start<K: Operation>(
    ctx: &Arc<Ctx>,
    api: &Api<DeserializeGuard<K>>,
    object: &K,
    status: &Value,
    t: &Target,
    events: &EventSink,
    reason: StartReason,
) -> Result<Option<Duration>, Error> {
    let generation = object.meta().generation;
    let now = (ctx.clock)();
    let writer = StatusWriter::new(api.clone(), &t.name);
    let blocked = |state: State| lifecycle::status_patch(K::KIND, &state, status, generation, now);
    let current_message = status
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    // 1. The same judgement as the admission webhook (the object may predate a rule, or the
    //    webhook may have been bypassed).
    let json = serde_json::to_value(object).unwrap_or(Value::Null);
    let problems = match admission::validate(&json, None) {
        Ok(verdict) => verdict
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect::<Vec<_>>(),
        Err(e) => vec![e.to_string()],
    };
    if !problems.is_empty() {
        let message = format!("the spec is invalid: {}", problems.join("; "));
        let state = State::Failed {
            reason: reason::INVALID_SPEC,
            message: message.clone(),
        };
        writer
            .patch(&lifecycle::merged(blocked(state), completion_extra(K::KIND, now)))
            .await
            .map_err(Error::kube(format!("write status of {}", t.name)))?;
        events
            .emit(EventType::Warning, reason::INVALID_SPEC, "Reconcile", message)
            .await;
        return Ok(None);
    }

    // 2. References to other resources.
    let resolved = match Arc::new(object.clone())
        .resolve(ctx.client.clone(), t.namespace.clone())
        .await
    {
        Ok(resolved) => resolved,
        Err(message) => {
            let state = State::Blocked {
                reason: reason::REFERENCE_NOT_READY,
                message: message.clone(),
            };
            writer
                .patch(&blocked(state))
                .await
                .map_err(Error::kube(format!("write status of {}", t.name)))?;
            if current_message != message {
                events
                    .emit(
                        EventType::Warning,
                        reason::REFERENCE_NOT_READY,
                        "Reconcile",
                        message,
                    )
                    .await;
            }
            return Ok(Some(BLOCKED_RETRY));
        }
    };

    // 3. Secrets, from the resource's namespace only.
    let refs = resolved.secret_refs();
    let secrets = match secret_refs::fetch(&ctx.client, &t.namespace, &refs).await {
        Ok(secrets) => secrets,
        Err(SecretRefError::Missing(missing)) => {
            let message = format!("cannot start: {}", missing.join("; "));
            let state = State::Blocked {
                reason: reason::SECRET_MISSING,
                message: message.clone(),
            };
            writer
                .patch(&blocked(state))
                .await
                .map_err(Error::kube(format!("write status of {}", t.name)))?;
            if current_message != message {
                events
                    .emit(EventType::Warning, reason::SECRET_MISSING, "Reconcile", message)
                    .await;
            }
            return Ok(Some(BLOCKED_RETRY));
        }
        Err(SecretRefError::Read { source, secret, .. }) => {
            return Err(Error::kube(format!("read Secret {}/{secret}", t.namespace))(
                source,
            ));
        }
    };

    // 4. Requests the run answers, removed first so that they are answered once.
    let consumed = resolved.consumed_annotations();
    if !consumed.is_empty() {
        let removed: serde_json::Map<String, Value> = consumed
            .iter()
            .map(|key| ((*key).to_owned(), Value::Null))
            .collect();
        api.patch(
            &t.name,
            &params(),
            &Patch::Merge(json!({"metadata": {"annotations": removed}})),
        )
        .await
        .map_err(Error::kube(format!(
            "remove the annotations {consumed:?} of {}",
            t.name
        )))?;
    }

    // 5. The task.
    let storage = StorageEnv {
        pvc_root: ctx.config.storage.pvc_root.clone(),
        config_maps: ConfigMapStore::Kube(KubeTarget {
            client: ctx.client.clone(),
            namespace: t.namespace.clone(),
        }),
    };
    let env = RunEnv {
        object: Arc::new(resolved),
        writer,
        events: events.clone(),
        resource: ResourceRef {
            kind: K::KIND.as_str().into(),
            namespace: Some(t.namespace.clone()),
            name: t.name.clone(),
            uid: Some(t.uid.clone()),
        },
        generation,
        status: status.clone(),
        reason,
        secrets,
        storage,
        progress_interval: ctx.config.progress_interval,
        scratch_dir: std::env::temp_dir(),
        metrics: Arc::clone(&ctx.metrics),
        hooks: ctx.hooks.clone(),
    };
    let owner = TaskOwner {
        kind: K::KIND,
        namespace: t.namespace.clone(),
        name: t.name.clone(),
    };
    if !ctx
        .supervisor
        .start(&t.uid, owner, generation, move |handle| runner::run(env, handle))
    {
        info!("an operation already runs for this object");
    }
    Ok(None)
}

/// Deletion: cancel the running operation, wait (by requeueing) until it has stopped, then remove
/// the finalizer. Nothing stored is deleted.
async fn finalize<K: Operation>(
    api: &Api<DeserializeGuard<K>>,
    object: &DeserializeGuard<K>,
    ctx: &Arc<Ctx>,
    t: &Target,
    events: &EventSink,
    has_finalizer: bool,
) -> Result<Action, Error> {
    if !has_finalizer {
        return Ok(Action::await_change());
    }
    if let Some(task) = ctx.supervisor.task(&t.uid) {
        if !task.cancelling {
            ctx.supervisor.cancel(&t.uid, CancelReason::Deleted);
            events
                .emit(
                    EventType::Normal,
                    reason::CANCELLED,
                    "Delete",
                    "deletion requested: cancelling the running operation",
                )
                .await;
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    remove_finalizer(api, object, t).await?;
    ctx.invalid_reported
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&t.uid);
    Ok(Action::await_change())
}

/// JSON patch adding the finalizer, guarded by a test of the current list. Pure.
pub fn add_finalizer_patch(current: Option<&[String]>) -> Value {
    match current {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(list) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    }
}

/// JSON patch removing the finalizer, guarded by a test of its position. Pure.
pub fn remove_finalizer_patch(current: &[String]) -> Option<Value> {
    let index = current.iter().position(|f| f == FINALIZER)?;
    let path = format!("/metadata/finalizers/{index}");
    Some(json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))
}

async fn json_patch<K: Operation>(
    api: &Api<DeserializeGuard<K>>,
    name: &str,
    patch: Value,
) -> Result<(), kube::Error> {
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    api.patch(name, &params(), &Patch::<()>::Json(patch))
        .await
        .map(drop)
}

async fn add_finalizer<K: Operation>(
    api: &Api<DeserializeGuard<K>>,
    object: &DeserializeGuard<K>,
    t: &Target,
) -> Result<(), Error> {
    let current = object.meta().finalizers.clone();
    json_patch(api, &t.name, add_finalizer_patch(current.as_deref()))
        .await
        .map_err(Error::kube(format!("add finalizer to {}", t.name)))
}

async fn remove_finalizer<K: Operation>(
    api: &Api<DeserializeGuard<K>>,
    object: &DeserializeGuard<K>,
    t: &Target,
) -> Result<(), Error> {
    let current = object.meta().finalizers.clone().unwrap_or_default();
    let Some(patch) = remove_finalizer_patch(&current) else {
        return Ok(());
    };
    match json_patch(api, &t.name, patch).await {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("remove finalizer from {}", t.name))(e)),
    }
}

/// An object that does not deserialize: Failed, reason InvalidSpec, one Event; the watch goes on.
async fn report_invalid<K: Operation>(
    api: &Api<DeserializeGuard<K>>,
    ctx: &Arc<Ctx>,
    t: &Target,
    events: &EventSink,
    error: &str,
    meta: &kube::api::ObjectMeta,
) -> Result<Action, Error> {
    ctx.metrics
        .operator
        .reconcile_error(K::KIND.as_str(), "invalid_object");
    let rv = meta.resource_version.clone().unwrap_or_default();
    let already = ctx
        .invalid_reported
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&t.uid)
        .is_some_and(|reported| *reported == rv);
    if already {
        return Ok(Action::await_change());
    }
    let message = format!(
        "the object cannot be read as {} {}: {error}",
        K::KIND.as_str(),
        K::version(&())
    );
    warn!(%message, "malformed object");
    let state = State::Failed {
        reason: reason::INVALID_SPEC,
        message: message.clone(),
    };
    let now = (ctx.clock)();
    let patch = lifecycle::status_patch(K::KIND, &state, &Value::Null, meta.generation, now);
    let written = api
        .patch_status(&t.name, &params(), &Patch::Merge(json!({ "status": patch })))
        .await
        .map_err(Error::kube(format!("write status of {}", t.name)))?;
    events
        .emit(EventType::Warning, reason::INVALID_SPEC, "Reconcile", message)
        .await;
    ctx.invalid_reported
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(t.uid.clone(), written.resource_version().unwrap_or_default());
    Ok(Action::await_change())
}

/// Logs a failed reconcile, counts it, and retries it after 10 seconds.
pub fn error_policy<K: Operation>(object: Arc<DeserializeGuard<K>>, error: &Error, ctx: Arc<Ctx>) -> Action {
    warn!(
        kind = K::KIND.as_str(),
        namespace = object.namespace().unwrap_or_default(),
        name = object.name_any(),
        %error,
        "reconcile failed; retrying in 10 s"
    );
    ctx.metrics
        .operator
        .reconcile_error(K::KIND.as_str(), error.metric_label());
    Action::requeue(Duration::from_secs(10))
}

/// The objects of kind `K` (in `namespace`, or any) whose operation task ended, as reconcile
/// triggers: the reconcile that saw the final status may have run while the task was still
/// registered. A subscriber that fell behind skips what it missed (the requeues cover it).
fn ended_tasks<K: Operation>(
    ended: broadcast::Receiver<TaskOwner>,
    namespace: Option<String>,
) -> impl Stream<Item = ObjectRef<DeserializeGuard<K>>> + Send + 'static {
    futures::stream::unfold(ended, |mut ended| async move {
        loop {
            match ended.recv().await {
                Ok(owner) => return Some((owner, ended)),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .filter_map(move |owner| {
        let wanted = owner.kind == K::KIND && namespace.as_ref().is_none_or(|ns| *ns == owner.namespace);
        futures::future::ready(wanted.then(|| ObjectRef::new(&owner.name).within(&owner.namespace)))
    })
}

/// Runs the controller of kind `K` (one per watched namespace) until `stop` fires.
pub async fn run_kind<K: Operation>(ctx: Arc<Ctx>, stop: CancellationToken) {
    let apis: Vec<(Api<DeserializeGuard<K>>, Option<String>)> = if ctx.config.namespaces.is_empty() {
        vec![(Api::all(ctx.client.clone()), None)]
    } else {
        ctx.config
            .namespaces
            .iter()
            .map(|ns| (Api::namespaced(ctx.client.clone(), ns), Some(ns.clone())))
            .collect()
    };
    let runs = apis.into_iter().map(|(api, namespace)| {
        let ctx = Arc::clone(&ctx);
        let stop = stop.clone();
        async move {
            if let Err(e) = api.list(&ListParams::default().limit(1)).await {
                error!(kind = K::KIND.as_str(), error = %e, "cannot list the custom resource; is its CRD installed (crds/ or the Helm chart) and does the RBAC allow it? The watch retries");
            }
            Controller::new(api, watcher::Config::default().any_semantic())
                .with_config(controller::Config::default().concurrency(16))
                .reconcile_on(ended_tasks::<K>(
                    ctx.supervisor.subscribe_finished(),
                    namespace,
                ))
                .graceful_shutdown_on(stop.cancelled_owned())
                .run(reconcile::<K>, error_policy::<K>, ctx)
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(kind = K::KIND.as_str(), error = %e, "controller event");
                    }
                })
                .await;
        }
    });
    futures::future::join_all(runs).await;
}

/// Runs the controllers of the five kinds while `leading` is not cancelled, then stops every
/// operation: with `shutdown` cancelled, as a shutdown (non-resumable operations get a few seconds
/// to report), else as a loss of leadership (no status is written any more).
pub async fn run_controllers(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    leading: CancellationToken,
    shutdown: CancellationToken,
) {
    let ctx = Ctx::new(client, config, metrics, hooks);
    run_with(ctx, leading, shutdown).await;
}

/// [`run_controllers`] with a given context.
pub async fn run_with(ctx: Arc<Ctx>, leading: CancellationToken, shutdown: CancellationToken) {
    info!(
        namespaces = ?ctx.config.namespaces,
        max_concurrent_operations = ctx.config.max_concurrent_operations,
        "reconciler started"
    );
    // Adding a kind: one line here and one `Operation` impl.
    tokio::join!(
        run_kind::<KafkaBackup>(Arc::clone(&ctx), leading.clone()),
        run_kind::<KafkaRestore>(Arc::clone(&ctx), leading.clone()),
        run_kind::<KafkaOffsetReset>(Arc::clone(&ctx), leading.clone()),
        run_kind::<KafkaOffsetRollback>(Arc::clone(&ctx), leading.clone()),
        run_kind::<KafkaBackupValidation>(Arc::clone(&ctx), leading.clone()),
    );
    let reason = if shutdown.is_cancelled() {
        CancelReason::Shutdown
    } else {
        CancelReason::LostLeadership
    };
    ctx.supervisor.cancel_all(reason);
    let grace = if reason == CancelReason::Shutdown {
        Duration::from_secs(8)
    } else {
        Duration::from_secs(2)
    };
    if !ctx.supervisor.wait_all(grace).await {
        warn!("some operations did not stop in time");
    }
    info!(?reason, "reconciler stopped");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The controller of one kind and namespace is triggered by the ends of its own objects'
    /// tasks only.
    #[tokio::test]
    async fn ended_tasks_trigger_their_objects_controller() {
        let supervisor = Supervisor::new(4);
        let ended = ended_tasks::<KafkaBackup>(supervisor.subscribe_finished(), Some("a".into()));
        for (kind, namespace, name) in [
            (Kind::Backup, "a", "nightly"),
            (Kind::Restore, "a", "put-back"),
            (Kind::Backup, "b", "other-namespace"),
            (Kind::Backup, "a", "hourly"),
        ] {
            let owner = TaskOwner {
                kind,
                namespace: namespace.into(),
                name: name.into(),
            };
            supervisor.start(name, owner, None, |_| async {});
            supervisor.wait(name).await;
        }
        let triggered: Vec<(String, Option<String>)> =
            ended.take(2).map(|r| (r.name, r.namespace)).collect().await;
        assert_eq!(
            triggered,
            [
                ("nightly".to_owned(), Some("a".to_owned())),
                ("hourly".to_owned(), Some("a".to_owned()))
            ]
        );
    }

    #[test]
    fn finalizer_patches_are_guarded() {
        let add = add_finalizer_patch(None);
        assert_eq!(add[1]["value"], json!([FINALIZER]));
        let other = vec!["other/x".to_owned()];
        let add = add_finalizer_patch(Some(&other));
        assert_eq!(add[0]["value"], json!(["other/x"]));
        assert_eq!(add[1]["path"], "/metadata/finalizers/-");
        let remove = remove_finalizer_patch(&["other/x".into(), FINALIZER.into()]).unwrap();
        assert_eq!(
            remove[0],
            json!({"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER})
        );
        assert_eq!(
            remove[1],
            json!({"op": "remove", "path": "/metadata/finalizers/1"})
        );
        assert!(remove_finalizer_patch(&other).is_none());
        // The patches parse as JSON patches.
        let _: json_patch::Patch = serde_json::from_value(add).unwrap();
        let _: json_patch::Patch = serde_json::from_value(remove).unwrap();
    }
}
