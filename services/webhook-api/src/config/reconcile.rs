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
        .url("FAL_QUEUE_URL", DEFAULT_FAL_QUEUE_URL, &["https", "http"])?
        .as_str()
        .trim_end_matches('/')
        .to_string();
    const WEEK: u64 = 7 * 24 * 3600;
    Ok(Some(ReconcileConfig {
        api_key: Secret::new(api_key.trim()),
        queue_url,
        portrait_app: env
            .optional("FAL_APP_PORTRAIT")
            .unwrap_or_else(|| "fal-ai/flux-lora-portrait-trainer".into()),
        style_app: env
            .optional("FAL_APP_STYLE")
            .unwrap_or_else(|| "fal-ai/flux-pro-trainer".into()),
        stale_after: env.seconds("RECONCILE_AFTER_SECS", 30 * 60, 0..=WEEK)?,
        interval: env.millis("RECONCILE_INTERVAL_MS", 60_000, 50..=86_400_000)?,
        recheck: env.millis("RECONCILE_RECHECK_MS", 5 * 60_000, 1..=86_400_000)?,
        backoff_max: env.seconds("RECONCILE_BACKOFF_MAX_SECS", 3600, 1..=WEEK)?,
        batch: env.number("RECONCILE_BATCH", 20, 1..=1000)?,
        requests_per_second: env.number("RECONCILE_REQUESTS_PER_SEC", 5.0, 0.01..=1000.0)?,
        max_not_found: env.number("RECONCILE_MAX_NOT_FOUND", 5, 1..=1000)?,
        request_timeout: env.seconds("RECONCILE_REQUEST_TIMEOUT_SECS", 15, 1..=300)?,
    }))
}
