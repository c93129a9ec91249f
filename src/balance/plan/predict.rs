//! The load model the planner predicts with (see the `plan` module doc):
//! whether a target stays inside its band (`fits_*`, `budget`), how much of a
//! block's reads a new holder would get the way readers route (`inflow`, by
//! water-filling), and how a change of a block's holder set moves its holders'
//! committed and observed loads (`reshare`).

use super::state::{Holders, Planner};
use super::NodeKey;

impl<'a, N: NodeKey> Planner<'a, N> {
    /// Would `extra` more load keep node `i` inside its band? The new load
    /// comes on top of everything the node serves now: its flexible traffic
    /// is not assumed to shift away (that would push its co-holders up).
    pub(super) fn fits_load(&self, i: u32, extra: f64) -> bool {
        let n = &self.nodes[i as usize];
        n.pressure() + extra <= self.hi * n.cap
    }

    /// Would `extra` more *pinned* load keep node `i` inside its band? Pinned
    /// load (record reads of a delegated file) is served first; the node's
    /// flexible block traffic then levels with its co-holders, so only its
    /// already pinned load adds up.
    pub(super) fn fits_pinned(&self, i: u32, extra: f64) -> bool {
        let n = &self.nodes[i as usize];
        n.load.max(n.committed + extra) <= self.hi * n.cap
    }

    /// Budget a light node can still take on as committed load (the rest of
    /// its traffic is flexible and can shift to co-holders).
    pub(super) fn budget(&self, i: u32) -> f64 {
        let n = &self.nodes[i as usize];
        self.lo * n.cap - n.committed
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
    pub(super) fn inflow(&self, bi: usize, t: u32, leaving: Option<u32>, margin: f64) -> f64 {
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
    pub(super) fn fits_storage(&self, i: u32, bytes: f64, limit_rel: f64) -> bool {
        let n = &self.nodes[i as usize];
        n.used + bytes <= n.scap && n.used + bytes <= self.mean_storage * limit_rel * n.scap
    }

    /// Apply a change of block `bi`'s holder set. Every holder's committed
    /// share is recomputed against the new capacity sum; holders that stay
    /// also see their observed load change by the difference in their
    /// capacity-proportional share. New holders' observed loads stay as they
    /// are: their flexible traffic can shift to co-holders.
    pub(super) fn reshare(&mut self, bi: usize, new_holders: Holders) {
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
pub(super) fn water_level(nodes: &mut [(f64, f64)], amount: f64) -> f64 {
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
