//! `POST /api/v1/avatar/status_update`: the FAL callback.
//! Read (capped) → verify the raw bytes → parse → commit → answer → announce.

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::error::{ApiError, HttpResponse};
use super::{ok_json, query, AppState};
use crate::avatar::TrainingType;
use crate::fal;
use crate::store::{self, ingest};
use crate::verify::VerifyError;

pub async fn handle(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    request_id: &str,
    received: std::time::Instant,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(state, &parts.headers, body).await?;
    let scheme = state
        .verifier
        .verify(&parts.headers, &body)
        .await
        .inspect_err(|e| count_signature_failure(state, e))?;

    let training_type = training_type(parts.uri.query())?;
    // Verified as sent; stored without what PostgreSQL cannot store.
    let body = store::text::without_nul(&body);
    let callback = fal::parse(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let body_text = String::from_utf8(body.into_owned())
        .map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;

    // What the answer and the log need; the callback itself moves into the commit queue.
    let fal_request_id = callback.request_id.clone();
    let event = callback.event.kind();
    let delivery = ingest::Delivery {
        callback,
        body: body_text,
        scheme,
        http_request_id: request_id.to_string(),
        instance_id: state.config.instance_id.clone(),
        training_type,
        received,
    };
    let ingested = state.ingest.fal_callback(delivery).await?;

    let outcome = ingested.outcome.as_str();
    state.metrics.outcomes.with_label_values(&[outcome]).inc();
    // Logged with the answer (the request span's "answered" line).
    let span = tracing::Span::current();
    span.record("fal_request_id", fal_request_id.as_str());
    span.record("event", event);
    span.record("scheme", scheme.as_str());
    span.record("outcome", outcome);
    span.record("event_id", ingested.event_id);
    Ok(ok_json(&serde_json::json!({
        "result": outcome,
        "request_id": fal_request_id,
        "event_id": ingested.event_id,
    })))
}

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

pub(super) fn media_type(headers: &HeaderMap) -> Option<MediaType> {
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

fn training_type(query: Option<&str>) -> Result<Option<TrainingType>, ApiError> {
    let Some(value) = query::param(query, "training_type") else {
        return Ok(None);
    };
    TrainingType::parse(value).map(Some).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "training_type {value:?} is not one of portrait, style"
        ))
    })
}
