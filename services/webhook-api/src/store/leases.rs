//! Work one instance does at a time (the FAL reconciler, GitHub's redelivery per source): a
//! named lease, renewed by each run of its holder, and what the holder's last run did, for
//! `webhook-api status`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use super::StoreError;

/// True when `owner` holds the lease `name` now (taken fresh, or renewed).
pub async fn take(
    pool: &Pool,
    name: &str,
    owner: &str,
    lease: Duration,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "INSERT INTO reconciler_lease (name, owner, expires_at) \
               VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
               expires_at = excluded.expires_at \
             WHERE reconciler_lease.owner = excluded.owner \
               OR reconciler_lease.expires_at < now() \
             RETURNING owner",
            &[&name, &owner, &lease.as_secs_f64()],
        )
        .await?;
    Ok(row.is_some())
}

/// What a run counted: checked, done (applied, or redelivery requested), failed.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunTally {
    pub checked: i32,
    pub done: i32,
    pub errors: i32,
}

pub async fn record_run(
    pool: &Pool,
    name: &str,
    owner: &str,
    tally: RunTally,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE reconciler_lease SET last_run_at = now(), last_run_checked = $3, \
               last_run_applied = $4, last_run_errors = $5 WHERE name = $1 AND owner = $2",
            &[&name, &owner, &tally.checked, &tally.done, &tally.errors],
        )
        .await?;
    Ok(())
}

#[derive(Debug)]
pub struct LeaseRun {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub tally: RunTally,
}

pub async fn last_run(pool: &Pool, name: &str) -> Result<Option<LeaseRun>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT owner, expires_at, last_run_at, last_run_checked, last_run_applied, \
               last_run_errors FROM reconciler_lease WHERE name = $1",
            &[&name],
        )
        .await?;
    row.map(|row| {
        Ok(LeaseRun {
            owner: row.try_get(0)?,
            expires_at: row.try_get(1)?,
            last_run_at: row.try_get(2)?,
            tally: RunTally {
                checked: row.try_get(3)?,
                done: row.try_get(4)?,
                errors: row.try_get(5)?,
            },
        })
    })
    .transpose()
}
