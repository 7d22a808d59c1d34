//! Admission rules of KafkaOffsetRollback: validation of both versions, mutation of v1alpha1.
//!
//! Rules (v1beta1 paths; on v1alpha1 objects the v1alpha1 field is named):
//! - the snapshot: `snapshotId` (a valid object-key segment) or `snapshotFrom` (exactly one
//!   reference), not both; `snapshotFrom` not with operation Snapshot (which creates a snapshot)
//!   nor with `storage` (it supplies the location);
//! - `storage`: the block of its type and no other (every type, ConfigMap included, can hold a
//!   snapshot; absent: a ConfigMap named after the resource, or the namespace's catalog);
//! - `consumerGroups`: required for Snapshot, refused for Delete, otherwise a non-empty subset;
//! - `kafkaCluster`: required for Snapshot, Rollback and Verify, refused for Delete;
//! - `verify` options only with operation Verify; `execution` within range.
//!
//! v1alpha1 only: an operation must be given (or a v1.0.0 `snapshotRef`, which rolls back);
//! `snapshotId` and `snapshotRef.name` must agree; `snapshotRef.path` needs `pvcName` (otherwise it
//! is a file on the operator pod) and must name a `<snapshotId>.json` file; `storageType` is
//! required when several storage blocks are given, `pvc.create` and the S3 key names follow the
//! shared storage rules of [`super::spoke`]; `kafkaCluster` with delete and `resources` are
//! accepted with a warning.

use super::spoke::{
    Defaults, JOB_PATHS, explain_storage, mutate_cluster, rename, spelling, spoke_cluster, spoke_storage,
};
use super::{Verdict, common};
use crate::api::{
    admission::Admit,
    v1alpha1 as alpha,
    v1beta1::{self as beta, RollbackOperation as Operation},
};

const SPOKE_PATHS: &[(&str, &str)] = &[
    (
        "spec.snapshotFrom.offsetResetRef.name",
        "spec.snapshotRef.offsetResetRef",
    ),
    (
        "spec.snapshotFrom.offsetResetRef",
        "spec.snapshotRef.offsetResetRef",
    ),
    ("spec.snapshotFrom.restoreRef.name", "spec.snapshotRef.restoreRef"),
    ("spec.snapshotFrom.restoreRef", "spec.snapshotRef.restoreRef"),
    ("spec.snapshotFrom", "spec.snapshotRef"),
    ("spec.storage.type", "spec.storage.storageType"),
];

/// Every operation is one-shot: once it has started, a changed spec would describe something
/// other than what ran (another snapshot id, other groups), and none can be paused. Nothing may
/// change; to run again, create a new KafkaOffsetRollback.
impl Admit for beta::KafkaOffsetRollback {
    const MUTABLE_WHILE_STARTED: &'static [&'static str] = &[];

    fn spoke_path(hub_path: &str) -> String {
        rename(hub_path, SPOKE_PATHS)
            .or_else(|| rename(hub_path, JOB_PATHS))
            .unwrap_or_else(|| hub_path.to_owned())
    }

    fn validate_spoke(spoke: &alpha::KafkaOffsetRollback, v: &mut Verdict) {
        let spec = &spoke.spec;
        if spec.operation.is_none() && spec.snapshot_ref.is_none() {
            v.missing(
                "spec.operation",
                "is required: snapshot, rollback, verify or delete",
            );
        }
        if let Some(reference) = &spec.snapshot_ref {
            snapshot_ref(v, spec, reference);
        }
        if let Some(storage) = &spec.storage {
            spoke_storage(v, "spec.storage", storage);
        }
        spoke_cluster(v, "spec.kafkaCluster", spec.kafka_cluster.as_ref());
        if spec.operation == Some(alpha::RollbackOperation::Delete) && spec.kafka_cluster.is_some() {
            v.warn("spec.kafkaCluster is not used by operation delete, which only removes the snapshot from storage");
        }
        if spec.resources.is_some() {
            v.warn(
                "spec.resources has no effect: the operation runs inside the operator, not in a Job pod; remove it",
            );
        }
    }

    fn mutate_spoke(spoke: &mut alpha::KafkaOffsetRollback, warnings: &mut Vec<String>) {
        let spec = &mut spoke.spec;
        if spec.operation.is_none() && spec.snapshot_ref.is_some() {
            warnings.push(
                "spec.operation is not set: a v1.0.0 KafkaOffsetRollback with snapshotRef rolls back, as with \
                 operation: rollback"
                    .into(),
            );
        }
        let mut defaults = Defaults::default();
        if let Some(storage) = &spec.storage {
            explain_storage("spec.storage", storage, warnings);
        }
        if let Some(cluster) = &mut spec.kafka_cluster {
            mutate_cluster("spec.kafkaCluster", cluster, &mut defaults);
        }
        defaults.finish(warnings);
        let operation = spec.effective_operation();
        if operation != Operation::Verify && spec.dry_run.is_none() {
            spec.dry_run = Some(false);
            warnings.push(
                "spec.dryRun was set to false, the default: the operation changes what it names".into(),
            );
        }
        if operation == Operation::Rollback && spec.verify_after_rollback.is_none() {
            spec.verify_after_rollback = Some(true);
            warnings.push(
                "spec.verifyAfterRollback was set to true, the default: the offsets are read back and compared \
                 with the snapshot after the rollback"
                    .into(),
            );
        }
        if let Some(verify) = &mut spec.verify
            && verify.strict.is_none()
        {
            verify.strict = Some(true);
            warnings.push(
                "spec.verify.strict was set to true, the default: every offset must equal the snapshot's"
                    .into(),
            );
        }
    }

    fn validate_hub(hub: &Self, v: &mut Verdict) {
        let spec = &hub.spec;
        let operation = spec.operation;
        let op = spelling(&operation);
        snapshot_source(v, spec);
        if let Some(storage) = &spec.storage {
            common::storage(v, "spec.storage", storage, common::ANY_STORAGE);
        }
        match (operation, &spec.consumer_groups) {
            (Operation::Snapshot, None) => v.missing(
                "spec.consumerGroups",
                "is required for operation Snapshot: the consumer groups whose offsets to capture",
            ),
            (Operation::Snapshot, Some(groups)) => {
                common::consumer_groups(v, "spec.consumerGroups", groups, true)
            }
            (Operation::Delete, Some(groups)) => v.error(
                "spec.consumerGroups",
                "is not allowed for operation Delete, which removes the whole snapshot; remove it",
                groups,
            ),
            (Operation::Delete, None) => {}
            (Operation::Rollback | Operation::Verify, Some(groups)) => {
                if groups.is_empty() {
                    v.missing(
                        "spec.consumerGroups",
                        "must not be empty: list a subset of the snapshot's groups, or leave it out for all of them",
                    );
                }
                common::consumer_groups(v, "spec.consumerGroups", groups, false);
            }
            (Operation::Rollback | Operation::Verify, None) => {}
        }
        match (operation, &spec.kafka_cluster) {
            (Operation::Delete, Some(_)) => v.missing(
                "spec.kafkaCluster",
                "is not allowed for operation Delete, which only removes the snapshot from storage; remove it",
            ),
            (Operation::Delete, None) => {}
            (_, None) => v.missing(
                "spec.kafkaCluster",
                format!("is required for operation {op}: the cluster of the consumer groups"),
            ),
            (_, Some(cluster)) => common::kafka_cluster(v, "spec.kafkaCluster", cluster),
        }
        if spec.verify.is_some() && operation != Operation::Verify {
            v.missing(
                "spec.verify",
                format!("holds options of operation Verify, but operation is {op}; remove it (it would be ignored)"),
            );
        }
        if !spec.verify_after_rollback && operation != Operation::Rollback {
            v.warn(format!(
                "spec.verifyAfterRollback only applies to operation Rollback; operation {op} ignores it"
            ));
        }
        if let Some(execution) = &spec.execution {
            common::execution(v, "spec.execution", execution);
        }
    }
}

/// The snapshot operated on: `snapshotId` or `snapshotFrom`, exactly one.
fn snapshot_source(v: &mut Verdict, spec: &beta::KafkaOffsetRollbackSpec) {
    let verb = match spec.operation {
        Operation::Snapshot => "create",
        Operation::Rollback => "roll back to",
        Operation::Verify => "compare with",
        Operation::Delete => "delete",
    };
    match (&spec.snapshot_id, &spec.snapshot_from) {
        (None, None) => v.missing(
            "spec.snapshotId",
            format!(
                "is required: the id of the snapshot to {verb} (or a reference to the KafkaOffsetReset or \
                 KafkaRestore whose snapshot to use)"
            ),
        ),
        (Some(id), Some(_)) => v.error(
            "spec.snapshotFrom",
            "conflicts with spec.snapshotId: name the snapshot one way; remove one",
            id,
        ),
        _ => {}
    }
    if let Some(id) = &spec.snapshot_id {
        common::object_key_segment(v, "spec.snapshotId", id);
    }
    let Some(from) = &spec.snapshot_from else { return };
    if spec.operation == Operation::Snapshot {
        v.missing(
            "spec.snapshotFrom",
            "cannot be used with operation Snapshot, which creates a new snapshot: name it with snapshotId",
        );
    }
    if spec.storage.is_some() {
        v.missing(
            "spec.storage",
            "is not allowed with snapshotFrom, which supplies the snapshot's location; remove it",
        );
    }
    match (&from.offset_reset_ref, &from.restore_ref) {
        (None, None) => v.missing(
            "spec.snapshotFrom",
            "needs offsetResetRef (a KafkaOffsetReset) or restoreRef (a KafkaRestore)",
        ),
        (Some(_), Some(_)) => v.missing(
            "spec.snapshotFrom",
            "takes offsetResetRef or restoreRef, not both; remove one",
        ),
        _ => {}
    }
    if let Some(reset) = &from.offset_reset_ref {
        common::secret_name(v, "spec.snapshotFrom.offsetResetRef.name", &reset.name);
    }
    if let Some(restore) = &from.restore_ref {
        common::secret_name(v, "spec.snapshotFrom.restoreRef.name", &restore.name);
    }
}

/// v1alpha1: the v1.0.0 `snapshotRef` against the pre-1.0 fields.
fn snapshot_ref(
    v: &mut Verdict,
    spec: &alpha::KafkaOffsetRollbackSpec,
    reference: &alpha::OffsetSnapshotRef,
) {
    if let (Some(name), Some(id)) = (&reference.name, &spec.snapshot_id)
        && name != id
    {
        v.error(
            "spec.snapshotRef.name",
            format!("conflicts with spec.snapshotId ({id}): name the snapshot once"),
            name,
        );
    }
    if reference.pvc_name.is_some() && spec.storage.is_some() {
        v.missing(
            "spec.snapshotRef.pvcName",
            "conflicts with spec.storage: both say where the snapshot is; keep one",
        );
    }
    let Some(file) = &reference.path else { return };
    if reference.pvc_name.is_none() {
        v.error(
            "spec.snapshotRef.path",
            "without snapshotRef.pvcName names a file on the operator pod, which this operator does not read; \
             set pvcName (the path is then inside that volume) or use storage",
            file,
        );
        return;
    }
    if file.starts_with('/') || file.split('/').any(|part| part == "..") {
        v.error(
            "spec.snapshotRef.path",
            "must be relative to the root of the PVC snapshotRef.pvcName, without '..'",
            file,
        );
        return;
    }
    match alpha::KafkaOffsetRollbackSpec::split_snapshot_path(file) {
        (_, None) => v.error(
            "spec.snapshotRef.path",
            "must name a <snapshotId>.json file: snapshots are stored under their id",
            file,
        ),
        (_, Some(stem)) => {
            if let Some(id) = reference.name.as_ref().or(spec.snapshot_id.as_ref())
                && id != stem
            {
                v.error(
                    "spec.snapshotRef.path",
                    format!("names snapshot {stem}, but the snapshot id is {id}; make them agree"),
                    file,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::api::admission::{mutate, validate};
    use crate::api::validation::testing::{self, assert_refused, errors};

    fn alpha(spec: Value) -> Value {
        testing::alpha("KafkaOffsetRollback", spec)
    }

    fn beta(spec: Value) -> Value {
        testing::beta("KafkaOffsetRollback", spec)
    }

    fn cluster() -> Value {
        json!({"bootstrapServers": ["kafka:9092"]})
    }

    fn config_map() -> Value {
        json!({"storageType": "configMap", "configMap": {"name": "offset-snapshots"}})
    }

    #[test]
    fn each_operation_is_admitted_in_its_minimal_form() {
        for object in [
            alpha(
                json!({"operation": "snapshot", "snapshotId": "s1", "kafkaCluster": cluster(),
                         "consumerGroups": ["g"], "storage": config_map()}),
            ),
            alpha(json!({"operation": "rollback", "snapshotId": "s1", "kafkaCluster": cluster()})),
            alpha(
                json!({"operation": "verify", "snapshotId": "s1", "kafkaCluster": cluster(), "storage": config_map()}),
            ),
            alpha(json!({"operation": "delete", "snapshotId": "s1", "storage": config_map()})),
            alpha(
                json!({"snapshotRef": {"name": "s1", "pvcName": "data", "path": "snapshots/s1.json"},
                         "kafkaCluster": cluster()}),
            ),
            alpha(json!({"snapshotRef": {"offsetResetRef": "my-reset"}, "kafkaCluster": cluster()})),
            beta(
                json!({"operation": "Rollback", "snapshotFrom": {"restoreRef": {"name": "dr"}},
                        "kafkaCluster": cluster()}),
            ),
        ] {
            assert_eq!(errors(&object), Vec::<String>::new(), "{object}");
        }
    }

    #[test]
    fn operation_rules_name_their_fields() {
        let cases = [
            (
                alpha(json!({"snapshotId": "s", "kafkaCluster": cluster()})),
                "spec.operation: is required",
            ),
            (
                alpha(json!({"operation": "rollback", "kafkaCluster": cluster()})),
                "spec.snapshotId: is required",
            ),
            (
                alpha(json!({"operation": "snapshot", "snapshotId": "s", "kafkaCluster": cluster()})),
                "spec.consumerGroups: is required for operation Snapshot",
            ),
            (
                alpha(json!({"operation": "verify", "snapshotId": "s"})),
                "spec.kafkaCluster: is required for operation Verify",
            ),
            (
                alpha(
                    json!({"operation": "rollback", "snapshotId": "s", "kafkaCluster": cluster(),
                             "verify": {"strict": false}}),
                ),
                "spec.verify: holds options of operation Verify, but operation is Rollback",
            ),
            (
                alpha(json!({"operation": "delete", "snapshotId": "s", "consumerGroups": ["g"]})),
                "spec.consumerGroups: is not allowed for operation Delete",
            ),
            (
                beta(json!({"operation": "Delete", "snapshotId": "s", "kafkaCluster": cluster()})),
                "spec.kafkaCluster: is not allowed for operation Delete",
            ),
            (
                alpha(json!({"operation": "rollback", "snapshotId": "a/b", "kafkaCluster": cluster()})),
                "spec.snapshotId: must start with a letter or digit",
            ),
            (
                alpha(
                    json!({"operation": "rollback", "snapshotId": "s", "kafkaCluster": cluster(),
                             "snapshotRef": {"restoreRef": "dr"}}),
                ),
                "spec.snapshotRef: conflicts with spec.snapshotId",
            ),
            (
                alpha(
                    json!({"operation": "snapshot", "snapshotRef": {"offsetResetRef": "r"},
                             "kafkaCluster": cluster(), "consumerGroups": ["g"]}),
                ),
                "spec.snapshotRef: cannot be used with operation Snapshot",
            ),
            (
                alpha(
                    json!({"snapshotRef": {"restoreRef": "a", "offsetResetRef": "b"}, "kafkaCluster": cluster()}),
                ),
                "spec.snapshotRef: takes offsetResetRef or restoreRef, not both",
            ),
        ];
        for (object, expected) in cases {
            assert_refused(object, expected);
        }
    }

    #[test]
    fn v1_0_0_snapshot_refs_are_checked() {
        assert_refused(
            alpha(
                json!({"snapshotRef": {"name": "s", "path": "/var/snap/s.json"}, "kafkaCluster": cluster()}),
            ),
            "spec.snapshotRef.path: without snapshotRef.pvcName names a file on the operator pod",
        );
        assert_refused(
            alpha(
                json!({"snapshotRef": {"name": "s", "pvcName": "d", "path": "x/t.json"}, "kafkaCluster": cluster()}),
            ),
            "spec.snapshotRef.path: names snapshot t, but the snapshot id is s",
        );
        assert_refused(
            alpha(json!({"snapshotRef": {"pvcName": "d", "path": "x/t.txt"}, "kafkaCluster": cluster()})),
            "spec.snapshotRef.path: must name a <snapshotId>.json file",
        );
        assert_refused(
            alpha(
                json!({"operation": "rollback", "snapshotId": "a", "snapshotRef": {"name": "b"},
                         "kafkaCluster": cluster()}),
            ),
            "spec.snapshotRef.name: conflicts with spec.snapshotId (a)",
        );
    }

    #[test]
    fn storage_rules() {
        let base = |storage: Value| {
            alpha(
                json!({"operation": "rollback", "snapshotId": "s", "kafkaCluster": cluster(), "storage": storage}),
            )
        };
        assert_refused(
            base(json!({"storageType": "s3", "s3": {"bucket": "b"}, "configMap": {"name": "c"}})),
            "spec.storage.configMap: belongs to type ConfigMap, not S3",
        );
        assert_refused(
            base(json!({"storageType": "s3"})),
            "spec.storage.s3: is required with type S3",
        );
        assert_refused(
            base(json!({"s3": {"bucket": "b"}, "configMap": {"name": "c"}})),
            "spec.storage.storageType: is required when more than one storage block is given",
        );
        assert_refused(
            base(json!({"storageType": "pvc", "pvc": {"claimName": "c", "create": {"enabled": true}}})),
            "spec.storage.pvc.create: is not supported",
        );
        // One block without storageType: the type is read from it, and left unwritten.
        let mutation = mutate(&base(json!({"s3": {"bucket": "b"}}))).unwrap();
        assert_eq!(mutation.object["spec"]["storage"].get("storageType"), None);
        assert!(validate(&mutation.object, None).unwrap().is_allowed());
        let hub = crate::api::conversion::convert(mutation.object, "kafka.oso.sh/v1beta1").unwrap();
        assert_eq!(hub["spec"]["storage"]["type"], "S3");
    }

    #[test]
    fn delete_with_a_cluster_is_admitted_with_a_warning() {
        let object = alpha(
            json!({"operation": "delete", "snapshotId": "s", "kafkaCluster": cluster(),
                                  "storage": config_map()}),
        );
        let verdict = validate(&mutate(&object).unwrap().object, None).unwrap();
        assert!(verdict.is_allowed(), "{:?}", verdict.errors);
        assert!(
            verdict
                .warnings
                .iter()
                .any(|w| w.starts_with("spec.kafkaCluster")),
            "{:?}",
            verdict.warnings
        );
    }

    #[test]
    fn mutation_is_idempotent() {
        for object in [
            alpha(json!({"snapshotRef": {"name": "s"}, "kafkaCluster": cluster(),
                         "storage": {"storageType": "configmap", "configMap": {"name": "c"}}})),
            alpha(
                json!({"operation": "verify", "snapshotId": "s", "kafkaCluster": cluster(),
                         "storage": {"s3": {"bucket": "b", "credentialsSecret": {"name": "c", "accessKeyKey": "id"}}}}),
            ),
        ] {
            let first = mutate(&object).unwrap();
            assert!(!first.warnings.is_empty());
            // Nothing the object says changes: the spellings are only explained.
            assert!(testing::contains(&first.object, &object), "{:#}", first.object);
            assert_eq!(
                first.object["spec"].get("operation"),
                object["spec"].get("operation")
            );
            let second = mutate(&first.object).unwrap();
            assert_eq!(second.object, first.object);
            assert!(second.warnings.iter().all(|w| first.warnings.contains(w)));
            assert!(!second.warnings.iter().any(|w| w.contains("was set to")));
        }
    }

    #[test]
    fn a_started_operation_is_immutable() {
        let old = alpha(json!({"operation": "rollback", "snapshotId": "s", "kafkaCluster": cluster()}));
        let mut old = mutate(&old).unwrap().object;
        old["status"] = json!({"phase": "Completed"});
        let mut new = old.clone();
        new["spec"]["snapshotId"] = json!("t");
        let verdict = validate(&new, Some(&old)).unwrap();
        assert!(
            verdict
                .errors
                .iter()
                .any(|e| e.path == "spec" && e.message.contains("immutable")),
            "{verdict:?}"
        );
    }
}
