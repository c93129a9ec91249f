//! Capacity without tuning (issue 16, point 1): a node not told its capacity learns it from
//! queueing delay. The node process runs with `--emulate-speed 2M` (it serves at most 2 MiB/s,
//! as slow hardware would, and is not told so) and no `--bandwidth`. Under light reads it
//! reports the 100M yardstick, as before. Once eight greedy readers saturate it, its report
//! carries a capacity near 2 MiB/s, so its utilisation reads near 1 and balancing would start:
//! with the yardstick it read 2%, under the planner's 30% floor.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::procs::{free_port, http, put_files, NodeProc};

const SPEED: f64 = (2u64 << 20) as f64;
const YARDSTICK: f64 = 100_000_000.0;

/// (reported capacity, utilisation) of the node's own row in `/api/status`.
fn own_row(metrics: &str) -> Option<(f64, f64)> {
    let (code, body) = http(metrics, "GET", "/api/status");
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let row = v.pointer("/balance/nodes/0")?;
    Some((row.get("bandwidth")?.as_f64()?, row.get("util")?.as_f64()?))
}

#[test]
fn a_node_without_bandwidth_learns_its_capacity_when_it_saturates() {
    let tmp = tempfile::tempdir().unwrap();
    let id = tmp.path().join("client.key");
    let metrics = format!("127.0.0.1:{}", free_port());
    let args = [
        "--replication",
        "1",
        "--metrics",
        metrics.as_str(),
        "--emulate-speed",
        "2M",
        "--report-interval",
        "500ms",
    ];
    let mut node = NodeProc::start(&tmp.path().join("n0"), &[], &args);
    // Blocks of 64 KiB: one fits the limiter's burst, so an unhurried read does not wait.
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("speed/{i}"), common::random_bytes(64 << 10, 90 + i)))
        .collect();
    put_files(&files, tmp.path(), &node.addr(), &id);
    let files = Arc::new(files);
    let access: libp2p::Multiaddr = node.addr().parse().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    // Light reads: a get every 200 ms (~0.3 MiB/s), well under the speed.
    rt.block_on(async {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let client = swarmstore::Client::connect(access.clone(), key)
            .await
            .expect("connect");
        let until = Instant::now() + Duration::from_secs(5);
        let mut i = 0;
        while Instant::now() < until {
            let (name, data) = &files[i % files.len()];
            assert!(client.get_bytes(name).await.expect("get") == *data);
            i += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let (light, light_util) = own_row(&metrics).expect("the node's own row");
    assert_eq!(light, YARDSTICK, "no estimate without saturation");

    // Saturation: eight readers asking for as much as they can get.
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..8usize)
        .map(|r| {
            let (stop, gets, files, access) =
                (stop.clone(), gets.clone(), files.clone(), access.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    let key = libp2p::identity::Keypair::generate_ed25519();
                    let client = swarmstore::Client::connect(access, key).await.unwrap();
                    let mut i = r;
                    while !stop.load(Ordering::Relaxed) {
                        let (name, data) = &files[i % files.len()];
                        if let Ok(got) = client.get_bytes(name).await {
                            assert!(got == *data, "a get returned wrong bytes");
                            gets.fetch_add(1, Ordering::Relaxed);
                        }
                        i += 1;
                    }
                });
            })
        })
        .collect();
    // The estimate follows saturated rounds; poll until it has settled near the speed.
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(500));
        last = own_row(&metrics);
        if let Some((c, u)) = last {
            if (0.75..=1.25).contains(&(c / SPEED)) && u > 0.5 {
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader panicked");
    }
    node.terminate();
    node.assert_clean("after the reads");
    let (learned, util) = last.expect("the node's own row");
    eprintln!(
        "light reads: capacity {light:.0} (util {light_util:.3}); saturated: learned \
         {:.2} MiB/s = {:.2} of the emulated speed after {:?}, util {util:.2}, {} gets",
        learned / f64::from(1 << 20),
        learned / SPEED,
        start.elapsed(),
        gets.load(Ordering::Relaxed)
    );
    assert!(
        (0.75..=1.25).contains(&(learned / SPEED)),
        "learned {learned:.0} work units/s for a node serving at most {SPEED}"
    );
    assert!(
        util > 0.5,
        "a saturated node reads busy against its learned capacity"
    );
}
