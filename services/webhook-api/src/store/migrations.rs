//! Embedded migrations, applied under a PostgreSQL advisory lock so that instances starting
//! together take turns instead of racing on the same DDL.

use anyhow::Context;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Any constant shared by all instances; "webhook" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x0077_6562_686f_6f6b;

pub async fn run(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let result = embedded::migrations::runner()
        .run_async(client)
        .await
        .context("applying migrations");
    // Also released if the connection drops; unlocking here frees the session for reuse.
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("releasing the migration lock")?;
    let report = result?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    Ok(())
}
