//! The file-copy worker that runs in every instance: claim a job, copy its files while renewing
//! the lease, settle it (done, retry later, failed, dead), announce the stored files.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use deadpool_postgres::Pool;
use prometheus::{IntCounter, IntCounterVec};
use tokio::sync::Notify;

use crate::cache::{Announced, Cache, FILES_STORED};
use crate::config::FilesConfig;
use crate::files::policy::{object_key, JobFile};
use crate::files::{Copier, CopyError, OpenUpload, Stored, UploadJournal};
use crate::metrics;
use crate::store::avatars::AvatarView;
use crate::store::event_log;
use crate::store::jobs::{self, ClaimedJob, Setback};
use crate::tasks::backoff::backoff;

/// What the file worker works with.
pub struct FileWork {
    pub pool: Pool,
    pub cache: Cache,
    pub files: FilesConfig,
    /// Lease owner prefix: this process.
    pub owner: String,
    pub bytes_copied: IntCounter,
    pub jobs_settled: IntCounterVec,
    pub redis_errors: IntCounterVec,
    /// Notified when a callback enqueued a job.
    pub job_enqueued: Arc<Notify>,
    /// Whether a finished copy records the removal of the avatar's training photos.
    pub delete_photos: bool,
}

pub struct Worker {
    state: Arc<FileWork>,
    copier: Copier,
    /// Unique per process, so a restarted instance never mistakes an old lease for its own.
    owner_prefix: String,
}

pub async fn run(state: Arc<FileWork>, shutdown: CancellationToken) {
    let files = &state.files;
    if files.workers == 0 {
        tracing::info!("file worker disabled (FILE_WORKERS=0)");
        return;
    }
    let worker = Arc::new(Worker {
        copier: Copier::new(files),
        owner_prefix: state.owner.clone(),
        state: state.clone(),
    });
    // S3 may come up after us; webhooks are accepted meanwhile and jobs wait.
    while let Err(e) = worker.copier.ensure_bucket().await {
        tracing::warn!(error = %e, bucket = worker.copier.bucket(), "S3 bucket not ready; retrying");
        tokio::select! {
            () = tokio::time::sleep(files.poll_interval.max(Duration::from_secs(1))) => {}
            () = shutdown.cancelled() => return,
        }
    }
    let mut loops = JoinSet::new();
    for n in 0..files.workers {
        loops.spawn(worker.clone().claim_loop(n, shutdown.clone()));
    }
    while loops.join_next().await.is_some() {}
}

impl Worker {
    async fn claim_loop(self: Arc<Self>, n: usize, shutdown: CancellationToken) {
        let owner = format!("{}#{n}", self.owner_prefix);
        let config = &self.state.files;
        while !shutdown.is_cancelled() {
            match jobs::claim(&self.state.pool, &owner, config.lease).await {
                Ok(Some(job)) => {
                    self.process(job, &owner, &shutdown).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "claiming a file job failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(config.poll_interval) => {}
                () = self.state.job_enqueued.notified() => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    async fn process(&self, job: ClaimedJob, owner: &str, shutdown: &CancellationToken) {
        let span = tracing::info_span!(
            "file_job",
            job_id = job.id,
            avatar_id = %job.avatar_id,
            attempt = job.attempts
        );
        self.run_job(job, owner, shutdown).instrument(span).await
    }

    /// `avatar.files_stored`, then the job marked announced; what fails here the late
    /// announcer announces (once: Redis remembers the job as announced).
    async fn announce_files(&self, job: &ClaimedJob, avatar: &AvatarView) {
        let published = self
            .state
            .cache
            .publish_committed_change(avatar, FILES_STORED, Announced::Files(job.id))
            .await;
        if let Err(e) = published {
            metrics::redis_failed(
                &self.state.redis_errors,
                "publish",
                &e,
                "stored files not announced on Redis yet",
            );
            return;
        }
        if let Err(e) = event_log::mark_files_announced(&self.state.pool, job.id).await {
            tracing::warn!(error = %e, "announced files not marked; the announcer will");
        }
    }

    async fn run_job(&self, job: ClaimedJob, owner: &str, shutdown: &CancellationToken) {
        let config = &self.state.files;
        let lease_lost = CancellationToken::new();
        let heartbeat = tokio::spawn(renew_lease(
            self.state.clone(),
            job.id,
            owner.to_string(),
            lease_lost.clone(),
        ));
        let outcome = tokio::select! {
            result = self.copy_all(&job, owner) => Some(result),
            () = shutdown.cancelled() => None,
            () = lease_lost.cancelled() => {
                tracing::warn!("lease lost to another worker; leaving the job to it");
                return;
            }
        };
        heartbeat.abort();

        let pool = &self.state.pool;
        let (result, settled) = match outcome {
            None => ("released", jobs::release(pool, &job, owner).await),
            Some(Ok(stored)) => {
                match jobs::complete(pool, &job, owner, &stored, self.state.delete_photos).await {
                    Ok(Some(avatar)) => {
                        let bytes: u64 = stored.iter().map(|(_, s)| s.size).sum();
                        self.state.bytes_copied.inc_by(bytes);
                        tracing::info!(files = stored.len(), bytes, "files stored");
                        self.announce_files(&job, &avatar).await;
                        ("done", Ok(()))
                    }
                    Ok(None) => ("lease_lost", Ok(())),
                    Err(e) => ("error", Err(e)),
                }
            }
            Some(Err(CopyError::Permanent(reason))) => {
                tracing::warn!(%reason, "file job failed permanently");
                (
                    "failed",
                    jobs::settle(pool, &job, owner, Setback::Failed, &reason).await,
                )
            }
            Some(Err(CopyError::Transient(reason))) if job.attempts >= config.max_attempts => {
                tracing::error!(%reason, "file job dead after {} attempts", job.attempts);
                (
                    "dead",
                    jobs::settle(pool, &job, owner, Setback::Dead, &reason).await,
                )
            }
            Some(Err(CopyError::Transient(reason))) => {
                let delay = backoff(job.attempts, config.retry_base, config.retry_max);
                tracing::warn!(%reason, retry_in = ?delay, "file copy failed; will retry");
                (
                    "retry",
                    jobs::settle(pool, &job, owner, Setback::Retry(delay), &reason).await,
                )
            }
        };
        self.state.jobs_settled.with_label_values(&[result]).inc();
        if let Err(e) = settled {
            // The lease runs out and another attempt follows: nothing is lost.
            tracing::error!(error = %e, "could not record the job's outcome");
        }
    }

    async fn copy_all(
        &self,
        job: &ClaimedJob,
        owner: &str,
    ) -> Result<Vec<(JobFile, Stored)>, CopyError> {
        // What a dead attempt left open goes first, so the bucket ends with complete objects only.
        if !job.open_uploads.is_empty() {
            for upload in &job.open_uploads {
                self.copier.abort_upload(upload).await?;
                tracing::info!(key = %upload.key, upload_id = %upload.upload_id, "aborted stale multipart upload");
            }
            jobs::forget_uploads(&self.state.pool, job.id, owner)
                .await
                .map_err(|e| CopyError::Transient(e.to_string()))?;
        }
        let journal = JobJournal {
            state: &self.state,
            job_id: job.id,
            owner,
        };
        let mut stored = Vec::with_capacity(job.files.len());
        for file in &job.files {
            let key = object_key(job.user_id.as_deref(), job.avatar_id, file);
            let object = self.copier.copy(file, &key, &journal).await?;
            stored.push((file.clone(), object));
        }
        Ok(stored)
    }
}

/// Records each started multipart upload on the job's row before any part is sent.
struct JobJournal<'a> {
    state: &'a FileWork,
    job_id: i64,
    owner: &'a str,
}

impl UploadJournal for JobJournal<'_> {
    async fn started(&self, key: &str, upload_id: &str) -> Result<(), CopyError> {
        let upload = OpenUpload {
            key: key.to_string(),
            upload_id: upload_id.to_string(),
        };
        jobs::record_upload(&self.state.pool, self.job_id, self.owner, &upload)
            .await
            .map_err(|e| CopyError::Transient(format!("recording the multipart upload: {e}")))
    }
}

async fn renew_lease(state: Arc<FileWork>, job_id: i64, owner: String, lost: CancellationToken) {
    let lease = state.files.lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        match jobs::renew(&state.pool, job_id, &owner, lease).await {
            Ok(true) => {}
            Ok(false) => return lost.cancel(),
            // A database blip: keep copying; the next renewal may succeed before expiry.
            Err(e) => tracing::warn!(error = %e, "renewing the lease failed"),
        }
    }
}
