//! The one path of a verified delivery, whoever brings it (a webhook handler, an operator's
//! replay, the reconciler): commit it within the statement timeout, then what follows a commit:
//! wake the file worker or the deploy runner, announce on Redis (after the answer: `announce`).
//! Nothing here is HTTP.

mod announce;
mod replay;
mod sources;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus::IntCounterVec;
use tokio::sync::Notify;

use crate::cache::{Announced, Cache, CacheError, STATUS_CHANGED};
use crate::metrics;
use crate::spool::Spool;
use crate::store::group::GroupCommitter;
use crate::store::ingest::{Delivery, Ingested};
use crate::store::{self, StoreError};
use announce::Announcer;

pub use replay::{ReplayContext, ReplayError, Replayed};
pub use sources::{push_decision, Push, SourceDelivery, SourceReplay, Taken};

/// Handles the ingest path needs; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    pool: Pool,
    committer: GroupCommitter,
    cache: Cache,
    announcer: Announcer,
    statement_timeout: Duration,
    redis_errors: IntCounterVec,
    /// Where deliveries of the sources that spool wait while PostgreSQL is away.
    spool: Option<Arc<Spool>>,
    /// Wakes this instance's file worker when a completion enqueued a job.
    pub job_enqueued: Arc<Notify>,
    /// Wakes this instance's deploy runner when a push queued a deploy.
    pub deploy_queued: Arc<Notify>,
    /// Wakes this instance's bulk replayer when an operator asked for one.
    pub bulk_replay_queued: Arc<Notify>,
}

impl Ingest {
    pub fn new(
        pool: Pool,
        committer: GroupCommitter,
        cache: Cache,
        statement_timeout: Duration,
        redis_errors: IntCounterVec,
        announce_settle: Duration,
    ) -> Self {
        Self {
            pool,
            committer,
            announcer: Announcer::start(cache.clone(), redis_errors.clone(), announce_settle),
            cache,
            statement_timeout,
            redis_errors,
            spool: None,
            job_enqueued: Arc::new(Notify::new()),
            deploy_queued: Arc::new(Notify::new()),
            bulk_replay_queued: Arc::new(Notify::new()),
        }
    }

    pub fn with_spool(mut self, spool: Option<Arc<Spool>>) -> Self {
        self.spool = spool;
        self
    }

    /// A FAL callback (or FAL's answer the reconciler fetched): committed with whatever else is
    /// queued, then the file worker woken and the change queued for its announcement.
    pub async fn fal_callback(&self, delivery: Delivery) -> Result<Ingested, StoreError> {
        let arrived = delivery.received;
        let ingested =
            store::within(self.statement_timeout, self.committer.ingest(delivery)).await?;
        if ingested.file_job.is_some() {
            self.job_enqueued.notify_one();
        }
        if let Some(avatar) = &ingested.changed {
            self.announcer.announce(
                avatar.clone(),
                STATUS_CHANGED,
                Announced::Event(ingested.event_id),
                arrived,
            );
        }
        Ok(ingested)
    }

    fn redis_failed(&self, operation: &str, error: &CacheError, what: &str) {
        metrics::redis_failed(&self.redis_errors, operation, error, what);
    }
}
