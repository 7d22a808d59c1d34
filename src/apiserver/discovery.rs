//! Discovery documents and content negotiation.
//!
//! - `GET /apis`: `APIGroupList` with the catalog group, or, when the `Accept` header asks for
//!   aggregated discovery (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`,
//!   or `v2beta1`), the `APIGroupDiscoveryList` of that version. A request that accepts nothing we
//!   can produce gets 406, never 404: kube-aggregator marks a group whose aggregated discovery
//!   answers 404 as stale, and `kubectl get` then fails while `kubectl get --raw` works.
//! - `GET /apis/catalog.kafka.oso.sh`: `APIGroup`.
//! - `GET /apis/catalog.kafka.oso.sh/v1alpha1`: `APIResourceList`: both resources with their verbs,
//!   short names (`osnap`, `kbs`), category `kafka-backup`, and the `offsetsnapshots/diff`
//!   subresource. kube-aggregator's availability check GETs this path.

use serde_json::{Value, json};

use super::resources::{CATEGORY, DIFF_SUBRESOURCE, Resource, group_version};
use crate::routes::{CATALOG_GROUP, CATALOG_VERSION};

/// Media type of aggregated discovery v2.
pub const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// Media type of aggregated discovery v2beta1.
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// One media range of an `Accept` header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    /// `application`, `*`.
    pub type_: String,
    /// `json`, `*`.
    pub subtype: String,
    /// Parameters other than `q`, names lower-cased.
    pub params: Vec<(String, String)>,
    /// Quality.
    pub q: f32,
}

impl MediaRange {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether plain JSON satisfies this range (`application/json`, `application/*`, `*/*`, with no
    /// `as`/`g`/`v` asking for a special kind).
    fn accepts_plain_json(&self) -> bool {
        let type_ok = matches!(
            (self.type_.as_str(), self.subtype.as_str()),
            ("application", "json" | "*") | ("*", "*")
        );
        type_ok && self.param("as").is_none() && self.param("g").is_none() && self.param("v").is_none()
    }

    fn is_json(&self) -> bool {
        self.type_ == "application" && self.subtype == "json"
    }
}

/// Parses an `Accept` header into media ranges, best first (stable for equal quality).
pub fn parse_accept(header: &str) -> Vec<MediaRange> {
    let mut ranges: Vec<MediaRange> = header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let (type_, subtype) = pieces.next()?.trim().split_once('/')?;
            let mut params = Vec::new();
            let mut q = 1.0;
            for piece in pieces {
                let Some((name, value)) = piece.split_once('=') else {
                    continue;
                };
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().trim_matches('"').to_owned();
                if name == "q" {
                    q = value.parse().unwrap_or(0.0);
                } else {
                    params.push((name, value));
                }
            }
            Some(MediaRange {
                type_: type_.trim().to_ascii_lowercase(),
                subtype: subtype.trim().to_ascii_lowercase(),
                params,
                q,
            })
        })
        .filter(|r| r.q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    ranges
}

/// The form of a discovery answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryFormat {
    /// `APIGroupList` / `APIGroup` / `APIResourceList`.
    Legacy,
    /// `APIGroupDiscoveryList` of `apidiscovery.k8s.io/v2`.
    AggregatedV2,
    /// `APIGroupDiscoveryList` of `apidiscovery.k8s.io/v2beta1`.
    AggregatedV2Beta1,
}

/// The discovery form to answer with, `None` for 406. `aggregated` tells whether the endpoint
/// serves aggregated discovery (`/apis` only).
pub fn discovery_format(accept: Option<&str>, aggregated: bool) -> Option<DiscoveryFormat> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(DiscoveryFormat::Legacy);
    };
    for range in parse_accept(accept) {
        if range.accepts_plain_json() {
            return Some(DiscoveryFormat::Legacy);
        }
        if aggregated
            && range.is_json()
            && range.param("g") == Some("apidiscovery.k8s.io")
            && range.param("as") == Some("APIGroupDiscoveryList")
        {
            match range.param("v") {
                Some("v2") => return Some(DiscoveryFormat::AggregatedV2),
                Some("v2beta1") => return Some(DiscoveryFormat::AggregatedV2Beta1),
                _ => {}
            }
        }
    }
    None
}

/// The form of an object or list answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    /// The object (or list) as JSON.
    Json,
    /// A `meta.k8s.io` Table of this version (`v1` or `v1beta1`).
    Table(&'static str),
}

/// The object form to answer with, `None` for 406.
pub fn object_format(accept: Option<&str>) -> Option<ObjectFormat> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(ObjectFormat::Json);
    };
    for range in parse_accept(accept) {
        if range.accepts_plain_json() {
            return Some(ObjectFormat::Json);
        }
        if range.is_json() && range.param("as") == Some("Table") && range.param("g") == Some("meta.k8s.io") {
            match range.param("v") {
                Some("v1") => return Some(ObjectFormat::Table("v1")),
                Some("v1beta1") => return Some(ObjectFormat::Table("v1beta1")),
                _ => {}
            }
        }
    }
    None
}

fn group_version_for_discovery() -> Value {
    json!({"groupVersion": group_version(), "version": CATALOG_VERSION})
}

/// The `APIGroup` of the catalog.
pub fn api_group() -> Value {
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": CATALOG_GROUP,
        "versions": [group_version_for_discovery()],
        "preferredVersion": group_version_for_discovery(),
    })
}

/// `GET /apis`: the `APIGroupList`.
pub fn api_group_list() -> Value {
    let mut group = api_group();
    if let Some(map) = group.as_object_mut() {
        map.remove("kind");
        map.remove("apiVersion");
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]})
}

/// `GET /apis/<group>/<version>`: the `APIResourceList`.
pub fn api_resource_list() -> Value {
    let mut resources = Vec::new();
    for resource in Resource::ALL {
        resources.push(json!({
            "name": resource.plural(),
            "singularName": resource.singular(),
            "namespaced": true,
            "kind": resource.kind(),
            "verbs": resource.verbs(),
            "shortNames": [resource.short_name()],
            "categories": [CATEGORY],
        }));
        if resource == Resource::OffsetSnapshots {
            resources.push(json!({
                "name": format!("{}/{DIFF_SUBRESOURCE}", resource.plural()),
                "singularName": "",
                "namespaced": true,
                "kind": "OffsetSnapshotDiff",
                "verbs": ["get"],
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(),
        "resources": resources,
    })
}

/// `GET /apis` with aggregated discovery: the `APIGroupDiscoveryList` of `version` (`v2` or
/// `v2beta1`; both have the same shape).
pub fn aggregated_discovery(version: &str) -> Value {
    let response_kind =
        |kind: &str| json!({"group": CATALOG_GROUP, "version": CATALOG_VERSION, "kind": kind});
    let resources: Vec<Value> = Resource::ALL
        .iter()
        .map(|resource| {
            let mut r = json!({
                "resource": resource.plural(),
                "responseKind": response_kind(resource.kind()),
                "scope": "Namespaced",
                "singularResource": resource.singular(),
                "verbs": resource.verbs(),
                "shortNames": [resource.short_name()],
                "categories": [CATEGORY],
            });
            if *resource == Resource::OffsetSnapshots
                && let Some(map) = r.as_object_mut()
            {
                map.insert(
                    "subresources".into(),
                    json!([{
                        "subresource": DIFF_SUBRESOURCE,
                        "responseKind": response_kind("OffsetSnapshotDiff"),
                        "verbs": ["get"],
                    }]),
                );
            }
            r
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": [{
            "metadata": {"name": CATALOG_GROUP},
            "versions": [{"version": CATALOG_VERSION, "resources": resources, "freshness": "Current"}],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_DISCOVERY: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    const KUBECTL_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn discovery_negotiation() {
        use DiscoveryFormat::*;
        assert_eq!(discovery_format(None, true), Some(Legacy));
        assert_eq!(
            discovery_format(Some(KUBECTL_DISCOVERY), true),
            Some(AggregatedV2)
        );
        assert_eq!(discovery_format(Some(KUBECTL_DISCOVERY), false), Some(Legacy));
        assert_eq!(
            discovery_format(Some(AGGREGATED_V2BETA1), true),
            Some(AggregatedV2Beta1)
        );
        // Only aggregated discovery of an unknown version, or only protobuf: 406, not 404.
        assert_eq!(
            discovery_format(
                Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
                true
            ),
            None
        );
        assert_eq!(
            discovery_format(Some("application/vnd.kubernetes.protobuf"), true),
            None
        );
        assert_eq!(discovery_format(Some(AGGREGATED_V2), false), None);
        assert_eq!(discovery_format(Some("*/*"), true), Some(Legacy));
        // Quality values order the ranges.
        assert_eq!(
            discovery_format(Some(&format!("application/json;q=0.5,{AGGREGATED_V2}")), true),
            Some(AggregatedV2)
        );
    }

    #[test]
    fn object_negotiation() {
        assert_eq!(
            object_format(Some(KUBECTL_TABLE)),
            Some(ObjectFormat::Table("v1"))
        );
        assert_eq!(
            object_format(Some("application/json;as=Table;v=v1beta1;g=meta.k8s.io")),
            Some(ObjectFormat::Table("v1beta1"))
        );
        assert_eq!(object_format(Some("application/json")), Some(ObjectFormat::Json));
        assert_eq!(object_format(Some("application/yaml")), None);
        assert_eq!(
            object_format(Some("application/json;as=Table;v=v2;g=meta.k8s.io")),
            None
        );
    }

    #[test]
    fn resource_list_has_verbs_short_names_and_categories() {
        let list = api_resource_list();
        let resources = list["resources"].as_array().unwrap();
        let names: Vec<&str> = resources.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["offsetsnapshots", "offsetsnapshots/diff", "backupsets"]);
        assert_eq!(resources[0]["shortNames"], json!(["osnap"]));
        assert_eq!(resources[0]["verbs"], json!(["delete", "get", "list"]));
        assert_eq!(resources[2]["shortNames"], json!(["kbs"]));
        assert_eq!(resources[2]["categories"], json!(["kafka-backup"]));
        let aggregated = aggregated_discovery("v2");
        assert_eq!(
            aggregated["items"][0]["versions"][0]["resources"][0]["subresources"][0]["subresource"],
            "diff"
        );
    }
}
