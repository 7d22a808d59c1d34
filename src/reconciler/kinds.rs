//! What the reconciler needs to know about each kind: the [`Operation`] trait and its five impls.
//!
//! The lifecycle code is generic over [`Operation`] and reads and writes the lifecycle fields of
//! status (`phase`, `message`, `conditions`, `observedGeneration`, times) as JSON, so the kinds'
//! different status types and phase enums need no per-kind lifecycle code.

use std::{fmt::Debug, sync::Arc};

use chrono::{DateTime, Utc};
use futures::{FutureExt, future::BoxFuture};
use kube::{Client, Resource, core::NamespaceResourceScope};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::resolve;
use crate::secrets::refs::SecretRef;
use crate::{
    api::v1beta1::{
        Approval, ExecutionSpec, KafkaBackup, KafkaBackupValidation, KafkaOffsetReset, KafkaOffsetRollback,
        KafkaRestore, RollbackOperation, StorageSpec,
    },
    ops::{self, Context, Progress, approval, default_snapshot_storage},
};

/// The five kinds, as labels and names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// KafkaBackup.
    Backup,
    /// KafkaRestore.
    Restore,
    /// KafkaOffsetReset.
    OffsetReset,
    /// KafkaOffsetRollback.
    OffsetRollback,
    /// KafkaBackupValidation.
    BackupValidation,
}

impl Kind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "KafkaBackup",
            Kind::Restore => "KafkaRestore",
            Kind::OffsetReset => "KafkaOffsetReset",
            Kind::OffsetRollback => "KafkaOffsetRollback",
            Kind::BackupValidation => "KafkaBackupValidation",
        }
    }

    /// Kinds whose phase is a `RunPhase` (once, on a schedule or continuously; phase Suspended).
    pub fn runs_repeatedly(self) -> bool {
        matches!(self, Kind::Backup | Kind::BackupValidation)
    }

    /// The status field holding the start of the current operation, where the kind has one.
    pub fn start_time_field(self) -> Option<&'static str> {
        match self {
            Kind::Backup => None,
            _ => Some("startTime"),
        }
    }

    /// The status field holding the end of the last operation, where the kind has one at the top
    /// level (KafkaBackup keeps it in `lastRun.completionTime`).
    pub fn completion_time_field(self) -> Option<&'static str> {
        match self {
            Kind::Backup => None,
            _ => Some("completionTime"),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a resource runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Once; then it is finished (TTL applies).
    Once,
    /// On every tick of this cron expression (6 or 7 fields, UTC).
    Scheduled(String),
    /// Without end, until suspended or deleted (continuous KafkaBackup).
    Continuous,
}

/// What to do with an operation found Running that no task of this process runs (the operator
/// restarted, or another replica led before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Run it again: it continues from its checkpoints, or running it again is idempotent.
    Resume,
    /// Mark it Failed (reason Interrupted) with this message: running it again could do harm.
    Interrupted(String),
}

/// One of the five kinds, as the reconciler drives it.
pub trait Operation:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind.
    const KIND: Kind;

    /// How it runs.
    fn mode(&self) -> Mode {
        Mode::Once
    }

    /// `spec.suspend`.
    fn suspended(&self) -> bool {
        false
    }

    /// `spec.execution` (its retries and deadline are applied by the engine, through
    /// [`crate::ops::execution`]; the reconciler reads its TTL).
    fn execution(&self) -> Option<&ExecutionSpec>;

    /// See [`RestartPolicy`].
    fn on_restart(&self) -> RestartPolicy;

    /// In phase PendingApproval: an approval or a plan refresh waits to be judged.
    fn approval_asked(&self) -> bool {
        false
    }

    /// Annotations a run judges once, removed from the object before it starts (a plan refresh
    /// request), so that the next reconcile does not act on them again.
    fn consumed_annotations(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Every Secret key the spec names, with the field that names it.
    fn secret_refs(&self) -> Vec<SecretRef>;

    /// Every storage location the spec names (for the catalog).
    fn storage_specs(&self) -> Vec<StorageSpec>;

    /// Runs the operation and returns its final status as JSON (the kind's status type).
    fn execute(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Value>;

    /// Turns references to other resources into concrete ids and storage blocks.
    fn resolve(
        self: Arc<Self>,
        _client: Client,
        _namespace: String,
    ) -> BoxFuture<'static, Result<Self, String>> {
        let this = (*self).clone();
        async move { Ok(this) }.boxed()
    }

    /// The snapshots and backup sets a finished operation with this status stored.
    fn written(&self, _status: &Value) -> Vec<(StorageSpec, WrittenId)> {
        Vec::new()
    }

    /// Records and bytes a finished operation with this status processed.
    fn records_bytes(_status: &Value) -> (Option<u64>, Option<u64>) {
        (None, None)
    }

    /// Status fields known before the operation starts, written with phase Running.
    fn start_status(&self) -> Value {
        json!({})
    }

    /// The status fields a progress report updates: the operation's status so far (without the
    /// lifecycle fields, which are the reconciler's) and the message.
    fn progress_status(progress: &Progress) -> Value {
        let mut status = super::lifecycle::without_lifecycle(progress.status.clone().unwrap_or_default());
        status.insert("message".into(), json!(progress_message(progress)));
        Value::Object(status)
    }

    /// When the last run finished (schedules: ticks before it passed during the run).
    fn last_finished(status: &Value) -> Option<DateTime<Utc>> {
        Self::KIND
            .completion_time_field()
            .and_then(|f| status.get(f))
            .and_then(parse_time)
    }
}

/// An id an operation stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WrittenId {
    /// An offset snapshot.
    Snapshot(String),
    /// A backup set.
    BackupSet(String),
}

/// The `message` of a progress report: "`message`: done/total".
pub fn progress_message(progress: &Progress) -> String {
    match progress.total {
        Some(total) => format!("{}: {}/{}", progress.message, progress.done, total),
        None => format!("{}: {}", progress.message, progress.done),
    }
}

/// An RFC 3339 time in status.
pub fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Builds the future on a blocking-pool thread and drives it there with the runtime's handle, for
/// operation futures the compiler cannot prove `Send`.
fn on_own_thread<F, Fut>(make: F) -> BoxFuture<'static, Value>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Value> + 'static,
{
    let handle = tokio::runtime::Handle::current();
    async move {
        tokio::task::spawn_blocking(move || handle.block_on(make()))
            .await
            .unwrap_or_else(
                |e| json!({"phase": "Failed", "message": format!("the operation task failed: {e}")}),
            )
    }
    .boxed()
}

fn to_json<T: Serialize>(status: &T) -> Value {
    serde_json::to_value(status).unwrap_or(Value::Null)
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn u64_at(value: &Value, pointer: &str) -> Option<u64> {
    value.pointer(pointer).and_then(Value::as_u64)
}

fn name_of<K: Resource>(object: &K) -> String {
    object.meta().name.clone().unwrap_or_default()
}

impl Operation for KafkaOffsetReset {
    const KIND: Kind = Kind::OffsetReset;

    // Each run judges the approval afresh: a refusal written by an earlier run is cleared (the
    // status is merge-patched, so a field the run leaves out would otherwise stay).
    fn start_status(&self) -> Value {
        json!({ "refusedApproval": null })
    }

    fn approval_asked(&self) -> bool {
        let refused = self.status.as_ref().and_then(|s| s.refused_approval.as_deref());
        approval::asks_for_a_run(self.metadata.annotations.as_ref(), refused)
    }

    fn consumed_annotations(&self) -> Vec<&'static str> {
        let refresh = self
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(approval::REFRESH_PLAN_ANNOTATION));
        match refresh {
            Some(_) => vec![approval::REFRESH_PLAN_ANNOTATION],
            None => Vec::new(),
        }
    }

    fn execution(&self) -> Option<&ExecutionSpec> {
        self.spec.execution.as_ref()
    }

    fn on_restart(&self) -> RestartPolicy {
        // A Manual reset without an approval annotation can only have planned, never committed.
        let unapproved = self.spec.approval == Approval::Manual
            && self
                .metadata
                .annotations
                .as_ref()
                .is_none_or(|a| !a.contains_key(approval::APPROVE_ANNOTATION));
        if self.spec.dry_run || unapproved {
            return RestartPolicy::Resume;
        }
        let name = name_of(self);
        let snapshot = match (&self.spec.snapshot.enabled, &self.spec.snapshot.snapshot_id) {
            (false, _) => "No pre-change snapshot was configured (snapshot.enabled: false).".to_owned(),
            (true, Some(id)) => format!(
                "The pre-change snapshot {id}, if it was stored before the restart (kubectl get offsetsnapshots {id}), restores the groups: KafkaOffsetRollback with operation Rollback and snapshotId {id}."
            ),
            (true, None) => format!(
                "The pre-change snapshot, if it was stored before the restart, is listed by kubectl get offsetsnapshots (source KafkaOffsetReset/{name}, id {name}-<time>) and restores the groups with a KafkaOffsetRollback (operation Rollback)."
            ),
        };
        RestartPolicy::Interrupted(format!(
            "the operator restarted while this reset was running: some consumer groups may already be reset, others not. It is not re-run automatically, because a second run would take its pre-change snapshot of the partly reset offsets (and ShiftBy or ByDuration would move them again). {snapshot} To finish the reset, create a new KafkaOffsetReset."
        ))
    }

    fn secret_refs(&self) -> Vec<SecretRef> {
        crate::secrets::refs::offset_reset(&self.spec)
    }

    fn storage_specs(&self) -> Vec<StorageSpec> {
        let mut out = vec![
            self.spec
                .snapshot
                .storage
                .clone()
                .unwrap_or_else(|| default_snapshot_storage(&name_of(self))),
        ];
        out.extend(self.spec.from_mapping.as_ref().and_then(|m| m.storage.clone()));
        out
    }

    fn execute(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Value> {
        async move { to_json(&ops::offset_reset::execute(&self, &ctx).await) }.boxed()
    }

    fn resolve(
        self: Arc<Self>,
        client: Client,
        namespace: String,
    ) -> BoxFuture<'static, Result<Self, String>> {
        async move { resolve::offset_reset(&self, &client, &namespace).await }.boxed()
    }

    fn written(&self, status: &Value) -> Vec<(StorageSpec, WrittenId)> {
        match str_at(status, "/snapshot/snapshotId") {
            Some(id) if self.spec.snapshot.enabled && !self.spec.dry_run => vec![(
                self.spec
                    .snapshot
                    .storage
                    .clone()
                    .unwrap_or_else(|| default_snapshot_storage(&name_of(self))),
                WrittenId::Snapshot(id.to_owned()),
            )],
            _ => Vec::new(),
        }
    }
}

impl Operation for KafkaOffsetRollback {
    const KIND: Kind = Kind::OffsetRollback;

    fn execution(&self) -> Option<&ExecutionSpec> {
        self.spec.execution.as_ref()
    }

    fn on_restart(&self) -> RestartPolicy {
        if self.spec.dry_run {
            return RestartPolicy::Resume;
        }
        let id = self
            .spec
            .snapshot_id
            .clone()
            .unwrap_or_else(|| "(from snapshotFrom)".into());
        match self.spec.operation {
            RollbackOperation::Rollback | RollbackOperation::Verify => RestartPolicy::Resume,
            RollbackOperation::Snapshot => RestartPolicy::Interrupted(format!(
                "the operator restarted while snapshot {id} was being taken; it is not retaken automatically because the id is written once. Check whether it was stored (kubectl get offsetsnapshots {id}); if not, create a new KafkaOffsetRollback."
            )),
            RollbackOperation::Delete => RestartPolicy::Interrupted(format!(
                "the operator restarted while snapshot {id} was being deleted; check whether it is gone (kubectl get offsetsnapshots {id}) and create a new KafkaOffsetRollback if not."
            )),
        }
    }

    fn secret_refs(&self) -> Vec<SecretRef> {
        crate::secrets::refs::offset_rollback(&self.spec)
    }

    fn storage_specs(&self) -> Vec<StorageSpec> {
        match (&self.spec.storage, self.spec.operation) {
            (Some(storage), _) => vec![storage.clone()],
            (None, RollbackOperation::Snapshot) => vec![default_snapshot_storage(&name_of(self))],
            (None, _) => Vec::new(),
        }
    }

    fn execute(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Value> {
        // The rollback future cannot be proven Send (a rustc limitation with higher-ranked
        // closures), so it is built and driven on a thread of its own.
        on_own_thread(move || async move { to_json(&ops::offset_rollback::execute(&self, &ctx).await) })
    }

    fn resolve(
        self: Arc<Self>,
        client: Client,
        namespace: String,
    ) -> BoxFuture<'static, Result<Self, String>> {
        async move { resolve::offset_rollback(&self, &client, &namespace).await }.boxed()
    }

    fn written(&self, status: &Value) -> Vec<(StorageSpec, WrittenId)> {
        if self.spec.operation != RollbackOperation::Snapshot || self.spec.dry_run {
            return Vec::new();
        }
        match (str_at(status, "/phase"), str_at(status, "/snapshotId")) {
            (Some("Completed"), Some(id)) => self
                .storage_specs()
                .into_iter()
                .map(|s| (s, WrittenId::Snapshot(id.to_owned())))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Operation for KafkaBackup {
    const KIND: Kind = Kind::Backup;

    fn start_status(&self) -> Value {
        ops::backup::start_status(self)
    }

    fn mode(&self) -> Mode {
        match (&self.spec.schedule, self.spec.continuous) {
            (Some(cron), _) => Mode::Scheduled(cron.clone()),
            (None, true) => Mode::Continuous,
            (None, false) => Mode::Once,
        }
    }

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn execution(&self) -> Option<&ExecutionSpec> {
        self.spec.execution.as_ref()
    }

    fn on_restart(&self) -> RestartPolicy {
        RestartPolicy::Resume
    }

    fn secret_refs(&self) -> Vec<SecretRef> {
        crate::secrets::refs::backup(&self.spec)
    }

    fn storage_specs(&self) -> Vec<StorageSpec> {
        vec![self.spec.storage.clone()]
    }

    // The one dispatch point of KafkaBackup.
    fn execute(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Value> {
        async move { to_json(&ops::backup::execute(&self, &ctx).await) }.boxed()
    }

    fn written(&self, status: &Value) -> Vec<(StorageSpec, WrittenId)> {
        match str_at(status, "/backupId") {
            Some(id) => vec![(self.spec.storage.clone(), WrittenId::BackupSet(id.to_owned()))],
            None => Vec::new(),
        }
    }

    fn records_bytes(status: &Value) -> (Option<u64>, Option<u64>) {
        (
            u64_at(status, "/lastRun/records"),
            u64_at(status, "/lastRun/bytes"),
        )
    }

    fn last_finished(status: &Value) -> Option<DateTime<Utc>> {
        status.pointer("/lastRun/completionTime").and_then(parse_time)
    }
}

impl Operation for KafkaRestore {
    const KIND: Kind = Kind::Restore;

    fn start_status(&self) -> Value {
        match &self.spec.backup_ref.backup_id {
            Some(id) => json!({ "backupId": id }),
            None => json!({}),
        }
    }

    fn execution(&self) -> Option<&ExecutionSpec> {
        self.spec.execution.as_ref()
    }

    fn on_restart(&self) -> RestartPolicy {
        RestartPolicy::Resume
    }

    fn secret_refs(&self) -> Vec<SecretRef> {
        crate::secrets::refs::restore(&self.spec)
    }

    fn storage_specs(&self) -> Vec<StorageSpec> {
        let mut out: Vec<StorageSpec> = self.spec.backup_ref.storage.iter().cloned().collect();
        if let Some(snapshot) = &self.spec.snapshot_before_restore
            && snapshot.enabled
        {
            out.push(
                snapshot
                    .storage
                    .clone()
                    .unwrap_or_else(|| default_snapshot_storage(&name_of(self))),
            );
        }
        out
    }

    // The one dispatch point of KafkaRestore.
    fn execute(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Value> {
        async move {
            let mut status = to_json(&ops::restore::execute(&self, &ctx).await);
            // Nothing is being restored any more: the progress reports' topic goes.
            if status.get("currentTopic").is_none() {
                status["currentTopic"] = Value::Null;
            }
            status
        }
        .boxed()
    }

    fn resolve(
        self: Arc<Self>,
        client: Client,
        namespace: String,
    ) -> BoxFuture<'static, Result<Self, String>> {
        async move { resolve::restore(&self, &client, &namespace).await }.boxed()
    }

    fn written(&self, status: &Value) -> Vec<(StorageSpec, WrittenId)> {
        match (
            str_at(status, "/snapshot/snapshotId"),
            &self.spec.snapshot_before_restore,
        ) {
            (Some(id), Some(snapshot)) if snapshot.enabled && !self.spec.dry_run => vec![(
                snapshot
                    .storage
                    .clone()
                    .unwrap_or_else(|| default_snapshot_storage(&name_of(self))),
                WrittenId::Snapshot(id.to_owned()),
            )],
            _ => Vec::new(),
        }
    }

    fn records_bytes(status: &Value) -> (Option<u64>, Option<u64>) {
        (
            u64_at(status, "/recordsRestored"),
            u64_at(status, "/bytesRestored"),
        )
    }
}

impl Operation for KafkaBackupValidation {
    const KIND: Kind = Kind::BackupValidation;

    fn mode(&self) -> Mode {
        match &self.spec.schedule {
            Some(cron) => Mode::Scheduled(cron.clone()),
            None => Mode::Once,
        }
    }

    fn suspended(&self) -> bool {
        self.spec.suspend
    }

    fn execution(&self) -> Option<&ExecutionSpec> {
        self.spec.execution.as_ref()
    }

    fn on_restart(&self) -> RestartPolicy {
        RestartPolicy::Resume
    }

    fn secret_refs(&self) -> Vec<SecretRef> {
        crate::secrets::refs::backup_validation(&self.spec)
    }

    fn storage_specs(&self) -> Vec<StorageSpec> {
        let mut out: Vec<StorageSpec> = self.spec.backup_ref.storage.iter().cloned().collect();
        out.extend(self.spec.evidence.as_ref().and_then(|e| e.storage.clone()));
        out
    }

    // The one dispatch point of KafkaBackupValidation.
    fn execute(self: Arc<Self>, ctx: Context) -> BoxFuture<'static, Value> {
        async move { to_json(&ops::validation::execute(&self, &ctx).await) }.boxed()
    }

    fn resolve(
        self: Arc<Self>,
        client: Client,
        namespace: String,
    ) -> BoxFuture<'static, Result<Self, String>> {
        async move { resolve::backup_validation(&self, &client, &namespace).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn reset(extra: Value) -> KafkaOffsetReset {
        let mut object = json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "consumerGroups": ["g"], "strategy": "Earliest"},
        });
        for (k, v) in extra.as_object().unwrap() {
            object["spec"][k] = v.clone();
        }
        serde_json::from_value(object).unwrap()
    }

    #[test]
    fn a_reset_is_resumed_only_when_it_cannot_have_committed() {
        assert_eq!(reset(json!({"dryRun": true})).on_restart(), RestartPolicy::Resume);
        let RestartPolicy::Interrupted(message) = reset(json!({})).on_restart() else {
            panic!("a committing reset must not be re-run");
        };
        assert!(message.contains("source KafkaOffsetReset/r"), "{message}");
        let RestartPolicy::Interrupted(message) =
            reset(json!({"snapshot": {"enabled": true, "snapshotId": "before"}})).on_restart()
        else {
            panic!()
        };
        assert!(message.contains("snapshotId before"), "{message}");
        // Manual: only planned until an approval names a hash.
        let manual = reset(json!({"approval": "Manual"}));
        assert_eq!(manual.on_restart(), RestartPolicy::Resume);
        let mut approved = manual.clone();
        approved.metadata.annotations =
            Some([(approval::APPROVE_ANNOTATION.to_owned(), "h".to_owned())].into());
        assert!(matches!(approved.on_restart(), RestartPolicy::Interrupted(_)));
    }

    #[test]
    fn progress_is_summarised_with_the_operations_status() {
        let mut p = Progress {
            done: 3,
            total: Some(4),
            message: "groups reset".into(),
            status: None,
        };
        assert_eq!(progress_message(&p), "groups reset: 3/4");
        assert_eq!(
            KafkaOffsetReset::progress_status(&p),
            json!({"message": "groups reset: 3/4"})
        );
        // The operation's fields, its nulls included; the lifecycle stays the reconciler's.
        p.status = Some(json!({"phase": "Running", "message": "x", "backupId": "b",
            "progress": {"records": 7, "bytes": 70}, "currentTopic": null}));
        assert_eq!(
            KafkaBackup::progress_status(&p),
            json!({"message": "groups reset: 3/4", "backupId": "b",
                "progress": {"records": 7, "bytes": 70}, "currentTopic": null})
        );
    }

    #[test]
    fn backups_and_restores_name_their_set_when_they_start() {
        let backup: KafkaBackup = serde_json::from_value(json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup", "metadata": {"name": "nightly"},
            "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "topics": ["t"],
                "storage": {"type": "PVC", "pvc": {"claimName": "c"}}}}))
        .unwrap();
        let status = backup.start_status();
        assert_eq!(status["backupId"], "nightly");
        // The previous run's counters do not stay next to the new run's.
        assert_eq!(status["progress"]["records"], 0);
        assert_eq!(status["progress"]["partitionsTotal"], Value::Null);
        let restore: KafkaRestore = serde_json::from_value(json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore", "metadata": {"name": "r"},
            "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]},
                "backupRef": {"backupId": "set-1", "storage": {"type": "PVC", "pvc": {"claimName": "c"}}}}}))
        .unwrap();
        assert_eq!(restore.start_status(), json!({"backupId": "set-1"}));
    }
}
