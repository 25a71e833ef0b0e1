//! The other signed senders, one file each: how a sender signs, encodes, names and retries
//! its deliveries, exactly as that sender does. Everything else (reading the body, storing,
//! the spool, deploys, replay) is the same for all of them and asks only `Sender`.
//!
//! Adding a sender is one file implementing `Sender`, named in `ALL`.

mod gitea;
mod github;
mod jobs;
mod plane;
mod standard;

use std::fmt;

use hmac::Mac;
use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::secret::Secret;
use crate::verify::{hmac::mac_for, VerifyError};

pub use standard::{sign_standard, sign_standard_v1a, STANDARD_TOLERANCE_SECS};

/// Every sender `WEBHOOK_SOURCES` can name, by its scheme name.
pub const ALL: [&dyn Sender; 5] = [
    &github::Github,
    &gitea::Gitea,
    &plane::Plane,
    &jobs::Jobs,
    &standard::Standard,
];

/// The sender whose scheme is called `name` in `WEBHOOK_SOURCES`.
pub fn by_name(name: &str) -> Option<&'static dyn Sender> {
    ALL.into_iter().find(|sender| sender.name() == name)
}

/// One sender's protocol. The defaults are what most senders do.
pub trait Sender: Send + Sync + fmt::Debug {
    /// The scheme's name in `WEBHOOK_SOURCES` (`name:scheme`) and in stored deliveries.
    fn name(&self) -> &'static str;

    /// Checks the signature on the bytes it covers (see `signs_form_payload`) with the
    /// source's keys, and reads the delivery's id and event name from the headers.
    fn verify(
        &self,
        keys: &SourceKeys,
        headers: &HeaderMap,
        signed: &[u8],
        now: i64,
    ) -> Result<Envelope, VerifyError>;

    /// Headers whose values are signatures: never stored with a delivery.
    fn signature_headers(&self) -> &'static [&'static str];

    /// Headers that name a delivery (its id, its event): kept even of a refused request, so an
    /// operator can tell which delivery it claimed to be.
    fn naming_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether it may post a form (`payload=<json>`) instead of JSON.
    fn sends_forms(&self) -> bool {
        false
    }

    /// Whether, for a form, the signature covers the JSON in `payload` rather than the body.
    fn signs_form_payload(&self) -> bool {
        false
    }

    /// The event type when the headers name none: the payload's `type` by default.
    fn event_type(&self, payload: &Value) -> Result<String, BadDelivery> {
        Ok(payload
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .unwrap_or("unknown")
            .to_string())
    }

    /// Whether a retry of a delivery carries the same delivery id. When it does not, a
    /// delivery is known by the hash of its JSON instead.
    fn keeps_delivery_id_on_retry(&self) -> bool {
        true
    }

    /// Whether it sends a delivery again after a 5xx. Those that do not are spooled on disk
    /// by default while PostgreSQL is away.
    fn resends_after_5xx(&self) -> bool;

    /// Whether this event is a push in GitHub's format (`ref`, `before`, `after`,
    /// `repository.full_name`, `deleted`), which may roll out a deploy.
    fn is_push(&self, _event_type: &str) -> bool {
        false
    }

    /// One entry of the source's key list (`WEBHOOK_SOURCE_<NAME>_SECRETS`). The problem,
    /// if any, never repeats the key.
    fn key(&self, entry: &str) -> Result<Key, &'static str> {
        Ok(Key::Shared(Secret::new(entry)))
    }

    /// Whether the sender's API can be asked to redeliver what did not reach us.
    fn redelivers_on_request(&self) -> bool {
        false
    }
}

/// A source's keys: any of them may have signed a delivery (rotation).
#[derive(Debug, Clone, Default)]
pub struct SourceKeys {
    /// Shared secrets (HMAC); for `standard`, the decoded `whsec_` key bytes.
    pub secrets: Vec<Secret>,
    /// `standard` only: the senders' ED25519 public keys (`whpk_…`), for `v1a` signatures.
    pub public_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// Accept deliveries without a signature (never in production).
    pub unsigned: bool,
}

impl SourceKeys {
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.public_keys.is_empty()
    }
}

/// One entry of a key list.
pub enum Key {
    Shared(Secret),
    Public(ed25519_dalek::VerifyingKey),
}

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

/// A body its sender would not have sent: answered 400 with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BadDelivery(pub String);

/// The delivery's event type: its header, else what the sender's body says.
pub fn event_type(
    sender: &dyn Sender,
    from_header: Option<String>,
    payload: &Value,
) -> Result<String, BadDelivery> {
    match from_header {
        Some(event) => Ok(event),
        None => sender.event_type(payload),
    }
}

/// The key a redelivery is recognised by: `{source}:{delivery id}` for senders that keep the
/// id on a retry, `{source}:sha256:{hash of the JSON}` for the others and for deliveries that
/// carry no id.
pub fn delivery_key(
    source: &str,
    sender: &dyn Sender,
    delivery_id: Option<&str>,
    json: &[u8],
) -> String {
    match delivery_id.filter(|_| sender.keeps_delivery_id_on_retry()) {
        Some(id) => format!("{source}:{id}"),
        None => format!("{source}:sha256:{}", hex::encode(Sha256::digest(json))),
    }
}

/// Whether a header carries a signature of any sender (or FAL's): never stored.
pub fn is_signature_header(name: &str) -> bool {
    name == crate::verify::fal_ed25519::SIGNATURE
        || ALL
            .iter()
            .any(|sender| sender.signature_headers().contains(&name))
}

/// Whether a header names a delivery of any sender (its id, its event).
pub fn is_naming_header(name: &str) -> bool {
    ALL.iter()
        .any(|sender| sender.naming_headers().contains(&name))
}

/// How a hex HMAC-SHA256 sender names its headers.
struct HexSignature {
    header: &'static str,
    /// How the header is named in messages.
    display: &'static str,
    prefix: Prefix,
    event: Option<&'static str>,
    delivery: Option<&'static str>,
}

/// What stands before the hex digest.
enum Prefix {
    /// Always `sha256=` (GitHub).
    Required(&'static str),
    /// `sha256=` or nothing (the generic job contract has always accepted both).
    Optional(&'static str),
    None,
}

/// The hex HMAC of the body with any of the source's secrets, compared in constant time
/// (`verify_slice`).
fn verify_hex(
    scheme: &HexSignature,
    keys: &SourceKeys,
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
    let Some(value) = headers.get(scheme.header) else {
        return if keys.unsigned {
            Ok(envelope(false))
        } else {
            Err(VerifyError::MissingHeader(scheme.display))
        };
    };
    if keys.secrets.is_empty() {
        return Ok(envelope(false));
    }
    let value = value
        .to_str()
        .map_err(|_| VerifyError::Malformed(scheme.display, "not ASCII"))?
        .trim();
    let hex_digest = match scheme.prefix {
        Prefix::Required(prefix) => value.strip_prefix(prefix).ok_or(VerifyError::Malformed(
            scheme.display,
            "expected sha256=<hex>",
        ))?,
        Prefix::Optional(prefix) => value.strip_prefix(prefix).unwrap_or(value),
        Prefix::None => value,
    };
    let signature =
        hex::decode(hex_digest).map_err(|_| VerifyError::Malformed(scheme.display, "not hex"))?;
    let matches = keys.secrets.iter().any(|secret| {
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

#[cfg(test)]
mod tests;
