//! Conversion of KafkaOffsetRollback between v1alpha1 and v1beta1.
//!
//! | v1alpha1 | v1beta1 |
//! |---|---|
//! | `operation` snapshot/rollback/verify/delete; absent (a v1.0.0 `snapshotRef` rollback): rollback | `operation` Snapshot/Rollback/Verify/Delete |
//! | `snapshotId`, else `snapshotRef.name`, else the file name of `snapshotRef.path` without `.json` | `snapshotId` |
//! | `storage` (`storageType` pvc/s3/azure/gcs/configMap/configmap; without it, the one block given) | `storage` (`type` PVC/S3/Azure/GCS/ConfigMap) |
//! | `snapshotRef.pvcName` + the directory of `snapshotRef.path` (when `storage` is absent) | `storage` {type: PVC, pvc {claimName, subPath}} |
//! | `snapshotRef.restoreRef`, `snapshotRef.offsetResetRef` | `snapshotFrom.restoreRef.name`, `snapshotFrom.offsetResetRef.name` |
//! | `kafkaCluster` (except for delete, which does not use it), `consumerGroups`, `verify.strict`, `verifyAfterRollback`, `dryRun` | same names |
//! | `job` | `execution` |
//!
//! Status: `operation` lowercase <-> capitalised; `snapshotData` <-> `snapshot`;
//! `verificationResult {matched, differences}` and the v1.0.0 `verification {allMatched,
//! totalGroups, matchedGroups, mismatchedGroups}` <-> `verification`.
//!
//! Left behind (kept in the preserved-fields annotation): `resources`, `kafkaCluster` of a delete,
//! `snapshotRef.path` without `pvcName` (a file on the operator pod), `storage.pvc.create`;
//! the other way: `snapshot.location`, `verification.strict` and `differencesTotal`.
//! v1beta1 -> v1alpha1 writes the pre-1.0 form (`operation`, `snapshotId`, `storage`), which can
//! express every operation, and `snapshotRef` only for `snapshotFrom`.

use super::common::{cluster_down, cluster_up, execution_up, hub, job_down, pvc, storage_down, storage_up};
use crate::api::{v1alpha1 as alpha, v1beta1 as beta};

impl alpha::KafkaOffsetRollbackSpec {
    /// The operation: the one spelled, else rollback (v1.0.0 resources have no `operation` and
    /// always roll back).
    pub(crate) fn effective_operation(&self) -> beta::RollbackOperation {
        self.operation
            .map(operation_up)
            .unwrap_or(beta::RollbackOperation::Rollback)
    }

    /// Splits the v1.0.0 `snapshotRef.path` into the directory (the PVC sub-path) and the
    /// snapshot id (the file name without `.json`), when it has that form.
    pub(crate) fn split_snapshot_path(path: &str) -> (Option<&str>, Option<&str>) {
        let (dir, file) = match path.rsplit_once('/') {
            Some((dir, file)) => (Some(dir).filter(|d| !d.is_empty()), file),
            None => (None, path),
        };
        (dir, file.strip_suffix(".json").filter(|id| !id.is_empty()))
    }
}

fn operation_up(operation: alpha::RollbackOperation) -> beta::RollbackOperation {
    use alpha::RollbackOperation as A;
    use beta::RollbackOperation as B;
    match operation {
        A::Snapshot => B::Snapshot,
        A::Rollback => B::Rollback,
        A::Verify => B::Verify,
        A::Delete => B::Delete,
    }
}

fn operation_down(operation: beta::RollbackOperation) -> alpha::RollbackOperation {
    use alpha::RollbackOperation as A;
    use beta::RollbackOperation as B;
    match operation {
        B::Snapshot => A::Snapshot,
        B::Rollback => A::Rollback,
        B::Verify => A::Verify,
        B::Delete => A::Delete,
    }
}

hub!(KafkaOffsetRollback);

fn spec_up(spec: alpha::KafkaOffsetRollbackSpec) -> beta::KafkaOffsetRollbackSpec {
    let operation = spec.effective_operation();
    let reference = spec.snapshot_ref.unwrap_or_default();
    // v1.0.0: the snapshot file `path` on the PVC `pvcName`; a `path` alone is a file on the
    // operator pod, which has no v1beta1 form.
    let (ref_storage, ref_id) = match (&reference.pvc_name, &reference.path) {
        (Some(claim), Some(path)) => {
            let (dir, id) = alpha::KafkaOffsetRollbackSpec::split_snapshot_path(path);
            (
                Some(pvc(claim.clone(), dir.map(str::to_owned))),
                id.map(str::to_owned),
            )
        }
        (Some(claim), None) => (Some(pvc(claim.clone(), None)), None),
        (None, _) => (None, None),
    };
    let snapshot_from =
        (reference.offset_reset_ref.is_some() || reference.restore_ref.is_some()).then(|| {
            beta::RollbackSnapshotSource {
                offset_reset_ref: reference
                    .offset_reset_ref
                    .map(|name| beta::SameNamespaceRef { name }),
                restore_ref: reference.restore_ref.map(|name| beta::SameNamespaceRef { name }),
            }
        });
    beta::KafkaOffsetRollbackSpec {
        operation,
        snapshot_id: spec.snapshot_id.or(reference.name).or(ref_id),
        snapshot_from,
        storage: spec.storage.map(storage_up).or(ref_storage),
        consumer_groups: spec.consumer_groups,
        // Delete only touches storage: a cluster given with it (the seed's delete example has
        // one) is not part of the operation; the webhook warns about it.
        kafka_cluster: if operation == beta::RollbackOperation::Delete {
            None
        } else {
            spec.kafka_cluster.map(cluster_up)
        },
        verify: spec.verify.map(|v| beta::RollbackVerifySpec {
            strict: v.strict.unwrap_or(true),
        }),
        verify_after_rollback: spec.verify_after_rollback.unwrap_or(true),
        remove_offsets_not_in_snapshot: spec.remove_offsets_not_in_snapshot.unwrap_or(false),
        dry_run: spec.dry_run.unwrap_or(false),
        execution: spec.job.map(execution_up),
    }
}

fn spec_down(spec: beta::KafkaOffsetRollbackSpec) -> alpha::KafkaOffsetRollbackSpec {
    let snapshot_ref = spec
        .snapshot_from
        .filter(|from| from.offset_reset_ref.is_some() || from.restore_ref.is_some())
        .map(|from| alpha::OffsetSnapshotRef {
            offset_reset_ref: from.offset_reset_ref.map(|r| r.name),
            restore_ref: from.restore_ref.map(|r| r.name),
            ..Default::default()
        });
    alpha::KafkaOffsetRollbackSpec {
        kafka_cluster: spec.kafka_cluster.map(cluster_down),
        consumer_groups: spec.consumer_groups,
        operation: Some(operation_down(spec.operation)),
        snapshot_id: spec.snapshot_id,
        storage: spec.storage.map(storage_down),
        verify: spec.verify.map(|v| alpha::RollbackVerifySpec {
            strict: Some(v.strict),
        }),
        snapshot_ref,
        dry_run: spec.dry_run.then_some(true),
        verify_after_rollback: (!spec.verify_after_rollback).then_some(false),
        remove_offsets_not_in_snapshot: spec.remove_offsets_not_in_snapshot.then_some(true),
        resources: None,
        job: spec.execution.map(job_down),
    }
}

fn status_up(status: alpha::KafkaOffsetRollbackStatus) -> beta::KafkaOffsetRollbackStatus {
    let snapshot = status.snapshot_data.map(|data| beta::RollbackSnapshotInfo {
        groups: data.groups,
        total_partitions: data.total_partitions,
        timestamp: data.timestamp,
        location: None,
    });
    let verification = match (status.verification_result, status.verification) {
        (None, None) => None,
        (result, summary) => {
            let result = result.unwrap_or_default();
            let summary = summary.unwrap_or_default();
            Some(beta::RollbackVerification {
                matched: result.matched.or(summary.all_matched),
                strict: None,
                groups_total: summary.total_groups,
                groups_matched: summary.matched_groups,
                groups_mismatched: summary.mismatched_groups,
                differences_total: None,
                differences: result.differences.map(|differences| {
                    differences
                        .into_iter()
                        .map(|d| beta::OffsetDifference {
                            group: d.group.unwrap_or_default(),
                            topic: d.topic.unwrap_or_default(),
                            partition: d.partition.unwrap_or_default(),
                            expected: d.expected,
                            actual: d.actual,
                        })
                        .collect()
                }),
            })
        }
    };
    beta::KafkaOffsetRollbackStatus {
        phase: status.phase,
        message: status.message,
        operation: status.operation.map(operation_up),
        snapshot_id: status.snapshot_id,
        start_time: status.start_time,
        completion_time: status.completion_time,
        snapshot,
        verification,
        groups_rolled_back: status.groups_rolled_back,
        groups_failed: status.groups_failed,
        observed_generation: status.observed_generation,
        conditions: status.conditions,
    }
}

fn status_down(status: beta::KafkaOffsetRollbackStatus) -> alpha::KafkaOffsetRollbackStatus {
    let (verification_result, verification) = match status.verification {
        Some(v) => {
            let result =
                (v.matched.is_some() || v.differences.is_some()).then(|| alpha::OffsetVerificationResult {
                    matched: v.matched,
                    differences: v.differences.map(|differences| {
                        differences
                            .into_iter()
                            .map(|d| alpha::OffsetDifference {
                                group: Some(d.group),
                                topic: Some(d.topic),
                                partition: Some(d.partition),
                                expected: d.expected,
                                actual: d.actual,
                            })
                            .collect()
                    }),
                });
            let summary =
                (v.groups_total.is_some() || v.groups_matched.is_some() || v.groups_mismatched.is_some())
                    .then_some(alpha::OffsetVerificationSummary {
                        all_matched: v.matched,
                        total_groups: v.groups_total,
                        matched_groups: v.groups_matched,
                        mismatched_groups: v.groups_mismatched,
                    });
            (result, summary)
        }
        None => (None, None),
    };
    alpha::KafkaOffsetRollbackStatus {
        phase: status.phase,
        message: status.message,
        operation: status.operation.map(operation_down),
        snapshot_id: status.snapshot_id,
        start_time: status.start_time,
        completion_time: status.completion_time,
        snapshot_data: status.snapshot.map(|s| alpha::OffsetSnapshotData {
            groups: s.groups,
            total_partitions: s.total_partitions,
            timestamp: s.timestamp,
        }),
        verification_result,
        groups_rolled_back: status.groups_rolled_back,
        groups_failed: status.groups_failed,
        verification,
        observed_generation: status.observed_generation,
        conditions: status.conditions,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::conversion::convert;

    #[test]
    fn v1_0_0_snapshot_refs_map_to_storage_and_id() {
        let spoke = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaOffsetRollback", "metadata": {"name": "r"},
            "spec": {"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "operation": "rollback",
                     "snapshotRef": {"pvcName": "data", "path": "snaps/pre-1.json"}}});
        let hub = convert(spoke, "kafka.oso.sh/v1beta1").unwrap();
        assert_eq!(hub["spec"]["snapshotId"], "pre-1");
        assert_eq!(
            hub["spec"]["storage"],
            json!({"type": "PVC", "pvc": {"claimName": "data", "subPath": "snaps"}})
        );
    }
}
