//! The webhooks end to end: the real `serve` binary on free loopback ports with a development
//! certificate, reviews sent over real HTTPS on one keep-alive HTTP/1.1 connection (and one over
//! HTTP/2, which kube-apiserver negotiates by ALPN), the answers read as kube-apiserver reads them,
//! and the webhook metrics on the admin server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use support::{
    https::{Server, cert_args, client_config, connect, http1_client, loopback_pki, tls_post, write_pair},
    review::{Operation, admission_response, admission_review, as_created, message, patched, warnings},
};
use tokio_rustls::rustls;

fn backup(name: &str, spec: Value) -> Value {
    as_created(
        &json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaBackup",
                "metadata": {"name": name, "namespace": "kafka-backup"}, "spec": spec}),
        "kafka-backup",
    )
}

#[tokio::test]
async fn webhooks_answer_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let pki = loopback_pki();
    write_pair(dir.path(), &pki);
    let server = Server::start(dir.path(), &cert_args(dir.path())).await;
    let mut stream = connect(server.https, http1_client(&[&pki.ca_cert_pem]), "localhost").await;

    // A deny: continuous and stopAtCurrentOffsets together, with the field named.
    let refused = backup(
        "both-modes",
        json!({"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "topics": ["orders"],
               "storage": {"storageType": "s3", "s3": {"bucket": "b"}},
               "continuous": true, "stopAtCurrentOffsets": true}),
    );
    let review = admission_review("e2e-deny", Operation::Create, Some(&refused), None, false);
    let answer = tls_post(&mut stream, "/validate", &serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    let response = admission_response(&body, "e2e-deny");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(response["status"]["reason"], "Invalid");
    assert!(message(response).contains("spec.continuous"), "{body}");
    assert_eq!(response["status"]["details"]["kind"], "KafkaBackup");
    assert_eq!(response["status"]["details"]["name"], "both-modes");

    // A mutation: the 5-field cron is kept as written and explained, the absent defaults come
    // with a patch.
    let hourly = backup(
        "hourly",
        json!({"schedule": "0 * * * *", "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
               "topics": ["orders", "payments"], "storage": {"storageType": "s3", "s3": {"bucket": "b"}}}),
    );
    let review = admission_review("e2e-mutate", Operation::Create, Some(&hourly), None, false);
    let answer = tls_post(&mut stream, "/mutate", &serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    let response = admission_response(&body, "e2e-mutate");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let mutated = patched(&hourly, response);
    assert_eq!(mutated["spec"]["schedule"], "0 * * * *");
    assert_eq!(mutated["spec"]["compression"], "zstd");
    assert_eq!(mutated["metadata"], hourly["metadata"], "metadata untouched");
    let warnings = warnings(response);
    assert!(
        warnings.iter().any(|w| w.contains("spec.schedule")),
        "{warnings:?}"
    );
    // The mutated object is admitted.
    let review = admission_review("e2e-validate", Operation::Create, Some(&mutated), None, false);
    let answer = tls_post(&mut stream, "/validate", &serde_json::to_vec(&review).unwrap()).await;
    let body = answer.json();
    assert_eq!(
        admission_response(&body, "e2e-validate")["allowed"],
        true,
        "{body}"
    );

    // A conversion of two objects, answered in request order.
    let restore = as_created(
        &json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaRestore",
                "metadata": {"name": "restore-orders", "namespace": "kafka-backup"},
                "spec": {"backupRef": {"name": "hourly"}, "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
                         "topics": ["orders"], "topicMapping": {"orders": "orders-restored"}}}),
        "kafka-backup",
    );
    let review = json!({"kind": "ConversionReview", "apiVersion": "apiextensions.k8s.io/v1",
                        "request": {"uid": "e2e-convert", "desiredAPIVersion": "kafka.oso.sh/v1beta1",
                                    "objects": [mutated, restore]}});
    let answer = tls_post(&mut stream, "/convert", &serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["kind"], "ConversionReview");
    let response = &body["response"];
    assert_eq!(response["uid"], "e2e-convert");
    assert_eq!(response["result"]["status"], "Success", "{body}");
    let converted = response["convertedObjects"].as_array().unwrap();
    let order: Vec<_> = converted
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [("KafkaBackup", "hourly"), ("KafkaRestore", "restore-orders")]
    );
    for object in converted {
        assert_eq!(object["apiVersion"], "kafka.oso.sh/v1beta1");
    }
    assert_eq!(converted[0]["spec"]["schedule"], "0 0 * * * *");

    // HTTP/2, as kube-apiserver's client negotiates it.
    let h2 = connect(
        server.https,
        client_config(&[&pki.ca_cert_pem], &[b"h2"], rustls::DEFAULT_VERSIONS),
        "localhost",
    )
    .await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(h2))
            .await
            .unwrap();
    tokio::spawn(connection);
    let review = admission_review("e2e-h2", Operation::Create, Some(&refused), None, true);
    let request = Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&review).unwrap())))
        .unwrap();
    let answer = sender.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value =
        serde_json::from_slice(&answer.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let response = admission_response(&body, "e2e-h2");
    assert_eq!(response["allowed"], false);
    assert!(message(response).contains("spec.continuous"), "{body}");

    // Counted by webhook and outcome.
    for (series, value) in [
        (
            r#"kafka_backup_operator_webhook_requests_total{webhook="validate",outcome="denied"}"#,
            2.0,
        ),
        (
            r#"kafka_backup_operator_webhook_requests_total{webhook="validate",outcome="allowed"}"#,
            1.0,
        ),
        (
            r#"kafka_backup_operator_webhook_requests_total{webhook="mutate",outcome="patched"}"#,
            1.0,
        ),
        (
            r#"kafka_backup_operator_webhook_requests_total{webhook="convert",outcome="allowed"}"#,
            1.0,
        ),
        (
            r#"kafka_backup_operator_webhook_duration_seconds_count{webhook="validate"}"#,
            3.0,
        ),
    ] {
        assert_eq!(server.metric(series).await, value, "{series}");
    }
    // One span per review, with its uid, in the log.
    let log = server.log();
    assert!(log.contains("uid=e2e-deny"), "{log}");
    assert!(log.contains("admission denied"), "{log}");
}
