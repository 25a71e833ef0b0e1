//! `webhook-api status` prints the figures of a seeded database, as an operator reads them.

use std::process::Command;

use crate::helpers::{fixture, TestApp};

#[tokio::test]
async fn status_prints_the_figures_of_a_seeded_database() {
    let app = TestApp::spawn().await;
    // Webhooks in the last hour: one applied (with a file job), one redelivered, one unmatched.
    let completion = fixture("ok_flux_lora_fast_training.json");
    app.insert_training_avatar("a6823810-a615-4ac8-aca3-5d2546aa81b8")
        .await;
    assert_eq!(app.post_fal(&completion).await.result(), "applied");
    assert_eq!(app.post_fal(&completion).await.result(), "duplicate");
    assert_eq!(
        app.post_fal(&fixture("retried_gateway_id.json"))
            .await
            .result(),
        "unmatched"
    );
    // Trainings: one fresh, two unchanged for 45 minutes, one for 3 hours.
    for (id, age) in [
        ("t-fresh", "1 minute"),
        ("t-45a", "45 minutes"),
        ("t-45b", "45 minutes"),
        ("t-3h", "3 hours"),
    ] {
        let avatar = app.insert_training_avatar(id).await;
        app.db
            .execute(
                &format!("UPDATE avatars SET updated_at = now() - interval '{age}' WHERE id = $1"),
                &[&avatar],
            )
            .await
            .unwrap();
    }
    app.db
        .batch_execute(
            "UPDATE file_jobs SET state = 'dead'; \
             INSERT INTO reconciler_lease (name, owner, expires_at, last_run_at, \
               last_run_checked, last_run_applied, last_run_errors) \
             VALUES ('fal', 'api-2/abcd1234', now() + interval '1 minute', \
               now() - interval '20 seconds', 3, 1, 2)",
        )
        .await
        .unwrap();

    let config = &app.config;
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-api"))
        .arg("status")
        .env_clear()
        .env("DATABASE_URL", &app.database.url)
        .env("REDIS_URL", config.redis.url.expose())
        .env("REDIS_KEY_PREFIX", &app.prefix)
        .env("MINIO_ENDPOINT", "127.0.0.1:9000")
        .env("MINIO_ACCESS_KEY", "unused")
        .env("MINIO_SECRET_KEY", "unused")
        .env("MINIO_BUCKET_NAME", "unused")
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "fal          applied          1 events       2 deliveries",
        "fal          unmatched        1 events       1 deliveries",
        "Avatars in training: 4 (unchanged for over 30m 00s: 3; oldest unchanged for 3h 00m)",
        "unchanged under 30m           1",
        "unchanged 30m to 2h           2",
        "unchanged over 2h             1",
        "File jobs: pending 0 (oldest waiting 0s), running 0, done 0, failed 0, dead 1",
        "checked 3, applied 1, errors 2; held by api-2/abcd1234",
        "s ago): checked 3",
        &format!("Redis: ok; {}avatar:events holds 1 entries", app.prefix),
        "Retention: no run finished yet (`webhook-api retention --dry-run` shows what is due)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
