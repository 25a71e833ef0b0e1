//! A verified delivery as the spool writes it to disk (serialized) and gives it back.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::deliveries::{EventOutcome, QueuedDeploy, SourceDelivery};

/// A verified delivery as the spool keeps it: everything `deliveries::record` needs, owned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpooledDelivery {
    pub source: String,
    pub scheme: String,
    pub event_type: String,
    pub delivery_id: Option<String>,
    pub delivery_key: String,
    pub headers: serde_json::Value,
    pub body: String,
    pub outcome: EventOutcome,
    pub reason: Option<String>,
    pub http_request_id: String,
    pub instance_id: String,
    pub processing_ms: f32,
    pub deploy: Option<QueuedDeploy>,
    /// When it reached us: the row keeps this time, not the drain's.
    pub received_at: DateTime<Utc>,
}

impl SpooledDelivery {
    pub fn new(delivery: &SourceDelivery<'_>) -> Self {
        Self {
            source: delivery.source.to_owned(),
            scheme: delivery.scheme.to_owned(),
            event_type: delivery.event_type.to_owned(),
            delivery_id: delivery.delivery_id.map(str::to_owned),
            delivery_key: delivery.delivery_key.to_owned(),
            headers: delivery.headers.clone(),
            body: delivery.body.to_owned(),
            outcome: delivery.outcome,
            reason: delivery.reason.map(str::to_owned),
            http_request_id: delivery.http_request_id.to_owned(),
            instance_id: delivery.instance_id.to_owned(),
            processing_ms: delivery.processing_ms,
            deploy: delivery.deploy.cloned(),
            received_at: delivery.received_at.unwrap_or_else(Utc::now),
        }
    }

    pub fn delivery(&self) -> SourceDelivery<'_> {
        SourceDelivery {
            source: &self.source,
            scheme: &self.scheme,
            event_type: &self.event_type,
            delivery_id: self.delivery_id.as_deref(),
            delivery_key: &self.delivery_key,
            headers: &self.headers,
            body: &self.body,
            outcome: self.outcome,
            reason: self.reason.as_deref(),
            http_request_id: &self.http_request_id,
            instance_id: &self.instance_id,
            processing_ms: self.processing_ms,
            deploy: self.deploy.as_ref(),
            received_at: Some(self.received_at),
        }
    }
}
