//! FAL callback bodies (the real queue-webhook format and the legacy format of the bot's own
//! tools) → one domain type, `FalCallback`. Holding one means the body was well-formed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct FalCallback {
    /// FAL's queue id: the one the bot stored as `avatars.fal_request_id`.
    pub request_id: String,
    pub gateway_request_id: Option<String>,
    pub format: CallbackFormat,
    pub event: TrainingEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackFormat {
    Fal,
    Legacy,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TrainingEvent {
    Queued,
    InProgress { progress: Option<i32> },
    Completed(TrainedFiles),
    Failed { error: String },
    Cancelled,
}

impl TrainingEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            TrainingEvent::Queued => "queued",
            TrainingEvent::InProgress { .. } => "in_progress",
            TrainingEvent::Completed(_) => "completed",
            TrainingEvent::Failed { .. } => "failed",
            TrainingEvent::Cancelled => "cancelled",
        }
    }
}

/// What a completed training produced: LoRA files (the portrait and LoRA trainers), or a
/// fine-tune FAL keeps itself (`fal-ai/flux-pro-trainer`, whose result is `{"finetune_id"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainedFiles {
    pub lora: Option<FileRef>,
    pub config: Option<FileRef>,
    pub finetune_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub url: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default, deserialize_with = "whole_number")]
    pub file_size: Option<u64>,
}

/// A byte count: a whole number, also when it is written `89745224.0` (JSON does not tell the
/// two apart, and JSON Schema's `integer` admits both).
fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_u64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "{number} is not a whole number of bytes"
        ))),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("field {0} is required")]
    Missing(&'static str),
    #[error("field {field} is invalid: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

impl FalCallback {
    /// Identifies the delivery for deduplication: FAL resends the same event for the same
    /// request, and the legacy and real formats of one event must count once.
    pub fn delivery_key(&self) -> String {
        match &self.event {
            TrainingEvent::InProgress {
                progress: Some(progress),
            } => format!("fal:{}:in_progress:{progress}", self.request_id),
            event => format!("fal:{}:{}", self.request_id, event.kind()),
        }
    }
}

#[derive(Deserialize)]
struct RawCallback {
    request_id: Option<String>,
    gateway_request_id: Option<String>,
    status: Option<String>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    error: Value,
    payload_error: Option<String>,
    #[serde(default)]
    progress: Value,
    #[serde(default)]
    result: Value,
}

const MAX_REQUEST_ID_BYTES: usize = 255;

pub fn parse(body: &[u8]) -> Result<FalCallback, ParseError> {
    let raw: RawCallback =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let request_id = raw
        .request_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or(ParseError::Missing("request_id"))?
        .to_string();
    // The bot's `avatars.fal_request_id` is varchar(255), and the id is part of an index key.
    for (field, id) in [
        ("request_id", Some(&request_id)),
        ("gateway_request_id", raw.gateway_request_id.as_ref()),
    ] {
        if id.is_some_and(|id| id.len() > MAX_REQUEST_ID_BYTES) {
            return Err(ParseError::Invalid {
                field,
                problem: format!("longer than {MAX_REQUEST_ID_BYTES} bytes"),
            });
        }
    }
    let status = raw.status.as_deref().ok_or(ParseError::Missing("status"))?;

    let (format, event) = match status {
        "OK" => (CallbackFormat::Fal, fal_ok(&raw)?),
        "ERROR" => (
            CallbackFormat::Fal,
            TrainingEvent::Failed {
                error: fal_error(&raw),
            },
        ),
        legacy => (CallbackFormat::Legacy, legacy_event(legacy, &raw)?),
    };
    Ok(FalCallback {
        request_id,
        gateway_request_id: raw.gateway_request_id,
        format,
        event,
    })
}

/// `status: OK` is a success only when the payload arrived: FAL reports an undeliverable
/// result as `payload: null` with `payload_error`.
fn fal_ok(raw: &RawCallback) -> Result<TrainingEvent, ParseError> {
    if raw.payload.is_null() {
        if let Some(error) = &raw.payload_error {
            return Ok(TrainingEvent::Failed {
                error: format!("FAL could not deliver the result: {error}"),
            });
        }
    }
    Ok(TrainingEvent::Completed(files(&raw.payload, "payload")?))
}

/// The error as FAL wrote it: its text, or any other JSON as JSON; `missing` when it is null or
/// blank (a blank message would leave the owner with nothing to read).
fn error_text(error: &Value, missing: &str) -> String {
    match error {
        Value::String(s) if !s.trim().is_empty() => s.clone(),
        Value::String(_) | Value::Null => missing.to_string(),
        other => other.to_string(),
    }
}

fn fal_error(raw: &RawCallback) -> String {
    let text = error_text(&raw.error, "FAL reported an error");
    // Validation errors carry their reasons in `payload.detail`.
    match raw.payload.get("detail") {
        Some(detail) if !detail.is_null() => format!("{text}: {detail}"),
        _ => text,
    }
}

fn legacy_event(status: &str, raw: &RawCallback) -> Result<TrainingEvent, ParseError> {
    Ok(match status.to_ascii_lowercase().as_str() {
        "queued" | "in_queue" => TrainingEvent::Queued,
        "in_progress" => TrainingEvent::InProgress {
            progress: progress(&raw.progress)?,
        },
        "completed" => {
            let source = if raw.result.is_null() { &raw.payload } else { &raw.result };
            TrainingEvent::Completed(files(source, "result")?)
        }
        "failed" | "error" => TrainingEvent::Failed {
            error: error_text(&raw.error, "training failed"),
        },
        "cancelled" | "canceled" => TrainingEvent::Cancelled,
        _ => {
            return Err(ParseError::Invalid {
                field: "status",
                problem: format!(
                    "{status:?} is not one of OK, ERROR, queued, in_progress, completed, failed, cancelled, IN_QUEUE, IN_PROGRESS, COMPLETED"
                ),
            })
        }
    })
}

fn progress(value: &Value) -> Result<Option<i32>, ParseError> {
    let invalid = || ParseError::Invalid {
        field: "progress",
        problem: "expected a number from 0 to 100".into(),
    };
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => {
            let p = n.as_f64().ok_or_else(invalid)?;
            if (0.0..=100.0).contains(&p) {
                Ok(Some(p.round() as i32))
            } else {
                Err(invalid())
            }
        }
        _ => Err(invalid()),
    }
}

fn files(container: &Value, container_name: &'static str) -> Result<TrainedFiles, ParseError> {
    // A result that is not an object carries no files: a completion without them is a
    // malformed callback, not a training that produced nothing.
    if !(container.is_object() || container.is_null()) {
        return Err(ParseError::Invalid {
            field: container_name,
            problem: "expected an object with the trained files".into(),
        });
    }
    let file = |field: &'static str| -> Result<Option<FileRef>, ParseError> {
        match container.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_json::from_value::<FileRef>(value.clone())
                .map(Some)
                .map_err(|e| ParseError::Invalid {
                    field,
                    problem: format!("in {container_name}: {e}"),
                }),
        }
    };
    let finetune_id = match container.get("finetune_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if id.trim().is_empty() => None,
        // The bot's `avatars.finetune_id` is varchar(255).
        Some(Value::String(id)) if id.len() <= MAX_REQUEST_ID_BYTES => Some(id.trim().to_string()),
        Some(_) => {
            return Err(ParseError::Invalid {
                field: "finetune_id",
                problem: format!(
                "in {container_name}: expected a string of at most {MAX_REQUEST_ID_BYTES} bytes"
            ),
            })
        }
    };
    Ok(TrainedFiles {
        lora: file("diffusers_lora_file")?,
        config: file("config_file")?,
        finetune_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/fal/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn parse_fixture(name: &str) -> FalCallback {
        parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Found by schemathesis: `"payload": 48558192` was a completion without files.
    #[test]
    fn a_completion_whose_files_are_not_an_object_is_malformed() {
        for body in [
            r#"{"request_id":"r","status":"OK","payload":48558192}"#,
            r#"{"request_id":"r","status":"OK","payload":["x"]}"#,
            r#"{"request_id":"r","status":"completed","result":"files"}"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(ParseError::Invalid { problem, .. }) if problem.contains("expected an object")),
                "{body}"
            );
        }
    }

    /// Found by schemathesis: `1180727759.0` is a whole number in JSON (and JSON Schema).
    #[test]
    fn a_file_size_written_with_a_zero_fraction_is_a_whole_number() {
        let body = |size: &str| {
            format!(
                r#"{{"request_id":"r","status":"OK","payload":{{"config_file":{{"url":"https://v3.fal.media/c.json","file_size":{size}}}}}}}"#
            )
        };
        let size_of = |size: &str| match parse(body(size).as_bytes()).map(|cb| cb.event) {
            Ok(TrainingEvent::Completed(files)) => Ok(files.config.unwrap().file_size),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(size_of("1180727759.0"), Ok(Some(1_180_727_759)));
        assert_eq!(size_of("942"), Ok(Some(942)));
        assert_eq!(size_of("null"), Ok(None));
        assert!(size_of("10.5").unwrap_err().contains("not a whole number"));
        assert!(size_of("-1").is_err());
    }

    #[test]
    fn fal_success_has_both_files() {
        let cb = parse_fixture("ok_flux_lora_fast_training.json");
        assert_eq!(cb.request_id, "a6823810-a615-4ac8-aca3-5d2546aa81b8");
        assert_eq!(cb.format, CallbackFormat::Fal);
        let TrainingEvent::Completed(files) = cb.event else {
            panic!("expected completion, got {:?}", cb.event)
        };
        let lora = files.lora.unwrap();
        assert_eq!(
            lora.url,
            "https://v3.fal.media/files/koala/Yx3k_pytorch_lora_weights.safetensors"
        );
        assert_eq!(lora.file_size, Some(89_745_224));
        assert_eq!(
            files.config.unwrap().file_name.as_deref(),
            Some("config.json")
        );
    }

    #[test]
    fn a_pro_trainer_success_is_a_finetune_without_files() {
        let cb = parse_fixture("ok_flux_pro_trainer.json");
        let TrainingEvent::Completed(result) = cb.event else {
            panic!("{:?}", cb.event)
        };
        assert_eq!(
            result.finetune_id.as_deref(),
            Some("f1e4776e-3e9a-4a2c-b96d-af5333ef7203")
        );
        assert!(result.lora.is_none() && result.config.is_none());
        let lora = parse_fixture("ok_flux_lora_fast_training.json");
        assert!(matches!(lora.event, TrainingEvent::Completed(f) if f.finetune_id.is_none()));
        let long = format!(
            r#"{{"request_id":"r","status":"OK","payload":{{"finetune_id":"{}"}}}}"#,
            "x".repeat(256)
        );
        assert!(matches!(
            parse(long.as_bytes()),
            Err(ParseError::Invalid {
                field: "finetune_id",
                ..
            })
        ));
    }

    #[test]
    fn gcs_success_parses() {
        let cb = parse_fixture("ok_portrait_trainer_gcs.json");
        let TrainingEvent::Completed(files) = cb.event else {
            panic!()
        };
        assert!(files
            .lora
            .unwrap()
            .url
            .starts_with("https://storage.googleapis.com/"));
    }

    #[test]
    fn retried_job_matches_on_request_id_not_gateway_id() {
        let cb = parse_fixture("retried_gateway_id.json");
        assert_eq!(cb.request_id, "c2f6a1d4-93e8-4b0a-8f7c-5e1d2a3b4c5d");
        assert_eq!(
            cb.gateway_request_id.as_deref(),
            Some("f7e6d5c4-b3a2-4190-8f7e-6d5c4b3a2190")
        );
        assert_eq!(
            cb.delivery_key(),
            "fal:c2f6a1d4-93e8-4b0a-8f7c-5e1d2a3b4c5d:completed"
        );
    }

    #[test]
    fn fal_error_keeps_message_and_details() {
        let cb = parse_fixture("error_validation.json");
        let TrainingEvent::Failed { error } = cb.event else {
            panic!()
        };
        assert!(error.starts_with("Invalid status code: 422"), "{error}");
        assert!(error.contains("field required"), "{error}");
    }

    fn failure_of(body: &str) -> String {
        match parse(body.as_bytes()).unwrap().event {
            TrainingEvent::Failed { error } => error,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_blank_or_missing_error_reads_as_the_default_and_any_other_is_kept() {
        for (status, default) in [
            ("ERROR", "FAL reported an error"),
            ("failed", "training failed"),
        ] {
            for error in [r#""""#, r#""   ""#, "null"] {
                let body = format!(r#"{{"request_id":"r","status":"{status}","error":{error}}}"#);
                assert_eq!(failure_of(&body), default, "{status} with error {error}");
            }
            let body = format!(r#"{{"request_id":"r","status":"{status}","error":"GPU lost"}}"#);
            assert_eq!(failure_of(&body), "GPU lost");
            // A null `detail` adds nothing to the message.
            let body = format!(
                r#"{{"request_id":"r","status":"{status}","error":"GPU lost","payload":{{"detail":null}}}}"#
            );
            assert_eq!(failure_of(&body), "GPU lost");
            let body = format!(r#"{{"request_id":"r","status":"{status}","error":{{"code":7}}}}"#);
            assert_eq!(failure_of(&body), r#"{"code":7}"#);
        }
    }

    #[test]
    fn a_blank_finetune_id_is_no_finetune() {
        for id in [r#""""#, r#""   ""#, "null"] {
            let body =
                format!(r#"{{"request_id":"r","status":"OK","payload":{{"finetune_id":{id}}}}}"#);
            let TrainingEvent::Completed(files) = parse(body.as_bytes()).unwrap().event else {
                panic!("{body}")
            };
            assert_eq!(files.finetune_id, None, "{body}");
        }
        let body = r#"{"request_id":"r","status":"OK","payload":{"finetune_id":" ft-1 "}}"#;
        let TrainingEvent::Completed(files) = parse(body.as_bytes()).unwrap().event else {
            panic!()
        };
        assert_eq!(files.finetune_id.as_deref(), Some("ft-1"));
    }

    #[test]
    fn a_request_id_may_be_as_long_as_the_bots_column_and_no_longer() {
        for field in ["request_id", "gateway_request_id"] {
            let body = |len: usize| {
                let id = "r".repeat(len);
                let other = if field == "request_id" {
                    "gateway_request_id"
                } else {
                    "request_id"
                };
                format!(r#"{{"{field}":"{id}","{other}":"x","status":"in_progress"}}"#)
            };
            assert!(
                parse(body(MAX_REQUEST_ID_BYTES).as_bytes()).is_ok(),
                "{field}"
            );
            let err = parse(body(MAX_REQUEST_ID_BYTES + 1).as_bytes()).unwrap_err();
            assert!(
                matches!(err, ParseError::Invalid { field: f, .. } if f == field),
                "{err:?}"
            );
        }
    }

    #[test]
    fn ok_with_payload_error_is_a_failure() {
        let cb = parse_fixture("ok_payload_error.json");
        let TrainingEvent::Failed { error } = cb.event else {
            panic!("expected failure, got {:?}", cb.event)
        };
        assert!(error.contains("not JSON serializable"), "{error}");
    }

    #[test]
    fn legacy_formats_parse() {
        let cb = parse_fixture("legacy_completed.json");
        assert_eq!(cb.format, CallbackFormat::Legacy);
        let TrainingEvent::Completed(files) = cb.event else {
            panic!()
        };
        assert_eq!(files.lora.unwrap().file_size, Some(144_041_920));

        let cb = parse_fixture("legacy_in_progress.json");
        assert_eq!(cb.event, TrainingEvent::InProgress { progress: Some(40) });
        assert_eq!(cb.delivery_key(), "fal:test-123:in_progress:40");

        let cb = parse_fixture("legacy_minimal_completed.json");
        assert_eq!(cb.event, TrainingEvent::Completed(TrainedFiles::default()));
    }

    #[test]
    fn queue_words_are_accepted_in_upper_case() {
        for (status, kind) in [
            ("IN_QUEUE", "queued"),
            ("IN_PROGRESS", "in_progress"),
            ("COMPLETED", "completed"),
            ("failed", "failed"),
            ("cancelled", "cancelled"),
        ] {
            let body = format!(r#"{{"request_id":"r","status":"{status}"}}"#);
            assert_eq!(
                parse(body.as_bytes()).unwrap().event.kind(),
                kind,
                "{status}"
            );
        }
    }

    #[test]
    fn same_event_in_both_formats_has_one_delivery_key() {
        let fal = parse(br#"{"request_id":"r9","status":"OK","payload":{}}"#).unwrap();
        let legacy = parse(br#"{"request_id":"r9","status":"completed"}"#).unwrap();
        assert_eq!(fal.delivery_key(), legacy.delivery_key());
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        assert!(matches!(parse(b"{not json"), Err(ParseError::Json(_))));
        assert_eq!(
            parse(br#"{"status":"OK"}"#),
            Err(ParseError::Missing("request_id"))
        );
        assert_eq!(
            parse(br#"{"request_id":"  ","status":"OK"}"#),
            Err(ParseError::Missing("request_id"))
        );
        assert_eq!(
            parse(br#"{"request_id":"r"}"#),
            Err(ParseError::Missing("status"))
        );
        assert!(matches!(
            parse(br#"{"request_id":"r","status":"done"}"#),
            Err(ParseError::Invalid {
                field: "status",
                ..
            })
        ));
        assert!(matches!(
            parse(br#"{"request_id":"r","status":"in_progress","progress":140}"#),
            Err(ParseError::Invalid {
                field: "progress",
                ..
            })
        ));
        let long = format!(r#"{{"request_id":"{}","status":"OK"}}"#, "r".repeat(3000));
        assert!(matches!(
            parse(long.as_bytes()),
            Err(ParseError::Invalid {
                field: "request_id",
                ..
            })
        ));
        assert!(matches!(
            parse(br#"{"request_id":"r","status":"OK","payload":{"diffusers_lora_file":{"file_name":"x"}}}"#),
            Err(ParseError::Invalid { field: "diffusers_lora_file", .. })
        ));
    }
}
