//! Every bounded setting the service reads (`Config::with_settings` lists them), fed to the
//! real binary at its extremes: `serve` and `check-config` either refuse it with one line
//! naming the variable, or the instance starts and applies a signed callback.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use uuid::Uuid;
use webhook_api::config::{Bounds, Config, Setting};

use crate::helpers::*;

/// Every part that reads settings turned on; its outside peers are closed loopback ports.
fn every_feature() -> Vec<(&'static str, String)> {
    let closed = "http://127.0.0.1:9";
    [
        ("ENVIRONMENT", "staging"),
        ("WEBHOOK_SOURCES", "github:github"),
        ("WEBHOOK_SOURCE_GITHUB_SECRETS", "gh-secret"),
        ("WEBHOOK_SOURCE_GITHUB_REDELIVER_HOOK", "orgs/team/hooks/1"),
        ("WEBHOOK_SOURCE_GITHUB_REDELIVER_TOKEN", "ghp-token"),
        ("GITHUB_API_URL", closed),
        ("DEPLOY_REPOSITORY", "team/avatar-bot"),
        ("DEPLOY_COMMAND", "/bin/true"),
        ("FAL_API_KEY", "fal-key"),
        ("FAL_QUEUE_URL", closed),
        ("TELEGRAM_TOKEN", "1:telegram"),
        ("TELEGRAM_API_URL", closed),
    ]
    .map(|(k, v)| (k, v.to_string()))
    .to_vec()
}

/// What the binary gets when nothing is mistyped (a database it never reaches: a refused
/// setting stops it before any connection).
fn base_env() -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        (
            "DATABASE_URL",
            "postgresql://webhook:unused@127.0.0.1:9/none",
        ),
        ("REDIS_URL", "redis://127.0.0.1:9/0"),
        ("FAL_WEBHOOK_SECRET", HMAC_SECRET),
        ("HOST", "127.0.0.1"),
        ("LOG_LEVEL", "warn"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(
        s3_env("unused")
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    env.extend(every_feature().into_iter().map(|(k, v)| (k.to_string(), v)));
    env
}

fn settings() -> Vec<Setting> {
    let env = base_env();
    let (config, settings) = Config::with_settings(|name| env.get(name).cloned());
    config.expect("the base environment is complete");
    settings
}

/// The values an operator might mistype, beside the range's own ends.
fn extremes(min: &str, max: &str) -> Vec<String> {
    let mut values: Vec<String> = ["0", "1", "-1", "18446744073709551615", "garbage", ""]
        .map(String::from)
        .to_vec();
    values.extend([min.to_string(), max.to_string()]);
    values
}

/// Runs `webhook-api <command>` with exactly this environment; its exit code and stderr.
fn run(command: &str, env: &BTreeMap<String, String>) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-api"))
        .arg(command)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("webhook-api runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_setting_that_cannot_work_stops_serve_and_check_config_with_one_line() {
    let base = base_env();
    let mut refused = 0;
    for setting in settings() {
        let values = match &setting.bounds {
            Bounds::Number { min, max } => extremes(min, max),
            Bounds::Url { .. } => ["not a url", "ftp://example.com/", "https://"]
                .map(String::from)
                .to_vec(),
        };
        for value in values {
            let mut env = base.clone();
            env.insert(setting.name.to_string(), value.clone());
            // The library decides; the binary must act on the same decision.
            let verdict = Config::with_settings(|name| env.get(name).cloned()).0;
            let Err(problem) = verdict else { continue };
            refused += 1;
            for command in ["serve", "check-config"] {
                let (code, stderr) = run(command, &env);
                let what = format!("{command} with {}={value:?}", setting.name);
                assert_eq!(code, Some(2), "{what}: {stderr}");
                assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
                assert!(stderr.contains(setting.name), "{what}: {stderr}");
                assert_eq!(stderr.trim(), format!("webhook-api: {problem}"), "{what}");
            }
        }
    }
    assert!(refused > 200, "only {refused} refusals tried");
}

/// Each bounded number at one end of its range (all at once), but PORT, which the test picks.
fn at_ends(pick_max: bool) -> Vec<(&'static str, String)> {
    let mut env = every_feature();
    for setting in settings() {
        if let Bounds::Number { min, max } = setting.bounds {
            if setting.name != "PORT" {
                env.push((setting.name, if pick_max { max } else { min }));
            }
        }
    }
    env
}

async fn serves_a_callback_with(env: Vec<(&'static str, String)>) {
    let database = TestDatabase::create().await;
    let mut instance = Instance::start_logged(&database.url, &env);
    instance.wait_ready().await;
    let db = pg_connect(&database.url).await;
    let request_id = format!("settings-{}", Uuid::new_v4());
    let avatar = insert_avatar(&db, &request_id, "TRAINING", "PORTRAIT").await;
    let body = fixture("ok_flux_lora_fast_training.json")
        .replace("a6823810-a615-4ac8-aca3-5d2546aa81b8", &request_id);
    assert_eq!(instance.post_hmac(&body).await, 200);
    let status: String = db
        .query_one("SELECT status::text FROM avatars WHERE id = $1", &[&avatar])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status.to_ascii_uppercase(), "COMPLETED");
    instance.signal("KILL");
    let _ = instance.wait_exit(std::time::Duration::from_secs(10));
    let logs = instance.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[tokio::test]
async fn every_setting_at_the_low_end_of_its_range_serves_a_callback() {
    serves_a_callback_with(at_ends(false)).await;
}

#[tokio::test]
async fn every_setting_at_the_high_end_of_its_range_serves_a_callback() {
    serves_a_callback_with(at_ends(true)).await;
}
