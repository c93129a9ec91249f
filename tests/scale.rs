//! Scale: 100 nodes in one process on loopback (250 with SWARMSTORE_SCALE=250). All join; a
//! file put through one node is readable through others; the root is the true closest peer.
//! Prints memory per node and Kademlia lookup cost as the swarm grows. The assertions are about
//! correctness only; the printed figures are for the note and the benchmark table.
//!
//! Ignored in the default run (it takes minutes on two cores); `.ci/run` runs it explicitly.

mod common;

use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use swarmstore::{Client, Node, NodeConfig};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes on two cores; run by .ci/run"]
async fn a_hundred_nodes_in_one_process() {
    common::init_tracing();
    let max: usize = std::env::var("SWARMSTORE_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let steps: Vec<usize> = [10, 50, 100, 250]
        .into_iter()
        .filter(|n| *n <= max)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let base_rss = rss_bytes();
    let mut nodes: Vec<Node> = Vec::new();
    println!(
        "{:>6} {:>12} {:>14} {:>14} {:>12}",
        "nodes", "MiB/node", "lookup reqs", "lookup ms", "join s"
    );
    for &n in &steps {
        let t = Instant::now();
        while nodes.len() < n {
            let i = nodes.len();
            // Bootstrap through a few earlier nodes, as a real joiner with a bootstrap list does.
            let boot: Vec<_> = [0, i / 2, i.saturating_sub(1)]
                .iter()
                .filter(|j| **j < i)
                .map(|j| nodes[*j].addr())
                .collect();
            // Two shared cores run every node of the swarm: a relaxed liveness bound and report
            // interval keep CPU stalls from reading as dead peers (this test is about joining,
            // routing and memory, not balancing).
            let cfg = NodeConfig::local(dir.path().join(format!("n{i}")))
                .bootstrap(boot)
                .replication(3)
                .liveness(Duration::from_secs(60))
                .report_interval(Duration::from_secs(20));
            nodes.push(Node::start(cfg).await.expect("node starts"));
        }
        // Everyone knows enough of the swarm to route (a full table below K, K above).
        let want = (n - 1).min(libp2p::kad::K_VALUE.get());
        for (i, node) in nodes.iter().enumerate() {
            assert!(
                node.wait_for_peers(want, Duration::from_secs(120)).await,
                "node {i} of {n} knows only {} peers",
                node.live_peers().len()
            );
        }
        let join = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let per_node = (rss_bytes().saturating_sub(base_rss)) as f64 / n as f64 / (1 << 20) as f64;

        let mut reqs = Vec::new();
        let mut ms = Vec::new();
        for k in 0..20 {
            let from = &nodes[(k * 7919) % n];
            let l = from
                .lookup(&format!("probe-{n}-{k}"))
                .await
                .expect("lookup");
            reqs.push(f64::from(l.requests));
            ms.push(l.duration.map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0));
        }
        println!(
            "{n:>6} {per_node:>12.1} {:>14.1} {:>14.1} {:>12.1}",
            median(reqs),
            median(ms),
            join.as_secs_f64()
        );

        // Correctness: put through one node, read through three others, root is the closest.
        let name = format!("scale-{n}");
        let data = common::random_bytes(3 * 1024 * 1024 + 5, n as u64);
        let writer = Client::connect(nodes[0].addr(), Keypair::generate_ed25519())
            .await
            .unwrap();
        let put = writer.put_bytes(&name, &data).await.expect("put");
        let peers: Vec<_> = nodes.iter().map(|x| x.peer_id()).collect();
        let expected = common::closest_to(&swarmstore::ids::FileKey::for_name(&name).0, &peers)[0];
        assert_eq!(
            put.root, expected,
            "{n} nodes: the root is the closest peer to the key"
        );
        for r in [n / 3, n / 2, n - 1] {
            let reader = Client::connect(nodes[r].addr(), Keypair::generate_ed25519())
                .await
                .unwrap();
            assert!(
                reader.get_bytes(&name).await.expect("get") == data,
                "read through node {r}"
            );
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
}
