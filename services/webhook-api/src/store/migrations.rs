//! Embedded migrations, applied under a PostgreSQL advisory lock so that instances starting
//! together take turns instead of racing on the same DDL. The bot's `avatars` columns are read
//! before anything is written: a table the service cannot write into stops the start untouched.

use anyhow::Context;

use super::avatars::VIEW_COLUMNS;
use super::schema::{self, AvatarSql};
use crate::avatar::FollowupPolicy;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The statements for a database that is already migrated (the `status` and retention
/// commands, which apply no change: no follow-ups).
pub async fn load(pool: &deadpool_postgres::Pool) -> Result<AvatarSql, super::StoreError> {
    let client = pool.get().await?;
    let inspected = schema::inspect(&**client).await?;
    AvatarSql::new(&inspected, VIEW_COLUMNS, &FollowupPolicy::default())
        .map_err(|e| super::StoreError::Unexpected(e.into()))
}

/// Any constant shared by all instances; "webhook" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x0077_6562_686f_6f6b;

/// Checks the bot's table, migrates, and returns the avatar statements for this database,
/// recording `followups` with each change.
pub async fn run(
    client: &mut tokio_postgres::Client,
    followups: &FollowupPolicy,
) -> anyhow::Result<AvatarSql> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let result = migrate(client, followups).await;
    // Also released if the connection drops; unlocking here frees the session for reuse.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("releasing the migration lock")?;
    result
}

async fn migrate(
    client: &mut tokio_postgres::Client,
    followups: &FollowupPolicy,
) -> anyhow::Result<AvatarSql> {
    let before = schema::inspect(&*client)
        .await
        .context("reading the avatars table's columns")?;
    before.check(false)?;
    // V1 and V5 were corrected after they shipped (the bot's column types, no index on the
    // bot's enum labels): a database that applied the old text keeps it, and V6 converges it.
    let report = embedded::migrations::runner()
        .set_abort_divergent(false)
        .run_async(client)
        .await
        .context("applying migrations")?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    let after = schema::inspect(&*client)
        .await
        .context("reading the avatars table's columns")?;
    let sql = AvatarSql::new(&after, VIEW_COLUMNS, followups)?;
    schema::ensure_training_index(&*client, &sql)
        .await
        .context("building the partial index of trainings")?;
    Ok(sql)
}
