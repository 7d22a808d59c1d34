//! Every manifest fixture goes through the webhooks the way kube-apiserver sends it: wrapped in a
//! real-shaped CREATE AdmissionReview, sent to `/mutate`, the returned JSON patch applied, and the
//! result sent to `/validate` (through the HTTPS router, in-process).
//!
//! - `tests/fixtures/admission/deny/*.yaml` (first line `# expect: <substring>`): refused, with the
//!   expectation in the message; at least 60 distinct ones.
//! - `tests/fixtures/admission/allow/*.yaml` (optional `# warns: <substring>`): admitted, with the
//!   pinned warning among those kubectl would print (mutating and validating).
//! - `tests/fixtures/seeds/**.yaml`, the documentation's examples: admitted, except those listed in
//!   `tests/fixtures/admission/seed-exemptions.yaml` (`file`, `why`, `expect`), which are refused
//!   with their `expect`.
//! - `tests/fixtures/v1beta1/**.yaml`, the v1beta1 examples: admitted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use axum::Router;
use serde_json::Value;
use support::review::{
    FIXTURES, Manifest, Operation, admission_response, admission_review, as_created, message, patched,
    post_review, router, warnings, yaml_files,
};

/// Minimum number of distinct refused manifests the issue asks for.
const MIN_DENY_FIXTURES: usize = 60;

/// What the webhooks made of one manifest.
struct Admission {
    /// The refusal message, by whichever webhook refused.
    refused: Option<String>,
    /// Every warning of both webhooks, in order.
    warnings: Vec<String>,
}

/// `/mutate`, patch, `/validate`, as kube-apiserver does on CREATE.
async fn admit(router: &Router, object: &Value, uid: &str) -> Admission {
    let object = as_created(object, "default");
    let review = admission_review(uid, Operation::Create, Some(&object), None, false);
    let answer = post_review(router, "/mutate", &review).await;
    let response = admission_response(&answer, uid);
    let mut all_warnings = warnings(response);
    if response["allowed"] == false {
        return Admission {
            refused: Some(refusal(response)),
            warnings: all_warnings,
        };
    }
    let mutated = patched(&object, response);
    let review = admission_review(uid, Operation::Create, Some(&mutated), None, false);
    let answer = post_review(router, "/validate", &review).await;
    let response = admission_response(&answer, uid);
    all_warnings.extend(warnings(response));
    Admission {
        refused: (response["allowed"] == false).then(|| refusal(response)),
        warnings: all_warnings,
    }
}

/// The message of a denial, which must carry one `details.causes` entry per field at fault (what
/// kubectl prints), each naming its field; a denial without causes reads as its message with
/// `(no causes)` so that the expectation fails.
fn refusal(response: &Value) -> String {
    let causes = response
        .pointer("/status/details/causes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let named = !causes.is_empty()
        && causes
            .iter()
            .all(|c| c["field"].as_str().is_some_and(|f| !f.is_empty()) && c["reason"].is_string());
    if named {
        message(response).to_owned()
    } else {
        format!("{} (no causes)", message(response))
    }
}

fn dir(name: &str) -> std::path::PathBuf {
    Path::new(FIXTURES).join(name)
}

#[tokio::test]
async fn deny_fixtures_are_refused_with_their_expectation() {
    let (router, _) = router();
    let files = yaml_files(&dir("admission/deny"));
    let mut failures = Vec::new();
    let mut objects = BTreeSet::new();
    let mut expectations = BTreeSet::new();
    for (i, path) in files.iter().enumerate() {
        let manifest = Manifest::load(path);
        let name = manifest.name();
        let expect = manifest.comment("expect");
        let [expect] = expect.as_slice() else {
            failures.push(format!(
                "{name}: needs exactly one `# expect:` line, has {}",
                expect.len()
            ));
            continue;
        };
        objects.insert(manifest.object.to_string());
        expectations.insert(format!("{}: {expect}", manifest.object["kind"]));
        let admission = admit(&router, &manifest.object, &format!("deny-{i}")).await;
        match admission.refused {
            None => failures.push(format!("{name}: admitted, expected a refusal with {expect:?}")),
            Some(message) if !message.contains(expect) => {
                failures.push(format!(
                    "{name}: refused, but the message lacks {expect:?}:\n  {message}"
                ));
            }
            // Every refusal names the field at fault, in its message and in details.causes.
            Some(message) if !message.contains("spec") || message.ends_with("(no causes)") => {
                failures.push(format!("{name}: refused without naming a field:\n  {message}"));
            }
            Some(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} deny fixtures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert!(
        objects.len() >= MIN_DENY_FIXTURES,
        "only {} distinct refused manifests under admission/deny (at least {MIN_DENY_FIXTURES} wanted)",
        objects.len()
    );
    eprintln!(
        "{} distinct refused manifests, {} distinct expectations",
        objects.len(),
        expectations.len()
    );
}

#[tokio::test]
async fn allow_fixtures_are_admitted_after_mutation() {
    let (router, _) = router();
    let files = yaml_files(&dir("admission/allow"));
    assert!(!files.is_empty(), "no allow fixtures");
    let mut failures = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let manifest = Manifest::load(path);
        let name = manifest.name();
        let admission = admit(&router, &manifest.object, &format!("allow-{i}")).await;
        if let Some(message) = admission.refused {
            failures.push(format!("{name}: refused: {message}"));
            continue;
        }
        for warns in manifest.comment("warns") {
            if !admission.warnings.iter().any(|w| w.contains(warns)) {
                failures.push(format!(
                    "{name}: no warning contains {warns:?}; warnings: {:?}",
                    admission.warnings
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} allow fixtures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[derive(serde::Deserialize)]
struct Exemption {
    file: String,
    why: String,
    expect: String,
}

fn exemptions() -> BTreeMap<String, Exemption> {
    let path = dir("admission/seed-exemptions.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let list: Vec<Exemption> =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BTreeMap::new();
    for exemption in list {
        assert!(
            !exemption.why.trim().is_empty() && !exemption.expect.trim().is_empty(),
            "{}: why and expect are required",
            exemption.file
        );
        assert!(
            dir(&exemption.file).is_file(),
            "seed-exemptions.yaml lists {}, which does not exist",
            exemption.file
        );
        let file = exemption.file.clone();
        assert!(
            out.insert(file.clone(), exemption).is_none(),
            "{file} is listed twice"
        );
    }
    out
}

#[tokio::test]
async fn seed_examples_are_admitted_after_mutation_except_the_listed_fragments() {
    let (router, _) = router();
    let exemptions = exemptions();
    let files = yaml_files(&dir("seeds"));
    assert!(files.len() >= 30, "only {} seed examples", files.len());
    let mut failures = Vec::new();
    let mut admitted = 0;
    for (i, path) in files.iter().enumerate() {
        let manifest = Manifest::load(path);
        let name = manifest.name();
        let admission = admit(&router, &manifest.object, &format!("seed-{i}")).await;
        match (exemptions.get(&name), admission.refused) {
            (None, None) => admitted += 1,
            (None, Some(message)) => failures.push(format!("{name}: refused: {message}")),
            (Some(exemption), None) => failures.push(format!(
                "{name}: admitted, but seed-exemptions.yaml expects a refusal with {:?} ({})",
                exemption.expect, exemption.why
            )),
            (Some(exemption), Some(message)) if !message.contains(&exemption.expect) => {
                failures.push(format!(
                    "{name}: refused, but the message lacks {:?}:\n  {message}",
                    exemption.expect
                ));
            }
            (Some(_), Some(_)) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seed examples failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert_eq!(admitted + exemptions.len(), files.len());
    assert!(
        admitted > exemptions.len(),
        "{admitted} admitted, {} exempt",
        exemptions.len()
    );
}

#[tokio::test]
async fn v1beta1_examples_are_admitted() {
    let (router, _) = router();
    let files = yaml_files(&dir("v1beta1"));
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let manifest = Manifest::load(path);
        let admission = admit(&router, &manifest.object, &format!("beta-{i}")).await;
        if let Some(message) = admission.refused {
            failures.push(format!("{}: refused: {message}", manifest.name()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
