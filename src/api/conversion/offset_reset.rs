//! Conversion of KafkaOffsetReset between v1alpha1 and v1beta1.
//!
//! | v1alpha1 | v1beta1 |
//! |---|---|
//! | `kafkaCluster`, `consumerGroups`, `parallelism`, `dryRun`, `continueOnError` | same names |
//! | `topics: [name]` | `topics: [{name}]` |
//! | `resetStrategy` to-earliest/to-latest/to-timestamp/to-offset/from-mapping (wins over `strategy`) | `strategy` Earliest/Latest/Timestamp/Offset/FromMapping |
//! | `strategy` earliest/latest/timestamp/offset/headerBased/fromMapping | `strategy` |
//! | `resetTimestamp`, else `timestampMillis` (epoch ms) | `timestamp`, RFC 3339 UTC with milliseconds when non-zero |
//! | `timestamp` (RFC 3339) | `timestamp`, verbatim |
//! | `resetOffset`, else `offset` | `offset` |
//! | `sourceCluster`, `scanAllPartitions` | `headerBased.sourceCluster`, `headerBased.scanAllPartitions` |
//! | `offsetMappingRef.restoreName`, else `offsetMappingRef.pvcName` + `path`, else `mappingConfigMap` | `fromMapping.restoreRef`, `fromMapping.storage` (PVC) + `fromMapping.path`, `fromMapping.configMapKeyRef` |
//! | `snapshotBeforeReset`, else `createSnapshot` (default true); `snapshotId` | `snapshot.enabled`, `snapshot.snapshotId` |
//! | `job` | `execution` |
//!
//! The members of a strategy are carried only for the strategy the object names: the fields of
//! other strategies (which the webhook refuses) stay behind, like `resources`, `duration`, the
//! losing spelling of a field given twice and `offsetMappingRef.path` without a PVC (a file on the
//! operator pod), and travel in the preserved-fields annotation. v1beta1 values v1alpha1 cannot
//! spell (ShiftBy, ByDuration, DeleteOffsets, `partitionOffsets`, topic partitions, non-PVC mapping
//! storage, `snapshot.storage`, `approval`, per-partition results, `plan`, `planHash`, `refusedApproval`) travel the other way.
//!
//! v1beta1 -> v1alpha1 gives the v1.0.0 spelling and leaves out values that equal what their
//! absence means (default parallelism, `dryRun: false`, default Secret keys...), so that
//! from_spoke(to_spoke(x)) == x; whatever a v1alpha1 object spells otherwise (a pre-1.0
//! spelling, an explicit default) the annotation restores.

use super::common::{
    cluster_down_unless_empty, cluster_up_or_empty, execution_up, hub, job_down, millis_to_rfc3339,
    non_empty_vec, pvc, pvc_location, rfc3339_to_millis, unless_default,
};
use crate::api::{v1alpha1 as alpha, v1beta1 as beta};

const DEFAULT_PARALLELISM: i32 = alpha::KafkaOffsetResetSpec::DEFAULT_PARALLELISM;
const DEFAULT_MAPPING_PATH: &str = alpha::KafkaOffsetResetSpec::DEFAULT_MAPPING_PATH;

impl alpha::KafkaOffsetResetSpec {
    /// Consumer groups reset concurrently when `parallelism` is absent.
    pub(crate) const DEFAULT_PARALLELISM: i32 = 10;
    /// File name of the offset mapping on a PVC when `offsetMappingRef.path` is absent (v1.0.0).
    pub(crate) const DEFAULT_MAPPING_PATH: &'static str = "offset-mapping.json";

    /// The strategy the object spells: `resetStrategy` (v1.0.0) first, else `strategy`.
    pub(crate) fn spelled_strategy(&self) -> Option<beta::OffsetResetStrategy> {
        self.reset_strategy
            .map(strategy_v1_up)
            .or(self.strategy.map(strategy_up))
    }

    /// The v1beta1 strategy of a pre-1.0 spelling.
    pub(crate) fn hub_strategy(strategy: alpha::OffsetResetStrategy) -> beta::OffsetResetStrategy {
        strategy_up(strategy)
    }

    /// The v1beta1 strategy of a v1.0.0 spelling.
    pub(crate) fn hub_strategy_v1(strategy: alpha::OffsetResetStrategyV1) -> beta::OffsetResetStrategy {
        strategy_v1_up(strategy)
    }

    /// The v1.0.0 spelling of a pre-1.0 strategy, where there is one (not for headerBased).
    pub(crate) fn v1_spelling(strategy: alpha::OffsetResetStrategy) -> Option<alpha::OffsetResetStrategyV1> {
        strategy_v1_down(strategy_up(strategy))
    }

    /// The strategy used for conversion: the spelled one, or, when none is spelled, DeleteOffsets,
    /// which has no v1alpha1 spelling either, so that the strategies only v1beta1 has
    /// (ShiftBy, ByDuration, DeleteOffsets) come back from v1alpha1 through the annotation alone.
    /// A v1alpha1 object without a strategy is refused by the webhook ("is required"); its
    /// strategy members, foreign to DeleteOffsets, stay behind.
    pub(crate) fn effective_strategy(&self) -> beta::OffsetResetStrategy {
        self.spelled_strategy()
            .unwrap_or(beta::OffsetResetStrategy::DeleteOffsets)
    }
}

fn strategy_up(strategy: alpha::OffsetResetStrategy) -> beta::OffsetResetStrategy {
    use alpha::OffsetResetStrategy as A;
    use beta::OffsetResetStrategy as B;
    match strategy {
        A::Earliest => B::Earliest,
        A::Latest => B::Latest,
        A::Timestamp => B::Timestamp,
        A::Offset => B::Offset,
        A::HeaderBased => B::HeaderBased,
        A::FromMapping => B::FromMapping,
    }
}

fn strategy_v1_up(strategy: alpha::OffsetResetStrategyV1) -> beta::OffsetResetStrategy {
    use alpha::OffsetResetStrategyV1 as A;
    use beta::OffsetResetStrategy as B;
    match strategy {
        A::ToEarliest => B::Earliest,
        A::ToLatest => B::Latest,
        A::ToTimestamp => B::Timestamp,
        A::ToOffset => B::Offset,
        A::FromMapping => B::FromMapping,
    }
}

/// The v1.0.0 spelling of a strategy, where the v1.0.0 release had one.
fn strategy_v1_down(strategy: beta::OffsetResetStrategy) -> Option<alpha::OffsetResetStrategyV1> {
    use alpha::OffsetResetStrategyV1 as A;
    use beta::OffsetResetStrategy as B;
    match strategy {
        B::Earliest => Some(A::ToEarliest),
        B::Latest => Some(A::ToLatest),
        B::Timestamp => Some(A::ToTimestamp),
        B::Offset => Some(A::ToOffset),
        B::FromMapping => Some(A::FromMapping),
        B::HeaderBased | B::ShiftBy | B::ByDuration | B::DeleteOffsets => None,
    }
}

hub!(KafkaOffsetReset);

fn spec_up(spec: alpha::KafkaOffsetResetSpec) -> beta::KafkaOffsetResetSpec {
    use beta::OffsetResetStrategy as S;
    let strategy = spec.effective_strategy();
    let timestamp = (strategy == S::Timestamp)
        .then(|| {
            spec.reset_timestamp
                .or(spec.timestamp_millis)
                .and_then(millis_to_rfc3339)
                .or_else(|| spec.timestamp.clone())
        })
        .flatten();
    let offset = (strategy == S::Offset)
        .then_some(spec.reset_offset.or(spec.offset))
        .flatten();
    let header_based = (strategy == S::HeaderBased
        && (spec.source_cluster.is_some() || spec.scan_all_partitions.is_some()))
    .then(|| beta::HeaderBasedReset {
        source_cluster: spec.source_cluster.clone().unwrap_or_default(),
        scan_all_partitions: spec.scan_all_partitions.unwrap_or(false),
    });
    let from_mapping = if strategy == S::FromMapping {
        mapping_up(spec.offset_mapping_ref.as_ref(), spec.mapping_config_map.as_ref())
    } else {
        None
    };
    beta::KafkaOffsetResetSpec {
        kafka_cluster: cluster_up_or_empty(spec.kafka_cluster),
        consumer_groups: spec.consumer_groups.unwrap_or_default(),
        topics: spec.topics.map(|topics| {
            topics
                .into_iter()
                .map(|name| beta::OffsetResetTopic {
                    name,
                    partitions: None,
                })
                .collect()
        }),
        strategy,
        timestamp,
        offset,
        partition_offsets: None,
        header_based,
        from_mapping,
        shift_by: None,
        by_duration: None,
        snapshot: beta::OffsetResetSnapshotSpec {
            enabled: spec
                .snapshot_before_reset
                .or(spec.create_snapshot)
                .unwrap_or(true),
            snapshot_id: spec.snapshot_id,
            storage: None,
        },
        parallelism: spec.parallelism.unwrap_or(DEFAULT_PARALLELISM),
        dry_run: spec.dry_run.unwrap_or(false),
        continue_on_error: spec.continue_on_error.unwrap_or(false),
        execution: spec.job.map(execution_up),
        approval: beta::Approval::Automatic,
    }
}

/// The one mapping source v1beta1 gets: the v1.0.0 `offsetMappingRef` (a KafkaRestore, else a
/// PVC) before the pre-1.0 `mappingConfigMap`. A second source stays behind (the webhook refuses
/// it); `offsetMappingRef.path` without `pvcName` is a file on the operator pod and has no
/// v1beta1 form.
fn mapping_up(
    reference: Option<&alpha::OffsetMappingRef>,
    config_map: Option<&beta::ConfigMapKeyRef>,
) -> Option<beta::OffsetMappingSource> {
    let none = beta::OffsetMappingSource {
        config_map_key_ref: None,
        storage: None,
        path: None,
        restore_ref: None,
    };
    if let Some(name) = reference.and_then(|r| r.restore_name.clone()) {
        return Some(beta::OffsetMappingSource {
            restore_ref: Some(beta::SameNamespaceRef { name }),
            ..none
        });
    }
    if let Some(reference) = reference
        && let Some(claim_name) = reference.pvc_name.clone()
    {
        return Some(beta::OffsetMappingSource {
            storage: Some(pvc(claim_name, None)),
            path: Some(
                reference
                    .path
                    .clone()
                    .unwrap_or_else(|| DEFAULT_MAPPING_PATH.to_owned()),
            ),
            ..none
        });
    }
    config_map.map(|key| beta::OffsetMappingSource {
        config_map_key_ref: Some(key.clone()),
        ..none
    })
}

fn spec_down(spec: beta::KafkaOffsetResetSpec) -> alpha::KafkaOffsetResetSpec {
    let (reset_strategy, strategy) = match strategy_v1_down(spec.strategy) {
        Some(v1) => (Some(v1), None),
        None if spec.strategy == beta::OffsetResetStrategy::HeaderBased => {
            (None, Some(alpha::OffsetResetStrategy::HeaderBased))
        }
        None => (None, None),
    };
    let (timestamp, reset_timestamp) = match spec.timestamp {
        Some(time) => match rfc3339_to_millis(&time) {
            Some(millis) if millis_to_rfc3339(millis).as_deref() == Some(time.as_str()) => {
                (None, Some(millis))
            }
            _ => (Some(time), None),
        },
        None => (None, None),
    };
    let (source_cluster, scan_all_partitions) = match spec.header_based {
        // `scanAllPartitions: false` is left out as the default, unless it is all there is.
        Some(header) => {
            let scan = (header.scan_all_partitions || header.source_cluster.is_empty())
                .then_some(header.scan_all_partitions);
            (
                (!header.source_cluster.is_empty()).then_some(header.source_cluster),
                scan,
            )
        }
        None => (None, None),
    };
    let (mapping_config_map, offset_mapping_ref) = match spec.from_mapping {
        Some(source) => mapping_down(source),
        None => (None, None),
    };
    alpha::KafkaOffsetResetSpec {
        kafka_cluster: cluster_down_unless_empty(spec.kafka_cluster),
        consumer_groups: non_empty_vec(spec.consumer_groups),
        topics: spec
            .topics
            .map(|topics| topics.into_iter().map(|t| t.name).collect()),
        strategy,
        reset_strategy,
        timestamp,
        timestamp_millis: None,
        reset_timestamp,
        offset: None,
        reset_offset: spec.offset,
        source_cluster,
        scan_all_partitions,
        mapping_config_map,
        offset_mapping_ref,
        create_snapshot: None,
        snapshot_id: spec.snapshot.snapshot_id,
        snapshot_before_reset: (!spec.snapshot.enabled).then_some(false),
        parallelism: unless_default(spec.parallelism, &DEFAULT_PARALLELISM),
        dry_run: spec.dry_run.then_some(true),
        continue_on_error: spec.continue_on_error.then_some(true),
        resources: None,
        job: spec.execution.map(job_down),
    }
}

fn mapping_down(
    source: beta::OffsetMappingSource,
) -> (Option<beta::ConfigMapKeyRef>, Option<alpha::OffsetMappingRef>) {
    let mut reference = alpha::OffsetMappingRef {
        restore_name: source.restore_ref.map(|r| r.name),
        ..Default::default()
    };
    // Only a PVC at its root has a v1.0.0 spelling (the file at /data/<pvcName>/<path>).
    if let Some((claim_name, None)) = source.storage.as_ref().and_then(pvc_location)
        && let Some(path) = &source.path
    {
        reference.pvc_name = Some(claim_name);
        reference.path = unless_default(path.clone(), DEFAULT_MAPPING_PATH);
    }
    let reference = (reference != alpha::OffsetMappingRef::default()).then_some(reference);
    (source.config_map_key_ref, reference)
}

fn status_up(status: alpha::KafkaOffsetResetStatus) -> beta::KafkaOffsetResetStatus {
    let snapshot = (status.snapshot_id.is_some() || status.snapshot_path.is_some()).then_some(
        beta::OffsetResetSnapshotStatus {
            snapshot_id: status.snapshot_id,
            location: status.snapshot_path,
        },
    );
    let results = match (status.results, status.group_results) {
        (Some(results), _) => Some(results.into_iter().map(result_up).collect()),
        (None, Some(results)) => Some(results.into_iter().map(result_v1_up).collect()),
        (None, None) => None,
    };
    beta::KafkaOffsetResetStatus {
        phase: status.phase,
        message: status.message,
        start_time: status.start_time,
        completion_time: status.completion_time,
        groups_total: status.groups_total,
        groups_reset: status.groups_reset,
        groups_failed: status.groups_failed,
        snapshot,
        results,
        observed_generation: status.observed_generation,
        conditions: status.conditions,
        plan: None,
        plan_hash: None,
        refused_approval: None,
    }
}

fn result_up(result: alpha::GroupResetResult) -> beta::GroupResetResult {
    use alpha::GroupResetStatus as A;
    use beta::GroupResetOutcome as B;
    beta::GroupResetResult {
        group: result.group.unwrap_or_default(),
        outcome: match result.status {
            Some(A::Success) => B::Succeeded,
            Some(A::Failed) => B::Failed,
            Some(A::Planned) => B::Planned,
            Some(A::Skipped) | None => B::Skipped,
        },
        message: result.error,
        partitions_reset: result.partitions_reset,
        partitions: None,
    }
}

fn result_v1_up(result: alpha::GroupResetResultV1) -> beta::GroupResetResult {
    use beta::GroupResetOutcome as B;
    beta::GroupResetResult {
        group: result.group_id.unwrap_or_default(),
        outcome: match result.success {
            Some(true) => B::Succeeded,
            Some(false) => B::Failed,
            None => B::Skipped,
        },
        message: result.error,
        partitions_reset: result.partitions_reset,
        partitions: None,
    }
}

fn status_down(status: beta::KafkaOffsetResetStatus) -> alpha::KafkaOffsetResetStatus {
    use alpha::GroupResetStatus as A;
    use beta::GroupResetOutcome as B;
    let (snapshot_id, snapshot_path) = match status.snapshot {
        Some(snapshot) => (snapshot.snapshot_id, snapshot.location),
        None => (None, None),
    };
    let results = status.results.map(|results| {
        results
            .into_iter()
            .map(|r| alpha::GroupResetResult {
                group: Some(r.group),
                status: Some(match r.outcome {
                    B::Succeeded => A::Success,
                    B::Failed => A::Failed,
                    B::Skipped => A::Skipped,
                    B::Planned => A::Planned,
                }),
                partitions_reset: r.partitions_reset,
                error: r.message,
            })
            .collect()
    });
    alpha::KafkaOffsetResetStatus {
        phase: status.phase,
        message: status.message,
        start_time: status.start_time,
        completion_time: status.completion_time,
        groups_total: status.groups_total,
        groups_reset: status.groups_reset,
        groups_failed: status.groups_failed,
        duration: None,
        snapshot_id,
        snapshot_path,
        results,
        group_results: None,
        observed_generation: status.observed_generation,
        conditions: status.conditions,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::conversion::convert;

    const ALPHA: &str = "kafka.oso.sh/v1alpha1";
    const BETA: &str = "kafka.oso.sh/v1beta1";

    #[test]
    fn epoch_millis_become_rfc3339_and_back() {
        let spoke = json!({"apiVersion": ALPHA, "kind": "KafkaOffsetReset", "metadata": {"name": "r"},
            "spec": {"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "consumerGroups": ["g"],
                     "resetStrategy": "to-timestamp", "resetTimestamp": 1_733_054_400_123_i64}});
        let hub = convert(spoke.clone(), BETA).unwrap();
        assert_eq!(hub["spec"]["strategy"], "Timestamp");
        assert_eq!(hub["spec"]["timestamp"], "2024-12-01T12:00:00.123Z");
        assert_eq!(convert(hub, ALPHA).unwrap()["spec"], spoke["spec"]);
    }
}
