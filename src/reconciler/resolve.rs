//! References to other resources, turned into concrete ids and storage blocks before an operation
//! starts (the operations themselves never talk to the Kubernetes API):
//!
//! - KafkaOffsetRollback `snapshotFrom.offsetResetRef` / `restoreRef`: the pre-change snapshot id
//!   in that resource's `status.snapshot.snapshotId`, and its snapshot storage (the spec's, or
//!   the default ConfigMap named after it) become `snapshotId` and `storage`;
//! - KafkaRestore and KafkaBackupValidation `backupRef.kafkaBackupRef`: that KafkaBackup's
//!   `storage` and backup set id (`backupId` of the reference, else its `status.backupId`, else
//!   its `spec.backupId` or name) become `backupRef.storage` and `backupRef.backupId`. Only the
//!   storage block is taken from the KafkaBackup: its credentials Secrets are read from the
//!   namespace of the resource that refers to it;
//! - KafkaOffsetReset `fromMapping.restoreRef`: the KafkaRestore's `status.offsetMappingPath`,
//!   below the storage of its backup, becomes `fromMapping.storage` + `path`.
//!
//! A reference that cannot be resolved yet (missing, or its status not written yet) is an `Err`
//! with a sentence naming it; the reconciler reports it (reason ReferenceNotReady) and tries again.

use kube::{Api, Client, api::ObjectMeta};

use crate::{
    api::v1beta1::{
        BackupRef, KafkaBackup, KafkaBackupValidation, KafkaOffsetReset, KafkaOffsetRollback, KafkaRestore,
        StorageSpec, StorageType,
    },
    ops::default_snapshot_storage,
};

async fn get<K>(client: &Client, namespace: &str, name: &str, what: &str) -> Result<K, String>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(object)) => Ok(object),
        Ok(None) => Err(format!("{what}: {} {namespace}/{name} not found", K::kind(&()))),
        Err(e) => Err(format!(
            "{what}: cannot read {} {namespace}/{name}: {e}",
            K::kind(&())
        )),
    }
}

fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// Resolves `snapshotFrom` of a KafkaOffsetRollback.
pub async fn offset_rollback(
    rollback: &KafkaOffsetRollback,
    client: &Client,
    namespace: &str,
) -> Result<KafkaOffsetRollback, String> {
    let mut out = rollback.clone();
    let Some(from) = &rollback.spec.snapshot_from else {
        return Ok(out);
    };
    let (id, storage) = if let Some(r) = &from.offset_reset_ref {
        let field = "spec.snapshotFrom.offsetResetRef";
        let reset: KafkaOffsetReset = get(client, namespace, &r.name, field).await?;
        let id = reset
            .status
            .as_ref()
            .and_then(|s| s.snapshot.as_ref())
            .and_then(|s| s.snapshot_id.clone())
            .ok_or_else(|| {
                format!(
                    "{field}: KafkaOffsetReset {namespace}/{} has no pre-change snapshot in its status (not finished yet, a dry run, or snapshot.enabled false)",
                    r.name
                )
            })?;
        let storage = reset
            .spec
            .snapshot
            .storage
            .clone()
            .unwrap_or_else(|| default_snapshot_storage(&name_of(&reset.metadata)));
        (id, storage)
    } else if let Some(r) = &from.restore_ref {
        let field = "spec.snapshotFrom.restoreRef";
        let restore: KafkaRestore = get(client, namespace, &r.name, field).await?;
        let id = restore
            .status
            .as_ref()
            .and_then(|s| s.snapshot.as_ref())
            .and_then(|s| s.snapshot_id.clone())
            .ok_or_else(|| {
                format!(
                    "{field}: KafkaRestore {namespace}/{} has no pre-restore snapshot in its status",
                    r.name
                )
            })?;
        let storage = restore
            .spec
            .snapshot_before_restore
            .as_ref()
            .and_then(|s| s.storage.clone())
            .unwrap_or_else(|| default_snapshot_storage(&name_of(&restore.metadata)));
        (id, storage)
    } else {
        return Ok(out);
    };
    out.spec.snapshot_id = Some(id);
    out.spec.storage = Some(storage);
    out.spec.snapshot_from = None;
    Ok(out)
}

/// Turns `backup_ref.kafkaBackupRef` into `backup`'s storage and backup set id: the reference's
/// `backupId` when it names one, else the KafkaBackup's current set (its `status.backupId`, else
/// its `spec.backupId`, else its name). `backup` is the KafkaBackup the reference names; the
/// reconciler reads it from the API, `run -f` from what it recorded of the KafkaBackups it ran.
/// Pure.
pub fn resolve_backup_ref(backup_ref: &mut BackupRef, backup: &KafkaBackup) {
    let id = backup_ref
        .backup_id
        .clone()
        .or_else(|| backup.status.as_ref().and_then(|s| s.backup_id.clone()))
        .or_else(|| backup.spec.backup_id.clone())
        .unwrap_or_else(|| name_of(&backup.metadata));
    backup_ref.storage = Some(backup.spec.storage.clone());
    backup_ref.backup_id = Some(id);
    backup_ref.kafka_backup_ref = None;
}

/// Turns `backup_ref.kafkaBackupRef` (if set) into the KafkaBackup's storage and backup id.
async fn backup_ref(backup_ref: &mut BackupRef, client: &Client, namespace: &str) -> Result<(), String> {
    if let Some(r) = &backup_ref.kafka_backup_ref {
        let ns = r.namespace.as_deref().unwrap_or(namespace);
        let backup: KafkaBackup = get(client, ns, &r.name, "spec.backupRef.kafkaBackupRef").await?;
        resolve_backup_ref(backup_ref, &backup);
    }
    Ok(())
}

/// Resolves `backupRef.kafkaBackupRef` of a KafkaRestore.
pub async fn restore(
    restore: &KafkaRestore,
    client: &Client,
    namespace: &str,
) -> Result<KafkaRestore, String> {
    let mut out = restore.clone();
    backup_ref(&mut out.spec.backup_ref, client, namespace).await?;
    Ok(out)
}

/// Resolves `backupRef.kafkaBackupRef` of a KafkaBackupValidation.
pub async fn backup_validation(
    validation: &KafkaBackupValidation,
    client: &Client,
    namespace: &str,
) -> Result<KafkaBackupValidation, String> {
    let mut out = validation.clone();
    backup_ref(&mut out.spec.backup_ref, client, namespace).await?;
    Ok(out)
}

/// The URI prefix [`crate::storage::Location::uri`] gives keys of an object-storage block (no
/// trailing slash). Pure.
pub fn uri_base(storage: &StorageSpec) -> Option<String> {
    let with_prefix = |base: String, prefix: Option<&str>| {
        let prefix = prefix.unwrap_or("").trim_matches('/');
        if prefix.is_empty() {
            base
        } else {
            format!("{base}/{prefix}")
        }
    };
    match storage.type_ {
        StorageType::S3 => storage
            .s3
            .as_ref()
            .map(|s| with_prefix(format!("s3://{}", s.bucket), s.prefix.as_deref())),
        StorageType::Azure => storage
            .azure
            .as_ref()
            .map(|a| with_prefix(format!("az://{}", a.container), a.prefix.as_deref())),
        StorageType::Gcs => storage
            .gcs
            .as_ref()
            .map(|g| with_prefix(format!("gs://{}", g.bucket), g.prefix.as_deref())),
        StorageType::Pvc => storage
            .pvc
            .as_ref()
            .map(|p| with_prefix(format!("pvc://{}", p.claim_name), p.sub_path.as_deref())),
        StorageType::ConfigMap => None,
    }
}

/// Resolves `fromMapping.restoreRef` of a KafkaOffsetReset.
pub async fn offset_reset(
    reset: &KafkaOffsetReset,
    client: &Client,
    namespace: &str,
) -> Result<KafkaOffsetReset, String> {
    let mut out = reset.clone();
    let Some(r) = reset
        .spec
        .from_mapping
        .as_ref()
        .and_then(|m| m.restore_ref.as_ref())
    else {
        return Ok(out);
    };
    let field = "spec.fromMapping.restoreRef";
    let kr: KafkaRestore = get(client, namespace, &r.name, field).await?;
    let kr = restore(&kr, client, namespace).await?;
    let uri = kr
        .status
        .as_ref()
        .and_then(|s| s.offset_mapping_path.clone())
        .ok_or_else(|| {
            format!(
                "{field}: KafkaRestore {namespace}/{} has no offset mapping in its status (not finished yet?)",
                r.name
            )
        })?;
    let storage = kr.spec.backup_ref.storage.clone().ok_or_else(|| {
        format!(
            "{field}: KafkaRestore {namespace}/{} names no backup storage",
            r.name
        )
    })?;
    let path = uri_base(&storage)
        .and_then(|base| uri.strip_prefix(&format!("{base}/")).map(str::to_owned))
        .ok_or_else(|| {
            format!(
                "{field}: the offset mapping {uri} of KafkaRestore {namespace}/{} is not in the restore's backup storage",
                r.name
            )
        })?;
    if let Some(mapping) = out.spec.from_mapping.as_mut() {
        mapping.storage = Some(storage);
        mapping.path = Some(path);
        mapping.restore_ref = None;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    /// A mock API answering GETs of KafkaBackups in namespace `ns` from `backups` (404 otherwise).
    fn api_with_backups(backups: Vec<serde_json::Value>) -> Client {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let path = request.uri().path().to_owned();
                let found = backups.iter().find(|b| {
                    path == format!(
                        "/apis/kafka.oso.sh/v1beta1/namespaces/{}/kafkabackups/{}",
                        b["metadata"]["namespace"].as_str().unwrap(),
                        b["metadata"]["name"].as_str().unwrap()
                    )
                });
                let (code, body) = match found {
                    Some(b) => (200, b.clone()),
                    None => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    ),
                };
                send.send_response(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn a_kafka_backup_ref_becomes_its_storage_and_current_set() {
        let storage = json!({"type": "PVC", "pvc": {"claimName": "backups"}});
        let client = api_with_backups(vec![json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
            "metadata": {"name": "nightly", "namespace": "team-a"},
            "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "topics": ["t"], "storage": storage},
            "status": {"backupId": "nightly-20260101"},
        })]);
        let object = |backup_ref: serde_json::Value| -> KafkaRestore {
            serde_json::from_value(json!({
                "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore",
                "metadata": {"name": "r", "namespace": "team-a"},
                "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "backupRef": backup_ref},
            }))
            .unwrap()
        };
        let resolved = restore(
            &object(json!({"kafkaBackupRef": {"name": "nightly"}})),
            &client,
            "team-a",
        )
        .await
        .unwrap();
        let r = &resolved.spec.backup_ref;
        assert_eq!(r.backup_id.as_deref(), Some("nightly-20260101"));
        assert_eq!(serde_json::to_value(&r.storage).unwrap(), storage);
        assert!(r.kafka_backup_ref.is_none());
        // An explicit backupId wins over the KafkaBackup's current set.
        let resolved = restore(
            &object(json!({"kafkaBackupRef": {"name": "nightly"}, "backupId": "older"})),
            &client,
            "team-a",
        )
        .await
        .unwrap();
        assert_eq!(resolved.spec.backup_ref.backup_id.as_deref(), Some("older"));
        // A missing KafkaBackup is named.
        let error = restore(
            &object(json!({"kafkaBackupRef": {"name": "gone"}})),
            &client,
            "team-a",
        )
        .await
        .unwrap_err();
        assert!(
            error.contains("spec.backupRef.kafkaBackupRef") && error.contains("gone"),
            "{error}"
        );
    }

    #[test]
    fn uri_base_matches_the_storage_module() {
        let s3: StorageSpec =
            serde_json::from_value(json!({"type": "S3", "s3": {"bucket": "b", "prefix": "/p/q/"}})).unwrap();
        assert_eq!(uri_base(&s3).unwrap(), "s3://b/p/q");
        let pvc: StorageSpec =
            serde_json::from_value(json!({"type": "PVC", "pvc": {"claimName": "c"}})).unwrap();
        assert_eq!(uri_base(&pvc).unwrap(), "pvc://c");
        let cm: StorageSpec =
            serde_json::from_value(json!({"type": "ConfigMap", "configMap": {"name": "x"}})).unwrap();
        assert!(uri_base(&cm).is_none());
    }
}
