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
//!
//! The code is split by concern: `world` is the generated cluster and how
//! one round's requests land on it, `manager` is the manager's noisy view
//! and how published decisions are applied (with the simulator's own
//! reversal log), `run` steps one strategy through warm-up, events and
//! measured rounds, `report` turns rounds into summaries, the table and
//! CSVs, and `plot` draws the SVG (only with the `plot` cargo feature, so a
//! library user can leave `plotters` out).

mod manager;
#[cfg(feature = "plot")]
mod plot;
mod report;
mod run;
#[cfg(test)]
mod tests;
mod world;

pub use report::{output_stem, print_table, write_outputs};

use super::plan::Policy;
use std::io;
use std::path::Path;
use world::World;

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
    /// The planner (`balance::plan`) with its full policy.
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

/// Run every configured strategy over the same generated cluster and workload.
pub fn run(cfg: &SimConfig) -> SimReport {
    let world = World::generate(cfg);
    let stored = world.stored_bytes();
    let flash_blocks = world.file_nb[world.flash_file as usize] as usize;
    let runs = cfg
        .strategies
        .iter()
        .map(|&s| run::run_strategy(cfg, &world, s))
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
