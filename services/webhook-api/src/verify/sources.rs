//! The other senders' signatures, each exactly as that sender computes it, checked on the raw
//! body with every secret of the source's rotation list, in constant time (`verify_slice`).

use base64::Engine;
use hmac::Mac;
use http::HeaderMap;

use super::hmac::mac_for;
use super::VerifyError;
use crate::config::{Secret, SourceConfig, SourceScheme};

/// Standard Webhooks' window around the server's clock.
pub const STANDARD_TOLERANCE_SECS: i64 = 300;

/// What the headers say about a verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender's id for this delivery, when it sends one (dedup key).
    pub delivery_id: Option<String>,
    /// The sender's event name from its headers (`push`, `issue`, …), when it sends one.
    pub event_type: Option<String>,
    /// False only for a source configured unsigned that sent no signature.
    pub signed: bool,
}

/// The headers one hex-HMAC scheme uses.
struct HexScheme {
    signature: &'static str,
    /// How the header is named in messages.
    display: &'static str,
    /// `Some` when the value must carry it (GitHub), `None` for bare hex.
    prefix: Option<&'static str>,
    event: Option<&'static str>,
    delivery: Option<&'static str>,
}

const GITHUB: HexScheme = HexScheme {
    signature: "x-hub-signature-256",
    display: "X-Hub-Signature-256",
    prefix: Some("sha256="),
    event: Some("x-github-event"),
    delivery: Some("x-github-delivery"),
};
const GITEA: HexScheme = HexScheme {
    signature: "x-gitea-signature",
    display: "X-Gitea-Signature",
    prefix: None,
    event: Some("x-gitea-event"),
    delivery: Some("x-gitea-delivery"),
};
const PLANE: HexScheme = HexScheme {
    signature: "x-plane-signature",
    display: "X-Plane-Signature",
    prefix: None,
    event: Some("x-plane-event"),
    delivery: Some("x-plane-delivery"),
};
const GENERIC_HMAC: HexScheme = HexScheme {
    signature: "x-signature",
    display: "X-Signature",
    prefix: None,
    event: None,
    delivery: None,
};

const STANDARD_ID: &str = "webhook-id";
const STANDARD_TIMESTAMP: &str = "webhook-timestamp";
const STANDARD_SIGNATURE: &str = "webhook-signature";

/// Header names that carry signatures: never stored with a delivery.
pub const SIGNATURE_HEADERS: [&str; 8] = [
    "x-hub-signature",
    "x-hub-signature-256",
    "x-gitea-signature",
    "x-gogs-signature",
    "x-plane-signature",
    "x-signature",
    "webhook-signature",
    "x-fal-webhook-signature",
];

pub fn verify(
    source: &SourceConfig,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Envelope, VerifyError> {
    match source.scheme {
        SourceScheme::Github => verify_hex(&GITHUB, source, headers, body),
        SourceScheme::Gitea => verify_hex(&GITEA, source, headers, body),
        SourceScheme::Plane => verify_hex(&PLANE, source, headers, body),
        SourceScheme::Hmac => verify_hex(&GENERIC_HMAC, source, headers, body),
        SourceScheme::Standard => verify_standard(source, headers, body, now),
    }
}

fn verify_hex(
    scheme: &HexScheme,
    source: &SourceConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Envelope, VerifyError> {
    // Bounded by the handler, which answers 400 for an id too long to index.
    let text = |name: Option<&str>| {
        name.and_then(|n| headers.get(n))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let envelope = |signed| Envelope {
        delivery_id: text(scheme.delivery),
        event_type: text(scheme.event),
        signed,
    };
    let Some(value) = headers.get(scheme.signature) else {
        return if source.unsigned {
            Ok(envelope(false))
        } else {
            Err(VerifyError::MissingHeader(scheme.display))
        };
    };
    if source.secrets.is_empty() {
        return Ok(envelope(false));
    }
    let value = value
        .to_str()
        .map_err(|_| VerifyError::Malformed(scheme.display, "not ASCII"))?
        .trim();
    let hex_digest = match scheme.prefix {
        Some(prefix) => value.strip_prefix(prefix).ok_or(VerifyError::Malformed(
            scheme.display,
            "expected sha256=<hex>",
        ))?,
        // The generic contract has always accepted an optional `sha256=`.
        None if scheme.signature == GENERIC_HMAC.signature => {
            value.strip_prefix("sha256=").unwrap_or(value)
        }
        None => value,
    };
    let signature =
        hex::decode(hex_digest).map_err(|_| VerifyError::Malformed(scheme.display, "not hex"))?;
    let matches = source.secrets.iter().any(|secret| {
        let mut mac = mac_for(secret);
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    });
    if matches {
        Ok(envelope(true))
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// <https://www.standardwebhooks.com/>: HMAC-SHA256 over `{id}.{timestamp}.{body}` with the
/// base64-decoded `whsec_` key; the header lists `v1,<base64>` signatures separated by spaces.
fn verify_standard(
    source: &SourceConfig,
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
    if source.unsigned && !headers.contains_key(STANDARD_SIGNATURE) {
        return Ok(Envelope {
            delivery_id: header(STANDARD_ID).ok().map(str::to_owned),
            event_type: None,
            signed: false,
        });
    }
    let id = header(STANDARD_ID)?;
    if id.is_empty() || id.len() > 200 {
        return Err(VerifyError::Malformed(STANDARD_ID, "empty or too long"));
    }
    let timestamp: i64 = header(STANDARD_TIMESTAMP)?
        .parse()
        .map_err(|_| VerifyError::Malformed(STANDARD_TIMESTAMP, "not whole seconds"))?;
    if !super::within_window(now, timestamp, STANDARD_TOLERANCE_SECS) {
        return Err(VerifyError::StaleTimestamp(STANDARD_TIMESTAMP));
    }
    // `v1,<base64 HMAC>` and `v1a,<base64 ED25519>` entries, each checked against the keys of
    // its own version; entries of other versions are skipped.
    let mut symmetric = Vec::new();
    let mut asymmetric = Vec::new();
    for entry in header(STANDARD_SIGNATURE)?.split(' ') {
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
            STANDARD_SIGNATURE,
            "no v1,<base64> or v1a,<base64> signature",
        ));
    }
    let by_secret = source.secrets.iter().any(|secret| {
        let mac = standard_mac(secret, id, timestamp, body);
        symmetric
            .iter()
            .any(|signature| mac.clone().verify_slice(signature).is_ok())
    });
    let by_public_key = !asymmetric.is_empty() && {
        let content = standard_content(id, timestamp, body);
        source.public_keys.iter().any(|key| {
            asymmetric
                .iter()
                .any(|signature| key.verify_strict(&content, signature).is_ok())
        })
    };
    let matches = by_secret || by_public_key;
    if matches {
        Ok(Envelope {
            delivery_id: Some(id.to_owned()),
            event_type: None,
            signed: true,
        })
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// What both versions sign: `{id}.{timestamp}.{body}`.
fn standard_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

fn standard_mac(key: &Secret, id: &str, timestamp: i64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = mac_for(key);
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
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
    let signature = key.sign(&standard_content(id, timestamp, body));
    format!(
        "v1a,{}",
        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
    )
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
