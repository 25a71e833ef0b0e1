//! `LOG_LEVEL`, `LOG_FORMAT` and `LOG_REFUSALS_PER_SEC`.

use super::env::Env;
use super::{ConfigError, Environment};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
    /// Refused webhook requests logged a second at most (`telemetry::RefusalLog`).
    pub refusals_per_sec: u32,
}

impl LogConfig {
    pub(super) fn from_env(env: &Env<'_>, environment: Environment) -> Result<Self, ConfigError> {
        let raw = env.optional("LOG_LEVEL").unwrap_or_else(|| "info".into());
        let filter = log_filter(&raw).map_err(|problem| ConfigError::new("LOG_LEVEL", problem))?;
        tracing_subscriber::EnvFilter::try_new(&filter)
            .map_err(|e| ConfigError::new("LOG_LEVEL", format!("not a level or filter ({e})")))?;
        let format = match env.optional("LOG_FORMAT").as_deref() {
            None if environment == Environment::Production => LogFormat::Json,
            None => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(_) => return Err(ConfigError::new("LOG_FORMAT", "expected json or text")),
        };
        Ok(Self {
            filter,
            format,
            refusals_per_sec: env.number("LOG_REFUSALS_PER_SEC", 100, 1..=100_000)?,
        })
    }
}

/// `LOG_LEVEL` as the bot's `prod.env` writes it (Python's `INFO`, `WARNING`, `CRITICAL`, any
/// case) or a tracing filter (`info,webhook_api=debug`). A bare word that is not a level is
/// refused: tracing would take it for a target and log nothing at all.
fn log_filter(raw: &str) -> Result<String, String> {
    let level = |word: &str| -> Result<&'static str, String> {
        Ok(match word.trim().to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "info" => "info",
            "warn" | "warning" => "warn",
            "error" | "critical" | "fatal" => "error",
            "off" => "off",
            other => {
                return Err(format!(
                    "unknown level {other:?}: expected trace, debug, info, warning, error, \
                     critical or off, or a filter such as info,webhook_api=debug"
                ))
            }
        })
    };
    raw.split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty())
        .map(|directive| match directive.split_once('=') {
            Some((target, word)) => Ok(format!("{}={}", target.trim(), level(word)?)),
            None => level(directive).map(str::to_owned),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|directives| directives.join(","))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, BASE};
    use super::LogFormat;

    #[test]
    fn log_levels_are_read_as_the_bots_prod_env_writes_them() {
        for (given, filter) in [
            ("INFO", "info"),
            ("WARNING", "warn"),
            ("critical", "error"),
            ("info,webhook_api=DEBUG", "info,webhook_api=debug"),
        ] {
            let mut vars = BASE.to_vec();
            vars.push(("LOG_LEVEL", given));
            assert_eq!(config(&vars).unwrap().log.filter, filter, "{given}");
        }
        for wrong in ["verbose", "warnings", "info,webhook_api=loud"] {
            let mut vars = BASE.to_vec();
            vars.push(("LOG_LEVEL", wrong));
            let err = config(&vars).unwrap_err();
            assert_eq!(err.var, "LOG_LEVEL", "{wrong}");
            assert!(err.to_string().contains("unknown level"), "{err}");
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
