//! Buckets on the client: create, delete and list buckets, put, delete and list objects. The
//! formats and the listing are in `index`; this is what each operation reads and publishes.
//!
//! Every file here is an ordinary signed record, so the integrity rules hold as they do for
//! any file: a bucket's record, its objects and its index pages are signed by the bucket's
//! owner, and pages and objects live in the owner's own name space (`~OWNER/…`), which every
//! node and client refuses to accept from anyone else. A put or delete returns once the
//! object *and* its index page are published, so the same client's next listing shows it.
//! A page changes by compare-and-set on its version (retried on conflict), so two access
//! nodes writing for one owner at once lose no entry.

pub mod batch;
pub mod index;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use serde::Serialize;
use tokio::io::{AsyncRead, ReadBuf};

use super::write::next_version;
use super::{Client, Progress, PutOutcome};
use crate::error::{Error, Result};
use crate::record::{now_ms, FileRecord, RecordError};
use batch::Change;
use index::{
    bucket_list_name, bucket_name, object_name, page_name, shard_of, validate_bucket, validate_key,
    BucketList, Page, MAX_PAGE_BYTES,
};
pub use index::{BucketMeta, ListQuery, Listing, ObjectEntry};

/// Attempts at one page's compare-and-set before giving up (each conflict means another
/// writer's change landed, so the loop makes progress).
const CAS_ATTEMPTS: u32 = 12;
/// Pages a listing reads at once.
const PAGE_READS: usize = 16;

/// A bucket as its record says.
#[derive(Clone, Debug, Serialize)]
pub struct BucketInfo {
    pub name: String,
    pub owner: libp2p::PeerId,
    pub created_ms: u64,
    pub meta: BucketMeta,
}

/// How `create_bucket` makes a bucket.
#[derive(Clone, Copy, Debug)]
pub struct BucketOptions {
    pub shards: u16,
    pub public_read: bool,
    pub private: bool,
}

impl Default for BucketOptions {
    fn default() -> Self {
        BucketOptions {
            shards: index::DEFAULT_SHARDS,
            public_read: false,
            private: false,
        }
    }
}

/// What an object carries besides its bytes.
#[derive(Clone, Debug, Default)]
pub struct ObjectMeta {
    pub content_type: Option<String>,
    pub meta: Vec<(String, String)>,
    /// The ETag to list instead of the content's MD5 (a multipart upload's, `MD5-of-MD5s-N`).
    pub etag: Option<String>,
}

/// A small file's head as read for a change: absent, deleted at a version, or live.
enum Small {
    Absent,
    Deleted,
    Live(Box<FileRecord>, Vec<u8>),
}

impl Client {
    /// Creates a bucket owned by this client.
    pub async fn create_bucket(&self, name: &str, opts: BucketOptions) -> Result<BucketInfo> {
        validate_bucket(name).map_err(Error::Invalid)?;
        if opts.shards == 0 || opts.shards > index::MAX_SHARDS {
            return Err(Error::Invalid(format!(
                "{} index pages; 1..={} allowed",
                opts.shards,
                index::MAX_SHARDS
            )));
        }
        let meta = BucketMeta::new(opts.shards, opts.public_read, opts.private);
        match self.put_bytes(&bucket_name(name), &meta.encode()).await {
            Ok(_) => {}
            Err(Error::AlreadyExists { .. }) => {
                let held = self.read_bucket(name).await?;
                let yours = held.owner == self.peer_id();
                if yours {
                    // A create that stopped before the bucket list: finish it.
                    self.note_bucket(name, Some(held.created_ms)).await?;
                }
                return Err(Error::BucketExists {
                    name: name.to_string(),
                    yours,
                });
            }
            Err(e) => return Err(e),
        }
        self.buckets.forget(name);
        let info = self.bucket(name).await?;
        self.note_bucket(name, Some(info.created_ms)).await?;
        Ok(info)
    }

    /// A bucket's record, checked (cached for a few seconds: only its owner changes it).
    pub async fn bucket(&self, name: &str) -> Result<BucketInfo> {
        if let Some(info) = self.buckets.cached(name) {
            return Ok(info);
        }
        let info = self.read_bucket(name).await?;
        self.buckets.remember(&info);
        Ok(info)
    }

    async fn read_bucket(&self, name: &str) -> Result<BucketInfo> {
        validate_bucket(name).map_err(Error::Invalid)?;
        match self.read_small(&bucket_name(name)).await? {
            Small::Live(record, bytes) => {
                let meta = BucketMeta::decode(&bytes).map_err(|e| {
                    Error::Invalid(format!("{:?} is not a bucket: {e}", bucket_name(name)))
                })?;
                Ok(BucketInfo {
                    name: name.to_string(),
                    owner: record.owner,
                    created_ms: record.created_ms,
                    meta,
                })
            }
            _ => Err(Error::NoSuchBucket(name.to_string())),
        }
    }

    /// This client's buckets, by name (S3's ListBuckets).
    pub async fn list_buckets(&self) -> Result<Vec<(String, u64)>> {
        let me = self.peer_id().to_base58();
        match self.read_small(&bucket_list_name(&me)).await? {
            Small::Live(_, bytes) => {
                let list = BucketList::decode(&bytes).map_err(Error::Integrity)?;
                Ok(list.buckets.into_iter().collect())
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Deletes an empty bucket this client owns.
    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        self.buckets.forget(name);
        let info = self.owned_bucket(name).await?;
        let pages = self.read_pages(&info).await?;
        let keys: usize = pages
            .iter()
            .filter_map(|(_, p)| p.as_ref())
            .map(|p| p.entries.len())
            .sum();
        if keys > 0 {
            return Err(Error::BucketNotEmpty {
                name: name.to_string(),
                keys,
            });
        }
        match self.remove(&bucket_name(name), None).await {
            Ok(_) | Err(Error::Deleted { .. }) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.buckets.forget(name);
        // The name is free now; what follows tidies up, and a crash here leaves only empty
        // pages (a bucket of the same name by this owner reuses them).
        let owner = info.owner.to_base58();
        for (shard, page) in pages {
            if page.is_some() {
                let page = page_name(&owner, name, shard);
                match self.remove(&page, None).await {
                    Ok(_) | Err(Error::Deleted { .. }) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.note_bucket(name, None).await
    }

    /// Puts object `key` into a bucket this client owns, replacing any object of that key
    /// (S3's PutObject); a private bucket's objects are sealed for its owner.
    pub async fn put_object<R: AsyncRead + Unpin>(
        &self,
        bucket: &str,
        key: &str,
        reader: R,
        meta: ObjectMeta,
        progress: Option<Progress>,
    ) -> Result<(PutOutcome, ObjectEntry)> {
        validate_key(key).map_err(Error::Invalid)?;
        let info = self.owned_bucket(bucket).await?;
        let name = object_name(&info.owner.to_base58(), bucket, key);
        let mut reader = Md5Reader::new(reader);
        let live = match self.fetch_state(&name, false).await? {
            Some((_, _, _, state)) => state.head().is_some_and(|h| !h.tombstone),
            None => false,
        };
        let outcome = match (live, info.meta.private) {
            (true, _) => self.update(&name, &mut reader, None, progress).await?,
            (false, true) => self.put_private(&name, &mut reader, progress).await?.0,
            (false, false) => self.put(&name, &mut reader, progress).await?,
        };
        let mut user = meta.meta;
        user.sort();
        let entry = ObjectEntry {
            key: key.to_string(),
            size: outcome.size,
            version: outcome.version,
            modified_ms: now_ms(),
            etag: Some(meta.etag.unwrap_or_else(|| reader.hex())),
            content_type: meta.content_type,
            meta: user,
        };
        let indexed = entry.clone();
        let change: Change = Arc::new(move |page: &mut Page| {
            // A slower writer of an older version must not hide a newer one.
            let newer = page
                .entries
                .get(&indexed.key)
                .is_none_or(|e| e.version <= indexed.version);
            if newer {
                page.entries.insert(indexed.key.clone(), indexed.clone());
            }
            newer
        });
        self.change_page(&info, key, change).await?;
        Ok((outcome, entry))
    }

    /// Deletes object `key` of a bucket this client owns. Deleting a key that is not there
    /// succeeds (as in S3); returns the tombstone's version when there was an object.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<Option<u64>> {
        validate_key(key).map_err(Error::Invalid)?;
        let info = self.owned_bucket(bucket).await?;
        let name = object_name(&info.owner.to_base58(), bucket, key);
        let gone = match self.remove(&name, None).await {
            Ok(v) => Some(v),
            Err(Error::Deleted { .. }) | Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let owned = key.to_string();
        let change: Change = Arc::new(move |page: &mut Page| page.entries.remove(&owned).is_some());
        self.change_page(&info, key, change).await?;
        Ok(gone)
    }

    /// The index entry of object `key` (S3's HeadObject), from its page.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<(BucketInfo, ObjectEntry)> {
        validate_key(key).map_err(Error::Invalid)?;
        let info = self.bucket(bucket).await?;
        let shard = shard_of(key, info.meta.shards);
        let page = self.read_page(&info, shard).await?.unwrap_or_default();
        let entry = page
            .entries
            .get(key)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{bucket}/{key}")))?;
        Ok((info, entry))
    }

    /// The file name object `key` of `bucket` is stored under (to `get` or `stat` it).
    pub async fn object_file(&self, bucket: &str, key: &str) -> Result<String> {
        validate_key(key).map_err(Error::Invalid)?;
        let info = self.bucket(bucket).await?;
        Ok(object_name(&info.owner.to_base58(), bucket, key))
    }

    /// Lists a bucket's objects (S3's ListObjectsV2): every page read, merged in key order.
    pub async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<Listing> {
        let info = self.bucket(bucket).await?;
        let pages = self.read_pages(&info).await?;
        Ok(index::list(
            pages.iter().filter_map(|(_, p)| p.as_ref()),
            query,
        ))
    }

    /// The bucket, if this client owns it; else who does.
    async fn owned_bucket(&self, name: &str) -> Result<BucketInfo> {
        let info = self.bucket(name).await?;
        if info.owner != self.peer_id() {
            return Err(Error::Rejected(RecordError::PermissionDenied {
                name: format!("bucket {name}"),
                owner: info.owner.to_string(),
            }));
        }
        Ok(info)
    }

    /// Every index page of a bucket (`None` where a page was never written).
    async fn read_pages(&self, info: &BucketInfo) -> Result<Vec<(u16, Option<Page>)>> {
        let mut pages: Vec<(u16, Option<Page>)> = futures::stream::iter(0..info.meta.shards)
            .map(|shard| async move { Ok::<_, Error>((shard, self.read_page(info, shard).await?)) })
            .buffer_unordered(PAGE_READS)
            .try_collect()
            .await?;
        pages.sort_by_key(|(s, _)| *s);
        Ok(pages)
    }

    async fn read_page(&self, info: &BucketInfo, shard: u16) -> Result<Option<Page>> {
        let name = page_name(&info.owner.to_base58(), &info.name, shard);
        match self.read_small(&name).await? {
            Small::Live(_, bytes) => Page::decode(&bytes, shard, info.meta.shards)
                .map(Some)
                .map_err(|e| Error::Integrity(format!("index page {name:?}: {e}"))),
            _ => Ok(None),
        }
    }

    /// Applies `change` to the page holding `key`, with whatever other changes of this
    /// client to the same page are queued (see `batch`), by compare-and-set on its version.
    async fn change_page(&self, info: &BucketInfo, key: &str, change: Change) -> Result<()> {
        let shard = shard_of(key, info.meta.shards);
        let name = page_name(&info.owner.to_base58(), &info.name, shard);
        let slot = self.buckets.slot(&name);
        let ticket = slot.submit(change);
        let _writer = slot.lock.lock().await;
        // The writer before us may have applied our change already.
        if let Some(outcome) = slot.outcome(ticket) {
            return outcome.map_err(Error::Network);
        }
        let batch = slot.batch();
        let changes: Vec<Change> = batch.iter().map(|(_, c)| c.clone()).collect();
        let result = self.write_page(info, shard, &name, &changes).await;
        let shared = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| format!("index page {name:?}: {e}"));
        let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
        slot.finish(&tickets, ticket, &shared);
        result
    }

    /// Reads page `name`, applies `changes`, and publishes it if anything changed, retrying
    /// on a lost compare-and-set (another client of the same owner wrote it meanwhile).
    async fn write_page(
        &self,
        info: &BucketInfo,
        shard: u16,
        name: &str,
        changes: &[Change],
    ) -> Result<()> {
        for attempt in 0..CAS_ATTEMPTS {
            let (mut page, held) = match self.read_small(name).await? {
                Small::Live(record, bytes) => {
                    let page = Page::decode(&bytes, shard, info.meta.shards)
                        .map_err(|e| Error::Integrity(format!("index page {name:?}: {e}")))?;
                    (page, Some(record))
                }
                _ => (Page::default(), None),
            };
            let mut changed = false;
            for c in changes {
                changed |= c(&mut page);
            }
            if !changed {
                return Ok(());
            }
            match self
                .write_small(name, &page.encode(), held.as_deref())
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if is_lost_race(&e) => backoff(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Network(format!(
            "index page {name:?} kept changing under {CAS_ATTEMPTS} attempts; try again"
        )))
    }

    /// Adds (`Some(created)`) or drops (`None`) a bucket in this client's bucket list.
    async fn note_bucket(&self, bucket: &str, created: Option<u64>) -> Result<()> {
        let name = bucket_list_name(&self.peer_id().to_base58());
        for attempt in 0..CAS_ATTEMPTS {
            let (mut list, held) = match self.read_small(&name).await? {
                Small::Live(record, bytes) => (
                    BucketList::decode(&bytes).map_err(Error::Integrity)?,
                    Some(record),
                ),
                _ => (BucketList::default(), None),
            };
            let changed = match created {
                Some(at) => list.buckets.insert(bucket.to_string(), at) != Some(at),
                None => list.buckets.remove(bucket).is_some(),
            };
            if !changed {
                return Ok(());
            }
            match self
                .write_small(&name, &list.encode(), held.as_deref())
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if is_lost_race(&e) => backoff(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Network(format!(
            "{name:?} kept changing under {CAS_ATTEMPTS} attempts; try again"
        )))
    }

    /// Reads a small file's head and content (pages, bucket records, bucket lists): at most
    /// [`MAX_PAGE_BYTES`], and never noted as a download.
    async fn read_small(&self, name: &str) -> Result<Small> {
        let Some((_, _, _, state)) = self.fetch_state(name, false).await? else {
            return Ok(Small::Absent);
        };
        let Some(head) = state.head() else {
            return Ok(Small::Absent);
        };
        if head.tombstone {
            return Ok(Small::Deleted);
        }
        if head.size > MAX_PAGE_BYTES {
            return Err(Error::Integrity(format!(
                "{name:?} is {} bytes; an index file is at most {MAX_PAGE_BYTES}",
                head.size
            )));
        }
        let mut bytes = Vec::new();
        let mut blocks = std::pin::pin!(self.blocks_of(head));
        while let Some(b) = blocks.next().await {
            bytes.extend_from_slice(&b?);
        }
        Ok(Small::Live(Box::new(head.clone()), bytes))
    }

    /// Publishes `bytes` as the next version of `name` after `held` (a put when absent or
    /// deleted): fails with a conflict if another writer got there first. The root checks
    /// the version, so this publishes at once, without reading the head again.
    async fn write_small(&self, name: &str, bytes: &[u8], held: Option<&FileRecord>) -> Result<()> {
        match held {
            Some(r) => {
                let next = (next_version(name, r.version)?, Some(r.created_ms));
                let none = HashMap::new();
                self.publish_from(name, async { Ok(next) }, bytes, &none, None, None)
                    .await
                    .map(|_| ())
            }
            None => self.put(name, bytes, None).await.map(|_| ()),
        }
    }
}

/// A compare-and-set that lost to another writer (read again and retry).
fn is_lost_race(e: &Error) -> bool {
    matches!(
        e,
        Error::AlreadyExists { .. }
            | Error::Deleted { .. }
            | Error::NotFound(_)
            | Error::Rejected(RecordError::Conflict { .. })
            | Error::Rejected(RecordError::Stale { .. })
    )
}

async fn backoff(attempt: u32) {
    let jitter = rand::random::<u64>() % 20;
    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt + 1) + jitter)).await;
}

/// Passes bytes through while hashing them: an object's ETag is the MD5 of its content.
struct Md5Reader<R> {
    inner: R,
    md5: Md5,
}

impl<R> Md5Reader<R> {
    fn new(inner: R) -> Self {
        Md5Reader {
            inner,
            md5: Md5::new(),
        }
    }

    fn hex(&self) -> String {
        hex::encode(self.md5.clone().finalize())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Md5Reader<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if polled.is_ready() {
            this.md5.update(&buf.filled()[before..]);
        }
        polled
    }
}
