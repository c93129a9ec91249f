//! Shared test harness: a swarm of real nodes in this process, on 127.0.0.1 with OS-chosen
//! ports, each with its own data dir under one temp dir.
#![allow(dead_code)]

pub mod adversary;
pub mod gossip;
pub mod netns;
pub mod procs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use swarmstore::ids::{distance, peer_point, FileKey};
use swarmstore::{Client, Node, NodeConfig};

pub type Tune = Arc<dyn Fn(NodeConfig) -> NodeConfig + Send + Sync>;

pub struct TestSwarm {
    pub dir: tempfile::TempDir,
    /// `None` while a node is stopped.
    pub nodes: Vec<Option<Node>>,
    pub replication: usize,
    pub tune: Tune,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl TestSwarm {
    pub async fn start(n: usize, replication: usize) -> Self {
        Self::start_with(n, replication, Arc::new(|c| c)).await
    }

    /// Starts `n` nodes whose config `tune` adjusts (shorter timers in tests).
    pub async fn start_with(n: usize, replication: usize, tune: Tune) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut swarm = TestSwarm {
            dir,
            nodes: Vec::new(),
            replication,
            tune,
        };
        for i in 0..n {
            swarm.start_node(i).await;
        }
        swarm.wait_mesh().await;
        swarm
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    pub fn config(&self, i: usize) -> NodeConfig {
        let bootstrap: Vec<_> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, n)| n.as_ref().map(|n| n.addr()))
            .take(2)
            .collect();
        (self.tune)(
            NodeConfig::local(self.data_dir(i))
                .bootstrap(bootstrap)
                .replication(self.replication),
        )
    }

    /// Starts node `i` (appending it, or restarting it on its data dir if it was stopped).
    pub async fn start_node(&mut self, i: usize) {
        let config = self.config(i);
        let node = Node::start(config).await.expect("node starts");
        if i < self.nodes.len() {
            self.nodes[i] = Some(node);
        } else {
            self.nodes.push(Some(node));
        }
    }

    /// Stops node `i`; its data dir stays for a restart.
    pub async fn stop_node(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Waits until every running node sees every other running node as a live storage peer.
    pub async fn wait_mesh(&self) {
        let want = self.running().count() - 1;
        for (i, n) in self.running().enumerate() {
            assert!(
                n.wait_for_peers(want, Duration::from_secs(30)).await,
                "node {i} sees only {} of {want} peers",
                n.live_peers().len()
            );
        }
    }

    pub async fn client(&self, i: usize) -> Client {
        Client::connect(self.node(i).addr(), Keypair::generate_ed25519())
            .await
            .expect("client connects")
    }

    pub async fn client_with(&self, i: usize, key: &Keypair) -> Client {
        Client::connect(self.node(i).addr(), key.clone())
            .await
            .expect("client connects")
    }

    /// Peer ids of the running nodes.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.running().map(|n| n.peer_id()).collect()
    }

    /// Index of the node with this peer id.
    pub fn index_of(&self, peer: &PeerId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.as_ref().is_some_and(|n| n.peer_id() == *peer))
            .expect("a node of this swarm")
    }

    /// The live peer closest to a file's key by XOR distance, computed independently.
    pub fn expected_root(&self, name: &str) -> PeerId {
        closest_to(&FileKey::for_name(name).0, &self.peer_ids())[0]
    }

    pub async fn shutdown(self) -> tempfile::TempDir {
        for n in self.nodes.into_iter().flatten() {
            n.shutdown().await;
        }
        self.dir
    }

    /// Whether node `i` has a block file for `id` on disk.
    pub fn has_block_file(&self, i: usize, id: &swarmstore::ids::BlockId) -> bool {
        let hex = id.to_hex();
        self.data_dir(i)
            .join("blocks")
            .join(&hex[..2])
            .join(hex)
            .exists()
    }
}

pub fn closest_to(key: &[u8; 32], peers: &[PeerId]) -> Vec<PeerId> {
    let mut v: Vec<_> = peers
        .iter()
        .map(|p| (distance(&peer_point(p), key), *p))
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A bare libp2p swarm over TCP (noise, yamux) around `behaviour`: what the tests' hostile and
/// foreign peers are built on, as any other implementation would build one.
pub fn tcp_swarm<B: libp2p::swarm::NetworkBehaviour>(
    key: libp2p::identity::Keypair,
    behaviour: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> libp2p::Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(behaviour)
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}
