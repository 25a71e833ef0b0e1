//! Redis (the status cache and the streams) and the late announcer that repairs missed
//! announcements from PostgreSQL.

use std::time::Duration;

use super::env::Env;
use super::{ConfigError, Secret};

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    /// How long Redis remembers that a change was announced (`ANNOUNCE_REMEMBER_SECS`): the
    /// announcer can tell announced from missed changes only within it.
    pub announced_ttl: Duration,
    pub key_prefix: String,
    pub status_ttl: Duration,
    pub stream_maxlen: usize,
    pub timeout: Duration,
}

/// The announcer: committed changes the request path could not announce (Redis down, the
/// instance killed between commit and XADD) are announced from PostgreSQL.
#[derive(Debug, Clone)]
pub struct AnnounceConfig {
    pub interval: Duration,
    /// Events younger than this are left to the request path (and to transactions still
    /// committing): it must exceed the longest ingest transaction.
    pub settle: Duration,
}

impl RedisConfig {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            url: parse_redis_url(env.required_secret("REDIS_URL")?)?,
            announced_ttl: env.seconds(
                "ANNOUNCE_REMEMBER_SECS",
                24 * 3600,
                3600..=30 * 24 * 3600,
            )?,
            key_prefix: env
                .optional("REDIS_KEY_PREFIX")
                .unwrap_or_else(|| "aisha:".into()),
            status_ttl: env.seconds("REDIS_STATUS_TTL_SECS", 3600, 1..=30 * 24 * 3600)?,
            stream_maxlen: env.number("REDIS_STREAM_MAXLEN", 100_000, 100..=1_000_000_000)?,
            timeout: env.millis("REDIS_TIMEOUT_MS", 500, 1..=60_000)?,
        })
    }
}

impl AnnounceConfig {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            interval: env.millis("ANNOUNCE_INTERVAL_MS", 5000, 50..=3_600_000)?,
            settle: env.millis("ANNOUNCE_SETTLE_MS", 30_000, 100..=3_600_000)?,
        })
    }
}

fn parse_redis_url(raw: String) -> Result<Secret, ConfigError> {
    redis::Client::open(raw.as_str()).map_err(|_| {
        ConfigError::new(
            "REDIS_URL",
            "not a valid Redis URL (expected redis://[:password@]host:6379[/db])",
        )
    })?;
    Ok(Secret::new(raw))
}
