//! The aggregated catalog API end to end: the real `serve` binary with a serving certificate, a
//! client CA, a front-proxy (requestheader) CA and a static authorization policy; real `kubectl`
//! pointed directly at it through kubeconfigs with client certificates; snapshots and backup
//! manifests written in the storage formats into local directories (a PVC location and the default
//! location) and, when the services run, SeaweedFS (S3); the diff subresource against the Kafka
//! broker.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use kafka_backup_operator::{
    api::v1beta1::StorageSpec,
    apiserver::backupsets::{BackupSetSummary, manifest_key, summary_from_manifest},
    secrets::SecretStore,
    storage::{
        Location, StorageEnv,
        snapshot::{OffsetSnapshot, snapshot_key},
    },
};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use support::https::{Server, cert_args, loopback_pki, write_pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    },
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apiserver");
const BASE: &str = "/apis/catalog.kafka.oso.sh/v1alpha1";

// === certificates ===

struct Ca {
    pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { pem, params, key }
    }

    /// (certificate PEM, key PEM) for `cn` in groups `orgs`.
    fn client(&self, cn: &str, orgs: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::new(self.params.clone(), &self.key);
        (
            params.signed_by(&key, &issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }
}

// === the server ===

struct Fixture {
    dir: tempfile::TempDir,
    server: Server,
    serving_ca: PathBuf,
    client_ca: Ca,
    proxy_ca: Ca,
    pvc_root: PathBuf,
    default_dir: PathBuf,
}

fn location_in(dir: &Path) -> Location {
    kafka_backup_operator::storage::ObjectLocation::directory(dir, format!("file://{}", dir.display()))
        .unwrap()
        .into()
}

/// The team-a PVC location (`pvc://team-a-claim/catalog`) as the tests write to it.
fn pvc_spec() -> StorageSpec {
    serde_json::from_value(json!({"type": "PVC", "pvc": {"claimName": "team-a-claim", "subPath": "catalog"}}))
        .unwrap()
}

async fn write_snapshot(
    location: &Location,
    fixture: &str,
    rename: Option<(&str, Option<&str>)>,
) -> OffsetSnapshot {
    let text = fs::read_to_string(format!("{FIXTURES}/snapshots/{fixture}.json")).unwrap();
    let mut snapshot: OffsetSnapshot = serde_json::from_str(&text).unwrap();
    if let Some((id, namespace)) = rename {
        snapshot.snapshot_id = id.to_owned();
        match namespace {
            Some(ns) => snapshot.source.as_mut().unwrap().namespace = Some(ns.to_owned()),
            None => snapshot.source = None,
        }
    }
    location
        .put_new(&snapshot_key(&snapshot.snapshot_id), snapshot.to_bytes())
        .await
        .unwrap();
    snapshot
}

async fn write_manifest(location: &Location, fixture: &str) -> BackupSetSummary {
    let text = fs::read_to_string(format!("{FIXTURES}/backups/{fixture}.json")).unwrap();
    let uri = location.uri(&manifest_key(fixture));
    let summary = summary_from_manifest(fixture, text.as_bytes(), &uri, "").unwrap();
    location
        .put_new(&manifest_key(&summary.backup_id), text.into_bytes().into())
        .await
        .unwrap();
    summary
}

impl Fixture {
    /// Starts `serve` with the team-a PVC location and the default location filled from the
    /// fixtures; `extra_config` is appended to the catalog configuration.
    async fn start(extra_config: &str) -> Self {
        Self::start_refreshing(extra_config, "0.2").await
    }

    /// [`Fixture::start`] with `--catalog-refresh-interval` `interval` (seconds).
    async fn start_refreshing(extra_config: &str, interval: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = loopback_pki();
        write_pair(dir.path(), &pki);
        let serving_ca = dir.path().join("serving-ca.crt");
        fs::write(&serving_ca, &pki.ca_cert_pem).unwrap();
        let client_ca = Ca::new("test client CA");
        let proxy_ca = Ca::new("test front-proxy CA");
        fs::write(dir.path().join("client-ca.crt"), &client_ca.pem).unwrap();
        fs::write(dir.path().join("proxy-ca.crt"), &proxy_ca.pem).unwrap();

        let pvc_root = dir.path().join("pvc");
        let default_dir = dir.path().join("default-location");
        let team_a = Location::open(
            &pvc_spec(),
            &SecretStore::None,
            &StorageEnv {
                pvc_root: pvc_root.clone(),
                config_maps: Default::default(),
            },
        )
        .unwrap();
        write_snapshot(&team_a, "pre-migration-20241201", None).await;
        write_snapshot(&team_a, "reset-before-replay", None).await;
        write_manifest(&team_a, "orders-2024-12-01").await;
        let default = location_in(&default_dir);
        write_snapshot(
            &default,
            "reset-before-replay",
            Some(("team-b-snapshot", Some("team-b"))),
        )
        .await;
        write_snapshot(&default, "reset-before-replay", Some(("orphan", None))).await;
        write_manifest(&default, "orders-continuous").await;

        let config = dir.path().join("catalog.yaml");
        fs::write(
            &config,
            format!(
                "namespaces:\n  team-a:\n    - storage: {{type: PVC, pvc: {{claimName: team-a-claim, subPath: catalog}}}}\n{extra_config}"
            ),
        )
        .unwrap();
        let mut args = cert_args(dir.path());
        let path_arg = |flag: &str, path: PathBuf| [OsString::from(flag), path.into_os_string()];
        args.extend(path_arg("--state-dir", dir.path().join("state")));
        args.extend(path_arg("--catalog-config", config));
        args.extend(path_arg("--catalog-dir", default_dir.clone()));
        args.extend(path_arg("--pvc-root", pvc_root.clone()));
        args.extend(path_arg("--client-ca-file", dir.path().join("client-ca.crt")));
        args.extend(path_arg(
            "--requestheader-client-ca-file",
            dir.path().join("proxy-ca.crt"),
        ));
        args.extend(path_arg(
            "--authorization-policy",
            format!("{FIXTURES}/policy.yaml").into(),
        ));
        for arg in [
            "--requestheader-allowed-names",
            "front-proxy-client",
            "--kubernetes",
            "off",
            "--catalog-refresh-interval",
            interval,
        ] {
            args.push(arg.into());
        }
        let server = Server::start(dir.path(), &args).await;
        let fixture = Fixture {
            dir,
            server,
            serving_ca,
            client_ca,
            proxy_ca,
            pvc_root,
            default_dir,
        };
        // The first refresh has listed both locations.
        fixture
            .eventually("the catalog lists the fixtures", |fx| {
                let out = fx.kubectl(
                    &fx.user("root", &["system:masters"]),
                    &["get", "osnap", "-A", "-o", "name"],
                );
                out.ok && out.stdout.lines().count() >= 4
            })
            .await;
        fixture
    }

    /// The team-a PVC location, as a writer of its storage opens it.
    fn team_a_location(&self) -> Location {
        Location::open(
            &pvc_spec(),
            &SecretStore::None,
            &StorageEnv {
                pvc_root: self.pvc_root.clone(),
                config_maps: Default::default(),
            },
        )
        .unwrap()
    }

    /// A kubeconfig for a client-CA user `cn` in `groups`.
    fn user(&self, cn: &str, groups: &[&str]) -> PathBuf {
        let (cert, key) = self.client_ca.client(cn, groups);
        self.kubeconfig(cn, Some((&cert, &key)))
    }

    /// A kubeconfig with the given client certificate (or none).
    fn kubeconfig(&self, name: &str, identity: Option<(&str, &str)>) -> PathBuf {
        let base = self.dir.path().join(format!("kubeconfig-{name}"));
        // Without a certificate kubectl would prompt for a password; a bearer token (which this
        // server does not accept) makes it send the request without a certificate instead.
        let mut user = String::from("{token: not-a-certificate}");
        if let Some((cert, key)) = identity {
            fs::write(base.with_extension("crt"), cert).unwrap();
            fs::write(base.with_extension("key"), key).unwrap();
            user = format!(
                "{{client-certificate: {:?}, client-key: {:?}}}",
                base.with_extension("crt").display().to_string(),
                base.with_extension("key").display().to_string()
            );
        }
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kbo\n  cluster: {{server: \"https://localhost:{}\", certificate-authority: {:?}}}\nusers:\n- name: {name}\n  user: {user}\ncontexts:\n- name: kbo\n  context: {{cluster: kbo, user: {name}, namespace: team-a}}\ncurrent-context: kbo\n",
            self.server.https.port(),
            self.serving_ca.display().to_string(),
        );
        fs::write(&base, config).unwrap();
        base
    }

    /// Runs kubectl with `kubeconfig`.
    fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Kubectl {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .arg("--request-timeout=20s")
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl runs");
        Kubectl {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    async fn eventually(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}:\n{}",
                self.server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One HTTPS request with `headers` and an optional client certificate; (status, content type,
    /// body).
    async fn raw(
        &self,
        identity: Option<(&str, &str)>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        self.raw_with_body(identity, method, path, headers, "").await
    }

    /// [`Fixture::raw`] with a JSON request body.
    async fn raw_with_body(
        &self,
        identity: Option<(&str, &str)>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String, String) {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(fs::read(&self.serving_ca).unwrap().as_slice()).unwrap())
            .unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let tcp = tokio::net::TcpStream::connect(self.server.https).await.unwrap();
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut raw))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(name, _)| name.eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        (status, content_type, body.to_owned())
    }
}

struct Kubectl {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn success(self) -> String {
        assert!(self.ok, "kubectl failed:\n{}\n{}", self.stdout, self.stderr);
        self.stdout
    }

    fn failure(self) -> String {
        assert!(!self.ok, "kubectl succeeded:\n{}", self.stdout);
        self.stderr
    }

    fn json(self) -> Value {
        serde_json::from_str(&self.success()).unwrap()
    }
}

/// The words of each line of a printed table.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

// === tests ===

#[tokio::test]
async fn kubectl_gets_lists_and_deletes_offset_snapshots() {
    let fx = Fixture::start("").await;
    let ops = fx.user("carol", &["ops"]);

    // The table: Name first, the columns of the design, one row per snapshot of the namespace.
    let table = rows(
        &fx.kubectl(&ops, &["get", "offsetsnapshots", "-n", "team-a"])
            .success(),
    );
    assert_eq!(
        table[0],
        ["NAME", "GROUPS", "PARTITIONS", "CLUSTER", "SOURCE", "AGE"]
    );
    assert_eq!(table.len(), 3, "{table:?}");
    assert_eq!(
        table[1][..5],
        [
            "pre-migration-20241201",
            "2",
            "4",
            "kafka:9092",
            "KafkaOffsetRollback/pre-migration"
        ]
    );
    assert_eq!(table[2][0], "reset-before-replay");
    assert_eq!(table[2][4], "KafkaOffsetReset/replay-invoices");

    // -o yaml of one snapshot: every group, topic, partition, offset, metadata and timestamp.
    let yaml = fx
        .kubectl(&ops, &["get", "osnap", "pre-migration-20241201", "-o", "yaml"])
        .success();
    for needle in [
        "kind: OffsetSnapshot",
        "apiVersion: catalog.kafka.oso.sh/v1alpha1",
        "order-processor:",
        "payment-handler:",
        "offset: 2000",
        "metadata: checkpoint-7",
        "timestamp: 1701432000000",
        "creationTimestamp: \"2024-12-01T12:00:00Z\"",
        "catalog.kafka.oso.sh/location: pvc://team-a-claim/catalog/offset-snapshots/pre-migration-20241201.json",
    ] {
        assert!(yaml.contains(needle), "{needle} missing in:\n{yaml}");
    }
    let full = fx
        .kubectl(&ops, &["get", "osnap", "pre-migration-20241201", "-o", "json"])
        .json();
    assert_eq!(
        full["groups"]["order-processor"]["topics"]["orders"]["1"]["offset"],
        2000
    );

    // Lists are cheap: the summary, no offsets.
    let list = fx.kubectl(&ops, &["get", "osnap", "-o", "json"]).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["items"][0].get("groups").is_none(), "{}", list["items"][0]);
    assert_eq!(list["items"][0]["summary"]["partitions"], 4);
    assert_eq!(
        list["items"][0]["summary"]["groupNames"],
        json!(["order-processor", "payment-handler"])
    );

    // Across namespaces: the default location's objects are listed in their writer's namespace,
    // or in `default`.
    let all = rows(&fx.kubectl(&ops, &["get", "osnap", "-A"]).success());
    let names: Vec<(&str, &str)> = all[1..].iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    assert_eq!(
        names,
        [
            ("default", "orphan"),
            ("team-a", "pre-migration-20241201"),
            ("team-a", "reset-before-replay"),
            ("team-b", "team-b-snapshot")
        ]
    );

    // Label and field selectors, and paging (kubectl follows `continue`).
    let by_label = fx
        .kubectl(
            &ops,
            &[
                "get",
                "osnap",
                "-A",
                "-l",
                "catalog.kafka.oso.sh/source-kind=KafkaOffsetReset",
                "-o",
                "name",
            ],
        )
        .success();
    assert_eq!(
        by_label.lines().collect::<Vec<_>>(),
        [
            "offsetsnapshot.catalog.kafka.oso.sh/reset-before-replay",
            "offsetsnapshot.catalog.kafka.oso.sh/team-b-snapshot"
        ]
    );
    let by_field = fx
        .kubectl(
            &ops,
            &[
                "get",
                "osnap",
                "-A",
                "--field-selector",
                "metadata.namespace=team-b",
                "-o",
                "name",
            ],
        )
        .success();
    assert_eq!(
        by_field.trim(),
        "offsetsnapshot.catalog.kafka.oso.sh/team-b-snapshot"
    );
    let not_name = fx
        .kubectl(
            &ops,
            &[
                "get",
                "osnap",
                "--field-selector",
                "metadata.name!=reset-before-replay",
                "-o",
                "name",
            ],
        )
        .success();
    assert_eq!(
        not_name.trim(),
        "offsetsnapshot.catalog.kafka.oso.sh/pre-migration-20241201"
    );
    let paged = rows(
        &fx.kubectl(&ops, &["get", "osnap", "-A", "--chunk-size=1"])
            .success(),
    );
    assert_eq!(paged.len(), 5, "{paged:?}");

    // Unknown field and bad selector: 400 with the reason.
    let err = fx
        .kubectl(&ops, &["get", "osnap", "--field-selector", "spec.x=1"])
        .failure();
    assert!(
        err.contains("BadRequest") || err.contains("field label not supported: spec.x"),
        "{err}"
    );
    // Not found: 404 Status, as kubectl prints it. (In namespace `default`: for other namespaces
    // kubectl then checks whether the namespace exists, which only kube-apiserver can tell.)
    let err = fx
        .kubectl(&ops, &["get", "osnap", "nope", "-n", "default"])
        .failure();
    assert!(
        err.contains(
            r#"Error from server (NotFound): offsetsnapshots.catalog.kafka.oso.sh "nope" not found"#
        ),
        "{err}"
    );

    // Delete: the stored document goes, and so does the object.
    let stored = fx
        .pvc_root
        .join("team-a-claim/catalog/offset-snapshots/reset-before-replay.json");
    assert!(stored.is_file());
    let out = fx
        .kubectl(
            &ops,
            &["delete", "osnap", "reset-before-replay", "--dry-run=server"],
        )
        .success();
    assert!(out.contains("deleted (server dry run)"), "{out}");
    assert!(stored.is_file(), "a dry run deletes nothing");
    let out = fx
        .kubectl(&ops, &["delete", "offsetsnapshot", "reset-before-replay"])
        .success();
    assert!(
        out.contains(r#"offsetsnapshot.catalog.kafka.oso.sh "reset-before-replay" deleted"#),
        "{out}"
    );
    assert!(!stored.exists(), "the stored snapshot is deleted");
    let names = fx.kubectl(&ops, &["get", "osnap", "-o", "name"]).success();
    assert_eq!(
        names.trim(),
        "offsetsnapshot.catalog.kafka.oso.sh/pre-migration-20241201"
    );
    let err = fx
        .kubectl(&ops, &["delete", "osnap", "reset-before-replay"])
        .failure();
    assert!(err.contains("NotFound"), "{err}");
    // Backup sets cannot be deleted through the API.
    let err = fx
        .kubectl(&ops, &["delete", "kbs", "orders-2024-12-01"])
        .failure();
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allowed"),
        "{err}"
    );

    // A snapshot written later appears after the next refresh.
    let team_a = fx.team_a_location();
    write_snapshot(&team_a, "reset-before-replay", Some(("later", Some("team-a")))).await;
    fx.eventually("the new snapshot is listed", |fx| {
        fx.kubectl(&ops, &["get", "osnap", "later", "-o", "name"]).ok
    })
    .await;
    assert!(fx.default_dir.is_dir());
}

/// A snapshot `run -f` keeps in the embedded default location (a resource that names no
/// storage) is what a local `serve` with the same catalog directory lists: `kubectl get
/// offsetsnapshots` shows it in the resource's namespace.
#[tokio::test]
async fn kubectl_lists_the_snapshots_run_f_keeps_in_the_embedded_default_location() {
    let Some(bootstrap) = support::service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let fx = Fixture::start("").await;
    let id = support::unique("quick-snapshot");
    let manifest = fx.dir.path().join("quick-snapshot.yaml");
    fs::write(
        &manifest,
        format!(
            "apiVersion: kafka.oso.sh/v1alpha1\nkind: KafkaOffsetRollback\nmetadata:\n  name: quick-snapshot\n  namespace: team-a\nspec:\n  kafkaCluster:\n    bootstrapServers: [\"{bootstrap}\"]\n  consumerGroups: [my-small-group]\n  operation: snapshot\n  snapshotId: \"{id}\"\n"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(&manifest)
        .arg("--catalog-dir")
        .arg(&fx.default_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let ops = fx.user("carol", &["ops"]);
    fx.eventually("serve lists the snapshot run -f stored", |fx| {
        fx.kubectl(&ops, &["get", "osnap", &id, "-n", "team-a", "-o", "json"])
            .ok
    })
    .await;
    let listed = fx
        .kubectl(&ops, &["get", "osnap", &id, "-n", "team-a", "-o", "json"])
        .json();
    assert_eq!(listed["metadata"]["namespace"], "team-a", "{listed}");
}

#[tokio::test]
async fn kubectl_lists_backup_sets_across_namespaces() {
    let fx = Fixture::start("").await;
    let ops = fx.user("carol", &["ops"]);
    let table = rows(&fx.kubectl(&ops, &["get", "backupsets", "-A"]).success());
    assert_eq!(
        table[0],
        [
            "NAMESPACE",
            "NAME",
            "COMPLETE",
            "FORMAT",
            "TOPICS",
            "RECORDS",
            "SIZE",
            "FIRST",
            "RECORD",
            "LAST",
            "RECORD",
            "AGE"
        ]
    );
    assert_eq!(
        table[1][..9],
        [
            "team-a",
            "orders-2024-12-01",
            "true",
            "kafka-backup-operator/backup-set/v1",
            "2",
            "123000",
            "51.0MiB",
            "2024-11-01T00:00:03Z",
            "2024-12-01T00:00:00Z"
        ]
    );
    assert_eq!(table[2][..3], ["team-b", "orders-continuous", "false"]);

    let set = fx
        .kubectl(
            &ops,
            &["get", "kbs", "orders-2024-12-01", "-n", "team-a", "-o", "json"],
        )
        .json();
    assert_eq!(set["kind"], "BackupSet");
    assert_eq!(set["complete"], true);
    assert_eq!(set["records"], 123_000);
    assert_eq!(set["partitions"], 4);
    assert_eq!(set["bytes"], 53_477_376);
    assert_eq!(set["firstRecordTime"], "2024-11-01T00:00:03Z");
    assert_eq!(set["lastRecordTime"], "2024-12-01T00:00:00Z");
    assert_eq!(
        set["location"],
        "pvc://team-a-claim/catalog/backups/orders-2024-12-01"
    );
    assert_eq!(
        set["groupSnapshot"]["groups"],
        json!(["order-processor", "payment-handler"])
    );
    assert_eq!(
        set["topics"][0],
        json!({"name": "orders", "partitions": 3, "records": 120000, "bytes": 52428800})
    );

    let incomplete = fx
        .kubectl(
            &ops,
            &[
                "get",
                "kbs",
                "-A",
                "-l",
                "catalog.kafka.oso.sh/complete=false",
                "-o",
                "name",
            ],
        )
        .success();
    assert_eq!(
        incomplete.trim(),
        "backupset.catalog.kafka.oso.sh/orders-continuous"
    );
    let wide = fx
        .kubectl(&ops, &["get", "kbs", "-n", "team-a", "-o", "wide"])
        .success();
    assert!(wide.contains("order-processor,payment-handler"), "{wide}");
}

/// Sets and an offset snapshot written by the prior art (OSO kafka-backup 0.17.4, the fixtures
/// of `tests/prior_art.rs`), copied into team-a's location: listed with their format, never as
/// complete; the snapshot is shown and cannot be deleted through the API.
#[tokio::test]
async fn kubectl_lists_the_prior_arts_sets_and_snapshots() {
    let fx = Fixture::start("").await;
    let ops = fx.user("carol", &["ops"]);
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prior-art/storage");
    let target = fx.pvc_root.join("team-a-claim/catalog");
    let mut stack = vec![real.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let to = target.join(path.strip_prefix(&real).unwrap());
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                fs::write(&to, fs::read(&path).unwrap()).unwrap();
            }
        }
    }
    fx.eventually("the prior art's sets are listed", |fx| {
        fx.kubectl(&ops, &["get", "kbs", "b-zstd", "-n", "team-a", "-o", "name"])
            .ok
    })
    .await;
    let table = rows(&fx.kubectl(&ops, &["get", "kbs", "-n", "team-a"]).success());
    assert_eq!(table[0][..4], ["NAME", "COMPLETE", "FORMAT", "TOPICS"]);
    let row = |id: &str| table.iter().find(|r| r[0] == id).cloned().unwrap();
    for id in ["b-none", "b-zstd"] {
        assert_eq!(
            row(id)[..8],
            [
                id,
                "false",
                "kafka-backup/0.x",
                "2",
                "2000",
                "516.5KiB",
                "2026-01-01T00:00:00Z",
                "2026-02-01T00:08:19Z"
            ]
        );
    }
    let set = fx
        .kubectl(&ops, &["get", "kbs", "b-zstd", "-n", "team-a", "-o", "json"])
        .json();
    assert_eq!(set["format"], "kafka-backup/0.x");
    assert_eq!(set["complete"], false);
    assert_eq!(set["location"], "pvc://team-a-claim/catalog/b-zstd");
    assert!(
        set["note"]
            .as_str()
            .unwrap()
            .contains("cannot prove the set is complete")
    );
    assert_eq!(set["groupSnapshot"]["groups"], json!(["billing"]));
    let old = fx
        .kubectl(
            &ops,
            &[
                "get",
                "kbs",
                "-n",
                "team-a",
                "--field-selector",
                "format=kafka-backup/0.x",
                "-o",
                "name",
            ],
        )
        .success();
    assert_eq!(
        old.lines().collect::<Vec<_>>(),
        [
            "backupset.catalog.kafka.oso.sh/b-none",
            "backupset.catalog.kafka.oso.sh/b-zstd"
        ]
    );

    let id = "snap-1796651891106-8e61874d";
    let snap = fx
        .kubectl(&ops, &["get", "osnap", id, "-n", "team-a", "-o", "json"])
        .json();
    assert_eq!(snap["cluster"], "127.0.0.1:19092");
    assert_eq!(snap["groups"]["billing"]["topics"]["orders"]["2"]["offset"], 518);
    let listed = rows(&fx.kubectl(&ops, &["get", "osnap", "-n", "team-a"]).success());
    let line = listed.iter().find(|r| r[0] == id).unwrap();
    assert_eq!(
        line[1..5],
        ["1", "3", "127.0.0.1:19092", "kafka-backup/offset-rollback"]
    );
    let err = fx
        .kubectl(&ops, &["delete", "osnap", id, "-n", "team-a"])
        .failure();
    assert!(err.contains("was written by kafka-backup 0.x"), "{err}");
    assert!(
        target
            .join(format!("offset-snapshots/{id}/snapshot.json"))
            .is_file()
    );
}

#[tokio::test]
async fn discovery_openapi_and_health() {
    let fx = Fixture::start("").await;
    let alice = fx.user("alice", &["team-a-devs"]);

    // Discovery through kubectl --raw, for any authenticated user.
    let groups = fx.kubectl(&alice, &["get", "--raw", "/apis"]).json();
    assert_eq!(groups["kind"], "APIGroupList");
    assert_eq!(groups["groups"][0]["name"], "catalog.kafka.oso.sh");
    let group = fx
        .kubectl(&alice, &["get", "--raw", "/apis/catalog.kafka.oso.sh"])
        .json();
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "catalog.kafka.oso.sh/v1alpha1"
    );
    let resources = fx.kubectl(&alice, &["get", "--raw", BASE]).json();
    assert_eq!(resources["kind"], "APIResourceList");
    let osnap = &resources["resources"][0];
    assert_eq!(osnap["shortNames"], json!(["osnap"]));
    assert_eq!(osnap["categories"], json!(["kafka-backup"]));
    assert_eq!(osnap["verbs"], json!(["delete", "get", "list"]));
    let api_resources = fx
        .kubectl(&alice, &["api-resources", "--api-group=catalog.kafka.oso.sh"])
        .success();
    let table = rows(&api_resources);
    assert!(
        table.contains(&vec![
            "backupsets".into(),
            "kbs".into(),
            "catalog.kafka.oso.sh/v1alpha1".into(),
            "true".into(),
            "BackupSet".into()
        ]),
        "{api_resources}"
    );
    assert!(
        table.contains(&vec![
            "offsetsnapshots".into(),
            "osnap".into(),
            "catalog.kafka.oso.sh/v1alpha1".into(),
            "true".into(),
            "OffsetSnapshot".into()
        ]),
        "{api_resources}"
    );

    // Aggregated discovery: v2 and v2beta1 documents, 406 (never 404) for what cannot be produced.
    let (cert, key) = fx.client_ca.client("alice", &[]);
    let me = Some((cert.as_str(), key.as_str()));
    for version in ["v2", "v2beta1"] {
        let media = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
        let (code, content_type, body) = fx
            .raw(
                me,
                "GET",
                "/apis",
                &[("Accept", &format!("{media},application/json"))],
            )
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(content_type, media);
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["apiVersion"], format!("apidiscovery.k8s.io/{version}"));
        assert_eq!(
            doc["items"][0]["versions"][0]["resources"][1]["shortNames"],
            json!(["kbs"])
        );
    }
    let (code, _, body) = fx
        .raw(
            me,
            "GET",
            "/apis",
            &[(
                "Accept",
                "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList",
            )],
        )
        .await;
    assert_eq!(code, 406, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "NotAcceptable"
    );

    // OpenAPI: kubectl explain reads it.
    let explain = fx
        .kubectl(&alice, &["explain", "offsetsnapshots.groups"])
        .success();
    assert!(explain.contains("Every group's committed offsets"), "{explain}");
    let explain = fx
        .kubectl(&alice, &["explain", "backupsets.lastRecordTime"])
        .success();
    assert!(
        explain.contains("end of the valid point-in-time window"),
        "{explain}"
    );
    let v2 = fx.kubectl(&alice, &["get", "--raw", "/openapi/v2"]).json();
    assert_eq!(v2["swagger"], "2.0");
    let v3 = fx.kubectl(&alice, &["get", "--raw", "/openapi/v3"]).json();
    assert!(v3["paths"]["apis/catalog.kafka.oso.sh/v1alpha1"]["serverRelativeURL"].is_string());

    // Health without any certificate (kubelet and aggregator probes).
    for path in ["/healthz", "/livez", "/readyz"] {
        let (code, _, body) = fx.raw(None, "GET", path, &[]).await;
        assert_eq!((code, body.as_str()), (200, "ok"), "{path}");
    }
    // Unsupported verbs: 403 for who may not, 405 Status for who may.
    let put = format!("{BASE}/namespaces/team-a/offsetsnapshots/x");
    let (code, _, _) = fx.raw(me, "PUT", &put, &[]).await;
    assert_eq!(code, 403);
    let (cert, key) = fx.client_ca.client("carol", &["ops"]);
    let ops = Some((cert.as_str(), key.as_str()));
    let (code, _, body) = fx.raw(ops, "PUT", &put, &[]).await;
    assert_eq!(code, 405, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "MethodNotAllowed"
    );
    let (code, _, _) = fx
        .raw(
            ops,
            "GET",
            &format!("{BASE}/namespaces/team-a/offsetsnapshots?watch=true"),
            &[],
        )
        .await;
    assert_eq!(code, 405);
}

#[tokio::test]
async fn authentication_and_authorization() {
    let fx = Fixture::start("").await;

    // alice may read team-a only.
    let alice = fx.user("alice", &["team-a-devs"]);
    let out = fx
        .kubectl(&alice, &["get", "osnap", "-n", "team-a", "-o", "name"])
        .success();
    assert_eq!(out.lines().count(), 2);
    let err = fx.kubectl(&alice, &["get", "osnap", "-n", "team-b"]).failure();
    assert!(
        err.contains(r#"Error from server (Forbidden): offsetsnapshots.catalog.kafka.oso.sh is forbidden: User "alice" cannot list resource "offsetsnapshots" in API group "catalog.kafka.oso.sh" in the namespace "team-b""#),
        "{err}"
    );
    let err = fx.kubectl(&alice, &["get", "osnap", "-A"]).failure();
    assert!(
        err.contains("Forbidden") && err.contains("at the cluster scope"),
        "{err}"
    );
    let err = fx
        .kubectl(&alice, &["delete", "osnap", "pre-migration-20241201"])
        .failure();
    assert!(
        err.contains("Forbidden") && err.contains("cannot delete"),
        "{err}"
    );
    assert!(
        fx.pvc_root
            .join("team-a-claim/catalog/offset-snapshots/pre-migration-20241201.json")
            .is_file(),
        "a forbidden delete deletes nothing"
    );
    // A user the policy does not name: Forbidden even in team-a.
    let mallory = fx.user("mallory", &[]);
    let err = fx.kubectl(&mallory, &["get", "kbs", "-n", "team-a"]).failure();
    assert!(
        err.contains(r#"User "mallory" cannot list resource "backupsets""#),
        "{err}"
    );
    // system:masters may do everything (built in).
    let root = fx.user("root", &["system:masters"]);
    assert_eq!(rows(&fx.kubectl(&root, &["get", "kbs", "-A"]).success()).len(), 3);

    // No certificate: 401.
    let anonymous = fx.kubeconfig("anonymous", None);
    let err = fx.kubectl(&anonymous, &["get", "osnap"]).failure();
    assert!(err.contains("Unauthorized"), "{err}");
    let (code, _, body) = fx
        .raw(
            None,
            "GET",
            &format!("{BASE}/namespaces/team-a/offsetsnapshots"),
            &[],
        )
        .await;
    assert_eq!(code, 401, "{body}");
    // A certificate of another CA, even claiming system:masters: 401.
    let (cert, key) = Ca::new("someone else's CA").client("root", &["system:masters"]);
    let stranger = fx.kubeconfig("stranger", Some((&cert, &key)));
    let err = fx.kubectl(&stranger, &["get", "osnap"]).failure();
    assert!(err.contains("Unauthorized"), "{err}");
    let (code, _, body) = fx.raw(Some((&cert, &key)), "GET", BASE, &[]).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "Unauthorized"
    );

    // X-Remote-* headers count only with the front proxy's certificate.
    let impersonate = [("X-Remote-User", "root"), ("X-Remote-Group", "system:masters")];
    let list_b = format!("{BASE}/namespaces/team-b/offsetsnapshots");
    let (cert, key) = fx.client_ca.client("alice", &[]);
    let (code, _, body) = fx.raw(Some((&cert, &key)), "GET", &list_b, &impersonate).await;
    assert_eq!(
        code, 403,
        "a user's certificate cannot assert another user: {body}"
    );
    assert!(body.contains(r#"User \"alice\""#), "{body}");
    let (code, _, _) = fx.raw(None, "GET", &list_b, &impersonate).await;
    assert_eq!(code, 401, "headers without a certificate are ignored");
    // The front proxy asserting a user: that user's rights apply.
    let (proxy_cert, proxy_key) = fx.proxy_ca.client("front-proxy-client", &[]);
    let proxy = Some((proxy_cert.as_str(), proxy_key.as_str()));
    let (code, _, body) = fx.raw(proxy, "GET", &list_b, &impersonate).await;
    assert_eq!(code, 200, "{body}");
    let as_alice = [
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "system:authenticated"),
    ];
    let (code, _, body) = fx.raw(proxy, "GET", &list_b, &as_alice).await;
    assert_eq!(code, 403, "{body}");
    let (code, _, _) = fx
        .raw(
            proxy,
            "GET",
            &format!("{BASE}/namespaces/team-a/offsetsnapshots"),
            &as_alice,
        )
        .await;
    assert_eq!(code, 200);
    // A front-proxy certificate whose name is not allowed: its headers are not trusted.
    let (other_cert, other_key) = fx.proxy_ca.client("not-the-proxy", &[]);
    let (code, _, _) = fx
        .raw(Some((&other_cert, &other_key)), "GET", &list_b, &impersonate)
        .await;
    assert_eq!(code, 401);
    // The proxy without a user header is nobody.
    let (code, _, _) = fx.raw(proxy, "GET", &list_b, &[]).await;
    assert_eq!(code, 401);

    // The aggregator's availability check (system:masters through the proxy) and the metrics.
    let aggregator = [
        ("X-Remote-User", "system:kube-aggregator"),
        ("X-Remote-Group", "system:masters"),
    ];
    let (code, _, _) = fx.raw(proxy, "GET", BASE, &aggregator).await;
    assert_eq!(code, 200);
    assert!(
        fx.server
            .metric(
                r#"kafka_backup_operator_apiserver_authorizations_total{decision="deny",source="policy"}"#
            )
            .await
            >= 4.0
    );
    assert!(
        fx.server
            .metric(r#"kafka_backup_operator_apiserver_requests_total{verb="list",resource="offsetsnapshots",code="403"}"#)
            .await
            >= 1.0
    );
    assert_eq!(
        fx.server
            .metric(r#"kafka_backup_operator_apiserver_catalog_objects{resource="offsetsnapshots"}"#)
            .await,
        4.0
    );
}

/// The requests kube-controller-manager's namespace controller sends, as kube-aggregator forwards
/// them: its user and groups in the front-proxy headers, the metadata client's Accept header,
/// DeleteOptions with `propagationPolicy: Background`.
const NAMESPACE_CONTROLLER: [(&str, &str); 4] = [
    (
        "X-Remote-User",
        "system:serviceaccount:kube-system:namespace-controller",
    ),
    ("X-Remote-Group", "system:serviceaccounts"),
    ("X-Remote-Group", "system:serviceaccounts:kube-system"),
    ("X-Remote-Group", "system:authenticated"),
];
const METADATA_ACCEPT: &str = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
const BACKGROUND_DELETE: &str =
    r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#;

#[tokio::test]
async fn deleting_the_namespace_completes_and_never_deletes_stored_snapshots() {
    let fx = Fixture::start("").await;
    let (proxy_cert, proxy_key) = fx.proxy_ca.client("front-proxy-client", &[]);
    let proxy = Some((proxy_cert.as_str(), proxy_key.as_str()));
    let stored = |id: &str| {
        fx.pvc_root
            .join(format!("team-a-claim/catalog/offset-snapshots/{id}.json"))
    };
    let collection = format!("{BASE}/namespaces/team-a/offsetsnapshots");
    let mut headers = NAMESPACE_CONTROLLER.to_vec();

    // The deleter's opening step where discovery lists deletecollection: a DELETE of the collection.
    let (code, _, body) = fx
        .raw_with_body(proxy, "DELETE", &collection, &headers, BACKGROUND_DELETE)
        .await;
    assert_eq!(code, 200, "{body}");
    // Its list (and the check that nothing remains) is empty: deletion of the namespace completes.
    headers.push(("Accept", METADATA_ACCEPT));
    let (code, _, body) = fx.raw(proxy, "GET", &collection, &headers).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["items"], json!([]));
    // A DELETE of each object it had listed before: success, nothing deleted.
    for id in ["pre-migration-20241201", "reset-before-replay"] {
        let (code, _, body) = fx
            .raw_with_body(
                proxy,
                "DELETE",
                &format!("{collection}/{id}"),
                &NAMESPACE_CONTROLLER,
                BACKGROUND_DELETE,
            )
            .await;
        assert!(code == 200 || code == 404, "{code} {body}");
    }
    for id in ["pre-migration-20241201", "reset-before-replay"] {
        assert!(stored(id).is_file(), "{id} is still in storage");
    }
    // The other namespaces' snapshots are untouched and still listed.
    let ops = fx.user("carol", &["ops"]);
    let all = fx.kubectl(&ops, &["get", "osnap", "-A", "-o", "name"]).success();
    assert!(all.contains("team-b-snapshot"), "{all}");
    assert!(
        !all.contains("reset-before-replay"),
        "hidden with the namespace: {all}"
    );

    // A user's explicit delete of one snapshot still deletes it.
    let team_a = fx.team_a_location();
    write_snapshot(&team_a, "reset-before-replay", Some(("explicit", Some("team-a")))).await;
    fx.eventually("the new snapshot is listed", |fx| {
        fx.kubectl(&ops, &["get", "osnap", "explicit", "-o", "name"]).ok
    })
    .await;
    fx.kubectl(&ops, &["delete", "osnap", "explicit"]).success();
    assert!(!stored("explicit").exists(), "an explicit delete deletes");
    // A DELETE of the collection by a user is not served (and deletes nothing).
    let (cert, key) = fx.client_ca.client("carol", &["ops"]);
    let (code, _, _) = fx
        .raw_with_body(
            Some((&cert, &key)),
            "DELETE",
            &format!("{BASE}/namespaces/team-b/offsetsnapshots"),
            &[],
            BACKGROUND_DELETE,
        )
        .await;
    assert_eq!(code, 405);
    assert!(
        fx.default_dir
            .join("offset-snapshots/team-b-snapshot.json")
            .is_file()
    );
}

#[tokio::test]
async fn the_aggregator_reads_openapi_without_groups() {
    let fx = Fixture::start("").await;
    let (proxy_cert, proxy_key) = fx.proxy_ca.client("front-proxy-client", &[]);
    let proxy = Some((proxy_cert.as_str(), proxy_key.as_str()));
    // kube-aggregator's OpenAPI downloader: user system:aggregator, no X-Remote-Group.
    let aggregator = [("X-Remote-User", "system:aggregator")];
    for path in [
        "/openapi/v2",
        "/openapi/v3",
        "/openapi/v3/apis/catalog.kafka.oso.sh/v1alpha1",
        "/apis",
        BASE,
    ] {
        let (code, _, body) = fx.raw(proxy, "GET", path, &aggregator).await;
        assert_eq!(code, 200, "{path}: {body}");
    }
    // Discovery is all it gets.
    let (code, _, body) = fx
        .raw(
            proxy,
            "GET",
            &format!("{BASE}/namespaces/team-a/offsetsnapshots"),
            &aggregator,
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains(r#"User \"system:aggregator\""#), "{body}");
}

#[tokio::test]
async fn what_another_process_writes_into_a_local_location_appears_without_a_refresh() {
    // No periodic refresh during the test: only the watch can show what is written.
    let fx = Fixture::start_refreshing("", "3600").await;
    let ops = fx.user("carol", &["ops"]);
    // A `run -f` storing into the default location, the way the operator writes.
    let default = location_in(&fx.default_dir);
    write_snapshot(
        &default,
        "reset-before-replay",
        Some(("from-run-f", Some("team-b"))),
    )
    .await;
    fx.eventually("the snapshot written into --catalog-dir is listed", |fx| {
        fx.kubectl(
            &ops,
            &["get", "osnap", "from-run-f", "-n", "team-b", "-o", "name"],
        )
        .ok
    })
    .await;
    // A plain file written into a PVC location by another process, then removed.
    let text = fs::read_to_string(format!("{FIXTURES}/snapshots/reset-before-replay.json")).unwrap();
    let mut document: Value = serde_json::from_str(&text).unwrap();
    document["snapshotId"] = json!("copied-in");
    let file = fx
        .pvc_root
        .join("team-a-claim/catalog/offset-snapshots/copied-in.json");
    fs::write(&file, document.to_string()).unwrap();
    fx.eventually("the file copied into the PVC location is listed", |fx| {
        fx.kubectl(&ops, &["get", "osnap", "copied-in", "-n", "team-a", "-o", "name"])
            .ok
    })
    .await;
    fs::remove_file(&file).unwrap();
    fx.eventually("the removed file is no longer listed", |fx| {
        !fx.kubectl(&ops, &["get", "osnap", "copied-in", "-n", "team-a", "-o", "name"])
            .ok
    })
    .await;
    // A backup set whose manifest appears in a new backup directory (created, then written).
    let text = fs::read_to_string(format!("{FIXTURES}/backups/orders-continuous.json")).unwrap();
    let mut manifest: Value = serde_json::from_str(&text).unwrap();
    manifest["backupId"] = json!("written-later");
    let dir = fx.default_dir.join("backups/written-later");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    fx.eventually("the new backup set is listed", |fx| {
        fx.kubectl(
            &ops,
            &["get", "kbs", "written-later", "-n", "team-b", "-o", "name"],
        )
        .ok
    })
    .await;
}

/// What kafka-backup 0.x wrote, copied into a local location by another process (a set
/// `<backupId>/manifest.json` with its segments, a snapshot `offset-snapshots/<id>/snapshot.json`
/// with its `metadata.json`), is listed through the watch, with no refresh due; removed, it goes.
#[tokio::test]
async fn a_prior_art_set_and_snapshot_copied_into_a_local_location_appear_without_a_refresh() {
    // No periodic refresh during the test: only the watch can show what is written.
    let fx = Fixture::start_refreshing("", "3600").await;
    let ops = fx.user("carol", &["ops"]);
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prior-art/storage");
    let location = fx.pvc_root.join("team-a-claim/catalog");
    support::copy_dir(&real.join("b-zstd"), &location.join("b-zstd"));
    let snapshot = "snap-1796651891106-8e61874d";
    support::copy_dir(
        &real.join("offset-snapshots").join(snapshot),
        &location.join("offset-snapshots").join(snapshot),
    );
    fx.eventually(
        "the prior art's set copied into the PVC location is listed",
        |fx| {
            fx.kubectl(&ops, &["get", "kbs", "b-zstd", "-n", "team-a", "-o", "name"])
                .ok
        },
    )
    .await;
    fx.eventually(
        "the prior art's snapshot copied into the PVC location is listed",
        |fx| {
            fx.kubectl(&ops, &["get", "osnap", snapshot, "-n", "team-a", "-o", "name"])
                .ok
        },
    )
    .await;
    let set = fx
        .kubectl(&ops, &["get", "kbs", "b-zstd", "-n", "team-a", "-o", "yaml"])
        .success();
    assert!(set.contains("format: kafka-backup/0.x"), "{set}");
    fs::remove_dir_all(location.join("b-zstd")).unwrap();
    fs::remove_dir_all(location.join("offset-snapshots").join(snapshot)).unwrap();
    fx.eventually("the removed set and snapshot are no longer listed", |fx| {
        !fx.kubectl(&ops, &["get", "kbs", "b-zstd", "-n", "team-a", "-o", "name"])
            .ok
            && !fx
                .kubectl(&ops, &["get", "osnap", snapshot, "-n", "team-a", "-o", "name"])
                .ok
    })
    .await;
}

#[tokio::test]
async fn snapshots_and_backups_in_s3_appear() {
    let (Some(endpoint), Some(bucket), Some(access_key), Some(secret_key)) = (
        support::service("KBO_TEST_S3_ENDPOINT"),
        support::service("KBO_TEST_S3_BUCKET"),
        support::service("KBO_TEST_S3_ACCESS_KEY"),
        support::service("KBO_TEST_S3_SECRET_KEY"),
    ) else {
        return;
    };
    let region = std::env::var("KBO_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into());
    let prefix = support::unique("catalog");
    let secrets = tempfile::tempdir().unwrap();
    fs::create_dir(secrets.path().join("s3")).unwrap();
    fs::write(secrets.path().join("s3/AWS_ACCESS_KEY_ID"), &access_key).unwrap();
    fs::write(secrets.path().join("s3/AWS_SECRET_ACCESS_KEY"), &secret_key).unwrap();
    let storage = json!({"type": "S3", "s3": {"bucket": bucket, "region": region, "endpoint": endpoint,
        "pathStyle": true, "allowHttp": true, "prefix": prefix, "credentialsSecret": {"name": "s3"}}});
    let spec: StorageSpec = serde_json::from_value(storage.clone()).unwrap();
    let location = Location::open(
        &spec,
        &SecretStore::Dir(secrets.path().to_owned()),
        &StorageEnv::default(),
    )
    .unwrap();
    write_snapshot(
        &location,
        "pre-migration-20241201",
        Some(("s3-before-start", Some("team-s3"))),
    )
    .await;
    write_manifest(&location, "orders-2024-12-01").await;

    let config = format!(
        "  team-s3:\n    - storage: {storage}\n      secretsDir: {:?}\n",
        secrets.path().display().to_string()
    );
    let fx = Fixture::start(&config).await;
    let ops = fx.user("carol", &["ops"]);
    let table = rows(&fx.kubectl(&ops, &["get", "osnap", "-n", "team-s3"]).success());
    assert_eq!(table.len(), 2, "{table:?}");
    assert_eq!(table[1][0], "s3-before-start");
    let yaml = fx
        .kubectl(
            &ops,
            &["get", "osnap", "s3-before-start", "-n", "team-s3", "-o", "yaml"],
        )
        .success();
    assert!(
        yaml.contains(&format!(
            "location: s3://{bucket}/{prefix}/offset-snapshots/s3-before-start.json"
        )),
        "{yaml}"
    );
    assert!(yaml.contains("offset: 2000"), "{yaml}");
    let sets = rows(&fx.kubectl(&ops, &["get", "kbs", "-n", "team-s3"]).success());
    assert_eq!(sets[1][0], "orders-2024-12-01");

    // Written while serving: listed by the next refresh; deleted through kubectl: gone from S3.
    write_snapshot(
        &location,
        "reset-before-replay",
        Some(("s3-while-serving", Some("team-s3"))),
    )
    .await;
    fx.eventually("the S3 snapshot written later is listed", |fx| {
        fx.kubectl(
            &ops,
            &["get", "osnap", "s3-while-serving", "-n", "team-s3", "-o", "name"],
        )
        .ok
    })
    .await;
    fx.kubectl(&ops, &["delete", "osnap", "s3-while-serving", "-n", "team-s3"])
        .success();
    assert_eq!(
        location.get(&snapshot_key("s3-while-serving")).await.unwrap(),
        None
    );
    location.delete(&snapshot_key("s3-before-start")).await.unwrap();
    location.delete(&manifest_key("orders-2024-12-01")).await.unwrap();
}

#[tokio::test]
async fn diff_compares_a_snapshot_with_the_committed_offsets() {
    use rdkafka::{
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
        producer::{FutureProducer, FutureRecord},
    };
    let Some(bootstrap) = support::service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let topic = support::unique("catalog-diff");
    let group = support::unique("catalog-diff-group");
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &bootstrap);
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let producer: FutureProducer = config.create().unwrap();
    for partition in 0..2 {
        for i in 0..20 {
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic)
                        .partition(partition)
                        .payload(&format!("r{i}")),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }
    // The group has committed 15 on partition 0 and nothing on partition 1.
    let mut group_config = config.clone();
    group_config.set("group.id", &group);
    let consumer: rdkafka::consumer::BaseConsumer = group_config.create().unwrap();
    let mut committed = rdkafka::TopicPartitionList::new();
    committed
        .add_partition_offset(&topic, 0, rdkafka::Offset::Offset(15))
        .unwrap();
    rdkafka::consumer::Consumer::commit(&consumer, &committed, rdkafka::consumer::CommitMode::Sync).unwrap();

    let fx = Fixture::start("").await;
    let team_a = fx.team_a_location();
    let snapshot: OffsetSnapshot = serde_json::from_value(json!({
        "snapshotId": "diff-me", "timestamp": "2025-01-01T00:00:00Z", "cluster": bootstrap,
        "groups": {group.clone(): {"topics": {topic.clone(): {
            "0": {"offset": 10, "metadata": "", "timestamp": 1},
            "1": {"offset": 5, "metadata": "", "timestamp": 1}}}}},
        "source": {"kind": "KafkaOffsetRollback", "namespace": "team-a", "name": "r"}
    }))
    .unwrap();
    team_a
        .put_new(&snapshot_key("diff-me"), snapshot.to_bytes())
        .await
        .unwrap();
    let ops = fx.user("carol", &["ops"]);
    fx.eventually("the snapshot is listed", |fx| {
        fx.kubectl(&ops, &["get", "osnap", "diff-me", "-o", "name"]).ok
    })
    .await;
    let diff = fx
        .kubectl(
            &ops,
            &[
                "get",
                "--raw",
                &format!("{BASE}/namespaces/team-a/offsetsnapshots/diff-me/diff"),
            ],
        )
        .json();
    assert_eq!(diff["kind"], "OffsetSnapshotDiff");
    assert_eq!(
        diff["summary"],
        json!({"groups": 1, "partitions": 2, "changed": 1, "missing": 1})
    );
    let partitions = &diff["groups"][0]["partitions"];
    assert_eq!(
        partitions[0],
        json!({"topic": topic, "partition": 0, "snapshotOffset": 10, "currentOffset": 15, "delta": 5})
    );
    assert_eq!(
        partitions[1],
        json!({"topic": topic, "partition": 1, "snapshotOffset": 5})
    );

    // alice may not read diffs in team-b, and a diff of an unknown snapshot is NotFound.
    let err = fx
        .kubectl(
            &ops,
            &[
                "get",
                "--raw",
                &format!("{BASE}/namespaces/team-a/offsetsnapshots/nope/diff"),
            ],
        )
        .failure();
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}
