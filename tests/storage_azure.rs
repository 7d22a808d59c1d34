//! Azure storage credentials against servers: Azure Workload Identity through object_store's real
//! token exchange (a local stand-in for Microsoft Entra and for the blob service), and an account
//! key location with `useWorkloadIdentity: false` in a pod environment AKS's webhook mutated,
//! against Azurite (`KBO_TEST_AZURITE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::{Bytes, to_bytes},
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kafka_backup_operator::{
    api::v1beta1::AzureStorage,
    secrets::SecretStore,
    storage::{
        ObjectLocation,
        azure::{self, AzureCredentials, AzureEnv},
    },
};
use serde_json::json;
use support::{service, unique};

/// What the stand-in servers heard: (path, Authorization header, body).
type Heard = Arc<Mutex<Vec<(String, Option<String>, String)>>>;

async fn stand_in(State(heard): State<Heard>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Bytes = to_bytes(request.into_body(), 1 << 20).await.unwrap();
    heard.lock().unwrap().push((
        path.clone(),
        authorization,
        String::from_utf8_lossy(&body).into_owned(),
    ));
    if path.ends_with("/oauth2/v2.0/token") {
        axum::Json(json!({"access_token": "entra-token", "token_type": "Bearer", "expires_in": 3600}))
            .into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

fn location(
    block: &AzureStorage,
    secrets: &SecretStore,
    env: &AzureEnv,
) -> (AzureCredentials, ObjectLocation) {
    let credentials = azure::credentials(block, secrets, env).unwrap();
    let store = azure::builder(block, &credentials, env).build().unwrap();
    let location = ObjectLocation::new(
        Arc::new(store),
        block.prefix.as_deref(),
        format!("az://{}", block.container),
    );
    (credentials, location)
}

#[tokio::test]
async fn workload_identity_exchanges_the_federated_token_for_the_bearer_of_every_request() {
    let heard: Heard = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(stand_in).with_state(heard.clone());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-jwt").unwrap();
    // As AKS's workload identity webhook sets them in the pod.
    let env = AzureEnv(vec![
        (
            "AZURE_FEDERATED_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ),
        ("AZURE_CLIENT_ID".into(), "wi-client".into()),
        ("AZURE_TENANT_ID".into(), "wi-tenant".into()),
        ("AZURE_AUTHORITY_HOST".into(), base.clone()),
    ]);
    let block: AzureStorage = serde_json::from_value(json!({
        "container": "backups", "accountName": "acct", "endpoint": format!("{base}/acct"),
        "useWorkloadIdentity": true,
    }))
    .unwrap();
    let (credentials, location) = location(&block, &SecretStore::None, &env);
    assert!(matches!(credentials, AzureCredentials::WorkloadIdentity { .. }));
    assert_eq!(location.get("offset-snapshots/none.json").await.unwrap(), None);

    let heard = heard.lock().unwrap().clone();
    let (path, _, form) = &heard[0];
    assert_eq!(path, "/wi-tenant/oauth2/v2.0/token");
    assert!(form.contains("client_assertion=federated-jwt"), "{form}");
    assert!(form.contains("client_id=wi-client"), "{form}");
    let (path, authorization, _) = &heard[1];
    assert_eq!(path, "/acct/backups/offset-snapshots/none.json");
    assert_eq!(authorization.as_deref(), Some("Bearer entra-token"));
    serving.abort();
}

#[tokio::test]
async fn an_account_key_location_with_workload_identity_off_works_against_azurite() {
    let Some(url) = service("KBO_TEST_AZURITE_URL") else {
        return;
    };
    let secrets = support::azurite_secrets();
    // A pod AKS mutated, whose token is of no use here: it must not be tried.
    let env = AzureEnv(vec![
        (
            "AZURE_FEDERATED_TOKEN_FILE".into(),
            "/nonexistent/azure-identity-token".into(),
        ),
        ("AZURE_CLIENT_ID".into(), "wi-client".into()),
        ("AZURE_TENANT_ID".into(), "wi-tenant".into()),
    ]);
    let block: AzureStorage = serde_json::from_value(json!({
        "container": std::env::var("KBO_TEST_AZURE_CONTAINER").unwrap(),
        "accountName": "devstoreaccount1", "endpoint": format!("{url}/devstoreaccount1"),
        "prefix": unique("azure-key"), "useWorkloadIdentity": false,
        "credentialsSecret": {"name": "azure"},
    }))
    .unwrap();
    let (credentials, location) = location(&block, &secrets, &env);
    assert!(matches!(credentials, AzureCredentials::AccountKey(_)));
    location
        .put_new("offset-snapshots/s.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(
        location.get("offset-snapshots/s.json").await.unwrap().as_deref(),
        Some(&b"{}"[..])
    );
}
