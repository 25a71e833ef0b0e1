//! What every request handler may touch, shared by all connections: built by `startup`,
//! read by `http`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::cache::Cache;
use crate::config::Config;
use crate::ingest::Ingest;
use crate::limits::PerMinute;
use crate::live_tails::LiveTails;
use crate::metrics::Metrics;
use crate::spool::Spool;
use crate::store::rejections::RejectionLog;
use crate::store::schema::AvatarSql;
use crate::telemetry::RefusalLog;
use crate::verify::Verifier;

/// Everything a request handler may touch, shared by all connections.
pub struct AppState {
    pub config: Config,
    pub pool: Pool,
    /// The avatar statements, written for this database's column types.
    pub avatar_sql: Arc<AvatarSql>,
    /// The path of every verified delivery: commit, then wake and announce.
    pub ingest: Ingest,
    pub cache: Cache,
    pub verifier: Verifier,
    pub metrics: Metrics,
    /// Set on SIGTERM: readiness answers 503 while in-flight requests finish.
    pub draining: AtomicBool,
    /// Refused webhook requests, kept for operators off the request path.
    pub rejections: RejectionLog,
    /// Deliveries waiting for PostgreSQL on this instance's disk; `None` when no source spools.
    pub spool: Option<Arc<Spool>>,
    /// How many refused webhook requests are still logged this second.
    pub refusal_log: RefusalLog,
    /// Refused operator calls by address: past the limit, 429 before any token is read.
    pub refused_operators: PerMinute<std::net::IpAddr>,
    /// Replays by token name.
    pub replays: PerMinute<String>,
    /// The console's open live tails, sharing one watch on Redis.
    pub live_tails: Arc<LiveTails>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
