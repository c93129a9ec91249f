//! Light-node candidates for new copies of blocks and for delegations.
//!
//! Light nodes (at or below the lower band) sit in a max-heap keyed by spare
//! capacity, so every step tries the roomiest node first. Entries are
//! invalidated lazily: each push bumps the node's version, and a popped entry
//! whose version or key is stale is dropped or re-entered, so a node's load
//! can change during the round without rebuilding the heap. A per-round pop
//! budget bounds the work when few candidates pass their checks.
//!
//! `usable_target` is the check every new holder of a block passes,
//! whichever step picks it: not a holder already, not a reversal of a recent
//! removal, and room in storage.

use super::state::{Cand, Planner};
use super::NodeKey;

impl<'a, N: NodeKey> Planner<'a, N> {
    /// Spare serve capacity below the upper band (the heap key).
    pub(super) fn spare(&self, i: u32) -> f64 {
        let n = &self.nodes[i as usize];
        self.hi * n.cap - n.pressure()
    }

    /// A light node: alive and at or below the lower band.
    pub(super) fn is_light(&self, i: u32) -> bool {
        let n = &self.nodes[i as usize];
        n.alive && n.pressure() <= self.lo * n.cap
    }

    /// (Re-)enter node `i` as a light candidate, superseding older entries.
    pub(super) fn push_load(&mut self, i: u32) {
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
    pub(super) fn pop_load(&mut self) -> Option<u32> {
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

    /// Can `t` become a new holder of block `bi` at all?
    pub(super) fn usable_target(&self, bi: usize, t: u32) -> bool {
        let vb = &self.view.blocks[bi];
        !self.blocks[bi].holders.iter().any(|h| h.node == t)
            && self
                .history
                .may_add(&vb.id, self.ids[t as usize], self.now, self.policy.hold_ms)
            && self.fits_storage(t, vb.size as f64, 1.0 + self.policy.storage_aim)
    }
}
