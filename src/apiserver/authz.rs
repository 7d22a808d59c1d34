//! Authorization of catalog API requests.
//!
//! Every authenticated request is turned into Kubernetes authorization [`Attributes`] (user, verb,
//! namespace, resource, subresource, name; or a non-resource path for discovery and OpenAPI) and
//! decided by:
//!
//! - built-in rules first: members of `system:masters` may do everything (kube-aggregator's own
//!   availability checks come as `system:kube-aggregator` in that group, and must not wait for a
//!   SubjectAccessReview); members of `system:authenticated` may `get` the discovery, OpenAPI,
//!   version and health paths ([`DISCOVERY_PATHS`]: Kubernetes' default `system:discovery` and
//!   `system:public-info-viewer` ClusterRoles, bound to that group), so kube-aggregator's OpenAPI
//!   requests (`system:aggregator`) and kubectl's discovery need no SubjectAccessReview;
//!   `/healthz`, `/livez` and `/readyz` are not authorized at all;
//! - then [`SubjectAccessReviewer`]: a `SubjectAccessReview` against the Kubernetes API, decisions
//!   cached for a short time (10 s by default, allow and deny alike), as kube-apiserver's delegating
//!   authorizer does;
//! - or, without Kubernetes (the embedded default), a [`StaticPolicy`] read from a YAML file.
//!
//! # Static policy file (`--authorization-policy`)
//!
//! ```yaml
//! rules:
//!   # Who: any of these users or groups ("*" matches every authenticated user).
//!   - users: [alice]
//!     groups: [team-a-admins]
//!     # What: verbs get, list, delete (or "*"); resources offsetsnapshots, backupsets,
//!     # offsetsnapshots/diff (or "*").
//!     verbs: [get, list]
//!     resources: [offsetsnapshots, backupsets]
//!     # Where: namespaces; omitted or "*" means every namespace and lists across all of them,
//!     # otherwise only those namespaces (a list across namespaces is then forbidden).
//!     namespaces: [team-a]
//!   # Non-resource paths: a trailing "*" matches a prefix.
//!   - groups: [monitoring]
//!     nonResourceURLs: ["/metrics"]
//!     verbs: [get]
//! ```
//!
//! The built-in rules apply with every policy (and alone when no file is given): `system:masters`
//! may do everything, and every authenticated user may read discovery and OpenAPI. Everything not
//! allowed is forbidden.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use serde::Deserialize;
use tracing::debug;

use super::authn::UserInfo;
use crate::routes::{CATALOG_GROUP, CATALOG_VERSION};

/// The group whose members may do everything.
pub const MASTERS_GROUP: &str = "system:masters";

/// What `system:authenticated` may `get` without asking: the non-resource URLs of Kubernetes' default
/// `system:discovery` and `system:public-info-viewer` ClusterRoles (a trailing `*` matches a prefix).
pub const DISCOVERY_PATHS: [&str; 11] = [
    "/livez",
    "/readyz",
    "/healthz",
    "/version",
    "/version/",
    "/openapi",
    "/openapi/*",
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
];

/// Most decisions the SubjectAccessReview cache holds before it is cleared.
const CACHE_LIMIT: usize = 10_000;

/// Why authorization could not decide.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// The SubjectAccessReview failed.
    #[error("failed to create a SubjectAccessReview: {0}")]
    SubjectAccessReview(#[source] kube::Error),
    /// The policy file could not be read.
    #[error("failed to read authorization policy {}: {source}", path.display())]
    ReadPolicy {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is not valid.
    #[error("invalid authorization policy {path}: {reason}")]
    Policy {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What a request is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A resource of the catalog group.
    Resource {
        /// Namespace; empty for a list across namespaces.
        namespace: String,
        /// Plural.
        resource: String,
        /// Subresource, or empty.
        subresource: String,
        /// Name, or empty for a list.
        name: String,
    },
    /// A path that is no resource (discovery, OpenAPI).
    NonResource {
        /// The URL path.
        path: String,
    },
}

/// Kubernetes authorization attributes of one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    /// The user.
    pub user: UserInfo,
    /// Kubernetes verb: get, list, watch, delete, create, update, patch, deletecollection.
    pub verb: String,
    /// What.
    pub target: Target,
}

impl Attributes {
    /// Kubernetes' Forbidden message for these attributes, with `reason` appended when not empty.
    pub fn forbidden_message(&self, reason: &str) -> String {
        let user = &self.user.name;
        let verb = &self.verb;
        let mut message = match &self.target {
            Target::Resource {
                namespace,
                resource,
                subresource,
                name,
            } => {
                let full = if subresource.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{subresource}")
                };
                let what = if name.is_empty() {
                    format!("{full}.{CATALOG_GROUP}")
                } else {
                    format!("{full}.{CATALOG_GROUP} {name:?}")
                };
                let scope = if namespace.is_empty() {
                    "at the cluster scope".to_owned()
                } else {
                    format!("in the namespace {namespace:?}")
                };
                format!(
                    "{what} is forbidden: User {user:?} cannot {verb} resource {full:?} in API group {CATALOG_GROUP:?} {scope}"
                )
            }
            Target::NonResource { path } => {
                format!("forbidden: User {user:?} cannot {verb} path {path:?}")
            }
        };
        if !reason.is_empty() {
            message.push_str(": ");
            message.push_str(reason);
        }
        message
    }
}

/// A decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed.
    pub allowed: bool,
    /// Why (may be empty).
    pub reason: String,
}

/// Decides requests.
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// Decides; `Err` when no decision could be made (answered 500).
    fn authorize<'a>(
        &'a self,
        attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<(Decision, &'static str), AuthzError>>;
}

/// The built-in decision, if any: `system:masters` may do everything, `system:authenticated` may
/// get [`DISCOVERY_PATHS`].
pub fn builtin(attributes: &Attributes) -> Option<Decision> {
    let discovery = attributes.verb == "get"
        && attributes.user.in_group(super::authn::AUTHENTICATED_GROUP)
        && matches!(&attributes.target, Target::NonResource { path } if path_matches(&DISCOVERY_PATHS, path));
    (attributes.user.in_group(MASTERS_GROUP) || discovery).then(|| Decision {
        allowed: true,
        reason: String::new(),
    })
}

/// Whether `path` is one of `patterns` (a trailing `*` matches a prefix), as RBAC matches
/// non-resource URLs.
fn path_matches<S: AsRef<str>>(patterns: &[S], path: &str) -> bool {
    patterns.iter().any(|pattern| {
        let pattern = pattern.as_ref();
        match pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => pattern == path,
        }
    })
}

/// Authorization by SubjectAccessReview with an allow/deny cache.
pub struct SubjectAccessReviewer {
    client: kube::Client,
    allow_ttl: Duration,
    deny_ttl: Duration,
    cache: Mutex<HashMap<Attributes, (Decision, Instant)>>,
}

impl std::fmt::Debug for SubjectAccessReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectAccessReviewer")
            .field("allow_ttl", &self.allow_ttl)
            .field("deny_ttl", &self.deny_ttl)
            .finish_non_exhaustive()
    }
}

impl SubjectAccessReviewer {
    /// Reviews through `client`, caching allows for `allow_ttl` and denies for `deny_ttl`.
    pub fn new(client: kube::Client, allow_ttl: Duration, deny_ttl: Duration) -> Self {
        SubjectAccessReviewer {
            client,
            allow_ttl,
            deny_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, attributes: &Attributes) -> Option<Decision> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(attributes)
            .filter(|(decision, at)| {
                let ttl = if decision.allowed {
                    self.allow_ttl
                } else {
                    self.deny_ttl
                };
                at.elapsed() < ttl
            })
            .map(|(decision, _)| decision.clone())
    }

    fn remember(&self, attributes: &Attributes, decision: &Decision) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_LIMIT {
            let ttl = self.allow_ttl.max(self.deny_ttl);
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(attributes.clone(), (decision.clone(), Instant::now()));
    }
}

/// The SubjectAccessReview asking about `attributes`.
pub fn review_for(attributes: &Attributes) -> SubjectAccessReview {
    let user = &attributes.user;
    let (resource_attributes, non_resource_attributes) = match &attributes.target {
        Target::Resource {
            namespace,
            resource,
            subresource,
            name,
        } => (
            Some(ResourceAttributes {
                group: Some(CATALOG_GROUP.to_owned()),
                version: Some(CATALOG_VERSION.to_owned()),
                resource: Some(resource.clone()),
                subresource: Some(subresource.clone()).filter(|s| !s.is_empty()),
                name: Some(name.clone()).filter(|s| !s.is_empty()),
                namespace: Some(namespace.clone()).filter(|s| !s.is_empty()),
                verb: Some(attributes.verb.clone()),
                ..ResourceAttributes::default()
            }),
            None,
        ),
        Target::NonResource { path } => (
            None,
            Some(NonResourceAttributes {
                path: Some(path.clone()),
                verb: Some(attributes.verb.clone()),
            }),
        ),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            groups: Some(user.groups.clone()),
            uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
            extra: Some(user.extra.clone()).filter(|e| !e.is_empty()),
            resource_attributes,
            non_resource_attributes,
        },
        ..SubjectAccessReview::default()
    }
}

impl Authorizer for SubjectAccessReviewer {
    fn authorize<'a>(
        &'a self,
        attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<(Decision, &'static str), AuthzError>> {
        Box::pin(async move {
            if let Some(decision) = self.cached(attributes) {
                return Ok((decision, "cache"));
            }
            let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
            let answer = api
                .create(&kube::api::PostParams::default(), &review_for(attributes))
                .await
                .map_err(AuthzError::SubjectAccessReview)?;
            let status = answer.status.unwrap_or_default();
            let decision = Decision {
                allowed: status.allowed && !status.denied.unwrap_or(false),
                reason: status.reason.or(status.evaluation_error).unwrap_or_default(),
            };
            debug!(user = %attributes.user.name, verb = %attributes.verb, allowed = decision.allowed, "SubjectAccessReview");
            self.remember(attributes, &decision);
            Ok((decision, "subjectaccessreview"))
        })
    }
}

/// One rule of a static policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// Users the rule applies to.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups the rule applies to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Verbs allowed (`*` for all).
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources allowed (`plural`, `plural/subresource`, `*`).
    #[serde(default)]
    pub resources: Vec<String>,
    /// Namespaces; empty or `*` for all (and lists across namespaces).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Non-resource paths (a trailing `*` matches a prefix).
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    fn applies_to(&self, user: &UserInfo) -> bool {
        self.users.iter().any(|u| u == "*" || *u == user.name)
            || self.groups.iter().any(|g| g == "*" || user.in_group(g))
    }

    fn allows(&self, attributes: &Attributes) -> bool {
        if !self.applies_to(&attributes.user) {
            return false;
        }
        if !self.verbs.iter().any(|v| v == "*" || *v == attributes.verb) {
            return false;
        }
        match &attributes.target {
            Target::Resource {
                namespace,
                resource,
                subresource,
                ..
            } => {
                let full = if subresource.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{subresource}")
                };
                let resource_ok = self.resources.iter().any(|r| r == "*" || *r == full);
                let all_namespaces = self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == "*");
                let namespace_ok = all_namespaces
                    || (!namespace.is_empty() && self.namespaces.iter().any(|n| n == namespace));
                resource_ok && namespace_ok
            }
            Target::NonResource { path } => path_matches(&self.non_resource_urls, path),
        }
    }
}

/// A static policy file's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticPolicy {
    /// The rules; a request is allowed when any rule allows it.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

impl StaticPolicy {
    /// Parses a policy document (YAML or JSON); `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthzError> {
        let policy: StaticPolicy = serde_saphyr::from_str(text).map_err(|e| AuthzError::Policy {
            path: origin.to_owned(),
            reason: e.to_string(),
        })?;
        for (i, rule) in policy.rules.iter().enumerate() {
            let problem = if rule.users.is_empty() && rule.groups.is_empty() {
                Some("names no users and no groups")
            } else if rule.verbs.is_empty() {
                Some("names no verbs")
            } else if rule.resources.is_empty() && rule.non_resource_urls.is_empty() {
                Some("names no resources and no nonResourceURLs")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(AuthzError::Policy {
                    path: origin.to_owned(),
                    reason: format!("rules[{i}] {problem}"),
                });
            }
        }
        Ok(policy)
    }

    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, AuthzError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthzError::ReadPolicy {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The policy without rules: only the [`builtin`] decisions allow anything.
    pub fn builtin() -> Self {
        StaticPolicy::default()
    }

    /// The decision for `attributes`.
    pub fn decide(&self, attributes: &Attributes) -> Decision {
        let allowed = self.rules.iter().any(|rule| rule.allows(attributes));
        Decision {
            allowed,
            reason: if allowed {
                String::new()
            } else {
                "no rule of the authorization policy allows it".to_owned()
            },
        }
    }
}

impl Authorizer for StaticPolicy {
    fn authorize<'a>(
        &'a self,
        attributes: &'a Attributes,
    ) -> BoxFuture<'a, Result<(Decision, &'static str), AuthzError>> {
        Box::pin(async move { Ok((self.decide(attributes), "policy")) })
    }
}

/// The attributes of a request: `None` for paths that need no authorization (health checks).
pub fn request_target(
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
) -> Option<(String, Target)> {
    if matches!(path, "/healthz" | "/livez" | "/readyz")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
    {
        return None;
    }
    let non_resource = || {
        Some((
            method.to_ascii_lowercase(),
            Target::NonResource {
                path: path.to_owned(),
            },
        ))
    };
    let prefix = format!("/apis/{CATALOG_GROUP}/{CATALOG_VERSION}/");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return non_resource();
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let (namespace, parts) = match parts.as_slice() {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => ((*ns).to_owned(), rest),
        parts => (String::new(), parts),
    };
    let (resource, name, subresource) = match parts {
        [resource] => (*resource, "", ""),
        [resource, name] => (*resource, *name, ""),
        [resource, name, sub] => (*resource, *name, *sub),
        _ => return non_resource(),
    };
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, name.is_empty()) {
        ("GET" | "HEAD", true) if watch => "watch",
        ("GET" | "HEAD", true) => "list",
        ("GET" | "HEAD", false) => "get",
        ("POST", true) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "deletecollection",
        ("DELETE", false) => "delete",
        (other, _) => {
            return Some((
                other.to_ascii_lowercase(),
                Target::NonResource {
                    path: path.to_owned(),
                },
            ));
        }
    };
    Some((
        verb.to_owned(),
        Target::Resource {
            namespace,
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..UserInfo::default()
        }
    }

    fn resource(user: UserInfo, verb: &str, namespace: &str, resource: &str, name: &str) -> Attributes {
        Attributes {
            user,
            verb: verb.into(),
            target: Target::Resource {
                namespace: namespace.into(),
                resource: resource.into(),
                subresource: String::new(),
                name: name.into(),
            },
        }
    }

    #[test]
    fn request_targets() {
        let q = BTreeMap::new();
        let base = "/apis/catalog.kafka.oso.sh/v1alpha1";
        assert_eq!(request_target("GET", "/livez", &q), None);
        assert_eq!(
            request_target("GET", "/apis", &q),
            Some(("get".into(), Target::NonResource { path: "/apis".into() }))
        );
        assert_eq!(
            request_target("GET", base, &q),
            Some(("get".into(), Target::NonResource { path: base.into() }))
        );
        let (verb, target) =
            request_target("GET", &format!("{base}/namespaces/a/offsetsnapshots"), &q).unwrap();
        assert_eq!(verb, "list");
        assert!(
            matches!(target, Target::Resource { ref namespace, ref name, .. } if namespace == "a" && name.is_empty())
        );
        let (verb, target) = request_target("GET", &format!("{base}/backupsets"), &q).unwrap();
        assert_eq!(verb, "list");
        assert!(matches!(target, Target::Resource { ref namespace, .. } if namespace.is_empty()));
        let (verb, _) =
            request_target("DELETE", &format!("{base}/namespaces/a/offsetsnapshots/s"), &q).unwrap();
        assert_eq!(verb, "delete");
        let (verb, target) =
            request_target("GET", &format!("{base}/namespaces/a/offsetsnapshots/s/diff"), &q).unwrap();
        assert_eq!(verb, "get");
        assert!(matches!(target, Target::Resource { ref subresource, .. } if subresource == "diff"));
        let watch = BTreeMap::from([("watch".to_owned(), "true".to_owned())]);
        let (verb, _) =
            request_target("GET", &format!("{base}/namespaces/a/offsetsnapshots"), &watch).unwrap();
        assert_eq!(verb, "watch");
    }

    #[test]
    fn static_policy_rules() {
        let policy = StaticPolicy::parse(
            r#"
rules:
  - users: [alice]
    verbs: [get, list]
    resources: [offsetsnapshots]
    namespaces: [team-a]
  - groups: [ops]
    verbs: ["*"]
    resources: ["*"]
"#,
            "test",
        )
        .unwrap();
        let alice = || user("alice", &["system:authenticated"]);
        let allowed = |a: &Attributes| policy.decide(a).allowed;
        assert!(allowed(&resource(
            alice(),
            "list",
            "team-a",
            "offsetsnapshots",
            ""
        )));
        assert!(!allowed(&resource(
            alice(),
            "list",
            "team-b",
            "offsetsnapshots",
            ""
        )));
        assert!(
            !allowed(&resource(alice(), "list", "", "offsetsnapshots", "")),
            "not across namespaces"
        );
        assert!(!allowed(&resource(
            alice(),
            "delete",
            "team-a",
            "offsetsnapshots",
            "s"
        )));
        assert!(!allowed(&resource(alice(), "get", "team-a", "backupsets", "b")));
        let ops = || user("carol", &["ops"]);
        assert!(allowed(&resource(ops(), "delete", "x", "offsetsnapshots", "s")));
        assert!(allowed(&resource(ops(), "list", "", "backupsets", "")));
        let discovery = Attributes {
            user: alice(),
            verb: "get".into(),
            target: Target::NonResource {
                path: "/apis/catalog.kafka.oso.sh/v1alpha1".into(),
            },
        };
        assert!(
            !allowed(&discovery),
            "discovery is built in, not a rule of the policy"
        );
        assert!(builtin(&discovery).is_some(), "built-in discovery rule");
        let message = resource(alice(), "list", "team-b", "offsetsnapshots", "").forbidden_message("no rule");
        assert_eq!(
            message,
            "offsetsnapshots.catalog.kafka.oso.sh is forbidden: User \"alice\" cannot list resource \"offsetsnapshots\" in API group \"catalog.kafka.oso.sh\" in the namespace \"team-b\": no rule"
        );
        assert!(StaticPolicy::parse("rules: [{verbs: [get], resources: [x]}]", "t").is_err());
        assert!(
            StaticPolicy::parse(
                "rules: [{users: [a], verbs: [get], resources: [x], typo: 1}]",
                "t"
            )
            .is_err()
        );
        assert!(builtin(&resource(user("admin", &[MASTERS_GROUP]), "delete", "", "x", "")).is_some());
    }

    #[test]
    fn authenticated_users_may_get_discovery_openapi_and_health_paths() {
        let path = |user: UserInfo, verb: &str, path: &str| Attributes {
            user,
            verb: verb.into(),
            target: Target::NonResource { path: path.into() },
        };
        let aggregator = || user("system:aggregator", &["system:authenticated"]);
        for allowed in [
            "/openapi/v2",
            "/openapi/v3",
            "/openapi/v3/apis/catalog.kafka.oso.sh/v1alpha1",
            "/apis",
            "/apis/catalog.kafka.oso.sh",
            "/apis/catalog.kafka.oso.sh/v1alpha1",
            "/version",
            "/healthz",
            "/readyz",
            "/livez",
        ] {
            assert!(
                builtin(&path(aggregator(), "get", allowed)).is_some(),
                "{allowed}"
            );
        }
        assert!(builtin(&path(aggregator(), "post", "/openapi/v2")).is_none());
        assert!(builtin(&path(aggregator(), "get", "/metrics")).is_none());
        assert!(
            builtin(&path(user("system:aggregator", &[]), "get", "/openapi/v2")).is_none(),
            "only for the group"
        );
        let list = resource(aggregator(), "list", "a", "offsetsnapshots", "");
        assert!(builtin(&list).is_none(), "resources are not discovery");
    }

    /// A fake Kubernetes API answering SubjectAccessReviews: allows `alice` to list in `team-a`.
    fn fake_api(calls: Arc<AtomicUsize>) -> kube::Client {
        let service = tower::service_fn(move |request: axum::http::Request<kube::client::Body>| {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                assert_eq!(request.method(), axum::http::Method::POST);
                assert_eq!(
                    request.uri().path(),
                    "/apis/authorization.k8s.io/v1/subjectaccessreviews"
                );
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let mut review: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let spec = &review["spec"];
                let allowed = spec["user"] == "alice"
                    && spec["resourceAttributes"]["namespace"] == "team-a"
                    && spec["resourceAttributes"]["verb"] == "list"
                    && spec["resourceAttributes"]["group"] == "catalog.kafka.oso.sh";
                review["status"] = serde_json::json!({"allowed": allowed, "reason": if allowed { "RBAC: allowed" } else { "" }});
                Ok::<_, std::convert::Infallible>(
                    axum::http::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(serde_json::to_vec(&review).unwrap())))
                        .unwrap(),
                )
            }
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn subject_access_reviews_are_asked_and_cached() {
        let calls = Arc::new(AtomicUsize::new(0));
        let reviewer = SubjectAccessReviewer::new(
            fake_api(Arc::clone(&calls)),
            Duration::from_secs(10),
            Duration::from_millis(50),
        );
        let alice = user("alice", &["system:authenticated"]);
        let list = resource(alice.clone(), "list", "team-a", "offsetsnapshots", "");
        let (decision, source) = reviewer.authorize(&list).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(source, "subjectaccessreview");
        let (decision, source) = reviewer.authorize(&list).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(source, "cache");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let denied = resource(alice, "delete", "team-a", "offsetsnapshots", "s");
        assert!(!reviewer.authorize(&denied).await.unwrap().0.allowed);
        assert_eq!(reviewer.authorize(&denied).await.unwrap().1, "cache");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            reviewer.authorize(&denied).await.unwrap().1,
            "subjectaccessreview",
            "denials expire after their TTL"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn reviews_carry_every_attribute() {
        let mut u = user("alice", &["g"]);
        u.extra.insert("scopes".into(), vec!["x".into()]);
        let mut a = resource(u, "get", "ns", "offsetsnapshots", "s");
        if let Target::Resource { subresource, .. } = &mut a.target {
            *subresource = "diff".into();
        }
        let review = serde_json::to_value(review_for(&a)).unwrap();
        assert_eq!(review["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(review["kind"], "SubjectAccessReview");
        assert_eq!(
            review["spec"]["resourceAttributes"],
            serde_json::json!({"group": "catalog.kafka.oso.sh", "version": "v1alpha1", "resource": "offsetsnapshots",
                "subresource": "diff", "name": "s", "namespace": "ns", "verb": "get"})
        );
        assert_eq!(review["spec"]["extra"]["scopes"][0], "x");
    }
}
