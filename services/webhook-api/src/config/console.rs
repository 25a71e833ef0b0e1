//! `CONSOLE_*`: the operators' console in the browser (`http::console`).

use std::time::Duration;

use super::env::Env;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// How long a sign-in lasts (`CONSOLE_SESSION_SECS`, 8 h).
    pub session: Duration,
    /// The longest one search may take before the page asks to narrow it
    /// (`CONSOLE_QUERY_TIMEOUT_MS`, 2 000).
    pub query_timeout: Duration,
    /// Deliveries a page (`CONSOLE_PAGE_SIZE`, 50).
    pub page_size: i64,
    /// Deliveries a bulk replay replays a second, per instance working on it
    /// (`CONSOLE_BULK_REPLAYS_PER_SEC`, 20): a source's stream is not flooded.
    pub bulk_replays_per_sec: u32,
    /// The most deliveries one bulk replay may cover (`CONSOLE_BULK_REPLAY_MAX`, 10 000).
    pub bulk_replay_max: i32,
    /// The address operators type in the browser when a proxy in front of nginx changes the
    /// `Host` it passes on (`CONSOLE_PUBLIC_ORIGIN`, `https://ops.example.com`): forms sent
    /// from it are this console's own. Unset: the browser's `Host` is the console's origin.
    pub public_origin: Option<String>,
    /// Live tails one session may hold open at once (`CONSOLE_LIVE_TAILS_PER_SESSION`, 4).
    pub live_tails_per_session: usize,
    /// Live tails this instance serves at once, every session (`CONSOLE_LIVE_TAILS`, 64).
    pub live_tails: usize,
}

impl ConsoleConfig {
    pub(super) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            session: env.seconds("CONSOLE_SESSION_SECS", 8 * 3600, 60..=7 * 24 * 3600)?,
            query_timeout: env.millis("CONSOLE_QUERY_TIMEOUT_MS", 2000, 100..=60_000)?,
            page_size: env.number("CONSOLE_PAGE_SIZE", 50, 10..=500)?,
            bulk_replays_per_sec: env.number("CONSOLE_BULK_REPLAYS_PER_SEC", 20, 1..=1000)?,
            bulk_replay_max: env.number("CONSOLE_BULK_REPLAY_MAX", 10_000, 1..=1_000_000)?,
            public_origin: public_origin(env)?,
            live_tails_per_session: env.number("CONSOLE_LIVE_TAILS_PER_SESSION", 4, 1..=100)?,
            live_tails: env.number("CONSOLE_LIVE_TAILS", 64, 1..=10_000)?,
        })
    }
}

/// `scheme://host[:port]` exactly as a browser writes it in `Origin`: no path, no trailing `/`.
fn public_origin(env: &Env<'_>) -> Result<Option<String>, ConfigError> {
    const VAR: &str = "CONSOLE_PUBLIC_ORIGIN";
    let Some(raw) = env.optional(VAR) else {
        return Ok(None);
    };
    let expected = || {
        ConfigError::new(
            VAR,
            format!("invalid value {raw:?}: expected an origin such as https://ops.example.com (scheme, host and port only)"),
        )
    };
    let url = url::Url::parse(raw.trim()).map_err(|_| expected())?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() || !bare {
        return Err(expected());
    }
    Ok(Some(url.origin().ascii_serialization()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(value: &str) -> Result<Option<String>, ConfigError> {
        let lookup = |name: &str| (name == "CONSOLE_PUBLIC_ORIGIN").then(|| value.to_string());
        public_origin(&Env::new(&lookup))
    }

    #[test]
    fn the_public_origin_is_a_bare_origin_as_browsers_write_it() {
        assert_eq!(
            origin("https://Ops.Example.com:9444/").unwrap().as_deref(),
            Some("https://ops.example.com:9444")
        );
        assert_eq!(
            origin("https://ops.example.com:443").unwrap().as_deref(),
            Some("https://ops.example.com")
        );
        for bad in [
            "ops.example.com",
            "https://ops.example.com/console/",
            "ftp://x",
            "https://x/?a=1",
        ] {
            let e = origin(bad).unwrap_err();
            assert_eq!(e.var, "CONSOLE_PUBLIC_ORIGIN", "{bad}");
        }
    }
}
