//! Wire types and codecs, one file per protocol. Names are stable; a breaking change bumps the
//! protocol's version.

pub mod block;
pub mod client;
pub mod codec;
pub mod meta;

pub use codec::CborCodec;

/// Kademlia protocol: a DHT of our own, not the public IPFS one.
pub const KAD_PROTOCOL: libp2p::StreamProtocol =
    libp2p::StreamProtocol::new("/swarmstore/kad/1.0.0");
/// Identify's protocol-version string; peers with another value are not storage peers of ours.
pub const IDENTIFY_VERSION: &str = "/swarmstore/1.0.0";
