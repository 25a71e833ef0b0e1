//! Test harness: the real app on a free port with its own database and Redis key prefix,
//! signing helpers that speak FAL's format, and a TCP proxy that can cut PostgreSQL away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use webhook_api::config::{Config, Secret};
use webhook_api::startup::Application;
use webhook_api::verify::{fal_ed25519, hmac};

pub const HMAC_SECRET: &str = "it-shared-secret";
pub const STATUS_UPDATE: &str = "/api/v1/avatar/status_update";

/// The operators' tokens every test app and instance has: one per scope, and one with all.
pub const ADMIN_TOKEN: &str = "it-admin-token-0123456789abcdef0123456789";
pub const READ_TOKEN: &str = "it-read-token-0123456789abcdef0123456789ab";
pub const REPLAY_TOKEN: &str = "it-replay-token-0123456789abcdef012345678";

pub fn operator_tokens() -> String {
    format!(
        "admin:read+replay+deploy:{ADMIN_TOKEN},prometheus:read:{READ_TOKEN},\
         oncall:replay:{REPLAY_TOKEN}"
    )
}

/// A client that presents `token` on every request.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub use crate::support::{admin_database_url, drop_database, free_port};

pub fn shared_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The shared S3 server's settings (`MINIO_*`, as the app reads them), with a fresh bucket.
/// Files may only come from loopback over http: no test ever fetches from the internet.
pub fn s3_env(bucket: &str) -> Vec<(&'static str, String)> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    vec![
        (
            "MINIO_ENDPOINT",
            var("TEST_MINIO_ENDPOINT", "127.0.0.1:9000"),
        ),
        (
            "MINIO_ACCESS_KEY",
            var("TEST_MINIO_ACCESS_KEY", "devaccess"),
        ),
        (
            "MINIO_SECRET_KEY",
            var("TEST_MINIO_SECRET_KEY", "devsecretkey"),
        ),
        ("MINIO_BUCKET_NAME", bucket.to_string()),
        ("FILE_HOST_ALLOWLIST", "127.0.0.1".into()),
        ("FILE_ALLOW_HTTP", "true".into()),
        // The test CDN listens on loopback, on a port of its own.
        ("FILE_ALLOW_PRIVATE_ADDRESSES", "true".into()),
        ("FILE_ALLOWED_PORTS", "any".into()),
        ("FILE_JOB_POLL_MS", "100".into()),
        ("FILE_JOB_RETRY_BASE_MS", "100".into()),
        ("FILE_PART_SIZE_BYTES", (5 * 1024 * 1024).to_string()),
    ]
}

/// Short: s3s-fs keeps an object's metadata in one file named after base64(bucket + key),
/// and the contract's keys are long.
pub fn fresh_bucket() -> String {
    format!("it-{}", &Uuid::new_v4().simple().to_string()[..12])
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/fal/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to test PostgreSQL: {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh, empty database of its own; dropped (with its connections) when the guard goes.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    owned: bool,
}

/// Which `avatars` the database starts with, before the service migrates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvatarsSchema {
    /// None: the service creates the table itself.
    Own,
    /// The bot's live database (`tests/fixtures/bot/live_schema.sql`): native enums, json.
    BotLive,
    /// A database the bot's ORM created afresh (`create_all`): varchar enums, json.
    BotCreateAll,
}

impl AvatarsSchema {
    /// `TEST_AVATARS_SCHEMA=own|bot-live|bot-create-all` (default own) runs the suite on it.
    pub fn from_env() -> Self {
        match std::env::var("TEST_AVATARS_SCHEMA").as_deref() {
            Err(_) | Ok("") | Ok("own") => Self::Own,
            Ok("bot-live") => Self::BotLive,
            Ok("bot-create-all") => Self::BotCreateAll,
            Ok(other) => panic!("TEST_AVATARS_SCHEMA={other:?}: own, bot-live or bot-create-all"),
        }
    }

    pub async fn apply(self, url: &str) {
        match self {
            Self::Own => {}
            Self::BotLive => {
                let path = format!(
                    "{}/tests/fixtures/bot/live_schema.sql",
                    env!("CARGO_MANIFEST_DIR")
                );
                let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                pg_connect(url)
                    .await
                    .batch_execute(&sql)
                    .await
                    .expect("the bot's live schema loads");
            }
            Self::BotCreateAll => {
                bot_orm(&["create-all", url]);
            }
        }
    }
}

/// Runs `tests/bot/bot_orm.py` (the bot's ORM mapping) with the Python that has SQLAlchemy
/// (`TEST_BOT_PYTHON`, set by scripts/dev/test.sh); its standard output.
pub fn bot_orm(args: &[&str]) -> String {
    let python = std::env::var("TEST_BOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/tests/bot/bot_orm.py", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{python} {script}: {e} (set TEST_BOT_PYTHON)"));
    assert!(
        output.status.success(),
        "bot_orm.py {}: {}",
        args[0],
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Content PostgreSQL refuses (SQLSTATE class 22, as a type's limit would): any webhook event
/// whose payload contains `marker`. The service stores a NUL as U+FFFD, so tests that need a
/// delivery the database cannot store make one this way.
pub async fn refuse_payloads_containing(db: &tokio_postgres::Client, marker: &str) {
    let sql = format!(
        "CREATE FUNCTION refuse_marked_payload() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF NEW.payload::text LIKE '%{marker}%' THEN \
             RAISE EXCEPTION 'payload refused by the test' USING ERRCODE = '22023'; \
           END IF; \
           RETURN NEW; \
         END $$; \
         CREATE TRIGGER refuse_marked_payload BEFORE INSERT ON webhook_events \
           FOR EACH ROW EXECUTE FUNCTION refuse_marked_payload();"
    );
    // The instance builds the console's indexes concurrently after start; PostgreSQL may end
    // that build's wait for this transaction as a deadlock, and this transaction with it.
    for attempt in 1.. {
        match db.batch_execute(&sql).await {
            Ok(()) => return,
            Err(e)
                if attempt < 20
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("trigger created: {e:?}"),
        }
    }
}

/// Inserts an avatar as the bot would, with every column the bot's table requires (a user of
/// its own when the bot's `users` exists). `status` and `training_type` as the bot spells them.
pub async fn insert_avatar(
    db: &tokio_postgres::Client,
    fal_request_id: &str,
    status: &str,
    training_type: &str,
) -> Uuid {
    let sql = avatars_insert(db, status, training_type, "$1::text", "").await;
    db.query_one(&sql, &[&fal_request_id]).await.unwrap().get(0)
}

/// `count` avatars `{prefix}1` ..= `{prefix}{count}`, as `insert_avatar` makes one.
pub async fn insert_avatars(
    db: &tokio_postgres::Client,
    prefix: &str,
    count: i32,
    status: &str,
    training_type: &str,
) {
    let series = "generate_series(1, $2::int) g";
    let sql = avatars_insert(db, status, training_type, "$1::text || g", series).await;
    db.execute(&sql, &[&prefix, &count]).await.unwrap();
}

/// The bot's insert (with a user of its own) when its `users` exists, else ours; one row per
/// row of `series` (a FROM item), or one.
async fn avatars_insert(
    db: &tokio_postgres::Client,
    status: &str,
    training_type: &str,
    request_id: &str,
    series: &str,
) -> String {
    let bot_tables: bool = db
        .query_one("SELECT to_regclass('users') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    // Literals, not parameters: they take the column's type, enum or varchar.
    if bot_tables {
        let series = if series.is_empty() {
            String::new()
        } else {
            format!(", {series}")
        };
        format!(
            "WITH u AS (INSERT INTO users (id, telegram_id, first_name, language_code, is_bot, \
               is_blocked, created_at, updated_at) VALUES (gen_random_uuid(), \
               gen_random_uuid()::text, 'Anna', 'ru', false, false, now(), now()) RETURNING id) \
             INSERT INTO avatars (id, user_id, name, gender, avatar_type, status, \
               training_progress, fal_mode, fal_iterations, fal_priority, trigger_word, lora_rank, \
               avatar_data, training_config, photos_count, generations_count, created_at, \
               updated_at, training_type, fal_request_id, training_started_at, finetune_type) \
             SELECT gen_random_uuid(), u.id, 'Anna', 'FEMALE', 'CHARACTER', '{status}', 10, \
               'character', 500, 'QUALITY', 'TOK', 32, '{{}}', '{{}}', 0, 0, now(), now(), \
               '{training_type}', {request_id}, now(), 'LORA' FROM u{series} RETURNING id"
        )
    } else {
        let series = if series.is_empty() {
            String::new()
        } else {
            format!(" FROM {series}")
        };
        format!(
            "INSERT INTO avatars (user_id, name, status, training_type, fal_request_id, \
               training_progress) \
             SELECT gen_random_uuid(), 'Anna', '{status}', '{training_type}', {request_id}, 10\
             {series} RETURNING id"
        )
    }
}

impl TestDatabase {
    /// A fresh database with the `avatars` of `TEST_AVATARS_SCHEMA`.
    pub async fn create() -> Self {
        Self::create_with(AvatarsSchema::from_env()).await
    }

    pub async fn create_with(schema: AvatarsSchema) -> Self {
        let admin = pg_connect(&admin_database_url()).await;
        let name = format!("it_{}", Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = url_with_dbname(&admin_database_url(), &name);
        let database = Self {
            name,
            url,
            owned: true,
        };
        schema.apply(&database.url).await;
        database
    }

    /// Another guard's database: used, not dropped.
    fn borrowed(url: &str) -> Self {
        Self {
            name: url.rsplit('/').next().unwrap_or_default().to_string(),
            url: url.to_string(),
            owned: false,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        drop_database(&self.name);
    }
}

fn url_with_dbname(url: &str, dbname: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{dbname}")
}

/// Signs bodies the way FAL does, with a key whose public half is in the app's JWKS.
pub struct FalSigner {
    pub key: SigningKey,
}

impl FalSigner {
    pub fn new(seed: u8) -> Self {
        Self {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    pub fn headers(&self, body: &str) -> Vec<(&'static str, String)> {
        self.headers_at(body, chrono::Utc::now().timestamp())
    }

    pub fn headers_at(&self, body: &str, timestamp: i64) -> Vec<(&'static str, String)> {
        let (request_id, user_id, timestamp) = (
            "gw-req-1".to_string(),
            "fal-user-1".to_string(),
            timestamp.to_string(),
        );
        let message =
            fal_ed25519::signed_message(&request_id, &user_id, &timestamp, body.as_bytes());
        let signature = hex::encode(self.key.sign(&message).to_bytes());
        vec![
            ("X-Fal-Webhook-Request-Id", request_id),
            ("X-Fal-Webhook-User-Id", user_id),
            ("X-Fal-Webhook-Timestamp", timestamp),
            ("X-Fal-Webhook-Signature", signature),
        ]
    }

    pub fn jwks(signers: &[&FalSigner]) -> String {
        let keys: Vec<_> = signers.iter().map(|s| s.key.verifying_key()).collect();
        fal_ed25519::jwks_json(&keys)
    }
}

pub fn hmac_header(body: &str) -> (&'static str, String) {
    (
        "X-Signature",
        format!(
            "sha256={}",
            hmac::sign(&Secret::new(HMAC_SECRET), body.as_bytes())
        ),
    )
}

/// Settings a test may change before the app starts.
#[derive(Default)]
pub struct AppOptions {
    pub env: HashMap<&'static str, String>,
    /// Use this PostgreSQL address (a `ChaosProxy`) instead of the server itself.
    pub database_via: Option<SocketAddr>,
    /// Share another app's database (a second instance of the cluster).
    pub database_url: Option<String>,
}

impl AppOptions {
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.env.insert(name, value.into());
        self
    }

    /// A second instance of the cluster: the first one's database.
    pub fn shared_database(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_string());
        self
    }
}

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub db: tokio_postgres::Client,
    pub redis: redis::aio::MultiplexedConnection,
    pub prefix: String,
    pub signer: FalSigner,
    shutdown: CancellationToken,
    /// The app's own files: the JWKS it trusts, its spool.
    _jwks_dir: tempfile::TempDir,
    pub database: TestDatabase,
    pub config: Config,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(AppOptions::default()).await
    }

    pub async fn spawn_with(options: AppOptions) -> Self {
        let database = match &options.database_url {
            Some(url) => TestDatabase::borrowed(url),
            None => TestDatabase::create().await,
        };
        let signer = FalSigner::new(1);
        let jwks_dir = tempfile::tempdir().unwrap();
        let jwks_path = jwks_dir.path().join("jwks.json");
        std::fs::write(&jwks_path, FalSigner::jwks(&[&signer])).unwrap();
        let prefix = format!("it{}:", Uuid::new_v4().simple());

        let app_database_url = match options.database_via {
            Some(proxy) => database_url_via(proxy, &database.url),
            None => database.url.clone(),
        };
        let mut env: HashMap<&str, String> = HashMap::from([
            ("ENVIRONMENT", "test".to_string()),
            ("HOST", "127.0.0.1".to_string()),
            ("PORT", "0".to_string()),
            ("INSTANCE_ID", "it-instance".to_string()),
            ("DATABASE_URL", app_database_url),
            ("REDIS_URL", shared_redis_url()),
            ("REDIS_KEY_PREFIX", prefix.clone()),
            (
                "FAL_WEBHOOK_SECRET",
                format!("retired-secret,{HMAC_SECRET}"),
            ),
            ("FAL_JWKS_URL", format!("file://{}", jwks_path.display())),
            ("LOG_LEVEL", "warn".to_string()),
            ("DB_STARTUP_WAIT_SECS", "5".to_string()),
            ("DB_TIMEOUT_SECS", "5".to_string()),
            // Ingestion tests leave completed avatars' jobs alone; file tests turn it on.
            ("FILE_WORKERS", "0".to_string()),
            ("OPERATOR_TOKENS", operator_tokens()),
            (
                "SPOOL_DIR",
                jwks_dir.path().join("spool").display().to_string(),
            ),
        ]);
        env.extend(s3_env(&fresh_bucket()));
        env.extend(options.env);
        let config = Config::from_lookup(|name| env.get(name).cloned()).expect("test config");
        let redis_url = config.redis.url.expose().to_string();
        webhook_api::telemetry::init(&config.log);

        let app = Application::build(config.clone())
            .await
            .expect("app starts");
        let address = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run(shutdown.clone()));

        let redis = redis::Client::open(redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("test Redis reachable");
        Self {
            address,
            // The operators' routes need a token; the webhook routes ignore it.
            http: client_with_token(ADMIN_TOKEN),
            db: pg_connect(&database.url).await,
            redis,
            prefix,
            signer,
            shutdown,
            _jwks_dir: jwks_dir,
            database,
            config,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POSTs a callback body signed with FAL's scheme.
    pub async fn post_fal(&self, body: &str) -> Answer {
        let headers = self.signer.headers(body);
        self.post(STATUS_UPDATE, body, &headers).await
    }

    pub async fn post(&self, path: &str, body: &str, headers: &[(&str, String)]) -> Answer {
        let mut request = self
            .http
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        Answer::from("POST", path, request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::from(
            "GET",
            path,
            self.http
                .get(self.url(path))
                .send()
                .await
                .expect("request sent"),
        )
        .await
    }

    /// Inserts an avatar the way the bot does when it submits a training to FAL.
    pub async fn insert_training_avatar(&self, fal_request_id: &str) -> Uuid {
        insert_avatar(&self.db, fal_request_id, "TRAINING", "PORTRAIT").await
    }

    pub async fn avatar(&self, id: Uuid) -> AvatarRow {
        let row = self
            .db
            .query_one(
                "SELECT status::text, training_progress, diffusers_lora_file_url, config_file_url, \
                 training_error, updated_at, training_completed_at, fal_response_data IS NOT NULL \
                 FROM avatars WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        AvatarRow {
            status: row.get(0),
            progress: row.get(1),
            lora_url: row.get(2),
            config_url: row.get(3),
            error: row.get(4),
            updated_at: row.get(5),
            completed_at: row.get(6),
            has_response_data: row.get(7),
        }
    }

    /// Deliveries stored as accepted (refused requests are kept too, as `rejected`).
    pub async fn event_count(&self) -> i64 {
        self.db
            .query_one(
                "SELECT count(*) FROM webhook_events WHERE outcome <> 'rejected'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// The entries of this app's events stream, oldest first, once it settled (see
    /// `stream_entries`).
    pub async fn stream_entries(&self) -> Vec<redis::streams::StreamId> {
        stream_entries(
            &mut self.redis.clone(),
            &format!("{}avatar:events", self.prefix),
        )
        .await
    }

    /// How many entries this app's events stream holds, once it settled.
    pub async fn stream_len(&self) -> usize {
        self.stream_entries().await.len()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AvatarRow {
    pub status: String,
    pub progress: i32,
    pub lora_url: Option<String>,
    pub config_url: Option<String>,
    pub error: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub completed_at: Option<chrono::DateTime<chrono::Utc>>,
    pub has_response_data: bool,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: serde_json::Value,
}

impl Answer {
    /// The answer, which `openapi.json` must allow (`openapi::assert_documented`).
    pub async fn from(method: &str, path: &str, response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        crate::openapi::assert_documented(method, path, status, content_type, &json);
        Self {
            status,
            headers,
            json,
        }
    }

    pub fn result(&self) -> &str {
        self.json["result"].as_str().unwrap_or("<none>")
    }

    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<none>")
    }
}

/// Forwards TCP to a real server until `cut`, which drops every live connection and refuses
/// new ones until `restore`: PostgreSQL becoming unreachable, as the app sees it. `stall` drops
/// the live ones too, but accepts new ones and never answers: a hung server.
pub struct ChaosProxy {
    pub address: SocketAddr,
    open: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<JoinHandle<()>>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl ChaosProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (accept_open, accept_stalled, accept_live, accept_held) =
            (open.clone(), stalled.clone(), live.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if accept_stalled.load(Ordering::SeqCst) {
                    accept_held.lock().unwrap().push(client);
                    continue;
                }
                if !accept_open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                accept_live.lock().unwrap().push(task);
            }
        });
        Self {
            address,
            open,
            stalled,
            live,
            held,
        }
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
        self.cut();
    }

    pub fn restore(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
        self.open.store(true, Ordering::SeqCst);
    }
}

/// `url` with its host and port replaced by `proxy`'s (a `ChaosProxy` in front of the server).
pub fn database_url_via(proxy: SocketAddr, url: &str) -> String {
    let host_port = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("a database URL has user@host:port")
        .to_string();
    url.replace(&host_port, &proxy.to_string())
}

/// The PostgreSQL server address behind `TEST_DATABASE_URL`.
pub fn database_socket() -> SocketAddr {
    let config: tokio_postgres::Config = admin_database_url().parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => panic!("TEST_DATABASE_URL must use TCP"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = if host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        host
    };
    format!("{host}:{port}").parse().unwrap()
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The real binary, configured through its environment as in production.
pub struct Instance {
    pub child: Child,
    pub port: u16,
    /// Collects stderr when started with `start_logged`, so a chatty log never blocks it.
    stderr: Option<std::thread::JoinHandle<String>>,
    /// Its own `SPOOL_DIR`, unless the test gave one.
    _spool_dir: Option<tempfile::TempDir>,
}

impl Instance {
    pub fn start(database_url: &str) -> Self {
        Self::start_with(database_url, &[])
    }

    /// `env` comes last, so it overrides the defaults.
    pub fn start_with(database_url: &str, env: &[(&str, String)]) -> Self {
        Self::spawn(database_url, env, Stdio::inherit())
    }

    /// Like `start_with`, with stderr kept for `logs`.
    pub fn start_logged(database_url: &str, env: &[(&str, String)]) -> Self {
        let mut instance = Self::spawn(database_url, env, Stdio::piped());
        let mut stderr = instance.child.stderr.take().expect("piped stderr");
        instance.stderr = Some(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        }));
        instance
    }

    /// An instance the test started itself.
    pub fn from_child(child: Child, port: u16) -> Self {
        Self {
            child,
            port,
            stderr: None,
            _spool_dir: None,
        }
    }

    /// Everything the instance wrote to stderr; call after it exited.
    pub fn logs(&mut self) -> String {
        self.stderr
            .take()
            .map(|reader| reader.join().unwrap_or_default())
            .unwrap_or_default()
    }

    fn spawn(database_url: &str, env: &[(&str, String)], stderr: Stdio) -> Self {
        let port = free_port();
        let spool_dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_webhook-api"))
            .arg("serve")
            .env_clear()
            .env(
                "DATABASE_URL",
                database_url.replacen("postgresql://", "postgresql+asyncpg://", 1),
            )
            .env("REDIS_URL", shared_redis_url())
            .env("REDIS_KEY_PREFIX", format!("it{port}:"))
            .env("FAL_WEBHOOK_SECRET", HMAC_SECRET)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("ENVIRONMENT", "staging")
            .env("LOG_LEVEL", "warn")
            .env("OPERATOR_TOKENS", operator_tokens())
            .env("SPOOL_DIR", spool_dir.path())
            .envs(s3_env(&fresh_bucket()))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("webhook-api binary");
        Self {
            child,
            port,
            stderr: None,
            _spool_dir: Some(spool_dir),
        }
    }

    pub async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/health/ready", self.port);
        let ready = eventually(Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        if !ready {
            let status = self.child.try_wait();
            panic!(
                "instance on port {} never became ready ({status:?})",
                self.port
            );
        }
        // `healthcheck`, as the container's HEALTHCHECK runs it, agrees.
        let healthcheck = Command::new(env!("CARGO_BIN_EXE_webhook-api"))
            .arg("healthcheck")
            .env("PORT", self.port.to_string())
            .status()
            .unwrap();
        assert!(healthcheck.success());
    }

    pub async fn post_hmac(&self, body: &str) -> u16 {
        let (name, value) = hmac_header(body);
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}{STATUS_UPDATE}", self.port))
            .header("Content-Type", "application/json")
            .header(name, value)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `wait_exit` that lets the test's own servers (a fake Bot API, a CDN) go on answering
    /// meanwhile: they run on the test's runtime, which a blocking wait would stall.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        self.signal("TERM");
        self.wait_exit(Duration::from_secs(10));
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stream's entries, oldest first, once no entry came for `STREAM_SETTLED`: the service
/// announces a committed change just after its answer, not before.
pub async fn stream_entries(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<redis::streams::StreamId> {
    const STREAM_SETTLED: Duration = Duration::from_millis(300);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = read_stream(redis, stream).await;
    loop {
        tokio::time::sleep(STREAM_SETTLED).await;
        let now = read_stream(redis, stream).await;
        if now.len() == seen.len() || tokio::time::Instant::now() > deadline {
            return now;
        }
        seen = now;
    }
}

async fn read_stream(
    redis: &mut redis::aio::MultiplexedConnection,
    stream: &str,
) -> Vec<redis::streams::StreamId> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(redis)
        .await
        .unwrap();
    reply.ids
}
