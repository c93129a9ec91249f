//! [`Metered`]: one of our request-response behaviours whose codec knows, per connection, which
//! peer it reads from, so buffered inbound bytes are charged to that peer's budget.
//!
//! libp2p's `Codec` is handed the protocol and the stream only. The request-response behaviour
//! clones its codec exactly once per connection, in `handle_established_*_connection`, and the
//! handler clones that copy per stream. So this wrapper puts the connection's peer in the
//! codec's slot around exactly those two calls: the per-connection clone picks it up and keeps
//! it (see `protocol::codec`). Everything else is passed through unchanged, and `Deref` keeps
//! `send_request`, `send_response` and the rest callable as before.
//!
//! Why not a task-local or a thread-local set while the handler polls: that depends on where
//! libp2p polls the codec futures, which is an internal detail; the clone per connection is a
//! documented part of the `Codec: Clone` contract and is checked by `tests/limits.rs` (a
//! flooding peer's bytes are charged to it, not to an honest client).

use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::request_response;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use serde::{de::DeserializeOwned, Serialize};

use crate::protocol::codec::PeerSlot;
use crate::protocol::limits::FrameKinds;
use crate::protocol::CborCodec;

pub struct Metered<Req, Resp>
where
    Req: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
    Resp: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
{
    inner: request_response::Behaviour<CborCodec<Req, Resp>>,
    slot: PeerSlot,
}

impl<Req, Resp> Metered<Req, Resp>
where
    Req: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
    Resp: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
{
    /// Wraps a behaviour built with `codec` (whose slot this keeps).
    pub fn new(
        codec: &CborCodec<Req, Resp>,
        inner: request_response::Behaviour<CborCodec<Req, Resp>>,
    ) -> Self {
        Self {
            inner,
            slot: codec.peer_slot(),
        }
    }

    /// Runs `f` (which builds a handler) with `peer` in the codec's slot.
    fn for_peer<T>(&mut self, peer: PeerId, f: impl FnOnce(&mut Self) -> T) -> T {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(peer);
        let out = f(self);
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
        out
    }
}

impl<Req, Resp> Deref for Metered<Req, Resp>
where
    Req: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
    Resp: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
{
    type Target = request_response::Behaviour<CborCodec<Req, Resp>>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl<Req, Resp> DerefMut for Metered<Req, Resp>
where
    Req: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
    Resp: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
{
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

type Inner<Req, Resp> = request_response::Behaviour<CborCodec<Req, Resp>>;

impl<Req, Resp> NetworkBehaviour for Metered<Req, Resp>
where
    Req: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
    Resp: Send + Sync + Serialize + DeserializeOwned + FrameKinds + 'static,
{
    type ConnectionHandler = THandler<Inner<Req, Resp>>;
    type ToSwarm = <Inner<Req, Resp> as NetworkBehaviour>::ToSwarm;

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
        self.for_peer(peer, |s| {
            s.inner
                .handle_established_inbound_connection(id, peer, local, remote)
        })
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
        self.for_peer(peer, |s| {
            s.inner
                .handle_established_outbound_connection(id, peer, addr, role, port_use)
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
