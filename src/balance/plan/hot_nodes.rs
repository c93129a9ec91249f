//! Hot nodes: a node still above the upper band after the hot-block step,
//! because several warm blocks keep it busy (committed load, not traffic that
//! could shift to co-holders). Its biggest contributors are handled one at a
//! time: its copy is handed to a light node (`shift_one`: a `Move` of a base
//! copy, or `Replicate` + `Drop` of an extra), or failing that the block gets
//! one relief replica (`grow_one`), until the node is predicted below the
//! lower band.

use super::state::{Holder, Planner};
use super::{Decision, NodeKey};

/// Relief of one overloaded node moves on after this many of its blocks in
/// a row found no taker (bounds the work when the swarm has no room).
const RELIEF_MISSES: usize = 8;

/// A hand-off of a hot node's copy gives up after this many light
/// candidates that could not absorb it.
const SHIFT_MISSES: usize = 32;

impl<'a, N: NodeKey> Planner<'a, N> {
    /// Nodes still above the upper band whose overload is committed (several
    /// warm blocks rather than shiftable traffic): add one replica at a time
    /// to their biggest contributors until they are predicted below the lower band.
    pub(super) fn hot_nodes(&mut self) {
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

    /// Relieve overloaded node `i` of its copy of block `bi`: a base copy
    /// `Move`s to a light node, an extra is re-created on a light node and
    /// dropped here. The target must stay at or below the lower band with
    /// the block's reads as readers would route them. Returns whether it
    /// happened.
    pub(super) fn shift_one(&mut self, bi: usize, i: u32) -> bool {
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
                let heat = self.blocks[bi].heat;
                self.emit(Decision::Replicate {
                    block: vb.id,
                    file: vb.file,
                    from,
                    to,
                    heat,
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

    /// Relieve an overloaded holder of block `bi` with one more replica, if
    /// the block's level after it stays under the lower band. Returns whether
    /// a replica was added.
    pub(super) fn grow_one(&mut self, bi: usize) -> bool {
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
                heat,
            });
        }
        for t in aside {
            self.push_load(t);
        }
        found.is_some()
    }
}
