//! KafkaRestore v1alpha1: the compatibility surface. Accepts the pre-1.0 spelling (`backupId` +
//! `targetCluster` + `storage`, `pitr.enabled`/`timestamp`/`timestampMillis`,
//! `includeOriginalOffsetHeader`, `offsetReset` with `sourceCluster`/`timestamp`,
//! `rollback.enabled`/`snapshotId`, `resources`, `job`, `podTemplate`) and the v1.0.0 spelling
//! (`backupRef` + `kafkaCluster`, `pitr.startTimestamp`/`endTimestamp`/`startTime`/`endTime`,
//! `rollback.snapshotBeforeRestore`..., the produce tuning, `repartitioning`) side by side. Every
//! field is optional and has no default.
//!
//! Also the home of [`BackupRef`], shared with KafkaBackupValidation.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{
    CircuitBreakerSpec, JobSpec, KafkaClusterSpec, PodTemplateSpec, PvcPathRef, RateLimitingSpec, Resources,
    StorageSpec,
};
use crate::api::v1beta1::Phase;

/// Restores a backup into a Kafka cluster (v1alpha1 compatibility surface; stored as v1beta1).
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
// rustfmt splits the printer columns over lines, which clippy misreads as duplicated keys.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1alpha1",
    kind = "KafkaRestore",
    namespaced,
    status = "KafkaRestoreStatus",
    shortname = "kr",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Restores a Kafka backup into a cluster (v1alpha1, compatibility version).",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Progress",
        type_ = "number",
        json_path = ".status.progressPercent",
        description = "Percent of the records restored"
    ),
    printcolumn(
        name = "Records",
        type_ = "integer",
        json_path = ".status.recordsRestored",
        description = "Records restored"
    ),
    printcolumn(
        name = "Topic",
        type_ = "string",
        json_path = ".status.currentTopic",
        priority = 1,
        description = "Topic being restored"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRestoreSpec {
    /// Id of the backup to restore (pre-1.0 spelling of `backupRef.backupId`).
    pub backup_id: Option<String>,
    /// The cluster restored into (pre-1.0 spelling of `kafkaCluster`).
    pub target_cluster: Option<KafkaClusterSpec>,
    /// Where the backup is stored (pre-1.0 spelling of `backupRef.storage`).
    pub storage: Option<StorageSpec>,
    /// The backup to restore: a KafkaBackup and/or a storage location (v1.0.0).
    pub backup_ref: Option<BackupRef>,
    /// The cluster restored into (v1.0.0).
    pub kafka_cluster: Option<KafkaClusterSpec>,
    /// Topics to restore; absent or empty: all (pre-1.0 and v1.0.0).
    pub topics: Option<Vec<String>>,
    /// Source topic -> target topic names (pre-1.0 and v1.0.0).
    pub topic_mapping: Option<BTreeMap<String, String>>,
    /// Source partition -> target partition numbers (v1.0.0).
    pub partition_mapping: Option<BTreeMap<String, i32>>,
    /// Per target topic: restore with another partition count (v1.0.0).
    pub repartitioning: Option<BTreeMap<String, RepartitioningSpec>>,
    /// Point-in-time recovery, in the pre-1.0 and the v1.0.0 spellings.
    pub pitr: Option<RestorePitrSpec>,
    /// Add the original-offset headers to restored records (pre-1.0 spelling of v1beta1
    /// `includeOriginalOffsetHeaders`).
    pub include_original_offset_header: Option<bool>,
    /// Consumer-group offset reset after the restore (pre-1.0 and v1.0.0).
    pub offset_reset: Option<RestoreOffsetResetSpec>,
    /// Snapshot of consumer-group offsets before the restore (pre-1.0 and v1.0.0; v1beta1
    /// `snapshotBeforeRestore`).
    pub rollback: Option<RestoreRollbackSpec>,
    /// Rate limits and concurrency (v1.0.0).
    pub rate_limiting: Option<RateLimitingSpec>,
    /// Circuit breaker of the prior art's Kafka client (v1.0.0; not in v1beta1, kept in the
    /// `kafka.oso.sh/v1alpha1-fields` annotation).
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    /// Validate without restoring (default false; v1.0.0).
    pub dry_run: Option<bool>,
    /// Records per produce batch (default 1000; v1.0.0 spelling of v1beta1 `produce.batchSize`).
    pub produce_batch_size: Option<i32>,
    /// Producer acks: -1 or `all` (every in-sync replica), 1 (the leader), 0 (none) (default -1;
    /// v1.0.0 spelling of v1beta1 `produce.acks` All|Leader|None).
    pub produce_acks: Option<IntOrString>,
    /// Broker produce timeout in milliseconds (default 30000; v1.0.0 spelling of v1beta1
    /// `produce.timeoutMs`).
    pub produce_timeout_ms: Option<i32>,
    /// Delete the records of the target topics before restoring (default false; v1.0.0).
    pub purge_topics: Option<bool>,
    /// Commit the consumer-group offsets of the backup's group snapshot (default false; v1.0.0).
    pub auto_consumer_groups: Option<bool>,
    /// Create missing target topics (default false; v0.3.0+, v1beta1 `createTopics.enabled`).
    pub create_topics: Option<bool>,
    /// Replication factor of created topics (v0.3.0+, v1beta1 `createTopics.replicationFactor`).
    pub default_replication_factor: Option<i32>,
    /// Compute resources of the restore Job (pre-1.0; meaningless in-process, not in v1beta1).
    pub resources: Option<Resources>,
    /// Restore Job settings (pre-1.0; v1beta1 `execution`).
    pub job: Option<JobSpec>,
    /// Pod settings of the restore Job (pre-1.0; meaningless in-process, not in v1beta1).
    pub pod_template: Option<PodTemplateSpec>,
}

/// The backup to read (v1.0.0): a KafkaBackup by name, and/or a storage location directly.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRef {
    /// Name of the KafkaBackup (v1beta1 `kafkaBackupRef.name`).
    pub name: Option<String>,
    /// Namespace of the KafkaBackup, default this namespace (v1beta1 `kafkaBackupRef.namespace`).
    pub namespace: Option<String>,
    /// Id of the backup set; default the KafkaBackup's latest (`status.backupId`).
    pub backup_id: Option<String>,
    /// Storage location of the backup, instead of the KafkaBackup's.
    pub storage: Option<StorageSpec>,
}

/// Redistribution over another partition count (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepartitioningSpec {
    /// How records are assigned to partitions (default murmur2).
    pub strategy: Option<RepartitionStrategy>,
    /// Partition count of the target topic.
    pub target_partitions: Option<i32>,
}

/// Repartitioning strategy, in the prior art's spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RepartitionStrategy {
    /// Kafka's key hash partitioner (v1beta1 Murmur2).
    #[serde(rename = "murmur2")]
    Murmur2,
    /// Round-robin (v1beta1 RoundRobin).
    #[serde(rename = "automatic")]
    Automatic,
}

/// Point-in-time recovery, every documented spelling.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestorePitrSpec {
    /// Enable point-in-time recovery (pre-1.0; v1beta1: the presence of `pitr`).
    pub enabled: Option<bool>,
    /// Restore up to this time, RFC 3339 (pre-1.0 spelling of `endTime`).
    pub timestamp: Option<String>,
    /// Restore up to this time, epoch milliseconds (pre-1.0 spelling of `endTimestamp`).
    pub timestamp_millis: Option<i64>,
    /// Restore from this time, epoch milliseconds (v1.0.0; wins over `startTime`).
    pub start_timestamp: Option<i64>,
    /// Restore up to this time, epoch milliseconds (v1.0.0; wins over `endTime`).
    pub end_timestamp: Option<i64>,
    /// Restore from this time, RFC 3339 (v1.0.0; v1beta1 `startTime`).
    pub start_time: Option<String>,
    /// Restore up to this time, RFC 3339 (v1.0.0; v1beta1 `endTime`).
    pub end_time: Option<String>,
}

/// Consumer-group offset reset after the restore.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOffsetResetSpec {
    /// Reset the groups (default false; v1beta1: the presence of `offsetReset`).
    pub enabled: Option<bool>,
    /// Where the groups are moved to (pre-1.0 and v1.0.0 values).
    pub strategy: Option<RestoreOffsetResetStrategy>,
    /// Source cluster id, for headerBased (pre-1.0).
    pub source_cluster: Option<String>,
    /// Consumer groups to reset (pre-1.0 and v1.0.0).
    pub consumer_groups: Option<Vec<String>>,
    /// Target time for the timestamp strategy, RFC 3339 (pre-1.0).
    pub timestamp: Option<String>,
}

/// Offset-reset strategies of a restore, every documented spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestoreOffsetResetStrategy {
    /// Start of the log (pre-1.0; v1beta1 Earliest).
    #[serde(rename = "earliest")]
    Earliest,
    /// End of the log (pre-1.0; v1beta1 Latest).
    #[serde(rename = "latest")]
    Latest,
    /// First record at or after `timestamp` (pre-1.0 and v1.0.0; v1beta1 Timestamp).
    #[serde(rename = "timestamp")]
    Timestamp,
    /// First record at or after `timestamp` (v1.0.0 spelling; v1beta1 Timestamp).
    #[serde(rename = "timestamp-based")]
    TimestampBased,
    /// A specific offset (pre-1.0; no offset field was ever documented; not in v1beta1).
    #[serde(rename = "offset")]
    Offset,
    /// Translate the source offsets through the backup's offset data (pre-1.0; v1beta1
    /// HeaderBased).
    #[serde(rename = "headerBased")]
    HeaderBased,
    /// Same as headerBased (v1.0.0 spelling; v1beta1 HeaderBased).
    #[serde(rename = "header-based")]
    HeaderBasedKebab,
    /// Same as headerBased in the prior art (v1.0.0; v1beta1 HeaderBased).
    #[serde(rename = "cluster-scan")]
    ClusterScan,
    /// Commit the reset (v1.0.0; v1beta1 HeaderBased).
    #[serde(rename = "auto")]
    Auto,
    /// Plan only, nothing committed (v1.0.0 default; not in v1beta1: use a KafkaOffsetReset with
    /// the restore's offset mapping).
    #[serde(rename = "manual")]
    Manual,
    /// Plan only (v1.0.0 spelling of manual).
    #[serde(rename = "dry-run")]
    DryRun,
    /// Plan only (v1.0.0 spelling of manual).
    #[serde(rename = "dry_run")]
    DryRunSnake,
}

/// Snapshot of consumer-group offsets before the restore, pre-1.0 and v1.0.0 fields.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRollbackSpec {
    /// Take the snapshot (pre-1.0 spelling of `snapshotBeforeRestore`).
    pub enabled: Option<bool>,
    /// Id of the snapshot (pre-1.0; v1beta1 `snapshotBeforeRestore.snapshotId`).
    pub snapshot_id: Option<String>,
    /// Take the snapshot (default true; v1.0.0; v1beta1 `snapshotBeforeRestore.enabled`).
    pub snapshot_before_restore: Option<bool>,
    /// Hours the snapshot is kept (default 24; v1.0.0; v1beta1
    /// `snapshotBeforeRestore.retentionHours`).
    pub snapshot_retention_hours: Option<i32>,
    /// Roll the offsets back when the restore fails (default false; v1.0.0, never implemented
    /// there; not in v1beta1, kept in the `kafka.oso.sh/v1alpha1-fields` annotation).
    pub auto_rollback_on_failure: Option<bool>,
    /// Volume of the snapshot (v1.0.0; v1beta1 `snapshotBeforeRestore.storage` of type PVC).
    pub snapshot_storage: Option<PvcPathRef>,
}

/// Lifecycle phase of a restore, the prior art's values plus PartiallyCompleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestorePhase {
    /// Accepted, not started.
    Pending,
    /// In progress.
    Running,
    /// Finished successfully.
    Completed,
    /// Some topics restored, others failed (written by this operator, v1beta1
    /// PartiallyCompleted).
    PartiallyCompleted,
    /// Finished unsuccessfully.
    Failed,
    /// Offsets rolled back after a failure (prior art, declared but never set).
    RolledBack,
}

/// Observed state of a KafkaRestore, with the seed's and the prior art's field names.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRestoreStatus {
    /// Lifecycle phase.
    pub phase: Option<RestorePhase>,
    /// Human-readable summary of the current state or the failure.
    pub message: Option<String>,
    /// When the restore started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the restore finished (RFC 3339).
    pub completion_time: Option<Time>,
    /// Records restored (pre-1.0 spelling of `recordsRestored`).
    pub restored_records: Option<i64>,
    /// Records restored per topic (pre-1.0).
    pub restored_topics: Option<Vec<RestoredTopic>>,
    /// Outcome of the offset reset (pre-1.0; v1beta1 `offsetReset`).
    pub offset_reset_status: Option<RestoreOffsetResetStatus>,
    /// Id of the pre-restore snapshot (pre-1.0; v1beta1 `snapshot.snapshotId`).
    pub rollback_snapshot_id: Option<String>,
    /// Percent of the records restored (v1.0.0).
    pub progress_percent: Option<f64>,
    /// Records restored (v1.0.0).
    pub records_restored: Option<i64>,
    /// Bytes restored (v1.0.0).
    pub bytes_restored: Option<i64>,
    /// Segments processed (v1.0.0).
    pub segments_processed: Option<i64>,
    /// Topic being restored (v1.0.0).
    pub current_topic: Option<String>,
    /// Records per second (v1.0.0; v1beta1 `throughput.recordsPerSecond`).
    pub throughput_records_per_sec: Option<f64>,
    /// Estimated milliseconds to completion (v1.0.0; v1beta1 `etaSeconds`).
    pub eta_ms: Option<i64>,
    /// The pre-restore snapshot (v1.0.0; v1beta1 `snapshot`).
    pub rollback: Option<RestoreRollbackStatus>,
    /// Location of the offset mapping written by the restore (v1.0.0).
    pub offset_mapping_path: Option<String>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Records restored into one topic (pre-1.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredTopic {
    /// Topic name.
    pub name: Option<String>,
    /// Records restored into it.
    pub records: Option<i64>,
}

/// Outcome of the offset reset after a restore (pre-1.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOffsetResetStatus {
    /// Phase of the reset.
    pub phase: Option<Phase>,
    /// Consumer groups reset.
    pub groups_reset: Option<Vec<String>>,
}

/// The pre-restore snapshot (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRollbackStatus {
    /// Id of the snapshot.
    pub snapshot_id: Option<String>,
    /// When it was taken (RFC 3339; v1beta1 `snapshot.snapshotTime`).
    pub snapshot_time: Option<Time>,
    /// Where it is stored (v1beta1 `snapshot.location`).
    pub snapshot_path: Option<String>,
    /// A rollback to it is possible (not yet expired).
    pub rollback_available: Option<bool>,
    /// When it expires (RFC 3339; v1beta1 `snapshot.expirationTime`).
    pub expires_at: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status example of the seed page deserializes with its field names.
    #[test]
    fn seed_status_example_deserializes() {
        let status: KafkaRestoreStatus = serde_json::from_value(serde_json::json!({
            "phase": "Completed",
            "startTime": "2024-12-01T12:00:00Z",
            "completionTime": "2024-12-01T12:30:00Z",
            "restoredRecords": 1_000_000,
            "restoredTopics": [{"name": "orders", "records": 500_000}, {"name": "payments", "records": 500_000}],
            "offsetResetStatus": {"phase": "Completed", "groupsReset": ["order-processor", "payment-handler"]},
            "rollbackSnapshotId": "pre-restore-snapshot",
            "conditions": [{"type": "Ready", "status": "True", "reason": "RestoreCompleted",
                "message": "Restore completed successfully", "lastTransitionTime": "2024-12-01T12:30:00Z"}],
        }))
        .unwrap();
        assert_eq!(status.phase, Some(RestorePhase::Completed));
        assert_eq!(status.restored_topics.unwrap().len(), 2);
        assert_eq!(status.offset_reset_status.unwrap().phase, Some(Phase::Completed));
    }
}
