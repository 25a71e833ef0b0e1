//! The deliveries page's query string ↔ a `DeliveryFilter`: every field checked, each problem
//! said in words the operator can act on.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use uuid::Uuid;

use crate::store::console::DeliveryFilter;
use crate::store::deliveries::EventOutcome;

/// The form's fields, as typed (so the page shows them back, even when one is wrong).
#[derive(Debug, Default, Clone)]
pub struct FilterForm {
    pub source: String,
    pub event: String,
    pub outcome: String,
    pub since: String,
    pub until: String,
    pub delivery_id: String,
    pub request_id: String,
    pub avatar_id: String,
    pub body: String,
    /// The cursor: deliveries older than this id.
    pub before: String,
}

impl FilterForm {
    pub fn from_query(query: Option<&str>) -> Self {
        let mut form = FilterForm::default();
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.trim().to_string();
            match name.as_ref() {
                "source" => form.source = value,
                "event" => form.event = value,
                "outcome" => form.outcome = value,
                "since" => form.since = value,
                "until" => form.until = value,
                "delivery_id" => form.delivery_id = value,
                "request_id" => form.request_id = value,
                "avatar_id" => form.avatar_id = value,
                "body" => form.body = value,
                "before" => form.before = value,
                _ => {}
            }
        }
        form
    }

    /// The filter, or what is wrong with the form.
    pub fn filter(&self) -> Result<(DeliveryFilter, Option<i64>), String> {
        let text = |value: &str, what: &str| -> Result<Option<String>, String> {
            if value.is_empty() {
                Ok(None)
            } else if value.len() > 255 || value.chars().any(char::is_control) {
                Err(format!("{what} must be at most 255 printable characters"))
            } else {
                Ok(Some(value.to_string()))
            }
        };
        let outcome = match self.outcome.as_str() {
            "" => None,
            name => Some(EventOutcome::parse(name).ok_or_else(|| {
                format!(
                    "outcome {name:?} is not one of {}",
                    EventOutcome::names().join(", ")
                )
            })?),
        };
        let avatar_id = match self.avatar_id.as_str() {
            "" => None,
            id => Some(Uuid::parse_str(id).map_err(|_| format!("avatar id {id:?} is not a UUID"))?),
        };
        let body_contains = match self.body.as_str() {
            "" => None,
            json => {
                let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
                    format!("the body search is not JSON ({e}): write it as JSON, e.g. {{\"ref\":\"refs/heads/main\"}}")
                })?;
                if !(value.is_object() || value.is_array()) {
                    return Err(
                        "the body search must be a JSON object or array the body contains, e.g. {\"status\":\"OK\"}"
                            .into(),
                    );
                }
                Some(value)
            }
        };
        let since = time(&self.since, "from")?;
        let until = time(&self.until, "to")?;
        if let (Some(since), Some(until)) = (since, until) {
            if since >= until {
                return Err("the time range is empty: \"from\" must be before \"to\"".into());
            }
        }
        let before = match self.before.as_str() {
            "" => None,
            raw => Some(
                raw.parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| format!("the page cursor {raw:?} is not a delivery id: start from the first page"))?,
            ),
        };
        Ok((
            DeliveryFilter {
                source: text(&self.source, "the source")?,
                event: text(&self.event, "the event type")?,
                outcome,
                since,
                until,
                delivery_id: text(&self.delivery_id, "the delivery id")?,
                fal_request_id: text(&self.request_id, "the request id")?,
                avatar_id,
                body_contains,
            },
            before,
        ))
    }

    /// The query string of this filter (without the cursor), for links and the export.
    pub fn query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("source", &self.source),
            ("event", &self.event),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
            ("delivery_id", &self.delivery_id),
            ("request_id", &self.request_id),
            ("avatar_id", &self.avatar_id),
            ("body", &self.body),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.finish()
    }
}

/// A time as the browser's `datetime-local` field sends it (UTC), a date, or RFC 3339.
fn time(value: &str, what: &str) -> Result<Option<DateTime<Utc>>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(value, format) {
            return Ok(Some(at.and_utc()));
        }
    }
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).map(|at| at.and_utc()));
    }
    Err(format!(
        "\"{what}\" {value:?} is not a time: use 2026-12-04T17:30 (UTC) or 2026-12-04"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(query: &str) -> Result<(DeliveryFilter, Option<i64>), String> {
        FilterForm::from_query(Some(query)).filter()
    }

    #[test]
    fn a_filled_form_is_a_filter_and_its_query_again() {
        let query = "source=github&event=push&outcome=accepted&since=2026-12-01T10%3A00\
                     &until=2026-12-02&delivery_id=d-1&request_id=r-1\
                     &avatar_id=0b8e5a4e-7c1f-4a8e-9a36-3f1d2b6c9e01\
                     &body=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D&before=42";
        let (f, before) = filter(query).unwrap();
        assert_eq!(before, Some(42));
        assert_eq!(f.source.as_deref(), Some("github"));
        assert_eq!(f.outcome, Some(EventOutcome::Accepted));
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-12-01T10:00:00+00:00");
        assert_eq!(f.until.unwrap().to_rfc3339(), "2026-12-02T00:00:00+00:00");
        assert_eq!(
            f.body_contains,
            Some(serde_json::json!({"ref": "refs/heads/main"}))
        );
        let again = FilterForm::from_query(Some(&FilterForm::from_query(Some(query)).query()));
        assert_eq!(again.filter().unwrap().0, f);
        assert!(
            again.before.is_empty(),
            "the cursor is not part of the filter"
        );
        assert_eq!(filter("").unwrap(), (DeliveryFilter::default(), None));
    }

    #[test]
    fn each_mistake_is_named() {
        for (query, said) in [
            ("body=%7Bref", "the body search is not JSON"),
            ("body=42", "must be a JSON object or array"),
            ("outcome=won", "outcome \"won\" is not one of"),
            ("avatar_id=7", "avatar id \"7\" is not a UUID"),
            ("since=yesterday", "\"from\" \"yesterday\" is not a time"),
            (
                "since=2026-12-02&until=2026-12-01",
                "the time range is empty",
            ),
            ("before=abc", "the page cursor \"abc\" is not a delivery id"),
            ("before=-3", "is not a delivery id"),
        ] {
            let problem = filter(query).unwrap_err();
            assert!(problem.contains(said), "{query}: {problem}");
        }
    }
}
