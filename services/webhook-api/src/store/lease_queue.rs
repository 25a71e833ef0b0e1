//! One queue of background work in PostgreSQL, for every kind of job (file copies, the owners'
//! follow-ups, the next): a row is claimed with `FOR UPDATE SKIP LOCKED` under a lease (an
//! attempt spent), renewed while it runs, settled (done, again after a backoff, failed for
//! good, dead) or handed back at shutdown; a lease that ran out (its worker died) is claimed
//! again. Every queue's table has the same columns for it: `id`, `state`, `attempts`,
//! `run_after`, `lease_owner`, `lease_expires_at`, `last_error`, `updated_at`, `finished_at`.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::StoreError;

/// Where a job stands (`state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Running,
    Done,
    /// Failed for good (trying again cannot succeed): an operator may retry it.
    Failed,
    /// Out of attempts: an operator may retry it.
    Dead,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Running,
        State::Done,
        State::Failed,
        State::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// Whether an operator's retry puts it back in the queue.
    pub fn retryable(self) -> bool {
        matches!(self, State::Failed | State::Dead)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a claimed job ends this time.
#[derive(Debug, Clone, Copy)]
pub struct Settlement<'a> {
    /// `Pending` (again after `after`), `Done`, `Failed` or `Dead`.
    pub state: State,
    pub after: Duration,
    pub error: Option<&'a str>,
    /// The attempt is given back: a pause the other side asked for, not a failure.
    pub refund: bool,
}

/// One table's queue: its statements, written once.
pub struct LeaseQueue {
    claim: String,
    renew: String,
    settle: String,
    release: String,
    /// Whether a settle also sets the queue's extra column (`$7`).
    settles_also: bool,
}

impl LeaseQueue {
    /// `table`'s queue. A claim takes the due row that `due` (a condition on the candidate row
    /// `c`, with parameters from `$3`; `TRUE` for any) admits, and answers `returning` (on the
    /// claimed row `q`). `settled_also` sets one more column on settling, from `$7`.
    pub fn new(table: &str, due: &str, returning: &str, settled_also: Option<&str>) -> Self {
        let extra = settled_also.map_or(String::new(), |column| {
            format!("{column} = COALESCE($7, {column}), ")
        });
        Self {
            claim: format!(
                "UPDATE {table} q SET state = 'running', lease_owner = $1, \
                   lease_expires_at = now() + make_interval(secs => $2), \
                   attempts = q.attempts + 1, updated_at = now() \
                 WHERE q.id = ( \
                   SELECT c.id FROM {table} c \
                   WHERE ((c.state = 'pending' AND c.run_after <= now()) \
                       OR (c.state = 'running' AND c.lease_expires_at < now())) \
                     AND ({due}) \
                   ORDER BY c.run_after LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 RETURNING {returning}"
            ),
            renew: format!(
                "UPDATE {table} SET lease_expires_at = now() + make_interval(secs => $3) \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'"
            ),
            settle: format!(
                "UPDATE {table} SET state = $3, run_after = now() + make_interval(secs => $4), \
                   last_error = $5, attempts = attempts - $6, {extra}\
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = now(), \
                   finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'"
            ),
            release: format!(
                "UPDATE {table} SET state = 'pending', attempts = greatest(attempts - 1, 0), \
                   run_after = now(), lease_owner = NULL, lease_expires_at = NULL, \
                   updated_at = now() \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'running'"
            ),
            settles_also: settled_also.is_some(),
        }
    }

    /// The next due job (or one whose lease ran out) for `owner`, as `returning` reads it.
    pub async fn claim(
        &self,
        client: &impl GenericClient,
        owner: &str,
        lease: Duration,
        due: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let statement = client.prepare_cached(&self.claim).await?;
        let lease = lease.as_secs_f64();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&owner, &lease];
        params.extend_from_slice(due);
        Ok(client.query_opt(&statement, &params).await?)
    }

    /// Extends the lease; `false` when another worker has taken the job over.
    pub async fn renew(
        &self,
        client: &impl GenericClient,
        id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let renewed = client
            .execute(&self.renew, &[&id, &owner, &lease.as_secs_f64()])
            .await?;
        Ok(renewed == 1)
    }

    /// Records how the job ended; `false` when the lease was lost meanwhile (another worker
    /// settles it). `also` is the value of the queue's extra column, if it has one.
    pub async fn settle(
        &self,
        client: &impl GenericClient,
        id: i64,
        owner: &str,
        settlement: &Settlement<'_>,
        also: Option<&str>,
    ) -> Result<bool, StoreError> {
        let statement = client.prepare_cached(&self.settle).await?;
        let state = settlement.state.as_str();
        let after = settlement.after.as_secs_f64();
        let refund = i32::from(settlement.refund);
        let mut params: Vec<&(dyn ToSql + Sync)> =
            vec![&id, &owner, &state, &after, &settlement.error, &refund];
        if self.settles_also {
            params.push(&also);
        }
        Ok(client.execute(&statement, &params).await? == 1)
    }

    /// Hands a job back untouched (shutdown): another worker may take it at once, and the
    /// attempt it had spent is given back.
    pub async fn release(
        &self,
        client: &impl GenericClient,
        id: i64,
        owner: &str,
    ) -> Result<(), StoreError> {
        client.execute(&self.release, &[&id, &owner]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_read_back_as_written_and_only_failed_or_dead_are_retried() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::parse("lost"), None);
        let retried: Vec<State> = State::ALL.into_iter().filter(|s| s.retryable()).collect();
        assert_eq!(retried, [State::Failed, State::Dead]);
    }

    #[test]
    fn the_extra_column_is_set_only_for_a_queue_that_has_one() {
        let with = LeaseQueue::new("t", "TRUE", "q.id", Some("result"));
        assert!(with.settle.contains("result = COALESCE($7, result)"));
        let without = LeaseQueue::new("t", "TRUE", "q.id", None);
        assert!(!without.settle.contains("$7"));
        assert!(without.claim.contains("FOR UPDATE SKIP LOCKED"));
    }
}
