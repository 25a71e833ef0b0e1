//! Dependencies failing under the service: Redis is optional, PostgreSQL is not.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::{
    database_socket, eventually, fixture, free_port, stream_entries, AppOptions, ChaosProxy,
    TestApp,
};

/// A Redis server of the test's own, so the test can stop it.
pub(crate) struct OwnRedis {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl OwnRedis {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// On a given port: the same server coming back.
    pub async fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/dev/deps.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}/0");
        let client = redis::Client::open(url.as_str()).unwrap();
        let up = eventually(Duration::from_secs(5), || {
            let client = client.clone();
            async move { client.get_multiplexed_async_connection().await.is_ok() }
        })
        .await;
        assert!(up, "own redis-server did not start");
        Self { child, url, port }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn with_redis_stopped_webhooks_are_still_accepted_and_health_is_degraded() {
    let mut redis = OwnRedis::start().await;
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with("REDIS_URL", redis.url.clone())
            .with("ANNOUNCE_INTERVAL_MS", "100")
            .with("ANNOUNCE_SETTLE_MS", "300"),
    )
    .await;
    let avatar = app.insert_training_avatar("test-123").await;
    let health = app.get("/health").await;
    assert_eq!(health.json["status"], "ok", "{:?}", health.json);

    redis.stop();

    let answer = app.post_fal(&fixture("legacy_completed.json")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    assert_eq!(answer.result(), "applied");
    assert_eq!(app.avatar(avatar).await.status, "COMPLETED");
    let health = app.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json["status"], "degraded");
    assert_eq!(health.json["checks"]["redis"]["status"], "fail");
    assert_eq!(health.json["checks"]["postgres"]["status"], "ok");
    // The status endpoint falls back to PostgreSQL.
    let status = app.get(&format!("/api/v1/avatar/{avatar}/status")).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json["status"], "COMPLETED");
    // The announcement, after the answer, found Redis gone.
    let publish_failed = eventually(Duration::from_secs(5), || async {
        let metrics = app.get("/metrics").await;
        let text = metrics.json.as_str().unwrap_or_default().to_string();
        text.lines()
            .any(|l| l.starts_with("webhook_redis_errors_total{operation=\"publish\"} 1"))
    })
    .await;
    assert!(publish_failed, "Redis failures are counted");

    // Redis comes back: the committed change is announced, once, from PostgreSQL.
    let back = OwnRedis::start_on(redis.port).await;
    let stream = format!("{}avatar:events", app.prefix);
    let entries = || async {
        // A connection of its own: the app's test connection went with the first server.
        let mut redis = redis::Client::open(back.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        stream_entries(&mut redis, &stream).await
    };
    let announced = eventually(Duration::from_secs(10), || async {
        entries().await.len() == 1
    })
    .await;
    assert!(announced, "the change was announced once Redis was back");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let entries = entries().await;
    assert_eq!(entries.len(), 1, "and only once");
    assert_eq!(
        entries[0].get::<String>("status").as_deref(),
        Some("COMPLETED")
    );
    let cached = app.get(&format!("/api/v1/avatar/{avatar}/status")).await;
    assert_eq!(cached.json["status"], "COMPLETED");
}

#[tokio::test]
async fn a_hung_redis_holds_up_no_callback_and_its_changes_are_announced_once_it_answers() {
    let redis = OwnRedis::start().await;
    let proxy = ChaosProxy::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with("REDIS_URL", format!("redis://{}/0", proxy.address))
            .with("REDIS_TIMEOUT_MS", "5000")
            .with("ANNOUNCE_INTERVAL_MS", "100")
            .with("ANNOUNCE_SETTLE_MS", "300"),
    )
    .await;
    let request_ids = ["hung-redis-1", "hung-redis-2", "hung-redis-3"];
    for request_id in request_ids {
        app.insert_training_avatar(request_id).await;
    }

    proxy.stall();
    for request_id in request_ids {
        let body = fixture("legacy_completed.json").replace("test-123", request_id);
        let started = std::time::Instant::now();
        let answer = app.post_fal(&body).await;
        assert_eq!(answer.result(), "applied", "{:?}", answer.json);
        // Announcing waits up to REDIS_TIMEOUT_MS on a hung Redis; the answer does not.
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "answered after {:?}",
            started.elapsed()
        );
    }
    proxy.restore();

    let stream = format!("{}avatar:events", app.prefix);
    let mut direct = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let announced = eventually(Duration::from_secs(20), || {
        let (mut direct, stream) = (direct.clone(), stream.clone());
        async move { stream_entries(&mut direct, &stream).await.len() >= 3 }
    })
    .await;
    assert!(announced, "the changes were announced once Redis answered");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let entries = stream_entries(&mut direct, &stream).await;
    assert_eq!(entries.len(), 3, "each once");
    assert!(entries
        .iter()
        .all(|e| e.get::<String>("status").as_deref() == Some("COMPLETED")));
}

#[tokio::test]
async fn with_postgres_unreachable_callbacks_get_503_and_nothing_is_half_written() {
    let proxy = ChaosProxy::start(database_socket()).await;
    let app = TestApp::spawn_with(AppOptions {
        database_via: Some(proxy.address),
        ..AppOptions::default()
    })
    .await;
    let avatar = app.insert_training_avatar("test-123").await;
    let before = app.avatar(avatar).await;
    let body = fixture("legacy_completed.json");

    proxy.cut();
    let answer = app.post_fal(&body).await;
    assert_eq!(answer.status, 503, "{:?}", answer.json);
    assert_eq!(answer.error(), "database_unavailable");
    assert!(answer.headers.contains_key("retry-after"));
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, 503);
    let health = app.get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json["status"], "fail");

    proxy.restore();
    assert_eq!(app.event_count().await, 0, "nothing recorded");
    assert_eq!(app.avatar(avatar).await, before, "nothing applied");
    // FAL's retry goes through once the database is back.
    let retried = app.post_fal(&body).await;
    assert_eq!(retried.status, 200, "{:?}", retried.json);
    assert_eq!(retried.result(), "applied");
    assert_eq!(app.get("/health/ready").await.status, 200);
}
