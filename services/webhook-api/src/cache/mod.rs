//! Redis: the avatar status cache and the events stream the bot reads. The one place that
//! knows the key names. Redis is never the source of truth: every failure here is logged and
//! counted by the caller's metrics, and never fails a webhook.

mod watch;

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use uuid::Uuid;

use crate::config::RedisConfig;
use crate::spool::Usage;
use crate::store::avatars::AvatarView;
pub use watch::StreamWatch;

pub const STATUS_CHANGED: &str = "avatar.status_changed";
/// A copy's files are in S3 (`worker`).
pub const FILES_STORED: &str = "avatar.files_stored";

/// What Redis remembers as announced (`{prefix}announced:…`), so nothing is announced twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// A committed webhook event's change.
    Event(i64),
    /// A file job's `avatar.files_stored`.
    Files(i64),
}

/// The announcer's announcement: remember the event as announced, refresh the cached status
/// and XADD, all or nothing, and only if this event was not announced before (by the request
/// path, or by another instance's announcer).
static ANNOUNCE_ONCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
            redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
            redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
            return 1
          end
          return 0",
    )
});

/// A source delivery's first announcement: remember it, and XADD, only if not announced before.
static XADD_ONCE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
            redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
            return 1
          end
          return 0",
    )
});

/// An instance's spool, as it last told Redis.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SpoolReport {
    #[serde(flatten)]
    pub usage: Usage,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: no answer within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub struct Cache {
    connection: ConnectionManager,
    /// For the connections of their own that stream watchers need.
    client: redis::Client,
    prefix: String,
    status_ttl_secs: u64,
    announced_ttl_secs: u64,
    stream_maxlen: usize,
    timeout: Duration,
}

impl Cache {
    /// Connects lazily: the service starts, and keeps answering webhooks, while Redis is down.
    pub fn new(config: &RedisConfig) -> Result<Self, CacheError> {
        let client = redis::Client::open(config.url.expose())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?,
            client,
            prefix: config.key_prefix.clone(),
            status_ttl_secs: config.status_ttl.as_secs().max(1),
            announced_ttl_secs: config.announced_ttl.as_secs().max(1),
            stream_maxlen: config.stream_maxlen,
            timeout: config.timeout,
        })
    }

    pub fn status_key(&self, avatar_id: Uuid) -> String {
        format!("{}avatar:{avatar_id}", self.prefix)
    }

    pub fn events_stream(&self) -> String {
        format!("{}avatar:events", self.prefix)
    }

    fn announced_key(&self, mark: Announced) -> String {
        match mark {
            Announced::Event(event_id) => format!("{}announced:{event_id}", self.prefix),
            Announced::Files(job_id) => format!("{}announced:files:{job_id}", self.prefix),
        }
    }

    /// Write-through after a committed change, in one round trip: remember `mark` as
    /// announced, refresh the cached status, announce the change. (The late announcer only
    /// looks at changes settled long after this ran, so no check is needed.)
    pub async fn publish_committed_change(
        &self,
        view: &AvatarView,
        event: &str,
        mark: Announced,
    ) -> Result<(), CacheError> {
        self.publish_committed_changes([(view, event, mark)]).await
    }

    /// Several committed changes in one round trip, in order, each as
    /// `publish_committed_change` writes it.
    pub async fn publish_committed_changes<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a AvatarView, &'a str, Announced)>,
    ) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for (view, event, mark) in changes {
            let json = serde_json::to_string(view).expect("AvatarView serializes");
            pipe.set_ex(self.announced_key(mark), 1, self.announced_ttl_secs)
                .ignore()
                .set_ex(self.status_key(view.avatar_id), json, self.status_ttl_secs)
                .ignore()
                .xadd_maxlen(
                    self.events_stream(),
                    redis::streams::StreamMaxlen::Approx(self.stream_maxlen),
                    "*",
                    &stream_fields(view, event),
                )
                .ignore();
        }
        self.run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    /// The announcer's late announcement of `mark`: true when it announced it, false when it
    /// was announced meanwhile.
    pub async fn publish_missed_change(
        &self,
        view: &AvatarView,
        event: &str,
        mark: Announced,
    ) -> Result<bool, CacheError> {
        let json = serde_json::to_string(view).expect("AvatarView serializes");
        let mut invocation = ANNOUNCE_ONCE.key(self.announced_key(mark));
        invocation
            .key(self.status_key(view.avatar_id))
            .key(self.events_stream())
            .arg(self.announced_ttl_secs)
            .arg(json)
            .arg(self.status_ttl_secs)
            .arg(self.stream_maxlen);
        for (name, value) in stream_fields(view, event) {
            invocation.arg(name).arg(value);
        }
        self.run(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await
            .map(|announced| announced == 1)
    }

    /// Of these events, those Redis has no record of announcing.
    pub async fn unannounced(&self, event_ids: &[i64]) -> Result<Vec<i64>, CacheError> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in event_ids {
            pipe.exists(self.announced_key(Announced::Event(*id)));
        }
        let seen: Vec<bool> = self
            .run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(event_ids
            .iter()
            .zip(seen)
            .filter(|(_, seen)| !seen)
            .map(|(id, _)| *id)
            .collect())
    }

    /// A watch on streams for new entries (the console's live tail).
    pub fn watch(&self, streams: Vec<String>) -> StreamWatch {
        StreamWatch::new(self.client.clone(), streams, self.timeout)
    }

    /// `{prefix}webhooks:{source}`: one stream per configured source.
    pub fn source_stream(&self, source: &str) -> String {
        format!("{}webhooks:{source}", self.prefix)
    }

    /// Announces a stored delivery of a configured source to its readers; with `once`, only
    /// if that mark was not announced before, and the mark is remembered.
    pub async fn publish_delivery(
        &self,
        source: &str,
        once: Option<Announced>,
        fields: &[(&str, &str)],
    ) -> Result<(), CacheError> {
        let stream = self.source_stream(source);
        let Some(mark) = once else {
            let maxlen = redis::streams::StreamMaxlen::Approx(self.stream_maxlen);
            let mut cmd = redis::cmd("XADD");
            cmd.arg(stream).arg(maxlen).arg("*");
            for (name, value) in fields {
                cmd.arg(*name).arg(*value);
            }
            return self
                .run(|mut conn| async move { cmd.query_async::<String>(&mut conn).await })
                .await
                .map(|_| ());
        };
        let mut invocation = XADD_ONCE.key(self.announced_key(mark));
        invocation
            .key(stream)
            .arg(self.announced_ttl_secs)
            .arg(self.stream_maxlen);
        for (name, value) in fields {
            invocation.arg(*name).arg(*value);
        }
        self.run(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await
            .map(drop)
    }

    /// `{prefix}spools`: what each instance's spool holds, as it last said.
    fn spools_key(&self) -> String {
        format!("{}spools", self.prefix)
    }

    pub async fn report_spool(&self, instance_id: &str, usage: Usage) -> Result<(), CacheError> {
        let report = SpoolReport {
            usage,
            at: chrono::Utc::now(),
        };
        let json = serde_json::to_string(&report).expect("a spool report serializes");
        let (key, field) = (self.spools_key(), instance_id.to_owned());
        self.run(|mut conn| async move {
            redis::cmd("HSET")
                .arg(key)
                .arg(field)
                .arg(json)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Each instance's last spool report, by instance id.
    pub async fn spool_reports(&self) -> Result<Vec<(String, SpoolReport)>, CacheError> {
        let key = self.spools_key();
        let reports: Vec<(String, String)> = self
            .run(|mut conn| async move {
                redis::cmd("HGETALL")
                    .arg(key)
                    .query_async::<Vec<(String, String)>>(&mut conn)
                    .await
            })
            .await?;
        let mut reports: Vec<_> = reports
            .into_iter()
            .filter_map(|(instance, json)| Some((instance, serde_json::from_str(&json).ok()?)))
            .collect();
        reports.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(reports)
    }

    pub async fn stream_len(&self, stream: &str) -> Result<usize, CacheError> {
        let stream = stream.to_string();
        self.run(|mut conn| async move {
            redis::cmd("XLEN")
                .arg(stream)
                .query_async::<usize>(&mut conn)
                .await
        })
        .await
    }

    pub async fn store_status(&self, view: &AvatarView) -> Result<(), CacheError> {
        let key = self.status_key(view.avatar_id);
        let json = serde_json::to_string(view).expect("AvatarView serializes");
        let ttl = self.status_ttl_secs;
        self.run(|mut conn| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(json)
                .arg("EX")
                .arg(ttl)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Removes an avatar's cached status; how many keys went (0 or 1).
    pub async fn forget_status(&self, avatar_id: Uuid) -> Result<usize, CacheError> {
        let key = self.status_key(avatar_id);
        self.run(|mut conn| async move {
            redis::cmd("DEL")
                .arg(key)
                .query_async::<usize>(&mut conn)
                .await
        })
        .await
    }

    /// The cached status JSON, if present and readable.
    pub async fn cached_status(&self, avatar_id: Uuid) -> Result<Option<AvatarView>, CacheError> {
        let key = self.status_key(avatar_id);
        let json: Option<String> = self
            .run(|mut conn| async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await?;
        // An entry written by an older version that no longer parses is a miss, not an error.
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// `{bot_prefix}notification:{avatar_id}`: the bot's own mark of a sent notification, under
    /// the bot's prefix (`NOTIFY_REDIS_KEY_PREFIX`), not ours.
    fn notification_key(bot_prefix: &str, avatar_id: Uuid) -> String {
        format!("{bot_prefix}notification:{avatar_id}")
    }

    /// Whether the bot's mark of a sent notification of the avatar exists.
    pub async fn notification_marked(
        &self,
        bot_prefix: &str,
        avatar_id: Uuid,
    ) -> Result<bool, CacheError> {
        let key = Self::notification_key(bot_prefix, avatar_id);
        self.run(|mut conn| async move {
            redis::cmd("EXISTS")
                .arg(key)
                .query_async::<bool>(&mut conn)
                .await
        })
        .await
    }

    /// Marks a notification as sent, as the bot marks it (the value: when, in UTC).
    pub async fn mark_notification(
        &self,
        bot_prefix: &str,
        avatar_id: Uuid,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let key = Self::notification_key(bot_prefix, avatar_id);
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        self.run(|mut conn| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(at)
                .arg("EX")
                .arg(ttl.as_secs().max(1))
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        self.run(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(|_| ())
    }

    async fn run<T, F>(&self, op: impl FnOnce(ConnectionManager) -> F) -> Result<T, CacheError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, op(self.connection.clone())).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CacheError::Timeout(self.timeout)),
        }
    }
}

/// The fields of an `avatar:events` entry.
fn stream_fields(view: &AvatarView, event: &str) -> [(&'static str, String); 6] {
    [
        ("event", event.to_string()),
        ("avatar_id", view.avatar_id.to_string()),
        ("user_id", view.user_id.clone().unwrap_or_default()),
        ("status", view.status.as_str().to_string()),
        ("progress", view.progress.to_string()),
        (
            "at",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
    ]
}
