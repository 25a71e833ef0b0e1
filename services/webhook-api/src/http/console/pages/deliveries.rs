//! The deliveries page: filters, the list with its cursor, the charts.

use maud::{html, Markup};

use super::super::filter::FilterForm;
use super::{layout, outcome_class, time, Viewer};
use crate::store::console::DeliveryPage;
use crate::store::deliveries::EventOutcome;

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
