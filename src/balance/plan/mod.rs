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
//! round. The simulator (`balance::sim`) checks them: it counts targets found over
//! capacity the round after.
//!
//! Layout: this file holds the public input and output types and [`plan`],
//! which runs the steps in order. [`History`] (the hold rule) is in
//! `history.rs`. The planner's working copy of a view is built in
//! `state.rs`; the load model it predicts with is `predict.rs`, and `targets.rs` picks
//! light nodes for new copies. Each step has its own file:
//! `delegation.rs` (delegations and their end), `hot_blocks.rs`,
//! `hot_nodes.rs`, `storage.rs` (the storage band) and `drops.rs`.

mod delegation;
mod drops;
mod history;
mod hot_blocks;
mod hot_nodes;
mod predict;
mod state;
mod storage;
mod targets;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use history::{History, Mark};
use state::Planner;

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
        /// The block's heat when the copy was decided: it stays until the heat has fallen
        /// well below this (see `drops`), so steady load never undoes its own relief.
        heat: f64,
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

/// Compute this round's decisions. Pure and deterministic: the same
/// `(view, policy, history)` always yields the same output.
pub fn plan<N: NodeKey>(
    view: &ClusterView<N>,
    policy: &Policy,
    history: &History<N>,
) -> Vec<Decision<N>> {
    let mut p = Planner::build(view, policy, history);
    // Additions first, undo last: drops and ended delegations are judged
    // against the loads predicted after this round's additions, and drops
    // leave alone the blocks an earlier step decided on this round.
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
