//! Deliveries of the configured sources: recorded under their delivery key (a push that should
//! roll out queues its deploy in the same transaction), then announced on the source's stream.
//! A replay announces a stored delivery again, and queues a deploy only if its push never had
//! one.

use serde_json::Value;

use super::Ingest;
use crate::config::{DeployConfig, SourceConfig};
use crate::store::deliveries::{self, EventOutcome, QueuedDeploy, Recorded};
use crate::store::{self, StoreError};
use crate::verify::sources::SourceScheme;

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

impl Ingest {
    /// Records a verified delivery (a redelivery counts on the first one's row), wakes the
    /// deploy runner for a queued deploy, announces a new delivery.
    pub async fn source_delivery(
        &self,
        delivery: &SourceDelivery<'_>,
    ) -> Result<Recorded, StoreError> {
        let recorded = store::within(
            self.statement_timeout,
            deliveries::record(&self.pool, delivery),
        )
        .await?;
        if recorded.deploy_id.is_some() {
            self.deploy_queued.notify_one();
        }
        if recorded.inserted {
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
        Ok(recorded)
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
        if let Err(e) = self.cache.publish_delivery(entry.source, &fields).await {
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

/// Whether a delivery is a push that should roll out. Only GitHub's and Gitea's `push` events
/// count, and only when deploys are configured.
pub fn push_decision(
    deploy: Option<&DeployConfig>,
    source: &SourceConfig,
    event_type: &str,
    payload: &Value,
) -> Push {
    let is_push =
        matches!(source.scheme, SourceScheme::Github | SourceScheme::Gitea) && event_type == "push";
    let Some(deploy) = deploy.filter(|_| is_push) else {
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
        .filter(|c| matches!(c.len(), 40 | 64) && c.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return Push::Ignored("the push names no commit");
    };
    Push::Deploy(QueuedDeploy {
        repository: deploy.repository.clone(),
        branch: deploy.branch.clone(),
        commit_sha: commit.to_ascii_lowercase(),
        requested_by: None,
    })
}
