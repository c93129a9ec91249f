//! The simulated world: a seeded cluster (nodes in capacity classes on a DHT
//! ring, files split into blocks, Zipf request rates, the scenario's joiners
//! and failures drawn up front) and how one round of requests lands on it.
//!
//! [`World`] is plain data that every strategy clones, so all of them see the
//! same nodes, files and events; the strategies differ only in what they do
//! to their copy. Routing is here too because it only reads the world:
//! [`route_least_loaded`] for the strategies whose readers pick the
//! least-loaded holder, [`route_bounded`] for consistent hashing with bounded
//! loads.

use super::SimConfig;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use std::collections::{BTreeMap, HashSet};

/// Generated cluster + workload; cloned per strategy so all see the same one.
#[derive(Clone)]
pub(super) struct World {
    pub(super) r: usize,
    // nodes (joiners are pre-generated with `present = false`)
    /// DHT ids of each node (one, or one per capacity unit).
    ring_pos: Vec<Vec<u64>>,
    pub(super) cap: Vec<f64>,
    pub(super) scap: Vec<f64>,
    pub(super) present: Vec<bool>,
    pub(super) alive: Vec<bool>,
    pub(super) used: Vec<f64>,
    /// Base blocks held per node.
    pub(super) held: Vec<Vec<u32>>,
    ring: Vec<(u64, u32)>,
    // files
    pub(super) file_pos: Vec<u64>,
    pub(super) file_first: Vec<u32>,
    pub(super) file_nb: Vec<u32>,
    pub(super) rate: Vec<f64>,
    pub(super) root: Vec<u32>,
    pub(super) delegate: BTreeMap<u32, (u32, u64)>,
    // blocks
    pub(super) block_file: Vec<u32>,
    pub(super) block_size: Vec<u32>,
    pub(super) block_pos: Vec<u64>,
    /// Base holders, R per block, flat.
    pub(super) base: Vec<u32>,
    pub(super) extras: BTreeMap<u32, Vec<u32>>,
    /// Blocks by heat, hottest first (routing order).
    pub(super) order: Vec<u32>,
    // scenario
    pub(super) flash_file: u32,
    pub(super) fail_set: Vec<u32>,
    pub(super) n_initial: usize,
    pub(super) meta: f64,
}

impl World {
    pub(super) fn generate(cfg: &SimConfig) -> World {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let n0 = cfg.nodes.max(cfg.replication + 1);
        let nj = (n0 as f64 * cfg.join_frac).round() as usize;
        let total = n0 + nj;
        let mut ring_pos = Vec::with_capacity(total);
        let mut cap = Vec::with_capacity(total);
        let mut class = Vec::with_capacity(total);
        for _ in 0..total {
            let u: f64 = rng.gen();
            let c: u32 = if u < 0.6 {
                1
            } else if u < 0.9 {
                3
            } else {
                10
            };
            let ids = if cfg.weighted_ids { c } else { 1 };
            ring_pos.push((0..ids).map(|_| rng.gen::<u64>()).collect());
            class.push(c as f64);
            cap.push(c as f64 * cfg.base_capacity);
        }
        let n_files = n0 * cfg.files_per_node;
        let sizes = LogNormal::new(cfg.file_size_median.ln(), cfg.file_size_sigma)
            .unwrap_or_else(|_| LogNormal::new(0.0, 1.0).expect("valid fallback lognormal"));
        let bs = cfg.block_size.max(1);
        let (mut file_pos, mut file_first, mut file_nb) = (vec![], vec![], vec![]);
        let (mut block_file, mut block_size, mut block_pos) = (vec![], vec![], vec![]);
        let mut file_bytes = Vec::with_capacity(n_files);
        for f in 0..n_files {
            let size = (sizes.sample(&mut rng) as u64).clamp(1024, 1 << 30);
            let nb = size.div_ceil(bs);
            file_pos.push(rng.gen::<u64>());
            file_first.push(block_file.len() as u32);
            file_nb.push(nb as u32);
            file_bytes.push(size);
            for k in 0..nb {
                block_file.push(f as u32);
                block_size.push(bs.min(size - k * bs) as u32);
                block_pos.push(rng.gen::<u64>());
            }
        }
        // Zipf popularity over a random permutation of files.
        let mut rank: Vec<u32> = (0..n_files as u32).collect();
        rank.shuffle(&mut rng);
        let weight: Vec<f64> = rank
            .iter()
            .map(|&r| 1.0 / ((r as f64) + 1.0).powf(cfg.zipf))
            .collect();
        let meta = cfg.meta_cost;
        let work_per_req =
            |f: usize| -> f64 { meta + file_bytes[f] as f64 / file_nb[f].max(1) as f64 };
        let raw: f64 = (0..n_files).map(|f| weight[f] * work_per_req(f)).sum();
        let offered = cfg.offered_load * cap[..n0].iter().sum::<f64>();
        let k = offered / raw.max(1e-12);
        let rate: Vec<f64> = weight.iter().map(|w| w * k).collect();
        // Flash crowd: a random file from the colder half.
        let cold: Vec<u32> = (0..n_files as u32)
            .filter(|&f| rank[f as usize] as usize >= n_files / 2)
            .collect();
        let flash_file = *cold.choose(&mut rng).unwrap_or(&0);
        // The failing nodes, drawn from everyone present after the join.
        let mut all: Vec<u32> = (0..total as u32).collect();
        all.shuffle(&mut rng);
        let n_fail = (total as f64 * cfg.fail_frac).round() as usize;
        let fail_set = all[..n_fail.min(total)].to_vec();

        let mut present = vec![false; total];
        present[..n0].fill(true);
        let n_blocks = block_file.len();
        let mut w = World {
            r: cfg.replication,
            ring_pos,
            cap,
            scap: vec![0.0; total],
            present,
            alive: vec![true; total],
            used: vec![0.0; total],
            held: vec![Vec::new(); total],
            ring: Vec::new(),
            file_pos,
            file_first,
            file_nb,
            rate,
            root: vec![0; n_files],
            delegate: BTreeMap::new(),
            block_file,
            block_size,
            block_pos,
            base: vec![0; n_blocks * cfg.replication],
            extras: BTreeMap::new(),
            order: Vec::new(),
            flash_file,
            fail_set,
            n_initial: n0,
            meta,
        };
        w.rebuild_ring();
        for f in 0..n_files {
            w.root[f] = w.first_live(w.file_pos[f]);
        }
        let stored: f64 =
            w.block_size.iter().map(|&s| s as f64).sum::<f64>() * cfg.replication as f64;
        // Disks: equal, or proportional to the capacity class.
        let weight = |n: usize| if cfg.weighted_ids { class[n] } else { 1.0 };
        let per_unit = cfg.storage_headroom * stored / (0..n0).map(weight).sum::<f64>();
        for n in 0..total {
            w.scap[n] = per_unit * weight(n);
        }
        w.sort_order();
        w
    }

    pub(super) fn rebuild_ring(&mut self) {
        self.ring = (0..self.cap.len() as u32)
            .filter(|&n| self.present[n as usize] && self.alive[n as usize])
            .flat_map(|n| self.ring_pos[n as usize].iter().map(move |&p| (p, n)))
            .collect();
        self.ring.sort_unstable();
    }

    /// Live nodes clockwise from `pos`, one ring id at a time (a node with
    /// several ids can appear more than once).
    fn successors(&self, pos: u64) -> impl Iterator<Item = u32> + '_ {
        let start = self.ring.partition_point(|&(p, _)| p < pos);
        let len = self.ring.len();
        (0..len).map(move |i| self.ring[(start + i) % len].1)
    }

    /// The first `k` distinct live nodes clockwise from `pos` (closest-k).
    fn closest(&self, pos: u64, k: usize, out: &mut Vec<u32>) {
        out.clear();
        for n in self.successors(pos) {
            if out.len() >= k {
                break;
            }
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }

    /// First live node clockwise from `pos` (the DHT-closest).
    fn first_live(&self, pos: u64) -> u32 {
        self.successors(pos).next().unwrap_or(0)
    }

    pub(super) fn heat(&self, b: u32) -> f64 {
        let f = self.block_file[b as usize] as usize;
        self.rate[f] / self.file_nb[f] as f64 * self.block_size[b as usize] as f64
    }

    pub(super) fn record_heat(&self, f: u32) -> f64 {
        self.rate[f as usize] * self.meta
    }

    pub(super) fn sort_order(&mut self) {
        let heat: Vec<f64> = (0..self.block_file.len() as u32)
            .map(|b| self.heat(b))
            .collect();
        let mut order: Vec<u32> = (0..self.block_file.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            heat[b as usize]
                .total_cmp(&heat[a as usize])
                .then(a.cmp(&b))
        });
        self.order = order;
    }

    pub(super) fn holders(&self, b: u32) -> &[u32] {
        &self.base[b as usize * self.r..(b as usize + 1) * self.r]
    }

    /// Initial base placement: closest-R, or R of the 2R closest by lowest
    /// storage utilisation (two choices per replica), written in block order.
    pub(super) fn place(&mut self, two_choices: bool) {
        let r = self.r;
        let mut cand: Vec<u32> = Vec::with_capacity(2 * r);
        for b in 0..self.block_file.len() {
            cand.clear();
            let want = if two_choices { 2 * r } else { r };
            self.closest(self.block_pos[b], want, &mut cand);
            if two_choices {
                // Stable sort keeps ring order among equals.
                let used = &self.used;
                let scap = &self.scap;
                cand.sort_by(|&x, &y| {
                    (used[x as usize] / scap[x as usize])
                        .total_cmp(&(used[y as usize] / scap[y as usize]))
                });
            }
            for (k, &n) in cand.iter().take(r).enumerate() {
                self.base[b * r + k] = n;
                self.used[n as usize] += self.block_size[b] as f64;
                self.held[n as usize].push(b as u32);
            }
        }
    }

    pub(super) fn stored_bytes(&self) -> u64 {
        self.block_size.iter().map(|&s| s as u64).sum::<u64>() * self.r as u64
    }

    pub(super) fn live(&self, n: u32) -> bool {
        self.present[n as usize] && self.alive[n as usize]
    }

    pub(super) fn is_holder(&self, b: u32, n: u32) -> bool {
        self.holders(b).contains(&n) || self.extras.get(&b).is_some_and(|e| e.contains(&n))
    }

    /// DHT repair after failures: dead base holders are replaced by the next
    /// live ring successor, roots re-elected; extras on dead nodes vanish.
    /// Returns repaired bytes.
    pub(super) fn repair(&mut self) -> u64 {
        let r = self.r;
        let mut bytes = 0u64;
        for b in 0..self.block_file.len() {
            for k in 0..r {
                let n = self.base[b * r + k];
                if self.alive[n as usize] {
                    continue;
                }
                let pos = self.block_pos[b];
                let repl = self.successors(pos).find(|&c| !self.is_holder(b as u32, c));
                if let Some(c) = repl {
                    self.base[b * r + k] = c;
                    self.used[c as usize] += self.block_size[b] as f64;
                    self.held[c as usize].push(b as u32);
                    bytes += self.block_size[b] as u64;
                }
            }
        }
        for n in 0..self.cap.len() {
            if !self.alive[n] {
                self.held[n].clear();
                self.used[n] = 0.0;
            }
        }
        let alive = &self.alive;
        self.extras.retain(|_, e| {
            e.retain(|&n| alive[n as usize]);
            !e.is_empty()
        });
        for f in 0..self.root.len() {
            if !self.alive[self.root[f] as usize] {
                self.root[f] = self.first_live(self.file_pos[f]);
            }
        }
        bytes
    }

    /// Who serves file `f`'s record reads at time `now`.
    fn record_server(&self, f: u32, now: u64) -> u32 {
        match self.delegate.get(&f) {
            Some(&(d, exp)) if exp > now && self.live(d) => d,
            _ => self.root[f as usize],
        }
    }
}

/// Per-round served load, plus what nodes would report as their top items.
pub(super) struct Served {
    pub(super) load: Vec<f64>,
    /// Per node: (served, block), best `report_hot_blocks`.
    pub(super) top_blocks: Vec<Vec<(f64, u32)>>,
    /// Per node: (served, file), best `report_files`.
    pub(super) top_files: Vec<Vec<(f64, u32)>>,
}

/// Keep the `k` largest (value, id) pairs, ties to the smaller id.
fn push_top(v: &mut Vec<(f64, u32)>, k: usize, item: (f64, u32)) {
    if k == 0 {
        return;
    }
    let better = |a: &(f64, u32), b: &(f64, u32)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);
    if v.len() < k {
        v.push(item);
    } else if let Some((wi, worst)) = v
        .iter()
        .enumerate()
        .min_by(|a, b| {
            if better(a.1, b.1) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Less
            }
        })
        .map(|(i, x)| (i, *x))
    {
        if better(&item, &worst) {
            v[wi] = item;
        }
    }
}

/// Spread `amount` over `holders` so their utilisations level out (least-loaded
/// holder first). Calls `give(node, share)` for each holder that gets some.
fn water_fill(
    holders: &mut [(f64, u32)],
    amount: f64,
    load: &mut [f64],
    cap: &[f64],
    mut give: impl FnMut(u32, f64),
) {
    holders.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut l, mut c) = (0.0, 0.0);
    let mut k = 0;
    let mut level = 0.0;
    while k < holders.len() {
        let n = holders[k].1 as usize;
        l += load[n];
        c += cap[n];
        k += 1;
        level = (amount + l) / c;
        if k < holders.len() && holders[k].0 >= level {
            break;
        }
    }
    for &(_, n) in &holders[..k] {
        let n = n as usize;
        let share = (level * cap[n] - load[n]).max(0.0);
        if share > 0.0 {
            load[n] += share;
            give(n as u32, share);
        }
    }
}

/// Route one round of requests. `track` collects per-node top items for the view.
pub(super) fn route_least_loaded(w: &World, now: u64, track: Option<(usize, usize)>) -> Served {
    let n = w.cap.len();
    let mut load = vec![0.0; n];
    let (kb, kf) = track.unwrap_or((0, 0));
    let mut top_blocks = vec![Vec::new(); if track.is_some() { n } else { 0 }];
    let mut top_files = vec![Vec::new(); if track.is_some() { n } else { 0 }];
    for f in 0..w.rate.len() as u32 {
        let h = w.record_heat(f);
        let s = w.record_server(f, now);
        if w.live(s) {
            load[s as usize] += h;
            if track.is_some() {
                push_top(&mut top_files[s as usize], kf, (h, f));
            }
        }
    }
    let mut hs: Vec<(f64, u32)> = Vec::with_capacity(8);
    for &b in &w.order {
        hs.clear();
        let extra = w.extras.get(&b).map(|e| e.as_slice()).unwrap_or(&[]);
        for &h in w.holders(b).iter().chain(extra) {
            if w.live(h) {
                hs.push((load[h as usize] / w.cap[h as usize], h));
            }
        }
        if hs.is_empty() {
            continue;
        }
        let heat = w.heat(b);
        water_fill(&mut hs, heat, &mut load, &w.cap, |node, share| {
            if track.is_some() {
                push_top(&mut top_blocks[node as usize], kb, (share, b));
            }
        });
    }
    Served {
        load,
        top_blocks,
        top_files,
    }
}

/// Consistent hashing with bounded loads: each item walks the ring from its
/// key and fills nodes up to `c × mean utilisation × capacity`. Non-holders
/// that serve a block cache it (new cache fills are returned as bytes).
pub(super) fn route_bounded(w: &World, c: f64, cache: &mut HashSet<(u32, u32)>) -> (Vec<f64>, u64) {
    let n = w.cap.len();
    let mut load = vec![0.0; n];
    let total: f64 = (0..w.block_file.len() as u32)
        .map(|b| w.heat(b))
        .sum::<f64>()
        + (0..w.rate.len() as u32)
            .map(|f| w.record_heat(f))
            .sum::<f64>();
    let live_cap: f64 = (0..n as u32)
        .filter(|&x| w.live(x))
        .map(|x| w.cap[x as usize])
        .sum();
    let bound = c * total / live_cap.max(1e-12);
    for f in 0..w.rate.len() as u32 {
        bounded_fill(
            w,
            bound,
            w.file_pos[f as usize],
            w.record_heat(f),
            &mut load,
            &mut |_| {},
        );
    }
    let mut fills = 0u64;
    for &b in &w.order {
        let size = w.block_size[b as usize] as u64;
        let holders = w.holders(b);
        let mut newly = Vec::new();
        bounded_fill(
            w,
            bound,
            w.block_pos[b as usize],
            w.heat(b),
            &mut load,
            &mut |node| {
                if !holders.contains(&node) {
                    newly.push(node);
                }
            },
        );
        for node in newly {
            if cache.insert((b, node)) {
                fills += size;
            }
        }
    }
    (load, fills)
}

/// Walk the ring from `pos`, giving each node load up to `bound × capacity`;
/// `on(node)` is called for every node that serves part of `amount`.
fn bounded_fill(
    w: &World,
    bound: f64,
    pos: u64,
    amount: f64,
    load: &mut [f64],
    on: &mut dyn FnMut(u32),
) {
    let mut rem = amount;
    let mut first = None;
    for node in w.successors(pos) {
        first.get_or_insert(node);
        let room = bound * w.cap[node as usize] - load[node as usize];
        if room <= 0.0 {
            continue;
        }
        let x = rem.min(room);
        load[node as usize] += x;
        on(node);
        rem -= x;
        if rem <= 0.0 {
            return;
        }
    }
    if let Some(node) = first {
        load[node as usize] += rem; // everyone is at the bound: overflow stays home
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_fill_levels_holders() {
        let cap = [1.0, 3.0, 1.0];
        let mut load = [0.5, 0.0, 2.0];
        let mut hs: Vec<(f64, u32)> = (0..3).map(|i| (load[i] / cap[i], i as u32)).collect();
        let mut given = 0.0;
        water_fill(&mut hs, 2.5, &mut load, &cap, |_, x| given += x);
        assert!((given - 2.5).abs() < 1e-9);
        // Nodes 0 and 1 level at (2.5 + 0.5) / 4 = 0.75; node 2 (at 2.0) gets nothing.
        assert!((load[0] - 0.75).abs() < 1e-9 && (load[1] - 2.25).abs() < 1e-9);
        assert_eq!(load[2], 2.0);
    }
}
