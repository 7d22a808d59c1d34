//! Admission and conversion reviews as kube-apiserver sends them, and the HTTPS router to send them
//! to in-process (`tower::ServiceExt::oneshot`, no network).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use axum::{
    Router,
    body::Body,
    http::{Request, header},
};
use base64::Engine;
use http_body_util::BodyExt;
use kafka_backup_operator::{
    metrics::Metrics,
    server::{AppState, https_router},
};
use serde_json::{Value, json};
use tower::ServiceExt;

/// `tests/fixtures`.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// The HTTPS router of `serve`, with fresh metrics (returned too).
pub fn router() -> (Router, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (https_router(AppState::new(Arc::clone(&metrics))), metrics)
}

/// An HTTP answer read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (fails the test if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `method path` with `body` through `router`.
pub async fn call(router: &Router, method: &str, path: &str, body: impl Into<Body>) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// POSTs `review` (JSON) to `path` and returns the answer, which must be a review (HTTP 200).
pub async fn post_review(router: &Router, path: &str, review: &Value) -> Value {
    let answer = call(router, "POST", path, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(
        answer.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    answer.json()
}

/// The plural resource name of one of our kinds.
pub fn plural(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

/// The admission operation of a review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// An AdmissionReview v1 for `object` (or `old` alone, for DELETE) with every field kube-apiserver
/// sets, as `kubectl apply` by `kubernetes-admin` would cause it.
pub fn admission_review(
    uid: &str,
    operation: Operation,
    object: Option<&Value>,
    old: Option<&Value>,
    dry_run: bool,
) -> Value {
    let subject = object.or(old).expect("an object or an old object");
    let api_version = subject["apiVersion"].as_str().unwrap_or("kafka.oso.sh/v1alpha1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = subject["kind"].as_str().unwrap_or_default();
    let namespace = subject
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = subject
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": plural(kind)});
    let (operation, options) = match operation {
        Operation::Create => (
            "CREATE",
            json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply", "fieldValidation": "Strict"}),
        ),
        Operation::Update => (
            "UPDATE",
            json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-edit", "fieldValidation": "Strict"}),
        ),
        Operation::Delete => (
            "DELETE",
            json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"}),
        ),
    };
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {
                "username": "kubernetes-admin",
                "groups": ["kubeadm:cluster-admins", "system:authenticated"]
            },
            "object": object.cloned().unwrap_or(Value::Null),
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": dry_run,
            "options": options
        }
    })
}

/// A ConversionReview v1 of `objects` to `desired_api_version`, as kube-apiserver sends it.
pub fn conversion_review(uid: &str, desired_api_version: &str, objects: &[Value]) -> Value {
    json!({
        "kind": "ConversionReview",
        "apiVersion": "apiextensions.k8s.io/v1",
        "request": {"uid": uid, "desiredAPIVersion": desired_api_version, "objects": objects}
    })
}

/// `object` with the metadata kube-apiserver has filled in by the time admission sees a CREATE in
/// `namespace`.
pub fn as_created(object: &Value, namespace: &str) -> Value {
    let mut object = object.clone();
    let metadata = object
        .as_object_mut()
        .unwrap()
        .entry("metadata")
        .or_insert_with(|| json!({}));
    let metadata = metadata.as_object_mut().unwrap();
    metadata.entry("namespace").or_insert_with(|| json!(namespace));
    metadata
        .entry("uid")
        .or_insert_with(|| json!("6f1d1b8e-3f4a-4c51-9a55-2f0d1f6c0a10"));
    metadata.entry("generation").or_insert_with(|| json!(1));
    metadata
        .entry("creationTimestamp")
        .or_insert_with(|| json!("2026-01-15T09:30:00Z"));
    object
}

/// The response of an answered AdmissionReview, checked for the shape kube-apiserver requires.
pub fn admission_response<'a>(review: &'a Value, uid: &str) -> &'a Value {
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    let response = &review["response"];
    assert_eq!(response["uid"], uid, "{review}");
    assert!(response["allowed"].is_boolean(), "{review}");
    response
}

/// The JSON patch of an admission response (decoded from base64), if it has one.
pub fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let encoded = response.get("patch")?.as_str().expect("patch is base64");
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// `object` with the patch of `response` applied.
pub fn patched(object: &Value, response: &Value) -> Value {
    let mut object = object.clone();
    if let Some(patch) = patch_of(response) {
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

/// The warnings of an admission response.
pub fn warnings(response: &Value) -> Vec<String> {
    response
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// The message of a denial.
pub fn message(response: &Value) -> &str {
    response
        .pointer("/status/message")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether every field of `part` is in `whole` with the same value (`whole` may have more, also
/// in the elements of lists; a null in `part` is an absent field): what the mutating webhook may
/// do to an object.
pub fn contains(whole: &Value, part: &Value) -> bool {
    match (whole, part) {
        (Value::Object(whole), Value::Object(part)) => part
            .iter()
            .all(|(k, v)| v.is_null() || whole.get(k).is_some_and(|w| contains(w, v))),
        (Value::Array(whole), Value::Array(part)) => {
            whole.len() == part.len() && whole.iter().zip(part).all(|(w, p)| contains(w, p))
        }
        _ => whole == part,
    }
}

/// A YAML manifest with its leading `# key: value` comment lines.
pub struct Manifest {
    pub path: PathBuf,
    pub comments: Vec<(String, String)>,
    pub object: Value,
}

impl Manifest {
    /// Reads `path`.
    pub fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let comments = text
            .lines()
            .map_while(|line| line.strip_prefix('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let object =
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
        Self {
            path: path.to_owned(),
            comments,
            object,
        }
    }

    /// The values of the leading comments `# key: value`.
    pub fn comment(&self, key: &str) -> Vec<&str> {
        self.comments
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The path relative to `tests/fixtures`.
    pub fn name(&self) -> String {
        self.path
            .strip_prefix(FIXTURES)
            .unwrap_or(&self.path)
            .display()
            .to_string()
    }
}

/// Every `*.yaml` under `dir` (recursively), sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Whether expected files are to be (re)written rather than compared: `KBO_BLESS=1`.
pub fn blessing() -> bool {
    std::env::var("KBO_BLESS").as_deref() == Ok("1")
}

/// Compares `actual` with the JSON file `path` exactly; with `KBO_BLESS=1`, writes it instead.
/// Returns a description of the difference, if any.
pub fn check_expected(path: &Path, actual: &Value) -> Option<String> {
    let pretty = format!("{}\n", serde_json::to_string_pretty(actual).unwrap());
    if blessing() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, pretty).unwrap();
        return None;
    }
    let Ok(expected) = std::fs::read_to_string(path) else {
        return Some(format!(
            "{} is missing (run with KBO_BLESS=1 to write it); actual:\n{pretty}",
            path.display()
        ));
    };
    let expected: Value =
        serde_json::from_str(&expected).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (&expected != actual).then(|| {
        format!(
            "{} differs (run with KBO_BLESS=1 to accept the new answer)\n--- expected\n{}\n+++ actual\n{pretty}",
            path.display(),
            serde_json::to_string_pretty(&expected).unwrap()
        )
    })
}
