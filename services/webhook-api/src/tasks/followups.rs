//! What a finished training means to the avatar's owner, done by every instance after the
//! commit that recorded it (`store::followups`): the Telegram message the bot's own webhook
//! path sent, and the removal of the training photos it did. Claimed under a lease like a
//! file job; each kind settled by what its counterpart answered.
//!
//! A message is sent once: recorded once per applying delivery, and before sending the bot's
//! own mark (`aisha:v2:avatar:notification:<id>`) is asked for, which this worker sets right
//! after Telegram's answer, before it records the message as sent. An instance that dies
//! between the answer and the mark leaves the follow-up to the next lease holder, which sends
//! it again: at most one duplicate, never a lost message. A graceful shutdown (SIGTERM, every
//! deploy) is not a death: a message still waiting for its turn is released, one in flight is
//! answered and recorded first, so no duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use prometheus::IntCounterVec;
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::avatar::{Followup, TrainingType};
use crate::cache::Cache;
use crate::config::{FollowupsConfig, PhotosConfig, TelegramConfig};
use crate::metrics;
use crate::store::followups::{self as store, ClaimedFollowup, Settled};
use crate::tasks::backoff::backoff;
use crate::telegram::{self, AboutAvatar, BotApi, ChatId};

/// What the follow-up worker works with.
pub struct FollowupWork {
    pub pool: Pool,
    pub cache: Cache,
    pub config: FollowupsConfig,
    /// The bot's photo bucket is on the same S3 server as the trained files.
    pub s3: aws_sdk_s3::Client,
    /// Lease owner prefix: this process.
    pub owner: String,
    /// `webhook_followups_total{kind,result}`.
    pub settled: IntCounterVec,
    pub redis_errors: IntCounterVec,
}

pub async fn run(state: Arc<FollowupWork>, shutdown: CancellationToken) {
    let config = &state.config;
    let mut kinds = Vec::new();
    if config.telegram.is_some() {
        kinds.extend([Followup::NotifyReady, Followup::NotifyFailed]);
    }
    if config.photos.delete_after_training {
        kinds.push(Followup::DeletePhotos);
    }
    if config.workers == 0 || kinds.is_empty() {
        tracing::info!(
            workers = config.workers,
            "follow-up worker off (no TELEGRAM_TOKEN, photos kept, or FOLLOWUP_WORKERS=0)"
        );
        return;
    }
    let sender = Arc::new(Sender {
        state: state.clone(),
        bot: config.telegram.as_ref().map(Paced::new),
    });
    let mut loops = JoinSet::new();
    for n in 0..config.workers {
        let owner = format!("{}#f{n}", state.owner);
        loops.spawn(
            sender
                .clone()
                .claim_loop(owner, kinds.clone(), shutdown.clone()),
        );
    }
    while loops.join_next().await.is_some() {}
}

struct Sender {
    state: Arc<FollowupWork>,
    bot: Option<Paced>,
}

impl Sender {
    async fn claim_loop(
        self: Arc<Self>,
        owner: String,
        kinds: Vec<Followup>,
        shutdown: CancellationToken,
    ) {
        let config = &self.state.config;
        while !shutdown.is_cancelled() {
            match store::claim(&self.state.pool, &owner, config.lease, &kinds).await {
                Ok(Some(followup)) => {
                    let span = tracing::info_span!(
                        "followup",
                        id = followup.id,
                        kind = followup.kind.as_str(),
                        avatar_id = %followup.avatar_id,
                        attempt = followup.attempts
                    );
                    self.process(followup, &owner, &shutdown)
                        .instrument(span)
                        .await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "claiming a follow-up failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(config.poll_interval) => {}
                () = shutdown.cancelled() => {}
            }
        }
    }

    async fn process(&self, followup: ClaimedFollowup, owner: &str, shutdown: &CancellationToken) {
        let pool = &self.state.pool;
        // A shutdown stops a follow-up only before its request leaves: one in flight finishes
        // (bounded by its timeout) and its outcome is recorded, so a deploy's SIGTERM never
        // hands a message that was sent to the other instance to send again.
        let Some(attempt) = self.perform(&followup, shutdown).await else {
            if let Err(e) = store::release(pool, &followup, owner).await {
                tracing::warn!(error = %e, "follow-up not released; its lease runs out");
            }
            return;
        };
        let settled = self.settled(&followup, attempt);
        let result = match &settled {
            Settled::Done(_) => "done",
            Settled::Retry { .. } => "retry",
            Settled::Wait { .. } => "rate_limited",
            Settled::Failed(_) => "failed",
            Settled::Dead(_) => "dead",
        };
        match &settled {
            Settled::Done(what) => tracing::info!(result = %what, "follow-up done"),
            Settled::Failed(why) => tracing::warn!(reason = %why, "follow-up failed for good"),
            Settled::Dead(why) => tracing::error!(reason = %why, "follow-up dead"),
            Settled::Retry { after, error } | Settled::Wait { after, error } => {
                tracing::warn!(reason = %error, retry_in = ?after, "follow-up will be retried")
            }
        }
        self.state
            .settled
            .with_label_values(&[followup.kind.as_str(), result])
            .inc();
        match store::settle(pool, &followup, owner, &settled).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!("lease lost meanwhile; the other holder settles it"),
            // The lease runs out and another attempt follows.
            Err(e) => tracing::error!(error = %e, "could not record the follow-up's outcome"),
        }
    }

    /// An attempt settled by the attempts made: another try after a backoff, or dead.
    fn settled(&self, followup: &ClaimedFollowup, attempt: Attempt) -> Settled {
        let config = &self.state.config;
        match attempt {
            Attempt::Done(what) => Settled::Done(what),
            Attempt::Refused(why) => Settled::Failed(why),
            Attempt::Wait(after, error) => Settled::Wait { after, error },
            Attempt::Again(error) if followup.attempts >= config.max_attempts => {
                Settled::Dead(format!("{error} (after {} attempts)", followup.attempts))
            }
            Attempt::Again(error) => Settled::Retry {
                after: backoff(followup.attempts, config.retry_base, config.retry_max),
                error,
            },
        }
    }

    /// The attempt, or `None` when the instance began shutting down before anything was
    /// sent or deleted.
    async fn perform(
        &self,
        followup: &ClaimedFollowup,
        shutdown: &CancellationToken,
    ) -> Option<Attempt> {
        if shutdown.is_cancelled() {
            return None;
        }
        match followup.kind {
            Followup::DeletePhotos => Some(self.delete_photos(followup.avatar_id).await),
            Followup::NotifyReady | Followup::NotifyFailed => match &self.bot {
                Some(bot) => self.notify(bot, followup, shutdown).await,
                None => Some(Attempt::Again("this instance has no TELEGRAM_TOKEN".into())),
            },
        }
    }

    /// `None`: the instance began shutting down while the message waited for its turn.
    async fn notify(
        &self,
        bot: &Paced,
        followup: &ClaimedFollowup,
        shutdown: &CancellationToken,
    ) -> Option<Attempt> {
        let state = &self.state;
        let telegram = &bot.config;
        let recipient = match store::recipient(&state.pool, followup.avatar_id).await {
            Ok(Some(recipient)) => recipient,
            Ok(None) => return Some(Attempt::Done("skipped: the avatar is gone".into())),
            Err(e) => return Some(Attempt::Again(format!("reading the avatar's owner: {e}"))),
        };
        let Some(telegram_id) = recipient.telegram_id.filter(|id| !id.trim().is_empty()) else {
            return Some(Attempt::Refused(
                "the avatar's owner has no telegram_id".into(),
            ));
        };
        let (marks, avatar_id) = (&telegram.redis_key_prefix, followup.avatar_id);
        // Redis down: send anyway (the bot does too); our row still says it was sent.
        match state.cache.notification_marked(marks, avatar_id).await {
            Ok(true) => {
                return Some(Attempt::Done(
                    "skipped: the bot's mark says it was sent".into(),
                ))
            }
            Ok(false) => {}
            Err(e) => metrics::redis_failed(
                &state.redis_errors,
                "notification_mark",
                &e,
                "the bot's notification mark not read; sending",
            ),
        }
        let about = AboutAvatar {
            avatar_id: followup.avatar_id,
            name: recipient.avatar_name.as_deref().unwrap_or("Аватар"),
            training_type: recipient
                .training_type
                .as_deref()
                .and_then(TrainingType::parse),
        };
        let chat = ChatId::from_stored(&telegram_id);
        let message = match followup.kind {
            Followup::NotifyFailed => telegram::failed_message(chat, &about),
            _ => telegram::ready_message(chat, &about),
        };
        let answer = bot.send(&telegram_id, &message, shutdown).await?;
        Some(match answer {
            telegram::Answer::Sent => {
                if let Err(e) = state
                    .cache
                    .mark_notification(marks, avatar_id, telegram.mark_ttl)
                    .await
                {
                    metrics::redis_failed(
                        &state.redis_errors,
                        "notification_mark",
                        &e,
                        "sent, but the bot's notification mark not set",
                    );
                }
                Attempt::Done("sent".into())
            }
            telegram::Answer::RetryAfter(after, error) => Attempt::Wait(after, error),
            telegram::Answer::Refused(error) => Attempt::Refused(error),
            telegram::Answer::Unavailable(error) => Attempt::Again(error),
        })
    }

    /// As the bot did after a training: every photo of the avatar but the first by
    /// `upload_order` (with `KEEP_PREVIEW_PHOTO`), the object first, then its row. A missing
    /// object counts as deleted, so a retry goes on where the last attempt stopped.
    async fn delete_photos(&self, avatar_id: Uuid) -> Attempt {
        let state = &self.state;
        let photos = &state.config.photos;
        let mut listed = match store::training_photos(&state.pool, avatar_id).await {
            Ok(listed) => listed,
            Err(e) => return Attempt::Again(format!("listing the training photos: {e}")),
        };
        if photos.keep_preview && !listed.is_empty() {
            listed.remove(0);
        }
        let mut gone = Vec::with_capacity(listed.len());
        let mut failure = None;
        for photo in &listed {
            match delete_object(&state.s3, photos, &photo.minio_key).await {
                Ok(()) => gone.push(photo.id),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let deleted = match store::delete_photo_rows(&state.pool, avatar_id, &gone).await {
            Ok(deleted) => deleted,
            Err(e) => return Attempt::Again(format!("deleting the photos' rows: {e}")),
        };
        match failure {
            Some(e) => Attempt::Again(format!("deleting a photo from S3 ({deleted} deleted): {e}")),
            None => Attempt::Done(format!(
                "deleted {deleted} photo(s){}",
                if photos.keep_preview {
                    ", kept the preview"
                } else {
                    ""
                }
            )),
        }
    }
}

/// What one try of a follow-up came to, before the attempts made decide what follows.
enum Attempt {
    Done(String),
    /// Worth trying again (after a backoff, or dead past the last attempt).
    Again(String),
    /// Telegram asked for a pause: no attempt spent.
    Wait(Duration, String),
    /// Trying again cannot succeed.
    Refused(String),
}

async fn delete_object(
    s3: &aws_sdk_s3::Client,
    photos: &PhotosConfig,
    key: &str,
) -> Result<(), String> {
    match s3
        .delete_object()
        .bucket(&photos.bucket)
        .key(key)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = e.into_service_error();
            // S3 answers 204 for a missing key; a server that says NoSuchKey means the same.
            if e.meta().code() == Some("NoSuchKey") {
                Ok(())
            } else {
                Err(format!("{key}: {e}"))
            }
        }
    }
}

/// The Bot API within Telegram's limits: at most `NOTIFY_MESSAGES_PER_SEC` from this instance,
/// and one a second to a chat.
struct Paced {
    config: TelegramConfig,
    api: BotApi,
    /// When the next message may go, any chat.
    next_slot: Mutex<Instant>,
    /// When each chat last got one (forgotten after a minute).
    last_to_chat: Mutex<HashMap<String, Instant>>,
}

const PER_CHAT: Duration = Duration::from_secs(1);

impl Paced {
    fn new(config: &TelegramConfig) -> Self {
        Self {
            config: config.clone(),
            api: BotApi::new(config),
            next_slot: Mutex::new(Instant::now()),
            last_to_chat: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for this message's turn, then sends it; `None` when `shutdown` came first (nothing
    /// was sent). Once the request leaves it is not cancelled: it ends within
    /// `TELEGRAM_REQUEST_TIMEOUT_SECS`, and its answer is recorded.
    async fn send(
        &self,
        chat: &str,
        message: &telegram::SendMessage,
        shutdown: &CancellationToken,
    ) -> Option<telegram::Answer> {
        let spacing = Duration::from_secs_f64(1.0 / self.config.messages_per_second);
        let slot = {
            let mut next = self.next_slot.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + spacing;
            slot
        };
        let chat_free = {
            let mut last = self.last_to_chat.lock().await;
            last.retain(|_, at| at.elapsed() < Duration::from_secs(60));
            let free = last.get(chat).map_or(slot, |at| (*at + PER_CHAT).max(slot));
            last.insert(chat.to_string(), free);
            free
        };
        tokio::select! {
            () = tokio::time::sleep_until(chat_free.into()) => {}
            () = shutdown.cancelled() => return None,
        }
        Some(self.api.send(message).await)
    }
}
