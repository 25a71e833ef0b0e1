//! The deliveries of every source, newest first, by filter and cursor (with the front page's
//! charts), and a filter's deliveries exported as NDJSON.

use std::sync::Arc;

use http::StatusCode;

use super::context::Context;
use super::error::ConsoleError;
use super::filter::FilterForm;
use super::pages;
use super::response::html;
use super::stream;
use crate::http::error::HttpResponse;
use crate::http::{record_audit, AppState, ServiceBody};
use crate::store::{self, console};

pub(super) async fn list(cx: &Context<'_>) -> Result<HttpResponse, ConsoleError> {
    let (state, query) = (cx.state, cx.query());
    let form = FilterForm::from_query(query);
    let sources: Vec<String> = std::iter::once("fal".to_string())
        .chain(state.config.sources.iter().map(|s| s.name.clone()))
        .collect();
    let limit = state.config.console.page_size;
    let budget = state.config.console.query_timeout;
    let indexes_ready = store::within(budget, console::indexes_ready(&state.pool))
        .await
        .unwrap_or(true);
    let (status, page) = match form.filter() {
        Err(problem) => (StatusCode::BAD_REQUEST, Err(problem)),
        Ok((filter, before)) => {
            let search = console::deliveries(
                &state.pool,
                &filter,
                before,
                limit,
                budget,
                console::Columns::Summary,
            );
            // The statement's own timeout ends it first; this bounds waiting for a connection.
            match tokio::time::timeout(budget * 2, search).await {
                Ok(Ok(page)) => (StatusCode::OK, Ok(page)),
                Ok(Err(console::SearchError::TooSlow(_))) | Err(_) => (
                    StatusCode::OK,
                    Err(format!(
                        "This search would take longer than {} ms over the stored deliveries: \
                         narrow it with a source, a time range or an id.",
                        budget.as_millis()
                    )),
                ),
                Ok(Err(console::SearchError::Store(e))) => return Err(e.into()),
            }
        }
    };
    let result = match &page {
        Ok(page) => Ok(page),
        Err(problem) => Err(problem.as_str()),
    };
    // The charts on the front page only (an image of its own: the list does not wait for it).
    let unfiltered = form.query().is_empty() && form.before.is_empty();
    let span = match crate::http::query::param(query, "chart") {
        Some("day") => "day",
        _ => "hour",
    };
    let chart = unfiltered.then_some(span);
    Ok(html(
        status,
        pages::deliveries(&cx.viewer, &sources, &form, result, indexes_ready, chart),
    ))
}

/// Every delivery the filter matches as NDJSON, streamed (audited).
pub(super) async fn export(
    state: &Arc<AppState>,
    cx: &Context<'_>,
) -> Result<http::Response<ServiceBody>, ConsoleError> {
    let form = FilterForm::from_query(cx.query());
    let (filter, _) = form.filter().map_err(ConsoleError::BadRequest)?;
    let target = format!("/console/export?{}", form.query());
    record_audit(
        state,
        "console_export",
        cx.operator(),
        &target,
        StatusCode::OK,
        cx.request_id,
    )
    .await;
    let file_name = format!(
        "deliveries-{}.ndjson",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    Ok(stream::export(state.clone(), filter, file_name))
}
