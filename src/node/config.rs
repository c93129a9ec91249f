//! Everything a node is started with: [`NodeConfig`] and its builder methods.
//! `NodeConfig::new(dir)` gives the defaults of `swarmstore node`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};

use super::nat::ServeMode;
use crate::balance::plan::Policy;
use crate::balance::BalanceConfig;

/// Everything a node is started with. `NodeConfig::new(dir)` gives the defaults of
/// `swarmstore node`; the builder methods override them.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// Copies of each block and of each record (R).
    pub replication: usize,
    /// Bytes of block storage this node offers; `None` means no limit beyond the disk.
    pub capacity: Option<u64>,
    /// Versions of each file a root retains.
    pub keep_versions: usize,
    /// Bound on each file's user list.
    pub max_users: usize,
    /// How long an idle connection stays open.
    pub idle_timeout: Duration,
    /// How long a block must stay unreferenced before it is deleted.
    pub gc_grace: Duration,
    /// How often replica sets exchange record digests.
    pub sync_interval: Duration,
    /// Upper bound on noticing a dead peer (drives ping interval and timeout).
    pub liveness: Duration,
    /// How often roots check that every block keeps R live holders.
    pub repair_interval: Duration,
    /// Bytes per second repair copies may use.
    pub repair_bandwidth: u64,
    /// Addresses this node is known to be reachable at (confirmed without AutoNAT).
    pub external_addrs: Vec<Multiaddr>,
    /// Serve as a relay for peers behind NAT.
    pub relay_server: ServeMode,
    /// Answer other peers' AutoNAT reachability tests.
    pub autonat_server: ServeMode,
    /// Private swarm: only peers with this pre-shared key can connect (TCP only; see
    /// `crate::net::transport`).
    pub swarm_key: Option<PreSharedKey>,
    /// Serve Prometheus metrics and `/health` on this address.
    pub metrics: Option<SocketAddr>,
    /// Load measurement, reports, election and balancing (builder methods below).
    pub balance: BalanceConfig,
    /// Test hook: lie about records from the first moment (see `Node::lie_about_records`),
    /// so that no honest answer slips out between the start and the switch.
    #[cfg(feature = "test-hooks")]
    pub lie_about_records: bool,
}

impl NodeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001".parse().expect("valid literal"),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .expect("valid literal"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            replication: 3,
            capacity: None,
            keep_versions: 3,
            max_users: 1000,
            idle_timeout: Duration::from_secs(120),
            gc_grace: Duration::from_secs(600),
            sync_interval: Duration::from_secs(10),
            liveness: Duration::from_secs(10),
            repair_interval: Duration::from_secs(10),
            repair_bandwidth: 64 << 20,
            external_addrs: Vec::new(),
            relay_server: ServeMode::Auto,
            autonat_server: ServeMode::Auto,
            swarm_key: None,
            metrics: None,
            balance: BalanceConfig::default(),
            #[cfg(feature = "test-hooks")]
            lie_about_records: false,
        }
    }

    /// Loopback only, an OS-chosen TCP port, no mDNS: for tests and the devnet.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        Self::new(data_dir)
            .listen_on(vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid literal")])
            .mdns(false)
    }

    pub fn listen_on(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.listen = addrs;
        self
    }

    pub fn bootstrap(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.bootstrap = addrs;
        self
    }

    pub fn mdns(mut self, on: bool) -> Self {
        self.mdns = on;
        self
    }

    pub fn replication(mut self, r: usize) -> Self {
        self.replication = r.max(1);
        self
    }

    pub fn capacity(mut self, bytes: Option<u64>) -> Self {
        self.capacity = bytes;
        self
    }

    pub fn keep_versions(mut self, k: usize) -> Self {
        self.keep_versions = k.max(1);
        self
    }

    pub fn gc_grace(mut self, grace: Duration) -> Self {
        self.gc_grace = grace;
        self
    }

    pub fn sync_interval(mut self, every: Duration) -> Self {
        self.sync_interval = every.max(Duration::from_millis(100));
        self
    }

    pub fn liveness(mut self, bound: Duration) -> Self {
        self.liveness = bound.max(Duration::from_millis(500));
        self
    }

    pub fn repair_interval(mut self, every: Duration) -> Self {
        self.repair_interval = every.max(Duration::from_millis(100));
        self
    }

    pub fn repair_bandwidth(mut self, bytes_per_sec: u64) -> Self {
        self.repair_bandwidth = bytes_per_sec.max(64 * 1024);
        self
    }

    pub fn external_addrs(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.external_addrs = addrs;
        self
    }

    pub fn relay_server(mut self, mode: ServeMode) -> Self {
        self.relay_server = mode;
        self
    }

    pub fn autonat_server(mut self, mode: ServeMode) -> Self {
        self.autonat_server = mode;
        self
    }

    pub fn swarm_key(mut self, key: Option<PreSharedKey>) -> Self {
        self.swarm_key = key;
        self
    }

    pub fn metrics(mut self, addr: Option<SocketAddr>) -> Self {
        self.metrics = addr;
        self
    }
}

/// Balancing settings (see [`crate::balance::BalanceConfig`]).
impl NodeConfig {
    pub fn swarm_name(mut self, name: impl Into<String>) -> Self {
        self.balance.swarm = name.into();
        self
    }

    pub fn report_interval(mut self, every: Duration) -> Self {
        self.balance.report_interval = every.max(Duration::from_millis(50));
        self
    }

    /// The node's serving capacity, as the operator knows it (no longer learned).
    pub fn bandwidth(mut self, bytes_per_sec: u64) -> Self {
        self.balance.bandwidth = bytes_per_sec.max(1);
        self.balance.measure_capacity = false;
        self
    }

    /// Caps what this node serves at `bytes_per_sec` work units (see `serve_limit.rs`);
    /// `None` lifts the cap.
    pub fn serve_limit(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.balance.serve_limit = bytes_per_sec.map(|b| b.max(1));
        self
    }

    pub fn manager_peers(mut self, peers: Vec<PeerId>) -> Self {
        self.balance.manager_peers = peers;
        self
    }

    pub fn zone(mut self, zone: Option<String>) -> Self {
        self.balance.zone = zone;
        self
    }

    pub fn planner(mut self, on: bool) -> Self {
        self.balance.planner = on;
        self
    }

    pub fn balance_policy(mut self, policy: Policy) -> Self {
        self.balance.policy = policy;
        self
    }

    /// Minimum time before a balancing decision on the same object may be reversed.
    pub fn balance_hold(mut self, hold: Duration) -> Self {
        self.balance.policy.hold_ms = hold.as_millis() as u64;
        self
    }
}
