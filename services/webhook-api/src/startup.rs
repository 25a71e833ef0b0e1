//! Builds the application from a `Config`: pools, migrations, verifier, listener. `main` and
//! the integration tests use the same builder.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use deadpool_postgres::Pool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::avatar::FollowupPolicy;
use crate::cache::Cache;
use crate::config::Config;
use crate::http::server;
use crate::ingest::Ingest;
use crate::limits::PerMinute;
use crate::live_tails::LiveTails;
use crate::metrics::Metrics;
use crate::spool::Spool;
use crate::state::AppState;
use crate::store::rejections::RejectionLog;
use crate::store::schema::AvatarSql;
use crate::store::{self, group::GroupCommitter};
use crate::tasks::deploy::{self, DeployWork};
use crate::tasks::followups::{self, FollowupWork};
use crate::tasks::github::{self, Redeliverer};
use crate::tasks::late_announcer::{self, LateAnnouncer};
use crate::tasks::reconciler::{self, Reconciler};
use crate::tasks::retention::{self, Retention};
use crate::tasks::spool_drain::{self, Drain};
use crate::tasks::worker::{self, FileWork};
use crate::telemetry::{self, RefusalLog};
use crate::verify::Verifier;

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = store::connect_pool(&config.database);
        let avatar_sql = Arc::new(
            migrate(
                &pool,
                config.database.startup_wait,
                config.followups.policy(),
            )
            .await?,
        );
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
        let committer = GroupCommitter::start(
            pool.clone(),
            avatar_sql.clone(),
            config.database.group_commit_loops,
            config.database.group_commit_max,
        );
        let metrics = Metrics::new();
        metrics.prime_sources(config.sources.iter().map(|s| s.name.as_str()));
        let spool = open_spool(&config, &metrics).await?;
        let ingest = Ingest::new(
            pool.clone(),
            committer,
            cache.clone(),
            config.database.statement_timeout,
            metrics.redis_errors.clone(),
            config.announce.settle,
        )
        .with_spool(spool.clone());
        let rejections = RejectionLog::start(
            pool.clone(),
            metrics.rejections_dropped.clone(),
            &config.rejections,
        );
        // The console's live tails wake on the bot's stream and every source's.
        let streams = std::iter::once(cache.events_stream())
            .chain(config.sources.iter().map(|s| cache.source_stream(&s.name)))
            .collect();
        let live_tails = Arc::new(LiveTails::new(
            cache.clone(),
            streams,
            config.console.live_tails_per_session,
            config.console.live_tails,
        ));
        let state = Arc::new(AppState {
            live_tails,
            refusal_log: RefusalLog::new(config.log.refusals_per_sec),
            refused_operators: PerMinute::new(config.operator_limits.refusals_per_minute),
            replays: PerMinute::new(config.operator_limits.replays_per_minute),
            config,
            pool,
            avatar_sql,
            ingest,
            cache,
            verifier,
            metrics,
            draining: AtomicBool::new(false),
            rejections,
            spool,
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

    /// Serves, and runs the background tasks, until `shutdown` is cancelled; then drains within
    /// the configured grace period.
    pub async fn run(self, shutdown: CancellationToken) {
        let grace = self.state.config.shutdown_grace;
        let state = self.state.clone();
        let draining = shutdown.clone();
        tokio::spawn(async move {
            draining.cancelled().await;
            state.draining.store(true, Ordering::Relaxed);
        });
        let tasks = background_tasks(&self.state, &shutdown);
        server::serve(self.listener, self.state, shutdown, grace).await;
        // Cancelled with the server: a job in hand is released for another instance.
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// The file worker, the deploy runner, the reconciler, the late announcer and the delivery
/// recovery, each with only the handles it uses.
fn background_tasks(
    state: &AppState,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = &state.config;
    // Lease owners: this process, even if two instances were given the same INSTANCE_ID.
    let owner = format!(
        "{}/{}",
        config.instance_id,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut tasks = vec![tokio::spawn(worker::run(
        Arc::new(FileWork {
            pool: state.pool.clone(),
            cache: state.cache.clone(),
            files: config.files.clone(),
            owner: owner.clone(),
            bytes_copied: state.metrics.file_bytes_copied.clone(),
            jobs_settled: state.metrics.file_jobs_settled.clone(),
            redis_errors: state.metrics.redis_errors.clone(),
            job_enqueued: state.ingest.job_enqueued.clone(),
            delete_photos: state.avatar_sql.followups.delete_photos,
        }),
        shutdown.clone(),
    ))];
    tasks.push(tokio::spawn(crate::tasks::console_indexes::run(
        state.pool.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(crate::tasks::console_replays::run(
        crate::tasks::console_replays::BulkReplays {
            pool: state.pool.clone(),
            ingest: state.ingest.clone(),
            sources: config.sources.clone(),
            deploy: config.deploy.clone(),
            instance_id: config.instance_id.clone(),
            owner: owner.clone(),
            per_second: config.console.bulk_replays_per_sec,
            query_timeout: config.console.query_timeout,
            queued: state.ingest.bulk_replay_queued.clone(),
        },
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(followups::run(
        Arc::new(FollowupWork {
            pool: state.pool.clone(),
            cache: state.cache.clone(),
            config: config.followups.clone(),
            s3: crate::files::s3_client(&config.files),
            owner: owner.clone(),
            settled: state.metrics.followups_settled.clone(),
            redis_errors: state.metrics.redis_errors.clone(),
        }),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(late_announcer::run(
        LateAnnouncer {
            pool: state.pool.clone(),
            cache: state.cache.clone(),
            config: config.announce.clone(),
            remembered: config.redis.announced_ttl,
            statement_timeout: config.database.statement_timeout,
            late_announcements: state.metrics.late_announcements.clone(),
            unannounceable: state.metrics.unannounceable.clone(),
        },
        shutdown.clone(),
    )));
    tasks.extend(delivery_recovery_tasks(state, &owner, shutdown));
    tasks.push(tokio::spawn(retention::run(
        Retention {
            pool: state.pool.clone(),
            avatar_sql: state.avatar_sql.clone(),
            config: config.retention.clone(),
            owner: owner.clone(),
            deleted: state.metrics.retention_deleted.clone(),
        },
        shutdown.clone(),
    )));
    if let Some(deploy) = &config.deploy {
        tasks.push(tokio::spawn(deploy::run(
            DeployWork {
                pool: state.pool.clone(),
                database: config.database.pg.clone(),
                config: deploy.clone(),
                instance_id: config.instance_id.clone(),
                deploy_queued: state.ingest.deploy_queued.clone(),
            },
            shutdown.clone(),
        )));
    }
    match &config.reconcile {
        Some(reconcile) => tasks.push(tokio::spawn(reconciler::run(
            Reconciler {
                pool: state.pool.clone(),
                avatar_sql: state.avatar_sql.clone(),
                ingest: state.ingest.clone(),
                config: reconcile.clone(),
                instance_id: config.instance_id.clone(),
                owner,
                actions: state.metrics.reconciler_actions.clone(),
            },
            shutdown.clone(),
        ))),
        None => tracing::info!("reconciler off: FAL_API_KEY is not set"),
    }
    tasks
}

/// What brings back deliveries a database outage or a sender's failed try left out: the spool's
/// drain, and GitHub's redelivery for the sources configured for it.
fn delivery_recovery_tasks(
    state: &AppState,
    owner: &str,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = &state.config;
    let mut tasks = Vec::new();
    if let Some(spool) = &state.spool {
        tasks.push(tokio::spawn(spool_drain::run(
            Drain {
                spool: spool.clone(),
                ingest: state.ingest.clone(),
                cache: state.cache.clone(),
                instance_id: config.instance_id.clone(),
            },
            shutdown.clone(),
        )));
    }
    let redelivered: Vec<_> = config
        .sources
        .iter()
        .filter_map(|s| Some((s.name.clone(), s.redeliver.clone()?)))
        .collect();
    if !redelivered.is_empty() {
        tasks.push(tokio::spawn(github::run(
            Redeliverer {
                pool: state.pool.clone(),
                config: config.github.clone(),
                sources: redelivered,
                owner: owner.to_owned(),
                redeliveries: state.metrics.github_redeliveries.clone(),
            },
            shutdown.clone(),
        )));
    }
    tasks
}

/// Applies the embedded migrations, waiting up to `wait` for PostgreSQL to come up (containers
/// start in any order); returns the avatar statements written for this database's columns,
/// recording the follow-ups `policy` asks for (none for the `migrate` command).
pub async fn migrate(
    pool: &Pool,
    wait: Duration,
    mut policy: FollowupPolicy,
) -> anyhow::Result<AvatarSql> {
    let started = Instant::now();
    let mut client = loop {
        let e = match pool.get().await {
            Ok(client) => break client,
            Err(e) => e,
        };
        let reason = telemetry::error_chain(&e);
        // A wrong password or database name will not get better by waiting.
        if store::refused_by_server(&e) {
            anyhow::bail!("PostgreSQL (DATABASE_URL) refused the connection: {reason}");
        }
        if started.elapsed() >= wait {
            anyhow::bail!("PostgreSQL (DATABASE_URL) not reachable within {wait:?}: {reason}");
        }
        tracing::warn!(error = %reason, "PostgreSQL not reachable yet, retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // The photos are the bot's `avatar_photos`: in a database without it there are none.
    if policy.delete_photos && !store::followups::photos_table_exists(&**client).await? {
        tracing::info!("no avatar_photos table: training photos are not looked for");
        policy.delete_photos = false;
    }
    tracing::info!(
        telegram = policy.notify_ready,
        failures = policy.notify_failed,
        delete_photos = policy.delete_photos,
        "follow-ups of finished trainings"
    );
    store::migrations::run(&mut client, &policy).await
}

/// This instance's spool, when a configured source spools; what it holds from before a crash
/// or a restart is drained once the instance runs.
async fn open_spool(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<Arc<Spool>>> {
    let spooling: Vec<&str> = config
        .sources
        .iter()
        .filter(|s| s.spool)
        .map(|s| s.name.as_str())
        .collect();
    if spooling.is_empty() {
        return Ok(None);
    }
    let spool = Spool::open(&config.spool, metrics.spool.clone())
        .await
        .context("SPOOL_DIR (or turn a source's spool off: WEBHOOK_SOURCE_<NAME>_SPOOL=false)")?;
    let usage = spool.usage();
    tracing::info!(
        path = %spool.path().display(),
        sources = %spooling.join(","),
        waiting = usage.waiting,
        held = usage.held,
        "spool open"
    );
    Ok(Some(spool))
}
