//! GitHub's redelivery, used (`GITHUB_*`, and per source `WEBHOOK_SOURCE_<NAME>_REDELIVER_*`):
//! GitHub never sends a failed delivery again by itself, but its REST API lists a hook's recent
//! deliveries and redelivers one on request.

use std::time::Duration;

use super::env::Env;
use super::{ConfigError, Environment, Secret};

pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// One `github` source's hook, and a token that may read and redeliver its deliveries.
#[derive(Debug, Clone)]
pub struct GithubRedeliver {
    /// `repos/{owner}/{repo}/hooks/{id}` or `orgs/{org}/hooks/{id}`, as GitHub's API names it.
    pub hook: String,
    pub token: Secret,
}

/// How the lease holder asks GitHub (every source with a `GithubRedeliver`).
#[derive(Debug, Clone)]
pub struct GithubApiConfig {
    pub api_url: String,
    pub interval: Duration,
    /// How far back a run looks (GitHub redelivers only deliveries of the last 3 days).
    pub lookback: Duration,
    /// At most this many redeliveries asked for per run and source.
    pub max_per_run: usize,
    /// A delivery GitHub has already tried this often (first try and redeliveries) is left.
    pub max_attempts: usize,
    pub request_timeout: Duration,
}

impl GithubApiConfig {
    pub(super) fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, ConfigError> {
        const URL: &str = "GITHUB_API_URL";
        let parsed = env.url(URL, DEFAULT_GITHUB_API_URL, &["https", "http"])?;
        // The token travels with every request: never in clear in production.
        if parsed.scheme() != "https" && environment == Environment::Production {
            return Err(ConfigError::new(URL, "must be an https:// URL"));
        }
        let api_url = parsed.as_str().trim_end_matches('/').to_string();
        // GitHub redelivers only the last 3 days.
        let lookback = env.seconds(
            "GITHUB_REDELIVER_LOOKBACK_SECS",
            24 * 3600,
            60..=3 * 24 * 3600,
        )?;
        Ok(Self {
            api_url,
            interval: env.millis("GITHUB_REDELIVER_INTERVAL_MS", 300_000, 1000..=86_400_000)?,
            lookback,
            max_per_run: env.number("GITHUB_REDELIVER_MAX_PER_RUN", 20, 1..=1000)?,
            max_attempts: env.number("GITHUB_REDELIVER_MAX_ATTEMPTS", 5, 1..=100)?,
            request_timeout: env.seconds("GITHUB_API_TIMEOUT_SECS", 10, 1..=300)?,
        })
    }
}

/// `{prefix}_REDELIVER_HOOK` with `{prefix}_REDELIVER_TOKEN` (or `…_TOKEN_FILE`): both or
/// neither. The problem, if any, names the variable and never repeats the token.
pub(super) fn redeliver_from_env(
    env: &Env<'_>,
    prefix: &str,
    is_github: bool,
) -> Result<Option<GithubRedeliver>, String> {
    let hook_var = format!("{prefix}_REDELIVER_HOOK");
    let token_var = format!("{prefix}_REDELIVER_TOKEN");
    let token = env.secret(&token_var)?;
    let hook = env.optional(&hook_var);
    let (hook, token) = match (hook, token) {
        (None, None) => return Ok(None),
        (Some(hook), Some(token)) if !token.is_empty() => (hook.trim().to_string(), token),
        _ => return Err(format!("set both {hook_var} and {token_var}, or neither")),
    };
    if !is_github {
        return Err(format!(
            "{hook_var}: only a github source has GitHub's redelivery"
        ));
    }
    if !valid_hook(&hook) {
        return Err(format!(
            "{hook_var}: expected repos/<owner>/<repo>/hooks/<id> or orgs/<org>/hooks/<id>, \
             got {hook:?}"
        ));
    }
    Ok(Some(GithubRedeliver {
        hook,
        token: Secret::new(token),
    }))
}

fn valid_hook(hook: &str) -> bool {
    let name = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    let id = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match hook.split('/').collect::<Vec<_>>().as_slice() {
        ["repos", owner, repo, "hooks", hook_id] => name(owner) && name(repo) && id(hook_id),
        ["orgs", org, "hooks", hook_id] => name(org) && id(hook_id),
        _ => false,
    }
}
