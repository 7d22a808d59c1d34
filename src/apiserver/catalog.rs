//! The catalog: which offset snapshots and backup sets exist, per namespace, kept in memory and
//! derived entirely from storage.
//!
//! # Locations and namespaces
//!
//! The catalog reads a set of storage locations. Each has one or more [`Scope`]s:
//! - [`Scope::Namespace`]: a location the catalog configuration gives that namespace; everything in
//!   it is listed in that namespace;
//! - [`Scope::Resources`]: the same, for a location named by the `storage` block of a resource in
//!   that namespace ([`super::feed`] keeps these in sync with the resources);
//! - [`Scope::Default`]: the configured default location; an object in it is listed in the
//!   namespace of the resource that wrote it (`source.namespace`), or in the scope's namespace when
//!   it names none (the embedded default uses `default`).
//!
//! A location named by several namespaces is read once and listed in each. Two objects with the same
//! name in one namespace (the same id in two locations) are shown once: the location added first
//! wins.
//!
//! # Index and refresh
//!
//! [`Catalog::refresh`] lists every location (one listing call per location, plus one metadata
//! request per backup) and reads only the objects that are new or changed since the previous
//! listing; summaries of the others are kept. The merged [`Index`] is rebuilt after each change and
//! swapped in atomically, so lists are answered from memory: listing 10,000 snapshots reads nothing
//! from storage. A get reads the one stored object. [`Catalog::run`] refreshes at start-up and on an
//! interval; [`Catalog::record_snapshot`] and [`Catalog::record_backup_set`] add what the operator
//! itself just wrote without waiting for the next refresh. A location that fails to list keeps its
//! previous contents and its error is reported (log, metric, and a `Warning` header on lists).
//! A location never listed yet (just named by a new resource, or first met in what an operation
//! wrote) is listed before a list that may show it is answered ([`Catalog::ensure_listed`]), so the
//! "not listed yet" warning means what it says. Local directories are also watched
//! ([`super::watch`]): what another process writes there is listed within about a second.
//!
//! # Retention
//!
//! A snapshot stored with an `expiresAt` ([`crate::storage::snapshot`]) is deleted from storage by
//! the first refresh of its location after that time, logged and counted
//! (`catalog_snapshots_expired_total`); a snapshot without one is never deleted by the catalog.
//!
//! # Hidden entries
//!
//! Deleting a namespace must never delete stored snapshots (see [`super`]): a delete that is no
//! explicit request about one snapshot only hides its entry ([`Catalog::hide_snapshot`]) in this
//! process until it restarts; storage is not touched, and the entry is back after a restart.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{
    backupsets::BackupSetSummary,
    metrics::ApiServerMetrics,
    resources::{
        BackupSetEntry, Entry, Resource, SnapshotEntry, SnapshotSummary, backup_set_entry, snapshot_entry,
    },
    sources::{self, BackupSetSource, Listed, SnapshotStore, SourceError, location_uri},
};
use crate::{
    ops::SnapshotSearch,
    storage::{Location, snapshot::OffsetSnapshot},
};

/// How many objects one location reads concurrently during a refresh.
const READ_CONCURRENCY: usize = 16;

/// How long a list waits for the first listing of a location it may show ([`Catalog::ensure_listed`]).
const FIRST_LISTING_WAIT: Duration = Duration::from_secs(10);

/// Which namespaces a location's objects are listed in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything in the location belongs to this namespace (configured).
    Namespace(String),
    /// Everything in the location belongs to this namespace, whose resources name the location in
    /// their `storage` blocks (kept in sync with them by [`Catalog::set_namespace_locations`]).
    Resources(String),
    /// The default location: objects belong to their source's namespace, else to this one.
    Default {
        /// Namespace of objects whose source names none.
        namespace: String,
    },
}

impl Scope {
    /// The namespace an object with source namespace `source_ns` is listed in under this scope.
    fn namespace_of<'a>(&'a self, source_ns: Option<&'a str>) -> &'a str {
        match self {
            Scope::Namespace(ns) | Scope::Resources(ns) => ns,
            Scope::Default { namespace } => source_ns.filter(|ns| !ns.is_empty()).unwrap_or(namespace),
        }
    }

    /// Whether objects of this scope may be listed in `namespace`.
    fn may_cover(&self, namespace: &str) -> bool {
        match self {
            Scope::Namespace(ns) | Scope::Resources(ns) => ns == namespace,
            Scope::Default { .. } => true,
        }
    }
}

/// A summary with the listing version it was read at.
#[derive(Debug, Clone)]
struct Cached<T> {
    version: String,
    summary: Arc<T>,
    /// Epoch of the location at which the operator recorded it; 0 when found by a listing.
    recorded: u64,
}

#[derive(Debug, Default)]
struct LocationState {
    snapshots: HashMap<String, Cached<SnapshotSummary>>,
    backup_sets: HashMap<String, Cached<BackupSetSummary>>,
    /// Listed successfully at least once.
    loaded: bool,
    /// Error of the last refresh, if it failed.
    error: Option<String>,
}

/// One storage location read by the catalog.
#[derive(Debug)]
pub struct CatalogLocation {
    uri: String,
    scopes: Mutex<Vec<Scope>>,
    snapshots: Arc<dyn SnapshotStore>,
    backups: Arc<dyn BackupSetSource>,
    /// Its directory, when it is on local disk (watched, see [`super::watch`]).
    local_dir: Option<PathBuf>,
    /// The storage location itself, when added as one: operations open through it what
    /// [`Catalog::find_snapshot`] finds.
    storage: Option<Location>,
    state: Mutex<LocationState>,
    /// Incremented for each object recorded by the operator; see [`Cached::recorded`].
    epoch: AtomicU64,
    /// Held while the location is listed, so concurrent refreshes list it once.
    listing: tokio::sync::Mutex<()>,
}

impl CatalogLocation {
    fn new(
        scope: Scope,
        snapshots: Arc<dyn SnapshotStore>,
        backups: Arc<dyn BackupSetSource>,
        local_dir: Option<PathBuf>,
        storage: Option<Location>,
    ) -> Self {
        CatalogLocation {
            uri: snapshots.uri().to_owned(),
            scopes: Mutex::new(vec![scope]),
            snapshots,
            backups,
            local_dir,
            storage,
            state: Mutex::new(LocationState::default()),
            epoch: AtomicU64::new(0),
            listing: tokio::sync::Mutex::new(()),
        }
    }

    /// URI of the location.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LocationState> {
        // Every update of the state is complete before the lock is released.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn scopes(&self) -> Vec<Scope> {
        self.scopes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Whether objects of this location may be listed in `namespace` (any, when `None`).
    fn may_cover(&self, namespace: Option<&str>) -> bool {
        namespace.is_none_or(|ns| self.scopes().iter().any(|s| s.may_cover(ns)))
    }
}

/// The merged view served to clients: objects by (namespace, name).
#[derive(Debug, Default)]
pub struct Index {
    /// Incremented on every change; served as the lists' `resourceVersion`.
    pub generation: u64,
    /// Offset snapshots.
    pub snapshots: BTreeMap<(String, String), SnapshotEntry>,
    /// Backup sets.
    pub backup_sets: BTreeMap<(String, String), BackupSetEntry>,
    /// Location of each snapshot, by (namespace, name): where a get or delete goes.
    snapshot_origin: BTreeMap<(String, String), Arc<CatalogLocation>>,
}

impl Index {
    /// Snapshots in `namespace` (all namespaces when `None`), in (namespace, name) order, starting
    /// after `after` when given.
    pub fn snapshots_in<'a>(
        &'a self,
        namespace: Option<&'a str>,
        after: Option<(&'a str, &'a str)>,
    ) -> impl Iterator<Item = &'a SnapshotEntry> + 'a {
        range_in(&self.snapshots, namespace, after)
    }

    /// Backup sets in `namespace` (all when `None`), ordered, after `after`.
    pub fn backup_sets_in<'a>(
        &'a self,
        namespace: Option<&'a str>,
        after: Option<(&'a str, &'a str)>,
    ) -> impl Iterator<Item = &'a BackupSetEntry> + 'a {
        range_in(&self.backup_sets, namespace, after)
    }

    /// Number of objects of a resource.
    pub fn len(&self, resource: Resource) -> usize {
        match resource {
            Resource::OffsetSnapshots => self.snapshots.len(),
            Resource::BackupSets => self.backup_sets.len(),
        }
    }
}

fn range_in<'a, T>(
    map: &'a BTreeMap<(String, String), Entry<T>>,
    namespace: Option<&'a str>,
    after: Option<(&'a str, &'a str)>,
) -> impl Iterator<Item = &'a Entry<T>> + 'a {
    use std::ops::Bound;
    let lower = match (after, namespace) {
        (Some((ns, name)), _) => Bound::Excluded((ns.to_owned(), name.to_owned())),
        (None, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
        (None, None) => Bound::Unbounded,
    };
    map.range((lower, Bound::Unbounded))
        .map(|(_, entry)| entry)
        .take_while(move |entry| namespace.is_none_or(|ns| entry.namespace == ns))
}

/// Why a catalog operation on one object failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The object's location is no longer part of the catalog.
    #[error("storage location {0} is no longer part of the catalog")]
    LocationGone(String),
    /// Reading or deleting the stored object failed.
    #[error("{0}")]
    Source(#[from] SourceError),
}

/// The catalog of offset snapshots and backup sets. Share it as `Arc<Catalog>`.
#[derive(Debug)]
pub struct Catalog {
    locations: RwLock<Vec<Arc<CatalogLocation>>>,
    index: RwLock<Arc<Index>>,
    generation: AtomicU64,
    /// Serializes refreshes and index rebuilds.
    rebuild: Mutex<()>,
    metrics: Option<ApiServerMetrics>,
    /// Entries left out of the index: (namespace, name) of snapshots hidden by
    /// [`Catalog::hide_snapshot`].
    hidden: Mutex<BTreeSet<(String, String)>>,
    /// Signalled when a location is added or dropped (the watch follows the local ones).
    locations_changed: tokio::sync::Notify,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Catalog {
    /// An empty catalog; `metrics` counts refreshes and objects when given.
    pub fn new(metrics: Option<ApiServerMetrics>) -> Self {
        Catalog {
            locations: RwLock::new(Vec::new()),
            index: RwLock::new(Arc::new(Index::default())),
            generation: AtomicU64::new(0),
            rebuild: Mutex::new(()),
            metrics,
            hidden: Mutex::new(BTreeSet::new()),
            locations_changed: tokio::sync::Notify::new(),
        }
    }

    fn locations(&self) -> Vec<Arc<CatalogLocation>> {
        self.locations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current index (a consistent snapshot; cheap).
    pub fn index(&self) -> Arc<Index> {
        Arc::clone(&self.index.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Adds a location read through `snapshots` and `backups` with `scope`; a location with the
    /// same URI gets the scope added instead. Not read until the next refresh.
    pub fn add_source(
        &self,
        scope: Scope,
        snapshots: Arc<dyn SnapshotStore>,
        backups: Arc<dyn BackupSetSource>,
    ) {
        self.add_location(scope, snapshots, backups, None, None);
    }

    /// Adds a storage location with `scope` (see [`Catalog::add_source`]).
    pub fn add_storage(&self, scope: Scope, location: Location) {
        let local_dir = local_dir_of(&location);
        let (snapshots, backups) = sources::shared(location.clone());
        self.add_location(scope, snapshots, backups, local_dir, Some(location));
    }

    fn add_location(
        &self,
        scope: Scope,
        snapshots: Arc<dyn SnapshotStore>,
        backups: Arc<dyn BackupSetSource>,
        local_dir: Option<PathBuf>,
        storage: Option<Location>,
    ) -> Arc<CatalogLocation> {
        let mut locations = self.locations.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = locations.iter().find(|l| l.uri == snapshots.uri()) {
            let mut scopes = existing.scopes.lock().unwrap_or_else(PoisonError::into_inner);
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
            return Arc::clone(existing);
        }
        let location = Arc::new(CatalogLocation::new(
            scope, snapshots, backups, local_dir, storage,
        ));
        info!(location = %location.uri, "catalog location added");
        locations.push(Arc::clone(&location));
        self.locations_changed.notify_one();
        location
    }

    /// Makes `locations` the ones the resources of `namespace` name ([`Scope::Resources`]; see
    /// [`super::feed`]). Locations no longer known to any namespace are dropped; new ones are read by
    /// the next refresh.
    pub fn set_namespace_locations(&self, namespace: &str, locations: Vec<Location>) {
        let scope = Scope::Resources(namespace.to_owned());
        let wanted: Vec<String> = locations.iter().map(location_uri).collect();
        {
            let mut all = self.locations.write().unwrap_or_else(PoisonError::into_inner);
            for location in all.iter() {
                if !wanted.contains(&location.uri) {
                    location
                        .scopes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .retain(|s| s != &scope);
                }
            }
            let before = all.len();
            all.retain(|l| !l.scopes().is_empty());
            if all.len() != before {
                self.locations_changed.notify_one();
            }
        }
        for location in locations {
            self.add_storage(scope.clone(), location);
        }
        self.rebuild_index();
    }

    /// Namespaces with locations named by their resources ([`Scope::Resources`]).
    pub fn namespaces_with_locations(&self) -> BTreeSet<String> {
        self.locations()
            .iter()
            .flat_map(|l| l.scopes())
            .filter_map(|s| match s {
                Scope::Resources(ns) => Some(ns),
                _ => None,
            })
            .collect()
    }

    /// Records a snapshot the operator just wrote into `location` for a resource in `namespace`,
    /// so it is listed at once. An unknown location becomes known to `namespace`.
    pub fn record_snapshot(&self, namespace: &str, location: &Location, snapshot: &OffsetSnapshot) {
        let catalog_location = self.location_for(namespace, location);
        let uri = catalog_location.snapshots.snapshot_uri(&snapshot.snapshot_id);
        let size = snapshot.to_bytes().len() as u64;
        let summary = Arc::new(SnapshotSummary::of(snapshot, &uri, size));
        let epoch = catalog_location.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        catalog_location.state().snapshots.insert(
            snapshot.snapshot_id.clone(),
            Cached {
                version: String::new(),
                summary,
                recorded: epoch,
            },
        );
        debug!(snapshot = %snapshot.snapshot_id, location = %catalog_location.uri, "snapshot recorded in the catalog");
        self.rebuild_index();
    }

    /// Records a backup set the operator just wrote (or updated) into `location` for a resource in
    /// `namespace`, so it is listed at once.
    pub fn record_backup_set(&self, namespace: &str, location: &Location, summary: BackupSetSummary) {
        let catalog_location = self.location_for(namespace, location);
        let epoch = catalog_location.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let id = summary.backup_id.clone();
        catalog_location.state().backup_sets.insert(
            id.clone(),
            Cached {
                version: String::new(),
                summary: Arc::new(summary),
                recorded: epoch,
            },
        );
        debug!(backup = %id, location = %catalog_location.uri, "backup set recorded in the catalog");
        self.rebuild_index();
    }

    fn location_for(&self, namespace: &str, location: &Location) -> Arc<CatalogLocation> {
        let uri = location_uri(location);
        if let Some(found) = self.locations().into_iter().find(|l| l.uri == uri) {
            let covered = found.scopes().iter().any(|s| s.may_cover(namespace));
            if !covered {
                found
                    .scopes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Scope::Resources(namespace.to_owned()));
            }
            return found;
        }
        let (snapshots, backups) = sources::shared(location.clone());
        // Not listed yet: the first list that may show it lists it (see [`Catalog::ensure_listed`]).
        self.add_location(
            Scope::Resources(namespace.to_owned()),
            snapshots,
            backups,
            local_dir_of(location),
            Some(location.clone()),
        )
    }

    /// Lists every location and reads what is new or changed; see the module docs.
    pub async fn refresh(&self) {
        for location in self.locations() {
            self.refresh_one(&location, false).await;
        }
    }

    /// Lists the locations that may show objects in `namespace` (all when `None`) and were never
    /// listed, waiting at most [`FIRST_LISTING_WAIT`]; a list calls it before it answers, so that a
    /// location just added (named by a new resource, or first met in what an operation wrote) is
    /// shown with everything it holds rather than with a "not listed yet" warning.
    pub async fn ensure_listed(&self, namespace: Option<&str>) {
        let unlisted: Vec<_> = self
            .locations()
            .into_iter()
            .filter(|l| l.may_cover(namespace))
            .filter(|l| {
                let state = l.state();
                !state.loaded && state.error.is_none()
            })
            .collect();
        if unlisted.is_empty() {
            return;
        }
        let listings = futures::future::join_all(unlisted.iter().map(|l| self.refresh_one(l, true)));
        if tokio::time::timeout(FIRST_LISTING_WAIT, listings).await.is_err() {
            warn!(
                seconds = FIRST_LISTING_WAIT.as_secs(),
                "a new catalog location was not listed in time; answering without it"
            );
        }
    }

    /// Refreshes the locations in local directory `dir` (the watch saw a change there).
    pub async fn refresh_local(&self, dir: &Path) {
        for location in self.locations() {
            if location.local_dir.as_deref() == Some(dir) {
                self.refresh_one(&location, false).await;
            }
        }
    }

    /// The local directories of the catalog's locations.
    pub fn local_dirs(&self) -> BTreeSet<PathBuf> {
        self.locations()
            .iter()
            .filter_map(|l| l.local_dir.clone())
            .collect()
    }

    /// Waits until a location is added or dropped.
    pub async fn locations_changed(&self) {
        self.locations_changed.notified().await;
    }

    /// Lists one location (when `only_unlisted`, unless it has been listed meanwhile), deletes its
    /// expired snapshots and rebuilds the index.
    async fn refresh_one(&self, location: &CatalogLocation, only_unlisted: bool) {
        let _listing = location.listing.lock().await;
        if only_unlisted && location.state().loaded {
            return;
        }
        let span = info_span!("catalog_refresh", location = %location.uri);
        let result = refresh_location(location).instrument(span).await;
        let outcome = match result {
            Ok((read, removed)) => {
                if read + removed > 0 {
                    info!(location = %location.uri, read, removed, "catalog location refreshed");
                }
                {
                    let mut state = location.state();
                    state.loaded = true;
                    state.error = None;
                }
                self.expire_snapshots(location, Utc::now()).await;
                crate::metrics::Outcome::Success
            }
            Err(e) => {
                warn!(location = %location.uri, error = %e, "failed to refresh catalog location; keeping what was listed before");
                location.state().error = Some(e.to_string());
                crate::metrics::Outcome::Failure
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.refresh(outcome);
        }
        self.rebuild_index();
    }

    /// Deletes the snapshots of `location` whose `expiresAt` is not after `now` (see the module
    /// docs); one that cannot be deleted stays and is tried again at the next refresh.
    async fn expire_snapshots(&self, location: &CatalogLocation, now: DateTime<Utc>) {
        let expired: Vec<(String, DateTime<Utc>)> = location
            .state()
            .snapshots
            .iter()
            .filter_map(|(id, cached)| {
                cached
                    .summary
                    .expires_at
                    .filter(|at| *at <= now)
                    .map(|at| (id.clone(), at))
            })
            .collect();
        for (id, expired_at) in expired {
            let uri = location.snapshots.snapshot_uri(&id);
            match location.snapshots.delete_snapshot(&id).await {
                Ok(_) => {
                    location.state().snapshots.remove(&id);
                    info!(snapshot = %id, uri = %uri, expires_at = %expired_at, "expired offset snapshot deleted");
                    if let Some(metrics) = &self.metrics {
                        metrics.snapshot_expired();
                    }
                }
                Err(e) => {
                    warn!(snapshot = %id, uri = %uri, error = %e, "failed to delete an expired offset snapshot; trying again at the next refresh");
                }
            }
        }
    }

    /// Leaves a snapshot's entry out of the index without touching storage (see the module docs).
    pub fn hide_snapshot(&self, entry: &SnapshotEntry) {
        self.hidden
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((entry.namespace.clone(), entry.name.clone()));
        self.rebuild_index();
    }

    /// Refreshes now and then every `interval` until `cancel` fires.
    pub async fn run(self: Arc<Self>, interval: Duration, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => self.refresh().await,
            }
        }
    }

    /// Problems of the locations that may show objects in `namespace` (all when `None`): never
    /// listed, or the last refresh failed. Lists carry them as warnings.
    pub fn problems(&self, namespace: Option<&str>) -> Vec<String> {
        self.locations()
            .iter()
            .filter(|l| l.may_cover(namespace))
            .filter_map(|l| {
                let state = l.state();
                match (&state.error, state.loaded) {
                    (Some(e), true) => Some(format!(
                        "storage location {} could not be listed ({e}); showing what it held before",
                        l.uri
                    )),
                    (Some(e), false) => Some(format!("storage location {} could not be listed: {e}", l.uri)),
                    (None, false) => Some(format!("storage location {} has not been listed yet", l.uri)),
                    (None, true) => None,
                }
            })
            .collect()
    }

    /// The storage locations holding snapshot `id` for `namespace`, read from storage now (not
    /// from the index, which may be a refresh behind), and every location of the namespace looked
    /// in: what a KafkaOffsetRollback naming a snapshot by id alone may use.
    pub async fn find_snapshot(&self, namespace: &str, id: &str) -> SnapshotSearch {
        let mut search = SnapshotSearch::default();
        for location in self.locations() {
            let scopes = location.scopes();
            if !scopes.iter().any(|s| s.may_cover(namespace)) {
                continue;
            }
            let uri = location.snapshots.snapshot_uri(id);
            match location.snapshots.read_snapshot(id).await {
                Ok(Some(stored)) => {
                    let (snapshot, uri) = (stored.snapshot, stored.uri);
                    let source_ns = snapshot.source.as_ref().and_then(|s| s.namespace.as_deref());
                    let listed_here = scopes.iter().any(|s| s.namespace_of(source_ns) == namespace);
                    match (&location.storage, listed_here) {
                        (Some(storage), true) => {
                            search.found.push(storage.clone());
                            search.searched.push(uri);
                        }
                        (None, true) => search
                            .searched
                            .push(format!("{uri} (not a storage location operations can open)")),
                        (_, false) => search
                            .searched
                            .push(format!("{uri} (belongs to another namespace)")),
                    }
                }
                Ok(None) => search.searched.push(uri),
                Err(e) => search.searched.push(format!("{uri} (cannot be read: {e})")),
            }
        }
        search
    }

    fn origin_of(&self, index: &Index, entry: &SnapshotEntry) -> Result<Arc<CatalogLocation>, CatalogError> {
        index
            .snapshot_origin
            .get(&(entry.namespace.clone(), entry.name.clone()))
            .cloned()
            .ok_or_else(|| CatalogError::LocationGone(entry.summary.uri.clone()))
    }

    /// Reads the full stored snapshot of an entry; `None` when it vanished from storage (it is then
    /// dropped from the catalog).
    pub async fn read_snapshot(&self, entry: &SnapshotEntry) -> Result<Option<OffsetSnapshot>, CatalogError> {
        let location = self.origin_of(&self.index(), entry)?;
        match location.snapshots.read_snapshot(&entry.name).await? {
            Some(stored) => Ok(Some(stored.snapshot)),
            None => {
                location.state().snapshots.remove(&entry.name);
                self.rebuild_index();
                Ok(None)
            }
        }
    }

    /// Deletes the stored snapshot of an entry and drops it from the catalog; `false` when it was
    /// already gone from storage.
    pub async fn delete_snapshot(&self, entry: &SnapshotEntry) -> Result<bool, CatalogError> {
        let location = self.origin_of(&self.index(), entry)?;
        let existed = location.snapshots.delete_snapshot(&entry.name).await?;
        location.state().snapshots.remove(&entry.name);
        self.rebuild_index();
        Ok(existed)
    }

    /// Rebuilds the merged index from every location's state and swaps it in.
    fn rebuild_index(&self) {
        let _guard = self.rebuild.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = self.index();
        let hidden = self.hidden.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut index = Index {
            generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
            ..Index::default()
        };
        for location in self.locations() {
            let scopes = location.scopes();
            let state = location.state();
            for scope in &scopes {
                for (id, cached) in &state.snapshots {
                    let source_ns = cached
                        .summary
                        .source
                        .as_ref()
                        .and_then(|s| s.namespace.as_deref());
                    let key = (scope.namespace_of(source_ns).to_owned(), id.clone());
                    if index.snapshots.contains_key(&key) || hidden.contains(&key) {
                        continue;
                    }
                    index.snapshot_origin.insert(key.clone(), Arc::clone(&location));
                    // Unchanged objects keep their rendered JSON from the previous index.
                    let entry = match previous.snapshots.get(&key) {
                        Some(old) if Arc::ptr_eq(&old.summary, &cached.summary) => old.clone(),
                        _ => snapshot_entry(key.0.clone(), key.1.clone(), Arc::clone(&cached.summary)),
                    };
                    index.snapshots.insert(key, entry);
                }
                for (id, cached) in &state.backup_sets {
                    let source_ns = cached
                        .summary
                        .source
                        .as_ref()
                        .and_then(|s| s.namespace.as_deref());
                    let key = (scope.namespace_of(source_ns).to_owned(), id.clone());
                    if index.backup_sets.contains_key(&key) {
                        continue;
                    }
                    let entry = match previous.backup_sets.get(&key) {
                        Some(old) if Arc::ptr_eq(&old.summary, &cached.summary) => old.clone(),
                        _ => backup_set_entry(key.0.clone(), key.1.clone(), Arc::clone(&cached.summary)),
                    };
                    index.backup_sets.insert(key, entry);
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.set_objects(Resource::OffsetSnapshots, index.snapshots.len());
            metrics.set_objects(Resource::BackupSets, index.backup_sets.len());
        }
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
    }
}

/// The directory of a location on local disk (PVC, `--catalog-dir`).
fn local_dir_of(location: &Location) -> Option<PathBuf> {
    match location {
        Location::Object(object) => object.local_dir().map(Path::to_path_buf),
        Location::ConfigMap(_) => None,
    }
}

/// What a listing changes in a cached set: ids to read, ids to drop.
fn plan<T>(
    cached: &HashMap<String, Cached<T>>,
    listed: &[Listed],
    since_epoch: u64,
) -> (Vec<Listed>, Vec<String>) {
    let to_read = listed
        .iter()
        .filter(|l| {
            cached
                .get(&l.id)
                .is_none_or(|c| c.version != l.version && c.recorded == 0)
        })
        .cloned()
        .collect();
    let to_drop = cached
        .iter()
        .filter(|(id, c)| c.recorded <= since_epoch && !listed.iter().any(|l| &l.id == *id))
        .map(|(id, _)| id.clone())
        .collect();
    (to_read, to_drop)
}

/// Refreshes one location: (objects read, objects dropped).
async fn refresh_location(location: &CatalogLocation) -> Result<(usize, usize), SourceError> {
    let since = location.epoch.load(Ordering::SeqCst);
    let listed_snapshots = location.snapshots.list_snapshots().await?;
    let listed_backups = location.backups.list_backup_sets().await?;
    let (snapshots_to_read, snapshots_to_drop, backups_to_read, backups_to_drop) = {
        let state = location.state();
        let (sr, sd) = plan(&state.snapshots, &listed_snapshots, since);
        let (br, bd) = plan(&state.backup_sets, &listed_backups, since);
        (sr, sd, br, bd)
    };
    let read = snapshots_to_read.len() + backups_to_read.len();
    let removed = snapshots_to_drop.len() + backups_to_drop.len();

    let store = &location.snapshots;
    let snapshots: Vec<_> = futures::stream::iter(snapshots_to_read)
        .map(|listed| async move {
            let result = store.read_snapshot(&listed.id).await;
            (listed, result)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    let backups_source = &location.backups;
    let backups: Vec<_> = futures::stream::iter(backups_to_read)
        .map(|listed| async move {
            let result = backups_source.read_backup_set(&listed.id).await;
            (listed, result)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;

    let mut state = location.state();
    for id in snapshots_to_drop {
        state.snapshots.remove(&id);
    }
    for id in backups_to_drop {
        state.backup_sets.remove(&id);
    }
    for (listed, result) in snapshots {
        match result {
            Ok(Some(stored)) => {
                let uri = stored.uri;
                state.snapshots.insert(
                    listed.id,
                    Cached {
                        version: listed.version,
                        summary: Arc::new(SnapshotSummary::of(&stored.snapshot, &uri, stored.size)),
                        recorded: 0,
                    },
                );
            }
            Ok(None) => {
                state.snapshots.remove(&listed.id);
            }
            // One bad document does not hide the others: it is skipped and reported.
            Err(e) => warn!(snapshot = %listed.id, error = %e, "skipping unreadable offset snapshot"),
        }
    }
    for (listed, result) in backups {
        match result {
            Ok(Some(summary)) => {
                state.backup_sets.insert(
                    listed.id,
                    Cached {
                        version: listed.version,
                        summary: Arc::new(summary),
                        recorded: 0,
                    },
                );
            }
            Ok(None) => {
                state.backup_sets.remove(&listed.id);
            }
            Err(e) => warn!(backup = %listed.id, error = %e, "skipping unreadable backup manifest"),
        }
    }
    Ok((read, removed))
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::{
        ObjectLocation,
        snapshot::{GroupOffsets, PartitionOffset, SnapshotSource, snapshot_key},
    };

    pub(in crate::apiserver) fn snapshot(id: &str, source_ns: Option<&str>) -> OffsetSnapshot {
        let mut groups = BTreeMap::new();
        let mut topics = BTreeMap::new();
        topics.insert(
            "orders".to_owned(),
            BTreeMap::from([(
                0,
                PartitionOffset {
                    offset: 10,
                    metadata: String::new(),
                    timestamp: 1,
                },
            )]),
        );
        groups.insert("g".to_owned(), GroupOffsets { topics });
        OffsetSnapshot {
            snapshot_id: id.to_owned(),
            timestamp: chrono::Utc::now(),
            cluster: "kafka:9092".into(),
            groups,
            source: source_ns.map(|ns| SnapshotSource {
                kind: "KafkaOffsetRollback".into(),
                namespace: Some(ns.into()),
                name: "r".into(),
                uid: None,
            }),
            expires_at: None,
        }
    }

    fn dir_location(dir: &std::path::Path) -> Location {
        ObjectLocation::directory(dir, format!("file://{}", dir.display()))
            .unwrap()
            .into()
    }

    #[tokio::test]
    async fn refresh_reads_only_new_objects_and_drops_deleted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir_location(dir.path());
        for id in ["a", "b"] {
            location
                .put_new(&snapshot_key(id), snapshot(id, None).to_bytes())
                .await
                .unwrap();
        }
        let catalog = Catalog::default();
        catalog.add_storage(
            Scope::Default {
                namespace: "default".into(),
            },
            location.clone(),
        );
        assert_eq!(catalog.problems(Some("default")).len(), 1, "not listed yet");
        catalog.refresh().await;
        assert!(catalog.problems(Some("default")).is_empty());
        let names: Vec<_> = catalog
            .index()
            .snapshots_in(Some("default"), None)
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);

        // Unchanged objects are not read again: a corrupted-in-place file keeps its summary only
        // if its version is unchanged, so check through the plan instead.
        let state = catalog.locations()[0].state().snapshots.clone();
        let listed = catalog.locations()[0].snapshots.list_snapshots().await.unwrap();
        let (to_read, to_drop) = plan(&state, &listed, 0);
        assert!(to_read.is_empty() && to_drop.is_empty());

        location.delete(&snapshot_key("a")).await.unwrap();
        location
            .put_new(&snapshot_key("c"), snapshot("c", Some("team-a")).to_bytes())
            .await
            .unwrap();
        catalog.refresh().await;
        let index = catalog.index();
        let all: Vec<_> = index
            .snapshots_in(None, None)
            .map(|e| (e.namespace.as_str(), e.name.as_str()))
            .collect();
        assert_eq!(all, [("default", "b"), ("team-a", "c")]);
        let after: Vec<_> = index
            .snapshots_in(None, Some(("default", "b")))
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(after, ["c"]);
    }

    #[tokio::test]
    async fn recorded_snapshots_appear_at_once_and_survive_a_stale_listing() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir_location(dir.path());
        let catalog = Catalog::default();
        catalog.add_storage(Scope::Namespace("team-a".into()), location.clone());
        catalog.refresh().await;
        let listed_before = catalog.locations()[0].snapshots.list_snapshots().await.unwrap();
        let since = catalog.locations()[0].epoch.load(Ordering::SeqCst);

        let s = snapshot("fresh", Some("team-a"));
        location
            .put_new(&snapshot_key("fresh"), s.to_bytes())
            .await
            .unwrap();
        catalog.record_snapshot("team-a", &location, &s);
        assert_eq!(catalog.index().snapshots.len(), 1);
        // A listing taken before the write must not drop it.
        let state = catalog.locations()[0].state().snapshots.clone();
        let (_, to_drop) = plan(&state, &listed_before, since);
        assert!(to_drop.is_empty());

        // Another namespace naming a new location: it becomes known to that namespace.
        let other_dir = tempfile::tempdir().unwrap();
        let other = dir_location(other_dir.path());
        catalog.record_snapshot("team-b", &other, &snapshot("x", None));
        let index = catalog.index();
        assert_eq!(index.snapshots_in(Some("team-b"), None).count(), 1);
        assert_eq!(catalog.locations().len(), 2);
    }

    #[tokio::test]
    async fn one_location_named_by_two_namespaces_is_listed_in_both() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir_location(dir.path());
        location
            .put_new(&snapshot_key("s"), snapshot("s", None).to_bytes())
            .await
            .unwrap();
        let catalog = Catalog::default();
        catalog.set_namespace_locations("a", vec![location.clone()]);
        catalog.set_namespace_locations("b", vec![location.clone()]);
        assert_eq!(catalog.locations().len(), 1);
        catalog.refresh().await;
        assert_eq!(catalog.index().snapshots.len(), 2);
        catalog.set_namespace_locations("a", vec![]);
        assert_eq!(catalog.index().snapshots.len(), 1);
        catalog.set_namespace_locations("b", vec![]);
        assert!(catalog.locations().is_empty());
    }

    #[tokio::test]
    async fn resources_of_a_namespace_do_not_drop_its_configured_locations() {
        let configured_dir = tempfile::tempdir().unwrap();
        let named_dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::default();
        catalog.add_storage(Scope::Namespace("a".into()), dir_location(configured_dir.path()));
        catalog.set_namespace_locations("a", vec![dir_location(named_dir.path())]);
        assert_eq!(catalog.locations().len(), 2);
        assert_eq!(
            catalog.namespaces_with_locations(),
            BTreeSet::from(["a".to_owned()])
        );
        catalog.set_namespace_locations("a", vec![]);
        assert_eq!(catalog.locations().len(), 1);
        assert_eq!(
            catalog.locations()[0].scopes(),
            vec![Scope::Namespace("a".into())]
        );
        assert!(catalog.namespaces_with_locations().is_empty());
    }

    #[tokio::test]
    async fn expired_snapshots_are_deleted_by_the_next_refresh_and_others_never() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir_location(dir.path());
        let now = chrono::Utc::now();
        let mut expired = snapshot("expired", Some("team-a"));
        expired.expires_at = Some(now - chrono::Duration::seconds(1));
        let mut later = snapshot("later", Some("team-a"));
        later.expires_at = Some(now + chrono::Duration::hours(1));
        let kept = snapshot("kept", Some("team-a"));
        for s in [&expired, &later, &kept] {
            location
                .put_new(&snapshot_key(&s.snapshot_id), s.to_bytes())
                .await
                .unwrap();
        }
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = ApiServerMetrics::register(&mut registry);
        let catalog = Catalog::new(Some(metrics));
        catalog.add_storage(Scope::Namespace("team-a".into()), location.clone());
        catalog.refresh().await;
        assert_eq!(location.get(&snapshot_key("expired")).await.unwrap(), None);
        let names: Vec<_> = catalog
            .index()
            .snapshots_in(Some("team-a"), None)
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, ["kept", "later"]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("catalog_snapshots_expired_total 1"), "{text}");

        // One recorded by the operator (no listing in between) expires the same way; one without
        // an expiry is never deleted.
        let mut recorded = snapshot("recorded", Some("team-a"));
        recorded.expires_at = Some(now - chrono::Duration::hours(1));
        location
            .put_new(&snapshot_key("recorded"), recorded.to_bytes())
            .await
            .unwrap();
        catalog.record_snapshot("team-a", &location, &recorded);
        catalog.refresh().await;
        catalog.refresh().await;
        assert_eq!(location.get(&snapshot_key("recorded")).await.unwrap(), None);
        assert!(location.get(&snapshot_key("kept")).await.unwrap().is_some());
        assert!(location.get(&snapshot_key("later")).await.unwrap().is_some());
        assert_eq!(catalog.index().snapshots.len(), 2);
    }

    #[tokio::test]
    async fn a_location_first_met_in_what_was_written_is_listed_before_a_list_answers() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir_location(dir.path());
        for id in ["older", "written"] {
            location
                .put_new(&snapshot_key(id), snapshot(id, Some("team-a")).to_bytes())
                .await
                .unwrap();
        }
        let catalog = Catalog::default();
        // As the reconciler's hook does: the location becomes known, the written snapshot recorded.
        catalog.add_storage(Scope::Resources("team-a".into()), location.clone());
        catalog.record_snapshot("team-a", &location, &snapshot("written", Some("team-a")));
        assert_eq!(catalog.index().snapshots.len(), 1);
        assert_eq!(catalog.problems(Some("team-a")).len(), 1, "not listed yet");
        // Another namespace's list does not wait for it.
        catalog.ensure_listed(Some("team-b")).await;
        assert_eq!(catalog.problems(Some("team-a")).len(), 1);
        catalog.ensure_listed(Some("team-a")).await;
        assert!(catalog.problems(Some("team-a")).is_empty());
        assert_eq!(catalog.index().snapshots.len(), 2, "everything it holds");
    }

    /// A catalog listing one location of namespace `ns` that holds snapshot `s`: (its directory,
    /// the location, the catalog, the entry of `s`).
    async fn one_snapshot() -> (tempfile::TempDir, Location, Catalog, SnapshotEntry) {
        let dir = tempfile::tempdir().unwrap();
        let location = dir_location(dir.path());
        location
            .put_new(&snapshot_key("s"), snapshot("s", None).to_bytes())
            .await
            .unwrap();
        let catalog = Catalog::default();
        catalog.add_storage(Scope::Namespace("ns".into()), location.clone());
        catalog.refresh().await;
        let entry = catalog.index().snapshots[&("ns".to_owned(), "s".to_owned())].clone();
        (dir, location, catalog, entry)
    }

    #[tokio::test]
    async fn hidden_snapshots_leave_the_index_and_stay_in_storage() {
        let (_dir, location, catalog, entry) = one_snapshot().await;
        catalog.hide_snapshot(&entry);
        assert!(catalog.index().snapshots.is_empty());
        catalog.refresh().await;
        assert!(
            catalog.index().snapshots.is_empty(),
            "a refresh does not bring it back"
        );
        assert!(location.get(&snapshot_key("s")).await.unwrap().is_some());
        // A new process (the catalog rebuilt from storage) shows it again.
        let rebuilt = Catalog::default();
        rebuilt.add_storage(Scope::Namespace("ns".into()), location.clone());
        rebuilt.refresh().await;
        assert_eq!(rebuilt.index().snapshots.len(), 1);
    }

    #[tokio::test]
    async fn get_and_delete_go_to_storage() {
        let (_dir, location, catalog, entry) = one_snapshot().await;
        let full = catalog.read_snapshot(&entry).await.unwrap().unwrap();
        assert_eq!(full.groups["g"].topics["orders"][&0].offset, 10);
        assert!(catalog.delete_snapshot(&entry).await.unwrap());
        assert!(catalog.index().snapshots.is_empty());
        assert_eq!(location.get(&snapshot_key("s")).await.unwrap(), None);
    }

    /// What a KafkaOffsetRollback naming a snapshot by id alone finds: the locations of its
    /// namespace holding the id, read from storage (no refresh needed); in the default location
    /// only the snapshots listed in that namespace.
    #[tokio::test]
    async fn a_snapshot_id_is_found_in_the_locations_of_the_namespace() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let [team, shared, default] = [0, 1, 2].map(|i| dir_location(dirs[i].path()));
        let write = |location: &Location, id: &str, ns: Option<&str>| {
            let location = location.clone();
            let bytes = snapshot(id, ns).to_bytes();
            let key = snapshot_key(id);
            async move { location.put_new(&key, bytes).await.unwrap() }
        };
        write(&team, "only-team", None).await;
        write(&team, "twice", None).await;
        write(&shared, "twice", None).await;
        write(&default, "team-b-own", Some("team-b")).await;
        write(&default, "team-a-own", Some("team-a")).await;
        let catalog = Catalog::default();
        catalog.add_storage(Scope::Namespace("team-a".into()), team.clone());
        catalog.add_storage(Scope::Resources("team-a".into()), shared.clone());
        catalog.add_storage(
            Scope::Default {
                namespace: "default".into(),
            },
            default.clone(),
        );
        let uris = |search: &SnapshotSearch| -> Vec<String> {
            search.found.iter().map(sources::location_uri).collect()
        };

        let found = catalog.find_snapshot("team-a", "only-team").await;
        assert_eq!(uris(&found), [sources::location_uri(&team)]);
        assert_eq!(found.searched.len(), 3, "{:?}", found.searched);
        let found = catalog.find_snapshot("team-a", "twice").await;
        assert_eq!(
            uris(&found),
            [sources::location_uri(&team), sources::location_uri(&shared)]
        );
        let found = catalog.find_snapshot("team-a", "team-a-own").await;
        assert_eq!(uris(&found), [sources::location_uri(&default)]);
        // Another namespace's snapshot in the default location is not found, and says why.
        let found = catalog.find_snapshot("team-a", "team-b-own").await;
        assert!(found.found.is_empty());
        assert!(
            found
                .searched
                .iter()
                .any(|s| s.ends_with("team-b-own.json (belongs to another namespace)")),
            "{:?}",
            found.searched
        );
        // Team b sees only the default location.
        let found = catalog.find_snapshot("team-b", "team-b-own").await;
        assert_eq!(uris(&found), [sources::location_uri(&default)]);
        assert_eq!(found.searched.len(), 1);
        let found = catalog.find_snapshot("team-b", "only-team").await;
        assert!(found.found.is_empty());
        assert_eq!(found.searched, [default.uri(&snapshot_key("only-team"))]);
    }
}
