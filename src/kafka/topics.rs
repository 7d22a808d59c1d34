//! Topic-level operations of backup and restore: selecting topics by name and glob, reading
//! topic configuration, creating topics, deleting records, listing consumer groups, and Kafka's
//! default partitioner (murmur2) for repartitioning.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{
        AdminClient, AdminOptions, ConfigEntry, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
    },
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
};

use super::{KafkaError, groups::REQUEST_TIMEOUT};

/// Whether `name` matches a glob of `*` (any run of characters) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                backtrack = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match backtrack {
                Some((bp, bn)) => {
                    pi = bp + 1;
                    ni = bn + 1;
                    backtrack = Some((bp, bn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a pattern is a glob rather than an exact name.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Why a topic selection fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: topic {name} does not exist{among}")]
pub struct MissingTopic {
    /// Field path of the pattern, e.g. `spec.topics[1]`.
    pub field: String,
    /// The name.
    pub name: String,
    /// Where it was looked for.
    pub among: String,
}

/// The topics of `available` that `include` selects and `exclude` does not. Exact names must
/// exist; internal topics (`__*`) are only selected by exact name. Pure.
pub fn select_topics<'a>(
    include: &[String],
    exclude: &[String],
    available: impl IntoIterator<Item = &'a String> + Clone,
    field: &str,
    among: &str,
) -> Result<BTreeSet<String>, MissingTopic> {
    let mut out = BTreeSet::new();
    for (i, pattern) in include.iter().enumerate() {
        if is_glob(pattern) {
            out.extend(
                available
                    .clone()
                    .into_iter()
                    .filter(|t| !t.starts_with("__") && glob_match(pattern, t))
                    .cloned(),
            );
        } else if available.clone().into_iter().any(|t| t == pattern) {
            out.insert(pattern.clone());
        } else {
            return Err(MissingTopic {
                field: format!("{field}[{i}]"),
                name: pattern.clone(),
                among: among.into(),
            });
        }
    }
    out.retain(|t| !exclude.iter().any(|x| glob_match(x, t)));
    Ok(out)
}

fn admin(config: &ClientConfig) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    config
        .create()
        .map_err(KafkaError::client("creating the Kafka admin client"))
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// The non-default configuration entries the cluster reports per topic (set on the topic
/// itself). Empty for brokers without DescribeConfigs.
pub async fn topic_configs(
    config: &ClientConfig,
    topics: &BTreeSet<String>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, KafkaError> {
    Ok(describe_configs(config, topics)
        .await?
        .into_iter()
        .map(|(topic, entries)| {
            let set_on_topic = entries
                .into_iter()
                .filter(|e| {
                    !e.is_default
                        && !e.is_sensitive
                        && !e.is_read_only
                        && matches!(e.source, ConfigSource::DynamicTopic)
                })
                .filter_map(|e| Some((e.name, e.value?)))
                .collect();
            (topic, set_on_topic)
        })
        .collect())
}

/// The largest record batch each topic takes (`max.message.bytes`, wherever it is set), for the
/// topics the cluster reports it for.
pub async fn max_message_bytes(
    config: &ClientConfig,
    topics: &BTreeSet<String>,
) -> Result<BTreeMap<String, usize>, KafkaError> {
    Ok(describe_configs(config, topics)
        .await?
        .into_iter()
        .filter_map(|(topic, entries)| {
            let limit = entries
                .into_iter()
                .find(|e| e.name == "max.message.bytes")?
                .value?
                .parse()
                .ok()?;
            Some((topic, limit))
        })
        .collect())
}

/// Every configuration entry the cluster reports per topic; topics it reports an error for (or
/// a broker without DescribeConfigs) are left out.
async fn describe_configs(
    config: &ClientConfig,
    topics: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<ConfigEntry>>, KafkaError> {
    let mut out = BTreeMap::new();
    if topics.is_empty() {
        return Ok(out);
    }
    let admin = admin(config)?;
    let specs: Vec<ResourceSpecifier> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = admin
        .describe_configs(specs.iter(), &options())
        .await
        .map_err(KafkaError::client("describing topic configurations"))?;
    for (topic, result) in topics.iter().zip(results) {
        if let Ok(resource) = result {
            out.insert(topic.clone(), resource.entries);
        }
    }
    Ok(out)
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicToCreate {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor; `None` = the broker's default.
    pub replication_factor: Option<i32>,
    /// Configuration.
    pub configs: BTreeMap<String, String>,
}

/// Creates topics; a topic that already exists with the wanted partition count is fine.
pub async fn create_topics(config: &ClientConfig, topics: &[TopicToCreate]) -> Result<(), KafkaError> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin(config)?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor.unwrap_or(-1)),
            );
            for (k, v) in &t.configs {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let results = admin
        .create_topics(new.iter(), &options())
        .await
        .map_err(KafkaError::client("creating topics"))?;
    for result in results {
        if let Err((name, code)) = result
            && code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
        {
            return Err(KafkaError::Broker(format!("creating topic {name}: {code}")));
        }
    }
    Ok(())
}

/// Deletes every record of the partitions below their log end (DeleteRecords to the high
/// watermark).
pub async fn delete_records(
    config: &ClientConfig,
    ends: &BTreeMap<(String, i32), i64>,
) -> Result<(), KafkaError> {
    if ends.is_empty() {
        return Ok(());
    }
    let admin = admin(config)?;
    let mut tpl = TopicPartitionList::with_capacity(ends.len());
    for ((topic, partition), end) in ends {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*end))
            .map_err(KafkaError::client("deleting records"))?;
    }
    let answer = admin
        .delete_records(&tpl, &options())
        .await
        .map_err(KafkaError::client("deleting records"))?;
    for elem in answer.elements() {
        elem.error().map_err(KafkaError::client(format!(
            "deleting the records of {}-{}",
            elem.topic(),
            elem.partition()
        )))?;
    }
    Ok(())
}

/// Every consumer group id of the cluster.
pub fn list_groups(consumer: &BaseConsumer) -> Result<Vec<String>, KafkaError> {
    let list = consumer
        .fetch_group_list(None, REQUEST_TIMEOUT)
        .map_err(KafkaError::client("listing consumer groups"))?;
    Ok(list.groups().iter().map(|g| g.name().to_owned()).collect())
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn murmur2_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("orders-*", "orders-eu"));
        assert!(glob_match("o?ders", "orders"));
        assert!(!glob_match("orders", "orders-eu"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("orders-*", "orders-"));
        assert!(glob_match("o?ders*eu", "orders-x-eu"));
        assert!(glob_match("a*b*c", "a-b-b-c"));
        assert!(!glob_match("orders-*", "orders"));
        assert!(!glob_match("o?ders", "oders"));
        assert!(!glob_match("a*c", "abcd"));
    }

    #[test]
    fn selection_needs_exact_names_and_skips_internal_topics_for_globs() {
        let all: Vec<String> = ["orders", "orders-eu", "__consumer_offsets", "pay"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = select_topics(
            &["orders*".into(), "*".into()],
            &["pay".into()],
            &all,
            "spec.topics",
            "",
        )
        .unwrap();
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec!["orders", "orders-eu"]);
        let s = select_topics(&["__consumer_offsets".into()], &[], &all, "spec.topics", "").unwrap();
        assert_eq!(s.len(), 1);
        let e = select_topics(&["x".into()], &[], &all, "spec.topics", " in the cluster").unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.topics[0]: topic x does not exist in the cluster"
        );
    }

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's UtilsTest / DefaultPartitionerTest.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }
}
