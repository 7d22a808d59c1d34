//! Prometheus metrics of the operator.
//!
//! One [`Registry`] with the prefix `kafka_backup_operator` holds every metric family the process
//! exports; the admin server encodes it on `GET /metrics` in the OpenMetrics text format.
//!
//! Each subsystem owns a small struct of metric families registered under its own sub-registry
//! (so its names read `kafka_backup_operator_<subsystem>_<name>`). To add one:
//!
//! 1. define `pub struct FooMetrics { … }` with `fn register(registry: &mut Registry) -> Self`
//!    (next to the code that records them, or here),
//! 2. add a `pub foo: FooMetrics` field to [`Metrics`] and initialise it in [`Metrics::new`] with
//!    `FooMetrics::register(registry.sub_registry_with_prefix("foo"))`.
//!
//! Families registered at run time by code that only has `&mut Metrics` before it is shared can use
//! [`Metrics::registry_mut`] instead.

#![warn(missing_docs)]

use std::{fmt, time::Duration};

use axum::http::StatusCode;
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Prefix of every metric name exported by the operator.
pub const PREFIX: &str = "kafka_backup_operator";

/// Content type of the `/metrics` response (OpenMetrics text format).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry could not be written in the text format.
    #[error("failed to encode metrics: {0}")]
    Encode(#[source] fmt::Error),
}

/// All metric families of the process, registered in one [`Registry`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// TLS material of the HTTPS server (`kafka_backup_operator_tls_*`).
    pub tls: TlsMetrics,
    /// Requests answered by the HTTPS server (`kafka_backup_operator_https_*`).
    pub https: HttpsMetrics,
    /// Reviews answered by the admission and conversion webhooks (`kafka_backup_operator_webhook_*`).
    pub webhook: WebhookMetrics,
    /// The reconciler and its operations (`kafka_backup_operator_operations_*`,
    /// `kafka_backup_operator_reconcile_*`, `kafka_backup_operator_leader`).
    pub operator: OperatorMetrics,
    /// Retries of requests and attempts (`kafka_backup_operator_retries_total`), counted by
    /// the engines and the storage client wherever they run ([`retries`]).
    pub retries: RetryMetrics,
}

impl Metrics {
    /// Creates the registry and registers every family, including `build_info{version}` = 1.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);

        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Build information of the running binary; always 1",
            build_info,
        );

        let tls = TlsMetrics::register(registry.sub_registry_with_prefix("tls"));
        let https = HttpsMetrics::register(registry.sub_registry_with_prefix("https"));
        let webhook = WebhookMetrics::register(registry.sub_registry_with_prefix("webhook"));
        let operator = OperatorMetrics::register(&mut registry);
        let retries = retries().clone();
        retries.register(&mut registry);
        Self {
            registry,
            tls,
            https,
            webhook,
            operator,
            retries,
        }
    }

    /// The registry, for encoding.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry, for registering further families before the metrics are shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Encodes every family in the OpenMetrics text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).map_err(Error::Encode)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Label set of `build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// Result of an operation, as a label value (`success` / `failure`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// The operation succeeded.
    Success,
    /// The operation failed.
    Failure,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Label set `{outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success` or `failure`.
    pub outcome: Outcome,
}

/// Metrics of the HTTPS server's certificate (`kafka_backup_operator_tls_*`).
#[derive(Debug, Clone)]
pub struct TlsMetrics {
    reloads: Family<OutcomeLabels, Counter>,
    certificate_expiry: Gauge,
}

impl TlsMetrics {
    /// Registers the families in `registry` (the `tls` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let reloads = Family::<OutcomeLabels, Counter>::default();
        // Both series exist from the start so that rate() and alerts see a zero, not an absence.
        for outcome in [Outcome::Success, Outcome::Failure] {
            drop(reloads.get_or_create(&OutcomeLabels { outcome }));
        }
        registry.register(
            "reloads",
            "Reloads of the serving certificate after its files changed, by outcome",
            reloads.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Expiry (notAfter, Unix seconds) of the serving certificate in use",
            certificate_expiry.clone(),
        );
        Self {
            reloads,
            certificate_expiry,
        }
    }

    /// Counts one reload attempt.
    pub fn reload(&self, outcome: Outcome) {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records the expiry of the certificate now in use.
    pub fn set_certificate_expiry(&self, unix_seconds: i64) {
        self.certificate_expiry.set(unix_seconds);
    }
}

/// Label set `{code}` of `https_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// HTTP status code of the response.
    pub code: u16,
}

/// Metrics of the HTTPS server's requests (`kafka_backup_operator_https_*`).
#[derive(Debug, Clone)]
pub struct HttpsMetrics {
    requests: Family<CodeLabels, Counter>,
}

impl HttpsMetrics {
    /// Registers the families in `registry` (the `https` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered by the HTTPS server, by status code",
            requests.clone(),
        );
        Self { requests }
    }

    /// Counts one answered request.
    pub fn request(&self, status: StatusCode) {
        self.requests
            .get_or_create(&CodeLabels {
                code: status.as_u16(),
            })
            .inc();
    }
}

/// A webhook of the HTTPS server, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Webhook {
    /// `POST /validate` (validating admission).
    Validate,
    /// `POST /mutate` (mutating admission).
    Mutate,
    /// `POST /convert` (CRD conversion).
    Convert,
}

impl Webhook {
    /// Every webhook.
    pub const ALL: [Self; 3] = [Self::Validate, Self::Mutate, Self::Convert];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::Mutate => "mutate",
            Self::Convert => "convert",
        }
    }

    /// The outcomes this webhook can report.
    pub fn outcomes(self) -> &'static [WebhookOutcome] {
        use WebhookOutcome::{Allowed, Denied, Error, Patched};
        match self {
            Self::Mutate => &[Allowed, Patched, Denied, Error],
            Self::Validate | Self::Convert => &[Allowed, Denied, Error],
        }
    }
}

impl EncodeLabelValue for Webhook {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// How a webhook answered a review, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Admitted without change, or every object converted.
    Allowed,
    /// Admitted with a JSON patch (mutate only).
    Patched,
    /// Refused (admission), or an object could not be converted (conversion).
    Denied,
    /// The review itself could not be read: HTTP 4xx with a `Status`, or an `invalid` review.
    Error,
}

impl WebhookOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Patched => "patched",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

impl EncodeLabelValue for WebhookOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Label set `{webhook, outcome}` of `webhook_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookOutcomeLabels {
    /// `validate`, `mutate` or `convert`.
    pub webhook: Webhook,
    /// `allowed`, `patched`, `denied` or `error`.
    pub outcome: WebhookOutcome,
}

/// Label set `{webhook}` of `webhook_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `validate`, `mutate` or `convert`.
    pub webhook: Webhook,
}

/// Upper bounds (seconds) of the webhook latency buckets: 100 µs to the 5 s webhook timeout.
pub const WEBHOOK_DURATION_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

fn webhook_histogram() -> Histogram {
    Histogram::new(WEBHOOK_DURATION_BUCKETS)
}

/// Metrics of the webhooks (`kafka_backup_operator_webhook_*`).
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    requests: Family<WebhookOutcomeLabels, Counter>,
    duration: Family<WebhookLabels, Histogram, fn() -> Histogram>,
}

impl WebhookMetrics {
    /// Registers the families in `registry` (the `webhook` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<WebhookOutcomeLabels, Counter>::default();
        let duration =
            Family::<WebhookLabels, Histogram, fn() -> Histogram>::new_with_constructor(webhook_histogram);
        // Every series exists from the start, so that rate() and alerts see a zero, not an absence.
        for webhook in Webhook::ALL {
            for &outcome in webhook.outcomes() {
                drop(requests.get_or_create(&WebhookOutcomeLabels { webhook, outcome }));
            }
            drop(duration.get_or_create(&WebhookLabels { webhook }));
        }
        registry.register(
            "requests",
            "Reviews answered by the webhooks, by webhook and outcome",
            requests.clone(),
        );
        registry.register(
            "duration_seconds",
            "Time to answer a review (reading the body to the encoded answer), by webhook",
            duration.clone(),
        );
        Self { requests, duration }
    }

    /// Counts one answered review and its latency.
    pub fn record(&self, webhook: Webhook, outcome: WebhookOutcome, elapsed: Duration) {
        self.requests
            .get_or_create(&WebhookOutcomeLabels { webhook, outcome })
            .inc();
        self.duration
            .get_or_create(&WebhookLabels { webhook })
            .observe(elapsed.as_secs_f64());
    }
}

/// Label set `{kind}` of the operator families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The custom resource kind, e.g. `KafkaBackup`.
    pub kind: String,
}

/// Label set `{kind, outcome}` of `operations_total` and `operation_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The custom resource kind.
    pub kind: String,
    /// `completed`, `partially_completed`, `failed` or `cancelled`.
    pub outcome: String,
}

/// Label set `{kind, reason}` of `reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileErrorLabels {
    /// The custom resource kind.
    pub kind: String,
    /// Short cause, e.g. `kube`, `invalid_object`.
    pub reason: String,
}

/// Upper bounds (seconds) of the operation duration buckets: 1 s to 1 day.
pub const OPERATION_DURATION_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 10800.0, 21600.0, 86400.0,
];

fn operation_histogram() -> Histogram {
    Histogram::new(OPERATION_DURATION_BUCKETS)
}

/// Metrics of the reconciler and its operations.
#[derive(Debug, Clone)]
pub struct OperatorMetrics {
    operations: Family<OperationLabels, Counter>,
    duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    records: Family<KindLabels, Counter>,
    bytes: Family<KindLabels, Counter>,
    running: Family<KindLabels, Gauge>,
    reconciliations: Family<KindLabels, Counter>,
    reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    missed_runs: Family<KindLabels, Counter>,
    leader: Gauge,
}

/// The kinds, for series that exist from the start.
const KINDS: [&str; 5] = [
    "KafkaBackup",
    "KafkaRestore",
    "KafkaOffsetReset",
    "KafkaOffsetRollback",
    "KafkaBackupValidation",
];

impl OperatorMetrics {
    /// Registers the families in `registry` (the root registry: names are
    /// `kafka_backup_operator_operations_total`, ...).
    pub fn register(registry: &mut Registry) -> Self {
        let operations = Family::<OperationLabels, Counter>::default();
        let duration = Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            operation_histogram,
        );
        let records = Family::<KindLabels, Counter>::default();
        let bytes = Family::<KindLabels, Counter>::default();
        let running = Family::<KindLabels, Gauge>::default();
        let reconciliations = Family::<KindLabels, Counter>::default();
        let reconcile_errors = Family::<ReconcileErrorLabels, Counter>::default();
        let missed_runs = Family::<KindLabels, Counter>::default();
        let leader = Gauge::default();
        for kind in KINDS {
            for outcome in ["completed", "failed"] {
                drop(operations.get_or_create(&OperationLabels {
                    kind: kind.into(),
                    outcome: outcome.into(),
                }));
            }
            drop(running.get_or_create(&KindLabels { kind: kind.into() }));
            drop(reconciliations.get_or_create(&KindLabels { kind: kind.into() }));
        }
        registry.register(
            "operations",
            "Finished operations (backup runs, restores, offset resets, ...), by kind and outcome",
            operations.clone(),
        );
        registry.register(
            "operation_duration_seconds",
            "Duration of finished operations, by kind and outcome",
            duration.clone(),
        );
        registry.register(
            "operation_records",
            "Records processed by finished operations (backed up, restored), by kind",
            records.clone(),
        );
        registry.register(
            "operation_bytes",
            "Bytes of record data processed by finished operations, by kind",
            bytes.clone(),
        );
        registry.register(
            "operations_running",
            "Operations running or queued now, by kind",
            running.clone(),
        );
        registry.register(
            "reconciliations",
            "Reconciliations of a resource, by kind",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed and are retried, by kind and reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "schedule_missed_runs",
            "Scheduled runs not started (operator down, previous run still running), by kind",
            missed_runs.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader-election Lease and runs the reconciler",
            leader.clone(),
        );
        Self {
            operations,
            duration,
            records,
            bytes,
            running,
            reconciliations,
            reconcile_errors,
            missed_runs,
            leader,
        }
    }

    /// Counts one finished operation with its duration, records and bytes.
    pub fn operation_finished(
        &self,
        kind: &str,
        outcome: &str,
        elapsed: Duration,
        records: Option<u64>,
        bytes: Option<u64>,
    ) {
        let labels = OperationLabels {
            kind: kind.into(),
            outcome: outcome.into(),
        };
        self.operations.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        let kind = KindLabels { kind: kind.into() };
        if let Some(records) = records {
            self.records.get_or_create(&kind).inc_by(records);
        }
        if let Some(bytes) = bytes {
            self.bytes.get_or_create(&kind).inc_by(bytes);
        }
    }

    /// One more (`+1`) or one less (`-1`) operation of `kind` running.
    pub fn running(&self, kind: &str, delta: i64) {
        self.running
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc_by(delta);
    }

    /// Counts one reconciliation.
    pub fn reconciled(&self, kind: &str) {
        self.reconciliations
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    /// Counts one failed reconciliation.
    pub fn reconcile_error(&self, kind: &str, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ReconcileErrorLabels {
                kind: kind.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts scheduled runs that were not started.
    pub fn missed_runs(&self, kind: &str, count: u64) {
        self.missed_runs
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc_by(count);
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

/// Why a request or an attempt was retried, as a label value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RetryCause {
    /// The Kafka cluster could not be reached or dropped the connection (a backup's consumer
    /// went on polling while librdkafka reconnected).
    KafkaUnreachable,
    /// A produce request came back unwritten for a passing reason (a leader that moved, a
    /// closed connection, a timeout, too few replicas) and was sent again.
    KafkaLeaderMoved,
    /// The storage service could not be reached, reset the connection or did not answer in time.
    StorageUnreachable,
    /// The storage service answered a server error (HTTP 500, 502, 504, ...).
    StorageServerError,
    /// The storage service asked to slow down (HTTP 503 SlowDown, 429).
    StorageThrottled,
    /// An attempt of an operation failed and another one follows (`execution.retries`).
    AttemptFailed,
    /// An attempt was stopped at `execution.deadlineSeconds` and another one follows.
    AttemptDeadline,
}

impl RetryCause {
    /// Every cause.
    pub const ALL: [Self; 7] = [
        Self::KafkaUnreachable,
        Self::KafkaLeaderMoved,
        Self::StorageUnreachable,
        Self::StorageServerError,
        Self::StorageThrottled,
        Self::AttemptFailed,
        Self::AttemptDeadline,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KafkaUnreachable => "kafka_unreachable",
            Self::KafkaLeaderMoved => "kafka_leader_moved",
            Self::StorageUnreachable => "storage_unreachable",
            Self::StorageServerError => "storage_server_error",
            Self::StorageThrottled => "storage_throttled",
            Self::AttemptFailed => "attempt_failed",
            Self::AttemptDeadline => "attempt_deadline",
        }
    }
}

impl EncodeLabelValue for RetryCause {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Label set `{cause}` of `retries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Why.
    pub cause: RetryCause,
}

/// Retries by cause (`kafka_backup_operator_retries_total{cause}`): one family for the whole
/// process, since the storage client and the engines that count into it run outside the
/// reconciler too (`run -f`).
#[derive(Debug, Clone, Default)]
pub struct RetryMetrics {
    retries: Family<RetryLabels, Counter>,
}

impl RetryMetrics {
    /// Registers the family in `registry` (the root registry). Every cause's series exists from
    /// the start, so that rate() and alerts see a zero, not an absence.
    pub fn register(&self, registry: &mut Registry) {
        for cause in RetryCause::ALL {
            drop(self.retries.get_or_create(&RetryLabels { cause }));
        }
        registry.register(
            "retries",
            "Requests to Kafka or storage sent again after a failure that passes, and attempts of operations started again, by cause",
            self.retries.clone(),
        );
    }

    /// Counts one retry.
    pub fn retry(&self, cause: RetryCause) {
        self.retries.get_or_create(&RetryLabels { cause }).inc();
    }

    /// The retries counted so far for `cause`.
    pub fn count(&self, cause: RetryCause) -> u64 {
        self.retries.get_or_create(&RetryLabels { cause }).get()
    }
}

/// The process's retry counters.
pub fn retries() -> &'static RetryMetrics {
    static RETRIES: std::sync::OnceLock<RetryMetrics> = std::sync::OnceLock::new();
    RETRIES.get_or_init(RetryMetrics::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_families_with_the_prefix() {
        let metrics = Metrics::new();
        metrics.tls.reload(Outcome::Success);
        metrics.tls.set_certificate_expiry(1_900_000_000);
        metrics.https.request(StatusCode::NOT_FOUND);
        let text = metrics.encode().unwrap();
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            text.contains(&format!(
                "kafka_backup_operator_build_info{{version=\"{version}\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains("kafka_backup_operator_tls_reloads_total{outcome=\"success\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kafka_backup_operator_tls_reloads_total{outcome=\"failure\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("kafka_backup_operator_tls_certificate_expiry_timestamp_seconds 1900000000\n"));
        assert!(
            text.contains("kafka_backup_operator_https_requests_total{code=\"404\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn operator_families_have_the_prefix() {
        let metrics = Metrics::new();
        metrics.operator.operation_finished(
            "KafkaBackup",
            "completed",
            Duration::from_secs(2),
            Some(10),
            Some(100),
        );
        metrics.operator.reconcile_error("KafkaRestore", "kube");
        metrics.operator.set_leader(true);
        let text = metrics.encode().unwrap();
        for line in [
            "kafka_backup_operator_operations_total{kind=\"KafkaBackup\",outcome=\"completed\"} 1\n",
            "kafka_backup_operator_operations_total{kind=\"KafkaOffsetReset\",outcome=\"failed\"} 0\n",
            "kafka_backup_operator_operation_records_total{kind=\"KafkaBackup\"} 10\n",
            "kafka_backup_operator_operation_bytes_total{kind=\"KafkaBackup\"} 100\n",
            "kafka_backup_operator_reconcile_errors_total{kind=\"KafkaRestore\",reason=\"kube\"} 1\n",
            "kafka_backup_operator_leader 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn every_retry_cause_has_a_series_from_the_start() {
        let metrics = Metrics::new();
        let before = retries().count(RetryCause::StorageThrottled);
        retries().retry(RetryCause::StorageThrottled);
        let text = metrics.encode().unwrap();
        for cause in RetryCause::ALL {
            let line = format!(
                "kafka_backup_operator_retries_total{{cause=\"{}\"}} ",
                cause.as_str()
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains(&format!(
                "kafka_backup_operator_retries_total{{cause=\"storage_throttled\"}} {}\n",
                before + 1
            )),
            "{text}"
        );
    }

    #[test]
    fn webhook_series_exist_from_the_start_and_count() {
        let metrics = Metrics::new();
        metrics.webhook.record(
            Webhook::Mutate,
            WebhookOutcome::Patched,
            Duration::from_micros(300),
        );
        let text = metrics.encode().unwrap();
        for (webhook, outcome, value) in [
            ("validate", "allowed", 0),
            ("validate", "denied", 0),
            ("validate", "error", 0),
            ("mutate", "patched", 1),
            ("mutate", "allowed", 0),
            ("convert", "denied", 0),
        ] {
            let line = format!(
                "kafka_backup_operator_webhook_requests_total{{webhook=\"{webhook}\",outcome=\"{outcome}\"}} {value}\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains("kafka_backup_operator_webhook_duration_seconds_count{webhook=\"mutate\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "kafka_backup_operator_webhook_duration_seconds_bucket{le=\"0.0005\",webhook=\"mutate\"} 1\n"
            ),
            "{text}"
        );
    }
}
