//! Kafka through rdkafka (librdkafka): the client configuration built from a `kafkaCluster`
//! block, the consumers' client context (how librdkafka's errors are logged), the tracking
//! headers a restore may add, and the consumer-group operations the offset engine needs.

pub mod groups;
pub mod headers;
pub mod protocol;
pub mod topics;

use std::time::Duration;

use rdkafka::{
    ClientConfig, ClientContext,
    consumer::{BaseConsumer, ConsumerContext},
    types::RDKafkaErrorCode,
};
use tracing::Level;

use crate::{
    api::v1beta1::{ConnectionSpec, KafkaClusterSpec, SaslMechanism, SecurityProtocol},
    secrets::{SecretError, SecretStore},
};

/// Why talking to Kafka failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A Secret named by `kafkaCluster` could not be read.
    #[error("kafkaCluster: {0}")]
    Secret(#[from] SecretError),
    /// librdkafka refused the configuration or a request failed.
    #[error("{what}: {source}")]
    Client {
        /// What was being done.
        what: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A group-offset request over the Kafka protocol failed.
    #[error(transparent)]
    Protocol(Box<protocol::ProtocolError>),
    /// The cluster answered, but not what the operation needs.
    #[error("{0}")]
    Broker(String),
    /// A blocking librdkafka call could not be run.
    #[error("Kafka worker task failed: {0}")]
    Join(String),
}

impl From<protocol::ProtocolError> for KafkaError {
    fn from(e: protocol::ProtocolError) -> Self {
        KafkaError::Protocol(Box::new(e))
    }
}

/// librdkafka's own error codes (below 0) that a later attempt may not meet: the broker could
/// not be resolved, reached or heard from in time.
const LIBRDKAFKA_TRANSIENT: [RDKafkaErrorCode; 8] = [
    RDKafkaErrorCode::BrokerTransportFailure,
    RDKafkaErrorCode::Resolve,
    RDKafkaErrorCode::MessageTimedOut,
    RDKafkaErrorCode::AllBrokersDown,
    RDKafkaErrorCode::OperationTimedOut,
    RDKafkaErrorCode::TimedOutQueue,
    RDKafkaErrorCode::WaitCache,
    RDKafkaErrorCode::Retry,
];

impl KafkaError {
    /// Another attempt of the operation, after a backoff, may succeed: the cluster was
    /// unreachable (also when its name did not resolve), slow, or in a passing state (a leader
    /// or coordinator moving, too few replicas), or it answered unexpectedly. Secrets, settings,
    /// TLS and SASL failures fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            KafkaError::Secret(_) | KafkaError::Join(_) => false,
            KafkaError::Client { source, .. } => source.rdkafka_error_code().is_some_and(|code| {
                let value = code as i32;
                match i16::try_from(value) {
                    Ok(kafka) if value >= 0 => {
                        kafka_protocol::ResponseError::try_from_code(kafka).is_some_and(|e| e.is_retriable())
                    }
                    _ => LIBRDKAFKA_TRANSIENT.contains(&code),
                }
            }),
            KafkaError::Protocol(e) => e.is_retryable(),
            KafkaError::Broker(_) => true,
        }
    }

    /// Wraps an rdkafka error with what was being done.
    pub fn client(what: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
        let what = what.into();
        move |source| KafkaError::Client { what, source }
    }
}

/// Everything needed to reach a cluster: the `kafkaCluster` block with its Secrets read, and its
/// settings checked. Both clients (librdkafka and [`protocol`]) are configured from it.
#[derive(Clone)]
pub struct ClusterAccess {
    /// host:port of the bootstrap servers.
    pub bootstrap_servers: Vec<String>,
    /// PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    pub security_protocol: SecurityProtocol,
    /// CA certificates (PEM) to verify the brokers with; the system's when absent.
    pub ca_pem: Option<String>,
    /// Client certificate chain and key (PEM) for mutual TLS.
    pub client_cert: Option<(String, String)>,
    /// SASL mechanism and credentials.
    pub sasl: Option<protocol::Sasl>,
    /// `connection.tcpKeepalive`, `keepaliveTimeSecs` and `keepaliveIntervalSecs`.
    pub keepalive: Keepalive,
    /// `connection.tcpNodelay`.
    pub tcp_nodelay: Option<bool>,
    /// `connection.connectionsPerBroker`: connections each protocol client opens to a broker.
    pub connections_per_broker: Option<i32>,
}

/// TCP keep-alive of the broker sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keepalive {
    /// SO_KEEPALIVE on.
    pub enabled: bool,
    /// Idle time before the first probe (TCP_KEEPIDLE); the node's when unset.
    pub time: Option<Duration>,
    /// Time between probes (TCP_KEEPINTVL); the node's when unset.
    pub interval: Option<Duration>,
}

impl Keepalive {
    /// From a `connection` block: `tcpKeepalive`, on by default when a timing is set.
    pub fn of(connection: &ConnectionSpec) -> Keepalive {
        let secs = |s: Option<i32>| s.map(|s| Duration::from_secs(s.max(1) as u64));
        let time = secs(connection.keepalive_time_secs);
        let interval = secs(connection.keepalive_interval_secs);
        Keepalive {
            enabled: connection
                .tcp_keepalive
                .unwrap_or(time.is_some() || interval.is_some()),
            time,
            interval,
        }
    }

    /// The socket option to set; `None` when keep-alive is off.
    pub fn socket_option(&self) -> Option<socket2::TcpKeepalive> {
        if !self.enabled {
            return None;
        }
        let mut option = socket2::TcpKeepalive::new();
        if let Some(time) = self.time {
            option = option.with_time(time);
        }
        if let Some(interval) = self.interval {
            option = option.with_interval(interval);
        }
        Some(option)
    }
}

impl ClusterAccess {
    /// Reads the Secrets a `kafkaCluster` block names.
    pub fn read(cluster: &KafkaClusterSpec, secrets: &SecretStore) -> Result<Self, KafkaError> {
        let ca_pem = match (&cluster.ca_secret, &cluster.tls_secret) {
            (Some(ca), _) => Some(secrets.get_text(&ca.name, &ca.ca_key)?),
            (None, Some(tls)) => Some(secrets.get_text(&tls.name, &tls.ca_key)?),
            (None, None) => None,
        };
        let client_cert = match &cluster.tls_secret {
            Some(tls) => match (&tls.cert_key, &tls.key_key) {
                (Some(cert_key), Some(key_key)) => Some((
                    secrets.get_text(&tls.name, cert_key)?,
                    secrets.get_text(&tls.name, key_key)?,
                )),
                _ => None,
            },
            None => None,
        };
        let sasl = match &cluster.sasl_secret {
            Some(sasl) => Some(protocol::Sasl {
                mechanism: sasl.mechanism,
                username: secrets.get_text(&sasl.name, &sasl.username_key)?,
                password: secrets.get_text(&sasl.name, &sasl.password_key)?,
            }),
            None => None,
        };
        let connection = cluster.connection.clone().unwrap_or_default();
        Ok(ClusterAccess {
            bootstrap_servers: cluster.bootstrap_servers.clone(),
            security_protocol: cluster.security_protocol,
            ca_pem,
            client_cert,
            sasl,
            keepalive: Keepalive::of(&connection),
            tcp_nodelay: connection.tcp_nodelay,
            connections_per_broker: connection.connections_per_broker,
        })
    }

    /// librdkafka settings: brokers, security protocol, TLS material (passed as PEM strings,
    /// never written to disk), SASL credentials and TCP tuning.
    pub fn rdkafka_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers.join(","));
        let protocol = match self.security_protocol {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        };
        config.set("security.protocol", protocol);
        if let Some(ca) = &self.ca_pem {
            config.set("ssl.ca.pem", ca);
        }
        if let Some((cert, key)) = &self.client_cert {
            config.set("ssl.certificate.pem", cert);
            config.set("ssl.key.pem", key);
        }
        if let Some(sasl) = &self.sasl {
            let mechanism = match sasl.mechanism {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            config.set("sasl.mechanism", mechanism);
            config.set("sasl.username", &sasl.username);
            config.set("sasl.password", &sasl.password);
        }
        // librdkafka sets SO_KEEPALIVE only: its sockets probe with the node's timing
        // (net.ipv4.tcp_keepalive_time / _intvl), whatever keepaliveTimeSecs says.
        if self.keepalive.enabled {
            config.set("socket.keepalive.enable", "true");
        }
        if let Some(nodelay) = self.tcp_nodelay {
            config.set("socket.nagle.disable", nodelay.to_string());
        }
        config
    }
}

/// The librdkafka client context of the operator's consumers: librdkafka's error callbacks are
/// logged at the level [`error_level`] gives them. rdkafka's default context logs every one as an
/// error, including the end-of-partition notice `enable.partition.eof` asks for, which is how a
/// backup, a restore drill or a header search knows it has read a partition to its end.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoggingContext;

impl ClientContext for LoggingContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        match error_level(&error) {
            Level::DEBUG => tracing::debug!(%error, reason, "librdkafka"),
            _ => tracing::error!(%error, reason, "librdkafka"),
        }
    }
}

impl ConsumerContext for LoggingContext {}

/// A librdkafka consumer with [`LoggingContext`].
pub type Consumer = BaseConsumer<LoggingContext>;

/// Creates a [`Consumer`] from `config`.
pub fn consumer(config: &ClientConfig) -> rdkafka::error::KafkaResult<Consumer> {
    config.create_with_context(LoggingContext)
}

/// The level an error librdkafka reports through its error callback is logged at: the end of a
/// partition is a normal event (debug); anything else stays an error. Pure.
pub fn error_level(error: &rdkafka::error::KafkaError) -> Level {
    match error {
        rdkafka::error::KafkaError::PartitionEOF(_) => Level::DEBUG,
        e if e.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) => Level::DEBUG,
        _ => Level::ERROR,
    }
}

/// The group-offset client of a cluster, connected to a bootstrap server.
pub async fn group_admin(access: &ClusterAccess) -> Result<protocol::GroupAdmin, KafkaError> {
    Ok(protocol::GroupAdmin::connect(protocol::Settings::new(access)?).await?)
}

/// librdkafka settings for a `kafkaCluster` block (see [`ClusterAccess::rdkafka_config`]).
pub fn client_config(cluster: &KafkaClusterSpec, secrets: &SecretStore) -> Result<ClientConfig, KafkaError> {
    Ok(ClusterAccess::read(cluster, secrets)?.rdkafka_config())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::api::v1beta1::{ConnectionSpec, SaslSecretRef, TlsSecretRef};

    fn cluster() -> KafkaClusterSpec {
        KafkaClusterSpec {
            bootstrap_servers: vec!["a:9092".into(), "b:9092".into()],
            security_protocol: SecurityProtocol::Plaintext,
            tls_secret: None,
            ca_secret: None,
            sasl_secret: None,
            connection: None,
        }
    }

    fn secrets() -> SecretStore {
        let mut tls = BTreeMap::new();
        tls.insert("ca.crt".to_owned(), b"CA\n".to_vec());
        tls.insert("user.crt".to_owned(), b"CERT".to_vec());
        tls.insert("user.key".to_owned(), b"KEY".to_vec());
        let mut sasl = BTreeMap::new();
        sasl.insert("username".to_owned(), b"alice".to_vec());
        sasl.insert("password".to_owned(), b"pw\n".to_vec());
        SecretStore::Map {
            origin: "test".into(),
            secrets: HashMap::from([("tls".to_owned(), tls), ("sasl".to_owned(), sasl)]),
        }
    }

    #[test]
    fn sasl_ssl_with_mutual_tls_maps_every_setting() {
        let mut c = cluster();
        c.security_protocol = SecurityProtocol::SaslSsl;
        c.tls_secret = Some(TlsSecretRef {
            name: "tls".into(),
            ca_key: "ca.crt".into(),
            cert_key: Some("user.crt".into()),
            key_key: Some("user.key".into()),
        });
        c.sasl_secret = Some(SaslSecretRef {
            name: "sasl".into(),
            mechanism: SaslMechanism::ScramSha512,
            username_key: "username".into(),
            password_key: "password".into(),
        });
        c.connection = Some(ConnectionSpec {
            tcp_keepalive: Some(true),
            tcp_nodelay: Some(true),
            connections_per_broker: Some(1),
            ..Default::default()
        });
        let config = client_config(&c, &secrets()).unwrap();
        let get = |k: &str| config.get(k).unwrap().to_owned();
        assert_eq!(get("bootstrap.servers"), "a:9092,b:9092");
        assert_eq!(get("security.protocol"), "sasl_ssl");
        assert_eq!(get("ssl.ca.pem"), "CA");
        assert_eq!(get("ssl.certificate.pem"), "CERT");
        assert_eq!(get("ssl.key.pem"), "KEY");
        assert_eq!(get("sasl.mechanism"), "SCRAM-SHA-512");
        assert_eq!(get("sasl.username"), "alice");
        assert_eq!(get("sasl.password"), "pw");
        assert_eq!(get("socket.keepalive.enable"), "true");
        assert_eq!(get("socket.nagle.disable"), "true");
    }

    #[test]
    fn keep_alive_timing_turns_keep_alive_on_for_both_clients() {
        let access = |connection: ConnectionSpec| {
            let mut c = cluster();
            c.connection = Some(connection);
            ClusterAccess::read(&c, &secrets()).unwrap()
        };
        let timed = access(ConnectionSpec {
            keepalive_time_secs: Some(60),
            keepalive_interval_secs: Some(5),
            connections_per_broker: Some(4),
            ..Default::default()
        });
        assert_eq!(
            timed.keepalive,
            Keepalive {
                enabled: true,
                time: Some(Duration::from_secs(60)),
                interval: Some(Duration::from_secs(5)),
            }
        );
        assert_eq!(timed.connections_per_broker, Some(4));
        // librdkafka has no per-socket timing: keep-alive on, with the node's timing.
        let config = timed.rdkafka_config();
        assert_eq!(config.get("socket.keepalive.enable"), Some("true"));
        assert!(timed.keepalive.socket_option().is_some());

        let off = access(ConnectionSpec::default());
        assert_eq!(off.keepalive, Keepalive::default());
        assert_eq!(off.rdkafka_config().get("socket.keepalive.enable"), None);
        assert!(off.keepalive.socket_option().is_none());
        let on = access(ConnectionSpec {
            tcp_keepalive: Some(true),
            ..Default::default()
        });
        assert!(on.keepalive.enabled && on.keepalive.time.is_none());
    }

    #[test]
    fn transient_failures_are_retryable_and_wrong_settings_are_not() {
        let refused = KafkaError::from(protocol::ProtocolError::Connect {
            broker: "k:9092".into(),
            message: "cannot resolve: Temporary failure in name resolution".into(),
        });
        assert!(refused.is_retryable());
        let address = KafkaError::from(protocol::ProtocolError::Address {
            broker: "k".into(),
            message: "expected host:port".into(),
        });
        assert!(!address.is_retryable());
        let client = |code| KafkaError::Client {
            what: "metadata".into(),
            source: rdkafka::error::KafkaError::MetadataFetch(code),
        };
        assert!(client(RDKafkaErrorCode::Resolve).is_retryable());
        assert!(client(RDKafkaErrorCode::AllBrokersDown).is_retryable());
        assert!(client(RDKafkaErrorCode::LeaderNotAvailable).is_retryable());
        assert!(!client(RDKafkaErrorCode::SaslAuthenticationFailed).is_retryable());
        assert!(!client(RDKafkaErrorCode::TopicAuthorizationFailed).is_retryable());
        let creation = KafkaError::Client {
            what: "creating the consumer".into(),
            source: rdkafka::error::KafkaError::ClientCreation("bad config".into()),
        };
        assert!(!creation.is_retryable());
    }

    #[test]
    fn a_missing_secret_key_is_named() {
        let mut c = cluster();
        c.security_protocol = SecurityProtocol::Ssl;
        c.tls_secret = Some(TlsSecretRef {
            name: "tls".into(),
            ca_key: "cluster-ca.crt".into(),
            cert_key: None,
            key_key: None,
        });
        let e = client_config(&c, &secrets()).unwrap_err().to_string();
        assert!(e.contains("Secret tls has no key cluster-ca.crt"), "{e}");
    }

    #[test]
    fn the_end_of_a_partition_is_not_logged_as_an_error() {
        use rdkafka::error::KafkaError as Rd;
        // As librdkafka's error callback reports it (rdkafka wraps every error event in Global)
        // and as a consumer's poll returns it.
        assert_eq!(
            error_level(&Rd::Global(RDKafkaErrorCode::PartitionEOF)),
            Level::DEBUG
        );
        assert_eq!(error_level(&Rd::PartitionEOF(3)), Level::DEBUG);
        for real in [
            Rd::Global(RDKafkaErrorCode::AllBrokersDown),
            Rd::Global(RDKafkaErrorCode::BrokerTransportFailure),
            Rd::Global(RDKafkaErrorCode::Authentication),
            Rd::Global(RDKafkaErrorCode::UnknownTopicOrPartition),
            Rd::MessageConsumption(RDKafkaErrorCode::OffsetOutOfRange),
        ] {
            assert_eq!(error_level(&real), Level::ERROR, "{real}");
        }
    }
}
