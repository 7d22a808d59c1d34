//! Faults of the world, injected for real: brokers that go away or move leaders, object stores
//! that answer 503 SlowDown, go down past the retry budget or stop accepting the credentials,
//! connections reset in the middle of an upload, a full disk. Each test runs an operation
//! against the real nisshi, SeaweedFS or Azurite through the harness of
//! `tests/support/faults.rs`, compares what ended up in Kafka or storage with an independent
//! client (plain rdkafka) record by record (and by digest), and writes its row of the fault
//! matrix (`tests/fault-matrix.md`; a changed outcome fails the test).
//!
//! Windows are shorter than the 20 s the issue names where the code path is the same: an
//! outage is survived within an attempt while it is shorter than `execution.retryTimeoutSeconds`
//! (120 s by default), however long it is, so 6 s exercises the same path as 20 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use kafka_backup_operator::{
    api::v1beta1::{
        CheckOutcome, GroupResetOutcome, KafkaBackup, KafkaBackupStatus, KafkaBackupValidation,
        KafkaOffsetReset, KafkaOffsetRollback, KafkaRestore, KafkaRestoreStatus, Phase, RunPhase,
    },
    metrics::{RetryCause, retries},
    ops::{Context, ResourceRef, backup, offset_reset, offset_rollback, restore, validation},
    secrets::SecretStore,
    storage::{
        Location, ObjectLocation, StorageEnv,
        backup::{SetState, list_segments, read_manifest},
        snapshot::OffsetSnapshot,
    },
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
};
use serde_json::{Value, json};
use support::{
    AZURITE_ACCOUNT_KEY, create_topic,
    faults::{
        HttpFault, HttpFaults, HttpRule, HttpWhen, KafkaInjection, Record, SmallVolume, TcpFaults,
        broker_behind_faults, by_partition, consume, digest, lost_and_duplicated,
        matrix::{self, Row, secs},
        produce, records, wait_for,
    },
    service, unique,
};

/// How long the faults that the run outlasts are held.
const WINDOW: Duration = Duration::from_secs(6);

/// CreateTime of the first test record.
const BASE: i64 = 1_700_000_000_000;

/// Kafka API keys.
const OFFSET_COMMIT: i16 = 8;
const PRODUCE: i16 = 0;

/// NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER: i16 = 6;

fn pvc() -> Value {
    json!({"type": "PVC", "pvc": {"claimName": "backups", "subPath": "faults"}})
}

fn s3(endpoint: &str, prefix: &str) -> Value {
    json!({"type": "S3", "s3": {
        "bucket": std::env::var("KBO_TEST_S3_BUCKET").unwrap_or_else(|_| "test-bucket".into()),
        "endpoint": endpoint, "region": "us-east-1", "pathStyle": true, "allowHttp": true,
        "prefix": prefix, "credentialsSecret": {"name": "s3"}}})
}

fn azure(endpoint: &str, prefix: &str) -> Value {
    json!({"type": "Azure", "azure": {
        "container": std::env::var("KBO_TEST_AZURE_CONTAINER").unwrap_or_else(|_| "test-container".into()),
        "accountName": "devstoreaccount1", "endpoint": format!("{endpoint}/devstoreaccount1"),
        "useWorkloadIdentity": false,
        "prefix": prefix, "credentialsSecret": {"name": "azure"}}})
}

fn secrets() -> SecretStore {
    let entry = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    };
    SecretStore::Map {
        origin: "test".into(),
        secrets: HashMap::from([
            (
                "s3".to_owned(),
                entry(&[("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")]),
            ),
            (
                "azure".to_owned(),
                entry(&[("AZURE_STORAGE_KEY", AZURITE_ACCOUNT_KEY)]),
            ),
        ]),
    }
}

/// A context whose progress sink keeps the last count reported.
fn ctx(root: &Path, name: &str) -> (Context, Arc<AtomicU64>) {
    let mut ctx = Context::new(
        ResourceRef {
            kind: String::new(),
            namespace: None,
            name: name.into(),
            uid: None,
        },
        secrets(),
        StorageEnv {
            pvc_root: root.to_owned(),
            config_maps: Default::default(),
        },
    );
    let done = Arc::new(AtomicU64::new(0));
    let sink = done.clone();
    ctx.progress = Arc::new(move |p| sink.store(p.done, Ordering::SeqCst));
    (ctx, done)
}

fn resource<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": kind,
        "metadata": {"name": name}, "spec": spec}))
    .unwrap()
}

/// An operation running in a task, and the count its progress reports last said.
struct Running<T> {
    task: tokio::task::JoinHandle<T>,
    done: Arc<AtomicU64>,
}

impl<T> Running<T> {
    /// Waits until it reported progress (or ended).
    async fn under_way(&self, what: &str) {
        wait_for(what, Duration::from_secs(60), || {
            self.done.load(Ordering::SeqCst) > 0 || self.task.is_finished()
        })
        .await;
    }

    /// Its result.
    async fn end(self) -> T {
        self.task.await.unwrap()
    }
}

/// Starts a backup.
fn start_backup(root: &Path, name: &'static str, spec: Value) -> Running<KafkaBackupStatus> {
    let (ctx, done) = ctx(root, name);
    let task = tokio::spawn(async move {
        backup::execute(&resource::<KafkaBackup>("KafkaBackup", name, spec), &ctx).await
    });
    Running { task, done }
}

async fn run_backup(root: &Path, name: &str, spec: Value) -> KafkaBackupStatus {
    let (ctx, _) = ctx(root, name);
    backup::execute(&resource::<KafkaBackup>("KafkaBackup", name, spec), &ctx).await
}

async fn run_restore(root: &Path, name: &str, spec: Value) -> KafkaRestoreStatus {
    let (ctx, _) = ctx(root, name);
    restore::execute(&resource::<KafkaRestore>("KafkaRestore", name, spec), &ctx).await
}

fn open(root: &Path, storage: &Value) -> ObjectLocation {
    let spec = serde_json::from_value(storage.clone()).unwrap();
    let env = StorageEnv {
        pvc_root: root.to_owned(),
        config_maps: Default::default(),
    };
    match Location::open(&spec, &secrets(), &env).unwrap() {
        Location::Object(o) => o,
        Location::ConfigMap(_) => unreachable!(),
    }
}

/// The shared broker, SeaweedFS and the nisshi binary, or `None` (skipped).
fn services() -> Option<(String, String, String)> {
    Some((
        service("KBO_TEST_KAFKA_BOOTSTRAP")?,
        service("KBO_TEST_S3_ENDPOINT")?,
        service("KBO_TEST_NISSHI_BIN")?,
    ))
}

/// A new topic of `partitions` on `bootstrap` holding `count` records per partition of about
/// `pad` bytes: its name and records.
async fn source_topic(
    bootstrap: &str,
    prefix: &str,
    partitions: i32,
    count: i64,
    pad: usize,
) -> (String, Vec<Record>) {
    let topic = unique(prefix);
    create_topic(bootstrap, &topic, partitions).await;
    let records = records(partitions, count, BASE, pad);
    produce(bootstrap, &topic, &records).await;
    (topic, records)
}

/// The records of backup set `id` in `storage`, restored with no fault into a new topic of the
/// shared broker and read back with rdkafka.
async fn restored(
    root: &Path,
    bootstrap: &str,
    storage: &Value,
    id: &str,
    source: &str,
    partitions: i32,
) -> Vec<Record> {
    let target = unique("faults-check");
    let status = run_restore(
        root,
        &unique("check"),
        json!({"backupRef": {"backupId": id, "storage": storage},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source: target}, "createTopics": {"enabled": true}}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    consume(bootstrap, &target, partitions)
}

/// Asserts `actual` holds `expected` exactly (same records, same order per partition, same
/// digest) and returns (lost, duplicated) for the matrix: (0, 0).
fn assert_exact(expected: &[Record], actual: &[Record]) -> (u64, u64) {
    let (lost, duplicated) = lost_and_duplicated(expected, actual);
    assert_eq!((lost, duplicated), (0, 0), "records lost, duplicated");
    let expected = by_partition(expected);
    assert_eq!(digest(actual), digest(&expected), "digest of the records");
    assert_eq!(actual, expected.as_slice());
    (lost, duplicated)
}

/// A backup spec copying `topic` slowly enough (`bytes_per_sec`) for a fault to land mid-run.
fn slow_backup(bootstrap: &str, topic: &str, storage: &Value, id: &str, bytes_per_sec: u64) -> Value {
    json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [topic],
        "storage": storage, "backupId": id, "consumerGroupSnapshot": false,
        "compression": "None", "segmentMaxBytes": 262144, "memoryBudgetBytes": 4194304,
        "checkpoint": {"enabled": true, "intervalSeconds": 1},
        "rateLimiting": {"bytesPerSec": bytes_per_sec}})
}

// ---------------------------------------------------------------------------------------------
// Backup

/// The broker refuses connections for 6 s in the middle of a backup (every connection cut, the
/// port closed): the consumer goes on polling while librdkafka reconnects with the request
/// backoff, and the run completes within its one attempt; the set holds every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_outlasts_a_broker_that_is_away_mid_run() {
    let Some((shared, _, nisshi)) = services() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (_broker, kafka) = broker_behind_faults(&nisshi, root.path()).await;
    let (topic, records) = source_topic(&kafka.address, "bk-away", 4, 2500, 1000).await;
    let id = unique("bk-away-set");
    let spec = slow_backup(&kafka.address, &topic, &pvc(), &id, 1_500_000);
    let before = retries().count(RetryCause::KafkaUnreachable);
    let run = start_backup(root.path(), "bk-away", spec);
    run.under_way("records backed up").await;
    kafka.refuse();
    tokio::time::sleep(WINDOW).await;
    kafka.pass();
    let back = Instant::now();
    let status = run.end().await;
    let recovered = back.elapsed();
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    assert_eq!(
        status.progress.as_ref().and_then(|p| p.records),
        Some(records.len() as i64)
    );
    assert!(
        retries().count(RetryCause::KafkaUnreachable) > before,
        "the consumer met the outage and went on"
    );
    let (lost, duplicated) = assert_exact(
        &records,
        &restored(root.path(), &shared, &pvc(), &id, &topic, 4).await,
    );
    matrix::record(Row {
        test: "faults::backup_outlasts_a_broker_that_is_away_mid_run",
        operation: "KafkaBackup",
        fault: format!("broker refuses connections for {} s mid-run", WINDOW.as_secs()),
        outcome: "Completed in its first attempt, set exact".into(),
        lost,
        duplicated,
        recovery: format!("completed {} after the broker was back", secs(recovered)),
    });
}

/// S3 answers every request with 503 SlowDown for 6 s mid-run, and resets the connection of
/// three segment uploads half way: object_store retries each request within
/// `retryTimeoutSeconds` and the run completes exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_outlasts_s3_slow_down_and_uploads_reset_mid_way() {
    let Some((shared, s3_endpoint, _)) = services() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let http = HttpFaults::start(&s3_endpoint).await;
    let (topic, records) = source_topic(&shared, "bk-503", 4, 1500, 1000).await;
    let id = unique("bk-503-set");
    let storage = s3(&http.endpoint, &unique("faults-503"));
    http.add(HttpRule {
        method: Some("PUT"),
        path_contains: Some("/topics/".into()),
        when: HttpWhen::OneIn { k: 2, times: 3 },
        fault: HttpFault::ResetAfter(64 * 1024),
    });
    let spec = slow_backup(&shared, &topic, &storage, &id, 1_500_000);
    let run = start_backup(root.path(), "bk-503", spec);
    run.under_way("records backed up").await;
    let start = Instant::now();
    http.add(HttpRule {
        method: None,
        path_contains: None,
        when: HttpWhen::Until(start + WINDOW),
        fault: HttpFault::Status(503),
    });
    let status = run.end().await;
    let end = Instant::now();
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let seen = http.seen();
    let throttled = seen.iter().filter(|s| s.status == 503).count();
    let resets = seen.iter().filter(|s| s.status == 0).count();
    assert!(throttled > 0, "503 answered: {seen:?}");
    assert_eq!(resets, 3, "uploads reset half way");
    let (lost, duplicated) = assert_exact(
        &records,
        &restored(root.path(), &shared, &storage, &id, &topic, 4).await,
    );
    matrix::record(Row {
        test: "faults::backup_outlasts_s3_slow_down_and_uploads_reset_mid_way",
        operation: "KafkaBackup",
        fault: format!(
            "S3 answers 503 SlowDown to every request for {} s mid-run; 3 segment uploads reset half way",
            WINDOW.as_secs()
        ),
        outcome: "Completed in its first attempt, set exact".into(),
        lost,
        duplicated,
        recovery: format!(
            "completed {} after the 503s ended",
            secs(end.saturating_duration_since(start + WINDOW))
        ),
    });
}

/// S3 goes down (connections refused at a TCP proxy) and stays down past the retry budget
/// (`retryTimeoutSeconds: 2`): the backup fails naming the storage, the operation and the
/// last error; the checkpoint it stored is intact (InProgress, every listed segment stored and
/// chained); once S3 is back the next run resumes and the set is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_fails_past_the_retry_budget_and_the_next_run_resumes() {
    let Some((shared, s3_endpoint, _)) = services() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let tcp = TcpFaults::start(s3_endpoint.trim_start_matches("http://"), false).await;
    let (topic, records) = source_topic(&shared, "bk-down", 4, 2000, 1000).await;
    let id = unique("bk-down-set");
    let prefix = unique("faults-down");
    let storage = s3(&format!("http://{}", tcp.address), &prefix);
    let mut spec = slow_backup(&shared, &topic, &storage, &id, 1_500_000);
    spec["execution"] = json!({"retryTimeoutSeconds": 2});
    let run = start_backup(root.path(), "bk-down", spec.clone());
    // Down once a checkpoint with segments is stored.
    let direct = open(root.path(), &s3(&s3_endpoint, &prefix));
    run.under_way("records backed up").await;
    loop {
        let manifest = read_manifest(&direct, &id).await.unwrap();
        if manifest.is_some_and(|m| {
            m.topics
                .values()
                .any(|t| t.partitions.values().any(|p| !p.segments.is_empty()))
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let down = Instant::now();
    tcp.refuse();
    let status = run.end().await;
    let failed_after = down.elapsed();
    assert_eq!(status.phase, Some(RunPhase::Failed), "{status:?}");
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!("s3://test-bucket/{prefix}/")),
        "names the storage: {message}"
    );
    assert!(
        message.starts_with("write ") || message.contains(" write "),
        "names the operation: {message}"
    );
    assert!(
        message.to_lowercase().contains("connect") || message.to_lowercase().contains("refused"),
        "names the last error: {message}"
    );
    assert_eq!(status.resumable, Some(true));
    // The checkpoint is intact.
    let manifest = read_manifest(&direct, &id).await.unwrap().unwrap();
    assert_eq!(manifest.state, SetState::InProgress);
    let stored = list_segments(&direct, &id).await.unwrap();
    let mut listed = 0;
    for (name, t) in &manifest.topics {
        for (partition, p) in &t.partitions {
            let chain = validation::judge_chain(name, *partition, p);
            assert!(chain.problems.is_empty(), "{:?}", chain.problems);
            for s in &p.segments {
                listed += 1;
                assert!(
                    stored.values().any(|k| *k == s.key),
                    "{} listed but not stored",
                    s.key
                );
            }
        }
    }
    assert!(listed > 0);

    // Back: the next run resumes.
    tcp.pass();
    let resumed_at = Instant::now();
    let second = run_backup(root.path(), "bk-down", spec).await;
    let resumed_in = resumed_at.elapsed();
    assert_eq!(second.phase, Some(RunPhase::Completed), "{second:?}");
    assert!(
        second
            .progress
            .as_ref()
            .and_then(|p| p.records)
            .unwrap_or_default()
            < records.len() as i64,
        "the second run continued where the first stopped: {second:?}"
    );
    let (lost, duplicated) = assert_exact(
        &records,
        &restored(root.path(), &shared, &storage, &id, &topic, 4).await,
    );
    matrix::record(Row {
        test: "faults::backup_fails_past_the_retry_budget_and_the_next_run_resumes",
        operation: "KafkaBackup",
        fault: "S3 refuses connections for longer than retryTimeoutSeconds (2 s)".into(),
        outcome: "Failed naming the storage URI, the operation (write) and the last error; checkpoint intact; the next run resumes, set exact".into(),
        lost,
        duplicated,
        recovery: format!(
            "failed {} after S3 went down; next run completed in {}",
            secs(failed_after),
            secs(resumed_in)
        ),
    });
}

/// The PVC fills up (a 3 MiB file system under 10 MB of records): the backup fails naming
/// ENOSPC and the file; no segment or manifest that looks complete is left (the manifest says
/// InProgress, every listed segment is whole, no staged file); once the volume has room the
/// next run resumes and the set is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_fails_on_a_full_disk_naming_enospc_and_resumes_once_there_is_room() {
    let Some((shared, _, _)) = services() else { return };
    let volume = match SmallVolume::mount(3 << 20) {
        Ok(v) => v,
        Err(why) => {
            // One level down (storage::tests::a_full_volume_is_named_and_not_retried) covers
            // the classification of the io error where no file system can be mounted.
            eprintln!("skipping: {why}");
            return;
        }
    };
    let root = volume.root.clone();
    let (topic, records) = source_topic(&shared, "bk-full", 4, 2500, 1000).await;
    let id = unique("bk-full-set");
    let spec = json!({"kafkaCluster": {"bootstrapServers": [shared]}, "topics": [topic],
        "storage": pvc(), "backupId": id, "consumerGroupSnapshot": false,
        "compression": "None", "segmentMaxBytes": 262144,
        "checkpoint": {"enabled": true, "intervalSeconds": 1}, "execution": {"retries": 2}});
    let started = Instant::now();
    let status = run_backup(&root, "bk-full", spec.clone()).await;
    let failed_after = started.elapsed();
    assert_eq!(status.phase, Some(RunPhase::Failed), "{status:?}");
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("ENOSPC"), "{message}");
    assert!(
        message.contains(&root.display().to_string()),
        "names the file: {message}"
    );
    assert!(
        !message.contains("(attempt 2"),
        "a full disk is not retried: {message}"
    );
    // Nothing that looks complete: no staged file, the manifest (if one was stored) InProgress
    // with whole chains of stored segments, and every segment object whole.
    let set = open(&root, &pvc());
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    assert!(
        files.iter().all(|f| !f.to_string_lossy().contains('#')),
        "no staged upload left: {files:?}"
    );
    if let Some(manifest) = read_manifest(&set, &id).await.unwrap() {
        assert_eq!(manifest.state, SetState::InProgress);
        for (name, t) in &manifest.topics {
            for (partition, p) in &t.partitions {
                assert!(validation::judge_chain(name, *partition, p).problems.is_empty());
            }
        }
    }
    for key in list_segments(&set, &id).await.unwrap().into_values() {
        let bytes = set.get(&key).await.unwrap().unwrap();
        kafka_backup_operator::storage::backup::segment::Segment::decode(bytes)
            .unwrap_or_else(|e| panic!("{key} is not a whole segment: {e}"));
    }

    volume.grow(64 << 20);
    let resumed_at = Instant::now();
    let second = run_backup(&root, "bk-full", spec).await;
    let resumed_in = resumed_at.elapsed();
    assert_eq!(second.phase, Some(RunPhase::Completed), "{second:?}");
    let (lost, duplicated) = assert_exact(&records, &restored(&root, &shared, &pvc(), &id, &topic, 4).await);
    matrix::record(Row {
        test: "faults::backup_fails_on_a_full_disk_naming_enospc_and_resumes_once_there_is_room",
        operation: "KafkaBackup",
        fault: format!("PVC full ({}, 3 MiB, 10 MB of records)", volume.kind),
        outcome: "Failed at once (not retried) naming ENOSPC and the file; no staged file, manifest InProgress, stored segments whole; the next run with room resumes, set exact".into(),
        lost,
        duplicated,
        recovery: format!(
            "failed {} after the start; next run completed in {}",
            secs(failed_after),
            secs(resumed_in)
        ),
    });
}

/// The credentials are revoked mid-run (S3 answers 403 AccessDenied from then on): the backup
/// fails at once naming the Secret, in its first attempt although `retries: 3` allows more,
/// after a handful of requests (those already in flight), not a retry storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_fails_at_once_naming_the_secret_when_the_credentials_are_revoked() {
    let Some((shared, s3_endpoint, _)) = services() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let http = HttpFaults::start(&s3_endpoint).await;
    let (topic, _) = source_topic(&shared, "bk-403", 4, 1500, 1000).await;
    let id = unique("bk-403-set");
    let storage = s3(&http.endpoint, &unique("faults-403"));
    let mut spec = slow_backup(&shared, &topic, &storage, &id, 1_500_000);
    spec["execution"] = json!({"retries": 3});
    let run = start_backup(root.path(), "bk-403", spec);
    run.under_way("records backed up").await;
    let revoked = Instant::now();
    http.add(HttpRule {
        method: None,
        path_contains: None,
        when: HttpWhen::Always,
        fault: HttpFault::Status(403),
    });
    let status = run.end().await;
    let failed_after = revoked.elapsed();
    assert_eq!(status.phase, Some(RunPhase::Failed), "{status:?}");
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("Secret s3"), "names the Secret: {message}");
    assert!(message.contains("not retried"), "{message}");
    assert!(message.ends_with("(attempt 1 of 4)"), "one attempt: {message}");
    let refused = http.seen().iter().filter(|s| s.status == 403).count();
    // The uploads in flight (4 at most), the final checkpoint and a few more.
    assert!((1..=8).contains(&refused), "requests answered 403: {refused}");
    matrix::record(Row {
        test: "faults::backup_fails_at_once_naming_the_secret_when_the_credentials_are_revoked",
        operation: "KafkaBackup",
        fault: "credentials revoked mid-run (S3 answers 403 AccessDenied from then on), retries: 3".into(),
        outcome: "Failed in its first attempt naming Secret s3, no retry storm (at most 8 requests refused)"
            .into(),
        lost: 0,
        duplicated: 0,
        recovery: format!("failed {} after the revocation", secs(failed_after)),
    });
}

/// A backup to Azurite through a TCP proxy that adds 20 ms of latency and cuts the first six
/// connections after 100 kB (uploads cut in the middle): the run completes, set exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_to_azure_outlasts_latency_and_connections_cut_mid_upload() {
    let Some((shared, _, _)) = services() else { return };
    let Some(azurite) = service("KBO_TEST_AZURITE_URL") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let tcp = TcpFaults::start(azurite.trim_start_matches("http://"), false).await;
    tcp.set_latency(Duration::from_millis(20));
    tcp.cut_after(100_000, 6);
    let (topic, records) = source_topic(&shared, "bk-az", 4, 1000, 1000).await;
    let id = unique("bk-az-set");
    let storage = azure(&format!("http://{}", tcp.address), &unique("faults-az"));
    let started = Instant::now();
    let status = run_backup(
        root.path(),
        "bk-az",
        json!({"kafkaCluster": {"bootstrapServers": [shared]}, "topics": [topic],
            "storage": storage, "backupId": id, "consumerGroupSnapshot": false,
            "compression": "None", "segmentMaxBytes": 262144}),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    assert!(
        tcp.stats().cuts.load(Ordering::Relaxed) >= 1,
        "connections were cut"
    );
    tcp.set_latency(Duration::ZERO);
    let (lost, duplicated) = assert_exact(
        &records,
        &restored(root.path(), &shared, &storage, &id, &topic, 4).await,
    );
    matrix::record(Row {
        test: "faults::backup_to_azure_outlasts_latency_and_connections_cut_mid_upload",
        operation: "KafkaBackup",
        fault: "Azure Blob (Azurite): 20 ms latency per chunk, the first 6 connections cut after 100 kB"
            .into(),
        outcome: "Completed in its first attempt, set exact".into(),
        lost,
        duplicated,
        recovery: format!("the whole run took {}", secs(took)),
    });
}

// ---------------------------------------------------------------------------------------------
// Restore

/// A set of `count` records per partition of 4, backed up with no fault to `storage`.
async fn backed_up(
    root: &Path,
    shared: &str,
    storage: &Value,
    prefix: &str,
    count: i64,
) -> (String, Vec<Record>, String) {
    let (topic, records) = source_topic(shared, prefix, 4, count, 200).await;
    let id = unique(&format!("{prefix}-set"));
    let status = run_backup(
        root,
        prefix,
        json!({"kafkaCluster": {"bootstrapServers": [shared]}, "topics": [topic],
            "storage": storage, "backupId": id, "consumerGroupSnapshot": false}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    (topic, records, id)
}

/// The broker black-holes all traffic for 6 s in the middle of a restore (produce requests in
/// flight get no answer; their connections are cut when it ends): the restore retries and
/// completes, every record exactly once in the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_outlasts_a_broker_black_hole_with_each_record_once() {
    let Some((shared, _, nisshi)) = services() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (source, records, id) = backed_up(root.path(), &shared, &pvc(), "kr-hole", 3000).await;
    let (_broker, kafka) = broker_behind_faults(&nisshi, root.path()).await;
    let target = unique("kr-hole-dst");
    let spec = json!({"backupRef": {"backupId": id, "storage": pvc()},
        "kafkaCluster": {"bootstrapServers": [kafka.address]},
        "topicMapping": {source: target}, "createTopics": {"enabled": true},
        "produce": {"batchSize": 50}, "rateLimiting": {"recordsPerSec": 4000},
        "execution": {"retries": 6}});
    let (ctx, done) = ctx(root.path(), "kr-hole");
    let task = tokio::spawn(async move {
        restore::execute(&resource::<KafkaRestore>("KafkaRestore", "kr-hole", spec), &ctx).await
    });
    let run = Running { task, done };
    run.under_way("records restored").await;
    kafka.black_hole();
    tokio::time::sleep(WINDOW).await;
    kafka.pass();
    let back = Instant::now();
    let status = run.end().await;
    let recovered = back.elapsed();
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert!(
        kafka.stats().dropped.load(Ordering::Relaxed) > 0,
        "the black hole dropped traffic"
    );
    let (lost, duplicated) = assert_exact(&records, &consume(&kafka.address, &target, 4));
    matrix::record(Row {
        test: "faults::restore_outlasts_a_broker_black_hole_with_each_record_once",
        operation: "KafkaRestore",
        fault: format!(
            "broker black-holes all traffic for {} s mid-restore, retries: 6",
            WINDOW.as_secs()
        ),
        outcome: "Completed, each record exactly once".into(),
        lost,
        duplicated,
        recovery: format!("completed {} after the broker was back", secs(recovered)),
    });
}

/// Every 4th Produce request is answered NOT_LEADER_OR_FOLLOWER (a leader change, injected at
/// the proxy: nisshi has one broker and cannot move leaders), 12 times: the producer looks the
/// leader up again and sends the batches again; the restore completes, each record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_rides_over_leader_changes_with_each_record_once() {
    let Some((shared, _, nisshi)) = services() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (source, records, id) = backed_up(root.path(), &shared, &pvc(), "kr-leader", 2000).await;
    let (_broker, kafka) = broker_behind_faults(&nisshi, root.path()).await;
    kafka.inject(KafkaInjection {
        api_key: PRODUCE,
        every: 4,
        times: 12,
        error_code: NOT_LEADER,
    });
    let target = unique("kr-leader-dst");
    let before = retries().count(RetryCause::KafkaLeaderMoved);
    let started = Instant::now();
    let status = run_restore(
        root.path(),
        "kr-leader",
        json!({"backupRef": {"backupId": id, "storage": pvc()},
            "kafkaCluster": {"bootstrapServers": [kafka.address]},
            "topicMapping": {source: target}, "createTopics": {"enabled": true},
            "produce": {"batchSize": 50}}),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(kafka.stats().injected.load(Ordering::Relaxed), 12);
    assert!(retries().count(RetryCause::KafkaLeaderMoved) > before);
    let (lost, duplicated) = assert_exact(&records, &consume(&kafka.address, &target, 4));
    matrix::record(Row {
        test: "faults::restore_rides_over_leader_changes_with_each_record_once",
        operation: "KafkaRestore",
        fault: "every 4th Produce answered NOT_LEADER_OR_FOLLOWER, 12 times".into(),
        outcome: "Completed in its first attempt, each record exactly once".into(),
        lost,
        duplicated,
        recovery: format!("the whole restore took {}", secs(took)),
    });
}

/// The set is read from S3 while it answers 503 SlowDown to one GET in three and to every
/// request for 6 s: the restore completes, each record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_outlasts_s3_slow_down() {
    let Some((shared, s3_endpoint, _)) = services() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let prefix = unique("faults-kr503");
    let (source, records, id) =
        backed_up(root.path(), &shared, &s3(&s3_endpoint, &prefix), "kr-503", 2000).await;
    let http = HttpFaults::start(&s3_endpoint).await;
    let start = Instant::now();
    http.add(HttpRule {
        method: None,
        path_contains: None,
        when: HttpWhen::Until(start + WINDOW),
        fault: HttpFault::Status(503),
    });
    http.add(HttpRule {
        method: Some("GET"),
        path_contains: None,
        when: HttpWhen::OneIn { k: 3, times: 50 },
        fault: HttpFault::Status(503),
    });
    let target = unique("kr-503-dst");
    let status = run_restore(
        root.path(),
        "kr-503",
        json!({"backupRef": {"backupId": id, "storage": s3(&http.endpoint, &prefix)},
            "kafkaCluster": {"bootstrapServers": [shared]},
            "topicMapping": {source: target}, "createTopics": {"enabled": true}}),
    )
    .await;
    let end = Instant::now();
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert!(http.seen().iter().filter(|s| s.status == 503).count() > 3);
    let (lost, duplicated) = assert_exact(&records, &consume(&shared, &target, 4));
    matrix::record(Row {
        test: "faults::restore_outlasts_s3_slow_down",
        operation: "KafkaRestore",
        fault: format!(
            "S3 answers 503 SlowDown to every request for the first {} s and to one GET in 3",
            WINDOW.as_secs()
        ),
        outcome: "Completed in its first attempt, each record exactly once".into(),
        lost,
        duplicated,
        recovery: format!(
            "completed {} after the 503 window",
            secs(end.saturating_duration_since(start + WINDOW))
        ),
    });
}

// ---------------------------------------------------------------------------------------------
// Offset reset

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

fn commit(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    group_consumer(bootstrap, group)
        .commit(&tpl, CommitMode::Sync)
        .unwrap();
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let answer = group_consumer(bootstrap, group)
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    answer.elements()[0].offset().to_raw().filter(|o| *o >= 0)
}

/// A broker of its own behind a fault proxy, a topic of 1 partition with 10 records, and `count`
/// groups that committed offset 8 on it: the broker, its proxy, the topic and the groups.
async fn groups_behind_faults(
    nisshi: &str,
    root: &Path,
    prefix: &str,
    count: usize,
) -> (support::Broker, TcpFaults, String, Vec<String>) {
    let (broker, kafka) = broker_behind_faults(nisshi, root).await;
    let topic = unique(prefix);
    create_topic(&kafka.address, &topic, 1).await;
    produce(&kafka.address, &topic, &records(1, 10, BASE, 10)).await;
    let groups: Vec<String> = (1..=count).map(|i| unique(&format!("{prefix}-g{i}"))).collect();
    for g in &groups {
        commit(&kafka.address, g, &topic, 8);
    }
    (broker, kafka, topic, groups)
}

/// The broker goes away between two groups' commits of a reset (it refuses from the second
/// OffsetCommit on, which never reaches it) for longer than `retryTimeoutSeconds`: the status
/// lists the group that was committed, the one whose commit went unanswered (not claimed either
/// way: its offsets could not be read back; the broker holds them unchanged) and the one not
/// tried; the snapshot was stored before the first commit; run again, the reset finishes the
/// job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_interrupted_between_commits_lists_what_was_committed_and_a_rerun_finishes() {
    let Some((_, _, nisshi)) = services() else { return };
    let root = tempfile::tempdir().unwrap();
    let (_broker, kafka, topic, groups) = groups_behind_faults(&nisshi, root.path(), "kor-gone", 3).await;
    let spec = |snapshot: &str| {
        json!({"kafkaCluster": {"bootstrapServers": [kafka.address]}, "consumerGroups": groups,
            "strategy": "Earliest", "topics": [{"name": topic}], "parallelism": 1,
            "snapshot": {"enabled": true, "snapshotId": snapshot, "storage": pvc()},
            "execution": {"retryTimeoutSeconds": 2}})
    };
    let commits_before = kafka
        .stats()
        .requests
        .lock()
        .unwrap()
        .get(&OFFSET_COMMIT)
        .copied()
        .unwrap_or(0);
    kafka.refuse_on(OFFSET_COMMIT, commits_before + 2);
    let (ctx, _) = ctx(root.path(), "kor-gone");
    let started = Instant::now();
    let first_snapshot = unique("kor-gone-1");
    let status = offset_reset::execute(
        &resource::<KafkaOffsetReset>("KafkaOffsetReset", "kor-gone", spec(&first_snapshot)),
        &ctx,
    )
    .await;
    let ended_after = started.elapsed();
    kafka.pass();
    assert_eq!(status.phase, Some(Phase::PartiallyCompleted), "{status:?}");
    let results = status.results.clone().unwrap();
    let succeeded: Vec<&str> = results
        .iter()
        .filter(|r| r.outcome == GroupResetOutcome::Succeeded)
        .map(|r| r.group.as_str())
        .collect();
    let failed = results
        .iter()
        .filter(|r| r.outcome == GroupResetOutcome::Failed)
        .count();
    // The group after the failed one is not tried (continueOnError: false).
    let skipped = results
        .iter()
        .filter(|r| r.outcome == GroupResetOutcome::Skipped)
        .count();
    assert_eq!((succeeded.len(), failed, skipped), (1, 1, 1), "{results:?}");
    let unanswered = results
        .iter()
        .find(|r| r.outcome == GroupResetOutcome::Failed)
        .unwrap();
    let said = unanswered.message.as_deref().unwrap();
    assert!(
        said.contains("not known whether the change was applied: reading the offsets back failed"),
        "{said}"
    );
    assert_eq!(unanswered.partitions_reset, None, "not claimed either way");
    for g in &groups {
        let want = if succeeded.contains(&g.as_str()) { 0 } else { 8 };
        assert_eq!(
            committed(&kafka.address, g, &topic),
            Some(want),
            "group {g}: the status says so"
        );
    }
    // The snapshot holds every group's offsets from before and was stored before the first
    // commit reached the broker.
    let snapshot_file = root
        .path()
        .join("backups/faults/offset-snapshots")
        .join(format!("{first_snapshot}.json"));
    let snapshot = OffsetSnapshot::parse(
        &std::fs::read(&snapshot_file).unwrap(),
        &first_snapshot,
        "snapshot",
    )
    .unwrap();
    for g in &groups {
        assert_eq!(
            snapshot.groups[g].topics[&topic][&0].offset, 8,
            "{g} in the snapshot"
        );
    }
    let stored_at = std::fs::metadata(&snapshot_file)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let first_commit = kafka
        .stats()
        .request_log
        .lock()
        .unwrap()
        .iter()
        .filter(|(key, _)| *key == OFFSET_COMMIT)
        .map(|(_, at)| *at)
        .nth(commits_before)
        .unwrap();
    assert!(
        stored_at <= first_commit,
        "snapshot stored at {stored_at:?}, first commit at {first_commit:?}"
    );

    // Run again: the job is finished.
    let rerun_at = Instant::now();
    let rerun = offset_reset::execute(
        &resource::<KafkaOffsetReset>("KafkaOffsetReset", "kor-gone", spec(&unique("kor-gone-2"))),
        &ctx,
    )
    .await;
    let rerun_took = rerun_at.elapsed();
    assert_eq!(rerun.phase, Some(Phase::Completed), "{rerun:?}");
    for g in &groups {
        assert_eq!(committed(&kafka.address, g, &topic), Some(0), "group {g}");
    }
    matrix::record(Row {
        test: "faults::reset_interrupted_between_commits_lists_what_was_committed_and_a_rerun_finishes",
        operation: "KafkaOffsetReset",
        fault: "broker gone from the second group's OffsetCommit on, past retryTimeoutSeconds (2 s) (3 groups, parallelism 1)".into(),
        outcome: "PartiallyCompleted: 1 group Succeeded, 1 Failed as not known either way (its commit unanswered, its offsets unreadable; the broker holds them unchanged), 1 Skipped (not tried); snapshot stored before the first commit; a rerun Completes".into(),
        lost: 0,
        duplicated: 0,
        recovery: format!(
            "ended {} after the start; the rerun took {}",
            secs(ended_after),
            secs(rerun_took)
        ),
    });
}

/// Every OffsetCommit of a reset reaches the broker, which commits it, but its response is lost
/// (the connection is cut once the broker has answered), for longer than `retryTimeoutSeconds`:
/// after the commit's retries the reset reads the offsets back (OffsetFetch) and reports both
/// groups reset, as the broker holds them, not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_whose_commit_responses_are_lost_reports_what_the_broker_holds() {
    let Some((_, _, nisshi)) = services() else { return };
    let root = tempfile::tempdir().unwrap();
    let (_broker, kafka, topic, groups) = groups_behind_faults(&nisshi, root.path(), "kor-lost", 2).await;
    kafka.lose_responses(OFFSET_COMMIT, 1000);
    let (ctx, _) = ctx(root.path(), "kor-lost");
    let started = Instant::now();
    let status = offset_reset::execute(
        &resource::<KafkaOffsetReset>(
            "KafkaOffsetReset",
            "kor-lost",
            json!({"kafkaCluster": {"bootstrapServers": [kafka.address]}, "consumerGroups": groups,
                "strategy": "Earliest", "topics": [{"name": topic}], "parallelism": 1,
                "snapshot": {"enabled": true, "snapshotId": unique("kor-lost"), "storage": pvc()},
                "execution": {"retryTimeoutSeconds": 1}}),
        ),
        &ctx,
    )
    .await;
    let took = started.elapsed();
    let lost = kafka.stats().lost.load(Ordering::Relaxed);
    kafka.lose_responses(OFFSET_COMMIT, 0);
    assert!(lost >= 2, "{lost} OffsetCommit responses lost");
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    for r in status.results.as_ref().unwrap() {
        assert_eq!(r.outcome, GroupResetOutcome::Succeeded, "{r:?}");
        assert_eq!(r.partitions_reset, Some(1), "{r:?}");
        let said = r.message.as_deref().unwrap();
        assert!(
            said.contains("reading the offsets back found them committed"),
            "{said}"
        );
    }
    for g in &groups {
        assert_eq!(committed(&kafka.address, g, &topic), Some(0), "group {g}");
    }
    matrix::record(Row {
        test: "faults::reset_whose_commit_responses_are_lost_reports_what_the_broker_holds",
        operation: "KafkaOffsetReset",
        fault: "every OffsetCommit reaches the broker but its response is lost (connection cut), for longer than retryTimeoutSeconds (1 s); 2 groups".into(),
        outcome: "Completed: both groups Succeeded, found committed by reading the offsets back (OffsetFetch) after the commit's retries, as the broker holds them".into(),
        lost: 0,
        duplicated: 0,
        recovery: format!("the whole reset took {}", secs(took)),
    });
}

/// The broker refuses connections for 4 s as a reset starts (no `execution` block: the default
/// request budget of 120 s): its requests (connecting, Metadata, FindCoordinator, ...) are sent
/// again with backoff until the broker is back, and the reset completes in its first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_outlasts_a_broker_away_before_the_plan() {
    let Some((_, _, nisshi)) = services() else { return };
    let root = tempfile::tempdir().unwrap();
    let (_broker, kafka, topic, groups) = groups_behind_faults(&nisshi, root.path(), "kor-away", 2).await;
    let (mut ctx, _) = ctx(root.path(), "kor-away");
    let attempts_failed = Arc::new(AtomicU64::new(0));
    let count = attempts_failed.clone();
    ctx.attempt_failed = Arc::new(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    let before = retries().count(RetryCause::KafkaUnreachable);
    kafka.refuse();
    let back = {
        let away = Duration::from_secs(4);
        tokio::spawn(async move {
            tokio::time::sleep(away).await;
            Instant::now()
        })
    };
    let reset = tokio::spawn({
        let spec = json!({"kafkaCluster": {"bootstrapServers": [kafka.address]}, "consumerGroups": groups,
            "strategy": "Earliest", "topics": [{"name": topic}],
            "snapshot": {"enabled": true, "snapshotId": unique("kor-away"), "storage": pvc()}});
        async move {
            offset_reset::execute(
                &resource::<KafkaOffsetReset>("KafkaOffsetReset", "kor-away", spec),
                &ctx,
            )
            .await
        }
    });
    let back_at = back.await.unwrap();
    kafka.pass();
    let status = reset.await.unwrap();
    let ended = Instant::now();
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(
        attempts_failed.load(Ordering::SeqCst),
        0,
        "completed in its first attempt"
    );
    assert!(
        retries().count(RetryCause::KafkaUnreachable) > before,
        "the requests were sent again, counted as kafka_unreachable"
    );
    for g in &groups {
        assert_eq!(committed(&kafka.address, g, &topic), Some(0), "group {g}");
    }
    matrix::record(Row {
        test: "faults::reset_outlasts_a_broker_away_before_the_plan",
        operation: "KafkaOffsetReset",
        fault: "broker refuses connections for 4 s as the reset starts (before the plan), default retryTimeoutSeconds".into(),
        outcome: "Completed in its first attempt: the requests sent again with backoff until the broker was back; 2 groups reset".into(),
        lost: 0,
        duplicated: 0,
        recovery: format!("completed {} after the broker was back", secs(ended - back_at)),
    });
}

// ---------------------------------------------------------------------------------------------
// Offset rollback

/// A rollback of 3 groups (committed at once) meets a broker gone from its first OffsetCommit
/// on, for longer than `retryTimeoutSeconds`: no group is claimed rolled back, each is listed as
/// not known (its commit unanswered, its offsets unreadable), and the broker indeed holds none
/// changed. Run again with the broker gone for 1 s from the first OffsetCommit, within the
/// budget: the commits are sent again, every group is rolled back and the read-back matches the
/// snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_interrupted_at_its_commits_claims_nothing_and_a_rerun_finishes() {
    let Some((_, _, nisshi)) = services() else { return };
    let root = tempfile::tempdir().unwrap();
    let (_broker, kafka, topic, groups) = groups_behind_faults(&nisshi, root.path(), "kor-rb", 3).await;
    let snapshot_id = unique("kor-rb");
    let (ctx, _) = ctx(root.path(), "kor-rb");
    let rollback = |operation: &str, budget: u64| {
        resource::<KafkaOffsetRollback>(
            "KafkaOffsetRollback",
            "kor-rb",
            json!({"operation": operation, "snapshotId": snapshot_id, "storage": pvc(),
                "consumerGroups": groups, "kafkaCluster": {"bootstrapServers": [kafka.address]},
                "execution": {"retryTimeoutSeconds": budget}}),
        )
    };
    let taken = offset_rollback::execute(&rollback("Snapshot", 10), &ctx).await;
    assert_eq!(taken.phase, Some(Phase::Completed), "{taken:?}");
    // The groups move on (a reset, consumers): the rollback takes them back to 8.
    for g in &groups {
        commit(&kafka.address, g, &topic, 2);
    }
    let commits = || {
        kafka
            .stats()
            .requests
            .lock()
            .unwrap()
            .get(&OFFSET_COMMIT)
            .copied()
            .unwrap_or(0)
    };
    kafka.refuse_on(OFFSET_COMMIT, commits() + 1);
    let started = Instant::now();
    let status = offset_rollback::execute(&rollback("Rollback", 2), &ctx).await;
    let ended_after = started.elapsed();
    kafka.pass();
    assert_eq!(status.phase, Some(Phase::Failed), "{status:?}");
    assert_eq!(
        (status.groups_rolled_back, status.groups_failed),
        (Some(0), Some(3)),
        "{status:?}"
    );
    let said = status.message.clone().unwrap();
    assert!(
        said.starts_with("no group rolled back; not known whether rolled back: "),
        "{said}"
    );
    for g in &groups {
        assert!(said.contains(&format!("{g}: ")), "{g} is listed: {said}");
        assert_eq!(
            committed(&kafka.address, g, &topic),
            Some(2),
            "group {g}: not rolled back, and not claimed"
        );
    }

    // Run again, the broker gone for 1 s from the first OffsetCommit: within the budget.
    kafka.refuse_on(OFFSET_COMMIT, commits() + 1);
    let broker_back = async {
        wait_for("the broker refuses", Duration::from_secs(30), || {
            kafka.mode() == support::faults::Mode::Refuse
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        kafka.pass();
        Instant::now()
    };
    let rerun_spec = rollback("Rollback", 30);
    let (rerun, back_at) = tokio::join!(offset_rollback::execute(&rerun_spec, &ctx), broker_back);
    let rerun_after = back_at.elapsed();
    assert_eq!(rerun.phase, Some(Phase::Completed), "{rerun:?}");
    assert_eq!(rerun.groups_rolled_back, Some(3), "{rerun:?}");
    let verification = rerun.verification.clone().unwrap();
    assert_eq!(verification.matched, Some(true), "{verification:?}");
    for g in &groups {
        assert_eq!(committed(&kafka.address, g, &topic), Some(8), "group {g}");
    }
    matrix::record(Row {
        test: "faults::rollback_interrupted_at_its_commits_claims_nothing_and_a_rerun_finishes",
        operation: "KafkaOffsetRollback (Rollback)",
        fault: "broker gone from the first OffsetCommit on (3 groups committed at once), past retryTimeoutSeconds (2 s); the rerun: gone for 1 s from its first OffsetCommit".into(),
        outcome: "Failed: no group claimed rolled back, each listed as not known (commit unanswered, offsets unreadable), the broker holds none changed; the rerun sends its commits again once the broker is back and Completes, read back equal to the snapshot".into(),
        lost: 0,
        duplicated: 0,
        recovery: format!(
            "failed {} after the start; the rerun completed {} after the broker was back",
            secs(ended_after),
            secs(rerun_after)
        ),
    });
}

// ---------------------------------------------------------------------------------------------
// Validation

/// S3 answers 503 SlowDown to the first 40 segment reads, more than one request's retries
/// within `retryTimeoutSeconds: 1` (or object_store's default 10) get through: the integrity
/// check's attempt fails with the storage error, a later attempt reads every segment, and the
/// backup is judged Passed: a storage failure is never reported as a problem of the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn validation_retries_segment_reads_and_never_reports_them_as_corruption() {
    let Some((shared, s3_endpoint, _)) = services() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let prefix = unique("faults-kbv");
    let (_, _, id) = backed_up(root.path(), &shared, &s3(&s3_endpoint, &prefix), "kbv-503", 2000).await;
    let http = HttpFaults::start(&s3_endpoint).await;
    http.add(HttpRule {
        method: Some("GET"),
        path_contains: Some("/topics/".into()),
        when: HttpWhen::First(40),
        fault: HttpFault::Status(503),
    });
    let (ctx, _) = ctx(root.path(), "kbv-503");
    let before = retries().count(RetryCause::AttemptFailed);
    let start = Instant::now();
    let status = validation::execute(
        &resource::<KafkaBackupValidation>(
            "KafkaBackupValidation",
            "kbv-503",
            json!({"backupRef": {"backupId": id, "storage": s3(&http.endpoint, &prefix)},
                "checks": {"integrity": {"enabled": true}},
                "execution": {"retries": 8, "retryTimeoutSeconds": 1}}),
        ),
        &ctx,
    )
    .await;
    let end = Instant::now();
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    assert_eq!(status.result, Some(CheckOutcome::Passed), "{status:?}");
    let integrity = &status.checks.as_ref().unwrap()[0];
    assert_eq!(integrity.outcome, CheckOutcome::Passed, "{integrity:?}");
    let text = serde_json::to_string(&status).unwrap();
    assert!(
        !text.contains("cannot be read") && !text.contains("corrupt"),
        "{text}"
    );
    let throttled = http.seen().iter().filter(|s| s.status == 503).count();
    assert_eq!(throttled, 40, "segment reads answered 503");
    assert!(
        retries().count(RetryCause::AttemptFailed) > before,
        "an attempt failed and was retried"
    );
    matrix::record(Row {
        test: "faults::validation_retries_segment_reads_and_never_reports_them_as_corruption",
        operation: "KafkaBackupValidation",
        fault: "S3 answers 503 SlowDown to the first 40 segment reads (retryTimeoutSeconds: 1, retries: 8)".into(),
        outcome: "Completed, result Passed: the failed reads retried (requests, then attempts), never reported as corruption".into(),
        lost: 0,
        duplicated: 0,
        recovery: format!("passed {} after the start", secs(end - start)),
    });
}

// ---------------------------------------------------------------------------------------------

/// The matrix holds a row for every fault test and no other.
#[test]
fn the_fault_matrix_has_a_row_for_every_fault_test_and_no_other() {
    if std::env::var("KBO_WRITE_FAULT_MATRIX").as_deref() == Ok("1") {
        // The other tests are writing it right now.
        return;
    }
    let text = std::fs::read_to_string(matrix::path()).unwrap();
    let mut rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Operation"))
        .filter_map(|l| l.rsplit('`').nth(1))
        .collect();
    rows.sort_unstable();
    let mut tests = vec![
        "faults::backup_outlasts_a_broker_that_is_away_mid_run",
        "faults::backup_outlasts_s3_slow_down_and_uploads_reset_mid_way",
        "faults::backup_fails_past_the_retry_budget_and_the_next_run_resumes",
        "faults::backup_fails_on_a_full_disk_naming_enospc_and_resumes_once_there_is_room",
        "faults::backup_fails_at_once_naming_the_secret_when_the_credentials_are_revoked",
        "faults::backup_to_azure_outlasts_latency_and_connections_cut_mid_upload",
        "faults::restore_outlasts_a_broker_black_hole_with_each_record_once",
        "faults::restore_rides_over_leader_changes_with_each_record_once",
        "faults::restore_outlasts_s3_slow_down",
        "faults::reset_interrupted_between_commits_lists_what_was_committed_and_a_rerun_finishes",
        "faults::reset_whose_commit_responses_are_lost_reports_what_the_broker_holds",
        "faults::reset_outlasts_a_broker_away_before_the_plan",
        "faults::rollback_interrupted_at_its_commits_claims_nothing_and_a_rerun_finishes",
        "faults::validation_retries_segment_reads_and_never_reports_them_as_corruption",
        "reconciler::running_operations_outlast_an_api_server_outage_and_start_once",
    ];
    tests.sort_unstable();
    assert_eq!(rows, tests);
}
