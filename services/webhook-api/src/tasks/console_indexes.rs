//! Builds the console's search indexes after start, without blocking the webhooks' writes
//! (`CREATE INDEX CONCURRENTLY`, one instance at a time): on a table of millions a plain
//! `CREATE INDEX` in a migration would hold every callback for minutes. Tried again every
//! minute until each is built and valid.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::store::console;

const RETRY: Duration = Duration::from_secs(60);

pub async fn run(pool: Pool, shutdown: CancellationToken) {
    loop {
        match console::ensure_indexes(&pool).await {
            Ok(built) => {
                for name in &built {
                    tracing::info!(index = name, "built a console search index");
                }
                if matches!(console::indexes_ready(&pool).await, Ok(true)) {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "console search indexes not built yet; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}
