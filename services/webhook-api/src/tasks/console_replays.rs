//! Bulk replays asked for in the console: every instance takes open ones under a lease and
//! replays a filter's deliveries, newest first, a batch at a time at a bounded rate; between
//! batches it records the counts and where it is (so another instance carries on after a
//! crash, from the last recorded batch: a replay is idempotent) and looks for a cancel.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{DeployConfig, SourceConfig};
use crate::ingest::{Ingest, ReplayContext, ReplayError};
use crate::store::console::{self, BulkReplay, Columns, ReplayBatch};

const BATCH: i64 = 50;
const LEASE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(2);
/// How often a running batch looks for a cancel.
const CANCEL_CHECK: Duration = Duration::from_secs(1);

/// What the replayer needs.
pub struct BulkReplays {
    pub pool: Pool,
    pub ingest: Ingest,
    pub sources: Vec<SourceConfig>,
    pub deploy: Option<DeployConfig>,
    pub instance_id: String,
    pub owner: String,
    pub per_second: u32,
    pub query_timeout: Duration,
    pub queued: Arc<Notify>,
}

pub async fn run(work: BulkReplays, shutdown: CancellationToken) {
    loop {
        match console::claim_replay(&work.pool, &work.owner, LEASE).await {
            Ok(Some(job)) => {
                tracing::info!(replay = job.id, by = %job.requested_by, "bulk replay started");
                work.replay(job, &shutdown).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "bulk replays not claimed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = work.queued.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

impl BulkReplays {
    async fn replay(&self, mut job: BulkReplay, shutdown: &CancellationToken) {
        let context = ReplayContext {
            sources: &self.sources,
            deploy: self.deploy.as_ref(),
            instance_id: &self.instance_id,
        };
        let pause = Duration::from_secs_f64(1.0 / f64::from(self.per_second));
        loop {
            if shutdown.is_cancelled() {
                return; // the lease runs out and another instance carries on
            }
            let left = i64::from(job.cap - job.processed());
            let finished = if job.cancel_requested {
                Some("cancelled")
            } else if left <= 0 {
                Some("done")
            } else {
                None
            };
            let page = match finished {
                Some(_) => Vec::new(),
                None => match console::deliveries(
                    &self.pool,
                    &job.filter,
                    Some(job.cursor),
                    BATCH.min(left),
                    self.query_timeout,
                    Columns::Summary,
                )
                .await
                {
                    Ok(page) => page.rows,
                    Err(e) => {
                        let error = e.to_string();
                        let failed = ReplayBatch {
                            cursor: job.cursor,
                            last_error: Some(&error),
                            finished: Some("failed"),
                            ..ReplayBatch::default()
                        };
                        self.record(&job, &failed).await;
                        return;
                    }
                },
            };
            let mut counts = (0, 0, 0);
            let mut cursor = job.cursor;
            let mut last_error = None;
            let mut checked = tokio::time::Instant::now();
            let mut cancelled = false;
            for row in &page {
                if checked.elapsed() >= CANCEL_CHECK {
                    checked = tokio::time::Instant::now();
                    if console::replay_cancelled(&self.pool, job.id)
                        .await
                        .unwrap_or(false)
                    {
                        cancelled = true;
                        break;
                    }
                }
                let request_id = format!("bulk-replay-{}-{}", job.id, row.id);
                match self
                    .ingest
                    .replay_stored(row.id, &context, None, &request_id)
                    .await
                {
                    Ok(replayed) if replayed.took_effect() => counts.0 += 1,
                    Ok(_) => counts.1 += 1,
                    Err(ReplayError::Conflict(_) | ReplayError::NotFound(_)) => counts.1 += 1,
                    Err(ReplayError::Store(e)) => {
                        counts.2 += 1;
                        last_error = Some(format!("delivery {}: {e}", row.id));
                    }
                }
                cursor = row.id;
                tokio::time::sleep(pause).await;
            }
            let over = finished
                .or(cancelled.then_some("cancelled"))
                .or((page.len() < BATCH.min(left) as usize).then_some("done"));
            let batch = ReplayBatch {
                counts,
                cursor,
                last_error: last_error.as_deref(),
                finished: over,
            };
            if !self.record(&job, &batch).await || over.is_some() {
                tracing::info!(
                    replay = job.id,
                    state = over.unwrap_or("released"),
                    "bulk replay stopped"
                );
                return;
            }
            job = match console::replay_job(&self.pool, job.id).await {
                Ok(Some(job)) => job,
                _ => return,
            };
        }
    }

    async fn record(&self, job: &BulkReplay, batch: &ReplayBatch<'_>) -> bool {
        console::record_replay_batch(&self.pool, job.id, &self.owner, LEASE, batch)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(replay = job.id, error = %e, "bulk replay's progress not recorded");
                false
            })
    }
}
