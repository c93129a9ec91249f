//! Integrity against malicious peers: each attack of the integrity issue, tried by a peer the
//! test builds from the library's wire types (or by a real node driven to lie). After each,
//! the owner's file is byte-identical through every node, the owner can still update and
//! remove it, nothing of theirs is collected, and the attempt was refused and counted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::adversary::Adversary;
use common::*;
use libp2p::identity::Keypair;
use libp2p::PeerId;
use swarmstore::ids::{BlockId, FileKey};
use swarmstore::protocol::block::{BlockRequest, BlockResponse};
use swarmstore::protocol::gossip::{self, LoadReport, RoleTag};
use swarmstore::protocol::meta::{MetaRequest, MetaResponse};
use swarmstore::record::{
    now_ms, BlockEntry, DownloadNote, FileRecord, FileState, DEFAULT_BLOCK_SIZE, MAX_BLOCKS,
};
use swarmstore::store::{Change, Store};
use swarmstore::Client;

fn quick() -> Tune {
    Arc::new(|c| {
        c.gc_grace(Duration::from_secs(1))
            .sync_interval(Duration::from_millis(500))
    })
}

/// A small file's record for `name`, signed by `key`.
fn inline_record(name: &str, version: u64, data: &[u8], key: &Keypair) -> FileRecord {
    let mut r = FileRecord {
        name: name.to_string(),
        version,
        size: data.len() as u64,
        block_size: DEFAULT_BLOCK_SIZE,
        blocks: vec![BlockEntry::inline(data.to_vec())],
        owner: key.public().to_peer_id(),
        owner_key: Vec::new(),
        created_ms: now_ms(),
        modified_ms: now_ms(),
        tombstone: false,
        sealed: None,
        signature: Vec::new(),
    };
    r.sign(key).expect("sign");
    r
}

fn attested(versions: Vec<FileRecord>, rev: u64, signer: &Keypair) -> FileState {
    let key = versions[0].key();
    let mut s = FileState {
        versions,
        ..FileState::empty()
    };
    s.rev = rev;
    s.attest(&key, signer);
    s
}

fn is_refusal(r: &Result<MetaResponse, String>) -> bool {
    matches!(
        r,
        Ok(MetaResponse::Rejected { .. }) | Ok(MetaResponse::Error { .. })
    )
}

async fn refused_total(swarm: &TestSwarm) -> u64 {
    let mut total = 0;
    for i in 0..swarm.nodes.len() {
        if swarm.nodes[i].is_some() {
            let status = swarm.client(i).await.status().await.expect("status");
            total += status.refused.values().sum::<u64>();
        }
    }
    total
}

async fn every_node_reads(swarm: &TestSwarm, name: &str, want: &[u8]) {
    for i in 0..swarm.nodes.len() {
        if swarm.nodes[i].is_some() {
            let got = swarm.client(i).await.get_bytes(name).await;
            assert!(
                got.as_ref().is_ok_and(|g| g.as_slice() == want),
                "node {i} serves {name:?} wrong: {:?}",
                got.map(|g| g.len())
            );
        }
    }
}

/// Findings 1-3: a stranger's overwrite, a tombstone at u64::MAX that would kill the name, and
/// the owner's own head re-sent with invented holders and a revision of u64::MAX.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_cannot_overwrite_kill_or_poison_a_file() {
    let swarm = TestSwarm::start_with(5, 3, quick()).await;
    let owner_key = Keypair::generate_ed25519();
    let owner = swarm.client_with(0, &owner_key).await;
    let data = random_bytes(300_000, 1);
    owner.put_bytes("victim", &data).await.expect("put");
    let key = FileKey::for_name("victim");
    let info = owner.stat("victim").await.expect("stat");
    let holders = info.blocks[0].holders.clone();
    let root = swarm.index_of(&info.root);
    let held = swarm
        .node(root)
        .store()
        .records
        .get(&key)
        .expect("read")
        .expect("the root holds it");

    let mut adv = Adversary::new();
    let thief = adv.key.clone();
    let forged = inline_record("victim", 2, b"evil", &thief);
    let mut tomb = inline_record("victim", u64::MAX, b"", &thief);
    tomb.blocks.clear();
    tomb.size = 0;
    tomb.tombstone = true;
    tomb.sign(&thief).expect("sign");
    let mut poisoned = held.clone();
    for b in &mut poisoned.versions[0].blocks {
        b.holders = vec![PeerId::random(), PeerId::random(), PeerId::random()];
    }
    poisoned.rev = u64::MAX;
    poisoned.attest(&key, &thief);
    let mut unsigned = poisoned.clone();
    unsigned.rev = now_ms();
    unsigned.attest = None;
    let copies = [
        attested(vec![forged.clone()], now_ms(), &thief),
        attested(vec![tomb.clone()], now_ms(), &thief),
        poisoned,
        unsigned,
    ];
    let before = refused_total(&swarm).await;
    for node in swarm.running() {
        let addr = node.addr();
        for state in &copies {
            let r = adv
                .meta(
                    &addr,
                    MetaRequest::Replicate {
                        key,
                        state: state.clone(),
                    },
                )
                .await;
            assert!(is_refusal(&r), "a forged copy was taken: {r:?}");
        }
        for record in [&forged, &tomb] {
            let r = adv
                .meta(
                    &addr,
                    MetaRequest::Publish {
                        record: record.clone(),
                    },
                )
                .await;
            assert!(is_refusal(&r), "a forged publish was taken: {r:?}");
        }
    }
    assert!(
        refused_total(&swarm).await >= before + 20,
        "every attempt is counted"
    );

    every_node_reads(&swarm, "victim", &data).await;
    let after = owner.stat("victim").await.expect("stat");
    assert_eq!(after.blocks[0].holders.len(), holders.len());
    for h in &holders {
        assert!(after.blocks[0].holders.contains(h), "holder {h} kept");
    }
    // Three grace periods later nothing of the owner's was collected.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for h in &holders {
        assert!(
            swarm.has_block_file(swarm.index_of(h), &info.blocks[0].id),
            "the owner's block is still on {h}"
        );
    }
    // The owner still owns the name.
    let v2 = random_bytes(200_000, 2);
    let put = owner
        .update("victim", &v2[..], Some(1), None)
        .await
        .expect("the owner updates");
    assert_eq!(put.version, 2);
    every_node_reads(&swarm, "victim", &v2).await;
    assert_eq!(owner.remove("victim", Some(2)).await.expect("rm"), 3);
    swarm.shutdown().await;
}

/// A replica set where one member serves a stale version and one a forged one (a member that
/// signs its own lie): a get through every node returns the current version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_and_a_forged_replica_cannot_win() {
    let slow_sync: Tune = Arc::new(|c| c.sync_interval(Duration::from_secs(120)));
    let mut swarm = TestSwarm::start_with(5, 3, slow_sync).await;
    let owner = swarm.client(0).await;
    let name = "contested";
    let key = FileKey::for_name(name);
    owner.put_bytes(name, b"first version").await.expect("put");
    let set = closest_to(&key.0, &swarm.peer_ids());
    let (stale, liar) = (swarm.index_of(&set[1]), swarm.index_of(&set[2]));
    // A put is acknowledged once a majority stored it: the third copy may still be on its way.
    let holds = |i: usize| swarm.node(i).store().records.get(&key).ok().flatten();
    let copied = eventually(Duration::from_secs(10), || {
        let ok = holds(stale).is_some() && holds(liar).is_some();
        async move { ok }
    })
    .await;
    assert!(copied, "the whole set holds the first version");
    let old = holds(stale).expect("held");
    owner
        .update(name, &b"second version"[..], Some(1), None)
        .await
        .expect("update");

    // The stale member gets its old state back; the liar a history of its own, signed by
    // the liar itself (it is a member, so its signature counts as a member's).
    swarm.stop_node(stale).await;
    let store = Store::open(&swarm.data_dir(stale)).expect("open");
    store
        .records
        .update(&key, true, |_| {
            Ok::<_, std::convert::Infallible>(Change::Write(old, ()))
        })
        .expect("write")
        .expect("written");
    drop(store);
    swarm.stop_node(liar).await;
    let liar_key = Keypair::from_protobuf_encoding(
        &std::fs::read(swarm.data_dir(liar).join("identity.key")).expect("key file"),
    )
    .expect("identity");
    let thief = Keypair::generate_ed25519();
    let lie = attested(
        vec![inline_record(name, 9, b"a forged history", &thief)],
        now_ms(),
        &liar_key,
    );
    let store = Store::open(&swarm.data_dir(liar)).expect("open");
    store
        .records
        .update(&key, true, |_| {
            Ok::<_, std::convert::Infallible>(Change::Write(lie, ()))
        })
        .expect("write")
        .expect("written");
    drop(store);
    swarm.start_node(stale).await;
    swarm.start_node(liar).await;
    swarm.wait_mesh().await;

    every_node_reads(&swarm, name, b"second version").await;
    swarm.shutdown().await;
}

/// Finding 10: only a downloader's own signed note adds it to the user list, and only the
/// owner sees the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloaders_are_authenticated_and_private() {
    let swarm = TestSwarm::start(3, 3).await;
    let owner = swarm.client(0).await;
    owner.put_bytes("diary", b"dear diary").await.expect("put");
    let key = FileKey::for_name("diary");
    let reader = swarm.client(1).await;
    reader.get_bytes("diary").await.expect("get");
    let info = owner.stat("diary").await.expect("stat");
    let root_addr = swarm.node(swarm.index_of(&info.root)).addr();

    // Invented downloaders: a note naming someone else, signed by the adversary; and a
    // real note replayed from far in the past.
    let mut adv = Adversary::new();
    let invented = PeerId::random();
    let mut forged = DownloadNote::sign(key, &adv.key, now_ms());
    forged.reader = invented;
    let old = DownloadNote::sign(key, &Keypair::generate_ed25519(), now_ms() - 3_600_000);
    let old_reader = old.reader;
    for note in [forged, old] {
        let r = adv
            .meta(
                &root_addr,
                MetaRequest::Fetch {
                    key,
                    note: Some(note),
                },
            )
            .await;
        assert!(matches!(r, Ok(MetaResponse::State { .. })), "{r:?}");
    }
    let ok = eventually(Duration::from_secs(5), || async {
        owner
            .stat("diary")
            .await
            .map(|i| i.users.iter().any(|u| u.peer == reader.peer_id()))
            .unwrap_or(false)
    })
    .await;
    assert!(ok, "the real downloader is listed");
    let users = owner.stat("diary").await.expect("stat").users;
    assert!(
        users
            .iter()
            .all(|u| u.peer != invented && u.peer != old_reader),
        "{users:?}"
    );
    let seen = swarm.client(2).await.stat("diary").await.expect("stat");
    assert_eq!(seen.users.len(), 1, "a stranger sees only the owner");
    swarm.shutdown().await;
}

/// Finding 9: a record of 100,000 never-uploaded blocks and a 7 MB file name in a block
/// reference are refused; the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_records_and_names_are_refused() {
    let swarm = TestSwarm::start(3, 3).await;
    let mut adv = Adversary::new();
    let key = adv.key.clone();
    let blocks: Vec<BlockEntry> = (0..100_000u32)
        .map(|i| BlockEntry::held(BlockId::of(&i.to_be_bytes()), 1024, vec![]))
        .collect();
    assert!(blocks.len() > MAX_BLOCKS);
    let mut huge = FileRecord {
        name: "huge".into(),
        version: 1,
        size: 1024 * blocks.len() as u64,
        block_size: 1024,
        blocks,
        owner: key.public().to_peer_id(),
        owner_key: Vec::new(),
        created_ms: now_ms(),
        modified_ms: now_ms(),
        tombstone: false,
        sealed: None,
        signature: Vec::new(),
    };
    huge.sign(&key).expect("sign");
    let before = refused_total(&swarm).await;
    for node in swarm.running() {
        let r = adv
            .meta(
                &node.addr(),
                MetaRequest::Publish {
                    record: huge.clone(),
                },
            )
            .await;
        assert!(is_refusal(&r), "{r:?}");
        let data = b"spam".to_vec();
        let r = adv
            .block(
                &node.addr(),
                BlockRequest::Put {
                    id: BlockId::of(&data),
                    file: "n".repeat(7 << 20),
                    data,
                },
            )
            .await;
        assert!(
            matches!(r, Ok(BlockResponse::Error { .. })) || r.is_err(),
            "{r:?}"
        );
    }
    assert!(refused_total(&swarm).await > before);
    for node in swarm.running() {
        assert!(node
            .store()
            .records
            .get(&FileKey::for_name("huge"))
            .expect("read")
            .is_none());
    }
    let c = swarm.client(1).await;
    c.put_bytes("fine", b"still serving").await.expect("put");
    every_node_reads(&swarm, "fine", b"still serving").await;
    swarm.shutdown().await;
}

/// Finding 8: blocks trickling in over three grace periods. The put is either readable
/// after it is acknowledged, or refused; never acknowledged and unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_upload_is_readable_or_refused() {
    let swarm = TestSwarm::start_with(4, 3, quick()).await;
    let writer = swarm.client(0).await.with_block_size(64 * 1024);
    let data = random_bytes(3 * 64 * 1024, 8);
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    let feed = data.clone();
    let trickle = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        for chunk in feed.chunks(64 * 1024) {
            tx.write_all(chunk).await.expect("feed");
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    });
    let outcome = writer.put("slow", rx, None).await;
    trickle.await.expect("feeder");
    match outcome {
        Ok(put) => {
            assert_eq!(put.size, data.len() as u64);
            every_node_reads(&swarm, "slow", &data).await;
        }
        Err(e) => {
            // Refused: and then nothing half-done is visible.
            assert!(
                matches!(
                    swarm.client(1).await.get_bytes("slow").await,
                    Err(swarmstore::Error::NotFound(_))
                ),
                "a refused put ({e}) left something readable"
            );
        }
    }
    swarm.shutdown().await;
}

/// Finding 4: a peer that claims in its load reports to be a file's delegate is never asked
/// for that file's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_self_appointed_delegate_is_ignored() {
    let fast: Tune = Arc::new(|c| c.report_interval(Duration::from_millis(300)));
    let swarm = TestSwarm::start_with(5, 3, fast).await;
    let name = "hot";
    let key = FileKey::for_name(name);
    let set = closest_to(&key.0, &swarm.peer_ids());
    let liar = swarm.index_of(&set[4]); // not in the replica set
    let owner = swarm.client(0).await;
    owner.put_bytes(name, b"v1").await.expect("put");
    for seq in 1..20u64 {
        let report = LoadReport {
            seq: 1_000 + seq,
            at_ms: now_ms(),
            load: 0.0,
            bandwidth: 1e9,
            meta_rps: 0.0,
            block_rps: 0.0,
            block_bps: 0.0,
            inflight: 0,
            used: 0,
            capacity: 1 << 40,
            zone: None,
            role: RoleTag::Follower,
            term: 0,
            served_blocks: 0,
            hot_blocks: vec![],
            hot_files: vec![],
            extras: vec![],
            delegations: vec![(key, u64::MAX)],
            outcomes: vec![],
        };
        let _ = swarm
            .node(liar)
            .publish_raw("load", gossip::encode_report(&report))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reads_before = swarm.node(liar).served().record_reads;
    owner
        .update(name, &b"v2"[..], Some(1), None)
        .await
        .expect("update");
    for _ in 0..3 {
        every_node_reads(&swarm, name, b"v2").await;
    }
    assert_eq!(
        swarm.node(liar).served().record_reads,
        reads_before,
        "nobody read the file through the self-appointed delegate"
    );
    swarm.shutdown().await;
}

/// Finding 6 (authority part): `SetHolders` from a stranger that adds itself and removes the
/// real holders is refused; the list stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_cannot_rewrite_holder_lists() {
    let swarm = TestSwarm::start(4, 3).await;
    let owner = swarm.client(0).await;
    let data = random_bytes(100_000, 6);
    owner.put_bytes("listed", &data).await.expect("put");
    let info = owner.stat("listed").await.expect("stat");
    let block = info.blocks[0].id;
    let holders = info.blocks[0].holders.clone();
    let mut adv = Adversary::new();
    let me = adv.peer_id();
    for node in swarm.running() {
        let r = adv
            .meta(
                &node.addr(),
                MetaRequest::SetHolders {
                    name: "listed".into(),
                    block,
                    add: vec![me],
                    remove: holders.clone(),
                },
            )
            .await;
        assert!(is_refusal(&r), "{r:?}");
    }
    let after = owner.stat("listed").await.expect("stat");
    assert_eq!(after.blocks[0].holders.len(), holders.len());
    assert!(!after.blocks[0].holders.contains(&me));
    every_node_reads(&swarm, "listed", &data).await;
    swarm.shutdown().await;
}

/// Finding 7: hand-over on a claim. Three liars whose ids are closer to a file's key than
/// every honest node join and claim, in every digest, to hold the record; they hold nothing.
/// The honest members must not drop their copies on that word: a hand-over needs the state
/// read back, verified, from a majority of the new set. The liars can withhold the file while
/// they stand; once they go, it reads back from every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hand_over_is_not_taken_on_a_claim() {
    let quick: Tune = Arc::new(|c| c.sync_interval(Duration::from_millis(300)));
    let mut swarm = TestSwarm::start_with(4, 3, quick).await;
    let c = swarm.client(0).await;
    let data = b"a small file, kept inline in its record".to_vec();
    c.put_bytes("handed.txt", &data).await.expect("put");
    let key = FileKey::for_name("handed.txt");
    let held_by = |swarm: &TestSwarm| -> Vec<usize> {
        (0..4)
            .filter(|i| {
                swarm
                    .node(*i)
                    .store()
                    .records
                    .get(&key)
                    .ok()
                    .flatten()
                    .is_some()
            })
            .collect()
    };
    // The root copies to the rest of the set in the background: wait for all three.
    let three = eventually(Duration::from_secs(10), || {
        let n = held_by(&swarm).len();
        async move { n == 3 }
    })
    .await;
    assert!(three, "three replicas before the liars come");
    let honest = held_by(&swarm);

    // Ground ids: each closer to the key than any honest node.
    let point = key.0;
    let nearest = swarm
        .peer_ids()
        .iter()
        .map(|p| swarmstore::ids::distance(&point, &swarmstore::ids::peer_point(p)))
        .min()
        .expect("peers");
    // Liars from their first moment: a liar that answered honestly while it started would
    // make a hand-over to it legitimate.
    let tune = swarm.tune.clone();
    swarm.tune = Arc::new(move |c| {
        let mut c = tune(c);
        c.lie_about_records = true;
        c
    });
    for i in 4..7 {
        let key = loop {
            let k = Keypair::generate_ed25519();
            let d = swarmstore::ids::distance(
                &point,
                &swarmstore::ids::peer_point(&k.public().to_peer_id()),
            );
            if d < nearest {
                break k;
            }
        };
        std::fs::create_dir_all(swarm.data_dir(i)).expect("data dir");
        std::fs::write(
            swarm.data_dir(i).join("identity.key"),
            key.to_protobuf_encoding().expect("encode key"),
        )
        .expect("write key");
        swarm.start_node(i).await;
    }
    swarm.wait_mesh().await;
    // Many sync rounds: each honest member sees a full new set that claims the record.
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The liars join one by one. After the first, the set is that liar and two honest
    // members, so the third honest member may hand over legitimately: a majority of that set
    // (the two honest ones) really holds the record, read back and verified. Once all three
    // liars stand, the set is theirs and only their word is left: no further copy may go.
    let now = held_by(&swarm);
    println!("honest copies before the liars {honest:?}, after {now:?}");
    assert!(
        now.iter().all(|i| honest.contains(i)) && now.len() >= 2,
        "an honest member dropped its copy on the liars' word: {honest:?} -> {now:?}"
    );
    for i in 4..7 {
        swarm.stop_node(i).await;
    }
    let back = eventually(Duration::from_secs(30), || async {
        for i in 0..4 {
            let Ok(client) =
                Client::connect(swarm.node(i).addr(), Keypair::generate_ed25519()).await
            else {
                return false;
            };
            match client.get_bytes("handed.txt").await {
                Ok(got) if got == data => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    assert!(
        back,
        "once the liars are gone, every node reads the file again"
    );
    swarm.shutdown().await;
}
