//! FAL's queue API, as the reconciler asks it about a training: its status, then its result.
//! `GET {queue}/{app}/requests/{id}/status` and `GET {queue}/{app}/requests/{id}`, with
//! `Authorization: Key <FAL_API_KEY>`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Secret;

#[derive(Debug)]
pub enum QueueAnswer {
    /// `IN_QUEUE` or `IN_PROGRESS`.
    Running,
    /// Finished: a body in FAL's webhook format (`status: OK` with the result as `payload`,
    /// or `status: ERROR` with FAL's error), to go through the webhook's own ingest path.
    Finished(String),
    /// FAL does not know the request (404): expired, or never submitted with this key.
    NotFound,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// FAL is unreachable, rate-limits us, or answered 5xx: try again later.
    #[error("FAL's queue API is unavailable: {0}")]
    Unavailable(String),
    /// An answer we cannot read; also retried later, and logged.
    #[error("FAL's queue API answered unexpectedly: {0}")]
    Unexpected(String),
}

pub struct FalQueue {
    http: reqwest::Client,
    base: String,
    authorization: String,
}

impl FalQueue {
    pub fn new(base: &str, api_key: &Secret, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client with a timeout builds"),
            base: base.trim_end_matches('/').to_string(),
            authorization: format!("Key {}", api_key.expose()),
        }
    }

    pub async fn check(&self, app: &str, request_id: &str) -> Result<QueueAnswer, QueueError> {
        let status_url = format!("{}/{app}/requests/{request_id}/status", self.base);
        let (code, status) = self.get(&status_url).await?;
        match code {
            404 => return Ok(QueueAnswer::NotFound),
            200 | 202 => {}
            _ => return Err(unexpected(code, &status)),
        }
        match status.get("status").and_then(Value::as_str) {
            Some("IN_QUEUE" | "IN_PROGRESS") => Ok(QueueAnswer::Running),
            Some("COMPLETED") => self.result(app, request_id).await,
            // The bot's own status checker maps FAL's CANCELLED to the avatar's CANCELLED.
            Some("CANCELED" | "CANCELLED") => Ok(QueueAnswer::Finished(cancelled_body(request_id))),
            Some(other @ "FAILED") => Ok(QueueAnswer::Finished(error_body(
                request_id,
                &format!("FAL reports the request {other}"),
            ))),
            _ => Err(QueueError::Unexpected(format!(
                "status answer without a known status: {}",
                truncated(&status)
            ))),
        }
    }

    async fn result(&self, app: &str, request_id: &str) -> Result<QueueAnswer, QueueError> {
        let url = format!("{}/{app}/requests/{request_id}", self.base);
        let (code, result) = self.get(&url).await?;
        match code {
            200 => Ok(QueueAnswer::Finished(
                json!({
                    "request_id": request_id,
                    "gateway_request_id": request_id,
                    "status": "OK",
                    "payload": result,
                    "error": null,
                })
                .to_string(),
            )),
            404 => Ok(QueueAnswer::NotFound),
            // The training itself failed: FAL answers the result with its error.
            400..=499 if code != 429 => {
                let detail = result
                    .get("detail")
                    .map(|d| match d {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_else(|| truncated(&result));
                Ok(QueueAnswer::Finished(error_body(request_id, &detail)))
            }
            _ => Err(unexpected(code, &result)),
        }
    }

    async fn get(&self, url: &str) -> Result<(u16, Value), QueueError> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            // Without the URL: it is ours, but the error text is enough.
            .map_err(|e| QueueError::Unavailable(e.without_url().to_string()))?;
        let code = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| QueueError::Unavailable(e.without_url().to_string()))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((code, body))
    }
}

fn unexpected(code: u16, body: &Value) -> QueueError {
    if code == 429 || code >= 500 {
        QueueError::Unavailable(format!("HTTP {code}"))
    } else {
        QueueError::Unexpected(format!("HTTP {code}: {}", truncated(body)))
    }
}

/// A failed training in FAL's webhook format.
pub fn error_body(request_id: &str, error: &str) -> String {
    json!({
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "ERROR",
        "payload": null,
        "error": error,
    })
    .to_string()
}

/// A cancelled training, in the only callback format that has the word (the legacy one).
pub fn cancelled_body(request_id: &str) -> String {
    json!({
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "cancelled",
    })
    .to_string()
}

fn truncated(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
