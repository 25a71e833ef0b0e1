//! Which of a request's headers are kept in `webhook_events.headers`. A verified delivery keeps
//! its headers without signatures and credentials; a refused request keeps only a few short
//! ones that help an operator tell who sent it, so a forged flood cannot fill the database.

use http::HeaderMap;
use serde_json::Value;

use crate::senders;

/// Longest value kept for a verified delivery, and most headers kept.
const DELIVERY_VALUE_CHARS: usize = 1024;
const DELIVERY_HEADERS: usize = 64;
/// Longest value kept for a refused request.
const REJECTED_VALUE_CHARS: usize = 200;

/// What a refused request keeps: who sent it and, with each sender's naming headers
/// (`senders::is_naming_header`), which delivery it claims to be.
const REJECTED_ALLOWLIST: [&str; 8] = [
    "user-agent",
    "content-type",
    "content-length",
    "x-forwarded-for",
    "x-real-ip",
    "x-request-id",
    "x-fal-webhook-request-id",
    "x-fal-webhook-timestamp",
];
/// Most headers a refused request keeps.
const REJECTED_HEADERS: usize = 16;

/// Credentials of any sender: `Authorization`, cookies, `X-Api-Key`, `X-Gitlab-Token`, and
/// anything naming a secret, a password or a signature.
pub fn is_credential(name: &str) -> bool {
    const WORDS: [&str; 7] = [
        "token",
        "secret",
        "password",
        "signature",
        "api-key",
        "apikey",
        "auth",
    ];
    senders::is_signature_header(name)
        || matches!(name, "cookie" | "set-cookie")
        || WORDS.iter().any(|word| name.contains(word))
}

/// A verified delivery's headers, credentials left out, each value bounded.
pub fn for_delivery(headers: &HeaderMap) -> Value {
    keep(headers, DELIVERY_HEADERS, DELIVERY_VALUE_CHARS, |name| {
        !is_credential(name)
    })
}

/// A refused request's headers: the short allowlist only.
pub fn for_rejection(headers: &HeaderMap) -> Value {
    keep(headers, REJECTED_HEADERS, REJECTED_VALUE_CHARS, |name| {
        REJECTED_ALLOWLIST.contains(&name) || senders::is_naming_header(name)
    })
}

fn keep(
    headers: &HeaderMap,
    most: usize,
    value_chars: usize,
    wanted: impl Fn(&str) -> bool,
) -> Value {
    let mut kept = serde_json::Map::new();
    for (name, value) in headers {
        if kept.len() == most {
            break;
        }
        let name = name.as_str();
        if !wanted(name) || kept.contains_key(name) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            let value = match value.char_indices().nth(value_chars) {
                Some((cut, _)) => format!("{}…", &value[..cut]),
                None => value.to_string(),
            };
            kept.insert(name.to_string(), Value::String(value));
        }
    }
    Value::Object(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (http::HeaderName::from_static(n), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn credentials_of_any_sender_are_not_kept() {
        let stored = for_delivery(&headers(&[
            ("authorization", "Bearer abc"),
            ("cookie", "session=1"),
            ("x-gitlab-token", "glt"),
            ("x-api-key", "k"),
            ("x-hub-signature-256", "sha256=00"),
            ("x-auth-user", "u"),
            ("x-client-secret", "s"),
            ("x-github-event", "push"),
            ("user-agent", "GitHub-Hookshot/1"),
        ]));
        let names: Vec<&String> = stored.as_object().unwrap().keys().collect();
        assert_eq!(names, ["user-agent", "x-github-event"]);
    }

    #[test]
    fn a_refused_request_keeps_only_short_allowlisted_headers() {
        let long = "x".repeat(7000);
        let stored = for_rejection(&headers(&[
            ("user-agent", &long),
            ("x-padding", &long),
            ("x-github-delivery", "d-1"),
        ]));
        let object = stored.as_object().unwrap();
        assert_eq!(object.len(), 2);
        assert_eq!(object["x-github-delivery"], "d-1");
        assert!(object["user-agent"].as_str().unwrap().chars().count() <= 201);
    }
}
