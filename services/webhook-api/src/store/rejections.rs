//! Requests refused before they were accepted (bad signature, bad body), kept for operators as
//! `rejected` events without their body and with a few short headers. Written off the request
//! path, once a second, at most `REJECTED_ROWS_PER_SECOND` of them: past that a flood of forged
//! requests is only counted (`webhook_rejections_dropped_total`). Rows older than
//! `RETENTION_REJECTED_DAYS` are deleted, in small batches, at start and every ten minutes.

use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::config::RejectionsConfig;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
const PURGE_EVERY: Duration = Duration::from_secs(600);
const PURGE_BATCH: i64 = 1000;

#[derive(Debug)]
pub struct Rejection {
    pub source: String,
    pub event_type: String,
    pub reason: String,
    pub scheme: String,
    pub status_code: i16,
    pub http_request_id: String,
    pub instance_id: String,
    pub headers: serde_json::Value,
    pub processing_ms: f32,
}

pub struct RejectionLog {
    queue: mpsc::Sender<Rejection>,
    dropped: IntCounter,
}

const INSERT: &str = "INSERT INTO webhook_events \
     (source, event, outcome, outcome_reason, signature_scheme, status_code, http_request_id, \
      instance_id, headers, processing_ms) \
     SELECT s, e, 'rejected', r, sc, st, h, i, hd, ms FROM unnest( \
       $1::text[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::text[], $7::text[], \
       $8::jsonb[], $9::real[]) AS d(s, e, r, sc, st, h, i, hd, ms)";

impl RejectionLog {
    /// Starts the writer and the purge; both end when the log is dropped.
    pub fn start(pool: Pool, dropped: IntCounter, config: &RejectionsConfig) -> Self {
        let per_second = config.rows_per_second.max(1);
        let (queue, receiver) = mpsc::channel(per_second);
        tokio::spawn(purge_old(pool.clone(), config.keep, queue.downgrade()));
        tokio::spawn(write_batches(pool, receiver, dropped.clone(), per_second));
        Self { queue, dropped }
    }

    /// Never waits: when the writer is behind, the rejection is counted, and not even built.
    pub fn record(&self, rejection: impl FnOnce() -> Rejection) {
        match self.queue.try_reserve() {
            Ok(slot) => slot.send(rejection()),
            Err(_) => self.dropped.inc(),
        }
    }
}

async fn write_batches(
    pool: Pool,
    mut receiver: mpsc::Receiver<Rejection>,
    dropped: IntCounter,
    per_second: usize,
) {
    let mut batch = Vec::with_capacity(per_second);
    while receiver.recv_many(&mut batch, per_second).await > 0 {
        if let Err(e) = insert(&pool, &batch).await {
            dropped.inc_by(batch.len() as u64);
            tracing::warn!(error = %e, rows = batch.len(), "rejected requests not recorded");
        }
        batch.clear();
        tokio::time::sleep(FLUSH_EVERY).await;
    }
}

async fn insert(pool: &Pool, batch: &[Rejection]) -> Result<(), super::StoreError> {
    let column = |f: fn(&Rejection) -> &str| batch.iter().map(f).collect::<Vec<&str>>();
    let client = pool.get().await?;
    client
        .execute(
            &client.prepare_cached(INSERT).await?,
            &[
                &column(|r| &r.source),
                &column(|r| &r.event_type),
                &column(|r| &r.reason),
                &column(|r| &r.scheme),
                &batch.iter().map(|r| r.status_code).collect::<Vec<_>>(),
                &column(|r| &r.http_request_id),
                &column(|r| &r.instance_id),
                &batch.iter().map(|r| &r.headers).collect::<Vec<_>>(),
                &batch.iter().map(|r| r.processing_ms).collect::<Vec<_>>(),
            ],
        )
        .await?;
    Ok(())
}

const PURGE: &str = "DELETE FROM webhook_events WHERE id IN ( \
       SELECT id FROM webhook_events \
       WHERE outcome = 'rejected' AND received_at < now() - make_interval(secs => $1) \
       ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// Deletes expired rejected rows until none is left, then waits; ends with the log (when the
/// last sender of `alive` is gone).
async fn purge_old(pool: Pool, keep: Duration, alive: mpsc::WeakSender<Rejection>) {
    while alive.upgrade().is_some() {
        loop {
            match purge_batch(&pool, keep).await {
                Ok(deleted) if deleted > 0 => {
                    tracing::info!(deleted, "expired rejected requests deleted");
                    if deleted < PURGE_BATCH as u64 {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "expired rejected requests not deleted");
                    break;
                }
            }
        }
        tokio::time::sleep(PURGE_EVERY).await;
    }
}

async fn purge_batch(pool: &Pool, keep: Duration) -> Result<u64, super::StoreError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(PURGE).await?;
    Ok(client
        .execute(&statement, &[&keep.as_secs_f64(), &PURGE_BATCH])
        .await?)
}
