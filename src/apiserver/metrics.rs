//! Metrics of the aggregated API (`kafka_backup_operator_apiserver_*`), registered by `serve` with
//! [`crate::metrics::Metrics::registry_mut`] before the registry is shared:
//!
//! - `requests_total{verb, resource, code}`: requests answered by the catalog API;
//! - `request_duration_seconds{verb}`: their latency;
//! - `catalog_objects{resource}`: objects in the catalog;
//! - `catalog_refreshes_total{outcome}`: refreshes of one storage location;
//! - `catalog_snapshots_expired_total`: offset snapshots deleted because their `expiresAt` passed;
//! - `authorizations_total{decision, source}`: authorization decisions and where they came from.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::resources::Resource;
use crate::metrics::{Outcome, OutcomeLabels};

/// Label set of `requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Kubernetes verb (`get`, `list`, `delete`) or `discovery`.
    pub verb: String,
    /// Resource (with `/subresource`), empty for discovery.
    pub resource: String,
    /// HTTP status code.
    pub code: u16,
}

/// Label set `{verb}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    /// Kubernetes verb.
    pub verb: String,
}

/// Label set `{resource}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// Resource plural.
    pub resource: String,
}

/// Label set of `authorizations_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `allow` or `deny`.
    pub decision: String,
    /// `cache`, `subjectaccessreview`, `policy` or `builtin`.
    pub source: String,
}

/// The aggregated API's metric families. Cheap to clone (shared counters).
#[derive(Debug, Clone)]
pub struct ApiServerMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<VerbLabels, Histogram>,
    objects: Family<ResourceLabels, Gauge>,
    refreshes: Family<OutcomeLabels, Counter>,
    expired: Counter,
    authorizations: Family<DecisionLabels, Counter>,
}

impl ApiServerMetrics {
    /// Registers the families in `registry` (the `apiserver` sub-registry).
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered by the aggregated catalog API, by verb, resource and HTTP status code",
            requests.clone(),
        );
        let duration = Family::<VerbLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
        });
        registry.register(
            "request_duration_seconds",
            "Latency of the aggregated catalog API's answers, by verb",
            duration.clone(),
        );
        let objects = Family::<ResourceLabels, Gauge>::default();
        for resource in Resource::ALL {
            drop(objects.get_or_create(&ResourceLabels {
                resource: resource.plural().to_owned(),
            }));
        }
        registry.register(
            "catalog_objects",
            "Objects in the catalog, by resource",
            objects.clone(),
        );
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        for outcome in [Outcome::Success, Outcome::Failure] {
            drop(refreshes.get_or_create(&OutcomeLabels { outcome }));
        }
        registry.register(
            "catalog_refreshes",
            "Listings of one catalog storage location, by outcome",
            refreshes.clone(),
        );
        let expired = Counter::default();
        registry.register(
            "catalog_snapshots_expired",
            "Offset snapshots the catalog deleted because their retention (expiresAt) ended",
            expired.clone(),
        );
        let authorizations = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "authorizations",
            "Authorization decisions of the catalog API, by decision and by where they came from",
            authorizations.clone(),
        );
        Self {
            requests,
            duration,
            objects,
            refreshes,
            expired,
            authorizations,
        }
    }

    /// Counts and times one answered request.
    pub fn request(&self, verb: &str, resource: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                code,
            })
            .inc();
        self.duration
            .get_or_create(&VerbLabels {
                verb: verb.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the number of objects of `resource`.
    pub fn set_objects(&self, resource: Resource, count: usize) {
        self.objects
            .get_or_create(&ResourceLabels {
                resource: resource.plural().to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one refresh of one location.
    pub fn refresh(&self, outcome: Outcome) {
        self.refreshes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts one snapshot deleted by retention.
    pub fn snapshot_expired(&self) {
        self.expired.inc();
    }

    /// Counts one authorization decision.
    pub fn authorization(&self, allowed: bool, source: &str) {
        self.authorizations
            .get_or_create(&DecisionLabels {
                decision: if allowed { "allow" } else { "deny" }.to_owned(),
                source: source.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn families_are_exported_with_the_prefix() {
        let mut metrics = Metrics::new();
        let api = ApiServerMetrics::register(metrics.registry_mut().sub_registry_with_prefix("apiserver"));
        api.request("list", "offsetsnapshots", 200, Duration::from_millis(3));
        api.set_objects(Resource::OffsetSnapshots, 7);
        api.authorization(false, "policy");
        let text = metrics.encode().unwrap();
        for line in [
            r#"kafka_backup_operator_apiserver_requests_total{verb="list",resource="offsetsnapshots",code="200"} 1"#,
            r#"kafka_backup_operator_apiserver_catalog_objects{resource="offsetsnapshots"} 7"#,
            r#"kafka_backup_operator_apiserver_catalog_refreshes_total{outcome="failure"} 0"#,
            "kafka_backup_operator_apiserver_catalog_snapshots_expired_total 0",
            r#"kafka_backup_operator_apiserver_authorizations_total{decision="deny",source="policy"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
