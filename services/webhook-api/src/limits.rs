//! Fixed one-minute windows keyed by who asks: refused operator calls per address (so guessing
//! tokens is slow), replays per token (so one token cannot flood a stream). Kept in memory per
//! instance; a key's window starts with its first call.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before the expired ones are swept out, so a scan of addresses cannot grow it.
const SWEEP_AT: usize = 4096;
const WINDOW: Duration = Duration::from_secs(60);

pub struct PerMinute<K> {
    limit: u32,
    windows: Mutex<HashMap<K, (Instant, u32)>>,
}

/// A call allowed within its window: how many more are, and when the window ends.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    pub remaining: u32,
    pub reset: Duration,
}

impl<K: Hash + Eq> PerMinute<K> {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            windows: Mutex::default(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// How long until `key` may call again, when it used up its window; nothing is counted.
    pub fn exhausted(&self, key: &K) -> Option<Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let (start, count) = windows.get(key)?;
        let left = WINDOW.checked_sub(now.duration_since(*start))?;
        (*count >= self.limit).then_some(left)
    }

    /// Counts one call of `key`: allowed, or how long until it may call again.
    pub fn take(&self, key: K) -> Result<Allowed, Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: K, now: Instant) -> Result<Allowed, Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *count) = (now, 0);
        }
        let reset = WINDOW.saturating_sub(now.duration_since(*start));
        if *count >= self.limit {
            return Err(reset);
        }
        *count += 1;
        Ok(Allowed {
            remaining: self.limit - *count,
            reset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_a_minute_and_others_theirs() {
        let limits = PerMinute::new(3);
        let remaining: Vec<u32> = (0..3)
            .map(|_| limits.take("a").unwrap().remaining)
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        assert!(limits.exhausted(&"a").is_some());
        let wait = limits.take("a").unwrap_err();
        assert!(wait > Duration::from_secs(55) && wait <= WINDOW, "{wait:?}");
        assert!(limits.exhausted(&"b").is_none());
        assert_eq!(limits.take("b").unwrap().remaining, 2);
    }

    #[test]
    fn a_scan_of_many_keys_is_swept_once_their_minute_is_over() {
        let limits = PerMinute::new(1);
        let start = Instant::now();
        for n in 0..SWEEP_AT {
            limits.take_at(n, start).unwrap();
        }
        assert!(limits.take_at(0, start).is_err());
        let later = start + WINDOW + Duration::from_secs(1);
        limits.take_at(SWEEP_AT, later).unwrap();
        assert_eq!(limits.windows.lock().unwrap().len(), 1);
        limits.take_at(0, later).unwrap();
    }
}
