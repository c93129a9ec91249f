//! A Zipf read workload against real nodes, and the balance benchmark built on it.
//!
//! [`Workload`] drives gets of a set of files from several clients (each on its own access
//! node) at a fixed offered rate, file popularity Zipf(s), checking every byte of every get
//! against the SHA-256 noted at upload. [`LoadSampler`] turns the nodes' served counters into
//! per-interval, per-node load in the planner's work units. [`compare`] runs the same workload
//! on a fresh swarm with the planner off and on and reports the hottest node's load side by
//! side, then how long extra replicas outlive the workload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::balance::config::META_COST;
use crate::client::Client;
use crate::node::{Node, NodeConfig, Served};

/// Zipf(s) over `n` ranks (0 = most popular), by inverse CDF.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let weights: Vec<f64> = (1..=n.max(1)).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.gen();
        self.cdf
            .partition_point(|c| *c < u)
            .min(self.cdf.len().saturating_sub(1))
    }

    /// Share of requests going to rank `k`.
    pub fn share(&self, k: usize) -> f64 {
        let prev = if k == 0 { 0.0 } else { self.cdf[k - 1] };
        self.cdf.get(k).map(|c| c - prev).unwrap_or(0.0)
    }
}

/// Parses `zipf` or `zipf:S`.
pub fn parse_workload(s: &str) -> Result<f64, String> {
    match s.split_once(':') {
        None if s == "zipf" => Ok(1.0),
        Some(("zipf", v)) => v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| format!("bad Zipf exponent {v:?}")),
        _ => Err(format!("unknown workload {s:?} (expected zipf or zipf:S)")),
    }
}

/// One serving-capacity multiplier of `--capacities`: `3x` or `3` (a positive finite number).
pub fn parse_capacity(s: &str) -> Result<f64, String> {
    s.strip_suffix(['x', 'X'])
        .unwrap_or(s)
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0 && *x <= 1e6)
        .ok_or_else(|| format!("bad capacity {s:?} (expected a multiplier such as 1x or 2.5x)"))
}

/// Node `i`'s serving cap under `--capacities`: `base` times the multiplier of its place in
/// the cycle; `None` when no capacities are given (serve uncapped).
pub fn capacity_of(i: usize, base: u64, capacities: &[f64]) -> Option<u64> {
    if capacities.is_empty() {
        return None;
    }
    let c = capacities[i % capacities.len()];
    Some(((base as f64 * c).round() as u64).max(1))
}

#[derive(Default, Debug)]
pub struct WorkloadStats {
    pub gets: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Gets that returned bytes other than what was put: must stay 0.
    pub mismatches: AtomicU64,
    /// Each completed get: when it started (ms since the workload began) and how long it took
    /// (µs). Capped at [`MAX_TIMINGS`] entries.
    pub timings: std::sync::Mutex<Vec<(u32, u32)>>,
}

/// Gets timed per run at most (a few MB of memory).
pub const MAX_TIMINGS: usize = 1 << 20;

impl WorkloadStats {
    /// p50, p95 and p99 get latency in ms over the gets that started at or after `from_ms`.
    pub fn latency_ms(&self, from_ms: u32) -> (f64, f64, f64) {
        let mut lat: Vec<u32> = self
            .timings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(at, _)| *at >= from_ms)
            .map(|(_, us)| *us)
            .collect();
        lat.sort_unstable();
        let q = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            f64::from(lat[i]) / 1000.0
        };
        (q(0.50), q(0.95), q(0.99))
    }
}

/// Files the workload reads: name and SHA-256 of the content.
pub type FileSet = Arc<Vec<(String, [u8; 32])>>;

/// Uploads `n` files of `size` bytes (random content) through `client`.
pub async fn populate(
    client: &Client,
    prefix: &str,
    n: usize,
    size: usize,
    seed: u64,
) -> anyhow::Result<FileSet> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let mut data = vec![0u8; size];
        rng.fill(&mut data[..]);
        let name = format!("{prefix}-{i:03}");
        client.put_bytes(&name, &data).await?;
        files.push((name, Sha256::digest(&data).into()));
    }
    Ok(Arc::new(files))
}

/// A running workload; [`Workload::stop`] ends it.
pub struct Workload {
    pub stats: Arc<WorkloadStats>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Starts one reader per client; together they offer `rate` gets/s.
    pub fn start(clients: Vec<Client>, files: FileSet, s: f64, rate: f64, seed: u64) -> Self {
        let stats = Arc::new(WorkloadStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let zipf = Arc::new(Zipf::new(files.len(), s));
        let per_client = rate / clients.len().max(1) as f64;
        let period = Duration::from_secs_f64(1.0 / per_client.max(0.01));
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let (stats, stop, zipf, files) =
                    (stats.clone(), stop.clone(), zipf.clone(), files.clone());
                tokio::spawn(async move {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed + i as u64);
                    let began = Instant::now();
                    let mut every = tokio::time::interval(period);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    while !stop.load(Ordering::Relaxed) {
                        every.tick().await;
                        let (name, digest) = &files[zipf.sample(&mut rng)];
                        let start = Instant::now();
                        match client.get_bytes(name).await {
                            Ok(data) => {
                                let took = start.elapsed().as_micros().min(u128::from(u32::MAX));
                                let at = start.duration_since(began).as_millis();
                                let mut t = stats.timings.lock().unwrap_or_else(|p| p.into_inner());
                                if t.len() < MAX_TIMINGS {
                                    t.push((at.min(u128::from(u32::MAX)) as u32, took as u32));
                                }
                                drop(t);
                                stats.gets.fetch_add(1, Ordering::Relaxed);
                                stats.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                                if Sha256::digest(&data).as_slice() != digest {
                                    stats.mismatches.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(e) => {
                                stats.errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!("workload get of {name} failed: {e}");
                            }
                        }
                    }
                })
            })
            .collect();
        Self { stats, stop, tasks }
    }

    pub async fn stop(self) -> Arc<WorkloadStats> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        self.stats
    }
}

/// Per-node load between two calls, in work units/s (block bytes + META_COST per record read).
pub struct LoadSampler {
    prev: Vec<Served>,
    at: Instant,
}

impl LoadSampler {
    pub fn new(nodes: &[Node]) -> Self {
        Self {
            prev: nodes.iter().map(|n| n.served()).collect(),
            at: Instant::now(),
        }
    }

    pub fn sample(&mut self, nodes: &[Node]) -> Vec<f64> {
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        self.at = Instant::now();
        let now: Vec<Served> = nodes.iter().map(|n| n.served()).collect();
        let loads = now
            .iter()
            .zip(&self.prev)
            .map(|(a, b)| {
                let bytes = a.block_bytes.saturating_sub(b.block_bytes) as f64;
                let reads = a.record_reads.saturating_sub(b.record_reads) as f64;
                (bytes + META_COST * reads) / secs
            })
            .collect();
        self.prev = now;
        loads
    }
}

pub fn peak_mean(loads: &[f64]) -> (f64, f64) {
    let peak = loads.iter().copied().fold(0.0, f64::max);
    let mean = loads.iter().sum::<f64>() / loads.len().max(1) as f64;
    (peak, mean)
}

/// One line of per-node loads in MB/s, with peak/mean.
pub fn format_loads(t: f64, loads: &[f64]) -> String {
    let (peak, mean) = peak_mean(loads);
    let cells: Vec<String> = loads.iter().map(|l| format!("{:5.1}", l / 1e6)).collect();
    format!(
        "{t:6.1}s  {}  | peak {:5.1} mean {:5.1} MB/s  peak/mean {:4.2}",
        cells.join(" "),
        peak / 1e6,
        mean / 1e6,
        if mean > 0.0 { peak / mean } else { 0.0 }
    )
}

/// What [`compare`] runs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub nodes: usize,
    pub replication: usize,
    pub files: usize,
    pub file_size: usize,
    pub zipf: f64,
    /// Offered gets per second, all clients together.
    pub rate: f64,
    pub clients: usize,
    pub report_interval: Duration,
    pub bandwidth: u64,
    /// Multipliers of `bandwidth`, node by node (cycled): each node serves at most its share
    /// (see [`capacity_of`]). Empty: every node reports `bandwidth` and serves uncapped.
    pub capacities: Vec<f64>,
    pub hold: Duration,
    /// The planner's `storage_aim`. A devnet stores a few MB per node, so one copy of a
    /// 256 KiB block is a big step in storage and the default (0.09: no copy may take a node
    /// above 1.09x the mean) rules out most targets; real nodes hold far more than one block.
    pub storage_aim: f64,
    /// Workload duration per mode.
    pub duration: Duration,
    /// Print per-interval loads as they come.
    pub verbose: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            nodes: 8,
            replication: 3,
            files: 16,
            file_size: 256 * 1024,
            zipf: 1.2,
            rate: 60.0,
            clients: 4,
            report_interval: Duration::from_millis(500),
            bandwidth: 8_000_000,
            capacities: Vec::new(),
            hold: Duration::from_secs(5),
            storage_aim: 1.0,
            duration: Duration::from_secs(30),
            verbose: true,
        }
    }
}

/// The result of one mode.
#[derive(Clone, Debug)]
pub struct ModeResult {
    pub planner: bool,
    pub gets: u64,
    pub errors: u64,
    pub mismatches: u64,
    /// Over the second half of the run: the hottest node's mean load and the swarm mean
    /// (work units/s), and the mean per-interval peak/mean.
    pub hottest: f64,
    pub mean: f64,
    pub peak_mean: f64,
    pub decisions_applied: usize,
    /// After the workload stopped: time until no node held an extra replica (planner on).
    pub extras_gone_after: Option<Duration>,
    pub extras_at_stop: usize,
    /// Get latency p50/p95/p99 (ms) over the second half of the run.
    pub latency_ms: (f64, f64, f64),
    /// The highest per-node utilisation (mean load over the second half / its capacity).
    pub hottest_util: f64,
}

/// A swarm of real nodes in this process under `base`.
pub async fn start_swarm(
    base: &std::path::Path,
    cfg: &BenchConfig,
    planner: bool,
) -> anyhow::Result<Vec<Node>> {
    let mut nodes: Vec<Node> = Vec::with_capacity(cfg.nodes);
    for i in 0..cfg.nodes {
        let bootstrap = nodes.first().map(|n| vec![n.addr()]).unwrap_or_default();
        let mut policy = NodeConfig::local(".").balance.policy;
        policy.hold_ms = cfg.hold.as_millis() as u64;
        policy.storage_aim = cfg.storage_aim;
        let cap = capacity_of(i, cfg.bandwidth, &cfg.capacities);
        let config = NodeConfig::local(base.join(format!("node{i}")))
            .bootstrap(bootstrap)
            .replication(cfg.replication)
            .report_interval(cfg.report_interval)
            .bandwidth(cap.unwrap_or(cfg.bandwidth))
            .serve_limit(cap)
            .planner(planner)
            .balance_policy(policy);
        nodes.push(Node::start(config).await?);
    }
    for n in &nodes {
        n.wait_for_peers(cfg.nodes - 1, Duration::from_secs(30))
            .await;
    }
    // A manager first (otherwise the first rounds of the run are unbalanced by construction).
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && nodes.iter().filter(|n| n.is_manager()).count() != 1 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(nodes)
}

async fn run_mode(cfg: &BenchConfig, planner: bool) -> anyhow::Result<ModeResult> {
    let base = std::env::temp_dir().join(format!(
        "swarmstore-bench-{}-{}",
        std::process::id(),
        if planner { "on" } else { "off" }
    ));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let nodes = start_swarm(&base, cfg, planner).await?;
    let writer = Client::connect(nodes[0].addr(), Keypair::generate_ed25519()).await?;
    let files = populate(&writer, "bench", cfg.files, cfg.file_size, 7).await?;
    let mut clients = Vec::new();
    for i in 0..cfg.clients {
        let n = &nodes[i % nodes.len()];
        clients.push(Client::connect(n.addr(), Keypair::generate_ed25519()).await?);
    }
    let label = if planner {
        "planner on "
    } else {
        "planner off"
    };
    if cfg.verbose {
        println!("-- {label}: per-node load (MB/s), one line per interval");
    }
    let workload = Workload::start(clients, files, cfg.zipf, cfg.rate, 11);
    let mut sampler = LoadSampler::new(&nodes);
    let started = Instant::now();
    let mut rows: Vec<Vec<f64>> = Vec::new();
    while started.elapsed() < cfg.duration {
        tokio::time::sleep(cfg.report_interval * 2).await;
        let loads = sampler.sample(&nodes);
        if cfg.verbose {
            println!("{}", format_loads(started.elapsed().as_secs_f64(), &loads));
        }
        rows.push(loads);
    }
    let stats = workload.stop().await;
    let stopped = Instant::now();
    let extras_at_stop: usize = nodes.iter().map(|n| n.extra_replicas().len()).sum();
    let decisions_applied = nodes
        .iter()
        .map(|n| {
            n.balance_status()
                .decisions
                .iter()
                .filter(|d| d.state == "applied")
                .count()
        })
        .max()
        .unwrap_or(0);
    // Steady state: the second half of the run.
    let tail = &rows[rows.len() / 2..];
    let k = cfg.nodes;
    let mut per_node = vec![0.0; k];
    let mut pm = 0.0;
    for r in tail {
        for (i, l) in r.iter().enumerate() {
            per_node[i] += l / tail.len() as f64;
        }
        let (p, m) = peak_mean(r);
        pm += if m > 0.0 { p / m } else { 0.0 } / tail.len() as f64;
    }
    let (hottest, mean) = peak_mean(&per_node);
    let hottest_util = per_node
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let cap = capacity_of(i, cfg.bandwidth, &cfg.capacities).unwrap_or(cfg.bandwidth);
            l / cap.max(1) as f64
        })
        .fold(0.0, f64::max);
    let mut extras_gone_after = None;
    if planner {
        let limit = cfg.hold + cfg.report_interval * 30;
        while stopped.elapsed() < limit {
            if nodes.iter().all(|n| n.extra_replicas().is_empty()) {
                extras_gone_after = Some(stopped.elapsed());
                break;
            }
            tokio::time::sleep(cfg.report_interval / 4).await;
        }
    }
    for n in nodes {
        n.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(ModeResult {
        planner,
        gets: stats.gets.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        mismatches: stats.mismatches.load(Ordering::Relaxed),
        hottest,
        mean,
        peak_mean: pm,
        decisions_applied,
        extras_gone_after,
        extras_at_stop,
        latency_ms: stats
            .latency_ms((cfg.duration.as_millis() / 2).min(u128::from(u32::MAX)) as u32),
        hottest_util,
    })
}

/// Runs the workload with the planner off, then on, each on a fresh swarm.
pub async fn compare(cfg: &BenchConfig) -> anyhow::Result<(ModeResult, ModeResult)> {
    let off = run_mode(cfg, false).await?;
    let on = run_mode(cfg, true).await?;
    Ok((off, on))
}

/// The side-by-side table of a comparison.
pub fn table(cfg: &BenchConfig, off: &ModeResult, on: &ModeResult) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{} nodes, R={}, {} files of {} KiB, Zipf {}, {} gets/s offered, T={:?}, bandwidth {} MB/s, hold {:?}, storage aim {}, {:?} per mode\n",
        cfg.nodes,
        cfg.replication,
        cfg.files,
        cfg.file_size / 1024,
        cfg.zipf,
        cfg.rate,
        cfg.report_interval,
        cfg.bandwidth as f64 / 1e6,
        cfg.hold,
        cfg.storage_aim,
        cfg.duration
    ));
    if !cfg.capacities.is_empty() {
        let caps: Vec<String> = cfg.capacities.iter().map(|c| format!("{c}x")).collect();
        s.push_str(&format!(
            "capacities (each node serves at most --bandwidth times its own): {}\n",
            caps.join(",")
        ));
    }
    s.push_str("| planner | gets | errors | wrong bytes | get p50 ms | p95 ms | p99 ms | hottest node MB/s | hottest util | mean MB/s | peak/mean | decisions applied |\n");
    s.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in [off, on] {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {} |\n",
            if r.planner { "on" } else { "off" },
            r.gets,
            r.errors,
            r.mismatches,
            r.latency_ms.0,
            r.latency_ms.1,
            r.latency_ms.2,
            r.hottest / 1e6,
            r.hottest_util,
            r.mean / 1e6,
            r.peak_mean,
            r.decisions_applied
        ));
    }
    let drop = if on.hottest > 0.0 {
        off.hottest / on.hottest
    } else {
        0.0
    };
    if cfg.capacities.is_empty() {
        s.push_str(&format!(
            "hottest node's load drop: {drop:.2}x (target >= 2x)\n"
        ));
    } else {
        // Nodes differ: what matters is how busy the busiest is against its own capacity.
        s.push_str(&format!(
            "hottest utilisation {:.2} -> {:.2}; get p99 {:.1} -> {:.1} ms (planner off -> on)\n",
            off.hottest_util, on.hottest_util, off.latency_ms.2, on.latency_ms.2
        ));
    }
    let bound = cfg.hold + cfg.report_interval * 2;
    match on.extras_gone_after {
        Some(t) => s.push_str(&format!(
            "extra replicas: {} at stop, all dropped {:.1}s after the workload stopped (hold + 2 rounds = {:.1}s)\n",
            on.extras_at_stop,
            t.as_secs_f64(),
            bound.as_secs_f64()
        )),
        None => s.push_str(&format!(
            "extra replicas: {} at stop, NOT all dropped within {:.1}s\n",
            on.extras_at_stop,
            (cfg.hold + cfg.report_interval * 30).as_secs_f64()
        )),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_parse_and_cycle() {
        assert_eq!(parse_capacity("3x"), Ok(3.0));
        assert_eq!(parse_capacity("2.5"), Ok(2.5));
        for bad in ["0x", "-1x", "x", "inf", "nanx", ""] {
            assert!(parse_capacity(bad).is_err(), "{bad:?} accepted");
        }
        let caps = [1.0, 3.0, 10.0];
        let got: Vec<_> = (0..4).map(|i| capacity_of(i, 1000, &caps)).collect();
        assert_eq!(got, [Some(1000), Some(3000), Some(10_000), Some(1000)]);
        assert_eq!(capacity_of(0, 1000, &[]), None);
    }

    #[test]
    fn zipf_ranks_follow_their_shares() {
        let z = Zipf::new(10, 1.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng)] += 1;
        }
        let top = counts[0] as f64 / 100_000.0;
        assert!((top - z.share(0)).abs() < 0.01, "{top} vs {}", z.share(0));
        assert!(counts[0] > counts[1] && counts[1] > counts[9]);
    }

    #[test]
    fn workload_specs_parse() {
        assert_eq!(parse_workload("zipf"), Ok(1.0));
        assert_eq!(parse_workload("zipf:1.2"), Ok(1.2));
        assert!(parse_workload("uniform").is_err());
        assert!(parse_workload("zipf:x").is_err());
    }
}
