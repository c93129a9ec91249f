//! The one task that owns the `Swarm`.
//!
//! It turns [`Command`]s into network actions, routes responses back to their oneshot senders
//! by request or query id, keeps the [`PeerTable`](super::peers::PeerTable) current, and hands
//! every inbound request to a spawned handler so no request ever blocks the loop. Bootstrap,
//! NAT traversal and the direct-only rule for blocks are in [`reach`], which drives the
//! I/O-free state machines in [`bootstrap`], [`conns`], [`parked`] and [`relays`] (and
//! words its log lines with [`diagnose`]).

mod bootstrap;
mod conns;
mod diagnose;
mod parked;
mod reach;
mod relays;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::metrics::Recorder;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, kad, mdns, ping, relay, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::behaviour::{Behaviour, BehaviourEvent};
use super::command::{Command, Lookup};
use super::{access, holder, root, Ctx};
use crate::error::{Error, Result};
use crate::net::is_loopback;
use crate::protocol::{self, block::BlockResponse, meta::MetaResponse};

type Pending<T> = HashMap<OutboundRequestId, (PeerId, oneshot::Sender<Result<T>>)>;
type LookupReply = oneshot::Sender<Lookup>;

pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    ctx: Arc<Ctx>,
    pending_meta: Pending<MetaResponse>,
    pending_block: Pending<BlockResponse>,
    pending_lookups: HashMap<kad::QueryId, LookupReply>,
    /// Last successful ping (or connection) per connected peer: the liveness clock.
    last_pong: HashMap<PeerId, Instant>,
    /// libp2p's own metrics (connections, kad, identify, ping, relay, DCUtR).
    p2p_metrics: Option<libp2p::metrics::Metrics>,
    reach: reach::Reach,
    /// Inbound request handlers: owned here, so they stop with the loop (a dropped node
    /// leaves no handler behind holding its store).
    handlers: JoinSet<()>,
}

impl EventLoop {
    pub fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        ctx: Arc<Ctx>,
        bootstrap: Vec<Multiaddr>,
    ) -> Self {
        Self {
            swarm,
            commands,
            ctx,
            pending_meta: HashMap::new(),
            pending_block: HashMap::new(),
            pending_lookups: HashMap::new(),
            last_pong: HashMap::new(),
            p2p_metrics: None,
            reach: reach::Reach::new(&bootstrap),
            handlers: JoinSet::new(),
        }
    }

    pub fn with_p2p_metrics(mut self, metrics: libp2p::metrics::Metrics) -> Self {
        self.p2p_metrics = Some(metrics);
        self
    }

    /// Listeners on relay circuits (`.../p2p-circuit`), kept open by the loop.
    pub fn with_relay_listeners(
        mut self,
        listeners: Vec<(libp2p::core::transport::ListenerId, Multiaddr)>,
    ) -> Self {
        self.reach.listening_through(listeners);
        self
    }

    pub async fn run(mut self) {
        self.reach_start();
        // Bootstrap often while the swarm is small or we are alone; Kademlia's own periodic
        // bootstrap takes over once the routing table is healthy.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut liveness_tick = tokio::time::interval(self.ctx.config.liveness / 4);
        liveness_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown { reply }) => {
                        let _ = reply.send(());
                        break;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(done) = self.handlers.join_next(), if !self.handlers.is_empty() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            tracing::error!("a request handler panicked: {e}");
                        }
                    }
                }
                _ = liveness_tick.tick() => self.check_liveness(),
                _ = tick.tick() => {
                    ticks += 1;
                    let live = self.ctx.peers.live_peers().len();
                    // Dials the bootstrap list when the routing table runs low (per-address
                    // backoff), expires waits for direct connections.
                    self.reach_tick(ticks);
                    if live < kad::K_VALUE.get() || ticks.is_multiple_of(24) {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
            }
        }
        tracing::info!("event loop stopped");
    }

    /// A connected peer that has not answered a ping for the liveness bound is down, even if
    /// its TCP connection looks open (a silent link never errors on its own).
    fn check_liveness(&mut self) {
        let bound = self.ctx.config.liveness;
        let silent: Vec<PeerId> = self
            .last_pong
            .iter()
            .filter(|(_, at)| at.elapsed() > bound)
            .map(|(p, _)| *p)
            .collect();
        for peer in silent {
            self.last_pong.remove(&peer);
            if self.ctx.peers.is_live(&peer) {
                tracing::info!(%peer, "peer silent for {bound:?}: marked down");
            }
            self.ctx.peers.mark_down(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Meta { peer, req, reply } => {
                let addrs = self.ctx.peers.addrs(&peer);
                let id = self
                    .swarm
                    .behaviour_mut()
                    .meta
                    .send_request_with_addresses(&peer, req, addrs);
                self.pending_meta.insert(id, (peer, reply));
            }
            Command::Block { peer, req, reply } => self.send_block(peer, req, reply),
            Command::Lookup { preimage, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_closest_peers(preimage);
                self.pending_lookups.insert(id, reply);
            }
            Command::RespondClient { channel, resp } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .client
                    .send_response(channel, resp);
            }
            Command::RespondMeta { channel, resp } => {
                let _ = self.swarm.behaviour_mut().meta.send_response(channel, resp);
            }
            Command::RespondBlock { channel, resp } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .block
                    .send_response(channel, resp);
            }
            Command::Dial { addr } => {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::warn!(%addr, "dial failed: {e}");
                }
            }
            Command::Publish { topic, data, reply } => {
                let topic = gossipsub::IdentTopic::new(topic);
                let r = self.swarm.behaviour_mut().gossipsub.publish(topic, data);
                let _ = reply.send(r.map(|_| ()));
            }
            Command::SetBlocked { peer, blocked } => {
                let list = &mut self.swarm.behaviour_mut().blocked;
                if blocked {
                    list.block_peer(peer);
                } else {
                    list.unblock_peer(peer);
                    if let Some(addr) = self.ctx.peers.addrs(&peer).first() {
                        let _ = self
                            .swarm
                            .dial(addr.clone().with_p2p(peer).unwrap_or_else(|a| a));
                    }
                }
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        if let Some(m) = &self.p2p_metrics {
            m.record(&event);
        }
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.on_new_listen_addr(&address);
                let full = address.with_p2p(self.ctx.local).unwrap_or_else(|a| a);
                tracing::info!(addr = %full, "listening");
                self.ctx.add_listen_addr(full);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.ctx
                    .peers
                    .connected(peer_id, endpoint.get_remote_address());
                self.last_pong.insert(peer_id, Instant::now());
                self.on_established(peer_id, connection_id, &endpoint);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, remaining = num_established, "connection closed");
                self.on_closed(peer_id, connection_id);
                // Only an idle timeout is a quiet close; anything else means the peer went away.
                let failed = !matches!(
                    cause,
                    Some(libp2p::swarm::ConnectionError::KeepAliveTimeout)
                );
                self.ctx
                    .peers
                    .disconnected(peer_id, num_established as usize, failed);
                if num_established == 0 {
                    self.last_pong.remove(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                if let Some(peer) = peer_id {
                    if !self.swarm.is_connected(&peer) {
                        self.ctx.peers.unreachable(peer);
                    }
                }
                self.on_dial_error(connection_id, peer_id, &error);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => self.on_incoming_error(&send_back_addr, &error),
            SwarmEvent::ExternalAddrConfirmed { address } => self.on_external_addr(address, true),
            SwarmEvent::ExternalAddrExpired { address } => self.on_external_addr(address, false),
            SwarmEvent::NewExternalAddrCandidate { address } => {
                // Observed by a peer; advertised only once AutoNAT confirms it.
                tracing::debug!(%address, "external address candidate");
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => self.on_listener_closed(listener_id, &reason),
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        if let Some(m) = &self.p2p_metrics {
            match &event {
                BehaviourEvent::Kad(e) => m.record(e),
                BehaviourEvent::Identify(e) => m.record(e),
                BehaviourEvent::Ping(e) => m.record(e),
                _ => {}
            }
        }
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                // A storage peer is one that serves our DHT and our block protocol, whatever its
                // agent or protocol-version strings say (another implementation may not set
                // them); what it then claims is checked by signatures, not by admission. The
                // block protocol is offered on direct connections only, so over a relayed one
                // the metadata protocol stands in for it.
                let ours = info.protocols.contains(&protocol::KAD_PROTOCOL)
                    && (info.protocols.contains(&protocol::block::PROTOCOL)
                        || info.protocols.contains(&protocol::meta::PROTOCOL));
                tracing::debug!(%peer_id, ours, listen = ?info.listen_addrs, observed = %info.observed_addr, "identify received");
                if !ours {
                    return;
                }
                let is_relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                // A remote's loopback addresses are only meaningful if we reach it over loopback.
                let local_link = is_loopback(&info.observed_addr);
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| local_link || !is_loopback(a))
                    .collect();
                for a in &addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, a.clone());
                }
                self.ctx.peers.storage_peer(peer_id, &addrs);
                self.after_identify(peer_id, is_relay, &addrs);
            }
            BehaviourEvent::Kad(event) => self.on_kad_event(event),
            BehaviourEvent::Ping(ping::Event { peer, result, .. }) => match result {
                Ok(_) => {
                    self.last_pong.insert(peer, Instant::now());
                }
                Err(e) => tracing::debug!(%peer, "ping failed: {e}"),
            },
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            BehaviourEvent::Mdns(_) => {}
            BehaviourEvent::Client(event) => {
                if let request_response::Event::Message {
                    peer,
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                } = event
                {
                    let ctx = self.ctx.clone();
                    self.handlers.spawn(async move {
                        let kind = request.kind();
                        let started = Instant::now();
                        let resp = access::handle(&ctx, peer, request).await;
                        ctx.metrics.served("client", kind);
                        ctx.metrics.observe_client(kind, started.elapsed());
                        let _ = ctx.net.send(Command::RespondClient { channel, resp }).await;
                    });
                } else {
                    log_rr_failure("client", &event);
                }
            }
            BehaviourEvent::Meta(event) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let ctx = self.ctx.clone();
                        self.handlers.spawn(async move {
                            ctx.metrics.served("meta", request.kind());
                            let resp = root::handle(&ctx, peer, request).await;
                            let _ = ctx.net.send(Command::RespondMeta { channel, resp }).await;
                        });
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some((_, tx)) = self.pending_meta.remove(&request_id) {
                            let _ = tx.send(Ok(response));
                        }
                    }
                },
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                } => {
                    self.note_failure(peer, &error);
                    if let Some((_, tx)) = self.pending_meta.remove(&request_id) {
                        let _ = tx.send(Err(outbound_error(peer, "meta", &error)));
                    }
                }
                other => log_rr_failure("meta", &other),
            },
            BehaviourEvent::Block(event) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        let ctx = self.ctx.clone();
                        self.handlers.spawn(async move {
                            let kind = request.kind();
                            ctx.metrics.served("block", kind);
                            let started = std::time::Instant::now();
                            let resp = holder::handle(&ctx, peer, request).await;
                            ctx.metrics.observe_block(kind, started.elapsed());
                            let _ = ctx.net.send(Command::RespondBlock { channel, resp }).await;
                        });
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        self.note_block_done(&request_id);
                        if let Some((_, tx)) = self.pending_block.remove(&request_id) {
                            let _ = tx.send(Ok(response));
                        }
                    }
                },
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                } => {
                    self.note_failure(peer, &error);
                    self.note_block_done(&request_id);
                    if let Some((_, tx)) = self.pending_block.remove(&request_id) {
                        let _ = tx.send(Err(outbound_error(peer, "block", &error)));
                    }
                }
                other => log_rr_failure("block", &other),
            },
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => {
                self.ctx
                    .balance
                    .on_gossip(message.source, message.topic.as_str(), message.data);
            }
            BehaviourEvent::Gossipsub(_) => {}
            BehaviourEvent::Blocked(never) => match never {},
            BehaviourEvent::Limits(never) => match never {},
            BehaviourEvent::Memory(never) => match never {},
            BehaviourEvent::Identify(_) => {}
            other => self.on_nat_event(other),
        }
    }

    fn note_failure(&mut self, peer: PeerId, error: &OutboundFailure) {
        if matches!(
            error,
            OutboundFailure::DialFailure | OutboundFailure::ConnectionClosed
        ) && !self.swarm.is_connected(&peer)
        {
            self.ctx.peers.unreachable(peer);
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::RoutingUpdated {
                peer, addresses, ..
            } => {
                let addrs: Vec<Multiaddr> = addresses.iter().cloned().collect();
                self.ctx.peers.storage_peer(peer, &addrs);
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetClosestPeers(result),
                step,
                stats,
            } => {
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                let found: Vec<(PeerId, Vec<Multiaddr>)> =
                    peers.into_iter().map(|p| (p.peer_id, p.addrs)).collect();
                for (p, addrs) in &found {
                    self.ctx.peers.storage_peer(*p, addrs);
                }
                if step.last {
                    if let Some(tx) = self.pending_lookups.remove(&id) {
                        let _ = tx.send(Lookup {
                            peers: found,
                            requests: stats.num_requests(),
                            duration: stats.duration(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

fn outbound_error(peer: PeerId, what: &str, error: &OutboundFailure) -> Error {
    Error::Network(format!("{what} request to {peer} failed: {error}"))
}

fn log_rr_failure<Req, Resp>(what: &str, event: &request_response::Event<Req, Resp>) {
    if let request_response::Event::InboundFailure { peer, error, .. } = event {
        // Malformed or oversized frames land here: the stream is dropped, the node serves on.
        tracing::debug!(%peer, "inbound {what} request failed: {error}");
    }
}
