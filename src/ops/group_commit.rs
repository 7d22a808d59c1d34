//! Changing one consumer group's committed offsets (KafkaOffsetReset, KafkaOffsetRollback) so
//! that what is reported is what the broker holds.
//!
//! The OffsetDelete and OffsetCommit are sent within the request budget
//! ([`execution::request`]; sending them again is safe: they set absolute offsets). When they
//! still fail, the request may have been applied all the same (the connection broke after the
//! broker received it, its answer was lost): the group's offsets are then read back with
//! OffsetFetch, within the budget too, and the outcome is what the broker holds. Only when that
//! read fails as well is the outcome unknown, and said so.

use std::collections::{BTreeMap, BTreeSet};

use tokio_util::sync::CancellationToken;

use super::execution::{self, Policy};
use crate::{
    kafka::{
        groups::{Committed, Partition},
        protocol::GroupAdmin,
    },
    metrics::RetryCause,
};

/// The change of one group.
pub struct GroupChange<'a> {
    /// The group.
    pub group: &'a str,
    /// Partitions whose committed offsets are deleted.
    pub deletes: &'a BTreeSet<Partition>,
    /// Every partition the group may have committed (a broker without OffsetDelete commits back
    /// those outside `deletes`).
    pub known: &'a BTreeSet<Partition>,
    /// Offsets committed, after the deletes.
    pub commits: &'a BTreeMap<Partition, Committed>,
}

/// What the broker holds after [`apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Every partition holds what was asked. `read_back_after`: the request failed with this
    /// error, and reading the offsets back found the change applied (its answer was lost).
    Done {
        /// The error the change was read back after.
        read_back_after: Option<String>,
    },
    /// The change failed and is not (entirely) applied: `holds` is each changed partition's
    /// committed offset as read back (`None`: nothing committed).
    Failed {
        /// The request's error.
        error: String,
        /// What the broker holds.
        holds: BTreeMap<Partition, Option<i64>>,
    },
    /// The change failed in a way it may have been applied, and its offsets could not be read
    /// back.
    Unknown {
        /// The request's error.
        error: String,
        /// Why reading back failed.
        read_error: String,
    },
}

impl Applied {
    /// The change is applied.
    pub fn is_done(&self) -> bool {
        matches!(self, Applied::Done { .. })
    }

    /// What to tell the user when the change is not known to be applied: the error and what the
    /// broker holds, or that this is unknown. `None` when it is applied.
    pub fn failure(&self) -> Option<String> {
        match self {
            Applied::Done { .. } => None,
            Applied::Failed { error, holds } => {
                let held: Vec<String> = holds
                    .iter()
                    .map(|((topic, partition), offset)| match offset {
                        Some(offset) => format!("{topic}-{partition} at {offset}"),
                        None => format!("{topic}-{partition} with none"),
                    })
                    .collect();
                Some(format!(
                    "{error}; read back, the broker holds {}",
                    held.join(", ")
                ))
            }
            Applied::Unknown { error, read_error } => Some(format!(
                "{error}; not known whether the change was applied: reading the offsets back failed: {read_error}"
            )),
        }
    }
}

/// Deletes and commits `change`'s offsets, and says what the broker holds (see the module docs).
pub async fn apply(
    admin: &GroupAdmin,
    policy: &Policy,
    cancel: &CancellationToken,
    change: &GroupChange<'_>,
) -> Applied {
    let group = change.group;
    let sent = execution::request(policy, RetryCause::KafkaUnreachable, cancel, || async {
        admin.delete_offsets(group, change.deletes, change.known).await?;
        admin.commit(group, change.commits).await
    })
    .await;
    let Err(error) = sent else {
        return Applied::Done {
            read_back_after: None,
        };
    };
    let error = error.to_string();
    let changed: BTreeSet<Partition> = change
        .deletes
        .iter()
        .chain(change.commits.keys())
        .cloned()
        .collect();
    let read = execution::request(policy, RetryCause::KafkaUnreachable, cancel, || {
        admin.committed(group, &changed)
    })
    .await;
    match read {
        Ok(read) => {
            let holds: BTreeMap<Partition, Option<i64>> = changed
                .iter()
                .map(|tp| (tp.clone(), read.get(tp).map(|c| c.offset)))
                .collect();
            judge(change.commits, error, holds)
        }
        Err(read_error) => Applied::Unknown {
            error,
            read_error: read_error.to_string(),
        },
    }
}

/// The outcome once the offsets were read back after `error`: done when every partition holds
/// its committed offset (a deleted one: none). Pure.
fn judge(
    commits: &BTreeMap<Partition, Committed>,
    error: String,
    holds: BTreeMap<Partition, Option<i64>>,
) -> Applied {
    let as_asked = holds
        .iter()
        .all(|(tp, held)| *held == commits.get(tp).map(|c| c.offset));
    if as_asked {
        Applied::Done {
            read_back_after: Some(error),
        }
    } else {
        Applied::Failed { error, holds }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tp(p: i32) -> Partition {
        ("orders".to_owned(), p)
    }

    #[test]
    fn read_back_offsets_decide_whether_the_change_is_applied() {
        let commits: BTreeMap<Partition, Committed> = [(
            tp(0),
            Committed {
                offset: 5,
                metadata: String::new(),
            },
        )]
        .into();
        let holds = |a: Option<i64>, b: Option<i64>| -> BTreeMap<Partition, Option<i64>> {
            [(tp(0), a), (tp(1), b)].into()
        };
        // Partition 1 was deleted, partition 0 committed at 5.
        let done = judge(&commits, "connection closed".into(), holds(Some(5), None));
        assert_eq!(
            done,
            Applied::Done {
                read_back_after: Some("connection closed".into())
            }
        );
        assert_eq!(done.failure(), None);
        let partly = judge(&commits, "connection closed".into(), holds(Some(5), Some(9)));
        assert!(!partly.is_done());
        assert_eq!(
            partly.failure().unwrap(),
            "connection closed; read back, the broker holds orders-0 at 5, orders-1 at 9"
        );
        let untouched = judge(&commits, "refused".into(), holds(None, Some(9)));
        assert_eq!(
            untouched.failure().unwrap(),
            "refused; read back, the broker holds orders-0 with none, orders-1 at 9"
        );
        let unknown = Applied::Unknown {
            error: "connection closed".into(),
            read_error: "refused".into(),
        };
        assert_eq!(
            unknown.failure().unwrap(),
            "connection closed; not known whether the change was applied: reading the offsets back failed: refused"
        );
    }
}
