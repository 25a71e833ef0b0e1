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

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
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
    let open = OpenTransaction::new(pool.get().await.map_err(StoreError::from)?);
    let db = open.client();
    let deliveries: Vec<&Delivery> = batch.iter().map(|p| &p.delivery).collect();
    // BEGIN goes out in the same flush as the batch's first statements and COMMIT in the same
    // as its last: two round trips in all.
    let planned = tokio::try_join!(
        biased;
        async {
            db.batch_execute(ingest::BEGIN_BATCH)
                .await
                .map_err(BatchError::from)
        },
        ingest::plan_batch(db, sql, &deliveries),
    );
    let plan = match planned {
        Ok(((), plan)) => plan,
        Err(e) => return open.finish(Err(e)).await,
    };
    if plan.writes_at_once() {
        open.commit_with(plan.write(db, sql)).await
    } else {
        open.finish(plan.write(db, sql).await).await
    }
}

/// A transaction begun without waiting for BEGIN's answer, so without tokio-postgres'
/// `Transaction`. Its connection goes back to the pool once COMMIT or ROLLBACK was answered;
/// dropped before that (a failed COMMIT, a panic), it leaves the pool rather than hand an open
/// transaction to the next batch: a new connection is sure to be outside any.
struct OpenTransaction {
    client: Option<Object>,
    ended: AtomicBool,
}

impl OpenTransaction {
    fn new(client: Object) -> Self {
        Self {
            client: Some(client),
            ended: AtomicBool::new(false),
        }
    }

    fn client(&self) -> &Object {
        self.client
            .as_ref()
            .expect("an open transaction has its connection")
    }

    /// Commits what worked; rolls back what did not.
    async fn finish<T>(&self, worked: Result<T, BatchError>) -> Result<T, BatchError> {
        let db = self.client();
        match worked {
            Ok(value) => {
                db.batch_execute(ingest::COMMIT).await?;
                self.ended.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Err(e) => {
                if db.batch_execute(ingest::ROLLBACK).await.is_ok() {
                    self.ended.store(true, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// Sends COMMIT right behind `writes`, in the same flush: one round trip fewer.
    /// tokio-postgres sends a request when its future is first polled, and the server runs
    /// requests in that order, so `writes` (which must send everything on its first poll) is
    /// polled once before COMMIT is. A write the server refuses aborts the transaction and
    /// COMMIT then rolls it back; one that fails before it is sent is not followed by COMMIT.
    async fn commit_with<T>(
        &self,
        writes: impl Future<Output = Result<T, BatchError>>,
    ) -> Result<T, BatchError> {
        let mut writes = pin!(writes);
        if let Poll::Ready(early) = poll_fn(|cx| Poll::Ready(writes.as_mut().poll(cx))).await {
            return self.finish(early).await;
        }
        let (written, committed) =
            tokio::join!(writes, self.client().batch_execute(ingest::COMMIT));
        match committed {
            // Outside any transaction again. Writes that failed were rolled back, unless the
            // server ran them and only their answer failed to decode: then they are committed,
            // and the deliveries, sent one by one, find themselves recorded.
            Ok(()) => {
                self.ended.store(true, Ordering::Relaxed);
                written
            }
            Err(e) => Err(written.err().unwrap_or_else(|| e.into())),
        }
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !self.ended.load(Ordering::Relaxed) {
                drop(Object::take(client));
            }
        }
    }
}
