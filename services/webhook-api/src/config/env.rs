//! Typed readers of environment variables: every missing or malformed one fails the same way,
//! naming the variable (never repeating a secret's value).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// A name → value lookup (the process environment, or a test's map).
pub(crate) struct Env<'a>(pub(crate) &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    pub(crate) fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// A secret from `NAME`, or from the file `NAME_FILE` names (a Docker secret, mounted at
    /// `/run/secrets/…`, so the value is in no service spec or environment); both set is an
    /// error, so the operator never wonders which one is used. The problem, if any, names the
    /// variable and never the value.
    pub(crate) fn secret(&self, name: &str) -> Result<Option<String>, String> {
        let file_var = format!("{name}_FILE");
        match (self.optional(name), self.optional(&file_var)) {
            (Some(_), Some(_)) => Err(format!("set either {name} or {file_var}, not both")),
            (Some(value), None) => Ok(Some(value)),
            (None, Some(path)) => std::fs::read_to_string(path.trim())
                // A secret file usually ends in a new line the value does not have.
                .map(|text| Some(text.trim().to_string()).filter(|t| !t.is_empty()))
                .map_err(|e| format!("{file_var}: cannot read {:?}: {e}", path.trim())),
            (None, None) => Ok(None),
        }
    }

    /// `secret` of a variable with a fixed name.
    pub(crate) fn secret_text(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        self.secret(name)
            .map_err(|problem| ConfigError::new(name, problem))
    }

    /// A secret that must be set, as `NAME` or `NAME_FILE`.
    pub(crate) fn required_secret(&self, name: &'static str) -> Result<String, ConfigError> {
        self.secret_text(name)?.ok_or_else(|| {
            ConfigError::new(
                name,
                format!("is required but not set (nor is {name}_FILE)"),
            )
        })
    }

    pub(crate) fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    pub(crate) fn parsed<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
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

    pub(crate) fn seconds(
        &self,
        name: &'static str,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        self.parsed(name, default).map(Duration::from_secs)
    }

    pub(crate) fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.flag_or(name, default)
            .map_err(|problem| ConfigError::new(name, problem))
    }

    /// A boolean of a variable whose name is built at run time (a source's): the problem, if
    /// any, for the caller to attach to the variable it reports.
    pub(crate) fn flag_or(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.optional(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            Some(v) => Err(format!(
                "{name}: invalid value {v:?}: expected true or false"
            )),
        }
    }
}
