//! Never stuck in training: FAL gives up on a webhook after 10 failed deliveries over 2 hours,
//! so every instance runs this loop, and the one holding the lease asks FAL's queue API about
//! trainings no callback has finished. A finished result goes through exactly the webhook's
//! ingest path (same delivery key, same state machine, same file job), recorded with the
//! scheme `reconciler`; a request FAL no longer knows ends in `error` after a few tries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use prometheus::IntCounterVec;
use tokio_util::sync::CancellationToken;

use crate::config::ReconcileConfig;
use crate::fal;
use crate::fal_queue::{error_body, FalQueue, QueueAnswer};
use crate::ingest::Ingest;
use crate::store::ingest::{self, Outcome};
use crate::store::leases::{self, RunTally};
use crate::store::schema::AvatarSql;
use crate::store::training_checks::{self as checks, StaleTraining};
use crate::store::StoreError;
use crate::verify::FalScheme;

/// The reconciler's lease (`reconciler_lease.name`), which `webhook-api status` reads.
pub const RECONCILER_LEASE: &str = "fal";

/// What the reconciler works with.
pub struct Reconciler {
    pub pool: Pool,
    pub avatar_sql: Arc<AvatarSql>,
    pub ingest: Ingest,
    pub config: ReconcileConfig,
    pub instance_id: String,
    /// Who holds the lease: this process, even if two instances share an INSTANCE_ID.
    pub owner: String,
    /// `webhook_reconciler_actions_total{action}`.
    pub actions: IntCounterVec,
}

pub async fn run(state: Reconciler, shutdown: CancellationToken) {
    let config = &state.config;
    let queue = FalQueue::new(&config.queue_url, &config.api_key, config.request_timeout);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.interval) => {}
        }
        if let Err(e) = cycle(&state, config, &queue, &state.owner, &shutdown).await {
            tracing::warn!(error = %e, "reconciler cycle failed");
        }
    }
}

#[derive(Default)]
struct Tally {
    checked: i32,
    applied: i32,
    errors: i32,
}

async fn cycle(
    state: &Reconciler,
    config: &ReconcileConfig,
    queue: &FalQueue,
    owner: &str,
    shutdown: &CancellationToken,
) -> Result<(), StoreError> {
    // Long enough to outlive a slow cycle; renewed by every cycle of the holder.
    let lease = config.interval * 3 + Duration::from_secs(30);
    if !leases::take(&state.pool, RECONCILER_LEASE, owner, lease).await? {
        return Ok(());
    }
    let trainings = checks::stale_trainings(
        &state.pool,
        &state.avatar_sql,
        config.stale_after,
        config.recheck,
        config.backoff_max,
        config.batch,
    )
    .await?;
    let spacing = Duration::from_secs_f64(1.0 / config.requests_per_second);
    let mut tally = Tally::default();
    for training in trainings {
        if shutdown.is_cancelled() {
            break;
        }
        let started = Instant::now();
        check(state, config, queue, &training, &mut tally).await?;
        // Rate limit towards FAL: a check is one or two requests.
        tokio::time::sleep(spacing.saturating_sub(started.elapsed())).await;
    }
    if tally.checked > 0 {
        tracing::info!(
            checked = tally.checked,
            applied = tally.applied,
            errors = tally.errors,
            "reconciler cycle"
        );
    }
    let tally = RunTally {
        checked: tally.checked,
        done: tally.applied,
        errors: tally.errors,
    };
    leases::record_run(&state.pool, RECONCILER_LEASE, owner, tally).await
}

async fn check(
    state: &Reconciler,
    config: &ReconcileConfig,
    queue: &FalQueue,
    training: &StaleTraining,
    tally: &mut Tally,
) -> Result<(), StoreError> {
    tally.checked += 1;
    let app = config.app_for(training.training_type);
    let action = match queue.check(app, &training.fal_request_id).await {
        Ok(QueueAnswer::Running) => {
            checks::checked(&state.pool, training.avatar_id).await?;
            "still_running"
        }
        Ok(QueueAnswer::Finished(body)) => match fal::parse(body.as_bytes()) {
            Ok(callback) => {
                let outcome = ingest_result(state, training, callback, body).await?;
                checks::checked(&state.pool, training.avatar_id).await?;
                if outcome == Outcome::Applied {
                    tally.applied += 1;
                }
                "applied_result"
            }
            Err(e) => {
                checks::check_failed(&state.pool, training.avatar_id).await?;
                tally.errors += 1;
                tracing::warn!(error = %e, fal_request_id = %training.fal_request_id, "FAL's result does not parse; backing off");
                "fal_error"
            }
        },
        Ok(QueueAnswer::NotFound) => {
            let failures = checks::check_failed(&state.pool, training.avatar_id).await?;
            if failures >= config.max_not_found {
                let reason = format!(
                    "FAL's queue has no record of request {} ({failures} checks answered 404): \
                     the request expired or was never accepted",
                    training.fal_request_id
                );
                let body = error_body(&training.fal_request_id, &reason);
                let callback = fal::parse(body.as_bytes()).expect("an ERROR callback parses");
                if ingest_result(state, training, callback, body).await? == Outcome::Applied {
                    tally.applied += 1;
                }
                "marked_error"
            } else {
                "not_found"
            }
        }
        Err(e) => {
            let failures = checks::check_failed(&state.pool, training.avatar_id).await?;
            tally.errors += 1;
            tracing::warn!(error = %e, fal_request_id = %training.fal_request_id, failures, "FAL status check failed; backing off");
            "fal_error"
        }
    };
    state.actions.with_label_values(&[action]).inc();
    Ok(())
}

/// The same path as a webhook: group commit, then the file job and the announcement.
async fn ingest_result(
    state: &Reconciler,
    training: &StaleTraining,
    callback: fal::FalCallback,
    body: String,
) -> Result<Outcome, StoreError> {
    let delivery = ingest::Delivery {
        callback,
        body,
        scheme: FalScheme::Reconciler,
        http_request_id: format!("reconciler-{}", uuid::Uuid::new_v4().simple()),
        instance_id: state.instance_id.clone(),
        training_type: training.training_type,
        received: Instant::now(),
    };
    let ingested = state.ingest.fal_callback(delivery).await?;
    tracing::info!(
        outcome = ingested.outcome.as_str(),
        fal_request_id = %training.fal_request_id,
        event_id = ingested.event_id,
        "reconciler applied FAL's result"
    );
    Ok(ingested.outcome)
}
