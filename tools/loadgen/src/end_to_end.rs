//! `end-to-end`: how long a bot's user waits for a finished training to show. Completions at a
//! steady rate, each for an avatar of its own, and for each, counted from the moment it was
//! sent: its answer, the avatar's row reading `COMPLETED` (polled, as the bot reads its own
//! table), and its entry on the bot's stream (read with `XREAD BLOCK`, as the bot's consumer
//! does). Prints p50/p99/max of each as one JSON object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use http::{Method, Request};
use http_body_util::Full;
use serde::Serialize;
use tokio::time::Instant;

use crate::callbacks::{Generator, Kind};
use crate::client::Target;

pub struct Plan {
    pub label: String,
    /// Avatars `{prefix}1` ..= `{prefix}{count}`, in `TRAINING` before the run.
    pub count: u64,
    pub rate: f64,
    /// The bot's database (the avatars are read there) and Redis, with the stream's key.
    pub database_url: String,
    pub redis_url: String,
    pub stream: String,
    /// How often the pending avatars' rows are read.
    pub poll: Duration,
    /// How long to wait for the last row and stream entry once all were sent.
    pub timeout: Duration,
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub rate: f64,
    pub sent: u64,
    /// Answered 200.
    pub acknowledged: u64,
    pub answer_ms: Option<Percentiles>,
    pub row_completed_ms: Option<Percentiles>,
    pub stream_entry_ms: Option<Percentiles>,
    /// Sent, but the row never read `COMPLETED` / no entry came within the timeout.
    pub rows_missing: u64,
    pub entries_missing: u64,
    /// The rows' resolution: a row is timed when the first read that found it started.
    pub poll_ms: f64,
}

/// When each completion was sent and when each of its three signs was first seen.
#[derive(Default)]
struct Times {
    sent: HashMap<String, Instant>,
    answered: HashMap<String, Instant>,
    row: HashMap<String, Instant>,
    entry: HashMap<String, Instant>,
}

pub async fn run(
    target: Arc<Target>,
    generator: Arc<Generator>,
    plan: Plan,
) -> anyhow::Result<Report> {
    use anyhow::Context;
    let (db, connection) = tokio_postgres::connect(&plan.database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to the database")?;
    tokio::spawn(connection);
    // The stream names avatars by id; the completions name them by FAL's request id.
    let pattern = format!(
        "{}%",
        generator.prefix.replace('%', "\\%").replace('_', "\\_")
    );
    let request_id_of: HashMap<String, String> = db
        .query(
            "SELECT id::text, fal_request_id FROM avatars WHERE fal_request_id LIKE $1",
            &[&pattern],
        )
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    anyhow::ensure!(
        request_id_of.len() as u64 >= plan.count,
        "{} avatars {}* found, {} needed",
        request_id_of.len(),
        generator.prefix,
        plan.count
    );

    let redis = redis::Client::open(plan.redis_url.as_str())?;
    let mut stream_reader = redis.get_multiplexed_async_connection().await?;
    // Entries from now on only: the last id before the first completion goes out.
    let newest: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(&plan.stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut stream_reader)
        .await?;
    let after = newest
        .ids
        .first()
        .map_or("0-0".to_string(), |e| e.id.clone());

    let times = Arc::new(Mutex::new(Times::default()));
    let done = Arc::new(AtomicBool::new(false));
    let watch_stream = tokio::spawn(read_stream(
        stream_reader,
        plan.stream.clone(),
        after,
        request_id_of,
        times.clone(),
        done.clone(),
    ));
    let watch_rows = tokio::spawn(poll_rows(db, plan.poll, times.clone(), done.clone()));

    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    let mut sends = tokio::task::JoinSet::new();
    let mut rng = rand::rng();
    for _ in 0..plan.count {
        ticks.tick().await;
        let prepared = generator.next(&mut rng);
        debug_assert_eq!(prepared.kind, Kind::New);
        let request_id = prepared.request_id;
        times
            .lock()
            .expect("not poisoned")
            .sent
            .insert(request_id.clone(), Instant::now());
        let (target, times) = (target.clone(), times.clone());
        sends.spawn(async move {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(target.request_uri.clone())
                .header(http::header::HOST, target.host_header.clone());
            for (name, value) in prepared.headers {
                request = request.header(name, value);
            }
            let request = request
                .body(Full::new(prepared.body))
                .expect("a valid request");
            let answer = async { target.connect().await?.send(request).await }.await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                times
                    .lock()
                    .expect("not poisoned")
                    .answered
                    .insert(request_id, Instant::now());
            }
        });
    }
    while sends.join_next().await.is_some() {}
    let deadline = Instant::now() + plan.timeout;
    loop {
        let all_seen = {
            let t = times.lock().expect("not poisoned");
            t.row.len() == t.sent.len() && t.entry.len() == t.sent.len()
        };
        if all_seen || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, Ordering::Relaxed);
    watch_rows.await??;
    watch_stream.await??;

    let times = times.lock().expect("not poisoned");
    let since_sent = |seen: &HashMap<String, Instant>| {
        percentiles(
            seen.iter()
                .filter_map(|(id, at)| Some(at.duration_since(*times.sent.get(id)?))),
        )
    };
    Ok(Report {
        label: plan.label,
        rate: plan.rate,
        sent: times.sent.len() as u64,
        acknowledged: times.answered.len() as u64,
        answer_ms: since_sent(&times.answered),
        row_completed_ms: since_sent(&times.row),
        stream_entry_ms: since_sent(&times.entry),
        rows_missing: (times.sent.len() - times.row.len()) as u64,
        entries_missing: (times.sent.len() - times.entry.len()) as u64,
        poll_ms: plan.poll.as_secs_f64() * 1000.0,
    })
}

/// Reads the pending avatars' rows every `poll`; a row reading `COMPLETED` is timed at the
/// start of the read that found it.
async fn poll_rows(
    db: tokio_postgres::Client,
    poll: Duration,
    times: Arc<Mutex<Times>>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let statement = db
        .prepare(
            "SELECT fal_request_id FROM avatars \
             WHERE fal_request_id = ANY($1) AND status::text = 'COMPLETED'",
        )
        .await?;
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !done.load(Ordering::Relaxed) {
        ticks.tick().await;
        let pending: Vec<String> = {
            let t = times.lock().expect("not poisoned");
            t.sent
                .keys()
                .filter(|id| !t.row.contains_key(*id))
                .cloned()
                .collect()
        };
        if pending.is_empty() {
            continue;
        }
        let started = Instant::now();
        let rows = db.query(&statement, &[&pending]).await?;
        let mut t = times.lock().expect("not poisoned");
        for row in rows {
            t.row.insert(row.get(0), started);
        }
    }
    Ok(())
}

/// Times each `COMPLETED` entry of the run's avatars as it arrives on the stream.
async fn read_stream(
    mut redis: redis::aio::MultiplexedConnection,
    stream: String,
    mut after: String,
    request_id_of: HashMap<String, String>,
    times: Arc<Mutex<Times>>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let options = redis::streams::StreamReadOptions::default()
        .block(200)
        .count(1000);
    while !done.load(Ordering::Relaxed) {
        let reply: redis::streams::StreamReadReply =
            redis::AsyncCommands::xread_options(&mut redis, &[&stream], &[&after], &options)
                .await?;
        let arrived = Instant::now();
        for key in reply.keys {
            for entry in key.ids {
                let avatar: Option<String> = entry.get("avatar_id");
                let status: Option<String> = entry.get("status");
                let request_id = avatar.and_then(|a| request_id_of.get(&a));
                if let (Some(request_id), Some("COMPLETED")) = (request_id, status.as_deref()) {
                    times
                        .lock()
                        .expect("not poisoned")
                        .entry
                        .entry(request_id.clone())
                        .or_insert(arrived);
                }
                after = entry.id;
            }
        }
    }
    Ok(())
}

fn percentiles(durations: impl Iterator<Item = Duration>) -> Option<Percentiles> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("valid bounds");
    for d in durations {
        histogram.saturating_record(d.as_micros() as u64);
    }
    if histogram.is_empty() {
        return None;
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Some(Percentiles {
        p50: ms(0.5),
        p90: ms(0.9),
        p99: ms(0.99),
        max: histogram.max() as f64 / 1000.0,
    })
}
