//! Environment → one typed `Config`, read once at start, each area in a module of its own
//! with its `from_env` and its tests (`env` holds the typed readers they all use).
//!
//! Variable names are those of the product's existing `prod.env`. Every problem names the
//! variable; no message ever repeats the value of a secret.

mod console;
mod database;
mod deploy;
mod env;
mod files;
mod followups;
mod github;
mod log;
mod operators;
mod proxies;
mod reconcile;
mod redis;
mod retention;
mod sources;
mod spool;

use std::str::FromStr;
use std::time::Duration;

pub use crate::secret::Secret;
pub use crate::verify::VerifyConfig;
pub use console::ConsoleConfig;
pub use database::{parse_database_url, DatabaseConfig};
pub use deploy::DeployConfig;
pub use files::{FilesConfig, S3Config};
pub use followups::{FollowupsConfig, PhotosConfig, TelegramConfig, DEFAULT_TELEGRAM_API_URL};
pub use github::{GithubApiConfig, GithubRedeliver};
pub use log::{LogConfig, LogFormat};
pub use operators::{token_digest, OperatorLimits, OperatorToken, Scope};
pub use proxies::TrustedProxies;
pub use reconcile::ReconcileConfig;
pub use redis::{AnnounceConfig, RedisConfig};
pub use retention::RetentionConfig;
pub use sources::{SourceConfig, RESERVED_SOURCE_NAMES};
pub use spool::SpoolConfig;

use env::Env;
pub use env::{Bounds, Setting};

pub const DEFAULT_JWKS_URL: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";
pub const DEFAULT_FAL_QUEUE_URL: &str = "https://queue.fal.run";

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Production,
    Staging,
    Development,
    Test,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "production" | "prod" => Ok(Self::Production),
            "staging" => Ok(Self::Staging),
            "development" | "dev" | "local" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            _ => Err("expected one of production, staging, development, test".into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub bind_address: std::net::IpAddr,
    pub port: u16,
    pub instance_id: String,
    /// Which image this is (`WEBHOOK_BUILD`, set by the Dockerfile: tag + git revision).
    pub build: String,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub announce: AnnounceConfig,
    pub verify: VerifyConfig,
    pub http: HttpConfig,
    pub rejections: RejectionsConfig,
    pub log: LogConfig,
    pub files: FilesConfig,
    /// What follows a finished training: the owner's Telegram message, the photos' removal.
    pub followups: FollowupsConfig,
    /// The other signed senders, `POST /api/v1/webhooks/{name}` (`WEBHOOK_SOURCES`).
    pub sources: Vec<SourceConfig>,
    /// Where deliveries of the sources that spool wait while PostgreSQL is away.
    pub spool: SpoolConfig,
    /// How GitHub's redelivery is asked for (sources with `redeliver`).
    pub github: GithubApiConfig,
    /// How long deliveries, their payloads and deploy outputs are kept.
    pub retention: RetentionConfig,
    /// Deploy on a verified push; `None` unless `DEPLOY_REPOSITORY` is set.
    pub deploy: Option<DeployConfig>,
    /// Who may use the operators' API, `/metrics` and the health details (`OPERATOR_TOKENS`).
    pub operator_tokens: Vec<OperatorToken>,
    /// Refused calls per address and replays per token, a minute.
    pub operator_limits: OperatorLimits,
    /// Whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`: nginx).
    pub trusted_proxies: TrustedProxies,
    /// Asking FAL about trainings no callback finished; `None` without `FAL_API_KEY`.
    pub reconcile: Option<ReconcileConfig>,
    /// The operators' console in the browser.
    pub console: ConsoleConfig,
    /// How long in-flight requests get to finish after SIGTERM before the process exits.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    /// Bounds reading the request head and the body; hyper also closes a kept-alive
    /// connection that sends no new request within it (the upstream keep-alive timeout).
    pub read_timeout: Duration,
}

/// Refused requests kept for operators: how many a second, and for how long.
#[derive(Debug, Clone)]
pub struct RejectionsConfig {
    pub rows_per_second: usize,
    pub keep: Duration,
}

impl Config {
    /// How long a training may go without a change before it counts as stale: the
    /// reconciler's wait, or its default when the reconciler is off.
    pub fn stale_training_after(&self) -> Duration {
        self.reconcile
            .as_ref()
            .map_or(Duration::from_secs(30 * 60), |r| r.stale_after)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `PORT` of the process environment, read as `serve` reads it (for the commands that ask
    /// this instance: `healthcheck`, `send-test`).
    pub fn port_from_env() -> Result<u16, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        read_port(&Env::new(&lookup))
    }

    /// One secret of the process environment, as `NAME` or `NAME_FILE` (for the commands that
    /// need only that, such as `send-test`).
    pub fn secret_from_env(name: &'static str) -> Result<Option<String>, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        Env::new(&lookup).secret_text(name)
    }

    /// Builds the config from any name → value lookup, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(&Env::new(&lookup))
    }

    /// `from_lookup`, with every bounded setting it read on the way (a number with its range, a
    /// URL with its schemes): the property test feeds each of them its extremes.
    pub fn with_settings(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> (Result<Self, ConfigError>, Vec<Setting>) {
        let env = Env::new(&lookup);
        let config = Self::read(&env);
        (config, env.settings())
    }

    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let environment: Environment = env.parsed("ENVIRONMENT", Environment::Development)?;
        Ok(Config {
            environment,
            bind_address: env.parsed("HOST", std::net::IpAddr::from([0, 0, 0, 0]))?,
            // 0: any free port (the tests' in-process instances).
            port: read_port(env)?,
            instance_id: env
                .optional("INSTANCE_ID")
                .or_else(|| env.optional("HOSTNAME"))
                .unwrap_or_else(|| "webhook-api".into()),
            build: env
                .optional("WEBHOOK_BUILD")
                .unwrap_or_else(|| "dev".into()),
            database: DatabaseConfig::from_env(env)?,
            redis: RedisConfig::from_env(env)?,
            announce: AnnounceConfig::from_env(env)?,
            verify: verify_from_env(env, environment)?,
            http: HttpConfig {
                max_body_bytes: env.number(
                    "WEBHOOK_MAX_BODY_BYTES",
                    1024 * 1024,
                    1024..=64 * 1024 * 1024,
                )?,
                read_timeout: env.seconds("HTTP_READ_TIMEOUT_SECS", 30, 1..=3600)?,
            },
            rejections: RejectionsConfig {
                rows_per_second: env.number("REJECTED_ROWS_PER_SECOND", 10, 1..=10_000)?,
                keep: Duration::from_secs(
                    24 * 3600 * env.number("RETENTION_REJECTED_DAYS", 7, 1..=3650)?,
                ),
            },
            log: LogConfig::from_env(env, environment)?,
            files: FilesConfig::from_env(env, environment)?,
            followups: FollowupsConfig::from_env(env, environment)?,
            sources: sources::from_env(env, environment)?,
            spool: SpoolConfig::from_env(env)?,
            github: GithubApiConfig::from_env(env, environment)?,
            retention: RetentionConfig::from_env(env)?,
            deploy: deploy::from_env(env)?,
            operator_tokens: operators::from_env(env)?,
            operator_limits: OperatorLimits::from_env(env)?,
            trusted_proxies: TrustedProxies::from_env(env)?,
            reconcile: reconcile::from_env(env)?,
            console: ConsoleConfig::from_env(env)?,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECS", 20, 0..=600)?,
        })
    }
}

fn read_port(env: &Env<'_>) -> Result<u16, ConfigError> {
    env.number("PORT", 8000, 0..=u16::MAX)
}

/// What the database commands need (`migrate`, `jobs`): `DATABASE_URL` with its `DB_*`
/// settings, and the log settings; nothing else is required of the environment.
#[derive(Debug, Clone)]
pub struct DatabaseCommandConfig {
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
}

impl DatabaseCommandConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let lookup = |name: &str| std::env::var(name).ok();
        let env = Env::new(&lookup);
        let environment: Environment = env.parsed("ENVIRONMENT", Environment::Development)?;
        Ok(Self {
            database: DatabaseConfig::from_env(&env)?,
            log: LogConfig::from_env(&env, environment)?,
            retention: RetentionConfig::from_env(&env)?,
        })
    }
}

/// FAL's signatures: its JWKS, the shared HMAC secrets, unsigned in development only.
fn verify_from_env(env: &Env<'_>, environment: Environment) -> Result<VerifyConfig, ConfigError> {
    let allow_unsigned = env.flag("WEBHOOK_ALLOW_UNSIGNED", false)?;
    if allow_unsigned && environment == Environment::Production {
        return Err(ConfigError::new(
            "WEBHOOK_ALLOW_UNSIGNED",
            "must not be true when ENVIRONMENT=production",
        ));
    }
    let hmac_secrets: Vec<Secret> = env
        .secret_text("FAL_WEBHOOK_SECRET")?
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
                .collect()
        })
        .unwrap_or_default();
    Ok(VerifyConfig {
        // `file://` for an offline key set (development, tests).
        fal_jwks_url: env
            .url("FAL_JWKS_URL", DEFAULT_JWKS_URL, &["https", "http", "file"])?
            .to_string(),
        // The contract caps the cache at a day.
        jwks_max_age: env.seconds("FAL_JWKS_MAX_AGE_SECS", 24 * 3600, 1..=24 * 3600)?,
        jwks_refetch_interval: env.seconds("FAL_JWKS_REFETCH_INTERVAL_SECS", 60, 1..=3600)?,
        hmac_secrets,
        allow_unsigned,
        timestamp_tolerance_secs: 300,
    })
}

#[cfg(test)]
mod bounds_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(super) fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    pub(super) const BASE: [(&str, &str); 6] = [
        ("DATABASE_URL", "postgresql://bot:s3cret@db:5432/aisha"),
        ("REDIS_URL", "redis://:redispw@redis:6379/0"),
        ("MINIO_ENDPOINT", "minio:9000"),
        ("MINIO_ACCESS_KEY", "minio-access"),
        ("MINIO_SECRET_KEY", "minio-secret-key"),
        ("MINIO_BUCKET_NAME", "avatars"),
    ];

    #[test]
    fn minimal_environment_gets_documented_defaults() {
        let cfg = config(&BASE).unwrap();
        assert_eq!(cfg.port, 8000);
        assert_eq!(cfg.redis.key_prefix, "aisha:");
        assert_eq!(cfg.verify.fal_jwks_url, DEFAULT_JWKS_URL);
        assert_eq!(cfg.http.max_body_bytes, 1024 * 1024);
        assert!(!cfg.verify.allow_unsigned);
        assert_eq!(cfg.database.pg.get_dbname(), Some("aisha"));
        assert_eq!(cfg.files.s3.endpoint_url, "http://minio:9000");
        assert_eq!(
            cfg.files.host_allowlist,
            ["fal.media", "storage.googleapis.com"]
        );
        assert_eq!(cfg.files.max_bytes, 2 * 1024 * 1024 * 1024);
    }

    #[test]
    fn asyncpg_database_url_is_accepted() {
        let pg = parse_database_url("postgresql+asyncpg://bot:pw@db:5432/aisha").unwrap();
        assert_eq!(pg.get_user(), Some("bot"));
        assert_eq!(pg.get_dbname(), Some("aisha"));
    }

    #[test]
    fn missing_variable_is_named() {
        let err = config(&BASE[1..]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(err.to_string().contains("DATABASE_URL: is required"));
    }

    #[test]
    fn malformed_database_url_never_echoes_the_password() {
        let mut vars = BASE.to_vec();
        vars[0] = ("DATABASE_URL", "mysql://bot:topsecretpw@db/aisha");
        let err = config(&vars).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(!err.to_string().contains("topsecretpw"));
    }

    #[test]
    fn malformed_number_names_variable_and_value() {
        let mut vars = BASE.to_vec();
        vars.push(("PORT", "eighty"));
        let err = config(&vars).unwrap_err();
        assert_eq!(err.var, "PORT");
        assert!(err.to_string().contains("eighty"));
    }

    #[test]
    fn unsigned_is_refused_in_production() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("ENVIRONMENT", "production"),
            ("WEBHOOK_ALLOW_UNSIGNED", "true"),
        ]);
        assert_eq!(config(&vars).unwrap_err().var, "WEBHOOK_ALLOW_UNSIGNED");
        vars[BASE.len()] = ("ENVIRONMENT", "development");
        assert!(config(&vars).unwrap().verify.allow_unsigned);
    }

    #[test]
    fn secret_list_allows_rotation_and_is_redacted_in_debug() {
        let mut vars = BASE.to_vec();
        vars.push(("FAL_WEBHOOK_SECRET", "old-secret, new-secret"));
        let cfg = config(&vars).unwrap();
        assert_eq!(cfg.verify.hmac_secrets.len(), 2);
        assert_eq!(cfg.verify.hmac_secrets[1].expose(), "new-secret");
        let debug = format!("{cfg:?}");
        for secret in [
            "old-secret",
            "new-secret",
            "s3cret",
            "redispw",
            "minio-secret-key",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked into Debug output");
        }
    }

    /// Docker secrets: every secret variable may name a file instead; the environment (and so
    /// `docker service inspect`) then holds only paths.
    #[test]
    fn every_secret_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, value: &str| {
            let path = dir.path().join(name);
            // As `docker secret create` stores what it is given: often with a final new line.
            std::fs::write(&path, format!("{value}\n")).unwrap();
            path.display().to_string()
        };
        let paths = [
            (
                "DATABASE_URL_FILE",
                file("db", "postgresql://bot:s3cret@db:5432/aisha"),
            ),
            (
                "REDIS_URL_FILE",
                file("redis", "redis://:redispw@redis:6379/0"),
            ),
            ("MINIO_ACCESS_KEY_FILE", file("access", "minio-access")),
            ("MINIO_SECRET_KEY_FILE", file("secret", "minio-secret-key")),
            (
                "FAL_WEBHOOK_SECRET_FILE",
                file("fal", "old-secret,new-secret"),
            ),
            ("FAL_API_KEY_FILE", file("fal-key", "fal-api-key")),
            (
                "WEBHOOK_SOURCE_GITHUB_SECRETS_FILE",
                file("github", "gh-secret"),
            ),
            (
                "WEBHOOK_SOURCE_GITHUB_REDELIVER_TOKEN_FILE",
                file("gh-token", "ghp_token"),
            ),
        ];
        let mut vars: Vec<(&str, &str)> = vec![
            ("MINIO_ENDPOINT", "minio:9000"),
            ("MINIO_BUCKET_NAME", "avatars"),
            ("WEBHOOK_SOURCES", "github:github"),
            ("WEBHOOK_SOURCE_GITHUB_REDELIVER_HOOK", "repos/o/r/hooks/1"),
        ];
        vars.extend(paths.iter().map(|(name, path)| (*name, path.as_str())));
        let cfg = config(&vars).unwrap();
        assert_eq!(cfg.database.pg.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(cfg.files.s3.secret_key.expose(), "minio-secret-key");
        assert_eq!(cfg.verify.hmac_secrets[1].expose(), "new-secret");
        assert_eq!(
            cfg.reconcile.as_ref().unwrap().api_key.expose(),
            "fal-api-key"
        );
        assert_eq!(cfg.sources[0].keys.secrets[0].expose(), "gh-secret");
        let hook = cfg.sources[0].redeliver.as_ref().unwrap();
        assert_eq!(hook.token.expose(), "ghp_token");

        // Both forms of one variable, or a file that cannot be read: the variable is named, its
        // value never.
        let mut both = vars.clone();
        both.push(("DATABASE_URL", "postgresql://bot:other@db/aisha"));
        let err = config(&both).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(err.to_string().contains("not both") && !err.to_string().contains("other"));
        let mut missing = vars.clone();
        missing.retain(|(name, _)| *name != "MINIO_SECRET_KEY_FILE");
        missing.push(("MINIO_SECRET_KEY_FILE", "/run/secrets/absent"));
        let err = config(&missing).unwrap_err().to_string();
        assert!(
            err.contains("MINIO_SECRET_KEY_FILE: cannot read \"/run/secrets/absent\""),
            "{err}"
        );
        let mut source = vars.clone();
        source.retain(|(name, _)| *name != "WEBHOOK_SOURCE_GITHUB_SECRETS_FILE");
        source.push(("WEBHOOK_SOURCE_GITHUB_SECRETS_FILE", "/run/secrets/absent"));
        let err = config(&source).unwrap_err().to_string();
        assert!(err.contains("WEBHOOK_SOURCE_GITHUB_SECRETS_FILE"), "{err}");
    }
}
