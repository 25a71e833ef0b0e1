//! Prometheus metrics, one registry per instance, rendered at `GET /metrics`.

use deadpool_postgres::Pool;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub signature_failures: IntCounterVec,
    pub outcomes: IntCounterVec,
    pub redis_errors: IntCounterVec,
    db_pool: IntGaugeVec,
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
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(signature_failures.clone()),
            Box::new(outcomes.clone()),
            Box::new(redis_errors.clone()),
            Box::new(db_pool.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            signature_failures,
            outcomes,
            redis_errors,
            db_pool,
        }
    }

    /// The text exposition format, with the pool gauges read at scrape time.
    pub fn render(&self, pool: &Pool) -> String {
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
