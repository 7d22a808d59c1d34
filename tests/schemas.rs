//! The generated CRD schemas: structural as the apiserver requires, accepting every example of the
//! seed documents in v1alpha1 and the v1beta1 examples, and refusing the invalid fixtures with the
//! error each one names (`# expect: ...` on its first line), through both the OpenAPI schema
//! (jsonschema) and the CEL rules (kube's client-side CEL validator).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use kafka_backup_operator::api::{self, v1alpha1, v1beta1};
use kube::core::cel::{Validator, compile_schema};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// openAPIV3Schema of every served (kind, version).
fn schemas() -> BTreeMap<(String, String), Value> {
    let mut schemas = BTreeMap::new();
    for crd in api::crds().expect("CRDs assemble") {
        for version in &crd.spec.versions {
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema");
            schemas.insert(
                (crd.spec.names.kind.clone(), version.name.clone()),
                serde_json::to_value(schema).expect("schema serializes"),
            );
        }
    }
    schemas
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn load(path: &Path) -> (String, Value) {
    let text = fs::read_to_string(path).expect("fixture readable");
    let value: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (text, value)
}

fn kind_and_version(path: &Path, object: &Value) -> (String, String) {
    let kind = object["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no kind", path.display()));
    let api_version = object["apiVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no apiVersion", path.display()));
    let (group, version) = api_version.split_once('/').expect("group/version");
    assert_eq!(group, api::GROUP, "{}", path.display());
    (kind.to_owned(), version.to_owned())
}

/// The schema as kubectl's strict field validation applies it: an unknown field in spec or status
/// is an error (it would otherwise be pruned silently, which is what the prior art's users hit).
/// The root keeps apiVersion, kind and metadata, which the apiserver validates itself.
fn strict_root(schema: &Value) -> Value {
    let mut root = schema.clone();
    for part in ["spec", "status"] {
        if let Some(sub) = root.get_mut("properties").and_then(|p| p.get_mut(part)) {
            *sub = strict(sub);
        }
    }
    root
}

fn strict(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), strict(v))).collect();
            let preserves = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            if map.contains_key("properties") && !map.contains_key("additionalProperties") && !preserves {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(strict).collect()),
        other => other.clone(),
    }
}

/// Every error the apiserver would report for `object`: OpenAPI schema, then CEL.
fn errors(schema: &Value, object: &Value) -> Vec<String> {
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&strict_root(schema))
        .expect("schema compiles");
    let mut errors: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty()
        && let Err(cel) = Validator::new().validate(schema, object, None)
    {
        errors.extend(cel.iter().map(|e| e.to_string()));
    }
    errors
}

/// Deserializes into the typed resource of that kind and version.
fn typed(kind: &str, version: &str, object: &Value) -> Result<(), serde_json::Error> {
    let object = object.clone();
    macro_rules! parse {
        ($($kind:ident),*) => {
            match (kind, version) {
                $(
                    (stringify!($kind), "v1alpha1") => serde_json::from_value::<v1alpha1::$kind>(object).map(drop),
                    (stringify!($kind), "v1beta1") => serde_json::from_value::<v1beta1::$kind>(object).map(drop),
                )*
                _ => panic!("unknown kind {kind} {version}"),
            }
        };
    }
    parse!(
        KafkaBackup,
        KafkaRestore,
        KafkaOffsetReset,
        KafkaOffsetRollback,
        KafkaBackupValidation
    )
}

fn assert_valid_fixtures(dir: &str, expected_version: &str) -> BTreeMap<String, usize> {
    let schemas = schemas();
    let mut per_kind = BTreeMap::new();
    let mut failures = Vec::new();
    for path in yaml_files(&Path::new(FIXTURES).join(dir)) {
        let (_, object) = load(&path);
        let (kind, version) = kind_and_version(&path, &object);
        assert_eq!(version, expected_version, "{}", path.display());
        *per_kind.entry(kind.clone()).or_insert(0) += 1;
        let schema = &schemas[&(kind.clone(), version.clone())];
        for error in errors(schema, &object) {
            failures.push(format!("{}: {error}", path.display()));
        }
        if let Err(e) = typed(&kind, &version, &object) {
            failures.push(format!(
                "{}: does not deserialize into {version}::{kind}: {e}",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "valid fixtures rejected:\n{}",
        failures.join("\n")
    );
    per_kind
}

#[test]
fn every_seed_example_is_accepted_by_v1alpha1() {
    let per_kind = assert_valid_fixtures("seeds", "v1alpha1");
    // The seed pages document these four kinds with examples (KafkaBackupValidation has none).
    for kind in [
        "KafkaBackup",
        "KafkaRestore",
        "KafkaOffsetReset",
        "KafkaOffsetRollback",
    ] {
        assert!(
            per_kind.get(kind).copied().unwrap_or(0) > 0,
            "no seed example of {kind}: {per_kind:?}"
        );
    }
}

#[test]
fn v1beta1_examples_are_accepted() {
    let per_kind = assert_valid_fixtures("v1beta1", "v1beta1");
    assert_eq!(
        per_kind.len(),
        5,
        "every kind needs v1beta1 examples: {per_kind:?}"
    );
}

#[test]
fn invalid_fixtures_are_refused_with_the_expected_error() {
    let schemas = schemas();
    let mut failures = Vec::new();
    let files = yaml_files(&Path::new(FIXTURES).join("invalid"));
    assert!(files.len() >= 10, "too few invalid fixtures: {}", files.len());
    for path in files {
        let (text, object) = load(&path);
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
        let (kind, version) = kind_and_version(&path, &object);
        let errors = errors(&schemas[&(kind, version)], &object);
        if !errors.iter().any(|e| e.contains(expect)) {
            failures.push(format!(
                "{}: expected an error containing {expect:?}, got {errors:?}",
                path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "invalid fixtures not refused as expected:\n{}",
        failures.join("\n")
    );
}

/// Walks a schema and reports every violation of the apiserver's structural-schema rules.
fn structural_violations(schema: &Value, path: &str, in_logic: bool, out: &mut Vec<String>) {
    let Value::Object(map) = schema else {
        out.push(format!("{path}: not an object"));
        return;
    };
    for forbidden in [
        "$ref",
        "definitions",
        "$defs",
        "$schema",
        "id",
        "patternProperties",
        "dependencies",
        "additionalItems",
        "const",
        "examples",
    ] {
        if map.contains_key(forbidden) {
            out.push(format!("{path}: keyword {forbidden} is not allowed"));
        }
    }
    if map.get("uniqueItems") == Some(&Value::Bool(true)) {
        out.push(format!("{path}: uniqueItems: true is not allowed"));
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: properties and additionalProperties are mutually exclusive"
        ));
    }
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if in_logic {
        for key in [
            "type",
            "default",
            "nullable",
            "description",
            "additionalProperties",
            "x-kubernetes-validations",
        ] {
            if map.contains_key(key) {
                out.push(format!(
                    "{path}: {key} is not allowed inside allOf/anyOf/oneOf/not"
                ));
            }
        }
    } else if !map.contains_key("type") && !int_or_string && !preserve {
        out.push(format!("{path}: no type"));
    }
    if let Some(rules) = map.get("x-kubernetes-validations") {
        let node = json!({ "type": map.get("type").cloned().unwrap_or(Value::Null), "x-kubernetes-validations": rules });
        for error in compile_schema(&node).compilation_errors() {
            out.push(format!("{path}: CEL rule does not compile: {error}"));
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, sub) in props {
            structural_violations(sub, &format!("{path}.{name}"), in_logic, out);
        }
    }
    if let Some(items) = map.get("items") {
        structural_violations(items, &format!("{path}[]"), in_logic, out);
    }
    if let Some(additional @ Value::Object(_)) = map.get("additionalProperties") {
        structural_violations(additional, &format!("{path}{{}}"), in_logic, out);
    }
    for logic in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = map.get(logic)
            && !int_or_string
        {
            for (i, branch) in branches.iter().enumerate() {
                structural_violations(branch, &format!("{path}.{logic}[{i}]"), true, out);
            }
        }
    }
    if let Some(not) = map.get("not") {
        structural_violations(not, &format!("{path}.not"), true, out);
    }
}

#[test]
fn every_schema_is_structural() {
    let mut violations = Vec::new();
    for ((kind, version), schema) in schemas() {
        structural_violations(&schema, &format!("{kind}/{version}"), false, &mut violations);
    }
    assert!(
        violations.is_empty(),
        "non-structural schemas:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_field_is_documented() {
    // `kubectl explain` shows these descriptions; every spec and status field needs one.
    fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
        if let Some(Value::Object(props)) = schema.get("properties") {
            for (name, sub) in props {
                let here = format!("{path}.{name}");
                if sub
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    out.push(here.clone());
                }
                undocumented(sub, &here, out);
            }
        }
        if let Some(items) = schema.get("items") {
            undocumented(items, &format!("{path}[]"), out);
        }
    }
    let mut missing = Vec::new();
    for ((kind, version), schema) in schemas() {
        for top in ["spec", "status"] {
            undocumented(
                &schema["properties"][top],
                &format!("{kind}/{version}.{top}"),
                &mut missing,
            );
        }
    }
    // Kubernetes' own types (conditions, tolerations, resources) carry their upstream docs.
    assert!(
        missing.is_empty(),
        "fields without a description:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_status_field_is_required() {
    // The operator writes status piece by piece (merge patches); a required field would make the
    // apiserver refuse a patch that does not repeat it.
    for ((kind, version), schema) in schemas() {
        let status = &schema["properties"]["status"];
        assert!(
            status.get("required").is_none(),
            "{kind}/{version} status requires {}",
            status["required"]
        );
    }
}

#[test]
fn crds_serve_both_versions_and_store_v1beta1() {
    let crds = api::crds().expect("CRDs assemble");
    assert_eq!(crds.len(), 5);
    let short_names: Vec<String> = crds
        .iter()
        .flat_map(|c| c.spec.names.short_names.clone().unwrap_or_default())
        .collect();
    for expected in ["kb", "kr", "kor", "korb", "kbv"] {
        assert!(
            short_names.iter().any(|s| s == expected),
            "short name {expected} missing: {short_names:?}"
        );
    }
    for crd in &crds {
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&[api::CATEGORY.to_owned()][..])
        );
        let versions: Vec<(&str, bool, bool)> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage))
            .collect();
        assert_eq!(versions.len(), 2, "{versions:?}");
        assert!(versions.contains(&("v1alpha1", true, false)), "{versions:?}");
        assert!(versions.contains(&("v1beta1", true, true)), "{versions:?}");
        for version in &crd.spec.versions {
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                "{} {} has no status subresource",
                crd.spec.names.kind,
                version.name
            );
            let columns: Vec<&str> = version
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            assert!(
                columns.contains(&"Phase") && columns.contains(&"Age"),
                "{columns:?}"
            );
            let schema = serde_json::to_value(
                version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref()),
            )
            .expect("schema serializes");
            for column in version.additional_printer_columns.iter().flatten() {
                let path = without_filters(&column.json_path);
                let resolved = path
                    .trim_start_matches('.')
                    .split('.')
                    .try_fold(&schema, |node, field| match field {
                        "[]" => node.get("items"),
                        _ => node.get("properties").and_then(|p| p.get(field)),
                    });
                let is_metadata = column.json_path.starts_with(".metadata.");
                assert!(
                    is_metadata || resolved.is_some(),
                    "{} {}: printer column {} points at {}, which the schema does not have",
                    crd.spec.names.kind,
                    version.name,
                    column.name,
                    column.json_path
                );
            }
        }
    }
}

/// A printer column's JSONPath with each filter (`[?(@.type=="Approved")]`, which selects items
/// of the list before it) replaced by the segment `[]`.
fn without_filters(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find("[?(") {
        out.push_str(&rest[..start]);
        out.push_str(".[]");
        rest = rest[start..]
            .find(")]")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out
}
