//! Retention: every instance runs this loop, and the holder of the `retention` lease applies
//! the rules of `RetentionConfig` a small batch at a time (`store::retention`): payloads and
//! headers dropped after their days (size and SHA-256 kept), rows deleted after theirs unless a
//! file job, a deploy or an avatar still in training points at them, file jobs done long ago
//! deleted (the copied files' rows stay), finished deploys' outputs dropped. Rejected requests
//! have their own, shorter rule (`store::rejections`).
//!
//! A delivery redelivered after its row is gone is stored again, and changes nothing: the
//! avatar's state machine does not take a finished training back (a completion or progress for
//! a COMPLETED or ERROR avatar is `ignored`), and senders stop redelivering long before
//! (FAL within 2 hours, GitHub 3 days, Plane minutes; rows go after 180 days by default).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus::IntCounterVec;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::store::leases::{self, RunTally};
use crate::store::retention::{self, Rule};
use crate::store::schema::AvatarSql;
use crate::store::StoreError;

/// `reconciler_lease.name` of retention, which `webhook-api status` reads.
pub const RETENTION_LEASE: &str = "retention";

pub struct Retention {
    pub pool: Pool,
    pub avatar_sql: Arc<AvatarSql>,
    pub config: RetentionConfig,
    pub owner: String,
    /// `webhook_retention_deleted_total{what}`.
    pub deleted: IntCounterVec,
}

/// What one run changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Swept {
    pub payloads: u64,
    pub events: u64,
    pub deploy_outputs: u64,
    pub file_jobs: u64,
}

pub async fn run(retention: Retention, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(retention.config.interval) => {}
        }
        let hold_for = retention.config.interval * 2 + Duration::from_secs(60);
        match leases::take(&retention.pool, RETENTION_LEASE, &retention.owner, hold_for).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "retention: lease not taken");
                continue;
            }
        }
        let (swept, failed) = match retention.sweep(&shutdown).await {
            Ok(swept) => (swept, 0),
            Err(e) => {
                tracing::warn!(error = %e, "retention run failed; the next one goes on");
                (Swept::default(), 1)
            }
        };
        let tally = RunTally {
            checked: swept.payloads as i32,
            done: swept.events as i32,
            errors: failed,
        };
        let recorded =
            leases::record_run(&retention.pool, RETENTION_LEASE, &retention.owner, tally).await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "retention run not recorded");
        }
    }
}

impl Retention {
    /// Applies every rule until nothing is due (or the instance stops).
    pub async fn sweep(&self, shutdown: &CancellationToken) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        // First the jobs: the events they pointed at may then go in the same run.
        if let Some(after) = self.config.file_job {
            swept.file_jobs = self
                .in_batches("file_job", shutdown, || {
                    retention::drop_finished_jobs(&self.pool, after, self.config.batch)
                })
                .await?;
        }
        let rules = [
            (Rule::Payload, self.config.payload),
            (Rule::Event, self.config.event),
        ];
        for (rule, after) in rules {
            let Some(after) = after else { continue };
            while !shutdown.is_cancelled() {
                let step =
                    retention::step(&self.pool, &self.avatar_sql, rule, after, self.config.batch);
                let Some(changed) = step.await? else { break };
                self.deleted
                    .with_label_values(&[rule.as_str()])
                    .inc_by(changed);
                match rule {
                    Rule::Payload => swept.payloads += changed,
                    Rule::Event => swept.events += changed,
                }
            }
        }
        if let Some(after) = self.config.deploy_output {
            swept.deploy_outputs = self
                .in_batches("deploy_output", shutdown, || {
                    retention::drop_deploy_outputs(&self.pool, after, self.config.batch)
                })
                .await?;
        }
        if swept.payloads + swept.events + swept.deploy_outputs + swept.file_jobs > 0 {
            tracing::info!(
                payloads = swept.payloads,
                events = swept.events,
                deploy_outputs = swept.deploy_outputs,
                file_jobs = swept.file_jobs,
                "retention run"
            );
        }
        Ok(swept)
    }

    /// Runs `batch` until one changes fewer than a batch of rows (or the instance stops);
    /// counts what went under `what`.
    async fn in_batches<F, Fut>(
        &self,
        what: &str,
        shutdown: &CancellationToken,
        mut batch: F,
    ) -> Result<u64, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<u64, StoreError>>,
    {
        let mut total = 0;
        loop {
            let changed = batch().await?;
            self.deleted.with_label_values(&[what]).inc_by(changed);
            total += changed;
            if changed < self.config.batch as u64 || shutdown.is_cancelled() {
                return Ok(total);
            }
        }
    }
}
