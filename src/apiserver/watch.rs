//! File-system watch of the catalog's local directories (the default location `--catalog-dir`,
//! PVC locations, any directory location): what another process writes there (a `run -f` storing a
//! snapshot, a backup writing its manifest) is listed within about a second instead of at the next
//! `--catalog-refresh-interval`.
//!
//! Per local directory `D` the watch covers, without recursing into backup segments (which would
//! cost one inotify watch per topic and partition): `D`, `D/offset-snapshots`, `D/backups` and each
//! `D/backups/<backupId>`; for what kafka-backup 0.x wrote ([`crate::storage::prior_art`]) each
//! other directory `D/<backupId>` (its sets) and each `D/offset-snapshots/<id>` (its snapshots). A
//! change that concerns the catalog ([`concerns_catalog`]: a snapshot document, a manifest, a
//! backup directory appearing or going) marks `D`; after [`DEBOUNCE`] without
//! further changes (a writer's create, write and rename arrive as several events) the locations in
//! `D` are refreshed. The watched paths follow the catalog's locations and the backup directories.
//! A watch that cannot be set up (no inotify, its limits reached) is logged once as a warning; that
//! directory is then listed by the periodic refresh only.

use std::{
    collections::BTreeSet,
    path::{Component, Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use notify::{
    EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode, MetadataKind, ModifyKind},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    backupsets::{BACKUP_DIR, MANIFEST_FILE},
    catalog::Catalog,
};
use crate::storage::{
    prior_art,
    snapshot::{SNAPSHOT_DIR, snapshot_id_of},
};

/// Quiet time after the last change before the directory is listed.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Whether a change at `relative` (a path below a location's directory) can change what the catalog
/// lists: a snapshot document, a backup manifest, or one of the directories holding them.
pub fn concerns_catalog(relative: &Path) -> bool {
    let parts: Vec<&str> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [dir] => *dir == SNAPSHOT_DIR || *dir == BACKUP_DIR,
        [dir, file] if *dir == SNAPSHOT_DIR => snapshot_id_of(file).is_some(),
        [dir, _backup] if *dir == BACKUP_DIR => true,
        // A set of the prior art: `<backupId>/manifest.json`.
        [set, file] => !prior_art::NOT_SETS.contains(set) && *file == prior_art::MANIFEST_FILE,
        [dir, _backup, file] if *dir == BACKUP_DIR => *file == MANIFEST_FILE,
        // A snapshot of the prior art: `offset-snapshots/<id>/snapshot.json` and its summary.
        [dir, _id, file] if *dir == SNAPSHOT_DIR => {
            *file == prior_art::SNAPSHOT_FILE || *file == prior_art::SNAPSHOT_METADATA_FILE
        }
        _ => false,
    }
}

/// The directories below `dir`.
fn subdirectories(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
}

/// The paths to watch for local directory `dir`: itself, its snapshot and backup directories and
/// each backup's directory, those that exist.
fn watch_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![dir.to_owned(), dir.join(SNAPSHOT_DIR), dir.join(BACKUP_DIR)];
    paths.extend(subdirectories(&dir.join(BACKUP_DIR)));
    // The prior art's sets and snapshot directories.
    paths.extend(subdirectories(dir).filter(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !prior_art::NOT_SETS.contains(&n))
    }));
    paths.extend(subdirectories(&dir.join(SNAPSHOT_DIR)));
    paths.retain(|p| p.is_dir());
    paths
}

/// Paths changed since the last batch, filled by the watcher's thread.
#[derive(Default)]
struct Changes {
    paths: Mutex<BTreeSet<PathBuf>>,
    arrived: tokio::sync::Notify,
}

impl Changes {
    fn record(&self, event: notify::Event) {
        // Reads (the catalog's own listings among them) change nothing.
        let read = match event.kind {
            EventKind::Access(kind) => kind != AccessKind::Close(AccessMode::Write),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => true,
            _ => false,
        };
        if read {
            return;
        }
        self.paths
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(event.paths);
        self.arrived.notify_one();
    }

    fn take(&self) -> BTreeSet<PathBuf> {
        std::mem::take(&mut *self.paths.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The watcher and what it watches.
struct Watches {
    watcher: notify::RecommendedWatcher,
    /// Watched paths.
    watched: BTreeSet<PathBuf>,
    /// Paths whose watch failed (warned once; retried when they come back).
    failed: BTreeSet<PathBuf>,
}

impl Watches {
    /// Makes the watched paths those of `dirs`; the paths newly watched.
    fn sync(&mut self, dirs: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
        let mut added = Vec::new();
        let wanted: BTreeSet<PathBuf> = dirs.iter().flat_map(|d| watch_paths(d)).collect();
        for gone in self.watched.difference(&wanted).cloned().collect::<Vec<_>>() {
            // A removed directory has lost its watch already.
            let _ = self.watcher.unwatch(&gone);
            self.watched.remove(&gone);
        }
        self.failed.retain(|p| wanted.contains(p));
        for path in wanted {
            if self.watched.contains(&path) || self.failed.contains(&path) {
                continue;
            }
            match self.watcher.watch(&path, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    debug!(path = %path.display(), "watching catalog directory");
                    self.watched.insert(path.clone());
                    added.push(path);
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "failed to watch catalog directory; it is listed at the refresh interval only");
                    self.failed.insert(path);
                }
            }
        }
        added
    }
}

/// Watches the catalog's local directories until `cancel` fires (see the module docs).
pub async fn run(catalog: Arc<Catalog>, cancel: CancellationToken) {
    let changes = Arc::new(Changes::default());
    let sink = Arc::clone(&changes);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) => sink.record(event),
        Err(e) => warn!(error = %e, "catalog directory watch failed"),
    });
    let mut watches = match watcher {
        Ok(watcher) => Watches {
            watcher,
            watched: BTreeSet::new(),
            failed: BTreeSet::new(),
        },
        Err(e) => {
            warn!(error = %e, "cannot watch the catalog's local directories; they are listed at the refresh interval only");
            return;
        }
    };
    let mut dirs = catalog.local_dirs();
    watches.sync(&dirs);
    if !dirs.is_empty() {
        info!(
            directories = dirs.len(),
            "watching the catalog's local directories"
        );
    }
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = catalog.locations_changed() => {}
            () = changes.arrived.notified() => {
                // Quiet time: the rest of this write (and of others) arrives meanwhile.
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(DEBOUNCE) => break,
                        () = changes.arrived.notified() => {}
                    }
                }
                let changed = changes.take();
                for dir in &dirs {
                    let concerned = changed
                        .iter()
                        .filter_map(|path| path.strip_prefix(dir).ok())
                        .any(concerns_catalog);
                    if concerned {
                        debug!(dir = %dir.display(), "catalog directory changed; listing it");
                        catalog.refresh_local(dir).await;
                    }
                }
            }
        }
        dirs = catalog.local_dirs();
        // What was written into a directory before its watch existed (a new backup's manifest, the
        // first snapshot of a new location) is found by listing once more.
        let added = watches.sync(&dirs);
        for dir in &dirs {
            if added.iter().any(|p| p != dir && p.starts_with(dir)) {
                catalog.refresh_local(dir).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_snapshot_documents_manifests_and_their_directories_concern_the_catalog() {
        for yes in [
            "offset-snapshots",
            "offset-snapshots/pre-reset.json",
            "backups",
            "backups/nightly",
            "backups/nightly/manifest.json",
            "b-zstd/manifest.json",
            "offset-snapshots/snap-1/snapshot.json",
            "offset-snapshots/snap-1/metadata.json",
        ] {
            assert!(concerns_catalog(Path::new(yes)), "{yes}");
        }
        for no in [
            "",
            "offset-snapshots/pre-reset.json#12",
            "offset-snapshots/a/b.json",
            "backups/nightly/orders",
            "backups/nightly/state.json",
            "backups/nightly/orders/0/segment-1.bin",
            "other/x.json",
            "b-zstd/consumer-groups-snapshot.json",
            "b-zstd/topics",
            "offset-snapshots/snap-1/other.json",
            "offset-snapshots/snap-1",
        ] {
            assert!(!concerns_catalog(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn backup_directories_are_watched_but_not_their_segments() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("backups/nightly/orders/0")).unwrap();
        std::fs::create_dir_all(dir.path().join("offset-snapshots/snap-1")).unwrap();
        std::fs::create_dir_all(dir.path().join("b-zstd/topics/orders/partition=0")).unwrap();
        let paths = watch_paths(dir.path());
        assert_eq!(
            paths,
            [
                dir.path().to_owned(),
                dir.path().join("offset-snapshots"),
                dir.path().join("backups"),
                dir.path().join("backups/nightly"),
                dir.path().join("b-zstd"),
                dir.path().join("offset-snapshots/snap-1"),
            ]
        );
    }
}
