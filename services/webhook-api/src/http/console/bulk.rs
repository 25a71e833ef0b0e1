//! Replays of every delivery a filter matches: the count first, then the job's page, its
//! cancel, and the list (`tasks::console_replays` works through them).

use http::StatusCode;
use hyper::body::Incoming;

use super::context::{field, Context};
use super::error::ConsoleError;
use super::filter::FilterForm;
use super::pages;
use super::response::{html, redirect};
use crate::config::Scope;
use crate::http::error::HttpResponse;
use crate::http::record_audit;
use crate::store::{self, console};

/// Before a bulk replay: how many deliveries the filter matches (counted up to the cap).
pub(super) async fn new(cx: &Context<'_>) -> Result<HttpResponse, ConsoleError> {
    cx.require(Scope::Replay)?;
    let state = cx.state;
    let form = FilterForm::from_query(cx.query());
    let (filter, _) = form.filter().map_err(ConsoleError::BadRequest)?;
    let console = &state.config.console;
    let limit = state.config.database.statement_timeout;
    let newest = store::within(limit, console::newest_id(&state.pool)).await?;
    let most = i64::from(console.bulk_replay_max) + 1;
    let counted = console::count_up_to(
        &state.pool,
        &filter,
        newest + 1,
        most,
        console.query_timeout,
    )
    .await;
    Ok(match counted {
        Ok(matching) => html(
            StatusCode::OK,
            pages::bulk_new(&cx.viewer, &form.query(), matching, console.bulk_replay_max),
        ),
        Err(console::SearchError::TooSlow(budget)) => html(
            StatusCode::OK,
            pages::problem(
                Some(&cx.viewer),
                "Replay all matching",
                &format!("Counting what this filter matches took longer than {} ms: narrow it with a source, a time range or an id.", budget.as_millis()),
            ),
        ),
        Err(console::SearchError::Store(e)) => return Err(e.into()),
    })
}

pub(super) async fn start(cx: &Context<'_>, body: Incoming) -> Result<HttpResponse, ConsoleError> {
    let state = cx.state;
    let form = cx.action_form(body, Scope::Replay).await?;
    let filter_query = field(&form, "filter").unwrap_or("");
    let filter_form = FilterForm::from_query(Some(filter_query));
    let (mut filter, _) = filter_form.filter().map_err(ConsoleError::BadRequest)?;
    // A time range is read in time order, so an open one ends now: the set stays fixed.
    if filter.since.is_some() && filter.until.is_none() {
        filter.until = Some(chrono::Utc::now());
    }
    let max = state.config.console.bulk_replay_max;
    let cap = match field(&form, "cap").and_then(|c| c.trim().parse::<i32>().ok()) {
        Some(cap) if (1..=max).contains(&cap) => cap,
        _ => {
            return Err(ConsoleError::BadRequest(format!(
                "The cap must be a whole number from 1 to {max}."
            )))
        }
    };
    let limit = state.config.database.statement_timeout;
    let budget = state.config.console.query_timeout;
    let queued = async {
        // The set is what is stored now: deliveries that arrive later are not replayed.
        let cursor = console::newest_id(&state.pool).await? + 1;
        let estimate = console::count_up_to(&state.pool, &filter, cursor, i64::from(cap), budget)
            .await
            .unwrap_or(i64::from(cap));
        console::queue_replay(
            &state.pool,
            cx.operator(),
            &filter,
            &filter_form.query(),
            estimate,
            cap,
            cursor,
        )
        .await
    };
    let id = store::within(limit + budget, queued).await?;
    state.ingest.bulk_replay_queued.notify_one();
    let target = format!("/console/replays/{id}?{}", filter_form.query());
    record_audit(
        state,
        "console_bulk_replay",
        cx.operator(),
        &target,
        StatusCode::SEE_OTHER,
        cx.request_id,
    )
    .await;
    Ok(redirect(&format!("/console/replays/{id}")))
}

pub(super) async fn one(cx: &Context<'_>, id: i64) -> Result<HttpResponse, ConsoleError> {
    let limit = cx.state.config.database.statement_timeout;
    let job = store::within(limit, console::replay_job(&cx.state.pool, id))
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no bulk replay {id}.")))?;
    Ok(html(StatusCode::OK, pages::bulk_one(&cx.viewer, &job)))
}

pub(super) async fn list(cx: &Context<'_>) -> Result<HttpResponse, ConsoleError> {
    let limit = cx.state.config.database.statement_timeout;
    let jobs = store::within(limit, console::replay_jobs(&cx.state.pool, 100)).await?;
    Ok(html(StatusCode::OK, pages::bulk_list(&cx.viewer, &jobs)))
}

pub(super) async fn cancel(
    cx: &Context<'_>,
    body: Incoming,
    id: i64,
) -> Result<HttpResponse, ConsoleError> {
    cx.action_form(body, Scope::Replay).await?;
    let limit = cx.state.config.database.statement_timeout;
    let status = match store::within(limit, console::cancel_replay(&cx.state.pool, id)).await? {
        true => StatusCode::SEE_OTHER,
        false => StatusCode::CONFLICT,
    };
    let target = cx.parts.uri.path();
    record_audit(
        cx.state,
        "console_bulk_cancel",
        cx.operator(),
        target,
        status,
        cx.request_id,
    )
    .await;
    Ok(redirect(&format!("/console/replays/{id}")))
}
