//! The Secrets a spec names, and reading them from the resource's namespace.
//!
//! [`backup`], [`restore`], [`offset_reset`], [`offset_rollback`] and [`backup_validation`] list
//! every Secret key the operation will read (Kafka TLS/SASL, the credentials of every storage
//! block, signing keys), with the field path that names it, mirroring what
//! [`crate::kafka::client_config`] and [`crate::storage::Location::open`] read. The reconciler
//! checks them all before starting, so a missing Secret or key is reported by name at once, not
//! as a failure halfway through an operation. Secrets are only ever read from the resource's own
//! namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use crate::{
    api::v1beta1::{
        KafkaBackupSpec, KafkaBackupValidationSpec, KafkaClusterSpec, KafkaOffsetResetSpec,
        KafkaOffsetRollbackSpec, KafkaRestoreSpec, StorageSpec, StorageType,
    },
    secrets::SecretStore,
};

/// One key of one Secret that a spec names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRef {
    /// Field path of the reference, e.g. `spec.kafkaCluster.saslSecret`.
    pub field: String,
    /// Secret name.
    pub secret: String,
    /// Key in the Secret.
    pub key: String,
}

/// Why the Secrets of a resource cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretRefError {
    /// A Secret or key is missing.
    #[error("{}", .0.join("; "))]
    Missing(Vec<String>),
    /// Reading a Secret failed.
    #[error("failed to read Secret {secret} in namespace {namespace}: {source}")]
    Read {
        /// The Secret.
        secret: String,
        /// Its namespace.
        namespace: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

fn push(out: &mut Vec<SecretRef>, field: String, secret: &str, key: &str) {
    out.push(SecretRef {
        field,
        secret: secret.to_owned(),
        key: key.to_owned(),
    });
}

/// The keys [`crate::kafka::client_config`] reads for a cluster block at `field`.
pub fn kafka_cluster(cluster: &KafkaClusterSpec, field: &str) -> Vec<SecretRef> {
    let mut out = Vec::new();
    match (&cluster.ca_secret, &cluster.tls_secret) {
        (Some(ca), _) => push(&mut out, format!("{field}.caSecret"), &ca.name, &ca.ca_key),
        (None, Some(tls)) => push(&mut out, format!("{field}.tlsSecret"), &tls.name, &tls.ca_key),
        (None, None) => {}
    }
    if let Some(tls) = &cluster.tls_secret
        && let (Some(cert), Some(key)) = (&tls.cert_key, &tls.key_key)
    {
        push(&mut out, format!("{field}.tlsSecret"), &tls.name, cert);
        push(&mut out, format!("{field}.tlsSecret"), &tls.name, key);
    }
    if let Some(sasl) = &cluster.sasl_secret {
        push(
            &mut out,
            format!("{field}.saslSecret"),
            &sasl.name,
            &sasl.username_key,
        );
        push(
            &mut out,
            format!("{field}.saslSecret"),
            &sasl.name,
            &sasl.password_key,
        );
    }
    out
}

/// The keys [`crate::storage::Location::open`] reads for a storage block at `field`.
pub fn storage(storage: &StorageSpec, field: &str) -> Vec<SecretRef> {
    let mut out = Vec::new();
    match storage.type_ {
        StorageType::S3 => {
            if let Some(secret) = storage.s3.as_ref().and_then(|s| s.credentials_secret.as_ref()) {
                let f = format!("{field}.s3.credentialsSecret");
                push(&mut out, f.clone(), &secret.name, &secret.access_key_id_key);
                push(&mut out, f, &secret.name, &secret.secret_access_key_key);
            }
        }
        StorageType::Azure => {
            if let Some(azure) = &storage.azure {
                if let Some(secret) = &azure.credentials_secret {
                    push(
                        &mut out,
                        format!("{field}.azure.credentialsSecret"),
                        &secret.name,
                        &secret.account_key_key,
                    );
                }
                if let Some(secret) = &azure.sas_token_secret {
                    push(
                        &mut out,
                        format!("{field}.azure.sasTokenSecret"),
                        &secret.name,
                        &secret.sas_token_key,
                    );
                }
                if let Some(secret) = &azure.service_principal_secret {
                    let f = format!("{field}.azure.servicePrincipalSecret");
                    push(&mut out, f.clone(), &secret.name, &secret.client_id_key);
                    push(&mut out, f.clone(), &secret.name, &secret.tenant_id_key);
                    push(&mut out, f, &secret.name, &secret.client_secret_key);
                }
            }
        }
        StorageType::Gcs => {
            if let Some(secret) = storage.gcs.as_ref().and_then(|g| g.credentials_secret.as_ref()) {
                push(
                    &mut out,
                    format!("{field}.gcs.credentialsSecret"),
                    &secret.name,
                    &secret.service_account_json_key,
                );
            }
        }
        StorageType::Pvc | StorageType::ConfigMap => {}
    }
    out
}

/// The Secret keys of a KafkaBackup.
pub fn backup(spec: &KafkaBackupSpec) -> Vec<SecretRef> {
    let mut out = kafka_cluster(&spec.kafka_cluster, "spec.kafkaCluster");
    out.extend(storage(&spec.storage, "spec.storage"));
    out
}

/// The Secret keys of a KafkaRestore.
pub fn restore(spec: &KafkaRestoreSpec) -> Vec<SecretRef> {
    let mut out = kafka_cluster(&spec.kafka_cluster, "spec.kafkaCluster");
    if let Some(s) = &spec.backup_ref.storage {
        out.extend(storage(s, "spec.backupRef.storage"));
    }
    if let Some(snapshot) = &spec.snapshot_before_restore
        && snapshot.enabled
        && let Some(s) = &snapshot.storage
    {
        out.extend(storage(s, "spec.snapshotBeforeRestore.storage"));
    }
    out
}

/// The Secret keys of a KafkaOffsetReset.
pub fn offset_reset(spec: &KafkaOffsetResetSpec) -> Vec<SecretRef> {
    let mut out = kafka_cluster(&spec.kafka_cluster, "spec.kafkaCluster");
    if spec.snapshot.enabled
        && let Some(s) = &spec.snapshot.storage
    {
        out.extend(storage(s, "spec.snapshot.storage"));
    }
    if let Some(s) = spec.from_mapping.as_ref().and_then(|m| m.storage.as_ref()) {
        out.extend(storage(s, "spec.fromMapping.storage"));
    }
    out
}

/// The Secret keys of a KafkaOffsetRollback (after `snapshotFrom` was resolved into `storage`).
pub fn offset_rollback(spec: &KafkaOffsetRollbackSpec) -> Vec<SecretRef> {
    let mut out = spec
        .kafka_cluster
        .as_ref()
        .map(|c| kafka_cluster(c, "spec.kafkaCluster"))
        .unwrap_or_default();
    if let Some(s) = &spec.storage {
        out.extend(storage(s, "spec.storage"));
    }
    out
}

/// The Secret keys of a KafkaBackupValidation.
pub fn backup_validation(spec: &KafkaBackupValidationSpec) -> Vec<SecretRef> {
    let mut out = Vec::new();
    if let Some(s) = &spec.backup_ref.storage {
        out.extend(storage(s, "spec.backupRef.storage"));
    }
    if let Some(c) = &spec.kafka_cluster {
        out.extend(kafka_cluster(c, "spec.kafkaCluster"));
    }
    if let Some(drill) = &spec.checks.restore_drill
        && drill.enabled
        && let Some(c) = &drill.kafka_cluster
    {
        out.extend(kafka_cluster(c, "spec.checks.restoreDrill.kafkaCluster"));
    }
    if let Some(evidence) = &spec.evidence
        && evidence.enabled
    {
        if let Some(s) = &evidence.storage {
            out.extend(storage(s, "spec.evidence.storage"));
        }
        if let Some(signing) = &evidence.signing
            && signing.enabled
        {
            let f = "spec.evidence.signing.keySecret".to_owned();
            push(
                &mut out,
                f.clone(),
                &signing.key_secret.name,
                &signing.key_secret.private_key_key,
            );
            push(
                &mut out,
                f,
                &signing.key_secret.name,
                &signing.key_secret.public_key_key,
            );
        }
    }
    out
}

/// The distinct Secret names of `refs`.
pub fn secret_names(refs: &[SecretRef]) -> BTreeSet<String> {
    refs.iter().map(|r| r.secret.clone()).collect()
}

/// What is missing among `fetched` (name -> key -> bytes; absent name: the Secret does not
/// exist), one sentence per missing Secret or key, naming the field that refers to it. Pure.
pub fn missing(
    refs: &[SecretRef],
    fetched: &HashMap<String, BTreeMap<String, Vec<u8>>>,
    namespace: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in refs {
        let sentence = match fetched.get(&r.secret) {
            None => format!(
                "{}: Secret {} not found in namespace {namespace}",
                r.field, r.secret
            ),
            Some(data) if !data.contains_key(&r.key) => format!(
                "{}: Secret {} in namespace {namespace} has no key {}",
                r.field, r.secret, r.key
            ),
            Some(_) => continue,
        };
        if !out.contains(&sentence) {
            out.push(sentence);
        }
    }
    out
}

/// Reads the Secrets `refs` names from `namespace` and checks every key is there.
pub async fn fetch(
    client: &Client,
    namespace: &str,
    refs: &[SecretRef],
) -> Result<SecretStore, SecretRefError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut fetched: HashMap<String, BTreeMap<String, Vec<u8>>> = HashMap::new();
    for name in secret_names(refs) {
        let secret = api.get_opt(&name).await.map_err(|source| SecretRefError::Read {
            secret: name.clone(),
            namespace: namespace.to_owned(),
            source,
        })?;
        if let Some(secret) = secret {
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            fetched.insert(name, data);
        }
    }
    let problems = missing(refs, &fetched, namespace);
    if !problems.is_empty() {
        return Err(SecretRefError::Missing(problems));
    }
    Ok(SecretStore::Map {
        origin: format!("namespace {namespace}"),
        secrets: fetched,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::{Value, json};

    use super::*;
    use crate::api::v1beta1::{
        KafkaBackup, KafkaBackupValidation, KafkaOffsetReset, KafkaOffsetRollback, KafkaRestore,
    };

    fn object<T: serde::de::DeserializeOwned>(kind: &str, spec: Value) -> T {
        serde_json::from_value(json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": kind,
            "metadata": {"name": "x", "namespace": "ns"}, "spec": spec,
        }))
        .unwrap()
    }

    fn names(refs: &[SecretRef]) -> Vec<(String, String, String)> {
        let mut v: Vec<_> = refs
            .iter()
            .map(|r| (r.field.clone(), r.secret.clone(), r.key.clone()))
            .collect();
        v.sort();
        v
    }

    fn cluster_all() -> Value {
        json!({
            "bootstrapServers": ["k:9093"], "securityProtocol": "SASL_SSL",
            "tlsSecret": {"name": "tls", "certKey": "tls.crt", "keyKey": "tls.key"},
            "caSecret": {"name": "ca"},
            "saslSecret": {"name": "sasl", "mechanism": "SCRAM-SHA-512"},
        })
    }

    fn t(f: &str, s: &str, k: &str) -> (String, String, String) {
        (f.into(), s.into(), k.into())
    }

    #[test]
    fn kafka_cluster_refs_follow_client_config() {
        let c: KafkaClusterSpec = serde_json::from_value(cluster_all()).unwrap();
        assert_eq!(
            names(&kafka_cluster(&c, "spec.kafkaCluster")),
            vec![
                t("spec.kafkaCluster.caSecret", "ca", "ca.crt"),
                t("spec.kafkaCluster.saslSecret", "sasl", "password"),
                t("spec.kafkaCluster.saslSecret", "sasl", "username"),
                t("spec.kafkaCluster.tlsSecret", "tls", "tls.crt"),
                t("spec.kafkaCluster.tlsSecret", "tls", "tls.key"),
            ]
        );
        // Without caSecret the CA comes from tlsSecret.caKey.
        let c: KafkaClusterSpec = serde_json::from_value(json!({
            "bootstrapServers": ["k:9093"], "securityProtocol": "SSL", "tlsSecret": {"name": "tls"}
        }))
        .unwrap();
        assert_eq!(
            names(&kafka_cluster(&c, "f")),
            vec![t("f.tlsSecret", "tls", "ca.crt")]
        );
    }

    #[test]
    fn every_storage_credential_is_listed() {
        let s3: StorageSpec = serde_json::from_value(
            json!({"type": "S3", "s3": {"bucket": "b", "credentialsSecret": {"name": "aws"}}}),
        )
        .unwrap();
        assert_eq!(
            names(&storage(&s3, "spec.storage")),
            vec![
                t("spec.storage.s3.credentialsSecret", "aws", "AWS_ACCESS_KEY_ID"),
                t(
                    "spec.storage.s3.credentialsSecret",
                    "aws",
                    "AWS_SECRET_ACCESS_KEY"
                ),
            ]
        );
        let azure: StorageSpec = serde_json::from_value(json!({"type": "Azure", "azure": {
            "container": "c", "accountName": "a", "servicePrincipalSecret": {"name": "sp"}}}))
        .unwrap();
        assert_eq!(storage(&azure, "s").len(), 3);
        let gcs: StorageSpec = serde_json::from_value(
            json!({"type": "GCS", "gcs": {"bucket": "b", "credentialsSecret": {"name": "gcp"}}}),
        )
        .unwrap();
        assert_eq!(
            names(&storage(&gcs, "s")),
            vec![t("s.gcs.credentialsSecret", "gcp", "SERVICE_ACCOUNT_JSON")]
        );
        let pvc: StorageSpec =
            serde_json::from_value(json!({"type": "PVC", "pvc": {"claimName": "c"}})).unwrap();
        assert!(storage(&pvc, "s").is_empty());
    }

    #[test]
    fn each_kind_lists_all_its_blocks() {
        let s3 =
            |name: &str| json!({"type": "S3", "s3": {"bucket": "b", "credentialsSecret": {"name": name}}});
        let b: KafkaBackup = object(
            "KafkaBackup",
            json!({"kafkaCluster": cluster_all(), "topics": ["t"], "storage": s3("backup-s3")}),
        );
        assert_eq!(
            secret_names(&backup(&b.spec)),
            ["backup-s3", "ca", "sasl", "tls"].map(String::from).into()
        );

        let r: KafkaRestore = object(
            "KafkaRestore",
            json!({"kafkaCluster": cluster_all(),
                "backupRef": {"backupId": "x", "storage": s3("backup-s3")},
                "snapshotBeforeRestore": {"enabled": true, "storage": s3("snap-s3")}}),
        );
        assert_eq!(
            secret_names(&restore(&r.spec)),
            ["backup-s3", "ca", "sasl", "snap-s3", "tls"]
                .map(String::from)
                .into()
        );

        let o: KafkaOffsetReset = object(
            "KafkaOffsetReset",
            json!({"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "consumerGroups": ["g"],
                "strategy": "FromMapping",
                "fromMapping": {"storage": s3("mapping-s3"), "path": "m.json"},
                "snapshot": {"enabled": true, "storage": s3("snap-s3")}}),
        );
        assert_eq!(
            secret_names(&offset_reset(&o.spec)),
            ["mapping-s3", "snap-s3"].map(String::from).into()
        );

        let rb: KafkaOffsetRollback = object(
            "KafkaOffsetRollback",
            json!({"operation": "Rollback", "snapshotId": "s", "storage": s3("snap-s3"),
                "kafkaCluster": cluster_all()}),
        );
        assert_eq!(
            secret_names(&offset_rollback(&rb.spec)),
            ["ca", "sasl", "snap-s3", "tls"].map(String::from).into()
        );

        let v: KafkaBackupValidation = object(
            "KafkaBackupValidation",
            json!({"backupRef": {"backupId": "x", "storage": s3("backup-s3")},
                "kafkaCluster": {"bootstrapServers": ["k:9092"], "securityProtocol": "SASL_PLAINTEXT",
                    "saslSecret": {"name": "src-sasl", "mechanism": "PLAIN"}},
                "checks": {"restoreDrill": {"kafkaCluster": {"bootstrapServers": ["d:9092"],
                    "securityProtocol": "SSL", "tlsSecret": {"name": "drill-tls"}}}},
                "evidence": {"enabled": true, "storage": s3("evidence-s3"),
                    "signing": {"keySecret": {"name": "signing"}}}}),
        );
        let refs = backup_validation(&v.spec);
        assert_eq!(
            secret_names(&refs),
            ["backup-s3", "drill-tls", "evidence-s3", "signing", "src-sasl"]
                .map(String::from)
                .into()
        );
        assert!(refs.iter().any(|r| r.key == "signing-key.pem"));
        assert!(refs.iter().any(|r| r.key == "signing-key-pub.pem"));
    }

    #[test]
    fn missing_names_the_field_the_secret_and_the_key() {
        let refs = vec![
            SecretRef {
                field: "spec.kafkaCluster.saslSecret".into(),
                secret: "sasl".into(),
                key: "username".into(),
            },
            SecretRef {
                field: "spec.kafkaCluster.saslSecret".into(),
                secret: "sasl".into(),
                key: "password".into(),
            },
            SecretRef {
                field: "spec.storage.s3.credentialsSecret".into(),
                secret: "aws".into(),
                key: "AWS_ACCESS_KEY_ID".into(),
            },
        ];
        let mut fetched = HashMap::new();
        fetched.insert(
            "sasl".to_owned(),
            BTreeMap::from([("username".to_owned(), b"u".to_vec())]),
        );
        assert_eq!(
            missing(&refs, &fetched, "team-a"),
            vec![
                "spec.kafkaCluster.saslSecret: Secret sasl in namespace team-a has no key password"
                    .to_owned(),
                "spec.storage.s3.credentialsSecret: Secret aws not found in namespace team-a".to_owned(),
            ]
        );
    }
}
