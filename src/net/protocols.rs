//! Builders for the protocols both ends configure the same way: our request-response
//! behaviours (length-prefixed CBOR, see [`crate::protocol::codec`]), identify and ping, and the
//! request timeouts each side waits.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::{identify, ping};

use crate::protocol::{self, block, client, meta, CborCodec};

/// The behaviours of our three request-response protocols.
pub type ClientRR =
    request_response::Behaviour<CborCodec<client::ClientRequest, client::ClientResponse>>;
pub type MetaRR = request_response::Behaviour<CborCodec<meta::MetaRequest, meta::MetaResponse>>;
pub type BlockRR =
    request_response::Behaviour<CborCodec<block::BlockRequest, block::BlockResponse>>;

/// Timeouts include the time the remote takes to act: a client's `PutBlock` waits for R holders
/// to fsync, a `Publish` for a majority of the replica set.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
pub const META_TIMEOUT: Duration = Duration::from_secs(60);
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

pub fn identify_config(key: &Keypair) -> identify::Config {
    identify::Config::new(protocol::IDENTIFY_VERSION.to_string(), key.public())
        .with_agent_version(format!("swarmstore/{}", env!("CARGO_PKG_VERSION")))
        .with_push_listen_addr_updates(true)
}

/// Pings often enough that two misses in a row fit in `liveness`: a dead peer is noticed
/// within that bound even when no connection error tells us sooner.
pub fn ping_behaviour(liveness: Duration) -> ping::Behaviour {
    let interval = (liveness / 5).max(Duration::from_millis(100));
    let timeout = (liveness * 2 / 5).max(Duration::from_millis(200));
    ping::Behaviour::new(
        ping::Config::new()
            .with_interval(interval)
            .with_timeout(timeout),
    )
}

/// A request-response behaviour for one of our protocols, with a frame `limit` each way.
pub fn rr<Req, Resp>(
    proto: libp2p::StreamProtocol,
    support: ProtocolSupport,
    limit: usize,
    timeout: Duration,
) -> request_response::Behaviour<CborCodec<Req, Resp>>
where
    Req: Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    Resp: Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    request_response::Behaviour::with_codec(
        CborCodec::new(limit, limit),
        [(proto, support)],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(256),
    )
}
