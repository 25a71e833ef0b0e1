//! FAL's public keys: fetched from `FAL_JWKS_URL` (https, http or file://), cached for at most
//! `max_age`, refetched early (at most once per `refetch_interval`) when a signature fails
//! against the cached keys, which is how a key rotation at FAL reaches us. One fetch at a time,
//! and after a failed one none for `FAILED_FETCH_BACKOFF`: an endpoint that hangs costs one
//! connection per period, and the requests meanwhile are answered at once (503, FAL retries).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use tokio::sync::{Mutex, RwLock};

use super::fal_ed25519::parse_jwks;

pub type Keys = Arc<[VerifyingKey]>;

/// How long after a failed fetch the keys count as unavailable without asking again.
pub const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("FAL's JWKS could not be loaded from {url}: {reason}")]
pub struct JwksUnavailable {
    pub url: String,
    pub reason: String,
}

pub struct JwksCache {
    url: String,
    max_age: Duration,
    refetch_interval: Duration,
    http: reqwest::Client,
    cached: RwLock<Option<Cached>>,
    /// One fetch at a time (a burst of webhooks after a rotation causes a single request);
    /// holds when a signature mismatch last caused a refetch.
    fetch: Mutex<Option<Instant>>,
    /// When the last fetch failed (cleared by a success); read without waiting for `fetch`.
    failed_at: std::sync::Mutex<Option<Instant>>,
}

struct Cached {
    keys: Keys,
    fetched_at: Instant,
}

impl JwksCache {
    pub fn new(url: String, max_age: Duration, refetch_interval: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a default reqwest client builds");
        Self {
            url,
            max_age,
            refetch_interval,
            http,
            cached: RwLock::new(None),
            fetch: Mutex::new(None),
            failed_at: std::sync::Mutex::new(None),
        }
    }

    /// The cached keys, loading them when there are none or they are older than `max_age`.
    pub async fn keys(&self) -> Result<Keys, JwksUnavailable> {
        if let Some(keys) = self.fresh_keys().await {
            return Ok(keys);
        }
        self.backing_off()?;
        let _one_fetch = self.fetch.lock().await;
        // Another task may have loaded them, or failed to, while this one waited for the lock.
        if let Some(keys) = self.fresh_keys().await {
            return Ok(keys);
        }
        self.backing_off()?;
        self.fetch_locked().await
    }

    fn backing_off(&self) -> Result<(), JwksUnavailable> {
        let failed_at = *self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        match failed_at {
            Some(at) if at.elapsed() < FAILED_FETCH_BACKOFF => Err(JwksUnavailable {
                url: self.url.clone(),
                reason: format!(
                    "the last fetch failed {} ms ago; the next is allowed {} s after it",
                    at.elapsed().as_millis(),
                    FAILED_FETCH_BACKOFF.as_secs()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Called after a signature failed against `stale`: returns fresher keys when a refetch
    /// is allowed (or another task already refetched), `None` when nothing new can be had.
    pub async fn refresh_after_mismatch(&self, stale: &Keys) -> Option<Keys> {
        let mut last_refetch = self.fetch.lock().await;
        if let Some(cached) = self.cached.read().await.as_ref() {
            if !Arc::ptr_eq(&cached.keys, stale) {
                return Some(cached.keys.clone());
            }
        }
        if last_refetch.is_some_and(|at| at.elapsed() < self.refetch_interval) {
            return None;
        }
        *last_refetch = Some(Instant::now());
        match self.fetch_locked().await {
            Ok(keys) => Some(keys),
            Err(e) => {
                tracing::warn!(error = %e, "refetching FAL JWKS after a signature mismatch failed");
                None
            }
        }
    }

    async fn fresh_keys(&self) -> Option<Keys> {
        let cached = self.cached.read().await;
        let cached = cached.as_ref()?;
        (cached.fetched_at.elapsed() < self.max_age).then(|| cached.keys.clone())
    }

    /// Callers hold `self.fetch`.
    async fn fetch_locked(&self) -> Result<Keys, JwksUnavailable> {
        let loaded = self.load().await;
        *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) =
            loaded.is_err().then(Instant::now);
        let keys: Keys = loaded?.into();
        *self.cached.write().await = Some(Cached {
            keys: keys.clone(),
            fetched_at: Instant::now(),
        });
        tracing::info!(url = %self.url, keys = keys.len(), "loaded FAL JWKS");
        Ok(keys)
    }

    async fn load(&self) -> Result<Vec<VerifyingKey>, JwksUnavailable> {
        let unavailable = |reason: String| JwksUnavailable {
            url: self.url.clone(),
            reason,
        };
        let bytes = if let Some(path) = self.url.strip_prefix("file://") {
            tokio::fs::read(path)
                .await
                .map_err(|e| unavailable(e.to_string()))?
        } else {
            let response = self
                .http
                .get(&self.url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| unavailable(e.to_string()))?;
            response
                .bytes()
                .await
                .map_err(|e| unavailable(e.to_string()))?
                .to_vec()
        };
        parse_jwks(&bytes).map_err(|e| unavailable(e.to_string()))
    }
}
