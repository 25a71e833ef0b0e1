//! One delivery: headers, body, what it changed, its replays.

use maud::{html, Markup};

use super::{layout, outcome_class, time, Viewer};
use crate::avatar::{status_set_by, AvatarStatus};
use crate::store::console::Consequences;
use crate::store::deliveries::EventOutcome;
use crate::store::event_views::EventRow;

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
