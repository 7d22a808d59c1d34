//! The reconciler against a mock Kubernetes API (kube-rs controller-rs style: a `tower_test` mock
//! service whose handle expects the requests in order and answers them) plus, where an operation
//! really runs, the real Kafka broker (`KBO_TEST_KAFKA_BOOTSTRAP`) and real storage (a local
//! directory as PVC, ConfigMaps through the mock API).
//!
//! The end-to-end test against a real cluster is ignored by default; see [`e2e_offset_reset_in_a_cluster`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeZone, Utc};
use http::{Method, Request, Response};
use kafka_backup_operator::{
    api::v1beta1::{KafkaBackup, KafkaBackupValidation, KafkaOffsetReset, KafkaRestore, RunPhase},
    metrics::Metrics,
    ops::{self, Context, ResourceRef},
    reconciler::{
        FINALIZER, Hooks,
        controller::{Config, Ctx, reconcile},
        kinds::Operation,
        leader::LeaderElector,
        lifecycle::CancelReason,
        schedule::Schedule,
        supervisor::TaskOwner,
    },
    secrets::SecretStore,
    storage::StorageEnv,
};
use kube::{Client, client::Body, core::DeserializeGuard, runtime::controller::Action};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::{Value, json};
use support::{create_topic, service, unique};
use tower_test::mock::{self, SendResponse};

const NS: &str = "team-a";

// ---------------------------------------------------------------------------------------------
// The mock API server.

type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// One request the code under test made.
struct Req {
    method: Method,
    path: String,
    query: String,
    body: Value,
    send: SendResponse<Response<Body>>,
}

impl Req {
    fn reply(self, code: u16, body: &Value) {
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.send.send_response(response);
    }

    fn reply_status(self, code: u16, reason: &str) {
        let status = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": reason, "reason": reason, "code": code});
        self.reply(code, &status);
    }

    fn describe(&self) -> String {
        format!("{} {}?{} {}", self.method, self.path, self.query, self.body)
    }
}

/// Expects requests in order and answers them.
struct ApiServerVerifier(Handle);

impl ApiServerVerifier {
    async fn next(&mut self, within: Duration) -> Req {
        let (request, send) = tokio::time::timeout(within, self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request to the API within {within:?}"))
            .expect("the client is gone");
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Req {
            method,
            path,
            query,
            body,
            send,
        }
    }

    /// The next request, which must be `method path`.
    async fn expect(&mut self, method: &str, path: &str, within: Duration) -> Req {
        let req = self.next(within).await;
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            (method, path),
            "unexpected request: {}",
            req.describe()
        );
        req
    }

    /// Answers an Event (`events.k8s.io/v1`): a creation, or the patch of a series when the same
    /// reason repeats (the kube Recorder aggregates those); returns its body.
    async fn expect_event(&mut self, within: Duration) -> Value {
        let req = self.next(within).await;
        let events = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
        let ok = match req.method.as_str() {
            "POST" => req.path == events,
            "PATCH" => req.path.starts_with(&format!("{events}/")),
            _ => false,
        };
        assert!(ok, "expected an Event, got {}", req.describe());
        let body = req.body.clone();
        let code = if req.method == Method::POST { 201 } else { 200 };
        req.reply(code, &body);
        body
    }

    /// Asserts no request arrives for `d`.
    async fn none_within(&mut self, d: Duration) {
        if let Ok(Some((request, _))) = tokio::time::timeout(d, self.0.next_request()).await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

fn mock_client() -> (Client, ApiServerVerifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, NS), ApiServerVerifier(handle))
}

fn ctx(client: Client, pvc_root: &std::path::Path, progress_interval: Duration) -> Arc<Ctx> {
    ctx_with_clock(client, pvc_root, progress_interval, Arc::new(Utc::now))
}

fn ctx_with_clock(
    client: Client,
    pvc_root: &std::path::Path,
    progress_interval: Duration,
    clock: kafka_backup_operator::reconciler::controller::Clock,
) -> Arc<Ctx> {
    let hooks = Hooks {
        catalog: None,
        snapshot_lookup: None,
    };
    ctx_with_hooks(client, pvc_root, progress_interval, clock, hooks)
}

fn ctx_with_hooks(
    client: Client,
    pvc_root: &std::path::Path,
    progress_interval: Duration,
    clock: kafka_backup_operator::reconciler::controller::Clock,
    hooks: Hooks,
) -> Arc<Ctx> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let config = Config {
        namespaces: vec![NS.into()],
        max_concurrent_operations: 4,
        progress_interval,
        storage: StorageEnv {
            pvc_root: pvc_root.to_owned(),
            config_maps: Default::default(),
        },
        reporter_instance: Some("test-pod".into()),
    };
    Ctx::with_clock(client, config, Arc::new(Metrics::new()), hooks, clock)
}

/// The server's copy of one object: merge patches and JSON patches are applied to it, so replies
/// are what an API server would answer.
struct Stored(Value);

impl Stored {
    fn typed<K: serde::de::DeserializeOwned + kube::Resource>(&self) -> Arc<DeserializeGuard<K>> {
        Arc::new(DeserializeGuard(Ok(
            serde_json::from_value(self.0.clone()).unwrap()
        )))
    }

    fn bump(&mut self) {
        let rv: u64 = self.0["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("1")
            .parse()
            .unwrap();
        self.0["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
    }

    /// Applies a merge patch of the status subresource and answers with the object.
    fn merge_status(&mut self, req: Req) -> Value {
        let patch = req.body.clone();
        assert!(
            req.query.contains("fieldManager=kafka-backup-operator"),
            "{}",
            req.query
        );
        let mut status_only = json!({"status": patch["status"].clone()});
        if self.0.get("status").is_none() {
            self.0["status"] = json!({});
        }
        json_patch::merge(&mut self.0, &status_only.take());
        self.bump();
        req.reply(200, &self.0);
        patch["status"].clone()
    }

    /// Applies a JSON patch of the object and answers with it.
    fn json_patch(&mut self, req: Req) -> Value {
        let ops: json_patch::Patch = serde_json::from_value(req.body.clone()).unwrap();
        // The API server reads an absent field as null for `test`, as kube-runtime's finalizer
        // helper relies on; the json_patch crate needs the key to be there.
        if self.0["metadata"].get("finalizers").is_none() {
            self.0["metadata"]["finalizers"] = Value::Null;
        }
        json_patch::patch(&mut self.0, &ops).unwrap();
        self.bump();
        let body = req.body.clone();
        req.reply(200, &self.0);
        body
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no condition {type_} in {status}"))
}

const SECOND: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// The broker.

fn broker() -> Option<String> {
    service("KBO_TEST_KAFKA_BOOTSTRAP")
}

async fn topic_with_records(bootstrap: &str, topic: &str, records: i64) {
    create_topic(bootstrap, topic, 1).await;
    produce(bootstrap, topic, records).await;
}

/// Produces `records` records to partition 0 of `topic`.
async fn produce(bootstrap: &str, topic: &str, records: i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let values: Vec<String> = (0..records).map(|i| format!("v{i}")).collect();
    let sends = values.iter().map(|value| {
        producer.send(
            FutureRecord::<(), _>::to(topic).partition(0).payload(value),
            SECOND * 30,
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap();
    }
}

/// The high watermark of partition 0; 0 while the topic does not exist yet.
fn high_watermark(bootstrap: &str, topic: &str) -> i64 {
    consumer(bootstrap, &unique("hw"))
        .fetch_watermarks(topic, 0, SECOND * 10)
        .map_or(0, |(_, high)| high)
}

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

fn commit(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer(bootstrap, group).commit(&tpl, CommitMode::Sync).unwrap();
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let answer = consumer(bootstrap, group)
        .committed_offsets(tpl, SECOND * 10)
        .unwrap();
    match answer.elements()[0].offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn metadata(kind_plural: &str, name: &str) -> (String, Value) {
    let uid = format!("uid-{}", unique(name));
    (
        format!("/apis/kafka.oso.sh/v1beta1/namespaces/{NS}/{kind_plural}/{name}"),
        json!({"name": name, "namespace": NS, "uid": uid, "generation": 1, "resourceVersion": "1",
            "creationTimestamp": "2025-03-01T11:30:00Z"}),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// A KafkaOffsetReset goes Pending -> Running -> Completed with per-group results: the finalizer
/// first, then Pending, then the supervised task writes Running, stores the pre-change snapshot in
/// a ConfigMap of the resource's namespace, commits on the real broker and writes Completed;
/// every phase change is an Event. The reconcile that starts it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offset_reset_goes_pending_running_completed() {
    let Some(bootstrap) = broker() else { return };
    let topic = unique("kor-topic");
    let groups = [unique("kor-g1"), unique("kor-g2")];
    topic_with_records(&bootstrap, &topic, 10).await;
    for g in &groups {
        commit(&bootstrap, g, &topic, 8);
    }
    let (client, mut api) = mock_client();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(client, dir.path(), Duration::from_secs(3600));
    let (path, meta) = metadata("kafkaoffsetresets", "reset-to-start");
    let uid = meta["uid"].as_str().unwrap().to_owned();
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset", "metadata": meta,
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": groups,
            "strategy": "Earliest", "topics": [{"name": topic}]},
    }));

    // 1. The finalizer.
    let object = stored.typed::<KafkaOffsetReset>();
    let run = tokio::spawn(reconcile(object, Arc::clone(&ctx)));
    let req = api.expect("PATCH", &path, SECOND * 5).await;
    let patch = stored.json_patch(req);
    assert_eq!(
        patch[1],
        json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    );
    assert_eq!(run.await.unwrap().unwrap(), Action::await_change());

    // 2. Pending.
    let run = tokio::spawn(reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx)));
    let req = api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await;
    let status = stored.merge_status(req);
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(condition(&status, "Ready")["status"], "False");
    run.await.unwrap().unwrap();

    // 3. Start: the reconcile returns before the operation has done anything.
    let action = tokio::time::timeout(
        SECOND * 5,
        reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx)),
    )
    .await
    .expect("reconcile must not wait for the operation")
    .unwrap();
    assert_eq!(action, Action::await_change());
    assert!(
        ctx.supervisor.task(&uid).is_some(),
        "the operation runs as a supervised task"
    );
    // A second reconcile meanwhile starts nothing and asks nothing.
    reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx))
        .await
        .unwrap();

    let req = api.expect("PATCH", &format!("{path}/status"), SECOND * 10).await;
    let status = stored.merge_status(req);
    assert_eq!(status["phase"], "Running");
    assert!(status["startTime"].is_string());
    assert_eq!(condition(&status, "Progressing")["status"], "True");
    let event = api.expect_event(SECOND * 5).await;
    assert_eq!(event["reason"], "Started");
    assert_eq!(event["regarding"]["uid"], uid.as_str());
    assert_eq!(event["reportingController"], "kafka-backup-operator");

    // The pre-change snapshot goes to a ConfigMap named after the resource, in its namespace.
    let cm_path = format!("/api/v1/namespaces/{NS}/configmaps/reset-to-start");
    api.expect("GET", &cm_path, SECOND * 30)
        .await
        .reply_status(404, "NotFound");
    let req = api
        .expect(
            "POST",
            &format!("/api/v1/namespaces/{NS}/configmaps"),
            SECOND * 30,
        )
        .await;
    let cm = req.body.clone();
    assert_eq!(cm["metadata"]["name"], "reset-to-start");
    let key = cm["data"].as_object().unwrap().keys().next().unwrap().clone();
    assert!(key.starts_with("reset-to-start-"), "{key}");
    req.reply(201, &cm);

    let req = api.expect("PATCH", &format!("{path}/status"), SECOND * 60).await;
    let status = stored.merge_status(req);
    assert_eq!(status["phase"], "Completed", "{status}");
    assert_eq!(status["groupsReset"], 2);
    let results = status["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert_eq!(r["outcome"], "Succeeded", "{r}");
        assert_eq!(r["partitions"][0]["previousOffset"], 8);
        assert_eq!(r["partitions"][0]["newOffset"], 0);
    }
    assert!(
        status["snapshot"]["location"]
            .as_str()
            .unwrap()
            .starts_with("configmap://reset-to-start/")
    );
    assert!(status["completionTime"].is_string());
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Ready")["reason"], "Completed");
    assert_eq!(condition(&status, "Progressing")["status"], "False");
    let event = api.expect_event(SECOND * 5).await;
    assert_eq!(event["reason"], "Completed");
    assert_eq!(event["type"], "Normal");
    ctx.supervisor.wait(&uid).await;
    for g in &groups {
        assert_eq!(committed(&bootstrap, g, &topic), Some(0));
    }

    // Finished: nothing more is done (no TTL set).
    let action = reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    api.none_within(Duration::from_millis(300)).await;
    let metrics = ctx.metrics.encode().unwrap();
    assert!(
        metrics.contains(
            "kafka_backup_operator_operations_total{kind=\"KafkaOffsetReset\",outcome=\"completed\"} 1"
        ),
        "{metrics}"
    );
}

/// A continuous backup (a real operation that never ends on its own) is stopped for an operator
/// shutdown without its status being touched; a new operator process finds it Running and resumes
/// it (it continues from its checkpoint in storage); deleting the resource then cancels the
/// running backup, and the finalizer is removed only once the task has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn continuous_backup_resumes_after_a_restart_and_deletion_cancels_it() {
    let Some(bootstrap) = broker() else { return };
    let topic = unique("kb-topic");
    topic_with_records(&bootstrap, &topic, 20).await;
    let dir = tempfile::tempdir().unwrap();
    let (client, mut api) = mock_client();
    let first = ctx(client.clone(), dir.path(), Duration::from_secs(3600));
    let (path, meta) = metadata("kafkabackups", "stream");
    let uid = meta["uid"].as_str().unwrap().to_owned();
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup", "metadata": meta,
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [topic],
            "storage": {"type": "PVC", "pvc": {"claimName": "backups"}},
            "continuous": true, "segmentMaxIntervalMs": 1000,
            "checkpoint": {"enabled": true, "intervalSeconds": 1}},
    }));
    stored.0["metadata"]["finalizers"] = json!([FINALIZER]);
    stored.0["status"] = json!({"phase": "Pending", "observedGeneration": 1});

    // Start.
    reconcile(stored.typed::<KafkaBackup>(), Arc::clone(&first))
        .await
        .unwrap();
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 10).await);
    assert_eq!(status["phase"], "Running");
    // The BACKUP ID column shows the set from the start.
    assert_eq!(status["backupId"], "stream");
    // A continuous backup is Ready while it runs.
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Started");
    tokio::time::sleep(SECOND * 3).await;

    // The operator shuts down: the task stops, the status stays Running for the next leader.
    first.supervisor.cancel_all(CancelReason::Shutdown);
    tokio::time::timeout(SECOND * 40, first.supervisor.wait(&uid))
        .await
        .expect("the backup stops when cancelled");
    api.none_within(Duration::from_millis(300)).await;
    assert_eq!(stored.0["status"]["phase"], "Running");
    let set = dir.path().join("backups").join("backups").join("stream");
    assert!(
        set.is_dir(),
        "the backup set exists in storage: {}",
        set.display()
    );

    // A new process (fresh supervisor) resumes it.
    let second = ctx(client, dir.path(), Duration::from_secs(3600));
    reconcile(stored.typed::<KafkaBackup>(), Arc::clone(&second))
        .await
        .unwrap();
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 10).await);
    assert_eq!(status["phase"], "Running");
    assert_eq!(condition(&status, "Progressing")["reason"], "Resumed");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Resumed");
    assert!(second.supervisor.task(&uid).is_some());

    // Deletion cancels the running backup; the finalizer stays until the task has stopped.
    stored.0["metadata"]["deletionTimestamp"] = json!("2025-03-01T12:00:00Z");
    // The reconcile publishes the Event before it returns: answer it while it runs.
    let run = tokio::spawn(reconcile(stored.typed::<KafkaBackup>(), Arc::clone(&second)));
    let event = api.expect_event(SECOND * 5).await;
    assert_eq!(event["reason"], "Cancelled");
    assert_eq!(run.await.unwrap().unwrap(), Action::requeue(SECOND));
    tokio::time::timeout(SECOND * 40, second.supervisor.wait(&uid))
        .await
        .expect("deletion stops the backup");
    api.none_within(Duration::from_millis(300)).await;
    let run = tokio::spawn(reconcile(stored.typed::<KafkaBackup>(), Arc::clone(&second)));
    let patch = stored.json_patch(api.expect("PATCH", &path, SECOND * 5).await);
    assert_eq!(run.await.unwrap().unwrap(), Action::await_change());
    assert_eq!(
        patch,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    let metrics = second.metrics.encode().unwrap();
    assert!(
        metrics
            .contains("kafka_backup_operator_operations_total{kind=\"KafkaBackup\",outcome=\"cancelled\"} 1"),
        "{metrics}"
    );
}

/// A restore interrupted by an operator shutdown (status left Running, as a crash would leave it)
/// is resumed by the next process from its checkpoints in storage: it completes, and every record
/// of the backup is in the target topic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_interrupted_by_a_restart_resumes_without_duplicates() {
    let Some(bootstrap) = broker() else { return };
    const RECORDS: i64 = 20_000;
    let source = unique("kr-src");
    let target = unique("kr-dst");
    topic_with_records(&bootstrap, &source, RECORDS).await;
    let dir = tempfile::tempdir().unwrap();
    let storage = json!({"type": "PVC", "pvc": {"claimName": "backups"}});
    let backup_id = unique("set");
    let backup: KafkaBackup = serde_json::from_value(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
        "metadata": {"name": "nightly", "namespace": NS},
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [source],
            "storage": storage, "backupId": backup_id},
    }))
    .unwrap();
    let engine = Context::new(
        ResourceRef {
            kind: "KafkaBackup".into(),
            namespace: Some(NS.into()),
            name: "nightly".into(),
            uid: None,
        },
        SecretStore::None,
        StorageEnv {
            pvc_root: dir.path().to_owned(),
            config_maps: Default::default(),
        },
    );
    let backed_up = ops::backup::execute(&backup, &engine).await;
    assert_eq!(backed_up.phase, Some(RunPhase::Completed), "{backed_up:?}");

    let (client, mut api) = mock_client();
    let first = ctx(client.clone(), dir.path(), Duration::from_secs(3600));
    let (path, meta) = metadata("kafkarestores", "put-back");
    let uid = meta["uid"].as_str().unwrap().to_owned();
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore", "metadata": meta,
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]},
            "backupRef": {"backupId": backup_id, "storage": storage},
            "topicMapping": {source.clone(): target.clone()}, "createTopics": {"enabled": true},
            "produce": {"batchSize": 100}, "rateLimiting": {"recordsPerSec": 5000}},
    }));
    stored.0["metadata"]["finalizers"] = json!([FINALIZER]);
    stored.0["status"] = json!({"phase": "Pending", "observedGeneration": 1});

    // The first process starts it and is shut down at once, mid-restore.
    reconcile(stored.typed::<KafkaRestore>(), Arc::clone(&first))
        .await
        .unwrap();
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 10).await);
    assert_eq!(status["phase"], "Running");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Started");
    let deadline = tokio::time::Instant::now() + SECOND * 30;
    while high_watermark(&bootstrap, &target) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restore wrote nothing in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.supervisor.cancel_all(CancelReason::Shutdown);
    tokio::time::timeout(SECOND * 40, first.supervisor.wait(&uid))
        .await
        .expect("the restore stops when cancelled");
    api.none_within(Duration::from_millis(300)).await;
    assert_eq!(stored.0["status"]["phase"], "Running");
    let after_first = high_watermark(&bootstrap, &target);
    assert!(
        after_first < RECORDS,
        "the first run was stopped before the end ({after_first})"
    );

    // The next process finds it Running and resumes it to completion.
    let second = ctx(client, dir.path(), Duration::from_secs(3600));
    reconcile(stored.typed::<KafkaRestore>(), Arc::clone(&second))
        .await
        .unwrap();
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 10).await);
    assert_eq!(status["phase"], "Running");
    assert_eq!(condition(&status, "Progressing")["reason"], "Resumed");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Resumed");
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 120).await);
    assert_eq!(status["phase"], "Completed", "{status}");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Completed");
    second.supervisor.wait(&uid).await;
    assert_eq!(
        high_watermark(&bootstrap, &target),
        RECORDS,
        "every record exactly once in the target (first run had written {after_first})"
    );
}

/// Drives a KafkaOffsetRollback `name` with `spec` through the reconciler to its final status,
/// answering the mock API (finalizer, Pending, the task's status writes, Events).
async fn rollback_to_the_end(ctx: &Arc<Ctx>, api: &mut ApiServerVerifier, name: &str, spec: Value) -> Value {
    use kafka_backup_operator::api::v1beta1::KafkaOffsetRollback;
    let (path, meta) = metadata("kafkaoffsetrollbacks", name);
    let uid = meta["uid"].as_str().unwrap().to_owned();
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetRollback", "metadata": meta,
        "spec": spec,
    }));
    let run = tokio::spawn(reconcile(stored.typed::<KafkaOffsetRollback>(), Arc::clone(ctx)));
    stored.json_patch(api.expect("PATCH", &path, SECOND * 5).await);
    run.await.unwrap().unwrap();
    let run = tokio::spawn(reconcile(stored.typed::<KafkaOffsetRollback>(), Arc::clone(ctx)));
    stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await);
    run.await.unwrap().unwrap();
    reconcile(stored.typed::<KafkaOffsetRollback>(), Arc::clone(ctx))
        .await
        .unwrap();
    loop {
        let req = api.next(SECOND * 60).await;
        if req.path == format!("{path}/status") {
            let status = stored.merge_status(req);
            if ["Completed", "Failed", "PartiallyCompleted"].contains(&status["phase"].as_str().unwrap_or(""))
            {
                api.expect_event(SECOND * 5).await;
                ctx.supervisor.wait(&uid).await;
                return stored.0["status"].clone();
            }
        } else if req.path.contains("/events") {
            let (body, code) = (
                req.body.clone(),
                if req.method == Method::POST { 201 } else { 200 },
            );
            req.reply(code, &body);
        } else {
            panic!("unexpected request: {}", req.describe());
        }
    }
}

/// In the operator, a KafkaOffsetRollback that names a snapshot by id alone (the seed's "Rollback
/// After Restore") finds it among the catalog's locations of its namespace and rolls back to it;
/// once a second location of the namespace holds the same id it is refused, naming both; a
/// missing id fails listing where it was looked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_by_snapshot_id_finds_the_snapshot_in_the_catalog() {
    use kafka_backup_operator::{
        apiserver::{
            catalog::{Catalog, Scope},
            feed,
        },
        storage::{
            embedded_default,
            snapshot::{OffsetSnapshot, snapshot_key},
        },
    };
    let Some(bootstrap) = broker() else { return };
    let topic = unique("korb-topic");
    let group = unique("korb-group");
    topic_with_records(&bootstrap, &topic, 10).await;
    commit(&bootstrap, &group, &topic, 8);
    let snapshot_id = unique("pre-restore");
    let snapshot = json!({
        "snapshotId": snapshot_id, "timestamp": "2025-03-01T11:00:00Z", "cluster": bootstrap,
        "groups": {group.clone(): {"topics": {topic.clone(): {"0": {"offset": 3, "metadata": "", "timestamp": 1}}}}},
    });
    let snapshot: OffsetSnapshot = serde_json::from_value(snapshot).unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let [first, second] = [0, 1].map(|i| embedded_default(dirs[i].path()).unwrap());
    first
        .put_new(&snapshot_key(&snapshot_id), snapshot.to_bytes())
        .await
        .unwrap();
    let catalog = Arc::new(Catalog::default());
    catalog.add_storage(Scope::Namespace(NS.into()), first.clone());
    catalog.add_storage(Scope::Namespace(NS.into()), second.clone());
    let hooks = Hooks {
        catalog: Some(feed::reconciler_hook(Arc::clone(&catalog))),
        snapshot_lookup: Some(feed::snapshot_lookup(Arc::clone(&catalog))),
    };
    let (client, mut api) = mock_client();
    let pvc = tempfile::tempdir().unwrap();
    let ctx = ctx_with_hooks(client, pvc.path(), SECOND * 3600, Arc::new(Utc::now), hooks);
    let spec = |id: &str| {
        json!({"kafkaCluster": {"bootstrapServers": [bootstrap]}, "operation": "Rollback",
            "snapshotId": id, "consumerGroups": [group]})
    };

    let status = rollback_to_the_end(&ctx, &mut api, "rollback-restore", spec(&snapshot_id)).await;
    assert_eq!(status["phase"], "Completed", "{status}");
    assert_eq!(
        status["snapshot"]["location"],
        first.uri(&snapshot_key(&snapshot_id)).as_str()
    );
    assert_eq!(committed(&bootstrap, &group, &topic), Some(3));

    // The same id in a second location of the namespace: refused, both named, nothing changed.
    commit(&bootstrap, &group, &topic, 8);
    second
        .put_new(&snapshot_key(&snapshot_id), snapshot.to_bytes())
        .await
        .unwrap();
    let status = rollback_to_the_end(&ctx, &mut api, "ambiguous", spec(&snapshot_id)).await;
    assert_eq!(status["phase"], "Failed", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("is in more than one storage location")
            && message.contains(&first.uri(&snapshot_key(&snapshot_id)))
            && message.contains(&second.uri(&snapshot_key(&snapshot_id))),
        "{message}"
    );
    assert_eq!(committed(&bootstrap, &group, &topic), Some(8));

    // An id no location holds: the message lists where it looked.
    let missing = unique("missing");
    let status = rollback_to_the_end(&ctx, &mut api, "missing", spec(&missing)).await;
    assert_eq!(status["phase"], "Failed", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "snapshot {missing} not found: looked in {}, {}",
            first.uri(&snapshot_key(&missing)),
            second.uri(&snapshot_key(&missing))
        )),
        "{message}"
    );
}

/// One run of a started reconcile of a Manual reset: Running and its Event, then the status the
/// run ends with and its Event. Returns (final status, Event).
async fn manual_run(
    ctx: &Arc<Ctx>,
    api: &mut ApiServerVerifier,
    stored: &mut Stored,
    path: &str,
) -> (Value, Value) {
    reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(ctx))
        .await
        .unwrap();
    manual_run_started(ctx, api, stored, path).await
}

/// The rest of [`manual_run`] once the reconcile returned.
async fn manual_run_started(
    ctx: &Arc<Ctx>,
    api: &mut ApiServerVerifier,
    stored: &mut Stored,
    path: &str,
) -> (Value, Value) {
    let uid = stored.0["metadata"]["uid"].as_str().unwrap().to_owned();
    let req = api.expect("PATCH", &format!("{path}/status"), SECOND * 10).await;
    assert_eq!(stored.merge_status(req)["phase"], "Running");
    // Started (from the second run on, the patch of its series).
    api.expect_event(SECOND * 5).await;
    let req = api.expect("PATCH", &format!("{path}/status"), SECOND * 60).await;
    stored.merge_status(req);
    let event = api.expect_event(SECOND * 5).await;
    ctx.supervisor.wait(&uid).await;
    (stored.0["status"].clone(), event)
}

/// A KafkaOffsetReset with `approval: Manual` goes PendingApproval with its plan and commits
/// nothing; a reconcile without a new approval plans nothing again; a commit made before the
/// approval makes the approval of the old hash refused (new plan, new hash, a Warning Event);
/// the new hash approved, the planned offsets are committed. Real broker, mock API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manual_reset_waits_for_the_approval_of_its_current_plan() {
    let Some(bootstrap) = broker() else { return };
    let topic = unique("kor-approve");
    let group = unique("kor-approve-g");
    topic_with_records(&bootstrap, &topic, 10).await;
    commit(&bootstrap, &group, &topic, 8);
    let (client, mut api) = mock_client();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(client, dir.path(), Duration::from_secs(3600));
    let (path, mut meta) = metadata("kafkaoffsetresets", "manual-reset");
    meta["finalizers"] = json!([FINALIZER]);
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset", "metadata": meta,
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group],
            "strategy": "Earliest", "topics": [{"name": topic}], "approval": "Manual",
            "snapshot": {"enabled": false}},
        "status": {"phase": "Pending", "observedGeneration": 1},
    }));
    let approved = |status: &Value| condition(status, "Approved").clone();

    // 1. The plan, waiting; nothing committed.
    let (status, event) = manual_run(&ctx, &mut api, &mut stored, &path).await;
    assert_eq!(status["phase"], "PendingApproval", "{status}");
    let partition = &status["plan"]["groups"][0]["partitions"][0];
    assert_eq!(
        (
            partition["previousOffset"].clone(),
            partition["newOffset"].clone()
        ),
        (json!(8), json!(0))
    );
    let first = status["planHash"].as_str().unwrap().to_owned();
    assert_eq!(approved(&status)["status"], "False");
    assert_eq!(approved(&status)["reason"], "AwaitingApproval");
    assert_eq!(condition(&status, "Ready")["reason"], "PendingApproval");
    assert_eq!(event["reason"], "PendingApproval");
    assert!(event["note"].as_str().unwrap().contains(&first), "{event}");
    assert_eq!(committed(&bootstrap, &group, &topic), Some(8));

    // Its own status coming back plans nothing again.
    let action = reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx))
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    api.none_within(Duration::from_millis(300)).await;

    // A refresh request: removed from the object before the run, which plans again.
    stored.0["metadata"]["annotations"] = json!({"kafka.oso.sh/refresh-plan": "true"});
    let run = tokio::spawn(reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx)));
    let req = api.expect("PATCH", &path, SECOND * 5).await;
    assert_eq!(
        req.body,
        json!({"metadata": {"annotations": {"kafka.oso.sh/refresh-plan": null}}})
    );
    json_patch::merge(&mut stored.0, &req.body);
    stored.bump();
    req.reply(200, &stored.0);
    run.await.unwrap().unwrap();
    let (status, event) = manual_run_started(&ctx, &mut api, &mut stored, &path).await;
    assert_eq!(approved(&status)["reason"], "PlanRefreshed");
    assert_eq!(status["planHash"], first.as_str(), "nothing moved: the same plan");
    assert_eq!(event["reason"], "PendingApproval");
    assert!(
        stored.0["metadata"]["annotations"]
            .as_object()
            .unwrap()
            .is_empty()
    );

    // 2. The group moves before the approval: the old hash is refused with the new plan.
    commit(&bootstrap, &group, &topic, 6);
    stored.0["metadata"]["annotations"] = json!({"kafka.oso.sh/approve": first});
    let (status, event) = manual_run(&ctx, &mut api, &mut stored, &path).await;
    assert_eq!(status["phase"], "PendingApproval", "{status}");
    assert_eq!(status["plan"]["groups"][0]["partitions"][0]["previousOffset"], 6);
    let second = status["planHash"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(approved(&status)["reason"], "PlanChanged");
    assert_eq!(status["refusedApproval"], first.as_str());
    assert_eq!(
        (event["reason"].clone(), event["type"].clone()),
        (json!("ApprovalRefused"), json!("Warning"))
    );
    assert!(event["note"].as_str().unwrap().contains(&second), "{event}");
    assert_eq!(committed(&bootstrap, &group, &topic), Some(6));
    // The refused approval is not judged again.
    reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx))
        .await
        .unwrap();
    api.none_within(Duration::from_millis(300)).await;

    // 3. The new hash approved: the planned offsets are committed.
    stored.0["metadata"]["annotations"] = json!({"kafka.oso.sh/approve": second});
    let (status, event) = manual_run(&ctx, &mut api, &mut stored, &path).await;
    assert_eq!(status["phase"], "Completed", "{status}");
    assert_eq!(approved(&status)["status"], "True");
    assert_eq!(status["results"][0]["partitions"][0]["newOffset"], 0);
    assert_eq!(event["reason"], "Completed");
    assert_eq!(committed(&bootstrap, &group, &topic), Some(0));
    // The refusal of step 2 is history: the status no longer names it.
    assert!(
        stored.0["status"].get("refusedApproval").is_none(),
        "{}",
        stored.0["status"]
    );
}

/// After an operator restart, an offset reset found Running is not re-run (a second run would
/// snapshot the partly reset offsets): it is marked Failed, reason Interrupted, with a message
/// saying where the pre-change snapshot is, and a Warning Event. No broker needed.
#[tokio::test]
async fn a_reset_interrupted_by_a_restart_is_failed_with_guidance() {
    let (client, mut api) = mock_client();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(client, dir.path(), SECOND * 5);
    let (path, meta) = metadata("kafkaoffsetresets", "halfway");
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset", "metadata": meta,
        "spec": {"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "consumerGroups": ["g"],
            "strategy": "ShiftBy", "shiftBy": -10},
        "status": {"phase": "Running", "observedGeneration": 1, "startTime": "2025-03-01T11:59:00Z"},
    }));
    stored.0["metadata"]["finalizers"] = json!([FINALIZER]);
    let run = tokio::spawn(reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx)));
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await);
    assert_eq!(status["phase"], "Failed");
    assert_eq!(condition(&status, "Ready")["reason"], "Interrupted");
    let message = status["message"].as_str().unwrap();
    assert!(message.contains("operator restarted"), "{message}");
    assert!(message.contains("KafkaOffsetRollback"), "{message}");
    assert!(status["completionTime"].is_string());
    let event = api.expect_event(SECOND * 5).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("Interrupted"))
    );
    run.await.unwrap().unwrap();
    assert!(
        ctx.supervisor
            .task(stored.0["metadata"]["uid"].as_str().unwrap())
            .is_none()
    );
    // Failed is final.
    reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx))
        .await
        .unwrap();
    api.none_within(Duration::from_millis(300)).await;
}

/// `execution.retries` in the reconciler: the engine's attempts (ops::execution) against a
/// broker that refuses connections; before the retry the task writes status Retrying (condition
/// Progressing, reason Retrying) and a Warning Event, after the last attempt Failed with the last
/// error.
#[tokio::test]
async fn a_failed_attempt_is_retried_with_status_retrying_and_an_event() {
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let (client, mut api) = mock_client();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(client, dir.path(), SECOND * 3600);
    let (path, meta) = metadata("kafkaoffsetresets", "unreachable");
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset", "metadata": meta,
        "spec": {"kafkaCluster": {"bootstrapServers": [refused]}, "consumerGroups": ["g"],
            "strategy": "Earliest", "snapshot": {"enabled": false},
            "execution": {"retries": 1, "retryTimeoutSeconds": 1}},
        "status": {"phase": "Pending", "observedGeneration": 1},
    }));
    stored.0["metadata"]["finalizers"] = json!([FINALIZER]);
    reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx))
        .await
        .unwrap();
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await);
    assert_eq!(status["phase"], "Running");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Started");

    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 30).await);
    assert_eq!(status["phase"], "Running", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "attempt 1 of 2 failed: connecting to Kafka broker {refused}"
        )),
        "{message}"
    );
    assert!(message.contains("the next attempt starts in"), "{message}");
    assert_eq!(condition(&status, "Progressing")["reason"], "Retrying");
    assert_eq!(condition(&status, "Degraded")["reason"], "AttemptFailed");
    let event = api.expect_event(SECOND * 5).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("Retrying"))
    );

    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 30).await);
    assert_eq!(status["phase"], "Failed", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(message.starts_with("connecting to Kafka broker"), "{message}");
    assert!(message.ends_with("(attempt 2 of 2)"), "{message}");
    assert_eq!(condition(&status, "Ready")["reason"], "OperationFailed");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "OperationFailed");
    ctx.supervisor
        .wait(stored.0["metadata"]["uid"].as_str().unwrap())
        .await;
}

/// The API server is unreachable for 20 s (every request refused) right after a backup
/// started: the backup runs to its end meanwhile; a reconcile during the outage starts nothing;
/// the final status, which cannot be written while the server is away, is written once it is
/// back (the task lasts until then, so no reconcile finds the object Running without a task
/// and runs it again); the set holds one run. A row of the fault matrix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_operations_outlast_an_api_server_outage_and_start_once() {
    use support::faults::matrix::{self, Row, secs};
    const OUTAGE: Duration = Duration::from_secs(20);
    let Some(bootstrap) = broker() else { return };
    let topic = unique("kb-outage");
    topic_with_records(&bootstrap, &topic, 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let (client, mut api) = mock_client();
    let ctx = ctx(client, dir.path(), SECOND);
    let (path, meta) = metadata("kafkabackups", "through-outage");
    let uid = meta["uid"].as_str().unwrap().to_owned();
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup", "metadata": meta,
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [topic],
            "storage": {"type": "PVC", "pvc": {"claimName": "backups"}},
            "consumerGroupSnapshot": false, "rateLimiting": {"recordsPerSec": 500}},
        "status": {"phase": "Pending", "observedGeneration": 1},
    }));
    stored.0["metadata"]["finalizers"] = json!([FINALIZER]);
    reconcile(stored.typed::<KafkaBackup>(), Arc::clone(&ctx))
        .await
        .unwrap();
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 10).await);
    assert_eq!(status["phase"], "Running");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Started");

    // The outage: every request is refused; a reconcile meanwhile (the controller's resync)
    // starts nothing.
    let outage_end = tokio::time::Instant::now() + OUTAGE;
    let mut refused = Vec::new();
    let mut reconciled_during = None;
    while let Ok(next) = tokio::time::timeout_at(outage_end, api.0.next_request()).await {
        let (request, send) = next.expect("the client is gone");
        refused.push(format!("{} {}", request.method(), request.uri().path()));
        send.send_error(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        if reconciled_during.is_none() && ctx.supervisor.task(&uid).is_some() {
            reconciled_during = Some(tokio::spawn(reconcile(
                stored.typed::<KafkaBackup>(),
                Arc::clone(&ctx),
            )));
        }
    }
    let action = reconciled_during.unwrap().await.unwrap().unwrap();
    assert_eq!(action, Action::await_change(), "a reconcile meanwhile waits");
    let back = tokio::time::Instant::now();
    assert!(
        refused.iter().any(|r| r.ends_with("/status")),
        "status writes were refused: {refused:?}"
    );
    let manifest_file = dir.path().join("backups/backups/through-outage/manifest.json");
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_file).unwrap()).unwrap();
    assert_eq!(
        manifest["state"], "Complete",
        "the backup ran to its end during the outage"
    );
    assert!(
        ctx.supervisor.task(&uid).is_some(),
        "the task waits to write its final status"
    );
    // A reconcile of the object as the cache still shows it (Running) starts nothing either.
    let again = tokio::spawn(reconcile(stored.typed::<KafkaBackup>(), Arc::clone(&ctx)));

    // Back: the final status arrives (after progress writes, perhaps), then its Event.
    let status = loop {
        let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 60).await);
        if status["phase"] != "Running" {
            break status;
        }
    };
    let written_after = back.elapsed();
    assert_eq!(again.await.unwrap().unwrap(), Action::await_change());
    assert_eq!(status["phase"], "Completed", "{status}");
    assert_eq!(status["progress"]["records"], 1000);
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Completed");
    ctx.supervisor.wait(&uid).await;
    // Started once: one run in the set, and nothing more asked of the API.
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_file).unwrap()).unwrap();
    assert_eq!(manifest["runs"].as_array().map(Vec::len), Some(1), "{manifest}");
    reconcile(stored.typed::<KafkaBackup>(), Arc::clone(&ctx))
        .await
        .unwrap();
    api.none_within(Duration::from_millis(500)).await;
    matrix::record(Row {
        test: "reconciler::running_operations_outlast_an_api_server_outage_and_start_once",
        operation: "reconciler (KafkaBackup)",
        fault: format!(
            "Kubernetes API server refuses every request for {} s while a backup runs (mock API)",
            OUTAGE.as_secs()
        ),
        outcome: "the backup runs to its end; its final status (Completed) written once the server is back; started once, a reconcile meanwhile starts nothing".into(),
        lost: 0,
        duplicated: 0,
        recovery: format!(
            "final status written {} after the API server was back",
            secs(written_after)
        ),
    });
}

/// A scheduled KafkaBackupValidation: at tick + 2 s the tick is persisted as lastScheduleTime
/// (with the resourceVersion as precondition) before the run starts; looking again at the same
/// time fires nothing; a conflicting write (another replica fired it) starts nothing.
#[tokio::test]
async fn a_schedule_tick_is_persisted_before_the_run_and_fires_once() {
    let tick = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
    let now: DateTime<Utc> = tick + chrono::Duration::seconds(2);
    let (client, mut api) = mock_client();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with_clock(client, dir.path(), SECOND * 5, Arc::new(move || now));
    let (path, meta) = metadata("kafkabackupvalidations", "nightly");
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackupValidation", "metadata": meta,
        "spec": {"backupRef": {"backupId": "orders", "storage": {"type": "PVC", "pvc": {"claimName": "b"}}},
            "schedule": "0 0 * * * *"},
        "status": {"phase": "Pending", "observedGeneration": 1, "nextScheduleTime": "2025-03-01T12:00:00Z"},
    }));
    stored.0["metadata"]["finalizers"] = json!([FINALIZER]);
    stored.0["metadata"]["resourceVersion"] = json!("5");

    // Another replica wrote first: 409, nothing starts.
    let run = tokio::spawn(reconcile(
        stored.typed::<KafkaBackupValidation>(),
        Arc::clone(&ctx),
    ));
    let req = api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await;
    assert_eq!(req.body["metadata"]["resourceVersion"], "5");
    req.reply_status(409, "Conflict");
    assert_eq!(
        run.await.unwrap().unwrap(),
        Action::requeue(Duration::from_millis(500))
    );
    api.none_within(Duration::from_millis(300)).await;

    // Fired: lastScheduleTime first, then the run.
    let run = tokio::spawn(reconcile(
        stored.typed::<KafkaBackupValidation>(),
        Arc::clone(&ctx),
    ));
    let req = api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await;
    assert_eq!(req.body["metadata"]["resourceVersion"], "5");
    let status = stored.merge_status(req);
    assert_eq!(status["lastScheduleTime"], "2025-03-01T12:00:00Z");
    assert_eq!(status["nextScheduleTime"], "2025-03-01T13:00:00Z");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Scheduled");
    let action = run.await.unwrap().unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(3598) + Duration::from_millis(200))
    );
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await);
    assert_eq!(status["phase"], "Running");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "Started");
    // The backup set does not exist: the validation finishes (failing its checks) and is
    // reported like any finished run.
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 30).await);
    assert!(
        matches!(status["phase"].as_str(), Some("Failed" | "Completed")),
        "{status}"
    );
    let event = api.expect_event(SECOND * 5).await;
    assert!(
        matches!(event["reason"].as_str(), Some("OperationFailed" | "Completed")),
        "{event}"
    );
    ctx.supervisor
        .wait(stored.0["metadata"]["uid"].as_str().unwrap())
        .await;

    // The same tick does not fire again, from this process or a fresh one.
    for ctx in [
        Arc::clone(&ctx),
        ctx_with_clock(mock_client().0, dir.path(), SECOND, Arc::new(move || now)),
    ] {
        let action = reconcile(stored.typed::<KafkaBackupValidation>(), ctx)
            .await
            .unwrap();
        assert_eq!(
            action,
            Action::requeue(Duration::from_secs(3598) + Duration::from_millis(200))
        );
    }
    api.none_within(Duration::from_millis(300)).await;
}

/// One scheduled object driven the way kube-runtime's controller drives it against a real API
/// server: every status patch is applied to the server's copy and comes back as a watch event,
/// so the next reconcile (with the object as the server now returns it) comes at once and takes
/// the place of whatever requeue was asked for before; so does the end of the object's task (the
/// supervisor's announcement the controller subscribes to). Only when nothing of that is pending
/// does the requeue of the last reconcile fire, and then the injected clock moves to it. Events
/// are kept as the API server keeps them (a series patch updates the Event it names).
struct ScheduleScenario {
    api: ApiServerVerifier,
    stored: Stored,
    path: String,
    ctx: Arc<Ctx>,
    clock: Arc<Mutex<DateTime<Utc>>>,
    schedule: Schedule,
    ended: tokio::sync::broadcast::Receiver<TaskOwner>,
    /// A watch event (or an ended task) is due: the next reconcile comes at once.
    triggered: bool,
    /// The Events as the API server holds them, by name.
    events: BTreeMap<String, Value>,
    /// Each Event occurrence: its reason and the note the server shows for it then.
    occurrences: Vec<(String, String)>,
    /// The time of the last reconcile and the requeue it asked for.
    last: Option<(DateTime<Utc>, Action)>,
    reconciles: usize,
}

/// `*/10 * * * * *`, the schedule of the scenarios.
const EVERY_10_S: &str = "*/10 * * * * *";

impl ScheduleScenario {
    /// `object` (kind plural `plural`, with the finalizer, status Pending) whose first tick is
    /// `first_tick`; the clock starts just after it.
    fn new(dir: &std::path::Path, plural: &str, object: Value, first_tick: DateTime<Utc>) -> Self {
        let (client, api) = mock_client();
        let clock = Arc::new(Mutex::new(first_tick + chrono::Duration::milliseconds(200)));
        let now = Arc::clone(&clock);
        let ctx = ctx_with_clock(
            client,
            dir,
            Duration::from_secs(3600),
            Arc::new(move || *now.lock().unwrap()),
        );
        let mut stored = Stored(object);
        stored.0["metadata"]["finalizers"] = json!([FINALIZER]);
        stored.0["metadata"]["creationTimestamp"] = json!(rfc3339(first_tick - chrono::Duration::seconds(5)));
        stored.0["status"] = json!({"phase": "Pending", "observedGeneration": 1});
        let name = stored.0["metadata"]["name"].as_str().unwrap();
        ScheduleScenario {
            api,
            path: format!("/apis/kafka.oso.sh/v1beta1/namespaces/{NS}/{plural}/{name}"),
            ended: ctx.supervisor.subscribe_finished(),
            ctx,
            stored,
            clock,
            schedule: Schedule::parse(EVERY_10_S).unwrap(),
            triggered: false,
            events: BTreeMap::new(),
            occurrences: Vec::new(),
            last: None,
            reconciles: 0,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        *self.clock.lock().unwrap()
    }

    /// Answers one request as the API server would.
    fn serve(&mut self, req: Req) {
        let events = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
        if req.method == Method::PATCH && req.path == format!("{}/status", self.path) {
            let precondition = &req.body["metadata"]["resourceVersion"];
            if !precondition.is_null() && *precondition != self.stored.0["metadata"]["resourceVersion"] {
                req.reply_status(409, "Conflict");
                return;
            }
            self.stored.merge_status(req);
            self.triggered = true;
            return;
        }
        let event = if req.method == Method::POST && req.path == events {
            let name = req.body["metadata"]["name"].as_str().unwrap().to_owned();
            self.events.insert(name.clone(), req.body.clone());
            self.events[&name].clone()
        } else if req.method == Method::PATCH && req.path.starts_with(&format!("{events}/")) {
            let name = req.path.rsplit('/').next().unwrap();
            let event = self
                .events
                .get_mut(name)
                .unwrap_or_else(|| panic!("series patch of an unknown Event {name}"));
            json_patch::merge(event, &req.body);
            event.clone()
        } else {
            panic!("unexpected request {}", req.describe());
        };
        self.occurrences.push((
            event["reason"].as_str().unwrap_or_default().to_owned(),
            event["note"].as_str().unwrap_or_default().to_owned(),
        ));
        let code = if req.method == Method::POST { 201 } else { 200 };
        req.reply(code, &event);
    }

    /// One reconcile of the object as the server returns it now, serving its requests (and the
    /// running task's) until it returns. Whatever it decided, it must ask to run again just
    /// after the next tick (nothing else in these scenarios asks for sooner).
    async fn reconcile<K: Operation>(&mut self) {
        self.triggered = false;
        self.reconciles += 1;
        let at = self.now();
        let seen = self.stored.0["status"]["phase"].clone();
        let mut run = tokio::spawn(reconcile(self.stored.typed::<K>(), Arc::clone(&self.ctx)));
        let action = loop {
            let next = tokio::select! {
                done = &mut run => Err(done.unwrap().unwrap()),
                req = self.api.next(SECOND * 60) => Ok(req),
            };
            match next {
                Ok(req) => self.serve(req),
                Err(action) => break action,
            }
        };
        let next_tick = self.schedule.next_after(at).unwrap();
        assert_eq!(
            action,
            Action::requeue((next_tick - at).to_std().unwrap() + Duration::from_millis(200)),
            "reconcile {} at {at}, phase {seen}: must requeue by the next tick {next_tick}",
            self.reconciles
        );
        self.last = Some((at, action));
    }

    /// Reconciles on every watch event until the task of the run has ended and that end has
    /// been reconciled too.
    async fn settle<K: Operation>(&mut self) {
        let mut ended = false;
        loop {
            if self.triggered {
                self.reconcile::<K>().await;
                continue;
            }
            if ended {
                return;
            }
            tokio::select! {
                req = self.api.next(SECOND * 120) => self.serve(req),
                owner = self.ended.recv() => {
                    assert_eq!(owner.unwrap().name, self.stored.0["metadata"]["name"].as_str().unwrap());
                    ended = true;
                    self.triggered = true;
                }
            }
        }
    }

    /// Nothing is pending: the requeue of the last reconcile fires.
    async fn requeue_fires<K: Operation>(&mut self) {
        let (at, action) = self.last.clone().expect("a reconcile ran");
        let next_tick = self.schedule.next_after(at).unwrap();
        let wait = (next_tick - at).to_std().unwrap() + Duration::from_millis(200);
        assert_eq!(
            action,
            Action::requeue(wait),
            "a requeue by the next tick is pending"
        );
        *self.clock.lock().unwrap() = at + chrono::Duration::from_std(wait).unwrap();
        self.reconcile::<K>().await;
    }

    /// The notes of the Event occurrences with this reason.
    fn notes(&self, reason: &str) -> Vec<&str> {
        self.occurrences
            .iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, n)| n.as_str())
            .collect()
    }

    fn reasons(&self) -> Vec<&str> {
        self.occurrences.iter().map(|(r, _)| r.as_str()).collect()
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The first tick of [`EVERY_10_S`] at least 10 s from now. The scenarios' clock starts there
/// and moves faster than real time: the runs take their completion times from the real clock,
/// and a completion after a tick would (rightly) skip that tick as passed during the run.
fn first_tick_ahead() -> DateTime<Utc> {
    Schedule::parse(EVERY_10_S)
        .unwrap()
        .next_after(Utc::now() + chrono::Duration::seconds(10))
        .unwrap()
}

/// Drives `scenario` over three ticks: before each tick `prepare(i)` runs, after each run
/// `check(i, status)`. Asserts (on top of every reconcile's requeue, see
/// [`ScheduleScenario::reconcile`]) that each tick fires once and in turn, and that no tick is
/// reported missed. Returns the ticks.
async fn three_ticks<K: Operation>(
    scenario: &mut ScheduleScenario,
    first_tick: DateTime<Utc>,
    prepare: impl AsyncFn(usize),
    check: impl Fn(usize, &Value),
) -> Vec<DateTime<Utc>> {
    let ticks: Vec<_> = (0..3)
        .map(|i| first_tick + chrono::Duration::seconds(10 * i))
        .collect();
    for (i, tick) in ticks.iter().enumerate() {
        prepare(i).await;
        if i == 0 {
            scenario.reconcile::<K>().await;
        } else {
            scenario.requeue_fires::<K>().await;
        }
        assert_eq!(
            scenario.stored.0["status"]["lastScheduleTime"],
            rfc3339(*tick),
            "the run for the tick {tick} started"
        );
        scenario.settle::<K>().await;
        check(i, &scenario.stored.0["status"]);
    }
    assert_eq!(scenario.notes("Scheduled").len(), 3, "{:?}", scenario.reasons());
    assert!(
        !scenario.reasons().contains(&"MissedSchedule"),
        "{:?}",
        scenario.occurrences
    );
    for (i, tick) in ticks.iter().enumerate() {
        let tick = rfc3339(*tick);
        assert!(
            scenario.notes("Scheduled")[i].contains(&tick),
            "the Scheduled Event of run {i} names its tick {tick}: {:?}",
            scenario.notes("Scheduled")
        );
        assert!(
            scenario.notes("Started")[i].contains(&tick),
            "the Started Event of run {i} names its tick {tick}: {:?}",
            scenario.notes("Started")
        );
    }
    ticks
}

/// Issue 15 items 1 and 7: a KafkaBackup on `*/10 * * * * *` against the real broker runs at
/// each of three ticks (5 new records each time), and each run's Completed Event names its tick
/// and its own result.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_backup_runs_at_every_tick() {
    let Some(bootstrap) = broker() else { return };
    let topic = unique("kb-sched");
    create_topic(&bootstrap, &topic, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, meta) = metadata("kafkabackups", "every-ten");
    let first_tick = first_tick_ahead();
    let mut scenario = ScheduleScenario::new(
        dir.path(),
        "kafkabackups",
        json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup", "metadata": meta,
            "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [topic],
                "storage": {"type": "PVC", "pvc": {"claimName": "backups"}},
                "schedule": EVERY_10_S, "stopAtCurrentOffsets": true},
        }),
        first_tick,
    );
    let produced = |_: usize| async { produce(&bootstrap, &topic, 5).await };
    let ticks = three_ticks::<KafkaBackup>(&mut scenario, first_tick, produced, |i, status| {
        assert_eq!(status["phase"], "Completed", "run {i}: {status}");
        assert_eq!(
            status["lastRun"]["records"], 5,
            "run {i} stored the new records: {status}"
        );
    })
    .await;
    let completed = scenario.notes("Completed");
    assert_eq!(completed.len(), 3, "{:?}", scenario.occurrences);
    for (note, tick) in completed.iter().zip(&ticks) {
        assert!(note.contains(&rfc3339(*tick)), "{note}");
        assert!(note.contains("5 records"), "{note}");
    }
}

/// Issue 15 items 1 and 7: a KafkaBackupValidation on `*/10 * * * * *` (its backup set does not
/// exist, so each run fails its checks) runs at each of three ticks, and each run's final Event
/// names its tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_validation_runs_at_every_tick() {
    let dir = tempfile::tempdir().unwrap();
    let (_, meta) = metadata("kafkabackupvalidations", "every-ten");
    let first_tick = first_tick_ahead();
    let mut scenario = ScheduleScenario::new(
        dir.path(),
        "kafkabackupvalidations",
        json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackupValidation", "metadata": meta,
            "spec": {"backupRef": {"backupId": "orders", "storage": {"type": "PVC", "pvc": {"claimName": "b"}}},
                "schedule": EVERY_10_S},
        }),
        first_tick,
    );
    let ticks = three_ticks::<KafkaBackupValidation>(
        &mut scenario,
        first_tick,
        async |_| {},
        |i, status| {
            assert!(
                matches!(status["phase"].as_str(), Some("Failed" | "Completed")),
                "run {i}: {status}"
            );
            assert!(status["completionTime"].is_string(), "run {i}: {status}");
        },
    )
    .await;
    let finals: Vec<&str> = scenario
        .occurrences
        .iter()
        .filter(|(r, _)| r == "OperationFailed" || r == "Completed")
        .map(|(_, n)| n.as_str())
        .collect();
    assert_eq!(finals.len(), 3, "{:?}", scenario.occurrences);
    for (note, tick) in finals.iter().zip(&ticks) {
        assert!(note.contains(&rfc3339(*tick)), "{note}");
    }
}

/// A Secret the spec names but the namespace lacks: the operation does not start, phase stays
/// Pending, Ready=False reason SecretMissing naming the field, Secret and key, and a Warning Event.
#[tokio::test]
async fn a_missing_secret_blocks_with_a_condition_and_an_event() {
    let (client, mut api) = mock_client();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(client, dir.path(), SECOND * 5);
    let (path, meta) = metadata("kafkaoffsetresets", "needs-sasl");
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset", "metadata": meta,
        "spec": {"kafkaCluster": {"bootstrapServers": ["kafka:9092"], "securityProtocol": "SASL_PLAINTEXT",
                "saslSecret": {"name": "kafka-user", "mechanism": "SCRAM-SHA-512"}},
            "consumerGroups": ["g"], "strategy": "Latest"},
        "status": {"phase": "Pending", "observedGeneration": 1},
    }));
    stored.0["metadata"]["finalizers"] = json!([FINALIZER]);
    let run = tokio::spawn(reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx)));
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/kafka-user"),
        SECOND * 5,
    )
    .await
    .reply_status(404, "NotFound");
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await);
    assert_eq!(status["phase"], "Pending");
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "SecretMissing");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("spec.kafkaCluster.saslSecret: Secret kafka-user not found in namespace team-a"),
        "{message}"
    );
    let event = api.expect_event(SECOND * 5).await;
    assert_eq!(event["reason"], "SecretMissing");
    assert_eq!(run.await.unwrap().unwrap(), Action::requeue(SECOND * 30));
    assert!(
        ctx.supervisor
            .task(stored.0["metadata"]["uid"].as_str().unwrap())
            .is_none()
    );

    // The Secret exists now but lacks the password key.
    let run = tokio::spawn(reconcile(stored.typed::<KafkaOffsetReset>(), Arc::clone(&ctx)));
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/kafka-user"),
        SECOND * 5,
    )
    .await
    .reply(
        200,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-user", "namespace": NS},
                "data": {"username": "dXNlcg=="}}),
    );
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await);
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("Secret kafka-user in namespace team-a has no key password")
    );
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "SecretMissing");
    run.await.unwrap().unwrap();
}

/// One object that does not deserialize is reported (Failed, InvalidSpec, an Event) once per
/// version, and the reconciler keeps going.
#[tokio::test]
async fn a_malformed_object_is_reported_not_fatal() {
    let (client, mut api) = mock_client();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(client, dir.path(), SECOND * 5);
    let (path, meta) = metadata("kafkaoffsetresets", "broken");
    let mut stored = Stored(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset", "metadata": meta,
        "spec": {"kafkaCluster": "not an object", "consumerGroups": ["g"], "strategy": "Latest"},
    }));
    let guard: Arc<DeserializeGuard<KafkaOffsetReset>> =
        Arc::new(serde_json::from_value(stored.0.clone()).unwrap());
    assert!(guard.0.is_err());
    let run = tokio::spawn(reconcile(Arc::clone(&guard), Arc::clone(&ctx)));
    let status = stored.merge_status(api.expect("PATCH", &format!("{path}/status"), SECOND * 5).await);
    assert_eq!(status["phase"], "Failed");
    assert_eq!(condition(&status, "Ready")["reason"], "InvalidSpec");
    assert_eq!(api.expect_event(SECOND * 5).await["reason"], "InvalidSpec");
    run.await.unwrap().unwrap();
    // Our own status write comes back through the watch: not reported again.
    let again: Arc<DeserializeGuard<KafkaOffsetReset>> =
        Arc::new(serde_json::from_value(stored.0.clone()).unwrap());
    reconcile(again, Arc::clone(&ctx)).await.unwrap();
    api.none_within(Duration::from_millis(300)).await;
}

fn lease(holder: &str, renewed: &str, rv: &str) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kbo", "namespace": NS, "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed,
            "acquireTime": renewed, "leaseTransitions": 2}})
}

/// Leader election: a held, unexpired Lease is left alone; an expired one is taken over with
/// the resourceVersion read as precondition (a 409 means another replica won); a missing one is
/// created (a 409 there too means someone else was faster).
#[tokio::test]
async fn leader_election_respects_held_leases_and_takes_over_expired_ones() {
    let (client, mut api) = mock_client();
    let elector = LeaderElector::new(client, NS, "kbo", "replica-a", Duration::from_secs(15));
    let lease_path = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/kbo");
    let fresh = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let old =
        (Utc::now() - chrono::Duration::seconds(60)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);

    // Held by b, renewed just now: no write.
    let attempt = tokio::spawn(async move {
        let r = elector.try_acquire_or_renew().await.unwrap();
        (elector, r)
    });
    api.expect("GET", &lease_path, SECOND * 5)
        .await
        .reply(200, &lease("replica-b", &fresh, "7"));
    let (elector, held) = attempt.await.unwrap();
    assert!(!held);
    api.none_within(Duration::from_millis(200)).await;

    // Expired: taken over with resourceVersion 7 -- but another replica was faster (409).
    let attempt = tokio::spawn(async move {
        let r = elector.try_acquire_or_renew().await.unwrap();
        (elector, r)
    });
    api.expect("GET", &lease_path, SECOND * 5)
        .await
        .reply(200, &lease("replica-b", &old, "7"));
    let req = api.expect("PUT", &lease_path, SECOND * 5).await;
    assert_eq!(req.body["metadata"]["resourceVersion"], "7");
    assert_eq!(req.body["spec"]["holderIdentity"], "replica-a");
    req.reply_status(409, "Conflict");
    let (elector, won) = attempt.await.unwrap();
    assert!(!won);

    // Expired again: taken over.
    let attempt = tokio::spawn(async move {
        let r = elector.try_acquire_or_renew().await.unwrap();
        (elector, r)
    });
    api.expect("GET", &lease_path, SECOND * 5)
        .await
        .reply(200, &lease("replica-c", &old, "9"));
    let req = api.expect("PUT", &lease_path, SECOND * 5).await;
    assert_eq!(req.body["metadata"]["resourceVersion"], "9");
    assert_eq!(req.body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(req.body["spec"]["leaseTransitions"], 3);
    let body = req.body.clone();
    req.reply(200, &body);
    let (elector, won) = attempt.await.unwrap();
    assert!(won);

    // Missing: created; a concurrent creation wins with 409.
    let attempt = tokio::spawn(async move { elector.try_acquire_or_renew().await.unwrap() });
    api.expect("GET", &lease_path, SECOND * 5)
        .await
        .reply_status(404, "NotFound");
    let req = api
        .expect(
            "POST",
            &format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"),
            SECOND * 5,
        )
        .await;
    assert_eq!(req.body["spec"]["holderIdentity"], "replica-a");
    req.reply_status(409, "AlreadyExists");
    assert!(!attempt.await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// Against a real cluster (ignored; README.md, "In a cluster").

/// The broker of the `e2e_*` tests, reachable from this process.
fn e2e_broker() -> String {
    support::cluster::required(
        "KBO_TEST_KAFKA_BOOTSTRAP",
        "the host:port of a Kafka broker this process reaches",
    )
}

/// The namespace the `e2e_*` tests with an in-process reconciler create their resources in.
fn e2e_namespace() -> String {
    std::env::var("KBO_E2E_NAMESPACE").unwrap_or_else(|_| "default".into())
}

/// The reconciler of `namespace`, in this process (no leader election) against the cluster of
/// `client`, PVC storage below `pvc_root`; cancel the token and await the handle to stop it.
fn e2e_reconciler(
    client: Client,
    namespace: &str,
    pvc_root: &std::path::Path,
) -> (tokio_util::sync::CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = Config {
        namespaces: vec![namespace.to_owned()],
        progress_interval: SECOND * 2,
        storage: StorageEnv {
            pvc_root: pvc_root.to_owned(),
            config_maps: Default::default(),
        },
        ..Config::default()
    };
    let ctx = Ctx::new(
        client,
        config,
        Arc::new(Metrics::new()),
        Hooks {
            catalog: None,
            snapshot_lookup: None,
        },
    );
    let reconciler = tokio::spawn(kafka_backup_operator::reconciler::controller::run_with(
        ctx,
        shutdown.clone(),
        shutdown.clone(),
    ));
    (shutdown, reconciler)
}

/// Deletes `name` and waits until its finalizer is removed and it is gone.
async fn e2e_delete<K>(api: &kube::Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.delete(name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    for _ in 0..60 {
        if api.get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{name} was not deleted within 30 s: is its finalizer removed?");
}

/// End to end against a real cluster: the reconciler runs in this test process (no election)
/// against the cluster of `KUBECONFIG`, and a KafkaOffsetReset created in namespace
/// `$KBO_E2E_NAMESPACE` (default `default`) goes Pending -> Running -> Completed against the
/// broker at `$KBO_TEST_KAFKA_BOOTSTRAP` (reachable from this process); deleting it removes the
/// finalizer.
///
/// Needs the CRDs (`kubectl apply -f crds/`) and no other reconciler for that namespace; the
/// webhooks need not be installed.
///
/// ```text
/// source /tmp/kbo/env.sh   # or export KBO_TEST_KAFKA_BOOTSTRAP=host:port
/// KUBECONFIG=~/.kube/config cargo test --test reconciler -- --ignored e2e
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a cluster: KUBECONFIG, the CRDs (kubectl apply -f crds/), KBO_TEST_KAFKA_BOOTSTRAP; see README.md, In a cluster"]
async fn e2e_offset_reset_in_a_cluster() {
    use kube::api::{Api, PostParams};
    let client = support::cluster::client().await;
    let bootstrap = e2e_broker();
    let namespace = e2e_namespace();
    let topic = unique("e2e-topic");
    let group = unique("e2e-group");
    topic_with_records(&bootstrap, &topic, 5).await;
    commit(&bootstrap, &group, &topic, 5);
    let dir = tempfile::tempdir().unwrap();
    let (shutdown, reconciler) = e2e_reconciler(client.clone(), &namespace, dir.path());

    let api: Api<KafkaOffsetReset> = Api::namespaced(client, &namespace);
    let name = unique("e2e");
    let reset: KafkaOffsetReset = serde_json::from_value(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset",
        "metadata": {"name": name},
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group],
            "strategy": "Earliest", "topics": [{"name": topic}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &reset).await.unwrap();
    let mut phases = Vec::new();
    for _ in 0..120 {
        let current = api.get(&name).await.unwrap();
        let phase = current
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"));
        if let Some(p) = phase
            && phases.last() != Some(&p)
        {
            phases.push(p);
        }
        if phases.last().map(String::as_str) == Some("Completed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(phases.last().map(String::as_str), Some("Completed"), "{phases:?}");
    assert_eq!(committed(&bootstrap, &group, &topic), Some(0));
    e2e_delete(&api, &name).await;
    shutdown.cancel();
    reconciler.await.unwrap();
}

/// End to end against a real cluster (issue 15 item 1): a KafkaBackup on `*/10 * * * * *`
/// created in `$KBO_E2E_NAMESPACE`, reconciled by this process (PVC storage in a temporary
/// directory), runs at two consecutive ticks, each to Completed, with no MissedSchedule Event, and
/// each run's Scheduled Event names its own tick. Same needs as [`e2e_offset_reset_in_a_cluster`].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a cluster: KUBECONFIG, the CRDs (kubectl apply -f crds/), KBO_TEST_KAFKA_BOOTSTRAP; see README.md, In a cluster"]
async fn e2e_scheduled_backup_runs_at_consecutive_ticks() {
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Api, ListParams, PostParams};
    let client = support::cluster::client().await;
    let bootstrap = e2e_broker();
    let namespace = e2e_namespace();
    let topic = unique("e2e-sched");
    topic_with_records(&bootstrap, &topic, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let (shutdown, reconciler) = e2e_reconciler(client.clone(), &namespace, dir.path());

    let api: Api<KafkaBackup> = Api::namespaced(client.clone(), &namespace);
    let name = unique("e2e-sched");
    let backup: KafkaBackup = serde_json::from_value(json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
        "metadata": {"name": name},
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [topic],
            "storage": {"type": "PVC", "pvc": {"claimName": "backups"}},
            "schedule": EVERY_10_S, "stopAtCurrentOffsets": true},
    }))
    .unwrap();
    let uid = api
        .create(&PostParams::default(), &backup)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    // The ticks fired, and the status once the second one's run has completed.
    let mut fired: Vec<DateTime<Utc>> = Vec::new();
    let deadline = tokio::time::Instant::now() + SECOND * 90;
    let status = loop {
        let status = serde_json::to_value(api.get(&name).await.unwrap().status).unwrap();
        let last = status["lastScheduleTime"].as_str().map(|t| t.parse().unwrap());
        if let Some(tick) = last
            && fired.last() != Some(&tick)
        {
            fired.push(tick);
        }
        let completed_after = |tick: DateTime<Utc>| {
            status["lastRun"]["completionTime"]
                .as_str()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                .is_some_and(|done| done >= tick)
        };
        if fired.len() >= 2 && status["phase"] == "Completed" && completed_after(fired[1]) {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "two ticks did not run in 90 s; fired {fired:?}, status {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        fired[1] - fired[0],
        chrono::Duration::seconds(10),
        "consecutive ticks ran: {fired:?}"
    );
    assert_eq!(status["lastRun"]["outcome"], "Succeeded", "{status}");

    let events: Api<Event> = Api::namespaced(client, &namespace);
    let ours: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == Some(uid.as_str()))
        .collect();
    let reasons: Vec<_> = ours.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(!reasons.iter().any(|r| r == "MissedSchedule"), "{reasons:?}");
    for tick in &fired[..2] {
        let tick = rfc3339(*tick);
        assert!(
            ours.iter().any(|e| e.reason.as_deref() == Some("Scheduled")
                && e.note.as_deref().is_some_and(|n| n.contains(&tick))),
            "a Scheduled Event names the tick {tick}: {ours:?}"
        );
    }
    e2e_delete(&api, &name).await;
    shutdown.cancel();
    reconciler.await.unwrap();
}
