//! `/swarmstore/meta/1`: file records between storage nodes.
//!
//! An access node publishes a signed version to the file's root and reads records from it; the
//! root copies the file's state to the rest of its replica set.

use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

use crate::ids::FileKey;
use crate::record::{DownloadNote, FileRecord, FileState, Position, RecordError};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/swarmstore/meta/1");
/// Records of files up to ~100 GiB (1 MiB blocks, 3 holders each) with a few retained versions.
/// The ceiling of the protocol: only record and state frames may be this large, every other
/// kind has a smaller limit (`super::limits`).
pub const FRAME_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaRequest {
    /// Access node → root: store this owner-signed version and replicate it to the replica set.
    /// The root answers after a majority of the set stored it durably.
    Publish { record: FileRecord },
    /// Root → replica: keep this copy of the file's state (newer versions win).
    Replicate { key: FileKey, state: FileState },
    /// Replica-set anti-entropy: "these are the head versions I hold"; the answer lists the
    /// receiver's head version of each key (0 when it holds none).
    Digest { entries: Vec<(FileKey, Position)> },
    /// To the root: block `block` of file `name` gained holders `add` and lost `remove`
    /// (drain and balancing report the copies they made). Holder lists are root-maintained.
    SetHolders {
        name: String,
        block: crate::ids::BlockId,
        add: Vec<PeerId>,
        remove: Vec<PeerId>,
    },
    /// Read a file's state. `note` is a downloading client's signed note, for the user list.
    Fetch {
        key: FileKey,
        note: Option<DownloadNote>,
    },
    /// Root → delegate (load balancing): the current state of a file whose record reads the
    /// receiver serves. Answered with `Replicated`.
    DelegateState { key: FileKey, state: FileState },
}

impl MetaRequest {
    /// The request's kind, as metrics and logs name it.
    pub fn kind(&self) -> &'static str {
        match self {
            MetaRequest::Publish { .. } => "publish",
            MetaRequest::Replicate { .. } => "replicate",
            MetaRequest::Digest { .. } => "digest",
            MetaRequest::SetHolders { .. } => "set_holders",
            MetaRequest::Fetch { .. } => "fetch",
            MetaRequest::DelegateState { .. } => "delegate_state",
        }
    }

    /// Every kind [`MetaRequest::kind`] returns.
    pub const KINDS: &'static [&'static str] = &[
        "publish",
        "replicate",
        "digest",
        "set_holders",
        "fetch",
        "delegate_state",
    ];
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaResponse {
    Published { version: u64, replicas: Vec<PeerId> },
    Replicated,
    HoldersSet,
    Digest { entries: Vec<(FileKey, Position)> },
    State { state: Option<FileState> },
    Rejected { error: RecordError },
    Error { message: String },
}
