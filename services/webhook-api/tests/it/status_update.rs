//! The callback's promises: applied once, redeliveries are duplicates, late events change nothing.

use crate::helpers::{fixture, hmac_header, refuse_payloads_containing, TestApp, STATUS_UPDATE};

const FAST_TRAINING_ID: &str = "a6823810-a615-4ac8-aca3-5d2546aa81b8";

#[tokio::test]
async fn signed_fal_callback_moves_avatar_from_training_to_completed_with_files() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar(FAST_TRAINING_ID).await;

    let answer = app
        .post_fal(&fixture("ok_flux_lora_fast_training.json"))
        .await;

    assert_eq!(answer.status, 200, "{:?}", answer.json);
    assert_eq!(answer.result(), "applied");
    assert_eq!(answer.json["request_id"], FAST_TRAINING_ID);
    let row = app.avatar(avatar).await;
    assert_eq!(row.status, "COMPLETED");
    assert_eq!(row.progress, 100);
    assert_eq!(
        row.lora_url.as_deref(),
        Some("https://v3.fal.media/files/koala/Yx3k_pytorch_lora_weights.safetensors")
    );
    assert_eq!(
        row.config_url.as_deref(),
        Some("https://v3.fal.media/files/koala/Q9pe_config.json")
    );
    assert!(row.completed_at.is_some());
    assert!(row.has_response_data);

    // Just after the answer: one stream entry for the bot, and the cached status.
    let entries = app.stream_entries().await;
    let mut redis = app.redis.clone();
    let cached: String = redis::cmd("GET")
        .arg(format!("{}avatar:{avatar}", app.prefix))
        .query_async(&mut redis)
        .await
        .expect("status cached");
    let cached: serde_json::Value = serde_json::from_str(&cached).unwrap();
    assert_eq!(cached["status"], "COMPLETED");
    assert_eq!(cached["progress"], 100);
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{}avatar:{avatar}", app.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 0, "cached status has a TTL");
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let field = |name: &str| -> String { entry.get(name).unwrap_or_else(|| panic!("{name}")) };
    assert_eq!(field("event"), "avatar.status_changed");
    assert_eq!(field("avatar_id"), avatar.to_string());
    assert_eq!(field("status"), "COMPLETED");
    assert_eq!(field("progress"), "100");
    assert!(!field("user_id").is_empty());
    assert!(!field("at").is_empty());
}

#[tokio::test]
async fn hmac_signed_legacy_callback_is_applied() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar("test-123").await;
    let body = fixture("legacy_completed.json");

    let answer = app.post(STATUS_UPDATE, &body, &[hmac_header(&body)]).await;

    assert_eq!(answer.status, 200, "{:?}", answer.json);
    assert_eq!(answer.result(), "applied");
    let row = app.avatar(avatar).await;
    assert_eq!(row.status, "COMPLETED");
    assert!(row
        .lora_url
        .unwrap()
        .ends_with("A1b2_pytorch_lora_weights.safetensors"));
}

#[tokio::test]
async fn redelivery_is_answered_duplicate_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar(FAST_TRAINING_ID).await;
    let body = fixture("ok_flux_lora_fast_training.json");
    assert_eq!(app.post_fal(&body).await.result(), "applied");
    let after_first = app.avatar(avatar).await;

    let again = app.post_fal(&body).await;

    assert_eq!(again.status, 200);
    assert_eq!(again.result(), "duplicate");
    assert_eq!(app.avatar(avatar).await, after_first);
    assert_eq!(app.event_count().await, 1);
    let deliveries: i32 = app
        .db
        .query_one("SELECT deliveries FROM webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(deliveries, 2);
    assert_eq!(app.stream_len().await, 1, "a duplicate announces nothing");
}

#[tokio::test]
async fn late_in_progress_after_completed_changes_nothing() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar("test-123").await;
    assert_eq!(
        app.post_fal(&fixture("legacy_minimal_completed.json"))
            .await
            .result(),
        "applied"
    );
    let completed = app.avatar(avatar).await;

    let late = app.post_fal(&fixture("legacy_in_progress.json")).await;

    assert_eq!(late.status, 200);
    assert_eq!(late.result(), "ignored");
    assert_eq!(app.avatar(avatar).await, completed);
    assert_eq!(
        app.event_count().await,
        2,
        "the ignored delivery is still kept"
    );
}

#[tokio::test]
async fn progress_updates_move_forward_then_completion_wins() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar("r-progress").await;
    let progress =
        |p: i32| format!(r#"{{"request_id":"r-progress","status":"in_progress","progress":{p}}}"#);

    assert_eq!(app.post_fal(&progress(40)).await.result(), "applied");
    assert_eq!(app.avatar(avatar).await.progress, 40);
    assert_eq!(app.post_fal(&progress(30)).await.result(), "ignored");
    assert_eq!(app.avatar(avatar).await.progress, 40);
    assert_eq!(
        app.post_fal(r#"{"request_id":"r-progress","status":"COMPLETED"}"#)
            .await
            .result(),
        "applied"
    );
    assert_eq!(app.avatar(avatar).await.status, "COMPLETED");
}

#[tokio::test]
async fn fal_error_and_payload_error_mark_the_avatar_failed() {
    let app = TestApp::spawn().await;
    let validation = app
        .insert_training_avatar("123e4567-e89b-12d3-a456-426614174000")
        .await;
    let undeliverable = app
        .insert_training_avatar("0b6c3f0e-7a51-4b8e-9c55-2f0d9d3b8a12")
        .await;

    assert_eq!(
        app.post_fal(&fixture("error_validation.json"))
            .await
            .result(),
        "applied"
    );
    assert_eq!(
        app.post_fal(&fixture("ok_payload_error.json"))
            .await
            .result(),
        "applied"
    );

    let row = app.avatar(validation).await;
    assert_eq!(row.status, "ERROR");
    assert!(row.error.unwrap().contains("Invalid status code: 422"));
    let row = app.avatar(undeliverable).await;
    assert_eq!(row.status, "ERROR");
    assert!(row.error.unwrap().contains("not JSON serializable"));
}

#[tokio::test]
async fn fifty_concurrent_deliveries_of_one_callback_apply_exactly_once() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar(FAST_TRAINING_ID).await;
    let body = fixture("ok_flux_lora_fast_training.json");

    let answers = futures::future::join_all((0..50).map(|_| app.post_fal(&body))).await;

    let applied = answers.iter().filter(|a| a.result() == "applied").count();
    let duplicates = answers.iter().filter(|a| a.result() == "duplicate").count();
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    assert_eq!((applied, duplicates), (1, 49));
    assert_eq!(app.avatar(avatar).await.status, "COMPLETED");
    let row = app
        .db
        .query_one("SELECT count(*), sum(deliveries) FROM webhook_events", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, i64>(1), 50);
    assert_eq!(app.stream_len().await, 1);
}

#[tokio::test]
async fn unknown_request_is_kept_as_unmatched_and_applied_when_redelivered_after_the_avatar_exists()
{
    let app = TestApp::spawn().await;
    let body = fixture("retried_gateway_id.json");

    let first = app.post_fal(&body).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.result(), "unmatched");
    let outcome: String = app
        .db
        .query_one("SELECT outcome FROM webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "unmatched");

    // The bot records the request id late; FAL (or an operator) delivers again.
    let avatar = app
        .insert_training_avatar("c2f6a1d4-93e8-4b0a-8f7c-5e1d2a3b4c5d")
        .await;
    let second = app.post_fal(&body).await;
    assert_eq!(second.result(), "applied");
    assert_eq!(app.avatar(avatar).await.status, "COMPLETED");
    assert_eq!(app.event_count().await, 1);
    assert_eq!(app.post_fal(&body).await.result(), "duplicate");
}

#[tokio::test]
async fn training_type_query_is_recorded_and_validated() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar("test-123").await;
    app.db
        .execute(
            "UPDATE avatars SET training_type = NULL WHERE id = $1",
            &[&avatar],
        )
        .await
        .unwrap();
    let body = fixture("legacy_in_progress.json");

    let bad = app
        .post(
            &format!("{STATUS_UPDATE}?training_type=cartoon"),
            &body,
            &app.signer.headers(&body),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.json["message"]
        .as_str()
        .unwrap()
        .contains("portrait, style"));

    let good = app
        .post(
            &format!("{STATUS_UPDATE}?training_type=style"),
            &body,
            &app.signer.headers(&body),
        )
        .await;
    assert_eq!(good.result(), "applied");
    let stored: Option<String> = app
        .db
        .query_one(
            "SELECT training_type::text FROM avatars WHERE id = $1",
            &[&avatar],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.as_deref(), Some("STYLE"));
}

#[tokio::test]
async fn a_delivery_the_database_rejects_does_not_take_its_batch_down() {
    let app = TestApp::spawn().await;
    let mut avatars = Vec::new();
    for n in 0..20 {
        avatars.push(app.insert_training_avatar(&format!("req-batch-{n}")).await);
    }
    // A delivery PostgreSQL refuses: it fails inside the transaction it shares with whatever
    // arrived at the same time.
    refuse_payloads_containing(&app.db, "poison-pill").await;
    let poisoned = r#"{"request_id":"req-batch-0","status":"failed","error":"poison-pill"}"#;
    let bodies: Vec<String> = (0..20)
        .map(|n| format!(r#"{{"request_id":"req-batch-{n}","status":"completed"}}"#))
        .chain([poisoned.to_string()])
        .collect();

    let answers = futures::future::join_all(bodies.iter().map(|b| app.post_fal(b))).await;

    let (poisoned_answer, valid) = answers.split_last().unwrap();
    // It can never be stored: 400 (do not retry), with the reason.
    assert_eq!(poisoned_answer.status, 400, "{poisoned_answer:?}");
    assert_eq!(poisoned_answer.error(), "unstorable_body");
    assert!(
        valid
            .iter()
            .all(|a| a.status == 200 && a.result() == "applied"),
        "{valid:?}"
    );
    for avatar in avatars {
        assert_eq!(app.avatar(avatar).await.status, "COMPLETED");
    }
    assert_eq!(app.event_count().await, 20);
}

/// Found by schemathesis: a `\u0000` in a callback was a 400 (PostgreSQL stores no NUL), and
/// FAL does not retry a 4xx, so the training's outcome was lost. It is stored with U+FFFD.
#[tokio::test]
async fn a_callback_carrying_a_nul_is_applied_with_the_replacement_character() {
    let app = TestApp::spawn().await;
    let avatar = app.insert_training_avatar("req-nul").await;
    let body =
        r#"{"request_id":"req-nul","status":"ERROR","error":"GPU \u0000 fault","payload":null}"#;
    let answer = app.post_fal(body).await;
    assert_eq!(
        (answer.status, answer.result()),
        (200, "applied"),
        "{answer:?}"
    );
    let row = app.avatar(avatar).await;
    assert_eq!(row.status, "ERROR");
    assert_eq!(row.error.as_deref(), Some("GPU \u{FFFD} fault"));
    let redelivered = app.post_fal(body).await;
    assert_eq!(redelivered.result(), "duplicate");
}
