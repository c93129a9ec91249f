//! The write path: put, update and rm. Blocks go straight to the holders placement picks (the
//! access node only when that fails), a bounded window in flight; the record is signed last
//! and published through the access node, which hands it to the file's root.

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use libp2p::{Multiaddr, PeerId};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::seal::{record_plain_size, seal_blocking, Capability, ContentKey, Sealing};
use super::{unexpected, Client, Progress, PutOutcome};
use crate::error::{Error, Result};
use crate::ids::{hash_block, peer_point, validate_name, BlockId};
use crate::net::is_relayed;
use crate::placement;
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::client::{self, ClientRequest, ClientResponse};
use crate::record::{now_ms, BlockEntry, FileRecord, FileState, RecordError, TAG_LEN};

/// Blocks in flight during a put: bounds memory to `PUT_WINDOW × block size` per side.
const PUT_WINDOW: usize = 4;
/// How long the client reuses the access node's list of placement candidates.
const PLACEMENT_CACHE: Duration = Duration::from_secs(5);

impl Client {
    /// Publishes a new file from `reader`. Fails with [`Error::AlreadyExists`] if the name is
    /// taken by a live file.
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        reader: R,
        progress: Option<Progress>,
    ) -> Result<PutOutcome> {
        Ok(self.put_with(name, reader, None, progress).await?.0)
    }

    /// [`Client::put`], sealed for `seal`'s readers when given (a private file; the
    /// capability of its epoch comes back with the outcome).
    pub(super) async fn put_with<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        mut reader: R,
        seal: Option<&Sealing>,
        progress: Option<Progress>,
    ) -> Result<(PutOutcome, Option<Capability>)> {
        validate_name(name).map_err(Error::Invalid)?;
        // A small file is one signed record: publish it as version 1 straight away. The root
        // refuses that if the name is taken; the checked path below then says how.
        let mut head = Vec::new();
        let (chunk, inline_max) = self.plain_limits(seal.is_some());
        let limit = u64::from(inline_max.min(chunk.saturating_sub(1)));
        (&mut reader).take(limit + 1).read_to_end(&mut head).await?;
        let small = head.len() as u64 <= limit;
        let none = HashMap::new();
        if small {
            let first = async { Ok((1, None)) };
            if let Ok(outcome) = self
                .publish_from(name, first, &head[..], &none, seal, progress.clone())
                .await
            {
                return Ok(outcome);
            }
        }
        // The name check runs beside the upload (a small put then costs one round trip less);
        // if the name is taken, the upload stops and its blocks are collected as garbage.
        let check = async {
            match self.fetch_state(name, false).await? {
                Some((_, _, _, state)) => match state.head() {
                    Some(h) if !h.tombstone => Err(Error::AlreadyExists {
                        name: name.to_string(),
                        version: h.version,
                    }),
                    Some(h) => Ok((next_version(name, h.version)?, None)),
                    None => Ok((1, None)),
                },
                None => Ok((1, None)),
            }
        };
        if small {
            self.publish_from(name, check, &head[..], &none, seal, progress)
                .await
        } else {
            let reader = (&head[..]).chain(reader);
            self.publish_from(name, check, reader, &none, seal, progress)
                .await
        }
    }

    /// The plaintext per block and the largest inline plaintext: a sealed block carries its
    /// tag too, and must still fit the block size.
    fn plain_limits(&self, sealed: bool) -> (u32, u32) {
        if sealed {
            (
                self.block_size.saturating_sub(TAG_LEN).max(1),
                self.inline_max.saturating_sub(TAG_LEN),
            )
        } else {
            (self.block_size, self.inline_max)
        }
    }

    /// The head a change by this client may follow: it exists, is live, is ours, and is at
    /// `if_version` when one is given. The root enforces the same rules; checking here first
    /// saves uploading blocks that would be refused.
    pub(super) async fn head_for_change(
        &self,
        name: &str,
        if_version: Option<u64>,
    ) -> Result<FileState> {
        let (_, _, _, state) = self
            .fetch_state(name, false)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let head = state
            .head()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        if head.tombstone {
            return Err(Error::Deleted {
                name: name.to_string(),
                version: head.version,
            });
        }
        if head.owner != self.peer_id() {
            return Err(Error::Rejected(RecordError::PermissionDenied {
                name: name.to_string(),
                owner: head.owner.to_string(),
            }));
        }
        if let Some(v) = if_version {
            if head.version != v {
                return Err(Error::Rejected(RecordError::Conflict {
                    name: name.to_string(),
                    current: head.version,
                    attempted: v,
                }));
            }
        }
        Ok(state)
    }

    /// Publishes a new version of a file this client owns. Blocks already stored by a retained
    /// version are reused, only new ones are uploaded. With `if_version`, fails with a conflict
    /// unless the current version is exactly that; without it, the update follows the version
    /// read at the start, so a concurrent update still makes exactly one of them win.
    /// A private file stays private, readable by the same readers, under a fresh key (so no
    /// block is reused).
    pub async fn update<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        reader: R,
        if_version: Option<u64>,
        progress: Option<Progress>,
    ) -> Result<PutOutcome> {
        let state = self.head_for_change(name, if_version).await?;
        let head = state
            .head()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        if let Some(sealed) = &head.sealed {
            let seal = Sealing::following(sealed, None);
            let next = (next_version(name, head.version)?, Some(head.created_ms));
            let none = HashMap::new();
            let fut = async move { Ok(next) };
            return Ok(self
                .publish_from(name, fut, reader, &none, Some(&seal), progress)
                .await?
                .0);
        }
        let mut known: HashMap<BlockId, Vec<PeerId>> = HashMap::new();
        for r in &state.versions {
            for b in &r.blocks {
                if !b.is_inline() {
                    known.insert(b.id, b.holders.clone());
                }
            }
        }
        // The head's holders are the freshest (repair and balancing update them).
        for b in head.blocks.iter().filter(|b| !b.is_inline()) {
            known.insert(b.id, b.holders.clone());
        }
        let next = (next_version(name, head.version)?, Some(head.created_ms));
        let fut = async move { Ok(next) };
        Ok(self
            .publish_from(name, fut, reader, &known, None, progress)
            .await?
            .0)
    }

    /// Deletes a file this client owns: a signed tombstone at the next version. Its blocks are
    /// collected once no retained version of any file references them. Returns the tombstone's
    /// version.
    pub async fn remove(&self, name: &str, if_version: Option<u64>) -> Result<u64> {
        let state = self.head_for_change(name, if_version).await?;
        let head = state
            .head()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let record = FileRecord {
            name: name.to_string(),
            version: next_version(name, head.version)?,
            size: 0,
            block_size: head.block_size,
            blocks: Vec::new(),
            owner: self.peer_id(),
            owner_key: Vec::new(),
            created_ms: head.created_ms,
            modified_ms: now_ms(),
            tombstone: true,
            sealed: None,
            signature: Vec::new(),
        };
        self.publish_signed(name, record).await
    }

    /// Signs `record` as this client and publishes it; the version the root took.
    pub(super) async fn publish_signed(&self, name: &str, mut record: FileRecord) -> Result<u64> {
        record.sign(&self.key)?;
        match self.request(ClientRequest::Publish { record }).await? {
            ClientResponse::Published { version, .. } => {
                self.published(name, version);
                Ok(version)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Publishes `data` as a new file.
    pub async fn put_bytes(&self, name: &str, data: &[u8]) -> Result<PutOutcome> {
        self.put(name, data, None).await
    }

    /// Uploads the blocks of `reader` (reusing those in `known`) while `version` resolves to
    /// the version and creation time the record takes, then signs and publishes the record.
    /// An error from `version` stops the upload at once. With `seal`, every block is sealed
    /// under a fresh content key first, and the key wrapped to the readers (see `seal`).
    pub(super) async fn publish_from<R, V>(
        &self,
        name: &str,
        version: V,
        mut reader: R,
        known: &HashMap<BlockId, Vec<PeerId>>,
        seal: Option<&Sealing>,
        progress: Option<Progress>,
    ) -> Result<(PutOutcome, Option<Capability>)>
    where
        R: AsyncRead + Unpin,
        V: std::future::Future<Output = Result<(u64, Option<u64>)>>,
    {
        validate_name(name).map_err(Error::Invalid)?;
        // A fresh key for every upload: a key never seals two different contents.
        let key = seal.map(|_| ContentKey::random());
        let (chunk_size, inline_max) = self.plain_limits(key.is_some());
        let block_size = self.block_size;
        let upload = async {
            let mut blocks: Vec<BlockEntry> = Vec::new();
            let mut inflight = FuturesOrdered::new();
            let mut size: u64 = 0;
            let mut new_blocks = 0;
            let mut reused_blocks = 0;
            let mut index = 0usize;
            let mut eof = false;
            loop {
                while !eof && inflight.len() < PUT_WINDOW {
                    // Room for the tag, so sealing in place does not copy the block.
                    let spare = if key.is_some() { TAG_LEN as usize } else { 0 };
                    let chunk = read_chunk(&mut reader, chunk_size as usize, spare).await?;
                    if chunk.is_empty() {
                        eof = true;
                        break;
                    }
                    let first = size == 0;
                    let plain_len = chunk.len() as u32;
                    // A sealed block is hashed in the same blocking task that seals it.
                    let (chunk, sealed_id) = match &key {
                        Some(k) => {
                            let (id, c) = seal_blocking(k, index, chunk).await?;
                            (c, Some(id))
                        }
                        None => (chunk, None),
                    };
                    index += 1;
                    size += chunk.len() as u64;
                    let len = chunk.len() as u32;
                    // A short first chunk is the whole file.
                    if first && plain_len < chunk_size && plain_len <= inline_max {
                        new_blocks += 1;
                        if let Some(p) = &progress {
                            p(u64::from(len));
                        }
                        let entry = BlockEntry::inline(chunk);
                        inflight.push_back(futures::future::Either::Left(futures::future::ready(
                            Ok(entry),
                        )));
                        continue;
                    }
                    let (id, chunk) = match sealed_id {
                        Some(id) => (id, chunk),
                        None => hash_block(chunk).await,
                    };
                    if let Some(holders) = known.get(&id) {
                        reused_blocks += 1;
                        if let Some(p) = &progress {
                            p(u64::from(len));
                        }
                        let entry = BlockEntry::held(id, len, holders.clone());
                        inflight.push_back(futures::future::Either::Left(futures::future::ready(
                            Ok(entry),
                        )));
                        continue;
                    }
                    new_blocks += 1;
                    let progress = progress.clone();
                    let fut = self.store_block(name, id, chunk);
                    inflight.push_back(futures::future::Either::Right(async move {
                        let holders = fut.await?;
                        if let Some(p) = &progress {
                            p(u64::from(len));
                        }
                        Ok::<_, Error>(BlockEntry::held(id, len, holders))
                    }));
                }
                match inflight.next().await {
                    Some(entry) => {
                        let entry = entry?;
                        blocks.push(entry);
                    }
                    None => break,
                }
            }
            Ok::<_, Error>((blocks, size, new_blocks, reused_blocks))
        };
        let ((version, created), (blocks, size, new_blocks, reused_blocks)) =
            futures::future::try_join(version, upload).await?;
        let r = self.replication_hint();
        // An inline block lives in the record itself: no holders to reach.
        let under = blocks
            .iter()
            .filter(|b| !b.is_inline() && b.holders.len() < r)
            .count();
        let now = now_ms();
        let created_ms = created.unwrap_or(now);
        let (sealed, capability) = match (seal, &key) {
            (Some(seal), Some(key)) => {
                let (sealed, cap) = seal.seal(&self.reader_secret()?, name, created_ms, key)?;
                (Some(sealed), Some(cap))
            }
            _ => (None, None),
        };
        let mut record = FileRecord {
            name: name.to_string(),
            version,
            size,
            block_size,
            blocks,
            owner: self.peer_id(),
            owner_key: Vec::new(),
            created_ms,
            modified_ms: now,
            tombstone: false,
            sealed,
            signature: Vec::new(),
        };
        record.sign(&self.key)?;
        let block_count = record.blocks.len();
        match self.request(ClientRequest::Publish { record }).await? {
            ClientResponse::Published {
                key,
                version,
                root,
                replicas,
            } => {
                self.published(name, version);
                let outcome = PutOutcome {
                    name: name.to_string(),
                    key,
                    root,
                    replicas,
                    version,
                    size: record_plain_size(size, block_count, capability.is_some()),
                    blocks: block_count,
                    new_blocks,
                    reused_blocks,
                    under_replicated: under,
                    private: capability.is_some(),
                };
                Ok((outcome, capability))
            }
            other => Err(unexpected(other)),
        }
    }

    /// The replication the swarm aims for (as the access node reported it).
    fn replication_hint(&self) -> usize {
        self.placement
            .try_lock()
            .ok()
            .and_then(|p| p.as_ref().map(|(_, r, _)| *r))
            .unwrap_or(3)
    }

    /// Placement candidates and R, cached for a few seconds.
    async fn candidates(&self) -> Result<(usize, Vec<client::Candidate>)> {
        let mut cached = self.placement.lock().await;
        if let Some((at, r, c)) = cached.as_ref() {
            if at.elapsed() < PLACEMENT_CACHE {
                return Ok((*r, c.clone()));
            }
        }
        match self.request(ClientRequest::Peers).await? {
            ClientResponse::Peers {
                replication,
                candidates,
            } => {
                *cached = Some((std::time::Instant::now(), replication, candidates.clone()));
                Ok((replication, candidates))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Stores a block on R holders: straight to the holders the placement rules pick (the
    /// access node is not a data hop), or through the access node if that does not work out.
    async fn store_block(&self, name: &str, id: BlockId, data: Vec<u8>) -> Result<Vec<PeerId>> {
        if self.direct_reads {
            if let Ok(holders) = self.store_direct(name, id, &data).await {
                return Ok(holders);
            }
        }
        let req = ClientRequest::PutBlock {
            id,
            file: name.to_string(),
            data,
        };
        match self.request(req).await? {
            ClientResponse::BlockStored { holders } => Ok(holders),
            other => Err(unexpected(other)),
        }
    }

    async fn store_direct(&self, name: &str, id: BlockId, data: &[u8]) -> Result<Vec<PeerId>> {
        let (r, candidates) = self.candidates().await?;
        let addrs: HashMap<PeerId, Vec<Multiaddr>> = candidates
            .iter()
            .map(|c| {
                let direct = c.addrs.iter().filter(|x| !is_relayed(x)).cloned().collect();
                (c.peer, direct)
            })
            .collect();
        let order = placement::holder_order(
            &id.kad_point(),
            candidates
                .iter()
                .map(|c| placement::Candidate {
                    peer: c.peer,
                    point: peer_point(&c.peer),
                    free: c.free,
                })
                .collect(),
            data.len() as u64,
        );
        let want = r.min(order.len());
        // A holder the client can reach only through a relay gets its copy via the access node
        // instead (blocks never ride relays), so placement stays what the swarm expects.
        if order
            .iter()
            .take(want)
            .any(|p| addrs.get(p).is_none_or(|a| a.is_empty()))
        {
            return Err(Error::Network(format!(
                "a holder of block {id} has no direct address"
            )));
        }
        // The write pipeline: the block goes once to the first holder, which stores it and
        // passes it along the chain of the others (so the client sends 1x the file, not Rx).
        let mut holders = self.put_chain(name, id, data, &order[..want], &addrs).await;
        // Whatever the chain did not store (a link died, refused, or is an older node that
        // stores without forwarding) the client sends directly, to the next candidates.
        let mut next = 0;
        let mut inflight = futures::stream::FuturesUnordered::new();
        while holders.len() < want {
            while holders.len() + inflight.len() < want && next < order.len() {
                let peer = order[next];
                next += 1;
                if holders.contains(&peer) {
                    continue;
                }
                let req = BlockRequest::Put {
                    id,
                    file: name.to_string(),
                    data: data.to_vec(),
                };
                let a = addrs.get(&peer).cloned().unwrap_or_default();
                let fut = self.session.block(peer, a, req);
                inflight.push(async move { (peer, fut.await) });
            }
            match inflight.next().await {
                Some((peer, Ok(BlockResponse::Stored))) => holders.push(peer),
                Some(_) => {}
                None => break,
            }
        }
        if holders.len() < want || holders.is_empty() {
            return Err(Error::Network(format!(
                "block {id} reached {} of {want} holders directly",
                holders.len()
            )));
        }
        Ok(holders)
    }
}

impl Client {
    /// Sends `data` to `chain[0]` to be stored by every peer of `chain` in turn; the peers
    /// of the chain that report having stored it (an empty list when the first link fails).
    async fn put_chain(
        &self,
        name: &str,
        id: BlockId,
        data: &[u8],
        chain: &[PeerId],
        addrs: &HashMap<PeerId, Vec<Multiaddr>>,
    ) -> Vec<PeerId> {
        let Some((first, then)) = chain.split_first() else {
            return Vec::new();
        };
        let req = BlockRequest::PutChain {
            id,
            file: name.to_string(),
            data: data.to_vec(),
            then: then.to_vec(),
        };
        let a = addrs.get(first).cloned().unwrap_or_default();
        let holders = match self.session.block(*first, a, req).await {
            Ok(BlockResponse::StoredBy { holders }) => holders,
            Ok(BlockResponse::Stored) => vec![*first],
            Ok(other) => {
                tracing::debug!(block = %id, peer = %first, "chain refused: {other:?}");
                Vec::new()
            }
            Err(e) => {
                tracing::debug!(block = %id, peer = %first, "chain failed: {e}");
                Vec::new()
            }
        };
        let mut unique = Vec::with_capacity(holders.len().min(chain.len()));
        for p in holders {
            if chain.contains(&p) && !unique.contains(&p) {
                unique.push(p);
            }
        }
        unique
    }
}

/// The version after `v`, refused at the top of the range instead of wrapping.
pub(super) fn next_version(name: &str, v: u64) -> Result<u64> {
    v.checked_add(1)
        .filter(|n| *n <= crate::record::MAX_VERSION)
        .ok_or_else(|| Error::Invalid(format!("{name:?} is at the highest version ({v})")))
}

/// Fills up to `max` bytes from `reader`; shorter only at end of input. The buffer has room
/// for `spare` more bytes.
async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
    spare: usize,
) -> Result<Vec<u8>> {
    // Reserved, not zeroed: a small file must not pay for clearing a whole block (it was a
    // fifth of an S3 node's CPU under small puts). The slack keeps `read_to_end`'s probe for
    // more input from reallocating a full buffer.
    let mut buf = Vec::with_capacity(max.saturating_add(spare).saturating_add(64));
    (&mut *reader)
        .take(max as u64)
        .read_to_end(&mut buf)
        .await?;
    Ok(buf)
}
