//! `webhook-api status`, the cluster report: the cluster's state for an operator at a terminal, read from
//! PostgreSQL and Redis (not from an instance, so it works when both instances are down).

use std::fmt::Write;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::cache::Cache;
use crate::config::Config;
use crate::store::leases::{self, LeaseRun};
use crate::store::migrations;
use crate::store::report;
use crate::store::{self, avatars, jobs, StoreError};
use crate::tasks::github;
use crate::tasks::reconciler::RECONCILER_LEASE;
use crate::tasks::retention::RETENTION_LEASE;

/// The report, as text, and whether PostgreSQL could be read. What Redis knows (the spools,
/// the stream) is reported either way: a spool fills exactly when PostgreSQL is away.
pub async fn report(config: &Config, pool: &Pool) -> (String, Result<(), StoreError>) {
    let mut out = String::new();
    let now = Utc::now();
    let _ = writeln!(
        out,
        "webhook cluster status at {}",
        now.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let cache = Cache::new(&config.redis);
    if let Ok(cache) = &cache {
        spools_section(&mut out, cache, now).await;
    }
    let database = database_sections(&mut out, config, pool, now).await;
    if let Err(e) = &database {
        let _ = writeln!(out, "\nPostgreSQL: unavailable: {e}");
    }
    let cache_line = match cache {
        Ok(cache) => match cache.ping().await {
            Ok(()) => match cache.stream_len(&cache.events_stream()).await {
                Ok(len) => format!("ok; {} holds {len} entries", cache.events_stream()),
                Err(e) => format!("ok, but the stream cannot be read: {e}"),
            },
            Err(e) => format!("unavailable: {e}"),
        },
        Err(e) => format!("unavailable: {e}"),
    };
    let _ = writeln!(out, "\nRedis: {cache_line}");
    (out, database)
}

async fn database_sections(
    out: &mut String,
    config: &Config,
    pool: &Pool,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let limit = config.database.statement_timeout;
    let stale_after = config.stale_training_after();
    webhooks_section(out, pool, limit).await?;

    let avatar_sql = store::within(limit, migrations::load(pool)).await?;
    let training = store::within(
        limit,
        avatars::training_stats(pool, &avatar_sql, stale_after),
    )
    .await?;
    let _ = writeln!(
        out,
        "\nAvatars in training: {} (unchanged for over {}: {}; oldest unchanged for {})",
        training.in_training,
        duration(stale_after.as_secs_f64()),
        training.stale,
        duration(training.oldest_unchanged_secs),
    );
    let ages = store::within(limit, report::training_ages(pool, &avatar_sql)).await?;
    for (bucket, count) in ["under 30m", "30m to 2h", "over 2h"].iter().zip(ages) {
        let _ = writeln!(out, "  unchanged {bucket:<14} {count:>6}");
    }

    let queue = store::within(limit, jobs::stats(pool)).await?;
    let _ = writeln!(
        out,
        "\nFile jobs: pending {} (oldest waiting {}), running {}, done {}, failed {}, dead {}",
        queue.pending,
        duration(queue.oldest_pending_age_secs),
        queue.running,
        queue.done,
        queue.failed,
        queue.dead
    );

    let followups = store::within(limit, store::followups::stats(pool)).await?;
    let _ = writeln!(
        out,
        "\nFollow-ups (Telegram messages, training photos removed): pending {}, running {}, \
         done {}, failed {}, dead {}",
        followups.count("pending"),
        followups.count("running"),
        followups.count("done"),
        followups.count("failed"),
        followups.count("dead"),
    );
    for (kind, state, count) in &followups.counts {
        let _ = writeln!(out, "  {kind:<14} {state:<8} {count:>6}");
    }
    if config.followups.telegram.is_none() {
        let _ = writeln!(
            out,
            "  (TELEGRAM_TOKEN is not set in this environment: instances started with it notify)"
        );
    }

    let _ = writeln!(
        out,
        "\nReconciler: {}",
        lease_line(
            store::within(limit, leases::last_run(pool, RECONCILER_LEASE)).await?,
            now,
            "applied"
        )
    );
    if config.reconcile.is_none() {
        let _ = writeln!(
            out,
            "  (FAL_API_KEY is not set in this environment: instances started with it reconcile)"
        );
    }
    let retention = store::within(limit, leases::last_run(pool, RETENTION_LEASE)).await?;
    let _ = writeln!(out, "\nRetention: {}", retention_line(retention, now));
    for source in config.sources.iter().filter(|s| s.redeliver.is_some()) {
        let run = store::within(
            limit,
            leases::last_run(pool, &github::lease_name(&source.name)),
        )
        .await?;
        let _ = writeln!(
            out,
            "\nGitHub redelivery ({}): {}",
            source.name,
            lease_line(run, now, "redelivery requested")
        );
    }
    Ok(())
}

/// Each instance's spool as it last told Redis (every 10 s while it runs).
async fn spools_section(out: &mut String, cache: &Cache, now: DateTime<Utc>) {
    let _ = writeln!(
        out,
        "\nSpools (deliveries kept on an instance's disk while PostgreSQL was away):"
    );
    let reports = match cache.spool_reports().await {
        Ok(reports) => reports,
        Err(e) => {
            let _ = writeln!(out, "  unknown: {e}");
            return;
        }
    };
    if reports.is_empty() {
        let _ = writeln!(out, "  no instance spools (no source with a spool has run)");
    }
    for (instance, report) in reports {
        let age = duration((now - report.at).num_milliseconds() as f64 / 1000.0);
        let usage = report.usage;
        let _ = writeln!(
            out,
            "  {instance:<20} {:>6} waiting ({} bytes), {} held; reported {age} ago",
            usage.waiting, usage.bytes, usage.held
        );
    }
}

async fn webhooks_section(
    out: &mut String,
    pool: &Pool,
    limit: std::time::Duration,
) -> Result<(), StoreError> {
    let _ = writeln!(
        out,
        "\nWebhooks in the last hour (events; deliveries incl. redeliveries):"
    );
    let lines = store::within(limit, report::last_hour(pool)).await?;
    if lines.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for line in lines {
        let _ = writeln!(
            out,
            "  {:<12} {:<10} {:>7} events {:>7} deliveries",
            line.source, line.outcome, line.events, line.deliveries
        );
    }
    Ok(())
}

fn lease_line(run: Option<LeaseRun>, now: DateTime<Utc>, done: &str) -> String {
    let Some(run) = run else {
        return "never ran".into();
    };
    let holder = if run.expires_at > now {
        format!("held by {}", run.owner)
    } else {
        format!("free (last held by {})", run.owner)
    };
    match run.last_run_at {
        None => format!("{holder}; no run finished yet"),
        Some(at) => format!(
            "last run {} ({} ago): checked {}, {done} {}, errors {}; {holder}",
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            duration((now - at).num_milliseconds() as f64 / 1000.0),
            run.tally.checked,
            run.tally.done,
            run.tally.errors,
        ),
    }
}

fn retention_line(run: Option<LeaseRun>, now: DateTime<Utc>) -> String {
    match run {
        Some(LeaseRun {
            last_run_at: Some(at),
            tally,
            ..
        }) => format!(
            "last run {} ago: {} payloads dropped, {} events deleted{}",
            duration((now - at).num_milliseconds() as f64 / 1000.0),
            tally.checked,
            tally.done,
            if tally.errors > 0 {
                " (it failed: see the instances' logs)"
            } else {
                ""
            },
        ),
        _ => "no run finished yet (`webhook-api retention --dry-run` shows what is due)".into(),
    }
}

/// `2h 05m`, `4m 09s`, `12s`.
fn duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_an_operator_would_say_them() {
        assert_eq!(super::duration(12.4), "12s");
        assert_eq!(super::duration(249.0), "4m 09s");
        assert_eq!(super::duration(7500.0), "2h 05m");
    }
}
