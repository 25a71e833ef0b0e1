//! Deploy on push: runs the configured update command for queued deploys, one at a time across
//! all instances. The instance that takes the PostgreSQL advisory lock (on a connection of its
//! own, so the lock goes if the instance dies) works the queue until it is empty.
//!
//! Nothing from a payload reaches a shell: the command is a fixed program and arguments from
//! the configuration; the run learns which deploy it is only through `DEPLOY_*` variables, and
//! the commit id among them only when it is plain hex.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use deadpool_postgres::Pool;
use tokio::sync::Notify;

use crate::config::DeployConfig;
use crate::store::deploys::{self, ClaimedDeploy, Finished};

/// The end of a run's output is kept; the start of a long log matters less than its end.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// What the deploy runner works with.
pub struct DeployWork {
    pub pool: Pool,
    /// For the lock's own connection.
    pub database: tokio_postgres::Config,
    pub config: DeployConfig,
    pub instance_id: String,
    /// Notified when a push queued a deploy.
    pub deploy_queued: Arc<Notify>,
}

pub async fn run(work: DeployWork, shutdown: CancellationToken) {
    loop {
        if let Err(e) = work_queue(&work, &shutdown).await {
            tracing::warn!(error = %format!("{e:#}"), "deploy queue not worked");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = work.deploy_queued.notified() => {}
            _ = tokio::time::sleep(work.config.poll_interval) => {}
        }
    }
}

async fn work_queue(work: &DeployWork, shutdown: &CancellationToken) -> anyhow::Result<()> {
    // Polled every few seconds: ask the pool first, and open the lock's own connection (a
    // full authentication) only when there is something to do.
    if !deploys::has_work(&work.pool).await? {
        return Ok(());
    }
    let (client, connection) = work
        .database
        .connect(tokio_postgres::NoTls)
        .await
        .context("connecting for the deploy lock")?;
    tokio::spawn(connection);
    if !deploys::try_lock(&client).await? {
        // Another instance is running deploys; it works the queue until it is empty.
        return Ok(());
    }
    let orphans = deploys::fail_orphans(&client).await?;
    if orphans > 0 {
        tracing::warn!(
            orphans,
            "deploys left running by a stopped instance marked failed"
        );
    }
    while !shutdown.is_cancelled() {
        let Some(deploy) = deploys::claim_newest(&client, &work.instance_id).await? else {
            break;
        };
        run_one(&client, &work.config, &deploy, shutdown).await?;
    }
    deploys::unlock(&client).await?;
    Ok(())
}

/// Runs one claimed deploy and records how it ended.
async fn run_one(
    client: &tokio_postgres::Client,
    config: &DeployConfig,
    deploy: &ClaimedDeploy,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!(deploy_id = deploy.id, repository = %deploy.repository, branch = %deploy.branch, "deploy started");
    let run = execute(config, deploy, shutdown).await;
    let (finished, exit_code, reason) = match run.outcome {
        Ok(status) if status.success() => (Finished::Succeeded, status.code(), None),
        Ok(status) => (
            Finished::Failed,
            status.code(),
            Some(format!("the command exited with {status}")),
        ),
        Err(RunError::TimedOut) => (
            Finished::TimedOut,
            None,
            Some(format!("killed after {:?}", config.timeout)),
        ),
        Err(RunError::Stopped) => (
            Finished::Failed,
            None,
            Some("killed: the instance running it was stopped".to_string()),
        ),
        Err(RunError::Start(e)) => (
            Finished::Failed,
            None,
            Some(format!("the command could not be started: {e}")),
        ),
    };
    tracing::info!(
        deploy_id = deploy.id,
        state = finished.as_str(),
        ?exit_code,
        "deploy finished"
    );
    deploys::finish(
        client,
        deploy,
        finished,
        exit_code,
        &run.output,
        reason.as_deref(),
    )
    .await?;
    Ok(())
}

enum RunError {
    Start(std::io::Error),
    TimedOut,
    /// The instance is shutting down: a run left behind could overlap the next one.
    Stopped,
}

struct Run {
    outcome: Result<std::process::ExitStatus, RunError>,
    /// stdout and stderr as they interleaved, the last `OUTPUT_LIMIT` bytes.
    output: String,
}

async fn execute(
    config: &DeployConfig,
    deploy: &ClaimedDeploy,
    shutdown: &CancellationToken,
) -> Run {
    match start(config, deploy) {
        Ok((child, reader)) => {
            let output = tokio::task::spawn_blocking(move || read_tail(reader));
            let outcome = wait_or_kill(child, config.timeout, shutdown).await;
            let output = output.await.unwrap_or_default();
            Run { outcome, output }
        }
        Err(e) => Run {
            outcome: Err(RunError::Start(e)),
            output: String::new(),
        },
    }
}

fn start(
    config: &DeployConfig,
    deploy: &ClaimedDeploy,
) -> std::io::Result<(tokio::process::Child, std::io::PipeReader)> {
    let (program, args) = config
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("DEPLOY_COMMAND is empty"))?;
    let (reader, writer) = std::io::pipe()?;
    let commit = deploy
        .commit_sha
        .as_deref()
        .filter(|c| c.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or("");
    let mut command = tokio::process::Command::new(program);
    // A cleared environment: the instance's secrets stay with the instance.
    command.env_clear().envs(
        config
            .env_pass
            .iter()
            .filter_map(|name| Some((name, std::env::var_os(name)?))),
    );
    command
        .args(args)
        .env("DEPLOY_ID", deploy.id.to_string())
        .env("DEPLOY_REPOSITORY", &config.repository)
        .env("DEPLOY_BRANCH", &config.branch)
        .env("DEPLOY_COMMIT", commit)
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        // Its own process group: a time-out kills the command and everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn()?;
    // `command` still holds the pipe's write end: drop it, or the reader never sees the end.
    drop(command);
    Ok((child, reader))
}

/// Waits for the command; past the time limit, or when the instance stops, kills its whole
/// process group.
async fn wait_or_kill(
    mut child: tokio::process::Child,
    limit: Duration,
    shutdown: &CancellationToken,
) -> Result<std::process::ExitStatus, RunError> {
    let cut_short = tokio::select! {
        status = child.wait() => return status.map_err(RunError::Start),
        _ = tokio::time::sleep(limit) => RunError::TimedOut,
        _ = shutdown.cancelled() => RunError::Stopped,
    };
    if let Some(pid) = child.id() {
        // SAFETY: killpg only sends a signal; the group is the child's own.
        unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) };
    }
    let _ = child.wait().await;
    Err(cut_short)
}

fn read_tail(mut reader: std::io::PipeReader) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = reader.read(&mut chunk) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > 2 * OUTPUT_LIMIT {
            kept.drain(..kept.len() - OUTPUT_LIMIT);
        }
    }
    if kept.len() > OUTPUT_LIMIT {
        kept.drain(..kept.len() - OUTPUT_LIMIT);
    }
    String::from_utf8_lossy(&kept).into_owned()
}
