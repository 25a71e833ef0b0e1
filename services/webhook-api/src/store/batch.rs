//! Many deliveries in one transaction with a fixed number of statements, whatever the batch's
//! size: lock every avatar, record every delivery, update the avatars and enqueue the file jobs
//! (those two pipelined), each as one statement over arrays. One delivery at a time costs four
//! round trips per delivery; here a batch of 30 costs four in all.
//!
//! Decisions are planned in Rust, in delivery-key order, from the locked rows (a later delivery
//! for the same avatar sees the earlier one's change). A plan that the database contradicts (a
//! delivery thought new is already recorded and would have changed the avatar, or an
//! `unmatched` one now matches) is not patched up: the caller rolls back and commits the
//! deliveries one by one through `ingest::ingest`, which handles every case.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use deadpool_postgres::Transaction;
use uuid::Uuid;

use super::avatars::AvatarView;
use super::ingest::{plan, Delivery, Ingested, LockedAvatar, Outcome, Planned};
use super::schema::AvatarSql;
use super::{jobs, StoreError};
use crate::avatar::{self, AvatarStatus, Change, Decision, TrainingType};
use crate::files::policy::job_files;

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
const LOCK_AVATARS: &str =
    "SELECT fal_request_id, id, status::text, COALESCE(training_progress, 0) \
     FROM avatars WHERE fal_request_id = ANY($1) \
     ORDER BY fal_request_id, created_at DESC NULLS LAST FOR UPDATE";

const RECORD_EVENTS: &str = "INSERT INTO webhook_events \
     (source, delivery_key, fal_request_id, event, avatar_id, outcome, outcome_reason, \
      signature_scheme, http_request_id, instance_id, training_type, payload, deliveries, \
      processing_ms) \
     SELECT 'fal', k, r, e, a, o, o_reason, s, h, i, t, p::jsonb, n, ms FROM unnest( \
       $1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[], \
       $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::real[]) \
       AS d(k, r, e, a, o, o_reason, s, h, i, t, p, n, ms) \
     ON CONFLICT (delivery_key) DO UPDATE SET \
       deliveries = webhook_events.deliveries + excluded.deliveries, last_delivered_at = now() \
     RETURNING delivery_key, id, (xmax = 0) AS inserted, outcome";

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
    tx: &Transaction<'_>,
    sql: &AvatarSql,
    deliveries: &[&Delivery],
) -> Result<Vec<Ingested>, BatchError> {
    let keys: Vec<String> = deliveries
        .iter()
        .map(|d| d.callback.delivery_key())
        .collect();

    // 1. Lock the avatars.
    let mut request_ids: Vec<&str> = deliveries
        .iter()
        .map(|d| d.callback.request_id.as_str())
        .collect();
    request_ids.sort_unstable();
    request_ids.dedup();
    let mut avatars: HashMap<String, LockedAvatar> = HashMap::new();
    for row in tx
        .query(&tx.prepare_cached(LOCK_AVATARS).await?, &[&request_ids])
        .await?
    {
        let request_id: String = row.try_get(0)?;
        // Rows come newest first within an id: keep the first.
        if let Entry::Vacant(slot) = avatars.entry(request_id) {
            slot.insert(LockedAvatar::from_row(&row, 1)?);
        }
    }

    // 2. Plan each delivery against the avatar as the earlier ones leave it.
    let mut first_of_key: HashMap<&str, usize> = HashMap::new();
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

    // 3. Record the deliveries (each key once, counting its repeats).
    let recorded_rows = {
        let mut columns = EventColumns::default();
        for (index, step) in steps.iter().enumerate() {
            if let Step::Recorded { planned, avatar_id } = step {
                columns.push(
                    deliveries[index],
                    &keys[index],
                    planned,
                    *avatar_id,
                    1 + repeats.get(&index).copied().unwrap_or(0),
                );
            }
        }
        tx.query(
            &tx.prepare_cached(RECORD_EVENTS).await?,
            &[
                &columns.key,
                &columns.request_id,
                &columns.event,
                &columns.avatar_id,
                &columns.outcome,
                &columns.reason,
                &columns.scheme,
                &columns.http_request_id,
                &columns.instance_id,
                &columns.training_type,
                &columns.body,
                &columns.deliveries,
                &columns.processing_ms,
            ],
        )
        .await?
    };
    let mut recorded: HashMap<String, (i64, bool)> = HashMap::with_capacity(recorded_rows.len());
    for row in &recorded_rows {
        let inserted: bool = row.try_get(2)?;
        let first_outcome: &str = row.try_get(3)?;
        let key: String = row.try_get(0)?;
        if !inserted {
            let index = first_of_key[key.as_str()];
            let Step::Recorded { planned, avatar_id } = &steps[index] else {
                unreachable!("first_of_key points at recorded steps")
            };
            if first_outcome == Outcome::Unmatched.as_str() && avatar_id.is_some() {
                return Err(BatchError::OneByOne("an unmatched delivery now matches"));
            }
            if matches!(planned.decision, Some(Decision::Apply(_))) {
                return Err(BatchError::OneByOne(
                    "a delivery planned as new was already recorded",
                ));
            }
        }
        recorded.insert(key, (row.try_get(1)?, inserted));
    }

    // 4. Apply the changes and enqueue the file jobs, pipelined on the connection.
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
    let mut changes_per_avatar: HashMap<Uuid, usize> = HashMap::new();
    for (_, id, _) in &applied {
        *changes_per_avatar.entry(*id).or_default() += 1;
    }
    let mut jobs_to_enqueue = Vec::new();
    for (index, id, change) in &applied {
        let files = job_files(&change.files);
        if change.status == AvatarStatus::Completed && !files.is_empty() {
            jobs_to_enqueue.push((*id, recorded[&keys[*index]].0, files));
        }
    }
    let (views, job_ids) = tokio::try_join!(
        apply_changes(tx, sql, deliveries, &applied, &changes_per_avatar),
        async {
            jobs::enqueue_many(tx, &jobs_to_enqueue)
                .await
                .map_err(BatchError::from)
        },
    )?;
    let job_of_event: HashMap<i64, i64> = jobs_to_enqueue
        .iter()
        .map(|(_, event_id, _)| *event_id)
        .zip(job_ids)
        .collect();

    // 5. Each delivery's answer.
    let mut results = Vec::with_capacity(deliveries.len());
    let mut views = views;
    for (index, step) in steps.iter().enumerate() {
        let first = match step {
            Step::Recorded { .. } => index,
            Step::SameAs(first) => *first,
        };
        let (event_id, inserted) = recorded[&keys[first]];
        let Step::Recorded { planned, .. } = &steps[first] else {
            unreachable!("SameAs points at a recorded step")
        };
        if !inserted || first != index {
            results.push(Ingested {
                outcome: Outcome::Duplicate,
                event_id,
                changed: None,
                file_job: None,
            });
            continue;
        }
        results.push(Ingested {
            outcome: planned.outcome,
            event_id,
            changed: views.remove(&index),
            file_job: job_of_event.get(&event_id).copied(),
        });
    }
    Ok(results)
}

/// Avatars with one change in the batch: one statement for all of them. An avatar with several
/// (a progress update and its completion arriving together): its changes one after another, in
/// order, so each sees the one before. Returns the committed view after each applied delivery.
async fn apply_changes(
    tx: &Transaction<'_>,
    sql: &AvatarSql,
    deliveries: &[&Delivery],
    applied: &[(usize, Uuid, &Change)],
    changes_per_avatar: &HashMap<Uuid, usize>,
) -> Result<HashMap<usize, AvatarView>, BatchError> {
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
        for view in columns.apply(tx, sql).await? {
            views.insert(index_of_avatar[&view.avatar_id], view);
        }
    }
    for (index, id, change) in several {
        let mut columns = ChangeColumns::default();
        columns.push(sql, id, change, deliveries[index]);
        if let Some(view) = columns.apply(tx, sql).await?.pop() {
            views.insert(index, view);
        }
    }
    Ok(views)
}

/// The batch's deliveries as one array per `webhook_events` column.
#[derive(Default)]
struct EventColumns<'a> {
    key: Vec<&'a str>,
    request_id: Vec<&'a str>,
    event: Vec<&'static str>,
    avatar_id: Vec<Option<Uuid>>,
    outcome: Vec<&'static str>,
    reason: Vec<Option<&'static str>>,
    scheme: Vec<&'static str>,
    http_request_id: Vec<&'a str>,
    instance_id: Vec<&'a str>,
    training_type: Vec<Option<&'static str>>,
    body: Vec<&'a str>,
    deliveries: Vec<i32>,
    processing_ms: Vec<f32>,
}

impl<'a> EventColumns<'a> {
    fn push(
        &mut self,
        delivery: &'a Delivery,
        key: &'a str,
        planned: &Planned,
        avatar_id: Option<Uuid>,
        deliveries: i32,
    ) {
        self.key.push(key);
        self.request_id.push(&delivery.callback.request_id);
        self.event.push(delivery.callback.event.kind());
        self.avatar_id.push(avatar_id);
        self.outcome.push(planned.outcome.as_str());
        self.reason.push(planned.reason);
        self.scheme.push(delivery.scheme.as_str());
        self.http_request_id.push(&delivery.http_request_id);
        self.instance_id.push(&delivery.instance_id);
        self.training_type
            .push(delivery.training_type.map(TrainingType::as_str));
        self.body.push(&delivery.body);
        self.deliveries.push(deliveries);
        self.processing_ms.push(delivery.processing_ms());
    }
}

/// Applied changes as one array per value of `AvatarSql::apply_many`.
#[derive(Default)]
struct ChangeColumns<'a> {
    id: Vec<Uuid>,
    status: Vec<&'static str>,
    progress: Vec<Option<i32>>,
    lora_url: Vec<Option<&'a str>>,
    config_url: Vec<Option<&'a str>>,
    error: Vec<Option<Cow<'a, str>>>,
    body: Vec<&'a str>,
    training_type: Vec<Option<&'static str>>,
}

impl<'a> ChangeColumns<'a> {
    /// One statement for every change pushed; the avatars as committed.
    async fn apply(
        &self,
        tx: &Transaction<'_>,
        sql: &AvatarSql,
    ) -> Result<Vec<AvatarView>, BatchError> {
        let rows = tx
            .query(
                &tx.prepare_cached(&sql.apply_many).await?,
                &[
                    &self.id,
                    &self.status,
                    &self.progress,
                    &self.lora_url,
                    &self.config_url,
                    &self.error,
                    &self.body,
                    &self.training_type,
                ],
            )
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in &rows {
            views.push(AvatarView::from_row(row)?);
        }
        Ok(views)
    }

    fn push(&mut self, sql: &AvatarSql, id: Uuid, change: &'a Change, delivery: &'a Delivery) {
        self.id.push(id);
        self.status.push(change.status.as_str());
        self.progress.push(change.progress);
        self.lora_url.push(
            change
                .files
                .lora
                .as_ref()
                .and_then(|f| sql.fitting_url(&f.url)),
        );
        self.config_url.push(
            change
                .files
                .config
                .as_ref()
                .and_then(|f| sql.fitting_url(&f.url)),
        );
        self.error
            .push(change.error.as_deref().map(|e| sql.fitting_error(e)));
        self.body.push(&delivery.body);
        self.training_type
            .push(delivery.training_type.map(TrainingType::as_str));
    }
}
