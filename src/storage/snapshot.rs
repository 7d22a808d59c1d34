//! Consumer offset snapshots: the JSON document KafkaOffsetRollback (operation Snapshot) and the
//! pre-change snapshots of KafkaOffsetReset and KafkaRestore write, stored create-only as
//! `offset-snapshots/<snapshotId>.json` below the storage prefix (a ConfigMap key
//! `<snapshotId>.json`).
//!
//! The document is the seed's format, with partition numbers as keys, plus who took it:
//!
//! ```json
//! {
//!   "snapshotId": "pre-migration-20241201",
//!   "timestamp": "2024-12-01T12:00:00Z",
//!   "cluster": "kafka:9092",
//!   "groups": {
//!     "order-processor": {
//!       "topics": {
//!         "orders": {"0": {"offset": 1000, "metadata": "", "timestamp": 1701432000000}}
//!       }
//!     }
//!   },
//!   "source": {"kind": "KafkaOffsetReset", "namespace": "kafka", "name": "r", "uid": "..."},
//!   "expiresAt": "2024-12-02T12:00:00Z"
//! }
//! ```
//!
//! `timestamp` per partition is when the offset was read (epoch milliseconds). `expiresAt` is
//! optional: written by whoever takes a snapshot with a retention (KafkaRestore
//! `snapshotBeforeRestore.retentionHours`), absent means kept until deleted; the catalog of
//! `serve` deletes a snapshot at its first refresh after that time ([`crate::apiserver::catalog`]).
//! Documents without it (every older one) read as before.
//!
//! Snapshots of the prior art (kafka-backup 0.x `offset-rollback snapshot`) are read too, never
//! written: its `snapshot.json` document wherever this operator's would be (`<id>.json`, also in a
//! ConfigMap) and its own layout `offset-snapshots/<id>/snapshot.json` + `metadata.json` in object
//! storage ([`read_snapshot`], [`super::prior_art`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Location, StorageError, prior_art};
use crate::kafka::groups::{Committed, Partition};

/// Directory of snapshots below a storage prefix.
pub const SNAPSHOT_DIR: &str = "offset-snapshots";

/// The storage key of a snapshot.
pub fn snapshot_key(snapshot_id: &str) -> String {
    format!("{SNAPSHOT_DIR}/{snapshot_id}.json")
}

/// The snapshot id a storage key (relative to [`SNAPSHOT_DIR`]) stands for.
pub fn snapshot_id_of(key: &str) -> Option<&str> {
    key.strip_suffix(".json")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// A stored snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetSnapshot {
    /// Its id.
    pub snapshot_id: String,
    /// When the offsets were captured.
    pub timestamp: DateTime<Utc>,
    /// The cluster the offsets belong to (its bootstrap servers).
    pub cluster: String,
    /// Committed offsets per group.
    pub groups: BTreeMap<String, GroupOffsets>,
    /// The resource that took the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SnapshotSource>,
    /// When the snapshot may be deleted (its retention ends); `None`: kept until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The committed offsets of one group.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct GroupOffsets {
    /// Per topic, per partition.
    pub topics: BTreeMap<String, BTreeMap<i32, PartitionOffset>>,
}

/// One committed offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOffset {
    /// The committed offset.
    pub offset: i64,
    /// Its metadata string.
    #[serde(default)]
    pub metadata: String,
    /// When it was read (epoch milliseconds).
    pub timestamp: i64,
}

/// The resource that took a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSource {
    /// KafkaOffsetRollback, KafkaOffsetReset or KafkaRestore.
    pub kind: String,
    /// Its namespace (absent with `run -f`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Its uid (absent with `run -f`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Why a stored snapshot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot document.
    #[error("{uri} is not a valid offset snapshot: {source}")]
    Parse {
        /// Where it was read.
        uri: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A snapshot of the prior art is not what its format says.
    #[error("{uri}: {message}")]
    PriorArt {
        /// Where it was read.
        uri: String,
        /// Why.
        message: String,
    },
    /// The document names another id than its key.
    #[error("{uri} holds snapshot {found}, not {expected}")]
    WrongId {
        /// Where it was read.
        uri: String,
        /// The id asked for.
        expected: String,
        /// The id inside.
        found: String,
    },
}

impl OffsetSnapshot {
    /// Parses a stored snapshot (this operator's document or the prior art's `snapshot.json`) and
    /// checks it is the one asked for.
    pub fn parse(bytes: &[u8], expected_id: &str, uri: &str) -> Result<Self, SnapshotError> {
        let snapshot: OffsetSnapshot = match serde_json::from_slice(bytes) {
            Ok(s) => s,
            Err(source) => {
                let prior_art = serde_json::from_slice::<serde_json::Value>(bytes)
                    .is_ok_and(|v| prior_art::is_offset_snapshot(&v));
                if !prior_art {
                    return Err(SnapshotError::Parse {
                        uri: uri.into(),
                        source,
                    });
                }
                return prior_art::parse_offset_snapshot(bytes, expected_id, None).map_err(|e| {
                    SnapshotError::PriorArt {
                        uri: uri.into(),
                        message: e.to_string(),
                    }
                });
            }
        };
        if snapshot.snapshot_id != expected_id {
            return Err(SnapshotError::WrongId {
                uri: uri.into(),
                expected: expected_id.into(),
                found: snapshot.snapshot_id,
            });
        }
        Ok(snapshot)
    }

    /// The document as stored (pretty JSON, stable key order).
    pub fn to_bytes(&self) -> Bytes {
        // Serializing plain maps, strings and numbers cannot fail.
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }

    /// Partitions with an offset, over all groups.
    pub fn partition_count(&self) -> usize {
        self.groups
            .values()
            .map(|g| g.topics.values().map(BTreeMap::len).sum::<usize>())
            .sum()
    }

    /// Records the committed offsets of a group.
    pub fn insert_group(&mut self, group: &str, offsets: &BTreeMap<Partition, Committed>, read_at: i64) {
        let entry = self.groups.entry(group.to_owned()).or_default();
        for ((topic, partition), committed) in offsets {
            entry.topics.entry(topic.clone()).or_default().insert(
                *partition,
                PartitionOffset {
                    offset: committed.offset,
                    metadata: committed.metadata.clone(),
                    timestamp: read_at,
                },
            );
        }
    }
}

/// A snapshot as stored: the document in this operator's form, its key and size, and whether
/// the prior art wrote it (then it is read only).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSnapshot {
    /// The offsets.
    pub snapshot: OffsetSnapshot,
    /// Key of the document.
    pub key: String,
    /// Its URI.
    pub uri: String,
    /// Size of the document.
    pub size: u64,
    /// Written by kafka-backup 0.x.
    pub prior_art: bool,
}

/// Reads snapshot `id` in either format: `offset-snapshots/<id>.json` (a ConfigMap's key
/// `<id>.json`), then, in object storage, the prior art's `offset-snapshots/<id>/snapshot.json`
/// checked against its `metadata.json`. `None` when neither exists.
pub async fn read_snapshot(location: &Location, id: &str) -> Result<Option<StoredSnapshot>, SnapshotError> {
    let key = snapshot_key(id);
    if let Some(bytes) = location.get(&key).await? {
        let snapshot = OffsetSnapshot::parse(&bytes, id, &location.uri(&key))?;
        return Ok(Some(StoredSnapshot {
            prior_art: snapshot
                .source
                .as_ref()
                .is_some_and(prior_art::is_snapshot_source),
            snapshot,
            uri: location.uri(&key),
            key,
            size: bytes.len() as u64,
        }));
    }
    if !matches!(location, Location::Object(_)) {
        return Ok(None);
    }
    let key = prior_art::snapshot_key(id);
    let Some(bytes) = location.get(&key).await? else {
        return Ok(None);
    };
    let metadata = location.get(&prior_art::snapshot_metadata_key(id)).await?;
    let snapshot = prior_art::parse_offset_snapshot(&bytes, id, metadata.as_deref()).map_err(|e| {
        SnapshotError::PriorArt {
            uri: location.uri(&key),
            message: e.to_string(),
        }
    })?;
    Ok(Some(StoredSnapshot {
        snapshot,
        size: bytes.len() as u64,
        uri: location.uri(&key),
        key,
        prior_art: true,
    }))
}

impl GroupOffsets {
    /// The offsets as the Kafka client takes them.
    pub fn committed(&self) -> BTreeMap<Partition, Committed> {
        self.topics
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().map(move |(partition, p)| {
                    (
                        (topic.clone(), *partition),
                        Committed {
                            offset: p.offset,
                            metadata: p.metadata.clone(),
                        },
                    )
                })
            })
            .collect()
    }

    /// The partitions of the group.
    pub fn partitions(&self) -> BTreeSet<Partition> {
        self.committed().into_keys().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_seed_document_parses() {
        let seed = r#"{
            "snapshotId": "pre-migration-20241201",
            "timestamp": "2024-12-01T12:00:00Z",
            "cluster": "kafka:9092",
            "groups": {
                "order-processor": {"topics": {
                    "orders": {"0": {"offset": 1000, "metadata": "", "timestamp": 1701432000000},
                               "1": {"offset": 2000, "metadata": "", "timestamp": 1701432000000}},
                    "payments": {"0": {"offset": 500, "metadata": "", "timestamp": 1701432000000}}}},
                "payment-handler": {"topics": {
                    "payments": {"0": {"offset": 500, "metadata": "", "timestamp": 1701432000000}}}}
            }
        }"#;
        let snapshot = OffsetSnapshot::parse(seed.as_bytes(), "pre-migration-20241201", "x").unwrap();
        assert_eq!(snapshot.partition_count(), 4);
        let committed = snapshot.groups["order-processor"].committed();
        assert_eq!(committed[&("orders".to_owned(), 1)].offset, 2000);
        assert_eq!(snapshot.expires_at, None);
        let again = OffsetSnapshot::parse(&snapshot.to_bytes(), "pre-migration-20241201", "x").unwrap();
        assert_eq!(again, snapshot);
        assert!(!String::from_utf8_lossy(&snapshot.to_bytes()).contains("expiresAt"));
        let e = OffsetSnapshot::parse(seed.as_bytes(), "other", "s3://b/x.json").unwrap_err();
        assert!(
            e.to_string()
                .contains("holds snapshot pre-migration-20241201, not other")
        );
    }

    #[test]
    fn the_expiry_is_optional_and_round_trips() {
        let text = r#"{"snapshotId": "s", "timestamp": "2024-12-01T12:00:00Z", "cluster": "k:9092",
            "groups": {}, "expiresAt": "2024-12-02T12:00:00Z"}"#;
        let snapshot = OffsetSnapshot::parse(text.as_bytes(), "s", "x").unwrap();
        assert_eq!(
            snapshot.expires_at.map(|t| t.to_rfc3339()),
            Some("2024-12-02T12:00:00+00:00".to_owned())
        );
        let again = OffsetSnapshot::parse(&snapshot.to_bytes(), "s", "x").unwrap();
        assert_eq!(again, snapshot);
    }

    #[test]
    fn keys_and_ids_correspond() {
        assert_eq!(snapshot_key("s1"), "offset-snapshots/s1.json");
        assert_eq!(snapshot_id_of("s1.json"), Some("s1"));
        assert_eq!(snapshot_id_of("a/s1.json"), None);
        assert_eq!(snapshot_id_of("s1.txt"), None);
    }
}
