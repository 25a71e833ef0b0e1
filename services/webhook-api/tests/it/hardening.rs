//! Nothing internal without credentials, nothing unbounded: the attacks of issue 15, each as an
//! outsider would try it against the real app.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::net::TcpListener;

use crate::helpers::{
    client_with_token, hmac_header, pg_connect, AppOptions, FalSigner, Instance, TestApp,
    TestDatabase, ADMIN_TOKEN, READ_TOKEN, REPLAY_TOKEN, STATUS_UPDATE,
};

const OPERATOR_GETS: [&str; 7] = [
    "/metrics",
    "/api/v1/webhooks/metrics",
    "/api/v1/webhooks/health",
    "/api/v1/webhooks/failures",
    "/api/v1/webhooks/events/1",
    "/api/v1/deploys",
    "/api/v1/deploys/1",
];

async fn status_of(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn internal_routes_need_a_token_with_the_right_scope() {
    // More refusals than an address may make a minute by default: this test makes them all.
    let app =
        TestApp::spawn_with(AppOptions::default().with("OPERATOR_REFUSALS_PER_MINUTE", "100"))
            .await;
    let body = r#"{"request_id":"auth-1","status":"in_progress"}"#;
    let id = app
        .post(STATUS_UPDATE, body, &[hmac_header(body)])
        .await
        .json["event_id"]
        .as_i64()
        .unwrap();
    let replay = format!("/api/v1/webhooks/events/{id}/replay");

    let anonymous = reqwest::Client::new();
    let wrong = client_with_token("not-a-configured-token-0123456789abcdef");
    for path in OPERATOR_GETS {
        for client in [&anonymous, &wrong] {
            let (status, text) = status_of(client.get(app.url(path))).await;
            assert_eq!(status, 401, "{path}: {text}");
            assert!(text.contains(r#""error":"unauthorized""#), "{path}: {text}");
        }
    }
    let (status, _) = status_of(anonymous.post(app.url(&replay))).await;
    assert_eq!(status, 401);

    // A read token reads, but neither replays nor sees deploys; a replay token only replays.
    let read = client_with_token(READ_TOKEN);
    for path in [
        "/metrics",
        "/api/v1/webhooks/failures",
        "/api/v1/webhooks/health",
    ] {
        assert_eq!(status_of(read.get(app.url(path))).await.0, 200, "{path}");
    }
    let (status, text) = status_of(read.post(app.url(&replay))).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("replay"), "{text}");
    assert_eq!(status_of(read.get(app.url("/api/v1/deploys"))).await.0, 403);
    let oncall = client_with_token(REPLAY_TOKEN);
    assert_eq!(status_of(oncall.get(app.url("/metrics"))).await.0, 403);
    assert_eq!(status_of(oncall.post(app.url(&replay))).await.0, 200);
    let (status, _) = status_of(oncall.post(app.url(&format!("{replay}?deploy=true")))).await;
    assert_eq!(status, 403, "a redeploy needs the deploy scope");

    // Every replay is audited with the token's name, refused ones too.
    let audit = app
        .db
        .query(
            "SELECT token_name, action, status_code FROM operator_audit ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let audit: Vec<(String, String, i16)> = audit
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(
        audit.contains(&("oncall".into(), "deliveries_replay".into(), 200)),
        "{audit:?}"
    );

    // The public health says how it is, nothing more; a read token sees the details.
    let public = anonymous.get(app.url("/health")).send().await.unwrap();
    let public: serde_json::Value = public.json().await.unwrap();
    assert_eq!(public, serde_json::json!({"status": "ok"}));
    let detailed: serde_json::Value = read
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detailed["instance_id"], "it-instance");
    assert!(detailed["checks"]["file_jobs"].is_object(), "{detailed}");
}

#[tokio::test]
async fn without_configured_tokens_every_internal_route_is_closed() {
    let app = TestApp::spawn_with(AppOptions::default().with("OPERATOR_TOKENS", "")).await;
    for path in OPERATOR_GETS {
        assert_eq!(app.get(path).await.status, 401, "{path}");
    }
    assert_eq!(
        app.get("/health").await.json,
        serde_json::json!({"status": "ok"})
    );
    assert_eq!(app.get("/health/ready").await.status, 200);
}

#[tokio::test]
async fn ids_too_long_for_an_index_are_refused_with_400() {
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with("WEBHOOK_SOURCES", "github:github")
            .with("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-secret"),
    )
    .await;
    let long_id = "r".repeat(3000);
    let body = format!(r#"{{"request_id":"{long_id}","status":"OK","payload":{{}}}}"#);
    let answer = app.post(STATUS_UPDATE, &body, &[hmac_header(&body)]).await;
    assert_eq!(answer.status, 400, "{:?}", answer.json);
    assert!(answer.json["message"]
        .as_str()
        .unwrap()
        .contains("request_id"));

    let body = r#"{"zen":"Keep it logically awesome."}"#;
    let signature = webhook_api::verify::hmac::sign(
        &webhook_api::config::Secret::new("gh-secret"),
        body.as_bytes(),
    );
    let answer = app
        .post(
            "/api/v1/webhooks/github",
            body,
            &[
                ("X-Hub-Signature-256", format!("sha256={signature}")),
                ("X-GitHub-Event", "ping".into()),
                ("X-GitHub-Delivery", "d".repeat(3000)),
            ],
        )
        .await;
    assert_eq!(answer.status, 400, "{:?}", answer.json);
    assert!(answer.json["message"]
        .as_str()
        .unwrap()
        .contains("delivery id"));
}

#[tokio::test]
async fn a_flood_of_forged_requests_with_large_headers_adds_little_to_postgresql() {
    let app = TestApp::spawn().await;
    let size = || async {
        app.db
            .query_one("SELECT pg_total_relation_size('webhook_events')", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = size().await;
    let padding = "x".repeat(7000);
    let body = r#"{"request_id":"forged","status":"OK","payload":{}}"#;
    let url = app.url(STATUS_UPDATE);
    let anonymous = reqwest::Client::new();
    let forged = futures::stream::iter(0..10_000)
        .map(|n| {
            anonymous
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-Signature", format!("{n:064x}"))
                .header("X-Padding", &padding)
                .header("User-Agent", &padding)
                .body(body)
                .send()
        })
        .buffer_unordered(32)
        .map(|r| r.map(|r| r.status().as_u16()).unwrap_or(0))
        .collect::<Vec<u16>>()
        .await;
    assert!(forged.iter().all(|s| *s == 401), "all forged refused");
    // The writer flushes once a second.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let added = size().await - before;
    eprintln!("10 000 forged requests added {added} bytes to webhook_events");
    assert!(added < 1024 * 1024, "forged requests added {added} bytes");
    let kept = app
        .db
        .query_one(
            "SELECT count(*), max(length(headers::text)) FROM webhook_events WHERE outcome = 'rejected'",
            &[],
        )
        .await
        .unwrap();
    let (rows, longest): (i64, Option<i32>) = (kept.get(0), kept.get(1));
    assert!(rows > 0, "some rejections are kept for operators");
    assert!(
        longest.unwrap_or(0) < 1000,
        "headers kept: {longest:?} chars"
    );
    // The rest were counted, not stored.
    let scrape = app.get("/metrics").await;
    let dropped: i64 = scrape
        .json
        .as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("webhook_rejections_dropped_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as i64;
    assert!(
        dropped + rows >= 10_000 - 100,
        "dropped {dropped}, kept {rows}"
    );
}

#[tokio::test]
async fn expired_rejected_rows_are_purged_at_start() {
    let app = TestApp::spawn().await;
    app.db
        .execute(
            "INSERT INTO webhook_events (source, event, outcome, signature_scheme, received_at) \
             VALUES ('fal', 'unverified', 'rejected', 'fal', now() - interval '8 days'), \
                    ('fal', 'unverified', 'rejected', 'fal', now() - interval '1 day')",
            &[],
        )
        .await
        .unwrap();
    // A second instance on the same database purges when it starts.
    let _second =
        TestApp::spawn_with(AppOptions::default().shared_database(&app.database.url)).await;
    let left = crate::helpers::eventually(Duration::from_secs(5), || async {
        let row = app
            .db
            .query_one(
                "SELECT count(*) FROM webhook_events WHERE outcome = 'rejected'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0) == 1
    })
    .await;
    assert!(
        left,
        "the 8-day-old rejection is purged, the 1-day-old one kept"
    );
}

/// A JWKS endpoint that accepts connections and never answers.
async fn hanging_jwks() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (url, connections)
}

#[tokio::test]
async fn a_hanging_jwks_costs_one_fetch_per_backoff_and_stale_requests_wait_for_nothing() {
    let (jwks_url, connections) = hanging_jwks().await;
    let app = TestApp::spawn_with(AppOptions::default().with("FAL_JWKS_URL", jwks_url)).await;
    let signer = FalSigner::new(9);
    let body = r#"{"request_id":"jwks-1","status":"in_progress"}"#;
    let now = chrono::Utc::now().timestamp();

    // A stale or overflowing timestamp is refused before any key is fetched.
    for timestamp in [now - 3600, now.wrapping_add(i64::MIN)] {
        let started = Instant::now();
        let answer = app
            .post(STATUS_UPDATE, body, &signer.headers_at(body, timestamp))
            .await;
        assert_eq!(answer.status, 401, "{:?}", answer.json);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);

    // The first fresh request waits for the fetch to time out; those after it, during the
    // backoff, are answered at once, and no second connection is made.
    let first = app.post(STATUS_UPDATE, body, &signer.headers(body)).await;
    assert_eq!(first.status, 503);
    let started = Instant::now();
    for _ in 0..20 {
        let answer = app.post(STATUS_UPDATE, body, &signer.headers(body)).await;
        assert_eq!(answer.status, 503);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// A client whose requests come from `address` (any of 127/8 reaches a loopback listener).
fn client_from(address: [u8; 4], token: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .default_headers(headers)
        .build()
        .unwrap()
}

#[tokio::test]
async fn refused_operator_calls_are_logged_counted_audited_and_limited_per_address() {
    let database = TestDatabase::create().await;
    let mut instance = Instance::start_logged(
        &database.url,
        &[
            ("OPERATOR_REFUSALS_PER_MINUTE", "4".into()),
            ("LOG_FORMAT", "json".into()),
        ],
    );
    instance.wait_ready().await;
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", instance.port);
    let guess = "guessed-token-0123456789abcdef0123456789";
    let local = |token| client_from([127, 0, 0, 1], token);
    let calls = [
        (local(None), "/api/v1/webhooks/failures", 401),
        (local(Some(guess)), "/api/v1/deploys", 401),
        (local(Some(READ_TOKEN)), "/api/v1/deploys", 403),
        (local(Some(REPLAY_TOKEN)), "/metrics", 403),
        // The address used its minute: even the right token is not read now.
        (local(Some(ADMIN_TOKEN)), "/metrics", 429),
    ];
    for (client, path, expected) in &calls {
        let (status, text) = status_of(client.get(url(path))).await;
        assert_eq!(status, *expected, "{path}: {text}");
    }
    let limited = client_from([127, 0, 0, 1], Some(ADMIN_TOKEN))
        .get(url("/metrics"))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let told: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(told["error"], "rate_limited");
    assert_eq!(told["limit_per_minute"], 4);

    // Another address is not held back, and the counter shows every refusal.
    let metrics = client_from([127, 0, 0, 2], Some(ADMIN_TOKEN))
        .get(url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    let refusals = |status: &str| -> u64 {
        let line = format!("webhook_operator_refusals_total{{status=\"{status}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    assert_eq!(
        (refusals("401"), refusals("403"), refusals("429")),
        (2, 2, 2)
    );

    // A valid token without the scope leaves an audit row with its name.
    let db = pg_connect(&database.url).await;
    let audit: Vec<(String, String, i16)> = db
        .query(
            "SELECT token_name, action, status_code FROM operator_audit ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        audit,
        [
            ("prometheus".to_string(), "deploys".to_string(), 403),
            ("oncall".to_string(), "metrics".to_string(), 403),
        ]
    );

    instance.signal("KILL");
    instance.wait_exit(Duration::from_secs(10));
    let logs = instance.logs();
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("operator call refused"))
        .collect();
    assert_eq!(refused.len(), 4, "{logs}");
    assert!(
        refused
            .iter()
            .any(|l| l.contains(r#""token":"prometheus""#)),
        "{logs}"
    );
    assert!(refused.iter().all(|l| l.contains("127.0.0.1")), "{logs}");
    assert!(
        logs.contains("reached OPERATOR_REFUSALS_PER_MINUTE"),
        "{logs}"
    );
    for secret in [guess, READ_TOKEN, REPLAY_TOKEN, ADMIN_TOKEN] {
        assert!(!logs.contains(secret), "a token reached the log");
    }
}

#[tokio::test]
async fn replays_are_limited_per_token_with_the_limit_in_the_answer() {
    let app = TestApp::spawn_with(AppOptions::default().with("REPLAYS_PER_MINUTE", "3")).await;
    let body = r#"{"request_id":"replay-limit","status":"in_progress"}"#;
    let id = app
        .post(STATUS_UPDATE, body, &[hmac_header(body)])
        .await
        .json["event_id"]
        .as_i64()
        .unwrap();
    let replay = app.url(&format!("/api/v1/webhooks/events/{id}/replay"));
    let oncall = client_with_token(REPLAY_TOKEN);
    for remaining in ["2", "1", "0"] {
        let answer = oncall.post(&replay).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["ratelimit-limit"], "3");
        assert_eq!(answer.headers()["ratelimit-remaining"], remaining);
    }
    let limited = oncall.post(&replay).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let told: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(told["limit_per_minute"], 3);
    assert!(
        told["message"].as_str().unwrap().contains("replays"),
        "{told}"
    );
    // Another token has its own minute.
    let admin = client_with_token(ADMIN_TOKEN);
    assert_eq!(admin.post(&replay).send().await.unwrap().status(), 200);

    let audited: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM operator_audit WHERE token_name = 'oncall' AND status_code = 429",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 1, "the refused replay is audited too");
}
