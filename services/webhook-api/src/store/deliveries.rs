//! Deliveries of the configured sources in `webhook_events`: recorded (with a push's deploy),
//! looked up by key, read back for a replay. The operators' views are in `event_views`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;

use super::StoreError;

/// What became of a stored delivery (`webhook_events.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventOutcome {
    /// FAL: the avatar changed.
    Applied,
    /// Nothing to change (FAL), or a push to another branch (sources).
    Ignored,
    /// FAL: no avatar has the request id (yet).
    Unmatched,
    /// A source's delivery, stored.
    Accepted,
    /// Refused for its signature or body; stored without the body.
    Rejected,
    /// Accepted, but what it asked for failed (a deploy).
    Failed,
}

impl EventOutcome {
    const ALL: [EventOutcome; 6] = [
        EventOutcome::Applied,
        EventOutcome::Ignored,
        EventOutcome::Unmatched,
        EventOutcome::Accepted,
        EventOutcome::Rejected,
        EventOutcome::Failed,
    ];
    /// What operators list as failures.
    pub const FAILURES: [EventOutcome; 3] = [
        EventOutcome::Rejected,
        EventOutcome::Unmatched,
        EventOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Applied => "applied",
            EventOutcome::Ignored => "ignored",
            EventOutcome::Unmatched => "unmatched",
            EventOutcome::Accepted => "accepted",
            EventOutcome::Rejected => "rejected",
            EventOutcome::Failed => "failed",
        }
    }
}

impl EventOutcome {
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|o| o.as_str()).collect()
    }

    /// `webhook_events.outcome` in column `index` of `row`.
    pub(super) fn read(row: &tokio_postgres::Row, index: usize) -> Result<Self, StoreError> {
        let stored: String = row.try_get(index)?;
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == stored)
            .ok_or_else(|| {
                StoreError::Unexpected(anyhow::anyhow!(
                    "webhook_events.outcome {stored:?} is not one this service writes"
                ))
            })
    }
}

/// A verified delivery of a configured source, ready to be recorded.
#[derive(Debug)]
pub struct SourceDelivery<'a> {
    pub source: &'a str,
    pub scheme: &'a str,
    pub event_type: &'a str,
    /// The sender's id; `None` when it sends none (the key then uses the body's hash).
    pub delivery_id: Option<&'a str>,
    pub delivery_key: &'a str,
    pub headers: &'a Value,
    /// The raw body (JSON).
    pub body: &'a str,
    pub outcome: EventOutcome,
    pub reason: Option<&'a str>,
    pub http_request_id: &'a str,
    pub instance_id: &'a str,
    pub processing_ms: f32,
    /// A push that should roll out: queued in the same transaction as the event.
    pub deploy: Option<&'a QueuedDeploy>,
    /// When it reached us, if not now (a delivery that waited in the spool).
    pub received_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QueuedDeploy {
    pub repository: String,
    pub branch: String,
    pub commit_sha: String,
    /// The commit the push built on (its `before`), when it names one: a push built on
    /// another's commit is newer than it, whatever the clocks say. Absent in what an older
    /// version spooled.
    #[serde(default)]
    pub before_sha: Option<String>,
    /// The operator token that asked to deploy this commit again; `None` for a push.
    pub requested_by: Option<String>,
}

#[derive(Debug)]
pub struct Recorded {
    pub event_id: i64,
    /// False: the delivery key was already there, this is a redelivery.
    pub inserted: bool,
    /// The outcome the delivery was first recorded with.
    pub outcome: EventOutcome,
    pub deploy_id: Option<i64>,
    /// The request that stored the row: a spooled delivery whose commit landed unseen (the
    /// answer timed out) finds its own request here.
    pub first_request_id: Option<String>,
}

/// Same contract as the FAL path: the upsert waits for a concurrent first delivery's commit,
/// then counts this one as a redelivery.
const RECORD: &str = "INSERT INTO webhook_events \
     (source, delivery_key, delivery_id, event, outcome, outcome_reason, signature_scheme, \
      http_request_id, instance_id, headers, payload, processing_ms, received_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb, $12, \
             coalesce($13, now())) \
     ON CONFLICT (delivery_key) DO UPDATE SET \
       deliveries = webhook_events.deliveries + 1, last_delivered_at = now() \
     RETURNING id, (xmax = 0) AS inserted, outcome, http_request_id";

/// Nothing when the event, or its commit, already has its deploy (migration V7's unique
/// indexes), unless an operator asked for it (`requested_by`). A push takes its place in the
/// sender's order from when it reached us (`received_at`, kept through the spool); an
/// operator's redeploy is newer than everything before it.
const QUEUE_DEPLOY: &str = "INSERT INTO deploys \
       (event_id, source, repository, branch, commit_sha, requested_by, before_sha, pushed_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7, \
       CASE WHEN $6::text IS NULL THEN e.received_at ELSE now() END \
     FROM webhook_events e WHERE e.id = $1 \
     ON CONFLICT DO NOTHING RETURNING id";

pub async fn record(pool: &Pool, delivery: &SourceDelivery<'_>) -> Result<Recorded, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            &tx.prepare_cached(RECORD).await?,
            &[
                &delivery.source,
                &delivery.delivery_key,
                &delivery.delivery_id,
                &delivery.event_type,
                &delivery.outcome.as_str(),
                &delivery.reason,
                &delivery.scheme,
                &delivery.http_request_id,
                &delivery.instance_id,
                delivery.headers,
                &delivery.body,
                &delivery.processing_ms,
                &delivery.received_at,
            ],
        )
        .await?;
    let event_id: i64 = row.try_get(0)?;
    let inserted: bool = row.try_get(1)?;
    let deploy_id = match (inserted, delivery.deploy) {
        (true, Some(deploy)) => queue_deploy(&*tx, event_id, delivery.source, deploy).await?,
        _ => None,
    };
    tx.commit().await?;
    Ok(Recorded {
        event_id,
        inserted,
        outcome: EventOutcome::read(&row, 2)?,
        deploy_id,
        first_request_id: row.try_get(3)?,
    })
}

/// Which of these delivery keys are stored.
pub async fn stored_keys(
    pool: &Pool,
    keys: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT delivery_key FROM webhook_events WHERE delivery_key = ANY($1)",
            &[&keys],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// `None` when the event or its commit already has its deploy.
pub async fn queue_deploy(
    client: &impl tokio_postgres::GenericClient,
    event_id: i64,
    source: &str,
    deploy: &QueuedDeploy,
) -> Result<Option<i64>, StoreError> {
    let row = client
        .query_opt(
            QUEUE_DEPLOY,
            &[
                &event_id,
                &source,
                &deploy.repository,
                &deploy.branch,
                &deploy.commit_sha,
                &deploy.requested_by,
                &deploy.before_sha,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// A stored delivery as replay needs it.
#[derive(Debug)]
pub struct StoredEvent {
    pub id: i64,
    pub source: String,
    pub event_type: String,
    pub delivery_id: Option<String>,
    pub outcome: EventOutcome,
    pub signature_scheme: String,
    pub training_type: Option<String>,
    /// `None` for a rejected request: nothing verified was kept.
    pub payload: Option<String>,
}

pub async fn stored_event(pool: &Pool, id: i64) -> Result<Option<StoredEvent>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, source, event, delivery_id, outcome, signature_scheme, training_type, \
               payload::text FROM webhook_events WHERE id = $1",
            &[&id],
        )
        .await?;
    row.map(|r| {
        Ok(StoredEvent {
            id: r.try_get(0)?,
            source: r.try_get(1)?,
            event_type: r.try_get(2)?,
            delivery_id: r.try_get(3)?,
            outcome: EventOutcome::read(&r, 4)?,
            signature_scheme: r.try_get(5)?,
            training_type: r.try_get(6)?,
            payload: r.try_get(7)?,
        })
    })
    .transpose()
}

pub async fn mark_replayed(pool: &Pool, id: i64) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE webhook_events SET replays = replays + 1, last_replayed_at = now() \
             WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}
