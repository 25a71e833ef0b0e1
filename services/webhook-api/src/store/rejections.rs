//! Requests refused before they were accepted (bad signature, bad body), kept for operators as
//! `rejected` events without their body. Written off the request path, in batches, and at a
//! bounded rate: a flood of forged requests costs PostgreSQL at most `MAX_ROWS_PER_SECOND`
//! inserts; past that they are only counted (`webhook_rejections_dropped_total`).

use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus::IntCounter;
use tokio::sync::mpsc;

const QUEUE: usize = 256;
const BATCH: usize = 100;
const FLUSH_EVERY: Duration = Duration::from_millis(100);
pub const MAX_ROWS_PER_SECOND: usize = BATCH * 10;

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
    /// Starts the writer; it ends when the log is dropped.
    pub fn start(pool: Pool, dropped: IntCounter) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(pool, receiver, dropped.clone()));
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

async fn write_batches(pool: Pool, mut receiver: mpsc::Receiver<Rejection>, dropped: IntCounter) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
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
