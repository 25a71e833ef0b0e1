//! `GET /api/v1/avatar/{avatar_id}/status`: cache-aside read, Redis first, then PostgreSQL.

use uuid::Uuid;

use super::error::{ApiError, HttpResponse};
use super::{ok_json, AppState};
use crate::metrics;
use crate::store::{self, avatars};

/// The `{avatar_id}` of `/api/v1/avatar/{avatar_id}/status`, if the path has that shape.
pub fn avatar_id_segment(path: &str) -> Option<&str> {
    let id = path
        .strip_prefix("/api/v1/avatar/")?
        .strip_suffix("/status")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

pub async fn handle(state: &AppState, path: &str) -> Result<HttpResponse, ApiError> {
    let raw_id = avatar_id_segment(path).unwrap_or_default();
    let avatar_id: Uuid = raw_id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("avatar id {raw_id:?} is not a UUID")))?;

    match state.cache.cached_status(avatar_id).await {
        Ok(Some(view)) => return Ok(ok_json(&serde_json::to_value(view).expect("serializes"))),
        Ok(None) => {}
        Err(e) => metrics::redis_failed(
            &state.metrics.redis_errors,
            "read_status",
            &e,
            "status cache unavailable, reading PostgreSQL",
        ),
    }
    let view = store::within(
        state.config.database.statement_timeout,
        avatars::find(&state.pool, avatar_id),
    )
    .await?
    .ok_or_else(|| ApiError::UnknownAvatar(format!("no avatar with id {avatar_id}")))?;
    if let Err(e) = state.cache.store_status(&view).await {
        metrics::redis_failed(
            &state.metrics.redis_errors,
            "fill_status",
            &e,
            "status cache not filled",
        );
    }
    Ok(ok_json(&serde_json::to_value(view).expect("serializes")))
}
