//! Every row of the contract's error table: its status, its JSON error, and nothing written.

use crate::helpers::{fixture, AppOptions, TestApp, STATUS_UPDATE};

/// Sends `request`, expects `status` and `code`, and checks that nothing was recorded.
async fn refused(app: &TestApp, request: reqwest::RequestBuilder, status: u16, code: &str) {
    let before = app.avatar(app_avatar(app).await).await;
    let response = request.send().await.expect("request sent");
    assert_eq!(
        response.status().as_u16(),
        status,
        "expected {status} {code}"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    let json: serde_json::Value = response.json_body().await;
    assert_eq!(json["error"], code, "{json}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "errors explain themselves: {json}"
    );
    assert_eq!(app.event_count().await, 0, "{code}: nothing recorded");
    assert_eq!(
        app.avatar(app_avatar(app).await).await,
        before,
        "{code}: avatar unchanged"
    );
}

async fn app_avatar(app: &TestApp) -> uuid::Uuid {
    app.db
        .query_one(
            "SELECT id FROM avatars WHERE fal_request_id = 'test-123'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

trait JsonBody {
    async fn json_body(self) -> serde_json::Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> serde_json::Value {
        serde_json::from_str(&self.text().await.unwrap()).expect("JSON body")
    }
}

#[tokio::test]
async fn each_bad_input_gets_its_status_and_json_error_and_changes_nothing() {
    let app =
        TestApp::spawn_with(AppOptions::default().with("WEBHOOK_MAX_BODY_BYTES", "4096")).await;
    app.insert_training_avatar("test-123").await;
    let url = app.url(STATUS_UPDATE);
    let good = fixture("legacy_completed.json");
    let signed = |body: &str| {
        let mut request = app
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        for (name, value) in app.signer.headers(body) {
            request = request.header(name, value);
        }
        request
    };

    // 400: malformed JSON, and well-formed JSON with a missing or wrong field.
    refused(&app, signed("{\"request_id\": "), 400, "bad_request").await;
    refused(
        &app,
        signed(r#"{"status":"completed"}"#),
        400,
        "bad_request",
    )
    .await;
    refused(
        &app,
        signed(r#"{"request_id":"test-123","status":"finished"}"#),
        400,
        "bad_request",
    )
    .await;

    // 401: no signature, a wrong one, a tampered body, a stale timestamp.
    let unsigned = app
        .http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(good.clone());
    refused(&app, unsigned, 401, "missing_signature").await;
    let wrong_hmac = app
        .http
        .post(&url)
        .header("Content-Type", "application/json")
        .header("X-Signature", "sha256=".to_string() + &"0".repeat(64))
        .body(good.clone());
    refused(&app, wrong_hmac, 401, "invalid_signature").await;
    let mut tampered = app
        .http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(good.replace("completed", "failed"));
    for (name, value) in app.signer.headers(&good) {
        tampered = tampered.header(name, value);
    }
    refused(&app, tampered, 401, "invalid_signature").await;
    let mut stale = app
        .http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(good.clone());
    for (name, value) in app
        .signer
        .headers_at(&good, chrono::Utc::now().timestamp() - 301)
    {
        stale = stale.header(name, value);
    }
    refused(&app, stale, 401, "invalid_signature").await;

    // 404 unknown route, 405 wrong method.
    refused(
        &app,
        app.http.post(app.url("/api/v1/avatar/nope")),
        404,
        "not_found",
    )
    .await;
    let wrong_method = app.http.get(&url).send().await.unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    refused(
        &app,
        app.http.put(&url).body(good.clone()),
        405,
        "method_not_allowed",
    )
    .await;

    // 413: over the configured cap, whether declared up front or streamed.
    let huge = format!(
        r#"{{"request_id":"test-123","status":"completed","pad":"{}"}}"#,
        "x".repeat(5000)
    );
    refused(&app, signed(&huge), 413, "payload_too_large").await;
    let chunks: Vec<Result<String, std::io::Error>> = vec![Ok(huge.clone())];
    let streamed = app
        .http
        .post(&url)
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)));
    refused(&app, streamed, 413, "payload_too_large").await;

    // 415: not JSON.
    let mut form = app
        .http
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(good.clone());
    for (name, value) in app.signer.headers(&good) {
        form = form.header(name, value);
    }
    refused(&app, form, 415, "unsupported_media_type").await;
}
