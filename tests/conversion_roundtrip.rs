//! Property tests of conversion over objects generated from the CRD schemas themselves, so every
//! field of every kind is exercised without hand-written generators:
//! - v1beta1 -> v1alpha1 -> v1beta1 is the identity;
//! - a v1alpha1 object -> v1beta1 -> v1alpha1 is the identity, as written (every spelling kept,
//!   the pre-1.0 ones included) and after the mutating webhook added its defaults;
//! - after an edit through v1beta1, the v1alpha1 view says what the edited object says, and
//!   never holds two spellings of one field that disagree (a stale preserved spelling);
//! - metadata other than the preserved-fields annotations is never touched.
//!
//! An object whose conversion is refused (a v1alpha1 object without something v1beta1 requires) is
//! not a counterexample, but most generated objects must convert, or the test says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicUsize, Ordering},
};

mod support;

use kafka_backup_operator::api::{self, admission, conversion, v1alpha1, v1beta1};
use proptest::{prelude::*, test_runner::TestCaseError};
use serde_json::{Map, Value, json};

const ALPHA: &str = "kafka.oso.sh/v1alpha1";
const BETA: &str = "kafka.oso.sh/v1beta1";
const KINDS: [&str; 5] = [
    "KafkaBackup",
    "KafkaRestore",
    "KafkaOffsetReset",
    "KafkaOffsetRollback",
    "KafkaBackupValidation",
];

fn schema(kind: &str, version: &str) -> Value {
    let crd = api::crds()
        .expect("CRDs")
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("kind");
    let version = crd
        .spec
        .versions
        .into_iter()
        .find(|v| v.name == version)
        .expect("version");
    serde_json::to_value(version.schema.and_then(|s| s.open_api_v3_schema)).expect("schema")
}

/// Nesting depth below which arrays and objects are generated: deep enough for the deepest
/// schema (KafkaRestore `status.plan.groupOffsets[].offsets[]`, 6 levels below the root).
const MAX_DEPTH: u32 = 7;

/// A strategy producing values that satisfy the structural part of `schema` (types, enums,
/// formats, bounds); `presence` is the chance that an optional property is set.
fn value_for(schema: &Value, presence: f64, depth: u32) -> BoxedStrategy<Value> {
    if let Some(Value::Array(options)) = schema.get("enum") {
        return proptest::sample::select(options.clone()).boxed();
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return prop_oneof![
            (0i64..1000).prop_map(Value::from),
            "[1-9][0-9]{0,2}m".prop_map(Value::from)
        ]
        .boxed();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => string_for(schema),
        Some("integer") => {
            let min = schema.get("minimum").and_then(Value::as_i64).unwrap_or(-1_000);
            let widest = if schema.get("format").and_then(Value::as_str) == Some("int32") {
                i64::from(i32::MAX)
            } else {
                10_000_000_000_000
            };
            let max = schema
                .get("maximum")
                .and_then(Value::as_i64)
                .unwrap_or(widest)
                .min(widest);
            (min..=max.max(min)).prop_map(Value::from).boxed()
        }
        Some("number") => (-1.0e6f64..1.0e6).prop_map(|f| json!(f)).boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::from).boxed(),
        Some("array") if depth < MAX_DEPTH => {
            let items = schema.get("items").cloned().unwrap_or(json!({"type": "string"}));
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
            let max = schema
                .get("maxItems")
                .and_then(Value::as_u64)
                .map_or(min + 2, |m| (m as usize).min(min + 2));
            proptest::collection::vec(value_for(&items, presence, depth + 1), min..=max.max(min))
                .prop_map(Value::Array)
                .boxed()
        }
        Some("object") if depth < MAX_DEPTH => object_for(schema, presence, depth),
        Some("array") => Just(json!([])).boxed(),
        _ => Just(json!({})).boxed(),
    }
}

fn string_for(schema: &Value) -> BoxedStrategy<Value> {
    if schema.get("format").and_then(Value::as_str) == Some("date-time") {
        return (0i64..4_000_000_000, 0u32..2)
            .prop_map(|(secs, with_millis)| {
                let time =
                    chrono::DateTime::from_timestamp(secs, with_millis * 123_000_000).expect("in range");
                let format = if with_millis == 1 {
                    chrono::SecondsFormat::Millis
                } else {
                    chrono::SecondsFormat::Secs
                };
                Value::from(time.to_rfc3339_opts(format, true))
            })
            .boxed();
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str)
        && let Ok(strategy) = proptest::string::string_regex(pattern)
    {
        return strategy.prop_map(Value::from).boxed();
    }
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let regex = format!("[a-z0-9.-]{{{},{}}}", min.max(1), min.max(1) + 8);
    proptest::string::string_regex(&regex)
        .expect("regex")
        .prop_map(Value::from)
        .boxed()
}

fn object_for(schema: &Value, presence: f64, depth: u32) -> BoxedStrategy<Value> {
    if let Some(Value::Object(properties)) = schema.get("properties") {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = properties
            .iter()
            .map(|(name, sub)| {
                let name = name.clone();
                let value = value_for(sub, presence, depth + 1);
                if required.contains(&name.as_str()) {
                    value.prop_map(move |v| Some((name.clone(), v))).boxed()
                } else {
                    proptest::option::weighted(presence, value)
                        .prop_map(move |v| v.map(|v| (name.clone(), v)))
                        .boxed()
                }
            })
            .collect();
        return fields
            .prop_map(|pairs| Value::Object(pairs.into_iter().flatten().collect::<Map<_, _>>()))
            .boxed();
    }
    if let Some(additional @ Value::Object(_)) = schema.get("additionalProperties") {
        return proptest::collection::btree_map(
            "[a-z][a-z0-9-]{0,6}",
            value_for(additional, presence, depth + 1),
            0..3,
        )
        .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect()))
        .boxed();
    }
    Just(json!({})).boxed()
}

fn resource(kind: &'static str, api_version: &'static str, presence: f64) -> impl Strategy<Value = Value> {
    let version = api_version.rsplit('/').next().expect("version");
    let schema = schema(kind, version);
    let spec = value_for(&schema["properties"]["spec"], presence, 1);
    let status = proptest::option::weighted(0.7, value_for(&schema["properties"]["status"], presence, 1));
    (spec, status).prop_map(move |(spec, status)| {
        let mut object = json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "name": "generated",
                "namespace": "ns",
                "uid": "0d3e7a1c-0000-4000-8000-000000000001",
                "generation": 3,
                "labels": {"team": "data"},
                "annotations": {"example.com/note": "kept as is"}
            },
            "spec": spec,
        });
        if let Some(status) = status {
            object["status"] = status;
        }
        object
    })
}

fn without_preserved(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(Value::Object(annotations)) = object.pointer_mut("/metadata/annotations") {
        annotations.remove(api::PRESERVED_FIELDS_ANNOTATION);
        annotations.remove(conversion::HUB_FIELDS_ANNOTATION);
    }
    object
}

/// The object as its typed form writes it: schema defaults applied, as the apiserver stores it.
fn canonical(object: Value) -> Option<Value> {
    macro_rules! typed {
        ($($kind:ident),*) => {
            match (object["kind"].as_str(), object["apiVersion"].as_str()) {
                $(
                    (Some(stringify!($kind)), Some(ALPHA)) => serde_json::from_value::<v1alpha1::$kind>(object)
                        .ok()
                        .and_then(|t| serde_json::to_value(t).ok()),
                    (Some(stringify!($kind)), Some(BETA)) => serde_json::from_value::<v1beta1::$kind>(object)
                        .ok()
                        .and_then(|t| serde_json::to_value(t).ok()),
                )*
                _ => None,
            }
        };
    }
    typed!(
        KafkaBackup,
        KafkaRestore,
        KafkaOffsetReset,
        KafkaOffsetRollback,
        KafkaBackupValidation
    )
}

fn check_round_trip(
    object: &Value,
    there: &str,
    back: &str,
    converted: &AtomicUsize,
) -> Result<(), TestCaseError> {
    let Ok(other) = conversion::convert(object.clone(), there) else {
        return Ok(());
    };
    converted.fetch_add(1, Ordering::Relaxed);
    prop_assert_eq!(&other["metadata"]["labels"], &object["metadata"]["labels"]);
    prop_assert_eq!(
        &without_preserved(&other)["metadata"],
        &without_preserved(object)["metadata"],
        "metadata other than the preserved-fields annotations must be untouched"
    );
    let returned = conversion::convert(other.clone(), back)
        .map_err(|e| TestCaseError::fail(format!("converted {there} but not back: {e}\n{other:#}")))?;
    prop_assert_eq!(
        &returned,
        object,
        "round trip through {} changed the object",
        there
    );
    Ok(())
}

/// JSON pointers of the scalar leaves of `value` (strings, numbers, booleans).
fn scalar_leaves(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                scalar_leaves(
                    child,
                    &format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                scalar_leaves(child, &format!("{at}/{i}"), out);
            }
        }
        Value::Null => {}
        _ => out.push(at.to_owned()),
    }
}

/// Another value of the same type.
fn perturbed(value: &Value) -> Value {
    match value {
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(n) => n
            .as_i64()
            .map_or_else(|| json!(n.as_f64().unwrap_or(0.0) + 1.0), |i| json!(i + 1)),
        Value::String(s) => Value::String(format!("{s}x")),
        other => other.clone(),
    }
}

/// The errors of a v1alpha1 object that name two spellings of one field disagreeing.
fn conflicting_spellings(object: &Value) -> Vec<String> {
    admission::validate(object, None)
        .map(|v| v.errors)
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .filter(|e| e.contains("conflicts with"))
        .collect()
}

/// Edits the v1beta1 form of the v1alpha1 object `alpha` at `pointer` and checks the v1alpha1
/// view of the edit: it converts back to the edited object and adds no disagreeing spelling.
/// `None` when the edited value is not one of the type's (nothing to check).
fn check_edit_through_the_hub(alpha: &Value, pointer: &str) -> Option<Result<(), String>> {
    let hub = conversion::convert(alpha.clone(), BETA).ok()?;
    let mut edited = hub;
    let slot = edited.pointer_mut(pointer)?;
    *slot = perturbed(slot);
    let edited = canonical(edited)?;
    let view = match conversion::convert(edited.clone(), ALPHA) {
        Ok(view) => view,
        Err(e) => {
            return Some(Err(format!(
                "{pointer}: edited object does not convert down: {e}"
            )));
        }
    };
    let up = match conversion::convert(view.clone(), BETA) {
        Ok(up) => up,
        Err(e) => {
            return Some(Err(format!(
                "{pointer}: the view does not convert up: {e}\n{view:#}"
            )));
        }
    };
    if up["spec"] != edited["spec"] {
        return Some(Err(format!(
            "{pointer}: the v1alpha1 view says something else than the edit:\n{view:#}\nreads as\n{:#}\nedited\n{:#}",
            up["spec"], edited["spec"]
        )));
    }
    if conflicting_spellings(alpha).is_empty() {
        let conflicts = conflicting_spellings(&view);
        if !conflicts.is_empty() {
            return Some(Err(format!(
                "{pointer}: the view holds disagreeing spellings: {conflicts:?}\n{view:#}"
            )));
        }
    }
    Some(Ok(()))
}

fn run(kind: &'static str, api_version: &'static str, there: &'static str, normalize: bool) {
    let converted = AtomicUsize::new(0);
    let cases = 96;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    runner
        .run(&resource(kind, api_version, 0.8), |object| {
            // A v1alpha1 object reaches storage only after the mutating webhook normalized it.
            let object = if normalize {
                match admission::mutate(&object) {
                    Ok(mutation) => mutation.object,
                    Err(_) => return Ok(()),
                }
            } else {
                object
            };
            let Some(object) = canonical(object) else {
                return Err(TestCaseError::fail(
                    "a generated object does not decode into its type",
                ));
            };
            check_round_trip(&object, there, api_version, &converted)
        })
        .unwrap_or_else(|e| panic!("{kind} {api_version} -> {there}: {e}"));
    let converted = converted.load(Ordering::Relaxed);
    assert!(
        converted * 4 >= cases as usize,
        "{kind} {api_version}: only {converted} of {cases} generated objects converted to {there}"
    );
}

#[test]
fn hub_to_spoke_and_back_is_the_identity() {
    for kind in KINDS {
        run(kind, BETA, ALPHA, false);
    }
}

#[test]
fn mutated_spoke_to_hub_and_back_is_the_identity() {
    for kind in KINDS {
        run(kind, ALPHA, BETA, true);
    }
}

#[test]
fn spoke_as_written_to_hub_and_back_is_the_identity() {
    for kind in KINDS {
        run(kind, ALPHA, BETA, false);
    }
}

#[test]
fn an_edit_through_the_hub_is_what_the_spoke_view_says() {
    for kind in KINDS {
        let checked = AtomicUsize::new(0);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 96,
            ..ProptestConfig::default()
        });
        runner
            .run(
                &(resource(kind, ALPHA, 0.8), any::<proptest::sample::Index>()),
                |(object, which)| {
                    let Some(object) = canonical(object) else {
                        return Err(TestCaseError::fail(
                            "a generated object does not decode into its type",
                        ));
                    };
                    let Ok(hub) = conversion::convert(object.clone(), BETA) else {
                        return Ok(());
                    };
                    let mut leaves = Vec::new();
                    scalar_leaves(&hub["spec"], "/spec", &mut leaves);
                    if leaves.is_empty() {
                        return Ok(());
                    }
                    match check_edit_through_the_hub(&object, which.get::<String>(&leaves)) {
                        Some(Err(failure)) => Err(TestCaseError::fail(failure)),
                        Some(Ok(())) => {
                            checked.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        }
                        None => Ok(()),
                    }
                },
            )
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(
            checked.load(Ordering::Relaxed) >= 12,
            "{kind}: too few edits checked"
        );
    }
}

#[test]
fn seed_examples_round_trip_after_mutation() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seeds");
    let mut checked = 0;
    for entry in walk(std::path::Path::new(dir)) {
        let text = std::fs::read_to_string(&entry).expect("fixture");
        let object: Value = serde_saphyr::from_str(&text).expect("yaml");
        let Ok(mutation) = admission::mutate(&object) else {
            continue;
        };
        let Ok(hub) = conversion::convert(mutation.object.clone(), BETA) else {
            continue;
        };
        let back = conversion::convert(hub, ALPHA).expect("back to v1alpha1");
        assert_eq!(back, mutation.object, "{}", entry.display());
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} seed examples converted");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The fixtures a reader sees (seed examples, admitted manifests, v1beta1 examples): mutation
/// only adds what is absent and is idempotent (a second pass adds nothing and only explains
/// again), conversion to the other version and back gives the object back exactly (v1beta1 in its
/// typed form, schema defaults applied, as the apiserver stores it), an edit through v1beta1 of
/// any value of an admitted seed reads back from its v1alpha1 view without a stale spelling, and
/// the v1alpha1 view of a v1beta1 example that v1alpha1 can fully express is admitted.
#[test]
fn fixture_examples_round_trip_exactly_and_mutate_once() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in ["seeds", "admission/allow", "v1beta1"] {
        for path in walk(&std::path::Path::new(fixtures).join(dir)) {
            let name = path.strip_prefix(fixtures).unwrap().display().to_string();
            let text = std::fs::read_to_string(&path).expect("fixture");
            let object: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mutation = admission::mutate(&object).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !support::review::contains(&mutation.object, &object) {
                failures.push(format!("{name}: the mutation changed what the object says"));
            }
            let again = admission::mutate(&mutation.object).expect("mutated object");
            if again.object != mutation.object
                || !again.warnings.iter().all(|w| mutation.warnings.contains(w))
            {
                failures.push(format!(
                    "{name}: mutating twice changes it again: {:?}",
                    again.warnings
                ));
            }
            let mutated = canonical(mutation.object).unwrap_or_else(|| panic!("{name}: not its type"));
            let version = mutated["apiVersion"].as_str().unwrap().to_owned();
            let other = if version == ALPHA { BETA } else { ALPHA };
            let there = match conversion::convert(mutated.clone(), other) {
                Ok(there) => there,
                Err(e) => {
                    failures.push(format!("{name}: does not convert to {other}: {e}"));
                    continue;
                }
            };
            let back = conversion::convert(there.clone(), &version).expect("back");
            if back != mutated {
                failures.push(format!(
                    "{name}: round trip changed it:\n{back:#}\nwas\n{mutated:#}"
                ));
            }
            let admitted = admission::validate(&mutated, None).is_ok_and(|v| v.is_allowed());
            if version == ALPHA && admitted {
                let mut leaves = Vec::new();
                scalar_leaves(&there["spec"], "/spec", &mut leaves);
                for pointer in leaves {
                    if let Some(Err(failure)) = check_edit_through_the_hub(&mutated, &pointer) {
                        failures.push(format!("{name}: {failure}"));
                    }
                }
            }
            if version == BETA && conversion::preserved_fields(&there).is_empty() {
                let spoke = admission::mutate(&there).expect("v1alpha1 view").object;
                let verdict = admission::validate(&spoke, None).expect("v1alpha1 view");
                if !verdict.is_allowed() {
                    failures.push(format!(
                        "{name}: its v1alpha1 view is refused: {}",
                        verdict.message()
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 60, "only {checked} fixtures checked");
}

/// A value only v1alpha1 can hold survives an edit made through v1beta1, and the edit wins over a
/// preserved value of the same section (it is not reverted by a stale residue).
#[test]
fn edits_through_the_hub_win_over_preserved_values() {
    let alpha = json!({
        "apiVersion": ALPHA,
        "kind": "KafkaRestore",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {
            "backupRef": {"name": "hourly-backup"},
            "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
            "purgeTopics": true,
            "produceAcks": "all",
            "resources": {"limits": {"cpu": "2"}}
        }
    });
    let alpha = admission::mutate(&alpha).expect("mutate").object;
    let mut hub = conversion::convert(alpha.clone(), BETA).expect("up");
    assert_eq!(
        conversion::convert(hub.clone(), ALPHA).expect("down"),
        alpha,
        "unedited: exact"
    );

    hub["spec"]["kafkaCluster"]["bootstrapServers"] = json!(["kafka-0:9093"]);
    hub["spec"]["produce"]["acks"] = json!("Leader");
    let down = conversion::convert(hub, ALPHA).expect("down after edit");
    assert_eq!(
        down["spec"]["kafkaCluster"]["bootstrapServers"],
        json!(["kafka-0:9093"]),
        "the edit is kept"
    );
    assert_eq!(
        down["spec"]["produceAcks"],
        json!(1),
        "the preserved spelling 'all' does not revert the edit"
    );
    assert_eq!(
        down["spec"]["resources"], alpha["spec"]["resources"],
        "a v1alpha1-only field survives the edit"
    );
}
