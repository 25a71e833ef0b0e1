//! `webhook-api status`: the cluster's state for an operator at a terminal, read from
//! PostgreSQL and Redis (not from an instance, so it works when both instances are down).

use std::fmt::Write;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;

use crate::cache::Cache;
use crate::config::Config;
use crate::store::schema::{self, AvatarSql};
use crate::store::{self, avatars, jobs, StoreError};

/// The report, as text. Fails only when PostgreSQL cannot be read; Redis trouble is reported.
pub async fn report(config: &Config, pool: &Pool) -> Result<String, StoreError> {
    let limit = config.database.statement_timeout;
    let stale_after = config.stale_training_after();
    let mut out = String::new();
    let now = Utc::now();
    let _ = writeln!(
        out,
        "webhook cluster status at {}",
        now.format("%Y-%m-%d %H:%M:%S UTC")
    );

    let _ = writeln!(
        out,
        "\nWebhooks in the last hour (events; deliveries incl. redeliveries):"
    );
    let lines = store::within(limit, last_hour(pool)).await?;
    if lines.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for (source, outcome, events, deliveries) in lines {
        let _ = writeln!(
            out,
            "  {source:<12} {outcome:<10} {events:>7} events {deliveries:>7} deliveries"
        );
    }

    let avatar_sql = store::within(limit, schema::load(pool)).await?;
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
    for (bucket, count) in store::within(limit, training_ages(pool, &avatar_sql)).await? {
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

    let _ = writeln!(
        out,
        "\nReconciler: {}",
        store::within(limit, reconciler(pool, now)).await?
    );
    if config.reconcile.is_none() {
        let _ = writeln!(
            out,
            "  (FAL_API_KEY is not set in this environment: instances started with it reconcile)"
        );
    }

    let cache_line = match Cache::new(&config.redis) {
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
    Ok(out)
}

async fn last_hour(pool: &Pool) -> Result<Vec<(String, String, i64, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT source, outcome, count(*), sum(deliveries)::bigint FROM webhook_events \
             WHERE received_at > now() - interval '1 hour' GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
        .collect()
}

async fn training_ages(
    pool: &Pool,
    avatar_sql: &AvatarSql,
) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE updated_at > now() - interval '30 minutes'), \
                   count(*) FILTER (WHERE updated_at <= now() - interval '30 minutes' \
                                      AND updated_at > now() - interval '2 hours'), \
                   count(*) FILTER (WHERE updated_at <= now() - interval '2 hours') \
                 FROM avatars WHERE {} AND fal_request_id IS NOT NULL",
                avatar_sql.training
            ),
            &[],
        )
        .await?;
    Ok(vec![
        ("under 30m", row.try_get(0)?),
        ("30m to 2h", row.try_get(1)?),
        ("over 2h", row.try_get(2)?),
    ])
}

async fn reconciler(pool: &Pool, now: DateTime<Utc>) -> Result<String, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT owner, expires_at, last_run_at, last_run_checked, last_run_applied, \
               last_run_errors FROM reconciler_lease WHERE name = 'fal'",
            &[],
        )
        .await?;
    let Some(row) = row else {
        return Ok("never ran".into());
    };
    let owner: String = row.try_get(0)?;
    let expires: DateTime<Utc> = row.try_get(1)?;
    let last_run: Option<DateTime<Utc>> = row.try_get(2)?;
    let holder = if expires > now {
        format!("held by {owner}")
    } else {
        format!("free (last held by {owner})")
    };
    Ok(match last_run {
        None => format!("{holder}; no run finished yet"),
        Some(at) => format!(
            "last run {} ({} ago): checked {}, applied {}, errors {}; {holder}",
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            duration((now - at).num_milliseconds() as f64 / 1000.0),
            row.try_get::<_, i32>(3)?,
            row.try_get::<_, i32>(4)?,
            row.try_get::<_, i32>(5)?,
        ),
    })
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
