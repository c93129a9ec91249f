//! The node's one `NetworkBehaviour`, composed with the derive macro: Kademlia routing,
//! identify, ping, optional mDNS, the three request-response protocols, NAT traversal
//! (relay client and server, DCUtR, AutoNAT v2 client and server; see [`super::nat`]),
//! gossipsub (load reports, election, decisions), a block list (to cut a node off), and
//! limits on connections per peer, in total and by the process's memory.
//!
//! Connection limits are libp2p's own `connection_limits` and `memory_connection_limits`
//! behaviours: maintained with the swarm, they deny a connection before any other behaviour
//! builds a handler for it (they come first in the struct, and the derive asks fields in
//! order), which a limit of our own in the event loop could only do after the fact.

use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::request_response::ProtocolSupport;
use libp2p::swarm::{behaviour::toggle::Toggle, NetworkBehaviour};
use libp2p::{
    allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify, mdns,
    memory_connection_limits, ping, relay,
};

use super::nat::{self, Admit, ServeMode};
use super::NodeConfig;
use crate::net::protocols::{identify_config, ping_behaviour, rr_with, BlockRR, ClientRR, MetaRR};
use crate::net::{TransportError, BLOCK_TIMEOUT, CLIENT_TIMEOUT, META_TIMEOUT};
use crate::protocol::{self, block, client, meta, Budget};

/// Connections to one peer at once. A peer needs one; a dial race, a relayed connection
/// upgraded by DCUtR and a QUIC next to a TCP one make up to four.
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Inbound connections still in their handshake, and established inbound connections.
pub const MAX_INBOUND: u32 = 512;
/// All established connections.
pub const MAX_CONNECTIONS: u32 = 1024;
/// New connections are refused while the process uses this share of the machine's memory:
/// a last line before the OOM killer, whatever the machine's size. The frame budget
/// (`protocol::budget`) is what keeps a node small; this catches what it does not count
/// (many peers' yamux windows, work queued behind the readers).
pub const MEMORY_SHARE: f64 = 0.8;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub memory: memory_connection_limits::Behaviour,
    pub kad: kad::Behaviour<MemoryStore>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub client: ClientRR,
    pub meta: MetaRR,
    /// Blocks only ever travel on direct connections (relays cap circuits; see `nat`).
    pub block: Admit<BlockRR>,
    pub relay_client: relay::client::Behaviour,
    pub relay: Toggle<relay::Behaviour>,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::v2::client::Behaviour,
    pub autonat_server: Admit<autonat::v2::server::Behaviour>,
    pub gossipsub: gossipsub::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
}

impl Behaviour {
    pub fn new(
        key: &Keypair,
        config: &NodeConfig,
        relay_client: relay::client::Behaviour,
        budget: Arc<Budget>,
    ) -> Result<Self, TransportError> {
        let mdns_on = config.mdns;
        let liveness = config.liveness;
        let local = key.public().to_peer_id();
        let mut kad_config = kad::Config::new(protocol::KAD_PROTOCOL);
        kad_config.set_query_timeout(Duration::from_secs(20));
        // We keep records and block references in our own store; Kademlia only routes.
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        kad_config.set_periodic_bootstrap_interval(Some(Duration::from_secs(120)));
        let mut kad = kad::Behaviour::with_config(local, MemoryStore::new(local), kad_config);
        // Storage nodes always answer: on a LAN, in tests or in Docker no external address is
        // ever confirmed, and client mode would leave the DHT empty.
        kad.set_mode(Some(kad::Mode::Server));

        let mdns = if mdns_on {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), local)
                    .map_err(|e| TransportError::setup("mDNS", e))?,
            )
        } else {
            None
        };
        // Strict signing: every report, heartbeat and decision names its true author.
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config()?,
        )
        .map_err(|e| TransportError::setup("gossipsub", e))?;
        Ok(Self {
            limits: connection_limits::Behaviour::new(connection_limits()),
            memory: memory_connection_limits::Behaviour::with_max_percentage(MEMORY_SHARE),
            kad,
            identify: identify::Behaviour::new(identify_config(key)),
            ping: ping_behaviour(liveness),
            mdns: mdns.into(),
            // One budget for the three protocols: what a peer buffers is counted once.
            client: rr_with(
                client::PROTOCOL,
                ProtocolSupport::Inbound,
                client::FRAME_LIMIT,
                CLIENT_TIMEOUT,
                budget.clone(),
            ),
            meta: rr_with(
                meta::PROTOCOL,
                ProtocolSupport::Full,
                meta::FRAME_LIMIT,
                META_TIMEOUT,
                budget.clone(),
            ),
            block: Admit::direct_only(rr_with(
                block::PROTOCOL,
                ProtocolSupport::Full,
                block::FRAME_LIMIT,
                BLOCK_TIMEOUT,
                budget,
            )),
            relay_client,
            relay: relay_server(local, config.relay_server).into(),
            dcutr: dcutr::Behaviour::new(local),
            autonat: autonat::v2::client::Behaviour::default(),
            autonat_server: Admit::when_public(
                autonat::v2::server::Behaviour::default(),
                config.autonat_server,
            ),
            gossipsub,
            blocked: allow_block_list::Behaviour::default(),
        })
    }
}

fn connection_limits() -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_INBOUND))
        .with_max_established_incoming(Some(MAX_INBOUND))
        .with_max_established(Some(MAX_CONNECTIONS))
}

/// The relay server. With `Auto` it starts disabled and the event loop enables it while the
/// node has a confirmed direct external address (libp2p's own automatic mode would also count
/// the relayed address a relay client gets); `On` serves regardless.
fn relay_server(local: libp2p::PeerId, mode: ServeMode) -> Option<relay::Behaviour> {
    let mut server = relay::Behaviour::new(local, nat::relay_config());
    match mode {
        ServeMode::Off => return None,
        ServeMode::On => server.set_status(Some(relay::Status::Enable)),
        ServeMode::Auto => server.set_status(Some(relay::Status::Disable)),
    }
    Some(server)
}

/// A small mesh suits swarms of a handful of nodes and still works for large ones; publishing
/// floods to every subscribed peer we know, so reports reach the manager in one hop.
fn gossip_config() -> Result<gossipsub::Config, TransportError> {
    gossipsub::ConfigBuilder::default()
        .mesh_n(4)
        .mesh_n_low(2)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .flood_publish(true)
        .max_transmit_size(64 * 1024)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .build()
        .map_err(|e| TransportError::setup("gossipsub", e))
}
