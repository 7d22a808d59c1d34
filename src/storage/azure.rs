//! How an Azure storage block authenticates, decided by a pure function of the block, its
//! Secrets and the process environment, then applied to object_store's builder.
//!
//! | block | credentials |
//! |---|---|
//! | `credentialsSecret` | the account key |
//! | `sasTokenSecret` | the SAS token |
//! | `servicePrincipalSecret` | the client id, tenant id and client secret |
//! | `useWorkloadIdentity: true` | Azure Workload Identity: the federated token file, client id and tenant id AKS injects (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_AUTHORITY_HOST`); refused when one is missing |
//! | none of these | object_store's chain over the `AZURE_*` environment (workload identity when AKS injected it, a client secret, ...), then the node's managed identity |
//! | none, `useWorkloadIdentity: false` | the same chain without workload identity, even when AKS injected it |

use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use super::StorageError;
use crate::{api::v1beta1::AzureStorage, secrets::SecretStore};

/// The variables AKS's workload identity webhook injects into a pod.
const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
const CLIENT_ID: &str = "AZURE_CLIENT_ID";
const TENANT_ID: &str = "AZURE_TENANT_ID";
const AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";

/// The environment object_store's Azure builder reads: every `AZURE_*` variable (and
/// `MSI_ENDPOINT`), as name and value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureEnv(pub Vec<(String, String)>);

impl AzureEnv {
    /// The variables of this process.
    pub fn from_process() -> AzureEnv {
        AzureEnv(
            std::env::vars()
                .filter(|(k, _)| k.starts_with("AZURE_") || k == "MSI_ENDPOINT")
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// What an Azure location authenticates with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AzureCredentials {
    /// A storage account key.
    AccountKey(String),
    /// A SAS token (without its leading `?`).
    SasToken(String),
    /// A service principal and its secret.
    ServicePrincipal {
        /// Client (application) id.
        client_id: String,
        /// Tenant id.
        tenant_id: String,
        /// Client secret.
        client_secret: String,
    },
    /// Azure Workload Identity: the service account's federated token, exchanged for a token of
    /// the client id.
    WorkloadIdentity {
        /// Client id of the identity.
        client_id: String,
        /// Tenant id.
        tenant_id: String,
        /// The projected service account token.
        token_file: String,
        /// The Microsoft Entra authority, when not the public cloud's.
        authority_host: Option<String>,
    },
    /// object_store's chain over the environment, then the managed identity.
    Ambient {
        /// Workload identity is part of the chain (`useWorkloadIdentity` not false).
        workload_identity: bool,
    },
}

/// The credentials of `azure` (see the module docs). Pure apart from reading its Secrets.
pub fn credentials(
    azure: &AzureStorage,
    secrets: &SecretStore,
    env: &AzureEnv,
) -> Result<AzureCredentials, StorageError> {
    if let Some(secret) = &azure.credentials_secret {
        return Ok(AzureCredentials::AccountKey(
            secrets.get_text(&secret.name, &secret.account_key_key)?,
        ));
    }
    if let Some(secret) = &azure.sas_token_secret {
        let token = secrets.get_text(&secret.name, &secret.sas_token_key)?;
        return Ok(AzureCredentials::SasToken(
            token.trim_start_matches('?').to_owned(),
        ));
    }
    if let Some(secret) = &azure.service_principal_secret {
        return Ok(AzureCredentials::ServicePrincipal {
            client_id: secrets.get_text(&secret.name, &secret.client_id_key)?,
            tenant_id: secrets.get_text(&secret.name, &secret.tenant_id_key)?,
            client_secret: secrets.get_text(&secret.name, &secret.client_secret_key)?,
        });
    }
    match azure.use_workload_identity {
        Some(true) => {
            let missing: Vec<&str> = [FEDERATED_TOKEN_FILE, CLIENT_ID, TENANT_ID]
                .into_iter()
                .filter(|name| env.get(name).is_none())
                .collect();
            match (
                env.get(CLIENT_ID),
                env.get(TENANT_ID),
                env.get(FEDERATED_TOKEN_FILE),
            ) {
                (Some(client_id), Some(tenant_id), Some(token_file)) => {
                    Ok(AzureCredentials::WorkloadIdentity {
                        client_id: client_id.to_owned(),
                        tenant_id: tenant_id.to_owned(),
                        token_file: token_file.to_owned(),
                        authority_host: env.get(AUTHORITY_HOST).map(str::to_owned),
                    })
                }
                _ => Err(StorageError::Invalid(format!(
                    "azure.useWorkloadIdentity: true needs {} in the operator's environment, which AKS's workload identity webhook sets in pods labelled azure.workload.identity/use: \"true\" whose service account is annotated azure.workload.identity/client-id; missing: {}",
                    [FEDERATED_TOKEN_FILE, CLIENT_ID, TENANT_ID].join(", "),
                    missing.join(", ")
                ))),
            }
        }
        other => Ok(AzureCredentials::Ambient {
            workload_identity: other.is_none(),
        }),
    }
}

/// object_store's builder for `azure` with `credentials`. Pure.
pub fn builder(
    azure: &AzureStorage,
    credentials: &AzureCredentials,
    env: &AzureEnv,
) -> MicrosoftAzureBuilder {
    let mut builder = MicrosoftAzureBuilder::new();
    let without_workload_identity = matches!(
        credentials,
        AzureCredentials::Ambient {
            workload_identity: false
        }
    );
    for (name, value) in &env.0 {
        if without_workload_identity && name == FEDERATED_TOKEN_FILE {
            continue;
        }
        if name == "MSI_ENDPOINT" {
            builder = builder.with_msi_endpoint(value);
        } else if let Ok(key) = name.to_ascii_lowercase().parse::<AzureConfigKey>() {
            builder = builder.with_config(key, value);
        }
    }
    builder = builder
        .with_account(&azure.account_name)
        .with_container_name(&azure.container);
    builder = match credentials {
        AzureCredentials::AccountKey(key) => builder.with_access_key(key).with_credential_type("access_key"),
        AzureCredentials::SasToken(token) => builder
            .with_config(AzureConfigKey::SasKey, token)
            .with_credential_type("sas_token"),
        AzureCredentials::ServicePrincipal {
            client_id,
            tenant_id,
            client_secret,
        } => builder
            .with_client_id(client_id)
            .with_tenant_id(tenant_id)
            .with_client_secret(client_secret)
            .with_credential_type("client_secret"),
        AzureCredentials::WorkloadIdentity {
            client_id,
            tenant_id,
            token_file,
            authority_host,
        } => {
            let builder = builder
                .with_client_id(client_id)
                .with_tenant_id(tenant_id)
                .with_federated_token_file(token_file)
                .with_credential_type("workload_identity");
            match authority_host {
                Some(host) => builder.with_authority_host(host),
                None => builder,
            }
        }
        AzureCredentials::Ambient { .. } => builder.with_credential_type("auto"),
    };
    if let Some(endpoint) = &azure.endpoint {
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/').to_owned())
            .with_allow_http(endpoint.starts_with("http://"));
    }
    builder
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    fn azure(extra: serde_json::Value) -> AzureStorage {
        let mut block = serde_json::json!({"container": "c", "accountName": "acct"});
        for (k, v) in extra.as_object().unwrap() {
            block[k] = v.clone();
        }
        serde_json::from_value(block).unwrap()
    }

    fn secrets() -> SecretStore {
        let keys = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect()
        };
        SecretStore::Map {
            origin: "test".into(),
            secrets: HashMap::from([
                ("key".to_owned(), keys(&[("AZURE_STORAGE_KEY", "a2V5")])),
                ("sas".to_owned(), keys(&[("AZURE_SAS_TOKEN", "?sv=1&sig=x")])),
                (
                    "sp".to_owned(),
                    keys(&[
                        ("AZURE_CLIENT_ID", "sp-client"),
                        ("AZURE_TENANT_ID", "sp-tenant"),
                        ("AZURE_CLIENT_SECRET", "sp-secret"),
                    ]),
                ),
            ]),
        }
    }

    /// The environment of a pod AKS's workload identity webhook mutated.
    fn aks() -> AzureEnv {
        AzureEnv(vec![
            (
                FEDERATED_TOKEN_FILE.into(),
                "/var/run/secrets/azure/tokens/azure-identity-token".into(),
            ),
            (CLIENT_ID.into(), "wi-client".into()),
            (TENANT_ID.into(), "wi-tenant".into()),
            (AUTHORITY_HOST.into(), "https://login.microsoftonline.com/".into()),
        ])
    }

    fn configured(azure: &AzureStorage, env: &AzureEnv) -> (AzureCredentials, MicrosoftAzureBuilder) {
        let credentials = credentials(azure, &secrets(), env).unwrap();
        let builder = builder(azure, &credentials, env);
        (credentials, builder)
    }

    #[test]
    fn workload_identity_true_uses_what_aks_injects() {
        let (credentials, builder) =
            configured(&azure(serde_json::json!({"useWorkloadIdentity": true})), &aks());
        assert_eq!(
            credentials,
            AzureCredentials::WorkloadIdentity {
                client_id: "wi-client".into(),
                tenant_id: "wi-tenant".into(),
                token_file: "/var/run/secrets/azure/tokens/azure-identity-token".into(),
                authority_host: Some("https://login.microsoftonline.com/".into()),
            }
        );
        let get = |key| builder.get_config_value(&key);
        assert_eq!(
            get(AzureConfigKey::CredentialType).as_deref(),
            Some("workload_identity")
        );
        assert_eq!(get(AzureConfigKey::ClientId).as_deref(), Some("wi-client"));
        assert_eq!(get(AzureConfigKey::AuthorityId).as_deref(), Some("wi-tenant"));
        assert_eq!(
            get(AzureConfigKey::FederatedTokenFile).as_deref(),
            Some("/var/run/secrets/azure/tokens/azure-identity-token")
        );
        assert!(builder.build().is_ok());
    }

    #[test]
    fn workload_identity_true_without_the_environment_is_refused_naming_what_is_missing() {
        let only_client = AzureEnv(vec![(CLIENT_ID.into(), "wi-client".into())]);
        let e = credentials(
            &azure(serde_json::json!({"useWorkloadIdentity": true})),
            &secrets(),
            &only_client,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("azure.useWorkloadIdentity: true needs"), "{e}");
        assert!(
            e.ends_with("missing: AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID"),
            "{e}"
        );
    }

    #[test]
    fn workload_identity_false_keeps_the_injected_token_out_of_the_chain() {
        let (credentials, builder) =
            configured(&azure(serde_json::json!({"useWorkloadIdentity": false})), &aks());
        assert_eq!(
            credentials,
            AzureCredentials::Ambient {
                workload_identity: false
            }
        );
        assert_eq!(
            builder.get_config_value(&AzureConfigKey::FederatedTokenFile),
            None
        );
        assert_eq!(
            builder
                .get_config_value(&AzureConfigKey::CredentialType)
                .as_deref(),
            Some("auto")
        );
        // Unset: the chain may use it, as object_store's own default does.
        let (credentials, builder) = configured(&azure(serde_json::json!({})), &aks());
        assert_eq!(
            credentials,
            AzureCredentials::Ambient {
                workload_identity: true
            }
        );
        assert!(
            builder
                .get_config_value(&AzureConfigKey::FederatedTokenFile)
                .is_some()
        );
    }

    #[test]
    fn a_named_secret_wins_over_what_the_environment_offers() {
        let env = aks();
        let (credentials, builder) = configured(
            &azure(serde_json::json!({"useWorkloadIdentity": false, "credentialsSecret": {"name": "key"}})),
            &env,
        );
        assert_eq!(credentials, AzureCredentials::AccountKey("a2V5".into()));
        assert_eq!(
            builder
                .get_config_value(&AzureConfigKey::CredentialType)
                .as_deref(),
            Some("access_key")
        );
        let (credentials, builder) = configured(
            &azure(serde_json::json!({"sasTokenSecret": {"name": "sas"}})),
            &env,
        );
        assert_eq!(credentials, AzureCredentials::SasToken("sv=1&sig=x".into()));
        assert_eq!(
            builder
                .get_config_value(&AzureConfigKey::CredentialType)
                .as_deref(),
            Some("sas_token")
        );
        let (credentials, builder) = configured(
            &azure(serde_json::json!({"servicePrincipalSecret": {"name": "sp"}})),
            &env,
        );
        assert!(matches!(credentials, AzureCredentials::ServicePrincipal { .. }));
        assert_eq!(
            builder.get_config_value(&AzureConfigKey::ClientId).as_deref(),
            Some("sp-client")
        );
        assert_eq!(
            builder
                .get_config_value(&AzureConfigKey::CredentialType)
                .as_deref(),
            Some("client_secret")
        );
    }
}
