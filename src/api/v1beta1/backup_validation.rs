//! KafkaBackupValidation v1beta1: proves that a backup set is usable, by reading it (integrity),
//! comparing it with a cluster (counts, offset ranges, consumer groups), restoring it into
//! scratch topics (restore drill) and asking external checks; optionally writes a signed evidence
//! report. Runs once or on a schedule.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::backup::{SCHEDULE_MESSAGE, SCHEDULE_RULE, TOPIC_GLOB_PATTERN};
use super::{BackupRef, ExecutionSpec, KafkaClusterSpec, RunPhase, StorageSpec};

/// Validates a backup set with the checks chosen in `checks` and, with `evidence`, stores a
/// (signed) evidence report of the outcome. Runs once, or on every tick of `schedule`.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
// rustfmt splits the printer columns over lines, which clippy misreads as duplicated keys.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1beta1",
    kind = "KafkaBackupValidation",
    namespaced,
    status = "KafkaBackupValidationStatus",
    shortname = "kbv",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Validates a Kafka backup set and produces evidence reports, once or on a schedule.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Result",
        type_ = "string",
        json_path = ".status.result",
        description = "Overall result of the last validation"
    ),
    printcolumn(
        name = "Passed",
        type_ = "integer",
        json_path = ".status.checksPassed",
        description = "Checks passed"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.checksFailed",
        description = "Checks failed"
    ),
    printcolumn(
        name = "Last Validation",
        type_ = "date",
        json_path = ".status.lastValidationTime",
        description = "Completion of the last validation"
    ),
    printcolumn(
        name = "Next",
        type_ = "date",
        json_path = ".status.nextScheduleTime",
        priority = 1,
        description = "Next scheduled validation"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.checks) || !has(self.checks.messageCount) || !self.checks.messageCount.enabled || has(self.kafkaCluster) || (has(self.checks.restoreDrill) && self.checks.restoreDrill.enabled)")
        .message("checks.messageCount needs kafkaCluster or an enabled checks.restoreDrill to count the records in"),
    validation = Rule::new("!has(self.checks) || !has(self.checks.offsetRange) || !self.checks.offsetRange.enabled || has(self.kafkaCluster) || (has(self.checks.restoreDrill) && self.checks.restoreDrill.enabled)")
        .message("checks.offsetRange needs kafkaCluster or an enabled checks.restoreDrill to compare offsets with"),
    validation = Rule::new("!has(self.checks) || !has(self.checks.consumerGroupOffsets) || !self.checks.consumerGroupOffsets.enabled || has(self.kafkaCluster)")
        .message("checks.consumerGroupOffsets needs kafkaCluster"),
    validation = Rule::new("!has(self.checks) || !has(self.checks.restoreDrill) || !self.checks.restoreDrill.enabled || has(self.kafkaCluster) || has(self.checks.restoreDrill.kafkaCluster)")
        .message("checks.restoreDrill needs kafkaCluster or checks.restoreDrill.kafkaCluster to restore into"),
    validation = Rule::new(SCHEDULE_RULE).message(SCHEDULE_MESSAGE),
)]
pub struct KafkaBackupValidationSpec {
    /// The backup set to validate.
    pub backup_ref: BackupRef,
    /// The Kafka cluster the cluster checks compare the backup set with (messageCount,
    /// offsetRange, consumerGroupOffsets), e.g. the source cluster or a cluster it was restored
    /// into; also the default target of `checks.restoreDrill`. Absent: only checks that need no
    /// cluster run.
    pub kafka_cluster: Option<KafkaClusterSpec>,
    /// The checks to run (default: integrity only).
    #[serde(default)]
    pub checks: ValidationChecksSpec,
    /// Evidence report of each validation. Absent: no report.
    pub evidence: Option<EvidenceSpec>,
    /// Cron schedule in UTC, seconds first: 6 or 7 fields, e.g. `0 0 3 * * *` daily at 03:00. A
    /// classic 5-field expression or a macro is refused, naming its 6-field form (v1alpha1
    /// accepts them and reads them in this form). Absent: the validation runs once.
    #[schemars(length(min = 1, max = 128))]
    pub schedule: Option<String>,
    /// Start no new validation while true; one in progress is cancelled (default false).
    #[serde(default)]
    pub suspend: bool,
    /// Retries, deadline and clean-up of each validation run.
    pub execution: Option<ExecutionSpec>,
}

/// The checks of a validation. Every check present and enabled contributes one result.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationChecksSpec {
    /// Read every segment of the backup set and check it against the manifest: presence,
    /// size, format, CRC32, record count and offset range. Needs no cluster (default enabled).
    #[serde(default)]
    pub integrity: IntegrityCheckSpec,
    /// Compare the record count of every partition in the manifest with the offset range of the
    /// same partition in the cluster (or the restore drill's topics).
    pub message_count: Option<MessageCountCheckSpec>,
    /// Check that every partition in the cluster (or the restore drill's topics) reaches at least
    /// the last offset the backup holds.
    pub offset_range: Option<OffsetRangeCheckSpec>,
    /// Check that the committed offsets of consumer groups in `kafkaCluster` can be read and lie
    /// within the partitions' offset ranges.
    pub consumer_group_offsets: Option<ConsumerGroupOffsetsCheckSpec>,
    /// Restore the backup set into scratch topics, run messageCount and offsetRange against them,
    /// then delete them.
    pub restore_drill: Option<RestoreDrillCheckSpec>,
    /// External checks: each URL receives an HTTP POST describing the validation and answers
    /// with its verdict.
    #[schemars(
        length(max = 20),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])
    )]
    pub custom_webhooks: Option<Vec<CustomWebhookCheckSpec>>,
}

fn default_true() -> bool {
    true
}

/// The integrity check of the stored segments.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrityCheckSpec {
    /// Run the check (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for IntegrityCheckSpec {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// The record-count check.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageCountCheckSpec {
    /// Run the check (default true when the block is present).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Records a partition may differ by before the check fails (default 0). Compacted and
    /// transactional topics have offset gaps, so give them a tolerance or leave them out.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub fail_threshold: i64,
    /// Topics to check, by their name in the backup. Absent or empty: every topic.
    #[schemars(inner(pattern(TOPIC_GLOB_PATTERN)), extend("x-kubernetes-list-type" = "set"))]
    pub topics: Option<Vec<String>>,
}

/// The offset-range check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetRangeCheckSpec {
    /// Run the check (default true when the block is present).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// The consumer-group offsets check.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupOffsetsCheckSpec {
    /// Run the check (default true when the block is present).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Consumer groups to check. Absent or empty: every group in the backup's consumer-group
    /// snapshot.
    #[schemars(inner(length(min = 1)), extend("x-kubernetes-list-type" = "set"))]
    pub consumer_groups: Option<Vec<String>>,
}

/// The restore drill: a real restore into scratch topics, deleted afterwards.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreDrillCheckSpec {
    /// Run the drill (default true when the block is present).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The cluster to restore into (default: `kafkaCluster`).
    pub kafka_cluster: Option<KafkaClusterSpec>,
    /// Prefix of the scratch topics: topic `t` is restored as `<topicPrefix>t` (default
    /// `kbv-drill-`). Existing topics with these names are never written to: the drill fails
    /// instead.
    #[serde(default = "default_topic_prefix")]
    #[schemars(length(min = 1, max = 100), pattern(r"^[A-Za-z0-9._-]+$"))]
    pub topic_prefix: String,
}

fn default_topic_prefix() -> String {
    "kbv-drill-".into()
}

/// An external check called over HTTP.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.url.startsWith('https://') || self.url.startsWith('http://')")
        .message("customWebhooks url must be an http:// or https:// URL"),
)]
pub struct CustomWebhookCheckSpec {
    /// Name of the check in the results, unique in the list.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// URL that receives the POST request.
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,
    /// Seconds to wait for the answer (default 120, 1 to 3600).
    #[serde(default = "default_webhook_timeout_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
    /// HTTP status code that means the call succeeded (default 200).
    #[serde(default = "default_expected_status_code")]
    #[schemars(range(min = 100, max = 599))]
    pub expected_status_code: i32,
}

fn default_webhook_timeout_seconds() -> i32 {
    120
}

fn default_expected_status_code() -> i32 {
    200
}

/// The evidence report of a validation.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.storage) || self.storage.type != 'ConfigMap'")
        .message("evidence.storage cannot be a ConfigMap: use PVC, S3, Azure or GCS"),
)]
pub struct EvidenceSpec {
    /// Write the report (default true when the block is present).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Formats written (default [Json]).
    #[serde(default = "default_formats")]
    #[schemars(length(min = 1), extend("x-kubernetes-list-type" = "set"))]
    pub formats: Vec<EvidenceFormat>,
    /// Detached signature of the report. Absent: unsigned.
    pub signing: Option<EvidenceSigningSpec>,
    /// Where reports are stored, under `evidence-reports/`. Default: the storage of the backup
    /// set.
    pub storage: Option<StorageSpec>,
    /// Days after which the operator deletes a report (default 90).
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1))]
    pub retention_days: i32,
}

fn default_formats() -> Vec<EvidenceFormat> {
    vec![EvidenceFormat::Json]
}

fn default_retention_days() -> i32 {
    90
}

/// Format of an evidence report.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EvidenceFormat {
    /// JSON document with the backup set, the checks and their results, and digests.
    Json,
}

/// Signing of evidence reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceSigningSpec {
    /// Sign the reports (default true when the block is present).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Signature algorithm (default Ed25519); must match the key in `keySecret`.
    #[serde(default)]
    pub algorithm: SigningAlgorithm,
    /// Secret with the signing key pair.
    pub key_secret: SigningKeySecretRef,
}

/// Signature algorithm of evidence reports.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SigningAlgorithm {
    /// Ed25519 (PKCS#8 PEM key).
    #[default]
    Ed25519,
    /// ECDSA on P-256 with SHA-256 (PKCS#8 PEM key), as the prior art's reports.
    EcdsaP256,
}

/// Secret holding a PEM signing key pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeySecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the PEM private key (default `signing-key.pem`).
    #[serde(default = "default_private_key_key")]
    pub private_key_key: String,
    /// Key of the PEM public key, embedded in the report for verification (default
    /// `signing-key-pub.pem`).
    #[serde(default = "default_public_key_key")]
    pub public_key_key: String,
}

fn default_private_key_key() -> String {
    "signing-key.pem".into()
}

fn default_public_key_key() -> String {
    "signing-key-pub.pem".into()
}

/// Outcome of a check, and overall result of a validation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CheckOutcome {
    /// Everything checked matched.
    Passed,
    /// A mismatch or error beyond the tolerance.
    Failed,
    /// Passed with findings worth a look (e.g. differences within the tolerance).
    Warning,
    /// Not run (disabled, or nothing to check).
    Skipped,
}

/// Observed state of a KafkaBackupValidation, written by the operator.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBackupValidationStatus {
    /// Lifecycle phase: Pending, Running, Completed, Failed (the validation could not run) or
    /// Suspended. Whether the backup passed is in `result`.
    pub phase: Option<RunPhase>,
    /// Human-readable summary of the current state or the failure.
    pub message: Option<String>,
    /// Overall result of the last validation: Failed if a check failed, else Warning if one
    /// warned, else Passed (Skipped when no check ran).
    pub result: Option<CheckOutcome>,
    /// Id of the backup set validated.
    pub backup_id: Option<String>,
    /// When the last validation started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the last validation finished (RFC 3339).
    pub completion_time: Option<Time>,
    /// Checks run by the last validation.
    pub checks_total: Option<i32>,
    /// Checks that passed.
    pub checks_passed: Option<i32>,
    /// Checks that failed.
    pub checks_failed: Option<i32>,
    /// Checks that passed with a warning.
    pub checks_warned: Option<i32>,
    /// Checks skipped.
    pub checks_skipped: Option<i32>,
    /// Result of every check.
    pub checks: Option<Vec<ValidationCheckResult>>,
    /// The evidence report of the last validation.
    pub evidence: Option<EvidenceStatus>,
    /// When the last validation that ran its checks finished (RFC 3339).
    pub last_validation_time: Option<Time>,
    /// The last schedule tick a validation was started for (RFC 3339).
    pub last_schedule_time: Option<Time>,
    /// When the next scheduled validation is due (RFC 3339).
    pub next_schedule_time: Option<Time>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Result of one check.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationCheckResult {
    /// Name of the check: Integrity, MessageCount, OffsetRange, ConsumerGroupOffsets,
    /// RestoreDrill or the name of a custom webhook.
    pub name: String,
    /// Outcome of the check.
    pub outcome: CheckOutcome,
    /// Detail: what was compared, what differed.
    pub message: Option<String>,
    /// Milliseconds the check took.
    pub duration_ms: Option<i64>,
}

/// Where the evidence report was stored.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceStatus {
    /// Location of the report: an object URI (`s3://...`, `az://...`, `gs://...`) or a path on a
    /// PVC (`pvc://<claim>/<path>`).
    pub path: Option<String>,
    /// SHA-256 of the stored report, hex.
    pub sha256: Option<String>,
    /// A detached signature was stored next to the report.
    pub signed: Option<bool>,
}

#[cfg(test)]
mod tests {
    use kube::core::{CustomResourceExt, cel::Validator};
    use serde_json::{Value, json};

    use super::*;

    fn errors(extra: Value) -> String {
        let crd = KafkaBackupValidation::crd();
        let schema =
            serde_json::to_value(&crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema).unwrap();
        let mut spec = json!({"backupRef": {"kafkaBackupRef": {"name": "nightly"}}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let object = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackupValidation",
            "metadata": {"name": "v"}, "spec": spec});
        match Validator::new().validate(&schema, &object, None) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cluster_checks_need_a_cluster() {
        assert_eq!(errors(json!({})), "");
        assert!(errors(json!({"checks": {"messageCount": {}}})).contains("checks.messageCount needs"));
        assert!(errors(json!({"checks": {"offsetRange": {}}})).contains("checks.offsetRange needs"));
        assert_eq!(errors(json!({"checks": {"offsetRange": {"enabled": false}}})), "");
        assert!(
            errors(json!({"checks": {"consumerGroupOffsets": {}}})).contains("consumerGroupOffsets needs")
        );
        assert!(errors(json!({"checks": {"restoreDrill": {}}})).contains("restoreDrill needs"));
        let drill = json!({"checks": {"messageCount": {}, "offsetRange": {},
            "restoreDrill": {"kafkaCluster": {"bootstrapServers": ["scratch:9092"]}}}});
        assert_eq!(errors(drill), "");
        let cluster = json!({"kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
            "checks": {"messageCount": {}, "consumerGroupOffsets": {}, "restoreDrill": {}}});
        assert_eq!(errors(cluster), "");
    }

    #[test]
    fn webhook_and_evidence_rules() {
        let hook = |url: &str| json!({"checks": {"customWebhooks": [{"name": "h", "url": url}]}});
        assert_eq!(errors(hook("https://check.example/hook")), "");
        assert!(errors(hook("ftp://check.example/hook")).contains("http:// or https://"));
        let cm = json!({"evidence": {"storage": {"type": "ConfigMap", "configMap": {"name": "x"}}}});
        assert!(errors(cm).contains("evidence.storage cannot be a ConfigMap"));
    }

    #[test]
    fn integrity_is_on_by_default() {
        let spec: KafkaBackupValidationSpec =
            serde_json::from_value(json!({"backupRef": {"kafkaBackupRef": {"name": "nightly"}}})).unwrap();
        assert!(spec.checks.integrity.enabled);
        let crd = KafkaBackupValidation::crd();
        let schema =
            serde_json::to_value(&crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema).unwrap();
        assert_eq!(
            schema["properties"]["spec"]["properties"]["checks"]["default"],
            json!({"integrity": {"enabled": true}})
        );
    }
}
