//! The operators' API's JSON: the rows `store/` returns, as the documented fields (a new column
//! is not an API field until it is written here).

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::ingest::Replayed;
use crate::store::deploys::DeployRow;
use crate::store::event_views::{EventRow, OutcomeCounts, SourceActivity};

/// One stored delivery, without its headers and payload.
pub fn event(event: &EventRow) -> Value {
    json!({
        "id": event.id,
        "source": event.source,
        "delivery_key": event.delivery_key,
        "delivery_id": event.delivery_id,
        "fal_request_id": event.fal_request_id,
        "event": event.event,
        "avatar_id": event.avatar_id,
        "outcome": event.outcome.as_str(),
        "outcome_reason": event.outcome_reason,
        "signature_scheme": event.signature_scheme,
        "http_request_id": event.http_request_id,
        "instance_id": event.instance_id,
        "training_type": event.training_type,
        "status_code": event.status_code,
        "processing_ms": event.processing_ms,
        "deliveries": event.deliveries,
        "replays": event.replays,
        "received_at": event.received_at,
        "last_delivered_at": event.last_delivered_at,
        "last_replayed_at": event.last_replayed_at,
    })
}

/// One stored delivery with its headers and payload, as JSON text: the payload goes out as
/// PostgreSQL keeps it, a number no float holds included.
pub fn event_with_body(stored: &EventRow) -> String {
    #[derive(Serialize)]
    struct WithBody<'a> {
        #[serde(flatten)]
        event: Value,
        headers: &'a Option<Value>,
        payload: Option<&'a RawValue>,
    }
    let payload = stored
        .payload
        .as_deref()
        .map(|text| serde_json::from_str(text).expect("PostgreSQL's jsonb prints valid JSON"));
    serde_json::to_string(&WithBody {
        event: event(stored),
        headers: &stored.headers,
        payload,
    })
    .expect("the view serializes")
}

/// `{"hours", "sources": {name: {"total", "by_outcome": [...]}}}`.
pub fn outcome_counts(hours: i64, lines: &[OutcomeCounts]) -> Value {
    let mut sources = Map::new();
    for line in lines {
        let entry = sources
            .entry(line.source.clone())
            .or_insert_with(|| json!({ "by_outcome": [] }));
        let mut counts = json!({
            "events": line.events,
            "deliveries": line.deliveries,
            "processing_ms_p50": line.processing_ms_p50,
            "processing_ms_p99": line.processing_ms_p99,
        });
        if line.whole_source {
            entry["total"] = counts;
        } else if let Some(list) = entry["by_outcome"].as_array_mut() {
            counts["outcome"] = json!(line.outcome);
            counts["status_class"] = json!(line.status_class);
            list.push(counts);
        }
    }
    json!({ "hours": hours, "sources": sources })
}

/// One source's line of `/api/v1/webhooks/health`.
pub fn source_health(name: &str, scheme: &str, activity: Option<&SourceActivity>) -> Value {
    json!({
        "source": name,
        "scheme": scheme,
        "last_received_at": activity.and_then(|a| a.last_received_at),
        "last_accepted_at": activity.and_then(|a| a.last_accepted_at),
        "last_hour": {
            "accepted": activity.map_or(0, |a| a.accepted),
            "rejected": activity.map_or(0, |a| a.rejected),
            "failed": activity.map_or(0, |a| a.failed),
        },
    })
}

/// A deploy run; its output when it was read.
pub fn deploy(deploy: &DeployRow) -> Value {
    let duration_ms = deploy
        .started_at
        .zip(deploy.finished_at)
        .map(|(started, finished)| (finished - started).num_milliseconds());
    let mut view = json!({
        "id": deploy.id,
        "event_id": deploy.event_id,
        "source": deploy.source,
        "repository": deploy.repository,
        "branch": deploy.branch,
        "commit": deploy.commit_sha,
        "state": deploy.state,
        "reason": deploy.reason,
        "exit_code": deploy.exit_code,
        "instance_id": deploy.instance_id,
        "queued_at": deploy.queued_at,
        "started_at": deploy.started_at,
        "finished_at": deploy.finished_at,
        "duration_ms": duration_ms,
        "requested_by": deploy.requested_by,
    });
    if let Some(output) = &deploy.output {
        view["output"] = json!(output);
    }
    view
}

/// A replay as the operators' API answers it: `result` is FAL's outcome, or `replayed`.
pub fn replayed(replayed: &Replayed) -> Value {
    match replayed {
        Replayed::Fal { outcome, event_id } => json!({
            "result": outcome.as_str(),
            "event_id": event_id,
            "source": "fal",
        }),
        Replayed::Source {
            event_id,
            source,
            outcome,
            deploy_id,
        } => json!({
            "result": replayed.result(),
            "event_id": event_id,
            "source": source,
            "outcome": outcome.as_str(),
            "deploy_id": deploy_id,
        }),
    }
}
