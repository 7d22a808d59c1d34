//! What the catalog reads: the [`SnapshotStore`] and [`BackupSetSource`] traits, and their
//! implementation over a storage [`Location`] ([`StorageSource`]).
//!
//! Listing returns ids with a *version* (size and modification time) and no contents, so the
//! catalog's refresh reads only objects that are new or changed since the previous listing.

use std::{fmt, sync::Arc};

use futures::{StreamExt, future::BoxFuture};
use object_store::ObjectStoreExt;

use super::backupsets::{
    BACKUP_DIR, BackupSetError, BackupSetSummary, MANIFEST_FILE, backup_id_of_manifest_key, manifest_key,
    summary_of,
};
use crate::storage::{
    Location, StorageError,
    backup::BackupFormatError,
    backup_set, prior_art,
    snapshot::{self, SNAPSHOT_DIR, SnapshotError, StoredSnapshot, snapshot_id_of, snapshot_key},
};

/// How many manifests are looked at concurrently when listing backups.
const HEAD_CONCURRENCY: usize = 16;

/// Why reading a source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The storage operation failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A snapshot document is invalid.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A backup manifest is invalid.
    #[error(transparent)]
    BackupSet(#[from] BackupSetError),
}

/// An object found by a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The snapshot or backup id.
    pub id: String,
    /// Changes when the object changes (size and modification time).
    pub version: String,
    /// Size in bytes.
    pub size: u64,
}

/// Offset snapshots in one storage location.
pub trait SnapshotStore: Send + Sync + fmt::Debug {
    /// URI of the location (no trailing slash).
    fn uri(&self) -> &str;
    /// URI of one snapshot's document.
    fn snapshot_uri(&self, id: &str) -> String;
    /// The snapshots there, without reading them.
    fn list_snapshots(&self) -> BoxFuture<'_, Result<Vec<Listed>, SourceError>>;
    /// Reads one snapshot (either format: [`snapshot::read_snapshot`]) with its key and size;
    /// `None` when it does not exist.
    fn read_snapshot<'a>(&'a self, id: &'a str)
    -> BoxFuture<'a, Result<Option<StoredSnapshot>, SourceError>>;
    /// Deletes one snapshot; `false` when it did not exist.
    fn delete_snapshot<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SourceError>>;
}

/// Backup sets in one storage location.
pub trait BackupSetSource: Send + Sync + fmt::Debug {
    /// The backups there (those with a manifest), without reading them.
    fn list_backup_sets(&self) -> BoxFuture<'_, Result<Vec<Listed>, SourceError>>;
    /// Reads one backup's summary; `None` when it does not exist.
    fn read_backup_set<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<BackupSetSummary>, SourceError>>;
}

/// Both traits over a storage [`Location`].
#[derive(Clone)]
pub struct StorageSource {
    location: Location,
    uri: String,
}

impl fmt::Debug for StorageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageSource").field("uri", &self.uri).finish()
    }
}

impl StorageSource {
    /// The source reading `location`.
    pub fn new(location: Location) -> Self {
        let uri = location_uri(&location);
        StorageSource { location, uri }
    }

    /// The location read.
    pub fn location(&self) -> &Location {
        &self.location
    }
}

/// The URI that identifies a location (its base, no trailing slash): two [`Location`]s opened from
/// equal storage blocks have the same.
pub fn location_uri(location: &Location) -> String {
    location.uri("").trim_end_matches('/').to_owned()
}

fn version(info: &crate::storage::ObjectInfo) -> String {
    format!("{}@{}", info.size, info.last_modified.timestamp_micros())
}

impl SnapshotStore for StorageSource {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn snapshot_uri(&self, id: &str) -> String {
        self.location.uri(&snapshot_key(id))
    }

    fn list_snapshots(&self) -> BoxFuture<'_, Result<Vec<Listed>, SourceError>> {
        Box::pin(async move {
            let listed = match self.location.list(SNAPSHOT_DIR).await {
                Ok(listed) => listed,
                // A directory location that has no snapshot yet has no directory either.
                Err(StorageError::Object {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            Ok(listed
                .iter()
                .filter_map(|info| {
                    // This operator's documents and the prior art's directories.
                    let id = snapshot_id_of(&info.key).or_else(|| prior_art::snapshot_id_of(&info.key));
                    id.map(|id| Listed {
                        id: id.to_owned(),
                        version: version(info),
                        size: info.size,
                    })
                })
                .collect())
        })
    }

    fn read_snapshot<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredSnapshot>, SourceError>> {
        Box::pin(async move { Ok(snapshot::read_snapshot(&self.location, id).await?) })
    }

    fn delete_snapshot<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SourceError>> {
        Box::pin(async move { Ok(self.location.delete(&snapshot_key(id)).await?) })
    }
}

impl BackupSetSource for StorageSource {
    fn list_backup_sets(&self) -> BoxFuture<'_, Result<Vec<Listed>, SourceError>> {
        Box::pin(async move {
            // ConfigMaps hold snapshots only.
            let Location::Object(object) = &self.location else {
                return Ok(Vec::new());
            };
            let base = object.path(BACKUP_DIR);
            let uri = object.uri(BACKUP_DIR);
            let storage_error = |source| StorageError::Object {
                operation: "list",
                uri: uri.clone(),
                source,
            };
            let dirs = match object.store().list_with_delimiter(Some(&base)).await {
                Ok(result) => result.common_prefixes,
                Err(object_store::Error::NotFound { .. }) => Vec::new(),
                Err(e) => return Err(storage_error(e).into()),
            };
            let base_str = base.to_string();
            let ids: Vec<String> = dirs
                .iter()
                .filter_map(|dir| {
                    let full = dir.to_string();
                    let rel = full.strip_prefix(&base_str)?.trim_matches('/');
                    backup_id_of_manifest_key(&format!("{rel}/{MANIFEST_FILE}")).map(str::to_owned)
                })
                .collect();
            let heads = futures::stream::iter(ids)
                .map(|id| async move {
                    let key = manifest_key(&id);
                    match object.store().head(&object.path(&key)).await {
                        Ok(meta) => Ok(Some(Listed {
                            version: format!("{}@{}", meta.size, meta.last_modified.timestamp_micros()),
                            size: meta.size,
                            id,
                        })),
                        // No manifest yet: the backup is running or never finished its first write.
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(source) => Err(SourceError::from(StorageError::Object {
                            operation: "read",
                            uri: object.uri(&key),
                            source,
                        })),
                    }
                })
                .buffer_unordered(HEAD_CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            let mut listed = Vec::new();
            for head in heads {
                if let Some(found) = head? {
                    listed.push(found);
                }
            }
            // Sets of the prior art, directly below the prefix (an id with both is refused as
            // ambiguous when read).
            for (id, size, modified) in backup_set::list_prior_art_sets(object).await? {
                if !listed.iter().any(|l| l.id == id) {
                    listed.push(Listed {
                        version: format!("{size}@{}", modified.timestamp_micros()),
                        size,
                        id,
                    });
                }
            }
            Ok(listed)
        })
    }

    fn read_backup_set<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<BackupSetSummary>, SourceError>> {
        Box::pin(async move {
            let Location::Object(object) = &self.location else {
                return Ok(None);
            };
            // Either format, judged by what is stored.
            match backup_set::open(object, id).await {
                Ok(set) => Ok(set.map(|s| summary_of(s.summary(object)))),
                Err(BackupFormatError::Storage(e)) => Err(e.into()),
                Err(BackupFormatError::Manifest { uri, message }) => {
                    Err(BackupSetError::Format { uri, message }.into())
                }
            }
        })
    }
}

/// A [`StorageSource`] shared as both traits.
pub fn shared(location: Location) -> (Arc<dyn SnapshotStore>, Arc<dyn BackupSetSource>) {
    let source = Arc::new(StorageSource::new(location));
    (
        Arc::clone(&source) as Arc<dyn SnapshotStore>,
        source as Arc<dyn BackupSetSource>,
    )
}
