//! The follow-ups of finished trainings (`avatar_followups`): how they are recorded (with the
//! change that calls for them, in the statement `store::schema` writes, and after a copy's
//! files are stored), claimed under a lease, settled, and what doing one reads and removes in
//! the bot's tables (its owner's chat, its training photos).

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::lease_queue::{LeaseQueue, Settlement, State};
use super::StoreError;
use crate::avatar::{AvatarStatus, Followup, FollowupPolicy};

#[derive(Debug, Clone)]
pub struct ClaimedFollowup {
    pub id: i64,
    pub avatar_id: Uuid,
    pub kind: Followup,
    /// Including this one.
    pub attempts: i32,
}

/// The follow-ups' queue: a claim takes one of the kinds asked for (`$3`); a settled one keeps
/// what was done (`result`).
static QUEUE: LazyLock<LeaseQueue> = LazyLock::new(|| {
    LeaseQueue::new(
        "avatar_followups",
        "c.kind = ANY($3)",
        "q.id, q.avatar_id, q.kind, q.attempts",
        Some("result"),
    )
});

/// Takes the next due follow-up of `kinds`, or one whose lease ran out (its instance died).
pub async fn claim(
    pool: &Pool,
    owner: &str,
    lease: Duration,
    kinds: &[Followup],
) -> Result<Option<ClaimedFollowup>, StoreError> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let client = pool.get().await?;
    let Some(row) = QUEUE.claim(&client, owner, lease, &[&kinds]).await? else {
        return Ok(None);
    };
    let kind: String = row.try_get(2)?;
    Ok(Some(ClaimedFollowup {
        id: row.try_get(0)?,
        avatar_id: row.try_get(1)?,
        kind: Followup::parse(&kind).ok_or_else(|| {
            StoreError::Unexpected(anyhow::anyhow!("avatar_followups.kind {kind:?}"))
        })?,
        attempts: row.try_get(3)?,
    }))
}

/// How a claimed follow-up ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// Done: what was done (`sent`, `skipped: …`, `deleted 9 photos`).
    Done(String),
    /// Try again after the delay.
    Retry { after: Duration, error: String },
    /// Try again after the delay without spending an attempt (Telegram's `retry_after`).
    Wait { after: Duration, error: String },
    /// Final: trying again cannot succeed (the user blocked the bot, the chat is gone).
    Failed(String),
    /// Retries exhausted.
    Dead(String),
}

/// `false` when the lease was lost meanwhile (another instance settles it).
pub async fn settle(
    pool: &Pool,
    followup: &ClaimedFollowup,
    owner: &str,
    settled: &Settled,
) -> Result<bool, StoreError> {
    let (state, after, result, error, refund) = match settled {
        Settled::Done(result) => (
            State::Done,
            Duration::ZERO,
            Some(result.as_str()),
            None,
            false,
        ),
        Settled::Retry { after, error } => {
            (State::Pending, *after, None, Some(error.as_str()), false)
        }
        Settled::Wait { after, error } => {
            (State::Pending, *after, None, Some(error.as_str()), true)
        }
        Settled::Failed(error) => (
            State::Failed,
            Duration::ZERO,
            None,
            Some(error.as_str()),
            false,
        ),
        Settled::Dead(error) => (
            State::Dead,
            Duration::ZERO,
            None,
            Some(error.as_str()),
            false,
        ),
    };
    let settlement = Settlement {
        state,
        after,
        error,
        refund,
    };
    let client = pool.get().await?;
    QUEUE
        .settle(&client, followup.id, owner, &settlement, result)
        .await
}

/// Hands a follow-up back untouched (shutdown): another instance may take it at once.
pub async fn release(
    pool: &Pool,
    followup: &ClaimedFollowup,
    owner: &str,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    QUEUE.release(&client, followup.id, owner).await
}

/// What a message about an avatar names, and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    pub avatar_name: Option<String>,
    /// As the bot stores it (`PORTRAIT`, `style`, …).
    pub training_type: Option<String>,
    /// `users.telegram_id` of the avatar's owner; `None` without one (or without `users`).
    pub telegram_id: Option<String>,
}

/// `None` when the avatar is gone.
pub async fn recipient(pool: &Pool, avatar_id: Uuid) -> Result<Option<Recipient>, StoreError> {
    let client = pool.get().await?;
    let owner = if has_table(&**client, "users").await? {
        "(SELECT u.telegram_id::text FROM users u WHERE u.id = a.user_id)"
    } else {
        "NULL::text"
    };
    let statement = client
        .prepare_cached(&format!(
            "SELECT a.name::text, a.training_type::text, {owner} FROM avatars a WHERE a.id = $1"
        ))
        .await?;
    let Some(row) = client.query_opt(&statement, &[&avatar_id]).await? else {
        return Ok(None);
    };
    Ok(Some(Recipient {
        avatar_name: row.try_get(0)?,
        training_type: row.try_get(1)?,
        telegram_id: row.try_get(2)?,
    }))
}

/// Whether the bot's `avatar_photos` is in this database (where it is not, nothing is removed).
pub async fn photos_table_exists(client: &impl GenericClient) -> Result<bool, StoreError> {
    has_table(client, "avatar_photos").await
}

async fn has_table(client: &impl GenericClient, name: &str) -> Result<bool, StoreError> {
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await?;
    Ok(row.try_get(0)?)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingPhoto {
    pub id: Uuid,
    /// The object in the bot's photo bucket.
    pub minio_key: String,
}

/// The avatar's training photos, in the order the bot keeps its preview by: the first one.
pub async fn training_photos(
    pool: &Pool,
    avatar_id: Uuid,
) -> Result<Vec<TrainingPhoto>, StoreError> {
    // Recorded only where the bot's `avatar_photos` exists (checked at start).
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, minio_key::text FROM avatar_photos WHERE avatar_id = $1 \
             ORDER BY upload_order, created_at, id",
            &[&avatar_id],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(TrainingPhoto {
                id: row.try_get(0)?,
                minio_key: row.try_get(1)?,
            })
        })
        .collect()
}

/// Removes the rows of photos whose objects are gone; only this avatar's.
pub async fn delete_photo_rows(
    pool: &Pool,
    avatar_id: Uuid,
    photos: &[Uuid],
) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "DELETE FROM avatar_photos WHERE avatar_id = $1 AND id = ANY($2)",
            &[&avatar_id, &photos],
        )
        .await?)
}

/// Follow-ups by kind and state, for `/health`, metrics and `webhook-api status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FollowupStats {
    /// (kind, state, count), every pair that has rows.
    pub counts: Vec<(String, String, i64)>,
}

impl FollowupStats {
    pub fn count(&self, state: &str) -> i64 {
        self.counts
            .iter()
            .filter(|(_, s, _)| s == state)
            .map(|(_, _, n)| n)
            .sum()
    }
}

pub async fn stats(pool: &Pool) -> Result<FollowupStats, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT kind, state, count(*) FROM avatar_followups GROUP BY kind, state \
             ORDER BY kind, state",
            &[],
        )
        .await?;
    let counts = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(FollowupStats { counts })
}

/// Puts every dead follow-up back in the queue with a fresh attempt budget; how many.
pub async fn requeue_dead(pool: &Pool) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "UPDATE avatar_followups SET state = 'pending', attempts = 0, run_after = now(), \
               finished_at = NULL, updated_at = now() WHERE state = 'dead'",
            &[],
        )
        .await?)
}

/// The follow-ups the avatars' batch statement records with its changes: a CTE to follow
/// `changed`, whose rows carry `followup_status`, `followup_key` and `followup_copies`. Each
/// new status records the kinds `policy` asks for, once per delivery key; the photos' removal
/// waits for the copy when there are files to copy (`PHOTOS_AFTER_COPY`). `None` when the
/// policy records nothing.
pub(super) fn recorded_with_changes(policy: &FollowupPolicy) -> Option<String> {
    let kinds = kinds_by_status(policy)?;
    Some(format!(
        "followed AS (INSERT INTO avatar_followups (avatar_id, delivery_key, kind) \
           SELECT changed.id, changed.followup_key, k.kind FROM changed \
           JOIN (VALUES {kinds}) AS k(status, kind) ON k.status = changed.followup_status \
             AND NOT (k.kind = 'delete_photos' AND changed.followup_copies) \
           ON CONFLICT (delivery_key, kind) DO NOTHING)"
    ))
}

/// `(status, kind)` rows for a `VALUES` list: which follow-ups each new status records.
fn kinds_by_status(policy: &FollowupPolicy) -> Option<String> {
    let rows: Vec<String> = AvatarStatus::WRITTEN
        .into_iter()
        .flat_map(|status| {
            policy
                .after(status)
                .into_iter()
                .map(move |kind| format!("('{}', '{}')", status.as_str(), kind.as_str()))
        })
        .collect();
    (!rows.is_empty()).then(|| rows.join(", "))
}

/// The photos' removal once a copy's files are stored (`$1`: the file job), under the
/// completion's delivery key like the follow-ups its change recorded.
pub(super) const PHOTOS_AFTER_COPY: &str =
    "INSERT INTO avatar_followups (avatar_id, delivery_key, kind) \
     SELECT j.avatar_id, COALESCE(e.delivery_key, 'file_job:' || j.id), 'delete_photos' \
     FROM file_jobs j LEFT JOIN webhook_events e ON e.id = j.event_id WHERE j.id = $1 \
     ON CONFLICT (delivery_key, kind) DO NOTHING";
