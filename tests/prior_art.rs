//! Reading what the prior art (OSO kafka-backup 0.x) stored, read only, everywhere a backup set or
//! offset snapshot is read: KafkaRestore (record for record against the broker, read back with
//! plain rdkafka), KafkaBackupValidation (integrity, named segments), KafkaOffsetRollback, the
//! catalog's sources and `import --dry-run`, and KafkaBackup refusing to continue such a set.
//!
//! Two kinds of fixtures: sets written here by [`kbak`], an encoder of the documented layout
//! written independently of the reader (its own CRC-32), and the real sets the prior art's CLI
//! 0.17.4 wrote (`tests/fixtures/prior-art/`, whose `source-records.jsonl` is the truth a restore is
//! compared with).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use base64::Engine;
use kafka_backup_operator::{
    api::v1beta1::{
        CheckOutcome, KafkaBackup, KafkaBackupValidation, KafkaBackupValidationStatus, KafkaOffsetRollback,
        KafkaOffsetRollbackStatus, KafkaRestore, KafkaRestoreStatus, Phase, RunPhase,
    },
    apiserver::sources::{BackupSetSource, SnapshotStore, StorageSource},
    ops::{Context, ResourceRef, backup, offset_rollback, restore, validation},
    secrets::SecretStore,
    storage::{
        Location, StorageEnv,
        backup::SetState,
        backup_set::{self, SetFormat},
        prior_art,
        snapshot::read_snapshot,
    },
};
use object_store::{ObjectStoreExt, PutPayload, aws::AmazonS3Builder, path::Path as StorePath};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    message::Headers,
    producer::{FutureProducer, FutureRecord, Producer},
};
use serde_json::{Value, json};
use support::{copy_dir, create_topic, files_below, service, start_broker, unique};

/// The real sets, as the prior art's CLI wrote them.
const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/prior-art");
/// Its offset snapshot.
const REAL_SNAPSHOT: &str = "snap-1796651891106-8e61874d";

/// An encoder of the prior art's layout, byte for byte as `src/storage/prior_art/mod.rs` documents
/// it, independent of the reader (its own CRC-32).
mod kbak {
    /// A record to encode.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Rec {
        pub offset: i64,
        pub timestamp: i64,
        pub key: Option<Vec<u8>>,
        pub value: Option<Vec<u8>>,
        pub headers: Vec<(String, Option<Vec<u8>>)>,
    }

    /// CRC-32 (IEEE, reflected, polynomial 0xEDB88320), bit by bit.
    pub fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn put_bytes(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
        match b {
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as i32).to_le_bytes());
                out.extend_from_slice(b);
            }
        }
    }

    /// `length u32 | timestamp i64 | offset i64 | key | value | header count u16 | headers`.
    pub fn record(r: &Rec) -> Vec<u8> {
        let mut rest = Vec::new();
        rest.extend_from_slice(&r.timestamp.to_le_bytes());
        rest.extend_from_slice(&r.offset.to_le_bytes());
        put_bytes(&mut rest, &r.key);
        put_bytes(&mut rest, &r.value);
        rest.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
        for (k, v) in &r.headers {
            rest.extend_from_slice(&(k.len() as u16).to_le_bytes());
            rest.extend_from_slice(k.as_bytes());
            put_bytes(&mut rest, v);
        }
        let mut out = (rest.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&rest);
        out
    }

    /// Every field of the 32-byte header, settable (to write segments whose header disagrees).
    #[derive(Clone, Debug)]
    pub struct Header {
        pub magic: [u8; 4],
        pub version: u8,
        pub compression: u8,
        pub reserved: [u8; 2],
        pub record_count: u64,
        pub start_offset: i64,
        pub end_offset: i64,
    }

    impl Header {
        pub fn of(compression: u8, records: &[Rec]) -> Self {
            Header {
                magic: *b"KBAK",
                version: 1,
                compression,
                reserved: [0, 0],
                record_count: records.len() as u64,
                start_offset: records[0].offset,
                end_offset: records[records.len() - 1].offset,
            }
        }

        fn bytes(&self) -> [u8; 32] {
            let mut h = [0u8; 32];
            h[0..4].copy_from_slice(&self.magic);
            h[4] = self.version;
            h[5] = self.compression;
            h[6..8].copy_from_slice(&self.reserved);
            h[8..16].copy_from_slice(&self.record_count.to_le_bytes());
            h[16..24].copy_from_slice(&self.start_offset.to_le_bytes());
            h[24..32].copy_from_slice(&self.end_offset.to_le_bytes());
            h
        }
    }

    /// The body compressed as `codec` says (0 none, 1 a zstd frame, 2 an LZ4 block after its
    /// uncompressed length as u32).
    pub fn compress(codec: u8, body: &[u8]) -> Vec<u8> {
        match codec {
            0 => body.to_vec(),
            1 => zstd::bulk::compress(body, 3).unwrap(),
            _ => lz4_flex::block::compress_prepend_size(body),
        }
    }

    /// `header | stored body | CRC-32 of both | "BKAE"`, and the uncompressed body's length.
    pub fn segment(header: &Header, records: &[Rec], body_codec: u8) -> (Vec<u8>, usize) {
        let body: Vec<u8> = records.iter().flat_map(record).collect();
        let mut out = header.bytes().to_vec();
        out.extend_from_slice(&compress(body_codec, &body));
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(b"BKAE");
        (out, body.len())
    }
}

use kbak::Rec;

/// A partition of a set to write: its segments (records each) and recorded gaps.
struct Part {
    id: i32,
    segments: Vec<Vec<Rec>>,
    gaps: Vec<(i64, i64)>,
}

/// Writes set `id` with compression `codec` below `root` as the prior art lays it out and returns
/// its manifest (also written).
fn write_set(root: &Path, id: &str, codec: u8, topics: &[(&str, i32, Vec<Part>)]) -> Value {
    let (name, ext) = match codec {
        0 => ("none", ".bin"),
        1 => ("zstd", ".bin.zst"),
        _ => ("lz4", ".bin.lz4"),
    };
    let mut topic_entries = Vec::new();
    for (topic, count, parts) in topics {
        let mut partitions = Vec::new();
        for part in parts {
            let mut segments = Vec::new();
            for records in &part.segments {
                let key = format!(
                    "{id}/topics/{topic}/partition={}/segment-{:020}{ext}",
                    part.id, records[0].offset
                );
                let (bytes, uncompressed) = kbak::segment(&kbak::Header::of(codec, records), records, codec);
                let path = root.join(&key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
                segments.push(json!({
                    "key": key, "start_offset": records[0].offset,
                    "end_offset": records[records.len() - 1].offset,
                    "start_timestamp": records[0].timestamp,
                    "end_timestamp": records[records.len() - 1].timestamp,
                    "record_count": records.len(), "uncompressed_size": uncompressed,
                    "compressed_size": bytes.len()}));
            }
            let mut p = json!({"partition_id": part.id, "segments": segments});
            if !part.gaps.is_empty() {
                p["gaps"] = part
                    .gaps
                    .iter()
                    .map(|(a, b)| json!({"start_offset": a, "end_offset": b, "reason": "offset_out_of_range", "detected_at": 1}))
                    .collect();
            }
            partitions.push(p);
        }
        topic_entries
            .push(json!({"name": topic, "original_partition_count": count, "partitions": partitions}));
    }
    let manifest = json!({"backup_id": id, "created_at": 1_767_225_600_000i64, "source_cluster_id": null,
        "source_brokers": [], "compression": name, "topics": topic_entries});
    write_manifest(root, id, &manifest);
    manifest
}

fn write_manifest(root: &Path, id: &str, manifest: &Value) {
    std::fs::create_dir_all(root.join(id)).unwrap();
    std::fs::write(
        root.join(id).join("manifest.json"),
        serde_json::to_vec_pretty(manifest).unwrap(),
    )
    .unwrap();
}

const BASE: i64 = 1_767_225_600_000;

fn tracking(offset: i64, ts: i64, cluster: bool) -> Vec<(String, Option<Vec<u8>>)> {
    let mut h = vec![
        (
            "x-original-offset".to_owned(),
            Some(offset.to_le_bytes().to_vec()),
        ),
        ("x-original-timestamp".to_owned(), Some(ts.to_le_bytes().to_vec())),
    ];
    if cluster {
        h.push(("x-source-cluster".to_owned(), Some(b"src-a".to_vec())));
    }
    h
}

/// Record `i` of partition `p`: every shape the format can hold.
fn rec(p: i32, offset: i64) -> Rec {
    let i = offset;
    let ts = BASE + i64::from(p) * 100_000 + i * 1000;
    let key = match i % 6 {
        0 => None,
        1 => Some(Vec::new()),
        _ => Some(format!("k-{p}-{i}").into_bytes()),
    };
    let value = match i % 7 {
        3 => None,
        4 => Some(Vec::new()),
        5 => Some((0..=255u8).collect()),
        _ => Some(format!("value {p} {i} {}", "z".repeat((i % 40) as usize)).into_bytes()),
    };
    let mut headers: Vec<(String, Option<Vec<u8>>)> = match i % 5 {
        0 => vec![],
        1 => vec![
            ("a".into(), Some(b"1".to_vec())),
            ("a".into(), Some(b"2".to_vec())),
        ],
        2 => vec![("n".into(), None), ("e".into(), Some(Vec::new()))],
        // A header of a tracking name that is not this record's own offset: the record's own.
        3 => vec![("x-original-offset".into(), Some(b"77777".to_vec()))],
        _ => (0..300)
            .map(|h| (format!("h{h}"), Some(vec![h as u8; 3])))
            .collect(),
    };
    // Partition 0: the tracking headers the backup appended (one record with decimal strings, as
    // older archives wrote them); partition 2: some; partition 1: none.
    match p {
        0 if i == 3 => {
            headers.push(("x-original-offset".into(), Some(i.to_string().into_bytes())));
            headers.push(("x-original-timestamp".into(), Some(ts.to_string().into_bytes())));
            headers.push(("x-source-cluster".into(), Some(b"src-a".to_vec())));
        }
        0 => headers.extend(tracking(i, ts, true)),
        2 if i % 2 == 0 => headers.extend(tracking(i, ts, false)),
        _ => {}
    }
    Rec {
        offset,
        timestamp: ts,
        key,
        value,
        headers,
    }
}

fn recs(p: i32, offsets: impl IntoIterator<Item = i64>) -> Vec<Rec> {
    offsets.into_iter().map(|o| rec(p, o)).collect()
}

/// The encoder's set: topic `mix` (3 partitions): two segments; a recorded gap between two
/// segments; offsets skipping inside a segment and between segments (compaction).
fn encoder_topics() -> Vec<(&'static str, i32, Vec<Part>)> {
    vec![(
        "mix",
        3,
        vec![
            Part {
                id: 0,
                segments: vec![recs(0, 0..10), recs(0, 10..20)],
                gaps: vec![],
            },
            Part {
                id: 1,
                segments: vec![recs(1, 0..5), recs(1, 20..25)],
                gaps: vec![(5, 20)],
            },
            Part {
                id: 2,
                segments: vec![recs(2, [0, 2, 5, 6]), recs(2, [9, 10, 14])],
                gaps: vec![],
            },
        ],
    )]
}

/// `headers` followed by the tracking headers this operator's restore writes with
/// `includeOriginalOffsetHeaders` (8-byte little-endian offset and timestamp, 4-byte partition,
/// the source cluster when known).
fn with_tracking(
    mut headers: Vec<(String, Option<Vec<u8>>)>,
    offset: i64,
    timestamp: i64,
    partition: i32,
    cluster: Option<&[u8]>,
) -> Vec<(String, Option<Vec<u8>>)> {
    headers.push(("x-original-offset".into(), Some(offset.to_le_bytes().to_vec())));
    headers.push((
        "x-original-timestamp".into(),
        Some(timestamp.to_le_bytes().to_vec()),
    ));
    headers.push((
        "x-source-partition".into(),
        Some(partition.to_le_bytes().to_vec()),
    ));
    if let Some(c) = cluster {
        headers.push(("x-source-cluster".into(), Some(c.to_vec())));
    }
    headers
}

/// The headers a record has of its own (without the trailing tracking headers the backup
/// appended): what a restore without `includeOriginalOffsetHeaders` writes.
fn own_headers(r: &Rec) -> Vec<(String, Option<Vec<u8>>)> {
    let h = &r.headers;
    let is = |i: usize, name: &str, want: i64| {
        h[i].0 == name
            && h[i].1.as_ref().is_some_and(|v| {
                <[u8; 8]>::try_from(v.as_slice()).map(i64::from_le_bytes).ok() == Some(want)
                    || std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()) == Some(want)
            })
    };
    for n in [3, 2] {
        if h.len() >= n {
            let b = h.len() - n;
            if is(b, "x-original-offset", r.offset)
                && is(b + 1, "x-original-timestamp", r.timestamp)
                && (n == 2 || h[b + 2].0 == "x-source-cluster")
            {
                return h[..b].to_vec();
            }
        }
    }
    h.clone()
}

// --- services and resources ---

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

/// PVC storage whose directory is `<root>/claim/store`.
fn pvc() -> Value {
    json!({"type": "PVC", "pvc": {"claimName": "claim", "subPath": "store"}})
}

fn store_dir(root: &Path) -> PathBuf {
    root.join("claim/store")
}

fn s3_storage(prefix: &str) -> Option<Value> {
    let endpoint = service("KBO_TEST_S3_ENDPOINT")?;
    Some(json!({"type": "S3", "s3": {
        "bucket": std::env::var("KBO_TEST_S3_BUCKET").unwrap_or_else(|_| "test-bucket".into()),
        "endpoint": endpoint, "region": "us-east-1", "pathStyle": true, "allowHttp": true,
        "prefix": prefix, "credentialsSecret": {"name": "s3"}}}))
}

/// Uploads every file below `dir` to SeaweedFS below `prefix`, with the plain object_store
/// client (not the code under test).
async fn upload(dir: &Path, prefix: &str) {
    let s3 = AmazonS3Builder::new()
        .with_endpoint(std::env::var("KBO_TEST_S3_ENDPOINT").unwrap())
        .with_bucket_name(std::env::var("KBO_TEST_S3_BUCKET").unwrap_or_else(|_| "test-bucket".into()))
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .unwrap();
    for file in files_below(dir) {
        let rel = file
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let bytes = std::fs::read(&file).unwrap();
        s3.put(
            &StorePath::from(format!("{prefix}/{rel}")),
            PutPayload::from(bytes),
        )
        .await
        .unwrap();
    }
}

/// A storage root holding a copy of the real sets and snapshot.
fn real_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(REAL).join("storage"), &store_dir(root.path()));
    root
}

fn resource<T: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> T {
    serde_json::from_value(json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": kind,
        "metadata": {"name": name}, "spec": spec}))
    .unwrap()
}

async fn run_restore(root: &Path, name: &str, spec: Value) -> KafkaRestoreStatus {
    let r: KafkaRestore = resource("KafkaRestore", name, spec);
    restore::execute(&r, &ctx(root, name)).await
}

/// A KafkaBackupValidation of set `id` in [`pvc`] storage, with the default checks (Integrity).
async fn validate(root: &Path, id: &str) -> KafkaBackupValidationStatus {
    let v: KafkaBackupValidation = resource(
        "KafkaBackupValidation",
        "v",
        json!({"backupRef": {"backupId": id, "storage": pvc()}}),
    );
    validation::execute(&v, &ctx(root, "v")).await
}

async fn run_rollback(root: &Path, spec: Value) -> KafkaOffsetRollbackStatus {
    let r: KafkaOffsetRollback = resource("KafkaOffsetRollback", "rb", spec);
    offset_rollback::execute(&r, &ctx(root, "rb")).await
}

fn integrity(status: &KafkaBackupValidationStatus) -> (CheckOutcome, String) {
    let c = status
        .checks
        .iter()
        .flatten()
        .find(|c| c.name == "Integrity")
        .unwrap_or_else(|| panic!("no Integrity check: {status:#?}"));
    (c.outcome, c.message.clone().unwrap_or_default())
}

/// A record as read back from Kafka.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Every record of a topic, per partition, with a plain rdkafka consumer.
fn consume_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<Got>> {
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
    let mut out: BTreeMap<i32, Vec<Got>> = (0..partitions).map(|p| (p, Vec::new())).collect();
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
                out.get_mut(&m.partition()).unwrap().push(Got {
                    offset: m.offset(),
                    timestamp: m.timestamp().to_millis().unwrap(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
        }
    }
    out
}

fn topic_exists(bootstrap: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics().iter().any(|t| t.name() == topic)
}

fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

async fn produce_plain(bootstrap: &str, topic: &str, partition: i32, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for i in 0..count {
        let payload = format!("filler {i}");
        producer
            .send(
                FutureRecord::<(), str>::to(topic)
                    .partition(partition)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

// --- the real sets' source records ---

/// A source record of `source-records.jsonl`.
#[derive(Clone, Debug)]
struct Source {
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn b64(v: &Value) -> Option<Vec<u8>> {
    v.as_str()
        .map(|s| base64::engine::general_purpose::STANDARD.decode(s).unwrap())
}

fn source_records() -> Vec<Source> {
    std::fs::read_to_string(Path::new(REAL).join("source-records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Source {
                topic: v["topic"].as_str().unwrap().into(),
                partition: v["partition"].as_i64().unwrap() as i32,
                offset: v["offset"].as_i64().unwrap(),
                timestamp: v["timestamp_ms"].as_i64().unwrap(),
                key: b64(&v["key_b64"]),
                value: b64(&v["value_b64"]),
                headers: v["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (h[0].as_str().unwrap().to_owned(), b64(&h[1])))
                    .collect(),
            }
        })
        .collect()
}

/// The headers as the prior art kept them: one per key (at the first key's place, with the last
/// value) and null values as empty ones.
fn as_kept(headers: &[(String, Option<Vec<u8>>)]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    for (k, v) in headers {
        let v = Some(v.clone().unwrap_or_default());
        match out.iter_mut().find(|(name, _)| name == k) {
            Some(entry) => entry.1 = v,
            None => out.push((k.clone(), v)),
        }
    }
    out
}

/// Checks a restored topic against the source records of `topic` (restored into a fresh topic, so
/// offsets are the source's), record for record, with the headers as the prior art kept them.
fn assert_restored(bootstrap: &str, source: &[Source], topic: &str, target: &str, partitions: i32) {
    let got = consume_all(bootstrap, target, partitions);
    for p in 0..partitions {
        let want: Vec<&Source> = source
            .iter()
            .filter(|s| s.topic == topic && s.partition == p)
            .collect();
        let got = &got[&p];
        assert_eq!(got.len(), want.len(), "{target}-{p}: record count");
        for (g, w) in got.iter().zip(&want) {
            let expected = Got {
                offset: w.offset,
                timestamp: w.timestamp,
                key: w.key.clone(),
                value: w.value.clone(),
                headers: as_kept(&w.headers),
            };
            assert_eq!(g, &expected, "{target}-{p} offset {}", w.offset);
        }
    }
}

// === tests without services ===

#[tokio::test]
async fn encoder_sets_validate_with_every_compression() {
    for (codec, id) in [(0u8, "pa-none"), (1, "pa-zstd"), (2, "pa-lz4")] {
        let root = tempfile::tempdir().unwrap();
        write_set(&store_dir(root.path()), id, codec, &encoder_topics());
        let status = validate(root.path(), id).await;
        assert_eq!(status.phase, Some(RunPhase::Completed), "{status:#?}");
        let (outcome, message) = integrity(&status);
        assert_eq!(outcome, CheckOutcome::Passed, "{id}: {message}");
        assert!(
            message.starts_with("6 segments verified (37 records,"),
            "{message}"
        );
        assert!(message.contains("1 recorded gap(s) (15 offsets"), "{message}");
        assert!(message.contains("mix-1 5..20"), "{message}");
        assert!(message.contains("cannot prove the set is complete"), "{message}");
        // Offsets between segments without a gap (compaction) are listed, not failed.
        assert!(message.contains("mix-2 7..9"), "{message}");
        assert!(
            status
                .message
                .as_deref()
                .unwrap()
                .contains("written by kafka-backup 0.x: cannot prove the set is complete"),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn the_view_of_an_encoder_set_lists_what_the_manifest_lists() {
    let root = tempfile::tempdir().unwrap();
    let store = store_dir(root.path());
    write_set(&store, "pa", 1, &encoder_topics());
    let location = match Location::open(
        &serde_json::from_value(pvc()).unwrap(),
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
    let set = backup_set::open(&location, "pa").await.unwrap().unwrap();
    assert_eq!(set.format, SetFormat::PriorArt);
    assert_eq!(set.manifest.state, SetState::Unknown);
    let summary = set.summary(&location);
    assert_eq!(
        (summary.records, summary.segments, summary.partitions),
        (37, 6, 3)
    );
    assert!(!summary.complete);
    assert_eq!(summary.format, prior_art::FORMAT);
    assert_eq!(summary.location, "pvc://claim/store/pa");
    // Every record decodes with its own headers and the backup's tracking headers set apart.
    for (p, part) in &set.manifest.topics["mix"].partitions {
        let want: Vec<Rec> = encoder_topics()[0].2[*p as usize].segments.concat();
        let mut got = Vec::new();
        for entry in &part.segments {
            let bytes = location.get(&entry.key).await.unwrap().unwrap();
            let (segment, _) = set.format.decode_segment(bytes, Vec::new(), *p, entry).unwrap();
            for r in segment.records() {
                let r = r.unwrap();
                got.push((
                    r.offset,
                    r.timestamp,
                    r.key.map(<[u8]>::to_vec),
                    r.value.map(<[u8]>::to_vec),
                    r.headers()
                        .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
                        .collect::<Vec<_>>(),
                ));
            }
        }
        let want: Vec<_> = want
            .iter()
            .map(|r| {
                (
                    r.offset,
                    r.timestamp,
                    r.key.clone(),
                    r.value.clone(),
                    own_headers(r),
                )
            })
            .collect();
        assert_eq!(got, want, "partition {p}");
    }
    // The source cluster only the tracking headers name.
    assert_eq!(
        set.source_cluster_id(&location).await.unwrap().as_deref(),
        Some("src-a")
    );

    // The catalog's sources find it and the real snapshot, in either place.
    let source = StorageSource::new(Location::Object(location.clone()));
    let listed = source.list_backup_sets().await.unwrap();
    assert_eq!(listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["pa"]);
    let kbs = source.read_backup_set("pa").await.unwrap().unwrap();
    assert_eq!(
        (kbs.format.as_str(), kbs.complete, kbs.records),
        (prior_art::FORMAT, false, 37)
    );
    assert!(kbs.note.unwrap().contains("cannot prove"));
}

#[tokio::test]
async fn a_partial_manifest_is_not_claimed_complete_and_unlisted_segments_warn() {
    let root = tempfile::tempdir().unwrap();
    let store = store_dir(root.path());
    let mut manifest = write_set(&store, "pa", 1, &encoder_topics());
    // A run that crashed after storing partition 0's second segment, before the manifest said so.
    let segments = manifest["topics"][0]["partitions"][0]["segments"]
        .as_array_mut()
        .unwrap();
    let dropped = segments.pop().unwrap();
    write_manifest(&store, "pa", &manifest);
    let status = validate(root.path(), "pa").await;
    let (outcome, message) = integrity(&status);
    assert_eq!(outcome, CheckOutcome::Warning, "{message}");
    assert!(
        message.contains("1 stored segment(s) are not in the manifest of this finished-looking set")
            && message.contains(dropped["key"].as_str().unwrap())
            && message.contains("cannot prove the set is complete"),
        "{message}"
    );
}

#[tokio::test]
async fn segment_header_fields_that_disagree_with_the_manifest_are_named() {
    type Change = fn(&mut kbak::Header);
    let cases: [(&str, Change, &str); 8] = [
        ("magic", |h| h.magic = *b"KBAX", "magic \"KBAX\""),
        ("version", |h| h.version = 2, "segment version 2"),
        ("compression byte", |h| h.compression = 7, "compression byte 7"),
        (
            "compression",
            |h| h.compression = 2,
            "compression 2 in the segment header, 1 by the file name",
        ),
        (
            "record count",
            |h| h.record_count = 9,
            "record count 9 in the segment header, 10 in the manifest",
        ),
        (
            "start offset",
            |h| h.start_offset = 1,
            "start offset 1 in the segment header, 0 in the manifest",
        ),
        (
            "end offset",
            |h| h.end_offset = 8,
            "end offset 8 in the segment header, 9 in the manifest",
        ),
        // Reserved bytes are not checked: any value reads.
        ("reserved", |h| h.reserved = [0xab, 0xcd], ""),
    ];
    for (what, change, expected) in cases {
        let root = tempfile::tempdir().unwrap();
        let store = store_dir(root.path());
        let manifest = write_set(&store, "pa", 1, &encoder_topics());
        let key = manifest["topics"][0]["partitions"][0]["segments"][0]["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let records = recs(0, 0..10);
        let mut header = kbak::Header::of(1, &records);
        change(&mut header);
        // Written consistently (the CRC covers the changed header): only the field disagrees.
        let (bytes, _) = kbak::segment(&header, &records, 1);
        std::fs::write(store.join(&key), bytes).unwrap();
        let status = validate(root.path(), "pa").await;
        let (outcome, message) = integrity(&status);
        if expected.is_empty() {
            assert_eq!(outcome, CheckOutcome::Passed, "{what}: {message}");
            continue;
        }
        assert_eq!(outcome, CheckOutcome::Failed, "{what}: {message}");
        assert!(
            message.contains(&format!("segment pvc://claim/store/{key}: ")) && message.contains(expected),
            "{what}: {message}"
        );
    }
    // The real tool's own footer CRC is what the encoder writes.
    let real = std::fs::read(
        Path::new(REAL).join("storage/b-none/topics/events/partition=0/segment-00000000000000000000.bin"),
    )
    .unwrap();
    let end = real.len() - 8;
    assert_eq!(kbak::crc32(&real[..end]).to_le_bytes(), real[end..end + 4]);
}

#[tokio::test]
async fn a_manifest_of_neither_format_is_refused_naming_what_was_found() {
    let root = tempfile::tempdir().unwrap();
    let store = store_dir(root.path());
    std::fs::create_dir_all(store.join("odd")).unwrap();
    std::fs::write(store.join("odd/manifest.json"), br#"{"id": "odd", "files": []}"#).unwrap();
    let status = run_restore(
        root.path(),
        "r",
        json!({"backupRef": {"backupId": "odd", "storage": pvc()},
            "kafkaCluster": {"bootstrapServers": ["127.0.0.1:1"]}, "createTopics": {"enabled": true}}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = status.message.unwrap();
    assert!(
        message.contains("pvc://claim/store/odd/manifest.json is not a valid backup manifest: neither a kafka-backup-operator manifest")
            && message.contains(r#"found the fields ["files", "id"]"#),
        "{message}"
    );
    let status = validate(root.path(), "odd").await;
    assert!(
        integrity(&status)
            .1
            .contains("neither a kafka-backup-operator manifest"),
        "{status:?}"
    );
    let status = run_restore(
        root.path(),
        "r",
        json!({"backupRef": {"backupId": "nothing", "storage": pvc()},
            "kafkaCluster": {"bootstrapServers": ["127.0.0.1:1"]}}),
    )
    .await;
    let message = status.message.unwrap();
    assert!(
        message.contains("neither pvc://claim/store/backups/nothing/manifest.json nor pvc://claim/store/nothing/manifest.json exists"),
        "{message}"
    );
}

/// The ConsumerGroupOffsets check reads a prior-art set's `consumer-groups-snapshot.json`: the
/// real set's groups lie within its backed-up data and pass; a snapshot naming a partition the
/// set does not have fails, naming the group and the partition.
#[tokio::test]
async fn the_consumer_group_offsets_check_reads_a_prior_art_group_snapshot() {
    let root = real_root();
    let check = |status: &KafkaBackupValidationStatus| {
        let c = status
            .checks
            .iter()
            .flatten()
            .find(|c| c.name == "ConsumerGroupOffsets")
            .unwrap_or_else(|| panic!("no ConsumerGroupOffsets check: {status:#?}"));
        (c.outcome, c.message.clone().unwrap_or_default())
    };
    async fn groups_check(root: &Path) -> KafkaBackupValidationStatus {
        let v: KafkaBackupValidation = resource(
            "KafkaBackupValidation",
            "v",
            json!({"backupRef": {"backupId": "b-zstd", "storage": pvc()},
                "checks": {"consumerGroupOffsets": {"enabled": true}}}),
        );
        validation::execute(&v, &ctx(root, "v")).await
    }
    let good = groups_check(root.path()).await;
    let (outcome, message) = check(&good);
    assert_eq!(outcome, CheckOutcome::Passed, "{message}");
    assert_eq!(
        message,
        "1 group(s), 3 committed offsets in the backup's snapshot, all within the backed-up data"
    );
    assert_eq!(good.result, Some(CheckOutcome::Passed), "{good:#?}");

    let file = store_dir(root.path()).join("b-zstd/consumer-groups-snapshot.json");
    let mut snapshot: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    snapshot["groups"][0]["offsets"]["orders"]["7"] = json!(5);
    std::fs::write(&file, snapshot.to_string()).unwrap();
    let bad = groups_check(root.path()).await;
    let (outcome, message) = check(&bad);
    assert_eq!(outcome, CheckOutcome::Failed, "{message}");
    assert!(
        message.contains(
            "group billing on orders-7: committed offset 5, but the backup set has no such partition"
        ),
        "{message}"
    );
    assert_eq!(bad.result, Some(CheckOutcome::Failed), "{bad:#?}");
}

#[tokio::test]
async fn the_real_sets_validate_and_are_listed_with_their_format() {
    let root = real_root();
    for id in ["b-none", "b-zstd"] {
        let status = validate(root.path(), id).await;
        assert_eq!(status.result, Some(CheckOutcome::Passed), "{status:#?}");
        let (_, message) = integrity(&status);
        assert!(
            message.starts_with("12 segments verified (2000 records, 528871 bytes uncompressed"),
            "{message}"
        );
        assert!(message.contains("cannot prove the set is complete"), "{message}");
        // orders/0 offset 38 (an empty header) and orders/2 offset 20 (null, stored as empty).
        assert!(
            message.contains("2 record(s) carry empty header values"),
            "{message}"
        );
    }
    let location = Location::open(
        &serde_json::from_value(pvc()).unwrap(),
        &SecretStore::None,
        &StorageEnv {
            pvc_root: root.path().to_owned(),
            config_maps: Default::default(),
        },
    )
    .unwrap();
    let source = StorageSource::new(location.clone());
    let mut ids: Vec<String> = source
        .list_backup_sets()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["b-none", "b-zstd"]);
    let set = source.read_backup_set("b-zstd").await.unwrap().unwrap();
    assert_eq!(set.format, prior_art::FORMAT);
    assert!(!set.complete);
    assert_eq!((set.records, set.partitions), (2000, 4));
    assert_eq!(
        set.first_record_time.unwrap().timestamp_millis(),
        1_767_225_600_000
    );
    assert_eq!(
        set.last_record_time.unwrap().timestamp_millis(),
        1_769_904_499_000
    );
    assert_eq!(set.group_snapshot.unwrap().groups, ["billing"]);
    // The snapshot, listed and read in the operator's form.
    let listed = source.list_snapshots().await.unwrap();
    assert_eq!(
        listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        [REAL_SNAPSHOT]
    );
    let stored = source.read_snapshot(REAL_SNAPSHOT).await.unwrap().unwrap();
    assert!(stored.prior_art);
    assert_eq!(
        stored.uri,
        format!("pvc://claim/store/offset-snapshots/{REAL_SNAPSHOT}/snapshot.json")
    );
    let offsets = &stored.snapshot.groups["billing"].topics["orders"];
    assert_eq!(
        offsets.iter().map(|(p, o)| (*p, o.offset)).collect::<Vec<_>>(),
        [(0, 200), (1, 350), (2, 518)]
    );
    assert_eq!(stored.snapshot.cluster, "127.0.0.1:19092");
    // Its document stored where this operator's go (as in a ConfigMap key `<id>.json`) reads too.
    let doc =
        std::fs::read(store_dir(root.path()).join(format!("offset-snapshots/{REAL_SNAPSHOT}/snapshot.json")))
            .unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(store_dir(other.path()).join("offset-snapshots")).unwrap();
    std::fs::write(
        store_dir(other.path()).join(format!("offset-snapshots/{REAL_SNAPSHOT}.json")),
        doc,
    )
    .unwrap();
    let flat = Location::open(
        &serde_json::from_value(pvc()).unwrap(),
        &SecretStore::None,
        &StorageEnv {
            pvc_root: other.path().to_owned(),
            config_maps: Default::default(),
        },
    )
    .unwrap();
    let stored = read_snapshot(&flat, REAL_SNAPSHOT).await.unwrap().unwrap();
    assert!(stored.prior_art);
    assert_eq!(stored.snapshot.groups["billing"].topics["orders"][&2].offset, 518);
}

#[tokio::test]
async fn an_incremental_backup_of_a_prior_art_set_is_refused() {
    let root = real_root();
    let b: KafkaBackup = resource(
        "KafkaBackup",
        "kb",
        json!({"backupId": "b-zstd", "kafkaCluster": {"bootstrapServers": ["127.0.0.1:1"]},
            "topics": ["orders"], "storage": pvc()}),
    );
    let status = backup::execute(&b, &ctx(root.path(), "kb")).await;
    let message = format!("{status:?}");
    assert!(
        message.contains("spec.backupId: backup set b-zstd at pvc://claim/store/b-zstd/manifest.json was written by kafka-backup 0.x")
            && message.contains("never continues or changes them"),
        "{message}"
    );
    // Nothing was written: no set of this operator, the old one unchanged.
    assert!(!store_dir(root.path()).join("backups").exists());
    let sums = std::fs::read_to_string(Path::new(REAL).join("storage.sha256")).unwrap();
    let out = Command::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .current_dir(store_dir(root.path()))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(sums.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn import_dry_run_lists_sets_and_snapshots_with_integrity() {
    let root = real_root();
    let store = store_dir(root.path());
    // A damaged copy of a set, and a directory whose manifest is neither format.
    copy_dir(&store.join("b-zstd"), &store.join("b-damaged"));
    let manifest = std::fs::read_to_string(store.join("b-damaged/manifest.json")).unwrap();
    std::fs::write(
        store.join("b-damaged/manifest.json"),
        manifest.replace("\"b-zstd", "\"b-damaged"),
    )
    .unwrap();
    let damaged = store.join("b-damaged/topics/orders/partition=1/segment-00000000000000000200.bin.zst");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&damaged, bytes).unwrap();
    std::fs::create_dir_all(store.join("odd")).unwrap();
    std::fs::write(store.join("odd/manifest.json"), b"[]").unwrap();
    let storage = root.path().join("storage.yaml");
    std::fs::write(
        &storage,
        "storage:\n  type: PVC\n  pvc: {claimName: claim, subPath: store}\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
            .arg("import")
            .arg("--storage")
            .arg(&storage)
            .arg("--pvc-root")
            .arg(root.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "a damaged set fails: {text}");
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_default()
            .to_owned()
    };
    let words = |id: &str| line(id).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        words("b-none"),
        [
            "b-none",
            "kafka-backup/0.x",
            "2",
            "4",
            "12",
            "2000",
            "516.9KiB",
            "2026-01-01T00:00:00Z",
            "2026-02-01T00:08:19Z",
            "billing",
            "Passed"
        ],
        "{text}"
    );
    assert_eq!(words("b-zstd")[10], "Passed", "{text}");
    assert_eq!(words("b-damaged")[10], "Failed", "{text}");
    assert_eq!(words("odd")[..2], ["odd", "unknown"], "{text}");
    assert!(
        text.contains("b-damaged Failed: 1 problem(s), 1 of 12 segments missing or damaged: segment pvc://claim/store/b-damaged/topics/orders/partition=1/segment-00000000000000000200.bin.zst: checksum mismatch: CRC-32"),
        "{text}"
    );
    assert!(
        text.contains(
            "odd Failed: refused: pvc://claim/store/odd/manifest.json is not a valid backup manifest: neither"
        ),
        "{text}"
    );
    assert_eq!(
        words(REAL_SNAPSHOT),
        [
            REAL_SNAPSHOT,
            "billing",
            "3",
            "127.0.0.1:19092",
            "2026-12-07T13:58:11Z",
            "779B",
            "readable"
        ],
        "{text}"
    );
    let json: Value = serde_json::from_slice(&run(&["--dry-run", "-o", "json"]).stdout).unwrap();
    assert_eq!(json["sets"].as_array().unwrap().len(), 4);
    assert_eq!(json["snapshots"][0]["partitions"], 3);
    // Without --dry-run it explains why there is nothing else to do.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("import only reports (pass --dry-run)"));
    // Read only: nothing was written.
    assert!(!store.join("backups").exists());
}

// === tests against the broker ===

/// The restore of a corrupted set refuses before writing anything; validation names the segment.
#[tokio::test]
async fn corruption_is_named_and_a_restore_writes_nothing() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    type Damage = fn(&Path, &mut Value, &str);
    let cases: [(&str, Damage, &str); 4] = [
        (
            "flipped body byte",
            |store, _, key| {
                let path = store.join(key);
                let mut b = std::fs::read(&path).unwrap();
                b[40] ^= 0x01;
                std::fs::write(&path, b).unwrap();
            },
            "checksum mismatch: CRC-32",
        ),
        (
            "wrong record count",
            |_, manifest, _| manifest["topics"][0]["partitions"][1]["segments"][0]["record_count"] = json!(6),
            "record count 5 in the segment header, 6 in the manifest",
        ),
        (
            "truncated",
            |store, _, key| {
                let path = store.join(key);
                let b = std::fs::read(&path).unwrap();
                std::fs::write(&path, &b[..b.len() - 20]).unwrap();
            },
            "bytes",
        ),
        (
            "missing",
            |store, _, key| std::fs::remove_file(store.join(key)).unwrap(),
            "missing",
        ),
    ];
    for (what, damage, expected) in cases {
        let root = tempfile::tempdir().unwrap();
        let store = store_dir(root.path());
        let mut manifest = write_set(&store, "pa", 1, &encoder_topics());
        // Partition 1's first segment: partition 0's segments are restored before it.
        let key = manifest["topics"][0]["partitions"][1]["segments"][0]["key"]
            .as_str()
            .unwrap()
            .to_owned();
        damage(&store, &mut manifest, &key);
        write_manifest(&store, "pa", &manifest);
        let uri = format!("pvc://claim/store/{key}");
        let status = validate(root.path(), "pa").await;
        let (outcome, message) = integrity(&status);
        assert_eq!(outcome, CheckOutcome::Failed, "{what}: {message}");
        assert!(
            message.contains(&format!("segment {uri}: ")) && message.contains(expected),
            "{what}: {message}"
        );
        let target = unique("pa-corrupt");
        let status = run_restore(
            root.path(),
            "r",
            json!({"backupRef": {"backupId": "pa", "storage": pvc()},
                "kafkaCluster": {"bootstrapServers": [bootstrap]},
                "topicMapping": {"mix": target}, "createTopics": {"enabled": true}}),
        )
        .await;
        assert_eq!(status.phase, Some(Phase::Failed), "{what}: {status:?}");
        let message = status.message.unwrap();
        assert!(
            message.contains(&format!("segment {uri} ")) || message.contains(&format!("segment {uri}: ")),
            "{what}: {message}"
        );
        assert!(
            !topic_exists(&bootstrap, &target),
            "{what}: the restore created {target}"
        );
        assert!(
            !store.join("backups/pa/restores").exists(),
            "{what}: a restore state was written"
        );
    }
}

/// The encoder's sets restored into the broker, from local disk and SeaweedFS, compared record for
/// record with what was encoded; with `includeOriginalOffsetHeaders` the tracking headers come back
/// as this operator writes them (the source cluster read from the stored tracking headers).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encoder_sets_restore_record_for_record() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let mut runs: Vec<(u8, bool, Option<String>)> = vec![(0, false, None), (1, true, None), (2, false, None)];
    if service("KBO_TEST_S3_ENDPOINT").is_some() {
        runs.push((1, false, Some(unique("pa-s3"))));
    }
    for (codec, tracking, s3) in runs {
        let root = tempfile::tempdir().unwrap();
        let store = store_dir(root.path());
        write_set(&store, "pa", codec, &encoder_topics());
        let storage = match &s3 {
            None => pvc(),
            Some(prefix) => {
                upload(&store, prefix).await;
                s3_storage(prefix).unwrap()
            }
        };
        let target = unique("pa-mix");
        let status = run_restore(
            root.path(),
            "r",
            json!({"backupRef": {"backupId": "pa", "storage": storage},
                "kafkaCluster": {"bootstrapServers": [bootstrap]},
                "topicMapping": {"mix": target}, "createTopics": {"enabled": true},
                "includeOriginalOffsetHeaders": tracking}),
        )
        .await;
        assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
        assert_eq!(status.records_restored, Some(37));
        let message = status.message.unwrap();
        assert!(message.contains(prior_art::FIDELITY_NOTE), "{message}");
        assert!(message.contains(prior_art::COMPLETENESS_NOTE), "{message}");
        let got = consume_all(&bootstrap, &target, 3);
        for (p, part) in encoder_topics()[0].2.iter().enumerate() {
            let want: Vec<Got> = part
                .segments
                .concat()
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let headers = if tracking {
                        with_tracking(own_headers(r), r.offset, r.timestamp, p as i32, Some(b"src-a"))
                    } else {
                        own_headers(r)
                    };
                    Got {
                        offset: i as i64,
                        timestamp: r.timestamp,
                        key: r.key.clone(),
                        value: r.value.clone(),
                        headers,
                    }
                })
                .collect();
            assert_eq!(
                got[&(p as i32)],
                want,
                "codec {codec} tracking {tracking} s3 {s3:?}: partition {p}"
            );
        }
    }
}

/// The real sets restored into the broker, from local disk and SeaweedFS, compared record for
/// record with the source records: identical but for what the prior art did not keep (duplicate
/// header keys, null header values), which the status says.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_real_sets_restore_record_for_record() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let source = source_records();
    assert_eq!(source.len(), 2000);
    let root = real_root();
    let mut storages = vec![pvc()];
    if service("KBO_TEST_S3_ENDPOINT").is_some() {
        let prefix = unique("pa-real");
        upload(&store_dir(root.path()), &prefix).await;
        storages.push(s3_storage(&prefix).unwrap());
    }
    for storage in storages {
        for id in ["b-none", "b-zstd"] {
            let (orders, events) = (unique("pa-orders"), unique("pa-events"));
            let status = run_restore(
                root.path(),
                &unique("r"),
                json!({"backupRef": {"backupId": id, "storage": storage},
                    "kafkaCluster": {"bootstrapServers": [bootstrap]},
                    "topicMapping": {"orders": orders, "events": events},
                    "createTopics": {"enabled": true}}),
            )
            .await;
            assert_eq!(status.phase, Some(Phase::Completed), "{id}: {status:?}");
            assert_eq!(status.records_restored, Some(2000));
            assert!(status.message.unwrap().contains(prior_art::FIDELITY_NOTE));
            assert_restored(&bootstrap, &source, "orders", &orders, 3);
            assert_restored(&bootstrap, &source, "events", &events, 1);
            // What differs from the source, exactly: orders/0 offset 6 and orders/2 offset 20.
            let got = consume_all(&bootstrap, &orders, 3);
            assert_eq!(
                got[&0][6].headers,
                [
                    ("dup".to_owned(), Some(b"second".to_vec())),
                    ("other".to_owned(), Some(b"x".to_vec()))
                ]
            );
            assert_eq!(got[&2][20].headers[1], ("nullable".to_owned(), Some(Vec::new())));
        }
    }

    // With the tracking headers asked for, and point in time (both ends inclusive) as the tool
    // itself restored it: 101, 86 and 114 records of orders, none of events.
    let (orders, events) = (unique("pa-orders"), unique("pa-events"));
    let status = run_restore(
        root.path(),
        "pitr",
        json!({"backupRef": {"backupId": "b-zstd", "storage": pvc()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {"orders": orders, "events": events}, "createTopics": {"enabled": true},
            "pitr": {"startTime": "2026-01-01T00:05:00Z", "endTime": "2026-01-01T00:10:00Z"},
            "includeOriginalOffsetHeaders": true}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    let got = consume_all(&bootstrap, &orders, 3);
    assert_eq!(got.values().map(Vec::len).collect::<Vec<_>>(), [101, 86, 114]);
    assert!(consume_all(&bootstrap, &events, 1)[&0].is_empty());
    for (p, records) in &got {
        let want: Vec<&Source> = source
            .iter()
            .filter(|s| s.topic == "orders" && s.partition == *p)
            .filter(|s| (1_767_225_900_000..=1_767_226_200_000).contains(&s.timestamp))
            .collect();
        assert_eq!(records.len(), want.len(), "partition {p}");
        for (g, w) in records.iter().zip(want) {
            let headers = with_tracking(as_kept(&w.headers), w.offset, w.timestamp, *p, None);
            assert_eq!(
                (g.timestamp, &g.key, &g.value, &g.headers),
                (w.timestamp, &w.key, &w.value, &headers)
            );
        }
    }
}

/// A restore of a real set under `run -f`, SIGKILLed mid-way three times, then run to its end:
/// each record is in the target exactly once, in order (read with a plain rdkafka consumer), as a
/// killed restore of this operator's own format leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_restore_of_a_real_set_run_again_leaves_each_record_once() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let source = source_records();
    let root = real_root();
    let (orders, events) = (unique("pa-kill-orders"), unique("pa-kill-events"));
    let spec = |limit: Option<i64>| {
        let mut s = json!({"backupRef": {"backupId": "b-zstd", "storage": pvc()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topicMapping": {"orders": orders, "events": events}, "createTopics": {"enabled": true},
            "produce": {"batchSize": 20}});
        if let Some(l) = limit {
            s["rateLimiting"] = json!({"recordsPerSec": l});
        }
        s
    };
    let slow = support::write_run_manifest(root.path(), "KafkaRestore", "pa-kill", spec(Some(150)));
    let written = || -> usize {
        consume_all(&bootstrap, &orders, 3)
            .values()
            .chain(consume_all(&bootstrap, &events, 1).values())
            .map(Vec::len)
            .sum()
    };
    let mut after_kills = Vec::new();
    for _ in 0..3 {
        assert!(
            support::run_and_kill(&slow, root.path(), Duration::from_millis(2500)),
            "the restore finished before it was killed"
        );
        after_kills.push(written());
    }
    // Each run resumed where the one before was killed, and the last was killed mid-way.
    assert!(
        after_kills[0] > 0 && after_kills.windows(2).all(|w| w[0] < w[1]) && after_kills[2] < source.len(),
        "records written after each kill: {after_kills:?}"
    );
    eprintln!("records written after each kill: {after_kills:?}");
    // Same name, no rate limit: continues after what was written.
    let fast = support::write_run_manifest(root.path(), "KafkaRestore", "pa-kill", spec(None));
    let out = support::run_to_end(&fast, root.path());
    assert_eq!(out["phase"], "Completed", "{out}");
    assert_restored(&bootstrap, &source, "orders", &orders, 3);
    assert_restored(&bootstrap, &source, "events", &events, 1);
    // Once more: a completed restore writes nothing.
    let out = support::run_to_end(&fast, root.path());
    assert!(
        out["message"].as_str().unwrap().contains("already completed"),
        "{out}"
    );
    assert_eq!(written(), source.len());
}

/// A record's key and value.
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A real set repartitioned (murmur2, as Kafka's partitioner places keys) and partition-mapped, and
/// a restore run again under the same name: its state says it completed, nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_real_sets_repartition_and_a_completed_restore_is_not_repeated() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let source = source_records();
    let root = real_root();
    let (orders, events) = (unique("pa-rp-orders"), unique("pa-rp-events"));
    let spec = json!({"backupRef": {"backupId": "b-none", "storage": pvc()},
        "kafkaCluster": {"bootstrapServers": [bootstrap]},
        "topicMapping": {"orders": orders, "events": events}, "createTopics": {"enabled": true},
        "repartitioning": {orders.clone(): {"targetPartitions": 2}},
        "partitionMapping": {"0": 1}});
    let status = run_restore(root.path(), "rp", spec.clone()).await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    let got = consume_all(&bootstrap, &orders, 2);
    let mut restored: Vec<KeyValue> = got
        .values()
        .flatten()
        .map(|g| (g.key.clone(), g.value.clone()))
        .collect();
    let mut wanted: Vec<KeyValue> = source
        .iter()
        .filter(|s| s.topic == "orders")
        .map(|s| (s.key.clone(), s.value.clone()))
        .collect();
    restored.sort();
    wanted.sort();
    assert_eq!(restored, wanted, "every record of orders, once");
    for (p, records) in &got {
        for g in records.iter().filter(|g| g.key.is_some()) {
            let want = kafka_backup_operator::kafka::topics::murmur2_partition(g.key.as_deref().unwrap(), 2);
            assert_eq!(*p, want, "key {:?}", g.key);
        }
    }
    // events' partition 0 went to partition 1 (created with two partitions).
    let events_got = consume_all(&bootstrap, &events, 2);
    assert_eq!((events_got[&0].len(), events_got[&1].len()), (0, 500));

    let again = run_restore(root.path(), "rp", spec).await;
    assert_eq!(again.phase, Some(Phase::Completed), "{again:?}");
    assert!(again.message.unwrap().contains("already completed"));
    assert_eq!(
        consume_all(&bootstrap, &orders, 2)
            .values()
            .map(Vec::len)
            .sum::<usize>(),
        1500
    );
}

/// The prior art's mapping rule for a committed source offset `s`, applied to the restored pairs
/// `(source offset, target offset)` of a partition (sorted): the exact source offset's target;
/// else the nearest pair below plus the distance (its restore extrapolated past the restored
/// range rather than clamping).
fn prior_art_rule(pairs: &[(i64, i64)], s: i64) -> Option<i64> {
    if let Some((_, t)) = pairs.iter().find(|(src, _)| *src == s) {
        return Some(*t);
    }
    pairs
        .iter()
        .rev()
        .find(|(src, _)| *src <= s)
        .map(|(src, t)| t + (s - src))
}

/// `autoConsumerGroups` translates the groups of the prior art's `consumer-groups-snapshot.json`
/// to where the prior art's own rule puts them; the restored pairs are read back independently
/// from the tracking headers. The targets held records before (purged), so target offsets differ
/// from the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_of_the_prior_art_land_where_its_mapping_rule_says() {
    let Some(bin) = service("KBO_TEST_NISSHI_BIN") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A broker of its own: the snapshot names group `billing`.
    let broker = start_broker(&bin, dir.path(), &[]);
    let bootstrap = broker.bootstrap.clone();
    let root = real_root();
    create_topic(&bootstrap, "orders-restored", 3).await;
    for p in 0..3 {
        produce_plain(&bootstrap, "orders-restored", p, 37).await;
    }
    let status = run_restore(
        root.path(),
        "groups",
        json!({"backupRef": {"backupId": "b-zstd", "storage": pvc()},
            "kafkaCluster": {"bootstrapServers": [bootstrap]},
            "topics": ["orders"], "topicMapping": {"orders": "orders-restored"}, "purgeTopics": true,
            "includeOriginalOffsetHeaders": true, "autoConsumerGroups": true}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(
        status.offset_reset.unwrap().groups_reset,
        Some(vec!["billing".to_owned()])
    );
    let got = consume_all(&bootstrap, "orders-restored", 3);
    let snapshot: Value = serde_json::from_slice(
        &std::fs::read(Path::new(REAL).join("storage/b-zstd/consumer-groups-snapshot.json")).unwrap(),
    )
    .unwrap();
    let committed_now = committed(&bootstrap, "billing", "orders-restored", 3);
    for p in 0..3 {
        let pairs: Vec<(i64, i64)> = got[&p]
            .iter()
            .map(|g| {
                let (_, v) = g.headers.iter().find(|(k, _)| k == "x-original-offset").unwrap();
                (
                    i64::from_le_bytes(v.clone().unwrap().try_into().unwrap()),
                    g.offset,
                )
            })
            .collect();
        let source_offset = snapshot["groups"][0]["offsets"]["orders"][p.to_string()]
            .as_i64()
            .unwrap();
        let expected = prior_art_rule(&pairs, source_offset).unwrap();
        assert_eq!(committed_now[&p], expected, "partition {p}");
        assert_eq!(expected, 37 + source_offset, "purged base 37");
    }
}

/// KafkaOffsetRollback finds the prior art's snapshot by id: rollback commits it, verify matches,
/// delete is refused (read only).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_and_verify_find_a_prior_art_snapshot_by_id() {
    let Some(bin) = service("KBO_TEST_NISSHI_BIN") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&bin, dir.path(), &[]);
    let bootstrap = broker.bootstrap.clone();
    create_topic(&bootstrap, "orders", 3).await;
    for p in 0..3 {
        produce_plain(&bootstrap, "orders", p, 520).await;
    }
    // The group somewhere else first.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "billing")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("orders", p, Offset::Offset(10)).unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    drop(consumer);
    let root = real_root();
    let cluster = json!({"bootstrapServers": [bootstrap]});
    let verify = json!({"operation": "Verify", "snapshotId": REAL_SNAPSHOT, "storage": pvc(), "kafkaCluster": cluster});
    let status = run_rollback(root.path(), verify.clone()).await;
    assert_eq!(
        status.phase,
        Some(Phase::Failed),
        "differs before the rollback: {status:?}"
    );
    let status = run_rollback(
        root.path(),
        json!({"operation": "Rollback", "snapshotId": REAL_SNAPSHOT, "storage": pvc(), "kafkaCluster": cluster}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(
        status.snapshot.unwrap().location.as_deref(),
        Some(format!("pvc://claim/store/offset-snapshots/{REAL_SNAPSHOT}/snapshot.json").as_str())
    );
    assert_eq!(
        committed(&bootstrap, "billing", "orders", 3),
        BTreeMap::from([(0, 200), (1, 350), (2, 518)])
    );
    let status = run_rollback(root.path(), verify).await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(status.verification.unwrap().matched, Some(true));
    let status = run_rollback(
        root.path(),
        json!({"operation": "Delete", "snapshotId": REAL_SNAPSHOT, "storage": pvc()}),
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert!(
        status
            .message
            .unwrap()
            .contains("was written by kafka-backup 0.x: this operator reads such snapshots"),
    );
    assert!(
        store_dir(root.path())
            .join(format!("offset-snapshots/{REAL_SNAPSHOT}/snapshot.json"))
            .exists()
    );
}

/// `run -f` of a KafkaBackupValidation of a real prior-art set: passes (exit code 0), and says it
/// cannot prove the set complete.
#[test]
fn run_f_validates_a_prior_art_set() {
    let root = real_root();
    let manifest = root.path().join("kbv.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: kafka.oso.sh/v1beta1\nkind: KafkaBackupValidation\nmetadata: {name: old}\nspec:\n  backupRef: {backupId: b-zstd, storage: {type: PVC, pvc: {claimName: claim, subPath: store}}}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(&manifest)
        .arg("--pvc-root")
        .arg(root.path())
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{status}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml: Value = serde_saphyr::from_str(&status).unwrap();
    let status = &yaml["status"];
    assert_eq!(status["result"], "Passed", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("cannot prove the set is complete"),
        "{status}"
    );
    assert_eq!(status["checks"][0]["name"], "Integrity");
    assert_eq!(status["checks"][0]["outcome"], "Passed");
}

/// The restore drill of a real prior-art set: restored into scratch topics, compared record for
/// record with the segments, counted, and the scratch topics deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_restore_drill_of_a_prior_art_set_passes() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let root = real_root();
    let prefix = format!("{}-", unique("drill"));
    let v: KafkaBackupValidation = resource(
        "KafkaBackupValidation",
        "drill",
        json!({"backupRef": {"backupId": "b-none", "storage": pvc()},
            "checks": {"restoreDrill": {"topicPrefix": prefix, "kafkaCluster": {"bootstrapServers": [bootstrap]}},
                "messageCount": {}, "offsetRange": {}}}),
    );
    let status = validation::execute(&v, &ctx(root.path(), "drill")).await;
    assert_eq!(status.result, Some(CheckOutcome::Passed), "{status:#?}");
    let drill = status
        .checks
        .iter()
        .flatten()
        .find(|c| c.name == "RestoreDrill")
        .unwrap();
    assert!(drill.message.as_deref().unwrap().contains("2000"), "{drill:?}");
    assert!(!topic_exists(&bootstrap, &format!("{prefix}orders")));
    assert!(
        !store_dir(root.path())
            .join("backups/b-none/restores")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
}
