//! Blocks shared by every v1beta1 kind: the Kafka connection, storage locations, the execution
//! policy and the common status phase.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// How to reach a Kafka cluster.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.saslSecret) || self.securityProtocol == 'SASL_PLAINTEXT' || self.securityProtocol == 'SASL_SSL'")
        .message("saslSecret needs securityProtocol SASL_PLAINTEXT or SASL_SSL"),
    validation = Rule::new("(self.securityProtocol != 'SASL_PLAINTEXT' && self.securityProtocol != 'SASL_SSL') || has(self.saslSecret)")
        .message("securityProtocol SASL_PLAINTEXT and SASL_SSL need saslSecret"),
    validation = Rule::new("self.securityProtocol != 'PLAINTEXT' || (!has(self.tlsSecret) && !has(self.caSecret))")
        .message("tlsSecret and caSecret need securityProtocol SSL or SASL_SSL"),
)]
pub struct KafkaClusterSpec {
    /// Bootstrap brokers as `host:port`, at least one.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: Vec<String>,
    /// Transport security and authentication, as Kafka names it.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// Secret with TLS material: the cluster CA and, for mutual TLS, a client certificate and key.
    /// Optional with SSL and SASL_SSL: without it the system trust store verifies the brokers.
    pub tls_secret: Option<TlsSecretRef>,
    /// Secret holding only the cluster CA, when it is kept apart from the client certificate
    /// (Strimzi's cluster-CA Secret); takes precedence over `tlsSecret.caKey`.
    pub ca_secret: Option<CaSecretRef>,
    /// Secret with SASL credentials; required with SASL_PLAINTEXT and SASL_SSL.
    pub sasl_secret: Option<SaslSecretRef>,
    /// TCP tuning of the connections to the brokers.
    pub connection: Option<ConnectionSpec>,
}

/// Kafka's `security.protocol`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// TLS, optionally with a client certificate.
    #[serde(rename = "SSL")]
    Ssl,
    /// SASL authentication without TLS.
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL authentication over TLS.
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

/// Secret with TLS material for the Kafka connection.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.certKey) == has(self.keyKey)")
    .message("certKey and keyKey go together: a client certificate needs its key"))]
pub struct TlsSecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the PEM CA certificate in the Secret.
    #[serde(default = "default_ca_key")]
    pub ca_key: String,
    /// Key of the PEM client certificate, for mutual TLS.
    pub cert_key: Option<String>,
    /// Key of the PEM client private key, for mutual TLS.
    pub key_key: Option<String>,
}

/// Secret holding the cluster CA certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the PEM CA certificate in the Secret.
    #[serde(default = "default_ca_key")]
    pub ca_key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

/// Secret with SASL credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaslSecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// SASL mechanism.
    pub mechanism: SaslMechanism,
    /// Key of the user name in the Secret.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key of the password in the Secret.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// Kafka's `sasl.mechanism`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    /// User name and password in clear (use with SASL_SSL).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// TCP tuning of the broker connections. The operator talks to Kafka through two clients: its
/// own Kafka protocol client (consumer-group offsets, metadata and log offsets of resets,
/// rollbacks and restores, the restore producer) and librdkafka (the records a backup reads, the
/// record reads of HeaderBased resets and of validations, topic creation).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSpec {
    /// Enable TCP keep-alive (SO_KEEPALIVE) on the sockets of both clients. Unset: on when
    /// keepaliveTimeSecs or keepaliveIntervalSecs is set, off otherwise.
    pub tcp_keepalive: Option<bool>,
    /// Idle seconds before the first keep-alive probe (TCP_KEEPIDLE) on the protocol client's
    /// sockets. librdkafka has no per-socket setting: its sockets probe after the node's
    /// net.ipv4.tcp_keepalive_time (a namespaced sysctl the pod's securityContext can set).
    #[schemars(range(min = 1))]
    pub keepalive_time_secs: Option<i32>,
    /// Seconds between keep-alive probes (TCP_KEEPINTVL) on the protocol client's sockets;
    /// librdkafka's use the node's net.ipv4.tcp_keepalive_intvl.
    #[schemars(range(min = 1))]
    pub keepalive_interval_secs: Option<i32>,
    /// Disable Nagle's algorithm (TCP_NODELAY).
    pub tcp_nodelay: Option<bool>,
    /// Connections the protocol client opens to each broker, its requests spread over them (a
    /// broker handles one request of a connection at a time); unset: 1, and 4 to each partition
    /// leader for a restore's producer. librdkafka opens one per broker and client and has no
    /// setting for more, so a KafkaBackup, whose records only librdkafka reads, accepts only 1.
    #[schemars(range(min = 1, max = 64))]
    pub connections_per_broker: Option<i32>,
}

/// Where backups, checkpoints or snapshots are stored: the block named by `type`, and only it.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(self.type == 'PVC') == has(self.pvc)").message("type PVC needs the pvc block, and only type PVC may have it"),
    validation = Rule::new("(self.type == 'S3') == has(self.s3)").message("type S3 needs the s3 block, and only type S3 may have it"),
    validation = Rule::new("(self.type == 'Azure') == has(self.azure)").message("type Azure needs the azure block, and only type Azure may have it"),
    validation = Rule::new("(self.type == 'GCS') == has(self.gcs)").message("type GCS needs the gcs block, and only type GCS may have it"),
    validation = Rule::new("(self.type == 'ConfigMap') == has(self.configMap)").message("type ConfigMap needs the configMap block, and only type ConfigMap may have it"),
)]
pub struct StorageSpec {
    /// The kind of storage; the block of the same name must be set.
    #[serde(rename = "type")]
    pub type_: StorageType,
    /// A PersistentVolumeClaim mounted into the operator.
    pub pvc: Option<PvcStorage>,
    /// An S3 or S3-compatible bucket.
    pub s3: Option<S3Storage>,
    /// An Azure Blob Storage container.
    pub azure: Option<AzureStorage>,
    /// A Google Cloud Storage bucket.
    pub gcs: Option<GcsStorage>,
    /// A ConfigMap, for small offset snapshots only.
    pub config_map: Option<ConfigMapStorage>,
}

/// The kinds of storage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StorageType {
    /// A PersistentVolumeClaim mounted into the operator.
    #[serde(rename = "PVC")]
    Pvc,
    /// S3 or an S3-compatible service.
    S3,
    /// Azure Blob Storage.
    Azure,
    /// Google Cloud Storage.
    #[serde(rename = "GCS")]
    Gcs,
    /// A ConfigMap (offset snapshots only).
    ConfigMap,
}

/// A PersistentVolumeClaim mounted into the operator at `/data/<claimName>`.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcStorage {
    /// Name of the PersistentVolumeClaim.
    #[schemars(length(min = 1))]
    pub claim_name: String,
    /// Directory inside the volume.
    pub sub_path: Option<String>,
}

/// An S3 bucket.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    /// Bucket name.
    #[schemars(length(min = 1))]
    pub bucket: String,
    /// Region of the bucket.
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible service, e.g. `http://minio.minio.svc:9000`.
    pub endpoint: Option<String>,
    /// Address buckets by path (`endpoint/bucket/key`) instead of virtual host.
    pub path_style: Option<bool>,
    /// Allow an `http://` endpoint.
    pub allow_http: Option<bool>,
    /// Key prefix under which everything is stored.
    pub prefix: Option<String>,
    /// Secret with static credentials; without it the default AWS chain (IRSA, Pod Identity,
    /// environment) is used.
    pub credentials_secret: Option<S3CredentialsSecretRef>,
}

/// Secret with an S3 access key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsSecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the access key id in the Secret.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret.
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// An Azure Blob Storage container; at most one authentication method.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.useWorkloadIdentity) && self.useWorkloadIdentity, has(self.credentialsSecret), has(self.sasTokenSecret), has(self.servicePrincipalSecret)].filter(x, x).size() <= 1"
).message("choose at most one of useWorkloadIdentity, credentialsSecret, sasTokenSecret and servicePrincipalSecret"))]
pub struct AzureStorage {
    /// Container name.
    #[schemars(length(min = 1))]
    pub container: String,
    /// Storage account name.
    #[schemars(length(min = 1))]
    pub account_name: String,
    /// Blob name prefix under which everything is stored.
    pub prefix: Option<String>,
    /// Endpoint URL, for sovereign clouds or an emulator.
    pub endpoint: Option<String>,
    /// Azure Workload Identity. true: the federated token, client id and tenant id that AKS's
    /// workload identity webhook injects into the operator's pod (AZURE_FEDERATED_TOKEN_FILE,
    /// AZURE_CLIENT_ID, AZURE_TENANT_ID); refused when one is missing. false: never, even where
    /// AKS injected them. Unset, with no credentials Secret: the AZURE_* environment (workload
    /// identity included), then the node's managed identity.
    pub use_workload_identity: Option<bool>,
    /// Secret with the storage account key.
    pub credentials_secret: Option<AzureAccountKeySecretRef>,
    /// Secret with a SAS token.
    pub sas_token_secret: Option<AzureSasTokenSecretRef>,
    /// Secret with a service principal (client id, tenant id, client secret).
    pub service_principal_secret: Option<AzureServicePrincipalSecretRef>,
}

/// Secret with an Azure storage account key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureAccountKeySecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the account key in the Secret.
    #[serde(default = "default_account_key_key")]
    pub account_key_key: String,
}

fn default_account_key_key() -> String {
    "AZURE_STORAGE_KEY".into()
}

/// Secret with an Azure SAS token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSasTokenSecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the SAS token in the Secret.
    #[serde(default = "default_sas_token_key")]
    pub sas_token_key: String,
}

fn default_sas_token_key() -> String {
    "AZURE_SAS_TOKEN".into()
}

/// Secret with an Azure service principal.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureServicePrincipalSecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the client (application) id in the Secret.
    #[serde(default = "default_client_id_key")]
    pub client_id_key: String,
    /// Key of the tenant id in the Secret.
    #[serde(default = "default_tenant_id_key")]
    pub tenant_id_key: String,
    /// Key of the client secret in the Secret.
    #[serde(default = "default_client_secret_key")]
    pub client_secret_key: String,
}

fn default_client_id_key() -> String {
    "AZURE_CLIENT_ID".into()
}

fn default_tenant_id_key() -> String {
    "AZURE_TENANT_ID".into()
}

fn default_client_secret_key() -> String {
    "AZURE_CLIENT_SECRET".into()
}

/// A Google Cloud Storage bucket.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsStorage {
    /// Bucket name.
    #[schemars(length(min = 1))]
    pub bucket: String,
    /// Object name prefix under which everything is stored.
    pub prefix: Option<String>,
    /// Secret with a service-account JSON key; without it, workload identity / application
    /// default credentials are used.
    pub credentials_secret: Option<GcsCredentialsSecretRef>,
}

/// Secret with a GCP service-account JSON key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsCredentialsSecretRef {
    /// Name of the Secret in the resource's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the service-account JSON in the Secret.
    #[serde(default = "default_service_account_json_key")]
    pub service_account_json_key: String,
}

fn default_service_account_json_key() -> String {
    "SERVICE_ACCOUNT_JSON".into()
}

/// A ConfigMap in the resource's namespace holding offset snapshots, one key per snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapStorage {
    /// Name of the ConfigMap (created when missing).
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A key of a ConfigMap in the resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key in the ConfigMap.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// How the operator runs the operation: retries, deadline and clean-up.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSpec {
    /// Attempts after a failed one before the resource is marked Failed, made only when the
    /// failure may pass (the broker or storage unreachable, a timeout, a leader moving; not a
    /// wrong spec, Secret or credential). The wait before attempt n+1 is 2 s * 2^(n-1), at most
    /// 5 minutes, times a random factor in [0.5, 1].
    #[schemars(range(min = 0, max = 100))]
    pub retries: Option<i32>,
    /// Seconds an attempt may run before it is cancelled (it then has 30 s to stop at a safe
    /// point) and counted as failed.
    #[schemars(range(min = 1))]
    pub deadline_seconds: Option<i64>,
    /// Seconds a failing request to storage (S3, Azure, GCS: a refused, lost or timed-out
    /// connection, HTTP 5xx, 503 SlowDown, 429), a backup's reading of records while the Kafka
    /// cluster is away, and the Kafka requests of an offset reset or rollback, are retried
    /// within an attempt, waiting 100 ms at first and
    /// doubling up to 15 s, with jitter, before the attempt fails with its last error (120 when
    /// absent). An outage shorter than this costs no attempt; `retries` decides whether another
    /// attempt follows a longer one.
    #[schemars(range(min = 1, max = 3600))]
    pub retry_timeout_seconds: Option<i64>,
    /// Seconds after completion or failure before the resource is deleted.
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
}

/// Lifecycle phase of a one-shot operation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Phase {
    /// Accepted, not started.
    #[default]
    Pending,
    /// In progress.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with some targets failed and others done.
    PartiallyCompleted,
    /// Finished unsuccessfully.
    Failed,
    /// The plan is in `status.plan`, waiting for a human to approve it (a KafkaOffsetReset with
    /// `approval: Manual`): nothing was changed.
    PendingApproval,
}
