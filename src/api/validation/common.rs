//! Rules shared by several kinds, on their v1beta1 form: the Kafka connection, storage locations,
//! backup references, rate limits, execution, names, times and schedules (v1beta1 takes the
//! seconds-first form only; the v1.0.0 migration of classic schedules is read by conversion and
//! explained here). The v1alpha1-only rules and mutations of the shared blocks are in
//! `validation/spoke.rs`.

use chrono::{DateTime, Utc};

use super::{Verdict, index, path};
use crate::api::{
    conversion::common::six_field_form,
    v1beta1::{BackupRef, KafkaClusterSpec, RateLimitingSpec, SecurityProtocol, StorageSpec, StorageType},
};

/// Longest legal Kafka topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a Kafka connection block.
pub fn kafka_cluster(v: &mut Verdict, at: &str, cluster: &KafkaClusterSpec) {
    let servers = path(at, "bootstrapServers");
    if cluster.bootstrap_servers.is_empty() {
        v.missing(&servers, "needs at least one broker as host:port");
    }
    for (i, server) in cluster.bootstrap_servers.iter().enumerate() {
        if let Err(why) = host_port(server) {
            v.error(index(&servers, i), why, server);
        }
    }
    let sasl = matches!(
        cluster.security_protocol,
        SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
    );
    match (&cluster.sasl_secret, sasl) {
        (None, true) => v.missing(
            path(at, "saslSecret"),
            "is required with securityProtocol SASL_PLAINTEXT and SASL_SSL",
        ),
        (Some(_), false) => v.error(
            path(at, "saslSecret"),
            "needs securityProtocol SASL_PLAINTEXT or SASL_SSL; with this protocol it would be ignored",
            cluster.security_protocol,
        ),
        _ => {}
    }
    if cluster.security_protocol == SecurityProtocol::Plaintext {
        for (field, set) in [
            ("tlsSecret", cluster.tls_secret.is_some()),
            ("caSecret", cluster.ca_secret.is_some()),
        ] {
            if set {
                v.error(
                    path(at, field),
                    "needs securityProtocol SSL or SASL_SSL; PLAINTEXT connections use no TLS material",
                    "PLAINTEXT",
                );
            }
        }
    }
    if let Some(tls) = &cluster.tls_secret {
        secret_name(v, &path(at, "tlsSecret.name"), &tls.name);
        if tls.cert_key.is_some() != tls.key_key.is_some() {
            v.missing(
                path(at, "tlsSecret"),
                "certKey and keyKey go together: a client certificate needs its key",
            );
        }
    }
    if let Some(ca) = &cluster.ca_secret {
        secret_name(v, &path(at, "caSecret.name"), &ca.name);
    }
    if let Some(sasl) = &cluster.sasl_secret {
        secret_name(v, &path(at, "saslSecret.name"), &sasl.name);
    }
    if let Some(connection) = &cluster.connection
        && connection.tcp_keepalive == Some(false)
    {
        for (field, value) in [
            ("connection.keepaliveTimeSecs", connection.keepalive_time_secs),
            (
                "connection.keepaliveIntervalSecs",
                connection.keepalive_interval_secs,
            ),
        ] {
            if let Some(value) = value {
                v.error(
                    path(at, field),
                    "times keep-alive probes, but tcpKeepalive is false: remove it or set tcpKeepalive to true",
                    value,
                );
            }
        }
    }
}

/// The connection rules of a cluster whose records only librdkafka reads (KafkaBackup): its
/// consumer opens one connection per broker and has no per-socket keep-alive timing, so more
/// connections are refused and keep-alive timing is said to reach the protocol client only.
pub fn record_reader_connection(v: &mut Verdict, at: &str, cluster: &KafkaClusterSpec) {
    let Some(connection) = &cluster.connection else {
        return;
    };
    if let Some(n) = connection.connections_per_broker.filter(|n| *n != 1) {
        v.error(
            path(at, "connection.connectionsPerBroker"),
            "a backup reads its records with librdkafka's consumer, which opens one connection per broker and has no setting for more; remove the field or set it to 1",
            n,
        );
    }
    for (field, set) in [
        ("keepaliveTimeSecs", connection.keepalive_time_secs.is_some()),
        (
            "keepaliveIntervalSecs",
            connection.keepalive_interval_secs.is_some(),
        ),
    ] {
        if set {
            v.warn(format!(
                "{}: applies to the operator's own Kafka connections (the consumer-group snapshot); librdkafka's consumer, which reads the records, gets keep-alive with the node's timing (net.ipv4.tcp_keepalive_time and tcp_keepalive_intvl), as librdkafka has no per-socket setting",
                path(at, &format!("connection.{field}"))
            ));
        }
    }
}

/// Splits `host:port` and checks both parts; IPv6 hosts are written `[::1]:9092`.
pub fn host_port(server: &str) -> Result<(&str, u16), String> {
    let (host, port) = server
        .rsplit_once(':')
        .ok_or_else(|| "must be host:port (the port is missing)".to_owned())?;
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    };
    if !host_ok {
        return Err(format!(
            "must be host:port; {host:?} is not a host name or address"
        ));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("must be host:port; {port:?} is not a port in 1..=65535")),
        Ok(port) => Ok((host, port)),
    }
}

/// Checks a storage location; `allowed` lists the types the field may use.
pub fn storage(v: &mut Verdict, at: &str, storage: &StorageSpec, allowed: &[StorageType]) {
    if !allowed.contains(&storage.type_) {
        v.error(
            path(at, "type"),
            format!("cannot be used here; allowed: {}", type_names(allowed)),
            storage.type_,
        );
    }
    let blocks = [
        (StorageType::Pvc, "pvc", storage.pvc.is_some()),
        (StorageType::S3, "s3", storage.s3.is_some()),
        (StorageType::Azure, "azure", storage.azure.is_some()),
        (StorageType::Gcs, "gcs", storage.gcs.is_some()),
        (StorageType::ConfigMap, "configMap", storage.config_map.is_some()),
    ];
    for (type_, block, present) in blocks {
        if type_ == storage.type_ && !present {
            v.missing(
                path(at, block),
                format!("is required with type {}", type_name(type_)),
            );
        } else if type_ != storage.type_ && present {
            v.error(
                path(at, block),
                format!(
                    "belongs to type {}, not {}; remove it",
                    type_name(type_),
                    type_name(storage.type_)
                ),
                block,
            );
        }
    }
    if let Some(pvc) = &storage.pvc {
        non_empty(v, &path(at, "pvc.claimName"), &pvc.claim_name);
        if let Some(sub) = &pvc.sub_path {
            relative_path(v, &path(at, "pvc.subPath"), sub);
        }
    }
    if let Some(s3) = &storage.s3 {
        non_empty(v, &path(at, "s3.bucket"), &s3.bucket);
        if let Some(endpoint) = &s3.endpoint {
            match endpoint.split_once("://") {
                Some(("https", rest)) | Some(("http", rest)) if !rest.is_empty() => {
                    if endpoint.starts_with("http://") && s3.allow_http != Some(true) {
                        v.error(
                            path(at, "s3.endpoint"),
                            "is plain http: set s3.allowHttp: true to allow it",
                            endpoint,
                        );
                    }
                }
                _ => v.error(
                    path(at, "s3.endpoint"),
                    "must be an http:// or https:// URL",
                    endpoint,
                ),
            }
        }
        if let Some(secret) = &s3.credentials_secret {
            secret_name(v, &path(at, "s3.credentialsSecret.name"), &secret.name);
        }
    }
    if let Some(azure) = &storage.azure {
        non_empty(v, &path(at, "azure.container"), &azure.container);
        non_empty(v, &path(at, "azure.accountName"), &azure.account_name);
        let methods: Vec<&str> = [
            ("useWorkloadIdentity", azure.use_workload_identity == Some(true)),
            ("credentialsSecret", azure.credentials_secret.is_some()),
            ("sasTokenSecret", azure.sas_token_secret.is_some()),
            ("servicePrincipalSecret", azure.service_principal_secret.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if methods.len() > 1 {
            v.error(
                path(at, "azure"),
                "allows one authentication method; remove all but one",
                methods,
            );
        }
    }
    if let Some(gcs) = &storage.gcs {
        non_empty(v, &path(at, "gcs.bucket"), &gcs.bucket);
    }
    if let Some(config_map) = &storage.config_map {
        secret_name(v, &path(at, "configMap.name"), &config_map.name);
    }
}

fn type_name(type_: StorageType) -> &'static str {
    match type_ {
        StorageType::Pvc => "PVC",
        StorageType::S3 => "S3",
        StorageType::Azure => "Azure",
        StorageType::Gcs => "GCS",
        StorageType::ConfigMap => "ConfigMap",
    }
}

fn type_names(types: &[StorageType]) -> String {
    types.iter().map(|t| type_name(*t)).collect::<Vec<_>>().join(", ")
}

/// A string that must not be empty.
pub fn non_empty(v: &mut Verdict, at: &str, value: &str) {
    if value.trim().is_empty() {
        v.missing(at, "must not be empty");
    }
}

/// A relative path inside a volume or bucket: no leading `/`, no `..`.
pub fn relative_path(v: &mut Verdict, at: &str, value: &str) {
    if value.starts_with('/') || value.split('/').any(|part| part == "..") {
        v.error(at, "must be a relative path without '..'", value);
    }
}

/// The name of a Secret or ConfigMap: a DNS-1123 subdomain.
pub fn secret_name(v: &mut Verdict, at: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !ok {
        v.error(
            at,
            "must be a Kubernetes object name (lower-case letters, digits, '-' and '.')",
            name,
        );
    }
}

/// A Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn topic_name(v: &mut Verdict, at: &str, name: &str) {
    if let Err(why) = check_topic_name(name, false) {
        v.error(at, why, name);
    }
}

/// A topic name or a glob of `*` and `?` over topic names.
pub fn topic_pattern(v: &mut Verdict, at: &str, pattern: &str) {
    if let Err(why) = check_topic_name(pattern, true) {
        v.error(at, why, pattern);
    }
}

fn check_topic_name(name: &str, glob: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(format!(
            "is {} characters long; Kafka allows at most {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("is not a legal Kafka topic name".into());
    }
    let legal = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || (glob && matches!(c, '*' | '?'))
    };
    if let Some(bad) = name.chars().find(|c| !legal(*c)) {
        let allowed = if glob {
            "letters, digits, '.', '_', '-' and the globs '*' '?'"
        } else {
            "letters, digits, '.', '_' and '-'"
        };
        return Err(format!(
            "contains {bad:?}; Kafka topic names allow only {allowed}"
        ));
    }
    Ok(())
}

/// Consumer group ids: at least one when `required`, each non-empty, no duplicates.
pub fn consumer_groups(v: &mut Verdict, at: &str, groups: &[String], required: bool) {
    if required && groups.is_empty() {
        v.missing(at, "needs at least one consumer group");
    }
    for (i, group) in groups.iter().enumerate() {
        if group.trim().is_empty() {
            v.missing(index(at, i), "must not be empty");
        } else if groups[..i].contains(group) {
            v.error(index(at, i), "is listed twice", group);
        }
    }
}

/// An RFC 3339 time; returns it when valid.
pub fn rfc3339(v: &mut Verdict, at: &str, value: &str) -> Option<DateTime<Utc>> {
    match DateTime::parse_from_rfc3339(value) {
        Ok(time) => Some(time.with_timezone(&Utc)),
        Err(e) => {
            v.error(
                at,
                format!("must be an RFC 3339 time like 2024-12-01T12:00:00Z ({e})"),
                value,
            );
            None
        }
    }
}

/// A point in time in epoch milliseconds; a 10-digit value is seconds passed as milliseconds.
pub fn epoch_millis(v: &mut Verdict, at: &str, millis: i64) -> Option<DateTime<Utc>> {
    let digits = millis.unsigned_abs().to_string().len();
    if millis <= 0 {
        v.error(at, "must be a positive epoch time in milliseconds", millis);
        None
    } else if digits <= 10 {
        v.error(
            at,
            format!(
                "looks like seconds, not milliseconds ({digits} digits); epoch milliseconds have 13 digits, \
                 e.g. {}",
                millis.saturating_mul(1000)
            ),
            millis,
        );
        None
    } else if digits != 13 {
        v.error(
            at,
            format!("must be epoch milliseconds with 13 digits, not {digits}"),
            millis,
        );
        None
    } else {
        DateTime::from_timestamp_millis(millis)
    }
}

/// A cron schedule in the 6- or 7-field form with seconds first (UTC).
fn cron(v: &mut Verdict, at: &str, schedule: &str) {
    if let Err(e) = schedule.parse::<cron::Schedule>() {
        v.error(
            at,
            format!("is not a valid cron schedule (sec min hour day-of-month month day-of-week [year]): {e}"),
            schedule,
        );
    }
}

/// An id used as one segment of an object key or ConfigMap key.
pub fn object_key_segment(v: &mut Verdict, at: &str, id: &str) {
    let ok = !id.is_empty()
        && id.len() <= 248
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        v.error(
            at,
            "must start with a letter or digit and use only letters, digits, '.', '_' and '-' (at most 248)",
            id,
        );
    }
}

/// Storage types that can hold backup sets (and evidence reports): everything but a ConfigMap.
pub const BACKUP_STORAGE: &[StorageType] = &[
    StorageType::Pvc,
    StorageType::S3,
    StorageType::Azure,
    StorageType::Gcs,
];

/// A reference to a backup set (KafkaRestore and KafkaBackupValidation `backupRef`): exactly one of
/// `kafkaBackupRef` and `storage`, `storage` with `backupId`, and backups cannot live in a ConfigMap.
pub fn backup_ref(v: &mut Verdict, at: &str, backup: &BackupRef) {
    match (&backup.kafka_backup_ref, &backup.storage) {
        (None, None) => v.missing(
            at,
            "needs kafkaBackupRef (v1alpha1: name), the KafkaBackup whose backup set to read, or storage with \
             backupId (a backup set written elsewhere)",
        ),
        (Some(_), Some(_)) => v.error(
            at,
            "takes kafkaBackupRef or storage, not both (v1alpha1: name or storage): remove one; storage names a \
             location other than the KafkaBackup's",
            ["kafkaBackupRef", "storage"],
        ),
        _ => {}
    }
    if let Some(storage) = &backup.storage {
        if backup.backup_id.is_none() {
            v.missing(
                path(at, "backupId"),
                "is required with storage: name the backup set to read",
            );
        }
        self::storage(v, &path(at, "storage"), storage, BACKUP_STORAGE);
    }
    if let Some(id) = &backup.backup_id {
        object_key_segment(v, &path(at, "backupId"), id);
    }
    if let Some(kafka_backup) = &backup.kafka_backup_ref {
        secret_name(v, &path(at, "kafkaBackupRef.name"), &kafka_backup.name);
        if let Some(namespace) = &kafka_backup.namespace {
            namespace_name(v, &path(at, "kafkaBackupRef.namespace"), namespace);
        }
    }
}

/// The name of a namespace: a DNS-1123 label.
pub fn namespace_name(v: &mut Verdict, at: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        v.error(
            at,
            "must be a namespace name (at most 63 lower-case letters, digits and '-')",
            name,
        );
    }
}

/// Every storage type, a ConfigMap included (offset snapshots and mappings are small).
pub const ANY_STORAGE: &[StorageType] = &[
    StorageType::Pvc,
    StorageType::S3,
    StorageType::Azure,
    StorageType::Gcs,
    StorageType::ConfigMap,
];

/// Message of a 1-to-3600-seconds range; the same text on the v1alpha1 and v1beta1 checks, so an
/// out-of-range value is reported once (with the value as written).
pub const SECONDS_1_TO_3600: &str = "must be 1 to 3600 seconds";

/// Rate limits (`rateLimiting` of KafkaBackup and KafkaRestore): limits at least 1 per second,
/// 1 to 1024 partitions at a time.
pub fn rate_limiting(v: &mut Verdict, at: &str, rate: &RateLimitingSpec) {
    for (field, value) in [
        ("recordsPerSec", rate.records_per_sec),
        ("bytesPerSec", rate.bytes_per_sec),
    ] {
        if let Some(value) = value.filter(|v| *v < 1) {
            v.error(
                path(at, field),
                "must be at least 1 (leave it out for no limit)",
                value,
            );
        }
    }
    if !(1..=1024).contains(&rate.max_concurrent_partitions) {
        v.error(
            path(at, "maxConcurrentPartitions"),
            "must be 1 to 1024 partitions at a time",
            rate.max_concurrent_partitions,
        );
    }
}

/// Retries, deadline and clean-up of a one-shot operation (`execution`, v1alpha1 `job`).
pub fn execution(v: &mut Verdict, at: &str, execution: &crate::api::v1beta1::ExecutionSpec) {
    if let Some(retries) = execution.retries
        && !(0..=100).contains(&retries)
    {
        v.error(path(at, "retries"), "must be between 0 and 100", retries);
    }
    if let Some(deadline) = execution.deadline_seconds
        && deadline < 1
    {
        v.error(
            path(at, "deadlineSeconds"),
            "must be a positive number of seconds",
            deadline,
        );
    }
    if let Some(timeout) = execution.retry_timeout_seconds
        && !(1..=3600).contains(&timeout)
    {
        v.error(
            path(at, "retryTimeoutSeconds"),
            "must be 1 to 3600 seconds",
            timeout,
        );
    }
    if let Some(ttl) = execution.ttl_seconds_after_finished
        && ttl < 0
    {
        v.error(path(at, "ttlSecondsAfterFinished"), "must not be negative", ttl);
    }
}

/// A v1beta1 schedule: 6 or 7 cron fields, seconds first. A classic 5-field expression or a
/// macro (which v1alpha1 accepts and reads in this form) is refused naming its 6-field form.
pub fn schedule_rule(v: &mut Verdict, at: &str, schedule: &str) {
    if let Some(form) = six_field_form(schedule) {
        v.error(
            at,
            format!(
                "is a classic 5-field cron expression or macro; v1beta1 schedules take seconds first (sec min hour \
                 day-of-month month day-of-week [year]): write {form:?}"
            ),
            schedule,
        );
        return;
    }
    let fields = schedule.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        v.error(
            at,
            format!("has {fields} fields; a schedule has 6 or 7 (sec min hour day-of-month month day-of-week [year])"),
            schedule,
        );
        return;
    }
    cron(v, at, schedule);
}

/// The v1.0.0 schedule migration, explained: a classic 5-field cron (or a macro such as
/// `@daily`) is read in the 6-field form with seconds first (see [`six_field_form`]).
pub fn explain_schedule(at: &str, schedule: Option<&str>, warnings: &mut Vec<String>) {
    let Some(current) = schedule else {
        return;
    };
    let Some(form) = six_field_form(current) else {
        return;
    };
    warnings.push(format!(
        "{at}: {current:?} is read as {form:?}: schedules take seconds first (sec min hour day-of-month month \
         day-of-week), as since v1.0.0; kept as written"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_accepts_names_addresses_and_ipv6() {
        assert_eq!(
            host_port("kafka-0.kafka.svc:9092"),
            Ok(("kafka-0.kafka.svc", 9092))
        );
        assert_eq!(host_port("[::1]:9092"), Ok(("[::1]", 9092)));
        assert!(host_port("kafka").is_err());
        assert!(host_port("kafka:0").is_err());
        assert!(host_port("kafka:99999").is_err());
        assert!(host_port(":9092").is_err());
        assert!(host_port("ka fka:9092").is_err());
    }

    #[test]
    fn ten_digit_millis_are_called_seconds() {
        let mut v = Verdict::default();
        assert!(epoch_millis(&mut v, "spec.resetTimestamp", 1_701_432_000).is_none());
        assert!(
            v.errors[0].message.contains("looks like seconds"),
            "{:?}",
            v.errors
        );
        let mut v = Verdict::default();
        assert!(epoch_millis(&mut v, "x", 1_701_432_000_000).is_some());
        assert!(v.is_allowed());
    }

    #[test]
    fn topic_names_follow_kafka() {
        let mut v = Verdict::default();
        topic_name(&mut v, "t", "orders.v1_x-y");
        topic_pattern(&mut v, "t", "orders-*");
        assert!(v.is_allowed(), "{:?}", v.errors);
        for bad in ["", ".", "..", "a b", "ä", &"x".repeat(250), "orders-*"] {
            let mut v = Verdict::default();
            topic_name(&mut v, "t", bad);
            assert!(!v.is_allowed(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cron_needs_seconds() {
        let mut v = Verdict::default();
        schedule_rule(&mut v, "s", "0 0 * * * *");
        schedule_rule(&mut v, "s", "0 0 2 * * * *");
        assert!(v.is_allowed(), "{:?}", v.errors);
        schedule_rule(&mut v, "s", "0 2 * * *");
        schedule_rule(&mut v, "s", "@hourly");
        schedule_rule(&mut v, "s", "61 * * * * *");
        schedule_rule(&mut v, "s", "* * *");
        assert_eq!(v.errors.len(), 4, "{:?}", v.errors);
        assert!(v.errors[0].message.contains("5-field") && v.errors[0].message.ends_with("\"0 0 2 * * *\""));
        assert!(v.errors[1].message.ends_with("\"0 0 * * * *\""));
        assert!(v.errors[2].message.contains("not a valid cron schedule"));
        assert!(v.errors[3].message.starts_with("has 3 fields"));
    }

    #[test]
    fn duplicate_and_empty_groups_are_named() {
        let mut v = Verdict::default();
        consumer_groups(
            &mut v,
            "spec.consumerGroups",
            &["a".into(), "".into(), "a".into()],
            true,
        );
        let paths: Vec<&str> = v.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.consumerGroups[1]", "spec.consumerGroups[2]"]);
    }
}
