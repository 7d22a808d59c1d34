//! Shared helpers of the integration tests: where the real services are.
//!
//! `.ci/services.sh` starts the Kafka broker, S3 and Azure servers and exports their endpoints as
//! `KBO_TEST_*` variables, plus `KBO_TEST_REQUIRE_SERVICES=1`. With that flag a missing endpoint
//! fails the test; without it (a developer's quick `cargo test`) the test is skipped with a note.

#![allow(dead_code)] // each test binary uses a different subset

/// The value of a service endpoint variable, or `None` when the test should be skipped.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("KBO_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{var} is not set although KBO_TEST_REQUIRE_SERVICES=1: the service did not start")
        }
        _ => {
            eprintln!(
                "skipping: {var} not set (run the tests through tests/run-all.sh to start the services)"
            );
            None
        }
    }
}

/// A name unique to this test run, for topics, groups, buckets and prefixes.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The `serve` binary and a TLS client for it.
pub mod https;
/// The operator's image and podman.
pub mod image;
/// Admission and conversion reviews, and the HTTPS router in-process.
pub mod review;

/// Creates `topic` with `partitions` partitions (replication 1) on the broker at `bootstrap`.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::{
        ClientConfig,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
    };
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

/// Creates `topic` (one partition, 5 records) and commits `offset` for `group`, all with
/// `client`'s settings; the group's consumer and partition list, to read the offset again.
pub async fn seed_group(
    client: rdkafka::ClientConfig,
    topic: &str,
    group: &str,
    offset: i64,
) -> (rdkafka::consumer::BaseConsumer, rdkafka::TopicPartitionList) {
    use rdkafka::{
        Offset, TopicPartitionList,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
        consumer::{BaseConsumer, CommitMode, Consumer},
        producer::{FutureProducer, FutureRecord},
    };
    use std::time::Duration;
    let admin: AdminClient<DefaultClientContext> = client.create().unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let producer: FutureProducer = client.create().unwrap();
    for i in 0..5 {
        let value = format!("record {i}");
        let record = FutureRecord::<(), _>::to(topic).partition(0).payload(&value);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let consumer: BaseConsumer = client.clone().set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    (consumer, tpl)
}

/// A nisshi broker process started by a test, killed on drop.
pub struct Broker {
    child: std::process::Child,
    /// host:port it listens on.
    pub bootstrap: String,
    /// The port it listens on.
    pub port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free local TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A nisshi broker (`bin`, from `KBO_TEST_NISSHI_BIN`) on a free port, started in `dir` (where
/// a relative storage URL points), with memory storage unless `extra` names a storage engine
/// and advertising its own address unless `extra` names another.
pub fn start_broker(bin: &str, dir: &std::path::Path, extra: &[&str]) -> Broker {
    use std::time::{Duration, Instant};
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut args = vec!["broker", "--listener-url", &url];
    if !extra.contains(&"--advertised-listener-url") {
        args.extend(["--advertised-listener-url", &url]);
    }
    if !extra.contains(&"--storage-engine") {
        args.extend(["--storage-engine", "memory://nisshi/"]);
    }
    let log = dir.join(format!("nisshi-{port}.log"));
    let mut child = std::process::Command::new(bin)
        .current_dir(dir)
        .args(args)
        .args(["--group-initial-rebalance-delay", "0s"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        // A broker that stops at once says why (e.g. a storage engine this build lacks).
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "broker {bin} {} did not listen on {port} ({exited:?}):\n{}",
            extra.join(" "),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
        port,
    }
}
