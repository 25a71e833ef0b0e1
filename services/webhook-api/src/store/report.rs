//! What `webhook-api status` reads besides the avatars' and jobs' own summaries.

use deadpool_postgres::Pool;

use super::schema::AvatarSql;
use super::StoreError;

/// Events and deliveries in the last hour, by source and outcome.
#[derive(Debug)]
pub struct HourLine {
    pub source: String,
    pub outcome: String,
    pub events: i64,
    pub deliveries: i64,
}

pub async fn last_hour(pool: &Pool) -> Result<Vec<HourLine>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT source, outcome, count(*), sum(deliveries)::bigint FROM webhook_events \
             WHERE received_at > now() - interval '1 hour' GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HourLine {
                source: r.try_get(0)?,
                outcome: r.try_get(1)?,
                events: r.try_get(2)?,
                deliveries: r.try_get(3)?,
            })
        })
        .collect()
}

/// Avatars in training by how long they have been unchanged: under 30 min, 30 min to 2 h,
/// over 2 h.
pub async fn training_ages(pool: &Pool, avatar_sql: &AvatarSql) -> Result<[i64; 3], StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE updated_at > now() - interval '30 minutes'), \
                   count(*) FILTER (WHERE updated_at <= now() - interval '30 minutes' \
                                      AND updated_at > now() - interval '2 hours'), \
                   count(*) FILTER (WHERE updated_at <= now() - interval '2 hours') \
                 FROM avatars WHERE {} AND fal_request_id IS NOT NULL",
                avatar_sql.training
            ),
            &[],
        )
        .await?;
    Ok([row.try_get(0)?, row.try_get(1)?, row.try_get(2)?])
}
