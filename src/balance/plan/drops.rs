//! Undo of extra replicas: once a block's heat has gone, its extras are
//! dropped, busiest holder first. Runs after every additive step, against the
//! loads they predict, and leaves alone the blocks decided on this round.
//! Never below R live holders, never within the hold time of an extra's
//! creation, never while its block is still about as hot as when the extra was
//! decided, never pushing a remaining holder above the settled utilisation.

use super::state::{Holders, Planner};
use super::{Decision, NodeKey};

/// An extra goes only once its block's heat is at most this fraction of the heat it was
/// decided for (while that decision is remembered). Under steady load the heat stays
/// near it, so relief is never undone by the load it relieves; after a flash crowd it
/// falls far below. (The band rule alone dropped three extras 60–140 s after their
/// replicate in a steady-load jitter run on real nodes: the planner had moved other load
/// off their holders meanwhile. A half still let one go 70 s after its replicate: a
/// block read a few times a second has a noisy heat.)
const DROP_BELOW_GRANTED: f64 = 0.25;

impl<'a, N: NodeKey> Planner<'a, N> {
    /// Drop the extras of blocks whose heat has gone: the live base holders
    /// alone could carry it below the drop level. (Extras are sized by the
    /// budgets of busy nodes, so the block's heat per total holder capacity
    /// says little about whether they are still needed; the base holders'
    /// capacity is the stable yardstick.) Never below R live holders, never
    /// within the hold time of an extra's creation, never pushing a remaining
    /// holder above the mean utilisation.
    pub(super) fn drops(&mut self) {
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
                        let id = self.ids[x as usize];
                        let granted = self.history.granted_heat(&vb.id, id);
                        self.history.may_remove(&vb.id, id, self.now, hold)
                            && (granted <= 0.0 || b.heat <= DROP_BELOW_GRANTED * granted)
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
                    // go once their holders have cooled well below it. A block
                    // nobody reads adds nothing to anyone: its extras go even
                    // when a holder is busy with other work (otherwise one
                    // holder above the mean, by background traffic alone, kept
                    // a cold block's extras for good on real nodes).
                    let ok = b.heat <= 0.0
                        || b.holders.iter().filter(|h| h.node != x).all(|h| {
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
}
