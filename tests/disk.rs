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
    // Nothing references them: collected after the grace period.
    let collected = eventually(Duration::from_secs(30), || async {
        junk.iter().all(|(id, _)| !swarm.has_block_file(target, id))
    })
    .await;
    assert!(collected, "the junk is collected");
    // The node still takes real puts.
    let c = swarm.client(target).await;
    let data = random_bytes(3 * MIB, 1);
    c.put_bytes("real", &data).await.expect("put");
    assert!(swarm.client(3).await.get_bytes("real").await.expect("get") == data);
    swarm.shutdown().await;
}
