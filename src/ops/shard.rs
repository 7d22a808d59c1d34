//! Shards: one operation split over several worker processes (`run -f --workers N`, the
//! `worker` subcommand), each running a disjoint part of its topic-partitions.
//!
//! [`assign`] is the one assignment function for every operation: a backup weighs its
//! partitions by the records left to copy, a restore by the stored bytes of each target partition
//! (all the source data of one target partition goes to one shard, so its order is kept), a
//! validation by the stored bytes it reads. It is pure and deterministic: the same input gives the
//! same assignment whatever the order it came in, so a shard run again gets its own partitions.
//! The coordinator also records the assignment it made (a backup in its manifest's current run),
//! so a shard run again reads the very same one even where the weights have moved since.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::Context;
use crate::{kafka::groups::Partition, storage::backup::ShardPlan};

/// Runs the worker of one shard of a split run: called with the shard and the attempt's
/// context (cancelled when the attempt stops), it resolves when the worker ended; `Err` says how
/// it ended when that was not well.
pub type ShardRunner = dyn Fn(ShardIndex, Context) -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// How an operation that can be split over worker processes is executed.
#[derive(Clone, Copy)]
pub enum How<'a> {
    /// All of it in this process.
    Whole,
    /// One shard of a run a coordinator split.
    Shard(ShardIndex),
    /// Split over `workers` shards, each run by `runner`, then merged by this process.
    Split {
        /// How many shards.
        workers: usize,
        /// Runs the worker of each.
        runner: &'a ShardRunner,
    },
}

/// Which shard of how many a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardIndex {
    /// Its index, `0..count`.
    pub index: usize,
    /// How many shards there are.
    pub count: usize,
}

/// A shard index outside its count, or no shards at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    /// There must be at least one shard.
    #[error("--shards: {0} shards cannot run anything: at least 1")]
    NoShards(usize),
    /// The index is not below the count.
    #[error("--shard-index {index} is not a shard of {count} (0 to {last})", last = count.saturating_sub(1))]
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// The count.
        count: usize,
    },
}

impl ShardIndex {
    /// Shard `index` of `count`, checked.
    pub fn new(index: usize, count: usize) -> Result<Self, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards(count));
        }
        if index >= count {
            return Err(ShardError::OutOfRange { index, count });
        }
        Ok(ShardIndex { index, count })
    }
}

impl std::fmt::Display for ShardIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} of {}", self.index, self.count)
    }
}

/// Assigns every key to one of `shards` shards, balanced by weight: heaviest first (ties by key),
/// each to the least loaded shard (ties: the lowest index). Every key lands in exactly one shard
/// (a key given twice counts once, with its largest weight), the loads of any two shards differ
/// by at most the largest single weight, and each shard lists its keys in order. Pure; `shards`
/// 0 is taken as 1.
pub fn assign<K: Ord + Clone>(items: &[(K, u64)], shards: usize) -> Vec<Vec<K>> {
    let shards = shards.max(1);
    let mut unique: Vec<(K, u64)> = Vec::with_capacity(items.len());
    let mut sorted: Vec<&(K, u64)> = items.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    for (key, weight) in sorted {
        if unique.last().is_none_or(|(last, _)| last != key) {
            unique.push((key.clone(), *weight));
        }
    }
    unique.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut loads = vec![0u64; shards];
    let mut assigned: Vec<BTreeSet<K>> = vec![BTreeSet::new(); shards];
    for (key, weight) in unique {
        let lightest = loads
            .iter()
            .enumerate()
            .min_by_key(|(index, load)| (**load, *index))
            .map_or(0, |(index, _)| index);
        loads[lightest] = loads[lightest].saturating_add(weight);
        assigned[lightest].insert(key);
    }
    assigned
        .into_iter()
        .map(|keys| keys.into_iter().collect())
        .collect()
}

/// The shards of a run over the partitions `weights` lists: `previous` (the plan recorded by an
/// earlier attempt of the run) when it splits the same partitions over as many shards, so that a
/// shard run again continues its own partitions; else a new [`assign`]ment, named after `now`
/// and the count, so that results of an earlier plan are never taken for this one's. Pure.
pub fn plan(
    previous: Option<ShardPlan>,
    weights: &[(Partition, u64)],
    shards: usize,
    now: DateTime<Utc>,
) -> ShardPlan {
    let shards = shards.max(1);
    let keys: BTreeSet<&Partition> = weights.iter().map(|(k, _)| k).collect();
    if let Some(previous) = previous
        && previous.shards.len() == shards
    {
        let planned: Vec<Partition> = (0..shards).flat_map(|i| previous.partitions(i)).collect();
        if planned.len() == keys.len() && planned.iter().all(|p| keys.contains(p)) {
            return previous;
        }
    }
    ShardPlan {
        id: format!("{}-{shards}", now.timestamp_millis()),
        shards: assign(weights, shards)
            .into_iter()
            .map(|keys| {
                let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                for (topic, partition) in keys {
                    topics.entry(topic).or_default().push(partition);
                }
                topics
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn load(shard: &[(String, i32)], weights: &BTreeMap<(String, i32), u64>) -> u64 {
        shard.iter().map(|k| weights[k]).sum()
    }

    #[test]
    fn heavy_partitions_spread_and_light_ones_fill_up() {
        let items: Vec<((String, i32), u64)> = [(0, 100), (1, 100), (2, 10), (3, 10), (4, 80)]
            .into_iter()
            .map(|(p, w)| (("t".to_owned(), p), w))
            .collect();
        let shards = assign(&items, 2);
        assert_eq!(
            shards,
            vec![
                vec![("t".to_owned(), 0), ("t".to_owned(), 4)],
                vec![("t".to_owned(), 1), ("t".to_owned(), 2), ("t".to_owned(), 3)],
            ]
        );
        // 180 against 120: within the largest weight (100).
        // More shards than partitions: the rest stay empty.
        let shards = assign(&items[..1], 3);
        assert_eq!(shards.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 0, 0]);
        assert_eq!(assign::<i32>(&[], 0), vec![Vec::<i32>::new()]);
    }

    #[test]
    fn indexes_outside_the_count_are_named() {
        assert_eq!(ShardIndex::new(3, 4).unwrap().to_string(), "shard 3 of 4");
        assert_eq!(
            ShardIndex::new(4, 4).unwrap_err().to_string(),
            "--shard-index 4 is not a shard of 4 (0 to 3)"
        );
        assert!(
            ShardIndex::new(0, 0)
                .unwrap_err()
                .to_string()
                .contains("--shards")
        );
    }

    #[test]
    fn a_plan_is_kept_while_it_splits_the_same_partitions_over_as_many_shards() {
        let weights: Vec<(Partition, u64)> = (0..6).map(|p| (("t".to_owned(), p), 10)).collect();
        let first = plan(None, &weights, 3, Utc::now());
        assert_eq!(first.id.split('-').nth(1), Some("3"));
        assert_eq!(
            (0..3).map(|i| first.partitions(i).len()).collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
        // Other weights (the records left after a crash): the same shards.
        let moved: Vec<(Partition, u64)> = (0..6).map(|p| (("t".to_owned(), p), p as u64)).collect();
        assert_eq!(plan(Some(first.clone()), &moved, 3, Utc::now()), first);
        // Another count or another partition: a new plan.
        let later = Utc::now() + chrono::Duration::seconds(1);
        assert_ne!(plan(Some(first.clone()), &weights, 2, later).id, first.id);
        let grown: Vec<(Partition, u64)> = (0..7).map(|p| (("t".to_owned(), p), 10)).collect();
        let regrown = plan(Some(first.clone()), &grown, 3, later);
        assert_ne!(regrown.id, first.id);
        assert_eq!((0..3).map(|i| regrown.partitions(i).len()).sum::<usize>(), 7);
    }

    fn partitions() -> impl Strategy<Value = Vec<((String, i32), u64)>> {
        proptest::collection::vec(
            (("[a-c]", 0..16i32), 0..1_000_000u64).prop_map(|((t, p), w)| ((t, p), w)),
            0..60,
        )
    }

    proptest! {
        #[test]
        fn every_partition_in_exactly_one_balanced_shard(items in partitions(), shards in 1..9usize) {
            let assigned = assign(&items, shards);
            prop_assert_eq!(assigned.len(), shards);
            let mut weights: BTreeMap<(String, i32), u64> = BTreeMap::new();
            for (key, weight) in &items {
                let w = weights.entry(key.clone()).or_default();
                *w = (*w).max(*weight);
            }
            let mut seen = BTreeSet::new();
            for shard in &assigned {
                prop_assert!(shard.windows(2).all(|w| w[0] < w[1]), "in order");
                for key in shard {
                    prop_assert!(seen.insert(key.clone()), "{key:?} in two shards");
                }
            }
            prop_assert_eq!(seen.len(), weights.len());
            let loads: Vec<u64> = assigned.iter().map(|s| load(s, &weights)).collect();
            let heaviest = weights.values().copied().max().unwrap_or(0);
            let (max, min) = (loads.iter().max().unwrap(), loads.iter().min().unwrap());
            prop_assert!(max - min <= heaviest, "loads {loads:?}, heaviest {heaviest}");
        }

        #[test]
        fn the_same_partitions_in_any_order_give_the_same_shards(
            items in partitions(), shards in 1..9usize, seed in any::<u64>()
        ) {
            let mut shuffled = items.clone();
            // A deterministic shuffle: rotate and reverse by the seed.
            if !shuffled.is_empty() {
                let len = shuffled.len();
                shuffled.rotate_left((seed as usize) % len);
            }
            if seed % 2 == 0 {
                shuffled.reverse();
            }
            prop_assert_eq!(assign(&items, shards), assign(&shuffled, shards));
        }
    }
}
