//! Conversions between `s3s`'s types and the client library's, shared by the S3 operations
//! (`s3`) and the multipart uploads (`multipart`): our errors as S3 error codes, times, user
//! metadata, request bodies as readers, and S3's size limit.

use std::time::{Duration, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use s3s::dto::{Metadata, StreamingBlob, Timestamp};
use s3s::{s3_error, S3Error, S3ErrorCode};
use tokio::io::AsyncRead;

use crate::client::bucket::ObjectMeta;
use crate::error::Error;
use crate::record::RecordError;

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
