//! Replays of every delivery a filter matches (`console_replays`), worked in batches under a
//! lease by any instance.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use super::search::DeliveryFilter;
use crate::store::StoreError;

/// A replay of a filter's deliveries (`console_replays`).
#[derive(Debug, Clone)]
pub struct BulkReplay {
    pub id: i64,
    pub requested_by: String,
    pub filter: DeliveryFilter,
    pub filter_query: String,
    pub estimate: i64,
    pub cap: i32,
    pub state: String,
    pub cancel_requested: bool,
    pub cursor: i64,
    pub done: i32,
    pub skipped: i32,
    pub failed: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl BulkReplay {
    pub fn processed(&self) -> i32 {
        self.done + self.skipped + self.failed
    }

    pub fn open(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "running")
    }

    fn from_row(row: &tokio_postgres::Row) -> Result<Self, StoreError> {
        let filter: serde_json::Value = row.try_get(2)?;
        Ok(Self {
            id: row.try_get(0)?,
            requested_by: row.try_get(1)?,
            filter: serde_json::from_value(filter)
                .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("a stored filter: {e}")))?,
            filter_query: row.try_get(3)?,
            estimate: row.try_get(4)?,
            cap: row.try_get(5)?,
            state: row.try_get(6)?,
            cancel_requested: row.try_get(7)?,
            cursor: row.try_get(8)?,
            done: row.try_get(9)?,
            skipped: row.try_get(10)?,
            failed: row.try_get(11)?,
            last_error: row.try_get(12)?,
            created_at: row.try_get(13)?,
            finished_at: row.try_get(14)?,
        })
    }
}

const SELECT_REPLAYS: &str =
    "SELECT id, requested_by, filter, filter_query, estimate, cap, state, \
     cancel_requested, cursor, done, skipped, failed, last_error, created_at, finished_at \
     FROM console_replays";

/// A new bulk replay of what `filter` matches below `cursor`; its id.
pub async fn queue_replay(
    pool: &Pool,
    requested_by: &str,
    filter: &DeliveryFilter,
    filter_query: &str,
    estimate: i64,
    cap: i32,
    cursor: i64,
) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let filter = serde_json::to_value(filter).expect("a filter serializes");
    Ok(client
        .query_one(
            "INSERT INTO console_replays (requested_by, filter, filter_query, estimate, cap, cursor) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&requested_by, &filter, &filter_query, &estimate, &cap, &cursor],
        )
        .await?
        .try_get(0)?)
}

pub async fn replay_job(pool: &Pool, id: i64) -> Result<Option<BulkReplay>, StoreError> {
    let client = pool.get().await?;
    client
        .query_opt(&format!("{SELECT_REPLAYS} WHERE id = $1"), &[&id])
        .await?
        .as_ref()
        .map(BulkReplay::from_row)
        .transpose()
}

pub async fn replay_jobs(pool: &Pool, limit: i64) -> Result<Vec<BulkReplay>, StoreError> {
    let client = pool.get().await?;
    client
        .query(
            &format!("{SELECT_REPLAYS} ORDER BY id DESC LIMIT $1"),
            &[&limit],
        )
        .await?
        .iter()
        .map(BulkReplay::from_row)
        .collect()
}

/// Asks a bulk replay to stop: one not started yet stops at once, a running one after its
/// batch. Whether it was still open.
pub async fn cancel_replay(pool: &Pool, id: i64) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE console_replays SET cancel_requested = true, \
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, \
               finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END \
             WHERE id = $1 AND state IN ('queued', 'running')",
            &[&id],
        )
        .await?;
    Ok(changed == 1)
}

/// Whether an operator asked bulk replay `id` to stop.
pub async fn replay_cancelled(pool: &Pool, id: i64) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            "SELECT cancel_requested FROM console_replays WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(true))
}

/// Takes the oldest open bulk replay nobody holds (or whose holder's lease ran out).
pub async fn claim_replay(
    pool: &Pool,
    owner: &str,
    lease: Duration,
) -> Result<Option<BulkReplay>, StoreError> {
    let claimed = {
        let client = pool.get().await?;
        client
            .query_opt(
                "WITH claimable AS (SELECT id FROM console_replays \
                   WHERE state IN ('queued', 'running') \
                     AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 UPDATE console_replays r SET state = 'running', lease_owner = $1, \
                   lease_expires_at = now() + make_interval(secs => $2), \
                   started_at = coalesce(started_at, now()) \
                 FROM claimable WHERE r.id = claimable.id RETURNING r.id",
                &[&owner, &lease.as_secs_f64()],
            )
            .await?
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()?
    };
    match claimed {
        Some(id) => replay_job(pool, id).await,
        None => Ok(None),
    }
}

/// What one batch of a bulk replay came to.
#[derive(Debug, Default)]
pub struct ReplayBatch<'a> {
    /// Done, skipped, failed.
    pub counts: (i32, i32, i32),
    /// Where the next batch starts.
    pub cursor: i64,
    pub last_error: Option<&'a str>,
    /// The replay is over, in this state (`done`, `cancelled`, `failed`).
    pub finished: Option<&'a str>,
}

/// Records a batch and renews the lease; `false` when the lease is no longer ours.
pub async fn record_replay_batch(
    pool: &Pool,
    id: i64,
    owner: &str,
    lease: Duration,
    batch: &ReplayBatch<'_>,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let (done, skipped, failed) = batch.counts;
    let (cursor, last_error, finished) = (batch.cursor, batch.last_error, batch.finished);
    let changed = client
        .execute(
            "UPDATE console_replays SET done = done + $3, skipped = skipped + $4, \
               failed = failed + $5, cursor = $6, last_error = coalesce($7, last_error), \
               lease_expires_at = now() + make_interval(secs => $8), \
               state = coalesce($9, state), \
               finished_at = CASE WHEN $9::text IS NULL THEN NULL ELSE now() END \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            &[
                &id,
                &owner,
                &done,
                &skipped,
                &failed,
                &cursor,
                &last_error,
                &lease.as_secs_f64(),
                &finished,
            ],
        )
        .await?;
    Ok(changed == 1)
}
