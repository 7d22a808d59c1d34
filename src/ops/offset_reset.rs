//! KafkaOffsetReset: moves the committed offsets of consumer groups.
//!
//! 1. **Read** (up to `parallelism` groups at once): each group's state and committed offsets in
//!    scope. A group with active members is refused and not touched.
//! 2. **Plan** (pure, [`plan_group`]): the target of every partition from the strategy, clamped
//!    into [log start, log end] with the clamp reported. Log bounds and time lookups are asked
//!    once for all groups.
//! 3. **Approval** (`approval: Manual`, [`super::approval`]): the plan and its hash go to status;
//!    unless the `kafka.oso.sh/approve` annotation names that very hash, the reset stops here in
//!    phase PendingApproval, having changed nothing.
//! 4. **Snapshot** (unless dry run): the current offsets of every group that will change, stored
//!    create-only before anything is committed.
//! 5. **Commit** (up to `parallelism` groups at once): the group is checked Empty again, then all
//!    its partitions go in one OffsetCommit. DeleteOffsets deletes the scoped partitions' offsets
//!    with OffsetDelete (on a broker without it: deletes the group and commits back the offsets
//!    outside the scope; the snapshot taken before makes this recoverable even if the process
//!    dies in between).
//!
//! Group state and offsets, topic metadata, log bounds and time lookups go through
//! [`crate::kafka::protocol`] (one connection per broker for everything); only HeaderBased's
//! record reads use a librdkafka client, made for that strategy alone.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};

use super::{
    Context, approval, blocking, default_snapshot_id,
    execution::{self, Retryable},
    group_commit::{self, Applied, GroupChange},
    time,
};
use crate::{
    api::v1beta1::{
        Approval, GroupPlan, GroupResetOutcome, GroupResetResult, HeaderBasedReset, KafkaOffsetReset,
        KafkaOffsetResetSpec, KafkaOffsetResetStatus, OffsetMappingSource, OffsetResetPlan,
        OffsetResetSnapshotStatus, OffsetResetStrategy, PartitionResetResult, Phase,
    },
    kafka::{
        self, ClusterAccess, KafkaError,
        groups::{Cluster, Committed, GroupDescription, LogBounds, Partition},
        headers,
        protocol::GroupAdmin,
    },
    metrics::RetryCause,
    storage::{
        Location, StorageError,
        configmap::ConfigMapLocation,
        offset_mapping::OffsetMapping,
        snapshot::{OffsetSnapshot, SnapshotSource, snapshot_key},
    },
};

/// Per-partition detail kept in status per group.
const MAX_PARTITIONS_IN_STATUS: usize = 100;

/// Why a reset could not run at all (per-group failures are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Talking to Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A scoped topic does not exist.
    #[error("spec.topics[{index}].name: topic {topic} does not exist in the cluster")]
    UnknownTopic {
        /// Index in spec.topics.
        index: usize,
        /// The topic.
        topic: String,
    },
    /// A partition named in the scope does not exist.
    #[error("{field}: topic {topic} has {count} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// Field path.
        field: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Partitions of the topic.
        count: i32,
    },
    /// The offset mapping could not be read.
    #[error("spec.fromMapping: {0}")]
    Mapping(String),
    /// The snapshot could not be written; nothing was committed.
    #[error("snapshot {snapshot_id} could not be stored, so nothing was committed: {source}")]
    Snapshot {
        /// The id.
        snapshot_id: String,
        /// Why.
        #[source]
        source: Box<StorageError>,
    },
    /// A time in the spec cannot be used.
    #[error("{field}: {message}")]
    Time {
        /// Field path.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// Cancelled (or stopped at its deadline) before any group was changed.
    #[error("cancelled before any consumer group was changed")]
    Cancelled,
    /// Cancelled (or stopped at its deadline) after some groups were reset.
    #[error(
        "cancelled after {changed} of {total} consumer group(s) were reset (see results); not run again, because a second run would snapshot the partly reset offsets (and ShiftBy or ByDuration would move them again){}",
        .snapshot.as_deref().map(|id| format!(": snapshot {id} holds the offsets from before, for a KafkaOffsetRollback")).unwrap_or_default()
    )]
    Interrupted {
        /// Groups reset.
        changed: usize,
        /// Groups in the spec.
        total: usize,
        /// The pre-change snapshot.
        snapshot: Option<String>,
    },
}

impl Retryable for ResetError {
    fn is_retryable(&self) -> bool {
        match self {
            ResetError::Kafka(e) => e.is_retryable(),
            ResetError::Storage(e) => e.is_retryable(),
            ResetError::Snapshot { source, .. } => source.is_retryable(),
            // Nothing was changed.
            ResetError::Cancelled => true,
            ResetError::UnknownTopic { .. }
            | ResetError::UnknownPartition { .. }
            | ResetError::Mapping(_)
            | ResetError::Time { .. }
            | ResetError::Interrupted { .. } => false,
        }
    }
}

/// The planned change of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionPlan {
    /// The partition.
    pub partition: Partition,
    /// Committed offset now.
    pub previous: Option<i64>,
    /// Offset to commit; `None` deletes the committed offset.
    pub target: Option<i64>,
    /// The computed target lay outside the log and was clamped.
    pub clamped: bool,
}

/// What the strategy needs, resolved for all groups before planning.
#[derive(Clone, Debug, Default)]
pub struct Lookups {
    /// Log bounds of every partition involved.
    pub bounds: BTreeMap<Partition, LogBounds>,
    /// First offset at or after the strategy's point in time (Timestamp, ByDuration).
    pub by_time: BTreeMap<Partition, Option<i64>>,
    /// Target offsets per group found through the tracking headers (HeaderBased).
    pub by_header: HeaderTargets,
    /// The offset mapping (FromMapping).
    pub mapping: Option<OffsetMapping>,
}

/// Per group the offsets HeaderBased found, or why the group's committed offsets cannot be
/// translated.
pub type HeaderTargets = BTreeMap<String, Result<BTreeMap<Partition, i64>, String>>;

/// Why one group's plan could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(String);

/// Plans one group: the target of each scoped partition. `committed` holds the group's current
/// offsets in scope. Pure.
pub fn plan_group(
    spec: &KafkaOffsetResetSpec,
    group: &str,
    committed: &BTreeMap<Partition, Committed>,
    lookups: &Lookups,
) -> Result<Vec<PartitionPlan>, PlanError> {
    let bounds = |tp: &Partition| {
        lookups
            .bounds
            .get(tp)
            .copied()
            .ok_or_else(|| PlanError(format!("no log offsets for {}-{}", tp.0, tp.1)))
    };
    let previous = |tp: &Partition| committed.get(tp).map(|c| c.offset);
    let mut plans = Vec::new();
    let mut push = |tp: &Partition, raw: i64| -> Result<(), PlanError> {
        let (target, clamped) = bounds(tp)?.clamp(raw);
        plans.push(PartitionPlan {
            partition: tp.clone(),
            previous: previous(tp),
            target: Some(target),
            clamped,
        });
        Ok(())
    };
    match spec.strategy {
        OffsetResetStrategy::Earliest => {
            for tp in committed.keys() {
                push(tp, bounds(tp)?.start)?;
            }
        }
        OffsetResetStrategy::Latest => {
            for tp in committed.keys() {
                push(tp, bounds(tp)?.end)?;
            }
        }
        OffsetResetStrategy::Timestamp | OffsetResetStrategy::ByDuration => {
            for tp in committed.keys() {
                // No record that recent: the log end.
                let target = match lookups.by_time.get(tp).copied().flatten() {
                    Some(offset) => offset,
                    None => bounds(tp)?.end,
                };
                push(tp, target)?;
            }
        }
        OffsetResetStrategy::Offset => {
            let explicit: BTreeMap<Partition, i64> = spec
                .partition_offsets
                .iter()
                .flatten()
                .map(|p| ((p.topic.clone(), p.partition), p.offset))
                .collect();
            if let Some(offset) = spec.offset {
                for tp in committed.keys().filter(|tp| !explicit.contains_key(*tp)) {
                    push(tp, offset)?;
                }
            }
            for (tp, offset) in &explicit {
                push(tp, *offset)?;
            }
            plans.sort_by(|a, b| a.partition.cmp(&b.partition));
        }
        OffsetResetStrategy::ShiftBy => {
            let shift = spec.shift_by.unwrap_or(0);
            for (tp, c) in committed {
                push(tp, c.offset.saturating_add(shift))?;
            }
        }
        OffsetResetStrategy::FromMapping => {
            let mapping = lookups
                .mapping
                .as_ref()
                .ok_or_else(|| PlanError("no offset mapping was loaded".into()))?;
            let targets = mapping.groups.get(group).ok_or_else(|| {
                PlanError(format!(
                    "group {group} is not in the offset mapping (it has {})",
                    names(mapping.groups.keys())
                ))
            })?;
            let scope = scope_filter(spec);
            for (topic, partitions) in targets {
                for (partition, offset) in partitions {
                    let tp = (topic.clone(), *partition);
                    if scope(&tp) {
                        push(&tp, *offset)?;
                    }
                }
            }
        }
        OffsetResetStrategy::HeaderBased => {
            let found = match lookups.by_header.get(group) {
                Some(Ok(found)) => found,
                Some(Err(why)) => return Err(PlanError(why.clone())),
                None if committed.is_empty() => return Ok(plans),
                None => return Err(PlanError(format!("group {group} was not searched"))),
            };
            for (tp, offset) in found {
                push(tp, *offset)?;
            }
        }
        OffsetResetStrategy::DeleteOffsets => {
            for tp in committed.keys() {
                plans.push(PartitionPlan {
                    partition: tp.clone(),
                    previous: previous(tp),
                    target: None,
                    clamped: false,
                });
            }
        }
    }
    Ok(plans)
}

fn names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "no groups".into()
    } else {
        format!("groups {}", names.join(", "))
    }
}

/// Whether a partition is in the spec's `topics` scope (everything when absent or empty).
fn scope_filter(spec: &KafkaOffsetResetSpec) -> impl Fn(&Partition) -> bool + '_ {
    move |(topic, partition)| match spec.topics.as_deref() {
        None | Some([]) => true,
        Some(topics) => topics.iter().any(|t| {
            &t.name == topic
                && t.partitions
                    .as_deref()
                    .is_none_or(|ps| ps.is_empty() || ps.contains(partition))
        }),
    }
}

/// The partitions whose committed offsets are read: the scoped topics (all partitions, or those
/// listed), or every non-internal topic of the cluster; plus explicit `partitionOffsets`.
pub fn scope_partitions(
    spec: &KafkaOffsetResetSpec,
    topics: &BTreeMap<String, i32>,
) -> Result<BTreeSet<Partition>, ResetError> {
    let mut scope = BTreeSet::new();
    match spec.topics.as_deref() {
        None | Some([]) => {
            for (topic, count) in topics.iter().filter(|(t, _)| !t.starts_with("__")) {
                scope.extend((0..*count).map(|p| (topic.clone(), p)));
            }
        }
        Some(scoped) => {
            for (index, t) in scoped.iter().enumerate() {
                let count = *topics.get(&t.name).ok_or_else(|| ResetError::UnknownTopic {
                    index,
                    topic: t.name.clone(),
                })?;
                match t.partitions.as_deref() {
                    None | Some([]) => scope.extend((0..count).map(|p| (t.name.clone(), p))),
                    Some(partitions) => {
                        for (i, p) in partitions.iter().enumerate() {
                            if *p >= count {
                                return Err(ResetError::UnknownPartition {
                                    field: format!("spec.topics[{index}].partitions[{i}]"),
                                    topic: t.name.clone(),
                                    partition: *p,
                                    count,
                                });
                            }
                            scope.insert((t.name.clone(), *p));
                        }
                    }
                }
            }
        }
    }
    for (i, p) in spec.partition_offsets.iter().flatten().enumerate() {
        let count = topics.get(&p.topic).copied().unwrap_or(0);
        if p.partition >= count {
            return Err(ResetError::UnknownPartition {
                field: format!("spec.partitionOffsets[{i}]"),
                topic: p.topic.clone(),
                partition: p.partition,
                count,
            });
        }
        scope.insert((p.topic.clone(), p.partition));
    }
    Ok(scope)
}

/// The point in time of the Timestamp and ByDuration strategies, in epoch milliseconds.
pub fn strategy_time(spec: &KafkaOffsetResetSpec, now: DateTime<Utc>) -> Result<Option<i64>, ResetError> {
    match spec.strategy {
        OffsetResetStrategy::Timestamp => {
            let text = spec.timestamp.as_deref().unwrap_or_default();
            let at = DateTime::parse_from_rfc3339(text).map_err(|e| ResetError::Time {
                field: "spec.timestamp",
                message: format!("{text:?} is not an RFC 3339 time: {e}"),
            })?;
            Ok(Some(at.timestamp_millis()))
        }
        OffsetResetStrategy::ByDuration => {
            let text = spec.by_duration.as_deref().unwrap_or_default();
            let millis = parse_duration_millis(text).ok_or_else(|| ResetError::Time {
                field: "spec.byDuration",
                message: format!("{text:?} is not an ISO-8601 duration like PT1H or P1DT12H"),
            })?;
            Ok(Some(now.timestamp_millis() - millis))
        }
        _ => Ok(None),
    }
}

/// Milliseconds of an ISO-8601 duration `PnDTnHnMn.nS` (the `--by-duration` subset).
pub fn parse_duration_millis(text: &str) -> Option<i64> {
    let rest = text.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut millis: f64 = 0.0;
    let mut any = false;
    if !days.is_empty() {
        millis += days.strip_suffix('D')?.parse::<u32>().ok()? as f64 * 86_400_000.0;
        any = true;
    }
    if let Some(mut t) = time {
        if t.is_empty() {
            return None;
        }
        for (unit, factor) in [('H', 3_600_000.0), ('M', 60_000.0), ('S', 1_000.0)] {
            if let Some(pos) = t.find(unit) {
                let value: f64 = t[..pos].parse().ok()?;
                if !value.is_finite() || value < 0.0 {
                    return None;
                }
                millis += value * factor;
                t = &t[pos + 1..];
                any = true;
            }
        }
        if !t.is_empty() {
            return None;
        }
    }
    any.then_some(millis as i64)
}

/// What was read of one group in step 1.
#[derive(Clone, Debug)]
struct GroupRead {
    description: GroupDescription,
    committed: BTreeMap<Partition, Committed>,
    /// All committed offsets of the group (DeleteOffsets keeps those outside the scope).
    all_committed: BTreeMap<Partition, Committed>,
}

/// Runs a KafkaOffsetReset and returns its final status.
pub async fn execute(reset: &KafkaOffsetReset, ctx: &Context) -> KafkaOffsetResetStatus {
    let started = Utc::now();
    let status = KafkaOffsetResetStatus {
        phase: Some(Phase::Running),
        start_time: Some(time(started)),
        groups_total: Some(reset.spec.consumer_groups.len() as i32),
        observed_generation: reset.metadata.generation,
        ..Default::default()
    };
    // Each attempt plans from its own start (ByDuration is back from then) and names its default
    // snapshot after it, so a retry never meets the snapshot an earlier attempt stored.
    // Every attempt writes into the one status; the lock hands it from one attempt to the next.
    let shared = tokio::sync::Mutex::new(status);
    let result = execution::attempts(reset.spec.execution.as_ref(), ctx, |attempt| {
        let shared = &shared;
        async move { run(reset, &attempt, Utc::now(), &mut *shared.lock().await).await }
    })
    .await;
    let mut status = shared.into_inner();
    if let Err(failure) = result {
        status.phase = Some(Phase::Failed);
        status.message = Some(failure.to_string());
    }
    status.completion_time = Some(time(Utc::now()));
    status
}

async fn run(
    reset: &KafkaOffsetReset,
    ctx: &Context,
    started: DateTime<Utc>,
    status: &mut KafkaOffsetResetStatus,
) -> Result<(), ResetError> {
    let spec = &reset.spec;
    let access = ClusterAccess::read(&spec.kafka_cluster, &ctx.secrets)?;
    // Every request to the cluster is sent again while it fails for a passing reason, within
    // execution.retryTimeoutSeconds.
    let policy = execution::Policy::of(spec.execution.as_ref());
    let cancel = &ctx.cancel;
    let admin = Arc::new(
        execution::request(&policy, RetryCause::KafkaUnreachable, cancel, || {
            kafka::group_admin(&access)
        })
        .await?,
    );
    let groups = &spec.consumer_groups;
    let total = groups.len() as u64;
    // Metadata and the groups' coordinators at once: the reads below need both.
    let (topics, ()) = execution::request(&policy, RetryCause::KafkaUnreachable, cancel, || {
        futures::future::try_join(admin.topics(), admin.find_coordinators(groups))
    })
    .await
    .map_err(KafkaError::from)?;
    let scope = scope_partitions(spec, &topics)?;
    let at_time = strategy_time(spec, started)?;
    let mapping = match (&spec.strategy, &spec.from_mapping) {
        (OffsetResetStrategy::FromMapping, Some(source)) => Some(load_mapping(source, ctx).await?),
        _ => None,
    };
    let parallelism = spec.parallelism.max(1) as usize;

    // 1. Read every group.
    ctx.report(0, Some(total), "reading groups");
    // DeleteOffsets reads every partition the group may have committed: its snapshot holds
    // them all, and a broker without OffsetDelete needs them to commit back what stays.
    let all: Option<Arc<BTreeSet<Partition>>> =
        (spec.strategy == OffsetResetStrategy::DeleteOffsets).then(|| {
            Arc::new(
                topics
                    .iter()
                    .filter(|(t, _)| !t.starts_with("__"))
                    .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
                    .collect(),
            )
        });
    let need_all = all.is_some();
    // States and offsets at once; the offsets of groups with members are then set aside unused.
    // A group whose offsets could not be read for a passing reason has them all read again.
    let (descriptions, mut fetched) =
        execution::request(&policy, RetryCause::KafkaUnreachable, cancel, || async {
            let (descriptions, fetched) = futures::future::join(
                admin.describe(groups),
                admin.committed_groups(groups, all.as_deref().unwrap_or(&scope), parallelism),
            )
            .await;
            let descriptions = descriptions?;
            match fetched
                .values()
                .filter_map(|r| r.as_ref().err())
                .find(|e| e.is_retryable())
            {
                Some(e) => Err(e.clone()),
                None => Ok((descriptions, fetched)),
            }
        })
        .await
        .map_err(KafkaError::from)?;
    fetched.retain(|group, _| descriptions.get(group).is_none_or(GroupDescription::is_inactive));
    let reads: BTreeMap<String, Result<GroupRead, String>> = groups
        .iter()
        .map(|group| {
            let description = descriptions
                .get(group)
                .cloned()
                .unwrap_or_else(GroupDescription::dead);
            let read = match fetched.remove(group) {
                None if !description.is_inactive() => Err(active_message(group, &description)),
                None => Err(format!("consumer group {group} was not read")),
                Some(Err(e)) => Err(e.to_string()),
                Some(Ok(everything)) => Ok(group_read(description, &scope, everything, need_all)),
            };
            (group.clone(), read)
        })
        .collect();

    // 2. Lookups shared by all groups, then one plan per group.
    let involved: BTreeSet<Partition> = reads
        .values()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|r| r.committed.keys().cloned())
        .chain(
            spec.partition_offsets
                .iter()
                .flatten()
                .map(|p| (p.topic.clone(), p.partition)),
        )
        .chain(mapping.iter().flat_map(|m| {
            m.groups.values().flat_map(|topics| {
                topics
                    .iter()
                    .flat_map(|(t, ps)| ps.keys().map(move |p| (t.clone(), *p)))
            })
        }))
        .filter(|tp| topics.get(&tp.0).is_some_and(|n| tp.1 < *n))
        .collect();
    let mut lookups = Lookups {
        mapping,
        ..Default::default()
    };
    let header_targets = match (&spec.strategy, &spec.header_based) {
        (OffsetResetStrategy::HeaderBased, Some(options)) => {
            let reads: BTreeMap<String, BTreeMap<Partition, Committed>> = reads
                .iter()
                .filter_map(|(g, r)| r.as_ref().ok().map(|r| (g.clone(), r.committed.clone())))
                .collect();
            let searched = header_searched_partitions(options, &reads, &topics);
            let bounds = execution::request(&policy, RetryCause::KafkaUnreachable, cancel, || {
                admin.log_bounds(&searched)
            })
            .await
            .map_err(KafkaError::from)?;
            let config = access.rdkafka_config();
            let options = options.clone();
            let topics = topics.clone();
            blocking(move || {
                let cluster = Cluster::new(&config)?;
                header_based_targets(&cluster, &options, &reads, &topics, &bounds)
            })
            .await?
        }
        _ => BTreeMap::new(),
    };
    let mut bound_partitions = involved.clone();
    bound_partitions.extend(
        header_targets
            .values()
            .filter_map(|r| r.as_ref().ok())
            .flat_map(|m| m.keys().cloned()),
    );
    lookups.by_header = header_targets;
    (lookups.bounds, lookups.by_time) =
        execution::request(&policy, RetryCause::KafkaUnreachable, cancel, || {
            let by_time = async {
                match at_time {
                    Some(millis) => admin.offsets_for_time(&involved, millis).await,
                    None => Ok(BTreeMap::new()),
                }
            };
            futures::future::try_join(admin.log_bounds(&bound_partitions), by_time)
        })
        .await
        .map_err(KafkaError::from)?;

    let mut results: BTreeMap<String, GroupResetResult> = BTreeMap::new();
    let mut plans: BTreeMap<String, (Vec<PartitionPlan>, GroupRead)> = BTreeMap::new();
    for group in groups {
        let outcome = match reads.get(group) {
            None => Err("not read".to_owned()),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(read)) if !read.description.is_inactive() => {
                Err(active_message(group, &read.description))
            }
            Some(Ok(read)) => {
                if read.committed.is_empty()
                    && read.description.state == "Dead"
                    && !matches!(
                        spec.strategy,
                        OffsetResetStrategy::FromMapping | OffsetResetStrategy::Offset
                    )
                {
                    Err(format!(
                        "consumer group {group} does not exist (no members, no committed offsets) in the cluster"
                    ))
                } else {
                    plan_group(spec, group, &read.committed, &lookups)
                        .map(|plan| (plan, read.clone()))
                        .map_err(|e| e.to_string())
                }
            }
        };
        match outcome {
            Ok((plan, read)) => {
                plans.insert(group.clone(), (plan, read));
            }
            Err(message) => {
                results.insert(group.clone(), failed(group, message));
            }
        }
    }

    // 3. With `approval: Manual`, the plan just made runs only if its hash was approved.
    if !spec.dry_run && spec.approval == Approval::Manual {
        let plan = reset_plan(groups, &plans, &results);
        let hash = approval::plan_hash(&plan);
        let shown = reset.status.as_ref().and_then(|s| s.plan_hash.as_deref());
        let request = approval::Request::of(spec.approval, &hash, shown, reset.metadata.annotations.as_ref());
        let verdict = approval::decide(&request);
        status.conditions =
            approval::approved_condition(&verdict, &hash, reset.metadata.generation, Utc::now())
                .map(|c| vec![c]);
        status.plan = Some(shown_plan(plan));
        status.plan_hash = Some(hash.clone());
        if let approval::Verdict::Wait(wait) = verdict {
            status.phase = Some(Phase::PendingApproval);
            status.message = Some(wait.message(&hash));
            status.refused_approval = wait
                .refused()
                .then(|| request.approve.unwrap_or_default().to_owned());
            status.groups_reset = Some(0);
            status.groups_failed = Some(0);
            return Ok(());
        }
    }

    let stop_after_failure = !spec.continue_on_error && !results.is_empty();
    if spec.dry_run || stop_after_failure {
        for (group, (plan, _)) in &plans {
            let result = if spec.dry_run && !stop_after_failure {
                planned(
                    group,
                    plan,
                    GroupResetOutcome::Planned,
                    "dry run: nothing committed",
                )
            } else {
                planned(
                    group,
                    plan,
                    GroupResetOutcome::Skipped,
                    "not reset: another group failed and continueOnError is false",
                )
            };
            results.insert(group.clone(), result);
        }
        finish(status, groups, results, spec.dry_run);
        return Ok(());
    }

    if ctx.cancel.is_cancelled() {
        return Err(ResetError::Cancelled);
    }

    // 4. Snapshot of every group that changes, before the first commit.
    let changing: Vec<&String> = plans
        .iter()
        .filter(|(_, (plan, _))| plan.iter().any(|p| p.target != p.previous))
        .map(|(g, _)| g)
        .collect();
    if spec.snapshot.enabled && !changing.is_empty() {
        let snapshot_id = spec
            .snapshot
            .snapshot_id
            .clone()
            .unwrap_or_else(|| default_snapshot_id(&ctx.resource.name, started));
        let mut snapshot = OffsetSnapshot {
            snapshot_id: snapshot_id.clone(),
            timestamp: Utc::now(),
            cluster: spec.kafka_cluster.bootstrap_servers.join(","),
            groups: BTreeMap::new(),
            source: Some(SnapshotSource {
                kind: "KafkaOffsetReset".into(),
                namespace: ctx.resource.namespace.clone(),
                name: ctx.resource.name.clone(),
                uid: ctx.resource.uid.clone(),
            }),
            expires_at: None,
        };
        let read_at = snapshot.timestamp.timestamp_millis();
        for group in &changing {
            if let Some((_, read)) = plans.get(*group) {
                let offsets = if need_all {
                    &read.all_committed
                } else {
                    &read.committed
                };
                snapshot.insert_group(group, offsets, read_at);
                // A group with nothing committed yet is recorded too, so a rollback knows it.
                snapshot.groups.entry((*group).clone()).or_default();
            }
        }
        let key = snapshot_key(&snapshot_id);
        let stored = async {
            let location = ctx.snapshot_location(
                spec.snapshot.storage.as_ref(),
                spec.execution.as_ref(),
                &ctx.resource.name,
            )?;
            location.put_new(&key, snapshot.to_bytes()).await?;
            Ok::<_, StorageError>(location.uri(&key))
        }
        .await
        .map_err(|source| ResetError::Snapshot {
            snapshot_id: snapshot_id.clone(),
            source: Box::new(source),
        })?;
        status.snapshot = Some(OffsetResetSnapshotStatus {
            snapshot_id: Some(snapshot_id),
            location: Some(stored),
        });
    }

    // 5. Commit, up to `parallelism` groups at once. Members may have joined since the read: the
    // groups are listed again right before (and Kafka refuses a commit from outside the group
    // while it has members).
    let planned_groups: Vec<String> = plans.keys().cloned().collect();
    let descriptions = execution::request(&policy, RetryCause::KafkaUnreachable, cancel, || {
        admin.describe(&planned_groups)
    })
    .await
    .map_err(KafkaError::from)?;
    let halted = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let continue_on_error = spec.continue_on_error;
    let committed: Vec<(String, GroupResetResult)> = stream::iter(plans)
        .map(|(group, (plan, read))| {
            let admin = admin.clone();
            let all = all.clone();
            let halted = halted.clone();
            let done = done.clone();
            let cancel = ctx.cancel.clone();
            let description = descriptions
                .get(&group)
                .cloned()
                .unwrap_or_else(GroupDescription::dead);
            let policy = &policy;
            async move {
                if halted.load(Ordering::SeqCst) || cancel.is_cancelled() {
                    let why = if cancel.is_cancelled() {
                        "not reset: the operation was cancelled"
                    } else {
                        "not reset: another group failed and continueOnError is false"
                    };
                    let result = planned(&group, &plan, GroupResetOutcome::Skipped, why);
                    return (group, result);
                }
                let outcome = commit_group(&admin, policy, &cancel, &group, &description, &plan, &read, all.as_deref()).await;
                let result = match outcome {
                    CommitOutcome::Applied(Applied::Done { read_back_after: None }) => {
                        planned(&group, &plan, GroupResetOutcome::Succeeded, "offsets committed")
                    }
                    CommitOutcome::Applied(Applied::Done {
                        read_back_after: Some(error),
                    }) => planned(
                        &group,
                        &plan,
                        GroupResetOutcome::Succeeded,
                        &format!("offsets committed: the commit failed ({error}), and reading the offsets back found them committed"),
                    ),
                    CommitOutcome::Applied(Applied::Failed { error, holds }) => {
                        not_applied(&group, &plan, &error, &holds)
                    }
                    CommitOutcome::Applied(unknown @ Applied::Unknown { .. }) => GroupResetResult {
                        group: group.clone(),
                        outcome: GroupResetOutcome::Failed,
                        message: unknown.failure(),
                        partitions_reset: None,
                        partitions: None,
                    },
                    CommitOutcome::Unchanged => planned(
                        &group,
                        &plan,
                        GroupResetOutcome::Skipped,
                        "already at the target offsets",
                    ),
                    CommitOutcome::NothingInScope => GroupResetResult {
                        group: group.clone(),
                        outcome: GroupResetOutcome::Skipped,
                        message: Some("no committed offsets in scope".into()),
                        partitions_reset: Some(0),
                        partitions: None,
                    },
                    CommitOutcome::Active(message) => failed(&group, message),
                };
                if result.outcome == GroupResetOutcome::Failed && !continue_on_error {
                    halted.store(true, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
                (group, result)
            }
        })
        .buffer_unordered(parallelism)
        .inspect(|_| ctx.report(done.load(Ordering::SeqCst), Some(total), "groups reset"))
        .collect()
        .await;
    let changed = committed
        .iter()
        .filter(|(_, r)| r.outcome == GroupResetOutcome::Succeeded)
        .count();
    results.extend(committed);
    finish(status, groups, results, false);
    if ctx.cancel.is_cancelled() {
        return Err(match changed {
            0 => ResetError::Cancelled,
            _ => ResetError::Interrupted {
                changed,
                total: groups.len(),
                snapshot: status.snapshot.as_ref().and_then(|s| s.snapshot_id.clone()),
            },
        });
    }
    Ok(())
}

/// What was read of a group: its committed offsets in scope, and all of them when kept.
fn group_read(
    description: GroupDescription,
    scope: &BTreeSet<Partition>,
    everything: BTreeMap<Partition, Committed>,
    keep_all: bool,
) -> GroupRead {
    let committed = everything
        .iter()
        .filter(|(tp, _)| scope.contains(*tp))
        .map(|(tp, c)| (tp.clone(), c.clone()))
        .collect();
    GroupRead {
        description,
        committed,
        all_committed: if keep_all { everything } else { BTreeMap::new() },
    }
}

fn active_message(group: &str, description: &GroupDescription) -> String {
    format!(
        "consumer group {group} is {} with {} active member(s): stop its consumers first; nothing of this group was changed",
        description.state, description.members
    )
}

enum CommitOutcome {
    /// The change was sent: what the broker holds.
    Applied(Applied),
    Unchanged,
    NothingInScope,
    Active(String),
}

#[allow(clippy::too_many_arguments)]
async fn commit_group(
    admin: &GroupAdmin,
    policy: &execution::Policy,
    cancel: &tokio_util::sync::CancellationToken,
    group: &str,
    description: &GroupDescription,
    plan: &[PartitionPlan],
    read: &GroupRead,
    all: Option<&BTreeSet<Partition>>,
) -> CommitOutcome {
    if plan.is_empty() {
        return CommitOutcome::NothingInScope;
    }
    if plan.iter().all(|p| p.target == p.previous) {
        return CommitOutcome::Unchanged;
    }
    if !description.is_inactive() {
        return CommitOutcome::Active(active_message(group, description));
    }
    let deletes: BTreeSet<Partition> = plan
        .iter()
        .filter(|p| p.target.is_none())
        .map(|p| p.partition.clone())
        .collect();
    let known = all.unwrap_or(&deletes);
    let offsets: BTreeMap<Partition, Committed> = plan
        .iter()
        .filter_map(|p| {
            p.target.map(|offset| {
                let metadata = read
                    .committed
                    .get(&p.partition)
                    .map(|c| c.metadata.clone())
                    .unwrap_or_default();
                (p.partition.clone(), Committed { offset, metadata })
            })
        })
        .collect();
    let change = GroupChange {
        group,
        deletes: &deletes,
        known,
        commits: &offsets,
    };
    CommitOutcome::Applied(group_commit::apply(admin, policy, cancel, &change).await)
}

/// A group whose change failed: each partition with the offset the broker holds as read back
/// (`newOffset`), those at their target counted as reset.
fn not_applied(
    group: &str,
    plan: &[PartitionPlan],
    error: &str,
    holds: &BTreeMap<Partition, Option<i64>>,
) -> GroupResetResult {
    let held = |p: &PartitionPlan| holds.get(&p.partition).copied().flatten();
    let reset = plan.iter().filter(|p| held(p) == p.target).count();
    GroupResetResult {
        group: group.to_owned(),
        outcome: GroupResetOutcome::Failed,
        message: Some(format!(
            "{error}; read back, {reset} of {} partition(s) hold their new offset (partitions[].newOffset: what the broker holds)",
            plan.len()
        )),
        partitions_reset: Some(reset as i32),
        partitions: Some(partition_results(plan, held)),
    }
}

/// The per-partition detail of a group's status, `new_offset` giving each partition's offset
/// after the reset.
fn partition_results(
    plan: &[PartitionPlan],
    new_offset: impl Fn(&PartitionPlan) -> Option<i64>,
) -> Vec<PartitionResetResult> {
    plan.iter()
        .take(MAX_PARTITIONS_IN_STATUS)
        .map(|p| PartitionResetResult {
            new_offset: new_offset(p),
            ..partition_result(p)
        })
        .collect()
}

fn failed(group: &str, message: String) -> GroupResetResult {
    GroupResetResult {
        group: group.to_owned(),
        outcome: GroupResetOutcome::Failed,
        message: Some(message),
        partitions_reset: Some(0),
        partitions: None,
    }
}

fn planned(
    group: &str,
    plan: &[PartitionPlan],
    outcome: GroupResetOutcome,
    message: &str,
) -> GroupResetResult {
    let counted = matches!(outcome, GroupResetOutcome::Succeeded | GroupResetOutcome::Planned);
    GroupResetResult {
        group: group.to_owned(),
        outcome,
        message: Some(message.to_owned()),
        partitions_reset: Some(if counted { plan.len() as i32 } else { 0 }),
        partitions: Some(partition_results(plan, |p| p.target)),
    }
}

/// The status entry of a partition's planned change.
fn partition_result(p: &PartitionPlan) -> PartitionResetResult {
    PartitionResetResult {
        topic: p.partition.0.clone(),
        partition: p.partition.1,
        previous_offset: p.previous,
        new_offset: p.target,
        clamped: p.clamped.then_some(true),
    }
}

/// The whole plan, every partition, in spec order: what the approval hash covers.
fn reset_plan(
    groups: &[String],
    plans: &BTreeMap<String, (Vec<PartitionPlan>, GroupRead)>,
    failures: &BTreeMap<String, GroupResetResult>,
) -> OffsetResetPlan {
    let groups = groups
        .iter()
        .map(|group| {
            let partitions: Vec<PartitionResetResult> = plans
                .get(group)
                .into_iter()
                .flat_map(|(plan, _)| plan)
                .map(partition_result)
                .collect();
            GroupPlan {
                group: group.clone(),
                error: failures.get(group).and_then(|r| r.message.clone()),
                partitions_total: partitions.len() as i32,
                partitions,
            }
        })
        .collect();
    OffsetResetPlan { groups }
}

/// The plan as status shows it: at most [`MAX_PARTITIONS_IN_STATUS`] partitions per group.
fn shown_plan(mut plan: OffsetResetPlan) -> OffsetResetPlan {
    for group in &mut plan.groups {
        group.partitions.truncate(MAX_PARTITIONS_IN_STATUS);
    }
    plan
}

fn finish(
    status: &mut KafkaOffsetResetStatus,
    groups: &[String],
    mut results: BTreeMap<String, GroupResetResult>,
    dry_run: bool,
) {
    let ordered: Vec<GroupResetResult> = groups.iter().filter_map(|g| results.remove(g)).collect();
    let count = |o: GroupResetOutcome| ordered.iter().filter(|r| r.outcome == o).count();
    let failed = count(GroupResetOutcome::Failed);
    let reset = count(GroupResetOutcome::Succeeded) + count(GroupResetOutcome::Planned);
    let skipped = count(GroupResetOutcome::Skipped);
    status.groups_reset = Some(reset as i32);
    status.groups_failed = Some(failed as i32);
    let (phase, message) = if failed == 0 {
        let verb = if dry_run { "planned" } else { "reset" };
        (
            Phase::Completed,
            format!("{reset} group(s) {verb}, {skipped} skipped"),
        )
    } else if reset > 0 {
        (
            Phase::PartiallyCompleted,
            format!("{reset} group(s) reset, {failed} failed, {skipped} skipped"),
        )
    } else {
        let first = ordered
            .iter()
            .find(|r| r.outcome == GroupResetOutcome::Failed)
            .and_then(|r| r.message.clone())
            .unwrap_or_default();
        (
            Phase::Failed,
            format!("{failed} group(s) failed, {skipped} skipped; first failure: {first}"),
        )
    };
    status.phase = Some(phase);
    status.message = Some(message);
    status.results = Some(ordered);
}

async fn load_mapping(source: &OffsetMappingSource, ctx: &Context) -> Result<OffsetMapping, ResetError> {
    let (bytes, uri) = if let (Some(storage), Some(path)) = (&source.storage, &source.path) {
        let location = Location::open(storage, &ctx.secrets, &ctx.storage)?;
        let uri = location.uri(path);
        let bytes = location
            .get(path)
            .await?
            .ok_or_else(|| ResetError::Mapping(format!("{uri} not found")))?;
        (bytes, uri)
    } else if let Some(key_ref) = &source.config_map_key_ref {
        let location = ConfigMapLocation::new(&key_ref.name, &ctx.storage.config_maps)?;
        let bytes = location
            .get_required(&key_ref.key)
            .await
            .map_err(|e| ResetError::Mapping(e.to_string()))?;
        (bytes, location.uri(&key_ref.key))
    } else if let Some(restore) = &source.restore_ref {
        return Err(ResetError::Mapping(format!(
            "restoreRef {} needs the KafkaRestore's status from the Kubernetes API, and there is none here; name the mapping file with storage + path instead",
            restore.name
        )));
    } else {
        return Err(ResetError::Mapping(
            "needs one of configMapKeyRef, storage + path and restoreRef".into(),
        ));
    };
    OffsetMapping::parse(&bytes, &uri).map_err(|e| ResetError::Mapping(e.to_string()))
}

/// The partitions the HeaderBased search reads: those the groups committed on, or with
/// scanAllPartitions every partition of their topics.
fn header_searched_partitions(
    options: &HeaderBasedReset,
    reads: &BTreeMap<String, BTreeMap<Partition, Committed>>,
    topics: &BTreeMap<String, i32>,
) -> BTreeSet<Partition> {
    reads
        .values()
        .flat_map(|c| c.keys())
        .flat_map(|(topic, partition)| {
            let count = topics.get(topic).copied().unwrap_or(0);
            if options.scan_all_partitions {
                (0..count).map(|p| (topic.clone(), p)).collect::<Vec<_>>()
            } else {
                vec![(topic.clone(), *partition)]
            }
        })
        .collect()
}

/// HeaderBased: per group and target partition, the first offset whose record carries an
/// original offset at or after the group's committed (source) offset, by binary search; a group
/// with a committed partition no searched partition holds matching records for fails, naming
/// each partition and what its records carry instead.
fn header_based_targets(
    cluster: &Cluster,
    options: &HeaderBasedReset,
    reads: &BTreeMap<String, BTreeMap<Partition, Committed>>,
    topics: &BTreeMap<String, i32>,
    bounds: &BTreeMap<Partition, LogBounds>,
) -> Result<HeaderTargets, KafkaError> {
    let reader = cluster.record_reader()?;
    let mut out = BTreeMap::new();
    for (group, committed) in reads {
        let mut targets: BTreeMap<Partition, i64> = BTreeMap::new();
        let mut untranslated: Vec<String> = Vec::new();
        for ((topic, source_partition), c) in committed {
            let searched: Vec<Partition> = if options.scan_all_partitions {
                let count = topics.get(topic).copied().unwrap_or(0);
                (0..count).map(|p| (topic.clone(), p)).collect()
            } else {
                vec![(topic.clone(), *source_partition)]
            };
            let mut why_not: Vec<String> = Vec::new();
            let mut translated = false;
            for target in searched {
                // With scanAllPartitions each searched partition is named.
                let named = |why: String| {
                    if options.scan_all_partitions {
                        format!("{}-{}: {why}", target.0, target.1)
                    } else {
                        why
                    }
                };
                let Some(b) = bounds.get(&target).copied() else {
                    why_not.push(named("no log offsets".into()));
                    continue;
                };
                let matcher = HeaderMatcher {
                    source_cluster: &options.source_cluster,
                    source_partition: options.scan_all_partitions.then_some(*source_partition),
                    seen: Default::default(),
                };
                match search_first_at_or_after(cluster, &reader, &target, b, c.offset, &matcher)? {
                    Some(found) => {
                        translated = true;
                        targets
                            .entry(target)
                            .and_modify(|t| *t = (*t).min(found))
                            .or_insert(found);
                    }
                    None => why_not.push(named(matcher.seen.borrow().why_no_match(&matcher))),
                }
            }
            if !translated {
                untranslated.push(format!(
                    "{topic}-{source_partition} (committed offset {}): {}",
                    c.offset,
                    why_not.join("; ")
                ));
            }
        }
        let result = if untranslated.is_empty() {
            Ok(targets)
        } else {
            Err(format!(
                "HeaderBased: no record restored from source cluster {:?} ({} and {} headers) tells where the committed offsets of group {group} are: {}; nothing of this group was changed",
                options.source_cluster,
                headers::SOURCE_CLUSTER,
                headers::ORIGINAL_OFFSET,
                untranslated.join("; ")
            ))
        };
        out.insert(group.clone(), result);
    }
    Ok(out)
}

/// Which restored records count for a search.
struct HeaderMatcher<'a> {
    source_cluster: &'a str,
    /// With scanAllPartitions: only records from this source partition.
    source_partition: Option<i32>,
    /// What the search read, to say why nothing matched.
    seen: std::cell::RefCell<SeenHeaders>,
}

/// The tracking headers of the records a search read.
#[derive(Default)]
struct SeenHeaders {
    records: u64,
    /// Records with an `x-original-offset` header.
    with_offset: u64,
    /// `x-source-cluster` values (the first few).
    clusters: BTreeSet<String>,
    /// `x-source-partition` values of the records from the wanted cluster (the first few).
    partitions: BTreeSet<i32>,
}

/// Distinct header values [`SeenHeaders`] keeps.
const SEEN_VALUES_KEPT: usize = 5;

impl SeenHeaders {
    /// Why none of the records read matched.
    fn why_no_match(&self, matcher: &HeaderMatcher<'_>) -> String {
        let wanted = matcher.source_cluster;
        if self.records == 0 {
            return "holds no records".into();
        }
        if self.with_offset == 0 {
            return format!(
                "none of its {} records carries the {} tracking header (a restore adds it with includeOriginalOffsetHeaders)",
                self.records,
                headers::ORIGINAL_OFFSET
            );
        }
        if !self.clusters.contains(wanted) {
            if self.clusters.is_empty() {
                return format!(
                    "its records carry {} but no {} header, so none is known to come from {wanted:?}",
                    headers::ORIGINAL_OFFSET,
                    headers::SOURCE_CLUSTER
                );
            }
            let found: Vec<String> = self.clusters.iter().map(|c| format!("{c:?}")).collect();
            return format!(
                "its records come from source cluster {} ({}), not {wanted:?}",
                found.join(", "),
                headers::SOURCE_CLUSTER
            );
        }
        let found: Vec<String> = self.partitions.iter().map(i32::to_string).collect();
        if matcher.source_partition.is_none() || found.is_empty() {
            return format!(
                "its records from {wanted:?} carry no {} header",
                headers::ORIGINAL_OFFSET
            );
        }
        format!(
            "none of its records from {wanted:?} comes from source partition {} (it holds source partitions {})",
            matcher.source_partition.unwrap_or_default(),
            found.join(", ")
        )
    }
}

impl HeaderMatcher<'_> {
    /// The original offset of a record that matches.
    fn original_offset(&self, headers: &[(String, Option<Vec<u8>>)]) -> Option<i64> {
        let value = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
        };
        let original = value(headers::ORIGINAL_OFFSET).and_then(headers::decode_i64);
        let cluster = value(headers::SOURCE_CLUSTER);
        let partition = value(headers::SOURCE_PARTITION).and_then(headers::decode_i32);
        if let Ok(mut seen) = self.seen.try_borrow_mut() {
            seen.records += 1;
            seen.with_offset += u64::from(original.is_some());
            if let Some(c) = cluster
                && seen.clusters.len() < SEEN_VALUES_KEPT
            {
                seen.clusters.insert(String::from_utf8_lossy(c).into_owned());
            }
            if cluster == Some(self.source_cluster.as_bytes())
                && let Some(p) = partition
                && seen.partitions.len() < SEEN_VALUES_KEPT
            {
                seen.partitions.insert(p);
            }
        }
        if cluster? != self.source_cluster.as_bytes() {
            return None;
        }
        if let Some(p) = self.source_partition
            && partition != Some(p)
        {
            return None;
        }
        original
    }
}

/// The smallest offset `x` in [start, end] such that the first matching record at or after `x`
/// has an original offset >= `source_offset` (`end` when none has); `None` when the partition
/// holds no matching record at all (it says nothing about this source partition). Binary search:
/// each probe reads forward from its offset to the next matching record.
fn search_first_at_or_after(
    cluster: &Cluster,
    reader: &crate::kafka::Consumer,
    partition: &Partition,
    bounds: LogBounds,
    source_offset: i64,
    matcher: &HeaderMatcher<'_>,
) -> Result<Option<i64>, KafkaError> {
    let extract = |headers: &[(String, Option<Vec<u8>>)]| matcher.original_offset(headers);
    if cluster
        .first_match_at(reader, partition, bounds.start, extract)?
        .is_none()
    {
        return Ok(None);
    }
    let (mut lo, mut hi) = (bounds.start, bounds.end);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let original = cluster.first_match_at(reader, partition, mid, extract)?;
        match original {
            Some((_, original)) if original >= source_offset => hi = mid,
            // The next matching record is still before the group's position, or there is none
            // (then every offset from mid on maps to the end).
            Some((offset, _)) => lo = offset + 1,
            None => hi = mid,
        }
    }
    Ok(Some(lo))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_of_the_kafka_tool_subset() {
        assert_eq!(parse_duration_millis("PT1H"), Some(3_600_000));
        assert_eq!(parse_duration_millis("P1DT12H"), Some(129_600_000));
        assert_eq!(parse_duration_millis("PT0.5S"), Some(500));
        assert_eq!(parse_duration_millis("PT1H30M15S"), Some(5_415_000));
        assert_eq!(parse_duration_millis("P2D"), Some(172_800_000));
        for bad in ["P", "PT", "1H", "PT1X", "P1W"] {
            assert_eq!(parse_duration_millis(bad), None, "{bad}");
        }
    }
}
