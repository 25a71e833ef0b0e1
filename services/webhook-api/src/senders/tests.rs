//! The senders' schemes against their published examples and each other's signatures, and a
//! made-up sender that needs nothing but its own implementation.

use super::*;
use base64::Engine;
use http::HeaderValue;
use serde_json::json;

fn sender(name: &str) -> &'static dyn Sender {
    by_name(name).unwrap()
}

fn keys(secrets: &[&str]) -> SourceKeys {
    SourceKeys {
        secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        ..SourceKeys::default()
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
    crate::verify::hmac::sign(&Secret::new(secret), body)
}

/// GitHub's documented example ("Validating webhook deliveries"): this secret and payload
/// give exactly this `X-Hub-Signature-256`.
#[test]
fn github_documented_test_vector() {
    let (github, key) = (sender("github"), keys(&["It's a Secret to Everybody"]));
    let signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = headers(&[
        ("x-hub-signature-256", signature),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ]);
    let envelope = github.verify(&key, &h, b"Hello, World!", 0).unwrap();
    assert_eq!(envelope.event_type.as_deref(), Some("push"));
    assert_eq!(
        envelope.delivery_id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        github.verify(&key, &h, b"Hello, World?", 0),
        Err(VerifyError::Mismatch)
    );
    // GitHub always prefixes: a bare digest is malformed, not a different scheme.
    let bare = headers(&[("x-hub-signature-256", &signature[7..])]);
    assert!(matches!(
        github.verify(&key, &bare, b"Hello, World!", 0),
        Err(VerifyError::Malformed("X-Hub-Signature-256", _))
    ));
}

#[test]
fn gitea_and_plane_sign_with_bare_hex() {
    let body = br#"{"ref":"refs/heads/main"}"#;
    for (scheme, header) in [
        ("gitea", "x-gitea-signature"),
        ("plane", "x-plane-signature"),
    ] {
        let (s, k) = (sender(scheme), keys(&["old", "new"]));
        for secret in ["old", "new"] {
            let h = headers(&[(header, &hex_sign(secret, body))]);
            assert!(s.verify(&k, &h, body, 0).unwrap().signed, "{scheme}");
        }
        let wrong = headers(&[(header, &hex_sign("retired", body))]);
        assert_eq!(s.verify(&k, &wrong, body, 0), Err(VerifyError::Mismatch));
        assert!(matches!(
            s.verify(&k, &HeaderMap::new(), body, 0),
            Err(VerifyError::MissingHeader(_))
        ));
    }
}

/// The example of the Standard Webhooks specification (standard-webhooks/standard-webhooks,
/// README): secret, message id, timestamp and payload → this signature.
#[test]
fn standard_webhooks_published_example() {
    let standard = sender("standard");
    let key = SourceKeys {
        secrets: vec![Secret::from_bytes(
            base64::engine::general_purpose::STANDARD
                .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap(),
        )],
        ..SourceKeys::default()
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
    let envelope = standard.verify(&key, &h, body, 1614265330 + 10).unwrap();
    assert_eq!(
        envelope.delivery_id.as_deref(),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
    );
    assert_eq!(
        standard.verify(&key, &h, body, 1614265330 + 301),
        Err(VerifyError::StaleTimestamp("webhook-timestamp"))
    );
    assert_eq!(
        standard.verify(&key, &h, br#"{"test": 2432232315}"#, 1614265330),
        Err(VerifyError::Mismatch)
    );
}

/// `v1a`: ED25519 over the same `{id}.{timestamp}.{body}`, checked with the `whpk_` keys
/// only; a `v1` entry is checked with the `whsec_` keys only.
#[test]
fn standard_v1a_signatures_are_checked_with_the_public_keys() {
    let standard = by_name("standard").unwrap();
    let sender = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let key = SourceKeys {
        public_keys: vec![sender.verifying_key()],
        ..SourceKeys::default()
    };
    let (id, at, body) = ("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", 1674087231, br#"{"a":1}"#);
    let check = |signature: &str, body: &[u8]| {
        let h = headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", "1674087231"),
            ("webhook-signature", signature),
        ]);
        standard.verify(&key, &h, body, at).map(|e| e.signed)
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
    let (gitea, mut k) = (sender("gitea"), keys(&["k"]));
    k.unsigned = true;
    assert!(
        !gitea
            .verify(&k, &HeaderMap::new(), b"{}", 0)
            .unwrap()
            .signed
    );
    let wrong = headers(&[("x-gitea-signature", &hex_sign("other", b"{}"))]);
    assert_eq!(
        gitea.verify(&k, &wrong, b"{}", 0),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn each_sender_keys_its_retries_and_names_its_events_as_it_sends_them() {
    let body = br#"{"type":"invoice.paid","job_id":7,"status":"failed"}"#;
    let payload: Value = serde_json::from_slice(body).unwrap();
    // Plane's retries carry a new delivery id with the same body: known by the body's hash.
    let by_hash = format!("p:sha256:{}", hex::encode(Sha256::digest(body)));
    assert_eq!(
        delivery_key("p", sender("plane"), Some("d-2"), body),
        by_hash
    );
    assert_eq!(
        delivery_key("g", sender("github"), Some("d-1"), body),
        "g:d-1"
    );
    assert!(delivery_key("g", sender("github"), None, body).starts_with("g:sha256:"));
    // The header's event first, else what the sender's body says.
    let standard = sender("standard");
    assert_eq!(
        event_type(standard, None, &payload).unwrap(),
        "invoice.paid"
    );
    assert_eq!(
        event_type(standard, Some("ping".into()), &payload).unwrap(),
        "ping"
    );
    assert_eq!(
        event_type(sender("hmac"), None, &payload).unwrap(),
        "job.failed"
    );
    assert_eq!(
        event_type(sender("hmac"), None, &json!({"status": "completed"})),
        Err(BadDelivery(
            "job callback: job_id (a non-empty string or a number) is required".into()
        ))
    );
    // Only GitHub's and Gitea's pushes may deploy; only GitHub and Gitea post forms.
    let pushes: Vec<_> = ALL
        .iter()
        .filter(|s| s.is_push("push"))
        .map(|s| s.name())
        .collect();
    assert_eq!(pushes, ["github", "gitea"]);
    let forms: Vec<_> = ALL
        .iter()
        .filter(|s| s.sends_forms())
        .map(|s| s.name())
        .collect();
    assert_eq!(forms, ["github", "gitea"]);
    let spooled: Vec<_> = ALL
        .iter()
        .filter(|s| !s.resends_after_5xx())
        .map(|s| s.name())
        .collect();
    assert_eq!(spooled, ["github", "gitea", "plane"]);
    for name in [
        "x-hub-signature",
        "x-gogs-signature",
        "webhook-signature",
        "x-fal-webhook-signature",
    ] {
        assert!(is_signature_header(name), "{name}");
    }
    assert!(!is_signature_header("x-github-delivery"));
    assert!(is_naming_header("x-gitea-delivery") && !is_naming_header("x-signature"));
}

/// A sender that does not exist: its whole protocol is this one implementation, and the
/// shared code (the delivery key, the event type, the header rules) serves it unchanged.
#[derive(Debug)]
struct Acme;

impl Sender for Acme {
    fn name(&self) -> &'static str {
        "acme"
    }

    /// `X-Acme-Auth: <base64 of the HMAC>` over the body.
    fn verify(
        &self,
        keys: &SourceKeys,
        headers: &HeaderMap,
        signed: &[u8],
        _now: i64,
    ) -> Result<Envelope, VerifyError> {
        let value = headers
            .get("x-acme-auth")
            .ok_or(VerifyError::MissingHeader("X-Acme-Auth"))?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(value.as_bytes())
            .map_err(|_| VerifyError::Malformed("X-Acme-Auth", "not base64"))?;
        let matches = keys.secrets.iter().any(|secret| {
            let mut mac = mac_for(secret);
            mac.update(signed);
            mac.verify_slice(&signature).is_ok()
        });
        matches
            .then(|| Envelope {
                delivery_id: headers
                    .get("x-acme-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                event_type: None,
                signed: true,
            })
            .ok_or(VerifyError::Mismatch)
    }

    fn signature_headers(&self) -> &'static [&'static str] {
        &["x-acme-auth"]
    }

    fn event_type(&self, payload: &Value) -> Result<String, BadDelivery> {
        payload
            .get("kind")
            .and_then(Value::as_str)
            .map(|kind| format!("acme.{kind}"))
            .ok_or_else(|| BadDelivery("an acme event names its kind".into()))
    }

    fn keeps_delivery_id_on_retry(&self) -> bool {
        false
    }

    fn resends_after_5xx(&self) -> bool {
        true
    }
}

#[test]
fn a_made_up_sender_is_one_implementation() {
    let acme: &dyn Sender = &Acme;
    let body = br#"{"kind":"shipped"}"#;
    let key = keys(&["acme-secret"]);
    let mut mac = mac_for(&key.secrets[0]);
    mac.update(body);
    let auth = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let h = headers(&[("x-acme-auth", &auth), ("x-acme-id", "a-1")]);
    let envelope = acme.verify(&key, &h, body, 0).unwrap();
    assert_eq!(envelope.delivery_id.as_deref(), Some("a-1"));
    assert_eq!(acme.verify(&key, &h, b"{}", 0), Err(VerifyError::Mismatch));
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        event_type(acme, envelope.event_type, &payload).unwrap(),
        "acme.shipped"
    );
    // Its retries come with new ids: known by the body, like Plane's.
    assert!(delivery_key("shop", acme, Some("a-2"), body).starts_with("shop:sha256:"));
    assert_eq!(acme.key("k").map(|_| ()), Ok(()));
}
