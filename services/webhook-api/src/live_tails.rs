//! The console's live tails on this instance: one watch on Redis's streams shared by every open
//! tail (not a connection each), running only while a tail is open, and how many tails may be
//! open at once, per session and in all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::cache::Cache;

/// How long one wait on Redis's streams blocks: also how often a tail reads PostgreSQL when
/// nothing woke it (a delivery on no stream, or Redis away).
pub const WAKE: Duration = Duration::from_secs(2);

/// What the shared watch last saw: a count of wake-ups (a tail reads PostgreSQL when it
/// moves) and whether Redis answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wake {
    pub count: u64,
    /// `None` until the first wait has returned.
    pub redis_up: Option<bool>,
}

pub struct LiveTails {
    cache: Cache,
    streams: Vec<String>,
    per_session: usize,
    most: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    by_session: HashMap<[u8; 32], usize>,
    total: usize,
    /// The running watch's sender; `None` while no tail is open.
    wake: Option<watch::Sender<Wake>>,
}

/// Why a tail was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this session already has {0} live tails open on this instance (CONSOLE_LIVE_TAILS_PER_SESSION): close one")]
    Session(usize),
    #[error("this instance already serves {0} live tails (CONSOLE_LIVE_TAILS): try again later")]
    Instance(usize),
}

/// One open tail: counted until dropped.
pub struct Tail {
    tails: Arc<LiveTails>,
    session: [u8; 32],
    pub wake: watch::Receiver<Wake>,
}

impl Drop for Tail {
    fn drop(&mut self) {
        let mut open = self.tails.lock();
        open.total -= 1;
        if let Some(count) = open.by_session.get_mut(&self.session) {
            *count -= 1;
            if *count == 0 {
                open.by_session.remove(&self.session);
            }
        }
    }
}

impl Tail {
    /// The digest of the session that opened it.
    pub fn session(&self) -> &[u8; 32] {
        &self.session
    }
}

impl LiveTails {
    pub fn new(cache: Cache, streams: Vec<String>, per_session: usize, most: usize) -> Self {
        Self {
            cache,
            streams,
            per_session,
            most,
            open: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A tail for `session` (its id's digest), within the bounds; starts the shared watch
    /// when it is the only one.
    pub fn open(self: &Arc<Self>, session: [u8; 32]) -> Result<Tail, Refused> {
        let mut open = self.lock();
        let of_session = open.by_session.get(&session).copied().unwrap_or(0);
        if of_session >= self.per_session {
            return Err(Refused::Session(of_session));
        }
        if open.total >= self.most {
            return Err(Refused::Instance(open.total));
        }
        *open.by_session.entry(session).or_default() += 1;
        open.total += 1;
        let wake = match &open.wake {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(Wake::default());
                open.wake = Some(sender.clone());
                tokio::spawn(self.clone().watch_streams(sender));
                receiver
            }
        };
        Ok(Tail {
            tails: self.clone(),
            session,
            wake,
        })
    }

    /// Blocks on the streams and wakes every tail; ends when the last tail is closed.
    async fn watch_streams(self: Arc<Self>, sender: watch::Sender<Wake>) {
        let mut watch = self.cache.watch(self.streams.clone());
        loop {
            {
                let mut open = self.lock();
                if open.total == 0 {
                    open.wake = None;
                    return;
                }
            }
            let woken = watch.wait(WAKE).await;
            let up = woken.is_ok();
            sender.send_if_modified(|wake| {
                let before = *wake;
                if matches!(woken, Ok(true)) {
                    wake.count += 1;
                }
                wake.redis_up = Some(up);
                *wake != before
            });
            if !up {
                // Not a connection attempt a millisecond: the tails read PostgreSQL meanwhile.
                tokio::time::sleep(WAKE).await;
            }
        }
    }
}
