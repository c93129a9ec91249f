//! The examples the spec must carry: for every tag, the value a `cbor <tag>` block of the spec
//! must decode to, field by field and byte for byte, and what else it must pass (signatures,
//! ids). One list: identifiers and records, record errors, the block, meta and client
//! protocols, gossip.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

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
use swarmstore::record::{Position, RecordError};

use crate::diag::head;
use crate::fixtures::{
    addr, block_id, cbor, covered, file_key, inline_record, key, note, note_signed, peer, record,
    signed_content, state, A, B, C, DATA, H1, H2, NAME, T0,
};
use crate::names::{
    block_request, block_response, client_response, decision, decision_state, manager_msg,
    meta_response, record_error, role,
};

/// Decodes a block's bytes and checks them; with `exact`, also that they re-encode to the
/// same bytes. Returns the variant's name (or kind).
type Check = Box<dyn Fn(&[u8], bool) -> Result<String, String>>;

pub(crate) struct Example {
    /// The block's info string after `cbor `.
    pub(crate) tag: String,
    /// Expected bytes (the encoding of the value), for the dump.
    pub(crate) bytes: Vec<u8>,
    pub(crate) check: Check,
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

pub(crate) fn examples() -> Vec<Example> {
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
        front_doors: Vec::new(),
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
                heat: 1_000_000.0,
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
