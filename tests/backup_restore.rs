//! The backup and restore engine against the real broker (nisshi) and real storage (local disk
//! through PVC storage, SeaweedFS through S3). Records are produced and read back with plain
//! rdkafka, not with the code under test; crash tests SIGKILL the real binary (`run -f`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use kafka_backup_operator::{
    api::v1beta1::{KafkaBackup, KafkaBackupStatus, KafkaRestore, KafkaRestoreStatus, Phase, RunPhase},
    ops::{Context, ResourceRef, backup, restore, validation::judge_chain},
    secrets::SecretStore,
    storage::{
        Location, ObjectLocation, StorageEnv,
        backup::{
            SetState, list_backup_sets, list_segments, manifest_key, read_manifest, set_dir, tombstone_key,
        },
        snapshot::{OffsetSnapshot, snapshot_key},
    },
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use serde_json::{Value, json};
use support::{create_topic, proxied_broker, run_and_kill, run_to_end, service, unique, write_run_manifest};

/// A record as read back from Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

fn broker() -> Option<String> {
    service("KBO_TEST_KAFKA_BOOTSTRAP")
}

/// The `i`th test record of partition `p`: keyed and null-key records, tombstones, duplicate
/// and null headers, explicit timestamps `base + i * 1000`.
fn record(p: i32, i: i64, base: i64) -> Rec {
    let key = match i % 5 {
        0 => None,
        _ => Some(format!("key-{p}-{}", i % 7).into_bytes()),
    };
    let value = match i % 11 {
        3 => None,
        4 => Some(Vec::new()),
        _ => Some(
            format!(
                "{{\"p\":{p},\"i\":{i},\"pad\":\"{}\"}}",
                "x".repeat((i % 50) as usize)
            )
            .into_bytes(),
        ),
    };
    let headers = match i % 4 {
        0 => vec![],
        1 => vec![
            ("h".to_owned(), Some(b"1".to_vec())),
            ("h".to_owned(), Some(b"2".to_vec())),
        ],
        2 => vec![
            ("n".to_owned(), None),
            ("e".to_owned(), Some(Vec::new())),
            ("n".to_owned(), None),
        ],
        _ => vec![
            ("bin".to_owned(), Some(vec![0, 255, 1])),
            ("x-original-offset".to_owned(), Some(b"user".to_vec())),
        ],
    };
    Rec {
        partition: p,
        key,
        value,
        headers,
        timestamp: base + i * 1000,
    }
}

async fn produce(bootstrap: &str, topic: &str, records: &[Rec]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for r in records {
        let mut h = OwnedHeaders::new();
        for (k, v) in &r.headers {
            h = h.insert(Header {
                key: k,
                value: v.as_deref(),
            });
        }
        let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
            .partition(r.partition)
            .timestamp(r.timestamp)
            .headers(h);
        if let Some(k) = &r.key {
            fr = fr.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            fr = fr.payload(v.as_slice());
        }
        pending.push(producer.send_result(fr).map_err(|(e, _)| e).unwrap());
        if pending.len() >= 2000 {
            for f in pending.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// The bytes of records as the status counts them: keys, values, header names and values.
fn record_bytes(records: &[Rec]) -> i64 {
    let len = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
    records
        .iter()
        .map(|r| {
            let headers: usize = r.headers.iter().map(|(n, v)| n.len() + len(v)).sum();
            (len(&r.key) + len(&r.value) + headers) as i64
        })
        .sum()
}

fn records_for(partitions: i32, count: i64, base: i64) -> Vec<Rec> {
    let mut out = Vec::new();
    for i in 0..count {
        for p in 0..partitions {
            out.push(record(p, i, base));
        }
    }
    out
}

/// Every record of a topic, per partition in offset order.
fn consume_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<Rec>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out: BTreeMap<i32, Vec<Rec>> = (0..partitions).map(|p| (p, Vec::new())).collect();
    let mut eof = std::collections::BTreeSet::new();
    let started = Instant::now();
    while eof.len() < partitions as usize {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "reading {topic} timed out"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => panic!("{e}"),
            Some(Ok(m)) => {
                eof.remove(&m.partition());
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.get_mut(&m.partition()).unwrap().push(Rec {
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                    timestamp: m.timestamp().to_millis().unwrap(),
                });
            }
        }
    }
    out
}

fn by_partition(records: &[Rec]) -> BTreeMap<i32, Vec<Rec>> {
    let mut out: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for r in records {
        out.entry(r.partition).or_default().push(r.clone());
    }
    out
}

fn assert_same(actual: &BTreeMap<i32, Vec<Rec>>, expected: &BTreeMap<i32, Vec<Rec>>) {
    for (p, want) in expected {
        let got = actual.get(p).cloned().unwrap_or_default();
        assert_eq!(got.len(), want.len(), "partition {p}: record count");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, w, "partition {p}, record {i}");
        }
    }
    let extra: usize = actual
        .iter()
        .filter(|(p, _)| !expected.contains_key(p))
        .map(|(_, v)| v.len())
        .sum();
    assert_eq!(extra, 0, "records in unexpected partitions");
}

fn pvc_storage() -> Value {
    json!({"type": "PVC", "pvc": {"claimName": "backups", "subPath": "team"}})
}

fn s3_storage(prefix: &str) -> Option<Value> {
    let endpoint = service("KBO_TEST_S3_ENDPOINT")?;
    Some(json!({"type": "S3", "s3": {
        "bucket": std::env::var("KBO_TEST_S3_BUCKET").unwrap_or_else(|_| "test-bucket".into()),
        "endpoint": endpoint, "region": "us-east-1", "pathStyle": true, "allowHttp": true,
        "prefix": prefix, "credentialsSecret": {"name": "s3"}}}))
}

fn secrets() -> SecretStore {
    let mut s3 = BTreeMap::new();
    s3.insert("AWS_ACCESS_KEY_ID".to_owned(), b"test".to_vec());
    s3.insert("AWS_SECRET_ACCESS_KEY".to_owned(), b"test".to_vec());
    SecretStore::Map {
        origin: "test".into(),
        secrets: HashMap::from([("s3".to_owned(), s3)]),
    }
}

fn ctx(root: &Path, name: &str) -> Context {
    Context::new(
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
    )
}

fn backup_resource(name: &str, spec: Value) -> KafkaBackup {
    serde_json::from_value(
        json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
        "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

fn restore_resource(name: &str, spec: Value) -> KafkaRestore {
    serde_json::from_value(
        json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore",
        "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

async fn run_backup(root: &Path, name: &str, spec: Value) -> KafkaBackupStatus {
    backup::execute(&backup_resource(name, spec), &ctx(root, name)).await
}

async fn run_restore(root: &Path, name: &str, spec: Value) -> KafkaRestoreStatus {
    restore::execute(&restore_resource(name, spec), &ctx(root, name)).await
}

/// The object location a storage block names.
fn open_location(root: &Path, storage: &Value) -> ObjectLocation {
    match Location::open(
        &serde_json::from_value(storage.clone()).unwrap(),
        &secrets(),
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

/// Commits a group's offsets on partitions of a topic.
fn commit_offsets(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// The offsets a group has committed on the partitions of a topic.
fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|e| {
            e.offset()
                .to_raw()
                .filter(|o| *o >= 0)
                .map(|o| (e.partition(), o))
        })
        .collect()
}

/// Every object below a directory with its size.
fn files_below(dir: &Path) -> BTreeMap<std::path::PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path(), meta.len());
            }
        }
    }
    out
}

fn high_watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_is_exact_and_incremental_on_local_disk_and_s3() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("rt-src");
    create_topic(&bootstrap, &source, 4).await;
    let first = records_for(4, 150, 1_700_000_000_000);
    produce(&bootstrap, &source, &first).await;

    let mut storages = vec![("Zstd", pvc_storage())];
    if let Some(s3) = s3_storage(&unique("rt")) {
        storages.push(("Lz4", s3));
    }
    let mut produced = first;
    for (round, (compression, storage)) in storages.into_iter().enumerate() {
        let id = unique("set");
        let spec = json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": storage, "backupId": id, "compression": compression,
            "segmentMaxBytes": 1_048_576, "consumerGroupSnapshot": false});
        let status = run_backup(root.path(), "rt", spec.clone()).await;
        assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
        assert_eq!(
            status.progress.as_ref().unwrap().records,
            Some(produced.len() as i64)
        );

        // Incremental: a second run stores only the new records.
        let second = records_for(4, 30, 1_700_001_000_000 + round as i64 * 100_000_000);
        produce(&bootstrap, &source, &second).await;
        produced.extend(second.iter().cloned());
        let status = run_backup(root.path(), "rt", spec.clone()).await;
        assert_eq!(status.progress.as_ref().unwrap().records, Some(120), "{status:?}");

        // Read the set back through the catalog functions.
        let location = open_location(root.path(), &storage);
        let manifest = read_manifest(&location, &id).await.unwrap().unwrap();
        assert_eq!(manifest.state, SetState::Complete);
        assert_eq!(manifest.topics[&source].partition_count, 4);
        assert_eq!(manifest.runs.len(), 2);
        let (sets, errors) = list_backup_sets(&location).await.unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let summary = sets.iter().find(|s| s.backup_id == id).unwrap();
        assert_eq!(
            (summary.records, summary.partitions, summary.complete),
            (produced.len() as u64, 4, true)
        );
        assert_eq!(
            summary.first_record_time.unwrap().timestamp_millis(),
            1_700_000_000_000
        );

        // Restore into a new topic: identical record by record.
        let target = unique("rt-dst");
        let status = run_restore(
            root.path(),
            &unique("r"),
            json!({"backupRef": {"backupId": id, "storage": storage},
                "kafkaCluster": {"bootstrapServers": [bootstrap]},
                "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true}}),
        )
        .await;
        assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
        assert_eq!(status.records_restored, Some(produced.len() as i64));
        assert!(
            status
                .offset_mapping_path
                .as_deref()
                .unwrap()
                .ends_with("offset-mapping.json")
        );
        assert_same(&consume_all(&bootstrap, &target, 4), &by_partition(&produced));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pitr_keeps_exactly_the_window_and_headers_only_when_asked() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("pitr-src");
    create_topic(&bootstrap, &source, 2).await;
    let base = 1_700_000_000_000;
    let records = records_for(2, 100, base);
    produce(&bootstrap, &source, &records).await;
    let id = unique("pitr");
    let status = run_backup(
        root.path(),
        "pitr",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "segmentMaxBytes": 1_048_576}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let to_time = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339();
    let (start, end) = (base + 20_000, base + 49_000);
    let target = unique("pitr-dst");
    let status = run_restore(
        root.path(),
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
            "pitr": {"startTime": to_time(start), "endTime": to_time(end)},
            "includeOriginalOffsetHeaders": true}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    let expected: Vec<Rec> = records
        .iter()
        .filter(|r| r.timestamp >= start && r.timestamp <= end)
        .cloned()
        .collect();
    assert_eq!(expected.len(), 60);
    let got = consume_all(&bootstrap, &target, 2);
    for (p, recs) in &got {
        let want = by_partition(&expected)[p].clone();
        assert_eq!(recs.len(), want.len());
        for (i, (g, w)) in recs.iter().zip(&want).enumerate() {
            // The record's own headers first, then the tracking headers asked for.
            let own = g.headers.len() - 3;
            assert_eq!(&g.headers[..own], &w.headers[..], "partition {p} record {i}");
            assert_eq!((&g.key, &g.value, g.timestamp), (&w.key, &w.value, w.timestamp));
            assert_eq!(g.headers[own].0, "x-original-offset");
            let offset = i64::from_le_bytes(g.headers[own].1.clone().unwrap().try_into().unwrap());
            assert_eq!(offset, 20 + i as i64, "source offset of partition {p} record {i}");
            assert_eq!(g.headers[own + 2].0, "x-source-partition");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_backup_resumes_without_gap_or_duplicate_and_keeps_its_stop_offsets() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("kill-src");
    create_topic(&bootstrap, &source, 4).await;
    let first = records_for(4, 2500, 1_700_000_000_000);
    produce(&bootstrap, &source, &first).await;
    let id = unique("kill");
    let spec = |limit: Option<i64>| {
        let mut s = json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "segmentMaxBytes": 1_048_576,
            "segmentMaxIntervalMs": 1000, "checkpoint": {"intervalSeconds": 1},
            "stopAtCurrentOffsets": true, "compression": "None"});
        if let Some(l) = limit {
            s["rateLimiting"] = json!({"recordsPerSec": l});
        }
        s
    };
    let slow = write_run_manifest(root.path(), "KafkaBackup", "kill-slow", spec(Some(1500)));
    assert!(
        run_and_kill(&slow, root.path(), Duration::from_millis(3500)),
        "the backup finished before it was killed"
    );
    // Records produced after the killed run started are beyond its stop offsets.
    let later = records_for(4, 10, 1_700_100_000_000);
    produce(&bootstrap, &source, &later).await;
    let fast = write_run_manifest(root.path(), "KafkaBackup", "kill-fast", spec(None));
    let out = run_to_end(&fast, root.path());
    assert_eq!(out["phase"], "Completed", "{out}");

    let location = match Location::open(
        &serde_json::from_value(pvc_storage()).unwrap(),
        &SecretStore::None,
        &StorageEnv {
            pvc_root: root.path().to_owned(),
            config_maps: Default::default(),
        },
    )
    .unwrap()
    {
        Location::Object(o) => o,
        Location::ConfigMap(_) => unreachable!(),
    };
    let manifest = read_manifest(&location, &id).await.unwrap().unwrap();
    for (p, entry) in &manifest.topics[&source].partitions {
        let mut next = 0;
        for seg in &entry.segments {
            assert_eq!(
                seg.position_start, next,
                "partition {p}: chain broken at {}",
                seg.key
            );
            next = seg.position_end;
        }
        let records: u64 = entry.segments.iter().map(|s| s.records).sum();
        assert_eq!(
            records, 2500,
            "partition {p}: the resumed run stops at the captured end"
        );
        assert_eq!(entry.next_offset, 2500);
    }
    // A new run continues with the later records.
    let out = run_to_end(&fast, root.path());
    assert_eq!(out["progress"]["records"], 40, "{out}");

    let target = unique("kill-dst");
    let status = run_restore(
        root.path(),
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true}}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    let mut all = first;
    all.extend(later);
    assert_same(&consume_all(&bootstrap, &target, 4), &by_partition(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_restore_run_again_leaves_each_record_once() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("rk-src");
    create_topic(&bootstrap, &source, 3).await;
    let records = records_for(3, 3000, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let id = unique("rk");
    let status = run_backup(
        root.path(),
        "rk",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "segmentMaxBytes": 1_048_576}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let target = unique("rk-dst");
    let spec = |limit: Option<i64>| {
        let mut s = json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
            "produce": {"batchSize": 100}});
        if let Some(l) = limit {
            s["rateLimiting"] = json!({"recordsPerSec": l});
        }
        s
    };
    let slow = write_run_manifest(root.path(), "KafkaRestore", "rk-restore", spec(Some(2000)));
    assert!(run_and_kill(&slow, root.path(), Duration::from_millis(2500)));
    let written: i64 = high_watermarks(&bootstrap, &target, 3).iter().sum();
    assert!(
        written > 0 && written < 9000,
        "killed mid-way: {written} records written"
    );
    // Same name, no rate limit: continues after what was written.
    let fast = write_run_manifest(root.path(), "KafkaRestore", "rk-restore", spec(None));
    let out = run_to_end(&fast, root.path());
    let message = out["message"].as_str().unwrap();
    assert!(
        message.contains("already written by an interrupted attempt"),
        "{out}"
    );
    assert_same(&consume_all(&bootstrap, &target, 3), &by_partition(&records));
    // Once more: completed restores do nothing.
    let out = run_to_end(&fast, root.path());
    assert!(
        out["message"].as_str().unwrap().contains("already completed"),
        "{out}"
    );
    assert_eq!(high_watermarks(&bootstrap, &target, 3).iter().sum::<i64>(), 9000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_empty_targets_are_refused_before_anything_is_written_and_purged_on_request() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("ne-src");
    create_topic(&bootstrap, &source, 2).await;
    let records = records_for(2, 50, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let id = unique("ne");
    let status = run_backup(
        root.path(),
        "ne",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "segmentMaxBytes": 1_048_576}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let target = unique("ne-dst");
    create_topic(&bootstrap, &target, 2).await;
    let existing = records_for(2, 3, 1_600_000_000_000);
    produce(&bootstrap, &target, &existing).await;
    let spec = json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
        "kafkaCluster": {"bootstrapServers": [bootstrap]}, "topicMapping": {source.clone(): target.clone()}});
    let status = run_restore(root.path(), "ne-r", spec.clone()).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = status.message.unwrap();
    assert!(
        message.contains("spec.purgeTopics") && message.contains(&format!("{target} (6 records)")),
        "{message}"
    );
    assert_eq!(high_watermarks(&bootstrap, &target, 2), vec![3, 3]);
    assert!(
        !root
            .path()
            .join("backups/team/backups")
            .join(&id)
            .join("restores/ne-r")
            .exists()
    );

    let mut purge = spec;
    purge["purgeTopics"] = json!(true);
    let status = run_restore(root.path(), "ne-r", purge).await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_same(&consume_all(&bootstrap, &target, 2), &by_partition(&records));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_group_resumes_right_after_its_last_consumed_record() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("grp-src");
    create_topic(&bootstrap, &source, 2).await;
    let records = records_for(2, 40, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let group = unique("grp");
    // The group consumed 17 records of partition 0 and 25 of partition 1.
    commit_offsets(&bootstrap, &group, &source, &[(0, 17), (1, 25)]);

    let id = unique("grp");
    let status = run_backup(
        root.path(),
        "grp",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "consumerGroupSnapshot": true,
            "sourceClusterId": "prod", "segmentMaxBytes": 1_048_576}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    // Restore only from the 10th second on: the target offsets differ from the source ones.
    let target = unique("grp-dst");
    let start = chrono::DateTime::from_timestamp_millis(1_700_000_010_000)
        .unwrap()
        .to_rfc3339();
    let status = run_restore(
        root.path(),
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
            "pitr": {"startTime": start},
            "offsetReset": {"consumerGroups": [group], "strategy": "HeaderBased", "sourceCluster": "prod"},
            "snapshotBeforeRestore": {"storage": pvc_storage(), "retentionHours": 2}}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(
        status.offset_reset.as_ref().unwrap().groups_reset,
        Some(vec![group.clone()])
    );
    let snapshot_status = status.snapshot.as_ref().unwrap();
    assert!(snapshot_status.location.is_some());
    // The retention is stored with the snapshot, for the catalog of `serve` to delete it then.
    let snapshot_id = snapshot_status.snapshot_id.as_deref().unwrap();
    let stored = open_location(root.path(), &pvc_storage())
        .get(&snapshot_key(snapshot_id))
        .await
        .unwrap()
        .unwrap();
    let stored = OffsetSnapshot::parse(&stored, snapshot_id, "stored").unwrap();
    assert_eq!(
        stored.expires_at,
        Some(stored.timestamp + chrono::Duration::hours(2))
    );
    assert_eq!(
        snapshot_status.expiration_time,
        stored.expires_at.map(kafka_backup_operator::ops::time)
    );
    // 10 records per partition were cut by the PITR start.
    assert_eq!(
        committed_offsets(&bootstrap, &group, &target, 2),
        vec![(0, 7), (1, 15)]
    );
    let restored = consume_all(&bootstrap, &target, 2);
    assert_eq!(restored[&0][7], record(0, 17, 1_700_000_000_000));
    assert_eq!(restored[&1][15], record(1, 25, 1_700_000_000_000));

    // A sourceCluster that does not match is refused.
    let status = run_restore(
        root.path(),
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): unique("grp-x")}, "createTopics": {"enabled": true},
            "offsetReset": {"consumerGroups": [group], "strategy": "HeaderBased", "sourceCluster": "staging"}}),
    )
    .await;
    assert!(status.message.unwrap().contains("spec.offsetReset.sourceCluster"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_or_missing_segments_are_named_and_dry_run_writes_nothing() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("bad-src");
    create_topic(&bootstrap, &source, 2).await;
    let records = records_for(2, 60, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let group = unique("bad-grp");
    commit_offsets(&bootstrap, &group, &source, &[(0, 17), (1, 25)]);
    let id = unique("bad");
    let backup = run_backup(
        root.path(),
        "bad",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "segmentMaxBytes": 1_048_576,
            "consumerGroupSnapshot": true}),
    )
    .await;
    assert_eq!(backup.phase, Some(RunPhase::Completed), "{backup:?}");
    let set = root.path().join("backups/team/backups").join(&id);
    let spec = |target: &str, dry: bool| {
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
            "autoConsumerGroups": true, "dryRun": dry})
    };

    // Dry run: the plan, nothing written.
    let target = unique("bad-dst");
    let stored_before = files_below(root.path());
    let status = run_restore(root.path(), "dry", spec(&target, true)).await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    let message = status.message.unwrap();
    assert!(
        message.contains("dry run, nothing written: would restore 120 records")
            && message.contains(&format!("create [{target} (2 partitions)]")),
        "{message}"
    );
    let plan = status.plan.unwrap();
    let progress = backup.progress.unwrap();
    let location = open_location(root.path(), &pvc_storage());
    let (sets, _) = list_backup_sets(&location).await.unwrap();
    let summary = sets.iter().find(|s| s.backup_id == id).unwrap();
    // Segments and stored bytes are the backup's; bytes count keys, values and headers as
    // bytesRestored does.
    let data_len = record_bytes(&records);
    assert_eq!(
        (plan.segments, plan.records, plan.bytes, plan.stored_bytes),
        (
            progress.segments,
            Some(120),
            Some(data_len),
            Some(summary.stored_bytes as i64)
        )
    );
    assert_eq!(
        (
            plan.first_record_time.unwrap().0.as_millisecond(),
            plan.last_record_time.unwrap().0.as_millisecond()
        ),
        (1_700_000_000_000, 1_700_000_059_000)
    );
    let topics = plan.topics.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(
        (
            &topics[0].name,
            &topics[0].target_name,
            topics[0].target_partitions,
            topics[0].segments,
            topics[0].records
        ),
        (&source, &target, Some(2), progress.segments, Some(120))
    );
    let create = plan.topics_to_create.unwrap();
    assert_eq!(
        create
            .iter()
            .map(|t| (t.name.as_str(), t.partitions))
            .collect::<Vec<_>>(),
        vec![(target.as_str(), 2)]
    );
    assert_eq!(plan.topics_to_purge, Some(vec![]));
    let groups = plan.group_offsets.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].group.as_str(), groups[0].error.as_deref()),
        (group.as_str(), None)
    );
    let offsets: Vec<(String, i32, i64)> = groups[0]
        .offsets
        .iter()
        .flatten()
        .map(|o| (o.topic.clone(), o.partition, o.offset))
        .collect();
    assert_eq!(offsets, vec![(target.clone(), 0, 17), (target.clone(), 1, 25)]);
    // Nothing written: no topic, no restore state, no snapshot, storage unchanged.
    assert!(!topic_exists(&bootstrap, &target));
    assert!(!set.join("restores").exists());
    assert_eq!(files_below(root.path()), stored_before);

    // A flipped byte: the restore fails naming the segment.
    let seg = std::fs::read_dir(set.join(format!("topics/{source}/1")))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = std::fs::read(&seg).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 10;
    bad[last] ^= 0x55;
    std::fs::write(&seg, &bad).unwrap();
    let status = run_restore(root.path(), "corrupt", spec(&unique("bad-dst"), false)).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = status.message.unwrap();
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        message.contains(&name) && message.contains("checksum mismatch"),
        "{message}"
    );

    // A missing segment: refused before anything is written.
    std::fs::remove_file(&seg).unwrap();
    let target = unique("bad-dst");
    let status = run_restore(root.path(), "missing", spec(&target, false)).await;
    let message = status.message.unwrap();
    assert!(
        message.contains(&name) && message.contains("missing"),
        "{message}"
    );
    assert!(!topic_exists(&bootstrap, &target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repartitioning_places_keys_like_kafka_and_missing_topics_are_refused_without_create_topics() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("rp-src");
    create_topic(&bootstrap, &source, 4).await;
    let records = records_for(4, 20, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let id = unique("rp");
    let status = run_backup(
        root.path(),
        "rp",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": ["rp-src-*"],
            "excludeTopics": ["nothing"], "storage": pvc_storage(), "backupId": id,
            "segmentMaxBytes": 1_048_576}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let target = unique("rp-dst");
    let status = run_restore(
        root.path(),
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "topicMapping": {source.clone(): target}}),
    )
    .await;
    assert!(status.message.unwrap().contains("spec.createTopics"));
    let status = run_restore(
        root.path(),
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
            "repartitioning": {target.clone(): {"targetPartitions": 3}}}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    let got = consume_all(&bootstrap, &target, 3);
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), 80);
    for (p, recs) in &got {
        for r in recs.iter().filter(|r| r.key.is_some()) {
            let want = kafka_backup_operator::kafka::topics::murmur2_partition(r.key.as_deref().unwrap(), 3);
            assert_eq!(*p, want, "key {:?}", r.key);
        }
    }
}

/// A topic whose broker-side retention never deletes records, however old their timestamps.
async fn create_unexpiring_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1)).set("retention.ms", "-1");
    for r in admin.create_topics(&[new], &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

/// Restores a set into a new topic and returns what the topic then holds.
async fn restored(
    root: &Path,
    bootstrap: &str,
    storage: &Value,
    id: &str,
    source: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<Rec>> {
    let target = unique("ret-dst");
    let status = run_restore(
        root,
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": storage},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source: target}, "createTopics": {"enabled": true}}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    consume_all(bootstrap, &target, partitions)
}

/// The manifest lists exactly the segment objects stored for the set, and its chains are whole.
async fn assert_consistent(location: &ObjectLocation, id: &str) {
    let manifest = read_manifest(location, id).await.unwrap().unwrap();
    let mut listed: Vec<String> = Vec::new();
    for (topic, entry) in &manifest.topics {
        for (partition, p) in &entry.partitions {
            let finding = judge_chain(topic, *partition, p);
            assert!(finding.problems.is_empty(), "{:?}", finding.problems);
            listed.extend(p.segments.iter().map(|s| s.key.clone()));
        }
    }
    listed.sort();
    let stored: Vec<String> = list_segments(location, id).await.unwrap().into_values().collect();
    assert_eq!(stored, listed, "segments stored vs listed in {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_keep_last_deletes_only_this_backups_oldest_sets() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let storage = s3_storage(&unique("ret")).unwrap_or_else(pvc_storage);
    let location = open_location(root.path(), &storage);
    let source = unique("ret-src");
    create_topic(&bootstrap, &source, 2).await;
    let spec = |id: &str, retention: Value| {
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": storage, "backupId": id, "consumerGroupSnapshot": true, "retention": retention})
    };
    let keep_two = json!({"keepLast": 2});

    // A set another KafkaBackup wrote in the same location, older than all: never touched.
    let mut produced = records_for(2, 20, 1_700_000_000_000);
    produce(&bootstrap, &source, &produced).await;
    let foreign = unique("foreign");
    let status = run_backup(root.path(), "other", spec(&foreign, Value::Null)).await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");

    let ids: Vec<String> = (0..3).map(|i| unique(&format!("ret{i}"))).collect();
    let mut contents = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            let more = records_for(2, 5, 1_700_000_100_000 + i as i64 * 10_000);
            produce(&bootstrap, &source, &more).await;
            produced.extend(more);
        }
        contents.push(by_partition(&produced));
        let status = run_backup(root.path(), "ret", spec(id, keep_two.clone())).await;
        assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
        let retention = status.retention.unwrap();
        assert_eq!(retention.error, None);
        assert_eq!(retention.inspected, Some(i.min(2) as i64 + 1), "{retention:?}");
        assert_eq!(retention.dry_run, Some(false));
        if i < 2 {
            assert_eq!((retention.eligible, retention.deleted), (Some(0), Some(0)));
        } else {
            assert_eq!((retention.eligible, retention.deleted), (Some(1), Some(1)));
            assert!(retention.reclaimed_bytes.unwrap() > 0, "{retention:?}");
        }
    }

    // The oldest set of "ret" is gone, objects and all; the others are intact and restorable.
    assert!(read_manifest(&location, &ids[0]).await.unwrap().is_none());
    assert!(location.list(&set_dir(&ids[0])).await.unwrap().is_empty());
    for (i, id) in [(1, &ids[1]), (2, &ids[2])] {
        assert_consistent(&location, id).await;
        assert_same(
            &restored(root.path(), &bootstrap, &storage, id, &source, 2).await,
            &contents[i],
        );
    }
    assert_consistent(&location, &foreign).await;

    // Deletions interrupted after the manifest went (tombstone and segments left): the next pass
    // finishes the one of "ret" whatever keepLast says, and leaves the foreign one alone.
    for id in [&ids[1], &foreign] {
        let manifest = location.get(&manifest_key(id)).await.unwrap().unwrap();
        location.put(&tombstone_key(id), manifest).await.unwrap();
        assert!(location.delete(&manifest_key(id)).await.unwrap());
    }
    let status = run_backup(root.path(), "ret", spec(&unique("ret3"), keep_two.clone())).await;
    let retention = status.retention.unwrap();
    assert_eq!(retention.error, None);
    assert_eq!(
        (retention.eligible, retention.deleted),
        (Some(1), Some(1)),
        "{retention:?}"
    );
    // What is left is the state of the restore made from it above, kept by design.
    let left = location.list(&set_dir(&ids[1])).await.unwrap();
    assert!(left.iter().all(|o| o.key.starts_with("restores/")), "{left:?}");
    assert!(location.get(&tombstone_key(&foreign)).await.unwrap().is_some());
    assert!(location.list(&set_dir(&foreign)).await.unwrap().len() > 2);
    assert_consistent(&location, &ids[2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_max_age_expires_old_segments_and_sets_and_dry_run_only_reports() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let storage = pvc_storage();
    let location = open_location(root.path(), &storage);
    let source = unique("age-src");
    create_unexpiring_topic(&bootstrap, &source, 2).await;
    let now = chrono::Utc::now().timestamp_millis();
    let old = records_for(2, 30, now - 30 * 86_400_000);
    produce(&bootstrap, &source, &old).await;
    let spec = |id: &str, retention: Value| {
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": storage, "backupId": id, "retention": retention})
    };

    // An older set holding only the old records, and the current set's first segments.
    let (old_set, current) = (unique("age-old"), unique("age-cur"));
    for id in [&old_set, &current] {
        let status = run_backup(root.path(), "age", spec(id, Value::Null)).await;
        assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    }
    let young = records_for(2, 10, now - 60_000);
    produce(&bootstrap, &source, &young).await;

    // Dry run: two old segments (one per partition) and the old set reported, nothing deleted.
    let status = run_backup(
        root.path(),
        "age",
        spec(&current, json!({"maxAgeDays": 10, "dryRun": true})),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let retention = status.retention.unwrap();
    assert_eq!(retention.error, None);
    // Sets: the current and the old one; segments: two per partition of the current set.
    assert_eq!(
        (
            retention.inspected,
            retention.eligible,
            retention.deleted,
            retention.dry_run
        ),
        (Some(2 + 4), Some(3), Some(0), Some(true)),
        "{retention:?}"
    );
    let would_free = retention.reclaimed_bytes.unwrap();
    assert!(would_free > 0);
    let manifest = read_manifest(&location, &current).await.unwrap().unwrap();
    let segments = |m: &kafka_backup_operator::storage::backup::Manifest| -> usize {
        m.topics
            .values()
            .flat_map(|t| t.partitions.values())
            .map(|p| p.segments.len())
            .sum()
    };
    assert_eq!(segments(&manifest), 4);
    assert!(read_manifest(&location, &old_set).await.unwrap().is_some());
    assert_consistent(&location, &current).await;

    // The real pass.
    let status = run_backup(root.path(), "age", spec(&current, json!({"maxAgeDays": 10}))).await;
    let retention = status.retention.unwrap();
    assert_eq!(retention.error, None);
    assert_eq!(
        (retention.inspected, retention.eligible, retention.deleted),
        (Some(6), Some(3), Some(3)),
        "{retention:?}"
    );
    assert!(
        retention.reclaimed_bytes.unwrap() >= would_free,
        "{retention:?} vs {would_free}"
    );
    assert!(read_manifest(&location, &old_set).await.unwrap().is_none());
    assert!(location.list(&set_dir(&old_set)).await.unwrap().is_empty());
    let manifest = read_manifest(&location, &current).await.unwrap().unwrap();
    assert_eq!(segments(&manifest), 2, "the last segment of each partition stays");
    assert_consistent(&location, &current).await;
    let (sets, _) = list_backup_sets(&location).await.unwrap();
    let summary = sets.iter().find(|s| s.backup_id == current).unwrap();
    assert_eq!(summary.records, young.len() as u64);
    assert_eq!(
        summary.first_record_time.unwrap().timestamp_millis(),
        now - 60_000
    );
    assert_same(
        &restored(root.path(), &bootstrap, &storage, &current, &source, 2).await,
        &by_partition(&young),
    );

    // The next run continues the set where it was: nothing is backed up twice.
    let status = run_backup(root.path(), "age", spec(&current, json!({"maxAgeDays": 10}))).await;
    assert_eq!(status.progress.unwrap().records, Some(0));
    assert_eq!(status.retention.unwrap().deleted, Some(0));
}

/// A new 4-partition topic with `count` test records per partition, backed up to the PVC: its
/// name, its records and the set's id.
async fn backed_up_topic(
    bootstrap: &str,
    root: &Path,
    prefix: &str,
    count: i64,
) -> (String, Vec<Rec>, String) {
    let source = unique(&format!("{prefix}-src"));
    create_topic(bootstrap, &source, 4).await;
    let records = records_for(4, count, 1_700_000_000_000);
    produce(bootstrap, &source, &records).await;
    let id = unique(&format!("{prefix}-set"));
    let status = run_backup(
        root,
        prefix,
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "consumerGroupSnapshot": false}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    (source, records, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acks_setting_restores_each_record_once_and_broker_refusals_are_named() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let (source, records, id) = backed_up_topic(&bootstrap, root.path(), "acks", 400).await;

    // Batches of 7 records: many requests per partition in flight at once, each batch with the
    // sequence number where the one before it ended.
    for acks in ["All", "Leader", "None"] {
        let target = unique("acks-dst");
        let status = run_restore(
            root.path(),
            &unique("r"),
            json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
                "kafkaCluster": {"bootstrapServers": [bootstrap]},
                "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
                "produce": {"acks": acks, "batchSize": 7}}),
        )
        .await;
        assert_eq!(status.phase, Some(Phase::Completed), "acks {acks}: {status:?}");
        assert_eq!(status.records_restored, Some(records.len() as i64), "acks {acks}");
        assert_same(&consume_all(&bootstrap, &target, 4), &by_partition(&records));
    }

    // Targets with a small max.message.bytes: batches are cut to fit, and a record that fits
    // no batch is the broker's refusal, named with the partition; the restore fails instead of
    // reporting records it did not write.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for (limit, fits) in [("2000", true), ("100", false)] {
        let target = unique("acks-small");
        let new = NewTopic::new(&target, 4, TopicReplication::Fixed(1)).set("max.message.bytes", limit);
        for r in admin.create_topics(&[new], &AdminOptions::new()).await.unwrap() {
            r.unwrap();
        }
        let status = run_restore(
            root.path(),
            &unique("r"),
            json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
                "kafkaCluster": {"bootstrapServers": [bootstrap]},
                "topicMapping": {source.clone(): target}}),
        )
        .await;
        if fits {
            assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
            assert_same(&consume_all(&bootstrap, &target, 4), &by_partition(&records));
            continue;
        }
        assert_eq!(status.phase, Some(Phase::Failed), "{status:?}");
        let message = status.message.unwrap_or_default();
        assert!(
            message.contains("producing to the target cluster failed")
                && message.contains(&format!("{target}-"))
                && message.contains("MessageTooLarge (Kafka error code 10)")
                && message.contains("run the restore again"),
            "{message}"
        );
    }
}

/// Produce connections cut in the middle of requests cost nothing: the batches that came back
/// are sent again with their sequence numbers, on new connections, and each record lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cut_produce_connections_are_resumed_without_loss_or_duplicate() {
    let Some(bootstrap) = broker() else { return };
    let Some(nisshi) = service("KBO_TEST_NISSHI_BIN") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (source, records, id) = backed_up_topic(&bootstrap, root.path(), "cut", 2500).await;

    let (_broker, through_proxy, stats, proxying) = proxied_broker(&nisshi, root.path(), Some(150_000)).await;

    let target = unique("cut-dst");
    let status = run_restore(
        root.path(),
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [through_proxy]},
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
            "produce": {"batchSize": 50}}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(status.records_restored, Some(records.len() as i64));
    let cuts = stats.cuts.load(Ordering::Relaxed);
    assert!(cuts >= 2, "the proxy cut {cuts} connections");
    assert_same(&consume_all(&through_proxy, &target, 4), &by_partition(&records));
    proxying.abort();
}

/// The producer opens 4 connections to a leader, or as many as `connectionsPerBroker` says: the
/// connections that carried the records are counted at a proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_per_broker_sets_the_producers_connections() {
    let Some(bootstrap) = broker() else { return };
    let Some(nisshi) = service("KBO_TEST_NISSHI_BIN") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (source, records, id) = backed_up_topic(&bootstrap, root.path(), "lanes", 2500).await;
    for (connection, expected) in [(json!({}), 4), (json!({"connectionsPerBroker": 1}), 1)] {
        let (_broker, through_proxy, stats, proxying) = proxied_broker(&nisshi, root.path(), None).await;
        let status = run_restore(
            root.path(),
            &unique("r"),
            json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
                "kafkaCluster": {"bootstrapServers": [through_proxy], "connection": connection},
                "topicMapping": {source.clone(): unique("lanes-dst")}, "createTopics": {"enabled": true}}),
        )
        .await;
        assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
        assert_eq!(status.records_restored, Some(records.len() as i64));
        // Each partition's records are about 170 kB; nothing else sends 1 kB.
        let sent = stats.sent.lock().unwrap().clone();
        let carriers = sent.iter().filter(|n| **n > 100_000).count();
        assert_eq!(carriers, expected, "bytes sent per connection: {sent:?}");
        proxying.abort();
    }
}

/// A context whose progress sink keeps every status an operation reports while it runs.
fn recording_ctx(root: &Path, name: &str) -> (Context, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let mut ctx = ctx(root, name);
    let sink = seen.clone();
    ctx.progress = Arc::new(move |p| {
        if let Some(status) = p.status {
            sink.lock().unwrap().push(status);
        }
    });
    (ctx, seen)
}

/// Waits (a minute at most) until a reported status satisfies `until`; that status.
async fn wait_for_status(seen: &Mutex<Vec<Value>>, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        if let Some(s) = seen.lock().unwrap().iter().find(|s| until(s)) {
            return s.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no status reported {what}: {:?}",
            seen.lock().unwrap().last()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn int(status: &Value, pointer: &str) -> i64 {
    status
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{pointer} missing in {status}"))
}

/// `snapshotBeforeRestore` takes its snapshot also when the restore moves no group: the groups
/// with committed offsets on the target topics are in it, and status names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_snapshot_before_a_restore_holds_the_groups_of_the_target_topics() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let (source, _, id) = backed_up_topic(&bootstrap, root.path(), "snapr", 30).await;
    // The target holds records a group has consumed part of.
    let target = unique("snapr-dst");
    create_topic(&bootstrap, &target, 4).await;
    produce(&bootstrap, &target, &records_for(4, 12, 1_700_000_000_000)).await;
    let group = unique("snapr-grp");
    commit_offsets(&bootstrap, &group, &target, &[(0, 7), (1, 3), (3, 12)]);
    let snapshots = json!({"type": "PVC", "pvc": {"claimName": "snapshots"}});
    let status = run_restore(
        root.path(),
        &unique("r"),
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target}, "purgeTopics": true,
            "snapshotBeforeRestore": {"storage": snapshots}}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    let named = status.snapshot.clone().expect("status names the snapshot");
    let snapshot_id = named.snapshot_id.unwrap();
    assert!(named.location.unwrap().ends_with(&snapshot_key(&snapshot_id)));
    let location = open_location(root.path(), &snapshots);
    let bytes = location.get(&snapshot_key(&snapshot_id)).await.unwrap().unwrap();
    let snapshot = OffsetSnapshot::parse(&bytes, &snapshot_id, "test").unwrap();
    let offsets: Vec<(String, i32, i64)> = snapshot.groups[&group]
        .committed()
        .into_iter()
        .map(|((t, p), c)| (t, p, c.offset))
        .collect();
    assert_eq!(
        offsets,
        vec![
            (target.clone(), 0, 7),
            (target.clone(), 1, 3),
            (target.clone(), 3, 12)
        ]
    );
    let message = status.message.unwrap();
    assert!(
        message.contains(&format!("snapshot {snapshot_id}")) && message.contains(&group),
        "{message}"
    );
}

/// What a dry run plans for the groups is what the restore then commits, for every strategy of
/// `offsetReset` and for `autoConsumerGroups`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dry_run_plans_the_offsets_the_restore_commits_for_every_strategy() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("plan-src");
    create_topic(&bootstrap, &source, 2).await;
    let base = 1_700_000_000_000;
    produce(&bootstrap, &source, &records_for(2, 60, base)).await;
    let group = unique("plan-grp");
    commit_offsets(&bootstrap, &group, &source, &[(0, 17), (1, 25)]);
    let id = unique("plan");
    let status = run_backup(
        root.path(),
        "plan",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "consumerGroupSnapshot": true}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    // Records 0..5 of each partition are outside the window: offsets differ from the source's.
    let start = chrono::DateTime::from_timestamp_millis(base + 5_000)
        .unwrap()
        .to_rfc3339();
    let at = chrono::DateTime::from_timestamp_millis(base + 30_500)
        .unwrap()
        .to_rfc3339();
    let cases = [
        (
            "Earliest",
            json!({"offsetReset": {"consumerGroups": [group], "strategy": "Earliest"}}),
        ),
        (
            "Latest",
            json!({"offsetReset": {"consumerGroups": [group], "strategy": "Latest"}}),
        ),
        (
            "Timestamp",
            json!({"offsetReset": {"consumerGroups": [group], "strategy": "Timestamp", "timestamp": at}}),
        ),
        (
            "HeaderBased",
            json!({"offsetReset": {"consumerGroups": [group], "strategy": "HeaderBased"}}),
        ),
        ("autoConsumerGroups", json!({"autoConsumerGroups": true})),
    ];
    let mut seen = Vec::new();
    for (case, groups) in cases {
        let target = unique("plan-dst");
        let mut spec = json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
            "pitr": {"startTime": start}});
        for (k, v) in groups.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec["dryRun"] = json!(true);
        let dry = run_restore(root.path(), &unique("r"), spec.clone()).await;
        assert_eq!(dry.phase, Some(Phase::Completed), "{case}: {dry:?}");
        let planned: Vec<(i32, i64)> = dry.plan.unwrap().group_offsets.unwrap()[0]
            .offsets
            .iter()
            .flatten()
            .map(|o| {
                assert_eq!(o.topic, target, "{case}");
                (o.partition, o.offset)
            })
            .collect();
        spec["dryRun"] = json!(false);
        let run = run_restore(root.path(), &unique("r"), spec).await;
        assert_eq!(run.phase, Some(Phase::Completed), "{case}: {run:?}");
        assert_eq!(
            committed_offsets(&bootstrap, &group, &target, 2),
            planned,
            "{case}: the offsets committed are the ones the dry run planned"
        );
        seen.push((case, planned));
    }
    // The figures themselves: 55 records per partition from source offset 5 on.
    assert_eq!(
        seen,
        vec![
            ("Earliest", vec![(0, 0), (1, 0)]),
            ("Latest", vec![(0, 55), (1, 55)]),
            ("Timestamp", vec![(0, 26), (1, 26)]),
            ("HeaderBased", vec![(0, 12), (1, 20)]),
            ("autoConsumerGroups", vec![(0, 12), (1, 20)]),
        ]
    );
}

/// A backup and the restore of its set count the same bytes for the same records: keys, values
/// and headers, whatever the backup stored besides (framing, tracking headers, compression).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_and_restore_count_the_same_bytes_for_the_same_records() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("bytes-src");
    create_topic(&bootstrap, &source, 3).await;
    let records = records_for(3, 400, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let expected = record_bytes(&records);
    let id = unique("bytes");
    let backup = run_backup(
        root.path(),
        "bytes",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "includeOffsetHeaders": true,
            "sourceClusterId": "prod"}),
    )
    .await;
    assert_eq!(backup.phase, Some(RunPhase::Completed), "{backup:?}");
    let progress = backup.progress.unwrap();
    assert_eq!(
        (progress.records, progress.bytes),
        (Some(records.len() as i64), Some(expected))
    );
    assert_eq!(backup.last_run.unwrap().bytes, Some(expected));
    let manifest = read_manifest(&open_location(root.path(), &pvc_storage()), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.runs[0].bytes, expected as u64);

    let spec = |dry: bool| {
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): unique("bytes-dst")}, "createTopics": {"enabled": true},
            "includeOriginalOffsetHeaders": true, "dryRun": dry})
    };
    let dry = run_restore(root.path(), &unique("r"), spec(true)).await;
    assert_eq!(dry.plan.unwrap().bytes, Some(expected));
    let restore = run_restore(root.path(), &unique("r"), spec(false)).await;
    assert_eq!(restore.phase, Some(Phase::Completed), "{restore:?}");
    assert_eq!(
        (restore.records_restored, restore.bytes_restored),
        (Some(records.len() as i64), Some(expected))
    );
}

/// While a restore writes, its progress reports carry the status documented in the CRD: the
/// topic being restored, records, bytes, segments, per-topic counts, throughput, time left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_reports_its_status_while_it_runs() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let (source, records, id) = backed_up_topic(&bootstrap, root.path(), "live", 1000).await;
    let total = records.len() as i64;
    let target = unique("live-dst");
    // 1000 records a second: the restore takes at least 4 s, a report every second.
    let restore = restore_resource(
        "live",
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target}, "createTopics": {"enabled": true},
            "rateLimiting": {"recordsPerSec": 1000}}),
    );
    let (ctx, seen) = recording_ctx(root.path(), "live");
    let status = restore::execute(&restore, &ctx).await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(status.records_restored, Some(total));
    assert_eq!(status.current_topic, None, "nothing is restored any more");

    let seen = seen.lock().unwrap().clone();
    let mid_run: Vec<&Value> = seen
        .iter()
        .filter(|s| (1..total).contains(&s["recordsRestored"].as_i64().unwrap_or(0)))
        .collect();
    assert!(mid_run.len() >= 2, "reports while records were written: {seen:?}");
    let mut previous = 0;
    for s in &mid_run {
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["backupId"], json!(id));
        assert!(s["startTime"].is_string(), "{s}");
        assert_eq!(s["currentTopic"], json!(source), "{s}");
        let records = int(s, "/recordsRestored");
        assert!(records >= previous, "{s}");
        previous = records;
        assert!(int(s, "/bytesRestored") > 0, "{s}");
        assert!(int(s, "/segmentsProcessed") >= 1, "{s}");
        // Read a moment after recordsRestored.
        assert!(
            (records..=total).contains(&int(s, "/restoredTopics/0/records")),
            "{s}"
        );
        let percent = s["progressPercent"].as_f64().unwrap();
        assert!(
            (percent - records as f64 * 100.0 / total as f64).abs() <= 0.1,
            "{s}"
        );
        assert!(percent < 100.0, "{s}");
        assert!(s["throughput"]["recordsPerSecond"].is_number(), "{s}");
    }
    // With records written since the report before, the rate and the time left at it.
    assert!(
        mid_run.iter().any(|s| {
            s["throughput"]["recordsPerSecond"].as_f64() > Some(0.0)
                && s["throughput"]["bytesPerSecond"].as_f64() > Some(0.0)
                && s["etaSeconds"].as_i64() >= Some(1)
        }),
        "{mid_run:?}"
    );
}

/// A continuous backup, which never finishes, shows its set, its checkpoints, that it can
/// resume, its counters (bytes and segments too) and its run so far while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_continuous_backup_reports_its_status_while_it_runs() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("cont-src");
    create_topic(&bootstrap, &source, 2).await;
    let mut records = records_for(2, 200, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let id = unique("cont");
    let backup = backup_resource(
        "cont",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "continuous": true,
            "segmentMaxIntervalMs": 300, "checkpoint": {"intervalSeconds": 1}}),
    );
    let (ctx, seen) = recording_ctx(root.path(), "cont");
    let cancel = ctx.cancel.clone();
    let running = tokio::spawn(async move { backup::execute(&backup, &ctx).await });

    let first = wait_for_status(&seen, "at all", |_| true).await;
    assert_eq!(
        first["backupId"],
        json!(id),
        "the set is named from the first report: {first}"
    );
    for round in 0..2 {
        if round == 1 {
            let more = records_for(2, 50, 1_700_001_000_000);
            produce(&bootstrap, &source, &more).await;
            records.extend(more);
        }
        let n = records.len() as i64;
        let bytes = record_bytes(&records);
        let checkpoint_before = seen
            .lock()
            .unwrap()
            .last()
            .and_then(|s| s["lastCheckpointTime"].as_str().map(str::to_owned));
        // Everything so far is stored, a checkpoint lists it.
        let s = wait_for_status(&seen, &format!("with {n} records checkpointed"), |s| {
            s.pointer("/progress/records").and_then(Value::as_i64) == Some(n)
                && s["lastCheckpointTime"].as_str().map(str::to_owned) != checkpoint_before
                && s.pointer("/progress/segments").and_then(Value::as_i64) >= Some(2)
        })
        .await;
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["backupId"], json!(id));
        assert_eq!(s["resumable"], json!(true), "{s}");
        let progress = &s["progress"];
        assert_eq!(int(progress, "/bytes"), bytes, "{s}");
        assert_eq!(int(progress, "/partitionsTotal"), 2, "{s}");
        assert_eq!(int(progress, "/partitionsDone"), 2, "caught up: {s}");
        assert!(progress["recordsPerSecond"].is_number() && progress["bytesPerSecond"].is_number());
        let last_run = &s["lastRun"];
        assert_eq!(
            (int(last_run, "/records"), int(last_run, "/bytes")),
            (n, bytes),
            "{s}"
        );
        assert!(
            last_run["startTime"].is_string() && last_run["completionTime"].is_null(),
            "{s}"
        );
        assert!(last_run["outcome"].is_null(), "{s}");
    }
    cancel.cancel();
    let status = running.await.unwrap();
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let progress = status.progress.unwrap();
    assert_eq!(progress.records, Some(records.len() as i64));
    assert_eq!(progress.partitions_done, Some(2));
}

/// A one-shot backup cancelled half way counts as done only the partitions it finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_backup_counts_only_the_partitions_it_finished() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("half-src");
    create_topic(&bootstrap, &source, 4).await;
    let records = records_for(4, 400, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let backup = backup_resource(
        "half",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": unique("half"), "stopAtCurrentOffsets": true,
            "rateLimiting": {"recordsPerSec": 100, "maxConcurrentPartitions": 1}}),
    );
    let (ctx, seen) = recording_ctx(root.path(), "half");
    let cancel = ctx.cancel.clone();
    let running = tokio::spawn(async move { backup::execute(&backup, &ctx).await });
    // A report every ~100 records: one while the second partition is copied, the first done.
    let s = wait_for_status(&seen, "half way", |s| {
        (450..750).contains(
            &s.pointer("/progress/records")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        )
    })
    .await;
    assert_eq!(int(&s["progress"], "/partitionsDone"), 1, "{s}");
    cancel.cancel();
    let status = running.await.unwrap();
    assert_eq!(status.phase, Some(RunPhase::Failed), "{status:?}");
    assert_eq!(status.resumable, Some(true));
    let progress = status.progress.unwrap();
    assert!(progress.records.unwrap() < records.len() as i64, "{progress:?}");
    assert_eq!(progress.partitions_total, Some(4));
    assert!(progress.partitions_done.unwrap() < 4, "{progress:?}");
}

/// A one-shot backup to PVC storage that checkpoints every second and stops at the offsets
/// captured when it started, at most `records_per_sec` (per process) when given.
fn resumable_backup(bootstrap: &str, source: &str, id: &str, records_per_sec: Option<i64>) -> Value {
    let mut s = json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
        "storage": pvc_storage(), "backupId": id, "segmentMaxBytes": 1_048_576,
        "segmentMaxIntervalMs": 1000, "checkpoint": {"intervalSeconds": 1},
        "stopAtCurrentOffsets": true, "compression": "None"});
    if let Some(l) = records_per_sec {
        s["rateLimiting"] = json!({"recordsPerSec": l});
    }
    s
}

/// A Secrets directory for `run -f` holding Secret `s3` (SeaweedFS's credentials).
fn secrets_dir(root: &Path) -> std::path::PathBuf {
    let dir = root.join("secrets");
    std::fs::create_dir_all(dir.join("s3")).unwrap();
    std::fs::write(dir.join("s3/AWS_ACCESS_KEY_ID"), "test").unwrap();
    std::fs::write(dir.join("s3/AWS_SECRET_ACCESS_KEY"), "test").unwrap();
    dir
}

/// `run -f FILE --workers N` (or `worker -f FILE --shard-index I --shards N`) of the binary.
fn sharded(command: &str, file: &Path, root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"));
    c.args([command, "-f"])
        .arg(file)
        .arg("--pvc-root")
        .arg(root)
        .arg("--secrets-dir")
        .arg(secrets_dir(root))
        .args(args);
    c
}

/// Runs a command to its end: whether it succeeded, the printed status, stderr.
fn status_of(mut command: Command) -> (bool, Value, String) {
    let out = command.output().unwrap();
    let doc: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap_or(Value::Null);
    (
        out.status.success(),
        doc["status"].clone(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_split_over_four_workers_is_one_complete_set_that_restores_exactly() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("workers-src");
    create_topic(&bootstrap, &source, 8).await;
    // Uneven partitions, so the shards are balanced by weight rather than by count.
    let mut records = records_for(8, 400, 1_700_000_000_000);
    records.extend(records_for(2, 1500, 1_700_100_000_000));
    produce(&bootstrap, &source, &records).await;
    let mut storages = vec![pvc_storage()];
    storages.extend(s3_storage(&unique("workers")));
    for storage in storages {
        let id = unique("workers");
        let file = write_run_manifest(
            root.path(),
            "KafkaBackup",
            "split",
            json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
                "storage": storage, "backupId": id, "segmentMaxBytes": 1_048_576,
                "checkpoint": {"intervalSeconds": 1}, "compression": "Zstd"}),
        );
        let (ok, status, stderr) = status_of(sharded("run", &file, root.path(), &["--workers", "4"]));
        assert!(ok, "{status}\n{stderr}");
        assert_eq!(status["phase"], "Completed", "{status}");
        assert_eq!(status["progress"]["records"], records.len() as i64, "{status}");
        assert_eq!(status["progress"]["partitionsDone"], 8, "{status}");
        assert_eq!(status["progress"]["bytes"], record_bytes(&records), "{status}");
        assert!(
            status["message"].as_str().unwrap().ends_with("by 4 workers"),
            "{status}"
        );
        for shard in 0..4 {
            assert!(
                stderr.contains(&format!("shard {shard} of 4: worker process"))
                    && stderr.contains(&format!("shard {shard} of 4: Completed")),
                "shard {shard} not reported: {stderr}"
            );
        }
        let location = open_location(root.path(), &storage);
        let manifest = read_manifest(&location, &id).await.unwrap().unwrap();
        assert_eq!(manifest.state, SetState::Complete);
        assert_eq!(manifest.current_run, None);
        assert_eq!(manifest.runs.len(), 1);
        assert_eq!(manifest.runs[0].records, records.len() as u64);
        assert_consistent(&location, &id).await;
        // The shards' results are merged and gone: the manifest is the set's one index.
        let left = location.list(&format!("{}/shards", set_dir(&id))).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        let got = restored(root.path(), &bootstrap, &storage, &id, &source, 8).await;
        assert_same(&got, &by_partition(&records));
    }
}

/// Runs `coordinator` (`run -f --workers 4`), SIGKILLs the worker of shard `shard` 3 s after all
/// four started (their pids as the coordinator prints them), and waits for the coordinator: its
/// output and stderr.
fn kill_one_worker(mut coordinator: Command, shard: usize) -> (std::process::Output, String) {
    let mut coordinator = coordinator
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (pid_tx, pid_rx) = std::sync::mpsc::channel::<(usize, u32)>();
    let stderr = coordinator.stderr.take().unwrap();
    let collected = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("shard ")
                && let Some((index, pid)) = rest.split_once(" of 4: worker process ")
            {
                let _ = pid_tx.send((index.parse().unwrap(), pid.trim().parse().unwrap()));
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let mut pids = BTreeMap::new();
    while pids.len() < 4 {
        let Ok((index, pid)) = pid_rx.recv_timeout(Duration::from_secs(30)) else {
            panic!("the workers did not start: {}", collected.join().unwrap());
        };
        pids.insert(index, pid);
    }
    std::thread::sleep(Duration::from_secs(3));
    let killed = Command::new("kill")
        .args(["-9", &pids[&shard].to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "shard {shard}'s worker had ended already");
    let out = coordinator.wait_with_output().unwrap();
    (out, collected.join().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_worker_run_again_completes_its_shard_without_loss_or_duplicate() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("killw-src");
    create_topic(&bootstrap, &source, 8).await;
    let first = records_for(8, 2000, 1_700_000_000_000);
    produce(&bootstrap, &source, &first).await;
    let id = unique("killw");
    let spec = |limit| resumable_backup(&bootstrap, &source, &id, limit);
    // Per worker: 4000 records of its two partitions take each worker about 8 s.
    let slow = write_run_manifest(root.path(), "KafkaBackup", "killw-slow", spec(Some(500)));
    let (out, stderr) = kill_one_worker(sharded("run", &slow, root.path(), &["--workers", "4"]), 1);
    let location = open_location(root.path(), &pvc_storage());
    assert!(
        !out.status.success(),
        "the run with a killed worker succeeded: {stderr}"
    );
    let status: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let message = status["status"]["message"].as_str().unwrap().to_owned();
    assert_eq!(status["status"]["phase"], "Failed", "{status}");
    assert!(
        message.starts_with("shard 1 of 4: did not finish") && message.contains("signal: 9"),
        "{message}"
    );
    // No Complete manifest without every shard.
    let manifest = read_manifest(&location, &id).await.unwrap().unwrap();
    assert_eq!(manifest.state, SetState::InProgress);

    // Records produced now are beyond the stop offsets the coordinator captured.
    let later = records_for(8, 10, 1_700_100_000_000);
    produce(&bootstrap, &source, &later).await;
    let fast = write_run_manifest(root.path(), "KafkaBackup", "killw-fast", spec(None));
    // As an Indexed Job's pod runs it: the index from JOB_COMPLETION_INDEX.
    let mut worker = sharded("worker", &fast, root.path(), &["--shards", "4"]);
    worker.env("JOB_COMPLETION_INDEX", "1");
    let (ok, shard, stderr) = status_of(worker);
    assert!(ok, "{shard}\n{stderr}");
    assert_eq!(shard["phase"], "Completed", "{shard}");
    assert!(
        shard["message"].as_str().unwrap().contains("by shard 1 of 4"),
        "{shard}"
    );
    // A worker never completes the set itself.
    let manifest = read_manifest(&location, &id).await.unwrap().unwrap();
    assert_eq!(manifest.state, SetState::InProgress);

    // The coordinator again: the other shards are complete already, the merge makes the set.
    let (ok, status, stderr) = status_of(sharded("run", &fast, root.path(), &["--workers", "4"]));
    assert!(ok, "{status}\n{stderr}");
    assert_eq!(status["phase"], "Completed", "{status}");
    let manifest = read_manifest(&location, &id).await.unwrap().unwrap();
    assert_eq!(manifest.state, SetState::Complete);
    for (p, entry) in &manifest.topics[&source].partitions {
        let records: u64 = entry.segments.iter().map(|s| s.records).sum();
        assert_eq!(records, 2000, "partition {p}: stops at the captured end");
        assert_eq!(entry.next_offset, 2000, "partition {p}");
    }
    assert_consistent(&location, &id).await;
    let left = location.list(&format!("{}/shards", set_dir(&id))).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    let got = restored(root.path(), &bootstrap, &pvc_storage(), &id, &source, 8).await;
    assert_same(&got, &by_partition(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_split_over_four_workers_into_a_fresh_topic_is_exact() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("restw-src");
    create_topic(&bootstrap, &source, 8).await;
    let mut records = records_for(8, 300, 1_700_000_000_000);
    records.extend(records_for(3, 900, 1_700_100_000_000));
    produce(&bootstrap, &source, &records).await;
    let id = unique("restw");
    let group = unique("restw-group");
    commit_offsets(&bootstrap, &group, &source, &[(0, 100), (5, 300)]);
    let status = run_backup(
        root.path(),
        "restw",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "consumerGroupSnapshot": true}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let target = unique("restw-dst");
    let file = write_run_manifest(
        root.path(),
        "KafkaRestore",
        "restw-r",
        json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target.clone()}, "createTopics": {"enabled": true},
            "offsetReset": {"strategy": "HeaderBased", "consumerGroups": [group]}}),
    );
    let (ok, status, stderr) = status_of(sharded("run", &file, root.path(), &["--workers", "4"]));
    assert!(ok, "{status}\n{stderr}");
    assert_eq!(status["phase"], "Completed", "{status}");
    assert_eq!(status["recordsRestored"], records.len() as i64, "{status}");
    assert_eq!(status["bytesRestored"], record_bytes(&records), "{status}");
    for shard in 0..4 {
        assert!(
            stderr.contains(&format!(
                "shard {shard} of 4: Completed: shard {shard} of 4: restored"
            )),
            "shard {shard} not reported: {stderr}"
        );
    }
    assert_same(&consume_all(&bootstrap, &target, 8), &by_partition(&records));
    // The offset mapping covers every shard's partitions: the group lands where it was.
    assert_eq!(
        committed_offsets(&bootstrap, &group, &target, 8),
        vec![(0, 100), (5, 300)]
    );
    // Run again: completed, nothing written twice.
    let (ok, again, stderr) = status_of(sharded("run", &file, root.path(), &["--workers", "4"]));
    assert!(ok, "{again}\n{stderr}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .starts_with("already completed"),
        "{again}"
    );
    assert_same(&consume_all(&bootstrap, &target, 8), &by_partition(&records));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_options_are_checked_and_name_what_is_wrong() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("wopt-src");
    create_topic(&bootstrap, &source, 2).await;
    let id = unique("wopt");
    let backup = write_run_manifest(
        root.path(),
        "KafkaBackup",
        "wopt",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id}),
    );
    let refused = |command: Command| {
        let (ok, _, stderr) = status_of(command);
        assert!(!ok, "{stderr}");
        stderr
    };
    let e = refused(sharded(
        "worker",
        &backup,
        root.path(),
        &["--shard-index", "4", "--shards", "4"],
    ));
    assert!(e.contains("--shard-index 4 is not a shard of 4 (0 to 3)"), "{e}");
    // No coordinator planned this set: the worker says who must.
    let (ok, status, stderr) = status_of(sharded(
        "worker",
        &backup,
        root.path(),
        &["--shard-index", "0", "--shards", "2"],
    ));
    assert!(!ok, "{stderr}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "--shard-index: backup set {id} has no run split into shards in progress"
        )),
        "{message}"
    );
    let continuous = write_run_manifest(
        root.path(),
        "KafkaBackup",
        "wopt-cont",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": unique("wopt-c"), "continuous": true}),
    );
    let (ok, status, stderr) = status_of(sharded("run", &continuous, root.path(), &["--workers", "2"]));
    assert!(!ok, "{stderr}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("spec.continuous: a continuous backup follows its partitions in one process"),
        "{status}"
    );
    let reset = write_run_manifest(
        root.path(),
        "KafkaOffsetReset",
        "wopt-reset",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": ["g"],
            "topics": [{"name": source}], "strategy": "Earliest"}),
    );
    let e = refused(sharded("run", &reset, root.path(), &["--workers", "2"]));
    assert!(
        e.contains("--workers: KafkaOffsetReset runs in one process"),
        "{e}"
    );
    let e = refused(sharded("run", &backup, root.path(), &["--workers", "0"]));
    assert!(e.contains("--workers"), "{e}");
    // A split runs one resource: several in the files are refused before anything runs.
    let both = root.path().join("both.yaml");
    let text = |p: &Path| std::fs::read_to_string(p).unwrap();
    std::fs::write(&both, format!("{}\n---\n{}", text(&backup), text(&reset))).unwrap();
    let e = refused(sharded("run", &both, root.path(), &["--workers", "2"]));
    assert!(e.contains("--workers: 2 resources given"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_restore_worker_run_again_leaves_each_record_once() {
    let Some(bootstrap) = broker() else { return };
    let root = tempfile::tempdir().unwrap();
    let source = unique("krw-src");
    create_topic(&bootstrap, &source, 8).await;
    let records = records_for(8, 2000, 1_700_000_000_000);
    produce(&bootstrap, &source, &records).await;
    let id = unique("krw");
    let status = run_backup(
        root.path(),
        "krw",
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": pvc_storage(), "backupId": id, "compression": "None"}),
    )
    .await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    let target = unique("krw-dst");
    // The restore's state is named after the resource: both runs are the same restore.
    let spec = |limit: Option<i64>| {
        let mut s = json!({"backupRef": {"backupId": id, "storage": pvc_storage()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {source.clone(): target.clone()}, "createTopics": {"enabled": true},
            "produce": {"batchSize": 100}});
        if let Some(l) = limit {
            // Per worker: 4000 records of its two partitions take each worker about 8 s.
            s["rateLimiting"] = json!({"recordsPerSec": l});
        }
        s
    };
    let slow = write_run_manifest(root.path(), "KafkaRestore", "krw-r", spec(Some(500)));
    let (out, stderr) = kill_one_worker(sharded("run", &slow, root.path(), &["--workers", "4"]), 2);
    assert!(!out.status.success(), "{stderr}");
    let status: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let message = status["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("shard 2 of 4: stored no result: its worker did not finish")
            && message.contains("signal: 9"),
        "{message}"
    );
    let fast = write_run_manifest(root.path(), "KafkaRestore", "krw-r", spec(None));
    let (ok, status, stderr) = status_of(sharded("run", &fast, root.path(), &["--workers", "4"]));
    assert!(ok, "{status}\n{stderr}");
    assert_eq!(status["recordsRestored"], records.len() as i64, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("were already written by an interrupted attempt"),
        "{status}"
    );
    assert_same(&consume_all(&bootstrap, &target, 8), &by_partition(&records));
}
