//! Every type that crosses the wire, one file per protocol: `/swarmstore/client/1`
//! ([`client`]), `/swarmstore/meta/1` ([`meta`]), `/swarmstore/block/1` ([`block`]), the
//! gossip topics ([`gossip`]), the status replies ([`status`]), the frame codec ([`codec`])
//! with its limits per message kind ([`limits`]) and its budget of buffered bytes
//! ([`budget`]). Imports only ids and records, so client, node and other implementations share
//! one definition. Names are stable; a breaking change bumps the protocol's version.

pub mod block;
pub mod budget;
pub mod client;
pub mod codec;
pub mod gossip;
pub mod limits;
pub mod meta;
pub mod status;

pub use budget::Budget;
pub use codec::CborCodec;

/// Kademlia protocol: a DHT of our own, not the public IPFS one.
pub const KAD_PROTOCOL: libp2p::StreamProtocol =
    libp2p::StreamProtocol::new("/swarmstore/kad/1.0.0");
/// Identify's protocol-version string we send. Informational: a peer is a storage peer when it
/// serves [`KAD_PROTOCOL`] and the block protocol, whatever version string it sends.
pub const IDENTIFY_VERSION: &str = "/swarmstore/1.0.0";
