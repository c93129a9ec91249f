//! The client's connection: its own swarm (TCP/QUIC, relay client, identify, ping, and the
//! client and block protocols as outbound only), the dial to the access node, and the one task
//! that owns the swarm. [`Session`] is the cheap handle the rest of the client sends requests
//! through; replies come back over oneshots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, ping, relay, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::net::{
    build_swarm, identify_config, is_relayed, ping_behaviour, rr, BlockRR, ClientRR, BLOCK_TIMEOUT,
    CLIENT_TIMEOUT, RELAY_CIRCUIT_BYTES,
};
use crate::protocol::block::{self, BlockRequest, BlockResponse};
use crate::protocol::client::{self, ClientRequest, ClientResponse};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client whose handles are all gone waits for its connections to close.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);

/// Client event loops still running in this process, and a wake-up when one ends.
static LIVE_LOOPS: AtomicUsize = AtomicUsize::new(0);
static LOOP_ENDED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Waits (at most `limit`) until every client of this process has closed its connections.
///
/// A process that exits with a connection open leaves it to the node's idle timeout: over
/// QUIC the node learns nothing of the exit (no FIN), and the dead connections of a few quick
/// CLI runs under one identity filled the node's per-peer limit, so the next run was refused
/// for seconds. The CLI calls this before it exits; a long-lived program need not.
pub async fn wait_closed(limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        loop {
            let ended = LOOP_ENDED.notified();
            if LIVE_LOOPS.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    })
    .await;
}

/// Counts a client loop as live for as long as it exists.
struct LiveLoop;

impl LiveLoop {
    fn new() -> Self {
        LIVE_LOOPS.fetch_add(1, Ordering::AcqRel);
        LiveLoop
    }
}

impl Drop for LiveLoop {
    fn drop(&mut self) {
        LIVE_LOOPS.fetch_sub(1, Ordering::AcqRel);
        LOOP_ENDED.notify_waiters();
    }
}

#[derive(NetworkBehaviour)]
struct ClientBehaviour {
    /// Lets a client reach an access node that listens only through a relay.
    relay_client: relay::client::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    client: ClientRR,
    /// Blocks straight from holders (HDFS-style reads: the access node is not a data hop).
    block: BlockRR,
}

enum Command {
    Request {
        req: ClientRequest,
        reply: oneshot::Sender<Result<ClientResponse>>,
    },
    Block {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        req: BlockRequest,
        reply: oneshot::Sender<Result<BlockResponse>>,
    },
}

/// A live connection to an access node.
#[derive(Clone)]
pub(super) struct Session {
    tx: mpsc::Sender<Command>,
    pub(super) access: PeerId,
}

impl Session {
    /// Dials the access node at `addr` (ending in `/p2p/<peer id>`); fails within 10 s with
    /// [`Error::Unreachable`].
    pub(super) async fn connect(
        addr: Multiaddr,
        key: Keypair,
        swarm_key: Option<PreSharedKey>,
    ) -> Result<Session> {
        let unreachable = |reason: String| Error::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        // Its registry is never served: a client's bandwidth is not worth an endpoint.
        let mut registry = libp2p::metrics::Registry::default();
        let mut swarm = build_swarm(
            key,
            swarm_key,
            &mut registry,
            Duration::from_secs(60),
            |key, relay_client| {
                Ok(ClientBehaviour {
                    relay_client,
                    identify: identify::Behaviour::new(identify_config(key)),
                    ping: ping_behaviour(Duration::from_secs(10)),
                    client: rr(
                        client::PROTOCOL,
                        ProtocolSupport::Outbound,
                        client::FRAME_LIMIT,
                        CLIENT_TIMEOUT,
                    ),
                    block: rr(
                        block::PROTOCOL,
                        ProtocolSupport::Outbound,
                        block::FRAME_LIMIT,
                        BLOCK_TIMEOUT,
                    ),
                })
            },
        )
        .map_err(|e| unreachable(e.to_string()))?;
        let relayed = is_relayed(&addr);
        swarm
            .dial(addr.clone())
            .map_err(|e| unreachable(e.to_string()))?;
        let wanted = match addr.iter().last() {
            Some(Protocol::P2p(p)) => Some(p),
            _ => None,
        };
        let access = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match swarm.select_next_some().await {
                    // Through a relay, the relay itself connects first.
                    SwarmEvent::ConnectionEstablished { peer_id, .. }
                        if relayed && wanted.is_some_and(|w| w != peer_id) => {}
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => return Ok(peer_id),
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        return Err(unreachable(error.to_string()))
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))??;
        if wanted.is_some_and(|w| w != access) {
            return Err(unreachable(format!("the node there is {access}")));
        }
        let (tx, rx) = mpsc::channel(64);
        let live = LiveLoop::new();
        tokio::spawn(async move {
            run_client_loop(swarm, rx, access, relayed).await;
            drop(live);
        });
        Ok(Session { tx, access })
    }

    /// One request to the access node.
    pub(super) async fn request(&self, req: ClientRequest) -> Result<ClientResponse> {
        let (reply, rx) = oneshot::channel();
        let gone = || Error::Network("connection to the access node is gone".into());
        self.tx
            .send(Command::Request { req, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// One block request straight to a holder at `addrs`.
    pub(super) async fn block(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        req: BlockRequest,
    ) -> Result<BlockResponse> {
        let (reply, rx) = oneshot::channel();
        let gone = || Error::Network("client event loop is gone".into());
        self.tx
            .send(Command::Block {
                peer,
                addrs,
                req,
                reply,
            })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn run_client_loop(
    mut swarm: Swarm<ClientBehaviour>,
    mut commands: mpsc::Receiver<Command>,
    access: PeerId,
    relayed: bool,
) {
    let mut pending: HashMap<OutboundRequestId, oneshot::Sender<Result<ClientResponse>>> =
        HashMap::new();
    let mut pending_blocks: HashMap<OutboundRequestId, oneshot::Sender<Result<BlockResponse>>> =
        HashMap::new();
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Request { req, reply }) => {
                    let id = swarm.behaviour_mut().client.send_request(&access, req);
                    pending.insert(id, reply);
                }
                Some(Command::Block { peer, addrs, req, reply }) => {
                    let id = swarm
                        .behaviour_mut()
                        .block
                        .send_request_with_addresses(&peer, req, addrs);
                    pending_blocks.insert(id, reply);
                }
                // Every Client handle is gone: close the connections, and wait for them to
                // go (so a QUIC close reaches the node before the process exits).
                None => {
                    close_all(&mut swarm).await;
                    break;
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(ClientBehaviourEvent::Client(
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    },
                )) => {
                    if let Some(tx) = pending.remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
                SwarmEvent::Behaviour(ClientBehaviourEvent::Block(
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    },
                )) => {
                    if let Some(tx) = pending_blocks.remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
                SwarmEvent::Behaviour(ClientBehaviourEvent::Block(
                    request_response::Event::OutboundFailure { request_id, error, peer, .. },
                )) => {
                    if let Some(tx) = pending_blocks.remove(&request_id) {
                        let _ = tx.send(Err(Error::Network(format!(
                            "block request to {peer} failed: {error}"
                        ))));
                    }
                }
                SwarmEvent::Behaviour(ClientBehaviourEvent::Client(
                    request_response::Event::OutboundFailure { request_id, error, .. },
                )) => {
                    if let Some(tx) = pending.remove(&request_id) {
                        let hint = if relayed {
                            format!(
                                " (the access node is reached through a relay, which limits each \
                                 circuit to {} MiB; for large files use a direct address of a node)",
                                RELAY_CIRCUIT_BYTES >> 20
                            )
                        } else {
                            String::new()
                        };
                        let _ = tx.send(Err(Error::Network(format!(
                            "request to the access node failed: {error}{hint}"
                        ))));
                    }
                }
                _ => {}
            },
        }
    }
}

/// Closes every connection of `swarm`, waiting at most [`CLOSE_TIMEOUT`] for them to go.
async fn close_all(swarm: &mut Swarm<ClientBehaviour>) {
    let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
    for peer in peers {
        let _ = swarm.disconnect_peer_id(peer);
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while swarm.connected_peers().next().is_some() {
            let _ = swarm.select_next_some().await;
        }
    })
    .await;
}
