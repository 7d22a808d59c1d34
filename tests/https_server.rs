//! End-to-end tests of `serve` and `certs`: the real binary on free loopback ports, certificates in
//! temporary directories, a rustls (ring) client with its own root store and raw HTTP/1.1 requests.

// Test helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::{
    ffi::OsString,
    fs,
    net::TcpListener as StdTcpListener,
    os::unix::fs::{PermissionsExt, symlink},
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use kafka_backup_operator::certs::{self, Pki};
use support::https::{
    BIN, Response, Server, cert_args, client_config, connect, eventually, get, http1_client, leaf_der,
    loopback_pki, served_leaf, tls_get, try_connect, write_pair,
};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{
    self, RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use x509_parser::extensions::GeneralName;

async fn reloads(server: &Server) -> (f64, f64) {
    (
        server
            .metric(r#"kafka_backup_operator_tls_reloads_total{outcome="success"}"#)
            .await,
        server
            .metric(r#"kafka_backup_operator_tls_reloads_total{outcome="failure"}"#)
            .await,
    )
}

fn assert_not_found_status(response: &Response) {
    assert_eq!(response.status, 404);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "the server could not find the requested resource",
            "reason": "NotFound",
            "code": 404
        })
    );
}

// === tests ===

#[tokio::test]
async fn serves_https_with_the_given_certificate_and_admin_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let pki = loopback_pki();
    write_pair(dir.path(), &pki);
    let server = Server::start(dir.path(), &cert_args(dir.path())).await;

    let mut stream = connect(server.https, http1_client(&[&pki.ca_cert_pem]), "127.0.0.1").await;
    assert_eq!(served_leaf(&stream), leaf_der(&pki));
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_not_found_status(&tls_get(&mut stream, "/no/such/path").await);
    // The aggregated API wants a client certificate.
    assert_eq!(tls_get(&mut stream, "/apis").await.status, 401);

    // h2 by ALPN; TLS 1.2 and 1.3 both accepted.
    let h2 = connect(
        server.https,
        client_config(&[&pki.ca_cert_pem], &[b"h2", b"http/1.1"], rustls::ALL_VERSIONS),
        "localhost",
    )
    .await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        h2.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let tls12 = connect(
        server.https,
        client_config(&[&pki.ca_cert_pem], &[b"http/1.1"], &[&rustls::version::TLS12]),
        "localhost",
    )
    .await;
    assert_eq!(
        tls12.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );

    let livez = get(server.admin, "/livez").await;
    assert_eq!((livez.status, livez.body.as_str()), (200, "ok"));
    let readyz = get(server.admin, "/readyz").await;
    assert_eq!((readyz.status, readyz.body.as_str()), (200, "ok"));
    let metrics = get(server.admin, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        metrics.body.contains(&format!(
            "kafka_backup_operator_build_info{{version=\"{version}\"}} 1\n"
        )),
        "{}",
        metrics.body
    );
    assert_eq!(
        server
            .metric(r#"kafka_backup_operator_https_requests_total{code="404"}"#)
            .await,
        1.0
    );
    let not_after = certs::inspect(&leaf_der(&pki), "leaf").unwrap().not_after;
    assert_eq!(
        server
            .metric("kafka_backup_operator_tls_certificate_expiry_timestamp_seconds")
            .await,
        not_after as f64
    );
    assert_eq!(get(server.admin, "/nothing").await.status, 404);
}

/// Lays out `pki` as the kubelet does for a Secret volume: files in a timestamped directory,
/// `..data` pointing at it, `tls.crt`/`tls.key` pointing through `..data`. Called again, it swaps
/// `..data` atomically to a new directory.
fn kubelet_write(dir: &Path, version: u32, pki: &Pki) {
    let data_dir = dir.join(format!("..2026_01_01_00_00_0{version}.000"));
    fs::create_dir(&data_dir).unwrap();
    write_pair(&data_dir, pki);
    let tmp = dir.join("..data_tmp");
    symlink(data_dir.file_name().unwrap(), &tmp).unwrap();
    fs::rename(&tmp, dir.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        if fs::symlink_metadata(dir.join(file)).is_err() {
            symlink(Path::new("..data").join(file), dir.join(file)).unwrap();
        }
    }
}

#[tokio::test]
async fn reloads_a_swapped_certificate_for_new_connections_and_keeps_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    fs::create_dir(&secret).unwrap();
    let (old, new) = (loopback_pki(), loopback_pki());
    kubelet_write(&secret, 1, &old);
    let server = Server::start(dir.path(), &cert_args(&secret)).await;
    let client = http1_client(&[&old.ca_cert_pem, &new.ca_cert_pem]);

    let mut before = connect(server.https, Arc::clone(&client), "localhost").await;
    assert_eq!(served_leaf(&before), leaf_der(&old));
    assert_eq!(tls_get(&mut before, "/first").await.status, 404);

    kubelet_write(&secret, 2, &new);
    eventually("the new certificate on a new connection", || {
        let client = Arc::clone(&client);
        let https = server.https;
        let new_leaf = leaf_der(&new);
        async move {
            let stream = try_connect(https, client, "localhost").await.ok()?;
            (served_leaf(&stream) == new_leaf).then_some(())
        }
    })
    .await;

    // The connection opened before the swap still works, with its original certificate.
    assert_eq!(tls_get(&mut before, "/second").await.status, 404);
    assert_eq!(served_leaf(&before), leaf_der(&old));
    assert_eq!(reloads(&server).await, (1.0, 0.0));
    let not_after = certs::inspect(&leaf_der(&new), "leaf").unwrap().not_after;
    assert_eq!(
        server
            .metric("kafka_backup_operator_tls_certificate_expiry_timestamp_seconds")
            .await,
        not_after as f64
    );
}

#[tokio::test]
async fn keeps_the_old_certificate_when_the_new_one_is_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let pki = loopback_pki();
    write_pair(dir.path(), &pki);
    let server = Server::start(dir.path(), &cert_args(dir.path())).await;
    let client = http1_client(&[&pki.ca_cert_pem]);

    fs::write(dir.path().join("tls.crt"), "this is not a certificate\n").unwrap();
    eventually("a counted reload failure", || async {
        (reloads(&server).await == (0.0, 1.0)).then_some(())
    })
    .await;
    let cert_path = dir.path().join("tls.crt");
    let log = server.log();
    assert!(
        log.contains("ERROR")
            && log.contains(&format!("failed to load TLS certificate {}", cert_path.display())),
        "{log}"
    );
    let mut stream = connect(server.https, Arc::clone(&client), "localhost").await;
    assert_eq!(served_leaf(&stream), leaf_der(&pki));
    assert_eq!(tls_get(&mut stream, "/x").await.status, 404);
    assert_eq!(get(server.admin, "/readyz").await.status, 200);

    // A good pair afterwards is picked up.
    let next = loopback_pki();
    write_pair(dir.path(), &next);
    eventually("recovery with a good pair", || async {
        (reloads(&server).await.0 == 1.0).then_some(())
    })
    .await;
    let stream = connect(server.https, http1_client(&[&next.ca_cert_pem]), "localhost").await;
    assert_eq!(served_leaf(&stream), leaf_der(&next));
    assert_eq!(reloads(&server).await, (1.0, 1.0));
}

#[tokio::test]
async fn exits_zero_on_sigterm_without_waiting_for_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = loopback_pki();
    write_pair(dir.path(), &pki);
    let mut server = Server::start(dir.path(), &cert_args(dir.path())).await;
    // An idle keep-alive connection must not hold up the shutdown.
    let mut idle = connect(server.https, http1_client(&[&pki.ca_cert_pem]), "localhost").await;
    assert_eq!(tls_get(&mut idle, "/x").await.status, 404);

    let start = Instant::now();
    server.sigterm();
    let status = server.wait_exit(Duration::from_secs(10)).await;
    let status = status.unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", server.log()));
    assert!(status.success(), "{status}:\n{}", server.log());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(server.log().contains("SIGTERM"), "{}", server.log());
    assert!(
        TcpStream::connect(server.https).await.is_err(),
        "HTTPS port still open"
    );
}

#[tokio::test]
async fn refuses_to_start_when_a_listener_cannot_bind() {
    let dir = tempfile::tempdir().unwrap();
    let pki = loopback_pki();
    write_pair(dir.path(), &pki);
    let taken = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let output = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            &addr.to_string(),
        ])
        .args(cert_args(dir.path()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("failed to bind admin listener on {addr}")),
        "{stderr}"
    );

    let output = Command::new(BIN)
        .args(["serve", "--tls-cert"])
        .arg(dir.path().join("tls.crt"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-key"));
}

#[tokio::test]
async fn creates_a_development_ca_once_and_serves_a_certificate_it_signs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let args = vec![OsString::from("--state-dir"), state.clone().into_os_string()];
    let mut server = Server::start(dir.path(), &args).await;

    let tls = state.join("tls");
    let ca = fs::read_to_string(tls.join("ca.crt")).unwrap();
    assert_eq!(
        fs::metadata(tls.join("tls.key")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!tls.join("ca.key").exists(), "the CA key is not kept");
    let log = server.log();
    assert!(
        log.contains(&format!("curl --cacert {}", tls.join("ca.crt").display())),
        "{log}"
    );
    for name in ["127.0.0.1", "localhost", "kafka-backup-operator.kafka-backup.svc"] {
        let mut stream = connect(server.https, http1_client(&[&ca]), name).await;
        assert_not_found_status(&tls_get(&mut stream, "/").await);
    }

    // A later start reuses the CA and the certificate.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(10)).await.unwrap().success());
    let leaf = fs::read(tls.join("tls.crt")).unwrap();
    let server = Server::start(dir.path(), &args).await;
    assert_eq!(fs::read_to_string(tls.join("ca.crt")).unwrap(), ca);
    assert_eq!(fs::read(tls.join("tls.crt")).unwrap(), leaf);
    let stream = connect(server.https, http1_client(&[&ca]), "::1").await;
    assert_eq!(
        served_leaf(&stream),
        CertificateDer::from_pem_slice(&leaf).unwrap().to_vec()
    );
    assert!(server.log().contains("reusing development TLS certificate"));
}

#[test]
fn certs_subcommand_writes_a_ca_a_serving_certificate_and_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = Command::new(BIN)
        .args([
            "certs",
            "--service-name",
            "svc",
            "--namespace",
            "ns",
            "--days",
            "10",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    for (file, mode) in [
        ("ca.crt", 0o644),
        ("ca.key", 0o600),
        ("tls.crt", 0o644),
        ("tls.key", 0o600),
    ] {
        let meta = fs::metadata(out.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{file}");
    }
    let ca_pem = fs::read(out.join("ca.crt")).unwrap();
    let leaf = CertificateDer::from_pem_slice(&fs::read(out.join("tls.crt")).unwrap()).unwrap();

    // The names, read from the certificate.
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let san = parsed.subject_alternative_name().unwrap().unwrap();
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(dns) => dns_names.push(*dns),
            GeneralName::IPAddress(ip) => ips.push(ip.to_vec()),
            other => panic!("unexpected name {other}"),
        }
    }
    for expected in [
        "svc",
        "svc.ns",
        "svc.ns.svc",
        "svc.ns.svc.cluster.local",
        "localhost",
    ] {
        assert!(dns_names.contains(&expected), "{dns_names:?}");
    }
    assert!(ips.contains(&vec![127, 0, 0, 1]), "{ips:?}");
    let days = (parsed.validity().not_after.timestamp() - parsed.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 10, "10 days plus the one-hour backdate, rounded down");

    // Each name verifies against the CA, as a TLS client would check it.
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca_pem).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    for name in [
        "svc",
        "svc.ns",
        "svc.ns.svc",
        "svc.ns.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ] {
        let server_name = ServerName::try_from(name).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &server_name, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let wrong = ServerName::try_from("other.ns.svc").unwrap();
    assert!(
        verifier
            .verify_server_cert(&leaf, &[], &wrong, &[], UnixTime::now())
            .is_err()
    );

    // Manifests with the CA bundle filled in, for this Service.
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&ca_pem);
    let manifests = out.join("manifests");
    let mut with_bundle = Vec::new();
    let mut stack = vec![manifests.clone()];
    while let Some(path) = stack.pop() {
        for entry in fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if fs::read_to_string(&path).unwrap().contains(&ca_bundle) {
                with_bundle.push(path.strip_prefix(&manifests).unwrap().to_owned());
            }
        }
    }
    assert!(
        !with_bundle.is_empty(),
        "no manifest under {} carries the CA bundle",
        manifests.display()
    );
    assert!(
        with_bundle.iter().any(|p| p.starts_with("crds")),
        "{with_bundle:?}"
    );
}
