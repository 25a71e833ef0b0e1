//! A PostgreSQL failover under the real binary: two clusters on this machine, the second a
//! synchronous streaming replica of the first; `DATABASE_URL` names both hosts with
//! `target_session_attrs=read-write`. The primary dies (immediate stop, as a crash) while
//! callbacks arrive and the replica is promoted: the senders get 503 during the switch, the
//! instance finds the new primary by itself, and no acknowledged callback is lost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::helpers::{eventually, hmac_header, insert_avatar, pg_connect, AvatarsSchema, Instance};
use crate::support::free_port;

/// A PostgreSQL cluster of the test's own, run as the `postgres` user when the test is root
/// (PostgreSQL refuses to run as root).
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin(tool: &str) -> PathBuf {
    let version = std::env::var("PG_VERSION").unwrap_or_else(|_| "15".into());
    Path::new("/usr/lib/postgresql")
        .join(version)
        .join("bin")
        .join(tool)
}

fn as_postgres(tool: &str, args: &[&str]) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    let mut command = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
        c
    } else {
        Command::new(pg_bin(tool))
    };
    command.args(args);
    command
}

fn run(mut command: Command) {
    let output = command
        .output()
        .expect("PostgreSQL tools (scripts/dev/deps.sh installs them)");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Cluster {
    fn new_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        run({
            let mut c = Command::new("chown");
            c.args(["-R", "postgres"]).arg(dir.path());
            c
        });
        dir
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// A primary that streams its WAL.
    fn primary() -> Self {
        let cluster = Self {
            dir: Self::new_dir(),
            port: free_port(),
        };
        run(as_postgres(
            "initdb",
            &["-D", &cluster.data(), "-U", "postgres", "--auth=trust"],
        ));
        let conf = "listen_addresses = '127.0.0.1'\nwal_level = replica\nmax_wal_senders = 4\n\
                    synchronous_commit = on\nfsync = off\n";
        std::fs::write(
            Path::new(&cluster.data()).join("postgresql.auto.conf"),
            conf,
        )
        .unwrap();
        std::fs::write(
            Path::new(&cluster.data()).join("pg_hba.conf"),
            "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        cluster.start();
        cluster
    }

    /// A streaming replica of `primary`, from a base backup.
    fn standby_of(primary: &Cluster) -> Self {
        let cluster = Self {
            dir: Self::new_dir(),
            port: free_port(),
        };
        let source = primary.port.to_string();
        run(as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &source,
                "-U",
                "postgres",
                "-D",
                &cluster.data(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        ));
        cluster.start();
        cluster
    }

    fn start(&self) {
        let options = format!("-p {} -k {}", self.port, self.dir.path().display());
        let log = self.dir.path().join("log").display().to_string();
        run(as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        ));
    }

    /// As a crash: no checkpoint, connections cut.
    fn crash(&self) {
        run(as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "stop"],
        ));
    }

    fn promote(&self) {
        run(as_postgres(
            "pg_ctl",
            &["-D", &self.data(), "-w", "promote"],
        ));
    }

    fn url(&self, user: &str, database: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]).output();
    }
}

/// What a callback got, each sent once in the first round.
#[derive(Debug, PartialEq)]
enum Answer {
    Acknowledged,
    Unavailable,
    Other(String),
}

async fn send(http: &reqwest::Client, port: u16, request_id: &str) -> Answer {
    let body = format!(r#"{{"request_id":"{request_id}","status":"completed"}}"#);
    let (name, value) = hmac_header(&body);
    let answer = http
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/avatar/status_update"
        ))
        .header("content-type", "application/json")
        .header(name, value)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(r) if r.status() == 200 => Answer::Acknowledged,
        Ok(r) if r.status() == 503 => {
            let text = r.text().await.unwrap_or_default();
            assert!(
                text.contains("database_unavailable"),
                "a 503 says why: {text}"
            );
            Answer::Unavailable
        }
        Ok(r) => Answer::Other(format!(
            "{} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        )),
        Err(e) => Answer::Other(e.to_string()),
    }
}

/// A primary and its synchronous standby, with the service's role and database.
async fn synchronous_pair() -> (Cluster, Cluster) {
    let primary = Cluster::primary();
    let admin = pg_connect(&primary.url("postgres", "postgres")).await;
    for statement in [
        "CREATE ROLE webhook LOGIN PASSWORD 'webhook'",
        "CREATE DATABASE webhook OWNER webhook",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    let standby = Cluster::standby_of(&primary);
    // Synchronous from now on (before, with no standby yet, every commit would wait for one):
    // a commit is acknowledged only once the standby has it.
    admin
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .await
        .unwrap();
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let replicating = eventually(Duration::from_secs(20), || {
        let admin = &admin;
        async move {
            admin
                .query_opt(
                    "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'",
                    &[],
                )
                .await
                .is_ok_and(|row| row.is_some())
        }
    })
    .await;
    assert!(replicating, "the standby never became synchronous");

    (primary, standby)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_takes_over_and_nothing_acknowledged_is_lost() {
    const CALLBACKS: usize = 240;
    let (primary, standby) = synchronous_pair().await;
    let both = format!(
        "postgresql://webhook:webhook@127.0.0.1:{},127.0.0.1:{}/webhook\
         ?target_session_attrs=read-write&connect_timeout=2",
        primary.port, standby.port
    );
    // The bot's tables first, as in production (TEST_AVATARS_SCHEMA).
    AvatarsSchema::from_env()
        .apply(&primary.url("webhook", "webhook"))
        .await;
    let mut instance = Instance::start_with(&both, &[("DB_TIMEOUT_SECS", "3".into())]);
    instance.wait_ready().await;
    let db = pg_connect(&primary.url("webhook", "webhook")).await;
    let ids: Vec<String> = (0..CALLBACKS).map(|n| format!("failover-{n}")).collect();
    for id in &ids {
        insert_avatar(&db, id, "TRAINING", "PORTRAIT").await;
    }

    // One round at 40/s; the primary crashes a third of the way in, the replica is promoted
    // two seconds later.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut answers = Vec::new();
    let mut promoted_at = None;
    let started = Instant::now();
    for (n, id) in ids.iter().enumerate() {
        if n == CALLBACKS / 3 {
            primary.crash();
        }
        if n == CALLBACKS / 3 + 80 {
            standby.promote();
            promoted_at = Some(n);
        }
        answers.push(send(&http, instance.port, id).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let promoted_at = promoted_at.unwrap();
    let acknowledged: Vec<&String> = ids
        .iter()
        .zip(&answers)
        .filter(|(_, a)| **a == Answer::Acknowledged)
        .map(|(id, _)| id)
        .collect();
    let unavailable = answers
        .iter()
        .filter(|a| **a == Answer::Unavailable)
        .count();
    let other: Vec<&Answer> = answers
        .iter()
        .filter(|a| matches!(a, Answer::Other(_)))
        .collect();
    eprintln!(
        "failover: {} acknowledged, {unavailable} answered 503, {} other, in {:.1} s",
        acknowledged.len(),
        other.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        other.is_empty(),
        "only 200 or 503 during a failover: {other:?}"
    );
    assert!(unavailable > 0, "the switch was not seen");
    assert!(
        answers[..CALLBACKS / 3]
            .iter()
            .all(|a| *a == Answer::Acknowledged),
        "before the crash every callback is acknowledged"
    );
    assert!(
        answers[promoted_at + 40..]
            .iter()
            .all(|a| *a == Answer::Acknowledged),
        "a second after the promotion the new primary takes every callback, without a restart"
    );

    assert_all_applied_once(
        &standby,
        &ids,
        &acknowledged,
        &answers,
        &http,
        instance.port,
    )
    .await;
    let _ = instance.child.kill();
}

/// Every acknowledged callback is on the new primary; once FAL has retried what got a 503,
/// every callback is applied exactly once.
async fn assert_all_applied_once(
    standby: &Cluster,
    ids: &[String],
    acknowledged: &[&String],
    answers: &[Answer],
    http: &reqwest::Client,
    port: u16,
) {
    // Everything acknowledged is on the new primary, applied once.
    let db = pg_connect(&standby.url("webhook", "webhook")).await;
    let stored: Vec<String> = db
        .query(
            "SELECT fal_request_id FROM webhook_events WHERE outcome = 'applied' AND fal_request_id LIKE 'failover-%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    for id in acknowledged {
        assert!(stored.contains(id), "{id} was acknowledged and is lost");
    }

    // FAL retries what got a 503: then every callback is applied exactly once.
    for (id, answer) in ids.iter().zip(answers) {
        if *answer != Answer::Acknowledged {
            assert_eq!(
                send(http, port, id).await,
                Answer::Acknowledged,
                "{id} retried"
            );
        }
    }
    let applied: i64 = db
        .query_one(
            "SELECT count(DISTINCT fal_request_id) FILTER (WHERE outcome = 'applied'), count(*) FILTER (WHERE outcome = 'applied') \
             FROM webhook_events WHERE fal_request_id LIKE 'failover-%'",
            &[],
        )
        .await
        .map(|row| {
            assert_eq!(row.get::<_, i64>(0), row.get::<_, i64>(1), "applied twice");
            row.get(0)
        })
        .unwrap();
    assert_eq!(applied, ids.len() as i64);
    let completed: i64 = db
        .query_one(
            "SELECT count(*) FROM avatars WHERE fal_request_id LIKE 'failover-%' AND status::text = 'COMPLETED'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(completed, ids.len() as i64);
}
