//! The local ConfigMap store of `run -f`: a directory standing for the ConfigMaps of a cluster
//! (`--configmaps-dir DIR`, default `<state-dir>/configmaps`). ConfigMap `N`'s key `K` is the file
//! `DIR/N/K`, holding the key's value as is; there are no namespaces, as with `--secrets-dir`.
//!
//! Every write is atomic and durable: the value goes to a temporary file in `DIR/.tmp` (no
//! ConfigMap name starts with a dot), is fsynced, and only then gets its name, by a hard link for
//! a create-only key (which fails when the key exists, so two writers cannot both create it) or a
//! rename for a key a ConfigMap document sets. A reader never sees a half-written value, and a
//! crash leaves at most a stray file in `DIR/.tmp`.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;

use super::{ATTEMPTS, check_new_key, check_size, data_size, is_configmap_key, is_dns_subdomain, text_of};
use crate::storage::{ObjectInfo, StorageError};

/// Directory of temporary files, next to the ConfigMaps' directories.
const TEMP_DIR: &str = ".tmp";

/// Tells temporary files of one process apart.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One ConfigMap of the local store.
#[derive(Clone, Debug)]
pub struct LocalConfigMap {
    root: PathBuf,
    name: String,
}

impl LocalConfigMap {
    /// ConfigMap `name` of the store at `root`; the name must be a ConfigMap name (it becomes a
    /// directory).
    pub fn new(root: &Path, name: &str) -> Result<Self, StorageError> {
        if !is_dns_subdomain(name) {
            return Err(StorageError::Invalid(format!(
                "{name:?} is not a ConfigMap name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
            )));
        }
        Ok(LocalConfigMap {
            root: root.to_owned(),
            name: name.to_owned(),
        })
    }

    fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// The file of `key`.
    pub fn file(&self, key: &str) -> PathBuf {
        self.dir().join(key)
    }

    /// Where a missing key was looked for, as " in <place> (...)".
    pub(super) fn missing(&self, key: &str) -> String {
        let dir = self.dir();
        let what = if dir.is_dir() {
            format!("no file {}", self.file(key).display())
        } else {
            format!(
                "no directory {}: a ConfigMap document in the manifest of run -f puts it there",
                dir.display()
            )
        };
        format!(" in the local ConfigMap store {} ({what})", self.root.display())
    }

    fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.to_owned();
        move |source| StorageError::LocalFile {
            operation,
            path,
            source,
        }
    }

    /// The ConfigMap's data; empty when it does not exist.
    fn data(&self) -> Result<BTreeMap<String, String>, StorageError> {
        let dir = self.dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(Self::io_error("list", &dir)(e)),
        };
        let mut data = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(Self::io_error("list", &dir))?;
            let Some(key) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_configmap_key(&key) || !entry.path().is_file() {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(Self::io_error("read", &entry.path()))?;
            data.insert(
                key.clone(),
                text_of(&bytes, || entry.path().display().to_string())?,
            );
        }
        Ok(data)
    }

    /// A new temporary file holding `value`, fsynced.
    fn temp_file(&self, key: &str, value: &str) -> Result<PathBuf, StorageError> {
        let temp_dir = self.root.join(TEMP_DIR);
        std::fs::create_dir_all(&temp_dir).map_err(Self::io_error("write", &temp_dir))?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = temp_dir.join(format!("{}.{key}.{}.{n}", self.name, std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create_new(&path)?;
            file.write_all(value.as_bytes())?;
            file.sync_all()
        };
        write().map_err(Self::io_error("write", &path))?;
        Ok(path)
    }

    /// Makes the names written in the ConfigMap's directory durable.
    fn sync_dir(&self) -> Result<(), StorageError> {
        let dir = self.dir();
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(Self::io_error("write", &dir))
    }

    /// Adds `key` = `value`; fails when the key exists or the ConfigMap would exceed 1 MiB.
    pub(super) fn put_new(&self, key: &str, value: &str, uri: &str) -> Result<(), StorageError> {
        check_key(key, uri)?;
        check_new_key(&self.name, &self.data()?, key, value, uri)?;
        let temp = self.temp_file(key, value)?;
        let target = self.file(key);
        let mut linked = Ok(());
        for _ in 0..ATTEMPTS {
            std::fs::create_dir_all(self.dir()).map_err(Self::io_error("write", &self.dir()))?;
            linked = std::fs::hard_link(&temp, &target);
            // The directory went with the ConfigMap's last key meanwhile: make it again.
            if !matches!(&linked, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
                break;
            }
        }
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists { uri: uri.into() })
            }
            Err(e) => Err(Self::io_error("write", &target)(e)),
        }
    }

    /// Reads `key`; `None` when the ConfigMap or the key does not exist.
    pub(super) fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        if !is_configmap_key(key) {
            return Ok(None);
        }
        let file = self.file(key);
        match std::fs::read(&file) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io_error("read", &file)(e)),
        }
    }

    /// Removes `key`; `false` when it did not exist. The ConfigMap goes with its last key.
    pub(super) fn delete(&self, key: &str) -> Result<bool, StorageError> {
        if !is_configmap_key(key) {
            return Ok(false);
        }
        let file = self.file(key);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Self::io_error("delete", &file)(e)),
        }
        self.sync_dir()?;
        // Fails while another key is there (or was just added), which is what should happen.
        let _ = std::fs::remove_dir(self.dir());
        Ok(true)
    }

    /// Every key with its size and its file's modification time.
    pub(super) fn list(&self) -> Result<Vec<ObjectInfo>, StorageError> {
        let data = self.data()?;
        let mut listed = Vec::with_capacity(data.len());
        for (key, value) in data {
            let file = self.file(&key);
            let modified = std::fs::metadata(&file)
                .and_then(|m| m.modified())
                .map_err(Self::io_error("list", &file))?;
            listed.push(ObjectInfo {
                size: value.len() as u64,
                key,
                last_modified: modified.into(),
            });
        }
        Ok(listed)
    }

    /// Sets the keys of `data` (as applying a ConfigMap document does: each key's value is
    /// replaced, keys not in `data` stay); fails before writing anything when a key is not a
    /// ConfigMap key or the ConfigMap would exceed 1 MiB. Returns the ConfigMap's directory.
    pub fn apply(&self, data: &BTreeMap<String, String>) -> Result<PathBuf, StorageError> {
        let uri = |key: &str| format!("configmap://{}/{key}", self.name);
        for key in data.keys() {
            check_key(key, &uri(key))?;
        }
        let mut after = self.data()?;
        after.extend(data.clone());
        if let Some((key, value)) = data.iter().max_by_key(|(_, v)| v.len()) {
            check_size(&self.name, data_size(&after), value.len(), &uri(key))?;
        }
        std::fs::create_dir_all(self.dir()).map_err(Self::io_error("write", &self.dir()))?;
        for (key, value) in data {
            let temp = self.temp_file(key, value)?;
            let target = self.file(key);
            if let Err(e) = std::fs::rename(&temp, &target) {
                let _ = std::fs::remove_file(&temp);
                return Err(Self::io_error("write", &target)(e));
            }
        }
        self.sync_dir()?;
        Ok(self.dir())
    }
}

fn check_key(key: &str, uri: &str) -> Result<(), StorageError> {
    if is_configmap_key(key) {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "{uri}: {key:?} is not a ConfigMap key (letters, digits, '-', '_' and '.')"
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::configmap::{ConfigMapLocation, ConfigMapStore};

    fn location(root: &Path, name: &str) -> ConfigMapLocation {
        ConfigMapLocation::new(name, &ConfigMapStore::Dir(root.to_owned())).unwrap()
    }

    #[tokio::test]
    async fn keys_round_trip_as_in_a_cluster_and_are_never_overwritten() {
        let root = tempfile::tempdir().unwrap();
        let store = location(root.path(), "offset-snapshots");
        // The cluster store's keys: the last path segment.
        assert_eq!(
            store.uri("offset-snapshots/s1.json"),
            "configmap://offset-snapshots/s1.json"
        );
        store
            .put_new("offset-snapshots/s1.json", Bytes::from_static(b"{\"a\":1}"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.path().join("offset-snapshots/s1.json")).unwrap(),
            "{\"a\":1}"
        );
        assert_eq!(
            store.get("offset-snapshots/s1.json").await.unwrap().unwrap(),
            "{\"a\":1}"
        );
        let again = store
            .put_new("offset-snapshots/s1.json", Bytes::from_static(b"{\"a\":2}"))
            .await;
        assert!(
            matches!(again, Err(StorageError::AlreadyExists { .. })),
            "{again:?}"
        );
        assert_eq!(store.get("s1.json").await.unwrap().unwrap(), "{\"a\":1}");
        store.put_new("s2.json", Bytes::from_static(b"{}")).await.unwrap();
        let keys: Vec<String> = store.list().await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["s1.json", "s2.json"]);
        // Another process sees the same (a fresh location on the same directory).
        let other = location(root.path(), "offset-snapshots");
        assert_eq!(other.get("s2.json").await.unwrap().unwrap(), "{}");
        assert!(other.delete("s1.json").await.unwrap());
        assert!(!other.delete("s1.json").await.unwrap());
        assert_eq!(store.get("s1.json").await.unwrap(), None);
        // The ConfigMap goes with its last key, as in a cluster.
        assert!(store.delete("s2.json").await.unwrap());
        assert!(!root.path().join("offset-snapshots").exists());
        assert!(store.list().await.unwrap().is_empty());
        // Non-text values are refused, as ConfigMap data holds text.
        let e = store.put_new("bin", Bytes::from_static(&[0xff, 0xfe])).await;
        assert!(matches!(e, Err(StorageError::NotText { .. })), "{e:?}");
    }

    #[tokio::test]
    async fn writes_are_atomic_and_leave_no_partial_key() {
        let root = tempfile::tempdir().unwrap();
        let store = location(root.path(), "snaps");
        // A crash between writing and naming leaves a temporary file: never a key.
        let local = LocalConfigMap::new(root.path(), "snaps").unwrap();
        let temp = local.temp_file("half.json", "{\"trunc").unwrap();
        assert!(temp.starts_with(root.path().join(TEMP_DIR)));
        assert!(store.list().await.unwrap().is_empty());
        assert_eq!(store.get("half.json").await.unwrap(), None);
        // Concurrent creators of one key: exactly one wins, the value is whole.
        let value = "x".repeat(100_000);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let local = local.clone();
                    let value = format!("{i}{value}");
                    s.spawn(move || local.put_new("k.json", &value, "configmap://snaps/k.json"))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        let stored = store.get("k.json").await.unwrap().unwrap();
        assert_eq!(stored.len(), 100_001);
        assert!(stored[1..].iter().all(|b| *b == b'x'));
        // Only the crash's leftover stays among the temporary files.
        assert_eq!(std::fs::read_dir(root.path().join(TEMP_DIR)).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_missing_key_or_configmap_is_named_with_where_it_was_looked_for() {
        let root = tempfile::tempdir().unwrap();
        let store = location(root.path(), "offset-mapping");
        let e = store.get_required("mapping.json").await.unwrap_err().to_string();
        let dir = root.path().join("offset-mapping");
        assert!(
            e.starts_with("ConfigMap offset-mapping has no key mapping.json in the local ConfigMap store"),
            "{e}"
        );
        assert!(e.contains(&format!("no directory {}", dir.display())), "{e}");
        let local = LocalConfigMap::new(root.path(), "offset-mapping").unwrap();
        local
            .apply(&BTreeMap::from([("other.json".to_owned(), "{}".to_owned())]))
            .unwrap();
        let e = store.get_required("mapping.json").await.unwrap_err().to_string();
        assert!(
            e.contains(&format!("no file {}", dir.join("mapping.json").display())),
            "{e}"
        );
        assert!(
            store
                .looked_at("mapping.json")
                .contains(&dir.join("mapping.json").display().to_string())
        );
    }

    #[test]
    fn applying_a_document_sets_its_keys_and_keeps_the_others() {
        let root = tempfile::tempdir().unwrap();
        let local = LocalConfigMap::new(root.path(), "m").unwrap();
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        local.apply(&data(&[("a", "1"), ("b", "2")])).unwrap();
        local.apply(&data(&[("b", "3")])).unwrap();
        assert_eq!(local.data().unwrap(), data(&[("a", "1"), ("b", "3")]));
        // Checked before anything is written.
        let e = local
            .apply(&data(&[("c", "4"), ("../x", "5")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"../x\" is not a ConfigMap key"), "{e}");
        assert_eq!(local.data().unwrap().len(), 2);
        let big = "y".repeat(super::super::CONFIGMAP_LIMIT);
        let e = local.apply(&data(&[("big", &big)])).unwrap_err();
        assert!(matches!(e, StorageError::TooLarge { .. }), "{e:?}");
        assert_eq!(local.data().unwrap().len(), 2);
        // Names become directories: only ConfigMap names.
        for name in ["..", "a/b", ".tmp", "Upper", ""] {
            assert!(LocalConfigMap::new(root.path(), name).is_err(), "{name}");
        }
    }
}
