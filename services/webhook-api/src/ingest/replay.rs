//! A stored delivery run through the path it first took, asked for by an operator (the API,
//! the console, a bulk replay). Idempotent: FAL's ingest dedups on the delivery key (an
//! `unmatched` callback is applied once its avatar exists), and a source's delivery is
//! announced again; a push's commit deploys again only when an operator asks (`redeploy_by`).

use super::{Ingest, SourceReplay};
use crate::avatar::TrainingType;
use crate::config::{DeployConfig, SourceConfig};
use crate::fal;
use crate::store::deliveries::{self, EventOutcome, StoredEvent};
use crate::store::ingest::{Delivery, Outcome};
use crate::store::{self, StoreError};
use crate::verify::FalScheme;

/// What a replay needs of the configuration.
pub struct ReplayContext<'a> {
    pub sources: &'a [SourceConfig],
    pub deploy: Option<&'a DeployConfig>,
    pub instance_id: &'a str,
}

/// What a replay came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// A FAL callback through the ingest again: its outcome now (`duplicate` when it had
    /// been applied, `applied` when its avatar exists now).
    Fal { outcome: Outcome, event_id: i64 },
    /// A source's delivery announced again on its stream; `deploy_id` when a deploy was queued.
    Source {
        event_id: i64,
        source: String,
        outcome: EventOutcome,
        deploy_id: Option<i64>,
    },
}

impl Replayed {
    /// The word for it: FAL's outcome, or `replayed` (the API's `result`, the console's code).
    pub fn result(&self) -> &'static str {
        match self {
            Replayed::Fal { outcome, .. } => outcome.as_str(),
            Replayed::Source { .. } => "replayed",
        }
    }

    /// Whether it changed or announced something (not a duplicate, nor a callback that still
    /// matches nothing).
    pub fn took_effect(&self) -> bool {
        matches!(
            self,
            Replayed::Fal {
                outcome: Outcome::Applied,
                ..
            } | Replayed::Source { .. }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("event {0}")]
    NotFound(i64),
    /// Nothing to replay: refused before it was verified, its payload dropped, or no longer a
    /// FAL callback.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Ingest {
    /// Replays stored delivery `id`; what it came to.
    pub async fn replay_stored(
        &self,
        id: i64,
        context: &ReplayContext<'_>,
        redeploy_by: Option<&str>,
        request_id: &str,
    ) -> Result<Replayed, ReplayError> {
        let limit = self.statement_timeout;
        let stored = store::within(limit, deliveries::stored_event(&self.pool, id))
            .await?
            .ok_or(ReplayError::NotFound(id))?;
        let Some(payload) = stored
            .payload
            .as_deref()
            .filter(|_| stored.outcome != EventOutcome::Rejected)
        else {
            let why = match stored.outcome {
                EventOutcome::Rejected => "was rejected; nothing verified was kept to replay",
                _ => "has no payload any more (RETENTION_PAYLOAD_DAYS dropped it)",
            };
            return Err(ReplayError::Conflict(format!("event {id} {why}")));
        };
        let replayed = if stored.source == "fal" {
            self.replay_fal(id, payload, &stored, context, request_id)
                .await?
        } else {
            self.replay_stored_source(payload, &stored, context, redeploy_by)
                .await?
        };
        store::within(limit, deliveries::mark_replayed(&self.pool, id)).await?;
        tracing::info!(event_id = id, source = %stored.source, "delivery replayed");
        Ok(replayed)
    }

    /// A FAL callback through the same ingest: a duplicate, or applied now for an `unmatched`
    /// one whose avatar exists.
    async fn replay_fal(
        &self,
        id: i64,
        payload: &str,
        stored: &StoredEvent,
        context: &ReplayContext<'_>,
        request_id: &str,
    ) -> Result<Replayed, ReplayError> {
        let callback = fal::parse(payload.as_bytes()).map_err(|e| {
            ReplayError::Conflict(format!(
                "event {id} no longer parses as a FAL callback: {e}"
            ))
        })?;
        let delivery = Delivery {
            callback,
            body: payload.to_string(),
            scheme: FalScheme::parse(&stored.signature_scheme).unwrap_or(FalScheme::Hmac),
            http_request_id: request_id.to_string(),
            instance_id: context.instance_id.to_string(),
            training_type: stored
                .training_type
                .as_deref()
                .and_then(TrainingType::parse),
            received: std::time::Instant::now(),
        };
        let ingested = self.fal_callback(delivery).await?;
        Ok(Replayed::Fal {
            outcome: ingested.outcome,
            event_id: ingested.event_id,
        })
    }

    /// A source's delivery announced again; a deploy queued only if its commit never had one,
    /// or when an operator asks for another.
    async fn replay_stored_source(
        &self,
        payload: &str,
        stored: &StoredEvent,
        context: &ReplayContext<'_>,
        redeploy_by: Option<&str>,
    ) -> Result<Replayed, ReplayError> {
        let replay = SourceReplay {
            source: &stored.source,
            configured: context.sources.iter().find(|s| s.name == stored.source),
            event_id: stored.id,
            event_type: &stored.event_type,
            delivery_id: stored.delivery_id.as_deref(),
            outcome: stored.outcome,
            payload,
            redeploy_by,
        };
        let deploy_id = self.replay_source(replay, context.deploy).await?;
        Ok(Replayed::Source {
            event_id: stored.id,
            source: stored.source.clone(),
            outcome: stored.outcome,
            deploy_id,
        })
    }
}
