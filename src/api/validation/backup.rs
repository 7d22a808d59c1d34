//! Admission rules of KafkaBackup: validation of both versions, mutation of v1alpha1.
//!
//! Prior-art fields this operator does not implement, decided per field:
//! - `circuitBreaker`: warning, as for KafkaRestore; the prior art resolved it and never applied
//!   it, so no manifest ever got that behaviour, and what it was for is covered: the Kafka client
//!   retries broken connections with backoff, `execution.retries` bounds failed runs.
//! - `metrics.port`, `bindAddress`, `path`, `updateIntervalMs`, `maxPartitionLabels`: warning;
//!   ignored by the prior art since its v1.2.0, they configured a per-backup server that does not
//!   exist in-process (the operator's own `/metrics` carries every backup). `metrics.enabled:
//!   false` is warned about too: the series are always exported.
//! - `checkpoint.storage`: warning; the prior art never passed it on, and checkpoints are kept
//!   durably next to the backup set in `storage`, which is what it was for.
//!
//! The v1alpha1 rules and mutations of the Kafka connection and the storage location are the
//! shared ones of [`super::spoke`] (`pvc.create` refused when enabled, warned about otherwise).

use super::common::{self, BACKUP_STORAGE, SECONDS_1_TO_3600};
use super::spoke::{
    Defaults, explain_storage, mutate_cluster, mutate_rate_limiting, spoke_cluster, spoke_storage,
    storage_type_path,
};
use super::{Verdict, index, path};
use crate::api::{
    admission::Admit,
    v1alpha1::{self as alpha, BackupCompression},
    v1beta1::{self as beta, Compression},
};

const MIB: i64 = 1_048_576;
const GIB: i64 = 1_073_741_824;
const POLL_INTERVAL_RANGE: &str = "must be 1 to 60000 milliseconds";
/// Longest a segment may stay open: a day.
const MAX_SEGMENT_INTERVAL_MS: i64 = 86_400_000;

impl Admit for beta::KafkaBackup {
    /// A KafkaBackup is long-lived (scheduled or continuous), so what governs *when* and *how
    /// fast* it runs stays editable after the first run: `suspend` (pause and resume),
    /// `schedule` (cadence), `retention` (what is kept), `rateLimiting`, `pollIntervalMs`,
    /// `memoryBudgetBytes` and `checkpoint` (throughput and resource tuning, e.g. after an
    /// out-of-memory kill), `execution` (retries and deadline of later runs). What defines the
    /// backup set stays fixed: the cluster, the topics, the storage and `backupId` (a run against
    /// another cluster or another selection would corrupt the incremental set), the mode
    /// (`continuous`, `stopAtCurrentOffsets`) and the segment format (compression, segment
    /// limits, headers). To change those, delete the KafkaBackup and create a new one: with the
    /// same `backupId` it continues the same set.
    const MUTABLE_WHILE_STARTED: &'static [&'static str] = &[
        "suspend",
        "schedule",
        "retention",
        "rateLimiting",
        "pollIntervalMs",
        "memoryBudgetBytes",
        "checkpoint",
        "execution",
    ];

    fn spoke_path(hub_path: &str) -> String {
        storage_type_path(
            &hub_path.replace("spec.checkpoint.intervalSeconds", "spec.checkpoint.intervalSecs"),
        )
    }

    fn validate_spoke(spoke: &alpha::KafkaBackup, v: &mut Verdict) {
        let spec = &spoke.spec;
        // 64-bit in v1alpha1, 32-bit in v1beta1: checked here on the value as written.
        if let Some(ms) = spec.poll_interval_ms.filter(|ms| !(1..=60_000).contains(ms)) {
            v.error("spec.pollIntervalMs", POLL_INTERVAL_RANGE, ms);
        }
        let interval = spec.checkpoint.as_ref().and_then(|c| c.interval_secs);
        if let Some(seconds) = interval.filter(|s| !(1..=3600).contains(s)) {
            v.error("spec.checkpoint.intervalSecs", SECONDS_1_TO_3600, seconds);
        }
        match &spec.storage {
            Some(storage) => spoke_storage(v, "spec.storage", storage),
            None => v.missing(
                "spec.storage",
                "is required: where the backup is written (PVC, S3, Azure or GCS)",
            ),
        }
        spoke_cluster(v, "spec.kafkaCluster", spec.kafka_cluster.as_ref());
        if spec.circuit_breaker.is_some() {
            v.warn(
                "spec.circuitBreaker is ignored: the Kafka client retries broken connections with backoff by itself \
                 and failed runs are retried per v1beta1 execution.retries (the prior art never applied it either)",
            );
        }
        if let Some(metrics) = &spec.metrics {
            let ignored: Vec<&str> = [
                ("port", metrics.port.is_some()),
                ("bindAddress", metrics.bind_address.is_some()),
                ("path", metrics.path.is_some()),
                ("updateIntervalMs", metrics.update_interval_ms.is_some()),
                ("maxPartitionLabels", metrics.max_partition_labels.is_some()),
            ]
            .into_iter()
            .filter_map(|(field, set)| set.then_some(field))
            .collect();
            if !ignored.is_empty() {
                v.warn(format!(
                    "spec.metrics.{} {} ignored: there is no per-backup metrics server; the operator's admin port \
                     serves every backup's series on /metrics",
                    ignored.join(", spec.metrics."),
                    if ignored.len() == 1 { "is" } else { "are" },
                ));
            }
            if metrics.enabled == Some(false) {
                v.warn("spec.metrics.enabled: false is ignored: the operator's /metrics always carries every backup's series");
            }
        }
        if let Some(checkpoint) = &spec.checkpoint {
            if checkpoint.storage.is_some() {
                v.warn(
                    "spec.checkpoint.storage is ignored: checkpoints are stored in spec.storage next to the backup set \
                     (the prior art never used this volume either)",
                );
            }
            if checkpoint.enabled == Some(true) && spec.continuous.is_none() {
                v.warn(
                    "spec.continuous is not set: since v1.0.0 checkpoint.enabled no longer implies continuous mode, \
                     so this backup runs once; set continuous: true for a streaming backup",
                );
            }
        }
        if let Some(retention) = &spec.retention
            && retention.enabled != Some(true)
            && (retention.keep_last.is_some() || retention.max_age_days.is_some())
        {
            v.warn(
                "spec.retention is not enabled, so keepLast and maxAgeDays delete nothing; set retention.enabled: true \
                 to apply them",
            );
        }
        if spec.schedule.is_some() {
            v.warn(
                "spec.schedule: every run continues one incremental backup set named after this resource instead of \
                 writing a new full set <name>-<time> per run as the prior art did",
            );
        }
    }

    fn mutate_spoke(spoke: &mut alpha::KafkaBackup, warnings: &mut Vec<String>) {
        let spec = &mut spoke.spec;
        let mut defaults = Defaults::default();
        if let Some(cluster) = &mut spec.kafka_cluster {
            mutate_cluster("spec.kafkaCluster", cluster, &mut defaults);
        }
        if let Some(storage) = &spec.storage {
            explain_storage("spec.storage", storage, warnings);
        }
        common::explain_schedule("spec.schedule", spec.schedule.as_deref(), warnings);

        // Not a change of meaning: an absent `continuous` is false too. Written so the object
        // says what the prior art's checkpoint.enabled no longer implies.
        let checkpoint_enabled = spec.checkpoint.as_ref().and_then(|c| c.enabled) == Some(true);
        if spec.continuous.is_none() && checkpoint_enabled {
            spec.continuous = Some(false);
            warnings.push(
                "spec.continuous: set to false explicitly: since v1.0.0 checkpoint.enabled no longer implies \
                 continuous mode; set continuous: true for a streaming backup"
                    .into(),
            );
        }
        defaults.set(&mut spec.continuous, "spec.continuous", false);
        if spec.schedule.is_some()
            && spec.continuous != Some(true)
            && spec.stop_at_current_offsets != Some(true)
        {
            warnings.push(
                "spec.schedule: a scheduled backup that is not continuous stops each run at the offsets current when \
                 it starts, as with stopAtCurrentOffsets: true (v1.0.0 migration)"
                    .into(),
            );
        }

        defaults.set(&mut spec.compression, "spec.compression", BackupCompression::Zstd);
        defaults.set(&mut spec.segment_max_bytes, "spec.segmentMaxBytes", 134_217_728);
        defaults.set(
            &mut spec.segment_max_interval_ms,
            "spec.segmentMaxIntervalMs",
            60_000,
        );
        defaults.set(
            &mut spec.include_offset_headers,
            "spec.includeOffsetHeaders",
            true,
        );
        defaults.set(&mut spec.poll_interval_ms, "spec.pollIntervalMs", 100);
        defaults.set(
            &mut spec.consumer_group_snapshot,
            "spec.consumerGroupSnapshot",
            false,
        );
        defaults.set(&mut spec.suspend, "spec.suspend", false);
        let checkpoint = spec.checkpoint.get_or_insert_default();
        defaults.set(&mut checkpoint.enabled, "spec.checkpoint.enabled", true);
        defaults.set(&mut checkpoint.interval_secs, "spec.checkpoint.intervalSecs", 30);
        mutate_rate_limiting(
            "spec.rateLimiting",
            &mut spec.rate_limiting,
            warnings,
            &mut defaults,
        );

        if let Some(retention) = &mut spec.retention {
            if retention.enabled.is_none() {
                retention.enabled = Some(false);
                warnings.push(
                    "spec.retention.enabled: set to false explicitly (its default): nothing is deleted until you set \
                     retention.enabled: true"
                        .into(),
                );
            }
            if retention.enabled == Some(true) {
                if retention.keep_last.is_none() && retention.max_age_days.is_none() {
                    warnings.push(
                        "spec.retention: enabled without keepLast or maxAgeDays keeps the newest backup set only, as \
                         keepLast: 1 (the prior art's floor)"
                            .into(),
                    );
                }
                defaults.set(&mut retention.dry_run, "spec.retention.dryRun", false);
            }
        }
        defaults.finish(warnings);
    }

    fn validate_hub(hub: &Self, v: &mut Verdict) {
        let spec = &hub.spec;
        common::kafka_cluster(v, "spec.kafkaCluster", &spec.kafka_cluster);
        common::record_reader_connection(v, "spec.kafkaCluster", &spec.kafka_cluster);
        if spec.topics.is_empty() {
            v.missing(
                "spec.topics",
                "needs at least one topic name or glob (e.g. orders or payments-*)",
            );
        }
        topic_patterns(v, "spec.topics", &spec.topics);
        if let Some(excluded) = &spec.exclude_topics {
            topic_patterns(v, "spec.excludeTopics", excluded);
            for (i, pattern) in excluded.iter().enumerate() {
                if spec.topics.contains(pattern) {
                    v.error(
                        index("spec.excludeTopics", i),
                        "excludes an entry spec.topics lists exactly, so it selects nothing; remove it from one list",
                        pattern,
                    );
                }
            }
        }
        common::storage(v, "spec.storage", &spec.storage, BACKUP_STORAGE);
        if let Some(id) = &spec.backup_id {
            common::object_key_segment(v, "spec.backupId", id);
        }
        match (spec.compression, spec.compression_level) {
            (Compression::Zstd, Some(level)) if !(1..=22).contains(&level) => {
                v.error(
                    "spec.compressionLevel",
                    "must be 1 (fastest) to 22 (smallest) for zstd",
                    level,
                );
            }
            (Compression::Lz4 | Compression::None, Some(level)) => v.error(
                "spec.compressionLevel",
                "is only allowed with zstd compression; lz4 and none have no level: remove it",
                level,
            ),
            _ => {}
        }
        if !(MIB..=GIB).contains(&spec.segment_max_bytes) {
            v.error(
                "spec.segmentMaxBytes",
                "must be 1048576 (1 MiB) to 1073741824 (1 GiB): each partition in progress holds up to this much in \
                 memory",
                spec.segment_max_bytes,
            );
        }
        if !(1000..=MAX_SEGMENT_INTERVAL_MS).contains(&spec.segment_max_interval_ms) {
            v.error(
                "spec.segmentMaxIntervalMs",
                "must be 1000 (1 s) to 86400000 (24 h): it bounds how far the stored data lags behind the topic",
                spec.segment_max_interval_ms,
            );
        }
        if let Some(budget) = spec.memory_budget_bytes {
            if budget < MIB {
                v.error(
                    "spec.memoryBudgetBytes",
                    "must be at least 1048576 (1 MiB)",
                    budget,
                );
            } else if budget < spec.segment_max_bytes {
                v.error(
                    "spec.memoryBudgetBytes",
                    format!(
                        "must be at least segmentMaxBytes ({}): one open segment has to fit in the budget",
                        spec.segment_max_bytes
                    ),
                    budget,
                );
            }
        }
        if spec.continuous && spec.stop_at_current_offsets {
            v.error(
                "spec.continuous",
                "cannot be true together with spec.stopAtCurrentOffsets: a continuous backup never stops at an \
                 offset; set one of them to false",
                true,
            );
        }
        if let Some(schedule) = &spec.schedule {
            if spec.continuous {
                v.error(
                    "spec.schedule",
                    "cannot be combined with spec.continuous: true: a continuous backup never finishes, so no later \
                     run could start; remove one of them",
                    schedule,
                );
            }
            common::schedule_rule(v, "spec.schedule", schedule);
        }
        if !(1..=60_000).contains(&spec.poll_interval_ms) {
            v.error("spec.pollIntervalMs", POLL_INTERVAL_RANGE, spec.poll_interval_ms);
        }
        if !(1..=3600).contains(&spec.checkpoint.interval_seconds) {
            v.error(
                "spec.checkpoint.intervalSeconds",
                SECONDS_1_TO_3600,
                spec.checkpoint.interval_seconds,
            );
        }
        if spec.continuous && !spec.checkpoint.enabled {
            v.warn(
                "spec.checkpoint.enabled is false on a continuous backup: after a restart of the operator it \
                 re-reads everything since the start of its run",
            );
        }
        common::rate_limiting(v, "spec.rateLimiting", &spec.rate_limiting);
        if let Some(retention) = &spec.retention {
            for (field, value) in [
                ("keepLast", retention.keep_last),
                ("maxAgeDays", retention.max_age_days),
            ] {
                if let Some(value) = value.filter(|v| *v < 1) {
                    v.error(path("spec.retention", field), "must be at least 1", value);
                }
            }
            if retention.keep_last.is_none() && retention.max_age_days.is_none() {
                v.missing("spec.retention", "needs keepLast, maxAgeDays or both");
            } else if retention.max_age_days.is_none() {
                v.warn(
                    "spec.retention.keepLast counts whole backup sets and every run continues the current one \
                     (backupId), so it never shortens that set; add maxAgeDays to bound its age",
                );
            }
        }
        if let Some(id) = &spec.source_cluster_id {
            if id.trim().is_empty() {
                v.missing(
                    "spec.sourceClusterId",
                    "must not be empty; leave it out to record no cluster id",
                );
            } else if id.len() > 255 {
                v.error("spec.sourceClusterId", "must be at most 255 characters", id);
            }
        }
        if let Some(execution) = &spec.execution {
            common::execution(v, "spec.execution", execution);
            let recurring = if spec.continuous {
                Some("continuous")
            } else {
                spec.schedule.as_ref().map(|_| "scheduled")
            };
            if let (Some(ttl), Some(mode)) = (execution.ttl_seconds_after_finished, recurring) {
                v.error(
                    "spec.execution.ttlSecondsAfterFinished",
                    format!("only applies to one-shot backups: a {mode} backup never finishes, so it is never deleted"),
                    ttl,
                );
            }
            if let (Some(deadline), true) = (execution.deadline_seconds, spec.continuous) {
                v.error(
                    "spec.execution.deadlineSeconds",
                    "cannot be combined with continuous: a continuous run never finishes, so the deadline would \
                     always fail it",
                    deadline,
                );
            }
        }
    }
}

/// Every entry a topic name or glob, none listed twice.
fn topic_patterns(v: &mut Verdict, at: &str, patterns: &[String]) {
    for (i, pattern) in patterns.iter().enumerate() {
        common::topic_pattern(v, &index(at, i), pattern);
        if patterns[..i].contains(pattern) {
            v.error(index(at, i), "is listed twice", pattern);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::api::admission::{mutate, validate};
    use crate::api::conversion::convert;
    use crate::api::validation::testing::{self, errors};

    fn alpha(spec: Value) -> Value {
        testing::alpha("KafkaBackup", spec)
    }

    fn beta(spec: Value) -> Value {
        testing::beta("KafkaBackup", spec)
    }

    fn base() -> Value {
        json!({"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "topics": ["orders"],
            "storage": {"storageType": "s3", "s3": {"bucket": "b"}}})
    }

    fn with(mut spec: Value, extra: Value) -> Value {
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    }

    fn admit(object: &Value) -> Verdict {
        let mutated = mutate(object).unwrap().object;
        validate(&mutated, None).unwrap()
    }

    #[test]
    fn seed_hourly_backup_keeps_its_spelling_with_one_warning_per_migration() {
        let object = alpha(with(base(), json!({"schedule": "0 * * * *"})));
        let mutation = mutate(&object).unwrap();
        let spec = &mutation.object["spec"];
        // What the user wrote stays; only absent defaults that mean what their absence means are
        // added (not compressionLevel, which only zstd takes, nor stopAtCurrentOffsets).
        assert_eq!(spec["schedule"], json!("0 * * * *"));
        assert_eq!(spec.get("stopAtCurrentOffsets"), None);
        assert_eq!(spec.get("compressionLevel"), None);
        assert_eq!(spec["continuous"], json!(false));
        assert_eq!(spec["compression"], json!("zstd"));
        for expected in [
            "spec.schedule: \"0 * * * *\" is read as \"0 0 * * * *\"",
            "spec.schedule: a scheduled backup that is not continuous stops each run",
        ] {
            assert_eq!(
                mutation
                    .warnings
                    .iter()
                    .filter(|w| w.starts_with(expected))
                    .count(),
                1,
                "{expected}: {:?}",
                mutation.warnings
            );
        }
        assert!(
            !mutation
                .warnings
                .iter()
                .any(|w| w.contains("removed") || w.contains("rewr"))
        );
        let again = mutate(&mutation.object).unwrap();
        assert_eq!(again.object, mutation.object);
        assert!(
            again.warnings.iter().all(|w| mutation.warnings.contains(w)),
            "{:?}",
            again.warnings
        );
        assert!(validate(&mutation.object, None).unwrap().is_allowed());
        // What executes is the migrated form.
        let hub: beta::KafkaBackup =
            serde_json::from_value(convert(mutation.object, "kafka.oso.sh/v1beta1").unwrap()).unwrap();
        assert_eq!(hub.spec.schedule.as_deref(), Some("0 0 * * * *"));
        assert!(hub.spec.stops_at_current_offsets());
        assert_eq!(hub.spec.compression_level, None);
    }

    #[test]
    fn checkpoint_enabled_no_longer_implies_continuous() {
        let object = alpha(with(base(), json!({"checkpoint": {"enabled": true}})));
        let mutation = mutate(&object).unwrap();
        assert_eq!(mutation.object["spec"]["continuous"], json!(false));
        assert!(
            mutation.warnings[0].contains("checkpoint.enabled no longer implies continuous"),
            "{:?}",
            mutation.warnings
        );
        // An unmutated object (run -f without mutation) still gets told.
        let verdict = validate(&object, None).unwrap();
        assert!(
            verdict
                .warnings
                .iter()
                .any(|w| w.contains("no longer implies continuous"))
        );
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let object = alpha(
            json!({"kafkaCluster": {"bootstrapServers": ["kafka"]}, "topics": ["a b", "x", "x"],
            "storage": {"storageType": "configMap", "configMap": {"name": "cm"}},
            "continuous": true, "stopAtCurrentOffsets": true, "compression": "lz4", "compressionLevel": 4,
            "segmentMaxBytes": 10}),
        );
        let errors = errors(&object);
        for expected in [
            "spec.kafkaCluster.bootstrapServers[0]: must be host:port",
            "spec.topics[0]: contains ' '",
            "spec.topics[2]: is listed twice",
            "spec.storage.storageType: cannot be used here",
            "spec.continuous: cannot be true together with spec.stopAtCurrentOffsets",
            "spec.compressionLevel: is only allowed with zstd",
            "spec.segmentMaxBytes: must be 1048576",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected} not in {errors:#?}"
            );
        }
    }

    #[test]
    fn prior_art_fields_are_refused_or_warned_per_field() {
        let warned = alpha(with(
            base(),
            json!({"circuitBreaker": {"failureThreshold": 3},
            "metrics": {"enabled": true, "port": 9090, "path": "/metrics"}, "checkpoint": {"storage": {"pvcName": "c"}}}),
        ));
        let verdict = admit(&warned);
        assert!(verdict.is_allowed(), "{:?}", verdict.errors);
        assert!(
            verdict
                .warnings
                .iter()
                .any(|w| w.starts_with("spec.metrics.port, spec.metrics.path are ignored"))
        );
        assert!(
            verdict
                .warnings
                .iter()
                .any(|w| w.starts_with("spec.checkpoint.storage is ignored"))
        );
        assert!(
            verdict
                .warnings
                .iter()
                .any(|w| w.starts_with("spec.circuitBreaker is ignored"))
        );
        let create = alpha(with(
            base(),
            json!({"storage": {"storageType": "pvc",
            "pvc": {"claimName": "c", "create": {"enabled": true, "size": "10Gi"}}}}),
        ));
        assert!(errors(&create)[0].starts_with("spec.storage.pvc.create: is not supported"));
    }

    #[test]
    fn storage_type_is_inferred_from_the_only_block() {
        let object = alpha(with(base(), json!({"storage": {"gcs": {"bucket": "b"}}})));
        let mutation = mutate(&object).unwrap();
        // Read, not written: a later apply may change the blocks.
        assert_eq!(mutation.object["spec"]["storage"].get("storageType"), None);
        assert!(
            mutation.warnings.iter().any(|w| w.starts_with(
                "spec.storage.storageType is not set: the location is read as gcs, the only storage block given"
            )),
            "{:?}",
            mutation.warnings
        );
        assert!(validate(&mutation.object, None).unwrap().is_allowed());
        // Without mutation the conversion reads the block given the same way.
        assert!(validate(&object, None).unwrap().is_allowed());
        // Of several blocks, which one is meant is the user's to say.
        let two = alpha(with(
            base(),
            json!({"storage": {"gcs": {"bucket": "b"}, "s3": {"bucket": "b"}}}),
        ));
        assert!(
            errors(&two)
                .iter()
                .any(|e| e
                    .starts_with("spec.storage.storageType: is required when more than one storage block")),
            "{:?}",
            errors(&two)
        );
    }

    #[test]
    fn v1beta1_paths_and_rules() {
        let object = beta(
            json!({"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "topics": ["orders"],
            "excludeTopics": ["orders"], "storage": {"type": "S3", "s3": {"bucket": "b"}},
            "schedule": "0 0 * * * *", "continuous": true, "memoryBudgetBytes": 2_000_000,
            "execution": {"ttlSecondsAfterFinished": 60}}),
        );
        let errors = errors(&object);
        for expected in [
            "spec.excludeTopics[0]: excludes an entry",
            "spec.schedule: cannot be combined with spec.continuous",
            "spec.memoryBudgetBytes: must be at least segmentMaxBytes",
            "spec.execution.ttlSecondsAfterFinished: only applies to one-shot backups",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected} not in {errors:#?}"
            );
        }
        // v1beta1 takes one form of a schedule; the refusal names it. Nothing is rewritten.
        let object = beta(json!({"kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
            "topics": ["orders"], "storage": {"type": "S3", "s3": {"bucket": "b"}}, "schedule": "0 2 * * *"}));
        let mutation = mutate(&object).unwrap();
        assert_eq!(mutation.object["spec"]["schedule"], json!("0 2 * * *"));
        assert_eq!(mutation.object["spec"]["stopAtCurrentOffsets"], json!(false));
        assert_eq!(
            testing::errors(&object),
            [
                "spec.schedule: is a classic 5-field cron expression or macro; v1beta1 schedules take seconds first \
              (sec min hour day-of-month month day-of-week [year]): write \"0 0 2 * * *\" (got \"0 2 * * *\")"
            ]
        );
    }

    #[test]
    fn hub_paths_read_in_the_v1alpha1_spelling() {
        let object = alpha(with(base(), json!({"checkpoint": {"intervalSecs": 0}})));
        let errors = errors(&object);
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.checkpoint.intervalSecs: must be 1 to 3600")),
            "{errors:?}"
        );
        // A 64-bit value is reported once, as written, not as the saturated 32-bit one.
        let object = alpha(with(base(), json!({"pollIntervalMs": 99_999_999_999_i64})));
        let errors = testing::errors(&object);
        assert_eq!(
            errors,
            ["spec.pollIntervalMs: must be 1 to 60000 milliseconds (got 99999999999)"]
        );
    }

    #[test]
    fn schedule_retention_and_suspend_may_change_while_running() {
        let old = with(alpha(with(base(), json!({"schedule": "0 0 * * * *"}))), json!({}));
        let mut old = mutate(&old).unwrap().object;
        old["status"] = json!({"phase": "Running"});
        let mut new = old.clone();
        new["spec"]["suspend"] = json!(true);
        new["spec"]["schedule"] = json!("0 0 */2 * * *");
        new["spec"]["retention"] = json!({"enabled": true, "maxAgeDays": 7, "dryRun": false});
        assert!(validate(&new, Some(&old)).unwrap().is_allowed());
        new["spec"]["topics"] = json!(["orders", "payments"]);
        let verdict = validate(&new, Some(&old)).unwrap();
        assert!(
            verdict.errors[0]
                .message
                .contains("is immutable once the KafkaBackup has started")
        );
    }

    #[test]
    fn retention_without_enabled_stays_off_and_says_so() {
        let object = alpha(with(base(), json!({"retention": {"keepLast": 3}})));
        let mutation = mutate(&object).unwrap();
        assert_eq!(mutation.object["spec"]["retention"]["enabled"], json!(false));
        let hub = convert(mutation.object.clone(), "kafka.oso.sh/v1beta1").unwrap();
        assert!(hub["spec"].get("retention").is_none());
        assert_eq!(
            convert(hub, "kafka.oso.sh/v1alpha1").unwrap()["spec"],
            mutation.object["spec"]
        );
    }
}
