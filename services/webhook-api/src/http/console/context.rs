//! What every page behind the sign-in is handed, built once before its handler: the state, the
//! request, who is signed in (session, token, CSRF) and what the page header shows; and the
//! reading of an action's form (CSRF, origin, scope) every action goes through.

use http::header;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::error::ConsoleError;
use super::pages::Viewer;
use super::session::{self, SignedIn};
use crate::config::Scope;
use crate::http::AppState;

/// The most a console form may send.
const MAX_FORM_BYTES: usize = 16 * 1024;

pub struct Context<'a> {
    pub state: &'a AppState,
    pub parts: &'a http::request::Parts,
    pub signed_in: &'a SignedIn<'a>,
    pub viewer: Viewer<'a>,
    pub request_id: &'a str,
}

impl<'a> Context<'a> {
    pub fn new(
        state: &'a AppState,
        parts: &'a http::request::Parts,
        signed_in: &'a SignedIn<'a>,
        request_id: &'a str,
    ) -> Self {
        Self {
            state,
            parts,
            signed_in,
            viewer: viewer(signed_in),
            request_id,
        }
    }

    pub fn query(&self) -> Option<&'a str> {
        self.parts.uri.query()
    }

    /// The signed-in token's name (who an audit row names).
    pub fn operator(&self) -> &'a str {
        &self.signed_in.token.name
    }

    /// `Ok` when the session's token has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ConsoleError> {
        match self.signed_in.token.allows(scope) {
            true => Ok(()),
            false => Err(ConsoleError::NoScope {
                token: self.signed_in.token.name.clone(),
                scope,
            }),
        }
    }

    /// The form of an action: read, from this console's own page (its CSRF token and origin),
    /// sent by a token with `scope`.
    pub async fn action_form(
        &self,
        body: Incoming,
        scope: Scope,
    ) -> Result<Vec<(String, String)>, ConsoleError> {
        let form = read_form(self.parts, body)
            .await
            .map_err(ConsoleError::BadRequest)?;
        let public_origin = self.state.config.console.public_origin.as_deref();
        let csrf = field(&form, "csrf");
        if !session::csrf_ok(
            &self.signed_in.session,
            csrf,
            &self.parts.headers,
            public_origin,
        ) {
            return Err(ConsoleError::Forged);
        }
        self.require(scope)?;
        Ok(form)
    }
}

/// What the page header shows of who is signed in.
pub fn viewer<'a>(signed_in: &'a SignedIn<'a>) -> Viewer<'a> {
    Viewer {
        token_name: &signed_in.token.name,
        csrf: &signed_in.session.csrf,
        may_replay: signed_in.token.allows(Scope::Replay),
    }
}

/// A form body (`application/x-www-form-urlencoded`), bounded.
pub async fn read_form(
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

pub fn field<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}
