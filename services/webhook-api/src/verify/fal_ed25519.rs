//! FAL's webhook signatures: ED25519 over
//! `request_id \n user_id \n timestamp \n hex(sha256(body))`, checked against FAL's JWKS.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, Engine};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::VerifyError;

pub const REQUEST_ID: &str = "x-fal-webhook-request-id";
pub const USER_ID: &str = "x-fal-webhook-user-id";
pub const TIMESTAMP: &str = "x-fal-webhook-timestamp";
pub const SIGNATURE: &str = "x-fal-webhook-signature";

/// FAL's JWKS has been seen with and without base64 padding on `x`.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwksError {
    #[error("JWKS is not JSON with a keys array: {0}")]
    Shape(String),
    #[error("JWKS holds no usable Ed25519 key")]
    NoKeys,
}

/// The four signature headers, borrowed from the request.
pub struct SignatureHeaders<'a> {
    pub request_id: &'a str,
    pub user_id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

impl<'a> SignatureHeaders<'a> {
    pub fn from_headers(headers: &'a HeaderMap) -> Result<Self, VerifyError> {
        let get = |name: &'static str, display: &'static str| {
            headers
                .get(name)
                .ok_or(VerifyError::MissingHeader(display))?
                .to_str()
                .map_err(|_| VerifyError::Malformed(display, "not ASCII"))
        };
        Ok(Self {
            request_id: get(REQUEST_ID, "X-Fal-Webhook-Request-Id")?,
            user_id: get(USER_ID, "X-Fal-Webhook-User-Id")?,
            timestamp: get(TIMESTAMP, "X-Fal-Webhook-Timestamp")?,
            signature: get(SIGNATURE, "X-Fal-Webhook-Signature")?,
        })
    }
}

/// The exact bytes FAL signs.
pub fn signed_message(request_id: &str, user_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let body_digest = hex::encode(Sha256::digest(body));
    format!("{request_id}\n{user_id}\n{timestamp}\n{body_digest}").into_bytes()
}

/// The checks that need no key: the timestamp window and the signature's form. Done before
/// FAL's keys are fetched, so a stale or malformed request costs nothing.
pub fn precheck(
    headers: &SignatureHeaders<'_>,
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<Signature, VerifyError> {
    let timestamp: i64 = headers
        .timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed("X-Fal-Webhook-Timestamp", "not unix seconds"))?;
    if !super::within_window(now_unix, timestamp, tolerance_secs) {
        return Err(VerifyError::StaleTimestamp("X-Fal-Webhook-Timestamp"));
    }
    let signature_bytes: [u8; 64] = hex::decode(headers.signature.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(VerifyError::Malformed(
            "X-Fal-Webhook-Signature",
            "not 64 bytes of hex",
        ))?;
    Ok(Signature::from_bytes(&signature_bytes))
}

/// Checks the timestamp window, then the signature against every key (FAL rotates keys).
pub fn verify(
    keys: &[VerifyingKey],
    headers: &SignatureHeaders<'_>,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let signature = precheck(headers, now_unix, tolerance_secs)?;
    let message = signed_message(headers.request_id, headers.user_id, headers.timestamp, body);
    if keys
        .iter()
        .any(|key| key.verify(&message, &signature).is_ok())
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Parses `{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": base64url}]}`, skipping keys of
/// other types; fails only when no Ed25519 key is left.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<VerifyingKey>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Jwks {
        keys: Vec<Jwk>,
    }
    #[derive(serde::Deserialize)]
    struct Jwk {
        kty: Option<String>,
        crv: Option<String>,
        x: Option<String>,
    }
    let jwks: Jwks = serde_json::from_slice(bytes).map_err(|e| JwksError::Shape(e.to_string()))?;
    let keys: Vec<VerifyingKey> = jwks
        .keys
        .into_iter()
        .filter(|k| k.kty.as_deref() == Some("OKP") && k.crv.as_deref() == Some("Ed25519"))
        .filter_map(|k| {
            let raw = BASE64URL_ANY_PADDING.decode(k.x?.trim()).ok()?;
            VerifyingKey::from_bytes(&raw.try_into().ok()?).ok()
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoKeys);
    }
    Ok(keys)
}

/// A JWKS document for the given keys, as FAL serves it (unpadded base64url).
pub fn jwks_json(keys: &[VerifyingKey]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.as_bytes()),
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const BODY: &[u8] = br#"{"request_id":"a6823810","status":"OK"}"#;
    const NOW: i64 = 1_790_000_000;

    struct Signed {
        request_id: String,
        user_id: String,
        timestamp: String,
        signature: String,
    }

    impl Signed {
        fn new(key: &SigningKey, body: &[u8], timestamp: i64) -> Self {
            let (request_id, user_id, timestamp) = (
                "req-1".to_string(),
                "user-9".to_string(),
                timestamp.to_string(),
            );
            let message = signed_message(&request_id, &user_id, &timestamp, body);
            let signature = hex::encode(key.sign(&message).to_bytes());
            Self {
                request_id,
                user_id,
                timestamp,
                signature,
            }
        }
        fn headers(&self) -> SignatureHeaders<'_> {
            SignatureHeaders {
                request_id: &self.request_id,
                user_id: &self.user_id,
                timestamp: &self.timestamp,
                signature: &self.signature,
            }
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn good_signature_is_accepted() {
        let signed = Signed::new(&key(1), BODY, NOW);
        assert_eq!(
            verify(&[key(1).verifying_key()], &signed.headers(), BODY, NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn wrong_key_is_a_mismatch() {
        let signed = Signed::new(&key(2), BODY, NOW);
        assert_eq!(
            verify(&[key(1).verifying_key()], &signed.headers(), BODY, NOW, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        let signed = Signed::new(&key(1), BODY, NOW);
        let tampered = br#"{"request_id":"a6823810","status":"ERROR"}"#;
        assert_eq!(
            verify(
                &[key(1).verifying_key()],
                &signed.headers(),
                tampered,
                NOW,
                300
            ),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn any_key_of_several_is_accepted() {
        let signed = Signed::new(&key(3), BODY, NOW);
        let keys = [key(1).verifying_key(), key(3).verifying_key()];
        assert_eq!(verify(&keys, &signed.headers(), BODY, NOW, 300), Ok(()));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_at_the_window_edge() {
        let keys = [key(1).verifying_key()];
        for (offset, expected) in [
            (
                -301,
                Err(VerifyError::StaleTimestamp("X-Fal-Webhook-Timestamp")),
            ),
            (-300, Ok(())),
            (300, Ok(())),
            (
                301,
                Err(VerifyError::StaleTimestamp("X-Fal-Webhook-Timestamp")),
            ),
        ] {
            let signed = Signed::new(&key(1), BODY, NOW + offset);
            assert_eq!(
                verify(&keys, &signed.headers(), BODY, NOW, 300),
                expected,
                "offset {offset}"
            );
        }
    }

    #[test]
    fn malformed_signature_and_timestamp_are_reported() {
        let keys = [key(1).verifying_key()];
        let mut signed = Signed::new(&key(1), BODY, NOW);
        signed.signature = "abcd".into();
        assert!(matches!(
            verify(&keys, &signed.headers(), BODY, NOW, 300),
            Err(VerifyError::Malformed("X-Fal-Webhook-Signature", _))
        ));
        signed.timestamp = "yesterday".into();
        assert!(matches!(
            verify(&keys, &signed.headers(), BODY, NOW, 300),
            Err(VerifyError::Malformed("X-Fal-Webhook-Timestamp", _))
        ));
    }

    #[test]
    fn missing_header_is_named() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, "r".parse().unwrap());
        headers.insert(USER_ID, "u".parse().unwrap());
        headers.insert(SIGNATURE, "00".parse().unwrap());
        assert!(matches!(
            SignatureHeaders::from_headers(&headers),
            Err(VerifyError::MissingHeader("X-Fal-Webhook-Timestamp"))
        ));
    }

    #[test]
    fn jwks_keys_parse_padded_and_unpadded() {
        let fixture = include_bytes!("../../tests/fixtures/fal/jwks_example.json");
        let keys = parse_jwks(fixture).unwrap();
        assert_eq!(keys.len(), 2);

        let ours = [key(7).verifying_key(), key(8).verifying_key()];
        assert_eq!(parse_jwks(jwks_json(&ours).as_bytes()).unwrap(), ours);
        let padded = jwks_json(&ours[..1]).replace("\"}", "=\"}");
        assert!(padded.contains("=\""));
        assert_eq!(parse_jwks(padded.as_bytes()).unwrap(), ours[..1]);
    }

    #[test]
    fn jwks_without_ed25519_keys_is_an_error() {
        assert_eq!(
            parse_jwks(br#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"}]}"#),
            Err(JwksError::NoKeys)
        );
        assert!(matches!(parse_jwks(b"<html>"), Err(JwksError::Shape(_))));
    }
}
