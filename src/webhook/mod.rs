//! The admission and conversion webhooks: `POST /validate` and `POST /mutate` (AdmissionReview
//! `admission.k8s.io/v1`) and `POST /convert` (ConversionReview `apiextensions.k8s.io/v1`).
//!
//! The handlers are thin: read the review, dispatch to the pure functions of [`crate::api`]
//! ([`admission::validate`](crate::api::admission::validate),
//! [`admission::mutate`](crate::api::admission::mutate),
//! [`conversion::convert`](crate::api::conversion::convert)), and answer. Nothing here has a side
//! effect, so a `dryRun: true` review gets exactly the answer of the same review without it. The
//! one question asked of the API server is who may approve a plan ([`approvers`]: a
//! SubjectAccessReview, itself without side effect).
//!
//! Every review is answered in one of three shapes:
//! - a review with the request's `uid` echoed: allowed (with a JSON patch and warnings for
//!   `/mutate`), denied with a message naming every field at fault, or converted objects in request
//!   order;
//! - an `invalid` review (`allowed: false` / `result.status: Failure`) with the `uid` echoed, when
//!   the review's uid can be read but the rest of it cannot;
//! - HTTP 4xx with a Kubernetes `Status` body, when not even the uid can be read (not JSON, no
//!   `request`, a body over the size limit, a method other than POST).
//!
//! Each review gets a tracing span (`uid`, `kind`, `namespace`, `name`, `operation`, `allowed`) and
//! is counted in `kafka_backup_operator_webhook_requests_total{webhook, outcome}` and timed in
//! `kafka_backup_operator_webhook_duration_seconds{webhook}`.

#![warn(missing_docs)]

pub mod admission;
pub mod approvers;
pub mod conversion;
pub mod lean;

use std::time::Instant;

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, post},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    metrics::{Webhook, WebhookOutcome},
    routes::{CONVERT_PATH, MUTATE_PATH, VALIDATE_PATH},
    server::{AppState, status_response},
};

/// Largest AdmissionReview body accepted: the object and the old object, each up to the API
/// server's 3 MiB request limit, with room for the envelope.
pub const ADMISSION_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Largest ConversionReview body accepted: the API server converts a whole list page in one review.
pub const CONVERSION_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The answer to one review, before it becomes an HTTP response.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// HTTP status: 200 for a review, 4xx for a `Status`.
    pub status: StatusCode,
    /// The JSON body: a review or a `Status`.
    pub body: Vec<u8>,
    /// How the review was answered, for the metrics.
    pub outcome: WebhookOutcome,
}

impl Answer {
    /// HTTP 200 with `review` as JSON.
    pub(crate) fn review(review: &impl Serialize, outcome: WebhookOutcome) -> Self {
        match serde_json::to_vec(review) {
            Ok(body) => Self {
                status: StatusCode::OK,
                body,
                outcome,
            },
            Err(e) => Self::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("failed to encode the review: {e}"),
            ),
        }
    }

    /// HTTP `status` with a Kubernetes `Status` body (`reason`, `message`): the review could not be
    /// read at all. The body is the one [`status_response`] sends.
    pub(crate) fn status(status: StatusCode, reason: &str, message: impl Into<String>) -> Self {
        let body = Status {
            code: Some(i32::from(status.as_u16())),
            message: Some(message.into()),
            reason: Some(reason.to_owned()),
            status: Some("Failure".to_owned()),
            ..Status::default()
        };
        Self {
            status,
            // A Status of strings always serializes; an empty body would still be a 4xx.
            body: serde_json::to_vec(&body).unwrap_or_default(),
            outcome: WebhookOutcome::Error,
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

/// The webhook routes, to be merged into the HTTPS router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            VALIDATE_PATH,
            route(VALIDATE_PATH, ADMISSION_BODY_LIMIT, post(validate)),
        )
        .route(
            MUTATE_PATH,
            route(MUTATE_PATH, ADMISSION_BODY_LIMIT, post(mutate)),
        )
        .route(
            CONVERT_PATH,
            route(CONVERT_PATH, CONVERSION_BODY_LIMIT, post(convert)),
        )
}

fn route(path: &'static str, limit: usize, method_router: MethodRouter<AppState>) -> MethodRouter<AppState> {
    method_router
        .fallback(move || async move {
            status_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("{path} accepts POST only"),
            )
        })
        .layer(DefaultBodyLimit::max(limit))
}

async fn validate(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let start = Instant::now();
    let answer = match body {
        Ok(body) => admission::validate_review_approving(&body, &state.approvers).await,
        Err(rejection) => rejected(&rejection),
    };
    recorded(&state, Webhook::Validate, start, answer)
}

async fn mutate(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    answer(&state, Webhook::Mutate, body, admission::mutate_review)
}

async fn convert(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    answer(&state, Webhook::Convert, body, conversion::convert_review)
}

/// Answers one review with `handle`, counting and timing it.
fn answer(
    state: &AppState,
    webhook: Webhook,
    body: Result<Bytes, BytesRejection>,
    handle: fn(&[u8]) -> Answer,
) -> Response {
    let start = Instant::now();
    let answer = match body {
        Ok(body) => handle(&body),
        Err(rejection) => rejected(&rejection),
    };
    recorded(state, webhook, start, answer)
}

/// The answer to a body that could not be read.
fn rejected(rejection: &BytesRejection) -> Answer {
    let status = rejection.status();
    let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "RequestEntityTooLarge"
    } else {
        "BadRequest"
    };
    Answer::status(status, reason, rejection.body_text())
}

/// Counts and times an answer, and sends it.
fn recorded(state: &AppState, webhook: Webhook, start: Instant, answer: Answer) -> Response {
    state
        .metrics
        .webhook
        .record(webhook, answer.outcome, start.elapsed());
    answer.into_response()
}

/// The envelope of an incoming review: `apiVersion`, `kind` and the request.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<R> {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<R>,
}

/// What a review of `KIND` in `API_VERSION` needs to be read and refused.
pub(crate) trait ReviewKind {
    /// The request type.
    type Request: DeserializeOwned;
    /// `kind` of the review.
    const KIND: &'static str;
    /// `apiVersion` of the review.
    const API_VERSION: &'static str;
    /// The uid of a request.
    fn uid(request: &Self::Request) -> &str;
    /// An `invalid` review: the request could not be read, but its uid could.
    fn invalid(uid: &str, message: String) -> Answer;
}

/// Reads a review. What cannot be read is answered with an `invalid` review when the request's uid
/// can be found, else with HTTP 400 and a `Status`.
pub(crate) fn read_review<K: ReviewKind>(body: &[u8]) -> Result<K::Request, Answer> {
    let envelope: Envelope<K::Request> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => return Err(unreadable::<K>(body, &error)),
    };
    let Some(request) = envelope.request else {
        return Err(no_request::<K>());
    };
    if envelope.api_version.as_deref() != Some(K::API_VERSION) || envelope.kind.as_deref() != Some(K::KIND) {
        return Err(K::invalid(
            K::uid(&request),
            format!(
                "expected kind {} of apiVersion {}, got kind {} of apiVersion {}",
                K::KIND,
                K::API_VERSION,
                envelope.kind.as_deref().unwrap_or("(none)"),
                envelope.api_version.as_deref().unwrap_or("(none)"),
            ),
        ));
    }
    Ok(request)
}

fn no_request<K: ReviewKind>() -> Answer {
    Answer::status(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("the {} has no request", K::KIND),
    )
}

/// The answer to a body that is not a readable review; `error` is why.
fn unreadable<K: ReviewKind>(body: &[u8], error: &serde_json::Error) -> Answer {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => {
            return Answer::status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the request body is not JSON: {e}"),
            );
        }
    };
    let message = format!("the {} cannot be read: {error}", K::KIND);
    match value.get("request") {
        None | Some(Value::Null) => no_request::<K>(),
        Some(request) => match request.get("uid").and_then(Value::as_str) {
            Some(uid) => K::invalid(uid, message),
            None => Answer::status(StatusCode::BAD_REQUEST, "BadRequest", message),
        },
    }
}
