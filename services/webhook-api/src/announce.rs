//! Every committed change reaches the bot's stream, even when the request path could not
//! announce it: Redis was down, or the instance died between the commit and the XADD.
//!
//! Each instance walks `webhook_events` in id order behind a cursor, a settle time behind the
//! present (so transactions still committing are not skipped), asks Redis which applied events
//! it has no record of announcing, and announces those with the avatar as it is now. Redis
//! remembers announced events for `ANNOUNCE_REMEMBER_SECS`, and the late announcement is one
//! script that does nothing for an event already announced, so two instances, or an instance
//! and the request path, never announce a change twice. Events older than Redis remembers are
//! passed over (announcing them could repeat an announcement): only an outage of Redis longer
//! than that loses announcements, and `webhook_unannounceable_total` counts them.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::cache::{CacheError, STATUS_CHANGED};
use crate::http::AppState;
use crate::store::{self, avatars, StoreError};

/// Events read per query; a pass reads pages until it is a settle time behind the present.
const PAGE: i64 = 2000;
/// How far back a starting instance looks: past its own last moments, if it was killed.
const LOOK_BACK: Duration = Duration::from_secs(10 * 60);

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
            Some(ref mut position) => catch_up(&state, config.settle, position, &shutdown).await,
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
            &[&LOOK_BACK.as_secs_f64()],
        )
        .await
        .map_err(StoreError::from)?;
    Ok(row.get(0))
}

/// Pages of settled events until the cursor is a settle time behind the present.
async fn catch_up(
    state: &AppState,
    settle: Duration,
    cursor: &mut i64,
    shutdown: &CancellationToken,
) -> Result<(), AnnounceError> {
    while !shutdown.is_cancelled() && page(state, settle, cursor).await? {}
    Ok(())
}

/// One page past the cursor; the cursor moves only over what was checked. True when a full
/// page was read and more may follow.
async fn page(state: &AppState, settle: Duration, cursor: &mut i64) -> Result<bool, AnnounceError> {
    // Redis's memory of announcements, less a margin for the time this pass takes.
    let remembered = state
        .config
        .redis
        .announced_ttl
        .saturating_sub(Duration::from_secs(600));
    let rows = {
        let client = state.pool.get().await.map_err(StoreError::from)?;
        client
            .query(
                "SELECT id, received_at <= now() - make_interval(secs => $2), \
                   CASE WHEN outcome = 'applied' THEN avatar_id END, \
                   received_at > now() - make_interval(secs => $4) \
                 FROM webhook_events WHERE id > $1 ORDER BY id LIMIT $3",
                &[
                    &*cursor,
                    &settle.as_secs_f64(),
                    &PAGE,
                    &remembered.as_secs_f64(),
                ],
            )
            .await
            .map_err(StoreError::from)?
    };
    let mut checked_up_to = *cursor;
    let mut changes = Vec::new();
    let mut too_old = 0;
    let mut settled_all = true;
    for row in &rows {
        let settled: bool = row.get(1);
        if !settled {
            // Ids are not in commit order: nothing past an unsettled event is trusted yet.
            settled_all = false;
            break;
        }
        checked_up_to = row.get(0);
        if let Some(avatar_id) = row.get::<_, Option<uuid::Uuid>>(2) {
            if row.get::<_, bool>(3) {
                changes.push((checked_up_to, avatar_id));
            } else {
                too_old += 1;
            }
        }
    }
    if too_old > 0 {
        state.metrics.unannounceable.inc_by(too_old);
        tracing::warn!(
            events = too_old,
            "changes older than Redis remembers announcements were not checked"
        );
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
                .announce_change_once(&view, STATUS_CHANGED, *event_id)
                .await?
            {
                state.metrics.late_announcements.inc();
                tracing::info!(event_id, avatar_id = %avatar_id, "committed change announced late");
            }
        }
    }
    *cursor = checked_up_to;
    Ok(settled_all && rows.len() as i64 == PAGE)
}
