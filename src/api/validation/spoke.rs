//! v1alpha1-only rules and mutations of the blocks several kinds share (Kafka connection, storage
//! location, backup reference, rate limits), and the helpers of every kind's v1alpha1 side: path
//! spellings, the warnings that explain a pre-1.0 spelling, defaults made explicit.
//!
//! One policy for every kind:
//! - `storageType`: absent with one storage block, the location is read as that block's type
//!   (the prior art would have used pvc and failed), which a warning says; with none, the
//!   documented default pvc; with several, validation refuses it, naming the blocks. It is never
//!   written: it depends on the blocks, which a later `kubectl apply` may change;
//! - `storageType: configmap` and the pre-1.0 S3 key names (`accessKeyKey`, `secretKeyKey`) are
//!   kept as written and read as their v1.0.0 spellings, with a warning; two spellings that
//!   disagree are refused, naming both;
//! - `pvc.create`: refused when `enabled: true` (the operator does not create claims, and the user
//!   expects one), warned about otherwise (it asks for nothing);
//! - a SASL Secret must name its mechanism (v1beta1 has no default for it);
//! - `securityProtocol` and `rateLimiting.maxConcurrentPartitions` are made explicit; a rate
//!   limit of 0 (v1alpha1 for unlimited) is kept and read as no limit.

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

/// Explains a pre-1.0 spelling the object uses: `old_at` given without `new_at` is read as
/// `new_at`; the two given alike is one too many. Two that differ are refused by validation.
pub(super) fn note_spelling<T: PartialEq>(
    old: Option<&T>,
    new: Option<&T>,
    old_at: &str,
    new_at: &str,
    warnings: &mut Vec<String>,
) {
    match (old, new) {
        (Some(_), None) => warnings.push(format!(
            "{old_at} is the pre-1.0 spelling of {new_at}: kept as written and read as {new_at}"
        )),
        (Some(old), Some(new)) if old == new => warnings.push(format!(
            "{old_at} repeats {new_at} (the pre-1.0 and the v1.0.0 spelling of one setting); one of them is enough"
        )),
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

/// Explains what a storage location leaves to be read (see the module documentation).
pub(super) fn explain_storage(at: &str, storage: &alpha::StorageSpec, warnings: &mut Vec<String>) {
    if storage.storage_type == Some(alpha::StorageType::ConfigMapLowercase) {
        warnings.push(format!(
            "{at}.storageType: configmap is the pre-1.0 spelling of configMap: kept as written and read as configMap"
        ));
    }
    if storage.storage_type.is_none()
        && let [only] = storage_blocks(storage).as_slice()
        && *only != beta::StorageType::Pvc
    {
        warnings.push(format!(
            "{at}.storageType is not set: the location is read as {}, the only storage block given (the prior \
             art would have used pvc)",
            spelling(&storage_type_down(*only))
        ));
    }
    if let Some(secret) = storage.s3.as_ref().and_then(|s3| s3.credentials_secret.as_ref()) {
        let secret_at = path(at, "s3.credentialsSecret");
        note_spelling(
            secret.access_key_key.as_ref(),
            secret.access_key_id_key.as_ref(),
            &path(&secret_at, "accessKeyKey"),
            &path(&secret_at, "accessKeyIdKey"),
            warnings,
        );
        note_spelling(
            secret.secret_key_key.as_ref(),
            secret.secret_access_key_key.as_ref(),
            &path(&secret_at, "secretKeyKey"),
            &path(&secret_at, "secretAccessKeyKey"),
            warnings,
        );
    }
}

/// Explains what the storage location of a backup reference leaves to be read.
pub(super) fn explain_backup_ref(at: &str, reference: &alpha::BackupRef, warnings: &mut Vec<String>) {
    if let Some(storage) = &reference.storage {
        explain_storage(&path(at, "storage"), storage, warnings);
    }
}

/// Rate limits: a limit of 0 (v1alpha1 for unlimited) is read as no limit, which a warning says,
/// and `maxConcurrentPartitions` is made explicit.
pub(super) fn mutate_rate_limiting(
    at: &str,
    rate: &mut Option<alpha::RateLimitingSpec>,
    warnings: &mut Vec<String>,
    defaults: &mut Defaults,
) {
    let rate = rate.get_or_insert_default();
    for (field, limit) in [
        ("recordsPerSec", rate.records_per_sec),
        ("bytesPerSec", rate.bytes_per_sec),
    ] {
        if limit == Some(0) {
            warnings.push(format!(
                "{at}.{field}: 0 is read as no limit (v1beta1 leaves the limit out for that)"
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
    fn storage_type_is_read_not_written() {
        for (given, warned) in [
            (
                json!({"gcs": {"bucket": "b"}}),
                Some("read as gcs, the only storage block given"),
            ),
            (json!({"pvc": {"claimName": "c"}}), None),
            (json!({}), None),
            (json!({"s3": {"bucket": "b"}, "configMap": {"name": "c"}}), None),
            (
                json!({"storageType": "configmap", "configMap": {"name": "c"}}),
                Some("configmap is the pre-1.0 spelling of configMap: kept as written"),
            ),
        ] {
            let mut warnings = Vec::new();
            explain_storage("spec.storage", &storage(given.clone()), &mut warnings);
            match warned {
                Some(expected) => assert!(
                    warnings.len() == 1 && warnings[0].contains(expected),
                    "{given}: {warnings:?}"
                ),
                None => assert!(warnings.is_empty(), "{given}: {warnings:?}"),
            }
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
    fn pre_1_0_s3_key_names_are_explained() {
        let location = storage(json!({"storageType": "s3", "s3": {"bucket": "b",
            "credentialsSecret": {"name": "c", "accessKeyKey": "id", "secretKeyKey": "s", "secretAccessKeyKey": "s"}}}));
        let mut warnings = Vec::new();
        explain_storage("spec.storage", &location, &mut warnings);
        assert_eq!(
            warnings,
            [
                "spec.storage.s3.credentialsSecret.accessKeyKey is the pre-1.0 spelling of \
                 spec.storage.s3.credentialsSecret.accessKeyIdKey: kept as written and read as \
                 spec.storage.s3.credentialsSecret.accessKeyIdKey",
                "spec.storage.s3.credentialsSecret.secretKeyKey repeats \
                 spec.storage.s3.credentialsSecret.secretAccessKeyKey (the pre-1.0 and the v1.0.0 spelling of one \
                 setting); one of them is enough",
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
