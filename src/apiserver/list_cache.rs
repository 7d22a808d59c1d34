//! The last few list answers, so that `kubectl get osnap` on a namespace with 10,000 snapshots
//! (a 7 MB Table) is a copy of bytes instead of a new rendering each time.
//!
//! An answer depends only on the request (namespace, resource, query, format), the index it was
//! rendered from (its generation) and, for Tables, the time through the Age column. So an answer is
//! reused for the same request and generation until the first Age cell would read differently
//! ([`super::table::stable_until`]); then it is rendered again. A new index generation (a refresh
//! that found changes, a snapshot written or deleted) makes every cached answer stale.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{discovery::ObjectFormat, resources::Resource};

/// How many answers are kept: a few namespaces and formats polled at once.
const CAPACITY: usize = 8;

/// What a list answer depends on besides the time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListKey {
    /// The namespace listed (`None`: all namespaces).
    pub namespace: Option<String>,
    /// The resource listed.
    pub resource: Resource,
    /// The raw query string (selectors, limit, continue, includeObject).
    pub query: String,
    /// JSON or Table (and its version).
    pub format: ObjectFormat,
    /// Generation of the index the answer was rendered from.
    pub generation: u64,
}

#[derive(Debug)]
struct Cached {
    key: ListKey,
    body: Bytes,
    /// The answer is the same as a new rendering before this time (`None`: at any time).
    valid_until: Option<DateTime<Utc>>,
}

/// The cache (see the module docs).
#[derive(Debug, Default)]
pub struct ListCache {
    entries: Mutex<VecDeque<Cached>>,
}

impl ListCache {
    /// The cached answer to `key` if it is still what a rendering at `now` would give.
    pub fn get(&self, key: &ListKey, now: DateTime<Utc>) -> Option<Bytes> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .find(|c| &c.key == key && c.valid_until.is_none_or(|until| now < until))
            .map(|c| c.body.clone())
    }

    /// Keeps `body` as the answer to `key` until `valid_until`, evicting the oldest answer (and
    /// any for an older generation) when full.
    pub fn put(&self, key: ListKey, body: Bytes, valid_until: Option<DateTime<Utc>>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|c| c.key.generation >= key.generation && !same_request(&c.key, &key));
        if entries.len() >= CAPACITY {
            entries.pop_front();
        }
        entries.push_back(Cached {
            key,
            body,
            valid_until,
        });
    }
}

fn same_request(a: &ListKey, b: &ListKey) -> bool {
    a.namespace == b.namespace && a.resource == b.resource && a.query == b.query && a.format == b.format
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::TimeZone;

    use super::*;

    fn key(generation: u64, query: &str) -> ListKey {
        ListKey {
            namespace: Some("team-a".into()),
            resource: Resource::OffsetSnapshots,
            query: query.into(),
            format: ObjectFormat::Table("v1"),
            generation,
        }
    }

    #[test]
    fn an_answer_is_reused_for_the_same_request_generation_and_age() {
        let cache = ListCache::default();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let until = t0 + chrono::Duration::seconds(30);
        cache.put(key(3, ""), Bytes::from_static(b"table"), Some(until));
        assert_eq!(cache.get(&key(3, ""), t0).as_deref(), Some(&b"table"[..]));
        // Another query, another generation, or an Age that moved on: rendered again.
        assert!(cache.get(&key(3, "limit=500"), t0).is_none());
        assert!(cache.get(&key(4, ""), t0).is_none());
        assert!(cache.get(&key(3, ""), until).is_none());
        // A newer generation replaces the older answers.
        cache.put(key(4, "limit=500"), Bytes::from_static(b"page"), None);
        assert!(cache.get(&key(3, ""), t0).is_none());
        assert!(
            cache
                .get(&key(4, "limit=500"), t0 + chrono::Duration::days(9))
                .is_some()
        );
    }

    #[test]
    fn at_most_capacity_answers_are_kept() {
        let cache = ListCache::default();
        let now = Utc::now();
        for i in 0..=CAPACITY {
            cache.put(key(1, &format!("limit={i}")), Bytes::new(), None);
        }
        assert!(cache.get(&key(1, "limit=0"), now).is_none());
        assert!(cache.get(&key(1, &format!("limit={CAPACITY}")), now).is_some());
    }
}
