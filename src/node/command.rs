//! Commands into the event loop and the cloneable [`Net`] handle that sends them.
//!
//! Every network action is a message: handlers and the public API never touch the `Swarm`;
//! they send a [`Command`] carrying a oneshot sender and await the reply.

use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::client::ClientResponse;
use crate::protocol::meta::{MetaRequest, MetaResponse};

pub enum Command {
    Meta {
        peer: PeerId,
        req: MetaRequest,
        reply: oneshot::Sender<Result<MetaResponse>>,
    },
    Block {
        peer: PeerId,
        req: BlockRequest,
        reply: oneshot::Sender<Result<BlockResponse>>,
    },
    /// Iterative Kademlia lookup of the peers closest to `preimage`'s key.
    Lookup {
        preimage: Vec<u8>,
        reply: oneshot::Sender<Lookup>,
    },
    RespondClient {
        channel: ResponseChannel<ClientResponse>,
        resp: ClientResponse,
    },
    RespondMeta {
        channel: ResponseChannel<MetaResponse>,
        resp: MetaResponse,
    },
    RespondBlock {
        channel: ResponseChannel<BlockResponse>,
        resp: BlockResponse,
    },
    Dial {
        addr: Multiaddr,
    },
    /// Publish on a gossipsub topic (balancing: load reports, election, decisions).
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<std::result::Result<(), libp2p::gossipsub::PublishError>>,
    },
    /// Refuse (or allow again) every connection with a peer (a test hook).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    SetBlocked {
        peer: PeerId,
        blocked: bool,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What a Kademlia lookup found, and what it cost.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub peers: Vec<(PeerId, Vec<Multiaddr>)>,
    /// Requests sent to other peers during the walk.
    pub requests: u32,
    pub duration: Option<std::time::Duration>,
}

#[derive(Clone)]
pub struct Net {
    tx: mpsc::Sender<Command>,
}

fn stopped() -> Error {
    Error::Network("the node is shutting down".into())
}

impl Net {
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        Self { tx }
    }

    /// Whether the event loop is still taking commands.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    pub async fn send(&self, cmd: Command) -> Result<()> {
        self.tx.send(cmd).await.map_err(|_| stopped())
    }

    pub async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| stopped())
    }

    pub async fn meta(&self, peer: PeerId, req: MetaRequest) -> Result<MetaResponse> {
        self.call(|reply| Command::Meta { peer, req, reply })
            .await?
    }

    pub async fn block(&self, peer: PeerId, req: BlockRequest) -> Result<BlockResponse> {
        self.call(|reply| Command::Block { peer, req, reply })
            .await?
    }

    pub async fn lookup(&self, preimage: Vec<u8>) -> Result<Lookup> {
        self.call(|reply| Command::Lookup { preimage, reply }).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.send(Command::Dial { addr }).await
    }

    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }
}
