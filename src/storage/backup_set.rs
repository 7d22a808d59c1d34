//! A backup set as the engines read it, whatever wrote it: this operator ([`super::backup`]) or the
//! prior art, kafka-backup 0.x ([`super::prior_art`]). KafkaRestore, KafkaBackupValidation, the
//! catalog and `import` open sets here and read records through [`SetFormat::decode_segment`],
//! so they need not know which format they read.
//!
//! # Detection
//!
//! Per set, from what is stored: [`open`] reads `backups/<id>/manifest.json` (this operator's
//! place) and `<id>/manifest.json` (the prior art's) and judges the document found by its content:
//! a `format` field is this operator's manifest, `backup_id` + `created_at` + `topics` without one
//! is the prior art's. A document that is neither is refused, naming the fields it has; an id with
//! a manifest in both places is refused as ambiguous. A set of the prior art is presented as a
//! [`Manifest`] view ([`super::prior_art::Manifest::view`]) with state `Unknown` and is never
//! written: no KafkaBackup continues it ([`foreign_set`]) and no record of its format is written.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStoreExt;

use super::{
    ObjectLocation, StorageError,
    backup::{self, BackupFormatError, GroupSnapshot, Manifest, SegmentEntry, SetSummary},
    prior_art,
};
use crate::storage::backup::segment::{Segment, SegmentError};

/// Which tool wrote a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetFormat {
    /// This operator ([`backup::FORMAT`]).
    Operator,
    /// kafka-backup 0.x ([`prior_art::FORMAT`]): read only.
    PriorArt,
}

impl SetFormat {
    /// Verifies and decodes a stored segment of `partition` listed as `entry`, reusing `spare`
    /// (see [`Segment::decode_reusing`]). CPU-bound.
    pub fn decode_segment(
        self,
        bytes: Bytes,
        spare: Vec<u8>,
        partition: i32,
        entry: &SegmentEntry,
    ) -> Result<(Segment, Vec<u8>), SegmentError> {
        match self {
            SetFormat::Operator => Segment::decode_reusing(bytes, spare),
            SetFormat::PriorArt => prior_art::segment::decode(bytes, spare, partition, entry),
        }
    }
}

/// An opened backup set.
#[derive(Clone, Debug)]
pub struct BackupSet {
    /// Who wrote it.
    pub format: SetFormat,
    /// Its manifest (for the prior art: the view of its manifest).
    pub manifest: Manifest,
    /// Key of the manifest object.
    pub manifest_key: String,
    /// The manifest's bytes as stored.
    pub manifest_bytes: Bytes,
    /// The prior art's manifest as stored.
    prior_art: Option<Arc<prior_art::Manifest>>,
}

/// Where a set's manifest is looked for, in both formats.
pub fn manifest_uris(location: &ObjectLocation, backup_id: &str) -> String {
    let ours = location.uri(&backup::manifest_key(backup_id));
    if prior_art_id(backup_id) {
        format!(
            "neither {ours} nor {} exists",
            location.uri(&prior_art::manifest_key(backup_id))
        )
    } else {
        format!("{ours} does not exist")
    }
}

/// Whether `backup_id` can name a set of the prior art (a top-level directory that is not one of
/// this operator's).
fn prior_art_id(backup_id: &str) -> bool {
    !backup_id.is_empty() && !backup_id.contains('/') && !prior_art::NOT_SETS.contains(&backup_id)
}

/// Judges a manifest document by its content: this operator's, the prior art's, or neither
/// (refused, naming what was found). Pure.
pub fn detect(bytes: &[u8], backup_id: &str, uri: &str) -> Result<Detected, BackupFormatError> {
    let refuse = |message: String| BackupFormatError::Manifest {
        uri: uri.to_owned(),
        message,
    };
    let neither = "neither a kafka-backup-operator manifest (it has a \"format\" field) nor a kafka-backup 0.x manifest (\"backup_id\", \"created_at\", \"topics\")";
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| refuse(format!("{neither}: not JSON ({e})")))?;
    let Some(object) = value.as_object() else {
        return Err(refuse(format!("{neither}: found a JSON {}", json_kind(&value))));
    };
    if object.contains_key("format") {
        return Manifest::parse(bytes, backup_id, uri).map(|m| Detected::Operator(Box::new(m)));
    }
    if ["backup_id", "created_at", "topics"]
        .iter()
        .all(|f| object.contains_key(*f))
    {
        return prior_art::Manifest::parse(bytes, backup_id)
            .map(Detected::PriorArt)
            .map_err(|e| refuse(e.to_string()));
    }
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.truncate(12);
    Err(refuse(format!("{neither}: found the fields {fields:?}")))
}

/// What [`detect`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Detected {
    /// This operator's manifest.
    Operator(Box<Manifest>),
    /// The prior art's.
    PriorArt(prior_art::Manifest),
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Finds the manifest of set `backup_id` in either format's place: its key and bytes; `None`
/// when neither place holds one. An id with a manifest in both places is refused as ambiguous.
pub async fn find_manifest(
    location: &ObjectLocation,
    backup_id: &str,
) -> Result<Option<(String, Bytes)>, BackupFormatError> {
    let ours_key = backup::manifest_key(backup_id);
    let theirs_key = prior_art::manifest_key(backup_id);
    let ours = location.get(&ours_key).await?;
    let theirs = if prior_art_id(backup_id) {
        location.get(&theirs_key).await?
    } else {
        None
    };
    match (ours, theirs) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(BackupFormatError::Manifest {
            uri: location.uri(&ours_key),
            message: format!(
                "backup set {backup_id} is ambiguous: {} holds a manifest as well; move one of the two sets to another prefix",
                location.uri(&theirs_key)
            ),
        }),
        (Some(b), None) => Ok(Some((ours_key, b))),
        (None, Some(b)) => Ok(Some((theirs_key, b))),
    }
}

/// Opens set `backup_id`: finds its manifest in either format ([`find_manifest`]) and reads it
/// ([`BackupSet::read`]); `None` when neither place holds a manifest.
pub async fn open(
    location: &ObjectLocation,
    backup_id: &str,
) -> Result<Option<BackupSet>, BackupFormatError> {
    match find_manifest(location, backup_id).await? {
        None => Ok(None),
        Some((key, bytes)) => BackupSet::read(location, backup_id, key, bytes).await.map(Some),
    }
}

/// Refuses to continue a set of the prior art: `Some(message)` when `backup_id` names one in
/// `location` and this operator has none of that id (a KafkaBackup with that id would mix two
/// formats in one set).
pub async fn foreign_set(location: &ObjectLocation, backup_id: &str) -> Result<Option<String>, StorageError> {
    if !prior_art_id(backup_id) || location.get(&backup::manifest_key(backup_id)).await?.is_some() {
        return Ok(None);
    }
    let key = prior_art::manifest_key(backup_id);
    let Some(bytes) = location.get(&key).await? else {
        return Ok(None);
    };
    let uri = location.uri(&key);
    Ok(matches!(detect(&bytes, backup_id, &uri), Ok(Detected::PriorArt(_))).then(|| {
        format!(
            "backup set {backup_id} at {uri} was written by kafka-backup 0.x: this operator reads such sets (restore, validation, catalog) but never continues or changes them, as that would mix two formats in one set; give this KafkaBackup another backupId"
        )
    }))
}

impl BackupSet {
    /// The set whose manifest `bytes` were read at `key`: the format is judged by [`detect`]; for
    /// the prior art the consumer-group snapshot beside the manifest is read too.
    pub async fn read(
        location: &ObjectLocation,
        backup_id: &str,
        key: String,
        bytes: Bytes,
    ) -> Result<BackupSet, BackupFormatError> {
        let uri = location.uri(&key);
        Ok(match detect(&bytes, backup_id, &uri)? {
            Detected::Operator(manifest) => BackupSet {
                format: SetFormat::Operator,
                manifest: *manifest,
                manifest_key: key,
                manifest_bytes: bytes,
                prior_art: None,
            },
            Detected::PriorArt(stored) => {
                let group_key = prior_art::group_snapshot_key(backup_id);
                // An unreadable snapshot is listed with no groups; reading it reports why.
                let groups = location
                    .get(&group_key)
                    .await?
                    .map(|b| prior_art::parse_group_snapshot(&b).unwrap_or_default());
                BackupSet {
                    format: SetFormat::PriorArt,
                    manifest: stored.view(groups.as_ref().map(|g| (group_key.as_str(), g))),
                    manifest_key: key,
                    manifest_bytes: bytes,
                    prior_art: Some(Arc::new(stored)),
                }
            }
        })
    }

    /// The set's id.
    pub fn backup_id(&self) -> &str {
        &self.manifest.backup_id
    }

    /// The directory of the set.
    pub fn dir(&self) -> String {
        match self.format {
            SetFormat::Operator => backup::set_dir(self.backup_id()),
            SetFormat::PriorArt => self.backup_id().to_owned(),
        }
    }

    /// The directory holding the set's segments, and whether a key relative to it names a segment.
    pub fn segments_dir(&self) -> (String, fn(&str) -> bool) {
        match self.format {
            SetFormat::Operator => (
                format!("{}/topics", backup::set_dir(self.backup_id())),
                |k: &str| k.ends_with(".seg"),
            ),
            SetFormat::PriorArt => (prior_art::topics_dir(self.backup_id()), prior_art::is_segment_key),
        }
    }

    /// The prior art's manifest entry of a segment.
    pub fn prior_art_segment(&self, key: &str) -> Option<prior_art::SegmentMeta> {
        let stored = self.prior_art.as_ref()?;
        stored
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.segments)
            .find(|s| s.key == key)
            .cloned()
    }

    /// The prior art's manifest as stored.
    pub fn prior_art_manifest(&self) -> Option<&prior_art::Manifest> {
        self.prior_art.as_deref()
    }

    /// What status and reports must say about the set besides its figures: for the prior art,
    /// that its completeness cannot be proven.
    pub fn completeness_note(&self) -> Option<&'static str> {
        (self.format == SetFormat::PriorArt).then_some(prior_art::COMPLETENESS_NOTE)
    }

    /// What a restore of the set must report: for the prior art, that header duplicates and null
    /// header values were not kept.
    pub fn fidelity_note(&self) -> Option<&'static str> {
        (self.format == SetFormat::PriorArt).then_some(prior_art::FIDELITY_NOTE)
    }

    /// The set's consumer-group snapshot, in the engines' form.
    pub async fn read_group_snapshot(
        &self,
        location: &ObjectLocation,
    ) -> Result<Option<GroupSnapshot>, BackupFormatError> {
        if self.format == SetFormat::Operator {
            return backup::read_group_snapshot(location, &self.manifest).await;
        }
        let Some(entry) = &self.manifest.group_snapshot else {
            return Ok(None);
        };
        let uri = location.uri(&entry.key);
        match location.get(&entry.key).await? {
            None => Err(BackupFormatError::Manifest {
                uri,
                message: "the consumer-group snapshot is gone since the set was opened".into(),
            }),
            Some(bytes) => {
                prior_art::parse_group_snapshot(&bytes)
                    .map(Some)
                    .map_err(|e| BackupFormatError::Manifest {
                        uri,
                        message: e.to_string(),
                    })
            }
        }
    }

    /// The source cluster id: the manifest's or, for the prior art (whose manifest does not
    /// record it), the one its backup wrote into the tracking headers of the first record.
    pub async fn source_cluster_id(
        &self,
        location: &ObjectLocation,
    ) -> Result<Option<String>, BackupFormatError> {
        if self.format == SetFormat::Operator || self.manifest.source_cluster_id.is_some() {
            return Ok(self.manifest.source_cluster_id.clone());
        }
        let first = self
            .manifest
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .find_map(|p| p.segments.first());
        let Some(entry) = first else { return Ok(None) };
        let Some(bytes) = location.get(&entry.key).await? else {
            return Ok(None);
        };
        let cluster = tokio::task::spawn_blocking(move || {
            let (header, stored) = prior_art::segment::frame(&bytes).ok()?;
            let body = prior_art::segment::decompress(&header, stored, 0).ok()?;
            let record = prior_art::segment::records(&body).next()?.ok()?;
            prior_art::segment::tracked_source_cluster(&record)
        })
        .await
        .unwrap_or_default();
        Ok(cluster)
    }

    /// Reads and verifies every segment of `entries` (`(partition, entry)`) before a restore
    /// writes anything, when the set is the prior art's: its manifest proves neither completeness
    /// nor integrity, and a segment found damaged half way would leave a partial restore. This
    /// operator's own sets are verified while they are restored (their manifest and segments
    /// carry positions and checksums a resumed restore continues from). The error names the
    /// segment.
    pub async fn verify_before_writing(
        &self,
        location: &ObjectLocation,
        entries: Vec<SegmentEntry>,
    ) -> Result<(), (String, String)> {
        if self.format != SetFormat::PriorArt {
            return Ok(());
        }
        let listed: BTreeMap<String, prior_art::SegmentMeta> = self
            .prior_art
            .as_ref()
            .map(|m| m.segments().into_iter().map(|(k, (_, s))| (k, s)).collect())
            .unwrap_or_default();
        stream::iter(entries)
            .map(|entry| {
                let meta = listed.get(&entry.key).cloned();
                async move {
                    let uri = location.uri(&entry.key);
                    let Some(meta) = meta else {
                        return Err((uri, "is not in the manifest".to_owned()));
                    };
                    let bytes = match location.get(&entry.key).await {
                        Ok(Some(b)) => b,
                        Ok(None) => {
                            return Err((uri, "is listed in the manifest but missing from storage".into()));
                        }
                        Err(e) => return Err((uri, e.to_string())),
                    };
                    tokio::task::spawn_blocking(move || prior_art::segment::inspect(&meta, &bytes))
                        .await
                        .map_err(|e| (uri.clone(), e.to_string()))?
                        .map(|_| ())
                        .map_err(|e| (uri, e))
                }
            })
            .buffer_unordered(2)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// The summary the catalog and status show.
    pub fn summary(&self, location: &ObjectLocation) -> SetSummary {
        backup::summarize(&self.manifest, &location.uri(&self.dir()))
    }
}

/// Sets of the prior art directly below a location's prefix: `(id, manifest size, manifest
/// modification time)` of every top-level directory with a `manifest.json` (found by one
/// delimited listing and a HEAD per directory; the manifests are not read, so what they hold is
/// judged when the set is opened).
pub async fn list_prior_art_sets(
    location: &ObjectLocation,
) -> Result<Vec<(String, u64, chrono::DateTime<chrono::Utc>)>, StorageError> {
    let base = location.path("");
    let listing = match location.store().list_with_delimiter(Some(&base)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(source) => {
            return Err(StorageError::Object {
                operation: "list",
                uri: location.uri(""),
                source,
            });
        }
    };
    let ids: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|dir| dir.filename().map(str::to_owned))
        .filter(|id| prior_art_id(id))
        .collect();
    let heads = stream::iter(ids)
        .map(|id| async move {
            let key = prior_art::manifest_key(&id);
            match location.store().head(&location.path(&key)).await {
                Ok(meta) => Ok(Some((id, meta.size, meta.last_modified))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(source) => Err(StorageError::Object {
                    operation: "read",
                    uri: location.uri(&key),
                    source,
                }),
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let mut sets: Vec<_> = heads.into_iter().flatten().collect();
    sets.sort();
    Ok(sets)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn manifests_are_told_apart_by_their_content() {
        let ours = Manifest::new("b", chrono::DateTime::<chrono::Utc>::default()).to_bytes();
        assert!(matches!(detect(&ours, "b", "u"), Ok(Detected::Operator(_))));
        let theirs = br#"{"backup_id": "b", "created_at": 1, "source_cluster_id": null, "source_brokers": [],
            "compression": "none", "topics": []}"#;
        assert!(matches!(detect(theirs, "b", "u"), Ok(Detected::PriorArt(_))));
        let e = detect(theirs, "c", "u").unwrap_err().to_string();
        assert!(e.contains("not \"c\""), "{e}");
        let e = detect(br#"{"id": "b", "segments": []}"#, "b", "s3://x/b/manifest.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s3://x/b/manifest.json is not a valid backup manifest: neither")
                && e.contains(r#"["id", "segments"]"#),
            "{e}"
        );
        let e = detect(b"[1]", "b", "u").unwrap_err().to_string();
        assert!(e.contains("a JSON array"), "{e}");
        let e = detect(b"\x00\x01", "b", "u").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }
}
