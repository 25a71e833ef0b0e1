//! Secrets: values that never reach a log line or an error message.

use std::fmt;

/// A value that must never reach a log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().into_bytes())
    }
    /// A binary key (a decoded Standard Webhooks secret).
    pub fn from_bytes(key: Vec<u8>) -> Self {
        Self(key)
    }
    /// The secret as text (empty for a binary key, which only `expose_bytes` gives).
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
    pub fn expose_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}
