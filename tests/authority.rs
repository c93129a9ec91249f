//! Authority on real nodes: what a wrong manager or a lying peer can get.
//!
//! A manager that holds a legitimate term and still decides wrong may waste bounded work,
//! never data: each node applying a decision releases a copy only when R other listed holders
//! prove possession (a fresh challenge over the bytes), so moves and drops that would strip
//! every holder of a block leave it with its copies, and every get stays byte-correct. Peers
//! that claim extra replicas in their load reports, with no decision behind the claim, are
//! never offered to readers.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, random_bytes, TestSwarm, Tune};
use libp2p::PeerId;
use swarmstore::ids::BlockId;
use swarmstore::protocol::gossip::{
    self as wire, Decision, DecisionBatch, ExtraHeld, Item, LoadReport, RoleTag,
};
use swarmstore::NodeConfig;

const T: Duration = Duration::from_millis(300);

fn fast() -> Tune {
    Arc::new(|c: NodeConfig| c.report_interval(T).liveness(Duration::from_secs(2)))
}

/// Nodes of the swarm with a copy of `id` on disk.
fn copies(swarm: &TestSwarm, n: usize, id: &BlockId) -> Vec<usize> {
    (0..n).filter(|i| swarm.has_block_file(*i, id)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_manager_cannot_strip_a_block_of_its_copies() {
    let n = 6;
    let swarm = TestSwarm::start_with(n, 3, fast()).await;
    let manager = eventually(Duration::from_secs(30), || async {
        swarm.node(0).manager().is_some() && swarm.running().filter(|x| x.is_manager()).count() == 1
    })
    .await;
    assert!(manager, "a manager is elected");
    let (m, term) = swarm.node(0).manager().expect("a manager");
    let mgr = swarm.node(swarm.index_of(&m));

    let client = swarm.client(0).await;
    let data = random_bytes(1 << 20, 3);
    client.put_bytes("precious.bin", &data).await.expect("put");
    let info = client.stat("precious.bin").await.expect("stat");
    let block = info.blocks[0].clone();
    assert_eq!(block.holders.len(), 3);
    let holders: Vec<PeerId> = block.holders.clone();
    // Not the manager either: a node does not receive its own gossip, and the raw publish
    // below (unlike a real manager's) does not take the batch in locally.
    let target = swarm
        .peer_ids()
        .into_iter()
        .find(|p| !holders.contains(p) && *p != m)
        .expect("a node that neither holds the block nor manages");
    let mv = |from: PeerId| Item {
        decision: Decision::Move {
            block: block.id,
            file: info.key,
            from,
            to: target,
            bytes: u64::from(block.len),
        },
        name: "precious.bin".into(),
    };
    let publish = |seq: u64, items: Vec<Item>| {
        let batch = DecisionBatch {
            term,
            seq,
            now_ms: swarmstore::record::now_ms(),
            items,
        };
        mgr.publish_raw("decisions", wire::encode(&batch).expect("encodes"))
    };

    // Every holder is told to move its copy to one target, and the target's copy is then
    // lost (a liar: listed, holding nothing). Drops of the base copies come along.
    let mut items: Vec<Item> = holders.iter().map(|h| mv(*h)).collect();
    items.extend(holders.iter().map(|h| Item {
        decision: Decision::Drop {
            block: block.id,
            file: info.key,
            at: *h,
        },
        name: "precious.bin".into(),
    }));
    publish(1 << 40, items.clone()).await.expect("published");

    // The target pulls a copy and is listed; one source lets its copy go, and no more than
    // the proven copies allow: never fewer than R on disk. Like a real manager, which issues
    // its decisions again each round, the batch goes out again every two seconds (gossip
    // right after start may miss a node).
    let target_idx = swarm.index_of(&target);
    let original: Vec<usize> = holders.iter().map(|h| swarm.index_of(h)).collect();
    let mut least = usize::MAX;
    let mut moved = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = Instant::now();
    let mut resent = 0;
    while Instant::now() < deadline {
        let have = copies(&swarm, n, &block.id);
        least = least.min(have.len());
        if have.contains(&target_idx) && original.iter().any(|i| !have.contains(i)) {
            moved = true;
            break;
        }
        if sent.elapsed() > Duration::from_secs(2) {
            // A new batch number: a source that gave up on the first waits again.
            resent += 1;
            publish((1 << 40) + resent, items.clone())
                .await
                .expect("published");
            sent = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !moved {
        // What each node made of the decisions, for whoever reads the failure.
        for (i, node) in swarm.running().enumerate() {
            let st = node.balance_status();
            let mut seen = std::collections::BTreeSet::new();
            let rows: Vec<String> = st
                .decisions
                .iter()
                .filter(|d| !d.state.starts_with("skipped: no extra copy"))
                .map(|d| format!("{} {:?}->{:?}: {}", d.kind, d.from, d.to, d.state))
                .filter(|r| seen.insert(r.clone()))
                .collect();
            eprintln!(
                "node {i} ({}): term {} ignored {:?} decisions {rows:#?}",
                node.peer_id(),
                st.term,
                st.ignored
            );
        }
    }
    assert!(moved, "one source moved its copy to the target");
    let until = Instant::now() + T * 12;
    while Instant::now() < until {
        least = least.min(copies(&swarm, n, &block.id).len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("copies on disk never fewer than {least}");
    assert!(least >= 3, "a block fell to {least} copies on disk");

    // Now the target turns liar: its copy is gone from its disk, it stays listed. The same
    // decisions again, from every holder: none may count the target's claim.
    let hex = block.id.to_hex();
    let path = swarm
        .data_dir(target_idx)
        .join("blocks")
        .join(&hex[..2])
        .join(&hex);
    std::fs::write(&path, b"not the block").expect("overwrite the target's copy");
    let real = |swarm: &TestSwarm| -> Vec<usize> {
        copies(swarm, n, &block.id)
            .into_iter()
            .filter(|i| *i != target_idx)
            .collect()
    };
    let sources = real(&swarm);
    let floor = sources.len().min(3);
    let items: Vec<Item> = sources
        .iter()
        .map(|i| mv(swarm.node(*i).peer_id()))
        .collect();
    publish(1 << 41, items).await.expect("published");
    let until = Instant::now() + T * 20;
    while Instant::now() < until {
        let now = real(&swarm);
        assert!(
            now.len() >= floor,
            "a source released its copy on the word of a liar: {sources:?} -> {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Reads stay byte-correct from every node.
    for i in 0..n {
        let got = swarm
            .client(i)
            .await
            .get_bytes("precious.bin")
            .await
            .expect("get");
        assert!(got == data, "node {i}: bytes differ");
    }
    // No node was made to delete a proven-necessary copy: the releases that were refused
    // are visible as failed or pending moves, never as a lost block.
    let status = client.status().await.expect("status");
    assert_eq!(status.repair.lost, 0, "no block lost");
    swarm.shutdown().await;
}

/// Block `Get` requests `node` has served so far (its Prometheus counter).
fn block_gets(node: &swarmstore::Node) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    node.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
    text.lines()
        .filter(|l| l.contains("requests_served") && l.contains("protocol=\"block\""))
        .filter(|l| l.contains("kind=\"get\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn extra_replicas_claimed_without_a_decision_are_never_read_from() {
    let n = 7;
    let swarm = TestSwarm::start_with(n, 3, fast()).await;
    let client = swarm.client(0).await;
    let data = random_bytes((1 << 20) - 1, 11);
    client.put_bytes("claimed.bin", &data).await.expect("put");
    let info = client.stat("claimed.bin").await.expect("stat");
    let listed: Vec<PeerId> = info.blocks.iter().flat_map(|b| b.holders.clone()).collect();

    let time_gets = |rounds: usize| {
        let client = &client;
        let data = &data;
        async move {
            let mut took = Vec::new();
            for _ in 0..rounds {
                let t = Instant::now();
                let got = client.get_bytes("claimed.bin").await.expect("get");
                took.push(t.elapsed());
                assert!(got == *data, "bytes differ");
            }
            took.sort();
            took[took.len() / 2]
        }
    };
    let holder_gets = || -> u64 {
        (0..n)
            .filter(|i| listed.contains(&swarm.node(*i).peer_id()))
            .map(|i| block_gets(swarm.node(i)))
            .sum()
    };
    let served_before = holder_gets();
    let normal = time_gets(5).await;
    assert!(
        holder_gets() >= served_before + 5,
        "the counter sees block gets"
    );

    // Three peers that hold none of the file claim every block as an extra replica, with an
    // idle load, round after round: were claims believed, they would be read from first.
    let claimers: Vec<usize> = (1..n)
        .filter(|i| !listed.contains(&swarm.node(*i).peer_id()))
        .take(3)
        .collect();
    assert_eq!(claimers.len(), 3, "three nodes outside the holder lists");
    let before: Vec<u64> = claimers
        .iter()
        .map(|i| block_gets(swarm.node(*i)))
        .collect();
    let extras: Vec<ExtraHeld> = info
        .blocks
        .iter()
        .map(|b| ExtraHeld {
            id: b.id,
            file: "claimed.bin".into(),
            size: u64::from(b.len),
            base: b.holders.clone(),
        })
        .collect();
    for round in 0..6u64 {
        for i in &claimers {
            let report = LoadReport {
                seq: (1 << 40) + round,
                at_ms: swarmstore::record::now_ms(),
                load: 0.0,
                bandwidth: 1e12,
                meta_rps: 0.0,
                block_rps: 0.0,
                block_bps: 0.0,
                inflight: 0,
                // Full: no capacity move would pick them, so only the claim could.
                used: 1 << 40,
                capacity: 1 << 40,
                zone: None,
                role: RoleTag::Follower,
                term: 0,
                served_blocks: 0,
                hot_blocks: Vec::new(),
                hot_files: Vec::new(),
                extras: extras.clone(),
                delegations: Vec::new(),
                outcomes: Vec::new(),
            };
            swarm
                .node(*i)
                .publish_raw("load", wire::encode_report(&report))
                .await
                .expect("published");
        }
        tokio::time::sleep(T).await;
    }
    let claimed = time_gets(5).await;
    let after: Vec<u64> = claimers
        .iter()
        .map(|i| block_gets(swarm.node(*i)))
        .collect();
    println!("median get of 1 MiB: {normal:?} normally, {claimed:?} under false claims");
    assert_eq!(
        before, after,
        "a claimer was asked for a block it only claimed"
    );
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claimed_copy_that_cannot_be_proven_is_repaired() {
    let quick: Tune = Arc::new(|c: NodeConfig| c.repair_interval(Duration::from_millis(500)));
    let n = 6;
    let swarm = TestSwarm::start_with(n, 3, quick).await;
    let client = swarm.client(0).await;
    let data = random_bytes((1 << 20) - 1, 21);
    client.put_bytes("audited.bin", &data).await.expect("put");
    let info = client.stat("audited.bin").await.expect("stat");
    let block = info.blocks[0].clone();
    // One holder loses its copy behind the node's back: its index still answers `Has`.
    let liar = swarm.index_of(&block.holders[0]);
    let hex = block.id.to_hex();
    let path = swarm
        .data_dir(liar)
        .join("blocks")
        .join(&hex[..2])
        .join(&hex);
    std::fs::remove_file(&path).expect("remove the copy");
    let restored = eventually(Duration::from_secs(30), || async {
        copies(&swarm, n, &block.id).len() >= 3
            && client.stat("audited.bin").await.is_ok_and(|i| {
                // Every listed holder really has it (repair may pick the same node again).
                let listed = &i.blocks[0].holders;
                listed.len() == 3
                    && listed
                        .iter()
                        .all(|p| swarm.has_block_file(swarm.index_of(p), &block.id))
            })
    })
    .await;
    assert!(restored, "the unproven copy is replaced by a real one");
    assert!(
        swarm
            .client(3)
            .await
            .get_bytes("audited.bin")
            .await
            .expect("get")
            == data
    );
    swarm.shutdown().await;
}
