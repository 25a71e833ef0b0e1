//! The avatar status view: what the bot reads from the cache and from `GET .../status`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;

use super::schema::AvatarSql;
use super::StoreError;
use crate::avatar::{AvatarStatus, TrainingType};

/// Columns in the order `AvatarView::from_row` reads them. Casts to text keep the read
/// working whatever types the bot's own table uses for these columns (enum, varchar, text).
pub const VIEW_COLUMNS: &str = "id, user_id::text, name, status::text, training_type::text, \
     training_progress, fal_request_id, training_error, diffusers_lora_file_url, config_file_url, \
     lora_object_key, config_object_key, training_started_at, training_completed_at, \
     files_stored_at, updated_at";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvatarView {
    pub avatar_id: Uuid,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub status: AvatarStatus,
    pub training_type: Option<TrainingType>,
    pub progress: i32,
    pub fal_request_id: Option<String>,
    pub training_error: Option<String>,
    pub diffusers_lora_file_url: Option<String>,
    pub config_file_url: Option<String>,
    pub lora_object_key: Option<String>,
    pub config_object_key: Option<String>,
    pub training_started_at: Option<DateTime<Utc>>,
    pub training_completed_at: Option<DateTime<Utc>>,
    pub files_stored_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl AvatarView {
    pub(super) fn from_row(row: &Row) -> Result<Self, StoreError> {
        let status: String = row.try_get(3)?;
        let training_type: Option<String> = row.try_get(4)?;
        Ok(Self {
            avatar_id: row.try_get(0)?,
            user_id: row.try_get(1)?,
            name: row.try_get(2)?,
            status: status.parse().map_err(|e: String| {
                StoreError::Unexpected(anyhow::anyhow!("avatars.status: {e}"))
            })?,
            // A training type the service does not know is not one it needs to tell apart.
            training_type: training_type.as_deref().and_then(TrainingType::parse),
            progress: row.try_get::<_, Option<i32>>(5)?.unwrap_or(0),
            fal_request_id: row.try_get(6)?,
            training_error: row.try_get(7)?,
            diffusers_lora_file_url: row.try_get(8)?,
            config_file_url: row.try_get(9)?,
            lora_object_key: row.try_get(10)?,
            config_object_key: row.try_get(11)?,
            training_started_at: row.try_get(12)?,
            training_completed_at: row.try_get(13)?,
            files_stored_at: row.try_get(14)?,
            updated_at: row.try_get(15)?,
        })
    }
}

static FIND: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {VIEW_COLUMNS} FROM avatars WHERE id = $1"));

pub async fn find(pool: &Pool, avatar_id: Uuid) -> Result<Option<AvatarView>, StoreError> {
    let client = pool.get().await?;
    let statement = client.prepare_cached(&FIND).await?;
    let row = client.query_opt(&statement, &[&avatar_id]).await?;
    row.as_ref().map(AvatarView::from_row).transpose()
}

/// Trainings FAL knows about, for `/metrics` and `webhook-api status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainingStats {
    pub in_training: i64,
    /// Unchanged for longer than the reconciler waits before asking FAL.
    pub stale: i64,
    pub oldest_unchanged_secs: f64,
}

/// Reads only the partial index of trainings (`avatars_training_idx`), not the whole table.
pub async fn training_stats(
    pool: &Pool,
    sql: &AvatarSql,
    stale_after: std::time::Duration,
) -> Result<TrainingStats, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), \
                   count(*) FILTER (WHERE updated_at <= now() - make_interval(secs => $1)), \
                   COALESCE(extract(epoch FROM now() - min(updated_at)), 0)::float8 \
                 FROM avatars WHERE {} AND fal_request_id IS NOT NULL",
                sql.training
            ),
            &[&stale_after.as_secs_f64()],
        )
        .await?;
    Ok(TrainingStats {
        in_training: row.try_get(0)?,
        stale: row.try_get(1)?,
        oldest_unchanged_secs: row.try_get(2)?,
    })
}
