//! One S3 object written as it downloads: a multipart upload journalled before its first
//! part, so the next attempt can abort what a dead one left open.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::task::JoinHandle;

use super::{s3_error, CopyError, UploadJournal};

/// A multipart upload started on the first full part; small files become one `PutObject`.
/// At most one part uploads while the next one is being downloaded.
pub(super) struct MultipartUpload {
    s3: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    in_flight: Option<JoinHandle<Result<CompletedPart, CopyError>>>,
}

impl MultipartUpload {
    pub(super) fn new(s3: aws_sdk_s3::Client, bucket: &str, key: &str) -> Self {
        Self {
            s3,
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: None,
            parts: Vec::new(),
            in_flight: None,
        }
    }

    pub(super) async fn send_part(
        &mut self,
        body: Bytes,
        journal: &impl UploadJournal,
    ) -> Result<(), CopyError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let created = self
                    .s3
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&self.key)
                    .content_type("application/octet-stream")
                    .send()
                    .await
                    .map_err(|e| s3_error("starting the multipart upload", e))?;
                let id = created
                    .upload_id()
                    .ok_or_else(|| CopyError::Transient("S3 returned no upload id".into()))?
                    .to_string();
                self.upload_id = Some(id.clone());
                journal.started(&self.key, &id).await?;
                id
            }
        };
        self.wait_for_part_in_flight().await?;
        let part_number = self.parts.len() as i32 + 1;
        let request = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body));
        self.in_flight = Some(tokio::spawn(async move {
            let uploaded = request
                .send()
                .await
                .map_err(|e| s3_error("uploading a part", e))?;
            Ok(CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .build())
        }));
        Ok(())
    }

    async fn wait_for_part_in_flight(&mut self) -> Result<(), CopyError> {
        if let Some(handle) = self.in_flight.take() {
            let part = handle
                .await
                .map_err(|e| CopyError::Transient(format!("part upload task failed: {e}")))??;
            self.parts.push(part);
        }
        Ok(())
    }

    pub(super) async fn finish(
        &mut self,
        last: Bytes,
        journal: &impl UploadJournal,
    ) -> Result<(), CopyError> {
        if self.upload_id.is_none() {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type("application/octet-stream")
                .body(ByteStream::from(last))
                .send()
                .await
                .map_err(|e| s3_error("uploading the object", e))?;
            return Ok(());
        }
        if !last.is_empty() {
            self.send_part(last, journal).await?;
        }
        self.wait_for_part_in_flight().await?;
        self.s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_upload_id(self.upload_id.clone())
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("completing the multipart upload", e))?;
        self.upload_id = None;
        Ok(())
    }

    /// Leaves nothing partial behind after a failure.
    pub(super) async fn abort(&mut self) {
        if let Some(handle) = self.in_flight.take() {
            handle.abort();
        }
        if let Some(upload_id) = self.upload_id.take() {
            let aborted = self
                .s3
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                // The next attempt's stale-upload sweep gets another chance.
                tracing::warn!(key = %self.key, error = %e, "could not abort multipart upload");
            }
        }
    }
}
