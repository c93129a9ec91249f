//! S3 multipart uploads, staged on this node's disk: each part streams to a file in
//! `s3-uploads/<upload id>/` (bounded memory whatever its size, its MD5 computed on the way),
//! and Complete streams the parts in order into one object put, then removes the staging
//! directory. An upload is completed on the node where it began (an S3 client talks to one
//! endpoint); staged uploads older than a week are swept when the server starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::convert::{body_reader, object_meta, s3_err, timestamp, MAX_PUT};
use crate::client::bucket::ObjectMeta;
use crate::client::Client;

/// Part numbers S3 allows.
const MAX_PART: i32 = 10_000;
/// The smallest part but the last (S3's rule; rclone and the AWS tools keep to it).
const MIN_PART: u64 = 5 << 20;
/// Staged uploads older than this are dropped.
const STALE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The staging directory of one node.
pub struct Uploads {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct UploadMeta {
    bucket: String,
    key: String,
    owner: String,
    content_type: Option<String>,
    meta: Vec<(String, String)>,
    created_ms: u64,
}

impl Uploads {
    pub fn new(data_dir: &Path) -> Self {
        Uploads {
            dir: data_dir.join("s3-uploads"),
        }
    }

    /// Removes staged uploads older than a week (abandoned by their clients).
    pub fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// The directory of `id`, which must look like one of ours (no path tricks).
    fn path(&self, id: &str) -> S3Result<PathBuf> {
        if id.len() != 32 || !id.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(s3_error!(NoSuchUpload));
        }
        Ok(self.dir.join(id))
    }

    /// The upload `id`, if `client` began it for `bucket`/`key`.
    async fn open(
        &self,
        id: &str,
        client: &Client,
        bucket: &str,
        key: &str,
    ) -> S3Result<(PathBuf, UploadMeta)> {
        let dir = self.path(id)?;
        let bytes = tokio::fs::read(dir.join("upload.json"))
            .await
            .map_err(|_| s3_error!(NoSuchUpload))?;
        let meta: UploadMeta =
            serde_json::from_slice(&bytes).map_err(|_| s3_error!(NoSuchUpload))?;
        if meta.owner != client.peer_id().to_string() {
            return Err(s3_error!(AccessDenied, "this upload is someone else's"));
        }
        if meta.bucket != bucket || meta.key != key {
            return Err(s3_error!(NoSuchUpload, "this upload is for another key"));
        }
        Ok((dir, meta))
    }
}

fn part_file(dir: &Path, n: i32) -> PathBuf {
    dir.join(format!("{n:05}.part"))
}

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=MAX_PART).contains(&n) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "part numbers are 1 to {MAX_PART}"
        ))
    }
}

pub async fn create(
    client: &Client,
    uploads: &Uploads,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    let info = client.bucket(&input.bucket).await.map_err(s3_err)?;
    if info.owner != client.peer_id() {
        return Err(s3_error!(
            AccessDenied,
            "bucket {} is not yours",
            input.bucket
        ));
    }
    crate::client::bucket::index::validate_key(&input.key)
        .map_err(|e| s3_error!(KeyTooLongError, "{e}"))?;
    let id = hex::encode(rand::random::<[u8; 16]>());
    let dir = uploads.path(&id)?;
    let m = object_meta(input.content_type, input.metadata);
    let meta = UploadMeta {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        owner: client.peer_id().to_string(),
        content_type: m.content_type,
        meta: m.meta,
        created_ms: crate::record::now_ms(),
    };
    let json = serde_json::to_vec(&meta).map_err(|e| s3_error!(InternalError, "{e}"))?;
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| s3_error!(InternalError, "cannot stage the upload: {e}"))?;
    tokio::fs::write(dir.join("upload.json"), json)
        .await
        .map_err(|e| s3_error!(InternalError, "cannot stage the upload: {e}"))?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(id),
        ..Default::default()
    }))
}

pub async fn upload_part(
    client: &Client,
    uploads: &Uploads,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let input = req.input;
    check_part_number(input.part_number)?;
    if input.content_length.is_some_and(|n| n as u64 > MAX_PUT) {
        return Err(s3_error!(EntityTooLarge, "a part is at most 5 GiB"));
    }
    let (dir, _) = uploads
        .open(&input.upload_id, client, &input.bucket, &input.key)
        .await?;
    let tmp = dir.join(format!("{:05}.tmp", input.part_number));
    let io = |e: std::io::Error| s3_error!(InternalError, "cannot stage the part: {e}");
    let mut file = tokio::fs::File::create(&tmp).await.map_err(io)?;
    let mut reader = body_reader(input.body);
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(s3_error!(IncompleteBody, "the part's body broke off: {e}"));
            }
        };
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_PUT {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(s3_error!(EntityTooLarge, "a part is at most 5 GiB"));
        }
        md5.update(&buf[..n]);
        file.write_all(&buf[..n]).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    drop(file);
    let etag = hex::encode(md5.finalize());
    tokio::fs::write(dir.join(format!("{:05}.md5", input.part_number)), &etag)
        .await
        .map_err(io)?;
    tokio::fs::rename(&tmp, part_file(&dir, input.part_number))
        .await
        .map_err(io)?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        ..Default::default()
    }))
}

/// The MD5 (hex) and size of a staged part.
async fn staged(dir: &Path, n: i32) -> Option<(String, u64)> {
    let md5 = tokio::fs::read_to_string(dir.join(format!("{n:05}.md5")))
        .await
        .ok()?;
    let size = tokio::fs::metadata(part_file(dir, n)).await.ok()?.len();
    Some((md5, size))
}

pub async fn complete(
    client: &Client,
    uploads: &Uploads,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let (dir, meta) = uploads
        .open(&input.upload_id, client, &input.bucket, &input.key)
        .await?;
    let parts = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    if parts.is_empty() {
        return Err(s3_error!(MalformedXML, "no parts listed"));
    }
    let mut numbers = Vec::with_capacity(parts.len());
    let mut md5s = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        let n = p
            .part_number
            .ok_or_else(|| s3_error!(InvalidPart, "a part without a number"))?;
        check_part_number(n)?;
        if numbers.last().is_some_and(|&last| last >= n) {
            return Err(s3_error!(InvalidPartOrder));
        }
        let (md5, size) = staged(&dir, n)
            .await
            .ok_or_else(|| s3_error!(InvalidPart, "part {n} was not uploaded"))?;
        if p.e_tag.as_ref().is_some_and(|t| t.value() != md5) {
            return Err(s3_error!(InvalidPart, "part {n}'s ETag does not match"));
        }
        if i + 1 < parts.len() && size < MIN_PART {
            return Err(s3_error!(EntityTooSmall, "part {n} is under 5 MiB"));
        }
        let raw = hex::decode(&md5).map_err(|_| s3_error!(InvalidPart))?;
        md5s.update(&raw);
        numbers.push(n);
    }
    let etag = format!("{}-{}", hex::encode(md5s.finalize()), numbers.len());
    let files: Vec<PathBuf> = numbers.iter().map(|&n| part_file(&dir, n)).collect();
    let stream = futures::stream::iter(files)
        .then(tokio::fs::File::open)
        .map_ok(|f| tokio_util::io::ReaderStream::with_capacity(f, 256 << 10))
        .try_flatten();
    let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
    let object = ObjectMeta {
        content_type: meta.content_type,
        meta: meta.meta,
        etag: Some(etag.clone()),
    };
    client
        .put_object(&input.bucket, &input.key, reader, object, None)
        .await
        .map_err(s3_err)?;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        ..Default::default()
    }))
}

pub async fn abort(
    client: &Client,
    uploads: &Uploads,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    let (dir, _) = uploads
        .open(&input.upload_id, client, &input.bucket, &input.key)
        .await?;
    tokio::fs::remove_dir_all(&dir)
        .await
        .map_err(|e| s3_error!(InternalError, "cannot remove the upload: {e}"))?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(
    client: &Client,
    uploads: &Uploads,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let (dir, _) = uploads
        .open(&input.upload_id, client, &input.bucket, &input.key)
        .await?;
    let after = input.part_number_marker.unwrap_or(0);
    let max = input.max_parts.unwrap_or(1000).clamp(1, 1000) as usize;
    let mut numbers: Vec<i32> = Vec::new();
    let mut entries = tokio::fs::read_dir(&dir)
        .await
        .map_err(|_| s3_error!(NoSuchUpload))?;
    while let Ok(Some(e)) = entries.next_entry().await {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_suffix(".part")
            .and_then(|n| n.parse::<i32>().ok())
        {
            if n > after {
                numbers.push(n);
            }
        }
    }
    numbers.sort_unstable();
    let truncated = numbers.len() > max;
    numbers.truncate(max);
    let mut parts = Vec::with_capacity(numbers.len());
    for &n in &numbers {
        if let Some((md5, size)) = staged(&dir, n).await {
            parts.push(Part {
                part_number: Some(n),
                size: Some(size as i64),
                e_tag: Some(ETag::Strong(md5)),
                ..Default::default()
            });
        }
    }
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(max as i32),
        is_truncated: Some(truncated),
        next_part_number_marker: numbers.last().filter(|_| truncated).copied(),
        parts: Some(parts),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    client: &Client,
    staged: &Uploads,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let me = client.peer_id().to_string();
    let prefix = input.prefix.clone().unwrap_or_default();
    let mut uploads = Vec::new();
    if let Ok(mut entries) = tokio::fs::read_dir(&staged.dir).await {
        while let Ok(Some(e)) = entries.next_entry().await {
            let Ok(bytes) = tokio::fs::read(e.path().join("upload.json")).await else {
                continue;
            };
            let Ok(meta) = serde_json::from_slice::<UploadMeta>(&bytes) else {
                continue;
            };
            if meta.owner == me && meta.bucket == input.bucket && meta.key.starts_with(&prefix) {
                uploads.push(MultipartUpload {
                    key: Some(meta.key),
                    upload_id: Some(e.file_name().to_string_lossy().into_owned()),
                    initiated: Some(timestamp(meta.created_ms)),
                    ..Default::default()
                });
            }
        }
    }
    uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.upload_id.cmp(&b.upload_id)));
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        is_truncated: Some(false),
        uploads: Some(uploads),
        ..Default::default()
    }))
}
