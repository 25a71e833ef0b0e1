//! Group commit: deliveries that arrive together share one transaction, so one WAL flush
//! acknowledges many callbacks instead of one. Each is still committed before it is answered.
//!
//! A few loops take turns draining a queue, one batch at a time: the next batch gathers what
//! arrived while this one ran, so batches grow with the load and PostgreSQL's cost per callback
//! falls (a second batch in flight only made both smaller). A batch held up (a row the bot
//! keeps locked, a slow disk) lets the next loop start after `HELD_UP_AFTER`. Within
//! a batch, deliveries run in delivery-key order (the key starts with FAL's request id), so
//! every batch locks avatars in the same order and batches cannot deadlock each other. If a
//! batch fails as a whole, its deliveries are committed one by one, so one bad delivery costs
//! the others nothing but a retry.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Object, Pool};
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};

use super::ingest::{self, BatchError, Delivery, Ingested};
use super::schema::AvatarSql;
use super::StoreError;

/// How long a batch runs before the next may start beside it (batches take 1–3 ms at
/// saturation on the benchmark machine).
const HELD_UP_AFTER: Duration = Duration::from_millis(20);

struct Pending {
    delivery: Delivery,
    reply: oneshot::Sender<Result<Ingested, StoreError>>,
}

#[derive(Clone)]
pub struct GroupCommitter {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommitter {
    /// One batch at a time of at most `max_batch` deliveries, up to `loops` when batches are
    /// held up.
    pub fn start(pool: Pool, sql: Arc<AvatarSql>, loops: usize, max_batch: usize) -> Self {
        let (queue, receiver) = mpsc::channel(max_batch * loops.max(1) * 4);
        let receiver = Arc::new(Mutex::new(receiver));
        let turn = Arc::new(Semaphore::new(1));
        for _ in 0..loops.max(1) {
            tokio::spawn(commit_loop(
                pool.clone(),
                sql.clone(),
                receiver.clone(),
                turn.clone(),
                max_batch.max(1),
            ));
        }
        Self { queue }
    }

    /// Commits the delivery (with whatever else is queued) and returns its outcome.
    pub async fn ingest(&self, delivery: Delivery) -> Result<Ingested, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { delivery, reply })
            .await
            .map_err(|_| StoreError::Unavailable("shutting down".into()))?;
        answer.await.map_err(|_| {
            StoreError::Unexpected(anyhow::anyhow!("group commit loop ended without an answer"))
        })?
    }
}

async fn commit_loop(
    pool: Pool,
    sql: Arc<AvatarSql>,
    receiver: Arc<Mutex<mpsc::Receiver<Pending>>>,
    turn: Arc<Semaphore>,
    max_batch: usize,
) {
    loop {
        let Ok(my_turn) = turn.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let committed = commit_batch(&pool, &sql, batch);
        tokio::pin!(committed);
        tokio::select! {
            () = &mut committed => drop(my_turn),
            () = tokio::time::sleep(HELD_UP_AFTER) => {
                drop(my_turn);
                committed.await;
            }
        }
    }
}

async fn commit_batch(pool: &Pool, sql: &AvatarSql, mut batch: Vec<Pending>) {
    batch.sort_by_cached_key(|p| p.delivery.callback.delivery_key());
    // A batch of one too: the batch's statements run their generic plans (`together`), where
    // the one-by-one path would have PostgreSQL plan each of its statements anew.
    match together(pool, sql, &batch).await {
        Ok(results) => {
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.reply.send(Ok(result));
            }
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, size = batch.len(), "batch not committed as a whole; committing one by one")
        }
    }
    for pending in batch {
        let result = ingest::ingest(pool, sql, &pending.delivery).await;
        let _ = pending.reply.send(result);
    }
}

async fn together(
    pool: &Pool,
    sql: &AvatarSql,
    batch: &[Pending],
) -> Result<Vec<Ingested>, BatchError> {
    let open = OpenTransaction(Some(pool.get().await.map_err(StoreError::from)?));
    let db = open.client();
    let deliveries: Vec<&Delivery> = batch.iter().map(|p| &p.delivery).collect();
    // BEGIN goes out in the same flush as the batch's first statement: no round trip of its
    // own (a quarter of a batch's round trips).
    let worked = tokio::try_join!(
        async {
            db.batch_execute(ingest::BEGIN_BATCH)
                .await
                .map_err(BatchError::from)
        },
        ingest::ingest_all(db, sql, &deliveries),
    );
    open.finish(worked.map(|((), results)| results)).await
}

/// A transaction begun without waiting for BEGIN's answer, so without tokio-postgres'
/// `Transaction`. Dropped before it is finished (a panic), its connection leaves the pool
/// rather than hand the open transaction to the next batch.
struct OpenTransaction(Option<Object>);

impl OpenTransaction {
    fn client(&self) -> &Object {
        self.0
            .as_ref()
            .expect("an open transaction has its connection")
    }

    /// Commits what worked; rolls back what did not. Where that fails too, the connection
    /// is dropped (see `Drop`): a failed COMMIT is rare, and a new connection is sure to be
    /// outside any transaction.
    async fn finish<T>(mut self, worked: Result<T, BatchError>) -> Result<T, BatchError> {
        let db = self.client();
        let (ended, outcome) = match worked {
            Ok(value) => match db.batch_execute(ingest::COMMIT).await {
                Ok(()) => (true, Ok(value)),
                Err(e) => (false, Err(e.into())),
            },
            Err(e) => (db.batch_execute(ingest::ROLLBACK).await.is_ok(), Err(e)),
        };
        if ended {
            // Back to the pool, outside any transaction.
            drop(self.0.take());
        }
        outcome
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}
