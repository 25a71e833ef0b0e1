//! Environment → one typed `Config`, read once at start.
//!
//! Variable names are those of the product's existing `prod.env`. Every problem names the
//! variable; no message ever repeats the value of a secret.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub const DEFAULT_JWKS_URL: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

/// A value that must never reach a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub bind_address: std::net::IpAddr,
    pub port: u16,
    pub instance_id: String,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub verify: VerifyConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// How long in-flight requests get to finish after SIGTERM before the process exits.
    pub shutdown_grace: Duration,
}

#[derive(Clone)]
pub struct DatabaseConfig {
    pub pg: tokio_postgres::Config,
    pub pool_size: usize,
    /// Upper bound for one ingest transaction; past it the sender is told to retry.
    pub statement_timeout: Duration,
    /// How long start-up waits for PostgreSQL to accept connections before giving up.
    pub startup_wait: Duration,
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

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: Secret,
    pub key_prefix: String,
    pub status_ttl: Duration,
    pub stream_maxlen: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub fal_jwks_url: String,
    pub jwks_max_age: Duration,
    pub jwks_refetch_interval: Duration,
    pub hmac_secrets: Vec<Secret>,
    pub allow_unsigned: bool,
    pub timestamp_tolerance_secs: i64,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub max_body_bytes: usize,
    /// Bounds reading the request head and the body; hyper also closes a kept-alive
    /// connection that sends no new request within it (the upstream keep-alive timeout).
    pub read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the config from any name → value lookup, so tests need not touch the process env.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let environment: Environment = env.parsed("ENVIRONMENT", Environment::Development)?;

        let allow_unsigned = env.flag("WEBHOOK_ALLOW_UNSIGNED", false)?;
        if allow_unsigned && environment == Environment::Production {
            return Err(ConfigError::new(
                "WEBHOOK_ALLOW_UNSIGNED",
                "must not be true when ENVIRONMENT=production",
            ));
        }
        let hmac_secrets: Vec<Secret> = env
            .optional("FAL_WEBHOOK_SECRET")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();

        let log_filter = env
            .optional("LOG_LEVEL")
            .unwrap_or_else(|| "info".into())
            .to_ascii_lowercase();
        tracing_subscriber::EnvFilter::try_new(&log_filter)
            .map_err(|e| ConfigError::new("LOG_LEVEL", format!("not a level or filter ({e})")))?;
        let log_format = match env.optional("LOG_FORMAT").as_deref() {
            None if environment == Environment::Production => LogFormat::Json,
            None => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(_) => return Err(ConfigError::new("LOG_FORMAT", "expected json or text")),
        };

        Ok(Config {
            environment,
            bind_address: env.parsed("HOST", std::net::IpAddr::from([0, 0, 0, 0]))?,
            port: env.parsed("PORT", 8000)?,
            instance_id: env
                .optional("INSTANCE_ID")
                .or_else(|| lookup("HOSTNAME"))
                .unwrap_or_else(|| "webhook-api".into()),
            database: DatabaseConfig {
                pg: parse_database_url(&env.required("DATABASE_URL")?)?,
                pool_size: env.parsed("DB_POOL_SIZE", 32)?,
                statement_timeout: env.seconds("DB_TIMEOUT_SECS", 10)?,
                startup_wait: env.seconds("DB_STARTUP_WAIT_SECS", 60)?,
            },
            redis: RedisConfig {
                url: parse_redis_url(env.required("REDIS_URL")?)?,
                key_prefix: env
                    .optional("REDIS_KEY_PREFIX")
                    .unwrap_or_else(|| "aisha:".into()),
                status_ttl: env.seconds("REDIS_STATUS_TTL_SECS", 3600)?,
                stream_maxlen: env.parsed("REDIS_STREAM_MAXLEN", 100_000)?,
                timeout: Duration::from_millis(env.parsed("REDIS_TIMEOUT_MS", 500)?),
            },
            verify: VerifyConfig {
                fal_jwks_url: env
                    .optional("FAL_JWKS_URL")
                    .unwrap_or_else(|| DEFAULT_JWKS_URL.into()),
                jwks_max_age: env.seconds("FAL_JWKS_MAX_AGE_SECS", 24 * 3600)?.min(
                    // The contract caps the cache at a day, whatever is configured.
                    Duration::from_secs(24 * 3600),
                ),
                jwks_refetch_interval: env.seconds("FAL_JWKS_REFETCH_INTERVAL_SECS", 60)?,
                hmac_secrets,
                allow_unsigned,
                timestamp_tolerance_secs: 300,
            },
            http: HttpConfig {
                max_body_bytes: env.parsed("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)?,
                read_timeout: env.seconds("HTTP_READ_TIMEOUT_SECS", 30)?,
            },
            log: LogConfig {
                filter: log_filter,
                format: log_format,
            },
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECS", 20)?,
        })
    }
}

/// Typed helpers so every variable fails the same clear way.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(name, format!("invalid value {raw:?}: {e}"))),
        }
    }

    fn seconds(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parsed(name, default).map(Duration::from_secs)
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::new(
                name,
                format!("invalid value {v:?}: expected true or false"),
            )),
        }
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

fn parse_redis_url(raw: String) -> Result<Secret, ConfigError> {
    redis::Client::open(raw.as_str()).map_err(|_| {
        ConfigError::new(
            "REDIS_URL",
            "not a valid Redis URL (expected redis://[:password@]host:6379[/db])",
        )
    })?;
    Ok(Secret::new(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        ("DATABASE_URL", "postgresql://bot:s3cret@db:5432/aisha"),
        ("REDIS_URL", "redis://:redispw@redis:6379/0"),
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
    }

    #[test]
    fn asyncpg_database_url_is_accepted() {
        let pg = parse_database_url("postgresql+asyncpg://bot:pw@db:5432/aisha").unwrap();
        assert_eq!(pg.get_user(), Some("bot"));
        assert_eq!(pg.get_dbname(), Some("aisha"));
    }

    #[test]
    fn missing_variable_is_named() {
        let err = config(&[("REDIS_URL", "redis://r")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(err.to_string().contains("DATABASE_URL: is required"));
    }

    #[test]
    fn malformed_database_url_never_echoes_the_password() {
        let err = config(&[
            ("DATABASE_URL", "mysql://bot:topsecretpw@db/aisha"),
            ("REDIS_URL", "redis://r"),
        ])
        .unwrap_err();
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
        vars[2] = ("ENVIRONMENT", "development");
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
        for secret in ["old-secret", "new-secret", "s3cret", "redispw"] {
            assert!(!debug.contains(secret), "{secret} leaked into Debug output");
        }
    }

    #[test]
    fn production_logs_json_by_default() {
        let mut vars = BASE.to_vec();
        vars.extend([("ENVIRONMENT", "production"), ("LOG_LEVEL", "INFO")]);
        let cfg = config(&vars).unwrap();
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.log.filter, "info");
    }
}
