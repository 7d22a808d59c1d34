//! How the catalog learns from the five kinds, when a Kubernetes API is there:
//!
//! - [`NamespaceDiscovery`]: the storage locations known to each namespace are those named by the
//!   `storage` blocks of the KafkaBackups, KafkaRestores, KafkaOffsetResets, KafkaOffsetRollbacks
//!   and KafkaBackupValidations there, opened with the Secrets of that namespace. Every replica
//!   lists them before each catalog refresh (the aggregated API is served by every replica, the
//!   reconciler runs only on the leader), so a location named by a new resource is listed within
//!   one refresh interval, and a location no resource names any more is dropped.
//! - [`reconciler_hook`]: on the leader, the reconciler reports what each finished operation wrote;
//!   the hook records it at once (read in the background, never blocking the operation).
//! - [`snapshot_lookup`]: a KafkaOffsetRollback that names a snapshot by id alone (no `storage`)
//!   finds it among the catalog's locations of its namespace.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use kube::{Api, Client, Resource, api::ListParams, core::DeserializeGuard};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    catalog::{Catalog, Scope},
    sources::{BackupSetSource, SnapshotStore, StorageSource, location_uri},
};
use crate::{
    api::v1beta1::{KafkaBackup, KafkaBackupValidation, KafkaOffsetReset, KafkaOffsetRollback, KafkaRestore},
    ops::SnapshotLookup,
    reconciler::{CatalogHook, CatalogNotice, Written, kinds::Operation},
    secrets::refs as secret_refs,
    storage::{
        Location, StorageEnv,
        configmap::{ConfigMapStore, KubeTarget},
    },
};

/// A storage block of a resource, with where it was found.
#[derive(Debug, Clone)]
struct NamedStorage {
    namespace: String,
    /// `<Kind>/<name>`, for messages.
    resource: String,
    storage: crate::api::v1beta1::StorageSpec,
}

/// Lists the five kinds and turns their storage blocks into the catalog's namespace locations.
#[derive(Clone)]
pub struct NamespaceDiscovery {
    client: Client,
    /// Namespaces looked at; empty: all.
    namespaces: Vec<String>,
    pvc_root: std::path::PathBuf,
}

impl std::fmt::Debug for NamespaceDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceDiscovery")
            .field("namespaces", &self.namespaces)
            .field("pvc_root", &self.pvc_root)
            .finish_non_exhaustive()
    }
}

impl NamespaceDiscovery {
    /// Discovery through `client` in `namespaces` (empty: all), PVC claims mounted under `pvc_root`.
    pub fn new(client: Client, namespaces: Vec<String>, pvc_root: std::path::PathBuf) -> Self {
        NamespaceDiscovery {
            client,
            namespaces,
            pvc_root,
        }
    }

    /// One pass: lists the kinds, opens their locations and makes them the catalog's namespace
    /// locations. A kind that cannot be listed leaves the catalog as it was (a transient API error
    /// must not empty it); a location whose Secret is missing is left out with a warning.
    pub async fn sync(&self, catalog: &Catalog) {
        let mut found = Vec::new();
        let listed = [
            self.storage_blocks::<KafkaBackup>().await,
            self.storage_blocks::<KafkaRestore>().await,
            self.storage_blocks::<KafkaOffsetReset>().await,
            self.storage_blocks::<KafkaOffsetRollback>().await,
            self.storage_blocks::<KafkaBackupValidation>().await,
        ];
        for blocks in listed {
            match blocks {
                Ok(blocks) => found.extend(blocks),
                Err(e) => {
                    warn!(error = %e, "cannot list the resources naming storage locations; the catalog's locations stay as they were");
                    return;
                }
            }
        }
        let mut by_namespace: BTreeMap<String, Vec<Location>> = BTreeMap::new();
        for block in found {
            if let Some(location) = self.open(&block).await {
                let locations = by_namespace.entry(block.namespace).or_default();
                let uri = location_uri(&location);
                if !locations.iter().any(|l| location_uri(l) == uri) {
                    locations.push(location);
                }
            }
        }
        let before = catalog.namespaces_with_locations();
        for (namespace, locations) in by_namespace.iter() {
            catalog.set_namespace_locations(namespace, locations.clone());
        }
        for gone in before.difference(&by_namespace.keys().cloned().collect::<BTreeSet<_>>()) {
            catalog.set_namespace_locations(gone, Vec::new());
        }
    }

    async fn storage_blocks<K: Operation>(&self) -> Result<Vec<NamedStorage>, kube::Error> {
        let apis: Vec<Api<DeserializeGuard<K>>> = if self.namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            self.namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        let mut out = Vec::new();
        for api in apis {
            for item in api.list(&ListParams::default()).await? {
                // A malformed object names nothing usable; the reconciler reports it.
                let (Ok(object), Some(namespace)) = (&item.0, item.meta().namespace.clone()) else {
                    continue;
                };
                let resource = format!(
                    "{}/{}",
                    K::KIND.as_str(),
                    item.meta().name.as_deref().unwrap_or_default()
                );
                out.extend(object.storage_specs().into_iter().map(|storage| NamedStorage {
                    namespace: namespace.clone(),
                    resource: resource.clone(),
                    storage,
                }));
            }
        }
        Ok(out)
    }

    async fn open(&self, block: &NamedStorage) -> Option<Location> {
        let refs = secret_refs::storage(&block.storage, "spec.storage");
        let secrets = match secret_refs::fetch(&self.client, &block.namespace, &refs).await {
            Ok(secrets) => secrets,
            Err(e) => {
                warn!(namespace = %block.namespace, resource = %block.resource, error = %e, "storage location left out of the catalog");
                return None;
            }
        };
        let env = StorageEnv {
            pvc_root: self.pvc_root.clone(),
            config_maps: ConfigMapStore::Kube(KubeTarget {
                client: self.client.clone(),
                namespace: block.namespace.clone(),
            }),
        };
        match Location::open(&block.storage, &secrets, &env) {
            Ok(location) => Some(location),
            Err(e) => {
                warn!(namespace = %block.namespace, resource = %block.resource, error = %e, "storage location left out of the catalog");
                None
            }
        }
    }

    /// Syncs, refreshes the catalog, and again every `interval` until `cancel` fires.
    pub async fn run(self, catalog: Arc<Catalog>, interval: Duration, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {
                    self.sync(&catalog).await;
                    catalog.refresh().await;
                }
            }
        }
    }
}

/// The reconciler's catalog hook: the resource's locations become known to its namespace, and
/// what the operation wrote is read and recorded in the background.
pub fn reconciler_hook(catalog: Arc<Catalog>) -> CatalogHook {
    Arc::new(move |notice: CatalogNotice| {
        for location in &notice.locations {
            catalog.add_storage(Scope::Resources(notice.namespace.clone()), location.clone());
        }
        let catalog = Arc::clone(&catalog);
        tokio::spawn(async move { record_written(&catalog, notice).await });
    })
}

/// The reconciler's snapshot lookup: a snapshot a KafkaOffsetRollback names by id alone is looked
/// for in the catalog's locations of its namespace ([`Catalog::find_snapshot`]).
pub fn snapshot_lookup(catalog: Arc<Catalog>) -> SnapshotLookup {
    Arc::new(move |namespace: String, id: String| {
        let catalog = Arc::clone(&catalog);
        Box::pin(async move { catalog.find_snapshot(&namespace, &id).await })
    })
}

async fn record_written(catalog: &Catalog, notice: CatalogNotice) {
    for written in notice.written {
        match written {
            Written::Snapshot {
                location,
                snapshot_id,
            } => match StorageSource::new(location.clone())
                .read_snapshot(&snapshot_id)
                .await
            {
                Ok(Some(stored)) => catalog.record_snapshot(&notice.namespace, &location, &stored.snapshot),
                Ok(None) => {
                    debug!(snapshot = %snapshot_id, "written snapshot not found; the next refresh decides")
                }
                Err(e) => {
                    warn!(resource = %notice.resource, snapshot = %snapshot_id, error = %e, "cannot read the snapshot just written; the next refresh lists it")
                }
            },
            Written::BackupSet { location, backup_id } => match StorageSource::new(location.clone())
                .read_backup_set(&backup_id)
                .await
            {
                Ok(Some(summary)) => catalog.record_backup_set(&notice.namespace, &location, summary),
                Ok(None) => {
                    debug!(backup = %backup_id, "written backup set not found; the next refresh decides")
                }
                Err(e) => {
                    warn!(resource = %notice.resource, backup = %backup_id, error = %e, "cannot read the backup set just written; the next refresh lists it")
                }
            },
        }
    }
    info!(resource = %notice.resource, namespace = %notice.namespace, "catalog updated from a finished operation");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;
    use crate::storage::snapshot::snapshot_key;

    /// A mock API server listing `backups` as the KafkaBackups (every other kind empty) and
    /// answering Secret reads with 404.
    fn serve(backups: Value) -> Client {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let path = request.uri().path().to_owned();
                let (code, body) = if path.contains("/secrets/") {
                    (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    )
                } else {
                    let items = if path.ends_with("/kafkabackups") {
                        backups.clone()
                    } else {
                        json!([])
                    };
                    (
                        200,
                        json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                    )
                };
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    fn backup(namespace: &str, name: &str, storage: Value) -> Value {
        json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
            "metadata": {"name": name, "namespace": namespace, "uid": name},
            "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "topics": ["t"], "storage": storage},
        })
    }

    #[tokio::test]
    async fn storage_blocks_of_the_resources_become_namespace_locations() {
        let root = tempfile::tempdir().unwrap();
        let pvc = json!({"type": "PVC", "pvc": {"claimName": "backups"}});
        let client = serve(json!([
            backup("team-a", "nightly", pvc.clone()),
            // Its credentials Secret is missing: left out, the others still count.
            backup("team-b", "s3", json!({"type": "S3", "s3": {"bucket": "b", "credentialsSecret": {"name": "aws"}}})),
            // Malformed (no spec): skipped.
            {"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup", "metadata": {"name": "bad", "namespace": "team-c"}},
        ]));
        let discovery = NamespaceDiscovery::new(client, Vec::new(), root.path().to_owned());
        let env = StorageEnv {
            pvc_root: root.path().to_owned(),
            config_maps: ConfigMapStore::None,
        };
        let spec = serde_json::from_value(pvc).unwrap();
        let location = Location::open(&spec, &crate::secrets::SecretStore::None, &env).unwrap();
        let snapshot = super::super::catalog::tests::snapshot("before-upgrade", None);
        location
            .put_new(&snapshot_key("before-upgrade"), snapshot.to_bytes())
            .await
            .unwrap();

        let catalog = Catalog::default();
        discovery.sync(&catalog).await;
        assert_eq!(
            catalog.namespaces_with_locations(),
            BTreeSet::from(["team-a".to_owned()])
        );
        catalog.refresh().await;
        let index = catalog.index();
        let listed: Vec<_> = index
            .snapshots_in(Some("team-a"), None)
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(listed, ["before-upgrade"]);

        // The KafkaBackup is gone: so is its location.
        let discovery = NamespaceDiscovery::new(serve(json!([])), Vec::new(), root.path().to_owned());
        discovery.sync(&catalog).await;
        assert!(catalog.namespaces_with_locations().is_empty());
        assert_eq!(catalog.index().snapshots_in(Some("team-a"), None).count(), 0);
    }

    #[tokio::test]
    async fn the_hook_records_what_an_operation_wrote_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let location: Location =
            crate::storage::ObjectLocation::directory(dir.path(), format!("file://{}", dir.path().display()))
                .unwrap()
                .into();
        let snapshot = super::super::catalog::tests::snapshot("pre-reset", None);
        location
            .put_new(&snapshot_key("pre-reset"), snapshot.to_bytes())
            .await
            .unwrap();
        let catalog = Arc::new(Catalog::default());
        let hook = reconciler_hook(Arc::clone(&catalog));
        hook(CatalogNotice {
            namespace: "team-a".into(),
            resource: "KafkaOffsetReset/r".into(),
            locations: vec![location.clone()],
            written: vec![Written::Snapshot {
                location,
                snapshot_id: "pre-reset".into(),
            }],
        });
        assert_eq!(
            catalog.namespaces_with_locations(),
            BTreeSet::from(["team-a".to_owned()])
        );
        for _ in 0..100 {
            if catalog.index().snapshots_in(Some("team-a"), None).count() == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the snapshot was not recorded without a refresh");
    }
}
