//! Manual approval of a reset's plan, in one place for the reconciler and `run -f`: whether an
//! operation whose plan was just computed runs now or waits for a human ([`decide`]), the hash an
//! approval names ([`plan_hash`]), and the `Approved` condition of each verdict. Pure.
//!
//! The plan is computed afresh every time, right before anything would change: an approval
//! names a hash, so it only ever applies to the plan it was given for. If the cluster moved
//! since (offsets committed, log truncated, a group no longer Empty, new partitions), the fresh
//! plan hashes differently and the operation asks again with the new plan.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::time;
use crate::api::v1beta1::{Approval, OffsetResetPlan};

/// The annotation that approves a plan: its value is the `status.planHash` approved.
pub const APPROVE_ANNOTATION: &str = "kafka.oso.sh/approve";

/// The annotation that asks for the plan to be computed again (value `"true"`); the operator
/// removes it once it has done so.
pub const REFRESH_PLAN_ANNOTATION: &str = "kafka.oso.sh/refresh-plan";

/// Condition type: the plan in status was approved (Manual approval only).
pub const APPROVED: &str = "Approved";

/// `Approved` reason: the approval names the plan shown, but the fresh plan differs.
const PLAN_CHANGED: &str = "PlanChanged";
/// `Approved` reason: the approval names no plan shown.
const WRONG_HASH: &str = "WrongHash";

/// An `Approved` condition with this reason reports a refused approval.
pub fn is_refusal(reason: &str) -> bool {
    [PLAN_CHANGED, WRONG_HASH].contains(&reason)
}

/// SHA-256 (lowercase hex) of the plan's JSON. The JSON is canonical: the plan's types serialize
/// their fields in a fixed order, groups in spec order and partitions sorted.
pub fn plan_hash(plan: &OffsetResetPlan) -> String {
    // Serializing these plain structs cannot fail; an empty input would still hash.
    let bytes = serde_json::to_vec(plan).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `spec.approval`.
    pub approval: Approval,
    /// The hash of the plan just computed.
    pub fresh_hash: &'a str,
    /// `status.planHash`: the plan shown for approval before.
    pub shown_hash: Option<&'a str>,
    /// The `kafka.oso.sh/approve` annotation.
    pub approve: Option<&'a str>,
    /// `kafka.oso.sh/refresh-plan: "true"` is set.
    pub refresh: bool,
}

impl<'a> Request<'a> {
    /// The request of an object with these annotations and shown plan hash.
    pub fn of(
        approval: Approval,
        fresh_hash: &'a str,
        shown_hash: Option<&'a str>,
        annotations: Option<&'a BTreeMap<String, String>>,
    ) -> Self {
        let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
        Request {
            approval,
            fresh_hash,
            shown_hash,
            approve: get(APPROVE_ANNOTATION),
            refresh: get(REFRESH_PLAN_ANNOTATION) == Some("true"),
        }
    }
}

/// Whether the operation runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Run the plan just computed (Automatic, or Manual with its hash approved).
    Execute {
        /// It was approved by hand (the `Approved` condition turns True).
        approved: bool,
    },
    /// Change nothing: write the plan and its hash, phase PendingApproval.
    Wait(Wait),
}

/// Why a Manual operation waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// No approval yet.
    AwaitingApproval,
    /// `kafka.oso.sh/refresh-plan` asked for a new plan.
    Refreshed,
    /// The approval names the plan shown before, but the cluster moved since: the fresh plan
    /// differs.
    PlanChanged {
        /// The hash approved.
        approved: String,
    },
    /// The approval names a hash that is neither the plan shown nor the fresh one.
    WrongHash {
        /// The hash given.
        given: String,
    },
}

impl Wait {
    /// The reason of the `Approved` condition (False).
    pub fn reason(&self) -> &'static str {
        match self {
            Wait::AwaitingApproval => "AwaitingApproval",
            Wait::Refreshed => "PlanRefreshed",
            Wait::PlanChanged { .. } => PLAN_CHANGED,
            Wait::WrongHash { .. } => WRONG_HASH,
        }
    }

    /// The approval was refused (an Event of type Warning).
    pub fn refused(&self) -> bool {
        is_refusal(self.reason())
    }

    /// What happened and what to do, naming the hash to approve.
    pub fn message(&self, fresh_hash: &str) -> String {
        let approve = format!("approve it with the annotation {APPROVE_ANNOTATION}={fresh_hash}");
        match self {
            Wait::AwaitingApproval => format!("the plan in status.plan waits for approval: {approve}"),
            Wait::Refreshed => format!("the plan was computed again on request: {approve}"),
            Wait::PlanChanged { approved } => format!(
                "approval of plan {approved} refused: the cluster changed since that plan was made (offsets committed, log truncated, group membership or partitions), so nothing was changed; the new plan is in status.plan: {approve}"
            ),
            Wait::WrongHash { given } => format!(
                "approval refused: {APPROVE_ANNOTATION}={given} does not name the plan in status.plan, so nothing was changed: {approve}"
            ),
        }
    }
}

/// Whether an operation with this request runs now. Pure.
pub fn decide(r: &Request<'_>) -> Verdict {
    if r.approval == Approval::Automatic {
        return Verdict::Execute { approved: false };
    }
    if r.refresh {
        return Verdict::Wait(Wait::Refreshed);
    }
    match r.approve {
        None => Verdict::Wait(Wait::AwaitingApproval),
        Some(given) if given == r.fresh_hash => Verdict::Execute { approved: true },
        Some(given) if Some(given) == r.shown_hash => Verdict::Wait(Wait::PlanChanged {
            approved: given.to_owned(),
        }),
        Some(given) => Verdict::Wait(Wait::WrongHash {
            given: given.to_owned(),
        }),
    }
}

/// The `Approved` condition of a verdict of a Manual operation (`None` for Automatic).
pub fn approved_condition(
    verdict: &Verdict,
    fresh_hash: &str,
    generation: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Condition> {
    let (status, reason, message) = match verdict {
        Verdict::Execute { approved: false } => return None,
        Verdict::Execute { approved: true } => (
            "True",
            "Approved",
            format!("plan {fresh_hash} was approved and is carried out"),
        ),
        Verdict::Wait(wait) => ("False", wait.reason(), wait.message(fresh_hash)),
    };
    Some(Condition {
        type_: APPROVED.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: time(now),
    })
}

/// A reconcile of an object in phase PendingApproval has something to judge: an approval that
/// was not refused before, or a refresh request. `refused` is `status.refusedApproval`. Pure.
pub fn asks_for_a_run(annotations: Option<&BTreeMap<String, String>>, refused: Option<&str>) -> bool {
    let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    get(REFRESH_PLAN_ANNOTATION) == Some("true")
        || get(APPROVE_ANNOTATION).is_some_and(|given| Some(given) != refused)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::api::v1beta1::{GroupPlan, PartitionResetResult};

    fn request<'a>(approve: Option<&'a str>, shown: Option<&'a str>, refresh: bool) -> Request<'a> {
        Request {
            approval: Approval::Manual,
            fresh_hash: "fresh",
            shown_hash: shown,
            approve,
            refresh,
        }
    }

    #[test]
    fn automatic_executes_whatever_the_annotations_say() {
        let mut r = request(Some("other"), Some("old"), true);
        r.approval = Approval::Automatic;
        assert_eq!(decide(&r), Verdict::Execute { approved: false });
        assert_eq!(
            approved_condition(&decide(&r), "fresh", None, chrono::Utc::now()),
            None
        );
    }

    #[test]
    fn manual_without_approval_waits() {
        let verdict = decide(&request(None, None, false));
        assert_eq!(verdict, Verdict::Wait(Wait::AwaitingApproval));
        let c = approved_condition(&verdict, "fresh", Some(3), chrono::Utc::now()).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "AwaitingApproval")
        );
        assert!(c.message.contains("kafka.oso.sh/approve=fresh"), "{}", c.message);
        assert_eq!(c.observed_generation, Some(3));
    }

    #[test]
    fn the_fresh_hash_approved_executes() {
        let verdict = decide(&request(Some("fresh"), Some("fresh"), false));
        assert_eq!(verdict, Verdict::Execute { approved: true });
        let c = approved_condition(&verdict, "fresh", None, chrono::Utc::now()).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Approved"));
    }

    #[test]
    fn the_shown_plan_approved_after_the_cluster_moved_is_refused() {
        let verdict = decide(&request(Some("old"), Some("old"), false));
        let Verdict::Wait(wait) = &verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(
            wait,
            &Wait::PlanChanged {
                approved: "old".into()
            }
        );
        assert!(wait.refused());
        let message = wait.message("fresh");
        assert!(
            message.contains("plan old refused: the cluster changed"),
            "{message}"
        );
        assert!(message.contains("kafka.oso.sh/approve=fresh"), "{message}");
    }

    #[test]
    fn a_hash_of_no_plan_is_refused() {
        let verdict = decide(&request(Some("typo"), Some("old"), false));
        let Verdict::Wait(wait) = &verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(wait, &Wait::WrongHash { given: "typo".into() });
        assert!(wait.refused());
        assert!(wait.message("fresh").contains("=typo does not name the plan"));
    }

    #[test]
    fn a_refresh_replans_even_with_a_matching_approval() {
        let verdict = decide(&request(Some("fresh"), Some("fresh"), true));
        assert_eq!(verdict, Verdict::Wait(Wait::Refreshed));
        assert!(!Wait::Refreshed.refused());
    }

    #[test]
    fn request_reads_the_annotations() {
        let annotations: BTreeMap<String, String> = [
            (APPROVE_ANNOTATION.to_owned(), "h".to_owned()),
            (REFRESH_PLAN_ANNOTATION.to_owned(), "yes".to_owned()),
        ]
        .into();
        let r = Request::of(Approval::Manual, "h", None, Some(&annotations));
        assert_eq!(
            (r.approve, r.refresh),
            (Some("h"), false),
            "only \"true\" refreshes"
        );
        assert_eq!(decide(&r), Verdict::Execute { approved: true });
    }

    #[test]
    fn a_run_is_asked_for_by_a_new_approval_or_a_refresh() {
        let with = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(!asks_for_a_run(None, None));
        assert!(asks_for_a_run(Some(&with(&[(APPROVE_ANNOTATION, "h")])), None));
        assert!(!asks_for_a_run(
            Some(&with(&[(APPROVE_ANNOTATION, "h")])),
            Some("h")
        ));
        assert!(asks_for_a_run(
            Some(&with(&[(APPROVE_ANNOTATION, "h2")])),
            Some("h")
        ));
        assert!(asks_for_a_run(
            Some(&with(&[(REFRESH_PLAN_ANNOTATION, "true")])),
            Some("h")
        ));
    }

    #[test]
    fn the_hash_is_stable_and_covers_every_figure() {
        let plan = |target: i64| OffsetResetPlan {
            groups: vec![GroupPlan {
                group: "g".into(),
                error: None,
                partitions_total: 1,
                partitions: vec![PartitionResetResult {
                    topic: "t".into(),
                    partition: 0,
                    previous_offset: Some(8),
                    new_offset: Some(target),
                    clamped: None,
                }],
            }],
        };
        let hash = plan_hash(&plan(0));
        assert_eq!(hash.len(), 64);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(hash, plan_hash(&plan(0)));
        assert_ne!(hash, plan_hash(&plan(1)));
    }
}
