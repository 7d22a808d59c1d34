//! The offset engine (KafkaOffsetReset, KafkaOffsetRollback) against the real broker and real
//! storage: local disk (PVC), SeaweedFS (S3) and Azurite (Azure). Offsets are set up and read
//! back with plain rdkafka, not with the code under test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use kafka_backup_operator::{
    api::v1beta1::{
        GroupResetOutcome, KafkaOffsetReset, KafkaOffsetResetStatus, KafkaOffsetRollback,
        KafkaOffsetRollbackStatus, Phase,
    },
    ops::{Context, ResourceRef, offset_reset, offset_rollback},
    secrets::SecretStore,
    storage::StorageEnv,
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use support::{create_topic, service, unique};

/// The broker, or `None` to skip.
fn broker() -> Option<String> {
    service("KBO_TEST_KAFKA_BOOTSTRAP")
}

/// Produces `count` records to each partition; record i of a partition has timestamp
/// `base_ms + i * 1000` and, when `headers` gives them, those headers.
async fn produce(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: i64,
    base_ms: i64,
    headers: impl Fn(i32, i64) -> Vec<(String, Vec<u8>)>,
) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    support::produce(&config, topic, partitions, count, |i| base_ms + i * 1000, headers).await;
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap()
}

/// Commits offsets for a group without joining it.
fn commit(bootstrap: &str, group: &str, offsets: &[(&str, i32, i64)]) {
    let consumer = group_consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o)).unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// The group's committed offsets on the topic's partitions (absent: none committed).
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    support::committed(&group_consumer(bootstrap, group), topic, partitions)
}

fn context(name: &str, pvc_root: &Path, secrets: SecretStore) -> Context {
    Context::new(
        ResourceRef {
            kind: "test".into(),
            namespace: Some("test".into()),
            name: name.into(),
            uid: None,
        },
        secrets,
        StorageEnv {
            pvc_root: pvc_root.to_owned(),
            config_maps: Default::default(),
        },
    )
}

fn pvc_storage() -> Value {
    json!({"type": "PVC", "pvc": {"claimName": "offsets"}})
}

async fn reset(spec: Value, ctx: &Context) -> KafkaOffsetResetStatus {
    let object: KafkaOffsetReset = serde_json::from_value(json!({
        "apiVersion": "kafka.oso.sh/v1beta1",
        "kind": "KafkaOffsetReset",
        "metadata": {"name": ctx.resource.name},
        "spec": spec,
    }))
    .unwrap();
    offset_reset::execute(&object, ctx).await
}

async fn rollback(spec: Value, ctx: &Context) -> KafkaOffsetRollbackStatus {
    let object: KafkaOffsetRollback = serde_json::from_value(json!({
        "apiVersion": "kafka.oso.sh/v1beta1",
        "kind": "KafkaOffsetRollback",
        "metadata": {"name": ctx.resource.name},
        "spec": spec,
    }))
    .unwrap();
    offset_rollback::execute(&object, ctx).await
}

/// A topic of 3 partitions x 10 records (timestamps base, base+1s, ...) and a group at offset 5
/// on every partition.
async fn fixture(bootstrap: &str, base_ms: i64) -> (String, String) {
    let topic = unique("reset");
    let group = unique("group");
    create_topic(bootstrap, &topic, 3).await;
    produce(bootstrap, &topic, 3, 10, base_ms, |_, _| Vec::new()).await;
    commit(
        bootstrap,
        &group,
        &[(&topic, 0, 5), (&topic, 1, 5), (&topic, 2, 5)],
    );
    (topic, group)
}

fn all(offset: i64) -> BTreeMap<i32, i64> {
    (0..3).map(|p| (p, offset)).collect()
}

const BASE_MS: i64 = 1_700_000_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn every_strategy_lands_on_the_expected_offsets() {
    let Some(bootstrap) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context("strategies", dir.path(), SecretStore::None);
    let cluster = json!({"bootstrapServers": [bootstrap]});
    let mapping_dir = dir.path().join("offsets/mappings");
    std::fs::create_dir_all(&mapping_dir).unwrap();
    // (case, spec from topic and group, expected committed offsets per partition)
    type Case = (&'static str, Box<dyn Fn(&str, &str) -> Value>, BTreeMap<i32, i64>);
    let cases: Vec<Case> = vec![
        (
            "earliest",
            Box::new(|_, _| json!({"strategy": "Earliest"})),
            all(0),
        ),
        ("latest", Box::new(|_, _| json!({"strategy": "Latest"})), all(10)),
        (
            // Record 3 has timestamp BASE+3s; a time between records picks the next one.
            "timestamp",
            Box::new(|_, _| json!({"strategy": "Timestamp", "timestamp": "2023-11-14T22:13:22.500Z"})),
            all(3),
        ),
        (
            "timestamp after the last record",
            Box::new(|_, _| json!({"strategy": "Timestamp", "timestamp": "2030-01-01T00:00:00Z"})),
            all(10),
        ),
        (
            "offset clamped",
            Box::new(|_, _| json!({"strategy": "Offset", "offset": 1000})),
            all(10),
        ),
        (
            "partition offsets",
            Box::new(|t, _| {
                json!({"strategy": "Offset", "partitionOffsets": [
                    {"topic": t, "partition": 1, "offset": 7}]})
            }),
            BTreeMap::from([(0, 5), (1, 7), (2, 5)]),
        ),
        (
            "shift by",
            Box::new(|_, _| json!({"strategy": "ShiftBy", "shiftBy": -2})),
            all(3),
        ),
        (
            "shift by clamped",
            Box::new(|_, _| json!({"strategy": "ShiftBy", "shiftBy": -50})),
            all(0),
        ),
        (
            "by duration (records are older than a day)",
            Box::new(|_, _| json!({"strategy": "ByDuration", "byDuration": "P1D"})),
            all(10),
        ),
        (
            "from mapping",
            Box::new(|t, g| {
                let file = format!("{g}.json");
                let mapping = json!({"groups": {g: {t: {"0": 2, "1": 4, "2": 6}}}});
                std::fs::write(
                    std::env::temp_dir().join(&file),
                    serde_json::to_vec(&mapping).unwrap(),
                )
                .unwrap();
                json!({"strategy": "FromMapping", "fromMapping": {
                    "storage": {"type": "PVC", "pvc": {"claimName": "offsets", "subPath": "mappings"}},
                    "path": file}})
            }),
            BTreeMap::from([(0, 2), (1, 4), (2, 6)]),
        ),
        (
            "delete offsets of one partition",
            Box::new(|t, _| json!({"strategy": "DeleteOffsets", "topics": [{"name": t, "partitions": [1]}]})),
            BTreeMap::from([(0, 5), (2, 5)]),
        ),
    ];
    for (name, spec, expected) in cases {
        let (topic, group) = fixture(&bootstrap, BASE_MS).await;
        let mut spec = spec(&topic, &group);
        if let Some(file) = spec.pointer("/fromMapping/path").and_then(Value::as_str) {
            std::fs::copy(std::env::temp_dir().join(file), mapping_dir.join(file)).unwrap();
        }
        spec["kafkaCluster"] = cluster.clone();
        spec["consumerGroups"] = json!([group]);
        spec["snapshot"] = json!({"storage": pvc_storage(), "snapshotId": unique("snap")});
        if spec.get("topics").is_none() {
            spec["topics"] = json!([{"name": topic}]);
        }
        let status = reset(spec, &ctx).await;
        assert_eq!(status.phase, Some(Phase::Completed), "{name}: {status:?}");
        assert_eq!(committed(&bootstrap, &group, &topic, 3), expected, "{name}");
        let result = &status.results.as_ref().unwrap()[0];
        assert_eq!(result.outcome, GroupResetOutcome::Succeeded, "{name}: {result:?}");
        if name == "offset clamped" {
            let p = &result.partitions.as_ref().unwrap()[0];
            assert_eq!(
                (p.previous_offset, p.new_offset, p.clamped),
                (Some(5), Some(10), Some(true))
            );
        }
        // The snapshot holds the offsets from before the reset.
        let location = status.snapshot.unwrap().location.unwrap();
        let file = location.strip_prefix("pvc://offsets/").unwrap();
        let stored: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("offsets").join(file)).unwrap()).unwrap();
        assert_eq!(
            stored["groups"][&group]["topics"][&topic]["1"]["offset"], 5,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_plans_everything_and_commits_nothing() {
    let Some(bootstrap) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context("dry-run", dir.path(), SecretStore::None);
    let (topic, group) = fixture(&bootstrap, BASE_MS).await;
    let status = reset(
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group],
               "topics": [{"name": topic}], "strategy": "Earliest", "dryRun": true,
               "snapshot": {"storage": pvc_storage()}}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    let result = &status.results.as_ref().unwrap()[0];
    assert_eq!(result.outcome, GroupResetOutcome::Planned);
    let plan: Vec<_> = result
        .partitions
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.partition, p.previous_offset, p.new_offset))
        .collect();
    assert_eq!(
        plan,
        vec![
            (0, Some(5), Some(0)),
            (1, Some(5), Some(0)),
            (2, Some(5), Some(0))
        ]
    );
    assert_eq!(committed(&bootstrap, &group, &topic, 3), all(5));
    assert!(status.snapshot.is_none());
    assert!(
        !dir.path().join("offsets").exists(),
        "a dry run stores no snapshot"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_active_group_is_refused_and_untouched() {
    let Some(bootstrap) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context("active", dir.path(), SecretStore::None);
    let (topic, group) = fixture(&bootstrap, BASE_MS).await;
    let (idle_topic, idle_group) = fixture(&bootstrap, BASE_MS).await;
    // A member that joined the group and keeps polling.
    let member = group_consumer(&bootstrap, &group);
    member.subscribe(&[&topic]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while member.assignment().unwrap().count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the member never got partitions"
        );
        let _ = member.poll(Duration::from_millis(100));
    }
    let keep_polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = keep_polling.clone();
    let poller = std::thread::spawn(move || {
        while flag.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = member.poll(Duration::from_millis(100));
        }
        member
    });
    let status = reset(
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]},
               "consumerGroups": [group, idle_group], "strategy": "Earliest",
               "continueOnError": true, "snapshot": {"storage": pvc_storage()}}),
        &ctx,
    )
    .await;
    keep_polling.store(false, std::sync::atomic::Ordering::SeqCst);
    let member = poller.join().unwrap();
    assert_eq!(status.phase, Some(Phase::PartiallyCompleted), "{status:?}");
    let results = status.results.unwrap();
    assert_eq!(results[0].outcome, GroupResetOutcome::Failed);
    let message = results[0].message.clone().unwrap();
    assert!(message.contains("1 active member(s)"), "{message}");
    assert!(message.contains(&group), "{message}");
    assert_eq!(results[1].outcome, GroupResetOutcome::Succeeded);
    drop(member);
    assert_eq!(committed(&bootstrap, &group, &topic, 3), all(5));
    assert_eq!(committed(&bootstrap, &idle_group, &idle_topic, 3), all(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_reset_rollback_verify_returns_exactly_to_the_snapshot() {
    let Some(bootstrap) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context("cycle", dir.path(), SecretStore::None);
    let (topic, group) = fixture(&bootstrap, BASE_MS).await;
    commit(&bootstrap, &group, &[(&topic, 1, 8)]);
    let cluster = json!({"bootstrapServers": [bootstrap]});
    let snapshot_id = unique("cycle");
    let status = rollback(
        json!({"operation": "Snapshot", "snapshotId": snapshot_id, "storage": pvc_storage(),
               "kafkaCluster": cluster, "consumerGroups": [group]}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(status.snapshot.as_ref().unwrap().total_partitions, Some(3));

    // A reset, and a commit to a partition of a second topic the snapshot does not have.
    let other = unique("other");
    create_topic(&bootstrap, &other, 1).await;
    produce(&bootstrap, &other, 1, 3, BASE_MS, |_, _| Vec::new()).await;
    let status = reset(
        json!({"kafkaCluster": cluster, "consumerGroups": [group], "strategy": "Latest",
               "topics": [{"name": topic}], "snapshot": {"enabled": false}}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    commit(&bootstrap, &group, &[(&other, 0, 2)]);

    let verify = |strict: bool| {
        json!({"operation": "Verify", "snapshotId": snapshot_id, "storage": pvc_storage(),
               "kafkaCluster": cluster, "verify": {"strict": strict}})
    };
    let status = rollback(verify(true), &ctx).await;
    assert_eq!(
        status.phase,
        Some(Phase::Failed),
        "verify must detect the change: {status:?}"
    );
    let v = status.verification.unwrap();
    assert_eq!(v.matched, Some(false));
    assert_eq!(v.differences_total, Some(4), "{v:?}");

    let status = rollback(
        json!({"operation": "Rollback", "snapshotId": snapshot_id, "storage": pvc_storage(),
               "kafkaCluster": cluster, "removeOffsetsNotInSnapshot": true}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(status.groups_rolled_back, Some(1));
    assert_eq!(status.verification.unwrap().matched, Some(true));
    assert_eq!(
        committed(&bootstrap, &group, &topic, 3),
        BTreeMap::from([(0, 5), (1, 8), (2, 5)])
    );
    assert!(
        committed(&bootstrap, &group, &other, 1).is_empty(),
        "the newer offset is removed"
    );
    let status = rollback(verify(true), &ctx).await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(status.verification.unwrap().matched, Some(true));

    // A consumer that moved ahead only matches a non-strict verify.
    commit(&bootstrap, &group, &[(&topic, 0, 9)]);
    assert_eq!(rollback(verify(false), &ctx).await.phase, Some(Phase::Completed));
    let status = rollback(verify(true), &ctx).await;
    let differences = status.verification.unwrap().differences.unwrap();
    assert_eq!(differences.len(), 1);
    assert_eq!(
        (
            differences[0].partition,
            differences[0].expected,
            differences[0].actual
        ),
        (0, Some(5), Some(9))
    );

    // Delete removes it; a second delete says it is gone.
    let delete = json!({"operation": "Delete", "snapshotId": snapshot_id, "storage": pvc_storage()});
    assert_eq!(rollback(delete.clone(), &ctx).await.phase, Some(Phase::Completed));
    let status = rollback(delete, &ctx).await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert!(status.message.unwrap().contains("not found"));
}

/// Snapshot storages to test create-only writes on: local disk, S3 and Azure.
fn storages() -> Vec<(&'static str, Value, SecretStore)> {
    let mut out = vec![("pvc", pvc_storage(), SecretStore::None)];
    if let Some(endpoint) = service("KBO_TEST_S3_ENDPOINT") {
        let secrets = SecretStore::Map {
            origin: "test".into(),
            secrets: [(
                "s3".to_owned(),
                [
                    (
                        "AWS_ACCESS_KEY_ID".to_owned(),
                        std::env::var("KBO_TEST_S3_ACCESS_KEY").unwrap().into_bytes(),
                    ),
                    (
                        "AWS_SECRET_ACCESS_KEY".to_owned(),
                        std::env::var("KBO_TEST_S3_SECRET_KEY").unwrap().into_bytes(),
                    ),
                ]
                .into(),
            )]
            .into(),
        };
        out.push((
            "s3",
            json!({"type": "S3", "s3": {"bucket": std::env::var("KBO_TEST_S3_BUCKET").unwrap(),
                   "endpoint": endpoint, "pathStyle": true, "allowHttp": true,
                   "region": "us-east-1", "prefix": unique("offsets"),
                   "credentialsSecret": {"name": "s3"}}}),
            secrets,
        ));
    }
    if let Some(url) = service("KBO_TEST_AZURITE_URL") {
        let secrets = support::azurite_secrets();
        out.push((
            "azure",
            json!({"type": "Azure", "azure": {"container": std::env::var("KBO_TEST_AZURE_CONTAINER").unwrap(),
                   "accountName": "devstoreaccount1", "endpoint": format!("{url}/devstoreaccount1"),
                   "prefix": unique("offsets"), "credentialsSecret": {"name": "azure"}}}),
            secrets,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_snapshot_id_is_never_overwritten() {
    let Some(bootstrap) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (topic, group) = fixture(&bootstrap, BASE_MS).await;
    for (name, storage, secrets) in storages() {
        let ctx = context("twice", dir.path(), secrets);
        let snapshot = |id: &str| {
            json!({"operation": "Snapshot", "snapshotId": id, "storage": storage,
                   "kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group]})
        };
        let id = unique("twice");
        let first = rollback(snapshot(&id), &ctx).await;
        assert_eq!(first.phase, Some(Phase::Completed), "{name}: {first:?}");
        commit(&bootstrap, &group, &[(&topic, 0, 9)]);
        let second = rollback(snapshot(&id), &ctx).await;
        assert_eq!(second.phase, Some(Phase::Failed), "{name}: {second:?}");
        assert!(
            second.message.as_ref().unwrap().contains("already exists"),
            "{name}: {second:?}"
        );
        // The first is intact: verifying against it sees the commit made since.
        let verify = json!({"operation": "Verify", "snapshotId": id, "storage": storage,
                            "kafkaCluster": {"bootstrapServers": [bootstrap]}});
        let status = rollback(verify, &ctx).await;
        let differences = status.verification.unwrap().differences.unwrap();
        assert_eq!(differences.len(), 1, "{name}");
        assert_eq!(differences[0].expected, Some(5), "{name}");
        commit(&bootstrap, &group, &[(&topic, 0, 5)]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn header_based_finds_the_restored_positions_by_binary_search() {
    let Some(bootstrap) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context("headers", dir.path(), SecretStore::None);
    // A restored topic: partition p holds source offsets 100..150 (from "prod"), with a record
    // from another source cluster after every 10th.
    let topic = unique("restored");
    create_topic(&bootstrap, &topic, 2).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for p in 0..2i32 {
        for source_offset in 100..150i64 {
            let mut records = vec![("prod", source_offset)];
            if source_offset % 10 == 0 {
                records.push(("staging", 100_000 + source_offset));
            }
            for (cluster, original) in records {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "x-original-offset",
                        value: Some(&original.to_le_bytes()),
                    })
                    .insert(Header {
                        key: "x-source-cluster",
                        value: Some(cluster.as_bytes()),
                    })
                    .insert(Header {
                        key: "x-source-partition",
                        value: Some(&p.to_le_bytes()),
                    });
                producer
                    .send(
                        FutureRecord::<(), _>::to(&topic)
                            .partition(p)
                            .payload("x")
                            .headers(headers),
                        Duration::from_secs(10),
                    )
                    .await
                    .unwrap();
            }
        }
    }
    // The group had consumed source offsets up to 123 on partition 0 and 149 on partition 1.
    let group = unique("group");
    commit(&bootstrap, &group, &[(&topic, 0, 124), (&topic, 1, 150)]);
    let status = reset(
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group],
               "strategy": "HeaderBased", "headerBased": {"sourceCluster": "prod"},
               "topics": [{"name": topic}], "snapshot": {"storage": pvc_storage()}}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    // Target offset of source 124 on partition 0: 24 prod records before it plus the staging
    // records after 100, 110 and 120 -> 27. Partition 1: all consumed -> log end (55).
    let after = committed(&bootstrap, &group, &topic, 2);
    assert_eq!(after, BTreeMap::from([(0, 27), (1, 55)]));
    let consumer = group_consumer(&bootstrap, &unique("check"));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(27)).unwrap();
    consumer.assign(&tpl).unwrap();
    let message = loop {
        if let Some(m) = consumer.poll(Duration::from_secs(5)) {
            break m.unwrap().detach();
        }
    };
    let original = message
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "x-original-offset")
        .unwrap();
    assert_eq!(
        i64::from_le_bytes(original.value.unwrap().try_into().unwrap()),
        124
    );

    // scanAllPartitions: the same group position found in every partition of the topic.
    commit(&bootstrap, &group, &[(&topic, 0, 124), (&topic, 1, 150)]);
    let status = reset(
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group],
               "strategy": "HeaderBased", "headerBased": {"sourceCluster": "prod", "scanAllPartitions": true},
               "topics": [{"name": topic}], "snapshot": {"enabled": false}}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
    assert_eq!(
        committed(&bootstrap, &group, &topic, 2),
        BTreeMap::from([(0, 27), (1, 55)])
    );
}

/// A HeaderBased reset whose records carry no matching tracking headers fails the group with
/// the reason, naming the partition, in a dry run too; nothing is committed.
#[tokio::test(flavor = "multi_thread")]
async fn header_based_without_matching_headers_fails_with_the_reason() {
    let Some(bootstrap) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context("no-headers", dir.path(), SecretStore::None);
    // Records without tracking headers, and records restored from another cluster.
    let plain = unique("plain");
    create_topic(&bootstrap, &plain, 2).await;
    produce(&bootstrap, &plain, 2, 20, 1_700_000_000_000, |_, _| vec![]).await;
    let staging = unique("staging");
    create_topic(&bootstrap, &staging, 1).await;
    produce(&bootstrap, &staging, 1, 20, 1_700_000_000_000, |p, i| {
        vec![
            ("x-original-offset".into(), (100 + i).to_le_bytes().to_vec()),
            ("x-source-cluster".into(), b"staging".to_vec()),
            ("x-source-partition".into(), p.to_le_bytes().to_vec()),
        ]
    })
    .await;
    let cases = [
        (
            &plain,
            vec![(0, 5), (1, 9)],
            vec![
                "-0 (committed offset 5)",
                "-1 (committed offset 9)",
                "x-original-offset",
            ],
        ),
        (
            &staging,
            vec![(0, 110)],
            vec!["-0 (committed offset 110)", "\"staging\"", "not \"prod\""],
        ),
    ];
    for (topic, offsets, expected) in cases {
        let group = unique("hb-group");
        let commits: Vec<(&str, i32, i64)> = offsets.iter().map(|(p, o)| (topic.as_str(), *p, *o)).collect();
        commit(&bootstrap, &group, &commits);
        for dry_run in [true, false] {
            let status = reset(
                json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group],
                       "strategy": "HeaderBased", "headerBased": {"sourceCluster": "prod"},
                       "topics": [{"name": topic}], "dryRun": dry_run,
                       "snapshot": {"storage": pvc_storage()}}),
                &ctx,
            )
            .await;
            assert_eq!(status.phase, Some(Phase::Failed), "dry run {dry_run}: {status:?}");
            let result = &status.results.as_ref().unwrap()[0];
            assert_eq!(result.outcome, GroupResetOutcome::Failed, "{result:?}");
            let message = result.message.clone().unwrap();
            for part in &expected {
                let part = if part.starts_with('-') {
                    format!("{topic}{part}")
                } else {
                    (*part).to_owned()
                };
                assert!(message.contains(&part), "{part:?} not in {message}");
            }
            assert!(
                status.snapshot.is_none(),
                "nothing changes, so no snapshot: {status:?}"
            );
            assert_eq!(
                committed(&bootstrap, &group, topic, offsets.len() as i32),
                offsets.iter().copied().collect::<BTreeMap<_, _>>()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gives_clear_errors() {
    let Some(bootstrap) = broker() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context("bad", dir.path(), SecretStore::None);
    let (topic, group) = fixture(&bootstrap, BASE_MS).await;
    let cluster = json!({"bootstrapServers": [bootstrap]});

    let unknown_group = unique("nobody");
    let status = reset(
        json!({"kafkaCluster": cluster, "consumerGroups": [unknown_group], "strategy": "Earliest",
               "snapshot": {"enabled": false}}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = status.results.unwrap()[0].message.clone().unwrap();
    assert!(
        message.contains(&format!("consumer group {unknown_group} does not exist")),
        "{message}"
    );

    let status = reset(
        json!({"kafkaCluster": cluster, "consumerGroups": [group], "strategy": "Earliest",
               "topics": [{"name": "no-such-topic"}], "snapshot": {"enabled": false}}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        status.message.unwrap(),
        "spec.topics[0].name: topic no-such-topic does not exist in the cluster"
    );

    let status = reset(
        json!({"kafkaCluster": cluster, "consumerGroups": [group], "strategy": "FromMapping",
               "fromMapping": {"storage": pvc_storage(), "path": "missing/mapping.json"},
               "snapshot": {"enabled": false}}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(
        status.message.unwrap(),
        "spec.fromMapping: pvc://offsets/missing/mapping.json not found"
    );

    std::fs::create_dir_all(dir.path().join("offsets")).unwrap();
    std::fs::write(dir.path().join("offsets/broken.json"), "{\"groups\": [").unwrap();
    let status = reset(
        json!({"kafkaCluster": cluster, "consumerGroups": [group], "strategy": "FromMapping",
               "fromMapping": {"storage": pvc_storage(), "path": "broken.json"},
               "snapshot": {"enabled": false}}),
        &ctx,
    )
    .await;
    let message = status.message.unwrap();
    assert!(
        message.starts_with("spec.fromMapping: pvc://offsets/broken.json is not a valid offset mapping"),
        "{message}"
    );

    // ConfigMap snapshot storage (the default) without Kubernetes: refused before any commit.
    let status = reset(
        json!({"kafkaCluster": cluster, "consumerGroups": [group], "strategy": "Earliest",
               "topics": [{"name": topic}]}),
        &ctx,
    )
    .await;
    assert_eq!(status.phase, Some(Phase::Failed));
    let message = status.message.unwrap();
    assert!(message.contains("needs the Kubernetes API"), "{message}");
    assert!(message.contains("nothing was committed"), "{message}");
    assert_eq!(committed(&bootstrap, &group, &topic, 3), all(5));
}

#[test]
fn run_f_executes_a_v1alpha1_manifest_and_prints_the_status() {
    let Some(bootstrap) = broker() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (topic, group) = runtime.block_on(fixture(&bootstrap, BASE_MS));
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("reset.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: kafka.oso.sh/v1alpha1\nkind: KafkaOffsetReset\nmetadata:\n  name: cli-reset\nspec:\n  kafkaCluster:\n    bootstrapServers: [\"{bootstrap}\"]\n  consumerGroups: [\"{group}\"]\n  resetStrategy: to-earliest\n  topics: [\"{topic}\"]\n  snapshotBeforeReset: false\n"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let status: Value = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(status["status"]["phase"], "Completed", "{stdout}");
    assert_eq!(status["status"]["groupsReset"], 1);
    assert_eq!(committed(&bootstrap, &group, &topic, 3), all(0));

    // A manifest the webhook would refuse is refused the same way, naming the field.
    std::fs::write(
        &manifest,
        "apiVersion: kafka.oso.sh/v1alpha1\nkind: KafkaOffsetReset\nmetadata:\n  name: bad\nspec:\n  kafkaCluster:\n    bootstrapServers: [\"kafka:9092\"]\n  consumerGroups: [\"g\"]\n  resetStrategy: to-timestamp\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is refused"), "{stderr}");
    assert!(
        stderr.contains("timestamp: is required by strategy Timestamp"),
        "{stderr}"
    );
}

/// `connectionsPerBroker` sets how many connections the group-offset client opens to a broker
/// (1 unless set), its requests spread over them: a reset of 12 groups through a proxy, whose
/// broker advertises the proxy, counts them.
#[tokio::test(flavor = "multi_thread")]
async fn connections_per_broker_sets_the_group_clients_connections() {
    let Some(_) = broker() else { return };
    let Some(nisshi) = service("KBO_TEST_NISSHI_BIN") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    for (connection, expected) in [(json!({}), 1), (json!({"connectionsPerBroker": 3}), 3)] {
        let (_broker, through_proxy, stats, proxying) =
            support::proxied_broker(&nisshi, root.path(), None).await;
        let topic = unique("per-broker");
        create_topic(&through_proxy, &topic, 2).await;
        produce(&through_proxy, &topic, 2, 5, BASE_MS, |_, _| Vec::new()).await;
        let groups: Vec<String> = (0..12).map(|i| unique(&format!("per-broker-{i}"))).collect();
        for group in &groups {
            commit(&through_proxy, group, &[(&topic, 0, 3), (&topic, 1, 3)]);
        }
        let before = stats.sent.lock().unwrap().len();
        let ctx = context("per-broker", root.path(), SecretStore::None);
        let status = reset(
            json!({"kafkaCluster": {"bootstrapServers": [through_proxy], "connection": connection},
                   "consumerGroups": groups, "strategy": "Earliest", "topics": [{"name": topic}],
                   "snapshot": {"enabled": false}, "parallelism": 12}),
            &ctx,
        )
        .await;
        assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
        assert_eq!(status.groups_reset, Some(12));
        let sent = stats.sent.lock().unwrap()[before..].to_vec();
        assert_eq!(sent.len(), expected, "bytes sent per connection: {sent:?}");
        assert!(
            sent.iter().all(|n| *n > 0),
            "every connection carried requests: {sent:?}"
        );
        proxying.abort();
    }
}

/// `run -f` of the binary on `manifest` with `args` and `envs`: success, the printed status, stderr.
fn run_f(dir: &Path, manifest: &str, args: &[&str], envs: &[(&str, &Path)]) -> (bool, Value, String) {
    let file = dir.join("resource.yaml");
    std::fs::write(&file, manifest).unwrap();
    support::run_f(&file, |command| {
        command
            .args(args)
            .env_remove("KBO_STATE_DIR")
            .env_remove("KBO_CATALOG_DIR")
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
    })
}

/// Without Kubernetes, a reset that names no snapshot storage keeps its pre-change snapshot in the
/// embedded default location (`--catalog-dir`, default `<state-dir>/catalog`, as `serve` lists it)
/// and says so in the status and on stderr; a KafkaOffsetRollback naming that snapshot by id alone
/// finds it there to verify, roll back and delete it, and one naming a missing id fails saying
/// where it looked.
#[test]
fn run_f_keeps_snapshots_without_storage_in_the_embedded_default_location() {
    let Some(bootstrap) = broker() else { return };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (topic, group) = runtime.block_on(fixture(&bootstrap, BASE_MS));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let catalog = state.join("catalog");
    let cluster = format!("  kafkaCluster:\n    bootstrapServers: [\"{bootstrap}\"]\n");

    // The seed's "reset to earliest": no storage named, snapshotBeforeReset defaults to true. The
    // state directory comes from KBO_STATE_DIR, as for `serve`.
    let reset = format!(
        "apiVersion: kafka.oso.sh/v1alpha1\nkind: KafkaOffsetReset\nmetadata:\n  name: reset-to-earliest\nspec:\n{cluster}  consumerGroups: [\"{group}\"]\n  strategy: earliest\n"
    );
    let (ok, status, stderr) = run_f(dir.path(), &reset, &[], &[("KBO_STATE_DIR", &state)]);
    assert!(ok, "{status}\n{stderr}");
    assert_eq!(status["status"]["phase"], "Completed", "{status}");
    assert_eq!(committed(&bootstrap, &group, &topic, 3), all(0));
    let id = status["status"]["snapshot"]["snapshotId"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = catalog.join("offset-snapshots").join(format!("{id}.json"));
    assert!(file.is_file(), "{} missing", file.display());
    let uri = format!("file://{}", file.display());
    assert_eq!(status["status"]["snapshot"]["location"], uri.as_str());
    assert!(
        stderr.contains(&uri) && stderr.contains("embedded default location"),
        "{stderr}"
    );
    let stored: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        stored["groups"][&group]["topics"][&topic]["0"]["offset"], 5,
        "{stored}"
    );

    // Rollback by id alone (the seed's "Rollback After Restore" shape), then verify and delete,
    // with --catalog-dir instead of the state directory.
    let catalog_arg = catalog.to_str().unwrap();
    let rollback = |operation: &str, id: &str| {
        let groups = match operation {
            "delete" => String::new(),
            _ => format!("  consumerGroups: [\"{group}\"]\n"),
        };
        format!(
            "apiVersion: kafka.oso.sh/v1alpha1\nkind: KafkaOffsetRollback\nmetadata:\n  name: by-id\nspec:\n{cluster}  operation: {operation}\n  snapshotId: \"{id}\"\n{groups}"
        )
    };
    let by_id = |operation: &str, id: &str| {
        run_f(
            dir.path(),
            &rollback(operation, id),
            &["--catalog-dir", catalog_arg],
            &[],
        )
    };
    let (ok, status, stderr) = by_id("rollback", &id);
    assert!(ok, "{status}\n{stderr}");
    assert_eq!(status["status"]["phase"], "Completed", "{status}");
    assert_eq!(status["status"]["snapshot"]["location"], uri.as_str());
    assert_eq!(committed(&bootstrap, &group, &topic, 3), all(5));
    let (ok, status, stderr) = by_id("verify", &id);
    assert!(ok, "{status}\n{stderr}");
    assert_eq!(status["status"]["verification"]["matched"], true, "{status}");
    let (ok, status, stderr) = by_id("delete", &id);
    assert!(ok, "{status}\n{stderr}");
    assert!(!file.exists(), "deleted");

    // Gone now: the error says where it looked.
    let (ok, status, _) = by_id("verify", &id);
    assert!(!ok);
    let message = status["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("snapshot {id} not found: looked in {uri}")),
        "{message}"
    );

    // A snapshot taken by a KafkaOffsetRollback without storage goes there too.
    let snapshot_id = unique("quick-snapshot");
    let (ok, status, stderr) = by_id("snapshot", &snapshot_id);
    assert!(ok, "{status}\n{stderr}");
    assert!(
        catalog
            .join("offset-snapshots")
            .join(format!("{snapshot_id}.json"))
            .is_file()
    );
}

/// The group-offset protocol client on its own: describe, commit from outside the group, read
/// (some partitions and all), delete offsets; cross-checked with plain rdkafka.
#[tokio::test(flavor = "multi_thread")]
async fn the_group_protocol_client_reads_commits_and_deletes_offsets() {
    use kafka_backup_operator::kafka::{
        ClusterAccess,
        groups::Committed,
        protocol::{GroupAdmin, Settings},
    };
    let Some(bootstrap) = broker() else { return };
    let topic = unique("proto");
    let group = unique("proto-group");
    let unknown = unique("proto-unknown");
    create_topic(&bootstrap, &topic, 3).await;
    let spec = serde_json::from_value(json!({"bootstrapServers": [bootstrap]})).unwrap();
    let access = ClusterAccess::read(&spec, &SecretStore::None).unwrap();
    let admin = GroupAdmin::connect(Settings::new(&access).unwrap())
        .await
        .unwrap();

    let all: std::collections::BTreeSet<(String, i32)> = (0..3).map(|p| (topic.clone(), p)).collect();
    let described = admin.describe(&[group.clone(), unknown.clone()]).await.unwrap();
    assert!(described[&unknown].is_inactive(), "{described:?}");
    assert!(admin.committed(&group, &all).await.unwrap().is_empty());

    let offsets: BTreeMap<(String, i32), Committed> = (0..3)
        .map(|p| {
            let c = Committed {
                offset: 10 + i64::from(p),
                metadata: format!("m{p}"),
            };
            ((topic.clone(), p), c)
        })
        .collect();
    admin.commit(&group, &offsets).await.unwrap();
    assert_eq!(
        committed(&bootstrap, &group, &topic, 3),
        BTreeMap::from([(0, 10), (1, 11), (2, 12)])
    );
    // (nisshi keeps no commit metadata, so only offsets are compared.)
    let offsets_of = |m: BTreeMap<(String, i32), Committed>| -> BTreeMap<i32, i64> {
        m.into_iter().map(|((_, p), c)| (p, c.offset)).collect()
    };
    assert_eq!(
        offsets_of(admin.committed(&group, &all).await.unwrap()),
        BTreeMap::from([(0, 10), (1, 11), (2, 12)])
    );
    // Many groups at once (batched where the broker speaks OffsetFetch v8).
    let mut both = admin
        .committed_groups(&[group.clone(), unknown.clone()], &all, 2)
        .await;
    assert!(both.remove(&unknown).unwrap().unwrap().is_empty());
    assert_eq!(
        offsets_of(both.remove(&group).unwrap().unwrap()),
        BTreeMap::from([(0, 10), (1, 11), (2, 12)])
    );
    let one = [(topic.clone(), 1)].into_iter().collect();
    let read = admin.committed(&group, &one).await.unwrap();
    assert_eq!(offsets_of(read), BTreeMap::from([(1, 11)]));
    let described = admin.describe(std::slice::from_ref(&group)).await.unwrap();
    assert_eq!(described[&group].state, "Empty", "{described:?}");

    // OffsetDelete, or on a broker without it deleting the group and committing back the rest.
    admin.delete_offsets(&group, &one, &all).await.unwrap();
    assert_eq!(
        committed(&bootstrap, &group, &topic, 3),
        BTreeMap::from([(0, 10), (2, 12)])
    );
    // A group that does not exist has nothing to delete.
    admin.delete_offsets(&unknown, &one, &all).await.unwrap();
}
