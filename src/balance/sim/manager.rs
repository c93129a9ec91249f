//! The manager as the simulator sees it, and what its decisions do.
//!
//! [`Manager`] builds the view a real manager would plan from (noisy,
//! EWMA-smoothed reports of each node's top items, not the true heat), runs
//! the planner on it, and keeps what it published so a failover can rebuild
//! the anti-jitter history. [`apply`] then carries a batch out on the world,
//! refusing what a node would refuse, and [`ReversalLog`] checks the
//! no-flapping rule independently of the planner's own history, so a planner
//! bug cannot hide its reversals.

use super::world::{Served, World};
use super::SimConfig;
use crate::balance::plan::{
    self, BlockView, ClusterView, Decision, FileView, History, NodeView, Policy,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};

// Planner ids for the simulator's indices: the index in the first four
// bytes, a tag in the last so block and file keys never collide.
fn block_id(b: u32) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&b.to_be_bytes());
    id[31] = 0xb1;
    id
}

fn file_key(f: u32) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&f.to_be_bytes());
    id[31] = 0xf1;
    id
}

fn index_of(id: &[u8; 32]) -> u32 {
    u32::from_be_bytes([id[0], id[1], id[2], id[3]])
}

/// The simulated manager: its policy, the anti-jitter history, what it has
/// published, and the smoothing state it loses on a failover.
pub(super) struct Manager {
    policy: Policy,
    history: History<u32>,
    /// Published decisions (time, batch) kept for a failover rebuild.
    published: VecDeque<(u64, Vec<Decision<u32>>)>,
    node_ewma: Vec<f64>,
    block_ewma: HashMap<u32, f64>,
    file_ewma: HashMap<u32, f64>,
    rng: StdRng,
}

impl Manager {
    pub(super) fn new(policy: Policy, nodes: usize, seed: u64) -> Self {
        Manager {
            policy,
            history: History::new(),
            published: VecDeque::new(),
            node_ewma: vec![f64::NAN; nodes],
            block_ewma: HashMap::new(),
            file_ewma: HashMap::new(),
            // Report noise gets its own stream, derived from the run seed.
            rng: StdRng::seed_from_u64(seed ^ 0x005e_ed0f_7e57),
        }
    }

    /// This round's decisions from `view`: the real planner, nothing added.
    pub(super) fn plan(&self, view: &ClusterView<u32>) -> Vec<Decision<u32>> {
        plan::plan(view, &self.policy, &self.history)
    }

    /// Publish a batch: the planner's history learns it, and it is kept
    /// (for twice the hold time) so that a failover can rebuild history.
    pub(super) fn publish(&mut self, ds: Vec<Decision<u32>>, now: u64) {
        self.history.record(&ds, now);
        self.published.push_back((now, ds));
        while self
            .published
            .front()
            .is_some_and(|(pt, _)| now.saturating_sub(*pt) > 2 * self.policy.hold_ms)
        {
            self.published.pop_front();
        }
    }

    fn smooth(alpha: (f64, f64), prev: Option<f64>, x: f64) -> f64 {
        match prev {
            Some(p) => {
                let a = if x > p { alpha.0 } else { alpha.1 };
                a * x + (1.0 - a) * p
            }
            None => x,
        }
    }

    fn noisy(&mut self, noise: f64, x: f64) -> f64 {
        if noise > 0.0 {
            x * self.rng.gen_range(1.0 - noise..=1.0 + noise)
        } else {
            x
        }
    }

    /// Build the manager's view from this round's reports.
    pub(super) fn view(
        &mut self,
        cfg: &SimConfig,
        w: &World,
        served: &Served,
        now: u64,
        mark: &mut [bool],
    ) -> ClusterView<u32> {
        let a = (cfg.ewma_alpha_up, cfg.ewma_alpha_down);
        let mut nodes = Vec::new();
        let n_total = w.cap.len();
        let (mut used_sum, mut scap_sum) = (0.0, 0.0);
        for n in 0..n_total {
            if w.live(n as u32) {
                used_sum += w.used[n];
                scap_sum += w.scap[n];
            }
        }
        let mean_s = used_sum / scap_sum.max(1.0);
        for n in 0..n_total {
            if !w.present[n] {
                continue;
            }
            let alive = w.alive[n];
            let load = if alive {
                let x = self.noisy(cfg.noise, served.load[n]);
                let prev = self.node_ewma[n];
                let s = Self::smooth(a, (!prev.is_nan()).then_some(prev), x);
                self.node_ewma[n] = s;
                s
            } else {
                0.0
            };
            nodes.push(NodeView {
                id: n as u32,
                alive,
                serve_capacity: w.cap[n],
                load,
                storage_used: w.used[n] as u64,
                storage_capacity: w.scap[n] as u64,
            });
        }
        // Blocks: top hot per node, every block with extras, and cold
        // candidates from nodes above the mean storage.
        let mut picked: Vec<u32> = Vec::new();
        let mut pick = |b: u32, picked: &mut Vec<u32>| {
            if !mark[b as usize] {
                mark[b as usize] = true;
                picked.push(b);
            }
        };
        for n in 0..n_total {
            if !w.live(n as u32) {
                continue;
            }
            for &(_, b) in &served.top_blocks[n] {
                pick(b, &mut picked);
            }
            // Only nodes above the storage band offer blocks to move.
            let band = 1.0 + cfg.policy.storage_band;
            if w.used[n] / w.scap[n] > mean_s * band && cfg.report_cold_blocks > 0 {
                let mut cold: Vec<(f64, u32)> = w.held[n].iter().map(|&b| (w.heat(b), b)).collect();
                let k = cfg.report_cold_blocks.min(cold.len());
                if k > 0 && k < cold.len() {
                    cold.select_nth_unstable_by(k - 1, |x, y| {
                        x.0.total_cmp(&y.0).then(x.1.cmp(&y.1))
                    });
                }
                for &(_, b) in &cold[..k] {
                    pick(b, &mut picked);
                }
            }
        }
        for &b in w.extras.keys() {
            pick(b, &mut picked);
        }
        picked.sort_unstable();
        let mut blocks = Vec::with_capacity(picked.len());
        for &b in &picked {
            mark[b as usize] = false;
            let x = self.noisy(cfg.noise, w.heat(b));
            let heat = Self::smooth(a, self.block_ewma.get(&b).copied(), x);
            self.block_ewma.insert(b, heat);
            blocks.push(BlockView {
                id: block_id(b),
                file: file_key(w.block_file[b as usize]),
                size: w.block_size[b as usize] as u64,
                holders: w.holders(b).to_vec(),
                extra: w.extras.get(&b).cloned().unwrap_or_default(),
                heat,
            });
        }
        let mut fset: Vec<u32> = w.delegate.keys().copied().collect();
        for n in 0..n_total {
            if w.live(n as u32) {
                fset.extend(served.top_files[n].iter().map(|&(_, f)| f));
            }
        }
        fset.sort_unstable();
        fset.dedup();
        let mut files = Vec::with_capacity(fset.len());
        for f in fset {
            let x = self.noisy(cfg.noise, w.record_heat(f));
            let heat = Self::smooth(a, self.file_ewma.get(&f).copied(), x);
            self.file_ewma.insert(f, heat);
            files.push(FileView {
                key: file_key(f),
                root: w.root[f as usize],
                delegate: w.delegate.get(&f).copied(),
                heat,
            });
        }
        ClusterView {
            now,
            replication: w.r,
            nodes,
            files,
            blocks,
        }
    }

    /// A new manager takes over: smoothing state is gone; history is rebuilt
    /// from the decisions it can still see published (or lost).
    pub(super) fn failover(&mut self, rebuild: bool) {
        self.node_ewma.fill(f64::NAN);
        self.block_ewma.clear();
        self.file_ewma.clear();
        self.history = History::new();
        if rebuild {
            for (t, batch) in &self.published {
                self.history.record(batch, *t);
            }
        }
    }
}

/// Independent reversal check: the simulator's own log of applied decisions.
#[derive(Default)]
pub(super) struct ReversalLog {
    replicas: HashMap<(u32, u32), (u64, bool)>,
    files: HashMap<u32, (u64, bool)>,
}

impl ReversalLog {
    /// Record an add/remove; true if it reverses the last one within `hold`.
    fn replica(&mut self, b: u32, n: u32, added: bool, now: u64, hold: u64) -> bool {
        let rev =
            matches!(self.replicas.get(&(b, n)), Some(&(t, a)) if a != added && now - t < hold);
        self.replicas.insert((b, n), (now, added));
        rev
    }

    fn file(&mut self, f: u32, added: bool, now: u64, hold: u64) -> bool {
        let rev = matches!(self.files.get(&f), Some(&(t, a)) if a != added && now - t < hold);
        self.files.insert(f, (now, added));
        rev
    }
}

/// What one round's batch did to the world, for the round's stats.
#[derive(Default)]
pub(super) struct Applied {
    /// Applied decisions by kind: replicate, drop, move, delegate (new), end.
    pub(super) kinds: [u64; 5],
    pub(super) moved_bytes: u64,
    pub(super) reversals: u64,
    pub(super) invalid: u64,
    /// Targets of this round's decisions: (node, utilisation now).
    pub(super) targets: Vec<(u32, f64)>,
}

/// Apply published decisions to the world, validating each.
pub(super) fn apply(
    w: &mut World,
    decisions: &[Decision<u32>],
    now: u64,
    hold: u64,
    util: &[f64],
    log: &mut ReversalLog,
) -> Applied {
    let mut out = Applied::default();
    let nb = w.block_file.len() as u32;
    let nf = w.rate.len() as u32;
    for d in decisions {
        match *d {
            Decision::Replicate { block, to, .. } => {
                let b = index_of(&block);
                if b >= nb || !w.live(to) || w.is_holder(b, to) {
                    out.invalid += 1;
                    continue;
                }
                w.extras.entry(b).or_default().push(to);
                let size = w.block_size[b as usize] as u64;
                w.used[to as usize] += size as f64;
                out.moved_bytes += size;
                out.reversals += log.replica(b, to, true, now, hold) as u64;
                out.targets.push((to, util[to as usize]));
                out.kinds[0] += 1;
            }
            Decision::Move {
                block, from, to, ..
            } => {
                let b = index_of(&block);
                if b >= nb || !w.live(to) || w.is_holder(b, to) {
                    out.invalid += 1;
                    continue;
                }
                let r = w.r;
                let Some(k) = w.holders(b).iter().position(|&h| h == from) else {
                    out.invalid += 1;
                    continue;
                };
                w.base[b as usize * r + k] = to;
                let size = w.block_size[b as usize] as u64;
                w.used[from as usize] -= size as f64;
                w.used[to as usize] += size as f64;
                w.held[from as usize].retain(|&x| x != b);
                w.held[to as usize].push(b);
                out.moved_bytes += size;
                out.reversals += log.replica(b, from, false, now, hold) as u64;
                out.reversals += log.replica(b, to, true, now, hold) as u64;
                out.targets.push((to, util[to as usize]));
                out.kinds[2] += 1;
            }
            Decision::Drop { block, at, .. } => {
                let b = index_of(&block);
                let live_after = if b < nb {
                    let base_live = w.holders(b).iter().filter(|&&h| w.live(h)).count();
                    let extra_live = w
                        .extras
                        .get(&b)
                        .map_or(0, |e| e.iter().filter(|&&h| w.live(h) && h != at).count());
                    base_live + extra_live
                } else {
                    0
                };
                let present = b < nb && w.extras.get(&b).is_some_and(|e| e.contains(&at));
                if !present || live_after < w.r {
                    out.invalid += 1;
                    continue;
                }
                if let Some(e) = w.extras.get_mut(&b) {
                    e.retain(|&x| x != at);
                    if e.is_empty() {
                        w.extras.remove(&b);
                    }
                }
                w.used[at as usize] -= w.block_size[b as usize] as f64;
                out.reversals += log.replica(b, at, false, now, hold) as u64;
                out.kinds[1] += 1;
            }
            Decision::Delegate {
                file,
                to,
                expires_at,
                ..
            } => {
                let f = index_of(&file);
                if f >= nf || !w.live(to) {
                    out.invalid += 1;
                    continue;
                }
                let renewal = w.delegate.get(&f).is_some_and(|&(d, e)| d == to && e > now);
                w.delegate.insert(f, (to, expires_at));
                if !renewal {
                    out.reversals += log.file(f, true, now, hold) as u64;
                    out.targets.push((to, util[to as usize]));
                    out.kinds[3] += 1;
                }
            }
            Decision::EndDelegation { file, at } => {
                let f = index_of(&file);
                if w.delegate.get(&f).map(|&(d, _)| d) != Some(at) {
                    out.invalid += 1;
                    continue;
                }
                w.delegate.remove(&f);
                out.reversals += log.file(f, false, now, hold) as u64;
                out.kinds[4] += 1;
            }
        }
    }
    out
}
