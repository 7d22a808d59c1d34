//! The admin server: plain HTTP on its own port, for the kubelet's probes and Prometheus.
//!
//! - `GET /livez`: 200 `ok` while the process serves at all.
//! - `GET /readyz`: 200 `ok` when every readiness check passes, else 503 listing the failing ones
//!   (Kubernetes' `[-]name: reason` style). Checks are registered by name in [`Readiness`]; `serve`
//!   registers `tls` (certificate loaded), `https` (listener bound) and `shutdown` (draining).
//! - `GET /metrics`: the [`Metrics`] registry in the OpenMetrics text format.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tracing::error;

use super::AppState;
use crate::metrics::{self, Metrics};

/// Named readiness checks; ready when none is failing. Cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// Check name to failure reason; absent or `None` means passing.
    checks: Arc<Mutex<BTreeMap<&'static str, Option<String>>>>,
}

impl Readiness {
    /// No checks registered: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks check `name` as failing with `reason` (registering it if new).
    pub fn not_ready(&self, name: &'static str, reason: impl Into<String>) {
        self.lock().insert(name, Some(reason.into()));
    }

    /// Marks check `name` as passing.
    pub fn ready(&self, name: &'static str) {
        self.lock().insert(name, None);
    }

    /// The failing checks as `(name, reason)`, sorted by name; empty when ready.
    pub fn failing(&self) -> Vec<(&'static str, String)> {
        self.lock()
            .iter()
            .filter_map(|(name, reason)| reason.clone().map(|r| (*name, r)))
            .collect()
    }

    /// Whether every check passes.
    pub fn is_ready(&self) -> bool {
        self.failing().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Option<String>>> {
        // The map stays consistent even if a holder panicked: every update is a single insert.
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The admin router: `/livez`, `/readyz`, `/metrics`.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let failing = state.readiness.failing();
    if failing.is_empty() {
        return "ok".into_response();
    }
    let mut body = String::from("not ready\n");
    for (name, reason) in failing {
        body.push_str(&format!("[-]{name}: {reason}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    encode(&state.metrics)
}

fn encode(metrics: &Metrics) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            error!(error = %e, "serving /metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lists_failing_checks() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        readiness.not_ready("tls", "certificate not loaded");
        readiness.not_ready("https", "listener not bound");
        assert_eq!(
            readiness.failing(),
            [
                ("https", "listener not bound".to_owned()),
                ("tls", "certificate not loaded".to_owned())
            ]
        );
        readiness.ready("tls");
        readiness.ready("https");
        assert!(readiness.is_ready());
    }
}
