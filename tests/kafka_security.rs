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
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_broker(bin: &str, extra: &[&str]) -> Broker {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args([
            "--storage-engine",
            "memory://nisshi/",
            "--group-initial-rebalance-delay",
            "0s",
        ])
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
    let Some(bin) = service("KBO_TEST_NISSHI_BIN") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let pki = certs::generate(&["localhost".into(), "127.0.0.1".into()], 1).unwrap();
    std::fs::write(work.path().join("broker.crt"), &pki.cert_pem).unwrap();
    std::fs::write(work.path().join("broker.key"), &pki.key_pem).unwrap();
    let cert = work.path().join("broker.crt");
    let key = work.path().join("broker.key");
    let broker = start_broker(
        &bin,
        &["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()],
    );

    // Set up over TLS with plain rdkafka: a topic and a group at offset 3.
    let topic = unique("tls");
    let group = unique("tls-group");
    let admin: AdminClient<DefaultClientContext> =
        tls_client(&broker.bootstrap, &pki.ca_cert_pem).create().unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
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
        &[
            ("ca.crt", &pki.ca_cert_pem),
            ("user.crt", &client.cert_pem),
            ("user.key", &client.key_pem),
        ],
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
    let committed = consumer
        .committed_offsets(tpl.clone(), Duration::from_secs(10))
        .unwrap();
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(5));

    // A missing key in the Secret is named, and nothing is attempted.
    let (ok, status, stderr) = run_f(&manifest("cluster-ca.crt"), &secrets);
    assert!(!ok);
    let message = status["status"]["message"].as_str().unwrap_or(&stderr).to_owned();
    assert!(
        message.contains("Secret kafka-tls has no key cluster-ca.crt"),
        "{message}"
    );

    // A CA that did not sign the broker's certificate: the run fails, it does not hang.
    let other = certs::generate(&["localhost".into()], 1).unwrap();
    write_secret(&secrets, "kafka-tls", &[("ca.crt", &other.ca_cert_pem)]);
    let started = Instant::now();
    let (ok, status, stderr) = run_f(&manifest("ca.crt"), &secrets);
    assert!(!ok, "{status}");
    assert_eq!(status["status"]["phase"], "Failed", "{status}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// SASL/SCRAM needs a nisshi built with a storage engine that keeps users (`--features libsql`);
/// the CI broker build (memory engine only) cannot, so this runs where `KBO_TEST_NISSHI_SASL_BIN`
/// names such a build and is skipped otherwise (not required by KBO_TEST_REQUIRE_SERVICES).
/// nisshi creates users only through an unauthenticated broker: the users are made first, then
/// the broker restarts with `--authentication` on the same database.
#[tokio::test(flavor = "multi_thread")]
async fn run_f_authenticates_with_scram_from_secrets() {
    let Ok(bin) = std::env::var("KBO_TEST_NISSHI_SASL_BIN") else {
        eprintln!("skipping: KBO_TEST_NISSHI_SASL_BIN not set (a nisshi built with --features libsql)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let broker_in = |extra: &[&str]| {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .current_dir(work.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args([
                "--storage-engine",
                "sqlite://nisshi.db",
                "--group-initial-rebalance-delay",
                "0s",
            ])
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
    };
    {
        let setup = broker_in(&[]);
        for mechanism in ["scram256", "scram512"] {
            let created = Command::new(&bin)
                .args([
                    "user",
                    "create",
                    "--broker",
                    &format!("tcp://{}", setup.bootstrap),
                ])
                .args(["--mechanism", mechanism, &format!("user-{mechanism}"), "s3cret"])
                .output()
                .unwrap();
            assert!(
                created.status.success(),
                "{}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
    }
    let broker = broker_in(&["--authentication"]);
    let secrets = work.path().join("secrets");
    for (mechanism, spec) in [("scram256", "SCRAM-SHA-256"), ("scram512", "SCRAM-SHA-512")] {
        let user = format!("user-{mechanism}\n");
        let snapshot = |password: &str| {
            write_secret(
                &secrets,
                "kafka-user",
                &[("username", &user), ("password", password)],
            );
            let manifest = format!(
                "apiVersion: kafka.oso.sh/v1beta1\nkind: KafkaOffsetRollback\nmetadata:\n  name: sasl\nspec:\n  operation: Snapshot\n  snapshotId: {}\n  storage: {{type: PVC, pvc: {{claimName: snaps}}}}\n  consumerGroups: [\"{}\"]\n  kafkaCluster:\n    bootstrapServers: [\"{}\"]\n    securityProtocol: SASL_PLAINTEXT\n    saslSecret: {{name: kafka-user, mechanism: {spec}}}\n",
                unique("sasl"),
                unique("group"),
                broker.bootstrap
            );
            let file = work.path().join("rollback.yaml");
            std::fs::write(&file, &manifest).unwrap();
            Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
                .args(["run", "-f"])
                .arg(&file)
                .arg("--secrets-dir")
                .arg(&secrets)
                .arg("--pvc-root")
                .arg(work.path())
                .output()
                .unwrap()
        };
        let output = snapshot("s3cret\n");
        assert!(
            output.status.success(),
            "{spec}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // A wrong password is refused by the broker: the run fails, it does not hang.
        let output = snapshot("wrong");
        assert!(!output.status.success(), "{spec}: a wrong password must fail");
        let status: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
        assert_eq!(status["status"]["phase"], "Failed");
    }
}
