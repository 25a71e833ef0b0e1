//! The operators' console: its sessions, finding deliveries among millions (newest first,
//! keyset paging on `id`, every query bounded in time), and what one delivery caused.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::deliveries::EventOutcome;
use super::event_views::{EventRow, SELECT_EVENTS};
use super::StoreError;

/// A signed-in browser: the session id's digest (the id itself is only in the cookie), the
/// token it was opened with (its digest: a token removed or changed ends its sessions).
#[derive(Debug, Clone)]
pub struct Session {
    pub token_name: String,
    pub token_sha256: Vec<u8>,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn open_session(
    pool: &Pool,
    id_sha256: &[u8],
    session: &Session,
) -> Result<(), StoreError> {
    let client = pool.get().await?;
    // Each sign-in sweeps the sessions that ended (they are few: one a sign-in).
    client
        .execute("DELETE FROM console_sessions WHERE expires_at < now()", &[])
        .await?;
    client
        .execute(
            "INSERT INTO console_sessions (id_sha256, token_name, token_sha256, csrf, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &id_sha256,
                &session.token_name,
                &session.token_sha256,
                &session.csrf,
                &session.expires_at,
            ],
        )
        .await?;
    Ok(())
}

/// The session, if it exists and has not expired.
pub async fn session(pool: &Pool, id_sha256: &[u8]) -> Result<Option<Session>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT token_name, token_sha256, csrf, expires_at FROM console_sessions \
             WHERE id_sha256 = $1 AND expires_at > now()",
            &[&id_sha256],
        )
        .await?;
    row.map(|row| {
        Ok(Session {
            token_name: row.try_get(0)?,
            token_sha256: row.try_get(1)?,
            csrf: row.try_get(2)?,
            expires_at: row.try_get(3)?,
        })
    })
    .transpose()
}

/// Signs out: the session and every expired one.
pub async fn close_session(pool: &Pool, id_sha256: &[u8]) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "DELETE FROM console_sessions WHERE id_sha256 = $1 OR expires_at < now()",
            &[&id_sha256],
        )
        .await?;
    Ok(())
}

/// What the deliveries page filters on; every field optional.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryFilter {
    pub source: Option<String>,
    pub event: Option<String>,
    pub outcome: Option<EventOutcome>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The sender's delivery id (`X-GitHub-Delivery`, `webhook-id`, …).
    pub delivery_id: Option<String>,
    pub fal_request_id: Option<String>,
    pub avatar_id: Option<Uuid>,
    /// JSON the body must contain (`payload @> …`), already checked to parse.
    pub body_contains: Option<String>,
}

/// A page of deliveries, newest first.
#[derive(Debug)]
pub struct DeliveryPage {
    pub rows: Vec<EventRow>,
    /// The cursor of the next (older) page.
    pub next_before: Option<i64>,
    /// PostgreSQL's estimate of how many match (not a count: counting millions is slow).
    pub estimated_total: i64,
}

/// Why a search has no page.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the search took longer than {} ms: narrow it (a source, a time range, an id)", .0.as_millis())]
    TooSlow(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The `WHERE` clause and its parameters for a filter (the cursor and the page size apart).
struct Query {
    sql: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Query {
    fn new(filter: &DeliveryFilter) -> Self {
        let mut query = Query {
            sql: String::from(" WHERE true"),
            params: Vec::new(),
        };
        if let Some(source) = &filter.source {
            query.push("source =", source.clone());
        }
        if let Some(event) = &filter.event {
            query.push("event =", event.clone());
        }
        if let Some(outcome) = filter.outcome {
            query.push("outcome =", outcome.as_str().to_string());
        }
        if let Some(id) = &filter.delivery_id {
            query.push("delivery_id =", id.clone());
        }
        if let Some(id) = &filter.fal_request_id {
            query.push("fal_request_id =", id.clone());
        }
        if let Some(id) = filter.avatar_id {
            query.push("avatar_id =", id);
        }
        if let Some(json) = &filter.body_contains {
            let value: serde_json::Value =
                serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
            query.push("payload @>", value);
        }
        // Exact bounds: a delivery that waited in a spool has a later id than its time.
        if let Some(since) = filter.since {
            query.push("received_at >=", since);
        }
        if let Some(until) = filter.until {
            query.push("received_at <", until);
        }
        query
    }

    fn push(&mut self, condition: &str, value: impl ToSql + Sync + Send + 'static) {
        self.params.push(Box::new(value));
        let _ = write!(self.sql, " AND {condition} ${}", self.params.len());
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// What a page reads of each delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// The list's columns.
    Summary,
    /// With the headers and the body (the export).
    Whole,
}

/// One page of deliveries older than `before`, `limit` of them, in at most `budget`.
pub async fn deliveries(
    pool: &Pool,
    filter: &DeliveryFilter,
    before: Option<i64>,
    limit: i64,
    budget: Duration,
    columns: Columns,
) -> Result<DeliveryPage, SearchError> {
    let mut query = Query::new(filter);
    let estimate_sql = format!(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM webhook_events{}",
        query.sql
    );
    let estimate_params = query.refs().len();
    // Within a time range the page follows the time (its index finds the range's newest at
    // once; ids and times agree but for a delivery that waited in a spool, and PostgreSQL
    // cannot know they agree); otherwise the id, the order of arrival. The cursor is an id
    // either way.
    let by_time = filter.since.is_some() || filter.until.is_some();
    if let Some(before) = before {
        if by_time {
            query.params.push(Box::new(before));
            let n = query.params.len();
            let _ = write!(
                query.sql,
                " AND (received_at, id) < (coalesce((SELECT received_at FROM webhook_events \
                   WHERE id = ${n}), 'infinity'), ${n})"
            );
        } else {
            query.push("id <", before);
        }
    }
    query.params.push(Box::new(limit));
    let order = if by_time {
        "received_at DESC, id DESC"
    } else {
        "id DESC"
    };
    // `$1` of SELECT_EVENTS: whether to read the headers and the payload.
    let whole = if columns == Columns::Whole {
        "true"
    } else {
        "false"
    };
    let sql = format!(
        "{} ORDER BY {order} LIMIT ${}",
        SELECT_EVENTS.replace("$1", whole),
        query.params.len()
    );
    let sql = sql.replacen(
        " FROM webhook_events",
        &format!(" FROM webhook_events{}", query.sql),
        1,
    );
    let params = query.refs();
    let mut client = pool.get().await.map_err(StoreError::from)?;
    // A body search along the primary key finds a common body at once and a rare one only at
    // the end of the table; the bodies' index the other way round, and PostgreSQL cannot tell
    // which it is. So the key's plan gets a short try, and the index's plan the rest.
    let mut plans = vec![(budget, None)];
    if filter.body_contains.is_some() && budget > BODY_FIRST_TRY {
        plans = vec![
            (BODY_FIRST_TRY, None),
            (
                budget - BODY_FIRST_TRY,
                Some("SET LOCAL enable_indexscan = off"),
            ),
        ];
    }
    let mut found = None;
    for (i, (limit_ms, setting)) in plans.iter().enumerate() {
        let transaction = client.transaction().await.map_err(StoreError::from)?;
        // No parallel workers: starting them takes longer than an indexed page (80 ms against
        // 0.3 ms for a rare body over 10 million rows, measured).
        transaction
            .batch_execute(&format!(
                "SET LOCAL statement_timeout = {}; SET LOCAL max_parallel_workers_per_gather = 0; {}",
                limit_ms.as_millis(),
                setting.unwrap_or("")
            ))
            .await
            .map_err(StoreError::from)?;
        let rows = match transaction.query(&sql, &params).await {
            Ok(rows) => rows,
            // Dropped, the transaction rolls back.
            Err(e) if i + 1 < plans.len() && is_cancelled(&e) => continue,
            Err(e) => return Err(timed_out(e, budget)),
        };
        let plan: serde_json::Value = transaction
            .query_one(&estimate_sql, &params[..estimate_params])
            .await
            .map_err(|e| timed_out(e, budget))?
            .try_get(0)
            .map_err(StoreError::from)?;
        transaction.commit().await.map_err(StoreError::from)?;
        found = Some((rows, plan));
        break;
    }
    let (rows, plan) = found.expect("the last plan answers or fails");
    let rows = rows
        .iter()
        .map(EventRow::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|e| e.id))
        .flatten();
    let estimated = plan
        .pointer("/0/Plan/Plan Rows")
        .and_then(serde_json::Value::as_f64)
        .map_or(0, |rows| rows.round() as i64);
    // The first page that is also the last one is the whole count.
    let estimated_total = match (before, next_before) {
        (None, None) => rows.len() as i64,
        _ => estimated.max(rows.len() as i64),
    };
    Ok(DeliveryPage {
        rows,
        next_before,
        estimated_total,
    })
}

/// Deliveries stored after `after`, oldest first (the live tail).
pub async fn since(pool: &Pool, after: i64, limit: i64) -> Result<Vec<EventRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!("{SELECT_EVENTS} WHERE id > $2 ORDER BY id LIMIT $3"),
            &[&false, &after, &limit],
        )
        .await?;
    rows.iter().map(EventRow::from_row).collect()
}

/// The newest delivery's id (0 when there is none).
pub async fn newest_id(pool: &Pool) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query_one("SELECT coalesce(max(id), 0) FROM webhook_events", &[])
        .await?
        .try_get(0)?)
}

/// How many deliveries below `before` the filter matches, counted up to `most` (an exact
/// count of millions would take too long to show).
pub async fn count_up_to(
    pool: &Pool,
    filter: &DeliveryFilter,
    before: i64,
    most: i64,
    budget: Duration,
) -> Result<i64, SearchError> {
    let mut query = Query::new(filter);
    query.push("id <", before);
    query.params.push(Box::new(most));
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM webhook_events{} LIMIT ${}) matching",
        query.sql,
        query.params.len()
    );
    let params = query.refs();
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let transaction = client.transaction().await.map_err(StoreError::from)?;
    transaction
        .batch_execute(&format!(
            "SET LOCAL statement_timeout = {}",
            budget.as_millis()
        ))
        .await
        .map_err(StoreError::from)?;
    let count: i64 = transaction
        .query_one(&sql, &params)
        .await
        .map_err(|e| timed_out(e, budget))?
        .try_get(0)
        .map_err(StoreError::from)?;
    transaction.commit().await.map_err(StoreError::from)?;
    Ok(count)
}

/// How long a body search may follow the primary key before the bodies' index is asked.
const BODY_FIRST_TRY: Duration = Duration::from_millis(30);

/// Whether `statement_timeout` cancelled the statement (SQLSTATE 57014).
fn is_cancelled(e: &tokio_postgres::Error) -> bool {
    e.code().map(|c| c.code()) == Some("57014")
}

/// A statement cancelled by its `statement_timeout` is a search too broad.
fn timed_out(e: tokio_postgres::Error, budget: Duration) -> SearchError {
    if is_cancelled(&e) {
        SearchError::TooSlow(budget)
    } else {
        SearchError::Store(e.into())
    }
}

/// What one delivery caused, beside the delivery itself.
#[derive(Debug, Default)]
pub struct Consequences {
    /// The avatar as it is now: its status and name.
    pub avatar: Option<(String, Option<String>)>,
    /// The kind of the avatar's applied delivery before this one (`None`: this was its first).
    pub previous_change: Option<String>,
    pub file_jobs: Vec<(i64, String, i32, Option<String>)>,
    /// Follow-ups of the change: kind, state, result or last error.
    pub followups: Vec<(String, String, Option<String>)>,
    /// Replays and other operator actions on it: when, who, status.
    pub actions: Vec<(DateTime<Utc>, String, String, i16)>,
    /// The deploy it queued: id, state.
    pub deploy: Option<(i64, String)>,
}

pub async fn consequences(pool: &Pool, event: &EventRow) -> Result<Consequences, StoreError> {
    let client = pool.get().await?;
    let mut found = Consequences::default();
    if let Some(avatar_id) = event.avatar_id {
        found.avatar = client
            .query_opt(
                "SELECT status::text, name FROM avatars WHERE id = $1",
                &[&avatar_id],
            )
            .await?
            .map(|row| Ok::<_, StoreError>((row.try_get(0)?, row.try_get(1)?)))
            .transpose()?;
        found.previous_change = client
            .query_opt(
                "SELECT event FROM webhook_events WHERE avatar_id = $1 AND id < $2 \
                   AND outcome = 'applied' ORDER BY avatar_id, id DESC LIMIT 1",
                &[&avatar_id, &event.id],
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        for row in client
            .query(
                "SELECT id, state, attempts, last_error FROM file_jobs \
                 WHERE avatar_id = $1 AND event_id = $2 ORDER BY id",
                &[&avatar_id, &event.id],
            )
            .await?
        {
            found.file_jobs.push((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ));
        }
    }
    if let Some(key) = &event.delivery_key {
        for row in client
            .query(
                "SELECT kind, state, coalesce(result, last_error) FROM avatar_followups \
                 WHERE delivery_key = $1 ORDER BY kind",
                &[key],
            )
            .await?
        {
            found
                .followups
                .push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
        }
    }
    // Replays through the API (`/events/{id}/replay`) and the console (`/deliveries/{id}/replay`).
    let target = format!("%/{}/replay%", event.id);
    for row in client
        .query(
            "SELECT at, token_name, action, status_code FROM operator_audit \
             WHERE target LIKE $1 ORDER BY id DESC LIMIT 50",
            &[&target],
        )
        .await?
    {
        found.actions.push((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        ));
    }
    found.deploy = client
        .query_opt(
            "SELECT id, state FROM deploys WHERE event_id = $1",
            &[&event.id],
        )
        .await?
        .map(|row| Ok::<_, StoreError>((row.try_get(0)?, row.try_get(1)?)))
        .transpose()?;
    Ok(found)
}

/// One operator action, as the audit page lists it.
#[derive(Debug)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub token_name: String,
    pub action: String,
    pub target: Option<String>,
    pub status_code: i16,
    pub instance_id: String,
}

/// The audit log, newest first, keyset paged.
pub async fn audit(
    pool: &Pool,
    before: Option<i64>,
    limit: i64,
) -> Result<(Vec<AuditRow>, Option<i64>), StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, at, token_name, action, target, status_code, instance_id \
             FROM operator_audit WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
            &[&before, &limit],
        )
        .await?;
    let rows = rows
        .iter()
        .map(|row| {
            Ok(AuditRow {
                id: row.try_get(0)?,
                at: row.try_get(1)?,
                token_name: row.try_get(2)?,
                action: row.try_get(3)?,
                target: row.try_get(4)?,
                status_code: row.try_get(5)?,
                instance_id: row.try_get(6)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok((rows, next))
}

/// The indexes the console's searches read, built without blocking the webhooks' writes
/// (`CONCURRENTLY`, after start, by one instance at a time): name, definition, and storage
/// options as PostgreSQL lists them. One left invalid by an interrupted build, or built with
/// other options, is dropped and built again.
pub const INDEXES: [(&str, &str, &[&str]); 4] = [
    (
        "webhook_events_source_event_idx",
        "webhook_events (source, event, id)",
        &[],
    ),
    (
        "webhook_events_delivery_id_idx",
        "webhook_events (delivery_id) WHERE delivery_id IS NOT NULL",
        &[],
    ),
    (
        "webhook_events_avatar_idx",
        "webhook_events (avatar_id, id) WHERE avatar_id IS NOT NULL",
        &[],
    ),
    // Without `fastupdate` each insert updates the index itself: with it, inserts queue their
    // entries in a list that the insert filling it (4 MB) merges into the index, holding its
    // batch 110–230 ms every 2–3 s at saturation (BENCHMARKS.md), for the same throughput.
    (
        "webhook_events_payload_idx",
        "webhook_events USING gin (payload jsonb_path_ops)",
        &["fastupdate=off"],
    ),
];

/// Any constant shared by all instances: "console" in ASCII.
const INDEX_LOCK_KEY: i64 = 0x0063_6f6e_736f_6c65;

/// Builds the missing console indexes; `Ok(built)` names those it built.
pub async fn ensure_indexes(pool: &Pool) -> Result<Vec<&'static str>, StoreError> {
    let client = pool.get().await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&INDEX_LOCK_KEY])
        .await?
        .try_get(0)?;
    if !locked {
        return Ok(Vec::new());
    }
    let mut built = Vec::new();
    let result = async {
        // An index over millions of rows takes longer than any statement timeout.
        client.batch_execute("SET statement_timeout = 0").await?;
        for (name, definition, options) in INDEXES {
            let current: Option<bool> = client
                .query_opt(
                    "SELECT i.indisvalid AND COALESCE(c.reloptions, '{}') = $2::text[] \
                     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                     WHERE i.indexrelid = to_regclass($1)",
                    &[&name, &options],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            if current == Some(true) {
                continue;
            }
            if current == Some(false) {
                client
                    .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                    .await?;
            }
            let with = if options.is_empty() {
                String::new()
            } else {
                format!(" WITH ({})", options.join(", "))
            };
            client
                .batch_execute(&format!(
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {definition}{with}"
                ))
                .await?;
            built.push(name);
        }
        Ok::<_, StoreError>(())
    }
    .await;
    client.batch_execute("RESET statement_timeout").await?;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&INDEX_LOCK_KEY])
        .await?;
    result.map(|()| built)
}

/// Whether every console index is built and valid (the page says so while they are not).
pub async fn indexes_ready(pool: &Pool) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let names: Vec<&str> = INDEXES.iter().map(|(name, _, _)| *name).collect();
    let valid: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = ANY($1) AND i.indisvalid",
            &[&names],
        )
        .await?
        .try_get(0)?;
    Ok(valid == INDEXES.len() as i64)
}

/// A replay of a filter's deliveries (`console_replays`).
#[derive(Debug, Clone)]
pub struct BulkReplay {
    pub id: i64,
    pub requested_by: String,
    pub filter: DeliveryFilter,
    pub filter_query: String,
    pub estimate: i64,
    pub cap: i32,
    pub state: String,
    pub cancel_requested: bool,
    pub cursor: i64,
    pub done: i32,
    pub skipped: i32,
    pub failed: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl BulkReplay {
    pub fn processed(&self) -> i32 {
        self.done + self.skipped + self.failed
    }

    pub fn open(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "running")
    }

    fn from_row(row: &tokio_postgres::Row) -> Result<Self, StoreError> {
        let filter: serde_json::Value = row.try_get(2)?;
        Ok(Self {
            id: row.try_get(0)?,
            requested_by: row.try_get(1)?,
            filter: serde_json::from_value(filter)
                .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("a stored filter: {e}")))?,
            filter_query: row.try_get(3)?,
            estimate: row.try_get(4)?,
            cap: row.try_get(5)?,
            state: row.try_get(6)?,
            cancel_requested: row.try_get(7)?,
            cursor: row.try_get(8)?,
            done: row.try_get(9)?,
            skipped: row.try_get(10)?,
            failed: row.try_get(11)?,
            last_error: row.try_get(12)?,
            created_at: row.try_get(13)?,
            finished_at: row.try_get(14)?,
        })
    }
}

const SELECT_REPLAYS: &str =
    "SELECT id, requested_by, filter, filter_query, estimate, cap, state, \
     cancel_requested, cursor, done, skipped, failed, last_error, created_at, finished_at \
     FROM console_replays";

/// A new bulk replay of what `filter` matches below `cursor`; its id.
pub async fn queue_replay(
    pool: &Pool,
    requested_by: &str,
    filter: &DeliveryFilter,
    filter_query: &str,
    estimate: i64,
    cap: i32,
    cursor: i64,
) -> Result<i64, StoreError> {
    let client = pool.get().await?;
    let filter = serde_json::to_value(filter).expect("a filter serializes");
    Ok(client
        .query_one(
            "INSERT INTO console_replays (requested_by, filter, filter_query, estimate, cap, cursor) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&requested_by, &filter, &filter_query, &estimate, &cap, &cursor],
        )
        .await?
        .try_get(0)?)
}

pub async fn replay_job(pool: &Pool, id: i64) -> Result<Option<BulkReplay>, StoreError> {
    let client = pool.get().await?;
    client
        .query_opt(&format!("{SELECT_REPLAYS} WHERE id = $1"), &[&id])
        .await?
        .as_ref()
        .map(BulkReplay::from_row)
        .transpose()
}

pub async fn replay_jobs(pool: &Pool, limit: i64) -> Result<Vec<BulkReplay>, StoreError> {
    let client = pool.get().await?;
    client
        .query(
            &format!("{SELECT_REPLAYS} ORDER BY id DESC LIMIT $1"),
            &[&limit],
        )
        .await?
        .iter()
        .map(BulkReplay::from_row)
        .collect()
}

/// Asks a bulk replay to stop: one not started yet stops at once, a running one after its
/// batch. Whether it was still open.
pub async fn cancel_replay(pool: &Pool, id: i64) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let changed = client
        .execute(
            "UPDATE console_replays SET cancel_requested = true, \
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END, \
               finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END \
             WHERE id = $1 AND state IN ('queued', 'running')",
            &[&id],
        )
        .await?;
    Ok(changed == 1)
}

/// Whether an operator asked bulk replay `id` to stop.
pub async fn replay_cancelled(pool: &Pool, id: i64) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            "SELECT cancel_requested FROM console_replays WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(true))
}

/// Takes the oldest open bulk replay nobody holds (or whose holder's lease ran out).
pub async fn claim_replay(
    pool: &Pool,
    owner: &str,
    lease: Duration,
) -> Result<Option<BulkReplay>, StoreError> {
    let claimed = {
        let client = pool.get().await?;
        client
            .query_opt(
                "WITH claimable AS (SELECT id FROM console_replays \
                   WHERE state IN ('queued', 'running') \
                     AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
                   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 UPDATE console_replays r SET state = 'running', lease_owner = $1, \
                   lease_expires_at = now() + make_interval(secs => $2), \
                   started_at = coalesce(started_at, now()) \
                 FROM claimable WHERE r.id = claimable.id RETURNING r.id",
                &[&owner, &lease.as_secs_f64()],
            )
            .await?
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()?
    };
    match claimed {
        Some(id) => replay_job(pool, id).await,
        None => Ok(None),
    }
}

/// What one batch of a bulk replay came to.
#[derive(Debug, Default)]
pub struct ReplayBatch<'a> {
    /// Done, skipped, failed.
    pub counts: (i32, i32, i32),
    /// Where the next batch starts.
    pub cursor: i64,
    pub last_error: Option<&'a str>,
    /// The replay is over, in this state (`done`, `cancelled`, `failed`).
    pub finished: Option<&'a str>,
}

/// Records a batch and renews the lease; `false` when the lease is no longer ours.
pub async fn record_replay_batch(
    pool: &Pool,
    id: i64,
    owner: &str,
    lease: Duration,
    batch: &ReplayBatch<'_>,
) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let (done, skipped, failed) = batch.counts;
    let (cursor, last_error, finished) = (batch.cursor, batch.last_error, batch.finished);
    let changed = client
        .execute(
            "UPDATE console_replays SET done = done + $3, skipped = skipped + $4, \
               failed = failed + $5, cursor = $6, last_error = coalesce($7, last_error), \
               lease_expires_at = now() + make_interval(secs => $8), \
               state = coalesce($9, state), \
               finished_at = CASE WHEN $9::text IS NULL THEN NULL ELSE now() END \
             WHERE id = $1 AND lease_owner = $2 AND state = 'running'",
            &[
                &id,
                &owner,
                &done,
                &skipped,
                &failed,
                &cursor,
                &last_error,
                &lease.as_secs_f64(),
                &finished,
            ],
        )
        .await?;
    Ok(changed == 1)
}

/// An avatar in training, as the operations page lists it.
#[derive(Debug)]
pub struct Training {
    pub avatar_id: Uuid,
    pub name: Option<String>,
    pub fal_request_id: String,
    pub updated_at: DateTime<Utc>,
    /// The reconciler's last question to FAL about it, and how many failed in a row.
    pub last_check: Option<DateTime<Utc>>,
    pub check_failures: i32,
}

/// Avatars in training, the longest waiting first.
pub async fn trainings(
    pool: &Pool,
    sql: &super::schema::AvatarSql,
    limit: i64,
) -> Result<Vec<Training>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT id, name, fal_request_id, updated_at, last_status_check, \
                   status_check_failures FROM avatars \
                 WHERE {} AND fal_request_id IS NOT NULL ORDER BY updated_at LIMIT $1",
                sql.training
            ),
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Training {
                avatar_id: row.try_get(0)?,
                name: row.try_get(1)?,
                fal_request_id: row.try_get(2)?,
                updated_at: row.try_get(3)?,
                last_check: row.try_get(4)?,
                check_failures: row.try_get(5)?,
            })
        })
        .collect()
}

/// One bucket of the front page's charts: deliveries by source, answers by class, times.
#[derive(Debug)]
pub struct ChartBucket {
    pub at: DateTime<Utc>,
    pub source: String,
    pub deliveries: i64,
    pub refused: i64,
    pub failed: i64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The deliveries of the last `span`, in `buckets` buckets, by source.
pub async fn chart(
    pool: &Pool,
    span: Duration,
    buckets: u32,
) -> Result<Vec<ChartBucket>, StoreError> {
    let client = pool.get().await?;
    let width = span.as_secs_f64() / f64::from(buckets);
    let rows = client
        .query(
            "SELECT to_timestamp(floor(extract(epoch FROM received_at)::float8 / $2::float8) * $2::float8) AS at, source, \
               count(*), count(*) FILTER (WHERE status_code BETWEEN 400 AND 499), \
               count(*) FILTER (WHERE status_code >= 500 OR outcome = 'failed'), \
               percentile_cont(0.5) WITHIN GROUP (ORDER BY processing_ms), \
               percentile_cont(0.99) WITHIN GROUP (ORDER BY processing_ms) \
             FROM webhook_events WHERE received_at > now() - make_interval(secs => $1) \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[&span.as_secs_f64(), &width],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ChartBucket {
                at: row.try_get(0)?,
                source: row.try_get(1)?,
                deliveries: row.try_get(2)?,
                refused: row.try_get(3)?,
                failed: row.try_get(4)?,
                p50_ms: row.try_get(5)?,
                p99_ms: row.try_get(6)?,
            })
        })
        .collect()
}
