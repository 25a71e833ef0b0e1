//! The other signed senders: `WEBHOOK_SOURCES` and each source's secrets.

use super::env::Env;
use super::github::{self, GithubRedeliver};
use super::{ConfigError, Environment};
use crate::senders::{self, Key, Sender, SourceKeys};

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    /// How this sender signs, encodes, names and retries its deliveries.
    pub scheme: &'static dyn Sender,
    pub keys: SourceKeys,
    /// Keep deliveries on disk while PostgreSQL is away (`WEBHOOK_SOURCE_<NAME>_SPOOL`): on by
    /// default for the senders that never retry a failed delivery.
    pub spool: bool,
    /// `github` only: ask GitHub's API to redeliver what did not reach us.
    pub redeliver: Option<GithubRedeliver>,
}

/// Path segments of `/api/v1/webhooks/…` that belong to the operator API, never a source.
pub const RESERVED_SOURCE_NAMES: [&str; 5] = ["fal", "metrics", "health", "failures", "events"];

/// `WEBHOOK_SOURCES=github:github,jobs:hmac,…` (name:scheme), each with its secrets in
/// `WEBHOOK_SOURCE_<NAME>_SECRETS` (comma-separated, for rotation) or, outside production only,
/// `WEBHOOK_SOURCE_<NAME>_UNSIGNED=true`.
pub(crate) fn from_env(
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
        let scheme = senders::by_name(scheme).ok_or_else(|| {
            let known: Vec<&str> = senders::ALL.iter().map(|s| s.name()).collect();
            problem(format!(
                "unknown scheme {scheme:?} (expected one of {})",
                known.join(", ")
            ))
        })?;
        let prefix = format!(
            "WEBHOOK_SOURCE_{}",
            name.to_ascii_uppercase().replace('-', "_")
        );
        let unsigned_var = format!("{prefix}_UNSIGNED");
        let unsigned = env.flag_or(&unsigned_var, false).map_err(problem)?;
        if unsigned && environment == Environment::Production {
            return Err(problem(format!(
                "{unsigned_var} must not be true when ENVIRONMENT=production"
            )));
        }
        let spool_var = format!("{prefix}_SPOOL");
        let spool = env
            .flag_or(&spool_var, !scheme.resends_after_5xx())
            .map_err(problem)?;
        let redeliver = github::redeliver_from_env(env, &prefix, scheme.redelivers_on_request())
            .map_err(problem)?;
        let secrets_var = format!("{prefix}_SECRETS");
        let mut keys = keys_from_env(env, scheme, &secrets_var).map_err(problem)?;
        keys.unsigned = unsigned;
        if keys.is_empty() && !unsigned {
            return Err(problem(format!(
                "source {name:?} has no secret: set {secrets_var}"
            )));
        }
        sources.push(SourceConfig {
            name: name.to_string(),
            scheme,
            keys,
            spool,
            redeliver,
        });
    }
    Ok(sources)
}

/// A source's keys (`{prefix}_SECRETS`, comma-separated for rotation), each read as its sender
/// gives them.
fn keys_from_env(
    env: &Env<'_>,
    scheme: &dyn Sender,
    secrets_var: &str,
) -> Result<SourceKeys, String> {
    let mut keys = SourceKeys::default();
    for entry in env
        .secret(secrets_var)?
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match scheme.key(entry) {
            Ok(Key::Shared(secret)) => keys.secrets.push(secret),
            Ok(Key::Public(key)) => keys.public_keys.push(key),
            Err(why) => return Err(format!("{secrets_var}: {why}")),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, BASE};

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
        assert_eq!(cfg.sources[0].keys.secrets.len(), 2);
        assert_eq!(cfg.sources[2].keys.secrets[0].expose_bytes(), b"secret");
        assert!(!format!("{cfg:?}").contains("gh-old"));
        // GitHub never resends after a 5xx, so it spools; Standard Webhooks senders retry.
        let spools: Vec<_> = cfg.sources.iter().map(|s| s.spool).collect();
        assert_eq!(spools, [true, false, false]);
        assert_eq!(cfg.spool.dir.to_str(), Some("/var/lib/webhook-api/spool"));
        assert_eq!(cfg.spool.max_bytes, 256 * 1024 * 1024);
        let mut overridden = vars.clone();
        overridden.extend([
            ("WEBHOOK_SOURCE_GITHUB_SPOOL", "false"),
            ("WEBHOOK_SOURCE_CI_JOBS_SPOOL", "true"),
            ("SPOOL_DIR", "/data/spool"),
            ("SPOOL_MAX_BYTES", "1048576"),
        ]);
        let cfg = config(&overridden).unwrap();
        let spools: Vec<_> = cfg.sources.iter().map(|s| s.spool).collect();
        assert_eq!(spools, [false, true, false]);
        assert_eq!(cfg.spool.dir.to_str(), Some("/data/spool"));
        assert_eq!(cfg.spool.max_bytes, 1 << 20);
        let mut redelivered = vars.clone();
        redelivered.extend([
            ("WEBHOOK_SOURCE_GITHUB_REDELIVER_HOOK", "orgs/team/hooks/42"),
            ("WEBHOOK_SOURCE_GITHUB_REDELIVER_TOKEN", "ghp_secret_token"),
        ]);
        let cfg = config(&redelivered).unwrap();
        let hook = cfg.sources[0].redeliver.as_ref().unwrap();
        assert_eq!(hook.hook, "orgs/team/hooks/42");
        assert_eq!(hook.token.expose(), "ghp_secret_token");
        assert!(!format!("{cfg:?}").contains("ghp_secret_token"));
        assert_eq!(cfg.github.api_url, "https://api.github.com");
        redelivered.extend([
            ("ENVIRONMENT", "production"),
            ("GITHUB_API_URL", "http://github.internal"),
        ]);
        assert_eq!(config(&redelivered).unwrap_err().var, "GITHUB_API_URL");
        let mut empty = vars.clone();
        empty.push(("SPOOL_MAX_BYTES", "0"));
        assert_eq!(config(&empty).unwrap_err().var, "SPOOL_MAX_BYTES");

        // Standard Webhooks: whsec_ (v1) and whpk_ (v1a) keys in one list.
        use base64::Engine;
        let public = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let whpk = format!(
            "whpk_{}",
            base64::engine::general_purpose::STANDARD.encode(public.to_bytes())
        );
        let both = format!("whsec_c2VjcmV0,{whpk}");
        let mut with_public = vars.clone();
        with_public.retain(|(n, _)| *n != "WEBHOOK_SOURCE_BILLING_SECRETS");
        with_public.push(("WEBHOOK_SOURCE_BILLING_SECRETS", &both));
        let billing = &config(&with_public).unwrap().sources[2];
        assert_eq!(billing.keys.secrets.len(), 1);
        assert_eq!(billing.keys.public_keys, [public]);

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
        // GitHub's redelivery: a hook GitHub's API can name, with its token, on github only.
        refused(
            &[("WEBHOOK_SOURCE_GITHUB_REDELIVER_HOOK", "repos/team/bot/hooks/7")],
            "set both WEBHOOK_SOURCE_GITHUB_REDELIVER_HOOK and WEBHOOK_SOURCE_GITHUB_REDELIVER_TOKEN",
        );
        refused(
            &[
                (
                    "WEBHOOK_SOURCE_GITHUB_REDELIVER_HOOK",
                    "https://github.com/team/bot",
                ),
                ("WEBHOOK_SOURCE_GITHUB_REDELIVER_TOKEN", "ghp_secret_token"),
            ],
            "expected repos/<owner>/<repo>/hooks/<id>",
        );
        refused(
            &[
                (
                    "WEBHOOK_SOURCE_CI_JOBS_REDELIVER_HOOK",
                    "repos/team/bot/hooks/7",
                ),
                ("WEBHOOK_SOURCE_CI_JOBS_REDELIVER_TOKEN", "ghp_secret_token"),
            ],
            "only a github source",
        );
        refused(
            &[("WEBHOOK_SOURCE_GITHUB_SPOOL", "sometimes")],
            "WEBHOOK_SOURCE_GITHUB_SPOOL",
        );
        refused(&[("WEBHOOK_SOURCES", "metrics:hmac")], "reserved");
        refused(&[("WEBHOOK_SOURCES", "Git Hub:github")], "must be 1-40");
        refused(&[("WEBHOOK_SOURCES", "github")], "not name:scheme");
        refused(
            &[("WEBHOOK_SOURCES", "plane:plane")],
            "WEBHOOK_SOURCE_PLANE_SECRETS",
        );
        refused(
            &[("WEBHOOK_SOURCE_BILLING_SECRETS", "whsec_%%%")],
            "followed by base64",
        );
        refused(
            &[("WEBHOOK_SOURCE_BILLING_SECRETS", "whsk_c2VjcmV0")],
            "give its public key",
        );
        refused(
            &[("WEBHOOK_SOURCE_BILLING_SECRETS", "whpk_c2VjcmV0")],
            "32 bytes",
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
}
