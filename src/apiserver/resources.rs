//! The two resources of `catalog.kafka.oso.sh/v1alpha1` and the JSON objects they are served as.
//!
//! An **OffsetSnapshot** is one stored consumer-offset snapshot ([`crate::storage::snapshot`]); its
//! name is the snapshot id. Lists carry the summary (cluster, source, group names, topic and partition
//! counts), which the catalog keeps in memory; a get reads the stored document and adds `groups`
//! with every group, topic, partition, offset, metadata and timestamp.
//!
//! A **BackupSet** is one backup in storage ([`super::backupsets::BackupSetSummary`]); its name is
//! the backup id.
//!
//! Both are read-only views of storage: `metadata.uid` is derived from the namespace and the
//! object's storage URI (stable across restarts), `metadata.creationTimestamp` is when the snapshot
//! was taken or the backup started, and the storage URI is in the annotation
//! `catalog.kafka.oso.sh/location`. Labels are derived too (see [`snapshot_labels`] and
//! [`backup_set_labels`]) so label selectors have something to select on.

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::{backupsets::BackupSetSummary, selectors::is_label_value};
use crate::{
    routes::{CATALOG_GROUP, CATALOG_VERSION},
    storage::snapshot::{OffsetSnapshot, SnapshotSource},
};

/// `apiVersion` of the served objects.
pub const API_VERSION: &str = "catalog.kafka.oso.sh/v1alpha1";
/// Category of both resources (shared with the five custom resources: `kubectl get kafka-backup`).
pub const CATEGORY: &str = "kafka-backup";
/// Annotation holding the storage URI of the object.
pub const LOCATION_ANNOTATION: &str = "catalog.kafka.oso.sh/location";
/// Label: kind of the resource that wrote the object (`KafkaOffsetRollback`, ...).
pub const SOURCE_KIND_LABEL: &str = "catalog.kafka.oso.sh/source-kind";
/// Label: name of the resource that wrote the object (when it is a valid label value).
pub const SOURCE_NAME_LABEL: &str = "catalog.kafka.oso.sh/source-name";
/// Label: the storage type (`s3`, `azure`, `gcs`, `pvc`, `configmap`, `file`).
pub const STORAGE_LABEL: &str = "catalog.kafka.oso.sh/storage";
/// Label of backup sets: `true` when the backup finished and its manifest says so.
pub const COMPLETE_LABEL: &str = "catalog.kafka.oso.sh/complete";
/// Name of the diff subresource of offsetsnapshots.
pub const DIFF_SUBRESOURCE: &str = "diff";

/// A resource of the catalog API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// `offsetsnapshots` (OffsetSnapshot, `osnap`).
    OffsetSnapshots,
    /// `backupsets` (BackupSet, `kbs`).
    BackupSets,
}

impl Resource {
    /// Every resource, in discovery order.
    pub const ALL: [Resource; 2] = [Resource::OffsetSnapshots, Resource::BackupSets];

    /// The resource named by a URL segment.
    pub fn from_plural(plural: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.plural() == plural)
    }

    /// Plural name (URL segment, RBAC resource).
    pub fn plural(self) -> &'static str {
        match self {
            Resource::OffsetSnapshots => "offsetsnapshots",
            Resource::BackupSets => "backupsets",
        }
    }

    /// Singular name.
    pub fn singular(self) -> &'static str {
        match self {
            Resource::OffsetSnapshots => "offsetsnapshot",
            Resource::BackupSets => "backupset",
        }
    }

    /// Kind of an object.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::OffsetSnapshots => "OffsetSnapshot",
            Resource::BackupSets => "BackupSet",
        }
    }

    /// Kind of a list.
    pub fn list_kind(self) -> &'static str {
        match self {
            Resource::OffsetSnapshots => "OffsetSnapshotList",
            Resource::BackupSets => "BackupSetList",
        }
    }

    /// Short name for kubectl.
    pub fn short_name(self) -> &'static str {
        match self {
            Resource::OffsetSnapshots => "osnap",
            Resource::BackupSets => "kbs",
        }
    }

    /// Verbs served, sorted as Kubernetes lists them.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Resource::OffsetSnapshots => &["delete", "get", "list"],
            Resource::BackupSets => &["get", "list"],
        }
    }

    /// `plural.group`, as Kubernetes names a resource in messages.
    pub fn qualified(self) -> String {
        format!("{}.{CATALOG_GROUP}", self.plural())
    }

    /// Fields a field selector may name.
    pub fn selectable_fields(self) -> &'static [&'static str] {
        match self {
            Resource::OffsetSnapshots => &[
                "metadata.name",
                "metadata.namespace",
                "cluster",
                "source.kind",
                "source.name",
            ],
            Resource::BackupSets => &[
                "metadata.name",
                "metadata.namespace",
                "complete",
                "cluster",
                "format",
            ],
        }
    }
}

/// What the catalog keeps in memory about one snapshot: everything a list shows, no offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSummary {
    /// The snapshot id (the object's name).
    pub snapshot_id: String,
    /// When the offsets were captured.
    pub timestamp: DateTime<Utc>,
    /// The cluster the offsets belong to.
    pub cluster: String,
    /// Who took it.
    pub source: Option<SnapshotSource>,
    /// The groups in it, sorted.
    pub group_names: Vec<String>,
    /// Distinct topics over all groups.
    pub topics: usize,
    /// Partitions with an offset, over all groups.
    pub partitions: usize,
    /// Storage URI of the document.
    pub uri: String,
    /// Storage type label value.
    pub storage: &'static str,
    /// Size of the stored document in bytes.
    pub size: u64,
    /// When its retention ends; `None`: kept until deleted.
    pub expires_at: Option<DateTime<Utc>>,
}

impl SnapshotSummary {
    /// The summary of a parsed snapshot stored at `uri`.
    pub fn of(snapshot: &OffsetSnapshot, uri: &str, size: u64) -> Self {
        let topics: std::collections::BTreeSet<&str> = snapshot
            .groups
            .values()
            .flat_map(|g| g.topics.keys().map(String::as_str))
            .collect();
        SnapshotSummary {
            snapshot_id: snapshot.snapshot_id.clone(),
            timestamp: snapshot.timestamp,
            cluster: snapshot.cluster.clone(),
            source: snapshot.source.clone(),
            group_names: snapshot.groups.keys().cloned().collect(),
            topics: topics.len(),
            partitions: snapshot.partition_count(),
            uri: uri.to_owned(),
            storage: storage_type_of(uri),
            size,
            expires_at: snapshot.expires_at,
        }
    }
}

/// An object of the catalog: which namespace shows it, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    /// Namespace the object is listed in.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// What the catalog knows about it.
    pub summary: Arc<T>,
    /// Its JSON, rendered once when it entered the index.
    pub rendered: Arc<Rendered>,
}

/// The JSON fragments of an entry, so that a list of 10,000 objects is a concatenation instead of
/// 10,000 serializations (see [`super::table::table_body`] and [`list_body`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    /// The object as a list shows it.
    pub item: String,
    /// Its `metadata`.
    pub metadata: String,
    /// Table cells before the Age cell, comma-separated JSON values.
    pub cells_before_age: String,
    /// Table cells after the Age cell, comma-separated JSON values, starting with a comma.
    pub cells_after_age: String,
    /// What the Age cell counts from.
    pub age_from: Option<DateTime<Utc>>,
}

/// A JSON array's elements without the brackets.
fn elements(values: &[Value]) -> String {
    let text = Value::Array(values.to_vec()).to_string();
    text[1..text.len() - 1].to_owned()
}

fn render(
    object: &Value,
    before_age: &[Value],
    after_age: &[Value],
    age_from: Option<DateTime<Utc>>,
) -> Rendered {
    let after = elements(after_age);
    Rendered {
        item: object.to_string(),
        metadata: object
            .get("metadata")
            .map_or_else(|| "{}".to_owned(), Value::to_string),
        cells_before_age: elements(before_age),
        cells_after_age: if after.is_empty() {
            after
        } else {
            format!(",{after}")
        },
        age_from,
    }
}

/// A snapshot entry for `namespace`, rendered.
pub fn snapshot_entry(namespace: String, name: String, summary: Arc<SnapshotSummary>) -> SnapshotEntry {
    let mut entry = Entry {
        namespace,
        name,
        summary,
        rendered: Arc::default(),
    };
    let s = &entry.summary;
    let source = s
        .source
        .as_ref()
        .map_or_else(|| "<none>".to_owned(), |src| format!("{}/{}", src.kind, src.name));
    let rendered = render(
        &snapshot_object(&entry),
        &[
            json!(entry.name),
            json!(s.group_names.len()),
            json!(s.partitions),
            json!(s.cluster),
            json!(source),
        ],
        &[json!(s.topics), json!(s.uri)],
        Some(s.timestamp),
    );
    entry.rendered = Arc::new(rendered);
    entry
}

/// A backup set entry for `namespace`, rendered.
pub fn backup_set_entry(namespace: String, name: String, summary: Arc<BackupSetSummary>) -> BackupSetEntry {
    let mut entry = Entry {
        namespace,
        name,
        summary,
        rendered: Arc::default(),
    };
    let s = &entry.summary;
    let time = |t: &Option<DateTime<Utc>>| t.as_ref().map_or_else(|| "<none>".to_owned(), rfc3339);
    let groups = s
        .group_snapshot
        .as_ref()
        .filter(|g| !g.groups.is_empty())
        .map_or_else(|| "<none>".to_owned(), |g| g.groups.join(","));
    let rendered = render(
        &backup_set_object(&entry),
        &[
            json!(entry.name),
            json!(s.complete),
            json!(s.format),
            json!(s.topics.len()),
            json!(s.records),
            json!(super::table::human_bytes(s.bytes)),
            json!(time(&s.first_record_time)),
            json!(time(&s.last_record_time)),
        ],
        &[json!(s.partitions), json!(groups), json!(s.location)],
        s.created.or(s.first_record_time),
    );
    entry.rendered = Arc::new(rendered);
    entry
}

/// A snapshot in the catalog.
pub type SnapshotEntry = Entry<SnapshotSummary>;
/// A backup set in the catalog.
pub type BackupSetEntry = Entry<BackupSetSummary>;

/// The storage type of a URI, as a label value.
pub fn storage_type_of(uri: &str) -> &'static str {
    match uri.split_once("://").map(|(scheme, _)| scheme) {
        Some("s3") => "s3",
        Some("az") => "azure",
        Some("gs") => "gcs",
        Some("pvc") => "pvc",
        Some("configmap") => "configmap",
        _ => "file",
    }
}

/// A stable uid for the object at `uri` shown in `namespace`: a UUID-shaped SHA-256 prefix.
pub fn uid_of(namespace: &str, uri: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{namespace}\n{uri}").as_bytes());
    let h: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// RFC 3339 with second precision, as Kubernetes writes times.
pub fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn source_labels(source: Option<&SnapshotSource>, labels: &mut BTreeMap<String, String>) {
    if let Some(source) = source {
        if is_label_value(&source.kind) {
            labels.insert(SOURCE_KIND_LABEL.to_owned(), source.kind.clone());
        }
        if is_label_value(&source.name) {
            labels.insert(SOURCE_NAME_LABEL.to_owned(), source.name.clone());
        }
    }
}

/// Labels of a snapshot: source kind and name, storage type.
pub fn snapshot_labels(summary: &SnapshotSummary) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    source_labels(summary.source.as_ref(), &mut labels);
    labels.insert(STORAGE_LABEL.to_owned(), summary.storage.to_owned());
    labels
}

/// Labels of a backup set: completeness, source kind and name, storage type.
pub fn backup_set_labels(summary: &BackupSetSummary) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    source_labels(summary.source.as_ref(), &mut labels);
    labels.insert(COMPLETE_LABEL.to_owned(), summary.complete.to_string());
    labels.insert(
        STORAGE_LABEL.to_owned(),
        storage_type_of(&summary.location).to_owned(),
    );
    labels
}

/// `metadata` of an object.
pub fn object_meta(
    namespace: &str,
    name: &str,
    uri: &str,
    created: Option<&DateTime<Utc>>,
    labels: &BTreeMap<String, String>,
) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), name.into());
    meta.insert("namespace".into(), namespace.into());
    meta.insert("uid".into(), uid_of(namespace, uri).into());
    if let Some(created) = created {
        meta.insert("creationTimestamp".into(), rfc3339(created).into());
    }
    meta.insert("labels".into(), json!(labels));
    meta.insert("annotations".into(), json!({ LOCATION_ANNOTATION: uri }));
    Value::Object(meta)
}

/// The field values of a snapshot a field selector may test.
pub fn snapshot_field<'a>(entry: &'a SnapshotEntry, field: &str) -> Option<&'a str> {
    match field {
        "metadata.name" => Some(&entry.name),
        "metadata.namespace" => Some(&entry.namespace),
        "cluster" => Some(&entry.summary.cluster),
        "source.kind" => entry.summary.source.as_ref().map(|s| s.kind.as_str()),
        "source.name" => entry.summary.source.as_ref().map(|s| s.name.as_str()),
        _ => None,
    }
}

/// The field values of a backup set a field selector may test.
pub fn backup_set_field<'a>(entry: &'a BackupSetEntry, field: &str) -> Option<&'a str> {
    match field {
        "metadata.name" => Some(&entry.name),
        "metadata.namespace" => Some(&entry.namespace),
        "complete" => Some(if entry.summary.complete { "true" } else { "false" }),
        "cluster" => entry.summary.cluster.as_deref(),
        "format" => Some(&entry.summary.format),
        _ => None,
    }
}

fn source_json(source: Option<&SnapshotSource>) -> Value {
    source.map_or(Value::Null, |s| json!(s))
}

/// An OffsetSnapshot as listed: the summary, no offsets.
pub fn snapshot_object(entry: &SnapshotEntry) -> Value {
    let s = &entry.summary;
    let mut object = json!({
        "apiVersion": API_VERSION,
        "kind": "OffsetSnapshot",
        "metadata": object_meta(&entry.namespace, &entry.name, &s.uri, Some(&s.timestamp), &snapshot_labels(s)),
        "snapshotId": s.snapshot_id,
        "timestamp": rfc3339(&s.timestamp),
        "cluster": s.cluster,
        "location": s.uri,
        "summary": {
            "groups": s.group_names.len(),
            "topics": s.topics,
            "partitions": s.partitions,
            "groupNames": s.group_names,
            "sizeBytes": s.size,
        },
    });
    if let Some(map) = object.as_object_mut() {
        if let Some(source) = &s.source {
            map.insert("source".into(), source_json(Some(source)));
        }
        if let Some(expires_at) = &s.expires_at {
            map.insert("expiresAt".into(), rfc3339(expires_at).into());
        }
    }
    object
}

/// An OffsetSnapshot as got: the listed object plus `groups` with every offset of the document.
pub fn full_snapshot_object(entry: &SnapshotEntry, snapshot: &OffsetSnapshot) -> Value {
    let mut object = snapshot_object(entry);
    if let Some(map) = object.as_object_mut() {
        map.insert("groups".into(), json!(snapshot.groups));
    }
    object
}

/// A BackupSet object.
pub fn backup_set_object(entry: &BackupSetEntry) -> Value {
    let s = &entry.summary;
    let mut object = json!({
        "apiVersion": API_VERSION,
        "kind": "BackupSet",
        "metadata": object_meta(&entry.namespace, &entry.name, &s.location, s.created.as_ref().or(s.first_record_time.as_ref()), &backup_set_labels(s)),
        "backupId": s.backup_id,
        "complete": s.complete,
        "format": s.format,
        "location": s.location,
        "topics": s.topics,
        "partitions": s.partitions,
        "records": s.records,
        "bytes": s.bytes,
    });
    if let Some(map) = object.as_object_mut() {
        if let Some(t) = &s.first_record_time {
            map.insert("firstRecordTime".into(), rfc3339(t).into());
        }
        if let Some(t) = &s.last_record_time {
            map.insert("lastRecordTime".into(), rfc3339(t).into());
        }
        if let Some(cluster) = &s.cluster {
            map.insert("cluster".into(), cluster.clone().into());
        }
        if let Some(source) = &s.source {
            map.insert("source".into(), source_json(Some(source)));
        }
        if let Some(g) = &s.group_snapshot {
            map.insert("groupSnapshot".into(), json!(g));
        }
        if let Some(note) = &s.note {
            map.insert("note".into(), note.clone().into());
        }
    }
    object
}

/// List `metadata`: the resource version and `continue` when there is more.
pub fn list_meta(resource_version: Option<u64>, next: Option<&str>) -> String {
    let mut metadata = Map::new();
    if let Some(rv) = resource_version {
        metadata.insert("resourceVersion".into(), rv.to_string().into());
    }
    if let Some(next) = next {
        metadata.insert("continue".into(), next.into());
    }
    Value::Object(metadata).to_string()
}

/// The JSON of a list of `entries` (their rendered items), with `continue` when there is more.
pub fn list_body<T>(
    resource: Resource,
    entries: &[&Entry<T>],
    resource_version: u64,
    next: Option<&str>,
) -> Vec<u8> {
    let size: usize = entries.iter().map(|e| e.rendered.item.len() + 1).sum();
    let mut out = String::with_capacity(size + 256);
    out.push_str(&format!(
        "{{\"apiVersion\":\"{API_VERSION}\",\"kind\":\"{}\",\"metadata\":{},\"items\":[",
        resource.list_kind(),
        list_meta(Some(resource_version), next)
    ));
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&entry.rendered.item);
    }
    out.push_str("]}");
    out.into_bytes()
}

/// The group-version of the catalog API, `catalog.kafka.oso.sh/v1alpha1`.
pub fn group_version() -> String {
    format!("{CATALOG_GROUP}/{CATALOG_VERSION}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_agree_with_the_routes_constants() {
        let plurals: Vec<&str> = Resource::ALL.iter().map(|r| r.plural()).collect();
        assert_eq!(plurals, crate::routes::CATALOG_RESOURCES);
        assert_eq!(API_VERSION, group_version());
        assert_eq!(Resource::from_plural("backupsets"), Some(Resource::BackupSets));
        assert_eq!(Resource::from_plural("pods"), None);
    }

    #[test]
    fn uids_are_stable_and_distinct_per_namespace() {
        let a = uid_of("a", "s3://b/offset-snapshots/x.json");
        assert_eq!(a, uid_of("a", "s3://b/offset-snapshots/x.json"));
        assert_ne!(a, uid_of("b", "s3://b/offset-snapshots/x.json"));
        assert_eq!(a.len(), 36);
        assert_eq!(storage_type_of("pvc://claim/x"), "pvc");
        assert_eq!(storage_type_of("/tmp/x"), "file");
    }
}
