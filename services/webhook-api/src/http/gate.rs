//! The operators' door: the token of an operator call (refused calls counted per client
//! address, as nginx reports it, and answered 429 past the limit), and the audit of every
//! operator action, the API's and the console's.

use std::net::IpAddr;

use http::StatusCode;

use super::error::ApiError;
use super::route::Route;
use super::{auth, AppState};
use crate::config::{OperatorToken, Scope};
use crate::store;

/// The token of an operator call, or why it is refused. Every refusal is logged (with the
/// token's name when it is valid) and counted; a valid token without the scope is audited
/// too. An address past its refusals for the minute is answered 429 before its token is
/// read, so guessing tokens is slow whatever is guessed.
pub(super) async fn authorize<'a>(
    state: &'a AppState,
    route: Route,
    scope: Scope,
    parts: &http::request::Parts,
    peer: IpAddr,
    request_id: &str,
) -> Result<&'a OperatorToken, ApiError> {
    let count = |status: StatusCode| {
        state
            .metrics
            .operator_refusals
            .with_label_values(&[status.as_str()])
            .inc()
    };
    let peer = client_address(state, peer, &parts.headers);
    let limits = &state.refused_operators;
    if let Some(retry_after) = limits.exhausted(&peer) {
        count(StatusCode::TOO_MANY_REQUESTS);
        return Err(ApiError::RateLimited {
            what: "refused operator calls from this address",
            limit: limits.limit(),
            retry_after,
        });
    }
    let refusal = match auth::require(&state.config.operator_tokens, &parts.headers, scope) {
        Ok(token) => return Ok(token),
        Err(refusal) => refusal,
    };
    count(refusal.status());
    let action = route.label();
    match &refusal {
        ApiError::Forbidden { token, .. } => {
            tracing::warn!(token = %token, action, %peer, scope = scope.as_str(), "operator call refused: the token lacks the scope");
            audit(state, route, token, parts, refusal.status(), request_id).await;
        }
        _ => tracing::warn!(action, %peer, "operator call refused: no valid token"),
    }
    if limits.take(peer).map_or(true, |left| left.remaining == 0) {
        tracing::warn!(%peer, limit = limits.limit(), "refused operator calls from this address reached OPERATOR_REFUSALS_PER_MINUTE: it is answered 429 until its minute is over");
    }
    Err(refusal)
}

/// Who sent the request: the TCP peer, or behind nginx (a `TRUSTED_PROXIES` address) the
/// client nginx heard from, so one address's refusals never lock every operator out.
pub(super) fn client_address(state: &AppState, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    state
        .config
        .trusted_proxies
        .client_address(peer, &forwarded)
}

/// A line in the log and a row in `operator_audit`; a row that cannot be written is logged.
pub(super) async fn audit(
    state: &AppState,
    route: Route,
    token_name: &str,
    parts: &http::request::Parts,
    status: StatusCode,
    request_id: &str,
) {
    let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
    record_audit(state, route.label(), token_name, target, status, request_id).await;
}

/// An operator's action (the API's or the console's) in the log and in `operator_audit`.
pub(crate) async fn record_audit(
    state: &AppState,
    action: &str,
    token_name: &str,
    target: &str,
    status: StatusCode,
    request_id: &str,
) {
    tracing::info!(
        token = %token_name,
        action,
        target,
        status = status.as_u16(),
        "operator call"
    );
    let entry = store::audit::AuditEntry {
        token_name,
        action,
        target,
        status_code: status.as_u16() as i16,
        instance_id: &state.config.instance_id,
        http_request_id: request_id,
    };
    let written = store::within(
        state.config.database.statement_timeout,
        store::audit::record(&state.pool, &entry),
    )
    .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, token = %token_name, "audit row not written");
    }
}
