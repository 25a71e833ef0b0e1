//! What the reconciler reads and writes: the trainings to ask FAL about, and the outcome of
//! each check (its lease is in `leases`). Results themselves go through `store::ingest`, like a webhook.

use std::time::Duration;

use deadpool_postgres::Pool;
use uuid::Uuid;

use super::schema::AvatarSql;
use super::StoreError;
use crate::avatar::TrainingType;

#[derive(Debug)]
pub struct StaleTraining {
    pub avatar_id: Uuid,
    pub fal_request_id: String,
    pub training_type: Option<TrainingType>,
}

/// Trainings unchanged for `stale_after` whose last check is older than their backoff
/// (`recheck` doubled per failed check in a row, at most `backoff_max`), least recently
/// checked first.
pub async fn stale_trainings(
    pool: &Pool,
    sql: &AvatarSql,
    stale_after: Duration,
    recheck: Duration,
    backoff_max: Duration,
    limit: i64,
) -> Result<Vec<StaleTraining>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT id, fal_request_id, training_type::text FROM avatars \
                 WHERE {} AND fal_request_id IS NOT NULL \
                   AND updated_at <= now() - make_interval(secs => $1) \
                   AND (last_status_check IS NULL OR last_status_check <= now() - make_interval( \
                     secs => least($2 * power(2, least(status_check_failures, 20)), $3))) \
                 ORDER BY last_status_check NULLS FIRST, updated_at LIMIT $4",
                sql.training
            ),
            &[
                &stale_after.as_secs_f64(),
                &recheck.as_secs_f64(),
                &backoff_max.as_secs_f64(),
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let training_type: Option<String> = r.try_get(2)?;
            Ok(StaleTraining {
                avatar_id: r.try_get(0)?,
                fal_request_id: r.try_get(1)?,
                training_type: training_type.as_deref().and_then(TrainingType::parse),
            })
        })
        .collect()
}

/// A check that got an answer: FAL is fine and so is the training, for now.
pub async fn checked(pool: &Pool, avatar_id: Uuid) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE avatars SET last_status_check = now(), status_check_failures = 0 \
             WHERE id = $1",
            &[&avatar_id],
        )
        .await?;
    Ok(())
}

/// A check that failed; returns how many failed in a row.
pub async fn check_failed(pool: &Pool, avatar_id: Uuid) -> Result<i32, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "UPDATE avatars SET last_status_check = now(), \
               status_check_failures = status_check_failures + 1 \
             WHERE id = $1 RETURNING status_check_failures",
            &[&avatar_id],
        )
        .await?;
    Ok(row.try_get(0)?)
}
