//! A storage node: the `Node` handle and how it starts and stops.
//!
//! Layout, after rust-libp2p's file-sharing example: `behaviour` composes the protocols,
//! `event_loop` owns the `Swarm`, `command` is the channel into it, and `ctx` is what
//! every handler shares. One module per role handles inbound requests: `access` (clients),
//! `root` (file records), `holder` (blocks). Background work: `sync` (record
//! anti-entropy), `repair` (blocks), `gc`, `drain` (graceful leave) and `balancing`
//! (load reports, election and decisions, running the pure core in `crate::balance`).

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod allowance;
pub(crate) mod balancing;
pub(crate) mod behaviour;
pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod ctx;
pub(crate) mod drain;
pub mod error;
pub(crate) mod event_loop;
pub(crate) mod gc;
pub(crate) mod holder;
pub(crate) mod holders;
pub(crate) mod metrics;
pub(crate) mod nat;
pub(crate) mod peers;
pub(crate) mod possession;
pub(crate) mod quorum;
pub(crate) mod refusals;
pub(crate) mod repair;
pub(crate) mod root;
pub(crate) mod serve_limit;
pub(crate) mod sync;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::identity;
use crate::ids::{peer_point, BlockId, FileKey};
use crate::net::{build_swarm, is_quic, is_relayed, preferred_addr};
use crate::protocol::status::{BalanceStatus, RepairStatus};
use crate::protocol::Budget;
use crate::store::Store;
use behaviour::Behaviour;
use command::Net;
use ctx::Ctx;
use peers::PeerTable;

pub use crate::balance::load::Served;
pub use command::Lookup;
pub use config::NodeConfig;
pub use drain::DrainReport;
pub use error::{NodeError, StartError};
pub use metrics::Metrics;
pub use nat::{Reachability, ServeMode};

/// Tasks that stop when this is dropped: a node dropped without [`Node::shutdown`] must not
/// keep running in the background (nor keep its store locked).
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A running storage node.
pub struct Node {
    ctx: Arc<Ctx>,
    /// The event loop (which owns every in-flight request handler).
    event_loop: Tasks,
    /// Maintenance loops (anti-entropy, repair, garbage collection, balancing, metrics).
    background: Tasks,
    /// Where `/metrics` is served, if it is.
    metrics_addr: Option<SocketAddr>,
}

impl Node {
    /// Opens the data dir, binds every listen address and starts the event loop. Returns once
    /// the node is listening (its address file written).
    pub async fn start(config: NodeConfig) -> std::result::Result<Node, StartError> {
        let dir = config.data_dir.display().to_string();
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            dir: dir.clone(),
            source,
        })?;
        let key = identity::load_or_create(&config.data_dir.join("identity.key"))?;
        let store = Arc::new(
            Store::open(&config.data_dir).map_err(|source| StartError::Store { dir, source })?,
        );
        let local = key.public().to_peer_id();
        let node_key = key.clone();
        let mut registry = libp2p::metrics::Registry::default();
        let metrics = Arc::new(Metrics::default());
        let refusals = Arc::new(refusals::Refusals::new(metrics.refused.clone()));
        // This node's budget of buffered inbound bytes; what its codecs refuse is counted with
        // the rest of the node's refusals.
        let sink = refusals.clone();
        let budget = Arc::new(
            Budget::default().with_sink(Arc::new(move |cause, peer, detail| {
                sink.refuse(cause, peer, detail)
            })),
        );
        let mut swarm = build_swarm(
            key,
            config.swarm_key,
            &mut registry,
            config.idle_timeout,
            |key, relay_client| Behaviour::new(key, &config, relay_client, budget),
        )?;
        balancing::service::subscribe(&mut swarm.behaviour_mut().gossipsub, &config.balance)?;
        let p2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
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
            if config.swarm_key.is_some() && is_quic(addr) {
                tracing::info!(%addr, "not listening on QUIC in a private swarm");
                continue;
            }
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| StartError::Listen {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })?;
            if is_relayed(addr) {
                relay_listeners.push((id, addr.clone()));
            }
            listening += 1;
        }
        if listening == 0 {
            return Err(StartError::NoListenAddr);
        }
        for addr in &config.external_addrs {
            // An operator's word: advertised at once, no AutoNAT test needed.
            swarm.add_external_address(addr.clone());
        }
        let (tx, rx) = mpsc::channel(1024);
        let ctx = Arc::new(Ctx {
            local,
            key: node_key,
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
            balance: balancing::Balance::new(config.balance.clone(), local),
            leaving: AtomicBool::new(false),
            refusals,
            allowance: allowance::Allowance::default(),
            started: Instant::now(),
            front_doors: Mutex::new(Vec::new()),
            #[cfg(feature = "test-hooks")]
            lie_about_records: AtomicBool::new(config.lie_about_records),
        });
        // Bound before anything is spawned, so a taken port fails the start cleanly.
        let mut metrics_addr = None;
        let mut background = Tasks::default();
        if let Some(addr) = config.metrics {
            let (bound, server) = admin::serve(addr, Arc::new(registry), ctx.clone())
                .await
                .map_err(|source| StartError::Metrics {
                    addr: addr.to_string(),
                    source,
                })?;
            tracing::info!("dashboard on http://{bound}/ (metrics at /metrics)");
            metrics_addr = Some(bound);
            background.0.push(server);
        }
        let event_loop =
            event_loop::EventLoop::new(swarm, rx, ctx.clone(), config.bootstrap.clone())
                .with_p2p_metrics(p2p_metrics)
                .with_relay_listeners(relay_listeners);
        let event_loop = Tasks(vec![tokio::spawn(event_loop.run())]);
        // Extra replicas and delegations from before a restart (see `balancing::persist`).
        balancing::persist::restore(&ctx, balancing::persist::load(&config.data_dir));
        background.0.extend([
            tokio::spawn(sync::run(ctx.clone())),
            tokio::spawn(gc::run(ctx.clone())),
            tokio::spawn(repair::run(ctx.clone())),
            tokio::spawn(balancing::service::run(ctx.clone())),
        ]);
        let node = Node {
            ctx,
            event_loop,
            background,
            metrics_addr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.ctx.listen_addrs().is_empty() {
            let wait = node.ctx.listen_changed.notified();
            if node.ctx.listen_addrs().is_empty() {
                if Instant::now() > deadline {
                    return Err(StartError::ListenTimeout);
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

    /// Says that this process serves `api` (`s3` or `gateway`) on `addr`: `status` shows it
    /// with its request counts.
    pub fn add_front_door(&self, api: &'static str, addr: SocketAddr) {
        if let Ok(mut doors) = self.ctx.front_doors.lock() {
            doors.push((api, addr));
        }
    }

    /// Peers this node has a direct (not relayed) connection to.
    pub fn direct_peers(&self) -> HashSet<PeerId> {
        self.ctx.reach.direct_peers()
    }

    /// What AutoNAT found out about this node.
    pub fn reachability(&self) -> Reachability {
        self.ctx.reach.reachability()
    }

    /// Every address the node listens on, each ending in `/p2p/<peer id>`.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.ctx.listen_addrs()
    }

    /// The address a local client should dial (loopback TCP when available).
    pub fn addr(&self) -> Multiaddr {
        preferred_addr(&self.listen_addrs()).unwrap_or_else(Multiaddr::empty)
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
    pub async fn lookup(&self, name: &str) -> Result<Lookup> {
        self.ctx.net.lookup(FileKey::preimage(name)).await
    }

    /// Dials another node (used to join peers started after us).
    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.ctx.net.dial(addr).await
    }

    /// Hands every record and block copy this node holds to others, so leaving loses no
    /// replica. Call before [`shutdown`](Self::shutdown) for a graceful leave.
    pub async fn drain(&self) -> DrainReport {
        drain::drain(&self.ctx).await
    }

    /// Repair counters (under-replicated blocks, queue, bytes repaired).
    pub fn repair_status(&self) -> RepairStatus {
        self.ctx.repair.snapshot()
    }

    /// Balancing as this node sees it: manager and term, per-node load, recent decisions.
    pub fn balance_status(&self) -> BalanceStatus {
        self.ctx.balance.status()
    }

    /// The manager this node follows and its term.
    pub fn manager(&self) -> Option<(PeerId, u64)> {
        self.ctx.balance.manager()
    }

    pub fn is_manager(&self) -> bool {
        self.ctx.balance.state().election.is_manager()
    }

    /// What this node served since it started.
    /// The serving cap (`--bandwidth`), if any.
    pub fn serve_limit(&self) -> Option<u64> {
        self.ctx.config.balance.serve_limit
    }

    pub fn served(&self) -> Served {
        self.ctx.balance.served()
    }

    /// Blocks this node holds as extra replicas.
    pub fn extra_replicas(&self) -> Vec<BlockId> {
        self.ctx.balance.extra_replicas()
    }

    /// Files this node serves record reads for as a delegate.
    pub fn delegations(&self) -> Vec<FileKey> {
        self.ctx.balance.delegations()
    }

    /// Saves the balancing state, stops the event loop and closes every connection, and waits
    /// (up to 10 s) until the store is closed, so a restart on the same data dir can open it.
    pub async fn shutdown(mut self) {
        let background = std::mem::take(&mut self.background.0);
        for t in &background {
            t.abort();
        }
        for t in background {
            let _ = t.await;
        }
        // What balancing left here is saved at the end of each round; a decision applied
        // since would be lost with a clean stop, so save it now too.
        balancing::persist::save_if_changed(&self.ctx).await;
        self.ctx.net.shutdown().await;
        for t in std::mem::take(&mut self.event_loop.0) {
            let _ = t.await;
        }
        // Handlers still running elsewhere (blocking store calls) hold the context: let them
        // finish.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&self.ctx) > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Hooks for tests of bad input: raw gossip and cutting peers off. Behind the `test-hooks`
/// feature, so they are not part of the public API.
#[cfg(feature = "test-hooks")]
impl Node {
    /// Publishes raw bytes on one of the swarm's balancing topics (`load`, `manager` or
    /// `decisions`), signed by this node.
    pub async fn publish_raw(&self, kind: &str, data: Vec<u8>) -> std::result::Result<(), String> {
        balancing::service::publish(&self.ctx, kind, data)
            .await
            .map_err(|e| e.to_string())
    }

    /// Makes this node a liar about records: it claims in every `Digest` to hold whatever it
    /// is asked about, acknowledges every `Replicate` without storing it, and answers every
    /// `Fetch` with nothing. Tests of hand-over on a claim use it.
    pub fn lie_about_records(&self, on: bool) {
        self.ctx
            .lie_about_records
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Refuses (or again allows) every connection with `peer`: tests partition swarms with it.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) {
        let _ = self
            .ctx
            .net
            .send(command::Command::SetBlocked { peer, blocked })
            .await;
    }
}
