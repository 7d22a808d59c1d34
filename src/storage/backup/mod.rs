//! The backup format: backup sets written by KafkaBackup and read by KafkaRestore.
//!
//! # Layout below the storage prefix
//!
//! ```text
//! backups/<backupId>/manifest.json                          the set's index (JSON, below)
//! backups/<backupId>/consumer-groups-snapshot.json          committed offsets (consumerGroupSnapshot)
//! backups/<backupId>/topics/<topic>/<partition>/<first offset, 20 digits>.seg   segments
//! backups/<backupId>/restores/<restore name>/state.json     progress of a KafkaRestore of this set
//! backups/<backupId>/restores/<restore name>/offset-mapping.json   its source -> target offsets
//! ```
//!
//! # Segments
//!
//! One segment holds consecutive records of one partition and is named by the offset of its
//! first record. Segments are written create-only (a conditional put), never changed.
//! Little-endian throughout:
//!
//! ```text
//! header (96 bytes)
//!   0  magic "KBOSEG01"          8  version u16 = 1       10 codec u8 (0 none, 1 zstd, 2 lz4)
//!   11 reserved u8               12 partition i32         16 record count u64
//!   24 first offset i64          32 last offset i64
//!   40 position start i64 (the partition position the segment starts at = previous segment's end)
//!   48 position end i64   (where the next segment starts: last offset + 1 or beyond)
//!   56 min timestamp i64         64 max timestamp i64
//!   72 uncompressed body length u64                       80 stored body length u64
//!   88 CRC-32C of the stored body u32                     92 CRC-32C of header bytes 0..92 u32
//! body: the records, compressed as one block (zstd frame, LZ4 block, or stored as is)
//! record
//!   length u32 (bytes after this field)   offset i64   timestamp i64 (epoch ms)
//!   attributes u8 (bits 0-1 timestamp type: 0 none, 1 CreateTime, 2 LogAppendTime)
//!   tracking u8 (how many of the last headers the backup added: includeOffsetHeaders)
//!   key length i32 (-1 = null) + bytes       value length i32 (-1 = null: a tombstone) + bytes
//!   header count u32, then per header: name length u32 + UTF-8 name, value length i32 (-1 = null)
//!   + bytes; in the producer's order, duplicates kept.
//! ```
//!
//! The source offset, timestamp and timestamp type are part of every record, so offsets can be
//! translated without tracking headers. Tracking headers the backup adds are flagged and never
//! restored as the record's own headers.
//!
//! # Manifest
//!
//! `manifest.json` ([`Manifest`]) lists every topic (with its partition count and the
//! non-default configuration the cluster reported), every partition (the position the next run
//! continues at, gaps where the log start had moved past it) and every segment (offsets,
//! positions, record count, time range, sizes, CRC). Its `state` is `InProgress` while a run
//! writes to the set (written at each checkpoint: what it lists is stored and restorable) and
//! `Complete` once a run finished; a run that crashed never leaves a `Complete` manifest behind.
//! Segments a crashed run stored after its last checkpoint are found by listing and adopted by the
//! next run when they continue the partition's chain of positions (the checkpoint is the storage
//! itself), or deleted when `checkpoint.enabled` is false.
//!
//! The manifest's `owner` names the KafkaBackup that wrote the set last and every entry of
//! `runs` the one that made it (`owner` absent in runs of sets from before it was recorded).
//! Retention ([`crate::ops::backup::retention`]) deletes only sets whose recorded writers are
//! all the KafkaBackup it runs for. It may remove a set's oldest segments: the manifest is
//! rewritten without them first, so a partition's chain then starts at a later position.
//!
//! [`read_manifest`], [`list_backup_sets`] and [`summarize`] are what the catalog reads.

pub mod segment;

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{ObjectLocation, StorageError, snapshot::SnapshotSource};

/// Directory of backup sets below a storage prefix.
pub const BACKUP_DIR: &str = "backups";
/// Value of [`Manifest::format`].
pub const FORMAT: &str = "kafka-backup-operator/backup-set/v1";

/// The directory of a backup set.
pub fn set_dir(backup_id: &str) -> String {
    format!("{BACKUP_DIR}/{backup_id}")
}

/// File name of a set's manifest.
const MANIFEST_FILE: &str = "manifest.json";
/// Directory of a set's restore states, relative to the set.
const RESTORES_DIR: &str = "restores/";

/// The key of a set's manifest.
pub fn manifest_key(backup_id: &str) -> String {
    format!("{BACKUP_DIR}/{backup_id}/{MANIFEST_FILE}")
}

/// A set being deleted: its manifest, copied here before the manifest itself is deleted and
/// deleted last, so that a deletion interrupted in between can be finished by the backup it
/// names ([`delete_set`]).
const TOMBSTONE_FILE: &str = "deleting.json";

/// The key of a set's tombstone.
pub fn tombstone_key(backup_id: &str) -> String {
    format!("{BACKUP_DIR}/{backup_id}/{TOMBSTONE_FILE}")
}

/// The key of a set's consumer-group snapshot.
pub fn group_snapshot_key(backup_id: &str) -> String {
    format!("{BACKUP_DIR}/{backup_id}/consumer-groups-snapshot.json")
}

/// The directory of a partition's segments.
pub fn partition_dir(backup_id: &str, topic: &str, partition: i32) -> String {
    format!("{BACKUP_DIR}/{backup_id}/topics/{topic}/{partition}")
}

/// The key of a segment.
pub fn segment_key(backup_id: &str, topic: &str, partition: i32, first_offset: i64) -> String {
    format!(
        "{}/{first_offset:020}.seg",
        partition_dir(backup_id, topic, partition)
    )
}

/// Parses a key relative to `backups/<id>/topics/`: `<topic>/<partition>/<offset>.seg`.
pub fn parse_segment_key(relative: &str) -> Option<(String, i32, i64)> {
    let mut parts = relative.split('/');
    let topic = parts.next()?;
    let partition = parts.next()?.parse().ok()?;
    let offset = parts.next()?.strip_suffix(".seg")?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((topic.to_owned(), partition, offset))
}

/// The directory of a restore's state.
pub fn restore_dir(backup_id: &str, restore: &str) -> String {
    format!("{BACKUP_DIR}/{backup_id}/{RESTORES_DIR}{restore}")
}

/// Whether a set is still being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetState {
    /// A run is writing (or crashed while writing); what the manifest lists is stored.
    InProgress,
    /// The last run finished.
    Complete,
    /// The writer recorded no completion: a set of the prior art's format
    /// ([`crate::storage::prior_art`]), which may or may not be complete. Never written.
    Unknown,
}

/// The index of a backup set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The set's id.
    pub backup_id: String,
    /// InProgress or Complete.
    pub state: SetState,
    /// When the first run started.
    pub created_at: DateTime<Utc>,
    /// When the manifest was last written.
    pub updated_at: DateTime<Utc>,
    /// The source cluster id declared by the KafkaBackup (`sourceClusterId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cluster_id: Option<String>,
    /// The cluster id the Kafka cluster reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_cluster_id: Option<String>,
    /// Bootstrap servers of the source cluster.
    #[serde(default)]
    pub bootstrap_servers: Vec<String>,
    /// The KafkaBackup writing the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<SnapshotSource>,
    /// Codec of the segments written last (each segment names its own).
    pub compression: String,
    /// Whether records carry the backup's tracking headers (flagged in the segments).
    #[serde(default)]
    pub include_offset_headers: bool,
    /// The topics.
    #[serde(default)]
    pub topics: BTreeMap<String, TopicEntry>,
    /// The consumer-group snapshot stored with the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_snapshot: Option<GroupSnapshotEntry>,
    /// Finished runs, oldest first.
    #[serde(default)]
    pub runs: Vec<RunEntry>,
    /// The run writing now (state InProgress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_run: Option<CurrentRun>,
}

/// A topic of a set.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicEntry {
    /// Partition count of the topic on the source when last backed up.
    pub partition_count: i32,
    /// Non-default configuration the source reported for the topic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, String>,
    /// The partitions.
    #[serde(default)]
    pub partitions: BTreeMap<i32, PartitionEntry>,
}

/// A partition of a set.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionEntry {
    /// The position the next run continues at.
    pub next_offset: i64,
    /// Its segments, in offset order.
    #[serde(default)]
    pub segments: Vec<SegmentEntry>,
    /// Offsets that could not be backed up because the log start had moved past them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
}

/// A segment, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentEntry {
    /// Key below the storage prefix.
    pub key: String,
    /// First record offset.
    pub first_offset: i64,
    /// Last record offset.
    pub last_offset: i64,
    /// Position the segment starts at.
    pub position_start: i64,
    /// Position after it.
    pub position_end: i64,
    /// Records.
    pub records: u64,
    /// Smallest record timestamp (epoch ms).
    pub min_timestamp: i64,
    /// Largest record timestamp (epoch ms).
    pub max_timestamp: i64,
    /// Bytes of the uncompressed body.
    pub uncompressed_bytes: u64,
    /// Bytes of the object.
    pub stored_bytes: u64,
    /// CRC-32C of the stored body.
    pub crc32c: u32,
}

impl SegmentEntry {
    /// The manifest entry of a stored segment.
    pub fn from_header(key: String, h: &segment::SegmentHeader) -> Self {
        SegmentEntry {
            key,
            first_offset: h.first_offset,
            last_offset: h.last_offset,
            position_start: h.position_start,
            position_end: h.position_end,
            records: h.records,
            min_timestamp: h.min_timestamp,
            max_timestamp: h.max_timestamp,
            uncompressed_bytes: h.uncompressed_len,
            stored_bytes: h.stored_len + segment::HEADER_LEN as u64,
            crc32c: h.body_crc,
        }
    }
}

/// Offsets missing from a partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    /// First missing offset.
    pub from: i64,
    /// First offset after the gap.
    pub to: i64,
    /// Why.
    pub reason: String,
}

/// The consumer-group snapshot of a set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSnapshotEntry {
    /// Its key.
    pub key: String,
    /// When the offsets were read.
    pub timestamp: DateTime<Utc>,
    /// Groups in it.
    pub groups: Vec<String>,
    /// Partitions with an offset, over all groups.
    pub partitions: u64,
}

/// The consumer-group snapshot document: committed offsets per group, topic and partition.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSnapshot {
    /// When the offsets were read.
    pub timestamp: Option<DateTime<Utc>>,
    /// Offsets.
    pub groups: BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>>,
}

/// A finished run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunEntry {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Records stored.
    pub records: u64,
    /// Bytes of the records stored ([`segment::record_bytes`]).
    pub bytes: u64,
    /// Segments stored.
    pub segments: u64,
    /// Succeeded or Cancelled.
    pub outcome: String,
    /// The KafkaBackup that ran it (absent in sets written before runs recorded it); retention
    /// deletes a set only when every run of it was made by the deleting KafkaBackup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<SnapshotSource>,
}

/// The run writing the set now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentRun {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// With stopAtCurrentOffsets: the end offset of every partition when the run started; a
    /// resumed run stops at the same offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_offsets: Option<BTreeMap<String, BTreeMap<i32, i64>>>,
    /// A run split over worker processes: which shard copies which partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<ShardPlan>,
}

/// The partitions of each shard of a run split over worker processes, recorded by the
/// coordinator before any worker starts, so that every worker, and a worker run again after a
/// crash, copies the same partitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardPlan {
    /// Names the plan: the shards' results are stored below [`shard_dir`] of it, so results of
    /// an earlier plan are never taken for this one's.
    pub id: String,
    /// Per shard (the index is the position), its partitions by topic.
    pub shards: Vec<BTreeMap<String, Vec<i32>>>,
}

impl ShardPlan {
    /// The partitions of shard `index`, in order; none for an index outside the plan.
    pub fn partitions(&self, index: usize) -> Vec<(String, i32)> {
        self.shards.get(index).map_or_else(Vec::new, |topics| {
            topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect()
        })
    }
}

/// How far a shard got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardPhase {
    /// Copying (or it crashed while copying): what its result lists is stored.
    Running,
    /// Every partition of the shard reached its end; written create-only, once.
    Completed,
    /// Stopped by cancellation after a final checkpoint; resumable.
    Cancelled,
    /// Failed; `error` says why. Resumable.
    Failed,
}

/// What one shard of a run split over worker processes stored: its partitions with their
/// segments (as the manifest lists them), its counters and its phase. The coordinator merges
/// the results of every shard into the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardResult {
    /// The [`ShardPlan::id`] it belongs to.
    pub plan: String,
    /// Its index.
    pub index: usize,
    /// How many shards the plan has.
    pub count: usize,
    /// How far it got.
    pub phase: ShardPhase,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When written.
    pub updated_at: DateTime<Utc>,
    /// Records stored by the shard in this run (over its attempts).
    pub records: u64,
    /// Their [`segment::record_bytes`].
    pub bytes: u64,
    /// Segments stored by the shard in this run.
    pub segments: u64,
    /// Partitions of the shard that reached their end.
    pub partitions_done: usize,
    /// Its partitions, by topic, with every segment of each.
    pub topics: BTreeMap<String, BTreeMap<i32, PartitionEntry>>,
}

impl ShardResult {
    /// The JSON bytes.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }
}

/// The directory of the shard results of a plan.
pub fn shard_dir(backup_id: &str, plan: &str) -> String {
    format!("{BACKUP_DIR}/{backup_id}/shards/{plan}")
}

/// The key of a shard's result while it runs (overwritten at each checkpoint).
pub fn shard_progress_key(backup_id: &str, plan: &str, index: usize) -> String {
    format!("{}/{index}.json", shard_dir(backup_id, plan))
}

/// The key of a shard's final result: written create-only once it completed, so two workers of
/// the same shard cannot both complete it.
pub fn shard_done_key(backup_id: &str, plan: &str, index: usize) -> String {
    format!("{}/{index}.done.json", shard_dir(backup_id, plan))
}

/// Reads the result of shard `index` of `plan`: the final one when it completed, else the one
/// it wrote last; `None` when it wrote none.
pub async fn read_shard_result(
    location: &ObjectLocation,
    backup_id: &str,
    plan: &str,
    index: usize,
) -> Result<Option<ShardResult>, BackupFormatError> {
    for key in [
        shard_done_key(backup_id, plan, index),
        shard_progress_key(backup_id, plan, index),
    ] {
        if let Some(bytes) = location.get(&key).await? {
            let result: ShardResult =
                serde_json::from_slice(&bytes).map_err(|e| BackupFormatError::Manifest {
                    uri: location.uri(&key),
                    message: format!("not a shard result: {e}"),
                })?;
            return Ok(Some(result));
        }
    }
    Ok(None)
}

/// Why a stored backup set cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BackupFormatError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The manifest does not parse.
    #[error("{uri} is not a valid backup manifest: {message}")]
    Manifest {
        /// Where.
        uri: String,
        /// Why.
        message: String,
    },
}

impl BackupFormatError {
    /// Another attempt may read it: only when storage itself failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackupFormatError::Storage(e) => e.is_retryable(),
            BackupFormatError::Manifest { .. } => false,
        }
    }
}

impl Manifest {
    /// A new, empty set.
    pub fn new(backup_id: &str, now: DateTime<Utc>) -> Self {
        Manifest {
            format: FORMAT.into(),
            backup_id: backup_id.into(),
            state: SetState::InProgress,
            created_at: now,
            updated_at: now,
            source_cluster_id: None,
            kafka_cluster_id: None,
            bootstrap_servers: Vec::new(),
            owner: None,
            compression: "none".into(),
            include_offset_headers: false,
            topics: BTreeMap::new(),
            group_snapshot: None,
            runs: Vec::new(),
            current_run: None,
        }
    }

    /// Parses a manifest and checks its format and id.
    pub fn parse(bytes: &[u8], backup_id: &str, uri: &str) -> Result<Self, BackupFormatError> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| BackupFormatError::Manifest {
            uri: uri.into(),
            message: e.to_string(),
        })?;
        if manifest.format != FORMAT {
            return Err(BackupFormatError::Manifest {
                uri: uri.into(),
                message: format!("format {:?}, this build reads {FORMAT:?}", manifest.format),
            });
        }
        if manifest.backup_id != backup_id {
            return Err(BackupFormatError::Manifest {
                uri: uri.into(),
                message: format!(
                    "it describes backup set {:?}, not {backup_id:?}",
                    manifest.backup_id
                ),
            });
        }
        Ok(manifest)
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec_pretty(self).unwrap_or_default())
    }
}

/// Reads the manifest of a set; `None` when the set has none (never written or no run got to
/// its first checkpoint).
pub async fn read_manifest(
    location: &ObjectLocation,
    backup_id: &str,
) -> Result<Option<Manifest>, BackupFormatError> {
    read_manifest_at(location, &manifest_key(backup_id), backup_id).await
}

/// Reads the manifest a set's tombstone holds: the set's deletion was interrupted after its
/// manifest went.
pub async fn read_tombstone(
    location: &ObjectLocation,
    backup_id: &str,
) -> Result<Option<Manifest>, BackupFormatError> {
    read_manifest_at(location, &tombstone_key(backup_id), backup_id).await
}

/// Reads the manifest of set `backup_id` stored at `key`.
async fn read_manifest_at(
    location: &ObjectLocation,
    key: &str,
    backup_id: &str,
) -> Result<Option<Manifest>, BackupFormatError> {
    match location.get(key).await? {
        None => Ok(None),
        Some(bytes) => Manifest::parse(&bytes, backup_id, &location.uri(key)).map(Some),
    }
}

/// Reads a set's consumer-group snapshot.
pub async fn read_group_snapshot(
    location: &ObjectLocation,
    manifest: &Manifest,
) -> Result<Option<GroupSnapshot>, BackupFormatError> {
    let Some(entry) = &manifest.group_snapshot else {
        return Ok(None);
    };
    match location.get(&entry.key).await? {
        None => Err(BackupFormatError::Manifest {
            uri: location.uri(&entry.key),
            message: "the consumer-group snapshot the manifest lists is missing".into(),
        }),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BackupFormatError::Manifest {
                uri: location.uri(&entry.key),
                message: format!("not a consumer-group snapshot: {e}"),
            }),
    }
}

/// What a backup set holds, for the catalog and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SetSummary {
    /// The id.
    pub backup_id: String,
    /// URI of the set's directory.
    pub location: String,
    /// The last run finished.
    pub complete: bool,
    /// The format it is stored in ([`FORMAT`] or [`crate::storage::prior_art::FORMAT`]).
    pub format: String,
    /// Per topic: name, partitions, records, uncompressed bytes.
    pub topics: Vec<TopicSummary>,
    /// Partitions over all topics.
    pub partitions: u64,
    /// Records over all topics.
    pub records: u64,
    /// Uncompressed bytes of record data.
    pub bytes: u64,
    /// Bytes stored (segment objects).
    pub stored_bytes: u64,
    /// Segments.
    pub segments: u64,
    /// Earliest record timestamp: start of the point-in-time window.
    pub first_record_time: Option<DateTime<Utc>>,
    /// Latest record timestamp: end of the window.
    pub last_record_time: Option<DateTime<Utc>>,
    /// When the set was created.
    pub created: Option<DateTime<Utc>>,
    /// When the manifest was last written.
    pub updated: Option<DateTime<Utc>>,
    /// The source cluster (its bootstrap servers).
    pub cluster: Option<String>,
    /// Declared source cluster id.
    pub source_cluster_id: Option<String>,
    /// The KafkaBackup that writes the set.
    pub owner: Option<SnapshotSource>,
    /// The consumer-group snapshot, when one is stored.
    pub group_snapshot: Option<GroupSnapshotEntry>,
}

/// One topic of a [`SetSummary`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TopicSummary {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: u64,
    /// Records.
    pub records: u64,
    /// Uncompressed bytes.
    pub bytes: u64,
}

/// Summarises a manifest; `location` is the URI of the set's directory.
pub fn summarize(manifest: &Manifest, location: &str) -> SetSummary {
    let mut s = SetSummary {
        backup_id: manifest.backup_id.clone(),
        location: location.into(),
        complete: manifest.state == SetState::Complete,
        format: manifest.format.clone(),
        created: Some(manifest.created_at),
        updated: Some(manifest.updated_at),
        cluster: (!manifest.bootstrap_servers.is_empty()).then(|| manifest.bootstrap_servers.join(",")),
        source_cluster_id: manifest.source_cluster_id.clone(),
        owner: manifest.owner.clone(),
        group_snapshot: manifest.group_snapshot.clone(),
        ..Default::default()
    };
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    for (name, topic) in &manifest.topics {
        let mut t = TopicSummary {
            name: name.clone(),
            partitions: topic.partitions.len() as u64,
            ..Default::default()
        };
        for seg in topic.partitions.values().flat_map(|p| &p.segments) {
            t.records += seg.records;
            t.bytes += seg.uncompressed_bytes;
            s.stored_bytes += seg.stored_bytes;
            s.segments += 1;
            min_ts = min_ts.min(seg.min_timestamp);
            max_ts = max_ts.max(seg.max_timestamp);
        }
        s.partitions += t.partitions;
        s.records += t.records;
        s.bytes += t.bytes;
        s.topics.push(t);
    }
    if s.segments > 0 {
        s.first_record_time = Utc.timestamp_millis_opt(min_ts).single();
        s.last_record_time = Utc.timestamp_millis_opt(max_ts).single();
    }
    s
}

/// The ids of the backup sets in a location: the directories directly below `backups/`, found
/// by one delimited listing of that prefix (no segment is listed).
pub async fn list_set_ids(location: &ObjectLocation) -> Result<Vec<String>, StorageError> {
    let base = location.path(BACKUP_DIR);
    let listing = location
        .store()
        .list_with_delimiter(Some(&base))
        .await
        .map_err(|source| StorageError::Object {
            operation: "list",
            uri: location.uri(BACKUP_DIR),
            source,
        })?;
    Ok(listing
        .common_prefixes
        .iter()
        .filter_map(|dir| dir.filename().map(str::to_owned))
        .collect())
}

/// Every backup set in a location (directories below `backups/` with a manifest), summarised.
/// Directories without a readable manifest are skipped, their errors returned alongside.
pub async fn list_backup_sets(
    location: &ObjectLocation,
) -> Result<(Vec<SetSummary>, Vec<BackupFormatError>), StorageError> {
    let mut sets = Vec::new();
    let mut errors = Vec::new();
    for id in list_set_ids(location).await? {
        match read_manifest(location, &id).await {
            Ok(Some(m)) => sets.push(summarize(&m, &location.uri(&set_dir(&id)))),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    sets.sort_by(|a, b| a.backup_id.cmp(&b.backup_id));
    Ok((sets, errors))
}

/// Deletes a backup set: its manifest first, so that an interrupted deletion never leaves a
/// manifest listing a missing segment, then every other object of the set (segments, listed
/// or not, and the consumer-group snapshot). The manifest is copied to the set's tombstone
/// before it goes and the tombstone is deleted last: a deletion interrupted in between is
/// finished by calling this again (retention does, for sets its backup wrote). The state and
/// offset mappings of restores made from the set (`restores/`) are kept: consumer offsets
/// translated with them must stay translatable after the data is gone. Returns the objects and
/// bytes deleted.
pub async fn delete_set(location: &ObjectLocation, backup_id: &str) -> Result<(u64, u64), StorageError> {
    let dir = set_dir(backup_id);
    let objects = location.list(&dir).await?;
    let (mut count, mut bytes) = (0, 0);
    if let Some(manifest) = location.get(&manifest_key(backup_id)).await? {
        location.put(&tombstone_key(backup_id), manifest).await?;
        if location.delete(&manifest_key(backup_id)).await? {
            count += 1;
            bytes += objects
                .iter()
                .find(|o| o.key == MANIFEST_FILE)
                .map_or(0, |o| o.size);
        }
    }
    for object in &objects {
        if [MANIFEST_FILE, TOMBSTONE_FILE].contains(&object.key.as_str())
            || object.key.starts_with(RESTORES_DIR)
        {
            continue;
        }
        if location.delete(&format!("{dir}/{}", object.key)).await? {
            count += 1;
            bytes += object.size;
        }
    }
    location.delete(&tombstone_key(backup_id)).await?;
    Ok((count, bytes))
}

/// The segment objects stored for a set, whether or not its manifest lists them:
/// `(topic, partition, first offset) -> key`.
pub async fn list_segments(
    location: &ObjectLocation,
    backup_id: &str,
) -> Result<BTreeMap<(String, i32, i64), String>, StorageError> {
    let dir = format!("{}/topics", set_dir(backup_id));
    let base = location.path(&dir);
    let base_str = base.to_string();
    let objects: Vec<_> = location
        .store()
        .list(Some(&base))
        .try_collect()
        .await
        .map_err(|source| StorageError::Object {
            operation: "list",
            uri: location.uri(&dir),
            source,
        })?;
    let mut out = BTreeMap::new();
    for meta in objects {
        let full = meta.location.to_string();
        let relative = full
            .strip_prefix(&base_str)
            .unwrap_or(&full)
            .trim_start_matches('/');
        if let Some(id) = parse_segment_key(relative) {
            out.insert(id, format!("{dir}/{relative}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_parse_back() {
        let key = segment_key("b", "orders.v1", 3, 42);
        assert_eq!(key, "backups/b/topics/orders.v1/3/00000000000000000042.seg");
        let rel = key.strip_prefix("backups/b/topics/").unwrap();
        assert_eq!(parse_segment_key(rel), Some(("orders.v1".into(), 3, 42)));
        assert_eq!(parse_segment_key("t/x/1.seg"), None);
        assert_eq!(parse_segment_key("t/1/1.tmp"), None);
    }

    #[test]
    fn manifest_round_trips_and_summarises() {
        let now = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        let mut m = Manifest::new("b1", now);
        m.state = SetState::Complete;
        let seg = |first: i64, records: u64, min: i64, max: i64| SegmentEntry {
            key: format!("k{first}"),
            first_offset: first,
            last_offset: first + records as i64 - 1,
            position_start: first,
            position_end: first + records as i64,
            records,
            min_timestamp: min,
            max_timestamp: max,
            uncompressed_bytes: records * 10,
            stored_bytes: records * 5,
            crc32c: 0,
        };
        m.topics.insert(
            "orders".into(),
            TopicEntry {
                partition_count: 2,
                configs: BTreeMap::new(),
                partitions: BTreeMap::from([
                    (
                        0,
                        PartitionEntry {
                            next_offset: 20,
                            segments: vec![seg(0, 10, 5, 9), seg(10, 10, 10, 20)],
                            gaps: vec![],
                        },
                    ),
                    (1, PartitionEntry::default()),
                ]),
            },
        );
        let parsed = Manifest::parse(&m.to_bytes(), "b1", "u").unwrap();
        assert_eq!(parsed, m);
        let e = Manifest::parse(&m.to_bytes(), "b2", "s3://x/m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not \"b2\""), "{e}");
        let s = summarize(&m, "s3://x/backups/b1");
        assert_eq!((s.partitions, s.records, s.bytes, s.segments), (2, 20, 200, 2));
        assert_eq!(s.first_record_time.unwrap().timestamp_millis(), 5);
        assert_eq!(s.last_record_time.unwrap().timestamp_millis(), 20);
        assert!(s.complete);
    }
}
