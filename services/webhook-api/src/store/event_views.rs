//! The operators' views over every delivery (FAL's included) in `webhook_events`: one event,
//! the failures, counts by outcome, each source's latest activity.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde_json::Value;

use super::deliveries::EventOutcome;
use super::StoreError;

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
    /// The JSON text as PostgreSQL keeps it: a number past a float's range (JSON has no limit,
    /// jsonb keeps it exactly) would not fit a `serde_json::Value`.
    pub payload: Option<String>,
}

impl EventRow {
    pub(super) fn from_row(row: &tokio_postgres::Row) -> Result<Self, StoreError> {
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

/// The columns `EventRow::from_row` reads, in its order; `bodies` is an SQL boolean (`$1`,
/// `true`, `false`) saying whether the headers and the payload are read.
pub(super) fn event_columns(bodies: &str) -> String {
    format!(
        "id, source, delivery_key, delivery_id, fal_request_id, event, \
         avatar_id, outcome, outcome_reason, signature_scheme, http_request_id, instance_id, \
         training_type, status_code, processing_ms, deliveries, replays, received_at, \
         last_delivered_at, last_replayed_at, CASE WHEN {bodies} THEN headers END, \
         CASE WHEN {bodies} THEN payload::text END"
    )
}

/// Every delivery's row; `$1` says whether to read the headers and the payload.
pub(super) static SELECT_EVENTS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM webhook_events", event_columns("$1")));

pub async fn event(pool: &Pool, id: i64) -> Result<Option<EventRow>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(&format!("{} WHERE id = $2", *SELECT_EVENTS), &[&true, &id])
        .await?;
    row.as_ref().map(EventRow::from_row).transpose()
}

/// Failures newest first, `limit` at a time: the partial index `webhook_events_failures_idx`
/// has the same list.
static FAILURES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} WHERE outcome IN ({}) \
           AND ($2::text IS NULL OR source = $2) AND ($3::bigint IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4",
        *SELECT_EVENTS,
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
    let next_before = super::next_before(&events, limit, |e| e.id);
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
