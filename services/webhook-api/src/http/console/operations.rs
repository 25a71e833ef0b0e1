//! Operations: avatars in training, file jobs (retry), this instance's spool, deploys and their
//! output, and the front page's chart.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::pages::{self, Viewer};
use super::session::SignedIn;
use super::{action_form, chart as draw, html, no_scope, redirect, secure_headers, unavailable};
use crate::config::Scope;
use crate::http::error::HttpResponse;
use crate::http::{record_audit, AppState};
use crate::store::{self, console};

/// `span=hour` (a bar a minute) or `span=day` (a bar each half hour).
pub(super) async fn chart(
    state: &AppState,
    viewer: &Viewer<'_>,
    query: Option<&str>,
) -> HttpResponse {
    let (span, buckets) = match crate::http::query::param(query, "span") {
        Some("day") => (chrono::Duration::days(1), 48),
        _ => (chrono::Duration::hours(1), 60),
    };
    let limit = state.config.console.query_timeout;
    let rows = store::within(
        limit,
        console::chart(&state.pool, span.to_std().unwrap_or_default(), buckets),
    )
    .await;
    match rows {
        Ok(rows) => {
            let svg = draw::svg(&rows, span, buckets, chrono::Utc::now());
            let mut response = Response::new(Full::new(Bytes::from(svg)));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            );
            secure_headers(headers);
            response
        }
        Err(e) => unavailable(Some(viewer), &e.to_string()),
    }
}

pub(super) async fn operations(
    state: &AppState,
    signed_in: &SignedIn<'_>,
    viewer: &Viewer<'_>,
) -> HttpResponse {
    let limit = state.config.database.statement_timeout;
    let read = async {
        let trainings = console::trainings(&state.pool, &state.avatar_sql, 200).await?;
        let mut jobs = store::jobs::list(&state.pool, Some("dead"), 100).await?;
        jobs.extend(store::jobs::list(&state.pool, Some("failed"), 100).await?);
        jobs.extend(
            store::jobs::list(&state.pool, None, 50)
                .await?
                .into_iter()
                .filter(|j| !matches!(j.state.as_str(), "dead" | "failed")),
        );
        let deploys = match signed_in.token.allows(Scope::Deploy) {
            true => Some(store::deploys::list(&state.pool, 50).await?),
            false => None,
        };
        Ok::<_, store::StoreError>((trainings, jobs, deploys))
    };
    match store::within(limit, read).await {
        Ok((trainings, jobs, deploys)) => {
            let spool = state.spool.as_ref().map(|s| {
                let usage = s.usage();
                (usage.waiting, usage.bytes, usage.held)
            });
            html(
                StatusCode::OK,
                pages::operations(
                    viewer,
                    &trainings,
                    &jobs,
                    spool,
                    &state.config.instance_id,
                    deploys.as_deref(),
                ),
            )
        }
        Err(e) => unavailable(Some(viewer), &e.to_string()),
    }
}

pub(super) async fn job_retry(
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
    let status = match store::within(limit, store::jobs::requeue(&state.pool, Some(id))).await {
        Ok(1) => StatusCode::SEE_OTHER,
        Ok(_) => StatusCode::CONFLICT,
        Err(e) => return unavailable(Some(viewer), &e.to_string()),
    };
    state.ingest.job_enqueued.notify_one();
    record_audit(
        state,
        "console_job_retry",
        &signed_in.token.name,
        parts.uri.path(),
        status,
        request_id,
    )
    .await;
    redirect("/console/operations")
}

pub(super) async fn deploy(
    state: &AppState,
    signed_in: &SignedIn<'_>,
    viewer: &Viewer<'_>,
    id: i64,
    request_id: &str,
) -> HttpResponse {
    if !signed_in.token.allows(Scope::Deploy) {
        return no_scope(viewer, Scope::Deploy);
    }
    let limit = state.config.database.statement_timeout;
    let answer = match store::within(limit, store::deploys::get(&state.pool, id)).await {
        Ok(Some(d)) => html(StatusCode::OK, pages::deploy(viewer, &d)),
        Ok(None) => html(
            StatusCode::NOT_FOUND,
            pages::problem(
                Some(viewer),
                "Not found",
                &format!("There is no deploy {id}."),
            ),
        ),
        Err(e) => return unavailable(Some(viewer), &e.to_string()),
    };
    // Deploy output is read like the API's deploys: audited.
    record_audit(
        state,
        "console_deploy",
        &signed_in.token.name,
        &format!("/console/deploys/{id}"),
        answer.status(),
        request_id,
    )
    .await;
    answer
}
