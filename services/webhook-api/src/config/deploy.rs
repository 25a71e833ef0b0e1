//! Deploy on a verified push.

use std::time::Duration;

use super::env::Env;
use super::ConfigError;

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
    /// The only variables of the instance the command sees (`DEPLOY_ENV_PASS`): it must not
    /// inherit the instance's secrets.
    pub env_pass: Vec<String>,
}

/// Enough for a shell script that talks to the Docker engine.
const DEFAULT_ENV_PASS: &str =
    "PATH,HOME,LANG,LC_ALL,TZ,DOCKER_HOST,DOCKER_CONFIG,DOCKER_CERT_PATH,DOCKER_TLS_VERIFY";

/// `None` unless `DEPLOY_REPOSITORY` is set.
pub(crate) fn from_env(env: &Env<'_>) -> Result<Option<DeployConfig>, ConfigError> {
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
        timeout: env.seconds("DEPLOY_TIMEOUT_SECS", 1800, 1..=24 * 3600)?,
        poll_interval: env.millis("DEPLOY_POLL_MS", 5000, 50..=3_600_000)?,
        env_pass: env_pass(env)?,
    }))
}

fn env_pass(env: &Env<'_>) -> Result<Vec<String>, ConfigError> {
    let list = env
        .optional("DEPLOY_ENV_PASS")
        .unwrap_or_else(|| DEFAULT_ENV_PASS.into());
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if plain {
                Ok(name.to_string())
            } else {
                Err(ConfigError::new(
                    "DEPLOY_ENV_PASS",
                    format!("{name:?} is not a variable name"),
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{config, BASE};

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
        assert!(deploy.env_pass.iter().any(|v| v == "PATH"));
        assert!(!deploy.env_pass.iter().any(|v| v == "DATABASE_URL"));
        vars.push(("DEPLOY_REPOSITORY", "just-a-name"));
        vars.retain(|(n, v)| *n != "DEPLOY_REPOSITORY" || *v == "just-a-name");
        assert_eq!(config(&vars).unwrap_err().var, "DEPLOY_REPOSITORY");
    }
}
