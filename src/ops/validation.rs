//! KafkaBackupValidation: proves that a backup set can be restored, and leaves evidence of it.
//!
//! Unlike the prior art (which compared a manifest with a cluster's watermarks and never read a
//! segment, and never wrote the evidence reports its CRD promised), every validation reads the
//! backup set itself.
//!
//! # Checks
//!
//! Each enabled check contributes one result: outcome (Passed, Failed, Warning, Skipped), a
//! message naming what differed, its duration, and details (in the report). Judging is done by
//! pure functions ([`inspect_segment`], [`judge_chain`], [`judge_integrity`],
//! [`judge_message_count`], [`judge_offset_range`], [`judge_group_snapshot`],
//! [`judge_groups_on_cluster`], [`judge_webhook`]); the I/O around them only gathers inputs.
//!
//! - **Integrity** (no cluster): the manifest must parse; every segment it lists must be stored
//!   with the listed size, decode (magic, version, header CRC-32C, body CRC-32C, decompression),
//!   hold the listed record count, offsets, positions, timestamps and sizes, belong to its
//!   partition, and carry strictly increasing offsets inside its positions. Per partition the
//!   segments must form an unbroken chain of positions; where they do not, the hole must be one
//!   of the gaps the manifest records (the log start moved past offsets before they were backed
//!   up): listed gaps are reported, unexpected holes and overlaps fail. A consumer-group snapshot
//!   the manifest lists must be stored. Segment objects the manifest does not list are reported
//!   (a warning for a Complete set; normal while a run writes an InProgress set). A set of the
//!   prior art (kafka-backup 0.x, [`crate::storage::prior_art`]) is checked the same way against
//!   its own layout (magic, header fields, CRC-32, counts, offsets, first and last timestamps, gaps)
//!   and never called complete: the verdict says its completeness cannot be proven and lists what
//!   its format cannot tell apart (offsets between segments without records, empty header values).
//! - **MessageCount**: per partition, the records in the backup against `end - start` of the same
//!   partition in `kafkaCluster` (or, without `kafkaCluster`, in the restore drill's scratch
//!   topics); differences up to `failThreshold` warn, beyond it fail; `topics` (names or globs)
//!   narrows the topics.
//! - **OffsetRange**: every partition of the target must reach the backup's last offset + 1 (the
//!   scratch topics of a drill, which start at 0: the partition's record count).
//! - **ConsumerGroupOffsets**: the backup's consumer-group snapshot must agree with the data:
//!   every committed offset lies within the backed-up positions of its partition (beyond the end
//!   fails; before the first backed-up position or inside a recorded gap warns: those records are
//!   not in the backup). With `kafkaCluster`, every selected group must exist there with readable
//!   committed offsets inside the partitions' log bounds.
//! - **RestoreDrill**: refuses scratch topics that already exist (it never writes into a topic it
//!   did not create), restores the whole set with [`super::restore::execute`] into
//!   `<topicPrefix><topic>` (created with the source's partition count and configuration), reads
//!   the scratch topics back and compares them record by record with the segments (key, value,
//!   headers in order, timestamps of CreateTime records), then deletes the scratch topics and the
//!   restore's state in the backup location, whatever the outcome.
//! - **Custom webhooks** (named by their `name`), last so they see the other results: an HTTP
//!   POST of a JSON description (below) must be answered with `expectedStatusCode` within
//!   `timeoutSeconds`. A JSON answer may refine the verdict with `{"result": "passed" | "failed" |
//!   "warning" | "skipped", "detail": "..."}` (the prior art's contract).
//!
//! The overall result is Failed if a check failed, else Warning if one warned, else Passed
//! (Skipped when no check ran). The phase is Completed when the checks ran (whatever their
//! outcome), Failed when the validation itself could not run (storage unreachable, a bad signing
//! key, ...).
//!
//! # Evidence report
//!
//! With `evidence.enabled`, one report per validation is stored create-only below the evidence
//! storage (default: the backup's), as [`crate::evidence`] lays it out:
//! `evidence-reports/<backupId>/<reportId>.json` and its envelope `<reportId>.json.sig` (the
//! SHA-256 of the report bytes and, with `signing`, an Ed25519 or ECDSA P-256 signature;
//! `kafka-backup-operator verify-evidence` checks both). After writing, reports of the same
//! validation (same namespace and name) older than `retentionDays` are deleted from that
//! location, with their envelopes. `reportId` is `<name>-<UTC yyyymmddThhmmssZ>-<8 hex>`.
//!
//! The report is JSON, camelCase, fields in this order:
//!
//! ```text
//! format          "kafka-backup-operator/evidence-report/v1"
//! reportId        as in the key
//! generatedAt     RFC 3339
//! operator        {name, version}
//! validation      {apiVersion, kind, namespace?, name, uid?, generation?, schedule?,
//!                  checks: the enabled checks and their settings (webhook URLs without
//!                  user info and query), kafkaCluster?: {bootstrapServers, securityProtocol},
//!                  restoreDrillCluster?: same}
//! backup          {backupId, location (URI of the set's directory), manifestUri,
//!                  manifestSha256 (of the manifest bytes as stored; null when missing),
//!                  manifestBytes, state (Complete | InProgress | Unknown: a set of the
//!                  prior art, whose manifest cannot prove it), format, createdAt, updatedAt,
//!                  sourceClusterId?, kafkaClusterId?, sourceBootstrapServers, compression,
//!                  topics [{name, partitions, records, bytes}], partitions, segments, records,
//!                  bytes (uncompressed), storedBytes, firstRecordTime?, lastRecordTime?,
//!                  groupSnapshot? {timestamp, groups, partitions}}   (null fields when the
//!                  manifest is unreadable)
//! checks          [{name, outcome, message, startedAt, durationMs, details}]
//! summary         {result, total, passed, failed, warned, skipped}
//! signing         {algorithm, publicKeySha256 (hex SHA-256 of the signer's SPKI PEM)} or null
//! startedAt, completedAt, durationMs
//! ```
//!
//! A report never holds a credential: only identities, locations, counts and results. As a
//! second line of defence every value (8 characters or more) of every Secret the resource names
//! (the public signing key excepted) is replaced by `[redacted]` in messages and in the report
//! before it is signed.
//!
//! # Webhook request
//!
//! `POST <url>` with `Content-Type: application/json` and, when the URL carries user info, HTTP
//! basic authentication:
//! `{event: "kafka_backup_validation", check, reportId, validation {namespace, name, uid},
//! backup {backupId, location, manifestSha256, state, topics, partitions, records,
//! firstRecordTime, lastRecordTime}, kafkaCluster? {bootstrapServers}, results [{name, outcome,
//! message}] (the checks before it)}`.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::{StreamExt, stream};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions},
    client::DefaultClientContext,
    consumer::Consumer,
    message::Headers,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Context, ResourceRef,
    execution::{self, Retryable},
    time,
};
use crate::{
    api::v1beta1::{
        CheckOutcome, CustomWebhookCheckSpec, EvidenceSpec, EvidenceStatus, ExecutionSpec,
        KafkaBackupValidation, KafkaBackupValidationSpec, KafkaBackupValidationStatus, KafkaClusterSpec,
        KafkaRestore, RunPhase, SecurityProtocol, SigningAlgorithm, StorageSpec, ValidationCheckResult,
    },
    evidence::{self, EvidenceError, Signer},
    kafka::{
        self, ClusterAccess, KafkaError,
        groups::{Cluster, Committed, GroupDescription, LogBounds, Partition, REQUEST_TIMEOUT},
        topics::glob_match,
    },
    secrets::SecretError,
    storage::{
        Location, ObjectLocation, StorageError,
        backup::{
            self, BackupFormatError, Gap, GroupSnapshot, Manifest, PartitionEntry, SegmentEntry, SetState,
            segment::{Segment, TimestampType},
        },
        backup_set::{self, BackupSet, SetFormat},
        prior_art,
    },
};

/// Value of the report's `format`.
pub const REPORT_FORMAT: &str = "kafka-backup-operator/evidence-report/v1";
/// Name of the integrity check.
pub const INTEGRITY: &str = "Integrity";
/// Name of the message-count check.
pub const MESSAGE_COUNT: &str = "MessageCount";
/// Name of the offset-range check.
pub const OFFSET_RANGE: &str = "OffsetRange";
/// Name of the consumer-group offsets check.
pub const CONSUMER_GROUP_OFFSETS: &str = "ConsumerGroupOffsets";
/// Name of the restore drill.
pub const RESTORE_DRILL: &str = "RestoreDrill";
/// What replaces a Secret value found in a message or report.
pub const REDACTED: &str = "[redacted]";
/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME: usize = 249;
/// Findings listed per check in messages; details list up to [`MAX_DETAILS`].
const MAX_LISTED: usize = 5;
/// Findings kept in a check's details.
const MAX_DETAILS: usize = 100;
/// Bytes of segments (stored and decompressed) the integrity check holds at once, at most (one
/// segment larger than this is still read, alone).
const INTEGRITY_MEMORY: u64 = 256 * 1024 * 1024;
/// Largest webhook answer read.
const MAX_WEBHOOK_ANSWER: usize = 64 * 1024;

/// Why a validation could not run (as opposed to a check that failed).
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// The spec asks for something this run cannot do.
    #[error("{field}: {message}")]
    Refused {
        /// Field path.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored set cannot be read.
    #[error(transparent)]
    Format(#[from] BackupFormatError),
    /// Talking to Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// A Secret could not be read.
    #[error("{field}: {source}")]
    Secret {
        /// Field naming the Secret.
        field: &'static str,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// The signing key is unusable.
    #[error("spec.evidence.signing.keySecret: {0}")]
    Signing(#[from] EvidenceError),
    /// A worker task failed.
    #[error("{0}")]
    Worker(String),
    /// The validation was cancelled.
    #[error("cancelled before the validation finished")]
    Cancelled,
}

impl Retryable for ValidationError {
    fn is_retryable(&self) -> bool {
        match self {
            ValidationError::Storage(e) => e.is_retryable(),
            ValidationError::Format(e) => e.is_retryable(),
            ValidationError::Kafka(e) => e.is_retryable(),
            ValidationError::Worker(_) | ValidationError::Cancelled => true,
            ValidationError::Refused { .. }
            | ValidationError::Secret { .. }
            | ValidationError::Signing(_) => false,
        }
    }
}

/// A verdict: outcome, message and details. What the pure judging functions return.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// Outcome.
    pub outcome: CheckOutcome,
    /// One-line summary naming what differed.
    pub message: String,
    /// Structured findings for the report.
    pub details: Value,
}

impl Judgement {
    fn new(outcome: CheckOutcome, message: impl Into<String>, details: Value) -> Self {
        Judgement {
            outcome,
            message: message.into(),
            details,
        }
    }

    fn skipped(message: impl Into<String>) -> Self {
        Judgement::new(CheckOutcome::Skipped, message, Value::Null)
    }
}

/// The result of one check, as the report holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Check name.
    pub name: String,
    /// Outcome.
    pub outcome: CheckOutcome,
    /// Summary.
    pub message: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Milliseconds it took.
    pub duration_ms: i64,
    /// Findings.
    pub details: Value,
}

impl CheckReport {
    fn from_judgement(name: &str, started_at: DateTime<Utc>, clock: Instant, j: Judgement) -> Self {
        CheckReport {
            name: name.into(),
            outcome: j.outcome,
            message: j.message,
            started_at,
            duration_ms: clock.elapsed().as_millis() as i64,
            details: j.details,
        }
    }
}

/// The overall result of checks: Failed > Warning > Passed; Skipped when none passed or failed.
pub fn overall(checks: &[CheckReport]) -> CheckOutcome {
    let has = |o: CheckOutcome| checks.iter().any(|c| c.outcome == o);
    if has(CheckOutcome::Failed) {
        CheckOutcome::Failed
    } else if has(CheckOutcome::Warning) {
        CheckOutcome::Warning
    } else if has(CheckOutcome::Passed) {
        CheckOutcome::Passed
    } else {
        CheckOutcome::Skipped
    }
}

fn list_some(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(MAX_LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_LISTED {
        out.push_str(&format!("; and {} more", items.len() - MAX_LISTED));
    }
    out
}

fn first_details(items: &[String]) -> Value {
    json!(items.iter().take(MAX_DETAILS).collect::<Vec<_>>())
}

// ---------------------------------------------------------------------------------------------
// Integrity: pure parts.

/// What a segment that checked out holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SegmentStats {
    /// Records.
    pub records: u64,
    /// Uncompressed body bytes.
    pub bytes: u64,
    /// Stored bytes.
    pub stored_bytes: u64,
}

/// Checks one stored segment against its manifest entry: size, format, checksums, counts,
/// offsets, positions, timestamps and partition. The error names what differs. Pure (CPU-bound).
pub fn inspect_segment(entry: &SegmentEntry, partition: i32, bytes: Bytes) -> Result<SegmentStats, String> {
    let size = bytes.len() as u64;
    if size != entry.stored_bytes {
        return Err(format!(
            "the object is {size} bytes, the manifest lists {} bytes",
            entry.stored_bytes
        ));
    }
    let segment = Segment::decode(bytes).map_err(|e| e.to_string())?;
    let h = &segment.header;
    let mut differences = Vec::new();
    let mut differ = |what: &str, stored: String, listed: String| {
        if stored != listed {
            differences.push(format!(
                "{what} {stored} in the segment, {listed} in the manifest"
            ));
        }
    };
    differ("partition", h.partition.to_string(), partition.to_string());
    differ("record count", h.records.to_string(), entry.records.to_string());
    differ(
        "first offset",
        h.first_offset.to_string(),
        entry.first_offset.to_string(),
    );
    differ(
        "last offset",
        h.last_offset.to_string(),
        entry.last_offset.to_string(),
    );
    differ(
        "start position",
        h.position_start.to_string(),
        entry.position_start.to_string(),
    );
    differ(
        "end position",
        h.position_end.to_string(),
        entry.position_end.to_string(),
    );
    differ(
        "smallest timestamp",
        h.min_timestamp.to_string(),
        entry.min_timestamp.to_string(),
    );
    differ(
        "largest timestamp",
        h.max_timestamp.to_string(),
        entry.max_timestamp.to_string(),
    );
    differ(
        "uncompressed size",
        h.uncompressed_len.to_string(),
        entry.uncompressed_bytes.to_string(),
    );
    differ(
        "body CRC-32C",
        format!("{:#010x}", h.body_crc),
        format!("{:#010x}", entry.crc32c),
    );
    if !differences.is_empty() {
        return Err(differences.join("; "));
    }
    let mut previous: Option<i64> = None;
    for record in segment.records() {
        let record = record.map_err(|e| e.to_string())?;
        if previous.is_some_and(|p| record.offset <= p) {
            return Err(format!(
                "record offsets are not increasing: {} after {}",
                record.offset,
                previous.unwrap_or_default()
            ));
        }
        if record.offset < h.position_start || record.offset >= h.position_end {
            return Err(format!(
                "record offset {} lies outside the segment's positions {}..{}",
                record.offset, h.position_start, h.position_end
            ));
        }
        if record.timestamp < h.min_timestamp || record.timestamp > h.max_timestamp {
            return Err(format!(
                "record at offset {} has timestamp {}, outside the header's range {}..={}",
                record.offset, record.timestamp, h.min_timestamp, h.max_timestamp
            ));
        }
        previous = Some(record.offset);
    }
    Ok(SegmentStats {
        records: h.records,
        bytes: h.uncompressed_len,
        stored_bytes: size,
    })
}

/// A hole between segments explained by a gap the manifest records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedGap {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First missing offset.
    pub from: i64,
    /// First offset after the gap.
    pub to: i64,
    /// Why, as recorded.
    pub reason: String,
}

/// The continuity of one partition's chain of positions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainFinding {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Contradictions (unexpected holes, overlaps, malformed entries).
    pub problems: Vec<String>,
    /// Recorded gaps.
    pub gaps: Vec<ListedGap>,
    /// Positions after the last segment up to the partition's next offset that hold no record
    /// (transaction markers, or offsets the consumer passed without records).
    pub trailing: Option<(i64, i64)>,
}

/// Checks that a partition's segments form an unbroken chain of positions, every hole being a
/// recorded gap, and that the entries are well-formed. Pure.
pub fn judge_chain(topic: &str, partition: i32, entry: &PartitionEntry) -> ChainFinding {
    let mut finding = ChainFinding {
        topic: topic.into(),
        partition,
        ..Default::default()
    };
    let tp = format!("{topic}-{partition}");
    // Intervals of positions: segments and recorded gaps.
    let mut intervals: Vec<(i64, i64, String)> = Vec::new();
    for s in &entry.segments {
        let name = format!("segment {}", s.key);
        if s.records == 0 {
            finding.problems.push(format!("{tp}: {name} lists no records"));
        }
        if !(s.position_start <= s.first_offset
            && s.first_offset <= s.last_offset
            && s.last_offset < s.position_end)
        {
            finding.problems.push(format!(
                "{tp}: {name} has offsets {}..={} outside its positions {}..{}",
                s.first_offset, s.last_offset, s.position_start, s.position_end
            ));
        } else if s.records as i128 > (s.last_offset as i128 - s.first_offset as i128 + 1) {
            finding.problems.push(format!(
                "{tp}: {name} lists {} records in offsets {}..={}",
                s.records, s.first_offset, s.last_offset
            ));
        }
        intervals.push((s.position_start, s.position_end, name));
    }
    for w in entry.segments.windows(2) {
        if w[1].first_offset <= w[0].last_offset {
            finding.problems.push(format!(
                "{tp}: segment {} (first offset {}) is listed after segment {} (last offset {})",
                w[1].key, w[1].first_offset, w[0].key, w[0].last_offset
            ));
        }
    }
    for g in &entry.gaps {
        if g.from >= g.to {
            finding.problems.push(format!(
                "{tp}: recorded gap {}..{} is empty or reversed",
                g.from, g.to
            ));
            continue;
        }
        intervals.push((g.from, g.to, format!("gap {}..{}", g.from, g.to)));
        finding.gaps.push(ListedGap {
            topic: topic.into(),
            partition,
            from: g.from,
            to: g.to,
            reason: g.reason.clone(),
        });
    }
    intervals.sort_by_key(|(start, end, _)| (*start, *end));
    let mut cursor: Option<(i64, String)> = None;
    for (start, end, name) in intervals {
        if let Some((at, before)) = &cursor {
            if start > *at {
                finding.problems.push(format!(
                    "{tp}: offsets {at}..{start} are missing between {before} and {name}, and the manifest records no gap there"
                ));
            } else if start < *at {
                finding
                    .problems
                    .push(format!("{tp}: {name} overlaps {before} (positions before {at})"));
            }
        }
        let reach = cursor.as_ref().map_or(end, |(at, _)| end.max(*at));
        cursor = Some((reach, name));
    }
    if let Some((end, last)) = cursor {
        if end > entry.next_offset {
            finding.problems.push(format!(
                "{tp}: {last} ends at position {end}, after the partition's next offset {}",
                entry.next_offset
            ));
        } else if end < entry.next_offset {
            finding.trailing = Some((end, entry.next_offset));
        }
    }
    finding
}

/// A segment that failed inspection, or is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentProblem {
    /// URI of the segment.
    pub uri: String,
    /// What is wrong.
    pub problem: String,
}

/// Everything the integrity check gathered.
#[derive(Clone, Debug, Default)]
pub struct IntegrityInputs {
    /// Segments the manifest lists.
    pub listed_segments: u64,
    /// Segments that checked out, summed.
    pub verified: SegmentStats,
    /// Segments verified.
    pub verified_segments: u64,
    /// Segments missing or bad.
    pub problems: Vec<SegmentProblem>,
    /// Chain findings per partition.
    pub chains: Vec<ChainFinding>,
    /// Stored segment objects the manifest does not list (URIs).
    pub unlisted: Vec<String>,
    /// The set's state.
    pub state: Option<SetState>,
    /// A consumer-group snapshot the manifest lists but storage lacks or that does not parse.
    pub group_snapshot_problem: Option<String>,
    /// What the set's format leaves open (sets of the prior art: completeness, offsets between
    /// segments, header values), appended to the verdict.
    pub notes: Vec<String>,
}

/// The integrity verdict from what was gathered. Pure.
pub fn judge_integrity(inputs: &IntegrityInputs) -> Judgement {
    let mut failures: Vec<String> = inputs
        .problems
        .iter()
        .map(|p| format!("segment {}: {}", p.uri, p.problem))
        .collect();
    failures.extend(inputs.chains.iter().flat_map(|c| c.problems.iter().cloned()));
    failures.extend(inputs.group_snapshot_problem.iter().cloned());
    let gaps: Vec<&ListedGap> = inputs.chains.iter().flat_map(|c| &c.gaps).collect();
    let trailing: Vec<String> = inputs
        .chains
        .iter()
        .filter_map(|c| {
            c.trailing
                .map(|(a, b)| format!("{}-{}: {a}..{b}", c.topic, c.partition))
        })
        .collect();
    let details = json!({
        "segmentsListed": inputs.listed_segments,
        "segmentsVerified": inputs.verified_segments,
        "recordsVerified": inputs.verified.records,
        "bytesVerified": inputs.verified.bytes,
        "storedBytesVerified": inputs.verified.stored_bytes,
        "failures": first_details(&failures),
        "failureCount": failures.len(),
        "gaps": gaps,
        "unlistedSegments": first_details(&inputs.unlisted),
        "positionsWithoutRecords": trailing,
        "notes": inputs.notes,
    });
    let notes: String = inputs.notes.iter().map(|n| format!("; {n}")).collect();
    let gap_note = if gaps.is_empty() {
        String::new()
    } else {
        let total: i64 = gaps.iter().map(|g| g.to - g.from).sum();
        format!(
            "; {} recorded gap(s) ({total} offsets the log start had passed before they were backed up): {}",
            gaps.len(),
            list_some(
                &gaps
                    .iter()
                    .map(|g| format!("{}-{} {}..{}", g.topic, g.partition, g.from, g.to))
                    .collect::<Vec<_>>()
            )
        )
    };
    if !failures.is_empty() {
        return Judgement::new(
            CheckOutcome::Failed,
            format!(
                "{} problem(s), {} of {} segments missing or damaged: {}{notes}",
                failures.len(),
                inputs.problems.len(),
                inputs.listed_segments,
                list_some(&failures)
            ),
            details,
        );
    }
    let verified = format!(
        "{} segments verified ({} records, {} bytes uncompressed, checksums, counts, offsets and continuity as the manifest lists){gap_note}",
        inputs.verified_segments, inputs.verified.records, inputs.verified.bytes
    );
    if !inputs.unlisted.is_empty() && inputs.state != Some(SetState::InProgress) {
        return Judgement::new(
            CheckOutcome::Warning,
            format!(
                "{verified}; {} stored segment(s) are not in the manifest of this {} set and would not be restored: {}{notes}",
                inputs.unlisted.len(),
                if inputs.state == Some(SetState::Complete) {
                    "Complete"
                } else {
                    "finished-looking"
                },
                list_some(&inputs.unlisted)
            ),
            details,
        );
    }
    let in_progress = if inputs.state == Some(SetState::InProgress) {
        "; the set is InProgress (a run is writing it, or one stopped): what its manifest lists was validated"
    } else {
        ""
    };
    Judgement::new(
        CheckOutcome::Passed,
        format!("{verified}{in_progress}{notes}"),
        details,
    )
}

// ---------------------------------------------------------------------------------------------
// Cluster checks: pure parts.

/// The partitions a cluster check compares the backup with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetView {
    /// What it is, for messages ("cluster kafka:9092", "the restore drill's scratch topics").
    pub description: String,
    /// Scratch topics of a restore drill (offsets start at 0) rather than a cluster holding the
    /// source's offsets.
    pub drill: bool,
    /// Partition counts of the topics present, by the topic's name in the backup.
    pub topics: BTreeMap<String, i32>,
    /// Log bounds by the partition's name in the backup.
    pub bounds: BTreeMap<Partition, LogBounds>,
    /// Name of each topic in the target, by its name in the backup.
    pub names: BTreeMap<String, String>,
}

fn backed_up_records(p: &PartitionEntry) -> u64 {
    p.segments.iter().map(|s| s.records).sum()
}

/// Records per partition against the target's offset ranges, within `fail_threshold`. Pure.
pub fn judge_message_count(
    manifest: &Manifest,
    topics: &[String],
    fail_threshold: i64,
    target: &TargetView,
) -> Judgement {
    let selected: Vec<(&String, _)> = manifest
        .topics
        .iter()
        .filter(|(name, _)| topics.is_empty() || topics.iter().any(|p| glob_match(p, name)))
        .collect();
    if selected.is_empty() {
        return Judgement::skipped(if topics.is_empty() {
            "the backup set holds no topic".to_owned()
        } else {
            format!("checks.messageCount.topics {topics:?} selects no topic of the backup set")
        });
    }
    let mut failed = Vec::new();
    let mut warned = Vec::new();
    let mut rows = Vec::new();
    let (mut backed, mut found) = (0u64, 0i64);
    for (name, topic) in selected {
        let shown = target.names.get(name).unwrap_or(name);
        if !target.topics.contains_key(name) {
            failed.push(format!("topic {shown} does not exist in {}", target.description));
            continue;
        }
        for (partition, entry) in &topic.partitions {
            let records = backed_up_records(entry);
            backed += records;
            let Some(bounds) = target.bounds.get(&(name.clone(), *partition)) else {
                failed.push(format!(
                    "partition {shown}-{partition} does not exist in {}",
                    target.description
                ));
                continue;
            };
            let count = bounds.end - bounds.start;
            found += count;
            let diff = count - records as i64;
            rows.push(json!({"topic": name, "partition": partition, "backup": records,
                "target": count, "targetStart": bounds.start, "targetEnd": bounds.end}));
            if diff == 0 {
                continue;
            }
            let line = format!(
                "{shown}-{partition}: {records} records in the backup, {count} in the target (offsets {}..{}), difference {diff}",
                bounds.start, bounds.end
            );
            if diff.abs() > fail_threshold {
                failed.push(line);
            } else {
                warned.push(line);
            }
        }
    }
    let details = json!({"target": target.description, "failThreshold": fail_threshold,
        "partitions": rows, "failures": first_details(&failed), "differences": first_details(&warned)});
    if !failed.is_empty() {
        Judgement::new(
            CheckOutcome::Failed,
            format!(
                "{} partition(s) differ by more than failThreshold {fail_threshold}: {}",
                failed.len(),
                list_some(&failed)
            ),
            details,
        )
    } else if !warned.is_empty() {
        Judgement::new(
            CheckOutcome::Warning,
            format!(
                "{} partition(s) differ within failThreshold {fail_threshold}: {}",
                warned.len(),
                list_some(&warned)
            ),
            details,
        )
    } else {
        Judgement::new(
            CheckOutcome::Passed,
            format!(
                "{backed} records in the backup, {found} in {}: every partition matches",
                target.description
            ),
            details,
        )
    }
}

/// Every target partition reaches the backup's last offset + 1 (a drill's scratch partition: its
/// record count). Pure.
pub fn judge_offset_range(manifest: &Manifest, target: &TargetView) -> Judgement {
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    let mut checked = 0;
    for (name, topic) in &manifest.topics {
        let shown = target.names.get(name).unwrap_or(name);
        for (partition, entry) in &topic.partitions {
            let (Some(first), Some(last)) = (entry.segments.first(), entry.segments.last()) else {
                continue;
            };
            checked += 1;
            let expected = if target.drill {
                backed_up_records(entry) as i64
            } else {
                last.last_offset + 1
            };
            let Some(bounds) = target.bounds.get(&(name.clone(), *partition)) else {
                failed.push(format!(
                    "partition {shown}-{partition} does not exist in {}",
                    target.description
                ));
                continue;
            };
            rows.push(
                json!({"topic": name, "partition": partition, "backupFirstOffset": first.first_offset,
                "backupLastOffset": last.last_offset, "targetStart": bounds.start, "targetEnd": bounds.end,
                "expectedEnd": expected}),
            );
            if bounds.end < expected {
                failed.push(format!(
                    "{shown}-{partition}: the log ends at offset {} but the backup reaches {} (offsets {}..={} backed up)",
                    bounds.end,
                    expected,
                    first.first_offset,
                    last.last_offset
                ));
            }
        }
    }
    let details =
        json!({"target": target.description, "partitions": rows, "failures": first_details(&failed)});
    if checked == 0 {
        return Judgement::new(CheckOutcome::Skipped, "the backup set holds no records", details);
    }
    if failed.is_empty() {
        Judgement::new(
            CheckOutcome::Passed,
            format!(
                "all {checked} partitions of {} reach the backup's last offset",
                target.description
            ),
            details,
        )
    } else {
        Judgement::new(
            CheckOutcome::Failed,
            format!(
                "{} of {checked} partitions end before the backup's last offset: {}",
                failed.len(),
                list_some(&failed)
            ),
            details,
        )
    }
}

/// The groups a consumer-group check looks at: `consumerGroups`, or every group of the snapshot.
fn selected_groups(snapshot: Option<&GroupSnapshot>, wanted: &[String]) -> Vec<String> {
    if wanted.is_empty() {
        snapshot
            .map(|s| s.groups.keys().cloned().collect())
            .unwrap_or_default()
    } else {
        wanted.to_vec()
    }
}

/// The backup's consumer-group snapshot against the backed-up data: every committed offset lies
/// within its partition's backed-up positions. Pure; returns failures and warnings.
pub fn judge_group_snapshot(
    manifest: &Manifest,
    snapshot: Option<&GroupSnapshot>,
    wanted: &[String],
) -> (Vec<String>, Vec<String>, usize) {
    let mut failed = Vec::new();
    let mut warned = Vec::new();
    let mut offsets = 0;
    let Some(snapshot) = snapshot else {
        return (failed, warned, 0);
    };
    for group in selected_groups(Some(snapshot), wanted) {
        let Some(topics) = snapshot.groups.get(&group) else {
            failed.push(format!(
                "group {group} is not in the backup's consumer-group snapshot"
            ));
            continue;
        };
        for (topic, partitions) in topics {
            for (partition, offset) in partitions {
                offsets += 1;
                let tp = format!("group {group} on {topic}-{partition}: committed offset {offset}");
                let Some(entry) = manifest
                    .topics
                    .get(topic)
                    .and_then(|t| t.partitions.get(partition))
                else {
                    failed.push(format!("{tp}, but the backup set has no such partition"));
                    continue;
                };
                let start = entry
                    .segments
                    .first()
                    .map(|s| s.position_start)
                    .into_iter()
                    .chain(entry.gaps.iter().map(|g| g.from))
                    .min()
                    .unwrap_or(entry.next_offset);
                let end = entry.next_offset;
                if *offset > end {
                    failed.push(format!(
                        "{tp} is beyond the backed-up positions {start}..{end}: the snapshot does not match the data"
                    ));
                } else if *offset < start {
                    warned.push(format!(
                        "{tp} is before the first backed-up position {start}: the records it would read next are not in the backup"
                    ));
                } else if let Some(g) = entry.gaps.iter().find(|g| g.from <= *offset && *offset < g.to) {
                    warned.push(format!(
                        "{tp} lies in the recorded gap {}..{}: the records it would read next are not in the backup",
                        g.from, g.to
                    ));
                }
            }
        }
    }
    (failed, warned, offsets)
}

/// What the target cluster reports about one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOnCluster {
    /// State and members.
    pub description: GroupDescription,
    /// Committed offsets for the partitions asked.
    pub committed: BTreeMap<Partition, Committed>,
}

/// The selected groups on the target cluster: each exists, and its committed offsets lie within
/// the partitions' log bounds. Pure; returns failures and warnings.
pub fn judge_groups_on_cluster(
    groups: &BTreeMap<String, Result<GroupOnCluster, String>>,
    bounds: &BTreeMap<Partition, LogBounds>,
) -> (Vec<String>, Vec<String>) {
    let mut failed = Vec::new();
    let warned = Vec::new();
    for (group, found) in groups {
        match found {
            Err(e) => failed.push(format!(
                "group {group}: its offsets cannot be read on the cluster: {e}"
            )),
            Ok(g) if g.committed.is_empty() && g.description.state == "Dead" => failed.push(format!(
                "group {group} does not exist on the cluster (no committed offset)"
            )),
            Ok(g) => {
                for ((topic, partition), committed) in &g.committed {
                    if let Some(b) = bounds.get(&(topic.clone(), *partition))
                        && (committed.offset < b.start || committed.offset > b.end)
                    {
                        failed.push(format!(
                            "group {group} on {topic}-{partition}: committed offset {} outside the log {}..{}",
                            committed.offset, b.start, b.end
                        ));
                    }
                }
            }
        }
    }
    (failed, warned)
}

fn group_judgement(
    snapshot_present: bool,
    offsets: usize,
    groups: usize,
    on_cluster: Option<&str>,
    failed: Vec<String>,
    warned: Vec<String>,
) -> Judgement {
    let details = json!({"groups": groups, "offsets": offsets, "cluster": on_cluster,
        "failures": first_details(&failed), "warnings": first_details(&warned)});
    if !failed.is_empty() {
        return Judgement::new(
            CheckOutcome::Failed,
            format!("{} problem(s): {}", failed.len(), list_some(&failed)),
            details,
        );
    }
    if !warned.is_empty() {
        return Judgement::new(
            CheckOutcome::Warning,
            format!("{} finding(s): {}", warned.len(), list_some(&warned)),
            details,
        );
    }
    if !snapshot_present && on_cluster.is_none() {
        return Judgement::new(
            CheckOutcome::Skipped,
            "the backup set has no consumer-group snapshot (consumerGroupSnapshot was off) and no cluster is given",
            details,
        );
    }
    let mut message = if snapshot_present {
        format!(
            "{groups} group(s), {offsets} committed offsets in the backup's snapshot, all within the backed-up data"
        )
    } else {
        format!("the backup set has no consumer-group snapshot; {groups} group(s) checked")
    };
    if let Some(c) = on_cluster {
        message.push_str(&format!(
            "; every group exists on {c} with offsets inside the logs"
        ));
    }
    Judgement::new(CheckOutcome::Passed, message, details)
}

// ---------------------------------------------------------------------------------------------
// Webhooks: pure parts.

/// How a webhook call ended, before judging.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookCall {
    /// An answer: status code and (the start of) the body.
    Answered(u16, Bytes),
    /// No answer within the timeout.
    TimedOut(u64),
    /// The request could not be made.
    Error(String),
}

/// The verdict on a webhook call. Pure.
pub fn judge_webhook(hook: &CustomWebhookCheckSpec, call: &WebhookCall) -> Judgement {
    let url = redact_url(&hook.url);
    let expected = hook.expected_status_code;
    match call {
        WebhookCall::TimedOut(seconds) => Judgement::new(
            CheckOutcome::Failed,
            format!("{url} did not answer within {seconds}s (timeoutSeconds)"),
            json!({"url": url, "timeoutSeconds": seconds}),
        ),
        WebhookCall::Error(e) => Judgement::new(
            CheckOutcome::Failed,
            format!("POST {url} failed: {e}"),
            json!({"url": url, "error": e}),
        ),
        WebhookCall::Answered(code, body) => {
            let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let detail = answer
                .get("detail")
                .and_then(Value::as_str)
                .map(|d| d.chars().take(500).collect::<String>());
            let details = json!({"url": url, "statusCode": code, "expectedStatusCode": expected,
                "result": answer.get("result"), "detail": detail});
            if i32::from(*code) != expected {
                return Judgement::new(
                    CheckOutcome::Failed,
                    format!(
                        "{url} answered {code}, expected {expected}{}",
                        detail.map(|d| format!(": {d}")).unwrap_or_default()
                    ),
                    details,
                );
            }
            let outcome = match answer
                .get("result")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("failed" | "fail") => CheckOutcome::Failed,
                Some("warning" | "warn") => CheckOutcome::Warning,
                Some("skipped" | "skip") => CheckOutcome::Skipped,
                _ => CheckOutcome::Passed,
            };
            Judgement::new(
                outcome,
                format!(
                    "{url} answered {code}{}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ),
                details,
            )
        }
    }
}

/// A URL without user info, query and fragment (they may carry credentials). Pure.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// Replaces every secret value of at least 8 characters (and its JSON-escaped form, and each
/// long line of a multi-line value) in `text` with [`REDACTED`]. Shorter values are left alone:
/// they would also match ordinary words of the report. Pure.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let mut forms = vec![secret.clone()];
        if let Ok(escaped) = serde_json::to_string(secret) {
            forms.push(escaped.trim_matches('"').to_owned());
        }
        forms.extend(
            secret
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                .map(str::to_owned),
        );
        for form in forms {
            if form.len() >= 8 && out.contains(&form) {
                out = out.replace(&form, REDACTED);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The report.

/// The backup set's identity in a report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupIdentity {
    /// The set's id.
    pub backup_id: String,
    /// URI of the set's directory.
    pub location: String,
    /// URI of the manifest.
    pub manifest_uri: String,
    /// SHA-256 of the manifest bytes as stored (none when missing).
    pub manifest_sha256: Option<String>,
    /// Size of the manifest.
    pub manifest_bytes: Option<u64>,
    /// Complete, InProgress, or Unknown for a set of the prior art (none when the manifest is
    /// unreadable).
    pub state: Option<SetState>,
    /// The format of the set (none when the manifest is unreadable).
    pub format: Option<String>,
    /// When the set was created.
    pub created_at: Option<DateTime<Utc>>,
    /// When the manifest was last written.
    pub updated_at: Option<DateTime<Utc>>,
    /// Declared source cluster id.
    pub source_cluster_id: Option<String>,
    /// Cluster id the source reported.
    pub kafka_cluster_id: Option<String>,
    /// Bootstrap servers of the source.
    pub source_bootstrap_servers: Vec<String>,
    /// Codec of the last segments written.
    pub compression: Option<String>,
    /// Topics.
    pub topics: Vec<backup::TopicSummary>,
    /// Partitions.
    pub partitions: u64,
    /// Segments.
    pub segments: u64,
    /// Records.
    pub records: u64,
    /// Uncompressed bytes.
    pub bytes: u64,
    /// Stored bytes.
    pub stored_bytes: u64,
    /// Earliest record time.
    pub first_record_time: Option<DateTime<Utc>>,
    /// Latest record time.
    pub last_record_time: Option<DateTime<Utc>>,
    /// The consumer-group snapshot.
    pub group_snapshot: Option<backup::GroupSnapshotEntry>,
}

impl BackupIdentity {
    /// The identity of a set from its location, the key and bytes of its manifest (either format)
    /// and the parsed manifest. Pure.
    pub fn new(
        backup_id: &str,
        location: &ObjectLocation,
        manifest_key: &str,
        manifest_bytes: Option<&[u8]>,
        manifest: Option<&Manifest>,
    ) -> Self {
        let dir = location.uri(manifest_key.rsplit_once('/').map_or(manifest_key, |(dir, _)| dir));
        let mut identity = BackupIdentity {
            backup_id: backup_id.into(),
            manifest_uri: location.uri(manifest_key),
            manifest_sha256: manifest_bytes.map(evidence::sha256_hex),
            manifest_bytes: manifest_bytes.map(|b| b.len() as u64),
            location: dir.clone(),
            ..Default::default()
        };
        if let Some(m) = manifest {
            let s = backup::summarize(m, &dir);
            identity.state = Some(m.state);
            identity.format = Some(m.format.clone());
            identity.created_at = Some(m.created_at);
            identity.updated_at = Some(m.updated_at);
            identity.source_cluster_id = m.source_cluster_id.clone();
            identity.kafka_cluster_id = m.kafka_cluster_id.clone();
            identity.source_bootstrap_servers = m.bootstrap_servers.clone();
            identity.compression = Some(m.compression.clone());
            identity.topics = s.topics;
            identity.partitions = s.partitions;
            identity.segments = s.segments;
            identity.records = s.records;
            identity.bytes = s.bytes;
            identity.stored_bytes = s.stored_bytes;
            identity.first_record_time = s.first_record_time;
            identity.last_record_time = s.last_record_time;
            identity.group_snapshot = m.group_snapshot.clone();
        }
        identity
    }
}

/// Counts of a report's checks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Overall result.
    pub result: CheckOutcome,
    /// Checks.
    pub total: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Warned.
    pub warned: usize,
    /// Skipped.
    pub skipped: usize,
}

impl Summary {
    /// Counts the checks. Pure.
    pub fn of(checks: &[CheckReport]) -> Self {
        let n = |o: CheckOutcome| checks.iter().filter(|c| c.outcome == o).count();
        Summary {
            result: overall(checks),
            total: checks.len(),
            passed: n(CheckOutcome::Passed),
            failed: n(CheckOutcome::Failed),
            warned: n(CheckOutcome::Warning),
            skipped: n(CheckOutcome::Skipped),
        }
    }
}

/// The signing key named by a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningIdentity {
    /// Algorithm.
    pub algorithm: SigningAlgorithm,
    /// Hex SHA-256 of the signer's SPKI PEM public key.
    pub public_key_sha256: String,
}

/// The operator that wrote a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorIdentity {
    /// `kafka-backup-operator`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// An evidence report ([module docs](self) define its format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// [`REPORT_FORMAT`].
    pub format: String,
    /// Id.
    pub report_id: String,
    /// When it was written.
    pub generated_at: DateTime<Utc>,
    /// Who wrote it.
    pub operator: OperatorIdentity,
    /// The KafkaBackupValidation and what it asked for.
    pub validation: Value,
    /// The backup set.
    pub backup: BackupIdentity,
    /// Every check.
    pub checks: Vec<CheckReport>,
    /// Counts and overall result.
    pub summary: Summary,
    /// The signing key, when signed.
    pub signing: Option<SigningIdentity>,
    /// When the validation started.
    pub started_at: DateTime<Utc>,
    /// When it finished its checks.
    pub completed_at: DateTime<Utc>,
    /// Milliseconds in all.
    pub duration_ms: i64,
}

fn cluster_identity(cluster: &KafkaClusterSpec) -> Value {
    let protocol = match cluster.security_protocol {
        SecurityProtocol::Plaintext => "PLAINTEXT",
        SecurityProtocol::Ssl => "SSL",
        SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
        SecurityProtocol::SaslSsl => "SASL_SSL",
    };
    json!({"bootstrapServers": cluster.bootstrap_servers, "securityProtocol": protocol})
}

/// The validation's identity and settings as a report shows them: no Secret names or values,
/// webhook URLs without user info and query. Pure.
pub fn validation_identity(resource: &ResourceRef, validation: &KafkaBackupValidation) -> Value {
    let spec = &validation.spec;
    let c = &spec.checks;
    let mut checks = serde_json::Map::new();
    if c.integrity.enabled {
        checks.insert(INTEGRITY.into(), json!({}));
    }
    if let Some(m) = c.message_count.as_ref().filter(|m| m.enabled) {
        checks.insert(
            MESSAGE_COUNT.into(),
            json!({"failThreshold": m.fail_threshold, "topics": m.topics}),
        );
    }
    if c.offset_range.as_ref().is_some_and(|o| o.enabled) {
        checks.insert(OFFSET_RANGE.into(), json!({}));
    }
    if let Some(g) = c.consumer_group_offsets.as_ref().filter(|g| g.enabled) {
        checks.insert(
            CONSUMER_GROUP_OFFSETS.into(),
            json!({"consumerGroups": g.consumer_groups}),
        );
    }
    if let Some(d) = c.restore_drill.as_ref().filter(|d| d.enabled) {
        checks.insert(
            RESTORE_DRILL.into(),
            json!({"topicPrefix": d.topic_prefix,
                "kafkaCluster": d.kafka_cluster.as_ref().or(spec.kafka_cluster.as_ref()).map(cluster_identity)}),
        );
    }
    for hook in c.custom_webhooks.iter().flatten() {
        checks.insert(
            hook.name.clone(),
            json!({"url": redact_url(&hook.url), "timeoutSeconds": hook.timeout_seconds,
                "expectedStatusCode": hook.expected_status_code}),
        );
    }
    json!({
        "apiVersion": "kafka.oso.sh/v1beta1",
        "kind": "KafkaBackupValidation",
        "namespace": resource.namespace.clone().or_else(|| validation.metadata.namespace.clone()),
        "name": if resource.name.is_empty() { validation.metadata.name.clone().unwrap_or_default() } else { resource.name.clone() },
        "uid": resource.uid.clone().or_else(|| validation.metadata.uid.clone()),
        "generation": validation.metadata.generation,
        "schedule": spec.schedule,
        "kafkaCluster": spec.kafka_cluster.as_ref().map(cluster_identity),
        "checks": checks,
    })
}

/// A report id: `<name>-<UTC yyyymmddThhmmssZ>-<8 hex>`.
pub fn report_id(name: &str, at: DateTime<Utc>) -> String {
    let mut random = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let name: String = name.chars().take(180).collect();
    let name = if name.is_empty() {
        "validation".to_owned()
    } else {
        name
    };
    format!("{name}-{}-{hex}", at.format("%Y%m%dT%H%M%SZ"))
}

// ---------------------------------------------------------------------------------------------
// Execution.

/// What one validation run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The backup set.
    pub backup: BackupIdentity,
    /// Every check.
    pub checks: Vec<CheckReport>,
    /// Where the report went.
    pub evidence: Option<EvidenceStatus>,
    /// Reports deleted by retention.
    pub expired_reports: usize,
    /// The report, when one was written.
    pub report: Option<Report>,
}

/// Runs a KafkaBackupValidation once (with its retries and deadline) and returns its status.
pub async fn execute(validation: &KafkaBackupValidation, ctx: &Context) -> KafkaBackupValidationStatus {
    let spec = &validation.spec;
    let started = Utc::now();
    let mut status = KafkaBackupValidationStatus {
        observed_generation: validation.metadata.generation,
        backup_id: spec.backup_ref.backup_id.clone(),
        ..Default::default()
    };
    if spec.suspend {
        status.phase = Some(RunPhase::Suspended);
        status.message = Some("suspend is set: no validation started".into());
        return status;
    }
    status.phase = Some(RunPhase::Running);
    status.start_time = Some(time(started));
    let result = execution::attempts(spec.execution.as_ref(), ctx, |attempt| async move {
        run_once(validation, &attempt, started).await
    })
    .await;
    let finished = Utc::now();
    status.completion_time = Some(time(finished));
    let secrets = secret_values(spec, ctx);
    match result {
        Ok(outcome) => {
            let summary = Summary::of(&outcome.checks);
            status.phase = Some(RunPhase::Completed);
            status.result = Some(summary.result);
            status.backup_id = Some(outcome.backup.backup_id.clone());
            status.last_validation_time = Some(time(finished));
            status.checks_total = Some(summary.total as i32);
            status.checks_passed = Some(summary.passed as i32);
            status.checks_failed = Some(summary.failed as i32);
            status.checks_warned = Some(summary.warned as i32);
            status.checks_skipped = Some(summary.skipped as i32);
            status.checks = Some(
                outcome
                    .checks
                    .iter()
                    .map(|c| ValidationCheckResult {
                        name: c.name.clone(),
                        outcome: c.outcome,
                        message: Some(scrub(&c.message, &secrets)),
                        duration_ms: Some(c.duration_ms),
                    })
                    .collect(),
            );
            let failed: Vec<&str> = outcome
                .checks
                .iter()
                .filter(|c| c.outcome == CheckOutcome::Failed)
                .map(|c| c.name.as_str())
                .collect();
            let mut message = match summary.result {
                CheckOutcome::Failed => format!(
                    "backup set {} failed validation: {} of {} checks failed ({})",
                    outcome.backup.backup_id,
                    summary.failed,
                    summary.total,
                    failed.join(", ")
                ),
                CheckOutcome::Warning => format!(
                    "backup set {} passed validation with {} warning(s)",
                    outcome.backup.backup_id, summary.warned
                ),
                CheckOutcome::Passed => format!(
                    "backup set {} passed all {} checks",
                    outcome.backup.backup_id, summary.passed
                ),
                CheckOutcome::Skipped => format!("no check ran on backup set {}", outcome.backup.backup_id),
            };
            // Never "complete" where the format cannot prove it.
            if outcome.backup.state == Some(SetState::Unknown) {
                message.push_str(&format!("; {}", prior_art::COMPLETENESS_NOTE));
            }
            if let Some(path) = outcome.evidence.as_ref().and_then(|e| e.path.as_ref()) {
                message.push_str(&format!("; evidence report {path}"));
            }
            if outcome.expired_reports > 0 {
                message.push_str(&format!(
                    "; {} report(s) older than retentionDays deleted",
                    outcome.expired_reports
                ));
            }
            status.message = Some(scrub(&message, &secrets));
            status.evidence = outcome.evidence;
        }
        Err(e) => {
            status.phase = Some(RunPhase::Failed);
            status.message = Some(scrub(&e.to_string(), &secrets));
        }
    }
    if let Some(schedule) = &spec.schedule
        && let Ok(Some(next)) = super::backup::next_tick(schedule, finished)
    {
        status.next_schedule_time = Some(time(next));
    }
    status
}

/// The values of every Secret the validation names (but the public signing key), for
/// [`scrub`]. Unreadable ones are left out (their use fails elsewhere).
fn secret_values(spec: &KafkaBackupValidationSpec, ctx: &Context) -> Vec<String> {
    let public = spec
        .evidence
        .as_ref()
        .and_then(|e| e.signing.as_ref())
        .map(|s| (s.key_secret.name.clone(), s.key_secret.public_key_key.clone()));
    crate::secrets::refs::backup_validation(spec)
        .into_iter()
        .filter(|r| public.as_ref() != Some(&(r.secret.clone(), r.key.clone())))
        .filter_map(|r| ctx.secrets.get(&r.secret, &r.key).ok())
        .map(|v| String::from_utf8_lossy(&v).trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

fn refused(field: &'static str, message: impl Into<String>) -> ValidationError {
    ValidationError::Refused {
        field,
        message: message.into(),
    }
}

fn object_location(
    storage: &StorageSpec,
    ctx: &Context,
    field: &'static str,
) -> Result<ObjectLocation, ValidationError> {
    object_location_retrying(storage, None, ctx, field)
}

/// [`object_location`] with its requests retried for `execution.retryTimeoutSeconds`.
fn object_location_retrying(
    storage: &StorageSpec,
    execution: Option<&ExecutionSpec>,
    ctx: &Context,
    field: &'static str,
) -> Result<ObjectLocation, ValidationError> {
    match super::open_storage(storage, execution, ctx)? {
        Location::Object(o) => Ok(o),
        Location::ConfigMap(_) => Err(refused(
            field,
            "ConfigMap storage holds offset snapshots only: use PVC, S3, Azure or GCS",
        )),
    }
}

/// The signer of the reports, when signing is enabled.
fn load_signer(evidence: &EvidenceSpec, ctx: &Context) -> Result<Option<Signer>, ValidationError> {
    let Some(signing) = evidence
        .signing
        .as_ref()
        .filter(|s| s.enabled && evidence.enabled)
    else {
        return Ok(None);
    };
    let k = &signing.key_secret;
    let private = ctx
        .secrets
        .get(&k.name, &k.private_key_key)
        .map_err(|source| ValidationError::Secret {
            field: "spec.evidence.signing.keySecret.privateKeyKey",
            source,
        })?;
    // The public key is optional in the Secret: it is derived from the private key, and when
    // given it must match.
    let public = match ctx.secrets.get(&k.name, &k.public_key_key) {
        Ok(p) => Some(p),
        Err(SecretError::MissingKey { .. }) => None,
        Err(source) => {
            return Err(ValidationError::Secret {
                field: "spec.evidence.signing.keySecret.publicKeyKey",
                source,
            });
        }
    };
    let what = format!("Secret {} key {}", k.name, k.private_key_key);
    Ok(Some(Signer::from_pem(
        signing.algorithm,
        &private,
        public.as_deref(),
        &what,
    )?))
}

async fn run_once(
    validation: &KafkaBackupValidation,
    ctx: &Context,
    started: DateTime<Utc>,
) -> Result<Outcome, ValidationError> {
    let spec = &validation.spec;
    let clock = Instant::now();
    let (storage, backup_id) =
        super::stored_backup_ref(&spec.backup_ref).map_err(|(field, message)| refused(field, message))?;
    let location = object_location_retrying(
        storage,
        spec.execution.as_ref(),
        ctx,
        "spec.backupRef.storage.type",
    )?;
    // Everything that can make the evidence impossible is checked before any work.
    let evidence_spec = spec.evidence.as_ref().filter(|e| e.enabled);
    let signer = match evidence_spec {
        Some(e) => load_signer(e, ctx)?,
        None => None,
    };
    let evidence_location = match evidence_spec {
        Some(e) => Some(match &e.storage {
            Some(s) => object_location(s, ctx, "spec.evidence.storage.type")?,
            None => location.clone(),
        }),
        None => None,
    };
    let secrets = secret_values(spec, ctx);

    // The manifest, in either format (this operator's or the prior art's, read only).
    let found = match backup_set::find_manifest(&location, &backup_id).await {
        Ok(found) => Ok(found),
        Err(BackupFormatError::Storage(e)) => return Err(e.into()),
        Err(e) => Err(e.to_string()),
    };
    let (manifest_key, manifest_bytes) = match &found {
        Ok(Some((key, bytes))) => (key.clone(), Some(bytes.clone())),
        _ => (backup::manifest_key(&backup_id), None),
    };
    let manifest_uri = location.uri(&manifest_key);
    let set = match found {
        Err(e) => Err(e),
        Ok(None) => Err(format!(
            "backup set {backup_id} not found: {} (no backup run reached its first checkpoint, or the set was deleted)",
            backup_set::manifest_uris(&location, &backup_id)
        )),
        Ok(Some((key, bytes))) => match BackupSet::read(&location, &backup_id, key, bytes).await {
            Err(BackupFormatError::Storage(e)) => return Err(e.into()),
            other => other.map_err(|e| e.to_string()),
        },
    };
    let identity = BackupIdentity::new(
        &backup_id,
        &location,
        &manifest_key,
        manifest_bytes.as_deref(),
        set.as_ref().ok().map(|s| &s.manifest),
    );

    let mut checks = Vec::new();
    let c = &spec.checks;
    let cluster_access = match &spec.kafka_cluster {
        Some(k) => Some(ClusterAccess::read(k, &ctx.secrets)?),
        None => None,
    };
    let description = spec
        .kafka_cluster
        .as_ref()
        .map(|k| format!("cluster {}", k.bootstrap_servers.join(",")))
        .unwrap_or_default();
    let message_count = c.message_count.as_ref().filter(|m| m.enabled);
    let offset_range = c.offset_range.as_ref().is_some_and(|o| o.enabled);
    let groups_check = c.consumer_group_offsets.as_ref().filter(|g| g.enabled);
    let drill = c.restore_drill.as_ref().filter(|d| d.enabled);

    match &set {
        Err(problem) => {
            let at = Utc::now();
            let now = Instant::now();
            if c.integrity.enabled {
                checks.push(CheckReport::from_judgement(
                    INTEGRITY,
                    at,
                    now,
                    Judgement::new(
                        CheckOutcome::Failed,
                        problem.clone(),
                        json!({"manifest": manifest_uri}),
                    ),
                ));
            }
            let skip = format!("not run: the manifest cannot be read ({manifest_uri})");
            let mut names: Vec<&str> = Vec::new();
            if message_count.is_some() {
                names.push(MESSAGE_COUNT);
            }
            if offset_range {
                names.push(OFFSET_RANGE);
            }
            if groups_check.is_some() {
                names.push(CONSUMER_GROUP_OFFSETS);
            }
            if drill.is_some() {
                names.push(RESTORE_DRILL);
            }
            if !c.integrity.enabled {
                // Nothing else reports the unreadable manifest: the first check does.
                if let Some(first) = names.first().copied() {
                    checks.push(CheckReport::from_judgement(
                        first,
                        at,
                        now,
                        Judgement::new(CheckOutcome::Failed, problem.clone(), Value::Null),
                    ));
                    names.remove(0);
                }
            }
            for name in names {
                checks.push(CheckReport::from_judgement(
                    name,
                    at,
                    now,
                    Judgement::skipped(&skip),
                ));
            }
        }
        Ok(set) => {
            let manifest = &set.manifest;
            if c.integrity.enabled {
                let at = Utc::now();
                let now = Instant::now();
                let j = integrity(&location, set, ctx).await?;
                checks.push(CheckReport::from_judgement(INTEGRITY, at, now, j));
            }
            // The drill runs first when the count checks need its scratch topics.
            let mut drill_report = None;
            let mut drill_view = None;
            if let Some(d) = drill {
                let at = Utc::now();
                let now = Instant::now();
                let target = d
                    .kafka_cluster
                    .as_ref()
                    .or(spec.kafka_cluster.as_ref())
                    .ok_or_else(|| {
                        refused(
                            "spec.checks.restoreDrill.kafkaCluster",
                            "needs spec.kafkaCluster or checks.restoreDrill.kafkaCluster to restore into",
                        )
                    })?;
                let (j, view) = restore_drill(storage, &backup_id, set, target, &d.topic_prefix, ctx).await;
                drill_report = Some(CheckReport::from_judgement(RESTORE_DRILL, at, now, j));
                drill_view = view;
            }
            let cluster_view = match (&cluster_access, message_count.is_some() || offset_range) {
                (Some(access), true) => {
                    Some(cluster_view(&access.rdkafka_config(), manifest, &description).await)
                }
                _ => None,
            };
            let view = match (cluster_view, &drill_view) {
                (Some(v), _) => Some(v),
                (None, Some(d)) => Some(Ok(d.clone())),
                (None, None) => None,
            };
            let unavailable = |what: &str| match (&drill, &drill_report) {
                (Some(_), Some(r)) if r.outcome == CheckOutcome::Failed => Judgement::skipped(format!(
                    "not run: the restore drill failed, so there is nothing to {what}"
                )),
                _ => Judgement::skipped(format!("not run: no kafkaCluster or restore drill to {what}")),
            };
            if let Some(m) = message_count {
                let at = Utc::now();
                let now = Instant::now();
                let topics = m.topics.clone().unwrap_or_default();
                let j = match &view {
                    Some(Ok(v)) => judge_message_count(manifest, &topics, m.fail_threshold, v),
                    Some(Err(e)) => Judgement::new(CheckOutcome::Failed, e.clone(), Value::Null),
                    None => unavailable("count records in"),
                };
                checks.push(CheckReport::from_judgement(MESSAGE_COUNT, at, now, j));
            }
            if offset_range {
                let at = Utc::now();
                let now = Instant::now();
                let j = match &view {
                    Some(Ok(v)) => judge_offset_range(manifest, v),
                    Some(Err(e)) => Judgement::new(CheckOutcome::Failed, e.clone(), Value::Null),
                    None => unavailable("compare offsets with"),
                };
                checks.push(CheckReport::from_judgement(OFFSET_RANGE, at, now, j));
            }
            if let Some(g) = groups_check {
                let at = Utc::now();
                let now = Instant::now();
                let wanted = g.consumer_groups.clone().unwrap_or_default();
                let j = consumer_groups(&location, set, &wanted, cluster_access.as_ref(), &description).await;
                checks.push(CheckReport::from_judgement(CONSUMER_GROUP_OFFSETS, at, now, j));
            }
            checks.extend(drill_report);
        }
    }
    if ctx.cancel.is_cancelled() {
        return Err(ValidationError::Cancelled);
    }
    let report_id = report_id(&ctx.resource.name, started);
    for hook in c.custom_webhooks.iter().flatten() {
        let at = Utc::now();
        let now = Instant::now();
        let body = webhook_body(
            hook,
            &report_id,
            &ctx.resource,
            &identity,
            spec.kafka_cluster.as_ref(),
            &checks,
        );
        let body = scrub(&body.to_string(), &secrets);
        let call = post_json(&hook.url, Bytes::from(body), hook.timeout_seconds.max(1) as u64).await;
        checks.push(CheckReport::from_judgement(
            &hook.name,
            at,
            now,
            judge_webhook(hook, &call),
        ));
    }
    for check in &mut checks {
        check.message = scrub(&check.message, &secrets);
        if let Ok(details) = serde_json::from_str(&scrub(&check.details.to_string(), &secrets)) {
            check.details = details;
        }
    }

    let mut outcome = Outcome {
        backup: identity,
        checks,
        evidence: None,
        expired_reports: 0,
        report: None,
    };
    if let (Some(e), Some(evidence_location)) = (evidence_spec, evidence_location) {
        let completed = Utc::now();
        let report = Report {
            format: REPORT_FORMAT.into(),
            report_id: report_id.clone(),
            generated_at: completed,
            operator: OperatorIdentity {
                name: env!("CARGO_PKG_NAME").into(),
                version: env!("CARGO_PKG_VERSION").into(),
            },
            validation: validation_identity(&ctx.resource, validation),
            backup: outcome.backup.clone(),
            summary: Summary::of(&outcome.checks),
            checks: outcome.checks.clone(),
            signing: signer.as_ref().map(|s| SigningIdentity {
                algorithm: s.algorithm(),
                public_key_sha256: evidence::sha256_hex(s.public_key_pem().as_bytes()),
            }),
            started_at: started,
            completed_at: completed,
            duration_ms: clock.elapsed().as_millis() as i64,
        };
        let (status, expired) = store_report(
            &evidence_location,
            &report,
            signer.as_ref(),
            &secrets,
            e.retention_days,
            &validation_identity(&ctx.resource, validation),
        )
        .await?;
        outcome.evidence = Some(status);
        outcome.expired_reports = expired;
        outcome.report = Some(report);
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------------
// Integrity: I/O.

/// Reads and checks every segment of a set, and its chains, and judges.
/// The Integrity check of a set (either format), as KafkaBackupValidation and `import` run it.
pub async fn integrity(
    location: &ObjectLocation,
    set: &BackupSet,
    ctx: &Context,
) -> Result<Judgement, ValidationError> {
    let mut inputs = integrity_inputs(location, set, ctx).await?;
    if set.manifest.group_snapshot.is_some()
        && let Err(e) = set.read_group_snapshot(location).await
    {
        inputs.group_snapshot_problem = Some(e.to_string());
    }
    Ok(judge_integrity(&inputs))
}

/// Gathers the integrity check's inputs: the listing, each segment inspected (a few at a time,
/// decoded on the blocking pool), each chain judged. Public for the benchmark.
pub async fn integrity_inputs(
    location: &ObjectLocation,
    set: &BackupSet,
    ctx: &Context,
) -> Result<IntegrityInputs, ValidationError> {
    let manifest = &set.manifest;
    let (topics_dir, is_segment) = set.segments_dir();
    let stored: BTreeMap<String, u64> = location
        .list(&topics_dir)
        .await?
        .into_iter()
        .filter(|o| is_segment(&o.key))
        .map(|o| (format!("{topics_dir}/{}", o.key), o.size))
        .collect();
    let mut inputs = IntegrityInputs {
        state: Some(manifest.state),
        notes: set.completeness_note().map(str::to_owned).into_iter().collect(),
        ..Default::default()
    };
    if let Some(stored) = set.prior_art_manifest() {
        let between = prior_art::offsets_between_segments(stored);
        if !between.is_empty() {
            let total: i64 = between.iter().map(|(_, _, a, b)| b - a).sum();
            let listed: Vec<String> = between
                .iter()
                .map(|(t, p, a, b)| format!("{t}-{p} {a}..{b}"))
                .collect();
            inputs.notes.push(format!(
                "{} range(s) of offsets between segments ({total} offsets) hold no record: compaction, transaction markers or records missing from the set, which kafka-backup 0.x recorded no positions to tell apart: {}",
                between.len(),
                list_some(&listed)
            ));
        }
    }
    let mut work: Vec<(String, i32, SegmentEntry)> = Vec::new();
    for (topic, t) in &manifest.topics {
        for (partition, p) in &t.partitions {
            inputs.chains.push(judge_chain(topic, *partition, p));
            for s in &p.segments {
                work.push((topic.clone(), *partition, s.clone()));
            }
        }
    }
    let listed: BTreeSet<&str> = work.iter().map(|(_, _, s)| s.key.as_str()).collect();
    inputs.unlisted = stored
        .keys()
        .filter(|k| !listed.contains(k.as_str()))
        .map(|k| location.uri(k))
        .collect();
    inputs.listed_segments = work.len() as u64;
    let total: u64 = work.iter().map(|(_, _, s)| s.stored_bytes).sum();
    // A few segments at a time (stored and decompressed bytes in memory), within a budget.
    let largest = work
        .iter()
        .map(|(_, _, s)| s.stored_bytes + s.uncompressed_bytes)
        .max()
        .unwrap_or(1)
        .max(1);
    let cpus = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8);
    let parallel = usize::try_from(INTEGRITY_MEMORY / largest)
        .unwrap_or(1)
        .clamp(1, cpus);
    let mut done_bytes = 0u64;
    let mut empty_header_values = 0u64;
    let mut results = stream::iter(work.into_iter().map(|(_topic, partition, entry)| {
        let present = stored.contains_key(&entry.key);
        let location = location.clone();
        let prior_art = set.prior_art_segment(&entry.key);
        async move {
            let uri = location.uri(&entry.key);
            let missing = "missing: the manifest lists it but storage does not hold it";
            if !present {
                return Ok((uri, entry.stored_bytes, Err(missing.to_owned())));
            }
            // A read that fails (storage away, throttling past the retry budget, credentials
            // refused) says nothing about the segment: it fails the check, to be retried, and is
            // never reported as a problem of the backup.
            let Some(bytes) = location.get(&entry.key).await? else {
                return Ok((uri, entry.stored_bytes, Err(missing.to_owned())));
            };
            let size = entry.stored_bytes;
            let verdict = tokio::task::spawn_blocking(move || match prior_art {
                None => inspect_segment(&entry, partition, bytes).map(|s| (s, 0)),
                Some(meta) => prior_art::segment::inspect(&meta, &bytes).map(|i| {
                    let stats = SegmentStats {
                        records: i.records,
                        bytes: i.uncompressed_bytes,
                        stored_bytes: i.stored_bytes,
                    };
                    (stats, i.empty_header_values)
                }),
            })
            .await
            .unwrap_or_else(|e| Err(format!("inspection failed: {e}")));
            Ok::<_, StorageError>((uri, size, verdict))
        }
    }))
    .buffered(parallel);
    while let Some(result) = results.next().await {
        let (uri, size, verdict) = result?;
        if ctx.cancel.is_cancelled() {
            return Err(ValidationError::Cancelled);
        }
        done_bytes += size;
        ctx.report(done_bytes, Some(total), "bytes of segments verified");
        match verdict {
            Ok((stats, empty)) => {
                empty_header_values += empty;
                inputs.verified_segments += 1;
                inputs.verified.records += stats.records;
                inputs.verified.bytes += stats.bytes;
                inputs.verified.stored_bytes += stats.stored_bytes;
            }
            Err(problem) => inputs.problems.push(SegmentProblem { uri, problem }),
        }
    }
    if set.format == SetFormat::PriorArt && empty_header_values > 0 {
        inputs.notes.push(format!(
            "{empty_header_values} record(s) carry empty header values: kafka-backup before 0.18 stored null header values as empty, so some of them may have been null"
        ));
    }
    Ok(inputs)
}

// ---------------------------------------------------------------------------------------------
// Cluster checks: I/O.

async fn on_blocking<T, F>(work: F) -> Result<T, String>
where
    F: FnOnce() -> Result<T, KafkaError> + Send + 'static,
    T: Send + 'static,
{
    super::blocking(work).await.map_err(|e| e.to_string())
}

/// The cluster's topics and log bounds for the manifest's partitions.
async fn cluster_view(
    config: &ClientConfig,
    manifest: &Manifest,
    description: &str,
) -> Result<TargetView, String> {
    let cluster = {
        let config = config.clone();
        Arc::new(on_blocking(move || Cluster::new(&config)).await?)
    };
    let topics = {
        let cluster = cluster.clone();
        on_blocking(move || cluster.topics()).await?
    };
    let wanted: BTreeSet<Partition> = manifest
        .topics
        .iter()
        .filter_map(|(name, t)| topics.get(name).map(|n| (name, t, *n)))
        .flat_map(|(name, t, n)| {
            t.partitions
                .keys()
                .filter(move |p| **p < n)
                .map(move |p| (name.clone(), *p))
        })
        .collect();
    let bounds = on_blocking(move || cluster.log_bounds(&wanted)).await?;
    Ok(TargetView {
        description: description.to_owned(),
        drill: false,
        topics: topics
            .into_iter()
            .filter(|(name, _)| manifest.topics.contains_key(name))
            .collect(),
        bounds,
        names: BTreeMap::new(),
    })
}

async fn consumer_groups(
    location: &ObjectLocation,
    set: &BackupSet,
    wanted: &[String],
    access: Option<&ClusterAccess>,
    description: &str,
) -> Judgement {
    let manifest = &set.manifest;
    let snapshot = match set.read_group_snapshot(location).await {
        Ok(s) => s,
        Err(e) => return Judgement::new(CheckOutcome::Failed, e.to_string(), Value::Null),
    };
    let (mut failed, mut warned, offsets) = judge_group_snapshot(manifest, snapshot.as_ref(), wanted);
    let groups = selected_groups(snapshot.as_ref(), wanted);
    if snapshot.is_none() && !wanted.is_empty() && access.is_none() {
        failed.push("the backup set has no consumer-group snapshot (consumerGroupSnapshot was off)".into());
    }
    if groups.is_empty() && failed.is_empty() {
        return Judgement::skipped(if snapshot.is_some() {
            "the backup's consumer-group snapshot holds no group, and checks.consumerGroupOffsets.consumerGroups is empty"
        } else {
            "no group to check: the backup set has no consumer-group snapshot (consumerGroupSnapshot was off) and checks.consumerGroupOffsets.consumerGroups is empty"
        });
    }
    let Some(access) = access else {
        return group_judgement(snapshot.is_some(), offsets, groups.len(), None, failed, warned);
    };
    // The partitions to read: those of the snapshot per group, or every backed-up partition.
    let all: BTreeSet<Partition> = manifest
        .topics
        .iter()
        .flat_map(|(t, e)| e.partitions.keys().map(move |p| (t.clone(), *p)))
        .collect();
    let per_group: BTreeMap<String, BTreeSet<Partition>> = groups
        .iter()
        .map(|g| {
            let partitions = snapshot
                .as_ref()
                .and_then(|s| s.groups.get(g))
                .map(|topics| {
                    topics
                        .iter()
                        .flat_map(|(t, ps)| ps.keys().map(move |p| (t.clone(), *p)))
                        .collect()
                })
                .unwrap_or_else(|| all.clone());
            (g.clone(), partitions)
        })
        .collect();
    let read = read_groups(access, per_group).await;
    match read {
        Err(e) => failed.push(format!("the groups cannot be read on {description}: {e}")),
        Ok((found, bounds)) => {
            let (f, w) = judge_groups_on_cluster(&found, &bounds);
            failed.extend(f);
            warned.extend(w);
        }
    }
    group_judgement(
        snapshot.is_some(),
        offsets,
        groups.len(),
        Some(description),
        failed,
        warned,
    )
}

/// OffsetFetch requests in flight at once while reading the groups.
const GROUP_READ_PARALLELISM: usize = 10;

/// Each group's state and committed offsets (of its partitions that exist on the cluster), with
/// the protocol client: one DescribeGroups and batched OffsetFetch requests per coordinator. Also
/// the log bounds of those partitions.
async fn read_groups(
    access: &ClusterAccess,
    per_group: BTreeMap<String, BTreeSet<Partition>>,
) -> Result<
    (
        BTreeMap<String, Result<GroupOnCluster, String>>,
        BTreeMap<Partition, LogBounds>,
    ),
    String,
> {
    let config = access.rdkafka_config();
    let cluster = Arc::new(on_blocking(move || Cluster::new(&config)).await?);
    let existing = {
        let cluster = cluster.clone();
        on_blocking(move || cluster.topics()).await?
    };
    let per_group: BTreeMap<String, BTreeSet<Partition>> = per_group
        .into_iter()
        .map(|(group, partitions)| {
            let partitions = partitions
                .into_iter()
                .filter(|(t, p)| existing.get(t).is_some_and(|n| p < n))
                .collect();
            (group, partitions)
        })
        .collect();
    let admin = kafka::group_admin(access).await.map_err(|e| e.to_string())?;
    let groups: Vec<String> = per_group.keys().cloned().collect();
    let descriptions = admin.describe(&groups).await.map_err(|e| e.to_string())?;
    let found = admin
        .committed_each(&per_group, GROUP_READ_PARALLELISM)
        .await
        .into_iter()
        .map(|(group, committed)| {
            let found = committed
                .map(|committed| GroupOnCluster {
                    description: descriptions
                        .get(&group)
                        .cloned()
                        .unwrap_or_else(GroupDescription::dead),
                    committed,
                })
                .map_err(|e| e.to_string());
            (group, found)
        })
        .collect();
    let wanted_bounds: BTreeSet<Partition> = per_group.into_values().flatten().collect();
    let bounds = on_blocking(move || cluster.log_bounds(&wanted_bounds)).await?;
    Ok((found, bounds))
}

// ---------------------------------------------------------------------------------------------
// Restore drill.

fn admin(config: &ClientConfig) -> Result<AdminClient<DefaultClientContext>, String> {
    config
        .create()
        .map_err(|e| format!("creating the Kafka admin client: {e}"))
}

/// Deletes topics and waits until metadata no longer lists them.
async fn delete_topics(config: &ClientConfig, names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let admin = admin(config)?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .delete_topics(&refs, &options)
        .await
        .map_err(|e| format!("deleting scratch topics: {e}"))?;
    let mut errors = Vec::new();
    for r in results {
        if let Err((name, code)) = r
            && code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition
        {
            errors.push(format!("{name}: {code}"));
        }
    }
    if !errors.is_empty() {
        return Err(format!("deleting scratch topics: {}", errors.join(", ")));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let config = config.clone();
        let topics = on_blocking(move || Cluster::new(&config)?.topics()).await?;
        let left: Vec<&String> = names.iter().filter(|n| topics.contains_key(*n)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "scratch topics still listed 30s after deletion: {left:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One difference found by the drill's comparison.
fn compare_record(
    record: &backup::segment::RecordRef<'_>,
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> Option<String> {
    if record.key != message.key() {
        return Some("key differs".into());
    }
    if record.value != message.payload() {
        return Some("value differs".into());
    }
    let own: Vec<(&str, Option<&[u8]>)> = record.headers().collect();
    let restored: Vec<(&str, Option<&[u8]>)> = message
        .headers()
        .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    if own != restored {
        return Some(format!(
            "headers differ ({} in the backup, {} restored)",
            own.len(),
            restored.len()
        ));
    }
    if record.timestamp_type == TimestampType::CreateTime
        && message.timestamp().to_millis() != Some(record.timestamp)
    {
        return Some(format!(
            "timestamp {:?} restored, {} in the backup",
            message.timestamp().to_millis(),
            record.timestamp
        ));
    }
    None
}

/// Compares one decoded segment with the next records of a scratch partition: records read,
/// differences found, the first `limit` of them described.
fn compare_segment(
    reader: &crate::kafka::Consumer,
    segment: &Segment,
    uri: &str,
    scratch: &str,
    partition: i32,
    limit: usize,
) -> Result<(u64, u64, Vec<String>), String> {
    let mut found = Vec::new();
    let (mut n, mut count) = (0u64, 0u64);
    for record in segment.records() {
        let record = record.map_err(|e| format!("segment {uri}: {e}"))?;
        let idle = Instant::now();
        let message = loop {
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => break m,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                    return Err(format!(
                        "{scratch}-{partition} ends before the record at source offset {}: the restore is incomplete",
                        record.offset
                    ));
                }
                Some(Err(e)) => return Err(format!("reading {scratch}-{partition}: {e}")),
                None if idle.elapsed() > REQUEST_TIMEOUT => {
                    return Err(format!(
                        "reading {scratch}-{partition}: no record within {}s",
                        REQUEST_TIMEOUT.as_secs()
                    ));
                }
                None => {}
            }
        };
        n += 1;
        if let Some(d) = compare_record(&record, &message) {
            count += 1;
            if found.len() < limit {
                found.push(format!(
                    "{scratch}-{partition} offset {} (source offset {}): {d}",
                    message.offset(),
                    record.offset
                ));
            }
        }
    }
    Ok((n, count, found))
}

/// Reads one scratch partition and compares it with the segments of its source partition.
#[allow(clippy::too_many_arguments)] // the drill's running totals are passed in
async fn compare_partition(
    location: &ObjectLocation,
    format: SetFormat,
    config: &ClientConfig,
    scratch: &str,
    partition: i32,
    entry: &PartitionEntry,
    differences: &mut Vec<String>,
    difference_count: &mut u64,
) -> Result<u64, String> {
    let mut consumer_config = config.clone();
    consumer_config
        .set("group.id", "kafka-backup-operator-restore-drill")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer =
        crate::kafka::consumer(&consumer_config).map_err(|e| format!("creating the drill's reader: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(scratch, partition, Offset::Beginning)
        .map_err(|e| format!("reading {scratch}-{partition}: {e}"))?;
    consumer
        .assign(&tpl)
        .map_err(|e| format!("reading {scratch}-{partition}: {e}"))?;
    let mut consumer = Some(consumer);
    let mut compared = 0u64;
    for seg in &entry.segments {
        let bytes = location
            .get(&seg.key)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("segment {} is missing", location.uri(&seg.key)))?;
        let uri = location.uri(&seg.key);
        let reader = consumer.take().ok_or("the drill's reader was lost")?;
        let scratch = scratch.to_owned();
        let limit = MAX_DETAILS.saturating_sub(differences.len());
        let listed = seg.clone();
        let (reader, result) = tokio::task::spawn_blocking(move || {
            let segment = format
                .decode_segment(bytes, Vec::new(), partition, &listed)
                .map(|(segment, _)| segment)
                .map_err(|e| format!("segment {uri}: {e}"));
            let result = segment
                .and_then(|segment| compare_segment(&reader, &segment, &uri, &scratch, partition, limit));
            (reader, result)
        })
        .await
        .map_err(|e| format!("the drill's reader failed: {e}"))?;
        let (n, count, found) = result?;
        compared += n;
        *difference_count += count;
        differences.extend(found);
        consumer = Some(reader);
    }
    // Nothing more than the backup holds.
    if let Some(reader) = consumer {
        let scratch = scratch.to_owned();
        let extra = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            while started.elapsed() < REQUEST_TIMEOUT {
                match reader.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => return Some(m.offset()),
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return None,
                    _ => {}
                }
            }
            None
        })
        .await
        .map_err(|e| format!("the drill's reader failed: {e}"))?;
        if let Some(offset) = extra {
            *difference_count += 1;
            differences.push(format!(
                "{scratch}-{partition} holds a record at offset {offset} beyond the {compared} records of the backup"
            ));
        }
    }
    Ok(compared)
}

/// Restores the set into scratch topics, compares them record by record, reads their bounds and
/// deletes them. The view is the scratch topics' bounds for the count checks.
async fn restore_drill(
    storage: &StorageSpec,
    backup_id: &str,
    set: &BackupSet,
    target: &KafkaClusterSpec,
    prefix: &str,
    ctx: &Context,
) -> (Judgement, Option<TargetView>) {
    let manifest = &set.manifest;
    let config = match kafka::client_config(target, &ctx.secrets) {
        Ok(c) => c,
        Err(e) => {
            return (
                Judgement::new(CheckOutcome::Failed, e.to_string(), Value::Null),
                None,
            );
        }
    };
    let cluster_name = target.bootstrap_servers.join(",");
    let names: BTreeMap<String, String> = manifest
        .topics
        .keys()
        .map(|t| (t.clone(), format!("{prefix}{t}")))
        .collect();
    if names.is_empty() {
        return (
            Judgement::skipped("the backup set holds no topic to restore"),
            None,
        );
    }
    if let Some((_, long)) = names.iter().find(|(_, n)| n.len() > MAX_TOPIC_NAME) {
        return (
            Judgement::new(
                CheckOutcome::Failed,
                format!(
                    "scratch topic name {long:?} is longer than Kafka's {MAX_TOPIC_NAME} characters: choose a shorter topicPrefix"
                ),
                Value::Null,
            ),
            None,
        );
    }
    let existing = {
        let config = config.clone();
        on_blocking(move || Cluster::new(&config)?.topics()).await
    };
    let existing = match existing {
        Ok(t) => t,
        Err(e) => {
            return (
                Judgement::new(
                    CheckOutcome::Failed,
                    format!("cluster {cluster_name}: {e}"),
                    Value::Null,
                ),
                None,
            );
        }
    };
    let clashes: Vec<String> = names
        .values()
        .filter(|n| existing.contains_key(*n))
        .cloned()
        .collect();
    if !clashes.is_empty() {
        return (
            Judgement::new(
                CheckOutcome::Failed,
                format!(
                    "scratch topic(s) already exist in cluster {cluster_name}: {}; the drill never writes into a topic it did not create: delete them or choose another topicPrefix",
                    list_some(&clashes)
                ),
                json!({"existing": clashes}),
            ),
            None,
        );
    }
    let drill_name = format!(
        "{}-drill-{}",
        if ctx.resource.name.is_empty() {
            "validation"
        } else {
            &ctx.resource.name
        },
        Utc::now().format("%Y%m%dT%H%M%S%3fZ")
    );
    let restore: Result<KafkaRestore, _> = serde_json::from_value(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore",
        "metadata": {"name": drill_name, "namespace": ctx.resource.namespace},
        "spec": {
            "backupRef": {"backupId": backup_id, "storage": storage},
            "kafkaCluster": target,
            "topicMapping": names,
            "createTopics": {"enabled": true},
        }
    }));
    let restore = match restore {
        Ok(r) => r,
        Err(e) => {
            return (
                Judgement::new(
                    CheckOutcome::Failed,
                    format!("building the drill's restore: {e}"),
                    Value::Null,
                ),
                None,
            );
        }
    };
    // The drill's progress is the validation's, its status is not.
    let progress = ctx.progress.clone();
    let restore_ctx = Context {
        resource: ResourceRef {
            kind: "KafkaRestore".into(),
            namespace: ctx.resource.namespace.clone(),
            name: drill_name.clone(),
            uid: None,
        },
        progress: Arc::new(move |p| progress(super::Progress { status: None, ..p })),
        // The drill is one check of this validation, not an operation of its own.
        attempt_failed: Arc::new(|_| {}),
        ..ctx.clone()
    };
    let status = super::restore::execute(&restore, &restore_ctx).await;
    let restored = status.records_restored.unwrap_or(0);
    let mut problems = Vec::new();
    let mut differences = Vec::new();
    let mut difference_count = 0u64;
    let mut compared = 0u64;
    let mut view = None;
    if status.phase != Some(crate::api::v1beta1::Phase::Completed) {
        problems.push(format!(
            "the restore into cluster {cluster_name} did not complete: {}",
            status.message.clone().unwrap_or_default()
        ));
    } else {
        match object_location(storage, ctx, "spec.backupRef.storage.type") {
            Err(e) => problems.push(e.to_string()),
            Ok(location) => {
                'topics: for (topic, t) in &manifest.topics {
                    let Some(scratch) = names.get(topic) else { continue };
                    for (partition, entry) in &t.partitions {
                        match compare_partition(
                            &location,
                            set.format,
                            &config,
                            scratch,
                            *partition,
                            entry,
                            &mut differences,
                            &mut difference_count,
                        )
                        .await
                        {
                            Ok(n) => compared += n,
                            Err(e) => {
                                problems.push(e);
                                break 'topics;
                            }
                        }
                        if ctx.cancel.is_cancelled() {
                            problems.push("cancelled".into());
                            break 'topics;
                        }
                    }
                }
                // The scratch topics' bounds, for the count checks.
                let wanted: BTreeSet<Partition> = manifest
                    .topics
                    .iter()
                    .flat_map(|(t, e)| {
                        let scratch = names.get(t).cloned().unwrap_or_default();
                        e.partitions.keys().map(move |p| (scratch.clone(), *p))
                    })
                    .collect();
                let config2 = config.clone();
                let read = on_blocking(move || {
                    let cluster = Cluster::new(&config2)?;
                    Ok((cluster.topics()?, cluster.log_bounds(&wanted)?))
                })
                .await;
                match read {
                    Ok((topics, bounds)) => {
                        let back: BTreeMap<&String, &String> = names.iter().map(|(s, d)| (d, s)).collect();
                        view = Some(TargetView {
                            description: format!(
                                "the restore drill's scratch topics on cluster {cluster_name}"
                            ),
                            drill: true,
                            topics: topics
                                .into_iter()
                                .filter_map(|(n, c)| back.get(&n).map(|s| ((*s).clone(), c)))
                                .collect(),
                            bounds: bounds
                                .into_iter()
                                .filter_map(|((n, p), b)| back.get(&n).map(|s| (((*s).clone(), p), b)))
                                .collect(),
                            names: names.clone(),
                        });
                    }
                    Err(e) => problems.push(format!("reading the scratch topics' offsets: {e}")),
                }
                // The restore's state is the drill's, not the set's: remove it.
                let dir = backup::restore_dir(backup_id, &drill_name);
                match location.list(&dir).await {
                    Ok(objects) => {
                        for o in objects {
                            if let Err(e) = location.delete(&format!("{dir}/{}", o.key)).await {
                                problems.push(format!("removing the drill's restore state: {e}"));
                            }
                        }
                    }
                    Err(e) => problems.push(format!("removing the drill's restore state: {e}")),
                }
            }
        }
    }
    // The scratch topics go, whatever happened (only those this drill created: none existed).
    let created: Vec<String> = names.values().cloned().collect();
    let cleanup = delete_topics(&config, &created).await;
    if let Err(e) = &cleanup {
        problems.push(format!("the scratch topics could not all be deleted: {e}"));
    }
    let expected: u64 = manifest
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        .map(backed_up_records)
        .sum();
    let details = json!({
        "cluster": cluster_name, "scratchTopics": created, "restore": drill_name,
        "recordsRestored": restored, "recordsCompared": compared, "recordsInBackup": expected,
        "differences": first_details(&differences), "differenceCount": difference_count,
        "problems": problems, "scratchTopicsDeleted": cleanup.is_ok(),
    });
    if !problems.is_empty() || difference_count > 0 || compared != expected {
        let mut all = problems.clone();
        if compared != expected && problems.is_empty() {
            all.push(format!(
                "{compared} records compared, the backup holds {expected}"
            ));
        }
        all.extend(differences.iter().cloned());
        let message = format!(
            "restore drill into cluster {cluster_name} failed: {} record difference(s); {}",
            difference_count,
            list_some(&all)
        );
        return (Judgement::new(CheckOutcome::Failed, message, details), view);
    }
    (
        Judgement::new(
            CheckOutcome::Passed,
            format!(
                "{compared} records restored into {} scratch topic(s) on cluster {cluster_name} are identical to the backup (keys, values, headers, timestamps); scratch topics deleted",
                created.len()
            ),
            details,
        ),
        view,
    )
}

// ---------------------------------------------------------------------------------------------
// Webhooks: I/O.

fn webhook_body(
    hook: &CustomWebhookCheckSpec,
    report_id: &str,
    resource: &ResourceRef,
    backup: &BackupIdentity,
    cluster: Option<&KafkaClusterSpec>,
    checks: &[CheckReport],
) -> Value {
    json!({
        "event": "kafka_backup_validation",
        "check": hook.name,
        "reportId": report_id,
        "validation": {"namespace": resource.namespace, "name": resource.name, "uid": resource.uid},
        "backup": {"backupId": backup.backup_id, "location": backup.location,
            "manifestSha256": backup.manifest_sha256, "state": backup.state,
            "topics": backup.topics.iter().map(|t| &t.name).collect::<Vec<_>>(),
            "partitions": backup.partitions, "records": backup.records,
            "firstRecordTime": backup.first_record_time, "lastRecordTime": backup.last_record_time},
        "kafkaCluster": cluster.map(|c| json!({"bootstrapServers": c.bootstrap_servers})),
        "results": checks.iter().map(|c| json!({"name": c.name, "outcome": c.outcome, "message": c.message})).collect::<Vec<_>>(),
    })
}

/// POSTs a JSON body and waits at most `timeout_seconds` for the answer.
pub async fn post_json(url: &str, body: Bytes, timeout_seconds: u64) -> WebhookCall {
    match tokio::time::timeout(Duration::from_secs(timeout_seconds), post(url, body)).await {
        Err(_) => WebhookCall::TimedOut(timeout_seconds),
        Ok(Err(e)) => WebhookCall::Error(e),
        Ok(Ok((code, body))) => WebhookCall::Answered(code, body),
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn post(url: &str, body: Bytes) -> Result<(u16, Bytes), String> {
    use http_body_util::{BodyExt, Full, Limited};
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => return Err(format!("scheme {other:?}: only http and https are supported")),
    };
    let authority = uri.authority().ok_or("the URL has no host")?.clone();
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if https {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake with {host}:{port}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let host_header = match authority.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = hyper::Request::post(path)
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("kafka-backup-operator/", env!("CARGO_PKG_VERSION")),
        );
    if let Some((userinfo, _)) = authority.as_str().rsplit_once('@') {
        let encoded = base64::engine::general_purpose::STANDARD.encode(userinfo);
        request = request.header(hyper::header::AUTHORIZATION, format!("Basic {encoded}"));
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("building the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending the request: {e}"))?;
    let code = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_WEBHOOK_ANSWER)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok((code, body))
}

// ---------------------------------------------------------------------------------------------
// Evidence: I/O.

/// Stores a report and its envelope create-only, then deletes this validation's reports older
/// than `retention_days`. Returns the evidence status and how many reports were deleted.
async fn store_report(
    location: &ObjectLocation,
    report: &Report,
    signer: Option<&Signer>,
    secrets: &[String],
    retention_days: i32,
    owner: &Value,
) -> Result<(EvidenceStatus, usize), ValidationError> {
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| ValidationError::Worker(format!("encoding the report: {e}")))?;
    let bytes = Bytes::from(scrub(&json, secrets));
    let envelope = match signer {
        Some(s) => s.envelope(&bytes)?,
        None => evidence::unsigned_envelope(&bytes),
    };
    let envelope_bytes = serde_json::to_vec_pretty(&envelope)
        .map_err(|e| ValidationError::Worker(format!("encoding the envelope: {e}")))?;
    let key = evidence::report_key(&report.backup.backup_id, &report.report_id);
    location.put_new(&key, bytes).await?;
    location
        .put_new(
            &format!("{key}{}", evidence::ENVELOPE_SUFFIX),
            Bytes::from(envelope_bytes),
        )
        .await?;
    let expired = expire_reports(location, &key, retention_days, owner, report.generated_at).await?;
    Ok((
        EvidenceStatus {
            path: Some(location.uri(&key)),
            sha256: Some(envelope.report_sha256),
            signed: Some(envelope.signature.is_some()),
        },
        expired,
    ))
}

/// Whether a stored report is expired and belongs to `owner` (same namespace and name). Pure.
pub fn is_expired_report(report: &[u8], owner: &Value, now: DateTime<Utc>, retention_days: i32) -> bool {
    let Ok(parsed) = serde_json::from_slice::<Value>(report) else {
        return false;
    };
    let same = |k: &str| parsed["validation"][k] == owner[k];
    let generated = parsed["generatedAt"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    parsed["format"] == REPORT_FORMAT
        && same("namespace")
        && same("name")
        && generated.is_some_and(|g| now - g > chrono::Duration::days(i64::from(retention_days)))
}

async fn expire_reports(
    location: &ObjectLocation,
    just_written: &str,
    retention_days: i32,
    owner: &Value,
    now: DateTime<Utc>,
) -> Result<usize, ValidationError> {
    let cutoff = now - chrono::Duration::days(i64::from(retention_days));
    let mut deleted = 0;
    for object in location.list(evidence::EVIDENCE_DIR).await? {
        let key = format!("{}/{}", evidence::EVIDENCE_DIR, object.key);
        if !key.ends_with(".json") || key == just_written || object.last_modified > cutoff {
            continue;
        }
        let Some(bytes) = location.get(&key).await? else {
            continue;
        };
        if is_expired_report(&bytes, owner, now, retention_days) {
            location
                .delete(&format!("{key}{}", evidence::ENVELOPE_SUFFIX))
                .await?;
            location.delete(&key).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The UTC time of an epoch-millisecond timestamp, for tests and tools.
pub fn utc_millis(millis: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(millis).single()
}

/// A [`Gap`] for tests and tools.
pub fn gap(from: i64, to: i64) -> Gap {
    Gap {
        from,
        to,
        reason: "the log start moved past these offsets (retention or deletion) before they were backed up"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::storage::backup::segment::{Codec, SegmentBuilder, seal};

    fn sealed(partition: i32, offsets: &[i64], position_end: i64) -> (Bytes, SegmentEntry) {
        let mut b = SegmentBuilder::new(partition, offsets[0], Vec::new());
        for (i, o) in offsets.iter().enumerate() {
            b.push(
                *o,
                1000 + i as i64,
                TimestampType::CreateTime,
                Some(b"k"),
                Some(b"value"),
                std::iter::empty(),
                &[],
            );
        }
        let s = seal(b, position_end, Codec::Zstd(3)).unwrap();
        let mut all = s.header_bytes.to_vec();
        all.extend_from_slice(&s.body);
        let key = backup::segment_key("b", "t", partition, offsets[0]);
        let entry = SegmentEntry::from_header(key, &s.header);
        (Bytes::from(all), entry)
    }

    fn entry(first: i64, last: i64, start: i64, end: i64) -> SegmentEntry {
        SegmentEntry {
            key: format!("s{first}"),
            first_offset: first,
            last_offset: last,
            position_start: start,
            position_end: end,
            records: (last - first + 1) as u64,
            min_timestamp: 0,
            max_timestamp: 0,
            uncompressed_bytes: 0,
            stored_bytes: 0,
            crc32c: 0,
        }
    }

    #[test]
    fn a_good_segment_passes_and_any_change_is_named() {
        let (bytes, e) = sealed(2, &[10, 11, 13], 14);
        let stats = inspect_segment(&e, 2, bytes.clone()).unwrap();
        assert_eq!(stats.records, 3);
        // Wrong partition directory.
        let err = inspect_segment(&e, 3, bytes.clone()).unwrap_err();
        assert!(
            err.contains("partition 2 in the segment, 3 in the manifest"),
            "{err}"
        );
        // Manifest disagrees with the header.
        let mut other = e.clone();
        other.records = 4;
        let err = inspect_segment(&other, 2, bytes.clone()).unwrap_err();
        assert!(
            err.contains("record count 3 in the segment, 4 in the manifest"),
            "{err}"
        );
        // A flipped byte in the body.
        let mut flipped = bytes.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let err = inspect_segment(&e, 2, Bytes::from(flipped)).unwrap_err();
        assert!(err.contains("checksum mismatch"), "{err}");
        // Truncated.
        let err = inspect_segment(&e, 2, bytes.slice(..bytes.len() - 1)).unwrap_err();
        assert!(err.contains("bytes, the manifest lists"), "{err}");
    }

    #[test]
    fn chains_accept_recorded_gaps_and_name_unexpected_holes() {
        let ok = PartitionEntry {
            next_offset: 30,
            segments: vec![entry(0, 9, 0, 10), entry(10, 19, 10, 20), entry(25, 29, 25, 30)],
            gaps: vec![gap(20, 25)],
        };
        let f = judge_chain("t", 0, &ok);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!(f.gaps.len(), 1);

        let hole = PartitionEntry {
            gaps: vec![],
            ..ok.clone()
        };
        let f = judge_chain("t", 0, &hole);
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        assert!(f.problems[0].contains("offsets 20..25 are missing between segment s10 and segment s25"));

        let overlap = PartitionEntry {
            next_offset: 20,
            segments: vec![entry(0, 9, 0, 12), entry(10, 19, 10, 20)],
            gaps: vec![],
        };
        let f = judge_chain("t", 1, &overlap);
        assert!(
            f.problems.iter().any(|p| p.contains("overlaps")),
            "{:?}",
            f.problems
        );

        // Transaction markers after the last record: positions without records, not a problem.
        let trailing = PartitionEntry {
            next_offset: 12,
            segments: vec![entry(0, 9, 0, 10)],
            gaps: vec![],
        };
        let f = judge_chain("t", 0, &trailing);
        assert!(f.problems.is_empty());
        assert_eq!(f.trailing, Some((10, 12)));

        let beyond = PartitionEntry {
            next_offset: 5,
            ..trailing
        };
        assert!(judge_chain("t", 0, &beyond).problems[0].contains("after the partition's next offset 5"));
    }

    fn manifest_with(partitions: Vec<(i32, PartitionEntry)>) -> Manifest {
        let mut m = Manifest::new("b", utc_millis(0).unwrap());
        m.topics.insert(
            "orders".into(),
            backup::TopicEntry {
                partition_count: partitions.len() as i32,
                configs: BTreeMap::new(),
                partitions: partitions.into_iter().collect(),
            },
        );
        m
    }

    fn view(bounds: &[(i32, i64, i64)], drill: bool) -> TargetView {
        TargetView {
            description: "cluster k".into(),
            drill,
            topics: BTreeMap::from([("orders".to_owned(), bounds.len() as i32)]),
            bounds: bounds
                .iter()
                .map(|(p, s, e)| (("orders".to_owned(), *p), LogBounds { start: *s, end: *e }))
                .collect(),
            names: BTreeMap::new(),
        }
    }

    #[test]
    fn message_count_and_offset_range_judge_each_partition() {
        let m = manifest_with(vec![
            (
                0,
                PartitionEntry {
                    next_offset: 10,
                    segments: vec![entry(0, 9, 0, 10)],
                    gaps: vec![],
                },
            ),
            (
                1,
                PartitionEntry {
                    next_offset: 20,
                    segments: vec![entry(10, 19, 10, 20)],
                    gaps: vec![],
                },
            ),
        ]);
        let exact = view(&[(0, 0, 10), (1, 10, 20)], false);
        assert_eq!(
            judge_message_count(&m, &[], 0, &exact).outcome,
            CheckOutcome::Passed
        );
        assert_eq!(judge_offset_range(&m, &exact).outcome, CheckOutcome::Passed);
        let off_by_two = view(&[(0, 0, 10), (1, 10, 22)], false);
        let j = judge_message_count(&m, &[], 0, &off_by_two);
        assert_eq!(j.outcome, CheckOutcome::Failed);
        assert!(
            j.message
                .contains("orders-1: 10 records in the backup, 12 in the target"),
            "{}",
            j.message
        );
        assert_eq!(
            judge_message_count(&m, &[], 2, &off_by_two).outcome,
            CheckOutcome::Warning
        );
        assert_eq!(
            judge_message_count(&m, &["other*".into()], 0, &off_by_two).outcome,
            CheckOutcome::Skipped
        );
        let short = view(&[(0, 0, 10), (1, 10, 15)], false);
        let j = judge_offset_range(&m, &short);
        assert_eq!(j.outcome, CheckOutcome::Failed);
        assert!(
            j.message
                .contains("orders-1: the log ends at offset 15 but the backup reaches 20"),
            "{}",
            j.message
        );
        // A drill's scratch topics start at 0.
        let drill = view(&[(0, 0, 10), (1, 0, 10)], true);
        assert_eq!(judge_offset_range(&m, &drill).outcome, CheckOutcome::Passed);
        assert_eq!(
            judge_message_count(&m, &[], 0, &drill).outcome,
            CheckOutcome::Passed
        );
        let missing = TargetView {
            topics: BTreeMap::new(),
            ..exact
        };
        assert!(
            judge_message_count(&m, &[], 0, &missing)
                .message
                .contains("topic orders does not exist")
        );
    }

    #[test]
    fn group_snapshots_must_lie_within_the_data() {
        let m = manifest_with(vec![(
            0,
            PartitionEntry {
                next_offset: 30,
                segments: vec![entry(0, 9, 0, 10), entry(20, 29, 20, 30)],
                gaps: vec![gap(10, 20)],
            },
        )]);
        let snap = |offset: i64| GroupSnapshot {
            timestamp: None,
            groups: BTreeMap::from([(
                "g".to_owned(),
                BTreeMap::from([("orders".to_owned(), BTreeMap::from([(0, offset)]))]),
            )]),
        };
        assert_eq!(
            judge_group_snapshot(&m, Some(&snap(30)), &[]),
            (vec![], vec![], 1)
        );
        let (f, _, _) = judge_group_snapshot(&m, Some(&snap(31)), &[]);
        assert!(f[0].contains("beyond the backed-up positions 0..30"), "{f:?}");
        let (_, w, _) = judge_group_snapshot(&m, Some(&snap(15)), &[]);
        assert!(w[0].contains("recorded gap 10..20"), "{w:?}");
        let (f, _, _) = judge_group_snapshot(&m, Some(&snap(5)), &["other".into()]);
        assert!(f[0].contains("group other is not in the backup's consumer-group snapshot"));
    }

    #[test]
    fn webhooks_are_judged_by_status_code_and_answer() {
        let hook = CustomWebhookCheckSpec {
            name: "h".into(),
            url: "https://user:pw@check.example/hook?token=abc".into(),
            timeout_seconds: 5,
            expected_status_code: 204,
        };
        let j = judge_webhook(&hook, &WebhookCall::Answered(204, Bytes::new()));
        assert_eq!(j.outcome, CheckOutcome::Passed);
        assert!(
            !j.message.contains("pw") && !j.message.contains("token"),
            "{}",
            j.message
        );
        let j = judge_webhook(
            &hook,
            &WebhookCall::Answered(500, Bytes::from_static(b"{\"detail\":\"db down\"}")),
        );
        assert_eq!(j.outcome, CheckOutcome::Failed);
        assert!(
            j.message.contains("answered 500, expected 204: db down"),
            "{}",
            j.message
        );
        let j = judge_webhook(
            &hook,
            &WebhookCall::Answered(204, Bytes::from_static(b"{\"result\":\"warning\"}")),
        );
        assert_eq!(j.outcome, CheckOutcome::Warning);
        let j = judge_webhook(&hook, &WebhookCall::TimedOut(5));
        assert!(j.message.contains("did not answer within 5s"));
        assert_eq!(redact_url("https://u:p@h:8443/a/b?x=1#f"), "https://h:8443/a/b");
    }

    #[test]
    fn scrub_removes_secret_values_in_every_form() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----";
        let text = serde_json::to_string(&json!({"a": pem, "b": "x hunter22 y"})).unwrap();
        let out = scrub(&text, &[pem.to_owned(), "hunter22".to_owned()]);
        assert!(
            !out.contains("hunter22") && !out.contains("MC4CAQAwBQYDK2Vw"),
            "{out}"
        );
        assert!(out.contains(REDACTED));
    }

    #[test]
    fn overall_result_orders_outcomes() {
        let c = |o| CheckReport {
            name: "x".into(),
            outcome: o,
            message: String::new(),
            started_at: utc_millis(0).unwrap(),
            duration_ms: 0,
            details: Value::Null,
        };
        assert_eq!(overall(&[]), CheckOutcome::Skipped);
        assert_eq!(
            overall(&[c(CheckOutcome::Passed), c(CheckOutcome::Skipped)]),
            CheckOutcome::Passed
        );
        assert_eq!(
            overall(&[c(CheckOutcome::Passed), c(CheckOutcome::Warning)]),
            CheckOutcome::Warning
        );
        assert_eq!(
            overall(&[c(CheckOutcome::Failed), c(CheckOutcome::Warning)]),
            CheckOutcome::Failed
        );
    }

    #[test]
    fn old_reports_of_the_same_validation_expire() {
        let owner = json!({"namespace": "ns", "name": "v"});
        let now = utc_millis(1_700_000_000_000).unwrap();
        let report = |name: &str, days: i64| {
            serde_json::to_vec(
                &json!({"format": REPORT_FORMAT, "validation": {"namespace": "ns", "name": name},
                "generatedAt": (now - chrono::Duration::days(days)).to_rfc3339()}),
            )
            .unwrap()
        };
        assert!(is_expired_report(&report("v", 91), &owner, now, 90));
        assert!(!is_expired_report(&report("v", 89), &owner, now, 90));
        assert!(!is_expired_report(&report("other", 91), &owner, now, 90));
        assert!(!is_expired_report(b"not json", &owner, now, 90));
    }
}
