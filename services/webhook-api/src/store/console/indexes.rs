//! The indexes the console's searches read, built after start without blocking writes.

use deadpool_postgres::Pool;

use crate::store::StoreError;

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
