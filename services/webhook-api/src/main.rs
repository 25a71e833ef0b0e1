//! Wiring only: command line → config → application → shutdown.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use webhook_api::config::Config;
use webhook_api::startup::{self, Application};
use webhook_api::store::jobs;
use webhook_api::{store, telemetry};

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
    /// Apply the embedded migrations to DATABASE_URL and exit.
    Migrate,
    /// GET http://127.0.0.1:$PORT/health/ready; exit 0 when ready, 1 otherwise (container health checks).
    Healthcheck,
    /// Print the cluster's state from PostgreSQL and Redis: webhooks in the last hour, avatars
    /// in training, file jobs, the reconciler's last run.
    Status,
    /// See and re-queue the jobs that copy trained files into S3.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List recent jobs, newest first.
    List {
        /// Only jobs in this state: pending, running, done, failed, dead.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Re-queue one job (pending, failed or dead) with a fresh attempt budget.
    Retry { id: i64 },
    /// Re-queue every dead job.
    RetryDead,
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
        command => {
            let config = match Config::from_env() {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("webhook-api: {e}");
                    return ExitCode::from(2);
                }
            };
            telemetry::init(&config.log);
            let result = runtime.block_on(async {
                match command {
                    Command::Migrate => {
                        let pool = store::connect_pool(&config.database);
                        startup::migrate(&pool, config.database.startup_wait)
                            .await
                            .map(drop)
                    }
                    Command::Jobs(jobs) => jobs_command(&config, jobs).await,
                    Command::Status => {
                        let pool = store::connect_pool(&config.database);
                        let report = webhook_api::cluster_report::report(&config, &pool).await?;
                        print!("{report}");
                        Ok(())
                    }
                    _ => serve(config).await,
                }
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "webhook-api stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
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

async fn jobs_command(config: &Config, command: JobsCommand) -> anyhow::Result<()> {
    let pool = store::connect_pool(&config.database);
    match command {
        JobsCommand::List { state, limit } => {
            let jobs = jobs::list(&pool, state.as_deref(), limit).await?;
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
        JobsCommand::Retry { id } => match jobs::requeue(&pool, Some(id)).await? {
            0 => anyhow::bail!("job {id} not found, or running or done: nothing re-queued"),
            _ => println!("job {id} re-queued"),
        },
        JobsCommand::RetryDead => {
            let count = jobs::requeue(&pool, None).await?;
            println!("{count} dead job(s) re-queued");
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
