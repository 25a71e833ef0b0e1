//! Finding deliveries among millions: newest first, keyset paging on `id`, every query
//! bounded in time; the live tail's reads.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::store::deliveries::EventOutcome;
use crate::store::event_views::{event_columns, EventRow, SELECT_EVENTS};
use crate::store::StoreError;

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
    /// JSON the body must contain (`payload @> …`): an object or an array.
    #[serde(default, deserialize_with = "json_or_its_text")]
    pub body_contains: Option<serde_json::Value>,
}

/// A bulk replay queued by an earlier build kept the body search as the text of its JSON.
fn json_or_its_text<'de, D>(from: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    use serde::Deserialize as _;
    match Option::<serde_json::Value>::deserialize(from)? {
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text)
            .map(Some)
            .map_err(D::Error::custom),
        other => Ok(other),
    }
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
        if let Some(value) = &filter.body_contains {
            query.push("payload @>", value.clone());
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
    // Whether to read the headers and the payload.
    let bodies = match columns {
        Columns::Whole => "true",
        Columns::Summary => "false",
    };
    let sql = format!(
        "SELECT {} FROM webhook_events{} ORDER BY {order} LIMIT ${}",
        event_columns(bodies),
        query.sql,
        query.params.len()
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
    let next_before = crate::store::next_before(&rows, limit, |e| e.id);
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
            &format!("{} WHERE id > $2 ORDER BY id LIMIT $3", *SELECT_EVENTS),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_filter_reads_its_body_search_as_json_or_as_the_text_an_earlier_build_kept() {
        let body = serde_json::json!({"ref": "refs/heads/main"});
        for stored in [
            serde_json::json!({"body_contains": body}),
            serde_json::json!({"body_contains": body.to_string()}),
        ] {
            let filter: DeliveryFilter = serde_json::from_value(stored).unwrap();
            assert_eq!(filter.body_contains.as_ref(), Some(&body));
        }
        let none: DeliveryFilter = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(none.body_contains, None);
    }
}
