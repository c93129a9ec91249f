//! `--bandwidth` is a real cap (issue 16, point 1): a node process started with
//! `--bandwidth 2M`, read by four clients that ask for as much as they can get, serves
//! within 10% of 2 MiB per second of blocks over a 10 s window, and every get returns the
//! bytes that were put. The same reads from an uncapped node run far faster, so the cap is
//! what holds the rate, not the machine.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::procs::{free_port, http, put_files, NodeProc};

const CAP: u64 = 2 << 20;
const WINDOW: Duration = Duration::from_secs(10);

/// `swarmstore_block_bytes_served_total` from a node's `/metrics`.
fn served(metrics: &str) -> u64 {
    let (code, body) = http(metrics, "GET", "/metrics");
    assert_eq!(code, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("swarmstore_block_bytes_served_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("the served-bytes counter") as u64
}

/// Starts one node (R = 1: it holds every block, so it serves every read) with `args`,
/// puts four 1 MiB files through it and reads them in a loop from four clients for the
/// window; the bytes it served per second in the window, and the gets done.
fn serve_rate(args: &[&str]) -> (f64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let id = tmp.path().join("client.key");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut node_args = vec!["--replication", "1", "--metrics", metrics.as_str()];
    node_args.extend_from_slice(args);
    let mut node = NodeProc::start(&tmp.path().join("n0"), &[], &node_args);
    let files: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("cap/{i}"), common::random_bytes(1 << 20, 70 + i)))
        .collect();
    put_files(&files, tmp.path(), &node.addr(), &id);

    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU64::new(0));
    let files = Arc::new(files);
    let readers: Vec<_> = (0..4usize)
        .map(|r| {
            let (stop, gets, files) = (stop.clone(), gets.clone(), files.clone());
            let access: libp2p::Multiaddr = node.addr().parse().unwrap();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    let key = libp2p::identity::Keypair::generate_ed25519();
                    let client = swarmstore::Client::connect(access, key).await.unwrap();
                    let mut i = r;
                    while !stop.load(Ordering::Relaxed) {
                        let (name, data) = &files[i % files.len()];
                        // A read refused as busy is tried again; wrong bytes never pass.
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

    // Past the first burst and the readers' start-up, then one window.
    std::thread::sleep(Duration::from_secs(3));
    let (b0, g0, t0) = (
        served(&metrics),
        gets.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(WINDOW);
    let (b1, g1, took) = (served(&metrics), gets.load(Ordering::Relaxed), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader panicked");
    }
    node.terminate();
    node.assert_clean("after the reads");
    ((b1 - b0) as f64 / took.as_secs_f64(), g1 - g0)
}

#[test]
fn a_node_with_bandwidth_serves_no_faster_than_it_and_as_fast_as_it() {
    let (capped, capped_gets) = serve_rate(&["--bandwidth", "2M"]);
    let (free, free_gets) = serve_rate(&[]);
    let ratio = capped / CAP as f64;
    eprintln!(
        "--bandwidth 2M: {:.2} MiB/s served ({ratio:.3} of the cap, {capped_gets} gets in \
         {WINDOW:?}); uncapped: {:.2} MiB/s ({free_gets} gets)",
        capped / f64::from(1 << 20),
        free / f64::from(1 << 20),
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "served {ratio:.3} of --bandwidth over {WINDOW:?}"
    );
    assert!(
        free > 2.0 * capped,
        "the uncapped node must outrun the cap, or the cap was not what held the rate"
    );
}
