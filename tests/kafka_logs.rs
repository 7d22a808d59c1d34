//! What librdkafka's callbacks log during a normal backup against the real broker: the end of
//! each partition (`enable.partition.eof`, how a backup knows it has read everything) is a normal
//! event, logged at debug, not the `ERROR librdkafka: Global error: PartitionEOF` rdkafka's
//! default client context writes for it. A test binary of its own: it installs the process-wide
//! tracing subscriber (and the `log` bridge rdkafka's default context writes through).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use kafka_backup_operator::{
    api::v1beta1::{KafkaBackup, RunPhase},
    ops::{Context, ResourceRef, backup},
    secrets::SecretStore,
    storage::StorageEnv,
};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use support::{create_topic, service, unique};
use tracing::{Level, field::Field};
use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// Every event logged in the process: its level and its fields as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(Level, String)>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push((*event.metadata().level(), fields.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_backup_logs_no_partition_eof_error() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let captured = Captured::default();
    tracing_subscriber::registry()
        .with(captured.clone())
        .try_init()
        .unwrap();

    let topic = unique("eof");
    create_topic(&bootstrap, &topic, 3).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for p in 0..3 {
        for i in 0..4 {
            let value = format!("{p}-{i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic).partition(p).payload(&value),
                    std::time::Duration::from_secs(30),
                )
                .await
                .unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let backup: KafkaBackup = serde_json::from_value(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
        "metadata": {"name": "eof", "namespace": "ns"},
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [topic],
            "storage": {"type": "PVC", "pvc": {"claimName": "b"}}},
    }))
    .unwrap();
    let ctx = Context::new(
        ResourceRef {
            kind: "KafkaBackup".into(),
            namespace: Some("ns".into()),
            name: "eof".into(),
            uid: None,
        },
        SecretStore::None,
        StorageEnv {
            pvc_root: dir.path().to_owned(),
            config_maps: Default::default(),
        },
    );
    let status = backup::execute(&backup, &ctx).await;
    assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
    assert_eq!(status.last_run.as_ref().and_then(|r| r.records), Some(12));

    let events = captured.0.lock().unwrap().clone();
    let eof = |text: &str| text.contains("PartitionEOF") || text.contains("Partition EOF");
    let errors: Vec<_> = events
        .iter()
        .filter(|(level, text)| *level == Level::ERROR && eof(text))
        .collect();
    assert!(
        errors.is_empty(),
        "ends of partitions logged as errors: {errors:?}"
    );
    let noticed = events
        .iter()
        .filter(|(level, text)| *level == Level::DEBUG && eof(text))
        .count();
    assert!(
        noticed >= 3,
        "each partition's end is logged at debug ({noticed} seen): {events:?}"
    );
}
