//! Who may approve a plan: a CREATE or UPDATE that adds or changes the annotation
//! `kafka.oso.sh/approve` of a KafkaOffsetReset is admitted only if the requesting user may
//! `update` the virtual subresource `kafkaoffsetresets/approve` of that resource, asked of the
//! API server with a SubjectAccessReview (the user, groups, uid and extra of the review's
//! `userInfo`). So the one who writes the reset and the one who approves it can be different
//! people: the editor ClusterRole does not grant `kafkaoffsetresets/approve`, the approver
//! ClusterRole does (`crds/rbac-approver.yaml`).
//!
//! This is the one check of the webhooks that asks the API server; it needs a client
//! ([`crate::reconciler::connect`]). Without one (no Kubernetes API configured), approvals are
//! refused, saying why: admitting them unchecked would let anyone who may edit the resource
//! approve.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    authentication::v1::UserInfo,
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Client, api::PostParams};
use serde_json::Value;

use crate::{api::GROUP, ops::approval::APPROVE_ANNOTATION};

/// The resource whose approval is checked.
const RESOURCE: &str = "kafkaoffsetresets";
/// The virtual subresource that stands for approving.
pub const SUBRESOURCE: &str = "approve";

/// An approval to check: who, of which resource, which hash.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalAsk {
    /// The requesting user.
    pub user: UserInfo,
    /// Namespace of the resource.
    pub namespace: String,
    /// Name of the resource.
    pub name: String,
    /// The hash approved.
    pub hash: String,
}

impl ApprovalAsk {
    /// The approval a write of a KafkaOffsetReset from `old` (Null for a CREATE) to `new` asks
    /// for: the annotation added or changed (removing it approves nothing). Pure.
    pub fn of(
        kind: &str,
        user: Option<&UserInfo>,
        namespace: Option<&str>,
        new: &Value,
        old: &Value,
    ) -> Option<ApprovalAsk> {
        if kind != "KafkaOffsetReset" {
            return None;
        }
        let annotation = |object: &Value| {
            object
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(APPROVE_ANNOTATION))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let hash = annotation(new)?;
        if annotation(old).as_deref() == Some(hash.as_str()) {
            return None;
        }
        let text = |pointer: &str| new.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
        Some(ApprovalAsk {
            user: user.cloned().unwrap_or_default(),
            namespace: namespace
                .map(str::to_owned)
                .or_else(|| text("/metadata/namespace"))
                .unwrap_or_default(),
            name: text("/metadata/name").unwrap_or_default(),
            hash,
        })
    }

    /// The SubjectAccessReview that asks whether the user may approve.
    pub fn review(&self) -> SubjectAccessReview {
        let extra = self.user.extra.as_ref().map(|e| {
            e.iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<BTreeMap<_, _>>()
        });
        SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: self.user.username.clone(),
                groups: self.user.groups.clone(),
                uid: self.user.uid.clone(),
                extra,
                resource_attributes: Some(ResourceAttributes {
                    group: Some(GROUP.into()),
                    resource: Some(RESOURCE.into()),
                    subresource: Some(SUBRESOURCE.into()),
                    verb: Some("update".into()),
                    namespace: Some(self.namespace.clone()),
                    name: Some(self.name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Why the approval is refused, naming the user and the permission it needs.
    pub fn refusal(&self, why: &str) -> String {
        let user = self.user.username.as_deref().unwrap_or("(unknown user)");
        format!(
            "metadata.annotations[{APPROVE_ANNOTATION}]: user {user} may not approve KafkaOffsetReset {}/{}: approving needs the permission to update {RESOURCE}/{SUBRESOURCE} (apiGroup {GROUP}) in namespace {}, which the approver ClusterRole grants{}",
            self.namespace,
            self.name,
            self.namespace,
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        )
    }
}

/// Asks the API server who may approve.
#[derive(Clone)]
pub struct Approvers {
    client: Option<Client>,
    /// Why there is no client, when there is none.
    no_client: String,
}

impl std::fmt::Debug for Approvers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvers")
            .field("client", &self.client.is_some())
            .field("no_client", &self.no_client)
            .finish()
    }
}

impl Approvers {
    /// Checks with `client`.
    pub fn new(client: Client) -> Self {
        Approvers {
            client: Some(client),
            no_client: String::new(),
        }
    }

    /// No client: every approval is refused with `why`.
    pub fn unavailable(why: impl Into<String>) -> Self {
        Approvers {
            client: None,
            no_client: why.into(),
        }
    }

    /// `None` when the user may approve; otherwise why not, for the denial.
    pub async fn refusal(&self, ask: &ApprovalAsk) -> Option<String> {
        let Some(client) = &self.client else {
            return Some(ask.refusal(&format!(
                "this webhook cannot ask the Kubernetes API who may: {}",
                self.no_client
            )));
        };
        let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
        match reviews.create(&PostParams::default(), &ask.review()).await {
            Ok(answer) => match answer.status {
                Some(status) if status.allowed => None,
                Some(status) => Some(ask.refusal(&status.reason.unwrap_or_default())),
                None => Some(ask.refusal("the SubjectAccessReview came back without a status")),
            },
            Err(e) => Some(ask.refusal(&format!("the SubjectAccessReview failed: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn reset(annotations: Value) -> Value {
        json!({"metadata": {"name": "r", "namespace": "team-a", "annotations": annotations}})
    }

    #[test]
    fn an_added_or_changed_approval_is_asked_about() {
        let user = UserInfo {
            username: Some("alice".into()),
            ..Default::default()
        };
        let approved = reset(json!({APPROVE_ANNOTATION: "h1"}));
        let ask = ApprovalAsk::of(
            "KafkaOffsetReset",
            Some(&user),
            Some("team-a"),
            &approved,
            &reset(json!({})),
        )
        .unwrap();
        assert_eq!((ask.name.as_str(), ask.hash.as_str()), ("r", "h1"));
        let changed = reset(json!({APPROVE_ANNOTATION: "h2"}));
        assert!(ApprovalAsk::of("KafkaOffsetReset", Some(&user), None, &changed, &approved).is_some());
        // Unchanged, removed, another kind: nothing to ask.
        assert_eq!(
            ApprovalAsk::of("KafkaOffsetReset", Some(&user), None, &approved, &approved),
            None
        );
        assert_eq!(
            ApprovalAsk::of(
                "KafkaOffsetReset",
                Some(&user),
                None,
                &reset(json!({})),
                &approved
            ),
            None
        );
        assert_eq!(
            ApprovalAsk::of("KafkaRestore", Some(&user), None, &approved, &reset(json!({}))),
            None
        );

        let review = ask.review();
        assert_eq!(review.spec.user.as_deref(), Some("alice"));
        let attributes = review.spec.resource_attributes.unwrap();
        assert_eq!(
            (
                attributes.resource.as_deref(),
                attributes.subresource.as_deref(),
                attributes.verb.as_deref()
            ),
            (Some("kafkaoffsetresets"), Some("approve"), Some("update"))
        );
        assert_eq!(attributes.namespace.as_deref(), Some("team-a"));
        let message = ask.refusal("no RBAC policy matched");
        assert!(
            message.contains("user alice may not approve KafkaOffsetReset team-a/r")
                && message.contains("update kafkaoffsetresets/approve (apiGroup kafka.oso.sh)")
                && message.contains("(no RBAC policy matched)"),
            "{message}"
        );
    }
}
