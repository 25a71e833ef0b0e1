//! Deploy on push, with a test command standing in for the update script: once per push across
//! instances, never two at a time, only for the configured repository and branch.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use webhook_api::config::Secret;
use webhook_api::verify::hmac;

use crate::helpers::{
    client_with_token, database_socket, eventually, AppOptions, ChaosProxy, TestApp, REPLAY_TOKEN,
};

const GITHUB_SECRET: &str = "gh-deploy-secret";
const GITEA_SECRET: &str = "gitea-deploy-secret";

/// Records each run in `runs`, and fails loudly if another run holds `lock`.
const STAND_IN: &str = r#"#!/bin/sh
runs=$1 lock=$2 seconds=$3
mkdir "$lock" 2>/dev/null || { echo "PARALLEL: another deploy is running"; echo parallel >> "$runs"; exit 3; }
echo "deploying ${DEPLOY_COMMIT:-?} of $DEPLOY_REPOSITORY@$DEPLOY_BRANCH as deploy $DEPLOY_ID"
echo "to stderr" >&2
echo "environment: $(env | cut -d= -f1 | sort | tr '\n' ' ')"
sleep "$seconds"
echo "$DEPLOY_ID $DEPLOY_COMMIT" >> "$runs"
rmdir "$lock"
"#;

struct StandIn {
    dir: tempfile::TempDir,
}

impl StandIn {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("update.sh");
        std::fs::write(&script, STAND_IN).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, seconds: &str) -> String {
        format!(
            "{} {} {} {seconds}",
            self.path("update.sh").display(),
            self.path("runs").display(),
            self.path("lock").display()
        )
    }

    fn runs(&self) -> Vec<String> {
        read_lines(&self.path("runs"))
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn deploy_app(stand_in: &StandIn, seconds: &str) -> AppOptions {
    AppOptions::default()
        .with("WEBHOOK_SOURCES", "github:github,gitea:gitea")
        .with("WEBHOOK_SOURCE_GITHUB_SECRETS", GITHUB_SECRET)
        .with("WEBHOOK_SOURCE_GITEA_SECRETS", GITEA_SECRET)
        .with("DEPLOY_REPOSITORY", "team/avatar-bot")
        .with("DEPLOY_BRANCH", "main")
        .with("DEPLOY_COMMAND", stand_in.command(seconds))
        .with("DEPLOY_TIMEOUT_SECS", "10")
        .with("DEPLOY_POLL_MS", "200")
}

fn push(repository: &str, branch: &str, commit: char) -> String {
    json!({
        "ref": format!("refs/heads/{branch}"),
        "before": "0".repeat(40),
        "after": commit.to_string().repeat(40),
        "repository": {"full_name": repository},
        "pusher": {"name": "dev"},
    })
    .to_string()
}

fn github_headers(delivery: &str, body: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "X-Hub-Signature-256",
            format!(
                "sha256={}",
                hmac::sign(&Secret::new(secret), body.as_bytes())
            ),
        ),
        ("X-GitHub-Event", "push".into()),
        ("X-GitHub-Delivery", delivery.into()),
    ]
}

fn gitea_headers(delivery: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "X-Gitea-Signature",
            hmac::sign(&Secret::new(GITEA_SECRET), body.as_bytes()),
        ),
        ("X-Gitea-Event", "push".into()),
        ("X-Gitea-Delivery", delivery.into()),
    ]
}

/// The deploys once none is queued or running any more.
async fn settled_deploys(app: &TestApp, expected: usize) -> Vec<Value> {
    for _ in 0..150 {
        let list = app.get("/api/v1/deploys").await;
        let items = list.json["items"].as_array().cloned().unwrap_or_default();
        let settled = items
            .iter()
            .all(|d| !matches!(d["state"].as_str(), Some("queued" | "running")));
        if items.len() >= expected && settled {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deploys did not settle");
}

#[tokio::test]
async fn a_matching_push_deploys_once_even_when_both_instances_receive_it() {
    let stand_in = StandIn::new();
    let api1 = TestApp::spawn_with(deploy_app(&stand_in, "0.2")).await;
    let api2 =
        TestApp::spawn_with(deploy_app(&stand_in, "0.2").shared_database(&api1.database.url)).await;

    // The same delivery reaches both instances at once.
    let body = push("team/avatar-bot", "main", 'a');
    let headers = github_headers("gh-push-1", &body, GITHUB_SECRET);
    let (first, second) = tokio::join!(
        api1.post("/api/v1/webhooks/github", &body, &headers),
        api2.post("/api/v1/webhooks/github", &body, &headers),
    );
    let mut results = [first.result().to_string(), second.result().to_string()];
    results.sort();
    assert_eq!(results, ["accepted", "duplicate"]);

    // Not deployed: another branch, another repository (Gitea), a bad signature.
    let other_branch = push("team/avatar-bot", "feature", 'b');
    let answer = api1
        .post(
            "/api/v1/webhooks/github",
            &other_branch,
            &github_headers("gh-push-2", &other_branch, GITHUB_SECRET),
        )
        .await;
    assert_eq!(answer.result(), "ignored");
    let other_repo = push("team/other", "main", 'c');
    let answer = api2
        .post(
            "/api/v1/webhooks/gitea",
            &other_repo,
            &gitea_headers("gt-1", &other_repo),
        )
        .await;
    assert_eq!(answer.result(), "ignored");
    let forged = push("team/avatar-bot", "main", 'd');
    let answer = api1
        .post(
            "/api/v1/webhooks/github",
            &forged,
            &github_headers("gh-push-3", &forged, "not-the-secret"),
        )
        .await;
    assert_eq!(answer.status, 401);

    let deploys = settled_deploys(&api1, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0]["state"], "succeeded");
    assert_eq!(deploys[0]["commit"], "a".repeat(40));
    assert_eq!(
        stand_in.runs(),
        [format!("{} {}", deploys[0]["id"], "a".repeat(40))]
    );

    // The run's status and output, from either instance.
    let id = deploys[0]["id"].as_i64().unwrap();
    let detail = api2.get(&format!("/api/v1/deploys/{id}")).await;
    assert_eq!(detail.status, 200);
    let output = detail.json["output"].as_str().unwrap();
    assert!(
        output.contains(&format!(
            "deploying {} of team/avatar-bot@main",
            "a".repeat(40)
        )),
        "{output}"
    );
    assert!(output.contains("to stderr"), "{output}");
    // The command sees what it needs, not the instance's (here: the test process's) variables.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok());
    let environment = output
        .lines()
        .find(|l| l.starts_with("environment: "))
        .unwrap();
    assert!(environment.contains(" PATH ") && environment.contains("DEPLOY_COMMIT"));
    assert!(
        !environment.contains("CARGO_PKG_NAME") && !environment.contains("TEST_DATABASE_URL"),
        "{environment}"
    );
    assert_eq!(detail.json["exit_code"], 0);
    assert!(detail.json["started_at"].is_string() && detail.json["finished_at"].is_string());
    assert_eq!(api1.get("/api/v1/deploys/999").await.status, 404);
}

#[tokio::test]
async fn pushes_during_a_run_wait_and_never_run_in_parallel() {
    let stand_in = StandIn::new();
    let api1 = TestApp::spawn_with(deploy_app(&stand_in, "1.5")).await;
    let api2 =
        TestApp::spawn_with(deploy_app(&stand_in, "1.5").shared_database(&api1.database.url)).await;

    let send = |app: &TestApp, delivery: &str, commit: char| {
        let body = push("team/avatar-bot", "main", commit);
        let headers = github_headers(delivery, &body, GITHUB_SECRET);
        let path = "/api/v1/webhooks/github";
        let app_address = app.url(path);
        let http = app.http.clone();
        async move {
            let mut request = http
                .post(app_address)
                .header("Content-Type", "application/json")
                .body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            assert_eq!(request.send().await.unwrap().status(), 200);
        }
    };
    send(&api1, "p-1", '1').await;
    let mut running = false;
    for _ in 0..100 {
        let list = api1.get("/api/v1/deploys").await;
        if list.json["items"][0]["state"] == "running" {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running, "the first push's deploy started");
    // While the first runs: two more pushes, one to each instance.
    send(&api2, "p-2", '2').await;
    send(&api1, "p-3", '3').await;

    let deploys = settled_deploys(&api1, 3).await;
    let states: Vec<&str> = deploys
        .iter()
        .rev()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    // The second was superseded by the third before its turn came; the third waited.
    assert_eq!(states, ["succeeded", "skipped", "succeeded"], "{deploys:?}");
    let runs = stand_in.runs();
    assert!(!runs.iter().any(|r| r == "parallel"), "{runs:?}");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs[0].ends_with(&"1".repeat(40)) && runs[1].ends_with(&"3".repeat(40)));
    let first_end = deploys[2]["finished_at"].as_str().unwrap();
    let third_start = deploys[0]["started_at"].as_str().unwrap();
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert!(parse(third_start) >= parse(first_end), "{deploys:?}");
}

#[tokio::test]
async fn a_deploy_that_runs_too_long_is_killed_and_shown_as_a_failure() {
    let stand_in = StandIn::new();
    let app =
        TestApp::spawn_with(deploy_app(&stand_in, "30").with("DEPLOY_TIMEOUT_SECS", "1")).await;
    let body = push("team/avatar-bot", "main", 'e');
    let answer = app
        .post(
            "/api/v1/webhooks/github",
            &body,
            &github_headers("slow", &body, GITHUB_SECRET),
        )
        .await;
    let event_id = answer.json["event_id"].as_i64().unwrap();
    let deploys = settled_deploys(&app, 1).await;
    assert_eq!(deploys[0]["state"], "timed_out");
    assert!(stand_in.runs().is_empty());
    let failures = app.get("/api/v1/webhooks/failures?source=github").await;
    assert_eq!(failures.json["items"][0]["id"], event_id);
    assert_eq!(failures.json["items"][0]["outcome"], "failed");
    let health = app.get("/api/v1/webhooks/health").await;
    assert_eq!(health.json["status"], "degraded");
    assert_eq!(health.json["deploy"]["latest"]["state"], "timed_out");
}

#[tokio::test]
async fn without_a_configured_repository_a_push_is_only_stored() {
    let stand_in = StandIn::new();
    let mut options = deploy_app(&stand_in, "0");
    options.env.remove("DEPLOY_REPOSITORY");
    let app = TestApp::spawn_with(options).await;
    let body = push("team/avatar-bot", "main", 'f');
    let answer = app
        .post(
            "/api/v1/webhooks/github",
            &body,
            &github_headers("unconfigured", &body, GITHUB_SECRET),
        )
        .await;
    assert_eq!(answer.result(), "accepted");
    assert!(answer.json["deploy_id"].is_null());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let list = app.get("/api/v1/deploys").await;
    assert_eq!(list.json["configured"], false);
    assert_eq!(list.json["items"], json!([]));
    assert!(stand_in.runs().is_empty());
}

#[tokio::test]
async fn a_push_replayed_with_new_delivery_ids_deploys_its_commit_once() {
    let stand_in = StandIn::new();
    let app = TestApp::spawn_with(deploy_app(&stand_in, "0")).await;
    let body = push("team/avatar-bot", "main", 'a');
    let mut event_ids = Vec::new();
    // A captured push sent again under new delivery ids: stored, never deployed again.
    for delivery in ["orig", "replayed-1", "replayed-2", "replayed-3"] {
        let answer = app
            .post(
                "/api/v1/webhooks/github",
                &body,
                &github_headers(delivery, &body, GITHUB_SECRET),
            )
            .await;
        assert_eq!(answer.result(), "accepted", "{delivery}");
        assert_eq!(
            answer.json["deploy_id"].is_null(),
            delivery != "orig",
            "{delivery}"
        );
        event_ids.push(answer.json["event_id"].as_i64().unwrap());
    }
    let replay = format!("/api/v1/webhooks/events/{}/replay", event_ids[2]);
    let answer = app.post(&replay, "", &[]).await;
    assert_eq!(answer.status, 200);
    assert!(answer.json["deploy_id"].is_null(), "{:?}", answer.json);
    let deploys = settled_deploys(&app, 1).await;
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(stand_in.runs().len(), 1);

    // Deploying the commit again is an operator's explicit call, with the deploy scope.
    let oncall = client_with_token(REPLAY_TOKEN);
    let refused = oncall
        .post(app.url(&format!("{replay}?deploy=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let answer = app.post(&format!("{replay}?deploy=true"), "", &[]).await;
    assert!(answer.json["deploy_id"].is_i64(), "{:?}", answer.json);
    let deploys = settled_deploys(&app, 2).await;
    assert_eq!(deploys[0]["requested_by"], "admin");
    assert_eq!(deploys[0]["state"], "succeeded");
    assert_eq!(stand_in.runs().len(), 2);
    let audited: i64 = app
        .db
        .query_one(
            "SELECT count(*) FROM operator_audit WHERE action = 'deliveries_replay' \
             AND target LIKE '%deploy=true' AND token_name IN ('admin', 'oncall')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 2);
}

#[tokio::test]
async fn a_form_encoded_github_push_deploys_like_a_json_one() {
    // GitHub's UI makes `application/x-www-form-urlencoded` the default: `payload=<json>`,
    // signed as sent.
    let stand_in = StandIn::new();
    let app = TestApp::spawn_with(deploy_app(&stand_in, "0")).await;
    let json = push("team/avatar-bot", "main", 'f');
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &json)
        .finish();
    let mut request = app
        .http
        .post(app.url("/api/v1/webhooks/github"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.clone());
    for (name, value) in github_headers("gh-form-push", &form, GITHUB_SECRET) {
        request = request.header(name, value);
    }
    let answer: Value = request.send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["result"], "accepted", "{answer}");
    assert!(answer["deploy_id"].is_i64(), "{answer}");
    let deploys = settled_deploys(&app, 1).await;
    assert_eq!(deploys[0]["state"], "succeeded");
    assert_eq!(deploys[0]["commit"], "f".repeat(40));
}

/// A push of `commit` built on `before` ('0': a new branch), as GitHub sends it.
fn push_on(commit: char, before: char) -> String {
    json!({
        "ref": "refs/heads/main",
        "before": before.to_string().repeat(40),
        "after": commit.to_string().repeat(40),
        "repository": {"full_name": "team/avatar-bot"},
        "pusher": {"name": "dev"},
    })
    .to_string()
}

async fn send_push(app: &TestApp, delivery: &str, commit: char, before: char) -> String {
    let body = push_on(commit, before);
    let headers = github_headers(delivery, &body, GITHUB_SECRET);
    let answer = app.post("/api/v1/webhooks/github", &body, &headers).await;
    answer.result().to_string()
}

/// Pushes A, then B on A, reach instance 1 while its PostgreSQL is cut (spooled); C on B
/// reaches instance 2 live, before (`live_first`) or after instance 1 drains its spool.
/// Whatever order the rows are committed in, no deploy runs after a newer one: the last run
/// is C's, and with C first neither A nor B runs at all.
async fn spooled_pushes_and_a_live_one(live_first: bool) {
    let stand_in = StandIn::new();
    let proxy = ChaosProxy::start(database_socket()).await;
    let api1 = TestApp::spawn_with(AppOptions {
        database_via: Some(proxy.address),
        ..deploy_app(&stand_in, "0.2").with("SPOOL_AFTER_MS", "300")
    })
    .await;
    let api2 =
        TestApp::spawn_with(deploy_app(&stand_in, "0.2").shared_database(&api1.database.url)).await;
    let runs_of = |commit: char| {
        let sha = commit.to_string().repeat(40);
        stand_in.runs().iter().filter(|r| r.ends_with(&sha)).count()
    };

    proxy.cut();
    assert_eq!(send_push(&api1, "push-a", 'a', '0').await, "spooled");
    assert_eq!(send_push(&api1, "push-b", 'b', 'a').await, "spooled");
    let drained = || async { api1.get("/health").await.json["checks"]["spool"]["waiting"] == 0 };
    if live_first {
        assert_eq!(send_push(&api2, "push-c", 'c', 'b').await, "accepted");
        assert!(eventually(Duration::from_secs(10), || async { runs_of('c') == 1 }).await);
        proxy.restore();
        assert!(eventually(Duration::from_secs(30), drained).await);
    } else {
        proxy.restore();
        assert!(eventually(Duration::from_secs(30), drained).await);
        settled_deploys(&api2, 2).await;
        assert_eq!(send_push(&api2, "push-c", 'c', 'b').await, "accepted");
    }
    let deploys = settled_deploys(&api2, 3).await;
    // id, commit, the commit it built on, when it reached us, state: for a failure's message.
    let rows: Vec<String> = api2
        .db
        .query(
            "SELECT id::text || ' ' || left(commit_sha, 1) || ' on ' || coalesce(left(before_sha, 1), '-') \
             || ' at ' || pushed_at::text || ' ' || state FROM deploys ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let order = ['a', 'b', 'c'];
    let runs: Vec<usize> = stand_in
        .runs()
        .iter()
        .map(|run| {
            order
                .iter()
                .position(|c| run.ends_with(&c.to_string().repeat(40)))
                .unwrap()
        })
        .collect();
    assert!(
        runs.windows(2).all(|w| w[0] < w[1]),
        "a deploy went backwards: {runs:?} {rows:?}"
    );
    assert_eq!(
        runs.last(),
        Some(&2),
        "the newest push is what runs: {runs:?}"
    );
    if live_first {
        assert_eq!(
            runs,
            [2],
            "the spooled pushes are older than what ran: {deploys:?}"
        );
        let c = deploys
            .iter()
            .find(|d| d["commit"] == "c".repeat(40))
            .unwrap();
        for older in &deploys[..] {
            if older["commit"] != c["commit"] {
                assert_eq!(older["state"], "skipped", "{older}");
                let reason = older["reason"].as_str().unwrap_or_default();
                assert!(
                    reason.starts_with("superseded by the newer deploy"),
                    "{older}"
                );
            }
        }
    }
}

#[tokio::test]
async fn spooled_pushes_stored_after_a_newer_live_push_never_deploy_over_it() {
    spooled_pushes_and_a_live_one(true).await;
}

#[tokio::test]
async fn a_live_push_after_the_spool_drained_deploys_last() {
    spooled_pushes_and_a_live_one(false).await;
}
