//! The audit log: every operator action, newest first.

use maud::{html, Markup};

use super::{layout, time, Viewer};
use crate::store::console::AuditRow;

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
