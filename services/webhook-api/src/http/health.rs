//! Health for load balancers and operators. PostgreSQL down is a failure (503: nothing can be
//! acknowledged but what the spool keeps); Redis down, or deliveries waiting in the spool, only
//! degrade (webhooks are still accepted). The details (versions, queue, spool, pool) are for
//! operator tokens only.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use super::error::{json_response, HttpResponse};
use super::AppState;
use crate::store::{self, jobs};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn live() -> HttpResponse {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

pub async fn ready(state: &AppState) -> HttpResponse {
    if state.is_draining() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "draining" }),
        );
    }
    match store::within(CHECK_TIMEOUT, store::ping(&state.pool)).await {
        Ok(()) => json_response(StatusCode::OK, &json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "status": "not_ready", "reason": "database unavailable" }),
            )
        }
    }
}

/// What anyone may know: ok, degraded (Redis down) or fail (503, PostgreSQL down). Two pings,
/// no table read, so a flood of it costs little.
pub async fn public(state: &AppState) -> HttpResponse {
    let (postgres, redis) = tokio::join!(
        store::within(CHECK_TIMEOUT, store::ping(&state.pool)),
        state.cache.ping(),
    );
    let (overall, status) = match (postgres, redis) {
        (Err(_), _) => ("fail", StatusCode::SERVICE_UNAVAILABLE),
        (Ok(()), Err(_)) => ("degraded", StatusCode::OK),
        (Ok(()), Ok(())) if spool_in_use(state) => ("degraded", StatusCode::OK),
        (Ok(()), Ok(())) => ("ok", StatusCode::OK),
    };
    json_response(status, &json!({ "status": overall }))
}

/// Everything, for a `read` token: versions, checks with latencies, the file queue, the pool.
pub async fn full(state: &AppState) -> HttpResponse {
    let (postgres, redis, queue, followups) = tokio::join!(
        timed(store::within(CHECK_TIMEOUT, store::ping(&state.pool))),
        // The cache bounds its own calls by REDIS_TIMEOUT_MS.
        timed(state.cache.ping()),
        store::within(CHECK_TIMEOUT, jobs::stats(&state.pool)),
        store::within(CHECK_TIMEOUT, store::followups::stats(&state.pool)),
    );
    let dead =
        queue.as_ref().map_or(0, |q| q.dead) + followups.as_ref().map_or(0, |f| f.count("dead"));
    let (overall, status) = match (&postgres.0, &redis.0) {
        (Err(_), _) => ("fail", StatusCode::SERVICE_UNAVAILABLE),
        (Ok(()), Err(_)) => ("degraded", StatusCode::OK),
        (Ok(()), Ok(())) if dead > 0 || spool_in_use(state) => ("degraded", StatusCode::OK),
        (Ok(()), Ok(())) => ("ok", StatusCode::OK),
    };
    let file_jobs = match &queue {
        Ok(q) => json!({
            "status": if q.dead > 0 { "degraded" } else { "ok" },
            "pending": q.pending,
            "running": q.running,
            "failed": q.failed,
            "dead": q.dead,
            "oldest_pending_age_secs": q.oldest_pending_age_secs,
        }),
        Err(e) => json!({ "status": "unknown", "error": e.to_string() }),
    };
    let followups = match &followups {
        Ok(f) => json!({
            "status": if f.count("dead") > 0 { "degraded" } else { "ok" },
            "pending": f.count("pending"),
            "running": f.count("running"),
            "failed": f.count("failed"),
            "dead": f.count("dead"),
            "by_kind": f.counts.iter().map(|(kind, state, n)| json!({
                "kind": kind, "state": state, "count": n,
            })).collect::<Vec<_>>(),
        }),
        Err(e) => json!({ "status": "unknown", "error": e.to_string() }),
    };
    let pool = state.pool.status();
    json_response(
        status,
        &json!({
            "status": overall,
            "instance_id": state.config.instance_id,
            "version": env!("CARGO_PKG_VERSION"),
            "build": state.config.build,
            "draining": state.is_draining(),
            "checks": {
                "postgres": check_json(&postgres),
                "redis": check_json(&redis),
                "file_jobs": file_jobs,
                "followups": followups,
                "spool": spool_json(state),
            },
            "db_pool": { "size": pool.size, "available": pool.available, "waiting": pool.waiting },
        }),
    )
}

/// Deliveries wait in the spool (PostgreSQL was away), or some it could not take are held.
fn spool_in_use(state: &AppState) -> bool {
    state.spool.as_ref().is_some_and(|spool| {
        let usage = spool.usage();
        usage.waiting > 0 || usage.held > 0
    })
}

fn spool_json(state: &AppState) -> serde_json::Value {
    let Some(spool) = &state.spool else {
        return json!({ "status": "off" });
    };
    let usage = spool.usage();
    json!({
        "status": if spool_in_use(state) { "degraded" } else { "ok" },
        "waiting": usage.waiting,
        "bytes": usage.bytes,
        "max_bytes": spool.max_bytes(),
        "held": usage.held,
    })
}

async fn timed<E>(
    check: impl std::future::Future<Output = Result<(), E>>,
) -> (Result<(), E>, Duration) {
    let started = Instant::now();
    let result = check.await;
    (result, started.elapsed())
}

fn check_json<E: std::fmt::Display>(
    (result, latency): &(Result<(), E>, Duration),
) -> serde_json::Value {
    let latency_ms = (latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    match result {
        Ok(()) => json!({ "status": "ok", "latency_ms": latency_ms }),
        Err(e) => json!({ "status": "fail", "latency_ms": latency_ms, "error": e.to_string() }),
    }
}
