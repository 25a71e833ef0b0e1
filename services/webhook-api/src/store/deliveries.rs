//! Deliveries of the configured sources, and the operators' views over every delivery (FAL's
//! included): all of them live in `webhook_events`.

use deadpool_postgres::Pool;
use serde_json::{json, Value};

use super::StoreError;

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
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub http_request_id: &'a str,
    pub instance_id: &'a str,
    pub processing_ms: f32,
    /// A push that should roll out: queued in the same transaction as the event.
    pub deploy: Option<&'a QueuedDeploy>,
}

#[derive(Debug, Clone)]
pub struct QueuedDeploy {
    pub repository: String,
    pub branch: String,
    pub commit_sha: Option<String>,
}

#[derive(Debug)]
pub struct Recorded {
    pub event_id: i64,
    /// False: the delivery key was already there, this is a redelivery.
    pub inserted: bool,
    /// The outcome the delivery was first recorded with.
    pub outcome: String,
    pub deploy_id: Option<i64>,
}

/// Same contract as the FAL path: the upsert waits for a concurrent first delivery's commit,
/// then counts this one as a redelivery.
const RECORD: &str = "INSERT INTO webhook_events \
     (source, delivery_key, delivery_id, event, outcome, outcome_reason, signature_scheme, \
      http_request_id, instance_id, headers, payload, processing_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb, $12) \
     ON CONFLICT (delivery_key) DO UPDATE SET \
       deliveries = webhook_events.deliveries + 1, last_delivered_at = now() \
     RETURNING id, (xmax = 0) AS inserted, outcome";

const QUEUE_DEPLOY: &str =
    "INSERT INTO deploys (event_id, source, repository, branch, commit_sha) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING id";

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
                &delivery.outcome,
                &delivery.reason,
                &delivery.scheme,
                &delivery.http_request_id,
                &delivery.instance_id,
                delivery.headers,
                &delivery.body,
                &delivery.processing_ms,
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
        outcome: row.try_get(2)?,
        deploy_id,
    })
}

/// `None` when the event already has its deploy.
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
    pub outcome: String,
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
            outcome: r.try_get(4)?,
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

/// The whole row, as operators read it.
pub async fn event_json(pool: &Pool, id: i64) -> Result<Option<Value>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT to_jsonb(e) FROM webhook_events e WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

pub const FAILED_OUTCOMES: [&str; 3] = ["rejected", "unmatched", "failed"];

/// Newest first, `limit` at a time; `before` is the previous page's `next_before`.
pub async fn failures(
    pool: &Pool,
    source: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Value, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, to_jsonb(e) - 'payload' - 'headers' FROM webhook_events e \
             WHERE outcome IN ('rejected', 'unmatched', 'failed') \
               AND ($1::text IS NULL OR source = $1) AND ($2::bigint IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
            &[&source, &before, &limit],
        )
        .await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.get::<_, i64>(0)))
        .flatten();
    let items: Vec<Value> = rows.iter().map(|r| r.get(1)).collect();
    Ok(json!({ "items": items, "next_before": next_before }))
}

/// Counts by source, outcome and answer class over the last `hours`, with processing time.
pub async fn metrics(pool: &Pool, hours: i32) -> Result<Value, StoreError> {
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
    let mut sources = serde_json::Map::new();
    for row in rows {
        let source: String = row.get(0);
        let whole_source = row.get::<_, i32>(7) == 1;
        let entry = sources
            .entry(source)
            .or_insert_with(|| json!({ "by_outcome": [] }));
        let timing = json!({
            "events": row.get::<_, i64>(3),
            "deliveries": row.get::<_, i64>(4),
            "processing_ms_p50": row.get::<_, Option<f64>>(5),
            "processing_ms_p99": row.get::<_, Option<f64>>(6),
        });
        if whole_source {
            entry["total"] = timing;
        } else if let Some(list) = entry["by_outcome"].as_array_mut() {
            let mut item = json!({
                "outcome": row.get::<_, String>(1),
                "status_class": row.get::<_, String>(2),
            });
            item.as_object_mut()
                .expect("an object")
                .extend(timing.as_object().expect("an object").clone());
            list.push(item);
        }
    }
    Ok(json!({ "hours": hours, "sources": sources }))
}

/// Per source: when it last sent anything, last got through, and the last hour's outcomes.
pub async fn source_activity(pool: &Pool) -> Result<Vec<Value>, StoreError> {
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
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "source": r.get::<_, String>(0),
                "last_received_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(1),
                "last_accepted_at": r.get::<_, Option<chrono::DateTime<chrono::Utc>>>(2),
                "last_hour": {
                    "accepted": r.get::<_, i64>(3),
                    "rejected": r.get::<_, i64>(4),
                    "failed": r.get::<_, i64>(5),
                },
            })
        })
        .collect())
}
