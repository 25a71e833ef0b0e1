//! The commands an operator runs against a deployment: `check-config` before a roll-out,
//! `migrate` and `jobs` with only the database configured, `send-test` through the real path.

use std::process::{Command, Output};

use crate::helpers::{admin_database_url, s3_env, Instance, TestDatabase, HMAC_SECRET};

fn webhook_api(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webhook-api"))
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("webhook-api runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_names_the_one_problem_or_summarises_without_secrets() {
    let mut env: Vec<(&str, String)> = vec![
        (
            "DATABASE_URL",
            "postgresql://bot:hunter2@db:5432/aisha".into(),
        ),
        ("REDIS_URL", "redis://127.0.0.1:6379".into()),
        ("FAL_WEBHOOK_SECRET", "topsecret".into()),
        ("LOG_LEVEL", "WARNING".into()),
    ];
    env.extend(s3_env("avatars"));
    let good = webhook_api(&["check-config"], &env);
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));
    let summary = text(&good.stdout);
    assert!(summary.starts_with("configuration ok"), "{summary}");
    assert!(summary.contains("aisha@db"), "{summary}");
    assert!(!summary.contains("hunter2") && !summary.contains("topsecret"));
    assert!(
        summary.contains("telegram notifications off (no TELEGRAM_TOKEN)"),
        "{summary}"
    );
    let mut telegram = env.clone();
    telegram.push(("TELEGRAM_TOKEN", "123456:secret-bot-token".into()));
    let on = webhook_api(&["check-config"], &telegram);
    let summary = text(&on.stdout);
    assert!(
        summary.contains("telegram notifications on (ready and failed)"),
        "{summary}"
    );
    assert!(!summary.contains("secret-bot-token"), "{summary}");

    env.push(("LOG_LEVEL", "verbose".into()));
    let bad = webhook_api(&["check-config"], &env);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = text(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("LOG_LEVEL: unknown level \"verbose\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn database_commands_need_only_the_database_and_say_why_it_refused() {
    let database = TestDatabase::create().await;
    let only_database = [("DATABASE_URL", database.url.clone())];
    let migrated = webhook_api(&["migrate"], &only_database);
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    let listed = webhook_api(&["jobs", "list", "--state", "dead"], &only_database);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let bogus = webhook_api(&["jobs", "list", "--state", "bogus"], &only_database);
    assert_eq!(bogus.status.code(), Some(2));
    assert!(
        text(&bogus.stderr).contains("possible values"),
        "{}",
        text(&bogus.stderr)
    );

    // A wrong password is the server's answer, said at once (not after the start-up wait).
    let admin = admin_database_url();
    let (user_part, host_part) = admin.split_once('@').unwrap();
    let user = user_part
        .rsplit('/')
        .next()
        .unwrap()
        .split(':')
        .next()
        .unwrap();
    let wrong = format!("postgresql://{user}:not-the-password@{host_part}");
    let started = std::time::Instant::now();
    let refused = webhook_api(
        &["migrate"],
        &[("DATABASE_URL", wrong), ("LOG_FORMAT", "text".into())],
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = text(&refused.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn send_test_signs_a_fal_callback_that_the_instance_stores() {
    let database = TestDatabase::create().await;
    let mut instance = Instance::start(&database.url);
    instance.wait_ready().await;
    let url = format!(
        "http://127.0.0.1:{}/api/v1/avatar/status_update",
        instance.port
    );
    let sent = webhook_api(
        &["send-test", "--url", &url],
        &[("FAL_WEBHOOK_SECRET", format!("retired,{HMAC_SECRET}"))],
    );
    let stdout = text(&sent.stdout);
    assert!(sent.status.success(), "{stdout}{}", text(&sent.stderr));
    assert!(
        stdout.contains("200 {") && stdout.contains("\"unmatched\""),
        "{stdout}"
    );

    let forged = webhook_api(
        &["send-test", "--url", &url],
        &[("FAL_WEBHOOK_SECRET", "not-the-secret".into())],
    );
    assert_eq!(forged.status.code(), Some(1));
    assert!(
        text(&forged.stderr).contains("answered 401"),
        "{}",
        text(&forged.stderr)
    );
}
