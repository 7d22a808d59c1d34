//! ConfigMap storage (offset snapshots kept in the resource's namespace) against an in-memory
//! stand-in for the Kubernetes ConfigMap API: GET, POST, PUT with resourceVersion preconditions
//! and DELETE, answering with the status codes the API server uses. No cluster runs here; the
//! stand-in keeps what the code relies on: 404 for a missing object, 409 for a create that finds
//! one or a write with a stale resourceVersion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use kafka_backup_operator::storage::{
    Location, StorageError,
    configmap::{ConfigMapLocation, ConfigMapStore, KubeTarget},
};
use serde_json::{Value, json};

/// ConfigMaps by name, and how many writes were refused with a conflict.
#[derive(Default)]
struct FakeApi {
    objects: HashMap<String, Value>,
    version: u64,
    conflicts: usize,
    /// Make the next PUT conflict once, as if another writer came first.
    interfere: bool,
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason}),
    )
}

fn handle(api: &mut FakeApi, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let prefix = "/api/v1/namespaces/team-a/configmaps";
    let name = path
        .strip_prefix(prefix)
        .map(|rest| rest.trim_start_matches('/').to_owned());
    let Some(name) = name else {
        return status(404, "NotFound");
    };
    match method {
        "GET" => match api.objects.get(&name) {
            Some(cm) => (200, cm.clone()),
            None => status(404, "NotFound"),
        },
        "POST" => {
            let mut cm = body.unwrap();
            let name = cm["metadata"]["name"].as_str().unwrap().to_owned();
            if api.objects.contains_key(&name) {
                api.conflicts += 1;
                return status(409, "AlreadyExists");
            }
            api.version += 1;
            cm["metadata"]["resourceVersion"] = json!(api.version.to_string());
            cm["metadata"]["creationTimestamp"] = json!("2026-11-21T10:00:00Z");
            api.objects.insert(name, cm.clone());
            (201, cm)
        }
        "PUT" => {
            let mut cm = body.unwrap();
            let Some(current) = api.objects.get(&name) else {
                return status(404, "NotFound");
            };
            if api.interfere || cm["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                api.interfere = false;
                api.conflicts += 1;
                // Another writer: bump the stored version so the retry must re-read.
                api.version += 1;
                let bumped = json!(api.version.to_string());
                api.objects.get_mut(&name).unwrap()["metadata"]["resourceVersion"] = bumped;
                return status(409, "Conflict");
            }
            api.version += 1;
            cm["metadata"]["resourceVersion"] = json!(api.version.to_string());
            api.objects.insert(name, cm.clone());
            (200, cm)
        }
        "DELETE" => match api.objects.remove(&name) {
            Some(cm) => (200, cm),
            None => status(404, "NotFound"),
        },
        _ => status(405, "MethodNotAllowed"),
    }
}

fn client(api: Arc<Mutex<FakeApi>>) -> kube::Client {
    let service = tower::service_fn(move |request: axum::http::Request<kube::client::Body>| {
        let api = api.clone();
        async move {
            let method = request.method().as_str().to_owned();
            let path = request.uri().path().to_owned();
            let bytes = request.into_body().collect().await.unwrap().to_bytes();
            let body = (!bytes.is_empty()).then(|| serde_json::from_slice::<Value>(&bytes).unwrap());
            let (code, answer) = handle(&mut api.lock().unwrap(), &method, &path, body);
            let response = axum::http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    kube::Client::new(service, "team-a")
}

fn location(api: &Arc<Mutex<FakeApi>>) -> Location {
    let target = KubeTarget {
        client: client(api.clone()),
        namespace: "team-a".into(),
    };
    Location::ConfigMap(ConfigMapLocation::new("offset-snapshots", &ConfigMapStore::Kube(target)).unwrap())
}

#[tokio::test]
async fn snapshots_are_keys_created_once_and_never_overwritten() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let store = location(&api);
    assert_eq!(
        store.uri("offset-snapshots/s1.json"),
        "configmap://offset-snapshots/s1.json"
    );
    store
        .put_new("offset-snapshots/s1.json", Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap();
    store
        .put_new("offset-snapshots/s2.json", Bytes::from_static(b"{\"b\":2}"))
        .await
        .unwrap();
    let again = store
        .put_new("offset-snapshots/s1.json", Bytes::from_static(b"{}"))
        .await;
    assert!(
        matches!(again, Err(StorageError::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(
        store.get("offset-snapshots/s1.json").await.unwrap().unwrap(),
        "{\"a\":1}"
    );
    let keys: Vec<String> = store
        .list("offset-snapshots")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["s1.json", "s2.json"]);
    {
        let api = api.lock().unwrap();
        let cm = &api.objects["offset-snapshots"];
        assert_eq!(
            cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "kafka-backup-operator"
        );
    }
    assert!(store.delete("offset-snapshots/s1.json").await.unwrap());
    assert!(!store.delete("offset-snapshots/s1.json").await.unwrap());
    assert!(store.delete("offset-snapshots/s2.json").await.unwrap());
    assert!(
        api.lock().unwrap().objects.is_empty(),
        "the ConfigMap goes with its last key"
    );
}

#[tokio::test]
async fn a_concurrent_writer_is_not_lost() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let store = location(&api);
    store.put_new("s1.json", Bytes::from_static(b"{}")).await.unwrap();
    api.lock().unwrap().interfere = true;
    store.put_new("s2.json", Bytes::from_static(b"{}")).await.unwrap();
    let api = api.lock().unwrap();
    assert_eq!(api.conflicts, 1);
    let data = api.objects["offset-snapshots"]["data"].as_object().unwrap();
    assert!(data.contains_key("s1.json") && data.contains_key("s2.json"));
}

#[tokio::test]
async fn a_snapshot_larger_than_a_configmap_holds_is_refused_naming_the_limit() {
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let store = location(&api);
    let big = Bytes::from(vec![b'x'; 1_100_000]);
    let error = store.put_new("big.json", big).await.unwrap_err().to_string();
    assert!(error.contains("at most 1 MiB (1048576 bytes)"), "{error}");
    assert!(error.contains("object storage"), "{error}");
    assert!(api.lock().unwrap().objects.is_empty(), "nothing half-written");
}

#[test]
fn without_kubernetes_configmap_storage_is_refused_clearly() {
    let error = ConfigMapLocation::new("snaps", &ConfigMapStore::None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("needs the Kubernetes API"), "{error}");
    assert!(error.contains("use S3, Azure, GCS or PVC"), "{error}");
}

/// The prior art's offset snapshot in its ConfigMap form (its `snapshot.json` as the key
/// `<id>.json`, as `kubectl create configmap --from-file` stores it) is found by id, read in the
/// operator's form and listed by the catalog's source.
#[tokio::test]
async fn a_prior_art_snapshot_in_a_configmap_is_read() {
    use kafka_backup_operator::{
        apiserver::sources::{SnapshotStore, StorageSource},
        storage::snapshot::read_snapshot,
    };
    let id = "snap-1796651891106-8e61874d";
    let doc = std::fs::read(format!(
        "{}/tests/fixtures/prior-art/storage/offset-snapshots/{id}/snapshot.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let api = Arc::new(Mutex::new(FakeApi::default()));
    let store = location(&api);
    store
        .put_new(&format!("offset-snapshots/{id}.json"), Bytes::from(doc))
        .await
        .unwrap();
    let stored = read_snapshot(&store, id).await.unwrap().unwrap();
    assert!(stored.prior_art);
    assert_eq!(stored.uri, format!("configmap://offset-snapshots/{id}.json"));
    let orders = &stored.snapshot.groups["billing"].topics["orders"];
    assert_eq!(
        orders.iter().map(|(p, o)| (*p, o.offset)).collect::<Vec<_>>(),
        [(0, 200), (1, 350), (2, 518)]
    );
    let source = StorageSource::new(store);
    let listed: Vec<String> = source
        .list_snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(listed, [id]);
    assert!(source.read_snapshot(id).await.unwrap().unwrap().prior_art);
}
