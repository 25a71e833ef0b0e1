//! Prometheus metrics, one registry per instance, rendered at `GET /metrics`.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::store::avatars::TrainingStats;
use crate::store::jobs::QueueStats;

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
    trainings: IntGaugeVec,
    oldest_training_age: Gauge,
    db_pool: IntGaugeVec,
    file_jobs: IntGaugeVec,
    oldest_pending_job_age: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "webhook_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .unwrap();
        let http_duration = HistogramVec::new(
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
        .unwrap();
        let signature_failures = IntCounterVec::new(
            Opts::new(
                "webhook_signature_failures_total",
                "Rejected signatures by reason",
            ),
            &["reason"],
        )
        .unwrap();
        let outcomes = IntCounterVec::new(
            Opts::new(
                "webhook_callbacks_total",
                "Acknowledged FAL callbacks by outcome",
            ),
            &["outcome"],
        )
        .unwrap();
        let redis_errors = IntCounterVec::new(
            Opts::new(
                "webhook_redis_errors_total",
                "Failed Redis operations by operation",
            ),
            &["operation"],
        )
        .unwrap();
        let db_pool = IntGaugeVec::new(
            Opts::new(
                "webhook_db_pool_connections",
                "PostgreSQL pool: size, available, waiting",
            ),
            &["state"],
        )
        .unwrap();
        let file_jobs_settled = IntCounterVec::new(
            Opts::new(
                "webhook_file_job_runs_total",
                "File job runs by result: done, retry, failed, dead, released, lease_lost, error",
            ),
            &["result"],
        )
        .unwrap();
        let file_bytes_copied = IntCounter::new(
            "webhook_file_bytes_copied_total",
            "Bytes of trained files stored in S3",
        )
        .unwrap();
        let file_jobs = IntGaugeVec::new(
            Opts::new("webhook_file_jobs", "File jobs by state (whole cluster)"),
            &["state"],
        )
        .unwrap();
        let oldest_pending_job_age = Gauge::new(
            "webhook_file_job_oldest_pending_age_seconds",
            "Age of the oldest file job not yet done (0 when none)",
        )
        .unwrap();
        let source_deliveries = IntCounterVec::new(
            Opts::new(
                "webhook_source_deliveries_total",
                "Acknowledged deliveries of the configured sources, by source and outcome",
            ),
            &["source", "outcome"],
        )
        .unwrap();
        let rejections_dropped = IntCounter::new(
            "webhook_rejections_dropped_total",
            "Rejected requests counted but not recorded in webhook_events",
        )
        .unwrap();
        let late_announcements = IntCounter::new(
            "webhook_late_announcements_total",
            "Committed changes announced on Redis by the announcer, not the request path",
        )
        .unwrap();
        let unannounceable = IntCounter::new(
            "webhook_unannounceable_total",
            "Applied changes older than Redis remembers announcements when the announcer reached them",
        )
        .unwrap();
        let reconciler_actions = IntCounterVec::new(
            Opts::new(
                "webhook_reconciler_actions_total",
                "Trainings checked against FAL's queue API, by what came of it",
            ),
            &["action"],
        )
        .unwrap();
        let trainings = IntGaugeVec::new(
            Opts::new(
                "webhook_avatars_training",
                "Avatars in training (all), and those without a change for longer than the reconciler waits (stale)",
            ),
            &["state"],
        )
        .unwrap();
        let oldest_training_age = Gauge::new(
            "webhook_training_oldest_unchanged_seconds",
            "Seconds since the least recently changed avatar in training changed",
        )
        .unwrap();
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(signature_failures.clone()),
            Box::new(outcomes.clone()),
            Box::new(redis_errors.clone()),
            Box::new(db_pool.clone()),
            Box::new(file_jobs_settled.clone()),
            Box::new(file_bytes_copied.clone()),
            Box::new(file_jobs.clone()),
            Box::new(oldest_pending_job_age.clone()),
            Box::new(source_deliveries.clone()),
            Box::new(rejections_dropped.clone()),
            Box::new(reconciler_actions.clone()),
            Box::new(late_announcements.clone()),
            Box::new(unannounceable.clone()),
            Box::new(trainings.clone()),
            Box::new(oldest_training_age.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        // Every known label value starts at 0, so rates and alerts see a series from the
        // first scrape instead of "no data" until the first event.
        for (counter, values) in [
            (
                &outcomes,
                &["applied", "duplicate", "unmatched", "ignored"][..],
            ),
            (
                &signature_failures,
                &[
                    "unsigned",
                    "missing_header",
                    "malformed",
                    "stale_timestamp",
                    "mismatch",
                    "hmac_not_configured",
                    "keys_unavailable",
                ][..],
            ),
            (
                &redis_errors,
                &["publish", "announce", "read_status", "fill_status"][..],
            ),
            (&file_jobs_settled, &["done", "failed", "dead", "retry"][..]),
            (
                &reconciler_actions,
                &[
                    "still_running",
                    "applied_result",
                    "not_found",
                    "marked_error",
                    "fal_error",
                ][..],
            ),
        ] {
            for value in values {
                counter.with_label_values(&[value]).reset();
            }
        }
        Self {
            registry,
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
        }
    }

    /// The text exposition format, with the gauges read at scrape time (queue stats are
    /// skipped when the database does not answer).
    pub fn render(
        &self,
        pool: &deadpool_postgres::Pool,
        queue: Option<&QueueStats>,
        training: Option<&TrainingStats>,
    ) -> String {
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
    error: &crate::cache::CacheError,
    what: &str,
) {
    errors.with_label_values(&[operation]).inc();
    tracing::warn!(error = %error, operation, "{what}");
}
