//! Operations: trainings, file jobs, the spool, deploys.

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use super::{layout, time, Viewer};
use crate::store::console::Training;
use crate::store::deploys::DeployRow;
use crate::store::jobs::JobSummary;

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
                            td { @if viewer.may_replay && job.state.retryable() {
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
