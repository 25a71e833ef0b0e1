//! GitHub: `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Event`, `X-GitHub-Delivery`; JSON
//! or a form (`payload=<json>`, what a webhook made in GitHub's UI sends unless its author
//! changes it), signed as sent. GitHub never resends a failed delivery by itself, but its API
//! redelivers on request.

use http::HeaderMap;

use super::{verify_hex, Envelope, HexSignature, Prefix, Sender, SourceKeys};
use crate::verify::VerifyError;

#[derive(Debug)]
pub struct Github;

const SIGNATURE: HexSignature = HexSignature {
    header: "x-hub-signature-256",
    display: "X-Hub-Signature-256",
    prefix: Prefix::Required("sha256="),
    event: Some("x-github-event"),
    delivery: Some("x-github-delivery"),
};

impl Sender for Github {
    fn name(&self) -> &'static str {
        "github"
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

    /// GitHub sends the SHA-1 one too.
    fn signature_headers(&self) -> &'static [&'static str] {
        &["x-hub-signature-256", "x-hub-signature"]
    }

    fn naming_headers(&self) -> &'static [&'static str] {
        &["x-github-event", "x-github-delivery"]
    }

    fn sends_forms(&self) -> bool {
        true
    }

    fn resends_after_5xx(&self) -> bool {
        false
    }

    fn is_push(&self, event_type: &str) -> bool {
        event_type == "push"
    }

    fn redelivers_on_request(&self) -> bool {
        true
    }
}
