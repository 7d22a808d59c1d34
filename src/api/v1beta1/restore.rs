//! KafkaRestore v1beta1: writes the records of a backup set back into a Kafka cluster, optionally
//! up to a point in time, under other topic names or partition counts, and moves consumer groups
//! to the matching offsets afterwards.
//!
//! Also the home of [`BackupRef`], shared with KafkaBackupValidation.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::backup::{BACKUP_ID_PATTERN, TOPIC_GLOB_PATTERN};
use super::{ExecutionSpec, KafkaClusterSpec, Phase, RateLimitingSpec, StorageSpec};

/// Pattern of an offset-snapshot id, the same as KafkaOffsetReset and KafkaOffsetRollback use:
/// one object-key segment of at most 248 characters (`<id>.json` stays a valid ConfigMap key).
const SNAPSHOT_ID_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,247}$";

/// Restores a backup set into a Kafka cluster: every topic or a selection, optionally renamed,
/// repartitioned and cut at a point in time; then, optionally, moves consumer groups to the
/// offsets that match their position on the source. The restore runs once.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
// rustfmt splits the printer columns over lines, which clippy misreads as duplicated keys.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1beta1",
    kind = "KafkaRestore",
    namespaced,
    status = "KafkaRestoreStatus",
    shortname = "kr",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Restores a backup set into a Kafka cluster, optionally to a point in time, and repositions consumer groups.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Backup ID",
        type_ = "string",
        json_path = ".status.backupId",
        description = "Backup set restored"
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
    /// The backup set to restore.
    pub backup_ref: BackupRef,
    /// The Kafka cluster the records are written to.
    pub kafka_cluster: KafkaClusterSpec,
    /// Topics of the backup set to restore, by their name in the backup: exact names or globs
    /// (`*`, `?`). Absent or empty: every topic of the backup set.
    #[schemars(inner(pattern(TOPIC_GLOB_PATTERN)), extend("x-kubernetes-list-type" = "set"))]
    pub topics: Option<Vec<String>>,
    /// New names for restored topics: source topic name -> target topic name. Topics not listed
    /// keep their name.
    pub topic_mapping: Option<BTreeMap<String, String>>,
    /// New partition numbers: source partition number (as a string key) -> target partition
    /// number, for every restored topic that is not repartitioned. Partitions not listed keep their
    /// number.
    #[schemars(extend("additionalProperties" = {"type": "integer", "format": "int32", "minimum": 0}))]
    pub partition_mapping: Option<BTreeMap<String, i32>>,
    /// Topics restored with another partition count, keyed by target topic name: records are
    /// redistributed by key. Offsets of repartitioned topics cannot be translated, so their
    /// consumer groups are not reset.
    pub repartitioning: Option<BTreeMap<String, RepartitioningSpec>>,
    /// Point-in-time restore: only records whose timestamp lies in the window are restored.
    /// Absent: everything in the backup set.
    pub pitr: Option<RestorePitrSpec>,
    /// Create target topics that do not exist, with the partition count of the source (or of
    /// `repartitioning`). Absent: missing topics fail the restore.
    pub create_topics: Option<RestoreCreateTopicsSpec>,
    /// Delete the existing records of the target topics (DeleteRecords up to the high watermark)
    /// before restoring, so the topics hold exactly the restored data (default false).
    #[serde(default)]
    pub purge_topics: bool,
    /// Give every restored record the headers `x-original-offset`, `x-original-timestamp` and
    /// `x-source-partition` (and `x-source-cluster` when the backup recorded one), so consumers can
    /// see where it came from (default false: records are restored with their own headers only).
    #[serde(default)]
    pub include_original_offset_headers: bool,
    /// After the records are restored, move these consumer groups to the matching offsets of
    /// the restored topics. Absent: no group is changed (the offset mapping is still written, see
    /// `status.offsetMappingPath`, for a later KafkaOffsetReset).
    pub offset_reset: Option<RestoreOffsetResetSpec>,
    /// After the records are restored, commit the offsets of every consumer group in the backup's
    /// consumer-group snapshot (KafkaBackup `consumerGroupSnapshot`), translated to the restored
    /// offsets; groups named in `offsetReset` are left to it (default false).
    #[serde(default)]
    pub auto_consumer_groups: bool,
    /// Snapshot of consumer-group offsets taken before anything is changed, restorable with a
    /// KafkaOffsetRollback: every group with committed offsets on the target topics, plus the
    /// groups `offsetReset` and `autoConsumerGroups` move (recorded even when they have none).
    /// Taken whenever enabled, also when no group is moved. Absent: no snapshot.
    pub snapshot_before_restore: Option<SnapshotBeforeRestoreSpec>,
    /// How records are produced to the target cluster (default: batches of 1000, acks All,
    /// 30 s timeout).
    #[serde(default)]
    pub produce: ProduceSpec,
    /// Throughput limits and concurrency (default: no rate limits, 4 partitions at a time).
    #[serde(default)]
    pub rate_limiting: RateLimitingSpec,
    /// Check the restore without writing anything: the backup set, the selected topics and time
    /// window, the target topics and the consumer groups; the result is reported in the status
    /// (default false).
    #[serde(default)]
    pub dry_run: bool,
    /// Retries, deadline and clean-up. A retried restore continues after the segments already
    /// restored.
    pub execution: Option<ExecutionSpec>,
}

/// The backup set to read: where it lives, given directly (`storage` + `backupId`) or through a
/// KafkaBackup (`kafkaBackupRef`, optionally with `backupId`).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.storage) != has(self.kafkaBackupRef)")
        .message("backupRef needs exactly one of storage and kafkaBackupRef"),
    validation = Rule::new("!has(self.storage) || has(self.backupId)")
        .message("backupRef.storage needs backupRef.backupId: name the backup set to read"),
    validation = Rule::new("!has(self.storage) || self.storage.type != 'ConfigMap'")
        .message("backupRef.storage cannot be a ConfigMap: backups live in PVC, S3, Azure or GCS"),
)]
pub struct BackupRef {
    /// Id of the backup set (its directory in the storage). Required with `storage`; with
    /// `kafkaBackupRef` it defaults to that KafkaBackup's current set (`status.backupId`).
    #[schemars(pattern(BACKUP_ID_PATTERN))]
    pub backup_id: Option<String>,
    /// The storage location holding the backup set, for sets written elsewhere (another
    /// cluster, a deleted KafkaBackup). Not with `kafkaBackupRef`.
    pub storage: Option<StorageSpec>,
    /// A KafkaBackup whose storage (and, without `backupId`, current backup set) is used. Not
    /// with `storage`.
    pub kafka_backup_ref: Option<KafkaBackupRef>,
}

/// A reference to a KafkaBackup.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBackupRef {
    /// Name of the KafkaBackup.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the KafkaBackup (default: this resource's namespace). Another namespace is
    /// only allowed where the operator's policy permits cross-namespace references.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Redistribution of a topic's records over another number of partitions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepartitioningSpec {
    /// How records are assigned to the new partitions (default Murmur2).
    #[serde(default)]
    pub strategy: RepartitionStrategy,
    /// Partition count of the target topic, at least 1.
    #[schemars(range(min = 1))]
    pub target_partitions: i32,
}

/// How records are assigned to partitions when repartitioning.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RepartitionStrategy {
    /// Kafka's default partitioner: murmur2 hash of the key modulo the partition count, so
    /// records with the same key stay together; records without a key go round-robin.
    #[default]
    Murmur2,
    /// Round-robin over the partitions, ignoring keys.
    RoundRobin,
}

/// Time window of a point-in-time restore; record timestamps are compared, both ends inclusive.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.startTime) || has(self.endTime)")
        .message("pitr needs startTime, endTime or both"),
    validation = Rule::new("!has(self.startTime) || !has(self.endTime) || self.startTime <= self.endTime")
        .message("pitr.startTime must not be after pitr.endTime"),
)]
pub struct RestorePitrSpec {
    /// Restore only records at or after this time (RFC 3339, e.g. `2024-12-01T00:00:00Z`).
    #[schemars(extend("format" = "date-time"))]
    pub start_time: Option<String>,
    /// Restore only records at or before this time (RFC 3339), e.g. just before an incident.
    #[schemars(extend("format" = "date-time"))]
    pub end_time: Option<String>,
}

/// Creation of missing target topics.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreCreateTopicsSpec {
    /// Create the missing topics (default true when the block is present).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Replication factor of the created topics. Absent: the broker's
    /// `default.replication.factor`.
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: Option<i32>,
}

fn default_true() -> bool {
    true
}

/// Consumer groups moved to the restored offsets once the records are restored.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(self.strategy == 'Timestamp') == has(self.timestamp)")
        .message("offsetReset strategy Timestamp needs offsetReset.timestamp, and only strategy Timestamp may set it"),
    validation = Rule::new("!has(self.sourceCluster) || self.strategy == 'HeaderBased'")
        .message("offsetReset.sourceCluster is only allowed with strategy HeaderBased"),
)]
pub struct RestoreOffsetResetSpec {
    /// Consumer group ids to move, at least one. Their consumers must be stopped: Kafka refuses
    /// offset commits to a group with active members.
    #[schemars(length(min = 1), inner(length(min = 1)), extend("x-kubernetes-list-type" = "set"))]
    pub consumer_groups: Vec<String>,
    /// Where the groups are moved to.
    pub strategy: RestoreOffsetResetStrategy,
    /// Strategy HeaderBased: id of the cluster the backup was taken from (KafkaBackup
    /// `sourceClusterId`); the restore fails instead of applying offsets of another cluster.
    #[schemars(length(min = 1))]
    pub source_cluster: Option<String>,
    /// Strategy Timestamp: RFC 3339 point in time; each partition moves to its first restored
    /// record at or after it, or to the end when there is none.
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
}

/// Where a restore moves consumer groups to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RestoreOffsetResetStrategy {
    /// Continue exactly where each group was on the source: its committed source offsets (from
    /// the backup's consumer-group snapshot) are translated through the source offsets stored with
    /// every backed-up record into offsets of the restored topics, clamped to their end.
    HeaderBased,
    /// The first restored record at or after `timestamp`.
    Timestamp,
    /// The start of the restored topics: the groups re-read everything.
    Earliest,
    /// The end of the restored topics: the groups skip everything restored.
    Latest,
}

/// The snapshot of consumer-group offsets taken before the restore changes anything.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotBeforeRestoreSpec {
    /// Take the snapshot (default true when the block is present). A dry run stores none and
    /// says in its plan which groups it would hold.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Id of the snapshot. Absent: `<metadata.name>-<UTC YYYYMMDD-HHMMSS>` (shortened to fit).
    /// The id used is reported in `status.snapshot.snapshotId`.
    #[schemars(pattern(SNAPSHOT_ID_PATTERN))]
    pub snapshot_id: Option<String>,
    /// Where the snapshot is stored, as `<snapshotId>.json`. Default: a ConfigMap in this
    /// namespace with the same name as this KafkaRestore (created when missing; at most 1 MiB);
    /// with `run -f`, which has no Kubernetes API, the embedded default location
    /// (`--catalog-dir`).
    pub storage: Option<StorageSpec>,
    /// Hours after which the operator deletes the snapshot. Absent: kept until deleted.
    #[schemars(range(min = 1))]
    pub retention_hours: Option<i32>,
}

/// How records are produced to the target cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProduceSpec {
    /// Records per produce request and partition (default 1000, 1 to 100000).
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 100_000))]
    pub batch_size: i32,
    /// Acknowledgement the brokers give before a batch counts as written (default All).
    #[serde(default)]
    pub acks: ProduceAcks,
    /// Milliseconds the broker may take to acknowledge a produce request (default 30000, at
    /// least 1).
    #[serde(default = "default_produce_timeout_ms")]
    #[schemars(range(min = 1))]
    pub timeout_ms: i32,
}

impl Default for ProduceSpec {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            acks: ProduceAcks::default(),
            timeout_ms: default_produce_timeout_ms(),
        }
    }
}

fn default_batch_size() -> i32 {
    1000
}

fn default_produce_timeout_ms() -> i32 {
    30_000
}

/// Kafka's producer `acks`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ProduceAcks {
    /// All in-sync replicas (`acks=all`, -1): no acknowledged record is lost.
    #[default]
    All,
    /// The partition leader only (`acks=1`).
    Leader,
    /// No acknowledgement (`acks=0`): fastest, records can be lost unnoticed.
    None,
}

/// Observed state of a KafkaRestore, written by the operator.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRestoreStatus {
    /// Lifecycle phase: Pending, Running, Completed, PartiallyCompleted (some topics failed) or
    /// Failed.
    pub phase: Option<Phase>,
    /// Human-readable summary of the current state or the failure.
    pub message: Option<String>,
    /// Id of the backup set being restored (resolved from `kafkaBackupRef` when needed).
    pub backup_id: Option<String>,
    /// When the restore started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the restore finished, successfully or not (RFC 3339).
    pub completion_time: Option<Time>,
    /// Share of the selected records restored, 0 to 100, updated while the restore runs.
    pub progress_percent: Option<f64>,
    /// Records written to the target cluster (so far, while the restore runs; 0 in a dry run).
    pub records_restored: Option<i64>,
    /// Bytes of the records written: keys, values and headers (names and values), the data the
    /// records carry in Kafka, as KafkaBackup counts them (`lastRun.bytes`); tracking headers
    /// the restore adds are not counted.
    pub bytes_restored: Option<i64>,
    /// Backup segments read.
    pub segments_processed: Option<i64>,
    /// Records restored per topic (so far, while the restore runs).
    pub restored_topics: Option<Vec<RestoredTopic>>,
    /// Topic being restored now (several, comma-separated, when they are restored at once);
    /// absent once the records are written.
    pub current_topic: Option<String>,
    /// Throughput: since the previous progress report while records are written, the whole
    /// restore's average at the end.
    pub throughput: Option<RestoreThroughput>,
    /// Estimated seconds until the records are restored, at the recent throughput (0 at the end).
    pub eta_seconds: Option<i64>,
    /// Outcome of `offsetReset`.
    pub offset_reset: Option<RestoreOffsetResetStatus>,
    /// The snapshot taken by `snapshotBeforeRestore`.
    pub snapshot: Option<RestoreSnapshotStatus>,
    /// Location of the offset mapping the restore wrote (source offset -> restored offset, per
    /// topic and partition): an object URI such as `s3://bucket/prefix/<backupId>/restores/...`;
    /// a KafkaOffsetReset with strategy FromMapping can use it (`fromMapping.restoreRef`).
    pub offset_mapping_path: Option<String>,
    /// What the restore would do, set by a dry run (`dryRun: true`), which writes nothing.
    pub plan: Option<RestorePlan>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// What a dry run found the restore would do. Records are counted by reading every selected
/// segment (checksums verified) and applying the PITR window, so the figures are exact.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlan {
    /// Backup segments that would be read: those whose time range overlaps the PITR window.
    pub segments: Option<i64>,
    /// Bytes of those segments in storage (compressed).
    pub stored_bytes: Option<i64>,
    /// Records that would be written (inside the PITR window).
    pub records: Option<i64>,
    /// Bytes of record data that would be written: keys, values and headers, counted as
    /// `bytesRestored` counts them.
    pub bytes: Option<i64>,
    /// Timestamp of the earliest record that would be written (RFC 3339).
    pub first_record_time: Option<Time>,
    /// Timestamp of the latest record that would be written (RFC 3339).
    pub last_record_time: Option<Time>,
    /// Per topic of the backup set: where it goes and what it holds.
    pub topics: Option<Vec<PlannedTopic>>,
    /// Target topics that would be created (`createTopics`).
    pub topics_to_create: Option<Vec<PlannedTopicCreation>>,
    /// Target topics whose records would be deleted first (`purgeTopics`).
    pub topics_to_purge: Option<Vec<String>>,
    /// Consumer-group offsets that would be committed after the records are written
    /// (`offsetReset`, `autoConsumerGroups`).
    pub group_offsets: Option<Vec<PlannedGroupOffsets>>,
    /// What the restore would leave out, e.g. groups of repartitioned topics.
    pub notes: Option<Vec<String>>,
}

/// One topic of a [`RestorePlan`].
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTopic {
    /// Name in the backup set.
    pub name: String,
    /// Name in the target cluster (`topicMapping`).
    pub target_name: String,
    /// Partitions of the target topic the records are routed to.
    pub target_partitions: Option<i32>,
    /// Backup segments of the topic that would be read.
    pub segments: Option<i64>,
    /// Records that would be written into it.
    pub records: Option<i64>,
    /// Bytes of the records that would be written into it, counted as `bytesRestored` counts
    /// them.
    pub bytes: Option<i64>,
}

/// A topic a [`RestorePlan`] would create.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTopicCreation {
    /// Topic name.
    pub name: String,
    /// Partition count (the source's, or `repartitioning.targetPartitions`).
    pub partitions: i32,
    /// Replication factor (`createTopics.replicationFactor`); absent: the broker's default.
    pub replication_factor: Option<i32>,
    /// Topic configuration recorded with the source topic.
    pub configs: Option<BTreeMap<String, String>>,
}

/// The offsets a [`RestorePlan`] would commit for one consumer group.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedGroupOffsets {
    /// Consumer group.
    pub group: String,
    /// Offsets per target topic partition.
    pub offsets: Option<Vec<PlannedOffset>>,
    /// Why the group would not be moved, when it would not.
    pub error: Option<String>,
}

/// One committed offset of a [`PlannedGroupOffsets`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedOffset {
    /// Target topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset the group would read next.
    pub offset: i64,
}

/// Records restored into one topic.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredTopic {
    /// Topic name in the backup set.
    pub name: String,
    /// Topic name in the target cluster, when mapped to another name.
    pub target_name: Option<String>,
    /// Records restored into it (0 in a dry run).
    pub records: Option<i64>,
}

/// Throughput of a restore.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreThroughput {
    /// Records per second.
    pub records_per_second: Option<f64>,
    /// Bytes (as `bytesRestored` counts them) per second.
    pub bytes_per_second: Option<f64>,
}

/// Outcome of the consumer-group reset after a restore.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOffsetResetStatus {
    /// Phase of the reset: Pending, Running, Completed, PartiallyCompleted or Failed.
    pub phase: Option<Phase>,
    /// Consumer groups whose offsets were committed.
    pub groups_reset: Option<Vec<String>>,
    /// Consumer groups whose reset failed.
    pub groups_failed: Option<Vec<String>>,
    /// Detail, e.g. why groups failed.
    pub message: Option<String>,
}

/// The pre-restore snapshot of consumer-group offsets.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSnapshotStatus {
    /// Id of the snapshot, usable as a KafkaOffsetRollback `snapshotId`.
    pub snapshot_id: Option<String>,
    /// Location of the snapshot: an object URI (`s3://...`, `az://...`, `gs://...`), a path on a
    /// PVC (`pvc://<claim>/<path>`) or `configmap://<name>/<key>`.
    pub location: Option<String>,
    /// When the snapshot was taken (RFC 3339).
    pub snapshot_time: Option<Time>,
    /// When the operator deletes the snapshot (RFC 3339), with `retentionHours`.
    pub expiration_time: Option<Time>,
}

#[cfg(test)]
mod tests {
    use kube::core::{CustomResourceExt, cel::Validator};
    use serde_json::{Value, json};

    use super::*;

    fn errors(extra: Value) -> String {
        let crd = KafkaRestore::crd();
        let schema =
            serde_json::to_value(&crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema).unwrap();
        let mut spec = json!({
            "backupRef": {"backupId": "orders", "storage": {"type": "S3", "s3": {"bucket": "b"}}},
            "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let object = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore",
            "metadata": {"name": "r"}, "spec": spec});
        match Validator::new().validate(&schema, &object, None) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn backup_ref_is_a_union() {
        assert_eq!(errors(json!({})), "");
        assert_eq!(
            errors(json!({"backupRef": {"kafkaBackupRef": {"name": "nightly"}}})),
            ""
        );
        let both = errors(
            json!({"backupRef": {"backupId": "x", "storage": {"type": "S3", "s3": {"bucket": "b"}},
            "kafkaBackupRef": {"name": "nightly"}}}),
        );
        assert!(
            both.contains("exactly one of storage and kafkaBackupRef"),
            "{both}"
        );
        assert!(errors(json!({"backupRef": {"backupId": "x"}})).contains("exactly one of"));
        let no_id = errors(json!({"backupRef": {"storage": {"type": "S3", "s3": {"bucket": "b"}}}}));
        assert!(no_id.contains("needs backupRef.backupId"), "{no_id}");
    }

    #[test]
    fn pitr_window_is_ordered() {
        assert_eq!(errors(json!({"pitr": {"endTime": "2024-12-01T10:30:00Z"}})), "");
        assert_eq!(
            errors(json!({"pitr": {"startTime": "2024-12-01T10:00:00Z", "endTime": "2024-12-01T10:00:00Z"}})),
            ""
        );
        // 11:00+02:00 is 09:00Z: before the start.
        let reversed = errors(
            json!({"pitr": {"startTime": "2024-12-01T10:00:00Z", "endTime": "2024-12-01T11:00:00+02:00"}}),
        );
        assert!(reversed.contains("must not be after"), "{reversed}");
        assert!(errors(json!({"pitr": {}})).contains("startTime, endTime or both"));
    }

    #[test]
    fn offset_reset_members_follow_the_strategy() {
        let ok = json!({"offsetReset": {"consumerGroups": ["g"], "strategy": "HeaderBased", "sourceCluster": "prod"}});
        assert_eq!(errors(ok), "");
        let ok = json!({"offsetReset": {"consumerGroups": ["g"], "strategy": "Timestamp", "timestamp": "2024-12-01T12:00:00Z"}});
        assert_eq!(errors(ok), "");
        let missing = errors(json!({"offsetReset": {"consumerGroups": ["g"], "strategy": "Timestamp"}}));
        assert!(missing.contains("needs offsetReset.timestamp"), "{missing}");
        let foreign = errors(
            json!({"offsetReset": {"consumerGroups": ["g"], "strategy": "Latest", "sourceCluster": "p"}}),
        );
        assert!(
            foreign.contains("only allowed with strategy HeaderBased"),
            "{foreign}"
        );
    }

    #[test]
    fn produce_defaults_are_filled() {
        let spec: KafkaRestoreSpec = serde_json::from_value(json!({
            "backupRef": {"kafkaBackupRef": {"name": "nightly"}},
            "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
        }))
        .unwrap();
        assert_eq!(spec.produce, ProduceSpec::default());
        assert_eq!(spec.produce.acks, ProduceAcks::All);
        assert_eq!(spec.rate_limiting.max_concurrent_partitions, 4);
        assert!(!spec.purge_topics && !spec.include_original_offset_headers);
    }
}
