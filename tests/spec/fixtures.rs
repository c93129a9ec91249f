//! Fixtures: fixed keys, so every id, peer id and signature is reproducible. The fixture
//! peers, the record, state and download note of the examples, and the bytes their signers
//! sign.

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use swarmstore::ids::{BlockId, FileKey};
use swarmstore::record::{BlockEntry, DownloadNote, FileRecord, FileState, UserEntry};

pub(crate) fn key(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).unwrap()
}
pub(crate) fn peer(seed: u8) -> PeerId {
    key(seed).public().to_peer_id()
}
/// The client (and owner) C, the access node A, the root B, the holders H1 and H2 (seeds
/// chosen so that XOR placement among A, B, H1 and H2 gives exactly these roles for R = 2).
pub(crate) const C: u8 = 1;
pub(crate) const A: u8 = 2;
pub(crate) const B: u8 = 9;
pub(crate) const H1: u8 = 4;
pub(crate) const H2: u8 = 8;

pub(crate) const NAME: &str = "hello.txt";
pub(crate) const DATA: &[u8] = b"hello";
pub(crate) const T0: u64 = 1_700_000_000_000;

pub(crate) fn addr(port: u16) -> Multiaddr {
    format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
}
pub(crate) fn block_id() -> BlockId {
    BlockId::of(DATA)
}
pub(crate) fn file_key() -> FileKey {
    FileKey::for_name(NAME)
}

/// Version 1 of `hello.txt`: one 5-byte block held by H1 and H2, signed by C.
pub(crate) fn record() -> FileRecord {
    let mut r = FileRecord {
        name: NAME.into(),
        version: 1,
        size: DATA.len() as u64,
        block_size: 1 << 20,
        blocks: vec![BlockEntry::held(
            block_id(),
            DATA.len() as u32,
            vec![peer(H1), peer(H2)],
        )],
        owner: peer(C),
        owner_key: vec![],
        created_ms: T0,
        modified_ms: T0,
        tombstone: false,
        sealed: None,
        signature: vec![],
    };
    r.sign(&key(C)).unwrap();
    r
}

/// The same file stored inline (what the stock client does for files up to 8 KiB).
pub(crate) fn inline_record() -> FileRecord {
    let mut r = record();
    r.blocks = vec![BlockEntry::inline(DATA.to_vec())];
    r.sign(&key(C)).unwrap();
    r
}

/// The root B's state after the publish: the record, the owner in the user list, attested.
pub(crate) fn state() -> FileState {
    let mut s = FileState::empty();
    s.push(record(), 3);
    s.rev = T0 + 5;
    s.attest(&file_key(), &key(B));
    s
}

pub(crate) fn note() -> DownloadNote {
    DownloadNote::sign(file_key(), &key(C), T0 + 60_000)
}

/// What the owner signs (`record::SignedContent`, private there; mirrored here and checked
/// against the code through the signature, Ed25519 being deterministic).
#[derive(Serialize)]
struct SignedContent<'a> {
    domain: &'static str,
    name: &'a str,
    version: u64,
    size: u64,
    block_size: u32,
    blocks: Vec<(BlockId, u32)>,
    owner: PeerId,
    created_ms: u64,
    modified_ms: u64,
    tombstone: bool,
}

pub(crate) fn signed_content(r: &FileRecord) -> Vec<u8> {
    cbor(&SignedContent {
        domain: "swarmstore/record/1",
        name: &r.name,
        version: r.version,
        size: r.size,
        block_size: r.block_size,
        blocks: r.blocks.iter().map(|b| (b.id, b.len)).collect(),
        owner: r.owner,
        created_ms: r.created_ms,
        modified_ms: r.modified_ms,
        tombstone: r.tombstone,
    })
}

/// One version as an attestation covers it: number, owner signature, holder lists.
type CoveredVersion<'a> = (u64, &'a [u8], Vec<&'a [PeerId]>);

/// What an attestation signs (`record::attest::Covered`, mirrored). The owner signature in
/// it is a plain `&[u8]`: an array of integers, not a byte string.
#[derive(Serialize)]
struct Covered<'a> {
    domain: &'static str,
    key: &'a FileKey,
    rev: u64,
    versions: Vec<CoveredVersion<'a>>,
    users: &'a [UserEntry],
}

pub(crate) fn covered(key: &FileKey, s: &FileState) -> Vec<u8> {
    cbor(&Covered {
        domain: "swarmstore/state/1",
        key,
        rev: s.rev,
        versions: s
            .versions
            .iter()
            .map(|r| {
                let holders = r.blocks.iter().map(|b| b.holders.as_slice()).collect();
                (r.version, r.signature.as_slice(), holders)
            })
            .collect(),
        users: &s.users,
    })
}

pub(crate) fn note_signed(n: &DownloadNote) -> Vec<u8> {
    cbor(&("swarmstore/download/1", &n.key, n.at_ms))
}

pub(crate) fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), v).unwrap()
}
