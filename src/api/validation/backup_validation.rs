//! Admission rules of KafkaBackupValidation: validation of both versions, mutation of v1alpha1.
//!
//! Prior-art fields this operator does not implement, decided per field:
//! - `notifications.slack` / `notifications.pagerduty`: refused; they ask for messages to be sent
//!   and nothing sends them (the prior art never did either). An empty `notifications` block asks
//!   for nothing and only gets a warning.
//! - evidence format `pdf`: refused; the user expects a PDF report and none is produced.

use super::common::{self, BACKUP_STORAGE, SECONDS_1_TO_3600};
use super::spoke::{
    BACKUP_REF_PATHS, Defaults, explain_backup_ref, explain_storage, mutate_cluster, rename,
    spoke_backup_ref, spoke_cluster, spoke_storage, storage_type_path,
};
use super::{Verdict, index, path};
use crate::api::{admission::Admit, v1alpha1 as alpha, v1beta1 as beta};

/// Most external checks one validation may call.
const MAX_CUSTOM_WEBHOOKS: usize = 20;

impl Admit for beta::KafkaBackupValidation {
    /// A scheduled validation runs for months: `suspend` pauses it, `schedule` changes its
    /// cadence, `evidence` changes where reports go, how long they are kept and which key signs
    /// them (key rotation), `execution` the retries and deadline of later runs. What is validated
    /// (`backupRef`, `kafkaCluster`, `checks`) stays fixed, so every result in the status answers
    /// the same question; to validate something else, create another KafkaBackupValidation.
    const MUTABLE_WHILE_STARTED: &'static [&'static str] = &["suspend", "schedule", "evidence", "execution"];

    fn spoke_path(hub_path: &str) -> String {
        let path = rename(hub_path, BACKUP_REF_PATHS)
            .unwrap_or_else(|| hub_path.replace(".timeoutSeconds", ".timeoutSecs"));
        storage_type_path(&path)
    }

    fn validate_spoke(spoke: &alpha::KafkaBackupValidation, v: &mut Verdict) {
        let spec = &spoke.spec;
        if let Some(backup) = &spec.backup_ref {
            spoke_backup_ref(v, "spec.backupRef", backup);
        }
        spoke_cluster(v, "spec.kafkaCluster", spec.kafka_cluster.as_ref());
        let hooks = spec
            .checks
            .as_ref()
            .and_then(|c| c.custom_webhooks.as_deref())
            .unwrap_or_default();
        for (i, hook) in hooks.iter().enumerate() {
            // 64-bit in v1alpha1, 32-bit in v1beta1: checked here on the value as written.
            if let Some(seconds) = hook.timeout_secs.filter(|s| !(1..=3600).contains(s)) {
                v.error(
                    path(&index("spec.checks.customWebhooks", i), "timeoutSecs"),
                    SECONDS_1_TO_3600,
                    seconds,
                );
            }
        }
        if let Some(evidence) = &spec.evidence {
            for (i, format) in evidence.formats.iter().flatten().enumerate() {
                if *format == alpha::EvidenceFormat::Pdf {
                    v.error(
                        index("spec.evidence.formats", i),
                        "pdf reports are not produced by this operator (nor were they by the prior art): use json",
                        "pdf",
                    );
                }
            }
            if let Some(signing) = &evidence.signing
                && signing.enabled == Some(true)
                && signing.key_secret.is_none()
            {
                v.missing(
                    "spec.evidence.signing.keySecret",
                    "is required when signing is enabled: the Secret holding the PEM key pair",
                );
            }
            if let Some(storage) = &evidence.storage {
                spoke_storage(v, "spec.evidence.storage", storage);
            }
        }
        if let Some(notifications) = &spec.notifications {
            let channels = [
                ("slack", notifications.slack.is_some()),
                ("pagerduty", notifications.pagerduty.is_some()),
            ];
            let mut any = false;
            for (channel, set) in channels {
                if set {
                    any = true;
                    v.missing(
                        path("spec.notifications", channel),
                        "is not implemented: nothing would be sent (the prior art never sent it either); remove it \
                         and alert on the validation's Events or the operator's metrics instead",
                    );
                }
            }
            if !any {
                v.warn("spec.notifications is empty and ignored: this operator sends no notifications; you can remove it");
            }
        }
    }

    fn mutate_spoke(spoke: &mut alpha::KafkaBackupValidation, warnings: &mut Vec<String>) {
        let spec = &mut spoke.spec;
        let mut defaults = Defaults::default();
        if let Some(reference) = &spec.backup_ref {
            explain_backup_ref("spec.backupRef", reference, warnings);
        }
        if let Some(cluster) = &mut spec.kafka_cluster {
            mutate_cluster("spec.kafkaCluster", cluster, &mut defaults);
        }
        common::explain_schedule("spec.schedule", spec.schedule.as_deref(), warnings);
        if let Some(checks) = &mut spec.checks {
            if let Some(check) = &mut checks.message_count {
                defaults.set(&mut check.enabled, "spec.checks.messageCount.enabled", true);
                defaults.set(
                    &mut check.fail_threshold,
                    "spec.checks.messageCount.failThreshold",
                    0,
                );
            }
            if let Some(check) = &mut checks.offset_range {
                defaults.set(&mut check.enabled, "spec.checks.offsetRange.enabled", true);
            }
            if let Some(check) = &mut checks.consumer_group_offsets {
                defaults.set(
                    &mut check.enabled,
                    "spec.checks.consumerGroupOffsets.enabled",
                    true,
                );
            }
            for (i, hook) in checks.custom_webhooks.iter_mut().flatten().enumerate() {
                let at = index("spec.checks.customWebhooks", i);
                defaults.set(&mut hook.timeout_secs, &path(&at, "timeoutSecs"), 120);
                defaults.set(
                    &mut hook.expected_status_code,
                    &path(&at, "expectedStatusCode"),
                    200,
                );
            }
        }
        if let Some(evidence) = &mut spec.evidence {
            defaults.set(
                &mut evidence.formats,
                "spec.evidence.formats",
                vec![alpha::EvidenceFormat::Json],
            );
            defaults.set(&mut evidence.retention_days, "spec.evidence.retentionDays", 90);
            if let Some(signing) = &mut evidence.signing
                && signing.enabled.is_none()
            {
                signing.enabled = Some(false);
                warnings.push(
                    "spec.evidence.signing.enabled: set to false explicitly (its default): reports stay unsigned \
                     until you set signing.enabled: true"
                        .into(),
                );
            }
            if let Some(storage) = &evidence.storage {
                explain_storage("spec.evidence.storage", storage, warnings);
            }
        }
        defaults.set(&mut spec.suspend, "spec.suspend", false);
        defaults.finish(warnings);
    }

    fn validate_hub(hub: &Self, v: &mut Verdict) {
        let spec = &hub.spec;
        common::backup_ref(v, "spec.backupRef", &spec.backup_ref);
        if let Some(cluster) = &spec.kafka_cluster {
            common::kafka_cluster(v, "spec.kafkaCluster", cluster);
        }
        checks(v, "spec.checks", &spec.checks, spec.kafka_cluster.is_some());
        if let Some(evidence) = &spec.evidence {
            evidence_rules(v, "spec.evidence", evidence);
        }
        if let Some(schedule) = &spec.schedule {
            common::schedule_rule(v, "spec.schedule", schedule);
        }
        if let Some(execution) = &spec.execution {
            common::execution(v, "spec.execution", execution);
            if let (Some(ttl), Some(_)) = (execution.ttl_seconds_after_finished, &spec.schedule) {
                v.error(
                    "spec.execution.ttlSecondsAfterFinished",
                    "only applies to one-shot validations: a scheduled validation never finishes, so it is never \
                     deleted",
                    ttl,
                );
            }
        }
    }
}

fn checks(v: &mut Verdict, at: &str, checks: &beta::ValidationChecksSpec, cluster: bool) {
    let drill = checks.restore_drill.as_ref().filter(|d| d.enabled);
    let counted_somewhere = cluster || drill.is_some();
    if let Some(check) = checks.message_count.as_ref() {
        let at = path(at, "messageCount");
        if check.enabled && !counted_somewhere {
            v.missing(
                &at,
                "needs spec.kafkaCluster or an enabled checks.restoreDrill to count the records in",
            );
        }
        if check.fail_threshold < 0 {
            v.error(
                path(&at, "failThreshold"),
                "must not be negative",
                check.fail_threshold,
            );
        }
        let topics = check.topics.as_deref().unwrap_or_default();
        for (i, topic) in topics.iter().enumerate() {
            common::topic_pattern(v, &index(&path(&at, "topics"), i), topic);
            if topics[..i].contains(topic) {
                v.error(index(&path(&at, "topics"), i), "is listed twice", topic);
            }
        }
    }
    if let Some(check) = checks.offset_range.as_ref()
        && check.enabled
        && !counted_somewhere
    {
        v.missing(
            path(at, "offsetRange"),
            "needs spec.kafkaCluster or an enabled checks.restoreDrill to compare offsets with",
        );
    }
    if let Some(check) = checks.consumer_group_offsets.as_ref() {
        let at = path(at, "consumerGroupOffsets");
        if check.enabled && !cluster {
            v.missing(
                &at,
                "needs spec.kafkaCluster: the consumer groups' offsets are read there",
            );
        }
        common::consumer_groups(
            v,
            &path(&at, "consumerGroups"),
            check.consumer_groups.as_deref().unwrap_or_default(),
            false,
        );
    }
    if let Some(drill) = checks.restore_drill.as_ref() {
        let at = path(at, "restoreDrill");
        if drill.enabled && !cluster && drill.kafka_cluster.is_none() {
            v.missing(
                &at,
                "needs spec.kafkaCluster or checks.restoreDrill.kafkaCluster to restore into",
            );
        }
        if let Some(target) = &drill.kafka_cluster {
            common::kafka_cluster(v, &path(&at, "kafkaCluster"), target);
        }
        let prefix = &drill.topic_prefix;
        let legal = prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if prefix.is_empty() || prefix.len() > 100 || !legal {
            v.error(
                path(&at, "topicPrefix"),
                "must be 1 to 100 of letters, digits, '.', '_' and '-': it starts the scratch topics' names",
                prefix,
            );
        }
    }
    let hooks = checks.custom_webhooks.as_deref().unwrap_or_default();
    if hooks.len() > MAX_CUSTOM_WEBHOOKS {
        v.error(
            path(at, "customWebhooks"),
            format!(
                "has {} entries; at most {MAX_CUSTOM_WEBHOOKS} external checks are allowed",
                hooks.len()
            ),
            hooks.len(),
        );
    }
    for (i, hook) in hooks.iter().enumerate() {
        let at = index(&path(at, "customWebhooks"), i);
        if hook.name.trim().is_empty() {
            v.missing(
                path(&at, "name"),
                "must not be empty: it names the check in the results",
            );
        } else if hook.name.len() > 63 {
            v.error(path(&at, "name"), "must be at most 63 characters", &hook.name);
        } else if hooks[..i].iter().any(|h| h.name == hook.name) {
            v.error(
                path(&at, "name"),
                "is used by another custom webhook; names must be unique",
                &hook.name,
            );
        }
        match hook.url.split_once("://") {
            Some(("https" | "http", rest)) if !rest.is_empty() && hook.url.len() <= 2048 => {
                if hook.url.starts_with("http://") {
                    v.warn(format!(
                        "{at}.url is plain http: the validation details are sent unencrypted to {}",
                        hook.url
                    ));
                }
            }
            _ => v.error(
                path(&at, "url"),
                "must be an http:// or https:// URL of at most 2048 characters",
                &hook.url,
            ),
        }
        if !(1..=3600).contains(&hook.timeout_seconds) {
            v.error(
                path(&at, "timeoutSeconds"),
                SECONDS_1_TO_3600,
                hook.timeout_seconds,
            );
        }
        if !(100..=599).contains(&hook.expected_status_code) {
            v.error(
                path(&at, "expectedStatusCode"),
                "must be an HTTP status code (100 to 599)",
                hook.expected_status_code,
            );
        }
    }
    let any_enabled = checks.integrity.enabled
        || checks.message_count.as_ref().is_some_and(|c| c.enabled)
        || checks.offset_range.as_ref().is_some_and(|c| c.enabled)
        || checks.consumer_group_offsets.as_ref().is_some_and(|c| c.enabled)
        || drill.is_some()
        || !hooks.is_empty();
    if !any_enabled {
        v.missing(
            at,
            "enables no check: a validation without checks proves nothing; enable integrity or another check",
        );
    }
}

fn evidence_rules(v: &mut Verdict, at: &str, evidence: &beta::EvidenceSpec) {
    if evidence.formats.is_empty() {
        v.missing(path(at, "formats"), "needs at least one format (Json)");
    }
    for (i, format) in evidence.formats.iter().enumerate() {
        if evidence.formats[..i].contains(format) {
            v.error(index(&path(at, "formats"), i), "is listed twice", format);
        }
    }
    if let Some(signing) = &evidence.signing
        && signing.enabled
    {
        let key = path(at, "signing.keySecret");
        common::secret_name(v, &path(&key, "name"), &signing.key_secret.name);
        common::non_empty(
            v,
            &path(&key, "privateKeyKey"),
            &signing.key_secret.private_key_key,
        );
        common::non_empty(v, &path(&key, "publicKeyKey"), &signing.key_secret.public_key_key);
        if signing.key_secret.private_key_key == signing.key_secret.public_key_key {
            v.error(
                path(&key, "publicKeyKey"),
                "must differ from privateKeyKey: the report embeds the public key, never the private one",
                &signing.key_secret.public_key_key,
            );
        }
    }
    if let Some(storage) = &evidence.storage {
        common::storage(v, &path(at, "storage"), storage, BACKUP_STORAGE);
    }
    if evidence.retention_days < 1 {
        v.error(
            path(at, "retentionDays"),
            "must be at least 1 day",
            evidence.retention_days,
        );
    }
    if !evidence.enabled && (evidence.signing.is_some() || evidence.storage.is_some()) {
        v.warn(format!(
            "{at}.enabled is false: no report is written, so its signing and storage are not used"
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::api::admission::{mutate, validate};
    use crate::api::conversion::convert;
    use crate::api::validation::testing::{self, errors};

    fn alpha(spec: Value) -> Value {
        testing::alpha("KafkaBackupValidation", spec)
    }

    fn beta(spec: Value) -> Value {
        testing::beta("KafkaBackupValidation", spec)
    }

    #[test]
    fn a_backup_reference_is_required_in_both_spellings() {
        let missing = errors(&alpha(json!({})));
        assert!(
            missing[0].starts_with("spec.backupRef: needs kafkaBackupRef"),
            "{missing:?}"
        );
        let both = errors(&alpha(json!({"backupRef": {"name": "nightly", "backupId": "x",
            "storage": {"storageType": "s3", "s3": {"bucket": "b"}}}})));
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(
            both[0].starts_with("spec.backupRef: takes kafkaBackupRef or storage, not both (v1alpha1: name")
        );
        let namespace_only = errors(&alpha(json!({"backupRef": {"namespace": "kafka"}})));
        assert!(
            namespace_only[0].starts_with("spec.backupRef.namespace: needs spec.backupRef.name"),
            "{namespace_only:?}"
        );
        assert!(
            namespace_only[1].starts_with("spec.backupRef: needs kafkaBackupRef"),
            "{namespace_only:?}"
        );
        let no_id = errors(&beta(
            json!({"backupRef": {"storage": {"type": "S3", "s3": {"bucket": "b"}}}}),
        ));
        assert!(
            no_id[0].starts_with("spec.backupRef.backupId: is required with storage"),
            "{no_id:?}"
        );
        let bad_name = errors(&alpha(json!({"backupRef": {"name": "Nightly_Backup"}})));
        assert!(
            bad_name[0].starts_with("spec.backupRef.name: must be a Kubernetes object name"),
            "{bad_name:?}"
        );
    }

    #[test]
    fn signing_needs_a_key_when_enabled() {
        let spoke = errors(&alpha(json!({"backupRef": {"name": "nightly"},
            "evidence": {"signing": {"enabled": true}}})));
        assert!(spoke[0].starts_with("spec.evidence.signing.keySecret: is required when signing is enabled"));
        let hub = errors(&beta(
            json!({"backupRef": {"kafkaBackupRef": {"name": "nightly"}},
            "evidence": {"signing": {"keySecret": {"name": ""}}}}),
        ));
        assert!(
            hub[0].starts_with("spec.evidence.signing.keySecret.name: must be a Kubernetes object name"),
            "{hub:?}"
        );
        let disabled = mutate(&alpha(json!({"backupRef": {"name": "nightly"},
            "evidence": {"signing": {"keySecret": {"name": "k"}}}})))
        .unwrap();
        assert_eq!(
            disabled.object["spec"]["evidence"]["signing"]["enabled"],
            json!(false)
        );
        assert!(
            disabled
                .warnings
                .iter()
                .any(|w| w.starts_with("spec.evidence.signing.enabled: set to false"))
        );
    }

    #[test]
    fn cluster_checks_need_a_cluster_and_some_check_must_run() {
        let errors = errors(&beta(
            json!({"backupRef": {"kafkaBackupRef": {"name": "nightly"}},
            "checks": {"integrity": {"enabled": false}, "messageCount": {}, "consumerGroupOffsets": {"enabled": false},
                "restoreDrill": {"enabled": false}}}),
        ));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.checks.messageCount: needs spec.kafkaCluster")),
            "{errors:?}"
        );
        let none = testing::errors(&beta(
            json!({"backupRef": {"kafkaBackupRef": {"name": "nightly"}},
            "checks": {"integrity": {"enabled": false}}}),
        ));
        assert!(none[0].starts_with("spec.checks: enables no check"), "{none:?}");
    }

    #[test]
    fn prior_art_only_features_are_refused() {
        let errors = errors(&alpha(json!({"backupRef": {"name": "nightly"},
            "evidence": {"formats": ["json", "pdf"]},
            "notifications": {"slack": {"webhookSecret": {"name": "s", "key": "url"}}}})));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.evidence.formats[1]: pdf reports are not produced"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.notifications.slack: is not implemented"))
        );
    }

    #[test]
    fn webhook_paths_use_the_v1alpha1_spelling() {
        let errors = errors(&alpha(json!({"backupRef": {"name": "nightly"},
            "checks": {"customWebhooks": [{"name": "gate", "url": "ftp://x", "timeoutSecs": 0}]}})));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.checks.customWebhooks[0].url: must be an http"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.checks.customWebhooks[0].timeoutSecs: must be 1 to 3600"))
        );
    }

    #[test]
    fn mutation_is_idempotent_and_evidence_may_change_while_scheduled() {
        let object = alpha(json!({"backupRef": {"name": "nightly"}, "schedule": "30 3 * * *",
            "checks": {"messageCount": {}, "customWebhooks": [{"name": "gate", "url": "https://gate/check"}]},
            "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
            "evidence": {"signing": {"enabled": true, "keySecret": {"name": "k"}}}}));
        let mutation = mutate(&object).unwrap();
        // Kept as written, read with seconds first.
        assert_eq!(mutation.object["spec"]["schedule"], json!("30 3 * * *"));
        assert!(
            mutation
                .warnings
                .iter()
                .any(|w| w.starts_with("spec.schedule: \"30 3 * * *\" is read as \"0 30 3 * * *\"")),
            "{:?}",
            mutation.warnings
        );
        assert_eq!(
            convert(mutation.object.clone(), "kafka.oso.sh/v1beta1").unwrap()["spec"]["schedule"],
            json!("0 30 3 * * *")
        );
        let again = mutate(&mutation.object).unwrap();
        assert_eq!(again.object, mutation.object);
        assert!(
            again.warnings.iter().all(|w| w.starts_with("spec.schedule:")),
            "only the explanation comes again: {:?}",
            again.warnings
        );
        let mut old = mutation.object.clone();
        old["status"] = json!({"phase": "Completed"});
        let mut new = old.clone();
        new["spec"]["evidence"]["signing"]["keySecret"]["name"] = json!("rotated-key");
        new["spec"]["suspend"] = json!(true);
        assert!(validate(&new, Some(&old)).unwrap().is_allowed());
        new["spec"]["checks"]["messageCount"]["failThreshold"] = json!(5);
        assert!(!validate(&new, Some(&old)).unwrap().is_allowed());
    }
}
