//! What the planner remembers between rounds, and the hold rule built on it:
//! no decision on an object (a block's copy on a node, a file's delegation)
//! is reversed within `Policy::hold_ms`.
//!
//! [`History`] is derived only from published decisions, so a manager that
//! takes over after a failover rebuilds it exactly by recording the decisions
//! it sees published; the planner itself only reads it.

use super::{BlockId, Decision, FileKey, NodeKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub(super) fn may_add(&self, block: &BlockId, node: N, now: u64, hold: u64) -> bool {
        allowed(self.replica_mark(block, node), false, now, hold)
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
