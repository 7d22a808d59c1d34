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
    let child = std::process::Command::new(bin)
        .current_dir(dir)
        .args(args)
        .args(["--group-initial-rebalance-delay", "0s"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "broker did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
        port,
    }
}

/// A nisshi broker requiring SASL/SCRAM (`bin` must be built with a user store, `--features
/// libsql`), its database in `dir`. nisshi creates users only through an unauthenticated broker:
/// `users` (mechanism `scram256` or `scram512`, name, password) are made first, then the broker
/// restarts with `--authentication` (and `extra`, e.g. `--cert`/`--key`) on the same database.
pub fn scram_broker(
    bin: &str,
    dir: &std::path::Path,
    users: &[(&str, &str, &str)],
    extra: &[&str],
) -> Broker {
    let sqlite = ["--storage-engine", "sqlite://nisshi.db"];
    {
        let setup = start_broker(bin, dir, &sqlite);
        for (mechanism, name, password) in users {
            let created = std::process::Command::new(bin)
                .args([
                    "user",
                    "create",
                    "--broker",
                    &format!("tcp://{}", setup.bootstrap),
                ])
                .args(["--mechanism", mechanism, name, password])
                .output()
                .unwrap_or_else(|e| panic!("running {bin} user create: {e}"));
            assert!(
                created.status.success(),
                "{}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
    }
    let mut args = sqlite.to_vec();
    args.push("--authentication");
    args.extend_from_slice(extra);
    start_broker(bin, dir, &args)
}
