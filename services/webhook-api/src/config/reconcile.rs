//! The FAL status reconciler: FAL's queue API, which apps, how often, how patiently.

use std::time::Duration;

use super::env::Env;
use super::{ConfigError, Secret, DEFAULT_FAL_QUEUE_URL};
use crate::avatar::TrainingType;

/// The FAL status reconciler: for avatars left in `training` without a callback.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    pub api_key: Secret,
    pub queue_url: String,
    /// FAL apps by `training_type`; a training without one is asked about as a portrait.
    pub portrait_app: String,
    pub style_app: String,
    /// An avatar is asked about once it has not changed for this long.
    pub stale_after: Duration,
    /// How often the instance holding the lease looks for such avatars.
    pub interval: Duration,
    /// Not asked about again sooner than this; doubled for every failed check in a row.
    pub recheck: Duration,
    pub backoff_max: Duration,
    /// Checks a cycle makes at most, and FAL requests per second.
    pub batch: i64,
    pub requests_per_second: f64,
    /// After this many checks answered 404 the avatar is marked `error`.
    pub max_not_found: i32,
    pub request_timeout: Duration,
}

impl ReconcileConfig {
    pub fn app_for(&self, training_type: Option<TrainingType>) -> &str {
        match training_type {
            Some(TrainingType::Style) => &self.style_app,
            _ => &self.portrait_app,
        }
    }
}

/// `None` without `FAL_API_KEY`.
pub(crate) fn from_env(env: &Env<'_>) -> Result<Option<ReconcileConfig>, ConfigError> {
    let Some(api_key) = env.secret_text("FAL_API_KEY")? else {
        return Ok(None);
    };
    let queue_url = env
        .optional("FAL_QUEUE_URL")
        .unwrap_or_else(|| DEFAULT_FAL_QUEUE_URL.into());
    reqwest::Url::parse(&queue_url)
        .ok()
        .filter(|url| url.has_host())
        .ok_or_else(|| ConfigError::new("FAL_QUEUE_URL", "expected an http(s) URL"))?;
    let requests_per_second: f64 = env.parsed("RECONCILE_REQUESTS_PER_SEC", 5.0)?;
    if requests_per_second.is_nan() || requests_per_second <= 0.0 {
        return Err(ConfigError::new(
            "RECONCILE_REQUESTS_PER_SEC",
            "must be above 0",
        ));
    }
    let millis = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
        env.parsed(name, default).map(Duration::from_millis)
    };
    Ok(Some(ReconcileConfig {
        api_key: Secret::new(api_key.trim()),
        queue_url,
        portrait_app: env
            .optional("FAL_APP_PORTRAIT")
            .unwrap_or_else(|| "fal-ai/flux-lora-portrait-trainer".into()),
        style_app: env
            .optional("FAL_APP_STYLE")
            .unwrap_or_else(|| "fal-ai/flux-pro-trainer".into()),
        stale_after: env.seconds("RECONCILE_AFTER_SECS", 30 * 60)?,
        interval: millis("RECONCILE_INTERVAL_MS", 60_000)?.max(Duration::from_millis(10)),
        recheck: millis("RECONCILE_RECHECK_MS", 5 * 60_000)?,
        backoff_max: env.seconds("RECONCILE_BACKOFF_MAX_SECS", 3600)?,
        batch: env.parsed("RECONCILE_BATCH", 20)?,
        requests_per_second,
        max_not_found: env.parsed("RECONCILE_MAX_NOT_FOUND", 5)?,
        request_timeout: env.seconds("RECONCILE_REQUEST_TIMEOUT_SECS", 15)?,
    }))
}
