//! The lifecycle as pure functions: what to do next with an object ([`decide`]), which conditions
//! a state has ([`State::conditions`]), the status patch of a state ([`status_patch`]) and TTL.
//! (Retries and their backoff are the engines', in [`crate::ops::execution`].)
//!
//! Conditions, one per type, `observedGeneration` set:
//!
//! | state | phase | Ready | Progressing | Degraded |
//! |---|---|---|---|---|
//! | accepted | Pending | False Pending | False Pending | False AsExpected |
//! | blocked (Secret missing, bad reference, invalid spec) | Pending / Failed | False *reason* | False *reason* | True *reason* |
//! | queued (no free operation slot) | Pending | False Queued | True Queued | False AsExpected |
//! | running | Running | False Running (continuous backup: True) | True Running / Resumed | False AsExpected |
//! | retrying | Running | False AttemptFailed | True Retrying | True AttemptFailed |
//! | completed | Completed | True Completed | False Completed | False / True MissedSchedule |
//! | partially completed | PartiallyCompleted | False PartiallyCompleted | False PartiallyCompleted | True PartiallyCompleted |
//! | failed | Failed | False *reason* | False *reason* | True *reason* |
//! | suspended | Suspended | (unchanged) | False Suspended | (unchanged) |
//! | waiting for approval | PendingApproval | False PendingApproval | False PendingApproval | False AsExpected |
//!
//! A KafkaOffsetReset with `approval: Manual` also has the condition `Approved`, which its
//! engine sets ([`crate::ops::approval`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::{Map, Value, json};

use super::{
    kinds::{Kind, Mode, RestartPolicy, parse_time},
    schedule::ScheduleDecision,
};
use crate::ops::time;

/// Condition type: the resource did what it asks for (its last operation succeeded).
pub const READY: &str = "Ready";
/// Condition type: an operation is queued, running or retrying.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something went wrong or partly wrong.
pub const DEGRADED: &str = "Degraded";

/// Reasons used in conditions and Events.
pub mod reason {
    /// Accepted, not started.
    pub const PENDING: &str = "Pending";
    /// Waiting for a free operation slot.
    pub const QUEUED: &str = "Queued";
    /// Running.
    pub const RUNNING: &str = "Running";
    /// Running again after an operator restart.
    pub const RESUMED: &str = "Resumed";
    /// An attempt failed; another follows after a backoff.
    pub const RETRYING: &str = "Retrying";
    /// An attempt failed.
    pub const ATTEMPT_FAILED: &str = "AttemptFailed";
    /// Finished successfully.
    pub const COMPLETED: &str = "Completed";
    /// Finished with some targets failed.
    pub const PARTIALLY_COMPLETED: &str = "PartiallyCompleted";
    /// The operation failed.
    pub const FAILED: &str = "OperationFailed";
    /// `execution.deadlineSeconds` passed.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// The operator restarted during an operation that is not re-run.
    pub const INTERRUPTED: &str = "Interrupted";
    /// The spec does not pass validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The schedule cannot be parsed.
    pub const INVALID_SCHEDULE: &str = "InvalidSchedule";
    /// A Secret or key the spec names is missing.
    pub const SECRET_MISSING: &str = "SecretMissing";
    /// A resource the spec refers to is missing or not ready.
    pub const REFERENCE_NOT_READY: &str = "ReferenceNotReady";
    /// `suspend` is set.
    pub const SUSPENDED: &str = "Suspended";
    /// Scheduled ticks were not run.
    pub const MISSED_SCHEDULE: &str = "MissedSchedule";
    /// Nothing wrong.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// The operation was cancelled.
    pub const CANCELLED: &str = "Cancelled";
    /// A scheduled run starts.
    pub const SCHEDULED: &str = "Scheduled";
    /// The resource is deleted after `ttlSecondsAfterFinished`.
    pub const TTL_EXPIRED: &str = "TTLExpired";
    /// The plan waits for a human to approve it.
    pub const PENDING_APPROVAL: &str = "PendingApproval";
    /// An approval named another plan than the fresh one.
    pub const APPROVAL_REFUSED: &str = "ApprovalRefused";
}

/// A lifecycle state, from which phase and conditions follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Accepted, not started.
    Pending,
    /// Cannot start: a Secret is missing, a reference is not ready. Phase stays Pending.
    Blocked {
        /// Reason (e.g. SecretMissing).
        reason: &'static str,
        /// What is wrong, naming it.
        message: String,
    },
    /// Waiting for a free operation slot.
    Queued {
        /// Why.
        message: String,
    },
    /// An operation runs.
    Running {
        /// It was resumed after an operator restart.
        resumed: bool,
        /// It never finishes on its own (continuous backup): Ready is True while it runs.
        continuous: bool,
        /// What it does.
        message: String,
    },
    /// An attempt failed; the next one follows.
    Retrying {
        /// The failure and when the next attempt starts.
        message: String,
    },
    /// Finished successfully.
    Completed {
        /// Summary.
        message: String,
        /// Scheduled ticks not run before this one (Degraded MissedSchedule).
        missed: u64,
    },
    /// Finished with some targets failed.
    PartiallyCompleted {
        /// Summary.
        message: String,
    },
    /// Failed.
    Failed {
        /// Reason (OperationFailed, InvalidSpec, Interrupted, DeadlineExceeded, ...).
        reason: &'static str,
        /// What went wrong.
        message: String,
    },
    /// `suspend` is set.
    Suspended,
    /// The plan is in status, waiting for approval; nothing was changed.
    PendingApproval {
        /// What to approve, or why an approval was refused.
        message: String,
    },
}

/// A condition to set: type, status, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSpec {
    /// Ready, Progressing or Degraded.
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Sentence.
    pub message: String,
}

fn cond(type_: &'static str, status: bool, reason: &'static str, message: &str) -> ConditionSpec {
    ConditionSpec {
        type_,
        status,
        reason,
        message: message.to_owned(),
    }
}

impl State {
    /// The phase this state shows.
    pub fn phase(&self, kind: Kind) -> &'static str {
        match self {
            State::Pending | State::Queued { .. } | State::Blocked { .. } => "Pending",
            State::Running { .. } | State::Retrying { .. } => "Running",
            State::Completed { .. } => "Completed",
            State::PartiallyCompleted { .. } if kind.runs_repeatedly() => "Completed",
            State::PartiallyCompleted { .. } => "PartiallyCompleted",
            State::Failed { .. } => "Failed",
            State::Suspended if kind.runs_repeatedly() => "Suspended",
            State::Suspended => "Pending",
            State::PendingApproval { .. } => "PendingApproval",
        }
    }

    /// The status message of this state.
    pub fn message(&self) -> String {
        match self {
            State::Pending => "accepted; the operation starts shortly".into(),
            State::Suspended => "suspended: no run starts while spec.suspend is true".into(),
            State::Blocked { message, .. }
            | State::Queued { message }
            | State::Running { message, .. }
            | State::Retrying { message }
            | State::Completed { message, .. }
            | State::PartiallyCompleted { message }
            | State::PendingApproval { message }
            | State::Failed { message, .. } => message.clone(),
        }
    }

    /// The conditions of this state (absent types keep their previous value).
    pub fn conditions(&self) -> Vec<ConditionSpec> {
        use reason::*;
        let m = self.message();
        let fine = |t| cond(t, false, AS_EXPECTED, "no problem observed");
        match self {
            State::Pending => vec![
                cond(READY, false, PENDING, &m),
                cond(PROGRESSING, false, PENDING, &m),
                fine(DEGRADED),
            ],
            State::Blocked { reason, .. } => vec![
                cond(READY, false, reason, &m),
                cond(PROGRESSING, false, reason, &m),
                cond(DEGRADED, true, reason, &m),
            ],
            State::Queued { .. } => vec![
                cond(READY, false, QUEUED, &m),
                cond(PROGRESSING, true, QUEUED, &m),
                fine(DEGRADED),
            ],
            State::Running {
                resumed, continuous, ..
            } => {
                let r = if *resumed { RESUMED } else { RUNNING };
                vec![
                    cond(READY, *continuous, RUNNING, &m),
                    cond(PROGRESSING, true, r, &m),
                    fine(DEGRADED),
                ]
            }
            State::Retrying { .. } => vec![
                cond(READY, false, ATTEMPT_FAILED, &m),
                cond(PROGRESSING, true, RETRYING, &m),
                cond(DEGRADED, true, ATTEMPT_FAILED, &m),
            ],
            State::Completed { missed, .. } => vec![
                cond(READY, true, COMPLETED, &m),
                cond(PROGRESSING, false, COMPLETED, &m),
                if *missed > 0 {
                    cond(
                        DEGRADED,
                        true,
                        MISSED_SCHEDULE,
                        &format!("{missed} scheduled run(s) missed before this one"),
                    )
                } else {
                    fine(DEGRADED)
                },
            ],
            State::PartiallyCompleted { .. } => vec![
                cond(READY, false, PARTIALLY_COMPLETED, &m),
                cond(PROGRESSING, false, PARTIALLY_COMPLETED, &m),
                cond(DEGRADED, true, PARTIALLY_COMPLETED, &m),
            ],
            State::Failed { reason, .. } => vec![
                cond(READY, false, reason, &m),
                cond(PROGRESSING, false, reason, &m),
                cond(DEGRADED, true, reason, &m),
            ],
            State::Suspended => vec![cond(PROGRESSING, false, SUSPENDED, &m)],
            State::PendingApproval { .. } => vec![
                cond(READY, false, PENDING_APPROVAL, &m),
                cond(PROGRESSING, false, PENDING_APPROVAL, &m),
                fine(DEGRADED),
            ],
        }
    }

    /// The state an operation's final status (phase and message) stands for.
    pub fn from_final(phase: Option<&str>, message: Option<&str>, deadline_exceeded: bool) -> State {
        let message = message.unwrap_or_default().to_owned();
        match phase {
            Some("Completed") => State::Completed { message, missed: 0 },
            Some("PartiallyCompleted") => State::PartiallyCompleted { message },
            Some("Suspended") => State::Suspended,
            Some("PendingApproval") => State::PendingApproval { message },
            _ if deadline_exceeded => State::Failed {
                reason: reason::DEADLINE_EXCEEDED,
                message,
            },
            _ => State::Failed {
                reason: reason::FAILED,
                message: if message.is_empty() {
                    "the operation failed without a message".into()
                } else {
                    message
                },
            },
        }
    }
}

/// The conditions after setting `new` on `previous`: one per type, `lastTransitionTime` kept when
/// the status of a type does not change, types not in `new` kept as they were. Pure.
pub fn merge_conditions(
    previous: &[Condition],
    new: &[ConditionSpec],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let status_str = |b: bool| if b { "True" } else { "False" };
    let mut out: Vec<Condition> = Vec::new();
    for type_ in [READY, PROGRESSING, DEGRADED] {
        let old = previous.iter().find(|c| c.type_ == type_);
        match (new.iter().find(|c| c.type_ == type_), old) {
            (Some(spec), old) => {
                let status = status_str(spec.status);
                let last_transition_time = match old {
                    Some(o) if o.status == status => o.last_transition_time.clone(),
                    _ => time(now),
                };
                out.push(Condition {
                    type_: type_.to_owned(),
                    status: status.to_owned(),
                    reason: spec.reason.to_owned(),
                    message: truncate(&spec.message, 2048),
                    observed_generation: generation,
                    last_transition_time,
                });
            }
            (None, Some(old)) => out.push(old.clone()),
            (None, None) => {}
        }
    }
    // Conditions of other types (set by someone else) are kept.
    out.extend(
        previous
            .iter()
            .filter(|c| ![READY, PROGRESSING, DEGRADED].contains(&c.type_.as_str()))
            .cloned(),
    );
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The conditions in a status (JSON).
pub fn conditions_of(status: &Value) -> Vec<Condition> {
    status
        .get("conditions")
        .cloned()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default()
}

/// The status fields (JSON, for a merge patch) that put an object of `kind` in `state`:
/// `phase`, `message`, `conditions`, `observedGeneration`. Pure.
pub fn status_patch(
    kind: Kind,
    state: &State,
    previous: &Value,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Value {
    let conditions = merge_conditions(&conditions_of(previous), &state.conditions(), generation, now);
    json!({
        "phase": state.phase(kind),
        "message": truncate(&state.message(), 4096),
        "observedGeneration": generation,
        "conditions": conditions,
    })
}

/// Puts the conditions an engine sets itself into a status patch: those of `engine_status` of
/// types other than Ready, Progressing and Degraded (the `Approved` of a Manual reset) replace
/// the patch's of the same type, keeping `lastTransitionTime` when the status is unchanged. Pure.
pub fn with_engine_conditions(mut patch: Value, engine_status: &Value) -> Value {
    let own = conditions_of(engine_status);
    let mut conditions = conditions_of(&patch);
    for new in own
        .into_iter()
        .filter(|c| ![READY, PROGRESSING, DEGRADED].contains(&c.type_.as_str()))
    {
        match conditions.iter_mut().find(|c| c.type_ == new.type_) {
            Some(old) => {
                let since = (old.status == new.status).then(|| old.last_transition_time.clone());
                *old = new;
                if let Some(since) = since {
                    old.last_transition_time = since;
                }
            }
            None => conditions.push(new),
        }
    }
    if let Some(p) = patch.as_object_mut() {
        p.insert("conditions".into(), json!(conditions));
    }
    patch
}

/// The engine's `Approved` condition says an approval was refused (it named another plan).
pub fn approval_refused(engine_status: &Value) -> bool {
    conditions_of(engine_status).iter().any(|c| {
        c.type_ == crate::ops::approval::APPROVED
            && c.status == "False"
            && crate::ops::approval::is_refusal(&c.reason)
    })
}

/// Merges `extra` (an object) into `patch` (an object); `extra` wins.
pub fn merged(mut patch: Value, extra: Value) -> Value {
    if let (Some(p), Value::Object(e)) = (patch.as_object_mut(), extra) {
        for (k, v) in e {
            p.insert(k, v);
        }
    }
    patch
}

/// Removes the lifecycle and schedule fields from an operation's status, so the reconciler's own
/// values for them (and its clock) are not overwritten by it.
pub fn without_lifecycle(status: Value) -> Map<String, Value> {
    let mut map = match status {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for key in [
        "phase",
        "message",
        "conditions",
        "observedGeneration",
        "lastScheduleTime",
        "nextScheduleTime",
    ] {
        map.remove(key);
    }
    map
}

/// The time left until a finished object with `ttlSecondsAfterFinished: ttl` is deleted;
/// `Duration::ZERO` when it is due. Pure.
pub fn ttl_remaining(finished: DateTime<Utc>, ttl: i64, now: DateTime<Utc>) -> Duration {
    let due = finished + chrono::Duration::seconds(ttl.max(0));
    (due - now).to_std().unwrap_or(Duration::ZERO)
}

/// A phase after which a one-shot operation is finished.
pub fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Completed" | "PartiallyCompleted" | "Failed"))
}

/// Why a reconcile starts an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartReason {
    /// First run (or a new spec generation of a backup).
    New,
    /// Running again after an operator restart.
    Resumed,
    /// A schedule tick.
    Scheduled,
}

/// Why a running operation is cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// The resource is being deleted.
    Deleted,
    /// `suspend` was set.
    Suspended,
    /// The spec changed (continuous backup restarts with the new spec).
    SpecChanged,
    /// The process is shutting down.
    Shutdown,
    /// This process lost the Lease: it must stop writing at once.
    LostLeadership,
}

impl CancelReason {
    /// A sentence for messages.
    pub fn describe(self) -> &'static str {
        match self {
            CancelReason::Deleted => "the resource is being deleted",
            CancelReason::Suspended => "spec.suspend was set",
            CancelReason::SpecChanged => "the spec changed",
            CancelReason::Shutdown => "the operator is shutting down",
            CancelReason::LostLeadership => "this operator replica lost leadership",
        }
    }
}

/// What the reconciler sees of a task the supervisor runs for the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// The generation the task runs.
    pub generation: Option<i64>,
    /// It was asked to stop.
    pub cancelling: bool,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// The kind.
    pub kind: Kind,
    /// How it runs.
    pub mode: &'a Mode,
    /// `spec.suspend`.
    pub suspended: bool,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status` (Null when absent).
    pub status: &'a Value,
    /// The task running for it, if any.
    pub task: Option<TaskView>,
    /// The phase a task of this process wrote last, when it ended moments ago (the cache may lag
    /// behind it).
    pub recently_written: Option<String>,
    /// `execution.ttlSecondsAfterFinished`.
    pub ttl: Option<i64>,
    /// When its last operation finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The schedule's decision now (scheduled mode), or why the schedule is unusable.
    pub schedule: Option<Result<ScheduleDecision, String>>,
    /// What to do if it was found Running without a task.
    pub on_restart: RestartPolicy,
    /// In phase PendingApproval: an approval or a plan refresh waits to be judged
    /// ([`crate::ops::approval::asks_for_a_run`]).
    pub approval_asked: bool,
    /// Now.
    pub now: DateTime<Utc>,
}

/// The next step for an object that is not being deleted and has the finalizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write the initial status (phase Pending; next tick for a schedule).
    Initialize,
    /// Start an operation.
    Start(StartReason),
    /// Mark the operation Failed, reason Interrupted, with this message.
    Interrupted(String),
    /// Cancel the running task.
    Cancel(CancelReason),
    /// Write phase Suspended.
    MarkSuspended,
    /// Persist `lastScheduleTime: tick` (and the next tick), then start a run.
    Fire {
        /// The tick.
        tick: DateTime<Utc>,
        /// The next tick.
        next: Option<DateTime<Utc>>,
        /// Ticks not run before it.
        missed: u64,
    },
    /// Write `nextScheduleTime` (it differs from status), then wait.
    UpdateNext {
        /// The next tick.
        next: Option<DateTime<Utc>>,
        /// Ticks not run (reported when > 0).
        missed: u64,
    },
    /// Mark Failed with reason InvalidSchedule.
    InvalidSchedule(String),
    /// Delete the resource (ttlSecondsAfterFinished).
    ExpireTtl,
    /// Nothing to do; look again after this long (or on the next change). A scheduled object is
    /// also looked at just after its next tick ([`requeue_after`]).
    Wait(Option<Duration>),
}

/// The next step. Pure.
pub fn decide(o: &Observed<'_>) -> Decision {
    let phase = o.status.get("phase").and_then(Value::as_str);
    if let Some(task) = o.task {
        if task.cancelling {
            return Decision::Wait(Some(Duration::from_secs(2)));
        }
        if o.suspended {
            return Decision::Cancel(CancelReason::Suspended);
        }
        if *o.mode == Mode::Continuous && task.generation != o.generation {
            return Decision::Cancel(CancelReason::SpecChanged);
        }
        return Decision::Wait(None);
    }
    if let Some(written) = &o.recently_written
        && phase != Some(written.as_str())
    {
        // Our cache has not seen our own last write yet: acting on it could start the operation
        // twice or judge it interrupted.
        return Decision::Wait(Some(Duration::from_secs(2)));
    }
    if o.suspended {
        return if phase == Some("Suspended") {
            Decision::Wait(None)
        } else {
            Decision::MarkSuspended
        };
    }
    if phase == Some("Running") {
        return match &o.on_restart {
            RestartPolicy::Resume => Decision::Start(StartReason::Resumed),
            RestartPolicy::Interrupted(message) => Decision::Interrupted(message.clone()),
        };
    }
    if phase.is_none() {
        return Decision::Initialize;
    }
    let observed = o.status.get("observedGeneration").and_then(Value::as_i64);
    if phase == Some("PendingApproval") {
        // The plan is only made again for something to judge, or a new spec.
        let spec_changed = observed.is_some() && observed != o.generation;
        return if o.approval_asked || spec_changed {
            Decision::Start(StartReason::New)
        } else {
            Decision::Wait(None)
        };
    }
    match o.mode {
        Mode::Once | Mode::Continuous => {
            let spec_changed = observed.is_some() && observed != o.generation;
            if is_terminal(phase) && !(spec_changed && o.kind.runs_repeatedly()) {
                if *o.mode == Mode::Once
                    && let (Some(ttl), Some(finished)) = (o.ttl, o.finished_at)
                {
                    let left = ttl_remaining(finished, ttl, o.now);
                    return if left.is_zero() {
                        Decision::ExpireTtl
                    } else {
                        Decision::Wait(Some(left))
                    };
                }
                return Decision::Wait(None);
            }
            Decision::Start(StartReason::New)
        }
        Mode::Scheduled(_) => match &o.schedule {
            None => Decision::Wait(None),
            Some(Err(message)) => {
                if phase == Some("Failed")
                    && observed == o.generation
                    && conditions_of(o.status)
                        .iter()
                        .any(|c| c.type_ == READY && c.reason == reason::INVALID_SCHEDULE)
                {
                    Decision::Wait(None)
                } else {
                    Decision::InvalidSchedule(message.clone())
                }
            }
            Some(Ok(d)) => {
                if let Some(tick) = d.fire {
                    return Decision::Fire {
                        tick,
                        next: d.next,
                        missed: d.missed,
                    };
                }
                let shown = o.status.get("nextScheduleTime").and_then(parse_time);
                if shown != d.next {
                    return Decision::UpdateNext {
                        next: d.next,
                        missed: d.missed,
                    };
                }
                // The next tick is looked at by the requeue every reconcile of a scheduled
                // object returns ([`requeue_after`]).
                Decision::Wait(None)
            }
        },
    }
}

/// How long after a tick its reconcile is scheduled, so that the clock has passed the tick when
/// the schedule is looked at.
pub const AFTER_TICK: Duration = Duration::from_millis(200);

/// When to reconcile an object again without a change, given that its decision asks for `after`
/// (`None`: only on a change): for a scheduled object that is not suspended, never later than
/// just after its next tick, whatever the decision was — also while a run is in progress and in
/// the reconcile that sees a run's final status. Pure.
///
/// kube-runtime's controller keeps at most one pending reconcile per object, and a watch event
/// (every status patch of a run comes back as one) takes the place of a requeue asked for earlier:
/// the reconcile that follows it must ask for the next tick again, or the schedule stops firing.
pub fn requeue_after(o: &Observed<'_>, after: Option<Duration>) -> Option<Duration> {
    let until_tick = match (o.mode, &o.schedule) {
        (Mode::Scheduled(_), Some(Ok(d))) if !o.suspended => d
            .next
            .map(|next| (next - o.now).to_std().unwrap_or(Duration::ZERO) + AFTER_TICK),
        _ => None,
    };
    match (after, until_tick) {
        (Some(a), Some(t)) => Some(a.min(t)),
        (a, t) => a.or(t),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use chrono::TimeZone;

    use super::*;
    use crate::reconciler::schedule::{Schedule, decide as schedule_decide};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    fn observed<'a>(kind: Kind, mode: &'a Mode, status: &'a Value) -> Observed<'a> {
        Observed {
            kind,
            mode,
            suspended: false,
            generation: Some(1),
            status,
            task: None,
            recently_written: None,
            ttl: None,
            finished_at: None,
            schedule: None,
            on_restart: RestartPolicy::Resume,
            approval_asked: false,
            now: now(),
        }
    }

    #[test]
    fn a_one_shot_goes_pending_then_starts_then_stays_finished() {
        let once = Mode::Once;
        assert_eq!(
            decide(&observed(Kind::OffsetReset, &once, &Value::Null)),
            Decision::Initialize
        );
        let pending = json!({"phase": "Pending", "observedGeneration": 1});
        assert_eq!(
            decide(&observed(Kind::OffsetReset, &once, &pending)),
            Decision::Start(StartReason::New)
        );
        let mut running = observed(Kind::OffsetReset, &once, &pending);
        running.task = Some(TaskView {
            generation: Some(1),
            cancelling: false,
        });
        assert_eq!(decide(&running), Decision::Wait(None));
        let done = json!({"phase": "Completed", "observedGeneration": 1});
        assert_eq!(
            decide(&observed(Kind::OffsetReset, &once, &done)),
            Decision::Wait(None)
        );
    }

    #[test]
    fn a_plan_pending_approval_is_made_again_only_when_asked_or_edited() {
        let once = Mode::Once;
        let pending = json!({"phase": "PendingApproval", "observedGeneration": 1});
        assert_eq!(
            decide(&observed(Kind::OffsetReset, &once, &pending)),
            Decision::Wait(None),
            "its own status write must not plan again"
        );
        let mut asked = observed(Kind::OffsetReset, &once, &pending);
        asked.approval_asked = true;
        assert_eq!(decide(&asked), Decision::Start(StartReason::New));
        let mut edited = observed(Kind::OffsetReset, &once, &pending);
        edited.generation = Some(2);
        assert_eq!(decide(&edited), Decision::Start(StartReason::New));
        let state = State::from_final(Some("PendingApproval"), Some("approve it"), false);
        assert_eq!(state.phase(Kind::OffsetReset), "PendingApproval");
        let ready = state.conditions().into_iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!((ready.status, ready.reason), (false, reason::PENDING_APPROVAL));
    }

    #[test]
    fn the_engines_approved_condition_goes_into_the_patch() {
        let condition = |status: &str, reason: &str, since: &str| {
            json!({"type": "Approved", "status": status, "reason": reason, "message": "m",
                "lastTransitionTime": since})
        };
        let patch = json!({"phase": "PendingApproval", "conditions": [
            {"type": "Ready", "status": "False", "reason": "PendingApproval", "message": "m",
                "lastTransitionTime": "2025-03-01T10:00:00Z"},
            condition("False", "AwaitingApproval", "2025-03-01T10:00:00Z"),
        ]});
        let engine = json!({"conditions": [condition("False", "WrongHash", "2025-03-01T11:00:00Z")]});
        let merged = with_engine_conditions(patch.clone(), &engine);
        let conditions = merged["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["reason"], "WrongHash");
        assert_eq!(
            conditions[1]["lastTransitionTime"], "2025-03-01T10:00:00Z",
            "still False"
        );
        assert!(approval_refused(&engine));
        let engine = json!({"conditions": [condition("True", "Approved", "2025-03-01T11:00:00Z")]});
        let merged = with_engine_conditions(patch, &engine);
        assert_eq!(
            merged["conditions"][1]["lastTransitionTime"],
            "2025-03-01T11:00:00Z"
        );
        assert!(!approval_refused(&engine));
    }

    #[test]
    fn running_without_a_task_is_resumed_or_interrupted() {
        let once = Mode::Once;
        let running = json!({"phase": "Running", "observedGeneration": 1});
        assert_eq!(
            decide(&observed(Kind::Restore, &once, &running)),
            Decision::Start(StartReason::Resumed)
        );
        let mut o = observed(Kind::OffsetReset, &once, &running);
        o.on_restart = RestartPolicy::Interrupted("restarted".into());
        assert_eq!(decide(&o), Decision::Interrupted("restarted".into()));
        // A task of this process just finished and wrote Completed; the cache has not caught up:
        // wait, do not judge.
        o.recently_written = Some("Completed".into());
        assert_eq!(decide(&o), Decision::Wait(Some(Duration::from_secs(2))));
        // Nor start it again from a stale Pending.
        let pending = json!({"phase": "Pending", "observedGeneration": 1});
        let mut o = observed(Kind::OffsetReset, &once, &pending);
        o.recently_written = Some("Completed".into());
        assert_eq!(decide(&o), Decision::Wait(Some(Duration::from_secs(2))));
    }

    #[test]
    fn ttl_deletes_after_the_delay() {
        let once = Mode::Once;
        let done = json!({"phase": "Failed", "observedGeneration": 1});
        let mut o = observed(Kind::OffsetRollback, &once, &done);
        o.ttl = Some(60);
        o.finished_at = Some(now() - chrono::Duration::seconds(45));
        assert_eq!(decide(&o), Decision::Wait(Some(Duration::from_secs(15))));
        o.finished_at = Some(now() - chrono::Duration::seconds(61));
        assert_eq!(decide(&o), Decision::ExpireTtl);
    }

    #[test]
    fn suspend_cancels_and_marks_suspended() {
        let cont = Mode::Continuous;
        let running = json!({"phase": "Running", "observedGeneration": 1});
        let mut o = observed(Kind::Backup, &cont, &running);
        o.suspended = true;
        o.task = Some(TaskView {
            generation: Some(1),
            cancelling: false,
        });
        assert_eq!(decide(&o), Decision::Cancel(CancelReason::Suspended));
        o.task = None;
        assert_eq!(decide(&o), Decision::MarkSuspended);
        let suspended = json!({"phase": "Suspended", "observedGeneration": 1});
        let mut o = observed(Kind::Backup, &cont, &suspended);
        o.suspended = true;
        assert_eq!(decide(&o), Decision::Wait(None));
        // Cleared: the continuous backup starts again.
        o.suspended = false;
        assert_eq!(decide(&o), Decision::Start(StartReason::New));
    }

    #[test]
    fn a_spec_change_restarts_a_continuous_backup() {
        let cont = Mode::Continuous;
        let running = json!({"phase": "Running", "observedGeneration": 1});
        let mut o = observed(Kind::Backup, &cont, &running);
        o.generation = Some(2);
        o.task = Some(TaskView {
            generation: Some(1),
            cancelling: false,
        });
        assert_eq!(decide(&o), Decision::Cancel(CancelReason::SpecChanged));
    }

    #[test]
    fn schedules_fire_update_next_or_wait() {
        let cron = "0 0 * * * *";
        let mode = Mode::Scheduled(cron.into());
        let schedule = Schedule::parse(cron).unwrap();
        let created = now() - chrono::Duration::minutes(30);
        let status = json!({"phase": "Pending", "observedGeneration": 1});
        let mut o = observed(Kind::Backup, &mode, &status);
        o.schedule = Some(Ok(schedule_decide(&schedule, None, None, created, now(), false)));
        assert_eq!(
            decide(&o),
            Decision::Fire {
                tick: now(),
                next: Some(now() + chrono::Duration::hours(1)),
                missed: 0
            }
        );
        let later = now() + chrono::Duration::minutes(10);
        let status = json!({"phase": "Completed", "observedGeneration": 1,
            "lastScheduleTime": "2025-03-01T12:00:00Z"});
        let mut o = observed(Kind::Backup, &mode, &status);
        o.now = later;
        o.schedule = Some(Ok(schedule_decide(
            &schedule,
            Some(now()),
            None,
            created,
            later,
            false,
        )));
        assert_eq!(
            decide(&o),
            Decision::UpdateNext {
                next: Some(now() + chrono::Duration::hours(1)),
                missed: 0
            }
        );
        let status = json!({"phase": "Completed", "observedGeneration": 1,
            "lastScheduleTime": "2025-03-01T12:00:00Z", "nextScheduleTime": "2025-03-01T13:00:00Z"});
        let mut o = observed(Kind::Backup, &mode, &status);
        o.now = later;
        o.schedule = Some(Ok(schedule_decide(
            &schedule,
            Some(now()),
            None,
            created,
            later,
            false,
        )));
        assert_eq!(decide(&o), Decision::Wait(None));
        assert_eq!(
            requeue_after(&o, None),
            Some(Duration::from_secs(50 * 60) + AFTER_TICK)
        );
    }

    /// A scheduled object (every 10 s, last tick 12:00:00) as a reconcile at 12:00:03 sees it.
    fn at_12_00_03<'a>(
        mode: &'a Mode,
        status: &'a Value,
        task: Option<TaskView>,
        written: Option<&str>,
    ) -> Observed<'a> {
        let Mode::Scheduled(cron) = mode else {
            panic!("not scheduled")
        };
        let mut o = observed(Kind::Backup, mode, status);
        o.now = now() + chrono::Duration::seconds(3);
        o.task = task;
        o.recently_written = written.map(str::to_owned);
        o.schedule = Some(Ok(schedule_decide(
            &Schedule::parse(cron).unwrap(),
            Some(now()),
            status.pointer("/lastRun/completionTime").and_then(parse_time),
            now() - chrono::Duration::seconds(5),
            o.now,
            task.is_some(),
        )));
        o
    }

    /// Every reconcile of a scheduled object asks to be run again by its next tick: while the
    /// run is in progress (each of its status patches triggers one), in the one that sees the
    /// final status while the task is still registered, and after it.
    #[test]
    fn every_reconcile_of_a_schedule_requeues_by_its_next_tick() {
        let mode = Mode::Scheduled("*/10 * * * * *".into());
        let until_next = Some(Duration::from_secs(7) + AFTER_TICK);
        let task = Some(TaskView {
            generation: Some(1),
            cancelling: false,
        });
        let fired = json!({"phase": "Pending", "observedGeneration": 1,
            "lastScheduleTime": "2025-03-01T12:00:00Z", "nextScheduleTime": "2025-03-01T12:00:10Z"});
        let running = merged(fired.clone(), json!({"phase": "Running"}));
        let completed = merged(
            fired.clone(),
            json!({"phase": "Completed", "lastRun": {"completionTime": "2025-03-01T12:00:02Z"}}),
        );
        // The watch events of lastScheduleTime, of Running and of the final status, while the
        // task is registered; and the final status once it has ended.
        for (status, task, written) in [
            (&fired, task, None),
            (&running, task, None),
            (&completed, task, None),
            (&completed, None, Some("Completed")),
        ] {
            let o = at_12_00_03(&mode, status, task, written);
            assert_eq!(decide(&o), Decision::Wait(None), "{status}");
            assert_eq!(requeue_after(&o, None), until_next, "{status}");
        }
        // The cache still shows Running after the task wrote Completed: look again soon.
        let o = at_12_00_03(&mode, &running, None, Some("Completed"));
        let Decision::Wait(soon) = decide(&o) else {
            panic!("{:?}", decide(&o))
        };
        assert_eq!(soon, Some(Duration::from_secs(2)));
        assert_eq!(requeue_after(&o, soon), soon);
        // A longer wait a decision asks for (a blocked start) is cut to the next tick.
        assert_eq!(requeue_after(&o, Some(Duration::from_secs(30))), until_next);
        // At the tick it fires, and the reconcile that fires asks for the tick after.
        let next = now() + chrono::Duration::seconds(10);
        let mut o = at_12_00_03(&mode, &completed, None, None);
        o.now = next + chrono::Duration::milliseconds(200);
        o.schedule = Some(Ok(schedule_decide(
            &Schedule::parse("*/10 * * * * *").unwrap(),
            Some(now()),
            Some(now() + chrono::Duration::seconds(2)),
            now() - chrono::Duration::seconds(5),
            o.now,
            false,
        )));
        assert_eq!(
            decide(&o),
            Decision::Fire {
                tick: next,
                next: Some(next + chrono::Duration::seconds(10)),
                missed: 0
            }
        );
        assert_eq!(
            requeue_after(&o, None),
            Some(Duration::from_millis(9800) + AFTER_TICK)
        );
        // Suspended, or not scheduled: no tick to wait for.
        o.suspended = true;
        assert_eq!(requeue_after(&o, None), None);
        let once = Mode::Once;
        let o = observed(Kind::Backup, &once, &completed);
        assert_eq!(requeue_after(&o, None), None);
        assert_eq!(
            requeue_after(&o, Some(Duration::from_secs(30))),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn conditions_keep_transition_times_and_other_types() {
        let t0 = now();
        let first = merge_conditions(&[], &State::Pending.conditions(), Some(1), t0);
        assert_eq!(first.len(), 3);
        let mut previous = first.clone();
        previous.push(Condition {
            type_: "Custom".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: time(t0),
        });
        let t1 = t0 + chrono::Duration::seconds(30);
        let running = State::Running {
            resumed: false,
            continuous: false,
            message: "running".into(),
        };
        let next = merge_conditions(&previous, &running.conditions(), Some(1), t1);
        let get = |t: &str| next.iter().find(|c| c.type_ == t).unwrap().clone();
        // Ready stays False: its transition time is kept; Progressing flips to True.
        assert_eq!(get(READY).last_transition_time, time(t0));
        assert_eq!(get(READY).reason, reason::RUNNING);
        assert_eq!(get(PROGRESSING).status, "True");
        assert_eq!(get(PROGRESSING).last_transition_time, time(t1));
        assert_eq!(get("Custom").reason, "X");
        // Suspended only touches Progressing.
        let suspended = merge_conditions(&next, &State::Suspended.conditions(), Some(1), t1);
        assert_eq!(
            suspended.iter().find(|c| c.type_ == READY).unwrap().reason,
            reason::RUNNING
        );
    }

    #[test]
    fn final_phases_map_to_states() {
        assert_eq!(
            State::from_final(Some("Completed"), Some("ok"), false).phase(Kind::OffsetReset),
            "Completed"
        );
        assert_eq!(
            State::from_final(Some("PartiallyCompleted"), None, false).phase(Kind::OffsetReset),
            "PartiallyCompleted"
        );
        let failed = State::from_final(Some("Failed"), Some("x"), true);
        assert!(matches!(
            failed,
            State::Failed {
                reason: reason::DEADLINE_EXCEEDED,
                ..
            }
        ));
    }

    #[test]
    fn status_patch_carries_phase_and_generation() {
        let p = status_patch(Kind::Backup, &State::Suspended, &Value::Null, Some(4), now());
        assert_eq!(p["phase"], "Suspended");
        assert_eq!(p["observedGeneration"], 4);
        let p = status_patch(Kind::OffsetReset, &State::Pending, &Value::Null, Some(1), now());
        assert_eq!(p["phase"], "Pending");
        assert_eq!(p["conditions"].as_array().unwrap().len(), 3);
    }
}
