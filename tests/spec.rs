//! The wire spec and the code cannot drift: every fenced block of `docs/PROTOCOL.md` whose
//! info string starts with `cbor ` holds CBOR as hex (whitespace and `#` comments, the
//! comments in diagnostic notation), and this test decodes each one with the codec's own
//! decoder (`protocol::codec::decode_body`), checks the decoded value field by field against
//! the value the spec says it is (compared as JSON, where ids are full hex and peer ids
//! base58), and re-encodes it to the very same bytes. Blocks tagged `cbor-also <example>: why`
//! must decode to that example's value from another encoding; blocks tagged
//! `cbor-invalid <type>: why` must be refused.
//!
//! It fails when a request or response variant (the `KINDS` lists of the request enums, and
//! exhaustive matches for the other enums, so a new variant breaks this file's build) has no
//! example in the spec, when an example is missing, or when the spec carries a block this test
//! does not know.
//!
//! The signatures in the examples are real: every key is a fixed Ed25519 seed and Ed25519 is
//! deterministic, so the record, attestation and download-note examples pass the code's own
//! verification, and the spec's "signed bytes" blocks are compared with what is signed. The
//! worked example's roles (root, replicas, holders) are checked against XOR placement.
//!
//! `SPEC_DUMP=1 cargo test --test spec -- --nocapture` prints every example in the spec's
//! block format, comments included: how to write the block for a new message.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde::{de::DeserializeOwned, Serialize};

use swarmstore::ids::{BlockId, FileKey, Nonce, Proof};
use swarmstore::protocol::block::{BlockRequest, BlockResponse};
use swarmstore::protocol::client::{Candidate, ClientRequest, ClientResponse};
use swarmstore::protocol::codec::decode_body;
use swarmstore::protocol::gossip::{
    BlockHeat, Decision, DecisionBatch, DecisionId, DecisionState, ExtraHeld, FileHeat, Item,
    LoadReport, ManagerMsg, Outcome, RoleTag, Vote,
};
use swarmstore::protocol::meta::{MetaRequest, MetaResponse};
use swarmstore::protocol::status::{
    BalanceStatus, ManagerInfo, NodeStatus, PeerStatus, RepairStatus,
};
use swarmstore::record::{
    BlockEntry, DownloadNote, FileRecord, FileState, Position, RecordError, UserEntry,
};

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md");

// ---------------------------------------------------------------------------------------------
// Fixtures: fixed keys, so every id, peer id and signature is reproducible.

fn key(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).unwrap()
}
fn peer(seed: u8) -> PeerId {
    key(seed).public().to_peer_id()
}
/// The client (and owner) C, the access node A, the root B, the holders H1 and H2 (seeds
/// chosen so that XOR placement among A, B, H1 and H2 gives exactly these roles for R = 2).
const C: u8 = 1;
const A: u8 = 2;
const B: u8 = 9;
const H1: u8 = 4;
const H2: u8 = 8;

const NAME: &str = "hello.txt";
const DATA: &[u8] = b"hello";
const T0: u64 = 1_700_000_000_000;

fn addr(port: u16) -> Multiaddr {
    format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
}
fn block_id() -> BlockId {
    BlockId::of(DATA)
}
fn file_key() -> FileKey {
    FileKey::for_name(NAME)
}

/// Version 1 of `hello.txt`: one 5-byte block held by H1 and H2, signed by C.
fn record() -> FileRecord {
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
        signature: vec![],
    };
    r.sign(&key(C)).unwrap();
    r
}

/// The same file stored inline (what the stock client does for files up to 8 KiB).
fn inline_record() -> FileRecord {
    let mut r = record();
    r.blocks = vec![BlockEntry::inline(DATA.to_vec())];
    r.sign(&key(C)).unwrap();
    r
}

/// The root B's state after the publish: the record, the owner in the user list, attested.
fn state() -> FileState {
    let mut s = FileState::empty();
    s.push(record(), 3);
    s.rev = T0 + 5;
    s.attest(&file_key(), &key(B));
    s
}

fn note() -> DownloadNote {
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

fn signed_content(r: &FileRecord) -> Vec<u8> {
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

fn covered(key: &FileKey, s: &FileState) -> Vec<u8> {
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

fn note_signed(n: &DownloadNote) -> Vec<u8> {
    cbor(&("swarmstore/download/1", &n.key, n.at_ms))
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), v).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Variant names. Exhaustive matches: a new variant does not compile until it is listed here
// (and then the spec lacks its example).

fn block_request(r: &BlockRequest) -> String {
    r.kind().into()
}
fn block_response(r: &BlockResponse) -> &'static str {
    match r {
        BlockResponse::Stored => "Stored",
        BlockResponse::StoredBy { .. } => "StoredBy",
        BlockResponse::Data { .. } => "Data",
        BlockResponse::NotFound => "NotFound",
        BlockResponse::Have { .. } => "Have",
        BlockResponse::Proofs { .. } => "Proofs",
        BlockResponse::Error { .. } => "Error",
    }
}
const BLOCK_RESPONSES: &[&str] = &[
    "Stored", "StoredBy", "Data", "NotFound", "Have", "Proofs", "Error",
];

fn meta_response(r: &MetaResponse) -> &'static str {
    match r {
        MetaResponse::Published { .. } => "Published",
        MetaResponse::Replicated => "Replicated",
        MetaResponse::HoldersSet => "HoldersSet",
        MetaResponse::Digest { .. } => "Digest",
        MetaResponse::State { .. } => "State",
        MetaResponse::Rejected { .. } => "Rejected",
        MetaResponse::Error { .. } => "Error",
    }
}
const META_RESPONSES: &[&str] = &[
    "Published",
    "Replicated",
    "HoldersSet",
    "Digest",
    "State",
    "Rejected",
    "Error",
];

fn client_response(r: &ClientResponse) -> &'static str {
    match r {
        ClientResponse::BlockStored { .. } => "BlockStored",
        ClientResponse::Published { .. } => "Published",
        ClientResponse::File { .. } => "File",
        ClientResponse::Block { .. } => "Block",
        ClientResponse::Status(_) => "Status",
        ClientResponse::Peers { .. } => "Peers",
        ClientResponse::NotFound { .. } => "NotFound",
        ClientResponse::Rejected { .. } => "Rejected",
        ClientResponse::Error { .. } => "Error",
    }
}
const CLIENT_RESPONSES: &[&str] = &[
    "BlockStored",
    "Published",
    "File",
    "Block",
    "Status",
    "Peers",
    "NotFound",
    "Rejected",
    "Error",
];

fn record_error(e: &RecordError) -> &'static str {
    match e {
        RecordError::Invalid(_) => "Invalid",
        RecordError::BadSignature(_) => "BadSignature",
        RecordError::PermissionDenied { .. } => "PermissionDenied",
        RecordError::Conflict { .. } => "Conflict",
        RecordError::Stale { .. } => "Stale",
        RecordError::Unauthorized(_) => "Unauthorized",
    }
}
const RECORD_ERRORS: &[&str] = &[
    "Invalid",
    "BadSignature",
    "PermissionDenied",
    "Conflict",
    "Stale",
    "Unauthorized",
];

fn manager_msg(m: &ManagerMsg) -> &'static str {
    match m {
        ManagerMsg::Candidacy { .. } => "Candidacy",
        ManagerMsg::Vote(_) => "Vote",
        ManagerMsg::Heartbeat { .. } => "Heartbeat",
    }
}
const MANAGER_MSGS: &[&str] = &["Candidacy", "Vote", "Heartbeat"];

fn decision(d: &Decision) -> &'static str {
    match d {
        Decision::Replicate { .. } => "Replicate",
        Decision::Delegate { .. } => "Delegate",
        Decision::Move { .. } => "Move",
        Decision::Drop { .. } => "Drop",
        Decision::EndDelegation { .. } => "EndDelegation",
    }
}
fn decision_state(s: &DecisionState) -> &'static str {
    match s {
        DecisionState::Published => "Published",
        DecisionState::Applied => "Applied",
        DecisionState::Skipped(_) => "Skipped",
        DecisionState::Failed(_) => "Failed",
    }
}
fn role(r: &RoleTag) -> &'static str {
    match r {
        RoleTag::Follower => "Follower",
        RoleTag::Candidate => "Candidate",
        RoleTag::Manager => "Manager",
    }
}

// ---------------------------------------------------------------------------------------------
// The examples the spec must carry.

/// Decodes a block's bytes and checks them; with `exact`, also that they re-encode to the
/// same bytes. Returns the variant's name (or kind).
type Check = Box<dyn Fn(&[u8], bool) -> Result<String, String>>;

struct Example {
    /// The block's info string after `cbor `.
    tag: String,
    /// Expected bytes (the encoding of the value), for the dump.
    bytes: Vec<u8>,
    check: Check,
}

/// An example of `value`: a spec block tagged `tag` must decode to it field by field,
/// re-encode to the same bytes, name variant `name(value)`, and pass `extra`.
fn example<T>(
    tag: &str,
    value: T,
    name: impl Fn(&T) -> String + 'static,
    extra: impl Fn(&T) -> Result<(), String> + 'static,
) -> Example
where
    T: Serialize + DeserializeOwned + 'static,
{
    let bytes = cbor(&value);
    let want = serde_json::to_value(&value).unwrap();
    let tag_owned = tag.to_string();
    let check = Box::new(move |doc: &[u8], exact: bool| -> Result<String, String> {
        let got: T = decode_body(doc, &tag_owned).map_err(|e| e.to_string())?;
        let got_json = serde_json::to_value(&got).map_err(|e| e.to_string())?;
        if got_json != want {
            return Err(format!(
                "decodes to\n{}\nbut the spec says it is\n{}",
                serde_json::to_string_pretty(&got_json).unwrap_or_default(),
                serde_json::to_string_pretty(&want).unwrap_or_default()
            ));
        }
        let again = cbor(&got);
        if exact && again != doc {
            return Err(format!(
                "re-encodes to {} (not the spec's bytes)",
                hex::encode(again)
            ));
        }
        extra(&got)?;
        Ok(name(&got))
    });
    Example {
        tag: tag.to_string(),
        bytes,
        check,
    }
}

fn ok<T>(_: &T) -> Result<(), String> {
    Ok(())
}

/// Example of a plain value whose "variant" is its type.
fn plain<T>(tag: &str, value: T, extra: impl Fn(&T) -> Result<(), String> + 'static) -> Example
where
    T: Serialize + DeserializeOwned + 'static,
{
    let t = tag.split_whitespace().next().unwrap_or(tag).to_string();
    example(tag, value, move |_| t.clone(), extra)
}

/// Bytes whose meaning is a signature's input: checked as bytes against `want`.
fn raw(tag: &str, want: Vec<u8>) -> Example {
    let w = want.clone();
    let t = tag.to_string();
    Example {
        tag: tag.into(),
        bytes: want,
        check: Box::new(move |doc, _| {
            if doc == w.as_slice() {
                Ok(t.clone())
            } else {
                Err(format!("the code signs {}", hex::encode(&w)))
            }
        }),
    }
}

fn examples() -> Vec<Example> {
    let id = block_id();
    let fk = file_key();
    let nonce = Nonce([0x11; 32]);
    let proof = Proof::of(&nonce, &id, DATA);
    let rec = record();
    let st = state();
    let n = note();
    let mut v = Vec::new();

    // Identifiers and records.
    v.push(plain("BlockId", id, |b| {
        (*b == BlockId::of(DATA))
            .then_some(())
            .ok_or("not SHA-256 of \"hello\"".into())
    }));
    v.push(plain("FileKey", fk, |k| {
        (*k == FileKey::for_name(NAME))
            .then_some(())
            .ok_or("not the key of hello.txt".into())
    }));
    v.push(plain("PeerId", peer(C), ok));
    v.push(plain("Multiaddr", addr(4001), ok));
    v.push(plain("FileRecord", rec.clone(), |r| {
        r.verify().map_err(|e| e.to_string())
    }));
    v.push(raw("signed FileRecord", signed_content(&rec)));
    v.push(plain("FileRecord (inline)", inline_record(), |r| {
        r.verify().map_err(|e| e.to_string())
    }));
    v.push(plain("FileState", st.clone(), |s| {
        let by = s
            .check_attestation(&FileKey::for_name(NAME), T0 + 10)
            .map_err(|e| e.to_string())?;
        (by == peer(B))
            .then_some(())
            .ok_or("attested by someone else".into())
    }));
    v.push(raw("signed FileState", covered(&fk, &st)));
    v.push(plain("DownloadNote", n.clone(), |n| {
        n.verify(&FileKey::for_name(NAME), n.at_ms)
            .map_err(|e| e.to_string())
    }));
    v.push(raw("signed DownloadNote", note_signed(&n)));

    // Record errors (inside every `Rejected`).
    let errors = vec![
        RecordError::Invalid("file name is empty".into()),
        RecordError::BadSignature("owner key does not match owner peer id".into()),
        RecordError::PermissionDenied {
            name: NAME.into(),
            owner: peer(C).to_string(),
        },
        RecordError::Conflict {
            name: NAME.into(),
            current: 2,
            attempted: 1,
        },
        RecordError::Stale {
            current: 2,
            attempted: 1,
        },
        RecordError::Unauthorized("download note for another file".into()),
    ];
    for e in errors {
        let tag = format!("RecordError::{}", record_error(&e));
        v.push(example(&tag, e, |e| record_error(e).into(), ok));
    }

    // /swarmstore/block/1
    let block_requests = vec![
        BlockRequest::Put {
            id,
            file: NAME.into(),
            data: DATA.to_vec(),
        },
        BlockRequest::PutChain {
            id,
            file: NAME.into(),
            data: DATA.to_vec(),
            then: vec![peer(H2)],
        },
        BlockRequest::Get { id },
        BlockRequest::Has { ids: vec![id] },
        BlockRequest::Pull {
            id,
            file: NAME.into(),
            sources: vec![peer(H1)],
        },
        BlockRequest::Prove {
            nonce,
            ids: vec![id],
        },
    ];
    for r in block_requests {
        let tag = format!("BlockRequest::{}", variant_of(&r));
        v.push(example(&tag, r, block_request, ok));
    }
    let block_responses = vec![
        BlockResponse::Stored,
        BlockResponse::StoredBy {
            holders: vec![peer(H1), peer(H2)],
        },
        BlockResponse::Data {
            data: DATA.to_vec(),
        },
        BlockResponse::NotFound,
        BlockResponse::Have { ids: vec![id] },
        BlockResponse::Proofs {
            proofs: vec![(id, proof)],
        },
        BlockResponse::Error {
            message: "node is full".into(),
        },
    ];
    for r in block_responses {
        let tag = format!("BlockResponse::{}", block_response(&r));
        v.push(example(&tag, r, |r| block_response(r).into(), ok));
    }
    v.push(plain("Proof", proof, move |p| {
        (*p == Proof::of(&Nonce([0x11; 32]), &BlockId::of(DATA), DATA))
            .then_some(())
            .ok_or("not SHA-256(nonce ‖ id ‖ bytes)".into())
    }));

    // /swarmstore/meta/1
    let meta_requests = vec![
        MetaRequest::Publish {
            record: rec.clone(),
        },
        MetaRequest::Replicate {
            key: fk,
            state: st.clone(),
        },
        MetaRequest::Digest {
            entries: vec![(fk, Position { version: 1, rev: 0 })],
        },
        MetaRequest::SetHolders {
            name: NAME.into(),
            block: id,
            add: vec![peer(A)],
            remove: vec![peer(H2)],
        },
        MetaRequest::Fetch {
            key: fk,
            note: Some(n.clone()),
        },
        MetaRequest::DelegateState {
            key: fk,
            state: st.clone(),
        },
    ];
    for r in meta_requests {
        let tag = format!("MetaRequest::{}", variant_of(&r));
        v.push(example(&tag, r, |r: &MetaRequest| r.kind().into(), ok));
    }
    let meta_responses = vec![
        MetaResponse::Published {
            version: 1,
            replicas: vec![peer(B), peer(A)],
        },
        MetaResponse::Replicated,
        MetaResponse::HoldersSet,
        MetaResponse::Digest {
            entries: vec![(
                fk,
                Position {
                    version: 1,
                    rev: T0 + 5,
                },
            )],
        },
        MetaResponse::State {
            state: Some(st.clone()),
        },
        MetaResponse::Rejected {
            error: RecordError::Stale {
                current: 2,
                attempted: 1,
            },
        },
        MetaResponse::Error {
            message: "record stored on 1 of the 2 replicas a majority needs".into(),
        },
    ];
    for r in meta_responses {
        let tag = format!("MetaResponse::{}", meta_response(&r));
        v.push(example(&tag, r, |r| meta_response(r).into(), ok));
    }
    v.push(example(
        "MetaResponse::State (none)",
        MetaResponse::State { state: None },
        |r| meta_response(r).into(),
        ok,
    ));

    // /swarmstore/client/1
    let client_requests = vec![
        ClientRequest::PutBlock {
            id,
            file: NAME.into(),
            data: DATA.to_vec(),
        },
        ClientRequest::Publish {
            record: rec.clone(),
        },
        ClientRequest::Fetch {
            name: NAME.into(),
            note: Some(n.clone()),
        },
        ClientRequest::GetBlock {
            id,
            holders: vec![peer(H1), peer(H2)],
        },
        ClientRequest::Status,
        ClientRequest::Peers,
    ];
    for r in client_requests {
        let tag = format!("ClientRequest::{}", variant_of(&r));
        v.push(example(&tag, r, |r: &ClientRequest| r.kind().into(), ok));
    }
    v.push(example(
        "ClientRequest::Fetch (stat)",
        ClientRequest::Fetch {
            name: NAME.into(),
            note: None,
        },
        |r: &ClientRequest| r.kind().into(),
        ok,
    ));
    let status = NodeStatus {
        peer: peer(A),
        addrs: vec![addr(4001)],
        replication: 2,
        blocks: 1,
        used: 5,
        capacity: None,
        records: 1,
        peers: vec![PeerStatus {
            peer: peer(B),
            connected: true,
            live: true,
        }],
        repair: RepairStatus::default(),
        balance: BalanceStatus {
            manager: Some(ManagerInfo {
                peer: peer(B),
                term: 1,
            }),
            role: "follower".into(),
            term: 1,
            nodes: vec![],
            decisions: vec![],
            ignored: BTreeMap::new(),
        },
        refused: BTreeMap::from([("unsolicited block".to_string(), 1)]),
    };
    let client_responses = vec![
        ClientResponse::BlockStored {
            holders: vec![peer(H1), peer(H2)],
        },
        ClientResponse::Published {
            key: fk,
            version: 1,
            root: peer(B),
            replicas: vec![peer(B), peer(A)],
        },
        ClientResponse::File {
            key: fk,
            root: peer(B),
            replicas: vec![peer(B), peer(A)],
            state: st.clone(),
            addrs: vec![(peer(H1), vec![addr(4004)])],
        },
        ClientResponse::Block {
            data: DATA.to_vec(),
        },
        ClientResponse::Status(Box::new(status)),
        ClientResponse::Peers {
            replication: 2,
            candidates: vec![Candidate {
                peer: peer(H1),
                addrs: vec![addr(4004)],
                free: Some(1 << 30),
            }],
        },
        ClientResponse::NotFound { name: NAME.into() },
        ClientResponse::Rejected {
            error: RecordError::Conflict {
                name: NAME.into(),
                current: 1,
                attempted: 0,
            },
        },
        ClientResponse::Error {
            message: "no holder returned block".into(),
        },
    ];
    for r in client_responses {
        let tag = format!("ClientResponse::{}", client_response(&r));
        v.push(example(&tag, r, |r| client_response(r).into(), ok));
    }

    // Gossip.
    v.push(example(
        "ManagerMsg::Candidacy",
        ManagerMsg::Candidacy { term: 2 },
        |m| manager_msg(m).into(),
        ok,
    ));
    // Peer 2's vote for peer 1 in term 2 of swarm "main": ed25519 signatures are
    // deterministic, so the bytes are fixed.
    let vote = Vote::sign("swarmstore/main/manager", 2, peer(1), &key(2));
    v.push(example(
        "ManagerMsg::Vote",
        ManagerMsg::Vote(vote.clone()),
        |m| manager_msg(m).into(),
        ok,
    ));
    v.push(example(
        "ManagerMsg::Heartbeat",
        ManagerMsg::Heartbeat {
            term: 2,
            beat: 7,
            cert: vec![vote],
        },
        |m| manager_msg(m).into(),
        ok,
    ));
    v.push(example(
        "ManagerMsg::Heartbeat without a certificate",
        ManagerMsg::Heartbeat {
            term: 2,
            beat: 7,
            cert: vec![],
        },
        |m| manager_msg(m).into(),
        ok,
    ));
    let report = LoadReport {
        seq: 42,
        at_ms: T0,
        load: 1.5,
        bandwidth: 1e8,
        meta_rps: 0.5,
        block_rps: 2.0,
        block_bps: 10.0,
        inflight: 0,
        used: 5,
        capacity: 1 << 30,
        zone: Some("eu-1".into()),
        role: RoleTag::Follower,
        term: 2,
        served_blocks: 3,
        hot_blocks: vec![BlockHeat {
            id,
            file: NAME.into(),
            size: 5,
            heat: 0.25,
            extra: false,
        }],
        hot_files: vec![FileHeat {
            name: NAME.into(),
            heat: 0.5,
            root: true,
        }],
        extras: vec![ExtraHeld {
            id,
            file: NAME.into(),
            size: 5,
            base: vec![peer(H1)],
        }],
        delegations: vec![(fk, T0 + 30_000)],
        outcomes: vec![
            Outcome {
                id: DecisionId {
                    term: 2,
                    seq: 0,
                    idx: 0,
                },
                state: DecisionState::Applied,
            },
            Outcome {
                id: DecisionId {
                    term: 2,
                    seq: 0,
                    idx: 1,
                },
                state: DecisionState::Skipped("unknown block".into()),
            },
        ],
    };
    v.push(plain("LoadReport", report, |r| {
        let roles = role(&r.role);
        let states: Vec<&str> = r
            .outcomes
            .iter()
            .map(|o| decision_state(&o.state))
            .collect();
        (roles == "Follower" && states == ["Applied", "Skipped"])
            .then_some(())
            .ok_or(format!("role {roles}, outcomes {states:?}"))
    }));
    for s in [
        DecisionState::Published,
        DecisionState::Failed("timeout".into()),
    ] {
        let tag = format!("DecisionState::{}", decision_state(&s));
        v.push(example(&tag, s, |s| decision_state(s).into(), ok));
    }
    for r in [RoleTag::Candidate, RoleTag::Manager] {
        let tag = format!("RoleTag::{}", role(&r));
        v.push(example(&tag, r, |r| role(r).into(), ok));
    }
    let item = |decision| Item {
        decision,
        name: NAME.into(),
    };
    let batch = DecisionBatch {
        term: 2,
        seq: 0,
        now_ms: T0,
        items: vec![
            item(Decision::Replicate {
                block: id,
                file: fk,
                from: peer(H1),
                to: peer(A),
            }),
            item(Decision::Delegate {
                file: fk,
                root: peer(B),
                to: peer(A),
                expires_at: T0 + 30_000,
            }),
            item(Decision::Move {
                block: id,
                file: fk,
                from: peer(H2),
                to: peer(A),
                bytes: 5,
            }),
            item(Decision::Drop {
                block: id,
                file: fk,
                at: peer(A),
            }),
            item(Decision::EndDelegation {
                file: fk,
                at: peer(A),
            }),
        ],
    };
    v.push(plain("DecisionBatch", batch, |b| {
        let kinds: Vec<&str> = b.items.iter().map(|i| i.decision.kind()).collect();
        let names: Vec<&str> = b.items.iter().map(|i| decision(&i.decision)).collect();
        (kinds == Decision::KINDS
            && names == ["Replicate", "Delegate", "Move", "Drop", "EndDelegation"])
        .then_some(())
        .ok_or(format!("decisions {kinds:?}"))
    }));
    v
}

/// The serde variant name of an externally tagged enum value: the text key (or text) its
/// CBOR starts with.
fn variant_of<T: Serialize>(v: &T) -> String {
    let bytes = cbor(v);
    let mut pos = 0;
    let (mut major, mut len, _) = head(&bytes, &mut pos);
    if major == 5 {
        (major, len, _) = head(&bytes, &mut pos);
    }
    assert_eq!(major, 3, "not an externally tagged enum");
    String::from_utf8(bytes[pos..pos + len as usize].to_vec()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Reading the spec.

/// What a block of the spec claims about its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claim {
    /// ```` ```cbor <tag> ````: exactly what the code sends for example `<tag>`.
    Exact,
    /// ```` ```cbor-also <tag>: <why> ````: another encoding the code reads as `<tag>`.
    Also,
    /// ```` ```cbor-invalid <type>: <why> ````: bytes the code refuses to read as `<type>`.
    Invalid,
}

struct Block {
    claim: Claim,
    tag: String,
    bytes: Vec<u8>,
    /// Line of the opening fence.
    line: usize,
}

/// Every CBOR block of the spec: fences whose info string starts with `cbor`, `cbor-also` or
/// `cbor-invalid`; hex with whitespace and `#` comments.
fn spec_blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<(Claim, String, String, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        match current.as_mut() {
            None => {
                let opened = [
                    ("```cbor ", Claim::Exact),
                    ("```cbor-also ", Claim::Also),
                    ("```cbor-invalid ", Claim::Invalid),
                ]
                .into_iter()
                .find_map(|(p, c)| trimmed.strip_prefix(p).map(|info| (c, info)));
                if let Some((claim, info)) = opened {
                    let tag = match claim {
                        Claim::Exact => info.trim(),
                        _ => info.split(": ").next().unwrap_or(info).trim(),
                    };
                    current = Some((claim, tag.to_string(), String::new(), n + 1));
                }
            }
            Some((_, _, hex, _)) => {
                if trimmed.starts_with("```") {
                    let (claim, tag, hex, line) = current.take().unwrap();
                    let bytes = hex::decode(&hex)
                        .unwrap_or_else(|e| panic!("{SPEC}:{line}: `{tag}` is not hex: {e}"));
                    out.push(Block {
                        claim,
                        tag,
                        bytes,
                        line,
                    });
                } else {
                    let code = line.split('#').next().unwrap_or("");
                    hex.extend(code.chars().filter(|c| !c.is_whitespace()));
                }
            }
        }
    }
    assert!(current.is_none(), "{SPEC}: unterminated cbor block");
    out
}

/// Whether the codec refuses `bytes` as a `ty`: `Err` for a type this test does not know.
fn refused(ty: &str, bytes: &[u8]) -> Result<bool, String> {
    fn no<T: DeserializeOwned>(b: &[u8]) -> bool {
        decode_body::<T>(b, "spec").is_err()
    }
    Ok(match ty {
        "BlockId" => no::<BlockId>(bytes),
        "FileKey" => no::<FileKey>(bytes),
        "PeerId" => no::<PeerId>(bytes),
        "Multiaddr" => no::<Multiaddr>(bytes),
        "f64" => no::<f64>(bytes),
        "BlockRequest" => no::<BlockRequest>(bytes),
        "ClientRequest" => no::<ClientRequest>(bytes),
        "MetaRequest" => no::<MetaRequest>(bytes),
        "ManagerMsg" => no::<ManagerMsg>(bytes),
        "LoadReport" => no::<LoadReport>(bytes),
        other => return Err(format!("no decoder for `{other}` in tests/spec.rs")),
    })
}

#[test]
fn every_message_in_the_spec_decodes_to_what_the_spec_says() {
    let examples = examples();
    if std::env::var_os("SPEC_DUMP").is_some() {
        for e in &examples {
            println!("```cbor {}\n{}```\n", e.tag, diag(&e.bytes));
        }
    }
    let text = std::fs::read_to_string(SPEC).unwrap();
    let blocks = spec_blocks(&text);
    let by_tag: BTreeMap<&str, &Example> = examples.iter().map(|e| (e.tag.as_str(), e)).collect();
    let mut failures = Vec::new();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for Block {
        claim,
        tag,
        bytes,
        line,
    } in &blocks
    {
        if *claim == Claim::Invalid {
            match refused(tag, bytes) {
                Ok(true) => {}
                Ok(false) => failures.push(format!("{SPEC}:{line}: `{tag}` is read, not refused")),
                Err(why) => failures.push(format!("{SPEC}:{line}: {why}")),
            }
            continue;
        }
        let Some(e) = by_tag.get(tag.as_str()) else {
            failures.push(format!("{SPEC}:{line}: unknown example `{tag}`"));
            continue;
        };
        match (e.check)(bytes, *claim == Claim::Exact) {
            Ok(variant) if *claim == Claim::Exact => {
                let ty = tag.split("::").next().unwrap_or(tag).to_string();
                seen.entry(ty).or_default().insert(variant);
            }
            Ok(_) => {}
            Err(why) => failures.push(format!("{SPEC}:{line}: `{tag}` {why}")),
        }
    }
    let present: BTreeSet<&str> = blocks
        .iter()
        .filter(|b| b.claim == Claim::Exact)
        .map(|b| b.tag.as_str())
        .collect();
    for e in &examples {
        if !present.contains(e.tag.as_str()) {
            failures.push(format!("{SPEC}: no example `{}`", e.tag));
        }
    }
    // Every variant of every request and response enum has an example.
    let must: [(&str, Vec<&str>); 8] = [
        ("BlockRequest", BlockRequest::KINDS.to_vec()),
        ("BlockResponse", BLOCK_RESPONSES.to_vec()),
        ("MetaRequest", MetaRequest::KINDS.to_vec()),
        ("MetaResponse", META_RESPONSES.to_vec()),
        ("ClientRequest", ClientRequest::KINDS.to_vec()),
        ("ClientResponse", CLIENT_RESPONSES.to_vec()),
        ("RecordError", RECORD_ERRORS.to_vec()),
        ("ManagerMsg", MANAGER_MSGS.to_vec()),
    ];
    for (ty, variants) in must {
        let got = seen.get(ty).cloned().unwrap_or_default();
        for v in variants {
            if !got.contains(v) {
                failures.push(format!("{SPEC}: no example of {ty} `{v}`"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_worked_example_follows_placement_and_the_spec_names_the_fixture_peers() {
    use swarmstore::ids::{distance, peer_point};
    // Placement's rule (`placement::closest`): XOR distance of SHA-256(peer id) to the point.
    let by_distance = |target: [u8; 32]| {
        let mut nodes: Vec<PeerId> = [A, B, H1, H2].into_iter().map(peer).collect();
        nodes.sort_by_key(|p| distance(&peer_point(p), &target));
        nodes
    };
    let set = by_distance(file_key().0);
    assert_eq!(
        set[..2],
        [peer(B), peer(A)],
        "replica set of hello.txt, root first"
    );
    let holders = by_distance(block_id().kad_point());
    assert_eq!(holders[..2], [peer(H1), peer(H2)], "placement of the block");
    let text = std::fs::read_to_string(SPEC).unwrap();
    for (name, seed) in [("C", C), ("A", A), ("B", B), ("H1", H1), ("H2", H2)] {
        let bytes = hex::encode(&peer(seed).to_bytes()[6..]);
        let row = format!("| {name} | `{}` | `002408011220 {bytes}` |", peer(seed));
        assert!(text.contains(&row), "the spec's peer table lacks {row}");
    }
}

#[test]
fn the_spec_parser_reads_comments_and_claims() {
    let text = "x\n```cbor BlockRequest::Get\na1 # map(1)\n  63 476574 # \"Get\"\n```\n\
                ```cbor-invalid BlockId: too short\n41 00\n```\n";
    let blocks = spec_blocks(text);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].claim, Claim::Exact);
    assert_eq!(blocks[0].tag, "BlockRequest::Get");
    assert_eq!(blocks[0].bytes, hex::decode("a163476574").unwrap());
    assert_eq!(blocks[1].claim, Claim::Invalid);
    assert_eq!(blocks[1].tag, "BlockId");
    assert_eq!(refused("BlockId", &blocks[1].bytes), Ok(true));
    // Truncated bytes are a decode error, never a panic.
    assert!(decode_body::<BlockRequest>(&blocks[0].bytes, "request").is_err());
}

// ---------------------------------------------------------------------------------------------
// Diagnostic notation, for the dump: one line per item, hex then `# comment`.

fn diag(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    item(bytes, &mut pos, 0, &mut out, None);
    assert_eq!(pos, bytes.len(), "trailing bytes");
    out
}

fn line(out: &mut String, depth: usize, hex: &str, comment: &str) {
    let code = format!("{}{}", "  ".repeat(depth), hex);
    if comment.is_empty() {
        out.push_str(&format!("{code}\n"));
        return;
    }
    let pad = 44usize.saturating_sub(code.len()).max(1);
    out.push_str(&format!("{code}{}# {comment}\n", " ".repeat(pad)));
}

/// Whether the `n` items at `pos` are all integers below 256 (and there are more than 8).
fn small_uints(b: &[u8], mut pos: usize, n: u64) -> bool {
    if n <= 8 {
        return false;
    }
    for _ in 0..n {
        match b.get(pos) {
            Some(0x00..=0x17) => pos += 1,
            Some(0x18) => pos += 2,
            _ => return false,
        }
    }
    true
}

fn head(b: &[u8], pos: &mut usize) -> (u8, u64, usize) {
    let start = *pos;
    let ib = b[*pos];
    *pos += 1;
    let major = ib >> 5;
    let info = ib & 0x1f;
    let arg = match info {
        0..=23 => u64::from(info),
        24..=27 => {
            let n = 1usize << (info - 24);
            let mut v = 0u64;
            for i in 0..n {
                v = (v << 8) | u64::from(b[*pos + i]);
            }
            *pos += n;
            v
        }
        _ => panic!("indefinite lengths are not used"),
    };
    (major, arg, start)
}

fn item(b: &[u8], pos: &mut usize, depth: usize, out: &mut String, label: Option<&str>) {
    let (major, arg, start) = head(b, pos);
    let hdr = hex::encode(&b[start..*pos]);
    let pre = label.map(|l| format!("{l}: ")).unwrap_or_default();
    match major {
        0 => line(out, depth, &hdr, &format!("{pre}unsigned({arg})")),
        2 => {
            let data = &b[*pos..*pos + arg as usize];
            *pos += arg as usize;
            if data.len() <= 8 {
                let h = format!("{hdr} {}", hex::encode(data));
                line(out, depth, &h, &format!("{pre}bytes({arg})"));
            } else {
                line(out, depth, &hdr, &format!("{pre}bytes({arg})"));
                for chunk in data.chunks(16) {
                    line(out, depth + 1, &hex::encode(chunk), "");
                }
            }
        }
        3 => {
            let data = &b[*pos..*pos + arg as usize];
            *pos += arg as usize;
            let s = String::from_utf8_lossy(data);
            if data.len() <= 12 {
                let h = format!("{hdr} {}", hex::encode(data));
                line(out, depth, &h, &format!("{pre}{s:?}"));
            } else {
                line(out, depth, &hdr, &format!("{pre}text({arg}) {s:?}"));
                for chunk in data.chunks(16) {
                    line(out, depth + 1, &hex::encode(chunk), "");
                }
            }
        }
        4 if small_uints(b, *pos, arg) => {
            // A byte sequence serialized without serde_bytes: integers, eight to a line.
            line(
                out,
                depth,
                &hdr,
                &format!("{pre}array({arg}) of integers (bytes)"),
            );
            let mut row = Vec::new();
            for _ in 0..arg {
                let (_, _, s) = head(b, pos);
                row.push(hex::encode(&b[s..*pos]));
                if row.len() == 8 {
                    line(out, depth + 1, &row.join(" "), "");
                    row.clear();
                }
            }
            if !row.is_empty() {
                line(out, depth + 1, &row.join(" "), "");
            }
        }
        4 => {
            line(out, depth, &hdr, &format!("{pre}array({arg})"));
            for _ in 0..arg {
                item(b, pos, depth + 1, out, None);
            }
        }
        5 => {
            line(out, depth, &hdr, &format!("{pre}map({arg})"));
            for _ in 0..arg {
                // Keys are short texts: print them on the value's line.
                let save = *pos;
                let (kmajor, klen, _) = head(b, pos);
                if kmajor == 3 && klen <= 16 {
                    let kbytes = &b[*pos..*pos + klen as usize];
                    *pos += klen as usize;
                    let k = String::from_utf8_lossy(kbytes).to_string();
                    let h = hex::encode(&b[save..*pos]);
                    line(out, depth + 1, &h, &format!("{k:?}:"));
                    item(b, pos, depth + 2, out, None);
                } else {
                    *pos = save;
                    item(b, pos, depth + 1, out, Some("key"));
                    item(b, pos, depth + 1, out, None);
                }
            }
        }
        7 => {
            let what = match (b[start] & 0x1f, arg) {
                (20, _) => "false".to_string(),
                (21, _) => "true".to_string(),
                (22, _) => "null".to_string(),
                (27, bits) => format!("float64({})", f64::from_bits(bits)),
                (26, bits) => format!("float32({})", f32::from_bits(bits as u32)),
                (25, bits) => format!("float16(0x{bits:04x})"),
                (_, v) => format!("simple({v})"),
            };
            line(out, depth, &hdr, &format!("{pre}{what}"));
        }
        m => panic!("major type {m} is not used"),
    }
}
