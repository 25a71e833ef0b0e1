//! Wiring only: command line → config → application → shutdown.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use webhook_api::config::{Config, DatabaseCommandConfig, RetentionConfig};
use webhook_api::retention::Retention;
use webhook_api::startup::{self, Application};
use webhook_api::store::jobs;
use webhook_api::{forget, send_test, store, telemetry};

/// Receives FAL AI training callbacks and applies them to avatars.
/// Configuration comes from the environment (see prod.env.example).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
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
enum JobsCommand {
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
enum JobState {
    Pending,
    Running,
    Done,
    Failed,
    Dead,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        }
    }
}

fn default_send_test_url() -> String {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    format!("http://127.0.0.1:{port}/api/v1/avatar/status_update")
}

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Healthcheck => runtime.block_on(healthcheck()),
        Command::SendTest {
            url,
            request_id,
            ca,
        } => runtime.block_on(send_test_command(url, request_id, ca)),
        Command::CheckConfig => match configured(Config::from_env()) {
            Some(config) => {
                println!("{}", config_summary(&config));
                ExitCode::SUCCESS
            }
            None => ExitCode::from(2),
        },
        command @ (Command::Migrate | Command::Jobs(_) | Command::Retention { .. }) => {
            let Some(config) = configured(DatabaseCommandConfig::from_env()) else {
                return ExitCode::from(2);
            };
            telemetry::init(&config.log);
            finish(runtime.block_on(async {
                let pool = store::connect_pool(&config.database);
                match command {
                    Command::Jobs(jobs) => jobs_command(&pool, jobs).await,
                    Command::Retention { dry_run } => {
                        retention_command(&pool, &config.retention, dry_run).await
                    }
                    _ => startup::migrate(&pool, config.database.startup_wait, Default::default())
                        .await
                        .map(drop),
                }
            }))
        }
        command => {
            let Some(config) = configured(Config::from_env()) else {
                return ExitCode::from(2);
            };
            telemetry::init(&config.log);
            finish(runtime.block_on(async {
                match command {
                    Command::Forget { avatar, user } => forget_command(&config, avatar, user).await,
                    Command::Status => {
                        let pool = store::connect_pool(&config.database);
                        let (report, database) =
                            webhook_api::cluster_report::report(&config, &pool).await;
                        print!("{report}");
                        database.map_err(Into::into)
                    }
                    _ => serve(config).await,
                }
            }))
        }
    }
}

async fn send_test_command(
    url: String,
    request_id: Option<String>,
    ca_file: Option<std::path::PathBuf>,
) -> ExitCode {
    let test = send_test::SendTest {
        url,
        request_id: request_id.unwrap_or_else(|| format!("send-test-{}", uuid::Uuid::new_v4())),
        ca_file,
    };
    let Some(secrets) = configured(Config::secret_from_env("FAL_WEBHOOK_SECRET")) else {
        return ExitCode::from(2);
    };
    let secrets = secrets.unwrap_or_default();
    println!("POST {} (request_id {})", test.url, test.request_id);
    match send_test::run(&test, &secrets).await {
        Ok((status, body)) => {
            println!("{status} {body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("webhook-api send-test: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration, or its one problem on stderr (the caller exits 2).
fn configured<T>(loaded: Result<T, webhook_api::config::ConfigError>) -> Option<T> {
    loaded.inspect_err(|e| eprintln!("webhook-api: {e}")).ok()
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "webhook-api stopped");
            ExitCode::FAILURE
        }
    }
}

/// One line an operator can check a new `prod.env` against; no secret in it.
fn config_summary(config: &Config) -> String {
    let names = |items: Vec<&str>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(",")
        }
    };
    format!(
        "configuration ok: environment {:?}, database {}@{}, sources {}, operator tokens {}, deploys {}, reconciler {}, telegram notifications {}, training photos {}",
        config.environment,
        config.database.pg.get_dbname().unwrap_or("?"),
        match config.database.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "?".into(),
        },
        names(config.sources.iter().map(|s| s.name.as_str()).collect()),
        names(config.operator_tokens.iter().map(|t| t.name.as_str()).collect()),
        if config.deploy.is_some() { "on" } else { "off" },
        if config.reconcile.is_some() { "on" } else { "off" },
        match &config.followups.telegram {
            None => "off (no TELEGRAM_TOKEN)",
            Some(t) if t.notify_on_failure => "on (ready and failed)",
            Some(_) => "on (ready only)",
        },
        match &config.followups.photos {
            p if !p.delete_after_training => "kept".to_string(),
            p => format!(
                "deleted after training from bucket {}{}",
                p.bucket,
                if p.keep_preview { ", preview kept" } else { "" }
            ),
        },
    )
}

/// File copies allocate multi-MiB part buffers. glibc raises its mmap threshold after the
/// first such buffer is freed, after which freed parts stay in the heap and count as RSS;
/// a fixed threshold keeps them mmapped, so a copy's memory is returned as soon as it is done.
fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_to_shutdown(shutdown.clone()));
    app.run(shutdown).await;
    Ok(())
}

async fn forget_command(
    config: &Config,
    avatar: Option<uuid::Uuid>,
    user: Option<String>,
) -> anyhow::Result<()> {
    let who = match (avatar, user) {
        (Some(avatar), _) => forget::Who::Avatar(avatar),
        (None, user) => forget::Who::User(user.unwrap_or_default()),
    };
    let pool = store::connect_pool(&config.database);
    let gone = forget::forget(config, &pool, &who).await?;
    println!(
        "forgot {} avatar(s): {} event payloads, {} file jobs, {} file rows, {} S3 objects, \
         {} cached statuses",
        gone.avatars,
        gone.event_payloads,
        gone.file_jobs,
        gone.file_rows,
        gone.objects,
        gone.cache_keys
    );
    Ok(())
}

async fn retention_command(
    pool: &deadpool_postgres::Pool,
    config: &RetentionConfig,
    dry_run: bool,
) -> anyhow::Result<()> {
    let avatar_sql = Arc::new(store::schema::load(pool).await?);
    if dry_run {
        let ages = store::retention::Ages {
            payload: config.payload,
            event: config.event,
            deploy_output: config.deploy_output,
            file_job: config.file_job,
        };
        let due = store::retention::pending(pool, &avatar_sql, ages).await?;
        println!(
            "would drop {} payloads, delete {} events (keep {} old ones something points at), \
             delete {} finished file jobs, drop {} deploy outputs",
            due.payloads, due.events, due.kept, due.file_jobs, due.deploy_outputs
        );
        return Ok(());
    }
    // Safe beside a running instance's own run: every step is idempotent.
    let retention = Retention {
        pool: pool.clone(),
        avatar_sql,
        config: config.clone(),
        owner: format!("command/{}", std::process::id()),
        deleted: webhook_api::metrics::Metrics::new().retention_deleted,
    };
    let swept = retention.sweep(&CancellationToken::new()).await?;
    println!(
        "dropped {} payloads, deleted {} events, deleted {} finished file jobs, \
         dropped {} deploy outputs",
        swept.payloads, swept.events, swept.file_jobs, swept.deploy_outputs
    );
    Ok(())
}

async fn jobs_command(pool: &deadpool_postgres::Pool, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { state, limit } => {
            let jobs = jobs::list(pool, state.map(JobState::as_str), limit).await?;
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

async fn signal_to_shutdown(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    shutdown.cancel();
}

async fn healthcheck() -> ExitCode {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("http client");
    match client.get(&url).send().await {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!("{url}: {}", response.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}
