//! The senders' schemes against their published examples and each other's signatures.

use super::*;
use http::HeaderValue;

fn source(scheme: SourceScheme, secrets: &[&str]) -> SourceConfig {
    SourceConfig {
        name: "s".into(),
        scheme,
        secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        public_keys: Vec::new(),
        unsigned: false,
        spool: false,
        redeliver: None,
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn hex_sign(secret: &str, body: &[u8]) -> String {
    super::super::hmac::sign(&Secret::new(secret), body)
}

/// GitHub's documented example ("Validating webhook deliveries"): this secret and payload
/// give exactly this `X-Hub-Signature-256`.
#[test]
fn github_documented_test_vector() {
    let github = source(SourceScheme::Github, &["It's a Secret to Everybody"]);
    let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = headers(&[
        ("x-hub-signature-256", signature),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]);
    let envelope = verify(&github, &h, b"Hello, World!", 0).unwrap();
    assert_eq!(envelope.event_type.as_deref(), Some("push"));
    assert_eq!(
        envelope.delivery_id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        verify(&github, &h, b"Hello, World?", 0),
        Err(VerifyError::Mismatch)
    );
    // GitHub always prefixes: a bare digest is malformed, not a different scheme.
    let bare = headers(&[("x-hub-signature-256", &signature[7..])]);
    assert!(matches!(
        verify(&github, &bare, b"Hello, World!", 0),
        Err(VerifyError::Malformed("X-Hub-Signature-256", _))
    ));
}

#[test]
fn gitea_and_plane_sign_with_bare_hex() {
    let body = br#"{"ref":"refs/heads/main"}"#;
    for (scheme, header) in [
        (SourceScheme::Gitea, "x-gitea-signature"),
        (SourceScheme::Plane, "x-plane-signature"),
    ] {
        let s = source(scheme, &["old", "new"]);
        for secret in ["old", "new"] {
            let h = headers(&[(header, &hex_sign(secret, body))]);
            assert!(verify(&s, &h, body, 0).unwrap().signed, "{scheme:?}");
        }
        let wrong = headers(&[(header, &hex_sign("retired", body))]);
        assert_eq!(verify(&s, &wrong, body, 0), Err(VerifyError::Mismatch));
        assert!(matches!(
            verify(&s, &HeaderMap::new(), body, 0),
            Err(VerifyError::MissingHeader(_))
        ));
    }
}

/// The example of the Standard Webhooks specification (standard-webhooks/standard-webhooks,
/// README): secret, message id, timestamp and payload → this signature.
#[test]
fn standard_webhooks_published_example() {
    let key = crate::config::SourceConfig {
        secrets: vec![Secret::from_bytes(
            base64::engine::general_purpose::STANDARD
                .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap(),
        )],
        ..source(SourceScheme::Standard, &[])
    };
    let body = br#"{"test": 2432232314}"#;
    let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    assert_eq!(
        sign_standard(
            &key.secrets[0],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body
        ),
        expected
    );
    let h = headers(&[
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        ("webhook-signature", &format!("v1,bm90IGl0 {expected}")),
    ]);
    let envelope = verify(&key, &h, body, 1614265330 + 10).unwrap();
    assert_eq!(
        envelope.delivery_id.as_deref(),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
    );
    assert_eq!(
        verify(&key, &h, body, 1614265330 + 301),
        Err(VerifyError::StaleTimestamp("webhook-timestamp"))
    );
    assert_eq!(
        verify(&key, &h, br#"{"test": 2432232315}"#, 1614265330),
        Err(VerifyError::Mismatch)
    );
}

/// `v1a`: ED25519 over the same `{id}.{timestamp}.{body}`, checked with the `whpk_` keys
/// only; a `v1` entry is checked with the `whsec_` keys only.
#[test]
fn standard_v1a_signatures_are_checked_with_the_public_keys() {
    let sender = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let key = crate::config::SourceConfig {
        public_keys: vec![sender.verifying_key()],
        ..source(SourceScheme::Standard, &[])
    };
    let (id, at, body) = ("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1674087231, br#"{"a":1}"#);
    let check = |signature: &str, body: &[u8]| {
        let h = headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", "1674087231"),
            ("webhook-signature", signature),
        ]);
        verify(&key, &h, body, at).map(|e| e.signed)
    };
    let good = sign_standard_v1a(&sender, id, at, body);
    assert_eq!(check(&good, body), Ok(true));
    // Beside a v1 entry of another key (rotation), and in either order.
    let hmac_entry = sign_standard(&Secret::new("other"), id, at, body);
    assert_eq!(check(&format!("{hmac_entry} {good}"), body), Ok(true));
    assert_eq!(check(&good, br#"{"a":2}"#), Err(VerifyError::Mismatch));
    let foreign = sign_standard_v1a(&stranger, id, at, body);
    assert_eq!(check(&foreign, body), Err(VerifyError::Mismatch));
    // A v1a signature is not taken for a v1 one, nor the other way round.
    let relabelled = good.replacen("v1a,", "v1,", 1);
    assert_eq!(check(&relabelled, body), Err(VerifyError::Mismatch));
    assert!(matches!(
        check("v2,abc", body),
        Err(VerifyError::Malformed(..))
    ));
}

#[test]
fn unsigned_sources_accept_a_missing_signature_only() {
    let mut s = source(SourceScheme::Gitea, &["k"]);
    s.unsigned = true;
    assert!(!verify(&s, &HeaderMap::new(), b"{}", 0).unwrap().signed);
    let wrong = headers(&[("x-gitea-signature", &hex_sign("other", b"{}"))]);
    assert_eq!(verify(&s, &wrong, b"{}", 0), Err(VerifyError::Mismatch));
}
