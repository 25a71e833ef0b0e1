//! End to end through the local cluster (`scripts/dev/cluster.sh`): nginx with TLS in front of
//! two real instances, each test on ports and a database of its own. Failover and rolling
//! restarts run under a steady load of signed callbacks; the sender retries on 5xx, as FAL does.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

mod front_door;
#[path = "../support/mod.rs"]
mod support;
use support::{admin_database_url, drop_database, free_port};
use webhook_api::config::Secret;
use webhook_api::verify::hmac;

const SECRET: &str = "cluster-test-secret";
const STATUS_UPDATE: &str = "/api/v1/avatar/status_update";

struct Cluster {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    webhook_port: u16,
    http_port: u16,
    console_port: u16,
    db_name: String,
    db: tokio_postgres::Client,
    prefix: String,
    https: reqwest::Client,
}

impl Cluster {
    async fn up(extra: &[(&'static str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_name = format!("cluster_{}", &Uuid::new_v4().simple().to_string()[..12]);
        let prefix = format!("cl{}:", &Uuid::new_v4().simple().to_string()[..8]);
        let (webhook_port, http_port, console_port) = (free_port(), free_port(), free_port());
        let mut env = vec![
            ("CLUSTER_DIR", dir.path().display().to_string()),
            ("API_PORT_1", free_port().to_string()),
            ("API_PORT_2", free_port().to_string()),
            ("NGINX_HTTP_PORT", http_port.to_string()),
            ("NGINX_HTTPS_PORT", free_port().to_string()),
            ("NGINX_WEBHOOK_PORT", webhook_port.to_string()),
            ("NGINX_CONSOLE_PORT", console_port.to_string()),
            ("CLUSTER_DB", db_name.clone()),
            ("INSTANCE_PREFIX", format!("{db_name}-")),
            (
                "MINIO_BUCKET_NAME",
                format!("cl-{}", &Uuid::new_v4().simple().to_string()[..12]),
            ),
            ("REDIS_KEY_PREFIX", prefix.clone()),
            ("FAL_WEBHOOK_SECRET", SECRET.to_string()),
            ("FILE_WORKERS", "0".to_string()),
            ("LOG_LEVEL", "info".to_string()),
            (
                "WEBHOOK_API_BIN",
                env!("CARGO_BIN_EXE_webhook-api").to_string(),
            ),
            ("WEBHOOK_RATE_LIMIT", "500r/s".to_string()),
            // A change committed by an instance killed before its XADD is announced by the
            // survivor's announcer: soon, in a test.
            ("ANNOUNCE_INTERVAL_MS", "200".to_string()),
            ("ANNOUNCE_SETTLE_MS", "1000".to_string()),
            ("WEBHOOK_RATE_BURST", "200".to_string()),
        ];
        for (name, value) in extra {
            env.retain(|(n, _)| n != name);
            env.push((name, value.to_string()));
        }
        let mut cluster_env = env.clone();
        cluster_env.push(("PATH", std::env::var("PATH").unwrap_or_default()));
        let status = Command::new(script())
            .arg("up")
            .envs(cluster_env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .expect("scripts/dev/cluster.sh runs");
        assert!(status.success(), "cluster.sh up failed");

        let cert = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
        let https = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let url = format!(
            "{}/{db_name}",
            admin_database_url().rsplit_once('/').unwrap().0
        );
        let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        Self {
            dir,
            env,
            webhook_port,
            http_port,
            console_port,
            db_name,
            db,
            prefix,
            https,
        }
    }

    fn script(&self, args: &[&str]) {
        let status = Command::new(script())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .status()
            .unwrap();
        assert!(status.success(), "cluster.sh {args:?} failed");
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.webhook_port)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("logs").join(name)).unwrap_or_default()
    }

    async fn training_avatars(&self, count: usize) -> Vec<String> {
        let ids: Vec<String> = (0..count)
            .map(|_| format!("req-{}", Uuid::new_v4().simple()))
            .collect();
        self.db
            .execute(
                "INSERT INTO avatars (user_id, name, status, fal_request_id) \
                 SELECT gen_random_uuid(), 'cluster', 'TRAINING', unnest($1::text[])",
                &[&ids],
            )
            .await
            .unwrap();
        ids
    }

    async fn post_signed(
        &self,
        body: &str,
        request_id: Option<&str>,
    ) -> reqwest::Result<reqwest::Response> {
        let signature = hmac::sign(&Secret::new(SECRET), body.as_bytes());
        let mut request = self
            .https
            .post(self.url(STATUS_UPDATE))
            .header("Content-Type", "application/json")
            .header("X-Signature", format!("sha256={signature}"))
            .body(body.to_string());
        if let Some(id) = request_id {
            request = request.header("X-Request-ID", id);
        }
        request.send().await
    }

    /// Each avatar's completion is sent once, one every `interval`, retried on 5xx or a broken
    /// connection until it is answered 200 (as FAL retries).
    async fn steady_load(self: &Arc<Self>, request_ids: Vec<String>, interval: Duration) -> Load {
        let five_xx = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::new();
        for request_id in request_ids {
            let (cluster, five_xx) = (self.clone(), five_xx.clone());
            senders.push(tokio::spawn(async move {
                let body = format!(r#"{{"request_id":"{request_id}","status":"completed"}}"#);
                for _ in 0..50 {
                    match cluster.post_signed(&body, None).await {
                        Ok(r) if r.status() == 200 => {
                            // A resent callback may find its first delivery committed.
                            let answer: serde_json::Value = r.json().await.unwrap_or_default();
                            let result = answer["result"].as_str().unwrap_or_default();
                            assert!(
                                result == "applied" || result == "duplicate",
                                "{request_id}: {answer}"
                            );
                            return true;
                        }
                        Ok(r) if r.status().is_server_error() => {
                            five_xx.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => panic!("{request_id}: answered {}", r.status()),
                        Err(_) => {
                            five_xx.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                false
            }));
            tokio::time::sleep(interval).await;
        }
        let mut load = Load::default();
        for sender in senders {
            load.sent += 1;
            if !sender.await.unwrap() {
                load.failed += 1;
            }
        }
        load.five_xx = five_xx.load(Ordering::Relaxed);
        load
    }

    /// Every avatar completed by exactly one applied delivery, announced exactly once.
    async fn assert_each_applied_once(&self, request_ids: &[String]) {
        let row = self
            .db
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'COMPLETED'), count(*) FROM avatars",
                &[],
            )
            .await
            .unwrap();
        let stuck: Vec<String> = self
            .db
            .query(
                "SELECT a.fal_request_id || ' ' || a.status || ' events: ' || \
                   COALESCE(string_agg(e.outcome || '/' || e.deliveries || '/' || e.instance_id, ', '), 'none') \
                 FROM avatars a LEFT JOIN webhook_events e ON e.fal_request_id = a.fal_request_id \
                 WHERE a.status <> 'COMPLETED' GROUP BY a.fal_request_id, a.status",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            row.get::<_, i64>(0),
            request_ids.len() as i64,
            "every avatar completed; not: {stuck:#?}"
        );
        let applied: i64 = self
            .db
            .query_one(
                "SELECT count(*) FROM webhook_events WHERE outcome = 'applied'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            applied,
            request_ids.len() as i64,
            "one applied delivery per avatar"
        );
        let redis_url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
        let mut redis = redis::Client::open(redis_url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let stream = format!("{}avatar:events", self.prefix);
        let mut announced = 0;
        // The announcer's settle time and a few of its passes.
        for _ in 0..50 {
            announced = redis::cmd("XLEN")
                .arg(&stream)
                .query_async(&mut redis)
                .await
                .unwrap();
            if announced >= request_ids.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        let settled: usize = redis::cmd("XLEN")
            .arg(&stream)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(settled, announced, "no announcement repeated");
        assert_eq!(announced, request_ids.len(), "each change announced once");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .status();
        drop_database(&self.db_name);
    }
}

#[derive(Debug, Default)]
struct Load {
    sent: usize,
    failed: usize,
    five_xx: usize,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dev/cluster.sh")
}

#[tokio::test]
async fn signed_callbacks_through_nginx_tls_reach_both_instances_with_their_request_ids() {
    let cluster = Cluster::up(&[]).await;
    let request_ids = cluster.training_avatars(10).await;
    for (n, request_id) in request_ids.iter().enumerate() {
        let body = format!(r#"{{"request_id":"{request_id}","status":"completed"}}"#);
        let trace = format!("e2e-trace-{n}");
        let response = cluster.post_signed(&body, Some(&trace)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-request-id"], trace.as_str());
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["result"], "applied");
    }
    cluster.assert_each_applied_once(&request_ids).await;

    // A request without an id gets nginx's, which the instance sees and echoes.
    let generated = cluster
        .https
        .get(cluster.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(generated.status(), 200);
    assert_eq!(generated.headers()["x-request-id"].len(), 32);

    // The instances write each log line at once; nginx buffers its access log for up to 1 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (api_1, api_2, access) = (
        cluster.log("api-1.log"),
        cluster.log("api-2.log"),
        cluster.log("access.log"),
    );
    for n in 0..10 {
        let trace = format!("\"e2e-trace-{n}\"");
        assert!(access.contains(&trace), "nginx logged {trace}");
        assert!(
            api_1.contains(&trace) || api_2.contains(&trace),
            "an instance logged {trace}"
        );
    }
    assert!(
        api_1.contains("e2e-trace-") && api_2.contains("e2e-trace-"),
        "both instances got traffic"
    );
    assert!(
        access.contains("\"upstream_addr\":\"127.0.0.1:"),
        "access log names the upstream"
    );
}

/// The console is served over TLS on nginx's operators' port, and only there: the public
/// webhook ports answer 404 for it, whatever the path.
#[tokio::test]
async fn the_console_is_on_the_operators_port_and_never_on_the_public_ones() {
    let cluster = Cluster::up(&[]).await;
    let console = format!("https://localhost:{}", cluster.console_port);
    let login = cluster
        .https
        .get(format!("{console}/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert!(login.text().await.unwrap().contains("Operator token"));
    // Signed in through nginx: the cookie is Secure (nginx says the request came over TLS).
    let no_redirects = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(
                &std::fs::read(cluster.dir.path().join("tls/ca.pem")).unwrap(),
            )
            .unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let refused = no_redirects
        .post(format!("{console}/console/login"))
        .form(&[("token", "not-a-token-of-this-cluster-0123456789")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let token = std::fs::read_to_string(cluster.dir.path().join("operator.token")).unwrap();
    let signed_in = no_redirects
        .post(format!("{console}/console/login"))
        .form(&[("token", token.trim())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let page = no_redirects
        .get(format!("{console}/console/"))
        .header("Cookie", session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Deliveries"));
    for path in ["/console/", "/console/login", "/console/static/console.css"] {
        let public = cluster.https.get(cluster.url(path)).send().await.unwrap();
        assert_eq!(public.status(), 404, "{path} on the webhook port");
    }
    // The operators' API is on the operators' port too, never without a token, never on the
    // public ports.
    let api = no_redirects
        .get(format!("{console}/api/v1/webhooks/failures"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let public = cluster
        .https
        .get(cluster.url("/api/v1/webhooks/failures"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let elsewhere = no_redirects
        .get(format!("{console}/nginx_status"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        404,
        "the operators' port serves nothing else"
    );
}

#[tokio::test]
async fn nginx_refuses_what_it_should_with_json_errors() {
    let cluster = Cluster::up(&[
        ("WEBHOOK_RATE_LIMIT", "5r/s"),
        ("WEBHOOK_RATE_BURST", "5"),
        ("WEBHOOK_SOURCES", "jobs:hmac"),
        ("WEBHOOK_SOURCE_JOBS_SECRETS", "cluster-jobs-secret"),
    ])
    .await;
    // A configured source is public (POST only); the operators' API is not routed at all.
    let job = r#"{"job_id":"cluster-1","status":"completed","processed":3}"#;
    let signature = webhook_api::verify::hmac::sign(
        &webhook_api::config::Secret::new("cluster-jobs-secret"),
        job.as_bytes(),
    );
    let accepted = cluster
        .https
        .post(cluster.url("/api/v1/webhooks/jobs"))
        .header("Content-Type", "application/json")
        .header("X-Signature", signature)
        .body(job)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    assert_eq!(
        accepted.json::<serde_json::Value>().await.unwrap()["result"],
        "accepted"
    );
    let get_source = cluster
        .https
        .get(cluster.url("/api/v1/webhooks/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(get_source.status(), 405);
    for private in [
        "/api/v1/webhooks/metrics",
        "/api/v1/webhooks/failures",
        "/api/v1/webhooks/events/1",
        "/api/v1/deploys",
    ] {
        let answer = cluster
            .https
            .get(cluster.url(private))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{private} is not public");
    }
    let replay = cluster
        .https
        .post(cluster.url("/api/v1/webhooks/events/1/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 404);
    let get = cluster
        .https
        .get(cluster.url(STATUS_UPDATE))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let unknown = cluster
        .https
        .get(cluster.url("/api/v1/anything"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<serde_json::Value>().await.unwrap()["error"],
        "not_found"
    );
    let huge = "x".repeat(2 * 1024 * 1024);
    let oversize = cluster.post_signed(&huge, None).await.unwrap();
    assert_eq!(oversize.status(), 413);
    // 127.0.0.1 is not among the private networks allowed to scrape.
    let metrics = cluster
        .https
        .get(cluster.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 403);
    // nginx's own early refusals speak JSON too: a malformed request, a header too large
    // (nginx's 494, sent as 400).
    for (request, error) in [
        ("NOT HTTP AT ALL\r\n\r\n".to_string(), "bad_request"),
        (
            format!(
                "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(9000)
            ),
            "header_too_large",
        ),
    ] {
        let answer = raw_exchange(cluster.http_port, &request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body).expect(&answer);
        assert_eq!(json["error"], error, "{answer}");
    }
    // The same on the TLS webhook port, over HTTP/1.1 (HTTP/2 compresses headers).
    let cert = std::fs::read(cluster.dir.path().join("tls/ca.pem")).unwrap();
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let big_header = http1
        .get(cluster.url("/health"))
        .header("X-Big", "b".repeat(9000))
        .send()
        .await
        .unwrap();
    assert_eq!(big_header.status().as_u16(), 400);
    assert_eq!(
        big_header.json::<serde_json::Value>().await.unwrap()["error"],
        "header_too_large"
    );
    let status = cluster
        .https
        .get(cluster.url("/nginx_status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 403);
    // Port 80: health answers, the rest moves to HTTPS.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let health = plain
        .get(format!("http://127.0.0.1:{}/health", cluster.http_port))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let moved = plain
        .post(format!(
            "http://127.0.0.1:{}{STATUS_UPDATE}",
            cluster.http_port
        ))
        .send()
        .await
        .unwrap();
    // A webhook posted to plain HTTP is told where it goes, as JSON; a GET is redirected.
    assert_eq!(moved.status(), 400);
    let told: serde_json::Value = moved.json().await.unwrap();
    assert_eq!(told["error"], "https_required");
    let redirected = plain
        .get(format!("http://127.0.0.1:{}/", cluster.http_port))
        .send()
        .await
        .unwrap();
    assert_eq!(redirected.status(), 301);

    let statuses = futures::future::join_all(
        (0..30).map(|_| cluster.post_signed(r#"{"request_id":"r","status":"in_progress"}"#, None)),
    )
    .await;
    let limited = statuses
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 429))
        .count();
    assert!(limited > 0, "a burst over the rate limit gets 429");
}

/// Writes `request` on a plain connection and reads the answer until nginx closes it.
async fn raw_exchange(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The test process may hold as many sockets as its hard limit allows.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

#[tokio::test]
async fn idle_connections_from_one_address_leave_the_webhook_port_answering() {
    const IDLE: usize = 9000;
    let limit = raise_open_file_limit();
    assert!(limit > IDLE as u64 + 1000, "open file limit {limit}");
    let cluster = Cluster::up(&[]).await;
    let request_ids = cluster.training_avatars(20).await;
    // One address opens 9 000 connections to port 80 and sends nothing.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        match tokio::net::TcpStream::connect(("127.0.0.1", cluster.http_port)).await {
            Ok(stream) => idle.push(stream),
            Err(e) => panic!("connection {} refused: {e}", idle.len()),
        }
    }
    // Signed callbacks through TLS are still answered, while the idle ones are held.
    for request_id in &request_ids {
        let body = format!(r#"{{"request_id":"{request_id}","status":"completed"}}"#);
        let response = cluster.post_signed(&body, None).await.unwrap();
        assert_eq!(response.status(), 200, "{request_id}");
    }
    cluster.assert_each_applied_once(&request_ids).await;
    let errors = cluster.log("error.log");
    assert!(
        !errors.contains("worker_connections are not enough"),
        "{errors}"
    );
    drop(idle);
}

#[tokio::test]
async fn instance_killed_under_load_nothing_lost_nothing_applied_twice() {
    let cluster = Arc::new(Cluster::up(&[]).await);
    let request_ids = cluster.training_avatars(150).await;
    let load = tokio::spawn({
        let (cluster, ids) = (cluster.clone(), request_ids.clone());
        async move { cluster.steady_load(ids, Duration::from_millis(20)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.script(&["stop-api", "1", "KILL"]);
    let load = load.await.unwrap();
    println!("failover: {load:?} (5xx answers or broken connections seen by the sender)");

    assert_eq!(load.failed, 0, "{load:?}");
    cluster.assert_each_applied_once(&request_ids).await;
    cluster.script(&["start-api", "1"]);
    cluster.script(&["status"]);
}

#[tokio::test]
async fn rolling_restart_under_load_fails_and_loses_nothing() {
    let cluster = Arc::new(Cluster::up(&[]).await);
    let request_ids = cluster.training_avatars(250).await;
    let load = tokio::spawn({
        let (cluster, ids) = (cluster.clone(), request_ids.clone());
        async move { cluster.steady_load(ids, Duration::from_millis(20)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in ["1", "2"] {
        cluster.script(&["stop-api", n, "TERM"]);
        cluster.script(&["start-api", n]);
    }
    let load = load.await.unwrap();
    println!("rolling restart: {load:?}");

    assert_eq!(load.failed, 0, "{load:?}");
    assert_eq!(
        load.five_xx, 0,
        "graceful restarts are invisible to senders: {load:?}"
    );
    cluster.assert_each_applied_once(&request_ids).await;
}

#[tokio::test]
async fn public_health_reads_no_token_and_both_instances_down_answer_503_with_retry_after() {
    // A command with an argument, as an operator writes it: cluster.sh keeps it one value.
    let command = "/bin/echo deployed quietly";
    let cluster = Cluster::up(&[
        ("DEPLOY_REPOSITORY", "team/avatar-bot"),
        ("DEPLOY_COMMAND", command),
    ])
    .await;
    let sourced = Command::new("bash")
        .arg("-c")
        .arg("set -a && source \"$1\" && printf %s \"$DEPLOY_COMMAND\"")
        .arg("-")
        .arg(cluster.dir.path().join("api.env"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&sourced.stdout), command);
    assert!(
        sourced.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&sourced.stderr)
    );

    // A token sent to the public /health (port 80 is plain text) is never read there.
    let token = std::fs::read_to_string(cluster.dir.path().join("operator.token")).unwrap();
    for url in [
        cluster.url("/health"),
        format!("http://127.0.0.1:{}/health", cluster.http_port),
    ] {
        let answer = cluster
            .https
            .get(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        let health: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(
            health.as_object().map(|o| o.len()),
            Some(1),
            "{url}: {health}"
        );
    }

    // The same token on an instance's own port gets the details.
    let port = &cluster
        .env
        .iter()
        .find(|(k, _)| *k == "API_PORT_1")
        .unwrap()
        .1;
    let details: serde_json::Value = cluster
        .https
        .get(format!("http://127.0.0.1:{port}/health"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(details.get("checks").is_some(), "{details}");

    let request_ids = cluster.training_avatars(1).await;
    cluster.script(&["stop-api", "1", "KILL"]);
    cluster.script(&["stop-api", "2", "KILL"]);
    let body = format!(
        r#"{{"request_id":"{}","status":"OK","payload":{{}}}}"#,
        request_ids[0]
    );
    let answer = cluster.post_signed(&body, None).await.unwrap();
    assert_eq!(
        answer.status().as_u16(),
        503,
        "FAL retries a 503, as the README promises"
    );
    assert_eq!(
        answer
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(error["error"], "unavailable");
    // Public /health says the same to a load balancer in front.
    let health = cluster
        .https
        .get(cluster.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 503);

    cluster.script(&["start-api", "1"]);
    // FAL retries: the first retry to reach the instance that came back is applied.
    let mut status = 0;
    for _ in 0..20 {
        status = cluster
            .post_signed(&body, None)
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(status, 200);
    cluster.assert_each_applied_once(&request_ids).await;
}
