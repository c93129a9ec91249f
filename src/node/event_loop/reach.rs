//! The event loop's reachability duties: bootstrap dialing with per-address reports and
//! backoff, keeping block transfers on direct connections, AutoNAT / relay / DCUtR events, and
//! private-swarm handshake failures.
//!
//! A child module of `event_loop` so the loop's own file stays about commands and requests.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, ListenError};
use libp2p::{autonat, dcutr, relay, Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::super::behaviour::BehaviourEvent;
use super::super::nat::{NatState, Reachability, ServeMode};
use super::EventLoop;
use crate::error::{Error, Result};
use crate::net::is_relayed;
use crate::protocol::block::{BlockRequest, BlockResponse};

/// How long a block request waits for a direct connection to a peer reached only through a
/// relay (DCUtR makes up to three attempts, usually within a few seconds) before it fails.
/// Checked on the loop's 5 s tick, so a wait ends within 8-13 s: inside the access node's
/// 15 s per-holder bound, so the caller sees this error rather than a bare timeout.
const DIRECT_WAIT: Duration = Duration::from_secs(8);
/// A relayed connection is closed this long after a direct one to the same peer came up (the
/// grace lets requests already on it finish).
const RELAY_GRACE: Duration = Duration::from_secs(10);
/// Below this many routing-table entries the node dials its bootstrap list again.
const ROUTING_LOW: usize = 4;
/// Backoff between attempts on one bootstrap address.
const BOOTSTRAP_MIN_BACKOFF: Duration = Duration::from_secs(10);
const BOOTSTRAP_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Between two direct-dial attempts to the same relayed peer.
const DIRECT_DIAL_COOLDOWN: Duration = Duration::from_secs(60);
/// After a wait for a direct connection failed, block requests to that peer fail at once for
/// this long (instead of each waiting `DIRECT_WAIT` again).
const NO_DIRECT_MEMORY: Duration = Duration::from_secs(60);

type BlockReply = oneshot::Sender<Result<BlockResponse>>;

struct BootEntry {
    addr: Multiaddr,
    /// The peer this address reached last (from `/p2p/` or a successful dial).
    peer: Option<PeerId>,
    next_try: Instant,
    backoff: Duration,
}

/// A block request parked until the peer is reachable without a relay.
struct Parked {
    req: BlockRequest,
    reply: BlockReply,
    deadline: Instant,
}

/// Reachability state owned by the event loop.
pub struct Reach {
    boot: Vec<BootEntry>,
    /// Bootstrap dials in flight: connection id → index into `boot`.
    boot_dials: HashMap<ConnectionId, usize>,
    /// Open connections per peer, and whether each is relayed.
    conns: HashMap<PeerId, HashMap<ConnectionId, bool>>,
    /// When each peer's first current direct connection came up.
    direct_since: HashMap<PeerId, Instant>,
    parked: HashMap<PeerId, Vec<Parked>>,
    /// Block requests handed to request-response, with when (they may wait on a dial).
    block_sent: HashMap<OutboundRequestId, Instant>,
    direct_dialed: HashMap<PeerId, Instant>,
    /// Peers a wait for a direct connection recently failed for.
    no_direct: HashMap<PeerId, Instant>,
    /// Peers offering the relay hop protocol, with a direct address: for auto-relay.
    relay_candidates: HashMap<PeerId, Multiaddr>,
    /// Relays we listen through (auto-relay), by listener.
    relay_listeners: HashMap<ListenerId, PeerId>,
    /// Circuit addresses the operator asked to listen on, by listener; re-opened when they
    /// close (libp2p closes one at once if its dial to the relay raced another dial).
    configured_relays: HashMap<ListenerId, Multiaddr>,
    /// Configured circuit addresses waiting to be re-opened.
    relay_retry: Vec<Multiaddr>,
    pub nat: NatState,
}

impl Reach {
    pub fn new(bootstrap: &[Multiaddr]) -> Self {
        let now = Instant::now();
        Self {
            boot: bootstrap
                .iter()
                .map(|addr| BootEntry {
                    addr: addr.clone(),
                    peer: match addr.iter().last() {
                        Some(Protocol::P2p(p)) => Some(p),
                        _ => None,
                    },
                    next_try: now,
                    backoff: BOOTSTRAP_MIN_BACKOFF,
                })
                .collect(),
            boot_dials: HashMap::new(),
            conns: HashMap::new(),
            direct_since: HashMap::new(),
            parked: HashMap::new(),
            block_sent: HashMap::new(),
            direct_dialed: HashMap::new(),
            no_direct: HashMap::new(),
            relay_candidates: HashMap::new(),
            relay_listeners: HashMap::new(),
            configured_relays: HashMap::new(),
            relay_retry: Vec::new(),
            nat: NatState::default(),
        }
    }

    pub fn listening_through(&mut self, listeners: Vec<(ListenerId, Multiaddr)>) {
        self.configured_relays.extend(listeners);
    }

    fn has_direct(&self, peer: &PeerId) -> bool {
        self.conns
            .get(peer)
            .is_some_and(|c| c.values().any(|relayed| !relayed))
    }

    fn has_relayed(&self, peer: &PeerId) -> bool {
        self.conns
            .get(peer)
            .is_some_and(|c| c.values().any(|relayed| *relayed))
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
        for i in 0..self.reach.boot.len() {
            let entry = &self.reach.boot[i];
            if entry.next_try > now || self.reach.boot_dials.values().any(|j| *j == i) {
                continue;
            }
            if entry.peer.is_some_and(|p| self.swarm.is_connected(&p)) {
                continue;
            }
            let addr = entry.addr.clone();
            if let Some(peer) = entry.peer {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
            let id = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.reach.boot_dials.insert(id, i);
                }
                Err(e) => {
                    tracing::warn!(%addr, "cannot dial bootstrap address: {e}");
                    self.boot_failed(i);
                }
            }
        }
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
    }

    fn boot_failed(&mut self, i: usize) {
        if let Some(entry) = self.reach.boot.get_mut(i) {
            entry.next_try = Instant::now() + entry.backoff;
            entry.backoff = (entry.backoff * 2).min(BOOTSTRAP_MAX_BACKOFF);
        }
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
        if live == 0 || routing < ROUTING_LOW {
            if ticks.is_multiple_of(12) && !self.reach.boot.is_empty() {
                tracing::debug!(routing, live, "routing table low; re-bootstrapping");
            }
            self.dial_bootstrap();
        }
        self.ctx.metrics.live_peers.set(live as i64);

        let now = Instant::now();
        // Parked block requests whose wait is over.
        let mut expired = Vec::new();
        for (peer, list) in self.reach.parked.iter_mut() {
            let (gone, keep): (Vec<Parked>, Vec<Parked>) =
                list.drain(..).partition(|p| p.deadline <= now);
            *list = keep;
            expired.extend(gone.into_iter().map(|p| (*peer, p)));
        }
        self.reach.parked.retain(|_, l| !l.is_empty());
        for (peer, p) in expired {
            self.reach.no_direct.insert(peer, now);
            let _ = p.reply.send(Err(relay_only_error(peer)));
        }
        self.reach
            .no_direct
            .retain(|_, at| now.duration_since(*at) < NO_DIRECT_MEMORY);
        // Block requests that never reached a connection (request-response has no timer
        // while it waits for a dial; a relayed connection never admits the block protocol).
        let limit = crate::net::BLOCK_TIMEOUT + DIRECT_WAIT;
        let stale: Vec<OutboundRequestId> = self
            .reach
            .block_sent
            .iter()
            .filter(|(_, at)| now.duration_since(**at) > limit)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.reach.block_sent.remove(&id);
            if let Some((peer, tx)) = self.pending_block.remove(&id) {
                let err = if self.reach.has_relayed(&peer) && !self.reach.has_direct(&peer) {
                    relay_only_error(peer)
                } else {
                    Error::Network(format!("block request to {peer} timed out"))
                };
                let _ = tx.send(Err(err));
            }
        }
        // Relayed connections replaced by a direct one.
        let mut close = Vec::new();
        for (peer, since) in &self.reach.direct_since {
            if now.duration_since(*since) < RELAY_GRACE {
                continue;
            }
            if let Some(c) = self.reach.conns.get(peer) {
                close.extend(c.iter().filter(|(_, r)| **r).map(|(id, _)| *id));
            }
        }
        for id in close {
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
        let waiting = std::mem::take(&mut self.reach.relay_retry);
        for addr in waiting {
            let through = relay_of(&addr);
            if relay.is_some() && through != relay {
                self.reach.relay_retry.push(addr);
                continue;
            }
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.reach.configured_relays.insert(id, addr);
                }
                Err(e) => {
                    tracing::warn!(%addr, "cannot listen through relay: {e}");
                    self.reach.relay_retry.push(addr);
                }
            }
        }
    }

    /// Behind NAT with no relay to listen through: take one relay-capable peer.
    fn auto_relay(&mut self) {
        // Only when no relay listener exists or is being re-opened, auto or configured.
        if self.reach.nat.reachability() != Reachability::Private
            || !self.reach.relay_listeners.is_empty()
            || !self.reach.configured_relays.is_empty()
            || !self.reach.relay_retry.is_empty()
        {
            return;
        }
        let Some((relay, addr)) = self
            .reach
            .relay_candidates
            .iter()
            .next()
            .map(|(p, a)| (*p, a.clone()))
        else {
            return;
        };
        let circuit = addr
            .with_p2p(relay)
            .unwrap_or_else(|a| a)
            .with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                tracing::info!(%relay, "not publicly reachable: listening through relay {circuit}");
                self.reach.relay_listeners.insert(id, relay);
            }
            Err(e) => {
                tracing::debug!(%circuit, "cannot listen through relay: {e}");
                self.reach.relay_candidates.remove(&relay);
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
        let connected_relay_only = self.reach.has_relayed(&peer) && !self.reach.has_direct(&peer);
        let unreachable_directly = !self.reach.has_direct(&peer) && direct.is_empty();
        if connected_relay_only || (unreachable_directly && !self.ctx.peers.addrs(&peer).is_empty())
        {
            if self.reach.no_direct.contains_key(&peer) {
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
        self.reach.block_sent.insert(id, Instant::now());
        self.pending_block.insert(id, (peer, reply));
    }

    fn park_block(
        &mut self,
        peer: PeerId,
        req: BlockRequest,
        reply: BlockReply,
        direct: Vec<Multiaddr>,
    ) {
        let deadline = Instant::now() + DIRECT_WAIT;
        self.reach.parked.entry(peer).or_default().push(Parked {
            req,
            reply,
            deadline,
        });
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
        if direct.is_empty() {
            return;
        }
        let now = Instant::now();
        if self
            .reach
            .direct_dialed
            .get(&peer)
            .is_some_and(|t| now.duration_since(*t) < DIRECT_DIAL_COOLDOWN)
        {
            return;
        }
        self.reach.direct_dialed.insert(peer, now);
        tracing::debug!(%peer, ?direct, "dialing a relayed peer directly");
        let _ = self.swarm.dial(
            DialOpts::peer_id(peer)
                .addresses(direct)
                .condition(PeerCondition::Always)
                .build(),
        );
    }

    pub(super) fn note_block_done(&mut self, id: &OutboundRequestId) {
        self.reach.block_sent.remove(id);
    }

    pub(super) fn on_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let relayed = endpoint.is_relayed();
        self.reach
            .conns
            .entry(peer)
            .or_default()
            .insert(id, relayed);
        if let Some(i) = self.reach.boot_dials.remove(&id) {
            if let Some(entry) = self.reach.boot.get_mut(i) {
                entry.peer = Some(peer);
                entry.backoff = BOOTSTRAP_MIN_BACKOFF;
            }
        }
        if relayed {
            tracing::debug!(%peer, "relayed connection");
            return;
        }
        if !self.reach.relay_retry.is_empty() {
            self.retry_relay_listens(Some(peer));
        }
        self.ctx.reach.set_direct(peer, true);
        self.reach.no_direct.remove(&peer);
        self.reach
            .direct_since
            .entry(peer)
            .or_insert_with(Instant::now);
        if let Some(list) = self.reach.parked.remove(&peer) {
            for p in list {
                let id = self.swarm.behaviour_mut().block.send_request(&peer, p.req);
                self.reach.block_sent.insert(id, Instant::now());
                self.pending_block.insert(id, (peer, p.reply));
            }
        }
    }

    pub(super) fn on_closed(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(c) = self.reach.conns.get_mut(&peer) {
            c.remove(&id);
            if c.is_empty() {
                self.reach.conns.remove(&peer);
            }
        }
        if !self.reach.has_direct(&peer) {
            self.reach.direct_since.remove(&peer);
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
        if let Some(i) = self.reach.boot_dials.remove(&id) {
            let addr = self.reach.boot[i].addr.clone();
            let hint = self.key_hint(&error.to_string());
            tracing::warn!(%addr, "bootstrap address unreachable: {}{hint}", dial_summary(error));
            self.boot_failed(i);
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
        let hint = self.key_hint(&error.to_string());
        if hint.is_empty() {
            tracing::debug!(%from, "inbound connection failed: {error}");
        } else {
            tracing::warn!(%from, "refused connection: {}{hint}", one_line(error));
        }
    }

    /// In a private swarm, a connection that fails while negotiating (or times out doing so)
    /// almost always means the other side has another key, or none.
    fn key_hint(&self, error: &str) -> String {
        let Some(key) = self.ctx.config.swarm_key else {
            return String::new();
        };
        if !is_handshake_failure(error) {
            return String::new();
        }
        format!(
            " (the peer does not use this swarm's key: ours has fingerprint {})",
            key.fingerprint()
        )
    }

    /// Identify told us about a peer: remember relays, and try a direct connection to a peer
    /// we only reach through a relay.
    pub(super) fn after_identify(&mut self, peer: PeerId, is_relay: bool, addrs: &[Multiaddr]) {
        let direct: Vec<Multiaddr> = addrs.iter().filter(|a| !is_relayed(a)).cloned().collect();
        if is_relay && self.reach.has_direct(&peer) {
            if let Some(a) = direct.first() {
                self.reach.relay_candidates.insert(peer, a.clone());
            }
        }
        if self.reach.has_relayed(&peer) && !self.reach.has_direct(&peer) {
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
        if let Some(addr) = self.reach.configured_relays.remove(&id) {
            match reason {
                Ok(()) => tracing::debug!(%addr, "relay listener closed; re-opening"),
                Err(e) => tracing::warn!(%addr, "relay listener closed: {e}; re-opening"),
            }
            let relay = relay_of(&addr);
            self.reach.relay_retry.push(addr);
            if relay.is_some_and(|r| self.reach.has_direct(&r)) {
                self.retry_relay_listens(relay);
            }
            return;
        }
        if let Some(relay) = self.reach.relay_listeners.remove(&id) {
            tracing::info!(%relay, "stopped listening through relay");
            self.reach.relay_candidates.remove(&relay);
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

/// The relay in a circuit address: the peer id just before `/p2p-circuit`.
fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => last = Some(peer),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

/// Multistream garbage, a failed Noise handshake, or a negotiation timeout right after the
/// TCP connection: in a private swarm, the signature of a peer with another key (pnet
/// scrambles everything after the nonces).
fn is_handshake_failure(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("negotiat") || e.contains("handshake") || e.contains("noise")
}

/// What went wrong with a dial, briefly: libp2p nests the same cause several times over.
fn dial_summary(error: &DialError) -> String {
    match error {
        DialError::Transport(list) if !list.is_empty() => list
            .iter()
            .map(|(_, e)| {
                let mut cause: &dyn std::error::Error = e;
                while let Some(inner) = cause.source() {
                    cause = inner;
                }
                one_line(&cause.to_string())
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => one_line(other),
    }
}

/// A dial error on one line (libp2p lists every address tried, across lines).
fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
