//! Topic metadata and log offsets over the protocol client: Metadata (partition counts and
//! leaders) and ListOffsets (log start, log end, offset by time), one request per leader broker
//! for all partitions it leads, on the connections the group requests use. The offset engine
//! needs nothing else from a cluster, so it starts no librdkafka client for it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use kafka_protocol::{
    messages::{
        ListOffsetsRequest, MetadataRequest, TopicName,
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    },
    protocol::StrBytes,
};

use super::{
    ATTEMPTS, GroupAdmin, ProtocolError, UNKNOWN_TOPIC_OR_PARTITION,
    connection::{Request, api_name},
};
use crate::kafka::groups::{LogBounds, Partition};

// Metadata v1 is the first where "all topics" is a null list; ListOffsets v2 the first with an
// isolation level (v1 is the lowest the crate speaks).
const METADATA_MAX: i16 = 12;
const LIST_OFFSETS_MAX: i16 = 7;

/// ListOffsets' special timestamps.
const EARLIEST: i64 = -2;
const LATEST: i64 = -1;

/// READ_COMMITTED, librdkafka's default: the log end is the last stable offset.
const READ_COMMITTED: i8 = 1;

/// Kafka error codes after which a partition's leader is looked up again and the request
/// retried: LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
/// UNKNOWN_LEADER_EPOCH, OFFSET_NOT_AVAILABLE.
const LEADER_MOVED: [i16; 5] = [5, 6, 74, 75, 78];
/// LEADER_NOT_AVAILABLE, reported for a partition metadata names no leader for.
pub(super) const LEADER_NOT_AVAILABLE: i16 = 5;

impl GroupAdmin {
    /// Partition counts of every topic (internal ones included) from cluster metadata, topics
    /// the broker reports an error for left out. The partitions' leaders are remembered for
    /// [`GroupAdmin::log_bounds`] and [`GroupAdmin::offsets_for_time`].
    pub async fn topics(&self) -> Result<BTreeMap<String, i32>, ProtocolError> {
        let connection = self.bootstrap().await?;
        let version = connection.version::<MetadataRequest>(METADATA_MAX)?;
        // v0 asks for every topic with an empty list, later versions with none; auto-creation
        // can only be turned off from v4 on, and needs a topic name to matter anyway.
        let request = MetadataRequest::default()
            .with_topics((version == 0).then(Vec::new))
            .with_allow_auto_topic_creation(version < 4);
        let answer = connection.send(&request, version).await?;
        let brokers: HashMap<i32, String> = answer
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let mut topics = BTreeMap::new();
        let mut leaders = HashMap::new();
        for topic in answer.topics.iter().filter(|t| t.error_code == 0) {
            let Some(name) = &topic.name else { continue };
            let name = name.0.to_string();
            for p in &topic.partitions {
                if let Some(address) = brokers.get(&p.leader_id.0) {
                    leaders.insert((name.clone(), p.partition_index), address.clone());
                }
            }
            topics.insert(name, topic.partitions.len() as i32);
        }
        if let Ok(mut known) = self.leaders.lock() {
            *known = leaders;
        }
        Ok(topics)
    }

    /// Log start and end offsets of the partitions: one ListOffsets per leader for each, both
    /// rounds at once.
    pub async fn log_bounds(
        &self,
        partitions: &BTreeSet<Partition>,
    ) -> Result<BTreeMap<Partition, LogBounds>, ProtocolError> {
        let (start, end) = futures::future::try_join(
            self.list_offsets(partitions, EARLIEST),
            self.list_offsets(partitions, LATEST),
        )
        .await?;
        LogBounds::of_each(partitions, &start, &end)
            .map_err(|(topic, partition)| ProtocolError::NoLogOffsets { topic, partition })
    }

    /// For each partition, the first offset whose record timestamp is at or after `millis`;
    /// `None` when no record is that recent (the caller uses the log end).
    pub async fn offsets_for_time(
        &self,
        partitions: &BTreeSet<Partition>,
        millis: i64,
    ) -> Result<BTreeMap<Partition, Option<i64>>, ProtocolError> {
        self.list_offsets(partitions, millis).await
    }

    pub(super) fn known_leader(&self, partition: &Partition) -> Option<String> {
        self.leaders.lock().ok()?.get(partition).cloned()
    }

    /// ListOffsets for `timestamp` (or EARLIEST / LATEST) of every partition, one request per
    /// leader at once; partitions whose leader moved are asked again after a metadata refresh.
    async fn list_offsets(
        &self,
        partitions: &BTreeSet<Partition>,
        timestamp: i64,
    ) -> Result<BTreeMap<Partition, Option<i64>>, ProtocolError> {
        let api = api_name(ListOffsetsRequest::KEY);
        let mut out = BTreeMap::new();
        let mut remaining: Vec<Partition> = partitions.iter().cloned().collect();
        let mut attempt = 1;
        while !remaining.is_empty() {
            if remaining.iter().any(|tp| self.known_leader(tp).is_none()) {
                self.topics().await?;
            }
            let mut by_leader: BTreeMap<String, Vec<Partition>> = BTreeMap::new();
            let mut retry = Vec::new();
            for tp in remaining {
                match self.known_leader(&tp) {
                    Some(address) => by_leader.entry(address).or_default().push(tp),
                    None if attempt < ATTEMPTS => retry.push(tp),
                    None => {
                        return Err(ProtocolError::kafka(
                            &self.settings.bootstrap.join(","),
                            api,
                            &format!("{}-{}", tp.0, tp.1),
                            LEADER_NOT_AVAILABLE,
                            None,
                        ));
                    }
                }
            }
            let answers = futures::future::join_all(by_leader.into_iter().map(|(address, tps)| async move {
                let answer = self.list_offsets_on(&address, &tps, timestamp).await;
                (tps, answer)
            }))
            .await;
            for (tps, answer) in answers {
                let (broker, answer) = match answer {
                    Err(e) if e.is_retriable() && attempt < ATTEMPTS => {
                        retry.extend(tps);
                        continue;
                    }
                    other => other?,
                };
                for (tp, code, offset) in answer {
                    match code {
                        0 => {
                            out.insert(tp, (offset >= 0).then_some(offset));
                        }
                        code if LEADER_MOVED.contains(&code) && attempt < ATTEMPTS => retry.push(tp),
                        code => {
                            return Err(ProtocolError::kafka(
                                &broker,
                                api,
                                &format!("{}-{}", tp.0, tp.1),
                                code,
                                None,
                            ));
                        }
                    }
                }
            }
            if !retry.is_empty() {
                if let Ok(mut known) = self.leaders.lock() {
                    known.clear();
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                attempt += 1;
            }
            remaining = retry;
        }
        Ok(out)
    }

    /// One ListOffsets to the broker at `address` for `partitions`: the broker and, per
    /// partition, its error code and offset. A partition the answer leaves out is reported as
    /// unknown.
    async fn list_offsets_on(
        &self,
        address: &str,
        partitions: &[Partition],
        timestamp: i64,
    ) -> Result<(String, Vec<(Partition, i16, i64)>), ProtocolError> {
        let connection = self.connection(address).await?;
        let version = connection.version::<ListOffsetsRequest>(LIST_OFFSETS_MAX)?;
        let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for (topic, partition) in partitions {
            topics.entry(topic).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(*partition)
                    .with_timestamp(timestamp),
            );
        }
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(if version >= 2 { READ_COMMITTED } else { 0 })
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let answer = connection.send(&request, version).await?;
        let mut found: HashMap<Partition, (i16, i64)> = answer
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        (t.name.0.to_string(), p.partition_index),
                        (p.error_code, p.offset),
                    )
                })
            })
            .collect();
        let per_partition = partitions
            .iter()
            .map(|tp| {
                let (code, offset) = found.remove(tp).unwrap_or((UNKNOWN_TOPIC_OR_PARTITION, -1));
                (tp.clone(), code, offset)
            })
            .collect();
        Ok((connection.broker().to_owned(), per_partition))
    }
}
