//! Who sent this body? Signature schemes checked on the raw bytes, before anything is parsed.

pub mod fal_ed25519;
pub mod hmac;
pub mod jwks;

use std::time::Duration;

use http::HeaderMap;

use crate::secret::Secret;
use jwks::JwksCache;

/// How a FAL callback's signature was checked (the other senders: `senders`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FalScheme {
    FalEd25519,
    Hmac,
    Unsigned,
    /// Not a delivery: the reconciler fetched the result from FAL's queue API itself.
    Reconciler,
}

impl FalScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            FalScheme::FalEd25519 => "fal_ed25519",
            FalScheme::Hmac => "hmac",
            FalScheme::Unsigned => "unsigned",
            FalScheme::Reconciler => "reconciler",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            FalScheme::FalEd25519,
            FalScheme::Hmac,
            FalScheme::Unsigned,
            FalScheme::Reconciler,
        ]
        .into_iter()
        .find(|scheme| scheme.as_str() == s)
    }
}

/// How FAL's callbacks are verified (read from the environment by `config`).
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub fal_jwks_url: String,
    pub jwks_max_age: Duration,
    pub jwks_refetch_interval: Duration,
    pub hmac_secrets: Vec<Secret>,
    pub allow_unsigned: bool,
    pub timestamp_tolerance_secs: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("request is not signed: expected X-Fal-Webhook-Signature (with its X-Fal-Webhook-* headers) or X-Signature")]
    Unsigned,
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header {0} is malformed: {1}")]
    Malformed(&'static str, &'static str),
    #[error("{0} is more than 300 s away from the server's clock")]
    StaleTimestamp(&'static str),
    #[error("signature does not match the body")]
    Mismatch,
    #[error("X-Signature sent, but no shared secret is configured for HMAC signatures")]
    HmacNotConfigured,
    /// Not the sender's fault: answered 503 so FAL retries once the keys can be loaded.
    #[error("FAL's public keys are unavailable right now")]
    KeysUnavailable,
}

impl VerifyError {
    /// Metric label for `webhook_signature_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Unsigned => "unsigned",
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::Malformed(..) => "malformed",
            VerifyError::StaleTimestamp(_) => "stale_timestamp",
            VerifyError::Mismatch => "mismatch",
            VerifyError::HmacNotConfigured => "hmac_not_configured",
            VerifyError::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Is `timestamp` within `tolerance_secs` of `now`? Without overflow for any pair of values
/// (`(now - ts).abs()` wraps for a timestamp near `i64::MIN`).
pub fn within_window(now: i64, timestamp: i64, tolerance_secs: i64) -> bool {
    now.abs_diff(timestamp) <= tolerance_secs.unsigned_abs()
}

pub struct Verifier {
    hmac_secrets: Vec<Secret>,
    jwks: JwksCache,
    allow_unsigned: bool,
    tolerance_secs: i64,
}

impl Verifier {
    pub fn new(config: &VerifyConfig) -> Self {
        Self {
            hmac_secrets: config.hmac_secrets.clone(),
            jwks: JwksCache::new(
                config.fal_jwks_url.clone(),
                config.jwks_max_age,
                config.jwks_refetch_interval,
            ),
            allow_unsigned: config.allow_unsigned,
            tolerance_secs: config.timestamp_tolerance_secs,
        }
    }

    /// FAL's headers win when present; then `X-Signature`; unsigned only when configured.
    pub async fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<FalScheme, VerifyError> {
        if headers.contains_key(fal_ed25519::SIGNATURE) {
            self.verify_fal(headers, body).await?;
            return Ok(FalScheme::FalEd25519);
        }
        if let Some(value) = headers.get(hmac::HEADER) {
            let value = value
                .to_str()
                .map_err(|_| VerifyError::Malformed("X-Signature", "not ASCII"))?;
            hmac::verify(&self.hmac_secrets, body, value)?;
            return Ok(FalScheme::Hmac);
        }
        if self.allow_unsigned {
            return Ok(FalScheme::Unsigned);
        }
        Err(VerifyError::Unsigned)
    }

    async fn verify_fal(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
        let signed = fal_ed25519::SignatureHeaders::from_headers(headers)?;
        let now = chrono::Utc::now().timestamp();
        fal_ed25519::precheck(&signed, now, self.tolerance_secs)?;
        let keys = self.jwks.keys().await.map_err(|e| {
            tracing::error!(error = %e, "cannot verify FAL signature");
            VerifyError::KeysUnavailable
        })?;
        match fal_ed25519::verify(&keys, &signed, body, now, self.tolerance_secs) {
            Err(VerifyError::Mismatch) => match self.jwks.refresh_after_mismatch(&keys).await {
                Some(fresh) => fal_ed25519::verify(&fresh, &signed, body, now, self.tolerance_secs),
                None => Err(VerifyError::Mismatch),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::within_window;

    #[test]
    fn the_window_holds_at_the_extremes_of_i64() {
        let now = 1_790_000_000;
        assert!(within_window(now, now + 300, 300));
        assert!(!within_window(now, now + 301, 300));
        assert!(!within_window(now, now.wrapping_add(i64::MIN), 300));
        assert!(!within_window(now, i64::MIN, 300));
        assert!(!within_window(now, i64::MAX, 300));
        assert!(!within_window(i64::MIN, i64::MAX, 300));
    }
}
