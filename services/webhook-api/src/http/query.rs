//! Query strings of plain values (ids, numbers, source names, `training_type`): nothing here
//! needs percent-decoding.

use super::error::ApiError;

/// The raw value of the first `name=` in a query string (empty when given empty).
pub fn param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A whole number, when given and not empty.
pub fn optional_number(query: Option<&str>, name: &str) -> Result<Option<i64>, ApiError> {
    param(query, name)
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            raw.parse()
                .map_err(|_| ApiError::BadRequest(format!("{name} must be a whole number")))
        })
        .transpose()
}

/// A whole number within `range`, `default` when not given.
pub fn number(
    query: Option<&str>,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, ApiError> {
    let value = optional_number(query, name)?.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::BadRequest(format!(
            "{name} must be between {} and {}",
            range.start(),
            range.end()
        )))
    }
}
