//! One strategy's run, round by round: the scenario's events (flash crowd,
//! join, failure and repair, manager failover), routing the round's
//! requests, measuring the spread, and, for the planner strategies, the
//! manager's view, plan and apply.
//!
//! Every strategy runs this same loop on its own clone of the world, so
//! differences in the results come from the strategy alone.

use super::manager::{apply, Manager, ReversalLog};
use super::report::summarize;
use super::world::{route_bounded, route_least_loaded, Served, World};
use super::{RoundStats, SimConfig, Strategy, StrategyRun};
use std::collections::HashSet;
use std::time::Instant;

/// One strategy over its own copy of `base`: warm-up, then the measured
/// rounds with the scenario's events, one [`RoundStats`] per round.
pub(super) fn run_strategy(cfg: &SimConfig, base: &World, strategy: Strategy) -> StrategyRun {
    let mut w = base.clone();
    w.place(strategy == Strategy::TwoChoices);
    let stored = w.stored_bytes();
    let policy = strategy.policy(&cfg.policy_for(stored));
    let hold = policy.as_ref().map_or(cfg.policy.hold_ms, |p| p.hold_ms);
    let mut mgr = policy.map(|p| Manager::new(p, w.cap.len(), cfg.seed));
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
            let ds = m.plan(&view);
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
            decisions = ds.len();
            m.publish(ds, now);
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
