//! Reading a delivery's body: its media type, bounded in size and time; and the count of
//! refused signatures, whichever sender's scheme refused them.

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::error::ApiError;
use super::AppState;
use crate::verify::VerifyError;

/// A webhook's body: JSON content type, bounded in size and time.
pub(super) async fn read_json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Bytes, ApiError> {
    match media_type(headers) {
        Some(MediaType::Json) => read_body(state, headers, body).await,
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// How a sender encoded its delivery: JSON, or a form whose `payload` field holds the JSON
/// (what GitHub's and Gitea's webhook settings call `application/x-www-form-urlencoded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MediaType {
    Json,
    Form,
}

fn media_type(headers: &HeaderMap) -> Option<MediaType> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())?
        .split(';')
        .next()?
        .trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Some(MediaType::Json)
    } else if mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some(MediaType::Form)
    } else {
        None
    }
}

/// A body of a type in `accepted`, bounded in size and time.
pub(super) async fn read_body_of(
    state: &AppState,
    headers: &HeaderMap,
    body: Incoming,
    accepted: &[MediaType],
) -> Result<(Bytes, MediaType), ApiError> {
    match media_type(headers).filter(|kind| accepted.contains(kind)) {
        Some(kind) => Ok((read_body(state, headers, body).await?, kind)),
        None => Err(ApiError::UnsupportedMediaType),
    }
}

/// `webhook_signature_failures_total{reason}`, whichever scheme refused the request.
pub(super) fn count_signature_failure(state: &AppState, error: &VerifyError) {
    state
        .metrics
        .signature_failures
        .with_label_values(&[error.reason()])
        .inc()
}

/// The whole body, refused early when `Content-Length` already says it is too large, and
/// bounded in time so a slow sender cannot hold the connection.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Bytes, ApiError> {
    let limit = state.config.http.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let timeout = state.config.http.read_timeout;
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::RequestTimeout(timeout.as_secs())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(e)) => Err(ApiError::BadRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}
