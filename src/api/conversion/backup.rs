//! Conversion of KafkaBackup between v1alpha1 and v1beta1.
//!
//! The shared blocks (Kafka connection, storage, rate limiting, run phase) and the policy are in
//! [`super::common`]: defaults applied on the way up, values equal to their documented default
//! left out on the way down (the framework's residue restores explicit ones exactly).
//!
//! The v1.0.0 migrations are read on the way up: a classic 5-field `schedule` (or a macro) in the
//! seconds-first form, an enabled `retention` without keepLast or maxAgeDays as keepLast: 1 (the
//! prior art's floor). A scheduled backup that is not continuous stops each run at the offsets
//! current when it starts in both versions (see
//! [`beta::KafkaBackupSpec::stops_at_current_offsets`]), so `stopAtCurrentOffsets` maps as
//! written.
//!
//! What one version cannot express is dropped here and kept by the framework's annotations:
//! v1alpha1 `circuitBreaker`, `metrics`, `checkpoint.storage`, `pvc.create`, a disabled
//! `retention`, zero rate limits, `status.checkpointEnabled`, phase `Ready` (no v1beta1 phase,
//! which reads as Pending); v1beta1 `excludeTopics`, `backupId`, `memoryBudgetBytes`,
//! `execution`, `status.lastRun`, `status.progress.partitionsDone/partitionsTotal`.

use super::common::{
    cluster_down_unless_empty, cluster_up_or_empty, hub, narrow, non_empty_vec, phase_down, phase_up,
    rate_limiting_down, rate_limiting_up, schedule_up, storage_down_unless_empty, storage_up_or_empty,
    unless_default,
};
use crate::api::{v1alpha1 as alpha, v1beta1 as beta};

/// Documented default of `segmentMaxBytes`.
const DEFAULT_SEGMENT_MAX_BYTES: i64 = 134_217_728;
/// Documented default of `segmentMaxIntervalMs`.
const DEFAULT_SEGMENT_MAX_INTERVAL_MS: i64 = 60_000;
/// Documented default of `pollIntervalMs`.
const DEFAULT_POLL_INTERVAL_MS: i32 = 100;
/// Documented default of `checkpoint.intervalSecs` / `checkpoint.intervalSeconds`.
const DEFAULT_CHECKPOINT_INTERVAL_SECONDS: i32 = 30;
/// The prior art's retention floor: `enabled: true` with neither limit keeps the newest set.
const DEFAULT_RETENTION_KEEP_LAST: i32 = 1;

hub!(KafkaBackup);

fn spec_up(spec: alpha::KafkaBackupSpec) -> beta::KafkaBackupSpec {
    let checkpoint = spec.checkpoint.unwrap_or_default();
    beta::KafkaBackupSpec {
        kafka_cluster: cluster_up_or_empty(spec.kafka_cluster),
        topics: spec.topics.unwrap_or_default(),
        exclude_topics: None,
        storage: storage_up_or_empty(spec.storage),
        backup_id: None,
        compression: spec.compression.map(compression_up).unwrap_or_default(),
        compression_level: spec.compression_level,
        segment_max_bytes: spec.segment_max_bytes.unwrap_or(DEFAULT_SEGMENT_MAX_BYTES),
        segment_max_interval_ms: spec
            .segment_max_interval_ms
            .unwrap_or(DEFAULT_SEGMENT_MAX_INTERVAL_MS),
        continuous: spec.continuous.unwrap_or(false),
        stop_at_current_offsets: spec.stop_at_current_offsets.unwrap_or(false),
        poll_interval_ms: narrow(spec.poll_interval_ms).unwrap_or(DEFAULT_POLL_INTERVAL_MS),
        include_offset_headers: spec.include_offset_headers.unwrap_or(true),
        source_cluster_id: spec.source_cluster_id,
        consumer_group_snapshot: spec.consumer_group_snapshot.unwrap_or(false),
        schedule: schedule_up(spec.schedule),
        suspend: spec.suspend.unwrap_or(false),
        checkpoint: beta::BackupCheckpointSpec {
            enabled: checkpoint.enabled.unwrap_or(true),
            interval_seconds: narrow(checkpoint.interval_secs).unwrap_or(DEFAULT_CHECKPOINT_INTERVAL_SECONDS),
        },
        rate_limiting: rate_limiting_up(spec.rate_limiting),
        memory_budget_bytes: None,
        retention: spec.retention.and_then(retention_up),
        execution: None,
    }
}

fn retention_up(retention: alpha::BackupRetentionSpec) -> Option<beta::BackupRetentionSpec> {
    // Disabled (the prior art's default) has no v1beta1 form: no retention block. Enabled with
    // neither limit keeps the newest set, the prior art's floor.
    if retention.enabled != Some(true) {
        return None;
    }
    let unbounded = retention.keep_last.is_none() && retention.max_age_days.is_none();
    Some(beta::BackupRetentionSpec {
        keep_last: if unbounded {
            Some(DEFAULT_RETENTION_KEEP_LAST)
        } else {
            retention.keep_last
        },
        max_age_days: retention.max_age_days,
        dry_run: retention.dry_run.unwrap_or(false),
    })
}

fn spec_down(spec: beta::KafkaBackupSpec) -> alpha::KafkaBackupSpec {
    let checkpoint = alpha::BackupCheckpointSpec {
        enabled: unless_default(spec.checkpoint.enabled, &true),
        interval_secs: unless_default(
            spec.checkpoint.interval_seconds,
            &DEFAULT_CHECKPOINT_INTERVAL_SECONDS,
        )
        .map(i64::from),
        storage: None,
    };
    alpha::KafkaBackupSpec {
        kafka_cluster: cluster_down_unless_empty(spec.kafka_cluster),
        topics: non_empty_vec(spec.topics),
        storage: storage_down_unless_empty(spec.storage),
        compression: unless_default(spec.compression, &beta::Compression::Zstd).map(compression_down),
        compression_level: spec.compression_level,
        segment_max_bytes: unless_default(spec.segment_max_bytes, &DEFAULT_SEGMENT_MAX_BYTES),
        segment_max_interval_ms: unless_default(
            spec.segment_max_interval_ms,
            &DEFAULT_SEGMENT_MAX_INTERVAL_MS,
        ),
        continuous: spec.continuous.then_some(true),
        stop_at_current_offsets: spec.stop_at_current_offsets.then_some(true),
        include_offset_headers: unless_default(spec.include_offset_headers, &true),
        source_cluster_id: spec.source_cluster_id,
        poll_interval_ms: unless_default(spec.poll_interval_ms, &DEFAULT_POLL_INTERVAL_MS).map(i64::from),
        consumer_group_snapshot: spec.consumer_group_snapshot.then_some(true),
        schedule: spec.schedule,
        checkpoint: (checkpoint != alpha::BackupCheckpointSpec::default()).then_some(checkpoint),
        rate_limiting: rate_limiting_down(spec.rate_limiting),
        circuit_breaker: None,
        retention: spec.retention.map(|r| alpha::BackupRetentionSpec {
            // Not a default: v1alpha1 retention is off unless enabled.
            enabled: Some(true),
            max_age_days: r.max_age_days,
            keep_last: r.keep_last,
            dry_run: r.dry_run.then_some(true),
        }),
        suspend: spec.suspend.then_some(true),
        metrics: None,
    }
}

fn compression_up(compression: alpha::BackupCompression) -> beta::Compression {
    match compression {
        alpha::BackupCompression::Zstd => beta::Compression::Zstd,
        alpha::BackupCompression::Lz4 => beta::Compression::Lz4,
        alpha::BackupCompression::None => beta::Compression::None,
    }
}

fn compression_down(compression: beta::Compression) -> alpha::BackupCompression {
    match compression {
        beta::Compression::Zstd => alpha::BackupCompression::Zstd,
        beta::Compression::Lz4 => alpha::BackupCompression::Lz4,
        beta::Compression::None => alpha::BackupCompression::None,
    }
}

fn status_up(status: alpha::KafkaBackupStatus) -> beta::KafkaBackupStatus {
    let progress = beta::BackupProgress {
        records: status.records_processed,
        bytes: status.bytes_processed,
        segments: status.segments_completed,
        records_per_second: status.throughput_records_per_sec,
        bytes_per_second: status.throughput_bytes_per_sec,
        partitions_done: None,
        partitions_total: None,
    };
    let retention = beta::BackupRetentionStatus {
        last_run_time: status.last_retention_time,
        inspected: status.retention_inspected_backups,
        eligible: status.retention_eligible_backups,
        deleted: status.retention_deleted_backups,
        reclaimed_bytes: status.retention_reclaimed_bytes,
        dry_run: status.retention_dry_run,
        error: status.retention_error,
    };
    beta::KafkaBackupStatus {
        phase: status.phase.and_then(phase_up),
        message: status.message,
        backup_id: status.backup_id,
        last_backup_time: status.last_backup_time,
        last_schedule_time: status.last_schedule_time,
        next_schedule_time: status.next_scheduled_backup,
        last_run: None,
        progress: (progress != beta::BackupProgress::default()).then_some(progress),
        last_checkpoint_time: status.last_checkpoint_time,
        resumable: status.resumable,
        retention: (retention != beta::BackupRetentionStatus::default()).then_some(retention),
        observed_generation: status.observed_generation,
        conditions: status.conditions,
    }
}

fn status_down(status: beta::KafkaBackupStatus) -> alpha::KafkaBackupStatus {
    let progress = status.progress.unwrap_or_default();
    let retention = status.retention.unwrap_or_default();
    alpha::KafkaBackupStatus {
        phase: status.phase.map(phase_down),
        message: status.message,
        last_backup_time: status.last_backup_time,
        last_schedule_time: status.last_schedule_time,
        next_scheduled_backup: status.next_schedule_time,
        records_processed: progress.records,
        bytes_processed: progress.bytes,
        segments_completed: progress.segments,
        checkpoint_enabled: None,
        last_checkpoint_time: status.last_checkpoint_time,
        resumable: status.resumable,
        throughput_records_per_sec: progress.records_per_second,
        throughput_bytes_per_sec: progress.bytes_per_second,
        backup_id: status.backup_id,
        last_retention_time: retention.last_run_time,
        retention_inspected_backups: retention.inspected,
        retention_eligible_backups: retention.eligible,
        retention_deleted_backups: retention.deleted,
        retention_reclaimed_bytes: retention.reclaimed_bytes,
        retention_dry_run: retention.dry_run,
        retention_error: retention.error,
        observed_generation: status.observed_generation,
        conditions: status.conditions,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::conversion::convert;

    #[test]
    fn status_counters_move_into_progress_and_retention() {
        let object = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaBackup",
            "metadata": {"name": "b"}, "spec": {},
            "status": {"phase": "Running", "recordsProcessed": 10, "bytesProcessed": 20,
                "segmentsCompleted": 1, "throughputRecordsPerSec": 2.5, "nextScheduledBackup": "2024-12-01T12:00:00Z",
                "retentionDeletedBackups": 3, "retentionDryRun": false, "backupId": "b"}});
        let hub = convert(object, "kafka.oso.sh/v1beta1").unwrap();
        assert_eq!(
            hub["status"],
            json!({"phase": "Running", "backupId": "b", "nextScheduleTime": "2024-12-01T12:00:00Z",
                "progress": {"records": 10, "bytes": 20, "segments": 1, "recordsPerSecond": 2.5},
                "retention": {"deleted": 3, "dryRun": false}})
        );
        let back = convert(hub, "kafka.oso.sh/v1alpha1").unwrap();
        assert_eq!(back["status"]["recordsProcessed"], json!(10));
        assert_eq!(back["status"]["retentionDeletedBackups"], json!(3));
    }

    #[test]
    fn defaults_are_left_out_down_and_a_schedule_implies_where_runs_stop() {
        let hub = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup", "metadata": {"name": "b"},
            "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "topics": ["t"],
                "storage": {"type": "S3", "s3": {"bucket": "b"}}, "schedule": "0 0 * * * *"}});
        let spoke = convert(hub.clone(), "kafka.oso.sh/v1alpha1").unwrap();
        assert_eq!(
            spoke["spec"],
            json!({"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "topics": ["t"],
                "storage": {"storageType": "s3", "s3": {"bucket": "b"}}, "schedule": "0 0 * * * *"})
        );
        let back: crate::api::v1beta1::KafkaBackup =
            serde_json::from_value(convert(spoke, "kafka.oso.sh/v1beta1").unwrap()).unwrap();
        assert!(!back.spec.stop_at_current_offsets);
        assert_eq!(back.spec.rate_limiting.max_concurrent_partitions, 4);
        assert!(
            back.spec.stops_at_current_offsets(),
            "a scheduled run stops where it started"
        );
    }

    #[test]
    fn v1_0_0_migrations_are_read_up_and_the_spelling_comes_back_down() {
        let spoke = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaBackup",
            "metadata": {"name": "b", "namespace": "ns"},
            "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "topics": ["t"],
                "storage": {"s3": {"bucket": "b"}}, "schedule": "30 2 * * 1-5",
                "retention": {"enabled": true}}});
        let hub = convert(spoke.clone(), "kafka.oso.sh/v1beta1").unwrap();
        assert_eq!(hub["spec"]["schedule"], "0 30 2 * * MON,TUE,WED,THU,FRI");
        assert_eq!(hub["spec"]["retention"]["keepLast"], 1);
        assert_eq!(hub["spec"]["storage"]["type"], "S3");
        assert_eq!(convert(hub, "kafka.oso.sh/v1alpha1").unwrap(), spoke);
    }
}
