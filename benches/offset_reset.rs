//! Offset reset throughput: 500 consumer groups x 12 partitions (one topic, committed offsets
//! present) reset to earliest with parallelism 1, 10 and 50, in one run, on the broker at
//! `KBO_TEST_KAFKA_BOOTSTRAP` (`.ci/services.sh` starts nisshi). Each round first commits offset 50
//! on every partition of every group with plain rdkafka, then times `offset_reset::execute` (the
//! code `run -f` and the reconciler run), snapshot on local disk included.
//!
//! `cargo bench --bench offset_reset`; `KBO_BENCH_GROUPS` changes the group count.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use kafka_backup_operator::{
    api::v1beta1::{KafkaOffsetReset, Phase},
    ops::{Context, ResourceRef, offset_reset},
    secrets::SecretStore,
    storage::StorageEnv,
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;

const PARTITIONS: i32 = 12;
const RECORDS_PER_PARTITION: i64 = 100;
const COMMITTED: i64 = 50;

fn commit_all(bootstrap: &str, topic: &str, groups: &[String]) {
    std::thread::scope(|scope| {
        for chunk in groups.chunks(groups.len().div_ceil(16).max(1)) {
            scope.spawn(move || {
                for group in chunk {
                    let consumer: BaseConsumer = ClientConfig::new()
                        .set("bootstrap.servers", bootstrap)
                        .set("group.id", group)
                        .create()
                        .unwrap();
                    let mut tpl = TopicPartitionList::new();
                    for p in 0..PARTITIONS {
                        tpl.add_partition_offset(topic, p, Offset::Offset(COMMITTED))
                            .unwrap();
                    }
                    consumer.commit(&tpl, CommitMode::Sync).unwrap();
                }
            });
        }
    });
}

fn main() {
    let Ok(bootstrap) = std::env::var("KBO_TEST_KAFKA_BOOTSTRAP") else {
        eprintln!("KBO_TEST_KAFKA_BOOTSTRAP is not set: start the services with `. .ci/services.sh`");
        return;
    };
    let groups_count: usize = std::env::var("KBO_BENCH_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("bench-reset-{nanos}");
    runtime.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        for r in admin
            .create_topics(
                &[NewTopic::new(&topic, PARTITIONS, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .unwrap()
        {
            r.unwrap();
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let sends = (0..PARTITIONS).flat_map(|p| (0..RECORDS_PER_PARTITION).map(move |i| (p, i)));
        for (p, i) in sends {
            let value = format!("record {i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic).partition(p).payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    println!(
        "offset reset to Earliest: {groups_count} groups x {PARTITIONS} partitions, broker {bootstrap}, 2 cores shared with the broker"
    );
    println!(
        "{:>11} | {:>9} | {:>13} | {:>10}",
        "parallelism", "wall (s)", "offsets/s", "speed-up"
    );
    let mut baseline = None;
    for parallelism in [1, 10, 50] {
        let groups: Vec<String> = (0..groups_count)
            .map(|g| format!("bench-{nanos}-p{parallelism}-g{g}"))
            .collect();
        commit_all(&bootstrap, &topic, &groups);
        let reset: KafkaOffsetReset = serde_json::from_value(json!({
            "apiVersion": "kafka.oso.sh/v1beta1",
            "kind": "KafkaOffsetReset",
            "metadata": {"name": format!("bench-p{parallelism}")},
            "spec": {
                "kafkaCluster": {"bootstrapServers": [bootstrap]},
                "consumerGroups": groups,
                "topics": [{"name": topic}],
                "strategy": "Earliest",
                "parallelism": parallelism,
                "snapshot": {"storage": {"type": "PVC", "pvc": {"claimName": "bench"}}},
            },
        }))
        .unwrap();
        let ctx = Context::new(
            ResourceRef {
                kind: "KafkaOffsetReset".into(),
                name: format!("bench-p{parallelism}"),
                ..Default::default()
            },
            SecretStore::None,
            StorageEnv {
                pvc_root: dir.path().to_owned(),
                kube: None,
            },
        );
        let started = Instant::now();
        let status = runtime.block_on(offset_reset::execute(&reset, &ctx));
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(status.phase, Some(Phase::Completed), "{:?}", status.message);
        assert_eq!(status.groups_reset, Some(groups_count as i32));
        let offsets = (groups_count as f64) * f64::from(PARTITIONS);
        let base = *baseline.get_or_insert(wall);
        println!(
            "{parallelism:>11} | {wall:>9.2} | {:>13.0} | {:>9.1}x",
            offsets / wall,
            base / wall
        );
    }
}
