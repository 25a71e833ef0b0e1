//! Deliveries of the configured sources: recorded under their delivery key (a push that should
//! roll out queues its deploy in the same transaction), then announced on the source's stream.
//! While PostgreSQL is unavailable, a source that spools keeps the delivery on this instance's
//! disk instead (`spool`), and the drain brings it back here. A replay announces a stored
//! delivery again, and queues a deploy only if its push never had one.

use std::time::Duration;

use serde_json::Value;

use super::Ingest;
use crate::cache::Announced;
use crate::config::{DeployConfig, SourceConfig};
use crate::spool::SpooledDelivery;
use crate::store::deliveries::{self, EventOutcome, QueuedDeploy, Recorded};
use crate::store::{self, StoreError};

pub use crate::store::deliveries::SourceDelivery;

/// A stored delivery of a configured source, run through its path again.
pub struct SourceReplay<'a> {
    pub source: &'a str,
    /// `None` for a source no longer configured: announced, but it queues no deploy.
    pub configured: Option<&'a SourceConfig>,
    pub event_id: i64,
    pub event_type: &'a str,
    pub delivery_id: Option<&'a str>,
    pub outcome: EventOutcome,
    pub payload: &'a str,
    /// The operator token that asks to deploy this push's commit again, if any.
    pub redeploy_by: Option<&'a str>,
}

/// What the source's stream says about a stored delivery.
struct StreamEntry<'a> {
    source: &'a str,
    event_id: i64,
    event_type: &'a str,
    delivery_id: Option<&'a str>,
    outcome: &'a str,
    payload: &'a str,
    replay: bool,
}

/// What became of a verified delivery.
#[derive(Debug)]
pub enum Taken {
    /// Committed to PostgreSQL (a redelivery counts on the first one's row).
    Recorded(Recorded),
    /// PostgreSQL could not take it; it waits in this instance's spool, on disk.
    Spooled,
}

impl Ingest {
    /// Records a verified delivery, wakes the deploy runner for a queued deploy, announces a
    /// new delivery. When PostgreSQL is unavailable and the source spools (`spool`), the
    /// delivery goes to the spool instead; a full spool answers as PostgreSQL did.
    pub async fn source_delivery(
        &self,
        delivery: &SourceDelivery<'_>,
        spool: bool,
    ) -> Result<Taken, StoreError> {
        // A spooling source waits less: its sender gives up on a slow answer, and drops it.
        let limit = match (&self.spool, spool) {
            (Some(store), true) => store.after().min(self.statement_timeout),
            _ => self.statement_timeout,
        };
        let recorded = match self.record_source(delivery, limit).await {
            Ok(recorded) => recorded,
            Err(StoreError::Unavailable(why)) if spool => return self.spool(delivery, why).await,
            Err(e) => return Err(e),
        };
        if recorded.inserted {
            self.announce(delivery, &recorded).await;
        }
        Ok(Taken::Recorded(recorded))
    }

    /// A delivery the spool kept, committed now. Announced if this commit stored it, or if an
    /// earlier try of the same request did and was never answered (so never announced); the
    /// announcement is remembered in Redis, so it is made once.
    pub async fn spooled_delivery(
        &self,
        spooled: &SpooledDelivery,
    ) -> Result<Recorded, StoreError> {
        let delivery = spooled.delivery();
        let recorded = self
            .record_source(&delivery, self.statement_timeout)
            .await?;
        let ours = recorded.first_request_id.as_deref() == Some(delivery.http_request_id);
        if recorded.inserted || ours {
            self.announce(&delivery, &recorded).await;
        }
        Ok(recorded)
    }

    async fn record_source(
        &self,
        delivery: &SourceDelivery<'_>,
        limit: Duration,
    ) -> Result<Recorded, StoreError> {
        let recorded = store::within(limit, deliveries::record(&self.pool, delivery)).await?;
        if recorded.deploy_id.is_some() {
            self.deploy_queued.notify_one();
        }
        Ok(recorded)
    }

    async fn spool(&self, delivery: &SourceDelivery<'_>, why: String) -> Result<Taken, StoreError> {
        let Some(spool) = &self.spool else {
            return Err(StoreError::Unavailable(why));
        };
        match spool.append(&SpooledDelivery::new(delivery)).await {
            Ok(_) => {
                tracing::warn!(
                    source = delivery.source,
                    delivery_id = delivery.delivery_id.unwrap_or(""),
                    error = %why,
                    "PostgreSQL unavailable: delivery spooled"
                );
                Ok(Taken::Spooled)
            }
            Err(e) => {
                tracing::error!(
                    source = delivery.source,
                    delivery_id = delivery.delivery_id.unwrap_or(""),
                    error = %e,
                    "PostgreSQL unavailable and the delivery cannot be spooled"
                );
                Err(StoreError::Unavailable(format!("{why}; {e}")))
            }
        }
    }

    async fn announce(&self, delivery: &SourceDelivery<'_>, recorded: &Recorded) {
        self.publish(StreamEntry {
            source: delivery.source,
            event_id: recorded.event_id,
            event_type: delivery.event_type,
            delivery_id: delivery.delivery_id,
            outcome: recorded.outcome.as_str(),
            payload: delivery.body,
            replay: false,
        })
        .await;
    }

    /// Announces a stored delivery again (`replay=true`); a push that should roll out and whose
    /// commit never had its deploy gets one, or another one when an operator asks for it
    /// (`redeploy_by`). Returns that deploy.
    pub async fn replay_source(
        &self,
        replay: SourceReplay<'_>,
        deploy: Option<&DeployConfig>,
    ) -> Result<Option<i64>, StoreError> {
        let payload: Value = serde_json::from_str(replay.payload).unwrap_or(Value::Null);
        let push = replay.configured.map_or(Push::Nothing, |source| {
            push_decision(deploy, source, replay.event_type, &payload)
        });
        let deploy_id = match push {
            Push::Deploy(mut deploy) => {
                deploy.requested_by = replay.redeploy_by.map(str::to_owned);
                let client = self.pool.get().await?;
                store::within(
                    self.statement_timeout,
                    deliveries::queue_deploy(&**client, replay.event_id, replay.source, &deploy),
                )
                .await?
            }
            Push::Nothing | Push::Ignored(_) => None,
        };
        if deploy_id.is_some() {
            self.deploy_queued.notify_one();
        }
        self.publish(StreamEntry {
            source: replay.source,
            event_id: replay.event_id,
            event_type: replay.event_type,
            delivery_id: replay.delivery_id,
            outcome: replay.outcome.as_str(),
            payload: replay.payload,
            replay: true,
        })
        .await;
        Ok(deploy_id)
    }

    /// XADD to `{prefix}webhooks:{source}`; a replay announces the delivery again.
    async fn publish(&self, entry: StreamEntry<'_>) {
        let event_id = entry.event_id.to_string();
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let fields = [
            ("event_id", event_id.as_str()),
            ("source", entry.source),
            ("event_type", entry.event_type),
            ("delivery_id", entry.delivery_id.unwrap_or("")),
            ("outcome", entry.outcome),
            ("replay", if entry.replay { "true" } else { "false" }),
            ("at", at.as_str()),
            ("payload", entry.payload),
        ];
        // A first announcement is remembered, so a spooled copy of it is not announced again.
        let once = (!entry.replay).then_some(Announced::Event(entry.event_id));
        let published = self
            .cache
            .publish_delivery(entry.source, once, &fields)
            .await;
        if let Err(e) = published {
            self.redis_failed("announce", &e, "stored delivery not announced on Redis");
        }
    }
}

/// What a delivery means for deploys.
#[derive(Debug)]
pub enum Push {
    /// Not a push, or deploys are off: stored and announced, nothing more.
    Nothing,
    /// A push to the configured repository and branch.
    Deploy(QueuedDeploy),
    /// A push elsewhere: stored as `ignored`, with why.
    Ignored(&'static str),
}

/// A commit id: SHA-1 or SHA-256 in hex.
fn is_commit(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a delivery is a push that should roll out: only a push in GitHub's format (as its
/// sender says), and only when deploys are configured.
pub fn push_decision(
    deploy: Option<&DeployConfig>,
    source: &SourceConfig,
    event_type: &str,
    payload: &Value,
) -> Push {
    let Some(deploy) = deploy.filter(|_| source.scheme.is_push(event_type)) else {
        return Push::Nothing;
    };
    let repository = payload
        .pointer("/repository/full_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let branch = payload
        .get("ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("refs/heads/"));
    if !repository.eq_ignore_ascii_case(&deploy.repository) {
        return Push::Ignored("push to another repository");
    }
    if branch != Some(deploy.branch.as_str()) {
        return Push::Ignored("push to another branch or a tag");
    }
    if payload.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Push::Ignored("the branch was deleted");
    }
    // Deploys are deduplicated per commit, so a push must name one (SHA-1 or SHA-256).
    let Some(commit) = payload
        .get("after")
        .and_then(Value::as_str)
        .filter(|c| is_commit(c))
    else {
        return Push::Ignored("the push names no commit");
    };
    // A new branch's push builds on nothing (all zeros): no relation to use.
    let before_sha = payload
        .get("before")
        .and_then(Value::as_str)
        .filter(|c| is_commit(c) && c.bytes().any(|b| b != b'0'))
        .map(str::to_ascii_lowercase);
    Push::Deploy(QueuedDeploy {
        repository: deploy.repository.clone(),
        branch: deploy.branch.clone(),
        commit_sha: commit.to_ascii_lowercase(),
        before_sha,
        requested_by: None,
    })
}
