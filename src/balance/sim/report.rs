//! What a run reports: the per-strategy summary (headline numbers against
//! the targets), the side-by-side table the CLI prints, and the files a run
//! leaves behind: a CSV of every round, a CSV of the summaries, and the SVG
//! (drawn in `plot`, when the feature is on).

use super::{
    RoundStats, SimConfig, SimReport, Summary, TARGET_FLASH_ROUNDS, TARGET_MOVED_FRAC,
    TARGET_REQ_PEAK_MEAN, TARGET_STO_PEAK_MEAN,
};
use std::fmt::Write as _;
use std::io;
use std::path::Path;

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

/// The headline numbers of one strategy's rounds (`kinds` is left for the
/// caller, which counted them while applying).
pub(super) fn summarize(cfg: &SimConfig, rounds: &[RoundStats], warm_moved: f64) -> Summary {
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
/// Without the `plot` feature there is no SVG: the CSVs are written as usual
/// and a note on stderr says so.
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
    write_svg(report, &svg)
}

#[cfg(feature = "plot")]
fn write_svg(report: &SimReport, path: &Path) -> io::Result<()> {
    super::plot::plot(report, path).map_err(|e| io::Error::other(e.to_string()))
}

/// A build without plotting still writes the CSVs; skipping the SVG is not
/// an error, but it must not be silent either.
#[cfg(not(feature = "plot"))]
fn write_svg(_report: &SimReport, path: &Path) -> io::Result<()> {
    eprintln!(
        "note: this swarmstore build has no plotting (built without the `plot` feature), so {} was not written; the CSVs were",
        path.display()
    );
    Ok(())
}
