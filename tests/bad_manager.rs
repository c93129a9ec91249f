//! A manager that holds a legitimate term and still decides wrong: its decisions may waste
//! bounded work, never data. Each node applying a decision releases a copy only when R other
//! listed holders prove possession (a fresh challenge over the bytes), so moves and drops
//! that would strip every holder of a block leave it with its copies, and every get stays
//! byte-correct.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, random_bytes, TestSwarm, Tune};
use libp2p::PeerId;
use swarmstore::ids::BlockId;
use swarmstore::protocol::gossip::{self as wire, Decision, DecisionBatch, Item};
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
    let target = swarm
        .peer_ids()
        .into_iter()
        .find(|p| !holders.contains(p))
        .expect("a node that does not hold the block");
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
    publish(1 << 40, items).await.expect("published");

    // The target pulls a copy and is listed; one source, then no other, lets its copy go:
    // after the first release only two other holders remain, and the root refuses the rest.
    let target_idx = swarm.index_of(&target);
    let mut least = usize::MAX;
    let moved = eventually(Duration::from_secs(20), || {
        let have = copies(&swarm, n, &block.id);
        least = least.min(have.len());
        let done = have.len() == 3 && have.contains(&target_idx);
        async move { done }
    })
    .await;
    assert!(moved, "one source moved its copy to the target");
    // Several rounds later the other sources still hold theirs.
    let until = Instant::now() + T * 12;
    while Instant::now() < until {
        least = least.min(copies(&swarm, n, &block.id).len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("copies on disk never fewer than {least}");
    assert!(least >= 3, "a block fell to {least} copies on disk");
    assert_eq!(copies(&swarm, n, &block.id).len(), 3);

    // Now the target turns liar: its copy is gone from its disk, it stays listed. The same
    // decisions again: no source may count the target's claim.
    let hex = block.id.to_hex();
    let path = swarm
        .data_dir(target_idx)
        .join("blocks")
        .join(&hex[..2])
        .join(&hex);
    std::fs::write(&path, b"not the block").expect("overwrite the target's copy");
    let sources: Vec<usize> = copies(&swarm, n, &block.id)
        .into_iter()
        .filter(|i| *i != target_idx)
        .collect();
    let items: Vec<Item> = sources
        .iter()
        .map(|i| mv(swarm.node(*i).peer_id()))
        .collect();
    publish((1 << 40) + 1, items).await.expect("published");
    let until = Instant::now() + T * 20;
    while Instant::now() < until {
        for i in &sources {
            assert!(
                swarm.has_block_file(*i, &block.id),
                "node {i} released its copy on the word of a liar"
            );
        }
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
