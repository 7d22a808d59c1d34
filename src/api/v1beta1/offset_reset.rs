//! KafkaOffsetReset v1beta1: moves the committed offsets of consumer groups, with the strategies
//! of `kafka-consumer-groups --reset-offsets` plus the restore-aware ones (HeaderBased,
//! FromMapping), and a pre-change snapshot that KafkaOffsetRollback can restore.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{ConfigMapKeyRef, ExecutionSpec, KafkaClusterSpec, Phase, StorageSpec};

/// Pattern of a snapshot id: one object-key segment. At most 248 characters, so that the stored
/// name `<snapshotId>.json` is still a valid ConfigMap key (253).
pub const SNAPSHOT_ID_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,247}$";

/// Pattern of a Kafka topic name.
const TOPIC_PATTERN: &str = r"^[A-Za-z0-9._-]{1,249}$";

/// Pattern of the ISO-8601 durations `kafka-consumer-groups --by-duration` accepts: days, hours,
/// minutes and seconds (`PnDTnHnMn.nS`), at least one of them. No look-ahead: Kubernetes checks
/// patterns with RE2.
const DURATION_PATTERN: &str = r"^P([0-9]+D(T([0-9]+H([0-9]+M)?([0-9]+(\.[0-9]{1,9})?S)?|[0-9]+M([0-9]+(\.[0-9]{1,9})?S)?|[0-9]+(\.[0-9]{1,9})?S))?|T([0-9]+H([0-9]+M)?([0-9]+(\.[0-9]{1,9})?S)?|[0-9]+M([0-9]+(\.[0-9]{1,9})?S)?|[0-9]+(\.[0-9]{1,9})?S))$";

/// Moves the committed offsets of consumer groups: to the start or end of the log, to a point in
/// time, to absolute offsets, by a relative shift or duration, from a backup's offset mapping or
/// the headers restored records carry; or deletes the offsets. The consumers of the groups must
/// be stopped (the groups Empty). By default a snapshot of the offsets is taken first, so the
/// change can be undone with a KafkaOffsetRollback.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
// Each `printcolumn(...)` repeats the keys name/type_/json_path: not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1beta1",
    kind = "KafkaOffsetReset",
    namespaced,
    status = "KafkaOffsetResetStatus",
    shortname = "kor",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Resets the committed offsets of Kafka consumer groups, optionally after snapshotting them.",
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
        description = "Where the offsets are moved to"
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
        name = "Approved",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Approved\")].status",
        description = "Manual approval: whether the plan in status was approved"
    ),
    printcolumn(
        name = "Plan",
        type_ = "string",
        json_path = ".status.planHash",
        priority = 1,
        description = "Hash of the plan to approve (kafka.oso.sh/approve annotation)"
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
#[x_kube(
    validation = Rule::new("(self.strategy == 'Timestamp') == has(self.timestamp)")
        .message("strategy Timestamp needs timestamp, and only strategy Timestamp may set it"),
    validation = Rule::new("(self.strategy == 'Offset') == (has(self.offset) || has(self.partitionOffsets))")
        .message("strategy Offset needs offset, partitionOffsets or both, and only strategy Offset may set them"),
    validation = Rule::new("(self.strategy == 'HeaderBased') == has(self.headerBased)")
        .message("strategy HeaderBased needs headerBased, and only strategy HeaderBased may set it"),
    validation = Rule::new("(self.strategy == 'FromMapping') == has(self.fromMapping)")
        .message("strategy FromMapping needs fromMapping, and only strategy FromMapping may set it"),
    validation = Rule::new("(self.strategy == 'ShiftBy') == has(self.shiftBy)")
        .message("strategy ShiftBy needs shiftBy, and only strategy ShiftBy may set it"),
    validation = Rule::new("(self.strategy == 'ByDuration') == has(self.byDuration)")
        .message("strategy ByDuration needs byDuration, and only strategy ByDuration may set it"),
)]
pub struct KafkaOffsetResetSpec {
    /// The Kafka cluster whose consumer groups are reset.
    pub kafka_cluster: KafkaClusterSpec,
    /// Consumer group ids to reset, at least one. Their consumers must be stopped: Kafka refuses
    /// offset commits to a group with active members.
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub consumer_groups: Vec<String>,
    /// The topics (and optionally partitions) whose offsets are reset. Absent or empty: every
    /// topic the group has committed offsets for. Only partitions with a committed offset are
    /// reset, except those named in `partitionOffsets`.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub topics: Option<Vec<OffsetResetTopic>>,
    /// Where the offsets are moved to. The strategies that need data read it from the member of
    /// the same name (`timestamp`, `offset`/`partitionOffsets`, `headerBased`, `fromMapping`,
    /// `shiftBy`, `byDuration`); the members of the other strategies must be absent.
    pub strategy: OffsetResetStrategy,
    /// Strategy Timestamp: RFC 3339 point in time, e.g. `2024-12-01T12:00:00Z`. Each partition
    /// moves to its first record with a timestamp at or after it; to the log end when no record is
    /// that recent.
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
    /// Strategy Offset: absolute offset for every scoped partition, clamped to the partition's
    /// [log start, log end] range. Partitions listed in `partitionOffsets` use their own offset.
    #[schemars(range(min = 0))]
    pub offset: Option<i64>,
    /// Strategy Offset: absolute offsets per partition, overriding `offset` for the partitions
    /// listed. Without `offset`, only the partitions listed are reset. Each is clamped to the
    /// partition's [log start, log end] range.
    #[schemars(
        length(min = 1),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["topic", "partition"])
    )]
    pub partition_offsets: Option<Vec<PartitionOffsetTarget>>,
    /// Strategy HeaderBased: find the target offsets from the original-offset headers that a
    /// restore writes into the restored records.
    pub header_based: Option<HeaderBasedReset>,
    /// Strategy FromMapping: where the offset mapping (source offset to restored offset, per
    /// group, topic and partition) is read from.
    pub from_mapping: Option<OffsetMappingSource>,
    /// Strategy ShiftBy: records to move each committed offset by; negative moves back (re-reads),
    /// positive skips ahead. The result is clamped to the partition's [log start, log end] range.
    pub shift_by: Option<i64>,
    /// Strategy ByDuration: ISO-8601 duration back from the time the reset runs, as
    /// `kafka-consumer-groups --by-duration` takes it (`PnDTnHnMn.nS`, e.g. `PT1H`, `P1DT12H`).
    /// Each partition moves to its first record at or after (now - duration).
    #[schemars(pattern(DURATION_PATTERN))]
    pub by_duration: Option<String>,
    /// Snapshot of the groups' current offsets taken before anything is committed, restorable
    /// with a KafkaOffsetRollback (operation Rollback, `snapshotFrom.offsetResetRef`). Default:
    /// enabled, stored in a ConfigMap named after this resource.
    #[serde(default = "default_snapshot")]
    pub snapshot: OffsetResetSnapshotSpec,
    /// Consumer groups reset concurrently, 1 to 1000 (default 10). Partitions of one group are
    /// always committed together.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: i32,
    /// Compute the full plan (every partition's current and new offset, reported in
    /// `status.results` with outcome Planned) without committing anything or taking a snapshot
    /// (default false).
    #[serde(default)]
    pub dry_run: bool,
    /// Keep resetting the other groups after one fails; the reset then ends PartiallyCompleted
    /// (default false: stop at the first failure, the groups not yet reset are reported Skipped).
    #[serde(default)]
    pub continue_on_error: bool,
    /// Retries, deadline and clean-up of the operation.
    pub execution: Option<ExecutionSpec>,
    /// Automatic (default): the reset runs as soon as it is accepted. Manual: the operator first
    /// computes the plan (what a dry run computes), writes it to `status.plan` with its
    /// `status.planHash`, sets phase PendingApproval and changes nothing until the annotation
    /// `kafka.oso.sh/approve: <planHash>` names the hash of the plan as it still is. Until then
    /// the spec may still be edited (a new plan is made).
    #[serde(default)]
    pub approval: Approval,
}

/// Whether a reset waits for a human to approve its plan.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Approval {
    /// Run as soon as accepted.
    #[default]
    Automatic,
    /// Plan, then wait for the annotation `kafka.oso.sh/approve: <planHash>`.
    Manual,
}

fn default_snapshot() -> OffsetResetSnapshotSpec {
    OffsetResetSnapshotSpec {
        enabled: true,
        snapshot_id: None,
        storage: None,
    }
}

fn default_parallelism() -> i32 {
    10
}

fn default_true() -> bool {
    true
}

/// A topic in the scope of a reset.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetResetTopic {
    /// Topic name.
    #[schemars(pattern(TOPIC_PATTERN))]
    pub name: String,
    /// Partition numbers to reset. Absent or empty: every partition of the topic the group has a
    /// committed offset for.
    #[schemars(inner(range(min = 0)))]
    pub partitions: Option<Vec<i32>>,
}

/// Where the committed offsets are moved to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OffsetResetStrategy {
    /// The earliest offset still in the log (log start offset).
    Earliest,
    /// The log end offset: the group skips everything not yet consumed.
    Latest,
    /// The first offset whose record timestamp is at or after `timestamp`.
    Timestamp,
    /// The absolute offsets `offset` and/or `partitionOffsets`.
    Offset,
    /// The offsets found through the original-offset headers of restored records (`headerBased`).
    HeaderBased,
    /// The offsets of an offset mapping written by a restore (`fromMapping`).
    FromMapping,
    /// The current committed offset moved by `shiftBy` records.
    ShiftBy,
    /// The first offset at or after now minus `byDuration`.
    ByDuration,
    /// Delete the group's committed offsets for the scoped partitions (OffsetDelete); consumers
    /// then start from their `auto.offset.reset` policy.
    DeleteOffsets,
}

/// A target offset for one partition.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOffsetTarget {
    /// Topic name.
    #[schemars(pattern(TOPIC_PATTERN))]
    pub topic: String,
    /// Partition number.
    #[schemars(range(min = 0))]
    pub partition: i32,
    /// Absolute offset to commit.
    #[schemars(range(min = 0))]
    pub offset: i64,
}

/// Options of strategy HeaderBased.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderBasedReset {
    /// Id of the source cluster stamped into the headers of the backed-up records (the
    /// KafkaBackup's source cluster id); records from other sources are ignored.
    #[schemars(length(min = 1))]
    pub source_cluster: String,
    /// Search every partition of a topic instead of only the partition with the same number; needed
    /// when the partition count changed between backup and restore (repartitioned restore). Slower
    /// (default false).
    #[serde(default)]
    pub scan_all_partitions: bool,
}

/// Where an offset mapping is read from: exactly one of `configMapKeyRef`, `storage` + `path`
/// and `restoreRef`. The mapping is JSON, either the `{"groups": {group: {topic: {partition:
/// offset}}}}` form or the offset-mapping report a restore writes.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.configMapKeyRef), has(self.storage), has(self.restoreRef)].filter(x, x).size() == 1")
        .message("fromMapping needs exactly one of configMapKeyRef, storage (with path) and restoreRef"),
    validation = Rule::new("has(self.storage) == has(self.path)")
        .message("fromMapping.path goes with fromMapping.storage: the file's path in that storage location"),
    validation = Rule::new("!has(self.storage) || self.storage.type != 'ConfigMap'")
        .message("a mapping kept in a ConfigMap is named by fromMapping.configMapKeyRef, not fromMapping.storage"),
)]
pub struct OffsetMappingSource {
    /// A key of a ConfigMap in this namespace holding the mapping JSON.
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
    /// A storage location holding the mapping file at `path`.
    pub storage: Option<StorageSpec>,
    /// Path of the mapping file in `storage`, relative to its prefix (or PVC sub-path), e.g.
    /// `backup-20241201-120000/offset-mapping.json`.
    #[schemars(length(min = 1), pattern(r"^[^/]"))]
    pub path: Option<String>,
    /// A KafkaRestore in this namespace: the mapping its status points to is used.
    pub restore_ref: Option<SameNamespaceRef>,
}

/// A reference by name to a resource in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SameNamespaceRef {
    /// Name of the resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The snapshot of the groups' offsets taken before the reset commits anything.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.enabled || (!has(self.snapshotId) && !has(self.storage))")
        .message("snapshot.snapshotId and snapshot.storage need snapshot.enabled true"),
)]
pub struct OffsetResetSnapshotSpec {
    /// Take the snapshot (default true). Skipped in a dry run.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Id of the snapshot. Empty: generated as `<metadata.name>-<UTC YYYYMMDD-HHMMSS>` (shortened
    /// to fit). The id used is reported in `status.snapshot.snapshotId`.
    #[schemars(pattern(SNAPSHOT_ID_PATTERN))]
    pub snapshot_id: Option<String>,
    /// Where the snapshot is stored, as `<snapshotId>.json`. Default: a ConfigMap in this
    /// namespace with the same name as this KafkaOffsetReset (created when missing; a ConfigMap
    /// holds at most 1 MiB, so use object storage for many groups); with `run -f`, which has no
    /// Kubernetes API, the embedded default location (`--catalog-dir`).
    pub storage: Option<StorageSpec>,
}

/// Observed state of a KafkaOffsetReset, written by the operator.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaOffsetResetStatus {
    /// Lifecycle phase: Pending, Running, Completed, PartiallyCompleted (some groups failed with
    /// continueOnError) or Failed.
    pub phase: Option<Phase>,
    /// Human-readable summary of the current state or the failure.
    pub message: Option<String>,
    /// When the reset started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the reset finished, successfully or not (RFC 3339).
    pub completion_time: Option<Time>,
    /// Consumer groups in scope.
    pub groups_total: Option<i32>,
    /// Consumer groups whose offsets were committed (in a dry run: planned).
    pub groups_reset: Option<i32>,
    /// Consumer groups whose reset failed.
    pub groups_failed: Option<i32>,
    /// The pre-reset snapshot, when one was taken.
    pub snapshot: Option<OffsetResetSnapshotStatus>,
    /// Outcome per consumer group.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["group"]))]
    pub results: Option<Vec<GroupResetResult>>,
    /// With `approval: Manual`: the plan waiting for approval (or the one that was approved), per
    /// group and partition the current and the target offset.
    pub plan: Option<OffsetResetPlan>,
    /// With `approval: Manual`: SHA-256 (hex) of the whole plan's canonical JSON; approving means
    /// annotating the resource with `kafka.oso.sh/approve: <planHash>`.
    pub plan_hash: Option<String>,
    /// With `approval: Manual`: the `kafka.oso.sh/approve` value refused last (it named no plan
    /// or a plan the cluster has moved away from); the operator looks again when it changes.
    pub refused_approval: Option<String>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Where the pre-reset snapshot was stored.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetResetSnapshotStatus {
    /// Id of the snapshot, usable as a KafkaOffsetRollback `snapshotId`.
    pub snapshot_id: Option<String>,
    /// Location of the snapshot: an object URI (`s3://bucket/prefix/<id>.json`,
    /// `az://...`, `gs://...`), a path on a PVC (`pvc://<claim>/<path>`) or
    /// `configmap://<name>/<key>`.
    pub location: Option<String>,
}

/// The plan of a reset with `approval: Manual`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetResetPlan {
    /// One entry per consumer group in `spec.consumerGroups`, in that order.
    pub groups: Vec<GroupPlan>,
}

/// The planned change of one consumer group.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupPlan {
    /// Consumer group id.
    pub group: String,
    /// Why this group cannot be reset as things are (e.g. it has active members); absent when
    /// it can.
    pub error: Option<String>,
    /// Partitions in scope (the hash covers all of them).
    pub partitions_total: i32,
    /// Per partition the committed offset now (`previousOffset`) and the one to commit
    /// (`newOffset`), at most 100 entries per group.
    pub partitions: Vec<PartitionResetResult>,
}

/// The outcome of one consumer group.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupResetResult {
    /// Consumer group id.
    pub group: String,
    /// What happened to the group.
    pub outcome: GroupResetOutcome,
    /// Detail, e.g. the error, or why the group was skipped.
    pub message: Option<String>,
    /// Partitions whose offset was committed (in a dry run: would be).
    pub partitions_reset: Option<i32>,
    /// Per-partition detail, at most 100 entries per group.
    pub partitions: Option<Vec<PartitionResetResult>>,
}

/// What happened to a consumer group.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GroupResetOutcome {
    /// The new offsets were committed (or deleted).
    Succeeded,
    /// The reset of this group failed; see `message`.
    Failed,
    /// Not reset: already at the target, no committed offsets in scope, or stopped after another
    /// group failed.
    Skipped,
    /// Dry run: the offsets were computed, not committed.
    Planned,
}

/// The change of one partition's committed offset.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionResetResult {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
    /// Committed offset before the reset; absent when the group had none. In `status.plan`: the
    /// committed offset now.
    pub previous_offset: Option<i64>,
    /// Committed offset after the reset; absent for DeleteOffsets. In `status.plan`: the offset
    /// to commit.
    pub new_offset: Option<i64>,
    /// The computed target lay outside [log start, log end] and was clamped into it.
    pub clamped: Option<bool>,
}

#[cfg(test)]
mod tests {
    use kube::core::{CustomResourceExt, cel::Validator};
    use serde_json::{Value, json};

    use super::*;

    fn schema() -> Value {
        let crd = KafkaOffsetReset::crd();
        serde_json::to_value(&crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema).unwrap()
    }

    fn object(spec: Value) -> Value {
        json!({
            "apiVersion": "kafka.oso.sh/v1beta1",
            "kind": "KafkaOffsetReset",
            "metadata": {"name": "r"},
            "spec": spec,
        })
    }

    fn errors(spec: Value) -> String {
        match Validator::new().validate(&schema(), &object(spec), None) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn base(extra: Value) -> Value {
        let mut spec = json!({
            "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
            "consumerGroups": ["g"],
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    }

    #[test]
    fn every_strategy_needs_its_member_and_only_it() {
        let members = [
            ("Timestamp", "timestamp", json!("2024-12-01T12:00:00Z")),
            ("Offset", "offset", json!(5)),
            ("HeaderBased", "headerBased", json!({"sourceCluster": "prod"})),
            (
                "FromMapping",
                "fromMapping",
                json!({"configMapKeyRef": {"name": "m", "key": "k"}}),
            ),
            ("ShiftBy", "shiftBy", json!(-10)),
            ("ByDuration", "byDuration", json!("PT1H")),
        ];
        for (strategy, member, value) in &members {
            assert_eq!(
                errors(base(json!({"strategy": strategy, *member: value}))),
                "",
                "{strategy}"
            );
            let missing = errors(base(json!({"strategy": strategy})));
            assert!(
                missing.contains(&format!("strategy {strategy} needs")),
                "{missing}"
            );
            let foreign = errors(base(json!({"strategy": "Earliest", *member: value})));
            assert!(
                foreign.contains(&format!("only strategy {strategy} may")),
                "{foreign}"
            );
        }
        for strategy in ["Earliest", "Latest", "DeleteOffsets"] {
            assert_eq!(errors(base(json!({"strategy": strategy}))), "", "{strategy}");
        }
    }

    #[test]
    fn offset_strategy_accepts_partition_offsets_alone() {
        let spec = base(json!({
            "strategy": "Offset",
            "partitionOffsets": [{"topic": "orders", "partition": 0, "offset": 10}],
        }));
        assert_eq!(errors(spec), "");
    }

    #[test]
    fn mapping_source_is_exactly_one() {
        let both = base(json!({"strategy": "FromMapping", "fromMapping": {
            "configMapKeyRef": {"name": "m", "key": "k"}, "restoreRef": {"name": "r"}}}));
        assert!(errors(both).contains("exactly one of configMapKeyRef"));
        let no_path = base(json!({"strategy": "FromMapping", "fromMapping": {
            "storage": {"type": "S3", "s3": {"bucket": "b"}}}}));
        assert!(errors(no_path).contains("fromMapping.path goes with"));
        let ok = base(json!({"strategy": "FromMapping", "fromMapping": {
            "storage": {"type": "S3", "s3": {"bucket": "b"}}, "path": "x/offset-mapping.json"}}));
        assert_eq!(errors(ok), "");
    }

    #[test]
    fn snapshot_options_need_an_enabled_snapshot() {
        let spec = base(json!({"strategy": "Latest", "snapshot": {"enabled": false, "snapshotId": "s"}}));
        assert!(errors(spec).contains("need snapshot.enabled true"));
        // The default (enabled) is applied before the rule runs, as the apiserver does.
        let spec = base(json!({"strategy": "Latest", "snapshot": {"snapshotId": "s"}}));
        assert_eq!(errors(spec), "");
    }

    #[test]
    fn defaults_fill_the_snapshot_block() {
        let spec: KafkaOffsetResetSpec =
            serde_json::from_value(base(json!({"strategy": "Earliest"}))).unwrap();
        assert!(spec.snapshot.enabled);
        assert_eq!(spec.parallelism, 10);
        let schema = schema();
        let props = &schema["properties"]["spec"]["properties"];
        assert_eq!(props["snapshot"]["default"], json!({"enabled": true}));
        assert_eq!(props["parallelism"]["default"], json!(10));
    }

    #[test]
    fn duration_pattern_matches_the_kafka_tool_subset() {
        let re = pattern_matcher(DURATION_PATTERN);
        for ok in [
            "PT1H",
            "P1D",
            "P1DT12H",
            "PT30M",
            "PT0.5S",
            "PT1H30M15S",
            "P2DT5S",
        ] {
            assert!(re(ok), "{ok}");
        }
        for bad in ["P", "PT", "P1DT", "1H", "PT1h", "P1W", "P1Y", "-PT1H", "PT1.S"] {
            assert!(!re(bad), "{bad}");
        }
    }

    /// Matches through the jsonschema crate (the same engine the schema tests use).
    fn pattern_matcher(pattern: &str) -> impl Fn(&str) -> bool {
        let validator = jsonschema::validator_for(&json!({"type": "string", "pattern": pattern})).unwrap();
        move |s| validator.is_valid(&json!(s))
    }
}
