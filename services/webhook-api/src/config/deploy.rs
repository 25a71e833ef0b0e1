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
}

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
        timeout: env.seconds("DEPLOY_TIMEOUT_SECS", 1800)?,
        poll_interval: Duration::from_millis(env.parsed("DEPLOY_POLL_MS", 5000)?),
    }))
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
        vars.push(("DEPLOY_REPOSITORY", "just-a-name"));
        vars.retain(|(n, v)| *n != "DEPLOY_REPOSITORY" || *v == "just-a-name");
        assert_eq!(config(&vars).unwrap_err().var, "DEPLOY_REPOSITORY");
    }
}
