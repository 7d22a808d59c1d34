//! Catalog API latency with 10,000 offset snapshots in one namespace, over real HTTPS with a client
//! certificate, against the real `serve` binary (embedded default: the snapshots are files in its
//! default catalog directory, the client is its development admin).
//!
//! Measures, sequentially on one keep-alive HTTP/1.1 connection:
//! - list as a Table (what `kubectl get osnap` asks for): all 10,000 rows at once, and pages of 500
//!   (kubectl's default `--chunk-size`);
//! - list as JSON (all 10,000 items, no offsets);
//! - get of one snapshot (JSON with every offset: reads the stored document);
//! - get as a Table;
//!
//! and prints p50 / p99 / max per request, the time the catalog took to index the snapshots at
//! start, and the server's resident memory (VmRSS, VmHWM) after the runs.
//!
//! Run with `cargo bench --bench catalog` (release build of the benchmark and the binary).
//! `KBO_BENCH_SNAPSHOTS` and `KBO_BENCH_ROUNDS` change the catalog size and the number of requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // benchmark code: a failure is the report

use std::{
    fs,
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use kafka_backup_operator::storage::snapshot::{
    GroupOffsets, OffsetSnapshot, PartitionOffset, SnapshotSource,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{
        self, ClientConfig, RootCertStore,
        pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    },
};

const BIN: &str = env!("CARGO_BIN_EXE_kafka-backup-operator");
const NAMESPACE: &str = "default";

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A snapshot like the offset engine writes: 2 groups, 3 topics, 12 partitions.
fn snapshot(i: usize) -> OffsetSnapshot {
    let mut groups = std::collections::BTreeMap::new();
    for g in 0..2 {
        let mut topics = std::collections::BTreeMap::new();
        for t in 0..3 {
            if (g + t) % 2 == 0 || t == 1 {
                let partitions = (0..4)
                    .map(|p| {
                        (
                            p,
                            PartitionOffset {
                                offset: (i * 1000 + p as usize) as i64,
                                metadata: String::new(),
                                timestamp: 1_733_054_400_000,
                            },
                        )
                    })
                    .collect();
                topics.insert(format!("topic-{t}"), partitions);
            }
        }
        groups.insert(format!("group-{g}"), GroupOffsets { topics });
    }
    OffsetSnapshot {
        snapshot_id: format!("snapshot-{i:05}"),
        timestamp: chrono::Utc::now() - chrono::Duration::minutes(i as i64),
        cluster: "kafka-0.kafka:9092,kafka-1.kafka:9092".into(),
        groups,
        source: Some(SnapshotSource {
            kind: "KafkaOffsetRollback".into(),
            namespace: Some(NAMESPACE.into()),
            name: format!("rollback-{}", i % 50),
            uid: None,
        }),
        expires_at: None,
    }
}

struct Serve {
    child: Child,
    https: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn plain_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    Some(out)
}

fn rss(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn client_config(state: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let ca = fs::read(state.join("tls/ca.crt")).unwrap();
    roots.add(CertificateDer::from_pem_slice(&ca).unwrap()).unwrap();
    let cert = fs::read(state.join("apiserver/admin.crt")).unwrap();
    let key = fs::read(state.join("apiserver/admin.key")).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(&cert).unwrap()],
            PrivateKeyDer::from_pem_slice(&key).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One GET on a keep-alive connection: (status, body length).
async fn get(stream: &mut TlsStream<TcpStream>, path: &str, accept: &str) -> (u16, usize) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // TLS records can stay buffered in the session until flushed.
    stream.flush().await.unwrap();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no response head for {path} after {} bytes", buf.len()))
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut have = buf.len() - head_end - 4;
    while have < length {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no more body after {have} of {length} bytes of {path}:\n{head}"))
            .unwrap();
        assert!(n > 0, "connection closed");
        have += n;
    }
    (status, length)
}

struct Stats {
    name: String,
    p50: Duration,
    p99: Duration,
    max: Duration,
    bytes: usize,
    count: usize,
}

async fn measure(
    stream: &mut TlsStream<TcpStream>,
    name: &str,
    rounds: usize,
    accept: &str,
    path: impl Fn(usize) -> String,
) -> Stats {
    eprintln!("measuring {name} ({rounds} requests)");
    // Warm-up.
    for i in 0..3 {
        get(stream, &path(i), accept).await;
    }
    let mut times = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for i in 0..rounds {
        let start = Instant::now();
        let (status, length) = get(stream, &path(i), accept).await;
        times.push(start.elapsed());
        assert_eq!(status, 200, "{name}");
        bytes = length;
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    Stats {
        name: name.to_owned(),
        p50: at(0.50),
        p99: at(0.99),
        max: *times.last().unwrap(),
        bytes,
        count: rounds,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let snapshots = env_usize("KBO_BENCH_SNAPSHOTS", 10_000);
    let rounds = env_usize("KBO_BENCH_ROUNDS", 200);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let catalog = state.join("catalog/offset-snapshots");
    fs::create_dir_all(&catalog).unwrap();
    let mut stored_bytes = 0;
    for i in 0..snapshots {
        let s = snapshot(i);
        let bytes = s.to_bytes();
        stored_bytes += bytes.len();
        fs::write(catalog.join(format!("{}.json", s.snapshot_id)), bytes).unwrap();
    }

    let https = free_addr();
    let admin = free_addr();
    let started = Instant::now();
    let child = Command::new(BIN)
        .args(["serve", "--kubernetes", "off", "--listen", &https.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .arg("--state-dir")
        .arg(&state)
        .args(["--catalog-refresh-interval", "3600"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let serve = Serve { child, https, admin };
    let series = "kafka_backup_operator_apiserver_catalog_objects{resource=\"offsetsnapshots\"} ";
    let want = format!("{series}{snapshots}");
    loop {
        if let Some(text) = plain_get(serve.admin, "/metrics").await
            && text.lines().any(|l| l == want)
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "catalog not loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let indexed = started.elapsed();
    let (rss_loaded, _) = rss(serve.child.id());

    let tcp = TcpStream::connect(serve.https).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut stream = TlsConnector::from(client_config(&state))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let base = format!("/apis/catalog.kafka.oso.sh/v1alpha1/namespaces/{NAMESPACE}/offsetsnapshots");
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let json = "application/json";
    let mut results = Vec::new();
    results.push(
        measure(&mut stream, "list Table, all rows", rounds, table, |_| {
            base.clone()
        })
        .await,
    );
    results.push(
        measure(
            &mut stream,
            "list Table, limit=500 (kubectl chunk)",
            rounds,
            table,
            |_| format!("{base}?limit=500"),
        )
        .await,
    );
    results.push(
        measure(&mut stream, "list JSON, all items", rounds, json, |_| {
            base.clone()
        })
        .await,
    );
    results.push(
        measure(&mut stream, "get JSON (full offsets)", rounds * 5, json, |i| {
            format!("{base}/snapshot-{:05}", (i * 7919) % snapshots)
        })
        .await,
    );
    results.push(
        measure(&mut stream, "get Table", rounds * 5, table, |i| {
            format!("{base}/snapshot-{:05}", (i * 104_729) % snapshots)
        })
        .await,
    );
    let (rss_after, hwm) = rss(serve.child.id());

    println!();
    println!(
        "catalog of {snapshots} offset snapshots in one namespace ({:.1} MiB stored), serve in {} mode",
        stored_bytes as f64 / 1048576.0,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("indexed at start-up in {:.2} s", indexed.as_secs_f64());
    println!();
    println!("| request | n | p50 ms | p99 ms | max ms | response bytes |");
    println!("|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {} |",
            r.name,
            r.count,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3,
            r.bytes
        );
    }
    println!();
    println!(
        "server RSS: {:.1} MiB after indexing, {:.1} MiB after the runs, peak {:.1} MiB",
        rss_loaded as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let list_p99 = results[0].p99;
    println!(
        "goal list Table p99 < 50 ms: {} ({:.2} ms)",
        if list_p99 < Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        },
        list_p99.as_secs_f64() * 1e3
    );
}
