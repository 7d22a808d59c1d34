//! KafkaRestore: writes the records of a backup set back into a Kafka cluster.
//!
//! 1. **Plan** (nothing written): read the manifest, select topics (`topics`, names and globs),
//!    name the targets (`topicMapping`), route partitions (`partitionMapping`, or
//!    `repartitioning` with Kafka's murmur2 partitioner / round-robin), select the segments that
//!    overlap the PITR window and check that every one of them is stored with its size. Check the
//!    target cluster: missing topics are created (`createTopics`, with the source's partition count
//!    and recorded configuration) or refused; a target topic that holds records is refused unless
//!    `purgeTopics` (or it holds only what this restore wrote before it was interrupted). With
//!    `dryRun` the plan is reported (segments are read and verified, records counted, group offsets
//!    computed from the sequences the target partitions would get, as the real run computes them
//!    from the written log) and nothing is written.
//! 2. **Prepare**: snapshot the offsets of the groups on the target topics and of those the
//!    restore moves (`snapshotBeforeRestore`, also when it moves none), create and purge
//!    topics, then store the restore's state (`backups/<id>/restores/<name>/state.json`) with each
//!    target partition's base offset (its log end before the first restored record).
//! 3. **Produce**: per target partition the records form a fixed sequence (source order; a
//!    repartitioned topic's source partitions one after the other), written by an idempotent
//!    producer in order: each unit encodes its target partitions' record batches itself and the
//!    protocol client's producer only carries them ([`crate::kafka::protocol::produce`]). A
//!    produce error stops the restore; what reached a partition is a prefix of its sequence.
//!    A re-run of an interrupted restore finds in each target partition `log end - base`
//!    records of its sequence already written and continues after them: every record ends up
//!    exactly once. Keys, values, headers (order, duplicates, nulls), timestamps
//!    and partitions are kept; tracking headers are added only with
//!    `includeOriginalOffsetHeaders`. Every second a progress report carries the status so far
//!    (records, bytes, topics being restored, throughput, time left).
//! 4. **Verify and map**: each target partition must end at `base + records`; the offset mapping
//!    (runs of consecutive source offsets, [`OffsetMapping`]) is stored as `offset-mapping.json`.
//! 5. **Groups**: `offsetReset` and `autoConsumerGroups` commit translated offsets (clamped to the
//!    restored log) for groups without active members.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    Context, blocking, default_snapshot_id,
    execution::{self, Retryable},
    shard::{self, How, ShardIndex, ShardRunner},
    time,
};
use crate::{
    api::v1beta1::{
        KafkaRestore, KafkaRestoreSpec, KafkaRestoreStatus, Phase, PlannedGroupOffsets, PlannedOffset,
        PlannedTopic, PlannedTopicCreation, RepartitionStrategy, RestoreOffsetResetStatus,
        RestoreOffsetResetStrategy, RestorePlan, RestoreSnapshotStatus, RestoreThroughput, RestoredTopic,
    },
    kafka::{
        self, ClusterAccess, KafkaError,
        groups::{Cluster, Committed, LogBounds, Partition},
        headers,
        protocol::{
            self, GroupAdmin,
            produce::{Batch, BatchBuilder, BatchSender, Producer, ProducerIdentity},
        },
        topics::{self, MissingTopic, TopicToCreate},
    },
    storage::{
        Location, ObjectLocation, StorageError,
        backup::{
            self, BackupFormatError, GroupSnapshot, Manifest, SegmentEntry, ShardPlan,
            segment::{HeaderRef, RecordRef, Segment},
        },
        backup_set::{self, SetFormat},
        offset_mapping::{OffsetMapping, OffsetRange, TopicMapping},
        snapshot::{OffsetSnapshot, SnapshotSource, snapshot_key},
    },
};

/// Time between two progress reports of a restore.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Talking to Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The backup set cannot be read.
    #[error(transparent)]
    Format(#[from] BackupFormatError),
    /// A selected topic is not in the backup set.
    #[error(transparent)]
    Topic(#[from] MissingTopic),
    /// The spec or the target refuses the restore; nothing was written.
    #[error("{field}: {message}")]
    Refused {
        /// Field path.
        field: String,
        /// Why.
        message: String,
    },
    /// A segment is missing or corrupt.
    #[error("segment {uri}: {message}")]
    Segment {
        /// Its URI.
        uri: String,
        /// Why.
        message: String,
    },
    /// Producing failed.
    #[error("producing to the target cluster failed: {0}")]
    Produce(String),
    /// The target does not hold what the restore wrote.
    #[error("{0}")]
    Verify(String),
    /// The pre-restore snapshot could not be stored; nothing was written.
    #[error(
        "snapshotBeforeRestore: snapshot {snapshot_id} could not be stored, so nothing was restored: {source}"
    )]
    Snapshot {
        /// Its id.
        snapshot_id: String,
        /// Why.
        #[source]
        source: Box<StorageError>,
    },
    /// A worker failed.
    #[error("{0}")]
    Worker(String),
    /// A shard of a restore split over worker processes did not finish (its worker already
    /// retried it).
    #[error("{shard}: {message}")]
    Shard {
        /// The shard.
        shard: ShardIndex,
        /// What happened to it.
        message: String,
    },
}

impl Retryable for RestoreError {
    fn is_retryable(&self) -> bool {
        match self {
            RestoreError::Kafka(e) => e.is_retryable(),
            RestoreError::Storage(e) => e.is_retryable(),
            RestoreError::Format(e) => e.is_retryable(),
            RestoreError::Snapshot { source, .. } => source.is_retryable(),
            // The producer retries passing errors itself; what stops it may still pass, and a
            // restore run again continues after what was written.
            RestoreError::Produce(_) | RestoreError::Worker(_) => true,
            RestoreError::Topic(_)
            | RestoreError::Refused { .. }
            | RestoreError::Segment { .. }
            | RestoreError::Shard { .. }
            | RestoreError::Verify(_) => false,
        }
    }
}

fn refused(field: impl Into<String>, message: impl Into<String>) -> RestoreError {
    RestoreError::Refused {
        field: field.into(),
        message: message.into(),
    }
}

/// Progress of a restore, stored in `state.json` next to its backup set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreState {
    /// Running or Completed.
    pub state: String,
    /// When the restore first started.
    pub started_at: DateTime<Utc>,
    /// The target cluster (bootstrap servers).
    pub target: String,
    /// Log end of each target partition before the first restored record.
    pub bases: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Topics the restore created.
    #[serde(default)]
    pub created_topics: Vec<String>,
    /// Topics the restore purged.
    #[serde(default)]
    pub purged_topics: Vec<String>,
    /// The pre-restore snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<RestoreSnapshotStatus>,
    /// The final status, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_status: Option<KafkaRestoreStatus>,
    /// A restore split over worker processes: the target partitions of each shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardPlan>,
}

/// What one shard of a restore split over worker processes wrote: the tally of each of its
/// target partitions, stored at [`restore_shard_key`] for the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreShardResult {
    /// The [`ShardPlan::id`] it belongs to.
    pub plan: String,
    /// Its index.
    pub index: usize,
    /// How many shards the plan has.
    pub count: usize,
    /// Segments it read.
    pub segments: u64,
    /// Its target partitions' tallies.
    pub tallies: Vec<ShardTally>,
}

/// The tally of one target partition of a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardTally {
    /// Target topic.
    pub topic: String,
    /// Target partition.
    pub partition: i32,
    /// What was routed there.
    #[serde(flatten)]
    pub tally: PartitionTally,
}

/// The key of a restore shard's result: next to the restore's state.
pub fn restore_shard_key(backup_id: &str, restore: &str, plan: &str, index: usize) -> String {
    format!(
        "{}/shards/{plan}/{index}.json",
        backup::restore_dir(backup_id, restore)
    )
}

/// The target partition a unit writes, as shards are assigned: a repartitioned topic's whole
/// goes to the shard of its partition 0.
fn unit_target(plan: &TopicPlan, unit: &Unit) -> Partition {
    match &plan.routing {
        Routing::Direct(map) => {
            let source = unit.source_partitions.first().copied().unwrap_or(0);
            (plan.target.clone(), map.get(&source).copied().unwrap_or(source))
        }
        Routing::Repartition { .. } => (plan.target.clone(), 0),
    }
}

/// The shards a coordinator recorded in the restore's state (at `uri`), checked against the
/// shard count asked for.
fn shard_plan<'a>(
    plan: Option<&'a ShardPlan>,
    uri: &str,
    shard: ShardIndex,
) -> Result<&'a ShardPlan, RestoreError> {
    let plan = plan.ok_or_else(|| {
        refused(
            "--shard-index",
            format!(
                "{uri} records no restore split into shards: the coordinator (`run -f --workers N`) prepares the restore before its workers start"
            ),
        )
    })?;
    if plan.shards.len() != shard.count {
        return Err(refused(
            "--shards",
            format!(
                "the restore recorded in {uri} is split into {} shards, not {}",
                plan.shards.len(),
                shard.count
            ),
        ));
    }
    Ok(plan)
}

/// How records of a topic reach target partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Source partition -> target partition.
    Direct(BTreeMap<i32, i32>),
    /// Redistributed over `partitions`.
    Repartition {
        /// Target partition count.
        partitions: i32,
        /// Strategy.
        strategy: RepartitionStrategy,
    },
}

/// The restore of one topic.
#[derive(Clone, Debug)]
pub struct TopicPlan {
    /// Name in the backup.
    pub source: String,
    /// Name in the target.
    pub target: String,
    /// Segments per source partition, in offset order (those overlapping the PITR window).
    pub segments: BTreeMap<i32, Vec<SegmentEntry>>,
    /// Routing.
    pub routing: Routing,
    /// Partitions the target needs.
    pub target_partitions: i32,
    /// Configuration recorded with the source topic.
    pub configs: BTreeMap<String, String>,
}

/// The PITR window in epoch milliseconds, both ends inclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub start: Option<i64>,
    /// End.
    pub end: Option<i64>,
}

impl Window {
    /// Whether a timestamp is inside.
    pub fn contains(&self, ts: i64) -> bool {
        self.start.is_none_or(|s| ts >= s) && self.end.is_none_or(|e| ts <= e)
    }

    /// Whether a segment's time range overlaps.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.start.is_none_or(|s| max >= s) && self.end.is_none_or(|e| min <= e)
    }
}

/// Parses the PITR window.
pub fn window(spec: &KafkaRestoreSpec) -> Result<Window, RestoreError> {
    let parse = |field: &str, text: &Option<String>| -> Result<Option<i64>, RestoreError> {
        text.as_deref()
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|d| d.timestamp_millis())
                    .map_err(|e| refused(field, format!("{t:?} is not an RFC 3339 time: {e}")))
            })
            .transpose()
    };
    match &spec.pitr {
        None => Ok(Window::default()),
        Some(p) => Ok(Window {
            start: parse("spec.pitr.startTime", &p.start_time)?,
            end: parse("spec.pitr.endTime", &p.end_time)?,
        }),
    }
}

/// Plans the topics of a restore from the manifest and the spec. Pure.
pub fn plan_topics(
    spec: &KafkaRestoreSpec,
    manifest: &Manifest,
    window: Window,
) -> Result<Vec<TopicPlan>, RestoreError> {
    let names: Vec<String> = manifest.topics.keys().cloned().collect();
    let selected: BTreeSet<String> = match spec.topics.as_deref() {
        None | Some([]) => names.iter().cloned().collect(),
        Some(patterns) => topics::select_topics(
            patterns,
            &[],
            &names,
            "spec.topics",
            &format!(" in backup set {}", manifest.backup_id),
        )?,
    };
    for (i, source) in spec.topic_mapping.iter().flat_map(|m| m.keys()).enumerate() {
        if !manifest.topics.contains_key(source) {
            return Err(refused(
                format!("spec.topicMapping[{source}]"),
                format!(
                    "topic {source} is not in backup set {} (entry {i})",
                    manifest.backup_id
                ),
            ));
        }
    }
    let mut partition_map: BTreeMap<i32, i32> = BTreeMap::new();
    for (k, v) in spec.partition_mapping.iter().flatten() {
        let from: i32 = k.parse().map_err(|_| {
            refused(
                format!("spec.partitionMapping[{k}]"),
                "keys are partition numbers",
            )
        })?;
        partition_map.insert(from, *v);
    }
    let mut plans = Vec::new();
    for source in selected {
        let Some(entry) = manifest.topics.get(&source) else {
            continue;
        };
        let target = spec
            .topic_mapping
            .as_ref()
            .and_then(|m| m.get(&source))
            .cloned()
            .unwrap_or_else(|| source.clone());
        let source_partitions: BTreeSet<i32> = entry
            .partitions
            .keys()
            .copied()
            .chain(0..entry.partition_count)
            .collect();
        let (routing, target_partitions) = match spec.repartitioning.as_ref().and_then(|r| r.get(&target)) {
            Some(r) => (
                Routing::Repartition {
                    partitions: r.target_partitions.max(1),
                    strategy: r.strategy,
                },
                r.target_partitions.max(1),
            ),
            None => {
                let map: BTreeMap<i32, i32> = source_partitions
                    .iter()
                    .map(|p| (*p, partition_map.get(p).copied().unwrap_or(*p)))
                    .collect();
                let mut seen: BTreeMap<i32, i32> = BTreeMap::new();
                for (src, dst) in &map {
                    if *dst < 0 {
                        return Err(refused(
                            format!("spec.partitionMapping[{src}]"),
                            format!("partition {dst} does not exist"),
                        ));
                    }
                    if let Some(other) = seen.insert(*dst, *src) {
                        return Err(refused(
                            "spec.partitionMapping",
                            format!(
                                "source partitions {other} and {src} of topic {source} would both be restored into partition {dst}: map them to different partitions or repartition the topic"
                            ),
                        ));
                    }
                }
                let needed = map.values().copied().max().map_or(0, |m| m + 1);
                (Routing::Direct(map), needed.max(entry.partition_count))
            }
        };
        let segments = entry
            .partitions
            .iter()
            .map(|(p, pe)| {
                let segs: Vec<SegmentEntry> = pe
                    .segments
                    .iter()
                    .filter(|s| window.overlaps(s.min_timestamp, s.max_timestamp))
                    .cloned()
                    .collect();
                (*p, segs)
            })
            .collect();
        plans.push(TopicPlan {
            source,
            target,
            segments,
            routing,
            target_partitions,
            configs: entry.configs.clone(),
        });
    }
    Ok(plans)
}

/// What a dry run found it would do besides writing records.
pub struct DryRunActions<'a> {
    /// Topics to create.
    pub to_create: &'a [TopicToCreate],
    /// Partitions to purge, with the offset records are deleted before.
    pub to_purge: &'a BTreeMap<Partition, i64>,
    /// Offsets per group, or why the group cannot be moved.
    pub groups: &'a BTreeMap<String, Result<BTreeMap<Partition, i64>, String>>,
    /// What is left out.
    pub notes: &'a [String],
}

/// The plan of a dry run from the topic plans and the records counted per target partition.
/// Pure.
pub fn dry_run_plan(
    plans: &[TopicPlan],
    tallies: &BTreeMap<Partition, PartitionTally>,
    actions: &DryRunActions<'_>,
) -> RestorePlan {
    let count = |n: u64| Some(n as i64);
    let topics: Vec<PlannedTopic> = plans
        .iter()
        .map(|p| {
            let segments = p.segments.values().flatten();
            let tally = tallies
                .iter()
                .filter(|((t, _), _)| *t == p.target)
                .map(|(_, x)| x);
            PlannedTopic {
                name: p.source.clone(),
                target_name: p.target.clone(),
                target_partitions: Some(p.target_partitions),
                segments: Some(segments.count() as i64),
                records: count(tally.clone().map(|x| x.records).sum()),
                bytes: count(tally.map(|x| x.bytes).sum()),
            }
        })
        .collect();
    let segments = plans.iter().flat_map(|p| p.segments.values().flatten());
    let first = tallies.values().filter_map(|t| t.min_ts).min();
    let last = tallies.values().filter_map(|t| t.max_ts).max();
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).map(time);
    let purge: BTreeSet<&str> = actions.to_purge.keys().map(|(t, _)| t.as_str()).collect();
    RestorePlan {
        segments: Some(segments.clone().count() as i64),
        stored_bytes: count(segments.map(|s| s.stored_bytes).sum()),
        records: count(tallies.values().map(|t| t.records).sum()),
        bytes: count(tallies.values().map(|t| t.bytes).sum()),
        first_record_time: first.and_then(at),
        last_record_time: last.and_then(at),
        topics: Some(topics),
        topics_to_create: Some(
            actions
                .to_create
                .iter()
                .map(|t| PlannedTopicCreation {
                    name: t.name.clone(),
                    partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    configs: (!t.configs.is_empty()).then(|| t.configs.clone()),
                })
                .collect(),
        ),
        topics_to_purge: Some(purge.into_iter().map(str::to_owned).collect()),
        group_offsets: Some(
            actions
                .groups
                .iter()
                .map(|(group, offsets)| PlannedGroupOffsets {
                    group: group.clone(),
                    offsets: offsets.as_ref().ok().map(|o| {
                        o.iter()
                            .map(|((topic, partition), offset)| PlannedOffset {
                                topic: topic.clone(),
                                partition: *partition,
                                offset: *offset,
                            })
                            .collect()
                    }),
                    error: offsets.as_ref().err().cloned(),
                })
                .collect(),
        ),
        notes: (!actions.notes.is_empty()).then(|| actions.notes.to_vec()),
    }
}

/// The one-line summary of a dry-run plan; `range` is the record time range as text.
fn dry_run_message(plan: &RestorePlan, backup_id: &str, range: &str) -> String {
    let n = |v: Option<i64>| v.unwrap_or(0);
    let topics: Vec<String> = plan
        .topics
        .iter()
        .flatten()
        .map(|t| {
            if t.name == t.target_name {
                t.name.clone()
            } else {
                format!("{} -> {}", t.name, t.target_name)
            }
        })
        .collect();
    let create: Vec<String> = plan
        .topics_to_create
        .iter()
        .flatten()
        .map(|t| format!("{} ({} partitions)", t.name, t.partitions))
        .collect();
    let groups: Vec<String> = plan
        .group_offsets
        .iter()
        .flatten()
        .map(|g| match &g.error {
            Some(e) => format!("{}: fails: {e}", g.group),
            None => format!(
                "{}: {}",
                g.group,
                g.offsets
                    .iter()
                    .flatten()
                    .map(|o| format!("{}-{}@{}", o.topic, o.partition, o.offset))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        })
        .collect();
    let notes: String = plan.notes.iter().flatten().map(|n| format!("; {n}")).collect();
    format!(
        "dry run, nothing written: would restore {} records ({} bytes) from {} segments of backup set {backup_id}{range}; topics {}; create [{}]; purge [{}]; group offsets [{}]{notes}",
        n(plan.records),
        n(plan.bytes),
        n(plan.segments),
        topics.join(", "),
        create.join(", "),
        plan.topics_to_purge.as_deref().unwrap_or_default().join(", "),
        groups.join("; "),
    )
}

/// Accumulates the sequence written to one target partition and its offset runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionTally {
    /// Records routed to the partition (written now or before an interruption).
    pub records: u64,
    /// Records produced by this attempt.
    pub produced: u64,
    /// Bytes of record data routed.
    pub bytes: u64,
    /// Runs of consecutive source offsets.
    pub ranges: Vec<OffsetRange>,
    /// Smallest timestamp.
    pub min_ts: Option<i64>,
    /// Largest timestamp.
    pub max_ts: Option<i64>,
    /// Position in the sequence of the first record at or after `offsetReset.timestamp`
    /// (strategy Timestamp): where the broker's time lookup lands once it is written.
    pub first_at_reset_time: Option<u64>,
}

impl PartitionTally {
    fn add(
        &mut self,
        source_partition: i32,
        source_offset: i64,
        target_partition: i32,
        base: i64,
        record: &RecordRef<'_>,
        reset_time: Option<i64>,
    ) {
        if let Some(at) = reset_time
            && self.first_at_reset_time.is_none()
            && written_timestamp(record.timestamp) >= at
        {
            self.first_at_reset_time = Some(self.records);
        }
        let target_offset = base + self.records as i64;
        match self.ranges.last_mut() {
            Some(r)
                if r.source_partition == source_partition
                    && r.source_start + r.count == source_offset
                    && r.target_start + r.count == target_offset =>
            {
                r.count += 1;
            }
            _ => self.ranges.push(OffsetRange {
                source_partition,
                source_start: source_offset,
                target_partition,
                target_start: target_offset,
                count: 1,
            }),
        }
        self.records += 1;
        self.bytes += record.data_len();
        self.min_ts = Some(self.min_ts.map_or(record.timestamp, |m| m.min(record.timestamp)));
        self.max_ts = Some(self.max_ts.map_or(record.timestamp, |m| m.max(record.timestamp)));
    }
}

/// The timestamp a record is written with: its own, or (it has none) the time it is written, as
/// a producer would give it.
fn written_timestamp(timestamp: i64) -> i64 {
    if timestamp >= 0 {
        timestamp
    } else {
        Utc::now().timestamp_millis()
    }
}

/// One unit of work: source partitions of one topic restored in order.
struct Unit {
    topic: usize,
    source_partitions: Vec<i32>,
}

/// Rate limit state: start, records, bytes, records/s, bytes/s.
type Limiter = (Instant, f64, f64, Option<f64>, Option<f64>);

/// Everything a unit needs.
struct UnitEnv {
    plans: Arc<Vec<TopicPlan>>,
    window: Window,
    bases: BTreeMap<String, BTreeMap<i32, i64>>,
    written: BTreeMap<String, BTreeMap<i32, u64>>,
    /// The producer's identity; `None` in a dry run.
    producer: Option<ProducerIdentity>,
    /// Records per batch and partition (`produce.batchSize`).
    batch_records: i32,
    /// The largest batch each target topic takes (`max.message.bytes`), where known.
    batch_limits: BTreeMap<String, usize>,
    include_headers: bool,
    source_cluster: Option<String>,
    /// `offsetReset.timestamp` of strategy Timestamp, in epoch milliseconds.
    reset_time: Option<i64>,
    /// Records and bytes routed to the targets, written now or by an interrupted attempt.
    records: AtomicU64,
    bytes: AtomicU64,
    segments: AtomicU64,
    /// Records routed per topic plan.
    topic_records: Vec<AtomicU64>,
    /// Units running per topic plan.
    topic_units: Vec<AtomicU64>,
    limiter: Option<Mutex<Limiter>>,
    /// Read buffers of produced segments, for the next reads.
    buffers: Mutex<Vec<Vec<u8>>>,
    /// How many idle buffers are kept: one per concurrent unit.
    buffers_kept: usize,
    cancel: tokio_util::sync::CancellationToken,
    /// The format the segments are read in.
    format: SetFormat,
}

impl UnitEnv {
    fn buffer(&self) -> Vec<u8> {
        self.buffers
            .lock()
            .ok()
            .and_then(|mut b| b.pop())
            .unwrap_or_default()
    }

    fn recycle(&self, segment: Segment) {
        if let Some(buffer) = segment.into_buffer() {
            self.keep(buffer);
        }
    }

    fn keep(&self, buffer: Vec<u8>) {
        if buffer.capacity() > 0
            && let Ok(mut buffers) = self.buffers.lock()
            && buffers.len() < self.buffers_kept
        {
            buffers.push(buffer);
        }
    }
}

/// What a run of the restore does.
#[derive(Clone, Copy)]
enum Role<'a> {
    /// Everything, in this process.
    Whole,
    /// The coordinator of a restore split over this many shards: plans and prepares it (snapshot,
    /// topics, the state with every target partition's base and the shards' target partitions),
    /// produces nothing.
    Plan(usize),
    /// One shard: produces the records of its target partitions and stores their tallies.
    Shard(ShardIndex),
    /// The coordinator once every worker ended (how each ended): verifies every target
    /// partition from the shards' tallies, stores the offset mapping and moves the groups.
    Merge(&'a [Result<(), String>]),
}

/// Runs a KafkaRestore and returns its final status.
pub async fn execute(restore: &KafkaRestore, ctx: &Context) -> KafkaRestoreStatus {
    execute_as(restore, ctx, How::Whole).await
}

/// Runs shard `shard` of a restore a coordinator split ([`execute_split`]): produces the
/// records of the shard's target partitions and stores their tallies for the coordinator.
pub async fn execute_shard(restore: &KafkaRestore, ctx: &Context, shard: ShardIndex) -> KafkaRestoreStatus {
    execute_as(restore, ctx, How::Shard(shard)).await
}

/// Runs a KafkaRestore split over `workers` shards by target partition: prepares it, runs every
/// shard with `runner` at the same time, then verifies every target partition, stores the offset
/// mapping and moves the groups. Each target partition is written by one worker, in order, and a
/// restore run again continues after what each partition holds, as in one process.
pub async fn execute_split(
    restore: &KafkaRestore,
    ctx: &Context,
    workers: usize,
    runner: &ShardRunner,
) -> KafkaRestoreStatus {
    execute_as(
        restore,
        ctx,
        How::Split {
            workers: workers.max(1),
            runner,
        },
    )
    .await
}

async fn execute_as(restore: &KafkaRestore, ctx: &Context, how: How<'_>) -> KafkaRestoreStatus {
    let started = Utc::now();
    let status = KafkaRestoreStatus {
        phase: Some(Phase::Running),
        start_time: Some(time(started)),
        observed_generation: restore.metadata.generation,
        backup_id: restore.spec.backup_ref.backup_id.clone(),
        ..Default::default()
    };
    // Every attempt writes into the one status; the lock hands it from one attempt to the next.
    let shared = tokio::sync::Mutex::new(status);
    let result = execution::attempts(restore.spec.execution.as_ref(), ctx, |attempt| {
        let shared = &shared;
        async move {
            let status = &mut *shared.lock().await;
            match how {
                How::Whole => run(restore, &attempt, started, status, Role::Whole).await,
                How::Shard(shard) => run(restore, &attempt, started, status, Role::Shard(shard)).await,
                How::Split { workers, runner } => {
                    run(restore, &attempt, started, status, Role::Plan(workers)).await?;
                    if status.phase == Some(Phase::Completed) {
                        // Completed before: nothing to split.
                        return Ok(());
                    }
                    let exits = futures::future::join_all((0..workers).map(|index| {
                        runner(
                            ShardIndex {
                                index,
                                count: workers,
                            },
                            attempt.clone(),
                        )
                    }))
                    .await;
                    run(restore, &attempt, started, status, Role::Merge(&exits)).await
                }
            }
        }
    })
    .await;
    let mut status = shared.into_inner();
    if let Err(failure) = result {
        status.phase = Some(Phase::Failed);
        status.message = Some(failure.to_string());
    }
    if status.completion_time.is_none() {
        status.completion_time = Some(time(Utc::now()));
    }
    status
}

async fn run(
    restore: &KafkaRestore,
    ctx: &Context,
    started: DateTime<Utc>,
    status: &mut KafkaRestoreStatus,
    role: Role<'_>,
) -> Result<(), RestoreError> {
    let spec = &restore.spec;
    let clock = Instant::now();
    if spec.dry_run && !matches!(role, Role::Whole) {
        return Err(refused(
            "spec.dryRun",
            "a dry run writes nothing and runs in one process: run it without workers",
        ));
    }
    let (storage, backup_id) =
        super::stored_backup_ref(&spec.backup_ref).map_err(|(field, message)| refused(field, message))?;
    status.backup_id = Some(backup_id.clone());
    let location = match super::open_storage(storage, spec.execution.as_ref(), ctx)? {
        Location::Object(o) => o,
        Location::ConfigMap(_) => {
            return Err(refused(
                "spec.backupRef.storage.type",
                "backups live in PVC, S3, Azure or GCS storage",
            ));
        }
    };
    // Either format: this operator's sets or the prior art's (read only).
    let set = backup_set::open(&location, &backup_id).await?.ok_or_else(|| {
        refused(
            "spec.backupRef.backupId",
            format!(
                "backup set {backup_id} not found: {} (no backup run reached its first checkpoint)",
                backup_set::manifest_uris(&location, &backup_id)
            ),
        )
    })?;
    let mut manifest = set.manifest.clone();
    manifest.source_cluster_id = set.source_cluster_id(&location).await?;
    let name = if ctx.resource.name.is_empty() {
        "restore".to_owned()
    } else {
        ctx.resource.name.clone()
    };
    let state_key = format!("{}/state.json", backup::restore_dir(&backup_id, &name));
    let mapping_key = format!("{}/offset-mapping.json", backup::restore_dir(&backup_id, &name));
    let previous: Option<RestoreState> = match location.get(&state_key).await? {
        None => None,
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            refused(
                "status",
                format!("{} is not a restore state: {e}", location.uri(&state_key)),
            )
        })?),
    };
    if !spec.dry_run
        && let Some(done) = previous.as_ref().and_then(|p| p.final_status.clone())
    {
        *status = done;
        status.message = Some(format!(
            "already completed; nothing restored again ({} holds the result; delete it or use another name to restore again): {}",
            location.uri(&state_key),
            status.message.clone().unwrap_or_default()
        ));
        return Ok(());
    }

    let window = window(spec)?;
    let reset_time = match &spec.offset_reset {
        Some(r) if r.strategy == RestoreOffsetResetStrategy::Timestamp => r
            .timestamp
            .as_deref()
            .map(|ts| {
                DateTime::parse_from_rfc3339(ts)
                    .map(|t| t.timestamp_millis())
                    .map_err(|e| {
                        refused(
                            "spec.offsetReset.timestamp",
                            format!("{ts:?} is not an RFC 3339 time: {e}"),
                        )
                    })
            })
            .transpose()?,
        _ => None,
    };
    let plans = plan_topics(spec, &manifest, window)?;
    if plans.is_empty() {
        return Err(refused(
            "spec.topics",
            format!("selects no topic of backup set {backup_id}"),
        ));
    }
    // Every selected segment must be there with its size, before anything is written (and,
    // for a set of the prior art, intact).
    check_segments(&location, &plans).await?;
    let selected = plans.iter().flat_map(|p| p.segments.values().flatten().cloned());
    set.verify_before_writing(&location, selected.collect())
        .await
        .map_err(|(uri, message)| RestoreError::Segment {
            uri,
            message: format!("{message}; nothing was restored"),
        })?;

    // The target.
    let access = ClusterAccess::read(&spec.kafka_cluster, &ctx.secrets)?;
    let config = access.rdkafka_config();
    // The group-offset client, connected when a group is first read or committed.
    let admin: tokio::sync::OnceCell<GroupAdmin> = tokio::sync::OnceCell::new();
    let cluster = {
        let config = config.clone();
        Arc::new(blocking(move || Cluster::new(&config)).await?)
    };
    let existing = {
        let cluster = cluster.clone();
        blocking(move || cluster.topics()).await?
    };
    let resumed: BTreeSet<String> = previous
        .as_ref()
        .map(|p| p.bases.keys().cloned().collect())
        .unwrap_or_default();
    let existing_partitions: BTreeSet<Partition> = plans
        .iter()
        .filter_map(|p| existing.get(&p.target).map(|n| (p.target.clone(), *n)))
        .flat_map(|(t, n)| (0..n).map(move |p| (t.clone(), p)))
        .collect();
    let bounds = {
        let cluster = cluster.clone();
        let partitions = existing_partitions.clone();
        blocking(move || cluster.log_bounds(&partitions)).await?
    };
    let mut to_create = Vec::new();
    let mut to_purge: BTreeMap<Partition, i64> = BTreeMap::new();
    let mut non_empty = Vec::new();
    for plan in &plans {
        match existing.get(&plan.target) {
            None => {
                if !spec.create_topics.as_ref().is_some_and(|c| c.enabled) {
                    return Err(refused(
                        "spec.createTopics",
                        format!(
                            "target topic {} does not exist in the target cluster; set createTopics.enabled to create it",
                            plan.target
                        ),
                    ));
                }
                to_create.push(TopicToCreate {
                    name: plan.target.clone(),
                    partitions: plan.target_partitions.max(1),
                    replication_factor: spec.create_topics.as_ref().and_then(|c| c.replication_factor),
                    configs: plan.configs.clone(),
                });
            }
            Some(count) => {
                match &plan.routing {
                    Routing::Repartition { partitions, .. } if partitions != count => {
                        return Err(refused(
                            format!("spec.repartitioning[{}].targetPartitions", plan.target),
                            format!(
                                "is {partitions}, but topic {} has {count} partitions",
                                plan.target
                            ),
                        ));
                    }
                    Routing::Direct(map) => {
                        if let Some((src, dst)) = map.iter().find(|(_, dst)| **dst >= *count) {
                            return Err(refused(
                                format!("spec.topicMapping[{}]", plan.source),
                                format!(
                                    "target topic {} has {count} partitions, but source partition {src} is restored into partition {dst}: create the topic with at least {} partitions, map partitions (partitionMapping) or repartition it",
                                    plan.target, plan.target_partitions
                                ),
                            ));
                        }
                    }
                    Routing::Repartition { .. } => {}
                }
                if resumed.contains(&plan.target) {
                    continue;
                }
                let held: i64 = (0..*count)
                    .filter_map(|p| bounds.get(&(plan.target.clone(), p)))
                    .map(|b| b.end - b.start)
                    .sum();
                if held > 0 {
                    if spec.purge_topics {
                        for p in 0..*count {
                            if let Some(b) = bounds.get(&(plan.target.clone(), p)) {
                                to_purge.insert((plan.target.clone(), p), b.end);
                            }
                        }
                    } else {
                        non_empty.push(format!("{} ({held} records)", plan.target));
                    }
                }
            }
        }
    }
    if !non_empty.is_empty() {
        return Err(refused(
            "spec.purgeTopics",
            format!(
                "target topics already hold records: {}; the restore does not append to existing data: set purgeTopics to delete their records first, or restore into other topics (topicMapping). Nothing was written",
                non_empty.join(", ")
            ),
        ));
    }

    // Groups to move afterwards.
    let group_snapshot = set.read_group_snapshot(&location).await?;
    let reset_groups: Vec<String> = spec
        .offset_reset
        .as_ref()
        .map(|r| r.consumer_groups.clone())
        .unwrap_or_default();
    let auto_groups: Vec<String> = if spec.auto_consumer_groups {
        let snapshot = group_snapshot.as_ref().ok_or_else(|| {
            refused(
                "spec.autoConsumerGroups",
                format!("backup set {backup_id} has no consumer-group snapshot (KafkaBackup consumerGroupSnapshot: true)"),
            )
        })?;
        snapshot
            .groups
            .keys()
            .filter(|g| !reset_groups.contains(g))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    if let Some(r) = &spec.offset_reset
        && r.strategy == RestoreOffsetResetStrategy::HeaderBased
    {
        if group_snapshot.is_none() {
            return Err(refused(
                "spec.offsetReset.strategy",
                format!(
                    "HeaderBased needs the committed offsets of the source, and backup set {backup_id} has no consumer-group snapshot (KafkaBackup consumerGroupSnapshot: true)"
                ),
            ));
        }
        if let Some(wanted) = &r.source_cluster
            && manifest.source_cluster_id.as_ref() != Some(wanted)
        {
            return Err(refused(
                "spec.offsetReset.sourceCluster",
                format!(
                    "is {wanted:?}, but backup set {backup_id} was taken from {}: its offsets are not applied",
                    manifest
                        .source_cluster_id
                        .as_deref()
                        .map_or("an unnamed cluster (no sourceClusterId)".to_owned(), |c| format!(
                            "{c:?}"
                        ))
                ),
            ));
        }
    }

    // Bases: where each target partition's restored records begin.
    let mut bases: BTreeMap<String, BTreeMap<i32, i64>> =
        previous.as_ref().map(|p| p.bases.clone()).unwrap_or_default();
    for plan in &plans {
        if bases.contains_key(&plan.target) {
            continue;
        }
        let count = existing
            .get(&plan.target)
            .copied()
            .unwrap_or(plan.target_partitions);
        let m = bases.entry(plan.target.clone()).or_default();
        for p in 0..count {
            m.insert(p, bounds.get(&(plan.target.clone(), p)).map_or(0, |b| b.end));
        }
    }

    let plans = Arc::new(plans);
    let total_records: u64 = plans
        .iter()
        .flat_map(|p| p.segments.values().flatten())
        .map(|s| s.records)
        .sum();

    // Snapshot, create, purge, state: nothing of this in a dry run.
    let mut written: BTreeMap<String, BTreeMap<i32, u64>> = BTreeMap::new();
    let mut state = previous.clone().unwrap_or_else(|| RestoreState {
        state: "Running".into(),
        started_at: started,
        target: spec.kafka_cluster.bootstrap_servers.join(","),
        bases: BTreeMap::new(),
        created_topics: Vec::new(),
        purged_topics: Vec::new(),
        snapshot: None,
        final_status: None,
        shards: None,
    });
    // The pre-restore snapshot: every group with committed offsets on the target topics, and
    // the groups the restore moves (recorded even with none, so a rollback knows them).
    let snapshot_groups: Vec<String> = reset_groups.iter().chain(auto_groups.iter()).cloned().collect();
    let snapshot_offsets = match &spec.snapshot_before_restore {
        Some(sb) if sb.enabled && state.snapshot.is_none() => {
            let admin = admin.get_or_try_init(|| kafka::group_admin(&access)).await?;
            let offsets =
                super::groups_committed_on(&access, admin, &existing_partitions, &snapshot_groups).await?;
            let snapshot_id = sb
                .snapshot_id
                .clone()
                .unwrap_or_else(|| default_snapshot_id(&name, started));
            Some((sb, snapshot_id, offsets))
        }
        _ => None,
    };
    let snapshot_note = snapshot_offsets
        .as_ref()
        .map(|(_, id, offsets)| snapshot_note(id, offsets, spec.dry_run));
    if !spec.dry_run {
        if let Some((sb, snapshot_id, offsets)) = &snapshot_offsets {
            let taken = Utc::now();
            let mut snapshot = OffsetSnapshot {
                snapshot_id: snapshot_id.clone(),
                timestamp: taken,
                cluster: spec.kafka_cluster.bootstrap_servers.join(","),
                groups: BTreeMap::new(),
                source: Some(SnapshotSource {
                    kind: "KafkaRestore".into(),
                    namespace: ctx.resource.namespace.clone(),
                    name: name.clone(),
                    uid: ctx.resource.uid.clone(),
                }),
                // Stored with the snapshot so that the catalog of `serve` deletes it then.
                expires_at: sb
                    .retention_hours
                    .map(|h| taken + chrono::Duration::hours(i64::from(h))),
            };
            let at = snapshot.timestamp.timestamp_millis();
            for (g, committed) in offsets {
                snapshot.insert_group(g, committed, at);
            }
            let key = snapshot_key(snapshot_id);
            let uri = async {
                let l = ctx.snapshot_location(sb.storage.as_ref(), spec.execution.as_ref(), &name)?;
                l.put_new(&key, snapshot.to_bytes()).await?;
                Ok::<_, StorageError>(l.uri(&key))
            }
            .await
            .map_err(|source| RestoreError::Snapshot {
                snapshot_id: snapshot_id.clone(),
                source: Box::new(source),
            })?;
            state.snapshot = Some(RestoreSnapshotStatus {
                snapshot_id: Some(snapshot_id.clone()),
                location: Some(uri),
                snapshot_time: Some(time(snapshot.timestamp)),
                expiration_time: snapshot.expires_at.map(time),
            });
            if !matches!(role, Role::Shard(_)) {
                location.put(&state_key, state_bytes(&state)).await?;
            }
        }
        status.snapshot = state.snapshot.clone();
        if !to_create.is_empty() {
            topics::create_topics(&config, &to_create).await?;
            state
                .created_topics
                .extend(to_create.iter().map(|t| t.name.clone()));
        }
        if !to_purge.is_empty() {
            topics::delete_records(&config, &to_purge).await?;
            state
                .purged_topics
                .extend(to_purge.keys().map(|(t, _)| t.clone()).collect::<BTreeSet<_>>());
        }
        state.bases = bases.clone();
        // A shard's worker leaves the state to the coordinator: several run at the same time.
        if !matches!(role, Role::Shard(_)) {
            location.put(&state_key, state_bytes(&state)).await?;
        }
        // What an interrupted attempt already wrote.
        let targets: BTreeSet<Partition> = bases
            .iter()
            .flat_map(|(t, m)| m.keys().map(move |p| (t.clone(), *p)))
            .collect();
        let now_bounds = {
            let cluster = cluster.clone();
            blocking(move || wait_for_bounds(&cluster, &targets)).await?
        };
        for (t, m) in &bases {
            for (p, base) in m {
                let end = now_bounds.get(&(t.clone(), *p)).map_or(*base, |b| b.end);
                if end < *base {
                    return Err(RestoreError::Verify(format!(
                        "target partition {t}-{p} ends at {end}, before the restore's base offset {base}: the topic was recreated since the interrupted attempt; delete {} to start over",
                        location.uri(&state_key)
                    )));
                }
                written
                    .entry(t.clone())
                    .or_default()
                    .insert(*p, (end - base) as u64);
            }
        }
    }

    let mut units = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        match plan.routing {
            Routing::Direct(_) => {
                for p in plan.segments.keys() {
                    units.push(Unit {
                        topic: i,
                        source_partitions: vec![*p],
                    });
                }
            }
            Routing::Repartition { .. } => units.push(Unit {
                topic: i,
                source_partitions: plan.segments.keys().copied().collect(),
            }),
        }
    }
    // The shards: by target partition (a repartitioned topic's whole), so that each target
    // partition is written by one worker, in its order.
    let mut own_targets: Option<BTreeSet<Partition>> = None;
    match role {
        Role::Plan(workers) => {
            let weights: Vec<(Partition, u64)> = units
                .iter()
                .map(|u| {
                    let plan = &plans[u.topic];
                    let stored = u
                        .source_partitions
                        .iter()
                        .flat_map(|p| plan.segments.get(p).into_iter().flatten())
                        .map(|s| s.stored_bytes)
                        .sum();
                    (unit_target(plan, u), stored)
                })
                .collect();
            let plan = shard::plan(state.shards.take(), &weights, workers, Utc::now());
            state.shards = Some(plan);
            location.put(&state_key, state_bytes(&state)).await?;
            return Ok(());
        }
        Role::Shard(shard) => {
            let plan = shard_plan(state.shards.as_ref(), &location.uri(&state_key), shard)?;
            let mine: BTreeSet<Partition> = plan.partitions(shard.index).into_iter().collect();
            units.retain(|u| mine.contains(&unit_target(&plans[u.topic], u)));
            own_targets = Some(
                units
                    .iter()
                    .flat_map(|u| {
                        let plan = &plans[u.topic];
                        match &plan.routing {
                            Routing::Direct(_) => vec![unit_target(plan, u)],
                            Routing::Repartition { .. } => bases
                                .get(&plan.target)
                                .into_iter()
                                .flat_map(|m| m.keys().map(|p| (plan.target.clone(), *p)))
                                .collect(),
                        }
                    })
                    .collect(),
            );
        }
        Role::Merge(_) => units.clear(),
        Role::Whole => {}
    }

    // Produce (or, in a dry run, only walk the records).
    let producer = if spec.dry_run || matches!(role, Role::Merge(_)) {
        None
    } else {
        let timeout = Duration::from_millis(spec.produce.timeout_ms.max(1) as u64);
        Some(
            Producer::start(
                protocol::Settings::new(&access).map_err(KafkaError::from)?,
                spec.produce.acks,
                timeout,
            )
            .await
            .map_err(KafkaError::from)?,
        )
    };
    // Batches no larger than the targets take: a topic created with the source's configuration
    // may take less than the broker's default.
    let batch_limits = if spec.dry_run || matches!(role, Role::Merge(_)) {
        BTreeMap::new()
    } else {
        let targets: BTreeSet<String> = plans.iter().map(|p| p.target.clone()).collect();
        topics::max_message_bytes(&config, &targets)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(
                    "batches of the default size: the target topics' max.message.bytes could not be read: {e}"
                );
                BTreeMap::new()
            })
    };
    // Units stop at their next record once one of them failed.
    let cancel = ctx.cancel.child_token();
    let env = Arc::new(UnitEnv {
        plans: plans.clone(),
        window,
        bases: bases.clone(),
        written,
        producer: producer.as_ref().map(Producer::identity),
        batch_records: spec.produce.batch_size.max(1),
        batch_limits,
        include_headers: spec.include_original_offset_headers,
        source_cluster: manifest.source_cluster_id.clone(),
        reset_time,
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        segments: AtomicU64::new(0),
        topic_records: plans.iter().map(|_| AtomicU64::new(0)).collect(),
        topic_units: plans.iter().map(|_| AtomicU64::new(0)).collect(),
        limiter: (spec.rate_limiting.records_per_sec.is_some() || spec.rate_limiting.bytes_per_sec.is_some())
            .then(|| {
                Mutex::new((
                    Instant::now(),
                    0.0,
                    0.0,
                    spec.rate_limiting.records_per_sec.map(|r| r as f64),
                    spec.rate_limiting.bytes_per_sec.map(|b| b as f64),
                ))
            }),
        buffers: Mutex::new(Vec::new()),
        buffers_kept: spec.rate_limiting.max_concurrent_partitions.max(1) as usize,
        cancel: cancel.clone(),
        format: set.format,
    });
    let concurrency = spec.rate_limiting.max_concurrent_partitions.max(1) as usize;
    // In a block: the stream holds batch senders, and the producer finishes once all are gone.
    let unit_results = {
        let sender = producer.as_ref().map(Producer::sender);
        let tallies_stream = stream::iter(units)
            .map(|unit| {
                let env = env.clone();
                let location = location.clone();
                let sender = sender.clone();
                async move { run_unit(unit, env, location, sender).await }
            })
            .buffer_unordered(concurrency)
            .try_collect::<Vec<_>>();
        tokio::pin!(tallies_stream);
        let mut progress_tick = tokio::time::interval(PROGRESS_EVERY);
        let mut previous = (Instant::now(), 0u64, 0u64);
        loop {
            tokio::select! {
                r = &mut tallies_stream => break r,
                _ = progress_tick.tick() => {
                    let done = env.records.load(Ordering::Relaxed);
                    let running = running_status(status, &env, total_records, previous, spec.dry_run);
                    previous = (Instant::now(), done, env.bytes.load(Ordering::Relaxed));
                    ctx.report_status(
                        done,
                        Some(total_records),
                        if spec.dry_run { "records checked" } else { "records restored" },
                        running,
                    );
                }
            }
        }
    };
    if unit_results.is_err() {
        cancel.cancel();
    }
    // The producer's own error comes first: a unit only sees that it stopped.
    if let Some(p) = producer {
        p.finish().await.map_err(|e| {
            RestoreError::Produce(format!(
                "{e}; run the restore again: it continues without duplicating records"
            ))
        })?;
    }
    let unit_tallies = unit_results?;
    if ctx.cancel.is_cancelled() {
        return Err(RestoreError::Worker(
            "cancelled; run the restore again to continue where it stopped".into(),
        ));
    }
    let mut tallies: BTreeMap<Partition, PartitionTally> = BTreeMap::new();
    if let Role::Merge(exits) = role {
        let plan = shard_plan(
            state.shards.as_ref(),
            &location.uri(&state_key),
            ShardIndex {
                index: 0,
                count: exits.len(),
            },
        )?;
        for (index, exit) in exits.iter().enumerate() {
            let key = restore_shard_key(&backup_id, &name, &plan.id, index);
            let result: Option<RestoreShardResult> = match location.get(&key).await? {
                None => None,
                Some(bytes) => serde_json::from_slice(&bytes).ok(),
            };
            let Some(result) = result.filter(|r| r.plan == plan.id && r.index == index) else {
                return Err(RestoreError::Shard {
                    shard: ShardIndex {
                        index,
                        count: exits.len(),
                    },
                    message: format!(
                        "stored no result: its worker did not finish{}; running the restore again continues every target partition after what it holds",
                        exit.as_ref().err().map(|e| format!(" ({e})")).unwrap_or_default()
                    ),
                });
            };
            env.segments.fetch_add(result.segments, Ordering::Relaxed);
            for t in result.tallies {
                if let Some(i) = plans.iter().position(|p| p.target == t.topic) {
                    env.topic_records[i].fetch_add(t.tally.records, Ordering::Relaxed);
                }
                tallies.insert((t.topic, t.partition), t.tally);
            }
        }
    }
    for unit in unit_tallies {
        for (tp, t) in unit {
            let entry = tallies.entry(tp).or_default();
            entry.records += t.records;
            entry.produced += t.produced;
            entry.bytes += t.bytes;
            entry.ranges.extend(t.ranges);
            entry.min_ts = entry.min_ts.min(t.min_ts).or(entry.min_ts).or(t.min_ts);
            entry.max_ts = entry.max_ts.max(t.max_ts);
            entry.first_at_reset_time = entry.first_at_reset_time.or(t.first_at_reset_time);
        }
    }
    let records: u64 = tallies.values().map(|t| t.records).sum();
    let bytes: u64 = tallies.values().map(|t| t.bytes).sum();

    // Verify the targets hold exactly the restored sequence.
    let target_partitions: BTreeSet<Partition> = bases
        .iter()
        .flat_map(|(t, m)| m.keys().map(move |p| (t.clone(), *p)))
        .collect();
    let final_bounds: BTreeMap<Partition, LogBounds> = if spec.dry_run {
        bases
            .iter()
            .flat_map(|(t, m)| {
                let tallies = &tallies;
                m.iter().map(move |(p, base)| {
                    let n = tallies.get(&(t.clone(), *p)).map_or(0, |x| x.records) as i64;
                    (
                        (t.clone(), *p),
                        LogBounds {
                            start: *base,
                            end: base + n,
                        },
                    )
                })
            })
            .collect()
    } else {
        let cluster = cluster.clone();
        let partitions = target_partitions.clone();
        blocking(move || cluster.log_bounds(&partitions)).await?
    };
    if !spec.dry_run {
        for (t, m) in &bases {
            for (p, base) in m {
                // A shard's worker answers for its own target partitions only.
                if own_targets
                    .as_ref()
                    .is_some_and(|own| !own.contains(&(t.clone(), *p)))
                {
                    continue;
                }
                let expected = base + tallies.get(&(t.clone(), *p)).map_or(0, |x| x.records) as i64;
                let end = final_bounds.get(&(t.clone(), *p)).map_or(-1, |b| b.end);
                if end != expected {
                    return Err(RestoreError::Verify(format!(
                        "target partition {t}-{p} ends at offset {end} after the restore, expected {expected} (base {base} + {} restored records): another producer wrote into it during the restore",
                        expected - base
                    )));
                }
            }
        }
    }

    if let Role::Shard(shard) = role {
        let plan_id = state.shards.as_ref().map(|p| p.id.clone()).unwrap_or_default();
        let result = RestoreShardResult {
            plan: plan_id.clone(),
            index: shard.index,
            count: shard.count,
            segments: env.segments.load(Ordering::Relaxed),
            tallies: tallies
                .iter()
                .map(|((topic, partition), tally)| ShardTally {
                    topic: topic.clone(),
                    partition: *partition,
                    tally: tally.clone(),
                })
                .collect(),
        };
        let key = restore_shard_key(&backup_id, &name, &plan_id, shard.index);
        location
            .put(
                &key,
                Bytes::from(serde_json::to_vec_pretty(&result).unwrap_or_default()),
            )
            .await?;
        status.records_restored = Some(records as i64);
        status.bytes_restored = Some(bytes as i64);
        status.segments_processed = Some(result.segments as i64);
        status.phase = Some(Phase::Completed);
        status.progress_percent = Some(100.0);
        status.message = Some(format!(
            "{shard}: restored {records} records ({bytes} bytes) of backup set {backup_id} into its {} target partitions; the coordinator verifies every partition, stores the offset mapping and moves the groups",
            own_targets.as_ref().map_or(0, BTreeSet::len)
        ));
        status.completion_time = Some(time(Utc::now()));
        return Ok(());
    }

    // The offset mapping.
    let mut mapping = OffsetMapping::default();
    for plan in plans.iter() {
        let mut ranges: Vec<OffsetRange> = tallies
            .iter()
            .filter(|((t, _), _)| *t == plan.target)
            .flat_map(|(_, tally)| tally.ranges.iter().copied())
            .collect();
        ranges.sort_by_key(|r| (r.target_partition, r.target_start));
        mapping.topics.insert(
            plan.target.clone(),
            TopicMapping {
                source_topic: plan.source.clone(),
                ranges,
            },
        );
    }

    // Group offsets.
    let mut group_plans: BTreeMap<String, Result<BTreeMap<Partition, i64>, String>> = BTreeMap::new();
    let mut notes: Vec<String> = Vec::new();
    let repartitioned: Vec<&str> = plans
        .iter()
        .filter(|p| matches!(p.routing, Routing::Repartition { .. }))
        .map(|p| p.target.as_str())
        .collect();
    let header_based = |group: &str, snapshot: &GroupSnapshot| -> Result<BTreeMap<Partition, i64>, String> {
        let committed = snapshot
            .groups
            .get(group)
            .ok_or_else(|| format!("group {group} is not in the backup's consumer-group snapshot"))?;
        let mut out = BTreeMap::new();
        for plan in plans.iter() {
            let Routing::Direct(map) = &plan.routing else {
                continue;
            };
            for (sp, offset) in committed.get(&plan.source).into_iter().flatten() {
                let translated = mapping.translate(&plan.target, *sp, *offset);
                let targets: BTreeMap<i32, i64> = if translated.is_empty() {
                    // Nothing of this partition was restored: the end of the target partition.
                    map.get(sp)
                        .and_then(|tp| {
                            final_bounds
                                .get(&(plan.target.clone(), *tp))
                                .map(|b| (*tp, b.end))
                        })
                        .into_iter()
                        .collect()
                } else {
                    translated
                };
                for (tp, o) in targets {
                    let tp = (plan.target.clone(), tp);
                    let clamped = final_bounds.get(&tp).map_or(o, |b| b.clamp(o).0);
                    out.insert(tp, clamped);
                }
            }
        }
        Ok(out)
    };
    if let Some(reset) = &spec.offset_reset {
        let restored: BTreeSet<Partition> = plans
            .iter()
            .flat_map(|p| (0..p.target_partitions).map(move |tp| (p.target.clone(), tp)))
            .filter(|tp| final_bounds.contains_key(tp))
            .collect();
        // The first offset at or after the time: the broker's answer, or in a dry run where the
        // walk found that record in the sequence each partition would get.
        let by_time: BTreeMap<Partition, Option<i64>> = match reset_time {
            Some(millis) if !spec.dry_run => {
                let cluster = cluster.clone();
                let partitions = restored.clone();
                blocking(move || cluster.offsets_for_time(&partitions, millis)).await?
            }
            Some(_) => restored
                .iter()
                .map(|tp| {
                    let base = bases.get(&tp.0).and_then(|m| m.get(&tp.1)).copied().unwrap_or(0);
                    let found = tallies.get(tp).and_then(|t| t.first_at_reset_time);
                    (tp.clone(), found.map(|i| base + i as i64))
                })
                .collect(),
            None => BTreeMap::new(),
        };
        if reset.strategy == RestoreOffsetResetStrategy::HeaderBased && !repartitioned.is_empty() {
            notes.push(format!(
                "offsets of repartitioned topics ({}) cannot be translated: their groups were not moved there",
                repartitioned.join(", ")
            ));
        }
        for group in &reset.consumer_groups {
            let plan = match reset.strategy {
                RestoreOffsetResetStrategy::HeaderBased => match &group_snapshot {
                    Some(s) => header_based(group, s),
                    None => Err("no consumer-group snapshot".into()),
                },
                RestoreOffsetResetStrategy::Earliest => Ok(restored
                    .iter()
                    .filter_map(|tp| final_bounds.get(tp).map(|b| (tp.clone(), b.start)))
                    .collect()),
                RestoreOffsetResetStrategy::Latest => Ok(restored
                    .iter()
                    .filter_map(|tp| final_bounds.get(tp).map(|b| (tp.clone(), b.end)))
                    .collect()),
                RestoreOffsetResetStrategy::Timestamp => Ok(restored
                    .iter()
                    .filter_map(|tp| {
                        let b = final_bounds.get(tp)?;
                        Some((tp.clone(), by_time.get(tp).copied().flatten().unwrap_or(b.end)))
                    })
                    .collect()),
            };
            group_plans.insert(group.clone(), plan);
        }
    }
    if let Some(snapshot) = &group_snapshot {
        for group in &auto_groups {
            group_plans.insert(group.clone(), header_based(group, snapshot));
        }
    }
    for (group, plan) in &group_plans {
        if let Ok(offsets) = plan {
            let entry = mapping.groups.entry(group.clone()).or_default();
            for ((t, p), o) in offsets {
                entry.entry(t.clone()).or_default().insert(*p, *o);
            }
        }
    }

    // Status.
    status.records_restored = Some(if spec.dry_run { 0 } else { records as i64 });
    status.bytes_restored = Some(if spec.dry_run { 0 } else { bytes as i64 });
    status.segments_processed = Some(env.segments.load(Ordering::Relaxed) as i64);
    status.restored_topics = Some(restored_topics(&env, spec.dry_run));
    let secs = clock.elapsed().as_secs_f64().max(1e-3);
    status.throughput = Some(RestoreThroughput {
        records_per_second: Some(records as f64 / secs),
        bytes_per_second: Some(bytes as f64 / secs),
    });
    status.eta_seconds = Some(0);
    let (min_ts, max_ts) = tallies.values().fold((None::<i64>, None::<i64>), |(lo, hi), t| {
        (
            match (lo, t.min_ts) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            hi.max(t.max_ts),
        )
    });
    let range = match (min_ts, max_ts) {
        (Some(a), Some(b)) => format!(
            ", record times {} .. {}",
            DateTime::<Utc>::from_timestamp_millis(a).map_or(a.to_string(), |d| d.to_rfc3339()),
            DateTime::<Utc>::from_timestamp_millis(b).map_or(b.to_string(), |d| d.to_rfc3339())
        ),
        _ => String::new(),
    };
    let topics_text: Vec<String> = plans
        .iter()
        .map(|p| {
            if p.source == p.target {
                p.source.clone()
            } else {
                format!("{} -> {}", p.source, p.target)
            }
        })
        .collect();

    // What the set's format could not keep, in the message of the restore.
    let set_notes: Vec<&str> = set
        .fidelity_note()
        .into_iter()
        .chain(set.completeness_note())
        .collect();
    if spec.dry_run {
        notes.extend(snapshot_note);
        notes.extend(set_notes.iter().map(|n| (*n).to_owned()));
        let plan = dry_run_plan(
            &plans,
            &tallies,
            &DryRunActions {
                to_create: &to_create,
                to_purge: &to_purge,
                groups: &group_plans,
                notes: &notes,
            },
        );
        status.phase = Some(Phase::Completed);
        status.progress_percent = Some(100.0);
        status.message = Some(dry_run_message(&plan, &backup_id, &range));
        status.plan = Some(plan);
        return Ok(());
    }

    location
        .put(
            &mapping_key,
            Bytes::from(serde_json::to_vec_pretty(&mapping).unwrap_or_default()),
        )
        .await?;
    status.offset_mapping_path = Some(location.uri(&mapping_key));

    // Commit group offsets.
    let mut groups_reset = Vec::new();
    let mut groups_failed = Vec::new();
    for (group, plan) in group_plans {
        let outcome = match plan {
            Err(e) => Err(e),
            Ok(offsets) => commit_group(&admin, &access, &group, offsets)
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r),
        };
        match outcome {
            Ok(()) => groups_reset.push(group),
            Err(e) => {
                notes.push(e);
                groups_failed.push(group);
            }
        }
    }
    if !groups_reset.is_empty() || !groups_failed.is_empty() {
        status.offset_reset = Some(RestoreOffsetResetStatus {
            phase: Some(if groups_failed.is_empty() {
                Phase::Completed
            } else if groups_reset.is_empty() {
                Phase::Failed
            } else {
                Phase::PartiallyCompleted
            }),
            groups_reset: Some(groups_reset.clone()),
            groups_failed: Some(groups_failed.clone()),
            message: (!notes.is_empty()).then(|| notes.join("; ")),
        });
    }
    status.phase = Some(if groups_failed.is_empty() {
        Phase::Completed
    } else {
        Phase::PartiallyCompleted
    });
    status.progress_percent = Some(100.0);
    let produced: u64 = tallies.values().map(|t| t.produced).sum();
    notes.extend(set_notes.iter().map(|n| (*n).to_owned()));
    status.message = Some(format!(
        "restored {records} records ({bytes} bytes) of backup set {backup_id} into {}{range}{}{}",
        topics_text.join(", "),
        if produced < records {
            format!(
                "; {} were already written by an interrupted attempt",
                records - produced
            )
        } else {
            String::new()
        },
        notes
            .iter()
            .chain(&snapshot_note)
            .map(|n| format!("; {n}"))
            .collect::<String>()
    ));
    status.completion_time = Some(time(Utc::now()));
    state.state = "Completed".into();
    state.final_status = Some(status.clone());
    location.put(&state_key, state_bytes(&state)).await?;
    ctx.report(records, Some(records), "records restored");
    Ok(())
}

/// `restoredTopics`: the records routed to each topic so far (none in a dry run, which writes
/// nothing).
fn restored_topics(env: &UnitEnv, dry_run: bool) -> Vec<RestoredTopic> {
    env.plans
        .iter()
        .zip(&env.topic_records)
        .map(|(p, records)| RestoredTopic {
            name: p.source.clone(),
            target_name: (p.target != p.source).then(|| p.target.clone()),
            records: Some(if dry_run {
                0
            } else {
                records.load(Ordering::Relaxed) as i64
            }),
        })
        .collect()
}

/// The status of a restore while its records are written: what `known` holds (set, start,
/// snapshot) and the counters so far, the topics being restored, the throughput since the
/// previous report (`since`: when, records, bytes) and the time left at that rate.
fn running_status(
    known: &KafkaRestoreStatus,
    env: &UnitEnv,
    total: u64,
    since: (Instant, u64, u64),
    dry_run: bool,
) -> serde_json::Value {
    let records = env.records.load(Ordering::Relaxed);
    let bytes = env.bytes.load(Ordering::Relaxed);
    let secs = since.0.elapsed().as_secs_f64().max(1e-3);
    let records_per_second = records.saturating_sub(since.1) as f64 / secs;
    let current: Vec<&str> = env
        .plans
        .iter()
        .zip(&env.topic_units)
        .filter(|(_, units)| units.load(Ordering::Relaxed) > 0)
        .map(|(p, _)| p.source.as_str())
        .collect();
    let percent = if total == 0 {
        100.0
    } else {
        (records as f64 * 100.0 / total as f64).min(100.0)
    };
    let written = |n: u64| Some(if dry_run { 0 } else { n as i64 });
    let status = KafkaRestoreStatus {
        phase: Some(Phase::Running),
        backup_id: known.backup_id.clone(),
        start_time: known.start_time.clone(),
        snapshot: known.snapshot.clone(),
        progress_percent: Some((percent * 10.0).round() / 10.0),
        records_restored: written(records),
        bytes_restored: written(bytes),
        segments_processed: Some(env.segments.load(Ordering::Relaxed) as i64),
        restored_topics: Some(restored_topics(env, dry_run)),
        current_topic: (!current.is_empty()).then(|| current.join(", ")),
        throughput: Some(RestoreThroughput {
            records_per_second: Some(records_per_second),
            bytes_per_second: Some(bytes.saturating_sub(since.2) as f64 / secs),
        }),
        eta_seconds: (records_per_second > 0.0)
            .then(|| (total.saturating_sub(records) as f64 / records_per_second).ceil() as i64),
        ..Default::default()
    };
    let mut value = serde_json::to_value(status).unwrap_or_default();
    // Between two topics none is being restored: the previous one's name goes.
    if value.get("currentTopic").is_none() {
        value["currentTopic"] = serde_json::Value::Null;
    }
    value
}

/// Commits a group's translated offsets as a non-member; `Ok(Err)` for a group with active
/// members, which is not touched.
async fn commit_group(
    admin: &tokio::sync::OnceCell<GroupAdmin>,
    access: &ClusterAccess,
    group: &str,
    offsets: BTreeMap<Partition, i64>,
) -> Result<Result<(), String>, KafkaError> {
    let admin = admin.get_or_try_init(|| kafka::group_admin(access)).await?;
    let descriptions = admin.describe(&[group.to_owned()]).await?;
    if let Some(d) = descriptions.get(group).filter(|d| !d.is_inactive()) {
        return Ok(Err(format!(
            "group {group} is {} with {} active member(s): stop its consumers first",
            d.state, d.members
        )));
    }
    let commit: BTreeMap<Partition, Committed> = offsets
        .into_iter()
        .map(|(tp, offset)| {
            (
                tp,
                Committed {
                    offset,
                    metadata: String::new(),
                },
            )
        })
        .collect();
    admin.commit(group, &commit).await?;
    Ok(Ok(()))
}

/// What `snapshotBeforeRestore` stored (with `dry_run`: would store), for the status message.
fn snapshot_note(
    snapshot_id: &str,
    offsets: &BTreeMap<String, BTreeMap<Partition, Committed>>,
    dry_run: bool,
) -> String {
    let verb = if dry_run { "would store" } else { "stored" };
    if offsets.is_empty() {
        return format!(
            "snapshotBeforeRestore {verb} snapshot {snapshot_id} with no group: no consumer group has committed offsets on the target topics and none is reset"
        );
    }
    let groups: Vec<String> = offsets
        .iter()
        .map(|(g, o)| format!("{g} ({} partitions)", o.len()))
        .collect();
    format!(
        "snapshotBeforeRestore {verb} snapshot {snapshot_id} with the offsets from before the restore of {}",
        groups.join(", ")
    )
}

fn state_bytes(state: &RestoreState) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(state).unwrap_or_default())
}

/// Log bounds, retried briefly: freshly created topics may not have leaders yet.
fn wait_for_bounds(
    cluster: &Cluster,
    partitions: &BTreeSet<Partition>,
) -> Result<BTreeMap<Partition, LogBounds>, KafkaError> {
    let mut attempt = 0;
    loop {
        match cluster.log_bounds(partitions) {
            Ok(b) => return Ok(b),
            Err(e) if attempt < 20 => {
                attempt += 1;
                tracing::debug!("waiting for new topics: {e}");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Checks every selected segment is stored with the size the manifest lists.
async fn check_segments(location: &ObjectLocation, plans: &[TopicPlan]) -> Result<(), RestoreError> {
    let all: Vec<SegmentEntry> = plans
        .iter()
        .flat_map(|p| p.segments.values().flatten().cloned())
        .collect();
    stream::iter(all)
        .map(|s| async move {
            match location.store().head(&location.path(&s.key)).await {
                Ok(meta) if meta.size == s.stored_bytes => Ok(()),
                Ok(meta) => Err(RestoreError::Segment {
                    uri: location.uri(&s.key),
                    message: format!(
                        "is {} bytes, the manifest lists {}: it was changed or truncated",
                        meta.size, s.stored_bytes
                    ),
                }),
                Err(object_store::Error::NotFound { .. }) => Err(RestoreError::Segment {
                    uri: location.uri(&s.key),
                    message: "is listed in the manifest but missing from storage; nothing was restored"
                        .into(),
                }),
                Err(source) => Err(StorageError::Object {
                    operation: "read",
                    uri: location.uri(&s.key),
                    source,
                }
                .into()),
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// Restores one unit: fetches and verifies its segments (one ahead) and encodes their records into
/// batches for the producer.
async fn run_unit(
    unit: Unit,
    env: Arc<UnitEnv>,
    location: ObjectLocation,
    sender: Option<BatchSender>,
) -> Result<BTreeMap<Partition, PartitionTally>, RestoreError> {
    let plan = &env.plans[unit.topic];
    let _running = RunningUnit::on(&env.topic_units[unit.topic]);
    let segments: Vec<(i32, SegmentEntry)> = unit
        .source_partitions
        .iter()
        .flat_map(|p| {
            plan.segments
                .get(p)
                .into_iter()
                .flatten()
                .map(move |s| (*p, s.clone()))
        })
        .collect();
    let (tx, mut rx) = mpsc::channel::<Result<(i32, Segment), RestoreError>>(1);
    let fetcher = tokio::spawn({
        let location = location.clone();
        let env = env.clone();
        async move {
            for (p, entry) in segments {
                // The next segment is read once the unit took the one before: a unit holds two.
                let Ok(permit) = tx.reserve().await else {
                    break;
                };
                let uri = location.uri(&entry.key);
                let fetched = match location.read_once(&entry.key, env.buffer()).await {
                    Ok(Some(bytes)) => {
                        let spare = env.buffer();
                        let (format, listed) = (env.format, entry.clone());
                        tokio::task::spawn_blocking(move || format.decode_segment(bytes, spare, p, &listed))
                            .await
                            .map_err(|e| RestoreError::Worker(e.to_string()))
                            .and_then(|r| {
                                r.map(|(segment, unused)| {
                                    env.keep(unused);
                                    segment
                                })
                                .map_err(|e| RestoreError::Segment {
                                    uri: uri.clone(),
                                    message: e.to_string(),
                                })
                            })
                            .and_then(|seg| {
                                if seg.header.records != entry.records
                                    || seg.header.first_offset != entry.first_offset
                                {
                                    Err(RestoreError::Segment {
                                        uri: uri.clone(),
                                        message: format!(
                                            "holds {} records from offset {}, the manifest lists {} from {}",
                                            seg.header.records,
                                            seg.header.first_offset,
                                            entry.records,
                                            entry.first_offset
                                        ),
                                    })
                                } else {
                                    Ok((p, seg))
                                }
                            })
                    }
                    Ok(None) => Err(RestoreError::Segment {
                        uri,
                        message: "is listed in the manifest but missing from storage".into(),
                    }),
                    Err(e) => Err(e.into()),
                };
                let stop = fetched.is_err();
                permit.send(fetched);
                if stop {
                    break;
                }
            }
        }
    });
    let env2 = env.clone();
    let topic_index = unit.topic;
    let result =
        tokio::task::spawn_blocking(move || -> Result<BTreeMap<i32, PartitionTally>, RestoreError> {
            let plan = &env2.plans[topic_index];
            let mut tallies: BTreeMap<i32, PartitionTally> = BTreeMap::new();
            let mut round_robin: i64 = 0;
            let mut batches = env2.producer.zip(sender).map(|(identity, sender)| Batches {
                topic: Arc::from(plan.target.as_str()),
                identity,
                max_records: env2.batch_records,
                max_bytes: env2.batch_limits.get(&plan.target).copied().unwrap_or(usize::MAX),
                tracking_headers: match (env2.include_headers, &env2.source_cluster) {
                    (false, _) => 0,
                    (true, None) => 3,
                    (true, Some(_)) => 4,
                },
                sender,
                open: BTreeMap::new(),
                sequences: BTreeMap::new(),
            });
            while let Some(next) = rx.blocking_recv() {
                let (sp, segment) = next?;
                env2.segments.fetch_add(1, Ordering::Relaxed);
                for record in segment.records() {
                    if env2.cancel.is_cancelled() {
                        return Ok(tallies);
                    }
                    let record = record.map_err(|e| RestoreError::Segment {
                        uri: format!("{}/{}-{sp}", plan.source, segment.header.first_offset),
                        message: e.to_string(),
                    })?;
                    if !env2.window.contains(record.timestamp) {
                        continue;
                    }
                    let tp = match &plan.routing {
                        Routing::Direct(map) => map.get(&sp).copied().unwrap_or(sp),
                        Routing::Repartition { partitions, strategy } => match (strategy, record.key) {
                            (RepartitionStrategy::Murmur2, Some(key)) => {
                                topics::murmur2_partition(key, *partitions)
                            }
                            _ => {
                                round_robin += 1;
                                ((round_robin - 1) % i64::from(*partitions)) as i32
                            }
                        },
                    };
                    let base = env2
                        .bases
                        .get(&plan.target)
                        .and_then(|m| m.get(&tp))
                        .copied()
                        .unwrap_or(0);
                    let done = env2
                        .written
                        .get(&plan.target)
                        .and_then(|m| m.get(&tp))
                        .copied()
                        .unwrap_or(0);
                    let tally = tallies.entry(tp).or_default();
                    let index = tally.records;
                    tally.add(sp, record.offset, tp, base, &record, env2.reset_time);
                    env2.records.fetch_add(1, Ordering::Relaxed);
                    env2.bytes.fetch_add(record.data_len(), Ordering::Relaxed);
                    env2.topic_records[topic_index].fetch_add(1, Ordering::Relaxed);
                    if index < done {
                        continue;
                    }
                    if let Some(batches) = &mut batches {
                        tally.produced += 1;
                        batches.add(&env2, tp, sp, &record)?;
                    }
                    if let Some(limiter) = &env2.limiter {
                        let wait = limiter.lock().ok().and_then(|mut l| {
                            l.1 += 1.0;
                            l.2 += record.data_len() as f64;
                            let need = l.3.map_or(0.0, |r| l.1 / r).max(l.4.map_or(0.0, |b| l.2 / b));
                            let elapsed = l.0.elapsed().as_secs_f64();
                            (need > elapsed).then(|| Duration::from_secs_f64(need - elapsed))
                        });
                        if let Some(wait) = wait {
                            std::thread::sleep(wait);
                        }
                    }
                }
                env2.recycle(segment);
            }
            if let Some(batches) = &mut batches {
                batches.flush_all()?;
            }
            Ok(tallies)
        })
        .await
        .map_err(|e| RestoreError::Worker(format!("restore worker failed: {e}")))?;
    fetcher.abort();
    let tallies = result?;
    Ok(tallies
        .into_iter()
        .map(|(p, t)| ((plan.target.clone(), p), t))
        .collect())
}

/// Counts a unit as running on its topic while it lives (`currentTopic`).
struct RunningUnit<'a>(&'a AtomicU64);

impl<'a> RunningUnit<'a> {
    fn on(units: &'a AtomicU64) -> Self {
        units.fetch_add(1, Ordering::Relaxed);
        RunningUnit(units)
    }
}

impl Drop for RunningUnit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A unit's batches in the making, one per target partition (each target partition is written
/// by one unit only), and the sequence number each partition's next batch starts at.
struct Batches {
    topic: Arc<str>,
    identity: ProducerIdentity,
    max_records: i32,
    max_bytes: usize,
    /// How many of the four tracking headers each record gets: none unless asked for, the
    /// source cluster's only when it is known.
    tracking_headers: usize,
    sender: BatchSender,
    open: BTreeMap<i32, BatchBuilder>,
    sequences: BTreeMap<i32, i32>,
}

impl Batches {
    /// Adds a record for target partition `partition`, with the tracking headers when asked for;
    /// a full batch goes to the producer first.
    fn add(
        &mut self,
        env: &UnitEnv,
        partition: i32,
        source_partition: i32,
        record: &RecordRef<'_>,
    ) -> Result<(), RestoreError> {
        let offset_bytes = headers::encode_i64(record.offset);
        let ts_bytes = headers::encode_i64(record.timestamp);
        let partition_bytes = headers::encode_i32(source_partition);
        let tracking: [HeaderRef<'_>; 4] = [
            (headers::ORIGINAL_OFFSET, Some(&offset_bytes[..])),
            (headers::ORIGINAL_TIMESTAMP, Some(&ts_bytes[..])),
            (headers::SOURCE_PARTITION, Some(&partition_bytes[..])),
            (
                headers::SOURCE_CLUSTER,
                env.source_cluster.as_deref().map(str::as_bytes),
            ),
        ];
        let all = record
            .headers()
            .chain(tracking[..self.tracking_headers].iter().copied());
        let full = self.open.get(&partition).is_some_and(|b| {
            b.records() >= self.max_records || !b.fits(record.key, record.value, all.clone())
        });
        if full {
            self.flush(partition)?;
        }
        let timestamp = written_timestamp(record.timestamp);
        let max_bytes = self.max_bytes;
        self.open
            .entry(partition)
            .or_insert_with(|| BatchBuilder::with_limit(max_bytes))
            .push(timestamp, record.key, record.value, all);
        Ok(())
    }

    /// Hands partition `partition`'s batch to the producer.
    fn flush(&mut self, partition: i32) -> Result<(), RestoreError> {
        let Some(batch) = self.open.remove(&partition) else {
            return Ok(());
        };
        let records = batch.records();
        let sequence = self.sequences.entry(partition).or_insert(0);
        let first = *sequence;
        let bytes = batch.finish(self.identity, first);
        // Sequence numbers wrap around to 0 after i32::MAX.
        *sequence = ((i64::from(*sequence) + i64::from(records)) % (i64::from(i32::MAX) + 1)) as i32;
        self.sender
            .send_blocking(Batch::new(self.topic.clone(), partition, records, first, bytes))
            .map_err(|e| RestoreError::Produce(e.to_string()))
    }

    /// Hands every open batch to the producer.
    fn flush_all(&mut self) -> Result<(), RestoreError> {
        let partitions: Vec<i32> = self.open.keys().copied().collect();
        partitions.into_iter().try_for_each(|p| self.flush(p))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn units_are_sharded_by_target_partition_and_workers_by_the_recorded_plan() {
        let plan = |routing| TopicPlan {
            source: "src".into(),
            target: "dst".into(),
            segments: BTreeMap::new(),
            routing,
            target_partitions: 4,
            configs: BTreeMap::new(),
        };
        let unit = |p| Unit {
            topic: 0,
            source_partitions: vec![p],
        };
        let direct = plan(Routing::Direct(BTreeMap::from([(0, 2), (1, 3)])));
        assert_eq!(unit_target(&direct, &unit(0)), ("dst".to_owned(), 2));
        assert_eq!(unit_target(&direct, &unit(1)), ("dst".to_owned(), 3));
        let repartitioned = plan(Routing::Repartition {
            partitions: 4,
            strategy: RepartitionStrategy::Murmur2,
        });
        assert_eq!(unit_target(&repartitioned, &unit(1)), ("dst".to_owned(), 0));

        let recorded = ShardPlan {
            id: "1-2".into(),
            shards: vec![BTreeMap::new(), BTreeMap::new()],
        };
        let uri = "pvc://b/backups/x/restores/r/state.json";
        let shard = |index, count| ShardIndex { index, count };
        assert_eq!(shard_plan(Some(&recorded), uri, shard(1, 2)).unwrap(), &recorded);
        let e = shard_plan(None, uri, shard(0, 2)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "--shard-index: {uri} records no restore split into shards"
            )),
            "{e}"
        );
        let e = shard_plan(Some(&recorded), uri, shard(0, 3))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("--shards: the restore recorded in {uri} is split into 2 shards, not 3")
        );
    }

    #[test]
    fn windows_are_inclusive() {
        let w = Window {
            start: Some(10),
            end: Some(20),
        };
        assert!(w.contains(10) && w.contains(20) && !w.contains(9) && !w.contains(21));
        assert!(w.overlaps(0, 10) && w.overlaps(20, 30) && !w.overlaps(21, 30));
        assert!(Window::default().contains(-1));
    }

    fn segment(first: i64, records: u64, stored: u64) -> SegmentEntry {
        SegmentEntry {
            key: format!("k{first}"),
            first_offset: first,
            last_offset: first + records as i64 - 1,
            position_start: first,
            position_end: first + records as i64,
            records,
            min_timestamp: 0,
            max_timestamp: 0,
            uncompressed_bytes: records * 10,
            stored_bytes: stored,
            crc32c: 0,
        }
    }

    fn tally(records: u64, bytes: u64, min: i64, max: i64) -> PartitionTally {
        PartitionTally {
            records,
            bytes,
            min_ts: Some(min),
            max_ts: Some(max),
            ..Default::default()
        }
    }

    #[test]
    fn the_dry_run_plan_adds_up_topics_actions_and_groups() {
        let plans = vec![
            TopicPlan {
                source: "orders".into(),
                target: "orders-copy".into(),
                segments: BTreeMap::from([
                    (0, vec![segment(0, 5, 100), segment(5, 5, 110)]),
                    (1, vec![segment(0, 3, 50)]),
                ]),
                routing: Routing::Direct(BTreeMap::from([(0, 0), (1, 1)])),
                target_partitions: 2,
                configs: BTreeMap::from([("cleanup.policy".into(), "delete".into())]),
            },
            TopicPlan {
                source: "audit".into(),
                target: "audit".into(),
                segments: BTreeMap::from([(0, vec![segment(0, 4, 40)])]),
                routing: Routing::Direct(BTreeMap::from([(0, 0)])),
                target_partitions: 1,
                configs: BTreeMap::new(),
            },
        ];
        // The PITR window left out two records of orders-0.
        let tallies = BTreeMap::from([
            (("orders-copy".to_owned(), 0), tally(8, 80, 1_000, 9_000)),
            (("orders-copy".to_owned(), 1), tally(3, 30, 2_000, 3_000)),
            (("audit".to_owned(), 0), tally(4, 40, 500, 4_000)),
        ]);
        let to_create = vec![TopicToCreate {
            name: "orders-copy".into(),
            partitions: 2,
            replication_factor: None,
            configs: plans[0].configs.clone(),
        }];
        let to_purge = BTreeMap::from([(("audit".to_owned(), 0), 7)]);
        let groups = BTreeMap::from([
            (
                "billing".to_owned(),
                Ok(BTreeMap::from([(("orders-copy".to_owned(), 0), 6)])),
            ),
            (
                "gone".to_owned(),
                Err("group gone is not in the snapshot".to_owned()),
            ),
        ]);
        let notes = vec!["a note".to_owned()];
        let actions = DryRunActions {
            to_create: &to_create,
            to_purge: &to_purge,
            groups: &groups,
            notes: &notes,
        };
        let plan = dry_run_plan(&plans, &tallies, &actions);
        assert_eq!(
            (plan.segments, plan.stored_bytes, plan.records, plan.bytes),
            (Some(4), Some(300), Some(15), Some(150))
        );
        assert_eq!(plan.first_record_time.as_ref().unwrap().0.as_millisecond(), 500);
        assert_eq!(plan.last_record_time.as_ref().unwrap().0.as_millisecond(), 9_000);
        let topics = plan.topics.clone().unwrap();
        assert_eq!(
            topics[0],
            PlannedTopic {
                name: "orders".into(),
                target_name: "orders-copy".into(),
                target_partitions: Some(2),
                segments: Some(3),
                records: Some(11),
                bytes: Some(110),
            }
        );
        assert_eq!((topics[1].segments, topics[1].records), (Some(1), Some(4)));
        let create = plan.topics_to_create.clone().unwrap();
        assert_eq!(
            (create[0].name.as_str(), create[0].partitions),
            ("orders-copy", 2)
        );
        assert_eq!(create[0].configs.as_ref().unwrap()["cleanup.policy"], "delete");
        assert_eq!(plan.topics_to_purge.clone().unwrap(), vec!["audit".to_owned()]);
        let groups = plan.group_offsets.clone().unwrap();
        assert_eq!(
            groups[0].offsets.clone().unwrap(),
            vec![PlannedOffset {
                topic: "orders-copy".into(),
                partition: 0,
                offset: 6
            }]
        );
        assert_eq!(
            groups[1].error.as_deref(),
            Some("group gone is not in the snapshot")
        );
        let message = dry_run_message(&plan, "b1", "");
        assert_eq!(
            message,
            "dry run, nothing written: would restore 15 records (150 bytes) from 4 segments of backup set b1; topics orders -> orders-copy, audit; create [orders-copy (2 partitions)]; purge [audit]; group offsets [billing: orders-copy-0@6; gone: fails: group gone is not in the snapshot]; a note"
        );
    }
}
