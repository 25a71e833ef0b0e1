//! The operators' API (nginx keeps it private): what arrived from every source, what failed,
//! replay of a stored delivery, and the deploys.
//!
//! `GET /api/v1/webhooks/metrics?hours=24`, `GET /api/v1/webhooks/health`,
//! `GET /api/v1/webhooks/failures?source=&before=&limit=`, `GET /api/v1/webhooks/events/{id}`,
//! `POST /api/v1/webhooks/events/{id}/replay`, `GET /api/v1/deploys`, `GET /api/v1/deploys/{id}`.

use http::StatusCode;
use serde_json::{json, Value};

use super::error::{json_response, json_text, ApiError, HttpResponse};
use super::query::{number, optional_number, param};
use super::{ok_json, views, AppState};
use crate::config::{OperatorToken, Scope};
use crate::ingest::{ReplayContext, ReplayError, Replayed};
use crate::store::{self, deploys, event_views};

const MAX_PAGE: i64 = 500;

pub async fn metrics(state: &AppState, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let hours = number(query, "hours", 24, 1..=24 * 90)?;
    let lines = store::within(
        state.config.database.statement_timeout,
        event_views::outcome_counts(&state.pool, hours as i32),
    )
    .await?;
    Ok(ok_json(&views::outcome_counts(hours, &lines)))
}

/// `ok`, `degraded` (Redis down, or the latest deploy did not succeed) or `fail` (503,
/// PostgreSQL down), with each source's latest activity.
pub async fn health(state: &AppState) -> HttpResponse {
    let limit = state.config.database.statement_timeout;
    let redis_up = state.cache.ping().await.is_ok();
    let activity = store::within(limit, event_views::source_activity(&state.pool)).await;
    let latest_deploy = match state.config.deploy {
        Some(_) => store::within(limit, deploys::latest(&state.pool))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let Ok(activity) = activity else {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "fail", "database": "unavailable", "redis": up(redis_up) }),
        );
    };
    let deploy_failed = latest_deploy.as_ref().is_some_and(|d| d.failed());
    let sources: Vec<Value> = std::iter::once(("fal", "fal_ed25519|hmac"))
        .chain(
            state
                .config
                .sources
                .iter()
                .map(|s| (s.name.as_str(), s.scheme.name())),
        )
        .map(|(name, scheme)| {
            views::source_health(name, scheme, activity.iter().find(|a| a.source == name))
        })
        .collect();
    let status = if redis_up && !deploy_failed {
        "ok"
    } else {
        "degraded"
    };
    ok_json(&json!({
        "status": status,
        "database": "ok",
        "redis": up(redis_up),
        "rejections_dropped": state.metrics.rejections_dropped.get(),
        "sources": sources,
        "deploy": {
            "configured": state.config.deploy.is_some(),
            "latest": latest_deploy.as_ref().map(views::deploy),
        },
    }))
}

fn up(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "unavailable"
    }
}

pub async fn failures(state: &AppState, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let limit = number(query, "limit", 50, 1..=MAX_PAGE)?;
    let before = optional_number(query, "before")?;
    let source = param(query, "source").filter(|s| !s.is_empty());
    let (events, next_before) = store::within(
        state.config.database.statement_timeout,
        event_views::failures(&state.pool, source, before, limit),
    )
    .await?;
    let items: Vec<Value> = events.iter().map(views::event).collect();
    Ok(ok_json(
        &json!({ "items": items, "next_before": next_before }),
    ))
}

pub async fn event(state: &AppState, id: i64) -> Result<HttpResponse, ApiError> {
    store::within(
        state.config.database.statement_timeout,
        event_views::event(&state.pool, id),
    )
    .await?
    .map(|event| json_text(StatusCode::OK, views::event_with_body(&event)))
    .ok_or_else(|| ApiError::NotFound(format!("event {id}")))
}

/// Runs a stored delivery through the path it first took. Idempotent: FAL's ingest dedups on
/// the delivery key (an `unmatched` callback is applied once its avatar exists), and a source
/// event is announced again; a push's commit deploys again only with `?deploy=true`, asked by
/// a token with the `deploy` scope.
pub async fn replay(
    state: &AppState,
    id: i64,
    operator: &OperatorToken,
    query: Option<&str>,
    request_id: &str,
) -> Result<HttpResponse, ApiError> {
    let redeploy = match param(query, "deploy") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::BadRequest("deploy must be true or false".into())),
    };
    let replayed = replay_event(state, id, operator, redeploy, request_id).await?;
    Ok(ok_json(&views::replayed(&replayed)))
}

/// A replay, as the API and the console ask for it: what it came to.
pub async fn replay_event(
    state: &AppState,
    id: i64,
    operator: &OperatorToken,
    redeploy: bool,
    request_id: &str,
) -> Result<Replayed, ApiError> {
    if redeploy && !operator.allows(Scope::Deploy) {
        return Err(ApiError::Forbidden {
            token: operator.name.clone(),
            scope: Scope::Deploy.as_str(),
        });
    }
    let context = ReplayContext {
        sources: &state.config.sources,
        deploy: state.config.deploy.as_ref(),
        instance_id: &state.config.instance_id,
    };
    let redeploy_by = redeploy.then_some(operator.name.as_str());
    state
        .ingest
        .replay_stored(id, &context, redeploy_by, request_id)
        .await
        .map_err(|e| match e {
            ReplayError::NotFound(id) => ApiError::NotFound(format!("event {id}")),
            ReplayError::Conflict(why) => ApiError::Conflict(why),
            ReplayError::Store(e) => ApiError::Store(e),
        })
}

pub async fn deploy_list(state: &AppState, query: Option<&str>) -> Result<HttpResponse, ApiError> {
    let limit = number(query, "limit", 50, 1..=MAX_PAGE)?;
    let items = store::within(
        state.config.database.statement_timeout,
        deploys::list(&state.pool, limit),
    )
    .await?;
    let items: Vec<Value> = items.iter().map(views::deploy).collect();
    Ok(ok_json(&json!({
        "configured": state.config.deploy.is_some(),
        "items": items,
    })))
}

pub async fn deploy(state: &AppState, id: i64) -> Result<HttpResponse, ApiError> {
    store::within(
        state.config.database.statement_timeout,
        deploys::get(&state.pool, id),
    )
    .await?
    .map(|deploy| ok_json(&views::deploy(&deploy)))
    .ok_or_else(|| ApiError::NotFound(format!("deploy {id}")))
}
