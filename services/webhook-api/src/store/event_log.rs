//! What the late announcer (`tasks::late_announcer`) reads: `webhook_events` in id order (which
//! committed changes may still need announcing) and the file jobs whose `avatar.files_stored`
//! was never marked announced.

use std::time::Duration;

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::StoreError;

/// The id just before the first event received in the last `look_back` (or the last id).
pub async fn start_before(pool: &Pool, look_back: Duration) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT COALESCE( \
               (SELECT min(id) FROM webhook_events \
                WHERE received_at > now() - make_interval(secs => $1)), \
               (SELECT COALESCE(max(id), 0) + 1 FROM webhook_events)) - 1",
            &[&look_back.as_secs_f64()],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// One event past the cursor, as the late announcer sees it.
#[derive(Debug)]
pub struct LoggedEvent {
    pub id: i64,
    /// Received at least a settle time ago: its transaction has surely committed or failed.
    pub settled: bool,
    /// The avatar it changed, if it was applied.
    pub applied_to: Option<Uuid>,
    /// Received recently enough that Redis still remembers whether it was announced.
    pub remembered: bool,
}

pub async fn after(
    pool: &Pool,
    cursor: i64,
    settle: Duration,
    remembered: Duration,
    limit: i64,
) -> Result<Vec<LoggedEvent>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, received_at <= now() - make_interval(secs => $2), \
               CASE WHEN outcome = 'applied' THEN avatar_id END, \
               received_at > now() - make_interval(secs => $4) \
             FROM webhook_events WHERE id > $1 ORDER BY id LIMIT $3",
            &[
                &cursor,
                &settle.as_secs_f64(),
                &limit,
                &remembered.as_secs_f64(),
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(LoggedEvent {
                id: row.try_get(0)?,
                settled: row.try_get(1)?,
                applied_to: row.try_get(2)?,
                remembered: row.try_get(3)?,
            })
        })
        .collect()
}

/// A finished copy whose `avatar.files_stored` was never marked announced.
#[derive(Debug)]
pub struct UnannouncedFiles {
    pub job_id: i64,
    pub avatar_id: Uuid,
    /// Finished recently enough that Redis still remembers whether it was announced.
    pub remembered: bool,
}

/// Jobs done at least `settle` ago and not marked announced, oldest first.
pub async fn unannounced_files(
    pool: &Pool,
    settle: Duration,
    remembered: Duration,
    limit: i64,
) -> Result<Vec<UnannouncedFiles>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, avatar_id, finished_at > now() - make_interval(secs => $2) \
             FROM file_jobs \
             WHERE state = 'done' AND announced_at IS NULL \
               AND finished_at <= now() - make_interval(secs => $1) \
             ORDER BY finished_at LIMIT $3",
            &[&settle.as_secs_f64(), &remembered.as_secs_f64(), &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(UnannouncedFiles {
                job_id: row.try_get(0)?,
                avatar_id: row.try_get(1)?,
                remembered: row.try_get(2)?,
            })
        })
        .collect()
}

pub async fn mark_files_announced(pool: &Pool, job_id: i64) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE file_jobs SET announced_at = now() WHERE id = $1 AND announced_at IS NULL",
            &[&job_id],
        )
        .await?;
    Ok(())
}
