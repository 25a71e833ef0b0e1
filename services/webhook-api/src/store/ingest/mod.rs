//! One verified callback → one transaction: lock the avatar, record the delivery (its unique
//! key turns a redelivery into a duplicate), apply the state machine's decision, commit. Many
//! callbacks that arrive together: the same steps as one statement each over arrays
//! (`batch`), built by the same column builders (`columns`).

use deadpool_postgres::{Pool, Transaction};
use uuid::Uuid;

mod batch;
mod columns;

use super::avatars::AvatarView;
use super::deliveries::EventOutcome;
use super::schema::AvatarSql;
use super::{jobs, StoreError};
use crate::avatar::{self, AvatarStatus, Change, Decision, TrainingType};
use columns::{ChangeColumns, EventColumns};

use crate::fal::FalCallback;
use crate::files::policy::job_files;
use crate::verify::FalScheme;
pub use batch::{ingest_all, plan_batch, BatchError, BatchPlan};

/// Opens a batch's transaction, sent in the same flush as the batch's first statements (no
/// round trip of its own; `store::group`). The transaction runs the generic plan of each of
/// its statements (prepared once per connection) instead of planning them anew: PostgreSQL's
/// default keeps custom plans where they look cheaper, and it had planned the avatars' update
/// at each execution, at about 90 µs a time. So each one's generic plan (planned for arrays
/// of unknown length) must be a good one, whatever the tables' statistics say: every statement
/// of a batch finds its rows by key, and a generic plan made while `webhook_events` was new
/// and small (a fresh install, before autovacuum first analyzes it) would read the whole
/// table at every batch until then. Hence no sequential scans; `tests/it/batch.rs` asks
/// PostgreSQL for the plans, on an empty table and on a large one.
pub const BEGIN_BATCH: &str =
    "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";

/// The statements of a batch, whose generic plans `BEGIN_BATCH` asks for.
pub fn batch_statements(sql: &AvatarSql) -> [&str; 4] {
    [
        batch::LOCK_AVATARS,
        batch::RECORDED_KEYS,
        columns::RECORD_NEW_EVENTS,
        &sql.apply,
    ]
}

/// A verified, parsed delivery and where it came from.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub callback: FalCallback,
    /// The raw body, stored as the event's payload (valid JSON: it parsed).
    pub body: String,
    pub scheme: FalScheme,
    pub http_request_id: String,
    pub instance_id: String,
    pub training_type: Option<TrainingType>,
    /// When the request arrived: the event row records how long it took to reach the store.
    pub received: std::time::Instant,
}

impl Delivery {
    fn processing_ms(&self) -> f32 {
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
    /// What the delivery's row records: the same word, but for a duplicate, which records
    /// nothing (its row keeps the outcome it was first recorded with).
    pub fn recorded(self) -> Option<EventOutcome> {
        match self {
            Outcome::Applied => Some(EventOutcome::Applied),
            Outcome::Unmatched => Some(EventOutcome::Unmatched),
            Outcome::Ignored => Some(EventOutcome::Ignored),
            Outcome::Duplicate => None,
        }
    }

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

/// A delivery first recorded as `unmatched` is applied when it arrives again after the avatar
/// got its `fal_request_id`.
const REMATCH_EVENT: &str =
    "UPDATE webhook_events SET avatar_id = $2, outcome = $3, outcome_reason = $4 \
     WHERE id = $1";

/// The avatar a delivery is for, as locked at the start of its transaction.
#[derive(Debug, Clone)]
struct LockedAvatar {
    pub id: Uuid,
    /// `None` when the bot gave it a status callbacks do not change.
    pub current: Option<avatar::Current>,
}

impl LockedAvatar {
    /// Reads `id, status::text, progress` starting at column `first`.
    fn from_row(row: &tokio_postgres::Row, first: usize) -> Result<Self, StoreError> {
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
struct Planned {
    pub outcome: Outcome,
    pub reason: Option<&'static str>,
    /// `None` when no avatar matched.
    pub decision: Option<Decision>,
}

fn plan(avatar: Option<&LockedAvatar>, callback: &FalCallback) -> Planned {
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
    let planned = plan(avatar.as_ref(), callback);

    let key = callback.delivery_key();
    let mut columns = EventColumns::default();
    columns.push(delivery, &key, &planned, avatar_id, 1);
    let recorded = columns.record(tx).await?.pop().ok_or_else(|| {
        StoreError::Unexpected(anyhow::anyhow!("the event insert returned no row"))
    })?;
    let event_id = recorded.event_id;
    if !recorded.inserted {
        if recorded.first_outcome != EventOutcome::Unmatched || avatar_id.is_none() {
            return Ok(Ingested {
                outcome: Outcome::Duplicate,
                event_id,
                changed: None,
                file_job: None,
            });
        }
        tx.execute(
            &tx.prepare_cached(REMATCH_EVENT).await?,
            &[
                &event_id,
                &avatar_id,
                &planned.outcome.as_str(),
                &planned.reason,
            ],
        )
        .await?;
    }
    let (changed, file_job) = match (&planned.decision, avatar_id) {
        (Some(Decision::Apply(change)), Some(id)) => {
            apply(tx, sql, delivery, &key, id, change, event_id).await?
        }
        _ => (None, None),
    };
    Ok(Ingested {
        outcome: planned.outcome,
        event_id,
        changed,
        file_job,
    })
}

/// Writes an applied change, and enqueues the copy of a completion's files.
async fn apply(
    tx: &Transaction<'_>,
    sql: &AvatarSql,
    delivery: &Delivery,
    key: &str,
    avatar_id: Uuid,
    change: &Change,
    event_id: i64,
) -> Result<(Option<AvatarView>, Option<i64>), StoreError> {
    let mut columns = ChangeColumns::default();
    columns.push(sql, avatar_id, change, delivery, key);
    let changed = columns.apply(tx, sql).await?.pop();
    let files = job_files(&change.files);
    let file_job = if change.status == AvatarStatus::Completed && !files.is_empty() {
        Some(jobs::enqueue(tx, avatar_id, event_id, &files).await?)
    } else {
        None
    };
    Ok((changed, file_job))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's word is the row's word for every outcome a row records, so the two
    /// vocabularies meet in one column (`webhook_events.outcome`) without a translation.
    #[test]
    fn each_outcome_a_row_records_is_written_as_the_rows_word() {
        for outcome in [
            Outcome::Applied,
            Outcome::Unmatched,
            Outcome::Ignored,
            Outcome::Duplicate,
        ] {
            match outcome.recorded() {
                Some(recorded) => assert_eq!(recorded.as_str(), outcome.as_str()),
                None => assert_eq!(outcome, Outcome::Duplicate),
            }
        }
    }
}
