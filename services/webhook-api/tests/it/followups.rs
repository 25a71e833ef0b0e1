//! What a finished training means to the avatar's owner, on the bot's live schema: one
//! Telegram message with the bot's text and buttons (through redeliveries, a replay and two
//! instances), none when the bot's own mark is set, Telegram's 429 waited out, a blocked user
//! tried once; the training photos removed but the preview, only once the files are copied;
//! portrait and style avatars left as the bot's generation reads them. A local server plays the
//! Bot API as Telegram documents it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::cdn::{Behavior, FakeCdn};
use crate::helpers::{
    bot_orm, eventually, fixture, pg_connect, s3_env, AppOptions, AvatarsSchema, ChaosProxy,
    Instance, TestApp, TestDatabase,
};

const TOKEN: &str = "123456789:AAF-test-token-for-the-fake-bot-api";

/// One `sendMessage` as the fake Bot API received it.
#[derive(Debug, Clone)]
pub struct Sent {
    path: String,
    pub body: Value,
    at: Instant,
}

/// The Bot API on loopback: answers from a script (then `{"ok":true,"result":Message}`),
/// JSON or form bodies, every request recorded; `hold_next` keeps the next answer back.
pub struct FakeBotApi {
    pub url: String,
    sent: Arc<Mutex<Vec<Sent>>>,
    script: Arc<Mutex<VecDeque<(u16, Value)>>>,
    hold: Arc<Mutex<Option<Duration>>>,
}

impl FakeBotApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<(u16, Value)>>> = Arc::default();
        let hold: Arc<Mutex<Option<Duration>>> = Arc::default();
        let (log, answers, holding) = (sent.clone(), script.clone(), hold.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, answers, holding) = (log.clone(), answers.clone(), holding.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (log, answers, holding) =
                                (log.clone(), answers.clone(), holding.clone());
                            async move {
                                let path = request.uri().path().to_string();
                                let form = request.headers().get("content-type").is_some_and(|v| {
                                    v.as_bytes().starts_with(b"application/x-www")
                                });
                                let bytes = request.into_body().collect().await.unwrap().to_bytes();
                                let body = if form {
                                    let pairs: serde_json::Map<String, Value> =
                                        url::form_urlencoded::parse(&bytes)
                                            .map(|(k, v)| (k.into_owned(), Value::String(v.into())))
                                            .collect();
                                    Value::Object(pairs)
                                } else {
                                    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                                };
                                let chat = body["chat_id"].clone();
                                log.lock().unwrap().push(Sent {
                                    path,
                                    body,
                                    at: Instant::now(),
                                });
                                let held = holding.lock().unwrap().take();
                                if let Some(held) = held {
                                    tokio::time::sleep(held).await;
                                }
                                let (status, answer) =
                                    answers.lock().unwrap().pop_front().unwrap_or_else(|| {
                                        (
                                            200,
                                            json!({"ok": true, "result": {
                                            "message_id": 1, "date": 1_700_000_000,
                                            "chat": {"id": chat, "type": "private"}}}),
                                        )
                                    });
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .header("content-type", "application/json")
                                        .body(Full::new(Bytes::from(answer.to_string())))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            sent,
            script,
            hold,
        }
    }

    fn hold_next(&self, answer_after: Duration) {
        *self.hold.lock().unwrap() = Some(answer_after);
    }

    fn answer_next(&self, status: u16, body: Value) {
        self.script.lock().unwrap().push_back((status, body));
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    pub fn sent_to(&self, chat: i64) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.body["chat_id"] == json!(chat))
            .collect()
    }
}

/// The bot's live database, and the settings that turn the follow-ups on against `bot_api`.
pub async fn live_database() -> TestDatabase {
    TestDatabase::create_with(AvatarsSchema::BotLive).await
}

pub fn options(db: &TestDatabase, bot_api: &FakeBotApi, marks: &str) -> AppOptions {
    AppOptions::default()
        .shared_database(&db.url)
        .with("TELEGRAM_TOKEN", TOKEN)
        .with("TELEGRAM_API_URL", bot_api.url.clone())
        .with("NOTIFY_REDIS_KEY_PREFIX", marks.to_string())
        .with("FOLLOWUP_POLL_MS", "50")
        .with("FOLLOWUP_RETRY_BASE_MS", "100")
        .with("FOLLOWUP_RETRY_MAX_MS", "200")
        .with("NOTIFY_MESSAGES_PER_SEC", "50")
}

pub fn mark_prefix() -> String {
    format!("itmark{}:", Uuid::new_v4().simple())
}

/// A training avatar of its own user, with a numeric `telegram_id` as Telegram gives it.
pub async fn training_avatar(
    app: &TestApp,
    request_id: &str,
    name: &str,
    kind: &str,
) -> (Uuid, i64) {
    owned_avatar(&app.db, request_id, name, kind).await
}

async fn owned_avatar(
    db: &tokio_postgres::Client,
    request_id: &str,
    name: &str,
    kind: &str,
) -> (Uuid, i64) {
    let avatar = crate::helpers::insert_avatar(db, request_id, "TRAINING", kind).await;
    let chat = 100_000_000 + i64::from(rand_u16());
    db.execute(
        "UPDATE users SET telegram_id = $2 FROM avatars \
         WHERE avatars.user_id = users.id AND avatars.id = $1",
        &[&avatar, &chat.to_string()],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE avatars SET name = $2 WHERE id = $1",
        &[&avatar, &name],
    )
    .await
    .unwrap();
    (avatar, chat)
}

fn rand_u16() -> u16 {
    (Uuid::new_v4().as_u128() % 60_000) as u16
}

fn completion(request_id: &str) -> String {
    fixture("ok_flux_lora_fast_training.json")
        .replace("a6823810-a615-4ac8-aca3-5d2546aa81b8", request_id)
}

fn failure(request_id: &str) -> String {
    json!({"request_id": request_id, "gateway_request_id": request_id, "status": "ERROR",
           "error": "Invalid training data", "payload": {"detail": []}})
    .to_string()
}

async fn followup_states(
    db: &tokio_postgres::Client,
    avatar: Uuid,
) -> Vec<(String, String, Option<String>)> {
    db.query(
        "SELECT kind, state, coalesce(result, last_error) FROM avatar_followups \
             WHERE avatar_id = $1 ORDER BY kind",
        &[&avatar],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

pub async fn until_settled(app: &TestApp, avatar: Uuid, kind: &str) -> (String, Option<String>) {
    until_settled_in(&app.db, avatar, kind).await
}

async fn until_settled_in(
    db: &tokio_postgres::Client,
    avatar: Uuid,
    kind: &str,
) -> (String, Option<String>) {
    let settled = eventually(Duration::from_secs(20), || async {
        followup_states(db, avatar)
            .await
            .iter()
            .any(|(k, state, _)| k == kind && !matches!(state.as_str(), "pending" | "running"))
    })
    .await;
    let states = followup_states(db, avatar).await;
    assert!(settled, "{kind} never settled: {states:?}");
    let (_, state, detail) = states.into_iter().find(|(k, _, _)| k == kind).unwrap();
    (state, detail)
}

/// The request as the bot's own library would build it: aiogram's `SendMessage` and
/// `InlineKeyboardMarkup` validate it (`tests/bot/aiogram_check.py`).
pub fn aiogram_accepts(body: &Value) {
    let python = std::env::var("TEST_BOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/tests/bot/aiogram_check.py", env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(&python)
        .arg(&script)
        .arg(body.to_string())
        .output()
        .unwrap_or_else(|e| panic!("{python} {script}: {e}"));
    assert!(
        output.status.success(),
        "aiogram refuses the request: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_owner_of_a_trained_avatar_gets_the_bots_message_once() {
    let db = live_database().await;
    let bot_api = FakeBotApi::start().await;
    let marks = mark_prefix();
    let app = TestApp::spawn_with(options(&db, &bot_api, &marks)).await;
    let (avatar, chat) = training_avatar(&app, "req-ready", "Maria_Portrait", "PORTRAIT").await;

    let body = completion("req-ready");
    let first = app.post_fal(&body).await;
    assert_eq!(first.result(), "applied");
    assert_eq!(app.post_fal(&body).await.result(), "duplicate");
    let (state, result) = until_settled(&app, avatar, "notify_ready").await;
    assert_eq!((state.as_str(), result.as_deref()), ("done", Some("sent")));
    // An operator's replay is a duplicate too: no second message.
    let event = first.json["event_id"].as_i64().unwrap();
    let replay = app
        .post(&format!("/api/v1/webhooks/events/{event}/replay"), "", &[])
        .await;
    assert_eq!(replay.status, 200, "{:?}", replay.json);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let sent = bot_api.sent_to(chat);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let message = &sent[0];
    assert_eq!(message.path, format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(message.body["parse_mode"], "Markdown");
    assert_eq!(
        message.body["text"],
        "🎉 **Ваш аватар готов!**\n\n🎭 **Maria\\_Portrait** (Портретный стиль)\n\
         ✅ Обучение завершено успешно\n\n\
         Теперь вы можете использовать аватар для генерации изображений!\n\n\
         Перейдите в меню → Аватары для использования."
    );
    assert_eq!(
        message.body["reply_markup"]["inline_keyboard"],
        json!([
            [{"text": "🎭 Мои аватары", "callback_data": "avatar_gallery"}],
            [{"text": "🎨 Создать изображение", "callback_data": format!("avatar_generate:{avatar}")}],
        ])
    );
    aiogram_accepts(&message.body);

    // The bot's own poller finds its mark and sends nothing more, for hours.
    let mut redis = app.redis.clone();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{marks}notification:{avatar}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl >= 2 * 3600, "mark TTL {ttl}");
}

#[tokio::test]
async fn no_message_when_the_bot_sent_one_and_a_failure_is_told_once() {
    let db = live_database().await;
    let bot_api = FakeBotApi::start().await;
    let marks = mark_prefix();
    let app = TestApp::spawn_with(options(&db, &bot_api, &marks)).await;
    let (told, told_chat) = training_avatar(&app, "req-told", "Anna", "PORTRAIT").await;
    let (failed, failed_chat) = training_avatar(&app, "req-failed", "Boris*Style", "STYLE").await;
    let mut redis = app.redis.clone();
    redis::cmd("SET")
        .arg(format!("{marks}notification:{told}"))
        .arg("2026-12-04T00:00:00")
        .arg("EX")
        .arg(30)
        .query_async::<()>(&mut redis)
        .await
        .unwrap();

    assert_eq!(
        app.post_fal(&completion("req-told")).await.result(),
        "applied"
    );
    assert_eq!(
        app.post_fal(&failure("req-failed")).await.result(),
        "applied"
    );
    let (state, result) = until_settled(&app, told, "notify_ready").await;
    assert_eq!(state, "done");
    assert!(result.unwrap().starts_with("skipped"));
    assert_eq!(until_settled(&app, failed, "notify_failed").await.0, "done");

    assert!(bot_api.sent_to(told_chat).is_empty());
    let sent = bot_api.sent_to(failed_chat);
    assert_eq!(sent.len(), 1);
    let text = sent[0].body["text"].as_str().unwrap();
    assert!(
        text.contains("🎨 **Boris\\*Style** (Художественный стиль)"),
        "{text}"
    );
    assert!(text.contains("не удалось"), "{text}");
    aiogram_accepts(&sent[0].body);
}

#[tokio::test]
async fn telegrams_429_is_waited_out_and_a_blocked_user_costs_one_attempt() {
    let db = live_database().await;
    let bot_api = FakeBotApi::start().await;
    let app = TestApp::spawn_with(options(&db, &bot_api, &mark_prefix())).await;
    let (waited, waited_chat) = training_avatar(&app, "req-429", "Anna", "PORTRAIT").await;
    bot_api.answer_next(
        429,
        json!({"ok": false, "error_code": 429,
               "description": "Too Many Requests: retry after 2",
               "parameters": {"retry_after": 2}}),
    );
    assert_eq!(
        app.post_fal(&completion("req-429")).await.result(),
        "applied"
    );
    assert_eq!(until_settled(&app, waited, "notify_ready").await.0, "done");
    let sent = bot_api.sent_to(waited_chat);
    assert_eq!(sent.len(), 2, "one refused with 429, one sent");
    let waited_for = sent[1].at - sent[0].at;
    assert!(waited_for >= Duration::from_secs(2), "{waited_for:?}");

    let (blocked, blocked_chat) = training_avatar(&app, "req-403", "Anna", "PORTRAIT").await;
    bot_api.answer_next(
        403,
        json!({"ok": false, "error_code": 403,
               "description": "Forbidden: bot was blocked by the user"}),
    );
    assert_eq!(
        app.post_fal(&completion("req-403")).await.result(),
        "applied"
    );
    let (state, reason) = until_settled(&app, blocked, "notify_ready").await;
    assert_eq!(state, "failed");
    assert!(reason.unwrap().contains("blocked by the user"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bot_api.sent_to(blocked_chat).len(), 1);

    // Telegram down: retried with backoff, then dead, which /health shows.
    let (down, down_chat) = training_avatar(&app, "req-5xx", "Anna", "PORTRAIT").await;
    for _ in 0..20 {
        bot_api.answer_next(502, json!({"ok": false, "description": "Bad Gateway"}));
    }
    let app_env = &app.config.followups;
    assert_eq!(
        app.post_fal(&completion("req-5xx")).await.result(),
        "applied"
    );
    let (state, reason) = until_settled(&app, down, "notify_ready").await;
    assert_eq!(state, "dead", "{reason:?}");
    assert_eq!(
        bot_api.sent_to(down_chat).len(),
        app_env.max_attempts as usize
    );
    let health = app.get("/health").await;
    assert_eq!(health.json["checks"]["followups"]["dead"], 1);
    assert_eq!(health.json["status"], "degraded");
}

#[tokio::test]
async fn two_instances_send_one_message_per_avatar() {
    let db = live_database().await;
    let bot_api = FakeBotApi::start().await;
    let marks = mark_prefix();
    let first = TestApp::spawn_with(options(&db, &bot_api, &marks)).await;
    let second = TestApp::spawn_with(options(&db, &bot_api, &marks)).await;
    let mut chats = Vec::new();
    for n in 0..12 {
        let request_id = format!("req-pair-{n}");
        let (_, chat) = training_avatar(&first, &request_id, "Anna", "PORTRAIT").await;
        chats.push(chat);
        // Each callback reaches both instances, as FAL's retries through nginx may.
        let body = completion(&request_id);
        let (a, b) = tokio::join!(first.post_fal(&body), second.post_fal(&body));
        let mut results = [a.result().to_string(), b.result().to_string()];
        results.sort();
        assert_eq!(results, ["applied", "duplicate"]);
    }
    let all_sent = eventually(Duration::from_secs(15), || async {
        chats.iter().all(|chat| !bot_api.sent_to(*chat).is_empty())
    })
    .await;
    assert!(all_sent);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for chat in chats {
        assert_eq!(bot_api.sent_to(chat).len(), 1, "chat {chat}");
    }
}

/// Four training photos: the preview (upload_order 1) stays, the other three go, objects first.
async fn add_photos(db: &tokio_postgres::Client, avatar: Uuid, bucket: &str) -> Vec<String> {
    let s3 = s3_client();
    let _ = s3.create_bucket().bucket(bucket).send().await;
    let mut keys = Vec::new();
    for order in 1..=4 {
        let key = format!("avatars/{avatar}/photos/{order}.jpg");
        s3.put_object()
            .bucket(bucket)
            .key(&key)
            .body(aws_sdk_s3::primitives::ByteStream::from(vec![
                order as u8;
                64
            ]))
            .send()
            .await
            .unwrap();
        db.execute(
            "INSERT INTO avatar_photos (id, avatar_id, user_id, minio_key, file_hash, upload_order, \
               validation_status, file_size, format, photo_metadata, created_at) \
             SELECT gen_random_uuid(), a.id, a.user_id, $2::text, md5($2::text), $3, 'VALID', 64, \
               'jpg', '{}', now() \
             FROM avatars a WHERE a.id = $1",
            &[&avatar, &key, &order],
        )
        .await
        .unwrap();
        keys.push(key);
    }
    keys
}

/// Every avatar as the bot's ORM loads it (`bot_orm.py load`), by id.
fn loaded_by_the_bot(url: &str) -> std::collections::HashMap<String, Value> {
    let loaded: Vec<Value> = serde_json::from_str(&bot_orm(&["load", url])).unwrap();
    loaded
        .into_iter()
        .map(|avatar| (avatar["id"].as_str().unwrap().to_string(), avatar))
        .collect()
}

fn s3_client() -> aws_sdk_s3::Client {
    let env: std::collections::HashMap<_, _> = s3_env("unused").into_iter().collect();
    let credentials = aws_credential_types::Credentials::new(
        &env["MINIO_ACCESS_KEY"],
        &env["MINIO_SECRET_KEY"],
        None,
        None,
        "test",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{}", env["MINIO_ENDPOINT"]))
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn object_exists(bucket: &str, key: &str) -> bool {
    s3_client()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

async fn photo_keys(db: &tokio_postgres::Client, avatar: Uuid) -> Vec<String> {
    db.query(
        "SELECT minio_key FROM avatar_photos WHERE avatar_id = $1 ORDER BY upload_order",
        &[&avatar],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[tokio::test]
async fn training_photos_go_once_the_files_are_copied_and_the_preview_stays() {
    let db = live_database().await;
    let bucket = crate::helpers::fresh_bucket();
    let cdn = FakeCdn::start().await;
    let lora = Bytes::from(vec![7u8; 4096]);
    let lora_url = cdn.add(
        "lora.safetensors",
        lora.clone(),
        Behavior::FailFirst(u32::MAX),
    );
    // Two instances: one copies the files (S3 direct), the other removes photos through a
    // proxy to S3 that can be cut.
    let env: std::collections::HashMap<_, _> = s3_env("unused").into_iter().collect();
    let s3_proxy = ChaosProxy::start(env["MINIO_ENDPOINT"].parse().unwrap()).await;
    let photos = |options: AppOptions| {
        options
            .shared_database(&db.url)
            .with("MINIO_BUCKET_AVATARS", bucket.clone())
            .with("FOLLOWUP_POLL_MS", "50")
            .with("FOLLOWUP_RETRY_BASE_MS", "100")
            .with("FOLLOWUP_RETRY_MAX_MS", "300")
            .with("FOLLOWUP_MAX_ATTEMPTS", "1000")
    };
    let copier = TestApp::spawn_with(
        photos(AppOptions::default())
            .with("FILE_WORKERS", "1")
            .with("FILE_JOB_MAX_ATTEMPTS", "1000")
            .with("FILE_JOB_RETRY_MAX_MS", "200")
            .with("FOLLOWUP_WORKERS", "0"),
    )
    .await;
    let app = TestApp::spawn_with(
        photos(AppOptions::default()).with("MINIO_ENDPOINT", s3_proxy.address.to_string()),
    )
    .await;
    let trained = app.insert_training_avatar("req-photos").await;
    let other = app.insert_training_avatar("req-other").await;
    let keys = add_photos(&app.db, trained, &bucket).await;
    let other_keys = add_photos(&app.db, other, &bucket).await;

    // While FAL's CDN fails the copy, the photos stay: nothing is recorded to remove them.
    let body = json!({"request_id": "req-photos", "gateway_request_id": "req-photos",
        "status": "OK", "error": null, "payload": {"diffusers_lora_file": {
            "url": lora_url, "content_type": "application/octet-stream",
            "file_name": "pytorch_lora_weights.safetensors", "file_size": lora.len()}}});
    assert_eq!(app.post_fal(&body.to_string()).await.result(), "applied");
    let retried = eventually(Duration::from_secs(10), || async {
        cdn.hits("lora.safetensors") >= 3
    })
    .await;
    assert!(retried);
    assert_eq!(photo_keys(&app.db, trained).await, keys);
    assert!(followup_states(&app.db, trained).await.is_empty());

    // The copy succeeds while S3 is unreachable for the instance that removes photos: it
    // retries until S3 is back.
    s3_proxy.cut();
    cdn.add("lora.safetensors", lora.clone(), Behavior::Serve);
    let recorded = eventually(Duration::from_secs(15), || async {
        app.db
            .query_opt(
                "SELECT attempts FROM avatar_followups WHERE avatar_id = $1",
                &[&trained],
            )
            .await
            .unwrap()
            .is_some_and(|row| row.get::<_, i32>(0) >= 2)
    })
    .await;
    assert!(recorded, "{:?}", followup_states(&app.db, trained).await);
    assert_eq!(photo_keys(&app.db, trained).await, keys);
    s3_proxy.restore();
    drop(copier);

    let (state, result) = until_settled(&app, trained, "delete_photos").await;
    assert_eq!(state, "done", "{result:?}");
    assert_eq!(
        result.as_deref(),
        Some("deleted 3 photo(s), kept the preview")
    );
    assert_eq!(photo_keys(&app.db, trained).await, keys[..1]);
    assert!(object_exists(&bucket, &keys[0]).await);
    for key in &keys[1..] {
        assert!(!object_exists(&bucket, key).await, "{key} still in S3");
    }
    // The other avatar (still training) keeps every photo and object.
    assert_eq!(photo_keys(&app.db, other).await, other_keys);
    for key in &other_keys {
        assert!(object_exists(&bucket, key).await);
    }
    // The bot's ORM loads the avatar and the photo it kept.
    let row = &loaded_by_the_bot(&db.url)[&trained.to_string()];
    assert_eq!(row["status"], "COMPLETED");
    assert_eq!(row["photos"], json!([keys[0]]));
}

#[tokio::test]
async fn portrait_and_style_avatars_leave_as_the_bots_generation_reads_them() {
    let db = live_database().await;
    let bucket = crate::helpers::fresh_bucket();
    let app = TestApp::spawn_with(
        AppOptions::default()
            .shared_database(&db.url)
            .with("MINIO_BUCKET_AVATARS", bucket.clone())
            .with("FOLLOWUP_POLL_MS", "50"),
    )
    .await;
    let portrait = app.insert_training_avatar("req-portrait").await;
    let style = crate::helpers::insert_avatar(
        &app.db,
        "5b1c7e52-9d3a-4f0e-8c21-7a64e0d3b9f1",
        "TRAINING",
        "STYLE",
    )
    .await;
    let (style_id, style_photos) = (style, add_photos(&app.db, style, &bucket).await);
    // What an earlier attempt may have left: the bot's generation refuses a portrait with it.
    app.db
        .execute(
            "UPDATE avatars SET finetune_id = 'stale-finetune' WHERE id = $1",
            &[&portrait],
        )
        .await
        .unwrap();
    assert_eq!(
        app.post_fal(&completion("req-portrait")).await.result(),
        "applied"
    );
    assert_eq!(
        app.post_fal(&fixture("ok_flux_pro_trainer.json"))
            .await
            .result(),
        "applied"
    );

    let loaded = loaded_by_the_bot(&db.url);
    let row = |id: Uuid| loaded[&id.to_string()].clone();
    let portrait = row(portrait);
    assert_eq!(portrait["status"], "COMPLETED");
    assert_eq!(portrait["finetune_id"], Value::Null);
    assert!(portrait["lora_url"]
        .as_str()
        .unwrap()
        .ends_with(".safetensors"));
    let style = row(style);
    assert_eq!(style["status"], "COMPLETED");
    assert_eq!(style["training_type"], "STYLE");
    assert_eq!(style["finetune_id"], "f1e4776e-3e9a-4a2c-b96d-af5333ef7203");
    assert_eq!(style["lora_url"], Value::Null);
    assert_eq!(style["config_url"], Value::Null);
    // No files to copy: its photos go at once, all but the preview.
    let (state, result) = until_settled(&app, style_id, "delete_photos").await;
    assert_eq!(state, "done", "{result:?}");
    assert_eq!(photo_keys(&app.db, style_id).await, style_photos[..1]);
    // Nothing is recorded to send without a token, and nothing was sent anywhere.
    let recorded: i64 = pg_connect(&db.url)
        .await
        .query_one(
            "SELECT count(*) FROM avatar_followups WHERE kind LIKE 'notify%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 0);
}

#[tokio::test]
async fn an_instance_killed_while_sending_loses_no_message() {
    let db = live_database().await;
    let bot_api = FakeBotApi::start().await;
    let marks = mark_prefix();
    let db_client = pg_connect(&db.url).await;
    // Migrated by a first instance, which then takes the message and dies waiting for Telegram.
    let env = [
        ("TELEGRAM_TOKEN", TOKEN.to_string()),
        ("TELEGRAM_API_URL", bot_api.url.clone()),
        ("NOTIFY_REDIS_KEY_PREFIX", marks.clone()),
        ("FOLLOWUP_POLL_MS", "50".to_string()),
        ("FOLLOWUP_LEASE_SECS", "2".to_string()),
    ];
    let mut first = Instance::start_with(&db.url, &env);
    first.wait_ready().await;
    let (avatar, chat) = owned_avatar(&db_client, "req-killed", "Anna", "PORTRAIT").await;
    bot_api.hold_next(Duration::from_secs(30));
    assert_eq!(first.post_hmac(&completion("req-killed")).await, 200);
    let taken = eventually(Duration::from_secs(10), || async {
        !bot_api.sent_to(chat).is_empty()
    })
    .await;
    assert!(taken, "the first instance never sent");
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5));

    // The second finds the lease run out and no mark: it sends again; one duplicate at most.
    let mut logged = env.to_vec();
    logged.push(("LOG_LEVEL", "debug".to_string()));
    let mut second = Instance::start_logged(&db.url, &logged);
    second.wait_ready().await;
    let (state, result) = until_settled_in(&db_client, avatar, "notify_ready").await;
    assert_eq!((state.as_str(), result.as_deref()), ("done", Some("sent")));
    let sent = bot_api.sent_to(chat);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].body, sent[1].body);
    // The token is in the request's path only: never in a log line, even at debug.
    second.stop();
    let logs = second.logs();
    assert!(logs.contains("follow-up done"), "{logs}");
    assert!(
        !logs.contains(TOKEN.split(':').nth(1).unwrap()),
        "the token leaked"
    );
}

/// A deploy is a SIGTERM: the message in flight is answered and recorded before the instance
/// exits, so the instance that takes over sends nothing again (before: released at SIGTERM
/// and sent a second time).
#[tokio::test]
async fn a_graceful_shutdown_finishes_the_message_in_flight_and_sends_it_once() {
    let db = live_database().await;
    let bot_api = FakeBotApi::start().await;
    let marks = mark_prefix();
    let db_client = pg_connect(&db.url).await;
    let env = [
        ("TELEGRAM_TOKEN", TOKEN.to_string()),
        ("TELEGRAM_API_URL", bot_api.url.clone()),
        ("NOTIFY_REDIS_KEY_PREFIX", marks.clone()),
        ("FOLLOWUP_POLL_MS", "50".to_string()),
        ("FOLLOWUP_LEASE_SECS", "2".to_string()),
        ("SHUTDOWN_GRACE_SECS", "1".to_string()),
    ];
    let mut first = Instance::start_logged(&db.url, &env);
    first.wait_ready().await;
    let (avatar, chat) = owned_avatar(&db_client, "req-sigterm", "Anna", "PORTRAIT").await;
    // Telegram answers three seconds after the request arrives; SIGTERM comes meanwhile.
    bot_api.hold_next(Duration::from_secs(3));
    assert_eq!(first.post_hmac(&completion("req-sigterm")).await, 200);
    let taken = eventually(Duration::from_secs(10), || async {
        !bot_api.sent_to(chat).is_empty()
    })
    .await;
    assert!(taken, "the first instance never sent");
    first.signal("TERM");
    let status = first.exited(Duration::from_secs(15)).await;
    let logs = first.logs();
    assert!(status.success(), "{status:?}");
    // Recorded before the instance exited: read once, no waiting.
    let states = followup_states(&db_client, avatar).await;
    let notify = states.iter().find(|(kind, _, _)| kind == "notify_ready");
    assert!(
        notify
            .is_some_and(|(_, state, result)| state == "done" && result.as_deref() == Some("sent")),
        "{states:?}\n{logs}"
    );

    // The next instance (past the first's lease) finds nothing to send.
    let mut second = Instance::start_with(&db.url, &env);
    second.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.stop();
    let sent = bot_api.sent_to(chat);
    assert_eq!(sent.len(), 1, "one message, not two: {sent:?}");
}
