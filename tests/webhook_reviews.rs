//! The webhooks answer real AdmissionReview v1 and ConversionReview v1 payloads, as kube-apiserver
//! sends them, with the answers pinned in files next to each request:
//!
//! - `tests/fixtures/admission-reviews/<case>/request.json` goes to both `/validate` and `/mutate`;
//!   the answers are pinned in `validate.response.json` and `mutate.response.json`, and a patch,
//!   decoded from base64 for the reader, in `mutate.patch.json`;
//! - `tests/fixtures/conversion-reviews/<case>/request.json` goes to `/convert`; the answer is
//!   pinned in `response.json`.
//!
//! Answers are compared exactly (as JSON values). After an intended change, `KBO_BLESS=1 cargo test
//! --test webhook_reviews` rewrites the pinned files; review the diff before committing it.
//!
//! Besides the pins: the uid is echoed, a `dryRun` review gets the same answer as without dry run,
//! the patch applied to the object is what the pure mutation computes and a patched object needs no
//! further patch, converted objects come back in request order, and reviews that cannot be read get
//! a well-formed answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::path::{Path, PathBuf};

use kafka_backup_operator::api;
use serde_json::{Value, json};
use support::review::{
    FIXTURES, Operation, admission_response, admission_review, call, check_expected, message, patch_of,
    patched, post_review, router,
};

fn cases(dir: &str) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(Path::new(FIXTURES).join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("request.json").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases under {dir}");
    cases
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn name(case: &Path) -> String {
    case.file_name().unwrap().to_string_lossy().into_owned()
}

fn uid(review: &Value) -> &str {
    review.pointer("/request/uid").and_then(Value::as_str).unwrap()
}

/// `review` with `dryRun` (and `options.dryRun`, as kubectl --dry-run=server sets both) flipped.
fn flip_dry_run(review: &Value) -> Value {
    let mut review = review.clone();
    let request = review["request"].as_object_mut().unwrap();
    let dry_run = request.get("dryRun").and_then(Value::as_bool).unwrap_or(false);
    request.insert("dryRun".into(), json!(!dry_run));
    if let Some(Value::Object(options)) = request.get_mut("options")
        && options.get("kind").and_then(Value::as_str) != Some("DeleteOptions")
    {
        if dry_run {
            options.remove("dryRun");
        } else {
            options.insert("dryRun".into(), json!(["All"]));
        }
    }
    review
}

#[tokio::test]
async fn admission_reviews_get_the_pinned_answers() {
    let (router, _) = router();
    let mut failures = Vec::new();
    for case in cases("admission-reviews") {
        let request = read_json(&case.join("request.json"));
        let uid = uid(&request);
        for webhook in ["validate", "mutate"] {
            let answer = post_review(&router, &format!("/{webhook}"), &request).await;
            let response = admission_response(&answer, uid);
            if response["allowed"] == false {
                assert_eq!(response["status"]["status"], "Failure", "{}", name(&case));
                assert!(
                    response["status"]["code"].as_u64().unwrap() >= 400,
                    "{}",
                    name(&case)
                );
                assert!(!message(response).is_empty(), "{}", name(&case));
                if response["status"]["code"] == 422 {
                    assert_causes_name_fields(&name(&case), response);
                }
            }
            failures.extend(check_expected(
                &case.join(format!("{webhook}.response.json")),
                &answer,
            ));
            if webhook == "validate" {
                same_as_the_pure_validator(&name(&case), &request["request"], response);
                continue;
            }
            let patch_file = case.join("mutate.patch.json");
            match patch_of(response) {
                None => {
                    if !support::review::blessing() {
                        assert!(
                            !patch_file.exists(),
                            "{}: no patch any more, remove {}",
                            name(&case),
                            patch_file.display()
                        );
                    } else {
                        let _ = std::fs::remove_file(&patch_file);
                    }
                }
                Some(patch) => {
                    failures.extend(check_expected(
                        &patch_file,
                        &serde_json::to_value(&patch).unwrap(),
                    ));
                    // The patch turns the object into what the pure mutation computes ...
                    let object = &request["request"]["object"];
                    let mutated = patched(object, response);
                    assert_eq!(
                        mutated,
                        api::admission::mutate(object).unwrap().object,
                        "{}",
                        name(&case)
                    );
                    // ... which needs no further patch.
                    let mut again = request.clone();
                    again["request"]["object"] = mutated;
                    let answer = post_review(&router, "/mutate", &again).await;
                    let response = admission_response(&answer, uid);
                    assert!(
                        response.get("patch").is_none(),
                        "{}: mutating twice patches again: {answer}",
                        name(&case)
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A 422 denial carries one `details.causes` entry per field, as the API server's own validation
/// errors do: without them kubectl prints only `The <Kind> "<name>" is invalid`.
fn assert_causes_name_fields(case: &str, response: &Value) {
    let causes = response
        .pointer("/status/details/causes")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{case}: a 422 denial without details.causes: {response}"));
    assert!(!causes.is_empty(), "{case}: no causes");
    for cause in causes {
        let field = cause["field"].as_str().unwrap_or_default();
        assert!(
            field.starts_with("spec") || field.starts_with("status"),
            "{case}: cause without a field path: {cause}"
        );
        assert!(
            cause["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("FieldValue")),
            "{case}: {cause}"
        );
        assert!(
            !cause["message"].as_str().unwrap_or_default().is_empty(),
            "{case}: {cause}"
        );
    }
}

/// The webhook reads objects without their bulky metadata; its judgement must be the one the pure
/// validator gives on the whole object.
fn same_as_the_pure_validator(case: &str, request: &Value, response: &Value) {
    let object = &request["object"];
    let is_write = matches!(request["operation"].as_str(), Some("CREATE" | "UPDATE"))
        && request.get("subResource").is_none();
    if !is_write || response["status"]["code"] == 400 {
        return;
    }
    let old = (request["operation"] == "UPDATE").then_some(&request["oldObject"]);
    let verdict = match api::admission::validate(object, old) {
        Ok(verdict) => verdict,
        Err(error) => {
            assert_eq!(message(response), error.to_string(), "{case}");
            return;
        }
    };
    let unchanged_spec = old.is_some_and(|old| old["spec"] == object["spec"]);
    if response["allowed"] == false {
        assert_eq!(message(response), verdict.message(), "{case}");
    } else if !unchanged_spec {
        assert!(verdict.is_allowed(), "{case}: {}", verdict.message());
    }
    if !unchanged_spec {
        let warnings: Vec<String> = support::review::warnings(response);
        assert_eq!(warnings, verdict.warnings, "{case}");
    }
}

#[tokio::test]
async fn dry_run_reviews_get_the_same_answer() {
    let (router, _) = router();
    let mut dry_runs = 0;
    for case in cases("admission-reviews") {
        let request = read_json(&case.join("request.json"));
        let flipped = flip_dry_run(&request);
        dry_runs += 1;
        for path in ["/validate", "/mutate"] {
            let answer = post_review(&router, path, &request).await;
            let other = post_review(&router, path, &flipped).await;
            assert_eq!(answer, other, "{} {path}", name(&case));
        }
    }
    // At least one fixture is a dry run as sent (kubectl apply --dry-run=server).
    let native = cases("admission-reviews")
        .iter()
        .filter(|case| read_json(&case.join("request.json"))["request"]["dryRun"] == true)
        .count();
    assert!(native >= 1 && dry_runs > native);
}

#[tokio::test]
async fn conversion_reviews_get_the_pinned_answers() {
    let (router, _) = router();
    let mut failures = Vec::new();
    for case in cases("conversion-reviews") {
        let request = read_json(&case.join("request.json"));
        let answer = post_review(&router, "/convert", &request).await;
        assert_eq!(answer["kind"], "ConversionReview");
        assert_eq!(answer["apiVersion"], "apiextensions.k8s.io/v1");
        let response = &answer["response"];
        assert_eq!(response["uid"], uid(&request), "{}", name(&case));
        let objects = request["request"]["objects"].as_array().unwrap();
        let converted = response["convertedObjects"].as_array().unwrap();
        match response["result"]["status"].as_str() {
            Some("Success") => {
                assert_eq!(converted.len(), objects.len(), "{}", name(&case));
                let desired = &request["request"]["desiredAPIVersion"];
                for (object, converted) in objects.iter().zip(converted) {
                    // The webhook sets bulky metadata aside while converting: same result.
                    assert_eq!(
                        converted,
                        &api::conversion::convert(object.clone(), desired.as_str().unwrap()).unwrap(),
                        "{}",
                        name(&case)
                    );
                    assert_eq!(&converted["apiVersion"], desired, "{}", name(&case));
                    for field in ["kind", "metadata/name", "metadata/namespace", "metadata/uid"] {
                        let pointer = format!("/{field}");
                        assert_eq!(
                            object.pointer(&pointer),
                            converted.pointer(&pointer),
                            "{}: {field} (request order)",
                            name(&case)
                        );
                    }
                }
            }
            Some("Failure") => {
                assert!(converted.is_empty(), "{}", name(&case));
                assert!(
                    response["result"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("objects["),
                    "{}",
                    name(&case)
                );
            }
            other => panic!("{}: result.status {other:?}", name(&case)),
        }
        failures.extend(check_expected(&case.join("response.json"), &answer));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn assert_status(answer: &support::review::Answer, code: u16, reason: &str, contains: &str) {
    assert_eq!(answer.status, code, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let status = answer.json();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["apiVersion"], "v1");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["code"], code);
    assert_eq!(status["reason"], reason);
    let message = status["message"].as_str().unwrap();
    assert!(message.contains(contains), "{message}");
}

#[tokio::test]
async fn unreadable_reviews_get_a_status_or_an_invalid_review() {
    let (router, _) = router();
    for path in ["/validate", "/mutate", "/convert"] {
        assert_status(
            &call(&router, "POST", path, "{\"kind\": ").await,
            400,
            "BadRequest",
            "not JSON",
        );
        assert_status(
            &call(&router, "POST", path, "{}").await,
            400,
            "BadRequest",
            "has no request",
        );
        assert_status(
            &call(&router, "POST", path, "[1, 2]").await,
            400,
            "BadRequest",
            "has no request",
        );
        assert_status(
            &call(&router, "POST", path, r#"{"request": {"uid": 7}}"#).await,
            400,
            "BadRequest",
            "cannot be read",
        );
        assert_status(
            &call(&router, "GET", path, "").await,
            405,
            "MethodNotAllowed",
            "POST only",
        );
    }
    // Over the size limit: not read at all.
    let huge = vec![b' '; kafka_backup_operator::webhook::ADMISSION_BODY_LIMIT + 1];
    assert_status(
        &call(&router, "POST", "/validate", huge).await,
        413,
        "RequestEntityTooLarge",
        "",
    );

    // The uid can be read but not the rest: an invalid review with the uid.
    let review = json!({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
                        "request": {"uid": "u-1", "operation": "EXPLODE"}});
    for path in ["/validate", "/mutate"] {
        let answer = post_review(&router, path, &review).await;
        let response = admission_response(&answer, "u-1");
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 400);
        assert!(message(response).contains("cannot be read"), "{answer}");
    }
    let review = json!({"kind": "ConversionReview", "apiVersion": "apiextensions.k8s.io/v1",
                        "request": {"uid": "u-2", "objects": []}});
    let answer = post_review(&router, "/convert", &review).await;
    assert_eq!(answer["response"]["uid"], "u-2");
    assert_eq!(answer["response"]["result"]["status"], "Failure");
    assert!(
        answer["response"]["result"]["message"]
            .as_str()
            .unwrap()
            .contains("desiredAPIVersion"),
        "{answer}"
    );
}

#[tokio::test]
async fn an_object_that_cannot_be_decoded_is_denied_naming_the_problem() {
    let (router, _) = router();
    let object = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
                        "metadata": {"name": "b", "namespace": "ns"},
                        "spec": {"topics": "orders"}});
    let review = admission_review("u-3", Operation::Create, Some(&object), None, false);
    for path in ["/validate", "/mutate"] {
        let answer = post_review(&router, path, &review).await;
        let response = admission_response(&answer, "u-3");
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 422);
        let message = message(response);
        assert!(
            message.contains("KafkaBackup v1beta1 cannot be read"),
            "{message}"
        );
    }
    // A CREATE without an object is not a review kube-apiserver sends: refused, uid echoed.
    let mut review = review;
    review["request"]["object"] = Value::Null;
    for path in ["/validate", "/mutate"] {
        let answer = post_review(&router, path, &review).await;
        let response = admission_response(&answer, "u-3");
        assert_eq!(response["allowed"], false);
        assert!(message(response).contains("request.object is missing"));
    }
}

#[tokio::test]
async fn values_outside_an_enum_are_denied_with_a_cause_listing_the_allowed_values() {
    let (router, _) = router();
    for (kind, spec, field, allowed) in [
        (
            "KafkaOffsetReset",
            json!({"strategy": "middle", "consumerGroups": ["g"], "kafkaCluster": {"bootstrapServers": ["k:9092"]}}),
            "spec.strategy",
            "\"earliest\", \"latest\", \"timestamp\", \"offset\", \"headerBased\", \"fromMapping\"",
        ),
        (
            "KafkaBackup",
            json!({"topics": ["t"], "kafkaCluster": {"bootstrapServers": ["k:9092"], "securityProtocol": "TLS13"},
                   "storage": {"storageType": "s3", "s3": {"bucket": "b"}}}),
            "spec.kafkaCluster.securityProtocol",
            "\"PLAINTEXT\", \"SSL\", \"SASL_PLAINTEXT\", \"SASL_SSL\"",
        ),
        (
            "KafkaBackup",
            json!({"topics": ["t"], "kafkaCluster": {"bootstrapServers": ["k:9092"]}, "compression": "brotli",
                   "storage": {"storageType": "minio"}}),
            "spec.storage.storageType",
            "\"pvc\", \"s3\", \"azure\", \"gcs\", \"configMap\", \"configmap\"",
        ),
        (
            "KafkaOffsetRollback",
            json!({"operation": "undo", "snapshotId": "s"}),
            "spec.operation",
            "\"snapshot\", \"rollback\", \"verify\", \"delete\"",
        ),
    ] {
        let object = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": kind,
                            "metadata": {"name": "b", "namespace": "ns"}, "spec": spec});
        let review = admission_review("u-enum", Operation::Create, Some(&object), None, false);
        for path in ["/mutate", "/validate"] {
            let answer = post_review(&router, path, &review).await;
            let response = admission_response(&answer, "u-enum");
            assert_eq!(response["allowed"], false, "{kind} {path}");
            assert_eq!(response["status"]["code"], 422);
            assert_eq!(response["status"]["details"]["kind"], kind);
            assert_eq!(response["status"]["details"]["name"], "b");
            let causes = response["status"]["details"]["causes"].as_array().unwrap();
            let cause = causes
                .iter()
                .find(|c| c["field"] == field)
                .unwrap_or_else(|| panic!("{kind} {path}: no cause for {field}: {answer}"));
            assert_eq!(cause["reason"], "FieldValueNotSupported");
            let text = cause["message"].as_str().unwrap();
            assert!(
                text.starts_with("Unsupported value: ")
                    && text.ends_with(&format!("supported values: {allowed}")),
                "{kind} {path}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn an_unknown_field_is_answered_with_a_warning_naming_the_nearest_known_one() {
    let (router, _) = router();
    let object = json!({"apiVersion": "kafka.oso.sh/v1alpha1", "kind": "KafkaBackup",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": {"topics": ["t"], "topcis": ["u"], "kafkaCluster": {"bootstrapServers": ["k:9092"]},
                 "storage": {"storageType": "s3", "s3": {"bucket": "b"}}}});
    let review = admission_review("u-unknown", Operation::Create, Some(&object), None, false);
    let answer = post_review(&router, "/validate", &review).await;
    let response = admission_response(&answer, "u-unknown");
    assert_eq!(response["allowed"], true, "{answer}");
    let warnings = support::review::warnings(response);
    assert!(
        warnings.contains(&"spec.topcis: unknown field; did you mean spec.topics?: it is ignored".to_owned()),
        "{warnings:?}"
    );
    // Said once per request: the mutating webhook leaves it to the validating one.
    let answer = post_review(&router, "/mutate", &review).await;
    let response = admission_response(&answer, "u-unknown");
    assert!(
        !support::review::warnings(response)
            .iter()
            .any(|w| w.contains("topcis")),
        "{answer}"
    );
}

#[tokio::test]
async fn answers_are_counted_by_webhook_and_outcome() {
    let (router, metrics) = router();
    let object = json!({"apiVersion": "kafka.oso.sh/v1", "kind": "KafkaBackup",
                        "metadata": {"name": "b", "namespace": "ns"}, "spec": {}});
    let review = admission_review("u-4", Operation::Create, Some(&object), None, false);
    post_review(&router, "/validate", &review).await;
    let delete = admission_review("u-5", Operation::Delete, None, Some(&object), false);
    post_review(&router, "/mutate", &delete).await;
    call(&router, "POST", "/convert", "nonsense").await;
    let text = metrics.encode().unwrap();
    for line in [
        r#"kafka_backup_operator_webhook_requests_total{webhook="validate",outcome="denied"} 1"#,
        r#"kafka_backup_operator_webhook_requests_total{webhook="mutate",outcome="allowed"} 1"#,
        r#"kafka_backup_operator_webhook_requests_total{webhook="convert",outcome="error"} 1"#,
        r#"kafka_backup_operator_webhook_duration_seconds_count{webhook="validate"} 1"#,
        r#"kafka_backup_operator_https_requests_total{code="400"} 1"#,
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
    }
}
