//! The client library: an identity of its own, one connection to an access node, and the
//! put / get / stat operations the CLI is built on.
//!
//! A client is not a DHT server. It streams a file as fixed-size blocks with a bounded window
//! in flight (constant memory for any file size), signs the record, and reads files back block
//! by block, verifying every hash before a byte reaches the caller.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, ping, relay, Multiaddr, PeerId, Swarm};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::ids::{validate_name, BlockId, FileKey};
use crate::node::behaviour::{identify_config, ping_behaviour, rr, BLOCK_TIMEOUT, CLIENT_TIMEOUT};
use crate::node::nat::RELAY_CIRCUIT_BYTES;
use crate::node::transport::{build_swarm, is_relayed};
use crate::protocol::block::{self, BlockRequest, BlockResponse};
use crate::protocol::client::{self, ClientRequest, ClientResponse};
use crate::protocol::CborCodec;
use crate::record::{
    now_ms, BlockEntry, FileRecord, FileState, RecordError, UserEntry, UserRole,
    DEFAULT_BLOCK_SIZE, INLINE_MAX, MAX_BLOCK_SIZE,
};

/// Blocks in flight during a put: bounds memory to `PUT_WINDOW × block size` per side.
const PUT_WINDOW: usize = 4;
/// Blocks in flight during a get.
const GET_WINDOW: usize = 8;
/// How long the client reuses the access node's list of placement candidates.
const PLACEMENT_CACHE: Duration = Duration::from_secs(5);
/// Longest wait for one direct block read before trying the next holder.
const DIRECT_ATTEMPT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(NetworkBehaviour)]
struct ClientBehaviour {
    /// Lets a client reach an access node that listens only through a relay.
    relay_client: relay::client::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    client: request_response::Behaviour<CborCodec<ClientRequest, ClientResponse>>,
    /// Blocks straight from holders (HDFS-style reads: the access node is not a data hop).
    block: request_response::Behaviour<CborCodec<BlockRequest, BlockResponse>>,
}

enum Command {
    Request {
        req: ClientRequest,
        reply: oneshot::Sender<Result<ClientResponse>>,
    },
    Block {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        req: BlockRequest,
        reply: oneshot::Sender<Result<BlockResponse>>,
    },
}

/// Progress callback: called with the number of bytes just transferred.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// What a successful put or update reports.
#[derive(Debug, Clone, Serialize)]
pub struct PutOutcome {
    pub name: String,
    pub key: FileKey,
    pub root: PeerId,
    pub replicas: Vec<PeerId>,
    pub version: u64,
    pub size: u64,
    pub blocks: usize,
    /// Blocks uploaded in this operation.
    pub new_blocks: usize,
    /// Blocks already stored by an earlier version and reused.
    pub reused_blocks: usize,
    /// Blocks that reached fewer than R holders (repair will top them up).
    pub under_replicated: usize,
}

/// What a get reports once every byte is verified and written.
#[derive(Debug, Clone, Serialize)]
pub struct GetOutcome {
    pub name: String,
    pub version: u64,
    pub size: u64,
    pub blocks: usize,
}

/// One user-list entry as shown by `stat`.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub peer: PeerId,
    pub role: UserRole,
    /// Last access, Unix milliseconds.
    pub at: u64,
    pub first: u64,
    pub count: u64,
}

/// A file's record as `stat` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub name: String,
    pub key: FileKey,
    pub root: PeerId,
    pub replicas: Vec<PeerId>,
    pub version: u64,
    pub size: u64,
    pub block_size: u32,
    /// The blocks with their holders (an inline file's block is listed without its bytes).
    pub blocks: Vec<BlockEntry>,
    /// The file's bytes travel inside its record: its R copies are the record's replicas.
    pub inline: bool,
    pub owner: PeerId,
    pub users: Vec<UserView>,
    pub versions: Vec<u64>,
    pub deleted: bool,
    pub created_ms: u64,
    pub modified_ms: u64,
}

impl FileInfo {
    fn new(key: FileKey, root: PeerId, replicas: Vec<PeerId>, state: &FileState) -> Option<Self> {
        let head = state.head()?;
        Some(Self {
            name: head.name.clone(),
            key,
            root,
            replicas,
            version: head.version,
            size: head.size,
            block_size: head.block_size,
            blocks: head
                .blocks
                .iter()
                .map(|b| BlockEntry::held(b.id, b.len, b.holders.clone()))
                .collect(),
            inline: head.blocks.iter().any(|b| b.is_inline()),
            owner: head.owner,
            users: state.users.iter().map(user_view).collect(),
            versions: state.versions.iter().map(|r| r.version).collect(),
            deleted: head.tombstone,
            created_ms: head.created_ms,
            modified_ms: head.modified_ms,
        })
    }
}

fn user_view(u: &UserEntry) -> UserView {
    UserView {
        peer: u.peer,
        role: u.role,
        at: u.last_ms,
        first: u.first_ms,
        count: u.count,
    }
}

/// A connection to an access node.
pub struct Client {
    tx: mpsc::Sender<Command>,
    key: Keypair,
    access: PeerId,
    block_size: u32,
    /// Holder addresses learned from the access node, for direct block reads.
    holder_addrs: std::sync::Mutex<HashMap<PeerId, Vec<Multiaddr>>>,
    /// Read and write blocks straight from and to holders (default), or only through the
    /// access node.
    direct_reads: bool,
    /// Files up to this size go inside their record (0: every file as blocks on holders).
    inline_max: u32,
    /// Placement candidates from the access node, refreshed every few seconds.
    placement: tokio::sync::Mutex<Option<(std::time::Instant, usize, Vec<client::Candidate>)>>,
}

impl Client {
    /// Connects to the access node at `addr` (which should end in `/p2p/<peer id>`).
    /// Fails within 10 s with [`Error::Unreachable`] if the node cannot be reached.
    pub async fn connect(addr: Multiaddr, key: Keypair) -> Result<Client> {
        Self::connect_with(addr, key, None).await
    }

    /// Like [`Client::connect`], into a private swarm whose pre-shared key is `swarm_key`.
    pub async fn connect_with(
        addr: Multiaddr,
        key: Keypair,
        swarm_key: Option<PreSharedKey>,
    ) -> Result<Client> {
        let unreachable = |reason: String| Error::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        // Its registry is never served: a client's bandwidth is not worth an endpoint.
        let mut registry = libp2p::metrics::Registry::default();
        let mut swarm = build_swarm(
            key.clone(),
            swarm_key,
            &mut registry,
            Duration::from_secs(60),
            |key, relay_client| {
                Ok(ClientBehaviour {
                    relay_client,
                    identify: identify::Behaviour::new(identify_config(key)),
                    ping: ping_behaviour(Duration::from_secs(10)),
                    client: rr(
                        client::PROTOCOL,
                        ProtocolSupport::Outbound,
                        client::FRAME_LIMIT,
                        CLIENT_TIMEOUT,
                    ),
                    block: rr(
                        block::PROTOCOL,
                        ProtocolSupport::Outbound,
                        block::FRAME_LIMIT,
                        BLOCK_TIMEOUT,
                    ),
                })
            },
        )
        .map_err(|e| unreachable(e.to_string()))?;
        let relayed = is_relayed(&addr);
        swarm
            .dial(addr.clone())
            .map_err(|e| unreachable(e.to_string()))?;
        let wanted = match addr.iter().last() {
            Some(Protocol::P2p(p)) => Some(p),
            _ => None,
        };
        let access = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match swarm.select_next_some().await {
                    // Through a relay, the relay itself connects first.
                    SwarmEvent::ConnectionEstablished { peer_id, .. }
                        if relayed && wanted.is_some_and(|w| w != peer_id) => {}
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => return Ok(peer_id),
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        return Err(unreachable(error.to_string()))
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))??;
        if wanted.is_some_and(|w| w != access) {
            return Err(unreachable(format!("the node there is {access}")));
        }
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run_client_loop(swarm, rx, access, relayed));
        Ok(Client {
            tx,
            key,
            access,
            block_size: DEFAULT_BLOCK_SIZE,
            holder_addrs: std::sync::Mutex::new(HashMap::new()),
            direct_reads: true,
            inline_max: INLINE_MAX,
            placement: tokio::sync::Mutex::new(None),
        })
    }

    /// Sets the block size for puts (default 1 MiB).
    pub fn with_block_size(mut self, size: u32) -> Self {
        self.block_size = size.clamp(1, MAX_BLOCK_SIZE);
        self
    }

    /// Files up to `max` bytes (at most [`INLINE_MAX`]) travel inside their record; 0 stores
    /// every file as blocks on holders.
    pub fn with_inline_max(mut self, max: u32) -> Self {
        self.inline_max = max.min(INLINE_MAX);
        self
    }

    /// Reads and writes blocks only through the access node (for clients that cannot dial
    /// holders, e.g. behind a NAT that only lets them reach their access node).
    pub fn with_direct_reads(mut self, on: bool) -> Self {
        self.direct_reads = on;
        self
    }

    pub fn peer_id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    pub fn access_peer(&self) -> PeerId {
        self.access
    }

    async fn request(&self, req: ClientRequest) -> Result<ClientResponse> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Request { req, reply })
            .await
            .map_err(|_| Error::Network("connection to the access node is gone".into()))?;
        rx.await
            .map_err(|_| Error::Network("connection to the access node is gone".into()))?
    }

    /// Reads a file's record set (and its root and replicas) without downloading it.
    async fn fetch_state(
        &self,
        name: &str,
        download: bool,
    ) -> Result<Option<(FileKey, PeerId, Vec<PeerId>, FileState)>> {
        validate_name(name).map_err(Error::Invalid)?;
        let req = ClientRequest::Fetch {
            name: name.to_string(),
            download,
        };
        match self.request(req).await? {
            ClientResponse::File {
                key,
                root,
                replicas,
                state,
                addrs,
            } => {
                let mut known = self.holder_addrs.lock().unwrap_or_else(|p| p.into_inner());
                for (peer, a) in addrs {
                    // Blocks never ride relays: only direct addresses are worth dialling.
                    let direct: Vec<Multiaddr> = a.into_iter().filter(|x| !is_relayed(x)).collect();
                    if !direct.is_empty() {
                        known.insert(peer, direct);
                    }
                }
                Ok(Some((key, root, replicas, state)))
            }
            ClientResponse::NotFound { .. } => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// The access node's view of itself and the swarm.
    pub async fn status(&self) -> Result<crate::protocol::client::NodeStatus> {
        match self.request(ClientRequest::Status).await? {
            ClientResponse::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// The file's record: version, size, blocks and holders, root, replicas, users.
    pub async fn stat(&self, name: &str) -> Result<FileInfo> {
        let (key, root, replicas, state) = self
            .fetch_state(name, false)
            .await?
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        FileInfo::new(key, root, replicas, &state).ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// Publishes a new file from `reader`. Fails with [`Error::AlreadyExists`] if the name is
    /// taken by a live file.
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        mut reader: R,
        progress: Option<Progress>,
    ) -> Result<PutOutcome> {
        validate_name(name).map_err(Error::Invalid)?;
        // A small file is one signed record: publish it as version 1 straight away. The root
        // refuses that if the name is taken; the checked path below then says how.
        let mut head = Vec::new();
        let limit = u64::from(self.inline_max.min(self.block_size.saturating_sub(1)));
        (&mut reader).take(limit + 1).read_to_end(&mut head).await?;
        let small = head.len() as u64 <= limit;
        if small {
            let first = async { Ok((1, None)) };
            if let Ok(outcome) = self
                .publish_from(name, first, &head[..], &HashMap::new(), progress.clone())
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
                    Some(h) => Ok((h.version + 1, None)),
                    None => Ok((1, None)),
                },
                None => Ok((1, None)),
            }
        };
        if small {
            self.publish_from(name, check, &head[..], &HashMap::new(), progress)
                .await
        } else {
            let reader = (&head[..]).chain(reader);
            self.publish_from(name, check, reader, &HashMap::new(), progress)
                .await
        }
    }

    /// The head a change by this client may follow: it exists, is live, is ours, and is at
    /// `if_version` when one is given. The root enforces the same rules; checking here first
    /// saves uploading blocks that would be refused.
    async fn head_for_change(&self, name: &str, if_version: Option<u64>) -> Result<FileState> {
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
        let next = (head.version + 1, Some(head.created_ms));
        self.publish_from(name, async move { Ok(next) }, reader, &known, progress)
            .await
    }

    /// Deletes a file this client owns: a signed tombstone at the next version. Its blocks are
    /// collected once no retained version of any file references them. Returns the tombstone's
    /// version.
    pub async fn remove(&self, name: &str, if_version: Option<u64>) -> Result<u64> {
        let state = self.head_for_change(name, if_version).await?;
        let head = state
            .head()
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let mut record = FileRecord {
            name: name.to_string(),
            version: head.version + 1,
            size: 0,
            block_size: head.block_size,
            blocks: Vec::new(),
            owner: self.peer_id(),
            owner_key: Vec::new(),
            created_ms: head.created_ms,
            modified_ms: now_ms(),
            tombstone: true,
            signature: Vec::new(),
        };
        record.sign(&self.key)?;
        match self.request(ClientRequest::Publish { record }).await? {
            ClientResponse::Published { version, .. } => Ok(version),
            other => Err(unexpected(other)),
        }
    }

    /// Publishes `data` as a new file.
    pub async fn put_bytes(&self, name: &str, data: &[u8]) -> Result<PutOutcome> {
        self.put(name, data, None).await
    }

    /// Uploads the blocks of `reader` (reusing those in `known`) while `version` resolves to
    /// the version and creation time the record takes, then signs and publishes the record.
    /// An error from `version` stops the upload at once.
    async fn publish_from<R, V>(
        &self,
        name: &str,
        version: V,
        mut reader: R,
        known: &HashMap<BlockId, Vec<PeerId>>,
        progress: Option<Progress>,
    ) -> Result<PutOutcome>
    where
        R: AsyncRead + Unpin,
        V: std::future::Future<Output = Result<(u64, Option<u64>)>>,
    {
        validate_name(name).map_err(Error::Invalid)?;
        let block_size = self.block_size;
        let upload = async {
            let mut blocks: Vec<BlockEntry> = Vec::new();
            let mut inflight = FuturesOrdered::new();
            let mut size: u64 = 0;
            let mut new_blocks = 0;
            let mut reused_blocks = 0;
            let mut eof = false;
            loop {
                while !eof && inflight.len() < PUT_WINDOW {
                    let chunk = read_chunk(&mut reader, block_size as usize).await?;
                    if chunk.is_empty() {
                        eof = true;
                        break;
                    }
                    let first = size == 0;
                    size += chunk.len() as u64;
                    let len = chunk.len() as u32;
                    // A short first chunk is the whole file.
                    if first && len < block_size && len <= self.inline_max {
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
                    let (id, chunk) = crate::node::access::hash(chunk).await;
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
        let under = blocks.iter().filter(|b| b.holders.len() < r).count();
        let now = now_ms();
        let mut record = FileRecord {
            name: name.to_string(),
            version,
            size,
            block_size,
            blocks,
            owner: self.peer_id(),
            owner_key: Vec::new(),
            created_ms: created.unwrap_or(now),
            modified_ms: now,
            tombstone: false,
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
            } => Ok(PutOutcome {
                name: name.to_string(),
                key,
                root,
                replicas,
                version,
                size,
                blocks: block_count,
                new_blocks,
                reused_blocks,
                under_replicated: under,
            }),
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
        let order = crate::placement::holder_order(
            &id.kad_point(),
            candidates
                .iter()
                .map(|c| crate::placement::Candidate {
                    peer: c.peer,
                    point: crate::ids::peer_point(&c.peer),
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
        let mut holders = Vec::new();
        let mut next = 0;
        let mut inflight = futures::stream::FuturesUnordered::new();
        while holders.len() < want {
            while holders.len() + inflight.len() < want && next < order.len() {
                let peer = order[next];
                next += 1;
                let req = BlockRequest::Put {
                    id,
                    file: name.to_string(),
                    data: data.to_vec(),
                };
                let a = addrs.get(&peer).cloned().unwrap_or_default();
                let fut = self.block_request(peer, a, req);
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
            for &peer in &entry.holders {
                let addrs = {
                    let known = self.holder_addrs.lock().unwrap_or_else(|p| p.into_inner());
                    known.get(&peer).cloned()
                };
                let Some(addrs) = addrs else { continue };
                let reply = self.block_request(peer, addrs, BlockRequest::Get { id: entry.id });
                let data = match tokio::time::timeout(DIRECT_ATTEMPT, reply).await {
                    Ok(Ok(BlockResponse::Data { data })) => data,
                    _ => continue,
                };
                let (actual, data) = crate::node::access::hash(data).await;
                if actual == entry.id && data.len() == entry.len as usize {
                    return Ok(data);
                }
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
        let (actual, data) = crate::node::access::hash(data).await;
        if actual != entry.id || data.len() != entry.len as usize {
            return Err(Error::Integrity(format!(
                "block {} came back with the wrong content",
                entry.id
            )));
        }
        Ok(data)
    }

    async fn block_request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        req: BlockRequest,
    ) -> Result<BlockResponse> {
        let (reply, rx) = oneshot::channel();
        let gone = || Error::Network("client event loop is gone".into());
        self.tx
            .send(Command::Block {
                peer,
                addrs,
                req,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
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

/// Fills up to `max` bytes from `reader`; shorter only at end of input.
async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    let mut filled = 0;
    while filled < max {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

fn unexpected(resp: ClientResponse) -> Error {
    match resp {
        ClientResponse::NotFound { name } => Error::NotFound(name),
        ClientResponse::Rejected { error } => Error::Rejected(error),
        ClientResponse::Error { message } => Error::Network(message),
        other => Error::Network(format!("unexpected reply from the access node: {other:?}")),
    }
}

async fn run_client_loop(
    mut swarm: Swarm<ClientBehaviour>,
    mut commands: mpsc::Receiver<Command>,
    access: PeerId,
    relayed: bool,
) {
    let mut pending: HashMap<OutboundRequestId, oneshot::Sender<Result<ClientResponse>>> =
        HashMap::new();
    let mut pending_blocks: HashMap<OutboundRequestId, oneshot::Sender<Result<BlockResponse>>> =
        HashMap::new();
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Request { req, reply }) => {
                    let id = swarm.behaviour_mut().client.send_request(&access, req);
                    pending.insert(id, reply);
                }
                Some(Command::Block { peer, addrs, req, reply }) => {
                    let id = swarm
                        .behaviour_mut()
                        .block
                        .send_request_with_addresses(&peer, req, addrs);
                    pending_blocks.insert(id, reply);
                }
                // Every Client handle is gone: close the connection.
                None => break,
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(ClientBehaviourEvent::Client(
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    },
                )) => {
                    if let Some(tx) = pending.remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
                SwarmEvent::Behaviour(ClientBehaviourEvent::Block(
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    },
                )) => {
                    if let Some(tx) = pending_blocks.remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
                SwarmEvent::Behaviour(ClientBehaviourEvent::Block(
                    request_response::Event::OutboundFailure { request_id, error, peer, .. },
                )) => {
                    if let Some(tx) = pending_blocks.remove(&request_id) {
                        let _ = tx.send(Err(Error::Network(format!(
                            "block request to {peer} failed: {error}"
                        ))));
                    }
                }
                SwarmEvent::Behaviour(ClientBehaviourEvent::Client(
                    request_response::Event::OutboundFailure { request_id, error, .. },
                )) => {
                    if let Some(tx) = pending.remove(&request_id) {
                        let hint = if relayed {
                            format!(
                                " (the access node is reached through a relay, which limits each \
                                 circuit to {} MiB; for large files use a direct address of a node)",
                                RELAY_CIRCUIT_BYTES >> 20
                            )
                        } else {
                            String::new()
                        };
                        let _ = tx.send(Err(Error::Network(format!(
                            "request to the access node failed: {error}{hint}"
                        ))));
                    }
                }
                _ => {}
            },
        }
    }
}
