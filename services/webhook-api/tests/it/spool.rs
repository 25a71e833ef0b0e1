//! The spool: deliveries of senders that never retry (GitHub, Gitea, Plane) are kept on the
//! instance's disk while PostgreSQL is cut, answered 2xx, and reach PostgreSQL and their
//! stream exactly once when it is back, even across a SIGKILL.

use std::collections::HashSet;

use std::time::Duration;
use tokio::process::Command;

use futures::future::join_all;

use crate::helpers::{
    database_socket, database_url_via, eventually, refuse_payloads_containing, shared_redis_url,
    stream_entries, AppOptions, ChaosProxy, Instance, TestApp, TestDatabase,
};
use crate::sources::{body_for, signed, sources_app};

/// One delivery as its sender would send it: the path, the body, the signed headers.
struct Sent {
    source: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

fn delivery(source: &'static str, n: u32, delivery_id: &str) -> Sent {
    let secret = match source {
        "github" => "gh-new",
        "plane" => "plane-secret",
        "jobs" => "jobs-secret",
        other => panic!("no secret for {other}"),
    };
    let body = body_for(source, n);
    let headers = signed(source, secret, delivery_id, &body);
    Sent {
        source,
        body,
        headers,
    }
}

/// 100 GitHub and 100 Plane deliveries, then 10 of each sent again: GitHub's redelivery keeps
/// its id, Plane's retry carries a new one.
fn outage_traffic() -> Vec<Sent> {
    let mut sent = Vec::new();
    for n in 0..100 {
        sent.push(delivery("github", n, &format!("gh-{n}")));
        sent.push(delivery("plane", n, &format!("pl-{n}")));
    }
    for n in 0..10 {
        sent.push(delivery("github", n, &format!("gh-{n}")));
        sent.push(delivery("plane", n, &format!("pl-retry-{n}")));
    }
    sent
}

/// Sends every delivery to `base` at `per_second`, each on its own schedule (a slow answer
/// does not slow the sender down); returns each answer's status and body.
async fn send_paced(base: &str, sent: &[Sent], per_second: u32) -> Vec<(u16, serde_json::Value)> {
    let client = reqwest::Client::new();
    let start = tokio::time::Instant::now();
    let gap = Duration::from_secs(1) / per_second;
    join_all(sent.iter().enumerate().map(|(i, sent)| {
        let client = client.clone();
        async move {
            tokio::time::sleep_until(start + gap * i as u32).await;
            let mut request = client
                .post(format!("{base}/api/v1/webhooks/{}", sent.source))
                .header("Content-Type", "application/json")
                .body(sent.body.clone());
            for (name, value) in &sent.headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.expect("answered");
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or_default())
        }
    }))
    .await
}

async fn count_events(db: &tokio_postgres::Client, source: &str) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT count(*), coalesce(sum(deliveries), 0)::bigint FROM webhook_events \
             WHERE source = $1",
            &[&source],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The stream's entries' delivery ids, asserting none is there twice.
async fn announced_once(redis: &mut redis::aio::MultiplexedConnection, stream: &str) -> usize {
    let entries = stream_entries(redis, stream).await;
    let ids: HashSet<String> = entries
        .iter()
        .map(|e| e.get::<String>("event_id").unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        entries.len(),
        "{stream}: an event announced twice"
    );
    entries.len()
}

#[tokio::test]
async fn deliveries_during_an_outage_are_spooled_then_stored_and_announced_once() {
    let proxy = ChaosProxy::start(database_socket()).await;
    let app = TestApp::spawn_with(AppOptions {
        database_via: Some(proxy.address),
        ..sources_app()
    })
    .await;
    let mut redis = app.redis.clone();

    proxy.cut();
    let sent = outage_traffic();
    let answers = send_paced(&app.address, &sent, 50).await;
    for (status, body) in &answers {
        assert_eq!(*status, 202, "{body}");
        assert_eq!(body["result"], "spooled", "{body}");
        assert!(body["event_id"].is_null(), "{body}");
    }
    let health = app.get("/health").await;
    assert_eq!(health.status, 503, "PostgreSQL is down: {}", health.json);
    let spool = &health.json["checks"]["spool"];
    assert_eq!(spool["waiting"], 220, "{spool}");
    assert_eq!(spool["status"], "degraded");

    // An operator's status, with PostgreSQL still away, shows the spool from Redis.
    let cut_url = database_url_via(proxy.address, &app.database.url);
    let status = eventually(Duration::from_secs(10), || async {
        status_output(&app, &cut_url)
            .await
            .0
            .contains("220 waiting")
    })
    .await;
    let (text, succeeded) = status_output(&app, &cut_url).await;
    assert!(status, "{text}");
    assert!(
        text.contains("it-instance") && text.contains("PostgreSQL: unavailable"),
        "{text}"
    );
    assert!(!succeeded, "status fails while PostgreSQL is unavailable");

    let restored_at = chrono::Utc::now();
    proxy.restore();
    let drained = eventually(Duration::from_secs(40), || async {
        app.get("/health").await.json["checks"]["spool"]["waiting"] == 0
    })
    .await;
    assert!(drained, "the spool drained once PostgreSQL was back");

    assert_eq!(count_events(&app.db, "github").await, (100, 110));
    assert_eq!(count_events(&app.db, "plane").await, (100, 110));
    let late: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM webhook_events WHERE received_at > $1",
            &[&restored_at],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(late, 0, "rows keep the time the delivery reached us");
    for source in ["github", "plane"] {
        let stream = format!("{}webhooks:{source}", app.prefix);
        assert_eq!(announced_once(&mut redis, &stream).await, 100, "{source}");
    }
    let metrics = app.get("/metrics").await.json;
    let metrics = metrics.as_str().unwrap();
    for line in [
        "webhook_spooled_total{source=\"github\"} 110",
        "webhook_spool_drained_total{source=\"plane\"} 110",
        "webhook_spool_deliveries 0",
        "webhook_spool_bytes 0",
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
    assert_eq!(app.get("/health").await.json["status"], "ok");
}

/// `webhook-api status` as an operator runs it, against `database_url` (awaited, so the app
/// and the proxy on this runtime go on answering meanwhile).
async fn status_output(app: &TestApp, database_url: &str) -> (String, bool) {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-api"))
        .arg("status")
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("DB_TIMEOUT_SECS", "2")
        .env("REDIS_URL", app.config.redis.url.expose())
        .env("REDIS_KEY_PREFIX", &app.prefix)
        .env("MINIO_ENDPOINT", "127.0.0.1:9000")
        .env("MINIO_ACCESS_KEY", "unused")
        .env("MINIO_SECRET_KEY", "unused")
        .env("MINIO_BUCKET_NAME", "unused")
        .env("LOG_LEVEL", "error")
        .output()
        .await
        .unwrap();
    (
        String::from_utf8(output.stdout).unwrap(),
        output.status.success(),
    )
}

// Several threads: `wait_ready` blocks on the `healthcheck` command while the proxy, on this
// runtime, must go on forwarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_survives_sigkill_and_drains_after_restart() {
    let database = TestDatabase::create().await;
    let proxy = ChaosProxy::start(database_socket()).await;
    let spool_dir = tempfile::tempdir().unwrap();
    let prefix = format!("it-kill-{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("WEBHOOK_SOURCES", "github:github".to_string()),
        ("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-new".to_string()),
        ("SPOOL_DIR", spool_dir.path().display().to_string()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
        ("DB_STARTUP_WAIT_SECS", "60".to_string()),
        ("DB_TIMEOUT_SECS", "2".to_string()),
    ];
    let via_proxy = database_url_via(proxy.address, &database.url);
    let mut instance = Instance::start_with(&via_proxy, &env);
    instance.wait_ready().await;

    proxy.cut();
    let sent: Vec<Sent> = (0..30)
        .map(|n| delivery("github", n, &format!("kill-{n}")))
        .collect();
    let base = format!("http://127.0.0.1:{}", instance.port);
    for (status, body) in send_paced(&base, &sent, 50).await {
        assert_eq!(status, 202, "{body}");
    }
    instance.signal("KILL");
    instance.wait_exit(Duration::from_secs(5));

    // Back on the same disk while PostgreSQL is still away; PostgreSQL returns a little later.
    let mut restarted = Instance::start_with(&via_proxy, &env);
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();
    restarted.wait_ready().await;

    let db = crate::helpers::pg_connect(&database.url).await;
    let stored = eventually(Duration::from_secs(30), || async {
        count_events(&db, "github").await == (30, 30)
    })
    .await;
    assert!(stored, "{:?}", count_events(&db, "github").await);
    let mut redis = redis::Client::open(shared_redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = format!("{prefix}webhooks:github");
    let announced = eventually(Duration::from_secs(10), || {
        let mut redis = redis.clone();
        let stream = stream.clone();
        async move { stream_entries(&mut redis, &stream).await.len() == 30 }
    })
    .await;
    assert!(announced);
    assert_eq!(announced_once(&mut redis, &stream).await, 30);
    restarted.stop();
}

#[tokio::test]
async fn a_full_spool_and_a_source_that_does_not_spool_answer_503() {
    let proxy = ChaosProxy::start(database_socket()).await;
    let app = TestApp::spawn_with(
        AppOptions {
            database_via: Some(proxy.address),
            ..sources_app()
        }
        .with("SPOOL_MAX_BYTES", "4000")
        .with("WEBHOOK_SOURCE_PLANE_SPOOL", "false"),
    )
    .await;
    proxy.cut();

    // The job contract's senders retry, so `jobs` never spools; Plane's is turned off.
    for sent in [delivery("jobs", 1, ""), delivery("plane", 1, "pl-off")] {
        let answer = app
            .post(
                &format!("/api/v1/webhooks/{}", sent.source),
                &sent.body,
                &sent.headers,
            )
            .await;
        assert_eq!(answer.status, 503, "{}: {:?}", sent.source, answer.json);
        assert_eq!(answer.error(), "database_unavailable");
    }
    let mut spooled: i64 = 0;
    let mut refused = None;
    for n in 0..10 {
        let sent = delivery("github", n, &format!("full-{n}"));
        let answer = app
            .post("/api/v1/webhooks/github", &sent.body, &sent.headers)
            .await;
        match answer.status {
            202 => spooled += 1,
            _ => {
                refused = Some(answer);
                break;
            }
        }
    }
    let refused = refused.expect("the spool filled up");
    assert_eq!(refused.status, 503, "{:?}", refused.json);
    assert_eq!(refused.error(), "database_unavailable");
    assert!(refused.headers.contains_key("retry-after"));
    assert!(spooled >= 1, "a delivery fits in 4000 bytes");

    proxy.restore();
    let stored = eventually(Duration::from_secs(30), || async {
        count_events(&app.db, "github").await.0 == spooled
    })
    .await;
    assert!(stored, "what was spooled is stored");
    assert_eq!(count_events(&app.db, "plane").await, (0, 0));
}

#[tokio::test]
async fn a_hung_database_spools_before_the_sender_gives_up() {
    let proxy = ChaosProxy::start(database_socket()).await;
    let app = TestApp::spawn_with(AppOptions {
        database_via: Some(proxy.address),
        ..sources_app()
    })
    .await;
    // Connections are accepted and never answered: without SPOOL_AFTER_MS (2 s) the delivery
    // would wait for the connect timeout (5 s), past Gitea's own 5 s.
    proxy.stall();
    let sent = delivery("github", 1, "hung-1");
    let started = std::time::Instant::now();
    let answer = app
        .post("/api/v1/webhooks/github", &sent.body, &sent.headers)
        .await;
    let waited = started.elapsed();
    assert_eq!(answer.status, 202, "{:?}", answer.json);
    assert!(
        waited < Duration::from_millis(4500),
        "answered after {waited:?}"
    );

    proxy.restore();
    let stored = eventually(Duration::from_secs(30), || async {
        count_events(&app.db, "github").await == (1, 1)
    })
    .await;
    assert!(stored);
}

#[tokio::test]
async fn a_spooled_delivery_postgresql_refuses_is_held_and_the_rest_drain() {
    let proxy = ChaosProxy::start(database_socket()).await;
    let app = TestApp::spawn_with(AppOptions {
        database_via: Some(proxy.address),
        ..sources_app()
    })
    .await;
    // A delivery PostgreSQL refuses: with PostgreSQL up it is a 400; spooled, it cannot be
    // stored later, and must neither vanish nor block the deliveries behind it.
    refuse_payloads_containing(&app.db, "poison-pill").await;
    proxy.cut();
    let unstorable = r#"{"ref":"refs/heads/main","note":"poison-pill"}"#.to_string();
    let headers = signed("github", "gh-new", "nul-1", &unstorable);
    let answer = app
        .post("/api/v1/webhooks/github", &unstorable, &headers)
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.json);
    let behind = delivery("github", 7, "after-nul");
    let answer = app
        .post("/api/v1/webhooks/github", &behind.body, &behind.headers)
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.json);

    proxy.restore();
    let drained = eventually(Duration::from_secs(30), || async {
        app.get("/health").await.json["checks"]["spool"]["waiting"] == 0
    })
    .await;
    assert!(drained);
    let health = app.get("/health").await.json;
    assert_eq!(health["checks"]["spool"]["held"], 1, "{health}");
    assert_eq!(
        health["status"], "degraded",
        "a held delivery wants an operator"
    );
    assert_eq!(count_events(&app.db, "github").await, (1, 1));
    let metrics = app.get("/metrics").await.json;
    assert!(metrics.as_str().unwrap().contains("webhook_spool_held 1"));
}
