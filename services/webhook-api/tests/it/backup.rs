//! `scripts/deploy/backup-db.sh` and `restore-db.sh` as an operator runs them, with callbacks
//! arriving: every callback acknowledged before the backup began is in the restored database,
//! the restore's own check passes, and events stored after a restore get ids Redis has never
//! seen announced, so they are announced.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::process::Command;

use crate::helpers::{eventually, pg_connect, stream_entries, AppOptions, TestApp};
use crate::sources::{body_for, signed};
use crate::support::drop_database;

const CALLBACKS: usize = 300;

fn completion(request_id: &str) -> String {
    format!(
        r#"{{"request_id":"{request_id}","status":"OK","error":null,"payload":{{"diffusers_lora_file":{{"url":"https://v3.fal.media/files/b/{request_id}.safetensors","file_size":10}}}}}}"#
    )
}

fn script(name: &str) -> String {
    format!("{}/../../scripts/deploy/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The app's environment for a github source, so its deliveries use Redis's announced marks.
fn with_github(options: AppOptions) -> AppOptions {
    options
        .with("WEBHOOK_SOURCES", "github:github")
        .with("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-new")
        .with("WEBHOOK_SOURCE_GITHUB_SPOOL", "false")
}

async fn post_github(app: &TestApp, n: u32) -> serde_json::Value {
    let body = body_for("github", n);
    let headers = signed("github", "gh-new", &format!("bk-gh-{n}"), &body);
    app.post("/api/v1/webhooks/github", &body, &headers)
        .await
        .json
}

// Several threads: the load goes on while the scripts run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_callback() {
    let app = TestApp::spawn_with(with_github(AppOptions::default())).await;
    for n in 0..CALLBACKS {
        app.insert_training_avatar(&format!("bk-{n}")).await;
    }
    // Callbacks four at a time; each acknowledgement's time is kept.
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let load = {
        let (url, acked) = (app.url("/api/v1/avatar/status_update"), acked.clone());
        let signer_headers: Vec<_> = (0..CALLBACKS)
            .map(|n| {
                let body = completion(&format!("bk-{n}"));
                let headers = app.signer.headers(&body);
                (format!("bk-{n}"), body, headers)
            })
            .collect();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            futures::stream::iter(signer_headers)
                .for_each_concurrent(4, |(id, body, headers)| {
                    let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
                    async move {
                        let mut request = client.post(&url).body(body);
                        for (name, value) in headers {
                            request = request.header(name, value);
                        }
                        request = request.header("Content-Type", "application/json");
                        let response = request.send().await.expect("the callback is answered");
                        assert_eq!(response.status(), 200);
                        acked.lock().unwrap().push((id, Instant::now()));
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await;
        })
    };
    let started = eventually(Duration::from_secs(30), || async {
        acked.lock().unwrap().len() >= 60
    })
    .await;
    assert!(started);

    let backups = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let backup = Command::new("bash")
        .arg(script("backup-db.sh"))
        .env("DATABASE_URL", &app.database.url)
        .env("BACKUP_DIR", backups.path())
        .env("BACKUP_KEEP", "3")
        .env("ENV_FILE", "/nonexistent")
        .output()
        .await
        .unwrap();
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let dump = String::from_utf8(backup.stdout).unwrap().trim().to_string();
    load.await.unwrap();
    // Stored after the backup: ids Redis marks as announced, which the restore must not reuse.
    for n in 0..3 {
        assert_eq!(post_github(&app, n).await["result"], "accepted");
    }
    let before_backup: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(before_backup.len() >= 60);

    let restored = format!("restored_{}", uuid::Uuid::new_v4().simple());
    let restore = Command::new("bash")
        .arg(script("restore-db.sh"))
        .arg(&dump)
        .arg(&restored)
        .env("DATABASE_URL", &app.database.url)
        .env("WEBHOOK_API_BIN", env!("CARGO_BIN_EXE_webhook-api"))
        .env("ENV_FILE", "/nonexistent")
        .output()
        .await
        .unwrap();
    let restore_log = String::from_utf8_lossy(&restore.stderr).to_string();
    assert!(restore.status.success(), "{restore_log}");
    assert!(restore_log.contains("webhook_events:"), "{restore_log}");
    let restored_url = format!(
        "{}/{restored}",
        app.database.url.rsplit_once('/').unwrap().0
    );
    let db = pg_connect(&restored_url).await;
    let present: i64 = db
        .query_one(
            "SELECT count(*) FROM webhook_events e JOIN avatars a \
               ON a.fal_request_id = e.fal_request_id \
             WHERE e.fal_request_id = ANY($1) AND e.outcome = 'applied' \
               AND a.status::text = 'COMPLETED'",
            &[&before_backup],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        present as usize,
        before_backup.len(),
        "every callback acknowledged before the backup began is in it"
    );

    // An instance on the restored database, with the same Redis: a new delivery is announced.
    let after = TestApp::spawn_with(with_github(
        AppOptions::default()
            .shared_database(&restored_url)
            .with("REDIS_KEY_PREFIX", app.prefix.clone()),
    ))
    .await;
    let answer = post_github(&after, 100).await;
    assert_eq!(answer["result"], "accepted", "{answer}");
    let new_id = answer["event_id"].as_i64().unwrap().to_string();
    let mut redis = app.redis.clone();
    let stream = format!("{}webhooks:github", app.prefix);
    let announced = eventually(Duration::from_secs(5), || {
        let (mut redis, stream, new_id) = (redis.clone(), stream.clone(), new_id.clone());
        async move {
            stream_entries(&mut redis, &stream)
                .await
                .iter()
                .any(|e| e.get::<String>("event_id").as_deref() == Some(new_id.as_str()))
        }
    })
    .await;
    assert!(announced, "event {new_id} after the restore was announced");
    assert_eq!(stream_entries(&mut redis, &stream).await.len(), 4);
    drop(after);
    drop_database(&restored);

    // BACKUP_KEEP: the newest three are kept; --dry-run writes nothing.
    let run_backup = |extra: &'static [&'static str]| {
        Command::new("bash")
            .arg(script("backup-db.sh"))
            .args(extra)
            .env("DATABASE_URL", &app.database.url)
            .env("BACKUP_DIR", backups.path())
            .env("BACKUP_KEEP", "3")
            .env("ENV_FILE", "/nonexistent")
            .output()
    };
    for _ in 0..3 {
        assert!(run_backup(&[]).await.unwrap().status.success());
    }
    assert!(run_backup(&["--dry-run"]).await.unwrap().status.success());
    let dumps = std::fs::read_dir(backups.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("dump".as_ref()))
        .count();
    assert_eq!(dumps, 3, "four backups, BACKUP_KEEP=3");
    assert!(!std::path::Path::new(&dump).exists(), "the oldest went");
}
