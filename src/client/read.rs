//! The read path: a file's record from the access node, then its blocks straight from their
//! holders, striped across them by expected finish time (see `holders`), a window in flight,
//! slow requests hedged to another holder, each block verified against its id before a byte
//! reaches the caller.

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::{Multiaddr, PeerId};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::holders::{HolderOrder, Lease};
use super::seal::{self, open_blocking, Capability, ContentKey, ReaderSecret};
use super::{unexpected, Client, GetOutcome, Progress};
use crate::error::{Error, Result};
use crate::ids::{hash_block, BlockId};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::client::{ClientRequest, ClientResponse};
use crate::record::{BlockEntry, FileRecord};

impl Client {
    /// The blocks of `record` in order, each verified against its id, with a window of
    /// requests in flight sized from the number of holders (see [`HolderOrder::window`]):
    /// memory stays at a few dozen blocks at most whatever the file size.
    /// A private file's blocks come opened with this client's own key (see
    /// [`Client::blocks_opened`] to read with a capability's).
    pub fn blocks_of<'a>(
        &'a self,
        record: &FileRecord,
    ) -> impl futures::Stream<Item = Result<Vec<u8>>> + 'a {
        let key = self.reader_key(record, None);
        let record = record.clone();
        futures::stream::once(async move { key })
            .map(move |key| match key {
                Ok(key) => self.blocks_opened(&record, key).left_stream(),
                Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
            })
            .flatten()
    }

    /// The content of `record`'s blocks in order, each verified against its id and, with
    /// `key` (a private file's, from [`Client::reader_key`]), opened and checked against its
    /// tag and position.
    pub fn blocks_opened<'a>(
        &'a self,
        record: &FileRecord,
        key: Option<ContentKey>,
    ) -> impl futures::Stream<Item = Result<Vec<u8>>> + 'a {
        self.blocks_span(record, key, 0..record.blocks.len())
    }

    /// Content bytes `range` of `record` (a ranged read): only the blocks it overlaps are
    /// fetched, each verified whole, then trimmed. `range` must lie within the content.
    pub fn content_range<'a>(
        &'a self,
        record: &FileRecord,
        key: Option<ContentKey>,
        range: std::ops::Range<u64>,
    ) -> impl futures::Stream<Item = Result<Vec<u8>>> + 'a {
        let tag = if record.sealed.is_some() {
            u64::from(crate::record::TAG_LEN)
        } else {
            0
        };
        // Where each block's content starts.
        let mut starts = Vec::with_capacity(record.blocks.len());
        let mut at = 0u64;
        for b in &record.blocks {
            starts.push(at);
            at += u64::from(b.len).saturating_sub(tag);
        }
        let first = starts
            .partition_point(|&s| s <= range.start)
            .saturating_sub(1);
        let last = starts.partition_point(|&s| s < range.end);
        let offsets: Vec<u64> = starts[first.min(last)..last].to_vec();
        self.blocks_span(record, key, first.min(last)..last)
            .zip(futures::stream::iter(offsets))
            .map(move |(data, start)| {
                let data = data?;
                let end = start + data.len() as u64;
                let from = range.start.max(start) - start;
                let to = range.end.min(end).saturating_sub(start);
                Ok(data[from as usize..(to as usize).max(from as usize)].to_vec())
            })
    }

    /// Blocks `span` of `record`, opened with `key` (indices stay the blocks' own, which a
    /// sealed block's nonce and position check need).
    fn blocks_span<'a>(
        &'a self,
        record: &FileRecord,
        key: Option<ContentKey>,
        span: std::ops::Range<usize>,
    ) -> impl futures::Stream<Item = Result<Vec<u8>>> + 'a {
        let sealed = record.sealed.is_some();
        let mut holders: Vec<PeerId> = record
            .blocks
            .iter()
            .flat_map(|b| b.holders.iter().copied())
            .collect();
        holders.sort_unstable();
        holders.dedup();
        let blocks: Vec<(usize, BlockEntry)> = record
            .blocks
            .iter()
            .cloned()
            .enumerate()
            .skip(span.start)
            .take(span.end.saturating_sub(span.start))
            .collect();
        futures::stream::iter(blocks)
            .map(move |(index, entry)| {
                let key = key.clone();
                async move {
                    let data = self.fetch_block(entry).await?;
                    match (key, sealed) {
                        (Some(key), _) => open_blocking(&key, index, data).await,
                        // Never hand out ciphertext as if it were the file.
                        (None, true) => Err(Error::Invalid("a private file needs its key".into())),
                        (None, false) => Ok(data),
                    }
                }
            })
            .buffered(HolderOrder::window(holders.len()))
    }

    /// One block, verified: straight from its holders (extra replicas included), failing
    /// over to the others and finally to the access node.
    async fn fetch_block(&self, entry: BlockEntry) -> Result<Vec<u8>> {
        if let Some(data) = entry.inline {
            // Verified with the record's signature check at the root; checked again here.
            let data = data.into_vec();
            if BlockId::of(&data) != entry.id || data.len() != entry.len as usize {
                return Err(Error::Integrity(format!(
                    "inline block {} is corrupt",
                    entry.id
                )));
            }
            return Ok(data);
        }
        if self.direct_reads && !entry.holders.is_empty() {
            if let Some(data) = self.fetch_direct(&entry).await {
                return Ok(data);
            }
        }
        let req = ClientRequest::GetBlock {
            id: entry.id,
            holders: entry.holders,
        };
        let data = match self.request(req).await? {
            ClientResponse::Block { data } => data,
            other => return Err(unexpected(other)),
        };
        let (actual, data) = hash_block(data).await;
        if actual != entry.id || data.len() != entry.len as usize {
            return Err(Error::Integrity(format!(
                "block {} came back with the wrong content",
                entry.id
            )));
        }
        Ok(data)
    }

    /// One block straight from its holders: the one with the lowest expected finish time
    /// first; a request slower than the usual block time by [`HolderOrder::hedge_after`] is
    /// hedged to the next holder, and the first verified copy wins. `None` when no holder
    /// gave the right bytes (the caller falls back to the access node).
    async fn fetch_direct(&self, entry: &BlockEntry) -> Option<Vec<u8>> {
        let usable: Vec<(PeerId, Vec<Multiaddr>)> = {
            let known = self.holder_addrs.lock().unwrap_or_else(|p| p.into_inner());
            entry
                .holders
                .iter()
                .filter_map(|p| known.get(p).map(|a| (*p, a.clone())))
                .collect()
        };
        let listed: Vec<PeerId> = usable.iter().map(|(p, _)| *p).collect();
        let mut tried: Vec<PeerId> = Vec::new();
        let mut failed: Vec<PeerId> = Vec::new();
        let mut attempts = FuturesUnordered::new();
        // Each turn asks one more holder: the first, then after a failure or a hedge timeout.
        loop {
            if let Some(lease) = self.holders.pick(&listed, &tried) {
                tried.push(lease.peer());
                let addrs = usable
                    .iter()
                    .find(|(p, _)| *p == lease.peer())
                    .map(|(_, a)| a.clone())
                    .unwrap_or_default();
                attempts.push(self.attempt(lease, addrs, entry));
            }
            if attempts.is_empty() {
                return None;
            }
            let more = tried.len() < listed.len();
            let wait = self.holders.hedge_after();
            let hedge = tokio::time::sleep(wait);
            tokio::select! {
                Some((lease, got)) = attempts.next() => match got {
                    Some(data) => {
                        let winner = lease.peer();
                        lease.served();
                        // Holders still working on this block were overtaken: overdue. Their
                        // requests are dropped with `attempts`.
                        for peer in tried.iter().filter(|p| **p != winner && !failed.contains(p)) {
                            self.holders.overdue(*peer);
                        }
                        return Some(data);
                    }
                    None => {
                        failed.push(lease.peer());
                        lease.failed();
                    }
                },
                _ = hedge, if more => {
                    // The last holder asked is overdue: new blocks avoid it from now on.
                    if let Some(&peer) = tried.iter().rev().find(|p| !failed.contains(p)) {
                        tracing::debug!(%peer, block = %entry.id, ?wait, "hedging a slow read");
                        self.holders.overdue(peer);
                    }
                }
            }
        }
    }

    /// One request for `entry` to the holder of `lease`, within the reader's patience,
    /// verified. The lease comes back so the caller records how it went.
    async fn attempt<'a>(
        &self,
        lease: Lease<'a>,
        addrs: Vec<Multiaddr>,
        entry: &BlockEntry,
    ) -> (Lease<'a>, Option<Vec<u8>>) {
        let peer = lease.peer();
        let reply = self
            .session
            .block(peer, addrs, BlockRequest::Get { id: entry.id });
        let data = match tokio::time::timeout(self.holders.patience(), reply).await {
            Ok(Ok(BlockResponse::Data { data })) => data,
            _ => return (lease, None),
        };
        let (actual, data) = hash_block(data).await;
        if actual == entry.id && data.len() == entry.len as usize {
            return (lease, Some(data));
        }
        tracing::warn!(%peer, block = %entry.id, "holder returned wrong bytes; trying another");
        (lease, None)
    }

    /// The key that opens `record`: none for a plain file; for a private one, from `cap`
    /// or from this client's own wrap, else [`Error::NoCapability`].
    pub fn reader_key(
        &self,
        record: &FileRecord,
        cap: Option<&Capability>,
    ) -> Result<Option<ContentKey>> {
        let Some(sealed) = &record.sealed else {
            return Ok(None);
        };
        if let Some(key) = cap.and_then(|c| c.open(record)) {
            return Ok(Some(key));
        }
        if let Some(key) =
            ReaderSecret::of_identity(&self.key).and_then(|me| seal::unwrap(sealed, &me))
        {
            return Ok(Some(key));
        }
        Err(Error::NoCapability(record.name.clone()))
    }

    /// Reads a file (the head, or `version`) as a stream of verified chunks, in order.
    pub async fn get_stream(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<impl futures::Stream<Item = Result<Vec<u8>>> + '_> {
        let record = self.record_for_get(name, version).await?;
        Ok(self.blocks_of(&record))
    }

    /// Downloads a file (the head, or `version`) into `writer`, verifying every block.
    pub async fn get_into<W: AsyncWrite + Unpin>(
        &self,
        name: &str,
        version: Option<u64>,
        writer: &mut W,
        progress: Option<Progress>,
    ) -> Result<GetOutcome> {
        let record = self.record_for_get(name, version).await?;
        let mut blocks = std::pin::pin!(self.blocks_of(&record));
        let mut written: u64 = 0;
        while let Some(data) = blocks.next().await {
            let data = data?;
            writer.write_all(&data).await?;
            written += data.len() as u64;
            if let Some(p) = &progress {
                p(data.len() as u64);
            }
        }
        writer.flush().await?;
        if written != record.plain_size() {
            return Err(Error::Integrity(format!(
                "wrote {written} bytes, the record says {}",
                record.plain_size()
            )));
        }
        Ok(GetOutcome::of(&record))
    }

    /// Downloads a whole file into memory (for small files and tests).
    pub async fn get_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get_into(name, None, &mut out, None).await?;
        Ok(out)
    }

    /// The record a get of `name` (at `version`) would read, noting us as a downloader.
    pub async fn record_for_get(&self, name: &str, version: Option<u64>) -> Result<FileRecord> {
        let (_, _, _, state) = self
            .fetch_state(name, true)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let head = state
            .head()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let record = match version {
            None if head.tombstone => {
                return Err(Error::Deleted {
                    name: name.to_string(),
                    version: head.version,
                })
            }
            None => head,
            Some(v) => state.version(v).filter(|r| !r.tombstone).ok_or_else(|| {
                Error::NotFound(format!(
                    "{name} version {v} (retained: {:?})",
                    state.versions.iter().map(|r| r.version).collect::<Vec<_>>()
                ))
            })?,
        };
        Ok(record.clone())
    }

    /// Total bytes a get of `name` will produce (for progress bars).
    pub async fn size_of(&self, name: &str, version: Option<u64>) -> Result<u64> {
        let (_, _, _, state) = self
            .fetch_state(name, false)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let r = match version {
            Some(v) => state.version(v),
            None => state.head(),
        };
        Ok(r.map(|r| r.plain_size()).unwrap_or(0))
    }
}
