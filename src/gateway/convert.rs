//! Conversions between `s3s`'s types and the client library's, shared by the S3 operations
//! (`s3`) and the multipart uploads (`multipart`): our errors as S3 error codes, times, user
//! metadata, request bodies as readers, object reads as response bodies, and S3's size limit.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::{SinkExt, StreamExt, TryStreamExt};
use s3s::dto::{Metadata, StreamingBlob, Timestamp};
use s3s::{s3_error, S3Error, S3ErrorCode};
use tokio::io::AsyncRead;

use crate::client::bucket::ObjectMeta;
use crate::client::seal::ContentKey;
use crate::client::Client;
use crate::error::Error;
use crate::record::{FileRecord, RecordError};

/// Chunks of a read in flight between the swarm and the HTTP body.
const READ_AHEAD: usize = 4;

/// The largest single PUT (S3's limit); bigger objects go up in parts.
pub const MAX_PUT: u64 = 5 << 30;

/// Our errors as S3's.
pub fn s3_err(e: Error) -> S3Error {
    match e {
        Error::NoSuchBucket(b) => s3_error!(NoSuchBucket, "no bucket {b}"),
        Error::NotFound(n) | Error::Deleted { name: n, .. } => s3_error!(NoSuchKey, "no {n}"),
        Error::BucketNotEmpty { name, .. } => s3_error!(BucketNotEmpty, "{name} is not empty"),
        Error::BucketExists { yours: true, .. } => s3_error!(BucketAlreadyOwnedByYou),
        Error::BucketExists { .. } => s3_error!(BucketAlreadyExists),
        Error::Rejected(RecordError::PermissionDenied { name, owner }) => {
            s3_error!(AccessDenied, "{name} is owned by {owner}")
        }
        Error::NoCapability(n) => s3_error!(AccessDenied, "{n} is sealed for its owner"),
        Error::Rejected(RecordError::Conflict { .. }) => {
            s3_error!(
                OperationAborted,
                "a concurrent write to this key won; retry"
            )
        }
        Error::Invalid(m) => s3_error!(InvalidArgument, "{m}"),
        Error::Unreachable { .. } | Error::Network(_) => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, e.to_string())
        }
        other => S3Error::with_message(S3ErrorCode::InternalError, other.to_string()),
    }
}

pub fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// An object's user metadata, sorted (as the index keeps it).
pub fn object_meta(content_type: Option<String>, meta: Option<Metadata>) -> ObjectMeta {
    let mut meta: Vec<(String, String)> = meta.unwrap_or_default().into_iter().collect();
    meta.sort();
    ObjectMeta {
        content_type,
        meta,
        etag: None,
    }
}

/// A request body as a reader.
pub fn body_reader(body: Option<StreamingBlob>) -> impl AsyncRead + Unpin + Send {
    let stream = match body {
        Some(b) => b.map_err(std::io::Error::other).left_stream(),
        None => futures::stream::empty().right_stream(),
    };
    tokio_util::io::StreamReader::new(stream)
}

/// Bytes `range` of the content of `record` as a response body. The swarm read runs in its
/// own task, a few chunks ahead of the body; a client that goes away drops the body and the
/// task stops at its next send. A read that fails ends the body with the error.
pub fn read_body(
    client: Arc<Client>,
    record: FileRecord,
    key: Option<ContentKey>,
    range: Range<u64>,
) -> StreamingBlob {
    let (mut tx, rx) = futures::channel::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    tokio::spawn(async move {
        let mut chunks = std::pin::pin!(client.content_range(&record, key, range));
        while let Some(chunk) = chunks.next().await {
            let item = chunk
                .map(Bytes::from)
                .map_err(|e| std::io::Error::other(e.to_string()));
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    StreamingBlob::wrap(rx)
}
