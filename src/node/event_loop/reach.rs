//! The event loop's reachability duties: bootstrap dialing with per-address reports and
//! backoff, keeping block transfers on direct connections, AutoNAT / relay / DCUtR events, and
//! private-swarm handshake failures.
//!
//! A child module of `event_loop` so the loop's own file stays about commands and requests.
//! The decisions are made by small clock-taking state machines in sibling modules
//! ([`Bootstrap`], [`Conns`], [`Parked`], [`InFlight`], [`Relays`]); this file only translates
//! swarm events into calls on them and their answers into swarm actions and log lines.

use std::time::Instant;

use libp2p::core::transport::ListenerId;
use libp2p::core::ConnectedPoint;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError};
use libp2p::{autonat, dcutr, relay, Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::super::behaviour::BehaviourEvent;
use super::super::nat::{NatState, Reachability, ServeMode};
use super::bootstrap::Bootstrap;
use super::conns::Conns;
use super::diagnose::{dial_summary, key_hint, one_line};
use super::parked::{InFlight, Parked};
use super::relays::{Closed, Relays};
use super::EventLoop;
use crate::error::{Error, Result};
use crate::net::is_relayed;
use crate::protocol::block::{BlockRequest, BlockResponse};

type BlockReply = oneshot::Sender<Result<BlockResponse>>;

/// Reachability state owned by the event loop.
pub struct Reach {
    boot: Bootstrap,
    conns: Conns,
    /// Block requests waiting for a direct connection, with their reply senders.
    parked: Parked<(BlockRequest, BlockReply)>,
    /// Block requests handed to request-response, with when (they may wait on a dial).
    block_sent: InFlight<OutboundRequestId>,
    relays: Relays,
    pub nat: NatState,
}

impl Reach {
    pub fn new(bootstrap: &[Multiaddr]) -> Self {
        Self {
            boot: Bootstrap::new(bootstrap, Instant::now()),
            conns: Conns::default(),
            parked: Parked::default(),
            block_sent: InFlight::default(),
            relays: Relays::default(),
            nat: NatState::default(),
        }
    }

    pub fn listening_through(&mut self, listeners: Vec<(ListenerId, Multiaddr)>) {
        self.relays.listening_through(listeners);
    }
}

fn relay_only_error(peer: PeerId) -> Error {
    Error::Network(format!(
        "block request to {peer} failed: the peer is reachable only through a relay, and blocks \
         never travel over relays; no direct connection could be made (hole punching failed or \
         the peer has no public address)"
    ))
}

impl EventLoop {
    /// At start: note the operator's external addresses, dial the bootstrap list.
    pub(super) fn reach_start(&mut self) {
        for addr in self.ctx.config.external_addrs.clone() {
            self.on_external_addr(addr, true);
        }
        self.dial_bootstrap();
    }

    /// Dials every bootstrap address that is due (not connected, backoff elapsed). Each
    /// attempt that fails is reported once, with its address.
    pub(super) fn dial_bootstrap(&mut self) {
        let now = Instant::now();
        let due = self.reach.boot.due(now, |p| self.swarm.is_connected(p));
        for dial in due {
            let addr = dial.addr;
            if let Some(peer) = dial.peer {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.reach.boot.dialing(id, dial.index),
                Err(e) => {
                    tracing::warn!(%addr, "cannot dial bootstrap address: {e}");
                    self.reach.boot.failed(dial.index, Instant::now());
                }
            }
        }
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
    }

    /// Every tick: re-bootstrap when the routing table runs low, expire waits for direct
    /// connections, close relayed connections that a direct one has replaced, auto-relay.
    pub(super) fn reach_tick(&mut self, ticks: u64) {
        let live = self.ctx.peers.live_peers().len();
        let routing: usize = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum();
        if Bootstrap::routing_low(routing, live) {
            if ticks.is_multiple_of(12) && !self.reach.boot.is_empty() {
                tracing::debug!(routing, live, "routing table low; re-bootstrapping");
            }
            self.dial_bootstrap();
        }
        self.ctx.metrics.live_peers.set(live as i64);

        let now = Instant::now();
        // Parked block requests whose wait is over.
        for (peer, (_, reply)) in self.reach.parked.expire(now) {
            let _ = reply.send(Err(relay_only_error(peer)));
        }
        // Block requests that never reached a connection.
        for id in self.reach.block_sent.stale(now) {
            if let Some((peer, tx)) = self.pending_block.remove(&id) {
                let err = if self.reach.conns.relay_only(&peer) {
                    relay_only_error(peer)
                } else {
                    Error::Network(format!("block request to {peer} timed out"))
                };
                let _ = tx.send(Err(err));
            }
        }
        // Relayed connections replaced by a direct one.
        for id in self.reach.conns.replaced_relays(now) {
            self.swarm.close_connection(id);
        }
        // A closed relay listener is re-opened at once when its relay connects; otherwise
        // every 30 s (not every tick: a relay that is down would fill the log).
        if ticks.is_multiple_of(6) {
            self.retry_relay_listens(None);
        }
        self.auto_relay();
    }

    /// Re-opens configured circuit listeners that closed: all of them, or only those through
    /// `relay` (just connected).
    fn retry_relay_listens(&mut self, relay: Option<PeerId>) {
        for addr in self.reach.relays.take_retry(relay) {
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => self.reach.relays.reopened(id, addr),
                Err(e) => {
                    tracing::warn!(%addr, "cannot listen through relay: {e}");
                    self.reach.relays.retry_later(addr);
                }
            }
        }
    }

    /// Behind NAT with no relay to listen through: take one relay-capable peer.
    fn auto_relay(&mut self) {
        let Some((relay, circuit)) = self.reach.relays.auto_relay(self.reach.nat.reachability())
        else {
            return;
        };
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                tracing::info!(%relay, "not publicly reachable: listening through relay {circuit}");
                self.reach.relays.auto_listening(id, relay);
            }
            Err(e) => {
                tracing::debug!(%circuit, "cannot listen through relay: {e}");
                self.reach.relays.drop_candidate(&relay);
            }
        }
    }

    /// Sends a block request, keeping it off relays: to a peer connected only through a relay
    /// it waits (bounded) for a direct connection.
    pub(super) fn send_block(&mut self, peer: PeerId, req: BlockRequest, reply: BlockReply) {
        let direct: Vec<Multiaddr> = self
            .ctx
            .peers
            .addrs(&peer)
            .into_iter()
            .filter(|a| !is_relayed(a))
            .collect();
        let connected_relay_only = self.reach.conns.relay_only(&peer);
        let unreachable_directly = !self.reach.conns.has_direct(&peer) && direct.is_empty();
        if connected_relay_only || (unreachable_directly && !self.ctx.peers.addrs(&peer).is_empty())
        {
            if self.reach.parked.fails_fast(&peer) {
                let _ = reply.send(Err(relay_only_error(peer)));
                return;
            }
            self.park_block(peer, req, reply, direct);
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .block
            .send_request_with_addresses(&peer, req, direct);
        self.reach.block_sent.sent(id, Instant::now());
        self.pending_block.insert(id, (peer, reply));
    }

    fn park_block(
        &mut self,
        peer: PeerId,
        req: BlockRequest,
        reply: BlockReply,
        direct: Vec<Multiaddr>,
    ) {
        self.reach.parked.park(peer, (req, reply), Instant::now());
        if !self.swarm.is_connected(&peer) {
            // Open the relay path so DCUtR can run over it.
            let relayed: Vec<Multiaddr> = self.ctx.peers.addrs(&peer);
            let _ = self.swarm.dial(
                DialOpts::peer_id(peer)
                    .addresses(relayed)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            );
        } else {
            self.dial_direct(peer, direct);
        }
    }

    /// Tries a direct connection to a peer we reach through a relay (at most once a minute).
    fn dial_direct(&mut self, peer: PeerId, direct: Vec<Multiaddr>) {
        if direct.is_empty() || !self.reach.conns.may_dial_direct(peer, Instant::now()) {
            return;
        }
        tracing::debug!(%peer, ?direct, "dialing a relayed peer directly");
        let _ = self.swarm.dial(
            DialOpts::peer_id(peer)
                .addresses(direct)
                .condition(PeerCondition::Always)
                .build(),
        );
    }

    pub(super) fn note_block_done(&mut self, id: &OutboundRequestId) {
        self.reach.block_sent.done(id);
    }

    pub(super) fn on_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let relayed = endpoint.is_relayed();
        self.reach.conns.opened(peer, id, relayed, Instant::now());
        self.reach.boot.established(&id, peer);
        if relayed {
            tracing::debug!(%peer, "relayed connection");
            return;
        }
        if self.reach.relays.has_retry() {
            self.retry_relay_listens(Some(peer));
        }
        self.ctx.reach.set_direct(peer, true);
        for (req, reply) in self.reach.parked.direct_up(&peer) {
            let id = self.swarm.behaviour_mut().block.send_request(&peer, req);
            self.reach.block_sent.sent(id, Instant::now());
            self.pending_block.insert(id, (peer, reply));
        }
    }

    pub(super) fn on_closed(&mut self, peer: PeerId, id: ConnectionId) {
        if self.reach.conns.closed(peer, id) {
            self.ctx.reach.set_direct(peer, false);
        }
    }

    /// A dial failed: a bootstrap attempt is reported with its address, on one line; others
    /// quietly.
    pub(super) fn on_dial_error(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        error: &DialError,
    ) {
        if let Some(addr) = self.reach.boot.dial_failed(&id, Instant::now()) {
            let hint = key_hint(self.ctx.config.swarm_key, &error.to_string());
            tracing::warn!(%addr, "bootstrap address unreachable: {}{hint}", dial_summary(error));
            return;
        }
        if let Some(peer) = peer {
            tracing::debug!(%peer, "dial failed: {error}");
        } else {
            tracing::debug!("dial failed: {error}");
        }
    }

    /// An inbound connection failed during its handshake.
    pub(super) fn on_incoming_error(&mut self, from: &Multiaddr, error: &ListenError) {
        let hint = key_hint(self.ctx.config.swarm_key, &error.to_string());
        if hint.is_empty() {
            tracing::debug!(%from, "inbound connection failed: {error}");
        } else {
            tracing::warn!(%from, "refused connection: {}{hint}", one_line(error));
        }
    }

    /// Identify told us about a peer: remember relays, and try a direct connection to a peer
    /// we only reach through a relay.
    pub(super) fn after_identify(&mut self, peer: PeerId, is_relay: bool, addrs: &[Multiaddr]) {
        let direct: Vec<Multiaddr> = addrs.iter().filter(|a| !is_relayed(a)).cloned().collect();
        if is_relay && self.reach.conns.has_direct(&peer) {
            if let Some(a) = direct.first() {
                self.reach.relays.candidate(peer, a.clone());
            }
        }
        if self.reach.conns.relay_only(&peer) {
            self.dial_direct(peer, direct);
        }
    }

    pub(super) fn on_nat_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Autonat(autonat::v2::client::Event {
                tested_addr,
                server,
                result,
                ..
            }) => {
                match result {
                    Ok(()) => {
                        tracing::info!(addr = %tested_addr, %server, "publicly reachable (AutoNAT)");
                        self.reach.nat.failed.remove(&tested_addr);
                    }
                    Err(e) => {
                        tracing::info!(addr = %tested_addr, %server, "not reachable at this address (AutoNAT): {e}");
                        self.reach.nat.failed.insert(tested_addr);
                    }
                }
                self.update_reachability();
            }
            BehaviourEvent::AutonatServer(e) => {
                tracing::debug!(client = %e.client, addr = %e.tested_addr, ok = e.result.is_ok(), "answered an AutoNAT test");
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal: false,
                ..
            }) => {
                tracing::info!(relay = %relay_peer_id, "reservation accepted: reachable through the relay");
            }
            BehaviourEvent::RelayClient(e) => tracing::debug!("relay client: {e:?}"),
            BehaviourEvent::Relay(e) => {
                if let Some(m) = &self.p2p_metrics {
                    use libp2p::metrics::Recorder;
                    m.record(&e);
                }
                tracing::debug!("relay server: {e:?}");
            }
            BehaviourEvent::Dcutr(e) => {
                if let Some(m) = &self.p2p_metrics {
                    use libp2p::metrics::Recorder;
                    m.record(&e);
                }
                let dcutr::Event {
                    remote_peer_id,
                    result,
                } = e;
                match result {
                    Ok(_) => {
                        tracing::info!(peer = %remote_peer_id, "hole punched: direct connection")
                    }
                    // Clients do not hole-punch; nothing to report.
                    Err(e) if e.to_string().contains("does not support") => {
                        tracing::debug!(peer = %remote_peer_id, "hole punching not supported: {e}")
                    }
                    Err(e) => tracing::info!(peer = %remote_peer_id, "hole punching failed: {e}"),
                }
            }
            _ => {}
        }
    }

    /// `--relay-server on` is the operator saying this node is reachable: without an
    /// `--external-addr`, its direct listen addresses are what the relay hands out (a relay
    /// with no external address cannot grant reservations).
    pub(super) fn on_new_listen_addr(&mut self, addr: &Multiaddr) {
        let config = &self.ctx.config;
        if config.relay_server == ServeMode::On
            && config.external_addrs.is_empty()
            && !is_relayed(addr)
        {
            // The swarm reports no event for addresses added by hand.
            self.swarm.add_external_address(addr.clone());
            self.on_external_addr(addr.clone(), true);
        }
    }

    pub(super) fn on_external_addr(&mut self, addr: Multiaddr, confirmed: bool) {
        if is_relayed(&addr) {
            // Our address through a relay: reachable, but not public.
            tracing::debug!(%addr, confirmed, "relayed external address");
            return;
        }
        if confirmed {
            tracing::info!(%addr, "advertising confirmed external address");
            self.reach.nat.confirmed.insert(addr);
        } else {
            tracing::info!(%addr, "external address expired");
            self.reach.nat.confirmed.remove(&addr);
        }
        self.update_reachability();
    }

    pub(super) fn on_listener_closed(&mut self, id: ListenerId, reason: &std::io::Result<()>) {
        match self.reach.relays.listener_closed(id) {
            Some(Closed::Configured { addr, relay }) => {
                match reason {
                    Ok(()) => tracing::debug!(%addr, "relay listener closed; re-opening"),
                    Err(e) => tracing::warn!(%addr, "relay listener closed: {e}; re-opening"),
                }
                if relay.is_some_and(|r| self.reach.conns.has_direct(&r)) {
                    self.retry_relay_listens(relay);
                }
            }
            Some(Closed::Auto(relay)) => {
                tracing::info!(%relay, "stopped listening through relay");
            }
            None => {}
        }
    }

    fn update_reachability(&mut self) {
        let r = self.reach.nat.reachability();
        self.ctx.reach.set_reachability(r);
        if self.ctx.config.relay_server == ServeMode::Auto {
            if let Some(relay) = self.swarm.behaviour_mut().relay.as_mut() {
                relay.set_status(Some(if r == Reachability::Public {
                    relay::Status::Enable
                } else {
                    relay::Status::Disable
                }));
            }
        }
        self.ctx.metrics.reachability.set(match r {
            Reachability::Unknown => 0,
            Reachability::Private => 1,
            Reachability::Public => 2,
        });
    }
}
