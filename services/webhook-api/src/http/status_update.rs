//! `POST /api/v1/avatar/status_update`: the FAL callback.
//! Read (capped) → verify the raw bytes → parse → commit → answer → announce.

use hyper::body::Incoming;

use super::body::{count_signature_failure, read_json_body};
use super::error::{ApiError, HttpResponse};
use super::{ok_json, query, AppState};
use crate::avatar::TrainingType;
use crate::fal;
use crate::store::{self, ingest};

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
