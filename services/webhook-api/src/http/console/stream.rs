//! The console's streamed answers, written as they are read (bounded channels: a slow reader
//! slows the reading, nothing piles up in memory): the live tail as server-sent events, and
//! a filter's deliveries as NDJSON.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::{Channel, Either};
use serde_json::json;

use super::super::{views, AppState, ServiceBody};
use crate::store::{self, console};

/// Deliveries read at once.
const BATCH: i64 = 200;
/// How long one wait on Redis's streams blocks: also how late a delivery that is on no
/// stream (a duplicate, a refused request) appears.
const WAKE: Duration = Duration::from_secs(2);
/// A comment line this often keeps proxies from closing a quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

fn streamed(
    content_type: &'static str,
) -> (
    http_body_util::channel::Sender<Bytes>,
    Response<ServiceBody>,
) {
    let (sender, body) = Channel::<Bytes>::new(4);
    let mut response = Response::new(Either::Right(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // nginx passes each event on at once instead of buffering the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (sender, response)
}

/// `text/event-stream` of the deliveries stored after `after` (or the `Last-Event-ID` the
/// browser sends on a reconnect), each an event with its id; woken by Redis's streams, read
/// from PostgreSQL (so none is missed, whatever Redis does). When Redis cannot be watched the
/// stream says so and reads PostgreSQL every few seconds instead.
pub fn live(state: Arc<AppState>, after: i64) -> Response<ServiceBody> {
    let (mut sender, response) = streamed("text/event-stream; charset=utf-8");
    tokio::spawn(async move {
        let mut streams = vec![state.cache.events_stream()];
        streams.extend(
            state
                .config
                .sources
                .iter()
                .map(|s| state.cache.source_stream(&s.name)),
        );
        let mut watch = state.cache.watch(streams);
        let mut last = after;
        let mut redis_up: Option<bool> = None;
        let mut quiet = Duration::ZERO;
        let limit = state.config.database.statement_timeout;
        loop {
            if state.draining.load(Ordering::Relaxed) {
                return;
            }
            match store::within(limit, console::since(&state.pool, last, BATCH)).await {
                Ok(rows) => {
                    for row in &rows {
                        let event = format!(
                            "id: {}\nevent: delivery\ndata: {}\n\n",
                            row.id,
                            views::event(row)
                        );
                        if sender.send_data(Bytes::from(event)).await.is_err() {
                            return; // the browser went away
                        }
                        last = row.id;
                    }
                    if !rows.is_empty() {
                        quiet = Duration::ZERO;
                    }
                    if rows.len() as i64 == BATCH {
                        continue;
                    }
                }
                Err(e) => {
                    let said = status_event(
                        "database",
                        &format!("PostgreSQL did not answer ({e}); retrying"),
                    );
                    if sender.send_data(said).await.is_err() {
                        return;
                    }
                }
            }
            let woken = watch.wait(WAKE).await;
            let up = woken.is_ok();
            if redis_up != Some(up) {
                redis_up = Some(up);
                let said = if up {
                    status_event("redis", "live: new deliveries appear as they are committed")
                } else {
                    status_event(
                        "redis",
                        "Redis is unavailable: new deliveries are read from PostgreSQL every 2 s",
                    )
                };
                if sender.send_data(said).await.is_err() {
                    return;
                }
            }
            if !up {
                tokio::time::sleep(WAKE).await;
            }
            quiet += WAKE;
            if quiet >= HEARTBEAT {
                quiet = Duration::ZERO;
                if sender
                    .send_data(Bytes::from_static(b": still here\n\n"))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    response
}

fn status_event(what: &str, message: &str) -> Bytes {
    Bytes::from(format!(
        "event: status\ndata: {}\n\n",
        json!({"what": what, "message": message})
    ))
}

/// Every delivery the filter matches, newest first, one JSON object a line with its headers
/// and payload, read a page at a time as the client takes them.
pub fn export(
    state: Arc<AppState>,
    filter: console::DeliveryFilter,
    file_name: String,
) -> Response<ServiceBody> {
    let (mut sender, mut response) = streamed("application/x-ndjson");
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    tokio::spawn(async move {
        let budget = state.config.console.query_timeout;
        let mut before = None;
        loop {
            let page = console::deliveries(
                &state.pool,
                &filter,
                before,
                BATCH,
                budget,
                console::Columns::Whole,
            )
            .await;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    // The status is sent; the last line says why the rest is missing.
                    let line = json!({"error": e.to_string()}).to_string() + "\n";
                    let _ = sender.send_data(Bytes::from(line)).await;
                    return;
                }
            };
            for row in &page.rows {
                let line = views::event_with_body(row) + "\n";
                if sender.send_data(Bytes::from(line)).await.is_err() {
                    return;
                }
            }
            match page.next_before {
                Some(next) => before = Some(next),
                None => return,
            }
        }
    });
    response
}
