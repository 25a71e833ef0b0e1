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
}

impl ConsoleConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            session: env.seconds("CONSOLE_SESSION_SECS", 8 * 3600, 60..=7 * 24 * 3600)?,
            query_timeout: env.millis("CONSOLE_QUERY_TIMEOUT_MS", 2000, 100..=60_000)?,
            page_size: env.number("CONSOLE_PAGE_SIZE", 50, 10..=500)?,
        })
    }
}
