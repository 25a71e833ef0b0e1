//! What one delivery caused, beside the delivery itself.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::store::event_views::EventRow;
use crate::store::StoreError;

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
