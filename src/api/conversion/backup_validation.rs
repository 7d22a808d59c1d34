//! Conversion of KafkaBackupValidation between v1alpha1 and v1beta1.
//!
//! The shared blocks (`backupRef`, Kafka connection, storage, run phase) and the policy are in
//! [`super::common`]: defaults applied on the way up, values equal to their documented default
//! left out on the way down, except inside the elements of `customWebhooks` (the framework's
//! residue keeps a list only whole, as a changed value, so list elements are written as the
//! mutating webhook completes them). Dropped here and kept by the framework's annotations: v1alpha1
//! `notifications`, evidence format `pdf`, a signing block without a key,
//! `status.checksCompleted`, phase `Ready`; v1beta1 `checks.integrity`, `checks.restoreDrill`,
//! `evidence.enabled: false`, signing with algorithm Ed25519 (v1alpha1 signing means the prior
//! art's ECDSA P-256 keys), `execution`, `status.backupId`, `status.checksSkipped`,
//! `status.lastScheduleTime`, `status.evidence.sha256`. A classic 5-field `schedule` (or a macro)
//! is read in the seconds-first form v1beta1 takes, the v1.0.0 migration.

use super::common::{
    backup_ref_down, backup_ref_up, cluster_down, cluster_up, hub, narrow, non_empty, phase_down, phase_up,
    schedule_up, storage_down, storage_up, unless_default,
};
use crate::api::{v1alpha1 as alpha, v1beta1 as beta};

/// Documented default of `customWebhooks[].timeoutSecs` / `timeoutSeconds`.
const DEFAULT_WEBHOOK_TIMEOUT_SECONDS: i32 = 120;
/// Documented default of `customWebhooks[].expectedStatusCode`.
const DEFAULT_EXPECTED_STATUS_CODE: i32 = 200;
/// Documented default of `evidence.retentionDays`.
const DEFAULT_RETENTION_DAYS: i32 = 90;
const DEFAULT_PRIVATE_KEY_KEY: &str = "signing-key.pem";
const DEFAULT_PUBLIC_KEY_KEY: &str = "signing-key-pub.pem";

hub!(KafkaBackupValidation);

fn spec_up(spec: alpha::KafkaBackupValidationSpec) -> beta::KafkaBackupValidationSpec {
    beta::KafkaBackupValidationSpec {
        backup_ref: backup_ref_up(spec.backup_ref.unwrap_or_default()),
        kafka_cluster: spec.kafka_cluster.map(cluster_up),
        checks: checks_up(spec.checks.unwrap_or_default()),
        evidence: spec.evidence.map(evidence_up),
        schedule: schedule_up(spec.schedule),
        suspend: spec.suspend.unwrap_or(false),
        execution: None,
    }
}

fn checks_up(checks: alpha::ValidationChecksSpec) -> beta::ValidationChecksSpec {
    let custom_webhooks = checks.custom_webhooks.map(|hooks| {
        hooks
            .into_iter()
            .map(|hook| beta::CustomWebhookCheckSpec {
                name: hook.name.unwrap_or_default(),
                url: hook.url.unwrap_or_default(),
                timeout_seconds: narrow(hook.timeout_secs).unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_SECONDS),
                expected_status_code: hook.expected_status_code.unwrap_or(DEFAULT_EXPECTED_STATUS_CODE),
            })
            .collect()
    });
    beta::ValidationChecksSpec {
        integrity: beta::IntegrityCheckSpec::default(),
        message_count: checks.message_count.map(|c| beta::MessageCountCheckSpec {
            enabled: c.enabled.unwrap_or(true),
            fail_threshold: c.fail_threshold.unwrap_or(0),
            topics: c.topics,
        }),
        offset_range: checks.offset_range.map(|c| beta::OffsetRangeCheckSpec {
            enabled: c.enabled.unwrap_or(true),
        }),
        consumer_group_offsets: checks
            .consumer_group_offsets
            .map(|c| beta::ConsumerGroupOffsetsCheckSpec {
                enabled: c.enabled.unwrap_or(true),
                consumer_groups: c.consumer_groups,
            }),
        restore_drill: None,
        custom_webhooks,
    }
}

fn evidence_up(evidence: alpha::EvidenceSpec) -> beta::EvidenceSpec {
    beta::EvidenceSpec {
        enabled: true,
        formats: match evidence.formats {
            // pdf has no v1beta1 value (the webhook refuses it).
            Some(formats) => formats
                .into_iter()
                .filter_map(|f| (f == alpha::EvidenceFormat::Json).then_some(beta::EvidenceFormat::Json))
                .collect(),
            None => vec![beta::EvidenceFormat::Json],
        },
        signing: evidence.signing.and_then(|signing| {
            // Without a key there is nothing to sign with: the webhook refuses it when enabled.
            let key = signing.key_secret?;
            Some(beta::EvidenceSigningSpec {
                enabled: signing.enabled.unwrap_or(false),
                algorithm: beta::SigningAlgorithm::EcdsaP256,
                key_secret: beta::SigningKeySecretRef {
                    name: key.name.unwrap_or_default(),
                    private_key_key: key
                        .private_key_key
                        .unwrap_or_else(|| DEFAULT_PRIVATE_KEY_KEY.into()),
                    public_key_key: key
                        .public_key_key
                        .unwrap_or_else(|| DEFAULT_PUBLIC_KEY_KEY.into()),
                },
            })
        }),
        storage: evidence.storage.map(storage_up),
        retention_days: evidence.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
    }
}

fn spec_down(spec: beta::KafkaBackupValidationSpec) -> alpha::KafkaBackupValidationSpec {
    alpha::KafkaBackupValidationSpec {
        backup_ref: backup_ref_down(spec.backup_ref),
        kafka_cluster: spec.kafka_cluster.map(cluster_down),
        checks: checks_down(spec.checks),
        // A disabled evidence block has no v1alpha1 form (there, the block means "write reports").
        evidence: spec.evidence.filter(|e| e.enabled).map(evidence_down),
        notifications: None,
        schedule: spec.schedule,
        suspend: spec.suspend.then_some(true),
    }
}

fn checks_down(checks: beta::ValidationChecksSpec) -> Option<alpha::ValidationChecksSpec> {
    let down = alpha::ValidationChecksSpec {
        message_count: checks.message_count.map(|c| alpha::MessageCountCheckSpec {
            enabled: unless_default(c.enabled, &true),
            fail_threshold: unless_default(c.fail_threshold, &0),
            topics: c.topics,
        }),
        offset_range: checks.offset_range.map(|c| alpha::OffsetRangeCheckSpec {
            enabled: unless_default(c.enabled, &true),
        }),
        consumer_group_offsets: checks
            .consumer_group_offsets
            .map(|c| alpha::ConsumerGroupOffsetsCheckSpec {
                enabled: unless_default(c.enabled, &true),
                consumer_groups: c.consumer_groups,
            }),
        custom_webhooks: checks.custom_webhooks.map(|hooks| {
            hooks
                .into_iter()
                .map(|hook| alpha::CustomWebhookCheckSpec {
                    name: non_empty(hook.name),
                    url: non_empty(hook.url),
                    // Written even when default: the residue keeps a list only whole, as a
                    // change, so a list element must come back as the mutation wrote it.
                    timeout_secs: Some(i64::from(hook.timeout_seconds)),
                    expected_status_code: Some(hook.expected_status_code),
                })
                .collect()
        }),
    };
    (down != alpha::ValidationChecksSpec::default()).then_some(down)
}

fn evidence_down(evidence: beta::EvidenceSpec) -> alpha::EvidenceSpec {
    alpha::EvidenceSpec {
        formats: unless_default(evidence.formats, &[beta::EvidenceFormat::Json][..]).map(|formats| {
            formats
                .into_iter()
                .map(|_json| alpha::EvidenceFormat::Json)
                .collect()
        }),
        // v1alpha1 signing means ECDSA P-256 (the prior art's keys): an Ed25519 signing block
        // has no v1alpha1 form and travels in the annotation whole.
        signing: evidence
            .signing
            .filter(|s| s.algorithm == beta::SigningAlgorithm::EcdsaP256)
            .map(|s| alpha::EvidenceSigningSpec {
                enabled: s.enabled.then_some(true),
                key_secret: Some(alpha::SigningKeySecretRef {
                    name: non_empty(s.key_secret.name),
                    private_key_key: unless_default(s.key_secret.private_key_key, DEFAULT_PRIVATE_KEY_KEY),
                    public_key_key: unless_default(s.key_secret.public_key_key, DEFAULT_PUBLIC_KEY_KEY),
                }),
            }),
        storage: evidence.storage.map(storage_down),
        retention_days: unless_default(evidence.retention_days, &DEFAULT_RETENTION_DAYS),
    }
}

fn result_up(result: alpha::ValidationResult) -> beta::CheckOutcome {
    match result {
        alpha::ValidationResult::Pass => beta::CheckOutcome::Passed,
        alpha::ValidationResult::Fail => beta::CheckOutcome::Failed,
        alpha::ValidationResult::Warn => beta::CheckOutcome::Warning,
        alpha::ValidationResult::Skip => beta::CheckOutcome::Skipped,
    }
}

fn result_down(result: beta::CheckOutcome) -> alpha::ValidationResult {
    match result {
        beta::CheckOutcome::Passed => alpha::ValidationResult::Pass,
        beta::CheckOutcome::Failed => alpha::ValidationResult::Fail,
        beta::CheckOutcome::Warning => alpha::ValidationResult::Warn,
        beta::CheckOutcome::Skipped => alpha::ValidationResult::Skip,
    }
}

fn outcome_up(outcome: alpha::CheckOutcome) -> beta::CheckOutcome {
    match outcome {
        alpha::CheckOutcome::Passed => beta::CheckOutcome::Passed,
        alpha::CheckOutcome::Failed => beta::CheckOutcome::Failed,
        alpha::CheckOutcome::Skipped => beta::CheckOutcome::Skipped,
        alpha::CheckOutcome::Warning => beta::CheckOutcome::Warning,
    }
}

fn outcome_down(outcome: beta::CheckOutcome) -> alpha::CheckOutcome {
    match outcome {
        beta::CheckOutcome::Passed => alpha::CheckOutcome::Passed,
        beta::CheckOutcome::Failed => alpha::CheckOutcome::Failed,
        beta::CheckOutcome::Skipped => alpha::CheckOutcome::Skipped,
        beta::CheckOutcome::Warning => alpha::CheckOutcome::Warning,
    }
}

fn status_up(status: alpha::KafkaBackupValidationStatus) -> beta::KafkaBackupValidationStatus {
    let evidence = beta::EvidenceStatus {
        path: status.evidence_report_path,
        sha256: None,
        signed: status.evidence_report_signed,
    };
    beta::KafkaBackupValidationStatus {
        phase: status.phase.and_then(phase_up),
        message: status.message,
        result: status.validation_result.map(result_up),
        backup_id: None,
        start_time: status.start_time,
        completion_time: status.completion_time,
        checks_total: status.checks_total,
        checks_passed: status.checks_passed,
        checks_failed: status.checks_failed,
        checks_warned: status.checks_warned,
        checks_skipped: None,
        checks: status.check_results.map(|results| {
            results
                .into_iter()
                .map(|r| beta::ValidationCheckResult {
                    name: r.check_name.unwrap_or_default(),
                    // An outcome-less result (never written by the prior art) reads as Skipped.
                    outcome: r.outcome.map(outcome_up).unwrap_or(beta::CheckOutcome::Skipped),
                    message: r.message,
                    duration_ms: r.duration_ms,
                })
                .collect()
        }),
        evidence: (evidence != beta::EvidenceStatus::default()).then_some(evidence),
        last_validation_time: status.last_validation_time,
        last_schedule_time: None,
        next_schedule_time: status.next_scheduled_validation,
        observed_generation: status.observed_generation,
        conditions: status.conditions,
    }
}

fn status_down(status: beta::KafkaBackupValidationStatus) -> alpha::KafkaBackupValidationStatus {
    let evidence = status.evidence.unwrap_or_default();
    alpha::KafkaBackupValidationStatus {
        phase: status.phase.map(phase_down),
        message: status.message,
        validation_result: status.result.map(result_down),
        start_time: status.start_time,
        completion_time: status.completion_time,
        checks_total: status.checks_total,
        checks_completed: None,
        checks_passed: status.checks_passed,
        checks_failed: status.checks_failed,
        checks_warned: status.checks_warned,
        check_results: status.checks.map(|checks| {
            checks
                .into_iter()
                .map(|c| alpha::CheckResult {
                    check_name: non_empty(c.name),
                    outcome: Some(outcome_down(c.outcome)),
                    message: c.message,
                    duration_ms: c.duration_ms,
                })
                .collect()
        }),
        evidence_report_path: evidence.path,
        evidence_report_signed: evidence.signed,
        last_validation_time: status.last_validation_time,
        next_scheduled_validation: status.next_schedule_time,
        observed_generation: status.observed_generation,
        conditions: status.conditions,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::{conversion::convert, v1beta1 as beta};

    #[test]
    fn signing_keys_default_to_ecdsa_and_ed25519_travels_in_the_annotation() {
        let object = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaBackupValidation",
            "metadata": {"name": "v"},
            "spec": {"backupRef": {"name": "nightly"},
                "evidence": {"signing": {"enabled": true, "keySecret": {"name": "k"}}}}});
        let hub = convert(object, "kafka.oso.sh/v1beta1").unwrap();
        assert_eq!(
            hub["spec"]["evidence"]["signing"]["algorithm"],
            json!("EcdsaP256")
        );

        let hub = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackupValidation",
            "metadata": {"name": "v"},
            "spec": {"backupRef": {"kafkaBackupRef": {"name": "nightly"}},
                "evidence": {"signing": {"keySecret": {"name": "k"}}}}});
        let spoke = convert(hub, "kafka.oso.sh/v1alpha1").unwrap();
        assert!(spoke["spec"]["evidence"].get("signing").is_none(), "{spoke}");
        // Back as written (the algorithm left to its default), which is Ed25519.
        let again: beta::KafkaBackupValidation =
            serde_json::from_value(convert(spoke, "kafka.oso.sh/v1beta1").unwrap()).unwrap();
        let signing = again.spec.evidence.and_then(|e| e.signing).unwrap();
        assert_eq!(signing.algorithm, beta::SigningAlgorithm::Ed25519);
    }

    #[test]
    fn status_results_use_the_v1beta1_outcomes() {
        let object = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaBackupValidation",
            "metadata": {"name": "v"}, "spec": {"backupRef": {"name": "nightly"}},
            "status": {"phase": "Completed", "validationResult": "Warn", "checksCompleted": 2,
                "checkResults": [{"checkName": "MessageCount", "outcome": "Warning"}],
                "evidenceReportPath": "s3://b/evidence-reports/r.json", "evidenceReportSigned": true,
                "nextScheduledValidation": "2024-12-02T03:00:00Z"}});
        let hub = convert(object.clone(), "kafka.oso.sh/v1beta1").unwrap();
        assert_eq!(
            hub["status"],
            json!({"phase": "Completed", "result": "Warning",
                "checks": [{"name": "MessageCount", "outcome": "Warning"}],
                "evidence": {"path": "s3://b/evidence-reports/r.json", "signed": true},
                "nextScheduleTime": "2024-12-02T03:00:00Z"})
        );
        let back = convert(hub, "kafka.oso.sh/v1alpha1").unwrap();
        assert_eq!(back["status"], object["status"]);
    }
}
