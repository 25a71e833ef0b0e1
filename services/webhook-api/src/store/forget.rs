//! Erasure on request (`cli::forget`): which avatars a request names, and the service's own rows
//! about them. The bot's rows (`users`, `avatars`) are the bot's: read, and changed only in the
//! object keys this service wrote there, cleared with the objects they named.

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::StoreError;

/// An avatar to forget: its id, its user (for the S3 prefix) and its FAL request id (events
/// name it before they name the avatar).
#[derive(Debug, Clone)]
pub struct Named {
    pub avatar_id: Uuid,
    pub user_id: Option<String>,
    pub fal_request_id: Option<String>,
}

/// The avatar, if the bot still has its row.
pub async fn avatar(pool: &Pool, avatar_id: Uuid) -> Result<Option<Named>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, user_id::text, fal_request_id FROM avatars WHERE id = $1",
            &[&avatar_id],
        )
        .await?;
    row.map(|r| named(&r)).transpose()
}

/// Every avatar of a user.
pub async fn avatars_of_user(pool: &Pool, user_id: &str) -> Result<Vec<Named>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, user_id::text, fal_request_id FROM avatars WHERE user_id::text = $1",
            &[&user_id],
        )
        .await?;
    rows.iter().map(named).collect()
}

fn named(row: &tokio_postgres::Row) -> Result<Named, StoreError> {
    Ok(Named {
        avatar_id: row.try_get(0)?,
        user_id: row.try_get(1)?,
        fal_request_id: row.try_get(2)?,
    })
}

/// File jobs of these avatars that a worker is copying right now.
pub async fn copies_running(pool: &Pool, avatar_ids: &[Uuid]) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM file_jobs WHERE avatar_id = ANY($1) AND state = 'running'",
            &[&avatar_ids],
        )
        .await?;
    Ok(row.try_get(0)?)
}

#[derive(Debug, Default)]
pub struct Removed {
    pub event_payloads: u64,
    pub file_jobs: u64,
    pub file_rows: u64,
    /// The S3 keys the removed `avatar_files` rows recorded.
    pub object_keys: Vec<String>,
}

/// In one transaction: the copied files' rows and the jobs (not running ones), and the
/// payloads and headers of every event that names the avatars (the rows stay, for dedup).
pub async fn remove(
    pool: &Pool,
    avatar_ids: &[Uuid],
    fal_request_ids: &[String],
) -> Result<Removed, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let object_keys: Vec<String> = tx
        .query(
            "DELETE FROM avatar_files WHERE avatar_id = ANY($1) RETURNING object_key",
            &[&avatar_ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The avatar's row must not name an object that is gone.
    tx.execute(
        "UPDATE avatars SET \
           lora_object_key = CASE WHEN lora_object_key = ANY($2) THEN NULL ELSE lora_object_key END, \
           config_object_key = CASE WHEN config_object_key = ANY($2) THEN NULL ELSE config_object_key END \
         WHERE id = ANY($1) AND (lora_object_key = ANY($2) OR config_object_key = ANY($2))",
        &[&avatar_ids, &object_keys],
    )
    .await?;
    let file_jobs = tx
        .execute(
            "DELETE FROM file_jobs WHERE avatar_id = ANY($1) AND state <> 'running'",
            &[&avatar_ids],
        )
        .await?;
    let event_payloads = tx
        .execute(
            "UPDATE webhook_events SET payload = NULL, headers = NULL, payload_sha256 = NULL, \
               payload_dropped_at = now() \
             WHERE (avatar_id = ANY($1) OR fal_request_id = ANY($2)) \
               AND (payload IS NOT NULL OR headers IS NOT NULL OR payload_sha256 IS NOT NULL)",
            &[&avatar_ids, &fal_request_ids],
        )
        .await?;
    tx.commit().await?;
    Ok(Removed {
        event_payloads,
        file_jobs,
        file_rows: object_keys.len() as u64,
        object_keys,
    })
}
