//! The benchmark suite: one run, side by side, medians of several runs.
//!
//!   * the limit: a raw TCP copy of the same bytes over 127.0.0.1, plain and with SHA-256 on
//!     the receiving side;
//!   * `get` of a large file from a 3-node swarm, cold (first read by a fresh client through
//!     another node) and warm (second read);
//!   * `put` of the same file with R = 3 (file data rate and bytes moved, 3x);
//!   * 1,000 files of 4 KiB: put and get ops/s, p50 and p99 latency;
//!   * the same warm get over QUIC instead of TCP.
//!
//!     cargo bench --bench suite
//!     SWARMSTORE_BENCH_MIB=64 SWARMSTORE_BENCH_RUNS=5 SWARMSTORE_BENCH_SMALL=200 cargo bench --bench suite
//!
//! Everything runs in this one process on shared cores: compare ratios from the same run.

use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::Multiaddr;
use sha2::{Digest, Sha256};
use swarmstore::{Client, Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` puts of distinct 4 KiB files through `writer`, then `n` gets through `reader`:
/// (put ops/s, put latencies, get ops/s, get latencies).
async fn small_files(
    writer: &Client,
    reader: &Client,
    prefix: &str,
    n: usize,
) -> (f64, Vec<Duration>, f64, Vec<Duration>) {
    let payload = vec![7u8; 4096];
    let mut put_lat = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let mut p = payload.clone();
        p[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let s = Instant::now();
        writer
            .put_bytes(&format!("{prefix}-{i}"), &p)
            .await
            .unwrap();
        put_lat.push(s.elapsed());
    }
    let put_ops = n as f64 / t.elapsed().as_secs_f64();
    let mut get_lat = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let s = Instant::now();
        let got = reader.get_bytes(&format!("{prefix}-{i}")).await.unwrap();
        get_lat.push(s.elapsed());
        assert_eq!(got.len(), 4096);
    }
    let get_ops = n as f64 / t.elapsed().as_secs_f64();
    (put_ops, put_lat, get_ops, get_lat)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
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

/// The bare transport: `data` over one libp2p stream (TCP + noise + yamux) between two swarms
/// in this process, with SHA-256 on the receiving side. The bar for a warm get.
async fn libp2p_stream(data: &[u8]) -> Duration {
    use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt};
    use libp2p::swarm::SwarmEvent;
    const PROTO: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/bench/stream/1");
    fn swarm() -> libp2p::Swarm<libp2p_stream::Behaviour> {
        libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build()
    }
    let mut rx = swarm();
    let mut tx = swarm();
    rx.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = rx.select_next_some().await {
            break address;
        }
    };
    let rx_peer = *rx.local_peer_id();
    let mut incoming = rx.behaviour().new_control().accept(PROTO).unwrap();
    let mut control = tx.behaviour().new_control();
    tx.dial(addr).unwrap();
    let rx_task = tokio::spawn(async move {
        loop {
            rx.select_next_some().await;
        }
    });
    let tx_task = tokio::spawn(async move {
        loop {
            tx.select_next_some().await;
        }
    });
    let total = data.len();
    let receiver = tokio::spawn(async move {
        let (_, mut stream) = incoming.next().await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut hasher = Sha256::new();
        let mut got = 0;
        while got < total {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            got += n;
        }
        std::hint::black_box(hasher.finalize());
        got
    });
    let start = Instant::now();
    let mut stream = loop {
        match control.open_stream(rx_peer, PROTO).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    for chunk in data.chunks(1 << 20) {
        stream.write_all(chunk).await.unwrap();
    }
    stream.close().await.unwrap();
    assert_eq!(receiver.await.unwrap(), total);
    let took = start.elapsed();
    rx_task.abort();
    tx_task.abort();
    took
}

/// A 3-node swarm listening on `listen` (TCP or QUIC on loopback).
async fn swarm(dir: &std::path::Path, listen: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..3 {
        let boot = nodes.first().map(|n| vec![n.addr()]).unwrap_or_default();
        let cfg = NodeConfig::local(dir.join(format!("n{i}")))
            .listen_on(vec![listen.parse().unwrap()])
            .bootstrap(boot)
            .replication(3);
        nodes.push(Node::start(cfg).await.unwrap());
    }
    for n in &nodes {
        assert!(n.wait_for_peers(2, Duration::from_secs(20)).await);
    }
    nodes
}

async fn client(addr: Multiaddr) -> Client {
    Client::connect(addr, Keypair::generate_ed25519())
        .await
        .unwrap()
}

async fn get_rate(c: &Client, name: &str, size: usize) -> f64 {
    let mut sink = tokio::io::sink();
    let t = Instant::now();
    let got = c.get_into(name, None, &mut sink, None).await.unwrap();
    assert_eq!(got.size as usize, size);
    mbps(size, t.elapsed())
}

fn main() {
    let mib = env_usize("SWARMSTORE_BENCH_MIB", 256);
    let runs = env_usize("SWARMSTORE_BENCH_RUNS", 3).max(1);
    let small = env_usize("SWARMSTORE_BENCH_SMALL", 1000);
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
        let tcp_nodes = swarm(&dir.path().join("tcp"), "/ip4/127.0.0.1/tcp/0").await;
        let quic_nodes = swarm(&dir.path().join("quic"), "/ip4/127.0.0.1/udp/0/quic-v1").await;
        let writer = client(tcp_nodes[0].addr()).await;
        let quic_writer = client(quic_nodes[0].addr()).await;

        let (mut tcp, mut tcp_sha, mut stream, mut put, mut cold, mut warm, mut quic) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for run in 0..runs {
            tcp.push(mbps(size, raw_tcp(&data, false).await));
            tcp_sha.push(mbps(size, raw_tcp(&data, true).await));
            stream.push(mbps(size, libp2p_stream(&data).await));

            let name = format!("big-{run}");
            let t = Instant::now();
            writer.put(&name, &data[..], None).await.unwrap();
            put.push(mbps(size, t.elapsed()));
            // A fresh client through another node: nothing cached on the access side.
            let reader = client(tcp_nodes[1].addr()).await;
            cold.push(get_rate(&reader, &name, size).await);
            warm.push(get_rate(&reader, &name, size).await);

            quic_writer.put(&name, &data[..], None).await.unwrap();
            let qreader = client(quic_nodes[1].addr()).await;
            let _ = get_rate(&qreader, &name, size).await;
            quic.push(get_rate(&qreader, &name, size).await);
        }

        // Small files: one client, sequential operations, latency per operation. Once as the
        // default stores them (inline in the record), once as blocks on holders.
        let inline = small_files(&writer, &client(tcp_nodes[2].addr()).await, "small", small).await;
        let as_blocks = small_files(
            &client(tcp_nodes[0].addr()).await.with_inline_max(0),
            &client(tcp_nodes[2].addr()).await,
            "held",
            small,
        )
        .await;

        let limit = median(tcp_sha.clone());
        println!();
        println!("swarmstore benchmark suite: {mib} MiB file, 3 nodes, R = 3, medians of {runs} runs, one process");
        println!("{:<48} {:>10} {:>16}", "path", "MB/s", "vs TCP+SHA-256");
        let row = |name: &str, v: f64| {
            println!("{name:<48} {v:>10.0} {:>15.0}%", 100.0 * v / limit);
        };
        row("raw TCP loopback", median(tcp));
        row("raw TCP loopback + SHA-256 on receiver", limit);
        let one_stream = median(stream);
        row("one libp2p stream (TCP+noise+yamux) + SHA-256", one_stream);
        let p = median(put);
        row("put, file data (R = 3)", p);
        row("put, bytes moved (3x)", p * 3.0);
        row("get, cold (fresh client, first read)", median(cold));
        let w = median(warm);
        row("get, warm", w);
        let q = median(quic);
        row("get, warm, QUIC", q);
        println!("{:<48} {:>10.2}", "QUIC / TCP (warm get)", q / w);
        println!("{:<48} {:>10.2}", "warm get / one libp2p stream + SHA-256", w / one_stream);
        println!();
        println!("{small} files of 4 KiB, sequential, one client");
        println!("{:<22} {:>10} {:>10} {:>10}", "op", "ops/s", "p50 ms", "p99 ms");
        for (how, mut r) in [("inline", inline), ("as blocks", as_blocks)] {
            for (op, ops, lat) in [("put", r.0, &mut r.1), ("get", r.2, &mut r.3)] {
                let p50 = percentile(lat, 0.5).as_secs_f64() * 1e3;
                let p99 = percentile(lat, 0.99).as_secs_f64() * 1e3;
                let op = format!("{op} ({how})");
                println!("{op:<22} {ops:>10.0} {p50:>10.2} {p99:>10.2}");
            }
        }
        for n in tcp_nodes.into_iter().chain(quic_nodes) {
            n.shutdown().await;
        }
    });
}
