//! `run -f` reads a manifest as strictly as kubectl's default field validation and the API
//! server's schema do, through the binary: a field the schema does not have, a value outside an
//! enum or of the wrong type is refused before anything runs, naming its field path (and the
//! nearest known field, or the allowed values). Nothing here needs a broker: every manifest is
//! refused before a connection is made.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::{path::Path, process::Command};

use support::review::{FIXTURES, yaml_files};

/// `run -f` on `manifest`: (exit code, stdout, stderr).
fn run_f(manifest: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.yaml");
    std::fs::write(&path, manifest).unwrap();
    run_f_file(&path, dir.path())
}

fn run_f_file(path: &Path, pvc_root: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(path)
        .arg("--pvc-root")
        .arg(pvc_root)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A KafkaBackup that would run (one-shot, PVC storage) against a broker nobody listens on.
fn backup(extra: &str) -> String {
    format!(
        "apiVersion: kafka.oso.sh/v1alpha1
kind: KafkaBackup
metadata:
  name: typo
spec:
  kafkaCluster:
    bootstrapServers: [\"127.0.0.1:9\"]
  topics: [orders]
  storage:
    storageType: pvc
    pvc:
      claimName: backups
{extra}"
    )
}

fn assert_refused(manifest: &str, expected: &str) {
    let (code, stdout, stderr) = run_f(manifest);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in:\n{stderr}");
    // Refused before it ran: no status was printed.
    assert!(stdout.is_empty(), "it ran: {stdout}");
}

#[test]
fn an_unknown_field_is_refused_naming_the_nearest_known_one() {
    assert_refused(
        &backup("  topcis: [payments]\n"),
        "spec.topcis: unknown field; did you mean spec.topics?",
    );
    assert_refused(
        "apiVersion: kafka.oso.sh/v1alpha1
kind: KafkaRestore
metadata:
  name: r
spec:
  backupRef:
    name: nightly
  kafkaCluster:
    bootstrapServers: [\"127.0.0.1:9\"]
  purgeTopics: true
  rollback:
    storage:
      pvcName: snapshots
",
        "spec.rollback.storage: unknown field; did you mean spec.rollback.snapshotStorage?",
    );
    // v1beta1 too, at any depth.
    assert_refused(
        "apiVersion: kafka.oso.sh/v1beta1
kind: KafkaOffsetReset
metadata:
  name: r
spec:
  kafkaCluster:
    bootstrapServers: [\"127.0.0.1:9\"]
  consumerGroups: [g]
  strategy: Earliest
  snapshot:
    enabled: false
    snapshotID: x
",
        "spec.snapshot.snapshotID: unknown field; did you mean spec.snapshot.snapshotId?",
    );
}

#[test]
fn a_value_outside_an_enum_is_refused_with_the_allowed_values() {
    for (manifest, expected) in [
        (
            backup("").replace(
                "bootstrapServers: [\"127.0.0.1:9\"]",
                "bootstrapServers: [\"127.0.0.1:9\"]\n    securityProtocol: TLS13",
            ),
            "spec.kafkaCluster.securityProtocol: Unsupported value: \"TLS13\": supported values: \"PLAINTEXT\", \
             \"SSL\", \"SASL_PLAINTEXT\", \"SASL_SSL\"",
        ),
        (
            backup("").replace("storageType: pvc", "storageType: nfs"),
            "spec.storage.storageType: Unsupported value: \"nfs\": supported values: \"pvc\", \"s3\", \"azure\", \
             \"gcs\", \"configMap\", \"configmap\"",
        ),
        (
            backup("  compression: brotli\n"),
            "spec.compression: Unsupported value: \"brotli\": supported values: \"zstd\", \"lz4\", \"none\"",
        ),
        (
            "apiVersion: kafka.oso.sh/v1alpha1
kind: KafkaOffsetRollback
metadata:
  name: r
spec:
  operation: undo
  snapshotId: s
"
            .to_owned(),
            "spec.operation: Unsupported value: \"undo\": supported values: \"snapshot\", \"rollback\", \"verify\", \
             \"delete\"",
        ),
        (
            "apiVersion: kafka.oso.sh/v1alpha1
kind: KafkaOffsetReset
metadata:
  name: r
spec:
  kafkaCluster:
    bootstrapServers: [\"127.0.0.1:9\"]
  consumerGroups: [g]
  strategy: middle
"
            .to_owned(),
            "spec.strategy: Unsupported value: \"middle\": supported values: \"earliest\", \"latest\", \"timestamp\", \
             \"offset\", \"headerBased\", \"fromMapping\"",
        ),
        (
            "apiVersion: kafka.oso.sh/v1beta1
kind: KafkaRestore
metadata:
  name: r
spec:
  backupRef:
    kafkaBackupRef:
      name: nightly
  kafkaCluster:
    bootstrapServers: [\"127.0.0.1:9\"]
  offsetReset:
    strategy: Middle
    consumerGroups: [g]
"
            .to_owned(),
            "spec.offsetReset.strategy: Unsupported value: \"Middle\": supported values: \"HeaderBased\", \
             \"Timestamp\", \"Earliest\", \"Latest\"",
        ),
    ] {
        assert_refused(&manifest, expected);
    }
}

/// Every invalid fixture (which the CRD schema refuses) is refused by `run -f` too, naming a field.
#[test]
fn every_invalid_fixture_is_refused_naming_a_field() {
    let files = yaml_files(&Path::new(FIXTURES).join("invalid"));
    assert!(files.len() >= 60, "{} invalid fixtures", files.len());
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for path in files {
        let (code, stdout, stderr) = run_f_file(&path, scratch.path());
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_default();
        if code != Some(1)
            || !stdout.is_empty()
            || !(error.contains(": spec.") || error.contains(": status."))
        {
            failures.push(format!("{}: {code:?}\n{stdout}{stderr}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `run -f` of `files` with the state directory `state`: (exit code, stdout, stderr).
fn run_f_files(files: &[&Path], state: &Path) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"));
    command.arg("run");
    for file in files {
        command.arg("-f").arg(file);
    }
    let out = command
        .arg("--state-dir")
        .arg(state)
        .arg("--pvc-root")
        .arg(state.join("pvc"))
        .env_remove("KBO_CATALOG_DIR")
        .env_remove("KBO_CONFIGMAPS_DIR")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MAPPING_CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: offset-mapping
data:
  mapping.json: '{\"groups\": {}}'
";

/// Every document is judged before anything is stored or run: a kind `run -f` does not handle is
/// refused naming its file, document and kind, and the ConfigMap before it is not stored.
#[test]
fn a_kind_run_f_does_not_handle_is_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(
        &file,
        format!("{MAPPING_CONFIGMAP}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = run_f_files(&[&file], dir.path());
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let expected = format!(
        "{} (document 2 of 2): kind Secret (v1) cannot be executed by run -f",
        file.display()
    );
    assert!(stderr.contains(&expected), "expected {expected:?} in:\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!dir.path().join("configmaps").exists(), "nothing stored");

    // A ConfigMap document alone is stored (as `kubectl apply -f` of it would), and said so.
    let only = dir.path().join("cm.yaml");
    std::fs::write(&only, MAPPING_CONFIGMAP).unwrap();
    let (code, stdout, stderr) = run_f_files(&[&only], dir.path());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let stored = dir.path().join("configmaps/offset-mapping/mapping.json");
    assert_eq!(std::fs::read_to_string(&stored).unwrap(), "{\"groups\": {}}");
    assert!(
        stderr.contains(&dir.path().join("configmaps/offset-mapping").display().to_string()),
        "{stderr}"
    );
}

/// A `backupRef` naming a KafkaBackup `run -f` never ran (and that no earlier document runs) is
/// refused before anything is stored or run, naming the KafkaBackup and the record looked for.
#[test]
fn a_backup_ref_to_a_kafka_backup_never_run_is_refused_naming_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("restore.yaml");
    std::fs::write(
        &file,
        MAPPING_CONFIGMAP.to_owned()
            + "---
apiVersion: kafka.oso.sh/v1alpha1
kind: KafkaRestore
metadata:
  name: pitr-restore
spec:
  backupRef:
    name: production-backup
  kafkaCluster:
    bootstrapServers: [\"127.0.0.1:9\"]
",
    )
    .unwrap();
    let (code, stdout, stderr) = run_f_files(&[&file], dir.path());
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let record = dir.path().join("kafkabackups/default/production-backup.yaml");
    assert!(
        stderr.contains("spec.backupRef: KafkaBackup default/production-backup was never run by run -f here")
            && stderr.contains(&record.display().to_string()),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        !dir.path().join("configmaps").exists(),
        "refused before anything was stored"
    );
}
