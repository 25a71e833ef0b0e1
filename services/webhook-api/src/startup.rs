//! Builds the application from a `Config`: pools, migrations, verifier, listener. `main` and
//! the integration tests use the same builder.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::Config;
use crate::http::{server, AppState};
use crate::metrics::Metrics;
use crate::store;
use crate::store::schema::AvatarSql;
use crate::verify::Verifier;
use crate::{announce, deploy, reconcile, worker};

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = store::connect_pool(&config.database);
        let avatar_sql = Arc::new(migrate(&pool, config.database.startup_wait).await?);
        let cache = Cache::new(&config.redis).context("REDIS_URL")?;
        let verifier = Verifier::new(&config.verify);
        let address = SocketAddr::new(config.bind_address, config.port);
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        tracing::info!(
            address = %listener.local_addr()?,
            instance_id = %config.instance_id,
            version = env!("CARGO_PKG_VERSION"),
            "listening"
        );
        let committer = store::group::GroupCommitter::start(
            pool.clone(),
            avatar_sql.clone(),
            config.database.group_commit_loops,
            config.database.group_commit_max,
        );
        let metrics = Metrics::new();
        metrics.prime_sources(config.sources.iter().map(|s| s.name.as_str()));
        let rejections = store::rejections::RejectionLog::start(
            pool.clone(),
            metrics.rejections_dropped.clone(),
        );
        let state = Arc::new(AppState {
            config,
            pool,
            avatar_sql,
            committer,
            cache,
            verifier,
            metrics,
            draining: AtomicBool::new(false),
            job_enqueued: tokio::sync::Notify::new(),
            deploy_queued: tokio::sync::Notify::new(),
            rejections,
        });
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves, and runs the file worker, until `shutdown` is cancelled; then drains within the
    /// configured grace period.
    pub async fn run(self, shutdown: CancellationToken) {
        let grace = self.state.config.shutdown_grace;
        let state = self.state.clone();
        let draining = shutdown.clone();
        tokio::spawn(async move {
            draining.cancelled().await;
            state
                .draining
                .store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let worker = tokio::spawn(worker::run(self.state.clone(), shutdown.clone()));
        let deployer = tokio::spawn(deploy::run(self.state.clone(), shutdown.clone()));
        let reconciler = tokio::spawn(reconcile::run(self.state.clone(), shutdown.clone()));
        let announcer = tokio::spawn(announce::run(self.state.clone(), shutdown.clone()));
        server::serve(self.listener, self.state, shutdown, grace).await;
        // Cancelled with the server: a job in hand is released for another instance.
        let _ = worker.await;
        let _ = deployer.await;
        let _ = reconciler.await;
        let _ = announcer.await;
    }
}

/// Applies the embedded migrations, waiting up to `wait` for PostgreSQL to come up (containers
/// start in any order); returns the avatar statements written for this database's columns.
pub async fn migrate(pool: &Pool, wait: Duration) -> anyhow::Result<AvatarSql> {
    let started = Instant::now();
    let mut client = loop {
        match pool.get().await {
            Ok(client) => break client,
            Err(e) if started.elapsed() < wait => {
                tracing::warn!(error = %e, "PostgreSQL not reachable yet, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(anyhow::anyhow!("{e}")).with_context(|| {
                    format!("PostgreSQL (DATABASE_URL) not reachable within {wait:?}")
                })
            }
        }
    };
    store::migrations::run(&mut client).await
}
