//! KafkaBackup v1alpha1: the compatibility surface. Accepts every field of the prior art up to
//! v1.0.0 (and its v1.1/v1.2 additions `retention` and `metrics`): `checkpoint.storage`,
//! `circuitBreaker`, `metrics.port`... which v1beta1 drops are accepted here and kept through
//! conversion. Every field is optional and has no default.
//!
//! Also the home of the v1alpha1 blocks shared with KafkaRestore and KafkaBackupValidation:
//! [`RateLimitingSpec`], [`CircuitBreakerSpec`] and [`RunPhase`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{KafkaClusterSpec, PvcPathRef, StorageSpec};

/// Backs up Kafka topics to object storage (v1alpha1 compatibility surface; stored as v1beta1).
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
// rustfmt splits the printer columns over lines, which clippy misreads as duplicated keys.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1alpha1",
    kind = "KafkaBackup",
    namespaced,
    status = "KafkaBackupStatus",
    shortname = "kb",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Backs up Kafka topics to object storage (v1alpha1, compatibility version).",
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
        json_path = ".status.recordsProcessed",
        description = "Records backed up by the current or last run"
    ),
    printcolumn(
        name = "Next",
        type_ = "date",
        json_path = ".status.nextScheduledBackup",
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
pub struct KafkaBackupSpec {
    /// The Kafka cluster to back up (pre-1.0 and v1.0.0).
    pub kafka_cluster: Option<KafkaClusterSpec>,
    /// Topics to back up: names or globs with `*` and `?` (pre-1.0 and v1.0.0).
    pub topics: Option<Vec<String>>,
    /// Where the backup is written (pre-1.0 and v1.0.0).
    pub storage: Option<StorageSpec>,
    /// Segment compression: zstd (the default), lz4 or none (pre-1.0 and v1.0.0; v1beta1
    /// `compression` Zstd|Lz4|None).
    pub compression: Option<BackupCompression>,
    /// Compression level, 1 to 22 for zstd (default 3; pre-1.0 and v1.0.0).
    pub compression_level: Option<i32>,
    /// Uncompressed bytes after which a segment is rotated (default 134217728; pre-1.0 and
    /// v1.0.0).
    pub segment_max_bytes: Option<i64>,
    /// Milliseconds after which a segment is rotated (default 60000; pre-1.0 and v1.0.0).
    pub segment_max_interval_ms: Option<i64>,
    /// Keep backing up new records without end (default false; v1.0.0: no longer implied by
    /// `checkpoint.enabled`).
    pub continuous: Option<bool>,
    /// Snapshot mode: stop at the high watermarks current when the run starts (default false;
    /// v1.0.0).
    pub stop_at_current_offsets: Option<bool>,
    /// Store the source offset and timestamp as record headers (default true; pre-1.0 and
    /// v1.0.0).
    pub include_offset_headers: Option<bool>,
    /// Source cluster id recorded in the manifest and the `x-source-cluster` header (pre-1.0 and
    /// v1.0.0).
    pub source_cluster_id: Option<String>,
    /// Milliseconds between polls of an idle partition (default 100; v1.0.0).
    pub poll_interval_ms: Option<i64>,
    /// Also snapshot the consumer-group offsets of the backed-up topics (default false; v1.0.0).
    pub consumer_group_snapshot: Option<bool>,
    /// Cron schedule: 5 fields (pre-1.0 documentation, migrated by the webhook) or 6/7 fields
    /// with seconds first (v1.0.0).
    pub schedule: Option<String>,
    /// Checkpoints of a resumable backup (pre-1.0 and v1.0.0).
    pub checkpoint: Option<BackupCheckpointSpec>,
    /// Rate limits and concurrency (pre-1.0 and v1.0.0).
    pub rate_limiting: Option<RateLimitingSpec>,
    /// Circuit breaker of the prior art's Kafka client (pre-1.0 and v1.0.0; not in v1beta1, kept
    /// in the `kafka.oso.sh/v1alpha1-fields` annotation).
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    /// Deletion of old backup sets (v1.1 of the prior art).
    pub retention: Option<BackupRetentionSpec>,
    /// Stop starting runs (default false; pre-1.0 and v1.0.0).
    pub suspend: Option<bool>,
    /// Per-backup metrics server of the prior art (v1.0.0; only `enabled` had an effect since its
    /// v1.2.0; not in v1beta1, kept in the `kafka.oso.sh/v1alpha1-fields` annotation).
    pub metrics: Option<BackupMetricsSpec>,
}

/// Segment compression, in the prior art's spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupCompression {
    /// Zstandard (v1beta1 Zstd).
    #[serde(rename = "zstd")]
    Zstd,
    /// LZ4 (v1beta1 Lz4).
    #[serde(rename = "lz4")]
    Lz4,
    /// No compression (v1beta1 None).
    #[serde(rename = "none")]
    None,
}

/// Checkpoints of a resumable backup.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupCheckpointSpec {
    /// Write checkpoints (default true; before v1.0.0 it also implied continuous mode).
    pub enabled: Option<bool>,
    /// Seconds between checkpoints (default 30; v1beta1 `intervalSeconds`).
    pub interval_secs: Option<i64>,
    /// Separate checkpoint volume (prior art, never used; v1beta1 keeps checkpoints with the
    /// backup set).
    pub storage: Option<PvcPathRef>,
}

/// Rate limits and concurrency of a backup or restore.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitingSpec {
    /// Maximum records per second, 0 = unlimited (default 0).
    pub records_per_sec: Option<i64>,
    /// Maximum bytes per second, 0 = unlimited (default 0).
    pub bytes_per_sec: Option<i64>,
    /// Partitions processed at the same time (default 4).
    pub max_concurrent_partitions: Option<i32>,
}

/// Circuit breaker of the prior art's Kafka client; not in v1beta1.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerSpec {
    /// Enable the circuit breaker (default true).
    pub enabled: Option<bool>,
    /// Failures before the circuit opens (default 5).
    pub failure_threshold: Option<i32>,
    /// Seconds before a recovery attempt (default 60).
    pub reset_timeout_secs: Option<i64>,
    /// Successes before the circuit closes (default 3).
    pub success_threshold: Option<i32>,
    /// Milliseconds per operation (default 30000).
    pub operation_timeout_ms: Option<i64>,
}

/// Deletion of old backup sets (prior art v1.1).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRetentionSpec {
    /// Enable retention (default false; v1beta1: the presence of `retention`).
    pub enabled: Option<bool>,
    /// Delete backup sets older than this many days.
    pub max_age_days: Option<i32>,
    /// Newest backup sets always kept.
    pub keep_last: Option<i32>,
    /// Only report what would be deleted (default false).
    pub dry_run: Option<bool>,
}

/// Per-backup metrics server of the prior art; not in v1beta1 (the operator's own `/metrics`
/// carries every backup's series).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupMetricsSpec {
    /// Collect metrics (default true).
    pub enabled: Option<bool>,
    /// Port of the metrics server (default 9090; ignored since prior-art v1.2.0).
    pub port: Option<i32>,
    /// Bind address of the metrics server (default `0.0.0.0`; ignored since v1.2.0).
    pub bind_address: Option<String>,
    /// HTTP path of the metrics (default `/metrics`; ignored since v1.2.0).
    pub path: Option<String>,
    /// Milliseconds between metric updates (default 500; ignored since v1.2.0).
    pub update_interval_ms: Option<i64>,
    /// Maximum topic/partition series, 0 = unlimited (default 100; ignored since v1.2.0).
    pub max_partition_labels: Option<i32>,
}

/// Lifecycle phase of a KafkaBackup or KafkaBackupValidation, in the prior art's values plus the
/// v1beta1 one (Suspended).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunPhase {
    /// Accepted, no run started yet.
    Pending,
    /// Prior art: configured and waiting (v1beta1 has no equivalent; read as Pending).
    Ready,
    /// A run is in progress.
    Running,
    /// The last run succeeded.
    Completed,
    /// The last run failed.
    Failed,
    /// `suspend` is set (written by this operator, v1beta1 Suspended).
    Suspended,
}

/// Observed state of a KafkaBackup, with the prior art's field names.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBackupStatus {
    /// Lifecycle phase.
    pub phase: Option<RunPhase>,
    /// Human-readable summary of the current state or the last failure.
    pub message: Option<String>,
    /// When the last successful run finished (RFC 3339).
    pub last_backup_time: Option<Time>,
    /// The last schedule tick a run was started for (RFC 3339).
    pub last_schedule_time: Option<Time>,
    /// When the next scheduled run is due (RFC 3339; v1beta1 `nextScheduleTime`).
    pub next_scheduled_backup: Option<Time>,
    /// Records processed by the current or last run (v1beta1 `progress.records`).
    pub records_processed: Option<i64>,
    /// Bytes processed by the current or last run (v1beta1 `progress.bytes`).
    pub bytes_processed: Option<i64>,
    /// Segments completed by the current or last run (v1beta1 `progress.segments`).
    pub segments_completed: Option<i64>,
    /// Checkpointing is enabled (prior art; v1beta1 has it in the spec only).
    pub checkpoint_enabled: Option<bool>,
    /// When the last checkpoint was stored (RFC 3339).
    pub last_checkpoint_time: Option<Time>,
    /// An interrupted run can resume from a checkpoint.
    pub resumable: Option<bool>,
    /// Records per second (v1beta1 `progress.recordsPerSecond`).
    pub throughput_records_per_sec: Option<f64>,
    /// Bytes per second (v1beta1 `progress.bytesPerSecond`).
    pub throughput_bytes_per_sec: Option<f64>,
    /// Id of the backup set of the current or last run.
    pub backup_id: Option<String>,
    /// When retention last ran (RFC 3339; v1beta1 `retention.lastRunTime`).
    pub last_retention_time: Option<Time>,
    /// Backup sets inspected by the last retention run (v1beta1 `retention.inspected`).
    pub retention_inspected_backups: Option<i64>,
    /// Backup sets eligible for deletion (v1beta1 `retention.eligible`).
    pub retention_eligible_backups: Option<i64>,
    /// Backup sets deleted (v1beta1 `retention.deleted`).
    pub retention_deleted_backups: Option<i64>,
    /// Bytes reclaimed (v1beta1 `retention.reclaimedBytes`).
    pub retention_reclaimed_bytes: Option<i64>,
    /// The last retention run was a dry run (v1beta1 `retention.dryRun`).
    pub retention_dry_run: Option<bool>,
    /// Error of the last retention run (v1beta1 `retention.error`).
    pub retention_error: Option<String>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}
