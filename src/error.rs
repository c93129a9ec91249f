//! The library's error type: what a client or CLI user can act on.

use crate::record::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found: {0:?}")]
    NotFound(String),
    #[error("deleted: {name:?} was removed at version {version}")]
    Deleted { name: String, version: u64 },
    #[error("{name:?} already exists at version {version}; use `swarmstore update` to change it")]
    AlreadyExists { name: String, version: u64 },
    #[error("{0}")]
    Rejected(#[from] RecordError),
    #[error("cannot reach the access node at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("network: {0}")]
    Network(String),
    /// A private file this client holds no key for: not the owner, not shared with it, and no
    /// capability given.
    #[error("no read capability for {0:?}: it is private; ask its owner to share it or for a capability")]
    NoCapability(String),
    #[error("no such bucket: {0:?}")]
    NoSuchBucket(String),
    #[error("bucket {name:?} is not empty (it still lists {keys} object(s) or more)")]
    BucketNotEmpty { name: String, keys: usize },
    /// The name is taken; `yours` when by this very client (creating it again changes nothing).
    #[error("bucket {name:?} already exists{}", if *yours { " and is yours" } else { ", owned by someone else" })]
    BucketExists { name: String, yours: bool },
    #[error("integrity: {0}")]
    Integrity(String),
    #[error("{0}")]
    Invalid(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Process exit code for the CLI: distinct codes for the outcomes scripts branch on.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound(_) | Error::Deleted { .. } | Error::NoSuchBucket(_) => 2,
            Error::AlreadyExists { .. }
            | Error::Rejected(RecordError::Conflict { .. })
            | Error::BucketExists { .. }
            | Error::BucketNotEmpty { .. } => 3,
            Error::Rejected(RecordError::PermissionDenied { .. }) | Error::NoCapability(_) => 4,
            Error::Unreachable { .. } => 5,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
