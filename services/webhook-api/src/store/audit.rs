//! `operator_audit`: who (which token) replayed what, or read or asked for deploys.

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
