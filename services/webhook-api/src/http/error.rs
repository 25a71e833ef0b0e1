//! The one HTTP error type: each variant knows its status, its code and its public message.
//! 4xx tells the sender not to retry, 5xx tells it to retry.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

use crate::store::StoreError;
use crate::verify::VerifyError;

pub type HttpResponse = Response<Full<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for {0}")]
    NotFound(String),
    #[error("{0}")]
    UnknownAvatar(String),
    #[error("method not allowed; this path accepts {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("this route needs an operator token: Authorization: Bearer <token>")]
    Unauthorized,
    #[error("the token {token:?} lacks the scope {scope:?}")]
    Forbidden { token: String, scope: &'static str },
    #[error("{what}: at most {limit} a minute; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        what: &'static str,
        limit: u32,
        retry_after: std::time::Duration,
    },
    #[error("{0}")]
    Signature(#[from] VerifyError),
    #[error("the request was not received within {0} s")]
    RequestTimeout(u64),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) | ApiError::UnknownAvatar(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Signature(VerifyError::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Signature(_) => StatusCode::UNAUTHORIZED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(StoreError::Rejected(_)) => StatusCode::BAD_REQUEST,
            ApiError::Store(StoreError::Unexpected(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownAvatar(_) => "avatar_not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Signature(VerifyError::KeysUnavailable) => "signature_keys_unavailable",
            ApiError::Signature(VerifyError::Unsigned) => "missing_signature",
            ApiError::Signature(_) => "invalid_signature",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            ApiError::Store(StoreError::Rejected(_)) => "unstorable_body",
            ApiError::Store(StoreError::Unexpected(_)) => "internal_error",
        }
    }

    /// What the caller is told. Database details stay in the log.
    fn public_message(&self) -> String {
        match self {
            ApiError::Store(StoreError::Unavailable(_)) => {
                "the database is unavailable; nothing was recorded, retry later".into()
            }
            ApiError::Store(StoreError::Unexpected(_)) => {
                "internal error; nothing was acknowledged, retry later".into()
            }
            other => other.to_string(),
        }
    }

    /// Logs the error, then answers it.
    pub fn into_response(self) -> HttpResponse {
        if self.status().is_server_error() {
            tracing::error!(error = %self, code = self.code(), "request failed");
        } else {
            tracing::info!(error = %self, code = self.code(), "request refused");
        }
        self.into_unlogged_response()
    }

    /// The answer alone, for a caller that logs the error with the answer itself.
    pub fn into_unlogged_response(self) -> HttpResponse {
        let status = self.status();
        let mut body =
            serde_json::json!({ "error": self.code(), "message": self.public_message() });
        if let ApiError::RateLimited {
            limit, retry_after, ..
        } = &self
        {
            body["limit_per_minute"] = (*limit).into();
            body["retry_after_secs"] = retry_after.as_secs().max(1).into();
        }
        let mut response = json_response(status, &body);
        let headers = response.headers_mut();
        match &self {
            ApiError::RateLimited {
                limit, retry_after, ..
            } => {
                headers.insert(header::RETRY_AFTER, retry_after.as_secs().max(1).into());
                headers.insert("ratelimit-limit", (*limit).into());
                headers.insert("ratelimit-remaining", 0.into());
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, header::HeaderValue::from_static(allow));
            }
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"webhook-operators\""),
                );
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            }
            _ => {}
        }
        response
    }
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    json_text(status, body.to_string())
}

/// A JSON answer already written out.
pub fn json_text(status: StatusCode, body: String) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}
