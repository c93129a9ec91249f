//! `swarmstore soak` in a short run: node processes under the mixed workload with churn; the
//! CSV has a row per process per interval (with the heap read from each node's /metrics), a
//! killed node's samples continue under a new pid, the summary counts no mismatch, and the
//! plot is written.

use std::collections::{HashMap, HashSet};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_swarmstore");

#[test]
fn a_short_soak_writes_its_csv_summary_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("soak");
    let run = Command::new(BIN)
        .args([
            "soak",
            "--duration",
            "45s",
            "--interval",
            "3s",
            "--churn-every",
            "8s",
            "--pause",
            "50ms",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}");
    assert!(
        run.status.success(),
        "soak failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("kill -9"), "no kill in the run: {stdout}");
    assert!(stdout.contains("join x1"), "no join in the run: {stdout}");

    let csv = std::fs::read_to_string(out.join("samples.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let mut pids: HashMap<String, HashSet<String>> = HashMap::new();
    let mut rows = 0;
    let mut heap_read = 0;
    let mut maps_read = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), header.len(), "{line}");
        let rss: u64 = f[col("rss_kib")].parse().unwrap();
        let fds: u64 = f[col("fds")].parse().unwrap();
        let anon: u64 = f[col("anon_kib")].parse().unwrap();
        assert!(
            anon > 0 && anon <= rss,
            "the anonymous part of a live process's memory: {line}"
        );
        assert!(
            rss > 1024 && fds > 0,
            "a live process has memory and fds: {line}"
        );
        // The allocator's own figure, read from each node's /metrics (glibc only).
        if f[col("process")] == "n0" && f[col("heap_kib")].parse::<u64>().is_ok_and(|h| h > 0) {
            heap_read += 1;
        }
        // The balancing maps' entries, from the same scrape: at least the view's reports.
        if f[col("process")] == "n0" && f[col("map_entries")].parse::<u64>().is_ok_and(|n| n > 0) {
            maps_read += 1;
        }
        pids.entry(f[col("process")].to_string())
            .or_default()
            .insert(f[col("pid")].to_string());
        rows += 1;
    }
    for p in ["n0", "n1", "n2", "n3", "n4", "client", "x1"] {
        assert!(pids.contains_key(p), "no samples of {p}: {pids:?}");
    }
    assert!(rows >= 6 * 10, "{rows} rows");
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(heap_read >= 5, "n0's heap was read {heap_read} times");
    }
    assert!(
        maps_read >= 5,
        "n0's map entries were read {maps_read} times"
    );
    // maps.csv: the same entries per map, and they add up to the samples' sum.
    let maps = std::fs::read_to_string(out.join("maps.csv")).expect("maps.csv");
    let n0_maps: std::collections::BTreeSet<&str> = maps
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() == 4 && f[1] == "n0" && f[3].parse::<u64>().is_ok()).then_some(f[2])
        })
        .collect();
    for m in ["view_reports", "peers"] {
        assert!(n0_maps.contains(m), "maps.csv has n0's {m}: {n0_maps:?}");
    }
    assert!(
        pids.values().any(|set| set.len() == 2),
        "a killed node goes on under a new pid: {pids:?}"
    );
    assert_eq!(pids["n0"].len(), 1, "the access node is never killed");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["mismatches"], 0, "{summary}");
    assert!(summary["ops_ok"].as_u64().unwrap() > 50, "{summary}");
    assert!(
        summary["trends"].as_array().unwrap().len() >= 7,
        "{summary}"
    );
    let svg = std::fs::read_to_string(out.join("soak.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("resident memory"));
}
