//! Kafka connections with TLS (and SASL where the broker build supports it) through `run -f`,
//! with the Secrets read from `--secrets-dir`. Each test starts its own nisshi broker with the
//! security it needs, from the binary `.ci/services.sh` installs (`KBO_TEST_NISSHI_BIN`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kafka_backup_operator::certs;
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;
use support::{service, unique};

/// A broker process, killed on drop.
struct Broker {
    child: Child,
    bootstrap: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_broker(bin: &str, extra: &[&str]) -> Broker {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://nisshi/", "--group-initial-rebalance-delay", "0s"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "broker did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        child,
        bootstrap: format!("127.0.0.1:{port}"),
    }
}

fn tls_client(bootstrap: &str, ca_pem: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("security.protocol", "ssl")
        .set("ssl.ca.pem", ca_pem);
    config
}

/// Writes a Secret as `--secrets-dir` expects it: DIR/<name>/<key>.
fn write_secret(dir: &Path, name: &str, keys: &[(&str, &str)]) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    for (key, value) in keys {
        std::fs::write(dir.join(name).join(key), value).unwrap();
    }
}

fn run_f(manifest: &str, secrets: &Path) -> (bool, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resource.yaml");
    std::fs::write(&file, manifest).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(&file)
        .arg("--secrets-dir")
        .arg(secrets)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let status = serde_saphyr::from_str(&stdout).unwrap_or(Value::Null);
    (output.status.success(), status, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn run_f_resets_a_group_over_tls_with_the_ca_and_client_certificate_from_secrets() {
    let Some(bin) = service("KBO_TEST_NISSHI_BIN") else { return };
    let work = tempfile::tempdir().unwrap();
    let pki = certs::generate(&["localhost".into(), "127.0.0.1".into()], 1).unwrap();
    std::fs::write(work.path().join("broker.crt"), &pki.cert_pem).unwrap();
    std::fs::write(work.path().join("broker.key"), &pki.key_pem).unwrap();
    let cert = work.path().join("broker.crt");
    let key = work.path().join("broker.key");
    let broker = start_broker(&bin, &["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()]);

    // Set up over TLS with plain rdkafka: a topic and a group at offset 3.
    let topic = unique("tls");
    let group = unique("tls-group");
    let admin: AdminClient<DefaultClientContext> = tls_client(&broker.bootstrap, &pki.ca_cert_pem).create().unwrap();
    for r in admin
        .create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let producer: FutureProducer = tls_client(&broker.bootstrap, &pki.ca_cert_pem).create().unwrap();
    for i in 0..5 {
        let value = format!("record {i}");
        let record = FutureRecord::<(), _>::to(&topic).partition(0).payload(&value);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let consumer: BaseConsumer = tls_client(&broker.bootstrap, &pki.ca_cert_pem)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(0)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();

    // The client certificate is another leaf of a second CA: librdkafka checks that it and its key
    // belong together, nisshi does not ask for it.
    let client = certs::generate(&["client".into()], 1).unwrap();
    let secrets = work.path().join("secrets");
    write_secret(
        &secrets,
        "kafka-tls",
        &[("ca.crt", &pki.ca_cert_pem), ("user.crt", &client.cert_pem), ("user.key", &client.key_pem)],
    );
    let manifest = |ca_key: &str| {
        format!(
            "apiVersion: kafka.oso.sh/v1beta1\nkind: KafkaOffsetReset\nmetadata:\n  name: tls-reset\nspec:\n  kafkaCluster:\n    bootstrapServers: [\"{}\"]\n    securityProtocol: SSL\n    tlsSecret:\n      name: kafka-tls\n      caKey: {ca_key}\n      certKey: user.crt\n      keyKey: user.key\n  consumerGroups: [\"{group}\"]\n  strategy: Latest\n  topics: [{{name: \"{topic}\"}}]\n  snapshot:\n    enabled: false\n",
            broker.bootstrap
        )
    };
    let (ok, status, stderr) = run_f(&manifest("ca.crt"), &secrets);
    assert!(ok, "{status}\n{stderr}");
    assert_eq!(status["status"]["groupsReset"], 1, "{status}");
    let committed = consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)).unwrap();
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(5));

    // A missing key in the Secret is named, and nothing is attempted.
    let (ok, status, stderr) = run_f(&manifest("cluster-ca.crt"), &secrets);
    assert!(!ok);
    let message = status["status"]["message"].as_str().unwrap_or(&stderr).to_owned();
    assert!(message.contains("Secret kafka-tls has no key cluster-ca.crt"), "{message}");

    // A CA that did not sign the broker's certificate: the run fails, it does not hang.
    let other = certs::generate(&["localhost".into()], 1).unwrap();
    write_secret(
        &secrets,
        "kafka-tls",
        &[("ca.crt", &other.ca_cert_pem)],
    );
    let started = Instant::now();
    let (ok, status, stderr) = run_f(&manifest("ca.crt"), &secrets);
    assert!(!ok, "{status}");
    assert_eq!(status["status"]["phase"], "Failed", "{status}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
