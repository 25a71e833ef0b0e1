//! One verified callback → one transaction: lock the avatar, record the delivery (its unique
//! key turns a redelivery into a duplicate), apply the state machine's decision, commit.

use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

use super::avatars::AvatarView;
use super::schema::AvatarSql;
use super::{jobs, StoreError};
use crate::avatar::{self, AvatarStatus, Decision, TrainingType};
use crate::fal::FalCallback;
use crate::files::policy::job_files;
use crate::verify::Scheme;

/// A verified, parsed delivery and where it came from.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub callback: FalCallback,
    /// The raw body, stored as the event's payload (valid JSON: it parsed).
    pub body: String,
    pub scheme: Scheme,
    pub http_request_id: String,
    pub instance_id: String,
    pub training_type: Option<TrainingType>,
    /// When the request arrived: the event row records how long it took to reach the store.
    pub received: std::time::Instant,
}

impl Delivery {
    pub(super) fn processing_ms(&self) -> f32 {
        self.received.elapsed().as_secs_f32() * 1000.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Unmatched,
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Unmatched => "unmatched",
            Outcome::Ignored => "ignored",
        }
    }
}

#[derive(Debug)]
pub struct Ingested {
    pub outcome: Outcome,
    pub event_id: i64,
    /// The avatar as committed, when this delivery changed it.
    pub changed: Option<AvatarView>,
    /// The file-copy job this completion enqueued, in the same transaction.
    pub file_job: Option<i64>,
}

const LOCK_AVATAR: &str = "SELECT id, status::text, COALESCE(training_progress, 0) FROM avatars \
     WHERE fal_request_id = $1 ORDER BY created_at DESC NULLS LAST LIMIT 1 FOR UPDATE";

/// The upsert takes the event row's lock, so concurrent redeliveries wait for the first one's
/// commit and then see it. `xmax = 0` tells a fresh insert from a conflict.
const RECORD_EVENT: &str = "INSERT INTO webhook_events \
     (source, delivery_key, fal_request_id, event, avatar_id, outcome, outcome_reason, \
      signature_scheme, http_request_id, instance_id, training_type, payload, processing_ms) \
     VALUES ('fal', $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb, $12) \
     ON CONFLICT (delivery_key) DO UPDATE SET \
       deliveries = webhook_events.deliveries + 1, last_delivered_at = now() \
     RETURNING id, (xmax = 0) AS inserted, outcome";

/// A delivery first recorded as `unmatched` is applied when it arrives again after the avatar
/// got its `fal_request_id`.
const REMATCH_EVENT: &str =
    "UPDATE webhook_events SET avatar_id = $2, outcome = $3, outcome_reason = $4 \
     WHERE id = $1";

/// The avatar a delivery is for, as locked at the start of its transaction.
#[derive(Debug, Clone)]
pub(super) struct LockedAvatar {
    pub id: Uuid,
    /// `None` when the bot gave it a status callbacks do not change.
    pub current: Option<avatar::Current>,
}

impl LockedAvatar {
    /// Reads `id, status::text, progress` starting at column `first`.
    pub(super) fn from_row(row: &tokio_postgres::Row, first: usize) -> Result<Self, StoreError> {
        let status: String = row.try_get(first + 1)?;
        Ok(Self {
            id: row.try_get(first)?,
            current: match status.parse::<AvatarStatus>() {
                Ok(status) => Some(avatar::Current {
                    status,
                    progress: row.try_get(first + 2)?,
                }),
                Err(_) => None,
            },
        })
    }
}

/// What a delivery will do, decided before anything is written.
pub(super) struct Planned {
    pub outcome: Outcome,
    pub reason: Option<&'static str>,
    /// `None` when no avatar matched.
    pub decision: Option<Decision>,
}

pub(super) fn plan(avatar: Option<&LockedAvatar>, callback: &FalCallback) -> Planned {
    let decision = avatar.map(|avatar| match avatar.current {
        Some(current) => avatar::decide(current, &callback.event),
        None => Decision::Ignore("avatar has a status callbacks do not change"),
    });
    let (outcome, reason) = match &decision {
        None => (
            Outcome::Unmatched,
            Some("no avatar has this fal_request_id"),
        ),
        Some(Decision::Apply(_)) => (Outcome::Applied, None),
        Some(Decision::Ignore(reason)) => (Outcome::Ignored, Some(*reason)),
    };
    Planned {
        outcome,
        reason,
        decision,
    }
}

/// One delivery in a transaction of its own.
pub async fn ingest(
    pool: &Pool,
    sql: &AvatarSql,
    delivery: &Delivery,
) -> Result<Ingested, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let ingested = ingest_in(&tx, sql, delivery).await?;
    tx.commit().await?;
    Ok(ingested)
}

/// The delivery's work inside `tx`, which the caller commits (alone, or with others: see
/// `store::group`).
pub async fn ingest_in(
    tx: &Transaction<'_>,
    sql: &AvatarSql,
    delivery: &Delivery,
) -> Result<Ingested, StoreError> {
    let callback = &delivery.callback;

    let avatar = tx
        .query_opt(
            &tx.prepare_cached(LOCK_AVATAR).await?,
            &[&callback.request_id],
        )
        .await?
        .map(|row| LockedAvatar::from_row(&row, 0))
        .transpose()?;
    let avatar_id = avatar.as_ref().map(|a| a.id);
    let Planned {
        outcome,
        reason,
        decision,
    } = plan(avatar.as_ref(), callback);

    let training_type = delivery.training_type.map(TrainingType::as_str);
    let recorded = tx
        .query_one(
            &tx.prepare_cached(RECORD_EVENT).await?,
            &[
                &callback.delivery_key(),
                &callback.request_id,
                &callback.event.kind(),
                &avatar_id,
                &outcome.as_str(),
                &reason,
                &delivery.scheme.as_str(),
                &delivery.http_request_id,
                &delivery.instance_id,
                &training_type,
                &delivery.body,
                &delivery.processing_ms(),
            ],
        )
        .await?;
    let event_id: i64 = recorded.try_get(0)?;
    let inserted: bool = recorded.try_get(1)?;
    if !inserted {
        let first_outcome: String = recorded.try_get(2)?;
        if first_outcome != Outcome::Unmatched.as_str() || avatar_id.is_none() {
            return Ok(Ingested {
                outcome: Outcome::Duplicate,
                event_id,
                changed: None,
                file_job: None,
            });
        }
        tx.execute(
            &tx.prepare_cached(REMATCH_EVENT).await?,
            &[&event_id, &avatar_id, &outcome.as_str(), &reason],
        )
        .await?;
    }

    let changed = match (&decision, avatar_id) {
        (Some(Decision::Apply(change)), Some(id)) => {
            let row = tx
                .query_one(
                    &tx.prepare_cached(&sql.apply_one).await?,
                    &[
                        &id,
                        &change.status.as_str(),
                        &change.progress,
                        &change
                            .files
                            .lora
                            .as_ref()
                            .and_then(|f| sql.fitting_url(&f.url)),
                        &change
                            .files
                            .config
                            .as_ref()
                            .and_then(|f| sql.fitting_url(&f.url)),
                        &change.error.as_deref().map(|e| sql.fitting_error(e)),
                        &delivery.body,
                        &training_type,
                    ],
                )
                .await?;
            Some(AvatarView::from_row(&row)?)
        }
        _ => None,
    };
    let file_job = match (&decision, avatar_id) {
        (Some(Decision::Apply(change)), Some(id)) if change.status == AvatarStatus::Completed => {
            let files = job_files(&change.files);
            if files.is_empty() {
                None
            } else {
                Some(jobs::enqueue(tx, id, event_id, &files).await?)
            }
        }
        _ => None,
    };
    Ok(Ingested {
        outcome,
        event_id,
        changed,
        file_job,
    })
}
