//! Server-side printing: `meta.k8s.io` `Table` answers for `kubectl get`, which asks for them with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Columns follow kube-apiserver's habits: `Name` first (format `name`), the useful values, `Age`
//! last (a duration like kube-apiserver's `HumanDuration`), less important ones at priority 1 (shown
//! by `-o wide`). Each row carries the object as `PartialObjectMetadata` (the default, what kubectl's
//! `--show-labels` needs), the whole object (`?includeObject=Object`) or nothing (`None`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::resources::{Entry, Resource};

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    /// Header.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `boolean`, `date`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// OpenAPI format (`name` for the name column).
    pub format: &'static str,
    /// What it shows.
    pub description: &'static str,
    /// 0: always shown; 1: `-o wide` only.
    pub priority: u8,
}

const fn column(
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
) -> Column {
    Column {
        name,
        type_,
        format,
        description,
        priority,
    }
}

/// Columns of offsetsnapshots.
pub const SNAPSHOT_COLUMNS: [Column; 8] = [
    column("Name", "string", "name", "Snapshot id", 0),
    column("Groups", "integer", "", "Consumer groups in the snapshot", 0),
    column(
        "Partitions",
        "integer",
        "",
        "Partitions with an offset, over all groups",
        0,
    ),
    column(
        "Cluster",
        "string",
        "",
        "Bootstrap servers of the cluster the offsets belong to",
        0,
    ),
    column(
        "Source",
        "string",
        "",
        "Resource that took the snapshot (Kind/name)",
        0,
    ),
    column("Age", "date", "", "Time since the offsets were captured", 0),
    column("Topics", "integer", "", "Distinct topics over all groups", 1),
    column(
        "Location",
        "string",
        "",
        "Storage URI of the snapshot document",
        1,
    ),
];

/// Columns of backupsets.
pub const BACKUP_SET_COLUMNS: [Column; 12] = [
    column("Name", "string", "name", "Backup id", 0),
    column("Complete", "boolean", "", "Whether the backup finished", 0),
    column(
        "Format",
        "string",
        "",
        "Format of the stored set: kafka-backup-operator/backup-set/v1, or kafka-backup/0.x (the prior art, read only)",
        0,
    ),
    column("Topics", "integer", "", "Topics in the backup", 0),
    column("Records", "integer", "", "Records in the backup", 0),
    column("Size", "string", "", "Bytes stored", 0),
    column(
        "First Record",
        "string",
        "",
        "Time of the earliest record (start of the point-in-time window)",
        0,
    ),
    column(
        "Last Record",
        "string",
        "",
        "Time of the latest record (end of the point-in-time window)",
        0,
    ),
    column("Age", "date", "", "Time since the backup started", 0),
    column("Partitions", "integer", "", "Partitions over all topics", 1),
    column(
        "Group Snapshot",
        "string",
        "",
        "Consumer groups captured with the backup",
        1,
    ),
    column("Location", "string", "", "Storage URI of the backup", 1),
];

/// What each row carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The object as a list shows it.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter; unknown values are refused as Kubernetes does.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("" | "Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(format!(
                "invalid includeObject {other:?}: must be None, Metadata or Object"
            )),
        }
    }
}

/// kube-apiserver's `HumanDuration`: `45s`, `3m12s`, `5h3m`, `12d`, `2y30d`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of `time` at `now`.
pub fn age(time: &DateTime<Utc>, now: &DateTime<Utc>) -> String {
    human_duration((*now - *time).num_seconds())
}

/// The first instant after `now` at which the [`age`] of `time` may read differently: the next
/// multiple of the smallest unit [`human_duration`] shows at that age (seconds below 10 minutes,
/// minutes below 8 hours, hours below 8 days, days beyond).
pub fn age_changes_at(time: &DateTime<Utc>, now: &DateTime<Utc>) -> DateTime<Utc> {
    let age = (*now - *time).num_seconds();
    if age < 0 {
        return *now + chrono::Duration::seconds(1);
    }
    let unit = match age {
        0..600 => 1,
        600..28_800 => 60,
        28_800..691_200 => 3_600,
        _ => 86_400,
    };
    *time + chrono::Duration::seconds((age / unit + 1) * unit)
}

/// Until when a Table of `entries` rendered at `now` stays the same (the first Age to change);
/// `None` when no row has an Age.
pub fn stable_until<T>(entries: &[&Entry<T>], now: &DateTime<Utc>) -> Option<DateTime<Utc>> {
    entries
        .iter()
        .filter_map(|e| e.rendered.age_from.as_ref())
        .map(|t| age_changes_at(t, now))
        .min()
}

/// Bytes in binary units: `512B`, `1.5KiB`, `2.0GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

fn columns(resource: Resource) -> &'static [Column] {
    match resource {
        Resource::OffsetSnapshots => &SNAPSHOT_COLUMNS,
        Resource::BackupSets => &BACKUP_SET_COLUMNS,
    }
}

/// The JSON of a `Table` of `entries` for `resource`; `meta_version` is `v1` or `v1beta1` (what was
/// asked for). Rows are spliced from the entries' rendered fragments; only Age is computed here.
pub fn table_body<T>(
    resource: Resource,
    meta_version: &str,
    entries: &[&Entry<T>],
    now: &DateTime<Utc>,
    include: IncludeObject,
    resource_version: Option<u64>,
    next: Option<&str>,
) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|e| {
            let r = &e.rendered;
            let object = match include {
                IncludeObject::None => 0,
                IncludeObject::Metadata => r.metadata.len() + 80,
                IncludeObject::Object => r.item.len() + 16,
            };
            r.cells_before_age.len() + r.cells_after_age.len() + object + 32
        })
        .sum();
    let mut out = String::with_capacity(size + 4096);
    out.push_str(&format!(
        "{{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/{meta_version}\",\"metadata\":{},\"columnDefinitions\":{},\"rows\":[",
        super::resources::list_meta(resource_version, next),
        serde_json::to_string(columns(resource)).unwrap_or_else(|_| "[]".to_owned()),
    ));
    for (i, entry) in entries.iter().enumerate() {
        let r = &entry.rendered;
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"cells\":[");
        out.push_str(&r.cells_before_age);
        out.push_str(",\"");
        match &r.age_from {
            Some(t) => out.push_str(&age(t, now)),
            None => out.push_str("<unknown>"),
        }
        out.push('"');
        out.push_str(&r.cells_after_age);
        out.push(']');
        match include {
            IncludeObject::None => {}
            IncludeObject::Metadata => {
                out.push_str(
                    ",\"object\":{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":",
                );
                out.push_str(&r.metadata);
                out.push('}');
            }
            IncludeObject::Object => {
                out.push_str(",\"object\":");
                out.push_str(&r.item);
            }
        }
        out.push('}');
    }
    out.push_str("]}");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_print_like_kube_apiserver() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (190, "3m10s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (731 * 86400, "2y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(human_duration(seconds), expected, "{seconds}s");
        }
    }

    #[test]
    fn bytes_and_include_object() {
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0GiB");
        assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
        assert_eq!(IncludeObject::parse(Some("Object")), Ok(IncludeObject::Object));
        assert!(IncludeObject::parse(Some("All")).is_err());
    }

    #[test]
    fn the_age_reads_the_same_until_it_changes() {
        let created = DateTime::parse_from_rfc3339("2026-01-01T00:00:00.250Z")
            .unwrap()
            .with_timezone(&Utc);
        let ms = chrono::Duration::milliseconds;
        for age_s in [
            0_i64,
            1,
            59,
            119,
            120,
            599,
            600,
            601,
            3_599,
            10_799,
            28_799,
            28_800,
            86_400 * 3 + 17,
            691_199,
            691_200,
            86_400 * 400 + 5,
        ] {
            let now = created + chrono::Duration::seconds(age_s) + ms(400);
            let until = age_changes_at(&created, &now);
            assert!(until > now, "age {age_s}");
            assert_eq!(
                age(&created, &now),
                age(&created, &(until - ms(1))),
                "age {age_s}"
            );
            assert_ne!(age(&created, &now), age(&created, &until), "age {age_s}");
        }
        // A time in the future: re-rendered within a second.
        let now = created - chrono::Duration::seconds(5);
        assert_eq!(age_changes_at(&created, &now), now + chrono::Duration::seconds(1));
    }

    #[test]
    fn name_is_the_first_column_and_cells_match_columns() {
        use std::sync::Arc;

        use crate::apiserver::{
            backupsets::BackupSetSummary,
            resources::{SnapshotSummary, backup_set_entry, list_body, snapshot_entry},
        };
        assert_eq!(SNAPSHOT_COLUMNS[0].name, "Name");
        assert_eq!(SNAPSHOT_COLUMNS[0].format, "name");
        assert_eq!(BACKUP_SET_COLUMNS[0].name, "Name");

        let now = Utc::now();
        let summary = SnapshotSummary {
            snapshot_id: "s\"1".into(),
            timestamp: now - chrono::Duration::seconds(190),
            cluster: "k:9092".into(),
            source: None,
            group_names: vec!["g".into()],
            topics: 1,
            partitions: 3,
            uri: "s3://b/offset-snapshots/s.json".into(),
            storage: "s3",
            size: 10,
            expires_at: None,
        };
        let entry = snapshot_entry("ns".into(), "s\"1".into(), Arc::new(summary));
        for include in [
            IncludeObject::Metadata,
            IncludeObject::Object,
            IncludeObject::None,
        ] {
            let body = table_body(
                Resource::OffsetSnapshots,
                "v1",
                &[&entry, &entry],
                &now,
                include,
                Some(7),
                Some("t"),
            );
            let table: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(table["kind"], "Table");
            assert_eq!(
                table["metadata"],
                serde_json::json!({"resourceVersion": "7", "continue": "t"})
            );
            let cells = table["rows"][1]["cells"].as_array().unwrap();
            assert_eq!(cells.len(), SNAPSHOT_COLUMNS.len());
            assert_eq!(cells[0], "s\"1");
            assert_eq!(cells[4], "<none>");
            assert_eq!(cells[5], "3m10s");
            match include {
                IncludeObject::Metadata => {
                    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
                    assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "ns");
                }
                IncludeObject::Object => assert_eq!(table["rows"][0]["object"]["kind"], "OffsetSnapshot"),
                IncludeObject::None => assert!(table["rows"][0].get("object").is_none()),
            }
        }
        let list: serde_json::Value =
            serde_json::from_slice(&list_body(Resource::OffsetSnapshots, &[&entry], 3, None)).unwrap();
        assert_eq!(list["kind"], "OffsetSnapshotList");
        assert_eq!(list["items"][0]["summary"]["partitions"], 3);

        let set = backup_set_entry(
            "ns".into(),
            "b".into(),
            Arc::new(BackupSetSummary {
                format: "kafka-backup/0.x".into(),
                ..Default::default()
            }),
        );
        let table: serde_json::Value = serde_json::from_slice(&table_body(
            Resource::BackupSets,
            "v1beta1",
            &[&set],
            &now,
            IncludeObject::Metadata,
            None,
            None,
        ))
        .unwrap();
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1beta1");
        let cells = table["rows"][0]["cells"].as_array().unwrap();
        assert_eq!(cells.len(), BACKUP_SET_COLUMNS.len());
        assert_eq!(cells[2], "kafka-backup/0.x");
        assert_eq!(cells[8], "<unknown>");
    }
}
