//! The hyper service: request id, routing, metrics and logging around each handler.

mod avatar_status;
pub mod error;
mod health;
pub mod server;
mod status_update;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::cache::Cache;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{self, jobs};
use crate::verify::Verifier;
use error::{ApiError, HttpResponse};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Everything a request handler may touch, shared by all connections.
pub struct AppState {
    pub config: Config,
    pub pool: deadpool_postgres::Pool,
    /// Commits callbacks, batching those that arrive together.
    pub committer: store::group::GroupCommitter,
    pub cache: Cache,
    pub verifier: Verifier,
    pub metrics: Metrics,
    /// Set on SIGTERM: readiness answers 503 while in-flight requests finish.
    pub draining: AtomicBool,
    /// Wakes this instance's file worker when a callback enqueued a job.
    pub job_enqueued: tokio::sync::Notify,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy)]
enum Route {
    StatusUpdate,
    AvatarStatus,
    Health,
    HealthLive,
    HealthReady,
    Metrics,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::StatusUpdate => "status_update",
            Route::AvatarStatus => "avatar_status",
            Route::Health => "health",
            Route::HealthLive => "health_live",
            Route::HealthReady => "health_ready",
            Route::Metrics => "metrics",
        }
    }

    fn allowed(self) -> (&'static str, &'static [Method]) {
        match self {
            Route::StatusUpdate => ("POST", &[Method::POST]),
            _ => ("GET, HEAD", &[Method::GET, Method::HEAD]),
        }
    }

    fn resolve(path: &str) -> Option<Route> {
        Some(match path {
            "/api/v1/avatar/status_update" => Route::StatusUpdate,
            "/health" => Route::Health,
            "/health/live" => Route::HealthLive,
            "/health/ready" => Route::HealthReady,
            "/metrics" => Route::Metrics,
            p if avatar_status::avatar_id_segment(p).is_some() => Route::AvatarStatus,
            _ => return None,
        })
    }
}

/// The service function: never fails, every error becomes a JSON answer.
pub async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let started = Instant::now();
    let request_id = request_id(&request);
    let method = request.method().clone();
    let route = Route::resolve(request.uri().path());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %request.uri().path(),
    );
    let mut response = dispatch(&state, route, request, &request_id)
        .instrument(span.clone())
        .await
        .unwrap_or_else(|e| span.in_scope(|| e.into_response()));

    let label = route.map_or("unknown", Route::label);
    let status = response.status();
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
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    if matches!(route, Some(Route::StatusUpdate)) {
        span.in_scope(|| {
            tracing::info!(
                status = status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "answered"
            )
        });
    }
    Ok(response)
}

async fn dispatch(
    state: &AppState,
    route: Option<Route>,
    request: Request<Incoming>,
    request_id: &str,
) -> Result<HttpResponse, ApiError> {
    let route = route.ok_or_else(|| ApiError::NotFound(request.uri().path().to_string()))?;
    let (allow, methods) = route.allowed();
    if !methods.contains(request.method()) {
        return Err(ApiError::MethodNotAllowed { allow });
    }
    match route {
        Route::StatusUpdate => status_update::handle(state, request, request_id).await,
        Route::AvatarStatus => avatar_status::handle(state, request.uri().path()).await,
        Route::Health => Ok(health::full(state).await),
        Route::HealthLive => Ok(health::live()),
        Route::HealthReady => Ok(health::ready(state).await),
        Route::Metrics => {
            let queue = store::within(Duration::from_secs(2), jobs::stats(&state.pool))
                .await
                .ok();
            let text = state.metrics.render(&state.pool, queue.as_ref());
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(response)
        }
    }
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
