//! Retention of backup sets (`spec.retention` of KafkaBackup), run after each successful run.
//!
//! 1. **Find** the sets: one delimited listing of `backups/` (set directories only, never their
//!    segments) and their manifests, reduced to a [`SetInfo`] each as they are read. A set
//!    belongs to this KafkaBackup when its manifest's `owner` and every run that recorded one
//!    name this KafkaBackup (kind, namespace and name: a KafkaBackup deleted and created again
//!    under its name keeps managing its sets). Sets with another or no owner, and manifests
//!    that do not parse, are never touched.
//! 2. **Plan** ([`plan`], pure): `keepLast` keeps the N most recently written sets of this
//!    KafkaBackup, the current one first; `maxAgeDays` deletes its other sets whose newest
//!    record is older than the cutoff (a set without records: its last write), and the current
//!    set's segments whose newest record is older, oldest first per partition, stopping at the
//!    first younger one (a partition's kept records stay contiguous) and always keeping the
//!    partition's last segment.
//! 3. **Apply** (unless `dryRun`): the current set's manifest is rewritten without the expired
//!    segments (and the recorded gaps before them) *before* they are deleted, so an
//!    interruption leaves unlisted objects (the next run's orphan scan deletes them), never a
//!    manifest that lists a missing segment. Whole sets are deleted manifest first
//!    ([`backup::delete_set`]), after copying it to the set's tombstone; a set whose deletion
//!    was interrupted (a tombstone, no manifest) and whose tombstone names this KafkaBackup is
//!    deleted again, whatever the policy.
//!
//! A failure is reported in `status.retention.error` with the figures reached so far; the
//! backup run itself stays successful.

use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt, stream};

use super::owner;
use crate::{
    api::v1beta1::{BackupRetentionSpec, BackupRetentionStatus, StorageSpec},
    ops::{Context, time},
    storage::{
        Location, ObjectLocation, StorageError,
        backup::{self, BackupFormatError, Manifest, SegmentEntry, summarize},
        snapshot::SnapshotSource,
    },
};

/// Manifests read and objects deleted at the same time.
const PARALLEL_REQUESTS: usize = 8;

/// Why a retention pass failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The current set's manifest cannot be read.
    #[error(transparent)]
    Format(#[from] BackupFormatError),
    /// The storage cannot hold backups (the run would have failed first).
    #[error("spec.storage.type: ConfigMap storage holds no backup sets")]
    ConfigMap,
    /// The set the run just wrote has no manifest.
    #[error("backup set {backup_id}: its manifest is missing right after the run wrote it")]
    MissingManifest {
        /// The set.
        backup_id: String,
    },
}

/// The policy of `spec.retention`, in planning units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Sets to keep (`keepLast`, at least 1).
    pub keep_last: Option<usize>,
    /// Age after which records expire (`maxAgeDays`).
    pub max_age: Option<TimeDelta>,
}

impl From<&BackupRetentionSpec> for Policy {
    fn from(spec: &BackupRetentionSpec) -> Self {
        Policy {
            keep_last: spec.keep_last.map(|n| n.max(1) as usize),
            max_age: spec.max_age_days.map(|d| TimeDelta::days(i64::from(d.max(1)))),
        }
    }
}

/// What retention needs to know of a set other than the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetInfo {
    /// The set's id.
    pub backup_id: String,
    /// Every writer the manifest records is the KafkaBackup retention runs for.
    pub owned: bool,
    /// When the manifest was last written.
    pub last_written: DateTime<Utc>,
    /// The newest record's timestamp; `None` for a set without records.
    pub newest_record: Option<DateTime<Utc>>,
    /// Bytes of the segments the manifest lists.
    pub stored_bytes: u64,
    /// Its deletion was interrupted: only its tombstone holds the manifest.
    pub deleting: bool,
}

/// Whether every writer a manifest records is `owner`. Pure.
pub fn written_only_by(manifest: &Manifest, owner: &SnapshotSource) -> bool {
    let same =
        |o: &SnapshotSource| o.kind == owner.kind && o.namespace == owner.namespace && o.name == owner.name;
    manifest.owner.as_ref().is_some_and(same)
        && manifest.runs.iter().all(|r| r.owner.as_ref().is_none_or(same))
}

/// Reduces a manifest to what retention judges. Pure.
pub fn set_info(manifest: &Manifest, owner: &SnapshotSource) -> SetInfo {
    let summary = summarize(manifest, "");
    SetInfo {
        backup_id: manifest.backup_id.clone(),
        owned: written_only_by(manifest, owner),
        last_written: manifest.updated_at,
        newest_record: summary.last_record_time,
        stored_bytes: summary.stored_bytes,
        deleting: false,
    }
}

/// Why a whole set is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetReason {
    /// Older than the `keepLast` newest sets.
    KeepLast,
    /// Its newest record is older than `maxAgeDays`.
    MaxAge,
    /// An earlier pass began deleting it and was interrupted.
    Interrupted,
}

/// A whole set to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDeletion {
    /// The set's id.
    pub backup_id: String,
    /// Why.
    pub reason: SetReason,
    /// Bytes of its segments.
    pub stored_bytes: u64,
}

/// What a retention pass deletes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Sets of this KafkaBackup (the current one included) plus, with `maxAgeDays`, the
    /// current set's segments.
    pub inspected: u64,
    /// Whole sets, newest first.
    pub sets: Vec<SetDeletion>,
    /// Expired segments of the current set.
    pub segments: Vec<SegmentEntry>,
    /// The current set's manifest without `segments`, when there are any.
    pub trimmed: Option<Manifest>,
}

impl Plan {
    /// Sets and segments selected for deletion.
    pub fn eligible(&self) -> u64 {
        (self.sets.len() + self.segments.len()) as u64
    }

    /// Bytes the selected sets and segments occupy.
    pub fn bytes(&self) -> u64 {
        self.sets.iter().map(|s| s.stored_bytes).sum::<u64>()
            + self.segments.iter().map(|s| s.stored_bytes).sum::<u64>()
    }
}

/// Plans a retention pass over the current set and the other sets found. Pure.
pub fn plan(current: &Manifest, others: &[SetInfo], policy: Policy, now: DateTime<Utc>) -> Plan {
    let cutoff = policy.max_age.and_then(|age| now.checked_sub_signed(age));
    let mut owned: Vec<&SetInfo> = others
        .iter()
        .filter(|s| s.owned && s.backup_id != current.backup_id)
        .collect();
    // Sets being deleted are finished first and count for nothing else.
    let mut sets: Vec<SetDeletion> = owned
        .iter()
        .filter(|s| s.deleting)
        .map(|s| SetDeletion {
            backup_id: s.backup_id.clone(),
            reason: SetReason::Interrupted,
            stored_bytes: s.stored_bytes,
        })
        .collect();
    owned.retain(|s| !s.deleting);
    let interrupted = sets.len();
    // Newest first; the current set, written just now, is always first and always kept.
    owned.sort_by(|a, b| (b.last_written, &b.backup_id).cmp(&(a.last_written, &a.backup_id)));
    for (rank, set) in owned.iter().enumerate() {
        // rank + 1: the current set takes the first place.
        let reason = if policy.keep_last.is_some_and(|n| rank + 1 >= n) {
            Some(SetReason::KeepLast)
        } else if cutoff.is_some_and(|c| set.newest_record.unwrap_or(set.last_written) < c) {
            Some(SetReason::MaxAge)
        } else {
            None
        };
        if let Some(reason) = reason {
            sets.push(SetDeletion {
                backup_id: set.backup_id.clone(),
                reason,
                stored_bytes: set.stored_bytes,
            });
        }
    }
    let mut inspected = (owned.len() + interrupted) as u64 + 1;
    let mut segments = Vec::new();
    let mut trimmed = None;
    if let Some(cutoff) = cutoff {
        let cutoff_ms = cutoff.timestamp_millis();
        let mut m = current.clone();
        for partition in m.topics.values_mut().flat_map(|t| t.partitions.values_mut()) {
            inspected += partition.segments.len() as u64;
            let expired = partition
                .segments
                .iter()
                .take(partition.segments.len().saturating_sub(1))
                .take_while(|s| s.max_timestamp < cutoff_ms)
                .count();
            if expired == 0 {
                continue;
            }
            segments.extend(partition.segments.drain(..expired));
            // Gaps before the first kept segment describe offsets the set no longer covers.
            if let Some(start) = partition.segments.first().map(|s| s.position_start) {
                partition.gaps.retain(|g| g.to > start);
            }
        }
        if !segments.is_empty() {
            m.updated_at = now;
            trimmed = Some(m);
        }
    }
    Plan {
        inspected,
        sets,
        segments,
        trimmed,
    }
}

/// Runs a retention pass for the set `current_id` and reports it.
pub async fn apply(
    storage: &StorageSpec,
    current_id: &str,
    spec: &BackupRetentionSpec,
    ctx: &Context,
    now: DateTime<Utc>,
) -> BackupRetentionStatus {
    let mut status = BackupRetentionStatus {
        last_run_time: Some(time(now)),
        dry_run: Some(spec.dry_run),
        deleted: Some(0),
        ..Default::default()
    };
    let location = match Location::open(storage, &ctx.secrets, &ctx.storage) {
        Ok(Location::Object(o)) => o,
        Ok(Location::ConfigMap(_)) => {
            status.error = Some(RetentionError::ConfigMap.to_string());
            return status;
        }
        Err(e) => {
            status.error = Some(e.to_string());
            return status;
        }
    };
    let plan = match find_and_plan(&location, current_id, &owner(ctx), spec.into(), now).await {
        Ok(plan) => plan,
        Err(e) => {
            status.error = Some(format!("retention of backup set {current_id}: {e}"));
            return status;
        }
    };
    status.inspected = Some(plan.inspected as i64);
    status.eligible = Some(plan.eligible() as i64);
    if spec.dry_run {
        status.reclaimed_bytes = Some(plan.bytes() as i64);
        return status;
    }
    let mut done = Deleted::default();
    let result = delete(&location, &plan, &mut done).await;
    status.deleted = Some(done.items as i64);
    status.reclaimed_bytes = Some(done.bytes as i64);
    if let Err(e) = result {
        status.error = Some(format!(
            "retention of backup set {current_id} stopped after deleting {} of {} sets and segments: {e}",
            done.items,
            plan.eligible()
        ));
    }
    status
}

/// Reads the sets of a location and plans the pass.
async fn find_and_plan(
    location: &ObjectLocation,
    current_id: &str,
    owner: &SnapshotSource,
    policy: Policy,
    now: DateTime<Utc>,
) -> Result<Plan, RetentionError> {
    let current = backup::read_manifest(location, current_id)
        .await?
        .ok_or_else(|| RetentionError::MissingManifest {
            backup_id: current_id.into(),
        })?;
    let mut ids = backup::list_set_ids(location).await?;
    ids.retain(|id| id != current_id);
    let others: Vec<SetInfo> = stream::iter(ids)
        .map(|id| async move {
            let read = match backup::read_manifest(location, &id).await {
                Ok(None) => backup::read_tombstone(location, &id)
                    .await
                    .map(|m| m.map(|m| (m, true))),
                other => other.map(|m| m.map(|m| (m, false))),
            };
            match read {
                Ok(m) => Ok(m.map(|(m, deleting)| SetInfo {
                    deleting,
                    ..set_info(&m, owner)
                })),
                // A manifest this build cannot read names no owner it can trust: left alone.
                Err(BackupFormatError::Manifest { uri, message }) => {
                    tracing::warn!("retention skips {uri}: {message}");
                    Ok(None)
                }
                Err(BackupFormatError::Storage(e)) => Err(e),
            }
        })
        .buffer_unordered(PARALLEL_REQUESTS)
        .try_filter_map(|info| async move { Ok(info) })
        .try_collect()
        .await?;
    Ok(plan(&current, &others, policy, now))
}

/// Objects deleted so far.
#[derive(Debug, Default)]
struct Deleted {
    /// Sets and segments.
    items: u64,
    /// Bytes.
    bytes: u64,
}

/// Applies a plan: the trimmed manifest before its segments, then the whole sets.
async fn delete(location: &ObjectLocation, plan: &Plan, done: &mut Deleted) -> Result<(), StorageError> {
    if let Some(manifest) = &plan.trimmed {
        location
            .put(&backup::manifest_key(&manifest.backup_id), manifest.to_bytes())
            .await?;
        // Collected first: a stream over a borrowing iterator adapter is not `Send` for every
        // lifetime, which the reconciler's boxed future needs.
        let keys: Vec<(String, u64)> = plan
            .segments
            .iter()
            .map(|s| (s.key.clone(), s.stored_bytes))
            .collect();
        let results: Vec<Result<(bool, u64), StorageError>> = stream::iter(keys)
            .map(|(key, size)| async move { location.delete(&key).await.map(|found| (found, size)) })
            .buffer_unordered(PARALLEL_REQUESTS)
            .collect()
            .await;
        for result in results {
            let (found, size) = result?;
            done.items += 1;
            if found {
                done.bytes += size;
            }
        }
    }
    for set in &plan.sets {
        let (_, bytes) = backup::delete_set(location, &set.backup_id).await?;
        tracing::info!(
            "retention: backup set {} deleted ({:?}, {bytes} bytes)",
            set.backup_id,
            set.reason
        );
        done.items += 1;
        done.bytes += bytes;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use std::collections::BTreeMap;

    use super::*;
    use crate::storage::backup::{Gap, PartitionEntry, RunEntry, TopicEntry};

    const DAY: i64 = 86_400_000;

    fn owner_named(name: &str) -> SnapshotSource {
        SnapshotSource {
            kind: "KafkaBackup".into(),
            namespace: Some("team".into()),
            name: name.into(),
            uid: None,
        }
    }

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap()
    }

    fn info(id: &str, owned: bool, written_day: i64, newest_day: Option<i64>) -> SetInfo {
        SetInfo {
            backup_id: id.into(),
            owned,
            last_written: at(written_day * DAY),
            newest_record: newest_day.map(|d| at(d * DAY)),
            stored_bytes: 100,
            deleting: false,
        }
    }

    fn segment(first: i64, records: i64, max_day: i64) -> SegmentEntry {
        SegmentEntry {
            key: format!("backups/cur/topics/t/0/{first:020}.seg"),
            first_offset: first,
            last_offset: first + records - 1,
            position_start: first,
            position_end: first + records,
            records: records as u64,
            min_timestamp: max_day * DAY - 1000,
            max_timestamp: max_day * DAY,
            uncompressed_bytes: 10,
            stored_bytes: 7,
            crc32c: 0,
        }
    }

    /// The current set: partition 0 with segments of days 1, 2, 30, 3 (not monotonic) and a
    /// gap before them; partition 1 with one old segment.
    fn current() -> Manifest {
        let mut m = Manifest::new("cur", at(0));
        m.owner = Some(owner_named("b"));
        let p0 = PartitionEntry {
            next_offset: 40,
            segments: vec![
                segment(5, 10, 1),
                segment(15, 10, 2),
                segment(25, 10, 30),
                segment(35, 5, 3),
            ],
            gaps: vec![Gap {
                from: 0,
                to: 5,
                reason: "log start moved".into(),
            }],
        };
        let p1 = PartitionEntry {
            next_offset: 10,
            segments: vec![segment(0, 10, 1)],
            gaps: vec![],
        };
        m.topics.insert(
            "t".into(),
            TopicEntry {
                partition_count: 2,
                configs: BTreeMap::new(),
                partitions: BTreeMap::from([(0, p0), (1, p1)]),
            },
        );
        m
    }

    fn ids(plan: &Plan) -> Vec<(&str, SetReason)> {
        plan.sets
            .iter()
            .map(|s| (s.backup_id.as_str(), s.reason))
            .collect()
    }

    #[test]
    fn keep_last_keeps_the_newest_sets_of_this_backup_only() {
        let others = vec![
            info("old", true, 10, Some(10)),
            info("older", true, 5, Some(5)),
            info("newer", true, 20, Some(20)),
            info("foreign", false, 1, Some(1)),
        ];
        let policy = Policy {
            keep_last: Some(2),
            max_age: None,
        };
        let p = plan(&current(), &others, policy, at(40 * DAY));
        // The current set and "newer" are kept; sets of other writers are not even counted.
        assert_eq!(
            ids(&p),
            vec![("old", SetReason::KeepLast), ("older", SetReason::KeepLast)]
        );
        assert_eq!((p.inspected, p.eligible(), p.bytes()), (4, 2, 200));
        assert!(p.segments.is_empty() && p.trimmed.is_none());

        // keepLast 1 keeps the current set alone, even when an older id is written again.
        let mut again = current();
        again.backup_id = "older".into();
        let others = vec![info("cur", true, 30, Some(30)), info("older", true, 5, Some(5))];
        let policy = Policy {
            keep_last: Some(1),
            max_age: None,
        };
        let p = plan(&again, &others, policy, at(40 * DAY));
        assert_eq!(ids(&p), vec![("cur", SetReason::KeepLast)]);
    }

    #[test]
    fn interrupted_deletions_of_this_backup_are_finished_and_rank_nowhere() {
        let deleting = |id: &str, owned: bool| SetInfo {
            deleting: true,
            ..info(id, owned, 30, Some(30))
        };
        let others = vec![
            deleting("half-gone", true),
            deleting("foreign-half-gone", false),
            info("newer", true, 20, Some(20)),
            info("old", true, 10, Some(10)),
        ];
        let policy = Policy {
            keep_last: Some(2),
            max_age: None,
        };
        // "half-gone" would rank newest; it is not kept in place of "newer".
        let p = plan(&current(), &others, policy, at(40 * DAY));
        assert_eq!(
            ids(&p),
            vec![
                ("half-gone", SetReason::Interrupted),
                ("old", SetReason::KeepLast)
            ]
        );
        // Whatever the policy.
        let none = Policy {
            keep_last: None,
            max_age: None,
        };
        let p = plan(&current(), &others, none, at(40 * DAY));
        assert_eq!(ids(&p), vec![("half-gone", SetReason::Interrupted)]);
    }

    #[test]
    fn max_age_expires_old_sets_and_the_current_sets_oldest_segments() {
        let others = vec![
            info("fresh", true, 39, Some(35)),
            info("stale", true, 39, Some(9)),
            info("empty", true, 8, None),
            info("foreign-stale", false, 1, Some(1)),
        ];
        let policy = Policy {
            keep_last: None,
            max_age: Some(TimeDelta::days(10)),
        };
        let p = plan(&current(), &others, policy, at(40 * DAY));
        assert_eq!(
            ids(&p),
            vec![("stale", SetReason::MaxAge), ("empty", SetReason::MaxAge)]
        );
        // Partition 0: days 1 and 2 expire; day 30 stops the scan, so day 3 after it stays.
        // Partition 1: its only segment is its last one and stays.
        assert_eq!(
            p.segments.iter().map(|s| s.first_offset).collect::<Vec<_>>(),
            vec![5, 15]
        );
        assert_eq!(p.inspected, 4 + 5);
        assert_eq!((p.eligible(), p.bytes()), (4, 200 + 14));
        let trimmed = p.trimmed.unwrap();
        let p0 = &trimmed.topics["t"].partitions[&0];
        assert_eq!(
            p0.segments.iter().map(|s| s.first_offset).collect::<Vec<_>>(),
            vec![25, 35]
        );
        assert!(p0.gaps.is_empty(), "the gap before the kept segments goes");
        assert_eq!(p0.next_offset, 40, "the next run continues where it did");
        assert_eq!(trimmed.updated_at, at(40 * DAY));
        // The set's first record time moves to the oldest kept segment.
        let summary = summarize(&trimmed, "");
        assert_eq!(
            summary.first_record_time,
            Some(at(DAY - 1000)),
            "partition 1 keeps day 1"
        );
        assert_eq!(trimmed.topics["t"].partitions[&1].segments.len(), 1);
    }

    #[test]
    fn every_segment_young_or_last_leaves_the_manifest_alone() {
        let policy = Policy {
            keep_last: None,
            max_age: Some(TimeDelta::days(100)),
        };
        let p = plan(&current(), &[], policy, at(40 * DAY));
        assert_eq!((p.eligible(), p.trimmed.is_none(), p.inspected), (0, true, 6));
    }

    #[test]
    fn both_policies_delete_each_set_once() {
        let others = vec![info("a", true, 20, Some(1)), info("b", true, 19, Some(1))];
        let policy = Policy {
            keep_last: Some(2),
            max_age: Some(TimeDelta::days(10)),
        };
        let p = plan(&current(), &others, policy, at(40 * DAY));
        assert_eq!(
            ids(&p),
            vec![("a", SetReason::MaxAge), ("b", SetReason::KeepLast)]
        );
    }

    #[test]
    fn a_set_is_owned_only_when_every_recorded_writer_is_this_backup() {
        let me = owner_named("b");
        let mut m = current();
        assert!(written_only_by(&m, &me));
        assert!(!written_only_by(&m, &owner_named("other")));
        // uid is not compared: a KafkaBackup created again under its name keeps its sets.
        let mut again = me.clone();
        again.uid = Some("new".into());
        assert!(written_only_by(&m, &again));
        let run = |owner: Option<SnapshotSource>| RunEntry {
            started_at: at(0),
            finished_at: at(1),
            records: 1,
            bytes: 1,
            segments: 1,
            outcome: "Succeeded".into(),
            owner,
        };
        m.runs = vec![run(None), run(Some(me.clone()))];
        assert!(written_only_by(&m, &me), "runs from before owners were recorded");
        m.runs.push(run(Some(owner_named("other"))));
        assert!(!written_only_by(&m, &me), "another KafkaBackup continued the set");
        m.runs.clear();
        m.owner = None;
        assert!(!written_only_by(&m, &me), "no owner: never ours");
        let mut elsewhere = me.clone();
        elsewhere.namespace = Some("other-team".into());
        m.owner = Some(elsewhere);
        assert!(!written_only_by(&m, &me));
    }

    #[test]
    fn policy_reads_the_spec() {
        let spec = BackupRetentionSpec {
            keep_last: Some(0),
            max_age_days: Some(7),
            dry_run: true,
        };
        let p = Policy::from(&spec);
        assert_eq!(p.keep_last, Some(1));
        assert_eq!(p.max_age, Some(TimeDelta::days(7)));
    }
}
