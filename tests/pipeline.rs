//! The put's write pipeline (`BlockRequest::PutChain`): the client sends each block once, to
//! the first of its R holders, and each holder stores its copy while passing the block on to
//! the next. A holder forwards only to peers it would itself place the block on, so a client
//! cannot use an honest holder to push bytes at nodes that would refuse them from the client.

mod common;

use common::adversary::Adversary;
use common::*;
use swarmstore::ids::{peer_point, BlockId};
use swarmstore::protocol::block::{BlockRequest, BlockResponse};

/// The swarm's placement order for a block (closest peer points by XOR first, as
/// `placement::holder_order` with every node roomy).
fn placement_order(swarm: &TestSwarm, id: &BlockId) -> Vec<libp2p::PeerId> {
    let target = id.kad_point();
    let mut peers = swarm.peer_ids();
    peers.sort_by_key(|p| {
        let point = peer_point(p);
        let d: Vec<u8> = point
            .iter()
            .zip(target.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        (d, *p)
    });
    peers
}

/// Block requests of `kind` that `node` has served so far (its Prometheus counter).
fn served(node: &swarmstore::Node, kind: &str) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    node.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("metrics encode");
    let kind = format!("kind=\"{kind}\"");
    text.lines()
        .filter(|l| l.contains("requests_served") && l.contains("protocol=\"block\""))
        .filter(|l| l.contains(&kind))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_sends_each_block_once_and_holders_pass_it_on() {
    let n = 5;
    let swarm = TestSwarm::start(n, 3).await;
    let client = swarm.client(0).await;
    let data = random_bytes((8 << 20) + 5, 11);
    let put = client.put_bytes("piped.bin", &data).await.expect("put");
    assert_eq!(put.under_replicated, 0);
    let chained: u64 = (0..n).map(|i| served(swarm.node(i), "put-chain")).sum();
    let direct: u64 = (0..n).map(|i| served(swarm.node(i), "put")).sum();
    // 9 blocks, each received by R = 3 holders: once from the client, twice along the chain.
    assert_eq!(chained, 9 * 3, "put-chain requests served");
    assert_eq!(
        direct, 0,
        "no block went to a holder straight from the client twice"
    );
    let info = client.stat("piped.bin").await.expect("stat");
    for b in &info.blocks {
        assert_eq!(b.holders.len(), 3, "block {} holders", b.id);
        for h in &b.holders {
            assert!(swarm.has_block_file(swarm.index_of(h), &b.id));
        }
    }
    let got = swarm
        .client(3)
        .await
        .get_bytes("piped.bin")
        .await
        .expect("get");
    assert!(got == data, "bytes differ");
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_goes_only_to_peers_the_holder_would_place_the_block_on() {
    // 8 nodes, R = 3: a block's first R + 3 placement targets leave two nodes out.
    let n = 8;
    let swarm = TestSwarm::start(n, 3).await;
    let data = random_bytes(256 << 10, 12);
    let id = BlockId::of(&data);
    let order = placement_order(&swarm, &id);
    let first = order[0];
    let outsiders = order[6..].to_vec();
    assert_eq!(outsiders.len(), 2);

    // A stranger asks the first target to store the block and pass it to the outsiders.
    let mut adv = Adversary::new();
    let addr = swarm.node(swarm.index_of(&first)).addr();
    let reply = adv
        .block(
            &addr,
            BlockRequest::PutChain {
                id,
                file: "stray.bin".into(),
                data: data.clone(),
                then: outsiders.clone(),
            },
        )
        .await;
    match reply {
        Ok(BlockResponse::StoredBy { holders }) => assert_eq!(holders, vec![first]),
        other => panic!("expected StoredBy [first], got {other:?}"),
    }
    assert!(swarm.has_block_file(swarm.index_of(&first), &id));
    for o in &outsiders {
        assert!(
            !swarm.has_block_file(swarm.index_of(o), &id),
            "the holder pushed the block at a peer outside its placement"
        );
        assert_eq!(served(swarm.node(swarm.index_of(o)), "put-chain"), 0);
    }

    // The same chain through placement targets is followed, and the answer lists them all.
    let data = random_bytes(256 << 10, 13);
    let id = BlockId::of(&data);
    let order = placement_order(&swarm, &id);
    let addr = swarm.node(swarm.index_of(&order[0])).addr();
    let reply = adv
        .block(
            &addr,
            BlockRequest::PutChain {
                id,
                file: "placed.bin".into(),
                data,
                then: order[1..3].to_vec(),
            },
        )
        .await;
    match reply {
        Ok(BlockResponse::StoredBy { holders }) => assert_eq!(holders, order[..3].to_vec()),
        other => panic!("expected StoredBy of the three targets, got {other:?}"),
    }
    for p in &order[..3] {
        assert!(swarm.has_block_file(swarm.index_of(p), &id));
    }
    swarm.shutdown().await;
}
