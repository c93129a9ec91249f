//! The read path: a file's record from the access node, then its blocks straight from their
//! holders in the order the access node ranked them, a window in flight, each verified
//! against its id before a byte reaches the caller.

use std::time::Instant;

use futures::stream::StreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{unexpected, Client, GetOutcome, Progress};
use crate::error::{Error, Result};
use crate::ids::{hash_block, BlockId};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::client::{ClientRequest, ClientResponse};
use crate::record::{BlockEntry, FileRecord};

/// Blocks in flight during a get.
const GET_WINDOW: usize = 8;

impl Client {
    /// The blocks of `record` in order, each verified against its id, with a window of
    /// requests in flight. Memory stays at about `GET_WINDOW` blocks whatever the file size.
    pub fn blocks_of<'a>(
        &'a self,
        record: &FileRecord,
    ) -> impl futures::Stream<Item = Result<Vec<u8>>> + 'a {
        futures::stream::iter(record.blocks.clone().into_iter().enumerate())
            .map(move |(i, entry)| self.fetch_block(i, entry))
            .buffered(GET_WINDOW)
    }

    /// One block, verified: straight from a holder, in the order the access node ranked them
    /// (least loaded first, extra replicas included; randomised among equals, so several
    /// sources serve at once), failing over to the other holders and finally to the access
    /// node.
    async fn fetch_block(&self, _index: usize, entry: BlockEntry) -> Result<Vec<u8>> {
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
            for peer in self.holders.order(&entry.holders) {
                let addrs = {
                    let known = self.holder_addrs.lock().unwrap_or_else(|p| p.into_inner());
                    known.get(&peer).cloned()
                };
                let Some(addrs) = addrs else { continue };
                let started = Instant::now();
                let reply = self
                    .session
                    .block(peer, addrs, BlockRequest::Get { id: entry.id });
                let data = match tokio::time::timeout(self.holders.patience(), reply).await {
                    Ok(Ok(BlockResponse::Data { data })) => data,
                    _ => {
                        // Slow, silent or refusing: tried last for a while, so one bad holder
                        // costs one short wait, not one per block.
                        self.holders.demote(peer);
                        continue;
                    }
                };
                let (actual, data) = hash_block(data).await;
                if actual == entry.id && data.len() == entry.len as usize {
                    self.holders.served(started.elapsed());
                    return Ok(data);
                }
                self.holders.demote(peer);
                tracing::warn!(%peer, block = %entry.id, "holder returned wrong bytes; trying another");
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
        if written != record.size {
            return Err(Error::Integrity(format!(
                "wrote {written} bytes, the record says {}",
                record.size
            )));
        }
        Ok(GetOutcome {
            name: name.to_string(),
            version: record.version,
            size: record.size,
            blocks: record.blocks.len(),
        })
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
        Ok(r.map(|r| r.size).unwrap_or(0))
    }
}
