//! The committed manifests are exactly what the generator produces, and they say what the
//! operator needs: webhook conversion at /convert, both admission webhooks with the safety settings
//! of a production webhook, the APIService and the RBAC of an aggregated API server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

use std::{path::Path, process::Command};

use kafka_backup_operator::manifests::{self, ManifestFile, Options};
use serde_json::Value;

fn file(files: &[ManifestFile], path: &str) -> Value {
    let file = files
        .iter()
        .find(|f| f.path == Path::new(path))
        .unwrap_or_else(|| panic!("{path} not generated"));
    serde_saphyr::from_str(&file.contents).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn committed_manifests_have_no_drift() {
    let status = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["manifests", "--check", "--out", env!("CARGO_MANIFEST_DIR")])
        .status()
        .expect("binary runs");
    assert!(
        status.success(),
        "run `cargo run -- manifests` and commit the result"
    );
}

#[test]
fn check_reports_drift_and_stale_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = manifests::render(&Options::default()).expect("render");
    manifests::write(dir.path(), &files).expect("write");
    manifests::check(dir.path(), &files).expect("fresh output has no drift");

    std::fs::write(dir.path().join("crds/kafkabackups.kafka.oso.sh.yaml"), "edited").expect("edit");
    std::fs::write(dir.path().join("webhooks/extra.yaml"), "kind: Stale").expect("stale");
    std::fs::remove_file(dir.path().join("apiservice/apiservice.yaml")).expect("remove");
    let message = manifests::check(dir.path(), &files)
        .expect_err("drift detected")
        .to_string();
    for expected in [
        "crds/kafkabackups.kafka.oso.sh.yaml differs",
        "webhooks/extra.yaml is not generated",
        "apiservice/apiservice.yaml is missing",
    ] {
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn chart_copy_is_byte_identical_and_checked() {
    let files = manifests::render(&Options::default()).expect("render");
    let chart = Path::new(manifests::CHART_FILES_DIR);
    let originals: Vec<&ManifestFile> = files.iter().filter(|f| !f.path.starts_with(chart)).collect();
    assert_eq!(files.len(), 2 * originals.len(), "one chart copy per manifest");
    for original in &originals {
        let copy_path = chart.join(&original.path);
        let copy = files
            .iter()
            .find(|f| f.path == copy_path)
            .unwrap_or_else(|| panic!("{} has no chart copy", original.path.display()));
        assert_eq!(copy.contents, original.contents, "{}", copy_path.display());
    }

    let dir = tempfile::tempdir().expect("tempdir");
    manifests::write(dir.path(), &files).expect("write");
    let crd_copy = chart.join("crds/kafkarestores.kafka.oso.sh.yaml");
    std::fs::write(dir.path().join(&crd_copy), "edited").expect("edit");
    let stale = chart.join("webhooks/old.yaml");
    std::fs::write(dir.path().join(&stale), "kind: Stale").expect("stale");
    let message = manifests::check(dir.path(), &files)
        .expect_err("drift in the chart copy detected")
        .to_string();
    for expected in [
        format!("{} differs", crd_copy.display()),
        format!("{} is not generated", stale.display()),
    ] {
        assert!(message.contains(&expected), "{message}");
    }
}

#[test]
fn crds_convert_through_the_webhook() {
    let files = manifests::render(&Options::default()).expect("render");
    let crds: Vec<&ManifestFile> = files
        .iter()
        .filter(|f| f.path.starts_with("crds") && f.path.to_string_lossy().ends_with(".kafka.oso.sh.yaml"))
        .collect();
    assert_eq!(crds.len(), 5);
    for crd in crds {
        let crd = file(&files, crd.path.to_str().expect("utf-8"));
        let conversion = &crd["spec"]["conversion"];
        assert_eq!(conversion["strategy"], "Webhook");
        assert_eq!(
            conversion["webhook"]["conversionReviewVersions"],
            serde_json::json!(["v1"])
        );
        let service = &conversion["webhook"]["clientConfig"]["service"];
        assert_eq!(service["path"], "/convert");
        assert_eq!(service["name"], "kafka-backup-operator");
        assert_eq!(service["namespace"], "kafka-backup");
        assert_eq!(service["port"], 443);
    }
}

#[test]
fn admission_webhooks_cover_every_kind_safely() {
    let files = manifests::render(&Options::default()).expect("render");
    for (path, kind, url_path) in [
        (
            "webhooks/validating.yaml",
            "ValidatingWebhookConfiguration",
            "/validate",
        ),
        (
            "webhooks/mutating.yaml",
            "MutatingWebhookConfiguration",
            "/mutate",
        ),
    ] {
        let config = file(&files, path);
        assert_eq!(config["kind"], kind);
        let webhooks = config["webhooks"].as_array().expect("webhooks");
        assert_eq!(webhooks.len(), 1);
        let hook = &webhooks[0];
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(hook["clientConfig"]["service"]["path"], url_path);
        let rule = &hook["rules"][0];
        assert_eq!(rule["apiGroups"], serde_json::json!(["kafka.oso.sh"]));
        assert_eq!(rule["apiVersions"], serde_json::json!(["v1alpha1", "v1beta1"]));
        assert_eq!(rule["operations"], serde_json::json!(["CREATE", "UPDATE"]));
        let mut resources: Vec<&str> = rule["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        resources.sort_unstable();
        assert_eq!(
            resources,
            [
                "kafkabackups",
                "kafkabackupvalidations",
                "kafkaoffsetresets",
                "kafkaoffsetrollbacks",
                "kafkarestores"
            ]
        );
    }
}

#[test]
fn api_service_and_its_rbac() {
    let files = manifests::render(&Options::default()).expect("render");
    let api_service = file(&files, "apiservice/apiservice.yaml");
    assert_eq!(api_service["metadata"]["name"], "v1alpha1.catalog.kafka.oso.sh");
    assert_eq!(api_service["spec"]["group"], "catalog.kafka.oso.sh");
    assert_eq!(api_service["spec"]["version"], "v1alpha1");
    assert_eq!(api_service["spec"]["service"]["name"], "kafka-backup-operator");
    assert!(api_service["spec"].get("insecureSkipTLSVerify").is_none());

    let delegator = file(&files, "apiservice/rbac-auth-delegator.yaml");
    assert_eq!(delegator["kind"], "ClusterRoleBinding");
    assert_eq!(delegator["roleRef"]["name"], "system:auth-delegator");
    assert_eq!(delegator["subjects"][0]["kind"], "ServiceAccount");

    let reader = file(&files, "apiservice/rbac-auth-reader.yaml");
    assert_eq!(reader["kind"], "RoleBinding");
    assert_eq!(reader["metadata"]["namespace"], "kube-system");
    assert_eq!(
        reader["roleRef"]["name"],
        "extension-apiserver-authentication-reader"
    );

    let catalog = file(&files, "apiservice/rbac-catalog-reader.yaml");
    assert_eq!(catalog["kind"], "ClusterRole");
    for role in ["view", "edit", "admin"] {
        assert_eq!(
            catalog["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{role}")],
            "true"
        );
    }
    assert_eq!(
        catalog["rules"][0]["apiGroups"],
        serde_json::json!(["catalog.kafka.oso.sh"])
    );
    assert_eq!(catalog["rules"][0]["verbs"], serde_json::json!(["get", "list"]));
}

/// (resource, verbs) of every rule of a ClusterRole in `group`, and the built-in roles it is
/// aggregated into.
fn grants(role: &Value, group: &str) -> (Vec<(String, Vec<String>)>, Vec<String>) {
    assert_eq!(role["kind"], "ClusterRole");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out = Vec::new();
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(strings(&rule["apiGroups"]), [group]);
        for resource in strings(&rule["resources"]) {
            out.push((resource, strings(&rule["verbs"])));
        }
    }
    let aggregated = role["metadata"]["labels"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| *v == "true")
        .filter_map(|(k, _)| {
            k.strip_prefix("rbac.authorization.k8s.io/aggregate-to-")
                .map(str::to_owned)
        })
        .collect();
    (out, aggregated)
}

#[test]
fn view_edit_and_admin_reach_the_five_kinds_but_no_secrets() {
    let files = manifests::render(&Options::default()).expect("render");
    let kinds = [
        "kafkabackups",
        "kafkarestores",
        "kafkaoffsetresets",
        "kafkaoffsetrollbacks",
        "kafkabackupvalidations",
    ];
    let read = ["get", "list", "watch"].map(String::from).to_vec();
    let write = ["create", "update", "patch", "delete", "deletecollection"]
        .map(String::from)
        .to_vec();

    let viewer = file(&files, "crds/rbac-viewer.yaml");
    assert_eq!(viewer["metadata"]["name"], "kafka-backup-operator:viewer");
    let (rules, aggregated) = grants(&viewer, "kafka.oso.sh");
    assert_eq!(aggregated, ["admin", "edit", "view"]);
    let mut expected: Vec<(String, Vec<String>)> =
        kinds.iter().map(|k| ((*k).to_owned(), read.clone())).collect();
    expected.extend(kinds.iter().map(|k| (format!("{k}/status"), read.clone())));
    assert_eq!(rules, expected);

    let editor = file(&files, "crds/rbac-editor.yaml");
    assert_eq!(editor["metadata"]["name"], "kafka-backup-operator:editor");
    let (rules, aggregated) = grants(&editor, "kafka.oso.sh");
    assert_eq!(aggregated, ["admin", "edit"], "view gets no write");
    let expected: Vec<(String, Vec<String>)> =
        kinds.iter().map(|k| ((*k).to_owned(), write.clone())).collect();
    assert_eq!(rules, expected, "the status stays the operator's");

    // Approving a plan is a role of its own, in no built-in role: an editor may not approve.
    let approver = file(&files, "crds/rbac-approver.yaml");
    assert_eq!(approver["metadata"]["name"], "kafka-backup-operator:approver");
    let (rules, aggregated) = grants(&approver, "kafka.oso.sh");
    assert!(aggregated.is_empty(), "{aggregated:?}");
    assert_eq!(
        rules,
        [("kafkaoffsetresets/approve".to_owned(), vec!["update".to_owned()])]
    );

    // No generated role grants Secrets (the kinds only name them) or anything outside the two groups.
    for f in files
        .iter()
        .filter(|f| f.contents.contains("kind: ClusterRole\n"))
    {
        assert!(!f.contents.contains("secrets"), "{}", f.path.display());
    }
}

#[test]
fn ca_bundle_and_service_are_filled_in_when_given() {
    let options = Options {
        ca_bundle: Some(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec()),
        service_name: "kbo".into(),
        namespace: "ops".into(),
    };
    let files = manifests::render(&options).expect("render");
    // ByteString serializes as base64, as the apiserver expects for caBundle.
    let expected = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";
    let validating = file(&files, "webhooks/validating.yaml");
    assert_eq!(validating["webhooks"][0]["clientConfig"]["caBundle"], expected);
    assert_eq!(
        validating["webhooks"][0]["clientConfig"]["service"]["namespace"],
        "ops"
    );
    let crd = file(&files, "crds/kafkarestores.kafka.oso.sh.yaml");
    assert_eq!(
        crd["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"],
        expected
    );
    assert_eq!(
        crd["spec"]["conversion"]["webhook"]["clientConfig"]["service"]["name"],
        "kbo"
    );
    let api_service = file(&files, "apiservice/apiservice.yaml");
    assert_eq!(api_service["spec"]["caBundle"], expected);
    let delegator = file(&files, "apiservice/rbac-auth-delegator.yaml");
    assert_eq!(delegator["subjects"][0]["namespace"], "ops");
}
