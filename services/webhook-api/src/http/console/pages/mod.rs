//! The console's pages, rendered on the server (maud escapes every value). No inline script or
//! style: the one script and the one stylesheet are served from `/console/static/`.

mod audit;
mod bulk;
mod deliveries;
mod delivery;
mod live;
mod operations;

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use crate::store::deliveries::EventOutcome;
use crate::store::event_views::EventRow;

pub use audit::audit;
pub use bulk::{bulk_list, bulk_new, bulk_one};
pub use deliveries::deliveries;
pub use delivery::delivery;
pub use live::live;
pub use operations::{deploy, operations};

/// Who is signed in, and what the page's forms need.
pub struct Viewer<'a> {
    pub token_name: &'a str,
    pub csrf: &'a str,
    pub may_replay: bool,
}

pub(super) fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
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

pub(super) fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) fn outcome_class(outcome: EventOutcome) -> &'static str {
    match outcome {
        EventOutcome::Applied | EventOutcome::Accepted => "ok",
        EventOutcome::Ignored => "quiet",
        EventOutcome::Unmatched | EventOutcome::Rejected | EventOutcome::Failed => "bad",
    }
}

pub(super) fn delivery_row(row: &EventRow) -> Markup {
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
