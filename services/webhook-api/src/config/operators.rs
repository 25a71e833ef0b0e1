//! Who may use the operators' API: `OPERATOR_TOKENS` (or a file named by
//! `OPERATOR_TOKENS_FILE`), entries `name:scope+scope:token` separated by commas or new lines.
//! Without it every internal route answers 401: closed by default, opened by configuration.

use sha2::{Digest, Sha256};

use super::env::Env;
use super::ConfigError;

const VAR: &str = "OPERATOR_TOKENS";
/// A token shorter than this is guessable; `openssl rand -hex 32` gives 64 characters.
const MIN_TOKEN_CHARS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Metrics, health details, stored deliveries, the OpenAPI document.
    Read,
    /// Running a stored delivery again.
    Replay,
    /// Deploys: their list and output, and a replay that deploys again.
    Deploy,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Replay => "replay",
            Scope::Deploy => "deploy",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Scope::Read),
            "replay" => Some(Scope::Replay),
            "deploy" => Some(Scope::Deploy),
            _ => None,
        }
    }
}

/// One configured token: only its SHA-256 is kept, so a memory dump or a `Debug` print does
/// not give it away.
#[derive(Clone)]
pub struct OperatorToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorToken")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl OperatorToken {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

pub fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// How hard the operators' API may be pushed, per minute.
#[derive(Debug, Clone, Copy)]
pub struct OperatorLimits {
    /// Refused calls (401, 403) from one address before it is answered 429 for the rest of
    /// the minute, a valid token or not (`OPERATOR_REFUSALS_PER_MINUTE`).
    pub refusals_per_minute: u32,
    /// Replays one token may ask for (`REPLAYS_PER_MINUTE`).
    pub replays_per_minute: u32,
}

impl OperatorLimits {
    pub(crate) fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            refusals_per_minute: env.number("OPERATOR_REFUSALS_PER_MINUTE", 20, 1..=10_000)?,
            replays_per_minute: env.number("REPLAYS_PER_MINUTE", 60, 1..=100_000)?,
        })
    }
}

pub(crate) fn from_env(env: &Env<'_>) -> Result<Vec<OperatorToken>, ConfigError> {
    let Some(list) = env.secret_text(VAR)? else {
        return Ok(Vec::new());
    };
    let mut tokens: Vec<OperatorToken> = Vec::new();
    for (position, entry) in list
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let token = parse_entry(entry).map_err(|problem| {
            ConfigError::new(VAR, format!("entry {}: {problem}", position + 1))
        })?;
        if tokens.iter().any(|t| t.name == token.name) {
            return Err(ConfigError::new(
                VAR,
                format!("the name {:?} is used twice", token.name),
            ));
        }
        if let Some(twin) = tokens.iter().find(|t| t.sha256 == token.sha256) {
            return Err(ConfigError::new(
                VAR,
                format!("{} and {} have the same token", twin.name, token.name),
            ));
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// `name:scopes:token`; a problem never repeats the token.
fn parse_entry(entry: &str) -> Result<OperatorToken, String> {
    let mut fields = entry.splitn(3, ':');
    let (Some(name), Some(scopes), Some(token)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("expected name:scope+scope:token".into());
    };
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("the name must be 1-64 of a-z, 0-9, - and _".into());
    }
    let scopes = scopes
        .split('+')
        .map(|s| {
            Scope::parse(s.trim())
                .ok_or_else(|| format!("{name}: unknown scope {s:?} (read, replay, deploy)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if token.len() < MIN_TOKEN_CHARS || token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(format!(
            "{name}: the token must be at least {MIN_TOKEN_CHARS} printable characters"
        ));
    }
    Ok(OperatorToken {
        name: name.to_string(),
        scopes,
        sha256: token_digest(token.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, BASE};
    use super::*;

    const LONG: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn no_tokens_means_an_empty_list() {
        assert!(config(&BASE).unwrap().operator_tokens.is_empty());
    }

    #[test]
    fn entries_carry_a_name_scopes_and_only_the_tokens_digest() {
        let mut vars = BASE.to_vec();
        let list = format!("prometheus:read:{LONG}, oncall:read+replay+deploy:x{LONG}");
        vars.push(("OPERATOR_TOKENS", &list));
        let tokens = config(&vars).unwrap().operator_tokens;
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].name, "prometheus");
        assert_eq!(tokens[0].scopes, [Scope::Read]);
        assert!(tokens[1].allows(Scope::Deploy));
        assert_eq!(tokens[0].sha256, token_digest(LONG.as_bytes()));
        assert!(!format!("{tokens:?}").contains(LONG));
    }

    #[test]
    fn bad_entries_are_named_without_the_token() {
        for list in [
            "prometheus:read:short".to_string(),
            format!("prometheus:admin:{LONG}"),
            format!("pro metheus:read:{LONG}"),
            format!("a:read:{LONG},a:replay:x{LONG}"),
            format!("a:read:{LONG},b:replay:{LONG}"),
            LONG.to_string(),
        ] {
            let mut vars = BASE.to_vec();
            vars.push(("OPERATOR_TOKENS", &list));
            let err = config(&vars).unwrap_err();
            assert_eq!(err.var, "OPERATOR_TOKENS", "{list}");
            assert!(!err.to_string().contains(LONG), "{err}");
        }
    }

    #[test]
    fn tokens_can_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("prometheus:read:{LONG}\n\n")).unwrap();
        let path = path.display().to_string();
        let mut vars = BASE.to_vec();
        vars.push(("OPERATOR_TOKENS_FILE", &path));
        assert_eq!(config(&vars).unwrap().operator_tokens.len(), 1);
        vars.push(("OPERATOR_TOKENS", "x"));
        assert_eq!(config(&vars).unwrap_err().var, "OPERATOR_TOKENS");
    }
}
