//! FAL's CDN → S3, streamed: the download feeds multipart parts while the previous part
//! uploads, so one copy holds at most two parts in memory whatever the file's size.

mod address;
mod multipart;
pub mod policy;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use bytes::BytesMut;
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};

use crate::config::FilesConfig;
use crate::telemetry;
use multipart::MultipartUpload;
use policy::{FetchPolicy, JobFile};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CopyError {
    /// The file can never be copied as asked (bad URL, size mismatch, 404): no retry.
    #[error("{0}")]
    Permanent(String),
    /// Network, 5xx, S3 trouble: worth another attempt later.
    #[error("{0}")]
    Transient(String),
}

/// Where a copy reports each multipart upload it starts, before any part is sent, so that an
/// attempt that dies can have its upload aborted by the next one.
pub trait UploadJournal: Sync {
    fn started(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl std::future::Future<Output = Result<(), CopyError>> + Send;
}

/// A multipart upload that an earlier attempt started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenUpload {
    pub key: String,
    pub upload_id: String,
}

/// What landed in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

pub struct Copier {
    http: reqwest::Client,
    s3: aws_sdk_s3::Client,
    bucket: String,
    policy: Arc<FetchPolicy>,
    part_size: usize,
    read_timeout: Duration,
}

impl Copier {
    pub fn new(config: &FilesConfig) -> Self {
        let policy = Arc::new(FetchPolicy::new(config));
        let redirect_policy = policy.clone();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .dns_resolver(Arc::new(address::PublicResolver {
                allow_private: policy.allow_private_addresses(),
            }))
            // Every hop must pass the same rules as the first URL.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("more than 5 redirects");
                }
                match redirect_policy.check(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(reason) => attempt.error(format!("redirected to a refused URL: {reason}")),
                }
            }))
            .build()
            .expect("a reqwest client with rustls builds");
        Self {
            http,
            s3: s3_client(config),
            bucket: config.s3.bucket.clone(),
            policy,
            part_size: config.part_size,
            read_timeout: config.read_timeout,
        }
    }

    /// Creates the bucket when it is missing.
    pub async fn ensure_bucket(&self) -> Result<(), CopyError> {
        if self
            .s3
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self.s3.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => {
                tracing::info!(bucket = %self.bucket, "created bucket");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(s3_error("creating the bucket", e)),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub async fn copy(
        &self,
        file: &JobFile,
        key: &str,
        journal: &impl UploadJournal,
    ) -> Result<Stored, CopyError> {
        let source = &file.source;
        let url = Url::parse(&source.url).map_err(|e| {
            CopyError::Permanent(format!("{} URL is not a URL: {e}", file.kind.as_str()))
        })?;
        self.policy.check(&url).map_err(CopyError::Permanent)?;

        let response = self.http.get(url).send().await.map_err(download_error)?;
        check_status(response.status())?;
        let max = self.policy.max_bytes;
        if let Some(length) = response.content_length() {
            if length > max {
                return Err(CopyError::Permanent(format!(
                    "file is {length} bytes, over the limit of {max} (FILE_MAX_BYTES)"
                )));
            }
            check_declared_size(source.file_size, length)?;
        }

        let mut upload = MultipartUpload::new(self.s3.clone(), &self.bucket, key);
        match self.stream(response, file, key, &mut upload, journal).await {
            Ok(stored) => {
                self.verify_stored(&stored).await?;
                Ok(stored)
            }
            Err(e) => {
                upload.abort().await;
                Err(e)
            }
        }
    }

    /// The download into `upload`, part by part, hashed on the way.
    async fn stream(
        &self,
        mut response: reqwest::Response,
        file: &JobFile,
        key: &str,
        upload: &mut MultipartUpload,
        journal: &impl UploadJournal,
    ) -> Result<Stored, CopyError> {
        let max = self.policy.max_bytes;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buffer = BytesMut::with_capacity(self.part_size);
        loop {
            let chunk = tokio::time::timeout(self.read_timeout, response.chunk())
                .await
                .map_err(|_| {
                    CopyError::Transient(format!(
                        "download stalled: no bytes for {:?} after {size} bytes",
                        self.read_timeout
                    ))
                })?
                .map_err(download_error)?;
            let Some(chunk) = chunk else { break };
            size += chunk.len() as u64;
            if size > max {
                return Err(CopyError::Permanent(format!(
                    "file is over the limit of {max} bytes (FILE_MAX_BYTES)"
                )));
            }
            hasher.update(&chunk);
            // Parts are filled to exactly `part_size` in buffers allocated at that size, so no
            // buffer ever grows (and doubles) past it.
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = rest.len().min(self.part_size - buffer.len());
                buffer.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buffer.len() == self.part_size {
                    let part =
                        std::mem::replace(&mut buffer, BytesMut::with_capacity(self.part_size));
                    upload.send_part(part.freeze(), journal).await?;
                }
            }
        }
        check_declared_size(file.source.file_size, size)?;
        upload.finish(buffer.freeze(), journal).await?;
        Ok(Stored {
            key: key.to_string(),
            sha256: hex::encode(hasher.finalize()),
            size,
        })
    }

    /// The object as S3 now reports it must have the size we streamed.
    async fn verify_stored(&self, stored: &Stored) -> Result<(), CopyError> {
        let head = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&stored.key)
            .send()
            .await
            .map_err(|e| s3_error("checking the stored object", e))?;
        match head.content_length() {
            Some(length) if length as u64 == stored.size => Ok(()),
            other => Err(CopyError::Transient(format!(
                "stored object has {other:?} bytes, expected {}",
                stored.size
            ))),
        }
    }

    /// Aborts an upload an earlier attempt left open. An upload that is already gone is fine.
    pub async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), CopyError> {
        let aborted = self
            .s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_upload()) => Ok(()),
            Err(e) => Err(s3_error("aborting a stale multipart upload", e)),
        }
    }
}

/// The S3 client for `MINIO_*`: path-style addressing, static credentials.
pub fn s3_client(config: &FilesConfig) -> aws_sdk_s3::Client {
    let s3 = &config.s3;
    let credentials = Credentials::new(
        s3.access_key.expose(),
        s3.secret_key.expose(),
        None,
        None,
        "webhook-api-config",
    );
    let sdk_config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&s3.endpoint_url)
        .region(Region::new(s3.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(true)
        // MinIO and other S3 servers differ on the SDK's newer default checksums; sha256 is
        // checked by us while streaming.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(120))
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(sdk_config)
}

fn check_status(status: StatusCode) -> Result<(), CopyError> {
    if status.is_success() {
        return Ok(());
    }
    let message = format!("CDN answered {status}");
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(CopyError::Transient(message))
    } else {
        Err(CopyError::Permanent(message))
    }
}

fn check_declared_size(declared: Option<u64>, actual: u64) -> Result<(), CopyError> {
    match declared {
        Some(declared) if declared != actual => Err(CopyError::Permanent(format!(
            "declared file_size {declared} does not match the {actual} bytes the CDN sent"
        ))),
        _ => Ok(()),
    }
}

fn download_error(e: reqwest::Error) -> CopyError {
    let message = format!("download failed: {}", telemetry::error_chain(&e));
    if e.is_redirect() || e.is_builder() || refused_address(&e) {
        CopyError::Permanent(message)
    } else {
        CopyError::Transient(message)
    }
}

/// The name resolved to no public address: asking again will not change that.
fn refused_address(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(cause) = source {
        if cause.is::<address::NotPublic>() {
            return true;
        }
        source = cause.source();
    }
    false
}

pub(super) fn s3_error<E: std::error::Error + 'static>(what: &str, e: E) -> CopyError {
    CopyError::Transient(format!("S3 {what}: {}", telemetry::error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_split_into_retry_and_give_up() {
        assert!(check_status(StatusCode::OK).is_ok());
        for retry in [500, 502, 503, 429, 408] {
            assert!(matches!(
                check_status(StatusCode::from_u16(retry).unwrap()),
                Err(CopyError::Transient(_))
            ));
        }
        for give_up in [403, 404, 410] {
            assert!(matches!(
                check_status(StatusCode::from_u16(give_up).unwrap()),
                Err(CopyError::Permanent(_))
            ));
        }
    }

    #[test]
    fn declared_size_must_match() {
        assert!(check_declared_size(None, 10).is_ok());
        assert!(check_declared_size(Some(10), 10).is_ok());
        assert!(matches!(
            check_declared_size(Some(11), 10),
            Err(CopyError::Permanent(_))
        ));
    }
}
