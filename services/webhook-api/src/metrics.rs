//! Prometheus metrics, one registry per instance, rendered at `GET /metrics`.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::store::avatars::TrainingStats;
use crate::store::followups::FollowupStats;
use crate::store::jobs::QueueStats;

/// The durable spool's series (`spool`).
#[derive(Clone)]
pub struct SpoolMetrics {
    /// Deliveries written to the spool, by source.
    pub spooled: IntCounterVec,
    /// Spooled deliveries committed to PostgreSQL, by source.
    pub drained: IntCounterVec,
    pub waiting: IntGauge,
    pub bytes: IntGauge,
    pub held: IntGauge,
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub signature_failures: IntCounterVec,
    pub outcomes: IntCounterVec,
    pub redis_errors: IntCounterVec,
    pub file_jobs_settled: IntCounterVec,
    pub file_bytes_copied: IntCounter,
    /// Deliveries of the configured sources, by source and outcome (`duplicate` included).
    pub source_deliveries: IntCounterVec,
    /// Rejected requests counted but not stored (the rejection log was full or failing).
    pub rejections_dropped: IntCounter,
    /// Committed changes the request path could not announce, announced by `announce`.
    pub late_announcements: IntCounter,
    /// Applied changes the announcer found too late to tell whether they were announced.
    pub unannounceable: IntCounter,
    /// What the reconciler did with each training it asked FAL about.
    pub reconciler_actions: IntCounterVec,
    pub spool: SpoolMetrics,
    /// Redeliveries asked of GitHub's API, by source and result (`requested`, `failed`).
    pub github_redeliveries: IntCounterVec,
    /// What retention removed, by rule (`payload`, `event`, `deploy_output`).
    pub retention_deleted: IntCounterVec,
    /// Follow-ups of finished trainings settled by this instance, by kind and result.
    pub followups_settled: IntCounterVec,
    /// Operator calls refused, by answer (401, 403, 429).
    pub operator_refusals: IntCounterVec,
    followups: IntGaugeVec,
    trainings: IntGaugeVec,
    oldest_training_age: Gauge,
    db_pool: IntGaugeVec,
    file_jobs: IntGaugeVec,
    oldest_pending_job_age: Gauge,
}

/// Registers each metric as it is made: one place for names, help texts and labels.
struct Registrar {
    registry: Registry,
}

impl Registrar {
    fn add<M: prometheus::core::Collector + Clone + 'static>(&self, metric: M) -> M {
        self.registry
            .register(Box::new(metric.clone()))
            .expect("metric names are unique");
        metric
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("a valid counter"))
    }

    /// A counter by `label`, every value of `primed` at 0 from the start, so rates and alerts
    /// see a series from the first scrape instead of "no data" until the first event.
    fn counters(&self, name: &str, help: &str, label: &str, primed: &[&str]) -> IntCounterVec {
        let counters = self.counters_by(name, help, &[label]);
        for value in primed {
            counters.with_label_values(&[value]).reset();
        }
        counters
    }

    fn counters_by(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid counters"))
    }

    fn int_gauge(&self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("a valid gauge"))
    }

    fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.add(Gauge::new(name, help).expect("a valid gauge"))
    }

    fn gauges(&self, name: &str, help: &str, label: &str) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid gauges"))
    }
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registrar {
            registry: Registry::new(),
        };
        let http_duration = r.add(
            HistogramVec::new(
                HistogramOpts::new(
                    "webhook_http_request_duration_seconds",
                    "Time to answer, by route",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
                &["route"],
            )
            .expect("a valid histogram"),
        );
        let (http_requests, signature_failures, outcomes, source_deliveries, rejections_dropped) =
            webhook_metrics(&r);
        let (db_pool, file_jobs_settled, file_bytes_copied, file_jobs, oldest_pending_job_age) =
            file_metrics(&r);
        let (
            redis_errors,
            late_announcements,
            unannounceable,
            reconciler_actions,
            trainings,
            oldest_training_age,
        ) = background_metrics(&r);
        let spool = spool_metrics(&r);
        let github_redeliveries = r.counters_by(
            "webhook_github_redeliveries_total",
            "Redeliveries asked of GitHub's API for deliveries that never reached us, by result",
            &["source", "result"],
        );
        let retention_deleted = r.counters(
            "webhook_retention_deleted_total",
            "What retention removed: payloads dropped, rows deleted, file jobs deleted, deploy outputs dropped",
            "what",
            &["payload", "event", "file_job", "deploy_output"],
        );
        let followups_settled = r.counters_by(
            "webhook_followups_total",
            "Follow-ups of finished trainings (Telegram messages, photo removals) settled, by kind and result: done, retry, rate_limited, failed, dead",
            &["kind", "result"],
        );
        for kind in crate::avatar::Followup::ALL {
            for result in ["done", "failed", "dead"] {
                followups_settled
                    .with_label_values(&[kind.as_str(), result])
                    .reset();
            }
        }
        // By answer only (the log line names the route and the address), so every series
        // exists from the start.
        let operator_refusals = r.counters_by(
            "webhook_operator_refusals_total",
            "Operator calls refused, by status: 401 (no valid token), 403 (a token without the scope), 429 (too many refusals from one address, or replays of one token)",
            &["status"],
        );
        for status in ["401", "403", "429"] {
            operator_refusals.with_label_values(&[status]).reset();
        }
        let followups = r.gauges(
            "webhook_followups",
            "Follow-ups of finished trainings by state (whole cluster)",
            "state",
        );
        Self {
            github_redeliveries,
            retention_deleted,
            followups_settled,
            operator_refusals,
            followups,
            registry: r.registry,
            spool,
            http_requests,
            http_duration,
            signature_failures,
            outcomes,
            redis_errors,
            file_jobs_settled,
            file_bytes_copied,
            source_deliveries,
            rejections_dropped,
            reconciler_actions,
            late_announcements,
            unannounceable,
            trainings,
            oldest_training_age,
            db_pool,
            file_jobs,
            oldest_pending_job_age,
        }
    }

    /// Each configured source's series, at 0 from the start.
    pub fn prime_sources<'a>(&self, sources: impl IntoIterator<Item = &'a str>) {
        for source in sources {
            for outcome in ["accepted", "ignored", "duplicate"] {
                self.source_deliveries
                    .with_label_values(&[source, outcome])
                    .reset();
            }
            self.spool.spooled.with_label_values(&[source]).reset();
            self.spool.drained.with_label_values(&[source]).reset();
        }
    }

    /// The text exposition format, with the gauges read at scrape time (queue stats are
    /// skipped when the database does not answer).
    pub fn render(
        &self,
        pool: &deadpool_postgres::Pool,
        queue: Option<&QueueStats>,
        training: Option<&TrainingStats>,
        followups: Option<&FollowupStats>,
    ) -> String {
        if let Some(followups) = followups {
            for state in ["pending", "running", "done", "failed", "dead"] {
                self.followups
                    .with_label_values(&[state])
                    .set(followups.count(state));
            }
        }
        if let Some(training) = training {
            self.trainings
                .with_label_values(&["all"])
                .set(training.in_training);
            self.trainings
                .with_label_values(&["stale"])
                .set(training.stale);
            self.oldest_training_age.set(training.oldest_unchanged_secs);
        }
        if let Some(queue) = queue {
            for (state, count) in [
                ("pending", queue.pending),
                ("running", queue.running),
                ("done", queue.done),
                ("failed", queue.failed),
                ("dead", queue.dead),
            ] {
                self.file_jobs.with_label_values(&[state]).set(count);
            }
            self.oldest_pending_job_age
                .set(queue.oldest_pending_age_secs);
        }
        let status = pool.status();
        self.db_pool
            .with_label_values(&["size"])
            .set(status.size as i64);
        self.db_pool
            .with_label_values(&["available"])
            .set(status.available as i64);
        self.db_pool
            .with_label_values(&["waiting"])
            .set(status.waiting as i64);
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Redis is never the source of truth: a failed call is counted by operation
/// (`webhook_redis_errors_total{operation}`) and logged, and the caller goes on.
pub fn redis_failed(
    errors: &IntCounterVec,
    operation: &str,
    error: &dyn std::fmt::Display,
    what: &str,
) {
    errors.with_label_values(&[operation]).inc();
    tracing::warn!(error = %error, operation, "{what}");
}

fn spool_metrics(r: &Registrar) -> SpoolMetrics {
    let by_source = |name: &str, help: &str| r.counters_by(name, help, &["source"]);
    SpoolMetrics {
        spooled: by_source(
            "webhook_spooled_total",
            "Deliveries kept in the spool because PostgreSQL could not take them, by source",
        ),
        drained: by_source(
            "webhook_spool_drained_total",
            "Spooled deliveries committed to PostgreSQL, by source",
        ),
        waiting: r.int_gauge(
            "webhook_spool_deliveries",
            "Deliveries waiting in this instance's spool",
        ),
        bytes: r.int_gauge(
            "webhook_spool_bytes",
            "Bytes of the deliveries waiting in this instance's spool",
        ),
        held: r.int_gauge(
            "webhook_spool_held",
            "Spooled deliveries PostgreSQL refused for their content, kept for an operator",
        ),
    }
}

/// Requests, signatures and what the webhooks came to.
fn webhook_metrics(
    r: &Registrar,
) -> (
    IntCounterVec,
    IntCounterVec,
    IntCounterVec,
    IntCounterVec,
    IntCounter,
) {
    (
        r.counters_by(
            "webhook_http_requests_total",
            "HTTP requests by route, method and status",
            &["route", "method", "status"],
        ),
        r.counters(
            "webhook_signature_failures_total",
            "Rejected signatures by reason",
            "reason",
            &[
                "unsigned",
                "missing_header",
                "malformed",
                "stale_timestamp",
                "mismatch",
                "hmac_not_configured",
                "keys_unavailable",
            ],
        ),
        r.counters(
            "webhook_callbacks_total",
            "Acknowledged FAL callbacks by outcome",
            "outcome",
            &["applied", "duplicate", "unmatched", "ignored"],
        ),
        r.counters_by(
            "webhook_source_deliveries_total",
            "Acknowledged deliveries of the configured sources, by source and outcome",
            &["source", "outcome"],
        ),
        r.counter(
            "webhook_rejections_dropped_total",
            "Rejected requests counted but not recorded in webhook_events",
        ),
    )
}

/// The pool and the file jobs.
fn file_metrics(r: &Registrar) -> (IntGaugeVec, IntCounterVec, IntCounter, IntGaugeVec, Gauge) {
    (
        r.gauges(
            "webhook_db_pool_connections",
            "PostgreSQL pool: size, available, waiting",
            "state",
        ),
        r.counters(
            "webhook_file_job_runs_total",
            "File job runs by result: done, retry, failed, dead, released, lease_lost, error",
            "result",
            &["done", "failed", "dead", "retry"],
        ),
        r.counter(
            "webhook_file_bytes_copied_total",
            "Bytes of trained files stored in S3",
        ),
        r.gauges(
            "webhook_file_jobs",
            "File jobs by state (whole cluster)",
            "state",
        ),
        r.gauge(
            "webhook_file_job_oldest_pending_age_seconds",
            "Age of the oldest file job not yet done (0 when none)",
        ),
    )
}

/// Redis, the late announcer and the reconciler.
fn background_metrics(
    r: &Registrar,
) -> (
    IntCounterVec,
    IntCounter,
    IntCounter,
    IntCounterVec,
    IntGaugeVec,
    Gauge,
) {
    (
        r.counters(
        "webhook_redis_errors_total",
        "Failed Redis operations by operation",
        "operation",
        &["publish", "announce", "read_status", "fill_status"],
    ),
        r.counter(
        "webhook_late_announcements_total",
        "Committed changes announced on Redis by the announcer, not the request path",
    ),
        r.counter(
        "webhook_unannounceable_total",
        "Applied changes older than Redis remembers announcements when the announcer reached them",
    ),
        r.counters(
        "webhook_reconciler_actions_total",
        "Trainings checked against FAL's queue API, by what came of it",
        "action",
        &[
            "still_running",
            "applied_result",
            "not_found",
            "marked_error",
            "fal_error",
        ],
    ),
        r.gauges(
        "webhook_avatars_training",
        "Avatars in training (all), and those without a change for longer than the reconciler waits (stale)",
        "state",
    ),
        r.gauge(
        "webhook_training_oldest_unchanged_seconds",
        "Seconds since the least recently changed avatar in training changed",
    ),
    )
}
