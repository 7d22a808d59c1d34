//! The HTTP client of the object stores (S3, Azure, GCS): object_store's own (reqwest), with
//! every answer that object_store retries counted by cause in
//! `kafka_backup_operator_retries_total` ([`crate::metrics::RetryCause`]). object_store retries
//! inside its request loop and tells nobody; this layer sits under that loop, so it sees each
//! send.

use object_store::{
    ClientOptions,
    client::{
        HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
        ReqwestConnector,
    },
};

use crate::metrics::{RetryCause, retries};

/// Builds object_store's reqwest client and wraps it in [`Counting`].
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingConnector;

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Counting(inner)))
    }
}

/// Sends through the inner client and counts the failures object_store retries.
#[derive(Debug)]
struct Counting(HttpClient);

#[async_trait::async_trait]
impl HttpService for Counting {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let answer = self.0.execute(request).await;
        let cause = match &answer {
            Ok(response) => status_cause(response.status().as_u16()),
            Err(e) => transport_cause(e.kind()),
        };
        if let Some(cause) = cause {
            retries().retry(cause);
        }
        answer
    }
}

/// The retry cause of an HTTP status object_store sends again (5xx, 429, 408). Pure.
pub fn status_cause(status: u16) -> Option<RetryCause> {
    match status {
        503 | 429 => Some(RetryCause::StorageThrottled),
        408 => Some(RetryCause::StorageUnreachable),
        500..=599 => Some(RetryCause::StorageServerError),
        _ => None,
    }
}

/// The retry cause of a request that got no answer. Pure.
fn transport_cause(kind: HttpErrorKind) -> Option<RetryCause> {
    match kind {
        HttpErrorKind::Connect
        | HttpErrorKind::Request
        | HttpErrorKind::Timeout
        | HttpErrorKind::Interrupted => Some(RetryCause::StorageUnreachable),
        HttpErrorKind::Decode | HttpErrorKind::Unknown => None,
        // A kind added by a later object_store.
        _ => Some(RetryCause::StorageUnreachable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_answers_have_a_cause_and_others_none() {
        assert_eq!(status_cause(503), Some(RetryCause::StorageThrottled));
        assert_eq!(status_cause(429), Some(RetryCause::StorageThrottled));
        assert_eq!(status_cause(500), Some(RetryCause::StorageServerError));
        assert_eq!(status_cause(502), Some(RetryCause::StorageServerError));
        for ok in [200, 204, 206, 304, 403, 404, 409, 412] {
            assert_eq!(status_cause(ok), None, "{ok}");
        }
        assert_eq!(
            transport_cause(HttpErrorKind::Connect),
            Some(RetryCause::StorageUnreachable)
        );
        assert_eq!(transport_cause(HttpErrorKind::Decode), None);
    }
}
