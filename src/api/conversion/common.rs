//! The v1alpha1 <-> v1beta1 mappings of the blocks several kinds share: the Kafka connection, a
//! storage location, `job` <-> `execution`, rate limiting, the backup reference of KafkaRestore
//! and KafkaBackupValidation, the run phase of KafkaBackup and KafkaBackupValidation and the
//! v1.0.0 migration of their schedules, with the small helpers every kind's mapping uses.
//!
//! One policy for every kind:
//! - up (v1alpha1 -> v1beta1): an absent value takes its documented default; a value v1beta1
//!   requires that the object leaves out becomes empty (`""`, `[]`, an empty block) or, for the
//!   SASL mechanism, a stand-in, so the webhook names what is missing and nothing is invented;
//!   where two spellings exist the v1.0.0 one wins (the webhook refuses two that differ);
//! - down (v1beta1 -> v1alpha1): the v1.0.0 spelling, leaving out values equal to their
//!   documented default and empty values. A round trip therefore only drops fields (or, for the
//!   stand-in, adds one), and the framework's residue restores explicit defaults exactly. Inside
//!   list elements defaults are written, since the residue keeps a list only whole, as a changed
//!   value, which an edit through v1beta1 discards.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::api::{v1alpha1 as alpha, v1beta1 as beta};

/// Documented default key of the CA certificate in a TLS or CA Secret.
pub(crate) const CA_KEY: &str = "ca.crt";
/// Documented default key of the SASL user name.
pub(crate) const USERNAME_KEY: &str = "username";
/// Documented default key of the SASL password.
pub(crate) const PASSWORD_KEY: &str = "password";
/// Documented default key of the S3 access key id.
pub(crate) const ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// Documented default key of the S3 secret access key.
pub(crate) const SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Documented default key of the Azure account key.
pub(crate) const ACCOUNT_KEY_KEY: &str = "AZURE_STORAGE_KEY";
/// Documented default key of the Azure SAS token.
pub(crate) const SAS_TOKEN_KEY: &str = "AZURE_SAS_TOKEN";
/// Documented default key of the Azure client id.
pub(crate) const CLIENT_ID_KEY: &str = "AZURE_CLIENT_ID";
/// Documented default key of the Azure tenant id.
pub(crate) const TENANT_ID_KEY: &str = "AZURE_TENANT_ID";
/// Documented default key of the Azure client secret.
pub(crate) const CLIENT_SECRET_KEY: &str = "AZURE_CLIENT_SECRET";
/// Documented default key of the GCS service-account JSON.
pub(crate) const SERVICE_ACCOUNT_JSON_KEY: &str = "SERVICE_ACCOUNT_JSON";
/// Documented default of `rateLimiting.maxConcurrentPartitions`.
pub(crate) const MAX_CONCURRENT_PARTITIONS: i32 = 4;
/// Stands in for a missing SASL mechanism, which v1beta1 requires and has no default for: the
/// webhook refuses such an object (naming the field) and the residue restores the absence.
const PLACEHOLDER_MECHANISM: beta::SaslMechanism = beta::SaslMechanism::ScramSha512;

/// Implements [`Hub`](super::Hub) for a kind whose typed mapping is the four functions
/// `spec_up`, `spec_down`, `status_up` and `status_down` of the module that invokes it; metadata
/// is copied through (the framework replaces it anyway).
macro_rules! hub {
    ($kind:ident) => {
        impl $crate::api::conversion::Hub for $crate::api::v1beta1::$kind {
            type Spoke = $crate::api::v1alpha1::$kind;
            const KIND: &'static str = stringify!($kind);

            fn from_spoke(spoke: Self::Spoke) -> Result<Self, $crate::api::conversion::ConversionError> {
                Ok(Self {
                    metadata: spoke.metadata,
                    spec: spec_up(spoke.spec),
                    status: spoke.status.map(status_up),
                })
            }

            fn to_spoke(self) -> Result<Self::Spoke, $crate::api::conversion::ConversionError> {
                Ok($crate::api::v1alpha1::$kind {
                    metadata: self.metadata,
                    spec: spec_down(self.spec),
                    status: self.status.map(status_down),
                })
            }
        }
    };
}
pub(super) use hub;

// ---------------------------------------------------------------------------------------------
// helpers

/// `Some(value)` unless it is empty: what v1alpha1 left out reads as `""` in v1beta1.
pub(crate) fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// `Some(list)` unless it is empty.
pub(crate) fn non_empty_vec<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

/// `Some(value)` unless it equals its documented default.
pub(crate) fn unless_default<T: PartialEq<D>, D: ?Sized>(value: T, default: &D) -> Option<T> {
    (value != *default).then_some(value)
}

/// Narrows a v1alpha1 64-bit integer to the 32-bit v1beta1 field, saturating: a value that does
/// not fit is out of the field's range anyway (the webhook refuses it, showing the original), and
/// the framework's residue gives the original back on the way down.
pub(crate) fn narrow(value: Option<i64>) -> Option<i32> {
    value.map(|v| i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX }))
}

/// An epoch-millisecond time as v1beta1 writes it: RFC 3339 in UTC, with fraction digits only
/// when they are not zero.
pub(crate) fn millis_to_rfc3339(millis: i64) -> Option<String> {
    DateTime::from_timestamp_millis(millis).map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// The epoch milliseconds of an RFC 3339 time, when that loses nothing (no sub-millisecond
/// digits) and gives the 13 digits the v1.0.0 epoch fields take (2001 to 2286).
pub(crate) fn rfc3339_to_millis(time: &str) -> Option<i64> {
    let parsed = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let millis = parsed.timestamp_millis();
    let exact = parsed.timestamp_subsec_nanos() % 1_000_000 == 0;
    (exact && (1_000_000_000_000..10_000_000_000_000).contains(&millis)).then_some(millis)
}

// ---------------------------------------------------------------------------------------------
// schedules

/// A v1alpha1 schedule in the v1beta1 form: a classic 5-field cron or a macro is read with
/// seconds first (the v1.0.0 migration); the residue keeps the spelling as written.
pub(crate) fn schedule_up(schedule: Option<String>) -> Option<String> {
    schedule.map(|s| six_field_form(&s).unwrap_or(s))
}

/// The 6-field form of a 5-field cron expression or macro (the v1.0.0 schedule migration);
/// `None` when there is nothing to rewrite.
pub(crate) fn six_field_form(schedule: &str) -> Option<String> {
    let macro_form = match schedule.trim() {
        "@yearly" | "@annually" => Some("0 0 0 1 1 *"),
        "@monthly" => Some("0 0 0 1 * *"),
        "@weekly" => Some("0 0 0 * * SUN"),
        "@daily" | "@midnight" => Some("0 0 0 * * *"),
        "@hourly" => Some("0 0 * * * *"),
        _ => None,
    };
    if let Some(form) = macro_form {
        return Some(form.to_owned());
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    let [minute, hour, day, month, weekday] = fields.as_slice() else {
        return None;
    };
    let weekday = weekday_names(weekday).unwrap_or_else(|| (*weekday).to_owned());
    Some(format!("0 {minute} {hour} {day} {month} {weekday}"))
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A classic day-of-week field with numbers (0 or 7 = Sunday) written with day names; `None`
/// when it has no numbers or cannot be read (the validation reports it then).
fn weekday_names(field: &str) -> Option<String> {
    if !field.chars().any(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut days = [false; 7];
    let mut names: Vec<String> = Vec::new();
    for part in field.split(',') {
        if !part.chars().any(|c| c.is_ascii_digit()) || part.chars().any(|c| c.is_ascii_alphabetic()) {
            if part.chars().any(|c| c.is_ascii_digit()) {
                return None;
            }
            names.push(part.to_owned());
            continue;
        }
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, step.parse::<usize>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (first, last) = match range {
            "*" => (0, 6),
            _ => match range.split_once('-') {
                Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
                None => {
                    let a = range.parse::<usize>().ok()?;
                    (a, if part.contains('/') { 6 } else { a })
                }
            },
        };
        if first > 7 || last > 7 || first > last {
            return None;
        }
        for day in (first..=last).step_by(step) {
            days[day % 7] = true;
        }
    }
    if names.is_empty() && days.iter().all(|d| *d) {
        return Some("*".into());
    }
    let mut out: Vec<String> = DAY_NAMES
        .iter()
        .zip(days)
        .filter(|(_, set)| *set)
        .map(|(name, _)| (*name).to_owned())
        .collect();
    out.extend(names);
    Some(out.join(","))
}

// ---------------------------------------------------------------------------------------------
// Kafka connection

/// A Kafka connection, v1alpha1 -> v1beta1. A SASL Secret without a mechanism gets the stand-in
/// [`PLACEHOLDER_MECHANISM`] (the webhook refuses it).
pub(crate) fn cluster_up(cluster: alpha::KafkaClusterSpec) -> beta::KafkaClusterSpec {
    beta::KafkaClusterSpec {
        bootstrap_servers: cluster.bootstrap_servers.unwrap_or_default(),
        security_protocol: cluster.security_protocol.unwrap_or_default(),
        tls_secret: cluster.tls_secret.map(|tls| beta::TlsSecretRef {
            name: tls.name.unwrap_or_default(),
            ca_key: tls.ca_key.unwrap_or_else(|| CA_KEY.into()),
            cert_key: tls.cert_key,
            key_key: tls.key_key,
        }),
        ca_secret: cluster.ca_secret.map(|ca| beta::CaSecretRef {
            name: ca.name.unwrap_or_default(),
            ca_key: ca.ca_key.unwrap_or_else(|| CA_KEY.into()),
        }),
        sasl_secret: cluster.sasl_secret.map(|sasl| beta::SaslSecretRef {
            name: sasl.name.unwrap_or_default(),
            mechanism: sasl.mechanism.unwrap_or(PLACEHOLDER_MECHANISM),
            username_key: sasl.username_key.unwrap_or_else(|| USERNAME_KEY.into()),
            password_key: sasl.password_key.unwrap_or_else(|| PASSWORD_KEY.into()),
        }),
        connection: cluster.connection,
    }
}

/// A Kafka connection, v1beta1 -> v1alpha1.
pub(crate) fn cluster_down(cluster: beta::KafkaClusterSpec) -> alpha::KafkaClusterSpec {
    alpha::KafkaClusterSpec {
        bootstrap_servers: non_empty_vec(cluster.bootstrap_servers),
        security_protocol: unless_default(cluster.security_protocol, &beta::SecurityProtocol::Plaintext),
        tls_secret: cluster.tls_secret.map(|tls| alpha::TlsSecretRef {
            name: non_empty(tls.name),
            ca_key: unless_default(tls.ca_key, CA_KEY),
            cert_key: tls.cert_key,
            key_key: tls.key_key,
        }),
        ca_secret: cluster.ca_secret.map(|ca| alpha::CaSecretRef {
            name: non_empty(ca.name),
            ca_key: unless_default(ca.ca_key, CA_KEY),
        }),
        sasl_secret: cluster.sasl_secret.map(|sasl| alpha::SaslSecretRef {
            name: non_empty(sasl.name),
            mechanism: Some(sasl.mechanism),
            username_key: unless_default(sasl.username_key, USERNAME_KEY),
            password_key: unless_default(sasl.password_key, PASSWORD_KEY),
        }),
        connection: cluster.connection,
    }
}

/// A connection with no broker: what an absent `kafkaCluster` converts to where v1beta1 requires
/// one (the webhook refuses it).
pub(crate) fn no_cluster() -> beta::KafkaClusterSpec {
    cluster_up(alpha::KafkaClusterSpec::default())
}

/// A required `kafkaCluster`, v1alpha1 -> v1beta1: absent becomes [`no_cluster`].
pub(crate) fn cluster_up_or_empty(cluster: Option<alpha::KafkaClusterSpec>) -> beta::KafkaClusterSpec {
    cluster.map_or_else(no_cluster, cluster_up)
}

/// A required `kafkaCluster`, v1beta1 -> v1alpha1: [`no_cluster`] goes back to absent.
pub(crate) fn cluster_down_unless_empty(cluster: beta::KafkaClusterSpec) -> Option<alpha::KafkaClusterSpec> {
    (cluster != no_cluster()).then(|| cluster_down(cluster))
}

// ---------------------------------------------------------------------------------------------
// storage

/// The storage blocks a v1alpha1 location gives, in the order pvc, s3, azure, gcs, configMap.
pub(crate) fn storage_blocks(storage: &alpha::StorageSpec) -> Vec<beta::StorageType> {
    use beta::StorageType as T;
    [
        (T::Pvc, storage.pvc.is_some()),
        (T::S3, storage.s3.is_some()),
        (T::Azure, storage.azure.is_some()),
        (T::Gcs, storage.gcs.is_some()),
        (T::ConfigMap, storage.config_map.is_some()),
    ]
    .into_iter()
    .filter_map(|(type_, present)| present.then_some(type_))
    .collect()
}

/// The type of a v1alpha1 location: `storageType`; without it the block given, the first of
/// several (refused by the webhook, so that only the others are reported as foreign), or with
/// none the documented default `pvc`.
pub(crate) fn storage_type_of(storage: &alpha::StorageSpec) -> beta::StorageType {
    match storage.storage_type {
        Some(type_) => storage_type_up(type_),
        None => storage_blocks(storage)
            .first()
            .copied()
            .unwrap_or(beta::StorageType::Pvc),
    }
}

/// The v1beta1 storage type of a v1alpha1 spelling (`configmap` included).
pub(crate) fn storage_type_up(type_: alpha::StorageType) -> beta::StorageType {
    use alpha::StorageType as A;
    use beta::StorageType as B;
    match type_ {
        A::Pvc => B::Pvc,
        A::S3 => B::S3,
        A::Azure => B::Azure,
        A::Gcs => B::Gcs,
        A::ConfigMap | A::ConfigMapLowercase => B::ConfigMap,
    }
}

/// The v1.0.0 spelling of a v1beta1 storage type.
pub(crate) fn storage_type_down(type_: beta::StorageType) -> alpha::StorageType {
    use alpha::StorageType as A;
    use beta::StorageType as B;
    match type_ {
        B::Pvc => A::Pvc,
        B::S3 => A::S3,
        B::Azure => A::Azure,
        B::Gcs => A::Gcs,
        B::ConfigMap => A::ConfigMap,
    }
}

/// A storage location, v1alpha1 -> v1beta1. Of two spellings of an S3 key name the v1.0.0 one
/// wins; `pvc.create` has no v1beta1 form (the webhook refuses or warns about it): it stays behind.
pub(crate) fn storage_up(storage: alpha::StorageSpec) -> beta::StorageSpec {
    beta::StorageSpec {
        type_: storage_type_of(&storage),
        pvc: storage.pvc.map(|pvc| beta::PvcStorage {
            claim_name: pvc.claim_name.unwrap_or_default(),
            sub_path: pvc.sub_path,
        }),
        s3: storage.s3.map(|s3| beta::S3Storage {
            bucket: s3.bucket.unwrap_or_default(),
            region: s3.region,
            endpoint: s3.endpoint,
            path_style: s3.path_style,
            allow_http: s3.allow_http,
            prefix: s3.prefix,
            credentials_secret: s3.credentials_secret.map(|secret| beta::S3CredentialsSecretRef {
                name: secret.name.unwrap_or_default(),
                access_key_id_key: secret
                    .access_key_id_key
                    .or(secret.access_key_key)
                    .unwrap_or_else(|| ACCESS_KEY_ID_KEY.into()),
                secret_access_key_key: secret
                    .secret_access_key_key
                    .or(secret.secret_key_key)
                    .unwrap_or_else(|| SECRET_ACCESS_KEY_KEY.into()),
            }),
        }),
        azure: storage.azure.map(|azure| beta::AzureStorage {
            container: azure.container.unwrap_or_default(),
            account_name: azure.account_name.unwrap_or_default(),
            prefix: azure.prefix,
            endpoint: azure.endpoint,
            use_workload_identity: azure.use_workload_identity,
            credentials_secret: azure.credentials_secret.map(|s| beta::AzureAccountKeySecretRef {
                name: s.name.unwrap_or_default(),
                account_key_key: s.account_key_key.unwrap_or_else(|| ACCOUNT_KEY_KEY.into()),
            }),
            sas_token_secret: azure.sas_token_secret.map(|s| beta::AzureSasTokenSecretRef {
                name: s.name.unwrap_or_default(),
                sas_token_key: s.sas_token_key.unwrap_or_else(|| SAS_TOKEN_KEY.into()),
            }),
            service_principal_secret: azure.service_principal_secret.map(|s| {
                beta::AzureServicePrincipalSecretRef {
                    name: s.name.unwrap_or_default(),
                    client_id_key: s.client_id_key.unwrap_or_else(|| CLIENT_ID_KEY.into()),
                    tenant_id_key: s.tenant_id_key.unwrap_or_else(|| TENANT_ID_KEY.into()),
                    client_secret_key: s.client_secret_key.unwrap_or_else(|| CLIENT_SECRET_KEY.into()),
                }
            }),
        }),
        gcs: storage.gcs.map(|gcs| beta::GcsStorage {
            bucket: gcs.bucket.unwrap_or_default(),
            prefix: gcs.prefix,
            credentials_secret: gcs.credentials_secret.map(|s| beta::GcsCredentialsSecretRef {
                name: s.name.unwrap_or_default(),
                service_account_json_key: s
                    .service_account_json_key
                    .unwrap_or_else(|| SERVICE_ACCOUNT_JSON_KEY.into()),
            }),
        }),
        config_map: storage.config_map.map(|cm| beta::ConfigMapStorage {
            name: cm.name.unwrap_or_default(),
        }),
    }
}

/// A storage location, v1beta1 -> v1alpha1. `storageType` is always written: it is required in
/// v1beta1 (`type`), not a default.
pub(crate) fn storage_down(storage: beta::StorageSpec) -> alpha::StorageSpec {
    alpha::StorageSpec {
        storage_type: Some(storage_type_down(storage.type_)),
        pvc: storage.pvc.map(|pvc| alpha::PvcStorage {
            claim_name: non_empty(pvc.claim_name),
            sub_path: pvc.sub_path,
            create: None,
        }),
        s3: storage.s3.map(|s3| alpha::S3Storage {
            bucket: non_empty(s3.bucket),
            region: s3.region,
            endpoint: s3.endpoint,
            path_style: s3.path_style,
            allow_http: s3.allow_http,
            prefix: s3.prefix,
            credentials_secret: s3.credentials_secret.map(|secret| alpha::S3CredentialsSecretRef {
                name: non_empty(secret.name),
                access_key_id_key: unless_default(secret.access_key_id_key, ACCESS_KEY_ID_KEY),
                secret_access_key_key: unless_default(secret.secret_access_key_key, SECRET_ACCESS_KEY_KEY),
                access_key_key: None,
                secret_key_key: None,
            }),
        }),
        azure: storage.azure.map(|azure| alpha::AzureStorage {
            container: non_empty(azure.container),
            account_name: non_empty(azure.account_name),
            prefix: azure.prefix,
            endpoint: azure.endpoint,
            use_workload_identity: azure.use_workload_identity,
            credentials_secret: azure.credentials_secret.map(|s| alpha::AzureAccountKeySecretRef {
                name: non_empty(s.name),
                account_key_key: unless_default(s.account_key_key, ACCOUNT_KEY_KEY),
            }),
            sas_token_secret: azure.sas_token_secret.map(|s| alpha::AzureSasTokenSecretRef {
                name: non_empty(s.name),
                sas_token_key: unless_default(s.sas_token_key, SAS_TOKEN_KEY),
            }),
            service_principal_secret: azure.service_principal_secret.map(|s| {
                alpha::AzureServicePrincipalSecretRef {
                    name: non_empty(s.name),
                    client_id_key: unless_default(s.client_id_key, CLIENT_ID_KEY),
                    tenant_id_key: unless_default(s.tenant_id_key, TENANT_ID_KEY),
                    client_secret_key: unless_default(s.client_secret_key, CLIENT_SECRET_KEY),
                }
            }),
        }),
        gcs: storage.gcs.map(|gcs| alpha::GcsStorage {
            bucket: non_empty(gcs.bucket),
            prefix: gcs.prefix,
            credentials_secret: gcs.credentials_secret.map(|s| alpha::GcsCredentialsSecretRef {
                name: non_empty(s.name),
                service_account_json_key: unless_default(
                    s.service_account_json_key,
                    SERVICE_ACCOUNT_JSON_KEY,
                ),
            }),
        }),
        config_map: storage.config_map.map(|cm| alpha::ConfigMapStorage {
            name: non_empty(cm.name),
        }),
    }
}

/// A required `storage`, v1alpha1 -> v1beta1: absent becomes the empty default location (a PVC
/// without its block, which the webhook refuses).
pub(crate) fn storage_up_or_empty(storage: Option<alpha::StorageSpec>) -> beta::StorageSpec {
    storage_up(storage.unwrap_or_default())
}

/// A required `storage`, v1beta1 -> v1alpha1: the empty location goes back to absent.
pub(crate) fn storage_down_unless_empty(storage: beta::StorageSpec) -> Option<alpha::StorageSpec> {
    (storage != storage_up(alpha::StorageSpec::default())).then(|| storage_down(storage))
}

/// A PVC location, what the v1.0.0 `pvcName` fields name.
pub(crate) fn pvc(claim_name: String, sub_path: Option<String>) -> beta::StorageSpec {
    beta::StorageSpec {
        type_: beta::StorageType::Pvc,
        pvc: Some(beta::PvcStorage { claim_name, sub_path }),
        s3: None,
        azure: None,
        gcs: None,
        config_map: None,
    }
}

/// The claim and sub-path of a location that is exactly a PVC, what a v1.0.0 `pvcName` field
/// (with a sub-path where the kind has one) can name.
pub(crate) fn pvc_location(storage: &beta::StorageSpec) -> Option<(String, Option<String>)> {
    let location = storage.pvc.as_ref()?;
    (*storage == pvc(location.claim_name.clone(), location.sub_path.clone()))
        .then(|| (location.claim_name.clone(), location.sub_path.clone()))
}

// ---------------------------------------------------------------------------------------------
// job, rate limiting, backup reference, run phase

/// `job` of the Job-based releases -> `execution`.
pub(crate) fn execution_up(job: alpha::JobSpec) -> beta::ExecutionSpec {
    beta::ExecutionSpec {
        retries: job.backoff_limit,
        deadline_seconds: job.active_deadline_seconds,
        // v1alpha1 has no such field; the annotation keeps a v1beta1 value on a round trip.
        retry_timeout_seconds: None,
        ttl_seconds_after_finished: job.ttl_seconds_after_finished,
    }
}

/// `execution` -> `job`.
pub(crate) fn job_down(execution: beta::ExecutionSpec) -> alpha::JobSpec {
    alpha::JobSpec {
        backoff_limit: execution.retries,
        active_deadline_seconds: execution.deadline_seconds,
        ttl_seconds_after_finished: execution.ttl_seconds_after_finished,
    }
}

/// Rate limits, v1alpha1 -> v1beta1: 0 per second meant unlimited in v1alpha1; v1beta1 says
/// unlimited by leaving the limit out.
pub(crate) fn rate_limiting_up(rate: Option<alpha::RateLimitingSpec>) -> beta::RateLimitingSpec {
    let rate = rate.unwrap_or_default();
    beta::RateLimitingSpec {
        records_per_sec: rate.records_per_sec.filter(|r| *r != 0),
        bytes_per_sec: rate.bytes_per_sec.filter(|b| *b != 0),
        max_concurrent_partitions: rate
            .max_concurrent_partitions
            .unwrap_or(MAX_CONCURRENT_PARTITIONS),
    }
}

/// Rate limits, v1beta1 -> v1alpha1; the defaults (no limit, 4 partitions) are absent.
pub(crate) fn rate_limiting_down(rate: beta::RateLimitingSpec) -> Option<alpha::RateLimitingSpec> {
    let down = alpha::RateLimitingSpec {
        records_per_sec: rate.records_per_sec,
        bytes_per_sec: rate.bytes_per_sec,
        max_concurrent_partitions: unless_default(rate.max_concurrent_partitions, &MAX_CONCURRENT_PARTITIONS),
    };
    (down != alpha::RateLimitingSpec::default()).then_some(down)
}

/// `backupRef`, v1alpha1 -> v1beta1: `name`/`namespace` become `kafkaBackupRef`. A `namespace`
/// without `name` has no v1beta1 form: it stays behind (the webhook refuses it, naming both).
/// Both sources are kept when both are given: the webhook refuses that too, naming both.
pub(crate) fn backup_ref_up(reference: alpha::BackupRef) -> beta::BackupRef {
    let kafka_backup_ref = reference.name.map(|name| beta::KafkaBackupRef {
        name,
        namespace: reference.namespace,
    });
    beta::BackupRef {
        backup_id: reference.backup_id,
        storage: reference.storage.map(storage_up),
        kafka_backup_ref,
    }
}

/// `backupRef`, v1beta1 -> v1alpha1 (v1.0.0 spelling); an empty reference is absent.
pub(crate) fn backup_ref_down(reference: beta::BackupRef) -> Option<alpha::BackupRef> {
    let (name, namespace) = match reference.kafka_backup_ref {
        Some(r) => (non_empty(r.name), r.namespace),
        None => (None, None),
    };
    let down = alpha::BackupRef {
        name,
        namespace,
        backup_id: reference.backup_id,
        storage: reference.storage.map(storage_down),
    };
    (down != alpha::BackupRef::default()).then_some(down)
}

/// The run phase of KafkaBackup and KafkaBackupValidation; the prior art's `Ready` (configured,
/// waiting) has no v1beta1 value: no phase, which reads as Pending (the residue keeps it).
pub(crate) fn phase_up(phase: alpha::RunPhase) -> Option<beta::RunPhase> {
    match phase {
        alpha::RunPhase::Pending => Some(beta::RunPhase::Pending),
        alpha::RunPhase::Ready => None,
        alpha::RunPhase::Running => Some(beta::RunPhase::Running),
        alpha::RunPhase::Completed => Some(beta::RunPhase::Completed),
        alpha::RunPhase::Failed => Some(beta::RunPhase::Failed),
        alpha::RunPhase::Suspended => Some(beta::RunPhase::Suspended),
    }
}

/// The v1alpha1 run phase of a v1beta1 one.
pub(crate) fn phase_down(phase: beta::RunPhase) -> alpha::RunPhase {
    match phase {
        beta::RunPhase::Pending => alpha::RunPhase::Pending,
        beta::RunPhase::Running => alpha::RunPhase::Running,
        beta::RunPhase::Completed => alpha::RunPhase::Completed,
        beta::RunPhase::Failed => alpha::RunPhase::Failed,
        beta::RunPhase::Suspended => alpha::RunPhase::Suspended,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn default_key_names_match_the_v1beta1_serde_defaults_and_are_left_out_down() {
        let storage: beta::StorageSpec = serde_json::from_value(json!({"type": "Azure", "azure": {
            "container": "c", "accountName": "a",
            "credentialsSecret": {"name": "k"}, "sasTokenSecret": {"name": "s"},
            "servicePrincipalSecret": {"name": "p"}}}))
        .unwrap();
        let down = serde_json::to_value(storage_down(storage.clone())).unwrap();
        assert_eq!(
            down["azure"],
            json!({"container": "c", "accountName": "a", "credentialsSecret": {"name": "k"},
                "sasTokenSecret": {"name": "s"}, "servicePrincipalSecret": {"name": "p"}})
        );
        assert_eq!(storage_up(serde_json::from_value(down).unwrap()), storage);
        for (storage, field) in [
            (
                json!({"type": "S3", "s3": {"bucket": "b", "credentialsSecret": {"name": "k"}}}),
                "s3",
            ),
            (
                json!({"type": "GCS", "gcs": {"bucket": "b", "credentialsSecret": {"name": "k"}}}),
                "gcs",
            ),
        ] {
            let storage: beta::StorageSpec = serde_json::from_value(storage).unwrap();
            let down = serde_json::to_value(storage_down(storage.clone())).unwrap();
            assert_eq!(down[field]["credentialsSecret"], json!({"name": "k"}), "{field}");
            assert_eq!(storage_up(serde_json::from_value(down).unwrap()), storage);
        }
        let cluster: beta::KafkaClusterSpec = serde_json::from_value(json!({"bootstrapServers": ["k:9092"],
            "securityProtocol": "SASL_SSL", "saslSecret": {"name": "s", "mechanism": "PLAIN"},
            "tlsSecret": {"name": "t"}, "caSecret": {"name": "c"}}))
        .unwrap();
        let down = serde_json::to_value(cluster_down(cluster.clone())).unwrap();
        assert_eq!(down["saslSecret"], json!({"name": "s", "mechanism": "PLAIN"}));
        assert_eq!(down["tlsSecret"], json!({"name": "t"}));
        assert_eq!(cluster_up(serde_json::from_value(down).unwrap()), cluster);
        let rate: beta::RateLimitingSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(rate_limiting_down(rate), None);
    }

    #[test]
    fn plaintext_and_empty_blocks_are_left_out_down() {
        let plain: beta::KafkaClusterSpec =
            serde_json::from_value(json!({"bootstrapServers": ["k:9092"]})).unwrap();
        assert_eq!(
            serde_json::to_value(cluster_down(plain)).unwrap(),
            json!({"bootstrapServers": ["k:9092"]})
        );
        assert_eq!(cluster_up_or_empty(None), no_cluster());
        assert_eq!(cluster_down_unless_empty(no_cluster()), None);
        assert_eq!(storage_down_unless_empty(storage_up_or_empty(None)), None);
        assert_eq!(backup_ref_down(backup_ref_up(alpha::BackupRef::default())), None);
    }

    #[test]
    fn a_missing_sasl_mechanism_gets_a_stand_in() {
        let cluster = alpha::KafkaClusterSpec {
            sasl_secret: Some(alpha::SaslSecretRef {
                name: Some("s".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let up = cluster_up(cluster);
        assert_eq!(up.sasl_secret.map(|s| s.mechanism), Some(PLACEHOLDER_MECHANISM));
    }

    #[test]
    fn storage_type_is_spelled_or_the_block_given() {
        let only_gcs: alpha::StorageSpec = serde_json::from_value(json!({"gcs": {"bucket": "b"}})).unwrap();
        assert_eq!(storage_type_of(&only_gcs), beta::StorageType::Gcs);
        let two: alpha::StorageSpec =
            serde_json::from_value(json!({"s3": {"bucket": "b"}, "configMap": {"name": "c"}})).unwrap();
        assert_eq!(storage_type_of(&two), beta::StorageType::S3);
        assert_eq!(
            storage_type_of(&alpha::StorageSpec::default()),
            beta::StorageType::Pvc
        );
        let spelled: alpha::StorageSpec =
            serde_json::from_value(json!({"storageType": "configmap", "s3": {"bucket": "b"}})).unwrap();
        assert_eq!(storage_type_of(&spelled), beta::StorageType::ConfigMap);
    }

    #[test]
    fn pre_1_0_s3_key_names_map_to_the_v1_0_0_ones() {
        let storage: alpha::StorageSpec = serde_json::from_value(json!({"storageType": "s3",
            "s3": {"bucket": "b", "credentialsSecret": {"name": "c", "accessKeyKey": "id", "secretKeyKey": "secret"}}}))
        .unwrap();
        assert_eq!(
            serde_json::to_value(storage_up(storage)).unwrap()["s3"]["credentialsSecret"],
            json!({"name": "c", "accessKeyIdKey": "id", "secretAccessKeyKey": "secret"})
        );
    }

    #[test]
    fn backup_ref_name_becomes_kafka_backup_ref() {
        let up = backup_ref_up(alpha::BackupRef {
            name: Some("nightly".into()),
            namespace: Some("kafka".into()),
            backup_id: Some("b-1".into()),
            storage: None,
        });
        assert_eq!(
            serde_json::to_value(&up).unwrap(),
            json!({"backupId": "b-1", "kafkaBackupRef": {"name": "nightly", "namespace": "kafka"}})
        );
        assert_eq!(backup_ref_down(up.clone()).map(backup_ref_up), Some(up));
        // A namespace without a name stays behind (the webhook refuses it).
        let namespace_only = alpha::BackupRef {
            namespace: Some("kafka".into()),
            ..Default::default()
        };
        assert_eq!(backup_ref_up(namespace_only).kafka_backup_ref, None);
    }

    #[test]
    fn integers_that_do_not_fit_saturate() {
        assert_eq!(narrow(Some(99_999_999_999)), Some(i32::MAX));
        assert_eq!(narrow(Some(-99_999_999_999)), Some(i32::MIN));
        assert_eq!(narrow(Some(30)), Some(30));
    }

    #[test]
    fn epoch_millis_and_rfc3339() {
        assert_eq!(
            millis_to_rfc3339(1_733_054_400_123).as_deref(),
            Some("2024-12-01T12:00:00.123Z")
        );
        assert_eq!(
            millis_to_rfc3339(1_733_054_400_000).as_deref(),
            Some("2024-12-01T12:00:00Z")
        );
        assert_eq!(
            rfc3339_to_millis("2024-12-01T13:00:00.123+01:00"),
            Some(1_733_054_400_123)
        );
        assert_eq!(rfc3339_to_millis("2024-12-01T12:00:00.123456Z"), None);
        assert_eq!(rfc3339_to_millis("1999-12-31T23:59:59Z"), None);
    }

    #[test]
    fn five_field_cron_gains_seconds_and_day_names() {
        assert_eq!(six_field_form("0 * * * *").as_deref(), Some("0 0 * * * *"));
        assert_eq!(
            six_field_form("30 2 * * 1-5").as_deref(),
            Some("0 30 2 * * MON,TUE,WED,THU,FRI")
        );
        assert_eq!(six_field_form("0 3 * * 0,7").as_deref(), Some("0 0 3 * * SUN"));
        assert_eq!(
            six_field_form("0 3 * * 5-7").as_deref(),
            Some("0 0 3 * * SUN,FRI,SAT")
        );
        assert_eq!(
            six_field_form("0 3 * * */2").as_deref(),
            Some("0 0 3 * * SUN,TUE,THU,SAT")
        );
        assert_eq!(
            six_field_form("0 3 * * MON-FRI").as_deref(),
            Some("0 0 3 * * MON-FRI")
        );
        assert_eq!(six_field_form("0 3 * * 0-6").as_deref(), Some("0 0 3 * * *"));
        assert_eq!(six_field_form("@daily").as_deref(), Some("0 0 0 * * *"));
        assert_eq!(six_field_form("0 0 * * * *"), None);
        assert_eq!(six_field_form("0 0 * * * * *"), None);
        for schedule in [
            "0 30 2 * * MON,TUE,WED,THU,FRI",
            "0 0 3 * * SUN,FRI,SAT",
            "0 0 0 * * SUN",
        ] {
            assert!(schedule.parse::<cron::Schedule>().is_ok(), "{schedule}");
        }
    }
}
