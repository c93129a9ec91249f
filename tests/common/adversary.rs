//! A hostile peer built from the library's own wire types: it dials nodes and sends them
//! whatever meta or block requests a test crafts, and reads the answers. It is not a storage
//! node; it speaks only the request-response protocols, as any stranger on the network can.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use swarmstore::net::{rr, BlockRR, MetaRR};
use swarmstore::protocol::block::{self, BlockRequest, BlockResponse};
use swarmstore::protocol::meta::{self, MetaRequest, MetaResponse};

#[derive(NetworkBehaviour)]
pub struct Wire {
    meta: MetaRR,
    block: BlockRR,
}

pub struct Adversary {
    pub key: Keypair,
    swarm: Swarm<Wire>,
    meta_replies: HashMap<OutboundRequestId, Result<MetaResponse, String>>,
    block_replies: HashMap<OutboundRequestId, Result<BlockResponse, String>>,
}

impl Adversary {
    pub fn new() -> Self {
        Self::with_key(Keypair::generate_ed25519())
    }

    pub fn with_key(key: Keypair) -> Self {
        let swarm = super::tcp_swarm(key.clone(), |_| Wire {
            meta: rr(
                meta::PROTOCOL,
                ProtocolSupport::Outbound,
                meta::FRAME_LIMIT,
                Duration::from_secs(20),
            ),
            block: rr(
                block::PROTOCOL,
                ProtocolSupport::Outbound,
                block::FRAME_LIMIT,
                Duration::from_secs(20),
            ),
        });
        Adversary {
            key,
            swarm,
            meta_replies: HashMap::new(),
            block_replies: HashMap::new(),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// Sends a meta request to the node at `addr` (ending in `/p2p/<id>`) and waits for its
    /// answer.
    pub async fn meta(
        &mut self,
        addr: &Multiaddr,
        req: MetaRequest,
    ) -> Result<MetaResponse, String> {
        let peer = peer_of(addr);
        let id = self.swarm.behaviour_mut().meta.send_request_with_addresses(
            &peer,
            req,
            vec![addr.clone()],
        );
        self.drive(|a| a.meta_replies.remove(&id)).await
    }

    /// Sends a block request to the node at `addr` and waits for its answer.
    pub async fn block(
        &mut self,
        addr: &Multiaddr,
        req: BlockRequest,
    ) -> Result<BlockResponse, String> {
        let peer = peer_of(addr);
        let id = self
            .swarm
            .behaviour_mut()
            .block
            .send_request_with_addresses(&peer, req, vec![addr.clone()]);
        self.drive(|a| a.block_replies.remove(&id)).await
    }

    async fn drive<T>(&mut self, mut done: impl FnMut(&mut Self) -> Option<T>) -> T {
        let wait = async {
            loop {
                if let Some(t) = done(self) {
                    return t;
                }
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(WireEvent::Meta(e)) => match e {
                        request_response::Event::Message {
                            message:
                                request_response::Message::Response {
                                    request_id,
                                    response,
                                },
                            ..
                        } => {
                            self.meta_replies.insert(request_id, Ok(response));
                        }
                        request_response::Event::OutboundFailure {
                            request_id, error, ..
                        } => {
                            self.meta_replies.insert(request_id, Err(error.to_string()));
                        }
                        _ => {}
                    },
                    SwarmEvent::Behaviour(WireEvent::Block(e)) => match e {
                        request_response::Event::Message {
                            message:
                                request_response::Message::Response {
                                    request_id,
                                    response,
                                },
                            ..
                        } => {
                            self.block_replies.insert(request_id, Ok(response));
                        }
                        request_response::Event::OutboundFailure {
                            request_id, error, ..
                        } => {
                            self.block_replies
                                .insert(request_id, Err(error.to_string()));
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("an answer within 60 s")
    }
}

fn peer_of(addr: &Multiaddr) -> PeerId {
    match addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => panic!("{addr} does not end in /p2p/<peer id>"),
    }
}
