//! Every complete seed example (`tests/fixtures/seeds`, less the fragments
//! `tests/fixtures/admission/seed-exemptions.yaml` names) run through `run -f` of the real binary
//! against nisshi brokers and SeaweedFS (S3), as a user would run it.
//!
//! Of each seed only what points it at the test services is rewritten, in a copy: the
//! `bootstrapServers` (each host name of the seed stands for one broker of the test), and the S3
//! location: `endpoint`, `pathStyle`, `allowHttp` added, and the bucket is the test bucket, the
//! seed's bucket becoming a prefix `<run id>/<bucket>` in front of the seed's own prefix, so runs
//! do not meet (a bucket per run would use up the shared SeaweedFS's volumes: each bucket is a
//! collection with volumes of its own). Topics and groups keep the seeds' names: every broker is started by this
//! test, empty. What a seed assumes exists is made first: topics with records, groups with
//! committed offsets, Secrets, and the backup sets the restore seeds name (no backup seed writes
//! those ids: they are written by a KafkaBackup of the same topics into the restore seed's
//! location, taken from `production-us-west-2` with its consumer-group snapshot, as the restore
//! seeds' HeaderBased offset resets require). Scheduled seeds run with `--once`; every snapshot
//! of a seed that names no storage goes to the embedded default location (`--catalog-dir`).
//!
//! What a seed would find in a cluster, `run -f` finds in its state directory: the seeds with
//! ConfigMap snapshot storage keep their snapshots in the local ConfigMap store
//! (`<state-dir>/configmaps`), the mapping of reset-from-mapping is the seed document's ConfigMap,
//! given as a document of the same `-f` file, and the `backupRef: {name: production-backup}` of
//! pitr-restore-v1.0.0 is the KafkaBackup production-backup run before it (recorded in
//! `<state-dir>/kafkabackups`). The seeds that reach their cluster over SASL_SSL with SCRAM run
//! against brokers with SCRAM users, from the nisshi .ci/services.sh builds with its user store
//! (libsql).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use kafka_backup_operator::{certs, kafka::headers};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer},
};
use serde_json::{Value, json};
use support::{Broker, service, start_broker, unique};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seeds");
const EXEMPTIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/admission/seed-exemptions.yaml"
);

/// Seeds that need a SASL_SSL/SCRAM broker: those whose cluster says so, and those that use what
/// one of them stored (verify-rollback checks the snapshot pre-migration-snapshot takes;
/// rollback-restore rolls back to the snapshot full-restore takes).
const NEED_SASL: &[&str] = &[
    "kafkaoffsetreset/reset-to-timestamp.yaml",
    "kafkaoffsetrollback/pre-migration-snapshot.yaml",
    "kafkaoffsetrollback/emergency-rollback.yaml",
    "kafkaoffsetrollback/verify-rollback.yaml",
    "kafkarestore/pitr-restore.yaml",
    "kafkarestore/dr-restore.yaml",
    "kafkarestore/full-restore.yaml",
    "kafkaoffsetrollback/rollback-restore.yaml",
];

/// 2024-12-01T10:00:00Z: record `i` of each partition is `i * 5` minutes later (10:00 to 10:45),
/// so the seeds' points in time (10:00, 10:30) fall inside the data.
const BASE_MS: i64 = 1_733_047_200_000;

/// Records per partition of the seeded topics.
const RECORDS: i64 = 10;

/// The password of the SCRAM users (`kafka-user`, `dr-kafka-user`).
const PASSWORD: &str = "s3cret";

/// A broker of the test and how to reach it.
struct Cluster {
    broker: Broker,
    /// SASL_SSL with SCRAM-SHA-256 as this user, trusting the test CA in this file.
    sasl: Option<(String, PathBuf)>,
}

impl Cluster {
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.broker.bootstrap);
        if let Some((user, ca)) = &self.sasl {
            config
                .set("security.protocol", "sasl_ssl")
                .set("sasl.mechanisms", "SCRAM-SHA-256")
                .set("sasl.username", user)
                .set("sasl.password", PASSWORD)
                .set("ssl.ca.location", ca.to_str().unwrap());
        }
        config
    }

    async fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        for created in admin.create_topics(&new, &AdminOptions::new()).await.unwrap() {
            created.unwrap();
        }
    }

    /// [`RECORDS`] records to each of the topic's `partitions`, timestamps from [`BASE_MS`], with
    /// `headers(partition, i)`.
    async fn produce(
        &self,
        topic: &str,
        partitions: i32,
        headers: impl Fn(i32, i64) -> Vec<(&'static str, Vec<u8>)>,
    ) {
        let timestamp = |i| BASE_MS + i * 300_000;
        support::produce(&self.config(), topic, partitions, RECORDS, timestamp, headers).await;
    }

    fn consumer(&self, group: &str) -> BaseConsumer {
        self.config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }

    /// Commits `offset` for every partition of `topics` (name, partitions), without joining.
    fn commit(&self, group: &str, topics: &[(&str, i32)], offset: i64) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partitions) in topics {
            for p in 0..*partitions {
                tpl.add_partition_offset(topic, p, Offset::Offset(offset))
                    .unwrap();
            }
        }
        self.consumer(group).commit(&tpl, CommitMode::Sync).unwrap();
    }

    /// The group's committed offsets on the topic's partitions (absent: none).
    fn committed(&self, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        support::committed(&self.consumer(group), topic, partitions)
    }

    /// Records in the topic: the sum of its partitions' high watermarks.
    fn records(&self, topic: &str, partitions: i32) -> i64 {
        let consumer = self.consumer(&unique("watermarks"));
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .sum()
    }
}

/// The seeded topics of a production cluster: orders and payments, two partitions each.
const PRODUCTION_TOPICS: &[(&str, i32)] = &[("orders", 2), ("payments", 2)];

/// The test's services, files and what ran.
struct World {
    dir: tempfile::TempDir,
    nisshi: String,
    sasl_nisshi: String,
    run: String,
    s3_endpoint: String,
    s3_bucket: String,
    s3_key: (String, String),
    /// The CA that signed the SASL brokers' certificate, as a file (SSL_CERT_FILE of `run -f`:
    /// the seeds name no tlsSecret, so the system's trust store is used).
    ca_file: PathBuf,
    broker_pki: certs::Pki,
    ran: BTreeSet<String>,
}

impl World {
    fn catalog(&self) -> PathBuf {
        self.dir.path().join("catalog")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The local ConfigMap store: the default below the state directory.
    fn config_maps(&self) -> PathBuf {
        self.state().join("configmaps")
    }

    /// The snapshot `id` in the seeds' ConfigMap offset-snapshots, when it is there.
    fn config_map_snapshot(&self, id: &str) -> Option<Value> {
        let file = self.config_maps().join(format!("offset-snapshots/{id}.json"));
        let text = std::fs::read_to_string(file).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }

    fn secrets(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    fn write_secret(&self, name: &str, keys: &[(&str, &str)]) {
        let dir = self.secrets().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (key, value) in keys {
            std::fs::write(dir.join(key), value).unwrap();
        }
    }

    fn plaintext(&self) -> Cluster {
        let dir = tempfile::tempdir_in(self.dir.path()).unwrap().keep();
        Cluster {
            broker: start_broker(&self.nisshi, &dir, &[]),
            sasl: None,
        }
    }

    /// A SASL_SSL broker with the SCRAM-SHA-256 user `user`.
    fn sasl(&self, user: &str) -> Cluster {
        let bin = &self.sasl_nisshi;
        let dir = tempfile::tempdir_in(self.dir.path()).unwrap().keep();
        let (cert, key) = (dir.join("broker.crt"), dir.join("broker.key"));
        std::fs::write(&cert, &self.broker_pki.cert_pem).unwrap();
        std::fs::write(&key, &self.broker_pki.key_pem).unwrap();
        let broker = support::scram_broker(
            bin,
            &dir,
            &[("scram256", user, PASSWORD)],
            &["--cert", cert.to_str().unwrap(), "--key", key.to_str().unwrap()],
        );
        Cluster {
            broker,
            sasl: Some((user.into(), self.ca_file.clone())),
        }
    }

    /// The seed `file` with its clusters (`host:port` -> cluster) and S3 location pointed at the
    /// test's, written next to the other files.
    fn rewrite(&self, file: &str, clusters: &[(&str, &Cluster)]) -> PathBuf {
        let text = std::fs::read_to_string(Path::new(SEEDS).join(file)).unwrap();
        let mut seed: Value = serde_saphyr::from_str(&text).unwrap();
        let spec = seed["spec"].as_object_mut().unwrap();
        for block in ["kafkaCluster", "targetCluster"] {
            if let Some(servers) = spec
                .get_mut(block)
                .and_then(|b| b.get_mut("bootstrapServers"))
                .and_then(Value::as_array_mut)
            {
                for server in servers {
                    let host = server.as_str().unwrap().to_owned();
                    let (_, cluster) = clusters
                        .iter()
                        .find(|(h, _)| *h == host)
                        .unwrap_or_else(|| panic!("{file}: no test broker stands for {host}"));
                    *server = json!(cluster.broker.bootstrap);
                }
            }
        }
        if let Some(s3) = spec.get_mut("storage").and_then(|s| s.get_mut("s3")) {
            let (bucket, prefix) = (s3["bucket"].as_str().unwrap(), s3["prefix"].as_str());
            *s3 = self.s3_location(bucket, prefix, s3["region"].as_str());
        }
        let path = self.dir.path().join(file.replace('/', "-"));
        std::fs::write(&path, serde_json::to_string_pretty(&seed).unwrap()).unwrap();
        path
    }

    /// `run -f` of a manifest file: success, the printed status, stderr.
    fn run_f(&self, manifest: &Path, args: &[&str]) -> (bool, Value, String) {
        let (ok, document, stderr) = support::run_f(manifest, |command| {
            command
                .arg("--secrets-dir")
                .arg(self.secrets())
                .arg("--catalog-dir")
                .arg(self.catalog())
                .arg("--state-dir")
                .arg(self.state())
                .arg("--pvc-root")
                .arg(self.dir.path().join("pvc"))
                .args(args)
                // A seed without credentialsSecret uses the default AWS chain.
                .env("AWS_ACCESS_KEY_ID", &self.s3_key.0)
                .env("AWS_SECRET_ACCESS_KEY", &self.s3_key.1)
                // The seeds name no tlsSecret: the brokers' CA is the system's trust.
                .env("SSL_CERT_FILE", &self.ca_file)
                .env_remove("KBO_STATE_DIR")
                .env_remove("KBO_CATALOG_DIR")
                .env_remove("KBO_CONFIGMAPS_DIR")
        });
        (ok, document["status"].clone(), stderr)
    }

    /// Runs the seed `file` and asserts phase Completed; returns its status.
    fn seed(&mut self, file: &str, clusters: &[(&str, &Cluster)], args: &[&str]) -> Value {
        self.seed_after(&[], file, clusters, args).0
    }

    /// Runs the seed `file` as the last document of one `-f` file, after `documents`, and
    /// asserts phase Completed; returns its status and stderr.
    fn seed_after(
        &mut self,
        documents: &[Value],
        file: &str,
        clusters: &[(&str, &Cluster)],
        args: &[&str],
    ) -> (Value, String) {
        let mut manifest = self.rewrite(file, clusters);
        if !documents.is_empty() {
            let seed = std::fs::read_to_string(&manifest).unwrap();
            let all: Vec<String> = documents
                .iter()
                .map(|d| serde_json::to_string_pretty(d).unwrap())
                .chain([seed])
                .collect();
            manifest = manifest.with_extension("documents.yaml");
            std::fs::write(&manifest, all.join("\n---\n")).unwrap();
        }
        let (ok, status, stderr) = self.run_f(&manifest, args);
        assert!(
            ok && status["phase"] == "Completed",
            "seed {file} did not complete:\nstatus: {status}\nstderr: {stderr}"
        );
        eprintln!("seed {file}: Completed");
        self.ran.insert(file.to_owned());
        (status, stderr)
    }

    /// Runs a test-written manifest (set-up, not a seed) and asserts phase Completed.
    fn setup(&self, name: &str, manifest: &Value) -> Value {
        let path = self.dir.path().join(format!("setup-{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(manifest).unwrap()).unwrap();
        let (ok, status, stderr) = self.run_f(&path, &[]);
        assert!(
            ok && status["phase"] == "Completed",
            "set-up {name} did not complete:\nstatus: {status}\nstderr: {stderr}"
        );
        status
    }

    /// The `s3` block standing for a seed's `bucket` and `prefix`: the test bucket, prefix
    /// `<run>/<bucket>/<prefix>`, the seed's region.
    fn s3_location(&self, bucket: &str, prefix: Option<&str>, region: Option<&str>) -> Value {
        let prefix = match prefix {
            Some(prefix) => format!("{}/{bucket}/{prefix}", self.run),
            None => format!("{}/{bucket}", self.run),
        };
        let mut s3 = json!({"bucket": self.s3_bucket, "prefix": prefix, "endpoint": self.s3_endpoint,
            "pathStyle": true, "allowHttp": true});
        if let Some(region) = region {
            s3["region"] = json!(region);
        }
        s3
    }

    /// Writes the backup set `backup_id` a restore seed names into its S3 location (`bucket` and
    /// `prefix` of the seed): orders and payments of `source`, which is production-us-west-2,
    /// with its consumer-group snapshot.
    fn backup_set(&self, source: &Cluster, backup_id: &str, bucket: &str, prefix: Option<&str>) {
        let s3 = self.s3_location(bucket, prefix, Some("us-west-2"));
        self.setup(
            backup_id,
            &json!({
                "apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaBackup",
                "metadata": {"name": backup_id},
                "spec": {
                    "kafkaCluster": {"bootstrapServers": [source.broker.bootstrap]},
                    "topics": ["orders", "payments"],
                    "storage": {"storageType": "s3", "s3": s3},
                    "stopAtCurrentOffsets": true,
                    "sourceClusterId": "production-us-west-2",
                    "consumerGroupSnapshot": true,
                },
            }),
        );
    }
}

/// orders and payments with records, and the seeds' groups committed on them: order-processor
/// at 4 on both, payment-handler at 6 on payments, notification-service and analytics-consumer
/// at 2 on orders.
async fn production_data(cluster: &Cluster) {
    cluster.create_topics(PRODUCTION_TOPICS).await;
    for (topic, partitions) in PRODUCTION_TOPICS {
        cluster.produce(topic, *partitions, |_, _| Vec::new()).await;
    }
    cluster.commit("order-processor", PRODUCTION_TOPICS, 4);
    cluster.commit("payment-handler", &[("payments", 2)], 6);
    cluster.commit("notification-service", &[("orders", 2)], 2);
    cluster.commit("analytics-consumer", &[("orders", 2)], 2);
}

fn seed_files() -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for kind in std::fs::read_dir(SEEDS).unwrap() {
        let kind = kind.unwrap().path();
        for file in std::fs::read_dir(&kind).unwrap() {
            let file = file.unwrap().path();
            files.insert(format!(
                "{}/{}",
                kind.file_name().unwrap().to_str().unwrap(),
                file.file_name().unwrap().to_str().unwrap()
            ));
        }
    }
    files
}

fn exempt_files() -> BTreeSet<String> {
    let exemptions: Vec<Value> =
        serde_saphyr::from_str(&std::fs::read_to_string(EXEMPTIONS).unwrap()).unwrap();
    exemptions
        .iter()
        .map(|e| {
            e["file"]
                .as_str()
                .unwrap()
                .trim_start_matches("seeds/")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_complete_seed_runs_through_run_f() {
    let (Some(nisshi), Some(s3_endpoint), Some(s3_bucket), Some(access), Some(secret)) = (
        service("KBO_TEST_NISSHI_BIN"),
        service("KBO_TEST_S3_ENDPOINT"),
        service("KBO_TEST_S3_BUCKET"),
        service("KBO_TEST_S3_ACCESS_KEY"),
        service("KBO_TEST_S3_SECRET_KEY"),
    ) else {
        return;
    };
    // The broker .ci/services.sh installs is built with the user store (libsql), so it serves
    // SASL/SCRAM too (as in tests/kafka_security.rs); KBO_TEST_NISSHI_SASL_BIN names another.
    let sasl_nisshi = std::env::var("KBO_TEST_NISSHI_SASL_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| nisshi.clone());
    let dir = tempfile::tempdir().unwrap();
    let broker_pki = certs::generate(&["localhost".into(), "127.0.0.1".into()], 1).unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &broker_pki.ca_cert_pem).unwrap();
    let mut world = World {
        dir,
        nisshi,
        sasl_nisshi,
        run: unique("seeds"),
        s3_endpoint,
        s3_bucket,
        s3_key: (access.clone(), secret.clone()),
        ca_file,
        broker_pki,
        ran: BTreeSet::new(),
    };
    world.write_secret(
        "s3-credentials",
        &[("AWS_ACCESS_KEY_ID", &access), ("AWS_SECRET_ACCESS_KEY", &secret)],
    );
    world.write_secret(
        "kafka-credentials",
        &[("username", "kafka-user"), ("password", PASSWORD)],
    );
    world.write_secret(
        "dr-kafka-credentials",
        &[("username", "dr-kafka-user"), ("password", PASSWORD)],
    );

    // The production cluster the backup seeds name (kafka:9092, kafka.default.svc:9092), which
    // is production-us-west-2 for the restore seeds.
    let production = world.plaintext();
    production_data(&production).await;
    production.create_topics(&[("my-topic", 1)]).await;
    production.produce("my-topic", 1, |_, _| Vec::new()).await;
    let kafka = [
        ("kafka:9092", &production),
        ("kafka.default.svc:9092", &production),
    ];

    // Backups.
    for file in [
        "kafkabackup/hourly-backup-v1.0.0.yaml",
        "kafkabackup/hourly-backup.yaml",
    ] {
        let status = world.seed(file, &kafka, &["--once"]);
        assert_eq!(status["backupId"], "hourly-backup", "{status}");
    }
    for file in [
        "kafkabackup/my-first-backup-v1.0.0.yaml",
        "kafkabackup/my-first-backup.yaml",
    ] {
        let status = world.seed(file, &kafka, &[]);
        assert_eq!(status["backupId"], "my-first-backup", "{status}");
    }

    // The backup sets the restore seeds name.
    world.backup_set(&production, "production-backup-20241201", "kafka-backups", None);
    world.backup_set(&production, "backup-20241201", "kafka-backups", None);
    world.backup_set(
        &production,
        "production-backup-20241201",
        "kafka-backups",
        Some("production"),
    );
    world.backup_set(
        &production,
        "us-west-2-backup-20241201",
        "kafka-backups-dr",
        Some("us-west-2"),
    );
    let all_records = RECORDS * 2;

    // Restores into plaintext clusters.
    let dev = world.plaintext();
    world.seed("kafkarestore/dev-restore.yaml", &[("dev-kafka:9092", &dev)], &[]);
    assert_eq!(dev.records("dev-orders", 2), all_records);
    assert_eq!(dev.records("dev-payments", 2), all_records);
    let fresh = world.plaintext();
    fresh.create_topics(PRODUCTION_TOPICS).await;
    world.seed("kafkarestore/simple-restore.yaml", &[("kafka:9092", &fresh)], &[]);
    assert_eq!(fresh.records("orders", 2), all_records);
    assert_eq!(fresh.records("payments", 2), all_records);

    // Offset resets on a cluster a restore from production-us-west-2 filled: its records carry
    // the tracking headers of a restore with includeOriginalOffsetHeader (source offsets from
    // 100), and the groups' committed offsets are those of the source.
    let restored = world.plaintext();
    restored.create_topics(PRODUCTION_TOPICS).await;
    for (topic, partitions) in PRODUCTION_TOPICS {
        restored
            .produce(topic, *partitions, |p, i| {
                vec![
                    (headers::SOURCE_CLUSTER, b"production-us-west-2".to_vec()),
                    (headers::ORIGINAL_OFFSET, headers::encode_i64(100 + i).to_vec()),
                    (headers::SOURCE_PARTITION, headers::encode_i32(p).to_vec()),
                ]
            })
            .await;
    }
    restored.commit("order-processor", PRODUCTION_TOPICS, 104);
    restored.commit("payment-handler", &[("payments", 2)], 106);
    restored.commit("notification-service", &[("orders", 2)], 102);
    restored.commit("my-consumer-group", &[("orders", 2)], 7);
    for g in 1..=5 {
        restored.commit(&format!("group-{g}"), &[("payments", 2)], 5);
    }
    let on_restored = [("kafka:9092", &restored)];
    world.seed("kafkaoffsetreset/dry-run-reset.yaml", &on_restored, &[]);
    assert_eq!(
        restored.committed("order-processor", "orders", 2),
        BTreeMap::from([(0, 104), (1, 104)]),
        "a dry run changes nothing"
    );
    let status = world.seed("kafkaoffsetreset/reset-to-earliest.yaml", &on_restored, &[]);
    assert!(
        status["snapshot"]["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("file://{}", world.catalog().display())),
        "{status}"
    );
    assert_eq!(
        restored.committed("my-consumer-group", "orders", 2),
        BTreeMap::from([(0, 0), (1, 0)])
    );
    world.seed("kafkaoffsetreset/bulk-reset.yaml", &on_restored, &[]);
    for g in 1..=5 {
        assert_eq!(
            restored.committed(&format!("group-{g}"), "payments", 2),
            BTreeMap::from([(0, 0), (1, 0)])
        );
    }
    let status = world.seed("kafkaoffsetreset/post-restore-reset.yaml", &on_restored, &[]);
    assert_eq!(status["snapshot"]["snapshotId"], "pre-header-reset", "{status}");
    assert_eq!(
        restored.committed("order-processor", "orders", 2),
        BTreeMap::from([(0, 4), (1, 4)]),
        "source offset 104 is target offset 4"
    );
    assert_eq!(
        restored.committed("payment-handler", "payments", 2),
        BTreeMap::from([(0, 6), (1, 6)])
    );

    config_map_seeds(&mut world).await;
    pitr_from_a_kafka_backup(&mut world).await;

    sasl_seeds(&mut world, &production).await;

    // Every complete seed ran.
    let complete: BTreeSet<String> = seed_files().difference(&exempt_files()).cloned().collect();
    let need_sasl: BTreeSet<String> = NEED_SASL.iter().map(|f| (*f).to_owned()).collect();
    assert_eq!(world.ran, complete, "every complete seed ran and completed");
    assert!(need_sasl.is_subset(&world.ran), "the SASL seeds ran");
    for file in &need_sasl {
        let text = std::fs::read_to_string(Path::new(SEEDS).join(file)).unwrap();
        assert!(
            text.contains("SASL_SSL")
                || [
                    "kafkaoffsetrollback/verify-rollback.yaml",
                    "kafkaoffsetrollback/rollback-restore.yaml"
                ]
                .contains(&file.as_str()),
            "{file} is listed as needing SASL"
        );
    }
}

/// The seeds with ConfigMap snapshot storage (the ConfigMap offset-snapshots of the local
/// ConfigMap store, across separate runs as in a cluster) and reset-from-mapping, whose mapping
/// is a ConfigMap document in its `-f` file.
async fn config_map_seeds(world: &mut World) {
    let kafka = world.plaintext();
    production_data(&kafka).await;
    kafka.commit("my-small-group", &[("orders", 2)], 3);
    kafka.commit("my-group", &[("orders", 2)], 5);
    let on_kafka = [("kafka:9092", &kafka)];
    let both = BTreeMap::from([(0, 4), (1, 4)]);

    // Snapshot, the migration moves the groups, rollback puts them back, verify agrees, delete.
    world.seed("kafkaoffsetrollback/create-snapshot.yaml", &on_kafka, &[]);
    let snapshot = world.config_map_snapshot("pre-migration-20241201").unwrap();
    assert_eq!(
        snapshot["groups"]["payment-handler"]["topics"]["payments"]["1"]["offset"], 6,
        "{snapshot}"
    );
    kafka.commit("order-processor", PRODUCTION_TOPICS, 9);
    kafka.commit("payment-handler", &[("payments", 2)], 1);
    world.seed("kafkaoffsetrollback/do-rollback.yaml", &on_kafka, &[]);
    assert_eq!(kafka.committed("order-processor", "orders", 2), both);
    assert_eq!(kafka.committed("order-processor", "payments", 2), both);
    assert_eq!(
        kafka.committed("payment-handler", "payments", 2),
        BTreeMap::from([(0, 6), (1, 6)])
    );
    let status = world.seed("kafkaoffsetrollback/verify-offsets.yaml", &on_kafka, &[]);
    assert_eq!(status["verification"]["matched"], true, "{status}");
    world.seed("kafkaoffsetrollback/delete-snapshot.yaml", &on_kafka, &[]);
    assert!(world.config_map_snapshot("pre-migration-20241201").is_none());

    let status = world.seed("kafkaoffsetrollback/quick-snapshot.yaml", &on_kafka, &[]);
    assert_eq!(
        status["snapshot"]["location"],
        "configmap://offset-snapshots/quick-snapshot-001.json"
    );
    let snapshot = world.config_map_snapshot("quick-snapshot-001").unwrap();
    assert_eq!(
        snapshot["groups"]["my-small-group"]["topics"]["orders"]["0"]["offset"], 3,
        "{snapshot}"
    );

    // The three steps of the seed's workflow.
    world.seed("kafkaoffsetrollback/step1-snapshot.yaml", &on_kafka, &[]);
    kafka.commit("my-group", &[("orders", 2)], 8);
    world.seed("kafkaoffsetrollback/step2-rollback.yaml", &on_kafka, &[]);
    assert_eq!(
        kafka.committed("my-group", "orders", 2),
        BTreeMap::from([(0, 5), (1, 5)])
    );
    let status = world.seed("kafkaoffsetrollback/step3-verify.yaml", &on_kafka, &[]);
    assert_eq!(status["verification"]["matched"], true, "{status}");

    // Clean-up of a snapshot taken a month earlier (set-up: that snapshot).
    world.setup(
        "old-snapshot",
        &json!({
            "apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaOffsetRollback",
            "metadata": {"name": "old-snapshot"},
            "spec": {
                "kafkaCluster": {"bootstrapServers": [kafka.broker.bootstrap]},
                "consumerGroups": ["my-group"], "operation": "snapshot",
                "snapshotId": "old-snapshot-20241101",
                "storage": {"storageType": "configMap", "configMap": {"name": "offset-snapshots"}},
            },
        }),
    );
    assert!(world.config_map_snapshot("old-snapshot-20241101").is_some());
    world.seed("kafkaoffsetrollback/cleanup-old-snapshot.yaml", &[], &[]);
    assert!(world.config_map_snapshot("old-snapshot-20241101").is_none());
    assert!(
        world.config_map_snapshot("before-change").is_some(),
        "the others stay"
    );

    // The mapping ConfigMap of the seed document, with offsets inside the test's topics.
    let mapping = json!({"groups": {"order-processor": {"orders": {"0": 7, "1": 3}, "payments": {"0": 5}}}});
    let config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "offset-mapping", "namespace": "kafka-backup"},
        "data": {"mapping.json": serde_json::to_string_pretty(&mapping).unwrap()},
    });
    let (_, stderr) = world.seed_after(
        &[config_map],
        "kafkaoffsetreset/reset-from-mapping.yaml",
        &on_kafka,
        &[],
    );
    let file = world.config_maps().join("offset-mapping/mapping.json");
    assert!(file.is_file());
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert_eq!(
        kafka.committed("order-processor", "orders", 2),
        BTreeMap::from([(0, 7), (1, 3)])
    );
    assert_eq!(
        kafka.committed("order-processor", "payments", 2)[&0],
        5,
        "the mapping's payments partition"
    );
}

/// pitr-restore-v1.0.0 names the KafkaBackup production-backup (`backupRef.name`): run first, as a
/// user would, on a cluster whose topics have records after the seed's endTime (12:00), which
/// the restore leaves out.
async fn pitr_from_a_kafka_backup(world: &mut World) {
    let source = world.plaintext();
    production_data(&source).await;
    let after_end_time = BASE_MS + 3 * 3_600_000;
    for (topic, partitions) in PRODUCTION_TOPICS {
        support::produce(
            &source.config(),
            topic,
            *partitions,
            3,
            |i| after_end_time + i,
            |_, _| Vec::<(&str, Vec<u8>)>::new(),
        )
        .await;
    }
    assert_eq!(source.records("orders", 2), (RECORDS + 3) * 2);
    world.backup_set(&source, "production-backup", "kafka-backups", Some("pitr"));
    let record = world.state().join("kafkabackups/default/production-backup.yaml");
    assert!(record.is_file());
    let target = world.plaintext();
    target.create_topics(PRODUCTION_TOPICS).await;
    let (_, stderr) = world.seed_after(
        &[],
        "kafkarestore/pitr-restore-v1.0.0.yaml",
        &[("kafka:9092", &target)],
        &[],
    );
    assert!(stderr.contains(&record.display().to_string()), "{stderr}");
    assert_eq!(
        target.records("orders", 2),
        RECORDS * 2,
        "only what was before endTime"
    );
    assert_eq!(target.records("payments", 2), RECORDS * 2);
}

/// The seeds that reach their cluster over SASL_SSL with SCRAM-SHA-256 (`kafka-credentials`,
/// `dr-kafka-credentials`), and the two that use what they stored.
async fn sasl_seeds(world: &mut World, production: &Cluster) {
    // kafka:9092 over SASL_SSL. Seeds reach the same cluster without it too (verify-rollback):
    // nisshi has one listener per process, so a plaintext broker with the same topics, records
    // and committed offsets stands for that listener.
    let secured = world.sasl("kafka-user");
    let plain = world.plaintext();
    for cluster in [&secured, &plain] {
        production_data(cluster).await;
    }

    // Snapshot before a migration, the migration moves order-processor, emergency rollback.
    let with_sasl = [("kafka:9092", &secured)];
    world.seed("kafkaoffsetrollback/pre-migration-snapshot.yaml", &with_sasl, &[]);
    secured.commit("order-processor", PRODUCTION_TOPICS, 9);
    world.seed("kafkaoffsetrollback/emergency-rollback.yaml", &with_sasl, &[]);
    assert_eq!(
        secured.committed("order-processor", "orders", 2),
        BTreeMap::from([(0, 4), (1, 4)])
    );
    let status = world.seed(
        "kafkaoffsetrollback/verify-rollback.yaml",
        &[("kafka:9092", &plain)],
        &[],
    );
    assert_eq!(status["verification"]["matched"], true, "{status}");

    // Reset to a time: order-processor and payment-handler to the first record at or after
    // 10:00, offset 0; the pre-change snapshot goes to the embedded default location.
    let status = world.seed("kafkaoffsetreset/reset-to-timestamp.yaml", &with_sasl, &[]);
    assert_eq!(
        status["snapshot"]["snapshotId"], "before-reset-20241201",
        "{status}"
    );
    assert!(
        world
            .catalog()
            .join("offset-snapshots/before-reset-20241201.json")
            .is_file()
    );
    assert_eq!(
        secured.committed("payment-handler", "payments", 2),
        BTreeMap::from([(0, 0), (1, 0)])
    );

    // PITR into kafka:9092 over SASL_SSL: the records at or before 10:30 (seven per partition).
    let pitr_target = world.sasl("kafka-user");
    pitr_target.create_topics(PRODUCTION_TOPICS).await;
    world.seed(
        "kafkarestore/pitr-restore.yaml",
        &[("kafka:9092", &pitr_target)],
        &[],
    );
    assert_eq!(pitr_target.records("orders", 2), 14);

    // Cross-region restore with a HeaderBased offset reset.
    let east = world.sasl("dr-kafka-user");
    east.create_topics(PRODUCTION_TOPICS).await;
    world.seed(
        "kafkarestore/dr-restore.yaml",
        &[("kafka.us-east-1.example.com:9092", &east)],
        &[],
    );
    assert_eq!(east.records("orders", 2), RECORDS * 2);
    assert_eq!(
        east.committed("order-processor", "orders", 2),
        BTreeMap::from([(0, 4), (1, 4)])
    );

    // Rollback After Restore: the restore snapshots the groups' offsets on dr-kafka before it
    // changes them (rollback.snapshotId), then the rollback names that snapshot by id alone. The
    // seed's rollback names kafka:9092, the production cluster, where it puts the offsets back.
    let dr = world.sasl("kafka-user");
    dr.create_topics(PRODUCTION_TOPICS).await;
    dr.commit("order-processor", PRODUCTION_TOPICS, 0);
    let status = world.seed("kafkarestore/full-restore.yaml", &[("dr-kafka:9092", &dr)], &[]);
    assert_eq!(
        status["snapshot"]["snapshotId"], "pre-restore-20241201",
        "{status}"
    );
    assert_eq!(
        dr.committed("order-processor", "orders", 2),
        BTreeMap::from([(0, 4), (1, 4)]),
        "the HeaderBased reset moved the group from 0"
    );
    let id = status["snapshot"]["snapshotId"].as_str().unwrap().to_owned();
    assert!(
        world
            .catalog()
            .join(format!("offset-snapshots/{id}.json"))
            .is_file()
    );
    let text =
        std::fs::read_to_string(Path::new(SEEDS).join("kafkaoffsetrollback/rollback-restore.yaml")).unwrap();
    assert!(
        text.contains(&format!("snapshotId: \"{id}\"")),
        "the rollback names the id the restore reported"
    );
    world.seed(
        "kafkaoffsetrollback/rollback-restore.yaml",
        &[("kafka:9092", production)],
        &[],
    );
    assert_eq!(
        production.committed("order-processor", "orders", 2),
        BTreeMap::from([(0, 0), (1, 0)]),
        "the offsets of the snapshot"
    );
}
