//! `CONSOLE_*`: the operators' console in the browser (`http::console`).

use std::time::Duration;

use super::env::Env;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// How long a sign-in lasts (`CONSOLE_SESSION_SECS`, 8 h).
    pub session: Duration,
    /// The longest one search may take before the page asks to narrow it
    /// (`CONSOLE_QUERY_TIMEOUT_MS`, 2 000).
    pub query_timeout: Duration,
    /// Deliveries a page (`CONSOLE_PAGE_SIZE`, 50).
    pub page_size: i64,
    /// Deliveries a bulk replay replays a second, per instance working on it
    /// (`CONSOLE_BULK_REPLAYS_PER_SEC`, 20): a source's stream is not flooded.
    pub bulk_replays_per_sec: u32,
    /// The most deliveries one bulk replay may cover (`CONSOLE_BULK_REPLAY_MAX`, 10 000).
    pub bulk_replay_max: i32,
}

impl ConsoleConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            session: env.seconds("CONSOLE_SESSION_SECS", 8 * 3600, 60..=7 * 24 * 3600)?,
            query_timeout: env.millis("CONSOLE_QUERY_TIMEOUT_MS", 2000, 100..=60_000)?,
            page_size: env.number("CONSOLE_PAGE_SIZE", 50, 10..=500)?,
            bulk_replays_per_sec: env.number("CONSOLE_BULK_REPLAYS_PER_SEC", 20, 1..=1000)?,
            bulk_replay_max: env.number("CONSOLE_BULK_REPLAY_MAX", 10_000, 1..=1_000_000)?,
        })
    }
}
