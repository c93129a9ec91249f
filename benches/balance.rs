//! Balance benchmark on real nodes: the same Zipf read workload on a fresh 8-node swarm with
//! the planner off, then on, side by side; then how long extra replicas outlive the workload.
//!
//!     cargo bench --bench balance                 # defaults below
//!     cargo bench --bench balance -- 2.0 40 60    # Zipf exponent, gets/s, seconds per mode
//!
//! Target (issue 4): the hottest node's load drops at least 2x with the planner on, every get
//! byte-correct, and extra replicas are dropped within hold + 2 rounds of the workload's end.
//! The same run is available as `swarmstore devnet --nodes 8 --workload zipf:S --compare`.

use std::time::Duration;

use swarmstore::workload::{compare, table, BenchConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let num = |i: usize, default: f64| -> f64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    let cfg = BenchConfig {
        zipf: num(0, 2.0),
        rate: num(1, 40.0),
        duration: Duration::from_secs_f64(num(2, 40.0)),
        bandwidth: 4_000_000,
        ..BenchConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let (off, on) = runtime.block_on(compare(&cfg))?;
    println!();
    print!("{}", table(&cfg, &off, &on));
    if off.mismatches + on.mismatches > 0 {
        anyhow::bail!("gets returned wrong bytes");
    }
    Ok(())
}
