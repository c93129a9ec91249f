//! Bounded disk from strangers: a holder stores a block unasked only within a small per-peer
//! allowance, and garbage collection removes what no record references after its grace.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::adversary::Adversary;
use common::*;
use swarmstore::ids::BlockId;
use swarmstore::protocol::block::{BlockRequest, BlockResponse};

const MIB: usize = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unsolicited_blocks_are_bounded_and_collected() {
    let quick: Tune = Arc::new(|c| c.gc_grace(Duration::from_secs(1)));
    let swarm = TestSwarm::start_with(8, 3, quick).await;
    let target = 0;
    let peers = swarm.peer_ids();
    let me = swarm.node(target).peer_id();
    // Junk blocks for which placement would not pick the target (it is not among the
    // R + 3 closest peers to their ids): only the allowance can make it store them.
    let mut junk = Vec::new();
    let mut seed = 0u64;
    while junk.len() < 30 {
        seed += 1;
        let data = random_bytes(MIB, 10_000 + seed);
        let id = BlockId::of(&data);
        let rank = closest_to(&id.kad_point(), &peers)
            .iter()
            .position(|p| *p == me)
            .expect("the target is a peer");
        if rank >= 6 {
            junk.push((id, data));
        }
    }
    let mut adv = Adversary::new();
    let addr = swarm.node(target).addr();
    let (mut stored, mut refused) = (0, 0);
    for (i, (id, data)) in junk.iter().enumerate() {
        let r = adv
            .block(
                &addr,
                BlockRequest::Put {
                    id: *id,
                    file: format!("junk-{i}"),
                    data: data.clone(),
                },
            )
            .await;
        match r {
            Ok(BlockResponse::Stored) => stored += 1,
            Ok(BlockResponse::Error { message }) => {
                assert!(message.contains("allowance"), "{message}");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(stored, 16, "16 MiB of unsolicited blocks, then no more");
    assert_eq!(refused, 14);
    // Nothing references them: collected after the grace period (1 s, swept every 0.25 s).
    // The target's storage is now above the band, so the manager is offered the junk as
    // cold blocks and plans moves of it: no node may hold it for those (a move's deadline is
    // 10 rounds, 20 s here) nor copy it anywhere.
    let collected = eventually(Duration::from_secs(15), || async {
        (0..8).all(|n| junk.iter().all(|(id, _)| !swarm.has_block_file(n, id)))
    })
    .await;
    let left: Vec<usize> = (0..8)
        .map(|n| {
            junk.iter()
                .filter(|(id, _)| swarm.has_block_file(n, id))
                .count()
        })
        .collect();
    assert!(
        collected,
        "the junk is collected; junk blocks left per node: {left:?}"
    );
    // The node still takes real puts.
    let c = swarm.client(target).await;
    let data = random_bytes(3 * MIB, 1);
    c.put_bytes("real", &data).await.expect("put");
    assert!(swarm.client(3).await.get_bytes("real").await.expect("get") == data);
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_copy_no_record_lists_is_collected_once_the_listed_holders_prove_theirs() {
    let quick: Tune = Arc::new(|c| c.gc_grace(Duration::from_secs(1)));
    let swarm = TestSwarm::start_with(6, 3, quick).await;
    let c = swarm.client(0).await;
    let data = random_bytes(MIB, 77);
    c.put_bytes("real.bin", &data).await.expect("put");
    let info = c.stat("real.bin").await.expect("stat");
    let block = info.blocks[0].clone();
    let outsider = (0..6)
        .find(|i| !block.holders.contains(&swarm.node(*i).peer_id()))
        .expect("a node that is not a holder");
    // A stranger makes the outsider copy a real block of a real file: the file references
    // it, but no record lists the outsider as its holder.
    let mut adv = Adversary::new();
    let r = adv
        .block(
            &swarm.node(outsider).addr(),
            BlockRequest::Pull {
                id: block.id,
                file: "real.bin".into(),
                sources: block.holders.clone(),
            },
        )
        .await;
    assert!(matches!(r, Ok(BlockResponse::Stored)), "{r:?}");
    assert!(swarm.has_block_file(outsider, &block.id));
    let collected = eventually(Duration::from_secs(30), || async {
        !swarm.has_block_file(outsider, &block.id)
    })
    .await;
    assert!(collected, "the unlisted copy is collected");
    // The listed holders keep theirs, and the file reads back.
    for h in &block.holders {
        let i = swarm.index_of(h);
        assert!(
            swarm.has_block_file(i, &block.id),
            "holder {i} kept its copy"
        );
    }
    assert!(
        swarm
            .client(outsider)
            .await
            .get_bytes("real.bin")
            .await
            .expect("get")
            == data
    );
    swarm.shutdown().await;
}
