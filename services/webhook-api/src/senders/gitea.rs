//! Gitea: `X-Gitea-Signature: <hex>`, `X-Gitea-Event`, `X-Gitea-Delivery`; JSON or a form
//! whose signature covers the JSON in its `payload` field. Gitea never resends a failed
//! delivery by itself; its pushes have GitHub's format.

use http::HeaderMap;

use super::{verify_hex, Envelope, HexSignature, Prefix, Sender, SourceKeys};
use crate::verify::VerifyError;

#[derive(Debug)]
pub struct Gitea;

const SIGNATURE: HexSignature = HexSignature {
    header: "x-gitea-signature",
    display: "X-Gitea-Signature",
    prefix: Prefix::None,
    event: Some("x-gitea-event"),
    delivery: Some("x-gitea-delivery"),
};

impl Sender for Gitea {
    fn name(&self) -> &'static str {
        "gitea"
    }

    fn verify(
        &self,
        keys: &SourceKeys,
        headers: &HeaderMap,
        signed: &[u8],
        _now: i64,
    ) -> Result<Envelope, VerifyError> {
        verify_hex(&SIGNATURE, keys, headers, signed)
    }

    /// Gitea also sends Gogs' header, with the same value.
    fn signature_headers(&self) -> &'static [&'static str] {
        &["x-gitea-signature", "x-gogs-signature"]
    }

    fn naming_headers(&self) -> &'static [&'static str] {
        &["x-gitea-event", "x-gitea-delivery"]
    }

    fn sends_forms(&self) -> bool {
        true
    }

    fn signs_form_payload(&self) -> bool {
        true
    }

    fn resends_after_5xx(&self) -> bool {
        false
    }

    fn is_push(&self, event_type: &str) -> bool {
        event_type == "push"
    }
}
