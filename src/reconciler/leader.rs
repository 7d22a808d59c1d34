//! Leader election on a `coordination.k8s.io/v1` Lease, written with resourceVersion
//! preconditions (create, or update with the version read), so two replicas can never both
//! believe they hold it. Only the reconciler is gated by it: every replica serves the webhooks and
//! the aggregated API.
//!
//! - The holder renews every `duration / 7` and stops leading (cancelling its operations without
//!   writing their status) when it could not renew for `2/3 duration`: before anyone else may
//!   take over.
//! - Another replica takes over a Lease whose `renewTime + leaseDurationSeconds` has passed, or
//!   which it has seen unchanged for longer than `leaseDurationSeconds` by its own clock (robust
//!   to clock skew), or which has no holder (released).
//! - On shutdown the holder releases the Lease (no holder, duration 1 s), so a successor starts
//!   at once.
//!
//! RBAC: `get`, `create`, `update` on `leases` in the Lease's namespace.

use std::{future::Future, sync::Arc, time::Duration};

use k8s_openapi::{
    api::coordination::v1::Lease,
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Error;
use crate::metrics::Metrics;

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseStep {
    /// It does not exist: create it, holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// It is free (expired or released): take it over.
    Acquire,
    /// Someone else holds it.
    Held {
        /// The holder.
        holder: String,
    },
}

/// The step for `lease` as read at `now` by `me`; `unchanged_for`: how long (our clock) we have
/// seen this exact Lease record. Pure.
pub fn lease_step(lease: Option<&Lease>, me: &str, now: Timestamp, unchanged_for: Duration) -> LeaseStep {
    let Some(lease) = lease else {
        return LeaseStep::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == me {
        return LeaseStep::Renew;
    }
    if holder.is_empty() {
        return LeaseStep::Acquire;
    }
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    let expired_by_wall_clock = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .is_none_or(|t| {
            t.0.checked_add(SignedDuration::from_secs(duration.as_secs() as i64))
                .is_ok_and(|end| end < now)
        });
    if expired_by_wall_clock || unchanged_for > duration {
        LeaseStep::Acquire
    } else {
        LeaseStep::Held { holder }
    }
}

/// The Lease after `step` by `me` at `now` (for Create, Renew and Acquire). Pure.
pub fn next_lease(
    current: Option<&Lease>,
    step: &LeaseStep,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> Lease {
    let mut lease = current.cloned().unwrap_or_default();
    let mut spec = lease.spec.clone().unwrap_or_default();
    let seconds = duration.as_secs().clamp(1, i32::MAX as u64) as i32;
    match step {
        LeaseStep::Renew => {
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(seconds);
        }
        LeaseStep::Create | LeaseStep::Acquire => {
            spec.lease_transitions = Some(match step {
                LeaseStep::Create => 0,
                _ => spec.lease_transitions.unwrap_or(0) + 1,
            });
            spec.holder_identity = Some(me.to_owned());
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(seconds);
        }
        LeaseStep::Held { .. } => {}
    }
    lease.spec = Some(spec);
    lease
}

/// Competes for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    observed: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl LeaderElector {
    /// An elector for Lease `namespace/name` as `identity`, with `duration` validity.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration: duration.max(Duration::from_secs(1)),
            observed: tokio::sync::Mutex::new(None),
        }
    }

    /// Our identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Renewal interval.
    pub fn retry_period(&self) -> Duration {
        self.duration / 7
    }

    /// How long the holder keeps leading without a successful renewal.
    pub fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    fn lease_error(&self, what: &str, e: kube::Error) -> Error {
        Error::Lease(format!(
            "failed to {what} Lease {}/{}: {e}",
            self.namespace, self.name
        ))
    }

    /// One round: read the Lease, and create, take over or renew it when we may. `Ok(true)` when
    /// we hold it afterwards; `Ok(false)` when someone else does or another replica won a race.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.lease_error("read", e))?;
        let unchanged_for = {
            let mut observed = self.observed.lock().await;
            let key = current
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone())
                .unwrap_or_default();
            match observed.as_ref() {
                Some((k, since)) if *k == key => since.elapsed(),
                _ => {
                    *observed = Some((key, Instant::now()));
                    Duration::ZERO
                }
            }
        };
        let now = Timestamp::now();
        let step = lease_step(current.as_ref(), &self.identity, now, unchanged_for);
        let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 409);
        match &step {
            LeaseStep::Held { .. } => Ok(false),
            LeaseStep::Create => {
                let mut lease = next_lease(None, &step, &self.identity, now, self.duration);
                lease.metadata = ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..Default::default()
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if conflict(&e) => Ok(false),
                    Err(e) => Err(self.lease_error("create", e)),
                }
            }
            LeaseStep::Renew | LeaseStep::Acquire => {
                // `replace` sends the resourceVersion read: a concurrent writer makes it fail
                // with 409 Conflict instead of both succeeding.
                let lease = next_lease(current.as_ref(), &step, &self.identity, now, self.duration);
                match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if conflict(&e) => Ok(false),
                    Err(e) => Err(self.lease_error("update", e)),
                }
            }
        }
    }

    /// Gives the Lease up if we hold it (on shutdown).
    pub async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.lease_error("read", e))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(drop)
            .map_err(|e| self.lease_error("release", e))
    }

    /// Campaigns until `shutdown`; while leading, runs `lead(leading)` where `leading` is
    /// cancelled when the Lease is lost or on shutdown. Returns after shutdown, having released the
    /// Lease.
    pub async fn run<F, Fut>(
        self,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
        lead: F,
    ) -> Result<(), Error>
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        () = tokio::time::sleep(self.retry_period()) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "leader election");
                    tokio::select! {
                        () = tokio::time::sleep(self.retry_period()) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                    continue;
                }
            }
            info!(identity = %self.identity, "became the leader: starting the reconciler");
            metrics.operator.set_leader(true);
            let leading = shutdown.child_token();
            let renew = async {
                let mut last_ok = Instant::now();
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(self.retry_period()) => {}
                        () = leading.cancelled() => return,
                    }
                    match self.try_acquire_or_renew().await {
                        Ok(true) => last_ok = Instant::now(),
                        Ok(false) => {
                            warn!("the Lease is held by another replica: stopping the reconciler");
                            break;
                        }
                        Err(e) if last_ok.elapsed() < self.renew_deadline() => {
                            warn!(error = %e, "Lease renewal failed; retrying");
                        }
                        Err(e) => {
                            warn!(error = %e, "Lease not renewed within the renew deadline: stopping the reconciler");
                            break;
                        }
                    }
                }
                leading.cancel();
            };
            tokio::join!(lead(leading.clone()), renew);
            metrics.operator.set_leader(false);
            if shutdown.is_cancelled() {
                if let Err(e) = self.release().await {
                    warn!(error = %e, "could not release the Lease");
                }
                info!("leader election: released the Lease");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    use super::*;

    fn lease(holder: Option<&str>, renewed: Timestamp, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("l".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: Some(MicroTime(renewed)),
                acquire_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(duration),
                lease_transitions: Some(3),
                ..Default::default()
            }),
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn steps() {
        assert_eq!(lease_step(None, "a", t(0), Duration::ZERO), LeaseStep::Create);
        let held = lease(Some("b"), t(0), 15);
        assert_eq!(
            lease_step(Some(&held), "a", t(10), Duration::from_secs(10)),
            LeaseStep::Held { holder: "b".into() }
        );
        assert_eq!(
            lease_step(Some(&held), "b", t(10), Duration::ZERO),
            LeaseStep::Renew
        );
        // Expired by the wall clock, or unchanged for longer than its duration by ours.
        assert_eq!(
            lease_step(Some(&held), "a", t(16), Duration::ZERO),
            LeaseStep::Acquire
        );
        assert_eq!(
            lease_step(Some(&held), "a", t(1), Duration::from_secs(16)),
            LeaseStep::Acquire
        );
        let released = lease(None, t(0), 1);
        assert_eq!(
            lease_step(Some(&released), "a", t(0), Duration::ZERO),
            LeaseStep::Acquire
        );
    }

    #[test]
    fn acquiring_counts_transitions_and_keeps_the_version() {
        let held = lease(Some("b"), t(0), 15);
        let next = next_lease(
            Some(&held),
            &LeaseStep::Acquire,
            "a",
            t(20),
            Duration::from_secs(15),
        );
        let spec = next.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.renew_time, Some(MicroTime(t(20))));
        assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
        let renewed = next_lease(Some(&held), &LeaseStep::Renew, "b", t(5), Duration::from_secs(15));
        assert_eq!(renewed.spec.unwrap().lease_transitions, Some(3));
    }
}
