//! A storage node: the [`Node`] handle, its [`NodeConfig`], and the shared context its request
//! handlers run with.
//!
//! Layout, after rust-libp2p's file-sharing example: [`behaviour`] composes the protocols,
//! [`event_loop`] owns the `Swarm`, [`net`] is the command channel into it, and one module per
//! role handles inbound requests: [`access`] (clients), [`root`] (file records), [`holder`]
//! (blocks).

pub mod access;
pub mod behaviour;
pub mod drain;
pub mod event_loop;
pub mod gc;
pub mod holder;
pub mod nat;
pub mod net;
pub mod peers;
pub mod repair;
pub mod root;
pub mod sync;
pub mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use libp2p::pnet::PreSharedKey;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::identity;
use crate::ids::{peer_point, BlockId, FileKey};
use crate::metrics::Metrics;
use crate::placement::{self, Candidate};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::store::Store;
use behaviour::Behaviour;
use nat::ServeMode;
use net::Net;
use peers::PeerTable;

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
    /// [`transport`]).
    pub swarm_key: Option<PreSharedKey>,
    /// Serve Prometheus metrics and `/health` on this address.
    pub metrics: Option<SocketAddr>,
    /// Load measurement, reports, election and balancing (builder methods in `balance::config`).
    pub balance: crate::balance::BalanceConfig,
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
            balance: crate::balance::BalanceConfig::default(),
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

/// What every request handler of a node shares.
pub struct Ctx {
    pub local: PeerId,
    pub config: NodeConfig,
    pub store: Arc<Store>,
    pub peers: PeerTable,
    pub net: Net,
    /// Counters and gauges every part of the node may update (see [`crate::metrics`]).
    pub metrics: Arc<Metrics>,
    /// Direct connections and AutoNAT's verdict (see [`nat`]).
    pub reach: nat::ReachView,
    listen: RwLock<Vec<Multiaddr>>,
    listen_changed: Notify,
    lookups: Mutex<HashMap<FileKey, (Instant, Vec<PeerId>)>>,
    pub repair: repair::RepairStats,
    pub balance: crate::balance::Balance,
    /// Set while draining before a graceful leave: we take no new data.
    pub leaving: AtomicBool,
    started: Instant,
}

/// How long a Kademlia lookup result is reused before walking the DHT again.
const LOOKUP_CACHE: Duration = Duration::from_secs(30);
/// How long after start a node may serve reads without seeing R-1 peers.
const JOIN_GRACE: Duration = Duration::from_secs(5);

impl Ctx {
    fn add_listen_addr(&self, addr: Multiaddr) {
        let preferred = {
            let mut list = self.listen.write().unwrap_or_else(|p| p.into_inner());
            if !list.contains(&addr) {
                list.push(addr);
            }
            event_loop::preferred_addr(&list)
        };
        if let Some(addr) = preferred {
            if let Err(e) = write_addr_file(&self.config.data_dir, &addr) {
                tracing::warn!("cannot write node.addr: {e}");
            }
        }
        self.listen_changed.notify_waiters();
    }

    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A restarted node must not answer reads from its own possibly stale copy before it has
    /// rejoined: wait until it sees a replica set's worth of peers (or a few seconds passed,
    /// for a node that is alone on purpose).
    pub async fn wait_ready(&self) {
        let want = self.config.replication.saturating_sub(1);
        while self.peers.live_peers().len() < want && self.started.elapsed() < JOIN_GRACE {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    /// The state held for `key`, read off the executor; `None` if absent or unreadable
    /// (callers treat both as "nothing to do").
    pub async fn stored_state(&self, key: FileKey) -> Option<crate::record::FileState> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.records.get(&key))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
    }

    pub fn local_free(&self) -> Option<u64> {
        self.config
            .capacity
            .map(|cap| cap.saturating_sub(self.store.blocks.used_bytes()))
    }

    /// Sends a meta request, answering it locally when `peer` is this node.
    pub async fn meta_to(self: &Arc<Self>, peer: PeerId, req: MetaRequest) -> Result<MetaResponse> {
        if peer == self.local {
            Ok(root::handle(self, peer, req).await)
        } else {
            self.net.meta(peer, req).await
        }
    }

    /// Sends a block request, answering it locally when `peer` is this node.
    pub async fn block_to(
        self: &Arc<Self>,
        peer: PeerId,
        req: BlockRequest,
    ) -> Result<BlockResponse> {
        if peer == self.local {
            Ok(holder::handle(self, peer, req).await)
        } else {
            self.net.block(peer, req).await
        }
    }

    /// The replica set of a file: the R live storage peers closest to its key, root first.
    /// Small swarms are fully known locally; larger ones walk the DHT (cached for a while).
    pub async fn replica_set(&self, name: &str) -> Vec<PeerId> {
        let key = FileKey::for_name(name);
        let n = self.config.replication;
        if self.peers.live_peers().len() + 1 >= libp2p::kad::K_VALUE.get() {
            let cached = {
                let cache = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
                cache
                    .get(&key)
                    .filter(|(at, _)| at.elapsed() < LOOKUP_CACHE)
                    .map(|(_, peers)| peers.clone())
            };
            if cached.is_none() {
                if let Ok(found) = self.net.lookup(FileKey::preimage(name)).await {
                    let peers: Vec<PeerId> = found.peers.into_iter().map(|(p, _)| p).collect();
                    let mut cache = self.lookups.lock().unwrap_or_else(|p| p.into_inner());
                    if cache.len() > 10_000 {
                        cache.clear();
                    }
                    cache.insert(key, (Instant::now(), peers));
                }
            }
        }
        let candidates = self.peers.candidates(self.local_free(), !self.is_leaving());
        placement::closest(&key.0, candidates, n)
            .into_iter()
            .map(|c| c.peer)
            .collect()
    }

    /// Peers to place a block on, best first (the first R are the intended holders, the rest
    /// are fallbacks if some fail).
    pub fn block_targets(&self, id: &BlockId, len: u64) -> Vec<PeerId> {
        let candidates: Vec<Candidate> =
            self.peers.candidates(self.local_free(), !self.is_leaving());
        placement::holder_order(&id.kad_point(), candidates, len)
    }
}

/// What the metrics endpoint asks the node: sampled gauges and whether it is serving.
fn probe(ctx: &Arc<Ctx>) -> crate::metrics::Probe {
    let (c1, c2) = (ctx.clone(), ctx.clone());
    crate::metrics::Probe {
        refresh: Box::new(move || {
            let m = &c1.metrics;
            m.blocks_stored.set(c1.store.blocks.count() as i64);
            m.bytes_stored.set(c1.store.blocks.used_bytes() as i64);
            m.live_peers.set(c1.peers.live_peers().len() as i64);
            let repair = c1.repair.snapshot();
            m.repair_queue.set(repair.queue as i64);
            m.blocks_under_replicated
                .set(repair.under_replicated as i64);
            m.blocks_lost.set(repair.lost as i64);
        }),
        healthy: Box::new(move || c2.net.is_running()),
    }
}

fn write_addr_file(dir: &std::path::Path, addr: &Multiaddr) -> std::io::Result<()> {
    let tmp = dir.join("node.addr.tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(tmp, dir.join("node.addr"))
}

/// A running storage node.
pub struct Node {
    ctx: Arc<Ctx>,
    task: JoinHandle<()>,
    /// Maintenance loops (anti-entropy, garbage collection), stopped at shutdown.
    background: Vec<JoinHandle<()>>,
    /// Where `/metrics` is served, if it is.
    metrics_addr: Option<SocketAddr>,
}

impl Node {
    /// Opens the data dir, binds every listen address and starts the event loop. Returns once
    /// the node is listening (its address file written).
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let key = identity::load_or_create(&config.data_dir.join("identity.key"))?;
        let store =
            Arc::new(Store::open(&config.data_dir).with_context(|| {
                format!("cannot open the store in {}", config.data_dir.display())
            })?);
        let local = key.public().to_peer_id();
        let mut registry = libp2p::metrics::Registry::default();
        let mut swarm = transport::build_swarm(
            key,
            config.swarm_key,
            &mut registry,
            config.idle_timeout,
            |key, relay_client| Behaviour::new(key, &config, relay_client),
        )?;
        crate::balance::service::subscribe(&mut swarm.behaviour_mut().gossipsub, &config.balance)?;
        let p2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
        let metrics = Arc::new(Metrics::default());
        metrics.register(&mut registry);
        if let Some(psk) = &config.swarm_key {
            tracing::info!(
                fingerprint = %psk.fingerprint(),
                "private swarm: only peers with this swarm key can connect; QUIC is off (the key protects TCP only)"
            );
        }
        let mut listening = 0;
        let mut relay_listeners = Vec::new();
        for addr in &config.listen {
            if config.swarm_key.is_some() && transport::is_quic(addr) {
                tracing::info!(%addr, "not listening on QUIC in a private swarm");
                continue;
            }
            let id = swarm
                .listen_on(addr.clone())
                .with_context(|| format!("cannot listen on {addr}"))?;
            if transport::is_relayed(addr) {
                relay_listeners.push((id, addr.clone()));
            }
            listening += 1;
        }
        if listening == 0 {
            anyhow::bail!("no listen address left to use (QUIC is off in a private swarm)");
        }
        for addr in &config.external_addrs {
            // An operator's word: advertised at once, no AutoNAT test needed.
            swarm.add_external_address(addr.clone());
        }
        let (tx, rx) = mpsc::channel(1024);
        let ctx = Arc::new(Ctx {
            local,
            config: config.clone(),
            store,
            peers: PeerTable::new(local),
            net: Net::new(tx),
            metrics: metrics.clone(),
            reach: nat::ReachView::default(),
            listen: RwLock::new(Vec::new()),
            listen_changed: Notify::new(),
            lookups: Mutex::new(HashMap::new()),
            repair: repair::RepairStats::default(),
            balance: crate::balance::Balance::new(config.balance.clone(), local),
            leaving: AtomicBool::new(false),
            started: Instant::now(),
        });
        // Bound before anything is spawned, so a taken port fails the start cleanly.
        let mut metrics_addr = None;
        let mut metrics_task = None;
        if let Some(addr) = config.metrics {
            let (bound, server) = crate::metrics::serve(addr, Arc::new(registry), probe(&ctx))
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            tracing::info!("metrics on http://{bound}/metrics");
            metrics_addr = Some(bound);
            metrics_task = Some(server);
        }
        let event_loop =
            event_loop::EventLoop::new(swarm, rx, ctx.clone(), config.bootstrap.clone())
                .with_p2p_metrics(p2p_metrics)
                .with_relay_listeners(relay_listeners);
        let task = tokio::spawn(event_loop.run());
        let mut background = vec![
            tokio::spawn(sync::run(ctx.clone())),
            tokio::spawn(gc::run(ctx.clone())),
            tokio::spawn(repair::run(ctx.clone())),
            tokio::spawn(crate::balance::service::run(ctx.clone())),
        ];
        background.extend(metrics_task);
        let node = Node {
            ctx,
            task,
            background,
            metrics_addr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.ctx.listen_addrs().is_empty() {
            let wait = node.ctx.listen_changed.notified();
            if node.ctx.listen_addrs().is_empty() {
                if Instant::now() > deadline {
                    anyhow::bail!("no listen address came up within 10 s");
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), wait).await;
            }
        }
        tracing::info!(peer = %local, "node started");
        Ok(node)
    }

    pub fn peer_id(&self) -> PeerId {
        self.ctx.local
    }

    /// Where `/metrics` and `/health` are served (the bound port when `:0` was asked for).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.ctx.metrics
    }

    /// Peers this node has a direct (not relayed) connection to.
    pub fn direct_peers(&self) -> std::collections::HashSet<PeerId> {
        self.ctx.reach.direct_peers()
    }

    /// What AutoNAT found out about this node.
    pub fn reachability(&self) -> nat::Reachability {
        self.ctx.reach.reachability()
    }

    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.ctx
    }

    /// Every address the node listens on, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ctx.listen_addrs()
    }

    /// The address a local client should dial (loopback TCP when available).
    pub fn addr(&self) -> Multiaddr {
        event_loop::preferred_addr(&self.listen_addrs()).unwrap_or_else(Multiaddr::empty)
    }

    pub fn store(&self) -> &Store {
        &self.ctx.store
    }

    pub fn config(&self) -> &NodeConfig {
        &self.ctx.config
    }

    /// Storage peers this node currently considers live.
    pub fn live_peers(&self) -> Vec<PeerId> {
        self.ctx.peers.live_peers()
    }

    /// This node's point in the key space (SHA-256 of its PeerId bytes).
    pub fn point(&self) -> [u8; 32] {
        peer_point(&self.ctx.local)
    }

    /// Waits until at least `n` other storage peers are live; false on timeout.
    pub async fn wait_for_peers(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.ctx.peers.live_peers().len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Walks the DHT for the peers closest to a file's key (diagnostics, benchmarks).
    pub async fn lookup(&self, name: &str) -> Result<net::Lookup> {
        self.ctx.net.lookup(FileKey::preimage(name)).await
    }

    /// Dials another node (used to join peers started after us).
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.ctx.net.dial(addr).await
    }

    /// Hands every record and block copy this node holds to others, so leaving loses no
    /// replica. Call before [`shutdown`](Self::shutdown) for a graceful leave.
    pub async fn drain(&self) -> drain::DrainReport {
        drain::drain(&self.ctx).await
    }

    /// Repair counters (under-replicated blocks, queue, bytes repaired).
    pub fn repair_status(&self) -> repair::RepairStatus {
        self.ctx.repair.snapshot()
    }

    /// Stops the event loop and closes every connection. The store is closed once the last
    /// in-flight handler finishes.
    pub async fn shutdown(self) {
        for t in &self.background {
            t.abort();
        }
        for t in self.background {
            let _ = t.await;
        }
        self.ctx.net.shutdown().await;
        let _ = self.task.await;
        // In-flight handlers hold the context (and the store's file lock): let them finish so
        // a restart on the same data dir can open it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.ctx) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
