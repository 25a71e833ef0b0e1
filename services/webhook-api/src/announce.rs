//! Every committed change reaches the bot's stream, even when the request path could not
//! announce it: Redis was down, or the instance died between the commit and the XADD.
//!
//! Each instance walks `webhook_events` in id order behind a cursor, a settle time behind the
//! present (so transactions still committing are not skipped), asks Redis which applied events
//! it has no record of announcing, and announces those with the avatar as it is now. Redis
//! remembers announced events (`cache::ANNOUNCED_TTL_SECS`), and the announcement is one
//! script that does nothing for an event already announced, so two instances, or an instance
//! and the request path, never announce a change twice.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::cache::{CacheError, STATUS_CHANGED};
use crate::http::AppState;
use crate::store::{self, avatars, StoreError};

/// Events read per pass.
const PAGE: i64 = 2000;

#[derive(Debug, thiserror::Error)]
enum AnnounceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

pub async fn run(state: Arc<AppState>, shutdown: CancellationToken) {
    let config = state.config.announce.clone();
    // A restarted instance looks back far enough to cover its own last moments.
    let mut cursor = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        let result = match cursor {
            None => start_cursor(&state.pool).await.map(|start| {
                cursor = Some(start);
            }),
            Some(ref mut position) => pass(&state, config.settle, position).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "announcer pass skipped");
        }
    }
}

async fn start_cursor(pool: &Pool) -> Result<i64, AnnounceError> {
    let client = pool.get().await.map_err(StoreError::from)?;
    let row = client
        .query_one(
            "SELECT COALESCE( \
               (SELECT min(id) FROM webhook_events \
                WHERE received_at > now() - make_interval(secs => $1)), \
               (SELECT COALESCE(max(id), 0) + 1 FROM webhook_events)) - 1",
            // Well inside the time Redis remembers announcements.
            &[&((crate::cache::ANNOUNCED_TTL_SECS / 2) as f64)],
        )
        .await
        .map_err(StoreError::from)?;
    Ok(row.get(0))
}

/// One page of settled events past the cursor; the cursor moves only over what was checked.
async fn pass(state: &AppState, settle: Duration, cursor: &mut i64) -> Result<(), AnnounceError> {
    let rows = {
        let client = state.pool.get().await.map_err(StoreError::from)?;
        client
            .query(
                "SELECT id, received_at <= now() - make_interval(secs => $2), \
                   CASE WHEN outcome = 'applied' THEN avatar_id END \
                 FROM webhook_events WHERE id > $1 ORDER BY id LIMIT $3",
                &[&*cursor, &settle.as_secs_f64(), &PAGE],
            )
            .await
            .map_err(StoreError::from)?
    };
    let mut checked_up_to = *cursor;
    let mut changes = Vec::new();
    for row in &rows {
        let settled: bool = row.get(1);
        if !settled {
            // Ids are not in commit order: nothing past an unsettled event is trusted yet.
            break;
        }
        checked_up_to = row.get(0);
        if let Some(avatar_id) = row.get::<_, Option<uuid::Uuid>>(2) {
            changes.push((checked_up_to, avatar_id));
        }
    }
    let ids: Vec<i64> = changes.iter().map(|(id, _)| *id).collect();
    let missing = state.cache.unannounced(&ids).await?;
    for (event_id, avatar_id) in changes.iter().filter(|(id, _)| missing.contains(id)) {
        let view = store::within(
            state.config.database.statement_timeout,
            avatars::find(&state.pool, *avatar_id),
        )
        .await?;
        if let Some(view) = view {
            if state
                .cache
                .announce_change(&view, STATUS_CHANGED, *event_id)
                .await?
            {
                state.metrics.late_announcements.inc();
                tracing::info!(event_id, avatar_id = %avatar_id, "committed change announced late");
            }
        }
    }
    *cursor = checked_up_to;
    Ok(())
}
