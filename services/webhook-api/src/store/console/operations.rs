//! The operations page and the front page's charts: avatars in training, deliveries by
//! source over time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::store::StoreError;

/// An avatar in training, as the operations page lists it.
#[derive(Debug)]
pub struct Training {
    pub avatar_id: Uuid,
    pub name: Option<String>,
    pub fal_request_id: String,
    pub updated_at: DateTime<Utc>,
    /// The reconciler's last question to FAL about it, and how many failed in a row.
    pub last_check: Option<DateTime<Utc>>,
    pub check_failures: i32,
}

/// Avatars in training, the longest waiting first.
pub async fn trainings(
    pool: &Pool,
    sql: &crate::store::schema::AvatarSql,
    limit: i64,
) -> Result<Vec<Training>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT id, name, fal_request_id, updated_at, last_status_check, \
                   status_check_failures FROM avatars \
                 WHERE {} AND fal_request_id IS NOT NULL ORDER BY updated_at LIMIT $1",
                sql.training
            ),
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Training {
                avatar_id: row.try_get(0)?,
                name: row.try_get(1)?,
                fal_request_id: row.try_get(2)?,
                updated_at: row.try_get(3)?,
                last_check: row.try_get(4)?,
                check_failures: row.try_get(5)?,
            })
        })
        .collect()
}

/// One bucket of the front page's charts: deliveries by source, answers by class, times.
#[derive(Debug)]
pub struct ChartBucket {
    pub at: DateTime<Utc>,
    pub source: String,
    pub deliveries: i64,
    pub refused: i64,
    pub failed: i64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The deliveries of the last `span`, in `buckets` buckets, by source.
pub async fn chart(
    pool: &Pool,
    span: Duration,
    buckets: u32,
) -> Result<Vec<ChartBucket>, StoreError> {
    let client = pool.get().await?;
    let width = span.as_secs_f64() / f64::from(buckets);
    let rows = client
        .query(
            "SELECT to_timestamp(floor(extract(epoch FROM received_at)::float8 / $2::float8) * $2::float8) AS at, source, \
               count(*), count(*) FILTER (WHERE status_code BETWEEN 400 AND 499), \
               count(*) FILTER (WHERE status_code >= 500 OR outcome = 'failed'), \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY processing_ms), \
               percentile_cont(0.99) WITHIN GROUP (ORDER BY processing_ms) \
             FROM webhook_events WHERE received_at > now() - make_interval(secs => $1) \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[&span.as_secs_f64(), &width],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ChartBucket {
                at: row.try_get(0)?,
                source: row.try_get(1)?,
                deliveries: row.try_get(2)?,
                refused: row.try_get(3)?,
                failed: row.try_get(4)?,
                p50_ms: row.try_get(5)?,
                p99_ms: row.try_get(6)?,
            })
        })
        .collect()
}
