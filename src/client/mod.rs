//! The client library: an identity of its own, one connection to an access node, and the
//! put / get / stat operations the CLI is built on.
//!
//! A client is not a DHT server. It streams a file as fixed-size blocks with a bounded window
//! in flight (constant memory for any file size), signs the record, and reads files back block
//! by block, verifying every hash before a byte reaches the caller. `session` is the
//! connection, `write` the put / update / rm path, `read` the get path. Like any other
//! implementation, it speaks only the wire types of `crate::protocol`.

pub mod bucket;
mod holders;
mod private;
mod read;
pub mod seal;
mod session;
mod write;

pub use bucket::{BucketInfo, BucketOptions, ObjectMeta};
pub use seal::Capability;
use seal::ReaderSecret;
pub use session::wait_closed;

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids::{validate_name, FileKey};
use crate::net::is_relayed;
use crate::protocol::client::{self, ClientRequest, ClientResponse};
use crate::protocol::status::NodeStatus;
use crate::record::{
    check_state, now_ms, BlockEntry, DownloadNote, FileState, UserEntry, UserRole,
    DEFAULT_BLOCK_SIZE, INLINE_MAX, MAX_BLOCK_SIZE,
};

/// Files whose newest version a client remembers (for monotonic reads); cleared when full.
const MAX_SEEN: usize = 100_000;
use session::Session;

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
    /// Sealed on this client (`size` is then the content's, without the blocks' tags).
    pub private: bool,
}

/// What a get reports once every byte is verified and written.
#[derive(Debug, Clone, Serialize)]
pub struct GetOutcome {
    pub name: String,
    pub version: u64,
    pub size: u64,
    pub blocks: usize,
}

impl GetOutcome {
    /// The outcome of reading all of `record`.
    pub fn of(record: &crate::record::FileRecord) -> Self {
        GetOutcome {
            name: record.name.clone(),
            version: record.version,
            size: record.plain_size(),
            blocks: record.blocks.len(),
        }
    }
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
    /// The content's size (a private file stores a 16-byte tag more per block).
    pub size: u64,
    pub block_size: u32,
    /// Sealed on its owner's client; `readers` keys can open it (owner and capability
    /// included).
    pub private: bool,
    pub readers: usize,
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
            size: head.plain_size(),
            block_size: head.block_size,
            private: head.sealed.is_some(),
            readers: head.sealed.as_ref().map(|s| s.wraps.len()).unwrap_or(0),
            blocks: head
                .blocks
                .iter()
                .map(|b| BlockEntry::held(b.id, b.len, b.holders.clone()))
                .collect(),
            inline: head.blocks.iter().any(|b| b.is_inline()),
            owner: head.owner,
            users: state.users.iter().map(user_view).collect(),
            // A fresh history after a tombstone keeps the tombstone only as the proof of the
            // name's release: it is not a version of this file.
            versions: state
                .versions
                .iter()
                .filter(|r| !r.tombstone || r.version == head.version)
                .map(|r| r.version)
                .collect(),
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
    session: Session,
    key: Keypair,
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
    /// The newest version this client saw of each file: an access node serving an older one
    /// is caught.
    seen: std::sync::Mutex<HashMap<FileKey, u64>>,
    /// Time of this client's last download note.
    last_note: std::sync::Mutex<u64>,
    /// Which holders to try first and how long to wait for them.
    holders: holders::HolderOrder,
    /// Queued index page changes and recently read bucket records.
    buckets: bucket::batch::BucketState,
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
        let session = Session::connect(addr, key.clone(), swarm_key).await?;
        Ok(Client {
            session,
            key,
            block_size: DEFAULT_BLOCK_SIZE,
            holder_addrs: std::sync::Mutex::new(HashMap::new()),
            direct_reads: true,
            inline_max: INLINE_MAX,
            placement: tokio::sync::Mutex::new(None),
            seen: std::sync::Mutex::new(HashMap::new()),
            last_note: std::sync::Mutex::new(0),
            holders: holders::HolderOrder::default(),
            buckets: Default::default(),
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

    /// This client's X25519 secret (its ed25519 identity in Montgomery form).
    pub(super) fn reader_secret(&self) -> Result<ReaderSecret> {
        ReaderSecret::of_identity(&self.key)
            .ok_or_else(|| Error::Invalid("private files need an ed25519 client identity".into()))
    }

    pub fn peer_id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    pub fn access_peer(&self) -> PeerId {
        self.session.access
    }

    async fn request(&self, req: ClientRequest) -> Result<ClientResponse> {
        self.session.request(req).await
    }

    /// Reads a file's record set (and its root and replicas) without downloading it.
    pub(super) async fn fetch_state(
        &self,
        name: &str,
        download: bool,
    ) -> Result<Option<(FileKey, PeerId, Vec<PeerId>, FileState)>> {
        validate_name(name).map_err(Error::Invalid)?;
        let file = FileKey::for_name(name);
        let note = download.then(|| DownloadNote::sign(file, &self.key, self.note_time()));
        // What this client knew before asking: a reply may be older than a write of ours that
        // finished while the request was out (that is concurrency, not a stale read).
        let floor = self.seen_version(name);
        let req = ClientRequest::Fetch {
            name: name.to_string(),
            note,
        };
        match self.request(req).await? {
            ClientResponse::File {
                key,
                root,
                replicas,
                state,
                addrs,
            } => {
                // The access node is trusted to answer, not to be right: every version must be
                // the owner's, for this name, in one chain, and no older than what this client
                // has seen (root-kept fields were checked by the access node; holders are
                // re-checked by hashing every block read).
                check_state(&file, &state).map_err(|e| {
                    Error::Integrity(format!("the access node returned an invalid record: {e}"))
                })?;
                self.note_seen(name, &state, floor)?;
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

    /// A download note's time: the clock, but strictly later than this client's last note, so
    /// two downloads in one millisecond are two (a root counts a note only if it is newer than
    /// the reader's last one, which is what stops replays).
    fn note_time(&self) -> u64 {
        let mut last = self.last_note.lock().unwrap_or_else(|p| p.into_inner());
        *last = now_ms().max(last.saturating_add(1));
        *last
    }

    /// The newest version of `name` this client has seen or published (0 if none).
    fn seen_version(&self, name: &str) -> u64 {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&FileKey::for_name(name)).copied().unwrap_or(0)
    }

    /// Refuses a state older than `floor`, the version this client knew of `name` when it
    /// asked; remembers the newest seen.
    fn note_seen(&self, name: &str, state: &FileState, floor: u64) -> Result<()> {
        let version = state.head().map(|h| h.version).unwrap_or(0);
        if version < floor {
            return Err(Error::Integrity(format!(
                "the access node returned version {version} of {name:?}, older than version \
                 {floor} this client already saw"
            )));
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_SEEN {
            seen.clear();
        }
        let e = seen.entry(FileKey::for_name(name)).or_insert(0);
        *e = (*e).max(version);
        Ok(())
    }

    /// Remembers a version this client published.
    pub(super) fn published(&self, name: &str, version: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let e = seen.entry(FileKey::for_name(name)).or_insert(0);
        *e = (*e).max(version);
    }

    /// The access node's view of itself and the swarm.
    pub async fn status(&self) -> Result<NodeStatus> {
        match self.request(ClientRequest::Status).await? {
            ClientResponse::Status(s) => Ok(*s),
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
}

pub(super) fn unexpected(resp: ClientResponse) -> Error {
    match resp {
        ClientResponse::NotFound { name } => Error::NotFound(name),
        ClientResponse::Rejected { error } => Error::Rejected(error),
        ClientResponse::Error { message } => Error::Network(message),
        other => Error::Network(format!("unexpected reply from the access node: {other:?}")),
    }
}
