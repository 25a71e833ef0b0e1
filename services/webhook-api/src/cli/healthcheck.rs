//! `healthcheck`: the container's HEALTHCHECK, asking this instance whether it is ready.

use std::process::ExitCode;
use std::time::Duration;

/// GET `http://127.0.0.1:$PORT/health/ready`: 0 when ready.
pub async fn check() -> ExitCode {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("http client");
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("{url}: {}", response.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}
