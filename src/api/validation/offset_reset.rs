//! Admission rules of KafkaOffsetReset: validation of both versions, mutation of v1alpha1.
//!
//! Rules (v1beta1 paths; on v1alpha1 objects the v1.0.0 spelling of the field is named):
//! - `kafkaCluster`: brokers as host:port, protocol/SASL/TLS consistency (shared rules);
//! - `consumerGroups`: at least one, none empty or listed twice;
//! - `topics`: legal Kafka names, listed once; partitions non-negative, listed once;
//! - `strategy`: the strategy's member is required (Timestamp: an RFC 3339 `timestamp`; Offset: a
//!   non-negative `offset` and/or `partitionOffsets`; HeaderBased: `headerBased.sourceCluster`;
//!   FromMapping: exactly one mapping source; ShiftBy: `shiftBy`; ByDuration: an ISO-8601
//!   `byDuration`), and the members of the other strategies are refused, not ignored;
//! - `snapshot`: `snapshotId` a valid object-key segment, and id/storage only when enabled;
//! - `parallelism` within 1..=1000; `execution` within range.
//!
//! v1alpha1 only: a strategy must be spelled (`resetStrategy`, or `strategy`); two spellings of
//! one field must agree (`strategy`/`resetStrategy`, `timestamp`/`timestampMillis`/
//! `resetTimestamp`, `offset`/`resetOffset`, `createSnapshot`/`snapshotBeforeReset`,
//! `mappingConfigMap`/`offsetMappingRef`); epoch milliseconds have 13 digits (10 digits "look like
//! seconds"); `offsetMappingRef.path` without `pvcName` (a file on the operator pod) is refused;
//! `resources` is accepted with a warning (it meant a Job pod's resources).

use chrono::SecondsFormat;

use super::spoke::{Defaults, JOB_PATHS, mutate_cluster, note_spelling, rename, spelling, spoke_cluster};
use super::{Verdict, common, index, path};
use crate::api::{
    admission::Admit,
    conversion::common::rfc3339_to_millis,
    v1alpha1 as alpha,
    v1beta1::{self as beta, OffsetResetStrategy as Strategy},
};

const SPOKE_PATHS: &[(&str, &str)] = &[
    ("spec.strategy", "spec.resetStrategy"),
    ("spec.offset", "spec.resetOffset"),
    ("spec.headerBased.sourceCluster", "spec.sourceCluster"),
    ("spec.headerBased.scanAllPartitions", "spec.scanAllPartitions"),
    ("spec.headerBased", "spec.sourceCluster"),
    ("spec.fromMapping.configMapKeyRef", "spec.mappingConfigMap"),
    (
        "spec.fromMapping.restoreRef.name",
        "spec.offsetMappingRef.restoreName",
    ),
    ("spec.fromMapping.restoreRef", "spec.offsetMappingRef.restoreName"),
    (
        "spec.fromMapping.storage.pvc.claimName",
        "spec.offsetMappingRef.pvcName",
    ),
    ("spec.fromMapping.storage", "spec.offsetMappingRef.pvcName"),
    ("spec.fromMapping.path", "spec.offsetMappingRef.path"),
    ("spec.fromMapping", "spec.offsetMappingRef"),
    ("spec.snapshot.enabled", "spec.snapshotBeforeReset"),
    ("spec.snapshot.snapshotId", "spec.snapshotId"),
    ("spec.snapshot", "spec.snapshotBeforeReset"),
];

/// A reset is one operation: once it has started, what it was asked to do is fixed, and no
/// field can stop it half-way (there is no suspend: a group's offsets are committed at once).
/// Nothing may change; to reset again, create a new KafkaOffsetReset.
impl Admit for beta::KafkaOffsetReset {
    const MUTABLE_WHILE_STARTED: &'static [&'static str] = &[];

    fn spoke_path(hub_path: &str) -> String {
        // spec.topics[i].name: v1alpha1 lists the names themselves.
        if let Some(topic) = hub_path
            .strip_prefix("spec.topics[")
            .and_then(|p| p.strip_suffix("].name"))
            && topic.chars().all(|c| c.is_ascii_digit())
        {
            return format!("spec.topics[{topic}]");
        }
        rename(hub_path, SPOKE_PATHS)
            .or_else(|| rename(hub_path, JOB_PATHS))
            .unwrap_or_else(|| hub_path.to_owned())
    }

    fn validate_spoke(spoke: &alpha::KafkaOffsetReset, v: &mut Verdict) {
        let spec = &spoke.spec;
        spelled_strategy(v, spec);
        times(v, spec);
        if let (Some(offset), Some(reset_offset)) = (spec.offset, spec.reset_offset)
            && offset != reset_offset
        {
            v.error(
                "spec.offset",
                format!("conflicts with spec.resetOffset ({reset_offset}): both give the offset to reset to; keep one"),
                offset,
            );
        }
        if let (Some(create), Some(before)) = (spec.create_snapshot, spec.snapshot_before_reset)
            && create != before
        {
            v.error(
                "spec.createSnapshot",
                format!("conflicts with spec.snapshotBeforeReset ({before}): both say whether to snapshot first; keep one"),
                create,
            );
        }
        if let Some(strategy) = spec.spelled_strategy() {
            foreign_members(v, spec, strategy);
        }
        if matches!(spec.spelled_strategy(), Some(Strategy::FromMapping) | None) {
            mapping_sources(v, spec);
        }
        spoke_cluster(v, "spec.kafkaCluster", spec.kafka_cluster.as_ref());
        if spec.resources.is_some() {
            v.warn(
                "spec.resources has no effect: the reset runs inside the operator, not in a Job pod; remove it",
            );
        }
    }

    fn mutate_spoke(spoke: &mut alpha::KafkaOffsetReset, warnings: &mut Vec<String>) {
        let spec = &mut spoke.spec;
        explain_pre_1_0(spec, warnings);
        let mut defaults = Defaults::default();
        if let Some(cluster) = &mut spec.kafka_cluster {
            mutate_cluster("spec.kafkaCluster", cluster, &mut defaults);
        }
        defaults.finish(warnings);
        if spec.parallelism.is_none() {
            spec.parallelism = Some(alpha::KafkaOffsetResetSpec::DEFAULT_PARALLELISM);
            warnings.push(format!(
                "spec.parallelism was set to {}, the default number of groups reset concurrently (the v1.0.0 \
                 release declared 50 but reset one group at a time)",
                alpha::KafkaOffsetResetSpec::DEFAULT_PARALLELISM
            ));
        }
        if spec.dry_run.is_none() {
            spec.dry_run = Some(false);
            warnings.push("spec.dryRun was set to false, the default: the new offsets are committed".into());
        }
        if spec.continue_on_error.is_none() {
            spec.continue_on_error = Some(false);
            warnings.push(
                "spec.continueOnError was set to false, the default: the reset stops at the first group that fails"
                    .into(),
            );
        }
        if let Some(reference) = &spec.offset_mapping_ref
            && reference.pvc_name.is_some()
            && reference.path.is_none()
        {
            // Not written: without pvcName a path names a file on the operator pod, so a path
            // left behind when a later apply drops pvcName would be refused.
            warnings.push(format!(
                "spec.offsetMappingRef.path is not set: the mapping is read from {}, the default file name on the PVC",
                alpha::KafkaOffsetResetSpec::DEFAULT_MAPPING_PATH
            ));
        }
        if spec.spelled_strategy() == Some(Strategy::HeaderBased) && spec.scan_all_partitions.is_none() {
            spec.scan_all_partitions = Some(false);
            warnings.push(
                "spec.scanAllPartitions was set to false, the default: each offset is looked up in the partition \
                 with the same number"
                    .into(),
            );
        }
    }

    fn validate_hub(hub: &Self, v: &mut Verdict) {
        let spec = &hub.spec;
        common::kafka_cluster(v, "spec.kafkaCluster", &spec.kafka_cluster);
        common::consumer_groups(v, "spec.consumerGroups", &spec.consumer_groups, true);
        if let Some(topics) = &spec.topics {
            topic_scope(v, topics);
        }
        members(v, spec);
        snapshot(v, &spec.snapshot);
        if !(1..=1000).contains(&spec.parallelism) {
            v.error(
                "spec.parallelism",
                "must be between 1 and 1000 consumer groups at a time",
                spec.parallelism,
            );
        }
        if let Some(execution) = &spec.execution {
            common::execution(v, "spec.execution", execution);
        }
    }
}

/// v1alpha1: a strategy must be given, and its two spellings must agree.
fn spelled_strategy(v: &mut Verdict, spec: &alpha::KafkaOffsetResetSpec) {
    match (spec.strategy, spec.reset_strategy) {
        (None, None) => v.missing(
            "spec.resetStrategy",
            "is required: to-earliest, to-latest, to-timestamp, to-offset or from-mapping (or strategy: \
             headerBased)",
        ),
        (Some(old), Some(new))
            if alpha::KafkaOffsetResetSpec::hub_strategy(old) != alpha::KafkaOffsetResetSpec::hub_strategy_v1(new) =>
        {
            v.error(
                "spec.strategy",
                format!(
                    "conflicts with spec.resetStrategy ({}): they are two spellings of the strategy; keep one",
                    spelling(&new)
                ),
                old,
            )
        }
        _ => {}
    }
}

/// v1alpha1: each time is valid, and times given more than once agree.
fn times(v: &mut Verdict, spec: &alpha::KafkaOffsetResetSpec) {
    let mut given = Vec::new();
    if let Some(time) = &spec.timestamp {
        given.push(("spec.timestamp", common::rfc3339(v, "spec.timestamp", time)));
    }
    if let Some(millis) = spec.timestamp_millis {
        given.push((
            "spec.timestampMillis",
            common::epoch_millis(v, "spec.timestampMillis", millis),
        ));
    }
    if let Some(millis) = spec.reset_timestamp {
        given.push((
            "spec.resetTimestamp",
            common::epoch_millis(v, "spec.resetTimestamp", millis),
        ));
    }
    for (i, (field, time)) in given.iter().enumerate() {
        let Some(time) = time else { continue };
        if let Some((other, Some(other_time))) =
            given[i + 1..].iter().find(|(_, t)| t.is_some_and(|t| t != *time))
        {
            v.error(
                *field,
                format!(
                    "conflicts with {other} ({}): both give the time to reset to; keep one",
                    other_time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                ),
                time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            );
        }
    }
}

/// v1alpha1: the fields of a strategy other than the one spelled are refused.
fn foreign_members(v: &mut Verdict, spec: &alpha::KafkaOffsetResetSpec, strategy: Strategy) {
    let chosen = match (spec.reset_strategy, spec.strategy) {
        (Some(s), _) => format!("resetStrategy is {}", spelling(&s)),
        (None, Some(s)) => format!("strategy is {}", spelling(&s)),
        (None, None) => return,
    };
    let members: [(&str, Strategy, &str, bool); 8] = [
        (
            "timestamp",
            Strategy::Timestamp,
            "timestamp",
            spec.timestamp.is_some(),
        ),
        (
            "timestampMillis",
            Strategy::Timestamp,
            "timestamp",
            spec.timestamp_millis.is_some(),
        ),
        (
            "resetTimestamp",
            Strategy::Timestamp,
            "timestamp",
            spec.reset_timestamp.is_some(),
        ),
        ("offset", Strategy::Offset, "offset", spec.offset.is_some()),
        (
            "resetOffset",
            Strategy::Offset,
            "offset",
            spec.reset_offset.is_some(),
        ),
        (
            "sourceCluster",
            Strategy::HeaderBased,
            "headerBased",
            spec.source_cluster.is_some(),
        ),
        (
            "mappingConfigMap",
            Strategy::FromMapping,
            "fromMapping",
            spec.mapping_config_map.is_some(),
        ),
        (
            "offsetMappingRef",
            Strategy::FromMapping,
            "fromMapping",
            spec.offset_mapping_ref.is_some(),
        ),
    ];
    for (field, owner, owner_name, set) in members {
        if set && owner != strategy {
            v.missing(
                path("spec", field),
                format!(
                    "belongs to the {owner_name} strategy, but {chosen}; remove it (it would be ignored)"
                ),
            );
        }
    }
    if spec.scan_all_partitions == Some(true) && strategy != Strategy::HeaderBased {
        v.missing(
            "spec.scanAllPartitions",
            format!("belongs to the headerBased strategy, but {chosen}; remove it (it would be ignored)"),
        );
    }
}

/// v1alpha1: one mapping source, and no file on the operator pod.
fn mapping_sources(v: &mut Verdict, spec: &alpha::KafkaOffsetResetSpec) {
    let Some(reference) = &spec.offset_mapping_ref else {
        return;
    };
    if spec.mapping_config_map.is_some() && (reference.restore_name.is_some() || reference.pvc_name.is_some())
    {
        v.missing(
            "spec.offsetMappingRef",
            "conflicts with spec.mappingConfigMap: both name the offset mapping to use; keep one",
        );
    }
    if let (Some(_), Some(pvc)) = (&reference.restore_name, &reference.pvc_name) {
        v.error(
            "spec.offsetMappingRef.pvcName",
            "conflicts with spec.offsetMappingRef.restoreName: both name the offset mapping to use; keep one",
            pvc,
        );
    }
    if let Some(file) = &reference.path
        && reference.pvc_name.is_none()
    {
        v.error(
            "spec.offsetMappingRef.path",
            "without offsetMappingRef.pvcName names a file on the operator pod, which this operator does not \
             read; set pvcName (the path is then inside that volume), restoreName or mappingConfigMap",
            file,
        );
    }
}

/// v1alpha1: explains the pre-1.0 spellings the object uses, which conversion reads as the
/// v1.0.0 ones, where the two agree or only the old one is given (disagreeing spellings are
/// refused by validation).
fn explain_pre_1_0(spec: &alpha::KafkaOffsetResetSpec, warnings: &mut Vec<String>) {
    if let Some(old) = spec.strategy
        && let Some(new) = alpha::KafkaOffsetResetSpec::v1_spelling(old)
    {
        match spec.reset_strategy {
            None => warnings.push(format!(
                "spec.strategy: {} is the pre-1.0 spelling of spec.resetStrategy: {}: kept as written and read as \
                 that",
                spelling(&old),
                spelling(&new)
            )),
            Some(current) if current == new => warnings.push(format!(
                "spec.strategy repeats spec.resetStrategy: {} (the pre-1.0 and the v1.0.0 spelling of one setting); \
                 one of them is enough",
                spelling(&new)
            )),
            Some(_) => {}
        }
    }
    note_spelling(
        spec.timestamp_millis.as_ref(),
        spec.reset_timestamp.as_ref(),
        "spec.timestampMillis",
        "spec.resetTimestamp",
        warnings,
    );
    if let Some(time) = &spec.timestamp
        && let Some(millis) = rfc3339_to_millis(time)
    {
        match spec.reset_timestamp {
            None => warnings.push(format!(
                "spec.timestamp: {time} is the pre-1.0 spelling of spec.resetTimestamp: {millis} (epoch \
                 milliseconds): kept as written and read as that"
            )),
            Some(current) if current == millis => warnings.push(
                "spec.timestamp repeats spec.resetTimestamp (the pre-1.0 and the v1.0.0 spelling of one setting); \
                 one of them is enough"
                    .into(),
            ),
            Some(_) => {}
        }
    }
    note_spelling(
        spec.offset.as_ref(),
        spec.reset_offset.as_ref(),
        "spec.offset",
        "spec.resetOffset",
        warnings,
    );
    note_spelling(
        spec.create_snapshot.as_ref(),
        spec.snapshot_before_reset.as_ref(),
        "spec.createSnapshot",
        "spec.snapshotBeforeReset",
        warnings,
    );
}

fn topic_scope(v: &mut Verdict, topics: &[beta::OffsetResetTopic]) {
    for (i, topic) in topics.iter().enumerate() {
        let at = index("spec.topics", i);
        common::topic_name(v, &path(&at, "name"), &topic.name);
        if topics[..i].iter().any(|t| t.name == topic.name) {
            v.error(path(&at, "name"), "is listed twice", &topic.name);
        }
        for (j, partition) in topic.partitions.iter().flatten().enumerate() {
            let at = index(&path(&at, "partitions"), j);
            if *partition < 0 {
                v.error(&at, "must not be negative", partition);
            } else if topic.partitions.iter().flatten().take(j).any(|p| p == partition) {
                v.error(&at, "is listed twice", partition);
            }
        }
    }
}

/// The member of the chosen strategy is required; the members of the others are refused.
fn members(v: &mut Verdict, spec: &beta::KafkaOffsetResetSpec) {
    let strategy = spec.strategy;
    let present: [(&str, Strategy, bool); 7] = [
        ("timestamp", Strategy::Timestamp, spec.timestamp.is_some()),
        ("offset", Strategy::Offset, spec.offset.is_some()),
        (
            "partitionOffsets",
            Strategy::Offset,
            spec.partition_offsets.is_some(),
        ),
        ("headerBased", Strategy::HeaderBased, spec.header_based.is_some()),
        ("fromMapping", Strategy::FromMapping, spec.from_mapping.is_some()),
        ("shiftBy", Strategy::ShiftBy, spec.shift_by.is_some()),
        ("byDuration", Strategy::ByDuration, spec.by_duration.is_some()),
    ];
    for (field, owner, set) in present {
        if set && owner != strategy {
            v.missing(
                path("spec", field),
                format!(
                    "belongs to strategy {}, but strategy is {}; remove it (it would be ignored)",
                    spelling(&owner),
                    spelling(&strategy)
                ),
            );
        }
    }
    match strategy {
        Strategy::Timestamp => match &spec.timestamp {
            None => v.missing(
                "spec.timestamp",
                "is required by strategy Timestamp: the point in time to reset to, e.g. 2024-12-01T12:00:00Z",
            ),
            Some(time) => {
                common::rfc3339(v, "spec.timestamp", time);
            }
        },
        Strategy::Offset => offsets(v, spec),
        Strategy::HeaderBased => match &spec.header_based {
            None => v.missing(
                "spec.headerBased",
                "is required by strategy HeaderBased: give sourceCluster, the id of the backed-up cluster in \
                 the records' headers",
            ),
            Some(header) if header.source_cluster.trim().is_empty() => v.missing(
                "spec.headerBased.sourceCluster",
                "is required by strategy HeaderBased: the id of the backed-up cluster in the records' headers",
            ),
            Some(_) => {}
        },
        Strategy::FromMapping => match &spec.from_mapping {
            None => v.missing(
                "spec.fromMapping",
                "is required by strategy FromMapping: name where the offset mapping is (a ConfigMap key, a \
                 file in a storage location, or a KafkaRestore)",
            ),
            Some(source) => mapping(v, source),
        },
        Strategy::ShiftBy => match spec.shift_by {
            None => v.missing(
                "spec.shiftBy",
                "is required by strategy ShiftBy: the records to move each offset by (negative moves back)",
            ),
            Some(0) => v.warn("spec.shiftBy is 0: the reset leaves every offset where it is"),
            Some(_) => {}
        },
        Strategy::ByDuration => match &spec.by_duration {
            None => v.missing(
                "spec.byDuration",
                "is required by strategy ByDuration: how far back from now, as an ISO-8601 duration like PT1H",
            ),
            Some(duration) if !iso_duration(duration) => v.error(
                "spec.byDuration",
                "must be an ISO-8601 duration of days, hours, minutes and seconds, like PT1H, PT30M or P1DT12H",
                duration,
            ),
            Some(_) => {}
        },
        Strategy::Earliest | Strategy::Latest | Strategy::DeleteOffsets => {}
    }
}

fn offsets(v: &mut Verdict, spec: &beta::KafkaOffsetResetSpec) {
    if spec.offset.is_none() && spec.partition_offsets.is_none() {
        v.missing(
            "spec.offset",
            "is required by strategy Offset (or partitionOffsets): the offset to move every partition to",
        );
    }
    if let Some(offset) = spec.offset
        && offset < 0
    {
        v.error(
            "spec.offset",
            "must not be negative: offsets count from 0",
            offset,
        );
    }
    let Some(targets) = &spec.partition_offsets else {
        return;
    };
    if targets.is_empty() {
        v.missing(
            "spec.partitionOffsets",
            "must not be empty: list topic, partition and offset, or leave it out",
        );
    }
    for (i, target) in targets.iter().enumerate() {
        let at = index("spec.partitionOffsets", i);
        common::topic_name(v, &path(&at, "topic"), &target.topic);
        if target.partition < 0 {
            v.error(path(&at, "partition"), "must not be negative", target.partition);
        }
        if target.offset < 0 {
            v.error(
                path(&at, "offset"),
                "must not be negative: offsets count from 0",
                target.offset,
            );
        }
        if targets[..i]
            .iter()
            .any(|t| t.topic == target.topic && t.partition == target.partition)
        {
            v.error(
                &at,
                "is listed twice (same topic and partition)",
                format!("{}/{}", target.topic, target.partition),
            );
        }
        if let Some(topics) = spec.topics.as_ref().filter(|t| !t.is_empty())
            && !topics.iter().any(|t| t.name == target.topic)
        {
            v.error(
                path(&at, "topic"),
                "is not among spec.topics, which limit the reset; add it there or remove this entry",
                &target.topic,
            );
        }
    }
}

fn mapping(v: &mut Verdict, source: &beta::OffsetMappingSource) {
    let given: Vec<&str> = [
        ("configMapKeyRef", source.config_map_key_ref.is_some()),
        ("storage", source.storage.is_some()),
        ("restoreRef", source.restore_ref.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    match given.len() {
        0 => v.missing(
            "spec.fromMapping",
            "needs one mapping source: configMapKeyRef, storage with path, or restoreRef",
        ),
        1 => {}
        _ => v.error(
            "spec.fromMapping",
            "takes exactly one mapping source; remove all but one",
            given,
        ),
    }
    match (&source.storage, &source.path) {
        (Some(_), None) => v.missing(
            "spec.fromMapping.path",
            "is required with fromMapping.storage: the mapping file's path in that location",
        ),
        (None, Some(file)) => v.error(
            "spec.fromMapping.path",
            "needs fromMapping.storage, the location the file is in",
            file,
        ),
        _ => {}
    }
    if let Some(storage) = &source.storage {
        if storage.type_ == beta::StorageType::ConfigMap {
            v.error(
                "spec.fromMapping.storage.type",
                "cannot be ConfigMap: a mapping kept in a ConfigMap is named by fromMapping.configMapKeyRef",
                storage.type_,
            );
        } else {
            common::storage(v, "spec.fromMapping.storage", storage, common::BACKUP_STORAGE);
        }
    }
    if let Some(file) = &source.path {
        common::non_empty(v, "spec.fromMapping.path", file);
        common::relative_path(v, "spec.fromMapping.path", file);
    }
    if let Some(key) = &source.config_map_key_ref {
        common::secret_name(v, "spec.fromMapping.configMapKeyRef.name", &key.name);
        config_map_key(v, "spec.fromMapping.configMapKeyRef.key", &key.key);
    }
    if let Some(restore) = &source.restore_ref {
        common::secret_name(v, "spec.fromMapping.restoreRef.name", &restore.name);
    }
}

/// A ConfigMap data key: 1 to 253 of letters, digits, `-`, `_` and `.`.
fn config_map_key(v: &mut Verdict, at: &str, key: &str) {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        v.error(
            at,
            "must be a ConfigMap key (letters, digits, '-', '_' and '.')",
            key,
        );
    }
}

fn snapshot(v: &mut Verdict, snapshot: &beta::OffsetResetSnapshotSpec) {
    if let Some(id) = &snapshot.snapshot_id {
        if snapshot.enabled {
            common::object_key_segment(v, "spec.snapshot.snapshotId", id);
        } else {
            v.error(
                "spec.snapshot.snapshotId",
                "names a snapshot that is not taken (the snapshot before the reset is disabled); remove it or \
                 enable the snapshot",
                id,
            );
        }
    }
    if let Some(storage) = &snapshot.storage {
        if snapshot.enabled {
            common::storage(v, "spec.snapshot.storage", storage, common::ANY_STORAGE);
        } else {
            v.missing(
                "spec.snapshot.storage",
                "is set but the snapshot before the reset is disabled; remove it or enable the snapshot",
            );
        }
    }
}

/// The ISO-8601 durations `kafka-consumer-groups --by-duration` takes: `PnDTnHnMn.nS`, at least
/// one component, fractions only on seconds (1 to 9 digits).
fn iso_duration(text: &str) -> bool {
    fn number(digits: &str, fraction: bool) -> bool {
        let (whole, frac) = match digits.split_once('.') {
            Some((whole, frac)) if fraction => (whole, Some(frac)),
            Some(_) => return false,
            None => (digits, None),
        };
        !whole.is_empty()
            && whole.chars().all(|c| c.is_ascii_digit())
            && frac.is_none_or(|f| (1..=9).contains(&f.len()) && f.chars().all(|c| c.is_ascii_digit()))
    }
    let Some(rest) = text.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (rest, None),
    };
    let mut components = 0;
    if !date.is_empty() {
        match date.strip_suffix('D') {
            Some(days) if number(days, false) => components += 1,
            _ => return false,
        }
    }
    if let Some(mut time) = time {
        let before = components;
        for unit in ['H', 'M', 'S'] {
            if let Some((value, after)) = time.split_once(unit) {
                if !number(value, unit == 'S') {
                    return false;
                }
                components += 1;
                time = after;
            }
        }
        if !time.is_empty() || components == before {
            return false;
        }
    }
    components > 0
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::api::admission::{mutate, validate};
    use crate::api::conversion::convert;
    use crate::api::validation::testing::{self, assert_refused, errors};

    fn alpha(spec: Value) -> Value {
        testing::alpha("KafkaOffsetReset", spec)
    }

    fn beta(spec: Value) -> Value {
        testing::beta("KafkaOffsetReset", spec)
    }

    fn with_base(extra: Value) -> Value {
        let mut spec = json!({"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "consumerGroups": ["g"]});
        for (k, value) in extra.as_object().unwrap() {
            spec[k] = value.clone();
        }
        spec
    }

    #[test]
    fn minimal_objects_of_both_versions_are_admitted() {
        for object in [
            alpha(with_base(json!({"strategy": "earliest"}))),
            alpha(with_base(
                json!({"resetStrategy": "to-timestamp", "resetTimestamp": 1_701_432_000_000_i64}),
            )),
            alpha(with_base(
                json!({"strategy": "headerBased", "sourceCluster": "prod"}),
            )),
            beta(with_base(json!({"strategy": "ShiftBy", "shiftBy": -100}))),
            beta(with_base(
                json!({"strategy": "ByDuration", "byDuration": "P1DT12H"}),
            )),
            beta(with_base(json!({"strategy": "DeleteOffsets"}))),
        ] {
            assert_eq!(errors(&object), Vec::<String>::new(), "{object}");
        }
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let object = alpha(json!({
            "kafkaCluster": {"bootstrapServers": ["kafka"]},
            "consumerGroups": ["g", "g"],
            "topics": ["orders/eu"],
            "resetStrategy": "to-timestamp",
            "resetTimestamp": 1_701_432_000_i64,
            "resetOffset": 5,
            "parallelism": 0,
        }));
        let errors = errors(&object);
        for expected in [
            "spec.kafkaCluster.bootstrapServers[0]: must be host:port",
            "spec.consumerGroups[1]: is listed twice",
            "spec.topics[0]: contains '/'",
            "spec.resetTimestamp: looks like seconds",
            "spec.resetOffset: belongs to the offset strategy, but resetStrategy is to-timestamp",
            "spec.parallelism: must be between 1 and 1000",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "expected {expected:?} in {errors:#?}"
            );
        }
    }

    #[test]
    fn conflicting_spellings_name_both_fields() {
        assert_refused(
            alpha(with_base(
                json!({"strategy": "earliest", "resetStrategy": "to-latest"}),
            )),
            "spec.strategy: conflicts with spec.resetStrategy (to-latest)",
        );
        assert_refused(
            alpha(with_base(
                json!({"strategy": "timestamp", "timestamp": "2024-12-01T12:00:00Z",
                                   "timestampMillis": 1_701_432_000_000_i64}),
            )),
            "spec.timestamp: conflicts with spec.timestampMillis",
        );
        assert_refused(
            alpha(with_base(
                json!({"strategy": "offset", "offset": 5, "resetOffset": 6}),
            )),
            "spec.offset: conflicts with spec.resetOffset (6)",
        );
        assert_refused(
            alpha(with_base(
                json!({"strategy": "latest", "createSnapshot": false, "snapshotBeforeReset": true}),
            )),
            "spec.createSnapshot: conflicts with spec.snapshotBeforeReset (true)",
        );
    }

    #[test]
    fn agreeing_spellings_are_kept_and_read_as_one() {
        let object = alpha(with_base(json!({
            "strategy": "timestamp", "resetStrategy": "to-timestamp",
            "timestamp": "2023-12-01T12:00:00Z", "timestampMillis": 1_701_432_000_000_i64,
        })));
        let mutation = mutate(&object).unwrap();
        let spec = &mutation.object["spec"];
        for field in ["strategy", "resetStrategy", "timestamp", "timestampMillis"] {
            assert_eq!(spec[field], object["spec"][field], "{field}");
        }
        for warned in [
            "spec.strategy repeats",
            "spec.timestamp: 2023-12-01T12:00:00Z is the pre-1.0 spelling",
        ] {
            assert!(
                mutation.warnings.iter().any(|w| w.starts_with(warned)),
                "{warned}: {:?}",
                mutation.warnings
            );
        }
        assert!(validate(&mutation.object, None).unwrap().is_allowed());
        let hub = convert(mutation.object, "kafka.oso.sh/v1beta1").unwrap();
        assert_eq!(hub["spec"]["timestamp"], "2023-12-01T12:00:00Z");
    }

    #[test]
    fn mutation_keeps_spellings_and_fills_defaults_once() {
        let object = alpha(with_base(json!({
            "strategy": "timestamp", "timestamp": "2024-12-01T12:00:00Z", "createSnapshot": true,
        })));
        let first = mutate(&object).unwrap();
        let spec = &first.object["spec"];
        assert_eq!(spec["strategy"], "timestamp");
        assert_eq!(spec["timestamp"], "2024-12-01T12:00:00Z");
        assert_eq!(spec["createSnapshot"], true);
        assert_eq!(spec["parallelism"], 10);
        assert_eq!(spec["dryRun"], false);
        assert_eq!(spec["continueOnError"], false);
        // A field with two spellings gets no default: the user may write either later.
        for field in ["resetStrategy", "resetTimestamp", "snapshotBeforeReset"] {
            assert_eq!(spec.get(field), None, "{field}");
        }
        for field in [
            "spec.strategy: timestamp is the pre-1.0 spelling of spec.resetStrategy: to-timestamp",
            "spec.timestamp: 2024-12-01T12:00:00Z is the pre-1.0 spelling of spec.resetTimestamp: 1733054400000",
            "spec.createSnapshot is the pre-1.0 spelling of spec.snapshotBeforeReset",
            "spec.parallelism",
            "spec.dryRun",
        ] {
            assert!(
                first.warnings.iter().any(|w| w.starts_with(field)),
                "{field}: {:#?}",
                first.warnings
            );
        }
        assert!(!first.warnings.iter().any(|w| w.contains("removed")));
        let second = mutate(&first.object).unwrap();
        assert_eq!(second.object, first.object);
        assert!(second.warnings.iter().all(|w| first.warnings.contains(w)));
        assert!(!second.warnings.iter().any(|w| w.contains("was set to")));
    }

    #[test]
    fn times_that_would_lose_precision_keep_their_spelling() {
        for time in ["2024-12-01T12:00:00.123456Z", "1999-12-31T23:59:59Z"] {
            let object = alpha(with_base(
                json!({"resetStrategy": "to-timestamp", "timestamp": time}),
            ));
            let mutated = mutate(&object).unwrap().object;
            assert_eq!(mutated["spec"]["timestamp"], time);
            assert!(validate(&mutated, None).unwrap().is_allowed(), "{time}");
        }
    }

    #[test]
    fn seconds_are_called_seconds() {
        assert_refused(
            alpha(with_base(
                json!({"strategy": "timestamp", "timestampMillis": 1_701_432_000}),
            )),
            "spec.timestampMillis: looks like seconds",
        );
    }

    #[test]
    fn strategy_members_are_required_and_exclusive_in_v1beta1() {
        let cases = [
            (
                json!({"strategy": "Timestamp"}),
                "spec.timestamp: is required by strategy Timestamp",
            ),
            (
                json!({"strategy": "Timestamp", "timestamp": "yesterday"}),
                "spec.timestamp: must be an RFC 3339 time",
            ),
            (
                json!({"strategy": "Offset"}),
                "spec.offset: is required by strategy Offset",
            ),
            (
                json!({"strategy": "Offset", "offset": -1}),
                "spec.offset: must not be negative",
            ),
            (
                json!({"strategy": "HeaderBased"}),
                "spec.headerBased: is required by strategy HeaderBased",
            ),
            (
                json!({"strategy": "HeaderBased", "headerBased": {"sourceCluster": ""}}),
                "spec.headerBased.sourceCluster",
            ),
            (
                json!({"strategy": "FromMapping"}),
                "spec.fromMapping: is required by strategy FromMapping",
            ),
            (json!({"strategy": "ShiftBy"}), "spec.shiftBy: is required"),
            (
                json!({"strategy": "ByDuration", "byDuration": "1h"}),
                "spec.byDuration: must be an ISO-8601 duration",
            ),
            (
                json!({"strategy": "Latest", "offset": 3}),
                "spec.offset: belongs to strategy Offset, but strategy is Latest",
            ),
            (
                json!({"strategy": "Earliest", "headerBased": {"sourceCluster": "x"}}),
                "spec.headerBased: belongs to strategy HeaderBased",
            ),
        ];
        for (extra, expected) in cases {
            assert_refused(beta(with_base(extra)), expected);
        }
    }

    #[test]
    fn header_based_and_mapping_messages_use_the_v1alpha1_fields() {
        assert_refused(
            alpha(with_base(json!({"strategy": "headerBased"}))),
            "spec.sourceCluster: is required by strategy HeaderBased",
        );
        assert_refused(
            alpha(with_base(json!({"resetStrategy": "from-mapping"}))),
            "spec.offsetMappingRef: is required by strategy FromMapping",
        );
        assert_refused(
            alpha(with_base(
                json!({"resetStrategy": "from-mapping", "offsetMappingRef": {"path": "/tmp/m.json"}}),
            )),
            "spec.offsetMappingRef.path: without offsetMappingRef.pvcName names a file on the operator pod",
        );
        assert_refused(
            alpha(with_base(json!({"resetStrategy": "from-mapping",
                                   "mappingConfigMap": {"name": "m", "key": "k"},
                                   "offsetMappingRef": {"restoreName": "r"}}))),
            "spec.offsetMappingRef: conflicts with spec.mappingConfigMap",
        );
        assert_refused(
            alpha(with_base(
                json!({"resetStrategy": "from-mapping", "offsetMappingRef": {"pvcName": "p", "path": "../m.json"}}),
            )),
            "spec.offsetMappingRef.path: must be a relative path",
        );
    }

    #[test]
    fn mapping_on_a_pvc_reads_the_default_file_name() {
        let object = alpha(with_base(
            json!({"resetStrategy": "from-mapping", "offsetMappingRef": {"pvcName": "data"}}),
        ));
        let mutation = mutate(&object).unwrap();
        // Not written: without pvcName a path would mean a file on the operator pod.
        assert_eq!(mutation.object["spec"]["offsetMappingRef"].get("path"), None);
        assert!(validate(&mutation.object, None).unwrap().is_allowed());
        let hub = convert(mutation.object, "kafka.oso.sh/v1beta1").unwrap();
        assert_eq!(hub["spec"]["fromMapping"]["path"], "offset-mapping.json");
    }

    #[test]
    fn resources_are_accepted_with_a_warning() {
        let object = alpha(with_base(
            json!({"strategy": "latest", "resources": {"limits": {"cpu": "1"}}}),
        ));
        let verdict = validate(&mutate(&object).unwrap().object, None).unwrap();
        assert!(verdict.is_allowed(), "{:?}", verdict.errors);
        assert!(
            verdict.warnings.iter().any(|w| w.starts_with("spec.resources")),
            "{:?}",
            verdict.warnings
        );
    }

    #[test]
    fn a_started_reset_is_immutable() {
        let old = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset",
            "metadata": {"name": "r"}, "spec": with_base(json!({"strategy": "Earliest"})),
            "status": {"phase": "Running"}});
        let mut new = old.clone();
        new["spec"]["strategy"] = json!("Latest");
        let verdict = validate(&new, Some(&old)).unwrap();
        assert!(
            verdict
                .errors
                .iter()
                .any(|e| e.path == "spec" && e.message.contains("immutable")),
            "{verdict:?}"
        );
        assert!(validate(&old, Some(&old)).unwrap().is_allowed());
        // A plan waiting for approval changed nothing: the spec may still be edited.
        let mut waiting = old.clone();
        waiting["status"]["phase"] = json!("PendingApproval");
        let mut edited = waiting.clone();
        edited["spec"]["strategy"] = json!("Latest");
        assert!(validate(&edited, Some(&waiting)).unwrap().is_allowed());
    }

    #[test]
    fn iso_durations() {
        for ok in [
            "PT1H",
            "P1D",
            "P1DT12H",
            "PT30M",
            "PT0.5S",
            "PT1H30M15S",
            "P2DT5S",
        ] {
            assert!(iso_duration(ok), "{ok}");
        }
        for bad in [
            "P", "PT", "P1DT", "1H", "PT1h", "P1W", "P1Y", "-PT1H", "PT1.S", "PT1M1H", "PT1.5M",
        ] {
            assert!(!iso_duration(bad), "{bad}");
        }
    }
}
