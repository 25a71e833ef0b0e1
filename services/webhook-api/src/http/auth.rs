//! Bearer tokens for everything internal: the operators' API, `/metrics`, the health details.
//! A presented token is hashed and compared with every configured digest in constant time.

use http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{token_digest, OperatorToken, Scope};

/// The configured token the request presents, if any (and not whether it has a scope).
pub fn presented<'a>(
    tokens: &'a [OperatorToken],
    headers: &http::HeaderMap,
) -> Option<&'a OperatorToken> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (kind, token) = value.trim().split_once(' ')?;
    if !kind.eq_ignore_ascii_case("bearer") {
        return None;
    }
    matching(tokens, token.trim())
}

/// The configured token `token` is, if any (the console's sign-in form).
pub fn matching<'a>(tokens: &'a [OperatorToken], token: &str) -> Option<&'a OperatorToken> {
    let digest = token_digest(token.as_bytes());
    // Every digest is compared, so the time taken does not tell which one matched.
    tokens.iter().fold(None, |found, candidate| {
        let matches: bool = candidate.sha256.ct_eq(&digest).into();
        if matches {
            Some(candidate)
        } else {
            found
        }
    })
}

/// The token of a request that may do what `scope` allows: 401 without a valid token, 403
/// with one that lacks the scope.
pub fn require<'a>(
    tokens: &'a [OperatorToken],
    headers: &http::HeaderMap,
    scope: Scope,
) -> Result<&'a OperatorToken, ApiError> {
    let token = presented(tokens, headers).ok_or(ApiError::Unauthorized)?;
    if token.allows(scope) {
        Ok(token)
    } else {
        Err(ApiError::Forbidden {
            token: token.name.clone(),
            scope: scope.as_str(),
        })
    }
}
