//! A committed change is announced on Redis after its answer, not before: the request path
//! queues it and goes on, and one task sends everything queued in one round trip. So no
//! callback waits on Redis, slow or down, and Redis takes one pipeline for many changes.
//!
//! What this task does not announce is the late announcer's (`tasks::late_announcer`), which
//! announces each change once: a change the full queue could not take, one that Redis refused,
//! and one still queued half a settle time after its callback arrived. That last rule keeps
//! the two apart: the late announcer looks at a change only a whole settle time after its
//! callback arrived, and this task's announcement is not checked against it.

use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use tokio::sync::mpsc;

use crate::cache::{Announced, Cache};
use crate::metrics;
use crate::store::avatars::AvatarView;

/// Changes waiting for the task: at saturation one instance commits about 5 000 a second.
const QUEUE: usize = 8192;
/// Changes sent in one pipeline at most.
const PIPELINE: usize = 256;

struct Queued {
    view: AvatarView,
    event: &'static str,
    mark: Announced,
    /// When the callback arrived (before its transaction began).
    arrived: Instant,
}

/// The request path's handle on the announcing task; cheap to clone.
#[derive(Clone)]
pub struct Announcer {
    queue: mpsc::Sender<Queued>,
    redis_errors: IntCounterVec,
}

impl Announcer {
    /// Starts the task. `settle` is the late announcer's (`ANNOUNCE_SETTLE_MS`).
    pub fn start(cache: Cache, redis_errors: IntCounterVec, settle: Duration) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(announce(cache, receiver, redis_errors.clone(), settle / 2));
        Self {
            queue,
            redis_errors,
        }
    }

    /// Queues a committed change; never waits.
    pub fn announce(
        &self,
        view: AvatarView,
        event: &'static str,
        mark: Announced,
        arrived: Instant,
    ) {
        let queued = Queued {
            view,
            event,
            mark,
            arrived,
        };
        if self.queue.try_send(queued).is_err() {
            metrics::redis_failed(
                &self.redis_errors,
                "publish",
                &"the announcement queue is full",
                "committed change not announced on Redis yet; the announcer retries",
            );
        }
    }
}

async fn announce(
    cache: Cache,
    mut receiver: mpsc::Receiver<Queued>,
    redis_errors: IntCounterVec,
    too_late: Duration,
) {
    let mut batch = Vec::with_capacity(PIPELINE);
    while receiver.recv_many(&mut batch, PIPELINE).await > 0 {
        let before = batch.len();
        batch.retain(|queued| queued.arrived.elapsed() < too_late);
        if batch.len() < before {
            metrics::redis_failed(
                &redis_errors,
                "publish",
                &format!("{} changes queued too long", before - batch.len()),
                "committed changes left to the late announcer",
            );
        }
        if batch.is_empty() {
            continue;
        }
        let changes = batch.iter().map(|q| (&q.view, q.event, q.mark));
        if let Err(e) = cache.publish_committed_changes(changes).await {
            metrics::redis_failed(
                &redis_errors,
                "publish",
                &e,
                "committed changes not announced on Redis yet; the announcer retries",
            );
        }
        batch.clear();
    }
}
