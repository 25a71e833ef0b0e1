//! Redis: the avatar status cache and the events stream the bot reads. The one place that
//! knows the key names. Redis is never the source of truth: every failure here is logged and
//! counted by the caller's metrics, and never fails a webhook.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use uuid::Uuid;

use crate::config::RedisConfig;
use crate::store::avatars::AvatarView;

pub const STATUS_CHANGED: &str = "avatar.status_changed";

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
    prefix: String,
    status_ttl_secs: u64,
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
            connection: ConnectionManager::new_lazy_with_config(client, manager_config)?,
            prefix: config.key_prefix.clone(),
            status_ttl_secs: config.status_ttl.as_secs().max(1),
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

    /// Write-through after a commit: refresh the cached status and announce the change, in one
    /// round trip.
    pub async fn publish_change(&self, view: &AvatarView, event: &str) -> Result<(), CacheError> {
        let json = serde_json::to_string(view).expect("AvatarView serializes");
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let progress = view.progress.to_string();
        let avatar_id = view.avatar_id.to_string();
        let fields = [
            ("event", event),
            ("avatar_id", avatar_id.as_str()),
            ("user_id", view.user_id.as_deref().unwrap_or("")),
            ("status", view.status.as_str()),
            ("progress", progress.as_str()),
            ("at", at.as_str()),
        ];
        let mut pipe = redis::pipe();
        pipe.set_ex(self.status_key(view.avatar_id), json, self.status_ttl_secs)
            .ignore()
            .xadd_maxlen(
                self.events_stream(),
                redis::streams::StreamMaxlen::Approx(self.stream_maxlen),
                "*",
                &fields,
            )
            .ignore();
        self.run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    /// `{prefix}webhooks:{source}`: one stream per configured source.
    pub fn source_stream(&self, source: &str) -> String {
        format!("{}webhooks:{source}", self.prefix)
    }

    /// Announces a stored delivery of a configured source to its readers.
    pub async fn announce_delivery(
        &self,
        source: &str,
        fields: &[(&str, &str)],
    ) -> Result<(), CacheError> {
        let stream = self.source_stream(source);
        let maxlen = redis::streams::StreamMaxlen::Approx(self.stream_maxlen);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream).arg(maxlen).arg("*");
        for (name, value) in fields {
            cmd.arg(*name).arg(*value);
        }
        self.run(|mut conn| async move { cmd.query_async::<String>(&mut conn).await })
            .await
            .map(|_| ())
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
