//! Bulk replays: the count before, a job's progress, the list.

use maud::{html, Markup};

use super::{layout, time, Viewer};
use crate::store::console::BulkReplay;

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
