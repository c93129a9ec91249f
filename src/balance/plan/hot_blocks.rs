//! Hot blocks: a block whose heat per unit of holder capacity is above the
//! upper band gets enough extra replicas on light nodes, in one round, to
//! bring it under the lower band. Hottest blocks go first, so the light
//! capacity of the round goes where it relieves most.

use super::state::{Holder, Planner};
use super::{Decision, NodeKey};

impl<'a, N: NodeKey> Planner<'a, N> {
    /// Blocks whose heat per unit of holder capacity is above the upper band
    /// get enough extra replicas to bring it down to the lower band.
    pub(super) fn hot_blocks(&mut self) {
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
    pub(super) fn extra_room(&self, bi: usize) -> usize {
        let extras = self.blocks[bi].holders.iter().filter(|h| h.extra).count();
        self.policy.max_extra_per_block.saturating_sub(extras)
    }

    /// Add extra replicas of hot block `bi` (at most `max_new`) so that its
    /// heat fits under the lower band: existing holders carry up to `lo` of
    /// their capacity, new holders absorb the rest from their budgets.
    /// All or nothing: readers level a block's holders, so a partial fix
    /// would pull every new holder up to the (still overloaded) level of the
    /// old ones. If the `lo` budgets run out, the `hi` band is the fallback.
    /// Returns the number of replicas added.
    pub(super) fn grow(&mut self, bi: usize, max_new: usize) -> usize {
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
        let heat = self.blocks[bi].heat;
        for &(t, _) in &chosen {
            self.out.push(Decision::Replicate {
                block: vb.id,
                file: vb.file,
                from: self.ids[from as usize],
                to: self.ids[t as usize],
                heat,
            });
        }
        for t in aside {
            self.push_load(t);
        }
        chosen.len()
    }
}
