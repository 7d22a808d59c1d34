//! Who may approve a plan: the validating webhook asks the API server (a mock here, answering the
//! SubjectAccessReview) whether the user of an UPDATE that adds or changes
//! `kafka.oso.sh/approve` may `update` `kafkaoffsetresets/approve`, and refuses the update when
//! not, naming the user and the permission.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use http::{Request, Response};
use kafka_backup_operator::{
    metrics::Metrics,
    server::{AppState, https_router},
    webhook::approvers::Approvers,
};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use support::review::{Operation, admission_review, call};
use tower_test::mock;

fn reset(annotations: Value) -> Value {
    json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset",
        "metadata": {"name": "rewind", "namespace": "team-a", "uid": "u-1", "generation": 1,
            "resourceVersion": "7", "annotations": annotations},
        "spec": {"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "consumerGroups": ["g"],
            "strategy": "Earliest", "approval": "Manual", "snapshot": {"enabled": true},
            "parallelism": 10, "dryRun": false, "continueOnError": false},
    })
}

/// An UPDATE by `bob` from `old` to `new`.
fn update(old: &Value, new: &Value) -> Vec<u8> {
    let mut review = admission_review("r-1", Operation::Update, Some(new), Some(old), false);
    review["request"]["userInfo"] =
        json!({"username": "bob", "groups": ["release-team", "system:authenticated"]});
    serde_json::to_vec(&review).unwrap()
}

/// The router with an API client whose server answers each SubjectAccessReview with `allowed`;
/// the reviews it received.
fn router_answering(allowed: bool) -> (axum::Router, Arc<std::sync::Mutex<Vec<Value>>>) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(request.method(), "POST");
            assert_eq!(
                request.uri().path(),
                "/apis/authorization.k8s.io/v1/subjectaccessreviews"
            );
            let body: Value =
                serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
            record.lock().unwrap().push(body.clone());
            let mut answer = body;
            answer["status"] = if allowed {
                json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding approvers"})
            } else {
                json!({"allowed": false, "reason": "no RBAC policy matched"})
            };
            let response = Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    let mut state = AppState::new(Arc::new(Metrics::new()));
    state.approvers = Approvers::new(Client::new(service, "default"));
    (https_router(state), seen)
}

fn response(answer: &support::review::Answer) -> Value {
    assert_eq!(answer.status, 200);
    answer.json()["response"].clone()
}

#[tokio::test]
async fn an_approval_from_a_user_without_the_approve_permission_is_refused() {
    let (router, seen) = router_answering(false);
    let body = update(
        &reset(json!({})),
        &reset(json!({"kafka.oso.sh/approve": "abc123"})),
    );
    let r = response(&call(&router, "POST", "/validate", body).await);
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 403);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("user bob may not approve KafkaOffsetReset team-a/rewind")
            && message.contains("update kafkaoffsetresets/approve (apiGroup kafka.oso.sh)")
            && message.contains("no RBAC policy matched"),
        "{message}"
    );
    let reviews = seen.lock().unwrap();
    assert_eq!(reviews.len(), 1);
    let spec = &reviews[0]["spec"];
    assert_eq!(spec["user"], "bob");
    assert_eq!(spec["groups"], json!(["release-team", "system:authenticated"]));
    assert_eq!(
        spec["resourceAttributes"],
        json!({"group": "kafka.oso.sh", "resource": "kafkaoffsetresets", "subresource": "approve",
            "verb": "update", "namespace": "team-a", "name": "rewind"})
    );
}

#[tokio::test]
async fn a_reset_created_already_approved_needs_the_approve_permission_too() {
    let (router, seen) = router_answering(false);
    let object = reset(json!({"kafka.oso.sh/approve": "abc123"}));
    let mut review = admission_review("r-2", Operation::Create, Some(&object), None, false);
    review["request"]["userInfo"] = json!({"username": "bob"});
    let r = response(&call(&router, "POST", "/validate", serde_json::to_vec(&review).unwrap()).await);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("user bob may not approve")
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_approval_from_a_user_with_the_approve_permission_is_admitted() {
    let (router, seen) = router_answering(true);
    let body = update(
        &reset(json!({"kafka.oso.sh/approve": "old"})),
        &reset(json!({"kafka.oso.sh/approve": "abc123"})),
    );
    let r = response(&call(&router, "POST", "/validate", body).await);
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn updates_that_approve_nothing_ask_nothing() {
    let (router, seen) = router_answering(false);
    let approved = reset(json!({"kafka.oso.sh/approve": "abc123"}));
    let mut relabelled = approved.clone();
    relabelled["metadata"]["labels"] = json!({"team": "a"});
    for (old, new) in [(&approved, &relabelled), (&approved, &reset(json!({})))] {
        let r = response(&call(&router, "POST", "/validate", update(old, new)).await);
        assert_eq!(r["allowed"], true, "{r}");
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_an_api_client_approvals_are_refused() {
    let router = https_router(AppState::new(Arc::new(Metrics::new())));
    let body = update(
        &reset(json!({})),
        &reset(json!({"kafka.oso.sh/approve": "abc123"})),
    );
    let r = response(&call(&router, "POST", "/validate", body).await);
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot ask the Kubernetes API who may"),
        "{message}"
    );
}
