//! What retention (`tasks::retention`) does in PostgreSQL, a small batch at a time along
//! `webhook_events`' primary key (each rule's progress in `retention_progress`): drop old payloads (keeping their size and SHA-256), delete old
//! rows except those something still points at, drop old deploy outputs.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::schema::AvatarSql;
use super::StoreError;

/// A rule over `webhook_events`, with its row in `retention_progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Payload and headers dropped, metadata kept.
    Payload,
    /// The row deleted.
    Event,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Payload => "payload",
            Rule::Event => "event",
        }
    }
}

async fn through(client: &deadpool_postgres::Client, rule: Rule) -> Result<i64, StoreError> {
    let row = client
        .query_opt(
            "SELECT through_id FROM retention_progress WHERE rule = $1",
            &[&rule.as_str()],
        )
        .await?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// One batch of `rule`: the rows past the rule's progress, in id order, up to the first one
/// not yet `older_than` old (ids follow arrival, nearly: the progress never passes a row that
/// is not due yet). Returns how many rows it changed, or `None` when none is due.
pub async fn step(
    pool: &Pool,
    avatar_sql: &AvatarSql,
    rule: Rule,
    older_than: Duration,
    batch: i64,
) -> Result<Option<u64>, StoreError> {
    let mut client = pool.get().await?;
    let from = through(&client, rule).await?;
    let tx = client.transaction().await?;
    let ids: Vec<i64> = tx
        .query(
            "SELECT id, received_at < now() - make_interval(secs => $2) FROM webhook_events \
             WHERE id > $1 ORDER BY id LIMIT $3",
            &[&from, &older_than.as_secs_f64(), &batch],
        )
        .await?
        .iter()
        .map_while(|r| r.get::<_, bool>(1).then(|| r.get(0)))
        .collect();
    let Some(&last) = ids.last() else {
        return Ok(None);
    };
    let secs = older_than.as_secs_f64();
    let changed = match rule {
        Rule::Payload => tx.execute(DROP_PAYLOADS, &[&ids, &secs]).await?,
        Rule::Event => {
            tx.execute(&delete_events(avatar_sql), &[&ids, &secs])
                .await?
        }
    };
    tx.execute(
        "INSERT INTO retention_progress (rule, through_id) VALUES ($1, $2) \
         ON CONFLICT (rule) DO UPDATE SET through_id = excluded.through_id",
        &[&rule.as_str(), &last],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(changed))
}

const DROP_PAYLOADS: &str = "UPDATE webhook_events SET \
       payload_sha256 = encode(sha256(convert_to(payload::text, 'UTF8')), 'hex'), \
       payload_bytes = octet_length(payload::text), \
       payload = NULL, headers = NULL, payload_dropped_at = now() \
     WHERE id = ANY($1) AND received_at < now() - make_interval(secs => $2) \
       AND (payload IS NOT NULL OR headers IS NOT NULL)";

/// Rows of `e` old enough (`age` is the placeholder of the age in seconds) that nothing points
/// at: kept are rows a file job or a deploy points at, and those of an avatar still in training
/// (its callbacks may still come).
fn deletable(avatar_sql: &AvatarSql, age: &str) -> String {
    format!(
        "e.received_at < now() - make_interval(secs => {age}) \
         AND NOT EXISTS (SELECT 1 FROM file_jobs j WHERE j.event_id = e.id) \
         AND NOT EXISTS (SELECT 1 FROM deploys d WHERE d.event_id = e.id) \
         AND NOT EXISTS (SELECT 1 FROM avatars WHERE avatars.id = e.avatar_id AND {})",
        avatar_sql.training
    )
}

fn delete_events(avatar_sql: &AvatarSql) -> String {
    format!(
        "DELETE FROM webhook_events e WHERE e.id = ANY($1) AND {}",
        deletable(avatar_sql, "$2")
    )
}

/// Finished deploys' outputs older than `older_than`, a batch at a time.
pub async fn drop_deploy_outputs(
    pool: &Pool,
    older_than: Duration,
    batch: i64,
) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "UPDATE deploys SET output = NULL WHERE id IN ( \
               SELECT id FROM deploys WHERE output IS NOT NULL AND finished_at IS NOT NULL \
                 AND finished_at < now() - make_interval(secs => $1) ORDER BY id LIMIT $2)",
            &[&older_than.as_secs_f64(), &batch],
        )
        .await?)
}

/// File jobs done before `older_than`, a batch at a time; the `avatar_files` rows they wrote
/// stay (unlinked from the job). Returns how many went.
pub async fn drop_finished_jobs(
    pool: &Pool,
    older_than: Duration,
    batch: i64,
) -> Result<u64, StoreError> {
    let client = pool.get().await?;
    // One statement: the foreign key is checked at its end, after the files were unlinked.
    Ok(client
        .execute(
            "WITH gone AS ( \
               SELECT id FROM file_jobs WHERE state = 'done' \
                 AND finished_at < now() - make_interval(secs => $1) \
               ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED), \
             unlinked AS ( \
               UPDATE avatar_files SET job_id = NULL WHERE job_id IN (SELECT id FROM gone)) \
             DELETE FROM file_jobs WHERE id IN (SELECT id FROM gone)",
            &[&older_than.as_secs_f64(), &batch],
        )
        .await?)
}

/// What a run would change now: payloads to drop, rows to delete, rows kept although old.
#[derive(Debug, Default)]
pub struct Pending {
    pub payloads: i64,
    pub events: i64,
    pub kept: i64,
    pub deploy_outputs: i64,
    pub file_jobs: i64,
}

/// How old, per rule, what a run removes is (`None`: the rule is off).
#[derive(Debug, Clone, Copy)]
pub struct Ages {
    pub payload: Option<Duration>,
    pub event: Option<Duration>,
    pub deploy_output: Option<Duration>,
    pub file_job: Option<Duration>,
}

pub async fn pending(
    pool: &Pool,
    avatar_sql: &AvatarSql,
    ages: Ages,
) -> Result<Pending, StoreError> {
    let client = pool.get().await?;
    // A rule that is off counts nothing (NULL compares as false).
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let deletable = format!(
        "SELECT count(*) FROM webhook_events e WHERE {}",
        deletable(avatar_sql, "$1")
    );
    let events: i64 = match ages.event {
        Some(after) => client
            .query_one(&deletable, &[&after.as_secs_f64()])
            .await?
            .get(0),
        None => 0,
    };
    let row = client
        .query_one(
            "SELECT \
               count(*) FILTER (WHERE received_at < now() - make_interval(secs => $1) \
                 AND (payload IS NOT NULL OR headers IS NOT NULL)), \
               count(*) FILTER (WHERE received_at < now() - make_interval(secs => $2)), \
               (SELECT count(*) FROM deploys WHERE output IS NOT NULL AND finished_at \
                  < now() - make_interval(secs => $3)), \
               (SELECT count(*) FROM file_jobs WHERE state = 'done' AND finished_at \
                  < now() - make_interval(secs => $4)) \
             FROM webhook_events",
            &[
                &secs(ages.payload),
                &secs(ages.event),
                &secs(ages.deploy_output),
                &secs(ages.file_job),
            ],
        )
        .await?;
    let old: i64 = row.get(1);
    Ok(Pending {
        payloads: row.get(0),
        events,
        kept: old - events,
        deploy_outputs: row.get(2),
        file_jobs: row.get(3),
    })
}
