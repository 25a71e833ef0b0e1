//! Many deliveries in one transaction with a fixed number of statements, whatever the batch's
//! size: lock every avatar, then record every delivery, update the avatars and enqueue the file
//! jobs (those three pipelined), each as one statement over arrays. One delivery at a time
//! costs four round trips per delivery; here a batch of 30 costs two in all and COMMIT (BEGIN
//! goes out with the first, see `store::group`).
//!
//! Decisions are planned in Rust, in delivery-key order, from the locked rows (a later delivery
//! for the same avatar sees the earlier one's change). A plan that the database contradicts (a
//! delivery thought new is already recorded and would have changed the avatar, or an
//! `unmatched` one now matches) is not patched up: the caller rolls back and commits the
//! deliveries one by one through `ingest::ingest`, which handles every case.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use super::columns::{ChangeColumns, EventColumns, RecordedEvent};
use super::{plan, Delivery, Ingested, LockedAvatar, Outcome, Planned};
use crate::avatar::{self, AvatarStatus, Change, Decision};
use crate::files::policy::{job_files, JobFile};
use crate::store::avatars::AvatarView;
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

/// What one delivery of the batch turned out to be.
#[allow(clippy::large_enum_variant)] // one short Vec per batch: boxing would allocate per delivery
enum Step {
    /// First of its delivery key in the batch.
    Recorded {
        planned: Planned,
        avatar_id: Option<Uuid>,
    },
    /// The same delivery key as the batch's delivery at this index.
    SameAs(usize),
}

/// `deliveries` must be in delivery-key order (see `store::group`).
pub async fn ingest_all(
    db: &impl GenericClient,
    sql: &AvatarSql,
    deliveries: &[&Delivery],
) -> Result<Vec<Ingested>, BatchError> {
    let keys: Vec<String> = deliveries
        .iter()
        .map(|d| d.callback.delivery_key())
        .collect();
    // Prepared (once per connection) before anything is sent, so that the pipelined
    // statements below go out in the order they are written.
    for statement in super::batch_statements(sql) {
        db.prepare_cached(statement).await?;
    }
    let mut avatars = lock_avatars(db, deliveries).await?;
    let (steps, repeats) = plan_steps(deliveries, &keys, &mut avatars);
    let applied: Vec<(usize, Uuid, &Change)> = steps
        .iter()
        .enumerate()
        .filter_map(|(index, step)| match step {
            Step::Recorded {
                planned:
                    Planned {
                        decision: Some(Decision::Apply(change)),
                        ..
                    },
                avatar_id: Some(id),
            } => Some((index, *id, change)),
            _ => None,
        })
        .collect();
    let jobs: Vec<(Uuid, &str, Vec<JobFile>)> = applied
        .iter()
        .filter(|(_, _, change)| change.status == AvatarStatus::Completed)
        .map(|(index, id, change)| (*id, keys[*index].as_str(), job_files(&change.files)))
        .filter(|(_, _, files)| !files.is_empty())
        .collect();
    // The events (with the file jobs) and the avatars' updates, pipelined on the connection:
    // the plan assumes every event new, and where recording one says otherwise the batch
    // fails as a whole and the caller rolls it back.
    let (recorded, mut views) = tokio::try_join!(
        record_steps(db, deliveries, &keys, &steps, &repeats, &jobs),
        apply_changes(db, sql, deliveries, &applied),
    )?;

    // Each delivery's answer.
    let mut results = Vec::with_capacity(deliveries.len());
    for (index, step) in steps.iter().enumerate() {
        let first = match step {
            Step::Recorded { .. } => index,
            Step::SameAs(first) => *first,
        };
        let (event_id, inserted, file_job) = recorded[&keys[first]];
        let Step::Recorded { planned, .. } = &steps[first] else {
            unreachable!("SameAs points at a recorded step")
        };
        let new = inserted && first == index;
        results.push(Ingested {
            outcome: if new {
                planned.outcome
            } else {
                Outcome::Duplicate
            },
            event_id,
            changed: if new { views.remove(&index) } else { None },
            file_job: if new { file_job } else { None },
        });
    }
    Ok(results)
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

/// Each delivery planned against the avatar as the earlier ones leave it; a key seen before
/// in the batch is `SameAs` its first, which counts it in `repeats`.
fn plan_steps<'k>(
    deliveries: &[&Delivery],
    keys: &'k [String],
    avatars: &mut HashMap<String, LockedAvatar>,
) -> (Vec<Step>, HashMap<usize, i32>) {
    let mut first_of_key: HashMap<&'k str, usize> = HashMap::new();
    let mut repeats: HashMap<usize, i32> = HashMap::new();
    let mut steps = Vec::with_capacity(deliveries.len());
    for (index, delivery) in deliveries.iter().enumerate() {
        if let Some(&first) = first_of_key.get(keys[index].as_str()) {
            *repeats.entry(first).or_default() += 1;
            steps.push(Step::SameAs(first));
            continue;
        }
        first_of_key.insert(&keys[index], index);
        let avatar = avatars.get_mut(&delivery.callback.request_id);
        let planned = plan(avatar.as_deref(), &delivery.callback);
        let avatar_id = avatar.as_ref().map(|a| a.id);
        if let (Some(avatar), Some(Decision::Apply(change))) = (avatar, &planned.decision) {
            let progress = avatar.current.map_or(0, |c| c.progress);
            avatar.current = Some(avatar::Current {
                status: change.status,
                progress: change.progress.unwrap_or(progress),
            });
        }
        steps.push(Step::Recorded { planned, avatar_id });
    }
    (steps, repeats)
}

/// Records each key once (counting its repeats), with the file jobs; by key, its event id,
/// whether it is new and its file job. Fails with `OneByOne` where the database contradicts
/// the plan.
async fn record_steps(
    db: &impl GenericClient,
    deliveries: &[&Delivery],
    keys: &[String],
    steps: &[Step],
    repeats: &HashMap<usize, i32>,
    jobs: &[(Uuid, &str, Vec<JobFile>)],
) -> Result<HashMap<String, (i64, bool, Option<i64>)>, BatchError> {
    let mut columns = EventColumns::default();
    let mut step_of_key = HashMap::new();
    for (index, step) in steps.iter().enumerate() {
        if let Step::Recorded { planned, avatar_id } = step {
            let deliveries_of_key = 1 + repeats.get(&index).copied().unwrap_or(0);
            columns.push(
                deliveries[index],
                &keys[index],
                planned,
                *avatar_id,
                deliveries_of_key,
            );
            step_of_key.insert(keys[index].as_str(), (planned, *avatar_id));
        }
    }
    for (avatar_id, key, files) in jobs {
        columns.push_job(*avatar_id, key, files);
    }
    let mut recorded = HashMap::with_capacity(step_of_key.len());
    let mut jobs_enqueued = 0;
    for RecordedEvent {
        key,
        event_id,
        inserted,
        first_outcome,
        file_job,
    } in columns.record(db).await?
    {
        if !inserted {
            let (planned, avatar_id) = step_of_key[key.as_str()];
            if first_outcome == Outcome::Unmatched.as_str() && avatar_id.is_some() {
                return Err(BatchError::OneByOne("an unmatched delivery now matches"));
            }
            if matches!(planned.decision, Some(Decision::Apply(_))) {
                return Err(BatchError::OneByOne(
                    "a delivery planned as new was already recorded",
                ));
            }
        }
        jobs_enqueued += usize::from(file_job.is_some());
        recorded.insert(key, (event_id, inserted, file_job));
    }
    if jobs_enqueued != columns.jobs() {
        return Err(BatchError::OneByOne("a file job's event was not recorded"));
    }
    Ok(recorded)
}

/// Avatars with one change in the batch: one statement for all of them. An avatar with several
/// (a progress update and its completion arriving together): its changes one after another, in
/// order, so each sees the one before. Returns the committed view after each applied delivery.
async fn apply_changes(
    db: &impl GenericClient,
    sql: &AvatarSql,
    deliveries: &[&Delivery],
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
            columns.push(sql, *id, change, deliveries[*index]);
        }
        for view in columns.apply(db, sql).await? {
            views.insert(index_of_avatar[&view.avatar_id], view);
        }
    }
    for (index, id, change) in several {
        let mut columns = ChangeColumns::default();
        columns.push(sql, id, change, deliveries[index]);
        if let Some(view) = columns.apply(db, sql).await?.pop() {
            views.insert(index, view);
        }
    }
    Ok(views)
}
