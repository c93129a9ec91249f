//! What users run, as separate OS processes, beside the transport's limits in the same run.
//!
//!   * baselines, each a receiver process and a sender process: raw TCP + SHA-256 on the
//!     receiver, and one libp2p stream (TCP + noise + yamux, and QUIC) + SHA-256;
//!   * three `swarmstore node` processes of the built binary (R = 3, TCP; and a QUIC swarm),
//!     and the CLI as its own process: `put FILE`, then `get NAME -o FILE` into a real file
//!     through another node, verified afterwards;
//!   * 4 KiB files: CLI put and get latency p50/p99 (each a process start; the start alone is
//!     its own row), and the same through the library in one client process;
//!   * the same put and get of a private file (sealed and opened on the client), beside the
//!     plain ones, for the cost of encryption;
//!   * `aws s3 cp` in and out through node 0's `--s3` (where the AWS CLI is installed), and
//!     ListObjectsV2 latency of 1,000 keys from boto3;
//!   * a big put and get (default 4 GiB) with the peak RSS of every process.
//!
//!     cargo bench --bench processes
//!     SWARMSTORE_BENCH_MIB=256 SWARMSTORE_BENCH_RUNS=5 SWARMSTORE_BENCH_SMALL=50 SWARMSTORE_BENCH_BIG_MIB=4096 cargo bench --bench processes
//!
//! Baselines time the transfer on the receiver (accept to last byte hashed). CLI rows time the
//! whole command as a user does: process start, connecting, the record lookup, the transfer and
//! the file written. Medians of the runs; ratios are of medians from this same run.
//!
//! The bench binary is also its own helper: with `SWARMSTORE_BENCH_ROLE` set it runs one
//! baseline endpoint (or the library client) instead, so every endpoint is its own process.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_swarmstore");
const ROLE: &str = "SWARMSTORE_BENCH_ROLE";
const CHUNK: usize = 1 << 20;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn sha_file(path: &Path) -> [u8; 32] {
    let mut f = std::fs::File::open(path).expect("open for hashing");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).expect("read for hashing");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

/// Writes `bytes` of seeded random data to `path`, 1 MiB at a time.
fn random_file(path: &Path, bytes: u64, seed: u64) {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create input"));
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write input");
        left -= n as u64;
    }
    f.flush().expect("flush input");
}

/// Waits for `child` and returns its exit success, wall time since `start`, and peak RSS in
/// KiB (from the kernel's rusage of that one child).
fn wait_rusage(child: Child, start: Instant) -> (bool, f64, u64) {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own un-reaped child; both out-pointers are valid for the call.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    std::mem::forget(child); // reaped above: `Child`'s drop must not wait again
    let ok = rc == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, secs, usage.ru_maxrss.max(0) as u64)
}

/// Peak RSS in KiB of a running process (`VmHWM`).
fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Helper roles: each runs in its own process.

/// Reads to EOF, hashing; prints "secs hex" (from the first read to the last byte).
fn drain_and_hash(mut read: impl FnMut(&mut [u8]) -> usize) -> (f64, u64, String) {
    let mut buf = vec![0u8; CHUNK];
    let mut h = Sha256::new();
    let mut got = 0u64;
    let start = Instant::now();
    loop {
        let n = read(&mut buf);
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    (
        start.elapsed().as_secs_f64(),
        got,
        hex::encode(h.finalize()),
    )
}

fn role_tcp_recv() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("addr").port());
    std::io::stdout().flush().expect("stdout");
    let (mut sock, _) = listener.accept().expect("accept");
    let (secs, got, hex) = drain_and_hash(|b| sock.read(b).expect("read"));
    println!("{secs} {got} {hex}");
}

fn role_tcp_send(port: &str, file: &str) {
    let data = std::fs::read(file).expect("read input");
    let mut sock =
        std::net::TcpStream::connect(("127.0.0.1", port.parse().expect("port"))).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    for chunk in data.chunks(CHUNK) {
        sock.write_all(chunk).expect("write");
    }
    sock.shutdown(std::net::Shutdown::Write).expect("shutdown");
}

const STREAM: libp2p::StreamProtocol = libp2p::StreamProtocol::new("/bench/stream/1");

fn stream_swarm() -> libp2p::Swarm<libp2p_stream::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("tcp")
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn role_stream_recv(listen: &str) {
    use futures::{AsyncReadExt as _, StreamExt};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let mut swarm = stream_swarm();
        swarm
            .listen_on(listen.parse().expect("listen addr"))
            .expect("listen");
        let addr = loop {
            if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                swarm.select_next_some().await
            {
                break address;
            }
        };
        println!("{addr}/p2p/{}", swarm.local_peer_id());
        std::io::stdout().flush().expect("stdout");
        let mut incoming = swarm
            .behaviour()
            .new_control()
            .accept(STREAM)
            .expect("accept");
        let driver = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let (_, mut stream) = incoming.next().await.expect("a stream");
        let mut buf = vec![0u8; CHUNK];
        let mut h = Sha256::new();
        let mut got = 0u64;
        let start = Instant::now();
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            got += n as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{secs} {got} {}", hex::encode(h.finalize()));
        driver.abort();
    });
}

fn role_stream_send(addr: &str, file: &str) {
    use futures::{AsyncWriteExt as _, StreamExt};
    let data = std::fs::read(file).expect("read input");
    let addr: libp2p::Multiaddr = addr.parse().expect("addr");
    let peer = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .expect("addr ends in /p2p/");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let mut swarm = stream_swarm();
        let mut control = swarm.behaviour().new_control();
        swarm.dial(addr).expect("dial");
        let driver = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        let mut stream = loop {
            match control.open_stream(peer, STREAM).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        for chunk in data.chunks(CHUNK) {
            stream.write_all(chunk).await.expect("write");
        }
        stream.close().await.expect("close");
        // The receiver exits once it has everything; give the close time to travel.
        tokio::time::sleep(Duration::from_millis(500)).await;
        driver.abort();
    });
}

/// The library as a client process: `n` puts of 4 KiB through `addr`, then `n` gets; prints
/// one line of put latencies and one of get latencies, in ms.
fn role_lib_small(addr: &str, n: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let client = swarmstore::Client::connect(addr.parse().expect("addr"), key)
            .await
            .expect("connect");
        let mut puts = Vec::new();
        let mut gets = Vec::new();
        let tag = std::process::id();
        for i in 0..n {
            let mut data = vec![7u8; 4096];
            data[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let t = Instant::now();
            client
                .put_bytes(&format!("lib-{tag}-{i}"), &data)
                .await
                .expect("put");
            puts.push(t.elapsed().as_secs_f64() * 1e3);
        }
        for i in 0..n {
            let t = Instant::now();
            let got = client
                .get_bytes(&format!("lib-{tag}-{i}"))
                .await
                .expect("get");
            gets.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(got.len(), 4096);
        }
        let line = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("{}", line(&puts));
        println!("{}", line(&gets));
    });
}

// ---------------------------------------------------------------------------------------------
// The parent: processes, runs, the table.

fn me() -> PathBuf {
    std::env::current_exe().expect("own path")
}

/// Starts this binary in `role` with `args`; stdout piped.
fn helper(role: &str, args: &[&str]) -> Child {
    Command::new(me())
        .env(ROLE, role)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn helper")
}

fn first_line(child: &mut Child) -> (String, BufReader<std::process::ChildStdout>) {
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    out.read_line(&mut line).expect("helper's first line");
    (line.trim().to_string(), out)
}

/// One baseline transfer: receiver, then sender, each its own process; MB/s on the receiver.
fn baseline(recv: &str, send: &str, listen: &[&str], file: &Path, want: &[u8; 32]) -> f64 {
    let mut rx = helper(recv, listen);
    let (addr, mut out) = first_line(&mut rx);
    let mut tx = helper(send, &[&addr, file.to_str().expect("utf-8 path")]);
    let mut report = String::new();
    out.read_line(&mut report).expect("receiver's report");
    let _ = rx.wait();
    let _ = tx.wait();
    let mut parts = report.split_whitespace();
    let secs: f64 = parts.next().and_then(|s| s.parse().ok()).expect("secs");
    let got: u64 = parts.next().and_then(|s| s.parse().ok()).expect("bytes");
    assert_eq!(
        parts.next(),
        Some(hex::encode(want).as_str()),
        "{recv}: digest"
    );
    mbps(got, secs)
}

struct NodeProcess {
    child: Child,
    addr: String,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &Path, listen: &str, bootstrap: Option<&str>, extra: &[&str]) -> NodeProcess {
    std::fs::create_dir_all(dir).expect("node dir");
    let _ = std::fs::remove_file(dir.join("node.addr"));
    let mut cmd = Command::new(BIN);
    cmd.args([
        "node",
        "--no-mdns",
        "--replication",
        "3",
        "--listen",
        listen,
    ])
    .arg("--data-dir")
    .arg(dir)
    .args(extra)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let child = cmd.spawn().expect("spawn node");
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        match std::fs::read_to_string(dir.join("node.addr")) {
            Ok(s) if !s.trim().is_empty() => break s.trim().to_string(),
            _ if Instant::now() > deadline => panic!("node in {} never started", dir.display()),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    NodeProcess { child, addr }
}

/// Three node processes listening on `listen`, each seeing the other two live.
/// Three nodes; the first serves the S3 API on `s3` when given.
fn swarm(dir: &Path, listen: &str, id: &Path, s3: Option<&str>) -> Vec<NodeProcess> {
    let extra: Vec<&str> = s3.map(|a| vec!["--s3", a]).unwrap_or_default();
    let first = start_node(&dir.join("n0"), listen, None, &extra);
    let boot = first.addr.clone();
    let mut nodes = vec![first];
    for i in 1..3 {
        nodes.push(start_node(
            &dir.join(format!("n{i}")),
            listen,
            Some(&boot),
            &[],
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in &nodes {
        loop {
            let out = cli(&["status", "--json", "--node", &n.addr], id);
            let live = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| {
                    let peers = v["peers"].as_array()?.clone();
                    Some(peers.iter().filter(|p| p["live"] == true).count())
                })
                .unwrap_or(0);
            if live >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "swarm never formed");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}

fn cli_cmd(args: &[&str], id: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--identity")
        .arg(id)
        .env_remove("SWARMSTORE_NODE")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

fn cli(args: &[&str], id: &Path) -> std::process::Output {
    cli_cmd(args, id)
        .stdout(Stdio::piped())
        .output()
        .expect("run cli")
}

/// Runs a CLI command to completion: wall seconds and peak RSS (KiB); panics on failure.
fn timed_cli(args: &[&str], id: &Path) -> (f64, u64) {
    let start = Instant::now();
    let child = cli_cmd(args, id).spawn().expect("spawn cli");
    let (ok, secs, rss) = wait_rusage(child, start);
    assert!(ok, "`swarmstore {}` failed", args.join(" "));
    (secs, rss)
}

struct Row {
    path: String,
    mbs: f64,
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
        match role.as_str() {
            "tcp-recv" => role_tcp_recv(),
            "tcp-send" => role_tcp_send(arg(0), arg(1)),
            "stream-recv" => role_stream_recv(arg(0)),
            "stream-send" => role_stream_send(arg(0), arg(1)),
            "lib-small" => role_lib_small(arg(0), arg(1).parse().expect("count")),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let mib = env_usize("SWARMSTORE_BENCH_MIB", 256) as u64;
    let runs = env_usize("SWARMSTORE_BENCH_RUNS", 5).max(1);
    let small = env_usize("SWARMSTORE_BENCH_SMALL", 50).max(1);
    let big_mib = env_usize("SWARMSTORE_BENCH_BIG_MIB", 4096) as u64;
    let size = mib << 20;

    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let id = dir.join("client.key");
    let input = dir.join("input.bin");
    let path = input.to_str().expect("utf-8 temp path");

    let s3_addr = format!("127.0.0.1:{}", free_port());
    let tcp_nodes = swarm(
        &dir.join("tcp"),
        "/ip4/127.0.0.1/tcp/0",
        &id,
        Some(&s3_addr),
    );
    let quic_nodes = swarm(&dir.join("quic"), "/ip4/127.0.0.1/udp/0/quic-v1", &id, None);
    // The AWS CLI through node 0's S3 API, where the CLI is installed.
    let aws = s3_client(&dir.join("tcp/n0"), &id, &s3_addr);

    let mut tcp_sha = Vec::new();
    let mut stream_tcp = Vec::new();
    let mut stream_quic = Vec::new();
    let (mut put, mut get_file, mut get_null, mut get_quic) = (vec![], vec![], vec![], vec![]);
    let (mut put_private, mut get_private) = (vec![], vec![]);
    let (mut s3_put, mut s3_get) = (vec![], vec![]);
    for run in 0..runs {
        // New content every run: a holder stores a block it already has as a no-op, so
        // putting the same bytes again would time a put that writes nothing.
        random_file(&input, size, 1 + run as u64);
        let want = sha_file(&input);
        tcp_sha.push(baseline("tcp-recv", "tcp-send", &[], &input, &want));
        let l = ["/ip4/127.0.0.1/tcp/0"];
        stream_tcp.push(baseline("stream-recv", "stream-send", &l, &input, &want));
        let l = ["/ip4/127.0.0.1/udp/0/quic-v1"];
        stream_quic.push(baseline("stream-recv", "stream-send", &l, &input, &want));

        let name = format!("big-{run}");
        let (secs, _) = timed_cli(
            &["put", path, "--name", &name, "--node", &tcp_nodes[0].addr],
            &id,
        );
        put.push(mbps(size, secs));
        let out = dir.join(format!("out-{run}.bin"));
        let o = out.to_str().expect("utf-8");
        let (secs, _) = timed_cli(&["get", &name, "-o", o, "--node", &tcp_nodes[1].addr], &id);
        assert_eq!(sha_file(&out), want, "get wrote other bytes");
        get_file.push(mbps(size, secs));
        let _ = std::fs::remove_file(&out);
        let private = format!("private-{run}");
        let (secs, _) = timed_cli(
            &[
                "put",
                path,
                "--name",
                &private,
                "--private",
                "--node",
                &tcp_nodes[0].addr,
            ],
            &id,
        );
        put_private.push(mbps(size, secs));
        let (secs, _) = timed_cli(
            &["get", &private, "-o", o, "--node", &tcp_nodes[1].addr],
            &id,
        );
        assert_eq!(sha_file(&out), want, "private get wrote other bytes");
        get_private.push(mbps(size, secs));
        let _ = std::fs::remove_file(&out);
        let start = Instant::now();
        let child = cli_cmd(
            &["get", &name, "-o", "-", "--node", &tcp_nodes[2].addr],
            &id,
        )
        .spawn()
        .expect("spawn");
        let (ok, secs, _) = wait_rusage(child, start);
        assert!(ok, "get to stdout failed");
        get_null.push(mbps(size, secs));

        if let Some(aws) = &aws {
            let url = format!("s3://bench/big-{run}");
            s3_put.push(mbps(size, aws.time(&["s3", "cp", path, &url])));
            s3_get.push(mbps(size, aws.time(&["s3", "cp", &url, o])));
            assert_eq!(sha_file(&out), want, "aws s3 cp wrote other bytes");
            let _ = std::fs::remove_file(&out);
        }

        let q = ["put", path, "--name", &name, "--node", &quic_nodes[0].addr];
        let _ = timed_cli(&q, &id);
        let (secs, _) = timed_cli(&["get", &name, "-o", o, "--node", &quic_nodes[1].addr], &id);
        assert_eq!(sha_file(&out), want, "QUIC get wrote other bytes");
        get_quic.push(mbps(size, secs));
        let _ = std::fs::remove_file(&out);
        eprintln!("run {}/{runs} done", run + 1);
    }

    let stream = median(stream_tcp.clone());
    let limit = median(tcp_sha);
    let rows = vec![
        Row {
            path: "raw TCP + SHA-256, 2 processes".into(),
            mbs: limit,
        },
        Row {
            path: "one libp2p stream, TCP+noise+yamux, + SHA-256, 2 processes".into(),
            mbs: stream,
        },
        Row {
            path: "one libp2p stream, QUIC, + SHA-256, 2 processes".into(),
            mbs: median(stream_quic.clone()),
        },
        Row {
            path: "CLI `put FILE` (R = 3), file data, TCP".into(),
            mbs: median(put.clone()),
        },
        Row {
            path: "CLI `get NAME -o FILE`, TCP".into(),
            mbs: median(get_file.clone()),
        },
        Row {
            path: "CLI `put --private FILE` (sealed on the client), TCP".into(),
            mbs: median(put_private.clone()),
        },
        Row {
            path: "CLI `get NAME -o FILE` of a private file, TCP".into(),
            mbs: median(get_private.clone()),
        },
        Row {
            path: "`aws s3 cp FILE s3://…` (multipart) via --s3, TCP".into(),
            mbs: median(s3_put.clone()),
        },
        Row {
            path: "`aws s3 cp s3://… FILE` via --s3, TCP".into(),
            mbs: median(s3_get.clone()),
        },
        Row {
            path: "CLI `get NAME -o -` > /dev/null, TCP".into(),
            mbs: median(get_null),
        },
        Row {
            path: "CLI `get NAME -o FILE`, QUIC".into(),
            mbs: median(get_quic),
        },
    ];

    // 4 KiB: each CLI call is a process; process start alone is `--version`.
    let mut start_ms = Vec::new();
    for _ in 0..small {
        let t = Instant::now();
        let child = cli_cmd(&["--version"], &id).spawn().expect("spawn");
        let _ = wait_rusage(child, t);
        start_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let small_file = dir.join("small.bin");
    random_file(&small_file, 4096, 2);
    let sf = small_file.to_str().expect("utf-8");
    let (mut cli_put, mut cli_get) = (Vec::new(), Vec::new());
    for i in 0..small {
        let name = format!("small-{i}");
        let (s, _) = timed_cli(
            &["put", sf, "--name", &name, "--node", &tcp_nodes[0].addr],
            &id,
        );
        cli_put.push(s * 1e3);
    }
    let out = dir.join("small.out");
    let o = out.to_str().expect("utf-8");
    for i in 0..small {
        let name = format!("small-{i}");
        let (s, _) = timed_cli(&["get", &name, "-o", o, "--node", &tcp_nodes[1].addr], &id);
        cli_get.push(s * 1e3);
    }
    let mut lib = helper("lib-small", &[&tcp_nodes[1].addr, &small.to_string()]);
    let mut lib_out = String::new();
    lib.stdout
        .take()
        .expect("piped")
        .read_to_string(&mut lib_out)
        .expect("library client output");
    let _ = lib.wait();
    let parse = |l: &str| -> Vec<f64> {
        l.split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let mut lines = lib_out.lines();
    let mut lib_put = parse(lines.next().unwrap_or(""));
    let mut lib_get = parse(lines.next().unwrap_or(""));

    let listing = aws.as_ref().and_then(|a| a.list_latency(&s3_addr, 1000));
    drop(quic_nodes);
    drop(tcp_nodes);

    // The big file, on a fresh swarm so each node's peak RSS is this transfer's: the CLI's
    // and every node's.
    let mut big = None;
    if big_mib > 0 {
        let tcp_nodes = swarm(&dir.join("big"), "/ip4/127.0.0.1/tcp/0", &id, None);
        let big_file = dir.join("big.bin");
        random_file(&big_file, big_mib << 20, 3);
        let bf = big_file.to_str().expect("utf-8");
        let (put_s, put_rss) = timed_cli(
            &["put", bf, "--name", "huge", "--node", &tcp_nodes[0].addr],
            &id,
        );
        let _ = std::fs::remove_file(&big_file);
        let out = dir.join("huge.out");
        let o = out.to_str().expect("utf-8");
        let (get_s, get_rss) =
            timed_cli(&["get", "huge", "-o", o, "--node", &tcp_nodes[1].addr], &id);
        let _ = std::fs::remove_file(&out);
        let nodes: Vec<u64> = tcp_nodes.iter().map(|n| vm_hwm(n.child.id())).collect();
        big = Some((put_s, put_rss, get_s, get_rss, nodes));
    }

    println!();
    println!(
        "swarmstore, separate processes: {mib} MiB, 3 nodes, R = 3, medians of {runs} runs, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "{:<62} {:>8} {:>10} {:>10}",
        "path", "MB/s", "vs stream", "vs TCP"
    );
    for r in &rows {
        println!(
            "{:<62} {:>8.0} {:>9.2}x {:>9.2}x",
            r.path,
            r.mbs,
            r.mbs / stream,
            r.mbs / limit
        );
    }
    println!(
        "private / plain, medians of this run: put {:.2}x, get {:.2}x",
        median(put_private) / median(put.clone()),
        median(get_private) / median(get_file.clone())
    );
    if !s3_put.is_empty() {
        println!(
            "aws s3 cp / CLI, medians of this run: in {:.2}x, out {:.2}x",
            median(s3_put) / median(put),
            median(s3_get) / median(get_file)
        );
    }
    println!();
    println!("4 KiB, sequential, {small} each");
    println!("{:<46} {:>10} {:>10}", "op", "p50 ms", "p99 ms");
    let lat = |name: &str, v: &mut Vec<f64>| {
        println!(
            "{name:<46} {:>10.2} {:>10.2}",
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    };
    lat("process start (`swarmstore --version`)", &mut start_ms);
    lat("CLI put (a process each)", &mut cli_put);
    lat("CLI get -o FILE (a process each)", &mut cli_get);
    lat("library put (one client process)", &mut lib_put);
    lat("library get (one client process)", &mut lib_get);
    match listing {
        Some((p50, p99)) => println!(
            "{:<46} {p50:>10.2} {p99:>10.2}",
            "S3 ListObjectsV2, 1,000 keys (boto3, 20 calls)"
        ),
        None => println!("S3 rows skipped: the AWS CLI or boto3 is not installed"),
    }
    if let Some((put_s, put_rss, get_s, get_rss, nodes)) = big {
        let bytes = big_mib << 20;
        println!();
        println!("{big_mib} MiB put and get, peak RSS");
        println!(
            "CLI put {:.0} MB/s, peak RSS {} MiB; CLI get {:.0} MB/s, peak RSS {} MiB",
            mbps(bytes, put_s),
            put_rss >> 10,
            mbps(bytes, get_s),
            get_rss >> 10
        );
        let list: Vec<String> = nodes.iter().map(|k| format!("{} MiB", k >> 10)).collect();
        println!(
            "node processes, peak RSS over the whole run: {}",
            list.join(", ")
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The AWS CLI (and boto3) against a node's S3 API, as their own processes.
struct S3Client {
    env: Vec<(String, String)>,
    endpoint: String,
}

/// An access key on the node of `data_dir` for `id`, and a bucket `bench`; `None` without the
/// AWS CLI.
fn s3_client(data_dir: &Path, id: &Path, addr: &str) -> Option<S3Client> {
    let installed = Command::new("aws").arg("--version").output();
    if !installed.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let out = Command::new(BIN)
        .args(["s3-key", "create", "--json", "--data-dir"])
        .arg(data_dir)
        .arg("--identity")
        .arg(id)
        .output()
        .expect("s3-key create");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("s3-key JSON");
    let env = vec![
        (
            "AWS_ACCESS_KEY_ID".into(),
            v["access_key"].as_str()?.to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            v["secret_key"].as_str()?.to_string(),
        ),
        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ];
    let client = S3Client {
        env,
        endpoint: format!("http://{addr}"),
    };
    client.time(&["s3", "mb", "s3://bench"]);
    Some(client)
}

impl S3Client {
    /// Runs `aws ARGS` to completion: wall seconds; panics on failure.
    fn time(&self, args: &[&str]) -> f64 {
        let start = Instant::now();
        let status = Command::new("aws")
            .args(["--endpoint-url", &self.endpoint])
            .args(args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .status()
            .expect("run aws");
        assert!(status.success(), "`aws {}` failed", args.join(" "));
        start.elapsed().as_secs_f64()
    }

    /// Puts `keys` tiny objects (8 at a time), then times 20 ListObjectsV2 calls of 1,000
    /// keys in one boto3 process: p50 and p99 in ms.
    fn list_latency(&self, addr: &str, keys: usize) -> Option<(f64, f64)> {
        let script = format!(
            r#"
import boto3, concurrent.futures, time
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url="http://{addr}", config=Config(s3={{"addressing_style": "path"}}, max_pool_connections=16))
with concurrent.futures.ThreadPoolExecutor(8) as p:
    list(p.map(lambda i: s3.put_object(Bucket="bench", Key=f"list/{{i:05}}", Body=b"x"), range({keys})))
ts = []
for _ in range(20):
    t = time.time(); r = s3.list_objects_v2(Bucket="bench", Prefix="list/", MaxKeys=1000); ts.append((time.time() - t) * 1000)
    assert r["KeyCount"] == min({keys}, 1000)
ts.sort()
print(ts[len(ts) // 2], ts[-1])
"#
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .envs(self.env.iter().cloned())
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("boto3 listing: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().filter_map(|x| x.parse().ok());
        Some((it.next()?, it.next()?))
    }
}
