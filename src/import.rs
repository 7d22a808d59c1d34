//! `import --dry-run --storage FILE`: what a storage prefix holds of the prior art (OSO
//! kafka-backup 0.x), before a team switches.
//!
//! Walks the prefix the storage block names and lists every backup set of the prior art (each
//! top-level directory with a `manifest.json`) with its format, topics, partitions, segments,
//! records, stored size, record time range and integrity, and every offset snapshot of the prior
//! art (`offset-snapshots/<id>/snapshot.json`, or its document stored as `<id>.json`) with its
//! groups, partitions, cluster, time and size. Integrity is the Integrity check of
//! KafkaBackupValidation ([`crate::ops::validation::integrity`]): every segment is read and
//! checked (magic, header fields, CRC-32, record count, offsets and timestamps against the
//! manifest, gaps as the manifest records them). A directory whose `manifest.json` is neither
//! format is listed as refused, naming what it holds.
//!
//! Nothing is written, copied or converted: the sets are read in place by KafkaRestore,
//! KafkaBackupValidation, the catalog and KafkaOffsetRollback, so there is nothing to import
//! beyond looking. `--dry-run` says so explicitly and is required. The exit code is 0 when every
//! set passed its integrity check (warnings allowed) and every snapshot was readable, 1
//! otherwise.
//!
//! The storage block is the `storage:` of any resource, v1beta1 spelling (`type: S3` with an
//! `s3:` block, ...), either alone in the file or under a `storage:` key; Secrets it names are
//! read from `--secrets-dir` and PVC claims below `--pvc-root`, as with `run -f`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{
    api::v1beta1::{CheckOutcome, StorageSpec},
    apiserver::table::human_bytes,
    ops::{Context, ResourceRef, validation},
    secrets::SecretStore,
    storage::{
        Location, ObjectLocation, StorageEnv, StorageError,
        backup_set::{self, SetFormat},
        prior_art,
        snapshot::{self, SNAPSHOT_DIR, snapshot_id_of},
    },
};

/// Arguments of `import`.
#[derive(clap::Args, Debug, Clone)]
pub struct ImportArgs {
    /// Only report what is stored (required: sets of the prior art are read in place, so nothing
    /// is ever copied or converted).
    #[arg(long)]
    pub dry_run: bool,
    /// A YAML or JSON file with the storage block to walk (as a resource's `storage:`, v1beta1
    /// spelling), alone or under a `storage:` key.
    #[arg(long)]
    pub storage: PathBuf,
    /// Directory of Secrets: DIR/<secret name>/<key>, one file per key.
    #[arg(long, env = "KBO_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Directory holding PVC storage: `pvc.claimName: X` is DIR/X.
    #[arg(long, env = "KBO_PVC_ROOT", default_value = "/data")]
    pub pvc_root: PathBuf,
    /// Output: a table, or the inventory as JSON or YAML.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How the inventory is printed.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns, one line per set or snapshot, the integrity verdict below each set.
    Table,
    /// The [`Inventory`] as JSON.
    Json,
    /// The [`Inventory`] as YAML.
    Yaml,
}

/// Why `import` could not walk the storage.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// `--dry-run` is missing.
    #[error(
        "import only reports (pass --dry-run): backup sets and offset snapshots of kafka-backup 0.x are read in place by KafkaRestore, KafkaBackupValidation, the catalog and KafkaOffsetRollback, so nothing needs copying or converting"
    )]
    NotDryRun,
    /// The storage file cannot be read.
    #[error("cannot read {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The storage cannot be opened or listed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The storage is a ConfigMap.
    #[error("{0}: import walks object storage (PVC, S3, Azure, GCS); a ConfigMap holds no backup set")]
    ConfigMap(String),
    /// A check could not run.
    #[error(transparent)]
    Validation(#[from] validation::ValidationError),
    /// The inventory could not be printed.
    #[error("cannot print the inventory: {0}")]
    Print(String),
}

/// What a prefix holds of the prior art.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// URI of the prefix walked.
    pub location: String,
    /// Backup sets.
    pub sets: Vec<SetReport>,
    /// Offset snapshots.
    pub snapshots: Vec<SnapshotReport>,
}

/// One backup set found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetReport {
    /// Its id (the directory).
    pub backup_id: String,
    /// Its format; `None` when the manifest is neither format.
    pub format: Option<String>,
    /// URI of its manifest.
    pub manifest: String,
    /// Topics.
    pub topics: usize,
    /// Partitions.
    pub partitions: u64,
    /// Segments.
    pub segments: u64,
    /// Records.
    pub records: u64,
    /// Uncompressed bytes of record data.
    pub bytes: u64,
    /// Bytes stored in segments.
    pub stored_bytes: u64,
    /// Earliest record time.
    pub first_record_time: Option<DateTime<Utc>>,
    /// Latest record time.
    pub last_record_time: Option<DateTime<Utc>>,
    /// When its run started.
    pub created: Option<DateTime<Utc>>,
    /// Groups of its consumer-group snapshot.
    pub consumer_groups: Vec<String>,
    /// The integrity verdict: Passed, Warning or Failed.
    pub integrity: CheckOutcome,
    /// What it found.
    pub message: String,
}

/// One offset snapshot found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotReport {
    /// Its id.
    pub snapshot_id: String,
    /// URI of its document.
    pub uri: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Partitions with an offset.
    pub partitions: usize,
    /// The cluster (bootstrap servers).
    pub cluster: String,
    /// When it was taken.
    pub taken: Option<DateTime<Utc>>,
    /// Size of the document.
    pub size: u64,
    /// Why it cannot be read, when it cannot.
    pub error: Option<String>,
}

impl Inventory {
    /// Whether every set passed its integrity check (warnings allowed) and every snapshot reads.
    pub fn healthy(&self) -> bool {
        self.sets.iter().all(|s| s.integrity != CheckOutcome::Failed)
            && self.snapshots.iter().all(|s| s.error.is_none())
    }
}

fn read_storage(path: &PathBuf) -> Result<StorageSpec, ImportError> {
    let fail = |message: String| ImportError::File {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let value: Value = serde_saphyr::from_str(&text).map_err(|e| fail(format!("not YAML or JSON: {e}")))?;
    let block = value.get("storage").cloned().unwrap_or(value);
    serde_json::from_value(block).map_err(|e| fail(format!("not a storage block: {e}")))
}

/// Walks `location` and reports every set and snapshot of the prior art. Reads only.
pub async fn inventory(location: &ObjectLocation, ctx: &Context) -> Result<Inventory, ImportError> {
    let mut sets = Vec::new();
    for (id, _, _) in backup_set::list_prior_art_sets(location).await? {
        sets.push(set_report(location, &id, ctx).await?);
    }
    let mut snapshots = Vec::new();
    let listed = match location.list(SNAPSHOT_DIR).await {
        Ok(l) => l,
        Err(StorageError::Object {
            source: object_store::Error::NotFound { .. },
            ..
        }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let wrapped = Location::Object(location.clone());
    for info in listed {
        let (id, dir_form) = match (prior_art::snapshot_id_of(&info.key), snapshot_id_of(&info.key)) {
            (Some(id), _) => (id, true),
            (None, Some(id)) => (id, false),
            _ => continue,
        };
        let report = match snapshot::read_snapshot(&wrapped, id).await {
            // This operator's own snapshots are not the prior art's.
            Ok(Some(stored)) if !stored.prior_art => continue,
            Ok(Some(stored)) => SnapshotReport {
                snapshot_id: id.to_owned(),
                uri: stored.uri,
                groups: stored.snapshot.groups.keys().cloned().collect(),
                partitions: stored.snapshot.partition_count(),
                cluster: stored.snapshot.cluster.clone(),
                taken: Some(stored.snapshot.timestamp),
                size: stored.size,
                error: None,
            },
            Ok(None) => continue,
            // A document that is not this operator's, in either place, is reported.
            Err(e) if dir_form || matches!(e, snapshot::SnapshotError::PriorArt { .. }) => SnapshotReport {
                snapshot_id: id.to_owned(),
                uri: location.uri(&format!("{SNAPSHOT_DIR}/{}", info.key)),
                groups: Vec::new(),
                partitions: 0,
                cluster: String::new(),
                taken: None,
                size: info.size,
                error: Some(e.to_string()),
            },
            Err(_) => continue,
        };
        snapshots.push(report);
    }
    Ok(Inventory {
        location: location.uri("").trim_end_matches('/').to_owned(),
        sets,
        snapshots,
    })
}

async fn set_report(location: &ObjectLocation, id: &str, ctx: &Context) -> Result<SetReport, ImportError> {
    let manifest = location.uri(&prior_art::manifest_key(id));
    let refused = |message: String| SetReport {
        backup_id: id.to_owned(),
        format: None,
        manifest: manifest.clone(),
        topics: 0,
        partitions: 0,
        segments: 0,
        records: 0,
        bytes: 0,
        stored_bytes: 0,
        first_record_time: None,
        last_record_time: None,
        created: None,
        consumer_groups: Vec::new(),
        integrity: CheckOutcome::Failed,
        message,
    };
    let set = match backup_set::open(location, id).await {
        Ok(Some(set)) if set.format == SetFormat::PriorArt => set,
        Ok(Some(_)) => {
            return Ok(refused(format!(
                "{manifest} is a kafka-backup-operator manifest outside backups/: not read as a set"
            )));
        }
        Ok(None) => return Ok(refused(format!("{manifest} disappeared while listing"))),
        Err(crate::storage::backup::BackupFormatError::Storage(e)) => return Err(e.into()),
        Err(e) => return Ok(refused(format!("refused: {e}"))),
    };
    let summary = set.summary(location);
    let judgement = validation::integrity(location, &set, ctx).await?;
    Ok(SetReport {
        backup_id: id.to_owned(),
        format: Some(summary.format),
        manifest: location.uri(&set.manifest_key),
        topics: summary.topics.len(),
        partitions: summary.partitions,
        segments: summary.segments,
        records: summary.records,
        bytes: summary.bytes,
        stored_bytes: summary.stored_bytes,
        first_record_time: summary.first_record_time,
        last_record_time: summary.last_record_time,
        created: summary.created,
        consumer_groups: summary.group_snapshot.map(|g| g.groups).unwrap_or_default(),
        integrity: judgement.outcome,
        message: judgement.message,
    })
}

fn time(t: &Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn outcome(o: CheckOutcome) -> &'static str {
    match o {
        CheckOutcome::Passed => "Passed",
        CheckOutcome::Failed => "Failed",
        CheckOutcome::Warning => "Warning",
        CheckOutcome::Skipped => "Skipped",
    }
}

/// Rows as aligned columns.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            line.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The inventory as text: a table of sets, each followed by its integrity message, then a table
/// of snapshots. Pure.
pub fn table(inventory: &Inventory) -> String {
    let mut out = format!(
        "Backup sets of kafka-backup 0.x in {} ({}):\n",
        inventory.location,
        inventory.sets.len()
    );
    if !inventory.sets.is_empty() {
        let mut rows = vec![
            [
                "ID",
                "FORMAT",
                "TOPICS",
                "PARTITIONS",
                "SEGMENTS",
                "RECORDS",
                "STORED",
                "FIRST RECORD",
                "LAST RECORD",
                "GROUPS",
                "INTEGRITY",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for set in &inventory.sets {
            rows.push(vec![
                set.backup_id.clone(),
                set.format.clone().unwrap_or_else(|| "unknown".into()),
                set.topics.to_string(),
                set.partitions.to_string(),
                set.segments.to_string(),
                set.records.to_string(),
                human_bytes(set.stored_bytes),
                time(&set.first_record_time),
                time(&set.last_record_time),
                if set.consumer_groups.is_empty() {
                    "-".to_owned()
                } else {
                    set.consumer_groups.join(",")
                },
                outcome(set.integrity).to_owned(),
            ]);
        }
        out.push_str(&columns(&rows));
        out.push_str("\n\nIntegrity:\n");
        for set in &inventory.sets {
            out.push_str(&format!(
                "  {} {}: {}\n",
                set.backup_id,
                outcome(set.integrity),
                set.message
            ));
        }
    }
    out.push('\n');
    out.push_str(&format!(
        "Offset snapshots of kafka-backup 0.x ({}):\n",
        inventory.snapshots.len()
    ));
    if !inventory.snapshots.is_empty() {
        let mut rows = vec![
            ["ID", "GROUPS", "PARTITIONS", "CLUSTER", "TAKEN", "SIZE", "STATUS"]
                .map(str::to_owned)
                .to_vec(),
        ];
        for s in &inventory.snapshots {
            rows.push(vec![
                s.snapshot_id.clone(),
                if s.groups.is_empty() {
                    "-".to_owned()
                } else {
                    s.groups.join(",")
                },
                s.partitions.to_string(),
                if s.cluster.is_empty() {
                    "-".to_owned()
                } else {
                    s.cluster.clone()
                },
                time(&s.taken),
                human_bytes(s.size),
                s.error.clone().unwrap_or_else(|| "readable".into()),
            ]);
        }
        out.push_str(&columns(&rows));
        out.push('\n');
    }
    out
}

/// Runs `import`: walks the storage, prints the inventory; `Ok(true)` when it is healthy.
pub fn run_blocking(args: &ImportArgs) -> Result<bool, ImportError> {
    if !args.dry_run {
        return Err(ImportError::NotDryRun);
    }
    let spec = read_storage(&args.storage)?;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| ImportError::Print(format!("no runtime: {e}")))?;
    runtime.block_on(async {
        let ctx = Context::new(
            ResourceRef {
                kind: "import".into(),
                namespace: None,
                name: "import".into(),
                uid: None,
            },
            args.secrets_dir.clone().map(SecretStore::Dir).unwrap_or_default(),
            StorageEnv {
                pvc_root: args.pvc_root.clone(),
                config_maps: crate::storage::configmap::ConfigMapStore::None,
            },
        );
        let location = match Location::open(&spec, &ctx.secrets, &ctx.storage)? {
            Location::Object(o) => o,
            Location::ConfigMap(c) => return Err(ImportError::ConfigMap(c.uri(""))),
        };
        let inventory = inventory(&location, &ctx).await?;
        let text = match args.output {
            Output::Table => table(&inventory),
            Output::Json => {
                serde_json::to_string_pretty(&inventory).map_err(|e| ImportError::Print(e.to_string()))?
            }
            Output::Yaml => {
                serde_saphyr::to_string(&inventory).map_err(|e| ImportError::Print(e.to_string()))?
            }
        };
        println!("{text}");
        Ok(inventory.healthy())
    })
}
