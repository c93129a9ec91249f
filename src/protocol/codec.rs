//! A request-response codec: one CBOR value per stream direction, behind a 4-byte big-endian
//! length prefix.
//!
//! libp2p's stock CBOR codec reads to end-of-stream under a silent `take(limit)`: an oversized
//! message arrives truncated and fails to decode with a misleading error, and the sender only
//! sees `UnexpectedEof`. The prefix lets both sides name the problem: the sender refuses to
//! write a frame over the limit ("frame of N bytes exceeds the M-byte limit") and the receiver
//! rejects an announced length over its limit without reading or allocating the body.

use std::io;
use std::marker::PhantomData;

use futures::prelude::*;
use libp2p::request_response;
use libp2p::StreamProtocol;
use serde::{de::DeserializeOwned, Serialize};

pub struct CborCodec<Req, Resp> {
    request_limit: usize,
    response_limit: usize,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> CborCodec<Req, Resp> {
    pub fn new(request_limit: usize, response_limit: usize) -> Self {
        Self {
            request_limit,
            response_limit,
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.request_limit, self.response_limit)
    }
}

/// Encodes a value as one frame, refusing frames over `limit`.
pub fn encode_frame<T: Serialize>(value: &T, limit: usize, what: &str) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(4 + 256);
    buf.extend_from_slice(&[0u8; 4]);
    let mut buf = cbor4ii::serde::to_vec(buf, value)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encode {what}: {e}")))?;
    let body = buf.len() - 4;
    if body > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} frame of {body} bytes exceeds the {limit}-byte limit"),
        ));
    }
    buf[..4].copy_from_slice(&(body as u32).to_be_bytes());
    Ok(buf)
}

/// Decodes a frame body; malformed CBOR is `InvalidData`, never a panic.
pub fn decode_body<T: DeserializeOwned>(body: &[u8], what: &str) -> io::Result<T> {
    cbor4ii::serde::from_slice(body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("malformed {what}: {e}")))
}

async fn read_frame<T, R>(io: &mut R, limit: usize, what: &str) -> io::Result<T>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + Send,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} frame of {len} bytes exceeds the {limit}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    decode_body(&body, what)
}

async fn write_frame<T, W>(io: &mut W, value: &T, limit: usize, what: &str) -> io::Result<()>
where
    T: Serialize,
    W: AsyncWrite + Unpin + Send,
{
    let frame = encode_frame(value, limit, what)?;
    io.write_all(&frame).await?;
    io.flush().await
}

impl<Req, Resp> request_response::Codec for CborCodec<Req, Resp>
where
    Req: Send + Sync + Serialize + DeserializeOwned,
    Resp: Send + Sync + Serialize + DeserializeOwned,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.request_limit, "request").await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.response_limit, "response").await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req, self.request_limit, "request").await
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
        write_frame(io, &resp, self.response_limit, "response").await
    }
}
