//! The real `serve` binary on free loopback ports, and a small TLS client for it: rustls (ring)
//! with its own root store and raw HTTP/1.1 requests on keep-alive connections.

use std::{
    ffi::OsString,
    fs,
    net::{SocketAddr, TcpListener as StdTcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use kafka_backup_operator::certs::{self, Pki};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{
        self, ClientConfig, RootCertStore, SupportedProtocolVersion,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    },
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_kafka-backup-operator");
/// Bound on every network step and on waiting for a condition.
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// `--tls-reload-interval` of the servers started here, in seconds.
pub const RELOAD_INTERVAL: &str = "0.1";

// === process ===

/// A free loopback address (bound, then released).
pub fn free_addr() -> SocketAddr {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A running `serve`; killed on drop.
pub struct Server {
    pub child: Child,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Server {
    /// Starts `serve` on free ports with `args` and waits until `/readyz` answers 200.
    pub async fn start(log_dir: &Path, args: &[OsString]) -> Self {
        let https = free_addr();
        let admin = free_addr();
        let log = log_dir.join(format!("serve-{}.log", https.port()));
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--listen")
            .arg(https.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .arg("--tls-reload-interval")
            .arg(RELOAD_INTERVAL)
            .args(args)
            .env("RUST_LOG", "info,kafka_backup_operator=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KBO_") {
                command.env_remove(key);
            }
        }
        let mut server = Self {
            child: command.spawn().unwrap(),
            https,
            admin,
            log,
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("serve exited with {status} before ready:\n{}", server.log());
            }
            if let Ok(Ok(response)) =
                tokio::time::timeout(Duration::from_secs(2), try_get(admin, "/readyz")).await
                && response.status == 200
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "serve not ready within {TIMEOUT:?}:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits at most `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The value of the sample `series` (name with labels) on `/metrics`.
    pub async fn metric(&self, series: &str) -> f64 {
        let response = get(self.admin, "/metrics").await;
        assert_eq!(response.status, 200);
        let prefix = format!("{series} ");
        response
            .body
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {series} in:\n{}", response.body))
            .parse()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some`, for at most [`TIMEOUT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === HTTP/1.1 ===

/// One HTTP response, read whole.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends `GET path` on a keep-alive HTTP/1.1 connection and reads one response.
pub async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
) -> std::io::Result<Response> {
    send(stream, "GET", path, None).await
}

/// Sends `method path` with an optional JSON body on a keep-alive HTTP/1.1 connection and reads
/// one response (which must carry content-length).
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    path: &str,
    json_body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    if let Some(body) = json_body {
        request.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    request.extend_from_slice(b"\r\n");
    if let Some(body) = json_body {
        request.extend_from_slice(body);
    }
    stream.write_all(&request).await?;
    stream.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .expect("responses carry content-length");
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Response {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    })
}

/// Plain-HTTP GET on a new connection.
pub async fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr).await?;
    request(&mut stream, path).await
}

/// Plain-HTTP GET (admin server), bounded by [`TIMEOUT`].
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    tokio::time::timeout(TIMEOUT, try_get(addr, path))
        .await
        .unwrap()
        .unwrap()
}

// === TLS ===

/// A rustls (ring) client trusting `ca_pems`, offering `alpn` and `versions`.
pub fn client_config(
    ca_pems: &[&str],
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for pem in ca_pems {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS 1.2/1.3 client trusting `ca_pems`, offering HTTP/1.1 only.
pub fn http1_client(ca_pems: &[&str]) -> Arc<ClientConfig> {
    client_config(ca_pems, &[b"http/1.1"], rustls::DEFAULT_VERSIONS)
}

/// Connects and completes the TLS handshake for server name `name`.
pub async fn try_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// [`try_connect`], bounded by [`TIMEOUT`], failing the test on error.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> TlsStream<TcpStream> {
    tokio::time::timeout(TIMEOUT, try_connect(addr, config, name))
        .await
        .unwrap()
        .unwrap()
}

/// GET over TLS, bounded by [`TIMEOUT`].
pub async fn tls_get(stream: &mut TlsStream<TcpStream>, path: &str) -> Response {
    tokio::time::timeout(TIMEOUT, request(stream, path))
        .await
        .unwrap()
        .unwrap()
}

/// POST of a JSON body over TLS, bounded by [`TIMEOUT`].
pub async fn tls_post(stream: &mut TlsStream<TcpStream>, path: &str, body: &[u8]) -> Response {
    tokio::time::timeout(TIMEOUT, send(stream, "POST", path, Some(body)))
        .await
        .unwrap()
        .unwrap()
}

/// DER of the leaf certificate the server presented.
pub fn served_leaf(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// DER of `pki`'s leaf certificate.
pub fn leaf_der(pki: &Pki) -> Vec<u8> {
    CertificateDer::from_pem_slice(pki.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// A fresh CA and serving certificate for `localhost` and `127.0.0.1`.
pub fn loopback_pki() -> Pki {
    certs::generate(&["localhost".to_owned(), "127.0.0.1".to_owned()], 30).unwrap()
}

/// Writes `tls.key` and `tls.crt` of `pki` into `dir`.
pub fn write_pair(dir: &Path, pki: &Pki) {
    fs::write(dir.join("tls.key"), &pki.key_pem).unwrap();
    fs::write(dir.join("tls.crt"), &pki.cert_pem).unwrap();
}

/// `--tls-cert dir/tls.crt --tls-key dir/tls.key`.
pub fn cert_args(dir: &Path) -> Vec<OsString> {
    vec![
        "--tls-cert".into(),
        dir.join("tls.crt").into_os_string(),
        "--tls-key".into(),
        dir.join("tls.key").into_os_string(),
    ]
}
