//! `webhook-api forget --avatar ID | --user ID`: erasure on request. Removes the service's own
//! copies of what it knows about the avatars: the copied files in S3 (every object under
//! `avatars/{user}/{avatar}/`, and every key `avatar_files` recorded), those rows and the file
//! jobs, the payloads and headers of the events that name them (the rows stay, so a redelivery
//! is still a duplicate), the Redis status cache. Stream entries are capped and age out. The
//! bot's own rows are the bot's: only the object keys this service wrote there are cleared.
//! Idempotent: run it again, it finds nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::cache::Cache;
use crate::config::Config;
use crate::files::{policy, s3_client};
use crate::store::forget::{self, Named};
use crate::store::StoreError;

/// How long a copy in progress is waited for: its upload would land after the erasure.
const COPY_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub enum Who {
    Avatar(Uuid),
    User(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("S3: {0}")]
    Storage(String),
    #[error(
        "a file copy for these avatars is still running after {0:?}: run forget again when it ends"
    )]
    CopyRunning(Duration),
}

/// What was removed, for the operator.
#[derive(Debug, Default)]
pub struct Forgotten {
    pub avatars: usize,
    pub event_payloads: u64,
    pub file_jobs: u64,
    pub file_rows: u64,
    pub objects: usize,
    pub cache_keys: usize,
}

pub async fn forget(config: &Config, pool: &Pool, who: &Who) -> Result<Forgotten, ForgetError> {
    let named = match who {
        // An avatar the bot already deleted still has copies here: forget them by its id.
        Who::Avatar(id) => vec![forget::avatar(pool, *id).await?.unwrap_or(Named {
            avatar_id: *id,
            user_id: None,
            fal_request_id: None,
        })],
        Who::User(user) => forget::avatars_of_user(pool, user).await?,
    };
    let ids: Vec<Uuid> = named.iter().map(|n| n.avatar_id).collect();
    let requests: Vec<String> = named
        .iter()
        .filter_map(|n| n.fal_request_id.clone())
        .collect();
    let started = std::time::Instant::now();
    while forget::copies_running(pool, &ids).await? > 0 {
        if started.elapsed() >= COPY_WAIT {
            return Err(ForgetError::CopyRunning(COPY_WAIT));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let removed = forget::remove(pool, &ids, &requests).await?;

    let mut keys: BTreeSet<String> = removed.object_keys.iter().cloned().collect();
    let s3 = s3_client(&config.files);
    let bucket = &config.files.s3.bucket;
    for avatar in &named {
        let prefix = policy::avatar_prefix(avatar.user_id.as_deref(), avatar.avatar_id);
        let listed = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .send()
            .await
            .map_err(|e| {
                ForgetError::Storage(format!("listing {prefix}: {}", e.into_service_error()))
            })?;
        keys.extend(
            listed
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    for key in &keys {
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                ForgetError::Storage(format!("deleting {key}: {}", e.into_service_error()))
            })?;
    }

    let mut cache_keys = 0;
    if let Ok(cache) = Cache::new(&config.redis) {
        for id in &ids {
            match cache.forget_status(*id).await {
                Ok(deleted) => cache_keys += deleted,
                Err(e) => tracing::warn!(error = %e, avatar_id = %id, "status cache not cleared"),
            }
        }
    }
    Ok(Forgotten {
        avatars: named.len(),
        event_payloads: removed.event_payloads,
        file_jobs: removed.file_jobs,
        file_rows: removed.file_rows,
        objects: keys.len(),
        cache_keys,
    })
}

/// `forget --avatar` or `--user`: erases, then prints what went.
pub async fn command(
    config: &Config,
    avatar: Option<Uuid>,
    user: Option<String>,
) -> anyhow::Result<()> {
    let who = match (avatar, user) {
        (Some(avatar), _) => Who::Avatar(avatar),
        (None, user) => Who::User(user.unwrap_or_default()),
    };
    let pool = crate::store::connect_pool(&config.database);
    let gone = forget(config, &pool, &who).await?;
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
