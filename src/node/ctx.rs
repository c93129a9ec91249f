//! What every request handler and background task of a node shares ([`Ctx`]): identity,
//! config, the store, the peer table, the command channel into the event loop, metrics and the
//! balancing state; plus the placement questions they all ask (replica sets, block targets).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::Notify;

use super::balancing::Balance;
use super::command::Net;
use super::config::NodeConfig;
use super::metrics::Metrics;
use super::peers::PeerTable;
use super::refusals::Refusals;
use super::{holder, nat, repair, root};
use crate::error::Result;
use crate::ids::{BlockId, FileKey};
use crate::net::preferred_addr;
use crate::placement::{self, Candidate};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::FileState;
use crate::store::{free_disk, Store, DISK_RESERVE};

/// What every request handler of a node shares.
pub struct Ctx {
    pub local: PeerId,
    /// The node's identity: signs attestations of the root-kept fields it changes.
    pub key: Keypair,
    pub config: NodeConfig,
    pub store: Arc<Store>,
    pub peers: PeerTable,
    pub net: Net,
    /// Counters and gauges every part of the node may update (see [`super::metrics`]).
    pub metrics: Arc<Metrics>,
    /// Direct connections and AutoNAT's verdict (see [`nat`]).
    pub reach: nat::ReachView,
    pub(super) listen: RwLock<Vec<Multiaddr>>,
    pub(super) listen_changed: Notify,
    pub(super) lookups: Mutex<HashMap<FileKey, (Instant, Vec<PeerId>)>>,
    pub repair: repair::RepairStats,
    pub balance: Balance,
    /// Set while draining before a graceful leave: we take no new data.
    pub leaving: AtomicBool,
    /// Refused input, counted by cause and logged at a bounded rate.
    pub refusals: Arc<Refusals>,
    /// Bytes of blocks each peer may make this node store unasked.
    pub allowance: super::allowance::Allowance,
    pub(super) started: Instant,
    /// The S3 API and gateway this node's process serves (`--s3`, `--gateway`), for `status`.
    pub(super) front_doors: Mutex<Vec<(&'static str, std::net::SocketAddr)>>,
    /// Test hook: answer meta requests as a peer that claims every record and holds none.
    #[cfg(feature = "test-hooks")]
    pub(super) lie_about_records: AtomicBool,
}

/// Beyond the R closest peers of a key, how many more may still speak for it (sign its
/// root-kept fields, hold its record): views of the closest peers differ while peers come and
/// go, and a root that just died must still count for the states it signed.
pub const WINDOW_SLACK: usize = 3;

/// How long a Kademlia lookup result is reused before walking the DHT again.
const LOOKUP_CACHE: Duration = Duration::from_secs(30);
/// How long after start a node may serve reads without seeing R-1 peers.
const JOIN_GRACE: Duration = Duration::from_secs(5);

impl Ctx {
    pub(super) fn add_listen_addr(&self, addr: Multiaddr) {
        let preferred = {
            let mut list = self.listen.write().unwrap_or_else(|p| p.into_inner());
            if !list.contains(&addr) {
                list.push(addr);
            }
            preferred_addr(&list)
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

    /// Whether this node started so recently that its view of the swarm may still be
    /// incomplete (peers it has not yet reconnected to).
    pub fn view_forming(&self) -> bool {
        self.started.elapsed() < JOIN_GRACE * 2
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    /// The state held for `key`; `None` if absent or unreadable (callers treat both as
    /// "nothing to do"; an unreadable one is logged).
    pub async fn stored_state(&self, key: FileKey) -> Option<FileState> {
        match self.store.state(key).await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(%key, "cannot read the stored record: {e}");
                None
            }
        }
    }

    /// Bytes of blocks this node can still take: up to `--capacity`, or without one, the
    /// disk's free space less [`DISK_RESERVE`] (so a full disk refuses with a clear error
    /// instead of failing a write). `None` only when neither is known.
    pub fn local_free(&self) -> Option<u64> {
        match self.config.capacity {
            Some(cap) => Some(cap.saturating_sub(self.store.blocks.used_bytes())),
            None => free_disk(&self.config.data_dir).map(|f| f.saturating_sub(DISK_RESERVE)),
        }
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

    /// The peers that may speak for a file's key: the closest R + [`WINDOW_SLACK`] live
    /// storage peers (this node included), and the closest R of every storage peer this node
    /// knows, live or down (so a root that just died still counts for what it signed).
    pub fn key_window(&self, key: &FileKey) -> Vec<PeerId> {
        let r = self.config.replication;
        let mut known = self.peers.known_storage();
        known.push(self.me());
        let mut window = self.live_window(key);
        for c in placement::closest(&key.0, known, r) {
            if !window.contains(&c.peer) {
                window.push(c.peer);
            }
        }
        window
    }

    /// The closest R + [`WINDOW_SLACK`] live storage peers of a key, this node included: the
    /// key's window without the peers that are down.
    pub fn live_window(&self, key: &FileKey) -> Vec<PeerId> {
        let mut live = self.peers.candidates(None, false);
        live.push(self.me());
        placement::closest(&key.0, live, self.config.replication + WINDOW_SLACK)
            .into_iter()
            .map(|c| c.peer)
            .collect()
    }

    fn me(&self) -> Candidate {
        Candidate {
            peer: self.local,
            point: crate::ids::peer_point(&self.local),
            free: None,
        }
    }

    /// Whether `peer` is in the key's window (see [`Ctx::key_window`]).
    pub fn in_key_window(&self, key: &FileKey, peer: &PeerId) -> bool {
        self.key_window(key).contains(peer)
    }

    /// Peers to place a block on, best first (the first R are the intended holders, the rest
    /// are fallbacks if some fail).
    pub fn block_targets(&self, id: &BlockId, len: u64) -> Vec<PeerId> {
        let candidates: Vec<Candidate> =
            self.peers.candidates(self.local_free(), !self.is_leaving());
        placement::holder_order(&id.kad_point(), candidates, len)
    }
}

fn write_addr_file(dir: &std::path::Path, addr: &Multiaddr) -> std::io::Result<()> {
    let tmp = dir.join("node.addr.tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(tmp, dir.join("node.addr"))
}
