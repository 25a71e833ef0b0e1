use std::sync::Arc;

use serde_json::json;

use super::{Spool, SpoolError, SpooledDelivery, Usage};
use crate::config::SpoolConfig;
use crate::metrics::Metrics;
use crate::store::deliveries::{EventOutcome, QueuedDeploy};

fn delivery(id: &str) -> SpooledDelivery {
    SpooledDelivery {
        source: "github".into(),
        scheme: "github".into(),
        event_type: "push".into(),
        delivery_id: Some(id.into()),
        delivery_key: format!("github:{id}"),
        headers: json!({ "x-github-event": "push" }),
        body: format!(r#"{{"after":"{id}"}}"#),
        outcome: EventOutcome::Accepted,
        reason: Some("deploy queued".into()),
        http_request_id: format!("req-{id}"),
        instance_id: "api-1".into(),
        processing_ms: 1.5,
        deploy: Some(QueuedDeploy {
            repository: "owner/repo".into(),
            branch: "main".into(),
            commit_sha: "a".repeat(40),
            before_sha: None,
            requested_by: None,
        }),
        received_at: chrono::Utc::now(),
    }
}

async fn open(dir: &std::path::Path, max_bytes: u64) -> Arc<Spool> {
    let config = SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        after: std::time::Duration::from_secs(2),
    };
    Spool::open(&config, Metrics::new().spool.clone())
        .await
        .unwrap()
}

fn ids(entries: &[super::Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|(_, d)| d.as_ref().unwrap().delivery_id.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn deliveries_come_back_in_order_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20).await;
    let sent = ["d1", "d2", "d3"].map(delivery);
    for delivery in &sent {
        spool.append(delivery).await.unwrap();
    }
    let usage = spool.usage();
    assert_eq!(usage.waiting, 3);
    assert!(usage.bytes > 0);
    drop(spool);

    let spool = open(dir.path(), 1 << 20).await;
    assert_eq!(spool.usage(), usage, "the same usage after reopening");
    let entries = spool.oldest(10).await.unwrap();
    assert_eq!(ids(&entries), ["d1", "d2", "d3"]);
    let first = entries[0].1.as_ref().unwrap();
    assert_eq!(first.body, sent[0].body);
    assert_eq!(first.headers, sent[0].headers);
    assert_eq!(first.outcome, EventOutcome::Accepted);
    assert_eq!(first.deploy.as_ref().unwrap().commit_sha, "a".repeat(40));
    assert_eq!(first.received_at, sent[0].received_at);

    spool.remove(entries[0].0, "github").await.unwrap();
    assert_eq!(ids(&spool.oldest(1).await.unwrap()), ["d2"]);
    // Removing twice (a retried drain step) changes nothing.
    spool.remove(entries[0].0, "github").await.unwrap();
    assert_eq!(spool.usage().waiting, 2);
}

#[tokio::test]
async fn a_full_spool_refuses_and_takes_again_once_drained() {
    let dir = tempfile::tempdir().unwrap();
    let size = serde_json::to_vec(&delivery("d1")).unwrap().len() as u64;
    let spool = open(dir.path(), size * 2).await;
    spool.append(&delivery("d1")).await.unwrap();
    spool.append(&delivery("d2")).await.unwrap();
    let refused = spool.append(&delivery("d3")).await.unwrap_err();
    assert!(matches!(refused, SpoolError::Full { .. }), "{refused}");
    assert!(refused.to_string().contains("SPOOL_MAX_BYTES"), "{refused}");
    assert_eq!(spool.usage().waiting, 2);

    let oldest = spool.oldest(1).await.unwrap();
    spool.remove(oldest[0].0, "github").await.unwrap();
    spool.append(&delivery("d3")).await.unwrap();
    assert_eq!(ids(&spool.oldest(10).await.unwrap()), ["d2", "d3"]);
}

#[tokio::test]
async fn held_deliveries_leave_the_queue_but_stay_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20).await;
    spool.append(&delivery("d1")).await.unwrap();
    spool.append(&delivery("d2")).await.unwrap();
    let first = spool.oldest(1).await.unwrap()[0].0;
    spool.hold(first).await.unwrap();
    assert_eq!(
        spool.usage(),
        Usage {
            waiting: 1,
            bytes: spool.usage().bytes,
            held: 1
        }
    );
    assert_eq!(ids(&spool.oldest(10).await.unwrap()), ["d2"]);
    drop(spool);
    assert_eq!(open(dir.path(), 1 << 20).await.usage().held, 1);
}

/// Replicas sharing a node's volume (and an old and a new task during a start-first update):
/// each instance gets a file of its own, and what a stopped one left is found and handed over.
#[tokio::test]
async fn instances_sharing_a_directory_take_their_own_files_and_find_what_others_left() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), 1 << 20).await;
    let second = open(dir.path(), 1 << 20).await;
    assert!(first.path().ends_with("spool.redb"));
    assert!(
        second.path().ends_with("spool-2.redb"),
        "{}",
        second.path().display()
    );
    second.append(&delivery("left-1")).await.unwrap();
    second.append(&delivery("left-2")).await.unwrap();
    let third = open(dir.path(), 1 << 20).await;
    third.append(&delivery("empty-soon")).await.unwrap();
    let third_key = third.oldest(1).await.unwrap()[0].0;
    third.remove(third_key, "github").await.unwrap();

    // While their instances run, nobody else touches their files.
    assert!(first.orphans().await.is_empty());

    // The second stops with two deliveries waiting, the third with none.
    drop(second);
    drop(third);
    let orphans = first.orphans().await;
    assert_eq!(orphans.len(), 1, "only the file with deliveries waiting");
    assert!(orphans[0].path().ends_with("spool-2.redb"));
    assert_eq!(
        ids(&orphans[0].oldest(10).await.unwrap()),
        ["left-1", "left-2"]
    );
    assert!(
        !dir.path().join("spool-3.redb").exists(),
        "an empty file left behind is deleted"
    );
    assert_eq!(
        first.usage(),
        Usage::default(),
        "the finder's own count is its own"
    );

    // Held by its finder while drained: a new instance takes another file.
    let fourth = open(dir.path(), 1 << 20).await;
    assert!(
        fourth.path().ends_with("spool-3.redb"),
        "{}",
        fourth.path().display()
    );
    for (key, _) in orphans[0].oldest(10).await.unwrap() {
        orphans[0].remove(key, "github").await.unwrap();
    }
    drop(orphans);
    assert!(first.orphans().await.is_empty());
    assert!(!dir.path().join("spool-2.redb").exists());
}

#[tokio::test]
async fn a_spool_directory_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let config = SpoolConfig {
        dir: blocker.join("spool"),
        max_bytes: 1 << 20,
        after: std::time::Duration::from_secs(2),
    };
    let Err(error) = Spool::open(&config, Metrics::new().spool.clone()).await else {
        panic!("a spool opened under a file");
    };
    assert!(
        error.to_string().contains("file/spool"),
        "names the directory: {error}"
    );
}

fn file_holds(path: &std::path::Path, marker: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(marker.len())
        .any(|window| window == marker.as_bytes())
}

#[tokio::test]
async fn a_drained_file_holds_no_body_but_the_held_ones() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), 1 << 20).await;
    let mut sent: Vec<SpooledDelivery> = (0..40).map(|n| delivery(&format!("d{n}"))).collect();
    for (n, delivery) in sent.iter_mut().enumerate() {
        delivery.body = format!(r#"{{"after":"drained-body-{n:02}"}}"#);
    }
    sent[7].body = r#"{"after":"held-body"}"#.into();
    for delivery in &sent {
        spool.append(delivery).await.unwrap();
    }
    assert!(file_holds(spool.path(), "drained-body-00"));
    for (key, entry) in spool.oldest(100).await.unwrap() {
        if entry.unwrap().body.contains("held-body") {
            spool.hold(key).await.unwrap();
        } else {
            spool.remove(key, "github").await.unwrap();
        }
    }
    assert_eq!(
        spool.usage(),
        Usage {
            waiting: 0,
            bytes: 0,
            held: 1
        }
    );
    for n in 0..40 {
        let marker = format!("drained-body-{n:02}");
        assert!(
            !file_holds(spool.path(), &marker),
            "{marker} is still in the file"
        );
    }
    assert!(
        file_holds(spool.path(), "held-body"),
        "held, for an operator"
    );

    // The fresh file is the spool: it takes new deliveries, and keeps them across a reopen.
    spool.append(&delivery("after")).await.unwrap();
    drop(spool);
    let spool = open(dir.path(), 1 << 20).await;
    assert_eq!(spool.usage().waiting, 1);
    assert_eq!(spool.usage().held, 1);
    assert_eq!(ids(&spool.oldest(10).await.unwrap()), ["after"]);
}
