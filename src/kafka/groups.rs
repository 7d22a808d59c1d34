//! Log-offset operations on one cluster through librdkafka: topic metadata, log bounds, offsets by
//! time, and reading single records (for the HeaderBased search). Group offsets (describe, read,
//! commit, delete) go through [`super::protocol`], which serves many groups over one connection.
//!
//! librdkafka's calls are blocking; callers run them on the blocking pool.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList, consumer::Consumer, message::Headers};

use super::KafkaError;

/// A topic partition.
pub type Partition = (String, i32);

/// The signal librdkafka uses to wake its threads when a client is destroyed (SIGIO; nothing
/// else in the process uses it).
const TERMINATION_SIGNAL: i32 = 29;

/// Request timeout of single metadata and offset calls.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What Kafka reports about a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Kafka's group state: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead.
    pub state: String,
    /// Active members.
    pub members: usize,
}

impl GroupDescription {
    /// A group the cluster does not know.
    pub fn dead() -> Self {
        GroupDescription {
            state: "Dead".into(),
            members: 0,
        }
    }

    /// No consumer is attached: offsets may be changed. A group that does not exist (Dead) has
    /// no members either.
    pub fn is_inactive(&self) -> bool {
        self.members == 0 && matches!(self.state.as_str(), "Empty" | "Dead" | "")
    }
}

/// A committed offset with its metadata string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Next offset the group will read.
    pub offset: i64,
    /// Metadata committed with it.
    pub metadata: String,
}

/// The first and the next offset of a partition's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    /// Log start offset (earliest record still kept).
    pub start: i64,
    /// Log end offset (offset the next record will get).
    pub end: i64,
}

impl LogBounds {
    /// `offset` moved into [start, end], and whether it had to move.
    pub fn clamp(&self, offset: i64) -> (i64, bool) {
        let clamped = offset.clamp(self.start, self.end.max(self.start));
        (clamped, clamped != offset)
    }

    /// The bounds of each partition from its start and end offsets; `Err` names the first
    /// partition lacking either.
    pub fn of_each(
        partitions: &BTreeSet<Partition>,
        start: &BTreeMap<Partition, Option<i64>>,
        end: &BTreeMap<Partition, Option<i64>>,
    ) -> Result<BTreeMap<Partition, LogBounds>, Partition> {
        partitions
            .iter()
            .map(|tp| match (start.get(tp), end.get(tp)) {
                (Some(Some(start)), Some(Some(end))) => Ok((
                    tp.clone(),
                    LogBounds {
                        start: *start,
                        end: *end,
                    },
                )),
                _ => Err(tp.clone()),
            })
            .collect()
    }
}

/// A connection to one cluster for metadata and offsets.
pub struct Cluster {
    config: ClientConfig,
    consumer: super::Consumer,
}

impl Cluster {
    /// Connects (lazily: librdkafka connects on the first request).
    pub fn new(config: &ClientConfig) -> Result<Self, KafkaError> {
        let mut config = config.clone();
        // Without it, destroying a client waits for its threads' blocking calls to time out.
        config.set("internal.termination.signal", TERMINATION_SIGNAL.to_string());
        config.set("enable.auto.commit", "false");
        config.set("enable.partition.eof", "true");
        let consumer = super::consumer(&config).map_err(KafkaError::client("creating the Kafka client"))?;
        Ok(Cluster { config, consumer })
    }

    /// The settings clients of this cluster are made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Partition counts of every topic (internal ones included), from cluster metadata.
    pub fn topics(&self) -> Result<BTreeMap<String, i32>, KafkaError> {
        let metadata = self
            .consumer
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(KafkaError::client("reading cluster metadata"))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
            .collect())
    }

    /// Log start and end offsets of the partitions, two ListOffsets rounds in all.
    pub fn log_bounds(
        &self,
        partitions: &BTreeSet<Partition>,
    ) -> Result<BTreeMap<Partition, LogBounds>, KafkaError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let start = self.list_offsets(partitions, Offset::Beginning, "log start offsets")?;
        let end = self.list_offsets(partitions, Offset::End, "log end offsets")?;
        LogBounds::of_each(partitions, &start, &end).map_err(|(topic, partition)| {
            KafkaError::Broker(format!("no log offsets for {topic}-{partition}"))
        })
    }

    /// For each partition, the first offset whose record timestamp is at or after `millis`; `None`
    /// when no record is that recent (the caller uses the log end).
    pub fn offsets_for_time(
        &self,
        partitions: &BTreeSet<Partition>,
        millis: i64,
    ) -> Result<BTreeMap<Partition, Option<i64>>, KafkaError> {
        self.list_offsets(partitions, Offset::Offset(millis), "offsets by timestamp")
    }

    fn list_offsets(
        &self,
        partitions: &BTreeSet<Partition>,
        query: Offset,
        what: &str,
    ) -> Result<BTreeMap<Partition, Option<i64>>, KafkaError> {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            tpl.add_partition_offset(topic, *partition, query)
                .map_err(KafkaError::client(format!("listing {what}")))?;
        }
        let answer = self
            .consumer
            .offsets_for_times(tpl, REQUEST_TIMEOUT)
            .map_err(KafkaError::client(format!("listing {what}")))?;
        let mut out = BTreeMap::new();
        for elem in answer.elements() {
            elem.error().map_err(KafkaError::client(format!(
                "listing {what} of {}-{}",
                elem.topic(),
                elem.partition()
            )))?;
            let offset = match elem.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
            out.insert((elem.topic().to_owned(), elem.partition()), offset);
        }
        Ok(out)
    }

    /// Reads forward from `offset` to the first record for which `extract` gives a value: that
    /// record's offset and the value, `None` when the log end comes first.
    pub fn first_match_at<T>(
        &self,
        reader: &super::Consumer,
        partition: &Partition,
        offset: i64,
        extract: impl Fn(&[(String, Option<Vec<u8>>)]) -> Option<T>,
    ) -> Result<Option<(i64, T)>, KafkaError> {
        let what = || format!("reading {}-{} from offset {offset}", partition.0, partition.1);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&partition.0, partition.1, Offset::Offset(offset))
            .map_err(KafkaError::client(what()))?;
        reader.assign(&tpl).map_err(KafkaError::client(what()))?;
        let mut idle_since = std::time::Instant::now();
        loop {
            match reader.poll(Duration::from_millis(200)) {
                None if idle_since.elapsed() > REQUEST_TIMEOUT => {
                    return Err(KafkaError::Broker(format!(
                        "no record and no end of log within {}s {}",
                        REQUEST_TIMEOUT.as_secs(),
                        what()
                    )));
                }
                None => continue,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(None),
                Some(Err(source)) => {
                    return Err(KafkaError::Client { what: what(), source });
                }
                Some(Ok(message)) => {
                    idle_since = std::time::Instant::now();
                    // Leftovers of an earlier position of this reader are not ours.
                    if message.topic() != partition.0
                        || message.partition() != partition.1
                        || message.offset() < offset
                    {
                        continue;
                    }
                    let headers: Vec<(String, Option<Vec<u8>>)> = message
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default();
                    if let Some(value) = extract(&headers) {
                        return Ok(Some((message.offset(), value)));
                    }
                }
            }
        }
    }

    /// A consumer for [`Cluster::first_match_at`], fetching one small batch at a time.
    pub fn record_reader(&self) -> Result<super::Consumer, KafkaError> {
        let mut config = self.config.clone();
        config.set("group.id", "kafka-backup-operator-reader");
        config.set("enable.auto.commit", "false");
        config.set("enable.partition.eof", "true");
        config.set("fetch.max.bytes", "1048576");
        config.set("max.partition.fetch.bytes", "262144");
        super::consumer(&config).map_err(KafkaError::client("creating the record reader"))
    }
}
