//! The console's pages behind the sign-in, found by method and path, and each sent to its
//! handler; a handler's error is rendered as the console's page.

use std::sync::Arc;

use http::Method;
use http_body_util::Either;
use hyper::body::Incoming;

use super::context::Context;
use super::error::ConsoleError;
use super::{audit, bulk, deliveries, delivery, live, login, operations};
use crate::http::{AppState, ServiceBody};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Deliveries,
    Export,
    Audit,
    Live,
    LiveStream,
    Operations,
    Chart,
    BulkList,
    BulkNew,
    BulkStart,
    Bulk(i64),
    BulkCancel(i64),
    Delivery(i64),
    Replay(i64),
    JobRetry(i64),
    Deploy(i64),
    Logout,
}

impl Page {
    pub fn resolve(method: &Method, path: &str) -> Option<Page> {
        let id = |prefix: &str, suffix: &str| -> Option<i64> {
            path.strip_prefix(prefix)?
                .strip_suffix(suffix)?
                .parse()
                .ok()
        };
        let read = matches!(*method, Method::GET | Method::HEAD);
        if *method == Method::POST {
            return match path {
                "/console/replays" => Some(Page::BulkStart),
                "/console/logout" => Some(Page::Logout),
                _ => None
                    .or(id("/console/deliveries/", "/replay").map(Page::Replay))
                    .or(id("/console/replays/", "/cancel").map(Page::BulkCancel))
                    .or(id("/console/jobs/", "/retry").map(Page::JobRetry)),
            };
        }
        if !read {
            return None;
        }
        match path {
            "/console/" => Some(Page::Deliveries),
            "/console/export" => Some(Page::Export),
            "/console/audit" => Some(Page::Audit),
            "/console/live" => Some(Page::Live),
            "/console/live/stream" => Some(Page::LiveStream),
            "/console/operations" => Some(Page::Operations),
            "/console/charts/deliveries.svg" => Some(Page::Chart),
            "/console/replays" => Some(Page::BulkList),
            "/console/replays/new" => Some(Page::BulkNew),
            _ => None
                .or(id("/console/deliveries/", "").map(Page::Delivery))
                .or(id("/console/replays/", "").map(Page::Bulk))
                .or(id("/console/deploys/", "").map(Page::Deploy)),
        }
    }

    /// A stream a script reads (the live tail, the export), not a page a person reads: it is
    /// answered a bare status when it cannot be served.
    pub fn is_stream(self) -> bool {
        matches!(self, Page::LiveStream | Page::Export)
    }
}

pub async fn route(
    state: &Arc<AppState>,
    cx: &Context<'_>,
    page: Page,
    body: Incoming,
) -> Result<http::Response<ServiceBody>, ConsoleError> {
    let page = match page {
        Page::LiveStream => return live::stream(state, cx).await,
        Page::Export => return deliveries::export(state, cx).await,
        Page::Deliveries => deliveries::list(cx).await,
        Page::Audit => audit::page(cx).await,
        Page::Live => live::page(cx).await,
        Page::Operations => operations::page(cx).await,
        Page::Chart => operations::chart(cx).await,
        Page::BulkList => bulk::list(cx).await,
        Page::BulkNew => bulk::new(cx).await,
        Page::BulkStart => bulk::start(cx, body).await,
        Page::Bulk(id) => bulk::one(cx, id).await,
        Page::BulkCancel(id) => bulk::cancel(cx, body, id).await,
        Page::Delivery(id) => delivery::show(cx, id).await,
        Page::Replay(id) => delivery::replay(cx, body, id).await,
        Page::JobRetry(id) => operations::job_retry(cx, body, id).await,
        Page::Deploy(id) => operations::deploy(cx, id).await,
        Page::Logout => login::sign_out(cx, body).await,
    };
    page.map(|page| page.map(Either::Left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_is_found_by_its_method_and_path_and_nothing_else() {
        for (method, path, page) in [
            (Method::GET, "/console/", Some(Page::Deliveries)),
            (Method::HEAD, "/console/audit", Some(Page::Audit)),
            (Method::GET, "/console/export", Some(Page::Export)),
            (Method::GET, "/console/live/stream", Some(Page::LiveStream)),
            (
                Method::GET,
                "/console/deliveries/42",
                Some(Page::Delivery(42)),
            ),
            (
                Method::POST,
                "/console/deliveries/42/replay",
                Some(Page::Replay(42)),
            ),
            (Method::GET, "/console/deliveries/42/replay", None),
            (Method::POST, "/console/deliveries/42", None),
            (Method::GET, "/console/replays/new", Some(Page::BulkNew)),
            (Method::GET, "/console/replays/7", Some(Page::Bulk(7))),
            (
                Method::POST,
                "/console/replays/7/cancel",
                Some(Page::BulkCancel(7)),
            ),
            (
                Method::POST,
                "/console/jobs/3/retry",
                Some(Page::JobRetry(3)),
            ),
            (Method::GET, "/console/deploys/9", Some(Page::Deploy(9))),
            (Method::GET, "/console/deliveries/x", None),
            (Method::DELETE, "/console/", None),
            (Method::POST, "/console/logout", Some(Page::Logout)),
        ] {
            assert_eq!(Page::resolve(&method, path), page, "{method} {path}");
        }
    }
}
