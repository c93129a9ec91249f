//! Load-balancing simulator: runs the real planner ([`super::plan::plan`])
//! and the baselines over one seeded synthetic cluster, and reports how
//! evenly requests and storage are spread, how much data moves, and whether
//! the anti-jitter rules hold.
//!
//! What it models, per round of `interval_ms`:
//! * nodes in capacity classes (60% 1×, 30% 3×, 10% 10× serve bandwidth;
//!   every node offers the same disk quota), a DHT ring with one random
//!   position per node, blocks placed on the R ring successors of their key
//!   (closest-R) and file records on the first successor (the root);
//! * lognormal file sizes split into 1 MiB blocks, Zipf file popularity
//!   scaled so the offered work is a fixed fraction of total capacity; a
//!   request reads the file record (a fixed metadata cost) and one block;
//! * routing: record reads go to a live delegate if one exists, else the
//!   root; block reads go to the least-loaded live holder (base + extras
//!   from the last published decisions). Readers learn holder load from
//!   responses, so within a round this is water-filling over the holders,
//!   hottest blocks first;
//! * the manager's view: ±`noise` on every report, EWMA smoothing (fast up,
//!   slow down), each
//!   node reporting only its top hot blocks and files (plus, if above the
//!   mean storage, a few cold blocks it could shed);
//! * events, at fixed measured rounds: a flash crowd on a cold file, 10% of
//!   nodes joining empty, 5% failing (the DHT re-replicates their blocks one
//!   round later), and a manager failover (smoothing state lost, history
//!   rebuilt from the published decisions, or lost if configured).
//!
//! Strategies, all on the same generated workload and events:
//! `swarmstore` (the planner with [`Policy::default`]), `closest-R` (no
//! balancing), `two-choices` (each replica written to the emptier of two
//! ring candidates), `hdfs-balancer` (the planner restricted to storage-band
//! moves, [`Policy::hdfs_only`]) and `bounded-load` (consistent hashing with
//! bounded loads, c = 1.25: a request walks the ring from its key to the
//! first node under c × average load, which caches the block; cache fills
//! count as moved bytes, caches are not counted as stored bytes).

use super::plan::{self, BlockView, ClusterView, Decision, FileView, History, NodeView, Policy};
use plotters::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Instant;

/// Targets the project has to show (1,000 nodes, Zipf 1.0, load 0.7).
pub const TARGET_REQ_PEAK_MEAN: f64 = 1.25;
pub const TARGET_FLASH_ROUNDS: usize = 5;
pub const TARGET_STO_PEAK_MEAN: f64 = 1.10;
pub const TARGET_MOVED_FRAC: f64 = 0.08;
pub const TARGET_PLAN_MS: f64 = 1000.0;

/// Upper bound of the per-round decisions cap the simulator gives the
/// planner (2 per node below it). A round's decisions are one published
/// batch that every node applies; a few thousand per round keeps that batch
/// and the copy traffic it starts bounded however large the swarm.
pub const MAX_DECISIONS_PER_ROUND: usize = 4096;

/// A balancing strategy compared by the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    /// The planner in `plan.rs` with its full policy.
    Swarm,
    /// Plain closest-R placement, no balancing.
    ClosestR,
    /// Two choices at write time: each replica goes to the emptier of two
    /// ring candidates.
    TwoChoices,
    /// HDFS balancer rules: ±10% storage band, moves only.
    Hdfs,
    /// Consistent hashing with bounded loads (c = `SimConfig::bounded_c`).
    BoundedLoad,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::Swarm,
        Strategy::ClosestR,
        Strategy::TwoChoices,
        Strategy::Hdfs,
        Strategy::BoundedLoad,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Swarm => "swarmstore",
            Strategy::ClosestR => "closest-R",
            Strategy::TwoChoices => "two-choices",
            Strategy::Hdfs => "hdfs-balancer",
            Strategy::BoundedLoad => "bounded-load",
        }
    }

    /// The planner policy this strategy runs each round, if any.
    fn policy(self, base: &Policy) -> Option<Policy> {
        match self {
            Strategy::Swarm => Some(base.clone()),
            Strategy::Hdfs => Some(Policy {
                replicate: false,
                delegate: false,
                ..base.clone()
            }),
            _ => None,
        }
    }
}

/// Measured rounds (counted from the end of warm-up) at which events fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Events {
    pub flash: usize,
    pub join: usize,
    pub fail: usize,
    pub failover: usize,
}

impl Events {
    /// Spread the four events over `rounds` measured rounds (5/20/35/50 of 60).
    pub fn spread(rounds: usize) -> Self {
        Events {
            flash: rounds / 12,
            join: rounds / 3,
            fail: rounds * 7 / 12,
            failover: rounds * 5 / 6,
        }
    }
}

/// Everything that shapes a simulation run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: usize,
    pub zipf: f64,
    pub seed: u64,
    /// Rounds run before measurement starts (initial placement settles).
    pub warmup_rounds: usize,
    /// Measured rounds.
    pub rounds: usize,
    pub events: Events,
    pub interval_ms: u64,
    pub files_per_node: usize,
    pub replication: usize,
    pub block_size: u64,
    pub file_size_median: f64,
    pub file_size_sigma: f64,
    /// Offered work as a fraction of the initial total serve capacity.
    pub offered_load: f64,
    /// Serve capacity of a 1× node, work units (bytes)/s.
    pub base_capacity: f64,
    /// Work units of one record read.
    pub meta_cost: f64,
    /// Multiplicative report noise, ±.
    pub noise: f64,
    /// EWMA weight of a new report that is above the smoothed value ...
    pub ewma_alpha_up: f64,
    /// ... and below it ("attack fast, release slow": load spikes are seen
    /// within a round, while relief is undone only after heat stays low).
    pub ewma_alpha_down: f64,
    /// Every node's disk = this × the mean initial stored bytes per node.
    pub storage_headroom: f64,
    /// Share of all offered work the flash-crowd file gets.
    pub flash_share: f64,
    pub join_frac: f64,
    pub fail_frac: f64,
    /// Each node takes one DHT id per capacity unit (virtual ids) and a disk
    /// proportional to its class, so base placement follows capacity. With
    /// `false` every node has one id and the same disk.
    pub weighted_ids: bool,
    /// On failover, rebuild history from published decisions (else start empty).
    pub failover_rebuild: bool,
    pub report_hot_blocks: usize,
    pub report_cold_blocks: usize,
    pub report_files: usize,
    /// Bytes-moved cap per round, as a fraction of the stored bytes.
    pub move_budget_frac: f64,
    pub bounded_c: f64,
    /// Base policy for the planner strategies; `max_decisions` and
    /// `max_move_bytes` are scaled to the cluster (see [`SimConfig::policy_for`]).
    pub policy: Policy,
    pub strategies: Vec<Strategy>,
}

impl Default for SimConfig {
    fn default() -> Self {
        let rounds = 60;
        SimConfig {
            nodes: 1000,
            zipf: 1.0,
            seed: 1,
            warmup_rounds: 40,
            rounds,
            events: Events::spread(rounds),
            interval_ms: 10_000,
            files_per_node: 20,
            replication: 3,
            block_size: 1 << 20,
            file_size_median: 2.0 * (1 << 20) as f64,
            file_size_sigma: 1.2,
            offered_load: 0.7,
            base_capacity: 100e6,
            meta_cost: 4096.0,
            noise: 0.10,
            ewma_alpha_up: 0.8,
            ewma_alpha_down: 0.3,
            storage_headroom: 4.0,
            flash_share: 0.10,
            join_frac: 0.10,
            fail_frac: 0.05,
            weighted_ids: true,
            failover_rebuild: true,
            report_hot_blocks: 8,
            report_cold_blocks: 64,
            report_files: 4,
            move_budget_frac: 0.02,
            bounded_c: 1.25,
            policy: Policy::default(),
            strategies: Strategy::ALL.to_vec(),
        }
    }
}

impl SimConfig {
    /// Default config for `nodes`, `zipf`, `rounds` measured rounds and `seed`.
    pub fn new(nodes: usize, zipf: f64, rounds: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            zipf,
            rounds,
            seed,
            events: Events::spread(rounds),
            ..SimConfig::default()
        }
    }

    /// The planner policy scaled to this cluster: decisions cap grows with
    /// the node count up to [`MAX_DECISIONS_PER_ROUND`], bytes cap is a
    /// fraction of stored bytes.
    pub fn policy_for(&self, stored_bytes: u64) -> Policy {
        Policy {
            max_decisions: self
                .policy
                .max_decisions
                .max((self.nodes * 2).min(MAX_DECISIONS_PER_ROUND)),
            max_move_bytes: (stored_bytes as f64 * self.move_budget_frac) as u64,
            ..self.policy.clone()
        }
    }
}

/// Metrics of one round (true values, live nodes only).
#[derive(Clone, Debug, PartialEq)]
pub struct RoundStats {
    /// Negative during warm-up; 0 = first measured round.
    pub round: i64,
    pub event: &'static str,
    /// Capacity-weighted mean utilisation (load / serve capacity).
    pub mean_util: f64,
    /// Peak utilisation / mean utilisation.
    pub req_peak_mean: f64,
    /// Coefficient of variation of utilisation across nodes.
    pub req_cv: f64,
    /// Peak storage utilisation / mean storage utilisation.
    pub sto_peak_mean: f64,
    pub sto_cv: f64,
    /// Balancer-moved bytes (moves, replica copies, cache fills) since
    /// measurement start, over stored base bytes.
    pub moved_frac: f64,
    /// Cumulative decisions that reversed one on the same object within the hold time.
    pub reversals: u64,
    /// Cumulative decision targets found above capacity the round after (and busier than before).
    pub over_capacity: u64,
    /// Cumulative decisions the simulator refused (dead target, below R, stale).
    pub invalid: u64,
    pub decisions: usize,
    pub extras: usize,
    pub view_blocks: usize,
    /// Wall-clock time of the `plan()` call.
    pub plan_ms: f64,
    /// CPU time of the `plan()` call on its thread (Linux; equals `plan_ms`
    /// where the OS does not report it). On a shared machine the wall time
    /// includes waiting for a core.
    pub plan_cpu_ms: f64,
}

/// Headline numbers of one strategy.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub req_before_flash: f64,
    /// Request peak/mean `TARGET_FLASH_ROUNDS` rounds after the flash crowd.
    pub req_at_flash_plus5: f64,
    /// Worst request peak/mean from flash+5 until the next event.
    pub req_worst_after_flash5: f64,
    pub rounds_flash: Option<usize>,
    /// Storage peak/mean just before the failure event (join settled).
    pub sto_after_join: f64,
    pub rounds_join: Option<usize>,
    pub rounds_fail: Option<usize>,
    pub rounds_failover: Option<usize>,
    pub final_req: f64,
    pub final_req_cv: f64,
    pub final_sto: f64,
    pub final_sto_cv: f64,
    pub moved_frac: f64,
    pub warmup_moved_frac: f64,
    pub reversals: u64,
    pub over_capacity: u64,
    pub invalid: u64,
    pub decisions: usize,
    /// Decisions applied in the measured rounds by kind:
    /// replicate, drop, move, delegate (new, not renewals), end delegation.
    pub kinds: [u64; 5],
    pub plan_ms_median: f64,
    pub plan_ms_max: f64,
    pub plan_cpu_ms_median: f64,
    pub plan_cpu_ms_max: f64,
    pub max_view_blocks: usize,
}

/// One strategy's run.
#[derive(Clone, Debug)]
pub struct StrategyRun {
    pub strategy: Strategy,
    pub rounds: Vec<RoundStats>,
    pub summary: Summary,
}

/// A whole simulation: the same workload under every strategy.
#[derive(Clone, Debug)]
pub struct SimReport {
    pub config: SimConfig,
    pub files: usize,
    pub blocks: usize,
    pub joined: usize,
    pub failed: usize,
    pub flash_blocks: usize,
    pub stored_bytes: u64,
    pub runs: Vec<StrategyRun>,
}

// ---------------------------------------------------------------------------
// The world

/// Generated cluster + workload; cloned per strategy so all see the same one.
#[derive(Clone)]
struct World {
    r: usize,
    // nodes (joiners are pre-generated with `present = false`)
    /// DHT ids of each node (one, or one per capacity unit).
    ring_pos: Vec<Vec<u64>>,
    cap: Vec<f64>,
    scap: Vec<f64>,
    present: Vec<bool>,
    alive: Vec<bool>,
    used: Vec<f64>,
    /// Base blocks held per node.
    held: Vec<Vec<u32>>,
    ring: Vec<(u64, u32)>,
    // files
    file_pos: Vec<u64>,
    file_first: Vec<u32>,
    file_nb: Vec<u32>,
    rate: Vec<f64>,
    root: Vec<u32>,
    delegate: BTreeMap<u32, (u32, u64)>,
    // blocks
    block_file: Vec<u32>,
    block_size: Vec<u32>,
    block_pos: Vec<u64>,
    /// Base holders, R per block, flat.
    base: Vec<u32>,
    extras: BTreeMap<u32, Vec<u32>>,
    /// Blocks by heat, hottest first (routing order).
    order: Vec<u32>,
    // scenario
    flash_file: u32,
    fail_set: Vec<u32>,
    n_initial: usize,
    meta: f64,
}

impl World {
    fn generate(cfg: &SimConfig) -> World {
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

    fn rebuild_ring(&mut self) {
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

    fn heat(&self, b: u32) -> f64 {
        let f = self.block_file[b as usize] as usize;
        self.rate[f] / self.file_nb[f] as f64 * self.block_size[b as usize] as f64
    }

    fn record_heat(&self, f: u32) -> f64 {
        self.rate[f as usize] * self.meta
    }

    fn sort_order(&mut self) {
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

    fn holders(&self, b: u32) -> &[u32] {
        &self.base[b as usize * self.r..(b as usize + 1) * self.r]
    }

    /// Initial base placement: closest-R, or R of the 2R closest by lowest
    /// storage utilisation (two choices per replica), written in block order.
    fn place(&mut self, two_choices: bool) {
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

    fn stored_bytes(&self) -> u64 {
        self.block_size.iter().map(|&s| s as u64).sum::<u64>() * self.r as u64
    }

    fn live(&self, n: u32) -> bool {
        self.present[n as usize] && self.alive[n as usize]
    }

    fn is_holder(&self, b: u32, n: u32) -> bool {
        self.holders(b).contains(&n) || self.extras.get(&b).is_some_and(|e| e.contains(&n))
    }

    /// DHT repair after failures: dead base holders are replaced by the next
    /// live ring successor, roots re-elected; extras on dead nodes vanish.
    /// Returns repaired bytes.
    fn repair(&mut self) -> u64 {
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
struct Served {
    load: Vec<f64>,
    /// Per node: (served, block), best `report_hot_blocks`.
    top_blocks: Vec<Vec<(f64, u32)>>,
    /// Per node: (served, file), best `report_files`.
    top_files: Vec<Vec<(f64, u32)>>,
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
fn route_least_loaded(w: &World, now: u64, track: Option<(usize, usize)>) -> Served {
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
fn route_bounded(w: &World, c: f64, cache: &mut HashSet<(u32, u32)>) -> (Vec<f64>, u64) {
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

/// Utilisation spread: (peak/mean with capacity-weighted mean, CV).
fn spread(values: impl Iterator<Item = (f64, f64)>) -> (f64, f64, f64) {
    let (mut num, mut den, mut peak) = (0.0, 0.0, 0.0f64);
    let mut utils = Vec::new();
    for (x, c) in values {
        if c <= 0.0 {
            continue;
        }
        num += x;
        den += c;
        let u = x / c;
        peak = peak.max(u);
        utils.push(u);
    }
    if den <= 0.0 || num <= 0.0 || utils.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mean_w = num / den;
    let m = utils.iter().sum::<f64>() / utils.len() as f64;
    let var = utils.iter().map(|u| (u - m) * (u - m)).sum::<f64>() / utils.len() as f64;
    (
        mean_w,
        peak / mean_w,
        if m > 0.0 { var.sqrt() / m } else { 0.0 },
    )
}

// ---------------------------------------------------------------------------
// The manager, as seen by the simulator

struct Manager {
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
    fn view(
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
    fn failover(&mut self, rebuild: bool) {
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
struct ReversalLog {
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

#[derive(Default)]
struct Applied {
    /// Applied decisions by kind: replicate, drop, move, delegate (new), end.
    kinds: [u64; 5],
    moved_bytes: u64,
    reversals: u64,
    invalid: u64,
    /// Targets of this round's decisions: (node, utilisation now).
    targets: Vec<(u32, f64)>,
}

/// Apply published decisions to the world, validating each.
fn apply(
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

// ---------------------------------------------------------------------------
// Running

/// Run every configured strategy over the same generated cluster and workload.
pub fn run(cfg: &SimConfig) -> SimReport {
    let world = World::generate(cfg);
    let stored = world.stored_bytes();
    let flash_blocks = world.file_nb[world.flash_file as usize] as usize;
    let runs = cfg
        .strategies
        .iter()
        .map(|&s| run_strategy(cfg, &world, s))
        .collect();
    SimReport {
        config: cfg.clone(),
        files: world.rate.len(),
        blocks: world.block_file.len(),
        joined: world.cap.len() - world.n_initial,
        failed: world.fail_set.len(),
        flash_blocks,
        stored_bytes: stored,
        runs,
    }
}

fn run_strategy(cfg: &SimConfig, base: &World, strategy: Strategy) -> StrategyRun {
    let mut w = base.clone();
    w.place(strategy == Strategy::TwoChoices);
    let stored = w.stored_bytes();
    let policy = strategy.policy(&cfg.policy_for(stored));
    let hold = policy.as_ref().map_or(cfg.policy.hold_ms, |p| p.hold_ms);
    let mut mgr = policy.map(|p| Manager {
        policy: p,
        history: History::new(),
        published: VecDeque::new(),
        node_ewma: vec![f64::NAN; w.cap.len()],
        block_ewma: HashMap::new(),
        file_ewma: HashMap::new(),
        rng: StdRng::seed_from_u64(cfg.seed ^ 0x005e_ed0f_7e57),
    });
    let mut mark = vec![false; w.block_file.len()];
    let mut cache: HashSet<(u32, u32)> = HashSet::new();
    let mut log = ReversalLog::default();
    let mut rounds = Vec::new();
    let (mut moved, mut warm_moved) = (0u64, 0u64);
    let (mut reversals, mut over, mut invalid) = (0u64, 0u64, 0u64);
    let mut pending_targets: Vec<(u32, f64)> = Vec::new();
    let mut kinds = [0u64; 5];
    let mut repair_due = false;
    let total_rounds = cfg.warmup_rounds + cfg.rounds;
    for round in 0..total_rounds {
        let t = round as i64 - cfg.warmup_rounds as i64;
        let now = round as u64 * cfg.interval_ms;
        let mut event = "";
        if repair_due {
            w.repair();
            w.rebuild_ring();
            repair_due = false;
        }
        if t >= 0 {
            let t = t as usize;
            let e = cfg.events;
            if t == e.flash {
                event = "flash";
                flash(&mut w, cfg.flash_share);
            }
            if t == e.join {
                event = "join";
                for n in w.n_initial..w.cap.len() {
                    w.present[n] = true;
                }
                w.rebuild_ring();
            }
            if t == e.fail {
                event = "fail";
                for &n in &w.fail_set {
                    w.alive[n as usize] = false;
                }
                w.rebuild_ring();
                cache.retain(|&(_, n)| w.alive[n as usize]);
                // The DHT notices and re-replicates one round later.
                repair_due = true;
            }
            if t == e.failover {
                event = "failover";
                if let Some(m) = mgr.as_mut() {
                    m.failover(cfg.failover_rebuild);
                }
            }
        }
        // Serve this round's requests.
        let track = mgr
            .as_ref()
            .map(|_| (cfg.report_hot_blocks, cfg.report_files));
        let served = if strategy == Strategy::BoundedLoad {
            let (load, fills) = route_bounded(&w, cfg.bounded_c, &mut cache);
            if t >= 0 {
                moved += fills;
            } else {
                warm_moved += fills;
            }
            Served {
                load,
                top_blocks: vec![],
                top_files: vec![],
            }
        } else {
            route_least_loaded(&w, now, track)
        };
        let live: Vec<usize> = (0..w.cap.len()).filter(|&n| w.live(n as u32)).collect();
        let (mean_util, req_pm, req_cv) = spread(live.iter().map(|&n| (served.load[n], w.cap[n])));
        let (_, sto_pm, sto_cv) = spread(live.iter().map(|&n| (w.used[n], w.scap[n])));
        let util: Vec<f64> = (0..w.cap.len())
            .map(|n| served.load[n] / w.cap[n])
            .collect();
        // Targets of last round's decisions that are now over capacity.
        over += pending_targets
            .iter()
            .filter(|&&(n, before)| {
                w.live(n) && util[n as usize] > 1.0 && util[n as usize] > before
            })
            .count() as u64;
        pending_targets.clear();

        let (mut decisions, mut plan_ms, mut plan_cpu_ms, mut view_blocks) = (0, 0.0, 0.0, 0);
        if let Some(m) = mgr.as_mut() {
            let view = m.view(cfg, &w, &served, now, &mut mark);
            view_blocks = view.blocks.len();
            let (start, cpu_start) = (Instant::now(), thread_cpu_ms());
            let ds = plan::plan(&view, &m.policy, &m.history);
            plan_ms = start.elapsed().as_secs_f64() * 1e3;
            plan_cpu_ms = match (cpu_start, thread_cpu_ms()) {
                (Some(a), Some(b)) => b - a,
                _ => plan_ms,
            };
            drop(view);
            let a = apply(&mut w, &ds, now, hold, &util, &mut log);
            if t >= 0 {
                moved += a.moved_bytes;
            } else {
                warm_moved += a.moved_bytes;
            }
            reversals += a.reversals;
            invalid += a.invalid;
            if t >= 0 {
                for (k, x) in kinds.iter_mut().zip(a.kinds) {
                    *k += x;
                }
            }
            pending_targets = a.targets;
            m.history.record(&ds, now);
            decisions = ds.len();
            m.published.push_back((now, ds));
            while m
                .published
                .front()
                .is_some_and(|(pt, _)| now.saturating_sub(*pt) > 2 * m.policy.hold_ms)
            {
                m.published.pop_front();
            }
        }
        rounds.push(RoundStats {
            round: t,
            event,
            mean_util,
            req_peak_mean: req_pm,
            req_cv,
            sto_peak_mean: sto_pm,
            sto_cv,
            moved_frac: moved as f64 / stored as f64,
            reversals,
            over_capacity: over,
            invalid,
            decisions,
            extras: w.extras.values().map(|e| e.len()).sum(),
            view_blocks,
            plan_ms,
            plan_cpu_ms,
        });
    }
    let mut summary = summarize(cfg, &rounds, warm_moved as f64 / stored as f64);
    summary.kinds = kinds;
    StrategyRun {
        strategy,
        rounds,
        summary,
    }
}

/// CPU time consumed by the calling thread so far, in ms
/// (`CLOCK_THREAD_CPUTIME_ID`; 64-bit Linux only, `None` elsewhere).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_ms() -> Option<f64> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (two 64-bit fields on
    // 64-bit Linux), and clock_gettime writes nothing else.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6)
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn thread_cpu_ms() -> Option<f64> {
    None
}

/// The flash crowd: one cold file now takes `share` of all offered work,
/// everyone else's rate shrinks so the total stays the same.
fn flash(w: &mut World, share: f64) {
    let work = |w: &World, f: usize| {
        w.rate[f]
            * (w.meta
                + (0..w.file_nb[f])
                    .map(|k| w.block_size[(w.file_first[f] + k) as usize] as f64)
                    .sum::<f64>()
                    / w.file_nb[f] as f64)
    };
    let total: f64 = (0..w.rate.len()).map(|f| work(w, f)).sum();
    let ff = w.flash_file as usize;
    let old = work(w, ff);
    let per_req = old / w.rate[ff].max(1e-300);
    let scale = (1.0 - share) * total / (total - old).max(1e-12);
    for r in w.rate.iter_mut() {
        *r *= scale;
    }
    w.rate[ff] = share * total / per_req;
    w.sort_order();
}

/// First measured round from `from` (inclusive) to `until` (exclusive) at
/// which `ok` holds, as rounds after `from`.
fn rounds_to(
    rounds: &[RoundStats],
    from: usize,
    until: usize,
    ok: impl Fn(&RoundStats) -> bool,
) -> Option<usize> {
    rounds
        .iter()
        .filter(|r| r.round >= from as i64 && r.round < until as i64)
        .find(|r| ok(r))
        .map(|r| (r.round - from as i64) as usize)
}

fn summarize(cfg: &SimConfig, rounds: &[RoundStats], warm_moved: f64) -> Summary {
    let e = cfg.events;
    let at = |t: usize| rounds.iter().find(|r| r.round == t as i64);
    let last = rounds.last();
    let req_ok = |r: &RoundStats| within(r.req_peak_mean, TARGET_REQ_PEAK_MEAN);
    let sto_ok = |r: &RoundStats| within(r.sto_peak_mean, TARGET_STO_PEAK_MEAN);
    let both = |r: &RoundStats| req_ok(r) && sto_ok(r);
    let end = cfg.rounds;
    let sorted = |f: fn(&RoundStats) -> f64| -> Vec<f64> {
        let mut v: Vec<f64> = rounds.iter().map(f).filter(|&x| x > 0.0).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let plan_ms = sorted(|r| r.plan_ms);
    let plan_cpu_ms = sorted(|r| r.plan_cpu_ms);
    let before: Vec<f64> = rounds
        .iter()
        .filter(|r| r.round >= e.flash as i64 - 3 && r.round < e.flash as i64)
        .map(|r| r.req_peak_mean)
        .collect();
    let f5 = e.flash + TARGET_FLASH_ROUNDS;
    Summary {
        req_before_flash: before.iter().copied().fold(0.0, f64::max),
        req_at_flash_plus5: at(f5).map_or(f64::NAN, |r| r.req_peak_mean),
        req_worst_after_flash5: rounds
            .iter()
            .filter(|r| r.round >= f5 as i64 && r.round < e.join as i64)
            .map(|r| r.req_peak_mean)
            .fold(f64::NAN, f64::max),
        rounds_flash: rounds_to(rounds, e.flash, e.join, req_ok),
        sto_after_join: at(e.fail.saturating_sub(1)).map_or(f64::NAN, |r| r.sto_peak_mean),
        rounds_join: rounds_to(rounds, e.join, e.fail, sto_ok),
        rounds_fail: rounds_to(rounds, e.fail, e.failover, both),
        rounds_failover: rounds_to(rounds, e.failover, end, both),
        final_req: last.map_or(f64::NAN, |r| r.req_peak_mean),
        final_req_cv: last.map_or(f64::NAN, |r| r.req_cv),
        final_sto: last.map_or(f64::NAN, |r| r.sto_peak_mean),
        final_sto_cv: last.map_or(f64::NAN, |r| r.sto_cv),
        moved_frac: last.map_or(0.0, |r| r.moved_frac),
        warmup_moved_frac: warm_moved,
        reversals: last.map_or(0, |r| r.reversals),
        over_capacity: last.map_or(0, |r| r.over_capacity),
        invalid: last.map_or(0, |r| r.invalid),
        decisions: rounds.iter().map(|r| r.decisions).sum(),
        kinds: [0; 5],
        plan_ms_median: plan_ms.get(plan_ms.len() / 2).copied().unwrap_or(0.0),
        plan_ms_max: plan_ms.last().copied().unwrap_or(0.0),
        plan_cpu_ms_median: plan_cpu_ms
            .get(plan_cpu_ms.len() / 2)
            .copied()
            .unwrap_or(0.0),
        plan_cpu_ms_max: plan_cpu_ms.last().copied().unwrap_or(0.0),
        max_view_blocks: rounds.iter().map(|r| r.view_blocks).max().unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------
// Output

fn fmt_rounds(r: Option<usize>) -> String {
    r.map_or("never".to_string(), |x| x.to_string())
}

/// `x <= target`, forgiving float noise (bounded-load sits exactly on 1.25).
fn within(x: f64, target: f64) -> bool {
    x <= target * (1.0 + 1e-9)
}

fn mark_ok(ok: bool) -> &'static str {
    if ok {
        " ok"
    } else {
        " MISS"
    }
}

/// The side-by-side table for the CLI: one column per strategy, one row per
/// metric, with the target and ok/MISS where a target applies.
pub fn print_table(report: &SimReport) -> String {
    let c = &report.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "swarmstore sim: {} nodes (+{} join, -{} fail), {} files, {} blocks ({:.1} GiB stored), R={}, Zipf {:.2}, load {:.2}, seed {}",
        c.nodes,
        report.joined,
        report.failed,
        report.files,
        report.blocks,
        report.stored_bytes as f64 / (1u64 << 30) as f64,
        c.replication,
        c.zipf,
        c.offered_load,
        c.seed
    );
    let e = c.events;
    let _ = writeln!(
        s,
        "warm-up {} rounds, then {} measured rounds of {} s; events at +{} flash crowd ({} blocks, {:.0}% of work), +{} join, +{} fail, +{} manager failover ({})",
        c.warmup_rounds,
        c.rounds,
        c.interval_ms / 1000,
        e.flash,
        report.flash_blocks,
        c.flash_share * 100.0,
        e.join,
        e.fail,
        e.failover,
        if c.failover_rebuild { "history rebuilt from published decisions" } else { "history lost" }
    );
    let mut rows: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, target: &str, f: &dyn Fn(&Summary) -> String| {
        rows.push((
            name.to_string(),
            target.to_string(),
            report.runs.iter().map(|r| f(&r.summary)).collect(),
        ));
    };
    row("req peak/mean before flash", "", &|m| {
        format!("{:.2}", m.req_before_flash)
    });
    row("req peak/mean at flash+5", "<=1.25", &|m| {
        format!(
            "{:.2}{}",
            m.req_at_flash_plus5,
            mark_ok(within(m.req_at_flash_plus5, TARGET_REQ_PEAK_MEAN))
        )
    });
    row("req peak/mean worst flash+5..join", "<=1.25", &|m| {
        format!(
            "{:.2}{}",
            m.req_worst_after_flash5,
            mark_ok(within(m.req_worst_after_flash5, TARGET_REQ_PEAK_MEAN))
        )
    });
    row("rounds to req<=1.25 after flash", "<=5", &|m| {
        format!(
            "{}{}",
            fmt_rounds(m.rounds_flash),
            mark_ok(m.rounds_flash.is_some_and(|x| x <= TARGET_FLASH_ROUNDS))
        )
    });
    row("sto peak/mean after join (settled)", "<=1.10", &|m| {
        format!(
            "{:.2}{}",
            m.sto_after_join,
            mark_ok(within(m.sto_after_join, TARGET_STO_PEAK_MEAN))
        )
    });
    row("rounds to sto<=1.10 after join", "", &|m| {
        fmt_rounds(m.rounds_join)
    });
    row("rounds to both ok after fail", "", &|m| {
        fmt_rounds(m.rounds_fail)
    });
    row("rounds to both ok after failover", "", &|m| {
        fmt_rounds(m.rounds_failover)
    });
    row("final req peak/mean", "", &|m| {
        format!("{:.2}", m.final_req)
    });
    row("final req CV", "", &|m| format!("{:.3}", m.final_req_cv));
    row("final sto peak/mean", "", &|m| {
        format!("{:.2}", m.final_sto)
    });
    row("final sto CV", "", &|m| format!("{:.3}", m.final_sto_cv));
    row("bytes moved, measured (% stored)", "<=8%", &|m| {
        format!(
            "{:.2}%{}",
            m.moved_frac * 100.0,
            mark_ok(within(m.moved_frac, TARGET_MOVED_FRAC))
        )
    });
    row("bytes moved, warm-up (% stored)", "", &|m| {
        format!("{:.2}%", m.warmup_moved_frac * 100.0)
    });
    row("reversals within hold", "0", &|m| {
        format!("{}{}", m.reversals, mark_ok(m.reversals == 0))
    });
    row("targets pushed over capacity", "0", &|m| {
        format!("{}{}", m.over_capacity, mark_ok(m.over_capacity == 0))
    });
    row("decisions refused by sim", "0", &|m| {
        format!("{}", m.invalid)
    });
    row("decisions (all rounds)", "", &|m| {
        format!("{}", m.decisions)
    });
    row("measured: repl/drop/move/deleg/end", "", &|m| {
        let k = m.kinds;
        format!("{}/{}/{}/{}/{}", k[0], k[1], k[2], k[3], k[4])
    });
    row("plan() ms median / max", "<1000", &|m| {
        if m.plan_ms_max > 0.0 {
            format!("{:.1} / {:.1}", m.plan_ms_median, m.plan_ms_max)
        } else {
            "-".to_string()
        }
    });
    row("plan() CPU ms median / max", "<1000", &|m| {
        if m.plan_cpu_ms_max > 0.0 {
            format!("{:.1} / {:.1}", m.plan_cpu_ms_median, m.plan_cpu_ms_max)
        } else {
            "-".to_string()
        }
    });
    row("max blocks in view", "", &|m| {
        format!("{}", m.max_view_blocks)
    });
    let names: Vec<&str> = report.runs.iter().map(|r| r.strategy.name()).collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(10).max(6);
    let w1 = 7;
    let widths: Vec<usize> = (0..names.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.2[i].len())
                .max()
                .unwrap_or(0)
                .max(names[i].len())
        })
        .collect();
    let _ = write!(s, "\n{:<w0$}  {:<w1$}", "metric", "target");
    for (n, wd) in names.iter().zip(&widths) {
        let _ = write!(s, "  {:>wd$}", n, wd = *wd);
    }
    s.push('\n');
    for (name, target, cells) in &rows {
        let _ = write!(s, "{:<w0$}  {:<w1$}", name, target);
        for (cell, wd) in cells.iter().zip(&widths) {
            let _ = write!(s, "  {:>wd$}", cell, wd = *wd);
        }
        s.push('\n');
    }
    s
}

/// File stem for a report's outputs, e.g. `sim_n1000_z1.0_s1`.
pub fn output_stem(report: &SimReport) -> String {
    let c = &report.config;
    format!("sim_n{}_z{:.1}_s{}", c.nodes, c.zipf, c.seed)
}

/// Write `<stem>_rounds.csv` (every round of every strategy), `<stem>_summary.csv`
/// and `<stem>.svg` (request and storage peak/mean over time) into `dir`.
pub fn write_outputs(report: &SimReport, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let stem = output_stem(report);
    let mut csv = String::from(
        "strategy,round,event,mean_util,req_peak_mean,req_cv,sto_peak_mean,sto_cv,moved_frac,reversals,over_capacity,invalid,decisions,extras,view_blocks,plan_ms,plan_cpu_ms\n",
    );
    for run in &report.runs {
        for r in &run.rounds {
            let _ = writeln!(
                csv,
                "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.5},{},{},{},{},{},{},{:.2},{:.2}",
                run.strategy.name(),
                r.round,
                r.event,
                r.mean_util,
                r.req_peak_mean,
                r.req_cv,
                r.sto_peak_mean,
                r.sto_cv,
                r.moved_frac,
                r.reversals,
                r.over_capacity,
                r.invalid,
                r.decisions,
                r.extras,
                r.view_blocks,
                r.plan_ms,
                r.plan_cpu_ms
            );
        }
    }
    std::fs::write(dir.join(format!("{stem}_rounds.csv")), csv)?;
    let mut sum = String::from(
        "strategy,req_before_flash,req_at_flash_plus5,req_worst_after_flash5,rounds_flash,sto_after_join,rounds_join,rounds_fail,rounds_failover,final_req,final_req_cv,final_sto,final_sto_cv,moved_frac,warmup_moved_frac,reversals,over_capacity,invalid,decisions,plan_ms_median,plan_ms_max,plan_cpu_ms_median,plan_cpu_ms_max,max_view_blocks\n",
    );
    let opt = |x: Option<usize>| x.map_or(String::new(), |v| v.to_string());
    for run in &report.runs {
        let m = &run.summary;
        let _ = writeln!(
            sum,
            "{},{:.4},{:.4},{:.4},{},{:.4},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.5},{:.5},{},{},{},{},{:.2},{:.2},{:.2},{:.2},{}",
            run.strategy.name(),
            m.req_before_flash,
            m.req_at_flash_plus5,
            m.req_worst_after_flash5,
            opt(m.rounds_flash),
            m.sto_after_join,
            opt(m.rounds_join),
            opt(m.rounds_fail),
            opt(m.rounds_failover),
            m.final_req,
            m.final_req_cv,
            m.final_sto,
            m.final_sto_cv,
            m.moved_frac,
            m.warmup_moved_frac,
            m.reversals,
            m.over_capacity,
            m.invalid,
            m.decisions,
            m.plan_ms_median,
            m.plan_ms_max,
            m.plan_cpu_ms_median,
            m.plan_cpu_ms_max,
            m.max_view_blocks
        );
    }
    std::fs::write(dir.join(format!("{stem}_summary.csv")), sum)?;
    let svg = dir.join(format!("{stem}.svg"));
    plot(report, &svg).map_err(|e| io::Error::other(e.to_string()))
}

/// Two stacked line charts over the measured rounds: request and storage
/// peak/mean per strategy (clipped at 3), with the target lines.
fn plot(report: &SimReport, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let halves = root.split_evenly((2, 1));
    let colors = [RED, BLACK, BLUE, GREEN, MAGENTA];
    let n = report.config.rounds as i64;
    let e = report.config.events;
    type Panel<'a> = (&'a str, f64, fn(&RoundStats) -> f64);
    let panels: [Panel; 2] = [
        (
            "request peak/mean (utilisation)",
            TARGET_REQ_PEAK_MEAN,
            |r| r.req_peak_mean,
        ),
        ("storage peak/mean", TARGET_STO_PEAK_MEAN, |r| {
            r.sto_peak_mean
        }),
    ];
    for (area, (title, target, get)) in halves.iter().zip(panels) {
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} - {} nodes, Zipf {:.1}, clipped at 3 (events: flash {}, join {}, fail {}, failover {})",
                    title,
                    report.config.nodes,
                    report.config.zipf,
                    e.flash,
                    e.join,
                    e.fail,
                    e.failover
                ),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(40)
            .build_cartesian_2d(0i64..n, 0.8f64..3.0f64)?;
        chart.configure_mesh().x_desc("measured round").draw()?;
        chart.draw_series(LineSeries::new(
            [(0, target), (n, target)],
            ShapeStyle::from(&BLACK.mix(0.4)).stroke_width(1),
        ))?;
        for ev in [e.flash, e.join, e.fail, e.failover] {
            chart.draw_series(LineSeries::new(
                [(ev as i64, 0.8), (ev as i64, 3.0)],
                ShapeStyle::from(&BLACK.mix(0.15)).stroke_width(1),
            ))?;
        }
        for (i, run) in report.runs.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    run.rounds
                        .iter()
                        .filter(|r| r.round >= 0)
                        .map(|r| (r.round, get(r).clamp(0.8, 3.0))),
                    ShapeStyle::from(&color).stroke_width(2),
                ))?
                .label(run.strategy.name())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// What `swarmstore sim` calls: run all strategies on `nodes` nodes with
/// Zipf exponent `zipf` for `rounds` measured rounds, write CSV + SVG into
/// `out_dir` if given, and return the table.
pub fn run_cli(
    nodes: usize,
    zipf: f64,
    rounds: usize,
    seed: u64,
    out_dir: Option<&Path>,
) -> io::Result<String> {
    let cfg = SimConfig::new(nodes, zipf, rounds, seed);
    let report = run(&cfg);
    if let Some(dir) = out_dir {
        write_outputs(&report, dir)?;
    }
    Ok(print_table(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SimConfig {
        SimConfig {
            warmup_rounds: 10,
            files_per_node: 8,
            strategies: vec![Strategy::Swarm, Strategy::ClosestR, Strategy::BoundedLoad],
            ..SimConfig::new(120, 1.0, 12, 7)
        }
    }

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

    #[test]
    fn runs_are_reproducible() {
        let cfg = small();
        let a = run(&cfg);
        let b = run(&cfg);
        for (x, y) in a.runs.iter().zip(&b.runs) {
            let strip = |r: &[RoundStats]| -> Vec<RoundStats> {
                r.iter()
                    .map(|s| RoundStats {
                        plan_ms: 0.0,
                        plan_cpu_ms: 0.0,
                        ..s.clone()
                    })
                    .collect()
            };
            assert_eq!(strip(&x.rounds), strip(&y.rounds), "{:?}", x.strategy);
        }
    }

    #[test]
    fn planner_beats_no_balancing_and_keeps_the_rules() {
        let report = run(&small());
        let get = |s: Strategy| {
            &report
                .runs
                .iter()
                .find(|r| r.strategy == s)
                .expect("run")
                .summary
        };
        let (ours, none) = (get(Strategy::Swarm), get(Strategy::ClosestR));
        assert!(ours.final_req < none.final_req, "{ours:?} vs {none:?}");
        assert!(ours.final_sto < none.final_sto);
        assert_eq!(ours.reversals, 0);
        assert_eq!(ours.invalid, 0);
        assert!(get(Strategy::BoundedLoad).final_req <= 1.25 + 1e-6);
    }

    #[test]
    fn writes_csv_and_svg() {
        let report = run(&SimConfig {
            strategies: vec![Strategy::Swarm],
            ..small()
        });
        let dir = std::env::temp_dir().join(format!("swarmstore-sim-test-{}", std::process::id()));
        write_outputs(&report, &dir).expect("outputs");
        let stem = output_stem(&report);
        for f in [
            format!("{stem}_rounds.csv"),
            format!("{stem}_summary.csv"),
            format!("{stem}.svg"),
        ] {
            let meta = std::fs::metadata(dir.join(&f)).expect("file written");
            assert!(meta.len() > 100, "{f}");
        }
        let table = print_table(&report);
        assert!(table.contains("swarmstore") && table.contains("reversals"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
