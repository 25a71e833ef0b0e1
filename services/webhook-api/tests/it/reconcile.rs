//! The FAL status reconciler against a local server that speaks FAL's queue API: a training no
//! callback finished is completed exactly once (even with two instances), a late webhook is a
//! duplicate, 5xx is retried, 404s end in `error`, and the API key goes where FAL wants it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::helpers::{fixture, AppOptions, Instance, TestApp, TestDatabase};

const API_KEY: &str = "fal-test-key-0123456789";
const PORTRAIT_APP: &str = "fal-ai/flux-lora-portrait-trainer";
const STYLE_APP: &str = "fal-ai/flux-pro-trainer";

type Script = Arc<Mutex<HashMap<String, VecDeque<(u16, Value)>>>>;
/// Each request's path and `Authorization` header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// FAL's queue API on loopback: scripted answers per path (the last one repeats), 404 with
/// FAL's body for anything else, and every request's path and `Authorization` recorded.
struct FakeFalQueue {
    base: String,
    script: Script,
    seen: Seen,
}

impl FakeFalQueue {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let script: Script = Arc::default();
        let seen: Seen = Arc::default();
        let (answers, log) = (script.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answers, log) = (answers.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<_>| {
                        let path = request.uri().path().to_string();
                        let authorization = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        log.lock().unwrap().push((path.clone(), authorization));
                        let (status, body) = {
                            let mut answers = answers.lock().unwrap();
                            match answers.get_mut(&path) {
                                Some(queue) if queue.len() > 1 => queue.pop_front().unwrap(),
                                Some(queue) => queue.front().cloned().unwrap(),
                                None => (404, json!({"detail": "Request not found"})),
                            }
                        };
                        async move {
                            let mut response =
                                Response::new(Full::new(Bytes::from(body.to_string())));
                            *response.status_mut() = StatusCode::from_u16(status).unwrap();
                            response
                                .headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { base, script, seen }
    }

    fn answer(&self, path: String, answers: Vec<(u16, Value)>) {
        self.script.lock().unwrap().insert(path, answers.into());
    }

    /// A training FAL finished: its status, then its result.
    fn completed(&self, request_id: &str, result: Value) {
        self.answer(
            status_path(request_id),
            vec![(200, json!({"status": "COMPLETED"}))],
        );
        self.answer(result_path(request_id), vec![(200, result)]);
    }

    fn hits(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }

    fn authorizations(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, a)| a.clone())
            .collect()
    }
}

fn status_path(request_id: &str) -> String {
    format!("/{PORTRAIT_APP}/requests/{request_id}/status")
}

fn result_path(request_id: &str) -> String {
    format!("/{PORTRAIT_APP}/requests/{request_id}")
}

fn reconciling(fal: &FakeFalQueue) -> AppOptions {
    AppOptions::default()
        .with("FAL_API_KEY", API_KEY)
        .with("FAL_QUEUE_URL", fal.base.clone())
        .with("RECONCILE_AFTER_SECS", "0")
        .with("RECONCILE_INTERVAL_MS", "100")
        .with("RECONCILE_RECHECK_MS", "50")
        .with("RECONCILE_REQUESTS_PER_SEC", "50")
        .with("RECONCILE_MAX_NOT_FOUND", "2")
}

async fn wait_for_status(app: &TestApp, avatar: Uuid, status: &str) {
    for _ in 0..100 {
        if app.avatar(avatar).await.status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "avatar {avatar} never reached {status}: {:?}",
        app.avatar(avatar).await
    );
}

#[tokio::test]
async fn a_training_without_a_callback_is_completed_once_even_with_two_instances() {
    let fal = FakeFalQueue::start().await;
    let webhook: Value = serde_json::from_str(&fixture("ok_flux_lora_fast_training.json")).unwrap();
    let request_id = webhook["request_id"].as_str().unwrap();
    // FAL's result endpoint answers with the training's output: the webhook's `payload`.
    fal.completed(request_id, webhook["payload"].clone());

    let api1 = TestApp::spawn_with(reconciling(&fal)).await;
    let api2 = TestApp::spawn_with(reconciling(&fal).shared_database(&api1.database.url)).await;
    let avatar = api1.insert_training_avatar(request_id).await;
    wait_for_status(&api1, avatar, "COMPLETED").await;
    // Several more cycles of both instances: nothing more happens.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let state = api1.avatar(avatar).await;
    assert_eq!(
        state.lora_url.as_deref(),
        webhook["payload"]["diffusers_lora_file"]["url"].as_str()
    );
    assert_eq!(
        fal.hits(&result_path(request_id)),
        1,
        "the result was fetched once"
    );
    let row = api1
        .db
        .query_one(
            "SELECT count(*), min(signature_scheme), min(outcome), max(deliveries) \
             FROM webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, String>(1), "reconciler");
    assert_eq!(row.get::<_, String>(2), "applied");
    assert_eq!(row.get::<_, i32>(3), 1);
    let jobs: i64 = api1
        .db
        .query_one("SELECT count(*) FROM file_jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 1, "one file job, as for a webhook");
    assert_eq!(api1.stream_len().await, 1);

    // FAL's webhook finally arrives: the same delivery, so a duplicate.
    let late = api2
        .post_fal(&fixture("ok_flux_lora_fast_training.json"))
        .await;
    assert_eq!(late.result(), "duplicate");
    assert_eq!(api1.avatar(avatar).await, state);

    // The key went as FAL expects it, on every request.
    let authorizations = fal.authorizations();
    assert!(!authorizations.is_empty());
    assert!(authorizations
        .iter()
        .all(|a| a.as_deref() == Some(&format!("Key {API_KEY}") as &str)));
    // One lease row: the instance that holds it records each run.
    let runs: i64 = api1
        .db
        .query_one(
            "SELECT count(*) FROM reconciler_lease WHERE last_run_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn fal_errors_are_retried_and_unknown_requests_end_in_error_after_the_configured_tries() {
    let fal = FakeFalQueue::start().await;
    let flaky = "req-flaky";
    fal.answer(
        status_path(flaky),
        vec![
            (500, json!({"detail": "internal error"})),
            (200, json!({"status": "COMPLETED"})),
        ],
    );
    fal.answer(
        result_path(flaky),
        vec![(
            200,
            json!({"diffusers_lora_file": {"url": "https://v3.fal.media/files/x/w.safetensors"}}),
        )],
    );
    let running = "req-running";
    fal.answer(
        status_path(running),
        vec![(200, json!({"status": "IN_PROGRESS", "queue_position": 0}))],
    );
    // A training the bot marked STYLE is asked about, and completed, under the style
    // trainer's app.
    let style = "req-style";
    fal.answer(
        format!("/{STYLE_APP}/requests/{style}/status"),
        vec![(200, json!({"status": "COMPLETED"}))],
    );
    fal.answer(
        format!("/{STYLE_APP}/requests/{style}"),
        vec![(
            200,
            json!({"diffusers_lora_file": {"url": "https://v3.fal.media/files/s/s.safetensors"}}),
        )],
    );
    let app = TestApp::spawn_with(reconciling(&fal)).await;
    let flaky_avatar = app.insert_training_avatar(flaky).await;
    let running_avatar = app.insert_training_avatar(running).await;
    let style_avatar = app.insert_training_avatar(style).await;
    app.db
        .execute(
            "UPDATE avatars SET training_type = 'STYLE' WHERE id = $1",
            &[&style_avatar],
        )
        .await
        .unwrap();
    let unknown_avatar = app.insert_training_avatar("req-unknown-to-fal").await;

    wait_for_status(&app, flaky_avatar, "COMPLETED").await;
    assert!(fal.hits(&status_path(flaky)) >= 2, "the 500 was retried");
    wait_for_status(&app, style_avatar, "COMPLETED").await;
    assert_eq!(
        app.avatar(style_avatar).await.lora_url.as_deref(),
        Some("https://v3.fal.media/files/s/s.safetensors")
    );

    wait_for_status(&app, unknown_avatar, "ERROR").await;
    let error = app.avatar(unknown_avatar).await.error.unwrap();
    assert!(
        error.contains("no record of request req-unknown-to-fal"),
        "{error}"
    );
    assert!(
        fal.hits(&status_path("req-unknown-to-fal")) >= 2,
        "not marked after a single 404"
    );

    assert_eq!(app.avatar(running_avatar).await.status, "TRAINING");
    let checked = app
        .db
        .query_one(
            "SELECT last_status_check IS NOT NULL, status_check_failures FROM avatars \
             WHERE id = $1",
            &[&running_avatar],
        )
        .await
        .unwrap();
    assert!(checked.get::<_, bool>(0), "checked");
    assert_eq!(checked.get::<_, i32>(1), 0, "and FAL knew it");
    // Never under the portrait trainer's app.
    assert_eq!(fal.hits(&status_path(style)), 0);

    let metrics = app.get("/metrics").await;
    let text = metrics.json.as_str().unwrap();
    for action in [
        "fal_error",
        "applied_result",
        "marked_error",
        "still_running",
    ] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "webhook_reconciler_actions_total{{action=\"{action}\"}}"
                ))
            })
            .unwrap();
        assert_ne!(line.rsplit(' ').next(), Some("0"), "{line}");
    }
}

#[tokio::test]
async fn the_real_binary_sends_the_key_to_fal_and_never_logs_it() {
    let fal = FakeFalQueue::start().await;
    fal.answer(
        status_path("req-logged"),
        vec![(503, json!({"detail": "overloaded"}))],
    );
    let database = TestDatabase::create().await;
    // Migrations first (an app), then the avatar, then the binary reconciles it.
    let app = TestApp::spawn_with(AppOptions::default().shared_database(&database.url)).await;
    app.insert_training_avatar("req-logged").await;
    let mut env: Vec<(&str, String)> = reconciling(&fal).env.into_iter().collect();
    env.extend([
        ("LOG_LEVEL", "debug".to_string()),
        ("LOG_FORMAT", "json".to_string()),
    ]);
    let mut instance = Instance::start_logged(&database.url, &env);
    instance.wait_ready().await;
    for _ in 0..100 {
        if fal.hits(&status_path("req-logged")) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    instance.stop();
    assert!(
        fal.hits(&status_path("req-logged")) >= 2,
        "retried with backoff"
    );
    assert!(fal
        .authorizations()
        .iter()
        .all(|a| a.as_deref() == Some(&format!("Key {API_KEY}") as &str)));
    let logs = instance.logs();
    assert!(logs.contains("FAL status check failed"), "{logs}");
    assert!(!logs.contains(API_KEY), "the FAL key reached the logs");
}

#[tokio::test]
async fn fal_cancelled_makes_the_avatar_cancelled() {
    let fal = FakeFalQueue::start().await;
    let request_id = "req-cancelled";
    fal.answer(
        status_path(request_id),
        vec![(200, json!({"status": "CANCELLED"}))],
    );
    let app = TestApp::spawn_with(reconciling(&fal)).await;
    let avatar = app.insert_training_avatar(request_id).await;
    wait_for_status(&app, avatar, "CANCELLED").await;
    assert_eq!(fal.hits(&result_path(request_id)), 0);
}

/// A training the reconciler finished tells its owner once, as a callback would, and the
/// callback arriving later sends nothing more.
#[tokio::test]
async fn a_reconciled_completion_tells_the_owner_once() {
    use crate::followups::{self as followups, FakeBotApi};
    let fal = FakeFalQueue::start().await;
    let webhook: Value = serde_json::from_str(&fixture("ok_flux_lora_fast_training.json")).unwrap();
    let request_id = webhook["request_id"].as_str().unwrap();
    fal.completed(request_id, webhook["payload"].clone());
    let db = followups::live_database().await;
    let bot_api = FakeBotApi::start().await;
    let mut options = followups::options(&db, &bot_api, &followups::mark_prefix());
    options.env.extend(reconciling(&fal).env);
    let app = TestApp::spawn_with(options).await;
    let (avatar, chat) = followups::training_avatar(&app, request_id, "Anna", "PORTRAIT").await;
    wait_for_status(&app, avatar, "COMPLETED").await;
    let (state, _) = followups::until_settled(&app, avatar, "notify_ready").await;
    assert_eq!(state, "done");
    let late = app
        .post_fal(&fixture("ok_flux_lora_fast_training.json"))
        .await;
    assert_eq!(late.result(), "duplicate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = bot_api.sent_to(chat);
    assert_eq!(sent.len(), 1);
    followups::aiogram_accepts(&sent[0].body);
}
