//! The storage band (HDFS-balancer rule): nodes above `mean·(1+band)` move
//! their coldest base blocks to the emptiest nodes until they are at
//! `mean·(1+aim)`, at most `Policy::max_move_bytes` per round. Targets come
//! from their own heap (emptiest first, the same lazy invalidation as the
//! load heap) and must also stay inside their load band with the reads the
//! moved block brings them.

use super::state::{Cand, Planner};
use super::{Decision, NodeKey};

impl<'a, N: NodeKey> Planner<'a, N> {
    pub(super) fn storage_util(&self, i: u32) -> f64 {
        let n = &self.nodes[i as usize];
        if n.scap > 0.0 {
            n.used / n.scap
        } else {
            f64::INFINITY
        }
    }

    pub(super) fn push_store(&mut self, i: u32) {
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

    pub(super) fn pop_store(&mut self) -> Option<u32> {
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
    pub(super) fn storage_moves(&mut self) {
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
                // A copy a remembered decision put here stays: moving it on would undo that
                // decision (the storage band steps by whole blocks, and on nodes holding a
                // few of them one step can make the target the next source). This covers the
                // hold rule, which forbids that only within the hold.
                if self.touched[bi] || self.history.put_there(&vb.id, src_id) {
                    continue;
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
    pub(super) fn store_target(&mut self, bi: usize, src: u32) -> Option<(u32, f64)> {
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
            // Nor does a copy go back where a remembered decision took it from (the hold
            // rule, covered by this, forbids it only within the hold).
            if self.blocks[bi].holders.iter().any(|h| h.node == t)
                || self.history.taken_from(&vb.id, self.ids[t as usize])
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
}
