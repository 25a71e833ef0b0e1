//! What follows a finished training (`tasks::followups`): the owner's Telegram message, and the
//! training photos' removal. Named as the bot names them where it has a name.

use std::net::IpAddr;
use std::time::Duration;

use super::env::Env;
use super::{ConfigError, Environment, Secret};
use crate::avatar::FollowupPolicy;

pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";

#[derive(Debug, Clone)]
pub struct FollowupsConfig {
    /// `None` without `TELEGRAM_TOKEN`: nothing is recorded to send.
    pub telegram: Option<TelegramConfig>,
    pub photos: PhotosConfig,
    /// Claiming loops per instance (0: this instance does none).
    pub workers: usize,
    pub poll_interval: Duration,
    pub lease: Duration,
    /// Attempts before a follow-up is `dead` (Telegram's 429 waits do not count).
    pub max_attempts: i32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub token: Secret,
    /// Requests go to `{api_url}/bot{token}/sendMessage`.
    pub api_url: String,
    pub notify_on_failure: bool,
    /// The bot's own mark of a sent notification is `{prefix}notification:{avatar id}`.
    pub redis_key_prefix: String,
    /// How long our mark keeps the bot's poller from sending a second message.
    pub mark_ttl: Duration,
    /// Messages a second from this instance, all chats together.
    pub messages_per_second: f64,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct PhotosConfig {
    /// `DELETE_PHOTOS_AFTER_TRAINING`, as the bot's setting (default true).
    pub delete_after_training: bool,
    /// `KEEP_PREVIEW_PHOTO`: the first photo by `upload_order` stays.
    pub keep_preview: bool,
    /// The bot's bucket of training photos (`MINIO_BUCKET_AVATARS`).
    pub bucket: String,
}

impl FollowupsConfig {
    pub(crate) fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, ConfigError> {
        let telegram = match env.secret_text("TELEGRAM_TOKEN")? {
            None => None,
            Some(token) => Some(TelegramConfig {
                token: Secret::new(token.trim()),
                api_url: telegram_api_url(env, environment)?,
                notify_on_failure: env.flag("NOTIFY_ON_FAILURE", true)?,
                redis_key_prefix: env
                    .optional("NOTIFY_REDIS_KEY_PREFIX")
                    .unwrap_or_else(|| "aisha:v2:avatar:".into()),
                // The bot's poller asks FAL for up to an hour; a shorter mark lets it send.
                mark_ttl: env.seconds(
                    "NOTIFY_MARK_TTL_SECS",
                    3 * 3600,
                    2 * 3600..=7 * 24 * 3600,
                )?,
                // Telegram takes about 30 messages a second from a bot, up to 1000 with paid
                // broadcasts.
                messages_per_second: env.number("NOTIFY_MESSAGES_PER_SEC", 10.0, 0.01..=1000.0)?,
                request_timeout: env.seconds("TELEGRAM_REQUEST_TIMEOUT_SECS", 15, 1..=300)?,
            }),
        };
        Ok(Self {
            telegram,
            photos: PhotosConfig {
                delete_after_training: env.flag("DELETE_PHOTOS_AFTER_TRAINING", true)?,
                keep_preview: env.flag("KEEP_PREVIEW_PHOTO", true)?,
                bucket: env
                    .optional("MINIO_BUCKET_AVATARS")
                    .unwrap_or_else(|| "avatars".into()),
            },
            workers: env.number("FOLLOWUP_WORKERS", 1, 0..=16)?,
            poll_interval: env.millis("FOLLOWUP_POLL_MS", 1000, 50..=3_600_000)?,
            lease: env.seconds("FOLLOWUP_LEASE_SECS", 60, 1..=24 * 3600)?,
            max_attempts: env.number("FOLLOWUP_MAX_ATTEMPTS", 10, 1..=1000)?,
            retry_base: env.millis("FOLLOWUP_RETRY_BASE_MS", 2000, 10..=3_600_000)?,
            retry_max: env.millis("FOLLOWUP_RETRY_MAX_MS", 15 * 60_000, 10..=86_400_000)?,
        })
    }

    /// What a change records: a message only with a token, the photos' removal as configured.
    pub fn policy(&self) -> FollowupPolicy {
        FollowupPolicy {
            notify_ready: self.telegram.is_some(),
            notify_failed: self.telegram.as_ref().is_some_and(|t| t.notify_on_failure),
            delete_photos: self.photos.delete_after_training,
        }
    }
}

/// `https://` only; plain `http://` to a loopback address outside production (a test's Bot API).
fn telegram_api_url(env: &Env<'_>, environment: Environment) -> Result<String, ConfigError> {
    const VAR: &str = "TELEGRAM_API_URL";
    let url = env.url(VAR, DEFAULT_TELEGRAM_API_URL, &["https", "http"])?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if url.scheme() == "http" && (!loopback || environment == Environment::Production) {
        return Err(ConfigError::new(
            VAR,
            format!("expected an https:// URL (plain http only to loopback, outside production), got {:?}", url.as_str()),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, BASE};

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars = BASE.to_vec();
        vars.extend_from_slice(extra);
        vars
    }

    #[test]
    fn without_a_token_nothing_is_sent_and_photos_go_as_the_bot_deletes_them() {
        let cfg = config(&BASE).unwrap().followups;
        assert!(cfg.telegram.is_none());
        let policy = cfg.policy();
        assert!(!policy.notify_ready && !policy.notify_failed && policy.delete_photos);
        assert!(cfg.photos.keep_preview);
        assert_eq!(cfg.photos.bucket, "avatars");
    }

    #[test]
    fn a_token_turns_messages_on_with_the_bots_key_prefix_and_never_shows() {
        let cfg = config(&with(&[("TELEGRAM_TOKEN", "123456:ABC-secret-token")])).unwrap();
        let telegram = cfg.followups.telegram.as_ref().unwrap();
        assert_eq!(telegram.api_url, "https://api.telegram.org");
        assert_eq!(telegram.redis_key_prefix, "aisha:v2:avatar:");
        assert!(telegram.mark_ttl >= std::time::Duration::from_secs(7200));
        assert!(cfg.followups.policy().notify_failed);
        assert!(!format!("{cfg:?}").contains("ABC-secret-token"));
        let off = config(&with(&[
            ("TELEGRAM_TOKEN", "123456:ABC"),
            ("NOTIFY_ON_FAILURE", "false"),
            ("DELETE_PHOTOS_AFTER_TRAINING", "false"),
        ]))
        .unwrap()
        .followups
        .policy();
        assert!(off.notify_ready && !off.notify_failed && !off.delete_photos);
    }

    #[test]
    fn the_bot_api_is_reached_over_https_or_on_loopback_outside_production() {
        let token = ("TELEGRAM_TOKEN", "1:x");
        for url in ["http://api.telegram.org", "ftp://x", "not a url"] {
            let err = config(&with(&[token, ("TELEGRAM_API_URL", url)])).unwrap_err();
            assert_eq!(err.var, "TELEGRAM_API_URL", "{url}");
        }
        let local = config(&with(&[token, ("TELEGRAM_API_URL", "http://127.0.0.1:9/")])).unwrap();
        assert_eq!(
            local.followups.telegram.unwrap().api_url,
            "http://127.0.0.1:9"
        );
        let prod = config(&with(&[
            token,
            ("ENVIRONMENT", "production"),
            ("TELEGRAM_API_URL", "http://127.0.0.1:9"),
        ]));
        assert_eq!(prod.unwrap_err().var, "TELEGRAM_API_URL");
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let token = ("TELEGRAM_TOKEN", "1:x");
        for (var, value) in [
            ("NOTIFY_MESSAGES_PER_SEC", "0"),
            ("NOTIFY_MARK_TTL_SECS", "30"),
            ("FOLLOWUP_POLL_MS", "0"),
            ("FOLLOWUP_LEASE_SECS", "0"),
            ("FOLLOWUP_MAX_ATTEMPTS", "0"),
        ] {
            let err = config(&with(&[token, (var, value)])).unwrap_err();
            assert_eq!(err.var, var);
        }
    }
}
