//! `webhook-api send-test`: a callback in FAL's own format, signed as FAL's HMAC senders sign
//! it, sent to a URL; the answer is printed. It proves the whole path an operator cares about:
//! TLS and nginx, the signature, the database (a made-up request id is stored `unmatched`).

use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, Secret};
use crate::verify::hmac;

pub struct SendTest {
    pub url: String,
    pub request_id: String,
    /// A PEM file of the CA that signed the server's certificate (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendTestError {
    #[error("FAL_WEBHOOK_SECRET is not set: nothing to sign with")]
    NoSecret,
    #[error("{0}")]
    Setup(String),
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("answered {status}: {body}")]
    Refused { status: u16, body: String },
}

/// The body, as FAL sends a failed training (`status: ERROR`), for `request_id`.
pub fn body(request_id: &str) -> String {
    serde_json::json!({
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "ERROR",
        "error": "webhook-api send-test: a signed test callback",
        "payload": null,
    })
    .to_string()
}

/// Signs with the newest of FAL_WEBHOOK_SECRET's secrets (the last of the list), sends, and
/// returns the status and body of a 2xx answer.
pub async fn run(test: &SendTest, secrets: &str) -> Result<(u16, String), SendTestError> {
    let secret = secrets
        .split(',')
        .map(str::trim)
        .rfind(|s| !s.is_empty())
        .map(Secret::new)
        .ok_or(SendTestError::NoSecret)?;
    let body = body(&test.request_id);
    let signature = hmac::sign(&secret, body.as_bytes());
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(15));
    if let Some(path) = &test.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| SendTestError::Setup(format!("{}: {e}", path.display())))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| SendTestError::Setup(format!("{}: {e}", path.display())))?;
        client = client.add_root_certificate(ca);
    }
    let client = client
        .build()
        .map_err(|e| SendTestError::Setup(e.to_string()))?;
    let unreachable = |e: reqwest::Error| SendTestError::Unreachable {
        url: test.url.clone(),
        reason: crate::telemetry::error_chain(&e),
    };
    let response = client
        .post(&test.url)
        .header("Content-Type", "application/json")
        .header("X-Signature", format!("sha256={signature}"))
        .body(body)
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(unreachable)?;
    if (200..300).contains(&status) {
        Ok((status, text))
    } else {
        Err(SendTestError::Refused { status, body: text })
    }
}

/// `send-test`: sends one signed callback and prints the answer (0 on a 2xx).
pub async fn command(
    url: String,
    request_id: Option<String>,
    ca_file: Option<std::path::PathBuf>,
) -> ExitCode {
    let test = SendTest {
        url,
        request_id: request_id.unwrap_or_else(|| format!("send-test-{}", uuid::Uuid::new_v4())),
        ca_file,
    };
    let Some(secrets) = super::configured(Config::secret_from_env("FAL_WEBHOOK_SECRET")) else {
        return ExitCode::from(2);
    };
    let secrets = secrets.unwrap_or_default();
    println!("POST {} (request_id {})", test.url, test.request_id);
    match run(&test, &secrets).await {
        Ok((status, body)) => {
            println!("{status} {body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("webhook-api send-test: {e}");
            ExitCode::FAILURE
        }
    }
}
