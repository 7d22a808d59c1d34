//! The prior art's storage format: backup sets and offset snapshots written by OSO kafka-backup
//! 0.1x (its CLI and the kafka-backup-operator that links it), read in place and never written.
//!
//! Teams moving to this operator keep their old backups readable: KafkaRestore, KafkaBackupValidation,
//! the catalog, KafkaOffsetRollback and `import --dry-run` read these sets and snapshots through
//! [`super::backup_set`] and [`super::snapshot`], which detect the format from what is stored. Nothing
//! here writes: a set of this format is never continued (an incremental KafkaBackup with its
//! `backupId` is refused), changed or deleted.
//!
//! The layout below was read from kafka-backup 0.17.4 (git e5ab922) and checked against sets its CLI
//! wrote (`tests/fixtures/prior-art/`).
//!
//! # Layout below the storage prefix
//!
//! ```text
//! <backup_id>/manifest.json                       the set's index (JSON, snake_case fields, below)
//! <backup_id>/consumer-groups-snapshot.json       committed offsets (consumer_group_snapshot: true)
//! <backup_id>/offsets.db                          its SQLite progress database (not read)
//! <backup_id>/topics/<topic>/partition=<p>/segment-<first offset, 20 digits>.bin[.zst|.lz4]
//! offset-snapshots/<snapshot_id>/snapshot.json    `kafka-backup offset-rollback snapshot`
//! offset-snapshots/<snapshot_id>/metadata.json    its summary
//! ```
//!
//! A set is a directory directly below the prefix (not below `backups/`, where this operator keeps
//! its own), recognised by a `manifest.json` with the fields below and no `format` field.
//!
//! # Manifest
//!
//! ```text
//! backup_id           string
//! created_at          epoch ms of the run (wall clock; unrelated to record times)
//! source_cluster_id   string or null (never filled by 0.17.4)
//! source_brokers      [string] (empty in 0.17.4)
//! compression         "zstd" | "lz4" | "none"
//! topics [ {name, original_partition_count (null before 0.17), partitions [
//!     {partition_id, segments [ {key (relative to the prefix, starting with the backup id),
//!        start_offset, end_offset (inclusive), start_timestamp, end_timestamp (of the first and
//!        the last record, not the smallest and largest), record_count, uncompressed_size (body),
//!        compressed_size (the whole object)} ],
//!      gaps [ {start_offset, end_offset (exclusive), reason, detected_at} ]  (0.17+, may be absent)
//! ] } ]
//! ```
//!
//! Topics and partitions are unsorted. Fields added by later versions (`missing_topics`, `pruned`,
//! topic configurations) are ignored. There is **no completion marker**: the manifest is rewritten
//! after every cycle, so a run that crashed leaves a manifest that looks like a finished one. Sets of
//! this format are therefore shown with completeness `Unknown` ([`super::backup::SetState::Unknown`]),
//! never `Complete`.
//!
//! # Segment "KBAK" version 1
//!
//! Little-endian throughout:
//!
//! ```text
//! header (32 bytes)
//!   0  magic "KBAK"     4 version u8 = 1     5 compression u8 (0 none, 1 zstd, 2 lz4)
//!   6  reserved u16     8 record count u64   16 start offset i64   24 end offset i64 (inclusive)
//! body: every record concatenated, compressed as one unit: a zstd frame, or an LZ4 block preceded
//!   by its uncompressed length as u32 (lz4_flex `compress_prepend_size`), or stored as is
//! footer (8 bytes): CRC-32 (IEEE, as zlib and crc32fast compute it) of header and stored body, then
//!   magic "BKAE"
//! record
//!   length u32 (bytes after this field)   timestamp i64 (epoch ms)   offset i64
//!   key length i32 (-1 = null) + key      value length i32 (-1 = null) + value
//!   header count u16, then per header: key length u16 + UTF-8 key, value length i32 (-1 = null)
//!   + value
//! ```
//!
//! Records are in offset order; offsets may skip (compaction, transaction markers). The timestamp
//! type, batch boundaries and producer state are not kept (records are restored as CreateTime).
//!
//! # What the prior art did not keep
//!
//! - **Header fidelity**: it read headers into a key -> value map, so duplicate header keys were
//!   collapsed into one (at the first key's position, with the last value), and before 0.18 a null
//!   header value became an empty one. Neither can be repaired; a restore of such a set says so.
//! - **Tracking headers**: with `include_offset_headers` (its default) the backup appended
//!   `x-original-offset` and `x-original-timestamp` (8-byte little-endian; older archives: decimal
//!   strings) and `x-source-cluster` (when configured) after the record's own headers. Trailing
//!   headers of those names whose offset and timestamp are the record's own are read as tracking
//!   headers ([`segment::tracking_headers`]): a restore drops them unless
//!   `includeOriginalOffsetHeaders`, which writes them again (as this operator encodes them, the
//!   same values).
//! - **Positions**: it recorded no partition positions, so offsets between two segments that hold
//!   no record (compaction, transaction markers) cannot be told from records missing from the set;
//!   validation lists them instead of failing on them ([`offsets_between_segments`]).
//!
//! # Consumer-group snapshot
//!
//! `consumer-groups-snapshot.json`: `{snapshot_time (epoch ms), groups: [{group_id, offsets:
//! {topic: {"<partition>": committed offset}}}]}`.
//!
//! # Offset snapshots
//!
//! `snapshot.json`: `{snapshot_id, created_at (RFC 3339), group_offsets: {group: {group_id,
//! offsets: {topic: {"<partition>": {offset, metadata (nullable), timestamp (nullable)}}},
//! partition_count}}, restore_id?, cluster_id?, bootstrap_servers, description?}`; `metadata.json`:
//! `{snapshot_id, created_at, group_count, offset_count, restore_id?, description?}`. The same
//! `snapshot.json` document stored as `offset-snapshots/<id>.json` or as the ConfigMap key
//! `<id>.json` (the seed's ConfigMap form) is read as well.

pub mod segment;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;

use super::{
    backup::{
        GroupSnapshot, GroupSnapshotEntry, Manifest as SetManifest, PartitionEntry, SegmentEntry, SetState,
        TopicEntry,
    },
    snapshot::{GroupOffsets, OffsetSnapshot, PartitionOffset, SnapshotSource},
};

/// Name of the format, as status, the catalog and reports show it.
pub const FORMAT: &str = "kafka-backup/0.x";
/// What status and validation say about a set of this format instead of "Complete".
pub const COMPLETENESS_NOTE: &str = "written by kafka-backup 0.x: cannot prove the set is complete (its manifest has no completion marker, and a run that crashed leaves one that looks finished)";
/// What a restore of a set of this format reports.
pub const FIDELITY_NOTE: &str = "written by kafka-backup 0.x, which kept one header per key (duplicate header keys collapsed into one) and, before 0.18, stored null header values as empty ones: restored records that had such headers may differ from the originals";
/// File name of a set's manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of a set's consumer-group snapshot.
pub const GROUP_SNAPSHOT_FILE: &str = "consumer-groups-snapshot.json";
/// File names of an offset snapshot in its directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";
/// The summary next to it.
pub const SNAPSHOT_METADATA_FILE: &str = "metadata.json";
/// Top-level directories below a prefix that are never sets of this format.
pub const NOT_SETS: [&str; 3] = [
    super::backup::BACKUP_DIR,
    super::snapshot::SNAPSHOT_DIR,
    "evidence-reports",
];

/// The key of a set's manifest.
pub fn manifest_key(backup_id: &str) -> String {
    format!("{backup_id}/{MANIFEST_FILE}")
}

/// The key of a set's consumer-group snapshot.
pub fn group_snapshot_key(backup_id: &str) -> String {
    format!("{backup_id}/{GROUP_SNAPSHOT_FILE}")
}

/// The directory of a set's segments.
pub fn topics_dir(backup_id: &str) -> String {
    format!("{backup_id}/topics")
}

/// Whether a key relative to [`topics_dir`] names a segment
/// (`<topic>/partition=<p>/segment-<20 digits>.bin[.zst|.lz4]`).
pub fn is_segment_key(relative: &str) -> bool {
    let mut parts = relative.split('/');
    let (Some(_topic), Some(partition), Some(file), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let partition_ok = partition
        .strip_prefix("partition=")
        .is_some_and(|p| p.parse::<i32>().is_ok());
    let offset = file.strip_prefix("segment-").and_then(|f| {
        f.strip_suffix(".bin")
            .or_else(|| f.strip_suffix(".bin.zst"))
            .or_else(|| f.strip_suffix(".bin.lz4"))
    });
    partition_ok && offset.is_some_and(|o| o.len() == 20 && o.bytes().all(|b| b.is_ascii_digit()))
}

/// The key of an offset snapshot's document in its directory.
pub fn snapshot_key(snapshot_id: &str) -> String {
    format!("{}/{snapshot_id}/{SNAPSHOT_FILE}", super::snapshot::SNAPSHOT_DIR)
}

/// The key of an offset snapshot's summary.
pub fn snapshot_metadata_key(snapshot_id: &str) -> String {
    format!(
        "{}/{snapshot_id}/{SNAPSHOT_METADATA_FILE}",
        super::snapshot::SNAPSHOT_DIR
    )
}

/// The snapshot id a key relative to the snapshot directory stands for, when it is a snapshot of
/// this format (`<id>/snapshot.json`).
pub fn snapshot_id_of(key: &str) -> Option<&str> {
    key.strip_suffix(SNAPSHOT_FILE)
        .and_then(|dir| dir.strip_suffix('/'))
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// A set's `manifest.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Manifest {
    /// The set's id.
    pub backup_id: String,
    /// When the run started (epoch ms).
    pub created_at: i64,
    /// Declared source cluster id.
    #[serde(default)]
    pub source_cluster_id: Option<String>,
    /// Bootstrap servers of the source.
    #[serde(default)]
    pub source_brokers: Vec<String>,
    /// Codec of the segments.
    #[serde(default)]
    pub compression: Option<String>,
    /// The topics.
    #[serde(default)]
    pub topics: Vec<Topic>,
}

/// A topic of a set.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Topic {
    /// Its name.
    pub name: String,
    /// Partitions of the topic on the source (absent in sets before 0.17).
    #[serde(default)]
    pub original_partition_count: Option<i32>,
    /// The partitions backed up.
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

/// A partition of a set.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Partition {
    /// Its number.
    pub partition_id: i32,
    /// Its segments.
    #[serde(default)]
    pub segments: Vec<SegmentMeta>,
    /// Offsets the log start had passed before they were backed up.
    #[serde(default)]
    pub gaps: Vec<Gap>,
}

/// A segment as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SegmentMeta {
    /// Key below the prefix.
    pub key: String,
    /// First offset.
    pub start_offset: i64,
    /// Last offset (inclusive).
    pub end_offset: i64,
    /// Timestamp of the first record.
    pub start_timestamp: i64,
    /// Timestamp of the last record.
    pub end_timestamp: i64,
    /// Records.
    pub record_count: i64,
    /// Bytes of the uncompressed body.
    pub uncompressed_size: u64,
    /// Bytes of the object (header, body, footer).
    pub compressed_size: u64,
}

/// Offsets missing from a partition.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Gap {
    /// First missing offset.
    pub start_offset: i64,
    /// First offset after the gap.
    pub end_offset: i64,
    /// Why (`offset_out_of_range`).
    #[serde(default)]
    pub reason: String,
}

/// Why a stored document of this format cannot be read. The caller adds where it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriorArtError {
    /// Not the document it should be.
    #[error("{0}")]
    Document(String),
}

impl Manifest {
    /// Parses a manifest and checks its id.
    pub fn parse(bytes: &[u8], backup_id: &str) -> Result<Self, PriorArtError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| PriorArtError::Document(format!("not a kafka-backup 0.x manifest: {e}")))?;
        if manifest.backup_id != backup_id {
            return Err(PriorArtError::Document(format!(
                "it describes backup set {:?}, not {backup_id:?}",
                manifest.backup_id
            )));
        }
        Ok(manifest)
    }

    /// The segments by key, with their partition.
    pub fn segments(&self) -> BTreeMap<String, (i32, SegmentMeta)> {
        self.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| {
                p.segments
                    .iter()
                    .map(|s| (s.key.clone(), (p.partition_id, s.clone())))
            })
            .collect()
    }

    /// The set as this operator's engines read a set: a [`SetManifest`] with state
    /// [`SetState::Unknown`], the segments and gaps as listed, and the consumer-group snapshot
    /// stored beside it (`group_snapshot`: its key and document, when there is one). Positions,
    /// which this format does not record, are derived: a partition starts at its first segment
    /// (or gap) and each segment ends where the next begins, so offsets between segments that
    /// hold no record do not read as holes ([`offsets_between_segments`] lists them). Pure.
    pub fn view(&self, group_snapshot: Option<(&str, &GroupSnapshot)>) -> SetManifest {
        let created = Utc
            .timestamp_millis_opt(self.created_at)
            .single()
            .unwrap_or_default();
        let mut view = SetManifest::new(&self.backup_id, created);
        view.format = FORMAT.into();
        view.state = SetState::Unknown;
        view.source_cluster_id = self.source_cluster_id.clone();
        view.bootstrap_servers = self.source_brokers.clone();
        view.compression = self.compression.clone().unwrap_or_else(|| "none".into());
        view.include_offset_headers = true;
        for topic in &self.topics {
            let entry: &mut TopicEntry = view.topics.entry(topic.name.clone()).or_default();
            for p in &topic.partitions {
                entry.partitions.insert(p.partition_id, partition_view(p));
            }
            let highest = entry.partitions.keys().max().map_or(0, |p| p + 1);
            entry.partition_count = topic.original_partition_count.unwrap_or(highest).max(highest);
        }
        view.group_snapshot = group_snapshot.map(|(key, g)| GroupSnapshotEntry {
            key: key.to_owned(),
            timestamp: g.timestamp.unwrap_or(created),
            groups: g.groups.keys().cloned().collect(),
            partitions: g
                .groups
                .values()
                .flat_map(|t| t.values())
                .map(|p| p.len() as u64)
                .sum(),
        });
        view
    }
}

/// Segments sorted by first offset (the manifest does not sort them).
fn sorted_segments(p: &Partition) -> Vec<&SegmentMeta> {
    let mut segments: Vec<&SegmentMeta> = p.segments.iter().collect();
    segments.sort_by_key(|s| (s.start_offset, s.end_offset));
    segments
}

/// Whether a recorded gap lies between offsets `from` and `to`.
fn gap_between(p: &Partition, from: i64, to: i64) -> bool {
    p.gaps
        .iter()
        .any(|g| g.start_offset >= from && g.end_offset <= to)
}

fn partition_view(p: &Partition) -> PartitionEntry {
    let mut entries: Vec<SegmentEntry> = Vec::new();
    for s in sorted_segments(p) {
        // Without a recorded gap the chain continues where the previous segment ended; with one,
        // at the segment itself, so that the gap is judged as recorded.
        let position_start = match entries.last() {
            Some(prev) if !gap_between(p, prev.position_end, s.start_offset) => {
                prev.position_end.min(s.start_offset)
            }
            _ => s.start_offset,
        };
        entries.push(SegmentEntry {
            key: s.key.clone(),
            first_offset: s.start_offset,
            last_offset: s.end_offset,
            position_start,
            position_end: s.end_offset.saturating_add(1),
            records: u64::try_from(s.record_count).unwrap_or(0),
            min_timestamp: s.start_timestamp.min(s.end_timestamp),
            max_timestamp: s.start_timestamp.max(s.end_timestamp),
            uncompressed_bytes: s.uncompressed_size,
            stored_bytes: s.compressed_size,
            crc32c: 0,
        });
    }
    let gaps: Vec<super::backup::Gap> = p
        .gaps
        .iter()
        .map(|g| super::backup::Gap {
            from: g.start_offset,
            to: g.end_offset,
            reason: g.reason.clone(),
        })
        .collect();
    let next_offset = entries
        .iter()
        .map(|e| e.position_end)
        .chain(gaps.iter().map(|g| g.to))
        .max()
        .unwrap_or(0);
    PartitionEntry {
        next_offset,
        segments: entries,
        gaps,
    }
}

/// Offsets between consecutive segments of a partition that no segment and no recorded gap
/// covers, as `(topic, partition, from, to)`: records compacted away or transaction markers, or
/// records missing from the set; this format cannot tell which. Pure.
pub fn offsets_between_segments(manifest: &Manifest) -> Vec<(String, i32, i64, i64)> {
    let mut out = Vec::new();
    for topic in &manifest.topics {
        for p in &topic.partitions {
            let segments = sorted_segments(p);
            for w in segments.windows(2) {
                let end = w[0].end_offset.saturating_add(1);
                if w[1].start_offset > end && !gap_between(p, end, w[1].start_offset) {
                    out.push((topic.name.clone(), p.partition_id, end, w[1].start_offset));
                }
            }
        }
    }
    out
}

/// `consumer-groups-snapshot.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct GroupSnapshotDocument {
    /// When it was taken (epoch ms).
    #[serde(default)]
    pub snapshot_time: Option<i64>,
    /// The groups.
    #[serde(default)]
    pub groups: Vec<GroupDocument>,
}

/// One group of a [`GroupSnapshotDocument`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct GroupDocument {
    /// The group.
    pub group_id: String,
    /// Committed offsets per topic and partition (partition numbers as strings).
    #[serde(default)]
    pub offsets: BTreeMap<String, BTreeMap<String, i64>>,
}

/// Parses a consumer-group snapshot into the engines' form.
pub fn parse_group_snapshot(bytes: &[u8]) -> Result<GroupSnapshot, PriorArtError> {
    let doc: GroupSnapshotDocument = serde_json::from_slice(bytes).map_err(|e| {
        PriorArtError::Document(format!("not a kafka-backup 0.x consumer-group snapshot: {e}"))
    })?;
    let mut groups: BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>> = BTreeMap::new();
    for g in doc.groups {
        let entry = groups.entry(g.group_id.clone()).or_default();
        for (topic, partitions) in g.offsets {
            for (p, offset) in partitions {
                let partition: i32 = p.parse().map_err(|_| {
                    PriorArtError::Document(format!(
                        "group {} topic {topic}: partition {p:?} is not a number",
                        g.group_id
                    ))
                })?;
                entry.entry(topic.clone()).or_default().insert(partition, offset);
            }
        }
    }
    Ok(GroupSnapshot {
        timestamp: doc
            .snapshot_time
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        groups,
    })
}

/// `offset-snapshots/<id>/snapshot.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OffsetSnapshotDocument {
    /// Its id (`snap-<ms>-<8 hex>`).
    pub snapshot_id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Offsets per group.
    pub group_offsets: BTreeMap<String, GroupOffsetsDocument>,
    /// The restore it was taken for.
    #[serde(default)]
    pub restore_id: Option<String>,
    /// The cluster id.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Bootstrap servers of the cluster.
    #[serde(default)]
    pub bootstrap_servers: Vec<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// One group of an [`OffsetSnapshotDocument`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct GroupOffsetsDocument {
    /// Per topic, per partition (as a string).
    #[serde(default)]
    pub offsets: BTreeMap<String, BTreeMap<String, OffsetDocument>>,
}

/// One committed offset of an [`OffsetSnapshotDocument`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct OffsetDocument {
    /// The offset.
    pub offset: i64,
    /// Its metadata.
    #[serde(default)]
    pub metadata: Option<String>,
    /// When it was read (epoch ms).
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// `offset-snapshots/<id>/metadata.json`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct SnapshotMetadataDocument {
    /// Its id.
    pub snapshot_id: String,
    /// Groups in the snapshot.
    #[serde(default)]
    pub group_count: Option<u64>,
    /// Offsets in the snapshot.
    #[serde(default)]
    pub offset_count: Option<u64>,
}

/// Who wrote snapshots of this format, as the catalog's Source column shows it
/// (`kafka-backup/offset-rollback`).
pub fn snapshot_source() -> SnapshotSource {
    SnapshotSource {
        kind: "kafka-backup".into(),
        namespace: None,
        name: "offset-rollback".into(),
        uid: None,
    }
}

/// Whether a snapshot's source is [`snapshot_source`]: the prior art wrote it (read only).
pub fn is_snapshot_source(source: &SnapshotSource) -> bool {
    *source == snapshot_source()
}

/// Whether a JSON document is an offset snapshot of this format (it has `group_offsets`).
pub fn is_offset_snapshot(value: &serde_json::Value) -> bool {
    value.get("group_offsets").is_some() && value.get("snapshot_id").is_some()
}

/// Parses an offset snapshot of this format into the operator's form, checking its id and, when
/// given, its `metadata.json` (same id, same group and offset counts).
pub fn parse_offset_snapshot(
    bytes: &[u8],
    expected_id: &str,
    metadata: Option<&[u8]>,
) -> Result<OffsetSnapshot, PriorArtError> {
    let doc: OffsetSnapshotDocument = serde_json::from_slice(bytes)
        .map_err(|e| PriorArtError::Document(format!("not a kafka-backup 0.x offset snapshot: {e}")))?;
    if doc.snapshot_id != expected_id {
        return Err(PriorArtError::Document(format!(
            "holds snapshot {}, not {expected_id}",
            doc.snapshot_id
        )));
    }
    let created = doc.created_at.timestamp_millis();
    let mut groups = BTreeMap::new();
    for (group, g) in &doc.group_offsets {
        let mut topics: BTreeMap<String, BTreeMap<i32, PartitionOffset>> = BTreeMap::new();
        for (topic, partitions) in &g.offsets {
            for (p, o) in partitions {
                let partition: i32 = p.parse().map_err(|_| {
                    PriorArtError::Document(format!(
                        "group {group} topic {topic}: partition {p:?} is not a number"
                    ))
                })?;
                topics.entry(topic.clone()).or_default().insert(
                    partition,
                    PartitionOffset {
                        offset: o.offset,
                        metadata: o.metadata.clone().unwrap_or_default(),
                        timestamp: o.timestamp.unwrap_or(created),
                    },
                );
            }
        }
        groups.insert(group.clone(), GroupOffsets { topics });
    }
    let snapshot = OffsetSnapshot {
        snapshot_id: doc.snapshot_id.clone(),
        timestamp: doc.created_at,
        cluster: doc.bootstrap_servers.join(","),
        groups,
        source: Some(snapshot_source()),
        expires_at: None,
    };
    if let Some(bytes) = metadata {
        let meta: SnapshotMetadataDocument = serde_json::from_slice(bytes).map_err(|e| {
            PriorArtError::Document(format!("{SNAPSHOT_METADATA_FILE} is not a snapshot summary: {e}"))
        })?;
        let offsets = snapshot.partition_count() as u64;
        let groups = snapshot.groups.len() as u64;
        if meta.snapshot_id != expected_id
            || meta.group_count.is_some_and(|n| n != groups)
            || meta.offset_count.is_some_and(|n| n != offsets)
        {
            return Err(PriorArtError::Document(format!(
                "{SNAPSHOT_METADATA_FILE} describes snapshot {} with {:?} groups and {:?} offsets, {SNAPSHOT_FILE} holds {expected_id} with {groups} groups and {offsets} offsets",
                meta.snapshot_id, meta.group_count, meta.offset_count
            )));
        }
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn seg(key: &str, start: i64, end: i64) -> SegmentMeta {
        SegmentMeta {
            key: key.into(),
            start_offset: start,
            end_offset: end,
            start_timestamp: 100 + start,
            end_timestamp: 100 + end,
            record_count: end - start + 1,
            uncompressed_size: 10,
            compressed_size: 50,
        }
    }

    #[test]
    fn segment_keys_are_recognised() {
        assert!(is_segment_key(
            "orders/partition=2/segment-00000000000000000400.bin.zst"
        ));
        assert!(is_segment_key("a.b/partition=0/segment-00000000000000000000.bin"));
        assert!(is_segment_key(
            "t/partition=0/segment-00000000000000000000.bin.lz4"
        ));
        assert!(!is_segment_key("t/partition=0/segment-0001.zst"));
        assert!(!is_segment_key("t/0/00000000000000000000.seg"));
        assert!(!is_segment_key("t/partition=x/segment-00000000000000000000.bin"));
        assert_eq!(snapshot_id_of("snap-1-ab/snapshot.json"), Some("snap-1-ab"));
        assert_eq!(snapshot_id_of("snap-1-ab/metadata.json"), None);
        assert_eq!(snapshot_id_of("snapshot.json"), None);
    }

    #[test]
    fn the_view_derives_positions_and_keeps_gaps() {
        let m = Manifest {
            backup_id: "b".into(),
            created_at: 1_700_000_000_000,
            source_cluster_id: None,
            source_brokers: vec![],
            compression: Some("zstd".into()),
            topics: vec![Topic {
                name: "t".into(),
                original_partition_count: Some(3),
                partitions: vec![Partition {
                    partition_id: 1,
                    // Unsorted, a hole without a gap (100..105) and a recorded gap (200..300).
                    segments: vec![
                        seg("b/s300", 300, 399),
                        seg("b/s0", 0, 99),
                        seg("b/s105", 105, 199),
                    ],
                    gaps: vec![Gap {
                        start_offset: 200,
                        end_offset: 300,
                        reason: "offset_out_of_range".into(),
                    }],
                }],
            }],
        };
        let v = m.view(None);
        assert_eq!(v.state, SetState::Unknown);
        assert_eq!(v.format, FORMAT);
        let t = &v.topics["t"];
        assert_eq!(t.partition_count, 3);
        let p = &t.partitions[&1];
        let positions: Vec<(i64, i64)> = p
            .segments
            .iter()
            .map(|s| (s.position_start, s.position_end))
            .collect();
        assert_eq!(positions, vec![(0, 100), (100, 200), (300, 400)]);
        assert_eq!(p.next_offset, 400);
        assert_eq!(p.gaps.len(), 1);
        assert_eq!(offsets_between_segments(&m), vec![("t".to_owned(), 1, 100, 105)]);
    }

    #[test]
    fn snapshots_of_the_prior_art_parse() {
        let doc = br#"{"snapshot_id": "snap-1-aa", "created_at": "2026-12-07T13:58:11.106821312Z",
            "group_offsets": {"billing": {"group_id": "billing", "offsets": {"orders": {
              "1": {"offset": 350, "metadata": null, "timestamp": null},
              "0": {"offset": 200, "metadata": "m", "timestamp": 5}}}, "partition_count": 2}},
            "restore_id": null, "cluster_id": null, "bootstrap_servers": ["k:9092"], "description": "d"}"#;
        let meta = br#"{"snapshot_id": "snap-1-aa", "created_at": "x", "group_count": 1, "offset_count": 2}"#;
        let s = parse_offset_snapshot(doc, "snap-1-aa", Some(meta)).unwrap();
        assert_eq!(s.cluster, "k:9092");
        let orders = &s.groups["billing"].topics["orders"];
        assert_eq!(
            (
                orders[&0].offset,
                orders[&0].metadata.as_str(),
                orders[&0].timestamp
            ),
            (200, "m", 5)
        );
        assert_eq!(orders[&1].timestamp, s.timestamp.timestamp_millis());
        let e = parse_offset_snapshot(doc, "other", None).unwrap_err();
        assert!(e.to_string().contains("not other"), "{e}");
        let bad = br#"{"snapshot_id": "snap-1-aa", "group_count": 1, "offset_count": 3}"#;
        let e = parse_offset_snapshot(doc, "snap-1-aa", Some(bad)).unwrap_err();
        assert!(e.to_string().contains("3"), "{e}");
        let g = parse_group_snapshot(
            br#"{"snapshot_time": 1796651891064, "groups": [{"group_id": "billing", "offsets": {"orders": {"2": 518, "0": 200}}}]}"#,
        )
        .unwrap();
        assert_eq!(g.groups["billing"]["orders"][&2], 518);
        assert!(
            parse_group_snapshot(br#"{"groups": [{"group_id": "g", "offsets": {"t": {"x": 1}}}]}"#).is_err()
        );
    }
}
