//! The aggregated API `catalog.kafka.oso.sh/v1alpha1` (APIService `v1alpha1.catalog.kafka.oso.sh`):
//! the offset snapshots and backups in storage, as Kubernetes resources.
//!
//! ```text
//! kubectl get offsetsnapshots -n team-a          # osnap: Name, Groups, Partitions, Cluster, Source, Age
//! kubectl get osnap pre-migration -o yaml        # every group, topic, partition, offset
//! kubectl get --raw /apis/catalog.kafka.oso.sh/v1alpha1/namespaces/team-a/offsetsnapshots/pre-migration/diff
//! kubectl delete osnap pre-migration             # deletes the stored snapshot (see below)
//! kubectl get backupsets -A                      # kbs: backups, PITR window, completeness
//! ```
//!
//! # Routes (on the HTTPS server, merged by [`crate::server::https_router`])
//!
//! | path | what |
//! |---|---|
//! | `/apis`, `/apis/catalog.kafka.oso.sh`, `.../v1alpha1` | discovery ([`discovery`]); aggregated discovery v2/v2beta1 on `/apis`, 406 for what cannot be produced |
//! | `/openapi/v2`, `/openapi/v3`, `/openapi/v3/apis/catalog.kafka.oso.sh/v1alpha1` | OpenAPI ([`openapi`]) |
//! | `.../v1alpha1/{offsetsnapshots,backupsets}` | list across namespaces |
//! | `.../v1alpha1/namespaces/NS/{offsetsnapshots,backupsets}` | list: `labelSelector`, `fieldSelector`, `limit`, `continue`; DELETE collection only from the namespace controller or in a terminating namespace (hides, see below) |
//! | `.../namespaces/NS/offsetsnapshots/NAME` | get (full offsets), delete (the stored document; see below) |
//! | `.../namespaces/NS/backupsets/NAME` | get |
//! | `.../namespaces/NS/offsetsnapshots/NAME/diff` | the snapshot compared with the committed offsets now ([`diff`]) |
//! | `/healthz`, `/livez`, `/readyz` | health, without authentication (kubelet and kube-aggregator probes) |
//!
//! Lists and gets answer JSON or, for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, a
//! Table ([`table`]). Errors are `metav1.Status` with Kubernetes' reasons and codes: 400 BadRequest
//! (selectors, continue tokens), 401 Unauthorized, 403 Forbidden, 404 NotFound, 405
//! MethodNotAllowed (update, create, watch; delete of backupsets), 406 NotAcceptable, 503
//! ServiceUnavailable (storage or Kafka unreachable).
//!
//! # Deleting a namespace never deletes stored snapshots
//!
//! kube-controller-manager's namespace controller deletes every namespaced resource of every API
//! group that serves `delete`, this one's `offsetsnapshots` included: it tries a DELETE of the
//! collection where discovery lists `deletecollection` (ours does not), else lists and DELETEs each
//! object (`propagationPolicy: Background`), then lists again until the list is empty. Its user is
//! `system:serviceaccount:kube-system:namespace-controller` (or `system:kube-controller-manager`
//! when the controllers share its credentials). A snapshot is a rollback point in storage that
//! outlives any namespace, so:
//!
//! - lists asked by the namespace controller are empty: the catalog's objects are views of storage,
//!   not content of the namespace, and every replica answers the same without shared state, so the
//!   namespace's deletion completes at once;
//! - a DELETE (of one snapshot or of the collection) by the namespace controller, or by anyone in a
//!   namespace that is being deleted (phase Terminating or a deletion timestamp, read from the
//!   Kubernetes API when there is one), answers success and only hides the entries in this process
//!   ([`catalog::Catalog::hide_snapshot`]); storage is never touched;
//! - a DELETE of the collection by anyone else is 405 (kubectl never sends one: `kubectl delete
//!   osnap --all` deletes one by one);
//! - only a user's DELETE of one snapshot, in a namespace that is not being deleted, deletes the
//!   stored document (when the namespace's state cannot be read, the delete is refused with 503
//!   rather than risk it).
//!
//! # Pieces
//!
//! - [`catalog`]: the in-memory index over storage locations, refreshed on an interval and updated
//!   by [`catalog::Catalog::record_snapshot`] / [`catalog::Catalog::record_backup_set`];
//! - [`sources`], [`backupsets`]: what the catalog reads, behind traits; [`backupsets::summary_from_manifest`]
//!   is the adapter to the backup manifest format;
//! - [`tls`], [`authn`], [`authz`]: client certificates, front-proxy and user authentication,
//!   SubjectAccessReview or static-policy authorization;
//! - [`config`]: the flags and the catalog configuration file; [`devaccess`]: the admin kubeconfig
//!   of the embedded default;
//! - [`watch`]: the file-system watch of the local directories.

#![warn(missing_docs)]

pub mod authn;
pub mod authz;
pub mod backupsets;
pub mod catalog;
pub mod config;
pub mod devaccess;
pub mod diff;
pub mod discovery;
pub mod feed;
pub mod list_cache;
pub mod metrics;
pub mod openapi;
pub mod resources;
pub mod selectors;
pub mod sources;
pub mod table;
pub mod tls;
pub mod watch;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Extension, Path as UrlPath, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusDetails};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty, info, info_span, warn};

use self::{
    authn::{Authenticator, AuthnSources, Unauthenticated, UserInfo},
    authz::{Attributes, Authorizer, StaticPolicy, SubjectAccessReviewer, Target, builtin, request_target},
    catalog::{Catalog, Scope},
    config::{ApiServerArgs, CatalogConfig, KubernetesMode},
    diff::ClusterRegistry,
    discovery::{DiscoveryFormat, ObjectFormat},
    metrics::ApiServerMetrics,
    resources::{DIFF_SUBRESOURCE, Resource},
    selectors::{ContinueToken, FieldSelector, LabelSelector, SelectorError},
    table::IncludeObject,
    tls::PeerCertificates,
};
use crate::{
    routes::{CATALOG_GROUP, CATALOG_VERSION},
    secrets::SecretStore,
    server::Readiness,
    storage::{Location, StorageEnv},
};

/// Largest request body read (DeleteOptions).
const BODY_LIMIT: usize = 1024 * 1024;

/// How often the authentication settings (CA files, the ConfigMap) are read again.
const AUTHN_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// Errors of starting the aggregated API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The catalog configuration could not be read.
    #[error("failed to read catalog configuration {}: {reason}", path.display())]
    CatalogConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A storage location of the configuration could not be opened.
    #[error("failed to open catalog storage location ({what}): {source}")]
    Storage {
        /// Which location.
        what: String,
        /// Why.
        #[source]
        source: Box<crate::storage::StorageError>,
    },
    /// A cluster of the configuration could not be set up.
    #[error("failed to configure Kafka cluster {cluster} for the diff subresource: {source}")]
    Cluster {
        /// Its bootstrap servers.
        cluster: String,
        /// Why.
        #[source]
        source: Box<crate::kafka::KafkaError>,
    },
    /// Authentication settings could not be loaded.
    #[error(transparent)]
    Authn(Box<authn::AuthnError>),
    /// The authorization policy could not be loaded.
    #[error(transparent)]
    Authz(Box<authz::AuthzError>),
    /// The development access files could not be made.
    #[error(transparent)]
    DevAccess(#[from] devaccess::DevAccessError),
    /// The embedded default needs a state directory.
    #[error("failed to find a directory for the catalog: pass --catalog-dir or --state-dir")]
    NoCatalogDir,
}

/// The aggregated API: catalog, authentication, authorization. Share it as `Arc<ApiServer>`.
pub struct ApiServer {
    /// The catalog served.
    pub catalog: Arc<Catalog>,
    /// Who is calling.
    pub authenticator: Arc<Authenticator>,
    /// What they may do.
    pub authorizer: Arc<dyn Authorizer>,
    /// Kafka connection settings for the diff subresource.
    pub clusters: Arc<ClusterRegistry>,
    /// Metrics, when registered.
    pub metrics: Option<ApiServerMetrics>,
    /// Readiness behind `/readyz`.
    pub readiness: Readiness,
    /// The last list answers ([`list_cache`]).
    pub list_cache: list_cache::ListCache,
    /// The Kubernetes API, when there is one: whether a namespace is being deleted.
    pub kube: Option<kube::Client>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("catalog", &self.catalog)
            .field("authenticator", &self.authenticator)
            .field("authorizer", &self.authorizer)
            .field("kube", &self.kube.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`start`] needs besides the flags.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The state directory, when there is one.
    pub state_dir: Option<PathBuf>,
    /// The HTTPS listen address (for the development kubeconfig).
    pub listen: SocketAddr,
    /// The CA of the serving certificate, when known (development certificates).
    pub serving_ca: Option<PathBuf>,
    /// The process's readiness checks.
    pub readiness: Readiness,
    /// Metrics to record into.
    pub metrics: Option<ApiServerMetrics>,
    /// Namespaces whose resources' storage blocks the catalog reads (the reconciler's); empty: all.
    pub resource_namespaces: Vec<String>,
}

/// A started API: serve [`ApiServer`] with [`router`] and run [`Started::run`] until shutdown.
#[derive(Debug)]
pub struct Started {
    /// The API.
    pub api: Arc<ApiServer>,
    refresh_interval: Duration,
    reload_authn: bool,
    /// With a Kubernetes API: the locations named by the resources, synced before each refresh.
    discovery: Option<feed::NamespaceDiscovery>,
}

impl Started {
    /// Refreshes the catalog (now, then every interval; with a Kubernetes API, first syncing the
    /// locations the resources name) and reloads authentication settings until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let watch = watch::run(Arc::clone(&self.api.catalog), cancel.clone());
        let catalog = async {
            match self.discovery.clone() {
                Some(discovery) => {
                    discovery
                        .run(
                            Arc::clone(&self.api.catalog),
                            self.refresh_interval,
                            cancel.clone(),
                        )
                        .await
                }
                None => {
                    Arc::clone(&self.api.catalog)
                        .run(self.refresh_interval, cancel.clone())
                        .await
                }
            }
        };
        let authn = async {
            if self.reload_authn {
                Arc::clone(&self.api.authenticator)
                    .run(AUTHN_RELOAD_INTERVAL, cancel.clone())
                    .await;
            }
        };
        tokio::join!(catalog, authn, watch);
    }
}

fn load_catalog_config(path: &Path) -> Result<CatalogConfig, Error> {
    let error = |reason: String| Error::CatalogConfig {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    CatalogConfig::parse(&text).map_err(error)
}

fn secrets(dir: Option<&PathBuf>) -> SecretStore {
    dir.map_or(SecretStore::None, |d| SecretStore::Dir(d.clone()))
}

async fn kube_client(mode: KubernetesMode) -> Option<kube::Client> {
    if mode == KubernetesMode::Off {
        return None;
    }
    match kube::Config::infer().await {
        Ok(config) => match kube::Client::try_from(config) {
            Ok(client) => Some(client),
            Err(e) => {
                warn!(error = %e, "failed to build a Kubernetes client; serving the catalog without Kubernetes");
                None
            }
        },
        Err(e) => {
            info!(reason = %e, "no Kubernetes configuration found; the catalog API runs as the embedded default");
            None
        }
    }
}

/// Builds the aggregated API from the flags: the catalog and its locations, the clusters for diffs,
/// authentication (files, the cluster's ConfigMap, or a development client CA) and authorization
/// (SubjectAccessReview with a cluster, else the static policy).
pub async fn start(args: &ApiServerArgs, options: StartOptions) -> Result<Started, Error> {
    let kube = kube_client(args.kubernetes).await;
    let config = match &args.catalog_config {
        Some(path) => load_catalog_config(path)?,
        None => CatalogConfig::default(),
    };

    let catalog = Arc::new(Catalog::new(options.metrics.clone()));
    let env_for = |namespace: &str| StorageEnv {
        pvc_root: args.pvc_root.clone(),
        config_maps: kube
            .clone()
            .map_or(crate::storage::configmap::ConfigMapStore::None, |client| {
                crate::storage::configmap::ConfigMapStore::Kube(crate::storage::configmap::KubeTarget {
                    client,
                    namespace: namespace.to_owned(),
                })
            }),
    };
    if let Some(default) = &config.default {
        let namespace = default
            .namespace
            .clone()
            .unwrap_or_else(|| args.catalog_default_namespace.clone());
        let location = Location::open(
            &default.storage,
            &secrets(default.secrets_dir.as_ref()),
            &env_for(&namespace),
        )
        .map_err(|source| Error::Storage {
            what: "default".into(),
            source: Box::new(source),
        })?;
        catalog.add_storage(Scope::Default { namespace }, location);
    } else if kube.is_none() || args.catalog_dir.is_some() {
        let dir = match (&args.catalog_dir, &options.state_dir) {
            (Some(dir), _) => dir.clone(),
            (None, Some(state)) => config::default_catalog_dir(state),
            (None, None) => return Err(Error::NoCatalogDir),
        };
        let location = crate::storage::embedded_default(&dir).map_err(|source| Error::Storage {
            what: dir.display().to_string(),
            source: Box::new(source),
        })?;
        info!(dir = %dir.display(), namespace = %args.catalog_default_namespace, "local directory is the default catalog location");
        catalog.add_storage(
            Scope::Default {
                namespace: args.catalog_default_namespace.clone(),
            },
            location,
        );
    }
    for (namespace, locations) in &config.namespaces {
        for (i, location) in locations.iter().enumerate() {
            let opened = Location::open(
                &location.storage,
                &secrets(location.secrets_dir.as_ref()),
                &env_for(namespace),
            )
            .map_err(|source| Error::Storage {
                what: format!("namespaces.{namespace}[{i}]"),
                source: Box::new(source),
            })?;
            catalog.add_storage(Scope::Namespace(namespace.clone()), opened);
        }
    }
    let clusters = Arc::new(ClusterRegistry::default());
    for cluster in &config.clusters {
        clusters
            .register(&cluster.kafka_cluster, &secrets(cluster.secrets_dir.as_ref()))
            .map_err(|source| Error::Cluster {
                cluster: cluster.kafka_cluster.bootstrap_servers.join(","),
                source: Box::new(source),
            })?;
    }

    let mut client_ca_file = args.client_ca_file.clone();
    if client_ca_file.is_none()
        && kube.is_none()
        && let Some(state) = &options.state_dir
    {
        let access = devaccess::ensure(
            &state.join("apiserver"),
            &devaccess::local_url(options.listen),
            options.serving_ca.as_deref(),
            &args.catalog_default_namespace,
        )?;
        info!(kubeconfig = %access.kubeconfig.display(), client_ca = %access.client_ca.display(), "development access to the catalog API (system:masters)");
        client_ca_file = Some(access.client_ca);
    }
    let sources = AuthnSources {
        client_ca_file,
        requestheader_ca_file: args.requestheader_client_ca_file.clone(),
        allowed_names: args.requestheader_allowed_names.clone(),
        kube: kube.clone(),
    };
    let reload_authn =
        sources.kube.is_some() || sources.client_ca_file.is_some() || sources.requestheader_ca_file.is_some();
    let authenticator = Arc::new(Authenticator::new(sources));
    if let Err(e) = authenticator.reload().await {
        // Files given on the command line must be right; the cluster's ConfigMap may come later.
        if kube.is_none() {
            return Err(Error::Authn(Box::new(e)));
        }
        warn!(error = %e, "failed to load authentication settings; retrying every minute");
    }

    let authorizer: Arc<dyn Authorizer> = match (&args.authorization_policy, &kube) {
        (Some(path), _) => {
            info!(policy = %path.display(), "catalog API authorization: static policy");
            Arc::new(StaticPolicy::load(path).map_err(|e| Error::Authz(Box::new(e)))?)
        }
        (None, Some(client)) => {
            info!("catalog API authorization: SubjectAccessReview");
            Arc::new(SubjectAccessReviewer::new(
                client.clone(),
                args.authorization_cache_ttl,
                args.authorization_cache_ttl,
            ))
        }
        (None, None) => {
            info!("catalog API authorization: built-in policy (system:masters only)");
            Arc::new(StaticPolicy::builtin())
        }
    };

    Ok(Started {
        api: Arc::new(ApiServer {
            catalog,
            authenticator,
            authorizer,
            clusters,
            metrics: options.metrics,
            readiness: options.readiness,
            list_cache: list_cache::ListCache::default(),
            kube: kube.clone(),
        }),
        refresh_interval: args.catalog_refresh_interval,
        reload_authn,
        discovery: kube.map(|client| {
            feed::NamespaceDiscovery::new(client, options.resource_namespaces, args.pvc_root.clone())
        }),
    })
}

// === routes ===

/// The routes of the aggregated API, to be merged into the HTTPS router; `None` adds nothing.
pub fn router<S: Clone + Send + Sync + 'static>(api: Option<Arc<ApiServer>>) -> Router<S> {
    let Some(api) = api else {
        return Router::new();
    };
    let base = format!("/apis/{CATALOG_GROUP}/{CATALOG_VERSION}");
    let guarded = Router::new()
        .route("/apis", only_get(get(apis)))
        .route(&format!("/apis/{CATALOG_GROUP}"), only_get(get(group)))
        .route(&base, only_get(get(resource_list)))
        .route(&format!("{base}/{{resource}}"), only_get(get(list_all)))
        .route(
            &format!("{base}/namespaces/{{namespace}}/{{resource}}"),
            get(list_namespaced)
                .delete(delete_collection)
                .fallback(method_not_allowed)
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/{{resource}}/{{name}}"),
            get(get_object)
                .delete(delete_object)
                .fallback(method_not_allowed)
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
        .route(
            &format!("{base}/namespaces/{{namespace}}/{{resource}}/{{name}}/{{subresource}}"),
            only_get(get(subresource)),
        )
        .route("/openapi/v2", only_get(get(openapi_v2)))
        .route("/openapi/v3", only_get(get(openapi_v3)))
        .route(
            &format!("/openapi/v3/{}", openapi::v3_group_path()),
            only_get(get(openapi_v3_group)),
        )
        .layer(middleware::from_fn_with_state(Arc::clone(&api), guard));
    guarded
        .route("/healthz", get(livez))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(api)
}

fn only_get(route: MethodRouter<Arc<ApiServer>>) -> MethodRouter<Arc<ApiServer>> {
    route.fallback(method_not_allowed)
}

async fn method_not_allowed(method: Method) -> Response {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
        None,
    )
}

// === responses ===

/// A `metav1.Status` failure response; `details` is (name, resource) when about one object.
pub fn status(
    code: StatusCode,
    reason: &str,
    message: impl Into<String>,
    details: Option<(&str, Resource)>,
) -> Response {
    let body = Status {
        code: Some(i32::from(code.as_u16())),
        message: Some(message.into()),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
        details: details.map(|(name, resource)| StatusDetails {
            name: Some(name.to_owned()).filter(|n| !n.is_empty()),
            group: Some(CATALOG_GROUP.to_owned()),
            kind: Some(resource.plural().to_owned()),
            ..StatusDetails::default()
        }),
        ..Status::default()
    };
    (code, axum::Json(body)).into_response()
}

fn not_found(name: &str, resource: Resource) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} {name:?} not found", resource.qualified()),
        Some((name, resource)),
    )
}

fn no_such_resource() -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        None,
    )
}

fn bad_request(error: &SelectorError) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", error.to_string(), None)
}

fn not_acceptable(what: &str) -> Response {
    status(
        StatusCode::NOT_ACCEPTABLE,
        "NotAcceptable",
        format!("only application/json{what} is served here"),
        None,
    )
}

fn json_response(value: &Value, content_type: &'static str) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("failed to encode the answer: {e}"),
            None,
        ),
    }
}

fn json(value: &Value) -> Response {
    json_response(value, "application/json")
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {:?}", warning.replace('"', "'"));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .map(|q| {
            url_decode_pairs(q)
                .into_iter()
                .collect::<BTreeMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && let Some(hex) = s.get(i + 1..i + 3)
                && let Ok(byte) = u8::from_str_radix(hex, 16)
            {
                out.push(byte);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

// === authentication and authorization ===

async fn guard(State(api): State<Arc<ApiServer>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = query_map(request.uri().query());
    let span = info_span!("catalog_request", %method, %path, user = Empty, verb = Empty, code = Empty);
    async move {
        let peer = request.extensions().get::<Arc<PeerCertificates>>().cloned();
        let user = match api.authenticator.authenticate(peer.as_deref(), request.headers()) {
            Ok(user) => user,
            Err(e) => {
                let message = match e {
                    Unauthenticated::NoCertificate => "Unauthorized",
                    Unauthenticated::Untrusted => "Unauthorized: the client certificate is not trusted",
                };
                tracing::Span::current().record("code", 401);
                info!(reason = %e, "unauthenticated request");
                return status(StatusCode::UNAUTHORIZED, "Unauthorized", message, None);
            }
        };
        tracing::Span::current().record("user", user.name.as_str());
        let Some((verb, target)) = request_target(method.as_str(), &path, &query) else {
            return next.run(request).await;
        };
        tracing::Span::current().record("verb", verb.as_str());
        let attributes = Attributes { user, verb, target };
        let decision = match builtin(&attributes) {
            Some(decision) => Ok((decision, "builtin")),
            None => api.authorizer.authorize(&attributes).await,
        };
        let (resource, name) = match &attributes.target {
            Target::Resource {
                resource,
                subresource,
                name,
                ..
            } if subresource.is_empty() => (resource.clone(), name.clone()),
            Target::Resource {
                resource,
                subresource,
                name,
                ..
            } => (format!("{resource}/{subresource}"), name.clone()),
            Target::NonResource { .. } => (String::new(), String::new()),
        };
        let response = match decision {
            Err(e) => {
                warn!(error = %e, "authorization failed");
                status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    format!("Internal error occurred: {e}"),
                    None,
                )
            }
            Ok((decision, source)) => {
                if let Some(metrics) = &api.metrics {
                    metrics.authorization(decision.allowed, source);
                }
                if decision.allowed {
                    request.extensions_mut().insert(attributes.user.clone());
                    next.run(request).await
                } else {
                    info!(verb = %attributes.verb, resource = %resource, reason = %decision.reason, "forbidden");
                    let details = Resource::from_plural(resource.split('/').next().unwrap_or_default());
                    status(
                        StatusCode::FORBIDDEN,
                        "Forbidden",
                        attributes.forbidden_message(&decision.reason),
                        details.map(|r| (name.as_str(), r)),
                    )
                }
            }
        };
        let code = response.status().as_u16();
        tracing::Span::current().record("code", code);
        if let Some(metrics) = &api.metrics {
            let verb = if resource.is_empty() { "discovery" } else { attributes.verb.as_str() };
            metrics.request(verb, &resource, code, started.elapsed());
        }
        response
    }
    .instrument(span)
    .await
}

// === health ===

async fn livez() -> &'static str {
    "ok"
}

async fn readyz(State(api): State<Arc<ApiServer>>) -> Response {
    let failing = api.readiness.failing();
    if failing.is_empty() {
        return "ok".into_response();
    }
    let mut body = String::from("not ready\n");
    for (name, reason) in failing {
        body.push_str(&format!("[-]{name}: {reason}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

// === discovery and OpenAPI ===

async fn apis(headers: HeaderMap) -> Response {
    match discovery::discovery_format(accept(&headers), true) {
        Some(DiscoveryFormat::Legacy) => json(&discovery::api_group_list()),
        Some(DiscoveryFormat::AggregatedV2) => {
            json_response(&discovery::aggregated_discovery("v2"), discovery::AGGREGATED_V2)
        }
        Some(DiscoveryFormat::AggregatedV2Beta1) => json_response(
            &discovery::aggregated_discovery("v2beta1"),
            discovery::AGGREGATED_V2BETA1,
        ),
        None => not_acceptable(" (APIGroupList) or aggregated discovery (apidiscovery.k8s.io v2, v2beta1)"),
    }
}

async fn group(headers: HeaderMap) -> Response {
    match discovery::discovery_format(accept(&headers), false) {
        Some(_) => json(&discovery::api_group()),
        None => not_acceptable(" (APIGroup)"),
    }
}

async fn resource_list(headers: HeaderMap) -> Response {
    match discovery::discovery_format(accept(&headers), false) {
        Some(_) => json(&discovery::api_resource_list()),
        None => not_acceptable(" (APIResourceList)"),
    }
}

async fn openapi_v2() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::v2()).into_response()
}

async fn openapi_v3() -> Response {
    json(&openapi::v3_index())
}

async fn openapi_v3_group() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, format!("\"{}\"", openapi::v3_group_hash())),
        ],
        openapi::v3_group(),
    )
        .into_response()
}

// === resources ===

/// An error answer, boxed to keep `Result`s small.
type Refusal = Box<Response>;

fn resource_of(plural: &str) -> Result<Resource, Refusal> {
    Resource::from_plural(plural).ok_or_else(|| Box::new(no_such_resource()))
}

async fn list_all(
    State(api): State<Arc<ApiServer>>,
    user: Option<Extension<UserInfo>>,
    UrlPath(resource): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let user = user.map(|Extension(u)| u);
    list(&api, user.as_ref(), None, &resource, &headers, query.as_deref()).await
}

async fn list_namespaced(
    State(api): State<Arc<ApiServer>>,
    user: Option<Extension<UserInfo>>,
    UrlPath((namespace, resource)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let user = user.map(|Extension(u)| u);
    list(
        &api,
        user.as_ref(),
        Some(&namespace),
        &resource,
        &headers,
        query.as_deref(),
    )
    .await
}

/// The parameters of a list request.
struct ListParams {
    labels: LabelSelector,
    fields: FieldSelector,
    limit: Option<usize>,
    after: Option<ContinueToken>,
    include: IncludeObject,
}

fn list_params(resource: Resource, query: &BTreeMap<String, String>) -> Result<ListParams, Refusal> {
    let get = |k: &str| query.get(k).map(String::as_str);
    let labels =
        LabelSelector::parse(get("labelSelector").unwrap_or("")).map_err(|e| Box::new(bad_request(&e)))?;
    let fields = FieldSelector::parse(get("fieldSelector").unwrap_or(""), resource.selectable_fields())
        .map_err(|e| Box::new(bad_request(&e)))?;
    let limit = selectors::parse_limit(get("limit")).map_err(|e| Box::new(bad_request(&e)))?;
    let after = match get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(ContinueToken::decode(token).map_err(|e| Box::new(bad_request(&e)))?),
        None => None,
    };
    let include = IncludeObject::parse(get("includeObject"))
        .map_err(|e| Box::new(status(StatusCode::BAD_REQUEST, "BadRequest", e, None)))?;
    Ok(ListParams {
        labels,
        fields,
        limit,
        after,
        include,
    })
}

/// Selects a page of entries: (page, continue token).
fn page<'a, T: 'a>(
    entries: impl Iterator<Item = &'a resources::Entry<T>>,
    params: &ListParams,
    labels_of: impl Fn(&T) -> BTreeMap<String, String>,
    field_of: impl for<'e> Fn(&'e resources::Entry<T>, &str) -> Option<&'e str>,
) -> (Vec<&'a resources::Entry<T>>, Option<String>) {
    let mut out = Vec::new();
    let mut next = None;
    for entry in entries {
        if !params.fields.matches(|f| field_of(entry, f)) {
            continue;
        }
        if !params.labels.0.is_empty() && !params.labels.matches(&labels_of(&entry.summary)) {
            continue;
        }
        if params.limit.is_some_and(|limit| out.len() >= limit) {
            next = out.last().map(|last: &&resources::Entry<T>| {
                ContinueToken {
                    namespace: last.namespace.clone(),
                    name: last.name.clone(),
                }
                .encode()
            });
            break;
        }
        out.push(entry);
    }
    (out, next)
}

async fn list(
    api: &ApiServer,
    user: Option<&UserInfo>,
    namespace: Option<&str>,
    plural: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response {
    let resource = match resource_of(plural) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let raw_query = query;
    let query = query_map(query);
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("watch is not supported on {}", resource.qualified()),
            None,
        );
    }
    let Some(format) = discovery::object_format(accept(headers)) else {
        return not_acceptable(" or a meta.k8s.io/v1 Table");
    };
    let params = match list_params(resource, &query) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    // A field selector on the namespace narrows a list across namespaces to one.
    let namespace = namespace.or_else(|| params.fields.pinned("metadata.namespace"));
    let now = chrono::Utc::now();
    if user.is_some_and(is_namespace_controller) {
        // The catalog's objects are not the namespace's content (see the module docs).
        let (body, _) = match resource {
            Resource::OffsetSnapshots => {
                rendered_list::<resources::SnapshotSummary>(resource, format, &[], &now, &params, 0, None)
            }
            Resource::BackupSets => {
                rendered_list::<backupsets::BackupSetSummary>(resource, format, &[], &now, &params, 0, None)
            }
        };
        return raw_json(body);
    }
    api.catalog.ensure_listed(namespace).await;
    let after = params
        .after
        .as_ref()
        .map(|t| (t.namespace.as_str(), t.name.as_str()));
    let index = api.catalog.index();
    let key = list_cache::ListKey {
        namespace: namespace.map(str::to_owned),
        resource,
        query: raw_query.unwrap_or_default().to_owned(),
        format,
        generation: index.generation,
    };
    let problems = api.catalog.problems(namespace);
    if let Some(body) = api.list_cache.get(&key, now) {
        return with_warnings(raw_json(body), &problems);
    }
    let (body, valid_until) = match resource {
        Resource::OffsetSnapshots => {
            let (entries, next) = page(
                index.snapshots_in(namespace, after),
                &params,
                resources::snapshot_labels,
                resources::snapshot_field,
            );
            rendered_list(
                resource,
                format,
                &entries,
                &now,
                &params,
                index.generation,
                next.as_deref(),
            )
        }
        Resource::BackupSets => {
            let (entries, next) = page(
                index.backup_sets_in(namespace, after),
                &params,
                resources::backup_set_labels,
                resources::backup_set_field,
            );
            rendered_list(
                resource,
                format,
                &entries,
                &now,
                &params,
                index.generation,
                next.as_deref(),
            )
        }
    };
    let body = bytes::Bytes::from(body);
    // Only lists worth keeping: a page is cheap to render again.
    if body.len() >= LIST_CACHE_MIN_BYTES {
        api.list_cache.put(key, body.clone(), valid_until);
    }
    with_warnings(raw_json(body), &problems)
}

/// Smallest list answer kept in the [`list_cache`].
const LIST_CACHE_MIN_BYTES: usize = 256 * 1024;

/// The body of a list in the negotiated format, from the entries' rendered JSON, and until when it
/// stays the same ([`table::stable_until`]; `None`: as long as the index).
fn rendered_list<T>(
    resource: Resource,
    format: ObjectFormat,
    entries: &[&resources::Entry<T>],
    now: &chrono::DateTime<chrono::Utc>,
    params: &ListParams,
    generation: u64,
    next: Option<&str>,
) -> (Vec<u8>, Option<chrono::DateTime<chrono::Utc>>) {
    match format {
        ObjectFormat::Json => (resources::list_body(resource, entries, generation, next), None),
        ObjectFormat::Table(v) => (
            table::table_body(resource, v, entries, now, params.include, Some(generation), next),
            table::stable_until(entries, now),
        ),
    }
}

fn raw_json(body: impl Into<axum::body::Body>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

fn storage_unavailable(what: &str, error: &dyn std::fmt::Display) -> Response {
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        format!("failed to {what}: {error}"),
        None,
    )
}

async fn get_object(
    State(api): State<Arc<ApiServer>>,
    UrlPath((namespace, plural, name)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let resource = match resource_of(&plural) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let Some(format) = discovery::object_format(accept(&headers)) else {
        return not_acceptable(" or a meta.k8s.io/v1 Table");
    };
    let include = match IncludeObject::parse(
        query_map(query.as_deref())
            .get("includeObject")
            .map(String::as_str),
    ) {
        Ok(i) => i,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e, None),
    };
    let index = api.catalog.index();
    let key = (namespace, name);
    let now = chrono::Utc::now();
    match resource {
        Resource::OffsetSnapshots => {
            let Some(entry) = index.snapshots.get(&key).cloned() else {
                return not_found(&key.1, resource);
            };
            drop(index);
            if let ObjectFormat::Table(v) = format {
                return raw_json(table::table_body(
                    resource,
                    v,
                    &[&entry],
                    &now,
                    include,
                    None,
                    None,
                ));
            }
            match api.catalog.read_snapshot(&entry).await {
                Ok(Some(snapshot)) => json(&resources::full_snapshot_object(&entry, &snapshot)),
                Ok(None) => not_found(&key.1, resource),
                Err(e) => storage_unavailable(&format!("read offset snapshot {}", entry.summary.uri), &e),
            }
        }
        Resource::BackupSets => {
            let Some(entry) = index.backup_sets.get(&key) else {
                return not_found(&key.1, resource);
            };
            match format {
                ObjectFormat::Table(v) => raw_json(table::table_body(
                    resource,
                    v,
                    &[entry],
                    &now,
                    include,
                    None,
                    None,
                )),
                ObjectFormat::Json => raw_json(entry.rendered.item.clone().into_bytes()),
            }
        }
    }
}

/// What a DELETE's body and query ask for.
fn delete_options(query: &BTreeMap<String, String>, body: &[u8]) -> Result<(bool, Option<String>), Refusal> {
    let mut dry_run = query.get("dryRun").is_some_and(|d| d == "All");
    let mut uid = None;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let options: Value = serde_json::from_slice(body).map_err(|e| {
            Box::new(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the request body is not DeleteOptions: {e}"),
                None,
            ))
        })?;
        if let Some(values) = options.get("dryRun").and_then(Value::as_array) {
            dry_run |= values.iter().any(|v| v == "All");
        }
        uid = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    Ok((dry_run, uid))
}

/// Users of kube-controller-manager's namespace controller: its own service account, or the
/// controller manager's identity when the controllers share its credentials.
const NAMESPACE_CONTROLLER_USERS: [&str; 2] = [
    "system:serviceaccount:kube-system:namespace-controller",
    "system:kube-controller-manager",
];

fn is_namespace_controller(user: &UserInfo) -> bool {
    NAMESPACE_CONTROLLER_USERS.contains(&user.name.as_str())
}

/// Why a DELETE in `namespace` by `user` only hides (the namespace goes away), `None` when it is a
/// user's explicit delete; an error answer when the namespace's state cannot be read.
async fn namespace_cleanup(
    api: &ApiServer,
    user: Option<&UserInfo>,
    namespace: &str,
) -> Result<Option<&'static str>, Refusal> {
    if user.is_some_and(is_namespace_controller) {
        return Ok(Some("the namespace controller deletes the namespace"));
    }
    let Some(client) = &api.kube else {
        return Ok(None);
    };
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(Some(ns)) => {
            let terminating = ns.metadata.deletion_timestamp.is_some()
                || ns.status.and_then(|s| s.phase).as_deref() == Some("Terminating");
            Ok(terminating.then_some("the namespace is being deleted"))
        }
        // Objects of a default location may be listed in a namespace that does not exist.
        Ok(None) => Ok(None),
        Err(e) => Err(Box::new(storage_unavailable(
            &format!(
                "read namespace {namespace} (a snapshot is deleted only when its namespace is not being deleted)"
            ),
            &e,
        ))),
    }
}

async fn delete_collection(
    State(api): State<Arc<ApiServer>>,
    user: Option<Extension<UserInfo>>,
    UrlPath((namespace, plural)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let resource = match resource_of(&plural) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    let user = user.map(|Extension(u)| u);
    let reason = match resource {
        Resource::OffsetSnapshots => match namespace_cleanup(&api, user.as_ref(), &namespace).await {
            Ok(reason) => reason,
            Err(response) => return *response,
        },
        Resource::BackupSets => None,
    };
    let Some(reason) = reason else {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "deletecollection is not served on {}: delete offset snapshots one by one",
                resource.qualified()
            ),
            None,
        );
    };
    let query = query_map(query.as_deref());
    let (dry_run, _) = match delete_options(&query, &body) {
        Ok(options) => options,
        Err(response) => return *response,
    };
    let index = api.catalog.index();
    let entries: Vec<_> = index.snapshots_in(Some(&namespace), None).cloned().collect();
    drop(index);
    if !dry_run {
        for entry in &entries {
            api.catalog.hide_snapshot(entry);
        }
        info!(namespace = %namespace, snapshots = entries.len(), reason, "offset snapshots hidden, not deleted: stored data outlives the namespace");
    }
    let refs: Vec<&resources::SnapshotEntry> = entries.iter().collect();
    raw_json(resources::list_body(
        resource,
        &refs,
        api.catalog.index().generation,
        None,
    ))
}

async fn delete_object(
    State(api): State<Arc<ApiServer>>,
    user: Option<Extension<UserInfo>>,
    UrlPath((namespace, plural, name)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let resource = match resource_of(&plural) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    if resource != Resource::OffsetSnapshots {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "{} cannot be deleted through the API: they are deleted by backup retention",
                resource.qualified()
            ),
            Some((&name, resource)),
        );
    }
    let query = query_map(query.as_deref());
    let (dry_run, uid) = match delete_options(&query, &body) {
        Ok(options) => options,
        Err(response) => return *response,
    };
    let Some(entry) = api
        .catalog
        .index()
        .snapshots
        .get(&(namespace, name.clone()))
        .cloned()
    else {
        return not_found(&name, resource);
    };
    let object = resources::snapshot_object(&entry);
    if let Some(uid) = uid
        && object.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
    {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                resource.qualified(),
                object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
            Some((&name, resource)),
        );
    }
    let user = user.map(|Extension(u)| u);
    let reason = match namespace_cleanup(&api, user.as_ref(), &entry.namespace).await {
        Ok(reason) => reason,
        Err(response) => return *response,
    };
    // Snapshots of the prior art are read, never deleted (a namespace's deletion only hides them).
    if reason.is_none()
        && entry
            .summary
            .source
            .as_ref()
            .is_some_and(crate::storage::prior_art::is_snapshot_source)
    {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "offset snapshot {name:?} ({}) was written by kafka-backup 0.x: the operator reads such snapshots but never deletes them; delete it with that tool or in storage",
                entry.summary.uri
            ),
            Some((&name, resource)),
        );
    }
    if dry_run {
        return json(&object);
    }
    if let Some(reason) = reason {
        api.catalog.hide_snapshot(&entry);
        info!(snapshot = %name, namespace = %entry.namespace, uri = %entry.summary.uri, reason, "offset snapshot hidden, not deleted: stored data outlives the namespace");
        return json(&object);
    }
    match api.catalog.delete_snapshot(&entry).await {
        Ok(_) => {
            info!(snapshot = %name, namespace = %entry.namespace, uri = %entry.summary.uri, "offset snapshot deleted");
            json(&object)
        }
        Err(e) => storage_unavailable(&format!("delete offset snapshot {}", entry.summary.uri), &e),
    }
}

async fn subresource(
    State(api): State<Arc<ApiServer>>,
    UrlPath((namespace, plural, name, sub)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let resource = match resource_of(&plural) {
        Ok(r) => r,
        Err(response) => return *response,
    };
    if resource != Resource::OffsetSnapshots || sub != DIFF_SUBRESOURCE {
        return no_such_resource();
    }
    let Some(format) = discovery::object_format(accept(&headers)) else {
        return not_acceptable(" or a meta.k8s.io/v1 Table");
    };
    let Some(entry) = api
        .catalog
        .index()
        .snapshots
        .get(&(namespace, name.clone()))
        .cloned()
    else {
        return not_found(&name, resource);
    };
    let snapshot = match api.catalog.read_snapshot(&entry).await {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return not_found(&name, resource),
        Err(e) => return storage_unavailable(&format!("read offset snapshot {}", entry.summary.uri), &e),
    };
    let access = api.clusters.access_for(&snapshot.cluster);
    let current = match tokio::time::timeout(diff::DIFF_TIMEOUT, diff::read_current(&access, &snapshot)).await
    {
        Ok(Ok(current)) => current,
        Ok(Err(e)) => {
            return storage_unavailable(&format!("read the committed offsets on {}", snapshot.cluster), &e);
        }
        Err(_) => {
            return storage_unavailable(
                &format!("read the committed offsets on {}", snapshot.cluster),
                &format!("no answer within {}s", diff::DIFF_TIMEOUT.as_secs()),
            );
        }
    };
    let (groups, summary) = diff::compare(&snapshot, &current);
    match format {
        ObjectFormat::Json => json(&diff::diff_object(
            &entry,
            &snapshot,
            &groups,
            summary,
            &chrono::Utc::now(),
        )),
        ObjectFormat::Table(v) => json(&diff::diff_table(v, &groups)),
    }
}

/// Request body of a DELETE, for tests of [`delete_options`].
#[cfg(test)]
fn delete_options_of(query: &str, body: &str) -> Option<(bool, Option<String>)> {
    delete_options(&query_map(Some(query)), &Bytes::from(body.to_owned())).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn queries_are_decoded() {
        let q = query_map(Some("labelSelector=app%3Dorders%2Ctier+in+(a)&limit=5&watch"));
        assert_eq!(q["labelSelector"], "app=orders,tier in (a)");
        assert_eq!(q["limit"], "5");
        assert_eq!(q["watch"], "");
    }

    use crate::storage::snapshot::snapshot_key;

    fn api_with(catalog: Catalog, kube: Option<kube::Client>) -> Arc<ApiServer> {
        Arc::new(ApiServer {
            catalog: Arc::new(catalog),
            authenticator: Arc::new(Authenticator::new(AuthnSources::default())),
            authorizer: Arc::new(StaticPolicy::builtin()),
            clusters: Arc::new(ClusterRegistry::default()),
            metrics: None,
            readiness: Readiness::new(),
            list_cache: list_cache::ListCache::default(),
            kube,
        })
    }

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        }
    }

    async fn body_of(response: Response) -> (StatusCode, Value) {
        let code = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A location directory holding snapshots `ids` of namespace team-a.
    async fn team_a_location(dir: &Path, ids: &[&str]) -> Location {
        let location: Location =
            crate::storage::ObjectLocation::directory(dir, format!("file://{}", dir.display()))
                .unwrap()
                .into();
        for id in ids {
            location
                .put_new(
                    &snapshot_key(id),
                    catalog::tests::snapshot(id, Some("team-a")).to_bytes(),
                )
                .await
                .unwrap();
        }
        location
    }

    #[tokio::test]
    async fn a_list_shows_a_location_just_met_without_the_not_listed_warning() {
        let dir = tempfile::tempdir().unwrap();
        let location = team_a_location(dir.path(), &["older", "written"]).await;
        let catalog = Catalog::default();
        // The reconciler's hook after an operation wrote `written` into a location new to the catalog.
        catalog.add_storage(Scope::Resources("team-a".into()), location.clone());
        catalog.record_snapshot(
            "team-a",
            &location,
            &catalog::tests::snapshot("written", Some("team-a")),
        );
        let api = api_with(catalog, None);
        let response = list(
            &api,
            Some(&user("alice")),
            Some("team-a"),
            "offsetsnapshots",
            &HeaderMap::new(),
            None,
        )
        .await;
        assert!(
            response.headers().get(header::WARNING).is_none(),
            "{:?}",
            response.headers()
        );
        let (_, list) = body_of(response).await;
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names, ["older", "written"]);
    }

    /// A mock Kubernetes API whose namespace team-a is Terminating and team-b Active.
    fn namespaces_api() -> kube::Client {
        use http_body_util::BodyExt as _;
        let service = tower::service_fn(|request: axum::http::Request<kube::client::Body>| async move {
            let name = request
                .uri()
                .path()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let _ = request.into_body().collect().await;
            let phase = if name == "team-a" { "Terminating" } else { "Active" };
            let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name}, "status": {"phase": phase}});
            Ok::<_, std::convert::Infallible>(
                axum::http::Response::builder()
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(Bytes::from(namespace.to_string())))
                    .unwrap(),
            )
        });
        kube::Client::new(service, "default")
    }

    #[tokio::test]
    async fn deletes_in_a_terminating_namespace_only_hide_and_elsewhere_delete() {
        let dir_a = tempfile::tempdir().unwrap();
        let dir_b = tempfile::tempdir().unwrap();
        let team_a = team_a_location(dir_a.path(), &["a1", "a2"]).await;
        let team_b = team_a_location(dir_b.path(), &["b1"]).await;
        let catalog = Catalog::default();
        catalog.add_storage(Scope::Namespace("team-a".into()), team_a.clone());
        catalog.add_storage(Scope::Namespace("team-b".into()), team_b.clone());
        catalog.refresh().await;
        let api = api_with(catalog, Some(namespaces_api()));
        let delete = |ns: &str, name: &str| {
            delete_object(
                State(Arc::clone(&api)),
                Some(Extension(user("carol"))),
                UrlPath((ns.to_owned(), "offsetsnapshots".to_owned(), name.to_owned())),
                RawQuery(None),
                Bytes::from_static(
                    br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#,
                ),
            )
        };
        let delete_all = |ns: &str| {
            delete_collection(
                State(Arc::clone(&api)),
                Some(Extension(user("carol"))),
                UrlPath((ns.to_owned(), "offsetsnapshots".to_owned())),
                RawQuery(None),
                Bytes::new(),
            )
        };
        // team-a is being deleted: a user's delete answers success and only hides.
        let (code, object) = body_of(delete("team-a", "a1").await).await;
        assert_eq!(
            (code, object["metadata"]["name"].as_str()),
            (StatusCode::OK, Some("a1"))
        );
        assert!(team_a.get(&snapshot_key("a1")).await.unwrap().is_some());
        let (code, list) = body_of(delete_all("team-a").await).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(list["items"][0]["metadata"]["name"], "a2");
        assert!(team_a.get(&snapshot_key("a2")).await.unwrap().is_some());
        assert_eq!(api.catalog.index().snapshots_in(Some("team-a"), None).count(), 0);

        // team-b is not: the collection is not served, one snapshot is deleted for real.
        let (code, _) = body_of(delete_all("team-b").await).await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
        let (code, _) = body_of(delete("team-b", "b1").await).await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(team_b.get(&snapshot_key("b1")).await.unwrap(), None);
    }

    #[test]
    fn delete_options_are_read_from_query_and_body() {
        assert_eq!(delete_options_of("", ""), Some((false, None)));
        assert_eq!(delete_options_of("dryRun=All", ""), Some((true, None)));
        assert_eq!(
            delete_options_of(
                "",
                r#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"],"preconditions":{"uid":"u"}}"#
            ),
            Some((true, Some("u".into())))
        );
        assert_eq!(delete_options_of("", "{not json"), None);
    }
}
