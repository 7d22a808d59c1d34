//! The operator's OCI image (`.ci/image/`, built by tests/run-all.sh and named in
//! `KBO_TEST_IMAGE`), run with podman the way the chart runs it in a pod: as the image's own
//! non-root user, on a read-only root file system with only the state directory writable (a
//! tmpfs, like the chart's emptyDir; no /tmp either), without capabilities, with
//! no-new-privileges, on the host network (to reach the test broker). Checked from outside:
//! `/readyz`, `POST /validate` of a real AdmissionReview over TLS (the dev certificate the image
//! made in its state directory), `run -f` of an offset reset against the broker inside the
//! container, whose snapshot kubectl then lists through the catalog API with the dev kubeconfig,
//! and a clean exit on SIGTERM. Also the image's configuration and its files: the binary, the
//! libraries it links, CA certificates, passwd/group; no shell, no package manager.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use rdkafka::{ClientConfig, Offset, consumer::Consumer};
use serde_json::{Value, json};
use support::{
    free_port,
    https::{connect, http1_client, tls_post, try_get},
    image::{Container, Image, image, podman},
    review::FIXTURES,
    seed_group, service, unique,
};

/// Where the image's binary is.
const BINARY: &str = "/usr/local/bin/kafka-backup-operator";
/// The image's state directory (its `KBO_STATE_DIR`), the only place it writes.
const STATE_DIR: &str = "/var/lib/kafka-backup-operator";
/// The image's user and group.
const USER: u32 = 65532;

/// Runs `tar args --file archive` (and `member`, if any); its stdout.
fn tar(args: &[&str], archive: &Path, member: Option<&str>) -> String {
    let output = Command::new("tar")
        .args(args)
        .arg("--file")
        .arg(archive)
        .args(member)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tar {args:?} {member:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The image's files from `podman export` (into `dir/image.tar`) of a container made from it
/// (never started): path (without the leading `/`) -> (type and mode as `tar -tv` prints them,
/// `uid/gid`).
fn image_files(image: &Image, dir: &Path) -> BTreeMap<String, (String, String)> {
    let created = podman(&["create", &image.name]).trim().to_owned();
    let container = Container { id: created };
    let archive = dir.join("image.tar");
    podman(&[
        "export",
        "--output",
        &archive.display().to_string(),
        &container.id,
    ]);
    tar(&["--list", "--verbose", "--numeric-owner"], &archive, None)
        .lines()
        .map(|line| {
            // "-rwxr-xr-x 0/0 123 1970-01-01 00:00 usr/local/bin/kafka-backup-operator"
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5..].join(" ");
            let path = path
                .split(" -> ")
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_owned();
            (path, (fields[0].to_owned(), fields[1].to_owned()))
        })
        .filter(|(path, _)| !path.is_empty() && path != ".")
        .collect()
}

/// A file of the image exported by [`image_files`] into `dir`.
fn image_file(dir: &Path, path: &str) -> String {
    tar(&["--extract", "--to-stdout"], &dir.join("image.tar"), Some(path))
}

#[test]
fn image_runs_serve_as_a_non_root_user_and_is_labelled() {
    let Some(image) = image() else { return };
    let config = image.config();
    assert_eq!(config["User"], format!("{USER}:{USER}"), "{config}");
    assert_eq!(config["Entrypoint"], json!([BINARY]));
    assert_eq!(config["Cmd"], json!(["serve"]));
    let ports: BTreeSet<&str> = config["ExposedPorts"]
        .as_object()
        .expect("exposed ports")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from(["8443/tcp", "8080/tcp"]),
        "serve's default ports"
    );
    assert_eq!(image.env("KBO_STATE_DIR").as_deref(), Some(STATE_DIR));
    assert_eq!(
        image.env("SSL_CERT_FILE").as_deref(),
        Some("/etc/ssl/certs/ca-certificates.crt")
    );

    let labels = &config["Labels"];
    let label = |name: &str| {
        labels[format!("org.opencontainers.image.{name}")]
            .as_str()
            .unwrap_or_else(|| panic!("no label org.opencontainers.image.{name}: {labels}"))
            .to_owned()
    };
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(label("title"), env!("CARGO_PKG_NAME"));
    assert!(!label("source").is_empty());
    // The commit it was built from (the tests run in the same checkout).
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    if head.status.success() {
        let head = String::from_utf8(head.stdout).unwrap();
        assert!(
            label("revision").starts_with(head.trim()),
            "revision {} is not HEAD {head}",
            label("revision")
        );
    }
}

#[test]
fn image_holds_the_binary_its_libraries_and_certificates_and_nothing_to_run_a_shell() {
    let Some(image) = image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = image_files(&image, dir.path());

    let binary = &files[BINARY.trim_start_matches('/')];
    assert_eq!(binary, &("-rwxr-xr-x".to_owned(), "0/0".to_owned()));
    // The state directory is the user's; everything else is root's and read-only to the user.
    assert_eq!(
        files[STATE_DIR.trim_start_matches('/')].1,
        format!("{USER}/{USER}")
    );
    for (path, (mode, owner)) in &files {
        if path != STATE_DIR.trim_start_matches('/') {
            assert_eq!(owner, "0/0", "{path} is not root's");
            assert!(
                !mode.starts_with('-') || mode.as_bytes()[8] != b'w',
                "{path} is writable by others: {mode}"
            );
        }
    }
    // Only these kinds of files: no shell, no package manager, no other binaries.
    let allowed = |path: &str| {
        path == BINARY.trim_start_matches('/')
            || path.starts_with("lib/x86_64-linux-gnu/")
            || path.starts_with("lib64/ld-linux-")
            || path.starts_with("var/lib/dpkg/status.d/")
            || (path.starts_with("usr/share/doc/") && path.ends_with("/copyright"))
            || [
                "etc/passwd",
                "etc/group",
                "etc/nsswitch.conf",
                "etc/ssl/certs/ca-certificates.crt",
            ]
            .contains(&path)
    };
    let unexpected: Vec<&String> = files
        .iter()
        .filter(|(path, (mode, _))| !mode.starts_with('d') && !allowed(path))
        .map(|(path, _)| path)
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected files in the image: {unexpected:?}"
    );
    for (path, (mode, _)) in &files {
        let name = path.rsplit('/').next().unwrap();
        if mode.starts_with('d') {
            continue;
        }
        assert!(
            ![
                "sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg", "ldconfig"
            ]
            .contains(&name),
            "{path} in the image"
        );
    }
    // The libraries the binary links, the loader among them, with where they came from.
    for lib in [
        "libc.so.6",
        "libssl.so.3",
        "libcrypto.so.3",
        "libz.so.1",
        "libgcc_s.so.1",
    ] {
        assert!(
            files.contains_key(&format!("lib/x86_64-linux-gnu/{lib}")),
            "{lib} missing: {:?}",
            files.keys().collect::<Vec<_>>()
        );
    }
    for package in ["libc6", "libssl3", "zlib1g", "libgcc-s1", "ca-certificates"] {
        let status = image_file(dir.path(), &format!("var/lib/dpkg/status.d/{package}"));
        assert!(status.contains(&format!("Package: {package}\n")), "{status}");
        assert!(status.contains("\nVersion: "), "{status}");
    }

    let passwd = image_file(dir.path(), "etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("nonroot:x:{USER}:{USER}:")) && l.contains(STATE_DIR)),
        "{passwd}"
    );
    let group = image_file(dir.path(), "etc/group");
    assert!(
        group.lines().any(|l| l == format!("nonroot:x:{USER}:")),
        "{group}"
    );
    let bundle = image_file(dir.path(), "etc/ssl/certs/ca-certificates.crt");
    let roots = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(roots > 50, "only {roots} CA certificates");
}

/// The `/proc/<pid>/status` lines of the container's process that say who it runs as.
fn process_identity(container: &Container) -> BTreeMap<String, String> {
    let pid = container.state("Pid");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| ["Uid", "Gid", "CapEff", "CapPrm", "NoNewPrivs"].contains(key))
        .map(|(key, value)| {
            (
                key.to_owned(),
                value.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

/// Waits until `/readyz` on `admin` answers 200, failing with the container's output if it stops.
async fn wait_ready(container: &Container, admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Ok(response)) =
            tokio::time::timeout(Duration::from_secs(2), try_get(admin, "/readyz")).await
            && response.status == 200
        {
            return;
        }
        assert!(
            container.running(),
            "the container stopped:\n{}",
            container.logs()
        );
        assert!(
            Instant::now() < deadline,
            "not ready within 60 s:\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs kubectl with `kubeconfig`; (success, stdout, stderr).
fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--request-timeout=20s")
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_from_the_image_runs_read_only_and_answers_webhooks_catalog_and_run_f() {
    let Some(image) = image() else { return };
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // The manifests `run -f` reads, mounted read-only (as a ConfigMap would be).
    let manifests = work.path().join("manifests");
    fs::create_dir(&manifests).unwrap();
    fs::set_permissions(&manifests, fs::Permissions::from_mode(0o755)).unwrap();

    let https = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // A tmpfs owned by the container's user (U), like the chart's emptyDir with fsGroup.
    let state = format!("{STATE_DIR}:rw,nosuid,nodev,noexec,size=64m,U");
    let mount = format!(
        "type=bind,source={},target=/manifests,readonly",
        manifests.display()
    );
    let container = image.run(
        &[
            "--network=host",
            "--read-only",
            // podman would otherwise mount writable tmpfs on /tmp, /var/tmp and /run.
            "--read-only-tmpfs=false",
            "--tmpfs",
            &state,
            "--cap-drop=all",
            "--security-opt=no-new-privileges",
            "--mount",
            &mount,
            "--env=RUST_LOG=info",
        ],
        &[
            "serve",
            &format!("--listen={https}"),
            &format!("--admin-listen={admin}"),
            "--catalog-refresh-interval=1",
        ],
    );
    wait_ready(&container, admin).await;

    // The image's user, no capabilities, no way to gain privileges.
    let identity = process_identity(&container);
    assert_eq!(
        identity["Uid"],
        format!("{USER} {USER} {USER} {USER}"),
        "{identity:?}"
    );
    assert_eq!(
        identity["Gid"],
        format!("{USER} {USER} {USER} {USER}"),
        "{identity:?}"
    );
    assert_eq!(identity["CapEff"], "0000000000000000", "{identity:?}");
    assert_eq!(identity["CapPrm"], "0000000000000000", "{identity:?}");
    assert_eq!(identity["NoNewPrivs"], "1", "{identity:?}");

    // What serve wrote, all in the state directory: the dev CA and certificate, the dev access
    // to the catalog API; copied out to talk to it.
    let copy = work.path().join("state");
    container.copy_out(STATE_DIR, &copy);
    let ca = fs::read_to_string(copy.join("tls/ca.crt")).unwrap();

    // A real AdmissionReview (what kube-apiserver sends) over TLS, answered as pinned.
    let fixture =
        Path::new(FIXTURES).join("admission-reviews/kafkaoffsetreset-v1alpha1-create-several-errors");
    let request = fs::read(fixture.join("request.json")).unwrap();
    let expected: Value =
        serde_json::from_slice(&fs::read(fixture.join("validate.response.json")).unwrap()).unwrap();
    let mut stream = connect(https, http1_client(&[&ca]), "localhost").await;
    let answer = tls_post(&mut stream, "/validate", &request).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), expected);
    assert_eq!(answer.json()["response"]["allowed"], false);

    // `run -f` inside the container: a group at offset 3 of 5 is reset to the earliest offset,
    // its snapshot stored in the catalog's default location (PVC root = the state directory).
    let topic = unique("image");
    let group = unique("image-group");
    let snapshot_id = unique("image-snap");
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    let (consumer, tpl) = seed_group(client, &topic, &group, 3).await;
    let manifest = format!(
        "apiVersion: kafka.oso.sh/v1beta1\nkind: KafkaOffsetReset\nmetadata:\n  name: image-reset\nspec:\n  kafkaCluster:\n    bootstrapServers: [\"{bootstrap}\"]\n  consumerGroups: [\"{group}\"]\n  strategy: Earliest\n  topics: [{{name: \"{topic}\"}}]\n  snapshot:\n    snapshotId: {snapshot_id}\n    storage: {{type: PVC, pvc: {{claimName: catalog}}}}\n"
    );
    let file = manifests.join("reset.yaml");
    fs::write(&file, manifest).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let run = container.exec(&[
        BINARY,
        "run",
        "-f",
        "/manifests/reset.yaml",
        "--pvc-root",
        STATE_DIR,
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "run -f failed ({}):\n{stdout}\n{stderr}",
        run.status
    );
    let status: Value = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(status["status"]["phase"], "Completed", "{status}");
    assert_eq!(status["status"]["groupsReset"], 1, "{status}");
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    assert_eq!(committed.elements()[0].offset(), Offset::Offset(0));

    // kubectl with the dev kubeconfig serve made (its paths are the container's: pointed at the
    // copy) lists the snapshot run -f stored.
    let kubeconfig = copy.join("apiserver/kubeconfig");
    let text = fs::read_to_string(&kubeconfig).unwrap();
    fs::write(&kubeconfig, text.replace(STATE_DIR, &copy.display().to_string())).unwrap();
    let cache = work.path().join("kubectl-cache");
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let (ok, stdout, stderr) = kubectl(
            &kubeconfig,
            &cache,
            &["get", "offsetsnapshots", "-A", "-o", "json"],
        );
        assert!(ok, "kubectl get offsetsnapshots: {stderr}\n{}", container.logs());
        let list: Value = serde_json::from_str(&stdout).unwrap();
        if let Some(item) = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == snapshot_id.as_str())
        {
            break item.clone();
        }
        assert!(
            Instant::now() < deadline,
            "snapshot {snapshot_id} not listed: {stdout}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(listed.to_string().contains(&group), "{listed}");
    let (ok, table, stderr) = kubectl(&kubeconfig, &cache, &["get", "offsetsnapshots", "-A"]);
    assert!(ok && table.contains(&snapshot_id), "{table}{stderr}");

    // SIGTERM (podman stop): the servers drain and the process exits 0.
    podman(&["stop", "--time", "20", &container.id]);
    assert_eq!(container.state("ExitCode"), "0", "{}", container.logs());
    assert!(
        container.logs().contains("servers stopped"),
        "{}",
        container.logs()
    );
}
