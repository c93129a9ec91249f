//! End-to-end checks of the simulator: runs are reproducible, the planner
//! beats no balancing without breaking its rules, and the output files are
//! written. (The routing unit test sits next to `water_fill` in `world`.)

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

#[cfg(feature = "plot")]
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

#[cfg(not(feature = "plot"))]
#[test]
fn writes_csv_without_plot_feature() {
    let report = run(&SimConfig {
        strategies: vec![Strategy::Swarm],
        ..small()
    });
    let dir = std::env::temp_dir().join(format!("swarmstore-sim-noplot-{}", std::process::id()));
    write_outputs(&report, &dir).expect("a build without plotting still writes the CSVs");
    let stem = output_stem(&report);
    for f in [format!("{stem}_rounds.csv"), format!("{stem}_summary.csv")] {
        let meta = std::fs::metadata(dir.join(&f)).expect("file written");
        assert!(meta.len() > 100, "{f}");
    }
    assert!(!dir.join(format!("{stem}.svg")).exists());
    let _ = std::fs::remove_dir_all(&dir);
}
