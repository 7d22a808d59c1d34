//! Conversion of KafkaRestore between v1alpha1 and v1beta1.
//!
//! The typed mapping, v1alpha1 -> v1beta1 (the way down is the reverse, in the v1.0.0 spelling,
//! leaving out values equal to their documented default; the annotation restores the spelling an
//! object was written in):
//!
//! | v1alpha1 | v1beta1 |
//! |---|---|
//! | `backupRef.backupId`, else `backupId` (pre-1.0) | `backupRef.backupId` |
//! | `backupRef.storage`, else `storage` (pre-1.0) | `backupRef.storage` |
//! | `backupRef.name`, `backupRef.namespace` | `backupRef.kafkaBackupRef.{name, namespace}` |
//! | `kafkaCluster`, else `targetCluster` (pre-1.0) | `kafkaCluster` |
//! | `topics`, `topicMapping`, `partitionMapping` | same |
//! | `repartitioning.<t>.strategy` murmur2 / automatic | Murmur2 / RoundRobin |
//! | `pitr.endTimestamp` > `endTime` > `timestampMillis` > `timestamp` | `pitr.endTime` (RFC 3339) |
//! | `pitr.startTimestamp` > `startTime` | `pitr.startTime` |
//! | `pitr.enabled: false` | no `pitr` |
//! | `includeOriginalOffsetHeader` | `includeOriginalOffsetHeaders` |
//! | `offsetReset` with `enabled: true` and strategy earliest, latest, timestamp(-based), headerBased / header-based / cluster-scan / auto | `offsetReset` Earliest, Latest, Timestamp, HeaderBased |
//! | `offsetReset` disabled, without strategy, or strategy offset / manual / dry-run | no `offsetReset` |
//! | `rollback.snapshotBeforeRestore`, else `rollback.enabled` (pre-1.0), default true | `snapshotBeforeRestore.enabled` |
//! | `rollback.snapshotId`, `snapshotRetentionHours` | `snapshotBeforeRestore.snapshotId`, `retentionHours` |
//! | `rollback.snapshotStorage{pvcName, subPath}` | `snapshotBeforeRestore.storage{type: PVC, pvc{claimName, subPath}}` |
//! | `createTopics`, `defaultReplicationFactor` | `createTopics{enabled, replicationFactor}` |
//! | `produceBatchSize`, `produceAcks` -1/1/0, `produceTimeoutMs` | `produce.batchSize`, `acks` All/Leader/None, `timeoutMs` |
//! | `rateLimiting` (0 per second = unlimited) | `rateLimiting` (absent = unlimited) |
//! | `job{backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished}` | `execution{retries, deadlineSeconds, ttlSecondsAfterFinished}` |
//! | `purgeTopics`, `autoConsumerGroups`, `dryRun` | same |
//!
//! Not in v1beta1, kept by the framework in the `kafka.oso.sh/v1alpha1-fields` annotation:
//! `resources`, `podTemplate`, `circuitBreaker`, `rollback.autoRollbackOnFailure`, `pvc.create`,
//! disabled `pitr` / `offsetReset` blocks and plan-only reset strategies, the second spelling
//! of a field given twice. Status: `phase: RolledBack` becomes Failed (the residue keeps the
//! original), `rollback.rollbackAvailable` is kept in the annotation; `etaMs` is rounded down to
//! `etaSeconds`. `createTopics` absent and `createTopics: false` are both "no topic is created" and
//! keep their spelling. The v1beta1-only fields (`snapshotBeforeRestore.storage` of another type
//! than PVC, `status.backupId`,
//! `restoredTopics[].targetName`, `status.plan` of a dry run, ...) travel in `kafka.oso.sh/v1beta1-fields`.
//!
//! The shared blocks (backup reference, Kafka connection, storage, rate limiting, `job`) and the
//! policy are in [`super::common`]: defaults applied on the way up, values equal to their
//! documented default left out on the way down (the framework's residue restores explicit ones
//! exactly).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{
    backup_ref_down, backup_ref_up, cluster_down_unless_empty, cluster_up_or_empty, execution_up, hub,
    job_down, millis_to_rfc3339, non_empty, non_empty_vec, pvc, pvc_location, rate_limiting_down,
    rate_limiting_up, unless_default,
};
use crate::api::{v1alpha1 as a, v1beta1 as b};

/// Documented default of `produceBatchSize` / `produce.batchSize`.
const DEFAULT_BATCH_SIZE: i32 = 1000;
/// Documented default of `produceTimeoutMs` / `produce.timeoutMs`.
const DEFAULT_PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Documented default of `produceAcks` (all in-sync replicas).
const DEFAULT_PRODUCE_ACKS: i32 = -1;

hub!(KafkaRestore);

// ---------------------------------------------------------------------------------------------
// spec

fn spec_up(s: a::KafkaRestoreSpec) -> b::KafkaRestoreSpec {
    b::KafkaRestoreSpec {
        backup_ref: {
            // The v1.0.0 `backupRef` first, the pre-1.0 top-level `backupId` and `storage` as
            // fallbacks (the webhook refuses two spellings that differ).
            let mut reference = s.backup_ref.unwrap_or_default();
            reference.backup_id = reference.backup_id.or(s.backup_id);
            reference.storage = reference.storage.or(s.storage);
            backup_ref_up(reference)
        },
        kafka_cluster: cluster_up_or_empty(s.kafka_cluster.or(s.target_cluster)),
        topics: s.topics,
        topic_mapping: s.topic_mapping,
        partition_mapping: s.partition_mapping,
        repartitioning: s.repartitioning.map(|map| {
            map.into_iter()
                .map(|(topic, r)| {
                    let strategy = match r.strategy {
                        Some(a::RepartitionStrategy::Automatic) => b::RepartitionStrategy::RoundRobin,
                        Some(a::RepartitionStrategy::Murmur2) | None => b::RepartitionStrategy::Murmur2,
                    };
                    (
                        topic,
                        b::RepartitioningSpec {
                            strategy,
                            target_partitions: r.target_partitions.unwrap_or(0),
                        },
                    )
                })
                .collect()
        }),
        pitr: s.pitr.and_then(pitr_up),
        create_topics: match (s.create_topics, s.default_replication_factor) {
            (None, None) => None,
            // A factor without createTopics reads as disabled creation (refused by the webhook).
            (enabled, replication_factor) => Some(b::RestoreCreateTopicsSpec {
                enabled: enabled.unwrap_or(false),
                replication_factor,
            }),
        },
        purge_topics: s.purge_topics.unwrap_or(false),
        include_original_offset_headers: s.include_original_offset_header.unwrap_or(false),
        offset_reset: s.offset_reset.and_then(offset_reset_up),
        auto_consumer_groups: s.auto_consumer_groups.unwrap_or(false),
        snapshot_before_restore: s.rollback.map(|r| b::SnapshotBeforeRestoreSpec {
            enabled: r.snapshot_before_restore.or(r.enabled).unwrap_or(true),
            snapshot_id: r.snapshot_id,
            storage: r
                .snapshot_storage
                .map(|location| pvc(location.pvc_name.unwrap_or_default(), location.sub_path)),
            retention_hours: r.snapshot_retention_hours,
        }),
        produce: b::ProduceSpec {
            batch_size: s.produce_batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
            acks: match s.produce_acks {
                Some(IntOrString::Int(1)) => b::ProduceAcks::Leader,
                Some(IntOrString::Int(0)) => b::ProduceAcks::None,
                // -1, "all", absent, and values the webhook refuses.
                _ => b::ProduceAcks::All,
            },
            timeout_ms: s.produce_timeout_ms.unwrap_or(DEFAULT_PRODUCE_TIMEOUT_MS),
        },
        rate_limiting: rate_limiting_up(s.rate_limiting),
        dry_run: s.dry_run.unwrap_or(false),
        execution: s.job.map(execution_up),
    }
}

fn spec_down(s: b::KafkaRestoreSpec) -> a::KafkaRestoreSpec {
    let (create_topics, default_replication_factor) = match s.create_topics {
        Some(c) => (Some(c.enabled), c.replication_factor),
        None => (None, None),
    };
    a::KafkaRestoreSpec {
        backup_id: None,
        target_cluster: None,
        storage: None,
        backup_ref: backup_ref_down(s.backup_ref),
        kafka_cluster: cluster_down_unless_empty(s.kafka_cluster),
        topics: s.topics,
        topic_mapping: s.topic_mapping,
        partition_mapping: s.partition_mapping,
        repartitioning: s.repartitioning.map(|map| {
            map.into_iter()
                .map(|(topic, r)| {
                    let strategy = match r.strategy {
                        b::RepartitionStrategy::Murmur2 => None,
                        b::RepartitionStrategy::RoundRobin => Some(a::RepartitionStrategy::Automatic),
                    };
                    let target_partitions = unless_default(r.target_partitions, &0);
                    (
                        topic,
                        a::RepartitioningSpec {
                            strategy,
                            target_partitions,
                        },
                    )
                })
                .collect()
        }),
        pitr: s.pitr.map(|p| a::RestorePitrSpec {
            start_time: p.start_time,
            end_time: p.end_time,
            ..Default::default()
        }),
        include_original_offset_header: s.include_original_offset_headers.then_some(true),
        offset_reset: s.offset_reset.map(|o| a::RestoreOffsetResetSpec {
            // Not a default: a v1alpha1 offset reset is off unless enabled.
            enabled: Some(true),
            strategy: Some(match o.strategy {
                b::RestoreOffsetResetStrategy::Earliest => a::RestoreOffsetResetStrategy::Earliest,
                b::RestoreOffsetResetStrategy::Latest => a::RestoreOffsetResetStrategy::Latest,
                b::RestoreOffsetResetStrategy::Timestamp => a::RestoreOffsetResetStrategy::Timestamp,
                b::RestoreOffsetResetStrategy::HeaderBased => a::RestoreOffsetResetStrategy::HeaderBasedKebab,
            }),
            source_cluster: o.source_cluster,
            consumer_groups: non_empty_vec(o.consumer_groups),
            timestamp: o.timestamp,
        }),
        rollback: s.snapshot_before_restore.map(|snap| a::RestoreRollbackSpec {
            enabled: None,
            snapshot_id: snap.snapshot_id,
            snapshot_before_restore: unless_default(snap.enabled, &true),
            snapshot_retention_hours: snap.retention_hours,
            auto_rollback_on_failure: None,
            // Only a PVC location has a v1alpha1 spelling; others stay in the v1beta1 residue.
            snapshot_storage: snap
                .storage
                .as_ref()
                .and_then(pvc_location)
                .map(|(claim, sub_path)| a::PvcPathRef {
                    pvc_name: non_empty(claim),
                    sub_path,
                }),
        }),
        rate_limiting: rate_limiting_down(s.rate_limiting),
        circuit_breaker: None,
        dry_run: s.dry_run.then_some(true),
        produce_batch_size: unless_default(s.produce.batch_size, &DEFAULT_BATCH_SIZE),
        produce_acks: unless_default(
            match s.produce.acks {
                b::ProduceAcks::All => -1,
                b::ProduceAcks::Leader => 1,
                b::ProduceAcks::None => 0,
            },
            &DEFAULT_PRODUCE_ACKS,
        )
        .map(IntOrString::Int),
        produce_timeout_ms: unless_default(s.produce.timeout_ms, &DEFAULT_PRODUCE_TIMEOUT_MS),
        purge_topics: s.purge_topics.then_some(true),
        auto_consumer_groups: s.auto_consumer_groups.then_some(true),
        create_topics,
        default_replication_factor,
        resources: None,
        job: s.execution.map(job_down),
        pod_template: None,
    }
}

fn pitr_up(p: a::RestorePitrSpec) -> Option<b::RestorePitrSpec> {
    if p.enabled == Some(false) {
        return None;
    }
    let end = p
        .end_timestamp
        .and_then(millis_to_rfc3339)
        .or(p.end_time)
        .or_else(|| p.timestamp_millis.and_then(millis_to_rfc3339))
        .or(p.timestamp);
    let start = p.start_timestamp.and_then(millis_to_rfc3339).or(p.start_time);
    Some(b::RestorePitrSpec {
        start_time: start,
        end_time: end,
    })
}

/// The v1beta1 strategy of an enabled v1alpha1 offset reset; `None` for the plan-only strategies
/// (manual, dry-run) and `offset`, which a restore cannot carry out.
fn offset_reset_strategy_up(
    strategy: a::RestoreOffsetResetStrategy,
) -> Option<b::RestoreOffsetResetStrategy> {
    use a::RestoreOffsetResetStrategy as A;
    match strategy {
        A::Earliest => Some(b::RestoreOffsetResetStrategy::Earliest),
        A::Latest => Some(b::RestoreOffsetResetStrategy::Latest),
        A::Timestamp | A::TimestampBased => Some(b::RestoreOffsetResetStrategy::Timestamp),
        A::HeaderBased | A::HeaderBasedKebab | A::ClusterScan | A::Auto => {
            Some(b::RestoreOffsetResetStrategy::HeaderBased)
        }
        A::Offset | A::Manual | A::DryRun | A::DryRunSnake => None,
    }
}

fn offset_reset_up(o: a::RestoreOffsetResetSpec) -> Option<b::RestoreOffsetResetSpec> {
    if o.enabled != Some(true) {
        return None;
    }
    let strategy = offset_reset_strategy_up(o.strategy?)?;
    Some(b::RestoreOffsetResetSpec {
        consumer_groups: o.consumer_groups.unwrap_or_default(),
        strategy,
        source_cluster: o.source_cluster,
        timestamp: o.timestamp,
    })
}

// ---------------------------------------------------------------------------------------------
// status

fn status_up(s: a::KafkaRestoreStatus) -> b::KafkaRestoreStatus {
    let snapshot = match (s.rollback, s.rollback_snapshot_id) {
        (None, None) => None,
        (rollback, legacy_id) => {
            let r = rollback.unwrap_or_default();
            Some(b::RestoreSnapshotStatus {
                snapshot_id: r.snapshot_id.or(legacy_id),
                location: r.snapshot_path,
                snapshot_time: r.snapshot_time,
                expiration_time: r.expires_at,
            })
        }
    };
    b::KafkaRestoreStatus {
        phase: s.phase.map(|p| match p {
            a::RestorePhase::Pending => b::Phase::Pending,
            a::RestorePhase::Running => b::Phase::Running,
            a::RestorePhase::Completed => b::Phase::Completed,
            a::RestorePhase::PartiallyCompleted => b::Phase::PartiallyCompleted,
            // A restore whose offsets were rolled back after a failure failed.
            a::RestorePhase::Failed | a::RestorePhase::RolledBack => b::Phase::Failed,
        }),
        message: s.message,
        backup_id: None,
        start_time: s.start_time,
        completion_time: s.completion_time,
        progress_percent: s.progress_percent,
        records_restored: s.records_restored.or(s.restored_records),
        bytes_restored: s.bytes_restored,
        segments_processed: s.segments_processed,
        restored_topics: s.restored_topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| b::RestoredTopic {
                    name: t.name.unwrap_or_default(),
                    target_name: None,
                    records: t.records,
                })
                .collect()
        }),
        current_topic: s.current_topic,
        throughput: s.throughput_records_per_sec.map(|r| b::RestoreThroughput {
            records_per_second: Some(r),
            bytes_per_second: None,
        }),
        eta_seconds: s.eta_ms.map(|ms| ms / 1000),
        offset_reset: s.offset_reset_status.map(|o| b::RestoreOffsetResetStatus {
            phase: o.phase,
            groups_reset: o.groups_reset,
            groups_failed: None,
            message: None,
        }),
        snapshot,
        offset_mapping_path: s.offset_mapping_path,
        plan: None,
        observed_generation: s.observed_generation,
        conditions: s.conditions,
    }
}

/// The status in v1alpha1, filling both seed spellings where two exist (`restoredRecords` and
/// `recordsRestored`, `rollbackSnapshotId` and `rollback.snapshotId`).
fn status_down(s: b::KafkaRestoreStatus) -> a::KafkaRestoreStatus {
    let snapshot_id = s.snapshot.as_ref().and_then(|snap| snap.snapshot_id.clone());
    a::KafkaRestoreStatus {
        phase: s.phase.map(|p| match p {
            // A restore never waits for approval (only KafkaOffsetReset has `approval`).
            b::Phase::Pending | b::Phase::PendingApproval => a::RestorePhase::Pending,
            b::Phase::Running => a::RestorePhase::Running,
            b::Phase::Completed => a::RestorePhase::Completed,
            b::Phase::PartiallyCompleted => a::RestorePhase::PartiallyCompleted,
            b::Phase::Failed => a::RestorePhase::Failed,
        }),
        message: s.message,
        start_time: s.start_time,
        completion_time: s.completion_time,
        restored_records: s.records_restored,
        restored_topics: s.restored_topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| a::RestoredTopic {
                    name: non_empty(t.name),
                    records: t.records,
                })
                .collect()
        }),
        offset_reset_status: s.offset_reset.map(|o| a::RestoreOffsetResetStatus {
            phase: o.phase,
            groups_reset: o.groups_reset,
        }),
        rollback_snapshot_id: snapshot_id,
        progress_percent: s.progress_percent,
        records_restored: s.records_restored,
        bytes_restored: s.bytes_restored,
        segments_processed: s.segments_processed,
        current_topic: s.current_topic,
        throughput_records_per_sec: s.throughput.and_then(|t| t.records_per_second),
        eta_ms: s.eta_seconds.and_then(|secs| secs.checked_mul(1000)),
        rollback: s.snapshot.map(|snap| a::RestoreRollbackStatus {
            snapshot_id: snap.snapshot_id,
            snapshot_time: snap.snapshot_time,
            snapshot_path: snap.location,
            rollback_available: None,
            expires_at: snap.expiration_time,
        }),
        offset_mapping_path: s.offset_mapping_path,
        observed_generation: s.observed_generation,
        conditions: s.conditions,
    }
}
