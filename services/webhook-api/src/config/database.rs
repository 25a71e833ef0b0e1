//! PostgreSQL: `DATABASE_URL` (the bot's, in either of its forms), the pool, group commit.

use std::fmt;
use std::time::Duration;

use super::env::Env;
use super::ConfigError;

#[derive(Clone)]
pub struct DatabaseConfig {
    pub pg: tokio_postgres::Config,
    pub pool_size: usize,
    /// Upper bound for one ingest transaction; past it the sender is told to retry.
    pub statement_timeout: Duration,
    /// How long start-up waits for PostgreSQL to accept connections before giving up.
    pub startup_wait: Duration,
    /// Group commit: batches in flight at most (one unless held up), and the largest batch.
    pub group_commit_loops: usize,
    pub group_commit_max: usize,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("hosts", &self.pg.get_hosts())
            .field("dbname", &self.pg.get_dbname())
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl DatabaseConfig {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            pg: parse_database_url(&env.required_secret("DATABASE_URL")?)?,
            pool_size: env.number("DB_POOL_SIZE", 32, 1..=500)?,
            statement_timeout: env.seconds("DB_TIMEOUT_SECS", 10, 1..=3600)?,
            startup_wait: env.seconds("DB_STARTUP_WAIT_SECS", 60, 0..=3600)?,
            group_commit_loops: env.number("DB_GROUP_COMMIT_LOOPS", 4, 1..=16)?,
            group_commit_max: env.number("DB_GROUP_COMMIT_MAX", 64, 1..=10_000)?,
        })
    }
}

/// Accepts `postgresql://`, `postgres://` and the SQLAlchemy form `postgresql+asyncpg://`
/// that the bot's `prod.env` uses. The URL carries a password, so errors never quote it.
pub fn parse_database_url(raw: &str) -> Result<tokio_postgres::Config, ConfigError> {
    let url = match raw.split_once("://") {
        Some((scheme, rest)) => {
            let base = scheme.split('+').next().unwrap_or(scheme);
            if base != "postgresql" && base != "postgres" {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    "expected a postgresql:// URL (postgresql+asyncpg:// is accepted too)",
                ));
            }
            format!("postgresql://{rest}")
        }
        None => {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "expected a URL like postgresql://user:password@host:5432/dbname",
            ))
        }
    };
    url.parse().map_err(|e: tokio_postgres::Error| {
        ConfigError::new("DATABASE_URL", format!("not a valid PostgreSQL URL ({e})"))
    })
}
