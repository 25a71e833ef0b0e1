//! The operators' console in a real browser (Chromium, `tests/browser/console_check.py`):
//! signed in with a token, it finds deliveries by page, source, delivery id and body, refuses
//! bad input with a message, replays one (the avatar changes once, audited), refuses a forged
//! form, and sends an expired session back to sign in. This test seeds the deliveries, ends
//! the session when the walk asks, and checks what the database and the stream say after.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use webhook_api::config::Secret;
use webhook_api::verify::hmac;

use crate::helpers::{
    bot_orm, shared_redis_url, AppOptions, AvatarsSchema, ChaosProxy, TestApp, ADMIN_TOKEN,
    READ_TOKEN,
};

const GITHUB_SECRET: &str = "console-github-secret";
const PAGE_SIZE: usize = 10;

fn completion(request_id: &str) -> String {
    json!({"request_id": request_id, "status": "completed"}).to_string()
}

async fn post_github(app: &TestApp, delivery: &str, git_ref: &str) -> i64 {
    let body = json!({
        "ref": git_ref,
        "before": "0".repeat(40),
        "after": "a".repeat(40),
        "repository": {"full_name": "team/console-test"},
    })
    .to_string();
    let signature = format!(
        "sha256={}",
        hmac::sign(&Secret::new(GITHUB_SECRET), body.as_bytes())
    );
    let answer = app
        .post(
            "/api/v1/webhooks/github",
            &body,
            &[
                ("X-Hub-Signature-256", signature),
                ("X-GitHub-Event", "push".into()),
                ("X-GitHub-Delivery", delivery.into()),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    answer.json["event_id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_finds_reads_and_replays_deliveries_in_a_real_browser() {
    // The app reaches Redis through a proxy the test can cut; the test reads it directly.
    let redis_url = shared_redis_url();
    let redis_address: std::net::SocketAddr = redis_url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let redis_proxy = ChaosProxy::start(redis_address).await;
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with(
                "REDIS_URL",
                redis_url.replace(&redis_address.to_string(), &redis_proxy.address.to_string()),
            )
            .with("CONSOLE_PAGE_SIZE", PAGE_SIZE.to_string())
            .with("ANNOUNCE_INTERVAL_MS", "200")
            .with("CONSOLE_BULK_REPLAYS_PER_SEC", "4")
            .with("ANNOUNCE_SETTLE_MS", "1000")
            .with("WEBHOOK_SOURCES", "github:github")
            .with("WEBHOOK_SOURCE_GITHUB_SECRETS", GITHUB_SECRET),
    )
    .await;
    for n in 0..25 {
        let request_id = format!("console-{n}");
        app.insert_training_avatar(&request_id).await;
        let answer = app.post_fal(&completion(&request_id)).await;
        assert_eq!(answer.result(), "applied");
    }
    post_github(&app, "gh-delivery-1", "refs/heads/main").await;
    let branch_event = post_github(&app, "gh-delivery-2", "refs/heads/release-42").await;
    post_github(&app, "gh-delivery-3", "refs/heads/main").await;
    // A completion that came before the bot recorded its request id: kept `unmatched`.
    let late = "console-late-request";
    let unmatched = app.post_fal(&completion(late)).await;
    assert_eq!(unmatched.result(), "unmatched");
    let unmatched_id = unmatched.json["event_id"].as_i64().unwrap();
    let avatar = app.insert_training_avatar(late).await;
    let mut redis = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let events = format!("{}avatar:events", app.prefix);
    let stream_before = crate::helpers::stream_entries(&mut redis, &events)
        .await
        .len();
    for n in 1..=2 {
        app.insert_training_avatar(&format!("console-live-{n}"))
            .await;
    }

    let seeded = json!({
        "token": ADMIN_TOKEN,
        "token_name": "admin",
        "read_token": READ_TOKEN,
        "page_size": PAGE_SIZE,
        "newest_id": unmatched_id,
        "github_count": 3,
        "fal_count": 26,
        "github_delivery_id": "gh-delivery-2",
        "branch_ref": "refs/heads/release-42",
        "branch_event_id": branch_event.to_string(),
        "unmatched_id": unmatched_id,
        "unmatched_request_id": late,
    });
    let shots = std::env::var("CONSOLE_SCREENSHOTS")
        .unwrap_or_else(|_| format!("{}/console-screenshots", env!("CARGO_TARGET_TMPDIR")));
    let python = std::env::var("TEST_BOT_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "{}/tests/browser/console_check.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut walk = Command::new(python)
        .args([&script, &app.address, &shots])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python with playwright (scripts/dev/test.sh installs it)");
    let mut to_walk = walk.stdin.take().unwrap();
    writeln!(to_walk, "{seeded}").unwrap();
    let mut lines = BufReader::new(walk.stdout.take().unwrap()).lines();
    let mut summary = None;
    let mut expired = false;
    while let Some(line) = tokio::task::block_in_place(|| lines.next()) {
        let line = line.unwrap();
        let post_live = |n: u32| {
            let body = completion(&format!("console-live-{n}"));
            let app = &app;
            async move { app.post_fal(&body).await.result().to_string() }
        };
        if line == "WAIT post-live-delivery" {
            assert_eq!(post_live(1).await, "applied");
            writeln!(to_walk, "ok").unwrap();
        } else if line == "WAIT cut-redis" {
            redis_proxy.cut();
            writeln!(to_walk, "ok").unwrap();
        } else if line == "WAIT post-while-redis-down" {
            assert_eq!(post_live(2).await, "applied", "committed without Redis");
            writeln!(to_walk, "ok").unwrap();
        } else if line == "WAIT restore-redis" {
            redis_proxy.restore();
            writeln!(to_walk, "ok").unwrap();
        } else if line == "WAIT expire-session" {
            let ended = app
                .db
                .execute(
                    "UPDATE console_sessions SET expires_at = now() - interval '1 second'",
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(ended, 1, "one session was open");
            expired = true;
            writeln!(to_walk, "ok").unwrap();
        } else if line.starts_with('{') {
            summary = Some(serde_json::from_str::<Value>(&line).unwrap());
        }
    }
    let status = tokio::task::block_in_place(|| walk.wait()).unwrap();
    assert!(status.success(), "the browser walk failed: {status}");
    assert!(expired, "the walk reached the expired session");
    let summary = summary.expect("the walk's summary");
    assert_eq!(summary["console_errors"], json!([]), "no script errors");
    let screenshots = summary["screenshots"].as_array().unwrap();
    assert_eq!(screenshots.len(), 9);
    assert_eq!(summary["exported"], 3);
    for path in screenshots {
        let size = std::fs::metadata(path.as_str().unwrap()).unwrap().len();
        assert!(size > 10_000, "{path} is a real screenshot ({size} bytes)");
    }
    eprintln!("console screenshots: {shots}");

    // The replay applied the late completion once; the second was a duplicate.
    assert_eq!(app.avatar(avatar).await.status, "COMPLETED");
    // On the bot's own tables, its ORM loads every avatar the console's replays wrote.
    if AvatarsSchema::from_env() != AvatarsSchema::Own {
        let loaded: Vec<Value> =
            serde_json::from_str(&bot_orm(&["load", &app.database.url])).unwrap();
        let replayed = loaded
            .iter()
            .find(|a| a["id"] == avatar.to_string())
            .expect("the bot's ORM loads the replayed avatar");
        assert_eq!(replayed["status"], "COMPLETED");
        assert_eq!(loaded.len(), 28, "every avatar of the test loads");
    }
    let rows = app
        .db
        .query(
            "SELECT outcome, replays FROM webhook_events WHERE fal_request_id = $1",
            &[&late],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "a replay records no second delivery");
    assert_eq!(rows[0].get::<_, String>(0), "applied");
    // Two replays by hand; the cancelled bulk replay (newest first) may have reached it too.
    assert!(rows[0].get::<_, i32>(1) >= 2);
    // The replayed change and the first live one announced at once; the one committed while
    // Redis was away, by the late announcer once it is back.
    let announced = |n: usize| {
        let (mut redis, events) = (redis.clone(), events.clone());
        async move {
            let len: usize = redis::cmd("XLEN")
                .arg(&events)
                .query_async(&mut redis)
                .await
                .unwrap();
            len == n
        }
    };
    assert!(
        crate::helpers::eventually(std::time::Duration::from_secs(60), || announced(
            stream_before + 3
        ))
        .await,
        "each change announced"
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(announced(stream_before + 3).await, "and only once");
    // Audited with the token's name: the two replays (the forged form was refused before it
    // reached one), and the sign-ins.
    let audit: Vec<(String, String, i16)> = app
        .db
        .query(
            "SELECT token_name, action, status_code FROM operator_audit ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let replays: Vec<_> = audit
        .iter()
        .filter(|(_, action, _)| action == "console_replay")
        .collect();
    assert_eq!(replays.len(), 2, "{audit:?}");
    assert!(replays
        .iter()
        .all(|(who, _, status)| who == "admin" && *status == 303));
    let bulk: Vec<&str> = audit
        .iter()
        .filter(|(_, action, _)| action.starts_with("console_bulk"))
        .map(|(_, action, _)| action.as_str())
        .collect();
    assert_eq!(
        bulk,
        [
            "console_bulk_replay",
            "console_bulk_replay",
            "console_bulk_cancel"
        ]
    );
    let jobs: Vec<(String, i32, i32, i32)> = app
        .db
        .query(
            "SELECT state, done, skipped, failed FROM console_replays ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        jobs[0],
        ("done".to_string(), 3, 0, 0),
        "the pushes announced again"
    );
    assert_eq!(jobs[1].0, "cancelled");
    assert_eq!(
        jobs[1].1, 0,
        "every FAL callback was already applied: duplicates"
    );
    let replayed_pushes: usize = redis::cmd("XLEN")
        .arg(format!("{}webhooks:github", app.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        replayed_pushes, 6,
        "three pushes, each announced again once"
    );
    let sign_ins: Vec<&str> = audit
        .iter()
        .filter(|(_, action, _)| action == "console_sign_in")
        .map(|(who, _, _)| who.as_str())
        .collect();
    assert_eq!(sign_ins, ["admin", "prometheus"]);
    // Signing out closed the last session.
    let open: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM console_sessions WHERE expires_at > now()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0);
}

#[tokio::test]
async fn the_console_is_a_page_to_sign_in_to_and_never_a_json_error() {
    let app = TestApp::spawn().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without a session every page sends the browser to sign in, even with an API token.
    let answer = app.http.get(app.url("/console/")).send().await.unwrap();
    assert!(answer.url().path().ends_with("/console/login"));
    let page = plain
        .get(app.url("/console/deliveries/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/console/login");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    // A sign-in from another site is refused, whatever the token.
    let forged = plain
        .post(app.url("/console/login"))
        .header("Origin", "https://evil.example")
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.headers().get("set-cookie").is_none());
    // Signed in, a search that cannot work says so on the page.
    let signed_in = plain
        .post(app.url("/console/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_string();
    let page = plain
        .get(app.url("/console/?body=%5B1%2C"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("the body search is not JSON"));
    let missing = plain
        .get(app.url("/console/deliveries/999999"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing
        .text()
        .await
        .unwrap()
        .contains("There is no delivery 999999"));
}

/// The notice after a replay is said by code: a link that carries text of its own shows none
/// of it (before: "Replayed: <any text>." from the URL).
#[tokio::test]
async fn a_delivery_page_shows_no_text_a_link_carries() {
    let app = TestApp::spawn().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = plain
        .post(app.url("/console/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    let session = cookie.split(';').next().unwrap().to_string();
    let answer = app.post_fal(&completion("console-flash-1")).await;
    let id = answer.json["event_id"].as_i64().unwrap();
    let page = |query: &'static str| {
        let (plain, session, url) = (
            &plain,
            &session,
            app.url(&format!("/console/deliveries/{id}?{query}")),
        );
        async move {
            let page = plain
                .get(url)
                .header("Cookie", session)
                .send()
                .await
                .unwrap();
            assert_eq!(page.status(), 200);
            page.text().await.unwrap()
        }
    };
    let forged =
        page("replayed=Your+session+expired%3A+sign+in+at+https%3A%2F%2Fevil.example").await;
    assert!(!forged.contains("evil.example"), "{forged}");
    assert!(!forged.contains("class=\"notice\""), "{forged}");
    let applied = page("replayed=duplicate").await;
    assert!(applied.contains("Replayed: duplicate"), "{applied}");
}

/// A time range follows the time: a delivery that waited in a spool (stored later, so with a
/// later id, than deliveries received after it) is listed where its time is, and paging by the
/// cursor shows every delivery of the range once.
#[tokio::test]
async fn a_time_range_lists_each_delivery_once_in_time_order_spooled_ones_too() {
    let app = TestApp::spawn().await;
    // Ten deliveries a minute apart, then one received with the 4th but stored last (it waited
    // in a spool): its id is the highest.
    for minute in (0..10i32).chain([3]) {
        app.db
            .execute(
                "INSERT INTO webhook_events (source, delivery_key, event, outcome, \
                   signature_scheme, payload, received_at) \
                 VALUES ('github', 'github:t' || $1::int || '-' || gen_random_uuid(), 'push', \
                   'accepted', 'github', '{}', \
                   timestamptz '2026-12-01 10:00:30+00' + make_interval(mins => $1::int))",
                &[&minute],
            )
            .await
            .unwrap();
    }
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_in = plain
        .post(app.url("/console/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    let session = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let ids_of = |page: &str| -> Vec<i64> {
        page.split("<tr><td><a href=\"/console/deliveries/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
            .collect()
    };
    // From 10:02 to 10:08: minutes 2..=7 and the spooled one, in pages of 10 (the least).
    let mut seen = Vec::new();
    let mut query = "since=2026-12-01T10:02&until=2026-12-01T10:08".to_string();
    loop {
        let page = plain
            .get(app.url(&format!("/console/?{query}")))
            .header("Cookie", &session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let ids = ids_of(&page);
        seen.extend(ids.iter().copied());
        match page.split("class=\"next\" href=\"/console/?").nth(1) {
            Some(rest) => query = rest.split('"').next().unwrap().replace("&amp;", "&"),
            None => break,
        }
        assert!(seen.len() < 50, "paging ends");
    }
    let expected: Vec<i64> = app
        .db
        .query(
            "SELECT id FROM webhook_events WHERE received_at >= '2026-12-01 10:02+00' \
               AND received_at < '2026-12-01 10:08+00' ORDER BY received_at DESC, id DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(expected.len(), 7);
    assert_eq!(seen, expected, "each once, newest received first");
    let spooled = *expected.iter().max().unwrap();
    // Received in the same second as the 4th minute's: after the three newer ones.
    assert_eq!(
        expected[4], spooled,
        "the spooled one stands where its time is"
    );
}

/// The console's indexes as PostgreSQL holds them: by name, valid, and storage options.
async fn console_indexes(db: &tokio_postgres::Client) -> Vec<(String, bool, Vec<String>)> {
    db.query(
        "SELECT c.relname::text, i.indisvalid, COALESCE(c.reloptions, '{}') \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname IN ('webhook_events_source_event_idx', 'webhook_events_delivery_id_idx', \
                             'webhook_events_avatar_idx', 'webhook_events_payload_idx') \
         ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

// Several threads: `wait_ready` blocks on the `healthcheck` command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_index_is_built_without_a_pending_list_and_rebuilt_if_it_has_one() {
    let database = crate::helpers::TestDatabase::create().await;
    let db = crate::helpers::pg_connect(&database.url).await;
    let built = || async {
        let indexes = console_indexes(&db).await;
        indexes.len() == 4 && indexes.iter().all(|(_, valid, _)| *valid)
    };
    let mut instance = crate::helpers::Instance::start(&database.url);
    instance.wait_ready().await;
    assert!(
        crate::helpers::eventually(std::time::Duration::from_secs(30), built).await,
        "{:?}",
        console_indexes(&db).await
    );
    let payload = |indexes: Vec<(String, bool, Vec<String>)>| {
        indexes
            .into_iter()
            .find(|(name, _, _)| name == "webhook_events_payload_idx")
            .map(|(_, _, options)| options)
    };
    // A pending list's merge holds the insert that fills it for a tenth of a second or more.
    assert_eq!(
        payload(console_indexes(&db).await),
        Some(vec!["fastupdate=off".to_string()])
    );
    instance.stop();

    // As an earlier build made it: with the pending list. The next start builds it again.
    db.batch_execute(
        "DROP INDEX webhook_events_payload_idx; \
         CREATE INDEX webhook_events_payload_idx ON webhook_events USING gin (payload jsonb_path_ops)",
    )
    .await
    .unwrap();
    assert_eq!(payload(console_indexes(&db).await), Some(vec![]));
    let mut instance = crate::helpers::Instance::start(&database.url);
    instance.wait_ready().await;
    let rebuilt = crate::helpers::eventually(std::time::Duration::from_secs(30), || async {
        payload(console_indexes(&db).await) == Some(vec!["fastupdate=off".to_string()])
    })
    .await;
    assert!(rebuilt, "{:?}", console_indexes(&db).await);
    assert!(built().await, "{:?}", console_indexes(&db).await);
    instance.stop();
}
