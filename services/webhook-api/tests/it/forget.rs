//! `webhook-api forget` as an operator runs it: every copy the service keeps of an avatar goes
//! (S3 objects, file rows and jobs, event payloads, the status cache), nobody else's, not the
//! bot's own rows; a second run finds nothing, and a redelivery afterwards changes nothing.

use std::time::Duration;

use bytes::Bytes;
use tokio::process::Command;
use uuid::Uuid;

use crate::cdn::{Behavior, FakeCdn};
use crate::helpers::{eventually, s3_env, AppOptions, TestApp};

fn completion(request_id: &str, lora_url: &str, config_url: &str) -> String {
    serde_json::json!({
        "request_id": request_id, "status": "OK", "error": null,
        "payload": {
            "diffusers_lora_file": {"url": lora_url, "file_name": "weights.safetensors", "file_size": 4},
            "config_file": {"url": config_url, "file_name": "config.json"},
        },
    })
    .to_string()
}

/// An avatar whose training completed and whose two files are in S3.
async fn trained(app: &TestApp, cdn: &FakeCdn, request_id: &str) -> Uuid {
    let avatar = app.insert_training_avatar(request_id).await;
    let lora = cdn.add(
        &format!("{request_id}/weights.safetensors"),
        Bytes::from_static(b"lora"),
        Behavior::Serve,
    );
    let config = cdn.add(
        &format!("{request_id}/config.json"),
        Bytes::from_static(b"{}"),
        Behavior::Serve,
    );
    let answer = app.post_fal(&completion(request_id, &lora, &config)).await;
    assert_eq!(answer.result(), "applied");
    let copied = eventually(Duration::from_secs(20), || async {
        objects(app, avatar).await.len() == 2
    })
    .await;
    assert!(copied, "{request_id}'s files were copied");
    avatar
}

/// The keys under the avatar's prefix in S3.
async fn objects(app: &TestApp, avatar: Uuid) -> Vec<String> {
    let s3 = webhook_api::files::s3_client(&app.config.files);
    let listed = s3
        .list_objects_v2()
        .bucket(&app.config.files.s3.bucket)
        .prefix("avatars/")
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|key| key.contains(&avatar.to_string()))
        .map(str::to_owned)
        .collect()
}

async fn forget(app: &TestApp, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-api"))
        .arg("forget")
        .args(args)
        .env_clear()
        .envs(s3_env(&app.config.files.s3.bucket))
        .env("DATABASE_URL", &app.database.url)
        .env("REDIS_URL", app.config.redis.url.expose())
        .env("REDIS_KEY_PREFIX", &app.prefix)
        .env("LOG_LEVEL", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

async fn count(app: &TestApp, sql: &str, avatar: Uuid) -> i64 {
    app.db.query_one(sql, &[&avatar]).await.unwrap().get(0)
}

#[tokio::test]
async fn forget_removes_every_copy_of_an_avatar_and_nothing_else() {
    let cdn = FakeCdn::start().await;
    let app = TestApp::spawn_with(AppOptions::default().with("FILE_WORKERS", "2")).await;
    let gone = trained(&app, &cdn, "forget-a").await;
    let other = trained(&app, &cdn, "forget-b").await;
    // The commit wrote the status through to Redis; a read keeps it there.
    assert_eq!(
        app.get(&format!("/api/v1/avatar/{gone}/status"))
            .await
            .status,
        200
    );
    let cached = format!("{}avatar:{gone}", app.prefix);
    let mut redis = app.redis.clone();
    let exists: bool = redis::cmd("EXISTS")
        .arg(&cached)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(exists);
    let before = app.avatar(gone).await;
    let keys = "SELECT count(*) FROM avatars WHERE id = $1 \
                AND (lora_object_key IS NOT NULL OR config_object_key IS NOT NULL)";
    assert_eq!(
        count(&app, keys, gone).await,
        1,
        "the copy named its objects"
    );

    assert_eq!(
        forget(&app, &["--avatar", &gone.to_string()]).await,
        "forgot 1 avatar(s): 1 event payloads, 1 file jobs, 2 file rows, 2 S3 objects, \
         1 cached statuses"
    );
    assert!(objects(&app, gone).await.is_empty());
    for sql in [
        "SELECT count(*) FROM avatar_files WHERE avatar_id = $1",
        "SELECT count(*) FROM file_jobs WHERE avatar_id = $1",
        "SELECT count(*) FROM webhook_events WHERE avatar_id = $1 AND payload IS NOT NULL",
    ] {
        assert_eq!(count(&app, sql, gone).await, 0, "{sql}");
    }
    let exists: bool = redis::cmd("EXISTS")
        .arg(&cached)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists, "the status cache is cleared");
    assert_eq!(
        app.avatar(gone).await,
        before,
        "the bot's own columns are the bot's"
    );
    assert_eq!(
        count(&app, keys, gone).await,
        0,
        "no key names a deleted object"
    );
    assert_eq!(count(&app, keys, other).await, 1, "nobody else's keys");
    assert_eq!(objects(&app, other).await.len(), 2, "nobody else's files");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM avatar_files WHERE avatar_id = $1",
            other
        )
        .await,
        2
    );

    // Again: nothing left. A redelivery of its completion is a duplicate: nothing is re-copied.
    assert_eq!(
        forget(&app, &["--avatar", &gone.to_string()]).await,
        "forgot 1 avatar(s): 0 event payloads, 0 file jobs, 0 file rows, 0 S3 objects, \
         0 cached statuses"
    );
    let lora = cdn.add(
        "forget-a/weights.safetensors",
        Bytes::from_static(b"lora"),
        Behavior::Serve,
    );
    let config = cdn.add(
        "forget-a/config.json",
        Bytes::from_static(b"{}"),
        Behavior::Serve,
    );
    let again = app.post_fal(&completion("forget-a", &lora, &config)).await;
    assert_eq!(again.result(), "duplicate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(objects(&app, gone).await.is_empty());

    // A user: every avatar of theirs.
    let user: String = app
        .db
        .query_one("SELECT user_id::text FROM avatars WHERE id = $1", &[&other])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        forget(&app, &["--user", &user]).await,
        "forgot 1 avatar(s): 1 event payloads, 1 file jobs, 2 file rows, 2 S3 objects, \
         1 cached statuses"
    );
    assert!(objects(&app, other).await.is_empty());
}
