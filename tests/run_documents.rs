//! `run -f` of several documents, as `kubectl apply -f` takes them, through the binary against
//! the nisshi broker: a KafkaBackup and a KafkaRestore naming it by `backupRef` in one file run in
//! order (the restore reads the backup the document before it wrote, resolved from the record
//! of that run), and a resource that does not complete stops those after it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{path::Path, process::Command};

use serde_json::{Value, json};
use support::{service, unique};

/// `run -f` of `file` with the state directory and PVC root in `dir`: (success, statuses, stderr).
fn run_f(file: &Path, dir: &Path) -> (bool, Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(file)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--pvc-root")
        .arg(dir.join("pvc"))
        .env_remove("KBO_CATALOG_DIR")
        .env_remove("KBO_CONFIGMAPS_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let statuses: Vec<Value> = serde_saphyr::from_multiple(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not status documents ({e}): {stdout}\n{stderr}"));
    (
        out.status.success(),
        statuses.into_iter().map(|d| d["status"].clone()).collect(),
        stderr,
    )
}

fn documents(documents: &[Value]) -> String {
    documents
        .iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_and_a_restore_naming_it_run_in_order_from_one_file() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let (topic, restored) = (unique("orders"), unique("restored"));
    support::create_topic(&bootstrap, &topic, 2).await;
    let config = {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &bootstrap);
        config
    };
    support::produce(
        &config,
        &topic,
        2,
        5,
        |i| 1_733_047_200_000 + i,
        |_, _| Vec::<(&str, Vec<u8>)>::new(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let backup = json!({
        "apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaBackup",
        "metadata": {"name": "nightly"},
        "spec": {
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topics": [topic],
            "storage": {"storageType": "pvc", "pvc": {"claimName": "backups"}},
            "stopAtCurrentOffsets": true,
        },
    });
    let restore = json!({
        "apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaRestore",
        "metadata": {"name": "from-nightly"},
        "spec": {
            "backupRef": {"name": "nightly"},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topics": [topic],
            "topicMapping": {topic.clone(): restored},
            "createTopics": true,
            "defaultReplicationFactor": 1,
        },
    });
    let file = dir.path().join("backup-and-restore.yaml");
    std::fs::write(&file, documents(&[backup, restore])).unwrap();
    let (ok, statuses, stderr) = run_f(&file, dir.path());
    assert!(ok, "{statuses:?}\n{stderr}");
    assert_eq!(
        statuses.len(),
        2,
        "one status per resource, in order: {statuses:?}"
    );
    assert_eq!(statuses[0]["backupId"], "nightly", "{statuses:?}");
    assert_eq!(statuses[1]["phase"], "Completed", "{statuses:?}");
    let record = dir.path().join("state/kafkabackups/default/nightly.yaml");
    assert!(
        stderr.contains(&format!(
            "spec.backupRef: read from the record {}",
            record.display()
        )),
        "{stderr}"
    );
    let consumer: rdkafka::consumer::BaseConsumer = config.create().unwrap();
    let records: i64 = (0..2)
        .map(|p| {
            use rdkafka::consumer::Consumer;
            consumer
                .fetch_watermarks(&restored, p, std::time::Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum();
    assert_eq!(records, 10, "the backup's records, restored");

    // A resource that does not complete stops those after it: the verify finds no snapshot, so
    // the restore after it does not run.
    let failing = json!({
        "apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaOffsetRollback",
        "metadata": {"name": "verify-absent"},
        "spec": {
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "consumerGroups": [unique("g")],
            "operation": "verify",
            "snapshotId": "absent",
            "storage": {"storageType": "configMap", "configMap": {"name": "offset-snapshots"}},
        },
    });
    let after = json!({
        "apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaRestore",
        "metadata": {"name": "never"},
        "spec": {
            "backupRef": {"name": "nightly"},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topics": [topic],
            "topicMapping": {topic.clone(): unique("never")},
            "createTopics": true,
        },
    });
    let file = dir.path().join("stops.yaml");
    std::fs::write(&file, documents(&[failing, after])).unwrap();
    let (ok, statuses, stderr) = run_f(&file, dir.path());
    assert!(!ok, "{statuses:?}\n{stderr}");
    assert_eq!(statuses.len(), 1, "{statuses:?}\n{stderr}");
    assert_eq!(statuses[0]["phase"], "Failed", "{statuses:?}");
    let message = statuses[0]["message"].as_str().unwrap();
    let file_looked_at = dir.path().join("state/configmaps/offset-snapshots/absent.json");
    assert!(
        message.contains(&file_looked_at.display().to_string()),
        "names the file of the local ConfigMap store it looked for: {message}"
    );
    assert!(
        stderr.contains(&format!(
            "not run: {} (document 2 of 2), as the resource before it did not complete",
            file.display()
        )),
        "{stderr}"
    );
}
