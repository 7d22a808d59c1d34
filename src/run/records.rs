//! What `run -f` keeps of the KafkaBackups it ran, so that a later `run -f` of a KafkaRestore or
//! KafkaBackupValidation with `backupRef: {name: X}` (v1alpha1) / `kafkaBackupRef: {name: X}`
//! (v1beta1) finds the backup as the reconciler finds it through the Kubernetes API: each
//! KafkaBackup run is recorded as its admitted v1beta1 object with its last status in
//! `<state-dir>/kafkabackups/<namespace>/<name>.yaml` (namespace `default` when the manifest and
//! `-n` name none), written atomically (a temporary file renamed), before the run (so a backup
//! still running can be referred to) and again with its final status. The reference is then
//! resolved by the reconciler's own rule ([`resolve_backup_ref`]).

use std::path::PathBuf;

use super::RunError;
use crate::{
    api::v1beta1::{BackupRef, KafkaBackup, KafkaBackupStatus},
    reconciler::resolve::resolve_backup_ref,
    storage::configmap::is_dns_subdomain,
};

/// The namespace of a resource that names none, as kubectl's.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The directory of the records: `<state-dir>/kafkabackups`.
#[derive(Clone, Debug)]
pub struct KafkaBackupRecords {
    dir: PathBuf,
}

impl KafkaBackupRecords {
    /// The records below `dir`.
    pub fn new(dir: PathBuf) -> Self {
        KafkaBackupRecords { dir }
    }

    /// The record of KafkaBackup `namespace/name`.
    pub fn path(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir.join(namespace).join(format!("{name}.yaml"))
    }

    /// Records `backup` (admitted, v1beta1) with `status`; returns the file.
    pub fn record(
        &self,
        backup: &KafkaBackup,
        namespace: &str,
        status: &KafkaBackupStatus,
    ) -> Result<PathBuf, RunError> {
        let name = backup.metadata.name.clone().unwrap_or_default();
        let path = self.checked_path(namespace, &name)?;
        let mut recorded = backup.clone();
        recorded.metadata.namespace = Some(namespace.to_owned());
        recorded.status = Some(status.clone());
        let failed = |message: String| RunError::Record {
            path: path.clone(),
            message,
        };
        let yaml = serde_saphyr::to_string(&recorded).map_err(|e| failed(e.to_string()))?;
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        let temp = dir.join(format!(".{name}.yaml.{}", std::process::id()));
        std::fs::write(&temp, yaml)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                failed(e.to_string())
            })?;
        Ok(path)
    }

    /// The recorded KafkaBackup `namespace/name` and its file.
    pub fn find(&self, namespace: &str, name: &str) -> Result<(KafkaBackup, PathBuf), RunError> {
        let path = self.checked_path(namespace, name)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RunError::BackupNotRecorded {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    path,
                });
            }
            Err(e) => {
                return Err(RunError::Record {
                    path,
                    message: e.to_string(),
                });
            }
        };
        let backup = serde_saphyr::from_str(&text).map_err(|e| RunError::Record {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok((backup, path))
    }

    /// Resolves `backup_ref.kafkaBackupRef` of a resource in `namespace` from the records, as the
    /// reconciler resolves it from the API; returns the record read, `None` when the reference
    /// names no KafkaBackup.
    pub fn resolve(&self, backup_ref: &mut BackupRef, namespace: &str) -> Result<Option<PathBuf>, RunError> {
        let Some(r) = &backup_ref.kafka_backup_ref else {
            return Ok(None);
        };
        let namespace = r.namespace.as_deref().unwrap_or(namespace);
        let (backup, path) = self.find(namespace, &r.name)?;
        resolve_backup_ref(backup_ref, &backup);
        Ok(Some(path))
    }

    /// The record's path, when both names are names (they become path segments).
    fn checked_path(&self, namespace: &str, name: &str) -> Result<PathBuf, RunError> {
        for (what, value) in [("namespace", namespace), ("name", name)] {
            if !is_dns_subdomain(value) {
                return Err(RunError::Record {
                    path: self.dir.clone(),
                    message: format!("KafkaBackup {what} {value:?} is not a Kubernetes name"),
                });
            }
        }
        Ok(self.path(namespace, name))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn backup(name: &str, storage: serde_json::Value) -> KafkaBackup {
        serde_json::from_value(json!({
            "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
            "metadata": {"name": name},
            "spec": {"kafkaCluster": {"bootstrapServers": ["k:9092"]}, "topics": ["t"], "storage": storage},
        }))
        .unwrap()
    }

    #[test]
    fn a_recorded_backup_resolves_a_backup_ref_as_the_reconciler_does() {
        let dir = tempfile::tempdir().unwrap();
        let records = KafkaBackupRecords::new(dir.path().join("kafkabackups"));
        let storage = json!({"type": "PVC", "pvc": {"claimName": "backups"}});
        let status = KafkaBackupStatus {
            backup_id: Some("production-backup".into()),
            ..Default::default()
        };
        let path = records
            .record(&backup("production-backup", storage.clone()), "default", &status)
            .unwrap();
        assert_eq!(
            path,
            dir.path().join("kafkabackups/default/production-backup.yaml")
        );
        let mut backup_ref: BackupRef =
            serde_json::from_value(json!({"kafkaBackupRef": {"name": "production-backup"}})).unwrap();
        assert_eq!(records.resolve(&mut backup_ref, "default").unwrap(), Some(path));
        assert_eq!(backup_ref.backup_id.as_deref(), Some("production-backup"));
        assert_eq!(serde_json::to_value(&backup_ref.storage).unwrap(), storage);
        assert!(backup_ref.kafka_backup_ref.is_none());
        // Without a reference nothing changes.
        let mut direct = backup_ref.clone();
        assert_eq!(records.resolve(&mut direct, "default").unwrap(), None);
        assert_eq!(direct, backup_ref);
    }

    #[test]
    fn a_backup_never_run_is_named_with_where_it_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let records = KafkaBackupRecords::new(dir.path().to_owned());
        let mut backup_ref: BackupRef =
            serde_json::from_value(json!({"kafkaBackupRef": {"name": "nightly", "namespace": "team-a"}}))
                .unwrap();
        let e = records
            .resolve(&mut backup_ref, "default")
            .unwrap_err()
            .to_string();
        let file = dir.path().join("team-a/nightly.yaml");
        assert!(
            e.starts_with("spec.backupRef: KafkaBackup team-a/nightly was never run by run -f here"),
            "{e}"
        );
        assert!(e.contains(&file.display().to_string()), "{e}");
        let mut bad: BackupRef = serde_json::from_value(json!({"kafkaBackupRef": {"name": "../x"}})).unwrap();
        let e = records.resolve(&mut bad, "default").unwrap_err().to_string();
        assert!(e.contains("\"../x\" is not a Kubernetes name"), "{e}");
    }
}
