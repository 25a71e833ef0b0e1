//! `tracing` subscriber: JSON lines in production, readable text elsewhere, `LOG_LEVEL` filter.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init`: tests start several apps in one process.
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// At most so many refused webhook requests logged a second, so a flood of bad signatures
/// does not flood the logs (formatting and writing a line was half of a refusal's CPU). The
/// rest are counted, in `webhook_signature_failures_total` and in one summary line.
pub struct RefusalLog {
    per_second: u32,
    window: Mutex<Window>,
}

struct Window {
    /// Opened by the first refusal after the last window closed.
    started: Option<Instant>,
    logged: u32,
    /// Refusals not logged since the last summary, and when the first of them came.
    unlogged: u64,
    unlogged_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// What to do with one refusal.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Log it; first say how many were left out before it, if any.
    Log {
        unlogged: u64,
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Over this second's budget: counted only.
    Skip,
}

impl RefusalLog {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Mutex::new(Window {
                started: None,
                logged: 0,
                unlogged: 0,
                unlogged_since: None,
            }),
        }
    }

    pub fn admit(&self) -> Refusal {
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window
            .started
            .is_none_or(|started| started.elapsed() >= Duration::from_secs(1))
        {
            window.started = Some(Instant::now());
            window.logged = 0;
        }
        if window.logged >= self.per_second {
            window.unlogged += 1;
            window.unlogged_since.get_or_insert_with(chrono::Utc::now);
            return Refusal::Skip;
        }
        window.logged += 1;
        Refusal::Log {
            unlogged: std::mem::take(&mut window.unlogged),
            since: window.unlogged_since.take(),
        }
    }
}

/// `e` and its sources: what really happened ("db error" alone hides the server's reason).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{Refusal, RefusalLog};

    #[test]
    fn refusals_past_the_budget_are_counted_and_summed_up_on_the_next_logged_one() {
        let log = RefusalLog::new(2);
        assert!(matches!(log.admit(), Refusal::Log { unlogged: 0, .. }));
        assert!(matches!(log.admit(), Refusal::Log { unlogged: 0, .. }));
        assert_eq!(log.admit(), Refusal::Skip);
        assert_eq!(log.admit(), Refusal::Skip);
        std::thread::sleep(std::time::Duration::from_millis(1010));
        match log.admit() {
            Refusal::Log { unlogged, since } => {
                assert_eq!(unlogged, 2);
                assert!(since.is_some());
            }
            Refusal::Skip => panic!("a new second logs again"),
        }
        assert!(matches!(
            log.admit(),
            Refusal::Log {
                unlogged: 0,
                since: None
            }
        ));
        assert_eq!(RefusalLog::new(0).admit(), Refusal::Skip);
    }
}
