//! One retry and deadline policy for every operation, the same under the reconciler and `run -f`:
//! an engine runs its work through [`attempts`], which applies the resource's `spec.execution`.
//!
//! - **Attempts.** After an attempt fails, another starts when `execution.retries` allows one more
//!   and the attempt's error says it may pass ([`Retryable::is_retryable`]: the network, a timeout,
//!   a broker or storage service briefly away). An error another attempt would meet again (the spec
//!   or the stored data is wrong, a credential is refused) ends the operation at once, and so does
//!   cancellation (deletion, suspend, shutdown, Ctrl-C).
//! - **Deadline.** `execution.deadlineSeconds` bounds each attempt. At the deadline the attempt's
//!   cancellation token (a child of the operation's) is cancelled and the attempt gets
//!   [`STOP_GRACE`] to stop where running it again is safe (a backup after a final checkpoint, a
//!   restore at the state it stored, a reset before its next group); one that has not stopped by
//!   then is dropped. An attempt stopped at its deadline counts as failed, and is retried unless
//!   it stopped with an error that is not retryable.
//! - **Backoff.** Before attempt n + 1 the wait is `min(5 min, 2 s * 2^(n-1))` times a random factor
//!   in [0.5, 1] ("equal jitter"): 1-2 s, 2-4 s, 4-8 s, 8-16 s, ... and 150-300 s from the ninth
//!   retry on. The floor gives a short outage (a broker restart, a DNS blip) time to pass; the
//!   spread keeps operations that failed together from retrying in step.
//! - **Requests within an attempt.** A request to Kafka or storage that fails for a passing
//!   reason is retried inside the attempt for `execution.retryTimeoutSeconds` (120 s when
//!   absent), waiting [`REQUEST_BACKOFF_INITIAL`] at first and doubling up to
//!   [`REQUEST_BACKOFF_MAX`], with jitter: object_store's `RetryConfig` for S3, Azure and GCS
//!   ([`Policy::storage_retry`]), librdkafka's reconnect backoff and a backup consumer that goes on
//!   polling while the broker is away ([`Policy::configure_kafka`]). Only a failure that outlasts
//!   that budget fails the attempt, which the attempts above then retry or not. A short outage (a
//!   broker restart, a storage service answering 503 for a while) therefore costs no attempt.
//!   The consumer-group offset engines (KafkaOffsetReset, KafkaOffsetRollback) send their
//!   requests (Metadata, FindCoordinator, DescribeGroups, OffsetFetch, ListOffsets,
//!   OffsetCommit, OffsetDelete) through [`request`], the same budget and backoff.
//! - **Reporting.** Every failed attempt is reported to [`Context::attempt_failed`]: the reconciler
//!   writes status `Retrying` (condition Progressing, reason Retrying) and a Warning Event before
//!   each retry; `run -f` prints a line on stderr. Every retry, of a request or of an attempt, is
//!   counted in `kafka_backup_operator_retries_total{cause}` ([`crate::metrics::RetryCause`]).

use std::{fmt, future::Future, sync::Arc, time::Duration};

use ring::rand::{SecureRandom, SystemRandom};
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::{api::v1beta1::ExecutionSpec, metrics::RetryCause};

/// How long an attempt cancelled at its deadline (or an operation cancelled by the reconciler) may
/// take to stop before it is dropped.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// The first backoff, before jitter.
const BACKOFF_BASE: Duration = Duration::from_secs(2);

/// The longest backoff, before jitter.
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// The first wait before a request to Kafka or storage is sent again within an attempt.
pub const REQUEST_BACKOFF_INITIAL: Duration = Duration::from_millis(100);

/// The longest wait between two sends of a request within an attempt.
pub const REQUEST_BACKOFF_MAX: Duration = Duration::from_secs(15);

/// A bound on object_store's count of retries, far above what the time allows at
/// [`REQUEST_BACKOFF_MAX`]: the time is what bounds them.
const REQUEST_RETRIES_MAX: usize = 1000;

/// How long a request is retried within an attempt when `execution.retryTimeoutSeconds` is
/// absent.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(120);

/// An engine error that knows whether another attempt could succeed.
pub trait Retryable: fmt::Display {
    /// Another attempt, after a backoff, may succeed: the cause can pass by itself. `false` when
    /// the same spec would fail the same way again.
    fn is_retryable(&self) -> bool;
}

impl Retryable for crate::kafka::KafkaError {
    fn is_retryable(&self) -> bool {
        crate::kafka::KafkaError::is_retryable(self)
    }
}

impl Retryable for crate::kafka::protocol::ProtocolError {
    fn is_retryable(&self) -> bool {
        crate::kafka::protocol::ProtocolError::is_retryable(self)
    }
}

/// `spec.execution` as the attempts apply it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Attempts after the first (`execution.retries`; 0 when absent).
    pub retries: u32,
    /// How long one attempt may run (`execution.deadlineSeconds`).
    pub deadline: Option<Duration>,
    /// How long a failing request is retried within an attempt
    /// (`execution.retryTimeoutSeconds`).
    pub retry_timeout: Duration,
}

impl Policy {
    /// The policy of an `execution` block. Pure.
    pub fn of(execution: Option<&ExecutionSpec>) -> Policy {
        Policy {
            retries: execution.and_then(|e| e.retries).unwrap_or(0).max(0) as u32,
            deadline: execution
                .and_then(|e| e.deadline_seconds)
                .map(|s| Duration::from_secs(s.max(1) as u64)),
            retry_timeout: execution
                .and_then(|e| e.retry_timeout_seconds)
                .map_or(DEFAULT_RETRY_TIMEOUT, |s| Duration::from_secs(s.max(1) as u64)),
        }
    }

    /// Attempts in all.
    pub fn attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// object_store's retries of one HTTP request (S3, Azure, GCS): for [`Self::retry_timeout`]
    /// from the first send, with the request backoff (its decorrelated jitter); the count is no
    /// limit of its own, so the time is what bounds it. Pure.
    pub fn storage_retry(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: REQUEST_BACKOFF_INITIAL,
                max_backoff: REQUEST_BACKOFF_MAX,
                base: 2.0,
            },
            max_retries: REQUEST_RETRIES_MAX,
            retry_timeout: self.retry_timeout,
        }
    }

    /// librdkafka's reconnect backoff: the request backoff (librdkafka adds ±25% jitter).
    pub fn configure_kafka(&self, config: &mut rdkafka::ClientConfig) {
        config.set(
            "reconnect.backoff.ms",
            REQUEST_BACKOFF_INITIAL.as_millis().to_string(),
        );
        config.set(
            "reconnect.backoff.max.ms",
            REQUEST_BACKOFF_MAX.as_millis().to_string(),
        );
    }
}

/// The wait before the attempt after failed attempt `failed` (1-based), for `jitter` in [0, 1]:
/// `min(BACKOFF_CAP, BACKOFF_BASE * 2^(failed-1))` scaled into [half, all] of it. Pure.
pub fn backoff(failed: u32, jitter: f64) -> Duration {
    let doubled = BACKOFF_BASE.saturating_mul(1u32 << failed.saturating_sub(1).min(16));
    let full = doubled.min(BACKOFF_CAP);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// The wait before a request is sent again within an attempt after failed send `failed`
/// (1-based): [`REQUEST_BACKOFF_INITIAL`] doubling up to [`REQUEST_BACKOFF_MAX`], scaled into
/// [half, all] of it at random, as [`backoff`] does for attempts.
pub fn request_backoff(failed: u32) -> Duration {
    let doubled = REQUEST_BACKOFF_INITIAL.saturating_mul(1u32 << failed.saturating_sub(1).min(16));
    doubled
        .min(REQUEST_BACKOFF_MAX)
        .mul_f64(0.5 + 0.5 * random_jitter())
}

/// Sends a request to Kafka or storage (`send` makes and sends it) again while it fails for a
/// passing reason ([`Retryable::is_retryable`]), for [`Policy::retry_timeout`] from the first
/// send, waiting [`request_backoff`] between sends; each send again is counted under `cause`.
/// Returns the first answer, or the last error once the budget is spent, the error is not one
/// that passes, or `cancel` fires.
pub async fn request<T, E, F, Fut>(
    policy: &Policy,
    cause: RetryCause,
    cancel: &CancellationToken,
    mut send: F,
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut failed = 0;
    loop {
        let error = match send().await {
            Ok(answer) => return Ok(answer),
            Err(e) => e,
        };
        if !error.is_retryable() || started.elapsed() >= policy.retry_timeout || cancel.is_cancelled() {
            return Err(error);
        }
        failed += 1;
        crate::metrics::retries().retry(cause);
        tracing::debug!(%error, failed, "sending the request again");
        tokio::select! {
            () = tokio::time::sleep(request_backoff(failed)) => {}
            () = cancel.cancelled() => return Err(error),
        }
    }
}

/// A uniformly random number in [0, 1] for [`backoff`]; 1 when the system has no randomness.
fn random_jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 1.0,
    }
}

/// One failed attempt, as the hook on [`Context`] hears of it.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptFailed {
    /// The attempt that failed (1-based).
    pub attempt: u32,
    /// Attempts the policy allows in all.
    pub attempts: u32,
    /// Why it failed.
    pub message: String,
    /// It was stopped at `execution.deadlineSeconds`.
    pub deadline_exceeded: bool,
    /// The wait before the next attempt; `None` when none follows.
    pub retry_in: Option<Duration>,
}

impl AttemptFailed {
    /// What to tell the user when another attempt follows: "attempt 1 of 3 failed: ...; the next
    /// attempt starts in 1.4 s".
    pub fn retry_message(&self) -> Option<String> {
        self.retry_in.map(|wait| {
            format!(
                "attempt {} of {} failed: {}; the next attempt starts in {:.1} s",
                self.attempt,
                self.attempts,
                self.message,
                wait.as_secs_f64()
            )
        })
    }

    /// The operation ended with this failure: no attempt follows and it was stopped at its
    /// deadline.
    pub fn ended_at_deadline(&self) -> bool {
        self.retry_in.is_none() && self.deadline_exceeded
    }
}

/// Hears of every failed attempt (the reconciler: status and Event; `run -f`: stderr).
pub type AttemptHook = Arc<dyn Fn(&AttemptFailed) + Send + Sync>;

/// How the last attempt ended.
#[derive(Debug)]
pub enum Stop<E> {
    /// With this error.
    Failed(E),
    /// Cancelled at `execution.deadlineSeconds`, with the error it stopped with, if any.
    Deadline {
        /// The deadline.
        limit: Duration,
        /// The error it returned once cancelled.
        error: Option<E>,
    },
}

/// Why an operation failed after its attempts.
#[derive(Debug)]
pub struct Failure<E> {
    /// How the last attempt ended.
    pub stop: Stop<E>,
    /// Its number (1-based).
    pub attempt: u32,
    /// Attempts the policy allowed.
    pub attempts: u32,
}

impl<E> Failure<E> {
    /// The last attempt was stopped at its deadline.
    pub fn deadline_exceeded(&self) -> bool {
        matches!(self.stop, Stop::Deadline { .. })
    }

    /// The error the last attempt ended with.
    pub fn error(&self) -> Option<&E> {
        match &self.stop {
            Stop::Failed(e) => Some(e),
            Stop::Deadline { error, .. } => error.as_ref(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Stop<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Failed(e) => write!(f, "{e}"),
            Stop::Deadline { limit, error } => {
                write!(
                    f,
                    "execution.deadlineSeconds: the attempt did not finish within {} s",
                    limit.as_secs()
                )?;
                match error {
                    Some(e) => write!(f, ": {e}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl<E: fmt::Display> fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.stop)?;
        if self.attempts > 1 {
            write!(f, " (attempt {} of {})", self.attempt, self.attempts)?;
        }
        Ok(())
    }
}

/// Runs `attempt` under `execution` (see the module docs). Each call gets a [`Context`] whose
/// cancellation token is the attempt's own. Returns the first success, or how the last attempt
/// failed; once the operation is cancelled, the attempt's result as it is.
pub async fn attempts<T, E, F, Fut>(
    execution: Option<&ExecutionSpec>,
    ctx: &Context,
    mut attempt: F,
) -> Result<T, Failure<E>>
where
    E: Retryable,
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let policy = Policy::of(execution);
    let total = policy.attempts();
    let mut number = 1;
    loop {
        let attempt_ctx = Context {
            cancel: ctx.cancel.child_token(),
            ..ctx.clone()
        };
        let attempt_cancel = attempt_ctx.cancel.clone();
        let stop = match bounded(policy.deadline, &attempt_cancel, attempt(attempt_ctx)).await {
            Ended::Returned(Ok(value)) => return Ok(value),
            Ended::Returned(Err(e)) => Stop::Failed(e),
            // Cancelled from outside while the deadline passed: the caller's cancellation wins.
            Ended::Stopped {
                result: Some(Ok(value)),
                ..
            } if ctx.cancel.is_cancelled() => return Ok(value),
            Ended::Stopped { limit, result } => Stop::Deadline {
                limit,
                error: result.and_then(Result::err),
            },
        };
        let retryable = match &stop {
            Stop::Failed(e) => e.is_retryable(),
            Stop::Deadline { error, .. } => error.as_ref().is_none_or(Retryable::is_retryable),
        };
        let retry_in = (retryable && number < total && !ctx.cancel.is_cancelled())
            .then(|| backoff(number, random_jitter()));
        if retry_in.is_some() {
            crate::metrics::retries().retry(match stop {
                Stop::Deadline { .. } => RetryCause::AttemptDeadline,
                Stop::Failed(_) => RetryCause::AttemptFailed,
            });
        }
        (ctx.attempt_failed)(&AttemptFailed {
            attempt: number,
            attempts: total,
            message: stop.to_string(),
            deadline_exceeded: matches!(stop, Stop::Deadline { .. }),
            retry_in,
        });
        let failure = Failure {
            stop,
            attempt: number,
            attempts: total,
        };
        let Some(wait) = retry_in else {
            return Err(failure);
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.cancel.cancelled() => return Err(failure),
        }
        number += 1;
    }
}

/// How one attempt ended.
enum Ended<R> {
    /// Within its deadline.
    Returned(R),
    /// Cancelled at its deadline; its result once stopped (`None`: dropped after the grace).
    Stopped {
        /// The deadline.
        limit: Duration,
        /// What it returned.
        result: Option<R>,
    },
}

/// Runs one attempt; at `deadline` cancels it and waits up to [`STOP_GRACE`] for it to stop.
async fn bounded<R>(
    deadline: Option<Duration>,
    cancel: &CancellationToken,
    work: impl Future<Output = R>,
) -> Ended<R> {
    let mut work = std::pin::pin!(work);
    let Some(limit) = deadline else {
        return Ended::Returned(work.await);
    };
    tokio::select! {
        result = &mut work => return Ended::Returned(result),
        () = tokio::time::sleep(limit) => {}
    }
    cancel.cancel();
    Ended::Stopped {
        limit,
        result: tokio::time::timeout(STOP_GRACE, work).await.ok(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::Mutex;

    use super::*;
    use crate::{ops::ResourceRef, secrets::SecretStore, storage::StorageEnv};

    #[derive(Debug)]
    struct TestError {
        retryable: bool,
        n: u32,
    }

    impl fmt::Display for TestError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "failure {}", self.n)
        }
    }

    impl Retryable for TestError {
        fn is_retryable(&self) -> bool {
            self.retryable
        }
    }

    fn execution(retries: i32, deadline: Option<i64>) -> ExecutionSpec {
        ExecutionSpec {
            retries: Some(retries),
            deadline_seconds: deadline,
            retry_timeout_seconds: None,
            ttl_seconds_after_finished: None,
        }
    }

    /// A context whose hook records every failed attempt.
    fn context() -> (Context, Arc<Mutex<Vec<AttemptFailed>>>) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let mut ctx = Context::new(
            ResourceRef::default(),
            SecretStore::default(),
            StorageEnv::default(),
        );
        let sink = heard.clone();
        ctx.attempt_failed = Arc::new(move |a: &AttemptFailed| sink.lock().unwrap().push(a.clone()));
        (ctx, heard)
    }

    #[test]
    fn the_policy_reads_retries_and_deadline() {
        assert_eq!(
            Policy::of(None),
            Policy {
                retries: 0,
                deadline: None,
                retry_timeout: DEFAULT_RETRY_TIMEOUT,
            }
        );
        let budget = Policy::of(Some(&ExecutionSpec {
            retry_timeout_seconds: Some(7),
            ..Default::default()
        }));
        assert_eq!(budget.retry_timeout, Duration::from_secs(7));
        let storage = budget.storage_retry();
        assert_eq!(storage.retry_timeout, Duration::from_secs(7));
        assert_eq!(storage.backoff.init_backoff, REQUEST_BACKOFF_INITIAL);
        assert_eq!(storage.backoff.max_backoff, REQUEST_BACKOFF_MAX);
        let mut kafka = rdkafka::ClientConfig::new();
        budget.configure_kafka(&mut kafka);
        assert_eq!(kafka.get("reconnect.backoff.ms"), Some("100"));
        assert_eq!(kafka.get("reconnect.backoff.max.ms"), Some("15000"));
        let p = Policy::of(Some(&execution(3, Some(20))));
        assert_eq!(
            (p.retries, p.deadline, p.attempts()),
            (3, Some(Duration::from_secs(20)), 4)
        );
        assert_eq!(Policy::of(Some(&execution(-1, Some(0)))).retries, 0);
        assert_eq!(
            Policy::of(Some(&execution(0, Some(0)))).deadline,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn the_backoff_doubles_from_two_seconds_to_five_minutes_with_equal_jitter() {
        let full: Vec<u64> = (1..=10).map(|n| backoff(n, 1.0).as_secs()).collect();
        assert_eq!(full, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        let least: Vec<u64> = (1..=10).map(|n| backoff(n, 0.0).as_millis() as u64).collect();
        assert_eq!(
            least,
            [
                1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 150000, 150000
            ]
        );
        assert_eq!(backoff(1, 0.5), Duration::from_millis(1500));
        assert_eq!(backoff(u32::MAX, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(0, 1.0), Duration::from_secs(2));
        for (failed, most) in [(1, 100), (2, 200), (5, 1600), (9, 15000), (40, 15000)] {
            let wait = request_backoff(failed).as_millis() as u64;
            assert!((most / 2..=most).contains(&wait), "{failed}: {wait} ms");
        }
        for _ in 0..100 {
            let j = random_jitter();
            assert!((0.0..=1.0).contains(&j), "{j}");
        }
    }

    /// An attempt that fails with error `n` (its call number).
    fn failing(retryable: bool, n: u32) -> impl Future<Output = Result<(), TestError>> {
        std::future::ready(Err(TestError { retryable, n }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_retryable_failure_is_retried_as_often_as_allowed_then_the_last_error_is_returned() {
        let (ctx, heard) = context();
        let mut calls = 0;
        let result = attempts(Some(&execution(2, None)), &ctx, |_| {
            calls += 1;
            failing(true, calls)
        })
        .await;
        let failure = result.unwrap_err();
        assert_eq!(calls, 3);
        assert_eq!(failure.to_string(), "failure 3 (attempt 3 of 3)");
        assert_eq!(failure.error().unwrap().n, 3);
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 3);
        assert_eq!(heard[0].message, "failure 1");
        let said = heard[0].retry_message().unwrap();
        assert!(
            said.starts_with("attempt 1 of 3 failed: failure 1; the next attempt starts in 1."),
            "{said}"
        );
        assert_eq!(heard[2].retry_message(), None);
        assert_eq!((heard[0].attempt, heard[0].attempts), (1, 3));
        let waits: Vec<bool> = heard.iter().map(|a| a.retry_in.is_some()).collect();
        assert_eq!(waits, [true, true, false]);
        let first = heard[0].retry_in.unwrap();
        assert!(
            first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
            "{first:?}"
        );
        let second = heard[1].retry_in.unwrap();
        assert!(
            second >= Duration::from_secs(2) && second <= Duration::from_secs(4),
            "{second:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn every_retried_attempt_is_counted_by_its_cause() {
        let (ctx, _) = context();
        let retries = crate::metrics::retries();
        let before = retries.count(RetryCause::AttemptFailed);
        let _ = attempts(Some(&execution(2, None)), &ctx, |_| failing(true, 1)).await;
        // Other tests count into the same process-wide family at the same time.
        assert!(retries.count(RetryCause::AttemptFailed) >= before + 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_is_sent_again_within_the_budget_then_its_last_error_is_returned() {
        let policy = Policy::of(Some(&ExecutionSpec {
            retry_timeout_seconds: Some(3),
            ..Default::default()
        }));
        let cancel = CancellationToken::new();
        let before = crate::metrics::retries().count(RetryCause::KafkaUnreachable);
        let started = tokio::time::Instant::now();
        let mut sends = 0;
        let result: Result<(), TestError> = request(&policy, RetryCause::KafkaUnreachable, &cancel, || {
            sends += 1;
            failing(true, sends)
        })
        .await;
        let spent = started.elapsed();
        assert_eq!(result.unwrap_err().n, sends);
        // 50-100 ms doubling up to 15 s: at least 5 sends fit into 3 s, and the last wait ends
        // within one backoff of the budget.
        assert!(sends >= 5, "{sends} sends");
        assert!(
            spent >= Duration::from_secs(3) && spent < Duration::from_secs(3) + REQUEST_BACKOFF_MAX,
            "{spent:?}"
        );
        // Other tests count into the same process-wide family at the same time.
        assert!(
            crate::metrics::retries().count(RetryCause::KafkaUnreachable) >= before + u64::from(sends - 1)
        );

        let mut sends = 0;
        let answer = request(&policy, RetryCause::KafkaUnreachable, &cancel, || {
            sends += 1;
            let n = sends;
            async move {
                if n < 3 {
                    Err(TestError { retryable: true, n })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(answer.unwrap(), 3);

        let mut sends = 0;
        let refused: Result<(), TestError> = request(&policy, RetryCause::KafkaUnreachable, &cancel, || {
            sends += 1;
            failing(false, sends)
        })
        .await;
        assert_eq!((refused.unwrap_err().n, sends), (1, 1), "not sent again");

        cancel.cancel();
        let mut sends = 0;
        let cancelled: Result<(), TestError> =
            request(&policy, RetryCause::KafkaUnreachable, &cancel, || {
                sends += 1;
                failing(true, sends)
            })
            .await;
        assert_eq!(
            (cancelled.unwrap_err().n, sends),
            (1, 1),
            "cancelled: not sent again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_after_a_failure_ends_the_attempts() {
        let (ctx, heard) = context();
        let mut calls = 0;
        let result = attempts(Some(&execution(5, None)), &ctx, |_| {
            calls += 1;
            let n = calls;
            async move {
                if n < 2 {
                    Err(TestError { retryable: true, n })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(heard.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_retryable_failure_stops_at_once() {
        let (ctx, heard) = context();
        let mut calls = 0;
        let result = attempts(Some(&execution(5, None)), &ctx, |_| {
            calls += 1;
            failing(false, calls)
        })
        .await;
        assert_eq!(calls, 1);
        assert_eq!(result.unwrap_err().to_string(), "failure 1 (attempt 1 of 6)");
        assert_eq!(heard.lock().unwrap()[0].retry_in, None);
    }

    #[tokio::test(start_paused = true)]
    async fn without_retries_the_error_is_returned_as_it_is() {
        let (ctx, _) = context();
        let result = attempts(None, &ctx, |_| failing(true, 1)).await;
        assert_eq!(result.unwrap_err().to_string(), "failure 1");
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cancels_an_attempt_which_counts_as_failed_and_is_retried() {
        let (ctx, heard) = context();
        let mut calls = 0;
        let result: Result<(), Failure<TestError>> =
            attempts(Some(&execution(1, Some(5))), &ctx, |attempt| {
                calls += 1;
                // Works until cancelled, then stops at a safe point.
                async move {
                    attempt.cancel.cancelled().await;
                    Ok(())
                }
            })
            .await;
        let failure = result.unwrap_err();
        assert_eq!(calls, 2);
        assert!(failure.deadline_exceeded());
        assert_eq!(
            failure.to_string(),
            "execution.deadlineSeconds: the attempt did not finish within 5 s (attempt 2 of 2)"
        );
        let heard = heard.lock().unwrap();
        assert!(heard.iter().all(|a| a.deadline_exceeded));
        assert!(!heard[0].ended_at_deadline() && heard[1].ended_at_deadline());
        assert!(!ctx.cancel.is_cancelled(), "only the attempt is cancelled");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_ignores_its_deadline_is_dropped_after_the_grace() {
        let (ctx, _) = context();
        let result: Result<(), Failure<TestError>> =
            attempts(Some(&execution(0, Some(1))), &ctx, |_| async {
                std::future::pending::<()>().await;
                Ok(())
            })
            .await;
        assert!(result.unwrap_err().deadline_exceeded());
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_after_the_deadline_that_is_not_retryable_stops_the_attempts() {
        let (ctx, _) = context();
        let mut calls = 0;
        let result: Result<(), _> = attempts(Some(&execution(3, Some(1))), &ctx, |attempt| {
            calls += 1;
            let n = calls;
            async move {
                attempt.cancel.cancelled().await;
                Err(TestError { retryable: false, n })
            }
        })
        .await;
        assert_eq!(calls, 1);
        assert_eq!(
            result.unwrap_err().to_string(),
            "execution.deadlineSeconds: the attempt did not finish within 1 s: failure 1 (attempt 1 of 4)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_the_attempts() {
        let (ctx, heard) = context();
        let mut calls = 0;
        let outer = ctx.cancel.clone();
        let result = attempts(Some(&execution(3, None)), &ctx, |_| {
            calls += 1;
            outer.cancel();
            failing(true, calls)
        })
        .await;
        assert_eq!(calls, 1);
        assert!(result.is_err());
        assert_eq!(heard.lock().unwrap()[0].retry_in, None);
    }
}
