//! `/console/`: the operators' console in the browser, served by each instance on its own
//! port (nginx serves it only on its operators' port, never on the public ones). Signed in
//! with an operator token (a session cookie, CSRF on every form); server-rendered pages that
//! find, read and replay any delivery, and the audit log.
//!
//! A request: `handle` serves the assets and signing in, finds the session, builds the
//! `Context` once, and `router` sends it to one page's handler (one file per page group), whose
//! `ConsoleError` is rendered as a page; the pages' HTML is `pages`, the SQL `store::console`.

mod audit;
mod bulk;
mod chart;
mod context;
mod deliveries;
mod delivery;
mod error;
mod filter;
mod live;
mod login;
mod operations;
mod pages;
mod response;
mod router;
mod session;
mod stream;

use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;

use super::{AppState, ServiceBody};
use crate::config::Scope;
use context::Context;
use error::ConsoleError;
use response::{asset, redirect, set_cookie, status_only, SCRIPT, STYLE};
use router::Page;
use session::Presented;

pub const PREFIX: &str = "/console";

/// Every `/console` request (`client`: its address as nginx reports it); always an answer (a
/// page, a redirect, a stream), never a JSON error.
pub async fn handle(
    state: &Arc<AppState>,
    parts: &http::request::Parts,
    body: Incoming,
    client: IpAddr,
    request_id: &str,
) -> Response<ServiceBody> {
    let (method, path) = (&parts.method, parts.uri.path());
    let read = matches!(*method, Method::GET | Method::HEAD);
    // What anyone may ask for: the assets, and signing in.
    let open = match path {
        "/console/static/console.css" if read => asset(STYLE, "text/css; charset=utf-8"),
        "/console/static/console.js" if read => asset(SCRIPT, "text/javascript; charset=utf-8"),
        "/console" if read => redirect("/console/"),
        "/console/login" if read => login::page(parts.uri.query()),
        "/console/login" if *method == Method::POST => {
            login::sign_in(state, parts, body, client, request_id).await
        }
        _ => return signed_in_only(state, parts, body, request_id).await,
    };
    open.map(Either::Left)
}

/// Every page behind the sign-in: the session, the context, the page's handler.
async fn signed_in_only(
    state: &Arc<AppState>,
    parts: &http::request::Parts,
    body: Incoming,
    request_id: &str,
) -> Response<ServiceBody> {
    let page = Page::resolve(&parts.method, parts.uri.path());
    let stream = page.is_some_and(Page::is_stream);
    let signed_in = match session::presented(state, &parts.headers).await {
        Ok(Presented::SignedIn(signed_in)) => signed_in,
        // A script's stream is told by its status; a person is sent to sign in.
        Ok(_) if stream => return status_only(StatusCode::UNAUTHORIZED).map(Either::Left),
        Err(_) if stream => return status_only(StatusCode::SERVICE_UNAVAILABLE).map(Either::Left),
        Ok(Presented::Nobody) => return redirect("/console/login").map(Either::Left),
        Ok(Presented::Expired) => {
            let mut response = redirect("/console/login?expired=1");
            set_cookie(&mut response, &session::set_cookie(None, 0, false));
            return response.map(Either::Left);
        }
        Err(e) => return ConsoleError::from(e).render(None).map(Either::Left),
    };
    let cx = Context::new(state, parts, &signed_in, request_id);
    let answer = match (cx.require(Scope::Read), page) {
        (Err(_), Some(_)) if stream => Ok(status_only(StatusCode::UNAUTHORIZED).map(Either::Left)),
        (Err(no_scope), _) => Err(no_scope),
        (Ok(()), None) => Err(ConsoleError::NotFound(format!(
            "No console page at {}.",
            parts.uri.path()
        ))),
        (Ok(()), Some(page)) => router::route(state, &cx, page, body).await,
    };
    answer.unwrap_or_else(|e| e.render(Some(&cx.viewer)).map(Either::Left))
}
