//! Operations as supervised tokio tasks keyed by the object's UID: at most one per object, at most
//! `max_concurrent` holding an operation slot at once, each cancellable with a reason.
//!
//! The reconciler only starts, cancels and looks at tasks; it never awaits one. A task removes
//! itself from the table when it ends (also when it panics: the table entry is dropped by a
//! guard), and the table remembers for a while the last phase each task wrote, so a reconcile
//! that sees an older phase in its cache (the watch lags behind our own writes) waits instead of
//! starting the operation again or mistaking it for one interrupted by a restart.
//!
//! Every task that ends is announced to [`Supervisor::subscribe_finished`] with the object it ran
//! for, so the controller of its kind reconciles that object once more: the next step (the next
//! tick, the TTL, a restart with a new spec) then does not hang on a timer or a watch event that
//! arrived while the task was still registered.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{
    kinds::Kind,
    lifecycle::{CancelReason, TaskView},
};

/// How long a finished task is remembered.
const HISTORY: Duration = Duration::from_secs(30);

/// Ended tasks a slow subscriber may fall behind by before it misses some (it then relies on the
/// requeue timers, as without the announcement).
const FINISHED_BACKLOG: usize = 1024;

/// The object a task runs for, announced when the task ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskOwner {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

struct Entry {
    id: u64,
    generation: Option<i64>,
    cancel: CancellationToken,
    reason: Arc<Mutex<Option<CancelReason>>>,
    done: watch::Receiver<bool>,
}

#[derive(Default)]
struct Table {
    running: HashMap<String, Entry>,
    /// uid -> when its task ended and the last phase it wrote.
    finished: HashMap<String, (Instant, String)>,
}

/// The table of running operations.
pub struct Supervisor {
    table: Arc<Mutex<Table>>,
    permits: Arc<Semaphore>,
    max: usize,
    next_id: AtomicU64,
    finished: broadcast::Sender<TaskOwner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("running", &self.running_count())
            .field("max", &self.max)
            .finish()
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a task gets: its cancellation and the operation slots.
#[derive(Clone)]
pub struct TaskHandle {
    /// Cancelled when the task should stop ([`TaskHandle::cancel_reason`] says why).
    pub cancel: CancellationToken,
    reason: Arc<Mutex<Option<CancelReason>>>,
    written: Arc<Mutex<Option<String>>>,
    permits: Arc<Semaphore>,
    max: usize,
}

impl TaskHandle {
    /// Records the phase the task wrote last (remembered after it ends).
    pub fn record_phase(&self, phase: &str) {
        *self.written.lock().unwrap_or_else(PoisonError::into_inner) = Some(phase.to_owned());
    }

    /// Why the task was cancelled, if it was.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An operation slot at once, if one is free.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Waits for an operation slot; `None` when cancelled first.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            permit = Arc::clone(&self.permits).acquire_owned() => permit.ok(),
            () = self.cancel.cancelled() => None,
        }
    }

    /// The size of the operation slot pool.
    pub fn slots(&self) -> usize {
        self.max
    }
}

/// Removes the entry when the task ends, however it ends.
struct Finish {
    table: Arc<Mutex<Table>>,
    uid: String,
    id: u64,
    written: Arc<Mutex<Option<String>>>,
    done: watch::Sender<bool>,
    owner: TaskOwner,
    finished: broadcast::Sender<TaskOwner>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        if table.running.get(&self.uid).is_some_and(|e| e.id == self.id) {
            table.running.remove(&self.uid);
        }
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(phase) = written {
            table.finished.insert(self.uid.clone(), (Instant::now(), phase));
        }
        drop(table);
        let _ = self.done.send(true);
        // An error only means nobody subscribed (no controller runs, e.g. in tests).
        let _ = self.finished.send(self.owner.clone());
    }
}

impl Supervisor {
    /// A supervisor running at most `max_concurrent` operations at once.
    pub fn new(max_concurrent: usize) -> Self {
        let max = max_concurrent.max(1);
        Supervisor {
            table: Arc::default(),
            permits: Arc::new(Semaphore::new(max)),
            max,
            next_id: AtomicU64::new(1),
            finished: broadcast::channel(FINISHED_BACKLOG).0,
        }
    }

    /// The owners of the tasks that end from now on, in the order they end.
    pub fn subscribe_finished(&self) -> broadcast::Receiver<TaskOwner> {
        self.finished.subscribe()
    }

    /// The task running for `uid`, if any.
    pub fn task(&self, uid: &str) -> Option<TaskView> {
        lock(&self.table).running.get(uid).map(|e| TaskView {
            generation: e.generation,
            cancelling: e.cancel.is_cancelled(),
        })
    }

    /// The phase the task for `uid` wrote last, if it ended in this process within the last 30
    /// seconds.
    pub fn recently_written_phase(&self, uid: &str) -> Option<String> {
        let mut table = lock(&self.table);
        table.finished.retain(|_, (at, _)| at.elapsed() < HISTORY);
        table.finished.get(uid).map(|(_, phase)| phase.clone())
    }

    /// Tasks running (or waiting for a slot).
    pub fn running_count(&self) -> usize {
        lock(&self.table).running.len()
    }

    /// Starts `work` as the task of `uid` (object `owner`, at `generation`), unless one runs
    /// already (`false`).
    pub fn start<F, Fut>(&self, uid: &str, owner: TaskOwner, generation: Option<i64>, work: F) -> bool
    where
        F: FnOnce(TaskHandle) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut table = lock(&self.table);
        if table.running.contains_key(uid) {
            return false;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        let (done_tx, done_rx) = watch::channel(false);
        table.running.insert(
            uid.to_owned(),
            Entry {
                id,
                generation,
                cancel: cancel.clone(),
                reason: Arc::clone(&reason),
                done: done_rx,
            },
        );
        table.finished.remove(uid);
        drop(table);
        let written = Arc::new(Mutex::new(None));
        let handle = TaskHandle {
            cancel,
            reason,
            written: Arc::clone(&written),
            permits: Arc::clone(&self.permits),
            max: self.max,
        };
        let finish = Finish {
            table: Arc::clone(&self.table),
            uid: uid.to_owned(),
            id,
            written,
            done: done_tx,
            owner,
            finished: self.finished.clone(),
        };
        let future = work(handle);
        tokio::spawn(async move {
            let _finish = finish;
            future.await;
        });
        true
    }

    /// Asks the task of `uid` to stop; `true` when one runs (it may take a moment to stop).
    pub fn cancel(&self, uid: &str, reason: CancelReason) -> bool {
        let table = lock(&self.table);
        match table.running.get(uid) {
            Some(entry) => {
                let mut r = entry.reason.lock().unwrap_or_else(PoisonError::into_inner);
                if r.is_none() {
                    *r = Some(reason);
                }
                entry.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Asks every task to stop.
    pub fn cancel_all(&self, reason: CancelReason) {
        let uids: Vec<String> = lock(&self.table).running.keys().cloned().collect();
        for uid in uids {
            self.cancel(&uid, reason);
        }
    }

    /// Waits until the task of `uid` (if any) has ended.
    pub async fn wait(&self, uid: &str) {
        let done = lock(&self.table).running.get(uid).map(|e| e.done.clone());
        if let Some(mut done) = done {
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Waits until every task has ended, at most `limit`; `true` when they all did.
    pub async fn wait_all(&self, limit: Duration) -> bool {
        let waits: Vec<watch::Receiver<bool>> = lock(&self.table)
            .running
            .values()
            .map(|e| e.done.clone())
            .collect();
        let all = futures::future::join_all(waits.into_iter().map(|mut d| async move {
            let _ = d.wait_for(|d| *d).await;
        }));
        tokio::time::timeout(limit, all).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn owner(name: &str) -> TaskOwner {
        TaskOwner {
            kind: Kind::Backup,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn one_task_per_uid_and_a_global_limit() {
        let s = Supervisor::new(1);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let gate = Arc::new(tokio::sync::Mutex::new(Some(rx)));
        let g = Arc::clone(&gate);
        assert!(s.start("a", owner("a"), Some(1), move |h| async move {
            let _slot = h.slot().await;
            h.record_phase("Completed");
            if let Some(rx) = g.lock().await.take() {
                let _ = rx.await;
            }
        }));
        assert!(
            !s.start("a", owner("a"), Some(1), |_| async {}),
            "at most one task per object"
        );
        tokio::task::yield_now().await;
        // The single slot is taken: a second object's task cannot get one.
        let (slot_tx, slot_rx) = tokio::sync::oneshot::channel();
        assert!(s.start("b", owner("b"), Some(1), move |h| async move {
            let _ = slot_tx.send(h.try_slot().is_some());
        }));
        assert!(!slot_rx.await.unwrap());
        tx.send(()).unwrap();
        s.wait("a").await;
        assert!(s.task("a").is_none());
        assert_eq!(s.recently_written_phase("a").as_deref(), Some("Completed"));
        assert_eq!(s.recently_written_phase("b"), None, "b wrote nothing");
        assert_eq!(s.recently_written_phase("c"), None);
    }

    #[tokio::test]
    async fn cancel_tells_the_task_why() {
        let s = Supervisor::new(4);
        let (tx, rx) = tokio::sync::oneshot::channel();
        s.start("a", owner("a"), None, move |h| async move {
            h.cancel.cancelled().await;
            let _ = tx.send(h.cancel_reason());
        });
        assert!(s.cancel("a", CancelReason::Deleted));
        assert!(s.task("a").is_some_and(|t| t.cancelling) || s.task("a").is_none());
        assert_eq!(rx.await.unwrap(), Some(CancelReason::Deleted));
        assert!(s.wait_all(Duration::from_secs(1)).await);
        assert!(!s.cancel("a", CancelReason::Deleted));
    }

    #[tokio::test]
    async fn a_panicking_task_is_removed() {
        let s = Supervisor::new(1);
        s.start("p", owner("p"), None, |_| async {
            #[allow(clippy::panic)]
            if std::hint::black_box(true) {
                panic!("boom");
            }
        });
        s.wait("p").await;
        assert!(s.task("p").is_none());
    }

    #[tokio::test]
    async fn an_ended_task_announces_its_object() {
        let s = Supervisor::new(2);
        let mut finished = s.subscribe_finished();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        s.start("a", owner("nightly"), Some(1), move |_| async move {
            let _ = rx.await;
        });
        tokio::task::yield_now().await;
        assert!(finished.try_recv().is_err(), "nothing is announced while it runs");
        tx.send(()).unwrap();
        assert_eq!(finished.recv().await.unwrap(), owner("nightly"));
        // Also when it panics.
        s.start("p", owner("broken"), None, |_| async {
            #[allow(clippy::panic)]
            if std::hint::black_box(true) {
                panic!("boom");
            }
        });
        assert_eq!(finished.recv().await.unwrap(), owner("broken"));
    }
}
