//! The audit log: every operator action, newest first.

use http::StatusCode;

use super::context::Context;
use super::error::ConsoleError;
use super::pages;
use super::response::html;
use crate::http::error::HttpResponse;
use crate::store::{self, console};

pub(super) async fn page(cx: &Context<'_>) -> Result<HttpResponse, ConsoleError> {
    let state = cx.state;
    let before = crate::http::query::optional_number(cx.query(), "before")
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let limit = state.config.console.page_size;
    let list = console::audit(&state.pool, before, limit);
    let (rows, next) = store::within(state.config.database.statement_timeout, list).await?;
    Ok(html(StatusCode::OK, pages::audit(&cx.viewer, &rows, next)))
}
