//! Why a console page could not be what was asked, said as a page of the console (never a JSON
//! error): handlers return `Result<_, ConsoleError>` and use `?`; the router renders it.

use http::{header, HeaderValue, StatusCode};

use super::pages::{self, Viewer};
use super::response::html;
use crate::config::Scope;
use crate::http::error::{ApiError, HttpResponse};
use crate::store::StoreError;

#[derive(Debug)]
pub enum ConsoleError {
    /// PostgreSQL did not answer in time: 503 with `Retry-After`.
    Unavailable(String),
    /// No such thing (a delivery, a bulk replay, a deploy, a page).
    NotFound(String),
    /// A filter or a form that cannot be read: what is wrong with it.
    BadRequest(String),
    /// The session's token lacks this scope.
    NoScope { token: String, scope: Scope },
    /// A form without the session's CSRF token, or from another origin.
    Forged,
    /// An action the operators' API refused (the same answer as the API's), under `title`.
    Refused {
        title: &'static str,
        error: ApiError,
    },
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        ConsoleError::Unavailable(e.to_string())
    }
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::NoScope { .. } | ConsoleError::Forged => StatusCode::FORBIDDEN,
            ConsoleError::Refused { error, .. } => error.status(),
        }
    }

    /// The page that says why, with the operator's header when someone is signed in.
    pub fn render(&self, viewer: Option<&Viewer<'_>>) -> HttpResponse {
        let (title, why) = match self {
            ConsoleError::Unavailable(why) => (
                "Unavailable",
                format!("PostgreSQL did not answer: {why}. Try again shortly."),
            ),
            ConsoleError::NotFound(what) => ("Not found", what.clone()),
            ConsoleError::BadRequest(problem) => ("Bad request", problem.clone()),
            ConsoleError::NoScope { token, scope } => (
                "Not allowed",
                format!("The token {token:?} has no {} scope.", scope.as_str()),
            ),
            ConsoleError::Forged => (
                "Refused",
                "This form did not come from this console's own page (its CSRF token is missing \
                 or wrong): reload the page and try again."
                    .to_string(),
            ),
            ConsoleError::Refused { title, error } => (*title, error.to_string()),
        };
        let mut response = html(self.status(), pages::problem(viewer, title, &why));
        if matches!(self, ConsoleError::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
