//! What nodes and clients share to speak swarmstore over libp2p: the transport stack
//! ([`transport`]), the builders and timeouts of our request-response protocols
//! ([`protocols`]), the wrapper that tells their codecs which peer they read from
//! ([`metered`]), and address helpers ([`addr`]).
//!
//! Below the node and the client, above the wire types: a client links this, never the node.

pub mod addr;
pub mod metered;
pub mod protocols;
pub mod transport;

pub use addr::{is_loopback, is_quic, is_relayed, preferred_addr};
pub use protocols::{
    identify_config, ping_behaviour, rr, rr_with, BlockRR, ClientRR, MetaRR, BLOCK_TIMEOUT,
    CLIENT_TIMEOUT, MAX_STREAMS_PER_PROTOCOL, META_TIMEOUT,
};
pub use transport::{
    build_swarm, new_swarm_key, read_swarm_key, yamux_config, MAX_STREAMS_PER_CONNECTION,
};

/// Relay circuits carry at most this many bytes each way (libp2p's default is 128 KiB).
/// Enough for metadata traffic between nodes (records are at most a few MiB) and for a client
/// that can only reach its access node through a relay to read or write small files. Blocks
/// between nodes never ride a relay: they wait for a direct connection instead.
pub const RELAY_CIRCUIT_BYTES: u64 = 16 * 1024 * 1024;

/// Why a swarm could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot set up {what}: {reason}")]
    Setup { what: &'static str, reason: String },
    #[error("cannot read swarm key {path}: {reason}")]
    SwarmKey { path: String, reason: String },
}

impl TransportError {
    pub fn setup(what: &'static str, e: impl std::fmt::Display) -> Self {
        TransportError::Setup {
            what,
            reason: e.to_string(),
        }
    }
}
