//! KafkaBackup v1beta1: copies Kafka topics into a backup set in object storage, once, on a
//! schedule or continuously; runs with the same backup id continue the set incrementally.
//!
//! Also the home of the blocks shared with KafkaRestore and KafkaBackupValidation:
//! [`RateLimitingSpec`], [`RunPhase`] and the cron rule [`SCHEDULE_RULE`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{ExecutionSpec, KafkaClusterSpec, StorageSpec};

/// Pattern of a backup id: one object-key segment, as long as a Kubernetes object name.
pub(crate) const BACKUP_ID_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$";

/// Pattern of a topic name or glob: Kafka's topic characters plus `*` and `?`.
pub(crate) const TOPIC_GLOB_PATTERN: &str = r"^[A-Za-z0-9._*?-]{1,249}$";

/// CEL rule on a struct with an optional `schedule`: 6 or 7 space-separated cron fields.
pub(crate) const SCHEDULE_RULE: &str =
    "!has(self.schedule) || self.schedule.matches('^ *[^ ]+( +[^ ]+){5,6} *$')";

/// Message of [`SCHEDULE_RULE`].
pub(crate) const SCHEDULE_MESSAGE: &str = "schedule must be a cron expression with 6 or 7 fields, seconds first \
     (sec min hour day-of-month month day-of-week [year])";

/// Backs up Kafka topics into a backup set: once (until caught up, or up to the offsets current
/// when the run starts), on a cron schedule, or continuously. The set lives in `storage` under
/// `backupId`; every run with the same id continues it from where the previous run stopped.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
// rustfmt splits the printer columns over lines, which clippy misreads as duplicated keys.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1beta1",
    kind = "KafkaBackup",
    namespaced,
    status = "KafkaBackupStatus",
    shortname = "kb",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Backs up Kafka topics to object storage, once, on a schedule or continuously.",
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
        description = "Backup set written to"
    ),
    printcolumn(
        name = "Last Backup",
        type_ = "date",
        json_path = ".status.lastBackupTime",
        description = "Completion of the last successful run"
    ),
    printcolumn(
        name = "Records",
        type_ = "integer",
        json_path = ".status.progress.records",
        description = "Records backed up by the current or last run"
    ),
    printcolumn(
        name = "Next",
        type_ = "date",
        json_path = ".status.nextScheduleTime",
        description = "Next scheduled run"
    ),
    printcolumn(
        name = "Resumable",
        type_ = "boolean",
        json_path = ".status.resumable",
        priority = 1,
        description = "An interrupted run can resume from its checkpoint"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.continuous) && self.continuous && has(self.stopAtCurrentOffsets) && self.stopAtCurrentOffsets)")
        .message("continuous and stopAtCurrentOffsets cannot both be true: a continuous backup never stops"),
    validation = Rule::new("!(has(self.continuous) && self.continuous && has(self.schedule))")
        .message("schedule and continuous cannot be combined: a continuous backup never finishes, so no later run could start"),
    validation = Rule::new("!has(self.compressionLevel) || !has(self.compression) || self.compression == 'Zstd'")
        .message("compressionLevel is only allowed with compression Zstd"),
    validation = Rule::new("self.storage.type != 'ConfigMap'")
        .message("storage.type ConfigMap cannot hold backups: use PVC, S3, Azure or GCS"),
    validation = Rule::new("!has(self.memoryBudgetBytes) || self.memoryBudgetBytes >= (has(self.segmentMaxBytes) ? self.segmentMaxBytes : 134217728)")
        .message("memoryBudgetBytes must be at least segmentMaxBytes: one open segment has to fit in the budget"),
    validation = Rule::new(SCHEDULE_RULE).message(SCHEDULE_MESSAGE),
)]
pub struct KafkaBackupSpec {
    /// The Kafka cluster whose topics are backed up.
    pub kafka_cluster: KafkaClusterSpec,
    /// Topics to back up, at least one: exact names or globs where `*` matches any run of
    /// characters and `?` one character (e.g. `orders-*`). Internal topics (names starting with
    /// `__`, such as `__consumer_offsets`) are only backed up when named exactly, never through a
    /// glob. An exact name that does not exist fails the run; a glob matching nothing does not.
    #[schemars(length(min = 1), inner(pattern(TOPIC_GLOB_PATTERN)), extend("x-kubernetes-list-type" = "set"))]
    pub topics: Vec<String>,
    /// Names or globs (`*`, `?`) of topics to leave out of the selection made by `topics`.
    #[schemars(inner(pattern(TOPIC_GLOB_PATTERN)), extend("x-kubernetes-list-type" = "set"))]
    pub exclude_topics: Option<Vec<String>>,
    /// Where the backup set is written, under `<prefix>/<backupId>/`. A PVC, S3, Azure or GCS
    /// location; ConfigMap storage cannot hold backups.
    pub storage: StorageSpec,
    /// Id of the backup set: a path segment in `storage` (letters, digits, `.`, `_`, `-`).
    /// Default: the resource name. Runs with the same id continue the set incrementally from the
    /// offsets the previous run stored; a new id starts a new, full set.
    #[schemars(pattern(BACKUP_ID_PATTERN))]
    pub backup_id: Option<String>,
    /// Compression of the segments (default Zstd).
    #[serde(default)]
    pub compression: Compression,
    /// Zstd level, 1 (fastest) to 22 (smallest); default 3. Only with compression Zstd.
    #[schemars(range(min = 1, max = 22))]
    pub compression_level: Option<i32>,
    /// Uncompressed bytes after which a partition's open segment is sealed and uploaded
    /// (default 134217728 = 128 MiB; 1 MiB to 1 GiB). Each partition in progress holds up to this
    /// much in memory.
    #[serde(default = "default_segment_max_bytes")]
    #[schemars(range(min = 1_048_576, max = 1_073_741_824))]
    pub segment_max_bytes: i64,
    /// Milliseconds after which an open segment is sealed and uploaded even if not full
    /// (default 60000, at least 1000). Bounds how far the stored data lags behind the topic.
    #[serde(default = "default_segment_max_interval_ms")]
    #[schemars(range(min = 1000))]
    pub segment_max_interval_ms: i64,
    /// Keep running after catching up, polling for new records and never finishing (streaming
    /// backup); default false. Not with `stopAtCurrentOffsets` or `schedule`.
    #[serde(default)]
    pub continuous: bool,
    /// Snapshot mode: capture every partition's high watermark when the run starts and finish
    /// once everything below it is stored, so a run has a defined end and does not chase the
    /// producers (default false). A scheduled backup always runs in this mode. Without it, a
    /// schedule and `continuous`, a run finishes when a poll finds no new records.
    #[serde(default)]
    pub stop_at_current_offsets: bool,
    /// Milliseconds to wait before fetching again from a partition that had no new records
    /// (default 100, 1 to 60000).
    #[serde(default = "default_poll_interval_ms")]
    #[schemars(range(min = 1, max = 60_000))]
    pub poll_interval_ms: i32,
    /// Also store each record's source offset and timestamp as headers `x-original-offset` and
    /// `x-original-timestamp` (and `x-source-cluster` with `sourceClusterId`) in the archived
    /// copy, for tools that read the backup without its index (default true). The source offset is
    /// kept in the segment format regardless; restored records carry these headers only when the
    /// KafkaRestore sets `includeOriginalOffsetHeaders`.
    #[serde(default = "default_true")]
    pub include_offset_headers: bool,
    /// Id of the source cluster, recorded in the backup set's manifest and (with
    /// `includeOffsetHeaders`) in the `x-source-cluster` header; a restore's HeaderBased offset
    /// reset checks it against `offsetReset.sourceCluster`. Absent: not recorded.
    #[schemars(length(min = 1, max = 255))]
    pub source_cluster_id: Option<String>,
    /// With every run, also store the committed offsets of the consumer groups that read the
    /// backed-up topics (`consumer-groups-snapshot.json`), so a restore can translate them
    /// (`autoConsumerGroups`); default false.
    #[serde(default)]
    pub consumer_group_snapshot: bool,
    /// Cron schedule in UTC, seconds first: 6 fields (`sec min hour day-of-month month
    /// day-of-week`) or 7 (plus year), e.g. `0 0 * * * *` for hourly. Each tick starts a run
    /// unless one is still running, and each run stops at the offsets current when it starts.
    /// A classic 5-field expression or a macro is refused, naming its 6-field form (v1alpha1
    /// accepts them and reads them in this form). Absent: the backup runs once (or, with
    /// `continuous`, without end).
    #[schemars(length(min = 1, max = 128))]
    pub schedule: Option<String>,
    /// Start no new runs, and cancel a running one after a final checkpoint; clearing it resumes
    /// (default false).
    #[serde(default)]
    pub suspend: bool,
    /// Progress checkpoints, kept in `storage` next to the backup set (default: enabled, every
    /// 30 s).
    #[serde(default)]
    pub checkpoint: BackupCheckpointSpec,
    /// Throughput limits and concurrency (default: no rate limits, 4 partitions at a time).
    #[serde(default)]
    pub rate_limiting: RateLimitingSpec,
    /// Upper bound, in bytes, of the record data this backup holds in memory over all its
    /// partitions (open segments plus segments being compressed and uploaded); when reached,
    /// fetching pauses until a segment is flushed. At least `segmentMaxBytes`. Absent:
    /// 2 x `segmentMaxBytes` x `rateLimiting.maxConcurrentPartitions`.
    #[schemars(range(min = 1_048_576))]
    pub memory_budget_bytes: Option<i64>,
    /// Deletion of old backup data after each successful run. Absent: nothing is deleted.
    pub retention: Option<BackupRetentionSpec>,
    /// Retries, deadline and clean-up of each run (`ttlSecondsAfterFinished` applies to one-shot
    /// backups only).
    pub execution: Option<ExecutionSpec>,
}

impl KafkaBackupSpec {
    /// Whether a run stops at the offsets current when it starts: `stopAtCurrentOffsets`, and
    /// every run of a scheduled backup that is not continuous (the v1.0.0 behaviour, part of
    /// the meaning of a schedule rather than a value written into the object, so that editing
    /// the schedule or `continuous` later never leaves a stale setting behind).
    pub fn stops_at_current_offsets(&self) -> bool {
        self.stop_at_current_offsets || (self.schedule.is_some() && !self.continuous)
    }
}

fn default_segment_max_bytes() -> i64 {
    134_217_728
}

fn default_segment_max_interval_ms() -> i64 {
    60_000
}

fn default_poll_interval_ms() -> i32 {
    100
}

fn default_true() -> bool {
    true
}

/// Compression of backup segments.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Compression {
    /// Zstandard, level `compressionLevel` (default 3): the best ratio.
    #[default]
    Zstd,
    /// LZ4: faster, larger.
    Lz4,
    /// Stored uncompressed.
    None,
}

/// Progress checkpoints of a backup.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupCheckpointSpec {
    /// Store the last backed-up offset of every partition every `intervalSeconds`, so an
    /// interrupted or cancelled run resumes there instead of at the start of the run
    /// (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between checkpoints (default 30, 1 to 3600).
    #[serde(default = "default_checkpoint_interval_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,
}

impl Default for BackupCheckpointSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: default_checkpoint_interval_seconds(),
        }
    }
}

fn default_checkpoint_interval_seconds() -> i32 {
    30
}

/// Throughput limits and concurrency of a backup or restore.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitingSpec {
    /// Maximum records per second over all partitions. Absent: unlimited.
    #[schemars(range(min = 1))]
    pub records_per_sec: Option<i64>,
    /// Maximum bytes (uncompressed record data) per second over all partitions. Absent:
    /// unlimited.
    #[schemars(range(min = 1))]
    pub bytes_per_sec: Option<i64>,
    /// Partitions processed at the same time (default 4, 1 to 1024).
    #[serde(default = "default_max_concurrent_partitions")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrent_partitions: i32,
}

impl Default for RateLimitingSpec {
    fn default() -> Self {
        Self {
            records_per_sec: None,
            bytes_per_sec: None,
            max_concurrent_partitions: default_max_concurrent_partitions(),
        }
    }
}

fn default_max_concurrent_partitions() -> i32 {
    4
}

/// Deletion of old backup data, run after each successful backup run.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.keepLast) || has(self.maxAgeDays)")
        .message("retention needs keepLast, maxAgeDays or both"),
)]
pub struct BackupRetentionSpec {
    /// Backup sets written by this KafkaBackup to keep, newest first; older sets are deleted
    /// whole. The current set (`backupId`) is always kept.
    #[schemars(range(min = 1))]
    pub keep_last: Option<i32>,
    /// Delete segments whose newest record is older than this many days, oldest first per
    /// partition (this shortens the restorable time window), and older backup sets of this
    /// KafkaBackup whose newest record is that old. The last segment of every partition of the
    /// current set is kept.
    #[schemars(range(min = 1))]
    pub max_age_days: Option<i32>,
    /// Only report what would be deleted, in `status.retention` (default false).
    #[serde(default)]
    pub dry_run: bool,
}

/// Lifecycle phase of a resource that runs once, on a schedule or continuously (KafkaBackup,
/// KafkaBackupValidation).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RunPhase {
    /// Accepted, no run started yet.
    #[default]
    Pending,
    /// A run is in progress (a continuous backup stays Running).
    Running,
    /// The last run succeeded; a scheduled resource waits for its next tick.
    Completed,
    /// The last run failed after its retries; a scheduled resource tries again at its next tick.
    Failed,
    /// `suspend` is set: no run is started.
    Suspended,
}

/// How a run ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunOutcome {
    /// Finished successfully.
    Succeeded,
    /// Failed after its retries.
    Failed,
    /// Stopped by `suspend`, deletion or a spec change.
    Cancelled,
}

/// Observed state of a KafkaBackup, written by the operator.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBackupStatus {
    /// Lifecycle phase: Pending, Running, Completed, Failed or Suspended.
    pub phase: Option<RunPhase>,
    /// Human-readable summary of the current state or the last failure.
    pub message: Option<String>,
    /// Id of the backup set the runs write to (`spec.backupId` or the resource name).
    pub backup_id: Option<String>,
    /// When the last successful run finished (RFC 3339).
    pub last_backup_time: Option<Time>,
    /// The last schedule tick a run was started for (RFC 3339); the anchor of the scheduler.
    pub last_schedule_time: Option<Time>,
    /// When the next scheduled run is due (RFC 3339).
    pub next_schedule_time: Option<Time>,
    /// Summary of the last finished run. While a continuous backup runs (its run does not
    /// finish), its run so far: start time and counters, no completion time or outcome yet.
    pub last_run: Option<BackupRunSummary>,
    /// Counters of the run in progress, all written at every progress report; after a run they
    /// keep its final values until the next run starts (which sets them to 0).
    pub progress: Option<BackupProgress>,
    /// When the last checkpoint was stored (RFC 3339), updated while the run goes.
    pub last_checkpoint_time: Option<Time>,
    /// An interrupted run can resume from a stored checkpoint (while a run goes: once its first
    /// checkpoint is stored).
    pub resumable: Option<bool>,
    /// Outcome of the last retention pass.
    pub retention: Option<BackupRetentionStatus>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Summary of a finished backup run.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRunSummary {
    /// When the run started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the run finished (RFC 3339).
    pub completion_time: Option<Time>,
    /// Records stored by the run.
    pub records: Option<i64>,
    /// Bytes of the records stored by the run: keys, values and headers (names and values), the
    /// data the records carry in Kafka. Framing, tracking headers and compression are not counted:
    /// a KafkaRestore of these records reports the same `bytesRestored`.
    pub bytes: Option<i64>,
    /// Segments written by the run.
    pub segments: Option<i64>,
    /// How the run ended.
    pub outcome: Option<RunOutcome>,
    /// Detail of a failure or cancellation.
    pub message: Option<String>,
}

/// Counters of a backup run.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    /// Records stored so far.
    pub records: Option<i64>,
    /// Bytes of the records stored so far, counted as `lastRun.bytes` counts them (keys, values,
    /// headers).
    pub bytes: Option<i64>,
    /// Segments written so far.
    pub segments: Option<i64>,
    /// Records per second: since the previous progress report while the run goes, the run's
    /// average once it ended.
    pub records_per_second: Option<f64>,
    /// Bytes (as `bytes` counts them) per second, over the same time as `recordsPerSecond`.
    pub bytes_per_second: Option<f64>,
    /// Partitions finished: caught up or at their target offset. A continuous run's partitions
    /// count once they reached the end of the log.
    pub partitions_done: Option<i32>,
    /// Partitions selected for the run.
    pub partitions_total: Option<i32>,
}

/// Outcome of the last retention pass.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRetentionStatus {
    /// When the pass ran (RFC 3339).
    pub last_run_time: Option<Time>,
    /// Backup sets of this KafkaBackup examined (the current one included) plus, with
    /// `maxAgeDays`, the segments of the current set. Sets another resource wrote are not
    /// counted: they are never deleted.
    pub inspected: Option<i64>,
    /// Whole backup sets plus segments of the current set the policy selected for deletion.
    pub eligible: Option<i64>,
    /// Whole backup sets plus segments deleted (0 in a dry run).
    pub deleted: Option<i64>,
    /// Bytes of storage freed (in a dry run: the stored size of what would be deleted).
    pub reclaimed_bytes: Option<i64>,
    /// The pass was a dry run.
    pub dry_run: Option<bool>,
    /// Why the pass failed, when it did (the backup itself succeeded).
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::core::{CustomResourceExt, cel::Validator};
    use serde_json::{Value, json};

    use super::*;

    fn schema() -> Value {
        let crd = KafkaBackup::crd();
        serde_json::to_value(&crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema).unwrap()
    }

    fn errors(extra: Value) -> String {
        let mut spec = json!({
            "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
            "topics": ["orders"],
            "storage": {"type": "S3", "s3": {"bucket": "b"}},
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let object = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
            "metadata": {"name": "b"}, "spec": spec});
        match Validator::new().validate(&schema(), &object, None) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn modes_exclude_each_other() {
        assert_eq!(errors(json!({"continuous": true})), "");
        assert_eq!(
            errors(json!({"stopAtCurrentOffsets": true, "schedule": "0 0 * * * *"})),
            ""
        );
        assert!(
            errors(json!({"continuous": true, "stopAtCurrentOffsets": true})).contains("cannot both be true")
        );
        assert!(
            errors(json!({"continuous": true, "schedule": "0 0 * * * *"})).contains("cannot be combined")
        );
    }

    #[test]
    fn schedule_needs_six_or_seven_fields() {
        for ok in ["0 0 * * * *", "0 0 2 * * * *", "*/30 * * * * *"] {
            assert_eq!(errors(json!({"schedule": ok})), "", "{ok}");
        }
        for bad in ["0 * * * *", "@hourly", "0 0 0 * * * * *"] {
            assert!(
                errors(json!({"schedule": bad})).contains("6 or 7 fields"),
                "{bad}"
            );
        }
    }

    #[test]
    fn compression_level_only_with_zstd() {
        assert_eq!(errors(json!({"compressionLevel": 9})), "");
        assert!(
            errors(json!({"compression": "Lz4", "compressionLevel": 9}))
                .contains("only allowed with compression Zstd")
        );
    }

    #[test]
    fn memory_budget_fits_a_segment_with_the_default_segment_size() {
        assert_eq!(errors(json!({"memoryBudgetBytes": 134_217_728})), "");
        assert!(errors(json!({"memoryBudgetBytes": 67_108_864})).contains("at least segmentMaxBytes"));
        assert_eq!(
            errors(json!({"memoryBudgetBytes": 67_108_864, "segmentMaxBytes": 33_554_432})),
            ""
        );
    }

    #[test]
    fn retention_and_storage_rules() {
        assert!(errors(json!({"retention": {"dryRun": true}})).contains("keepLast, maxAgeDays or both"));
        assert_eq!(errors(json!({"retention": {"keepLast": 3}})), "");
        let cm = errors(json!({"storage": {"type": "ConfigMap", "configMap": {"name": "x"}}}));
        assert!(cm.contains("cannot hold backups"), "{cm}");
    }

    #[test]
    fn defaults_are_in_the_schema() {
        let schema = schema();
        let props = &schema["properties"]["spec"]["properties"];
        assert_eq!(props["compression"]["default"], json!("Zstd"));
        assert_eq!(props["segmentMaxBytes"]["default"], json!(134_217_728));
        assert_eq!(props["includeOffsetHeaders"]["default"], json!(true));
        assert_eq!(
            props["checkpoint"]["default"],
            json!({"enabled": true, "intervalSeconds": 30})
        );
        assert_eq!(
            props["rateLimiting"]["default"],
            json!({"maxConcurrentPartitions": 4})
        );
        assert!(
            props
                .get("compressionLevel")
                .and_then(|p| p.get("default"))
                .is_none()
        );
    }
}
