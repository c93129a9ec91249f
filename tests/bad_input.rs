//! Bad input from the network: malformed CBOR, oversized frames, wrong hashes and forged
//! records, sent by a hand-built peer straight to a node. Each is refused, nothing is stored,
//! and the node keeps serving.

mod common;

use std::io;
use std::time::Duration;

use common::*;
use futures::prelude::*;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, tcp, yamux, PeerId, StreamProtocol, Swarm};
use swarmstore::ids::BlockId;
use swarmstore::net::{rr, BlockRR, MetaRR};
use swarmstore::protocol::block::{self, BlockRequest, BlockResponse};
use swarmstore::protocol::meta::{self, MetaRequest, MetaResponse};
use swarmstore::record::{BlockEntry, FileRecord, RecordError};

/// Writes raw bytes as the request and reads whatever comes back.
#[derive(Clone, Default)]
struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        io.read_to_end(&mut v).await?;
        Ok(v)
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        io.read_to_end(&mut v).await?;
        if v.is_empty() {
            // The node closed the stream without answering.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(v)
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&req).await?;
        io.close().await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&resp).await
    }
}

#[derive(NetworkBehaviour)]
struct Prober {
    raw: request_response::Behaviour<RawCodec>,
    meta: MetaRR,
    block: BlockRR,
}

fn prober() -> Swarm<Prober> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| Prober {
            raw: request_response::Behaviour::new(
                [(meta::PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            ),
            meta: rr(
                meta::PROTOCOL,
                ProtocolSupport::Outbound,
                meta::FRAME_LIMIT,
                Duration::from_secs(10),
            ),
            block: rr(
                block::PROTOCOL,
                ProtocolSupport::Outbound,
                block::FRAME_LIMIT,
                Duration::from_secs(10),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Drives the prober until the outcome of its one outstanding request arrives.
async fn next_outcome(swarm: &mut Swarm<Prober>) -> Result<String, String> {
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ProberEvent::Raw(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => return Ok(format!("raw response of {} bytes", response.len())),
                SwarmEvent::Behaviour(ProberEvent::Raw(
                    request_response::Event::OutboundFailure { error, .. },
                )) => return Err(error.to_string()),
                SwarmEvent::Behaviour(ProberEvent::Meta(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => return Ok(format!("{response:?}")),
                SwarmEvent::Behaviour(ProberEvent::Block(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                })) => return Ok(format!("{response:?}")),
                SwarmEvent::Behaviour(ProberEvent::Meta(
                    request_response::Event::OutboundFailure { error, .. },
                ))
                | SwarmEvent::Behaviour(ProberEvent::Block(
                    request_response::Event::OutboundFailure { error, .. },
                )) => return Err(error.to_string()),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("an outcome within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_frames_are_refused_and_the_node_keeps_serving() {
    let swarm = TestSwarm::start(3, 3).await;
    let target: PeerId = swarm.node(0).peer_id();
    let mut p = prober();
    p.dial(swarm.node(0).addr()).unwrap();

    // 1. Garbage after a plausible length prefix: not CBOR.
    let mut garbage = 200u32.to_be_bytes().to_vec();
    garbage.extend(std::iter::repeat_n(0xff, 200));
    p.behaviour_mut().raw.send_request(&target, garbage);
    let r = next_outcome(&mut p).await;
    assert!(r.is_err(), "malformed CBOR gets no answer, got {r:?}");

    // 2. A length prefix far over the limit: refused before reading or allocating the body.
    let mut huge = (u32::MAX).to_be_bytes().to_vec();
    huge.extend_from_slice(b"tiny");
    p.behaviour_mut().raw.send_request(&target, huge);
    assert!(next_outcome(&mut p).await.is_err());

    // 3. Truncated frame: prefix says 1000 bytes, 10 arrive.
    let mut short = 1000u32.to_be_bytes().to_vec();
    short.extend_from_slice(&[0u8; 10]);
    p.behaviour_mut().raw.send_request(&target, short);
    assert!(next_outcome(&mut p).await.is_err());

    // 4. A block whose bytes do not match the id it is stored under.
    let data = b"block content".to_vec();
    let wrong = BlockId::of(b"something else");
    p.behaviour_mut().block.send_request(
        &target,
        BlockRequest::Put {
            id: wrong,
            file: "x".into(),
            data,
        },
    );
    let r = next_outcome(&mut p).await.expect("an answer");
    assert!(r.contains("does not match its hash"), "{r}");
    assert!(!swarm.node(0).store().blocks.contains(&wrong));

    // 5. A hand-crafted record with a bad signature, straight to a root: rejected, not stored.
    let owner = Keypair::generate_ed25519();
    let mut forged = FileRecord {
        name: "forged".into(),
        version: 1,
        size: 4,
        block_size: 1024,
        blocks: vec![BlockEntry::held(BlockId::of(b"abcd"), 4, vec![])],
        owner: owner.public().to_peer_id(),
        owner_key: vec![],
        created_ms: 1,
        modified_ms: 1,
        tombstone: false,
        sealed: None,
        signature: vec![],
    };
    forged.sign(&owner).unwrap();
    forged.size = 4;
    forged.blocks[0].id = BlockId::of(b"dcba"); // tampered after signing
    p.behaviour_mut().meta.send_request(
        &target,
        MetaRequest::Publish {
            record: forged.clone(),
        },
    );
    let r = next_outcome(&mut p).await.expect("an answer");
    assert!(r.contains("BadSignature"), "{r}");
    // Also as a replica copy.
    p.behaviour_mut().meta.send_request(
        &target,
        MetaRequest::Replicate {
            key: forged.key(),
            state: swarmstore::record::FileState {
                versions: vec![forged.clone()],
                ..swarmstore::record::FileState::empty()
            },
        },
    );
    let r = next_outcome(&mut p).await.expect("an answer");
    assert!(r.contains("BadSignature"), "{r}");
    assert!(swarm
        .node(0)
        .store()
        .records
        .get(&forged.key())
        .unwrap()
        .is_none());

    // 6. Signed by one key, claiming another owner.
    let mut stolen = forged.clone();
    stolen.blocks[0].id = BlockId::of(b"abcd");
    stolen.sign(&owner).unwrap();
    stolen.owner = PeerId::random();
    p.behaviour_mut()
        .meta
        .send_request(&target, MetaRequest::Publish { record: stolen });
    let r = next_outcome(&mut p).await.expect("an answer");
    assert!(r.contains("BadSignature"), "{r}");
    let _ = MetaResponse::Replicated; // the type is part of the public protocol
    let _ = BlockResponse::Stored;
    let _: Option<RecordError> = None;

    // The node still serves ordinary clients.
    let c = swarm.client(0).await;
    let payload = random_bytes(100_000, 5);
    c.put_bytes("after-the-storm", &payload).await.expect("put");
    assert!(
        swarm
            .client(2)
            .await
            .get_bytes("after-the-storm")
            .await
            .unwrap()
            == payload
    );
    swarm.shutdown().await;
}
