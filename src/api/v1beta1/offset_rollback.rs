//! KafkaOffsetRollback v1beta1: snapshots of consumer group offsets, and rolling groups back to,
//! verifying them against, or deleting such a snapshot.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{ExecutionSpec, KafkaClusterSpec, Phase, SNAPSHOT_ID_PATTERN, SameNamespaceRef, StorageSpec};

/// Takes a snapshot of consumer group offsets, rolls groups back to a snapshot, verifies the
/// committed offsets against one, or deletes one. Snapshots are stored as `<snapshotId>.json`
/// in a storage location (object storage, a PVC or a ConfigMap); the pre-change snapshots of
/// KafkaOffsetReset and KafkaRestore can be used through `snapshotFrom`.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
// Each `printcolumn(...)` repeats the keys name/type_/json_path: not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1beta1",
    kind = "KafkaOffsetRollback",
    namespaced,
    status = "KafkaOffsetRollbackStatus",
    shortname = "korb",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Snapshots, rolls back, verifies or deletes consumer group offset snapshots.",
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
        description = "Snapshot, Rollback, Verify or Delete"
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
        json_path = ".status.verification.matched",
        description = "Committed offsets match the snapshot"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.snapshotId) != has(self.snapshotFrom)")
        .message("set exactly one of snapshotId and snapshotFrom"),
    validation = Rule::new("!has(self.snapshotFrom) || !has(self.storage)")
        .message("snapshotFrom supplies the storage: storage is not allowed with it"),
    validation = Rule::new("self.operation != 'Snapshot' || !has(self.snapshotFrom)")
        .message("operation Snapshot creates a new snapshot: name it with snapshotId, not snapshotFrom"),
    validation = Rule::new("self.operation != 'Snapshot' || has(self.consumerGroups)")
        .message("operation Snapshot needs consumerGroups"),
    validation = Rule::new("self.operation != 'Delete' || !has(self.consumerGroups)")
        .message("operation Delete removes the whole snapshot: consumerGroups is not allowed"),
    validation = Rule::new("(self.operation == 'Delete') != has(self.kafkaCluster)")
        .message("kafkaCluster is required for operations Snapshot, Rollback and Verify, and not allowed for Delete"),
    validation = Rule::new("!has(self.verify) || self.operation == 'Verify'")
        .message("verify options need operation Verify"),
    validation = Rule::new("!has(self.removeOffsetsNotInSnapshot) || !self.removeOffsetsNotInSnapshot || self.operation == 'Rollback'")
        .message("removeOffsetsNotInSnapshot needs operation Rollback"),
)]
pub struct KafkaOffsetRollbackSpec {
    /// What to do with the snapshot.
    pub operation: RollbackOperation,
    /// Id of the snapshot: one object-key segment (letters, digits, `.`, `_`, `-`; at most 248
    /// characters), stored as `<snapshotId>.json` under the storage prefix (in a ConfigMap: the key
    /// `<snapshotId>.json`). Required unless `snapshotFrom` names the snapshot.
    #[schemars(pattern(SNAPSHOT_ID_PATTERN))]
    pub snapshot_id: Option<String>,
    /// Use the pre-change snapshot recorded in the status of a KafkaOffsetReset or KafkaRestore
    /// (its id and storage) instead of `snapshotId` and `storage`. Not with operation Snapshot.
    pub snapshot_from: Option<RollbackSnapshotSource>,
    /// Where the snapshot is stored (not with `snapshotFrom`). Absent: operation Snapshot writes to
    /// a ConfigMap in this namespace with the same name as this KafkaOffsetRollback; Rollback,
    /// Verify and Delete look `snapshotId` up among the snapshots known in this namespace (the
    /// `offsetsnapshots` catalog) and fail when it is missing or found in more than one location.
    /// With `run -f`, which has no Kubernetes API, both use the embedded default location
    /// (`--catalog-dir`).
    /// ConfigMap storage suits small snapshots (a ConfigMap holds at most 1 MiB).
    pub storage: Option<StorageSpec>,
    /// Consumer group ids. Snapshot: the groups to capture (required). Rollback and Verify: only
    /// these groups of the snapshot (absent: all of them). Delete: not allowed.
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub consumer_groups: Option<Vec<String>>,
    /// The Kafka cluster of the consumer groups; required except for operation Delete, which only
    /// touches storage.
    pub kafka_cluster: Option<KafkaClusterSpec>,
    /// Options of operation Verify.
    pub verify: Option<RollbackVerifySpec>,
    /// Rollback: after committing, read the offsets back and compare them exactly with the
    /// snapshot, reported in `status.verification` (default true). Ignored by the other operations.
    #[serde(default = "default_true")]
    pub verify_after_rollback: bool,
    /// Rollback: also delete the offsets the group committed since the snapshot for partitions the
    /// snapshot does not have (for example topics consumed for the first time), so the group is
    /// exactly as it was (default false: those offsets are left as they are). Done with
    /// OffsetDelete for those partitions, then committing the snapshot's, with the group Empty.
    #[serde(default)]
    pub remove_offsets_not_in_snapshot: bool,
    /// Do nothing irreversible (default false). Snapshot: read the offsets, store nothing.
    /// Rollback: report the differences to the snapshot in `status.verification`, commit nothing.
    /// Delete: check the snapshot exists, delete nothing. Verify is read-only anyway.
    #[serde(default)]
    pub dry_run: bool,
    /// Retries, deadline and clean-up of the operation.
    pub execution: Option<ExecutionSpec>,
}

fn default_true() -> bool {
    true
}

/// What a KafkaOffsetRollback does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RollbackOperation {
    /// Capture the committed offsets of `consumerGroups` into a new snapshot; fails if the
    /// snapshot id already exists.
    Snapshot,
    /// Commit the snapshot's offsets back to its groups (their consumers must be stopped).
    Rollback,
    /// Compare the committed offsets with the snapshot, without changing anything.
    Verify,
    /// Delete the snapshot from storage.
    Delete,
}

/// Takes the snapshot from another resource's status: exactly one reference.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.offsetResetRef) != has(self.restoreRef)")
        .message("set exactly one of snapshotFrom.offsetResetRef and snapshotFrom.restoreRef"),
)]
pub struct RollbackSnapshotSource {
    /// A KafkaOffsetReset in this namespace: its pre-reset snapshot (`status.snapshot`).
    pub offset_reset_ref: Option<SameNamespaceRef>,
    /// A KafkaRestore in this namespace: its pre-restore snapshot (`status.snapshot`).
    pub restore_ref: Option<SameNamespaceRef>,
}

/// Options of operation Verify.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackVerifySpec {
    /// Every partition must have exactly the snapshot's offset (default true). When false, an
    /// offset ahead of the snapshot (consumers resumed since) also matches; only offsets behind it
    /// or missing are differences.
    #[serde(default = "default_true")]
    pub strict: bool,
}

/// Observed state of a KafkaOffsetRollback, written by the operator.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOffsetRollbackStatus {
    /// Lifecycle phase: Pending, Running, Completed, PartiallyCompleted (some groups failed to
    /// roll back) or Failed (also when Verify found differences).
    pub phase: Option<Phase>,
    /// Human-readable summary of the current state or the failure.
    pub message: Option<String>,
    /// The operation this status describes.
    pub operation: Option<RollbackOperation>,
    /// Id of the snapshot operated on (resolved from `snapshotFrom` when used).
    pub snapshot_id: Option<String>,
    /// When the operation started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the operation finished, successfully or not (RFC 3339).
    pub completion_time: Option<Time>,
    /// The snapshot that was written or read.
    pub snapshot: Option<RollbackSnapshotInfo>,
    /// Result of the comparison (Verify, and Rollback with verifyAfterRollback or dryRun).
    pub verification: Option<RollbackVerification>,
    /// Consumer groups whose offsets were rolled back.
    pub groups_rolled_back: Option<i32>,
    /// Consumer groups whose rollback failed.
    pub groups_failed: Option<i32>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Summary of a snapshot.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSnapshotInfo {
    /// Consumer groups in the snapshot.
    pub groups: Option<i32>,
    /// Partitions with a stored offset, over all groups.
    pub total_partitions: Option<i32>,
    /// When the offsets were captured (RFC 3339).
    pub timestamp: Option<Time>,
    /// Location of the snapshot: an object URI (`s3://bucket/prefix/<id>.json`, `az://...`,
    /// `gs://...`), a path on a PVC (`pvc://<claim>/<path>`) or `configmap://<name>/<key>`.
    pub location: Option<String>,
}

/// Comparison of the committed offsets with a snapshot.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackVerification {
    /// Every compared partition matched.
    pub matched: Option<bool>,
    /// Whether the comparison was strict (exact offsets).
    pub strict: Option<bool>,
    /// Consumer groups compared.
    pub groups_total: Option<i32>,
    /// Consumer groups whose partitions all matched.
    pub groups_matched: Option<i32>,
    /// Consumer groups with at least one difference.
    pub groups_mismatched: Option<i32>,
    /// Number of differing partitions; `differences` lists at most the first 100.
    pub differences_total: Option<i32>,
    /// Partitions whose committed offset differs from the snapshot.
    pub differences: Option<Vec<OffsetDifference>>,
}

/// A partition whose committed offset differs from the snapshot.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetDifference {
    /// Consumer group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Offset stored in the snapshot.
    pub expected: Option<i64>,
    /// Committed offset now; absent when the group has none for the partition.
    pub actual: Option<i64>,
}

#[cfg(test)]
mod tests {
    use kube::core::{CustomResourceExt, cel::Validator};
    use serde_json::{Value, json};

    use super::*;

    fn errors(spec: Value) -> String {
        let crd = KafkaOffsetRollback::crd();
        let schema =
            serde_json::to_value(&crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema).unwrap();
        let object = json!({
            "apiVersion": "kafka.oso.sh/v1beta1",
            "kind": "KafkaOffsetRollback",
            "metadata": {"name": "r"},
            "spec": spec,
        });
        match Validator::new().validate(&schema, &object, None) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn cluster() -> Value {
        json!({"bootstrapServers": ["kafka:9092"]})
    }

    fn storage() -> Value {
        json!({"type": "ConfigMap", "configMap": {"name": "offset-snapshots"}})
    }

    #[test]
    fn each_operation_accepts_its_minimal_form() {
        let cases = [
            json!({"operation": "Snapshot", "snapshotId": "s1", "storage": storage(),
                   "kafkaCluster": cluster(), "consumerGroups": ["g"]}),
            json!({"operation": "Rollback", "snapshotId": "s1", "storage": storage(), "kafkaCluster": cluster()}),
            json!({"operation": "Rollback", "snapshotFrom": {"offsetResetRef": {"name": "r"}},
                   "kafkaCluster": cluster()}),
            json!({"operation": "Verify", "snapshotId": "s1", "storage": storage(), "kafkaCluster": cluster(),
                   "verify": {"strict": false}}),
            json!({"operation": "Delete", "snapshotId": "s1", "storage": storage()}),
            // Without storage the snapshot is found by id in the namespace's catalog.
            json!({"operation": "Rollback", "snapshotId": "s1", "kafkaCluster": cluster()}),
            json!({"operation": "Snapshot", "snapshotId": "s1", "kafkaCluster": cluster(), "consumerGroups": ["g"]}),
        ];
        for spec in cases {
            assert_eq!(errors(spec.clone()), "", "{spec}");
        }
    }

    #[test]
    fn operation_rules_name_the_fields() {
        let cases = [
            (
                json!({"operation": "Rollback", "kafkaCluster": cluster()}),
                "exactly one of snapshotId and snapshotFrom",
            ),
            (
                json!({"operation": "Rollback", "snapshotFrom": {"restoreRef": {"name": "r"}},
                       "storage": storage(), "kafkaCluster": cluster()}),
                "storage is not allowed with it",
            ),
            (
                json!({"operation": "Snapshot", "snapshotFrom": {"restoreRef": {"name": "r"}},
                       "kafkaCluster": cluster(), "consumerGroups": ["g"]}),
                "operation Snapshot creates a new snapshot",
            ),
            (
                json!({"operation": "Snapshot", "snapshotId": "s", "storage": storage(), "kafkaCluster": cluster()}),
                "operation Snapshot needs consumerGroups",
            ),
            (
                json!({"operation": "Delete", "snapshotId": "s", "storage": storage(), "consumerGroups": ["g"]}),
                "operation Delete removes the whole snapshot",
            ),
            (
                json!({"operation": "Verify", "snapshotId": "s", "storage": storage()}),
                "kafkaCluster is required",
            ),
            (
                json!({"operation": "Rollback", "snapshotId": "s", "storage": storage(), "kafkaCluster": cluster(),
                       "verify": {"strict": true}}),
                "verify options need operation Verify",
            ),
            (
                json!({"operation": "Rollback", "kafkaCluster": cluster(),
                       "snapshotFrom": {"offsetResetRef": {"name": "a"}, "restoreRef": {"name": "b"}}}),
                "exactly one of snapshotFrom.offsetResetRef and snapshotFrom.restoreRef",
            ),
        ];
        for (spec, expected) in cases {
            let errors = errors(spec);
            assert!(errors.contains(expected), "expected {expected:?} in {errors:?}");
        }
    }
}
