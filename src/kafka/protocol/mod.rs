//! A small Kafka protocol client for consumer-group offsets, over tokio TCP (and rustls), with
//! messages encoded by the `kafka-protocol` crate: FindCoordinator, DescribeGroups, OffsetFetch,
//! OffsetCommit from outside the group, and OffsetDelete; plus the topic metadata and log
//! offsets (Metadata, ListOffsets) offsets are planned against; and the restore's producer
//! (InitProducerId, Produce: see [`produce`]).
//!
//! librdkafka reads and commits offsets only for the group its client was made with, and rdkafka
//! wraps neither ListConsumerGroupOffsets nor AlterConsumerGroupOffsets nor DeleteConsumerGroupOffsets:
//! every group cost two librdkafka clients (with their threads and connections). Here one
//! connection per coordinator carries every group's requests, multiplexed by correlation id, so
//! working on 50 groups at once costs 50 tasks.

mod connection;
mod log_offsets;
pub mod produce;
pub mod scram;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, stream};
use kafka_protocol::{
    messages::{
        DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, OffsetCommitRequest,
        OffsetDeleteRequest, OffsetFetchRequest, TopicName,
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic},
        offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics},
    },
    protocol::StrBytes,
};

pub use self::connection::REQUEST_TIMEOUT;
use self::connection::{Connection, Request, api_name};
use super::{
    ClusterAccess, Keepalive,
    groups::{Committed, GroupDescription, Partition},
};
use crate::api::v1beta1::{SaslMechanism, SecurityProtocol};

/// Why a group-offset request failed. Every message names the broker and the API.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProtocolError {
    /// `kafkaCluster.bootstrapServers` is empty.
    #[error("kafkaCluster.bootstrapServers: no broker to connect to")]
    NoBootstrap,
    /// The broker's address cannot be dialled (not host:port, no TLS server name).
    #[error("Kafka broker address {broker}: {message}")]
    Address {
        /// host:port.
        broker: String,
        /// Why.
        message: String,
    },
    /// The connection could not be opened: the name did not resolve, the connection was refused
    /// or did not open in time.
    #[error("connecting to Kafka broker {broker}: {message}")]
    Connect {
        /// host:port.
        broker: String,
        /// Why.
        message: String,
    },
    /// The TLS handshake failed (unknown CA, wrong host name, refused client certificate).
    #[error("TLS handshake with Kafka broker {broker}: {message}")]
    Tls {
        /// host:port.
        broker: String,
        /// rustls' reason.
        message: String,
    },
    /// The TLS settings could not be built from the Secrets.
    #[error("kafkaCluster TLS settings: {0}")]
    TlsSettings(String),
    /// SASL authentication failed.
    #[error("SASL {mechanism} authentication with Kafka broker {broker}: {message}")]
    Auth {
        /// host:port.
        broker: String,
        /// SASL mechanism.
        mechanism: &'static str,
        /// Why.
        message: String,
    },
    /// The broker does not speak a version of an API this client needs.
    #[error("Kafka broker {broker} does not support {api}: {message}")]
    Unsupported {
        /// host:port.
        broker: String,
        /// API name.
        api: String,
        /// Versions on both sides.
        message: String,
    },
    /// The connection closed before the response came (it is opened again on the next request).
    #[error("{api} to Kafka broker {broker}: connection closed ({reason})")]
    Closed {
        /// host:port.
        broker: String,
        /// API name.
        api: String,
        /// Why the connection is gone.
        reason: String,
    },
    /// The request or its response could not be carried (encoding, undecodable bytes).
    #[error("{api} to Kafka broker {broker}: {message}")]
    Transport {
        /// host:port.
        broker: String,
        /// API name.
        api: String,
        /// Why.
        message: String,
    },
    /// No response in time.
    #[error("{api} to Kafka broker {broker}: no response within {secs}s")]
    Timeout {
        /// host:port.
        broker: String,
        /// API name.
        api: String,
        /// The timeout.
        secs: u64,
    },
    /// Every ListOffsets round answered, but not with an offset for this partition.
    #[error("ListOffsets: no log start or end offset for {topic}-{partition}")]
    NoLogOffsets {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// The broker answered with a Kafka error code.
    #[error("{api} for {subject} on Kafka broker {broker}: {name} (Kafka error code {code}){}",
        .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// host:port.
        broker: String,
        /// API name.
        api: String,
        /// What the request was about ("group g", "group g, topic-3").
        subject: String,
        /// Kafka's error code.
        code: i16,
        /// Kafka's name for it.
        name: String,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
}

/// Kafka error codes after which the group's coordinator is looked up again and the request
/// retried: COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
const COORDINATOR_MOVED: [i16; 3] = [14, 15, 16];
/// GROUP_ID_NOT_FOUND.
const GROUP_ID_NOT_FOUND: i16 = 69;
/// UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Attempts of a request whose coordinator moved or whose connection broke.
const ATTEMPTS: u32 = 5;
/// Groups per DescribeGroups or FindCoordinator request.
const DESCRIBE_BATCH: usize = 100;
/// Groups per batched OffsetFetch request.
const FETCH_BATCH: usize = 50;

// Highest versions used: FindCoordinator v4 batches keys and nothing after it is needed;
// OffsetFetch v8 changes to the form with many groups per request (the single-group form ends at
// v7) and v10 names topics by id, as OffsetCommit v10 does.
const FIND_COORDINATOR_MAX: i16 = 4;
const DESCRIBE_GROUPS_MAX: i16 = 5;
const OFFSET_FETCH_SINGLE_MAX: i16 = 7;
const OFFSET_FETCH_MAX: i16 = 9;
const OFFSET_COMMIT_MAX: i16 = 9;
const DELETE_GROUPS_MAX: i16 = 2;

impl ProtocolError {
    fn kafka(broker: &str, api: String, subject: &str, code: i16, message: Option<String>) -> Self {
        ProtocolError::Kafka {
            broker: broker.to_owned(),
            api,
            subject: subject.to_owned(),
            code,
            name: kafka_protocol::ResponseError::try_from_code(code)
                .map(|e| e.to_string())
                .unwrap_or_default(),
            message,
        }
    }

    /// Worth another attempt of the whole operation after a backoff ([`crate::ops::execution`]):
    /// by then the broker may resolve, accept connections, answer in time or have finished
    /// moving a leader or coordinator (Kafka's retriable error codes). Wrong addresses, TLS and
    /// SASL failures, versions the broker lacks and undecodable answers fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProtocolError::Connect { .. }
            | ProtocolError::Closed { .. }
            | ProtocolError::Timeout { .. }
            | ProtocolError::NoLogOffsets { .. } => true,
            ProtocolError::Kafka { code, .. } => {
                kafka_protocol::ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            ProtocolError::NoBootstrap
            | ProtocolError::Address { .. }
            | ProtocolError::Tls { .. }
            | ProtocolError::TlsSettings(_)
            | ProtocolError::Auth { .. }
            | ProtocolError::Unsupported { .. }
            | ProtocolError::Transport { .. } => false,
        }
    }

    /// Worth sending the request again at once, after looking the coordinator up again or on a
    /// new connection (within one call; [`ProtocolError::is_retryable`] is about whole attempts).
    fn is_retriable(&self) -> bool {
        match self {
            ProtocolError::Kafka { code, .. } => COORDINATOR_MOVED.contains(code),
            ProtocolError::Closed { .. } => true,
            _ => false,
        }
    }
}

/// SASL credentials.
#[derive(Clone)]
pub struct Sasl {
    /// Mechanism.
    pub mechanism: SaslMechanism,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// How to reach and authenticate to the brokers, built from a [`ClusterAccess`].
#[derive(Clone)]
pub struct Settings {
    bootstrap: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Sasl>,
    keepalive: Keepalive,
    tcp_nodelay: bool,
    connections_per_broker: Option<i32>,
}

impl Settings {
    /// The protocol settings for a cluster: TLS with the Secret's CA (the system's roots without
    /// one) and client certificate, SASL credentials, socket options.
    pub fn new(access: &ClusterAccess) -> Result<Settings, ProtocolError> {
        let tls = match access.security_protocol {
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => Some(Arc::new(tls_config(access)?)),
            SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext => None,
        };
        let sasl = match access.security_protocol {
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => {
                Some(access.sasl.clone().ok_or_else(|| ProtocolError::Auth {
                    broker: access.bootstrap_servers.join(","),
                    mechanism: "(none)",
                    message: "the security protocol needs SASL but kafkaCluster.saslSecret is not set".into(),
                })?)
            }
            SecurityProtocol::Plaintext | SecurityProtocol::Ssl => None,
        };
        Ok(Settings {
            bootstrap: access.bootstrap_servers.clone(),
            tls,
            sasl,
            keepalive: access.keepalive,
            // Small request/response exchanges: waiting to coalesce them only adds latency.
            tcp_nodelay: access.tcp_nodelay.unwrap_or(true),
            connections_per_broker: access.connections_per_broker,
        })
    }
}

fn tls_config(access: &ClusterAccess) -> Result<rustls::ClientConfig, ProtocolError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let error = |what: &str, e: &dyn std::fmt::Display| ProtocolError::TlsSettings(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    match &access.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| error("the CA certificate is not PEM", &e))?;
                roots
                    .add(cert)
                    .map_err(|e| error("the CA certificate is not usable", &e))?;
            }
            if roots.is_empty() {
                return Err(ProtocolError::TlsSettings(
                    "the CA Secret key holds no PEM certificate".into(),
                ));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A system certificate rustls cannot parse is skipped, as librdkafka does.
                let _ = roots.add(cert);
            }
        }
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| error("TLS versions", &e))?
            .with_root_certificates(roots);
    match &access.client_cert {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| error("the client certificate is not PEM", &e))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| error("the client key is not PEM", &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| error("the client certificate and key", &e))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// Consumer-group offsets of one cluster, and the metadata and log offsets they are planned
/// against: `connectionsPerBroker` connections (1 unless set) to each broker (coordinator or
/// leader), opened as requests need them and taken in turn by every request.
pub struct GroupAdmin {
    settings: Settings,
    /// Open connections by the address they were dialled with.
    connections: tokio::sync::Mutex<HashMap<String, Vec<Arc<Connection>>>>,
    /// Turns through each broker's connections.
    turn: std::sync::atomic::AtomicUsize,
    /// Each group's coordinator (host:port), once looked up.
    coordinators: std::sync::Mutex<HashMap<String, String>>,
    /// Each partition's leader (host:port), from the last Metadata answer.
    leaders: std::sync::Mutex<HashMap<Partition, String>>,
}

impl GroupAdmin {
    /// Connects to the first bootstrap server that answers (to fail early on a wrong address,
    /// CA or password).
    pub async fn connect(settings: Settings) -> Result<GroupAdmin, ProtocolError> {
        let admin = GroupAdmin {
            settings,
            connections: tokio::sync::Mutex::new(HashMap::new()),
            turn: std::sync::atomic::AtomicUsize::new(0),
            coordinators: std::sync::Mutex::new(HashMap::new()),
            leaders: std::sync::Mutex::new(HashMap::new()),
        };
        admin.bootstrap().await?;
        Ok(admin)
    }

    /// The next of `broker`'s connections, opened while it has fewer than `connectionsPerBroker`.
    async fn connection(&self, broker: &str) -> Result<Arc<Connection>, ProtocolError> {
        let wanted = self.settings.connections_per_broker.unwrap_or(1).max(1) as usize;
        let mut connections = self.connections.lock().await;
        let open = connections.entry(broker.to_owned()).or_default();
        open.retain(|c| !c.is_closed());
        if open.len() >= wanted {
            let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(open[turn % open.len()].clone());
        }
        let opened = Arc::new(Connection::open(broker, &self.settings).await?);
        open.push(opened.clone());
        Ok(opened)
    }

    /// A connection to any bootstrap server, an open one if there is.
    async fn bootstrap(&self) -> Result<Arc<Connection>, ProtocolError> {
        {
            let connections = self.connections.lock().await;
            if let Some(c) = connections.values().flatten().find(|c| !c.is_closed()) {
                return Ok(c.clone());
            }
        }
        let mut last = ProtocolError::NoBootstrap;
        for broker in &self.settings.bootstrap {
            match self.connection(broker).await {
                Ok(c) => return Ok(c),
                // Authentication and TLS failures would fail the same on every broker.
                Err(
                    e @ (ProtocolError::Auth { .. }
                    | ProtocolError::Tls { .. }
                    | ProtocolError::TlsSettings(_)),
                ) => {
                    return Err(e);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Looks up the coordinators of these groups, in batches where the broker allows, and
    /// remembers them: the group requests that follow go straight to them.
    pub async fn find_coordinators(&self, groups: &[String]) -> Result<(), ProtocolError> {
        let missing: Vec<String> = groups
            .iter()
            .filter(|g| self.known_coordinator(g).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let connection = self.bootstrap().await?;
        let version = connection.version::<FindCoordinatorRequest>(FIND_COORDINATOR_MAX)?;
        let api = api_name(FindCoordinatorRequest::KEY);
        let mut found = Vec::new();
        if version >= 4 {
            // All batches at once: they are independent, and one after the other each would
            // cost a round trip.
            let answers = futures::future::try_join_all(missing.chunks(DESCRIBE_BATCH).map(|chunk| {
                let request = FindCoordinatorRequest::default()
                    .with_coordinator_keys(chunk.iter().map(|g| StrBytes::from_string(g.clone())).collect());
                let connection = connection.clone();
                async move { connection.send(&request, version).await }
            }))
            .await?;
            for answer in answers {
                for c in answer.coordinators {
                    if c.error_code != 0 {
                        return Err(ProtocolError::kafka(
                            connection.broker(),
                            api,
                            &format!("group {}", c.key.as_str()),
                            c.error_code,
                            c.error_message.map(|m| m.to_string()),
                        ));
                    }
                    found.push((c.key.to_string(), format!("{}:{}", c.host.as_str(), c.port)));
                }
            }
        } else {
            let lookups = missing.iter().map(|group| {
                let connection = connection.clone();
                let api = api.clone();
                async move {
                    let request =
                        FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.clone()));
                    let answer = connection.send(&request, version).await?;
                    if answer.error_code != 0 {
                        return Err(ProtocolError::kafka(
                            connection.broker(),
                            api,
                            &format!("group {group}"),
                            answer.error_code,
                            answer.error_message.map(|m| m.to_string()),
                        ));
                    }
                    Ok((group.clone(), format!("{}:{}", answer.host.as_str(), answer.port)))
                }
            });
            found = futures::future::try_join_all(lookups).await?;
        }
        if let Ok(mut known) = self.coordinators.lock() {
            known.extend(found);
        }
        Ok(())
    }

    fn known_coordinator(&self, group: &str) -> Option<String> {
        self.coordinators.lock().ok()?.get(group).cloned()
    }

    fn forget_coordinator(&self, group: &str) {
        if let Ok(mut known) = self.coordinators.lock() {
            known.remove(group);
        }
    }

    /// The connection to `group`'s coordinator.
    async fn coordinator(&self, group: &str) -> Result<Arc<Connection>, ProtocolError> {
        let address = match self.known_coordinator(group) {
            Some(address) => address,
            None => {
                self.find_coordinators(&[group.to_owned()]).await?;
                self.known_coordinator(group)
                    .ok_or_else(|| ProtocolError::Transport {
                        broker: self.settings.bootstrap.join(","),
                        api: api_name(FindCoordinatorRequest::KEY),
                        message: format!("no coordinator returned for group {group}"),
                    })?
            }
        };
        self.connection(&address).await
    }

    /// Runs `call` against `group`'s coordinator, looking it up again when it moved or its
    /// connection broke.
    async fn on_coordinator<T, F, Fut>(&self, group: &str, call: F) -> Result<T, ProtocolError>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProtocolError>>,
    {
        let mut attempt = 1;
        loop {
            let outcome = match self.coordinator(group).await {
                Ok(connection) => call(connection).await,
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if e.is_retriable() && attempt < ATTEMPTS => {
                    self.forget_coordinator(group);
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// State and member count of each group; a group the cluster does not know is Dead. Many
    /// groups go in one DescribeGroups request per coordinator.
    pub async fn describe(
        &self,
        groups: &[String],
    ) -> Result<BTreeMap<String, GroupDescription>, ProtocolError> {
        let mut out = BTreeMap::new();
        let mut attempt = 1;
        let mut remaining: Vec<String> = groups
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        while !remaining.is_empty() {
            self.find_coordinators(&remaining).await?;
            let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for group in &remaining {
                if let Some(address) = self.known_coordinator(group) {
                    by_coordinator.entry(address).or_default().push(group.clone());
                }
            }
            let batches = by_coordinator.into_iter().flat_map(|(address, groups)| {
                groups
                    .chunks(DESCRIBE_BATCH)
                    .map(|chunk| (address.clone(), chunk.to_vec()))
                    .collect::<Vec<_>>()
            });
            let answers = futures::future::try_join_all(batches.map(|(address, chunk)| async move {
                let connection = self.connection(&address).await?;
                let version = connection.version::<DescribeGroupsRequest>(DESCRIBE_GROUPS_MAX)?;
                let request = DescribeGroupsRequest::default().with_groups(
                    chunk
                        .iter()
                        .map(|g| GroupId(StrBytes::from_string(g.clone())))
                        .collect(),
                );
                let answer = connection.send(&request, version).await?;
                Ok::<_, ProtocolError>((connection, answer))
            }))
            .await?;
            let mut retry = Vec::new();
            for (connection, answer) in answers {
                for described in answer.groups {
                    let group = described.group_id.0.to_string();
                    let description = match described.error_code {
                        0 => GroupDescription {
                            state: described.group_state.to_string(),
                            members: described.members.len(),
                        },
                        GROUP_ID_NOT_FOUND => GroupDescription::dead(),
                        code if COORDINATOR_MOVED.contains(&code) && attempt < ATTEMPTS => {
                            self.forget_coordinator(&group);
                            retry.push(group);
                            continue;
                        }
                        code => {
                            return Err(ProtocolError::kafka(
                                connection.broker(),
                                api_name(DescribeGroupsRequest::KEY),
                                &format!("group {group}"),
                                code,
                                described.error_message.map(|m| m.to_string()),
                            ));
                        }
                    };
                    out.insert(group, description);
                }
            }
            if !retry.is_empty() {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            remaining = retry;
        }
        for group in groups {
            out.entry(group.clone()).or_insert_with(GroupDescription::dead);
        }
        Ok(out)
    }

    /// `group`'s committed offsets for these partitions; partitions without one are absent.
    pub async fn committed(
        &self,
        group: &str,
        partitions: &BTreeSet<Partition>,
    ) -> Result<BTreeMap<Partition, Committed>, ProtocolError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        // Partitions are always named: not every broker answers "all partitions" (topics null).
        let topics: Vec<OffsetFetchRequestTopic> = by_topic(partitions)
            .into_iter()
            .map(|(topic, indexes)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partition_indexes(indexes)
            })
            .collect();
        self.on_coordinator(group, |connection| {
            let topics = topics.clone();
            async move {
                let version = connection.version::<OffsetFetchRequest>(OFFSET_FETCH_SINGLE_MAX)?;
                let request = OffsetFetchRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                    .with_topics(Some(topics));
                let answer = connection.send(&request, version).await?;
                let fetched = answer.topics.iter().flat_map(|t| {
                    t.partitions.iter().map(|p| Fetched {
                        topic: t.name.0.as_str(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        metadata: p.metadata.as_ref().map(StrBytes::as_str),
                        error_code: p.error_code,
                    })
                });
                fetched_offsets(connection.broker(), group, answer.error_code, fetched)
            }
        })
        .await
    }

    /// The committed offsets of many groups for the same partitions. Where the broker speaks
    /// OffsetFetch v8, many groups go in one request per coordinator; otherwise one request per
    /// group, pipelined. At most `parallelism` requests are in flight.
    pub async fn committed_groups(
        &self,
        groups: &[String],
        partitions: &BTreeSet<Partition>,
        parallelism: usize,
    ) -> BTreeMap<String, GroupOffsets> {
        let mut out = BTreeMap::new();
        if let Err(e) = self.find_coordinators(groups).await {
            return groups.iter().map(|g| (g.clone(), Err(e.clone()))).collect();
        }
        // Groups asked again one by one: the broker has no batched form, or their coordinator
        // moved (the per-group call looks it up again).
        let mut again = Vec::new();
        let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for group in groups {
            match self.known_coordinator(group) {
                Some(address) => by_coordinator.entry(address).or_default().push(group.clone()),
                None => again.push(group.clone()),
            }
        }
        let batches: Vec<(String, Vec<String>)> = by_coordinator
            .into_iter()
            .flat_map(|(address, groups)| {
                groups
                    .chunks(FETCH_BATCH)
                    .map(|chunk| (address.clone(), chunk.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let answers: Vec<_> = stream::iter(batches)
            .map(|(address, chunk)| async move {
                let answer = self.fetch_batch(&address, &chunk, partitions).await;
                (chunk, answer)
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
        for (chunk, answer) in answers {
            match answer {
                Ok(Some(mut fetched)) => {
                    for group in chunk {
                        match fetched.remove(&group) {
                            Some(Err(e)) if e.is_retriable() => again.push(group),
                            Some(result) => {
                                out.insert(group, result);
                            }
                            None => again.push(group),
                        }
                    }
                }
                Ok(None) => again.extend(chunk),
                Err(e) if e.is_retriable() => again.extend(chunk),
                Err(e) => out.extend(chunk.into_iter().map(|g| (g, Err(e.clone())))),
            }
        }
        let singles: Vec<_> = stream::iter(again)
            .map(|group| async move {
                let committed = self.committed(&group, partitions).await;
                (group, committed)
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
        out.extend(singles);
        out
    }

    /// The committed offsets of many groups, each for its own partitions: one batched read of
    /// every partition any of them wants (see [`GroupAdmin::committed_groups`]), each answer then
    /// cut back to the group's partitions.
    pub async fn committed_each(
        &self,
        wanted: &BTreeMap<String, BTreeSet<Partition>>,
        parallelism: usize,
    ) -> BTreeMap<String, GroupOffsets> {
        let every: BTreeSet<Partition> = wanted.values().flatten().cloned().collect();
        let groups: Vec<String> = wanted.keys().cloned().collect();
        let mut fetched = self.committed_groups(&groups, &every, parallelism).await;
        wanted
            .iter()
            .map(|(group, partitions)| {
                let offsets = fetched.remove(group).unwrap_or_else(|| Ok(BTreeMap::new()));
                let offsets = offsets.map(|all| {
                    all.into_iter()
                        .filter(|(tp, _)| partitions.contains(tp))
                        .collect()
                });
                (group.clone(), offsets)
            })
            .collect()
    }

    /// Like [`GroupAdmin::committed_groups`], failing with the first group that could not be
    /// read.
    pub async fn committed_all(
        &self,
        groups: &[String],
        partitions: &BTreeSet<Partition>,
        parallelism: usize,
    ) -> Result<BTreeMap<String, BTreeMap<Partition, Committed>>, ProtocolError> {
        self.committed_groups(groups, partitions, parallelism)
            .await
            .into_iter()
            .map(|(group, committed)| Ok((group, committed?)))
            .collect()
    }

    /// One OffsetFetch v8+ for many groups of one coordinator; `None` when the broker has no
    /// batched form.
    async fn fetch_batch(
        &self,
        address: &str,
        groups: &[String],
        partitions: &BTreeSet<Partition>,
    ) -> Result<Option<FetchedGroups>, ProtocolError> {
        let connection = self.connection(address).await?;
        let version = connection.version::<OffsetFetchRequest>(OFFSET_FETCH_MAX)?;
        if version < 8 {
            return Ok(None);
        }
        let topics: Vec<OffsetFetchRequestTopics> = by_topic(partitions)
            .into_iter()
            .map(|(topic, indexes)| {
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partition_indexes(indexes)
            })
            .collect();
        let request = OffsetFetchRequest::default().with_groups(
            groups
                .iter()
                .map(|g| {
                    OffsetFetchRequestGroup::default()
                        .with_group_id(GroupId(StrBytes::from_string(g.clone())))
                        .with_topics(Some(topics.clone()))
                })
                .collect(),
        );
        let answer = connection.send(&request, version).await?;
        Ok(Some(
            answer
                .groups
                .iter()
                .map(|g| {
                    let group = g.group_id.0.as_str();
                    let fetched = g.topics.iter().flat_map(|t| {
                        t.partitions.iter().map(|p| Fetched {
                            topic: t.name.0.as_str(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            metadata: p.metadata.as_ref().map(StrBytes::as_str),
                            error_code: p.error_code,
                        })
                    });
                    let offsets = fetched_offsets(connection.broker(), group, g.error_code, fetched);
                    (group.to_owned(), offsets)
                })
                .collect(),
        ))
    }

    /// Commits all these offsets in one OffsetCommit from outside the group (generation -1, no
    /// member id): Kafka accepts it only while the group has no members.
    pub async fn commit(
        &self,
        group: &str,
        offsets: &BTreeMap<Partition, Committed>,
    ) -> Result<(), ProtocolError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), committed) in offsets {
            topics.entry(topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(committed.offset)
                    .with_committed_metadata(Some(StrBytes::from_string(committed.metadata.clone()))),
            );
        }
        let topics: Vec<OffsetCommitRequestTopic> = topics
            .into_iter()
            .map(|(topic, partitions)| {
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(partitions)
            })
            .collect();
        let api = api_name(OffsetCommitRequest::KEY);
        self.on_coordinator(group, |connection| {
            let topics = topics.clone();
            let api = api.clone();
            async move {
                let version = connection.version::<OffsetCommitRequest>(OFFSET_COMMIT_MAX)?;
                let request = OffsetCommitRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                    .with_generation_id_or_member_epoch(-1)
                    .with_member_id(StrBytes::default())
                    .with_topics(topics);
                let answer = connection.send(&request, version).await?;
                first_partition_error(&answer.topics, |t| {
                    let name = t.name.0.as_str();
                    t.partitions
                        .iter()
                        .map(move |p| (name, p.partition_index, p.error_code))
                })
                .map_or(Ok(()), |(topic, partition, code)| {
                    Err(ProtocolError::kafka(
                        connection.broker(),
                        api,
                        &format!("group {group}, {topic}-{partition}"),
                        code,
                        None,
                    ))
                })
            }
        })
        .await
    }

    /// Deletes `group`'s committed offsets of `partitions` with OffsetDelete (Kafka refuses it
    /// for topics the group's active members consume). A broker without OffsetDelete (before
    /// Kafka 2.4, and some Kafka-compatible brokers) gets the older way: the group, which must be
    /// Empty, is deleted and its offsets on `known` (every partition it may have committed)
    /// outside `partitions` are committed back. A group that does not exist has nothing to delete.
    pub async fn delete_offsets(
        &self,
        group: &str,
        partitions: &BTreeSet<Partition>,
        known: &BTreeSet<Partition>,
    ) -> Result<(), ProtocolError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let coordinator = self.coordinator(group).await?;
        if coordinator.version::<OffsetDeleteRequest>(0).is_err() {
            let keep: BTreeMap<Partition, Committed> = self
                .committed(group, known)
                .await?
                .into_iter()
                .filter(|(tp, _)| !partitions.contains(tp))
                .collect();
            self.delete_group(group).await?;
            return self.commit(group, &keep).await;
        }
        let topics: Vec<OffsetDeleteRequestTopic> = by_topic(partitions)
            .into_iter()
            .map(|(topic, indexes)| {
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(
                        indexes
                            .into_iter()
                            .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(p))
                            .collect(),
                    )
            })
            .collect();
        let api = api_name(OffsetDeleteRequest::KEY);
        self.on_coordinator(group, |connection| {
            let topics = topics.clone();
            let api = api.clone();
            async move {
                let version = connection.version::<OffsetDeleteRequest>(0)?;
                let request = OffsetDeleteRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                    .with_topics(topics);
                let answer = connection.send(&request, version).await?;
                let subject = format!("group {group}");
                match answer.error_code {
                    0 => {}
                    GROUP_ID_NOT_FOUND => return Ok(()),
                    code => {
                        return Err(ProtocolError::kafka(
                            connection.broker(),
                            api,
                            &subject,
                            code,
                            None,
                        ));
                    }
                }
                first_partition_error(&answer.topics, |t| {
                    let name = t.name.0.as_str();
                    t.partitions
                        .iter()
                        .map(move |p| (name, p.partition_index, p.error_code))
                })
                .filter(|(_, _, code)| *code != UNKNOWN_TOPIC_OR_PARTITION)
                .map_or(Ok(()), |(topic, partition, code)| {
                    Err(ProtocolError::kafka(
                        connection.broker(),
                        api,
                        &format!("{subject}, {topic}-{partition}"),
                        code,
                        None,
                    ))
                })
            }
        })
        .await
    }

    /// Deletes a consumer group with all its committed offsets (Kafka refuses it while the group
    /// has members); a group that does not exist is already gone.
    async fn delete_group(&self, group: &str) -> Result<(), ProtocolError> {
        let api = api_name(DeleteGroupsRequest::KEY);
        self.on_coordinator(group, |connection| {
            let api = api.clone();
            async move {
                let version = connection.version::<DeleteGroupsRequest>(DELETE_GROUPS_MAX)?;
                let request = DeleteGroupsRequest::default()
                    .with_groups_names(vec![GroupId(StrBytes::from_string(group.to_owned()))]);
                let answer = connection.send(&request, version).await?;
                match answer
                    .results
                    .iter()
                    .map(|r| r.error_code)
                    .find(|code| *code != 0)
                {
                    None | Some(GROUP_ID_NOT_FOUND) => Ok(()),
                    Some(code) => Err(ProtocolError::kafka(
                        connection.broker(),
                        api,
                        &format!("group {group}"),
                        code,
                        None,
                    )),
                }
            }
        })
        .await
    }
}

/// A group's committed offsets, or why they could not be read.
pub type GroupOffsets = Result<BTreeMap<Partition, Committed>, ProtocolError>;

/// Each group's committed offsets from a batched OffsetFetch.
type FetchedGroups = BTreeMap<String, GroupOffsets>;

/// One partition of an OffsetFetch answer, in either of its forms.
struct Fetched<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    metadata: Option<&'a str>,
    error_code: i16,
}

/// A group's committed offsets from its part of an OffsetFetch answer: partitions with nothing
/// committed (-1) or that no longer exist are absent; any other error fails the group.
fn fetched_offsets<'a>(
    broker: &str,
    group: &str,
    group_error: i16,
    partitions: impl Iterator<Item = Fetched<'a>>,
) -> Result<BTreeMap<Partition, Committed>, ProtocolError> {
    let api = || api_name(OffsetFetchRequest::KEY);
    if group_error != 0 {
        return Err(ProtocolError::kafka(
            broker,
            api(),
            &format!("group {group}"),
            group_error,
            None,
        ));
    }
    let mut out = BTreeMap::new();
    for p in partitions {
        match p.error_code {
            0 if p.offset >= 0 => {
                let committed = Committed {
                    offset: p.offset,
                    metadata: p.metadata.unwrap_or_default().to_owned(),
                };
                out.insert((p.topic.to_owned(), p.partition), committed);
            }
            0 | UNKNOWN_TOPIC_OR_PARTITION => {}
            code => {
                return Err(ProtocolError::kafka(
                    broker,
                    api(),
                    &format!("group {group}, {}-{}", p.topic, p.partition),
                    code,
                    None,
                ));
            }
        }
    }
    Ok(out)
}

/// Partition numbers grouped by topic, in order.
fn by_topic(partitions: &BTreeSet<Partition>) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        out.entry(topic.as_str()).or_default().push(*partition);
    }
    out
}

/// The first (topic, partition, error code) with a non-zero code in a per-topic response.
fn first_partition_error<'a, T, I>(
    topics: &'a [T],
    partitions: impl Fn(&'a T) -> I,
) -> Option<(&'a str, i32, i16)>
where
    I: Iterator<Item = (&'a str, i32, i16)>,
{
    topics.iter().flat_map(partitions).find(|(_, _, code)| *code != 0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn partitions_are_grouped_by_topic() {
        let set: BTreeSet<Partition> = [("b".into(), 1), ("a".into(), 2), ("a".into(), 0)]
            .into_iter()
            .collect();
        let grouped = by_topic(&set);
        assert_eq!(
            grouped.into_iter().collect::<Vec<_>>(),
            vec![("a", vec![0, 2]), ("b", vec![1])]
        );
    }

    #[test]
    fn kafka_errors_name_broker_api_subject_and_code() {
        let e = ProtocolError::kafka(
            "b:9092",
            "OffsetCommit".into(),
            "group g, t-3",
            25,
            Some("who?".into()),
        );
        assert_eq!(
            e.to_string(),
            "OffsetCommit for group g, t-3 on Kafka broker b:9092: UnknownMemberId (Kafka error code 25): who?"
        );
        assert!(!e.is_retriable());
        assert!(ProtocolError::kafka("b", "OffsetFetch".into(), "group g", 16, None).is_retriable());
    }
}
