//! Producing over the protocol client: Kafka v2 record batches built by the caller
//! ([`BatchBuilder`], one per partition, in as many threads as it likes) and carried by one task
//! ([`Producer`]) in Produce requests holding one batch for each partition that has one ready,
//! over [`LANES`] connections per leader (by default) with up to [`IN_FLIGHT`] requests each at
//! a time. With acks=all the producer is idempotent
//! (InitProducerId, a sequence number per partition), so the broker refuses a batch that would
//! land out of order or twice.
//!
//! Why not librdkafka: its producer takes a client-wide lock for every record, copies each record
//! into an allocation of its own and sends one partition per request. A restore holds its records
//! decoded already; encoding whole batches where they are decoded and moving only finished
//! batches leaves the single producing thread nothing to do but write.
//!
//! Errors: with acks=all a batch that comes back unwritten for a reason that passes (a leader
//! that moved, a closed connection, a timeout, too few replicas) is sent again with its sequence
//! number, after every request in flight on its connection has answered, on a new connection to
//! the partition's leader as metadata now names it, together with the batches of its partition
//! behind it, in order; the broker writes a batch it already holds only once. After
//! [`ATTEMPTS`] such returns, or on any other error, the producer stops and
//! [`Producer::finish`] returns the error. With acks=1 or 0 nothing is sent twice: the first
//! error stops the producer, and with at most one request in flight per partition (acks=1) what
//! reached the log is a prefix of what was sent, so the caller can continue after it.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::Arc,
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{StreamExt, stream::FuturesUnordered};
use kafka_protocol::messages::{ApiVersionsRequest, InitProducerIdRequest, ProduceRequest, ProduceResponse};
use tokio::sync::mpsc;

use super::{
    ATTEMPTS, GroupAdmin, ProtocolError, REQUEST_TIMEOUT, Settings,
    connection::{Connection, Request, api_name},
};
use crate::{api::v1beta1::ProduceAcks, kafka::groups::Partition, storage::backup::segment::HeaderRef};

/// Bytes a batch grows to at most: librdkafka's `batch.size` default, under the 1 MiB a broker
/// accepts by default (`message.max.bytes`). A single larger record makes a batch of its own.
pub const BATCH_MAX_BYTES: usize = 1_000_000;

/// Produce requests in flight per connection: the most an idempotent producer may have for a
/// partition (the broker remembers the last five batches of each).
pub const IN_FLIGHT: usize = 5;

/// Connections to each leader unless `connectionsPerBroker` says otherwise, its partitions spread
/// over them by number (a partition always takes the same one, so its batches stay in order). A
/// broker handles one request of a connection at a time; against the test broker, 1 connection
/// restored at ~450 MB/s, 2 at ~480 and 4 at ~490 (460 to 520), 8 no faster.
const LANES: i32 = 4;

/// Batches queued in the producer and not yet sent, in bytes; beyond it the callers wait.
const QUEUED_MAX_BYTES: usize = 16 * BATCH_MAX_BYTES;

/// Produce v9 changes to the flexible encoding, which [`produce_body`] does not write.
const PRODUCE_MAX: i16 = 8;
/// InitProducerId v3 adds the producer id and epoch of an earlier session (not used here).
const INIT_PRODUCER_ID_MAX: i16 = 4;

/// Kafka error codes after which InitProducerId is asked again: COORDINATOR_LOAD_IN_PROGRESS,
/// COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
const INIT_RETRIABLE: [i16; 3] = [14, 15, 16];

/// Bytes of a v2 batch before its first record.
const BATCH_HEADER_LEN: usize = 61;
/// Where the checksummed part of a batch starts (its attributes).
const CRC_FROM: usize = 21;

/// The producer id and epoch a batch is written with (-1, -1 for a producer that is not
/// idempotent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// Producer id.
    pub id: i64,
    /// Producer epoch.
    pub epoch: i16,
}

impl ProducerIdentity {
    /// Not idempotent: no id, no sequence numbers.
    pub const NONE: ProducerIdentity = ProducerIdentity { id: -1, epoch: -1 };

    /// Whether batches carry sequence numbers.
    pub fn idempotent(&self) -> bool {
        self.id >= 0
    }
}

/// One partition's records being encoded as a Kafka v2 record batch (no compression,
/// CreateTime timestamps).
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    records: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    limit: usize,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::with_limit(BATCH_MAX_BYTES)
    }
}

impl BatchBuilder {
    /// A batch that grows to `limit` bytes at most (a topic's `max.message.bytes`), and never
    /// beyond [`BATCH_MAX_BYTES`].
    pub fn with_limit(limit: usize) -> BatchBuilder {
        BatchBuilder {
            buf: vec![0; BATCH_HEADER_LEN],
            records: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            limit: limit.min(BATCH_MAX_BYTES),
        }
    }

    /// Records in the batch.
    pub fn records(&self) -> i32 {
        self.records
    }

    /// Whether a record still fits under the limit (an empty batch takes any record).
    pub fn fits<'h>(
        &self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Iterator<Item = HeaderRef<'h>>,
    ) -> bool {
        if self.records == 0 {
            return true;
        }
        // Varints at their widest: the exact size depends on the timestamp delta.
        let fields: usize = headers
            .map(|(k, v)| 10 + k.len() + v.map_or(0, <[u8]>::len))
            .sum();
        let widest =
            5 + 1 + 10 + 5 + 5 + key.map_or(0, <[u8]>::len) + 5 + value.map_or(0, <[u8]>::len) + 5 + fields;
        self.buf.len() + widest <= self.limit
    }

    /// Appends a record; `timestamp` is epoch milliseconds (CreateTime).
    pub fn push<'h>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Iterator<Item = HeaderRef<'h>> + Clone,
    ) {
        if self.records == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let timestamp_delta = timestamp - self.base_timestamp;
        let offset_delta = i64::from(self.records);
        let field_len = |f: Option<&[u8]>| f.map_or(varint_len(-1), |b| varint_len(b.len() as i64) + b.len());
        let (header_count, header_len) = headers.clone().fold((0usize, 0usize), |(n, len), (k, v)| {
            (n + 1, len + varint_len(k.len() as i64) + k.len() + field_len(v))
        });
        let body_len = 1
            + varint_len(timestamp_delta)
            + varint_len(offset_delta)
            + field_len(key)
            + field_len(value)
            + varint_len(header_count as i64)
            + header_len;
        let buf = &mut self.buf;
        buf.reserve(body_len + 5);
        put_varint(buf, body_len as i64);
        buf.push(0);
        put_varint(buf, timestamp_delta);
        put_varint(buf, offset_delta);
        put_field(buf, key);
        put_field(buf, value);
        put_varint(buf, header_count as i64);
        for (k, v) in headers {
            put_field(buf, Some(k.as_bytes()));
            put_field(buf, v);
        }
        self.records += 1;
    }

    /// The finished batch, stamped with the producer and the sequence number of its first record.
    pub fn finish(self, producer: ProducerIdentity, base_sequence: i32) -> Bytes {
        let mut buf = self.buf;
        let batch_len = (buf.len() - 12) as i32;
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&0i64.to_be_bytes()); // base offset: the broker assigns it
        put(&batch_len.to_be_bytes());
        put(&(-1i32).to_be_bytes()); // partition leader epoch
        put(&[2]); // magic
        put(&0u32.to_be_bytes()); // crc, below
        put(&0i16.to_be_bytes()); // attributes: no compression, CreateTime, not transactional
        put(&(self.records - 1).max(0).to_be_bytes()); // last offset delta
        put(&self.base_timestamp.to_be_bytes());
        put(&self.max_timestamp.to_be_bytes());
        put(&producer.id.to_be_bytes());
        put(&producer.epoch.to_be_bytes());
        put(&(if producer.idempotent() { base_sequence } else { -1 }).to_be_bytes());
        put(&self.records.to_be_bytes());
        let crc = crc32c::crc32c(&buf[CRC_FROM..]);
        buf[17..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(buf)
    }
}

fn varint_len(v: i64) -> usize {
    let mut z = zigzag(v);
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = zigzag(v);
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// A length-prefixed field; null is length -1.
fn put_field(buf: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

/// A finished batch for one partition.
#[derive(Debug)]
pub struct Batch {
    topic: Arc<str>,
    partition: i32,
    records: i32,
    sequence: i32,
    bytes: Bytes,
    /// Times it was sent and came back unwritten.
    attempts: u32,
}

impl Batch {
    /// A batch of `records` records for `topic`-`partition` whose first record has sequence
    /// number `sequence`, encoded by [`BatchBuilder::finish`].
    pub fn new(topic: Arc<str>, partition: i32, records: i32, sequence: i32, bytes: Bytes) -> Batch {
        Batch {
            topic,
            partition,
            records,
            sequence,
            bytes,
            attempts: 0,
        }
    }
}

/// Producing to a cluster: batches go in with [`Producer::sender`], [`Producer::finish`] waits
/// for all of them.
pub struct Producer {
    identity: ProducerIdentity,
    batches: mpsc::Sender<Batch>,
    task: tokio::task::JoinHandle<Result<u64, ProtocolError>>,
}

/// Hands batches to a [`Producer`]; `Err` means the producer stopped (its error comes from
/// [`Producer::finish`]).
#[derive(Clone)]
pub struct BatchSender(mpsc::Sender<Batch>);

impl BatchSender {
    /// Queues a batch, waiting while the producer is full; for blocking threads.
    pub fn send_blocking(&self, batch: Batch) -> Result<(), ProducerStopped> {
        self.0.blocking_send(batch).map_err(|_| ProducerStopped)
    }
}

/// The producer stopped after an error.
#[derive(Debug, thiserror::Error)]
#[error("the producer stopped after an error")]
pub struct ProducerStopped;

impl Producer {
    /// Connects a producer (idempotent with [`ProduceAcks::All`]) that opens [`LANES`]
    /// connections to each leader, or `connectionsPerBroker`; each request may wait `timeout`
    /// for its acknowledgement.
    pub async fn start(
        settings: Settings,
        acks: ProduceAcks,
        timeout: Duration,
    ) -> Result<Producer, ProtocolError> {
        let lanes = settings.connections_per_broker.unwrap_or(LANES);
        let admin = GroupAdmin::connect(settings).await?;
        let identity = match acks {
            ProduceAcks::All => admin.init_producer_id().await?,
            ProduceAcks::Leader | ProduceAcks::None => ProducerIdentity::NONE,
        };
        let (batches, queue) = mpsc::channel(IN_FLIGHT);
        let task = tokio::spawn(carry(admin, queue, acks, timeout, lanes.max(1)));
        Ok(Producer {
            identity,
            batches,
            task,
        })
    }

    /// The identity batches are to be finished with.
    pub fn identity(&self) -> ProducerIdentity {
        self.identity
    }

    /// A handle for the threads that build batches.
    pub fn sender(&self) -> BatchSender {
        BatchSender(self.batches.clone())
    }

    /// Waits until every batch sent so far is acknowledged (once every [`BatchSender`] is
    /// dropped) and returns the records written, or the first error.
    pub async fn finish(self) -> Result<u64, ProtocolError> {
        drop(self.batches);
        self.task.await.unwrap_or_else(|e| {
            Err(ProtocolError::Transport {
                broker: String::new(),
                api: api_name(ProduceRequest::KEY),
                message: format!("the producer task failed: {e}"),
            })
        })
    }
}

impl GroupAdmin {
    /// A new idempotent producer id and epoch.
    async fn init_producer_id(&self) -> Result<ProducerIdentity, ProtocolError> {
        let mut attempt = 1;
        loop {
            let connection = self.bootstrap().await?;
            let version = connection.version::<InitProducerIdRequest>(INIT_PRODUCER_ID_MAX)?;
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(-1);
            let answer = connection.send(&request, version).await?;
            match answer.error_code {
                0 => {
                    return Ok(ProducerIdentity {
                        id: answer.producer_id.0,
                        epoch: answer.producer_epoch,
                    });
                }
                code if INIT_RETRIABLE.contains(&code) && attempt < ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                code => {
                    return Err(ProtocolError::kafka(
                        connection.broker(),
                        api_name(InitProducerIdRequest::KEY),
                        "an idempotent producer",
                        code,
                        None,
                    ));
                }
            }
        }
    }

    /// The leader of `partition`, looking metadata up again (a topic just created may not have
    /// one yet) a few times.
    async fn leader(&self, partition: &Partition) -> Result<String, ProtocolError> {
        for attempt in 1..=ATTEMPTS {
            if let Some(leader) = self.known_leader(partition) {
                return Ok(leader);
            }
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            self.topics().await?;
        }
        Err(ProtocolError::kafka(
            &self.settings.bootstrap.join(","),
            api_name(ProduceRequest::KEY),
            &format!("{}-{}", partition.0, partition.1),
            super::log_offsets::LEADER_NOT_AVAILABLE,
            None,
        ))
    }
}

/// Kafka error codes after which a batch is sent again (acks=all): LEADER_NOT_AVAILABLE,
/// NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NETWORK_EXCEPTION, NOT_ENOUGH_REPLICAS,
/// NOT_ENOUGH_REPLICAS_AFTER_APPEND, OUT_OF_ORDER_SEQUENCE_NUMBER (a batch before it came back),
/// KAFKA_STORAGE_ERROR, UNKNOWN_TOPIC_OR_PARTITION (metadata of a new topic still spreading).
const RETRIABLE: [i16; 9] = [5, 6, 7, 13, 19, 20, 45, 56, super::UNKNOWN_TOPIC_OR_PARTITION];
/// DUPLICATE_SEQUENCE_NUMBER: the broker holds the batch already.
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;

/// One connection to a leader, the partitions it carries and its requests.
struct Lane {
    connection: Arc<Connection>,
    version: i16,
    /// Batches waiting, per partition in sequence order.
    queues: BTreeMap<(Arc<str>, i32), VecDeque<Batch>>,
    in_flight: usize,
    /// Batches that came back unwritten, to send again once nothing is in flight; and why.
    returned: Vec<Batch>,
    failure: Option<ProtocolError>,
}

/// A lane: the leader's address and the lane's number.
type LaneId = (String, i32);

/// What a request's answer means for its batches.
struct Settled {
    records: u64,
    /// Batches to send again (acks=all only).
    returned: Vec<Batch>,
    /// Why they came back.
    failure: Option<ProtocolError>,
}

type Answer = Pin<Box<dyn Future<Output = (LaneId, Result<Settled, ProtocolError>)> + Send>>;

/// The producer's task: routes batches to their leaders' lanes, keeps up to [`IN_FLIGHT`]
/// requests in flight on each and sends returned batches again.
async fn carry(
    admin: GroupAdmin,
    mut batches: mpsc::Receiver<Batch>,
    acks: ProduceAcks,
    timeout: Duration,
    lane_count: i32,
) -> Result<u64, ProtocolError> {
    let in_flight_max = if acks == ProduceAcks::Leader { 1 } else { IN_FLIGHT };
    let mut lanes: HashMap<LaneId, Lane> = HashMap::new();
    let mut answers: FuturesUnordered<Answer> = FuturesUnordered::new();
    let mut queued_bytes = 0;
    let mut open = true;
    let mut written = 0;
    let (mut requests, mut batches_sent, mut resent) = (0usize, 0usize, 0usize);
    loop {
        for (id, lane) in &mut lanes {
            while lane.failure.is_none() && lane.in_flight < in_flight_max && !lane.queues.is_empty() {
                let batches = next_request(&mut lane.queues);
                requests += 1;
                batches_sent += batches.len();
                queued_bytes -= batches.iter().map(|b| b.bytes.len()).sum::<usize>();
                answers.push(send(id.clone(), lane, batches, acks, timeout));
                lane.in_flight += 1;
            }
        }
        if !open && answers.is_empty() && lanes.values().all(|l| l.queues.is_empty()) {
            tracing::debug!(requests, batches = batches_sent, resent, "producer finished");
            return Ok(written);
        }
        tokio::select! {
            batch = batches.recv(), if open && queued_bytes < QUEUED_MAX_BYTES => match batch {
                Some(batch) => {
                    queued_bytes += batch.bytes.len();
                    route(&admin, &mut lanes, lane_count, batch).await?;
                }
                None => open = false,
            },
            Some((id, settled)) = answers.next() => {
                let settled = settled?;
                written += settled.records;
                let Some(lane) = lanes.get_mut(&id) else { continue };
                lane.in_flight -= 1;
                lane.returned.extend(settled.returned);
                if let Some(failure) = settled.failure {
                    lane.failure.get_or_insert(failure);
                }
                if lane.in_flight == 0
                    && let Some(failure) = lane.failure.take()
                    && let Some(lane) = lanes.remove(&id)
                {
                    resent += lane.returned.len();
                    queued_bytes += lane.returned.iter().map(|b| b.bytes.len()).sum::<usize>();
                    reroute(&admin, &mut lanes, lane_count, lane, failure).await?;
                }
            }
            else => {
                return Err(ProtocolError::Transport {
                    broker: admin.settings.bootstrap.join(","),
                    api: api_name(ProduceRequest::KEY),
                    message: "the producer has batches queued but none it may send".into(),
                });
            }
        }
    }
}

/// Queues `batch` on the lane of its partition's leader, opening the lane if needed.
async fn route(
    admin: &GroupAdmin,
    lanes: &mut HashMap<LaneId, Lane>,
    lane_count: i32,
    batch: Batch,
) -> Result<(), ProtocolError> {
    let address = admin.leader(&(batch.topic.to_string(), batch.partition)).await?;
    let lane = match lanes.entry((address, batch.partition % lane_count)) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => {
            let connection = Arc::new(Connection::open(&v.key().0, &admin.settings).await?);
            let version = connection.version::<ProduceRequest>(PRODUCE_MAX)?;
            v.insert(Lane {
                connection,
                version,
                queues: BTreeMap::new(),
                in_flight: 0,
                returned: Vec::new(),
                failure: None,
            })
        }
    };
    lane.queues
        .entry((batch.topic.clone(), batch.partition))
        .or_default()
        .push_back(batch);
    Ok(())
}

/// A lane whose batches came back (`failure` says why), with nothing in flight any more: after a
/// pause, with fresh metadata, its returned batches and then its queued ones go to their
/// partitions' lanes again, in sequence order. Its connection closes.
async fn reroute(
    admin: &GroupAdmin,
    lanes: &mut HashMap<LaneId, Lane>,
    lane_count: i32,
    lane: Lane,
    failure: ProtocolError,
) -> Result<(), ProtocolError> {
    let Lane {
        mut returned, queues, ..
    } = lane;
    let attempts = returned.iter().map(|b| b.attempts + 1).max().unwrap_or(1);
    if attempts > ATTEMPTS {
        return Err(failure);
    }
    tracing::warn!(
        "sending {} batches again (attempt {attempts}): {failure}",
        returned.len()
    );
    crate::metrics::retries().retry(crate::metrics::RetryCause::KafkaLeaderMoved);
    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempts))).await;
    admin.topics().await?;
    // Answers on one connection come back in order, but are seen in any order.
    returned.sort_by(|a, b| (&a.topic, a.partition, a.sequence).cmp(&(&b.topic, b.partition, b.sequence)));
    for mut batch in returned {
        batch.attempts += 1;
        route(admin, lanes, lane_count, batch).await?;
    }
    for batch in queues.into_values().flatten() {
        route(admin, lanes, lane_count, batch).await?;
    }
    Ok(())
}

/// The first queued batch of every partition (a request holds at most one per partition).
fn next_request(queues: &mut BTreeMap<(Arc<str>, i32), VecDeque<Batch>>) -> Vec<Batch> {
    let batches = queues.values_mut().filter_map(VecDeque::pop_front).collect();
    queues.retain(|_, q| !q.is_empty());
    batches
}

/// Queues one Produce request and returns the future of its answer (at once when the
/// connection is closed already).
fn send(lane_id: LaneId, lane: &Lane, batches: Vec<Batch>, acks: ProduceAcks, timeout: Duration) -> Answer {
    let acks_code = match acks {
        ProduceAcks::All => -1,
        ProduceAcks::Leader => 1,
        ProduceAcks::None => 0,
    };
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let connection = lane.connection.clone();
    let version = lane.version;
    // The broker has the whole timeout to gather acknowledgements; the answer may take longer.
    let wait = timeout + REQUEST_TIMEOUT;
    let body = produce_body(acks_code, timeout_ms, &batches);
    // acks=0 gets no answer: the answer to an ApiVersions request right after it comes once the
    // broker has handled it (a connection's requests are handled in order).
    let queued = if acks == ProduceAcks::None {
        connection
            .queue_chunks_unanswered::<ProduceRequest>(version, body)
            .and_then(|()| connection.queue(&ApiVersionsRequest::default(), 0))
    } else {
        connection.queue_chunks::<ProduceRequest>(version, body)
    };
    Box::pin(async move {
        let answer = match queued {
            Err(e) => Err(e),
            Ok(queued) if acks == ProduceAcks::None => connection
                .reply::<ApiVersionsRequest>(queued, 0, wait)
                .await
                .map(|_| None),
            Ok(queued) => connection
                .reply::<ProduceRequest>(queued, version, wait)
                .await
                .map(Some),
        };
        (lane_id, settle(connection.broker(), acks, batches, answer))
    })
}

/// A Produce request's body (versions 3 to [`PRODUCE_MAX`] share it) in pieces: the batches are
/// pieces of their own, so they go to the socket without being copied into one frame.
fn produce_body(acks: i16, timeout_ms: i32, batches: &[Batch]) -> Vec<Bytes> {
    let mut topics: BTreeMap<&str, Vec<&Batch>> = BTreeMap::new();
    for b in batches {
        topics.entry(&*b.topic).or_default().push(b);
    }
    let mut pieces = Vec::with_capacity(2 * batches.len() + 1);
    let mut head = BytesMut::with_capacity(64);
    head.put_i16(-1); // transactional id: null
    head.put_i16(acks);
    head.put_i32(timeout_ms);
    head.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        head.put_i16(topic.len() as i16);
        head.put_slice(topic.as_bytes());
        head.put_i32(partitions.len() as i32);
        for b in partitions {
            head.put_i32(b.partition);
            head.put_i32(b.bytes.len() as i32);
            pieces.push(head.split().freeze());
            pieces.push(b.bytes.clone());
        }
    }
    if !head.is_empty() {
        pieces.push(head.freeze());
    }
    pieces
}

/// Sorts a request's batches by its answer (`None`: acks=0, the request was handled) into written
/// and returned (acks=all, an error that passes), or fails.
fn settle(
    broker: &str,
    acks: ProduceAcks,
    batches: Vec<Batch>,
    answer: Result<Option<ProduceResponse>, ProtocolError>,
) -> Result<Settled, ProtocolError> {
    let mut settled = Settled {
        records: 0,
        returned: Vec::new(),
        failure: None,
    };
    let answer = match answer {
        Ok(Some(answer)) => answer,
        // acks=0: the broker handled the request (it answered the one after it).
        Ok(None) => {
            settled.records = batches.iter().map(|b| b.records as u64).sum();
            return Ok(settled);
        }
        Err(e @ (ProtocolError::Closed { .. } | ProtocolError::Timeout { .. }))
            if acks == ProduceAcks::All =>
        {
            settled.returned = batches;
            settled.failure = Some(e);
            return Ok(settled);
        }
        Err(e) => return Err(e),
    };
    let api = || api_name(ProduceRequest::KEY);
    let mut codes: HashMap<(&str, i32), (i16, Option<String>)> = HashMap::new();
    for topic in &answer.responses {
        for p in &topic.partition_responses {
            let detail = p.error_message.as_ref().map(|m| m.to_string()).or_else(|| {
                p.record_errors
                    .first()
                    .and_then(|r| r.batch_index_error_message.as_ref().map(|m| m.to_string()))
            });
            codes.insert((topic.name.as_str(), p.index), (p.error_code, detail));
        }
    }
    for batch in batches {
        let subject = || format!("{}-{}", batch.topic, batch.partition);
        match codes.get(&(&*batch.topic, batch.partition)) {
            Some((0 | DUPLICATE_SEQUENCE_NUMBER, _)) => settled.records += batch.records as u64,
            Some((code, detail)) if acks == ProduceAcks::All && RETRIABLE.contains(code) => {
                settled.failure = Some(ProtocolError::kafka(
                    broker,
                    api(),
                    &subject(),
                    *code,
                    detail.clone(),
                ));
                settled.returned.push(batch);
            }
            Some((code, detail)) => {
                return Err(ProtocolError::kafka(
                    broker,
                    api(),
                    &subject(),
                    *code,
                    detail.clone(),
                ));
            }
            None => {
                return Err(ProtocolError::Transport {
                    broker: broker.to_owned(),
                    api: api(),
                    message: format!("the answer does not mention {}", subject()),
                });
            }
        }
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use kafka_protocol::{
        messages::{
            TopicName,
            produce_request::{PartitionProduceData, TopicProduceData},
        },
        protocol::{Encodable, StrBytes},
        records::RecordBatchDecoder,
    };

    use super::*;

    #[test]
    fn varints_are_zigzag_encoded() {
        for (v, bytes) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (63, vec![126]),
            (-64, vec![127]),
            (64, vec![128, 1]),
            (300, vec![216, 4]),
            (i64::MIN, vec![255, 255, 255, 255, 255, 255, 255, 255, 255, 1]),
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf, bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
        }
    }

    #[test]
    fn a_batch_decodes_with_its_records_checksum_and_producer() {
        let mut b = BatchBuilder::default();
        b.push(
            1_700_000_000_500,
            Some(b"k1"),
            Some(b"v1"),
            [("h", Some(&b"x"[..])), ("n", None)].into_iter(),
        );
        b.push(1_700_000_000_000, None, None, std::iter::empty());
        b.push(
            1_700_000_009_000,
            Some(b""),
            Some(&[7u8; 300]),
            std::iter::empty(),
        );
        assert_eq!(b.records(), 3);
        let identity = ProducerIdentity { id: 42, epoch: 3 };
        let mut bytes = b.finish(identity, 17);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records.len(), 3);
        let r = &set.records;
        assert_eq!(r[0].timestamp, 1_700_000_000_500);
        assert_eq!(r[1].timestamp, 1_700_000_000_000);
        assert_eq!(r[2].timestamp, 1_700_000_009_000);
        assert_eq!(r[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(r[0].headers.len(), 2);
        assert_eq!(
            r[0].headers[&StrBytes::from_static_str("h")].as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(r[0].headers[&StrBytes::from_static_str("n")], None);
        assert_eq!((r[1].key.clone(), r[1].value.clone()), (None, None));
        assert_eq!(r[2].key.as_deref(), Some(&b""[..]));
        assert_eq!(r[2].value.as_deref(), Some(&[7u8; 300][..]));
        for (i, record) in r.iter().enumerate() {
            assert_eq!(record.offset, i as i64);
            assert_eq!(record.producer_id, 42);
            assert_eq!(record.producer_epoch, 3);
            assert_eq!(record.sequence, 17 + i as i32);
        }
    }

    #[test]
    fn a_changed_byte_fails_the_checksum() {
        let mut b = BatchBuilder::default();
        b.push(1, Some(b"key"), Some(b"value"), std::iter::empty());
        let mut bytes = b.finish(ProducerIdentity::NONE, 0).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(RecordBatchDecoder::decode(&mut Bytes::from(bytes)).is_err());
    }

    #[test]
    fn a_batch_without_producer_has_no_sequence() {
        let mut b = BatchBuilder::default();
        b.push(5, None, Some(b"v"), std::iter::empty());
        let mut bytes = b.finish(ProducerIdentity::NONE, 9);
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records[0].producer_id, -1);
        assert_eq!(set.records[0].sequence, -1);
    }

    #[test]
    fn batches_stop_short_of_the_limit_but_take_any_first_record() {
        let mut b = BatchBuilder::default();
        let big = vec![0u8; BATCH_MAX_BYTES + 10];
        assert!(b.fits(None, Some(&big), std::iter::empty()));
        let value = [1u8; 1000];
        let mut n = 0;
        while b.fits(Some(b"key"), Some(&value), std::iter::empty()) {
            b.push(n, Some(b"key"), Some(&value), std::iter::empty());
            n += 1;
        }
        let bytes = b.finish(ProducerIdentity::NONE, 0);
        assert!(bytes.len() <= BATCH_MAX_BYTES, "{}", bytes.len());
        assert!(bytes.len() > BATCH_MAX_BYTES - 1100, "{}", bytes.len());

        // A topic's smaller limit.
        let mut b = BatchBuilder::with_limit(5000);
        while b.fits(Some(b"key"), Some(&value), std::iter::empty()) {
            b.push(0, Some(b"key"), Some(&value), std::iter::empty());
        }
        let bytes = b.finish(ProducerIdentity::NONE, 0);
        assert!((4000..=5000).contains(&bytes.len()), "{}", bytes.len());
        assert_eq!(BatchBuilder::with_limit(usize::MAX).limit, BATCH_MAX_BYTES);
    }

    fn answer(codes: &[(i32, i16)]) -> ProduceResponse {
        use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
        ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_responses(
                    codes
                        .iter()
                        .map(|(p, code)| {
                            PartitionProduceResponse::default()
                                .with_index(*p)
                                .with_error_code(*code)
                        })
                        .collect(),
                ),
        ])
    }

    fn batches(partitions: &[i32]) -> Vec<Batch> {
        partitions
            .iter()
            .map(|p| Batch::new(Arc::from("t"), *p, 10 + p, 0, Bytes::new()))
            .collect()
    }

    #[test]
    fn answers_sort_batches_into_written_returned_and_fatal() {
        // Written, already written, leader moved.
        let settled = settle(
            "b:9092",
            ProduceAcks::All,
            batches(&[0, 1, 2]),
            Ok(Some(answer(&[(0, 0), (1, 46), (2, 6)]))),
        )
        .unwrap();
        assert_eq!(settled.records, 10 + 11);
        assert_eq!(
            settled.returned.iter().map(|b| b.partition).collect::<Vec<_>>(),
            [2]
        );
        assert!(settled.failure.unwrap().to_string().contains("t-2"));
        // Without idempotence nothing is sent twice.
        let e = settle(
            "b:9092",
            ProduceAcks::Leader,
            batches(&[0, 2]),
            Ok(Some(answer(&[(0, 0), (2, 6)]))),
        )
        .err()
        .unwrap();
        assert!(
            e.to_string().contains("Produce for t-2 on Kafka broker b:9092"),
            "{e}"
        );
        // An error that does not pass.
        let e = settle(
            "b:9092",
            ProduceAcks::All,
            batches(&[0]),
            Ok(Some(answer(&[(0, 10)]))),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("Kafka error code 10"), "{e}");
        // A partition the answer does not mention.
        let e = settle(
            "b:9092",
            ProduceAcks::All,
            batches(&[0, 1]),
            Ok(Some(answer(&[(0, 0)]))),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("does not mention t-1"), "{e}");
        // A closed connection returns the whole request with acks=all only.
        let closed = || ProtocolError::Closed {
            broker: "b:9092".into(),
            api: "Produce".into(),
            reason: "read failed".into(),
        };
        let settled = settle("b:9092", ProduceAcks::All, batches(&[0, 1]), Err(closed())).unwrap();
        assert_eq!((settled.records, settled.returned.len()), (0, 2));
        assert!(settle("b:9092", ProduceAcks::Leader, batches(&[0]), Err(closed())).is_err());
    }

    #[test]
    fn produce_bodies_match_the_crate_encoding_in_every_version() {
        let batches = vec![
            Batch::new(Arc::from("b"), 2, 1, 0, Bytes::from_static(b"batch b2")),
            Batch::new(Arc::from("a"), 0, 1, 0, Bytes::from_static(b"a0")),
            Batch::new(Arc::from("a"), 7, 1, 0, Bytes::from_static(b"batch a7")),
        ];
        let pieces = produce_body(-1, 30_000, &batches);
        let ours: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert!(
            pieces.iter().any(|p| p.as_ptr() == batches[0].bytes.as_ptr()),
            "batches are not copied"
        );
        let data = |p: i32, bytes: &'static [u8]| {
            PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(Bytes::from_static(bytes)))
        };
        let topic = |name: &'static str, partitions| {
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_partition_data(partitions)
        };
        let request = ProduceRequest::default()
            .with_transactional_id(None)
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                topic("a", vec![data(0, b"a0"), data(7, b"batch a7")]),
                topic("b", vec![data(2, b"batch b2")]),
            ]);
        for version in 3..=PRODUCE_MAX {
            let mut theirs = BytesMut::new();
            request.encode(&mut theirs, version).unwrap();
            assert_eq!(ours, theirs.to_vec(), "version {version}");
        }
    }

    #[test]
    fn a_request_takes_the_first_batch_of_each_partition() {
        let batch = |p: i32, n: i32| Batch::new(Arc::from("t"), p, n, 0, Bytes::new());
        let mut queues: BTreeMap<(Arc<str>, i32), VecDeque<Batch>> = BTreeMap::new();
        for (p, n) in [(0, 1), (0, 2), (1, 3), (2, 4), (2, 5)] {
            queues
                .entry((Arc::from("t"), p))
                .or_default()
                .push_back(batch(p, n));
        }
        let first: Vec<(i32, i32)> = next_request(&mut queues)
            .iter()
            .map(|b| (b.partition, b.records))
            .collect();
        assert_eq!(first, [(0, 1), (1, 3), (2, 4)]);
        let second: Vec<(i32, i32)> = next_request(&mut queues)
            .iter()
            .map(|b| (b.partition, b.records))
            .collect();
        assert_eq!(second, [(0, 2), (2, 5)]);
        assert!(queues.is_empty());
    }
}
