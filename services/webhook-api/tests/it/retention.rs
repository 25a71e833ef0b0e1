//! Retention, with the clock moved by ageing rows (never by sleeping): each rule removes
//! exactly what it should and nothing something still points at, a redelivery after a row is
//! gone changes nothing, and the instances run it themselves.

use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{eventually, fixture, AppOptions, TestApp};
use crate::sources::{body_for, signed};

fn github_app() -> AppOptions {
    AppOptions::default()
        .with("WEBHOOK_SOURCES", "github:github")
        .with("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-new")
}

async fn age(app: &TestApp, event_id: i64, days: i32) {
    app.db
        .execute(
            "UPDATE webhook_events SET received_at = now() - make_interval(days => $2) \
             WHERE id = $1",
            &[&event_id, &days],
        )
        .await
        .unwrap();
}

async fn post_github(app: &TestApp, n: u32) -> i64 {
    let body = body_for("github", n);
    let answer = app
        .post(
            "/api/v1/webhooks/github",
            &body,
            &signed("github", "gh-new", &format!("ret-{n}"), &body),
        )
        .await;
    answer.json["event_id"].as_i64().unwrap()
}

/// `webhook-api retention [--dry-run]` as an operator runs it: its output line.
async fn retention_command(app: &TestApp, dry_run: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webhook-api"));
    command
        .arg("retention")
        .env_clear()
        .env("DATABASE_URL", &app.database.url)
        .env("LOG_LEVEL", "warn");
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

async fn row(app: &TestApp, id: i64) -> Option<(bool, bool, Option<String>, Option<i32>)> {
    app.db
        .query_opt(
            "SELECT payload IS NULL, headers IS NULL, payload_sha256, payload_bytes \
             FROM webhook_events WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

#[tokio::test]
async fn each_rule_removes_exactly_what_it_should() {
    let app = TestApp::spawn_with(github_app()).await;
    // A: progress, then completion (which queues a file job pointing at its event).
    let finished = app.insert_training_avatar("test-123").await;
    let progress = app.post_fal(&fixture("legacy_in_progress.json")).await;
    assert_eq!(progress.result(), "applied");
    let completion = app.post_fal(&fixture("legacy_completed.json")).await;
    assert_eq!(completion.result(), "applied");
    // B: still training.
    app.insert_training_avatar("ret-training").await;
    let training = app
        .post_fal(&fixture("legacy_in_progress.json").replace("test-123", "ret-training"))
        .await;
    assert_eq!(training.result(), "applied");
    let [progress_id, completion_id, training_id] =
        [&progress, &completion, &training].map(|a| a.json["event_id"].as_i64().unwrap());
    let (old_push, month_push, new_push) = (
        post_github(&app, 1).await,
        post_github(&app, 2).await,
        post_github(&app, 3).await,
    );
    for id in [progress_id, completion_id, training_id, old_push] {
        age(&app, id, 200).await;
    }
    age(&app, month_push, 40).await;
    // A's file job finished long ago; the file it copied stays recorded.
    app.db
        .batch_execute(&format!(
            "UPDATE file_jobs SET state = 'done', finished_at = now() - interval '200 days' \
               WHERE avatar_id = '{finished}'; \
             INSERT INTO avatar_files (avatar_id, kind, object_key, sha256, size_bytes, \
               source_url, job_id) SELECT '{finished}', 'lora', 'avatars/u/a/lora/w', 'ab', 1, \
               'https://v3.fal.media/w', id FROM file_jobs WHERE avatar_id = '{finished}'"
        ))
        .await
        .unwrap();
    let sha_before: String = app
        .db
        .query_one(
            "SELECT encode(sha256(convert_to(payload::text, 'UTF8')), 'hex') \
             FROM webhook_events WHERE id = $1",
            &[&month_push],
        )
        .await
        .unwrap()
        .get(0);

    assert_eq!(
        retention_command(&app, true).await,
        "would drop 5 payloads, delete 2 events (keep 2 old ones something points at), \
         delete 1 finished file jobs, drop 0 deploy outputs"
    );
    assert_eq!(
        retention_command(&app, false).await,
        "dropped 5 payloads, deleted 3 events, deleted 1 finished file jobs, \
         dropped 0 deploy outputs"
    );
    // Deleted: A's progress, A's completion (its file job went first), the old push. The
    // copied file's row stays, without its job.
    for id in [progress_id, completion_id, old_push] {
        assert_eq!(row(&app, id).await, None, "event {id}");
    }
    let file_rows: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM avatar_files WHERE avatar_id = $1 AND job_id IS NULL",
            &[&finished],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(file_rows, 1);
    // Kept without payload: B's progress (B is training), the 40-day push, with the size and
    // hash of what was dropped.
    for id in [training_id, month_push] {
        let (payload_gone, headers_gone, sha, bytes) = row(&app, id).await.expect("kept");
        assert!(payload_gone && headers_gone, "event {id}");
        assert!(sha.is_some() && bytes.unwrap() > 0, "event {id}");
    }
    assert_eq!(row(&app, month_push).await.unwrap().2, Some(sha_before));
    // Untouched: the new push.
    assert!(!row(&app, new_push).await.unwrap().0);
    assert_eq!(
        retention_command(&app, false).await,
        "dropped 0 payloads, deleted 0 events, deleted 0 finished file jobs, \
         dropped 0 deploy outputs"
    );

    // A replay of a dropped payload says why it cannot be replayed.
    let replay = app
        .post(
            &format!("/api/v1/webhooks/events/{month_push}/replay"),
            "",
            &[],
        )
        .await;
    assert_eq!(replay.status, 409, "{:?}", replay.json);
    assert!(replay.json["message"]
        .as_str()
        .unwrap()
        .contains("RETENTION_PAYLOAD_DAYS"));

    // FAL redelivers A's progress and completion after their rows went: stored again, and
    // they change nothing: no second file job.
    let before = app.avatar(finished).await;
    for callback in ["legacy_in_progress.json", "legacy_completed.json"] {
        let again = app.post_fal(&fixture(callback)).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.result(), "ignored", "{callback}: {:?}", again.json);
    }
    assert_eq!(
        app.avatar(finished).await,
        before,
        "the finished avatar is unchanged"
    );
    let jobs: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM file_jobs WHERE avatar_id = $1",
            &[&finished],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(jobs, 0, "no file job again");
}

#[tokio::test]
async fn the_instances_run_retention_under_a_lease() {
    let app = TestApp::spawn_with(
        github_app()
            .with("RETENTION_INTERVAL_SECS", "1")
            .with("RETENTION_EVENT_DAYS", "10")
            .with("RETENTION_PAYLOAD_DAYS", "5"),
    )
    .await;
    let old = post_github(&app, 1).await;
    let kept = post_github(&app, 2).await;
    age(&app, old, 11).await;
    age(&app, kept, 6).await;
    let gone = eventually(Duration::from_secs(10), || async {
        row(&app, old).await.is_none() && row(&app, kept).await.is_some_and(|r| r.0)
    })
    .await;
    assert!(gone, "old row deleted, the other's payload dropped");
    let metrics = app.get("/metrics").await.json;
    let metrics = metrics.as_str().unwrap();
    for line in [
        r#"webhook_retention_deleted_total{what="event"} 1"#,
        r#"webhook_retention_deleted_total{what="payload"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing {line}");
    }
    let holder: String = app
        .db
        .query_one(
            "SELECT owner FROM reconciler_lease WHERE name = 'retention'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(holder.starts_with("it-instance/"), "{holder}");
}
