//! Standard Webhooks (<https://www.standardwebhooks.com/>): `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64>` (HMAC-SHA256 with the base64-decoded `whsec_` key) and/or
//! `v1a,<base64>` (ED25519, checked with the sender's `whpk_` public key), both over
//! `{id}.{timestamp}.{body}`. Its senders retry a 5xx with back-off, keeping the id.

use base64::Engine;
use hmac::Mac;
use http::HeaderMap;

use super::{Envelope, Key, Sender, SourceKeys};
use crate::secret::Secret;
use crate::verify::{hmac::mac_for, within_window, VerifyError};

/// Standard Webhooks' window around the server's clock.
pub const STANDARD_TOLERANCE_SECS: i64 = 300;

const ID: &str = "webhook-id";
const TIMESTAMP: &str = "webhook-timestamp";
const SIGNATURE: &str = "webhook-signature";

#[derive(Debug)]
pub struct Standard;

impl Sender for Standard {
    fn name(&self) -> &'static str {
        "standard"
    }

    fn verify(
        &self,
        keys: &SourceKeys,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<Envelope, VerifyError> {
        let header = |name: &'static str| {
            headers
                .get(name)
                .ok_or(VerifyError::MissingHeader(name))?
                .to_str()
                .map(str::trim)
                .map_err(|_| VerifyError::Malformed(name, "not ASCII"))
        };
        if keys.unsigned && !headers.contains_key(SIGNATURE) {
            return Ok(Envelope {
                delivery_id: header(ID).ok().map(str::to_owned),
                event_type: None,
                signed: false,
            });
        }
        let id = header(ID)?;
        if id.is_empty() || id.len() > 200 {
            return Err(VerifyError::Malformed(ID, "empty or too long"));
        }
        let timestamp: i64 = header(TIMESTAMP)?
            .parse()
            .map_err(|_| VerifyError::Malformed(TIMESTAMP, "not whole seconds"))?;
        if !within_window(now, timestamp, STANDARD_TOLERANCE_SECS) {
            return Err(VerifyError::StaleTimestamp(TIMESTAMP));
        }
        // `v1,<base64 HMAC>` and `v1a,<base64 ED25519>` entries, each checked against the keys
        // of its own version; entries of other versions are skipped.
        let mut symmetric = Vec::new();
        let mut asymmetric = Vec::new();
        for entry in header(SIGNATURE)?.split(' ') {
            let decode = |b64: &str| base64::engine::general_purpose::STANDARD.decode(b64).ok();
            if let Some(mac) = entry.strip_prefix("v1,").and_then(decode) {
                symmetric.push(mac);
            } else if let Some(signature) = entry.strip_prefix("v1a,").and_then(decode) {
                if let Ok(bytes) = <[u8; 64]>::try_from(signature.as_slice()) {
                    asymmetric.push(ed25519_dalek::Signature::from_bytes(&bytes));
                }
            }
        }
        if symmetric.is_empty() && asymmetric.is_empty() {
            return Err(VerifyError::Malformed(
                SIGNATURE,
                "no v1,<base64> or v1a,<base64> signature",
            ));
        }
        let by_secret = keys.secrets.iter().any(|secret| {
            let mac = standard_mac(secret, id, timestamp, body);
            symmetric
                .iter()
                .any(|signature| mac.clone().verify_slice(signature).is_ok())
        });
        let by_public_key = !asymmetric.is_empty() && {
            let content = signed_content(id, timestamp, body);
            keys.public_keys.iter().any(|key| {
                asymmetric
                    .iter()
                    .any(|signature| key.verify_strict(&content, signature).is_ok())
            })
        };
        if by_secret || by_public_key {
            Ok(Envelope {
                delivery_id: Some(id.to_owned()),
                event_type: None,
                signed: true,
            })
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &[SIGNATURE]
    }

    fn naming_headers(&self) -> &'static [&'static str] {
        &[ID, TIMESTAMP]
    }

    fn resends_after_5xx(&self) -> bool {
        true
    }

    /// `whsec_<base64>` (the HMAC key of `v1`) or `whpk_<base64>` (the ED25519 public key of
    /// `v1a`); never the sender's private `whsk_` key.
    fn key(&self, entry: &str) -> Result<Key, &'static str> {
        let decode = |encoded: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        };
        if entry.starts_with("whsk_") {
            return Err("whsk_ is the sender's private key: give its public key (whpk_…) instead");
        }
        if let Some(encoded) = entry.strip_prefix("whpk_") {
            let bytes: [u8; 32] = decode(encoded)
                .and_then(|b| b.try_into().ok())
                .ok_or("a whpk_ key is whpk_ followed by the base64 of 32 bytes")?;
            return ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(Key::Public)
                .map_err(|_| "a whpk_ key is not a valid ED25519 public key");
        }
        let encoded = entry.strip_prefix("whsec_").unwrap_or(entry);
        decode(encoded)
            .filter(|k| !k.is_empty())
            .map(|key| Key::Shared(Secret::from_bytes(key)))
            .ok_or("a standard secret is whsec_ (or whpk_) followed by base64")
    }
}

/// What both versions sign: `{id}.{timestamp}.{body}`.
fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

fn standard_mac(key: &Secret, id: &str, timestamp: i64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = mac_for(key);
    mac.update(&signed_content(id, timestamp, body));
    mac
}

/// The `webhook-signature` value a Standard Webhooks sender puts on a message (tests, tools).
pub fn sign_standard(key: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = standard_mac(key, id, timestamp, body)
        .finalize()
        .into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The `webhook-signature` entry of an asymmetric (`v1a`) sender (tests, tools).
pub fn sign_standard_v1a(
    key: &ed25519_dalek::SigningKey,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    use ed25519_dalek::Signer;
    let signature = key.sign(&signed_content(id, timestamp, body));
    format!(
        "v1a,{}",
        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
    )
}
