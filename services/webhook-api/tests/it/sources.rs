//! The configured sources: each scheme signed the way its sender signs, refusals, rotation,
//! dedup, the per-source stream, the deliveries API and replay.

use std::time::Duration;

use serde_json::json;
use webhook_api::config::Secret;
use webhook_api::senders::sign_standard;
use webhook_api::verify::hmac;

use crate::helpers::{fixture, stream_entries, AppOptions, TestApp};

/// A Standard Webhooks secret as its sender hands it out, and the key it stands for.
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_KEY_B64: &str = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) fn sources_app() -> AppOptions {
    AppOptions::default()
        .with(
            "WEBHOOK_SOURCES",
            "github:github,gitea:gitea,plane:plane,jobs:hmac,billing:standard",
        )
        .with("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-old,gh-new")
        .with("WEBHOOK_SOURCE_GITEA_SECRETS", "gitea-secret")
        .with("WEBHOOK_SOURCE_PLANE_SECRETS", "plane-secret")
        .with("WEBHOOK_SOURCE_JOBS_SECRETS", "jobs-secret")
        .with(
            "WEBHOOK_SOURCE_BILLING_SECRETS",
            format!("whsec_c29tZSBvbGRlciBrZXk=,{STANDARD_SECRET}"),
        )
}

fn hex(secret: &str, body: &str) -> String {
    hmac::sign(&Secret::new(secret), body.as_bytes())
}

fn standard_key() -> Secret {
    use base64::Engine;
    Secret::from_bytes(
        base64::engine::general_purpose::STANDARD
            .decode(STANDARD_KEY_B64)
            .unwrap(),
    )
}

/// The headers each sender puts on a delivery, signed with `secret`.
pub(crate) fn signed(
    source: &str,
    secret: &str,
    id: &str,
    body: &str,
) -> Vec<(&'static str, String)> {
    match source {
        "github" => vec![
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hex(secret, body)),
            ),
            ("X-GitHub-Event", "push".into()),
            ("X-GitHub-Delivery", id.into()),
        ],
        "gitea" => vec![
            ("X-Gitea-Signature", hex(secret, body)),
            ("X-Gitea-Event", "push".into()),
            ("X-Gitea-Delivery", id.into()),
        ],
        "plane" => vec![
            ("X-Plane-Signature", hex(secret, body)),
            ("X-Plane-Event", "issue".into()),
            ("X-Plane-Delivery", id.into()),
        ],
        "jobs" => vec![("X-Signature", hex(secret, body))],
        "billing" => {
            let key = match secret {
                STANDARD_SECRET => standard_key(),
                other => Secret::new(other),
            };
            let now = chrono::Utc::now().timestamp();
            standard_headers(&key, id, now, body)
        }
        other => panic!("no such source {other}"),
    }
}

fn standard_headers(
    key: &Secret,
    id: &str,
    timestamp: i64,
    body: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("webhook-id", id.into()),
        ("webhook-timestamp", timestamp.to_string()),
        (
            "webhook-signature",
            sign_standard(key, id, timestamp, body.as_bytes()),
        ),
    ]
}

pub(crate) fn body_for(source: &str, n: u32) -> String {
    match source {
        "jobs" => json!({"job_id": format!("job-{n}"), "status": "partially_completed",
                         "processed": 10, "failed": 2, "timestamp": "2026-11-22T20:00:00Z"})
        .to_string(),
        "billing" => json!({"type": "invoice.paid", "timestamp": "2026-11-22T20:00:00Z",
                            "data": {"n": n}})
        .to_string(),
        _ => json!({"ref": "refs/heads/main", "n": n, "repository": {"full_name": "team/bot"}})
            .to_string(),
    }
}

const SOURCES: [(&str, &str); 5] = [
    ("github", "gh-new"),
    ("gitea", "gitea-secret"),
    ("plane", "plane-secret"),
    ("jobs", "jobs-secret"),
    ("billing", STANDARD_SECRET),
];

async fn outcomes(app: &TestApp, source: &str) -> Vec<String> {
    app.db
        .query(
            "SELECT outcome FROM webhook_events WHERE source = $1 ORDER BY id",
            &[&source],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Rejections are written off the request path; wait for them to land.
async fn wait_for_rejected(app: &TestApp, source: &str, count: usize) {
    for _ in 0..50 {
        let rejected = outcomes(app, source)
            .await
            .iter()
            .filter(|o| *o == "rejected")
            .count();
        if rejected >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{source}: {count} rejected requests were not recorded");
}

#[tokio::test]
async fn every_scheme_accepts_its_senders_signature_and_refuses_everything_else() {
    let app = TestApp::spawn_with(sources_app()).await;
    for (source, secret) in SOURCES {
        let path = format!("/api/v1/webhooks/{source}");
        let body = body_for(source, 1);
        let id = format!("{source}-delivery-1");

        let accepted = app
            .post(&path, &body, &signed(source, secret, &id, &body))
            .await;
        assert_eq!(accepted.status, 200, "{source}: {:?}", accepted.json);
        assert_eq!(accepted.result(), "accepted", "{source}");

        let wrong = app
            .post(&path, &body, &signed(source, "wrong-secret", "x2", &body))
            .await;
        let tampered_body = body.replace("1", "2");
        let tampered = app
            .post(&path, &tampered_body, &signed(source, secret, "x3", &body))
            .await;
        let missing = app.post(&path, &body, &[]).await;
        for (what, answer) in [
            ("wrong secret", &wrong),
            ("tampered", &tampered),
            ("missing", &missing),
        ] {
            assert_eq!(answer.status, 401, "{source}, {what}: {:?}", answer.json);
            assert_eq!(
                answer.json["error"], "invalid_signature",
                "{source}, {what}"
            );
        }
        wait_for_rejected(&app, source, 3).await;
        assert_eq!(
            outcomes(&app, source).await,
            ["accepted", "rejected", "rejected", "rejected"],
            "{source}: only the signed delivery is accepted"
        );
    }

    // The stale Standard Webhooks timestamp, correctly signed: refused.
    let body = body_for("billing", 2);
    let stale = chrono::Utc::now().timestamp() - 301;
    let answer = app
        .post(
            "/api/v1/webhooks/billing",
            &body,
            &standard_headers(&standard_key(), "msg-stale", stale, &body),
        )
        .await;
    assert_eq!(answer.status, 401);
    assert!(
        answer.json["message"]
            .as_str()
            .unwrap()
            .contains("webhook-timestamp"),
        "{:?}",
        answer.json
    );

    // Rotation: GitHub's previous secret still verifies; one never configured does not.
    let body = body_for("github", 3);
    let old = app
        .post(
            "/api/v1/webhooks/github",
            &body,
            &signed("github", "gh-old", "gh-rot", &body),
        )
        .await;
    assert_eq!(old.result(), "accepted");
    let body = body_for("billing", 4);
    // Standard's rotation list: a message signed with the first (older) key of the list.
    let older = Secret::from_bytes(b"some older key".to_vec());
    let now = chrono::Utc::now().timestamp();
    let headers = standard_headers(&older, "msg-older", now, &body);
    let answer = app.post("/api/v1/webhooks/billing", &body, &headers).await;
    assert_eq!(answer.result(), "accepted", "{:?}", answer.json);

    // An unknown source is 404; a source path only takes POST.
    let body = body_for("github", 5);
    let unknown = app
        .post(
            "/api/v1/webhooks/gitlab",
            &body,
            &signed("github", "gh-new", "u", &body),
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(app.get("/api/v1/webhooks/github").await.status, 405);
}

#[tokio::test]
async fn a_redelivery_is_stored_once_and_answered_as_duplicate_and_each_source_has_its_stream() {
    let app = TestApp::spawn_with(sources_app()).await;
    let body = body_for("gitea", 1);
    let headers = signed("gitea", "gitea-secret", "gitea-delivery-7", &body);
    let first = app.post("/api/v1/webhooks/gitea", &body, &headers).await;
    let second = app.post("/api/v1/webhooks/gitea", &body, &headers).await;
    assert_eq!(first.result(), "accepted");
    assert_eq!(second.status, 200);
    assert_eq!(second.result(), "duplicate");
    assert_eq!(first.json["event_id"], second.json["event_id"]);
    let row = app
        .db
        .query_one(
            "SELECT count(*), sum(deliveries)::bigint, min(delivery_id) FROM webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, i64>(1), 2);
    assert_eq!(row.get::<_, String>(2), "gitea-delivery-7");

    // Plane retries with a new X-Plane-Delivery and the same body: the body is the delivery.
    let issue = body_for("plane", 1);
    let first_plane = app
        .post(
            "/api/v1/webhooks/plane",
            &issue,
            &signed("plane", "plane-secret", "pl-a", &issue),
        )
        .await;
    assert_eq!(first_plane.result(), "accepted");
    let retried = app
        .post(
            "/api/v1/webhooks/plane",
            &issue,
            &signed("plane", "plane-secret", "pl-b", &issue),
        )
        .await;
    assert_eq!(retried.result(), "duplicate");
    assert_eq!(retried.json["event_id"], first_plane.json["event_id"]);
    let other = body_for("plane", 2);
    let next = app
        .post(
            "/api/v1/webhooks/plane",
            &other,
            &signed("plane", "plane-secret", "pl-c", &other),
        )
        .await;
    assert_eq!(next.result(), "accepted");
    let kept: String = app
        .db
        .query_one(
            "SELECT delivery_id FROM webhook_events WHERE id = $1",
            &[&first_plane.json["event_id"].as_i64().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, "pl-a", "the first delivery's id is kept");

    // The generic job contract has no delivery id: the body's hash is the key.
    let job = body_for("jobs", 1);
    let job_headers = signed("jobs", "jobs-secret", "", &job);
    assert_eq!(
        app.post("/api/v1/webhooks/jobs", &job, &job_headers)
            .await
            .result(),
        "accepted"
    );
    assert_eq!(
        app.post("/api/v1/webhooks/jobs", &job, &job_headers)
            .await
            .result(),
        "duplicate"
    );

    // One stream entry per stored delivery, on the source's own stream.
    let mut redis = app.redis.clone();
    let entries = stream_entries(&mut redis, &format!("{}webhooks:gitea", app.prefix)).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.get::<String>("event_type").as_deref(), Some("push"));
    assert_eq!(
        entry.get::<String>("delivery_id").as_deref(),
        Some("gitea-delivery-7")
    );
    assert_eq!(
        entry.get::<String>("payload").as_deref(),
        Some(body.as_str())
    );
    let jobs: usize = redis::cmd("XLEN")
        .arg(format!("{}webhooks:jobs", app.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
}

#[tokio::test]
async fn a_signed_job_callback_that_breaks_the_contract_is_a_clear_400() {
    let app = TestApp::spawn_with(sources_app()).await;
    for (body, expected) in [
        (json!({"status": "completed"}), "job_id"),
        (
            json!({"job_id": "j1", "status": "done"}),
            "status must be one of",
        ),
    ] {
        let body = body.to_string();
        let answer = app
            .post(
                "/api/v1/webhooks/jobs",
                &body,
                &signed("jobs", "jobs-secret", "", &body),
            )
            .await;
        assert_eq!(answer.status, 400, "{:?}", answer.json);
        assert!(answer.json["message"].as_str().unwrap().contains(expected));
    }
    assert_eq!(app.event_count().await, 0);
}

/// Found by schemathesis: a signed `true` was stored and announced as an event.
#[tokio::test]
async fn a_signed_body_that_is_not_an_object_or_array_is_a_clear_400() {
    let app = TestApp::spawn_with(sources_app()).await;
    for (n, body) in ["true", "42", "\"text\"", "null"].into_iter().enumerate() {
        let answer = app
            .post(
                "/api/v1/webhooks/billing",
                body,
                &signed("billing", STANDARD_SECRET, &format!("msg_scalar_{n}"), body),
            )
            .await;
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.json);
        assert_eq!(
            answer.json["message"], "body must be a JSON object or array",
            "{body}"
        );
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn the_deliveries_api_shows_what_arrived_and_replays_idempotently() {
    let app = TestApp::spawn_with(sources_app()).await;
    let body = body_for("plane", 1);
    let stored = app
        .post(
            "/api/v1/webhooks/plane",
            &body,
            &signed("plane", "plane-secret", "pl-1", &body),
        )
        .await;
    let id = stored.json["event_id"].as_i64().unwrap();
    let refused = app
        .post(
            "/api/v1/webhooks/plane",
            &body,
            &signed("plane", "nope", "pl-2", &body),
        )
        .await;
    assert_eq!(refused.status, 401);
    wait_for_rejected(&app, "plane", 1).await;

    // The event as stored: the body as sent, headers without the signature.
    let event = app.get(&format!("/api/v1/webhooks/events/{id}")).await;
    assert_eq!(event.status, 200);
    assert_eq!(
        event.json["payload"],
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    );
    assert_eq!(event.json["source"], "plane");
    assert_eq!(event.json["event"], "issue");
    assert_eq!(event.json["delivery_id"], "pl-1");
    assert_eq!(event.json["headers"]["x-plane-delivery"], "pl-1");
    assert!(event.json["headers"].get("x-plane-signature").is_none());
    assert_eq!(app.get("/api/v1/webhooks/events/999999").await.status, 404);

    // Failures: the refused request, without a body.
    let failures = app.get("/api/v1/webhooks/failures?source=plane").await;
    let items = failures.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{:?}", failures.json);
    assert_eq!(items[0]["outcome"], "rejected");
    assert_eq!(items[0]["status_code"], 401);
    let rejected_id = items[0]["id"].as_i64().unwrap();
    let page = app.get("/api/v1/webhooks/failures?limit=1").await;
    assert_eq!(page.json["next_before"], rejected_id);
    assert_eq!(
        app.get("/api/v1/webhooks/failures?limit=0").await.status,
        400
    );

    // Metrics: by source, outcome and answer class.
    let metrics = app.get("/api/v1/webhooks/metrics?hours=1").await;
    assert_eq!(metrics.status, 200);
    let plane = &metrics.json["sources"]["plane"];
    assert_eq!(plane["total"]["events"], 2, "{:?}", metrics.json);
    let by_outcome = plane["by_outcome"].as_array().unwrap();
    assert!(by_outcome
        .iter()
        .any(|o| o["outcome"] == "accepted" && o["status_class"] == "2xx" && o["events"] == 1));
    assert!(by_outcome
        .iter()
        .any(|o| o["outcome"] == "rejected" && o["status_class"] == "4xx" && o["events"] == 1));
    assert!(plane["total"]["processing_ms_p99"].as_f64().is_some());
    assert_eq!(
        app.get("/api/v1/webhooks/metrics?hours=nine").await.status,
        400
    );

    // Health: every configured source, FAL first.
    let health = app.get("/api/v1/webhooks/health").await;
    assert_eq!(health.json["status"], "ok");
    let names: Vec<&str> = health.json["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["fal", "github", "gitea", "plane", "jobs", "billing"]
    );
    let plane = &health.json["sources"][3];
    assert_eq!(plane["last_hour"]["accepted"], 1);
    assert_eq!(plane["last_hour"]["rejected"], 1);

    // Replay: announced again, nothing stored twice.
    for _ in 0..2 {
        let replay = app
            .post(&format!("/api/v1/webhooks/events/{id}/replay"), "", &[])
            .await;
        assert_eq!(replay.status, 200, "{:?}", replay.json);
        assert_eq!(replay.json["result"], "replayed");
    }
    let row = app
        .db
        .query_one(
            "SELECT count(*) FILTER (WHERE outcome = 'accepted'), max(replays), max(deliveries) \
             FROM webhook_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i32>(1),
            row.get::<_, i32>(2)
        ),
        (1, 2, 1)
    );
    let refused = app
        .post(
            &format!("/api/v1/webhooks/events/{rejected_id}/replay"),
            "",
            &[],
        )
        .await;
    assert_eq!(refused.status, 409);
}

#[tokio::test]
async fn replaying_an_unmatched_fal_callback_applies_it_once_the_avatar_exists() {
    let app = TestApp::spawn().await;
    let body = fixture("retried_gateway_id.json");
    let first = app.post_fal(&body).await;
    assert_eq!(first.result(), "unmatched");
    let id = first.json["event_id"].as_i64().unwrap();

    let failures = app.get("/api/v1/webhooks/failures?source=fal").await;
    assert_eq!(failures.json["items"][0]["id"], id);
    assert_eq!(failures.json["items"][0]["outcome"], "unmatched");

    // The bot records the request id late (the id FAL's retried gateway request resolves to).
    let avatar = app
        .insert_training_avatar("c2f6a1d4-93e8-4b0a-8f7c-5e1d2a3b4c5d")
        .await;
    let replay = app
        .post(&format!("/api/v1/webhooks/events/{id}/replay"), "", &[])
        .await;
    assert_eq!(replay.status, 200, "{:?}", replay.json);
    assert_eq!(replay.json["result"], "applied");
    assert_eq!(app.avatar(avatar).await.status, "COMPLETED");
    let again = app
        .post(&format!("/api/v1/webhooks/events/{id}/replay"), "", &[])
        .await;
    assert_eq!(again.json["result"], "duplicate");
    assert_eq!(app.event_count().await, 1);
    assert_eq!(app.stream_len().await, 1);
}

/// `payload=<json>`, as GitHub and Gitea post it when the webhook's content type is a form.
fn form(json: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", json)
        .finish()
}

async fn post_form(app: &TestApp, path: &str, body: &str, headers: &[(&str, String)]) -> u16 {
    let mut request = app
        .http
        .post(app.url(path))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn form_encoded_deliveries_are_verified_as_each_sender_signs_them() {
    let app = TestApp::spawn_with(sources_app()).await;
    let json = body_for("github", 5);
    let body = form(&json);
    // GitHub signs the body as sent: the form.
    let github = signed("github", "gh-new", "gh-form-1", &body);
    assert_eq!(
        post_form(&app, "/api/v1/webhooks/github", &body, &github).await,
        200
    );
    let signed_json = signed("github", "gh-new", "gh-form-2", &json);
    assert_eq!(
        post_form(&app, "/api/v1/webhooks/github", &body, &signed_json).await,
        401
    );
    // Gitea signs the JSON it puts in the form.
    let gitea = signed("gitea", "gitea-secret", "gitea-form-1", &json);
    assert_eq!(
        post_form(&app, "/api/v1/webhooks/gitea", &body, &gitea).await,
        200
    );
    // Plane only posts JSON.
    let plane = signed("plane", "plane-secret", "pl-form", &body);
    assert_eq!(
        post_form(&app, "/api/v1/webhooks/plane", &body, &plane).await,
        415
    );
    // The JSON is what is stored.
    let stored: Vec<serde_json::Value> = app
        .db
        .query(
            "SELECT payload FROM webhook_events WHERE delivery_id IN ('gh-form-1', 'gitea-form-1')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(stored, [expected.clone(), expected]);
}

#[tokio::test]
async fn a_standard_source_takes_v1a_signatures_from_its_whpk_keys() {
    use base64::Engine;
    let sender = ed25519_dalek::SigningKey::from_bytes(&[21; 32]);
    let whpk = format!(
        "whpk_{}",
        base64::engine::general_purpose::STANDARD.encode(sender.verifying_key().to_bytes())
    );
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with("WEBHOOK_SOURCES", "billing:standard")
            .with(
                "WEBHOOK_SOURCE_BILLING_SECRETS",
                format!("{STANDARD_SECRET},{whpk}"),
            ),
    )
    .await;
    let body = body_for("billing", 7);
    let now = chrono::Utc::now().timestamp();
    let send = |signature: String| {
        let headers = vec![
            ("webhook-id", "msg_v1a_1".to_string()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", signature),
        ];
        let body = body.clone();
        let app = &app;
        async move { app.post("/api/v1/webhooks/billing", &body, &headers).await }
    };
    let signature =
        webhook_api::senders::sign_standard_v1a(&sender, "msg_v1a_1", now, body.as_bytes());
    let forged = webhook_api::senders::sign_standard_v1a(
        &ed25519_dalek::SigningKey::from_bytes(&[22; 32]),
        "msg_v1a_1",
        now,
        body.as_bytes(),
    );
    assert_eq!(send(forged).await.status, 401);
    let accepted = send(signature).await;
    assert_eq!(accepted.result(), "accepted", "{:?}", accepted.json);
}

/// Signatures made by implementations other than ours (`tests/senders/standard_webhooks.py`):
/// v1 by the `standardwebhooks` Python package, v1a by OpenSSL's ED25519 through
/// `cryptography`, each over the spec's `{id}.{timestamp}.{body}`.
#[tokio::test]
async fn a_standard_source_takes_signatures_from_other_implementations() {
    let body = body_for("billing", 8);
    let now = chrono::Utc::now().timestamp().to_string();
    let python = std::env::var("TEST_BOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "{}/tests/senders/standard_webhooks.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = std::process::Command::new(&python)
        .args([&script, STANDARD_SECRET, "msg_other_1", &now, &body])
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/dev/test.sh sets TEST_BOT_PYTHON)"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let signed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with("WEBHOOK_SOURCES", "billing:standard")
            .with(
                "WEBHOOK_SOURCE_BILLING_SECRETS",
                format!("{STANDARD_SECRET},{}", signed["whpk"].as_str().unwrap()),
            ),
    )
    .await;
    let post = |body: String, signature: &str| {
        let headers = vec![
            ("webhook-id", "msg_other_1".to_string()),
            ("webhook-timestamp", now.clone()),
            ("webhook-signature", signature.to_string()),
        ];
        let app = &app;
        async move { app.post("/api/v1/webhooks/billing", &body, &headers).await }
    };
    let tampered = body.replace("invoice.paid", "invoice.void");
    for scheme in ["v1", "v1a"] {
        let signature = signed[scheme].as_str().unwrap();
        assert_eq!(
            post(tampered.clone(), signature).await.status,
            401,
            "{scheme}"
        );
    }
    let v1a = post(body.clone(), signed["v1a"].as_str().unwrap()).await;
    assert_eq!(v1a.result(), "accepted", "{:?}", v1a.json);
    // The library's v1 signature of the same message: the same delivery (same webhook-id).
    let v1 = post(body.clone(), signed["v1"].as_str().unwrap()).await;
    assert_eq!(v1.result(), "duplicate", "{:?}", v1.json);
}
