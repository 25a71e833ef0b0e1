//! The generic job-completion contract (scheme `hmac`): `X-Signature: <hex>` (or
//! `sha256=<hex>`) over a JSON body with `job_id`, `status`, counts and `timestamp`. Its
//! senders retry a 5xx with back-off.

use http::HeaderMap;
use serde_json::Value;

use super::{verify_hex, BadDelivery, Envelope, HexSignature, Prefix, Sender, SourceKeys};
use crate::verify::VerifyError;

#[derive(Debug)]
pub struct Jobs;

const SIGNATURE: HexSignature = HexSignature {
    header: "x-signature",
    display: "X-Signature",
    prefix: Prefix::Optional("sha256="),
    event: None,
    delivery: None,
};

/// The job statuses of the contract.
const JOB_STATUSES: [&str; 3] = ["completed", "failed", "partially_completed"];

impl Sender for Jobs {
    fn name(&self) -> &'static str {
        "hmac"
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
        &["x-signature"]
    }

    /// `job.<status>`, once the body is a job callback.
    fn event_type(&self, payload: &Value) -> Result<String, BadDelivery> {
        let bad = |why: &str| BadDelivery(format!("job callback: {why}"));
        let job_id_ok = match payload.get("job_id") {
            Some(Value::String(id)) => !id.is_empty(),
            Some(Value::Number(_)) => true,
            _ => false,
        };
        if !job_id_ok {
            return Err(bad("job_id (a non-empty string or a number) is required"));
        }
        let status = payload
            .get("status")
            .and_then(Value::as_str)
            .filter(|s| JOB_STATUSES.contains(s))
            .ok_or_else(|| bad("status must be one of completed, failed, partially_completed"))?;
        Ok(format!("job.{status}"))
    }

    fn resends_after_5xx(&self) -> bool {
        true
    }
}
