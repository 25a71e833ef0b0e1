//! Signing in: an operator token exchanged for a session cookie (HttpOnly, SameSite=Strict,
//! Secure behind TLS, expiring), kept in PostgreSQL so either instance knows it; a CSRF token
//! per session for every form that changes something.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use http::header::{COOKIE, HOST, ORIGIN};
use http::HeaderMap;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{OperatorToken, Scope};
use crate::state::AppState;
use crate::store::{self, console::Session, StoreError};

pub const COOKIE_NAME: &str = "webhook_console";

/// A signed-in operator: the session and the token it was opened with, as configured now.
pub struct SignedIn<'a> {
    pub id_sha256: [u8; 32],
    pub session: Session,
    pub token: &'a OperatorToken,
}

/// What the request's cookie comes to.
pub enum Presented<'a> {
    /// No cookie: sign in.
    Nobody,
    /// A cookie whose session expired, was closed, or whose token is no longer configured.
    Expired,
    SignedIn(SignedIn<'a>),
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Opens a session for `token`; returns the cookie's value.
pub async fn open(state: &AppState, token: &OperatorToken) -> Result<String, StoreError> {
    let id = random_token();
    let session = Session {
        token_name: token.name.clone(),
        token_sha256: token.sha256.to_vec(),
        csrf: random_token(),
        expires_at: Utc::now()
            + chrono::Duration::from_std(state.config.console.session).unwrap_or_default(),
    };
    store::within(
        state.config.database.statement_timeout,
        store::console::open_session(&state.pool, &digest(&id), &session),
    )
    .await?;
    Ok(id)
}

pub async fn presented<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<Presented<'a>, StoreError> {
    let Some(id) = cookie(headers) else {
        return Ok(Presented::Nobody);
    };
    let signed_in = signed_in(state, digest(&id)).await?;
    Ok(signed_in.map_or(Presented::Expired, Presented::SignedIn))
}

/// The session `id_sha256` with its token as configured now; `None` when it ended (signed
/// out, expired) or its token is no longer configured.
async fn signed_in(
    state: &AppState,
    id_sha256: [u8; 32],
) -> Result<Option<SignedIn<'_>>, StoreError> {
    let session = store::within(
        state.config.database.statement_timeout,
        store::console::session(&state.pool, &id_sha256),
    )
    .await?;
    Ok(session.and_then(|session| {
        let token = state
            .config
            .operator_tokens
            .iter()
            .find(|t| t.sha256.as_slice() == session.token_sha256.as_slice())?;
        Some(SignedIn {
            id_sha256,
            session,
            token,
        })
    }))
}

/// Whether the session `id_sha256` still stands: not signed out, not expired, its token still
/// configured (an open live tail asks every few seconds).
pub async fn still_open(state: &AppState, id_sha256: &[u8; 32]) -> Result<bool, StoreError> {
    let signed_in = signed_in(state, *id_sha256).await?;
    Ok(signed_in.is_some_and(|s| s.token.allows(Scope::Read)))
}

pub async fn close(state: &AppState, signed_in: &SignedIn<'_>) -> Result<(), StoreError> {
    store::within(
        state.config.database.statement_timeout,
        store::console::close_session(&state.pool, &signed_in.id_sha256),
    )
    .await
}

/// The session cookie of the request, if it carries one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty() && value.len() <= 64)
}

/// Whether the request came over TLS (nginx says so; the instances' own port is plain HTTP).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// `Set-Cookie` for a new session, or (`None`) one that ends it.
pub fn set_cookie(value: Option<&str>, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(value) => format!(
            "{COOKIE_NAME}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
        ),
        None => format!("{COOKIE_NAME}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// A state-changing request must carry the session's CSRF token and come from this console's
/// own page.
pub fn csrf_ok(
    session: &Session,
    sent: Option<&str>,
    headers: &HeaderMap,
    public_origin: Option<&str>,
) -> bool {
    let token_ok =
        sent.is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(session.csrf.as_bytes())));
    same_origin(headers, public_origin) && token_ok
}

/// Whether a form came from this console's own page, when the browser says where it comes
/// from (browsers always do on a POST; a client that does not is not a browser another site
/// can steer). This console's origin is the one the browser addressed, as nginx passes it on
/// (`Host` with its port, `X-Forwarded-Proto`), so it holds through nginx's console port, an
/// SSH tunnel to any local port and the instance's own port alike; behind a proxy that
/// rewrites `Host`, `CONSOLE_PUBLIC_ORIGIN` names it. Any other origin is refused.
pub fn same_origin(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    public_origin.is_some_and(|public| public.eq_ignore_ascii_case(origin))
        || addressed_origin(headers).is_some_and(|own| own.eq_ignore_ascii_case(origin))
}

/// Where the operator's browser reached this console: `CONSOLE_PUBLIC_ORIGIN`, else the
/// address the browser used.
pub fn console_origin(headers: &HeaderMap, public_origin: Option<&str>) -> String {
    public_origin
        .map(str::to_string)
        .or_else(|| addressed_origin(headers))
        .unwrap_or_else(|| "http://localhost:8001".into())
}

/// `scheme://host:port` as the browser addressed it: `Host` as sent (nginx passes it on with
/// the port), over TLS when nginx says so.
fn addressed_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(HOST)?.to_str().ok()?;
    let scheme = if over_tls(headers) { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_cookie_is_found_among_others_and_bounded() {
        let h = headers(&[("cookie", "a=1; webhook_console=abc; b=2")]);
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        assert_eq!(
            cookie(&headers(&[("cookie", "webhook_consolex=abc")])),
            None
        );
        let long = format!("webhook_console={}", "x".repeat(65));
        assert_eq!(cookie(&headers(&[("cookie", &long)])), None);
    }

    #[test]
    fn the_cookie_is_strict_http_only_and_secure_behind_tls() {
        let set = set_cookie(Some("v"), 60, true);
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Max-Age=60",
            "Path=/console",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set_cookie(Some("v"), 60, false).contains("Secure"));
        assert!(set_cookie(None, 60, false).contains("Max-Age=0"));
    }

    #[test]
    fn csrf_needs_the_token_and_this_origin() {
        let session = Session {
            token_name: "n".into(),
            token_sha256: vec![],
            csrf: "secret-csrf".into(),
            expires_at: Utc::now(),
        };
        // Through nginx's console port: Host with the port as the browser sent it, over TLS.
        let here = headers(&[
            ("host", "ops.example:9444"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://ops.example:9444"),
        ]);
        assert!(csrf_ok(&session, Some("secret-csrf"), &here, None));
        assert!(!csrf_ok(&session, Some("secret-csrx"), &here, None));
        assert!(!csrf_ok(&session, None, &here, None));
        // An SSH tunnel to another local port, and the instance's own plain port.
        for (host, origin, proto) in [
            ("localhost:10444", "https://localhost:10444", "https"),
            ("127.0.0.1:8001", "http://127.0.0.1:8001", ""),
        ] {
            let h = headers(&[
                ("host", host),
                ("origin", origin),
                ("x-forwarded-proto", proto),
            ]);
            assert!(same_origin(&h, None), "{origin}");
        }
        for foreign in [
            "https://evil.example",
            "https://ops.example:9445",
            "http://ops.example:9444",
            "null",
        ] {
            let h = headers(&[
                ("host", "ops.example:9444"),
                ("x-forwarded-proto", "https"),
                ("origin", foreign),
            ]);
            assert!(!same_origin(&h, None), "{foreign}");
            assert!(
                !csrf_ok(&session, Some("secret-csrf"), &h, None),
                "{foreign}"
            );
            assert!(
                !same_origin(&h, Some("https://ops.example.com")),
                "{foreign}"
            );
        }
        // Behind a proxy that rewrites Host: the configured public origin, and only it.
        let proxied = headers(&[
            ("host", "aisha-nginx-webhook"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://ops.example.com"),
        ]);
        assert!(!same_origin(&proxied, None));
        assert!(same_origin(&proxied, Some("https://ops.example.com")));
        assert!(csrf_ok(
            &session,
            Some("secret-csrf"),
            &HeaderMap::new(),
            None
        ));
    }
}
