//! `jobs list|retry|retry-dead`: the file copies (and the follow-ups) an operator re-queues.

use super::args::JobsCommand;
use crate::store::{self, jobs};

pub async fn command(pool: &deadpool_postgres::Pool, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { state, limit } => {
            let jobs = jobs::list(pool, state.map(Into::into), limit).await?;
            println!(
                "{:>8}  {:<8}  {:>8}  {:<20}  {:<36}  last error",
                "id", "state", "attempts", "updated", "avatar"
            );
            for job in jobs {
                println!(
                    "{:>8}  {:<8}  {:>8}  {:<20}  {:<36}  {}",
                    job.id,
                    job.state,
                    job.attempts,
                    job.updated_at.format("%Y-%m-%d %H:%M:%S"),
                    job.avatar_id,
                    job.last_error.unwrap_or_default()
                );
            }
        }
        JobsCommand::Retry { id } => match jobs::requeue(pool, Some(id)).await? {
            0 => anyhow::bail!("job {id} not found, or running or done: nothing re-queued"),
            _ => println!("job {id} re-queued"),
        },
        JobsCommand::RetryDead => {
            let count = jobs::requeue(pool, None).await?;
            println!("{count} dead job(s) re-queued");
            let followups = store::followups::requeue_dead(pool).await?;
            println!("{followups} dead follow-up(s) (Telegram messages, photo removals) re-queued");
        }
    }
    Ok(())
}
