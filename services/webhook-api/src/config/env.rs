//! Typed readers of environment variables: every missing or malformed one fails the same way,
//! naming the variable (never repeating a secret's value).

use std::cell::RefCell;
use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// A setting with bounds, as read: what `Config::settings` lists (the property test walks it,
/// so a new number or URL is tested the day it is read).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub name: &'static str,
    pub bounds: Bounds,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Bounds {
    /// A number from `min` to `max` (in the variable's unit).
    Number { min: String, max: String },
    /// A URL of one of these schemes.
    Url { schemes: &'static [&'static str] },
}

/// A name → value lookup (the process environment, or a test's map), noting every bounded
/// setting it is asked for.
pub(crate) struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    read: RefCell<Vec<Setting>>,
}

impl<'a> Env<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            lookup,
            read: RefCell::default(),
        }
    }

    /// The bounded settings read so far.
    pub(crate) fn settings(self) -> Vec<Setting> {
        self.read.into_inner()
    }

    pub(crate) fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    fn note(&self, name: &'static str, bounds: Bounds) {
        let mut read = self.read.borrow_mut();
        if !read.iter().any(|s| s.name == name) {
            read.push(Setting { name, bounds });
        }
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

    /// A number from the range, `default` when unset; anything else (a negative, a fraction
    /// where a count is meant, garbage, a value outside the range) is refused, naming the range.
    pub(crate) fn number<T>(
        &self,
        name: &'static str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.bounded(name, default, range, "")
    }

    /// Whole seconds from the range.
    pub(crate) fn seconds(
        &self,
        name: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.bounded(name, default, range, " seconds")
            .map(Duration::from_secs)
    }

    /// Whole milliseconds from the range.
    pub(crate) fn millis(
        &self,
        name: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.bounded(name, default, range, " ms")
            .map(Duration::from_millis)
    }

    fn bounded<T>(
        &self,
        name: &'static str,
        default: T,
        range: RangeInclusive<T>,
        unit: &str,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let (min, max) = (*range.start(), *range.end());
        self.note(
            name,
            Bounds::Number {
                min: min.to_string(),
                max: max.to_string(),
            },
        );
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        let expected = || format!("invalid value {raw:?}: expected {min} to {max}{unit}");
        match raw.trim().parse::<T>() {
            // NaN is contained by no range, so it is refused here too.
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(ConfigError::new(name, expected())),
        }
    }

    /// A URL of one of `schemes` (with a host, but for `file://`), `default` when unset; the text is returned
    /// without a trailing `/`.
    pub(crate) fn url(
        &self,
        name: &'static str,
        default: &str,
        schemes: &'static [&'static str],
    ) -> Result<url::Url, ConfigError> {
        self.note(name, Bounds::Url { schemes });
        let raw = self.optional(name).unwrap_or_else(|| default.to_string());
        let expected = || {
            let schemes: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            format!(
                "invalid URL {raw:?}: expected a URL of {}",
                schemes.join(", ")
            )
        };
        let url = url::Url::parse(raw.trim()).map_err(|_| ConfigError::new(name, expected()))?;
        // Every scheme but file:// names a host to reach.
        let no_host = url.scheme() != "file" && url.host_str().is_none_or(str::is_empty);
        if !schemes.contains(&url.scheme()) || no_host {
            return Err(ConfigError::new(name, expected()));
        }
        Ok(url)
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
