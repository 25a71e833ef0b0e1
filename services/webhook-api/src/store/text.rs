//! What PostgreSQL cannot store: the NUL character, in `text`, `varchar` and `jsonb` alike. A
//! delivery whose JSON carries one (as `\u0000`) is stored with U+FFFD in its place rather than
//! refused: a sender does not retry a 4xx, so refusing it would lose the callback.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// The JSON with every NUL in its strings and keys replaced by U+FFFD; the same bytes when it
/// has none, or when it is not JSON (its parser says why, later).
pub fn without_nul(json: &[u8]) -> Cow<'_, [u8]> {
    // In JSON, a NUL can only be written as an escape.
    if !json.windows(6).any(|w| w.eq_ignore_ascii_case(br"\u0000")) {
        return Cow::Borrowed(json);
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(json) else {
        return Cow::Borrowed(json);
    };
    if replace_nul(&mut value) {
        Cow::Owned(serde_json::to_vec(&value).expect("a JSON value serializes"))
    } else {
        Cow::Borrowed(json)
    }
}

/// Whether anything was replaced.
fn replace_nul(value: &mut Value) -> bool {
    match value {
        Value::String(text) if text.contains('\0') => {
            *text = text.replace('\0', "\u{FFFD}");
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |found, item| replace_nul(item) | found),
        Value::Object(fields) => {
            let mut found = false;
            *fields = std::mem::take(fields)
                .into_iter()
                .map(|(key, mut item)| {
                    found |= replace_nul(&mut item) | key.contains('\0');
                    (key.replace('\0', "\u{FFFD}"), item)
                })
                .collect::<Map<_, _>>();
            found
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_in_strings_and_keys_becomes_the_replacement_character() {
        let stored = without_nul(br#"{"error":"bad\u0000byte","a\u0000":["x\u0000"],"n":1}"#);
        let value: Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(value["error"], "bad\u{FFFD}byte");
        assert_eq!(value["a\u{FFFD}"][0], "x\u{FFFD}");
        assert_eq!(value["n"], 1);
    }

    #[test]
    fn bodies_without_nul_are_kept_byte_for_byte() {
        for body in [
            &br#"{"b": 2, "a": "\\u0000 is text here"}"#[..],
            br#"{"request_id":"r","status":"OK"}"#,
            b"not json \\u0000",
        ] {
            assert!(matches!(without_nul(body), Cow::Borrowed(kept) if kept == body));
        }
    }
}
