//! KafkaBackup: copies topics into a backup set ([`crate::storage::backup`]).
//!
//! 1. **Plan**: select the topics (names and globs; internal topics only by exact name), read
//!    their log bounds, the set's manifest and the segments stored for it. Segments a crashed run
//!    stored after its last checkpoint are adopted when they continue a partition's chain of
//!    positions (or deleted, with `checkpoint.enabled: false`), so a resumed run has no gap and
//!    no duplicate. Each partition continues at the position the set reached (incremental), or
//!    at the log start; with `stopAtCurrentOffsets` it stops at the log end captured when the run
//!    started (a resumed run keeps the captured ends).
//! 2. **Consumer-group snapshot** (`consumerGroupSnapshot`): the committed offsets of every group
//!    on the selected partitions, read before any record, so every committed offset is covered
//!    by the data.
//! 3. **Copy**: one librdkafka consumer per topic, on the blocking pool, at most
//!    `rateLimiting.maxConcurrentPartitions` partitions assigned at a time; records are encoded
//!    straight from the fetched messages into the partition's open segment. A segment is sealed
//!    at `segmentMaxBytes` or `segmentMaxIntervalMs`, compressed on the blocking pool and stored
//!    create-only. Memory of open and in-flight segments is bounded by `memoryBudgetBytes`: an
//!    open segment counts its buffer's capacity, a sealed one its size until compressed, a
//!    compressed one its compressed size until stored (compression contexts are reused); at
//!    the limit, fetching pauses until a segment is stored. A budget smaller than the open
//!    segments' buffers (partitions x segment size) cannot be kept: fetching then goes on with
//!    one segment in flight at a time.
//! 4. **Checkpoints** every `checkpoint.intervalSeconds`: the manifest, state InProgress, listing
//!    the segments stored so far. Every second a progress report carries the status so far
//!    (the set, every counter, the last checkpoint; a continuous run's `lastRun`). Bytes are
//!    counted as [`segment::record_bytes`] counts them, as the restore does. At the end the manifest is written with state Complete (a
//!    cancelled one-shot run stays InProgress and resumable).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Headers, Timestamp},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Context, blocking,
    execution::{self, Retryable},
    shard::{self, How, ShardIndex, ShardRunner},
    time,
};
use crate::{
    api::v1beta1::{
        BackupProgress, BackupRunSummary, Compression, KafkaBackup, KafkaBackupSpec, KafkaBackupStatus,
        RunOutcome, RunPhase,
    },
    kafka::{
        self, ClusterAccess, KafkaError,
        groups::{Cluster, LogBounds, Partition, REQUEST_TIMEOUT},
        headers,
        topics::{self, MissingTopic},
    },
    metrics::RetryCause,
    storage::{
        Location, ObjectLocation, StorageError,
        backup::{
            self, BackupFormatError, CurrentRun, Gap, GroupSnapshot, GroupSnapshotEntry, Manifest,
            PartitionEntry, RunEntry, SegmentEntry, SetState, ShardPhase, ShardPlan, ShardResult,
            segment::{self, Codec, Compressor, HeaderRef, SegmentBuilder, SegmentHeader, TimestampType},
        },
        backup_set,
        snapshot::SnapshotSource,
    },
};

pub mod retention;

/// Segments compressed and uploaded at the same time.
const PARALLEL_UPLOADS: usize = 4;

/// Time between two progress reports of a run.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Time between two metadata requests of a consumer whose cluster is away.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Why a backup run failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Talking to Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored set cannot be read.
    #[error(transparent)]
    Format(#[from] BackupFormatError),
    /// A named topic does not exist.
    #[error(transparent)]
    Topic(#[from] MissingTopic),
    /// The spec asks for something this run cannot do.
    #[error("{field}: {message}")]
    Refused {
        /// Field path.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A stored segment is unreadable.
    #[error("segment {uri}: {message}")]
    Segment {
        /// Its URI.
        uri: String,
        /// Why.
        message: String,
    },
    /// The topic no longer matches the set.
    #[error(
        "partition {topic}-{partition}: the backup set continues at offset {next} but the log ends at {end}: the topic was deleted and recreated; back it up under a new backupId"
    )]
    Recreated {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Where the set continues.
        next: i64,
        /// Log end.
        end: i64,
    },
    /// A worker failed.
    #[error("{0}")]
    Worker(String),
    /// A shard of a run split over worker processes did not complete (its worker already
    /// retried it).
    #[error("{shard}: {message}")]
    Shard {
        /// The shard.
        shard: ShardIndex,
        /// What happened to it.
        message: String,
    },
}

impl Retryable for BackupError {
    fn is_retryable(&self) -> bool {
        match self {
            BackupError::Kafka(e) => e.is_retryable(),
            BackupError::Storage(e) => e.is_retryable(),
            BackupError::Format(e) => e.is_retryable(),
            // A task that stopped: its cause is not known to be lasting.
            BackupError::Worker(_) => true,
            BackupError::Topic(_)
            | BackupError::Refused { .. }
            | BackupError::Segment { .. }
            | BackupError::Shard { .. }
            | BackupError::Recreated { .. } => false,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Records stored.
    pub records: u64,
    /// Their [`segment::record_bytes`].
    pub bytes: u64,
    /// Segments stored.
    pub segments: u64,
    /// Partitions selected.
    pub partitions: usize,
    /// Partitions finished: caught up or at their stop offset (a continuous run: that reached
    /// the log end at least once).
    pub partitions_done: usize,
    /// Stopped by cancellation (after a final checkpoint).
    pub cancelled: bool,
    /// When the last checkpoint was written.
    pub last_checkpoint: Option<DateTime<Utc>>,
    /// Wall time.
    pub elapsed: Duration,
}

/// The backup set id of a KafkaBackup: `spec.backupId` or the resource name.
pub fn backup_id(backup: &KafkaBackup) -> String {
    backup
        .spec
        .backup_id
        .clone()
        .or_else(|| backup.metadata.name.clone())
        .unwrap_or_else(|| "backup".into())
}

/// The status fields a run writes when it starts: the set it writes to, and the counters of
/// `progress` at zero (they describe the run in progress from now on).
pub fn start_status(backup: &KafkaBackup) -> serde_json::Value {
    serde_json::json!({
        "backupId": backup_id(backup),
        "progress": {"records": 0, "bytes": 0, "segments": 0, "recordsPerSecond": 0.0,
            "bytesPerSecond": 0.0, "partitionsDone": 0, "partitionsTotal": null},
    })
}

/// How a backup set names the KafkaBackup writing it (`owner` in the manifest and its runs).
pub fn owner(ctx: &Context) -> SnapshotSource {
    SnapshotSource {
        kind: "KafkaBackup".into(),
        namespace: ctx.resource.namespace.clone(),
        name: ctx.resource.name.clone(),
        uid: ctx.resource.uid.clone(),
    }
}

/// The next tick of a 6/7-field cron schedule (UTC) after `after`.
pub fn next_tick(schedule: &str, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, String> {
    let parsed: cron::Schedule = schedule
        .parse()
        .map_err(|e| format!("spec.schedule: {schedule:?} is not a cron expression: {e}"))?;
    Ok(parsed.after(&after).next())
}

/// Runs a KafkaBackup once (with its retries and deadline) and returns its status.
pub async fn execute(backup: &KafkaBackup, ctx: &Context) -> KafkaBackupStatus {
    execute_as(backup, ctx, How::Whole).await
}

/// Runs shard `shard` of a run a coordinator split ([`execute_split`]): copies the shard's
/// partitions into the set and stores the shard's result; never writes the manifest.
pub async fn execute_shard(backup: &KafkaBackup, ctx: &Context, shard: ShardIndex) -> KafkaBackupStatus {
    execute_as(backup, ctx, How::Shard(shard)).await
}

/// Runs a KafkaBackup once split over `workers` shards: plans the shards in the manifest, runs
/// every shard with `runner` at the same time and merges their results into the manifest,
/// Complete only when every shard completed. An attempt that fails is retried as a whole: the
/// shards continue where they stopped.
pub async fn execute_split(
    backup: &KafkaBackup,
    ctx: &Context,
    workers: usize,
    runner: &ShardRunner,
) -> KafkaBackupStatus {
    execute_as(
        backup,
        ctx,
        How::Split {
            workers: workers.max(1),
            runner,
        },
    )
    .await
}

async fn execute_as(backup: &KafkaBackup, ctx: &Context, how: How<'_>) -> KafkaBackupStatus {
    let spec = &backup.spec;
    let id = backup_id(backup);
    let started = Utc::now();
    let mut status = KafkaBackupStatus {
        backup_id: Some(id.clone()),
        observed_generation: backup.metadata.generation,
        ..Default::default()
    };
    if spec.suspend {
        status.phase = Some(RunPhase::Suspended);
        status.message = Some("suspend is set: no run started".into());
        return status;
    }
    let result = execution::attempts(spec.execution.as_ref(), ctx, |attempt| {
        let id = &id;
        async move {
            match how {
                How::Whole => run(backup, id, &attempt, started, Role::Whole).await,
                How::Shard(shard) => run(backup, id, &attempt, started, Role::Shard(shard)).await,
                How::Split { workers, runner } => split(backup, id, &attempt, started, workers, runner).await,
            }
        }
    })
    .await;
    let finished = Utc::now();
    let mut last_run = BackupRunSummary {
        start_time: Some(time(started)),
        completion_time: Some(time(finished)),
        ..Default::default()
    };
    match result {
        Ok(report) => {
            let secs = report.elapsed.as_secs_f64().max(1e-3);
            status.progress = Some(BackupProgress {
                records: Some(report.records as i64),
                bytes: Some(report.bytes as i64),
                segments: Some(report.segments as i64),
                records_per_second: Some(report.records as f64 / secs),
                bytes_per_second: Some(report.bytes as f64 / secs),
                partitions_done: Some(report.partitions_done as i32),
                partitions_total: Some(report.partitions as i32),
            });
            last_run.records = Some(report.records as i64);
            last_run.bytes = Some(report.bytes as i64);
            last_run.segments = Some(report.segments as i64);
            status.last_checkpoint_time = report.last_checkpoint.map(time);
            if report.cancelled && !spec.continuous {
                status.phase = Some(RunPhase::Failed);
                status.resumable = Some(true);
                last_run.outcome = Some(RunOutcome::Cancelled);
                let message = format!(
                    "cancelled after a final checkpoint: {} records in {} segments stored; the next run with backupId {id} resumes there",
                    report.records, report.segments
                );
                last_run.message = Some(message.clone());
                status.message = Some(message);
            } else {
                status.phase = Some(RunPhase::Completed);
                status.resumable = Some(false);
                status.last_backup_time = Some(time(finished));
                last_run.outcome = Some(if report.cancelled {
                    RunOutcome::Cancelled
                } else {
                    RunOutcome::Succeeded
                });
                status.message = Some(format!(
                    "{} records ({} bytes) from {} partitions stored in {} segments of backup set {id}{}{}",
                    report.records,
                    report.bytes,
                    report.partitions,
                    report.segments,
                    match how {
                        How::Whole => String::new(),
                        How::Shard(shard) =>
                            format!(" by {shard}; the coordinator merges the shards into the manifest"),
                        How::Split { workers, .. } => format!(" by {workers} workers"),
                    },
                    if report.cancelled {
                        "; continuous backup stopped after a final checkpoint"
                    } else {
                        ""
                    }
                ));
            }
        }
        Err(failure) => {
            let message = if failure.deadline_exceeded() && spec.checkpoint.enabled {
                format!("{failure}; it stopped after a final checkpoint and resumes on the next run")
            } else {
                failure.to_string()
            };
            status.phase = Some(RunPhase::Failed);
            status.resumable = Some(spec.checkpoint.enabled);
            status.message = Some(message.clone());
            last_run.outcome = Some(RunOutcome::Failed);
            last_run.message = Some(message);
        }
    }
    status.last_run = Some(last_run);
    // Retention follows a successful run only: after a failure the set may be incomplete and
    // the sets it would replace are the last good ones.
    if let Some(policy) = &spec.retention
        && status.phase == Some(RunPhase::Completed)
        && !matches!(how, How::Shard(_))
    {
        status.retention = Some(retention::apply(&spec.storage, &id, policy, ctx, Utc::now()).await);
    }
    if let Some(schedule) = &spec.schedule
        && let Ok(Some(next)) = next_tick(schedule, finished)
    {
        status.next_schedule_time = Some(time(next));
    }
    status
}

/// The codec of a spec.
pub fn codec(spec: &KafkaBackupSpec) -> Codec {
    match spec.compression {
        Compression::None => Codec::None,
        Compression::Lz4 => Codec::Lz4,
        Compression::Zstd => Codec::Zstd(spec.compression_level.unwrap_or(3)),
    }
}

/// The memory budget of a spec: `memoryBudgetBytes` or 2 x segment x concurrent partitions.
pub fn memory_budget(spec: &KafkaBackupSpec) -> u64 {
    spec.memory_budget_bytes
        .map(|b| b.max(1) as u64)
        .unwrap_or_else(|| {
            2 * spec.segment_max_bytes.max(1) as u64
                * spec.rate_limiting.max_concurrent_partitions.max(1) as u64
        })
}

/// Where one partition starts and stops in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionPlan {
    /// Partition.
    pub partition: i32,
    /// Position to fetch from.
    pub start: i64,
    /// Stop before this offset (stopAtCurrentOffsets).
    pub stop: Option<i64>,
    /// Nothing to fetch in this run.
    pub done: bool,
    /// Offsets lost before `start` because the log start had moved.
    pub gap: Option<Gap>,
}

/// Plans one partition from the set's state and the log bounds. Pure.
pub fn plan_partition(
    topic: &str,
    partition: i32,
    stored: Option<&PartitionEntry>,
    bounds: LogBounds,
    stop: Option<i64>,
    continuous: bool,
) -> Result<PartitionPlan, BackupError> {
    let mut start = stored.map_or(bounds.start, |e| e.next_offset);
    let mut gap = None;
    if start < bounds.start {
        gap = Some(Gap {
            from: start,
            to: bounds.start,
            reason:
                "the log start moved past these offsets (retention or deletion) before they were backed up"
                    .into(),
        });
        start = bounds.start;
    }
    if start > bounds.end {
        return Err(BackupError::Recreated {
            topic: topic.into(),
            partition,
            next: start,
            end: bounds.end,
        });
    }
    let done = match stop {
        Some(stop) => start >= stop,
        None => !continuous && start >= bounds.end,
    };
    Ok(PartitionPlan {
        partition,
        start,
        stop,
        done,
        gap,
    })
}

/// Orders the segments a crashed run left behind after the manifest's chain: those continuing
/// the chain (each starting where the previous ended) are adopted, the rest rejected. Segments
/// ending before the chain ends (left by a retention pass interrupted after it rewrote the
/// manifest) are rejected without breaking the chain. Pure.
pub fn chain_orphans(
    chain_end: Option<i64>,
    mut orphans: Vec<SegmentHeader>,
) -> (Vec<SegmentHeader>, Vec<SegmentHeader>) {
    orphans.sort_by_key(|h| h.first_offset);
    let mut adopted = Vec::new();
    let mut rejected = Vec::new();
    let mut broken = false;
    let mut end = chain_end;
    for h in orphans {
        if chain_end.is_some_and(|e| h.position_end <= e) {
            rejected.push(h);
            continue;
        }
        let continues = match end {
            Some(e) => h.position_start == e,
            None => true,
        };
        if continues && !broken {
            end = Some(h.position_end);
            adopted.push(h);
        } else {
            broken = true;
            rejected.push(h);
        }
    }
    (adopted, rejected)
}

/// A run split over `workers` shards: plans them, runs each with `runner`, merges the results.
async fn split(
    backup: &KafkaBackup,
    id: &str,
    ctx: &Context,
    started: DateTime<Utc>,
    workers: usize,
    runner: &ShardRunner,
) -> Result<RunReport, BackupError> {
    let clock = Instant::now();
    let planned = run(backup, id, ctx, started, Role::Plan(workers)).await?;
    let exits = futures::future::join_all((0..workers).map(|index| {
        runner(
            ShardIndex {
                index,
                count: workers,
            },
            ctx.clone(),
        )
    }))
    .await;
    let location = object_location(backup, ctx)?;
    let manifest = backup::read_manifest(&location, id).await?;
    let plan = manifest
        .as_ref()
        .and_then(|m| m.current_run.as_ref())
        .and_then(|r| r.shards.clone());
    let (Some(manifest), Some(plan)) = (manifest, plan) else {
        return Err(BackupError::Refused {
            field: "spec.backupId",
            message: format!(
                "the manifest of backup set {id} lost the run's shards while they ran: another run wrote the set at the same time; run one backup per backupId"
            ),
        });
    };
    let mut results = Vec::with_capacity(workers);
    for index in 0..workers {
        results.push(backup::read_shard_result(&location, id, &plan.id, index).await?);
    }
    let merged = merge_shards(&manifest, &plan, &results, started, Utc::now()).map_err(|e| match e {
        BackupError::Shard { shard, message } => {
            let exit = exits
                .get(shard.index)
                .and_then(|r| r.as_ref().err())
                .map(|m| format!("; its worker: {m}"))
                .unwrap_or_default();
            BackupError::Shard {
                shard,
                message: format!("{message}{exit}"),
            }
        }
        other => other,
    })?;
    write_manifest(&location, &merged.manifest).await?;
    if merged.complete {
        // The manifest has what they said: the results are spent.
        let dir = backup::shard_dir(id, &plan.id);
        for object in location.list(&dir).await.unwrap_or_default() {
            let _ = location.delete(&format!("{dir}/{}", object.key)).await;
        }
    }
    Ok(RunReport {
        records: merged.records,
        bytes: merged.bytes,
        segments: merged.segments,
        partitions: planned.partitions,
        partitions_done: merged.partitions_done,
        cancelled: !merged.complete,
        last_checkpoint: Some(merged.manifest.updated_at),
        elapsed: clock.elapsed(),
    })
}

/// The manifest with the results of every shard of `plan` merged into it.
#[derive(Clone, Debug)]
pub struct MergedShards {
    /// The manifest: Complete when every shard completed, else (a shard was cancelled) still
    /// InProgress, with what the shards stored.
    pub manifest: Manifest,
    /// Every shard completed.
    pub complete: bool,
    /// Records the shards stored in this run.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Segments the shards stored in this run.
    pub segments: u64,
    /// Partitions that reached their end.
    pub partitions_done: usize,
}

/// Merges the results of the shards of `plan` (`results[i]`: shard i's, `None` when it stored
/// none) into the manifest `base`. A shard without a result, one still Running (its worker
/// stopped without a word) or one that failed makes the merge fail naming that shard; then
/// nothing is Complete. Pure.
pub fn merge_shards(
    base: &Manifest,
    plan: &ShardPlan,
    results: &[Option<ShardResult>],
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
) -> Result<MergedShards, BackupError> {
    let count = plan.shards.len();
    let mut merged = MergedShards {
        manifest: base.clone(),
        complete: true,
        records: 0,
        bytes: 0,
        segments: 0,
        partitions_done: 0,
    };
    for index in 0..count {
        let shard = ShardIndex { index, count };
        let failed = |message: String| BackupError::Shard { shard, message };
        let Some(result) = results
            .get(index)
            .and_then(Option::as_ref)
            .filter(|r| r.plan == plan.id && r.index == index)
        else {
            return Err(failed(
                "stored no result: its worker did not start or stopped before its first checkpoint".into(),
            ));
        };
        match result.phase {
            ShardPhase::Completed => {}
            ShardPhase::Cancelled => merged.complete = false,
            ShardPhase::Running => {
                return Err(failed(format!(
                    "did not finish: its last result ({}) says Running, so its worker stopped without reporting (killed?); running the backup again continues every partition where it stopped",
                    result.updated_at.to_rfc3339()
                )));
            }
            ShardPhase::Failed => {
                return Err(failed(format!(
                    "failed: {}",
                    result.error.as_deref().unwrap_or("no error recorded")
                )));
            }
        }
        fold_partitions(&mut merged.manifest, result);
        merged.records += result.records;
        merged.bytes += result.bytes;
        merged.segments += result.segments;
        merged.partitions_done += result.partitions_done;
    }
    let manifest = &mut merged.manifest;
    manifest.updated_at = finished;
    if merged.complete {
        manifest.state = SetState::Complete;
        manifest.current_run = None;
        manifest.runs.push(RunEntry {
            started_at: started,
            finished_at: finished,
            records: merged.records,
            bytes: merged.bytes,
            segments: merged.segments,
            outcome: "Succeeded".into(),
            owner: manifest.owner.clone(),
        });
    }
    Ok(merged)
}

/// The object location of the backup's storage.
fn object_location(backup: &KafkaBackup, ctx: &Context) -> Result<ObjectLocation, BackupError> {
    let spec = &backup.spec;
    match super::open_storage(&spec.storage, spec.execution.as_ref(), ctx)? {
        Location::Object(o) => Ok(o),
        Location::ConfigMap(_) => Err(BackupError::Refused {
            field: "spec.storage.type",
            message: "ConfigMap storage cannot hold backups: use PVC, S3, Azure or GCS".into(),
        }),
    }
}

/// What a run of the engine does with the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Every partition, in this process: checkpoints and the final state go to the manifest.
    Whole,
    /// The coordinator of a run split over this many shards: plans the run in the manifest
    /// (stop offsets, consumer-group snapshot, each shard's partitions) and copies nothing.
    Plan(usize),
    /// One shard of a planned run: copies its partitions; its checkpoints and its result go to
    /// its shard result, never to the manifest.
    Shard(ShardIndex),
}

async fn run(
    backup: &KafkaBackup,
    id: &str,
    ctx: &Context,
    started: DateTime<Utc>,
    role: Role,
) -> Result<RunReport, BackupError> {
    let spec = &backup.spec;
    let cancel = ctx.cancel.clone();
    let clock = Instant::now();
    if spec.continuous && matches!(role, Role::Plan(_) | Role::Shard(_)) {
        return Err(BackupError::Refused {
            field: "spec.continuous",
            message: "a continuous backup follows its partitions in one process: split only one-shot backups over workers".into(),
        });
    }
    let location = object_location(backup, ctx)?;
    // A set of the prior art is read, never continued: that would mix two formats in one set.
    if let Some(message) = backup_set::foreign_set(&location, id).await? {
        return Err(BackupError::Refused {
            field: "spec.backupId",
            message,
        });
    }
    let access = ClusterAccess::read(&spec.kafka_cluster, &ctx.secrets)?;
    let config = access.rdkafka_config();
    let cluster = {
        let config = config.clone();
        Arc::new(blocking(move || Cluster::new(&config)).await?)
    };
    let all_topics = {
        let cluster = cluster.clone();
        blocking(move || cluster.topics()).await?
    };
    let selected = topics::select_topics(
        &spec.topics,
        spec.exclude_topics.as_deref().unwrap_or_default(),
        all_topics.keys(),
        "spec.topics",
        " in the cluster",
    )?;
    // The set: manifest, the results of the shards of an earlier split run, and segments
    // stored after the last checkpoint.
    let mut manifest = backup::read_manifest(&location, id)
        .await?
        .unwrap_or_else(|| Manifest::new(id, started));
    let previous_plan = match (&manifest.state, &manifest.current_run) {
        (
            SetState::InProgress,
            Some(CurrentRun {
                shards: Some(plan), ..
            }),
        ) => Some(plan.clone()),
        _ => None,
    };
    let mut shard_base = ShardCounts::default();
    let partitions: BTreeSet<Partition> = match role {
        Role::Shard(shard) => {
            let plan = planned_shards(previous_plan.as_ref(), id, shard)?;
            let earlier =
                fold_shard_results(&location, &mut manifest, plan, shard.index..shard.index + 1).await?;
            if let Some(done) = earlier.iter().find(|r| r.phase == ShardPhase::Completed) {
                // Final for this plan: a shard run again after it completed has nothing to do.
                return Ok(RunReport {
                    records: done.records,
                    bytes: done.bytes,
                    segments: done.segments,
                    partitions: plan.partitions(shard.index).len(),
                    partitions_done: done.partitions_done,
                    elapsed: clock.elapsed(),
                    ..Default::default()
                });
            }
            if let Some(r) = earlier.first() {
                shard_base = ShardCounts {
                    records: r.records,
                    bytes: r.bytes,
                    segments: r.segments,
                };
            }
            plan.partitions(shard.index).into_iter().collect()
        }
        Role::Whole | Role::Plan(_) => {
            if let Some(plan) = &previous_plan {
                fold_shard_results(&location, &mut manifest, plan, 0..plan.shards.len()).await?;
            }
            selected
                .iter()
                .flat_map(|t| (0..all_topics.get(t).copied().unwrap_or(0)).map(move |p| (t.clone(), p)))
                .collect()
        }
    };
    let max_concurrent = spec.rate_limiting.max_concurrent_partitions.max(1) as usize;
    if spec.continuous && partitions.len() > max_concurrent {
        return Err(BackupError::Refused {
            field: "spec.rateLimiting.maxConcurrentPartitions",
            message: format!(
                "a continuous backup follows every partition all the time: the {} selected partitions need maxConcurrentPartitions >= {} (it is {max_concurrent})",
                partitions.len(),
                partitions.len()
            ),
        });
    }
    let bounds = {
        let cluster = cluster.clone();
        let partitions = partitions.clone();
        blocking(move || cluster.log_bounds(&partitions)).await?
    };
    let kafka_cluster_id = {
        let config = config.clone();
        blocking(move || {
            let consumer: BaseConsumer = config
                .create()
                .map_err(KafkaError::client("creating the Kafka client"))?;
            Ok(consumer.client().fetch_cluster_id(REQUEST_TIMEOUT))
        })
        .await?
    };
    let configs = topics::topic_configs(&config, &selected)
        .await
        .unwrap_or_default();

    // Segments of other shards are theirs to adopt: they may be uploading right now.
    let own = matches!(role, Role::Shard(_)).then_some(&partitions);
    adopt_orphans(&location, &mut manifest, spec.checkpoint.enabled, own).await?;
    let resumed_stops = match (&manifest.state, &manifest.current_run) {
        (SetState::InProgress, Some(run)) => run.stop_offsets.clone(),
        _ => None,
    };
    let stop_offsets: Option<BTreeMap<String, BTreeMap<i32, i64>>> = if spec.stops_at_current_offsets() {
        Some(resumed_stops.unwrap_or_else(|| {
            let mut stops: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
            for ((t, p), b) in &bounds {
                stops.entry(t.clone()).or_default().insert(*p, b.end);
            }
            stops
        }))
    } else {
        None
    };
    manifest.source_cluster_id = spec.source_cluster_id.clone().or(manifest.source_cluster_id);
    manifest.kafka_cluster_id = kafka_cluster_id.or(manifest.kafka_cluster_id);
    manifest.bootstrap_servers = spec.kafka_cluster.bootstrap_servers.clone();
    manifest.owner = Some(owner(ctx));
    manifest.compression = codec(spec).name().into();
    manifest.include_offset_headers = spec.include_offset_headers;
    manifest.state = SetState::InProgress;
    if !matches!(role, Role::Shard(_)) {
        manifest.current_run = Some(CurrentRun {
            started_at: started,
            stop_offsets: stop_offsets.clone(),
            shards: None,
        });
    }

    let mut plans: BTreeMap<String, Vec<PartitionPlan>> = BTreeMap::new();
    for (topic, partition) in &partitions {
        let entry = manifest.topics.entry(topic.clone()).or_default();
        entry.partition_count = all_topics.get(topic).copied().unwrap_or(0);
        if let Some(c) = configs.get(topic) {
            entry.configs = c.clone();
        }
        let b = bounds.get(&(topic.clone(), *partition)).copied().ok_or_else(|| {
            BackupError::Kafka(KafkaError::Broker(format!(
                "no log offsets for {topic}-{partition}"
            )))
        })?;
        let stop = stop_offsets.as_ref().map(|s| {
            s.get(topic)
                .and_then(|m| m.get(partition))
                .copied()
                .unwrap_or(b.end)
        });
        let plan = plan_partition(
            topic,
            *partition,
            entry.partitions.get(partition),
            b,
            stop,
            spec.continuous,
        )?;
        let pentry = entry
            .partitions
            .entry(*partition)
            .or_insert_with(|| PartitionEntry {
                next_offset: plan.start,
                ..Default::default()
            });
        if let Some(gap) = &plan.gap {
            pentry.gaps.push(gap.clone());
            pentry.next_offset = plan.start;
        }
        plans.entry(topic.clone()).or_default().push(plan);
    }

    // Consumer-group snapshot, before any record is read.
    if spec.consumer_group_snapshot && !matches!(role, Role::Shard(_)) {
        let snapshot = read_group_offsets(&access, &partitions).await?;
        let key = backup::group_snapshot_key(id);
        let body = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
        location.put(&key, Bytes::from(body)).await?;
        manifest.group_snapshot = Some(GroupSnapshotEntry {
            key,
            timestamp: snapshot.timestamp.unwrap_or(started),
            groups: snapshot.groups.keys().cloned().collect(),
            partitions: snapshot
                .groups
                .values()
                .flat_map(|t| t.values())
                .map(|p| p.len() as u64)
                .sum(),
        });
    }
    let mut last_checkpoint = None;
    if let Role::Plan(workers) = role {
        let weights: Vec<(Partition, u64)> = plans
            .iter()
            .flat_map(|(topic, ps)| {
                ps.iter().map(|p| {
                    let end = p.stop.unwrap_or_else(|| {
                        bounds
                            .get(&(topic.clone(), p.partition))
                            .map_or(p.start, |b| b.end)
                    });
                    let left = if p.done {
                        0
                    } else {
                        end.saturating_sub(p.start).max(0) as u64
                    };
                    ((topic.clone(), p.partition), left)
                })
            })
            .collect();
        let plan = shard::plan(previous_plan, &weights, workers, Utc::now());
        if let Some(run) = &mut manifest.current_run {
            run.shards = Some(plan);
        }
        manifest.updated_at = Utc::now();
        write_manifest(&location, &manifest).await?;
        return Ok(RunReport {
            partitions: partitions.len(),
            last_checkpoint: Some(manifest.updated_at),
            elapsed: clock.elapsed(),
            ..Default::default()
        });
    }
    let shard = match role {
        Role::Shard(index) => previous_plan.map(|plan| ShardCheckpoint {
            plan,
            index,
            partitions: partitions.clone(),
            base: shard_base,
        }),
        Role::Whole | Role::Plan(_) => None,
    };
    if spec.checkpoint.enabled {
        manifest.updated_at = Utc::now();
        match &shard {
            Some(shard) => {
                let counts = ShardCounts::default();
                write_shard(
                    &location,
                    id,
                    &shard.result(&manifest, ShardPhase::Running, None, counts, 0),
                )
                .await?;
            }
            None => write_manifest(&location, &manifest).await?,
        }
        last_checkpoint = Some(manifest.updated_at);
    }

    // Copy.
    let consumers = plans.len().min(max_concurrent);
    let fetch = fetch_share(
        memory_budget(spec),
        spec.segment_max_bytes.max(1) as u64,
        consumers,
    );
    let budget = fetch.segments;
    let (tx, rx) = mpsc::channel::<Sealing>(PARALLEL_UPLOADS);
    let shared = Arc::new(Shared {
        codec: codec(spec),
        segment_max: spec.segment_max_bytes.max(1) as usize,
        segment_interval: Duration::from_millis(spec.segment_max_interval_ms.max(1) as u64),
        poll_interval: Duration::from_millis(spec.poll_interval_ms.max(1) as u64),
        continuous: spec.continuous,
        include_headers: spec.include_offset_headers,
        source_cluster: spec.source_cluster_id.clone(),
        budget,
        in_memory: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        memory_lock: Mutex::new(()),
        memory_freed: Condvar::new(),
        slots: Mutex::new(max_concurrent),
        slot_freed: Condvar::new(),
        limiter: RateLimiter::new(
            spec.rate_limiting.records_per_sec,
            spec.rate_limiting.bytes_per_sec,
        ),
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        segments: AtomicU64::new(0),
        partitions_done: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        cancel: cancel.clone(),
        retry_timeout: execution::Policy::of(spec.execution.as_ref()).retry_timeout,
        pool: Mutex::new(Vec::new()),
        compressors: Mutex::new(Vec::new()),
    });
    let completed: Arc<Completed> = Arc::default();
    let uploader = tokio::spawn(upload_all(
        rx,
        shared.clone(),
        location.clone(),
        id.to_owned(),
        completed.clone(),
    ));
    let shared_for_workers = shared.clone();
    let consumer_config = consumer_config(&config, spec, id, fetch);
    let total_partitions = partitions.len();
    let work: Vec<(String, Vec<PartitionPlan>)> = plans.into_iter().collect();
    let worker_tx = tx;
    let workers = stream::iter(work)
        .map(move |(topic, plans)| {
            let shared = shared_for_workers.clone();
            let tx = worker_tx.clone();
            let config = consumer_config.clone();
            async move {
                let name = topic.clone();
                let result =
                    tokio::task::spawn_blocking(move || copy_topic(&config, &name, plans, &shared, &tx))
                        .await
                        .map_err(|e| {
                            BackupError::Worker(format!("backup worker of topic {topic} failed: {e}"))
                        })
                        .and_then(|r| r);
                (topic, result)
            }
        })
        .buffer_unordered(max_concurrent)
        .collect::<Vec<_>>();
    // The uploader ends when every sender is gone: the workers' stream owns the last one.
    let mut workers = Box::pin(workers);
    let checkpoint_every = Duration::from_secs(spec.checkpoint.interval_seconds.max(1) as u64);
    let mut checkpoint_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + checkpoint_every, checkpoint_every);
    // The first report goes out at once: the status names the set from the start.
    let mut progress_tick = tokio::time::interval(PROGRESS_EVERY);
    let mut previous = (Instant::now(), 0u64, 0u64);
    let outcomes = loop {
        tokio::select! {
            outcomes = workers.as_mut() => break outcomes,
            _ = checkpoint_tick.tick(), if spec.checkpoint.enabled => {
                let snapshot = merged(&manifest, &completed, None);
                let written = match &shard {
                    Some(shard) => {
                        let done = shared.partitions_done.load(Ordering::Relaxed) as usize;
                        let result = shard.result(&snapshot, ShardPhase::Running, None, shared.counts(), done);
                        write_shard(&location, id, &result).await
                    }
                    None => write_manifest(&location, &snapshot).await,
                };
                if let Err(e) = written {
                    tracing::warn!("backup {id}: checkpoint failed: {e}");
                } else {
                    last_checkpoint = Some(snapshot.updated_at);
                }
            }
            _ = progress_tick.tick() => {
                let report = RunningReport {
                    id,
                    started,
                    continuous: spec.continuous,
                    last_checkpoint,
                    records: shared.records.load(Ordering::Relaxed),
                    bytes: shared.bytes.load(Ordering::Relaxed),
                    segments: shared.segments.load(Ordering::Relaxed),
                    since: previous,
                    partitions_done: shared.partitions_done.load(Ordering::Relaxed) as usize,
                    partitions_total: total_partitions,
                };
                previous = (Instant::now(), report.records, report.bytes);
                let status = running_status(&report);
                let rate = status.pointer("/progress/bytesPerSecond").and_then(serde_json::Value::as_f64);
                ctx.report_status(
                    report.records,
                    None,
                    format!(
                        "records backed up ({:.1} MB/s, {} segments, {}/{} partitions done)",
                        rate.unwrap_or_default() / 1e6,
                        report.segments,
                        report.partitions_done,
                        total_partitions
                    ),
                    status,
                );
            }
        }
    };
    drop(workers);
    let upload_result = uploader
        .await
        .map_err(|e| BackupError::Worker(format!("segment uploader failed: {e}")))?;
    let mut finals: BTreeMap<Partition, i64> = BTreeMap::new();
    let mut failure: Option<BackupError> = upload_result.err();
    for (topic, result) in outcomes {
        match result {
            Ok(done) => {
                for (p, position) in done {
                    finals.insert((topic.clone(), p), position);
                }
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    let cancelled = cancel.is_cancelled();
    let mut result_manifest = merged(&manifest, &completed, (failure.is_none()).then_some(&finals));
    let partitions_done = shared.partitions_done.load(Ordering::Relaxed) as usize;
    if let Some(e) = failure {
        match &shard {
            // The coordinator names the shard and this error when it merges.
            Some(shard) => {
                let result = shard.result(
                    &result_manifest,
                    ShardPhase::Failed,
                    Some(e.to_string()),
                    shared.counts(),
                    partitions_done,
                );
                let _ = write_shard(&location, id, &result).await;
            }
            None if spec.checkpoint.enabled => {
                let _ = write_manifest(&location, &result_manifest).await;
            }
            None => {}
        }
        return Err(e);
    }
    if let Some(shard) = &shard {
        let phase = if cancelled {
            ShardPhase::Cancelled
        } else {
            ShardPhase::Completed
        };
        let result = shard.result(&result_manifest, phase, None, shared.counts(), partitions_done);
        if cancelled {
            write_shard(&location, id, &result).await?;
        } else {
            complete_shard(&location, id, &result).await?;
        }
        ctx.report(result.records, Some(result.records), "records backed up");
        return Ok(RunReport {
            records: result.records,
            bytes: result.bytes,
            segments: result.segments,
            partitions: total_partitions,
            partitions_done,
            cancelled,
            last_checkpoint: Some(result.updated_at),
            elapsed: clock.elapsed(),
        });
    }
    let report = RunReport {
        records: shared.records.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        segments: shared.segments.load(Ordering::Relaxed),
        partitions: total_partitions,
        partitions_done,
        cancelled,
        last_checkpoint,
        elapsed: clock.elapsed(),
    };
    if !cancelled || spec.continuous {
        result_manifest.state = SetState::Complete;
        result_manifest.current_run = None;
        result_manifest.runs.push(RunEntry {
            started_at: started,
            finished_at: Utc::now(),
            records: report.records,
            bytes: report.bytes,
            segments: report.segments,
            outcome: if cancelled {
                "Cancelled".into()
            } else {
                "Succeeded".into()
            },
            owner: result_manifest.owner.clone(),
        });
    }
    write_manifest(&location, &result_manifest).await?;
    ctx.report(report.records, Some(report.records), "records backed up");
    Ok(RunReport {
        last_checkpoint: Some(result_manifest.updated_at),
        ..report
    })
}

/// Records, bytes and segments a run (or a shard over its attempts) stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ShardCounts {
    records: u64,
    bytes: u64,
    segments: u64,
}

/// Where the checkpoints of a shard go, and what it stored before this attempt.
struct ShardCheckpoint {
    plan: ShardPlan,
    index: ShardIndex,
    partitions: BTreeSet<Partition>,
    base: ShardCounts,
}

impl ShardCheckpoint {
    /// The shard's result: its partitions as `manifest` has them, and the counts of this
    /// attempt added to those of the earlier ones.
    fn result(
        &self,
        manifest: &Manifest,
        phase: ShardPhase,
        error: Option<String>,
        counts: ShardCounts,
        partitions_done: usize,
    ) -> ShardResult {
        let mut topics: BTreeMap<String, BTreeMap<i32, PartitionEntry>> = BTreeMap::new();
        for (topic, partition) in &self.partitions {
            if let Some(entry) = manifest
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(partition))
            {
                topics
                    .entry(topic.clone())
                    .or_default()
                    .insert(*partition, entry.clone());
            }
        }
        ShardResult {
            plan: self.plan.id.clone(),
            index: self.index.index,
            count: self.index.count,
            phase,
            error,
            updated_at: Utc::now(),
            records: self.base.records + counts.records,
            bytes: self.base.bytes + counts.bytes,
            segments: self.base.segments + counts.segments,
            partitions_done,
            topics,
        }
    }
}

/// The plan a shard's worker runs by: the one the coordinator recorded in the manifest.
fn planned_shards<'a>(
    plan: Option<&'a ShardPlan>,
    id: &str,
    shard: ShardIndex,
) -> Result<&'a ShardPlan, BackupError> {
    let Some(plan) = plan else {
        return Err(BackupError::Refused {
            field: "--shard-index",
            message: format!(
                "backup set {id} has no run split into shards in progress: the coordinator (`run -f --workers N`) plans the run before its workers start"
            ),
        });
    };
    if plan.shards.len() != shard.count {
        return Err(BackupError::Refused {
            field: "--shards",
            message: format!(
                "the run in progress of backup set {id} is split into {} shards, not {}",
                plan.shards.len(),
                shard.count
            ),
        });
    }
    Ok(plan)
}

/// Takes into the manifest the partitions of the results of shards `indices` of `plan` where
/// they got further than it lists (what a result lists is stored); returns those results.
async fn fold_shard_results(
    location: &ObjectLocation,
    manifest: &mut Manifest,
    plan: &ShardPlan,
    indices: std::ops::Range<usize>,
) -> Result<Vec<ShardResult>, BackupError> {
    let mut results = Vec::new();
    for index in indices {
        let Some(result) = backup::read_shard_result(location, &manifest.backup_id, &plan.id, index).await?
        else {
            continue;
        };
        if result.plan != plan.id || result.index != index {
            continue;
        }
        fold_partitions(manifest, &result);
        results.push(result);
    }
    Ok(results)
}

/// Takes a shard result's partitions into the manifest where they got further. Pure.
fn fold_partitions(manifest: &mut Manifest, result: &ShardResult) {
    for (topic, partitions) in &result.topics {
        let entry = manifest.topics.entry(topic.clone()).or_default();
        for (partition, stored) in partitions {
            let current = entry.partitions.entry(*partition).or_default();
            if stored.next_offset > current.next_offset {
                *current = stored.clone();
            }
        }
    }
}

async fn write_shard(location: &ObjectLocation, id: &str, result: &ShardResult) -> Result<(), StorageError> {
    location
        .put(
            &backup::shard_progress_key(id, &result.plan, result.index),
            result.to_bytes(),
        )
        .await
}

/// Stores a shard's final result create-only: a second worker of the same shard cannot
/// complete it too. The same result found there (a write sent again) counts as stored.
async fn complete_shard(
    location: &ObjectLocation,
    id: &str,
    result: &ShardResult,
) -> Result<(), BackupError> {
    let key = backup::shard_done_key(id, &result.plan, result.index);
    match location.put_new(&key, result.to_bytes()).await {
        Ok(()) => Ok(()),
        Err(StorageError::AlreadyExists { uri }) => {
            let stored = backup::read_shard_result(location, id, &result.plan, result.index).await?;
            if stored.is_some_and(|s| s.topics == result.topics) {
                Ok(())
            } else {
                Err(BackupError::Refused {
                    field: "--shard-index",
                    message: format!(
                        "{uri}: shard {} of {} was completed by another worker at the same time; run each shard once",
                        result.index, result.count
                    ),
                })
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// What a progress report of a run in progress says.
struct RunningReport<'a> {
    id: &'a str,
    started: DateTime<Utc>,
    continuous: bool,
    last_checkpoint: Option<DateTime<Utc>>,
    records: u64,
    bytes: u64,
    segments: u64,
    /// The previous report: when, records and bytes (the rates are over the time since).
    since: (Instant, u64, u64),
    partitions_done: usize,
    partitions_total: usize,
}

/// The status fields a run in progress writes: the set, every `progress` counter (all of them,
/// so none is left from an earlier run), the last checkpoint and whether the run resumes from
/// it; a continuous run, which does not finish, is also `lastRun`, so far. Pure but for the clock
/// of the rates.
fn running_status(report: &RunningReport<'_>) -> serde_json::Value {
    let secs = report.since.0.elapsed().as_secs_f64().max(1e-3);
    let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
    let status = KafkaBackupStatus {
        phase: Some(RunPhase::Running),
        backup_id: Some(report.id.to_owned()),
        progress: Some(BackupProgress {
            records: Some(report.records as i64),
            bytes: Some(report.bytes as i64),
            segments: Some(report.segments as i64),
            records_per_second: Some(rate(report.records, report.since.1)),
            bytes_per_second: Some(rate(report.bytes, report.since.2)),
            partitions_done: Some(report.partitions_done as i32),
            partitions_total: Some(report.partitions_total as i32),
        }),
        last_checkpoint_time: report.last_checkpoint.map(time),
        resumable: Some(report.last_checkpoint.is_some()),
        last_run: report.continuous.then(|| BackupRunSummary {
            start_time: Some(time(report.started)),
            records: Some(report.records as i64),
            bytes: Some(report.bytes as i64),
            segments: Some(report.segments as i64),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(last_run) = value.get_mut("lastRun") {
        // Not finished: what an earlier run left there goes.
        for field in ["completionTime", "outcome", "message"] {
            last_run[field] = serde_json::Value::Null;
        }
    }
    value
}

async fn write_manifest(location: &ObjectLocation, manifest: &Manifest) -> Result<(), StorageError> {
    location
        .put(&backup::manifest_key(&manifest.backup_id), manifest.to_bytes())
        .await
}

/// The manifest with the segments completed so far appended where they continue each
/// partition's chain; with `finals` (a finished run) each partition's next offset is its final
/// position.
fn merged(base: &Manifest, completed: &Completed, finals: Option<&BTreeMap<Partition, i64>>) -> Manifest {
    let mut m = base.clone();
    m.updated_at = Utc::now();
    let completed = completed.lock().map(|c| c.clone()).unwrap_or_default();
    for ((topic, partition), mut segs) in completed {
        segs.sort_by_key(|s| s.first_offset);
        let entry = m
            .topics
            .entry(topic.clone())
            .or_default()
            .partitions
            .entry(partition)
            .or_default();
        for s in segs {
            if s.position_start == entry.next_offset {
                entry.next_offset = s.position_end;
                entry.segments.push(s);
            }
        }
    }
    if let Some(finals) = finals {
        for ((topic, partition), position) in finals {
            if let Some(entry) = m
                .topics
                .get_mut(topic)
                .and_then(|t| t.partitions.get_mut(partition))
            {
                entry.next_offset = entry.next_offset.max(*position);
            }
        }
    }
    m
}

/// Adds to the manifest the segments stored after its last checkpoint that continue a
/// partition's chain, and deletes the others (all of them without checkpoints).
async fn adopt_orphans(
    location: &ObjectLocation,
    manifest: &mut Manifest,
    adopt: bool,
    only: Option<&BTreeSet<Partition>>,
) -> Result<(), BackupError> {
    let stored = backup::list_segments(location, &manifest.backup_id).await?;
    let listed: BTreeSet<&str> = manifest
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        .flat_map(|p| p.segments.iter().map(|s| s.key.as_str()))
        .collect();
    let mut orphans: BTreeMap<Partition, Vec<(SegmentHeader, String)>> = BTreeMap::new();
    for ((topic, partition, _), key) in &stored {
        if listed.contains(key.as_str())
            || only.is_some_and(|own| !own.contains(&(topic.clone(), *partition)))
        {
            continue;
        }
        if !adopt {
            location.delete(key).await?;
            continue;
        }
        let path = location.path(key);
        let head = location
            .store()
            .get_range(&path, 0..segment::HEADER_LEN as u64)
            .await
            .map_err(|source| location.error("read", key, source))?;
        match SegmentHeader::decode(&head) {
            Ok(h) => orphans
                .entry((topic.clone(), *partition))
                .or_default()
                .push((h, key.clone())),
            Err(e) => {
                tracing::warn!("deleting unreadable segment {}: {e}", location.uri(key));
                location.delete(key).await?;
            }
        }
    }
    for ((topic, partition), found) in orphans {
        let entry = manifest.topics.entry(topic.clone()).or_default();
        let pentry = entry.partitions.get(&partition);
        let chain_end = pentry.map(|p| p.next_offset);
        let keys: HashMap<i64, String> = found.iter().map(|(h, k)| (h.first_offset, k.clone())).collect();
        let (adopted, rejected) = chain_orphans(chain_end, found.into_iter().map(|(h, _)| h).collect());
        for h in rejected {
            if let Some(key) = keys.get(&h.first_offset) {
                location.delete(key).await?;
            }
        }
        let pentry = entry
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionEntry {
                next_offset: adopted.first().map_or(0, |h| h.position_start),
                ..Default::default()
            });
        for h in adopted {
            if let Some(key) = keys.get(&h.first_offset) {
                pentry.next_offset = h.position_end;
                pentry.segments.push(SegmentEntry::from_header(key.clone(), &h));
            }
        }
    }
    Ok(())
}

/// Every group of the cluster that has committed offsets on `partitions`, with those offsets.
async fn read_group_offsets(
    access: &ClusterAccess,
    partitions: &BTreeSet<Partition>,
) -> Result<GroupSnapshot, KafkaError> {
    let timestamp = Utc::now();
    let admin = kafka::group_admin(access).await?;
    let committed = super::groups_committed_on(access, &admin, partitions, &[]).await?;
    let mut groups = BTreeMap::new();
    for (group, committed) in committed {
        let mut per_topic: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
        for ((t, p), c) in committed {
            per_topic.entry(t).or_default().insert(p, c.offset);
        }
        groups.insert(group, per_topic);
    }
    Ok(GroupSnapshot {
        timestamp: Some(timestamp),
        groups,
    })
}

fn consumer_config(
    config: &ClientConfig,
    spec: &KafkaBackupSpec,
    id: &str,
    fetch: FetchShare,
) -> ClientConfig {
    let mut c = config.clone();
    c.set("group.id", format!("kafka-backup-operator.{id}"));
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    c.set("enable.partition.eof", "true");
    c.set("auto.offset.reset", "error");
    // An exact backup holds what consumers of the topic can see: committed records only. With
    // read_uncommitted the records of aborted transactions would be stored and a restore would
    // produce them as ordinary (committed) records; librdkafka cannot report which records were
    // aborted, so they could not be told apart later. Offsets without records (transaction
    // markers, aborted records) stay covered by the segments' position ranges. Measured against
    // read_uncommitted on non-transactional data: no throughput difference.
    c.set("isolation.level", "read_committed");
    c.set(
        "fetch.wait.max.ms",
        spec.poll_interval_ms.clamp(1, 60_000).to_string(),
    );
    // librdkafka's prefetch (its queue plus the fetch response being parsed) counts against
    // memoryBudgetBytes: each consumer gets a share of the budget (`FetchShare`).
    c.set(
        "queued.max.messages.kbytes",
        (fetch.queue / 1024).max(1).to_string(),
    );
    c.set("fetch.max.bytes", fetch.fetch_max.to_string());
    c.set(
        "max.partition.fetch.bytes",
        fetch.fetch_max.min(1 << 20).to_string(),
    );
    // When the queue is full (the backup paused for its memory budget or storage) librdkafka
    // postpones the partition's next fetch by this much: its default, 1 s, stalled the whole
    // pipeline after every short pause.
    c.set("fetch.queue.backoff.ms", "5");
    execution::Policy::of(spec.execution.as_ref()).configure_kafka(&mut c);
    c
}

/// The part of the memory budget each consumer's librdkafka prefetch may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchShare {
    /// `queued.max.messages.kbytes` in bytes.
    pub queue: u64,
    /// `fetch.max.bytes`.
    pub fetch_max: u64,
    /// What is left of the budget for open and in-flight segments (at least one segment).
    pub segments: u64,
}

/// Splits the memory budget: a quarter for the consumers' prefetch (half queue, half fetch
/// response, at least 1 MiB each), the rest for segments. Pure.
pub fn fetch_share(budget: u64, segment_max: u64, consumers: usize) -> FetchShare {
    let consumers = consumers.max(1) as u64;
    let per_consumer = budget / 4 / consumers;
    let queue = (per_consumer / 2).clamp(1 << 20, 64 << 20);
    let fetch_max = (per_consumer / 2).clamp(1 << 20, 50 << 20);
    let segments = budget
        .saturating_sub(consumers * (queue + fetch_max))
        .max(segment_max);
    FetchShare {
        queue,
        fetch_max,
        segments,
    }
}

/// Seals an active partition's open segment.
type SealFn<'a> = dyn Fn(&mut Active, &Shared, Vec<u8>) -> Option<Sealing> + 'a;

/// Segments stored by the run, per partition.
type Completed = Mutex<BTreeMap<Partition, Vec<SegmentEntry>>>;

/// Shared state of the copy workers and the uploader.
struct Shared {
    codec: Codec,
    segment_max: usize,
    segment_interval: Duration,
    poll_interval: Duration,
    continuous: bool,
    include_headers: bool,
    source_cluster: Option<String>,
    budget: u64,
    in_memory: AtomicU64,
    in_flight: AtomicU64,
    memory_lock: Mutex<()>,
    memory_freed: Condvar,
    slots: Mutex<usize>,
    slot_freed: Condvar,
    limiter: Option<Mutex<RateLimiter>>,
    records: AtomicU64,
    bytes: AtomicU64,
    segments: AtomicU64,
    /// Partitions finished (a continuous run: caught up once).
    partitions_done: AtomicU64,
    failed: AtomicBool,
    cancel: CancellationToken,
    /// How long the cluster may be away before the run fails (`execution.retryTimeoutSeconds`).
    retry_timeout: Duration,
    pool: Mutex<Vec<Vec<u8>>>,
    /// Compression contexts between segments; at most one per concurrent upload.
    compressors: Mutex<Vec<Compressor>>,
}

impl Shared {
    /// What this run stored so far.
    fn counts(&self) -> ShardCounts {
        ShardCounts {
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
        }
    }

    fn stopping(&self) -> bool {
        self.cancel.is_cancelled() || self.failed.load(Ordering::Relaxed)
    }

    fn buffer(&self) -> Vec<u8> {
        self.pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| Vec::with_capacity(self.segment_max.min(64 << 20) + (64 << 10)))
    }

    /// Keeps a stored segment's buffer for the next segment (reusing it avoids the allocator
    /// churn that fragments the heap), as long as the kept buffers plus the record data in
    /// memory stay within the budget.
    fn recycle(&self, buffer: Vec<u8>) {
        if let Ok(mut pool) = self.pool.lock() {
            let pooled: u64 = pool.iter().map(|b| b.capacity() as u64).sum();
            let in_memory = self.in_memory.load(Ordering::Relaxed);
            if pool.len() < 2 || in_memory + pooled + buffer.capacity() as u64 <= self.budget {
                pool.push(buffer);
            }
        }
    }

    fn release_memory(&self, bytes: u64) {
        self.in_memory.fetch_sub(bytes, Ordering::SeqCst);
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| {
                Some(f.saturating_sub(bytes))
            });
        let _guard = self.memory_lock.lock();
        self.memory_freed.notify_all();
    }

    fn acquire_slot(&self, wait: bool) -> bool {
        let Ok(mut slots) = self.slots.lock() else {
            return false;
        };
        loop {
            if *slots > 0 {
                *slots -= 1;
                return true;
            }
            if !wait || self.stopping() {
                return false;
            }
            match self.slot_freed.wait_timeout(slots, Duration::from_millis(100)) {
                Ok((s, _)) => slots = s,
                Err(_) => return false,
            }
        }
    }

    fn release_slot(&self) {
        if let Ok(mut slots) = self.slots.lock() {
            *slots += 1;
        }
        self.slot_freed.notify_all();
    }
}

/// Records and bytes per second over the whole run.
struct RateLimiter {
    records_per_sec: Option<f64>,
    bytes_per_sec: Option<f64>,
    start: Instant,
    records: f64,
    bytes: f64,
}

impl RateLimiter {
    fn new(records: Option<i64>, bytes: Option<i64>) -> Option<Mutex<Self>> {
        (records.is_some() || bytes.is_some()).then(|| {
            Mutex::new(RateLimiter {
                records_per_sec: records.map(|r| r.max(1) as f64),
                bytes_per_sec: bytes.map(|b| b.max(1) as f64),
                start: Instant::now(),
                records: 0.0,
                bytes: 0.0,
            })
        })
    }

    /// Counts a record and returns how long to wait to stay under the limits.
    fn take(&mut self, bytes: usize) -> Option<Duration> {
        self.records += 1.0;
        self.bytes += bytes as f64;
        let need = self
            .records_per_sec
            .map_or(0.0, |r| self.records / r)
            .max(self.bytes_per_sec.map_or(0.0, |b| self.bytes / b));
        let elapsed = self.start.elapsed().as_secs_f64();
        (need > elapsed).then(|| Duration::from_secs_f64(need - elapsed))
    }
}

/// A segment handed to the uploader.
struct Sealing {
    topic: String,
    builder: SegmentBuilder,
    position_end: i64,
    memory: u64,
}

struct Active {
    builder: SegmentBuilder,
    stop: Option<i64>,
    position: i64,
    /// Bytes counted in the budget for this open segment: its buffer's capacity, which is
    /// resident once a reused buffer holds it, however few records are in it yet.
    memory: u64,
}

impl Active {
    /// Counts the growth of the open segment's buffer in the budget.
    fn track_capacity(&mut self, shared: &Shared) {
        let capacity = self.builder.body.capacity() as u64;
        if capacity > self.memory {
            shared
                .in_memory
                .fetch_add(capacity - self.memory, Ordering::SeqCst);
            self.memory = capacity;
        }
    }

    /// Gives back the budget of an open segment that is dropped without being stored.
    fn release(self, shared: &Shared) {
        shared.in_memory.fetch_sub(self.memory, Ordering::SeqCst);
        let _guard = shared.memory_lock.lock();
        shared.memory_freed.notify_all();
    }
}

/// Copies the planned partitions of one topic; returns each partition's final position.
fn copy_topic(
    config: &ClientConfig,
    topic: &str,
    plans: Vec<PartitionPlan>,
    shared: &Shared,
    tx: &mpsc::Sender<Sealing>,
) -> Result<Vec<(i32, i64)>, BackupError> {
    let mut finished: Vec<(i32, i64)> = Vec::new();
    let mut pending: VecDeque<PartitionPlan> = VecDeque::new();
    for plan in plans {
        if plan.done {
            shared.partitions_done.fetch_add(1, Ordering::Relaxed);
            finished.push((plan.partition, plan.start));
        } else {
            pending.push_back(plan);
        }
    }
    if pending.is_empty() {
        return Ok(finished);
    }
    let consumer = kafka::consumer(config).map_err(KafkaError::client(format!(
        "creating the consumer of topic {topic}"
    )))?;
    let mut active: HashMap<i32, Active> = HashMap::new();
    let send = |sealing: Sealing| -> Result<(), BackupError> {
        shared.in_flight.fetch_add(sealing.memory, Ordering::SeqCst);
        tx.blocking_send(sealing)
            .map_err(|_| BackupError::Worker("the segment uploader stopped".into()))
    };
    let seal = |a: &mut Active, shared: &Shared, fresh: Vec<u8>| -> Option<Sealing> {
        if a.builder.is_empty() {
            return None;
        }
        let partition = a.builder.partition;
        let builder = std::mem::replace(&mut a.builder, SegmentBuilder::new(partition, a.position, fresh));
        let memory = std::mem::take(&mut a.memory);
        a.track_capacity(shared);
        Some(Sealing {
            topic: topic.to_owned(),
            builder,
            position_end: a.position,
            memory,
        })
    };
    let mut since_check = 0u32;
    let mut last_interval_check = Instant::now();
    // Since when the cluster has been away, and its last error: librdkafka reconnects by
    // itself, so the run goes on polling for `execution.retryTimeoutSeconds`.
    let mut away: Option<(Instant, KafkaError)> = None;
    let mut last_probe = Instant::now();
    // Partitions of a continuous run that reached the log end at least once.
    let mut caught_up: BTreeSet<i32> = BTreeSet::new();
    let result: Result<(), BackupError> = (|| {
        loop {
            // Assign pending partitions while slots are free (wait for one when idle).
            while !pending.is_empty() {
                if !shared.acquire_slot(active.is_empty()) {
                    break;
                }
                let Some(plan) = pending.pop_front() else { break };
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, plan.partition, Offset::Offset(plan.start))
                    .map_err(KafkaError::client(format!(
                        "assigning {topic}-{}",
                        plan.partition
                    )))?;
                consumer
                    .incremental_assign(&tpl)
                    .map_err(KafkaError::client(format!(
                        "assigning {topic}-{}",
                        plan.partition
                    )))?;
                let mut a = Active {
                    builder: SegmentBuilder::new(plan.partition, plan.start, shared.buffer()),
                    stop: plan.stop,
                    position: plan.start,
                    memory: 0,
                };
                a.track_capacity(shared);
                active.insert(plan.partition, a);
            }
            if active.is_empty() || shared.stopping() {
                return Ok(());
            }
            // Memory budget: pause fetching until a stored segment frees memory. Nothing in
            // flight means nothing would free any: the open segments' buffers alone fill the
            // budget, and fetching goes on until one of them is full and sealed.
            while shared.in_memory.load(Ordering::SeqCst) >= shared.budget
                && shared.in_flight.load(Ordering::SeqCst) > 0
                && !shared.stopping()
            {
                let guard = shared
                    .memory_lock
                    .lock()
                    .map_err(|_| BackupError::Worker("memory lock poisoned".into()))?;
                // Checked under the lock: a release between the check above and here would
                // otherwise be missed.
                if shared.in_memory.load(Ordering::SeqCst) < shared.budget {
                    continue;
                }
                let _ = shared.memory_freed.wait_timeout(guard, Duration::from_millis(20));
            }
            let polled = consumer.poll(shared.poll_interval);
            if matches!(
                polled,
                Some(Ok(_) | Err(rdkafka::error::KafkaError::PartitionEOF(_)))
            ) {
                away = None;
            }
            match polled {
                None => {}
                Some(Ok(m)) => {
                    since_check += 1;
                    let Some(a) = active.get_mut(&m.partition()) else {
                        continue;
                    };
                    let offset = m.offset();
                    if a.stop.is_some_and(|stop| offset >= stop) {
                        let p = m.partition();
                        drop(m);
                        finish(
                            &consumer,
                            topic,
                            p,
                            &mut active,
                            &mut finished,
                            shared,
                            &send,
                            &seal,
                        )?;
                        continue;
                    }
                    let (timestamp, timestamp_type) = match m.timestamp() {
                        Timestamp::NotAvailable => (-1, TimestampType::NotAvailable),
                        Timestamp::CreateTime(t) => (t, TimestampType::CreateTime),
                        Timestamp::LogAppendTime(t) => (t, TimestampType::LogAppendTime),
                    };
                    let key = m.key();
                    let value = m.payload();
                    let record_bytes = segment::record_bytes(
                        key,
                        value,
                        m.headers()
                            .into_iter()
                            .flat_map(|h| h.iter().map(|h| (h.key, h.value))),
                    );
                    let offset_bytes = headers::encode_i64(offset);
                    let ts_bytes = headers::encode_i64(timestamp);
                    let mut tracking: Vec<HeaderRef> = Vec::new();
                    if shared.include_headers {
                        tracking.push((headers::ORIGINAL_OFFSET, Some(&offset_bytes)));
                        tracking.push((headers::ORIGINAL_TIMESTAMP, Some(&ts_bytes)));
                        if let Some(c) = &shared.source_cluster {
                            tracking.push((headers::SOURCE_CLUSTER, Some(c.as_bytes())));
                        }
                    }
                    match m.headers() {
                        Some(h) => a.builder.push(
                            offset,
                            timestamp,
                            timestamp_type,
                            key,
                            value,
                            h.iter().map(|h| (h.key, h.value)),
                            &tracking,
                        ),
                        None => a.builder.push(
                            offset,
                            timestamp,
                            timestamp_type,
                            key,
                            value,
                            std::iter::empty(),
                            &tracking,
                        ),
                    }
                    a.track_capacity(shared);
                    a.position = offset + 1;
                    shared.records.fetch_add(1, Ordering::Relaxed);
                    shared.bytes.fetch_add(record_bytes, Ordering::Relaxed);
                    let full = a.builder.body.len() >= shared.segment_max;
                    let reached = a.stop.is_some_and(|stop| a.position >= stop);
                    let p = m.partition();
                    drop(m);
                    if let Some(limiter) = &shared.limiter {
                        let wait = limiter
                            .lock()
                            .ok()
                            .and_then(|mut l| l.take(record_bytes as usize));
                        if let Some(wait) = wait {
                            std::thread::sleep(wait);
                        }
                    }
                    if reached {
                        finish(
                            &consumer,
                            topic,
                            p,
                            &mut active,
                            &mut finished,
                            shared,
                            &send,
                            &seal,
                        )?;
                    } else if full
                        && let Some(a) = active.get_mut(&p)
                        && let Some(s) = seal(a, shared, shared.buffer())
                    {
                        send(s)?;
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p)))
                    if !shared.continuous && active.contains_key(&p) =>
                {
                    if let Ok(positions) = consumer.position()
                        && let Some(e) = positions.find_partition(topic, p)
                        && let Offset::Offset(o) = e.offset()
                        && let Some(a) = active.get_mut(&p)
                    {
                        a.position = a.position.max(o);
                    }
                    finish(
                        &consumer,
                        topic,
                        p,
                        &mut active,
                        &mut finished,
                        shared,
                        &send,
                        &seal,
                    )?;
                }
                // Continuous backups keep polling at the end of the log; a partition that got
                // there once counts as done.
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(p)))
                    if active.contains_key(&p) && caught_up.insert(p) =>
                {
                    shared.partitions_done.fetch_add(1, Ordering::Relaxed);
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    let error = KafkaError::Client {
                        what: format!("reading topic {topic}"),
                        source: e,
                    };
                    if !error.is_retryable() {
                        return Err(BackupError::Kafka(error));
                    }
                    crate::metrics::retries().retry(RetryCause::KafkaUnreachable);
                    let since = away.as_ref().map_or_else(Instant::now, |(since, _)| *since);
                    away = Some((since, error));
                }
            }
            // While the cluster is away, ask it for metadata now and then: an answer ends the
            // outage even where no record or end of partition follows (a continuous backup at
            // the log end); none within the budget fails the attempt with the last error.
            if let Some((since, error)) = &away
                && last_probe.elapsed() >= PROBE_EVERY
            {
                last_probe = Instant::now();
                if consumer.client().fetch_metadata(Some(topic), PROBE_EVERY).is_ok() {
                    away = None;
                } else if since.elapsed() >= shared.retry_timeout {
                    return Err(BackupError::Kafka(KafkaError::Broker(format!(
                        "{error}: the Kafka cluster stayed unreachable for {} s, longer than execution.retryTimeoutSeconds ({} s)",
                        since.elapsed().as_secs(),
                        shared.retry_timeout.as_secs()
                    ))));
                }
            }
            // Seal segments open for longer than segmentMaxIntervalMs.
            if since_check >= 1024 || last_interval_check.elapsed() >= Duration::from_millis(200) {
                since_check = 0;
                last_interval_check = Instant::now();
                let due: Vec<i32> = active
                    .iter()
                    .filter(|(_, a)| {
                        !a.builder.is_empty() && a.builder.opened.elapsed() >= shared.segment_interval
                    })
                    .map(|(p, _)| *p)
                    .collect();
                for p in due {
                    if let Some(a) = active.get_mut(&p)
                        && let Some(s) = seal(a, shared, shared.buffer())
                    {
                        send(s)?;
                    }
                }
            }
        }
    })();
    // Stopped (done, cancelled or failed): store what is open, so the final checkpoint has it.
    let open: Vec<i32> = active.keys().copied().collect();
    for p in open {
        if let Some(mut a) = active.remove(&p) {
            let position = a.position;
            if result.is_ok()
                && let Some(s) = seal(&mut a, shared, Vec::new())
            {
                send(s)?;
            }
            a.release(shared);
            shared.release_slot();
            finished.push((p, position));
        }
    }
    result.map(|()| finished)
}

#[allow(clippy::too_many_arguments)]
fn finish(
    consumer: &kafka::Consumer,
    topic: &str,
    partition: i32,
    active: &mut HashMap<i32, Active>,
    finished: &mut Vec<(i32, i64)>,
    shared: &Shared,
    send: &dyn Fn(Sealing) -> Result<(), BackupError>,
    seal: &SealFn<'_>,
) -> Result<(), BackupError> {
    let Some(mut a) = active.remove(&partition) else {
        return Ok(());
    };
    if let Some(stop) = a.stop {
        // Everything below the captured end is read (offsets without records are markers).
        a.position = a.position.max(stop);
    }
    if let Some(s) = seal(&mut a, shared, Vec::new()) {
        send(s)?;
    }
    let position = a.position;
    // An empty segment's buffer is dropped here; a sealed one's budget moved with it.
    a.release(shared);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    consumer
        .incremental_unassign(&tpl)
        .map_err(KafkaError::client(format!("unassigning {topic}-{partition}")))?;
    shared.release_slot();
    shared.partitions_done.fetch_add(1, Ordering::Relaxed);
    finished.push((partition, position));
    Ok(())
}

/// Compresses and stores sealed segments, several at a time.
async fn upload_all(
    rx: mpsc::Receiver<Sealing>,
    shared: Arc<Shared>,
    location: ObjectLocation,
    id: String,
    completed: Arc<Completed>,
) -> Result<(), BackupError> {
    let incoming = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|s| (s, rx)) });
    let mut first_error: Option<BackupError> = None;
    let mut uploads = Box::pin(
        incoming
            .map(|s| {
                let shared = shared.clone();
                let location = location.clone();
                let id = id.clone();
                async move {
                    if shared.failed.load(Ordering::Relaxed) {
                        shared.release_memory(s.memory);
                        return Ok(None);
                    }
                    upload_one(s, &shared, &location, &id).await.map(Some)
                }
            })
            .buffer_unordered(PARALLEL_UPLOADS),
    );
    while let Some(result) = uploads.next().await {
        match result {
            Ok(Some((topic, entry, partition))) => {
                shared.segments.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut c) = completed.lock() {
                    c.entry((topic, partition)).or_default().push(entry);
                }
            }
            Ok(None) => {}
            Err(e) => {
                shared.failed.store(true, Ordering::SeqCst);
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Compresses and stores one segment; releases the memory it holds on every path.
async fn upload_one(
    s: Sealing,
    shared: &Shared,
    location: &ObjectLocation,
    id: &str,
) -> Result<(String, SegmentEntry, i32), BackupError> {
    let codec = shared.codec;
    let Sealing {
        topic,
        builder,
        position_end,
        memory,
    } = s;
    let partition = builder.partition;
    let compressor = shared
        .compressors
        .lock()
        .ok()
        .and_then(|mut c| c.pop())
        .unwrap_or_default();
    // LZ4 compresses into one of the segment buffers, which the budget already bounds.
    let out = match codec {
        Codec::None | Codec::Zstd(_) => Vec::new(),
        Codec::Lz4 => shared.buffer(),
    };
    let sealed = tokio::task::spawn_blocking(move || {
        let (mut compressor, mut out) = (compressor, out);
        let result = segment::seal_with(builder, position_end, codec, &mut compressor, &mut out);
        (result, compressor, out)
    })
    .await;
    let (result, out) = match sealed {
        Ok((result, compressor, out)) => {
            if let Ok(mut c) = shared.compressors.lock() {
                c.push(compressor);
            }
            (result.map_err(|e| BackupError::Worker(e.to_string())), out)
        }
        Err(e) => (
            Err(BackupError::Worker(format!("segment compression failed: {e}"))),
            Vec::new(),
        ),
    };
    let (sealed, spare) = match result {
        Ok(sealed) => sealed,
        Err(e) => {
            shared.release_memory(memory);
            return Err(e);
        }
    };
    // A compressed segment now lives in its (smaller) compressed body: count that until it is
    // stored, and free the records' memory at once. The buffers go back to the pool after
    // that, so the pool sees the budget they left.
    let held = match codec {
        Codec::None => memory,
        Codec::Zstd(_) | Codec::Lz4 => {
            let held = sealed.body.len() as u64;
            shared.in_memory.fetch_add(held, Ordering::SeqCst);
            shared.in_flight.fetch_add(held, Ordering::SeqCst);
            shared.release_memory(memory);
            held
        }
    };
    for buffer in spare.into_iter().chain(Some(out)) {
        if buffer.capacity() > 0 {
            shared.recycle(buffer);
        }
    }
    let result = store_segment(sealed, codec, shared, location, id, &topic, partition).await;
    shared.release_memory(held);
    result.map(|entry| (topic, entry, partition))
}

/// Stores a sealed segment create-only and hands an uncompressed body's buffer back to the pool.
async fn store_segment(
    sealed: segment::Sealed,
    codec: Codec,
    shared: &Shared,
    location: &ObjectLocation,
    id: &str,
    topic: &str,
    partition: i32,
) -> Result<SegmentEntry, BackupError> {
    let key = backup::segment_key(id, topic, partition, sealed.header.first_offset);
    let payload = PutPayload::from_iter([sealed.header_bytes.clone(), sealed.body.clone()]);
    let options = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let entry = SegmentEntry::from_header(key.clone(), &sealed.header);
    // object_store does not send a create-only PUT again after a connection that broke during
    // the upload (it may have landed): it is sent again here, for the retry budget, and a
    // segment found there after such a failure counts as stored when it is the same bytes.
    let started = Instant::now();
    let mut failed = 0;
    loop {
        let result = location
            .store()
            .put_opts(&location.path(&key), payload.clone(), options.clone())
            .await;
        match result {
            Ok(_) => break,
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. })
                if failed > 0 && stored_is(location, &key, &sealed).await? =>
            {
                break;
            }
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                return Err(BackupError::Segment {
                    uri: location.uri(&key),
                    message: format!(
                        "already exists: another run is writing backup set {id} at the same time; run one backup per backupId"
                    ),
                });
            }
            Err(source) => {
                let error = location.error("write", &key, source);
                if !error.is_retryable() || started.elapsed() >= shared.retry_timeout {
                    return Err(error.into());
                }
                failed += 1;
                tracing::debug!(%error, failed, "storing the segment again");
                tokio::time::sleep(execution::request_backoff(failed)).await;
            }
        }
    }
    {
        let (location, key) = (location.clone(), key.clone());
        let _ = tokio::task::spawn_blocking(move || location.drop_cached(&key)).await;
    }
    if let Codec::None = codec {
        let body = sealed.body;
        drop(sealed.header_bytes);
        if let Ok(mut reclaimed) = body.try_into_mut() {
            reclaimed.clear();
            shared.recycle(Vec::from(reclaimed));
        }
    }
    Ok(entry)
}

/// Whether the object at `key` holds exactly the sealed segment.
async fn stored_is(
    location: &ObjectLocation,
    key: &str,
    sealed: &segment::Sealed,
) -> Result<bool, StorageError> {
    let stored = location.get(key).await?.unwrap_or_default();
    let (header, body) = (&sealed.header_bytes, &sealed.body);
    Ok(stored.len() == header.len() + body.len()
        && stored[..header.len()] == header[..]
        && stored[header.len()..] == body[..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(start: i64, end: i64) -> SegmentHeader {
        SegmentHeader {
            codec: 0,
            partition: 0,
            records: (end - start) as u64,
            first_offset: start,
            last_offset: end - 1,
            position_start: start,
            position_end: end,
            min_timestamp: 0,
            max_timestamp: 0,
            uncompressed_len: 0,
            stored_len: 0,
            body_crc: 0,
        }
    }

    #[test]
    fn orphans_are_adopted_only_while_they_continue_the_chain() {
        let (adopted, rejected) =
            chain_orphans(Some(10), vec![header(20, 30), header(10, 20), header(35, 40)]);
        assert_eq!(
            adopted.iter().map(|h| h.first_offset).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert_eq!(
            rejected.iter().map(|h| h.first_offset).collect::<Vec<_>>(),
            vec![35]
        );
        let (adopted, rejected) = chain_orphans(Some(5), vec![header(10, 20)]);
        assert!(adopted.is_empty());
        assert_eq!(rejected.len(), 1);
        let (adopted, _) = chain_orphans(None, vec![header(3, 4)]);
        assert_eq!(adopted.len(), 1);
        // Segments retention removed from the manifest but did not delete yet are stale, and
        // do not stop the adoption of a crashed run's segments.
        let (adopted, rejected) = chain_orphans(Some(10), vec![header(0, 5), header(10, 20)]);
        assert_eq!(
            adopted.iter().map(|h| h.first_offset).collect::<Vec<_>>(),
            vec![10]
        );
        assert_eq!(
            rejected.iter().map(|h| h.first_offset).collect::<Vec<_>>(),
            vec![0]
        );
    }

    #[test]
    fn partitions_continue_the_set_and_record_gaps() {
        let bounds = LogBounds { start: 100, end: 200 };
        let stored = PartitionEntry {
            next_offset: 50,
            ..Default::default()
        };
        let plan = plan_partition("t", 0, Some(&stored), bounds, None, false).unwrap();
        assert_eq!(plan.start, 100);
        assert_eq!(plan.gap.as_ref().map(|g| (g.from, g.to)), Some((50, 100)));
        let stored = PartitionEntry {
            next_offset: 200,
            ..Default::default()
        };
        assert!(
            plan_partition("t", 0, Some(&stored), bounds, None, false)
                .unwrap()
                .done
        );
        assert!(
            !plan_partition("t", 0, Some(&stored), bounds, None, true)
                .unwrap()
                .done
        );
        assert!(
            plan_partition("t", 0, None, bounds, Some(100), false)
                .unwrap()
                .done
        );
        let stored = PartitionEntry {
            next_offset: 300,
            ..Default::default()
        };
        let e = plan_partition("t", 1, Some(&stored), bounds, None, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t-1") && e.contains("recreated"), "{e}");
    }

    #[test]
    fn the_prefetch_takes_a_share_of_the_budget() {
        let f = fetch_share(128 << 20, 8 << 20, 1);
        assert_eq!((f.queue, f.fetch_max, f.segments), (16 << 20, 16 << 20, 96 << 20));
        let f = fetch_share(1 << 20, 1 << 20, 4);
        assert_eq!((f.queue, f.fetch_max, f.segments), (1 << 20, 1 << 20, 1 << 20));
    }

    fn shard_result(plan: &ShardPlan, index: usize, phase: ShardPhase, records: u64) -> ShardResult {
        let entry = PartitionEntry {
            next_offset: records as i64,
            segments: vec![SegmentEntry::from_header(
                format!("seg-{index}"),
                &header(0, records as i64),
            )],
            gaps: Vec::new(),
        };
        ShardResult {
            plan: plan.id.clone(),
            index,
            count: plan.shards.len(),
            phase,
            error: (phase == ShardPhase::Failed).then(|| "broker said no".to_owned()),
            updated_at: Utc::now(),
            records,
            bytes: records * 10,
            segments: 1,
            partitions_done: 1,
            topics: BTreeMap::from([("t".to_owned(), BTreeMap::from([(index as i32, entry)]))]),
        }
    }

    fn two_shards() -> (Manifest, ShardPlan) {
        let mut manifest = Manifest::new("set", Utc::now());
        let plan = ShardPlan {
            id: "1-2".into(),
            shards: vec![
                BTreeMap::from([("t".to_owned(), vec![0])]),
                BTreeMap::from([("t".to_owned(), vec![1])]),
            ],
        };
        manifest.current_run = Some(CurrentRun {
            started_at: Utc::now(),
            stop_offsets: None,
            shards: Some(plan.clone()),
        });
        (manifest, plan)
    }

    #[test]
    fn the_merge_is_complete_only_when_every_shard_completed() {
        let (base, plan) = two_shards();
        let (at, now) = (Utc::now(), Utc::now());
        let done = |i, records| Some(shard_result(&plan, i, ShardPhase::Completed, records));
        let merged = merge_shards(&base, &plan, &[done(0, 5), done(1, 7)], at, now).unwrap();
        assert!(merged.complete);
        assert_eq!(merged.manifest.state, SetState::Complete);
        assert_eq!(merged.manifest.current_run, None);
        assert_eq!((merged.records, merged.bytes, merged.segments), (12, 120, 2));
        let partitions = &merged.manifest.topics["t"].partitions;
        assert_eq!((partitions[&0].next_offset, partitions[&1].next_offset), (5, 7));
        assert_eq!(merged.manifest.runs.last().map(|r| r.records), Some(12));

        // A shard without a result, or with one of another plan: not Complete, naming it.
        let other_plan = ShardPlan {
            id: "0-2".into(),
            ..plan.clone()
        };
        for results in [
            vec![done(0, 5), None],
            vec![
                done(0, 5),
                Some(shard_result(&other_plan, 1, ShardPhase::Completed, 7)),
            ],
        ] {
            let e = merge_shards(&base, &plan, &results, at, now)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("shard 1 of 2: stored no result"), "{e}");
        }
        // A failed shard: the run fails naming the shard and its error.
        let failed = Some(shard_result(&plan, 0, ShardPhase::Failed, 2));
        let e = merge_shards(&base, &plan, &[failed, done(1, 7)], at, now)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "shard 0 of 2: failed: broker said no");
        // A worker killed while it ran left its result Running.
        let running = Some(shard_result(&plan, 1, ShardPhase::Running, 3));
        let e = merge_shards(&base, &plan, &[done(0, 5), running], at, now)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("shard 1 of 2: did not finish"), "{e}");
        // A cancelled shard: what was stored is kept, the set stays InProgress and resumable.
        let cancelled = Some(shard_result(&plan, 1, ShardPhase::Cancelled, 3));
        let merged = merge_shards(&base, &plan, &[done(0, 5), cancelled], at, now).unwrap();
        assert!(!merged.complete);
        assert_eq!(merged.manifest.state, SetState::InProgress);
        assert!(merged.manifest.current_run.is_some());
        assert_eq!(merged.manifest.topics["t"].partitions[&1].next_offset, 3);
    }

    #[test]
    fn a_shard_result_replaces_a_partition_only_where_it_got_further() {
        let (mut manifest, plan) = two_shards();
        let ahead = PartitionEntry {
            next_offset: 50,
            ..Default::default()
        };
        manifest
            .topics
            .entry("t".into())
            .or_default()
            .partitions
            .insert(0, ahead.clone());
        fold_partitions(&mut manifest, &shard_result(&plan, 0, ShardPhase::Running, 10));
        assert_eq!(manifest.topics["t"].partitions[&0], ahead);
        fold_partitions(&mut manifest, &shard_result(&plan, 1, ShardPhase::Running, 10));
        assert_eq!(manifest.topics["t"].partitions[&1].next_offset, 10);
    }

    #[test]
    fn a_worker_runs_only_the_plan_the_coordinator_recorded() {
        let (_, plan) = two_shards();
        let shard = ShardIndex::new(1, 2).unwrap();
        assert_eq!(planned_shards(Some(&plan), "set", shard).unwrap(), &plan);
        let e = planned_shards(None, "set", shard).unwrap_err().to_string();
        assert!(
            e.starts_with("--shard-index: backup set set has no run split"),
            "{e}"
        );
        let e = planned_shards(Some(&plan), "set", ShardIndex::new(1, 3).unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--shards: the run in progress of backup set set is split into 2 shards, not 3"
        );
    }

    #[test]
    fn schedules_and_budgets() {
        let at = DateTime::parse_from_rfc3339("2024-12-01T10:00:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = next_tick("0 * * * * *", at).unwrap().unwrap();
        assert_eq!(next.to_rfc3339(), "2024-12-01T10:01:00+00:00");
        assert!(next_tick("nonsense", at).unwrap_err().contains("spec.schedule"));
    }
}
