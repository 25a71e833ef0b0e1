//! `healthcheck`: the container's HEALTHCHECK, asking this instance whether it is ready.

use std::process::ExitCode;
use std::time::Duration;

/// GET `http://127.0.0.1:$PORT/health/ready`: 0 when ready.
pub async fn check() -> ExitCode {
    let port = match crate::config::Config::port_from_env() {
        Ok(port) => port,
        Err(e) => {
            eprintln!("webhook-api: {e}");
            return ExitCode::FAILURE;
        }
    };
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
