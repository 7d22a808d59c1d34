//! Against a real cluster with the operator installed (its Helm chart: the webhooks, the CRDs'
//! conversion and the APIService of the catalog), driven as a user drives it: with `kubectl` as a
//! subprocess. Every test here is ignored: no cluster runs on the build machines. README.md, "In
//! a cluster", says what to install first and which variables to set; without `KUBECONFIG` each
//! test fails at once saying so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{collections::HashMap, time::Duration};

use kafka_backup_operator::{
    api::v1beta1::StorageSpec,
    secrets::SecretStore,
    storage::{
        Location, StorageEnv,
        snapshot::{GroupOffsets, OffsetSnapshot, PartitionOffset, SnapshotSource, snapshot_key},
    },
};
use serde_json::json;
use support::{
    cluster::{Kubectl, Namespace, kubectl, required, wait_until},
    unique,
};

/// The APIService of the catalog is Available: the operator is installed and serving.
fn operator_installed() {
    let available = kubectl(
        &[
            "get",
            "apiservice",
            "v1alpha1.catalog.kafka.oso.sh",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ],
        None,
    );
    assert!(
        available.ok && available.stdout.trim() == "True",
        "this test needs the operator installed with its chart and its APIService \
         v1alpha1.catalog.kafka.oso.sh Available (README.md, \"In a cluster\"): {} {}",
        available.stdout,
        available.stderr
    );
}

/// Applies `manifest` in `namespace` (`--server-side` when `server_side`).
fn apply(namespace: &str, manifest: &str, server_side: bool) -> Kubectl {
    let mut args = vec!["apply", "-n", namespace, "-f", "-"];
    if server_side {
        args.push("--server-side");
    }
    kubectl(&args, Some(manifest))
}

/// Issue 15 item 2: deleting a namespace makes the namespace controller delete every
/// `offsetsnapshots` object the catalog lists in it (a DELETE collection, then one DELETE per
/// object); the snapshots stored in a location outside the cluster must survive that, as
/// documented: only an explicit request about one snapshot deletes it.
///
/// The snapshot is written to S3 (`KBO_E2E_S3_*`, reachable from the operator's pods and from
/// this process) under a fresh prefix; a suspended KafkaBackup of the namespace names that
/// location, so the catalog lists the snapshot there (checked before the deletion). After the
/// namespace is gone, the stored document is still there, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: KUBECONFIG, the operator installed with its chart (APIService Available), KBO_E2E_S3_*; see README.md, In a cluster"]
async fn e2e_deleting_a_namespace_keeps_its_stored_snapshots() {
    operator_installed();
    let what = "an S3 location both the operator's pods and this process reach";
    let endpoint = required("KBO_E2E_S3_ENDPOINT", what);
    let bucket = required("KBO_E2E_S3_BUCKET", what);
    let access_key = required("KBO_E2E_S3_ACCESS_KEY", what);
    let secret_key = required("KBO_E2E_S3_SECRET_KEY", what);
    let region = std::env::var("KBO_E2E_S3_REGION").unwrap_or_else(|_| "us-east-1".into());

    let namespace = Namespace::create("e2e-keep");
    let ns = namespace.0.clone();
    kubectl(
        &[
            "create",
            "secret",
            "generic",
            "s3",
            "-n",
            &ns,
            &format!("--from-literal=AWS_ACCESS_KEY_ID={access_key}"),
            &format!("--from-literal=AWS_SECRET_ACCESS_KEY={secret_key}"),
        ],
        None,
    )
    .success();
    let storage = json!({"type": "S3", "s3": {"bucket": bucket, "endpoint": endpoint, "region": region,
        "pathStyle": true, "allowHttp": endpoint.starts_with("http://"), "prefix": unique("e2e-keep"),
        "credentialsSecret": {"name": "s3"}}});
    let spec: StorageSpec = serde_json::from_value(storage.clone()).unwrap();
    let secrets = SecretStore::Map {
        origin: "test".into(),
        secrets: HashMap::from([(
            "s3".to_owned(),
            [
                ("AWS_ACCESS_KEY_ID".to_owned(), access_key.into_bytes()),
                ("AWS_SECRET_ACCESS_KEY".to_owned(), secret_key.into_bytes()),
            ]
            .into(),
        )]),
    };
    let location = Location::open(&spec, &secrets, &StorageEnv::default()).unwrap();
    let id = unique("kept");
    let snapshot = OffsetSnapshot {
        snapshot_id: id.clone(),
        timestamp: chrono::Utc::now(),
        cluster: "kafka:9092".into(),
        groups: [(
            "orders-app".to_owned(),
            GroupOffsets {
                topics: [(
                    "orders".to_owned(),
                    [(
                        0,
                        PartitionOffset {
                            offset: 42,
                            metadata: String::new(),
                            timestamp: chrono::Utc::now().timestamp_millis(),
                        },
                    )]
                    .into(),
                )]
                .into(),
            },
        )]
        .into(),
        source: Some(SnapshotSource {
            kind: "KafkaOffsetRollback".into(),
            namespace: Some(ns.clone()),
            name: "before-migration".into(),
            uid: None,
        }),
        expires_at: None,
    };
    let key = snapshot_key(&id);
    location.put_new(&key, snapshot.to_bytes()).await.unwrap();

    // A resource of the namespace names the location: the catalog lists the snapshot there.
    let backup = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
        "metadata": {"name": "names-the-location"},
        "spec": {"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "topics": ["orders"],
            "storage": storage, "suspend": true}});
    apply(&ns, &backup.to_string(), false).success();
    wait_until(
        Duration::from_secs(300),
        "the catalog lists the snapshot in the namespace (kubectl get offsetsnapshots)",
        || kubectl(&["get", "offsetsnapshots", "-n", &ns, &id], None).ok,
    )
    .await;

    kubectl(&["delete", "namespace", &ns, "--timeout=300s"], None).success();
    wait_until(Duration::from_secs(300), "the namespace is gone", || {
        let got = kubectl(&["get", "namespace", &ns], None);
        !got.ok && got.stderr.contains("NotFound")
    })
    .await;
    let kept = location.get(&key).await.unwrap();
    assert_eq!(
        kept,
        Some(snapshot.to_bytes()),
        "the stored snapshot {} survives the deletion of namespace {ns}",
        location.uri(&key)
    );
    location.delete(&key).await.unwrap();
}

/// A pre-1.0 v1alpha1 KafkaRestore with `spec.storage` (the mutating webhook moves it to
/// `spec.backupRef.storage`).
fn restore_with_storage(name: &str) -> String {
    format!(
        "apiVersion: kafka.oso.sh/v1alpha1
kind: KafkaRestore
metadata:
  name: {name}
spec:
  backupId: backup-20241201
  targetCluster:
    bootstrapServers: [kafka:9092]
  storage:
    storageType: s3
    s3:
      bucket: kafka-backups
      region: us-west-2
"
    )
}

/// The same restore, now reading the backup of a KafkaBackup and naming no storage: in the
/// v1beta1 spelling (`backupRef.kafkaBackupRef`) or the v1.0.0 v1alpha1 one (`backupRef.name`).
fn restore_with_backup_ref(name: &str, v1beta1: bool) -> String {
    let (version, reference) = if v1beta1 {
        ("v1beta1", "kafkaBackupRef: {name: nightly}")
    } else {
        ("v1alpha1", "name: nightly")
    };
    format!(
        "apiVersion: kafka.oso.sh/{version}
kind: KafkaRestore
metadata:
  name: {name}
spec:
  kafkaCluster:
    bootstrapServers: [kafka:9092]
  backupRef:
    {reference}
"
    )
}

/// Issue 15 item 6: an apply of the user's file means what the file says, although the mutating
/// webhook rewrote the spellings of an earlier apply. A restore created with `spec.storage` and
/// applied again reading a KafkaBackup (`kafkaBackupRef`, no storage) is accepted, with
/// client-side and with server-side apply, in both spellings; and applying an unchanged v1alpha1
/// manifest again prints `unchanged`, without warnings.
#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG and the operator installed with its chart (webhooks, conversion); see README.md, In a cluster"]
async fn e2e_apply_means_what_the_file_says() {
    operator_installed();
    let namespace = Namespace::create("e2e-apply");
    let ns = &namespace.0;
    for server_side in [false, true] {
        for v1beta1 in [true, false] {
            let name = format!(
                "moved-{}-{}",
                if server_side { "ssa" } else { "csa" },
                if v1beta1 { "beta" } else { "alpha" }
            );
            let created = apply(ns, &restore_with_storage(&name), server_side);
            created.success();
            if !server_side {
                let again = apply(ns, &restore_with_storage(&name), false);
                assert!(
                    again
                        .success()
                        .contains(&format!("kafkarestore.kafka.oso.sh/{name} unchanged")),
                    "an unchanged re-apply says unchanged: {}",
                    again.stdout
                );
                assert!(!again.stderr.contains("Warning"), "no warnings: {}", again.stderr);
            }
            let moved = apply(ns, &restore_with_backup_ref(&name, v1beta1), server_side);
            assert!(
                moved.ok,
                "{name}: kafkaBackupRef without storage is accepted:\n{}\n{}",
                moved.stdout, moved.stderr
            );
            let stored = kubectl(
                &[
                    "get",
                    "kafkarestores.v1beta1.kafka.oso.sh",
                    "-n",
                    ns,
                    &name,
                    "-o",
                    "jsonpath={.spec.backupRef}",
                ],
                None,
            );
            // What the file says, and nothing of the earlier file: neither its storage nor its
            // backup id.
            let backup_ref: serde_json::Value = serde_json::from_str(stored.success()).unwrap();
            assert_eq!(
                backup_ref,
                json!({"kafkaBackupRef": {"name": "nightly"}}),
                "{name}: the stored backupRef is what the file says"
            );
        }
    }

    // Every complete v1alpha1 seed: applied twice, the second apply changes nothing.
    let exempt = std::fs::read_to_string("tests/fixtures/admission/seed-exemptions.yaml").unwrap();
    for kind in [
        "kafkabackup",
        "kafkarestore",
        "kafkaoffsetreset",
        "kafkaoffsetrollback",
    ] {
        let dir = format!("tests/fixtures/seeds/{kind}");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let file = format!("seeds/{kind}/{}", path.file_name().unwrap().to_string_lossy());
            if exempt.contains(&format!("file: {file}\n")) {
                continue;
            }
            // Into the test's namespace (some seeds name the operator's).
            let mut seed: serde_json::Value =
                serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            if let Some(metadata) = seed["metadata"].as_object_mut() {
                metadata.remove("namespace");
            }
            let manifest = seed.to_string();
            apply(ns, &manifest, false).success();
            let again = apply(ns, &manifest, false);
            assert!(
                again.success().trim_end().ends_with("unchanged"),
                "{file}: re-applied unchanged: {}",
                again.stdout
            );
            assert!(
                !again.stderr.contains("Warning"),
                "{file}: no warnings on an unchanged re-apply: {}",
                again.stderr
            );
            // Seeds of one kind share names: each starts from nothing.
            kubectl(&["delete", "-n", ns, "-f", "-", "--timeout=60s"], Some(&manifest)).success();
        }
    }
}
