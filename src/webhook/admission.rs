//! `POST /validate` and `POST /mutate`: AdmissionReview `admission.k8s.io/v1`.
//!
//! The request is read into the fields of kube's `AdmissionRequest` this webhook needs, with the
//! object and the old object kept as JSON, less the metadata no rule reads ([`Lean`]: kube's
//! `DynamicObject` would parse all of it into typed metadata and back); the answer is kube's
//! [`AdmissionResponse`] wrapped in its `AdmissionReview`.
//!
//! What is judged:
//! - CREATE and UPDATE of the resource itself. DELETE and CONNECT are allowed (there is no new
//!   object to judge), and so are writes to a subresource such as `status` (the spec cannot change
//!   through them; the operator's own status writes must never be refused).
//! - On UPDATE the old object goes to the validator, which refuses spec changes once the operation
//!   has started. An UPDATE that leaves `spec` exactly as it was (labels, annotations, finalizers)
//!   is not mutated, and is admitted even if the stored spec no longer passes the current rules
//!   (they got stricter after it was stored): refusing it would make the object impossible to
//!   relabel or to delete past its finalizer. The errors are returned as a warning instead, as
//!   Kubernetes' own validation ratcheting does.
//!
//! Denials carry `status.code` 422 and reason `Invalid` for an object that breaks the rules or
//! does not have the shape of its version (a value outside an enum, of the wrong type), with one
//! `details.causes` entry per field (`field`, `reason` such as `FieldValueNotSupported`, and a
//! `message` with the value and, for an enum, the allowed values), like the API server's own
//! validation errors, so kubectl prints each; and 400 `BadRequest` for a kind, version or review
//! this webhook does not serve. Fields the schema does not have are answered with a warning by
//! `/validate`. kube-apiserver prefixes
//! the message with `admission webhook "..." denied the request: ` and returns that code.
//!
//! The mutating answer's JSON patch is `json_patch::diff(object, mutated)` (pointer tokens escaped,
//! parents added before children), sent only when non-empty, base64-encoded as the API's `[]byte`
//! field is on the wire. It only ever adds fields (see [`crate::api::admission`]): what the user
//! wrote is never rewritten, so `kubectl apply` of the same file finds nothing to change.

use k8s_openapi::ByteString;
use kube::core::{
    GroupVersionKind, Status,
    admission::{AdmissionResponse, Operation},
    response::{StatusCause, StatusDetails},
};
use serde::Deserialize;
use serde_json::Value;
use tracing::{Span, debug, field, info, info_span};

use tracing::Instrument;

use super::{
    Answer, ReviewKind,
    approvers::{ApprovalAsk, Approvers},
    lean::Lean,
    read_review,
};
use crate::{
    api::{
        self,
        admission::{AdmissionError, Mutation},
        validation::FieldError,
    },
    metrics::WebhookOutcome,
};

/// `apiVersion` of the reviews served.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of the reviews served.
pub const KIND: &str = "AdmissionReview";

/// The fields of kube's `AdmissionRequest` the webhook reads; objects as raw JSON.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    object: Option<Lean>,
    #[serde(default)]
    old_object: Option<Lean>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    user_info: Option<k8s_openapi::api::authentication::v1::UserInfo>,
}

impl Request {
    fn is_write(&self) -> bool {
        matches!(self.operation, Operation::Create | Operation::Update)
            && self.sub_resource.as_deref().is_none_or(str::is_empty)
    }

    /// Whether this is an UPDATE that leaves `spec` as it was.
    fn keeps_spec(&self) -> bool {
        self.operation == Operation::Update
            && match (&self.object, &self.old_object) {
                (Some(Lean(new)), Some(Lean(old))) => new.get("spec") == old.get("spec"),
                _ => false,
            }
    }
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Answers a validating review.
pub fn validate_review(body: &[u8]) -> Answer {
    let request = match read_review::<AdmissionKind>(body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let span = review_span("validate", &request);
    let _entered = span.enter();
    let response = judge(&request);
    finish(&span, response)
}

/// Answers a validating review, and for an UPDATE that approves a plan also asks `approvers`
/// whether the requesting user may approve it ([`super::approvers`]).
pub async fn validate_review_approving(body: &[u8], approvers: &Approvers) -> Answer {
    let request = match read_review::<AdmissionKind>(body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let span = review_span("validate", &request);
    let mut response = judge(&request);
    if response.response.allowed
        && let Some(ask) = approval_ask(&request)
        && let Some(refusal) = approvers.refusal(&ask).instrument(span.clone()).await
    {
        response = Response::plain(deny(&request, 403, "Forbidden", &refusal, Vec::new()));
    }
    let _entered = span.enter();
    finish(&span, response)
}

/// The approval a CREATE or UPDATE of the resource itself asks for, if any (a resource created
/// with the annotation already set would otherwise run a plan nobody allowed to approve it).
fn approval_ask(request: &Request) -> Option<ApprovalAsk> {
    let Some(Lean(new)) = &request.object else {
        return None;
    };
    let old = match (&request.operation, &request.old_object) {
        (Operation::Update, Some(Lean(old))) => old,
        (Operation::Create, _) => &Value::Null,
        _ => return None,
    };
    if !request.is_write() {
        return None;
    }
    ApprovalAsk::of(
        &request.kind.kind,
        request.user_info.as_ref(),
        request.namespace.as_deref(),
        new,
        old,
    )
}

/// Answers a mutating review.
pub fn mutate_review(body: &[u8]) -> Answer {
    let request = match read_review::<AdmissionKind>(body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let span = review_span("mutate", &request);
    let _entered = span.enter();
    let response = complete(&request);
    finish(&span, response)
}

fn review_span(webhook: &'static str, request: &Request) -> Span {
    info_span!(
        "admission",
        webhook,
        uid = %request.uid,
        kind = %request.kind.kind,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        name = request.name.as_deref().unwrap_or_default(),
        operation = operation_name(&request.operation),
        dry_run = request.dry_run,
        allowed = field::Empty,
    )
}

/// The AdmissionReview, for [`read_review`].
struct AdmissionKind;

impl ReviewKind for AdmissionKind {
    type Request = Request;
    const KIND: &'static str = KIND;
    const API_VERSION: &'static str = API_VERSION;

    fn uid(request: &Request) -> &str {
        &request.uid
    }

    fn invalid(uid: &str, message: String) -> Answer {
        let mut response = AdmissionResponse::invalid(&message);
        response.uid = uid.to_owned();
        response.result = Status::failure(&message, "BadRequest").with_code(400);
        Answer::review(&response.into_review(), WebhookOutcome::Error)
    }
}

/// A response allowing `request`, without patch or warnings yet.
fn allow(request: &Request) -> AdmissionResponse {
    // kube builds responses from its typed request only; `invalid` is the one constructor that
    // does not need it, and every field it sets is overwritten here.
    let mut response = AdmissionResponse::invalid("");
    response.uid.clone_from(&request.uid);
    response.allowed = true;
    response.result = Status::default();
    response
}

fn deny(
    request: &Request,
    code: u16,
    reason: &str,
    message: &str,
    causes: Vec<StatusCause>,
) -> AdmissionResponse {
    let mut response = allow(request);
    response.allowed = false;
    response.result = Status::failure(message, reason)
        .with_code(code)
        .with_details(StatusDetails {
            name: request.name.clone().unwrap_or_default(),
            group: request.kind.group.clone(),
            kind: request.kind.kind.clone(),
            uid: String::new(),
            causes,
            retry_after_seconds: 0,
        });
    response
}

/// The denial of an object the pure functions could not judge.
fn refuse(request: &Request, error: &AdmissionError) -> AdmissionResponse {
    match error {
        AdmissionError::Decode { errors, .. } => {
            deny(request, 422, "Invalid", &error.to_string(), causes(errors))
        }
        AdmissionError::Malformed(_) | AdmissionError::UnknownKind(_) | AdmissionError::UnknownVersion(_) => {
            deny(request, 400, "BadRequest", &error.to_string(), Vec::new())
        }
    }
}

/// One `details.causes` entry per field at fault, as the API server's own validation answers:
/// kubectl prints `<field>: <message>` for each.
fn causes(errors: &[FieldError]) -> Vec<StatusCause> {
    errors
        .iter()
        .map(|error| StatusCause {
            reason: error.reason.as_str().to_owned(),
            field: error.path.clone(),
            message: error.cause_message(),
        })
        .collect()
}

fn missing_object(request: &Request) -> AdmissionResponse {
    deny(
        request,
        400,
        "BadRequest",
        &format!(
            "request.object is missing from a {} review",
            operation_name(&request.operation)
        ),
        Vec::new(),
    )
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// The validating decision.
fn judge(request: &Request) -> Response {
    if !request.is_write() {
        return Response::plain(allow(request));
    }
    let Some(Lean(object)) = &request.object else {
        return Response::plain(missing_object(request));
    };
    let old = match (&request.operation, &request.old_object) {
        (Operation::Update, None) => {
            return Response::plain(deny(
                request,
                400,
                "BadRequest",
                "request.oldObject is missing from an UPDATE review",
                Vec::new(),
            ));
        }
        (Operation::Update, Some(Lean(old))) => Some(old),
        _ => None,
    };
    let mut verdict = match api::admission::validate(object, old) {
        Ok(verdict) => verdict,
        Err(error) => return Response::plain(refuse(request, &error)),
    };
    // The API server drops unknown fields before admission (or refuses them, with kubectl's
    // strict field validation); one that reaches the webhook is ignored, which the user is told.
    for unknown in &verdict.unknown_fields {
        verdict.warnings.push(format!("{unknown}: it is ignored"));
    }
    if verdict.is_allowed() {
        return Response::plain(with_warnings(allow(request), verdict.warnings));
    }
    let message = verdict.message();
    let mut warnings = verdict.warnings;
    if request.keeps_spec() {
        warnings.push(format!(
            "spec does not pass the current rules ({message}); this update is admitted because it \
             leaves spec unchanged, fix it with the next change of spec"
        ));
        return Response::plain(with_warnings(allow(request), warnings));
    }
    Response::plain(with_warnings(
        deny(request, 422, "Invalid", &message, causes(&verdict.errors)),
        warnings,
    ))
}

/// The mutating decision.
fn complete(request: &Request) -> Response {
    if !request.is_write() || request.keeps_spec() {
        return Response::plain(allow(request));
    }
    let Some(Lean(object)) = &request.object else {
        return Response::plain(missing_object(request));
    };
    let Mutation {
        object: mutated,
        warnings,
    } = match api::admission::mutate(object) {
        Ok(mutation) => mutation,
        Err(error) => return Response::plain(refuse(request, &error)),
    };
    let patch = json_patch::diff(object, &mutated);
    if patch.0.is_empty() {
        return Response::plain(with_warnings(allow(request), warnings));
    }
    let bytes = match serde_json::to_vec(&patch) {
        Ok(bytes) => bytes,
        Err(e) => {
            return Response::plain(deny(
                request,
                500,
                "InternalError",
                &format!("failed to encode the patch: {e}"),
                Vec::new(),
            ));
        }
    };
    match allow(request).with_patch(patch) {
        Ok(response) => Response {
            response: with_warnings(response, warnings),
            patch: Some(bytes),
        },
        Err(e) => Response::plain(deny(
            request,
            500,
            "InternalError",
            &format!("failed to encode the patch: {e}"),
            Vec::new(),
        )),
    }
}

/// A decision, with the patch bytes when there is one.
struct Response {
    response: AdmissionResponse,
    patch: Option<Vec<u8>>,
}

impl Response {
    fn plain(response: AdmissionResponse) -> Self {
        Self {
            response,
            patch: None,
        }
    }
}

/// Logs the decision in the review's span and encodes it.
fn finish(span: &Span, decision: Response) -> Answer {
    let Response { response, patch } = decision;
    span.record("allowed", response.allowed);
    let outcome = match (response.allowed, &patch) {
        (false, _) => {
            info!(code = response.result.code, message = %response.result.message, "admission denied");
            WebhookOutcome::Denied
        }
        (true, Some(_)) => WebhookOutcome::Patched,
        (true, None) => WebhookOutcome::Allowed,
    };
    if response.allowed {
        debug!(
            patched = patch.is_some(),
            warnings = response.warnings.as_ref().map_or(0, Vec::len),
            "admission allowed"
        );
    }
    let review = response.into_review();
    let Some(patch) = patch else {
        return Answer::review(&review, outcome);
    };
    // kube encodes `patch` (a Go []byte) as an array of numbers, which the API server accepts;
    // the API's own encoding, which every other client sends and its documentation shows, is
    // base64.
    match serde_json::to_value(&review) {
        Ok(mut value) => {
            if let Some(slot) = value.pointer_mut("/response/patch") {
                *slot = serde_json::to_value(ByteString(patch)).unwrap_or(Value::Null);
            }
            Answer::review(&value, outcome)
        }
        Err(e) => Answer::status(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("failed to encode the review: {e}"),
        ),
    }
}
