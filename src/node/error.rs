//! A node's typed errors: why it could not start ([`StartError`]), and why one of its
//! internal steps failed ([`NodeError`]). Request handlers turn the latter into protocol
//! error replies; nothing here is shown to a client as is.

use crate::net::TransportError;
use crate::store::StoreError;

/// Why [`super::Node::start`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("cannot open the store in {dir}: {source}")]
    Store { dir: String, source: StoreError },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot subscribe to {topic}: {reason}")]
    Subscribe { topic: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("no listen address left to use (QUIC is off in a private swarm)")]
    NoListenAddr,
    #[error("no listen address came up within 10 s")]
    ListenTimeout,
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
}

/// Why a step inside a running node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request to another peer failed (unreachable, timed out, shutting down).
    #[error(transparent)]
    Net(#[from] crate::Error),
    /// A peer answered, but not with what the step needed.
    #[error("{0}")]
    Refused(String),
    #[error("gossip: {0}")]
    Gossip(String),
    #[error("no replica of {name:?} answered: {failures}")]
    NoReplica { name: String, failures: String },
}
