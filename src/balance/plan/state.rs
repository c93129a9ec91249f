//! The planner's working copy of one view and the bookkeeping of a round.
//!
//! `Planner::build` indexes the live nodes in id order (`WNode`), resolves
//! every block's holders to those indices (`WBlock`), derives the load and
//! storage bands and each node's committed load, and builds the node -> blocks
//! adjacency. The steps (one file each) then update this state as they emit
//! decisions, so later decisions in the round see the predicted effect of
//! earlier ones.

use super::{ClusterView, Decision, History, NodeKey, Policy};
use smallvec::SmallVec;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// Planner's per-node working copy; all loads in work units/s.
#[derive(Clone, Debug)]
pub(super) struct WNode {
    pub(super) cap: f64,
    pub(super) load: f64,
    pub(super) committed: f64,
    pub(super) used: f64,
    pub(super) scap: f64,
    pub(super) alive: bool,
}

impl WNode {
    /// Predicted load the node cannot shed: its observed load or what is
    /// committed to it, whichever is larger.
    pub(super) fn pressure(&self) -> f64 {
        self.load.max(self.committed)
    }
}

/// One live holder of a block: its node index, and whether its copy is an
/// extra replica (only extras are ever dropped).
#[derive(Clone, Copy, Debug)]
pub(super) struct Holder {
    pub(super) node: u32,
    pub(super) extra: bool,
}

/// Holders stored inline: R + 1 covers almost every block of a view.
const INLINE_HOLDERS: usize = 4;

/// A block's live holders: a few inline, more on the heap. A view holds
/// millions of blocks at 10^5 nodes; only the few with extras allocate.
pub(super) type Holders = SmallVec<[Holder; INLINE_HOLDERS]>;

/// Node count beyond which the per-round heap-pop budget stops growing.
const SCAN_NODES: usize = 4096;

/// Planner's per-block working copy, parallel to `view.blocks`.
#[derive(Clone, Debug)]
pub(super) struct WBlock {
    /// Live holders (base and extra).
    pub(super) holders: Holders,
    /// Total capacity of live holders.
    pub(super) cap_sum: f64,
    pub(super) heat: f64,
}

/// Heap entry; the max-heap pops the largest key, ties to the smallest node
/// index (= smallest id, since nodes are indexed in id order).
#[derive(Clone, Copy, Debug)]
pub(super) struct Cand {
    pub(super) key: f64,
    pub(super) node: u32,
    /// Entry is live only while it matches the node's current version.
    pub(super) ver: u32,
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

/// Everything one `plan` call works on: the inputs, the indexed working
/// copy, and what the round has decided so far.
pub(super) struct Planner<'a, N: NodeKey> {
    pub(super) view: &'a ClusterView<N>,
    pub(super) policy: &'a Policy,
    pub(super) history: &'a History<N>,
    pub(super) now: u64,
    /// Node ids sorted; index = position.
    pub(super) ids: Vec<N>,
    pub(super) nodes: Vec<WNode>,
    /// Parallel to `view.blocks`.
    pub(super) blocks: Vec<WBlock>,
    /// CSR adjacency node -> view blocks it held at the start of the round.
    pub(super) adj_start: Vec<u32>,
    pub(super) adj: Vec<u32>,
    /// Capacity-weighted mean utilisation and the bands derived from it.
    pub(super) mean_util: f64,
    /// Mean utilisation with every node's load capped at the upper band: the
    /// level the cluster settles at once overloads are relieved. Drops are
    /// judged against it, so a transient overload on a few nodes (a flash
    /// crowd) does not make everyone else look idle.
    pub(super) settled_util: f64,
    /// Largest live serve capacity (bounds what one replica can absorb).
    pub(super) max_cap: f64,
    pub(super) hi: f64,
    pub(super) lo: f64,
    pub(super) drop_level: f64,
    pub(super) mean_storage: f64,
    pub(super) load_heap: BinaryHeap<Cand>,
    pub(super) store_heap: BinaryHeap<Cand>,
    /// Heap pops left this round (load targets, storage targets): bounds the
    /// work when few targets qualify.
    pub(super) load_scan_left: usize,
    pub(super) store_scan_left: usize,
    /// Per-node entry versions: at most one live entry per node and heap.
    pub(super) load_ver: Vec<u32>,
    pub(super) store_ver: Vec<u32>,
    pub(super) moved_bytes: u64,
    /// Blocks already decided on this round: later steps leave them alone
    /// (History only covers earlier rounds; this covers the current one).
    pub(super) touched: Vec<bool>,
    pub(super) out: Vec<Decision<N>>,
}

impl<'a, N: NodeKey> Planner<'a, N> {
    pub(super) fn build(
        view: &'a ClusterView<N>,
        policy: &'a Policy,
        history: &'a History<N>,
    ) -> Self {
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
        // Lookups only; never iterated, so hash order cannot leak. foldhash
        // is several times faster than SipHash on the millions of holder
        // lookups of a large view, and keyed per map, so crafted node ids
        // cannot force collisions.
        let mut index: HashMap<N, u32, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(ids.len(), Default::default());
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

    pub(super) fn full(&self) -> bool {
        self.out.len() >= self.policy.max_decisions
    }

    pub(super) fn emit(&mut self, d: Decision<N>) {
        self.out.push(d);
    }

    pub(super) fn live(&self, n: &N) -> Option<u32> {
        let i = self.ids.binary_search(n).ok()? as u32;
        self.nodes[i as usize].alive.then_some(i)
    }
}

pub(super) fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}
