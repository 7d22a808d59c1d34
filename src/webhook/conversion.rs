//! `POST /convert`: ConversionReview `apiextensions.k8s.io/v1`, read and answered with kube's
//! [`ConversionRequest`] and [`ConversionResponse`].
//!
//! Every object is converted to `desiredAPIVersion` by
//! [`api::conversion::convert`](crate::api::conversion::convert), in request order. If any object
//! fails, the response is `result.status: Failure` with one message naming each failed object by
//! its index, namespace and name (and no converted objects, as the API requires); the API server
//! then fails the read or write that needed the conversion with that message.
//!
//! The bulky metadata (`managedFields`, the last-applied annotation) is set aside while an object is
//! converted and put back afterwards ([`lean`]): the conversion copies metadata through anyway, and
//! would otherwise decode and re-encode them several times per object.

use kube::core::{
    Status,
    conversion::{ConversionRequest, ConversionResponse},
};
use serde_json::Value;
use tracing::{debug, field, info_span, warn};

use super::{Answer, ReviewKind, lean, read_review};
use crate::{
    api::{self, conversion::ConversionError},
    metrics::WebhookOutcome,
};

/// `apiVersion` of the reviews served.
pub const API_VERSION: &str = "apiextensions.k8s.io/v1";
/// `kind` of the reviews served.
pub const KIND: &str = "ConversionReview";

/// The ConversionReview, for [`read_review`].
struct ConversionKind;

impl ReviewKind for ConversionKind {
    type Request = ConversionRequest;
    const KIND: &'static str = KIND;
    const API_VERSION: &'static str = API_VERSION;

    fn uid(request: &ConversionRequest) -> &str {
        &request.uid
    }

    fn invalid(uid: &str, message: String) -> Answer {
        let mut response =
            ConversionResponse::invalid(Status::failure(&message, "BadRequest").with_code(400));
        response.uid = uid.to_owned();
        Answer::review(&response.into_review(), WebhookOutcome::Error)
    }
}

/// Answers a conversion review.
pub fn convert_review(body: &[u8]) -> Answer {
    let mut request = match read_review::<ConversionKind>(body) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let span = info_span!(
        "conversion",
        uid = %request.uid,
        desired_api_version = %request.desired_api_version,
        objects = request.objects.len(),
        allowed = field::Empty,
    );
    let _entered = span.enter();

    let objects = std::mem::take(&mut request.objects);
    let mut converted = Vec::with_capacity(objects.len());
    let mut failures = Vec::new();
    let mut worst = (0, "");
    for (i, mut object) in objects.into_iter().enumerate() {
        let label = label(&object);
        let aside = lean::set_aside(&mut object);
        match api::conversion::convert(object, &request.desired_api_version) {
            Ok(mut object) => {
                lean::put_back(&mut object, aside);
                converted.push(object);
            }
            Err(error) => {
                let (code, reason) = classify(&error);
                if code > worst.0 {
                    worst = (code, reason);
                }
                failures.push(format!("objects[{i}] ({label}): {error}"));
            }
        }
    }
    let response = ConversionResponse::for_request(request);
    span.record("allowed", failures.is_empty());
    if failures.is_empty() {
        debug!("converted");
        return Answer::review(
            &response.success(converted).into_review(),
            WebhookOutcome::Allowed,
        );
    }
    let message = failures.join("; ");
    warn!(%message, "conversion failed");
    let (code, reason) = worst;
    Answer::review(
        &response
            .failure(Status::failure(&message, reason).with_code(code))
            .into_review(),
        WebhookOutcome::Denied,
    )
}

/// HTTP code and reason of a conversion failure, for `result`.
fn classify(error: &ConversionError) -> (u16, &'static str) {
    match error {
        ConversionError::Malformed(_)
        | ConversionError::UnknownKind { .. }
        | ConversionError::UnknownVersion { .. } => (400, "BadRequest"),
        ConversionError::Decode { .. }
        | ConversionError::Field { .. }
        | ConversionError::Annotation { .. } => (422, "Invalid"),
        ConversionError::Encode { .. } => (500, "InternalError"),
    }
}

/// `Kind namespace/name` of an object, for messages.
fn label(object: &Value) -> String {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    let kind = text("/kind").unwrap_or("object");
    match (text("/metadata/namespace"), text("/metadata/name")) {
        (Some(namespace), Some(name)) => format!("{kind} {namespace}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => format!("{kind} without a name"),
    }
}
