//! The `serve` subcommand's servers: the HTTPS server (webhooks and aggregated API) and the admin
//! server (probes and metrics), their TLS material and their shutdown.
//!
//! - [`https_router`] is the one place where HTTPS routes are assembled; every response it gives is
//!   counted in `kafka_backup_operator_https_requests_total{code}`, and unknown paths get a
//!   Kubernetes `Status` 404 ([`status_response`]).
//! - [`admin::admin_router`] serves `/livez`, `/readyz`, `/metrics` on a separate plain-HTTP port.
//! - [`tls`] loads the certificate and key and reloads them when the files change; without
//!   `--tls-cert/--tls-key` a development CA and certificate are created in the state directory
//!   ([`crate::certs::ensure_dev_certs`]).
//! - [`run`] binds both listeners, serves until SIGTERM or SIGINT, then stops accepting and drains
//!   in-flight requests for at most [`DRAIN_TIMEOUT`] ([`shutdown`]).

#![warn(missing_docs)]

pub mod admin;
pub mod shutdown;
pub mod tls;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use admin::Readiness;

use crate::{certs, metrics::Metrics};

/// Longest time in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of the state directory under `$XDG_STATE_HOME` (or `$HOME/.local/state`).
pub const STATE_DIR_NAME: &str = "kafka-backup-operator";

/// Readiness check: the serving certificate is loaded.
pub const READY_TLS: &str = "tls";
/// Readiness check: the HTTPS listener is bound.
pub const READY_HTTPS: &str = "https";
/// Readiness check: the process is not shutting down.
pub const READY_SHUTDOWN: &str = "shutdown";

/// Errors of `serve`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Only one of `--tls-cert` and `--tls-key` was given.
    #[error("failed to configure TLS: {given} was given without {missing}; pass both or neither")]
    IncompleteTlsFlags {
        /// The flag given.
        given: &'static str,
        /// The flag missing.
        missing: &'static str,
    },
    /// No state directory was given and none can be derived from the environment.
    #[error(
        "failed to determine the state directory: neither XDG_STATE_HOME nor HOME is set; pass --state-dir"
    )]
    NoStateDir,
    /// Development certificates could not be created or read.
    #[error("failed to prepare development TLS certificates: {0}")]
    DevCerts(#[source] certs::Error),
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::Error),
    /// A listener could not be bound.
    #[error("failed to bind {what} listener on {addr}: {source}")]
    Bind {
        /// `HTTPS` or `admin`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A server stopped with an error.
    #[error("failed to serve {what} on {addr}: {source}")]
    Serve {
        /// `HTTPS` or `admin`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The tokio runtime could not be started.
    #[error("failed to start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Signal handlers could not be installed.
    #[error("failed to install signal handlers: {0}")]
    Signal(#[source] std::io::Error),
    /// The aggregated API could not be started.
    #[error(transparent)]
    ApiServer(#[from] crate::apiserver::Error),
}

/// Flags of the `serve` subcommand that concern the servers.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the HTTPS server (webhooks, aggregated API).
    #[arg(
        long,
        env = "KBO_LISTEN",
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin server (/livez, /readyz, /metrics).
    #[arg(
        long,
        env = "KBO_ADMIN_LISTEN",
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_listen: SocketAddr,
    /// PEM certificate chain (leaf first) of the HTTPS server; requires --tls-key. Without both, a
    /// development CA and certificate are created in the tls/ folder of --state-dir.
    #[arg(long, env = "KBO_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; requires --tls-cert.
    #[arg(long, env = "KBO_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Directory for local state such as development certificates
    /// [default: $XDG_STATE_HOME/kafka-backup-operator or $HOME/.local/state/kafka-backup-operator].
    #[arg(long, env = "KBO_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How often the certificate and key files are checked for changes, in seconds (fractions allowed).
    #[arg(
        long,
        env = "KBO_TLS_RELOAD_INTERVAL",
        value_name = "SECONDS",
        default_value = "2",
        value_parser = parse_interval,
    )]
    pub tls_reload_interval: Duration,
    /// Flags of the aggregated catalog API (boxed: they are many).
    #[command(flatten)]
    pub apiserver: Box<crate::apiserver::config::ApiServerArgs>,
    /// Flags of the reconciler (started when a Kubernetes API is reachable).
    #[command(flatten)]
    pub reconciler: crate::reconciler::ReconcilerArgs,
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err("must be more than 0 and at most 86400 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl ServeArgs {
    /// The state directory: `--state-dir`, else `$XDG_STATE_HOME/kafka-backup-operator`, else
    /// `$HOME/.local/state/kafka-backup-operator`.
    pub fn state_dir(&self) -> Result<PathBuf, Error> {
        state_dir(self.state_dir.as_deref())
    }

    /// The certificate files to serve: the flags', or development ones (created if needed).
    pub fn tls_files(&self) -> Result<tls::TlsFiles, Error> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (Some(_), None) => Err(Error::IncompleteTlsFlags {
                given: "--tls-cert",
                missing: "--tls-key",
            }),
            (None, Some(_)) => Err(Error::IncompleteTlsFlags {
                given: "--tls-key",
                missing: "--tls-cert",
            }),
            (None, None) => dev_tls_files(&self.state_dir()?.join("tls")),
        }
    }
}

/// The state directory of `serve` and `run`: `flag` (`--state-dir`), else
/// `$XDG_STATE_HOME/kafka-backup-operator`, else `$HOME/.local/state/kafka-backup-operator`.
pub fn state_dir(flag: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(dir) = flag {
        return Ok(dir.to_owned());
    }
    let non_empty = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("XDG_STATE_HOME")
        .or_else(|| non_empty("HOME").map(|home| home.join(".local").join("state")))
        .map(|base| base.join(STATE_DIR_NAME))
        .ok_or(Error::NoStateDir)
}

fn dev_tls_files(dir: &Path) -> Result<tls::TlsFiles, Error> {
    let names = certs::serving_names(certs::DEFAULT_SERVICE_NAME, certs::DEFAULT_NAMESPACE)
        .map_err(Error::DevCerts)?;
    let dev = certs::ensure_dev_certs(dir, &names).map_err(Error::DevCerts)?;
    Ok(tls::TlsFiles {
        cert: dev.paths.cert,
        key: dev.paths.key,
    })
}

/// State shared by the handlers of both servers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The readiness checks behind `/readyz`.
    pub readiness: Readiness,
    /// The aggregated API, when it is served.
    pub apiserver: Option<Arc<crate::apiserver::ApiServer>>,
    /// Who may approve a plan (the validating webhook asks the API server).
    pub approvers: crate::webhook::approvers::Approvers,
}

impl AppState {
    /// State with fresh metrics and no readiness checks.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            readiness: Readiness::new(),
            apiserver: None,
            approvers: crate::webhook::approvers::Approvers::unavailable(
                "no Kubernetes API client was given to this server",
            ),
        }
    }
}

/// The HTTPS router. Webhook routes (`/validate`, `/mutate`, `/convert`) and the aggregated API
/// (`/apis/...`, `/openapi/...`) are merged here; anything else is a Kubernetes `Status` 404. Every
/// response is counted by status code.
pub fn https_router(state: AppState) -> Router {
    Router::new()
        .merge(crate::webhook::router())
        .merge(crate::apiserver::router(state.apiserver.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            count_requests,
        ))
        .with_state(state)
}

async fn not_found() -> Response {
    status_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

async fn count_requests(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    metrics.https.request(response.status());
    debug!(%method, %path, status = response.status().as_u16(), "https request");
    response
}

/// A Kubernetes `Status` (`kind: Status`, `apiVersion: v1`) failure response with HTTP status `code`,
/// machine-readable `reason` (e.g. `NotFound`, `Forbidden`) and human-readable `message`.
pub fn status_response(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let status = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.into()),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
        ..Status::default()
    };
    (code, axum::Json(status)).into_response()
}

/// Sets up logging to stderr for the subcommands: `RUST_LOG` filter, `info` by default. Does nothing
/// if a global subscriber is already set.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Runs [`run`] on a new multi-threaded tokio runtime, for a synchronous `main`.
pub fn serve_blocking(args: ServeArgs) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let result = runtime.block_on(run(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Runs the servers until SIGTERM or SIGINT, then drains for at most [`DRAIN_TIMEOUT`].
///
/// Fails when the TLS material cannot be prepared or a listener cannot be bound (naming the file or
/// address), or when a server stops with an error.
pub async fn run(args: ServeArgs) -> Result<(), Error> {
    tls::install_crypto_provider();
    let shutdown = shutdown::Shutdown::on_signals().map_err(Error::Signal)?;
    let mut metrics = Metrics::new();
    let api_metrics = crate::apiserver::metrics::ApiServerMetrics::register(
        metrics.registry_mut().sub_registry_with_prefix("apiserver"),
    );
    let metrics = Arc::new(metrics);
    let mut state = AppState::new(Arc::clone(&metrics));
    state.readiness.not_ready(READY_TLS, "TLS certificate not loaded");
    state.readiness.not_ready(READY_HTTPS, "HTTPS listener not bound");

    let files = args.tls_files()?;
    let material = tls::load(&files).await?;
    tls::record_loaded(&files, &material, &metrics);
    let rustls_config = RustlsConfig::from_config(Arc::clone(&material.config));
    state.readiness.ready(READY_TLS);

    let state_dir = args.state_dir().ok();
    let serving_ca = match (&args.tls_cert, &state_dir) {
        (None, Some(dir)) => Some(dir.join("tls").join(certs::CA_CERT_FILE)),
        _ => None,
    };
    let api = crate::apiserver::start(
        &args.apiserver,
        crate::apiserver::StartOptions {
            state_dir,
            listen: args.listen,
            serving_ca,
            readiness: state.readiness.clone(),
            metrics: Some(api_metrics),
            resource_namespaces: args.reconciler.namespaces.clone(),
        },
    )
    .await?;
    state.apiserver = Some(Arc::clone(&api.api));
    // A client is only configured here (nothing is asked before an approval arrives); without a
    // Kubernetes API there is no one to ask who may approve, and approvals are refused.
    state.approvers = match kube::Client::try_default().await {
        Ok(client) => crate::webhook::approvers::Approvers::new(client),
        Err(e) => {
            crate::webhook::approvers::Approvers::unavailable(format!("no Kubernetes API configured ({e})"))
        }
    };
    let catalog_hook = crate::apiserver::feed::reconciler_hook(Arc::clone(&api.api.catalog));
    let snapshot_lookup = crate::apiserver::feed::snapshot_lookup(Arc::clone(&api.api.catalog));

    let https_listener = bind_std(args.listen).map_err(|source| Error::Bind {
        what: "HTTPS",
        addr: args.listen,
        source,
    })?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .map_err(|source| Error::Bind {
            what: "admin",
            addr: args.admin_listen,
            source,
        })?;
    let https_addr = https_listener.local_addr().unwrap_or(args.listen);
    let admin_addr = admin_listener.local_addr().unwrap_or(args.admin_listen);
    let handle = axum_server::Handle::new();
    let https_server = axum_server::from_tcp(https_listener)
        .map_err(|source| Error::Bind {
            what: "HTTPS",
            addr: args.listen,
            source,
        })?
        .acceptor(crate::apiserver::tls::ClientCertAcceptor::new(
            rustls_config.clone(),
        ))
        .handle(handle.clone());
    state.readiness.ready(READY_HTTPS);
    info!(%https_addr, %admin_addr, "serving HTTPS (/validate, /mutate, /convert, /apis/catalog.kafka.oso.sh, /openapi) and admin (/livez, /readyz, /metrics)");

    let drain = shutdown.drain_token();
    let force = shutdown.force_token();
    let https_done = CancellationToken::new();
    // Whichever server stops first (with an error or not) stops the others.
    let stop_all = |result: Result<(), Error>| {
        if let Err(e) = &result {
            warn!(error = %e, "server stopped; shutting down");
        }
        drain.cancel();
        result
    };

    let https = async {
        let result = https_server
            .serve(https_router(state.clone()).into_make_service())
            .await
            .map_err(|source| Error::Serve {
                what: "HTTPS",
                addr: https_addr,
                source,
            });
        https_done.cancel();
        stop_all(result)
    };
    let https_drain = async {
        drain.cancelled().await;
        state.readiness.not_ready(READY_SHUTDOWN, "shutting down");
        handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
        tokio::select! {
            () = https_done.cancelled() => {}
            () = force.cancelled() => handle.shutdown(),
        }
    };
    let admin = async {
        let server = axum::serve(admin_listener, admin::admin_router(state.clone()))
            .with_graceful_shutdown(drain.clone().cancelled_owned());
        let result = tokio::select! {
            result = server => result.map_err(|source| Error::Serve { what: "admin", addr: admin_addr, source }),
            () = deadline(&drain, &force) => Ok(()),
        };
        stop_all(result)
    };
    let reloader = tls::Reloader::new(
        files,
        rustls_config,
        Arc::clone(&metrics),
        material.fingerprint,
        args.tls_reload_interval,
    )
    .run(drain.clone());

    let catalog = api.run(drain.clone());
    // The reconciler runs when a Kubernetes API is reachable; without one `serve` still serves.
    let reconciler = async {
        if args.reconciler.no_reconciler {
            info!("the reconciler is off (--no-reconciler)");
            return;
        }
        let Some(client) = crate::reconciler::connect().await else {
            return;
        };
        let hooks = crate::reconciler::Hooks {
            catalog: Some(catalog_hook),
            snapshot_lookup: Some(snapshot_lookup),
        };
        let mut reconciler_args = args.reconciler.clone();
        reconciler_args.pvc_root = args.apiserver.pvc_root.clone();
        if let Err(e) = crate::reconciler::run(
            client,
            reconciler_args,
            Arc::clone(&metrics),
            hooks,
            drain.clone(),
        )
        .await
        {
            warn!(error = %e, "the reconciler stopped");
        }
    };
    let (https_result, admin_result, (), (), (), ()) =
        tokio::join!(https, admin, https_drain, reloader, catalog, reconciler);
    https_result?;
    admin_result?;
    info!("servers stopped");
    Ok(())
}

/// Completes [`DRAIN_TIMEOUT`] after `drain` fires, or when `force` fires.
async fn deadline(drain: &CancellationToken, force: &CancellationToken) {
    tokio::select! {
        () = async { drain.cancelled().await; tokio::time::sleep(DRAIN_TIMEOUT).await } => {}
        () = force.cancelled() => {}
    }
}

fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_parses_fractions_and_refuses_nonsense() {
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
