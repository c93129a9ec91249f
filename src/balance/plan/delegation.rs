//! Delegation of a hot file's record reads: the first step of a round
//! delegates them from an overloaded root to a light node for a lease (and
//! renews leases past half-time while the file stays hot); the last step
//! hands them back (`EndDelegation`) once the record is cold and the root can
//! take it without leaving the lower band.
//!
//! Record reads are pinned load (routing cannot level them), so delegating
//! first lets the block steps see the roots' predicted loads without them,
//! and ending last judges the roots after the round's additions.

use super::history::allowed;
use super::state::{finite_or_zero, Planner};
use super::{Decision, NodeKey};

impl<'a, N: NodeKey> Planner<'a, N> {
    pub(super) fn delegations(&mut self) {
        let view = self.view;
        let hold = self.policy.hold_ms;
        let lease = self.policy.lease_ms;
        // Hottest files first; ties by key.
        let mut order: Vec<usize> = (0..view.files.len()).collect();
        order.sort_by(|&a, &b| {
            let (fa, fb) = (&view.files[a], &view.files[b]);
            fb.heat
                .total_cmp(&fa.heat)
                .then_with(|| fa.key.cmp(&fb.key))
        });
        for fi in order {
            if self.full() {
                return;
            }
            let f = &view.files[fi];
            let heat = finite_or_zero(f.heat).max(0.0);
            let Some(root) = self.live(&f.root) else {
                continue; // dead root: the DHT moves the record; nothing to delegate from
            };
            let active = match f.delegate {
                Some((d, exp)) if exp > self.now => self.live(&d).map(|i| (i, exp)),
                _ => None,
            };
            if let Some((d, exp)) = active {
                // Renew a lease that is past half-time unless the heat is gone
                // (then end_delegations will hand duties back).
                if exp.saturating_sub(self.now) < lease / 2 && !self.delegation_done(root, heat) {
                    self.emit(Decision::Delegate {
                        file: f.key,
                        root: f.root,
                        to: self.ids[d as usize],
                        expires_at: self.now + lease,
                    });
                }
                continue;
            }
            let r = &self.nodes[root as usize];
            let hot_root = r.load > self.hi * r.cap;
            if !hot_root || heat < self.policy.delegate_min_share * r.cap {
                continue;
            }
            if !allowed(self.history.file_mark(&f.key), false, self.now, hold) {
                continue; // ended within the hold time: re-delegating would reverse it
            }
            let mut aside = Vec::new();
            let mut chosen = None;
            for _ in 0..self.policy.max_scan {
                let Some(t) = self.pop_load() else { break };
                aside.push(t);
                if t != root && self.fits_pinned(t, heat) {
                    chosen = Some(t);
                    break;
                }
            }
            if let Some(t) = chosen {
                let rn = &mut self.nodes[root as usize];
                rn.committed -= heat;
                rn.load = (rn.load - heat).max(0.0);
                self.nodes[t as usize].committed += heat;
                self.emit(Decision::Delegate {
                    file: f.key,
                    root: f.root,
                    to: self.ids[t as usize],
                    expires_at: self.now + lease,
                });
            }
            for t in aside {
                self.push_load(t);
            }
        }
    }

    /// Heat has gone: the record is cold and the root can take it back
    /// while staying below the lower band.
    pub(super) fn delegation_done(&self, root: u32, heat: f64) -> bool {
        let r = &self.nodes[root as usize];
        heat < 0.5 * self.policy.delegate_min_share * r.cap && r.load + heat <= self.lo * r.cap
    }

    pub(super) fn end_delegations(&mut self) {
        let view = self.view;
        let mut order: Vec<usize> = (0..view.files.len()).collect();
        // Coldest first; ties by key.
        order.sort_by(|&a, &b| {
            let (fa, fb) = (&view.files[a], &view.files[b]);
            fa.heat
                .total_cmp(&fb.heat)
                .then_with(|| fa.key.cmp(&fb.key))
        });
        for fi in order {
            if self.full() {
                return;
            }
            let f = &view.files[fi];
            let Some((d, exp)) = f.delegate else { continue };
            if exp <= self.now {
                continue; // expired leases lapse by themselves
            }
            let (Some(root), Some(di)) = (self.live(&f.root), self.live(&d)) else {
                continue; // skip dead nodes; the lease will lapse
            };
            let heat = finite_or_zero(f.heat).max(0.0);
            if di == root
                || !self.delegation_done(root, heat)
                || !allowed(
                    self.history.file_mark(&f.key),
                    true,
                    self.now,
                    self.policy.hold_ms,
                )
            {
                continue;
            }
            let rn = &mut self.nodes[root as usize];
            rn.committed += heat;
            rn.load += heat;
            let dn = &mut self.nodes[di as usize];
            dn.committed -= heat;
            dn.load = (dn.load - heat).max(0.0);
            self.emit(Decision::EndDelegation { file: f.key, at: d });
        }
    }
}
