//! Replays of every delivery a filter matches: the count first, then the job's page, its
//! cancel, and the list (`tasks::console_replays` works through them).

use http::StatusCode;
use hyper::body::Incoming;

use super::filter::FilterForm;
use super::pages::{self, Viewer};
use super::session::SignedIn;
use super::{action_form, bad_form, field, html, no_scope, redirect, unavailable};
use crate::config::Scope;
use crate::http::error::HttpResponse;
use crate::http::{record_audit, AppState};
use crate::store::{self, console};

/// Before a bulk replay: how many deliveries the filter matches (counted up to the cap).
pub(super) async fn bulk_new(
    state: &AppState,
    viewer: &Viewer<'_>,
    query: Option<&str>,
) -> HttpResponse {
    if !viewer.may_replay {
        return no_scope(viewer, Scope::Replay);
    }
    let form = FilterForm::from_query(query);
    let filter = match form.filter() {
        Ok((filter, _)) => filter,
        Err(problem) => return bad_form(viewer, &problem),
    };
    let console = &state.config.console;
    let limit = state.config.database.statement_timeout;
    let newest = match store::within(limit, console::newest_id(&state.pool)).await {
        Ok(newest) => newest,
        Err(e) => return unavailable(Some(viewer), &e.to_string()),
    };
    let most = i64::from(console.bulk_replay_max) + 1;
    match console::count_up_to(&state.pool, &filter, newest + 1, most, console.query_timeout).await {
        Ok(matching) => html(
            StatusCode::OK,
            pages::bulk_new(viewer, &form.query(), matching, console.bulk_replay_max),
        ),
        Err(console::SearchError::TooSlow(budget)) => html(
            StatusCode::OK,
            pages::problem(
                Some(viewer),
                "Replay all matching",
                &format!("Counting what this filter matches took longer than {} ms: narrow it with a source, a time range or an id.", budget.as_millis()),
            ),
        ),
        Err(console::SearchError::Store(e)) => unavailable(Some(viewer), &e.to_string()),
    }
}

pub(super) async fn bulk_start(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    signed_in: &SignedIn<'_>,
    viewer: &Viewer<'_>,
    request_id: &str,
) -> HttpResponse {
    let form = match action_form(state, parts, body, signed_in, viewer, Scope::Replay).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    let filter_query = field(&form, "filter").unwrap_or("");
    let filter_form = FilterForm::from_query(Some(filter_query));
    let mut filter = match filter_form.filter() {
        Ok((filter, _)) => filter,
        Err(problem) => return bad_form(viewer, &problem),
    };
    // A time range is read in time order, so an open one ends now: the set stays fixed.
    if filter.since.is_some() && filter.until.is_none() {
        filter.until = Some(chrono::Utc::now());
    }
    let max = state.config.console.bulk_replay_max;
    let cap = match field(&form, "cap").and_then(|c| c.trim().parse::<i32>().ok()) {
        Some(cap) if (1..=max).contains(&cap) => cap,
        _ => {
            return bad_form(
                viewer,
                &format!("The cap must be a whole number from 1 to {max}."),
            )
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
            &signed_in.token.name,
            &filter,
            &filter_form.query(),
            estimate,
            cap,
            cursor,
        )
        .await
    };
    let id = match store::within(limit + budget, queued).await {
        Ok(id) => id,
        Err(e) => return unavailable(Some(viewer), &e.to_string()),
    };
    state.ingest.bulk_replay_queued.notify_one();
    let target = format!("/console/replays/{id}?{}", filter_form.query());
    record_audit(
        state,
        "console_bulk_replay",
        &signed_in.token.name,
        &target,
        StatusCode::SEE_OTHER,
        request_id,
    )
    .await;
    redirect(&format!("/console/replays/{id}"))
}

pub(super) async fn bulk_one(state: &AppState, viewer: &Viewer<'_>, id: i64) -> HttpResponse {
    let limit = state.config.database.statement_timeout;
    match store::within(limit, console::replay_job(&state.pool, id)).await {
        Ok(Some(job)) => html(StatusCode::OK, pages::bulk_one(viewer, &job)),
        Ok(None) => html(
            StatusCode::NOT_FOUND,
            pages::problem(
                Some(viewer),
                "Not found",
                &format!("There is no bulk replay {id}."),
            ),
        ),
        Err(e) => unavailable(Some(viewer), &e.to_string()),
    }
}

pub(super) async fn bulk_list(state: &AppState, viewer: &Viewer<'_>) -> HttpResponse {
    let limit = state.config.database.statement_timeout;
    match store::within(limit, console::replay_jobs(&state.pool, 100)).await {
        Ok(jobs) => html(StatusCode::OK, pages::bulk_list(viewer, &jobs)),
        Err(e) => unavailable(Some(viewer), &e.to_string()),
    }
}

pub(super) async fn bulk_cancel(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    signed_in: &SignedIn<'_>,
    viewer: &Viewer<'_>,
    id: i64,
    request_id: &str,
) -> HttpResponse {
    if let Err(refused) = action_form(state, parts, body, signed_in, viewer, Scope::Replay).await {
        return refused;
    }
    let limit = state.config.database.statement_timeout;
    let status = match store::within(limit, console::cancel_replay(&state.pool, id)).await {
        Ok(true) => StatusCode::SEE_OTHER,
        Ok(false) => StatusCode::CONFLICT,
        Err(e) => return unavailable(Some(viewer), &e.to_string()),
    };
    record_audit(
        state,
        "console_bulk_cancel",
        &signed_in.token.name,
        parts.uri.path(),
        status,
        request_id,
    )
    .await;
    redirect(&format!("/console/replays/{id}"))
}
