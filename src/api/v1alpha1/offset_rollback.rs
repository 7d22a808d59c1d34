//! KafkaOffsetRollback v1alpha1: the compatibility surface. Accepts the pre-1.0 spelling
//! (`operation` snapshot|rollback|verify|delete with `snapshotId`, `storage`, `verify.strict`,
//! `resources`, `job`) and the v1.0.0 spelling (a rollback from `snapshotRef`, with `dryRun` and
//! `verifyAfterRollback`) side by side. Every field is optional and has no default.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{JobSpec, KafkaClusterSpec, Resources, StorageSpec};
use crate::api::v1beta1::Phase;

/// Snapshots, rolls back, verifies or deletes consumer group offset snapshots (v1alpha1
/// compatibility surface; stored as v1beta1).
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
// Each `printcolumn(...)` repeats the keys name/type_/json_path: not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1alpha1",
    kind = "KafkaOffsetRollback",
    namespaced,
    status = "KafkaOffsetRollbackStatus",
    shortname = "korb",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Snapshots, rolls back, verifies or deletes consumer group offset snapshots (v1alpha1, compatibility version).",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase of the operation"
    ),
    printcolumn(
        name = "Operation",
        type_ = "string",
        json_path = ".spec.operation",
        description = "snapshot, rollback, verify or delete"
    ),
    printcolumn(
        name = "Snapshot",
        type_ = "string",
        json_path = ".status.snapshotId",
        description = "Id of the snapshot operated on"
    ),
    printcolumn(
        name = "Rolled Back",
        type_ = "integer",
        json_path = ".status.groupsRolledBack",
        description = "Consumer groups rolled back"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.groupsFailed",
        description = "Consumer groups whose rollback failed"
    ),
    printcolumn(
        name = "Matched",
        type_ = "boolean",
        json_path = ".status.verificationResult.matched",
        description = "Committed offsets match the snapshot"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOffsetRollbackSpec {
    /// The Kafka cluster of the consumer groups (pre-1.0 and v1.0.0).
    pub kafka_cluster: Option<KafkaClusterSpec>,
    /// Consumer group ids: the groups to snapshot, or the subset to roll back or verify
    /// (pre-1.0 and v1.0.0; absent: all groups of the snapshot).
    pub consumer_groups: Option<Vec<String>>,
    /// What to do with the snapshot (pre-1.0; v1.0.0 resources always roll back).
    pub operation: Option<RollbackOperation>,
    /// Id of the snapshot (pre-1.0; v1.0.0: `snapshotRef.name`).
    pub snapshot_id: Option<String>,
    /// Where the snapshot is stored (pre-1.0; v1.0.0: `snapshotRef.pvcName` and `path`).
    pub storage: Option<StorageSpec>,
    /// Options of operation verify (pre-1.0).
    pub verify: Option<RollbackVerifySpec>,
    /// The snapshot to roll back to (v1.0.0; pre-1.0: `snapshotId` + `storage`).
    pub snapshot_ref: Option<OffsetSnapshotRef>,
    /// Report what would change without committing (v1.0.0; default false).
    pub dry_run: Option<bool>,
    /// Read the offsets back after the rollback and compare them with the snapshot (v1.0.0;
    /// default true).
    pub verify_after_rollback: Option<bool>,
    /// Rollback: also delete offsets committed since the snapshot for partitions it does not
    /// have, so the group is exactly as it was (default false).
    pub remove_offsets_not_in_snapshot: Option<bool>,
    /// Compute resources of the Job-based releases (pre-1.0); no effect in-process, kept for
    /// compatibility.
    pub resources: Option<Resources>,
    /// Job settings of the Job-based releases (pre-1.0); v1beta1 `execution`.
    pub job: Option<JobSpec>,
}

/// What a KafkaOffsetRollback does (pre-1.0 spelling).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RollbackOperation {
    /// Create a snapshot of the current offsets (v1beta1 Snapshot).
    #[serde(rename = "snapshot")]
    Snapshot,
    /// Restore offsets from a snapshot (v1beta1 Rollback).
    #[serde(rename = "rollback")]
    Rollback,
    /// Compare the current offsets with a snapshot (v1beta1 Verify).
    #[serde(rename = "verify")]
    Verify,
    /// Delete a snapshot (v1beta1 Delete).
    #[serde(rename = "delete")]
    Delete,
}

/// Options of operation verify (pre-1.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackVerifySpec {
    /// Fail if the offsets do not match exactly (pre-1.0; default true).
    pub strict: Option<bool>,
}

/// The snapshot a v1.0.0 rollback restores.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetSnapshotRef {
    /// Snapshot id (v1.0.0; v1beta1 `snapshotId`).
    pub name: Option<String>,
    /// PersistentVolumeClaim holding the snapshot file (v1.0.0; v1beta1 `storage` of type PVC).
    pub pvc_name: Option<String>,
    /// Path of the snapshot file (v1.0.0; on `pvcName` when set).
    pub path: Option<String>,
    /// Name of a KafkaRestore whose pre-restore snapshot is used (v1.0.0; v1beta1
    /// `snapshotFrom.restoreRef`).
    pub restore_ref: Option<String>,
    /// Name of a KafkaOffsetReset whose pre-reset snapshot is used (v1.0.0; v1beta1
    /// `snapshotFrom.offsetResetRef`).
    pub offset_reset_ref: Option<String>,
}

/// Observed state of a KafkaOffsetRollback (v1alpha1 field names: the pre-1.0 seed's and the
/// v1.0.0 ones side by side).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOffsetRollbackStatus {
    /// Lifecycle phase: Pending, Running, Completed, PartiallyCompleted or Failed.
    pub phase: Option<Phase>,
    /// Human-readable summary of the current state or the failure (v1.0.0).
    pub message: Option<String>,
    /// The operation this status describes (pre-1.0).
    pub operation: Option<RollbackOperation>,
    /// Id of the snapshot operated on (pre-1.0).
    pub snapshot_id: Option<String>,
    /// When the operation started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the operation finished (RFC 3339).
    pub completion_time: Option<Time>,
    /// Summary of the snapshot written or read (pre-1.0; v1beta1 `snapshot`).
    pub snapshot_data: Option<OffsetSnapshotData>,
    /// Result of operation verify (pre-1.0; v1beta1 `verification`).
    pub verification_result: Option<OffsetVerificationResult>,
    /// Consumer groups rolled back (v1.0.0).
    pub groups_rolled_back: Option<i32>,
    /// Consumer groups whose rollback failed (v1.0.0).
    pub groups_failed: Option<i32>,
    /// Result of the verification after a rollback (v1.0.0; v1beta1 `verification`).
    pub verification: Option<OffsetVerificationSummary>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Summary of a snapshot (pre-1.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetSnapshotData {
    /// Consumer groups in the snapshot.
    pub groups: Option<i32>,
    /// Partitions with a stored offset, over all groups.
    pub total_partitions: Option<i32>,
    /// When the offsets were captured (RFC 3339).
    pub timestamp: Option<Time>,
}

/// Result of operation verify (pre-1.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetVerificationResult {
    /// Every compared partition matched.
    pub matched: Option<bool>,
    /// Partitions whose committed offset differs from the snapshot.
    pub differences: Option<Vec<OffsetDifference>>,
}

/// A partition whose committed offset differs from the snapshot.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetDifference {
    /// Consumer group id.
    pub group: Option<String>,
    /// Topic name.
    pub topic: Option<String>,
    /// Partition number.
    pub partition: Option<i32>,
    /// Offset stored in the snapshot.
    pub expected: Option<i64>,
    /// Committed offset now; absent when the group has none.
    pub actual: Option<i64>,
}

/// Result of the verification after a rollback (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetVerificationSummary {
    /// Every group matched the snapshot.
    pub all_matched: Option<bool>,
    /// Consumer groups compared.
    pub total_groups: Option<i32>,
    /// Consumer groups whose offsets all matched.
    pub matched_groups: Option<i32>,
    /// Consumer groups with at least one difference.
    pub mismatched_groups: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status example of the seed page deserializes and serializes back unchanged.
    #[test]
    fn seed_status_round_trips() {
        let yaml = r#"
phase: Completed
operation: snapshot
snapshotId: "pre-migration-20241201"
startTime: "2024-12-01T12:00:00Z"
completionTime: "2024-12-01T12:00:05Z"
snapshotData:
  groups: 2
  totalPartitions: 12
  timestamp: "2024-12-01T12:00:00Z"
verificationResult:
  matched: true
  differences: []
conditions:
  - type: Ready
    status: "True"
    reason: SnapshotCreated
    message: "Snapshot pre-migration-20241201 created successfully"
    lastTransitionTime: "2024-12-01T12:00:05Z"
"#;
        let original: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let status: KafkaOffsetRollbackStatus = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(serde_json::to_value(&status).unwrap(), original);
    }
}
