//! Backup sets as the catalog sees them: [`BackupSetSummary`], what one stored backup holds, read
//! through the [`BackupSetSource`] trait so the catalog does not depend on the backup format.
//!
//! # Connecting the real backup format
//!
//! The storage implementation ([`super::sources::StorageSource`]) finds backups by their manifest
//! (written last by a backup, so a backup without one is still running or failed before the end) at
//! [`manifest_key`], and sets of the prior art (kafka-backup 0.x) by theirs directly below the
//! prefix ([`crate::storage::backup_set::list_prior_art_sets`]). It opens a set of either format
//! with [`crate::storage::backup_set::open`] and turns its summary into the catalog's with
//! **[`summary_of`]** (with its `format`, and the note that a set of the prior art cannot be
//! proven complete); [`summary_from_manifest`] does the same from the bytes of one of this
//! operator's manifests. The manifests themselves are parsed and summarised by
//! [`crate::storage::backup`] and [`crate::storage::prior_art`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::{backup, snapshot::SnapshotSource};

/// Directory of backups below a storage prefix.
pub const BACKUP_DIR: &str = "backups";

/// File name of a backup's manifest inside its directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Why a backup manifest cannot be summarised.
#[derive(Debug, thiserror::Error)]
pub enum BackupSetError {
    /// The manifest is not a valid manifest of this backup (the backup module says why).
    #[error("{uri}: {message}")]
    Format {
        /// Where it was read.
        uri: String,
        /// Why.
        message: String,
    },
}

/// One topic of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupTopic {
    /// Topic name.
    pub name: String,
    /// Partitions backed up.
    pub partitions: u64,
    /// Records backed up.
    pub records: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// The consumer-group offsets a backup captured alongside the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GroupSnapshotSummary {
    /// The offset snapshot id, when it is stored as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// When the offsets were captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    /// The groups captured.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Partitions with an offset, over all groups.
    #[serde(default)]
    pub partitions: u64,
}

/// What the catalog shows of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupSetSummary {
    /// The backup id (the object's name).
    pub backup_id: String,
    /// The topics in it.
    #[serde(default)]
    pub topics: Vec<BackupTopic>,
    /// Partitions over all topics.
    #[serde(default)]
    pub partitions: u64,
    /// Records over all topics.
    #[serde(default)]
    pub records: u64,
    /// Bytes stored over all topics.
    #[serde(default)]
    pub bytes: u64,
    /// Timestamp of the earliest record: the start of the valid point-in-time-restore window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_record_time: Option<DateTime<Utc>>,
    /// Timestamp of the latest record: the end of the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_record_time: Option<DateTime<Utc>>,
    /// Whether the backup finished (a manifest of a running continuous backup says `false`, and
    /// so does a set of the prior art, whose manifest has no completion marker).
    #[serde(default)]
    pub complete: bool,
    /// The format it is stored in: [`backup::FORMAT`] or [`crate::storage::prior_art::FORMAT`].
    #[serde(default)]
    pub format: String,
    /// What the format cannot prove (a set of the prior art: that it is complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Storage URI of the backup (its directory).
    #[serde(default)]
    pub location: String,
    /// When the backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// The cluster backed up (its bootstrap servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The KafkaBackup that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SnapshotSource>,
    /// The consumer-group offsets captured with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_snapshot: Option<GroupSnapshotSummary>,
}

/// The key of a backup's manifest below the storage prefix: `backups/<backupId>/manifest.json`.
pub fn manifest_key(backup_id: &str) -> String {
    format!("{BACKUP_DIR}/{backup_id}/{MANIFEST_FILE}")
}

/// The backup id a key relative to [`BACKUP_DIR`] stands for, when it is a manifest
/// (`<backupId>/manifest.json`).
pub fn backup_id_of_manifest_key(key: &str) -> Option<&str> {
    key.strip_suffix(MANIFEST_FILE)
        .and_then(|dir| dir.strip_suffix('/'))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// **The adapter to the backup format**: the summary of the manifest `bytes` of backup `backup_id`,
/// read from `uri`; `location` is the storage URI of the backup's directory. The manifest is read
/// with the backup module's own parser ([`backup::Manifest::parse`]) and summarised by it.
pub fn summary_from_manifest(
    backup_id: &str,
    bytes: &[u8],
    uri: &str,
    location: &str,
) -> Result<BackupSetSummary, BackupSetError> {
    let manifest =
        backup::Manifest::parse(bytes, backup_id, uri).map_err(|source| BackupSetError::Format {
            uri: uri.to_owned(),
            message: source.to_string(),
        })?;
    Ok(summary_of(backup::summarize(&manifest, location)))
}

/// The catalog's summary of a set as the backup module summarises it (either format).
pub fn summary_of(set: backup::SetSummary) -> BackupSetSummary {
    let note = (set.format == crate::storage::prior_art::FORMAT)
        .then(|| crate::storage::prior_art::COMPLETENESS_NOTE.to_owned());
    BackupSetSummary {
        backup_id: set.backup_id,
        topics: set
            .topics
            .into_iter()
            .map(|t| BackupTopic {
                name: t.name,
                partitions: t.partitions,
                records: t.records,
                bytes: t.bytes,
            })
            .collect(),
        partitions: set.partitions,
        records: set.records,
        bytes: set.bytes,
        first_record_time: set.first_record_time,
        last_record_time: set.last_record_time,
        complete: set.complete,
        format: set.format,
        note,
        location: set.location,
        created: set.created,
        cluster: set.cluster,
        source: set.owner,
        group_snapshot: set.group_snapshot.map(|g| GroupSnapshotSummary {
            snapshot_id: None,
            timestamp: Some(g.timestamp),
            groups: g.groups,
            partitions: g.partitions,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn manifest_keys_and_ids_correspond() {
        assert_eq!(manifest_key("b1"), "backups/b1/manifest.json");
        assert_eq!(backup_id_of_manifest_key("b1/manifest.json"), Some("b1"));
        assert_eq!(backup_id_of_manifest_key("b1/segments/0.bin"), None);
        assert_eq!(backup_id_of_manifest_key("manifest.json"), None);
        assert_eq!(backup_id_of_manifest_key("a/b/manifest.json"), None);
    }

    #[test]
    fn a_stored_manifest_is_summarised_by_the_backup_module() {
        let manifest = include_bytes!("../../tests/fixtures/apiserver/backups/orders-2024-12-01.json");
        let s = summary_from_manifest("orders-2024-12-01", manifest, "u", "s3://b/backups/x").unwrap();
        assert_eq!((s.partitions, s.records, s.bytes), (4, 123_000, 53_477_376));
        assert!(s.complete);
        assert_eq!(s.location, "s3://b/backups/x");
        assert_eq!(
            s.group_snapshot.unwrap().groups,
            ["order-processor", "payment-handler"]
        );
        let e = summary_from_manifest("b2", manifest, "u", "l").unwrap_err();
        assert!(e.to_string().starts_with("u: "), "{e}");
    }
}
