//! The Helm chart (charts/kafka-backup-operator), linted and rendered by Helm v4 itself: the PyPI
//! package helm-python-sdk, driven by tests/chart/render.py with the Python of
//! `KBO_TEST_HELM_PYTHON` (.ci/services.sh installs it). For each TLS mode the chart lints cleanly
//! (strict) and renders; the rendered CRDs, webhook configurations, APIService and its RBAC are the
//! generated files of crds/, webhooks/ and apiservice/ with only the release's service, namespace,
//! TLS and labels filled in; the self-signed certificate really serves the Service's names; the
//! Deployment is hardened, probed on the admin port and runs the built image as its configuration
//! says; CRDs are kept on upgrade and uninstall; the RBAC grants only what the operator uses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use kafka_backup_operator::certs;
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use serde_json::{Map, Value, json};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/kafka-backup-operator");
const RENDER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/chart/render.py");
/// The Service name the generator writes (`manifests::DEFAULT_SERVICE_NAME`); the chart replaces it.
const GENERATED_SERVICE: &str = kafka_backup_operator::manifests::DEFAULT_SERVICE_NAME;

// === running Helm ===

/// The Python of the helm-python-sdk venv, or `None` when the test is skipped.
fn helm() -> Option<Helm> {
    support::service("KBO_TEST_HELM_PYTHON").map(|python| Helm { python })
}

struct Helm {
    python: String,
}

/// One release: its name, namespace and the full name the chart gives its objects.
#[derive(Clone, Copy)]
struct Release {
    name: &'static str,
    namespace: &'static str,
    fullname: &'static str,
}

/// The release whose names are the generator's defaults.
const DEFAULT_RELEASE: Release = Release {
    name: "kafka-backup-operator",
    namespace: "kafka-backup",
    fullname: "kafka-backup-operator",
};
/// A release with other names, to see every reference follow them.
const OTHER_RELEASE: Release = Release {
    name: "kbo",
    namespace: "ops",
    fullname: "kbo-kafka-backup-operator",
};

impl Helm {
    /// Lints and renders; the raw answer of render.py.
    fn run(&self, release: Release, values: &Value, existing: Option<&[Value]>) -> Value {
        let mut request = json!({
            "chart": CHART,
            "release": release.name,
            "namespace": release.namespace,
            "values": values,
        });
        if let Some(existing) = existing {
            request["existing"] = json!(existing);
        }
        let mut child = Command::new(&self.python)
            .arg(RENDER_SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "render.py failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("render.py answers JSON")
    }

    /// Lints (strict: no errors, no warnings) and renders a first install.
    fn render(&self, release: Release, values: &Value) -> Rendered {
        Rendered::from_answer(&self.run(release, values, None))
    }

    /// Lints and renders an upgrade in a cluster that holds `existing` (for `lookup`).
    fn render_upgrade(&self, release: Release, values: &Value, existing: &[Value]) -> Rendered {
        Rendered::from_answer(&self.run(release, values, Some(existing)))
    }
}

/// The documents of a rendered release.
struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn from_answer(answer: &Value) -> Self {
        assert_lint_clean(answer);
        if let Some(error) = answer.get("error") {
            panic!("rendering failed: {error}");
        }
        let manifest = answer["manifest"].as_str().expect("manifest");
        let docs: Vec<Value> = serde_saphyr::from_multiple(manifest)
            .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}"));
        let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
        assert!(!docs.is_empty(), "nothing rendered");
        Self { docs }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} rendered; rendered: {:?}", self.inventory()))
    }

    /// (kind, namespace, name) of every rendered object.
    fn inventory(&self) -> BTreeSet<(String, String, String)> {
        self.docs
            .iter()
            .map(|d| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    s(&d["kind"]),
                    s(&d["metadata"]["namespace"]),
                    s(&d["metadata"]["name"]),
                )
            })
            .collect()
    }
}

fn assert_lint_clean(answer: &Value) {
    let lint = &answer["lint"];
    assert_eq!(lint["errors"], json!([]), "helm lint errors: {lint}");
    // Severity 1 is info ("icon is recommended"); 2 warning, 3 error.
    let findings: Vec<&Value> = lint["messages"]
        .as_array()
        .expect("lint messages")
        .iter()
        .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
        .collect();
    assert!(findings.is_empty(), "helm lint findings: {findings:?}");
    assert!(
        answer["helm"].as_str().is_some_and(|v| v.starts_with("v4.")),
        "expected Helm v4, got {}",
        answer["helm"]
    );
}

// === what the chart must contain ===

/// How the caBundle fields are expected to be filled.
enum Ca {
    /// This base64 value in every caBundle.
    Bundle(String),
    /// No caBundle; cert-manager's injector fills it from this `namespace/Certificate`.
    Injected(String),
}

/// The generated manifests (the source of truth, not the chart's copy), by path.
fn generated_files() -> BTreeMap<PathBuf, Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = BTreeMap::new();
    for dir in kafka_backup_operator::manifests::OUTPUT_DIRS {
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = fs::read_to_string(&path).unwrap();
                let value: Value =
                    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files.insert(path.strip_prefix(root).unwrap().to_path_buf(), value);
            }
        }
    }
    assert_eq!(
        files
            .values()
            .filter(|f| f["kind"] == "CustomResourceDefinition")
            .count(),
        5,
        "five generated CRDs"
    );
    files
}

/// The service references of an object: the CRD conversion webhook's clientConfig, each admission
/// webhook's clientConfig, the APIService's spec (service + caBundle).
fn client_configs_mut(obj: &mut Value) -> Vec<&mut Value> {
    match obj["kind"].as_str().unwrap_or_default() {
        "CustomResourceDefinition" => {
            vec![&mut obj["spec"]["conversion"]["webhook"]["clientConfig"]]
        }
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => obj["webhooks"]
            .as_array_mut()
            .expect("webhooks")
            .iter_mut()
            .map(|hook| &mut hook["clientConfig"])
            .collect(),
        "APIService" => vec![&mut obj["spec"]],
        _ => Vec::new(),
    }
}

/// What the chart must render for a generated object: the same object with the release's names,
/// service references, ServiceAccount subjects, caBundle or injection annotation, and (on CRDs) the
/// keep policy. Labels are checked separately.
fn expected_object(generated: &Value, release: Release, ca: &Ca) -> Value {
    let mut obj = generated.clone();
    let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
    if let Some(rest) = name.strip_prefix(GENERATED_SERVICE) {
        obj["metadata"]["name"] = json!(format!("{}{rest}", release.fullname));
    }
    let mut annotations = Map::new();
    if obj["kind"] == "CustomResourceDefinition" {
        annotations.insert("helm.sh/resource-policy".into(), json!("keep"));
    }
    let mut configs = client_configs_mut(&mut obj);
    let has_configs = !configs.is_empty();
    for config in &mut configs {
        let service = config["service"].as_object_mut().expect("service reference");
        assert_eq!(service["name"], GENERATED_SERVICE);
        service.insert("name".into(), json!(release.fullname));
        service.insert("namespace".into(), json!(release.namespace));
        let config = config.as_object_mut().unwrap();
        assert!(!config.contains_key("caBundle"), "generated without caBundle");
        if let Ca::Bundle(bundle) = ca {
            config.insert("caBundle".into(), json!(bundle));
        }
    }
    if let (true, Ca::Injected(from)) = (has_configs, ca) {
        annotations.insert("cert-manager.io/inject-ca-from".into(), json!(from));
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for subject in subjects {
            if subject["kind"] == "ServiceAccount" {
                subject["name"] = json!(release.fullname);
                subject["namespace"] = json!(release.namespace);
            }
        }
    }
    if !annotations.is_empty() {
        obj["metadata"]["annotations"] = Value::Object(annotations);
    }
    obj
}

/// Every generated CRD, webhook configuration, the APIService and its RBAC are rendered exactly as
/// [`expected_object`] says, with the generated labels plus Helm's; nothing else of those kinds is
/// rendered.
fn assert_generated_objects(rendered: &Rendered, release: Release, ca: &Ca) {
    let generated = generated_files();
    for (path, generated) in &generated {
        assert_no_unsafe_integers(generated, &path.display().to_string());
        let mut expected = expected_object(generated, release, ca);
        let kind = expected["kind"].as_str().unwrap().to_owned();
        let name = expected["metadata"]["name"].as_str().unwrap().to_owned();
        let mut actual = rendered.get(&kind, &name).clone();

        let actual_labels = actual["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels")
            .unwrap_or_else(|| panic!("{kind} {name} has no labels"));
        let generated_labels = expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels")
            .unwrap_or_default();
        for (key, value) in generated_labels.as_object().into_iter().flatten() {
            assert_eq!(&actual_labels[key], value, "{kind} {name}: generated label {key}");
        }
        assert_eq!(actual_labels["app.kubernetes.io/instance"], release.name);
        assert_eq!(actual_labels["app.kubernetes.io/managed-by"], "Helm");

        if let Some(difference) = first_difference(&actual, &expected, "") {
            panic!(
                "{kind} {name} rendered by the chart differs from {} (release {} in {}): {difference}",
                path.display(),
                release.name,
                release.namespace
            );
        }
    }
    for kind in [
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
    ] {
        let generated_count = generated.values().filter(|g| g["kind"] == kind).count();
        assert_eq!(rendered.all(kind).len(), generated_count, "{kind} objects");
    }
}

/// The chart passes the generated files through Helm's fromYaml/toYaml, where numbers are
/// float64: integers beyond 2^53 would silently change. None may be in the generated files.
fn assert_no_unsafe_integers(value: &Value, file: &str) {
    const LIMIT: u64 = 1 << 53;
    match value {
        Value::Number(n) => {
            let magnitude = n
                .as_u64()
                .or_else(|| n.as_i64().map(i64::unsigned_abs))
                .unwrap_or(0);
            assert!(
                magnitude <= LIMIT,
                "{file}: integer {n} cannot pass through Helm's toYaml"
            );
        }
        Value::Array(items) => items.iter().for_each(|v| assert_no_unsafe_integers(v, file)),
        Value::Object(map) => map.values().for_each(|v| assert_no_unsafe_integers(v, file)),
        _ => {}
    }
}

/// A JSON value for a message, long strings (certificates) cut short.
fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(100) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// The first path where two JSON values differ; numbers compare by value (YAML `1.0` and `1`
/// are the same number to the API server, and Helm's toYaml writes float64 1.0 as `1`).
fn first_difference(actual: &Value, expected: &Value, path: &str) -> Option<String> {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => {
            let same = a == b || a.as_f64().zip(b.as_f64()).is_some_and(|(a, b)| a == b);
            (!same).then(|| format!("{path}: rendered {a}, expected {b}"))
        }
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|key| match (a.get(key), b.get(key)) {
                (Some(x), Some(y)) => first_difference(x, y, &format!("{path}.{key}")),
                (Some(x), None) => Some(format!("{path}.{key}: rendered {}, expected nothing", short(x))),
                (None, Some(y)) => Some(format!("{path}.{key}: missing, expected {}", short(y))),
                (None, None) => None,
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        _ => (actual != expected)
            .then(|| format!("{path}: rendered {}, expected {}", short(actual), short(expected))),
    }
}

fn dns_names(release: Release) -> BTreeSet<String> {
    let (svc, ns) = (release.fullname, release.namespace);
    [
        svc.to_owned(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ]
    .into()
}

fn decoded(secret: &Value, key: &str) -> String {
    let data = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("Secret has no {key}"));
    String::from_utf8(BASE64.decode(data).unwrap()).unwrap()
}

/// A complete TLS handshake in memory: a rustls server with `cert_pem`/`key_pem`, a client that
/// trusts only `ca_pem` and asks for `server_name`. Proves the chain, the name, the validity period
/// and that the key belongs to the certificate.
fn handshake(ca_pem: &str, cert_pem: &str, key_pem: &str, server_name: &str) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("tls.key: {e}"))?;
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key: {e}"))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(|e| format!("CA: {e}"))?)
            .map_err(|e| format!("CA: {e}"))?;
    }
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let mut client = ClientConnection::new(Arc::new(client), name).map_err(|e| e.to_string())?;
    let mut server = ServerConnection::new(Arc::new(server)).map_err(|e| e.to_string())?;
    for _ in 0..10 {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut bytes).map_err(|e| e.to_string())?;
        }
        let mut reader = bytes.as_slice();
        while !reader.is_empty() {
            server.read_tls(&mut reader).map_err(|e| e.to_string())?;
        }
        server.process_new_packets().map_err(|e| format!("server: {e}"))?;
        bytes.clear();
        while server.wants_write() {
            server.write_tls(&mut bytes).map_err(|e| e.to_string())?;
        }
        let mut reader = bytes.as_slice();
        while !reader.is_empty() {
            client.read_tls(&mut reader).map_err(|e| e.to_string())?;
        }
        client.process_new_packets().map_err(|e| format!("client: {e}"))?;
    }
    Err("handshake did not finish".into())
}

/// The operator container of the Deployment and its `--flag=value` arguments.
fn operator_container(deployment: &Value) -> (&Value, BTreeMap<String, String>) {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let args = container["args"].as_array().expect("args");
    assert_eq!(args[0], "serve");
    let flags = args[1..]
        .iter()
        .map(|arg| {
            let (flag, value) = arg.as_str().unwrap().split_once('=').expect("--flag=value");
            (flag.to_owned(), value.to_owned())
        })
        .collect();
    (container, flags)
}

fn volume<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("volume {volume} not mounted"))["mountPath"]
        .as_str()
        .unwrap()
}

fn container_port(container: &Value, name: &str) -> i64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
        .as_i64()
        .unwrap()
}

// === tests ===

#[test]
fn self_signed_ca_bundle_verifies_the_serving_certificate() {
    let Some(helm) = helm() else { return };
    let rendered = helm.render(DEFAULT_RELEASE, &json!({}));
    let secret = rendered.get("Secret", "kafka-backup-operator-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], "kafka-backup");

    // Every caBundle carries the Secret's CA, and every generated object is otherwise as generated.
    let ca_bundle = secret["data"]["ca.crt"].as_str().unwrap().to_owned();
    assert_generated_objects(&rendered, DEFAULT_RELEASE, &Ca::Bundle(ca_bundle));

    let ca_pem = decoded(secret, "ca.crt");
    let cert_pem = decoded(secret, "tls.crt");
    let key_pem = decoded(secret, "tls.key");
    let ca = certs::inspect(
        &certs::first_certificate(ca_pem.as_bytes(), "ca.crt").unwrap(),
        "ca.crt",
    )
    .unwrap();
    let leaf = certs::inspect(
        &certs::first_certificate(cert_pem.as_bytes(), "tls.crt").unwrap(),
        "tls.crt",
    )
    .unwrap();
    assert!(ca.is_ca, "ca.crt is a CA");
    assert!(!leaf.is_ca, "tls.crt is not a CA");
    assert_eq!(
        leaf.dns_names.iter().cloned().collect::<BTreeSet<_>>(),
        dns_names(DEFAULT_RELEASE)
    );
    let in_9_years = chrono::Utc::now().timestamp() + 9 * 365 * 24 * 3600;
    assert!(
        leaf.not_after > in_9_years && ca.not_after > in_9_years,
        "valid for ~10 years (validityDays 3650)"
    );

    for name in dns_names(DEFAULT_RELEASE) {
        handshake(&ca_pem, &cert_pem, &key_pem, &name)
            .unwrap_or_else(|e| panic!("TLS to {name} with the chart's caBundle: {e}"));
    }
    // The checks can fail: a name the certificate does not cover, a CA that did not sign it.
    let wrong_name = handshake(&ca_pem, &cert_pem, &key_pem, "kafka-backup-operator.other.svc");
    assert!(wrong_name.is_err(), "a foreign name must not verify");
    let other = certs::generate(&["localhost".to_owned()], 1).unwrap();
    let wrong_ca = handshake(
        &other.ca_cert_pem,
        &cert_pem,
        &key_pem,
        "kafka-backup-operator.kafka-backup.svc",
    );
    assert!(wrong_ca.is_err(), "another CA must not verify");
}

#[test]
fn other_release_points_every_reference_at_its_own_service() {
    let Some(helm) = helm() else { return };
    let rendered = helm.render(OTHER_RELEASE, &json!({}));
    let secret = rendered.get("Secret", "kbo-kafka-backup-operator-tls");
    assert_eq!(secret["metadata"]["namespace"], "ops");
    let ca_bundle = secret["data"]["ca.crt"].as_str().unwrap().to_owned();
    assert_generated_objects(&rendered, OTHER_RELEASE, &Ca::Bundle(ca_bundle));

    let ca_pem = decoded(secret, "ca.crt");
    let cert_pem = decoded(secret, "tls.crt");
    let key_pem = decoded(secret, "tls.key");
    for name in dns_names(OTHER_RELEASE) {
        handshake(&ca_pem, &cert_pem, &key_pem, &name).unwrap_or_else(|e| panic!("TLS to {name}: {e}"));
    }
    // Nothing in the release still points at the generator's default namespace.
    for doc in &rendered.docs {
        let text = doc.to_string();
        assert!(
            !text.contains("\"namespace\":\"kafka-backup\""),
            "{} {} references namespace kafka-backup",
            doc["kind"],
            doc["metadata"]["name"]
        );
    }
}

#[test]
fn self_signed_certificate_is_kept_across_upgrades() {
    let Some(helm) = helm() else { return };
    let first = helm.render(OTHER_RELEASE, &json!({}));
    let secret = first.get("Secret", "kbo-kafka-backup-operator-tls").clone();

    // An upgrade finds the Secret (lookup) and keeps certificate, key and every caBundle.
    let upgraded = helm.render_upgrade(OTHER_RELEASE, &json!({}), std::slice::from_ref(&secret));
    let kept = upgraded.get("Secret", "kbo-kafka-backup-operator-tls");
    assert_eq!(kept["data"], secret["data"]);
    let ca_bundle = secret["data"]["ca.crt"].as_str().unwrap().to_owned();
    assert_generated_objects(&upgraded, OTHER_RELEASE, &Ca::Bundle(ca_bundle.clone()));

    // Without it (first install, or after deleting it to rotate) a new CA is made.
    let fresh = helm.render(OTHER_RELEASE, &json!({}));
    let fresh_ca = &fresh.get("Secret", "kbo-kafka-backup-operator-tls")["data"]["ca.crt"];
    assert_ne!(fresh_ca.as_str().unwrap(), ca_bundle);
    // A Secret lacking a key is not reused.
    let mut partial = secret.clone();
    partial["data"].as_object_mut().unwrap().remove("ca.crt");
    let regenerated = helm.render_upgrade(OTHER_RELEASE, &json!({}), &[partial]);
    let regenerated = regenerated.get("Secret", "kbo-kafka-backup-operator-tls");
    assert_ne!(regenerated["data"]["tls.crt"], secret["data"]["tls.crt"]);
    assert!(regenerated["data"]["ca.crt"].is_string());
}

#[test]
fn cert_manager_injects_the_ca_and_issues_the_certificate() {
    let Some(helm) = helm() else { return };
    let rendered = helm.render(OTHER_RELEASE, &json!({"tls": {"mode": "certManager"}}));
    assert_generated_objects(
        &rendered,
        OTHER_RELEASE,
        &Ca::Injected("ops/kbo-kafka-backup-operator-serving".into()),
    );
    assert!(
        rendered.all("Secret").is_empty(),
        "cert-manager writes the Secret"
    );

    let serving = rendered.get("Certificate", "kbo-kafka-backup-operator-serving");
    assert_eq!(serving["apiVersion"], "cert-manager.io/v1");
    assert_eq!(serving["metadata"]["namespace"], "ops");
    let dns: BTreeSet<String> = serde_json::from_value(serving["spec"]["dnsNames"].clone()).unwrap();
    assert_eq!(dns, dns_names(OTHER_RELEASE));
    assert_eq!(serving["spec"]["secretName"], "kbo-kafka-backup-operator-tls");
    assert_eq!(
        serving["spec"]["usages"],
        json!(["server auth", "digital signature"])
    );
    // The chart's own CA chain: self-signed Issuer -> CA Certificate -> CA Issuer -> serving.
    assert_eq!(
        serving["spec"]["issuerRef"],
        json!({"name": "kbo-kafka-backup-operator-ca", "kind": "Issuer", "group": "cert-manager.io"})
    );
    let ca_issuer = rendered.get("Issuer", "kbo-kafka-backup-operator-ca");
    let ca_cert = rendered.get("Certificate", "kbo-kafka-backup-operator-ca");
    let self_signed = rendered.get("Issuer", "kbo-kafka-backup-operator-selfsigned");
    assert_eq!(self_signed["spec"], json!({"selfSigned": {}}));
    assert_eq!(ca_cert["spec"]["isCA"], true);
    assert_eq!(
        ca_cert["spec"]["issuerRef"]["name"],
        "kbo-kafka-backup-operator-selfsigned"
    );
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca_cert["spec"]["secretName"]
    );

    // The pods mount the Secret cert-manager writes.
    let deployment = rendered.get("Deployment", "kbo-kafka-backup-operator");
    assert_eq!(
        volume(deployment, "tls")["secret"]["secretName"],
        "kbo-kafka-backup-operator-tls"
    );

    // With an issuer of one's own, the chart makes only the serving Certificate.
    let rendered = helm.render(
        OTHER_RELEASE,
        &json!({"tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}),
    );
    assert!(rendered.all("Issuer").is_empty());
    assert_eq!(rendered.all("Certificate").len(), 1);
    assert_eq!(
        rendered.get("Certificate", "kbo-kafka-backup-operator-serving")["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
}

#[test]
fn existing_secret_is_mounted_and_its_ca_is_the_bundle() {
    let Some(helm) = helm() else { return };
    let pki = certs::generate(&dns_names(OTHER_RELEASE).into_iter().collect::<Vec<_>>(), 30).unwrap();
    let values =
        json!({"tls": {"mode": "existingSecret", "existingSecret": "corp-tls", "caBundle": pki.ca_cert_pem}});
    let rendered = helm.render(OTHER_RELEASE, &values);
    assert_generated_objects(
        &rendered,
        OTHER_RELEASE,
        &Ca::Bundle(BASE64.encode(pki.ca_cert_pem.as_bytes())),
    );
    assert!(rendered.all("Secret").is_empty(), "the chart makes no Secret");
    assert!(rendered.all("Certificate").is_empty());
    let deployment = rendered.get("Deployment", "kbo-kafka-backup-operator");
    assert_eq!(volume(deployment, "tls")["secret"]["secretName"], "corp-tls");

    // Without the CA (or the Secret), lint and install refuse, naming the value.
    for (tls, missing) in [
        (
            json!({"mode": "existingSecret", "existingSecret": "corp-tls"}),
            "/tls/caBundle",
        ),
        (
            json!({"mode": "existingSecret", "caBundle": pki.ca_cert_pem}),
            "/tls/existingSecret",
        ),
        (
            json!({"mode": "existingSecret", "existingSecret": "corp-tls", "caBundle": BASE64.encode(&pki.ca_cert_pem)}),
            "/tls/caBundle",
        ),
    ] {
        let answer = helm.run(OTHER_RELEASE, &json!({"tls": tls}), None);
        let lint_errors = answer["lint"]["errors"].to_string();
        assert!(lint_errors.contains(missing), "lint: {lint_errors}");
        let error = answer["error"].as_str().expect("install refused");
        assert!(error.contains(missing), "{error}");
    }
}

#[test]
fn unknown_tls_mode_and_misspelled_values_are_refused() {
    let Some(helm) = helm() else { return };
    for (values, message) in [
        (json!({"tls": {"mode": "letsEncrypt"}}), "/tls/mode"),
        (
            json!({"replicas": 3}),
            "additional properties 'replicas' not allowed",
        ),
    ] {
        let answer = helm.run(DEFAULT_RELEASE, &values, None);
        assert!(answer["lint"]["errors"].to_string().contains(message), "{answer}");
        assert!(
            answer["error"].as_str().unwrap_or_default().contains(message),
            "{answer}"
        );
    }
}

#[test]
fn default_install_renders_exactly_these_objects() {
    let Some(helm) = helm() else { return };
    let rendered = helm.render(DEFAULT_RELEASE, &json!({}));
    let own = |kind: &str, ns: &str, name: &str| (kind.to_owned(), ns.to_owned(), name.to_owned());
    let mut expected: BTreeSet<_> = [
        own("ServiceAccount", "kafka-backup", "kafka-backup-operator"),
        own("Secret", "kafka-backup", "kafka-backup-operator-tls"),
        own("Service", "kafka-backup", "kafka-backup-operator"),
        own("Deployment", "kafka-backup", "kafka-backup-operator"),
        own("ClusterRole", "", "kafka-backup-operator"),
        own("ClusterRoleBinding", "", "kafka-backup-operator"),
        own("Role", "kafka-backup", "kafka-backup-operator-leader-election"),
        own(
            "RoleBinding",
            "kafka-backup",
            "kafka-backup-operator-leader-election",
        ),
        own("ValidatingWebhookConfiguration", "", "kafka-backup-operator"),
        own("MutatingWebhookConfiguration", "", "kafka-backup-operator"),
        own("APIService", "", "v1alpha1.catalog.kafka.oso.sh"),
        own(
            "ClusterRoleBinding",
            "",
            "kafka-backup-operator:system:auth-delegator",
        ),
        own("RoleBinding", "kube-system", "kafka-backup-operator:auth-reader"),
        own("ClusterRole", "", "kafka-backup-operator:catalog-reader"),
        own("ClusterRole", "", "kafka-backup-operator:catalog-editor"),
        own("ClusterRole", "", "kafka-backup-operator:viewer"),
        own("ClusterRole", "", "kafka-backup-operator:editor"),
        own("ClusterRole", "", "kafka-backup-operator:approver"),
    ]
    .into();
    for kind in [
        "kafkabackups",
        "kafkarestores",
        "kafkaoffsetresets",
        "kafkaoffsetrollbacks",
        "kafkabackupvalidations",
    ] {
        expected.insert(own(
            "CustomResourceDefinition",
            "",
            &format!("{kind}.kafka.oso.sh"),
        ));
    }
    assert_eq!(rendered.inventory(), expected);
    // Optional objects stay out by default.
    assert!(rendered.all("ServiceMonitor").is_empty());
    assert!(rendered.all("PodDisruptionBudget").is_empty());
}

#[test]
fn deployment_is_hardened_and_probed_on_the_admin_port() {
    let Some(helm) = helm() else { return };
    let rendered = helm.render(DEFAULT_RELEASE, &json!({}));
    let deployment = rendered.get("Deployment", "kafka-backup-operator");
    assert_eq!(
        deployment["spec"]["replicas"], 2,
        "every replica serves the webhooks"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "kafka-backup-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_i64().unwrap() > 0);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "kafka-backup-operator", "app.kubernetes.io/instance": "kafka-backup-operator"})
    );

    let (container, flags) = operator_container(deployment);
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(security["capabilities"].get("add").is_none());
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());

    // The server listens where the ports say; the probes hit the plain-HTTP admin port.
    let admin = container_port(container, "admin");
    let https = container_port(container, "https");
    assert_eq!(flags["--admin-listen"], format!("0.0.0.0:{admin}"));
    assert_eq!(flags["--listen"], format!("0.0.0.0:{https}"));
    assert_eq!((admin, https), (8080, 8443));
    for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
        assert_eq!(container[probe]["httpGet"]["path"], path);
        assert_eq!(container[probe]["httpGet"]["port"], "admin");
        assert!(
            container[probe]["httpGet"]
                .get("scheme")
                .is_none_or(|s| s == "HTTP")
        );
    }

    // TLS files come from the mounted Secret; the state directory is the one writable emptyDir.
    let tls_dir = mount_path(container, "tls");
    assert_eq!(flags["--tls-cert"], format!("{tls_dir}/tls.crt"));
    assert_eq!(flags["--tls-key"], format!("{tls_dir}/tls.key"));
    assert_eq!(
        volume(deployment, "tls")["secret"]["secretName"],
        "kafka-backup-operator-tls"
    );
    rendered.get("Secret", "kafka-backup-operator-tls");
    assert_eq!(mount_path(container, "state"), flags["--state-dir"]);
    assert!(volume(deployment, "state")["emptyDir"].is_object());
    let mounts: BTreeSet<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(mounts, BTreeSet::from(["tls", "state"]));
    assert_eq!(
        container["volumeMounts"][0]["readOnly"], true,
        "the TLS Secret is mounted read-only"
    );

    // The Service: 443 (what every generated clientConfig references) -> https, and metrics.
    let service = rendered.get("Service", "kafka-backup-operator");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let ports = service["spec"]["ports"].as_array().unwrap();
    let port = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} port"))
    };
    let webhook = rendered.get("ValidatingWebhookConfiguration", "kafka-backup-operator");
    assert_eq!(
        port("https")["port"],
        webhook["webhooks"][0]["clientConfig"]["service"]["port"]
    );
    assert_eq!(port("https")["port"], 443);
    assert_eq!(port("https")["targetPort"], "https");
    assert_eq!(port("metrics")["port"], 8080);
    assert_eq!(port("metrics")["targetPort"], "admin");
}

#[test]
fn rbac_grants_only_what_the_operator_uses() {
    let Some(helm) = helm() else { return };
    let rendered = helm.render(OTHER_RELEASE, &json!({}));
    let role = rendered.get("ClusterRole", "kbo-kafka-backup-operator");
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                let verbs: Vec<&str> = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert!(!verbs.contains(&"*"), "no wildcard verbs");
                grants.insert((
                    group.as_str().unwrap().to_owned(),
                    resource.as_str().unwrap().to_owned(),
                    verbs.join(","),
                ));
            }
        }
    }
    let grant = |g: &str, r: &str, v: &str| (g.to_owned(), r.to_owned(), v.to_owned());
    let mut expected = BTreeSet::new();
    for kind in [
        "kafkabackups",
        "kafkarestores",
        "kafkaoffsetresets",
        "kafkaoffsetrollbacks",
        "kafkabackupvalidations",
    ] {
        expected.insert(grant("kafka.oso.sh", kind, "get,list,watch,patch,update"));
        expected.insert(grant("kafka.oso.sh", &format!("{kind}/status"), "patch,update"));
        expected.insert(grant("kafka.oso.sh", &format!("{kind}/finalizers"), "update"));
    }
    expected.insert(grant("", "secrets", "get,list,watch"));
    expected.insert(grant(
        "",
        "configmaps",
        "get,list,watch,create,update,patch,delete",
    ));
    expected.insert(grant("events.k8s.io", "events", "create,patch"));
    expected.insert(grant("", "events", "create,patch"));
    expected.insert(grant("authorization.k8s.io", "subjectaccessreviews", "create"));
    expected.insert(grant("", "namespaces", "get"));
    assert_eq!(grants, expected);

    let binding = rendered.get("ClusterRoleBinding", "kbo-kafka-backup-operator");
    assert_eq!(binding["roleRef"]["name"], "kbo-kafka-backup-operator");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "kbo-kafka-backup-operator", "namespace": "ops"}])
    );
    rendered.get("ServiceAccount", "kbo-kafka-backup-operator");

    // The leader-election Lease: only in the release namespace.
    let lease_role = rendered.get("Role", "kbo-kafka-backup-operator-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "ops");
    assert_eq!(
        lease_role["rules"],
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}])
    );
    let lease_binding = rendered.get("RoleBinding", "kbo-kafka-backup-operator-leader-election");
    assert_eq!(lease_binding["metadata"]["namespace"], "ops");
    assert_eq!(
        lease_binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kbo-kafka-backup-operator-leader-election"})
    );
    assert_eq!(lease_binding["subjects"], binding["subjects"]);
}

#[test]
fn service_monitor_and_pod_disruption_budget_only_when_enabled() {
    let Some(helm) = helm() else { return };
    let off = helm.render(OTHER_RELEASE, &json!({}));
    assert!(off.all("ServiceMonitor").is_empty());
    assert!(off.all("PodDisruptionBudget").is_empty());

    let on = helm.render(
        OTHER_RELEASE,
        &json!({
            "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}},
            "podDisruptionBudget": {"enabled": true},
        }),
    );
    let service = on.get("Service", "kbo-kafka-backup-operator");
    let monitor = on.get("ServiceMonitor", "kbo-kafka-backup-operator");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], json!(["ops"]));
    // It selects the Service and scrapes the Service's metrics port.
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][key], value);
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "metrics")
    );

    let pdb = on.get("PodDisruptionBudget", "kbo-kafka-backup-operator");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    let deployment = on.get("Deployment", "kbo-kafka-backup-operator");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    let max = helm.render(
        OTHER_RELEASE,
        &json!({"podDisruptionBudget": {"enabled": true, "maxUnavailable": 1}}),
    );
    let pdb = max.get("PodDisruptionBudget", "kbo-kafka-backup-operator");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert!(pdb["spec"].get("minAvailable").is_none());
}

#[test]
fn view_edit_and_admin_reach_the_five_kinds_with_rbac_create() {
    let Some(helm) = helm() else { return };
    // The kinds' roles belong to RBAC, not to the CRDs: still there when the CRDs are installed
    // elsewhere, gone with rbac.create=false.
    let rendered = helm.render(OTHER_RELEASE, &json!({"crds": {"install": false}}));
    let viewer = rendered.get("ClusterRole", "kbo-kafka-backup-operator:viewer");
    let editor = rendered.get("ClusterRole", "kbo-kafka-backup-operator:editor");
    let labels = |role: &Value| -> BTreeSet<String> {
        role["metadata"]["labels"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, v)| *v == "true")
            .filter_map(|(k, _)| {
                k.strip_prefix("rbac.authorization.k8s.io/aggregate-to-")
                    .map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(labels(viewer), ["admin", "edit", "view"].map(String::from).into());
    assert_eq!(labels(editor), ["admin", "edit"].map(String::from).into());
    for role in [viewer, editor] {
        assert_eq!(role["rules"][0]["apiGroups"], json!(["kafka.oso.sh"]));
        assert!(
            !role["rules"].to_string().contains("secrets"),
            "{}",
            role["rules"]
        );
    }
    assert_eq!(viewer["rules"][0]["verbs"], json!(["get", "list", "watch"]));
    assert_eq!(
        editor["rules"][0]["verbs"],
        json!(["create", "update", "patch", "delete", "deletecollection"])
    );

    let rendered = helm.render(OTHER_RELEASE, &json!({"rbac": {"create": false}}));
    assert!(
        rendered.all("ClusterRole").is_empty(),
        "{:?}",
        rendered.inventory()
    );
}

/// Helm deletes what a release no longer renders (upgrade, rollback) and everything on uninstall,
/// except objects annotated `helm.sh/resource-policy: keep`. Every CRD carries it whatever the
/// values (deleting a CRD deletes all its custom resources); the chart makes no PVC or other
/// storage that uninstall could take with it, and no hooks (which Helm deletes and recreates
/// outside the release).
#[test]
fn upgrade_and_uninstall_never_delete_crds_or_stored_data() {
    let Some(helm) = helm() else { return };
    let every_option = json!({
        "metrics": {"serviceMonitor": {"enabled": true}},
        "podDisruptionBudget": {"enabled": true},
    });
    for (release, values) in [
        (DEFAULT_RELEASE, json!({})),
        (OTHER_RELEASE, every_option),
        (OTHER_RELEASE, json!({"tls": {"mode": "certManager"}})),
    ] {
        let rendered = helm.render(release, &values);
        let crds = rendered.all("CustomResourceDefinition");
        assert_eq!(crds.len(), 5);
        for crd in crds {
            assert_eq!(
                crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
                "{}",
                crd["metadata"]["name"]
            );
        }
        for doc in &rendered.docs {
            let kind = doc["kind"].as_str().unwrap();
            assert!(
                ![
                    "PersistentVolumeClaim",
                    "PersistentVolume",
                    "ConfigMap",
                    "StatefulSet"
                ]
                .contains(&kind),
                "the chart must not own storage: {kind} {}",
                doc["metadata"]["name"]
            );
            let annotations = doc["metadata"]["annotations"].as_object();
            assert!(
                annotations.is_none_or(|a| !a.keys().any(|k| k.starts_with("helm.sh/hook"))),
                "{kind} {} is a hook",
                doc["metadata"]["name"]
            );
        }
    }

    // Leaving the CRDs out (e.g. managed elsewhere): nothing rendered, so an upgrade to this does
    // not delete them either (keep). The keep policy cannot be switched off.
    let rendered = helm.render(OTHER_RELEASE, &json!({"crds": {"install": false}}));
    assert!(rendered.all("CustomResourceDefinition").is_empty());
    let answer = helm.run(OTHER_RELEASE, &json!({"crds": {"keep": false}}), None);
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("additional properties 'keep' not allowed")),
        "{answer}"
    );
}

/// The rendered Deployment runs the built image as its configuration says (podman image inspect
/// of `KBO_TEST_IMAGE`): the image the chart names by default is the one the build tags, the
/// pod's user and group are the image's user, the image's entrypoint runs (no `command`) with its
/// default subcommand, the ports are the ones it exposes and the probes hit the admin one, and the
/// state directory is the image's `KBO_STATE_DIR`, an emptyDir.
#[test]
fn deployment_runs_the_image_as_its_configuration_says() {
    let Some(helm) = helm() else { return };
    let Some(image) = support::image::image() else {
        return;
    };
    let config = image.config();
    let rendered = helm.render(DEFAULT_RELEASE, &json!({}));
    let deployment = rendered.get("Deployment", "kafka-backup-operator");
    let (container, flags) = operator_container(deployment);

    let version = config["Labels"]["org.opencontainers.image.version"]
        .as_str()
        .unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let chart: Value =
        serde_saphyr::from_str(&fs::read_to_string(format!("{CHART}/Chart.yaml")).unwrap()).unwrap();
    assert_eq!(
        chart["appVersion"], version,
        "chart appVersion = crate version = image version"
    );
    assert_eq!(container["image"], format!("kafka-backup-operator:{version}"));
    assert_eq!(
        image.name,
        format!("kafka-backup-operator:{version}"),
        "the build tags the image the chart names"
    );
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let pinned = helm.render(
        DEFAULT_RELEASE,
        &json!({"image": {"repository": "registry.example/kbo", "digest": digest}}),
    );
    let (pinned, _) = operator_container(pinned.get("Deployment", "kafka-backup-operator"));
    assert_eq!(pinned["image"], format!("registry.example/kbo@{digest}"));

    let (uid, gid) = config["User"]
        .as_str()
        .unwrap()
        .split_once(':')
        .expect("user uid:gid");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"].to_string(), uid);
    assert_eq!(pod["securityContext"]["runAsGroup"].to_string(), gid);
    assert_eq!(pod["securityContext"]["fsGroup"].to_string(), gid);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);

    assert!(container.get("command").is_none(), "the image's entrypoint runs");
    assert_eq!(container["args"][0], config["Cmd"][0]);
    let exposed = config["ExposedPorts"].as_object().unwrap();
    for name in ["https", "admin"] {
        let port = container_port(container, name);
        assert!(
            exposed.contains_key(&format!("{port}/tcp")),
            "{name} port {port} not exposed: {exposed:?}"
        );
    }
    let admin = container_port(container, "admin");
    assert!(flags["--admin-listen"].ends_with(&format!(":{admin}")));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["port"], "admin");
    }
    let state_dir = image.env("KBO_STATE_DIR").expect("KBO_STATE_DIR in the image");
    assert_eq!(flags["--state-dir"], state_dir);
    assert_eq!(mount_path(container, "state"), state_dir);
    assert!(volume(deployment, "state")["emptyDir"].is_object());
}
