//! Builders for the protocols both ends configure the same way: our request-response
//! behaviours (length-prefixed CBOR with limits per message kind and a budget of buffered
//! bytes, see [`crate::protocol::codec`]), identify and ping, and the request timeouts each
//! side waits.

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::{identify, ping};

use super::metered::Metered;
use crate::protocol::limits::FrameKinds;
use crate::protocol::{self, block, client, meta, Budget, CborCodec};

/// The behaviours of our three request-response protocols.
pub type ClientRR = Metered<client::ClientRequest, client::ClientResponse>;
pub type MetaRR = Metered<meta::MetaRequest, meta::MetaResponse>;
pub type BlockRR = Metered<block::BlockRequest, block::BlockResponse>;

/// Streams of one protocol open at once on one connection. Each may buffer up to its frame's
/// limit (within the budget); 32 keeps a node's block pipeline full (a client keeps a few
/// blocks in flight per holder) while one connection cannot queue hundreds of readers.
pub const MAX_STREAMS_PER_PROTOCOL: usize = 32;

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

/// A request-response behaviour for one of our protocols, with a frame ceiling `limit` each
/// way (each message kind's own limit applies below it), on the process's shared budget.
pub fn rr<Req, Resp>(
    proto: libp2p::StreamProtocol,
    support: ProtocolSupport,
    limit: usize,
    timeout: Duration,
) -> Metered<Req, Resp>
where
    Req: Send + Sync + serde::Serialize + serde::de::DeserializeOwned + FrameKinds + 'static,
    Resp: Send + Sync + serde::Serialize + serde::de::DeserializeOwned + FrameKinds + 'static,
{
    rr_with(proto, support, limit, timeout, Budget::process())
}

/// [`rr`] on a given budget (a node's own, shared by its three protocols).
pub fn rr_with<Req, Resp>(
    proto: libp2p::StreamProtocol,
    support: ProtocolSupport,
    limit: usize,
    timeout: Duration,
    budget: Arc<Budget>,
) -> Metered<Req, Resp>
where
    Req: Send + Sync + serde::Serialize + serde::de::DeserializeOwned + FrameKinds + 'static,
    Resp: Send + Sync + serde::Serialize + serde::de::DeserializeOwned + FrameKinds + 'static,
{
    let codec = CborCodec::with_budget(limit, limit, budget);
    let inner = request_response::Behaviour::with_codec(
        codec.clone(),
        [(proto, support)],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(MAX_STREAMS_PER_PROTOCOL),
    );
    Metered::new(&codec, inner)
}
