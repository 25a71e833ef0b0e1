//! Signing in and out: the sign-in page, a token exchanged for a session cookie (limited per
//! client address, from this console's own page only), and the sign-out.

use std::net::IpAddr;

use http::StatusCode;
use hyper::body::Incoming;

use super::context::{field, read_form, Context};
use super::error::ConsoleError;
use super::pages;
use super::response::{html, redirect, set_cookie};
use super::session;
use crate::config::Scope;
use crate::http::error::HttpResponse;
use crate::http::{auth, record_audit, AppState};

/// What the sign-in page says first, by the code its link carries.
fn notice(query: Option<&str>) -> Option<&'static str> {
    let code = |name: &str| crate::http::query::param(query, name) == Some("1");
    if code("expired") {
        Some("Your session has ended (it expired, or its token changed): sign in again.")
    } else if code("signed_out") {
        Some("Signed out.")
    } else {
        None
    }
}

pub(super) fn page(query: Option<&str>) -> HttpResponse {
    html(StatusCode::OK, pages::login(notice(query), None))
}

/// A refused sign-in's page.
fn refused(status: StatusCode, why: &str) -> HttpResponse {
    html(status, pages::login(None, Some(why)))
}

pub(super) async fn sign_in(
    state: &AppState,
    parts: &http::request::Parts,
    body: Incoming,
    client: IpAddr,
    request_id: &str,
) -> HttpResponse {
    let limits = &state.refused_operators;
    if let Some(retry_after) = limits.exhausted(&client) {
        let why = format!(
            "Too many refused sign-ins from this address: try again in {} s.",
            retry_after.as_secs().max(1)
        );
        return refused(StatusCode::TOO_MANY_REQUESTS, &why);
    }
    let form = match read_form(parts, body).await {
        Ok(form) => form,
        Err(problem) => return refused(StatusCode::BAD_REQUEST, &problem),
    };
    let public_origin = state.config.console.public_origin.as_deref();
    if !session::same_origin(&parts.headers, public_origin) {
        return refused(
            StatusCode::FORBIDDEN,
            "This sign-in did not come from this console's own page.",
        );
    }
    let presented = field(&form, "token").map(str::trim).unwrap_or("");
    let Some(token) = auth::matching(&state.config.operator_tokens, presented) else {
        state
            .metrics
            .operator_refusals
            .with_label_values(&[StatusCode::UNAUTHORIZED.as_str()])
            .inc();
        limits.take(client).ok();
        tracing::warn!(peer = %client, action = "console_sign_in", "operator call refused: no valid token");
        return refused(
            StatusCode::UNAUTHORIZED,
            "That is not one of this cluster's operator tokens.",
        );
    };
    let id = match session::open(state, token).await {
        Ok(id) => id,
        Err(e) => return ConsoleError::from(e).render(None),
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

pub(super) async fn sign_out(
    cx: &Context<'_>,
    body: Incoming,
) -> Result<HttpResponse, ConsoleError> {
    cx.action_form(body, Scope::Read).await?;
    session::close(cx.state, cx.signed_in).await?;
    let mut response = redirect("/console/login?signed_out=1");
    let secure = session::over_tls(&cx.parts.headers);
    set_cookie(&mut response, &session::set_cookie(None, 0, secure));
    Ok(response)
}
