//! Start, health, observability and shutdown: including the real binary, as operators run it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{
    fixture, free_port, fresh_bucket, hmac_header, pg_connect, s3_env, shared_redis_url,
    AvatarsSchema, Instance, TestApp, TestDatabase, HMAC_SECRET, STATUS_UPDATE,
};

#[tokio::test]
async fn health_endpoints_report_instance_version_and_dependencies() {
    let app = TestApp::spawn().await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status, 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, 200);
    let health = app.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json["status"], "ok");
    assert_eq!(health.json["instance_id"], "it-instance");
    assert_eq!(health.json["version"], env!("CARGO_PKG_VERSION"));
    for dependency in ["postgres", "redis"] {
        assert_eq!(health.json["checks"][dependency]["status"], "ok");
        assert!(health.json["checks"][dependency]["latency_ms"].is_number());
    }
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let given = app
        .http
        .get(app.url("/health/live"))
        .header("X-Request-ID", "nginx-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "nginx-abc-123");
    let generated = app.get("/health/live").await;
    let id = generated.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "a fresh id: {id}");
    // The id is stored with the delivery, so a log line leads to the event.
    app.insert_training_avatar("test-123").await;
    let body = fixture("legacy_in_progress.json");
    let mut headers = vec![hmac_header(&body)];
    headers.push(("X-Request-ID", "trace-me-42".to_string()));
    app.post(STATUS_UPDATE, &body, &headers).await;
    let stored: String = app
        .db
        .query_one("SELECT http_request_id FROM webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "trace-me-42");
}

#[tokio::test]
async fn metrics_count_requests_outcomes_and_signature_failures() {
    let app = TestApp::spawn().await;
    app.insert_training_avatar("test-123").await;
    let body = fixture("legacy_in_progress.json");
    app.post_fal(&body).await;
    app.post_fal(&body).await;
    app.post(STATUS_UPDATE, &body, &[("X-Signature", "00".into())])
        .await;

    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = metrics.json.as_str().unwrap();
    for expected in [
        "webhook_callbacks_total{outcome=\"applied\"} 1",
        "webhook_callbacks_total{outcome=\"duplicate\"} 1",
        "webhook_signature_failures_total{reason=\"mismatch\"} 1",
        "webhook_http_requests_total{method=\"POST\",route=\"status_update\",status=\"200\"} 2",
        "webhook_http_requests_total{method=\"POST\",route=\"status_update\",status=\"401\"} 1",
        "webhook_db_pool_connections{state=\"size\"}",
        "webhook_http_request_duration_seconds_bucket{route=\"status_update\"",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
}

#[tokio::test]
async fn migrations_keep_the_bots_existing_avatars_table_and_data() {
    let database = TestDatabase::create_with(AvatarsSchema::Own).await;
    let db = pg_connect(&database.url).await;
    // The bot's table as it may already exist: fewer columns, its own data.
    db.batch_execute(
        "CREATE TABLE avatars (
             id uuid PRIMARY KEY, user_id uuid NOT NULL, name text NOT NULL,
             status text NOT NULL, fal_request_id text, photo_count int NOT NULL DEFAULT 0,
             created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO avatars (id, user_id, name, status, fal_request_id, photo_count) VALUES
             ('11111111-1111-4111-8111-111111111111', '22222222-2222-4222-8222-222222222222',
              'Existing', 'training', 'bot-req-1', 12);",
    )
    .await
    .unwrap();

    let mut instance = Instance::start(&database.url);
    instance.wait_ready().await;
    let body = r#"{"request_id":"bot-req-1","status":"completed"}"#;
    let answer = instance.post_hmac(body).await;
    assert_eq!(answer, 200);

    let row = db
        .query_one(
            "SELECT name, photo_count, status, training_progress, lora_object_key FROM avatars",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Existing");
    assert_eq!(
        row.get::<_, i32>(1),
        12,
        "the bot's own columns are untouched"
    );
    assert_eq!(row.get::<_, String>(2), "COMPLETED");
    assert_eq!(row.get::<_, i32>(3), 100);
    assert_eq!(
        row.get::<_, Option<String>>(4),
        None,
        "our columns were added"
    );
    instance.stop();
}

#[tokio::test]
async fn two_instances_migrating_an_empty_database_at_once_both_start() {
    let database = TestDatabase::create().await;
    let mut first = Instance::start(&database.url);
    let mut second = Instance::start(&database.url);
    first.wait_ready().await;
    second.wait_ready().await;
    let db = pg_connect(&database.url).await;
    let applied: i64 = db
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count() as i64;
    assert_eq!(applied, migrations, "each migration recorded once");
    first.stop();
    second.stop();
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_request_finish_then_exits_promptly() {
    let database = TestDatabase::create().await;
    let mut instance = Instance::start(&database.url);
    instance.wait_ready().await;
    pg_connect(&database.url)
        .await
        .execute(
            "INSERT INTO avatars (user_id, status, fal_request_id) VALUES (gen_random_uuid(), 'TRAINING', 'slow-1')",
            &[],
        )
        .await
        .unwrap();

    // A sender mid-way through its body when the instance is told to stop.
    let body = r#"{"request_id":"slow-1","status":"completed"}"#;
    let signature = hmac_header(body).1;
    let port = instance.port;
    let (head_sent, head_sent_rx) = std::sync::mpsc::channel();
    let (finish, finish_rx) = std::sync::mpsc::channel::<()>();
    let sender = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "POST {STATUS_UPDATE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             X-Signature: {signature}\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        )
        .unwrap();
        head_sent.send(()).unwrap();
        finish_rx.recv().unwrap();
        stream.write_all(&body.as_bytes()[10..]).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    });
    head_sent_rx.recv().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = Instant::now();
    instance.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: no new connections are taken.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    finish.send(()).unwrap();
    let answer = sender.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"applied\""), "{answer}");

    let status = instance.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_bad_configuration_stops_the_start_with_one_line_naming_the_variable() {
    let run = |env: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_webhook-api"))
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    let (code, stderr) = run(&[("REDIS_URL", "redis://127.0.0.1:6379")]);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr.trim(),
        "webhook-api: configuration: DATABASE_URL: is required but not set (nor is DATABASE_URL_FILE)"
    );

    let (code, stderr) = run(&[
        ("DATABASE_URL", "postgresql://u:hunter2@127.0.0.1/db"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("ENVIRONMENT", "production"),
        ("WEBHOOK_ALLOW_UNSIGNED", "true"),
        ("FAL_WEBHOOK_SECRET", "topsecret"),
    ]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("WEBHOOK_ALLOW_UNSIGNED"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stderr.contains("topsecret"));
}

#[tokio::test]
async fn production_logs_are_json_lines_carrying_the_request_id() {
    let database = TestDatabase::create().await;
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_webhook-api"))
        .env_clear()
        .envs(s3_env(&fresh_bucket()))
        .env("ENVIRONMENT", "development")
        .env("LOG_FORMAT", "json")
        .env("DATABASE_URL", &database.url)
        .env("REDIS_URL", shared_redis_url())
        .env("FAL_WEBHOOK_SECRET", HMAC_SECRET)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut instance = Instance::from_child(child, port);
    instance.wait_ready().await;
    let body = r#"{"request_id":"log-1","status":"in_progress"}"#;
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{STATUS_UPDATE}"))
        .header("Content-Type", "application/json")
        .header("X-Request-ID", "log-trace-7")
        .header(hmac_header(body).0, hmac_header(body).1)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    instance.stop();

    let mut logs = String::new();
    instance
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // One line per callback: its answer, with what was committed.
    let answered: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "log-trace-7")
        .collect();
    assert_eq!(answered.len(), 1, "{answered:?}");
    assert_eq!(answered[0]["message"], "answered");
    assert_eq!(answered[0]["status"], 200);
    assert_eq!(answered[0]["span"]["outcome"], "unmatched");
    assert_eq!(answered[0]["span"]["event"], "in_progress");
    assert_eq!(answered[0]["span"]["fal_request_id"], "log-1");
    assert!(answered[0]["span"]["event_id"].is_number());
    assert!(!logs.contains(HMAC_SECRET), "secrets never logged");
}

#[tokio::test]
async fn refusals_past_log_refusals_per_sec_are_summed_up_not_logged_one_by_one() {
    let database = TestDatabase::create().await;
    let mut instance = Instance::start_logged(
        &database.url,
        &[
            ("LOG_LEVEL", "info".into()),
            ("LOG_FORMAT", "json".into()),
            ("LOG_REFUSALS_PER_SEC", "3".into()),
        ],
    );
    instance.wait_ready().await;
    let forged = |n: usize| {
        let url = format!("http://127.0.0.1:{}{STATUS_UPDATE}", instance.port);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/json")
                .header("X-Request-ID", format!("forged-{n}"))
                .header("X-Signature", format!("sha256={}", "0".repeat(64)))
                .body(r#"{"request_id":"x","status":"completed"}"#)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for n in 0..10 {
        assert_eq!(forged(n).await, 401);
    }
    // The next second's first refusal is logged, after the count of those left out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(forged(10).await, 401);
    instance.stop();

    let lines: Vec<serde_json::Value> = instance
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let logged: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "answered" && l["status"] == 401)
        .filter_map(|l| l["span"]["request_id"].as_str())
        .collect();
    assert_eq!(logged, ["forged-0", "forged-1", "forged-2", "forged-10"]);
    let summaries: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("not logged"))
        })
        .collect();
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0]["unlogged"], 7);
    assert_eq!(summaries[0]["per_second"], 3);
}
