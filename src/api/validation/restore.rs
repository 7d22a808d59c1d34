//! Admission rules of KafkaRestore: validation of both versions, mutation of v1alpha1.
//!
//! Rules on the hub (v1beta1), for every version:
//! - `backupRef`: a KafkaBackup or a storage location with a backup id (shared rule
//!   [`common::backup_ref`]); `kafkaCluster`: the shared connection rules;
//! - `topics`: legal names or globs, each once; `topicMapping`: legal source and target names,
//!   every source among `topics` when topics are listed, no two topics restored into one target
//!   (neither two sources mapped to one target nor a source mapped onto a topic restored under
//!   its own name); `partitionMapping`: partition numbers, no two onto one; `repartitioning`:
//!   keyed by a topic the restore writes to, at least one partition;
//! - `pitr`: startTime and/or endTime, RFC 3339, start not after end;
//! - `createTopics.replicationFactor` in 1..=32767 and only when topics are created;
//! - `offsetReset`: consumer groups (at least one, unique), `timestamp` exactly with strategy
//!   Timestamp, `sourceCluster` only with HeaderBased;
//! - `snapshotBeforeRestore`: snapshot id an object-key segment, storage valid, retention at
//!   least an hour, no settings when disabled;
//! - `produce.batchSize` in 1..=100000 and `produce.timeoutMs` positive; `rateLimiting` limits at
//!   least 1 and concurrency in 1..=1024; `execution` retries 0..=100, deadline positive;
//! - warnings: restoring into same-named topics without `purgeTopics` (the engine refuses to
//!   append into a target topic that already holds records), purging every topic, resetting
//!   groups of repartitioned topics.
//!
//! Only v1alpha1 can get wrong: two spellings of one field with different values (`backupId` /
//! `backupRef.backupId`, `storage` / `backupRef.storage`, `targetCluster` / `kafkaCluster`, the four
//! spellings of the PITR end and the two of its start, `rollback.enabled` /
//! `rollback.snapshotBeforeRestore`, the S3 key names), epoch seconds passed as milliseconds,
//! `produceAcks` outside -1/0/1, a SASL Secret without mechanism, `backupRef.namespace` without
//! a name, an offset reset enabled without strategy or with strategy `offset`, and prior-art
//! fields: `rollback.autoRollbackOnFailure: true` is refused (not implemented), `pvc.create`
//! follows the shared storage rules of [`super::spoke`] (refused when enabled, warned about
//! otherwise); `resources`, `podTemplate` and `circuitBreaker` are accepted with a warning (they
//! meant nothing in-process, and the prior art never applied `circuitBreaker` either); plan-only
//! reset strategies (manual, dry-run) and disabled `pitr` / `offsetReset` blocks are warned about.
//!
//! Nothing may change once a restore has started: it runs once, its spec is the record of what
//! was restored, and every setting (even the rate limits) is read when it starts. It is stopped
//! by deleting it.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::spoke::{
    BACKUP_REF_PATHS, Defaults, JOB_PATHS, explain_backup_ref, explain_storage, mutate_cluster,
    mutate_rate_limiting, note_spelling, rename as rename_path, spelling, spoke_backup_ref, spoke_cluster,
    spoke_storage, storage_type_path,
};
use super::{Verdict, common, index, path};
use crate::api::{admission::Admit, v1alpha1 as a, v1beta1 as b};

impl Admit for b::KafkaRestore {
    /// A restore runs once and reads its spec when it starts: nothing may change afterwards.
    const MUTABLE_WHILE_STARTED: &'static [&'static str] = &[];

    fn spoke_path(hub_path: &str) -> String {
        spoke_path(hub_path)
    }

    fn validate_spoke(spoke: &a::KafkaRestore, verdict: &mut Verdict) {
        validate_spoke(&spoke.spec, verdict);
    }

    fn mutate_spoke(spoke: &mut a::KafkaRestore, warnings: &mut Vec<String>) {
        mutate_spoke(spoke, warnings);
    }

    fn validate_hub(hub: &Self, verdict: &mut Verdict) {
        validate_spec(&hub.spec, verdict);
    }
}

// ---------------------------------------------------------------------------------------------
// paths

/// v1beta1 path prefixes and their v1.0.0 v1alpha1 spelling, most specific first.
const PATHS: &[(&str, &str)] = &[
    (
        "spec.includeOriginalOffsetHeaders",
        "spec.includeOriginalOffsetHeader",
    ),
    (
        "spec.createTopics.replicationFactor",
        "spec.defaultReplicationFactor",
    ),
    ("spec.createTopics.enabled", "spec.createTopics"),
    (
        "spec.snapshotBeforeRestore.enabled",
        "spec.rollback.snapshotBeforeRestore",
    ),
    (
        "spec.snapshotBeforeRestore.retentionHours",
        "spec.rollback.snapshotRetentionHours",
    ),
    (
        "spec.snapshotBeforeRestore.storage.pvc.claimName",
        "spec.rollback.snapshotStorage.pvcName",
    ),
    (
        "spec.snapshotBeforeRestore.storage.pvc.subPath",
        "spec.rollback.snapshotStorage.subPath",
    ),
    (
        "spec.snapshotBeforeRestore.storage",
        "spec.rollback.snapshotStorage",
    ),
    ("spec.snapshotBeforeRestore", "spec.rollback"),
    ("spec.produce.batchSize", "spec.produceBatchSize"),
    ("spec.produce.acks", "spec.produceAcks"),
    ("spec.produce.timeoutMs", "spec.produceTimeoutMs"),
];

fn spoke_path(hub_path: &str) -> String {
    [PATHS, BACKUP_REF_PATHS, JOB_PATHS]
        .into_iter()
        .find_map(|table| rename_path(hub_path, table))
        .unwrap_or_else(|| storage_type_path(hub_path))
}

/// The path of a map entry: `spec.topicMapping[orders]`.
fn key(parent: &str, key: &str) -> String {
    format!("{parent}[{key}]")
}

// ---------------------------------------------------------------------------------------------
// v1beta1 rules

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The names the restore writes to when they are known (topics listed, no globs).
fn known_targets(s: &b::KafkaRestoreSpec) -> Option<Vec<String>> {
    let topics = s.topics.as_deref().filter(|t| !t.is_empty())?;
    if topics.iter().any(|t| is_glob(t)) {
        return None;
    }
    Some(
        topics
            .iter()
            .map(|t| {
                s.topic_mapping
                    .as_ref()
                    .and_then(|m| m.get(t))
                    .unwrap_or(t)
                    .clone()
            })
            .collect(),
    )
}

fn validate_spec(s: &b::KafkaRestoreSpec, v: &mut Verdict) {
    common::backup_ref(v, "spec.backupRef", &s.backup_ref);
    common::kafka_cluster(v, "spec.kafkaCluster", &s.kafka_cluster);
    let topics = s.topics.as_deref().unwrap_or(&[]);
    for (i, topic) in topics.iter().enumerate() {
        common::topic_pattern(v, &index("spec.topics", i), topic);
        if topics[..i].contains(topic) {
            v.error(index("spec.topics", i), "is listed twice", topic);
        }
    }
    topic_mapping(s, topics, v);
    partition_mapping(s, v);
    repartitioning(s, v);
    if let Some(pitr) = &s.pitr {
        pitr_window(pitr, v);
    }
    if let Some(create) = &s.create_topics
        && let Some(factor) = create.replication_factor
    {
        let at = "spec.createTopics.replicationFactor";
        if !(1..=32767).contains(&factor) {
            v.error(
                at,
                "must be at least 1 (and at most 32767): the number of copies of each partition created",
                factor,
            );
        } else if !create.enabled {
            v.error(at, "has no effect because no topic is created (createTopics is off): remove it or turn createTopics on", factor);
        }
    }
    if let Some(reset) = &s.offset_reset {
        offset_reset(s, reset, v);
    }
    if let Some(snapshot) = &s.snapshot_before_restore {
        snapshot_before_restore(snapshot, v);
    }
    let produce = &s.produce;
    if !(1..=100_000).contains(&produce.batch_size) {
        v.error(
            "spec.produce.batchSize",
            "must be between 1 and 100000 records per batch",
            produce.batch_size,
        );
    }
    if produce.timeout_ms < 1 {
        v.error(
            "spec.produce.timeoutMs",
            "must be a positive number of milliseconds",
            produce.timeout_ms,
        );
    }
    common::rate_limiting(v, "spec.rateLimiting", &s.rate_limiting);
    if let Some(execution) = &s.execution {
        common::execution(v, "spec.execution", execution);
    }
    same_name_safety(s, topics, v);
}

fn topic_mapping(s: &b::KafkaRestoreSpec, topics: &[String], v: &mut Verdict) {
    let Some(mapping) = &s.topic_mapping else { return };
    let mut by_target: BTreeMap<&str, &str> = BTreeMap::new();
    for (source, target) in mapping {
        let at = key("spec.topicMapping", source);
        common::topic_name(v, &at, source);
        common::topic_name(v, &at, target);
        if !topics.is_empty() && !topics.iter().any(|t| crate::kafka::topics::glob_match(t, source)) {
            v.error(
                &at,
                format!(
                    "renames a topic this restore does not restore: {source:?} is not among spec.topics ({}); add it there or remove the mapping",
                    topics.join(", ")
                ),
                source,
            );
        }
        if let Some(other) = by_target.insert(target, source) {
            v.error(
                &at,
                format!("maps {source:?} to {target:?}, the target of {other:?} too: two topics cannot be restored into one"),
                target,
            );
        }
    }
    // A listed topic that keeps its name must not also be the target of a renamed one.
    for topic in topics.iter().filter(|t| !is_glob(t) && !mapping.contains_key(*t)) {
        if let Some(source) = by_target.get(topic.as_str()) {
            v.error(
                key("spec.topicMapping", source),
                format!(
                    "maps {source:?} to {topic:?}, which spec.topics also restores under its own name: two topics cannot be restored into one"
                ),
                topic,
            );
        }
    }
}

fn partition_mapping(s: &b::KafkaRestoreSpec, v: &mut Verdict) {
    let Some(mapping) = &s.partition_mapping else {
        return;
    };
    let mut by_target: BTreeMap<i32, &str> = BTreeMap::new();
    for (source, target) in mapping {
        let at = key("spec.partitionMapping", source);
        if !source.parse::<i32>().is_ok_and(|p| p >= 0) {
            v.error(
                &at,
                "must be keyed by a source partition number (0, 1, ...)",
                source,
            );
        }
        if *target < 0 {
            v.error(&at, "must map to a partition number, 0 or more", target);
        } else if let Some(other) = by_target.insert(*target, source) {
            v.error(
                &at,
                format!(
                    "maps partitions {other} and {source} both to partition {target}: two partitions cannot be restored into one (use repartitioning to change the partition count)"
                ),
                target,
            );
        }
    }
}

fn repartitioning(s: &b::KafkaRestoreSpec, v: &mut Verdict) {
    let Some(map) = &s.repartitioning else { return };
    let targets = known_targets(s);
    for (topic, spec) in map {
        let at = key("spec.repartitioning", topic);
        common::topic_name(v, &at, topic);
        if spec.target_partitions < 1 {
            v.error(
                path(&at, "targetPartitions"),
                "must be at least 1",
                spec.target_partitions,
            );
        }
        if let Some(targets) = &targets
            && !targets.contains(topic)
        {
            v.error(
                &at,
                format!(
                    "is not a topic this restore writes to; repartitioning is keyed by the target topic name (after topicMapping): {}",
                    targets.join(", ")
                ),
                topic,
            );
        }
    }
}

fn pitr_window(pitr: &b::RestorePitrSpec, v: &mut Verdict) {
    if pitr.start_time.is_none() && pitr.end_time.is_none() {
        v.missing(
            "spec.pitr",
            "needs startTime, endTime or both: the window of record timestamps to restore",
        );
    }
    let start = pitr
        .start_time
        .as_deref()
        .and_then(|t| common::rfc3339(v, "spec.pitr.startTime", t));
    let end = pitr
        .end_time
        .as_deref()
        .and_then(|t| common::rfc3339(v, "spec.pitr.endTime", t));
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        v.error(
            "spec.pitr.startTime",
            format!(
                "is after spec.pitr.endTime ({}): the window would hold no record",
                end.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            ),
            &pitr.start_time,
        );
    }
}

fn offset_reset(s: &b::KafkaRestoreSpec, reset: &b::RestoreOffsetResetSpec, v: &mut Verdict) {
    use b::RestoreOffsetResetStrategy as S;
    common::consumer_groups(v, "spec.offsetReset.consumerGroups", &reset.consumer_groups, true);
    match (reset.strategy, &reset.timestamp) {
        (S::Timestamp, None) => v.missing(
            "spec.offsetReset.timestamp",
            "is required with strategy Timestamp: the RFC 3339 time to move the groups to",
        ),
        (S::Timestamp, Some(time)) => {
            common::rfc3339(v, "spec.offsetReset.timestamp", time);
        }
        (other, Some(time)) => v.error(
            "spec.offsetReset.timestamp",
            format!("belongs to strategy Timestamp, not {other:?}: remove it or change the strategy"),
            time,
        ),
        (_, None) => {}
    }
    if let Some(cluster) = &reset.source_cluster {
        if reset.strategy != S::HeaderBased {
            v.error(
                "spec.offsetReset.sourceCluster",
                format!(
                    "belongs to strategy HeaderBased, not {:?}: remove it or change the strategy",
                    reset.strategy
                ),
                cluster,
            );
        } else if cluster.trim().is_empty() {
            v.missing(
                "spec.offsetReset.sourceCluster",
                "must not be empty: the id of the cluster the backup was taken from",
            );
        }
    }
    if s.repartitioning.as_ref().is_some_and(|r| !r.is_empty()) {
        v.warn(
            "spec.offsetReset: offsets of repartitioned topics cannot be translated, so the groups are not moved on the topics listed in spec.repartitioning",
        );
    }
}

fn snapshot_before_restore(snapshot: &b::SnapshotBeforeRestoreSpec, v: &mut Verdict) {
    let at = "spec.snapshotBeforeRestore";
    if let Some(id) = &snapshot.snapshot_id {
        common::object_key_segment(v, &path(at, "snapshotId"), id);
    }
    if let Some(storage) = &snapshot.storage {
        common::storage(v, &path(at, "storage"), storage, common::ANY_STORAGE);
    }
    if let Some(hours) = snapshot.retention_hours
        && hours < 1
    {
        v.error(
            path(at, "retentionHours"),
            "must be at least 1 hour (leave it out to keep the snapshot until it is deleted)",
            hours,
        );
    }
    if !snapshot.enabled {
        let set = [
            ("snapshotId", snapshot.snapshot_id.is_some()),
            ("storage", snapshot.storage.is_some()),
            ("retentionHours", snapshot.retention_hours.is_some()),
        ];
        for (field, present) in set {
            if present {
                v.missing(path(at, field), "has no effect because the snapshot before the restore is turned off: remove it or turn the snapshot on");
            }
        }
    }
}

/// The engine refuses to append into a target topic that already holds records (appending would
/// duplicate them, the prior art's issue #48); at admission the topics' contents are unknown, so
/// restoring under the source names without `purgeTopics` is a warning, and so is purging
/// every topic.
fn same_name_safety(s: &b::KafkaRestoreSpec, topics: &[String], v: &mut Verdict) {
    let renamed = |t: &String| s.topic_mapping.as_ref().is_some_and(|m| m.contains_key(t));
    if s.purge_topics {
        if topics.is_empty() {
            v.warn(
                "spec.purgeTopics is true and spec.topics is empty: every target topic of the backup set is emptied before it is restored",
            );
        }
        return;
    }
    const FIX: &str = "the restore fails on a target topic that already holds records, instead of appending \
                       duplicates; set purgeTopics: true to replace their contents, or give them new names \
                       with topicMapping";
    if topics.is_empty() {
        v.warn(format!(
            "spec.purgeTopics is false and spec.topics is empty, so every topic of the backup set not renamed by spec.topicMapping is restored under its own name: {FIX}"
        ));
    } else {
        let same: Vec<&str> = topics
            .iter()
            .filter(|t| !renamed(t))
            .map(String::as_str)
            .collect();
        if !same.is_empty() {
            v.warn(format!(
                "spec.purgeTopics is false and {} restored under the same name ({}): {FIX}",
                if same.len() == 1 {
                    "one topic is"
                } else {
                    "topics are"
                },
                same.join(", ")
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// v1alpha1 rules

/// Refuses two spellings of one setting with different values, naming both.
fn conflict<T: PartialEq + serde::Serialize>(
    v: &mut Verdict,
    old_at: &str,
    old: Option<&T>,
    new_at: &str,
    new: Option<&T>,
) {
    if let (Some(old), Some(new)) = (old, new)
        && old != new
    {
        v.error(
            old_at,
            format!("conflicts with {new_at}: both spell the same setting with different values; keep only {new_at}"),
            old,
        );
    }
}

/// A point in time given in one of the v1alpha1 spellings.
enum Instant<'a> {
    Millis(i64),
    Text(&'a str),
}

impl Instant<'_> {
    fn parse(&self) -> Option<DateTime<Utc>> {
        match self {
            // Only plausible epoch milliseconds (13 digits); seconds are refused elsewhere.
            Instant::Millis(ms) if *ms > 0 && ms.to_string().len() == 13 => {
                DateTime::from_timestamp_millis(*ms)
            }
            Instant::Millis(_) => None,
            Instant::Text(t) => DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// The spellings of one point in time, in the order conversion prefers them.
fn end_spellings(p: &a::RestorePitrSpec) -> Vec<(&'static str, Instant<'_>)> {
    let mut out = Vec::new();
    if let Some(ms) = p.end_timestamp {
        out.push(("endTimestamp", Instant::Millis(ms)));
    }
    if let Some(t) = &p.end_time {
        out.push(("endTime", Instant::Text(t)));
    }
    if let Some(ms) = p.timestamp_millis {
        out.push(("timestampMillis", Instant::Millis(ms)));
    }
    if let Some(t) = &p.timestamp {
        out.push(("timestamp", Instant::Text(t)));
    }
    out
}

fn start_spellings(p: &a::RestorePitrSpec) -> Vec<(&'static str, Instant<'_>)> {
    let mut out = Vec::new();
    if let Some(ms) = p.start_timestamp {
        out.push(("startTimestamp", Instant::Millis(ms)));
    }
    if let Some(t) = &p.start_time {
        out.push(("startTime", Instant::Text(t)));
    }
    out
}

/// Every spelling must be valid; all must name the same instant. The first one (the one
/// conversion uses) is checked on the hub, the others here.
fn same_instant(v: &mut Verdict, spellings: &[(&'static str, Instant<'_>)], what: &str) {
    let Some((first, first_value)) = spellings.first() else {
        return;
    };
    let first_time = first_value.parse();
    for (field, value) in &spellings[1..] {
        let at = format!("spec.pitr.{field}");
        match value {
            Instant::Text(text) => {
                if common::rfc3339(v, &at, text).is_none() {
                    continue;
                }
            }
            Instant::Millis(_) => {}
        }
        if let (Some(a), Some(b)) = (first_time, value.parse())
            && a != b
        {
            v.error(
                &at,
                format!(
                    "conflicts with spec.pitr.{first} ({}): both give the {what} of the restore window; keep one",
                    a.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                ),
                match value {
                    Instant::Millis(ms) => Value::from(*ms),
                    Instant::Text(t) => Value::from(*t),
                },
            );
        }
    }
}

fn validate_spoke(s: &a::KafkaRestoreSpec, v: &mut Verdict) {
    let reference = s.backup_ref.as_ref();
    conflict(
        v,
        "spec.backupId",
        s.backup_id.as_ref(),
        "spec.backupRef.backupId",
        reference.and_then(|r| r.backup_id.as_ref()),
    );
    conflict(
        v,
        "spec.storage",
        s.storage.as_ref(),
        "spec.backupRef.storage",
        reference.and_then(|r| r.storage.as_ref()),
    );
    conflict(
        v,
        "spec.targetCluster",
        s.target_cluster.as_ref(),
        "spec.kafkaCluster",
        s.kafka_cluster.as_ref(),
    );
    if let Some(storage) = &s.storage {
        spoke_storage(v, "spec.storage", storage);
    }
    if let Some(reference) = reference {
        spoke_backup_ref(v, "spec.backupRef", reference);
    }
    spoke_cluster(v, "spec.targetCluster", s.target_cluster.as_ref());
    spoke_cluster(v, "spec.kafkaCluster", s.kafka_cluster.as_ref());
    if let Some(p) = &s.pitr {
        for (field, millis) in [
            ("timestampMillis", p.timestamp_millis),
            ("startTimestamp", p.start_timestamp),
            ("endTimestamp", p.end_timestamp),
        ] {
            if let Some(ms) = millis {
                common::epoch_millis(v, &format!("spec.pitr.{field}"), ms);
            }
        }
        same_instant(v, &end_spellings(p), "end");
        same_instant(v, &start_spellings(p), "start");
        let has_times = !end_spellings(p).is_empty() || !start_spellings(p).is_empty();
        if p.enabled == Some(false) && has_times {
            v.warn("spec.pitr.enabled is false: the times in spec.pitr are not used and the whole backup set is restored");
        }
    }
    if let Some(acks) = &s.produce_acks {
        let valid = match acks {
            IntOrString::Int(n) => matches!(n, -1..=1),
            IntOrString::String(text) => text.eq_ignore_ascii_case("all"),
        };
        if !valid {
            v.error(
                "spec.produceAcks",
                "must be -1 or all (every in-sync replica), 1 (the leader only) or 0 (no acknowledgement)",
                acks,
            );
        }
    }
    if let Some(reset) = &s.offset_reset {
        use a::RestoreOffsetResetStrategy as S;
        if reset.enabled == Some(true) {
            match reset.strategy {
                None => v.missing(
                    "spec.offsetReset.strategy",
                    "is required with enabled: true: earliest, latest, timestamp or header-based",
                ),
                Some(S::Offset) => v.error(
                    "spec.offsetReset.strategy",
                    "offset cannot be used in a restore (there is no field for the offset): restore first, then run a KafkaOffsetReset with strategy offset",
                    "offset",
                ),
                Some(plan @ (S::Manual | S::DryRun | S::DryRunSnake)) => v.warn(format!(
                    "spec.offsetReset.strategy {}: only plans the reset, no consumer group is moved; every restore records its offset mapping (status.offsetMappingPath), which a KafkaOffsetReset with strategy fromMapping applies later",
                    spelling(&plan)
                )),
                Some(_) => {}
            }
        } else if reset.strategy.is_some() || reset.consumer_groups.is_some() {
            v.warn("spec.offsetReset.enabled is not true: no consumer group is moved after the restore; set enabled: true to reset the listed groups");
        }
    }
    if let Some(r) = &s.rollback {
        conflict(
            v,
            "spec.rollback.enabled",
            r.enabled.as_ref(),
            "spec.rollback.snapshotBeforeRestore",
            r.snapshot_before_restore.as_ref(),
        );
        if r.auto_rollback_on_failure == Some(true) {
            v.error(
                "spec.rollback.autoRollbackOnFailure",
                "is not implemented: consumer offsets are never rolled back automatically (the prior art declared it and never did it either); keep snapshotBeforeRestore and, if the restore fails, run a KafkaOffsetRollback with operation rollback and the snapshot id from status",
                true,
            );
        }
    }
    if s.resources.is_some() {
        v.warn("spec.resources is ignored: restores run inside the operator process, not in a Job of their own; size the operator's Deployment instead");
    }
    if s.pod_template.is_some() {
        v.warn("spec.podTemplate is ignored: restores run inside the operator process, not in a Pod of their own");
    }
    if s.circuit_breaker.is_some() {
        v.warn("spec.circuitBreaker is ignored: the Kafka client retries with backoff by itself, and spec.job bounds the retries and the run time (the prior art never applied it to restores either)");
    }
}

// ---------------------------------------------------------------------------------------------
// v1alpha1 mutation

fn mutate_spoke(spoke: &mut a::KafkaRestore, w: &mut Vec<String>) {
    let s = &mut spoke.spec;
    let mut defaults = Defaults::default();
    let reference = s.backup_ref.as_ref();
    note_spelling(
        s.backup_id.as_ref(),
        reference.and_then(|r| r.backup_id.as_ref()),
        "spec.backupId",
        "spec.backupRef.backupId",
        w,
    );
    note_spelling(
        s.storage.as_ref(),
        reference.and_then(|r| r.storage.as_ref()),
        "spec.storage",
        "spec.backupRef.storage",
        w,
    );
    note_spelling(
        s.target_cluster.as_ref(),
        s.kafka_cluster.as_ref(),
        "spec.targetCluster",
        "spec.kafkaCluster",
        w,
    );
    // The connection in use: kafkaCluster, else the pre-1.0 targetCluster.
    match (s.kafka_cluster.as_mut(), s.target_cluster.as_mut()) {
        (Some(cluster), _) => mutate_cluster("spec.kafkaCluster", cluster, &mut defaults),
        (None, Some(cluster)) => mutate_cluster("spec.targetCluster", cluster, &mut defaults),
        (None, None) => {}
    }
    if let Some(reference) = &s.backup_ref {
        explain_backup_ref("spec.backupRef", reference, w);
    }
    if let Some(storage) = &s.storage {
        explain_storage("spec.storage", storage, w);
    }
    if let Some(p) = &s.pitr {
        explain_pitr(p, w);
    }
    if s.include_original_offset_header.is_none() {
        s.include_original_offset_header = Some(false);
        w.push(
            "spec.includeOriginalOffsetHeader was set to false, the default: restored records keep only their own headers (the v1.0.0 operator always added x-original-offset and x-original-timestamp; set it to true to keep them)"
                .into(),
        );
    }
    if let Some(reset) = s.offset_reset.as_mut() {
        use a::RestoreOffsetResetStrategy as S;
        if reset.enabled.is_none() {
            reset.enabled = Some(false);
            w.push("spec.offsetReset.enabled was set to false, the documented default: no consumer group is moved; set it to true to reset the listed groups".into());
        }
        let read_as = match reset.strategy {
            Some(S::HeaderBased) => Some(("headerBased", S::HeaderBasedKebab, "its v1.0.0 spelling")),
            Some(S::Auto) => Some(("auto", S::HeaderBasedKebab, "the same behaviour")),
            Some(S::ClusterScan) => Some(("cluster-scan", S::HeaderBasedKebab, "the same behaviour")),
            Some(S::TimestampBased) => Some(("timestamp-based", S::Timestamp, "the same strategy")),
            Some(S::DryRunSnake) => Some(("dry_run", S::DryRun, "the same strategy")),
            _ => None,
        };
        if let Some((old, new, why)) = read_as {
            w.push(format!(
                "spec.offsetReset.strategy {old} is read as {} ({why})",
                spelling(&new)
            ));
        }
    }
    if let Some(r) = &s.rollback {
        note_spelling(
            r.enabled.as_ref(),
            r.snapshot_before_restore.as_ref(),
            "spec.rollback.enabled",
            "spec.rollback.snapshotBeforeRestore",
            w,
        );
    }
    mutate_rate_limiting("spec.rateLimiting", &mut s.rate_limiting, w, &mut defaults);
    for (topic, r) in s.repartitioning.iter_mut().flatten() {
        defaults.set(
            &mut r.strategy,
            &path(&key("spec.repartitioning", topic), "strategy"),
            a::RepartitionStrategy::Murmur2,
        );
    }
    let produce = b::ProduceSpec::default();
    defaults.set(
        &mut s.produce_batch_size,
        "spec.produceBatchSize",
        produce.batch_size,
    );
    defaults.set(&mut s.produce_acks, "spec.produceAcks", IntOrString::Int(-1));
    defaults.set(
        &mut s.produce_timeout_ms,
        "spec.produceTimeoutMs",
        produce.timeout_ms,
    );
    defaults.set(&mut s.purge_topics, "spec.purgeTopics", false);
    defaults.set(&mut s.auto_consumer_groups, "spec.autoConsumerGroups", false);
    defaults.set(&mut s.dry_run, "spec.dryRun", false);
    defaults.finish(w);
}

/// Explains the pre-1.0 and epoch spellings of the window's ends, which v1beta1 reads as
/// `startTime` / `endTime` in RFC 3339; only valid values that agree (validation refuses others).
fn explain_pitr(p: &a::RestorePitrSpec, w: &mut Vec<String>) {
    if p.enabled == Some(true) {
        w.push(
            "spec.pitr.enabled is a pre-1.0 setting: since v1.0.0 the times in spec.pitr turn point-in-time recovery on"
                .into(),
        );
    }
    for (spellings, v1_field) in [(end_spellings(p), "endTime"), (start_spellings(p), "startTime")] {
        let parsed: Vec<Option<DateTime<Utc>>> = spellings.iter().map(|(_, i)| i.parse()).collect();
        let agree = parsed.iter().all(Option::is_some) && parsed.windows(2).all(|pair| pair[0] == pair[1]);
        if !agree {
            continue;
        }
        for (field, instant) in &spellings {
            match instant {
                _ if *field == v1_field => {}
                Instant::Text(_) => w.push(format!(
                    "spec.pitr.{field} is the pre-1.0 spelling of spec.pitr.{v1_field}: kept as written and read as spec.pitr.{v1_field}"
                )),
                Instant::Millis(ms) => w.push(format!(
                    "spec.pitr.{field} {ms} is read as spec.pitr.{v1_field} {:?}, the same instant in RFC 3339 (the form v1beta1 stores)",
                    parsed[0].map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)).unwrap_or_default()
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::validation::testing;
    use crate::api::{
        admission::{mutate, validate},
        conversion::convert,
    };

    fn alpha(spec: Value) -> Value {
        testing::alpha("KafkaRestore", spec)
    }

    fn beta(spec: Value) -> Value {
        testing::beta("KafkaRestore", spec)
    }

    #[test]
    fn pre_1_0_spellings_are_kept_explained_and_read_as_v1_0_0() {
        let object = alpha(json!({
            "backupId": "b-1",
            "storage": {"s3": {"bucket": "x", "credentialsSecret": {"name": "s", "accessKeyKey": "ak"}}},
            "targetCluster": {"bootstrapServers": ["k:9092"]},
            "pitr": {"enabled": true, "timestamp": "2024-12-01T10:30:00+01:00", "timestampMillis": 1_733_045_400_000_i64,
                     "startTimestamp": 1_733_040_000_000_i64},
            "offsetReset": {"enabled": true, "strategy": "headerBased", "consumerGroups": ["g"]},
            "rollback": {"enabled": true, "snapshotId": "snap"},
            "rateLimiting": {"recordsPerSec": 0},
        }));
        let mutation = mutate(&object).unwrap();
        let spec = &mutation.object["spec"];
        // Everything written stays as written; defaults are added where they mean what their
        // absence means (not rollback.snapshotBeforeRestore, a second spelling of rollback.enabled).
        assert!(testing::contains(spec, &object["spec"]), "{spec:#}");
        assert_eq!(spec.get("backupRef"), None);
        assert_eq!(spec.get("kafkaCluster"), None);
        assert_eq!(spec["targetCluster"]["securityProtocol"], "PLAINTEXT");
        assert_eq!(spec["rollback"], json!({"enabled": true, "snapshotId": "snap"}));
        assert_eq!(
            spec["rateLimiting"],
            json!({"recordsPerSec": 0, "maxConcurrentPartitions": 4})
        );
        assert_eq!(spec["produceAcks"], -1);
        // One sentence per spelling or default, each naming its field, none saying it removed
        // something.
        for prefix in [
            "spec.backupId is the pre-1.0 spelling of spec.backupRef.backupId",
            "spec.storage is the pre-1.0 spelling of spec.backupRef.storage",
            "spec.targetCluster is the pre-1.0 spelling of spec.kafkaCluster",
            "spec.pitr.enabled is a pre-1.0 setting",
            "spec.pitr.timestamp is the pre-1.0 spelling of spec.pitr.endTime",
            "spec.pitr.timestampMillis 1733045400000 is read as spec.pitr.endTime \"2024-12-01T09:30:00Z\"",
            "spec.pitr.startTimestamp 1733040000000 is read as spec.pitr.startTime \"2024-12-01T08:00:00Z\"",
            "spec.offsetReset.strategy headerBased is read as header-based",
            "spec.rollback.enabled is the pre-1.0 spelling of spec.rollback.snapshotBeforeRestore",
            "spec.rateLimiting.recordsPerSec: 0 is read as no limit",
            "spec.includeOriginalOffsetHeader was set to false",
            "spec.storage.s3.credentialsSecret.accessKeyKey is the pre-1.0 spelling",
            "spec.storage.storageType is not set: the location is read as s3",
            "made the documented defaults explicit",
        ] {
            assert_eq!(
                mutation.warnings.iter().filter(|w| w.starts_with(prefix)).count(),
                1,
                "{prefix}: {:#?}",
                mutation.warnings
            );
        }
        assert_eq!(mutation.warnings.len(), 14, "{:#?}", mutation.warnings);
        assert!(
            !mutation
                .warnings
                .iter()
                .any(|w| w.contains("removed") || w.contains("rewritten"))
        );
        let verdict = validate(&mutation.object, None).unwrap();
        assert!(verdict.is_allowed(), "{}", verdict.message());
        // The unmutated object is judged the same way.
        assert!(validate(&object, None).unwrap().is_allowed());
        // What executes is the v1.0.0 reading; converting back gives the spelling as written.
        let hub = convert(mutation.object.clone(), "kafka.oso.sh/v1beta1").unwrap();
        let hub_spec = &hub["spec"];
        assert_eq!(hub_spec["backupRef"]["backupId"], "b-1");
        assert_eq!(hub_spec["backupRef"]["storage"]["type"], "S3");
        assert_eq!(
            hub_spec["backupRef"]["storage"]["s3"]["credentialsSecret"]["accessKeyIdKey"],
            "ak"
        );
        assert_eq!(hub_spec["kafkaCluster"]["bootstrapServers"], json!(["k:9092"]));
        assert_eq!(
            hub_spec["pitr"],
            json!({"endTime": "2024-12-01T09:30:00Z", "startTime": "2024-12-01T08:00:00Z"})
        );
        assert_eq!(hub_spec["offsetReset"]["strategy"], "HeaderBased");
        assert_eq!(hub_spec["snapshotBeforeRestore"]["enabled"], true);
        assert_eq!(hub_spec["rateLimiting"], json!({"maxConcurrentPartitions": 4}));
        assert_eq!(convert(hub, "kafka.oso.sh/v1alpha1").unwrap(), mutation.object);
    }

    #[test]
    fn invalid_epoch_values_are_not_rewritten() {
        let object = alpha(json!({
            "backupRef": {"name": "b"}, "kafkaCluster": {"bootstrapServers": ["k:9092"]}, "purgeTopics": true,
            "pitr": {"endTimestamp": 1_733_045_400_i64},
        }));
        let mutation = mutate(&object).unwrap();
        assert_eq!(
            mutation.object["spec"]["pitr"],
            json!({"endTimestamp": 1_733_045_400_i64})
        );
        let verdict = validate(&mutation.object, None).unwrap();
        assert_eq!(verdict.errors.len(), 1, "{verdict:?}");
        assert!(
            verdict.errors[0]
                .to_string()
                .starts_with("spec.pitr.endTimestamp: looks like seconds")
        );
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let verdict = validate(
            &beta(json!({
                "backupRef": {},
                "kafkaCluster": {"bootstrapServers": ["kafka"]},
                "topics": ["a b"],
                "pitr": {"startTime": "x"},
                "produce": {"batchSize": 0, "timeoutMs": 0},
                "createTopics": {"replicationFactor": 0},
            })),
            None,
        )
        .unwrap();
        let paths: Vec<&str> = verdict.errors.iter().map(|e| e.path.as_str()).collect();
        for expected in [
            "spec.backupRef",
            "spec.kafkaCluster.bootstrapServers[0]",
            "spec.topics[0]",
            "spec.pitr.startTime",
            "spec.produce.batchSize",
            "spec.produce.timeoutMs",
            "spec.createTopics.replicationFactor",
        ] {
            assert!(paths.contains(&expected), "{expected} missing from {paths:?}");
        }
    }

    #[test]
    fn same_name_restores_warn_unless_purged_or_renamed() {
        let base = json!({"backupRef": {"kafkaBackupRef": {"name": "b"}}, "kafkaCluster": {"bootstrapServers": ["k:9092"]}});
        let warns = |extra: Value| {
            let mut spec = base.clone();
            for (k, v) in extra.as_object().unwrap() {
                spec[k] = v.clone();
            }
            let verdict = validate(&beta(spec), None).unwrap();
            assert!(verdict.is_allowed(), "{}", verdict.message());
            verdict.warnings.iter().any(|w| w.contains("restored under"))
        };
        assert!(warns(json!({})));
        assert!(warns(json!({"topics": ["a", "b"], "topicMapping": {"a": "a2"}})));
        assert!(!warns(json!({"topics": ["a"], "topicMapping": {"a": "a2"}})));
        assert!(!warns(json!({"purgeTopics": true})));
        assert!(warns(json!({"topics": ["a-*"], "topicMapping": {"a-1": "b-1"}})));
    }

    #[test]
    fn paths_use_the_v1alpha1_spelling() {
        assert_eq!(spoke_path("spec.produce.batchSize"), "spec.produceBatchSize");
        assert_eq!(
            spoke_path("spec.createTopics.replicationFactor"),
            "spec.defaultReplicationFactor"
        );
        assert_eq!(
            spoke_path("spec.backupRef.kafkaBackupRef.name"),
            "spec.backupRef.name"
        );
        assert_eq!(
            spoke_path("spec.backupRef.storage.type"),
            "spec.backupRef.storage.storageType"
        );
        assert_eq!(
            spoke_path("spec.backupRef.storage.s3.bucket"),
            "spec.backupRef.storage.s3.bucket"
        );
        assert_eq!(
            spoke_path("spec.snapshotBeforeRestore.storage.pvc.claimName"),
            "spec.rollback.snapshotStorage.pvcName"
        );
        assert_eq!(
            spoke_path("spec.execution.deadlineSeconds"),
            "spec.job.activeDeadlineSeconds"
        );
        assert_eq!(spoke_path("spec.producer"), "spec.producer");
        assert_eq!(spoke_path("spec.topicMapping[a.b]"), "spec.topicMapping[a.b]");
    }

    #[test]
    fn nothing_changes_once_started() {
        let old = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore", "metadata": {"name": "r"},
            "spec": {"backupRef": {"kafkaBackupRef": {"name": "b"}}, "kafkaCluster": {"bootstrapServers": ["k:9092"]},
                     "purgeTopics": true},
            "status": {"phase": "Running"}});
        let mut new = old.clone();
        new["spec"]["rateLimiting"] = json!({"recordsPerSec": 10});
        let verdict = validate(&new, Some(&old)).unwrap();
        assert!(
            verdict
                .message()
                .contains("immutable once the KafkaRestore has started"),
            "{}",
            verdict.message()
        );
    }

    #[test]
    fn status_round_trips_with_both_spellings() {
        let object = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore", "metadata": {"name": "r"},
            "spec": {"backupRef": {"kafkaBackupRef": {"name": "b"}}, "kafkaCluster": {"bootstrapServers": ["k:9092"]}},
            "status": {"phase": "Completed", "backupId": "b-1", "recordsRestored": 10, "etaSeconds": 3,
                       "restoredTopics": [{"name": "orders", "records": 10}],
                       "throughput": {"recordsPerSecond": 5.0},
                       "snapshot": {"snapshotId": "s", "location": "configmap://r/s.json"}}});
        let hub: b::KafkaRestore = serde_json::from_value(object).unwrap();
        let hub = serde_json::to_value(hub).unwrap();
        let down = convert(hub.clone(), "kafka.oso.sh/v1alpha1").unwrap();
        let status = &down["status"];
        assert_eq!(
            (
                status["restoredRecords"].clone(),
                status["recordsRestored"].clone()
            ),
            (json!(10), json!(10))
        );
        assert_eq!(status["rollbackSnapshotId"], "s");
        assert_eq!(status["rollback"]["snapshotPath"], "configmap://r/s.json");
        assert_eq!(status["etaMs"], 3000);
        assert_eq!(convert(down, "kafka.oso.sh/v1beta1").unwrap(), hub);
    }
}
