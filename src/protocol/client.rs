//! `/swarmstore/client/1`: a client and its access node.
//!
//! The client streams blocks to the access node (which places each on R holders), then sends
//! the signed record to publish. Reads go the other way: the record first, then the blocks,
//! several in flight.

use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

use super::status::NodeStatus;
use crate::ids::{BlockId, FileKey};
use crate::record::{DownloadNote, FileRecord, FileState, RecordError};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmstore/client/1");
/// Requests carry a block or a record; responses carry a block or a file state. The ceiling;
/// each message kind has its own limit below it (`super::limits`).
pub const FRAME_LIMIT: usize = super::meta::FRAME_LIMIT;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Place a block of file `file` on R holders chosen by the access node.
    PutBlock {
        id: BlockId,
        file: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Publish an owner-signed record whose blocks were stored with `PutBlock`.
    Publish { record: FileRecord },
    /// Read a file's record set. A download carries the client's signed note, which adds it
    /// to the file's user list; a `stat` carries none.
    Fetch {
        name: String,
        note: Option<DownloadNote>,
    },
    /// Read one block from the given holders (the access node fails over between them).
    GetBlock { id: BlockId, holders: Vec<PeerId> },
    /// The access node's view of the swarm.
    Status,
    /// Live storage peers to place blocks on, so the client can write to holders directly.
    Peers,
}

impl ClientRequest {
    /// The request's kind, as metrics and logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientRequest::PutBlock { .. } => "put_block",
            ClientRequest::Publish { .. } => "publish",
            ClientRequest::Fetch { .. } => "fetch",
            ClientRequest::GetBlock { .. } => "get_block",
            ClientRequest::Status => "status",
            ClientRequest::Peers => "peers",
        }
    }

    /// Every kind [`ClientRequest::kind`] returns.
    pub const KINDS: &'static [&'static str] = &[
        "put_block",
        "publish",
        "fetch",
        "get_block",
        "status",
        "peers",
    ];
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ClientResponse {
    BlockStored {
        holders: Vec<PeerId>,
    },
    Published {
        key: FileKey,
        version: u64,
        root: PeerId,
        replicas: Vec<PeerId>,
    },
    File {
        key: FileKey,
        root: PeerId,
        replicas: Vec<PeerId>,
        state: FileState,
        /// Addresses of the block holders, so the client can read blocks straight from them.
        addrs: Vec<(PeerId, Vec<libp2p::Multiaddr>)>,
    },
    Block {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Status(Box<NodeStatus>),
    Peers {
        replication: usize,
        candidates: Vec<Candidate>,
    },
    NotFound {
        name: String,
    },
    Rejected {
        error: RecordError,
    },
    Error {
        message: String,
    },
}

/// A storage peer a client may place blocks on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub peer: PeerId,
    pub addrs: Vec<libp2p::Multiaddr>,
    pub free: Option<u64>,
}
