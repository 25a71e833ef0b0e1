//! `GET /api/v1/avatar/{id}/status`: cache-aside over PostgreSQL.

use crate::helpers::{fixture, TestApp};

#[tokio::test]
async fn status_is_read_from_postgres_then_served_from_the_cache() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar("test-123").await;
    let key = format!("{}avatar:{avatar}", app.prefix);
    let mut redis = app.redis.clone();

    let first = app.get(&format!("/api/v1/avatar/{avatar}/status")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json["avatar_id"], avatar.to_string());
    assert_eq!(first.json["status"], "TRAINING");
    assert_eq!(first.json["progress"], 10);
    let cached: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(cached.is_some(), "a miss fills the cache");

    // A cache hit answers even when the row changed behind the service's back.
    app.db
        .execute(
            "UPDATE avatars SET training_progress = 55 WHERE id = $1",
            &[&avatar],
        )
        .await
        .unwrap();
    let second = app.get(&format!("/api/v1/avatar/{avatar}/status")).await;
    assert_eq!(second.json["progress"], 10);

    // A committed callback refreshes the cache (write-through, just after its answer).
    app.post_fal(&fixture("legacy_completed.json")).await;
    assert_eq!(app.stream_len().await, 1);
    let third = app.get(&format!("/api/v1/avatar/{avatar}/status")).await;
    assert_eq!(third.json["status"], "COMPLETED");
    assert_eq!(third.json["progress"], 100);
}

#[tokio::test]
async fn unknown_avatar_is_404_and_malformed_id_is_400() {
    let app = TestApp::spawn().await;
    let unknown = app
        .get("/api/v1/avatar/00000000-0000-4000-8000-000000000000/status")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error(), "avatar_not_found");
    let malformed = app.get("/api/v1/avatar/not-a-uuid/status").await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.error(), "bad_request");
}
