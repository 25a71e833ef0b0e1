//! `openapi.json` against the real service: every answer a test gets through `TestApp` must be
//! one the document allows (a status listed for its operation, a body its schema accepts),
//! and the instance serves the document itself.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use jsonschema::{Draft, Validator};
use serde_json::{json, Value};

use crate::helpers::{client_with_token, Answer, TestApp, ADMIN_TOKEN, READ_TOKEN, REPLAY_TOKEN};

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../openapi.json")).expect("openapi.json is JSON")
});

/// Compiled once per response schema: the whole document is the root, so the schemas'
/// `$ref`s resolve as an OpenAPI tool resolves them.
static VALIDATORS: LazyLock<Mutex<HashMap<String, Arc<Validator>>>> =
    LazyLock::new(Default::default);

/// Panics unless the document allows this answer to `method path`.
pub fn assert_documented(
    method: &str,
    path_and_query: &str,
    status: u16,
    content_type: Option<&str>,
    body: &Value,
) {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let what = format!("{method} {path_and_query} answered {status} {body}");
    let Some(template) = documented_path(path) else {
        assert_eq!(status, 404, "{what}: not a documented path");
        return assert_error_shape(body, &what);
    };
    // HEAD goes with GET (the document's description says so).
    let documented_method = if method == "HEAD" { "get" } else { method }.to_ascii_lowercase();
    let operation = &DOCUMENT["paths"][template][&documented_method];
    if operation.is_null() {
        assert_eq!(status, 405, "{what}: not a documented method of {template}");
        return assert_error_shape(body, &what);
    }
    let pointer = format!(
        "/paths/{}/{documented_method}/responses/{status}",
        escape(template)
    );
    let documented = DOCUMENT.pointer(&pointer).unwrap_or_else(|| {
        panic!("{what}: status {status} is not documented for {method} {template}")
    });
    // A shared response (`#/components/responses/…`) is validated where it is written.
    let pointer = match documented["$ref"].as_str() {
        Some(reference) => reference.trim_start_matches('#').to_string(),
        None => pointer,
    };
    let response = DOCUMENT
        .pointer(&pointer)
        .unwrap_or_else(|| panic!("openapi.json: {pointer} resolves to nothing"));
    let Some(content) = response["content"].as_object() else {
        return;
    };
    let media_type = content_type
        .and_then(|value| value.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    assert!(
        content.contains_key(media_type),
        "{what}: Content-Type {media_type:?} is not documented ({:?})",
        content.keys().collect::<Vec<_>>()
    );
    if method == "HEAD" || media_type != "application/json" {
        return;
    }
    // A URI fragment: the braces of path templates percent-encoded.
    let schema_pointer = format!("#{pointer}/content/application~1json/schema")
        .replace('{', "%7B")
        .replace('}', "%7D");
    let validator = validator(&schema_pointer);
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: not as documented: {errors:#?}");
}

fn assert_error_shape(body: &Value, what: &str) {
    let errors: Vec<String> = validator("#/components/schemas/Error")
        .iter_errors(body)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{what}: not the error shape: {errors:?}");
}

/// The document's path for a concrete one: a literal path first (`/api/v1/webhooks/metrics`
/// before `/api/v1/webhooks/{source}`), as the router and OpenAPI tools match them.
fn documented_path(path: &str) -> Option<&'static str> {
    let paths = DOCUMENT["paths"].as_object().expect("paths");
    if let Some((template, _)) = paths.get_key_value(path) {
        return Some(template.as_str());
    }
    let segments: Vec<&str> = path.split('/').collect();
    paths
        .keys()
        .find(|template| {
            let pattern: Vec<&str> = template.split('/').collect();
            pattern.len() == segments.len()
                && pattern.iter().zip(&segments).all(|(p, s)| {
                    p == s || (p.starts_with('{') && p.ends_with('}') && !s.is_empty())
                })
        })
        .map(String::as_str)
}

/// A path as a JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn validator(reference: &str) -> Arc<Validator> {
    let mut validators = VALIDATORS.lock().unwrap();
    validators
        .entry(reference.to_string())
        .or_insert_with(|| {
            let mut root = DOCUMENT.clone();
            root["$ref"] = json!(reference);
            Arc::new(
                jsonschema::options()
                    .with_draft(Draft::Draft202012)
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| panic!("openapi.json: {reference}: {e}")),
            )
        })
        .clone()
}

#[tokio::test]
async fn the_instance_serves_the_document_without_a_token() {
    let app = TestApp::spawn().await;
    // Not `app.get`: its client presents the admin token.
    let response = reqwest::get(app.url("/openapi.json")).await.unwrap();
    let answer = Answer::from("GET", "/openapi.json", response).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json, *DOCUMENT);
    assert_eq!(answer.json["openapi"], "3.1.0");
}

#[tokio::test]
async fn operator_answers_are_as_documented() {
    let app = TestApp::spawn().await;
    let body = crate::helpers::fixture("ok_flux_lora_fast_training.json");
    let stored = app.post_fal(&body).await;
    let event_id = stored.json["event_id"].as_i64().expect("an event id");
    let event = format!("/api/v1/webhooks/events/{event_id}");
    let replay = format!("{event}/replay");
    let reader = client_with_token(READ_TOKEN);
    let replayer = client_with_token(REPLAY_TOKEN);
    let admin = client_with_token(ADMIN_TOKEN);
    for (client, method, path, expected) in [
        (&reader, "GET", "/health", 200),
        (&reader, "GET", "/api/v1/webhooks/metrics?hours=2", 200),
        (&reader, "GET", "/api/v1/webhooks/metrics?hours=0", 400),
        (&reader, "GET", "/api/v1/webhooks/health", 200),
        (&reader, "GET", "/api/v1/webhooks/failures?limit=5", 200),
        (&reader, "GET", &event, 200),
        (&reader, "GET", "/api/v1/webhooks/events/999999", 404),
        (&reader, "POST", &replay, 403),
        (&replayer, "POST", &replay, 200),
        (&reader, "GET", "/api/v1/deploys", 403),
        (&admin, "GET", "/api/v1/deploys?limit=3", 200),
        (&admin, "GET", "/api/v1/deploys/12345", 404),
        (&reader, "DELETE", "/api/v1/deploys", 405),
        (&reader, "GET", "/metrics", 200),
    ] {
        let response = client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .expect("request sent");
        // `Answer::from` asserts that the document allows the answer.
        let answer = Answer::from(method, path, response).await;
        assert_eq!(
            answer.status, expected,
            "{method} {path}: {:?}",
            answer.json
        );
    }
}

/// Found by schemathesis: JSON has no limit on numbers and jsonb keeps them exactly, but a
/// stored payload with one past a float's range did not read back (503, "database
/// unavailable"). It reads back as PostgreSQL keeps it.
#[tokio::test]
async fn a_stored_number_no_float_holds_reads_back() {
    let app = TestApp::spawn().await;
    let huge = format!("1{}", "0".repeat(400));
    let body = format!(
        r#"{{"request_id":"req-huge","status":"in_progress","progress":5,"debug":{huge}}}"#
    );
    let stored = app.post_fal(&body).await;
    assert_eq!(stored.status, 200, "{stored:?}");
    let event_id = stored.json["event_id"].as_i64().unwrap();
    let response = client_with_token(READ_TOKEN)
        .get(app.url(&format!("/api/v1/webhooks/events/{event_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains(&format!(r#""debug": {huge}"#)), "{text}");
}
