//! The hyper service: request id, routing, metrics and logging around each handler.

mod auth;
mod avatar_status;
mod body;
mod console;
pub mod error;
mod gate;
mod health;
mod operator;
mod query;
mod route;
pub mod server;
mod status_update;
mod stored_headers;
mod views;
mod webhooks;

pub(crate) use crate::state::AppState;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::config::{OperatorToken, Scope};
use crate::store::rejections::Rejection;
use crate::store::{self, jobs};
use crate::telemetry::Refusal;
use error::{ApiError, HttpResponse};
pub(crate) use gate::record_audit;
use gate::{audit, authorize, client_address};
use route::Route;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the service answers with: a whole body, or one written as it is produced (the
/// console's live tail and export).
pub type ServiceBody = http_body_util::Either<Full<Bytes>, http_body_util::Channel<Bytes>>;

/// The service function: never fails, every error becomes a JSON answer.
pub async fn handle(
    state: Arc<AppState>,
    peer: IpAddr,
    request: Request<Incoming>,
) -> Result<Response<ServiceBody>, Infallible> {
    let started = Instant::now();
    let request_id = request_id(&request);
    let method = request.method().clone();
    let route = Route::resolve(request.uri().path(), &state.config);
    // A webhook's outcome (or why it was refused) is recorded on the span as it goes, so its
    // one "answered" line says everything: one JSON line to format and write per callback,
    // not two.
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %request.uri().path(),
        fal_request_id = tracing::field::Empty,
        event = tracing::field::Empty,
        scheme = tracing::field::Empty,
        outcome = tracing::field::Empty,
        event_id = tracing::field::Empty,
        code = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if path == console::PREFIX || path.starts_with("/console/") {
        let client = client_address(&state, peer, &parts.headers);
        let mut response = console::handle(&state, &parts, body, client, &request_id)
            .instrument(span)
            .await;
        count_answer(&state, "console", &method, response.status(), started);
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        return Ok(response);
    }
    let mut response = match dispatch(&state, route, &parts, peer, body, &request_id, started)
        .instrument(span.clone())
        .await
    {
        Ok(response) => response,
        Err(e) => {
            if let Some(route) = route {
                record_rejection(&state, route, &e, &parts.headers, &request_id, started);
            }
            // A refused webhook is logged once, on the "answered" line below.
            if answered_route(route) && !e.status().is_server_error() {
                span.record("code", e.code());
                span.record("error", tracing::field::display(&e));
                e.into_unlogged_response()
            } else {
                span.in_scope(|| e.into_response())
            }
        }
    };

    let label = route.map_or("unknown", Route::label);
    let status = response.status();
    count_answer(&state, label, &method, status, started);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    if answered_route(route) {
        log_answer(&state, &span, status, started);
    }
    Ok(response.map(http_body_util::Either::Left))
}

/// `webhook_http_requests_total` and the request's duration.
fn count_answer(
    state: &AppState,
    label: &str,
    method: &Method,
    status: StatusCode,
    started: Instant,
) {
    state
        .metrics
        .http_requests
        .with_label_values(&[label, method.as_str(), status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
}

/// The webhook route's "answered" line; refusals within `LOG_REFUSALS_PER_SEC`.
fn log_answer(state: &AppState, span: &tracing::Span, status: StatusCode, started: Instant) {
    if status.is_client_error() {
        match state.refusal_log.admit() {
            Refusal::Skip => return,
            Refusal::Log { unlogged, since } if unlogged > 0 => tracing::warn!(
                unlogged,
                since = since.map(|at| at.to_rfc3339()),
                per_second = state.config.log.refusals_per_sec,
                "refused webhook requests not logged (over LOG_REFUSALS_PER_SEC; counted in \
                 the metrics)"
            ),
            Refusal::Log { .. } => {}
        }
    }
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        )
    });
}

/// The webhook routes, whose every answer is logged ("answered"), with what they committed
/// or why they refused.
fn answered_route(route: Option<Route>) -> bool {
    matches!(route, Some(Route::StatusUpdate | Route::Source(_)))
}

async fn dispatch(
    state: &AppState,
    route: Option<Route>,
    parts: &http::request::Parts,
    peer: IpAddr,
    body: Incoming,
    request_id: &str,
    received: Instant,
) -> Result<HttpResponse, ApiError> {
    let route = route.ok_or_else(|| ApiError::NotFound(parts.uri.path().to_string()))?;
    let (allow, methods) = route.allowed();
    if !methods.contains(&parts.method) {
        return Err(ApiError::MethodNotAllowed { allow });
    }
    let tokens = &state.config.operator_tokens;
    let operator = match route.scope() {
        Some(scope) => Some(authorize(state, route, scope, parts, peer, request_id).await?),
        None => None,
    };
    let answer = match route {
        Route::StatusUpdate => {
            status_update::handle(state, parts, body, request_id, received).await
        }
        Route::Source(index) => {
            let source = &state.config.sources[index];
            webhooks::handle(state, source, parts, body, request_id, received).await
        }
        Route::AvatarStatus => avatar_status::handle(state, parts.uri.path()).await,
        Route::Health => Ok(
            match auth::presented(tokens, &parts.headers).filter(|t| t.allows(Scope::Read)) {
                Some(_) => health::full(state).await,
                None => health::public(state).await,
            },
        ),
        Route::HealthLive => Ok(health::live()),
        Route::HealthReady => Ok(health::ready(state).await),
        Route::Metrics => Ok(metrics(state).await),
        Route::OpenApi => Ok(openapi()),
        operator_route => match operator {
            Some(operator) => {
                let query = parts.uri.query();
                operator_call(state, operator_route, operator, query, request_id).await
            }
            // Every other route has a scope, so a token was required above.
            None => Err(ApiError::Unauthorized),
        },
    };
    if let (true, Some(operator)) = (route.audited(), operator) {
        let status = answer
            .as_ref()
            .map_or_else(ApiError::status, |r| r.status());
        audit(state, route, &operator.name, parts, status, request_id).await;
    }
    answer
}

/// The operators' API, once the token is checked.
async fn operator_call(
    state: &AppState,
    route: Route,
    operator: &OperatorToken,
    query: Option<&str>,
    request_id: &str,
) -> Result<HttpResponse, ApiError> {
    match route {
        Route::DeliveryMetrics => operator::metrics(state, query).await,
        Route::DeliveryHealth => Ok(operator::health(state).await),
        Route::DeliveryFailures => operator::failures(state, query).await,
        Route::DeliveryEvent(id) => operator::event(state, id).await,
        Route::DeliveryReplay(id) => {
            let limit = state.replays.limit();
            let allowed = state
                .replays
                .take(operator.name.clone())
                .map_err(|retry_after| {
                    state
                        .metrics
                        .operator_refusals
                        .with_label_values(&[StatusCode::TOO_MANY_REQUESTS.as_str()])
                        .inc();
                    ApiError::RateLimited {
                        what: "replays of this token",
                        limit,
                        retry_after,
                    }
                })?;
            let mut answer = operator::replay(state, id, operator, query, request_id).await?;
            let headers = answer.headers_mut();
            headers.insert("ratelimit-limit", limit.into());
            headers.insert("ratelimit-remaining", allowed.remaining.into());
            headers.insert("ratelimit-reset", allowed.reset.as_secs().max(1).into());
            Ok(answer)
        }
        Route::Deploys => operator::deploy_list(state, query).await,
        Route::Deploy(id) => operator::deploy(state, id).await,
        other => Err(ApiError::NotFound(other.label().to_string())),
    }
}

/// Prometheus's text format; the database figures are left out when PostgreSQL is slow.
async fn metrics(state: &AppState) -> HttpResponse {
    let queue = store::within(Duration::from_secs(2), jobs::stats(&state.pool))
        .await
        .ok();
    let training = store::within(
        Duration::from_secs(2),
        store::avatars::training_stats(
            &state.pool,
            &state.avatar_sql,
            state.config.stale_training_after(),
        ),
    )
    .await
    .ok();
    let followups = store::within(Duration::from_secs(2), store::followups::stats(&state.pool))
        .await
        .ok();
    let text = state.metrics.render(
        &state.pool,
        queue.as_ref(),
        training.as_ref(),
        followups.as_ref(),
    );
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// This API's description, as committed (`services/webhook-api/openapi.json`).
fn openapi() -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(route::OPENAPI.as_bytes())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A webhook request refused for what it carried (signature, body) is kept for operators;
/// wrong paths and methods, and our own failures (5xx, retried by the sender), are not.
fn record_rejection(
    state: &AppState,
    route: Route,
    error: &ApiError,
    headers: &http::HeaderMap,
    request_id: &str,
    received: Instant,
) {
    let status = error.status();
    let refused_content = status.is_client_error()
        && !matches!(
            error,
            ApiError::NotFound(_) | ApiError::MethodNotAllowed { .. }
        );
    let Some((source, scheme)) = route.webhook_source(&state.config) else {
        return;
    };
    if !refused_content {
        return;
    }
    state.rejections.record(|| Rejection {
        source: source.to_string(),
        event_type: "unverified".into(),
        reason: format!("{}: {error}", error.code()),
        scheme: scheme.to_string(),
        status_code: status.as_u16() as i16,
        http_request_id: request_id.to_string(),
        instance_id: state.config.instance_id.clone(),
        headers: stored_headers::for_rejection(headers),
        processing_ms: received.elapsed().as_secs_f32() * 1000.0,
    });
}

/// The id nginx (or the sender) gave the request, or a fresh one.
fn request_id(request: &Request<Incoming>) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// `StatusCode::OK` with a JSON body: the common success answer.
pub(crate) fn ok_json(body: &serde_json::Value) -> HttpResponse {
    error::json_response(StatusCode::OK, body)
}
