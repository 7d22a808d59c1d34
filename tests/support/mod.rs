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

/// The account key of Azurite's well-known development account `devstoreaccount1`.
pub const AZURITE_ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Secrets holding Secret `azure` with Azurite's account key under `AZURE_STORAGE_KEY` (what
/// `credentialsSecret: {name: azure}` reads).
pub fn azurite_secrets() -> kafka_backup_operator::secrets::SecretStore {
    kafka_backup_operator::secrets::SecretStore::Map {
        origin: "test".into(),
        secrets: [(
            "azure".to_owned(),
            [(
                "AZURE_STORAGE_KEY".to_owned(),
                AZURITE_ACCOUNT_KEY.as_bytes().to_vec(),
            )]
            .into(),
        )]
        .into(),
    }
}

/// Every file below `dir`, sorted.
pub fn files_below(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Copies the files below `from` to `to` (writable, whatever the source's permissions).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for file in files_below(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
        let mut perms = std::fs::metadata(&target).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&target, perms).unwrap();
    }
}

/// The cluster of `KUBECONFIG`, for the ignored cluster tests.
pub mod cluster;
/// The fault harness: proxies that break, a disk that fills up, the fault matrix.
pub mod faults;
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

/// What a [`proxy`] saw.
#[derive(Default)]
pub struct ProxyStats {
    /// Connections cut.
    pub cuts: std::sync::atomic::AtomicUsize,
    /// Bytes each connection's client sent.
    pub sent: std::sync::Mutex<Vec<usize>>,
}

/// A proxy to the broker on `broker_port`; with `cut_after`, every connection is cut once its
/// client has sent that many bytes (mid-request, as a broker restart or a network fault would).
pub async fn proxy(
    listener: tokio::net::TcpListener,
    broker_port: u16,
    cut_after: Option<usize>,
    stats: std::sync::Arc<ProxyStats>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((client, _)) = listener.accept().await {
        let stats = stats.clone();
        tokio::spawn(async move {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await else {
                return;
            };
            let index = {
                let mut sent = stats.sent.lock().unwrap();
                sent.push(0);
                sent.len() - 1
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            let answers =
                tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
            let mut sent = 0;
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match from_client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if cut_after.is_some_and(|limit| sent + n > limit) {
                    // Half of this chunk goes through: the broker sees a truncated request.
                    let _ = to_server.write_all(&buf[..n / 2]).await;
                    stats.cuts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                sent += n;
                stats.sent.lock().unwrap()[index] = sent;
                if to_server.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            answers.abort();
        });
    }
}

/// A broker of its own that clients reach only through a [`proxy`] (it advertises the proxy's
/// address): the broker, the proxy's address and what the proxy sees.
pub async fn proxied_broker(
    nisshi: &str,
    dir: &std::path::Path,
    cut_after: Option<usize>,
) -> (
    Broker,
    String,
    std::sync::Arc<ProxyStats>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let advertised = format!("tcp://127.0.0.1:{port}");
    let broker = start_broker(nisshi, dir, &["--advertised-listener-url", &advertised]);
    let stats = std::sync::Arc::new(ProxyStats::default());
    let proxying = tokio::spawn(proxy(listener, broker.port, cut_after, stats.clone()));
    (broker, format!("127.0.0.1:{port}"), stats, proxying)
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

/// Runs `run -f <manifest>` of the binary under test, `configure` adding arguments and
/// environment: success, the printed document (`status: ...`), stderr.
pub fn run_f(
    manifest: &std::path::Path,
    configure: impl FnOnce(&mut std::process::Command) -> &mut std::process::Command,
) -> (bool, serde_json::Value, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"));
    command.args(["run", "-f"]).arg(manifest);
    let output = configure(&mut command)
        .output()
        .unwrap_or_else(|e| panic!("running run -f: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let document = serde_saphyr::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (output.status.success(), document, stderr)
}

/// Writes a resource for `run -f` into `dir`/`name`.yaml: its path.
pub fn write_run_manifest(
    dir: &std::path::Path,
    kind: &str,
    name: &str,
    spec: serde_json::Value,
) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let doc = serde_json::json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": kind,
        "metadata": {"name": name}, "spec": spec});
    std::fs::write(&path, serde_json::to_string(&doc).unwrap()).unwrap();
    path
}

/// Runs `run -f <file> --pvc-root <root>` and SIGKILLs it after `after`; whether it was still
/// running then.
pub fn run_and_kill(file: &std::path::Path, root: &std::path::Path, after: std::time::Duration) -> bool {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(file)
        .arg("--pvc-root")
        .arg(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    running
}

/// Runs `run -f <file> --pvc-root <root>` to its end, which must be a success: the printed
/// status.
pub fn run_to_end(file: &std::path::Path, root: &std::path::Path) -> serde_json::Value {
    let (ok, document, stderr) = run_f(file, |c| c.arg("--pvc-root").arg(root));
    assert!(ok, "run -f failed: {document}\n{stderr}");
    document["status"].clone()
}

/// Produces `count` records to each of the topic's `partitions` through a client of `config`:
/// record i of partition p has key `k{i}`, value `v{p}-{i}`, timestamp `timestamp(i)` and the
/// headers `headers(p, i)` (name, value), in order.
pub async fn produce<N: AsRef<str>>(
    config: &rdkafka::ClientConfig,
    topic: &str,
    partitions: i32,
    count: i64,
    timestamp: impl Fn(i64) -> i64,
    headers: impl Fn(i32, i64) -> Vec<(N, Vec<u8>)>,
) {
    use rdkafka::{
        message::{Header, OwnedHeaders},
        producer::{FutureProducer, FutureRecord},
    };
    let producer: FutureProducer = config.clone().set("linger.ms", "5").create().unwrap();
    for p in 0..partitions {
        for i in 0..count {
            let (key, value) = (format!("k{i}"), format!("v{p}-{i}"));
            let pairs = headers(p, i);
            let h = pairs.iter().fold(OwnedHeaders::new(), |h, (name, value)| {
                h.insert(Header {
                    key: name.as_ref(),
                    value: Some(value),
                })
            });
            let record = FutureRecord::to(topic)
                .partition(p)
                .key(&key)
                .payload(&value)
                .timestamp(timestamp(i))
                .headers(h);
            producer
                .send(record, std::time::Duration::from_secs(30))
                .await
                .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
        }
    }
}

/// What `consumer`'s group has committed on the topic's `partitions` (a partition without a
/// committed offset is left out).
pub fn committed(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partitions: i32,
) -> std::collections::BTreeMap<i32, i64> {
    use rdkafka::{Offset, TopicPartitionList, consumer::Consumer};
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let answer = consumer
        .committed_offsets(tpl, std::time::Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("reading committed offsets of {topic}: {e}"));
    answer
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}
