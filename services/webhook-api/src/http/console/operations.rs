//! Operations: avatars in training, file jobs (retry), this instance's spool, deploys and their
//! output, and the front page's chart.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::chart as draw;
use super::context::Context;
use super::error::ConsoleError;
use super::pages;
use super::response::{html, redirect, secure_headers};
use crate::config::Scope;
use crate::http::error::HttpResponse;
use crate::http::record_audit;
use crate::store::jobs::JobState;
use crate::store::{self, console};

/// `span=hour` (a bar a minute) or `span=day` (a bar each half hour).
pub(super) async fn chart(cx: &Context<'_>) -> Result<HttpResponse, ConsoleError> {
    let (span, buckets) = match crate::http::query::param(cx.query(), "span") {
        Some("day") => (chrono::Duration::days(1), 48),
        _ => (chrono::Duration::hours(1), 60),
    };
    let limit = cx.state.config.console.query_timeout;
    let read = console::chart(&cx.state.pool, span.to_std().unwrap_or_default(), buckets);
    let rows = store::within(limit, read).await?;
    let svg = draw::svg(&rows, span, buckets, chrono::Utc::now());
    let mut response = Response::new(Full::new(Bytes::from(svg)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    secure_headers(headers);
    Ok(response)
}

pub(super) async fn page(cx: &Context<'_>) -> Result<HttpResponse, ConsoleError> {
    let state = cx.state;
    let limit = state.config.database.statement_timeout;
    let read = async {
        let trainings = console::trainings(&state.pool, &state.avatar_sql, 200).await?;
        let mut jobs = store::jobs::list(&state.pool, Some(JobState::Dead), 100).await?;
        jobs.extend(store::jobs::list(&state.pool, Some(JobState::Failed), 100).await?);
        jobs.extend(
            store::jobs::list(&state.pool, None, 50)
                .await?
                .into_iter()
                .filter(|j| !j.state.retryable()),
        );
        let deploys = match cx.signed_in.token.allows(Scope::Deploy) {
            true => Some(store::deploys::list(&state.pool, 50).await?),
            false => None,
        };
        Ok::<_, store::StoreError>((trainings, jobs, deploys))
    };
    let (trainings, jobs, deploys) = store::within(limit, read).await?;
    let spool = state.spool.as_ref().map(|s| {
        let usage = s.usage();
        (usage.waiting, usage.bytes, usage.held)
    });
    Ok(html(
        StatusCode::OK,
        pages::operations(
            &cx.viewer,
            &trainings,
            &jobs,
            spool,
            &state.config.instance_id,
            deploys.as_deref(),
        ),
    ))
}

pub(super) async fn job_retry(
    cx: &Context<'_>,
    body: Incoming,
    id: i64,
) -> Result<HttpResponse, ConsoleError> {
    cx.action_form(body, Scope::Replay).await?;
    let state = cx.state;
    let limit = state.config.database.statement_timeout;
    let status = match store::within(limit, store::jobs::requeue(&state.pool, Some(id))).await? {
        1 => StatusCode::SEE_OTHER,
        _ => StatusCode::CONFLICT,
    };
    state.ingest.job_enqueued.notify_one();
    let target = cx.parts.uri.path();
    record_audit(
        state,
        "console_job_retry",
        cx.operator(),
        target,
        status,
        cx.request_id,
    )
    .await;
    Ok(redirect("/console/operations"))
}

pub(super) async fn deploy(cx: &Context<'_>, id: i64) -> Result<HttpResponse, ConsoleError> {
    cx.require(Scope::Deploy)?;
    let state = cx.state;
    let limit = state.config.database.statement_timeout;
    let answer = match store::within(limit, store::deploys::get(&state.pool, id)).await? {
        Some(d) => html(StatusCode::OK, pages::deploy(&cx.viewer, &d)),
        None => {
            ConsoleError::NotFound(format!("There is no deploy {id}.")).render(Some(&cx.viewer))
        }
    };
    // Deploy output is read like the API's deploys: audited.
    let target = format!("/console/deploys/{id}");
    record_audit(
        state,
        "console_deploy",
        cx.operator(),
        &target,
        answer.status(),
        cx.request_id,
    )
    .await;
    Ok(answer)
}
