//! Every decoder of bytes a peer or a file can hand us survives arbitrary and mutated input,
//! on stable Rust under plain `cargo test` (property tests with `proptest`).
//!
//! Decoders: the frame reader (`protocol::codec::read_frame`) and the body decoder
//! (`decode_body`) for each request and response enum of the block, meta and client
//! protocols; the gossip decoder (`protocol::gossip::decode`) for load reports, election
//! messages and decision batches; file records, file states and download notes with their
//! validation (`FileRecord::verify`, `rules::check_state`, `accept_copy`,
//! `check_attestation`, `DownloadNote::verify`); the TOML node config
//! (`NodeSettings::from_toml`) and the swarm key file format.
//!
//! For each, this proves that:
//! * **arbitrary bytes** (random, random CBOR tokens, and random bytes behind a valid variant
//!   tag) never panic and are refused with a clear error (`InvalidData`, "malformed ...");
//! * **mutated valid encodings** (bit flips, byte changes, truncation, extension, insertion,
//!   CBOR length heads rewritten, the frame's length prefix changed) never panic, and a
//!   mutated record or state that still validates says exactly what its signers signed;
//! * **valid values round-trip**: values from strategies and every seed in the committed
//!   corpus decode and re-encode to the same bytes, and a record signed with the library's
//!   own API verifies after the trip;
//! * **memory**: the frame reader refuses an announced length over the kind's limit after at
//!   most one chunk of buffer ([`CHUNK`]), before a single byte when it is over every kind's
//!   limit, and otherwise buffers only about twice what arrived; decoding a body allocates
//!   in proportion to the body, never to the lengths it announces. Allocations are counted
//!   by this binary's global allocator, per thread.
//!
//! Seed corpus: `tests/fuzz-corpus/<decoder>/`, valid encodings made by [`corpus_values`]
//! from fixed keys (Ed25519 is deterministic, so the files are reproducible).
//! `SWARMSTORE_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz write_corpus` rewrites them.
//!
//! Cases: a small default per property so the file runs in well under a minute in a debug
//! build; `SWARMSTORE_FUZZ_CASES=N` (or `PROPTEST_CASES=N`) for a longer run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use serde::{de::DeserializeOwned, Serialize};

use swarmstore::config::NodeSettings;
use swarmstore::ids::{BlockId, FileKey, Nonce, Proof};
use swarmstore::protocol::block::{BlockRequest, BlockResponse};
use swarmstore::protocol::client::{Candidate, ClientRequest, ClientResponse};
use swarmstore::protocol::codec::{decode_body, encode_frame, read_frame, CHUNK};
use swarmstore::protocol::gossip::{
    self, BlockHeat, Decision, DecisionBatch, DecisionId, DecisionState, ExtraHeld, FileHeat, Item,
    LoadReport, ManagerMsg, Outcome, RoleTag, Vote, MAX_MESSAGE,
};
use swarmstore::protocol::limits::FrameKinds;
use swarmstore::protocol::meta::{MetaRequest, MetaResponse};
use swarmstore::protocol::status::{
    BalanceStatus, DecisionRow, ManagerInfo, NodeRow, NodeStatus, PeerStatus, RepairStatus,
};
use swarmstore::protocol::Budget;
use swarmstore::record::{
    accept_copy, check_state, check_successor, compatible, Attestation, BlockEntry, DownloadNote,
    FileRecord, FileState, Position, RecordError, UserEntry, UserRole, INLINE_MAX, MAX_HOLDERS,
    MAX_VERSION,
};

// ---------------------------------------------------------------------------------------------
// Allocation accounting: this thread's live bytes, their peak and the largest single request,
// counted only while `measure` runs (the property bodies run on the test's own thread).

struct Counting;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            let live = LIVE.get() + size as isize;
            LIVE.set(live);
            PEAK.set(PEAK.get().max(live));
            LARGEST.set(LARGEST.get().max(size));
        }
    });
}

fn note_free(size: usize) {
    let _ = ON.try_with(|on| {
        if on.get() {
            LIVE.set(LIVE.get() - size as isize);
        }
    });
}

// SAFETY: every call is passed to `System` unchanged; the counters only read sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_free(layout.size());
        note_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// What a call allocated on this thread: the peak of its live bytes and its largest request.
#[derive(Debug, Clone, Copy)]
struct Usage {
    peak: usize,
    largest: usize,
}

fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    // The thread's runtime is made before counting starts.
    let _ = runtime();
    LIVE.set(0);
    PEAK.set(0);
    LARGEST.set(0);
    ON.set(true);
    let out = f();
    ON.set(false);
    let usage = Usage {
        peak: PEAK.get().max(0) as usize,
        largest: LARGEST.get(),
    };
    (out, usage)
}

// ---------------------------------------------------------------------------------------------
// Cases and helpers.

/// Cases per property: `SWARMSTORE_FUZZ_CASES`, else `PROPTEST_CASES`, else a default that
/// keeps the whole file well under a minute in a debug build.
fn cases(default: u32) -> u32 {
    ["SWARMSTORE_FUZZ_CASES", "PROPTEST_CASES"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
        .unwrap_or(default)
}

fn config() -> Config {
    Config {
        cases: cases(1024),
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// Fewer default cases for the properties that sign or buffer megabytes per case.
fn heavy_config() -> Config {
    Config {
        cases: cases(128),
        ..config()
    }
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), v).expect("encodes")
}

fn key(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).expect("ed25519 seed")
}

/// Peers of fixed keys, so strategies and the corpus are reproducible.
fn peers() -> &'static [PeerId] {
    static PEERS: OnceLock<Vec<PeerId>> = OnceLock::new();
    PEERS.get_or_init(|| (1..=8).map(|s| key(s).public().to_peer_id()).collect())
}

fn peer(seed: u8) -> PeerId {
    peers()[usize::from(seed - 1)]
}

const T0: u64 = 1_700_000_000_000;

/// A deterministic filler (xorshift), for inputs too large to draw byte by byte.
fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The seed corpus.

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
}

fn held_record() -> FileRecord {
    let data = b"hello";
    let mut r = FileRecord {
        name: "hello.txt".into(),
        version: 1,
        size: data.len() as u64,
        block_size: 1 << 20,
        blocks: vec![BlockEntry::held(
            BlockId::of(data),
            data.len() as u32,
            vec![peer(4), peer(8)],
        )],
        owner: peer(1),
        owner_key: vec![],
        created_ms: T0,
        modified_ms: T0,
        tombstone: false,
        signature: vec![],
    };
    r.sign(&key(1)).expect("sign");
    r
}

fn multi_block_record() -> FileRecord {
    let mut r = held_record();
    r.name = "photos/cat.jpg".into();
    r.version = 2;
    r.block_size = 4;
    r.blocks = [&b"abcd"[..], b"efgh", b"ij"]
        .iter()
        .enumerate()
        .map(|(i, d)| BlockEntry::held(BlockId::of(d), d.len() as u32, peers()[i..i + 3].to_vec()))
        .collect();
    r.size = 10;
    r.sign(&key(1)).expect("sign");
    r
}

fn inline_record() -> FileRecord {
    let mut r = held_record();
    r.blocks = vec![BlockEntry::inline(b"hello".to_vec())];
    r.sign(&key(1)).expect("sign");
    r
}

fn tombstone(after: &FileRecord) -> FileRecord {
    let mut t = after.clone();
    t.version += 1;
    t.blocks.clear();
    t.size = 0;
    t.tombstone = true;
    t.sign(&key(1)).expect("sign");
    t
}

/// A root's state after two versions and a download, attested by peer 2.
fn attested_state() -> FileState {
    let mut s = FileState::empty();
    let v1 = held_record();
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.modified_ms = T0 + 1_000;
    v2.sign(&key(1)).expect("sign");
    s.push(v1, 3);
    s.push(v2, 3);
    s.note_user(peer(3), T0 + 2_000, 16);
    s.rev = T0 + 2_000;
    s.attest(&FileKey::for_name("hello.txt"), &key(2));
    s
}

/// A name released and taken again: tombstone, then a new owner's first version.
fn reborn_state() -> FileState {
    let v1 = held_record();
    let tomb = tombstone(&v1);
    let mut next = held_record();
    next.version = tomb.version + 1;
    next.sign(&key(5)).expect("sign");
    let mut s = FileState::empty();
    s.push(v1, 3);
    s.push(tomb, 3);
    s.push(next, 3);
    s.rev = T0 + 9;
    s.attest(&FileKey::for_name("hello.txt"), &key(3));
    s
}

fn note() -> DownloadNote {
    DownloadNote::sign(FileKey::for_name("hello.txt"), &key(3), T0 + 60_000)
}

fn addr(port: u16) -> Multiaddr {
    format!("/ip4/10.0.0.1/tcp/{port}/p2p/{}", peer(2))
        .parse()
        .expect("multiaddr")
}

fn node_status() -> NodeStatus {
    NodeStatus {
        peer: peer(2),
        addrs: vec![
            addr(4001),
            "/ip6/::1/udp/4001/quic-v1".parse().expect("addr"),
        ],
        replication: 3,
        blocks: 12,
        used: 1 << 20,
        capacity: Some(1 << 30),
        records: 4,
        peers: vec![
            PeerStatus {
                peer: peer(3),
                connected: true,
                live: true,
            },
            PeerStatus {
                peer: peer(4),
                connected: false,
                live: false,
            },
        ],
        repair: RepairStatus {
            under_replicated: 1,
            queue: 2,
            lost: 0,
            repaired_blocks: 5,
            repaired_bytes: 5 << 20,
            rounds: 9,
        },
        balance: BalanceStatus {
            manager: Some(ManagerInfo {
                peer: peer(3),
                term: 7,
            }),
            role: "follower".into(),
            term: 7,
            nodes: vec![NodeRow {
                peer: peer(3),
                load: 1.5e6,
                used: 10,
                capacity: 100,
                util: 0.25,
                zone: Some("a".into()),
                role: "manager".into(),
                served_blocks: 3,
                extras: 1,
                delegations: 0,
            }],
            decisions: vec![DecisionRow {
                kind: "replicate".into(),
                object: BlockId::of(b"hello").to_hex(),
                from: Some(peer(4)),
                to: None,
                state: "applied".into(),
                term: 7,
                seq: 2,
                file: "hello.txt".into(),
            }],
            ignored: BTreeMap::from([("stale term".to_string(), 2)]),
        },
        refused: BTreeMap::from([("oversized frame".to_string(), 1)]),
    }
}

fn load_report() -> LoadReport {
    let id = BlockId::of(b"hello");
    LoadReport {
        seq: 42,
        at_ms: T0,
        load: 2.5e6,
        bandwidth: 1e8,
        meta_rps: 3.0,
        block_rps: 12.5,
        block_bps: 2.4e6,
        inflight: 2,
        used: 1 << 30,
        capacity: 1 << 40,
        zone: Some("eu-1".into()),
        role: RoleTag::Follower,
        term: 7,
        served_blocks: 1000,
        hot_blocks: vec![BlockHeat {
            id,
            file: "hello.txt".into(),
            size: 5,
            heat: 1e6,
            extra: false,
        }],
        hot_files: vec![FileHeat {
            name: "hello.txt".into(),
            heat: 40.0,
            root: true,
        }],
        extras: vec![ExtraHeld {
            id,
            file: "hello.txt".into(),
            size: 5,
            base: vec![peer(4), peer(8)],
        }],
        delegations: vec![(FileKey::for_name("hello.txt"), T0 + 60_000)],
        outcomes: vec![Outcome {
            id: DecisionId {
                term: 7,
                seq: 3,
                idx: 0,
            },
            state: DecisionState::Failed("no source".into()),
        }],
    }
}

fn decisions() -> Vec<Decision> {
    let (block, file) = (BlockId::of(b"hello"), FileKey::for_name("hello.txt"));
    vec![
        Decision::Replicate {
            block,
            file,
            from: peer(4),
            to: peer(5),
        },
        Decision::Delegate {
            file,
            root: peer(2),
            to: peer(6),
            expires_at: T0 + 60_000,
        },
        Decision::Move {
            block,
            file,
            from: peer(4),
            to: peer(7),
            bytes: 5,
        },
        Decision::Drop {
            block,
            file,
            at: peer(5),
        },
        Decision::EndDelegation { file, at: peer(6) },
    ]
}

fn record_errors() -> Vec<RecordError> {
    vec![
        RecordError::Invalid("file name is empty".into()),
        RecordError::BadSignature("owner key does not match owner peer id".into()),
        RecordError::PermissionDenied {
            name: "hello.txt".into(),
            owner: peer(1).to_string(),
        },
        RecordError::Conflict {
            name: "hello.txt".into(),
            current: 2,
            attempted: 1,
        },
        RecordError::Stale {
            current: 2,
            attempted: 1,
        },
        RecordError::Unauthorized("download note for another file".into()),
    ]
}

/// Every seed: (decoder directory, file name, bytes).
fn corpus_values() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let mut add = |dir: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((dir, name.to_string(), bytes));
    };
    let id = BlockId::of(b"hello");
    let fk = FileKey::for_name("hello.txt");
    let nonce = Nonce([0x11; 32]);
    let big = filler(7, 3 * 1024);

    for (name, r) in [
        (
            "put",
            BlockRequest::Put {
                id,
                file: "hello.txt".into(),
                data: b"hello".to_vec(),
            },
        ),
        (
            "put-3k",
            BlockRequest::Put {
                id: BlockId::of(&big),
                file: "big.bin".into(),
                data: big.clone(),
            },
        ),
        ("get", BlockRequest::Get { id }),
        (
            "has",
            BlockRequest::Has {
                ids: vec![id, BlockId::of(b"x"), BlockId::of(b"y")],
            },
        ),
        (
            "pull",
            BlockRequest::Pull {
                id,
                file: "hello.txt".into(),
                sources: vec![peer(4), peer(8)],
            },
        ),
        (
            "prove",
            BlockRequest::Prove {
                nonce,
                ids: vec![id, BlockId::of(b"x")],
            },
        ),
    ] {
        add("block-request", name, cbor(&r));
    }
    for (name, r) in [
        ("stored", BlockResponse::Stored),
        (
            "data",
            BlockResponse::Data {
                data: b"hello".to_vec(),
            },
        ),
        ("not-found", BlockResponse::NotFound),
        ("have", BlockResponse::Have { ids: vec![id] }),
        (
            "proofs",
            BlockResponse::Proofs {
                proofs: vec![(id, Proof::of(&nonce, &id, b"hello"))],
            },
        ),
        (
            "error",
            BlockResponse::Error {
                message: "node is full".into(),
            },
        ),
    ] {
        add("block-response", name, cbor(&r));
    }
    for (name, r) in [
        (
            "publish",
            MetaRequest::Publish {
                record: held_record(),
            },
        ),
        (
            "publish-multi",
            MetaRequest::Publish {
                record: multi_block_record(),
            },
        ),
        (
            "replicate",
            MetaRequest::Replicate {
                key: fk,
                state: attested_state(),
            },
        ),
        (
            "digest",
            MetaRequest::Digest {
                entries: vec![
                    (
                        fk,
                        Position {
                            version: 2,
                            rev: T0,
                        },
                    ),
                    (FileKey([3; 32]), Position::default()),
                ],
            },
        ),
        (
            "set-holders",
            MetaRequest::SetHolders {
                name: "hello.txt".into(),
                block: id,
                add: vec![peer(5)],
                remove: vec![peer(4)],
            },
        ),
        (
            "fetch",
            MetaRequest::Fetch {
                key: fk,
                note: Some(note()),
            },
        ),
        (
            "fetch-bare",
            MetaRequest::Fetch {
                key: fk,
                note: None,
            },
        ),
        (
            "delegate-state",
            MetaRequest::DelegateState {
                key: fk,
                state: reborn_state(),
            },
        ),
    ] {
        add("meta-request", name, cbor(&r));
    }
    let mut meta_responses = vec![
        (
            "published".to_string(),
            MetaResponse::Published {
                version: 1,
                replicas: vec![peer(2), peer(3)],
            },
        ),
        ("replicated".into(), MetaResponse::Replicated),
        ("holders-set".into(), MetaResponse::HoldersSet),
        (
            "digest".into(),
            MetaResponse::Digest {
                entries: vec![(fk, Position { version: 1, rev: 3 })],
            },
        ),
        (
            "state".into(),
            MetaResponse::State {
                state: Some(attested_state()),
            },
        ),
        ("state-none".into(), MetaResponse::State { state: None }),
        (
            "error".into(),
            MetaResponse::Error {
                message: "not the root".into(),
            },
        ),
    ];
    for (i, e) in record_errors().into_iter().enumerate() {
        meta_responses.push((format!("rejected-{i}"), MetaResponse::Rejected { error: e }));
    }
    for (name, r) in meta_responses {
        add("meta-response", &name, cbor(&r));
    }
    for (name, r) in [
        (
            "put-block",
            ClientRequest::PutBlock {
                id,
                file: "hello.txt".into(),
                data: b"hello".to_vec(),
            },
        ),
        (
            "publish",
            ClientRequest::Publish {
                record: held_record(),
            },
        ),
        (
            "publish-inline",
            ClientRequest::Publish {
                record: inline_record(),
            },
        ),
        (
            "fetch",
            ClientRequest::Fetch {
                name: "hello.txt".into(),
                note: Some(note()),
            },
        ),
        (
            "get-block",
            ClientRequest::GetBlock {
                id,
                holders: vec![peer(4), peer(8)],
            },
        ),
        ("status", ClientRequest::Status),
        ("peers", ClientRequest::Peers),
    ] {
        add("client-request", name, cbor(&r));
    }
    for (name, r) in [
        (
            "block-stored",
            ClientResponse::BlockStored {
                holders: vec![peer(4), peer(8)],
            },
        ),
        (
            "published",
            ClientResponse::Published {
                key: fk,
                version: 1,
                root: peer(2),
                replicas: vec![peer(3)],
            },
        ),
        (
            "file",
            ClientResponse::File {
                key: fk,
                root: peer(2),
                replicas: vec![peer(3)],
                state: attested_state(),
                addrs: vec![(peer(4), vec![addr(4004)]), (peer(8), vec![])],
            },
        ),
        (
            "block",
            ClientResponse::Block {
                data: b"hello".to_vec(),
            },
        ),
        ("status", ClientResponse::Status(Box::new(node_status()))),
        (
            "peers",
            ClientResponse::Peers {
                replication: 3,
                candidates: vec![Candidate {
                    peer: peer(4),
                    addrs: vec![addr(4004)],
                    free: Some(1 << 30),
                }],
            },
        ),
        (
            "not-found",
            ClientResponse::NotFound {
                name: "nope.txt".into(),
            },
        ),
        (
            "rejected",
            ClientResponse::Rejected {
                error: RecordError::Stale {
                    current: 2,
                    attempted: 1,
                },
            },
        ),
        (
            "error",
            ClientResponse::Error {
                message: "no holder answered".into(),
            },
        ),
    ] {
        add("client-response", name, cbor(&r));
    }

    add(
        "gossip-load",
        "report",
        gossip::encode_report(&load_report()),
    );
    let mut idle = load_report();
    idle.hot_blocks.clear();
    idle.hot_files.clear();
    idle.extras.clear();
    idle.outcomes.clear();
    idle.delegations.clear();
    idle.zone = None;
    idle.role = RoleTag::Manager;
    add("gossip-load", "idle", gossip::encode_report(&idle));
    let topic = "swarmstore/main/manager";
    let votes: Vec<Vote> = (3..=5)
        .map(|s| Vote::sign(topic, 7, peer(2), &key(s)))
        .collect();
    for (name, m) in [
        ("candidacy", ManagerMsg::Candidacy { term: 7 }),
        ("vote", ManagerMsg::Vote(votes[0].clone())),
        (
            "heartbeat",
            ManagerMsg::Heartbeat {
                term: 7,
                beat: 3,
                cert: votes.clone(),
            },
        ),
        (
            "heartbeat-bare",
            ManagerMsg::Heartbeat {
                term: 7,
                beat: 4,
                cert: vec![],
            },
        ),
    ] {
        add("gossip-manager", name, gossip::encode(&m).expect("fits"));
    }
    let items: Vec<Item> = decisions()
        .into_iter()
        .map(|decision| Item {
            decision,
            name: "hello.txt".into(),
        })
        .collect();
    let batch = DecisionBatch {
        term: 7,
        seq: 12,
        now_ms: T0,
        items,
    };
    add(
        "gossip-decisions",
        "batch",
        gossip::encode(&batch).expect("fits"),
    );
    let empty = DecisionBatch {
        items: vec![],
        ..batch
    };
    add(
        "gossip-decisions",
        "empty",
        gossip::encode(&empty).expect("fits"),
    );

    add("record", "held", cbor(&held_record()));
    add("record", "multi-block", cbor(&multi_block_record()));
    add("record", "inline", cbor(&inline_record()));
    add("record", "tombstone", cbor(&tombstone(&held_record())));
    add("state", "attested", cbor(&attested_state()));
    add("state", "reborn", cbor(&reborn_state()));
    add("note", "download", cbor(&note()));
    out
}

/// Config seeds (TOML text): every key the file takes, and a minimal file.
const CONFIG_SEEDS: &[(&str, &str)] = &[
    (
        "full",
        r#"data-dir = "data"
listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
bootstrap = ["/dns4/node1/tcp/4001", "not an address"]
external-addr = ["/ip4/203.0.113.7/tcp/4001"]
no-mdns = true
replication = 3
capacity = "2G"
keep-versions = 4
gc-grace = "30s"
sync-interval = "10s"
liveness = "1m"
repair-interval = "500ms"
repair-bandwidth = 67108864
drain = false
relay-server = "on"
autonat-server = "auto"
metrics = "127.0.0.1:9090"
swarm = "lab"
zone = "eu-1"
report-interval = "2s"
bandwidth = "100M"
manager-peers = ["12D3KooWLHPsWdQMjCbKuBULNyVLbPwqQPnrbwvqHm4cMrbhkAap"]
balance-hold = "1h"
no-planner = true
"#,
    ),
    ("minimal", "replication = 2\n"),
    (
        "node",
        "data-dir = \"/var/lib/swarmstore\"\nlisten = [\"/ip6/::/tcp/4001\"]\ncapacity = 1073741824\nswarm = \"main\"\n",
    ),
];

const SWARM_KEY_SEED: &str = "/key/swarm/psk/1.0.0/\n/base16/\n\
    6a2a4cd5f0c0b4c21e3b5f8f7e1d0c9b8a7f6e5d4c3b2a1908f7e6d5c4b3a291\n";

fn load_dir(dir: &str) -> Vec<Vec<u8>> {
    let path = corpus_root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", path.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("corpus file"))
        .collect();
    assert!(!seeds.is_empty(), "corpus {} is empty", path.display());
    seeds
}

/// The corpus of one decoder, read once.
fn seeds(dir: &'static str) -> Arc<Vec<Vec<u8>>> {
    type Cache = std::sync::Mutex<BTreeMap<&'static str, Arc<Vec<Vec<u8>>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(dir)
        .or_insert_with(|| Arc::new(load_dir(dir)))
        .clone()
}

#[test]
fn write_corpus() {
    if std::env::var_os("SWARMSTORE_FUZZ_WRITE_CORPUS").is_none() {
        return;
    }
    let root = corpus_root();
    let _ = std::fs::remove_dir_all(&root);
    let write = |dir: &str, file: String, bytes: &[u8]| {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).expect("corpus dir");
        std::fs::write(d.join(file), bytes).expect("corpus file");
    };
    for (dir, name, bytes) in corpus_values() {
        write(dir, format!("{name}.cbor"), &bytes);
    }
    for (name, text) in CONFIG_SEEDS {
        write("config", format!("{name}.toml"), text.as_bytes());
    }
    write("swarm-key", "swarm.key".into(), SWARM_KEY_SEED.as_bytes());
}

#[test]
fn the_committed_corpus_holds_every_seed() {
    if std::env::var_os("SWARMSTORE_FUZZ_WRITE_CORPUS").is_some() {
        return;
    }
    for (dir, name, _) in corpus_values() {
        let path = corpus_root().join(dir).join(format!("{name}.cbor"));
        assert!(
            path.exists(),
            "{} missing: run SWARMSTORE_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz write_corpus",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations and arbitrary inputs.

/// The CBOR heads in `b`, scanned linearly: (offset, major type, argument, head length).
/// String payloads are skipped; scanning stops at the first head that does not fit.
fn heads(b: &[u8]) -> Vec<(usize, u8, u64, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let (major, info) = (b[at] >> 5, b[at] & 0x1f);
        let width = match info {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => {
                at += 1;
                continue;
            }
        };
        let Some(arg) = b.get(at + 1..at + 1 + width) else {
            break;
        };
        let arg = if width == 0 {
            u64::from(info)
        } else {
            arg.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x))
        };
        out.push((at, major, arg, 1 + width));
        at += 1 + width;
        if major == 2 || major == 3 {
            at = at.saturating_add(usize::try_from(arg).unwrap_or(usize::MAX));
        }
    }
    out
}

fn encode_head(major: u8, arg: u64) -> Vec<u8> {
    let m = major << 5;
    match arg {
        0..=23 => vec![m | arg as u8],
        24..=0xff => vec![m | 24, arg as u8],
        0x100..=0xffff => {
            let mut v = vec![m | 25];
            v.extend_from_slice(&(arg as u16).to_be_bytes());
            v
        }
        0x1_0000..=0xffff_ffff => {
            let mut v = vec![m | 26];
            v.extend_from_slice(&(arg as u32).to_be_bytes());
            v
        }
        _ => {
            let mut v = vec![m | 27];
            v.extend_from_slice(&arg.to_be_bytes());
            v
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Duplicate a slice in place (repeats a field or an element).
    Repeat(usize, usize),
    /// Rewrite the argument of the n-th CBOR head (a length, a count or a number).
    Relength(usize, u64),
    /// Nudge the n-th CBOR head's argument by a small amount.
    Nudge(usize, i8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let anywhere = any::<usize>();
    prop_oneof![
        3 => (anywhere, 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        2 => (anywhere, any::<u8>()).prop_map(|(p, v)| Mutation::SetByte(p, v)),
        1 => anywhere.prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        1 => (anywhere, vec(any::<u8>(), 1..16)).prop_map(|(p, v)| Mutation::Insert(p, v)),
        1 => (anywhere, 1usize..16).prop_map(|(p, n)| Mutation::Remove(p, n)),
        1 => (anywhere, 1usize..64).prop_map(|(p, n)| Mutation::Repeat(p, n)),
        2 => (
            anywhere,
            prop_oneof![
                0u64..64,
                Just(u64::from(u32::MAX)),
                Just(u64::MAX),
                any::<u64>(),
                (0u64..32).prop_map(|s| 1u64 << (s * 2)),
            ]
        )
            .prop_map(|(h, v)| Mutation::Relength(h, v)),
        2 => (anywhere, -3i8..=3).prop_map(|(h, d)| Mutation::Nudge(h, d)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    let pos = |p: usize, plus: usize| p % (len + plus).max(1);
    match m {
        Mutation::FlipBit(p, b) if len > 0 => bytes[pos(*p, 0)] ^= 1 << b,
        Mutation::SetByte(p, v) if len > 0 => bytes[pos(*p, 0)] = *v,
        Mutation::Truncate(p) => bytes.truncate(pos(*p, 0)),
        Mutation::Extend(v) => bytes.extend_from_slice(v),
        Mutation::Insert(p, v) => {
            let at = pos(*p, 1);
            bytes.splice(at..at, v.iter().copied());
        }
        Mutation::Remove(p, n) if len > 0 => {
            let at = pos(*p, 0);
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Repeat(p, n) if len > 0 => {
            let at = pos(*p, 0);
            let piece = bytes[at..(at + n).min(len)].to_vec();
            bytes.splice(at..at, piece);
        }
        Mutation::Relength(h, v) => rehead(bytes, *h, |_| *v),
        Mutation::Nudge(h, d) => rehead(bytes, *h, |arg| arg.wrapping_add_signed(i64::from(*d))),
        _ => {}
    }
}

/// Rewrites the argument of the `n`-th CBOR head of `bytes` (modulo their number).
fn rehead(bytes: &mut Vec<u8>, n: usize, new: impl Fn(u64) -> u64) {
    let hs = heads(bytes);
    if hs.is_empty() {
        return;
    }
    let (at, major, arg, used) = hs[n % hs.len()];
    bytes.splice(at..at + used, encode_head(major, new(arg)));
}

/// A seed of `dir` with 1 to 4 mutations applied.
fn mutated(dir: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let corpus = seeds(dir);
    let n = corpus.len();
    (0..n, vec(mutation(), 1..5)).prop_map(move |(i, ms)| {
        let mut b = corpus[i].clone();
        for m in &ms {
            apply(&mut b, m);
        }
        b
    })
}

/// Text strings that appear in the corpus of `dir` (variant and field names): the
/// dictionary for random CBOR.
fn dictionary(dir: &'static str) -> Vec<String> {
    let mut words: Vec<String> = seeds(dir)
        .iter()
        .flat_map(|s| {
            heads(s)
                .into_iter()
                .filter(|h| h.1 == 3 && h.2 <= 64)
                .filter_map(|(at, _, arg, used)| {
                    let start = at + used;
                    let text = s.get(start..start + arg as usize)?;
                    std::str::from_utf8(text).ok().map(str::to_string)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    words.sort();
    words.dedup();
    words
}

#[derive(Debug, Clone)]
enum Token {
    Head(u8, u64),
    Word(usize),
    Bytes(Vec<u8>),
}

/// Random CBOR-shaped input: heads of every major type, the decoder's own words, byte strings.
fn cbor_tokens(dir: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let words = Arc::new(dictionary(dir));
    let token = prop_oneof![
        3 => (0u8..8, prop_oneof![0u64..24, 0u64..300, any::<u64>()])
            .prop_map(|(m, a)| Token::Head(m, a)),
        3 => any::<usize>().prop_map(Token::Word),
        1 => vec(any::<u8>(), 0..40).prop_map(Token::Bytes),
    ];
    vec(token, 1..40).prop_map(move |ts| {
        let mut out = Vec::new();
        for t in ts {
            match t {
                Token::Head(m, a) => out.extend(encode_head(m, a)),
                Token::Word(i) if !words.is_empty() => {
                    let w = &words[i % words.len()];
                    out.extend(encode_head(3, w.len() as u64));
                    out.extend_from_slice(w.as_bytes());
                }
                Token::Word(_) => {}
                Token::Bytes(b) => {
                    out.extend(encode_head(2, b.len() as u64));
                    out.extend(b);
                }
            }
        }
        out
    })
}

/// Arbitrary bodies for a decoder: raw bytes, CBOR tokens, or a real variant tag followed by
/// raw bytes.
fn arbitrary(dir: &'static str, tags: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let tags = Arc::new(tags);
    let tags_for_deep = tags.clone();
    let tagged = (any::<usize>(), vec(any::<u8>(), 0..256)).prop_map(move |(i, tail)| {
        let mut b = tags[i % tags.len()].clone();
        b.extend(tail);
        b
    });
    // Nesting far deeper than any type: arrays, one-entry maps, indefinite arrays.
    let deep = (any::<usize>(), 0usize..3, 1usize..20_000).prop_map(move |(i, shape, depth)| {
        let mut b = vec![0xa1];
        b.extend(encode_head(3, 1));
        b.push(b'x');
        let unit: &[u8] = [&[0x81][..], &[0xa1, 0x61, b'k'], &[0x9f]][shape];
        for _ in 0..depth {
            b.extend_from_slice(unit);
        }
        if i % 2 == 0 {
            // Behind a real tag, where the decoder expects a field.
            let mut t = tags_for_deep[i % tags_for_deep.len()].clone();
            t.extend(b);
            return t;
        }
        b
    });
    prop_oneof![
        4 => vec(any::<u8>(), 0..512),
        4 => cbor_tokens(dir),
        4 => tagged,
        1 => deep,
    ]
}

/// The first bytes of each variant of an enum as serde writes it: `"Name"` for a unit
/// variant, `{"Name": ` for the others.
fn variant_tags<T: FrameKinds>() -> Vec<Vec<u8>> {
    T::LIMITS
        .limits
        .iter()
        .flat_map(|(name, _)| {
            let mut text = encode_head(3, name.len() as u64);
            text.extend_from_slice(name.as_bytes());
            let mut map = vec![0xa1];
            map.extend_from_slice(&text);
            [text, map]
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The properties of a body decoder.

/// A body of `n` bytes may make the decoder allocate this much at most: a fixed allowance
/// (error messages, the decoder's own state) plus a multiple of the body (decoded values are
/// larger than their encoding: a 38-byte peer id is an 80-byte `PeerId`).
fn decode_allowance(n: usize) -> usize {
    64 * 1024 + 128 * n
}

fn check_body<T: Serialize + DeserializeOwned + FrameKinds>(
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    let what = T::LIMITS.what;
    let (got, usage) = measure(|| decode_body::<T>(bytes, what));
    prop_assert!(
        usage.peak <= decode_allowance(bytes.len()),
        "decoding {} bytes allocated {} at peak ({usage:?})",
        bytes.len(),
        usage.peak
    );
    match got {
        Err(e) => {
            prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            let text = e.to_string();
            let prefix = format!("malformed {what}: ");
            prop_assert!(text.starts_with(&prefix), "{}", text);
            prop_assert!(text.len() > prefix.len(), "an empty reason");
        }
        Ok(v) => {
            // Whatever decodes re-encodes stably.
            let again = cbor(&v);
            let back: T = decode_body(&again, what).map_err(|e| {
                TestCaseError::fail(format!("re-encoded value does not decode: {e}"))
            })?;
            prop_assert_eq!(cbor(&back), again);
        }
    }
    Ok(())
}

fn round_trips<T: Serialize + DeserializeOwned + FrameKinds>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = cbor(value);
    let back: T = decode_body(&bytes, T::LIMITS.what)
        .map_err(|e| TestCaseError::fail(format!("valid value refused: {e}")))?;
    prop_assert_eq!(cbor(&back), bytes.clone());
    // And as a whole frame through the reader.
    if let Ok(frame) = encode_frame(value, usize::MAX) {
        let got = read_all::<T>(frame, usize::MAX)
            .map_err(|e| TestCaseError::fail(format!("frame refused: {e}")))?;
        prop_assert_eq!(cbor(&got), bytes);
    }
    Ok(())
}

fn runtime() -> &'static tokio::runtime::Runtime {
    thread_local! {
        static RT: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("runtime"),
        ));
    }
    RT.with(|rt| *rt)
}

fn budget() -> Arc<Budget> {
    Arc::new(Budget::new(
        swarmstore::protocol::budget::PER_PEER,
        swarmstore::protocol::budget::PER_NODE,
        Duration::from_millis(20),
    ))
}

/// Reads one frame of `T` from an in-memory stream, on this thread.
fn read_all<T: DeserializeOwned + FrameKinds>(stream: Vec<u8>, ceiling: usize) -> io::Result<T> {
    let b = budget();
    let mut io = futures::io::Cursor::new(stream);
    let got = runtime().block_on(read_frame::<T, _>(&mut io, ceiling, &b, None));
    assert_eq!(b.used(), 0, "the reader gave its budget back");
    got
}

fn frame_of(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// The frame reader on any stream: never panics, never buffers more than twice what arrived
/// (at least one chunk), gives its budget back; a frame it accepts is what `decode_body` says.
fn check_stream<T: Serialize + DeserializeOwned + FrameKinds>(
    stream: Vec<u8>,
) -> Result<(), TestCaseError> {
    let n = stream.len();
    // The body the reader sees: the announced length, no more.
    let body = stream.get(..4).map(|p| {
        let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
        stream[4..(4usize.saturating_add(len)).min(n)].to_vec()
    });
    let (got, usage) = measure(|| read_all::<T>(stream, usize::MAX));
    prop_assert!(
        usage.largest <= CHUNK.max(2 * n) + decode_allowance(n),
        "a {n}-byte stream made the reader allocate {} at once",
        usage.largest
    );
    if let (Ok(v), Some(body)) = (got, body) {
        let direct: T = decode_body(&body[..], T::LIMITS.what).map_err(|e| {
            TestCaseError::fail(format!("reader took what the decoder refuses: {e}"))
        })?;
        prop_assert_eq!(cbor(&v), cbor(&direct));
    }
    Ok(())
}

fn check_seeds<T: Serialize + DeserializeOwned + FrameKinds>(dir: &'static str) {
    for (i, seed) in seeds(dir).iter().enumerate() {
        let v: T = decode_body(seed, T::LIMITS.what).unwrap_or_else(|e| {
            panic!("{dir} seed {i} does not decode ({e}); regenerate with SWARMSTORE_FUZZ_WRITE_CORPUS=1")
        });
        assert_eq!(
            &cbor(&v),
            seed,
            "{dir} seed {i} re-encodes differently; regenerate with SWARMSTORE_FUZZ_WRITE_CORPUS=1"
        );
        let frame = encode_frame(&v, usize::MAX).expect("seed fits its frame");
        assert_eq!(&frame[4..], &seed[..]);
        let back: T = read_all(frame, usize::MAX).expect("seed frame reads");
        assert_eq!(&cbor(&back), seed);
    }
}

/// The whole battery for one wire enum.
macro_rules! wire_decoder {
    ($module:ident, $ty:ty, $dir:literal, $strategy:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn seeds_round_trip() {
                check_seeds::<$ty>($dir);
            }

            proptest! {
                #![proptest_config(config())]

                #[test]
                fn arbitrary_bodies_never_panic(bytes in arbitrary($dir, variant_tags::<$ty>())) {
                    check_body::<$ty>(&bytes)?;
                }

                #[test]
                fn mutated_seeds_never_panic(bytes in mutated($dir)) {
                    check_body::<$ty>(&bytes)?;
                }

                #[test]
                fn mutated_frames_never_panic(
                    body in mutated($dir),
                    // The length prefix: the body's own, off by a little, or anything.
                    prefix in prop_oneof![
                        2 => (-64i64..=64).prop_map(Err),
                        1 => any::<u32>().prop_map(Ok),
                    ],
                ) {
                    let mut frame = frame_of(&body);
                    let len = match prefix {
                        Err(delta) => (body.len() as i64 + delta).clamp(0, i64::from(u32::MAX)) as u32,
                        Ok(any) => any,
                    };
                    frame[..4].copy_from_slice(&len.to_be_bytes());
                    check_stream::<$ty>(frame)?;
                }

                #[test]
                fn arbitrary_streams_never_panic(stream in vec(any::<u8>(), 0..300)) {
                    check_stream::<$ty>(stream)?;
                }

                #[test]
                fn valid_values_round_trip(value in $strategy) {
                    round_trips::<$ty>(&value)?;
                }
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Strategies for valid values.

fn any_peer() -> impl Strategy<Value = PeerId> {
    (0..peers().len()).prop_map(|i| peers()[i])
}

fn peer_list(max: usize) -> impl Strategy<Value = Vec<PeerId>> {
    vec(any_peer(), 0..=max)
}

fn block_id() -> impl Strategy<Value = BlockId> {
    any::<[u8; 32]>().prop_map(BlockId)
}

fn file_key() -> impl Strategy<Value = FileKey> {
    any::<[u8; 32]>().prop_map(FileKey)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z/._-]{1,40}"]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn multiaddr() -> impl Strategy<Value = Multiaddr> {
    (any::<[u8; 4]>(), any::<u16>(), any::<bool>(), any_peer()).prop_map(|(ip, port, quic, p)| {
        let [a, b, c, d] = ip;
        let s = if quic {
            format!("/ip4/{a}.{b}.{c}.{d}/udp/{port}/quic-v1/p2p/{p}")
        } else {
            format!("/ip4/{a}.{b}.{c}.{d}/tcp/{port}")
        };
        s.parse().expect("multiaddr")
    })
}

/// Records with arbitrary fields: they round-trip, and almost never verify.
fn any_record() -> impl Strategy<Value = FileRecord> {
    let entry = (
        block_id(),
        any::<u32>(),
        peer_list(MAX_HOLDERS + 1),
        proptest::option::of(bytes(64)),
    )
        .prop_map(|(id, len, holders, inline)| BlockEntry {
            id,
            len,
            holders,
            inline: inline.map(serde_bytes::ByteBuf::from),
        });
    (
        (
            text(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            vec(entry, 0..4),
        ),
        (
            any_peer(),
            bytes(48),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            bytes(64),
        ),
    )
        .prop_map(
            |((name, version, size, block_size, blocks), (owner, owner_key, c, m, tomb, sig))| {
                FileRecord {
                    name,
                    version,
                    size,
                    block_size,
                    blocks,
                    owner,
                    owner_key,
                    created_ms: c,
                    modified_ms: m,
                    tombstone: tomb,
                    signature: sig,
                }
            },
        )
}

fn any_state() -> impl Strategy<Value = FileState> {
    let user = (
        any_peer(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(peer, owner, first_ms, last_ms, count)| UserEntry {
            peer,
            role: if owner {
                UserRole::Owner
            } else {
                UserRole::Downloader
            },
            first_ms,
            last_ms,
            count,
        });
    let attest = proptest::option::of(
        (any_peer(), bytes(64)).prop_map(|(by, signature)| Attestation { by, signature }),
    );
    (
        vec(any_record(), 0..3),
        vec(user, 0..4),
        any::<u64>(),
        attest,
    )
        .prop_map(|(versions, users, rev, attest)| FileState {
            versions,
            users,
            rev,
            attest,
        })
}

fn any_note() -> impl Strategy<Value = DownloadNote> {
    (file_key(), any_peer(), any::<u64>(), bytes(64)).prop_map(|(key, reader, at_ms, signature)| {
        DownloadNote {
            key,
            reader,
            at_ms,
            signature,
        }
    })
}

fn any_error() -> impl Strategy<Value = RecordError> {
    prop_oneof![
        text().prop_map(RecordError::Invalid),
        text().prop_map(RecordError::BadSignature),
        (text(), text()).prop_map(|(name, owner)| RecordError::PermissionDenied { name, owner }),
        (text(), any::<u64>(), any::<u64>()).prop_map(|(name, current, attempted)| {
            RecordError::Conflict {
                name,
                current,
                attempted,
            }
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(current, attempted)| RecordError::Stale { current, attempted }),
        text().prop_map(RecordError::Unauthorized),
    ]
}

fn position() -> impl Strategy<Value = Position> {
    (any::<u64>(), any::<u64>()).prop_map(|(version, rev)| Position { version, rev })
}

fn block_request() -> impl Strategy<Value = BlockRequest> {
    prop_oneof![
        (block_id(), text(), bytes(2048)).prop_map(|(id, file, data)| BlockRequest::Put {
            id,
            file,
            data
        }),
        (block_id(), text(), bytes(2048), peer_list(8)).prop_map(|(id, file, data, then)| {
            BlockRequest::PutChain {
                id,
                file,
                data,
                then,
            }
        }),
        block_id().prop_map(|id| BlockRequest::Get { id }),
        vec(block_id(), 0..20).prop_map(|ids| BlockRequest::Has { ids }),
        (block_id(), text(), peer_list(4)).prop_map(|(id, file, sources)| BlockRequest::Pull {
            id,
            file,
            sources
        }),
        (any::<[u8; 32]>(), vec(block_id(), 0..20)).prop_map(|(n, ids)| BlockRequest::Prove {
            nonce: Nonce(n),
            ids
        }),
    ]
}

fn block_response() -> impl Strategy<Value = BlockResponse> {
    prop_oneof![
        Just(BlockResponse::Stored),
        peer_list(8).prop_map(|holders| BlockResponse::StoredBy { holders }),
        bytes(2048).prop_map(|data| BlockResponse::Data { data }),
        Just(BlockResponse::NotFound),
        vec(block_id(), 0..20).prop_map(|ids| BlockResponse::Have { ids }),
        vec((block_id(), any::<[u8; 32]>().prop_map(Proof)), 0..8)
            .prop_map(|proofs| BlockResponse::Proofs { proofs }),
        text().prop_map(|message| BlockResponse::Error { message }),
    ]
}

fn meta_request() -> impl Strategy<Value = MetaRequest> {
    prop_oneof![
        any_record().prop_map(|record| MetaRequest::Publish { record }),
        (file_key(), any_state()).prop_map(|(key, state)| MetaRequest::Replicate { key, state }),
        vec((file_key(), position()), 0..8).prop_map(|entries| MetaRequest::Digest { entries }),
        (text(), block_id(), peer_list(4), peer_list(4)).prop_map(|(name, block, add, remove)| {
            MetaRequest::SetHolders {
                name,
                block,
                add,
                remove,
            }
        }),
        (file_key(), proptest::option::of(any_note()))
            .prop_map(|(key, note)| MetaRequest::Fetch { key, note }),
        (file_key(), any_state())
            .prop_map(|(key, state)| MetaRequest::DelegateState { key, state }),
    ]
}

fn meta_response() -> impl Strategy<Value = MetaResponse> {
    prop_oneof![
        (any::<u64>(), peer_list(4))
            .prop_map(|(version, replicas)| MetaResponse::Published { version, replicas }),
        Just(MetaResponse::Replicated),
        Just(MetaResponse::HoldersSet),
        vec((file_key(), position()), 0..8).prop_map(|entries| MetaResponse::Digest { entries }),
        proptest::option::of(any_state()).prop_map(|state| MetaResponse::State { state }),
        any_error().prop_map(|error| MetaResponse::Rejected { error }),
        text().prop_map(|message| MetaResponse::Error { message }),
    ]
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        (block_id(), text(), bytes(2048)).prop_map(|(id, file, data)| ClientRequest::PutBlock {
            id,
            file,
            data
        }),
        any_record().prop_map(|record| ClientRequest::Publish { record }),
        (text(), proptest::option::of(any_note()))
            .prop_map(|(name, note)| ClientRequest::Fetch { name, note }),
        (block_id(), peer_list(4))
            .prop_map(|(id, holders)| ClientRequest::GetBlock { id, holders }),
        Just(ClientRequest::Status),
        Just(ClientRequest::Peers),
    ]
}

fn any_status() -> impl Strategy<Value = NodeStatus> {
    let peer_status =
        (any_peer(), any::<bool>(), any::<bool>()).prop_map(|(peer, connected, live)| PeerStatus {
            peer,
            connected,
            live,
        });
    (
        (
            any_peer(),
            vec(multiaddr(), 0..3),
            any::<usize>(),
            any::<usize>(),
            any::<u64>(),
        ),
        (
            proptest::option::of(any::<u64>()),
            any::<usize>(),
            vec(peer_status, 0..4),
        ),
        (any::<u64>(), text(), vec((text(), any::<u64>()), 0..3)),
    )
        .prop_map(
            |(
                (peer, addrs, replication, blocks, used),
                (capacity, records, peers),
                (term, role, refused),
            )| {
                NodeStatus {
                    peer,
                    addrs,
                    replication,
                    blocks,
                    used,
                    capacity,
                    records,
                    peers,
                    repair: RepairStatus::default(),
                    balance: BalanceStatus {
                        manager: Some(ManagerInfo { peer, term }),
                        role,
                        term,
                        ..BalanceStatus::default()
                    },
                    refused: refused.into_iter().collect(),
                }
            },
        )
}

fn client_response() -> impl Strategy<Value = ClientResponse> {
    prop_oneof![
        peer_list(4).prop_map(|holders| ClientResponse::BlockStored { holders }),
        (file_key(), any::<u64>(), any_peer(), peer_list(4)).prop_map(
            |(key, version, root, replicas)| ClientResponse::Published {
                key,
                version,
                root,
                replicas
            }
        ),
        (
            file_key(),
            any_peer(),
            peer_list(4),
            any_state(),
            vec((any_peer(), vec(multiaddr(), 0..3)), 0..3)
        )
            .prop_map(|(key, root, replicas, state, addrs)| ClientResponse::File {
                key,
                root,
                replicas,
                state,
                addrs
            }),
        bytes(2048).prop_map(|data| ClientResponse::Block { data }),
        any_status().prop_map(|s| ClientResponse::Status(Box::new(s))),
        (
            any::<usize>(),
            vec(
                (
                    any_peer(),
                    vec(multiaddr(), 0..3),
                    proptest::option::of(any::<u64>())
                ),
                0..4
            )
        )
            .prop_map(|(replication, cs)| ClientResponse::Peers {
                replication,
                candidates: cs
                    .into_iter()
                    .map(|(peer, addrs, free)| Candidate { peer, addrs, free })
                    .collect(),
            }),
        text().prop_map(|name| ClientResponse::NotFound { name }),
        any_error().prop_map(|error| ClientResponse::Rejected { error }),
        text().prop_map(|message| ClientResponse::Error { message }),
    ]
}

wire_decoder!(
    block_request_body,
    BlockRequest,
    "block-request",
    block_request()
);
wire_decoder!(
    block_response_body,
    BlockResponse,
    "block-response",
    block_response()
);
wire_decoder!(
    meta_request_body,
    MetaRequest,
    "meta-request",
    meta_request()
);
wire_decoder!(
    meta_response_body,
    MetaResponse,
    "meta-response",
    meta_response()
);
wire_decoder!(
    client_request_body,
    ClientRequest,
    "client-request",
    client_request()
);
wire_decoder!(
    client_response_body,
    ClientResponse,
    "client-response",
    client_response()
);

// ---------------------------------------------------------------------------------------------
// The frame reader's memory: what an announced length may make it buffer.

/// Every (enum, kind, limit) of the six wire enums, with the reader for that enum.
type Reader = fn(Vec<u8>) -> io::Result<()>;

fn reader_of<T: DeserializeOwned + FrameKinds>() -> Reader {
    |stream| read_all::<T>(stream, usize::MAX).map(|_| ())
}

fn kinds() -> Vec<(&'static str, &'static str, usize, usize, Reader)> {
    let mut out = Vec::new();
    let mut add = |kinds: swarmstore::protocol::limits::Kinds, read: Reader| {
        let max = kinds.max();
        for (name, limit) in kinds.limits {
            out.push((kinds.what, *name, *limit, max, read));
        }
    };
    add(BlockRequest::LIMITS, reader_of::<BlockRequest>());
    add(BlockResponse::LIMITS, reader_of::<BlockResponse>());
    add(MetaRequest::LIMITS, reader_of::<MetaRequest>());
    add(MetaResponse::LIMITS, reader_of::<MetaResponse>());
    add(ClientRequest::LIMITS, reader_of::<ClientRequest>());
    add(ClientResponse::LIMITS, reader_of::<ClientResponse>());
    out
}

/// The tag a body of kind `name` starts with (a map for the variants that carry fields, a
/// string for the rest; the reader's limit applies to both).
fn tag(name: &str, map: bool) -> Vec<u8> {
    let mut t = if map { vec![0xa1] } else { vec![] };
    t.extend(encode_head(3, name.len() as u64));
    t.extend_from_slice(name.as_bytes());
    t
}

proptest! {
    #![proptest_config(config())]

    /// Over every kind's limit: refused from the prefix alone, nothing buffered.
    #[test]
    fn a_length_over_every_limit_is_refused_before_the_body(
        which in any::<usize>(),
        over in any::<u32>(),
        tail in bytes(64),
    ) {
        let all = kinds();
        let (what, _, _, max, read) = all[which % all.len()];
        let Some(room) = (u32::MAX as usize).checked_sub(max).filter(|r| *r > 0) else {
            return Ok(());
        };
        let len = max + 1 + (over as usize % room);
        let mut stream = (len as u32).to_be_bytes().to_vec();
        stream.extend(tail);
        let (got, usage) = measure(|| read(stream));
        let err = got.expect_err("refused");
        prop_assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        prop_assert!(err.to_string().contains("exceeds the"), "{}: {}", what, err);
        prop_assert!(usage.largest < 1024, "{}: allocated {} for a refused prefix", what, usage.largest);
    }

    /// Over its own kind's limit (but under another kind's): refused after the first chunk,
    /// at most [`CHUNK`] buffered, before the rest of the body arrives.
    #[test]
    fn a_length_over_its_kinds_limit_is_refused_after_one_chunk(
        which in any::<usize>(),
        over in any::<u64>(),
        map in any::<bool>(),
        seed in any::<u64>(),
        sent in 0usize..(3 * CHUNK),
    ) {
        let all: Vec<_> = kinds().into_iter().filter(|k| k.2 < k.3).collect();
        let (what, name, limit, max, read) = all[which % all.len()];
        let len = limit + 1 + (over as usize % (max - limit));
        let mut stream = (len as u32).to_be_bytes().to_vec();
        stream.extend(tag(name, map));
        stream.extend(filler(seed, sent));
        let (got, usage) = measure(|| read(stream));
        let err = got.expect_err("refused");
        let want = format!("{what} {name} frame of {len} bytes exceeds the {limit}-byte limit");
        prop_assert!(err.to_string().contains(&want), "{} (wanted {})", err, want);
        prop_assert!(usage.largest <= CHUNK, "{} {}: one allocation of {}", what, name, usage.largest);
        prop_assert!(usage.peak <= CHUNK + 4096, "{} {}: {} bytes at peak", what, name, usage.peak);
    }
}

proptest! {
    #![proptest_config(heavy_config())]

    /// Within the kind's limit, a sender that announces much and sends little makes the reader
    /// buffer only about twice what it sent (at least one chunk), never the announced length.
    #[test]
    fn a_short_stream_is_buffered_only_as_it_arrives(
        which in any::<usize>(),
        len_pick in any::<u64>(),
        map in any::<bool>(),
        seed in any::<u64>(),
        sent_pick in any::<usize>(),
    ) {
        let all = kinds();
        let (what, name, limit, _, read) = all[which % all.len()];
        let head = tag(name, map);
        let sent = sent_pick % (limit - head.len() - 1).min(1 << 20);
        let room = limit - head.len() - sent;
        let len = head.len() + sent + 1 + (len_pick as usize % room);
        let mut stream = (len as u32).to_be_bytes().to_vec();
        stream.extend(head);
        stream.extend(filler(seed, sent));
        let arrived = stream.len() - 4;
        let (got, usage) = measure(|| read(stream));
        let err = got.expect_err("the stream ends early");
        prop_assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{}", err);
        let bound = CHUNK.max(2 * arrived).min(len);
        prop_assert!(
            usage.largest <= bound,
            "{} {} of {} announced bytes, {} sent: one allocation of {} (bound {})",
            what, name, len, arrived, usage.largest, bound
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gossip.

fn check_gossip<T: Serialize + DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (got, usage) = measure(|| gossip::decode::<T>(bytes));
    prop_assert!(
        usage.peak <= decode_allowance(bytes.len().min(MAX_MESSAGE)),
        "decoding {} gossip bytes allocated {} at peak",
        bytes.len(),
        usage.peak
    );
    if bytes.len() > MAX_MESSAGE {
        prop_assert!(got.is_none(), "an oversized message decoded");
    }
    if let Some(v) = got {
        let again = gossip::encode(&v)
            .ok_or_else(|| TestCaseError::fail("a decoded message does not re-encode"))?;
        let back: T = gossip::decode(&again)
            .ok_or_else(|| TestCaseError::fail("a re-encoded message does not decode"))?;
        prop_assert_eq!(cbor(&back), again);
    }
    Ok(())
}

fn gossip_round_trips<T: Serialize + DeserializeOwned>(v: &T) -> Result<(), TestCaseError> {
    let Some(bytes) = gossip::encode(v) else {
        prop_assert!(
            cbor(v).len() > MAX_MESSAGE,
            "encode refused a message that fits"
        );
        return Ok(());
    };
    let back: T = gossip::decode(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
    prop_assert_eq!(cbor(&back), bytes);
    Ok(())
}

fn check_gossip_seeds<T: Serialize + DeserializeOwned>(dir: &'static str) {
    for (i, seed) in seeds(dir).iter().enumerate() {
        let v: T = gossip::decode(seed).unwrap_or_else(|| panic!("{dir} seed {i} does not decode"));
        assert_eq!(&cbor(&v), seed, "{dir} seed {i} re-encodes differently");
    }
}

fn load_report_strategy() -> impl Strategy<Value = LoadReport> {
    let heat = (
        block_id(),
        text(),
        any::<u64>(),
        any::<f64>(),
        any::<bool>(),
    )
        .prop_map(|(id, file, size, heat, extra)| BlockHeat {
            id,
            file,
            size,
            heat,
            extra,
        });
    let file_heat = (text(), any::<f64>(), any::<bool>()).prop_map(|(name, heat, root)| FileHeat {
        name,
        heat,
        root,
    });
    let extra =
        (block_id(), text(), any::<u64>(), peer_list(3)).prop_map(|(id, file, size, base)| {
            ExtraHeld {
                id,
                file,
                size,
                base,
            }
        });
    let state = prop_oneof![
        Just(DecisionState::Published),
        Just(DecisionState::Applied),
        text().prop_map(DecisionState::Skipped),
        text().prop_map(DecisionState::Failed),
    ];
    let outcome =
        (any::<u64>(), any::<u64>(), any::<u32>(), state).prop_map(|(term, seq, idx, state)| {
            Outcome {
                id: DecisionId { term, seq, idx },
                state,
            }
        });
    let role = prop_oneof![
        Just(RoleTag::Follower),
        Just(RoleTag::Candidate),
        Just(RoleTag::Manager)
    ];
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<[f64; 5]>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            proptest::option::of(text()),
            role,
            any::<u64>(),
            any::<u64>(),
        ),
        (
            vec(heat, 0..4),
            vec(file_heat, 0..4),
            vec(extra, 0..4),
            vec((file_key(), any::<u64>()), 0..4),
            vec(outcome, 0..4),
        ),
    )
        .prop_map(
            |(
                (seq, at_ms, f, inflight, used, capacity),
                (zone, role, term, served_blocks),
                (hot_blocks, hot_files, extras, delegations, outcomes),
            )| LoadReport {
                seq,
                at_ms,
                load: f[0],
                bandwidth: f[1],
                meta_rps: f[2],
                block_rps: f[3],
                block_bps: f[4],
                inflight,
                used,
                capacity,
                zone,
                role,
                term,
                served_blocks,
                hot_blocks,
                hot_files,
                extras,
                delegations,
                outcomes,
            },
        )
}

fn vote_strategy() -> impl Strategy<Value = Vote> {
    (any::<u64>(), any_peer(), any_peer(), bytes(64)).prop_map(
        |(term, candidate, voter, signature)| Vote {
            term,
            candidate,
            voter,
            signature,
        },
    )
}

fn manager_strategy() -> impl Strategy<Value = ManagerMsg> {
    prop_oneof![
        any::<u64>().prop_map(|term| ManagerMsg::Candidacy { term }),
        vote_strategy().prop_map(ManagerMsg::Vote),
        (any::<u64>(), any::<u64>(), vec(vote_strategy(), 0..6))
            .prop_map(|(term, beat, cert)| ManagerMsg::Heartbeat { term, beat, cert }),
    ]
}

fn batch_strategy() -> impl Strategy<Value = DecisionBatch> {
    let decision = prop_oneof![
        (block_id(), file_key(), any_peer(), any_peer()).prop_map(|(block, file, from, to)| {
            Decision::Replicate {
                block,
                file,
                from,
                to,
            }
        }),
        (file_key(), any_peer(), any_peer(), any::<u64>()).prop_map(
            |(file, root, to, expires_at)| {
                Decision::Delegate {
                    file,
                    root,
                    to,
                    expires_at,
                }
            }
        ),
        (block_id(), file_key(), any_peer(), any_peer(), any::<u64>()).prop_map(
            |(block, file, from, to, bytes)| Decision::Move {
                block,
                file,
                from,
                to,
                bytes
            }
        ),
        (block_id(), file_key(), any_peer()).prop_map(|(block, file, at)| Decision::Drop {
            block,
            file,
            at
        }),
        (file_key(), any_peer()).prop_map(|(file, at)| Decision::EndDelegation { file, at }),
    ];
    let item = (decision, text()).prop_map(|(decision, name)| Item { decision, name });
    (any::<u64>(), any::<u64>(), any::<u64>(), vec(item, 0..8)).prop_map(
        |(term, seq, now_ms, items)| DecisionBatch {
            term,
            seq,
            now_ms,
            items,
        },
    )
}

fn gossip_tags(names: &[&str]) -> Vec<Vec<u8>> {
    names
        .iter()
        .flat_map(|n| [tag(n, false), tag(n, true)])
        .collect()
}

macro_rules! gossip_decoder {
    ($module:ident, $ty:ty, $dir:literal, $tags:expr, $strategy:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn seeds_round_trip() {
                check_gossip_seeds::<$ty>($dir);
            }

            proptest! {
                #![proptest_config(config())]

                #[test]
                fn arbitrary_messages_never_panic(bytes in arbitrary($dir, $tags)) {
                    check_gossip::<$ty>(&bytes)?;
                }

                #[test]
                fn mutated_seeds_never_panic(bytes in mutated($dir)) {
                    check_gossip::<$ty>(&bytes)?;
                }

                #[test]
                fn valid_messages_round_trip(value in $strategy) {
                    gossip_round_trips::<$ty>(&value)?;
                }
            }
        }
    };
}

gossip_decoder!(
    gossip_load,
    LoadReport,
    "gossip-load",
    // A struct: a map of its fields.
    vec![vec![0xb3, 0x63, b's', b'e', b'q']],
    load_report_strategy()
);
gossip_decoder!(
    gossip_manager,
    ManagerMsg,
    "gossip-manager",
    gossip_tags(&["Candidacy", "Vote", "Heartbeat"]),
    manager_strategy()
);
gossip_decoder!(
    gossip_decisions,
    DecisionBatch,
    "gossip-decisions",
    vec![vec![0xa4, 0x64, b't', b'e', b'r', b'm']],
    batch_strategy()
);

#[test]
fn encode_report_always_fits_and_round_trips() {
    let config = heavy_config();
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(&load_report_strategy(), |r| {
            let bytes = gossip::encode_report(&r);
            prop_assert!(bytes.len() <= MAX_MESSAGE);
            let back: LoadReport =
                gossip::decode(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
            prop_assert_eq!(back.seq, r.seq);
            Ok(())
        })
        .expect("encode_report");
}

// ---------------------------------------------------------------------------------------------
// Records and their validation.

/// Everything the owner signs, as a comparable value.
type Signed = (
    String,
    u64,
    u64,
    u32,
    Vec<(BlockId, u32, Option<Vec<u8>>)>,
    PeerId,
    u64,
    u64,
    bool,
);

fn signed(r: &FileRecord) -> Signed {
    (
        r.name.clone(),
        r.version,
        r.size,
        r.block_size,
        r.blocks
            .iter()
            .map(|b| (b.id, b.len, b.inline.as_ref().map(|i| i.to_vec())))
            .collect(),
        r.owner,
        r.created_ms,
        r.modified_ms,
        r.tombstone,
    )
}

fn decode_as<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let (got, usage) = measure(|| decode_body::<T>(bytes, "value"));
    assert!(
        usage.peak <= decode_allowance(bytes.len()),
        "decoding {} bytes allocated {} at peak",
        bytes.len(),
        usage.peak
    );
    got.ok()
}

/// A record from any bytes: validation never panics, and a record that verifies says exactly
/// what one of the seeds' owners signed.
fn check_record(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Some(r) = decode_as::<FileRecord>(bytes) else {
        return Ok(());
    };
    let seeds: Vec<FileRecord> = seeds("record")
        .iter()
        .filter_map(|s| cbor4ii::serde::from_slice(s).ok())
        .collect();
    if r.verify().is_ok() {
        prop_assert!(
            seeds.iter().any(|s| signed(s) == signed(&r)),
            "a record no owner signed verifies: {:?}",
            r
        );
    }
    for s in &seeds {
        let _ = check_successor(Some(s), &r);
    }
    let _ = check_successor(None, &r);
    Ok(())
}

/// The attested content of a state: what the owners and the attester signed.
/// Owner-signed versions, holder lists per version and block, revision, users.
type Covered = (Vec<Signed>, Vec<Vec<Vec<PeerId>>>, u64, Vec<UserEntry>);

fn covered(s: &FileState) -> Covered {
    (
        s.versions.iter().map(signed).collect(),
        s.versions
            .iter()
            .map(|r| r.blocks.iter().map(|b| b.holders.clone()).collect())
            .collect(),
        s.rev,
        s.users.clone(),
    )
}

fn check_file_state(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Some(s) = decode_as::<FileState>(bytes) else {
        return Ok(());
    };
    let originals: Vec<FileState> = seeds("state")
        .iter()
        .filter_map(|b| cbor4ii::serde::from_slice(b).ok())
        .collect();
    let key = FileKey::for_name("hello.txt");
    let valid = check_state(&key, &s).is_ok();
    let attested = s.check_attestation(&key, T0 + 10_000).is_ok();
    if valid && attested {
        prop_assert!(
            originals.iter().any(|o| covered(o) == covered(&s)),
            "a state nobody signed passes: {:?}",
            s
        );
    }
    for o in &originals {
        let _ = accept_copy(Some(o), &s);
        let _ = accept_copy(Some(&s), o);
        let _ = compatible(o, &s);
        let _ = check_successor(o.head(), s.head().unwrap_or(&held_record()));
    }
    let _ = accept_copy(None, &s);
    if let Some(head) = s.head() {
        let _ = check_state(&head.key(), &s);
    }
    Ok(())
}

fn check_note(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Some(n) = decode_as::<DownloadNote>(bytes) else {
        return Ok(());
    };
    let original = note();
    if n.verify(&original.key, original.at_ms).is_ok() {
        prop_assert_eq!(
            (n.key, n.reader, n.at_ms),
            (original.key, original.reader, original.at_ms)
        );
    }
    let _ = n.verify(&n.key, n.at_ms);
    let _ = n.verify(&FileKey::for_name("hello.txt"), u64::MAX);
    Ok(())
}

/// A valid record built with the library's own API: any name, version, block layout and
/// holder list.
fn signed_record() -> impl Strategy<Value = (FileRecord, u8)> {
    (
        "[a-zA-Z0-9 ./_-]{1,64}",
        1..=MAX_VERSION,
        1u32..=4096,
        0u64..=16384,
        any::<bool>(),
        vec(peer_list(MAX_HOLDERS), 1..8),
        1u8..=8,
        any::<u64>(),
    )
        .prop_map(
            |(name, version, block_size, size, inline, holders, owner, seed)| {
                let size = size.min(u64::from(block_size) * 6);
                let inline = inline && size > 0 && size <= u64::from(block_size.min(INLINE_MAX));
                let blocks = if inline {
                    vec![BlockEntry::inline(filler(seed, size as usize))]
                } else {
                    let mut left = size;
                    let mut out = Vec::new();
                    let mut i = 0;
                    while left > 0 {
                        let len = left.min(u64::from(block_size)) as u32;
                        let data = filler(seed.wrapping_add(i), len as usize);
                        out.push(BlockEntry::held(
                            BlockId::of(&data),
                            len,
                            holders[i as usize % holders.len()].clone(),
                        ));
                        left -= u64::from(len);
                        i += 1;
                    }
                    out
                };
                let mut r = FileRecord {
                    name,
                    version,
                    size,
                    block_size,
                    blocks,
                    owner: PeerId::random(),
                    owner_key: vec![],
                    created_ms: seed % T0,
                    modified_ms: seed % T0 + 1,
                    tombstone: false,
                    signature: vec![],
                };
                r.sign(&key(owner)).expect("sign");
                (r, owner)
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_records_never_panic(bytes in arbitrary("record", vec![vec![0xab, 0x64, b'n', b'a', b'm', b'e']])) {
        check_record(&bytes)?;
    }

    #[test]
    fn mutated_records_are_refused_unless_the_owner_signed_them(bytes in mutated("record")) {
        check_record(&bytes)?;
    }

    #[test]
    fn random_records_do_not_verify(r in any_record()) {
        let bytes = cbor(&r);
        let back: FileRecord = decode_as(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
        prop_assert_eq!(&back, &r);
        prop_assert!(r.verify().is_err(), "an unsigned record verifies");
    }

    #[test]
    fn arbitrary_states_never_panic(bytes in arbitrary("state", vec![vec![0xa4, 0x68, b'v', b'e', b'r', b's', b'i', b'o', b'n', b's']])) {
        check_file_state(&bytes)?;
    }

    #[test]
    fn mutated_states_are_refused_unless_their_signers_signed_them(bytes in mutated("state")) {
        check_file_state(&bytes)?;
    }

    #[test]
    fn random_states_round_trip_and_are_refused(s in any_state()) {
        let bytes = cbor(&s);
        let back: FileState = decode_as(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
        prop_assert_eq!(&back, &s);
        let key = FileKey::for_name("hello.txt");
        prop_assert!(
            check_state(&key, &s).is_err() || s.check_attestation(&key, u64::MAX).is_err(),
            "a random state passes"
        );
    }

    #[test]
    fn arbitrary_notes_never_panic(bytes in arbitrary("note", vec![vec![0xa4, 0x63, b'k', b'e', b'y']])) {
        check_note(&bytes)?;
    }

    #[test]
    fn mutated_notes_are_refused_unless_the_reader_signed_them(bytes in mutated("note")) {
        check_note(&bytes)?;
    }

    #[test]
    fn random_notes_round_trip_and_are_refused(n in any_note()) {
        let back: DownloadNote = decode_as(&cbor(&n)).ok_or_else(|| TestCaseError::fail("refused"))?;
        prop_assert_eq!(&back, &n);
        prop_assert!(n.verify(&n.key, n.at_ms).is_err());
    }
}

proptest! {
    #![proptest_config(heavy_config())]

    /// A record signed with the library's API round-trips, verifies, and makes a valid,
    /// attested one-version state; any change to a signed field breaks the signature.
    #[test]
    fn signed_records_round_trip_and_validate((r, owner) in signed_record(), field in 0usize..6) {
        let bytes = cbor(&r);
        let back: FileRecord = decode_as(&bytes).ok_or_else(|| TestCaseError::fail("refused"))?;
        prop_assert_eq!(&back, &r);
        back.verify().map_err(|e| TestCaseError::fail(format!("signed record refused: {e}")))?;
        prop_assert_eq!(back.owner, peer(owner));

        let mut s = FileState::empty();
        s.push(back.clone(), 3);
        s.rev = T0;
        s.attest(&back.key(), &key(9));
        let bytes = cbor(&s);
        let s: FileState = decode_as(&bytes).ok_or_else(|| TestCaseError::fail("state refused"))?;
        check_state(&back.key(), &s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(s.check_attestation(&back.key(), T0), Ok(key(9).public().to_peer_id()));
        prop_assert!(check_state(&FileKey([0; 32]), &s).is_err(), "a state under another key");

        let mut t = back;
        match field {
            0 => t.name.push('x'),
            1 => t.version = t.version % MAX_VERSION + 1,
            2 => t.created_ms ^= 1,
            3 => t.modified_ms ^= 1,
            4 => t.owner = peer(owner % 8 + 1),
            _ => t.signature[0] ^= 1,
        }
        prop_assert!(t.verify().is_err(), "changed field {} still verifies", field);
    }
}

#[test]
fn record_seeds_round_trip_and_validate() {
    for (dir, n) in [("record", 4), ("state", 2), ("note", 1)] {
        let s = seeds(dir);
        assert_eq!(s.len(), n, "{dir} seeds");
    }
    for seed in seeds("record").iter() {
        let r: FileRecord = cbor4ii::serde::from_slice(seed).expect("record seed");
        assert_eq!(&cbor(&r), seed);
        r.verify().expect("record seed verifies");
    }
    for seed in seeds("state").iter() {
        let s: FileState = cbor4ii::serde::from_slice(seed).expect("state seed");
        assert_eq!(&cbor(&s), seed);
        let key = FileKey::for_name("hello.txt");
        check_state(&key, &s).expect("state seed is valid");
        s.check_attestation(&key, T0 + 10_000)
            .expect("state seed is attested");
    }
    let n: DownloadNote = cbor4ii::serde::from_slice(&seeds("note")[0]).expect("note seed");
    n.verify(&n.key, n.at_ms).expect("note seed verifies");
}

// ---------------------------------------------------------------------------------------------
// Config files.

const CONFIG_KEYS: &[&str] = &[
    "data-dir",
    "listen",
    "bootstrap",
    "external-addr",
    "no-mdns",
    "replication",
    "capacity",
    "keep-versions",
    "gc-grace",
    "sync-interval",
    "liveness",
    "repair-interval",
    "repair-bandwidth",
    "drain",
    "relay-server",
    "autonat-server",
    "swarm-key",
    "metrics",
    "swarm",
    "zone",
    "report-interval",
    "bandwidth",
    "manager-peers",
    "balance-hold",
    "no-planner",
];

fn check_config(text: &str) -> Result<(), TestCaseError> {
    match NodeSettings::from_toml(text, Path::new("/etc/swarmstore")) {
        Err(e) => {
            let line = e.to_string();
            prop_assert!(!line.is_empty());
            prop_assert!(!line.contains('\n'), "a multi-line error: {}", line);
        }
        Ok(s) => {
            // A file that parses makes a node config unless it names a swarm key file (which
            // this test does not read).
            if s.swarm_key.is_none() {
                s.into_config(PathBuf::from("/tmp/swarmstore-fuzz"))
                    .map_err(|e| TestCaseError::fail(format!("parsed but refused: {e}")))?;
            }
        }
    }
    Ok(())
}

/// TOML lines of known keys with values of any TOML type, well or badly typed.
fn toml_lines() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{1,25}(\\.[0-9]{0,5})?(ms|s|m|min|h|K|M|G|T|KiB|B|Q)?".prop_map(|s| format!("{s:?}")),
        any::<String>().prop_map(|s| format!("{s:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        vec("[ -~]{0,30}", 0..4).prop_map(|v| format!("{v:?}")),
        "(on|off|auto|maybe|127\\.0\\.0\\.1:[0-9]{1,6}|/ip4/1\\.2\\.3\\.4/tcp/[0-9]{1,6}|\\[::1\\]:80)"
            .prop_map(|s| format!("{s:?}")),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
    ];
    vec((0..CONFIG_KEYS.len(), value), 0..8).prop_map(|lines| {
        lines
            .into_iter()
            .map(|(k, v)| format!("{} = {v}\n", CONFIG_KEYS[k]))
            .collect()
    })
}

fn mutated_config() -> impl Strategy<Value = String> {
    mutated("config").prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_config_text_never_panics(text in any::<String>()) {
        check_config(&text)?;
    }

    #[test]
    fn arbitrary_config_lines_never_panic(text in toml_lines()) {
        check_config(&text)?;
    }

    #[test]
    fn mutated_config_files_never_panic(text in mutated_config()) {
        check_config(&text)?;
    }

    /// Settings written as TOML come back as they were written.
    #[test]
    fn config_values_round_trip(
        replication in 1usize..100,
        keep in 1usize..16,
        capacity in any::<u32>(),
        grace_s in 1u64..10_000_000,
        no_mdns in any::<bool>(),
        swarm in "[a-z0-9-]{1,20}",
        port in 1u16..,
    ) {
        let text = format!(
            "replication = {replication}\nkeep-versions = {keep}\ncapacity = {capacity}\n\
             gc-grace = \"{grace_s}s\"\nno-mdns = {no_mdns}\nswarm = \"{swarm}\"\n\
             listen = [\"/ip4/0.0.0.0/tcp/{port}\"]\ndata-dir = \"d\"\n"
        );
        let s = NodeSettings::from_toml(&text, Path::new("/base"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(s.replication, Some(replication));
        prop_assert_eq!(s.keep_versions, Some(keep));
        prop_assert_eq!(s.capacity, Some(u64::from(capacity)));
        prop_assert_eq!(s.gc_grace, Some(Duration::from_secs(grace_s)));
        prop_assert_eq!(s.no_mdns, Some(no_mdns));
        prop_assert_eq!(s.balance.swarm.as_deref(), Some(swarm.as_str()));
        prop_assert_eq!(s.listen.len(), 1);
        prop_assert_eq!(s.data_dir, Some(PathBuf::from("/base/d")));
    }

    /// The swarm key file (`--swarm-key`): any content is a key or a one-line error, never a
    /// panic.
    #[test]
    fn mutated_swarm_key_files_never_panic(
        bytes in prop_oneof![
            mutated("swarm-key"),
            any::<String>().prop_map(String::into_bytes),
            // The key line's 64 characters, one of them multi-byte.
            (0usize..62, any::<char>()).prop_map(|(at, c)| {
                let mut line: Vec<char> = "6a".repeat(32).chars().collect();
                line[at] = c;
                format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", line.iter().collect::<String>())
                    .into_bytes()
            }),
        ]
    ) {
        let path = scratch().join("swarm.key");
        std::fs::write(&path, &bytes).expect("write");
        if let Err(e) = swarmstore::net::read_swarm_key(&path) {
            prop_assert!(!e.to_string().contains('\n'), "{}", e);
        }
    }
}

/// A directory for this test's scratch files, under the build's temporary directory.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz");
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

#[test]
fn config_seeds_parse() {
    for seed in seeds("config").iter() {
        let text = std::str::from_utf8(seed).expect("utf-8");
        let s = NodeSettings::from_toml(text, Path::new("/etc/swarmstore"))
            .unwrap_or_else(|e| panic!("config seed refused: {e}\n{text}"));
        s.into_config(PathBuf::from("/tmp/x"))
            .expect("config seed makes a node config");
    }
    let key = std::str::from_utf8(&seeds("swarm-key")[0])
        .expect("utf-8")
        .to_string();
    key.parse::<libp2p::pnet::PreSharedKey>()
        .expect("swarm key seed");
    let path = scratch().join("seed.key");
    std::fs::write(&path, key).expect("write");
    swarmstore::net::read_swarm_key(&path).expect("read_swarm_key takes the seed");
}
