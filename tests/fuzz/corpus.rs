//! The seed corpus, `tests/fuzz-corpus/<decoder>/`: every seed ([`corpus_values`], the config
//! and swarm key seeds), reading a decoder's seeds once, and the two tests that rewrite the
//! corpus (`SWARMSTORE_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz write_corpus`) and check
//! that the committed corpus holds every seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use swarmstore::ids::{BlockId, FileKey, Nonce, Proof};
use swarmstore::protocol::block::{BlockRequest, BlockResponse};
use swarmstore::protocol::client::{Candidate, ClientRequest, ClientResponse};
use swarmstore::protocol::gossip::{self, DecisionBatch, Item, ManagerMsg, RoleTag, Vote};
use swarmstore::protocol::meta::{MetaRequest, MetaResponse};
use swarmstore::record::{Position, RecordError};

use crate::fixtures::{
    addr, attested_state, decisions, held_record, inline_record, load_report, multi_block_record,
    node_status, note, reborn_state, record_errors, sealed_record, tombstone,
};
use crate::{cbor, filler, key, peer, T0};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-corpus")
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
    add("record", "sealed", cbor(&sealed_record()));
    add("record", "tombstone", cbor(&tombstone(&held_record())));
    add("state", "attested", cbor(&attested_state()));
    add("state", "reborn", cbor(&reborn_state()));
    add("note", "download", cbor(&note()));

    use swarmstore::client::bucket::index::{shard_of, BucketList, BucketMeta, ObjectEntry, Page};
    let mut page = Page::default();
    // Keys of page 3 of 16, the page the fuzz target decodes them as.
    let on_page: Vec<String> = (0..200)
        .map(|i| format!("photos/{i}.jpg"))
        .filter(|k| shard_of(k, 16) == 3)
        .take(3)
        .collect();
    for k in &on_page {
        let k = k.as_str();
        {
            page.entries.insert(
                k.to_string(),
                ObjectEntry {
                    key: k.to_string(),
                    size: 1234,
                    version: 2,
                    modified_ms: T0,
                    etag: Some("9e107d9d372bb6826bd81d3542a419d6".into()),
                    content_type: Some("image/jpeg".into()),
                    meta: vec![("colour".into(), "blue".into())],
                },
            );
        }
    }
    add("bucket-page", "page-3-of-16", page.encode());
    add("bucket-page", "empty", Page::default().encode());
    add(
        "bucket-meta",
        "meta",
        BucketMeta::new(16, true, false).encode(),
    );
    let mut list = BucketList::default();
    list.buckets.insert("photos".into(), T0);
    add("bucket-meta", "list", list.encode());
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
pub(crate) fn seeds(dir: &'static str) -> Arc<Vec<Vec<u8>>> {
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
