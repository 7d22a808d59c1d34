//! The `diff` subresource of offsetsnapshots: `GET .../offsetsnapshots/NAME/diff` compares the
//! snapshot with the groups' committed offsets on the cluster now.
//!
//! The cluster is the snapshot's `cluster` (its bootstrap servers). The committed offsets are read
//! with the protocol client (batched OffsetFetch over one connection per coordinator), as the
//! offset engine reads them. Its connection settings (TLS, SASL) come from the clusters registered with [`ClusterRegistry::register`] (the catalog
//! configuration's `clusters`, or the reconciler), matched by bootstrap servers; a cluster nobody
//! registered is reached in plaintext at the snapshot's bootstrap servers. An unreachable cluster is
//! answered 503 with the reason.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{PoisonError, RwLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::resources::{API_VERSION, SnapshotEntry, object_meta, rfc3339, snapshot_labels};
use crate::{
    api::v1beta1::{KafkaClusterSpec, SecurityProtocol},
    kafka::{
        ClusterAccess, KafkaError, group_admin,
        groups::{Committed, Partition},
    },
    secrets::SecretStore,
    storage::snapshot::OffsetSnapshot,
};

/// Longest time a diff may take to read the cluster.
pub const DIFF_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection settings of known clusters.
#[derive(Default)]
pub struct ClusterRegistry {
    clusters: RwLock<Vec<(BTreeSet<String>, ClusterAccess)>>,
}

impl std::fmt::Debug for ClusterRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clusters = self.clusters.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ClusterRegistry")
            .field("clusters", &clusters.iter().map(|(b, _)| b).collect::<Vec<_>>())
            .finish()
    }
}

fn servers(list: &str) -> BTreeSet<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl ClusterRegistry {
    /// Registers (or replaces) the settings of a cluster.
    pub fn register(&self, spec: &KafkaClusterSpec, secrets: &SecretStore) -> Result<(), KafkaError> {
        let access = ClusterAccess::read(spec, secrets)?;
        let key = servers(&spec.bootstrap_servers.join(","));
        let mut clusters = self.clusters.write().unwrap_or_else(PoisonError::into_inner);
        clusters.retain(|(k, _)| *k != key);
        clusters.push((key, access));
        Ok(())
    }

    /// The connection settings for a snapshot's `cluster`: a registered cluster sharing a
    /// bootstrap server, else plaintext to those servers.
    pub fn access_for(&self, cluster: &str) -> ClusterAccess {
        let wanted = servers(cluster);
        let clusters = self.clusters.read().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, access)) = clusters.iter().find(|(k, _)| !k.is_disjoint(&wanted)) {
            return access.clone();
        }
        ClusterAccess {
            bootstrap_servers: wanted.into_iter().collect(),
            security_protocol: SecurityProtocol::Plaintext,
            ca_pem: None,
            client_cert: None,
            sasl: None,
            keepalive: Default::default(),
            tcp_nodelay: None,
            connections_per_broker: None,
        }
    }
}

/// One partition compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionDiff {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset in the snapshot.
    pub snapshot_offset: i64,
    /// Committed offset now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_offset: Option<i64>,
    /// `current - snapshot`, when there is a current offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<i64>,
}

/// One group compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDiff {
    /// Group.
    pub group: String,
    /// Its partitions in the snapshot.
    pub partitions: Vec<PartitionDiff>,
}

/// Totals of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct DiffSummary {
    /// Groups compared.
    pub groups: usize,
    /// Partitions compared.
    pub partitions: usize,
    /// Partitions whose committed offset differs.
    pub changed: usize,
    /// Partitions with no committed offset now.
    pub missing: usize,
}

/// Compares a snapshot with the current committed offsets per group (pure).
pub fn compare(
    snapshot: &OffsetSnapshot,
    current: &BTreeMap<String, BTreeMap<Partition, Committed>>,
) -> (Vec<GroupDiff>, DiffSummary) {
    let mut summary = DiffSummary::default();
    let empty = BTreeMap::new();
    let groups = snapshot
        .groups
        .iter()
        .map(|(group, offsets)| {
            summary.groups += 1;
            let now = current.get(group).unwrap_or(&empty);
            let partitions = offsets
                .topics
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .iter()
                        .map(move |(partition, p)| (topic, *partition, p.offset))
                })
                .map(|(topic, partition, snapshot_offset)| {
                    let current_offset = now.get(&(topic.clone(), partition)).map(|c| c.offset);
                    summary.partitions += 1;
                    match current_offset {
                        None => summary.missing += 1,
                        Some(o) if o != snapshot_offset => summary.changed += 1,
                        Some(_) => {}
                    }
                    PartitionDiff {
                        topic: topic.clone(),
                        partition,
                        snapshot_offset,
                        current_offset,
                        delta: current_offset.map(|o| o - snapshot_offset),
                    }
                })
                .collect();
            GroupDiff {
                group: group.clone(),
                partitions,
            }
        })
        .collect();
    (groups, summary)
}

/// OffsetFetch requests in flight at once while reading a diff.
const READ_PARALLELISM: usize = 10;

/// Reads the committed offsets of every group of the snapshot for its partitions.
pub async fn read_current(
    access: &ClusterAccess,
    snapshot: &OffsetSnapshot,
) -> Result<BTreeMap<String, BTreeMap<Partition, Committed>>, KafkaError> {
    let admin = group_admin(access).await?;
    let wanted: BTreeMap<String, BTreeSet<Partition>> = snapshot
        .groups
        .iter()
        .map(|(group, offsets)| (group.clone(), offsets.partitions()))
        .collect();
    admin
        .committed_each(&wanted, READ_PARALLELISM)
        .await
        .into_iter()
        .map(|(group, offsets)| Ok((group, offsets?)))
        .collect()
}

/// The `OffsetSnapshotDiff` object.
pub fn diff_object(
    entry: &SnapshotEntry,
    snapshot: &OffsetSnapshot,
    groups: &[GroupDiff],
    summary: DiffSummary,
    compared_at: &DateTime<Utc>,
) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "OffsetSnapshotDiff",
        "metadata": object_meta(&entry.namespace, &entry.name, &entry.summary.uri, Some(&snapshot.timestamp), &snapshot_labels(&entry.summary)),
        "snapshotId": snapshot.snapshot_id,
        "cluster": snapshot.cluster,
        "comparedAt": rfc3339(compared_at),
        "summary": summary,
        "groups": groups,
    })
}

/// The diff as a Table: one row per partition.
pub fn diff_table(meta_version: &str, groups: &[GroupDiff]) -> Value {
    let column = |name: &str, type_: &str, format: &str, description: &str| json!({"name": name, "type": type_, "format": format, "description": description, "priority": 0});
    let rows: Vec<Value> = groups
        .iter()
        .flat_map(|g| {
            g.partitions.iter().map(move |p| {
                let show = |v: Option<i64>| v.map_or_else(|| "<none>".to_owned(), |v| v.to_string());
                json!({"cells": [g.group, p.topic, p.partition, p.snapshot_offset, show(p.current_offset), show(p.delta)]})
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{meta_version}"),
        "metadata": {},
        "columnDefinitions": [
            column("Group", "string", "name", "Consumer group"),
            column("Topic", "string", "", "Topic"),
            column("Partition", "integer", "", "Partition"),
            column("Snapshot", "integer", "", "Offset in the snapshot"),
            column("Current", "string", "", "Committed offset now"),
            column("Delta", "string", "", "Current minus snapshot"),
        ],
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::snapshot::{GroupOffsets, PartitionOffset};

    #[test]
    fn compare_counts_changed_and_missing_partitions() {
        let mut topics = BTreeMap::new();
        let p = |offset| PartitionOffset {
            offset,
            metadata: String::new(),
            timestamp: 0,
        };
        topics.insert(
            "orders".to_owned(),
            BTreeMap::from([(0, p(10)), (1, p(20)), (2, p(30))]),
        );
        let snapshot = OffsetSnapshot {
            snapshot_id: "s".into(),
            timestamp: Utc::now(),
            cluster: "k:9092".into(),
            groups: BTreeMap::from([("g".to_owned(), GroupOffsets { topics })]),
            source: None,
            expires_at: None,
        };
        let committed = |offset| Committed {
            offset,
            metadata: String::new(),
        };
        let current = BTreeMap::from([(
            "g".to_owned(),
            BTreeMap::from([
                (("orders".to_owned(), 0), committed(10)),
                (("orders".to_owned(), 1), committed(25)),
            ]),
        )]);
        let (groups, summary) = compare(&snapshot, &current);
        assert_eq!(
            summary,
            DiffSummary {
                groups: 1,
                partitions: 3,
                changed: 1,
                missing: 1
            }
        );
        assert_eq!(groups[0].partitions[1].delta, Some(5));
        assert_eq!(groups[0].partitions[2].current_offset, None);
        let table = diff_table("v1", &groups);
        assert_eq!(table["rows"][2]["cells"][4], "<none>");
    }

    #[test]
    fn registered_clusters_are_matched_by_bootstrap_server() {
        let registry = ClusterRegistry::default();
        let spec: KafkaClusterSpec = serde_json::from_value(json!({
            "bootstrapServers": ["a:9093", "b:9093"], "securityProtocol": "SSL"
        }))
        .unwrap();
        registry.register(&spec, &SecretStore::None).unwrap();
        assert_eq!(
            registry.access_for("b:9093").security_protocol,
            SecurityProtocol::Ssl
        );
        let unknown = registry.access_for("c:9092");
        assert_eq!(unknown.security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(unknown.bootstrap_servers, ["c:9092"]);
    }
}
