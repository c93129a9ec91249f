//! Chaos with separate processes: 10 nodes, R = 3, 50 files of mixed sizes, planner off. Kill two, then two
//! more, then add three: every file always reads back byte-identical, replication comes back
//! by itself, and records move to the peers that join closer to their keys.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::procs::NodeProc;
use common::random_bytes;
use libp2p::identity::Keypair;
use libp2p::PeerId;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use swarmstore::Client;

const NODE_ARGS: &[&str] = &[
    "--liveness",
    "3s",
    "--repair-interval",
    "1s",
    "--sync-interval",
    "1s",
    // Repair alone: its bytes are checked against what the kills took, and a balancing move
    // finishing meanwhile re-creates a lost copy that repair then need not (seen in CI). Moves
    // under churn and R + 1 trimming have their own tests (moves.rs, durability.rs).
    "--no-planner",
];

struct Cluster {
    _tmp: tempfile::TempDir,
    nodes: Vec<NodeProc>,
    peers: Vec<PeerId>,
    key: Keypair,
}

impl Cluster {
    fn addr(&self, i: usize) -> String {
        self.nodes[i].addr()
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_running())
            .collect()
    }

    async fn client(&self, i: usize) -> Client {
        Client::connect(self.addr(i).parse().unwrap(), self.key.clone())
            .await
            .expect("connect")
    }

    fn add_node(&mut self, tmp: &std::path::Path) {
        let i = self.nodes.len();
        let boot: Vec<String> = self
            .live()
            .into_iter()
            .take(2)
            .map(|j| self.addr(j))
            .collect();
        let node = NodeProc::start(&tmp.join(format!("n{i}")), &boot, NODE_ARGS);
        self.peers.push(peer_of(&node.addr()));
        self.nodes.push(node);
    }

    /// Repaired bytes reported by each of `nodes`.
    async fn repaired_bytes(&self, nodes: &[usize]) -> HashMap<usize, u64> {
        let mut out = HashMap::new();
        for i in nodes {
            if let Ok(s) = self.client(*i).await.status().await {
                out.insert(*i, s.repair.repaired_bytes);
            }
        }
        out
    }
}

fn peer_of(addr: &str) -> PeerId {
    addr.rsplit('/').next().unwrap().parse().unwrap()
}

async fn read_all(client: &Client, files: &[(String, Vec<u8>)]) {
    for (name, data) in files {
        let got = client
            .get_bytes(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name}: bytes differ");
    }
}

/// Waits until every file has R record replicas and every block R holders, all live.
async fn wait_replicated(client: &Client, files: &[(String, Vec<u8>)], live: &HashSet<PeerId>) {
    let start = Instant::now();
    loop {
        // The first file still short of R live copies, and why: the failure message.
        let mut short = None;
        for (name, _) in files {
            match client.stat(name).await {
                Ok(info) => {
                    // An inline file's copies are its record replicas.
                    if info.replicas.len() != 3 {
                        short = Some(format!("{name}: {} record replicas", info.replicas.len()));
                    } else if !info.inline {
                        if let Some((i, b)) = info.blocks.iter().enumerate().find(|(_, b)| {
                            b.holders.len() != 3 || !b.holders.iter().all(|h| live.contains(h))
                        }) {
                            let dead = b.holders.iter().filter(|h| !live.contains(h)).count();
                            short = Some(format!(
                                "{name}: block {i} has {} holders, {dead} of them dead",
                                b.holders.len()
                            ));
                        }
                    }
                }
                Err(e) => short = Some(format!("{name}: stat failed: {e}")),
            }
            if short.is_some() {
                break;
            }
        }
        let Some(short) = short else { return };
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "replication not restored in 120 s ({short})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Bytes of the replicas the kill takes below R: the least any repair must copy. (A block on
/// R + 1 holders, a move in the middle, loses one at no cost.)
async fn lost_replica_bytes(
    client: &Client,
    files: &[(String, Vec<u8>)],
    killed: &[PeerId],
) -> u64 {
    let mut total = 0;
    for (name, _) in files {
        let info = client.stat(name).await.unwrap();
        for b in info.blocks {
            let lost = b.holders.iter().filter(|h| killed.contains(h)).count();
            let left = b.holders.len() - lost;
            // (A block short before the kill may be repaired before it too: only the copies
            // the kill took count.)
            total += u64::from(b.len) * lost.min(3usize.saturating_sub(left)) as u64;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_ten_processes_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7),
    );
    let mut cluster = Cluster {
        _tmp: tempfile::tempdir().unwrap(),
        nodes: Vec::new(),
        peers: Vec::new(),
        key: Keypair::generate_ed25519(),
    };
    for _ in 0..10 {
        cluster.add_node(tmp.path());
    }
    let c0 = cluster.client(0).await;
    let ok = common::eventually(Duration::from_secs(30), || async {
        c0.status()
            .await
            .map(|s| s.peers.iter().filter(|p| p.live).count() >= 9)
            .unwrap_or(false)
    })
    .await;
    assert!(ok, "the ten nodes find each other");

    // 50 files, 0 B to 8 MiB: edge sizes first, then random.
    let mut sizes = vec![0, 1, 4096, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 8 << 20];
    while sizes.len() < 50 {
        sizes.push(rng.gen_range(0..(8 << 20)) >> rng.gen_range(0..6));
    }
    let mut files = Vec::new();
    let t = Instant::now();
    for (i, size) in sizes.iter().enumerate() {
        let name = format!("chaos/{i}-{size}");
        let data = random_bytes(*size, 1000 + i as u64);
        c0.put_bytes(&name, &data).await.unwrap();
        files.push((name, data));
    }
    let total: usize = sizes.iter().sum();
    eprintln!(
        "put 50 files ({} MiB) in {:.1} s",
        total >> 20,
        t.elapsed().as_secs_f64()
    );

    for round in 1..=2 {
        // Kill two random nodes (never node 0, the test's access node).
        let mut candidates: Vec<usize> = cluster.live().into_iter().filter(|i| *i != 0).collect();
        candidates.shuffle(&mut rng);
        let victims = &candidates[..2];
        let killed: Vec<PeerId> = victims.iter().map(|i| cluster.peers[*i]).collect();
        let minimum = lost_replica_bytes(&c0, &files, &killed).await;
        // Repair counters live on the survivors: compare each one with itself.
        let survivors: Vec<usize> = cluster
            .live()
            .into_iter()
            .filter(|i| !victims.contains(i))
            .collect();
        let before = cluster.repaired_bytes(&survivors).await;
        for v in victims {
            cluster.nodes[*v].kill9();
        }
        let killed_at = Instant::now();
        read_all(&c0, &files).await;
        eprintln!(
            "round {round}: killed {victims:?}; all 50 files read back in {:.1} s",
            killed_at.elapsed().as_secs_f64()
        );
        let live: HashSet<PeerId> = cluster.live().iter().map(|i| cluster.peers[*i]).collect();
        wait_replicated(&c0, &files, &live).await;
        let restored = killed_at.elapsed();
        let after = cluster.repaired_bytes(&survivors).await;
        let moved: u64 = survivors
            .iter()
            .map(|i| after.get(i).copied().unwrap_or(0) - before.get(i).copied().unwrap_or(0))
            .sum();
        eprintln!(
            "round {round}: full replication restored {:.1} s after the kill; repair moved {} bytes, minimum {} ({:.2}x)",
            restored.as_secs_f64(),
            moved,
            minimum,
            if minimum > 0 { moved as f64 / minimum as f64 } else { 1.0 }
        );
        assert!(
            moved >= minimum,
            "every lost replica was re-created (moved {moved} < {minimum})"
        );
        read_all(&c0, &files).await;
    }

    // Three fresh nodes: records whose keys they are closest to move to them.
    for _ in 0..3 {
        cluster.add_node(tmp.path());
    }
    let newcomers: HashSet<PeerId> = cluster.peers[10..].iter().copied().collect();
    let live: Vec<PeerId> = cluster.live().iter().map(|i| cluster.peers[*i]).collect();
    let mut expect: HashMap<String, PeerId> = HashMap::new();
    for (name, _) in &files {
        let root = common::closest_to(&swarmstore::ids::FileKey::for_name(name).0, &live)[0];
        if newcomers.contains(&root) {
            expect.insert(name.clone(), root);
        }
    }
    eprintln!("{} of 50 records now belong to a newcomer", expect.len());
    let t = Instant::now();
    let moved = common::eventually(Duration::from_secs(90), || async {
        for (name, root) in &expect {
            match c0.stat(name).await {
                Ok(info) if info.root == *root => {}
                _ => return false,
            }
        }
        true
    })
    .await;
    assert!(moved, "stat shows the new roots");
    eprintln!(
        "records handed to newcomers in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    read_all(&c0, &files).await;
    let newcomer_client = cluster.client(12).await;
    read_all(&newcomer_client, &files).await;
}
