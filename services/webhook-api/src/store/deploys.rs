//! The `deploys` queue: queued with the push that asked for it (`store::deliveries`), run one
//! at a time across instances by `tasks::deploy`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::GenericClient;

use super::StoreError;

/// Held for as long as one instance runs deploys; "deploy" in ASCII.
const DEPLOY_LOCK_KEY: i64 = 0x6465_706c_6f79;

#[derive(Debug)]
pub struct ClaimedDeploy {
    pub id: i64,
    pub repository: String,
    pub branch: String,
    pub commit_sha: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Succeeded,
    Failed,
    TimedOut,
}

impl Finished {
    pub fn as_str(self) -> &'static str {
        match self {
            Finished::Succeeded => "succeeded",
            Finished::Failed => "failed",
            Finished::TimedOut => "timed_out",
        }
    }
}

/// The deploy lock, on a connection of the caller's own (the lock goes with it if the
/// instance dies): true when this instance holds it now.
pub async fn try_lock(client: &impl GenericClient) -> Result<bool, StoreError> {
    let row = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&DEPLOY_LOCK_KEY])
        .await?;
    Ok(row.try_get(0)?)
}

pub async fn unlock(client: &impl GenericClient) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&DEPLOY_LOCK_KEY])
        .await?;
    Ok(())
}

/// Anything queued, or running (perhaps by an instance that stopped)?
pub async fn has_work(pool: &Pool) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM deploys WHERE state IN ('queued', 'running'))",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Called with the lock held: a deploy still `running` belongs to an instance that stopped
/// in the middle of it.
pub async fn fail_orphans(client: &impl GenericClient) -> Result<u64, StoreError> {
    Ok(client
        .execute(
            "UPDATE deploys SET state = 'failed', finished_at = now(), \
               reason = 'the instance running it stopped before it finished' \
             WHERE state = 'running'",
            &[],
        )
        .await?)
}

/// `x` is newer than `p` on `p`'s branch (SQL over two `deploys` rows), in the sender's order
/// rather than the order rows were committed in (a spooled push is stored late): between two
/// pushes, one that built on the other's commit is the newer whatever the clocks say;
/// otherwise the one that reached us later is. An operator's redeploy counts from when it was
/// asked for, so it may roll back on purpose.
const NEWER: &str = "x.repository = p.repository AND x.branch = p.branch AND x.id <> p.id \
     AND ((x.requested_by IS NULL AND p.requested_by IS NULL AND x.before_sha = p.commit_sha) \
          OR (NOT (x.requested_by IS NULL AND p.requested_by IS NULL \
                   AND coalesce(p.before_sha = x.commit_sha, false)) \
              AND (x.pushed_at, x.id) > (p.pushed_at, p.id)))";

/// Takes the newest queued deploy. A queued one that a newer deploy of its branch supersedes
/// (queued, run, or running: anything but skipped) is skipped instead, naming that deploy: it
/// would roll out what the newer one replaces, or roll production back.
pub async fn claim_newest(
    client: &impl GenericClient,
    instance_id: &str,
) -> Result<Option<ClaimedDeploy>, StoreError> {
    client
        .execute(
            &format!(
                "UPDATE deploys p SET state = 'skipped', finished_at = now(), \
                   reason = 'superseded by the newer deploy ' || ( \
                     SELECT x.id FROM deploys x WHERE x.state <> 'skipped' AND {NEWER} \
                     ORDER BY x.pushed_at DESC, x.id DESC LIMIT 1) \
                 WHERE p.state = 'queued' AND EXISTS ( \
                   SELECT 1 FROM deploys x WHERE x.state <> 'skipped' AND {NEWER})"
            ),
            &[],
        )
        .await?;
    // The claim looks again: a push committed between the two statements is never run over
    // a newer one (it is skipped on the next round).
    let row = client
        .query_opt(
            &format!(
                "UPDATE deploys SET state = 'running', started_at = now(), instance_id = $1 \
                 WHERE id = (SELECT p.id FROM deploys p WHERE p.state = 'queued' \
                   AND NOT EXISTS (SELECT 1 FROM deploys x WHERE x.state <> 'skipped' AND {NEWER}) \
                   ORDER BY p.pushed_at DESC, p.id DESC LIMIT 1) AND state = 'queued' \
                 RETURNING id, repository, branch, commit_sha"
            ),
            &[&instance_id],
        )
        .await?;
    row.map(|r| {
        Ok(ClaimedDeploy {
            id: r.try_get(0)?,
            repository: r.try_get(1)?,
            branch: r.try_get(2)?,
            commit_sha: r.try_get(3)?,
        })
    })
    .transpose()
}

/// Records the run; a deploy that did not succeed also marks its push event `failed`, so it
/// shows among the failures. One statement: readers see both changes or neither.
pub async fn finish(
    client: &impl GenericClient,
    deploy: &ClaimedDeploy,
    state: Finished,
    exit_code: Option<i32>,
    output: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    client
        .execute(
            "WITH finished AS ( \
               UPDATE deploys SET state = $2, exit_code = $3, output = $4, reason = $5, \
                 finished_at = now() WHERE id = $1 RETURNING event_id) \
             UPDATE webhook_events SET outcome = 'failed', \
               outcome_reason = 'deploy ' || $1::bigint || ' ' || $2 \
             WHERE id = (SELECT event_id FROM finished) AND $2 <> 'succeeded'",
            &[&deploy.id, &state.as_str(), &exit_code, &output, &reason],
        )
        .await?;
    Ok(())
}

/// A deploy run as operators see it.
#[derive(Debug)]
pub struct DeployRow {
    pub id: i64,
    pub event_id: i64,
    pub source: String,
    pub repository: String,
    pub branch: String,
    pub commit_sha: Option<String>,
    pub state: String,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub instance_id: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The last 64 KiB of its output; read only for one deploy.
    pub output: Option<String>,
    /// The operator token that asked for it; `None` when a push queued it.
    pub requested_by: Option<String>,
}

impl DeployRow {
    /// Did it end badly (the cluster is then `degraded`)?
    pub fn failed(&self) -> bool {
        self.state == Finished::Failed.as_str() || self.state == Finished::TimedOut.as_str()
    }

    fn from_row(row: &tokio_postgres::Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.try_get(0)?,
            event_id: row.try_get(1)?,
            source: row.try_get(2)?,
            repository: row.try_get(3)?,
            branch: row.try_get(4)?,
            commit_sha: row.try_get(5)?,
            state: row.try_get(6)?,
            reason: row.try_get(7)?,
            exit_code: row.try_get(8)?,
            instance_id: row.try_get(9)?,
            queued_at: row.try_get(10)?,
            started_at: row.try_get(11)?,
            finished_at: row.try_get(12)?,
            output: row.try_get(13)?,
            requested_by: row.try_get(14)?,
        })
    }
}

/// `$1` says whether to read the output.
const SELECT_DEPLOYS: &str = "SELECT id, event_id, source, repository, branch, commit_sha, state, \
     reason, exit_code, instance_id, queued_at, started_at, finished_at, \
     CASE WHEN $1 THEN output END, requested_by FROM deploys";

/// Newest first, without the output.
pub async fn list(pool: &Pool, limit: i64) -> Result<Vec<DeployRow>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!("{SELECT_DEPLOYS} ORDER BY id DESC LIMIT $2"),
            &[&false, &limit],
        )
        .await?;
    rows.iter().map(DeployRow::from_row).collect()
}

pub async fn get(pool: &Pool, id: i64) -> Result<Option<DeployRow>, StoreError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(&format!("{SELECT_DEPLOYS} WHERE id = $2"), &[&true, &id])
        .await?;
    row.as_ref().map(DeployRow::from_row).transpose()
}

pub async fn latest(pool: &Pool) -> Result<Option<DeployRow>, StoreError> {
    Ok(list(pool, 1).await?.into_iter().next())
}
