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
//! than that loses announcements, and `webhook_unannounceable_total` counts them. A copy's
//! `avatar.files_stored` is covered the same way: jobs done but never marked announced.

use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;

use crate::cache::{Announced, Cache, CacheError, FILES_STORED, STATUS_CHANGED};
use crate::config::AnnounceConfig;
use crate::store::{self, avatars, event_log, StoreError};

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

/// What the late announcer works with.
pub struct LateAnnouncer {
    pub pool: Pool,
    pub cache: Cache,
    pub config: AnnounceConfig,
    /// How long Redis remembers an announced event (`ANNOUNCE_REMEMBER_SECS`).
    pub remembered: Duration,
    pub statement_timeout: Duration,
    pub late_announcements: IntCounter,
    pub unannounceable: IntCounter,
}

pub async fn run(announcer: LateAnnouncer, shutdown: CancellationToken) {
    // A restarted instance looks back far enough to cover its own last moments.
    let mut cursor = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(announcer.config.interval) => {}
        }
        let result = match cursor {
            None => event_log::start_before(&announcer.pool, LOOK_BACK)
                .await
                .map(|start| cursor = Some(start))
                .map_err(AnnounceError::from),
            Some(ref mut position) => match announcer.catch_up(position, &shutdown).await {
                Ok(()) => announcer.announce_files().await,
                failed => failed,
            },
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "announcer pass skipped");
        }
    }
}

impl LateAnnouncer {
    /// Pages of settled events until the cursor is a settle time behind the present.
    async fn catch_up(
        &self,
        cursor: &mut i64,
        shutdown: &CancellationToken,
    ) -> Result<(), AnnounceError> {
        while !shutdown.is_cancelled() && self.page(cursor).await? {}
        Ok(())
    }

    /// One page past the cursor; the cursor moves only over what was checked. True when a full
    /// page was read and more may follow.
    async fn page(&self, cursor: &mut i64) -> Result<bool, AnnounceError> {
        // Redis's memory of announcements, less a margin for the time this pass takes.
        let remembered = self.remembered.saturating_sub(Duration::from_secs(600));
        let events =
            event_log::after(&self.pool, *cursor, self.config.settle, remembered, PAGE).await?;
        let mut checked_up_to = *cursor;
        let mut changes = Vec::new();
        let mut too_old = 0;
        let mut settled_all = true;
        for event in &events {
            if !event.settled {
                // Ids are not in commit order: nothing past an unsettled event is trusted yet.
                settled_all = false;
                break;
            }
            checked_up_to = event.id;
            match event.applied_to {
                Some(avatar_id) if event.remembered => changes.push((event.id, avatar_id)),
                Some(_) => too_old += 1,
                None => {}
            }
        }
        if too_old > 0 {
            self.unannounceable.inc_by(too_old);
            tracing::warn!(
                events = too_old,
                "changes older than Redis remembers announcements were not checked"
            );
        }
        self.announce_missing(&changes).await?;
        *cursor = checked_up_to;
        Ok(settled_all && events.len() as i64 == PAGE)
    }

    /// Copies whose `avatar.files_stored` was never marked announced: announced now unless
    /// Redis remembers it was, then marked. Older than Redis remembers: marked, counted.
    async fn announce_files(&self) -> Result<(), AnnounceError> {
        let remembered = self.remembered.saturating_sub(Duration::from_secs(600));
        let jobs =
            event_log::unannounced_files(&self.pool, self.config.settle, remembered, PAGE).await?;
        for job in jobs {
            if !job.remembered {
                self.unannounceable.inc();
            } else if let Some(view) = store::within(
                self.statement_timeout,
                avatars::find(&self.pool, job.avatar_id),
            )
            .await?
            {
                let mark = Announced::Files(job.job_id);
                if self
                    .cache
                    .publish_missed_change(&view, FILES_STORED, mark)
                    .await?
                {
                    self.late_announcements.inc();
                    tracing::info!(job_id = job.job_id, avatar_id = %job.avatar_id, "stored files announced late");
                }
            }
            event_log::mark_files_announced(&self.pool, job.job_id).await?;
        }
        Ok(())
    }

    /// Of these applied events, announces those Redis has no record of, with the avatar as it
    /// is now.
    async fn announce_missing(&self, changes: &[(i64, uuid::Uuid)]) -> Result<(), AnnounceError> {
        let ids: Vec<i64> = changes.iter().map(|(id, _)| *id).collect();
        let missing = self.cache.unannounced(&ids).await?;
        for (event_id, avatar_id) in changes.iter().filter(|(id, _)| missing.contains(id)) {
            let view = store::within(
                self.statement_timeout,
                avatars::find(&self.pool, *avatar_id),
            )
            .await?;
            let Some(view) = view else { continue };
            if self
                .cache
                .publish_missed_change(&view, STATUS_CHANGED, Announced::Event(*event_id))
                .await?
            {
                self.late_announcements.inc();
                tracing::info!(event_id, avatar_id = %avatar_id, "committed change announced late");
            }
        }
        Ok(())
    }
}
