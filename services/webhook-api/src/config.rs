//! Environment → one typed `Config`, read once at start.
//!
//! Variable names are those of the product's existing `prod.env`. Every problem names the
//! variable; no message ever repeats the value of a secret.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::avatar::TrainingType;

pub const DEFAULT_JWKS_URL: &str = "https://rest.alpha.fal.ai/.well-known/jwks.json";
pub const DEFAULT_FAL_QUEUE_URL: &str = "https://queue.fal.run";

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
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_bytes())
    }
    /// A binary key (a decoded Standard Webhooks secret).
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self(key)
    }
    /// The secret as text (empty for a binary key, which only `expose_bytes` gives).
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
    pub fn expose_bytes(&self) -> &[u8] {
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
    /// Which image this is (`WEBHOOK_BUILD`, set by the Dockerfile: tag + git revision).
    pub build: String,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub announce: AnnounceConfig,
    pub verify: VerifyConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub files: FilesConfig,
    /// The other signed senders, `POST /api/v1/webhooks/{name}` (`WEBHOOK_SOURCES`).
    pub sources: Vec<SourceConfig>,
    /// Deploy on a verified push; `None` unless `DEPLOY_REPOSITORY` is set.
    pub deploy: Option<DeployConfig>,
    /// Asking FAL about trainings no callback finished; `None` without `FAL_API_KEY`.
    pub reconcile: Option<ReconcileConfig>,
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
    /// Group commit: batches in flight at once, and the largest batch.
    pub group_commit_loops: usize,
    pub group_commit_max: usize,
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

/// Copying trained files from FAL's CDN into S3 (MinIO).
#[derive(Debug, Clone)]
pub struct FilesConfig {
    pub s3: S3Config,
    /// Hosts files may come from; an entry also allows its subdomains.
    pub host_allowlist: Vec<String>,
    /// Test-only: accept `http://` file URLs. Refused when ENVIRONMENT=production.
    pub allow_http: bool,
    pub max_bytes: u64,
    /// Multipart part size: the memory one copy holds at most twice.
    pub part_size: usize,
    pub max_attempts: i32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A claimed job not renewed within this is taken over by another worker.
    pub lease: Duration,
    pub poll_interval: Duration,
    pub workers: usize,
    /// A download that sends no bytes for this long is abandoned (and retried).
    pub read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint_url: String,
    pub region: String,
    pub access_key: Secret,
    pub secret_key: Secret,
    pub bucket: String,
}

/// How a source signs its deliveries, exactly as that sender does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceScheme {
    /// `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Event`, `X-GitHub-Delivery`.
    Github,
    /// `X-Gitea-Signature: <hex>`, `X-Gitea-Event`, `X-Gitea-Delivery`.
    Gitea,
    /// `X-Plane-Signature: <hex>`, `X-Plane-Event`, `X-Plane-Delivery`.
    Plane,
    /// `X-Signature: <hex>`: the generic job-completion contract.
    Hmac,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    Standard,
}

impl SourceScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceScheme::Github => "github",
            SourceScheme::Gitea => "gitea",
            SourceScheme::Plane => "plane",
            SourceScheme::Hmac => "hmac",
            SourceScheme::Standard => "standard",
        }
    }
}

impl FromStr for SourceScheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "github" => Ok(Self::Github),
            "gitea" => Ok(Self::Gitea),
            "plane" => Ok(Self::Plane),
            "hmac" => Ok(Self::Hmac),
            "standard" => Ok(Self::Standard),
            _ => Err(format!(
                "unknown scheme {s:?} (expected github, gitea, plane, hmac or standard)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub scheme: SourceScheme,
    /// Any of them may have signed a delivery (rotation). For `standard`, the decoded key bytes.
    pub secrets: Vec<Secret>,
    /// Accept deliveries without a signature (never in production).
    pub unsigned: bool,
}

/// Path segments of `/api/v1/webhooks/…` that belong to the operator API, never a source.
pub const RESERVED_SOURCE_NAMES: [&str; 5] = ["fal", "metrics", "health", "failures", "events"];

#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// `owner/name` as the push payload's `repository.full_name` gives it.
    pub repository: String,
    pub branch: String,
    /// Program and fixed arguments, run without a shell.
    pub command: Vec<String>,
    pub timeout: Duration,
    /// How often an idle instance looks for queued deploys another instance could not start.
    pub poll_interval: Duration,
}

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

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
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
            build: env
                .optional("WEBHOOK_BUILD")
                .unwrap_or_else(|| "dev".into()),
            database: DatabaseConfig {
                pg: parse_database_url(&env.required("DATABASE_URL")?)?,
                pool_size: env.parsed("DB_POOL_SIZE", 32)?,
                statement_timeout: env.seconds("DB_TIMEOUT_SECS", 10)?,
                startup_wait: env.seconds("DB_STARTUP_WAIT_SECS", 60)?,
                group_commit_loops: env.parsed("DB_GROUP_COMMIT_LOOPS", 4)?,
                group_commit_max: env.parsed("DB_GROUP_COMMIT_MAX", 64)?,
            },
            redis: RedisConfig {
                url: parse_redis_url(env.required("REDIS_URL")?)?,
                announced_ttl: env
                    .seconds("ANNOUNCE_REMEMBER_SECS", 24 * 3600)?
                    .max(Duration::from_secs(3600)),
                key_prefix: env
                    .optional("REDIS_KEY_PREFIX")
                    .unwrap_or_else(|| "aisha:".into()),
                status_ttl: env.seconds("REDIS_STATUS_TTL_SECS", 3600)?,
                stream_maxlen: env.parsed("REDIS_STREAM_MAXLEN", 100_000)?,
                timeout: Duration::from_millis(env.parsed("REDIS_TIMEOUT_MS", 500)?),
            },
            announce: AnnounceConfig {
                interval: Duration::from_millis(env.parsed("ANNOUNCE_INTERVAL_MS", 5000)?)
                    .max(Duration::from_millis(10)),
                settle: Duration::from_millis(env.parsed("ANNOUNCE_SETTLE_MS", 30_000)?),
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
            files: files_config(&env, environment)?,
            sources: sources_config(&env, environment)?,
            deploy: deploy_config(&env)?,
            reconcile: reconcile_config(&env)?,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECS", 20)?,
        })
    }
}

fn files_config(env: &Env<'_>, environment: Environment) -> Result<FilesConfig, ConfigError> {
    let allow_http = env.flag("FILE_ALLOW_HTTP", false)?;
    if allow_http && environment == Environment::Production {
        return Err(ConfigError::new(
            "FILE_ALLOW_HTTP",
            "is a test-only setting and must not be true when ENVIRONMENT=production",
        ));
    }
    let secure = env.flag("MINIO_SECURE", false)?;
    let endpoint = env.required("MINIO_ENDPOINT")?;
    let endpoint_url = if endpoint.contains("://") {
        endpoint
    } else {
        format!("{}://{endpoint}", if secure { "https" } else { "http" })
    };
    reqwest::Url::parse(&endpoint_url)
        .ok()
        .filter(|url| url.has_host())
        .ok_or_else(|| ConfigError::new("MINIO_ENDPOINT", "expected host:port or a URL"))?;
    let host_allowlist: Vec<String> = env
        .optional("FILE_HOST_ALLOWLIST")
        .unwrap_or_else(|| "fal.media,storage.googleapis.com".into())
        .split(',')
        .map(|h| {
            h.trim()
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .to_ascii_lowercase()
        })
        .filter(|h| !h.is_empty())
        .collect();
    if host_allowlist.is_empty() {
        return Err(ConfigError::new("FILE_HOST_ALLOWLIST", "names no host"));
    }
    let part_size: usize = env.parsed("FILE_PART_SIZE_BYTES", 8 * 1024 * 1024)?;
    if part_size < 5 * 1024 * 1024 {
        return Err(ConfigError::new(
            "FILE_PART_SIZE_BYTES",
            "must be at least 5 MiB (the S3 minimum part size)",
        ));
    }
    Ok(FilesConfig {
        s3: S3Config {
            endpoint_url,
            region: env
                .optional("MINIO_REGION")
                .unwrap_or_else(|| "us-east-1".into()),
            access_key: Secret::new(env.required("MINIO_ACCESS_KEY")?),
            secret_key: Secret::new(env.required("MINIO_SECRET_KEY")?),
            bucket: env.required("MINIO_BUCKET_NAME")?,
        },
        host_allowlist,
        allow_http,
        max_bytes: env.parsed("FILE_MAX_BYTES", 2 * 1024 * 1024 * 1024)?,
        part_size,
        max_attempts: env.parsed("FILE_JOB_MAX_ATTEMPTS", 8)?,
        retry_base: Duration::from_millis(env.parsed("FILE_JOB_RETRY_BASE_MS", 2000)?),
        retry_max: env.seconds("FILE_JOB_RETRY_MAX_SECS", 600)?,
        lease: env
            .seconds("FILE_JOB_LEASE_SECS", 120)?
            .max(Duration::from_secs(1)),
        poll_interval: Duration::from_millis(env.parsed("FILE_JOB_POLL_MS", 2000)?),
        workers: env.parsed("FILE_WORKERS", 2)?,
        read_timeout: env.seconds("FILE_READ_TIMEOUT_SECS", 60)?,
    })
}

/// `WEBHOOK_SOURCES=github:github,jobs:hmac,…` (name:scheme), each with its secrets in
/// `WEBHOOK_SOURCE_<NAME>_SECRETS` (comma-separated, for rotation) or, outside production only,
/// `WEBHOOK_SOURCE_<NAME>_UNSIGNED=true`.
fn sources_config(
    env: &Env<'_>,
    environment: Environment,
) -> Result<Vec<SourceConfig>, ConfigError> {
    const VAR: &str = "WEBHOOK_SOURCES";
    let problem = |p: String| ConfigError::new(VAR, p);
    let Some(list) = env.optional(VAR) else {
        return Ok(Vec::new());
    };
    let mut sources: Vec<SourceConfig> = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, scheme) = entry
            .split_once(':')
            .ok_or_else(|| problem(format!("{entry:?} is not name:scheme")))?;
        let (name, scheme) = (name.trim(), scheme.trim());
        let valid_name = !name.is_empty()
            && name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(problem(format!(
                "source name {name:?} must be 1-40 characters of a-z, 0-9, - and _"
            )));
        }
        if RESERVED_SOURCE_NAMES.contains(&name) {
            return Err(problem(format!("source name {name:?} is reserved")));
        }
        if sources.iter().any(|s| s.name == name) {
            return Err(problem(format!("source {name:?} is listed twice")));
        }
        let scheme: SourceScheme = scheme.parse().map_err(problem)?;
        let prefix = format!(
            "WEBHOOK_SOURCE_{}",
            name.to_ascii_uppercase().replace('-', "_")
        );
        let unsigned_var = format!("{prefix}_UNSIGNED");
        let unsigned = match env
            .optional(&unsigned_var)
            .map(|v| v.trim().to_ascii_lowercase())
        {
            None => false,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => false,
            Some(_) => return Err(problem(format!("{unsigned_var} must be true or false"))),
        };
        if unsigned && environment == Environment::Production {
            return Err(problem(format!(
                "{unsigned_var} must not be true when ENVIRONMENT=production"
            )));
        }
        let secrets_var = format!("{prefix}_SECRETS");
        let secrets = env
            .optional(&secrets_var)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| match scheme {
                SourceScheme::Standard => standard_webhooks_key(s).ok_or_else(|| {
                    problem(format!(
                        "{secrets_var}: a standard secret is whsec_ followed by base64"
                    ))
                }),
                _ => Ok(Secret::new(s)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() && !unsigned {
            return Err(problem(format!(
                "source {name:?} has no secret: set {secrets_var}"
            )));
        }
        sources.push(SourceConfig {
            name: name.to_string(),
            scheme,
            secrets,
            unsigned,
        });
    }
    Ok(sources)
}

/// A Standard Webhooks secret (`whsec_<base64>`) → the HMAC key it stands for.
fn standard_webhooks_key(secret: &str) -> Option<Secret> {
    use base64::Engine;
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .filter(|k| !k.is_empty())?;
    Some(Secret::from_bytes(key))
}

fn deploy_config(env: &Env<'_>) -> Result<Option<DeployConfig>, ConfigError> {
    let Some(repository) = env.optional("DEPLOY_REPOSITORY") else {
        return Ok(None);
    };
    let repository = repository.trim().to_string();
    if repository.split('/').filter(|p| !p.is_empty()).count() != 2 {
        return Err(ConfigError::new("DEPLOY_REPOSITORY", "expected owner/name"));
    }
    let command: Vec<String> = env
        .optional("DEPLOY_COMMAND")
        .unwrap_or_else(|| "scripts/deploy/update-webhook-images.sh".into())
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Ok(Some(DeployConfig {
        repository,
        branch: env
            .optional("DEPLOY_BRANCH")
            .unwrap_or_else(|| "main".into())
            .trim()
            .to_string(),
        command,
        timeout: env.seconds("DEPLOY_TIMEOUT_SECS", 1800)?,
        poll_interval: Duration::from_millis(env.parsed("DEPLOY_POLL_MS", 5000)?),
    }))
}

fn reconcile_config(env: &Env<'_>) -> Result<Option<ReconcileConfig>, ConfigError> {
    let Some(api_key) = env.optional("FAL_API_KEY") else {
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
            .unwrap_or_else(|| "fal-ai/flux-lora-fast-training".into()),
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

    const BASE: [(&str, &str); 6] = [
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
    fn minio_secure_selects_https_and_http_file_urls_are_refused_in_production() {
        let mut vars = BASE.to_vec();
        vars.push(("MINIO_SECURE", "true"));
        assert_eq!(
            config(&vars).unwrap().files.s3.endpoint_url,
            "https://minio:9000"
        );
        vars.extend([("ENVIRONMENT", "production"), ("FILE_ALLOW_HTTP", "true")]);
        assert_eq!(config(&vars).unwrap_err().var, "FILE_ALLOW_HTTP");
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

    #[test]
    fn sources_are_read_with_their_secrets_and_checked() {
        let mut vars = BASE.to_vec();
        vars.extend([
            (
                "WEBHOOK_SOURCES",
                "github:github, ci-jobs:hmac,billing:standard",
            ),
            ("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-old,gh-new"),
            ("WEBHOOK_SOURCE_CI_JOBS_SECRETS", "jobs"),
            ("WEBHOOK_SOURCE_BILLING_SECRETS", "whsec_c2VjcmV0"),
        ]);
        let cfg = config(&vars).unwrap();
        let names: Vec<_> = cfg.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["github", "ci-jobs", "billing"]);
        assert_eq!(cfg.sources[0].secrets.len(), 2);
        assert_eq!(cfg.sources[2].secrets[0].expose_bytes(), b"secret");
        assert!(!format!("{cfg:?}").contains("gh-old"));

        let refused = |extra: &[(&'static str, &'static str)], expected: &str| {
            let mut vars = vars.clone();
            for (name, value) in extra {
                vars.retain(|(n, _)| n != name);
                vars.push((name, value));
            }
            let err = config(&vars).unwrap_err();
            assert_eq!(err.var, "WEBHOOK_SOURCES");
            assert!(err.to_string().contains(expected), "{err}");
            assert!(!err.to_string().contains("gh-old"), "{err}");
        };
        refused(&[("WEBHOOK_SOURCES", "github:gitlab")], "unknown scheme");
        refused(&[("WEBHOOK_SOURCES", "metrics:hmac")], "reserved");
        refused(&[("WEBHOOK_SOURCES", "Git Hub:github")], "must be 1-40");
        refused(&[("WEBHOOK_SOURCES", "github")], "not name:scheme");
        refused(
            &[("WEBHOOK_SOURCES", "plane:plane")],
            "WEBHOOK_SOURCE_PLANE_SECRETS",
        );
        refused(
            &[("WEBHOOK_SOURCE_BILLING_SECRETS", "whsec_%%%")],
            "whsec_ followed by base64",
        );
        refused(
            &[
                ("WEBHOOK_SOURCES", "plane:plane"),
                ("WEBHOOK_SOURCE_PLANE_UNSIGNED", "true"),
                ("ENVIRONMENT", "production"),
            ],
            "must not be true when ENVIRONMENT=production",
        );
    }

    #[test]
    fn deploys_are_off_unless_a_repository_is_named() {
        assert!(config(&BASE).unwrap().deploy.is_none());
        let mut vars = BASE.to_vec();
        vars.extend([
            ("DEPLOY_REPOSITORY", "team/avatar-bot"),
            ("DEPLOY_COMMAND", "/opt/deploy/update.sh --pull  --quiet"),
        ]);
        let deploy = config(&vars).unwrap().deploy.unwrap();
        assert_eq!(deploy.branch, "main");
        assert_eq!(
            deploy.command,
            ["/opt/deploy/update.sh", "--pull", "--quiet"]
        );
        assert_eq!(deploy.timeout, Duration::from_secs(1800));
        vars.push(("DEPLOY_REPOSITORY", "just-a-name"));
        vars.retain(|(n, v)| *n != "DEPLOY_REPOSITORY" || *v == "just-a-name");
        assert_eq!(config(&vars).unwrap_err().var, "DEPLOY_REPOSITORY");
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
