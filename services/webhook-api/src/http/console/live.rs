//! The live tail: the page with the newest deliveries, and its stream of each new one as it is
//! committed (bounded per session and instance: `live_tails`).

use std::sync::Arc;

use http::StatusCode;

use super::context::Context;
use super::error::ConsoleError;
use super::pages;
use super::response::{html, tail_refused};
use super::stream;
use crate::http::error::HttpResponse;
use crate::http::{AppState, ServiceBody};
use crate::store::{self, console};

pub(super) async fn page(cx: &Context<'_>) -> Result<HttpResponse, ConsoleError> {
    let state = cx.state;
    let limit = state.config.database.statement_timeout;
    let newest = store::within(limit, console::newest_id(&state.pool)).await?;
    let since = console::since(&state.pool, (newest - 20).max(0), 20);
    let recent = store::within(limit, since).await?;
    Ok(html(
        StatusCode::OK,
        pages::live(&cx.viewer, &recent, newest),
    ))
}

/// The stream, from where the browser says it was (`Last-Event-ID` on a reconnect, `after`
/// from the page), or from now on.
pub(super) async fn stream(
    state: &Arc<AppState>,
    cx: &Context<'_>,
) -> Result<http::Response<ServiceBody>, ConsoleError> {
    let asked = cx
        .parts
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .or_else(|| {
            crate::http::query::optional_number(cx.query(), "after")
                .ok()
                .flatten()
        });
    // Without a place to start, from now on (not from the first delivery ever stored).
    let after = match asked {
        Some(after) => after,
        None => {
            let limit = state.config.database.statement_timeout;
            store::within(limit, console::newest_id(&state.pool)).await?
        }
    };
    Ok(match state.live_tails.open(cx.signed_in.id_sha256) {
        Ok(tail) => stream::live(state.clone(), tail, after),
        Err(refused) => tail_refused(&refused).map(http_body_util::Either::Left),
    })
}
