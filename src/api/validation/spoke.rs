//! v1alpha1-only rules and mutations of the blocks several kinds share (Kafka connection, storage
//! location, backup reference, rate limits), and the helpers of every kind's v1alpha1 side: path
//! spellings, pre-1.0 respelling, defaults made explicit.
//!
//! One policy for every kind:
//! - `storageType`: absent with one storage block, the mutation writes that block's type (the
//!   prior art would have used pvc and failed); with none, the documented default pvc; with
//!   several, it stays absent and validation refuses it, naming the blocks;
//! - `storageType: configmap` and the pre-1.0 S3 key names (`accessKeyKey`, `secretKeyKey`) are
//!   rewritten to their v1.0.0 spellings; two spellings that disagree are refused, naming both;
//! - `pvc.create`: refused when `enabled: true` (the operator does not create claims, and the user
//!   expects one), warned about otherwise (it asks for nothing);
//! - a SASL Secret must name its mechanism (v1beta1 has no default for it);
//! - `securityProtocol` and `rateLimiting.maxConcurrentPartitions` are made explicit, and a rate
//!   limit of 0 (v1alpha1 for unlimited) is removed.

use std::fmt::Display;

use serde::Serialize;
use serde_json::Value;

use super::{Verdict, path};
use crate::api::{
    conversion::common::{MAX_CONCURRENT_PARTITIONS, storage_blocks, storage_type_down},
    v1alpha1 as alpha, v1beta1 as beta,
};

// ---------------------------------------------------------------------------------------------
// helpers

/// The serde spelling of a value, for messages: `to-timestamp`, `configMap`, `4`.
pub(super) fn spelling<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Maps the first `from` of `table` that `hub_path` starts with (as whole path segments) to its
/// `to`; more specific entries go first.
pub(super) fn rename(hub_path: &str, table: &[(&str, &str)]) -> Option<String> {
    table.iter().find_map(|(from, to)| {
        let rest = hub_path.strip_prefix(from)?;
        (rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')).then(|| format!("{to}{rest}"))
    })
}

/// `execution` in the v1alpha1 spelling `job` of the Job-based releases.
pub(super) const JOB_PATHS: &[(&str, &str)] = &[
    ("spec.execution.retries", "spec.job.backoffLimit"),
    ("spec.execution.deadlineSeconds", "spec.job.activeDeadlineSeconds"),
    (
        "spec.execution.ttlSecondsAfterFinished",
        "spec.job.ttlSecondsAfterFinished",
    ),
    ("spec.execution", "spec.job"),
];

/// `backupRef.kafkaBackupRef` in the v1alpha1 spelling `backupRef.name` / `backupRef.namespace`.
pub(super) const BACKUP_REF_PATHS: &[(&str, &str)] = &[
    (
        "spec.backupRef.kafkaBackupRef.namespace",
        "spec.backupRef.namespace",
    ),
    ("spec.backupRef.kafkaBackupRef.name", "spec.backupRef.name"),
    ("spec.backupRef.kafkaBackupRef", "spec.backupRef.name"),
];

/// The v1alpha1 path of a v1beta1 path through a storage location: `type` is spelled
/// `storageType`.
pub(super) fn storage_type_path(hub_path: &str) -> String {
    let parts: Vec<&str> = hub_path.split('.').collect();
    let mut out: Vec<&str> = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if *part == "type" && i > 0 && parts[i - 1].ends_with("storage") {
            out.push("storageType");
        } else {
            out.push(part);
        }
    }
    out.join(".")
}

/// Defaults made explicit by a mutation, reported in one warning sentence.
#[derive(Default)]
pub(super) struct Defaults(Vec<String>);

impl Defaults {
    /// Sets `slot` to `value` when it is absent, and records it.
    pub(super) fn set<T: Serialize>(&mut self, slot: &mut Option<T>, field: &str, value: T) {
        if slot.is_none() {
            self.0.push(format!("{field}: {}", spelling(&value)));
            *slot = Some(value);
        }
    }

    /// Adds the warning naming every default made explicit, if any.
    pub(super) fn finish(self, warnings: &mut Vec<String>) {
        if !self.0.is_empty() {
            warnings.push(format!(
                "made the documented defaults explicit: {}",
                self.0.join(", ")
            ));
        }
    }
}

/// What [`onto_v1`] did with a pre-1.0 field.
pub(super) enum Respelling {
    /// Its value moved onto the absent v1.0.0 spelling.
    Moved,
    /// It was dropped: the v1.0.0 spelling says the same.
    Repeated,
}

/// Moves a pre-1.0 field onto its v1.0.0 spelling when that is absent, or drops it when the
/// v1.0.0 spelling says the same; two different values stay for validation to refuse (`None`).
pub(super) fn onto_v1<T: PartialEq>(old: &mut Option<T>, new: &mut Option<T>) -> Option<Respelling> {
    let value = old.take()?;
    match new {
        None => {
            *new = Some(value);
            Some(Respelling::Moved)
        }
        Some(current) if *current == value => Some(Respelling::Repeated),
        Some(_) => {
            *old = Some(value);
            None
        }
    }
}

/// [`onto_v1`] with one warning sentence naming both fields (and the value moved).
pub(super) fn respell<T: PartialEq + Display>(
    old: &mut Option<T>,
    new: &mut Option<T>,
    old_at: &str,
    new_at: &str,
    warnings: &mut Vec<String>,
) {
    match (onto_v1(old, new), &*new) {
        (Some(Respelling::Moved), Some(value)) => warnings.push(format!(
            "{old_at}: {value} was rewritten to {new_at}, its v1.0.0 spelling"
        )),
        (Some(Respelling::Repeated), _) => {
            warnings.push(format!("{old_at} was removed: it repeats {new_at}"))
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// rules

/// A SASL Secret must name its mechanism: v1beta1 requires one and has no default.
pub(super) fn spoke_cluster(v: &mut Verdict, at: &str, cluster: Option<&alpha::KafkaClusterSpec>) {
    if let Some(sasl) = cluster.and_then(|c| c.sasl_secret.as_ref())
        && sasl.mechanism.is_none()
    {
        v.missing(
            path(at, "saslSecret.mechanism"),
            "is required: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
        );
    }
}

/// What only a v1alpha1 storage location can get wrong: several blocks without `storageType`,
/// `pvc.create`, two spellings of an S3 key name that disagree.
pub(super) fn spoke_storage(v: &mut Verdict, at: &str, storage: &alpha::StorageSpec) {
    if storage.storage_type.is_none() {
        let blocks = storage_blocks(storage);
        if blocks.len() > 1 {
            v.error(
                path(at, "storageType"),
                "is required when more than one storage block is given: name the one to use",
                blocks
                    .into_iter()
                    .map(|type_| spelling(&storage_type_down(type_)))
                    .collect::<Vec<_>>(),
            );
        }
    }
    if let Some(create) = storage.pvc.as_ref().and_then(|pvc| pvc.create.as_ref()) {
        if create.enabled == Some(true) {
            v.missing(
                path(at, "pvc.create"),
                "is not supported: the operator does not create PersistentVolumeClaims; create the claim yourself, \
                 mount it into the operator and name it in claimName",
            );
        } else {
            v.warn(format!(
                "{at}.pvc.create is ignored: the operator never creates PersistentVolumeClaims"
            ));
        }
    }
    if let Some(secret) = storage.s3.as_ref().and_then(|s3| s3.credentials_secret.as_ref()) {
        let secret_at = path(at, "s3.credentialsSecret");
        for (old, old_value, new, new_value) in [
            (
                "accessKeyKey",
                &secret.access_key_key,
                "accessKeyIdKey",
                &secret.access_key_id_key,
            ),
            (
                "secretKeyKey",
                &secret.secret_key_key,
                "secretAccessKeyKey",
                &secret.secret_access_key_key,
            ),
        ] {
            if let (Some(old_value), Some(new_value)) = (old_value, new_value)
                && old_value != new_value
            {
                v.error(
                    path(&secret_at, old),
                    format!(
                        "conflicts with {secret_at}.{new} ({new_value}): both name one Secret key; keep one"
                    ),
                    old_value,
                );
            }
        }
    }
}

/// What only a v1alpha1 `backupRef` can get wrong: a `namespace` without the `name` it belongs
/// to (which has no v1beta1 form), and the rules of its storage location. (`name` together with
/// `storage` converts as given and is refused by the v1beta1 rule, naming both.)
pub(super) fn spoke_backup_ref(v: &mut Verdict, at: &str, reference: &alpha::BackupRef) {
    if let (Some(namespace), None) = (&reference.namespace, &reference.name) {
        v.error(
            path(at, "namespace"),
            format!("needs {at}.name: it is the namespace of the KafkaBackup named there"),
            namespace,
        );
    }
    if let Some(storage) = &reference.storage {
        spoke_storage(v, &path(at, "storage"), storage);
    }
}

// ---------------------------------------------------------------------------------------------
// mutations

/// Makes the documented default of a Kafka connection explicit: `securityProtocol: PLAINTEXT`.
pub(super) fn mutate_cluster(at: &str, cluster: &mut alpha::KafkaClusterSpec, defaults: &mut Defaults) {
    defaults.set(
        &mut cluster.security_protocol,
        &path(at, "securityProtocol"),
        beta::SecurityProtocol::Plaintext,
    );
}

/// Rewrites the pre-1.0 spellings of a storage location and makes `storageType` explicit (see the
/// module documentation).
pub(super) fn mutate_storage(
    at: &str,
    storage: &mut alpha::StorageSpec,
    warnings: &mut Vec<String>,
    defaults: &mut Defaults,
) {
    if storage.storage_type == Some(alpha::StorageType::ConfigMapLowercase) {
        storage.storage_type = Some(alpha::StorageType::ConfigMap);
        warnings.push(format!(
            "{at}.storageType: configmap was rewritten to configMap, its v1.0.0 spelling"
        ));
    }
    if storage.storage_type.is_none() {
        match storage_blocks(storage).as_slice() {
            [] | [beta::StorageType::Pvc] => defaults.set(
                &mut storage.storage_type,
                &path(at, "storageType"),
                alpha::StorageType::Pvc,
            ),
            [only] => {
                let type_ = storage_type_down(*only);
                warnings.push(format!(
                    "{at}.storageType was set to {}, the only storage block given (the default would be pvc)",
                    spelling(&type_)
                ));
                storage.storage_type = Some(type_);
            }
            // Which one is meant is the user's to say: refused by `spoke_storage`.
            _ => {}
        }
    }
    if let Some(secret) = storage.s3.as_mut().and_then(|s3| s3.credentials_secret.as_mut()) {
        let secret_at = path(at, "s3.credentialsSecret");
        respell(
            &mut secret.access_key_key,
            &mut secret.access_key_id_key,
            &path(&secret_at, "accessKeyKey"),
            &path(&secret_at, "accessKeyIdKey"),
            warnings,
        );
        respell(
            &mut secret.secret_key_key,
            &mut secret.secret_access_key_key,
            &path(&secret_at, "secretKeyKey"),
            &path(&secret_at, "secretAccessKeyKey"),
            warnings,
        );
    }
}

/// A backup reference: the mutations of its storage location.
pub(super) fn mutate_backup_ref(
    at: &str,
    reference: &mut alpha::BackupRef,
    warnings: &mut Vec<String>,
    defaults: &mut Defaults,
) {
    if let Some(storage) = &mut reference.storage {
        mutate_storage(&path(at, "storage"), storage, warnings, defaults);
    }
}

/// Rate limits: a limit of 0 (v1alpha1 for unlimited) is removed, which says the same in both
/// versions, and `maxConcurrentPartitions` is made explicit.
pub(super) fn mutate_rate_limiting(
    at: &str,
    rate: &mut Option<alpha::RateLimitingSpec>,
    warnings: &mut Vec<String>,
    defaults: &mut Defaults,
) {
    let rate = rate.get_or_insert_default();
    for (field, limit) in [
        ("recordsPerSec", &mut rate.records_per_sec),
        ("bytesPerSec", &mut rate.bytes_per_sec),
    ] {
        if *limit == Some(0) {
            *limit = None;
            warnings.push(format!(
                "{at}.{field}: 0 was removed; leaving the limit out means unlimited"
            ));
        }
    }
    defaults.set(
        &mut rate.max_concurrent_partitions,
        &path(at, "maxConcurrentPartitions"),
        MAX_CONCURRENT_PARTITIONS,
    );
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn storage(value: Value) -> alpha::StorageSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn storage_type_is_the_only_block_the_default_or_left_to_the_user() {
        for (given, expected) in [
            (json!({"gcs": {"bucket": "b"}}), Some("gcs")),
            (json!({"pvc": {"claimName": "c"}}), Some("pvc")),
            (json!({}), Some("pvc")),
            (json!({"s3": {"bucket": "b"}, "configMap": {"name": "c"}}), None),
            (
                json!({"storageType": "configmap", "configMap": {"name": "c"}}),
                Some("configMap"),
            ),
        ] {
            let mut location = storage(given.clone());
            let mut warnings = Vec::new();
            let mut defaults = Defaults::default();
            mutate_storage("spec.storage", &mut location, &mut warnings, &mut defaults);
            defaults.finish(&mut warnings);
            let written = location.storage_type.map(|t| spelling(&t));
            assert_eq!(written.as_deref(), expected, "{given}");
            assert_eq!(
                warnings.len(),
                usize::from(expected.is_some()),
                "{given}: {warnings:?}"
            );
            // Idempotent.
            let mut again = Vec::new();
            mutate_storage(
                "spec.storage",
                &mut location,
                &mut again,
                &mut Defaults::default(),
            );
            assert!(again.is_empty(), "{again:?}");
        }
    }

    #[test]
    fn storage_rules_name_their_fields() {
        let mut v = Verdict::default();
        spoke_storage(
            &mut v,
            "spec.storage",
            &storage(json!({"s3": {"bucket": "b", "credentialsSecret": {"name": "c",
                "accessKeyKey": "a", "accessKeyIdKey": "b"}}, "gcs": {"bucket": "b"},
                "pvc": {"claimName": "c", "create": {"enabled": true}}})),
        );
        let errors: Vec<String> = v.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "spec.storage.storageType: is required when more than one storage block is given: name the one to \
                 use (got [\"pvc\",\"s3\",\"gcs\"])",
                "spec.storage.pvc.create: is not supported: the operator does not create PersistentVolumeClaims; \
                 create the claim yourself, mount it into the operator and name it in claimName",
                "spec.storage.s3.credentialsSecret.accessKeyKey: conflicts with \
                 spec.storage.s3.credentialsSecret.accessKeyIdKey (b): both name one Secret key; keep one (got \"a\")",
            ]
        );
        // A claim that is not to be created asks for nothing: a warning.
        let mut v = Verdict::default();
        spoke_storage(
            &mut v,
            "spec.storage",
            &storage(json!({"pvc": {"claimName": "c", "create": {"size": "1Gi"}}})),
        );
        assert!(v.is_allowed());
        assert_eq!(
            v.warnings,
            ["spec.storage.pvc.create is ignored: the operator never creates PersistentVolumeClaims"]
        );
    }

    #[test]
    fn pre_1_0_s3_key_names_are_respelled_once() {
        let mut location = storage(json!({"storageType": "s3", "s3": {"bucket": "b",
            "credentialsSecret": {"name": "c", "accessKeyKey": "id", "secretKeyKey": "s", "secretAccessKeyKey": "s"}}}));
        let mut warnings = Vec::new();
        mutate_storage(
            "spec.storage",
            &mut location,
            &mut warnings,
            &mut Defaults::default(),
        );
        assert_eq!(
            serde_json::to_value(&location).unwrap()["s3"]["credentialsSecret"],
            json!({"name": "c", "accessKeyIdKey": "id", "secretAccessKeyKey": "s"})
        );
        assert_eq!(
            warnings,
            [
                "spec.storage.s3.credentialsSecret.accessKeyKey: id was rewritten to \
                 spec.storage.s3.credentialsSecret.accessKeyIdKey, its v1.0.0 spelling",
                "spec.storage.s3.credentialsSecret.secretKeyKey was removed: it repeats \
                 spec.storage.s3.credentialsSecret.secretAccessKeyKey",
            ]
        );
    }

    #[test]
    fn paths_take_the_v1alpha1_spelling() {
        assert_eq!(
            storage_type_path("spec.backupRef.storage.type"),
            "spec.backupRef.storage.storageType"
        );
        assert_eq!(storage_type_path("spec.type"), "spec.type");
        assert_eq!(
            rename("spec.execution.retries", JOB_PATHS).as_deref(),
            Some("spec.job.backoffLimit")
        );
        assert_eq!(rename("spec.executions", JOB_PATHS), None);
        assert_eq!(
            rename("spec.backupRef.kafkaBackupRef", BACKUP_REF_PATHS).as_deref(),
            Some("spec.backupRef.name")
        );
    }
}
