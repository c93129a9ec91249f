//! Transfer benchmark: put and get of one large file across a 3-node local swarm, beside a raw
//! TCP loopback copy of the same bytes (plain, and with SHA-256 on the receiving side), all
//! measured in one run. Prints a table of medians.
//!
//!     cargo bench --bench transfer                      # 256 MiB, 3 runs
//!     SWARMSTORE_BENCH_MIB=64 SWARMSTORE_BENCH_RUNS=5 cargo bench --bench transfer

use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use sha2::{Digest, Sha256};
use swarmstore::{Client, Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

/// Copies `data` over a loopback TCP connection in 1 MiB writes; optionally hashes on receipt.
async fn raw_tcp(data: &[u8], hash: bool) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let total = data.len();
    let receiver = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut hasher = Sha256::new();
        let mut got = 0;
        while got < total {
            let n = sock.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            if hash {
                hasher.update(&buf[..n]);
            }
            got += n;
        }
        std::hint::black_box(hasher.finalize());
        got
    });
    let start = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.set_nodelay(true).unwrap();
    for chunk in data.chunks(1 << 20) {
        sock.write_all(chunk).await.unwrap();
    }
    sock.shutdown().await.unwrap();
    assert_eq!(receiver.await.unwrap(), total);
    start.elapsed()
}

fn main() {
    let mib = env_usize("SWARMSTORE_BENCH_MIB", 256);
    let runs = env_usize("SWARMSTORE_BENCH_RUNS", 3).max(1);
    let size = mib << 20;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let data: Vec<u8> = {
            use rand::{RngCore, SeedableRng};
            let mut v = vec![0u8; size];
            rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut v);
            v
        };
        let dir = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = Vec::new();
        for i in 0..3 {
            let boot = nodes.first().map(|n| vec![n.addr()]).unwrap_or_default();
            let cfg = NodeConfig::local(dir.path().join(format!("n{i}")))
                .bootstrap(boot)
                .replication(3);
            nodes.push(Node::start(cfg).await.unwrap());
        }
        for n in &nodes {
            assert!(n.wait_for_peers(2, Duration::from_secs(20)).await);
        }
        let client = Client::connect(nodes[0].addr(), Keypair::generate_ed25519())
            .await
            .unwrap();

        let (mut tcp, mut tcp_sha, mut put, mut get_cold, mut get_warm) =
            (vec![], vec![], vec![], vec![], vec![]);
        for run in 0..runs {
            tcp.push(mbps(size, raw_tcp(&data, false).await));
            tcp_sha.push(mbps(size, raw_tcp(&data, true).await));

            let name = format!("bench-{run}");
            let t = Instant::now();
            client.put(&name, &data[..], None).await.unwrap();
            put.push(mbps(size, t.elapsed()));

            // A fresh client through another node: nothing cached on the access side.
            let reader = Client::connect(nodes[1].addr(), Keypair::generate_ed25519())
                .await
                .unwrap();
            for samples in [&mut get_cold, &mut get_warm] {
                let mut sink = tokio::io::sink();
                let t = Instant::now();
                let got = reader.get_into(&name, None, &mut sink, None).await.unwrap();
                samples.push(mbps(size, t.elapsed()));
                assert_eq!(got.size as usize, size);
            }
        }
        let tcp_sha_m = median(tcp_sha.clone());
        println!();
        println!(
            "swarmstore transfer benchmark: {mib} MiB, 3 nodes, R = 3, medians of {runs} runs"
        );
        println!("{:<44} {:>10} {:>14}", "path", "MB/s", "vs TCP+SHA256");
        let row = |name: &str, v: f64| {
            println!("{name:<44} {v:>10.0} {:>13.0}%", 100.0 * v / tcp_sha_m);
        };
        row("raw TCP loopback", median(tcp));
        row("raw TCP loopback + SHA-256 on receiver", tcp_sha_m);
        let p = median(put);
        row("put, file data", p);
        row("put, bytes moved (x3 replicas)", p * 3.0);
        row("get, cold (first read)", median(get_cold));
        row("get, warm", median(get_warm));
        for n in nodes {
            n.shutdown().await;
        }
    });
}
