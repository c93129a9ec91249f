//! What the planner remembers between rounds, and the hold rule built on it:
//! no decision on an object (a block's copy on a node, a file's delegation)
//! is reversed within `Policy::hold_ms`.
//!
//! [`History`] is derived only from published decisions, so a manager that
//! takes over after a failover rebuilds it exactly by recording the decisions
//! it sees published; the planner itself only reads it.

use super::state::finite_or_zero;
use super::{BlockId, Decision, FileKey, NodeKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Last decision on one object: when, whether it added (replica /
/// delegation) or removed it, and for an extra replica the block's heat it
/// was decided for.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub at: u64,
    pub added: bool,
    /// Heat of the block when a `Replicate` added this copy (0 otherwise).
    #[serde(default)]
    pub heat: f64,
}

impl Mark {
    fn added(at: u64) -> Self {
        Mark {
            at,
            added: true,
            heat: 0.0,
        }
    }

    fn removed(at: u64) -> Self {
        Mark {
            at,
            added: false,
            heat: 0.0,
        }
    }
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
    /// Past this many remembered objects the oldest are forgotten (see
    /// [`History::with_limits`]).
    #[serde(default = "unbounded")]
    max_entries: usize,
}

fn unbounded() -> usize {
    usize::MAX
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
        Self::with_limits(retain_ms, unbounded())
    }

    /// Empty history that remembers decisions for `retain_ms`, and at most
    /// `max_entries` objects: past that the oldest go (down to 7/8 of it, so
    /// the sort runs once per `max_entries / 8` new objects). A node keeps what
    /// every published batch decided, and one elected manager may publish a
    /// full batch every round: time alone does not bound its memory. An
    /// object forgotten early loses only its hold (balance may jitter; data
    /// does not move without a decision).
    pub fn with_limits(retain_ms: u64, max_entries: usize) -> Self {
        History {
            replicas: BTreeMap::new(),
            files: BTreeMap::new(),
            retain_ms,
            max_entries: max_entries.max(8),
        }
    }

    /// Remember the decisions published at `now`, and forget old entries.
    pub fn record(&mut self, decisions: &[Decision<N>], now: u64) {
        for d in decisions {
            match *d {
                Decision::Replicate {
                    block, to, heat, ..
                } => {
                    // The manager's figure: a NaN, infinite or negative one counts as none
                    // (the extra then goes by the band rule alone).
                    let heat = finite_or_zero(heat).max(0.0);
                    self.replicas.insert(
                        (block, to),
                        Mark {
                            heat,
                            ..Mark::added(now)
                        },
                    );
                }
                Decision::Move {
                    block, from, to, ..
                } => {
                    self.replicas.insert((block, from), Mark::removed(now));
                    self.replicas.insert((block, to), Mark::added(now));
                }
                Decision::Drop { block, at, .. } => {
                    self.replicas.insert((block, at), Mark::removed(now));
                }
                Decision::Delegate { file, .. } => {
                    self.files.insert(file, Mark::added(now));
                }
                Decision::EndDelegation { file, .. } => {
                    self.files.insert(file, Mark::removed(now));
                }
            }
        }
        let cutoff = now.saturating_sub(self.retain_ms);
        self.replicas.retain(|_, m| m.at >= cutoff);
        self.files.retain(|_, m| m.at >= cutoff);
        if self.len() > self.max_entries {
            self.forget_oldest();
        }
    }

    /// Brings the history down to 7/8 of `max_entries`, oldest marks first.
    fn forget_oldest(&mut self) {
        let keep = self.max_entries - self.max_entries / 8;
        let mut ages: Vec<u64> = self
            .replicas
            .values()
            .chain(self.files.values())
            .map(|m| m.at)
            .collect();
        let excess = ages.len().saturating_sub(keep);
        if excess == 0 {
            return;
        }
        // Everything marked before the excess-th oldest goes; ties at it go too,
        // so a burst of one instant cannot keep the history over the bound.
        let (_, &mut threshold, _) = ages.select_nth_unstable(excess - 1);
        self.replicas.retain(|_, m| m.at > threshold);
        self.files.retain(|_, m| m.at > threshold);
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
    pub(super) fn may_add(&self, block: &BlockId, node: N, now: u64, hold: u64) -> bool {
        allowed(self.replica_mark(block, node), false, now, hold)
    }

    /// Did a remembered decision put the copy of `block` on `node` (a replicate or a move
    /// to it, however long ago)?
    pub(super) fn put_there(&self, block: &BlockId, node: N) -> bool {
        self.replica_mark(block, node).is_some_and(|m| m.added)
    }

    /// Did a remembered decision take the copy of `block` off `node`?
    pub(super) fn taken_from(&self, block: &BlockId, node: N) -> bool {
        self.replica_mark(block, node).is_some_and(|m| !m.added)
    }

    /// The heat a remembered `Replicate` put the copy of `block` on `node` for (0 if none
    /// is remembered, or the manager gave none).
    pub(super) fn granted_heat(&self, block: &BlockId, node: N) -> f64 {
        self.replica_mark(block, node)
            .filter(|m| m.added)
            .map_or(0.0, |m| m.heat)
    }

    /// May the copy of `block` at `node` be removed now (not a reversal of a recent add)?
    pub(super) fn may_remove(&self, block: &BlockId, node: N, now: u64, hold: u64) -> bool {
        allowed(self.replica_mark(block, node), true, now, hold)
    }
}

/// An action is a reversal if the last mark was the opposite action
/// (`opposite_added`) within the hold time.
pub(super) fn allowed(mark: Option<Mark>, opposite_added: bool, now: u64, hold: u64) -> bool {
    match mark {
        Some(m) => m.added != opposite_added || now.saturating_sub(m.at) >= hold,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicate(i: u32) -> Decision<u32> {
        let mut block = [0u8; 32];
        block[..4].copy_from_slice(&i.to_be_bytes());
        Decision::Replicate {
            block,
            file: [0; 32],
            from: 0,
            to: 1,
            heat: 0.0,
        }
    }

    #[test]
    fn a_flood_of_decisions_stays_under_the_bound_and_keeps_the_newest() {
        let mut h: History<u32> = History::with_limits(u64::MAX, 1000);
        // One full batch per round, each naming objects never seen before.
        for round in 0..100u32 {
            let batch: Vec<Decision<u32>> = (0..64).map(|k| replicate(round * 64 + k)).collect();
            h.record(&batch, u64::from(round) * 1000);
            assert!(h.len() <= 1000, "round {round}: {} remembered", h.len());
        }
        let newest = replicate(99 * 64 + 63);
        let Decision::Replicate { block, .. } = newest else {
            unreachable!()
        };
        assert!(
            h.replica_mark(&block, 1).is_some(),
            "the newest decision is remembered"
        );
        let Decision::Replicate { block: oldest, .. } = replicate(0) else {
            unreachable!()
        };
        assert!(h.replica_mark(&oldest, 1).is_none(), "the oldest went");
        assert!(h.len() >= 1000 - 1000 / 8 - 64, "{} remembered", h.len());
    }

    #[test]
    fn time_alone_still_forgets_without_a_bound() {
        let mut h: History<u32> = History::with_retention(10_000);
        h.record(&[replicate(1)], 0);
        h.record(&[replicate(2)], 20_000);
        assert_eq!(h.len(), 1);
    }
}
