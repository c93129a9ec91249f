//! The S3 operations, on the client library: `s3s` parses requests and checks SigV4; each
//! operation here runs as the client identity its access key maps to (`keys`), through this
//! node's own access path, exactly as the CLI would. Buckets and listing are the swarm's
//! bucket index (`client::bucket`), so any node's `--s3` serves the same buckets.
//!
//! Reads of a bucket are its owner's unless the bucket is public-read (then anyone's, even
//! unsigned); writes are always the owner's: a key of another identity gets AccessDenied.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use super::convert::{body_reader, object_meta, read_body, s3_err, timestamp, MAX_PUT};
use super::keys::KeyStore;
use super::multipart::Uploads;
use crate::client::bucket::index::{ListQuery, ObjectEntry, MAX_LIST_KEYS};
use crate::client::bucket::{BucketInfo, ObjectMeta};
use crate::client::Client;
use crate::error::Error;

/// The S3 service of one node.
pub struct SwarmS3 {
    node: Multiaddr,
    swarm_key: Option<PreSharedKey>,
    pub(super) keys: Arc<KeyStore>,
    pub(super) uploads: Uploads,
    clients: std::sync::Mutex<HashMap<PeerId, Arc<Client>>>,
    anonymous: Keypair,
}

impl SwarmS3 {
    pub fn new(
        node: Multiaddr,
        swarm_key: Option<PreSharedKey>,
        keys: Arc<KeyStore>,
        uploads: Uploads,
    ) -> Self {
        SwarmS3 {
            node,
            swarm_key,
            keys,
            uploads,
            clients: std::sync::Mutex::new(HashMap::new()),
            anonymous: Keypair::generate_ed25519(),
        }
    }

    /// The client a request acts as: its key's identity, or an anonymous one.
    pub(super) async fn client<T>(&self, req: &S3Request<T>) -> S3Result<Arc<Client>> {
        let identity = match &req.credentials {
            Some(c) => self
                .keys
                .lookup(&c.access_key)
                .map(|(_, k)| k)
                .ok_or_else(|| s3_error!(InvalidAccessKeyId))?,
            None => self.anonymous.clone(),
        };
        let peer = identity.public().to_peer_id();
        let cached = self
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .cloned();
        if let Some(c) = cached {
            return Ok(c);
        }
        // Connect outside the lock; two requests racing here make two sessions, one kept.
        let client = Client::connect_with(self.node.clone(), identity, self.swarm_key)
            .await
            .map_err(|e| s3_error!(ServiceUnavailable, "cannot reach this node: {e}"))?;
        let client = Arc::new(client);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        Ok(clients.entry(peer).or_insert(client).clone())
    }

    /// The bucket, if `client` may read it (its owner, or anyone when public-read).
    async fn readable(&self, client: &Client, bucket: &str) -> S3Result<BucketInfo> {
        let info = client.bucket(bucket).await.map_err(s3_err)?;
        if info.owner != client.peer_id() && !info.meta.public_read {
            return Err(s3_error!(AccessDenied, "bucket {bucket} is not yours"));
        }
        Ok(info)
    }
}

fn etag_of(e: &ObjectEntry) -> Option<ETag> {
    e.etag.clone().map(ETag::Strong)
}

fn metadata_of(e: &ObjectEntry) -> Option<Metadata> {
    (!e.meta.is_empty()).then(|| e.meta.iter().cloned().collect())
}

/// S3's conditional read headers against an object's ETag: `Err` with 304 or 412.
fn check_conditions(
    entry: &ObjectEntry,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<()> {
    let ours = etag_of(entry);
    let matches = |c: &ETagCondition| match (c, &ours) {
        (ETagCondition::Any, _) => true,
        (ETagCondition::ETag(t), Some(o)) => t.value() == o.value(),
        (ETagCondition::ETag(_), None) => false,
    };
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(PreconditionFailed));
        }
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(S3Error::new(S3ErrorCode::NotModified));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for SwarmS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let client = self.client(&req).await?;
        let buckets = client.list_buckets().await.map_err(s3_err)?;
        let buckets = buckets
            .into_iter()
            .map(|(name, at)| Bucket {
                name: Some(name),
                creation_date: Some(timestamp(at)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                id: Some(client.peer_id().to_string()),
                display_name: None,
            }),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let client = self.client(&req).await?;
        let public = matches!(
            req.input.acl.as_ref().map(|a| a.as_str()),
            Some("public-read")
        );
        let opts = crate::client::BucketOptions {
            public_read: public,
            ..Default::default()
        };
        client
            .create_bucket(&req.input.bucket, opts)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let client = self.client(&req).await?;
        client
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let client = self.client(&req).await?;
        self.readable(&client, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let client = self.client(&req).await?;
        self.readable(&client, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let client = self.client(&req).await?;
        let input = req.input;
        if input.content_length.is_some_and(|n| n as u64 > MAX_PUT) {
            return Err(s3_error!(EntityTooLarge, "a single PUT is at most 5 GiB"));
        }
        let meta = object_meta(input.content_type, input.metadata);
        let reader = body_reader(input.body);
        let (_, entry) = client
            .put_object(&input.bucket, &input.key, reader, meta, None)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: etag_of(&entry),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let client = self.client(&req).await?;
        let input = req.input;
        let info = self.readable(&client, &input.bucket).await?;
        let (_, entry) = client
            .head_object(&input.bucket, &input.key)
            .await
            .map_err(s3_err)?;
        check_conditions(
            &entry,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;
        let name = crate::client::bucket::index::object_name(
            &info.owner.to_base58(),
            &info.name,
            &input.key,
        );
        let record = client.record_for_get(&name, None).await.map_err(s3_err)?;
        let key = client.reader_key(&record, None).map_err(s3_err)?;
        let size = record.plain_size();
        let (range, content_range) = match input.range {
            None => (0..size, None),
            Some(r) => {
                let range = r.check(size)?;
                let shown = format!(
                    "bytes {}-{}/{size}",
                    range.start,
                    range.end.saturating_sub(1)
                );
                (range, Some(shown))
            }
        };
        let length = range.end - range.start;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(read_body(client.clone(), record, key, range)),
            content_length: Some(length as i64),
            content_range,
            content_type: entry.content_type.clone(),
            e_tag: etag_of(&entry),
            last_modified: Some(timestamp(entry.modified_ms)),
            metadata: metadata_of(&entry),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let client = self.client(&req).await?;
        let input = req.input;
        self.readable(&client, &input.bucket).await?;
        let (_, entry) = client
            .head_object(&input.bucket, &input.key)
            .await
            .map_err(s3_err)?;
        check_conditions(
            &entry,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
        )?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(entry.size as i64),
            content_type: entry.content_type.clone(),
            e_tag: etag_of(&entry),
            last_modified: Some(timestamp(entry.modified_ms)),
            metadata: metadata_of(&entry),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let client = self.client(&req).await?;
        client
            .delete_object(&req.input.bucket, &req.input.key)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let client = self.client(&req).await?;
        let bucket = req.input.bucket.clone();
        let quiet = req.input.delete.quiet.unwrap_or(false);
        let results: Vec<(String, Result<Option<u64>, Error>)> =
            futures::stream::iter(req.input.delete.objects)
                .map(|o| {
                    let client = &client;
                    let bucket = &bucket;
                    async move {
                        let r = client.delete_object(bucket, &o.key).await;
                        (o.key, r)
                    }
                })
                .buffer_unordered(8)
                .collect()
                .await;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for (key, r) in results {
            match r {
                Ok(_) if !quiet => deleted.push(DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Ok(_) => {}
                Err(e) => {
                    let e = s3_err(e);
                    errors.push(s3s::dto::Error {
                        code: Some(e.code().as_str().to_string()),
                        key: Some(key),
                        message: e.message().map(str::to_string),
                        version_id: None,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let client = self.client(&req).await?;
        let input = req.input;
        let CopySource::Bucket { bucket, key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented, "copy from an access point"));
        };
        let info = self.readable(&client, bucket).await?;
        let (_, source) = client.head_object(bucket, key).await.map_err(s3_err)?;
        let name = crate::client::bucket::index::object_name(&info.owner.to_base58(), bucket, key);
        let record = client.record_for_get(&name, None).await.map_err(s3_err)?;
        let content_key = client.reader_key(&record, None).map_err(s3_err)?;
        // S3 copies the metadata unless told to replace it.
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        let meta = if replace {
            object_meta(input.content_type, input.metadata)
        } else {
            ObjectMeta {
                content_type: source.content_type.clone(),
                meta: source.meta.clone(),
                etag: None,
            }
        };
        let stream = client
            .blocks_opened(&record, content_key)
            .map_ok(Bytes::from)
            .map_err(|e| std::io::Error::other(e.to_string()));
        let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
        let (_, entry) = client
            .put_object(&input.bucket, &input.key, reader, meta, None)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: etag_of(&entry),
                last_modified: Some(timestamp(entry.modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let client = self.client(&req).await?;
        let input = req.input;
        self.readable(&client, &input.bucket).await?;
        let after = match &input.continuation_token {
            Some(t) => Some(decode_token(t)?),
            None => input.start_after.clone(),
        };
        let max_keys = input.max_keys.unwrap_or(MAX_LIST_KEYS as i32).max(0) as usize;
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            after,
            max_keys,
        };
        let listing = if max_keys == 0 {
            Default::default()
        } else {
            client
                .list_objects(&input.bucket, &query)
                .await
                .map_err(s3_err)?
        };
        let key_count = (listing.objects.len() + listing.common_prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter,
            max_keys: Some(max_keys.min(MAX_LIST_KEYS) as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            start_after: input.start_after,
            is_truncated: Some(listing.next_after.is_some()),
            next_continuation_token: listing.next_after.as_deref().map(encode_token),
            contents: Some(listing.objects.iter().map(s3_object).collect()),
            common_prefixes: Some(common_prefixes(listing.common_prefixes)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let client = self.client(&req).await?;
        let input = req.input;
        self.readable(&client, &input.bucket).await?;
        let max_keys = input.max_keys.unwrap_or(MAX_LIST_KEYS as i32).max(0) as usize;
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            after: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys,
        };
        let listing = if max_keys == 0 {
            Default::default()
        } else {
            client
                .list_objects(&input.bucket, &query)
                .await
                .map_err(s3_err)?
        };
        let truncated = listing.next_after.is_some();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: input.prefix,
            delimiter: input.delimiter.clone(),
            marker: input.marker,
            max_keys: Some(max_keys.min(MAX_LIST_KEYS) as i32),
            is_truncated: Some(truncated),
            // S3 sends NextMarker only with a delimiter; clients use the last key otherwise.
            next_marker: listing.next_after.filter(|_| input.delimiter.is_some()),
            contents: Some(listing.objects.iter().map(s3_object).collect()),
            common_prefixes: Some(common_prefixes(listing.common_prefixes)),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let client = self.client(&req).await?;
        super::multipart::create(&client, &self.uploads, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let client = self.client(&req).await?;
        super::multipart::upload_part(&client, &self.uploads, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let client = self.client(&req).await?;
        super::multipart::complete(&client, &self.uploads, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let client = self.client(&req).await?;
        super::multipart::abort(&client, &self.uploads, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let client = self.client(&req).await?;
        super::multipart::list_parts(&client, &self.uploads, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let client = self.client(&req).await?;
        super::multipart::list_uploads(&client, &self.uploads, req).await
    }
}

fn s3_object(e: &ObjectEntry) -> Object {
    Object {
        key: Some(e.key.clone()),
        size: Some(e.size as i64),
        e_tag: etag_of(e),
        last_modified: Some(timestamp(e.modified_ms)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

fn common_prefixes(prefixes: Vec<String>) -> Vec<CommonPrefix> {
    prefixes
        .into_iter()
        .map(|p| CommonPrefix { prefix: Some(p) })
        .collect()
}

/// Continuation tokens are opaque to clients: the position, base64.
fn encode_token(after: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after)
}

fn decode_token(token: &str) -> S3Result<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "the continuation token is not one of ours"))
}
