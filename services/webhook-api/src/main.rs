//! Wiring only: command line → config → application → shutdown.

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use webhook_api::cli::args::{Cli, Command};
use webhook_api::cli::{self, configured};
use webhook_api::config::{Config, DatabaseCommandConfig};
use webhook_api::startup::{self, Application};
use webhook_api::{store, telemetry};

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Healthcheck => runtime.block_on(cli::healthcheck::check()),
        Command::SendTest {
            url,
            request_id,
            ca,
        } => runtime.block_on(cli::send_test::command(url, request_id, ca)),
        Command::CheckConfig => match configured(Config::from_env()) {
            Some(config) => {
                println!("{}", cli::check_config::summary(&config));
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
                    Command::Jobs(jobs) => cli::jobs::command(&pool, jobs).await,
                    Command::Retention { dry_run } => {
                        cli::retention::command(&pool, &config.retention, dry_run).await
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
                    Command::Forget { avatar, user } => {
                        cli::forget::command(&config, avatar, user).await
                    }
                    Command::Status => {
                        let pool = store::connect_pool(&config.database);
                        let (report, database) = cli::cluster_report::report(&config, &pool).await;
                        print!("{report}");
                        database.map_err(Into::into)
                    }
                    _ => serve(config).await,
                }
            }))
        }
    }
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

async fn signal_to_shutdown(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    shutdown.cancel();
}
