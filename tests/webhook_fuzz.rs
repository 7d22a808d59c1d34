//! Property tests of the three webhook routes against hostile input: arbitrary bytes, arbitrary
//! JSON, and real reviews with one part replaced by arbitrary JSON (so that the generated input
//! reaches the validators, the mutators and the conversions, not only the envelope parser).
//!
//! Whatever comes in, the answer is well formed and nothing panics: either HTTP 4xx with a
//! Kubernetes `Status` body whose code is the HTTP status, or HTTP 200 with a review of the right
//! kind whose response echoes the request's uid (when the input has a string uid at all).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::{path::Path, sync::LazyLock};

use axum::Router;
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::{Map, Value};
use support::review::{FIXTURES, call, router};

const ROUTES: [&str; 3] = ["/validate", "/mutate", "/convert"];

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});
static ROUTER: LazyLock<Router> = LazyLock::new(|| router().0);

/// Real reviews of both kinds, from the pinned fixtures.
static REVIEWS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let mut reviews = Vec::new();
    for dir in ["admission-reviews", "conversion-reviews"] {
        let mut cases: Vec<_> = std::fs::read_dir(Path::new(FIXTURES).join(dir))
            .unwrap()
            .map(|e| e.unwrap().path().join("request.json"))
            .filter(|p| p.is_file())
            .collect();
        cases.sort();
        for case in cases {
            reviews.push(serde_json::from_str(&std::fs::read_to_string(case).unwrap()).unwrap());
        }
    }
    assert!(!reviews.is_empty());
    reviews
});

/// Keys that mean something to the webhooks or the kinds, so that generated objects hit real
/// fields often.
const KEYS: &[&str] = &[
    "kind",
    "apiVersion",
    "request",
    "uid",
    "operation",
    "object",
    "oldObject",
    "objects",
    "desiredAPIVersion",
    "subResource",
    "dryRun",
    "metadata",
    "name",
    "namespace",
    "annotations",
    "spec",
    "status",
    "phase",
    "topics",
    "strategy",
    "resetStrategy",
    "timestamp",
    "schedule",
    "kafkaCluster",
    "bootstrapServers",
    "storage",
    "kafka.oso.sh/v1alpha1-fields",
];

const STRINGS: &[&str] = &[
    "AdmissionReview",
    "admission.k8s.io/v1",
    "ConversionReview",
    "apiextensions.k8s.io/v1",
    "kafka.oso.sh/v1alpha1",
    "kafka.oso.sh/v1beta1",
    "KafkaBackup",
    "KafkaRestore",
    "KafkaOffsetReset",
    "KafkaOffsetRollback",
    "KafkaBackupValidation",
    "CREATE",
    "UPDATE",
    "DELETE",
    "status",
    "Running",
    "0 * * * *",
    "2024-12-01T10:00:00Z",
    "{\"spec\":{\"fill\":{}}}",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        proptest::sample::select(STRINGS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => ".{0,8}",
    ];
    json_leaf().prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every JSON pointer into `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                pointers(
                    child,
                    format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A real review with the part at one of its pointers replaced by `replacement`.
fn damaged(review: usize, at: prop::sample::Index, replacement: Value) -> Value {
    let mut review = REVIEWS[review % REVIEWS.len()].clone();
    let mut all = Vec::new();
    pointers(&review, String::new(), &mut all);
    let pointer = at.get(&all).clone();
    match review.pointer_mut(&pointer) {
        Some(slot) => *slot = replacement,
        None => review = replacement,
    }
    review
}

/// Sends `body` to `route` and checks the answer is well formed.
fn check(route: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let sent_uid = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.pointer("/request/uid")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let answer = RUNTIME.block_on(call(&ROUTER, "POST", route, body));
    prop_assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let json: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| TestCaseError::fail(format!("{route}: answer is not JSON: {e}")))?;
    if answer.status == 200 {
        let (kind, api_version) = if route == "/convert" {
            ("ConversionReview", "apiextensions.k8s.io/v1")
        } else {
            ("AdmissionReview", "admission.k8s.io/v1")
        };
        prop_assert_eq!(&json["kind"], kind, "{}", json);
        prop_assert_eq!(&json["apiVersion"], api_version, "{}", json);
        let response = &json["response"];
        prop_assert!(response.is_object(), "{}", json);
        let uid = response["uid"].as_str();
        prop_assert!(uid.is_some(), "{}", json);
        if let Some(sent) = &sent_uid {
            prop_assert_eq!(uid, Some(sent.as_str()), "{}", json);
        }
        if route == "/convert" {
            let status = response["result"]["status"].as_str();
            prop_assert!(matches!(status, Some("Success" | "Failure")), "{}", json);
        } else {
            prop_assert!(response["allowed"].is_boolean(), "{}", json);
            if response["allowed"] == false {
                prop_assert!(
                    response["status"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                    "{}",
                    json
                );
            }
        }
    } else {
        prop_assert!((400..500).contains(&answer.status), "{} {}", answer.status, json);
        prop_assert_eq!(&json["kind"], "Status", "{}", json);
        prop_assert_eq!(&json["status"], "Failure", "{}", json);
        prop_assert_eq!(json["code"].as_u64(), Some(u64::from(answer.status)), "{}", json);
        prop_assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            json
        );
    }
    Ok(())
}

/// `PROPTEST_CASES` when set (for a longer run), else `default`.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes_get_a_well_formed_answer(
        route in proptest::sample::select(&ROUTES[..]),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        check(route, body)?;
    }

    #[test]
    fn arbitrary_json_gets_a_well_formed_answer(
        route in proptest::sample::select(&ROUTES[..]),
        value in json_value(),
    ) {
        check(route, serde_json::to_vec(&value).unwrap())?;
    }
}

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn damaged_real_reviews_get_a_well_formed_answer(
        route in proptest::sample::select(&ROUTES[..]),
        review in any::<usize>(),
        at in any::<prop::sample::Index>(),
        replacement in json_value(),
    ) {
        check(route, serde_json::to_vec(&damaged(review, at, replacement)).unwrap())?;
    }
}
