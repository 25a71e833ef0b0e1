//! `retention`: the RETENTION_* rules applied now (or, with `--dry-run`, only counted).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::metrics::Metrics;
use crate::store;
use crate::tasks::retention::Retention;

pub async fn command(
    pool: &deadpool_postgres::Pool,
    config: &RetentionConfig,
    dry_run: bool,
) -> anyhow::Result<()> {
    let avatar_sql = Arc::new(store::migrations::load(pool).await?);
    if dry_run {
        let ages = store::retention::Ages {
            payload: config.payload,
            event: config.event,
            deploy_output: config.deploy_output,
            file_job: config.file_job,
        };
        let due = store::retention::pending(pool, &avatar_sql, ages).await?;
        println!(
            "would drop {} payloads, delete {} events (keep {} old ones something points at), \
             delete {} finished file jobs, drop {} deploy outputs",
            due.payloads, due.events, due.kept, due.file_jobs, due.deploy_outputs
        );
        return Ok(());
    }
    // Safe beside a running instance's own run: every step is idempotent.
    let retention = Retention {
        pool: pool.clone(),
        avatar_sql,
        config: config.clone(),
        owner: format!("command/{}", std::process::id()),
        deleted: Metrics::new().retention_deleted,
    };
    let swept = retention.sweep(&CancellationToken::new()).await?;
    println!(
        "dropped {} payloads, deleted {} events, deleted {} finished file jobs, \
         dropped {} deploy outputs",
        swept.payloads, swept.events, swept.file_jobs, swept.deploy_outputs
    );
    Ok(())
}
