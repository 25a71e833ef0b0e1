//! `POST /api/v1/webhooks/{source}`: the configured senders (GitHub, Gitea, Plane, generic
//! HMAC jobs, Standard Webhooks). Read (capped) → verify the raw bytes with the source's scheme
//! → check the body → record under the delivery key (a redelivery is a duplicate) → answer →
//! announce on the source's stream; a matching push queues a deploy in the same transaction.
//! While PostgreSQL is unavailable, a source that spools is answered 202 `spooled` once the
//! delivery is on this instance's disk.

use std::borrow::Cow;

use http::StatusCode;
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::body::{count_signature_failure, read_body_of, MediaType};
use super::error::{json_response, ApiError, HttpResponse};
use super::{stored_headers, AppState};
use crate::config::SourceConfig;
use crate::ingest::{push_decision, Push, SourceDelivery, Taken};
use crate::senders::{self, Envelope};
use crate::store::{self, deliveries::EventOutcome};

pub async fn handle(
    state: &AppState,
    source: &SourceConfig,
    parts: &http::request::Parts,
    body: Incoming,
    request_id: &str,
    received: std::time::Instant,
) -> Result<HttpResponse, ApiError> {
    let (text, envelope) = read_verified(state, source, parts, body).await?;
    // Verified as sent; stored without what PostgreSQL cannot store.
    let text = match store::text::without_nul(text.as_bytes()) {
        Cow::Borrowed(_) => text,
        Cow::Owned(json) => String::from_utf8(json).expect("serde_json writes UTF-8"),
    };
    let payload: Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?;
    // A sender's event is an object (a batch of them, an array); a bare `true` or `"x"` is not
    // one, and would be stored and announced as if it were.
    if !(payload.is_object() || payload.is_array()) {
        return Err(ApiError::BadRequest(
            "body must be a JSON object or array".into(),
        ));
    }
    let event_type = senders::event_type(source.scheme, envelope.event_type, &payload)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    bounded("the event type", &event_type)?;
    if let Some(id) = &envelope.delivery_id {
        bounded("the delivery id", id)?;
    }
    let delivery_key = senders::delivery_key(
        &source.name,
        source.scheme,
        envelope.delivery_id.as_deref(),
        text.as_bytes(),
    );
    let push = push_decision(state.config.deploy.as_ref(), source, &event_type, &payload);
    let (outcome, reason, deploy) = match &push {
        Push::Nothing => (EventOutcome::Accepted, None, None),
        Push::Deploy(deploy) => (EventOutcome::Accepted, Some("deploy queued"), Some(deploy)),
        Push::Ignored(why) => (EventOutcome::Ignored, Some(*why), None),
    };
    let headers = stored_headers::for_delivery(&parts.headers);
    let delivery = SourceDelivery {
        source: &source.name,
        scheme: source.scheme.name(),
        event_type: &event_type,
        delivery_id: envelope.delivery_id.as_deref(),
        delivery_key: &delivery_key,
        headers: &headers,
        body: &text,
        outcome,
        reason,
        http_request_id: request_id,
        instance_id: &state.config.instance_id,
        processing_ms: received.elapsed().as_secs_f32() * 1000.0,
        deploy,
        received_at: None,
    };
    let taken = state
        .ingest
        .source_delivery(&delivery, source.spool)
        .await?;
    let (result, event_id, deploy_id, status) = answer(&taken);
    state
        .metrics
        .source_deliveries
        .with_label_values(&[&source.name, result])
        .inc();
    // A spooled delivery was logged when it was spooled, and is again when it is committed.
    if let Some(event_id) = event_id {
        tracing::info!(
            source = %source.name,
            event_type = %event_type,
            delivery_id = envelope.delivery_id.as_deref().unwrap_or(""),
            event_id,
            result,
            signed = envelope.signed,
            "delivery committed"
        );
    }
    Ok(json_response(
        status,
        &json!({
            "result": result,
            "event_id": event_id,
            "delivery_id": envelope.delivery_id,
            "deploy_id": deploy_id,
        }),
    ))
}

/// What the sender is told: the result, the event and deploy ids, the status.
fn answer(taken: &Taken) -> (&'static str, Option<i64>, Option<i64>, StatusCode) {
    match taken {
        Taken::Recorded(recorded) if recorded.inserted => (
            recorded.outcome.as_str(),
            Some(recorded.event_id),
            recorded.deploy_id,
            StatusCode::OK,
        ),
        Taken::Recorded(recorded) => ("duplicate", Some(recorded.event_id), None, StatusCode::OK),
        // Kept on disk, not yet in PostgreSQL: accepted, not yet done.
        Taken::Spooled => ("spooled", None, None, StatusCode::ACCEPTED),
    }
}

/// The delivery's JSON text, once its signature is verified as its sender signs: the body as
/// sent, or for some senders (Gitea) the JSON a form carries in its `payload`.
async fn read_verified(
    state: &AppState,
    source: &SourceConfig,
    parts: &http::request::Parts,
    body: Incoming,
) -> Result<(String, Envelope), ApiError> {
    let accepted: &[MediaType] = if source.scheme.sends_forms() {
        &[MediaType::Json, MediaType::Form]
    } else {
        &[MediaType::Json]
    };
    let (raw, media) = read_body_of(state, &parts.headers, body, accepted).await?;
    let form_json = match media {
        MediaType::Form => Some(form_payload(&raw)?),
        MediaType::Json => None,
    };
    let signed: &[u8] = match &form_json {
        Some(json) if source.scheme.signs_form_payload() => json.as_bytes(),
        _ => &raw,
    };
    let now = chrono::Utc::now().timestamp();
    let envelope = source
        .scheme
        .verify(&source.keys, &parts.headers, signed, now)
        .inspect_err(|e| count_signature_failure(state, e))?;
    let text = match form_json {
        Some(json) => json,
        None => String::from_utf8(Vec::from(raw))
            .map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?,
    };
    Ok((text, envelope))
}

/// Ids and names reach PostgreSQL's indexes: longer than this is not a sender's, and would
/// not fit a btree row.
const MAX_ID_CHARS: usize = 200;

fn bounded(what: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_ID_CHARS || value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{what} must be at most {MAX_ID_CHARS} bytes of printable text"
        )));
    }
    Ok(())
}

/// The JSON a form-encoded delivery carries in its `payload` field.
fn form_payload(form: &[u8]) -> Result<String, ApiError> {
    url::form_urlencoded::parse(form)
        .find(|(name, _)| name == "payload")
        .map(|(_, json)| json.into_owned())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "a form-encoded delivery must carry its JSON in the payload field".into(),
            )
        })
}
