//! The durable spool: where a verified delivery of a sender that never retries (GitHub, Gitea,
//! Plane) waits, fsync'd to this instance's disk, while PostgreSQL cannot take it. The delivery
//! is answered `202 spooled` only once its write transaction is on disk; the drain
//! (`tasks::spool_drain`) moves it into PostgreSQL through the usual path as soon as PostgreSQL
//! answers again.
//!
//! One redb file per instance, locked while open: entries keyed by arrival order, bounded by
//! `SPOOL_MAX_BYTES`. Instances may share a `SPOOL_DIR` (the replicas of a Swarm service on one
//! node, an old and a new task during a start-first update): each takes the first file nobody
//! holds (`spool.redb`, `spool-2.redb`, …), and a file its instance left behind is drained by
//! whichever instance finds it unlocked (`orphans`). An entry PostgreSQL refuses for its
//! content is moved aside (`held`) for an operator, never dropped. A delivery is kept no longer
//! than until it is stored: once none waits, the file is replaced by a fresh one holding only
//! the held entries, so no drained body survives in the old file's freed pages.

mod delivery;

pub use delivery::SpooledDelivery;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::config::SpoolConfig;
use crate::metrics::SpoolMetrics;

/// Deliveries waiting for PostgreSQL, by arrival.
const WAITING: TableDefinition<u64, &[u8]> = TableDefinition::new("waiting");
/// Deliveries PostgreSQL refused for their content, kept for an operator.
const HELD: TableDefinition<u64, &[u8]> = TableDefinition::new("held");

/// redb's page cache; entries are written once and read once, so a small one does.
const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// Instances that can share one `SPOOL_DIR`.
const MAX_FILES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full: {used} of SPOOL_MAX_BYTES={max} bytes in use")]
    Full { used: u64, max: u64 },
    #[error("spool {}: {source}", path.display())]
    Storage {
        path: PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("spool {}: all {MAX_FILES} spool files are held by other instances", dir.display())]
    AllHeld { dir: PathBuf },
    #[error("spool {}: {source}", path.display())]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the spool holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub waiting: u64,
    pub bytes: u64,
    pub held: u64,
}

/// A spooled entry as the drain reads it: its key, and the delivery (or why it cannot be read).
pub type Entry = (u64, Result<SpooledDelivery, serde_json::Error>);

pub struct Spool {
    /// Written under the read lock (redb orders its own transactions); swapped for a fresh
    /// file under the write lock (`rewrite`).
    db: RwLock<Database>,
    path: PathBuf,
    max_bytes: u64,
    after: Duration,
    waiting: AtomicU64,
    bytes: AtomicU64,
    held: AtomicU64,
    metrics: SpoolMetrics,
    /// A file another instance left: drained here, but the gauges show this instance's own.
    orphan: bool,
}

impl Spool {
    /// Opens (or creates) this instance's spool; what it already holds is drained after start.
    pub async fn open(
        config: &SpoolConfig,
        metrics: SpoolMetrics,
    ) -> Result<Arc<Self>, SpoolError> {
        let config = config.clone();
        blocking(move || Self::open_blocking(&config, metrics)).await
    }

    fn open_blocking(config: &SpoolConfig, metrics: SpoolMetrics) -> Result<Arc<Self>, SpoolError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| SpoolError::Directory {
            path: config.dir.clone(),
            source,
        })?;
        for n in 1..=MAX_FILES {
            let path = config.dir.join(file_name(n));
            if let Some(spool) = Self::open_file(path, config, metrics.clone(), false)? {
                spool.update_gauges();
                return Ok(Arc::new(spool));
            }
        }
        Err(SpoolError::AllHeld {
            dir: config.dir.clone(),
        })
    }

    /// The spool files in this one's directory that no instance holds and that still have
    /// deliveries waiting; an empty one is deleted (while locked, so no instance is using it).
    pub async fn orphans(self: &Arc<Self>) -> Vec<Arc<Spool>> {
        let spool = self.clone();
        blocking(move || spool.orphans_blocking()).await
    }

    fn orphans_blocking(&self) -> Vec<Arc<Spool>> {
        let config = SpoolConfig {
            dir: self.path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            max_bytes: self.max_bytes,
            after: self.after,
        };
        let mut found = Vec::new();
        for n in 1..=MAX_FILES {
            let path = config.dir.join(file_name(n));
            if path == self.path || !path.exists() {
                continue;
            }
            match Self::open_file(path.clone(), &config, self.metrics.clone(), true) {
                Ok(None) => {} // its instance runs
                Ok(Some(orphan)) if orphan.usage() == Usage::default() => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), error = %e, "an empty spool file left by another instance cannot be removed");
                    }
                }
                Ok(Some(orphan)) => found.push(Arc::new(orphan)),
                Err(e) => {
                    tracing::warn!(error = %e, "a spool file left by another instance cannot be opened")
                }
            }
        }
        found
    }

    /// `None` when another instance holds the file.
    fn open_file(
        path: PathBuf,
        config: &SpoolConfig,
        metrics: SpoolMetrics,
        orphan: bool,
    ) -> Result<Option<Self>, SpoolError> {
        let storage = |source: redb::Error| SpoolError::Storage {
            path: path.clone(),
            source,
        };
        let db = match Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
        {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Ok(None),
            Err(e) => return Err(storage(e.into())),
        };
        let (waiting, bytes, held) = (|| -> Result<_, redb::Error> {
            let tx = db.begin_write()?;
            let usage = {
                let waiting = tx.open_table(WAITING)?;
                let held = tx.open_table(HELD)?;
                let mut bytes = 0;
                for entry in waiting.iter()? {
                    bytes += entry?.1.value().len() as u64;
                }
                (waiting.len()?, bytes, held.len()?)
            };
            tx.commit()?;
            Ok(usage)
        })()
        .map_err(storage)?;
        let spool = Self {
            db: RwLock::new(db),
            path,
            max_bytes: config.max_bytes,
            after: config.after,
            waiting: AtomicU64::new(waiting),
            bytes: AtomicU64::new(bytes),
            held: AtomicU64::new(held),
            metrics,
            orphan,
        };
        // What an earlier run drained (it may have stopped before its rewrite) goes now.
        spool.rewrite_if_drained()?;
        Ok(Some(spool))
    }

    fn db(&self) -> RwLockReadGuard<'_, Database> {
        self.db
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// With nothing waiting, replaces the file by a fresh one holding only the held entries.
    /// The fresh file is renamed over the old while both are open and locked, so no other
    /// instance can take the path between the two; the old one's pages (drained bodies among
    /// them) go with its last handle.
    fn rewrite_if_drained(&self) -> Result<(), SpoolError> {
        let mut db = self
            .db
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.waiting.load(Ordering::Relaxed) != 0 {
            return Ok(());
        }
        let fresh_path = self.path.with_extension("redb.fresh");
        let io = |source: std::io::Error| SpoolError::Directory {
            path: fresh_path.clone(),
            source,
        };
        match std::fs::remove_file(&fresh_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let fresh = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&fresh_path)
            .map_err(|e| self.storage(e))?;
        (|| -> Result<(), redb::Error> {
            let read = db.begin_read()?;
            let held = read.open_table(HELD)?;
            let tx = fresh.begin_write()?;
            {
                tx.open_table(WAITING)?;
                let mut kept = tx.open_table(HELD)?;
                for entry in held.iter()? {
                    let (key, value) = entry?;
                    kept.insert(key.value(), value.value())?;
                }
            }
            tx.commit()?;
            Ok(())
        })()
        .map_err(|e| self.storage(e))?;
        std::fs::rename(&fresh_path, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself is durable only once the directory is.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        *db = fresh;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// How long a delivery waits for PostgreSQL before it is spooled instead (`SPOOL_AFTER_MS`).
    pub fn after(&self) -> Duration {
        self.after
    }

    pub fn usage(&self) -> Usage {
        Usage {
            waiting: self.waiting.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
        }
    }

    /// Appends `delivery`; returns once it is on disk (redb commits with an fsync).
    pub async fn append(self: &Arc<Self>, delivery: &SpooledDelivery) -> Result<u64, SpoolError> {
        let encoded = serde_json::to_vec(delivery).expect("a spooled delivery serializes");
        let source = delivery.source.clone();
        let spool = self.clone();
        let key = blocking(move || spool.append_blocking(&encoded)).await?;
        self.metrics.spooled.with_label_values(&[&source]).inc();
        Ok(key)
    }

    fn append_blocking(&self, encoded: &[u8]) -> Result<u64, SpoolError> {
        let size = encoded.len() as u64;
        // Write transactions run one at a time, so the check and the insert cannot interleave
        // with another append's.
        let db = self.db();
        let tx = db.begin_write().map_err(|e| self.storage(e))?;
        let used = self.bytes.load(Ordering::Relaxed);
        if used + size > self.max_bytes {
            return Err(SpoolError::Full {
                used,
                max: self.max_bytes,
            });
        }
        let key = (|| -> Result<u64, redb::Error> {
            let mut waiting = tx.open_table(WAITING)?;
            let key = waiting.last()?.map_or(1, |(last, _)| last.value() + 1);
            waiting.insert(key, encoded)?;
            Ok(key)
        })()
        .map_err(|e| self.storage(e))?;
        tx.commit().map_err(|e| self.storage(e))?;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.update_gauges();
        Ok(key)
    }

    /// Up to `limit` waiting deliveries, oldest first.
    pub async fn oldest(self: &Arc<Self>, limit: usize) -> Result<Vec<Entry>, SpoolError> {
        let spool = self.clone();
        blocking(move || {
            (|| -> Result<Vec<Entry>, redb::Error> {
                let tx = spool.db().begin_read()?;
                let waiting = tx.open_table(WAITING)?;
                let mut entries = Vec::new();
                for entry in waiting.iter()?.take(limit) {
                    let (key, value) = entry?;
                    entries.push((key.value(), serde_json::from_slice(value.value())));
                }
                Ok(entries)
            })()
            .map_err(|e| spool.storage(e))
        })
        .await
    }

    /// Forgets a waiting delivery now in PostgreSQL.
    pub async fn remove(self: &Arc<Self>, key: u64, source: &str) -> Result<(), SpoolError> {
        if self.take(key, false).await? {
            self.metrics.drained.with_label_values(&[source]).inc();
        }
        Ok(())
    }

    /// Moves a waiting delivery PostgreSQL will not take aside, for an operator.
    pub async fn hold(self: &Arc<Self>, key: u64) -> Result<(), SpoolError> {
        self.take(key, true).await.map(drop)
    }

    /// True when `key` was waiting (and is no more).
    async fn take(self: &Arc<Self>, key: u64, keep: bool) -> Result<bool, SpoolError> {
        let spool = self.clone();
        blocking(move || spool.take_blocking(key, keep)).await
    }

    fn take_blocking(&self, key: u64, keep: bool) -> Result<bool, SpoolError> {
        let removed = self.take_one(key, keep)?;
        if removed && self.waiting.load(Ordering::Relaxed) == 0 {
            // The delivery is stored and gone from the spool either way; the next drain or
            // start tries the rewrite again.
            if let Err(e) = self.rewrite_if_drained() {
                tracing::warn!(error = %e, "a drained spool file could not be rewritten");
            }
        }
        Ok(removed)
    }

    fn take_one(&self, key: u64, keep: bool) -> Result<bool, SpoolError> {
        let db = self.db();
        let tx = db.begin_write().map_err(|e| self.storage(e))?;
        let removed = (|| -> Result<Option<u64>, redb::Error> {
            let mut waiting = tx.open_table(WAITING)?;
            let Some(value) = waiting.remove(key)? else {
                return Ok(None);
            };
            let value = value.value().to_vec();
            if keep {
                let mut held = tx.open_table(HELD)?;
                let held_key = held.last()?.map_or(1, |(last, _)| last.value() + 1);
                held.insert(held_key, value.as_slice())?;
            }
            Ok(Some(value.len() as u64))
        })()
        .map_err(|e| self.storage(e))?;
        tx.commit().map_err(|e| self.storage(e))?;
        if let Some(size) = removed {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(size, Ordering::Relaxed);
            if keep {
                self.held.fetch_add(1, Ordering::Relaxed);
            }
            self.update_gauges();
        }
        Ok(removed.is_some())
    }

    fn update_gauges(&self) {
        if self.orphan {
            return;
        }
        let usage = self.usage();
        self.metrics.waiting.set(usage.waiting as i64);
        self.metrics.bytes.set(usage.bytes as i64);
        self.metrics.held.set(usage.held as i64);
    }

    fn storage(&self, source: impl Into<redb::Error>) -> SpoolError {
        SpoolError::Storage {
            path: self.path.clone(),
            source: source.into(),
        }
    }
}

/// `spool.redb` for the first instance of a directory, `spool-N.redb` for the others.
fn file_name(n: usize) -> String {
    if n == 1 {
        "spool.redb".into()
    } else {
        format!("spool-{n}.redb")
    }
}

/// redb is synchronous and fsyncs: off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("a spool operation does not panic")
}

#[cfg(test)]
mod tests;
