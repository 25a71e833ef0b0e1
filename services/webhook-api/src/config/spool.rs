//! `SPOOL_DIR` and `SPOOL_MAX_BYTES`: the durable spool of the sources whose senders never
//! retry (`WEBHOOK_SOURCE_<NAME>_SPOOL`, read with the sources).

use std::path::PathBuf;
use std::time::Duration;

use super::env::Env;
use super::ConfigError;

/// The image's volume for it (`docker/webhook-api/Dockerfile`).
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/webhook-api/spool";

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The spool's directory; instances may share one, each taking a file of its own.
    pub dir: PathBuf,
    /// Past this, a delivery PostgreSQL cannot take is answered 503 again.
    pub max_bytes: u64,
    /// How long a delivery of a spooling source waits for its commit before it is spooled:
    /// well within the senders' own timeouts (Gitea gives up after 5 s, GitHub after 10 s).
    pub after: Duration,
}

impl SpoolConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        // A source's spool is turned off with WEBHOOK_SOURCE_<NAME>_SPOOL=false, not with 0.
        let max_bytes = env.number("SPOOL_MAX_BYTES", 256 * 1024 * 1024, 1024..=1 << 40)?;
        Ok(Self {
            dir: env
                .optional("SPOOL_DIR")
                .map_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR), PathBuf::from),
            max_bytes,
            after: env.millis("SPOOL_AFTER_MS", 2000, 1..=60_000)?,
        })
    }
}
