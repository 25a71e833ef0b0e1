//! `deliver`: each of a set of completions once, as FAL sends them: at a steady rate, every
//! callback on a connection of its own, and retried on a 5xx answer or a broken connection
//! until it is acknowledged. Prints a JSON summary, every 5xx answer and broken connection
//! counted (retried or not), so a script can tell "acknowledged" from "lost".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde::Serialize;

use crate::callbacks::Signer;
use crate::client::Target;

pub struct Plan {
    /// Request ids `{prefix}1` ..= `{prefix}{count}`.
    pub prefix: String,
    pub count: u64,
    /// The body, with `{request_id}` replaced by each id.
    pub body: String,
    pub rate: f64,
    /// Tries of one callback before it counts as failed.
    pub tries: u32,
    pub retry_after: Duration,
    pub timeout: Duration,
    /// Once this file exists no new callback starts (those started still finish).
    pub stop_file: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub retried_callbacks: u64,
    pub retries: u64,
    pub answers_5xx: u64,
    pub connection_errors: u64,
    /// The answers' `result` (`applied`, `duplicate`, …), counted.
    pub results: BTreeMap<String, u64>,
    /// What a callback answered 4xx, the first one: a refused callback is not retried.
    pub refused: Option<String>,
    pub unsent: u64,
}

pub async fn deliver(target: Arc<Target>, signer: Arc<Signer>, plan: Plan) -> Summary {
    let summary = Arc::new(Mutex::new(Summary::default()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    let plan = Arc::new(plan);
    for n in 1..=plan.count {
        ticks.tick().await;
        if plan.stop_file.as_ref().is_some_and(|f| f.exists()) {
            break;
        }
        summary.lock().expect("not poisoned").sent += 1;
        let request_id = format!("{}{n}", plan.prefix);
        let (target, signer, plan, summary) = (
            target.clone(),
            signer.clone(),
            plan.clone(),
            summary.clone(),
        );
        tasks.spawn(async move {
            send_until_acknowledged(&target, &signer, &plan, &request_id, &summary).await
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut summary = Arc::try_unwrap(summary)
        .expect("every task ended")
        .into_inner()
        .expect("not poisoned");
    summary.unsent = plan.count - summary.sent;
    summary
}

async fn send_until_acknowledged(
    target: &Target,
    signer: &Signer,
    plan: &Plan,
    request_id: &str,
    summary: &Mutex<Summary>,
) {
    let body = Bytes::from(plan.body.replace("{request_id}", request_id));
    for attempt in 1..=plan.tries {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(target.request_uri.clone())
            .header(http::header::HOST, target.host_header.clone());
        for (name, value) in signer.headers(request_id, &body, false) {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body.clone()))
            .expect("a valid request");
        let answer = tokio::time::timeout(plan.timeout, async {
            target.connect().await?.send(request).await
        })
        .await;
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => {
                summary.lock().expect("not poisoned").connection_errors += 1;
                tokio::time::sleep(plan.retry_after).await;
                continue;
            }
        };
        let status = answer.status();
        if status.is_server_error() {
            summary.lock().expect("not poisoned").answers_5xx += 1;
            tokio::time::sleep(plan.retry_after).await;
            continue;
        }
        let mut summary = summary.lock().expect("not poisoned");
        if status.is_success() {
            let result = serde_json::from_slice::<serde_json::Value>(answer.body())
                .ok()
                .and_then(|v| v.get("result")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "?".into());
            *summary.results.entry(result).or_default() += 1;
            summary.ok += 1;
            if attempt > 1 {
                summary.retried_callbacks += 1;
                summary.retries += u64::from(attempt - 1);
            }
        } else {
            // Refused (4xx, or anything not a success): FAL does not retry it either.
            summary.failed += 1;
            summary.refused.get_or_insert_with(|| {
                format!("{status} {}", String::from_utf8_lossy(answer.body()))
            });
        }
        return;
    }
    summary.lock().expect("not poisoned").failed += 1;
}
