//! Many deliveries in one transaction with a fixed number of statements, whatever the batch's
//! size, in two round trips: lock every avatar and read which delivery keys are recorded
//! already (BEGIN goes out with them); then record the deliveries with their file jobs and
//! update the avatars, each one statement over arrays, with COMMIT in the same flush (see
//! `store::group`). One delivery at a time costs four round trips per delivery.
//!
//! Decisions are planned in Rust, in delivery-key order, from the locked rows (a later delivery
//! for the same avatar sees the earlier one's change) and the recorded keys. A plan the database
//! contradicts is refused by the database: a key recorded after it was read (only an unmatched
//! delivery can be: every other locks its avatar first) breaks the unique delivery key, which
//! aborts the transaction. A delivery only `ingest::ingest` handles (an unmatched one that now
//! matches) stops the batch before it writes. Either way the caller rolls back and commits the
//! deliveries one by one.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::columns::{ChangeColumns, EventColumns, RecordedEvent};
use super::{plan, Delivery, Ingested, LockedAvatar, Outcome, Planned};
use crate::avatar::{self, AvatarStatus, Change, Decision};
use crate::files::policy::job_files;
use crate::store::avatars::AvatarView;
use crate::store::deliveries::EventOutcome;
use crate::store::schema::AvatarSql;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plan does not hold; commit these deliveries one by one instead.
    #[error("batch needs one-by-one commits: {0}")]
    OneByOne(&'static str),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        BatchError::Store(e.into())
    }
}

/// Locks every avatar the batch names, in `fal_request_id` order (as every batch does, so
/// batches cannot deadlock each other); the newest row of each id is the one callbacks change.
pub(super) const LOCK_AVATARS: &str =
    "SELECT fal_request_id, id, status::text, COALESCE(training_progress, 0) \
     FROM avatars WHERE fal_request_id = ANY($1) \
     ORDER BY fal_request_id, created_at DESC NULLS LAST FOR UPDATE";

/// The batch's delivery keys that are recorded already: their events and first outcomes. A
/// statement of its own, sent after the locks in the same flush, so that it sees what committed
/// while they were awaited.
pub(super) const RECORDED_KEYS: &str =
    "SELECT delivery_key, id, outcome FROM webhook_events WHERE delivery_key = ANY($1)";

/// What one delivery of the batch turned out to be.
#[allow(clippy::large_enum_variant)] // one short Vec per batch: boxing would allocate per delivery
enum Step {
    /// First of its delivery key in the batch, and new.
    New {
        planned: Planned,
        avatar_id: Option<Uuid>,
    },
    /// First of its delivery key in the batch, recorded before (this event).
    Recorded(i64),
    /// The same delivery key as the batch's delivery at this index.
    SameAs(usize),
}

/// A batch planned against its locked avatars: what `write` will send.
pub struct BatchPlan<'a> {
    deliveries: &'a [&'a Delivery],
    keys: Vec<String>,
    steps: Vec<Step>,
    /// How often the key of the step at this index came again in the batch.
    repeats: HashMap<usize, i32>,
}

/// Plans and writes a batch inside the caller's transaction; `deliveries` must be in
/// delivery-key order (see `store::group`).
pub async fn ingest_all(
    db: &impl GenericClient,
    sql: &AvatarSql,
    deliveries: &[&Delivery],
) -> Result<Vec<Ingested>, BatchError> {
    plan_batch(db, sql, deliveries).await?.write(db, sql).await
}

/// Locks the batch's avatars and reads its recorded keys (one round trip), then plans each
/// delivery. `deliveries` must be in delivery-key order.
pub async fn plan_batch<'a>(
    db: &impl GenericClient,
    sql: &AvatarSql,
    deliveries: &'a [&'a Delivery],
) -> Result<BatchPlan<'a>, BatchError> {
    let keys: Vec<String> = deliveries
        .iter()
        .map(|d| d.callback.delivery_key())
        .collect();
    // Prepared (once per connection) before anything is sent, so that the pipelined
    // statements go out in the order they are written, each on its future's first poll.
    for statement in super::batch_statements(sql) {
        db.prepare_cached(statement).await?;
    }
    // `biased`: polled in the order written, so sent in that order, and the first error seen
    // is the one that made the later statements fail.
    let (mut avatars, recorded) = tokio::try_join!(
        biased;
        lock_avatars(db, deliveries),
        recorded_keys(db, &keys),
    )?;
    let mut plan = BatchPlan {
        deliveries,
        keys,
        steps: Vec::with_capacity(deliveries.len()),
        repeats: HashMap::new(),
    };
    plan.plan_steps(&mut avatars, &recorded)?;
    Ok(plan)
}

/// Locks the avatars the batch names; by request id, the newest row of each.
async fn lock_avatars(
    db: &impl GenericClient,
    deliveries: &[&Delivery],
) -> Result<HashMap<String, LockedAvatar>, BatchError> {
    let mut request_ids: Vec<&str> = deliveries
        .iter()
        .map(|d| d.callback.request_id.as_str())
        .collect();
    request_ids.sort_unstable();
    request_ids.dedup();
    let mut avatars: HashMap<String, LockedAvatar> = HashMap::new();
    for row in db
        .query(&db.prepare_cached(LOCK_AVATARS).await?, &[&request_ids])
        .await?
    {
        let request_id: String = row.try_get(0)?;
        // Rows come newest first within an id: keep the first.
        if let Entry::Vacant(slot) = avatars.entry(request_id) {
            slot.insert(LockedAvatar::from_row(&row, 1)?);
        }
    }
    Ok(avatars)
}

/// By delivery key: its event and the outcome it was first recorded with.
async fn recorded_keys(
    db: &impl GenericClient,
    keys: &[String],
) -> Result<HashMap<String, (i64, EventOutcome)>, BatchError> {
    let rows = db
        .query(&db.prepare_cached(RECORDED_KEYS).await?, &[&keys])
        .await?;
    let mut recorded = HashMap::with_capacity(rows.len());
    for row in rows {
        let first_outcome = EventOutcome::read(&row, 2)?;
        recorded.insert(row.try_get(0)?, (row.try_get(1)?, first_outcome));
    }
    Ok(recorded)
}

impl BatchPlan<'_> {
    /// Each delivery planned against the avatar as the earlier ones leave it; a key seen
    /// before in the batch is `SameAs` its first, which counts it in `repeats`.
    fn plan_steps(
        &mut self,
        avatars: &mut HashMap<String, LockedAvatar>,
        recorded: &HashMap<String, (i64, EventOutcome)>,
    ) -> Result<(), BatchError> {
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        for (index, delivery) in self.deliveries.iter().enumerate() {
            let key = self.keys[index].as_str();
            if let Some(&first) = first_of_key.get(key) {
                *self.repeats.entry(first).or_default() += 1;
                self.steps.push(Step::SameAs(first));
                continue;
            }
            first_of_key.insert(key, index);
            let avatar = avatars.get_mut(&delivery.callback.request_id);
            if let Some((event_id, first_outcome)) = recorded.get(key) {
                if *first_outcome == EventOutcome::Unmatched && avatar.is_some() {
                    return Err(BatchError::OneByOne("an unmatched delivery now matches"));
                }
                self.steps.push(Step::Recorded(*event_id));
                continue;
            }
            let planned = plan(avatar.as_deref(), &delivery.callback);
            let avatar_id = avatar.as_ref().map(|a| a.id);
            if let (Some(avatar), Some(Decision::Apply(change))) = (avatar, &planned.decision) {
                let progress = avatar.current.map_or(0, |c| c.progress);
                avatar.current = Some(avatar::Current {
                    status: change.status,
                    progress: change.progress.unwrap_or(progress),
                });
            }
            self.steps.push(Step::New { planned, avatar_id });
        }
        Ok(())
    }

    /// The changes to apply: (delivery index, avatar, change).
    fn applied(&self) -> Vec<(usize, Uuid, &Change)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(index, step)| match step {
                Step::New {
                    planned:
                        Planned {
                            decision: Some(Decision::Apply(change)),
                            ..
                        },
                    avatar_id: Some(id),
                } => Some((index, *id, change)),
                _ => None,
            })
            .collect()
    }

    /// Whether `write` sends all its statements on its first poll, so that COMMIT can follow
    /// in the same flush: not when an avatar changes twice (its updates go one after another).
    pub fn writes_at_once(&self) -> bool {
        let applied = self.applied();
        let mut avatars: Vec<Uuid> = applied.iter().map(|(_, id, _)| *id).collect();
        avatars.sort_unstable();
        avatars.dedup();
        avatars.len() == applied.len()
    }

    /// Records every delivery (with the file jobs) and updates the avatars, those two
    /// pipelined; each delivery's answer.
    pub async fn write(
        &self,
        db: &impl GenericClient,
        sql: &AvatarSql,
    ) -> Result<Vec<Ingested>, BatchError> {
        let applied = self.applied();
        // Both sent on the first poll, in this order; one that fails before it is sent ends
        // that poll (see `store::group`).
        let (recorded, mut views) = tokio::try_join!(
            biased;
            self.record(db, &applied),
            apply_changes(db, sql, self.deliveries, &self.keys, &applied),
        )?;
        let duplicate = |event_id| Ingested {
            outcome: Outcome::Duplicate,
            event_id,
            changed: None,
            file_job: None,
        };
        let mut results = Vec::with_capacity(self.steps.len());
        for (index, step) in self.steps.iter().enumerate() {
            let (first, again) = match step {
                Step::SameAs(first) => (*first, true),
                _ => (index, false),
            };
            results.push(match &self.steps[first] {
                Step::New { planned, .. } => {
                    let (event_id, file_job) =
                        *recorded.get(&self.keys[first]).ok_or_else(|| {
                            StoreError::Unexpected(anyhow::anyhow!(
                                "a new delivery was not recorded"
                            ))
                        })?;
                    if again {
                        duplicate(event_id)
                    } else {
                        Ingested {
                            outcome: planned.outcome,
                            event_id,
                            changed: views.remove(&index),
                            file_job,
                        }
                    }
                }
                Step::Recorded(event_id) => duplicate(*event_id),
                Step::SameAs(_) => unreachable!("SameAs points at a first step"),
            });
        }
        Ok(results)
    }

    /// Records each new key once (counting its repeats) with the file jobs of the applied
    /// completions, and counts the repeats of recorded keys; by new key, its event and file job.
    async fn record(
        &self,
        db: &impl GenericClient,
        applied: &[(usize, Uuid, &Change)],
    ) -> Result<HashMap<String, (i64, Option<i64>)>, BatchError> {
        let mut columns = EventColumns::default();
        for (index, step) in self.steps.iter().enumerate() {
            let times = 1 + self.repeats.get(&index).copied().unwrap_or(0);
            match step {
                Step::New { planned, avatar_id } => columns.push(
                    self.deliveries[index],
                    &self.keys[index],
                    planned,
                    *avatar_id,
                    times,
                ),
                Step::Recorded(event_id) => columns.push_repeat(*event_id, times),
                Step::SameAs(_) => {}
            }
        }
        let jobs = applied
            .iter()
            .filter(|(_, _, change)| change.status == AvatarStatus::Completed)
            .map(|(index, id, change)| (*id, self.keys[*index].as_str(), job_files(&change.files)))
            .filter(|(_, _, files)| !files.is_empty());
        for (avatar_id, key, files) in jobs {
            columns.push_job(avatar_id, key, &files);
        }
        Ok(columns
            .record_new(db)
            .await?
            .into_iter()
            .map(
                |RecordedEvent {
                     key,
                     event_id,
                     file_job,
                     ..
                 }| (key, (event_id, file_job)),
            )
            .collect())
    }
}

/// Avatars with one change in the batch: one statement for all of them. An avatar with several
/// (a progress update and its completion arriving together): its changes one after another, in
/// order, so each sees the one before. Returns the committed view after each applied delivery.
async fn apply_changes(
    db: &impl GenericClient,
    sql: &AvatarSql,
    deliveries: &[&Delivery],
    keys: &[String],
    applied: &[(usize, Uuid, &Change)],
) -> Result<HashMap<usize, AvatarView>, BatchError> {
    let mut changes_per_avatar: HashMap<Uuid, usize> = HashMap::new();
    for (_, id, _) in applied {
        *changes_per_avatar.entry(*id).or_default() += 1;
    }
    let mut views = HashMap::with_capacity(applied.len());
    let (single, several): (Vec<_>, Vec<_>) = applied
        .iter()
        .partition(|(_, id, _)| changes_per_avatar[id] == 1);
    if !single.is_empty() {
        let mut index_of_avatar = HashMap::with_capacity(single.len());
        let mut columns = ChangeColumns::default();
        for (index, id, change) in &single {
            index_of_avatar.insert(*id, *index);
            columns.push(sql, *id, change, deliveries[*index], &keys[*index]);
        }
        for view in columns.apply(db, sql).await? {
            views.insert(index_of_avatar[&view.avatar_id], view);
        }
    }
    for (index, id, change) in several {
        let mut columns = ChangeColumns::default();
        columns.push(sql, id, change, deliveries[index], &keys[index]);
        if let Some(view) = columns.apply(db, sql).await?.pop() {
            views.insert(index, view);
        }
    }
    Ok(views)
}
