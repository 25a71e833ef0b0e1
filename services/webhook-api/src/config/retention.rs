//! `RETENTION_*`: how long what the service stores is kept (`tasks::retention`). A rule at 0 days
//! is off (kept for ever).

use std::time::Duration;

use super::env::Env;
use super::ConfigError;

const DAY: u64 = 24 * 3600;

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// A delivery's payload and headers (`RETENTION_PAYLOAD_DAYS`, 30).
    pub payload: Option<Duration>,
    /// The delivery's row (`RETENTION_EVENT_DAYS`, 180), unless something points at it.
    pub event: Option<Duration>,
    /// A finished deploy's output (`RETENTION_DEPLOY_OUTPUT_DAYS`, 90).
    pub deploy_output: Option<Duration>,
    /// A file job done this long ago (`RETENTION_FILE_JOB_DAYS`, 30); the copied files' rows
    /// stay. Failed and dead jobs stay for an operator.
    pub file_job: Option<Duration>,
    /// How often the lease holder runs (`RETENTION_INTERVAL_SECS`, 3600).
    pub interval: Duration,
    /// Rows per transaction (`RETENTION_BATCH`, 500): short, so callbacks never wait long.
    pub batch: i64,
}

impl RetentionConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        const MAX_DAYS: u64 = 36_500;
        let days =
            |name: &'static str, default: u64, max: u64| -> Result<Option<Duration>, ConfigError> {
                let days = env.number(name, default, 0..=max)?;
                Ok((days > 0).then(|| Duration::from_secs(days * DAY)))
            };
        let event = days("RETENTION_EVENT_DAYS", 180, MAX_DAYS)?;
        // A payload goes no later than its event.
        let event_days = event.map_or(MAX_DAYS, |kept| kept.as_secs() / DAY);
        let payload = days("RETENTION_PAYLOAD_DAYS", 30, event_days)?;
        if let (Some(payload), Some(_)) = (payload, event) {
            let payload_days = payload.as_secs() / DAY;
            if payload_days > event_days {
                return Err(ConfigError::new(
                    "RETENTION_EVENT_DAYS",
                    format!("{event_days} is less than RETENTION_PAYLOAD_DAYS={payload_days}: expected 0 (kept forever) or {payload_days} to {MAX_DAYS}"),
                ));
            }
        }
        let batch = env.number("RETENTION_BATCH", 500, 1..=100_000)?;
        Ok(Self {
            payload,
            event,
            deploy_output: days("RETENTION_DEPLOY_OUTPUT_DAYS", 90, MAX_DAYS)?,
            file_job: days("RETENTION_FILE_JOB_DAYS", 30, MAX_DAYS)?,
            interval: env.seconds("RETENTION_INTERVAL_SECS", 3600, 1..=7 * 24 * 3600)?,
            batch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, BASE};
    use std::time::Duration;

    #[test]
    fn retention_has_documented_defaults_a_zero_is_off_and_rows_outlive_payloads() {
        let cfg = config(&BASE).unwrap().retention;
        assert_eq!(cfg.payload, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(cfg.event, Some(Duration::from_secs(180 * 86400)));
        assert_eq!(cfg.deploy_output, Some(Duration::from_secs(90 * 86400)));
        assert_eq!(cfg.file_job, Some(Duration::from_secs(30 * 86400)));
        assert_eq!((cfg.interval.as_secs(), cfg.batch), (3600, 500));
        let mut vars = BASE.to_vec();
        vars.push(("RETENTION_EVENT_DAYS", "0"));
        assert_eq!(config(&vars).unwrap().retention.event, None);
        vars.pop();
        vars.push(("RETENTION_EVENT_DAYS", "7"));
        assert_eq!(config(&vars).unwrap_err().var, "RETENTION_EVENT_DAYS");
        vars.pop();
        vars.push(("RETENTION_BATCH", "0"));
        assert_eq!(config(&vars).unwrap_err().var, "RETENTION_BATCH");
    }
}
