//! The built binary, as separate processes: three `swarmstore node`s and the client commands.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::{cli, json, NodeProc, BIN};

#[test]
fn three_node_processes_and_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let id = tmp.path().join("client.key");
    let n0 = NodeProc::start(&tmp.path().join("n0"), &[], &[]);
    let a0 = n0.addr();
    let n1 = NodeProc::start(&tmp.path().join("n1"), std::slice::from_ref(&a0), &[]);
    let n2 = NodeProc::start(&tmp.path().join("n2"), std::slice::from_ref(&a0), &[]);
    let addrs = [a0.clone(), n1.addr(), n2.addr()];

    // Every node sees the other two.
    for a in &addrs {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = json(&cli(&["status", "--json", "--node", a], &id));
            let live = status["peers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["live"] == true)
                .count();
            if live >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{a} sees {live} peers");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let src = tmp.path().join("payload.bin");
    let data: Vec<u8> = (0..(3 * 1024 * 1024 + 99))
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();

    let put = json(&cli(
        &[
            "put",
            src.to_str().unwrap(),
            "--name",
            "docs/payload.bin",
            "--json",
            "--node",
            &addrs[0],
        ],
        &id,
    ));
    for field in ["name", "key", "root", "version", "size", "blocks"] {
        assert!(!put[field].is_null(), "put --json has {field}: {put}");
    }
    assert_eq!(put["name"], "docs/payload.bin");
    assert_eq!(put["version"], 1);
    assert_eq!(put["size"], data.len());
    assert_eq!(put["blocks"], 4);

    let out = tmp.path().join("copy.bin");
    let got = cli(
        &[
            "get",
            "docs/payload.bin",
            "-o",
            out.to_str().unwrap(),
            "--node",
            &addrs[2],
        ],
        &id,
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == data, "byte-identical");

    // With --fsync, over an existing file; into a missing directory, a clear error and no
    // temporary file left behind.
    let o = out.to_str().unwrap();
    let synced = cli(
        &[
            "get",
            "docs/payload.bin",
            "-o",
            o,
            "--fsync",
            "--node",
            &addrs[0],
        ],
        &id,
    );
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    assert!(
        std::fs::read(&out).unwrap() == data,
        "byte-identical after --fsync"
    );
    let nowhere = tmp.path().join("no-such-dir").join("x.bin");
    let failed = cli(
        &[
            "get",
            "docs/payload.bin",
            "-o",
            nowhere.to_str().unwrap(),
            "--node",
            &addrs[0],
        ],
        &id,
    );
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains("cannot create") && err.trim().lines().count() == 1,
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // To stdout as well.
    let piped = cli(
        &["get", "docs/payload.bin", "-o", "-", "--node", &addrs[1]],
        &id,
    );
    assert!(piped.status.success());
    assert!(piped.stdout == data);

    let stat = json(&cli(
        &["stat", "docs/payload.bin", "--json", "--node", &addrs[1]],
        &id,
    ));
    for field in [
        "name",
        "key",
        "root",
        "replicas",
        "version",
        "size",
        "block_size",
        "blocks",
        "owner",
        "users",
    ] {
        assert!(!stat[field].is_null(), "stat --json has {field}: {stat}");
    }
    assert_eq!(stat["key"], put["key"]);
    assert_eq!(stat["root"], put["root"]);
    assert_eq!(stat["replicas"].as_array().unwrap().len(), 3);
    let blocks = stat["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 4);
    for b in blocks {
        assert_eq!(b["id"].as_str().unwrap().len(), 64);
        assert_eq!(b["holders"].as_array().unwrap().len(), 3);
        assert!(b["len"].as_u64().unwrap() > 0);
    }
    let user = &stat["users"][0];
    assert_eq!(user["role"], "owner");
    assert!(user["peer"].is_string() && user["at"].is_u64());

    // Errors: one line on stderr, distinct exit codes.
    let missing = cli(&["get", "nope", "--node", &addrs[0]], &id);
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("not found") && err.trim().lines().count() == 1,
        "{err}"
    );

    let again = cli(
        &[
            "put",
            src.to_str().unwrap(),
            "--name",
            "docs/payload.bin",
            "--node",
            &addrs[0],
        ],
        &id,
    );
    assert_eq!(again.status.code(), Some(3));

    let no_file = cli(&["put", "/definitely/not/here", "--node", &addrs[0]], &id);
    assert_eq!(no_file.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_file.stderr).contains("cannot open"));

    let dead = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWHGc8KEiMeVbtSCCc54E48jpVmqooe2ZnAhym2AkYuPuX";
    let start = Instant::now();
    let unreachable = cli(&["stat", "x", "--node", dead], &id);
    assert_eq!(unreachable.status.code(), Some(5));
    assert!(start.elapsed() < Duration::from_secs(12));

    // The access node falls back to the local node's address file.
    let via_file = cli(
        &[
            "stat",
            "docs/payload.bin",
            "--json",
            "--data-dir",
            n1.dir.to_str().unwrap(),
        ],
        &id,
    );
    assert_eq!(json(&via_file)["version"], 1);

    // SIGTERM: a clean exit, and the store checks clean afterwards.
    let d2 = n2.dir.clone();
    let mut n2 = n2;
    assert!(
        n2.terminate().is_some_and(|s| s.success()),
        "clean exit on SIGTERM"
    );
    let check = Command::new(BIN)
        .args(["node", "--check", "--json", "--data-dir"])
        .arg(&d2)
        .output()
        .unwrap();
    let report = json(&check);
    assert!(report["blocks"].as_u64().unwrap() > 0);
    assert!(report["problems"].as_array().unwrap().is_empty());
    drop(n1);
    drop(n0);
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Streaming: a file several times larger than the memory bound goes through a client and
/// three node processes without any of them holding more than a few tens of MiB.
#[test]
fn put_and_get_stream_in_constant_memory() {
    use std::io::{Read, Write};
    const FILE: usize = 192 << 20;
    const BOUND: u64 = 96 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let id = tmp.path().join("client.key");
    let n0 = NodeProc::start(&tmp.path().join("n0"), &[], &[]);
    let a0 = n0.addr();
    let n1 = NodeProc::start(&tmp.path().join("n1"), std::slice::from_ref(&a0), &[]);
    let n2 = NodeProc::start(&tmp.path().join("n2"), std::slice::from_ref(&a0), &[]);
    std::thread::sleep(Duration::from_secs(2));

    let mut put = Command::new(BIN)
        .args([
            "put",
            "-",
            "--name",
            "big",
            "--json",
            "--node",
            &a0,
            "--identity",
        ])
        .arg(&id)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = put.id();
    let mut stdin = put.stdin.take().unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 253) as u8).collect();
    let mut client_peak = 0;
    for i in 0..(FILE >> 20) {
        let mut c = chunk.clone();
        c[0] = i as u8; // distinct blocks
        stdin.write_all(&c).unwrap();
        client_peak = client_peak.max(peak_rss(pid).unwrap_or(0));
    }
    drop(stdin);
    let out = put.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut get = Command::new(BIN)
        .args(["get", "big", "-o", "-", "--node", &n1.addr(), "--identity"])
        .arg(&id)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let gpid = get.id();
    let mut stdout = get.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    let mut getter_peak = 0;
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        getter_peak = getter_peak.max(peak_rss(gpid).unwrap_or(0));
    }
    assert!(get.wait().unwrap().success());
    assert_eq!(total, FILE);

    let mib = |b: u64| b >> 20;
    for (what, peak) in [
        ("put client", client_peak),
        ("get client", getter_peak),
        ("node 0 (access for put)", peak_rss(n0.pid()).unwrap()),
        ("node 1 (access for get)", peak_rss(n1.pid()).unwrap()),
        ("node 2", peak_rss(n2.pid()).unwrap()),
    ] {
        eprintln!(
            "{what}: peak RSS {} MiB for a {} MiB file",
            mib(peak),
            FILE >> 20
        );
        assert!(peak < BOUND, "{what} peaked at {} MiB", mib(peak));
    }
}

/// Quick CLI runs under one identity over QUIC: each run closes its connection before it
/// exits. Before, a node learnt of an exit only by the idle timeout (UDP has no FIN), so the
/// dead connections of four runs filled its per-peer limit and the fifth was refused for
/// seconds (the processes bench's status polls saw 61 such failures).
#[test]
fn quick_cli_runs_over_quic_are_not_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let id = tmp.path().join("client.key");
    let node = NodeProc::start_in(
        &[],
        "/ip4/127.0.0.1/udp/0/quic-v1",
        &tmp.path().join("n0"),
        &[],
        &[],
    );
    let addr = node.addr();
    assert!(addr.contains("/quic-v1/"), "{addr}");
    for run in 0..12 {
        let out = cli(&["status", "--json", "--node", &addr], &id);
        assert!(
            out.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
