//! `/console/`: the operators' console in the browser, served by each instance on its own
//! port (nginx serves it only on its operators' port, never on the public ones). Signed in
//! with an operator token (a session cookie, CSRF on every form); server-rendered pages that
//! find, read and replay any delivery, and the audit log.

mod bulk;
mod chart;
mod filter;
mod operations;
mod pages;
mod session;
mod stream;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use maud::Markup;

use super::error::{ApiError, HttpResponse};
use super::{auth, operator, record_audit, AppState, ServiceBody};
use crate::config::Scope;
use crate::store::{self, console, event_views};
use filter::FilterForm;
use pages::Viewer;
use session::{Presented, SignedIn};

pub const PREFIX: &str = "/console";

/// No inline script or style, nothing from elsewhere, never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = include_str!("console.css");
const SCRIPT: &str = include_str!("console.js");

/// The most a console form may send.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Every `/console` request; always an answer (a page, a redirect, a stream), never a JSON
/// error.
pub async fn handle(
    state: &Arc<AppState>,
    parts: &http::request::Parts,
    body: Incoming,
    peer: IpAddr,
    request_id: &str,
) -> Response<ServiceBody> {
    let streams = matches!(
        (&parts.method, parts.uri.path()),
        (&Method::GET, "/console/live/stream" | "/console/export")
    );
    if !streams {
        return page(state, parts, body, peer, request_id)
            .await
            .map(Either::Left);
    }
    let signed_in = match session::presented(state, &parts.headers).await {
        Ok(Presented::SignedIn(signed_in)) if signed_in.token.allows(Scope::Read) => signed_in,
        Ok(_) => return status_only(StatusCode::UNAUTHORIZED).map(Either::Left),
        Err(_) => return status_only(StatusCode::SERVICE_UNAVAILABLE).map(Either::Left),
    };
    let query = parts.uri.query();
    if parts.uri.path() == "/console/live/stream" {
        // A reconnecting browser says where it was; a new one where its page ended.
        let asked = parts
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .or_else(|| super::query::optional_number(query, "after").ok().flatten());
        // Without a place to start, from now on (not from the first delivery ever stored).
        let after = match asked {
            Some(after) => after,
            None => match store::within(
                state.config.database.statement_timeout,
                console::newest_id(&state.pool),
            )
            .await
            {
                Ok(newest) => newest,
                Err(_) => return status_only(StatusCode::SERVICE_UNAVAILABLE).map(Either::Left),
            },
        };
        return match state.live_tails.open(signed_in.id_sha256) {
            Ok(tail) => stream::live(state.clone(), tail, after),
            Err(refused) => tail_refused(&refused).map(Either::Left),
        };
    }
    let form = FilterForm::from_query(query);
    let viewer = Viewer {
        token_name: &signed_in.token.name,
        csrf: &signed_in.session.csrf,
        may_replay: signed_in.token.allows(Scope::Replay),
    };
    let filter = match form.filter() {
        Ok((filter, _)) => filter,
        Err(problem) => return bad_form(&viewer, &problem).map(Either::Left),
    };
    let target = format!("/console/export?{}", form.query());
    record_audit(
        state,
        "console_export",
        &signed_in.token.name,
        &target,
        StatusCode::OK,
        request_id,
    )
    .await;
    let file_name = format!(
        "deliveries-{}.ndjson",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    stream::export(state.clone(), filter, file_name)
}

/// Every `/console` page (not a stream).
async fn page(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    peer: IpAddr,
    request_id: &str,
) -> HttpResponse {
    let path = parts.uri.path();
    let query = parts.uri.query();
    match (&parts.method, path) {
        (&Method::GET | &Method::HEAD, "/console/static/console.css") => {
            return asset(STYLE, "text/css; charset=utf-8")
        }
        (&Method::GET | &Method::HEAD, "/console/static/console.js") => {
            return asset(SCRIPT, "text/javascript; charset=utf-8")
        }
        (&Method::GET | &Method::HEAD, "/console") => return redirect("/console/"),
        (&Method::GET | &Method::HEAD, "/console/login") => {
            let message = match query {
                Some(q) if q.contains("expired=1") => Some(
                    "Your session has ended (it expired, or its token changed): sign in again.",
                ),
                Some(q) if q.contains("signed_out=1") => Some("Signed out."),
                _ => None,
            };
            return html(StatusCode::OK, pages::login(message, None));
        }
        (&Method::POST, "/console/login") => {
            return sign_in(state, parts, body, peer, request_id).await
        }
        _ => {}
    }
    let signed_in = match session::presented(state, &parts.headers).await {
        Ok(Presented::SignedIn(signed_in)) => signed_in,
        Ok(Presented::Nobody) => return redirect("/console/login"),
        Ok(Presented::Expired) => {
            let mut response = redirect("/console/login?expired=1");
            set_cookie(&mut response, &session::set_cookie(None, 0, false));
            return response;
        }
        Err(e) => return unavailable(None, &e.to_string()),
    };
    let viewer = Viewer {
        token_name: &signed_in.token.name,
        csrf: &signed_in.session.csrf,
        may_replay: signed_in.token.allows(Scope::Replay),
    };
    if !signed_in.token.allows(Scope::Read) {
        return no_scope(&viewer, Scope::Read);
    }
    let Some(page) = Page::resolve(&parts.method, path) else {
        return html(
            StatusCode::NOT_FOUND,
            pages::problem(
                Some(&viewer),
                "Not found",
                &format!("No console page at {path}."),
            ),
        );
    };
    let (signed_in, viewer) = (&signed_in, &viewer);
    match page {
        Page::Deliveries => deliveries(state, viewer, query).await,
        Page::Audit => audit(state, viewer, query).await,
        Page::Live => live(state, viewer).await,
        Page::Operations => operations::operations(state, signed_in, viewer).await,
        Page::Chart => operations::chart(state, viewer, query).await,
        Page::BulkList => bulk::bulk_list(state, viewer).await,
        Page::BulkNew => bulk::bulk_new(state, viewer, query).await,
        Page::BulkStart => {
            bulk::bulk_start(state, parts, body, signed_in, viewer, request_id).await
        }
        Page::Bulk(id) => bulk::bulk_one(state, viewer, id).await,
        Page::BulkCancel(id) => {
            bulk::bulk_cancel(state, parts, body, signed_in, viewer, id, request_id).await
        }
        Page::Delivery(id) => delivery(state, parts, viewer, id).await,
        Page::Replay(id) => replay(state, parts, body, signed_in, viewer, id, request_id).await,
        Page::JobRetry(id) => {
            operations::job_retry(state, parts, body, signed_in, viewer, id, request_id).await
        }
        Page::Deploy(id) => operations::deploy(state, signed_in, viewer, id, request_id).await,
        Page::Logout => {
            if let Err(refused) =
                action_form(state, parts, body, signed_in, viewer, Scope::Read).await
            {
                return refused;
            }
            if let Err(e) = session::close(state, signed_in).await {
                return unavailable(Some(viewer), &e.to_string());
            }
            let mut response = redirect("/console/login?signed_out=1");
            let secure = session::over_tls(&parts.headers);
            set_cookie(&mut response, &session::set_cookie(None, 0, secure));
            response
        }
    }
}

/// The console's pages behind the sign-in, by method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Deliveries,
    Audit,
    Live,
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
    fn resolve(method: &Method, path: &str) -> Option<Page> {
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
            "/console/audit" => Some(Page::Audit),
            "/console/live" => Some(Page::Live),
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
}

async fn sign_in(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    peer: IpAddr,
    request_id: &str,
) -> HttpResponse {
    let limits = &state.refused_operators;
    if let Some(retry_after) = limits.exhausted(&peer) {
        let why = format!(
            "Too many refused sign-ins from this address: try again in {} s.",
            retry_after.as_secs().max(1)
        );
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(None, Some(&why)),
        );
    }
    let form = match read_form(parts, body).await {
        Ok(form) => form,
        Err(problem) => return html(StatusCode::BAD_REQUEST, pages::login(None, Some(&problem))),
    };
    if !session::same_origin(
        &parts.headers,
        state.config.console.public_origin.as_deref(),
    ) {
        return html(
            StatusCode::FORBIDDEN,
            pages::login(
                None,
                Some("This sign-in did not come from this console's own page."),
            ),
        );
    }
    let presented = field(&form, "token").map(str::trim).unwrap_or("");
    let Some(token) = auth::matching(&state.config.operator_tokens, presented) else {
        state
            .metrics
            .operator_refusals
            .with_label_values(&[StatusCode::UNAUTHORIZED.as_str()])
            .inc();
        limits.take(peer).ok();
        tracing::warn!(%peer, action = "console_sign_in", "operator call refused: no valid token");
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                None,
                Some("That is not one of this cluster's operator tokens."),
            ),
        );
    };
    let id = match session::open(state, token).await {
        Ok(id) => id,
        Err(e) => return unavailable(None, &e.to_string()),
    };
    record_audit(
        state,
        "console_sign_in",
        &token.name,
        "/console/login",
        StatusCode::SEE_OTHER,
        request_id,
    )
    .await;
    let mut response = redirect("/console/");
    let secure = session::over_tls(&parts.headers);
    set_cookie(
        &mut response,
        &session::set_cookie(Some(&id), state.config.console.session.as_secs(), secure),
    );
    response
}

async fn deliveries(state: &AppState, viewer: &Viewer<'_>, query: Option<&str>) -> HttpResponse {
    let form = FilterForm::from_query(query);
    let sources: Vec<String> = std::iter::once("fal".to_string())
        .chain(state.config.sources.iter().map(|s| s.name.clone()))
        .collect();
    let limit = state.config.console.page_size;
    let budget = state.config.console.query_timeout;
    let indexes_ready = store::within(budget, console::indexes_ready(&state.pool))
        .await
        .unwrap_or(true);
    let (status, page) = match form.filter() {
        Err(problem) => (StatusCode::BAD_REQUEST, Err(problem)),
        Ok((filter, before)) => {
            let search = console::deliveries(
                &state.pool,
                &filter,
                before,
                limit,
                budget,
                console::Columns::Summary,
            );
            // The statement's own timeout ends it first; this bounds waiting for a connection.
            match tokio::time::timeout(budget * 2, search).await {
                Ok(Ok(page)) => (StatusCode::OK, Ok(page)),
                Ok(Err(console::SearchError::TooSlow(_))) | Err(_) => (
                    StatusCode::OK,
                    Err(format!(
                        "This search would take longer than {} ms over the stored deliveries: \
                         narrow it with a source, a time range or an id.",
                        budget.as_millis()
                    )),
                ),
                Ok(Err(console::SearchError::Store(e))) => {
                    return unavailable(Some(viewer), &e.to_string())
                }
            }
        }
    };
    let result = match &page {
        Ok(page) => Ok(page),
        Err(problem) => Err(problem.as_str()),
    };
    // The charts on the front page only (an image of its own: the list does not wait for it).
    let unfiltered = form.query().is_empty() && form.before.is_empty();
    let span = match query.is_some_and(|q| q.contains("chart=day")) {
        true => "day",
        false => "hour",
    };
    let chart = unfiltered.then_some(span);
    html(
        status,
        pages::deliveries(viewer, &sources, &form, result, indexes_ready, chart),
    )
}

async fn delivery(
    state: &AppState,
    parts: &http::request::Parts,
    viewer: &Viewer<'_>,
    id: i64,
) -> HttpResponse {
    let limit = state.config.database.statement_timeout;
    let event = match store::within(limit, event_views::event(&state.pool, id)).await {
        Ok(Some(event)) => event,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                pages::problem(
                    Some(viewer),
                    "Not found",
                    &format!("There is no delivery {id}."),
                ),
            )
        }
        Err(e) => return unavailable(Some(viewer), &e.to_string()),
    };
    let caused = match store::within(limit, console::consequences(&state.pool, &event)).await {
        Ok(caused) => caused,
        Err(e) => return unavailable(Some(viewer), &e.to_string()),
    };
    let flash = parts.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == "replayed")
            .and_then(|(_, code)| replay_notice(&code))
    });
    let curl = format!(
        "curl -fsS -X POST -H \"Authorization: Bearer $OPERATOR_TOKEN\" \\\n  {}/api/v1/webhooks/events/{id}/replay",
        // The operators' API answers where the console does (nginx's console port too).
        session::console_origin(&parts.headers, state.config.console.public_origin.as_deref())
    );
    html(
        StatusCode::OK,
        pages::delivery(viewer, &event, &caused, flash, &curl),
    )
}

/// What a replay came to, in the console's own words: the link after a replay carries a
/// code, and text from a URL is never shown.
fn replay_notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "applied" => "Replayed: applied.",
        "duplicate" => "Replayed: duplicate (the avatar already had this change).",
        "unmatched" => "Replayed: unmatched (still no avatar with its request id).",
        "ignored" => "Replayed: ignored (a progress report changes nothing).",
        "replayed" => "Replayed: announced again on the source's stream.",
        _ => return None,
    })
}

async fn replay(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    signed_in: &SignedIn<'_>,
    viewer: &Viewer<'_>,
    id: i64,
    request_id: &str,
) -> HttpResponse {
    // Read, not replay: a token without the scope is refused below, and audited.
    if let Err(refused) = action_form(state, parts, body, signed_in, viewer, Scope::Read).await {
        return refused;
    }
    let token = signed_in.token;
    let target = parts.uri.path();
    let answer = if !token.allows(Scope::Replay) {
        Err(ApiError::Forbidden {
            token: token.name.clone(),
            scope: Scope::Replay.as_str(),
        })
    } else {
        match state.replays.take(token.name.clone()) {
            Err(retry_after) => Err(ApiError::RateLimited {
                what: "replays of this token",
                limit: state.replays.limit(),
                retry_after,
            }),
            Ok(_) => operator::replay_event(state, id, token, false, request_id).await,
        }
    };
    let status = answer
        .as_ref()
        .map_or_else(ApiError::status, |_| StatusCode::SEE_OTHER);
    record_audit(
        state,
        "console_replay",
        &token.name,
        target,
        status,
        request_id,
    )
    .await;
    match answer {
        Ok(result) => {
            let code = result["result"].as_str().unwrap_or("applied");
            redirect(&format!("/console/deliveries/{id}?replayed={code}"))
        }
        Err(e) => html(
            e.status(),
            pages::problem(Some(viewer), "Not replayed", &e.to_string()),
        ),
    }
}

async fn audit(state: &AppState, viewer: &Viewer<'_>, query: Option<&str>) -> HttpResponse {
    let before = match super::query::optional_number(query, "before") {
        Ok(before) => before,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::problem(Some(viewer), "Audit log", &e.to_string()),
            )
        }
    };
    let limit = state.config.console.page_size;
    match store::within(
        state.config.database.statement_timeout,
        console::audit(&state.pool, before, limit),
    )
    .await
    {
        Ok((rows, next)) => html(StatusCode::OK, pages::audit(viewer, &rows, next)),
        Err(e) => unavailable(Some(viewer), &e.to_string()),
    }
}

fn no_scope(viewer: &Viewer<'_>, scope: Scope) -> HttpResponse {
    html(
        StatusCode::FORBIDDEN,
        pages::problem(
            Some(viewer),
            "Not allowed",
            &format!(
                "The token {:?} has no {} scope.",
                viewer.token_name,
                scope.as_str()
            ),
        ),
    )
}

/// The live tail: the newest deliveries, then each new one as it is committed.
async fn live(state: &AppState, viewer: &Viewer<'_>) -> HttpResponse {
    let limit = state.config.database.statement_timeout;
    let newest = match store::within(limit, console::newest_id(&state.pool)).await {
        Ok(newest) => newest,
        Err(e) => return unavailable(Some(viewer), &e.to_string()),
    };
    let recent =
        match store::within(limit, console::since(&state.pool, (newest - 20).max(0), 20)).await {
            Ok(rows) => rows,
            Err(e) => return unavailable(Some(viewer), &e.to_string()),
        };
    html(StatusCode::OK, pages::live(viewer, &recent, newest))
}

/// A live tail past its bounds: 429 with the reason (a browser's EventSource stops trying and
/// the page says so).
fn tail_refused(refused: &crate::live_tails::Refused) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(format!("{refused}\n"))));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    secure_headers(headers);
    response
}

/// An answer with no body (a stream a browser may not open).
fn status_only(status: StatusCode) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    secure_headers(response.headers_mut());
    response
}

/// The form of an action: read, from this console's own page (its CSRF token), sent by a
/// token with `scope`; or the page that says why not.
async fn action_form(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    signed_in: &SignedIn<'_>,
    viewer: &Viewer<'_>,
    scope: Scope,
) -> Result<Vec<(String, String)>, HttpResponse> {
    let form = read_form(parts, body)
        .await
        .map_err(|problem| bad_form(viewer, &problem))?;
    let public_origin = state.config.console.public_origin.as_deref();
    if !session::csrf_ok(
        &signed_in.session,
        field(&form, "csrf"),
        &parts.headers,
        public_origin,
    ) {
        return Err(csrf_refused(viewer));
    }
    if !signed_in.token.allows(scope) {
        return Err(no_scope(viewer, scope));
    }
    Ok(form)
}

/// A form body (`application/x-www-form-urlencoded`), bounded.
async fn read_form(
    parts: &http::request::Parts,
    body: Incoming,
) -> Result<Vec<(String, String)>, String> {
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err("Expected a form (application/x-www-form-urlencoded).".into());
    }
    let bytes = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|_| format!("The form is larger than {MAX_FORM_BYTES} bytes or was cut off."))?
        .to_bytes();
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

fn field<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn bad_form(viewer: &Viewer<'_>, problem: &str) -> HttpResponse {
    html(
        StatusCode::BAD_REQUEST,
        pages::problem(Some(viewer), "Bad request", problem),
    )
}

fn csrf_refused(viewer: &Viewer<'_>) -> HttpResponse {
    html(
        StatusCode::FORBIDDEN,
        pages::problem(
            Some(viewer),
            "Refused",
            "This form did not come from this console's own page (its CSRF token is missing or wrong): reload the page and try again.",
        ))
}

fn unavailable(viewer: Option<&Viewer<'_>>, why: &str) -> HttpResponse {
    let mut response = html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::problem(
            viewer,
            "Unavailable",
            &format!("PostgreSQL did not answer: {why}. Try again shortly."),
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// An HTML page with the console's security headers.
fn html(status: StatusCode, page: Markup) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(page.into_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    response
}

fn secure_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not no-referrer: with it Chromium sends `Origin: null` on a form POST, and the origin
    // check could not tell this console from another site.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn set_cookie(response: &mut HttpResponse, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn redirect(to: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, location);
    }
    secure_headers(headers);
    response
}

fn asset(text: &'static str, content_type: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_page_is_found_by_its_method_and_path_and_nothing_else() {
        for (method, path, page) in [
            (Method::GET, "/console/", Some(Page::Deliveries)),
            (Method::HEAD, "/console/audit", Some(Page::Audit)),
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
