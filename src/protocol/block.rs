//! `/swarmstore/block/1`: block get and put between any peer and a block holder.
//!
//! A holder verifies every block it is given against the id the sender names, and every block
//! it reads back from disk, so a wrong hash is answered with an error and never stored or served.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::ids::{BlockId, Nonce, Proof};
use crate::record::MAX_BLOCK_SIZE;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmstore/block/1");
/// A frame carries at most one block plus a small envelope. The ceiling of the protocol; each
/// message kind has its own limit below it (`super::limits`).
pub const FRAME_LIMIT: usize = MAX_BLOCK_SIZE as usize + 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlockRequest {
    /// Store a block for file `file`; the holder checks that SHA-256 of `data` is `id`.
    Put {
        id: BlockId,
        file: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Store a block and pass it on along `then`, a put's write pipeline (as HDFS's): the
    /// holder stores its copy while it forwards the block to `then[0]` with the rest of the
    /// chain, and answers [`BlockResponse::StoredBy`] with every holder that stored it, so the
    /// client sends each block once. A holder forwards only to a live peer it would itself
    /// place the block on; otherwise the chain ends with it and the client fills the rest.
    /// At most [`MAX_CHAIN`] peers in `then`.
    PutChain {
        id: BlockId,
        file: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        then: Vec<libp2p::PeerId>,
    },
    /// Read a block.
    Get { id: BlockId },
    /// Which of these blocks do you hold? (repair's probe)
    Has { ids: Vec<BlockId> },
    /// Fetch a block of `file` from one of `sources`, verify it and store it (repair, drain
    /// and balancing copy data holder-to-holder, never through a third node).
    Pull {
        id: BlockId,
        file: String,
        sources: Vec<libp2p::PeerId>,
    },
    /// Prove you hold these blocks: answer SHA-256(nonce ‖ id ‖ bytes) for each one held
    /// ([`Proof::of`]). Asked before a copy is released, so a peer that only claims a copy
    /// cannot make others drop theirs. At most [`MAX_PROVE`] ids.
    Prove { nonce: Nonce, ids: Vec<BlockId> },
}

/// Most blocks one `Prove` may name: each costs the holder a read of the block.
pub const MAX_PROVE: usize = 16;
/// Most peers a `PutChain` may name after the receiver.
pub const MAX_CHAIN: usize = 7;

impl BlockRequest {
    /// The request's kind, as metrics and logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            BlockRequest::Put { .. } => "put",
            BlockRequest::PutChain { .. } => "put-chain",
            BlockRequest::Get { .. } => "get",
            BlockRequest::Has { .. } => "has",
            BlockRequest::Pull { .. } => "pull",
            BlockRequest::Prove { .. } => "prove",
        }
    }

    /// Every kind [`BlockRequest::kind`] returns.
    pub const KINDS: &'static [&'static str] = &["put", "put-chain", "get", "has", "pull", "prove"];
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlockResponse {
    Stored,
    /// Answer to a `PutChain`: the peers of the chain (the receiver first) that stored the
    /// block, as far as the receiver knows; the root still checks every listed holder.
    StoredBy {
        holders: Vec<libp2p::PeerId>,
    },
    Data {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    NotFound,
    Have {
        ids: Vec<BlockId>,
    },
    /// Answers to a `Prove`, for the blocks held (others are left out).
    Proofs {
        proofs: Vec<(BlockId, Proof)>,
    },
    Error {
        message: String,
    },
}
