//! The fixed values behind the seed corpus: records, states, a download note, a node status,
//! a load report, decisions and record errors, all from fixed keys (Ed25519 is deterministic,
//! so every signature, and so every corpus file, is reproducible).

use std::collections::BTreeMap;

use libp2p::Multiaddr;

use swarmstore::ids::{BlockId, FileKey};
use swarmstore::protocol::gossip::{
    BlockHeat, Decision, DecisionId, DecisionState, ExtraHeld, FileHeat, LoadReport, Outcome,
    RoleTag,
};
use swarmstore::protocol::status::{
    BalanceStatus, DecisionRow, ManagerInfo, NodeRow, NodeStatus, PeerStatus, RepairStatus,
};
use swarmstore::record::{
    BlockEntry, Cipher, DownloadNote, FileRecord, FileState, KeyWrap, RecordError, Sealed,
};

use crate::{key, peer, peers, T0};

pub(crate) fn held_record() -> FileRecord {
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
        sealed: None,
        signature: vec![],
    };
    r.sign(&key(1)).expect("sign");
    r
}

pub(crate) fn multi_block_record() -> FileRecord {
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

pub(crate) fn inline_record() -> FileRecord {
    let mut r = held_record();
    r.blocks = vec![BlockEntry::inline(b"hello".to_vec())];
    r.sign(&key(1)).expect("sign");
    r
}

/// A private file's record: its one block sealed (17 bytes: one of content and the tag), the
/// key wrapped to two readers (fixed bytes: the decoders only see shapes).
pub(crate) fn sealed_record() -> FileRecord {
    let mut r = held_record();
    let ct = [0x5a; 17];
    r.name = "diary.txt".into();
    r.block_size = 1 << 20;
    r.size = ct.len() as u64;
    r.blocks = vec![BlockEntry::held(
        BlockId::of(&ct),
        ct.len() as u32,
        vec![peer(4)],
    )];
    let wrap = |to: u8| KeyWrap {
        to: [to; 32],
        from: [0x22; 32],
        nonce: [0x33; 24],
        key: [0x44; 48],
    };
    r.sealed = Some(Sealed {
        cipher: Cipher::XChaCha20Poly1305,
        epoch: 0,
        wraps: vec![wrap(1), wrap(2)],
    });
    r.sign(&key(1)).expect("sign");
    r
}

pub(crate) fn tombstone(after: &FileRecord) -> FileRecord {
    let mut t = after.clone();
    t.version += 1;
    t.blocks.clear();
    t.size = 0;
    t.tombstone = true;
    t.sign(&key(1)).expect("sign");
    t
}

/// A root's state after two versions and a download, attested by peer 2.
pub(crate) fn attested_state() -> FileState {
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
pub(crate) fn reborn_state() -> FileState {
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

pub(crate) fn note() -> DownloadNote {
    DownloadNote::sign(FileKey::for_name("hello.txt"), &key(3), T0 + 60_000)
}

pub(crate) fn addr(port: u16) -> Multiaddr {
    format!("/ip4/10.0.0.1/tcp/{port}/p2p/{}", peer(2))
        .parse()
        .expect("multiaddr")
}

pub(crate) fn node_status() -> NodeStatus {
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
                bandwidth: 6e6,
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
        front_doors: Vec::new(),
    }
}

pub(crate) fn load_report() -> LoadReport {
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

pub(crate) fn decisions() -> Vec<Decision> {
    let (block, file) = (BlockId::of(b"hello"), FileKey::for_name("hello.txt"));
    vec![
        Decision::Replicate {
            block,
            file,
            from: peer(4),
            to: peer(5),
            heat: 1.5e6,
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

pub(crate) fn record_errors() -> Vec<RecordError> {
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
