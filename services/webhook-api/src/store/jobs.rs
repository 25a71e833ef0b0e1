//! The file-copy job queue in PostgreSQL: enqueue (inside the ingest transaction), claim with
//! `FOR UPDATE SKIP LOCKED` under a lease, renew, settle, and the operators' views.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

use super::avatars::{AvatarView, VIEW_COLUMNS};
use super::lease_queue::{LeaseQueue, Settlement};
use super::StoreError;
use crate::files::policy::{FileKind, JobFile};
use crate::files::{OpenUpload, Stored};

#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub avatar_id: Uuid,
    pub user_id: Option<String>,
    pub files: Vec<JobFile>,
    /// Including this one.
    pub attempts: i32,
    /// Multipart uploads earlier attempts started and may have left open.
    pub open_uploads: Vec<OpenUpload>,
}

pub async fn enqueue(
    client: &impl GenericClient,
    avatar_id: Uuid,
    event_id: i64,
    files: &[JobFile],
) -> Result<i64, StoreError> {
    let files = serde_json::to_value(files).expect("job files serialize");
    let statement = client
        .prepare_cached(
            "INSERT INTO file_jobs (avatar_id, event_id, files) VALUES ($1, $2, $3) RETURNING id",
        )
        .await?;
    let row = client
        .query_one(&statement, &[&avatar_id, &event_id, &files])
        .await?;
    Ok(row.try_get(0)?)
}

/// The file copies' queue.
static QUEUE: LazyLock<LeaseQueue> = LazyLock::new(|| {
    LeaseQueue::new(
        "file_jobs",
        "TRUE",
        "q.id, q.avatar_id, q.files, q.attempts, \
         (SELECT user_id::text FROM avatars a WHERE a.id = q.avatar_id), q.open_uploads",
        None,
    )
});

/// Takes the next due job, or one whose lease ran out (its worker died).
pub async fn claim(
    pool: &Pool,
    owner: &str,
    lease: Duration,
) -> Result<Option<ClaimedJob>, StoreError> {
    let client = pool.get().await?;
    let Some(row) = QUEUE.claim(&client, owner, lease, &[]).await? else {
        return Ok(None);
    };
    Ok(Some(ClaimedJob {
        id: row.try_get(0)?,
        avatar_id: row.try_get(1)?,
        files: from_json(row.try_get(2)?, "file_jobs.files")?,
        attempts: row.try_get(3)?,
        user_id: row.try_get(4)?,
        open_uploads: from_json(row.try_get(5)?, "file_jobs.open_uploads")?,
    }))
}

fn from_json<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    column: &str,
) -> Result<T, StoreError> {
    serde_json::from_value(value)
        .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("{column}: {e}")))
}

/// Remembers a multipart upload the current attempt started (see `UploadJournal`).
pub async fn record_upload(
    pool: &Pool,
    job_id: i64,
    owner: &str,
    upload: &OpenUpload,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    let upload = serde_json::to_value(upload).expect("an upload serializes");
    client
        .execute(
            "UPDATE file_jobs SET open_uploads = open_uploads || jsonb_build_array($3::jsonb) \
             WHERE id = $1 AND lease_owner = $2",
            &[&job_id, &owner, &upload],
        )
        .await?;
    Ok(())
}

/// Forgets uploads once they have been aborted.
pub async fn forget_uploads(pool: &Pool, job_id: i64, owner: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE file_jobs SET open_uploads = '[]' WHERE id = $1 AND lease_owner = $2",
            &[&job_id, &owner],
        )
        .await?;
    Ok(())
}

/// Extends the lease; `false` when another worker has taken the job over.
pub async fn renew(
    pool: &Pool,
    job_id: i64,
    owner: &str,
    lease: Duration,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    QUEUE.renew(&client, job_id, owner, lease).await
}

/// Records the stored files and the avatar's keys in one transaction, with the removal of the
/// training photos when `delete_photos` (only now are the files safe: an avatar is never left
/// with neither); returns the avatar as committed, or `None` when the lease was lost meanwhile
/// (the other worker records it).
pub async fn complete(
    pool: &Pool,
    job: &ClaimedJob,
    owner: &str,
    stored: &[(JobFile, Stored)],
    delete_photos: bool,
) -> Result<Option<AvatarView>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let owned = tx
        .execute(
            "UPDATE file_jobs SET state = 'done', finished_at = now(), updated_at = now(), \
               lease_owner = NULL, lease_expires_at = NULL, last_error = NULL, open_uploads = '[]' \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            &[&job.id, &owner],
        )
        .await?;
    if owned != 1 {
        return Ok(None);
    }
    for (file, object) in stored {
        tx.execute(
            "INSERT INTO avatar_files (avatar_id, kind, object_key, sha256, size_bytes, source_url, job_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (avatar_id, kind) DO UPDATE SET object_key = EXCLUDED.object_key, \
               sha256 = EXCLUDED.sha256, size_bytes = EXCLUDED.size_bytes, \
               source_url = EXCLUDED.source_url, job_id = EXCLUDED.job_id, stored_at = now()",
            &[
                &job.avatar_id,
                &file.kind.as_str(),
                &object.key,
                &object.sha256,
                &(object.size as i64),
                &file.source.url,
                &job.id,
            ],
        )
        .await?;
    }
    let key_of = |kind| {
        stored
            .iter()
            .find(|(file, _)| file.kind == kind)
            .map(|(_, object)| object.key.as_str())
    };
    let row = tx
        .query_one(
            &format!(
                "UPDATE avatars SET lora_object_key = COALESCE($2, lora_object_key), \
                   config_object_key = COALESCE($3, config_object_key), \
                   files_stored_at = now(), files_error = NULL, updated_at = now() \
                 WHERE id = $1 RETURNING {VIEW_COLUMNS}"
            ),
            &[
                &job.avatar_id,
                &key_of(FileKind::Lora),
                &key_of(FileKind::Config),
            ],
        )
        .await?;
    let view = AvatarView::from_row(&row)?;
    if delete_photos {
        // Under the completion's delivery key, like the follow-ups its change recorded.
        tx.execute(super::followups::PHOTOS_AFTER_COPY, &[&job.id])
            .await?;
    }
    tx.commit().await?;
    Ok(Some(view))
}

/// How a job that did not complete is settled.
#[derive(Debug, Clone, Copy)]
pub enum Setback {
    /// Try again after the delay.
    Retry(Duration),
    /// Permanently failed: the URL or file is unacceptable.
    Failed,
    /// Retries exhausted.
    Dead,
}

pub async fn settle(
    pool: &Pool,
    job: &ClaimedJob,
    owner: &str,
    setback: Setback,
    reason: &str,
) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let (state, after) = match setback {
        Setback::Retry(delay) => (JobState::Pending, delay),
        Setback::Failed => (JobState::Failed, Duration::ZERO),
        Setback::Dead => (JobState::Dead, Duration::ZERO),
    };
    let settlement = Settlement {
        state,
        after,
        error: Some(reason),
        refund: false,
    };
    let owned = QUEUE.settle(&tx, job.id, owner, &settlement, None).await?;
    if owned && !matches!(setback, Setback::Retry(_)) {
        // The avatar stays `completed`; the bot and operators see why its files are missing.
        tx.execute(
            "UPDATE avatars SET files_error = $2, updated_at = now() WHERE id = $1",
            &[&job.avatar_id, &reason],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Hands a job back untouched (shutdown): another worker may take it at once.
pub async fn release(pool: &Pool, job: &ClaimedJob, owner: &str) -> Result<(), StoreError> {
    let client = pool.get().await?;
    QUEUE.release(&client, job.id, owner).await
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    pub pending: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
    pub dead: i64,
    pub oldest_pending_age_secs: f64,
}

pub async fn stats(pool: &Pool) -> Result<QueueStats, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT state, count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8 \
             FROM file_jobs GROUP BY state",
            &[],
        )
        .await?;
    let mut stats = QueueStats::default();
    for row in rows {
        let state: String = row.try_get(0)?;
        let count: i64 = row.try_get(1)?;
        let state = JobState::parse(&state).unwrap_or(JobState::Dead);
        if matches!(state, JobState::Pending | JobState::Running) {
            let age: f64 = row.try_get(2)?;
            stats.oldest_pending_age_secs = stats.oldest_pending_age_secs.max(age);
        }
        match state {
            JobState::Pending => stats.pending = count,
            JobState::Running => stats.running = count,
            JobState::Done => stats.done = count,
            JobState::Failed => stats.failed = count,
            JobState::Dead => stats.dead = count,
        }
    }
    Ok(stats)
}

/// Where a file job stands (`file_jobs.state`): the lease queue's states.
pub use super::lease_queue::State as JobState;

#[derive(Debug, Clone)]
pub struct JobSummary {
    pub id: i64,
    pub avatar_id: Uuid,
    pub state: JobState,
    pub attempts: i32,
    pub updated_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

pub async fn list(
    pool: &Pool,
    state: Option<JobState>,
    limit: i64,
) -> Result<Vec<JobSummary>, StoreError> {
    let client = pool.get().await?;
    let state = state.map(JobState::as_str);
    let rows = client
        .query(
            "SELECT id, avatar_id, state, attempts, updated_at, last_error FROM file_jobs \
             WHERE $1::text IS NULL OR state = $1 ORDER BY id DESC LIMIT $2",
            &[&state, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get(2)?;
            let state = JobState::parse(&state).ok_or_else(|| {
                StoreError::Unexpected(anyhow::anyhow!("file job in an unknown state {state:?}"))
            })?;
            Ok(JobSummary {
                id: row.try_get(0)?,
                avatar_id: row.try_get(1)?,
                state,
                attempts: row.try_get(3)?,
                updated_at: row.try_get(4)?,
                last_error: row.try_get(5)?,
            })
        })
        .collect()
}

/// Puts jobs back in the queue with a fresh attempt budget: one by id (any state but running
/// or done), or every dead one. Returns how many were re-queued.
pub async fn requeue(pool: &Pool, job_id: Option<i64>) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    let requeued = match job_id {
        Some(id) => {
            client
                .execute(
                    "UPDATE file_jobs SET state = 'pending', attempts = 0, run_after = now(), \
                       finished_at = NULL, updated_at = now() \
                     WHERE id = $1 AND state IN ('pending', 'failed', 'dead')",
                    &[&id],
                )
                .await?
        }
        None => {
            client
                .execute(
                    "UPDATE file_jobs SET state = 'pending', attempts = 0, run_after = now(), \
                       finished_at = NULL, updated_at = now() WHERE state = 'dead'",
                    &[],
                )
                .await?
        }
    };
    Ok(requeued)
}
