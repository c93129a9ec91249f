//! The load-balancing planner: a pure, deterministic function from one
//! cluster view to a list of decisions.
//!
//! This module owns *what* to do, never *how*: it does no I/O, reads no
//! clock (the caller supplies `now`), uses no randomness, and never iterates
//! a hash map where the order could leak into its output. The elected
//! manager calls [`plan`] once per reporting interval with the smoothed view
//! it built from the nodes' load reports, publishes the decisions, and feeds
//! them back into [`History::record`] (a manager that takes over after a
//! failover rebuilds its history by recording the decisions it sees
//! published).
//!
//! Decision kinds (see [`Decision`]):
//! * `Replicate` a hot block onto light nodes (extra copies beyond R),
//! * `Delegate` a hot file's root duties (record reads) to a light node for a lease,
//! * `Move` blocks off nodes above the storage band onto nodes below it
//!   (HDFS-balancer style band, byte-capped per round), and hand a copy of a
//!   warm block from a node overloaded by several of them to a light node,
//! * `Drop` extra replicas and `EndDelegation` once the heat has gone
//!   (never below R live holders).
//!
//! Anti-jitter, in layers: the caller smooths its inputs (EWMA); every trigger
//! has hysteresis (start above the upper band, stop below the lower band, undo
//! only far below it); no object's decision is reversed within
//! [`Policy::hold_ms`]; a round emits at most [`Policy::max_decisions`]; and a
//! predicted-load check keeps every target inside its band, updating the
//! predictions as decisions are emitted within the round.
//!
//! Load model used for the predictions. Readers send each block request to
//! the least-loaded live holder, so routing levels utilisation wherever the
//! holder sets allow. What it cannot level is *committed* load: a block whose
//! heat per unit of holder capacity `ρ = H/S` is above the mean utilisation
//! keeps each holder of capacity `c` busy with about `ρ·c` of it, and a
//! file's record reads are pinned on its root or live delegate. Everything
//! else a node serves is flexible: it can shift to co-holders. Replicas of
//! hot blocks and delegations are sized by that model (predicted load
//! `max(load, committed + added)`). A node that becomes a new holder of a block is
//! predicted the way readers route: the block's heat water-fills its holders
//! on top of what else each serves, so the newcomer takes reads until it is
//! level with the least-loaded old holders (see `Planner::inflow`). Storage
//! moves and hand-offs are only made to targets whose load, plus that
//! inflow padded by [`Policy::load_margin`] for report noise, stays inside
//! the band. Predictions are updated as decisions are emitted within the
//! round. The simulator (`sim.rs`) checks them: it counts targets found over
//! capacity the round after.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

/// Anything usable as a node identifier (a libp2p `PeerId` in the node, a
/// `u32` in the simulator).
pub trait NodeKey: Copy + Ord + Eq + std::hash::Hash + std::fmt::Debug {}
impl<T: Copy + Ord + Eq + std::hash::Hash + std::fmt::Debug> NodeKey for T {}

/// Content id of a block.
pub type BlockId = [u8; 32];
/// Key of a file (its record lives on the DHT-closest node, the root).
pub type FileKey = [u8; 32];

/// One node as the manager sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView<N> {
    pub id: N,
    pub alive: bool,
    /// Work units/s the node can serve (bytes/s of block data; a metadata
    /// request counts as a fixed cost).
    pub serve_capacity: f64,
    /// Smoothed served work units/s (EWMA done by the caller).
    pub load: f64,
    pub storage_used: u64,
    pub storage_capacity: u64,
}

/// A file the manager knows about (hot files, and files with a delegation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileView<N> {
    pub key: FileKey,
    pub root: N,
    /// Current delegate and the lease expiry (ms, same clock as `now`).
    pub delegate: Option<(N, u64)>,
    /// Record reads/s, in work units.
    pub heat: f64,
}

/// A block the manager knows about (hot blocks, blocks with extras, and
/// movable blocks reported by storage-heavy nodes). Block ids must be unique
/// within a view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockView<N> {
    pub id: BlockId,
    pub file: FileKey,
    pub size: u64,
    /// Base holders (R of them normally; fewer if under-replicated).
    pub holders: Vec<N>,
    /// Extra replicas created by earlier `Replicate` decisions.
    pub extra: Vec<N>,
    /// Work units/s served for this block, summed over all its holders.
    pub heat: f64,
}

/// Everything the planner sees in one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterView<N> {
    /// ms, monotonic, supplied by the caller.
    pub now: u64,
    pub replication: usize,
    pub nodes: Vec<NodeView<N>>,
    pub files: Vec<FileView<N>>,
    pub blocks: Vec<BlockView<N>>,
}

/// One published instruction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Decision<N> {
    /// Extra copy beyond R.
    Replicate {
        block: BlockId,
        file: FileKey,
        from: N,
        to: N,
    },
    /// Hot file's root duties (record reads) go to `to` until `expires_at`.
    /// Re-issued to the same node to renew the lease.
    Delegate {
        file: FileKey,
        root: N,
        to: N,
        expires_at: u64,
    },
    /// The base copy on `from` moves to `to` (storage band, or relief of a
    /// node overloaded by several warm blocks).
    Move {
        block: BlockId,
        file: FileKey,
        from: N,
        to: N,
        bytes: u64,
    },
    /// Extra replica no longer needed; never leaves fewer than R live holders.
    Drop {
        block: BlockId,
        file: FileKey,
        at: N,
    },
    /// The delegate at `at` hands root duties back to the root.
    EndDelegation { file: FileKey, at: N },
}

/// Tuning knobs. Utilisation means `load / serve_capacity`.
///
/// Load bands are relative to the capacity-weighted mean utilisation `m`:
/// `hi = clamp(m·hot_rel, util_floor, util_ceiling)`, `lo = hi·cool_rel/hot_rel`,
/// `drop = hi·drop_rel/hot_rel`, so `drop < lo < hi` always holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Upper band (start relief above it), relative to the mean.
    pub hot_rel: f64,
    /// Lower band (relief aims at and stops below it), relative to the mean.
    pub cool_rel: f64,
    /// Undo band: an extra replica is dropped only if the block's per-capacity
    /// heat without it stays below this (relative to the mean).
    pub drop_rel: f64,
    /// Absolute floor of the upper band: an idle cluster triggers nothing.
    pub util_floor: f64,
    /// Absolute ceiling of the upper band: never plan a target above it.
    pub util_ceiling: f64,
    /// No decision on an object (block on a node, or a file's delegation)
    /// is reversed within this many ms of the previous one.
    pub hold_ms: u64,
    /// At most this many decisions per round.
    pub max_decisions: usize,
    /// At most this many extra replicas per block.
    pub max_extra_per_block: usize,
    /// Storage band (HDFS balancer style): a node above `mean·(1+band)` sheds
    /// blocks ...
    pub storage_band: f64,
    /// ... until it is at or below `mean·(1+aim)`; targets fill up to the mean.
    pub storage_aim: f64,
    /// Bytes moved by `Move` decisions per round, at most.
    pub max_move_bytes: u64,
    /// Length of a delegation lease (ms); renewed when less than half remains.
    pub lease_ms: u64,
    /// Delegate a file only if its record heat is at least this fraction of
    /// the root's capacity; end it once heat is below half of that.
    pub delegate_min_share: f64,
    /// Nodes considered per block when looking for targets (bounds the work
    /// per round when few targets qualify).
    pub max_scan: usize,
    /// Relative uncertainty of reported loads and heats (report noise and
    /// change within a round): predicted loads of decision targets are
    /// padded by it. (Defaults when absent from a serialized policy.)
    #[serde(default = "default_load_margin")]
    pub load_margin: f64,
    /// Enable `Replicate` / `Drop`.
    pub replicate: bool,
    /// Enable `Delegate` / `EndDelegation`.
    pub delegate: bool,
    /// Enable storage-band `Move`s.
    pub moves: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            hot_rel: 1.2,
            cool_rel: 1.05,
            drop_rel: 0.6,
            util_floor: 0.3,
            util_ceiling: 0.9,
            hold_ms: 120_000,
            max_decisions: 1024,
            max_extra_per_block: 256,
            storage_band: 0.10,
            storage_aim: 0.09,
            max_move_bytes: 8 << 30,
            lease_ms: 300_000,
            delegate_min_share: 0.05,
            max_scan: 256,
            load_margin: default_load_margin(),
            replicate: true,
            delegate: true,
            moves: true,
        }
    }
}

fn default_load_margin() -> f64 {
    0.1
}

impl Policy {
    /// The HDFS-balancer baseline: storage-band moves only.
    pub fn hdfs_only() -> Self {
        Policy {
            replicate: false,
            delegate: false,
            ..Policy::default()
        }
    }
}

/// Last decision on one object: when, and whether it added (replica /
/// delegation) or removed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub at: u64,
    pub added: bool,
}

/// What the planner remembers between rounds: the last decision on every
/// (block, node) pair and every file's delegation. It is derived only from
/// published decisions, so a new manager rebuilds it exactly by calling
/// [`History::record`] on the decisions published within the hold time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "N: Serialize", deserialize = "N: Deserialize<'de> + Ord"))]
pub struct History<N> {
    replicas: BTreeMap<(BlockId, N), Mark>,
    files: BTreeMap<FileKey, Mark>,
    /// Entries older than this (ms) are forgotten; keep it above `hold_ms`.
    retain_ms: u64,
}

impl<N: NodeKey> Default for History<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<N: NodeKey> History<N> {
    /// Empty history that remembers decisions for 30 minutes.
    pub fn new() -> Self {
        Self::with_retention(30 * 60 * 1000)
    }

    /// Empty history that remembers decisions for `retain_ms`.
    pub fn with_retention(retain_ms: u64) -> Self {
        History {
            replicas: BTreeMap::new(),
            files: BTreeMap::new(),
            retain_ms,
        }
    }

    /// Remember the decisions published at `now`, and forget old entries.
    pub fn record(&mut self, decisions: &[Decision<N>], now: u64) {
        for d in decisions {
            match *d {
                Decision::Replicate { block, to, .. } => {
                    self.replicas.insert(
                        (block, to),
                        Mark {
                            at: now,
                            added: true,
                        },
                    );
                }
                Decision::Move {
                    block, from, to, ..
                } => {
                    self.replicas.insert(
                        (block, from),
                        Mark {
                            at: now,
                            added: false,
                        },
                    );
                    self.replicas.insert(
                        (block, to),
                        Mark {
                            at: now,
                            added: true,
                        },
                    );
                }
                Decision::Drop { block, at, .. } => {
                    self.replicas.insert(
                        (block, at),
                        Mark {
                            at: now,
                            added: false,
                        },
                    );
                }
                Decision::Delegate { file, .. } => {
                    self.files.insert(
                        file,
                        Mark {
                            at: now,
                            added: true,
                        },
                    );
                }
                Decision::EndDelegation { file, .. } => {
                    self.files.insert(
                        file,
                        Mark {
                            at: now,
                            added: false,
                        },
                    );
                }
            }
        }
        let cutoff = now.saturating_sub(self.retain_ms);
        self.replicas.retain(|_, m| m.at >= cutoff);
        self.files.retain(|_, m| m.at >= cutoff);
    }

    /// Last decision on `block` at `node`, if remembered.
    pub fn replica_mark(&self, block: &BlockId, node: N) -> Option<Mark> {
        self.replicas.get(&(*block, node)).copied()
    }

    /// Last delegation decision on `file`, if remembered.
    pub fn file_mark(&self, file: &FileKey) -> Option<Mark> {
        self.files.get(file).copied()
    }

    /// Number of remembered objects.
    pub fn len(&self) -> usize {
        self.replicas.len() + self.files.len()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// May a copy of `block` be added at `node` now (not a reversal of a recent removal)?
    fn may_add(&self, block: &BlockId, node: N, now: u64, hold: u64) -> bool {
        allowed(self.replica_mark(block, node), false, now, hold)
    }

    /// May the copy of `block` at `node` be removed now (not a reversal of a recent add)?
    fn may_remove(&self, block: &BlockId, node: N, now: u64, hold: u64) -> bool {
        allowed(self.replica_mark(block, node), true, now, hold)
    }
}

/// An action is a reversal if the last mark was the opposite action
/// (`opposite_added`) within the hold time.
fn allowed(mark: Option<Mark>, opposite_added: bool, now: u64, hold: u64) -> bool {
    match mark {
        Some(m) => m.added != opposite_added || now.saturating_sub(m.at) >= hold,
        None => true,
    }
}

/// Compute this round's decisions. Pure and deterministic: the same
/// `(view, policy, history)` always yields the same output.
pub fn plan<N: NodeKey>(
    view: &ClusterView<N>,
    policy: &Policy,
    history: &History<N>,
) -> Vec<Decision<N>> {
    let mut p = Planner::build(view, policy, history);
    if policy.delegate {
        p.delegations();
    }
    if policy.replicate {
        p.hot_blocks();
        p.hot_nodes();
    }
    if policy.moves {
        p.storage_moves();
    }
    if policy.replicate {
        p.drops();
    }
    if policy.delegate {
        p.end_delegations();
    }
    p.out
}

// ---------------------------------------------------------------------------
// Working state

/// Planner's per-node working copy; all loads in work units/s.
#[derive(Clone, Debug)]
struct WNode {
    cap: f64,
    load: f64,
    committed: f64,
    used: f64,
    scap: f64,
    alive: bool,
}

impl WNode {
    /// Predicted load the node cannot shed: its observed load or what is
    /// committed to it, whichever is larger.
    fn pressure(&self) -> f64 {
        self.load.max(self.committed)
    }
}

#[derive(Clone, Copy, Debug)]
struct Holder {
    node: u32,
    extra: bool,
}

/// Node count beyond which the per-round heap-pop budget stops growing.
const SCAN_NODES: usize = 4096;

/// Relief of one overloaded node moves on after this many of its blocks in
/// a row found no taker (bounds the work when the swarm has no room).
const RELIEF_MISSES: usize = 8;

/// A hand-off of a hot node's copy gives up after this many light
/// candidates that could not absorb it.
const SHIFT_MISSES: usize = 32;

/// Holders stored inline: R + 1 covers almost every block of a view.
const INLINE_HOLDERS: usize = 4;

/// A block's live holders: a few inline, more on the heap. A view holds
/// millions of blocks at 10^5 nodes; only the few with extras allocate.
#[derive(Clone, Debug)]
enum Holders {
    Inline(u8, [Holder; INLINE_HOLDERS]),
    Heap(Vec<Holder>),
}

impl Holders {
    fn new() -> Self {
        Holders::Inline(
            0,
            [Holder {
                node: 0,
                extra: false,
            }; INLINE_HOLDERS],
        )
    }

    fn push(&mut self, h: Holder) {
        let spilled = match self {
            Holders::Inline(n, arr) if (*n as usize) < INLINE_HOLDERS => {
                arr[*n as usize] = h;
                *n += 1;
                return;
            }
            Holders::Inline(n, arr) => {
                let mut v = Vec::with_capacity(2 * INLINE_HOLDERS);
                v.extend_from_slice(&arr[..*n as usize]);
                v.push(h);
                v
            }
            Holders::Heap(v) => {
                v.push(h);
                return;
            }
        };
        *self = Holders::Heap(spilled);
    }
}

impl std::ops::Deref for Holders {
    type Target = [Holder];
    fn deref(&self) -> &[Holder] {
        match self {
            Holders::Inline(n, arr) => &arr[..*n as usize],
            Holders::Heap(v) => v,
        }
    }
}

impl std::ops::DerefMut for Holders {
    fn deref_mut(&mut self) -> &mut [Holder] {
        match self {
            Holders::Inline(n, arr) => &mut arr[..*n as usize],
            Holders::Heap(v) => v,
        }
    }
}

impl<'a> IntoIterator for &'a Holders {
    type Item = &'a Holder;
    type IntoIter = std::slice::Iter<'a, Holder>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Extend<Holder> for Holders {
    fn extend<I: IntoIterator<Item = Holder>>(&mut self, iter: I) {
        for h in iter {
            self.push(h);
        }
    }
}

impl FromIterator<Holder> for Holders {
    fn from_iter<I: IntoIterator<Item = Holder>>(iter: I) -> Self {
        let mut hs = Holders::new();
        hs.extend(iter);
        hs
    }
}

/// Hasher for the node-id index: a multiply-rotate hash keyed once per
/// planner run from the std random state, several times faster than SipHash
/// on the millions of holder lookups of a large view. The index is only
/// looked up, never iterated, so neither the key nor the hash order can
/// reach the output.
#[derive(Clone, Copy)]
struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }
    fn write_u8(&mut self, x: u8) {
        self.add(x as u64);
    }
    fn write_u16(&mut self, x: u16) {
        self.add(x as u64);
    }
    fn write_u32(&mut self, x: u32) {
        self.add(x as u64);
    }
    fn write_u64(&mut self, x: u64) {
        self.add(x);
    }
    fn write_usize(&mut self, x: usize) {
        self.add(x as u64);
    }
    fn finish(&self) -> u64 {
        // Final avalanche (murmur3 fmix64) so the table's bucket bits mix.
        let mut z = self.0;
        z ^= z >> 33;
        z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
        z ^= z >> 33;
        z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        z ^ (z >> 33)
    }
}

#[derive(Clone, Copy)]
struct IdHashState(u64);

impl IdHashState {
    fn new() -> Self {
        use std::hash::BuildHasher;
        IdHashState(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

impl std::hash::BuildHasher for IdHashState {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0)
    }
}

#[derive(Clone, Debug)]
struct WBlock {
    /// Live holders (base and extra).
    holders: Holders,
    /// Total capacity of live holders.
    cap_sum: f64,
    heat: f64,
}

/// Heap entry; the max-heap pops the largest key, ties to the smallest node
/// index (= smallest id, since nodes are indexed in id order).
#[derive(Clone, Copy, Debug)]
struct Cand {
    key: f64,
    node: u32,
    /// Entry is live only while it matches the node's current version.
    ver: u32,
}
impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.key
            .total_cmp(&o.key)
            .then_with(|| o.node.cmp(&self.node))
    }
}

struct Planner<'a, N: NodeKey> {
    view: &'a ClusterView<N>,
    policy: &'a Policy,
    history: &'a History<N>,
    now: u64,
    /// Node ids sorted; index = position.
    ids: Vec<N>,
    nodes: Vec<WNode>,
    /// Parallel to `view.blocks`.
    blocks: Vec<WBlock>,
    /// CSR adjacency node -> view blocks it held at the start of the round.
    adj_start: Vec<u32>,
    adj: Vec<u32>,
    /// Capacity-weighted mean utilisation and the bands derived from it.
    mean_util: f64,
    /// Mean utilisation with every node's load capped at the upper band: the
    /// level the cluster settles at once overloads are relieved. Drops are
    /// judged against it, so a transient overload on a few nodes (a flash
    /// crowd) does not make everyone else look idle.
    settled_util: f64,
    /// Largest live serve capacity (bounds what one replica can absorb).
    max_cap: f64,
    hi: f64,
    lo: f64,
    drop_level: f64,
    mean_storage: f64,
    load_heap: BinaryHeap<Cand>,
    store_heap: BinaryHeap<Cand>,
    /// Heap pops left this round (load targets, storage targets): bounds the
    /// work when few targets qualify.
    load_scan_left: usize,
    store_scan_left: usize,
    /// Per-node entry versions: at most one live entry per node and heap.
    load_ver: Vec<u32>,
    store_ver: Vec<u32>,
    moved_bytes: u64,
    /// Blocks already decided on this round: later steps leave them alone
    /// (History only covers earlier rounds; this covers the current one).
    touched: Vec<bool>,
    out: Vec<Decision<N>>,
}

impl<'a, N: NodeKey> Planner<'a, N> {
    fn build(view: &'a ClusterView<N>, policy: &'a Policy, history: &'a History<N>) -> Self {
        // Index nodes in id order so that every tie-break by index is a tie-break by id.
        let mut order: Vec<usize> = (0..view.nodes.len()).collect();
        order.sort_by(|&a, &b| view.nodes[a].id.cmp(&view.nodes[b].id));
        order.dedup_by(|a, b| view.nodes[*a].id == view.nodes[*b].id);
        let mut ids = Vec::with_capacity(order.len());
        let mut nodes = Vec::with_capacity(order.len());
        for &i in &order {
            let v = &view.nodes[i];
            ids.push(v.id);
            let cap = if v.serve_capacity.is_finite() {
                v.serve_capacity.max(0.0)
            } else {
                0.0
            };
            nodes.push(WNode {
                cap,
                load: finite_or_zero(v.load).max(0.0),
                committed: 0.0,
                used: v.storage_used as f64,
                scap: v.storage_capacity as f64,
                alive: v.alive && cap > 0.0,
            });
        }
        // Lookups only; never iterated, so hash order cannot leak.
        let mut index: HashMap<N, u32, IdHashState> =
            HashMap::with_capacity_and_hasher(ids.len(), IdHashState::new());
        index.extend(ids.iter().enumerate().map(|(i, id)| (*id, i as u32)));
        let alive: Vec<bool> = nodes.iter().map(|n| n.alive).collect();
        let live = |n: &N| -> Option<u32> { index.get(n).copied().filter(|&i| alive[i as usize]) };

        // A view can hold millions of blocks, each naming a few random nodes:
        // this part is bound by memory latency. Work in simple passes over
        // compact arrays so the independent lookups overlap.
        // Pass 1: every holder id to a live node index (u32::MAX if none).
        let mut resolved: Vec<u32> = Vec::with_capacity(view.blocks.len() * 4);
        for b in &view.blocks {
            for n in b.holders.iter().chain(&b.extra) {
                resolved.push(live(n).unwrap_or(u32::MAX));
            }
        }
        // Pass 2: holder sets (deduplicated), capacity sums, degrees.
        let caps: Vec<f64> = nodes.iter().map(|n| n.cap).collect();
        let mut blocks = Vec::with_capacity(view.blocks.len());
        let mut degree = vec![0u32; nodes.len() + 1];
        let mut next = 0usize;
        for b in &view.blocks {
            let mut holders = Holders::new();
            let n_base = b.holders.len();
            let all = &resolved[next..next + n_base + b.extra.len()];
            next += all.len();
            let mut cap_sum = 0.0;
            for (k, &i) in all.iter().enumerate() {
                if i != u32::MAX && !holders.iter().any(|h| h.node == i) {
                    holders.push(Holder {
                        node: i,
                        extra: k >= n_base,
                    });
                    cap_sum += caps[i as usize];
                    degree[i as usize] += 1;
                }
            }
            blocks.push(WBlock {
                holders,
                cap_sum,
                heat: finite_or_zero(b.heat).max(0.0),
            });
        }
        drop(resolved);
        // Bands from the capacity-weighted means over live nodes.
        let (mut load_sum, mut cap_sum, mut used_sum, mut scap_sum) = (0.0, 0.0, 0.0, 0.0);
        for n in nodes.iter().filter(|n| n.alive) {
            load_sum += n.load;
            cap_sum += n.cap;
            used_sum += n.used;
            scap_sum += n.scap;
        }
        let mean_util = if cap_sum > 0.0 {
            load_sum / cap_sum
        } else {
            0.0
        };
        let hi = (mean_util * policy.hot_rel)
            .max(policy.util_floor)
            .min(policy.util_ceiling);
        let lo = hi * policy.cool_rel / policy.hot_rel;
        let settled_util = if cap_sum > 0.0 {
            nodes
                .iter()
                .filter(|n| n.alive)
                .map(|n| n.load.min(hi * n.cap))
                .sum::<f64>()
                / cap_sum
        } else {
            0.0
        };
        let drop_level = hi * policy.drop_rel / policy.hot_rel;
        let mean_storage = if scap_sum > 0.0 {
            used_sum / scap_sum
        } else {
            0.0
        };

        // Committed load: the share of every hot block (per-capacity heat above
        // the mean) ...

        let mut committed = vec![0.0f64; nodes.len()];
        for b in &blocks {
            if b.cap_sum > 0.0 {
                let rho = b.heat / b.cap_sum;
                for h in &b.holders {
                    committed[h.node as usize] += rho * caps[h.node as usize];
                }
            }
        }
        for (n, c) in nodes.iter_mut().zip(committed) {
            n.committed += c;
        }
        // ... plus record reads, pinned on the live delegate or else the root.
        for f in &view.files {
            let holder = match f.delegate {
                Some((d, exp)) if exp > view.now => live(&d).or_else(|| live(&f.root)),
                _ => live(&f.root),
            };
            if let Some(i) = holder {
                nodes[i as usize].committed += finite_or_zero(f.heat).max(0.0);
            }
        }
        // Pinned load cannot exceed what the node actually serves (several hot
        // shares on one node are levelled by routing, not added up).
        for n in nodes.iter_mut() {
            n.committed = n.committed.min(n.load);
        }
        // CSR adjacency node -> blocks.
        let mut adj_start = vec![0u32; nodes.len() + 1];
        for i in 0..nodes.len() {
            adj_start[i + 1] = adj_start[i] + degree[i];
        }
        let mut fill = adj_start.clone();
        let mut adj = vec![0u32; adj_start[nodes.len()] as usize];
        for (bi, b) in blocks.iter().enumerate() {
            for h in &b.holders {
                let slot = &mut fill[h.node as usize];
                adj[*slot as usize] = bi as u32;
                *slot += 1;
            }
        }

        let n_nodes = nodes.len();
        // Heap pops per round: grows with the decisions the round may emit
        // and with the swarm only up to a point, so a round's cost stays
        // bounded at 10^5 nodes when many candidates fail their checks.
        let scan_budget = 4 * (policy.max_decisions + n_nodes.min(SCAN_NODES));
        let max_cap = nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.cap)
            .fold(0.0, f64::max);
        let mut p = Planner {
            view,
            policy,
            history,
            now: view.now,
            ids,
            nodes,
            blocks,
            adj_start,
            adj,
            mean_util,
            settled_util,
            max_cap,
            hi,
            lo,
            drop_level,
            mean_storage,
            load_heap: BinaryHeap::new(),
            store_heap: BinaryHeap::new(),
            load_scan_left: scan_budget,
            store_scan_left: scan_budget,
            load_ver: vec![0; n_nodes],
            store_ver: vec![0; n_nodes],
            moved_bytes: 0,
            touched: vec![false; view.blocks.len()],
            out: Vec::new(),
        };
        for i in 0..p.nodes.len() as u32 {
            p.push_load(i);
        }
        p
    }

    fn full(&self) -> bool {
        self.out.len() >= self.policy.max_decisions
    }

    fn emit(&mut self, d: Decision<N>) {
        self.out.push(d);
    }

    // --- light-node candidates ------------------------------------------

    /// Spare serve capacity below the upper band (the heap key).
    fn spare(&self, i: u32) -> f64 {
        let n = &self.nodes[i as usize];
        self.hi * n.cap - n.pressure()
    }

    /// A light node: alive and at or below the lower band.
    fn is_light(&self, i: u32) -> bool {
        let n = &self.nodes[i as usize];
        n.alive && n.pressure() <= self.lo * n.cap
    }

    /// (Re-)enter node `i` as a light candidate, superseding older entries.
    fn push_load(&mut self, i: u32) {
        self.load_ver[i as usize] = self.load_ver[i as usize].wrapping_add(1);
        if self.is_light(i) {
            let key = self.spare(i);
            let ver = self.load_ver[i as usize];
            self.load_heap.push(Cand { key, node: i, ver });
        }
    }

    /// Pop the light node with the most spare capacity. Entries superseded by
    /// a later push are discarded; an entry whose key went stale (the node's
    /// load changed without a push) is re-entered with its current key.
    fn pop_load(&mut self) -> Option<u32> {
        while self.load_scan_left > 0 {
            self.load_scan_left -= 1;
            let c = self.load_heap.pop()?;
            if c.ver != self.load_ver[c.node as usize] {
                continue;
            }
            let key = self.spare(c.node);
            if !self.is_light(c.node) || (key - c.key).abs() > 1e-9 * (1.0 + key.abs()) {
                self.push_load(c.node);
                continue;
            }
            self.load_ver[c.node as usize] = self.load_ver[c.node as usize].wrapping_add(1);
            return Some(c.node);
        }
        None
    }

    /// Would `extra` more load keep node `i` inside its band? The new load
    /// comes on top of everything the node serves now: its flexible traffic
    /// is not assumed to shift away (that would push its co-holders up).
    fn fits_load(&self, i: u32, extra: f64) -> bool {
        let n = &self.nodes[i as usize];
        n.pressure() + extra <= self.hi * n.cap
    }

    /// Would `extra` more *pinned* load keep node `i` inside its band? Pinned
    /// load (record reads of a delegated file) is served first; the node's
    /// flexible block traffic then levels with its co-holders, so only its
    /// already pinned load adds up.
    fn fits_pinned(&self, i: u32, extra: f64) -> bool {
        let n = &self.nodes[i as usize];
        n.load.max(n.committed + extra) <= self.hi * n.cap
    }

    /// Load that node `t` would receive as a new holder of block `bi` (with
    /// `leaving` no longer a holder), predicted the way readers route: they
    /// send each read to the least-loaded live holder, which water-fills the
    /// block's heat over its holders on top of whatever else each of them
    /// serves. Inverting that fill gives each holder's other load: holders
    /// above the least-utilised ones got none of the block, those at the
    /// bottom level share it by capacity. Loads and heat are padded by
    /// `margin` (reports are noisy); the result never exceeds the whole
    /// (padded) heat.
    fn inflow(&self, bi: usize, t: u32, leaving: Option<u32>, margin: f64) -> f64 {
        let b = &self.blocks[bi];
        let m = 1.0 + margin.max(0.0);
        let nt = &self.nodes[t as usize];
        let util = |i: u32| {
            let n = &self.nodes[i as usize];
            n.pressure() / n.cap
        };
        // The block's current level: its least-utilised holders (with a
        // tolerance for report noise) are the ones serving it.
        let floor = b
            .holders
            .iter()
            .map(|h| util(h.node))
            .fold(f64::INFINITY, f64::min);
        let at_floor = |i: u32| util(i) <= floor * (1.0 + margin.max(0.0)) + 1e-12;
        let floor_cap: f64 = b
            .holders
            .iter()
            .filter(|h| at_floor(h.node))
            .map(|h| self.nodes[h.node as usize].cap)
            .sum();
        let mut lv: Vec<(f64, f64)> = Vec::with_capacity(b.holders.len() + 1);
        for h in &b.holders {
            if Some(h.node) == leaving || h.node == t {
                continue;
            }
            let n = &self.nodes[h.node as usize];
            let share = if at_floor(h.node) && floor_cap > 0.0 {
                b.heat * n.cap / floor_cap
            } else {
                0.0
            };
            lv.push(((n.pressure() - share).max(0.0) * m, n.cap));
        }
        let heat = b.heat * m;
        let t_base = nt.pressure();
        lv.push((t_base, nt.cap));
        let level = water_level(&mut lv, heat);
        (level * nt.cap - t_base).clamp(0.0, heat)
    }

    /// Would `bytes` more keep node `i` at or below the storage fill limit?
    fn fits_storage(&self, i: u32, bytes: f64, limit_rel: f64) -> bool {
        let n = &self.nodes[i as usize];
        n.used + bytes <= n.scap && n.used + bytes <= self.mean_storage * limit_rel * n.scap
    }

    /// Apply a change of block `bi`'s holder set. Every holder's committed
    /// share is recomputed against the new capacity sum; holders that stay
    /// also see their observed load change by the difference in their
    /// capacity-proportional share. New holders' observed loads stay as they
    /// are: their flexible traffic can shift to co-holders.
    fn reshare(&mut self, bi: usize, new_holders: Holders) {
        let heat = self.blocks[bi].heat;
        let old_sum = self.blocks[bi].cap_sum;
        let new_sum: f64 = new_holders
            .iter()
            .map(|h| self.nodes[h.node as usize].cap)
            .sum();
        let old_rho = pinned_rho(heat, old_sum, self.mean_util);
        let new_rho = pinned_rho(heat, new_sum, self.mean_util);
        for h in &self.blocks[bi].holders {
            let n = &mut self.nodes[h.node as usize];
            n.committed -= old_rho * n.cap;
            if old_sum > 0.0 {
                n.load = (n.load - heat * n.cap / old_sum).max(0.0);
            }
        }
        for h in &new_holders {
            let n = &mut self.nodes[h.node as usize];
            n.committed += new_rho * n.cap;
            if new_sum > 0.0 && self.blocks[bi].holders.iter().any(|o| o.node == h.node) {
                n.load += heat * n.cap / new_sum;
            }
        }
        let b = &mut self.blocks[bi];
        b.holders = new_holders;
        b.cap_sum = new_sum;
    }

    // --- 1. delegations ---------------------------------------------------

    fn delegations(&mut self) {
        let view = self.view;
        let hold = self.policy.hold_ms;
        let lease = self.policy.lease_ms;
        // Hottest files first; ties by key.
        let mut order: Vec<usize> = (0..view.files.len()).collect();
        order.sort_by(|&a, &b| {
            let (fa, fb) = (&view.files[a], &view.files[b]);
            fb.heat
                .total_cmp(&fa.heat)
                .then_with(|| fa.key.cmp(&fb.key))
        });
        for fi in order {
            if self.full() {
                return;
            }
            let f = &view.files[fi];
            let heat = finite_or_zero(f.heat).max(0.0);
            let Some(root) = self.live(&f.root) else {
                continue; // dead root: the DHT moves the record; nothing to delegate from
            };
            let active = match f.delegate {
                Some((d, exp)) if exp > self.now => self.live(&d).map(|i| (i, exp)),
                _ => None,
            };
            if let Some((d, exp)) = active {
                // Renew a lease that is past half-time unless the heat is gone
                // (then end_delegations will hand duties back).
                if exp.saturating_sub(self.now) < lease / 2 && !self.delegation_done(root, heat) {
                    self.emit(Decision::Delegate {
                        file: f.key,
                        root: f.root,
                        to: self.ids[d as usize],
                        expires_at: self.now + lease,
                    });
                }
                continue;
            }
            let r = &self.nodes[root as usize];
            let hot_root = r.load > self.hi * r.cap;
            if !hot_root || heat < self.policy.delegate_min_share * r.cap {
                continue;
            }
            if !allowed(self.history.file_mark(&f.key), false, self.now, hold) {
                continue; // ended within the hold time: re-delegating would reverse it
            }
            let mut aside = Vec::new();
            let mut chosen = None;
            for _ in 0..self.policy.max_scan {
                let Some(t) = self.pop_load() else { break };
                aside.push(t);
                if t != root && self.fits_pinned(t, heat) {
                    chosen = Some(t);
                    break;
                }
            }
            if let Some(t) = chosen {
                let rn = &mut self.nodes[root as usize];
                rn.committed -= heat;
                rn.load = (rn.load - heat).max(0.0);
                self.nodes[t as usize].committed += heat;
                self.emit(Decision::Delegate {
                    file: f.key,
                    root: f.root,
                    to: self.ids[t as usize],
                    expires_at: self.now + lease,
                });
            }
            for t in aside {
                self.push_load(t);
            }
        }
    }

    /// Heat has gone: the record is cold and the root can take it back
    /// while staying below the lower band.
    fn delegation_done(&self, root: u32, heat: f64) -> bool {
        let r = &self.nodes[root as usize];
        heat < 0.5 * self.policy.delegate_min_share * r.cap && r.load + heat <= self.lo * r.cap
    }

    fn live(&self, n: &N) -> Option<u32> {
        let i = self.ids.binary_search(n).ok()? as u32;
        self.nodes[i as usize].alive.then_some(i)
    }

    // --- 2. hot blocks ----------------------------------------------------

    /// Blocks whose heat per unit of holder capacity is above the upper band
    /// get enough extra replicas to bring it down to the lower band.
    fn hot_blocks(&mut self) {
        let mut hot: Vec<(f64, usize)> = self
            .blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.cap_sum > 0.0 && b.heat > self.hi * b.cap_sum)
            .map(|(i, b)| (b.heat / b.cap_sum, i))
            .collect();
        hot.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.view.blocks[a.1].id.cmp(&self.view.blocks[b.1].id))
        });
        for (_, bi) in hot {
            if self.full() {
                return;
            }
            let room = self.extra_room(bi);
            self.grow(bi, room);
        }
    }

    /// How many more extras block `bi` may get.
    fn extra_room(&self, bi: usize) -> usize {
        let extras = self.blocks[bi].holders.iter().filter(|h| h.extra).count();
        self.policy.max_extra_per_block.saturating_sub(extras)
    }

    /// Budget a light node can still take on as committed load (the rest of
    /// its traffic is flexible and can shift to co-holders).
    fn budget(&self, i: u32) -> f64 {
        let n = &self.nodes[i as usize];
        self.lo * n.cap - n.committed
    }

    /// Can `t` become a new holder of block `bi` at all?
    fn usable_target(&self, bi: usize, t: u32) -> bool {
        let vb = &self.view.blocks[bi];
        !self.blocks[bi].holders.iter().any(|h| h.node == t)
            && self
                .history
                .may_add(&vb.id, self.ids[t as usize], self.now, self.policy.hold_ms)
            && self.fits_storage(t, vb.size as f64, 1.0 + self.policy.storage_aim)
    }

    /// Add extra replicas of hot block `bi` (at most `max_new`) so that its
    /// heat fits under the lower band: existing holders carry up to `lo` of
    /// their capacity, new holders absorb the rest from their budgets.
    /// All or nothing: readers level a block's holders, so a partial fix
    /// would pull every new holder up to the (still overloaded) level of the
    /// old ones. If the `lo` budgets run out, the `hi` band is the fallback.
    /// Returns the number of replicas added.
    fn grow(&mut self, bi: usize, max_new: usize) -> usize {
        let max_new = max_new.min(self.policy.max_decisions.saturating_sub(self.out.len()));
        if max_new == 0 || self.blocks[bi].holders.is_empty() {
            return 0;
        }
        let (heat, cap_sum) = (self.blocks[bi].heat, self.blocks[bi].cap_sum);
        let mut deficit = heat - self.lo * cap_sum;
        if deficit <= 0.0 {
            return 0;
        }
        let mut chosen: Vec<(u32, f64)> = Vec::new();
        let mut aside: Vec<u32> = Vec::new();
        for _ in 0..self.policy.max_scan + max_new {
            if deficit <= 0.0 || chosen.len() >= max_new {
                break;
            }
            let Some(t) = self.pop_load() else { break };
            aside.push(t);
            // Skip slivers: a new replica should carry a tenth of its node at least.
            let budget = self.budget(t);
            if budget >= 0.1 * self.lo * self.nodes[t as usize].cap && self.usable_target(bi, t) {
                let a = budget.min(deficit);
                chosen.push((t, a));
                deficit -= a;
            }
        }
        if deficit > 0.0 {
            // Fallback: let everyone involved go up to the upper band.
            let slack: f64 = (self.hi - self.lo) * cap_sum
                + chosen
                    .iter()
                    .map(|&(t, a)| {
                        self.hi * self.nodes[t as usize].cap - self.nodes[t as usize].committed - a
                    })
                    .sum::<f64>();
            if chosen.is_empty() || slack < deficit {
                for t in aside {
                    self.push_load(t);
                }
                return 0;
            }
            let f = deficit / slack;
            for (t, a) in chosen.iter_mut() {
                let n = &self.nodes[*t as usize];
                *a += (self.hi * n.cap - n.committed - *a) * f;
            }
        }
        // Book it: new holders commit their allocation; old holders keep the
        // rest, spread by capacity.
        let given: f64 = chosen.iter().map(|&(_, a)| a).sum();
        let old_rho = heat / cap_sum;
        let new_rho = (heat - given).max(0.0) / cap_sum;
        for k in 0..self.blocks[bi].holders.len() {
            let h = self.blocks[bi].holders[k];
            let n = &mut self.nodes[h.node as usize];
            let relief = (old_rho - new_rho) * n.cap;
            n.committed = (n.committed - relief).max(0.0);
            n.load = (n.load - relief).max(0.0);
        }
        let size = self.view.blocks[bi].size as f64;
        for &(t, a) in &chosen {
            let n = &mut self.nodes[t as usize];
            n.committed += a;
            n.used += size;
        }
        // Copy from the live holder with the most spare capacity.
        let from = self.blocks[bi]
            .holders
            .iter()
            .map(|h| h.node)
            .max_by(|&a, &b| self.spare(a).total_cmp(&self.spare(b)).then(b.cmp(&a)))
            .unwrap_or(self.blocks[bi].holders[0].node);
        let b = &mut self.blocks[bi];
        b.holders.extend(chosen.iter().map(|&(t, _)| Holder {
            node: t,
            extra: true,
        }));
        b.cap_sum += chosen
            .iter()
            .map(|&(t, _)| self.nodes[t as usize].cap)
            .sum::<f64>();
        self.touched[bi] = true;
        let vb = &self.view.blocks[bi];
        for &(t, _) in &chosen {
            self.out.push(Decision::Replicate {
                block: vb.id,
                file: vb.file,
                from: self.ids[from as usize],
                to: self.ids[t as usize],
            });
        }
        for t in aside {
            self.push_load(t);
        }
        chosen.len()
    }

    /// Relieve an overloaded holder of block `bi` with one more replica, if
    /// the block's level after it stays under the lower band. Returns whether
    /// a replica was added.
    fn grow_one(&mut self, bi: usize) -> bool {
        if self.full() || self.blocks[bi].holders.is_empty() {
            return false;
        }
        let (heat, cap_sum) = (self.blocks[bi].heat, self.blocks[bi].cap_sum);
        // Not even the biggest node would bring the block under the band.
        if heat / (cap_sum + self.max_cap) > self.lo {
            return false;
        }
        let mut aside = Vec::new();
        let mut found = None;
        // A quarter of the full scan: the heap is ordered by spare capacity,
        // so deep candidates rarely have the budget a relief replica needs.
        for _ in 0..self.policy.max_scan {
            let Some(t) = self.pop_load() else { break };
            aside.push(t);
            let cap_t = self.nodes[t as usize].cap;
            let share = heat * cap_t / (cap_sum + cap_t);
            if heat / (cap_sum + cap_t) <= self.lo
                && share <= self.budget(t)
                && self.usable_target(bi, t)
            {
                // Booked as predicted load below, so that several relief
                // replicas landing on `t` in one round add up.
                found = Some((t, self.inflow(bi, t, None, 0.0)));
                break;
            }
        }
        if let Some((t, inflow)) = found {
            let mut holders = self.blocks[bi].holders.clone();
            holders.push(Holder {
                node: t,
                extra: true,
            });
            let from = self.blocks[bi]
                .holders
                .iter()
                .map(|h| h.node)
                .max_by(|&a, &b| self.spare(a).total_cmp(&self.spare(b)).then(b.cmp(&a)))
                .unwrap_or(t);
            self.reshare(bi, holders);
            // reshare books pinned shares only above the mean; a relief replica
            // still takes its capacity share.
            let cap_t = self.nodes[t as usize].cap;
            let share = heat * cap_t / self.blocks[bi].cap_sum;
            let n = &mut self.nodes[t as usize];
            n.committed = n.committed.max(share);
            n.load += inflow;
            n.used += self.view.blocks[bi].size as f64;
            self.touched[bi] = true;
            let vb = &self.view.blocks[bi];
            self.out.push(Decision::Replicate {
                block: vb.id,
                file: vb.file,
                from: self.ids[from as usize],
                to: self.ids[t as usize],
            });
        }
        for t in aside {
            self.push_load(t);
        }
        found.is_some()
    }

    /// Relieve overloaded node `i` of its copy of block `bi`: a base copy
    /// `Move`s to a light node, an extra is re-created on a light node and
    /// dropped here. The target must stay at or below the lower band with
    /// the block's reads as readers would route them. Returns whether it
    /// happened.
    fn shift_one(&mut self, bi: usize, i: u32) -> bool {
        let Some(pos) = self.blocks[bi].holders.iter().position(|h| h.node == i) else {
            return false;
        };
        let extra = self.blocks[bi].holders[pos].extra;
        let vb = &self.view.blocks[bi];
        let need = if extra { 2 } else { 1 };
        if self.touched[bi]
            || self.out.len() + need > self.policy.max_decisions
            || self.moved_bytes + vb.size > self.policy.max_move_bytes
            || !self
                .history
                .may_remove(&vb.id, self.ids[i as usize], self.now, self.policy.hold_ms)
        {
            return false;
        }
        let mut aside = Vec::new();
        let mut found = None;
        let mut misses = 0;
        for _ in 0..self.policy.max_scan {
            let Some(t) = self.pop_load() else { break };
            aside.push(t);
            if !self.usable_target(bi, t) {
                continue;
            }
            let inflow = self.inflow(bi, t, Some(i), self.policy.load_margin);
            let n = &self.nodes[t as usize];
            if n.pressure() + inflow <= self.lo * n.cap {
                found = Some((t, inflow));
                break;
            }
            // Candidates come most-spare first: if these could not take it,
            // the rest will not either.
            misses += 1;
            if misses >= SHIFT_MISSES {
                break;
            }
        }
        if let Some((t, inflow)) = found {
            let mut holders = self.blocks[bi].holders.clone();
            holders[pos].node = t;
            self.reshare(bi, holders);
            let size = vb.size as f64;
            self.nodes[t as usize].load += inflow;
            self.nodes[t as usize].used += size;
            self.nodes[i as usize].used -= size;
            self.moved_bytes += vb.size;
            self.touched[bi] = true;
            let (from, to) = (self.ids[i as usize], self.ids[t as usize]);
            if extra {
                self.emit(Decision::Replicate {
                    block: vb.id,
                    file: vb.file,
                    from,
                    to,
                });
                self.emit(Decision::Drop {
                    block: vb.id,
                    file: vb.file,
                    at: from,
                });
            } else {
                self.emit(Decision::Move {
                    block: vb.id,
                    file: vb.file,
                    from,
                    to,
                    bytes: vb.size,
                });
            }
        }
        for t in aside {
            self.push_load(t);
        }
        found.is_some()
    }

    // --- 3. hot nodes -----------------------------------------------------

    /// Nodes still above the upper band whose overload is committed (several
    /// warm blocks rather than shiftable traffic): add one replica at a time
    /// to their biggest contributors until they are predicted below the lower band.
    fn hot_nodes(&mut self) {
        let mut hot: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| {
                let n = &self.nodes[i as usize];
                n.alive && n.load > self.hi * n.cap && n.committed > self.lo * n.cap
            })
            .collect();
        hot.sort_by(|&a, &b| {
            let (na, nb) = (&self.nodes[a as usize], &self.nodes[b as usize]);
            (nb.load / nb.cap)
                .total_cmp(&(na.load / na.cap))
                .then(a.cmp(&b))
        });
        for i in hot {
            let range =
                self.adj_start[i as usize] as usize..self.adj_start[i as usize + 1] as usize;
            let mut mine: Vec<(f64, u32)> = self.adj[range]
                .iter()
                .filter_map(|&bi| {
                    let b = &self.blocks[bi as usize];
                    b.holders
                        .iter()
                        .any(|h| h.node == i)
                        .then(|| (b.heat / b.cap_sum, bi))
                })
                .collect();
            mine.sort_by(|a, b| {
                b.0.total_cmp(&a.0).then_with(|| {
                    self.view.blocks[a.1 as usize]
                        .id
                        .cmp(&self.view.blocks[b.1 as usize].id)
                })
            });
            let mut misses = 0;
            for (_, bi) in mine {
                if self.full() || self.load_scan_left == 0 {
                    return; // out of decisions, or of light candidates to try
                }
                let n = &self.nodes[i as usize];
                if n.pressure() <= self.lo * n.cap || misses >= RELIEF_MISSES {
                    break;
                }
                // Handing this node's copy to a light node relieves it of the
                // block's whole share with one copy; an extra replica only
                // relieves it of a 1/(holders + 1) part (little when the
                // block already has many holders), so it is the fallback.
                let relieved = self.shift_one(bi as usize, i)
                    || (self.extra_room(bi as usize) > 0 && self.grow_one(bi as usize));
                misses = if relieved { 0 } else { misses + 1 };
            }
        }
    }

    // --- 4. storage band ---------------------------------------------------

    fn storage_util(&self, i: u32) -> f64 {
        let n = &self.nodes[i as usize];
        if n.scap > 0.0 {
            n.used / n.scap
        } else {
            f64::INFINITY
        }
    }

    fn push_store(&mut self, i: u32) {
        self.store_ver[i as usize] = self.store_ver[i as usize].wrapping_add(1);
        let s = self.storage_util(i);
        if self.nodes[i as usize].alive && s < self.mean_storage {
            // Max-heap on -utilisation = emptiest first.
            let ver = self.store_ver[i as usize];
            self.store_heap.push(Cand {
                key: -s,
                node: i,
                ver,
            });
        }
    }

    fn pop_store(&mut self) -> Option<u32> {
        while self.store_scan_left > 0 {
            self.store_scan_left -= 1;
            let c = self.store_heap.pop()?;
            if c.ver != self.store_ver[c.node as usize] {
                continue;
            }
            let s = self.storage_util(c.node);
            if !self.nodes[c.node as usize].alive || s >= self.mean_storage || -s != c.key {
                self.push_store(c.node);
                continue;
            }
            self.store_ver[c.node as usize] = self.store_ver[c.node as usize].wrapping_add(1);
            return Some(c.node);
        }
        None
    }

    /// HDFS-balancer rule: nodes above `mean·(1+band)` move their coldest
    /// known base blocks to the emptiest nodes (filled at most to the mean)
    /// until they are at `mean·(1+aim)`; at most `max_move_bytes` per round.
    fn storage_moves(&mut self) {
        let upper = self.mean_storage * (1.0 + self.policy.storage_band);
        let aim = self.mean_storage * (1.0 + self.policy.storage_aim);
        let mut sources: Vec<u32> = (0..self.nodes.len() as u32)
            .filter(|&i| self.nodes[i as usize].alive && self.storage_util(i) > upper)
            .collect();
        if sources.is_empty() {
            return;
        }
        sources.sort_by(|&a, &b| {
            self.storage_util(b)
                .total_cmp(&self.storage_util(a))
                .then(a.cmp(&b))
        });
        for i in 0..self.nodes.len() as u32 {
            self.push_store(i);
        }
        let hold = self.policy.hold_ms;
        for src in sources {
            let range =
                self.adj_start[src as usize] as usize..self.adj_start[src as usize + 1] as usize;
            // Coldest first: moving them shifts the least load.
            let mut mine: Vec<u32> = self.adj[range]
                .iter()
                .copied()
                .filter(|&bi| {
                    self.blocks[bi as usize]
                        .holders
                        .iter()
                        .any(|h| h.node == src && !h.extra)
                })
                .collect();
            mine.sort_by(|&a, &b| {
                let (ba, bb) = (&self.view.blocks[a as usize], &self.view.blocks[b as usize]);
                self.blocks[a as usize]
                    .heat
                    .total_cmp(&self.blocks[b as usize].heat)
                    .then_with(|| ba.id.cmp(&bb.id))
            });
            for bi in mine {
                let bi = bi as usize;
                if self.storage_util(src) <= aim {
                    break;
                }
                if self.store_scan_left == 0 || self.store_heap.is_empty() {
                    return; // no target left to try this round
                }
                let vb = &self.view.blocks[bi];
                let size = vb.size;
                if self.full() || self.moved_bytes + size > self.policy.max_move_bytes {
                    return;
                }
                let src_id = self.ids[src as usize];
                if self.touched[bi] || !self.history.may_remove(&vb.id, src_id, self.now, hold) {
                    continue; // it just arrived here: moving it on would reverse that
                }
                // (The per-round scan budget bounds the work when targets
                // keep failing.)
                let Some((t, inflow)) = self.store_target(bi, src) else {
                    continue;
                };
                let mut holders = self.blocks[bi].holders.clone();
                for h in holders.iter_mut() {
                    if h.node == src {
                        h.node = t;
                    }
                }
                // The mover is a new holder: it is not in the old set, so
                // reshare adds its share to `committed` only; its predicted
                // load grows by what readers will route to it.
                self.reshare(bi, holders);
                self.nodes[t as usize].load += inflow;
                self.nodes[src as usize].used -= size as f64;
                self.nodes[t as usize].used += size as f64;
                self.moved_bytes += size;
                self.touched[bi] = true;
                self.push_store(t);
                self.emit(Decision::Move {
                    block: vb.id,
                    file: vb.file,
                    from: src_id,
                    to: self.ids[t as usize],
                    bytes: size,
                });
            }
        }
    }

    /// Emptiest node that can take block `bi` from `src` without leaving its
    /// storage or load band.
    fn store_target(&mut self, bi: usize, src: u32) -> Option<(u32, f64)> {
        let vb = &self.view.blocks[bi];
        let mut aside = Vec::new();
        let mut found = None;
        for _ in 0..self.policy.max_scan {
            let Some(t) = self.pop_store() else { break };
            if !self.fits_storage(t, vb.size as f64, 1.0) || !self.fits_load(t, 0.0) {
                // Full up to the mean, or overloaded, for this round: it would
                // refuse the next (similar) block too, so it leaves the heap.
                self.store_ver[t as usize] = self.store_ver[t as usize].wrapping_add(1);
                continue;
            }
            aside.push(t);
            if self.blocks[bi].holders.iter().any(|h| h.node == t)
                || !self.history.may_add(
                    &vb.id,
                    self.ids[t as usize],
                    self.now,
                    self.policy.hold_ms,
                )
            {
                continue;
            }
            let inflow = self.inflow(bi, t, Some(src), self.policy.load_margin);
            if self.fits_load(t, inflow) {
                found = Some((t, inflow));
                break;
            }
        }
        for t in aside {
            if found.map(|f| f.0) != Some(t) {
                self.push_store(t);
            }
        }
        found
    }

    // --- 5. undo: drops and ended delegations --------------------------------

    /// Drop the extras of blocks whose heat has gone: the live base holders
    /// alone could carry it below the drop level. (Extras are sized by the
    /// budgets of busy nodes, so the block's heat per total holder capacity
    /// says little about whether they are still needed; the base holders'
    /// capacity is the stable yardstick.) Never below R live holders, never
    /// within the hold time of an extra's creation, never pushing a remaining
    /// holder above the mean utilisation.
    fn drops(&mut self) {
        let r = self.view.replication;
        let mut cands: Vec<(f64, usize)> = self
            .blocks
            .iter()
            .enumerate()
            .filter(|&(i, b)| {
                !self.touched[i] && b.holders.iter().any(|h| h.extra) && b.holders.len() > r
            })
            .filter_map(|(i, b)| {
                let base: f64 = b
                    .holders
                    .iter()
                    .filter(|h| !h.extra)
                    .map(|h| self.nodes[h.node as usize].cap)
                    .sum();
                (base > 0.0 && b.heat <= self.drop_level * base).then_some((b.heat / base, i))
            })
            .collect();
        cands.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then_with(|| self.view.blocks[a.1].id.cmp(&self.view.blocks[b.1].id))
        });
        let hold = self.policy.hold_ms;
        for (_, bi) in cands {
            loop {
                if self.full() {
                    return;
                }
                let b = &self.blocks[bi];
                if b.holders.len() <= r {
                    break;
                }
                let vb = &self.view.blocks[bi];
                // Drop the busiest droppable extra first; ties by id.
                let mut extras: Vec<u32> = b
                    .holders
                    .iter()
                    .filter(|h| h.extra)
                    .map(|h| h.node)
                    .filter(|&x| {
                        self.history
                            .may_remove(&vb.id, self.ids[x as usize], self.now, hold)
                    })
                    .collect();
                extras.sort_by(|&a, &b| {
                    let (na, nb) = (&self.nodes[a as usize], &self.nodes[b as usize]);
                    (nb.pressure() / nb.cap)
                        .total_cmp(&(na.pressure() / na.cap))
                        .then(a.cmp(&b))
                });
                let mut dropped = false;
                for x in extras {
                    let new_sum = b.cap_sum - self.nodes[x as usize].cap;
                    if new_sum <= 0.0 {
                        continue;
                    }
                    // Remaining holders absorb the dropped share and must stay
                    // below the mean: relief replicas (added above `hi`) only
                    // go once their holders have cooled well below it.
                    let ok = b.holders.iter().filter(|h| h.node != x).all(|h| {
                        let n = &self.nodes[h.node as usize];
                        let delta = b.heat * n.cap * (1.0 / new_sum - 1.0 / b.cap_sum);
                        n.pressure() + delta <= self.settled_util * n.cap
                    });
                    if !ok {
                        continue;
                    }
                    let holders: Holders =
                        b.holders.iter().copied().filter(|h| h.node != x).collect();
                    // Remaining holders were all in the old set, so reshare
                    // raises their load too.
                    self.reshare(bi, holders);
                    self.nodes[x as usize].used -= vb.size as f64;
                    self.emit(Decision::Drop {
                        block: vb.id,
                        file: vb.file,
                        at: self.ids[x as usize],
                    });
                    dropped = true;
                    break;
                }
                if !dropped {
                    break;
                }
            }
        }
    }

    fn end_delegations(&mut self) {
        let view = self.view;
        let mut order: Vec<usize> = (0..view.files.len()).collect();
        // Coldest first; ties by key.
        order.sort_by(|&a, &b| {
            let (fa, fb) = (&view.files[a], &view.files[b]);
            fa.heat
                .total_cmp(&fb.heat)
                .then_with(|| fa.key.cmp(&fb.key))
        });
        for fi in order {
            if self.full() {
                return;
            }
            let f = &view.files[fi];
            let Some((d, exp)) = f.delegate else { continue };
            if exp <= self.now {
                continue; // expired leases lapse by themselves
            }
            let (Some(root), Some(di)) = (self.live(&f.root), self.live(&d)) else {
                continue; // skip dead nodes; the lease will lapse
            };
            let heat = finite_or_zero(f.heat).max(0.0);
            if di == root
                || !self.delegation_done(root, heat)
                || !allowed(
                    self.history.file_mark(&f.key),
                    true,
                    self.now,
                    self.policy.hold_ms,
                )
            {
                continue;
            }
            let rn = &mut self.nodes[root as usize];
            rn.committed += heat;
            rn.load += heat;
            let dn = &mut self.nodes[di as usize];
            dn.committed -= heat;
            dn.load = (dn.load - heat).max(0.0);
            self.emit(Decision::EndDelegation { file: f.key, at: d });
        }
    }
}

/// Per-capacity heat of a block if it is above the mean utilisation (its
/// holders cannot shed it), else 0 (routing can level it with other traffic).
fn pinned_rho(heat: f64, cap_sum: f64, mean_util: f64) -> f64 {
    if cap_sum <= 0.0 {
        return 0.0;
    }
    let rho = heat / cap_sum;
    if rho > mean_util {
        rho
    } else {
        0.0
    }
}

/// The common utilisation level at which `amount` spread over nodes with
/// (load, capacity) `nodes` fills the least-utilised ones first (readers'
/// water-filling). Sorts `nodes` by utilisation.
fn water_level(nodes: &mut [(f64, f64)], amount: f64) -> f64 {
    nodes.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    let (mut l, mut c, mut level) = (0.0, 0.0, 0.0);
    for k in 0..nodes.len() {
        l += nodes[k].0;
        c += nodes[k].1;
        level = (amount + l) / c;
        if k + 1 < nodes.len() && nodes[k + 1].0 / nodes[k + 1].1 >= level {
            break;
        }
    }
    level
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: f64 = 100.0;
    const GB: u64 = 1 << 30;

    fn bid(i: u32) -> BlockId {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id
    }

    fn fkey(i: u32) -> FileKey {
        let mut id = [0xffu8; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id
    }

    fn node(id: u32, util: f64) -> NodeView<u32> {
        NodeView {
            id,
            alive: true,
            serve_capacity: CAP,
            load: util * CAP,
            storage_used: 10 * GB,
            storage_capacity: 100 * GB,
        }
    }

    fn block(i: u32, holders: &[u32], heat: f64) -> BlockView<u32> {
        BlockView {
            id: bid(i),
            file: fkey(i),
            size: 1 << 20,
            holders: holders.to_vec(),
            extra: vec![],
            heat,
        }
    }

    /// `n` nodes at utilisation 0.5, except node 0..3 which hold one hot block.
    fn hot_cluster(n: u32, hot_heat: f64) -> ClusterView<u32> {
        let mut nodes: Vec<_> = (0..n).map(|i| node(i, 0.5)).collect();
        for nd in nodes.iter_mut().take(3) {
            nd.load = (hot_heat / 3.0).min(2.0 * CAP);
        }
        ClusterView {
            now: 1_000_000,
            replication: 3,
            nodes,
            files: vec![],
            blocks: vec![block(1, &[0, 1, 2], hot_heat)],
        }
    }

    fn replicas_to(ds: &[Decision<u32>]) -> Vec<u32> {
        ds.iter()
            .filter_map(|d| match d {
                Decision::Replicate { to, .. } => Some(*to),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hot_block_gets_replicas_on_light_nodes() {
        let view = hot_cluster(40, 600.0);
        let ds = plan(&view, &Policy::default(), &History::new());
        let to = replicas_to(&ds);
        assert!(!to.is_empty(), "{ds:?}");
        assert!(to.iter().all(|t| *t >= 3), "targets must be new holders");
    }

    #[test]
    fn hysteresis_inside_band_triggers_nothing() {
        // Utilisation oscillating inside the band: every node between the
        // mean and the upper band, blocks warm but below the upper band.
        let policy = Policy::default();
        let mut history = History::new();
        for round in 0..20u64 {
            let wobble = if round % 2 == 0 { 1.08 } else { 0.95 };
            let mut nodes: Vec<_> = (0..30).map(|i| node(i, 0.6)).collect();
            for nd in nodes.iter_mut().take(3) {
                nd.load = 0.6 * wobble * CAP; // up to 1.08 x mean < 1.2 x mean
            }
            let view = ClusterView {
                now: round * 10_000,
                replication: 3,
                nodes,
                files: vec![],
                // per-capacity heat 0.6·1.08 ≈ 0.65, below hi ≈ 0.72
                blocks: vec![block(1, &[0, 1, 2], 3.0 * 0.6 * wobble * CAP)],
            };
            let ds = plan(&view, &policy, &history);
            assert!(ds.is_empty(), "round {round}: {ds:?}");
            history.record(&ds, view.now);
        }
    }

    #[test]
    fn no_drop_within_hold_time_of_replicate() {
        let policy = Policy::default();
        let mut view = hot_cluster(40, 600.0);
        let mut history = History::new();
        let ds = plan(&view, &policy, &history);
        history.record(&ds, view.now);
        let added = replicas_to(&ds);
        assert!(!added.is_empty());
        // The heat vanishes right away: extras are droppable, but not within the hold time.
        view.blocks[0].extra = added.clone();
        view.blocks[0].heat = 1.0;
        for n in view.nodes.iter_mut() {
            // Drops need the remaining holders below the mean.
            n.load = if added.contains(&n.id) || n.id < 3 {
                0.3
            } else {
                0.6
            } * CAP;
        }
        view.now += policy.hold_ms - 1;
        let ds = plan(&view, &policy, &history);
        assert!(
            !ds.iter().any(|d| matches!(d, Decision::Drop { .. })),
            "{ds:?}"
        );
        // After the hold time they go, but never below R holders.
        view.now += 1;
        let ds = plan(&view, &policy, &history);
        let drops = ds
            .iter()
            .filter(|d| matches!(d, Decision::Drop { .. }))
            .count();
        assert_eq!(drops, added.len(), "{ds:?}");
    }

    #[test]
    fn never_drops_below_r_live_holders() {
        // Block with 2 live base holders (one dead) and 2 cold extras: at most
        // one extra may go.
        let mut nodes: Vec<_> = (0..10)
            .map(|i| node(i, if i < 7 { 0.3 } else { 0.7 }))
            .collect();
        nodes[2].alive = false;
        let mut b = block(1, &[0, 1, 2], 0.5);
        b.extra = vec![5, 6];
        let view = ClusterView {
            now: 10_000_000,
            replication: 3,
            nodes,
            files: vec![],
            blocks: vec![b],
        };
        let ds = plan(&view, &Policy::default(), &History::new());
        let drops: Vec<_> = ds
            .iter()
            .filter(|d| matches!(d, Decision::Drop { .. }))
            .collect();
        assert_eq!(drops.len(), 1, "{ds:?}");
    }

    #[test]
    fn decisions_per_round_are_capped() {
        let mut view = hot_cluster(400, 600.0);
        for i in 2..50u32 {
            let h = [i * 3 % 400, (i * 3 + 1) % 400, (i * 3 + 2) % 400];
            view.blocks.push(block(i, &h, 600.0));
        }
        let policy = Policy {
            max_decisions: 7,
            ..Policy::default()
        };
        let ds = plan(&view, &policy, &History::new());
        assert_eq!(ds.len(), 7);
    }

    #[test]
    fn no_target_pushed_over_its_band() {
        // Many hot blocks competing for a few light nodes: every target's
        // committed load stays within the upper band.
        let mut nodes: Vec<_> = (0..60).map(|i| node(i, 0.7)).collect();
        for nd in nodes.iter_mut().skip(50) {
            nd.load = 0.1 * CAP; // the only light nodes
        }
        let blocks: Vec<_> = (0..10u32)
            .map(|i| block(i, &[i * 3, i * 3 + 1, i * 3 + 2], 400.0))
            .collect();
        let view = ClusterView {
            now: 0,
            replication: 3,
            nodes,
            files: vec![],
            blocks,
        };
        let policy = Policy::default();
        let ds = plan(&view, &policy, &History::new());
        let mean = view.nodes.iter().map(|n| n.load).sum::<f64>() / (60.0 * CAP);
        let hi = (mean * policy.hot_rel).clamp(policy.util_floor, policy.util_ceiling);
        // Each block spreads over its holders; a target holding k new blocks
        // carries at most its budget for each, so its total stays under hi.
        let mut per_target: BTreeMap<u32, usize> = BTreeMap::new();
        for t in replicas_to(&ds) {
            *per_target.entry(t).or_default() += 1;
        }
        assert!(!per_target.is_empty());
        for (&t, &k) in &per_target {
            assert!(t >= 50, "only light nodes are targets, got {t}");
            // Worst case each new block brings its whole per-holder level.
            let load: f64 = view.nodes[t as usize].load;
            assert!(load <= hi * CAP, "{t}: {load} > {}", hi * CAP);
            assert!(k <= 10);
        }
    }

    #[test]
    fn same_input_same_output() {
        let mut view = hot_cluster(200, 900.0);
        for i in 2..40u32 {
            view.blocks.push(block(
                i,
                &[i % 200, (i * 7) % 200, (i * 13 + 1) % 200],
                150.0,
            ));
        }
        view.files.push(FileView {
            key: fkey(9),
            root: 0,
            delegate: None,
            heat: 30.0,
        });
        let policy = Policy::default();
        let a = plan(&view, &policy, &History::new());
        let b = plan(&view, &policy, &History::new());
        assert_eq!(a, b);
        // Input order does not matter for nodes either.
        let mut shuffled = view.clone();
        shuffled.nodes.reverse();
        assert_eq!(plan(&shuffled, &policy, &History::new()), a);
    }

    #[test]
    fn dead_nodes_are_never_targets_nor_sources() {
        let mut view = hot_cluster(40, 600.0);
        // The lightest nodes are dead: they must not be picked.
        for i in 20..40 {
            view.nodes[i].alive = false;
            view.nodes[i].load = 0.0;
        }
        view.nodes[0].alive = false; // a dead holder cannot be the copy source
        let ds = plan(&view, &Policy::default(), &History::new());
        assert!(!ds.is_empty());
        for d in &ds {
            match d {
                Decision::Replicate { from, to, .. } => {
                    assert!(*to < 20 && *to >= 3, "{d:?}");
                    assert_ne!(*from, 0, "{d:?}");
                }
                Decision::Delegate { to, .. } | Decision::Move { to, .. } => {
                    assert!(*to < 20, "{d:?}")
                }
                _ => {}
            }
        }
    }

    #[test]
    fn storage_band_moves_off_full_nodes() {
        let mut nodes: Vec<_> = (0..10).map(|i| node(i, 0.5)).collect();
        nodes[0].storage_used = 60 * GB; // mean ≈ 15 GB: far above the band
        let blocks: Vec<_> = (0..50u32)
            .map(|i| BlockView {
                size: GB,
                ..block(i, &[0, 1 + i % 3, 4 + i % 3], 0.01)
            })
            .collect();
        let view = ClusterView {
            now: 0,
            replication: 3,
            nodes,
            files: vec![],
            blocks,
        };
        let policy = Policy {
            max_move_bytes: 20 * GB,
            ..Policy::default()
        };
        let ds = plan(&view, &policy, &History::new());
        let moved: u64 = ds
            .iter()
            .map(|d| match d {
                Decision::Move { from, bytes, .. } => {
                    assert_eq!(*from, 0);
                    *bytes
                }
                _ => 0,
            })
            .sum();
        assert!(moved > 0 && moved <= 20 * GB, "{ds:?}");
    }

    #[test]
    fn hot_record_is_delegated_and_ended_when_cold() {
        let policy = Policy::default();
        let mut nodes: Vec<_> = (0..20).map(|i| node(i, 0.5)).collect();
        nodes[0].load = 1.5 * CAP;
        let mut view = ClusterView {
            now: 0,
            replication: 3,
            nodes,
            files: vec![FileView {
                key: fkey(1),
                root: 0,
                delegate: None,
                heat: 40.0,
            }],
            blocks: vec![],
        };
        let mut history = History::new();
        let ds = plan(&view, &policy, &history);
        let Some(Decision::Delegate { to, expires_at, .. }) = ds.first().cloned() else {
            panic!("expected a delegation: {ds:?}");
        };
        assert_ne!(to, 0);
        history.record(&ds, view.now);
        // Heat gone, root cool: ended, but only after the hold time.
        view.files[0].delegate = Some((to, expires_at));
        view.files[0].heat = 0.1;
        view.nodes[0].load = 0.3 * CAP;
        view.now = policy.hold_ms - 1;
        assert!(plan(&view, &policy, &history).is_empty());
        view.now = policy.hold_ms;
        let ds = plan(&view, &policy, &history);
        assert_eq!(
            ds,
            vec![Decision::EndDelegation {
                file: fkey(1),
                at: to
            }]
        );
    }

    #[test]
    fn water_level_fills_least_utilised_first() {
        // (load, capacity): utilisations 0.5, 0, 2.0; 2.5 more levels the
        // first two at (2.5 + 0.5) / 4 = 0.75 and leaves the third alone.
        let mut lv = vec![(0.5, 1.0), (0.0, 3.0), (2.0, 1.0)];
        assert!((water_level(&mut lv, 2.5) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn move_target_accounts_for_how_readers_route() {
        // Node 0 is far above the storage band and offers one warm block
        // whose other holders are busy: readers would send the new holder
        // enough of it to level up with them. Node 3 is idle but small,
        // node 4 is idle and large enough to absorb it inside its band.
        let mut nodes: Vec<_> = (0..12).map(|i| node(i, 0.5)).collect();
        nodes[0].storage_used = 60 * GB;
        nodes[1].load = 0.95 * CAP;
        nodes[2].load = 0.95 * CAP;
        nodes[3].load = 0.0;
        nodes[3].storage_used = 0;
        nodes[4].load = 0.0;
        nodes[4].serve_capacity = 10.0 * CAP;
        nodes[4].storage_used = GB;
        nodes[4].storage_capacity = 1000 * GB;
        let view = ClusterView {
            now: 0,
            replication: 3,
            nodes,
            files: vec![],
            blocks: vec![BlockView {
                size: GB,
                ..block(1, &[0, 1, 2], 1.2 * CAP)
            }],
        };
        let policy = Policy {
            replicate: false,
            delegate: false,
            max_move_bytes: 20 * GB,
            ..Policy::default()
        };
        let ds = plan(&view, &policy, &History::new());
        let to: Vec<u32> = ds
            .iter()
            .filter_map(|d| match d {
                Decision::Move { to, .. } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(to, vec![4], "{ds:?}");
    }

    #[test]
    fn node_overloaded_by_several_blocks_hands_one_off() {
        // Node 0 serves its capacity share of three warm blocks that each
        // already have many holders; an extra replica would relieve it of a
        // sliver, handing its copy to a light node relieves the whole share.
        let mut nodes: Vec<_> = (0..40).map(|i| node(i, 0.15)).collect();
        nodes[0].load = 1.5 * CAP;
        nodes[28].load = 0.9 * CAP;
        nodes[29].load = 0.9 * CAP;
        for nd in nodes.iter_mut().skip(30) {
            nd.load = 0.0;
        }
        let blocks: Vec<_> = (0..3u32)
            .map(|k| {
                let holders: Vec<u32> = std::iter::once(0).chain(1 + k * 9..10 + k * 9).collect();
                block(k, &holders, 10.0 * 0.1 * CAP)
            })
            .collect();
        let view = ClusterView {
            now: 0,
            replication: 3,
            nodes,
            files: vec![],
            blocks,
        };
        let ds = plan(&view, &Policy::default(), &History::new());
        assert!(
            ds.iter()
                .any(|d| matches!(d, Decision::Move { from: 0, to, .. } if *to >= 30)),
            "{ds:?}"
        );
        assert!(replicas_to(&ds).is_empty(), "{ds:?}");
    }

    #[test]
    fn history_rebuilds_from_published_decisions() {
        let view = hot_cluster(40, 600.0);
        let ds = plan(&view, &Policy::default(), &History::new());
        let mut a = History::new();
        a.record(&ds, view.now);
        let mut b: History<u32> = History::new();
        b.record(&ds.clone(), view.now);
        assert_eq!(a, b);
        assert!(!a.is_empty());
    }
}
