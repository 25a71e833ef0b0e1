//! Moves spooled deliveries into PostgreSQL, oldest first, through the ingest path (so they
//! are deduplicated, deploy and are announced as usual), and tells Redis what the spool holds
//! for `webhook-api status`. Spool files other instances left in the same directory (a task
//! Swarm replaced) are drained too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::ingest::Ingest;
use crate::spool::{Spool, SpoolError, Usage};
use crate::store::StoreError;

/// How often the spool is looked at and its report refreshed, and the first wait after
/// PostgreSQL failed.
const TICK: Duration = Duration::from_secs(1);
/// The longest wait between tries while PostgreSQL stays away.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// A spool's report in Redis is refreshed at least this often, and at once when it changes.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// How often the directory is looked at for files other instances left.
const ORPHANS_EVERY: Duration = Duration::from_secs(10);
const BATCH: usize = 64;

pub struct Drain {
    pub spool: Arc<Spool>,
    pub ingest: Ingest,
    pub cache: Cache,
    pub instance_id: String,
}

/// Why a drain pass stopped before the spool was empty.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error(transparent)]
    Database(StoreError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

pub async fn run(drain: Drain, shutdown: CancellationToken) {
    let mut wait = TICK;
    let mut next_try = Instant::now();
    let mut reported: Option<(Usage, Instant)> = None;
    let mut orphans_due = Instant::now();
    loop {
        let own_waiting = drain.spool.usage().waiting > 0;
        let orphans = !own_waiting && Instant::now() >= orphans_due;
        if (own_waiting || orphans) && Instant::now() >= next_try {
            let passed = if own_waiting {
                drain.pass(&drain.spool, &shutdown).await
            } else {
                orphans_due = Instant::now() + ORPHANS_EVERY;
                drain.orphans(&shutdown).await
            };
            match passed {
                Ok(()) => wait = TICK,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        waiting = drain.spool.usage().waiting,
                        retry_in_secs = wait.as_secs(),
                        "spooled deliveries wait: PostgreSQL cannot take them yet"
                    );
                    next_try = Instant::now() + wait;
                    wait = (wait * 2).min(MAX_WAIT);
                }
            }
        }
        drain.report(&mut reported).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

impl Drain {
    /// Drains the spool files no running instance holds; an emptied one is deleted the next time
    /// round.
    async fn orphans(&self, shutdown: &CancellationToken) -> Result<(), Stopped> {
        for orphan in self.spool.orphans().await {
            let waiting = orphan.usage().waiting;
            tracing::info!(path = %orphan.path().display(), waiting, "draining a spool file another instance left");
            self.pass(&orphan, shutdown).await?;
        }
        Ok(())
    }

    /// Drains until `spool` is empty, PostgreSQL fails, or the instance stops.
    async fn pass(&self, spool: &Arc<Spool>, shutdown: &CancellationToken) -> Result<(), Stopped> {
        loop {
            let batch = spool.oldest(BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            for (key, entry) in batch {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                let delivery = match entry {
                    Ok(delivery) => delivery,
                    Err(e) => {
                        tracing::error!(key, error = %e, "a spooled entry cannot be read; held");
                        spool.hold(key).await?;
                        continue;
                    }
                };
                match self.ingest.spooled_delivery(&delivery).await {
                    Ok(recorded) => {
                        spool.remove(key, &delivery.source).await?;
                        tracing::info!(
                            source = %delivery.source,
                            delivery_id = delivery.delivery_id.as_deref().unwrap_or(""),
                            event_id = recorded.event_id,
                            duplicate = !recorded.inserted,
                            "spooled delivery committed"
                        );
                    }
                    Err(StoreError::Rejected(why)) => {
                        tracing::error!(
                            source = %delivery.source,
                            delivery_id = delivery.delivery_id.as_deref().unwrap_or(""),
                            why,
                            "PostgreSQL refuses this spooled delivery's content; held in the spool"
                        );
                        spool.hold(key).await?;
                    }
                    Err(e) => return Err(Stopped::Database(e)),
                }
            }
        }
    }

    /// `{prefix}spools`, field instance id: what this instance's spool holds, when it changed
    /// and at least every `REPORT_EVERY`.
    async fn report(&self, reported: &mut Option<(Usage, Instant)>) {
        let usage = self.spool.usage();
        let due = reported.is_none_or(|(last, at)| last != usage || at.elapsed() >= REPORT_EVERY);
        if !due {
            return;
        }
        match self.cache.report_spool(&self.instance_id, usage).await {
            Ok(()) => *reported = Some((usage, Instant::now())),
            Err(e) => tracing::debug!(error = %e, "spool usage not reported to Redis"),
        }
    }
}
