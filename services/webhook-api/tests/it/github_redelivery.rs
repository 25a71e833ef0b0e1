//! GitHub's redelivery, used, against a local server that speaks GitHub's webhook deliveries
//! API (pages linked by `Link: …cursor=…; rel="next"`) and, like GitHub, sends a delivery
//! again when asked: what never reached us is redelivered once, nothing else is.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::helpers::{eventually, AppOptions, TestApp};
use crate::sources::{body_for, signed};

const TOKEN: &str = "ghp_test0123456789abcdefghijklmnopqrstuv";
const HOOK: &str = "repos/team/bot/hooks/7";

/// A delivery attempt GitHub lists, with the body it would send again.
#[derive(Clone)]
struct Attempt {
    id: i64,
    guid: String,
    minutes_ago: i64,
    status_code: u16,
    body: String,
}

/// What the fake saw: each request's method, path (with query) and `Authorization`.
type Seen = Arc<Mutex<Vec<(Method, String, Option<String>)>>>;

struct FakeGithub {
    base: String,
    seen: Seen,
    /// Where a redelivery goes: the app, once it runs.
    app_url: Arc<OnceLock<String>>,
}

impl FakeGithub {
    /// Lists `attempts` newest first, 3 a page; on `POST …/deliveries/{id}/attempts` posts that
    /// delivery to `app_url` as GitHub does (same guid, signed), then answers 202.
    async fn start(attempts: Vec<Attempt>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let app_url: Arc<OnceLock<String>> = Arc::default();
        let deliver_to = app_url.clone();
        let mut attempts = attempts;
        attempts.sort_by_key(|a| a.minutes_ago);
        let attempts = Arc::new(attempts);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (attempts, log, app_url) = (attempts.clone(), log.clone(), deliver_to.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<_>| {
                        let (attempts, log, app_url) =
                            (attempts.clone(), log.clone(), app_url.clone());
                        async move {
                            let app_url = app_url.get().cloned().unwrap_or_default();
                            let (status, body, link) =
                                answer(&request, &attempts, &app_url, &log).await;
                            let _ = request.into_body().collect().await;
                            let mut response = Response::new(Full::new(Bytes::from(body)));
                            *response.status_mut() = status;
                            if let Some(link) = link {
                                response.headers_mut().insert("link", link.parse().unwrap());
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            base,
            seen,
            app_url,
        }
    }

    fn redelivery_requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(method, _, _)| method == Method::POST)
            .map(|(_, path, _)| path.clone())
            .collect()
    }
}

async fn answer(
    request: &hyper::Request<hyper::body::Incoming>,
    attempts: &[Attempt],
    app_url: &str,
    log: &Seen,
) -> (StatusCode, String, Option<String>) {
    let path = request.uri().path().to_string();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    log.lock().unwrap().push((
        request.method().clone(),
        request.uri().to_string(),
        authorization.clone(),
    ));
    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Bad credentials"}).to_string(),
            None,
        );
    }
    let list = format!("/{HOOK}/deliveries");
    if request.method() == Method::GET && path == list {
        let start: usize = request
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("cursor=")))
            .map_or(0, |c| c.parse().unwrap());
        let page: Vec<Value> = attempts.iter().skip(start).take(3).map(listed).collect();
        let next = (start + 3 < attempts.len()).then(|| {
            format!(
                "<https://api.github.com/{HOOK}/deliveries?per_page=100&cursor={}>; rel=\"next\"",
                start + 3
            )
        });
        return (StatusCode::OK, Value::Array(page).to_string(), next);
    }
    let redeliver = path
        .strip_prefix(&format!("{list}/"))
        .and_then(|rest| rest.strip_suffix("/attempts"))
        .and_then(|id| id.parse::<i64>().ok());
    match (request.method(), redeliver) {
        (&Method::POST, Some(id)) => {
            let Some(attempt) = attempts.iter().find(|a| a.id == id) else {
                return (StatusCode::NOT_FOUND, "{}".into(), None);
            };
            let mut post = reqwest::Client::new()
                .post(app_url)
                .header("Content-Type", "application/json")
                .body(attempt.body.clone());
            for (name, value) in signed("github", "gh-new", &attempt.guid, &attempt.body) {
                post = post.header(name, value);
            }
            post.send().await.unwrap();
            (StatusCode::ACCEPTED, "{}".into(), None)
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found"}).to_string(),
            None,
        ),
    }
}

/// An attempt as GitHub's API lists it.
fn listed(attempt: &Attempt) -> Value {
    let at = chrono::Utc::now() - chrono::Duration::minutes(attempt.minutes_ago);
    json!({
        "id": attempt.id, "guid": attempt.guid,
        "delivered_at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "redelivery": false, "duration": 0.2,
        "status": if attempt.status_code == 0 { "timed out".into() } else { attempt.status_code.to_string() },
        "status_code": attempt.status_code, "event": "push", "action": null,
        "installation_id": null, "repository_id": 1
    })
}

fn attempt(id: i64, guid: &str, minutes_ago: i64, status_code: u16) -> Attempt {
    Attempt {
        id,
        guid: guid.into(),
        minutes_ago,
        status_code,
        body: body_for("github", id as u32),
    }
}

#[tokio::test]
async fn deliveries_github_failed_to_bring_are_redelivered_once() {
    // Stored here although GitHub saw no answer (ours was too late): not asked for again.
    let late = attempt(4, "g-late", 20, 0);
    let attempts = vec![
        attempt(1, "g-ok", 5, 200),
        attempt(2, "g-lost", 30, 503),
        attempt(3, "g-lost", 10, 0),
        late.clone(),
        attempt(5, "g-tried", 40, 500),
        attempt(6, "g-tried", 35, 500),
        attempt(7, "g-tried", 32, 500),
        // On the third page.
        attempt(8, "g-page-two", 45, 502),
        // Older than the look-back: GitHub's list goes on, the run stops here.
        attempt(9, "g-old", 120, 503),
    ];
    let fake = FakeGithub::start(attempts).await;
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with("WEBHOOK_SOURCES", "github:github")
            .with("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-new")
            .with("WEBHOOK_SOURCE_GITHUB_REDELIVER_HOOK", HOOK)
            .with("WEBHOOK_SOURCE_GITHUB_REDELIVER_TOKEN", TOKEN)
            .with("GITHUB_API_URL", fake.base.clone())
            .with("GITHUB_REDELIVER_INTERVAL_MS", "1000")
            .with("GITHUB_REDELIVER_LOOKBACK_SECS", "3600")
            .with("GITHUB_REDELIVER_MAX_ATTEMPTS", "3"),
    )
    .await;
    fake.app_url
        .set(app.url("/api/v1/webhooks/github"))
        .unwrap();
    let answer = app
        .post(
            "/api/v1/webhooks/github",
            &late.body,
            &signed("github", "gh-new", "g-late", &late.body),
        )
        .await;
    assert_eq!(answer.result(), "accepted");

    let both = eventually(Duration::from_secs(10), || async {
        fake.redelivery_requests().len() >= 2
    })
    .await;
    assert!(both, "{:?}", fake.redelivery_requests());
    // More runs: what arrived is stored, nothing is asked for twice.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut asked = fake.redelivery_requests();
    asked.sort();
    assert_eq!(
        asked,
        [
            format!("/{HOOK}/deliveries/3/attempts"),
            format!("/{HOOK}/deliveries/8/attempts"),
        ]
    );
    let guids: Vec<String> = app
        .db
        .query(
            "SELECT delivery_id FROM webhook_events ORDER BY delivery_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(guids, ["g-late", "g-lost", "g-page-two"]);
    let seen = fake.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|(_, uri, _)| uri.contains("cursor=3")),
        "the second page was read"
    );
    assert!(
        seen.iter()
            .all(|(_, _, auth)| auth.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "every request carries the token"
    );
    let metrics = app.get("/metrics").await.json;
    assert!(metrics
        .as_str()
        .unwrap()
        .contains(r#"webhook_github_redeliveries_total{result="requested",source="github"} 2"#));
}
