//! The console's streamed answers, written as they are read (bounded channels: a slow reader
//! slows the reading, nothing piles up in memory): the live tail as server-sent events, and
//! a filter's deliveries as NDJSON.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::{Channel, Either};
use serde_json::json;

use super::super::{views, AppState, ServiceBody};
use super::session;
use crate::live_tails::{Tail, WAKE};
use crate::store::{self, console};

/// Deliveries read at once.
const BATCH: i64 = 200;
/// How often an open tail asks whether its session still stands.
const SESSION_CHECK: Duration = Duration::from_secs(3);
/// A comment line this often keeps proxies from closing a quiet stream, and finds a browser
/// that went away (a reload, a closed tab), so its tail gives its place back within seconds.
const HEARTBEAT: Duration = Duration::from_secs(4);

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
/// browser sends on a reconnect), each an event with its id; woken by the instance's shared
/// watch on Redis's streams, read from PostgreSQL (so none is missed, whatever Redis does).
/// When Redis cannot be watched the stream says so and reads PostgreSQL every few seconds
/// instead. It ends, saying why, within seconds of its session ending (signed out, expired,
/// its token removed) and when the instance drains.
pub fn live(state: Arc<AppState>, mut tail: Tail, after: i64) -> Response<ServiceBody> {
    let (mut sender, response) = streamed("text/event-stream; charset=utf-8");
    tokio::spawn(async move {
        let mut last = after;
        let mut redis_up: Option<bool> = None;
        let mut quiet = Duration::ZERO;
        let mut checked = Instant::now();
        let limit = state.config.database.statement_timeout;
        loop {
            if state.draining.load(Ordering::Relaxed) {
                return;
            }
            if checked.elapsed() >= SESSION_CHECK {
                checked = Instant::now();
                // PostgreSQL away: the tail cannot read deliveries either; asked again later.
                if let Ok(false) = session::still_open(&state, tail.session()).await {
                    let said = Bytes::from(format!(
                        "event: ended\ndata: {}\n\n",
                        json!({"message": "Your session has ended: sign in again to follow new deliveries."})
                    ));
                    let _ = sender.send_data(said).await;
                    return;
                }
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
            let waited = Instant::now();
            // Woken by a new entry, or read again after WAKE whatever happened.
            if let Ok(Err(_)) = tokio::time::timeout(WAKE, tail.wake.changed()).await {
                // The watch is gone (cannot be while this tail counts): read on a timer.
                tokio::time::sleep(WAKE).await;
            }
            let up = tail.wake.borrow_and_update().redis_up;
            if up.is_some() && redis_up != up {
                redis_up = up;
                let said = if up == Some(true) {
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
            quiet += waited.elapsed();
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
