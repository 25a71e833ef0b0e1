//! One delivery: its headers and body as stored, what it changed, its replays, the same
//! replay as a `curl` line; and its replay from the console (audited, rate-limited).

use http::StatusCode;
use hyper::body::Incoming;

use super::context::Context;
use super::error::ConsoleError;
use super::pages;
use super::response::{html, redirect};
use super::session;
use crate::config::Scope;
use crate::http::error::{ApiError, HttpResponse};
use crate::http::{operator, record_audit};
use crate::store::{self, console, event_views};

pub(super) async fn show(cx: &Context<'_>, id: i64) -> Result<HttpResponse, ConsoleError> {
    let state = cx.state;
    let limit = state.config.database.statement_timeout;
    let event = store::within(limit, event_views::event(&state.pool, id))
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no delivery {id}.")))?;
    let caused = store::within(limit, console::consequences(&state.pool, &event)).await?;
    let flash = crate::http::query::param(cx.query(), "replayed").and_then(replay_notice);
    let curl = format!(
        "curl -fsS -X POST -H \"Authorization: Bearer $OPERATOR_TOKEN\" \\\n  {}/api/v1/webhooks/events/{id}/replay",
        // The operators' API answers where the console does (nginx's console port too).
        session::console_origin(&cx.parts.headers, state.config.console.public_origin.as_deref())
    );
    Ok(html(
        StatusCode::OK,
        pages::delivery(&cx.viewer, &event, &caused, flash, &curl),
    ))
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

pub(super) async fn replay(
    cx: &Context<'_>,
    body: Incoming,
    id: i64,
) -> Result<HttpResponse, ConsoleError> {
    // Read, not replay: a token without the scope is refused below, and audited.
    cx.action_form(body, Scope::Read).await?;
    let (state, token) = (cx.state, cx.signed_in.token);
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
            Ok(_) => operator::replay_event(state, id, token, false, cx.request_id).await,
        }
    };
    let status = answer
        .as_ref()
        .map_or_else(ApiError::status, |_| StatusCode::SEE_OTHER);
    let target = cx.parts.uri.path();
    record_audit(
        state,
        "console_replay",
        &token.name,
        target,
        status,
        cx.request_id,
    )
    .await;
    let replayed = answer.map_err(|error| ConsoleError::Refused {
        title: "Not replayed",
        error,
    })?;
    let code = replayed.result();
    Ok(redirect(&format!(
        "/console/deliveries/{id}?replayed={code}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_notice_is_the_consoles_words_for_a_known_code_only() {
        assert_eq!(replay_notice("applied"), Some("Replayed: applied."));
        assert!(replay_notice("duplicate")
            .unwrap()
            .starts_with("Replayed: duplicate"));
        assert_eq!(
            replay_notice("Your session expired: sign in at https://evil.example"),
            None
        );
        assert_eq!(replay_notice(""), None);
    }
}
