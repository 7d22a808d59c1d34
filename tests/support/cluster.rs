//! The cluster of `KUBECONFIG`, for the ignored `e2e_*` tests (README.md, "In a cluster").
//!
//! Without `KUBECONFIG` (or without the variable a test names) a test fails at once with a
//! message saying what it needs, never with a panic deep in a client.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// What every cluster test needs first.
pub const NEEDS_A_CLUSTER: &str = "this test needs a Kubernetes cluster: set KUBECONFIG to its kubeconfig \
     (README.md, \"In a cluster\", says what to install first)";

/// The kubeconfig of the cluster the tests run against.
pub fn kubeconfig() -> String {
    std::env::var("KUBECONFIG")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| panic!("{NEEDS_A_CLUSTER}"))
}

/// The value of `var`, which `what` needs.
pub fn required(var: &str, what: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("this test needs {var}: {what} (README.md, \"In a cluster\")"))
}

/// A client of the cluster of `KUBECONFIG`, with ring installed as the process's rustls crypto
/// provider first, as `serve` does (with two providers compiled in, rustls has no default).
pub async fn client() -> kube::Client {
    let path = kubeconfig();
    kafka_backup_operator::server::tls::install_crypto_provider();
    kube::Client::try_default()
        .await
        .unwrap_or_else(|e| panic!("no client for the cluster of KUBECONFIG={path}: {e}"))
}

/// What one kubectl run printed.
pub struct Kubectl {
    /// Exit status 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error (warnings included).
    pub stderr: String,
}

impl Kubectl {
    /// Its standard output, asserting it succeeded.
    pub fn success(&self) -> &str {
        assert!(self.ok, "kubectl failed:\n{}\n{}", self.stdout, self.stderr);
        &self.stdout
    }
}

/// Runs `kubectl args` against the cluster of `KUBECONFIG`, with `stdin` as its input.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Kubectl {
    kubeconfig();
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kubectl does not run: {e}"));
    let mut input = child.stdin.take().expect("kubectl's stdin");
    if let Some(text) = stdin {
        input
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("writing to kubectl: {e}"));
    }
    drop(input);
    let output = child.wait_with_output().expect("kubectl ends");
    Kubectl {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits until `done` holds, checking every second, at most `limit`; panics with `what`.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A namespace made for one test (deleted when dropped, without waiting).
pub struct Namespace(pub String);

impl Namespace {
    /// Creates a namespace named `prefix-<unique>`.
    pub fn create(prefix: &str) -> Namespace {
        let name = super::unique(prefix);
        kubectl(&["create", "namespace", &name], None).success();
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(
            &[
                "delete",
                "namespace",
                &self.0,
                "--ignore-not-found",
                "--wait=false",
            ],
            None,
        );
    }
}
