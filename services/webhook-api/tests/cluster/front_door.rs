//! The operators' front door: nginx's console port of the local cluster as a browser and an
//! operator's tools reach it (Origin with the port, the client's own address), the console's
//! live tails and their bounds, every variable of prod.env.example reaching the instances, and
//! restarts that leave nginx something to try.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use super::{script, Cluster};

impl Cluster {
    fn console(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.console_port)
    }

    fn operator_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("operator.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A client of nginx's ports from its own loopback address (as another host would be):
    /// no redirects followed, the cluster's CA trusted.
    fn client_from(&self, address: &str) -> reqwest::Client {
        let ca = std::fs::read(self.dir.path().join("tls/ca.pem")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .local_address(address.parse::<std::net::IpAddr>().unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap()
    }

    /// Signs in through the console port as a browser does; the session cookie.
    async fn sign_in(&self, client: &reqwest::Client) -> String {
        let answer = client
            .post(self.console("/console/login"))
            .header("Origin", self.console(""))
            .form(&[("token", self.operator_token())])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 303, "signed in through nginx");
        let cookie = answer.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_string()
    }

    /// The instances' open connections to Redis (other tests share the server).
    fn redis_connections(&self) -> usize {
        let pids = [self.api_pid(1), self.api_pid(2)].map(|pid| format!("pid={pid},"));
        let output = Command::new("ss")
            .args(["-tnp", "state", "established", "( dport = :6379 )"])
            .output()
            .expect("ss (iproute2)");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| pids.iter().any(|pid| line.contains(pid.as_str())))
            .count()
    }

    fn api_pid(&self, n: u32) -> u32 {
        std::fs::read_to_string(self.dir.path().join(format!("api-{n}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// The names and values `cluster.sh` gives the instances, as `bash` reads `api.env`.
fn sourced_env(path: &std::path::Path) -> BTreeMap<String, String> {
    let output = Command::new("bash")
        .arg("-c")
        .arg("set -a && source \"$1\" && env -0")
        .arg("-")
        .arg(path)
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success());
    // Only the file's own names, not bash's (SHLVL, PWD, ...).
    let text = std::fs::read_to_string(path).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, _)| n)
        .collect();
    output
        .stdout
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=')?;
            Some((name.to_string(), value.to_string()))
        })
        .filter(|(name, _)| names.contains(&name.as_str()))
        .collect()
}

fn example_names() -> Vec<String> {
    let example = include_str!("../../../../prod.env.example");
    let mut names: Vec<String> = example
        .lines()
        .map(|line| line.trim_start_matches('#').trim_start())
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Every variable of prod.env.example set for `cluster.sh` is in the instances' environment
/// file with its value (but the local dependencies' addresses and keys, which deps.sh gives,
/// and each instance's own port, id and spool), and a running instance has each of them.
#[tokio::test]
async fn every_variable_of_prod_env_example_reaches_the_instances() {
    let names = example_names();
    assert!(names.len() > 100, "{names:?}");
    let own = [
        "PORT",
        "INSTANCE_ID",
        "SPOOL_DIR",
        "DATABASE_URL",
        "REDIS_URL",
        "MINIO_ENDPOINT",
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
    ];
    let dir = tempfile::tempdir().unwrap();
    let marked: Vec<(String, String)> = names
        .iter()
        .map(|name| (name.clone(), format!("marker-{}", name.to_lowercase())))
        .collect();
    let output = Command::new(script())
        .arg("env")
        .env("CLUSTER_DIR", dir.path())
        .envs(marked.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("WEBHOOK_SOURCE_ORCHESTRATOR_SECRETS", "marker-own-source")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = sourced_env(&dir.path().join("api.env"));
    for (name, value) in &marked {
        let got = written.get(name).map(String::as_str);
        if own.contains(&name.as_str()) {
            assert_ne!(got, Some(value.as_str()), "{name} is the cluster's own");
        } else if name == "OPERATOR_TOKENS" {
            assert!(
                got.is_some_and(|v| v.ends_with(&format!(",{value}"))),
                "{got:?}"
            );
        } else {
            assert_eq!(
                got,
                Some(value.as_str()),
                "{name} did not reach the instances"
            );
        }
    }
    assert_eq!(
        written
            .get("WEBHOOK_SOURCE_ORCHESTRATOR_SECRETS")
            .map(String::as_str),
        Some("marker-own-source")
    );

    // And a running instance's environment holds every one of them.
    let cluster = Cluster::up(&[
        ("TELEGRAM_API_URL", "http://127.0.0.1:9"),
        ("CONSOLE_LIVE_TAILS", "7"),
        ("NOTIFY_ON_FAILURE", "true"),
    ])
    .await;
    let given = sourced_env(&cluster.dir.path().join("api.env"));
    for n in [1, 2] {
        let environ = std::fs::read(format!("/proc/{}/environ", cluster.api_pid(n))).unwrap();
        let environ: BTreeMap<String, String> = environ
            .split(|b| *b == 0)
            .filter_map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                let (name, value) = entry.split_once('=')?;
                Some((name.to_string(), value.to_string()))
            })
            .collect();
        for (name, value) in &given {
            assert_eq!(environ.get(name), Some(value), "api-{n}: {name}");
        }
        assert_eq!(
            environ.get("CONSOLE_LIVE_TAILS").map(String::as_str),
            Some("7")
        );
    }
}

/// Chromium signs in, replays, starts a bulk replay, sees a live tail end with its session and
/// signs out, all through nginx's console port; the "Replay with curl" line works as shown.
/// (Before: every sign-in through nginx was refused as cross-origin.)
#[tokio::test]
async fn an_operator_works_the_console_through_nginx_in_a_real_browser() {
    let cluster = Cluster::up(&[]).await;
    let request_ids = cluster.training_avatars(3).await;
    for id in &request_ids {
        let body = format!(r#"{{"request_id":"{id}","status":"OK","payload":{{}}}}"#);
        assert_eq!(
            cluster.post_signed(&body, None).await.unwrap().status(),
            200
        );
    }
    let delivery_id: i64 = cluster
        .db
        .query_one("SELECT max(id) FROM webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    let seeded = json!({
        "token": cluster.operator_token(),
        "token_name": "cluster",
        "delivery_id": delivery_id,
    });
    let base = cluster.console("");
    let shots = format!("{}/console-screenshots", env!("CARGO_TARGET_TMPDIR"));
    let python = std::env::var("TEST_BOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let walk = format!(
        "{}/tests/browser/console_front_door.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(python)
            .args([&walk, &base, &shots])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python with playwright (scripts/dev/test.sh installs it)");
        writeln!(child.stdin.take().unwrap(), "{seeded}").unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser's walk failed: {stdout}"
    );
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["errors"], json!([]), "{summary}");
    // What Chromium sent: its Origin, with the console port.
    let origin = cluster.console("");
    let origins = summary["origins"].as_array().unwrap();
    assert!(
        !origins.is_empty() && origins.iter().all(|o| o == &json!(origin)),
        "{summary}"
    );

    // The curl line names the console's own address, and works there with the token.
    let curl = summary["curl"].as_str().unwrap();
    let url = curl
        .split_whitespace()
        .find(|word| word.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {curl}"));
    assert_eq!(
        url,
        cluster.console(&format!("/api/v1/webhooks/events/{delivery_id}/replay"))
    );
    let replayed = cluster
        .https
        .post(url)
        .bearer_auth(cluster.operator_token())
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 200);
    let unauthenticated = cluster.https.post(url).send().await.unwrap();
    assert_eq!(
        unauthenticated.status(),
        401,
        "nothing internal without a token"
    );
    // A form from another site is still refused, through nginx as directly.
    let forged = cluster
        .client_from("127.0.0.1")
        .post(cluster.console("/console/login"))
        .header("Origin", "https://evil.example")
        .form(&[("token", cluster.operator_token())])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}

/// Refusals are counted per client address as nginx saw it: one address past its refusals is
/// answered 429, another operator still signs in and calls the API. (Before: every request
/// came from nginx's address, and the second operator was locked out too.)
#[tokio::test]
async fn one_address_guessing_tokens_locks_out_only_itself() {
    let cluster = Cluster::up(&[
        ("OPERATOR_REFUSALS_PER_MINUTE", "2"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("NGINX_CONSOLE_LOGIN_RATE", "600r/m"),
    ])
    .await;
    let attacker = cluster.client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let answer = attacker
            .post(cluster.console("/console/login"))
            .header("Origin", cluster.console(""))
            .form(&[("token", "not-a-token-of-this-cluster-0123456789")])
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        4,
        "two refusals on each instance, then 429: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let api = attacker
        .get(cluster.console("/api/v1/webhooks/failures"))
        .bearer_auth(cluster.operator_token())
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 429, "the operators' API shares the counter");

    let operator = cluster.client_from("127.0.0.3");
    for _ in 0..2 {
        // Either instance: each must let this operator in.
        cluster.sign_in(&operator).await;
        let api = operator
            .get(cluster.console("/api/v1/webhooks/failures"))
            .bearer_auth(cluster.operator_token())
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 200);
    }
}

/// Live tails are bounded per session (429 with the reason), share one Redis connection per
/// instance, and end within seconds when their session expires.
#[tokio::test]
async fn live_tails_are_bounded_share_redis_and_end_with_their_session() {
    let cluster = Cluster::up(&[("CONSOLE_LIVE_TAILS_PER_SESSION", "2")]).await;
    let client = cluster.client_from("127.0.0.1");
    let cookie = cluster.sign_in(&client).await;
    let before = cluster.redis_connections();
    let mut open = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        let answer = client
            .get(cluster.console("/console/live/stream"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        match answer.status().as_u16() {
            200 => open.push(answer),
            429 => {
                refused = Some(answer.text().await.unwrap());
                break;
            }
            other => panic!("a live tail answered {other}"),
        }
    }
    assert!(
        open.len() <= 4,
        "two a session on each instance: {}",
        open.len()
    );
    let refused = refused.expect("a tail past the bound is refused");
    assert!(
        refused.contains("CONSOLE_LIVE_TAILS_PER_SESSION"),
        "{refused}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = cluster.redis_connections();
    assert!(
        during > before && during <= before + 2,
        "one Redis connection per instance, not one per tail: {before} -> {during}"
    );

    // Closed by the browser (a reload), the tails give their places back within seconds.
    drop(open);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut open = Vec::new();
    for n in 0..2 {
        let tail = client
            .get(cluster.console("/console/live/stream"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(tail.status(), 200, "tail {n} after the others were closed");
        open.push(tail);
    }

    // The session expires: every open tail says so and ends within seconds.
    cluster
        .db
        .execute(
            "UPDATE console_sessions SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let started = Instant::now();
    for tail in open {
        let mut body = tail.bytes_stream();
        let mut text = String::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(chunk) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            }
        })
        .await;
        assert!(ended.is_ok(), "the tail went on after its session: {text}");
        assert!(text.contains("event: ended"), "{text}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// Two instances restarted three seconds apart, then the other way round, under a sender that
/// never retries: nginx answers no 5xx (before: seconds of 503 while it kept the first
/// restarted instance out and the second was down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_restarts_seconds_apart_answer_no_5xx_to_a_sender_that_does_not_retry() {
    let cluster = Arc::new(Cluster::up(&[("WEBHOOK_RATE_LIMIT", "1000r/s")]).await);
    let request_ids = cluster.training_avatars(400).await;
    let (five_xx, broken) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = tokio::spawn({
        let (cluster, five_xx, broken) = (cluster.clone(), five_xx.clone(), broken.clone());
        async move {
            for id in request_ids {
                let body = format!(r#"{{"request_id":"{id}","status":"OK","payload":{{}}}}"#);
                match cluster.post_signed(&body, None).await {
                    Ok(answer) if answer.status().is_server_error() => {
                        five_xx.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(answer) => assert_eq!(answer.status(), 200),
                    Err(_) => {
                        broken.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (first, second) in [("1", "2"), ("2", "1")] {
        let started = Instant::now();
        // Blocking this thread only: the sender goes on on the other.
        let restart = |n: &str| {
            tokio::task::block_in_place(|| {
                cluster.script(&["stop-api", n, "TERM"]);
                cluster.script(&["start-api", n]);
            })
        };
        restart(first);
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
        restart(second);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    load.await.unwrap();
    let (five_xx, broken) = (
        five_xx.load(Ordering::Relaxed),
        broken.load(Ordering::Relaxed),
    );
    println!("restarts 3 s apart: {five_xx} answers >= 500, {broken} broken connections");
    assert_eq!((five_xx, broken), (0, 0));
}

/// An operator's open live tails count against the console port's own limit: a sender behind
/// the same address still gets its callbacks in (before: the tails used up NGINX_CONN_PER_IP,
/// shared with the webhook ports, and the sender was answered 429).
#[tokio::test]
async fn open_live_tails_never_block_a_sender_behind_the_same_address() {
    let cluster = Cluster::up(&[
        ("NGINX_CONN_PER_IP", "3"),
        ("CONSOLE_LIVE_TAILS_PER_SESSION", "8"),
    ])
    .await;
    let client = cluster.client_from("127.0.0.1");
    let cookie = cluster.sign_in(&client).await;
    let mut open = Vec::new();
    for n in 0..5 {
        let tail = client
            .get(cluster.console("/console/live/stream"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(tail.status(), 200, "tail {n}");
        open.push(tail);
    }
    let request_ids = cluster.training_avatars(2).await;
    for id in &request_ids {
        let body = format!(r#"{{"request_id":"{id}","status":"OK","payload":{{}}}}"#);
        let answer = cluster.post_signed(&body, None).await.unwrap();
        assert_eq!(answer.status(), 200, "a callback beside 5 open tails");
    }
    drop(open);
}

/// Through an SSH tunnel to another local port (`ssh -L 10444:127.0.0.1:9444`): the browser
/// sends that port in `Host` and `Origin`, nginx passes it on, and the sign-in is the
/// console's own; another origin is still refused.
#[tokio::test]
async fn a_sign_in_through_a_tunnel_to_another_port_is_the_consoles_own() {
    let cluster = Cluster::up(&[]).await;
    let tunnel = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tunnel_port = tunnel.local_addr().unwrap().port();
    let console_port = cluster.console_port;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = tunnel.accept().await {
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", console_port))
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    let through = format!("https://localhost:{tunnel_port}");
    let client = cluster.client_from("127.0.0.1");
    for (origin, expected) in [(through.clone(), 303), (cluster.console(""), 403)] {
        let answer = client
            .post(format!("{through}/console/login"))
            .header("Origin", &origin)
            .form(&[("token", cluster.operator_token())])
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            expected,
            "Origin {origin} through the tunnel"
        );
    }
}
