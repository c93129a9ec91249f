//! The node's one `NetworkBehaviour`, composed with the derive macro: Kademlia routing,
//! identify, ping, optional mDNS, the three request-response protocols, NAT traversal
//! (relay client and server, DCUtR, AutoNAT v2 client and server; see [`super::nat`]),
//! gossipsub (load reports, election, decisions) and a block list (to cut a node off).

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::request_response::ProtocolSupport;
use libp2p::swarm::{behaviour::toggle::Toggle, NetworkBehaviour};
use libp2p::{allow_block_list, autonat, dcutr, gossipsub, identify, mdns, ping, relay};

use super::nat::{self, Admit, ServeMode};
use super::NodeConfig;
use crate::net::protocols::{identify_config, ping_behaviour, rr, BlockRR, ClientRR, MetaRR};
use crate::net::{TransportError, BLOCK_TIMEOUT, CLIENT_TIMEOUT, META_TIMEOUT};
use crate::protocol::{self, block, client, meta};

#[derive(NetworkBehaviour)]
pub struct Behaviour {
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
            kad,
            identify: identify::Behaviour::new(identify_config(key)),
            ping: ping_behaviour(liveness),
            mdns: mdns.into(),
            client: rr(
                client::PROTOCOL,
                ProtocolSupport::Inbound,
                client::FRAME_LIMIT,
                CLIENT_TIMEOUT,
            ),
            meta: rr(
                meta::PROTOCOL,
                ProtocolSupport::Full,
                meta::FRAME_LIMIT,
                META_TIMEOUT,
            ),
            block: Admit::direct_only(rr(
                block::PROTOCOL,
                ProtocolSupport::Full,
                block::FRAME_LIMIT,
                BLOCK_TIMEOUT,
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
