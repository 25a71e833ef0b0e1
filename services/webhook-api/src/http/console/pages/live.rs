//! The live tail's page (its stream is `console::stream`).

use maud::{html, Markup};

use super::{delivery_row, layout, Viewer};
use crate::store::event_views::EventRow;

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
