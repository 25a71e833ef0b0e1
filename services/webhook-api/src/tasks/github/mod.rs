//! GitHub's redelivery, used: GitHub never sends a failed delivery again by itself. For each
//! `github` source with a hook and a token, the holder of its lease asks GitHub for the hook's
//! recent deliveries, and for every one that never got a 2xx from us and is not stored here
//! asks GitHub to deliver it again (at most `max_per_run` a run, one at a time). The
//! redelivery then arrives like any delivery, under the same `X-GitHub-Delivery`.

mod api;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use deadpool_postgres::Pool;
use prometheus::IntCounterVec;
use tokio_util::sync::CancellationToken;

pub use api::{GithubError, GithubHooks, HookDelivery};

use crate::config::{GithubApiConfig, GithubRedeliver};
use crate::store::leases::{self, RunTally};
use crate::store::{deliveries, StoreError};

/// Between two requests to GitHub's API: well under its secondary rate limits.
const SPACING: Duration = Duration::from_millis(250);

pub struct Redeliverer {
    pub pool: Pool,
    pub config: GithubApiConfig,
    /// (source name, its hook and token).
    pub sources: Vec<(String, GithubRedeliver)>,
    /// Who holds a lease: this process.
    pub owner: String,
    /// `webhook_github_redeliveries_total{source, result}`.
    pub redeliveries: IntCounterVec,
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Github(#[from] GithubError),
}

/// `reconciler_lease.name` of a source's redelivery, which `webhook-api status` reads.
pub fn lease_name(source: &str) -> String {
    format!("github:{source}")
}

pub async fn run(redeliverer: Redeliverer, shutdown: CancellationToken) {
    let clients: Vec<GithubHooks> = redeliverer
        .sources
        .iter()
        .map(|(_, hook)| {
            GithubHooks::new(
                &redeliverer.config.api_url,
                &hook.token,
                redeliverer.config.request_timeout,
            )
        })
        .collect();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(redeliverer.config.interval) => {}
        }
        for ((source, hook), client) in redeliverer.sources.iter().zip(&clients) {
            if let Err(e) = redeliverer.run_once(source, hook, client, &shutdown).await {
                tracing::warn!(source, error = %e, "GitHub redelivery run failed");
            }
        }
    }
}

impl Redeliverer {
    async fn run_once(
        &self,
        source: &str,
        hook: &GithubRedeliver,
        client: &GithubHooks,
        shutdown: &CancellationToken,
    ) -> Result<(), RunError> {
        let lease = lease_name(source);
        let hold_for = self.config.interval * 3 + Duration::from_secs(30);
        if !leases::take(&self.pool, &lease, &self.owner, hold_for).await? {
            return Ok(());
        }
        let since = chrono::Utc::now() - self.config.lookback;
        let attempts = client.deliveries_since(&hook.hook, since).await?;
        let missed = missed_deliveries(&attempts, self.config.max_attempts);
        let keys: Vec<String> = missed
            .iter()
            .map(|d| format!("{source}:{}", d.guid))
            .collect();
        let stored = deliveries::stored_keys(&self.pool, &keys).await?;
        let mut tally = RunTally {
            checked: missed.len() as i32,
            ..RunTally::default()
        };
        let wanted = missed
            .iter()
            .zip(&keys)
            .filter(|(_, key)| !stored.contains(*key))
            .take(self.config.max_per_run);
        for (delivery, _) in wanted {
            if shutdown.is_cancelled() {
                break;
            }
            let result = match client.redeliver(&hook.hook, delivery.id).await {
                Ok(()) => {
                    tally.done += 1;
                    tracing::info!(source, guid = %delivery.guid, "GitHub asked to redeliver");
                    "requested"
                }
                Err(e) => {
                    tally.errors += 1;
                    tracing::warn!(source, guid = %delivery.guid, error = %e, "redelivery refused");
                    "failed"
                }
            };
            self.redeliveries.with_label_values(&[source, result]).inc();
            tokio::time::sleep(SPACING).await;
        }
        leases::record_run(&self.pool, &lease, &self.owner, tally).await?;
        Ok(())
    }
}

/// Of GitHub's attempts, the latest attempt of each delivery that never got a 2xx from us and
/// that GitHub has tried fewer than `max_attempts` times, oldest delivery first.
pub fn missed_deliveries(attempts: &[HookDelivery], max_attempts: usize) -> Vec<HookDelivery> {
    let mut by_guid: HashMap<&str, Vec<&HookDelivery>> = HashMap::new();
    for attempt in attempts {
        by_guid.entry(&attempt.guid).or_default().push(attempt);
    }
    let delivered: HashSet<&str> = attempts
        .iter()
        .filter(|a| (200..300).contains(&a.status_code))
        .map(|a| a.guid.as_str())
        .collect();
    let mut missed: Vec<HookDelivery> = by_guid
        .into_iter()
        .filter(|(guid, tries)| !delivered.contains(guid) && tries.len() < max_attempts)
        .filter_map(|(_, tries)| tries.into_iter().max_by_key(|a| (a.delivered_at, a.id)))
        .cloned()
        .collect();
    missed.sort_by_key(|a| (a.delivered_at, a.id));
    missed
}

#[cfg(test)]
mod tests {
    use super::{missed_deliveries, HookDelivery};

    fn attempt(id: i64, guid: &str, minute: u32, status_code: u16) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.into(),
            delivered_at: format!("2026-11-30T10:{minute:02}:00Z").parse().unwrap(),
            status_code,
        }
    }

    #[test]
    fn only_deliveries_that_never_reached_us_are_asked_for_again_once_each() {
        let attempts = [
            attempt(1, "ok", 1, 200),
            attempt(2, "spooled", 2, 202),
            attempt(3, "lost", 3, 503),
            attempt(4, "lost", 5, 0),
            attempt(5, "later-ok", 4, 502),
            attempt(6, "later-ok", 6, 200),
            attempt(7, "refused", 7, 401),
            attempt(8, "tried", 8, 500),
            attempt(9, "tried", 9, 500),
            attempt(10, "tried", 10, 500),
        ];
        let missed = missed_deliveries(&attempts, 3);
        let ids: Vec<_> = missed.iter().map(|a| (a.guid.as_str(), a.id)).collect();
        // `lost`: its latest attempt; `refused` (a secret fixed since may let it in); `tried`
        // has had its three attempts.
        assert_eq!(ids, [("lost", 4), ("refused", 7)]);
    }
}
