//! `POST /api/v1/webhooks/{source}`: the configured senders (GitHub, Gitea, Plane, generic
//! HMAC jobs, Standard Webhooks). Read (capped) → verify the raw bytes with the source's scheme
//! → check the body → record under the delivery key (a redelivery is a duplicate) → answer →
//! announce on the source's stream; a matching push queues a deploy in the same transaction.

use http::HeaderMap;
use hyper::body::Incoming;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::{ApiError, HttpResponse};
use super::status_update::{count_signature_failure, read_json_body};
use super::{ok_json, AppState};
use crate::config::{DeployConfig, SourceConfig, SourceScheme};
use crate::store::{self, deliveries};
use crate::verify::sources::{self, SIGNATURE_HEADERS};

/// The job statuses of the generic HMAC contract.
const JOB_STATUSES: [&str; 3] = ["completed", "failed", "partially_completed"];

pub async fn handle(
    state: &AppState,
    source: &SourceConfig,
    parts: &http::request::Parts,
    body: Incoming,
    request_id: &str,
    received: std::time::Instant,
) -> Result<HttpResponse, ApiError> {
    let body = read_json_body(state, &parts.headers, body).await?;
    let now = chrono::Utc::now().timestamp();
    let envelope = sources::verify(source, &parts.headers, &body, now)
        .inspect_err(|e| count_signature_failure(state, e))?;
    let text =
        std::str::from_utf8(&body).map_err(|_| ApiError::BadRequest("body is not UTF-8".into()))?;
    let payload: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?;

    let event_type = match (source.scheme, envelope.event_type) {
        (_, Some(event)) => event,
        (SourceScheme::Hmac, None) => job_event(&payload)?,
        // Standard Webhooks carries the event in the payload's `type`.
        (_, None) => payload
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .unwrap_or("unknown")
            .to_string(),
    };
    let delivery_key = match &envelope.delivery_id {
        Some(id) => format!("{}:{id}", source.name),
        None => format!(
            "{}:sha256:{}",
            source.name,
            hex::encode(Sha256::digest(&body))
        ),
    };
    let push = push_decision(state.config.deploy.as_ref(), source, &event_type, &payload);
    let (outcome, reason, deploy) = match &push {
        Push::Nothing => ("accepted", None, None),
        Push::Deploy(deploy) => ("accepted", Some("deploy queued"), Some(deploy)),
        Push::Ignored(why) => ("ignored", Some(*why), None),
    };
    let headers = stored_headers(&parts.headers);
    let recorded = store::within(
        state.config.database.statement_timeout,
        deliveries::record(
            &state.pool,
            &deliveries::SourceDelivery {
                source: &source.name,
                scheme: source.scheme.as_str(),
                event_type: &event_type,
                delivery_id: envelope.delivery_id.as_deref(),
                delivery_key: &delivery_key,
                headers: &headers,
                body: text,
                outcome,
                reason,
                http_request_id: request_id,
                instance_id: &state.config.instance_id,
                processing_ms: received.elapsed().as_secs_f32() * 1000.0,
                deploy,
            },
        ),
    )
    .await?;

    let result = if recorded.inserted {
        recorded.outcome.as_str()
    } else {
        "duplicate"
    };
    state
        .metrics
        .source_deliveries
        .with_label_values(&[&source.name, result])
        .inc();
    tracing::info!(
        source = %source.name,
        event_type = %event_type,
        delivery_id = envelope.delivery_id.as_deref().unwrap_or(""),
        event_id = recorded.event_id,
        result,
        signed = envelope.signed,
        "delivery committed"
    );
    if recorded.deploy_id.is_some() {
        state.deploy_queued.notify_one();
    }
    if recorded.inserted {
        announce(
            state,
            Announcement {
                source: &source.name,
                event_id: recorded.event_id,
                event_type: &event_type,
                delivery_id: envelope.delivery_id.as_deref(),
                outcome: result,
                payload: text,
                replay: false,
            },
        )
        .await;
    }
    Ok(ok_json(&json!({
        "result": result,
        "event_id": recorded.event_id,
        "delivery_id": envelope.delivery_id,
        "deploy_id": recorded.deploy_id,
    })))
}

/// What the source's stream says about a stored delivery.
pub(super) struct Announcement<'a> {
    pub source: &'a str,
    pub event_id: i64,
    pub event_type: &'a str,
    pub delivery_id: Option<&'a str>,
    pub outcome: &'a str,
    pub payload: &'a str,
    pub replay: bool,
}

/// XADD to `{prefix}webhooks:{source}`. Redis is not the source of truth: a failure is logged
/// and counted, and a replay announces the delivery again.
pub(super) async fn announce(state: &AppState, announcement: Announcement<'_>) {
    let Announcement {
        source,
        event_id,
        event_type,
        delivery_id,
        outcome,
        payload,
        replay,
    } = announcement;
    let event_id = event_id.to_string();
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let fields = [
        ("event_id", event_id.as_str()),
        ("source", source),
        ("event_type", event_type),
        ("delivery_id", delivery_id.unwrap_or("")),
        ("outcome", outcome),
        ("replay", if replay { "true" } else { "false" }),
        ("at", at.as_str()),
        ("payload", payload),
    ];
    if let Err(e) = state.cache.announce_delivery(source, &fields).await {
        state
            .metrics
            .redis_errors
            .with_label_values(&["announce"])
            .inc();
        tracing::warn!(error = %e, source, event_id, "stored delivery not announced on Redis");
    }
}

/// The generic job-completion contract: `job_id`, `status`, counts, `timestamp`.
fn job_event(payload: &Value) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::BadRequest(format!("job callback: {why}"));
    let job_id_ok = match payload.get("job_id") {
        Some(Value::String(id)) => !id.is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    };
    if !job_id_ok {
        return Err(bad("job_id (a non-empty string or a number) is required"));
    }
    let status = payload
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| JOB_STATUSES.contains(s))
        .ok_or_else(|| bad("status must be one of completed, failed, partially_completed"))?;
    Ok(format!("job.{status}"))
}

/// What a delivery means for deploys.
#[derive(Debug)]
pub(super) enum Push {
    /// Not a push, or deploys are off: stored and announced, nothing more.
    Nothing,
    /// A push to the configured repository and branch.
    Deploy(deliveries::QueuedDeploy),
    /// A push elsewhere: stored as `ignored`, with why.
    Ignored(&'static str),
}

/// Whether a delivery is a push that should roll out. Only GitHub's and Gitea's `push` events
/// count, and only when deploys are configured.
pub(super) fn push_decision(
    deploy: Option<&DeployConfig>,
    source: &SourceConfig,
    event_type: &str,
    payload: &Value,
) -> Push {
    let is_push =
        matches!(source.scheme, SourceScheme::Github | SourceScheme::Gitea) && event_type == "push";
    let Some(deploy) = deploy.filter(|_| is_push) else {
        return Push::Nothing;
    };
    let repository = payload
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let branch = payload
        .get("ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("refs/heads/"));
    if !repository.eq_ignore_ascii_case(&deploy.repository) {
        return Push::Ignored("push to another repository");
    }
    if branch != Some(deploy.branch.as_str()) {
        return Push::Ignored("push to another branch or a tag");
    }
    if payload.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Push::Ignored("the branch was deleted");
    }
    Push::Deploy(deliveries::QueuedDeploy {
        repository: deploy.repository.clone(),
        branch: deploy.branch.clone(),
        commit_sha: payload
            .get("after")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// The request's headers as stored with a delivery: no signatures, no credentials.
pub(super) fn stored_headers(headers: &HeaderMap) -> Value {
    let mut kept = serde_json::Map::new();
    for (name, value) in headers {
        let name = name.as_str();
        let secret = SIGNATURE_HEADERS.contains(&name)
            || matches!(
                name,
                "authorization" | "proxy-authorization" | "cookie" | "x-api-key"
            );
        if secret {
            continue;
        }
        if let Ok(value) = value.to_str() {
            kept.insert(name.to_string(), Value::String(value.to_string()));
        }
    }
    Value::Object(kept)
}
