//! Reachability for nodes behind NAT: relay-server limits, when a node serves AutoNAT and
//! relays, and [`Admit`], a wrapper that keeps a protocol off some connections.
//!
//! The pieces, all stock libp2p: the AutoNAT v2 client tests the addresses identify observes
//! and confirms the ones a server could dial back (only confirmed addresses are advertised);
//! `--external-addr` confirms an operator's address up front; the relay client lets a node
//! listen through a relay; DCUtR upgrades relayed connections to direct ones. What is ours:
//! block transfers are structurally kept off relayed connections ([`Admit::direct_only`]), and
//! AutoNAT/relay service is offered only while the node is publicly reachable.

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::str::FromStr;
use std::sync::RwLock;
use std::task::{Context, Poll};
use std::time::Duration;

use either::Either;
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{relay, Multiaddr, PeerId};

use crate::net::{is_relayed, RELAY_CIRCUIT_BYTES};

/// Whether this node offers a service (relay hop, AutoNAT dial-back) to others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServeMode {
    /// Only while the node has a confirmed external address (AutoNAT or `--external-addr`).
    #[default]
    Auto,
    On,
    Off,
}

impl FromStr for ServeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" | "true" | "yes" => Ok(Self::On),
            "off" | "false" | "no" => Ok(Self::Off),
            other => Err(format!("{other:?} is not one of auto, on, off")),
        }
    }
}

impl std::fmt::Display for ServeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// A relay circuit lasts at most this long (libp2p's default is 2 minutes); a new one is
/// opened on demand after it ends.
pub const RELAY_CIRCUIT_DURATION: Duration = Duration::from_secs(10 * 60);
/// Concurrent circuits a relay carries, in all and per peer (libp2p: 16 and 4).
pub const RELAY_MAX_CIRCUITS: usize = 64;
pub const RELAY_MAX_CIRCUITS_PER_PEER: usize = 8;

/// The relay server's configuration: libp2p's defaults (reservations, rate limits) with the
/// circuit limits above.
pub fn relay_config() -> relay::Config {
    relay::Config {
        max_circuits: RELAY_MAX_CIRCUITS,
        max_circuits_per_peer: RELAY_MAX_CIRCUITS_PER_PEER,
        max_circuit_duration: RELAY_CIRCUIT_DURATION,
        max_circuit_bytes: RELAY_CIRCUIT_BYTES,
        ..relay::Config::default()
    }
}

/// Which connections a wrapped protocol may use.
#[derive(Clone, Copy, Debug)]
enum Policy {
    /// Every direct connection; never a relayed one.
    DirectOnly,
    /// Outbound connections always (the protocol's own dial-backs); inbound ones only while
    /// the node is publicly reachable (or `On`).
    InboundWhenPublic(ServeMode),
}

/// Runs protocol `B` on some connections only; on the others it is not even offered (a dummy
/// handler), so the remote sees it as unsupported and `B` never learns of the connection.
/// Dereferences to `B`, so callers use it exactly like the wrapped behaviour.
pub struct Admit<B> {
    inner: B,
    policy: Policy,
    /// Confirmed external addresses of this node.
    external: HashSet<Multiaddr>,
    /// Connections `inner` knows about, per peer.
    admitted: HashMap<PeerId, HashSet<ConnectionId>>,
}

impl<B> Admit<B> {
    /// `inner` never runs on a relayed connection: requests to a peer reached only through a
    /// relay wait for a direct connection (or fail, see the event loop).
    pub fn direct_only(inner: B) -> Self {
        Self::new(inner, Policy::DirectOnly)
    }

    /// `inner` serves inbound connections only while this node is publicly reachable.
    pub fn when_public(inner: B, mode: ServeMode) -> Self {
        Self::new(inner, Policy::InboundWhenPublic(mode))
    }

    fn new(inner: B, policy: Policy) -> Self {
        Self {
            inner,
            policy,
            external: HashSet::new(),
            admitted: HashMap::new(),
        }
    }

    /// Whether `inner` is offered on new inbound connections now.
    pub fn serving(&self) -> bool {
        match self.policy {
            Policy::DirectOnly => true,
            Policy::InboundWhenPublic(ServeMode::On) => true,
            Policy::InboundWhenPublic(ServeMode::Off) => false,
            Policy::InboundWhenPublic(ServeMode::Auto) => !self.external.is_empty(),
        }
    }

    fn admits(&self, addr: &Multiaddr, inbound: bool) -> bool {
        match self.policy {
            Policy::DirectOnly => !is_relayed(addr),
            Policy::InboundWhenPublic(_) => !inbound || self.serving(),
        }
    }

    fn admit(&mut self, peer: PeerId, id: ConnectionId) {
        self.admitted.entry(peer).or_default().insert(id);
    }

    fn count(&self, peer: &PeerId) -> usize {
        self.admitted.get(peer).map_or(0, HashSet::len)
    }

    fn is_admitted(&self, peer: &PeerId, id: &ConnectionId) -> bool {
        self.admitted.get(peer).is_some_and(|s| s.contains(id))
    }
}

impl<B> Deref for Admit<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B> DerefMut for Admit<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Admit<B> {
    type ConnectionHandler = Either<THandler<B>, dummy::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.admits(local, true) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        let handler = self
            .inner
            .handle_established_inbound_connection(id, peer, local, remote)?;
        self.admit(peer, id);
        Ok(Either::Left(handler))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addrs: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addrs, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.admits(addr, false) {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        let handler = self
            .inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)?;
        self.admit(peer, id);
        Ok(Either::Left(handler))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            // A relayed address (a relay client's reservation) does not make us public.
            FromSwarm::ExternalAddrConfirmed(e) if !is_relayed(e.addr) => {
                self.external.insert(e.addr.clone());
            }
            FromSwarm::ExternalAddrExpired(e) => {
                self.external.remove(e.addr);
            }
            _ => {}
        }
        // Connection events reach `inner` only for connections it runs on, with counts that
        // leave the others out, so its bookkeeping matches what it was handed.
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                if self.is_admitted(&e.peer_id, &e.connection_id) {
                    let other = self.count(&e.peer_id).saturating_sub(1);
                    self.inner.on_swarm_event(FromSwarm::ConnectionEstablished(
                        ConnectionEstablished {
                            other_established: other,
                            ..e
                        },
                    ));
                }
            }
            FromSwarm::ConnectionClosed(e) => {
                if !self.is_admitted(&e.peer_id, &e.connection_id) {
                    return;
                }
                if let Some(set) = self.admitted.get_mut(&e.peer_id) {
                    set.remove(&e.connection_id);
                    if set.is_empty() {
                        self.admitted.remove(&e.peer_id);
                    }
                }
                let remaining = self.count(&e.peer_id);
                self.inner
                    .on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                        remaining_established: remaining,
                        ..e
                    }));
            }
            FromSwarm::AddressChange(e) => {
                if self.is_admitted(&e.peer_id, &e.connection_id) {
                    self.inner.on_swarm_event(event);
                }
            }
            other => self.inner.on_swarm_event(other),
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(e) => self.inner.on_connection_handler_event(peer, id, e),
            Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx).map(|e| e.map_in(Either::Left))
    }
}

/// What AutoNAT has found out about this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// No test has finished yet.
    #[default]
    Unknown,
    /// Every tested address failed: peers can reach us only through a relay.
    Private,
    /// At least one external address is confirmed.
    Public,
}

/// The node's reachability as the event loop sees it.
#[derive(Default, Debug)]
pub struct NatState {
    pub confirmed: HashSet<Multiaddr>,
    pub failed: HashSet<Multiaddr>,
}

impl NatState {
    pub fn reachability(&self) -> Reachability {
        if !self.confirmed.is_empty() {
            Reachability::Public
        } else if !self.failed.is_empty() {
            Reachability::Private
        } else {
            Reachability::Unknown
        }
    }
}

/// What the rest of the node may read about reachability (the event loop writes it).
#[derive(Default, Debug)]
pub struct ReachView {
    direct: RwLock<HashSet<PeerId>>,
    reachability: RwLock<Reachability>,
}

impl ReachView {
    /// Peers with at least one direct (not relayed) connection.
    pub fn direct_peers(&self) -> HashSet<PeerId> {
        self.direct
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn reachability(&self) -> Reachability {
        *self.reachability.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_direct(&self, peer: PeerId, direct: bool) {
        let mut set = self.direct.write().unwrap_or_else(|p| p.into_inner());
        if direct {
            set.insert(peer);
        } else {
            set.remove(&peer);
        }
    }

    pub(crate) fn set_reachability(&self, r: Reachability) {
        *self.reachability.write().unwrap_or_else(|p| p.into_inner()) = r;
    }
}
