//! Authentication of catalog API requests, as a delegated Kubernetes API server does it.
//!
//! A request is authenticated by the client certificate of its connection
//! ([`super::tls::PeerCertificates`]), in this order:
//!
//! 1. **Front proxy (kube-aggregator)**: the certificate chains to the *requestheader client CA*
//!    and, when allowed names are configured, its common name is one of them. Then the user is taken
//!    from the request headers: the first non-empty of the username headers (`X-Remote-User`), all
//!    values of the group headers (`X-Remote-Group`), extras from headers with the extra prefix
//!    (`X-Remote-Extra-<key>`, key lower-cased and percent-decoded) and the uid header
//!    (`X-Remote-Uid`).
//! 2. **Client certificate**: the certificate chains to the *client CA*: the user is its common name
//!    and the groups its organizations. `X-Remote-*` headers are ignored: only the front proxy may
//!    assert another identity.
//! 3. Anything else (no certificate, a certificate from another CA, a front-proxy certificate with
//!    a name not allowed and no user header) is 401 Unauthorized.
//!
//! Every authenticated user is in the group `system:authenticated` (added unless the user is
//! `system:anonymous` or already in it or in `system:unauthenticated`), as k8s.io/apiserver's
//! authenticator adds it: kube-aggregator's own requests (`system:aggregator`, for OpenAPI) carry
//! no group, and the default RBAC grants discovery and OpenAPI to that group.
//!
//! The CA bundles and header names come from files (`--requestheader-client-ca-file`,
//! `--client-ca-file`, `--requestheader-allowed-names`) or, with a cluster, from the
//! `kube-system/extension-apiserver-authentication` ConfigMap that kube-apiserver publishes; files
//! win. [`Authenticator::reload`] re-reads them (`serve` does so every minute), so CA rotation
//! needs no restart.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::http::HeaderMap;
use k8s_openapi::api::core::v1::ConfigMap;
use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, UnixTime, pem::PemObject},
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
};
use tracing::{debug, info, warn};

use super::tls::PeerCertificates;

/// Namespace of the ConfigMap kube-apiserver publishes its authentication settings in.
pub const AUTHENTICATION_CONFIGMAP_NAMESPACE: &str = "kube-system";
/// Name of that ConfigMap.
pub const AUTHENTICATION_CONFIGMAP: &str = "extension-apiserver-authentication";
/// Group every authenticated user is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Group of unauthenticated requests (a front proxy may assert it).
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The anonymous user, who is not given [`AUTHENTICATED_GROUP`].
pub const ANONYMOUS_USER: &str = "system:anonymous";

/// Why the authentication settings cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// A CA file could not be read.
    #[error("failed to read {what} {}: {source}", path.display())]
    Read {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CA bundle holds no usable certificate.
    #[error("failed to load the {what} bundle: {reason}")]
    Bundle {
        /// Which setting.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The ConfigMap could not be read.
    #[error("failed to read ConfigMap {AUTHENTICATION_CONFIGMAP_NAMESPACE}/{AUTHENTICATION_CONFIGMAP}: {0}")]
    ConfigMap(#[source] kube::Error),
    /// A ConfigMap entry is not the JSON list of strings it should be.
    #[error(
        "failed to read {key} of ConfigMap {AUTHENTICATION_CONFIGMAP_NAMESPACE}/{AUTHENTICATION_CONFIGMAP}: {reason}"
    )]
    ConfigMapEntry {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// Why a request is not authenticated (answered with 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    /// No client certificate.
    #[error("no client certificate was presented")]
    NoCertificate,
    /// The certificate is trusted by neither CA.
    #[error("the client certificate is not signed by a trusted CA")]
    Untrusted,
}

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// Its uid, when the front proxy gave one.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The front-proxy (requestheader) settings.
#[derive(Debug, Clone)]
pub struct RequestHeaderSettings {
    /// PEM of the CA bundle.
    pub ca_pem: String,
    /// Common names allowed; empty allows any certificate of the CA.
    pub allowed_names: Vec<String>,
    /// Headers holding the user name.
    pub username_headers: Vec<String>,
    /// Headers holding groups.
    pub group_headers: Vec<String>,
    /// Prefixes of headers holding extras.
    pub extra_prefixes: Vec<String>,
    /// Headers holding the uid.
    pub uid_headers: Vec<String>,
}

impl RequestHeaderSettings {
    /// Kubernetes' default header names with `ca_pem` and `allowed_names`.
    pub fn with_defaults(ca_pem: String, allowed_names: Vec<String>) -> Self {
        RequestHeaderSettings {
            ca_pem,
            allowed_names,
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_prefixes: vec!["X-Remote-Extra-".into()],
            uid_headers: vec!["X-Remote-Uid".into()],
        }
    }
}

/// What the authenticator trusts.
#[derive(Debug, Clone, Default)]
pub struct AuthnSettings {
    /// Front proxy, if any.
    pub requestheader: Option<RequestHeaderSettings>,
    /// PEM of the client CA bundle, if any.
    pub client_ca_pem: Option<String>,
}

/// Where the settings come from.
#[derive(Clone, Default)]
pub struct AuthnSources {
    /// `--client-ca-file`.
    pub client_ca_file: Option<PathBuf>,
    /// `--requestheader-client-ca-file`.
    pub requestheader_ca_file: Option<PathBuf>,
    /// `--requestheader-allowed-names`.
    pub allowed_names: Option<Vec<String>>,
    /// The cluster, to read the ConfigMap from.
    pub kube: Option<kube::Client>,
}

impl std::fmt::Debug for AuthnSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthnSources")
            .field("client_ca_file", &self.client_ca_file)
            .field("requestheader_ca_file", &self.requestheader_ca_file)
            .field("allowed_names", &self.allowed_names)
            .field("kube", &self.kube.is_some())
            .finish()
    }
}

impl AuthnSources {
    /// Reads the files and the ConfigMap into settings; files win over the ConfigMap.
    pub async fn load(&self) -> Result<AuthnSettings, AuthnError> {
        let mut settings = match &self.kube {
            Some(client) => settings_from_configmap(client).await?,
            None => AuthnSettings::default(),
        };
        if let Some(path) = &self.client_ca_file {
            settings.client_ca_pem = Some(read_file("client CA", path).await?);
        }
        if let Some(path) = &self.requestheader_ca_file {
            let ca = read_file("requestheader client CA", path).await?;
            match &mut settings.requestheader {
                Some(rh) => rh.ca_pem = ca,
                None => {
                    settings.requestheader = Some(RequestHeaderSettings::with_defaults(ca, Vec::new()));
                }
            }
        }
        if let (Some(names), Some(rh)) = (&self.allowed_names, &mut settings.requestheader) {
            rh.allowed_names.clone_from(names);
        }
        Ok(settings)
    }
}

async fn read_file(what: &'static str, path: &PathBuf) -> Result<String, AuthnError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|source| AuthnError::Read {
            what,
            path: path.clone(),
            source,
        })
}

/// The settings in the `kube-system/extension-apiserver-authentication` ConfigMap.
pub async fn settings_from_configmap(client: &kube::Client) -> Result<AuthnSettings, AuthnError> {
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), AUTHENTICATION_CONFIGMAP_NAMESPACE);
    let cm = api
        .get(AUTHENTICATION_CONFIGMAP)
        .await
        .map_err(AuthnError::ConfigMap)?;
    settings_from_configmap_data(&cm.data.unwrap_or_default())
}

/// Parses the ConfigMap's data (pure).
pub fn settings_from_configmap_data(data: &BTreeMap<String, String>) -> Result<AuthnSettings, AuthnError> {
    let list =
        |key: &'static str| -> Result<Option<Vec<String>>, AuthnError> {
            match data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(text) => serde_json::from_str::<Vec<String>>(text).map(Some).map_err(|e| {
                    AuthnError::ConfigMapEntry {
                        key,
                        reason: e.to_string(),
                    }
                }),
            }
        };
    let requestheader = match data
        .get("requestheader-client-ca-file")
        .filter(|v| !v.trim().is_empty())
    {
        None => None,
        Some(ca) => {
            let mut rh = RequestHeaderSettings::with_defaults(
                ca.clone(),
                list("requestheader-allowed-names")?.unwrap_or_default(),
            );
            if let Some(h) = list("requestheader-username-headers")? {
                rh.username_headers = h;
            }
            if let Some(h) = list("requestheader-group-headers")? {
                rh.group_headers = h;
            }
            if let Some(h) = list("requestheader-extra-headers-prefix")? {
                rh.extra_prefixes = h;
            }
            if let Some(h) = list("requestheader-uid-headers")? {
                rh.uid_headers = h;
            }
            Some(rh)
        }
    };
    Ok(AuthnSettings {
        requestheader,
        client_ca_pem: data
            .get("client-ca-file")
            .filter(|v| !v.trim().is_empty())
            .cloned(),
    })
}

/// What a connection's certificate proves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertVerdict {
    /// It is the front proxy's (requestheader CA, allowed name).
    pub front_proxy: bool,
    /// It is a user's (client CA): name and groups.
    pub user: Option<(String, Vec<String>)>,
}

/// Settings compiled into verifiers.
#[derive(Debug)]
struct Compiled {
    generation: u64,
    requestheader: Option<(Arc<dyn ClientCertVerifier>, RequestHeaderSettings)>,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

fn verifier(what: &'static str, pem: &str) -> Result<Arc<dyn ClientCertVerifier>, AuthnError> {
    let bundle_error = |reason: String| AuthnError::Bundle { what, reason };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| bundle_error(e.to_string()))?;
        roots.add(cert).map_err(|e| bundle_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bundle_error("no CERTIFICATE block found".into()));
    }
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| bundle_error(e.to_string()))
}

/// The authenticator; its settings can be replaced at run time.
#[derive(Debug)]
pub struct Authenticator {
    compiled: RwLock<Arc<Compiled>>,
    generation: AtomicU64,
    sources: AuthnSources,
}

impl Authenticator {
    /// An authenticator trusting nothing until [`Authenticator::reload`] or
    /// [`Authenticator::install`].
    pub fn new(sources: AuthnSources) -> Self {
        Authenticator {
            compiled: RwLock::new(Arc::new(Compiled {
                generation: 0,
                requestheader: None,
                client_ca: None,
            })),
            generation: AtomicU64::new(0),
            sources,
        }
    }

    /// Compiles and installs `settings`.
    pub fn install(&self, settings: &AuthnSettings) -> Result<(), AuthnError> {
        let requestheader = match &settings.requestheader {
            Some(rh) => Some((verifier("requestheader client CA", &rh.ca_pem)?, rh.clone())),
            None => None,
        };
        let client_ca = match &settings.client_ca_pem {
            Some(pem) => Some(verifier("client CA", pem)?),
            None => None,
        };
        let compiled = Compiled {
            generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
            requestheader,
            client_ca,
        };
        *self.compiled.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(compiled);
        Ok(())
    }

    /// Reads the sources again and installs what they say; on error the previous settings stay.
    pub async fn reload(&self) -> Result<(), AuthnError> {
        let settings = self.sources.load().await?;
        self.install(&settings)?;
        debug!(
            requestheader = settings.requestheader.is_some(),
            client_ca = settings.client_ca_pem.is_some(),
            "authentication settings loaded"
        );
        Ok(())
    }

    /// Reloads every `interval` until `cancel` fires, logging failures.
    pub async fn run(
        self: Arc<Self>,
        interval: std::time::Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {
                    if let Err(e) = self.reload().await {
                        warn!(error = %e, "failed to reload authentication settings; keeping the previous ones");
                    }
                }
            }
        }
    }

    /// Whether anything is trusted at all.
    pub fn describe(&self) -> (bool, bool) {
        let compiled = self.current();
        (compiled.requestheader.is_some(), compiled.client_ca.is_some())
    }

    fn current(&self) -> Arc<Compiled> {
        Arc::clone(&self.compiled.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The user of a request on a connection that presented `peer`.
    pub fn authenticate(
        &self,
        peer: Option<&PeerCertificates>,
        headers: &HeaderMap,
    ) -> Result<UserInfo, Unauthenticated> {
        let peer = peer.ok_or(Unauthenticated::NoCertificate)?;
        let compiled = self.current();
        let verdict = match peer.cached(compiled.generation) {
            Some(verdict) => verdict,
            None => {
                let verdict = judge(&compiled, &peer.chain);
                peer.store(compiled.generation, verdict.clone());
                verdict
            }
        };
        if verdict.front_proxy
            && let Some((_, rh)) = &compiled.requestheader
            && let Some(user) = user_from_headers(rh, headers)
        {
            return Ok(with_authenticated_group(user));
        }
        if let Some((name, groups)) = verdict.user {
            return Ok(with_authenticated_group(UserInfo {
                name,
                uid: String::new(),
                groups,
                extra: BTreeMap::new(),
            }));
        }
        Err(Unauthenticated::Untrusted)
    }
}

/// `user` in [`AUTHENTICATED_GROUP`], as k8s.io/apiserver's `AuthenticatedGroupAdder` does it.
fn with_authenticated_group(mut user: UserInfo) -> UserInfo {
    let marked = user
        .groups
        .iter()
        .any(|g| g == AUTHENTICATED_GROUP || g == UNAUTHENTICATED_GROUP);
    if user.name != ANONYMOUS_USER && !marked {
        user.groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    user
}

fn judge(compiled: &Compiled, chain: &[CertificateDer<'static>]) -> CertVerdict {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return CertVerdict::default();
    };
    let now = UnixTime::now();
    let subject = subject_of(leaf);
    let front_proxy = compiled.requestheader.as_ref().is_some_and(|(verifier, rh)| {
        verifier.verify_client_cert(leaf, intermediates, now).is_ok()
            && (rh.allowed_names.is_empty()
                || subject
                    .as_ref()
                    .is_some_and(|(cn, _)| rh.allowed_names.iter().any(|n| n == cn)))
    });
    let user = compiled
        .client_ca
        .as_ref()
        .filter(|verifier| verifier.verify_client_cert(leaf, intermediates, now).is_ok())
        .and(subject)
        .filter(|(cn, _)| !cn.is_empty());
    if !front_proxy && user.is_none() {
        info!(
            "client certificate not trusted by the requestheader CA (with an allowed name) nor the client CA"
        );
    }
    CertVerdict { front_proxy, user }
}

/// Common name and organizations of a certificate.
pub fn subject_of(der: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let orgs = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect();
    Some((cn, orgs))
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The user the front proxy asserts in the headers; `None` without a user name.
pub fn user_from_headers(rh: &RequestHeaderSettings, headers: &HeaderMap) -> Option<UserInfo> {
    let name = rh
        .username_headers
        .iter()
        .find_map(|h| header_values(headers, h).next())?
        .to_owned();
    let groups = rh
        .group_headers
        .iter()
        .flat_map(|h| header_values(headers, h))
        .map(str::to_owned)
        .collect();
    let uid = rh
        .uid_headers
        .iter()
        .find_map(|h| header_values(headers, h).next())
        .unwrap_or_default()
        .to_owned();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (header, value) in headers {
        let header = header.as_str();
        for prefix in &rh.extra_prefixes {
            let prefix = prefix.to_ascii_lowercase();
            if let Some(key) = header.strip_prefix(prefix.as_str())
                && !key.is_empty()
                && let Ok(value) = value.to_str()
            {
                extra
                    .entry(percent_decode(key).to_ascii_lowercase())
                    .or_default()
                    .push(value.to_owned());
            }
        }
    }
    Some(UserInfo {
        name,
        uid,
        groups,
        extra,
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::http::HeaderValue;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    use super::*;

    struct Ca {
        pem: String,
        params: CertificateParams,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            params,
            key,
        }
    }

    fn client(ca: &Ca, cn: &str, orgs: &[&str]) -> PeerCertificates {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::new(ca.params.clone(), &ca.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        PeerCertificates::new(vec![cert.der().clone()])
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn front_proxy_headers_are_trusted_only_with_the_proxy_certificate() {
        let proxy_ca = ca("front-proxy-ca");
        let client_ca = ca("client-ca");
        let authn = Authenticator::new(AuthnSources::default());
        authn
            .install(&AuthnSettings {
                requestheader: Some(RequestHeaderSettings::with_defaults(
                    proxy_ca.pem.clone(),
                    vec!["front-proxy-client".into()],
                )),
                client_ca_pem: Some(client_ca.pem.clone()),
            })
            .unwrap();
        let asserted = headers(&[
            ("X-Remote-User", "alice"),
            ("X-Remote-Group", "team-a"),
            ("X-Remote-Group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "read"),
            ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
        ]);

        let proxy = client(&proxy_ca, "front-proxy-client", &[]);
        let user = authn.authenticate(Some(&proxy), &asserted).unwrap();
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, ["team-a", "system:authenticated"]);
        assert_eq!(user.extra["scopes"], ["read"]);
        assert_eq!(user.extra["acme.com/project"], ["p1"]);

        // The proxy CA with a name not allowed: headers ignored, and not a client-CA user either.
        let other_name = client(&proxy_ca, "someone", &[]);
        assert_eq!(
            authn.authenticate(Some(&other_name), &asserted),
            Err(Unauthenticated::Untrusted)
        );

        // A user's certificate: the headers are ignored.
        let bob = client(&client_ca, "bob", &["devs"]);
        let user = authn.authenticate(Some(&bob), &asserted).unwrap();
        assert_eq!(user.name, "bob");
        assert_eq!(user.groups, ["devs", "system:authenticated"]);
        assert!(user.extra.is_empty());

        // Unknown CA, and no certificate.
        let stranger = client(&ca("other"), "alice", &["system:masters"]);
        assert_eq!(
            authn.authenticate(Some(&stranger), &asserted),
            Err(Unauthenticated::Untrusted)
        );
        assert_eq!(
            authn.authenticate(None, &asserted),
            Err(Unauthenticated::NoCertificate)
        );

        // The aggregator's own requests carry no group: they get system:authenticated.
        let aggregator = authn
            .authenticate(Some(&proxy), &headers(&[("X-Remote-User", "system:aggregator")]))
            .unwrap();
        assert_eq!(aggregator.groups, ["system:authenticated"]);
        let anonymous = authn
            .authenticate(
                Some(&proxy),
                &headers(&[
                    ("X-Remote-User", "system:anonymous"),
                    ("X-Remote-Group", "system:unauthenticated"),
                ]),
            )
            .unwrap();
        assert_eq!(anonymous.groups, ["system:unauthenticated"]);

        // The proxy without a user header: not authenticated by the proxy path.
        assert_eq!(
            authn.authenticate(Some(&proxy), &HeaderMap::new()),
            Err(Unauthenticated::Untrusted)
        );
    }

    #[test]
    fn verdicts_are_cached_per_connection_until_the_settings_change() {
        let client_ca = ca("client-ca");
        let authn = Authenticator::new(AuthnSources::default());
        authn
            .install(&AuthnSettings {
                requestheader: None,
                client_ca_pem: Some(client_ca.pem.clone()),
            })
            .unwrap();
        let bob = client(&client_ca, "bob", &[]);
        assert!(authn.authenticate(Some(&bob), &HeaderMap::new()).is_ok());
        assert!(bob.cached(1).is_some());
        // The CA is rotated away: the connection's cached verdict no longer applies.
        authn
            .install(&AuthnSettings {
                requestheader: None,
                client_ca_pem: Some(ca("new").pem),
            })
            .unwrap();
        assert_eq!(
            authn.authenticate(Some(&bob), &HeaderMap::new()),
            Err(Unauthenticated::Untrusted)
        );
    }

    #[test]
    fn configmap_data_is_read_like_kube_apiserver_writes_it() {
        let data: BTreeMap<String, String> = [
            ("client-ca-file", "CLIENT"),
            ("requestheader-client-ca-file", "PROXY"),
            ("requestheader-allowed-names", r#"["front-proxy-client"]"#),
            ("requestheader-username-headers", r#"["X-Remote-User"]"#),
            ("requestheader-group-headers", r#"["X-Remote-Group"]"#),
            ("requestheader-extra-headers-prefix", r#"["X-Remote-Extra-"]"#),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings = settings_from_configmap_data(&data).unwrap();
        let rh = settings.requestheader.unwrap();
        assert_eq!(rh.ca_pem, "PROXY");
        assert_eq!(rh.allowed_names, ["front-proxy-client"]);
        assert_eq!(settings.client_ca_pem.as_deref(), Some("CLIENT"));
        let mut bad = data.clone();
        bad.insert("requestheader-allowed-names".into(), "front-proxy-client".into());
        assert!(settings_from_configmap_data(&bad).is_err());
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        let authn = Authenticator::new(AuthnSources::default());
        let e = authn
            .install(&AuthnSettings {
                requestheader: None,
                client_ca_pem: Some("not a certificate".into()),
            })
            .unwrap_err();
        assert!(e.to_string().contains("client CA"), "{e}");
    }
}
