//! A request-response codec: one CBOR value per stream direction, behind a 4-byte big-endian
//! length prefix.
//!
//! libp2p's stock CBOR codec reads to end-of-stream under a silent `take(limit)`: an oversized
//! message arrives truncated and fails to decode with a misleading error, and the sender only
//! sees `UnexpectedEof`. The prefix lets both sides name the problem: the sender refuses to
//! write a frame over the limit ("frame of N bytes exceeds the M-byte limit") and the receiver
//! rejects an announced length over its limit without reading the body.
//!
//! Memory: the receiver never allocates from the announced length. It reads a first chunk of
//! at most [`CHUNK`] bytes, tells the message kind from it ([`super::limits`]) and refuses a
//! length over that kind's limit, then grows its buffer only as bytes arrive, each growth
//! taken from the [`Budget`] of the remote peer and of the node first.
//!
//! Which peer: libp2p's `Codec` trait is given the protocol and the stream, never the peer.
//! Each connection's handler clones the behaviour's codec once, when the connection is
//! established; the behaviour wrapper in `net::metered` puts the connection's peer in the
//! codec's [`PeerSlot`] just for that call, and a clone made then keeps the peer. The clones
//! a handler makes per stream copy it.

use std::io;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use futures::prelude::*;
use libp2p::request_response;
use libp2p::{PeerId, StreamProtocol};
use serde::{de::DeserializeOwned, Serialize};

use super::budget::{Budget, Exhausted};
use super::limits::{self, FrameKinds};

/// Bytes read (and buffered) at most before the kind is known, and per read after.
pub const CHUNK: usize = 64 * 1024;

/// Where a behaviour wrapper leaves the peer of the connection whose handler is being built.
pub type PeerSlot = Arc<Mutex<Option<PeerId>>>;

pub struct CborCodec<Req, Resp> {
    request_limit: usize,
    response_limit: usize,
    budget: Arc<Budget>,
    /// The remote peer, in the clones that serve one connection.
    peer: Option<PeerId>,
    slot: PeerSlot,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> CborCodec<Req, Resp> {
    /// A codec with frame ceilings each way (each kind's own limit applies below them), on the
    /// process's shared budget.
    pub fn new(request_limit: usize, response_limit: usize) -> Self {
        Self::with_budget(request_limit, response_limit, Budget::process())
    }

    pub fn with_budget(request_limit: usize, response_limit: usize, budget: Arc<Budget>) -> Self {
        Self {
            request_limit,
            response_limit,
            budget,
            peer: None,
            slot: Arc::new(Mutex::new(None)),
            _types: PhantomData,
        }
    }

    /// The slot a behaviour wrapper fills while a connection's handler is built.
    pub fn peer_slot(&self) -> PeerSlot {
        self.slot.clone()
    }

    pub fn peer(&self) -> Option<PeerId> {
        self.peer
    }
}

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        // A per-connection clone keeps its peer; the behaviour's own codec (no peer) takes the
        // one in the slot, which is set only while a handler for that peer is being built.
        let peer = self
            .peer
            .or_else(|| *self.slot.lock().unwrap_or_else(|p| p.into_inner()));
        Self {
            request_limit: self.request_limit,
            response_limit: self.response_limit,
            budget: self.budget.clone(),
            peer,
            slot: self.slot.clone(),
            _types: PhantomData,
        }
    }
}

fn too_large(what: &str, kind: Option<&str>, len: usize, limit: usize) -> String {
    match kind {
        Some(kind) => format!("{what} {kind} frame of {len} bytes exceeds the {limit}-byte limit"),
        None => format!("{what} frame of {len} bytes exceeds the {limit}-byte limit"),
    }
}

/// Encodes a value as one frame, refusing frames over `limit` or over its kind's limit.
pub fn encode_frame<T: Serialize + FrameKinds>(value: &T, limit: usize) -> io::Result<Vec<u8>> {
    let what = T::LIMITS.what;
    let mut buf = Vec::with_capacity(4 + 256);
    buf.extend_from_slice(&[0u8; 4]);
    let mut buf = cbor4ii::serde::to_vec(buf, value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encode {what}: {e}")))?;
    let body = buf.len() - 4;
    let (limit, kind) = match limits::limit_for::<T>(&buf[4..]) {
        Ok(Some((kind_limit, kind))) => (kind_limit.min(limit), Some(kind)),
        Ok(None) | Err(_) => (limit, None),
    };
    if body > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            too_large(what, kind.as_deref(), body, limit),
        ));
    }
    let Ok(prefix) = u32::try_from(body) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            too_large(what, kind.as_deref(), body, u32::MAX as usize),
        ));
    };
    buf[..4].copy_from_slice(&prefix.to_be_bytes());
    Ok(buf)
}

/// Decodes a frame body; malformed CBOR is `InvalidData`, never a panic. Counts that the
/// body cannot hold are refused before serde sizes anything from them
/// ([`limits::counts_fit`]).
pub fn decode_body<T: DeserializeOwned>(body: &[u8], what: &str) -> io::Result<T> {
    let malformed = |e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidData, format!("malformed {what}: {e}"))
    };
    limits::counts_fit(body).map_err(|e| malformed(&e))?;
    cbor4ii::serde::from_slice(body).map_err(|e| malformed(&e))
}

/// The next capacity of a frame buffer holding `cap` bytes: doubling (so a 64 MiB frame is
/// copied ~twice in all, not once per chunk), never past the frame's length.
fn next_capacity(cap: usize, len: usize) -> usize {
    cap.saturating_mul(2).max(CHUNK).min(len)
}

/// Reads one frame of `T` from `peer`, under `ceiling` and the kind's limit, buffering only
/// bytes that arrived and only within `budget`.
pub async fn read_frame<T, R>(
    io: &mut R,
    ceiling: usize,
    budget: &Arc<Budget>,
    peer: Option<PeerId>,
) -> io::Result<T>
where
    T: DeserializeOwned + FrameKinds,
    R: AsyncRead + Unpin + Send,
{
    let what = T::LIMITS.what;
    let refuse = |cause: &'static str, message: String| {
        budget.refuse(cause, peer, &message);
        io::Error::new(io::ErrorKind::InvalidData, message)
    };
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    let max = T::LIMITS.max().min(ceiling);
    if len > max {
        return Err(refuse("oversized frame", too_large(what, None, len, max)));
    }
    let mut lease = budget.lease(peer);
    let mut body: Vec<u8> = Vec::new();
    let mut kind: Option<String> = None;
    while body.len() < len {
        if body.len() == body.capacity() {
            let cap = next_capacity(body.capacity(), len);
            let more = cap - body.capacity();
            if let Err(e) = lease.grow(more).await {
                let cause = match e {
                    Exhausted::OverShare { .. } => "oversized frame",
                    Exhausted::Timeout { .. } => "inbound budget spent",
                };
                let message = format!(
                    "{what} {} of {len} bytes: {e}",
                    kind.as_deref().unwrap_or("frame")
                );
                budget.refuse(cause, peer, &message);
                return Err(io::Error::new(io::ErrorKind::OutOfMemory, message));
            }
            body.reserve_exact(cap - body.len());
        }
        // Read straight into the buffer, at most a chunk at a time (only that much is
        // zeroed first), never past the frame.
        let start = body.len();
        let end = body.capacity().min(len).min(start + CHUNK);
        body.resize(end, 0);
        let n = io.read(&mut body[start..end]).await?;
        body.truncate(start + n);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{what} frame ended after {start} of {len} bytes"),
            ));
        }
        if kind.is_none() {
            match limits::limit_for::<T>(&body) {
                Ok(None) => {}
                Ok(Some((limit, name))) => {
                    let limit = limit.min(ceiling);
                    if len > limit {
                        return Err(refuse(
                            "oversized frame",
                            too_large(what, Some(&name), len, limit),
                        ));
                    }
                    kind = Some(name);
                }
                Err(message) => return Err(refuse("malformed frame", message)),
            }
        }
    }
    if kind.is_none() {
        // The whole body was too short to name a kind.
        return Err(refuse(
            "malformed frame",
            format!("malformed {what}: {len} bytes name no kind"),
        ));
    }
    decode_body(&body, what).inspect_err(|e| budget.refuse("malformed frame", peer, &e.to_string()))
}

async fn write_frame<T, W>(io: &mut W, value: &T, limit: usize) -> io::Result<()>
where
    T: Serialize + FrameKinds,
    W: AsyncWrite + Unpin + Send,
{
    let frame = encode_frame(value, limit)?;
    io.write_all(&frame).await?;
    io.flush().await
}

impl<Req, Resp> request_response::Codec for CborCodec<Req, Resp>
where
    Req: Send + Sync + Serialize + DeserializeOwned + FrameKinds,
    Resp: Send + Sync + Serialize + DeserializeOwned + FrameKinds,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.request_limit, &self.budget, self.peer).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.response_limit, &self.budget, self.peer).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.request_limit).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &resp, self.response_limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BlockId;
    use crate::protocol::block::{BlockRequest, BlockResponse};
    use crate::protocol::budget::Budget;
    use std::time::Duration;

    fn frame_of(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    fn budget() -> Arc<Budget> {
        Arc::new(Budget::new(16 << 20, 32 << 20, Duration::from_millis(100)))
    }

    async fn read<T: DeserializeOwned + FrameKinds>(
        bytes: Vec<u8>,
        b: &Arc<Budget>,
    ) -> io::Result<T> {
        let mut io = futures::io::Cursor::new(bytes);
        read_frame::<T, _>(&mut io, usize::MAX, b, None).await
    }

    #[tokio::test]
    async fn a_frame_round_trips_and_gives_its_budget_back() {
        let b = budget();
        let data = vec![7u8; 3 * CHUNK + 5];
        let put = BlockRequest::Put {
            id: BlockId::of(&data),
            file: "f".into(),
            data: data.clone(),
        };
        let frame = encode_frame(&put, usize::MAX).unwrap();
        let got: BlockRequest = read(frame, &b).await.unwrap();
        assert!(matches!(got, BlockRequest::Put { data: d, .. } if d == data));
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn a_small_kind_announcing_a_large_length_is_refused_after_one_chunk() {
        let b = budget();
        let get = cbor4ii::serde::to_vec(
            Vec::new(),
            &BlockRequest::Get {
                id: BlockId::of(b"x"),
            },
        )
        .unwrap();
        // Announce 1 MiB, send only the start: refused without waiting for the rest.
        let mut bytes = ((1u32 << 20).to_be_bytes()).to_vec();
        bytes.extend_from_slice(&get);
        let err = read::<BlockRequest>(bytes, &b).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("block request Get frame of 1048576 bytes exceeds the 65536-byte limit"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn over_every_kind_is_refused_before_the_body() {
        let b = budget();
        let bytes = u32::MAX.to_be_bytes().to_vec();
        let err = read::<BlockResponse>(bytes, &b).await.unwrap_err();
        assert!(err.to_string().contains("exceeds the"), "{err}");
    }

    #[tokio::test]
    async fn a_frame_over_the_budget_fails_and_frees_it() {
        let b = Arc::new(Budget::new(1 << 20, 1 << 20, Duration::from_millis(50)));
        let data = vec![1u8; 2 << 20];
        let frame = encode_frame(&BlockResponse::Data { data }, usize::MAX).unwrap();
        let err = read::<BlockResponse>(frame, &b).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "{err}");
        assert_eq!(b.used(), 0);
    }

    #[tokio::test]
    async fn unknown_kinds_and_short_bodies_are_malformed() {
        let b = budget();
        let err = read::<BlockRequest>(frame_of(&[0x63, b'F', b'o', b'o']), &b)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no kind \"Foo\""), "{err}");
        let err = read::<BlockRequest>(frame_of(&[0xa1]), &b)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = read::<BlockRequest>(frame_of(&[]), &b).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_clone_made_while_the_slot_holds_a_peer_keeps_it() {
        let codec: CborCodec<BlockRequest, BlockResponse> = CborCodec::new(1, 1);
        assert_eq!(codec.clone().peer(), None);
        let p = PeerId::random();
        *codec.peer_slot().lock().unwrap() = Some(p);
        let per_connection = codec.clone();
        *codec.peer_slot().lock().unwrap() = None;
        assert_eq!(per_connection.peer(), Some(p));
        let other = PeerId::random();
        *codec.peer_slot().lock().unwrap() = Some(other);
        assert_eq!(
            per_connection.clone().peer(),
            Some(p),
            "per-stream clones keep their connection's peer"
        );
        *codec.peer_slot().lock().unwrap() = None;
        assert_eq!(codec.clone().peer(), None);
    }

    #[test]
    fn the_writer_refuses_what_the_reader_would() {
        let err = encode_frame(
            &BlockRequest::Has {
                ids: vec![BlockId::of(b"x"); 40_000],
            },
            usize::MAX,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("block request Has frame of"),
            "{err}"
        );
    }
}
