//! GitHub's REST API for a webhook's deliveries: `GET /{hook}/deliveries` (newest first, paged
//! by the `cursor` of the `Link` header's next page) and `POST /{hook}/deliveries/{id}/attempts`
//! (a redelivery, answered 202).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::Secret;

/// At most this many pages of 100 deliveries per run.
const MAX_PAGES: usize = 10;

/// One attempt of a delivery as GitHub lists it; a redelivery keeps its `guid` (our delivery
/// id, `X-GitHub-Delivery`) and gets an `id` of its own.
#[derive(Debug, Clone, Deserialize)]
pub struct HookDelivery {
    pub id: i64,
    pub guid: String,
    pub delivered_at: DateTime<Utc>,
    /// Our answer; 0 when GitHub got none (timeout, refused connection).
    #[serde(default)]
    pub status_code: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub's API is unavailable: {0}")]
    Unavailable(String),
    /// 401, 403, 404, 422…: the token, the hook's address, or GitHub's rate limit.
    #[error("GitHub's API answered {status}: {message}")]
    Refused { status: u16, message: String },
}

pub struct GithubHooks {
    http: reqwest::Client,
    base: String,
    authorization: String,
}

impl GithubHooks {
    pub fn new(base: &str, token: &Secret, timeout: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("webhook-api/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("an HTTP client with a timeout builds"),
            base: base.trim_end_matches('/').to_string(),
            authorization: format!("Bearer {}", token.expose()),
        }
    }

    /// The hook's delivery attempts since `since`, newest first.
    pub async fn deliveries_since(
        &self,
        hook: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<HookDelivery>, GithubError> {
        let mut deliveries = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut request = self
                .request(reqwest::Method::GET, &format!("{hook}/deliveries"))
                .query(&[("per_page", "100")]);
            if let Some(cursor) = &cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            let response = send(request).await?;
            cursor = next_cursor(response.headers());
            let body = response
                .bytes()
                .await
                .map_err(|e| GithubError::Unavailable(e.without_url().to_string()))?;
            let page: Vec<HookDelivery> = serde_json::from_slice(&body)
                .map_err(|e| GithubError::Unavailable(format!("unreadable deliveries: {e}")))?;
            let reached_since = page.iter().any(|d| d.delivered_at < since);
            deliveries.extend(page.into_iter().filter(|d| d.delivered_at >= since));
            if reached_since || cursor.is_none() {
                break;
            }
        }
        Ok(deliveries)
    }

    /// Asks GitHub to deliver attempt `delivery_id` again.
    pub async fn redeliver(&self, hook: &str, delivery_id: i64) -> Result<(), GithubError> {
        let path = format!("{hook}/deliveries/{delivery_id}/attempts");
        send(self.request(reqwest::Method::POST, &path))
            .await
            .map(drop)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/{path}", self.base))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("Authorization", &self.authorization)
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, GithubError> {
    let response = request
        .send()
        .await
        .map_err(|e| GithubError::Unavailable(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    if status.is_server_error() {
        return Err(GithubError::Unavailable(format!("{status} {message}")));
    }
    Err(GithubError::Refused {
        status: status.as_u16(),
        message,
    })
}

/// The `cursor` of the `Link` header's `rel="next"` page. Only the cursor is taken: the next
/// request is built on our own base URL, so the token never follows a link elsewhere.
fn next_cursor(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        url::Url::parse(target)
            .ok()?
            .query_pairs()
            .find(|(name, _)| name == "cursor")
            .map(|(_, cursor)| cursor.into_owned())
    })
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn the_next_pages_cursor_is_read_from_githubs_link_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "link",
            HeaderValue::from_static(
                "<https://api.github.com/repos/o/r/hooks/1/deliveries?per_page=100&cursor=v1_12>; \
                 rel=\"next\", <https://api.github.com/repos/o/r/hooks/1/deliveries?per_page=100>; \
                 rel=\"first\"",
            ),
        );
        assert_eq!(super::next_cursor(&headers).as_deref(), Some("v1_12"));
        headers.insert(
            "link",
            HeaderValue::from_static("<https://api.github.com/x?cursor=a>; rel=\"prev\""),
        );
        assert_eq!(super::next_cursor(&headers), None);
    }
}
