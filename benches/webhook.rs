//! Latency and throughput of `/validate` and `/convert` over TLS with keep-alive, side by side with
//! a bare axum + rustls server whose only handler returns a constant allowed AdmissionReview.
//!
//! `cargo bench --bench webhook` starts, in this one process:
//! - **ours**: the HTTPS router of `serve` ([`https_router`], with its metrics middleware, tracing
//!   spans recorded by a subscriber like `serve`'s at `info`, writing to a sink) on axum-server
//!   with the rustls configuration of `serve` ([`tls::server_config`]: ring, TLS 1.2/1.3, ALPN);
//! - **bare**: the same axum-server and rustls configuration, one handler that reads the body and
//!   answers a constant allowed AdmissionReview on every path;
//!
//! each on a tokio runtime with as many workers as there are CPUs (like `serve`), and drives them
//! with a hyper HTTP/1.1 client over tokio-rustls (TLS 1.3, keep-alive) on its own runtime in the
//! same process, so client and servers share the machine's CPUs:
//! 1. open loop: a fixed rate (default 2,000 requests/s) spread over several connections for a
//!    fixed time, latency measured from each request's scheduled start when the connection was
//!    still busy with the previous one (coordinated omission corrected), from its actual start
//!    otherwise (so the client timer's 1 ms granularity does not count);
//! 2. closed loop: N connections sending back to back for the same time, the maximum throughput.
//!
//! Both phases run in one-second slices that alternate between the two servers, so that a change
//! in the machine's load (other processes) hits both alike. For each, the CPU time of the server's
//! and the client's threads per request is reported too (from `/proc/self/task`), and before the
//! network runs, the in-process CPU time of the handlers and of the pure functions they call.
//!
//! Requests: `/validate` with a KafkaOffsetReset v1alpha1 CREATE review as the validating webhook
//! receives it (after the mutating webhook, with the `managedFields` and last-applied annotation
//! `kubectl apply` leaves), `/convert` with a one-object ConversionReview of the same object to
//! v1beta1.
//!
//! Knobs (environment): `KBO_BENCH_SECONDS` (default 10), `KBO_BENCH_RATE` (2000),
//! `KBO_BENCH_RATE_CONNECTIONS` (8), `KBO_BENCH_MAX_CONNECTIONS` (16), `KBO_BENCH_NO_LOG` (set: no
//! tracing subscriber for ours).

use std::{
    error::Error,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes as AxumBytes, http::header, response::IntoResponse};
use axum_server::tls_rustls::RustlsConfig;
use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes, client::conn::http1};
use hyper_util::rt::TokioIo;
use kafka_backup_operator::{
    api, certs,
    metrics::Metrics,
    server::{AppState, https_router, tls},
    webhook,
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};
use serde_json::{Value, json};
use tokio::{net::TcpStream, runtime::Runtime, task::JoinSet};
use tokio_rustls::TlsConnector;

type BoxError = Box<dyn Error + Send + Sync>;

const ALLOWED_REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"bench","allowed":true,"status":{}}}"#;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn server_runtime(name: &str) -> Result<Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()?)
}

/// Starts `router` on a free loopback port with the rustls configuration of `serve`.
fn start(runtime: &Runtime, router: Router, config: RustlsConfig) -> Result<SocketAddr, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let _guard = runtime.enter();
    let server = axum_server::from_tcp_rustls(listener, config)?;
    runtime.spawn(async move {
        if let Err(e) = server.serve(router.into_make_service()).await {
            eprintln!("server stopped: {e}");
        }
    });
    Ok(addr)
}

fn bare_router() -> Router {
    Router::new().fallback(|_body: AxumBytes| async {
        ([(header::CONTENT_TYPE, "application/json")], ALLOWED_REVIEW).into_response()
    })
}

/// The validating review and the conversion review the bench sends.
fn payloads() -> Result<(Vec<u8>, Vec<u8>), BoxError> {
    let object = json!({
        "apiVersion": "kafka.oso.sh/v1alpha1",
        "kind": "KafkaOffsetReset",
        "metadata": {
            "name": "reset-to-timestamp",
            "namespace": "kafka-backup",
            "uid": "4c1f8a2e-6b3d-4e7f-9a10-5d2c8b7e6f01",
            "generation": 1,
            "creationTimestamp": "2026-01-15T09:30:00Z",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"kafka.oso.sh/v1alpha1\",\"kind\":\"KafkaOffsetReset\",\"metadata\":{\"annotations\":{},\"name\":\"reset-to-timestamp\",\"namespace\":\"kafka-backup\"},\"spec\":{\"consumerGroups\":[\"order-processor\",\"payment-handler\"],\"createSnapshot\":true,\"kafkaCluster\":{\"bootstrapServers\":[\"kafka-0.kafka-brokers.kafka.svc:9093\",\"kafka-1.kafka-brokers.kafka.svc:9093\"],\"saslSecret\":{\"mechanism\":\"SCRAM-SHA-512\",\"name\":\"kafka-credentials\"},\"securityProtocol\":\"SASL_SSL\"},\"snapshotId\":\"before-reset-20241201\",\"strategy\":\"timestamp\",\"timestamp\":\"2024-12-01T10:00:00Z\"}}\n"
            },
            "managedFields": [{
                "manager": "kubectl-client-side-apply", "operation": "Update",
                "apiVersion": "kafka.oso.sh/v1alpha1", "time": "2026-01-15T09:30:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                             "f:spec": {".": {}, "f:consumerGroups": {}, "f:createSnapshot": {}, "f:kafkaCluster": {},
                                        "f:snapshotId": {}, "f:strategy": {}, "f:timestamp": {}}}
            }]
        },
        "spec": {
            "kafkaCluster": {
                "bootstrapServers": ["kafka-0.kafka-brokers.kafka.svc:9093", "kafka-1.kafka-brokers.kafka.svc:9093"],
                "securityProtocol": "SASL_SSL",
                "saslSecret": {"name": "kafka-credentials", "mechanism": "SCRAM-SHA-512"}
            },
            "consumerGroups": ["order-processor", "payment-handler"],
            "strategy": "timestamp",
            "timestamp": "2024-12-01T10:00:00Z",
            "createSnapshot": true,
            "snapshotId": "before-reset-20241201"
        }
    });
    // The validating webhook sees the object after the mutating one.
    let object = api::admission::mutate(&object)
        .map(|m| m.object)
        .unwrap_or(object);
    let gvk = json!({"group": "kafka.oso.sh", "version": "v1alpha1", "kind": "KafkaOffsetReset"});
    let gvr = json!({"group": "kafka.oso.sh", "version": "v1alpha1", "resource": "kafkaoffsetresets"});
    let review = json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "e911857d-c318-4a1a-9a2e-8f4a1c0d2b7e",
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": "reset-to-timestamp", "namespace": "kafka-backup", "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-client-side-apply"}
        }
    });
    let conversion = json!({
        "kind": "ConversionReview",
        "apiVersion": "apiextensions.k8s.io/v1",
        "request": {
            "uid": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            "desiredAPIVersion": "kafka.oso.sh/v1beta1",
            "objects": [review["request"]["object"].clone()]
        }
    });
    Ok((serde_json::to_vec(&review)?, serde_json::to_vec(&conversion)?))
}

/// One keep-alive HTTP/1.1 connection over TLS.
struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(addr: SocketAddr, tls: Arc<ClientConfig>) -> Result<Self, BoxError> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = TlsConnector::from(tls)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    /// Sends one POST and reads the whole answer.
    async fn post(&mut self, path: &str, body: &Bytes) -> Result<Bytes, BoxError> {
        self.sender.ready().await?;
        let request = Request::post(path)
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))?;
        let response = self.sender.send_request(request).await?;
        if response.status() != 200 {
            return Err(format!("{path}: HTTP {}", response.status()).into());
        }
        Ok(response.into_body().collect().await?.to_bytes())
    }
}

/// CPU seconds used so far by this process's threads, by thread name (Linux `/proc`, USER_HZ 100).
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // After the name: state is field 3, utime 14 and stime 15 (1-based, in the whole line).
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / 100.0;
    }
    out
}

/// CPU seconds used by threads called `name` between two [`cpu_by_thread`] readings.
fn cpu_delta(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
    name: &str,
) -> f64 {
    after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
}

/// Latencies, throughput and CPU of a series of slices against one server.
#[derive(Default)]
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: usize,
    server_cpu: f64,
    client_cpu: f64,
}

impl Run {
    fn percentile(&mut self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU per answered request, in microseconds.
    fn server_micros(&self) -> f64 {
        self.server_cpu * 1e6 / self.latencies.len().max(1) as f64
    }

    /// Client CPU per answered request, in microseconds.
    fn client_micros(&self) -> f64 {
        self.client_cpu * 1e6 / self.latencies.len().max(1) as f64
    }
}

/// What one connection's task hands back.
type Part = (Connection, Vec<Duration>, usize);

/// Adds one slice to `run`: its parts, its wall time, and the CPU the threads called `server` and
/// `client` used meanwhile.
fn add_slice(
    run: &mut Run,
    connections: &mut Vec<Connection>,
    parts: Vec<Part>,
    elapsed: Duration,
    cpu: [f64; 2],
) {
    for (connection, latencies, errors) in parts {
        connections.push(connection);
        run.latencies.extend(latencies);
        run.errors += errors;
    }
    run.elapsed += elapsed;
    run.server_cpu += cpu[0];
    run.client_cpu += cpu[1];
}

async fn open_all(addr: SocketAddr, tls: &Arc<ClientConfig>, n: u64) -> Result<Vec<Connection>, BoxError> {
    let mut connections = Vec::new();
    for _ in 0..n {
        connections.push(Connection::open(addr, Arc::clone(tls)).await?);
    }
    Ok(connections)
}

/// `rate` requests/s spread over `connections` for `duration`.
async fn fixed_rate(
    connections: &mut Vec<Connection>,
    path: &'static str,
    body: &Bytes,
    rate: u64,
    duration: Duration,
) -> (Vec<Part>, Duration) {
    let n = connections.len() as u64;
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(5);
    let mut tasks = JoinSet::new();
    for (c, mut connection) in connections.drain(..).enumerate() {
        let body = body.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut busy_until = start;
            let mut k = c as u64;
            while k < total {
                let scheduled = start + Duration::from_secs_f64(k as f64 / rate as f64);
                tokio::time::sleep_until(scheduled).await;
                let sent = tokio::time::Instant::now();
                // Late because the connection was busy: the wait counts. Late because of the timer: not.
                let from = if busy_until > scheduled { scheduled } else { sent };
                match connection.post(path, &body).await {
                    Ok(_) => {
                        busy_until = tokio::time::Instant::now();
                        latencies.push(busy_until - from);
                    }
                    Err(_) => errors += 1,
                }
                k += n;
            }
            (connection, latencies, errors)
        });
    }
    let parts = tasks.join_all().await;
    (parts, start.elapsed())
}

/// Every connection sends back to back for `duration`.
async fn closed_loop(
    connections: &mut Vec<Connection>,
    path: &'static str,
    body: &Bytes,
    duration: Duration,
) -> (Vec<Part>, Duration) {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for mut connection in connections.drain(..) {
        let body = body.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match connection.post(path, &body).await {
                    Ok(_) => latencies.push(sent.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (connection, latencies, errors)
        });
    }
    let parts = tasks.join_all().await;
    (parts, start.elapsed())
}

/// Mean CPU time of `f` over `n` calls, in microseconds.
fn per_call(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// Where the time of one review goes, in-process, without HTTP or TLS.
fn in_process(validate: &[u8], convert: &[u8]) -> Result<(), BoxError> {
    let review: Value = serde_json::from_slice(validate)?;
    let object = review["request"]["object"].clone();
    let conversion: Value = serde_json::from_slice(convert)?;
    let desired = conversion["request"]["desiredAPIVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let n = 20_000;
    let rows = [
        (
            "validate_review (whole /validate handler)",
            per_call(n, || {
                std::hint::black_box(webhook::admission::validate_review(validate));
            }),
        ),
        (
            "  of which api::admission::validate",
            per_call(n, || {
                std::hint::black_box(api::admission::validate(&object, None).is_ok());
            }),
        ),
        (
            "  of which parsing the review to JSON",
            per_call(n, || {
                std::hint::black_box(serde_json::from_slice::<Value>(validate).is_ok());
            }),
        ),
        (
            "mutate_review (whole /mutate handler)",
            per_call(n, || {
                std::hint::black_box(webhook::admission::mutate_review(validate));
            }),
        ),
        (
            "convert_review (whole /convert handler)",
            per_call(n, || {
                std::hint::black_box(webhook::conversion::convert_review(convert));
            }),
        ),
        (
            "  of which api::conversion::convert",
            per_call(n, || {
                std::hint::black_box(api::conversion::convert(object.clone(), &desired).is_ok());
            }),
        ),
    ];
    println!("in-process CPU per review (one thread, no HTTP/TLS):");
    for (what, micros) in rows {
        println!("  {what:<44} {micros:>8.1} µs");
    }
    println!();
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.3}ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), BoxError> {
    tls::install_crypto_provider();
    let seconds = env_number("KBO_BENCH_SECONDS", 10);
    let rate = env_number("KBO_BENCH_RATE", 2000);
    let rate_connections = env_number("KBO_BENCH_RATE_CONNECTIONS", 8);
    let max_connections = env_number("KBO_BENCH_MAX_CONNECTIONS", 16);

    // The same TLS setup as `serve`, for both servers.
    let pki = certs::generate(&["localhost".to_owned(), "127.0.0.1".to_owned()], 1)?;
    let chain = CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes())?;
    let server_tls = RustlsConfig::from_config(Arc::new(tls::server_config(chain, key)?));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let mut client_tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client_tls = Arc::new(client_tls);

    // Ours logs like `serve` (info), into a sink.
    if std::env::var_os("KBO_BENCH_NO_LOG").is_none() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .try_init();
    }

    let ours_runtime = server_runtime("ours")?;
    let bare_runtime = server_runtime("bare")?;
    let ours = start(
        &ours_runtime,
        https_router(AppState::new(Arc::new(Metrics::new()))),
        server_tls.clone(),
    )?;
    let bare = start(&bare_runtime, bare_router(), server_tls)?;
    let client = server_runtime("client")?;

    let (validate, convert) = payloads()?;
    let (validate, convert) = (Bytes::from(validate), Bytes::from(convert));
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    in_process(&validate, &convert)?;

    // What the requests get, once.
    let (allowed, converted) = client.block_on(async {
        let mut connection = Connection::open(ours, Arc::clone(&client_tls)).await?;
        let answer: Value = serde_json::from_slice(&connection.post("/validate", &validate).await?)?;
        let allowed = answer["response"]["allowed"].clone();
        let answer: Value = serde_json::from_slice(&connection.post("/convert", &convert).await?)?;
        let converted = answer["response"]["result"]["status"].clone();
        Ok::<_, BoxError>((allowed, converted))
    })?;

    println!(
        "webhook bench: {cpus} CPUs shared by both servers and the client; HTTP/1.1 keep-alive over TLS 1.3"
    );
    println!(
        "  /validate: KafkaOffsetReset v1alpha1 CREATE review, {} bytes (ours answers allowed={allowed});",
        validate.len()
    );
    println!(
        "  /convert: 1-object ConversionReview to v1beta1, {} bytes (ours answers {converted}); bare answers a constant allowed review",
        convert.len()
    );
    println!(
        "  fixed rate: {rate} req/s over {rate_connections} connections, {seconds} x 1 s; max: {max_connections} connections closed loop, {seconds} x 1 s"
    );
    println!(
        "  slices alternate between ours and bare; srv/cli µs/r: CPU time of the server's / the client's threads per request"
    );
    println!();
    println!(
        "{:<10} {:<5} | {:>9} {:>9} {:>7} {:>8} | {:>8} {:>9} {:>9} {:>8} {:>8} | {:>6}",
        "endpoint",
        "srv",
        "p50@rate",
        "p99@rate",
        "rate/s",
        "srv µs/r",
        "max rps",
        "p50@max",
        "p99@max",
        "srv µs/r",
        "cli µs/r",
        "errors"
    );
    let mut summary = Vec::new();
    for (path, body) in [("/validate", &validate), ("/convert", &convert)] {
        let servers = [("ours", ours), ("bare", bare)];
        let mut fixed: [Run; 2] = Default::default();
        let mut max: [Run; 2] = Default::default();
        client.block_on(async {
            let mut rate_connections_of = Vec::new();
            let mut max_connections_of = Vec::new();
            for (_, addr) in servers {
                let mut warm = open_all(addr, &client_tls, max_connections).await?;
                // Warm up: handshakes, allocator, caches.
                let (parts, _) = closed_loop(&mut warm, path, body, Duration::from_secs(1)).await;
                warm.extend(parts.into_iter().map(|(connection, _, _)| connection));
                max_connections_of.push(warm);
                rate_connections_of.push(open_all(addr, &client_tls, rate_connections).await?);
            }
            // One-second slices, alternating between the servers, so that a change in the load of
            // the machine hits both alike.
            for _ in 0..seconds {
                for (i, (name, _)) in servers.iter().enumerate() {
                    let before = cpu_by_thread();
                    let (parts, elapsed) = fixed_rate(
                        &mut rate_connections_of[i],
                        path,
                        body,
                        rate,
                        Duration::from_secs(1),
                    )
                    .await;
                    let after = cpu_by_thread();
                    let cpu = [
                        cpu_delta(&before, &after, name),
                        cpu_delta(&before, &after, "client"),
                    ];
                    add_slice(&mut fixed[i], &mut rate_connections_of[i], parts, elapsed, cpu);
                }
            }
            for _ in 0..seconds {
                for (i, (name, _)) in servers.iter().enumerate() {
                    let before = cpu_by_thread();
                    let (parts, elapsed) =
                        closed_loop(&mut max_connections_of[i], path, body, Duration::from_secs(1)).await;
                    let after = cpu_by_thread();
                    let cpu = [
                        cpu_delta(&before, &after, name),
                        cpu_delta(&before, &after, "client"),
                    ];
                    add_slice(&mut max[i], &mut max_connections_of[i], parts, elapsed, cpu);
                }
            }
            Ok::<_, BoxError>(())
        })?;
        for (i, (label, _)) in servers.iter().enumerate() {
            let (fixed, max) = (&mut fixed[i], &mut max[i]);
            println!(
                "{:<10} {:<5} | {:>9} {:>9} {:>7.0} {:>8.0} | {:>8.0} {:>9} {:>9} {:>8.0} {:>8.0} | {:>6}",
                path,
                label,
                ms(fixed.percentile(50.0)),
                ms(fixed.percentile(99.0)),
                fixed.rate(),
                fixed.server_micros(),
                max.rate(),
                ms(max.percentile(50.0)),
                ms(max.percentile(99.0)),
                max.server_micros(),
                max.client_micros(),
                fixed.errors + max.errors,
            );
        }
        let ours_p99 = fixed[0].percentile(99.0);
        summary.push(format!(
            "{path}: ours/bare max throughput {:.0}% (goal >= 80%); ours p99 at {rate} req/s {} (goal < 2 ms)",
            100.0 * max[0].rate() / max[1].rate(),
            ms(ours_p99),
        ));
    }
    println!();
    for line in summary {
        println!("{line}");
    }
    Ok(())
}
