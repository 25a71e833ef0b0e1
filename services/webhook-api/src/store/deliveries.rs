//! Deliveries of the configured sources, and the operators' views over every delivery (FAL's
//! included): all of them live in `webhook_events`.

use std::sync::LazyLock;

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
    /// `webhook_events.outcome` in column `index` of `row`.
    fn read(row: &tokio_postgres::Row, index: usize) -> Result<Self, StoreError> {
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
/// indexes), unless an operator asked for it (`requested_by`).
const QUEUE_DEPLOY: &str =
    "INSERT INTO deploys (event_id, source, repository, branch, commit_sha, requested_by) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id";

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

/// A stored delivery as operators read it (`payload` and `headers` only for one event).
#[derive(Debug)]
pub struct EventRow {
    pub id: i64,
    pub source: String,
    pub delivery_key: Option<String>,
    pub delivery_id: Option<String>,
    pub fal_request_id: Option<String>,
    pub event: String,
    pub avatar_id: Option<uuid::Uuid>,
    pub outcome: EventOutcome,
    pub outcome_reason: Option<String>,
    pub signature_scheme: String,
    pub http_request_id: Option<String>,
    pub instance_id: Option<String>,
    pub training_type: Option<String>,
    pub status_code: i16,
    pub processing_ms: Option<f32>,
    pub deliveries: i32,
    pub replays: i32,
    pub received_at: DateTime<Utc>,
    pub last_delivered_at: DateTime<Utc>,
    pub last_replayed_at: Option<DateTime<Utc>>,
    pub headers: Option<Value>,
    pub payload: Option<Value>,
}

impl EventRow {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.try_get(0)?,
            source: row.try_get(1)?,
            delivery_key: row.try_get(2)?,
            delivery_id: row.try_get(3)?,
            fal_request_id: row.try_get(4)?,
            event: row.try_get(5)?,
            avatar_id: row.try_get(6)?,
            outcome: EventOutcome::read(row, 7)?,
            outcome_reason: row.try_get(8)?,
            signature_scheme: row.try_get(9)?,
            http_request_id: row.try_get(10)?,
            instance_id: row.try_get(11)?,
            training_type: row.try_get(12)?,
            status_code: row.try_get(13)?,
            processing_ms: row.try_get(14)?,
            deliveries: row.try_get(15)?,
            replays: row.try_get(16)?,
            received_at: row.try_get(17)?,
            last_delivered_at: row.try_get(18)?,
            last_replayed_at: row.try_get(19)?,
            headers: row.try_get(20)?,
            payload: row.try_get(21)?,
        })
    }
}

/// `$1` says whether to read the headers and the payload.
const SELECT_EVENTS: &str = "SELECT id, source, delivery_key, delivery_id, fal_request_id, event, \
     avatar_id, outcome, outcome_reason, signature_scheme, http_request_id, instance_id, \
     training_type, status_code, processing_ms, deliveries, replays, received_at, \
     last_delivered_at, last_replayed_at, CASE WHEN $1 THEN headers END, \
     CASE WHEN $1 THEN payload END FROM webhook_events";

pub async fn event(pool: &Pool, id: i64) -> Result<Option<EventRow>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(&format!("{SELECT_EVENTS} WHERE id = $2"), &[&true, &id])
        .await?;
    row.as_ref().map(EventRow::from_row).transpose()
}

/// Failures newest first, `limit` at a time: the partial index `webhook_events_failures_idx`
/// has the same list.
static FAILURES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{SELECT_EVENTS} WHERE outcome IN ({}) \
           AND ($2::text IS NULL OR source = $2) AND ($3::bigint IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
        sql_list(&EventOutcome::FAILURES)
    )
});

/// A page of failures and where the next one starts (`before`: the previous `next_before`).
pub async fn failures(
    pool: &Pool,
    source: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<EventRow>, Option<i64>), StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(FAILURES.as_str(), &[&false, &source, &before, &limit])
        .await?;
    let events = rows
        .iter()
        .map(EventRow::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_before = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok((events, next_before))
}

/// Events of one source (and, unless `whole_source`, one outcome and answer class).
#[derive(Debug)]
pub struct OutcomeCounts {
    pub source: String,
    /// The line of the source's totals.
    pub whole_source: bool,
    pub outcome: Option<String>,
    /// `2xx`, `4xx`, `5xx`.
    pub status_class: Option<String>,
    pub events: i64,
    pub deliveries: i64,
    pub processing_ms_p50: Option<f64>,
    pub processing_ms_p99: Option<f64>,
}

/// Counts by source, outcome and answer class over the last `hours`, with processing time;
/// each source's totals first.
pub async fn outcome_counts(pool: &Pool, hours: i32) -> Result<Vec<OutcomeCounts>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT source, outcome, (status_code / 100)::text || 'xx', count(*), \
               sum(deliveries)::bigint, \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY processing_ms), \
               percentile_cont(0.99) WITHIN GROUP (ORDER BY processing_ms), \
               GROUPING(outcome) \
             FROM webhook_events WHERE received_at > now() - make_interval(hours => $1) \
             GROUP BY GROUPING SETS ((source, outcome, status_code / 100), (source)) \
             ORDER BY 1, 8 DESC, 2, 3",
            &[&hours],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(OutcomeCounts {
                source: row.try_get(0)?,
                whole_source: row.try_get::<_, i32>(7)? == 1,
                outcome: row.try_get(1)?,
                status_class: row.try_get(2)?,
                events: row.try_get(3)?,
                deliveries: row.try_get(4)?,
                processing_ms_p50: row.try_get(5)?,
                processing_ms_p99: row.try_get(6)?,
            })
        })
        .collect()
}

/// A source's latest activity.
#[derive(Debug)]
pub struct SourceActivity {
    pub source: String,
    pub last_received_at: Option<DateTime<Utc>>,
    pub last_accepted_at: Option<DateTime<Utc>>,
    /// In the last hour.
    pub accepted: i64,
    pub rejected: i64,
    pub failed: i64,
}

/// Per source: when it last sent anything, last got through, and the last hour's outcomes.
pub async fn source_activity(pool: &Pool) -> Result<Vec<SourceActivity>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT source, max(received_at), \
               max(received_at) FILTER (WHERE outcome IN ('accepted', 'applied')), \
               count(*) FILTER (WHERE received_at > now() - interval '1 hour' \
                                  AND outcome IN ('accepted', 'applied', 'ignored')), \
               count(*) FILTER (WHERE received_at > now() - interval '1 hour' \
                                  AND outcome = 'rejected'), \
               count(*) FILTER (WHERE received_at > now() - interval '1 hour' \
                                  AND outcome IN ('failed', 'unmatched')) \
             FROM webhook_events WHERE received_at > now() - interval '7 days' \
             GROUP BY source ORDER BY source",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SourceActivity {
                source: r.try_get(0)?,
                last_received_at: r.try_get(1)?,
                last_accepted_at: r.try_get(2)?,
                accepted: r.try_get(3)?,
                rejected: r.try_get(4)?,
                failed: r.try_get(5)?,
            })
        })
        .collect()
}

/// `'a', 'b'` for `IN (...)`.
fn sql_list(outcomes: &[EventOutcome]) -> String {
    let quoted: Vec<String> = outcomes
        .iter()
        .map(|o| format!("'{}'", o.as_str()))
        .collect();
    quoted.join(", ")
}
