//! Trained files: FAL's CDN (played by `FakeCdn`) → the real S3 server, through the job queue.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::cdn::{Behavior, FakeCdn};
use crate::helpers::{
    eventually, free_port, fresh_bucket, AppOptions, Instance, TestApp, STATUS_UPDATE,
};

const MIB: usize = 1024 * 1024;

fn random_bytes(len: usize) -> Bytes {
    let mut bytes = vec![0u8; len];
    rand::fill(&mut bytes[..]);
    Bytes::from(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A real FAL success body for the given files (`None` leaves that file out).
fn completion(
    request_id: &str,
    lora: Option<(&str, Option<usize>)>,
    config: Option<&str>,
) -> String {
    let file = |url: &str, name: &str, size: Option<usize>| {
        serde_json::json!({
            "url": url,
            "content_type": "application/octet-stream",
            "file_name": name,
            "file_size": size,
        })
    };
    serde_json::json!({
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "error": null,
        "payload": {
            "diffusers_lora_file": lora.map(|(url, size)| file(url, "pytorch_lora_weights.safetensors", size)),
            "config_file": config.map(|url| file(url, "config.json", None)),
        },
    })
    .to_string()
}

fn with_workers(options: AppOptions) -> AppOptions {
    options.with("FILE_WORKERS", "2")
}

#[derive(Debug)]
struct JobState {
    state: String,
    attempts: i32,
    last_error: Option<String>,
}

/// Waits until the avatar's file job settles (done, failed or dead).
async fn settled_job(db: &tokio_postgres::Client, avatar: Uuid, within: Duration) -> JobState {
    let query = || async {
        db.query_opt(
            "SELECT state, attempts, last_error FROM file_jobs WHERE avatar_id = $1",
            &[&avatar],
        )
        .await
        .unwrap()
        .map(|row| JobState {
            state: row.get(0),
            attempts: row.get(1),
            last_error: row.get(2),
        })
    };
    let settled = eventually(within, || async {
        query()
            .await
            .is_some_and(|job| ["done", "failed", "dead"].contains(&job.state.as_str()))
    })
    .await;
    let job = query().await.expect("a file job was enqueued");
    assert!(settled, "job did not settle within {within:?}: {job:?}");
    job
}

/// The avatar's LoRA as stored in S3, found through the key recorded in PostgreSQL.
async fn stored_lora(app: &TestApp, s3: &aws_sdk_s3::Client, bucket: &str, avatar: Uuid) -> Bytes {
    let key: String = app
        .db
        .query_one(
            "SELECT lora_object_key FROM avatars WHERE id = $1",
            &[&avatar],
        )
        .await
        .unwrap()
        .get(0);
    object_bytes(s3, bucket, &key)
        .await
        .expect("object stored under the recorded key")
}

/// The bot's user the avatar belongs to: the first segment of its object keys.
async fn user_of(app: &TestApp, avatar: Uuid) -> String {
    app.db
        .query_one(
            "SELECT user_id::text FROM avatars WHERE id = $1",
            &[&avatar],
        )
        .await
        .unwrap()
        .get(0)
}

async fn object_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Bytes> {
    let object = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(object.body.collect().await.unwrap().into_bytes())
}

#[tokio::test]
async fn completed_callback_gets_both_files_into_the_bucket_with_matching_sha256() {
    let cdn = FakeCdn::start().await;
    let s3_server = OwnS3::start().await;
    let app = TestApp::spawn_with(with_workers(s3_server.env())).await;
    let s3 = webhook_api::files::s3_client(&app.config.files);
    let bucket = &app.config.files.s3.bucket;
    let avatar = app.insert_training_avatar("req-files-1").await;
    let user_id = user_of(&app, avatar).await;
    // Larger than two parts, so the multipart path and its pipelining are exercised.
    let lora = random_bytes(12 * MIB + 12345);
    let config = Bytes::from_static(br#"{"trigger_word":"ohwx","steps":1000}"#);
    let lora_url = cdn.add("koala/lora.safetensors", lora.clone(), Behavior::Serve);
    let config_url = cdn.add("koala/config.json", config.clone(), Behavior::Serve);

    let answer = app
        .post_fal(&completion(
            "req-files-1",
            Some((&lora_url, Some(lora.len()))),
            Some(&config_url),
        ))
        .await;
    assert_eq!(answer.result(), "applied");

    let job = settled_job(&app.db, avatar, Duration::from_secs(30)).await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 1), "{job:?}");
    let prefix = format!("avatars/{user_id}/{avatar}");
    let lora_key = format!("{prefix}/lora/pytorch_lora_weights.safetensors");
    let config_key = format!("{prefix}/config/config.json");
    let stored = object_bytes(&s3, bucket, &lora_key)
        .await
        .expect("lora stored");
    assert_eq!(sha256_hex(&stored), sha256_hex(&lora));
    assert_eq!(
        object_bytes(&s3, bucket, &config_key).await.unwrap(),
        config
    );
    assert_eq!(s3_server.leftover_parts(), 0);

    let row = app
        .db
        .query_one(
            "SELECT lora_object_key, config_object_key, files_stored_at IS NOT NULL, status::text FROM avatars WHERE id = $1",
            &[&avatar],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), lora_key);
    assert_eq!(row.get::<_, String>(1), config_key);
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "COMPLETED");
    let recorded = app
        .db
        .query(
            "SELECT kind, sha256, size_bytes FROM avatar_files WHERE avatar_id = $1 ORDER BY kind",
            &[&avatar],
        )
        .await
        .unwrap();
    let recorded: Vec<(String, String, i64)> = recorded
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        recorded,
        [
            (
                "config".to_string(),
                sha256_hex(&config),
                config.len() as i64
            ),
            ("lora".to_string(), sha256_hex(&lora), lora.len() as i64),
        ]
    );

    // The bot hears about it: a stream entry and a refreshed cached status.
    let entries = app.stream_entries().await;
    let events: Vec<String> = entries.iter().map(|e| e.get("event").unwrap()).collect();
    assert_eq!(events, ["avatar.status_changed", "avatar.files_stored"]);
    let status = app.get(&format!("/api/v1/avatar/{avatar}/status")).await;
    assert_eq!(status.json["lora_object_key"], lora_key);
}

#[tokio::test]
async fn unacceptable_files_fail_as_specified_and_leave_nothing_in_the_bucket() {
    let cdn = FakeCdn::start().await;
    let s3_server = OwnS3::start().await;
    let app = TestApp::spawn_with(
        with_workers(s3_server.env())
            .with("FILE_MAX_BYTES", (8 * MIB).to_string())
            .with("FILE_JOB_MAX_ATTEMPTS", "2"),
    )
    .await;
    let s3 = webhook_api::files::s3_client(&app.config.files);
    let bucket = &app.config.files.s3.bucket;
    let six_mib = random_bytes(6 * MIB);
    let elsewhere = cdn.base.replace("127.0.0.1", "localhost");

    let truncated = cdn.add("truncated.bin", six_mib.clone(), Behavior::Truncate);
    let wrong_size = cdn.add("wrong-size.bin", six_mib.clone(), Behavior::Serve);
    cdn.add("elsewhere.bin", six_mib.clone(), Behavior::Serve);
    let disallowed = format!("{elsewhere}/files/elsewhere.bin");
    let redirected = cdn.add(
        "redirect.bin",
        Bytes::new(),
        Behavior::RedirectTo(disallowed.clone()),
    );
    let oversize = cdn.add("oversize.bin", random_bytes(9 * MIB), Behavior::Serve);
    let https_only = truncated.replace("http://", "ftp://");

    let cases: [(&str, String, Option<usize>, &str, &str); 6] = [
        (
            "truncated",
            truncated,
            Some(six_mib.len()),
            "dead",
            "download failed",
        ),
        (
            "wrong-size",
            wrong_size,
            Some(6 * MIB + 1),
            "failed",
            "declared file_size",
        ),
        (
            "disallowed",
            disallowed,
            None,
            "failed",
            "not in FILE_HOST_ALLOWLIST",
        ),
        (
            "redirect",
            redirected,
            None,
            "failed",
            "redirected to a refused URL",
        ),
        ("oversize", oversize, None, "failed", "over the limit"),
        ("scheme", https_only, None, "failed", "only https://"),
    ];
    for (name, url, declared, expected_state, expected_reason) in cases {
        let request_id = format!("req-{name}");
        let avatar = app.insert_training_avatar(&request_id).await;
        let answer = app
            .post_fal(&completion(&request_id, Some((&url, declared)), None))
            .await;
        assert_eq!(answer.result(), "applied", "{name}");

        let job = settled_job(&app.db, avatar, Duration::from_secs(30)).await;
        assert_eq!(job.state, expected_state, "{name}: {job:?}");
        let reason = job.last_error.unwrap_or_default();
        assert!(reason.contains(expected_reason), "{name}: {reason}");
        let row = app
            .db
            .query_one(
                "SELECT status::text, files_error, lora_object_key FROM avatars WHERE id = $1",
                &[&avatar],
            )
            .await
            .unwrap();
        assert_eq!(
            row.get::<_, String>(0),
            "COMPLETED",
            "{name}: the avatar stays completed"
        );
        assert_eq!(
            row.get::<_, Option<String>>(1).as_deref(),
            Some(reason.as_str())
        );
        assert_eq!(row.get::<_, Option<String>>(2), None);
    }
    assert_eq!(
        cdn.hits("truncated.bin"),
        2,
        "retried up to FILE_JOB_MAX_ATTEMPTS"
    );
    assert_eq!(
        cdn.hits("elsewhere.bin"),
        0,
        "a refused host is never contacted"
    );
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    assert_eq!(
        listed.key_count(),
        Some(0),
        "nothing partial: {:?}",
        listed.contents()
    );
    assert_eq!(s3_server.leftover_parts(), 0, "failed uploads are aborted");

    let health = app.get("/health").await;
    assert_eq!(
        health.json["status"], "degraded",
        "a dead job degrades health"
    );
    assert_eq!(health.json["checks"]["file_jobs"]["dead"], 1);
    let metrics = app.get("/metrics").await;
    let metrics = metrics.json.as_str().unwrap();
    assert!(
        metrics.contains("webhook_file_jobs{state=\"dead\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("webhook_file_jobs{state=\"failed\"} 5"),
        "{metrics}"
    );
}

#[tokio::test]
async fn cdn_failing_twice_then_recovering_is_copied_on_the_third_attempt() {
    let cdn = FakeCdn::start().await;
    let app = TestApp::spawn_with(with_workers(AppOptions::default())).await;
    let avatar = app.insert_training_avatar("req-flaky").await;
    let lora = random_bytes(MIB);
    let url = cdn.add("flaky.bin", lora.clone(), Behavior::FailFirst(2));

    app.post_fal(&completion(
        "req-flaky",
        Some((&url, Some(lora.len()))),
        None,
    ))
    .await;

    let job = settled_job(&app.db, avatar, Duration::from_secs(30)).await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 3), "{job:?}");
    assert_eq!(cdn.hits("flaky.bin"), 3);
}

/// An S3 server of the test's own, so the test can stop and restart it.
struct OwnS3 {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnS3 {
    async fn start() -> Self {
        let mut s3 = Self {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        s3.restart().await;
        s3
    }

    async fn restart(&mut self) {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", "own-access", "--secret-key", "own-secret"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs on PATH (scripts/dev/deps.sh installs it)");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        let up = eventually(Duration::from_secs(10), || {
            let address = address.clone();
            async move { tokio::net::TcpStream::connect(address).await.is_ok() }
        })
        .await;
        assert!(up, "s3s-fs did not start");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MINIO_ENDPOINT", format!("127.0.0.1:{}", self.port)),
            ("MINIO_ACCESS_KEY", "own-access".into()),
            ("MINIO_SECRET_KEY", "own-secret".into()),
        ]
    }

    fn env(&self) -> AppOptions {
        let mut options = AppOptions::default();
        options.env.extend(self.vars());
        options
    }

    /// Parts of multipart uploads neither completed nor aborted (s3s-fs keeps them as
    /// `.upload_id-{id}.part-{n}` files).
    fn leftover_parts(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".upload_id-"))
            })
            .count()
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn s3_stopped_during_a_copy_then_restarted_gets_the_file_later() {
    let cdn = FakeCdn::start().await;
    let mut s3_server = OwnS3::start().await;
    let app = TestApp::spawn_with(with_workers(s3_server.env())).await;
    let s3 = webhook_api::files::s3_client(&app.config.files);
    let avatar = app.insert_training_avatar("req-s3-down").await;
    let lora = random_bytes(10 * MIB);
    let slow = Behavior::Slow {
        chunk: 256 * 1024,
        pause: Duration::from_millis(25),
    };
    let url = cdn.add("slow.bin", lora.clone(), slow);

    app.post_fal(&completion(
        "req-s3-down",
        Some((&url, Some(lora.len()))),
        None,
    ))
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            cdn.hits("slow.bin") > 0
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    s3_server.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    s3_server.restart().await;
    let restarted_at: chrono::DateTime<chrono::Utc> =
        app.db.query_one("SELECT now()", &[]).await.unwrap().get(0);

    let job = settled_job(&app.db, avatar, Duration::from_secs(60)).await;
    assert_eq!(job.state, "done", "{job:?}");
    // Whether the SDK's own retries or a second job attempt carried it over the outage, the
    // copy finished only once S3 was back.
    let finished_at: chrono::DateTime<chrono::Utc> = app
        .db
        .query_one(
            "SELECT finished_at FROM file_jobs WHERE avatar_id = $1",
            &[&avatar],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        finished_at > restarted_at,
        "{finished_at} vs {restarted_at}"
    );
    let stored = stored_lora(&app, &s3, &app.config.files.s3.bucket, avatar).await;
    assert_eq!(sha256_hex(&stored), sha256_hex(&lora));
}

#[tokio::test]
async fn two_instances_sharing_the_database_copy_each_of_twenty_completions_once() {
    let cdn = FakeCdn::start().await;
    let first = TestApp::spawn_with(with_workers(AppOptions::default())).await;
    let bucket = first.config.files.s3.bucket.clone();
    let second = TestApp::spawn_with(AppOptions {
        database_url: Some(first.database.url.clone()),
        ..with_workers(AppOptions::default()).with("MINIO_BUCKET_NAME", bucket.clone())
    })
    .await;

    let mut avatars = Vec::new();
    for n in 0..20 {
        let request_id = format!("req-pair-{n}");
        let avatar = first.insert_training_avatar(&request_id).await;
        let lora = random_bytes(64 * 1024 + n);
        let lora_url = cdn.add(&format!("{n}/lora.bin"), lora.clone(), Behavior::Serve);
        let config_url = cdn.add(
            &format!("{n}/config.json"),
            Bytes::from(format!("{{\"n\":{n}}}")),
            Behavior::Serve,
        );
        let instance = if n % 2 == 0 { &first } else { &second };
        let answer = instance
            .post_fal(&completion(
                &request_id,
                Some((&lora_url, Some(lora.len()))),
                Some(&config_url),
            ))
            .await;
        assert_eq!(answer.result(), "applied");
        avatars.push(avatar);
    }

    for avatar in &avatars {
        let job = settled_job(&first.db, *avatar, Duration::from_secs(30)).await;
        assert_eq!((job.state.as_str(), job.attempts), ("done", 1), "{job:?}");
    }
    for n in 0..20 {
        assert_eq!(
            cdn.hits(&format!("{n}/lora.bin")),
            1,
            "lora {n} fetched once"
        );
        assert_eq!(
            cdn.hits(&format!("{n}/config.json")),
            1,
            "config {n} fetched once"
        );
    }
    let s3 = webhook_api::files::s3_client(&first.config.files);
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(40));
}

#[tokio::test]
async fn an_instance_killed_mid_copy_leaves_the_job_to_another_after_its_lease() {
    let cdn = FakeCdn::start().await;
    let s3_server = OwnS3::start().await;
    // Owns the database and talks to the same S3; its own worker is off.
    let first_app = TestApp::spawn_with(s3_server.env()).await;
    let db_url = first_app.database.url.clone();
    let bucket = fresh_bucket();
    let mut env = s3_server.vars();
    env.extend([
        ("FILE_WORKERS", "1".to_string()),
        ("FILE_JOB_LEASE_SECS", "2".to_string()),
        ("MINIO_BUCKET_NAME", bucket.clone()),
    ]);
    let mut doomed = Instance::start_with(&db_url, &env);
    doomed.wait_ready().await;
    let avatar = first_app.insert_training_avatar("req-killed").await;
    let lora = random_bytes(12 * MIB);
    let slow = Behavior::Slow {
        chunk: 256 * 1024,
        pause: Duration::from_millis(40),
    };
    let url = cdn.add("killed.bin", lora.clone(), slow);
    let body = completion("req-killed", Some((&url, Some(lora.len()))), None);
    let (name, value) = crate::helpers::hmac_header(&body);
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{STATUS_UPDATE}", doomed.port))
        .header("Content-Type", "application/json")
        .header(name, value)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // Killed once its first part is in S3: an open multipart upload is left behind.
    assert!(
        eventually(Duration::from_secs(15), || async {
            s3_server.leftover_parts() > 0
        })
        .await
    );
    doomed.signal("KILL");
    doomed.wait_exit(Duration::from_secs(5));
    let mut survivor = Instance::start_with(&db_url, &env);
    survivor.wait_ready().await;

    let job = settled_job(&first_app.db, avatar, Duration::from_secs(60)).await;
    assert_eq!((job.state.as_str(), job.attempts), ("done", 2), "{job:?}");
    assert_eq!(cdn.hits("killed.bin"), 2);
    let s3 = webhook_api::files::s3_client(&first_app.config.files);
    let stored = stored_lora(&first_app, &s3, &bucket, avatar).await;
    assert_eq!(sha256_hex(&stored), sha256_hex(&lora));
    assert_eq!(
        s3_server.leftover_parts(),
        0,
        "the killed attempt's upload was aborted"
    );
    survivor.stop();
}

#[tokio::test]
async fn files_come_only_from_public_addresses_on_allowed_ports() {
    let cdn = FakeCdn::start().await;
    let s3_server = OwnS3::start().await;
    let cdn_port = cdn.base.rsplit(':').next().unwrap().to_string();
    let app = TestApp::spawn_with(
        with_workers(s3_server.env())
            .with("FILE_HOST_ALLOWLIST", "localhost,127.0.0.1")
            .with("FILE_ALLOW_PRIVATE_ADDRESSES", "false")
            .with("FILE_ALLOWED_PORTS", cdn_port),
    )
    .await;
    let by_name = cdn
        .add("by-name.bin", random_bytes(1024), Behavior::Serve)
        .replace("127.0.0.1", "localhost");
    let by_address = cdn.add("by-address.bin", random_bytes(1024), Behavior::Serve);
    // The instance's own port: the operators' API must never be copied into S3.
    let other_port = format!("{}/metrics", app.address.replace("127.0.0.1", "localhost"));
    let cases = [
        ("name", by_name, "resolves to no public address"),
        ("address", by_address, "127.0.0.1 is not a public address"),
        ("port", other_port, "not in FILE_ALLOWED_PORTS"),
    ];
    for (name, url, expected) in cases {
        let request_id = format!("req-address-{name}");
        let avatar = app.insert_training_avatar(&request_id).await;
        let answer = app
            .post_fal(&completion(&request_id, Some((&url, None)), None))
            .await;
        assert_eq!(answer.result(), "applied", "{name}");
        let job = settled_job(&app.db, avatar, Duration::from_secs(30)).await;
        assert_eq!(
            (job.state.as_str(), job.attempts),
            ("failed", 1),
            "{name}: {job:?}"
        );
        let reason = job.last_error.unwrap_or_default();
        assert!(reason.contains(expected), "{name}: {reason}");
    }
    assert_eq!(cdn.hits("by-name.bin") + cdn.hits("by-address.bin"), 0);
}

#[tokio::test]
async fn a_lora_and_a_config_of_one_file_name_are_two_objects() {
    let cdn = FakeCdn::start().await;
    let s3_server = OwnS3::start().await;
    let app = TestApp::spawn_with(with_workers(s3_server.env())).await;
    let s3 = webhook_api::files::s3_client(&app.config.files);
    let bucket = &app.config.files.s3.bucket;
    let avatar = app.insert_training_avatar("req-same-name").await;
    let (weights, config) = (random_bytes(4096), Bytes::from_static(b"{\"steps\":1}"));
    let file = |url: String, size: usize| serde_json::json!({"url": url, "file_name": "model.bin", "file_size": size});
    let body = serde_json::json!({
        "request_id": "req-same-name",
        "status": "OK",
        "payload": {
            "diffusers_lora_file": file(cdn.add("a/model.bin", weights.clone(), Behavior::Serve), weights.len()),
            "config_file": file(cdn.add("b/model.bin", config.clone(), Behavior::Serve), config.len()),
        },
    })
    .to_string();
    assert_eq!(app.post_fal(&body).await.result(), "applied");
    let job = settled_job(&app.db, avatar, Duration::from_secs(30)).await;
    assert_eq!(job.state, "done", "{job:?}");
    let user_id = user_of(&app, avatar).await;
    let prefix = format!("avatars/{user_id}/{avatar}");
    let lora = object_bytes(&s3, bucket, &format!("{prefix}/lora/model.bin")).await;
    let stored_config = object_bytes(&s3, bucket, &format!("{prefix}/config/model.bin")).await;
    assert_eq!(lora.as_deref(), Some(&weights[..]));
    assert_eq!(stored_config.as_deref(), Some(&config[..]));
}

#[tokio::test]
async fn files_stored_is_announced_once_for_every_copy_finished_while_redis_was_down() {
    let cdn = FakeCdn::start().await;
    let s3_server = OwnS3::start().await;
    let mut redis = crate::resilience::OwnRedis::start().await;
    let app = TestApp::spawn_with(
        with_workers(s3_server.env())
            .with("REDIS_URL", redis.url.clone())
            .with("REDIS_TIMEOUT_MS", "200")
            .with("ANNOUNCE_INTERVAL_MS", "200")
            .with("ANNOUNCE_SETTLE_MS", "500"),
    )
    .await;
    const COPIES: usize = 20;
    let mut avatars = Vec::new();
    for n in 0..COPIES {
        let request_id = format!("req-outage-{n}");
        avatars.push(app.insert_training_avatar(&request_id).await);
    }
    let outage = std::time::Instant::now();
    redis.stop();
    for (n, avatar) in avatars.iter().enumerate() {
        let request_id = format!("req-outage-{n}");
        let url = cdn.add(
            &format!("outage-{n}.bin"),
            random_bytes(64 * 1024),
            Behavior::Serve,
        );
        let answer = app
            .post_fal(&completion(&request_id, Some((&url, None)), None))
            .await;
        assert_eq!(answer.result(), "applied");
        let job = settled_job(&app.db, *avatar, Duration::from_secs(30)).await;
        assert_eq!(job.state, "done", "{job:?}");
    }
    tokio::time::sleep(Duration::from_secs(15).saturating_sub(outage.elapsed())).await;

    let back = crate::resilience::OwnRedis::start_on(redis.port).await;
    let stream = format!("{}avatar:events", app.prefix);
    let files_stored = || async {
        let mut redis = redis::Client::open(back.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        crate::helpers::stream_entries(&mut redis, &stream)
            .await
            .iter()
            .filter(|e| e.get::<String>("event").as_deref() == Some("avatar.files_stored"))
            .map(|e| e.get::<String>("avatar_id").unwrap_or_default())
            .collect::<Vec<String>>()
    };
    let all = eventually(Duration::from_secs(15), || async {
        files_stored().await.len() >= COPIES
    })
    .await;
    assert!(
        all,
        "announced after the outage: {}",
        files_stored().await.len()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut announced = files_stored().await;
    announced.sort();
    let mut expected: Vec<String> = avatars.iter().map(Uuid::to_string).collect();
    expected.sort();
    assert_eq!(announced, expected, "each copy announced once");
}
