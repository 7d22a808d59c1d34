//! KafkaOffsetReset v1alpha1: the compatibility surface. Accepts the pre-1.0 spelling (`strategy`
//! with `timestamp`/`timestampMillis`/`offset`/`sourceCluster`/`mappingConfigMap`,
//! `createSnapshot` + `snapshotId`, `resources`, `job`) and the v1.0.0 spelling (`resetStrategy`
//! with `resetTimestamp`/`resetOffset`/`offsetMappingRef`, `snapshotBeforeReset`,
//! `continueOnError`) side by side. Every field is optional and has no default.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{ConfigMapKeyRef, JobSpec, KafkaClusterSpec, Resources};
use crate::api::v1beta1::Phase;

/// Resets the committed offsets of consumer groups (v1alpha1 compatibility surface; stored as
/// v1beta1).
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
// Each `printcolumn(...)` repeats the keys name/type_/json_path: not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1alpha1",
    kind = "KafkaOffsetReset",
    namespaced,
    status = "KafkaOffsetResetStatus",
    shortname = "kor",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Resets the committed offsets of Kafka consumer groups (v1alpha1, compatibility version).",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase of the reset"
    ),
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".spec.strategy",
        description = "Reset strategy (pre-1.0 spelling)"
    ),
    printcolumn(
        name = "Reset Strategy",
        type_ = "string",
        json_path = ".spec.resetStrategy",
        priority = 1,
        description = "Reset strategy (v1.0.0 spelling)"
    ),
    printcolumn(
        name = "Groups",
        type_ = "integer",
        json_path = ".status.groupsReset",
        description = "Consumer groups reset"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.groupsFailed",
        description = "Consumer groups whose reset failed"
    ),
    printcolumn(
        name = "Dry Run",
        type_ = "boolean",
        json_path = ".spec.dryRun",
        priority = 1,
        description = "Plan only, nothing committed"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOffsetResetSpec {
    /// The Kafka cluster whose consumer groups are reset (pre-1.0 and v1.0.0).
    pub kafka_cluster: Option<KafkaClusterSpec>,
    /// Consumer group ids to reset (pre-1.0 and v1.0.0).
    pub consumer_groups: Option<Vec<String>>,
    /// Topics whose offsets are reset; absent or empty: every topic the group has committed
    /// offsets for (pre-1.0 and v1.0.0).
    pub topics: Option<Vec<String>>,
    /// Reset strategy, pre-1.0 spelling (v1.0.0: `resetStrategy`).
    pub strategy: Option<OffsetResetStrategy>,
    /// Reset strategy, v1.0.0 spelling (pre-1.0: `strategy`).
    pub reset_strategy: Option<OffsetResetStrategyV1>,
    /// Strategy timestamp: RFC 3339 point in time, pre-1.0 spelling (also `timestampMillis`;
    /// v1.0.0: `resetTimestamp`).
    pub timestamp: Option<String>,
    /// Strategy timestamp: epoch milliseconds, pre-1.0 alternative to `timestamp` (v1.0.0:
    /// `resetTimestamp`).
    pub timestamp_millis: Option<i64>,
    /// Strategy to-timestamp: epoch milliseconds, v1.0.0 spelling (pre-1.0: `timestamp` or
    /// `timestampMillis`).
    pub reset_timestamp: Option<i64>,
    /// Strategy offset: absolute offset for every partition, pre-1.0 spelling (v1.0.0:
    /// `resetOffset`).
    pub offset: Option<i64>,
    /// Strategy to-offset: absolute offset for every partition, v1.0.0 spelling (pre-1.0:
    /// `offset`).
    pub reset_offset: Option<i64>,
    /// Strategy headerBased: id of the source cluster in the backup headers (pre-1.0).
    pub source_cluster: Option<String>,
    /// Strategy headerBased: search every partition, for when the partition count changed
    /// (pre-1.0; default false).
    pub scan_all_partitions: Option<bool>,
    /// Strategy fromMapping: ConfigMap key holding the offset mapping JSON, pre-1.0 spelling
    /// (v1.0.0: `offsetMappingRef`).
    pub mapping_config_map: Option<ConfigMapKeyRef>,
    /// Strategy from-mapping: where the offset mapping file is, v1.0.0 spelling (pre-1.0:
    /// `mappingConfigMap`).
    pub offset_mapping_ref: Option<OffsetMappingRef>,
    /// Take a snapshot of the offsets before resetting, pre-1.0 spelling (v1.0.0:
    /// `snapshotBeforeReset`).
    pub create_snapshot: Option<bool>,
    /// Id of the pre-reset snapshot (pre-1.0; generated when absent).
    pub snapshot_id: Option<String>,
    /// Take a snapshot of the offsets before resetting, v1.0.0 spelling (pre-1.0:
    /// `createSnapshot`; default true).
    pub snapshot_before_reset: Option<bool>,
    /// Consumer groups reset concurrently (pre-1.0 and v1.0.0; default 10; the v1.0.0 release
    /// declared 50 but reset one group at a time).
    pub parallelism: Option<i32>,
    /// Compute the plan without committing (pre-1.0 and v1.0.0; default false).
    pub dry_run: Option<bool>,
    /// Keep resetting the other groups after one fails (v1.0.0; default false).
    pub continue_on_error: Option<bool>,
    /// Compute resources of the Job-based releases (pre-1.0); no effect in-process, kept for
    /// compatibility.
    pub resources: Option<Resources>,
    /// Job settings of the Job-based releases (pre-1.0); v1beta1 `execution`.
    pub job: Option<JobSpec>,
}

/// Reset strategy, pre-1.0 spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OffsetResetStrategy {
    /// Earliest available offset (v1beta1 Earliest).
    #[serde(rename = "earliest")]
    Earliest,
    /// Latest offset (v1beta1 Latest).
    #[serde(rename = "latest")]
    Latest,
    /// First offset at or after `timestamp` / `timestampMillis` (v1beta1 Timestamp).
    #[serde(rename = "timestamp")]
    Timestamp,
    /// The absolute `offset` (v1beta1 Offset).
    #[serde(rename = "offset")]
    Offset,
    /// Offsets found through the backup headers of restored records (v1beta1 HeaderBased).
    #[serde(rename = "headerBased")]
    HeaderBased,
    /// Offsets of a pre-generated mapping in `mappingConfigMap` (v1beta1 FromMapping).
    #[serde(rename = "fromMapping")]
    FromMapping,
}

/// Reset strategy, v1.0.0 spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OffsetResetStrategyV1 {
    /// Earliest available offset (v1beta1 Earliest).
    #[serde(rename = "to-earliest")]
    ToEarliest,
    /// Latest offset (v1beta1 Latest).
    #[serde(rename = "to-latest")]
    ToLatest,
    /// First offset at or after `resetTimestamp` (v1beta1 Timestamp).
    #[serde(rename = "to-timestamp")]
    ToTimestamp,
    /// The absolute `resetOffset` (v1beta1 Offset).
    #[serde(rename = "to-offset")]
    ToOffset,
    /// Offsets of the mapping named by `offsetMappingRef` (v1beta1 FromMapping).
    #[serde(rename = "from-mapping")]
    FromMapping,
}

/// Where the offset mapping file of a restore is (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetMappingRef {
    /// Name of a KafkaRestore whose status holds the mapping path (v1.0.0; v1beta1
    /// `fromMapping.restoreRef`).
    pub restore_name: Option<String>,
    /// Path of the mapping file; relative to the PVC when `pvcName` is set (default
    /// `offset-mapping.json`) (v1.0.0; v1beta1 `fromMapping.path`).
    pub path: Option<String>,
    /// PersistentVolumeClaim holding the mapping file (v1.0.0; v1beta1 `fromMapping.storage`
    /// of type PVC).
    pub pvc_name: Option<String>,
}

/// Observed state of a KafkaOffsetReset (v1alpha1 field names: the pre-1.0 seed's and the
/// v1.0.0 ones side by side).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOffsetResetStatus {
    /// Lifecycle phase: Pending, Running, Completed, PartiallyCompleted or Failed.
    pub phase: Option<Phase>,
    /// Human-readable summary of the current state or the failure (v1.0.0).
    pub message: Option<String>,
    /// When the reset started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the reset finished (RFC 3339).
    pub completion_time: Option<Time>,
    /// Consumer groups in scope (v1.0.0).
    pub groups_total: Option<i32>,
    /// Consumer groups reset.
    pub groups_reset: Option<i32>,
    /// Consumer groups whose reset failed (v1.0.0).
    pub groups_failed: Option<i32>,
    /// Run time as a string such as `1.52s` (v1.0.0).
    pub duration: Option<String>,
    /// Id of the pre-reset snapshot (v1beta1 `snapshot.snapshotId`).
    pub snapshot_id: Option<String>,
    /// Location of the pre-reset snapshot (v1.0.0; v1beta1 `snapshot.location`).
    pub snapshot_path: Option<String>,
    /// Outcome per consumer group, pre-1.0 spelling (v1.0.0: `groupResults`).
    pub results: Option<Vec<GroupResetResult>>,
    /// Outcome per consumer group, v1.0.0 spelling (pre-1.0: `results`).
    pub group_results: Option<Vec<GroupResetResultV1>>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Outcome of one consumer group, pre-1.0 spelling.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupResetResult {
    /// Consumer group id.
    pub group: Option<String>,
    /// What happened to the group.
    pub status: Option<GroupResetStatus>,
    /// Partitions whose offset was committed.
    pub partitions_reset: Option<i32>,
    /// The error, when the group failed.
    pub error: Option<String>,
}

/// What happened to a consumer group, pre-1.0 spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GroupResetStatus {
    /// Offsets committed (v1beta1 Succeeded).
    #[serde(rename = "success")]
    Success,
    /// The reset of this group failed (v1beta1 Failed).
    #[serde(rename = "failed")]
    Failed,
    /// Not reset (v1beta1 Skipped).
    #[serde(rename = "skipped")]
    Skipped,
    /// Dry run: computed, not committed (v1beta1 Planned).
    #[serde(rename = "planned")]
    Planned,
}

/// Outcome of one consumer group, v1.0.0 spelling.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupResetResultV1 {
    /// Consumer group id.
    pub group_id: Option<String>,
    /// The group's offsets were committed.
    pub success: Option<bool>,
    /// The error, when the group failed.
    pub error: Option<String>,
    /// Partitions whose offset was committed.
    pub partitions_reset: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status example of the seed page deserializes and serializes back unchanged, so every
    /// field of it exists with its spelling.
    #[test]
    fn seed_status_round_trips() {
        let yaml = r#"
phase: Completed
startTime: "2024-12-01T12:00:00Z"
completionTime: "2024-12-01T12:01:00Z"
groupsReset: 3
snapshotId: "pre-reset-snapshot"
results:
  - group: order-processor
    status: success
    partitionsReset: 6
  - group: payment-handler
    status: success
    partitionsReset: 3
  - group: notification-service
    status: success
    partitionsReset: 3
conditions:
  - type: Ready
    status: "True"
    reason: ResetCompleted
    message: "All consumer groups reset successfully"
    lastTransitionTime: "2024-12-01T12:01:00Z"
"#;
        let original: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let status: KafkaOffsetResetStatus = serde_json::from_value(original.clone()).unwrap();
        assert_eq!(serde_json::to_value(&status).unwrap(), original);
    }
}
