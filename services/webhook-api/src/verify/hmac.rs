//! HMAC-SHA256 shared-secret signatures: `X-Signature: <hex>` or `X-Signature: sha256=<hex>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::VerifyError;
use crate::secret::Secret;

pub const HEADER: &str = "x-signature";

/// Accepts the body when any of the configured secrets (a rotation list) produced the signature.
/// `verify_slice` compares in constant time.
pub fn verify(secrets: &[Secret], body: &[u8], header_value: &str) -> Result<(), VerifyError> {
    if secrets.is_empty() {
        return Err(VerifyError::HmacNotConfigured);
    }
    let hex_digest = header_value.trim();
    let hex_digest = hex_digest.strip_prefix("sha256=").unwrap_or(hex_digest);
    let signature =
        hex::decode(hex_digest).map_err(|_| VerifyError::Malformed("X-Signature", "not hex"))?;
    let matches = secrets.iter().any(|secret| {
        let mut mac = mac_for(secret);
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The hex signature a sender puts in `X-Signature` (used by tests and the load generator).
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = mac_for(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn mac_for(secret: &Secret) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret.expose_bytes()).expect("HMAC accepts any key size")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"request_id":"r1","status":"completed"}"#;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn good_signature_is_accepted_bare_and_prefixed() {
        let s = secrets(&["k1"]);
        let sig = sign(&s[0], BODY);
        assert!(verify(&s, BODY, &sig).is_ok());
        assert!(verify(&s, BODY, &format!("sha256={sig}")).is_ok());
        assert!(verify(&s, BODY, &sig.to_uppercase()).is_ok());
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        let sig = sign(&Secret::new("other"), BODY);
        assert!(matches!(
            verify(&secrets(&["k1"]), BODY, &sig),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        let s = secrets(&["k1"]);
        let sig = sign(&s[0], BODY);
        let tampered = br#"{"request_id":"r1","status":"failed"}"#;
        assert!(matches!(
            verify(&s, tampered, &sig),
            Err(VerifyError::Mismatch)
        ));
    }

    #[test]
    fn any_secret_of_the_rotation_list_is_accepted() {
        let s = secrets(&["old", "new"]);
        assert!(verify(&s, BODY, &sign(&Secret::new("old"), BODY)).is_ok());
        assert!(verify(&s, BODY, &sign(&Secret::new("new"), BODY)).is_ok());
        assert!(verify(&s, BODY, &sign(&Secret::new("retired"), BODY)).is_err());
    }

    #[test]
    fn malformed_header_and_missing_configuration_are_distinct_errors() {
        assert!(matches!(
            verify(&secrets(&["k"]), BODY, "sha256=zz"),
            Err(VerifyError::Malformed("X-Signature", _))
        ));
        assert!(matches!(
            verify(&[], BODY, "00"),
            Err(VerifyError::HmacNotConfigured)
        ));
    }
}
