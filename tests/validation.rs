//! KafkaBackupValidation against real backups: sets are written by the real backup engine from
//! topics on the real broker (nisshi) into real storage (local disk through PVC storage, Azurite
//! for evidence), then validated through `ops::validation::execute` or the real binary (`run -f`,
//! `verify-evidence`). Custom webhooks are answered by a local axum server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use kafka_backup_operator::{
    api::v1beta1::{
        CheckOutcome, KafkaBackup, KafkaBackupValidation, KafkaBackupValidationStatus, RunPhase,
        SigningAlgorithm,
    },
    evidence,
    ops::{Context, ResourceRef, backup, validation},
    secrets::SecretStore,
    storage::{
        Location, ObjectLocation, StorageEnv,
        backup::{Manifest, read_manifest},
    },
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord, Producer},
};
use serde_json::{Value, json};
use support::{create_topic, service, unique};

const PARTITIONS: i32 = 3;

fn broker() -> Option<String> {
    service("KBO_TEST_KAFKA_BOOTSTRAP")
}

/// A backup set made by the backup engine from a produced topic.
struct Fixture {
    bootstrap: String,
    root: tempfile::TempDir,
    topic: String,
    group: String,
    id: String,
    records: u64,
}

impl Fixture {
    fn storage(&self) -> Value {
        json!({"type": "PVC", "pvc": {"claimName": "backups", "subPath": "team"}})
    }

    fn location(&self) -> ObjectLocation {
        open(&self.storage(), self.root.path(), &SecretStore::None)
    }

    /// The directory of the storage on disk.
    fn dir(&self) -> PathBuf {
        self.root.path().join("backups/team")
    }

    async fn manifest(&self) -> Manifest {
        read_manifest(&self.location(), &self.id).await.unwrap().unwrap()
    }

    /// A validation spec of this set with `extra` fields.
    fn spec(&self, extra: Value) -> Value {
        let mut spec = json!({"backupRef": {"backupId": self.id, "storage": self.storage()}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    }
}

fn open(storage: &Value, root: &Path, secrets: &SecretStore) -> ObjectLocation {
    match Location::open(
        &serde_json::from_value(storage.clone()).unwrap(),
        secrets,
        &StorageEnv {
            pvc_root: root.to_owned(),
            config_maps: Default::default(),
        },
    )
    .unwrap()
    {
        Location::Object(o) => o,
        Location::ConfigMap(_) => unreachable!(),
    }
}

fn ctx(root: &Path, name: &str, secrets: SecretStore) -> Context {
    Context::new(
        ResourceRef {
            kind: "KafkaBackupValidation".into(),
            namespace: Some("team".into()),
            name: name.into(),
            uid: None,
        },
        secrets,
        StorageEnv {
            pvc_root: root.to_owned(),
            config_maps: Default::default(),
        },
    )
}

async fn produce(bootstrap: &str, topic: &str, from: i64, count: i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for i in from..from + count {
        for p in 0..PARTITIONS {
            let key = format!("key-{p}-{}", i % 7);
            let value = format!(
                "{{\"p\":{p},\"i\":{i},\"pad\":\"{}\"}}",
                "x".repeat((i % 40) as usize)
            );
            let headers = rdkafka::message::OwnedHeaders::new()
                .insert(rdkafka::message::Header {
                    key: "h",
                    value: Some(&b"1"[..]),
                })
                .insert(rdkafka::message::Header {
                    key: "n",
                    value: None::<&[u8]>,
                });
            let mut record: FutureRecord<'_, str, str> = FutureRecord::to(topic)
                .partition(p)
                .timestamp(1_700_000_000_000 + i * 1000)
                .headers(headers)
                .payload(&value);
            // Every fifth record without a key, every eleventh a tombstone.
            if i % 5 != 0 {
                record = record.key(&key);
            }
            if i % 11 == 3 {
                record.payload = None;
            }
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Commits offset `offset` on every partition for a group (without joining it).
fn commit_group(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Offset(offset))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

async fn run_backup(f: &Fixture, with_groups: bool) {
    let backup: KafkaBackup = serde_json::from_value(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup", "metadata": {"name": "nightly"},
        "spec": {"kafkaCluster": {"bootstrapServers": [f.bootstrap]}, "topics": [f.topic],
            "storage": f.storage(), "backupId": f.id, "compression": "Zstd", "consumerGroupSnapshot": with_groups}
    }))
    .unwrap();
    let status = backup::execute(&backup, &ctx(f.root.path(), "nightly", SecretStore::None)).await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
}

/// A topic of 3 partitions with a committed group, backed up in two runs (so every partition
/// has two segments), with the consumer-group snapshot when `with_groups` (slow on a broker
/// with many groups: the backup reads every group's offsets); `None` without a broker.
async fn fixture(with_groups: bool) -> Option<Fixture> {
    let bootstrap = broker()?;
    let f = Fixture {
        root: tempfile::tempdir().unwrap(),
        topic: unique("kbv-src"),
        group: unique("kbv-group"),
        id: unique("kbv-set"),
        records: 3 * 150,
        bootstrap,
    };
    create_topic(&f.bootstrap, &f.topic, PARTITIONS).await;
    produce(&f.bootstrap, &f.topic, 0, 100).await;
    commit_group(&f.bootstrap, &f.group, &f.topic, 40);
    run_backup(&f, with_groups).await;
    produce(&f.bootstrap, &f.topic, 100, 50).await;
    commit_group(&f.bootstrap, &f.group, &f.topic, 120);
    run_backup(&f, with_groups).await;
    let m = f.manifest().await;
    let segments: usize = m.topics[&f.topic]
        .partitions
        .values()
        .map(|p| p.segments.len())
        .sum();
    assert_eq!(
        segments,
        2 * PARTITIONS as usize,
        "two runs, two segments per partition"
    );
    Some(f)
}

fn validation_resource(name: &str, spec: Value) -> KafkaBackupValidation {
    serde_json::from_value(
        json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackupValidation",
        "metadata": {"name": name, "namespace": "team"}, "spec": spec}),
    )
    .unwrap()
}

async fn validate(root: &Path, name: &str, spec: Value, secrets: SecretStore) -> KafkaBackupValidationStatus {
    validation::execute(&validation_resource(name, spec), &ctx(root, name, secrets)).await
}

fn check<'a>(
    status: &'a KafkaBackupValidationStatus,
    name: &str,
) -> &'a kafka_backup_operator::api::v1beta1::ValidationCheckResult {
    status
        .checks
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.name == name))
        .unwrap_or_else(|| panic!("no check {name} in {status:#?}"))
}

fn message(status: &KafkaBackupValidationStatus, name: &str) -> String {
    check(status, name).message.clone().unwrap_or_default()
}

fn topics(bootstrap: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_owned())
        .collect()
}

/// Reads a stored object of a PVC location by its URI (`pvc://<claim>/<path>`).
fn pvc_file(root: &Path, uri: &str) -> PathBuf {
    root.join(uri.strip_prefix("pvc://").unwrap())
}

// ---------------------------------------------------------------------------------------------
// The custom-webhook endpoint.

/// A recorded call: path, Authorization header, body.
type Call = (String, Option<String>, Value);

#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

fn note(calls: &Calls, path: &str, headers: &axum::http::HeaderMap, body: Value) {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    calls.0.lock().unwrap().push((path.to_owned(), auth, body));
}

/// A local HTTP server: `/ok` answers 200 with a passing verdict, `/fail` 500, `/slow` only after
/// 10 s. Every call is recorded with its Authorization header and body.
async fn webhook_server() -> (String, Calls) {
    use axum::{Json, Router, extract::State, http::HeaderMap, http::StatusCode, routing::post};
    let calls = Calls::default();
    let app = Router::new()
        .route(
            "/ok",
            post(
                |State(calls): State<Calls>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    note(&calls, "/ok", &headers, body);
                    Json(json!({"result": "passed", "detail": "the hook agrees"}))
                },
            ),
        )
        .route(
            "/fail",
            post(
                |State(calls): State<Calls>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    note(&calls, "/fail", &headers, body);
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Json(json!({"detail": "downstream check failed"})),
                    )
                },
            ),
        )
        .route(
            "/slow",
            post(
                |State(calls): State<Calls>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    note(&calls, "/slow", &headers, body);
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    StatusCode::OK
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), calls)
}

fn key_secrets(algorithm: SigningAlgorithm) -> (SecretStore, String, String) {
    let (private, public) = evidence::generate_key_pair(algorithm).unwrap();
    let store = SecretStore::Map {
        origin: "test".into(),
        secrets: HashMap::from([(
            "signing".to_owned(),
            BTreeMap::from([
                ("signing-key.pem".to_owned(), private.clone().into_bytes()),
                ("signing-key-pub.pem".to_owned(), public.clone().into_bytes()),
            ]),
        )]),
    };
    (store, private, public)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_valid_backup_passes_every_check_and_the_drill_leaves_no_scratch_topic() {
    let Some(f) = fixture(true).await else { return };
    let (url, calls) = webhook_server().await;
    let (secrets, _, public) = key_secrets(SigningAlgorithm::Ed25519);
    let prefix = format!("{}-", unique("drill"));
    let spec = f.spec(json!({
        "kafkaCluster": {"bootstrapServers": [f.bootstrap]},
        "checks": {"integrity": {"enabled": true}, "messageCount": {"topics": ["kbv-src-*"]}, "offsetRange": {},
            "consumerGroupOffsets": {"consumerGroups": [f.group]},
            "restoreDrill": {"topicPrefix": prefix},
            "customWebhooks": [{"name": "audit-hook", "url": format!("{url}/ok"), "timeoutSeconds": 5}]},
        "evidence": {"signing": {"enabled": true, "keySecret": {"name": "signing"}}},
    }));
    // The drill's restore reports progress, but its status is not the validation's.
    let mut ctx = ctx(f.root.path(), "full", secrets);
    let foreign: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = foreign.clone();
    ctx.progress = Arc::new(move |p| sink.lock().unwrap().extend(p.status));
    let status = validation::execute(&validation_resource("full", spec), &ctx).await;
    assert_eq!(foreign.lock().unwrap().clone(), Vec::<Value>::new());
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:#?}");
    assert_eq!(status.result, Some(CheckOutcome::Passed), "{status:#?}");
    let names: Vec<&str> = status
        .checks
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "Integrity",
            "MessageCount",
            "OffsetRange",
            "ConsumerGroupOffsets",
            "RestoreDrill",
            "audit-hook"
        ]
    );
    for c in status.checks.as_ref().unwrap() {
        assert_eq!(c.outcome, CheckOutcome::Passed, "{c:#?}");
        assert!(c.duration_ms.is_some());
    }
    assert_eq!((status.checks_total, status.checks_passed), (Some(6), Some(6)));
    assert!(message(&status, "Integrity").contains(&format!("6 segments verified ({} records", f.records)));
    assert!(message(&status, "RestoreDrill").contains(&format!("{} records restored", f.records)));

    // The drill left nothing behind: no scratch topic, no restore state in the set.
    let left: Vec<String> = topics(&f.bootstrap)
        .into_iter()
        .filter(|t| t.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "scratch topics left: {left:?}");
    assert!(
        !f.dir().join("backups").join(&f.id).join("restores").exists() || {
            let d = f.dir().join("backups").join(&f.id).join("restores");
            walk(&d).is_empty()
        }
    );

    // The webhook saw the validation's description.
    let calls = calls.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let body = &calls[0].2;
    assert_eq!(body["event"], "kafka_backup_validation");
    assert_eq!(body["backup"]["backupId"], f.id.as_str());
    assert_eq!(
        body["results"].as_array().unwrap().len(),
        5,
        "it sees the checks before it"
    );

    // The report: stored, signed, verifiable, and it describes the set.
    let evidence = status.evidence.as_ref().unwrap();
    assert_eq!(evidence.signed, Some(true));
    let path = pvc_file(f.root.path(), evidence.path.as_ref().unwrap());
    let report = std::fs::read(&path).unwrap();
    let envelope = std::fs::read(format!("{}.sig", path.display())).unwrap();
    let verified = evidence::verify(&report, &envelope, Some(public.as_bytes()), true).unwrap();
    assert_eq!(Some(verified.sha256.clone()), evidence.sha256);
    let r: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(r["format"], validation::REPORT_FORMAT);
    assert_eq!(r["backup"]["backupId"], f.id.as_str());
    assert_eq!(r["backup"]["records"], f.records);
    assert_eq!(r["backup"]["state"], "Complete");
    let manifest = std::fs::read(f.dir().join("backups").join(&f.id).join("manifest.json")).unwrap();
    assert_eq!(r["backup"]["manifestSha256"], evidence::sha256_hex(&manifest));
    assert_eq!(r["summary"]["result"], "Passed");
    assert_eq!(r["summary"]["total"], 6);
    assert_eq!(r["validation"]["name"], "full");
    assert_eq!(r["signing"]["algorithm"], "Ed25519");
    assert_eq!(
        r["signing"]["publicKeySha256"],
        evidence::sha256_hex(public.as_bytes())
    );
    assert_eq!(r["checks"][0]["details"]["segmentsVerified"], 6);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_drill_never_writes_into_an_existing_topic() {
    let Some(f) = fixture(false).await else { return };
    let prefix = format!("{}-", unique("taken"));
    let existing = format!("{prefix}{}", f.topic);
    create_topic(&f.bootstrap, &existing, 1).await;
    let spec = f.spec(json!({"kafkaCluster": {"bootstrapServers": [f.bootstrap]},
        "checks": {"integrity": {"enabled": false}, "restoreDrill": {"topicPrefix": prefix}}}));
    let status = validate(f.root.path(), "drill", spec, SecretStore::None).await;
    assert_eq!(status.result, Some(CheckOutcome::Failed), "{status:#?}");
    let m = message(&status, "RestoreDrill");
    assert!(m.contains("already exist") && m.contains(&existing), "{m}");
    // Untouched: still there, still empty.
    assert!(topics(&f.bootstrap).contains(&existing));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &f.bootstrap)
        .create()
        .unwrap();
    let (low, high) = consumer
        .fetch_watermarks(&existing, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!((low, high), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_fails_integrity_naming_the_segment() {
    let Some(f) = fixture(false).await else { return };
    let m = f.manifest().await;
    let segment = m.topics[&f.topic].partitions[&1].segments[1].clone();
    let file = f.dir().join(&segment.key);
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = 96 + (bytes.len() - 96) / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();

    let status = validate(f.root.path(), "flip", f.spec(json!({})), SecretStore::None).await;
    assert_eq!(status.phase, Some(RunPhase::Completed));
    assert_eq!(status.result, Some(CheckOutcome::Failed));
    let integrity = check(&status, "Integrity");
    assert_eq!(integrity.outcome, CheckOutcome::Failed);
    let msg = integrity.message.clone().unwrap();
    assert!(
        msg.contains(&format!("pvc://backups/team/{}", segment.key)),
        "{msg}"
    );
    assert!(
        msg.contains("checksum mismatch") && msg.contains("1 of 6 segments missing or damaged"),
        "{msg}"
    );
    assert!(status.message.unwrap().contains("failed validation"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_segment_fails_naming_it() {
    let Some(f) = fixture(false).await else { return };
    let m = f.manifest().await;
    let segment = m.topics[&f.topic].partitions[&2].segments[0].clone();
    std::fs::remove_file(f.dir().join(&segment.key)).unwrap();
    let status = validate(f.root.path(), "deleted", f.spec(json!({})), SecretStore::None).await;
    assert_eq!(status.result, Some(CheckOutcome::Failed));
    let msg = message(&status, "Integrity");
    assert!(
        msg.contains(&format!("segment pvc://backups/team/{}: missing", segment.key)),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_truncated_manifest_fails_clearly_and_run_f_exits_1() {
    let Some(f) = fixture(false).await else { return };
    let path = f.dir().join("backups").join(&f.id).join("manifest.json");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let spec = f.spec(json!({"kafkaCluster": {"bootstrapServers": [f.bootstrap]},
        "checks": {"integrity": {"enabled": true}, "messageCount": {}},
        "evidence": {}}));
    let status = validate(f.root.path(), "truncated", spec.clone(), SecretStore::None).await;
    assert_eq!(status.phase, Some(RunPhase::Completed));
    assert_eq!(status.result, Some(CheckOutcome::Failed));
    let msg = message(&status, "Integrity");
    assert!(
        msg.contains(&format!(
            "pvc://backups/team/backups/{}/manifest.json is not a valid backup manifest",
            f.id
        )),
        "{msg}"
    );
    assert_eq!(check(&status, "MessageCount").outcome, CheckOutcome::Skipped);
    // The failed validation still leaves evidence, with the digest of the bytes found.
    let report = std::fs::read(pvc_file(
        f.root.path(),
        status.evidence.unwrap().path.as_ref().unwrap(),
    ))
    .unwrap();
    let r: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(r["summary"]["result"], "Failed");
    assert_eq!(
        r["backup"]["manifestSha256"],
        evidence::sha256_hex(&bytes[..bytes.len() / 2])
    );

    // Through run -f: the status says so and the exit code is 1.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("kbv.yaml");
    std::fs::write(&manifest, yaml("truncated", &f.spec(json!({})))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args([
            "run",
            "-f",
            manifest.to_str().unwrap(),
            "--pvc-root",
            f.root.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("result: Failed") && stdout.contains("is not a valid backup manifest"),
        "{stdout}"
    );
}

fn yaml(name: &str, spec: &Value) -> String {
    serde_json::to_string(
        &json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackupValidation",
        "metadata": {"name": name, "namespace": "team"}, "spec": spec}),
    )
    .unwrap()
}

fn verify_evidence(report: &Path, public: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"));
    cmd.arg("verify-evidence").arg(report).arg("--require-signature");
    if let Some(p) = public {
        cmd.arg("--public-key").arg(p);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_f_signs_the_report_and_verify_evidence_catches_tampering() {
    let Some(f) = fixture(false).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let (private, public) = evidence::generate_key_pair(SigningAlgorithm::EcdsaP256).unwrap();
    std::fs::create_dir_all(secrets.join("evidence-key")).unwrap();
    std::fs::write(secrets.join("evidence-key/key.pem"), &private).unwrap();
    std::fs::write(secrets.join("evidence-key/pub.pem"), &public).unwrap();
    let public_file = dir.path().join("trusted.pem");
    std::fs::write(&public_file, &public).unwrap();
    let spec = f.spec(json!({"evidence": {
        "storage": {"type": "PVC", "pvc": {"claimName": "evidence", "subPath": "reports"}},
        "signing": {"enabled": true, "algorithm": "EcdsaP256",
            "keySecret": {"name": "evidence-key", "privateKeyKey": "key.pem", "publicKeyKey": "pub.pem"}}}}));
    let manifest = dir.path().join("kbv.yaml");
    std::fs::write(&manifest, yaml("signed", &spec)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f", manifest.to_str().unwrap()])
        .arg("--secrets-dir")
        .arg(&secrets)
        .arg("--pvc-root")
        .arg(f.root.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_saphyr::from_str::<Value>(&stdout).unwrap()["status"].clone();
    assert_eq!(status["phase"], "Completed");
    assert_eq!(status["result"], "Passed");
    assert_eq!(status["evidence"]["signed"], true);
    let uri = status["evidence"]["path"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!(
            "pvc://evidence/reports/evidence-reports/{}/signed-",
            f.id
        )),
        "{uri}"
    );
    let report = pvc_file(f.root.path(), uri);

    // Untampered: verifies, with the envelope's key and with the trusted key.
    let (ok, text) = verify_evidence(&report, Some(&public_file));
    assert!(ok, "{text}");
    assert!(
        text.contains("EcdsaP256 signature valid for the trusted public key"),
        "{text}"
    );
    assert!(
        text.contains(status["evidence"]["sha256"].as_str().unwrap()),
        "{text}"
    );

    // Tampered: one result changed.
    let original = std::fs::read_to_string(&report).unwrap();
    let tampered = original.replacen("\"result\": \"Passed\"", "\"result\": \"Failed\"", 1);
    assert_ne!(original, tampered);
    std::fs::write(&report, &tampered).unwrap();
    let (ok, text) = verify_evidence(&report, Some(&public_file));
    assert!(!ok, "a tampered report must not verify: {text}");
    assert!(text.contains("digest mismatch"), "{text}");

    // Tampered and the digest recomputed: the signature catches it.
    let sig = format!("{}.sig", report.display());
    let mut envelope: Value = serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
    envelope["reportSha256"] = json!(evidence::sha256_hex(tampered.as_bytes()));
    std::fs::write(&sig, serde_json::to_vec(&envelope).unwrap()).unwrap();
    let (ok, text) = verify_evidence(&report, None);
    assert!(!ok && text.contains("signature does not verify"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn custom_webhooks_pass_fail_and_time_out() {
    let Some(f) = fixture(false).await else { return };
    let (url, calls) = webhook_server().await;
    let spec = f.spec(json!({"checks": {"customWebhooks": [
        {"name": "passes", "url": format!("{url}/ok"), "timeoutSeconds": 5},
        {"name": "fails", "url": format!("{url}/fail"), "timeoutSeconds": 5},
        {"name": "slow", "url": format!("{url}/slow"), "timeoutSeconds": 1},
        {"name": "expects-201", "url": format!("{url}/ok"), "timeoutSeconds": 5, "expectedStatusCode": 201},
        {"name": "nobody-home", "url": "http://127.0.0.1:9/hook", "timeoutSeconds": 5},
    ]}}));
    let started = std::time::Instant::now();
    let status = validate(f.root.path(), "hooks", spec, SecretStore::None).await;
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the slow hook was not cut off"
    );
    assert_eq!(status.result, Some(CheckOutcome::Failed));
    assert_eq!(check(&status, "Integrity").outcome, CheckOutcome::Passed);
    assert_eq!(check(&status, "passes").outcome, CheckOutcome::Passed);
    assert!(message(&status, "passes").contains("answered 200: the hook agrees"));
    assert_eq!(check(&status, "fails").outcome, CheckOutcome::Failed);
    assert!(
        message(&status, "fails").contains("answered 500, expected 200: downstream check failed"),
        "{}",
        message(&status, "fails")
    );
    assert_eq!(check(&status, "slow").outcome, CheckOutcome::Failed);
    assert!(message(&status, "slow").contains("did not answer within 1s"));
    assert!(message(&status, "expects-201").contains("answered 200, expected 201"));
    assert_eq!(check(&status, "nobody-home").outcome, CheckOutcome::Failed);
    assert!(message(&status, "nobody-home").contains("cannot connect to 127.0.0.1:9"));
    assert_eq!(status.checks_failed, Some(4));
    assert_eq!(calls.0.lock().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_credential_ends_up_in_the_report_the_envelope_or_the_status() {
    let Some(f) = fixture(false).await else { return };
    let (url, calls) = webhook_server().await;
    let (private, public) = evidence::generate_key_pair(SigningAlgorithm::Ed25519).unwrap();
    let password = "hook-password-5f1c9e";
    let token = "hook-token-a83d7b";
    let azure_key = support::AZURITE_ACCOUNT_KEY;
    let mut secrets = HashMap::from([(
        "signing".to_owned(),
        BTreeMap::from([
            ("signing-key.pem".to_owned(), private.clone().into_bytes()),
            ("signing-key-pub.pem".to_owned(), public.into_bytes()),
        ]),
    )]);
    let hook_url = format!(
        "{}/ok?token={token}",
        url.replace("http://", &format!("http://auditor:{password}@"))
    );
    // Evidence in Azurite (its account key in a Secret) when it runs, else on disk.
    let evidence_storage = match service("KBO_TEST_AZURITE_URL") {
        Some(azurite) => {
            secrets.insert(
                "azure".into(),
                BTreeMap::from([("AZURE_STORAGE_KEY".to_owned(), azure_key.as_bytes().to_vec())]),
            );
            json!({"type": "Azure", "azure": {"container": std::env::var("KBO_TEST_AZURE_CONTAINER").unwrap(),
                "accountName": "devstoreaccount1", "endpoint": format!("{azurite}/devstoreaccount1"),
                "prefix": unique("kbv"), "credentialsSecret": {"name": "azure"}}})
        }
        None => json!({"type": "PVC", "pvc": {"claimName": "evidence"}}),
    };
    let store = SecretStore::Map {
        origin: "test".into(),
        secrets,
    };
    let spec = f.spec(json!({
        "checks": {"customWebhooks": [{"name": "audit", "url": hook_url, "timeoutSeconds": 5}]},
        "evidence": {"storage": evidence_storage.clone(), "signing": {"enabled": true, "keySecret": {"name": "signing"}}},
    }));
    let status = validate(f.root.path(), "secretive", spec, store.clone()).await;
    assert_eq!(status.result, Some(CheckOutcome::Passed), "{status:#?}");
    // The hook got its credentials (basic auth from the URL's user info).
    let auth = calls.0.lock().unwrap()[0].1.clone().unwrap();
    assert_eq!(
        auth,
        format!(
            "Basic {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("auditor:{password}")
            )
        )
    );

    let location = open(&evidence_storage, f.root.path(), &store);
    let uri = status.evidence.as_ref().unwrap().path.clone().unwrap();
    let key = &uri[uri.find("evidence-reports/").unwrap()..];
    let report = location.get(key).await.unwrap().unwrap();
    let envelope = location.get(&format!("{key}.sig")).await.unwrap().unwrap();
    let status_text = serde_json::to_string(&status).unwrap();
    let private_body: String = private.lines().filter(|l| !l.starts_with("-----")).collect();
    for (what, text) in [
        ("report", String::from_utf8_lossy(&report).to_string()),
        ("envelope", String::from_utf8_lossy(&envelope).to_string()),
        ("status", status_text),
    ] {
        for secret in [password, token, azure_key, &private_body, "auditor:"] {
            assert!(
                !text.contains(secret),
                "{what} contains the credential {secret:?}:\n{text}"
            );
        }
    }
    let r: Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(r["validation"]["checks"]["audit"]["url"], format!("{url}/ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_older_than_retention_days_of_the_same_validation_are_deleted() {
    let Some(f) = fixture(false).await else { return };
    let dir = f.dir().join("evidence-reports").join(&f.id);
    std::fs::create_dir_all(&dir).unwrap();
    let old = chrono::Utc::now() - chrono::Duration::days(40);
    let write_old = |name: &str, owner: &str| {
        let path = dir.join(format!("{name}.json"));
        let body = json!({"format": validation::REPORT_FORMAT, "generatedAt": old.to_rfc3339(),
            "validation": {"namespace": "team", "name": owner}});
        std::fs::write(&path, serde_json::to_vec(&body).unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.json.sig")), b"{}").unwrap();
        for p in [path.clone(), dir.join(format!("{name}.json.sig"))] {
            let file = std::fs::File::options().write(true).open(&p).unwrap();
            file.set_modified(std::time::SystemTime::from(old)).unwrap();
        }
        path
    };
    let mine = write_old("retained-old", "retained");
    let theirs = write_old("other-old", "other");
    let spec = f.spec(json!({"evidence": {"retentionDays": 30}}));
    let status = validate(f.root.path(), "retained", spec, SecretStore::None).await;
    assert_eq!(status.result, Some(CheckOutcome::Passed), "{status:#?}");
    assert!(
        !mine.exists() && !dir.join("retained-old.json.sig").exists(),
        "expired report kept"
    );
    assert!(theirs.exists(), "another validation's report was deleted");
    assert!(pvc_file(f.root.path(), status.evidence.unwrap().path.as_ref().unwrap()).exists());
    assert!(
        status
            .message
            .unwrap()
            .contains("1 report(s) older than retentionDays deleted")
    );
    // With a longer retention nothing more goes.
    let spec = f.spec(json!({"evidence": {"retentionDays": 90}}));
    validate(f.root.path(), "other", spec, SecretStore::None).await;
    assert!(theirs.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_f_honours_schedule_and_suspend() {
    let Some(f) = fixture(false).await else { return };
    let dir = tempfile::tempdir().unwrap();
    // Suspended: nothing runs, no report.
    let manifest = dir.path().join("suspended.yaml");
    std::fs::write(
        &manifest,
        yaml(
            "paused",
            &f.spec(json!({"suspend": true, "schedule": "*/1 * * * * *", "evidence": {}})),
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f", manifest.to_str().unwrap()])
        .arg("--pvc-root")
        .arg(f.root.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("phase: Suspended"), "{stdout}");
    assert!(!f.dir().join("evidence-reports").exists());

    // Every second: at least two validations, each with its own report, until interrupted.
    let manifest = dir.path().join("scheduled.yaml");
    std::fs::write(
        &manifest,
        yaml(
            "ticking",
            &f.spec(json!({"schedule": "*/1 * * * * *", "evidence": {}})),
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f", manifest.to_str().unwrap()])
        .arg("--pvc-root")
        .arg(f.root.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reports = f.dir().join("evidence-reports").join(&f.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let count = || {
        walk(&reports)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .count()
    };
    while count() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(count() >= 2, "{stdout}");
    assert!(stdout.matches("lastScheduleTime").count() >= 2, "{stdout}");
    assert!(stdout.contains("result: Passed"), "{stdout}");
}
