//! The console's pages, rendered on the server (maud escapes every value). No inline script or
//! style: the one script and the one stylesheet are served from `/console/static/`.

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::filter::FilterForm;
use crate::avatar::{status_set_by, AvatarStatus};
use crate::store::console::{AuditRow, BulkReplay, Consequences, DeliveryPage, Training};
use crate::store::deliveries::EventOutcome;
use crate::store::deploys::DeployRow;
use crate::store::event_views::EventRow;
use crate::store::jobs::JobSummary;

/// Who is signed in, and what the page's forms need.
pub struct Viewer<'a> {
    pub token_name: &'a str,
    pub csrf: &'a str,
    pub may_replay: bool,
}

fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · webhook console" }
                // No favicon request (it would be a 404 outside /console).
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console/" { "webhook console" }
                    @if let Some(viewer) = viewer {
                        nav {
                            a href="/console/" { "Deliveries" }
                            a href="/console/live" { "Live" }
                            a href="/console/replays" { "Bulk replays" }
                            a href="/console/operations" { "Operations" }
                            a href="/console/audit" { "Audit log" }
                        }
                        form.signout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            span.who { "signed in as " strong { (viewer.token_name) } }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(message: Option<&str>, problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            section.login {
                h1 { "Sign in" }
                @if let Some(message) = message { p.notice { (message) } }
                @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
                form method="post" action="/console/login" {
                    label for="token" { "Operator token" }
                    input #token type="password" name="token" autocomplete="off" required autofocus;
                    button type="submit" { "Sign in" }
                }
                p.hint { "A token of OPERATOR_TOKENS (read to look, replay to replay). It is exchanged for a session cookie and never stored." }
            }
        },
    )
}

/// A page that could not be shown: why, in words.
pub fn problem(viewer: Option<&Viewer<'_>>, title: &str, why: &str) -> Markup {
    layout(
        title,
        viewer,
        html! {
            h1 { (title) }
            p.problem role="alert" { (why) }
            p { a href="/console/" { "Back to the deliveries" } }
        },
    )
}

fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn outcome_class(outcome: EventOutcome) -> &'static str {
    match outcome {
        EventOutcome::Applied | EventOutcome::Accepted => "ok",
        EventOutcome::Ignored => "quiet",
        EventOutcome::Unmatched | EventOutcome::Rejected | EventOutcome::Failed => "bad",
    }
}

pub fn deliveries(
    viewer: &Viewer<'_>,
    sources: &[String],
    form: &FilterForm,
    result: Result<&DeliveryPage, &str>,
    indexes_ready: bool,
    chart: Option<&str>,
) -> Markup {
    let select = |name: &str, value: &str, options: &[String]| {
        html! {
            select name=(name) {
                option value="" selected[value.is_empty()] { "any" }
                @for option in options {
                    option value=(option) selected[option == value] { (option) }
                }
            }
        }
    };
    let outcomes: Vec<String> = EventOutcome::names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    layout(
        "Deliveries",
        Some(viewer),
        html! {
            h1 { "Deliveries" }
            @if let Some(span) = chart {
                figure.chart {
                    img src={ "/console/charts/deliveries.svg?span=" (span) } alt={ "Deliveries of the last " (span) ", by source, with their time to store" } width="960" height="340";
                    figcaption {
                        "The last " (span) ". "
                        @if span == "hour" { a href="/console/?chart=day" { "The last day" } } @else { a href="/console/" { "The last hour" } }
                    }
                }
            }
            form.filters method="get" action="/console/" {
                label { "Source " (select("source", &form.source, sources)) }
                label { "Event " input type="text" name="event" value=(form.event) placeholder="push, completed…"; }
                label { "Outcome " (select("outcome", &form.outcome, &outcomes)) }
                label { "From (UTC) " input type="datetime-local" name="since" value=(form.since); }
                label { "To (UTC) " input type="datetime-local" name="until" value=(form.until); }
                label { "Delivery id " input type="text" name="delivery_id" value=(form.delivery_id) placeholder="X-GitHub-Delivery, webhook-id"; }
                label { "FAL request id " input type="text" name="request_id" value=(form.request_id); }
                label { "Avatar id " input type="text" name="avatar_id" value=(form.avatar_id); }
                label.wide { "Body contains (JSON) " input type="text" name="body" value=(form.body) placeholder="{\"ref\":\"refs/heads/main\"}"; }
                div.actions {
                    button type="submit" { "Search" }
                    a href="/console/" { "Clear" }
                }
            }
            @if !indexes_ready {
                p.notice { "The search indexes are still being built: searches by event, delivery id, avatar or body may be slow until they are." }
            }
            @match result {
                Err(problem) => { p.problem role="alert" { (problem) } }
                Ok(page) => {
                    p.count {
                        "About " (page.estimated_total) " matching deliveries, newest first. "
                        a.export href={ "/console/export?" (form.query()) } { "Export as NDJSON" }
                        @if viewer.may_replay {
                            " · " a.bulk href={ "/console/replays/new?" (form.query()) } { "Replay all matching…" }
                        }
                    }
                    @if page.rows.is_empty() {
                        p.empty { "No delivery matches." }
                    } @else {
                        table.deliveries {
                            thead { tr {
                                th { "id" } th { "received" } th { "source" } th { "event" }
                                th { "outcome" } th { "delivery id / request id" } th { "avatar" } th { "ms" }
                            } }
                            tbody {
                                @for row in &page.rows {
                                    tr {
                                        td { a href={ "/console/deliveries/" (row.id) } { (row.id) } }
                                        td.time { (time(&row.received_at)) }
                                        td { (row.source) }
                                        td { (row.event) }
                                        td { span class={ "outcome " (outcome_class(row.outcome)) } { (row.outcome.as_str()) } }
                                        td.mono { (row.delivery_id.as_deref().or(row.fal_request_id.as_deref()).unwrap_or("")) }
                                        td.mono { @if let Some(id) = row.avatar_id { (id) } }
                                        td.num { @if let Some(ms) = row.processing_ms { (format!("{ms:.1}")) } }
                                    }
                                }
                            }
                        }
                    }
                    nav.pages {
                        @if !form.before.is_empty() {
                            a href={ "/console/?" (form.query()) } { "« Newest" }
                        }
                        @if let Some(next) = page.next_before {
                            a.next href={ "/console/?" (with_cursor(&form.query(), next)) } { "Older »" }
                        }
                    }
                }
            }
        },
    )
}

fn with_cursor(query: &str, before: i64) -> String {
    if query.is_empty() {
        format!("before={before}")
    } else {
        format!("{query}&before={before}")
    }
}

/// One delivery, with what it caused; `flash` says what an action just did.
pub fn delivery(
    viewer: &Viewer<'_>,
    event: &EventRow,
    caused: &Consequences,
    flash: Option<&str>,
    curl: &str,
) -> Markup {
    let headers = event
        .headers
        .as_ref()
        .and_then(|h| serde_json::to_string_pretty(h).ok());
    let body = event.payload.as_deref().map(|text| {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| text.to_string())
    });
    let replayable = event.payload.is_some() && event.outcome != EventOutcome::Rejected;
    layout(
        &format!("Delivery {}", event.id),
        Some(viewer),
        html! {
            h1 { "Delivery " (event.id) }
            @if let Some(flash) = flash { p.notice role="status" { (flash) } }
            dl.facts {
                dt { "source" } dd { (event.source) " (" (event.signature_scheme) ")" }
                dt { "event" } dd { (event.event) }
                dt { "outcome" } dd {
                    span class={ "outcome " (outcome_class(event.outcome)) } { (event.outcome.as_str()) }
                    @if let Some(reason) = &event.outcome_reason { " — " (reason) }
                }
                dt { "answer" } dd { (event.status_code) @if let Some(ms) = event.processing_ms { ", " (format!("{ms:.1}")) " ms to store" } }
                dt { "received" } dd { (time(&event.received_at)) ", " (event.deliveries) " deliveries, last " (time(&event.last_delivered_at)) }
                @if let Some(id) = &event.delivery_id { dt { "delivery id" } dd.mono { (id) } }
                @if let Some(id) = &event.fal_request_id { dt { "FAL request id" } dd.mono { (id) } }
                @if let Some(key) = &event.delivery_key { dt { "delivery key" } dd.mono { (key) } }
                dt { "instance" } dd { (event.instance_id.as_deref().unwrap_or("")) " · request " span.mono { (event.http_request_id.as_deref().unwrap_or("")) } }
                dt { "replays" } dd { (event.replays) @if let Some(at) = &event.last_replayed_at { ", last " (time(at)) } }
            }
            h2 { "What it changed" }
            @if let Some(id) = event.avatar_id {
                p.change {
                    "Avatar " a.mono href={ "/console/?avatar_id=" (id) } { (id) }
                    @if let Some((_, Some(name))) = &caused.avatar { " (" (name) ")" }
                    ": "
                    @match applied_change(event, caused) {
                        Some((before, after)) => { strong.before { (before) } " → " strong.after { (after) } " by this delivery" }
                        None => { "this delivery changed nothing" }
                    }
                    @match &caused.avatar {
                        Some((status, _)) => { "; now " strong.now { (status) } "." }
                        None => { "; it no longer exists." }
                    }
                }
                p.hint { "Before: what the avatar's previous delivery left it at (TRAINING, as the bot submits it, when this was its first)." }
            } @else if event.outcome == EventOutcome::Unmatched {
                p.change { "No avatar had its request id when it arrived (unmatched): a replay applies it once the bot has recorded the training." }
            } @else {
                p.change { "No avatar." }
            }
            @if !caused.file_jobs.is_empty() {
                table { thead { tr { th { "file job" } th { "state" } th { "attempts" } th { "last error" } } }
                    tbody { @for (id, state, attempts, error) in &caused.file_jobs {
                        tr { td { (id) } td { (state) } td { (attempts) } td { (error.as_deref().unwrap_or("")) } }
                    } } }
            }
            @if !caused.followups.is_empty() {
                table { thead { tr { th { "follow-up" } th { "state" } th { "result" } } }
                    tbody { @for (kind, state, result) in &caused.followups {
                        tr { td { (kind) } td { (state) } td { (result.as_deref().unwrap_or("")) } }
                    } } }
            }
            @if let Some((id, state)) = &caused.deploy { p { "Deploy " (id) ": " strong { (state) } } }
            h2 { "Replays" }
            @if caused.actions.is_empty() { p { "None." } } @else {
                table.actions { thead { tr { th { "when" } th { "who" } th { "action" } th { "answer" } } }
                    tbody { @for (at, who, action, status) in &caused.actions {
                        tr { td.time { (time(at)) } td { (who) } td { (action) } td { (status) } }
                    } } }
            }
            @if replayable {
                @if viewer.may_replay {
                    form.replay method="post" action={ "/console/deliveries/" (event.id) "/replay" } {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        button type="submit" { "Replay this delivery" }
                    }
                } @else {
                    p.hint { "Your token has no replay scope." }
                }
                details.curl {
                    summary { "Replay with curl" }
                    pre #curl { (curl) }
                    button.copy type="button" data-copy="curl" { "Copy" }
                }
            }
            h2 { "Headers" }
            @match headers { Some(h) => pre.json { (h) }, None => p { "Not kept." } }
            h2 { "Body" }
            @match body { Some(b) => pre.json #body { (b) }, None => p { "Not kept (refused before it was verified, or dropped by retention)." } }
        },
    )
}

/// The status an applied delivery found and the one it set, as its deliveries tell them.
fn applied_change(event: &EventRow, caused: &Consequences) -> Option<(String, &'static str)> {
    if event.outcome != EventOutcome::Applied {
        return None;
    }
    let after = status_set_by(&event.event)?;
    let before = match &caused.previous_change {
        Some(kind) => status_set_by(kind).map_or("?", AvatarStatus::as_str),
        None => AvatarStatus::Training.as_str(),
    };
    Some((before.to_string(), after.as_str()))
}

pub fn audit(viewer: &Viewer<'_>, rows: &[AuditRow], next: Option<i64>) -> Markup {
    layout(
        "Audit log",
        Some(viewer),
        html! {
            h1 { "Audit log" }
            p.hint { "Every replay, deploy call and console action, and every refused one, with the token that asked." }
            table.audit {
                thead { tr { th { "when" } th { "token" } th { "action" } th { "target" } th { "answer" } th { "instance" } } }
                tbody { @for row in rows {
                    tr { td.time { (time(&row.at)) } td { (row.token_name) } td { (row.action) }
                         td.mono { (row.target.as_deref().unwrap_or("")) } td { (row.status_code) } td { (row.instance_id) } }
                } }
            }
            @if let Some(next) = next { nav.pages { a.next href={ "/console/audit?before=" (next) } { "Older »" } } }
        },
    )
}

fn delivery_row(row: &EventRow) -> Markup {
    html! {
        tr {
            td { a href={ "/console/deliveries/" (row.id) } { (row.id) } }
            td.time { (time(&row.received_at)) }
            td { (row.source) }
            td { (row.event) }
            td { span class={ "outcome " (outcome_class(row.outcome)) } { (row.outcome.as_str()) } }
            td.mono { (row.delivery_id.as_deref().or(row.fal_request_id.as_deref()).unwrap_or("")) }
        }
    }
}

/// The live tail: the newest deliveries, newest on top; `console.js` adds each new one the
/// server sends (`/console/live/stream`).
pub fn live(viewer: &Viewer<'_>, recent: &[EventRow], newest: i64) -> Markup {
    layout(
        "Live",
        Some(viewer),
        html! {
            h1 { "Live" }
            p #live-status.notice role="status" { "Connecting…" }
            table #live.deliveries data-after=(newest) {
                thead { tr { th { "id" } th { "received" } th { "source" } th { "event" } th { "outcome" } th { "delivery id / request id" } } }
                tbody { @for row in recent.iter().rev() { (delivery_row(row)) } }
            }
        },
    )
}

/// Before a bulk replay: what it would cover, and the cap.
pub fn bulk_new(viewer: &Viewer<'_>, filter_query: &str, matching: i64, max: i32) -> Markup {
    let over = matching > i64::from(max);
    let default_cap = matching.clamp(1, i64::from(max));
    layout(
        "Replay all matching",
        Some(viewer),
        html! {
            h1 { "Replay all matching" }
            p { "Filter: " code { @if filter_query.is_empty() { "(every delivery)" } @else { (filter_query) } } }
            p.estimate {
                @if over { "More than " (max) " deliveries match." } @else { (matching) " deliveries match." }
                " They are replayed newest first, "
                "as the replay button does one by one (FAL callbacks through the same ingest: a duplicate changes nothing; "
                "the other senders' deliveries announced again). Deliveries that arrive after you start are not included."
            }
            form.bulk method="post" action="/console/replays" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="hidden" name="filter" value=(filter_query);
                label { "Replay at most " input type="number" name="cap" min="1" max=(max) value=(default_cap); " deliveries" }
                button type="submit" { "Start the replay" }
            }
            p { a href={ "/console/?" (filter_query) } { "Back to the deliveries" } }
        },
    )
}

fn bulk_progress(job: &BulkReplay) -> Markup {
    let total = job.estimate.min(i64::from(job.cap)).max(1);
    html! {
        progress max=(total) value=(i64::from(job.processed()).min(total)) {}
        " " (job.processed()) " of " (total)
    }
}

/// One bulk replay: its progress, its result, a cancel while it runs.
pub fn bulk_one(viewer: &Viewer<'_>, job: &BulkReplay) -> Markup {
    layout(
        &format!("Bulk replay {}", job.id),
        Some(viewer),
        html! {
            h1 { "Bulk replay " (job.id) }
            div #bulk data-refresh=[job.open().then_some("2")] {
                dl.facts {
                    dt { "state" } dd.state { strong { (job.state) } @if job.cancel_requested && job.open() { " (cancelling)" } }
                    dt { "progress" } dd { (bulk_progress(job)) }
                    dt { "done" } dd.done { (job.done) }
                    dt { "skipped" } dd.skipped { (job.skipped) " (duplicates, or nothing to replay)" }
                    dt { "failed" } dd.failed { (job.failed) @if let Some(e) = &job.last_error { " — " (e) } }
                    dt { "asked by" } dd { (job.requested_by) ", " (time(&job.created_at)) }
                    @if let Some(at) = &job.finished_at { dt { "finished" } dd { (time(at)) } }
                    dt { "filter" } dd { a href={ "/console/?" (job.filter_query) } { code { @if job.filter_query.is_empty() { "(every delivery)" } @else { (job.filter_query) } } } }
                    dt { "cap" } dd { (job.cap) " (matching when asked: " (job.estimate) ")" }
                }
            }
            @if job.open() && viewer.may_replay {
                form.cancel method="post" action={ "/console/replays/" (job.id) "/cancel" } {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    button type="submit" { "Cancel" }
                }
            }
        },
    )
}

pub fn bulk_list(viewer: &Viewer<'_>, jobs: &[BulkReplay]) -> Markup {
    layout(
        "Bulk replays",
        Some(viewer),
        html! {
            h1 { "Bulk replays" }
            @if jobs.is_empty() { p { "None yet: start one from a filter on the deliveries page." } } @else {
                table.bulk {
                    thead { tr { th { "id" } th { "asked" } th { "by" } th { "state" } th { "progress" } th { "done" } th { "skipped" } th { "failed" } th { "filter" } } }
                    tbody { @for job in jobs {
                        tr {
                            td { a href={ "/console/replays/" (job.id) } { (job.id) } }
                            td.time { (time(&job.created_at)) } td { (job.requested_by) } td { (job.state) }
                            td { (bulk_progress(job)) } td.num { (job.done) } td.num { (job.skipped) } td.num { (job.failed) }
                            td.mono { (job.filter_query) }
                        }
                    } }
                }
            }
        },
    )
}

/// Avatars in training, file jobs, this instance's spool, deploys.
pub fn operations(
    viewer: &Viewer<'_>,
    trainings: &[Training],
    jobs: &[JobSummary],
    spool: Option<(u64, u64, u64)>,
    instance: &str,
    deploys: Option<&[DeployRow]>,
) -> Markup {
    let now = chrono::Utc::now();
    let age = |at: &DateTime<Utc>| {
        let minutes = (now - *at).num_minutes();
        if minutes < 120 {
            format!("{minutes} min")
        } else {
            format!("{} h", minutes / 60)
        }
    };
    layout(
        "Operations",
        Some(viewer),
        html! {
            h1 { "Operations" }
            h2 { "Avatars in training" }
            @if trainings.is_empty() { p { "None." } } @else {
                table.trainings {
                    thead { tr { th { "avatar" } th { "name" } th { "FAL request id" } th { "unchanged for" } th { "reconciler's last check" } th { "failed checks" } } }
                    tbody { @for t in trainings {
                        tr {
                            td.mono { a href={ "/console/?avatar_id=" (t.avatar_id) } { (t.avatar_id) } }
                            td { (t.name.as_deref().unwrap_or("")) }
                            td.mono { a href={ "/console/?request_id=" (t.fal_request_id) } { (t.fal_request_id) } }
                            td { (age(&t.updated_at)) }
                            td { @match &t.last_check { Some(at) => { (time(at)) " (" (age(at)) " ago)" }, None => "not yet" } }
                            td.num { (t.check_failures) }
                        }
                    } }
                }
            }
            h2 { "File jobs" }
            @if jobs.is_empty() { p { "None." } } @else {
                table.jobs {
                    thead { tr { th { "job" } th { "avatar" } th { "state" } th { "attempts" } th { "updated" } th { "last error" } th {} } }
                    tbody { @for job in jobs {
                        tr {
                            td { (job.id) }
                            td.mono { a href={ "/console/?avatar_id=" (job.avatar_id) } { (job.avatar_id) } }
                            td { (job.state) } td.num { (job.attempts) } td.time { (time(&job.updated_at)) }
                            td { (job.last_error.as_deref().unwrap_or("")) }
                            td { @if viewer.may_replay && matches!(job.state.as_str(), "dead" | "failed") {
                                form.retry method="post" action={ "/console/jobs/" (job.id) "/retry" } {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    button type="submit" { "Retry" }
                                }
                            } }
                        }
                    } }
                }
            }
            h2 { "Spool of this instance (" (instance) ")" }
            @match spool {
                Some((waiting, bytes, held)) => p.spool { (waiting) " deliveries waiting for PostgreSQL, " (bytes) " bytes on disk, " (held) " held (they could not be read back)." }
                None => p { "No source spools on this instance. Each instance has its own spool: the others' are on their own pages and in their /health." }
            }
            h2 { "Deploys" }
            @match deploys {
                None => p.hint { "Your token has no deploy scope." }
                Some([]) => p { "None." }
                Some(deploys) => table.deploys {
                    thead { tr { th { "deploy" } th { "commit" } th { "branch" } th { "state" } th { "queued" } th { "asked by" } } }
                    tbody { @for d in deploys {
                        tr {
                            td { a href={ "/console/deploys/" (d.id) } { (d.id) } }
                            td.mono { (d.commit_sha.as_deref().unwrap_or("")) }
                            td { (d.repository) " " (d.branch) }
                            td { (d.state) @if let Some(code) = d.exit_code { " (exit " (code) ")" } }
                            td.time { (time(&d.queued_at)) }
                            td { (d.requested_by.as_deref().unwrap_or("a push")) }
                        }
                    } }
                }
            }
        },
    )
}

/// One deploy with its output.
pub fn deploy(viewer: &Viewer<'_>, d: &DeployRow) -> Markup {
    layout(
        &format!("Deploy {}", d.id),
        Some(viewer),
        html! {
            h1 { "Deploy " (d.id) }
            dl.facts {
                dt { "state" } dd { (d.state) @if let Some(code) = d.exit_code { " (exit " (code) ")" } @if let Some(r) = &d.reason { " — " (r) } }
                dt { "commit" } dd.mono { (d.commit_sha.as_deref().unwrap_or("")) }
                dt { "repository" } dd { (d.repository) " " (d.branch) }
                dt { "push" } dd { a href={ "/console/deliveries/" (d.event_id) } { "delivery " (d.event_id) } }
                dt { "queued" } dd { (time(&d.queued_at)) }
                @if let Some(at) = &d.finished_at { dt { "finished" } dd { (time(at)) } }
                dt { "instance" } dd { (d.instance_id.as_deref().unwrap_or("")) }
            }
            h2 { "Output" }
            pre.json { (d.output.as_deref().unwrap_or("(none)")) }
        },
    )
}
