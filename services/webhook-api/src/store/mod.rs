//! PostgreSQL, the source of truth: pool, migrations, the ingest transaction, avatar reads.

pub mod audit;
pub mod avatars;
pub mod console;
pub mod deliveries;
pub mod deploys;
pub mod event_log;
pub mod event_views;
pub mod followups;
pub mod forget;
pub mod group;
pub mod ingest;
pub mod jobs;
pub mod lease_queue;
pub mod leases;
pub mod migrations;
pub mod rejections;
pub mod report;
pub mod retention;
pub mod schema;
pub mod text;
pub mod training_checks;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::DatabaseConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or asked us to come back later: the sender should retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The content itself cannot be stored (a data exception, e.g. `\u0000` in jsonb): sending
    /// it again cannot succeed.
    #[error("the database cannot store this content: {0}")]
    Rejected(String),
    #[error("database error: {0:#}")]
    Unexpected(anyhow::Error),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let retryable = match e.code() {
            // No SQLSTATE: the connection itself failed or closed; not a value that did not
            // convert (a decoding error has its converter's error as its source).
            None => {
                e.is_closed()
                    || std::error::Error::source(&e).is_none_or(|s| s.is::<std::io::Error>())
            }
            Some(code) => {
                let code = code.code();
                code.starts_with("08") // connection exception
                    || code.starts_with("53") // insufficient resources
                    || code.starts_with("57P") // admin shutdown, cannot connect now
                    || code == "40001" // serialization failure
                    || code == "40P01" // deadlock detected
            }
        };
        if retryable {
            StoreError::Unavailable(e.to_string())
        } else if let Some(db) = e
            .as_db_error()
            .filter(|db| db.code().code().starts_with("22"))
        {
            StoreError::Rejected(db.message().to_string())
        } else {
            StoreError::Unexpected(anyhow::Error::new(e))
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// The server answered and refused: bad credentials, no such database or role (SQLSTATE
/// classes 28 and 3D). Waiting will not change that.
pub fn refused_by_server(e: &deadpool_postgres::PoolError) -> bool {
    match e {
        deadpool_postgres::PoolError::Backend(e) => e
            .code()
            .is_some_and(|code| code.code().starts_with("28") || code.code().starts_with("3D")),
        _ => false,
    }
}

pub fn connect_pool(config: &DatabaseConfig) -> Pool {
    let mut pg = config.pg.clone();
    // Per host: `connect_timeout` of DATABASE_URL, else 5 s.
    let per_host = pg
        .get_connect_timeout()
        .copied()
        .unwrap_or(Duration::from_secs(5));
    pg.connect_timeout(per_host);
    // With several hosts (a failover pair) a new connection tries each in turn, and the old
    // primary may not answer at all: the pool waits for every host's try, not just the first.
    let hosts = pg.get_hosts().len().max(1) as u32;
    let create_timeout = per_host * hosts + Duration::from_secs(1);
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let timeout = Some(Duration::from_secs(5));
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(Some(create_timeout))
        .recycle_timeout(timeout)
        .build()
        .expect("a pool with a runtime and timeouts builds")
}

/// Runs `work` with an upper bound, so a hung database turns into a retryable answer.
pub async fn within<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "no answer within {limit:?}"
        )))
    })
}

/// Keyset paging, newest first: where the page after `rows` starts (`id < next`), or `None`
/// when `rows` was the last page (fewer than `limit`).
pub fn next_before<T>(rows: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<i64> {
    (rows.len() as i64 == limit)
        .then(|| rows.last().map(id))
        .flatten()
}

/// `SELECT 1` round trip, for health checks.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

#[cfg(test)]
mod paging_tests {
    #[test]
    fn a_full_page_says_where_the_next_starts_and_a_short_one_is_the_last() {
        let ids = [9_i64, 7, 4];
        assert_eq!(super::next_before(&ids, 3, |id| *id), Some(4));
        assert_eq!(super::next_before(&ids, 4, |id| *id), None);
        assert_eq!(super::next_before(&[] as &[i64], 0, |id| *id), None);
    }
}
