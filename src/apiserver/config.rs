//! Flags of the aggregated API (part of `serve`) and the catalog configuration file.
//!
//! # Catalog configuration (`--catalog-config FILE`, YAML)
//!
//! ```yaml
//! # The default location: objects are listed in the namespace of the resource that wrote them
//! # (source.namespace), or in `namespace` when they name none.
//! default:
//!   namespace: default
//!   storage: {type: S3, s3: {bucket: kafka-backups, endpoint: "http://minio:9000", pathStyle: true,
//!             allowHttp: true, credentialsSecret: {name: s3}}}
//!   secretsDir: /etc/kafka-backup-operator/secrets   # Secret values as DIR/<secret>/<key>
//! # Locations known to a namespace: everything in them is listed there.
//! namespaces:
//!   team-a:
//!     - storage: {type: PVC, pvc: {claimName: backups, subPath: team-a}}
//! # Connection settings for the diff subresource, matched by bootstrap servers.
//! clusters:
//!   - kafkaCluster: {bootstrapServers: ["kafka:9093"], securityProtocol: SSL,
//!                    caSecret: {name: kafka-ca, caKey: ca.crt}}
//!     secretsDir: /etc/kafka-backup-operator/secrets
//! ```
//!
//! `storage` and `kafkaCluster` are the v1beta1 blocks of the custom resources. Without a
//! `default` and without Kubernetes (the embedded default), `--catalog-dir` (default
//! `<state-dir>/catalog`) is the default location for namespace `default`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::api::v1beta1::{KafkaClusterSpec, StorageSpec};

/// Whether the Kubernetes API is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KubernetesMode {
    /// Use it when a kubeconfig or an in-cluster service account is found.
    Auto,
    /// Never (the embedded default: static policy, files for CAs).
    Off,
}

/// Flags of the aggregated catalog API.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiServerArgs {
    /// Catalog configuration: the default storage location, the locations of each namespace and
    /// the Kafka clusters for the diff subresource (YAML; see the apiserver module docs).
    #[arg(long, env = "KBO_CATALOG_CONFIG", value_name = "FILE")]
    pub catalog_config: Option<PathBuf>,
    /// Local directory serving as the default catalog location of namespace --catalog-default-namespace
    /// when neither Kubernetes nor the configuration names one [default: <state-dir>/catalog].
    #[arg(long, env = "KBO_CATALOG_DIR", value_name = "DIR")]
    pub catalog_dir: Option<PathBuf>,
    /// Namespace of the objects of the default location whose writer names no namespace.
    #[arg(
        long,
        env = "KBO_CATALOG_DEFAULT_NAMESPACE",
        value_name = "NAMESPACE",
        default_value = "default"
    )]
    pub catalog_default_namespace: String,
    /// How often the catalog lists its storage locations, in seconds (fractions allowed).
    #[arg(
        long,
        env = "KBO_CATALOG_REFRESH_INTERVAL",
        value_name = "SECONDS",
        default_value = "60",
        value_parser = parse_seconds,
    )]
    pub catalog_refresh_interval: Duration,
    /// Directory under which PVC storage locations are mounted (one directory per claim).
    #[arg(long, env = "KBO_PVC_ROOT", value_name = "DIR", default_value = "/data")]
    pub pvc_root: PathBuf,
    /// CA bundle (PEM) of client certificates accepted from users: CN is the user, O the groups
    /// [default with Kubernetes: client-ca-file of kube-system/extension-apiserver-authentication;
    /// without: a development client CA in <state-dir>/apiserver with an admin kubeconfig].
    #[arg(long, env = "KBO_CLIENT_CA_FILE", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// CA bundle (PEM) of the front proxy (kube-aggregator): only its certificates may assert the
    /// user in X-Remote-User/X-Remote-Group/X-Remote-Extra-* [default with Kubernetes:
    /// requestheader-client-ca-file of kube-system/extension-apiserver-authentication].
    #[arg(long, env = "KBO_REQUESTHEADER_CLIENT_CA_FILE", value_name = "FILE")]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed for front-proxy certificates, comma-separated; empty allows any
    /// certificate of the requestheader CA [default with Kubernetes: from the ConfigMap].
    #[arg(
        long,
        env = "KBO_REQUESTHEADER_ALLOWED_NAMES",
        value_name = "NAMES",
        value_delimiter = ','
    )]
    pub requestheader_allowed_names: Option<Vec<String>>,
    /// Static authorization policy (YAML: users/groups -> verbs, resources, namespaces); used
    /// instead of SubjectAccessReview. Without Kubernetes and without this file only system:masters
    /// may use the API (and every authenticated user may read discovery).
    #[arg(long, env = "KBO_AUTHORIZATION_POLICY", value_name = "FILE")]
    pub authorization_policy: Option<PathBuf>,
    /// How long SubjectAccessReview decisions (allow and deny) are cached, in seconds.
    #[arg(
        long,
        env = "KBO_AUTHORIZATION_CACHE_TTL",
        value_name = "SECONDS",
        default_value = "10",
        value_parser = parse_seconds,
    )]
    pub authorization_cache_ttl: Duration,
    /// Use the Kubernetes API (SubjectAccessReview, the extension-apiserver-authentication
    /// ConfigMap, ConfigMap storage): auto = when a kubeconfig or in-cluster config is found.
    #[arg(long, env = "KBO_KUBERNETES", value_name = "MODE", default_value = "auto")]
    pub kubernetes: KubernetesMode,
}

impl Default for ApiServerArgs {
    fn default() -> Self {
        ApiServerArgs {
            catalog_config: None,
            catalog_dir: None,
            catalog_default_namespace: "default".into(),
            catalog_refresh_interval: Duration::from_secs(60),
            pvc_root: PathBuf::from("/data"),
            client_ca_file: None,
            requestheader_client_ca_file: None,
            requestheader_allowed_names: None,
            authorization_policy: None,
            authorization_cache_ttl: Duration::from_secs(10),
            kubernetes: KubernetesMode::Off,
        }
    }
}

/// The directory of the embedded default location without `--catalog-dir`:
/// `<state-dir>/catalog`. Shared by `serve` and `run -f`.
pub fn default_catalog_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("catalog")
}

/// Parses a number of seconds (fractions allowed), more than 0 and at most a day.
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err("must be more than 0 and at most 86400 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A storage location of the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationConfig {
    /// The storage block.
    pub storage: StorageSpec,
    /// Where the Secrets it names are read: `DIR/<secret>/<key>`.
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
}

/// The default location.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultLocationConfig {
    /// Namespace of objects whose writer names none.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The storage block.
    pub storage: StorageSpec,
    /// Where the Secrets it names are read.
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
}

/// A Kafka cluster for the diff subresource.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// The kafkaCluster block.
    pub kafka_cluster: KafkaClusterSpec,
    /// Where the Secrets it names are read.
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
}

/// The catalog configuration file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogConfig {
    /// The default location.
    #[serde(default)]
    pub default: Option<DefaultLocationConfig>,
    /// Locations per namespace.
    #[serde(default)]
    pub namespaces: BTreeMap<String, Vec<LocationConfig>>,
    /// Clusters for the diff subresource.
    #[serde(default)]
    pub clusters: Vec<ClusterConfig>,
}

impl CatalogConfig {
    /// Parses the YAML (or JSON) document.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::v1beta1::StorageType;

    #[test]
    fn the_documented_example_parses() {
        let doc = r#"
default:
  namespace: default
  storage: {type: S3, s3: {bucket: kafka-backups, endpoint: "http://minio:9000", pathStyle: true,
            allowHttp: true, credentialsSecret: {name: s3}}}
  secretsDir: /etc/kafka-backup-operator/secrets
namespaces:
  team-a:
    - storage: {type: PVC, pvc: {claimName: backups, subPath: team-a}}
clusters:
  - kafkaCluster: {bootstrapServers: ["kafka:9093"], securityProtocol: SSL,
                   caSecret: {name: kafka-ca, caKey: ca.crt}}
    secretsDir: /etc/kafka-backup-operator/secrets
"#;
        let config = CatalogConfig::parse(doc).unwrap();
        assert_eq!(config.default.as_ref().unwrap().storage.type_, StorageType::S3);
        assert_eq!(config.namespaces["team-a"][0].storage.type_, StorageType::Pvc);
        assert_eq!(config.clusters[0].kafka_cluster.bootstrap_servers, ["kafka:9093"]);
        assert!(CatalogConfig::parse("defaults: {}").is_err(), "typos are refused");
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
    }
}
