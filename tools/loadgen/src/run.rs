//! The load itself: `connections` workers, each with its own kept-alive connection (HTTP/1.1)
//! or sharing a few (HTTP/2), sending as fast as answers come back (saturation) or on a fixed
//! schedule. On a schedule a request's latency counts from the moment it was due, not from
//! when a busy worker got round to it, so a slow server cannot hide its queue (no coordinated
//! omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use http::Request;
use http_body_util::Full;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::time::Instant;

use crate::callbacks::{Generator, Kind};
use crate::client::{Protocol, Sender, Target};

pub struct Plan {
    pub connections: usize,
    /// HTTP/2 only: connections the workers share.
    pub h2_connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second on a fixed schedule; `None` = as fast as the server answers.
    pub rate: Option<f64>,
    pub timeout: Duration,
}

#[derive(Default)]
struct Tally {
    latency_us: Option<Histogram<u64>>,
    answers: BTreeMap<(Kind, u16), u64>,
    errors: BTreeMap<String, u64>,
    /// Per second of the measured time: answers and the slowest of them (µs).
    seconds: Vec<(u64, u64)>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency_us: Some(Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")),
            ..Default::default()
        }
    }

    fn merge(&mut self, other: Tally) {
        if let (Some(mine), Some(theirs)) = (&mut self.latency_us, &other.latency_us) {
            mine.add(theirs).expect("same bounds");
        }
        for (key, count) in other.answers {
            *self.answers.entry(key).or_default() += count;
        }
        for (key, count) in other.errors {
            *self.errors.entry(key).or_default() += count;
        }
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize(other.seconds.len(), (0, 0));
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(other.seconds) {
            mine.0 += theirs.0;
            mine.1 = mine.1.max(theirs.1);
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub url: String,
    pub protocol: &'static str,
    pub connections: usize,
    /// `null` at saturation.
    pub target_rate: Option<f64>,
    pub seconds: f64,
    pub requests: u64,
    pub throughput: f64,
    pub latency_ms: Latency,
    /// Answers by kind and status, e.g. `new 200`.
    pub answers: BTreeMap<String, u64>,
    /// Answers whose status is not the one the kind expects, and transport errors.
    pub unexpected: u64,
    pub errors: BTreeMap<String, u64>,
    pub completions_sent: u64,
    /// Each second of the measured time: `[answers, slowest ms]` (stalls show here).
    pub timeline: Vec<(u64, f64)>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

pub async fn run(
    label: String,
    target: Arc<Target>,
    generator: Arc<Generator>,
    plan: Plan,
) -> anyhow::Result<Report> {
    let shared = match target.protocol {
        Protocol::Http1 => Vec::new(),
        Protocol::Http2 => {
            let mut senders = Vec::new();
            for _ in 0..plan.h2_connections.max(1) {
                senders.push(target.connect().await?);
            }
            senders
        }
    };
    // Fail early and clearly when the target does not answer at all.
    let mut first = match shared.is_empty() {
        true => Some(target.connect().await?),
        false => None,
    };

    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.duration;
    let schedule = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for index in 0..plan.connections {
        let sender = first
            .take()
            .or_else(|| shared.get(index % shared.len().max(1))?.share());
        let worker = Worker {
            target: target.clone(),
            generator: generator.clone(),
            schedule: schedule.clone(),
            rate: plan.rate,
            timeout: plan.timeout,
            start,
            measure_from,
            end,
        };
        workers.push(tokio::spawn(worker.run(sender)));
    }
    let mut tally = Tally::new();
    for worker in workers {
        tally.merge(worker.await?);
    }
    let seconds = plan.duration.as_secs_f64();
    let histogram = tally.latency_us.take().expect("created with one");
    let ms = |us: u64| us as f64 / 1000.0;
    let requests = histogram.len() + tally.errors.values().sum::<u64>();
    let unexpected = tally
        .answers
        .iter()
        .filter(|((kind, status), _)| kind.expected_status() != *status)
        .map(|(_, count)| count)
        .sum::<u64>()
        + tally.errors.values().sum::<u64>();
    Ok(Report {
        label,
        url: target.uri.to_string(),
        protocol: match target.protocol {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        },
        connections: plan.connections,
        target_rate: plan.rate,
        seconds,
        requests,
        throughput: requests as f64 / seconds,
        latency_ms: Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        },
        answers: tally
            .answers
            .iter()
            .map(|((kind, status), count)| (format!("{kind} {status}"), *count))
            .collect(),
        unexpected,
        errors: tally.errors,
        completions_sent: generator.completions_sent(),
        timeline: tally
            .seconds
            .iter()
            .map(|(count, max)| (*count, ms(*max)))
            .collect(),
    })
}

struct Worker {
    target: Arc<Target>,
    generator: Arc<Generator>,
    schedule: Arc<AtomicU64>,
    rate: Option<f64>,
    timeout: Duration,
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

impl Worker {
    async fn run(self, mut sender: Option<Sender>) -> Tally {
        let mut tally = Tally::new();
        let mut rng = SmallRng::from_os_rng();
        loop {
            let due = match self.rate {
                Some(rate) => {
                    let n = self.schedule.fetch_add(1, Ordering::Relaxed);
                    let due = self.start + Duration::from_secs_f64(n as f64 / rate);
                    if due >= self.end {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                    due
                }
                None => {
                    let now = Instant::now();
                    if now >= self.end {
                        break;
                    }
                    now
                }
            };
            let measured = due >= self.measure_from;
            let prepared = self.generator.next(&mut rng);
            let mut request = Request::post(self.target.request_uri.clone());
            if self.target.protocol == Protocol::Http1 {
                request = request.header(http::header::HOST, self.target.host_header.clone());
            }
            for (name, value) in prepared.headers {
                request = request.header(name, value);
            }
            let request = request
                .body(Full::new(prepared.body))
                .expect("a request built from valid parts");

            let outcome = tokio::time::timeout(self.timeout, async {
                let connection = match &mut sender {
                    Some(connection) if !connection.is_closed() => connection,
                    _ => sender.insert(self.target.connect().await?),
                };
                connection.send(request).await
            })
            .await;
            let status = match outcome {
                Ok(Ok(response)) => Ok(response.status().as_u16()),
                Ok(Err(e)) => Err(format!("{:#}", e)),
                Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            };
            if status.is_err() {
                // Start afresh: the connection may be half-used.
                sender = None;
            }
            if !measured {
                continue;
            }
            match status {
                Ok(status) => {
                    let micros = due.elapsed().as_micros().max(1) as u64;
                    if let Some(histogram) = &mut tally.latency_us {
                        histogram.saturating_record(micros);
                    }
                    *tally.answers.entry((prepared.kind, status)).or_default() += 1;
                    let second = due.duration_since(self.measure_from).as_secs() as usize;
                    if tally.seconds.len() <= second {
                        tally.seconds.resize(second + 1, (0, 0));
                    }
                    let slot = &mut tally.seconds[second];
                    slot.0 += 1;
                    slot.1 = slot.1.max(micros);
                }
                Err(error) => {
                    *tally.errors.entry(short(&error)).or_default() += 1;
                }
            }
        }
        tally
    }
}

/// Errors grouped by their first line, without addresses that vary per connection.
fn short(error: &str) -> String {
    error
        .lines()
        .next()
        .unwrap_or(error)
        .chars()
        .take(120)
        .collect()
}

/// The report for people: one block per run.
pub fn print(report: &Report, timeline: bool) {
    let mode = match report.target_rate {
        Some(rate) => format!("fixed rate {rate:.0}/s"),
        None => "saturation".into(),
    };
    println!(
        "{}: {} {} x{} ({mode})",
        report.label, report.url, report.protocol, report.connections
    );
    println!(
        "  {} requests in {:.1} s = {:.1} req/s",
        report.requests, report.seconds, report.throughput
    );
    let l = &report.latency_ms;
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}",
        l.p50, l.p90, l.p99, l.p999, l.max, l.mean
    );
    let answers: Vec<String> = report
        .answers
        .iter()
        .map(|(key, count)| format!("{key}: {count}"))
        .collect();
    println!("  answers: {}", answers.join(", "));
    if timeline {
        let seconds: Vec<String> = report
            .timeline
            .iter()
            .map(|(count, max)| format!("{count}/{max:.0}"))
            .collect();
        println!("  per second (answers/slowest ms): {}", seconds.join(" "));
    }
    if report.unexpected > 0 {
        println!("  UNEXPECTED: {}", report.unexpected);
        for (error, count) in &report.errors {
            println!("    {count} x {error}");
        }
    }
}
