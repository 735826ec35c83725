//! The s3 destination's requests for the shared upload driver and resumable download.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::StreamExt;

use super::{content_md5, part_size, MAX_PARTS, S3};
use crate::destination::client::in_flight_limit;
use crate::destination::client::{ByteRange, Multipart, Opened, PartInfo, RangeRead};
use crate::destination::retry::retry_as as retry;
use crate::destination::{DestinationError, ErrorKind, Key};

#[async_trait]
impl Multipart for S3 {
    type Upload = String;
    type Part = CompletedPart;

    fn destination(&self) -> &str {
        &self.name
    }

    fn part_size(&self, number: u32) -> usize {
        part_size(self.part_size, number) as usize
    }

    fn in_flight(&self, number: u32) -> usize {
        in_flight_limit(
            self.concurrency,
            self.part_size,
            part_size(self.part_size, number),
        )
    }

    fn max_parts(&self) -> u32 {
        MAX_PARTS
    }

    fn too_many_parts(&self) -> String {
        format!(
            "the stream is larger than S3's {MAX_PARTS} parts allow with part_size = {} \
             bytes; raise part_size",
            self.part_size
        )
    }

    async fn put_whole(&self, key: &Key, data: Bytes) -> Result<(), DestinationError> {
        self.put_single(key, data, self.storage_class.clone()).await
    }

    async fn start_upload(&self, key: &Key) -> Result<String, DestinationError> {
        retry(&format!("starting the upload of {key}"), || async {
            let out = self
                .client
                .create_multipart_upload()
                .bucket(&*self.bucket)
                .key(key.as_str())
                .set_server_side_encryption(self.sse.clone())
                .set_ssekms_key_id(self.kms_key_id.clone())
                .set_storage_class(self.storage_class.clone())
                .send()
                .await
                .map_err(|e| self.sdk_error("storing", Some(key), e))?;
            out.upload_id.ok_or_else(|| {
                self.error(
                    "storing",
                    Some(key),
                    ErrorKind::Other,
                    "CreateMultipartUpload returned no upload id".into(),
                )
            })
        })
        .await
    }

    /// Retries transient failures with the same buffered bytes.
    async fn put_part(
        &self,
        key: &Key,
        upload_id: &String,
        part: PartInfo,
        body: Bytes,
    ) -> Result<CompletedPart, DestinationError> {
        let md5 = content_md5(&body).await;
        let number = part.number as i32;
        retry(&format!("uploading part {number} of {key}"), || async {
            let out = self
                .client
                .upload_part()
                .bucket(&*self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .part_number(number)
                .content_length(body.len() as i64)
                .content_md5(&md5)
                .body(Body::from(body.clone()))
                // Hashing every part for the signature costs a core at these speeds;
                // TLS protects it in transit and the copy's sha256 is checked on restore.
                // (botocore does the same over https.)
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| self.sdk_error("storing", Some(key), e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build())
        })
        .await
    }

    async fn complete_upload(
        &self,
        key: &Key,
        upload_id: &String,
        parts: Vec<CompletedPart>,
    ) -> Result<(), DestinationError> {
        let parts = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        retry(&format!("completing the upload of {key}"), || async {
            self.client
                .complete_multipart_upload()
                .bucket(&*self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .multipart_upload(parts.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| self.sdk_error("storing", Some(key), e))
        })
        .await
    }

    async fn abort_upload(&self, key: &Key, upload_id: &String) -> Result<(), DestinationError> {
        self.abort(key, upload_id).await
    }

    /// Remembers an upload whose abort failed, for the next discard of its key.
    fn abort_failed(&self, key: &Key, upload_id: &String, e: &DestinationError) {
        tracing::warn!(
            "could not abort the multipart upload of {key}: {e}; its parts stay in the bucket \
             (invisible, but billed) until the next sweep (retention, start) or a lifecycle \
             rule removes them"
        );
        self.unaborted
            .lock()
            .expect("unaborted lock")
            .push((key.to_string(), upload_id.to_string()));
    }
}

#[async_trait]
impl RangeRead for S3 {
    async fn open_range(
        &self,
        key: &Key,
        range: ByteRange,
        etag: Option<&str>,
    ) -> Result<Opened, DestinationError> {
        let out = self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(key.as_str())
            .set_range(range.header())
            // A resumed read must continue the same object, not a newer one.
            .set_if_match(etag.map(str::to_string))
            .send()
            .await
            .map_err(|e| self.sdk_error("reading", Some(key), e))?;
        let body = futures::stream::unfold(out.body, |mut body| async move {
            let next = body.next().await?;
            Some((next.map_err(Into::into), body))
        });
        Ok(Opened {
            body: body.boxed(),
            length: out.content_length.and_then(|l| u64::try_from(l).ok()),
            version: out.e_tag,
        })
    }
}
