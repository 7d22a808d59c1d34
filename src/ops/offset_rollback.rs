//! KafkaOffsetRollback: take an offset snapshot, roll groups back to one, verify the committed
//! offsets against one, or delete one. Snapshots use the format of [`crate::storage::snapshot`].

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use chrono::Utc;
use futures::{StreamExt, stream};

use super::{
    Context, DefaultSnapshots, SnapshotSearch,
    execution::{self, Policy, Retryable},
    group_commit::{self, Applied, GroupChange},
    time,
};
use crate::{
    api::v1beta1::{
        KafkaOffsetRollback, KafkaOffsetRollbackSpec, KafkaOffsetRollbackStatus, OffsetDifference, Phase,
        RollbackOperation, RollbackSnapshotInfo, RollbackVerification,
    },
    kafka::{
        self, ClusterAccess, KafkaError,
        groups::{Committed, GroupDescription, Partition},
        protocol::GroupAdmin,
    },
    metrics::RetryCause,
    storage::{
        self, Location, StorageError, prior_art,
        snapshot::{
            GroupOffsets, OffsetSnapshot, SnapshotError, SnapshotSource, read_snapshot, snapshot_key,
        },
    },
};

/// Differences listed in status.
const MAX_DIFFERENCES: usize = 100;

/// Groups read or committed at once.
const PARALLELISM: usize = 10;

/// Why an operation failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// Talking to Kafka failed.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored snapshot is unusable.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The snapshot does not exist.
    #[error("snapshot {snapshot_id} not found at {uri}")]
    NotFound {
        /// The id.
        snapshot_id: String,
        /// Where it was looked for.
        uri: String,
    },
    /// No default location holds the snapshot named by id alone.
    #[error("snapshot {snapshot_id} not found: {searched}; name its storage in spec.storage")]
    NotFoundIn {
        /// The id.
        snapshot_id: String,
        /// Where it was looked for.
        searched: String,
    },
    /// Several locations hold a snapshot named by id alone.
    #[error(
        "snapshot {snapshot_id} is in more than one storage location: {locations}; name the one to use in spec.storage"
    )]
    Ambiguous {
        /// The id.
        snapshot_id: String,
        /// The snapshot's URI in each.
        locations: String,
    },
    /// The spec lacks what the operation needs here.
    #[error("{field}: {message}")]
    Spec {
        /// Field path.
        field: &'static str,
        /// Why.
        message: String,
    },
}

impl Retryable for RollbackError {
    fn is_retryable(&self) -> bool {
        match self {
            RollbackError::Kafka(e) => e.is_retryable(),
            RollbackError::Storage(e) => e.is_retryable(),
            RollbackError::Snapshot(_)
            | RollbackError::NotFound { .. }
            | RollbackError::NotFoundIn { .. }
            | RollbackError::Ambiguous { .. }
            | RollbackError::Spec { .. } => false,
        }
    }
}

/// The comparison of committed offsets with a snapshot. Pure. `strict`: offsets must be equal
/// (otherwise at or ahead of the snapshot); `extra_is_difference`: an offset committed for a
/// partition the snapshot does not have counts as a difference.
pub fn compare(
    snapshot: &BTreeMap<String, GroupOffsets>,
    current: &BTreeMap<String, BTreeMap<Partition, Committed>>,
    strict: bool,
    extra_is_difference: bool,
) -> RollbackVerification {
    let mut differences = Vec::new();
    let mut groups_matched = 0;
    for (group, stored) in snapshot {
        let expected = stored.committed();
        let actual = current.get(group).cloned().unwrap_or_default();
        let partitions: BTreeSet<&Partition> = expected.keys().chain(actual.keys()).collect();
        let before = differences.len();
        for tp in partitions {
            let e = expected.get(tp).map(|c| c.offset);
            let a = actual.get(tp).map(|c| c.offset);
            let matches = match (e, a) {
                (Some(e), Some(a)) => a == e || (!strict && a > e),
                (None, None) => true,
                (None, Some(_)) => !extra_is_difference,
                (Some(_), None) => false,
            };
            if !matches {
                differences.push(OffsetDifference {
                    group: group.clone(),
                    topic: tp.0.clone(),
                    partition: tp.1,
                    expected: e,
                    actual: a,
                });
            }
        }
        if differences.len() == before {
            groups_matched += 1;
        }
    }
    let total = differences.len();
    RollbackVerification {
        matched: Some(total == 0),
        strict: Some(strict),
        groups_total: Some(snapshot.len() as i32),
        groups_matched: Some(groups_matched),
        groups_mismatched: Some(snapshot.len() as i32 - groups_matched),
        differences_total: Some(total as i32),
        differences: Some(differences.into_iter().take(MAX_DIFFERENCES).collect()),
    }
}

/// Runs a KafkaOffsetRollback and returns its final status.
pub async fn execute(rollback: &KafkaOffsetRollback, ctx: &Context) -> KafkaOffsetRollbackStatus {
    let status = KafkaOffsetRollbackStatus {
        phase: Some(Phase::Running),
        operation: Some(rollback.spec.operation),
        start_time: Some(time(Utc::now())),
        observed_generation: rollback.metadata.generation,
        ..Default::default()
    };
    // Every attempt writes into the one status; the lock hands it from one attempt to the next.
    let shared = tokio::sync::Mutex::new(status);
    let result = execution::attempts(rollback.spec.execution.as_ref(), ctx, |attempt| {
        let shared = &shared;
        async move { run(&rollback.spec, &attempt, &mut *shared.lock().await).await }
    })
    .await;
    let mut status = shared.into_inner();
    if let Err(failure) = result {
        status.phase = Some(Phase::Failed);
        status.message = Some(failure.to_string());
    }
    status.completion_time = Some(time(Utc::now()));
    status
}

async fn run(
    spec: &KafkaOffsetRollbackSpec,
    ctx: &Context,
    status: &mut KafkaOffsetRollbackStatus,
) -> Result<(), RollbackError> {
    let snapshot_id = resolve_snapshot_id(spec)?;
    status.snapshot_id = Some(snapshot_id.clone());
    let location = open_location(spec, &snapshot_id, ctx).await?;
    let key = snapshot_key(&snapshot_id);
    let uri = location.uri(&key);
    // Where a snapshot is looked for: this operator's document, then the prior art's directory.
    let looked_at = match &location {
        Location::Object(_) => format!(
            "{uri} or {}",
            location.uri(&prior_art::snapshot_key(&snapshot_id))
        ),
        Location::ConfigMap(c) => c.looked_at(&key),
    };
    match spec.operation {
        RollbackOperation::Snapshot => {
            let kafka = connect(spec, ctx).await?;
            let groups = spec.consumer_groups.clone().unwrap_or_default();
            let current = read_groups(&kafka, &groups, None).await?;
            let mut snapshot = OffsetSnapshot {
                snapshot_id: snapshot_id.clone(),
                timestamp: Utc::now(),
                cluster: cluster_name(spec),
                groups: BTreeMap::new(),
                source: Some(SnapshotSource {
                    kind: "KafkaOffsetRollback".into(),
                    namespace: ctx.resource.namespace.clone(),
                    name: ctx.resource.name.clone(),
                    uid: ctx.resource.uid.clone(),
                }),
                expires_at: None,
            };
            let read_at = snapshot.timestamp.timestamp_millis();
            for group in &groups {
                snapshot.insert_group(group, &current.get(group).cloned().unwrap_or_default(), read_at);
                snapshot.groups.entry(group.clone()).or_default();
            }
            status.snapshot = Some(info(&snapshot, &uri));
            if spec.dry_run {
                status.phase = Some(Phase::Completed);
                status.message = Some(format!(
                    "dry run: read {} partition offset(s) of {} group(s); nothing stored",
                    snapshot.partition_count(),
                    groups.len()
                ));
                return Ok(());
            }
            location.put_new(&key, snapshot.to_bytes()).await?;
            status.phase = Some(Phase::Completed);
            status.message = Some(format!(
                "snapshot {snapshot_id} of {} group(s), {} partition(s) stored at {uri}",
                groups.len(),
                snapshot.partition_count()
            ));
        }
        RollbackOperation::Delete => {
            let Some(stored) = read_snapshot(&location, &snapshot_id).await? else {
                return Err(RollbackError::NotFound {
                    snapshot_id,
                    uri: looked_at,
                });
            };
            if stored.prior_art {
                return Err(RollbackError::Spec {
                    field: "spec.snapshotId",
                    message: format!(
                        "snapshot {snapshot_id} at {} was written by kafka-backup 0.x: this operator reads such snapshots (rollback, verify, catalog) but never changes or deletes them",
                        stored.uri
                    ),
                });
            }
            if spec.dry_run {
                status.phase = Some(Phase::Completed);
                status.message = Some(format!("dry run: {uri} exists and would be deleted"));
                return Ok(());
            }
            location.delete(&key).await?;
            status.phase = Some(Phase::Completed);
            status.message = Some(format!("snapshot {snapshot_id} deleted from {uri}"));
        }
        RollbackOperation::Verify | RollbackOperation::Rollback => {
            // Either format: this operator's snapshots or the prior art's (read only).
            let stored =
                read_snapshot(&location, &snapshot_id)
                    .await?
                    .ok_or_else(|| RollbackError::NotFound {
                        snapshot_id: snapshot_id.clone(),
                        uri: looked_at.clone(),
                    })?;
            let snapshot = stored.snapshot;
            status.snapshot = Some(info(&snapshot, &stored.uri));
            let selected = select_groups(spec, &snapshot)?;
            let kafka = connect(spec, ctx).await?;
            if spec.operation == RollbackOperation::Rollback && !spec.dry_run {
                roll_back(spec, &kafka, &selected, status).await?;
            }
            // A rollback commits exact offsets; partitions the snapshot lacks only count when
            // they were to be removed.
            let (strict, extra_is_difference) = match spec.operation {
                RollbackOperation::Rollback => (true, spec.remove_offsets_not_in_snapshot),
                _ => {
                    let strict = spec.verify.as_ref().is_none_or(|v| v.strict);
                    (strict, strict)
                }
            };
            let compare_now =
                spec.operation == RollbackOperation::Verify || spec.dry_run || spec.verify_after_rollback;
            if compare_now && status.phase != Some(Phase::Failed) {
                let read = async {
                    let partitions = all_partitions(&kafka).await?;
                    read_groups(
                        &kafka,
                        &selected.keys().cloned().collect::<Vec<_>>(),
                        Some(partitions),
                    )
                    .await
                };
                let current = match read.await {
                    Ok(current) => current,
                    // After commits, what they did stays reported; only the comparison is
                    // missing.
                    Err(e) if spec.operation == RollbackOperation::Rollback && !spec.dry_run => {
                        let said = status.message.take().unwrap_or_default();
                        status.message = Some(format!(
                            "{said}; but reading the offsets back to compare them with snapshot {snapshot_id} failed: {e}"
                        ));
                        if status.phase == Some(Phase::Completed) {
                            status.phase = Some(Phase::Failed);
                        }
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                };
                let verification = compare(&selected, &current, strict, extra_is_difference);
                let matched = verification.matched == Some(true);
                let differences = verification.differences_total.unwrap_or(0);
                status.verification = Some(verification);
                match spec.operation {
                    RollbackOperation::Verify => {
                        status.phase = Some(if matched { Phase::Completed } else { Phase::Failed });
                        status.message = Some(if matched {
                            format!("committed offsets match snapshot {snapshot_id}")
                        } else {
                            format!(
                                "{differences} partition(s) differ from snapshot {snapshot_id}; see status.verification.differences"
                            )
                        });
                    }
                    _ if spec.dry_run => {
                        status.phase = Some(Phase::Completed);
                        status.message = Some(format!(
                            "dry run: {differences} partition(s) would change; nothing committed"
                        ));
                    }
                    _ if !matched && status.phase == Some(Phase::Completed) => {
                        status.phase = Some(Phase::Failed);
                        status.message = Some(format!(
                            "rolled back, but {differences} partition(s) differ from snapshot {snapshot_id} when read back"
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn resolve_snapshot_id(spec: &KafkaOffsetRollbackSpec) -> Result<String, RollbackError> {
    if let Some(id) = &spec.snapshot_id {
        return Ok(id.clone());
    }
    Err(RollbackError::Spec {
        field: "spec.snapshotFrom",
        message: "reading a KafkaOffsetReset's or KafkaRestore's status needs the Kubernetes API, and there is none here: name the snapshot with snapshotId and storage".into(),
    })
}

/// The location of the snapshot: the storage the spec names; else for operation Snapshot the
/// default ([`Context::snapshot_location`]); else the one location among the defaults that holds
/// `snapshot_id` ([`DefaultSnapshots`]: the catalog of the namespace in a cluster, the embedded
/// default location without one).
async fn open_location(
    spec: &KafkaOffsetRollbackSpec,
    snapshot_id: &str,
    ctx: &Context,
) -> Result<Location, RollbackError> {
    if spec.storage.is_some() || spec.operation == RollbackOperation::Snapshot {
        return Ok(ctx.snapshot_location(
            spec.storage.as_ref(),
            spec.execution.as_ref(),
            &ctx.resource.name,
        )?);
    }
    let search = match &ctx.default_snapshots {
        DefaultSnapshots::Embedded(dir) => {
            let location = storage::embedded_default(dir)?;
            let mut search = SnapshotSearch {
                searched: vec![location.uri(&snapshot_key(snapshot_id))],
                ..Default::default()
            };
            // Either format: this operator's document or the prior art's directory.
            if read_snapshot(&location, snapshot_id).await?.is_some() {
                search.found.push(location);
            }
            search
        }
        DefaultSnapshots::Cluster(Some(lookup)) => {
            let namespace = ctx.resource.namespace.clone().unwrap_or_default();
            lookup(namespace, snapshot_id.to_owned()).await
        }
        DefaultSnapshots::Cluster(None) => {
            return Err(RollbackError::Spec {
                field: "spec.storage",
                message: "finding a snapshot by id needs the catalog of the namespace's snapshots, and there is none here: name the snapshot's storage".into(),
            });
        }
    };
    the_one_holding(snapshot_id, ctx.resource.namespace.as_deref(), search)
}

/// The one location of a search that holds the snapshot: none or several are errors naming where
/// it was looked for or found. Pure.
fn the_one_holding(
    snapshot_id: &str,
    namespace: Option<&str>,
    mut search: SnapshotSearch,
) -> Result<Location, RollbackError> {
    let key = snapshot_key(snapshot_id);
    match search.found.len() {
        1 => Ok(search.found.remove(0)),
        0 => Err(RollbackError::NotFoundIn {
            snapshot_id: snapshot_id.to_owned(),
            searched: match search.searched.is_empty() {
                true => format!(
                    "no storage location is known to namespace {} (none is configured for it and none of its resources names one)",
                    namespace.unwrap_or("default")
                ),
                false => format!("looked in {}", search.searched.join(", ")),
            },
        }),
        _ => Err(RollbackError::Ambiguous {
            snapshot_id: snapshot_id.to_owned(),
            locations: search
                .found
                .iter()
                .map(|l| l.uri(&key))
                .collect::<Vec<_>>()
                .join(" and "),
        }),
    }
}

fn cluster_name(spec: &KafkaOffsetRollbackSpec) -> String {
    spec.kafka_cluster
        .as_ref()
        .map(|c| c.bootstrap_servers.join(","))
        .unwrap_or_default()
}

/// A cluster as this operation uses it: group offsets and topic metadata over the Kafka
/// protocol, each request sent within the request budget of `spec.execution`.
struct Connected {
    admin: Arc<GroupAdmin>,
    policy: Policy,
    cancel: tokio_util::sync::CancellationToken,
}

impl Connected {
    /// Sends a request again while it fails for a passing reason, within the budget.
    async fn request<T, F, Fut>(&self, send: F) -> Result<T, KafkaError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kafka::protocol::ProtocolError>>,
    {
        execution::request(&self.policy, RetryCause::KafkaUnreachable, &self.cancel, send)
            .await
            .map_err(KafkaError::from)
    }
}

async fn connect(spec: &KafkaOffsetRollbackSpec, ctx: &Context) -> Result<Connected, RollbackError> {
    let cluster = spec.kafka_cluster.as_ref().ok_or(RollbackError::Spec {
        field: "spec.kafkaCluster",
        message: "is required for this operation".into(),
    })?;
    let access = ClusterAccess::read(cluster, &ctx.secrets)?;
    let policy = Policy::of(spec.execution.as_ref());
    let admin = execution::request(&policy, RetryCause::KafkaUnreachable, &ctx.cancel, || {
        kafka::group_admin(&access)
    })
    .await?;
    Ok(Connected {
        admin: Arc::new(admin),
        policy,
        cancel: ctx.cancel.clone(),
    })
}

/// Commits a group's snapshot offsets, after deleting those on `known` partitions the snapshot
/// lacks when given, and says what the broker holds; `Err` when nothing of the group was
/// changed (it has active members, or its offsets could not be read).
async fn roll_back_group(
    kafka: &Connected,
    group: &str,
    description: &GroupDescription,
    offsets: &BTreeMap<Partition, Committed>,
    known: Option<&BTreeSet<Partition>>,
) -> Result<Applied, String> {
    if !description.is_inactive() {
        return Err(format!(
            "consumer group {group} is {} with {} active member(s): stop its consumers first; nothing of this group was changed",
            description.state, description.members
        ));
    }
    let extra: BTreeSet<Partition> = match known {
        Some(known) => kafka
            .request(|| kafka.admin.committed(group, known))
            .await
            .map_err(|e| format!("{e}; nothing of this group was changed"))?
            .into_keys()
            .filter(|tp| !offsets.contains_key(tp))
            .collect(),
        None => BTreeSet::new(),
    };
    let change = GroupChange {
        group,
        deletes: &extra,
        known: known.unwrap_or(&extra),
        commits: offsets,
    };
    Ok(group_commit::apply(&kafka.admin, &kafka.policy, &kafka.cancel, &change).await)
}

fn info(snapshot: &OffsetSnapshot, uri: &str) -> RollbackSnapshotInfo {
    RollbackSnapshotInfo {
        groups: Some(snapshot.groups.len() as i32),
        total_partitions: Some(snapshot.partition_count() as i32),
        timestamp: Some(time(snapshot.timestamp)),
        location: Some(uri.to_owned()),
    }
}

fn select_groups(
    spec: &KafkaOffsetRollbackSpec,
    snapshot: &OffsetSnapshot,
) -> Result<BTreeMap<String, GroupOffsets>, RollbackError> {
    match &spec.consumer_groups {
        None => Ok(snapshot.groups.clone()),
        Some(groups) => groups
            .iter()
            .map(|g| {
                snapshot
                    .groups
                    .get(g)
                    .map(|o| (g.clone(), o.clone()))
                    .ok_or_else(|| RollbackError::Spec {
                        field: "spec.consumerGroups",
                        message: format!(
                            "group {g} is not in snapshot {} (it has {})",
                            snapshot.snapshot_id,
                            snapshot.groups.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    })
            })
            .collect(),
    }
}

async fn all_partitions(kafka: &Connected) -> Result<BTreeSet<Partition>, RollbackError> {
    let topics = kafka.request(|| kafka.admin.topics()).await?;
    Ok(topics
        .iter()
        .filter(|(t, _)| !t.starts_with("__"))
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect())
}

/// The committed offsets of each group over `partitions` (default: every non-internal partition).
async fn read_groups(
    kafka: &Connected,
    groups: &[String],
    partitions: Option<BTreeSet<Partition>>,
) -> Result<BTreeMap<String, BTreeMap<Partition, Committed>>, RollbackError> {
    let partitions = match partitions {
        Some(p) => p,
        None => all_partitions(kafka).await?,
    };
    Ok(kafka
        .request(|| kafka.admin.committed_all(groups, &partitions, PARALLELISM))
        .await?)
}

async fn roll_back(
    spec: &KafkaOffsetRollbackSpec,
    kafka: &Connected,
    groups: &BTreeMap<String, GroupOffsets>,
    status: &mut KafkaOffsetRollbackStatus,
) -> Result<(), RollbackError> {
    // With removeOffsetsNotInSnapshot, every partition a group may have committed since.
    let known = match spec.remove_offsets_not_in_snapshot {
        true => Some(all_partitions(kafka).await?),
        false => None,
    };
    let known = known.as_ref();
    let names: Vec<String> = groups.keys().cloned().collect();
    let descriptions = kafka.request(|| kafka.admin.describe(&names)).await?;
    let mut outcomes: Vec<(String, Result<Applied, String>)> = stream::iter(groups.iter())
        .map(|(group, offsets)| {
            let description = descriptions
                .get(group)
                .cloned()
                .unwrap_or_else(GroupDescription::dead);
            async move {
                let outcome = roll_back_group(kafka, group, &description, &offsets.committed(), known).await;
                (group.clone(), outcome)
            }
        })
        .buffer_unordered(PARALLELISM)
        .collect()
        .await;
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    let (phase, message) = rollback_summary(&outcomes);
    let rolled_back = outcomes
        .iter()
        .filter(|(_, o)| o.as_ref().is_ok_and(Applied::is_done))
        .count();
    status.groups_rolled_back = Some(rolled_back as i32);
    status.groups_failed = Some((outcomes.len() - rolled_back) as i32);
    status.phase = Some(phase);
    status.message = Some(message);
    Ok(())
}

/// The phase and message of a rollback from each group's outcome: the groups rolled back (named
/// when not all were), those that failed with what the broker holds, and those whose outcome is
/// not known. Pure.
fn rollback_summary(outcomes: &[(String, Result<Applied, String>)]) -> (Phase, String) {
    let mut rolled_back = Vec::new();
    let mut failed = Vec::new();
    let mut unknown = Vec::new();
    for (group, outcome) in outcomes {
        match outcome {
            Ok(applied) => match applied.failure() {
                None => rolled_back.push(group.as_str()),
                Some(why) if matches!(applied, Applied::Unknown { .. }) => {
                    unknown.push(format!("{group}: {why}"))
                }
                Some(why) => failed.push(format!("{group}: {why}")),
            },
            Err(why) => failed.push(format!("{group}: {why}")),
        }
    }
    if failed.is_empty() && unknown.is_empty() {
        return (
            Phase::Completed,
            format!("{} group(s) rolled back", rolled_back.len()),
        );
    }
    let mut message = match rolled_back.as_slice() {
        [] => "no group rolled back".to_owned(),
        names => format!("{} group(s) rolled back ({})", names.len(), names.join(", ")),
    };
    if !failed.is_empty() {
        message.push_str(&format!("; failed: {}", failed.join("; ")));
    }
    if !unknown.is_empty() {
        message.push_str(&format!(
            "; not known whether rolled back: {}",
            unknown.join("; ")
        ));
    }
    let phase = match rolled_back.is_empty() {
        true => Phase::Failed,
        false => Phase::PartiallyCompleted,
    };
    (phase, message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir(path: &std::path::Path) -> Location {
        storage::embedded_default(path).unwrap()
    }

    #[test]
    fn a_snapshot_id_must_be_in_exactly_one_location() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (dir(a.path()), dir(b.path()));
        let key = snapshot_key("pre-restore");
        let one = SnapshotSearch {
            found: vec![a.clone()],
            searched: vec![a.uri(&key), b.uri(&key)],
        };
        let found = the_one_holding("pre-restore", Some("team-a"), one).unwrap();
        assert_eq!(found.uri(&key), a.uri(&key));

        let two = SnapshotSearch {
            found: vec![a.clone(), b.clone()],
            searched: vec![a.uri(&key), b.uri(&key)],
        };
        let message = the_one_holding("pre-restore", Some("team-a"), two)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!(
                "snapshot pre-restore is in more than one storage location: {} and {}; name the one to use in spec.storage",
                a.uri(&key),
                b.uri(&key)
            )
        );

        let none = SnapshotSearch {
            found: Vec::new(),
            searched: vec![a.uri(&key), format!("{} (cannot be read: denied)", b.uri(&key))],
        };
        let message = the_one_holding("pre-restore", Some("team-a"), none)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!(
                "snapshot pre-restore not found: looked in {}, {} (cannot be read: denied); name its storage in spec.storage",
                a.uri(&key),
                b.uri(&key)
            )
        );
        let nowhere = the_one_holding("pre-restore", Some("team-a"), SnapshotSearch::default())
            .unwrap_err()
            .to_string();
        assert!(
            nowhere.contains("no storage location is known to namespace team-a"),
            "{nowhere}"
        );
    }
}
