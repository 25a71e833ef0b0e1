//! Plane: `X-Plane-Signature: <hex>`, `X-Plane-Event`, `X-Plane-Delivery`, JSON. Plane retries
//! only after a timeout or a refused connection, and each retry carries a new
//! `X-Plane-Delivery` with the same body: its deliveries are known by their hash.

use http::HeaderMap;

use super::{verify_hex, Envelope, HexSignature, Prefix, Sender, SourceKeys};
use crate::verify::VerifyError;

#[derive(Debug)]
pub struct Plane;

const SIGNATURE: HexSignature = HexSignature {
    header: "x-plane-signature",
    display: "X-Plane-Signature",
    prefix: Prefix::None,
    event: Some("x-plane-event"),
    delivery: Some("x-plane-delivery"),
};

impl Sender for Plane {
    fn name(&self) -> &'static str {
        "plane"
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

    fn signature_headers(&self) -> &'static [&'static str] {
        &["x-plane-signature"]
    }

    fn naming_headers(&self) -> &'static [&'static str] {
        &["x-plane-event", "x-plane-delivery"]
    }

    fn keeps_delivery_id_on_retry(&self) -> bool {
        false
    }

    fn resends_after_5xx(&self) -> bool {
        false
    }
}
