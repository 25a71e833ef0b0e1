//! `operator_audit`: who (which token) replayed what, or read or asked for deploys.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use super::StoreError;

#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub token_name: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub status_code: i16,
    pub instance_id: &'a str,
    pub http_request_id: &'a str,
}

pub async fn record(pool: &Pool, entry: &AuditEntry<'_>) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO operator_audit \
               (token_name, action, target, status_code, instance_id, http_request_id) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &entry.token_name,
                &entry.action,
                &entry.target,
                &entry.status_code,
                &entry.instance_id,
                &entry.http_request_id,
            ],
        )
        .await?;
    Ok(())
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
pub async fn list(
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
    let next = super::next_before(&rows, limit, |r| r.id);
    Ok((rows, next))
}
