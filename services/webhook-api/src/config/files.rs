//! Copying trained files from FAL's CDN into S3 (MinIO): where to, from which hosts, how big,
//! how often retried.

use std::time::Duration;

use super::env::Env;
use super::{ConfigError, Environment, Secret};

const MIB: usize = 1024 * 1024;
/// The most parts one S3 multipart upload may have.
const S3_MAX_PARTS: u64 = 10_000;

/// Copying trained files from FAL's CDN into S3 (MinIO).
#[derive(Debug, Clone)]
pub struct FilesConfig {
    pub s3: S3Config,
    /// Hosts files may come from; an entry also allows its subdomains.
    pub host_allowlist: Vec<String>,
    /// Test-only: accept `http://` file URLs. Refused when ENVIRONMENT=production.
    pub allow_http: bool,
    /// Test-only: connect to loopback and private addresses. Refused in production.
    pub allow_private_addresses: bool,
    /// Ports file URLs may name (`FILE_ALLOWED_PORTS`, default 443); `None`: any.
    pub allowed_ports: Option<Vec<u16>>,
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

impl FilesConfig {
    pub(crate) fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, ConfigError> {
        let test_only = |name: &'static str| -> Result<bool, ConfigError> {
            let on = env.flag(name, false)?;
            if on && environment == Environment::Production {
                return Err(ConfigError::new(
                    name,
                    "is a test-only setting and must not be true when ENVIRONMENT=production",
                ));
            }
            Ok(on)
        };
        let allow_http = test_only("FILE_ALLOW_HTTP")?;
        let allow_private_addresses = test_only("FILE_ALLOW_PRIVATE_ADDRESSES")?;
        let secure = env.flag("MINIO_SECURE", false)?;
        let endpoint = env.required("MINIO_ENDPOINT")?;
        let endpoint_url = if endpoint.contains("://") {
            endpoint
        } else {
            format!("{}://{endpoint}", if secure { "https" } else { "http" })
        };
        reqwest::Url::parse(&endpoint_url)
            .ok()
            .filter(|url| url.has_host() && matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                ConfigError::new(
                    "MINIO_ENDPOINT",
                    "expected host:port or an http:// or https:// URL",
                )
            })?;
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
        // S3's smallest part; a part is held in memory, so the largest is kept small.
        let part_size: usize = env.number("FILE_PART_SIZE_BYTES", 8 * MIB, 5 * MIB..=64 * MIB)?;
        // A copy is one multipart upload: at most S3's number of parts of this size.
        let max_bytes: u64 = env.number(
            "FILE_MAX_BYTES",
            2 << 30,
            1..=part_size as u64 * S3_MAX_PARTS,
        )?;
        Ok(FilesConfig {
            s3: S3Config {
                endpoint_url,
                region: env
                    .optional("MINIO_REGION")
                    .unwrap_or_else(|| "us-east-1".into()),
                access_key: Secret::new(env.required_secret("MINIO_ACCESS_KEY")?),
                secret_key: Secret::new(env.required_secret("MINIO_SECRET_KEY")?),
                bucket: env.required("MINIO_BUCKET_NAME")?,
            },
            host_allowlist,
            allow_http,
            allow_private_addresses,
            allowed_ports: allowed_ports(env)?,
            max_bytes,
            part_size,
            max_attempts: env.number("FILE_JOB_MAX_ATTEMPTS", 8, 1..=1000)?,
            retry_base: env.millis("FILE_JOB_RETRY_BASE_MS", 2000, 10..=3_600_000)?,
            retry_max: env.seconds("FILE_JOB_RETRY_MAX_SECS", 600, 1..=24 * 3600)?,
            lease: env.seconds("FILE_JOB_LEASE_SECS", 120, 1..=24 * 3600)?,
            poll_interval: env.millis("FILE_JOB_POLL_MS", 2000, 50..=3_600_000)?,
            workers: env.number("FILE_WORKERS", 2, 0..=16)?,
            read_timeout: env.seconds("FILE_READ_TIMEOUT_SECS", 60, 1..=3600)?,
        })
    }
}

/// `443` unless configured; `any` lifts the rule (tests, whose CDN listens anywhere).
fn allowed_ports(env: &Env<'_>) -> Result<Option<Vec<u16>>, ConfigError> {
    let list = env
        .optional("FILE_ALLOWED_PORTS")
        .unwrap_or_else(|| "443".into());
    if list.trim().eq_ignore_ascii_case("any") {
        return Ok(None);
    }
    list.split(',')
        .map(|port| {
            port.trim().parse::<u16>().map_err(|_| {
                ConfigError::new(
                    "FILE_ALLOWED_PORTS",
                    format!("{port:?} is not a port (a list like 443,8443, or any)"),
                )
            })
        })
        .collect::<Result<Vec<u16>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, BASE};

    #[test]
    fn minio_secure_selects_https_and_http_file_urls_are_refused_in_production() {
        let mut vars = BASE.to_vec();
        vars.push(("MINIO_SECURE", "true"));
        assert_eq!(
            config(&vars).unwrap().files.s3.endpoint_url,
            "https://minio:9000"
        );
        assert_eq!(config(&vars).unwrap().files.allowed_ports, Some(vec![443]));
        vars.extend([("ENVIRONMENT", "production"), ("FILE_ALLOW_HTTP", "true")]);
        assert_eq!(config(&vars).unwrap_err().var, "FILE_ALLOW_HTTP");
        vars.pop();
        vars.push(("FILE_ALLOW_PRIVATE_ADDRESSES", "true"));
        assert_eq!(
            config(&vars).unwrap_err().var,
            "FILE_ALLOW_PRIVATE_ADDRESSES"
        );
    }

    #[test]
    fn the_s3_endpoint_is_host_port_or_an_http_url() {
        for (endpoint, taken) in [
            ("minio:9000", Some("http://minio:9000")),
            (
                "https://s3.example.internal",
                Some("https://s3.example.internal"),
            ),
            ("ftp://minio:21", None),
            ("not a host", None),
            ("http://", None),
        ] {
            let mut vars = BASE.to_vec();
            vars.retain(|(name, _)| *name != "MINIO_ENDPOINT");
            vars.push(("MINIO_ENDPOINT", endpoint));
            match (config(&vars), taken) {
                (Ok(cfg), Some(url)) => assert_eq!(cfg.files.s3.endpoint_url, url),
                (Err(err), None) => assert_eq!(err.var, "MINIO_ENDPOINT", "{endpoint}"),
                (other, _) => panic!("{endpoint}: {other:?}"),
            }
        }
    }
}
