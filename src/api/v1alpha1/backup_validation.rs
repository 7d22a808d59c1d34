//! KafkaBackupValidation v1alpha1: the compatibility surface with every field of the prior art's
//! v1.0.0 (checks, evidence with `pdf`, `notifications`). Every field is optional and has no
//! default.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use super::{BackupRef, KafkaClusterSpec, RunPhase, StorageSpec};

/// Validates a backup and produces evidence reports (v1alpha1 compatibility surface; stored as
/// v1beta1).
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
// rustfmt splits the printer columns over lines, which clippy misreads as duplicated keys.
#[allow(clippy::duplicated_attributes)]
#[kube(
    group = "kafka.oso.sh",
    version = "v1alpha1",
    kind = "KafkaBackupValidation",
    namespaced,
    status = "KafkaBackupValidationStatus",
    shortname = "kbv",
    category = "kafka-backup",
    derive = "PartialEq",
    doc = "Validates a Kafka backup and produces evidence reports (v1alpha1, compatibility version).",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Result",
        type_ = "string",
        json_path = ".status.validationResult",
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
        json_path = ".status.nextScheduledValidation",
        priority = 1,
        description = "Next scheduled validation"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBackupValidationSpec {
    /// The backup to validate: a KafkaBackup and/or a storage location (v1.0.0).
    pub backup_ref: Option<BackupRef>,
    /// The cluster the checks compare the backup with (v1.0.0).
    pub kafka_cluster: Option<KafkaClusterSpec>,
    /// The checks to run (v1.0.0).
    pub checks: Option<ValidationChecksSpec>,
    /// Evidence reports (v1.0.0; produced by this operator, never by the prior art).
    pub evidence: Option<EvidenceSpec>,
    /// Slack and PagerDuty notifications (v1.0.0, never sent by the prior art; not in v1beta1,
    /// kept in the `kafka.oso.sh/v1alpha1-fields` annotation).
    pub notifications: Option<NotificationsSpec>,
    /// Cron schedule, 6/7 fields with seconds first, or 5 fields migrated by the webhook (v1.0.0).
    pub schedule: Option<String>,
    /// Start no new validation (default false; v1.0.0).
    pub suspend: Option<bool>,
}

/// The checks of a validation (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationChecksSpec {
    /// Record counts against the manifest.
    pub message_count: Option<MessageCountCheckSpec>,
    /// High watermarks against the manifest's offset ranges.
    pub offset_range: Option<OffsetRangeCheckSpec>,
    /// Readability of consumer-group offsets.
    pub consumer_group_offsets: Option<ConsumerGroupOffsetsCheckSpec>,
    /// External HTTP checks.
    pub custom_webhooks: Option<Vec<CustomWebhookCheckSpec>>,
}

/// The record-count check (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageCountCheckSpec {
    /// Run the check (default true).
    pub enabled: Option<bool>,
    /// Records a partition may differ by.
    pub fail_threshold: Option<i64>,
    /// Topics to check; absent or empty: all.
    pub topics: Option<Vec<String>>,
}

/// The offset-range check (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffsetRangeCheckSpec {
    /// Run the check (default true).
    pub enabled: Option<bool>,
}

/// The consumer-group offsets check (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupOffsetsCheckSpec {
    /// Run the check (default true).
    pub enabled: Option<bool>,
    /// Groups to check; absent or empty: all.
    pub consumer_groups: Option<Vec<String>>,
}

/// An external HTTP check (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomWebhookCheckSpec {
    /// Name of the check.
    pub name: Option<String>,
    /// URL receiving the POST request.
    pub url: Option<String>,
    /// Seconds to wait (default 120; v1beta1 `timeoutSeconds`).
    pub timeout_secs: Option<i64>,
    /// Expected HTTP status (default 200).
    pub expected_status_code: Option<i32>,
}

/// Evidence reports (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceSpec {
    /// Formats to write (default [json]).
    pub formats: Option<Vec<EvidenceFormat>>,
    /// Signing of the reports.
    pub signing: Option<EvidenceSigningSpec>,
    /// Where reports are stored.
    pub storage: Option<StorageSpec>,
    /// Days reports are kept (default 90).
    pub retention_days: Option<i32>,
}

/// Evidence report formats, in the prior art's spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EvidenceFormat {
    /// JSON (v1beta1 Json).
    #[serde(rename = "json")]
    Json,
    /// PDF (v1.0.0; not produced by this operator, not in v1beta1).
    #[serde(rename = "pdf")]
    Pdf,
}

/// Signing of evidence reports (v1.0.0: ECDSA P-256 with SHA-256; v1beta1 `algorithm`
/// EcdsaP256).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceSigningSpec {
    /// Sign the reports (default false).
    pub enabled: Option<bool>,
    /// Secret with the PEM key pair.
    pub key_secret: Option<SigningKeySecretRef>,
}

/// Secret holding a PEM signing key pair.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeySecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key of the private key (default `signing-key.pem`).
    pub private_key_key: Option<String>,
    /// Key of the public key (default `signing-key-pub.pem`).
    pub public_key_key: Option<String>,
}

/// Notifications (v1.0.0; never sent by the prior art; not in v1beta1).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationsSpec {
    /// Slack incoming webhook.
    pub slack: Option<SlackNotificationSpec>,
    /// PagerDuty Events API.
    pub pagerduty: Option<PagerDutyNotificationSpec>,
}

/// Slack notification (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackNotificationSpec {
    /// Secret key holding the webhook URL.
    pub webhook_secret: Option<SecretKeyRef>,
}

/// PagerDuty notification (v1.0.0).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PagerDutyNotificationSpec {
    /// Secret key holding the routing key.
    pub routing_key_secret: Option<SecretKeyRef>,
    /// Alert severity (default critical).
    pub severity: Option<PagerDutySeverity>,
}

/// PagerDuty alert severity.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PagerDutySeverity {
    /// Critical.
    #[serde(rename = "critical")]
    Critical,
    /// Error.
    #[serde(rename = "error")]
    Error,
    /// Warning.
    #[serde(rename = "warning")]
    Warning,
    /// Info.
    #[serde(rename = "info")]
    Info,
}

/// A key of a Secret in the resource's namespace.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key in the Secret.
    pub key: Option<String>,
}

/// Overall validation result, in the prior art's spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ValidationResult {
    /// Every check passed (v1beta1 Passed).
    Pass,
    /// A check failed (v1beta1 Failed).
    Fail,
    /// A check warned (v1beta1 Warning).
    Warn,
    /// No check ran (v1beta1 Skipped).
    Skip,
}

/// Outcome of one check.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CheckOutcome {
    /// Passed.
    Passed,
    /// Failed.
    Failed,
    /// Not run.
    Skipped,
    /// Passed with a warning.
    Warning,
}

/// Observed state of a KafkaBackupValidation, with the prior art's field names.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBackupValidationStatus {
    /// Lifecycle phase.
    pub phase: Option<RunPhase>,
    /// Human-readable summary.
    pub message: Option<String>,
    /// Overall result (v1beta1 `result`).
    pub validation_result: Option<ValidationResult>,
    /// When the last validation started (RFC 3339).
    pub start_time: Option<Time>,
    /// When the last validation finished (RFC 3339).
    pub completion_time: Option<Time>,
    /// Checks configured.
    pub checks_total: Option<i32>,
    /// Checks completed (passed, failed or warned).
    pub checks_completed: Option<i32>,
    /// Checks passed.
    pub checks_passed: Option<i32>,
    /// Checks failed.
    pub checks_failed: Option<i32>,
    /// Checks warned.
    pub checks_warned: Option<i32>,
    /// Result of every check (v1beta1 `checks`).
    pub check_results: Option<Vec<CheckResult>>,
    /// Location of the evidence report (v1beta1 `evidence.path`).
    pub evidence_report_path: Option<String>,
    /// The evidence report is signed (v1beta1 `evidence.signed`).
    pub evidence_report_signed: Option<bool>,
    /// When the last validation finished (RFC 3339).
    pub last_validation_time: Option<Time>,
    /// When the next scheduled validation is due (RFC 3339; v1beta1 `nextScheduleTime`).
    pub next_scheduled_validation: Option<Time>,
    /// The `metadata.generation` this status describes.
    pub observed_generation: Option<i64>,
    /// Standard conditions (Ready, ...), one per type.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::conditions_schema")]
    pub conditions: Option<Vec<Condition>>,
}

/// Result of one check (prior-art names).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Name of the check (v1beta1 `name`).
    pub check_name: Option<String>,
    /// Outcome of the check.
    pub outcome: Option<CheckOutcome>,
    /// Detail.
    pub message: Option<String>,
    /// Milliseconds the check took.
    pub duration_ms: Option<i64>,
}
