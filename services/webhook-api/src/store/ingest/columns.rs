//! A delivery's rows as one array per column, for one statement over `unnest`: the same
//! statements whether one delivery is committed or a whole batch.

use std::borrow::Cow;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{Delivery, Planned};
use crate::avatar::{Change, TrainingType};
use crate::files::policy::JobFile;
use crate::store::avatars::AvatarView;
use crate::store::deliveries::EventOutcome;
use crate::store::schema::AvatarSql;
use crate::store::StoreError;

/// The events' rows, one per element of the arrays $1–$13 (both statements below).
macro_rules! insert_events {
    () => {
        "INSERT INTO webhook_events \
         (source, delivery_key, fal_request_id, event, avatar_id, outcome, outcome_reason, \
          signature_scheme, http_request_id, instance_id, training_type, payload, deliveries, \
          processing_ms) \
         SELECT 'fal', k, r, e, a, o, o_reason, s, h, i, t, p::jsonb, n, ms FROM unnest( \
           $1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::text[], \
           $8::text[], $9::text[], $10::text[], $11::text[], $12::int[], $13::real[]) \
           AS d(k, r, e, a, o, o_reason, s, h, i, t, p, n, ms)"
    };
}

/// The file jobs of completions ($14–$16), each for its event if that one is new, and what
/// both statements answer: by key, the event, whether it is new, its first outcome, its job.
macro_rules! enqueue_jobs_and_answer {
    () => {
        "jobs AS ( \
           INSERT INTO file_jobs (avatar_id, event_id, files) \
           SELECT j.avatar_id, recorded.id, j.files \
           FROM unnest($14::uuid[], $15::text[], $16::jsonb[]) AS j(avatar_id, delivery_key, files) \
           JOIN recorded ON recorded.delivery_key = j.delivery_key AND recorded.inserted \
           RETURNING id, event_id) \
         SELECT recorded.delivery_key, recorded.id, recorded.inserted, recorded.outcome, jobs.id \
         FROM recorded LEFT JOIN jobs ON jobs.event_id = recorded.id"
    };
}

/// One delivery at a time: the upsert takes each event row's lock, so concurrent redeliveries
/// wait for the first one's commit and then see it. `xmax = 0` tells a fresh insert from a
/// conflict.
pub(super) const RECORD_EVENTS: &str = concat!(
    "WITH recorded AS (",
    insert_events!(),
    " ON CONFLICT (delivery_key) DO UPDATE SET \
       deliveries = webhook_events.deliveries + excluded.deliveries, last_delivered_at = now() \
     RETURNING delivery_key, id, (xmax = 0) AS inserted, outcome), ",
    enqueue_jobs_and_answer!()
);

/// A batch, whose plan knows which keys are recorded already (`batch::RECORDED_KEYS`): those
/// are counted ($17 their events, $18 how often each came again), the others inserted. A key
/// the plan thought new but that is recorded is refused (unique `delivery_key`): that aborts
/// the transaction, so the COMMIT sent in the same flush rolls it back (`store::group`).
pub(super) const RECORD_NEW_EVENTS: &str = concat!(
    "WITH repeated AS ( \
       UPDATE webhook_events e SET deliveries = e.deliveries + r.n, last_delivered_at = now() \
       FROM unnest($17::bigint[], $18::int[]) AS r(id, n) WHERE e.id = r.id), \
     recorded AS (",
    insert_events!(),
    " RETURNING delivery_key, id, true AS inserted, outcome), ",
    enqueue_jobs_and_answer!()
);

/// What recording one delivery key found.
pub(super) struct RecordedEvent {
    pub key: String,
    pub event_id: i64,
    pub inserted: bool,
    /// The outcome it was first recorded with.
    pub first_outcome: EventOutcome,
    /// The file job enqueued for it (see `EventColumns::push_job`).
    pub file_job: Option<i64>,
}

/// Deliveries as one array per `webhook_events` column.
#[derive(Default)]
pub(super) struct EventColumns<'a> {
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
    job_avatar_id: Vec<Uuid>,
    job_key: Vec<&'a str>,
    job_files: Vec<serde_json::Value>,
    repeated_event: Vec<i64>,
    repeated_times: Vec<i32>,
}

impl<'a> EventColumns<'a> {
    /// `deliveries`: how often this key arrived in the batch.
    pub(super) fn push(
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

    /// A file job for the event of `key`, enqueued if that event is new.
    pub(super) fn push_job(&mut self, avatar_id: Uuid, key: &'a str, files: &[JobFile]) {
        self.job_avatar_id.push(avatar_id);
        self.job_key.push(key);
        self.job_files
            .push(serde_json::to_value(files).expect("job files serialize"));
    }

    /// A key recorded before this batch that arrived `times` more.
    pub(super) fn push_repeat(&mut self, event_id: i64, times: i32) {
        self.repeated_event.push(event_id);
        self.repeated_times.push(times);
    }

    /// One statement for every delivery and job pushed (each key once), whether or not its key
    /// is recorded already.
    pub(super) async fn record(
        &self,
        db: &impl GenericClient,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let statement = db.prepare_cached(RECORD_EVENTS).await?;
        let rows = db.query(&statement, &self.parameters()).await?;
        recorded_events(&rows)
    }

    /// One statement for a batch's new keys and its repeats (see `RECORD_NEW_EVENTS`).
    pub(super) async fn record_new(
        &self,
        db: &impl GenericClient,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let statement = db.prepare_cached(RECORD_NEW_EVENTS).await?;
        let mut parameters = self.parameters();
        parameters.push(&self.repeated_event);
        parameters.push(&self.repeated_times);
        let rows = db.query(&statement, &parameters).await?;
        recorded_events(&rows)
    }

    fn parameters(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.key,
            &self.request_id,
            &self.event,
            &self.avatar_id,
            &self.outcome,
            &self.reason,
            &self.scheme,
            &self.http_request_id,
            &self.instance_id,
            &self.training_type,
            &self.body,
            &self.deliveries,
            &self.processing_ms,
            &self.job_avatar_id,
            &self.job_key,
            &self.job_files,
        ]
    }
}

fn recorded_events(rows: &[tokio_postgres::Row]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(RecordedEvent {
                key: row.try_get(0)?,
                event_id: row.try_get(1)?,
                inserted: row.try_get(2)?,
                first_outcome: EventOutcome::read(row, 3)?,
                file_job: row.try_get(4)?,
            })
        })
        .collect()
}

/// Applied changes as one array per value of `AvatarSql::apply`.
#[derive(Default)]
pub(super) struct ChangeColumns<'a> {
    id: Vec<Uuid>,
    status: Vec<&'static str>,
    progress: Vec<Option<i32>>,
    lora_url: Vec<Option<&'a str>>,
    config_url: Vec<Option<&'a str>>,
    error: Vec<Option<Cow<'a, str>>>,
    body: Vec<&'a str>,
    training_type: Vec<Option<&'static str>>,
    finetune_id: Vec<Option<&'a str>>,
    /// The applying delivery's key: its follow-ups are recorded under it.
    key: Vec<&'a str>,
    /// Whether the change has files to copy (its photos then go once the copy is done).
    copies: Vec<bool>,
}

impl<'a> ChangeColumns<'a> {
    /// One statement for every change pushed; the avatars as committed.
    pub(super) async fn apply(
        &self,
        db: &impl GenericClient,
        sql: &AvatarSql,
    ) -> Result<Vec<AvatarView>, StoreError> {
        let rows = db
            .query(
                &db.prepare_cached(&sql.apply).await?,
                &[
                    &self.id,
                    &self.status,
                    &self.progress,
                    &self.lora_url,
                    &self.config_url,
                    &self.error,
                    &self.body,
                    &self.training_type,
                    &self.finetune_id,
                    &self.key,
                    &self.copies,
                ],
            )
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in &rows {
            views.push(AvatarView::from_row(row)?);
        }
        Ok(views)
    }

    pub(super) fn push(
        &mut self,
        sql: &AvatarSql,
        id: Uuid,
        change: &'a Change,
        delivery: &'a Delivery,
        key: &'a str,
    ) {
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
        self.finetune_id.push(change.files.finetune_id.as_deref());
        self.key.push(key);
        self.copies
            .push(change.files.lora.is_some() || change.files.config.is_some());
    }
}
