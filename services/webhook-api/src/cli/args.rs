//! The command line, as clap reads it; `main` dispatches each command to its body in `cli`.

use clap::{Parser, Subcommand, ValueEnum};

/// Receives FAL AI training callbacks and applies them to avatars.
/// Configuration comes from the environment (see prod.env.example).
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply migrations and serve HTTP on PORT (the default).
    Serve,
    /// Apply the embedded migrations to DATABASE_URL and exit (needs only DATABASE_URL).
    Migrate,
    /// Read the configuration as `serve` would and exit: 0 and a summary when it is complete,
    /// 2 and the one problem otherwise. Nothing is connected to.
    CheckConfig,
    /// Send a callback in FAL's format, signed with FAL_WEBHOOK_SECRET (the newest of the
    /// list), and print the answer: 0 on a 2xx answer. A made-up request id is stored as
    /// `unmatched`; the id of a real avatar in training fails its training for real.
    SendTest {
        /// Where to send it: the public webhook URL (https://<host>:8443/...) tests TLS and nginx.
        #[arg(long, default_value_t = default_send_test_url())]
        url: String,
        #[arg(long)]
        request_id: Option<String>,
        /// PEM file of the CA that signed the server's certificate (a private CA).
        #[arg(long)]
        ca: Option<std::path::PathBuf>,
    },
    /// GET http://127.0.0.1:$PORT/health/ready; exit 0 when ready, 1 otherwise (container health checks).
    Healthcheck,
    /// Print the cluster's state from PostgreSQL and Redis: webhooks in the last hour, avatars
    /// in training, file jobs, the reconciler's last run.
    Status,
    /// See and re-queue the jobs that copy trained files into S3.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Erase what the service keeps about an avatar, or every avatar of a user: copied files in
    /// S3, their rows and jobs, event payloads and headers, the status cache (the bot's rows
    /// are not touched). Prints what it removed; running it again removes nothing more.
    Forget {
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        avatar: Option<uuid::Uuid>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Apply the RETENTION_* rules now (the instances also do, every RETENTION_INTERVAL_SECS),
    /// and print what went; with --dry-run, only print what would (needs only DATABASE_URL).
    Retention {
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// List recent jobs, newest first.
    List {
        /// Only jobs in this state.
        #[arg(long, value_enum)]
        state: Option<JobState>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Re-queue one job (pending, failed or dead) with a fresh attempt budget.
    Retry { id: i64 },
    /// Re-queue every dead job, and every dead follow-up (a Telegram message, a photo removal).
    RetryDead,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
    Dead,
}

impl From<JobState> for crate::store::jobs::JobState {
    fn from(state: JobState) -> Self {
        use crate::store::jobs::JobState as Stored;
        match state {
            JobState::Pending => Stored::Pending,
            JobState::Running => Stored::Running,
            JobState::Done => Stored::Done,
            JobState::Failed => Stored::Failed,
            JobState::Dead => Stored::Dead,
        }
    }
}

/// This instance's port as `serve` reads it; a malformed `PORT` leaves 8000, and `send-test`
/// then says it could not connect there.
fn default_send_test_url() -> String {
    let port = crate::config::Config::port_from_env().unwrap_or(8000);
    format!("http://127.0.0.1:{port}/api/v1/avatar/status_update")
}
