//! Blocks shared by every v1alpha1 kind. Every field is optional and carries no default, so that
//! a manifest converts to v1beta1 and back exactly as written; the webhooks judge and complete it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

pub use crate::api::v1beta1::{ConfigMapKeyRef, ConnectionSpec, SaslMechanism, SecurityProtocol};

/// How to reach a Kafka cluster.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// Bootstrap brokers as `host:port`.
    pub bootstrap_servers: Option<Vec<String>>,
    /// Transport security and authentication (default PLAINTEXT).
    pub security_protocol: Option<SecurityProtocol>,
    /// Secret with TLS material: the cluster CA and optionally a client certificate and key.
    pub tls_secret: Option<TlsSecretRef>,
    /// Secret holding only the cluster CA (takes precedence over `tlsSecret.caKey`).
    pub ca_secret: Option<CaSecretRef>,
    /// Secret with SASL credentials.
    pub sasl_secret: Option<SaslSecretRef>,
    /// TCP tuning of the connections to the brokers (v1.0.0).
    pub connection: Option<ConnectionSpec>,
}

/// Secret with TLS material for the Kafka connection.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key of the PEM CA certificate (default `ca.crt`).
    pub ca_key: Option<String>,
    /// Key of the PEM client certificate.
    pub cert_key: Option<String>,
    /// Key of the PEM client private key.
    pub key_key: Option<String>,
}

/// Secret holding the cluster CA certificate.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key of the PEM CA certificate (default `ca.crt`).
    pub ca_key: Option<String>,
}

/// Secret with SASL credentials.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SaslSecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// SASL mechanism.
    pub mechanism: Option<SaslMechanism>,
    /// Key of the user name (default `username`).
    pub username_key: Option<String>,
    /// Key of the password (default `password`).
    pub password_key: Option<String>,
}

/// Where data is stored: `storageType` names the block to use.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The kind of storage (default `pvc`).
    pub storage_type: Option<StorageType>,
    /// A PersistentVolumeClaim mounted into the operator.
    pub pvc: Option<PvcStorage>,
    /// An S3 or S3-compatible bucket.
    pub s3: Option<S3Storage>,
    /// An Azure Blob Storage container.
    pub azure: Option<AzureStorage>,
    /// A Google Cloud Storage bucket.
    pub gcs: Option<GcsStorage>,
    /// A ConfigMap, for small offset snapshots.
    pub config_map: Option<ConfigMapStorage>,
}

/// The kinds of storage, in every documented spelling.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum StorageType {
    /// A PersistentVolumeClaim.
    #[serde(rename = "pvc")]
    Pvc,
    /// S3 or S3-compatible.
    #[serde(rename = "s3")]
    S3,
    /// Azure Blob Storage.
    #[serde(rename = "azure")]
    Azure,
    /// Google Cloud Storage.
    #[serde(rename = "gcs")]
    Gcs,
    /// A ConfigMap.
    #[serde(rename = "configMap")]
    ConfigMap,
    /// A ConfigMap (lower-case spelling).
    #[serde(rename = "configmap")]
    ConfigMapLowercase,
}

/// A PersistentVolumeClaim.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcStorage {
    /// Name of the PersistentVolumeClaim.
    pub claim_name: Option<String>,
    /// Directory inside the volume.
    pub sub_path: Option<String>,
    /// Have the operator create the claim (prior art; not supported, refused by the webhook).
    pub create: Option<PvcCreate>,
}

/// Settings of a PersistentVolumeClaim to create.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcCreate {
    /// Create the claim.
    pub enabled: Option<bool>,
    /// StorageClass of the claim.
    pub storage_class_name: Option<String>,
    /// Requested size, e.g. `100Gi`.
    pub size: Option<String>,
    /// Access modes of the claim.
    pub access_modes: Option<Vec<String>>,
}

/// An S3 bucket.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    /// Bucket name.
    pub bucket: Option<String>,
    /// Region of the bucket.
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible service.
    pub endpoint: Option<String>,
    /// Path-style addressing (v1.0.0).
    pub path_style: Option<bool>,
    /// Allow an `http://` endpoint (v1.0.0).
    pub allow_http: Option<bool>,
    /// Key prefix.
    pub prefix: Option<String>,
    /// Secret with static credentials.
    pub credentials_secret: Option<S3CredentialsSecretRef>,
}

/// Secret with an S3 access key, with the key names of both documented spellings.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsSecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key of the access key id (v1.0.0 spelling; default `AWS_ACCESS_KEY_ID`).
    pub access_key_id_key: Option<String>,
    /// Key of the secret access key (v1.0.0 spelling; default `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key_key: Option<String>,
    /// Key of the access key id (pre-1.0 spelling of `accessKeyIdKey`).
    pub access_key_key: Option<String>,
    /// Key of the secret access key (pre-1.0 spelling of `secretAccessKeyKey`).
    pub secret_key_key: Option<String>,
}

/// An Azure Blob Storage container.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureStorage {
    /// Container name.
    pub container: Option<String>,
    /// Storage account name.
    pub account_name: Option<String>,
    /// Blob name prefix.
    pub prefix: Option<String>,
    /// Endpoint URL.
    pub endpoint: Option<String>,
    /// Authenticate with Azure Workload Identity.
    pub use_workload_identity: Option<bool>,
    /// Secret with the storage account key.
    pub credentials_secret: Option<AzureAccountKeySecretRef>,
    /// Secret with a SAS token.
    pub sas_token_secret: Option<AzureSasTokenSecretRef>,
    /// Secret with a service principal.
    pub service_principal_secret: Option<AzureServicePrincipalSecretRef>,
}

/// Secret with an Azure storage account key.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureAccountKeySecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key of the account key (default `AZURE_STORAGE_KEY`).
    pub account_key_key: Option<String>,
}

/// Secret with an Azure SAS token.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureSasTokenSecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key of the SAS token (default `AZURE_SAS_TOKEN`).
    pub sas_token_key: Option<String>,
}

/// Secret with an Azure service principal.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureServicePrincipalSecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key of the client id (default `AZURE_CLIENT_ID`).
    pub client_id_key: Option<String>,
    /// Key of the tenant id (default `AZURE_TENANT_ID`).
    pub tenant_id_key: Option<String>,
    /// Key of the client secret (default `AZURE_CLIENT_SECRET`).
    pub client_secret_key: Option<String>,
}

/// A Google Cloud Storage bucket.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsStorage {
    /// Bucket name.
    pub bucket: Option<String>,
    /// Object name prefix.
    pub prefix: Option<String>,
    /// Secret with a service-account JSON key.
    pub credentials_secret: Option<GcsCredentialsSecretRef>,
}

/// Secret with a GCP service-account JSON key.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsCredentialsSecretRef {
    /// Name of the Secret.
    pub name: Option<String>,
    /// Key of the service-account JSON (default `SERVICE_ACCOUNT_JSON`).
    pub service_account_json_key: Option<String>,
}

/// A ConfigMap holding offset snapshots.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapStorage {
    /// Name of the ConfigMap.
    pub name: Option<String>,
}

/// A directory on a PersistentVolumeClaim (checkpoint and snapshot storage of the prior art).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcPathRef {
    /// Name of the PersistentVolumeClaim.
    pub pvc_name: Option<String>,
    /// Directory inside the volume.
    pub sub_path: Option<String>,
}

/// Job settings of the Job-based releases; in-process they map to v1beta1 `execution`.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Retries before the operation is marked Failed (v1beta1 `execution.retries`).
    pub backoff_limit: Option<i32>,
    /// Seconds an attempt may run (v1beta1 `execution.deadlineSeconds`).
    pub active_deadline_seconds: Option<i64>,
    /// Seconds after finishing before the resource is deleted
    /// (v1beta1 `execution.ttlSecondsAfterFinished`).
    pub ttl_seconds_after_finished: Option<i64>,
}

/// Pod settings of the Job-based releases; meaningless in-process, kept only for compatibility.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplateSpec {
    /// Pod annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Pod labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Node selector.
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations.
    pub tolerations: Option<Vec<Toleration>>,
}

/// Compute resources of the Job-based releases; meaningless in-process, kept for compatibility.
pub type Resources = ResourceRequirements;
