//! The console's sign-ins: sessions kept in PostgreSQL (`console_sessions`), so either
//! instance knows them.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::store::StoreError;

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
