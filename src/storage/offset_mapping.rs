//! Offset mappings: where records (and consumer groups) of a source cluster ended up after a
//! restore. Read by the FromMapping offset reset; written by a restore as
//! `offset-mapping.json` next to its other results.
//!
//! ```json
//! {
//!   "groups": {"order-processor": {"orders": {"0": 1000, "1": 2000}}},
//!   "topics": {
//!     "orders-restored": {
//!       "sourceTopic": "orders",
//!       "ranges": [{"sourcePartition": 0, "sourceStart": 0, "targetPartition": 0,
//!                   "targetStart": 0, "count": 1000}]
//!     }
//!   }
//! }
//! ```
//!
//! `groups` is the seed's mapping format: the target offset to commit per group, topic and
//! partition; it is all FromMapping needs and may be written by hand. `topics` (written by a
//! restore) maps runs of consecutive source offsets to consecutive target offsets, one entry per
//! run rather than per record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An offset mapping document.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetMapping {
    /// Target offsets per group, topic and partition.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeMap<String, BTreeMap<i32, i64>>>,
    /// Source-to-target offset runs per target topic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, TopicMapping>,
}

/// How one source topic was restored into a target topic.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicMapping {
    /// The topic in the backup.
    pub source_topic: String,
    /// Runs of consecutive offsets, in target order per target partition.
    pub ranges: Vec<OffsetRange>,
}

/// `count` records with consecutive source offsets written to consecutive target offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetRange {
    /// Partition in the backup.
    pub source_partition: i32,
    /// First source offset of the run.
    pub source_start: i64,
    /// Partition in the target.
    pub target_partition: i32,
    /// Target offset of the first record.
    pub target_start: i64,
    /// Records in the run.
    pub count: i64,
}

/// Why a mapping cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{uri} is not a valid offset mapping: {source}")]
pub struct MappingError {
    /// Where it was read.
    pub uri: String,
    /// Why.
    #[source]
    pub source: serde_json::Error,
}

impl OffsetMapping {
    /// Parses a mapping document.
    pub fn parse(bytes: &[u8], uri: &str) -> Result<Self, MappingError> {
        serde_json::from_slice(bytes).map_err(|source| MappingError {
            uri: uri.into(),
            source,
        })
    }

    /// Where a consumer that had committed `source_offset` (the next record it would read) on a
    /// source partition continues in the target: the target offset of the first restored record
    /// at or after it, per target partition it was restored into. A partition whose records all
    /// lie before `source_offset` maps to the end of its restored run.
    pub fn translate(
        &self,
        target_topic: &str,
        source_partition: i32,
        source_offset: i64,
    ) -> BTreeMap<i32, i64> {
        let mut found: BTreeMap<i32, i64> = BTreeMap::new();
        let mut after_last: BTreeMap<i32, i64> = BTreeMap::new();
        let Some(topic) = self.topics.get(target_topic) else {
            return found;
        };
        for range in topic
            .ranges
            .iter()
            .filter(|r| r.source_partition == source_partition)
        {
            let partition = range.target_partition;
            if found.contains_key(&partition) {
                continue;
            }
            if range.source_start + range.count > source_offset {
                let skip = (source_offset - range.source_start).max(0);
                found.insert(partition, range.target_start + skip);
            } else {
                after_last.insert(partition, range.target_start + range.count);
            }
        }
        for (partition, end) in after_last {
            found.entry(partition).or_insert(end);
        }
        found
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_seed_format_parses() {
        let seed = r#"{"groups": {"order-processor": {"orders": {"0": 1000, "1": 2000, "2": 1500}}}}"#;
        let mapping = OffsetMapping::parse(seed.as_bytes(), "x").unwrap();
        assert_eq!(mapping.groups["order-processor"]["orders"][&2], 1500);
        let e = OffsetMapping::parse(b"{\"groups\": 3}", "cm://m/k")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cm://m/k is not a valid offset mapping"), "{e}");
    }

    #[test]
    fn ranges_translate_inside_between_and_after_runs() {
        let range = |source_start, target_start, count| OffsetRange {
            source_partition: 0,
            source_start,
            target_partition: 0,
            target_start,
            count,
        };
        let mapping = OffsetMapping {
            groups: BTreeMap::new(),
            topics: BTreeMap::from([(
                "t".to_owned(),
                TopicMapping {
                    source_topic: "s".into(),
                    // A compacted source: offsets 100..110 and 200..205 restored to 0..15.
                    ranges: vec![range(100, 0, 10), range(200, 10, 5)],
                },
            )]),
        };
        assert_eq!(mapping.translate("t", 0, 105)[&0], 5);
        assert_eq!(mapping.translate("t", 0, 150)[&0], 10);
        assert_eq!(mapping.translate("t", 0, 50)[&0], 0);
        assert_eq!(mapping.translate("t", 0, 999)[&0], 15);
        assert!(mapping.translate("t", 1, 5).is_empty());
    }
}
