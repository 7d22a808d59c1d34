//! What the data benchmarks share: the data set (1 KiB JSON-like values, 16-byte keys, 8
//! partitions), producing it, the engines' context, and this process's CPU time and memory.

#![allow(dead_code)] // each benchmark uses its part

use std::{path::Path, time::Duration};

use kafka_backup_operator::{
    ops::{Context, ResourceRef},
    secrets::SecretStore,
    storage::StorageEnv,
};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer},
    types::RDKafkaErrorCode,
};

/// Partitions of the benchmark topic.
pub const PARTITIONS: i32 = 8;
/// Bytes per value.
pub const VALUE_LEN: usize = 1024;

/// User + system CPU seconds of this process and of its children it waited for so far
/// (/proc/self/stat): a step that runs the operator's binary (`run -f --workers`) counts it and
/// its workers.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 to 17 of the full line (utime, stime, cutime, cstime) are 12 to 15 after the
    // comm field.
    let ticks: f64 = (11..15)
        .map(|i| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0))
        .sum();
    ticks / 100.0
}

/// Resets this process's peak RSS (VmHWM) to its current RSS.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A KiB figure of /proc/self/status (`VmHWM:`, `VmRSS:`).
pub fn status_kib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// Creates `topic` with `partitions` partitions (the data set has [`PARTITIONS`]).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

/// Deletes `topic`, ignoring failures (clean-up at the end of a run).
pub async fn delete_topic(bootstrap: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let _ = admin.delete_topics(&[topic], &AdminOptions::new()).await;
}

/// 1 KiB JSON-like value: fixed structure, a few varying fields and a random hex blob.
pub fn value(i: u64, rng: &mut u64, buf: &mut Vec<u8>) {
    buf.clear();
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let head = format!(
        "{{\"id\":{i},\"user\":\"user-{:05}\",\"event\":\"{}\",\"amount\":{}.{:02},\"currency\":\"EUR\",\"tags\":[\"web\",\"checkout\",\"v2\"],\"blob\":\"",
        next() % 50_000,
        ["click", "view", "purchase", "refund"][(next() % 4) as usize],
        next() % 10_000,
        next() % 100
    );
    buf.extend_from_slice(head.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Random hex (4 bits of entropy per byte) and a repetitive tail: about 3.8x with zstd-3.
    let random = 360;
    while buf.len() < head.len() + random {
        let r = next();
        for k in 0..16 {
            buf.push(HEX[((r >> (k * 4)) & 0xf) as usize]);
        }
    }
    buf.truncate(head.len() + random);
    let filler = b"\",\"meta\":{\"source\":\"benchmark\",\"region\":\"eu-west-1\",\"schema\":\"orders.v2\"},\"pad\":\"";
    buf.extend_from_slice(filler);
    while buf.len() < VALUE_LEN - 2 {
        buf.extend_from_slice(b"abcdefgh");
    }
    buf.truncate(VALUE_LEN - 2);
    buf.extend_from_slice(b"\"}");
}

/// Produces `records` records of the data set to `topic` with plain rdkafka (acks=all, round
/// robin over the partitions, `enable.idempotence` as asked); returns the payload bytes (keys +
/// values).
pub fn produce(bootstrap: &str, topic: &str, records: u64, idempotent: bool) -> u64 {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", idempotent.to_string())
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .create()
        .unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = Vec::with_capacity(VALUE_LEN);
    let mut bytes = 0;
    for i in 0..records {
        value(i, &mut rng, &mut buf);
        let key = format!("key-{:012}", i % 1_000_000);
        bytes += (key.len() + buf.len()) as u64;
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition((i % PARTITIONS as u64) as i32)
            .key(key.as_bytes())
            .payload(&buf[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => panic!("{e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    bytes
}

/// The engines' context for resource `name`, PVC claims under `root`.
pub fn ctx(root: &Path, name: &str, secrets: SecretStore) -> Context {
    Context::new(
        ResourceRef {
            kind: String::new(),
            namespace: None,
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

/// Bytes of the files below `dir`.
pub fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_size(&path)
                    } else {
                        e.metadata().map_or(0, |m| m.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
