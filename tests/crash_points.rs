//! Crash points beyond put: SIGKILL at random moments during update, rm, garbage collection,
//! repair and drain. After each kill the killed node's store checks clean (`node --check`: no
//! torn block, no record naming the node for a block it lacks), and after its restart nothing
//! acknowledged is lost: an acknowledged update reads as the new bytes, an acknowledged rm as
//! gone, an unacknowledged one as either side, complete.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::{cli, json, sha256_of, wait_live, NodeProc, BIN};
use rand::{Rng, SeedableRng};

const MIB: usize = 1 << 20;
const ARGS: &[&str] = &[
    "--replication",
    "3",
    "--liveness",
    "3s",
    "--repair-interval",
    "1s",
    "--sync-interval",
    "1s",
    "--gc-grace",
    "2s",
];

fn swarm(dir: &Path, n: usize, extra: &[&str]) -> Vec<NodeProc> {
    let mut args = ARGS.to_vec();
    args.extend_from_slice(extra);
    let first = NodeProc::start(&dir.join("n0"), &[], &args);
    let boot = vec![first.addr()];
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(NodeProc::start(&dir.join(format!("n{i}")), &boot, &args));
    }
    nodes
}

fn write_src(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(format!("{}.src", name.replace('/', "_")));
    std::fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_string()
}

/// Puts `data` as `name` through `node`; the put must succeed.
fn put(dir: &Path, id: &Path, node: &str, name: &str, data: &[u8]) {
    let src = write_src(dir, name, data);
    let out = cli(&["put", &src, "--name", name, "--node", node], id);
    assert!(
        out.status.success(),
        "put {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spawn(args: &[&str], id: &Path) -> Child {
    Command::new(BIN)
        .args(args)
        .arg("--identity")
        .arg(id)
        .env_remove("SWARMSTORE_NODE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// What `get` returns: `Some(sha256)` of complete bytes, or `None` for not found / deleted.
fn read(id: &Path, node: &str, name: &str, out: &Path) -> Option<[u8; 32]> {
    let got = cli(
        &["get", name, "-o", out.to_str().unwrap(), "--node", node],
        id,
    );
    match got.status.code() {
        Some(0) => Some(sha256_of(out)),
        Some(2) => None,
        other => panic!(
            "get {name}: neither a complete file nor absent ({other:?}): {}",
            String::from_utf8_lossy(&got.stderr)
        ),
    }
}

fn digest(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}

/// Kills node 0 (the access node) `delay` into `child`, checks its store, restarts it.
fn kill_during(nodes: &mut [NodeProc], child: Child, delay: Duration) -> bool {
    std::thread::sleep(delay);
    nodes[0].kill9();
    let out = common::procs::finish(child, Instant::now(), Duration::from_secs(60), "client");
    nodes[0].assert_clean("after a kill");
    let boot = vec![nodes[1].addr()];
    nodes[0].restart(&boot);
    out.status.success()
}

#[test]
fn sigkill_during_update_rm_and_gc_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let id = tmp.path().join("client.key");
    let mut nodes = swarm(tmp.path(), 4, &[]);
    wait_live(&nodes[0].addr(), 3, &id);
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let out = tmp.path().join("out.bin");

    // Update: how long one takes here, then kills across it.
    let v1 = common::random_bytes(8 * MIB, 1);
    let a0 = nodes[0].addr();
    put(tmp.path(), &id, &a0, "u", &v1);
    let t = Instant::now();
    let v2 = common::random_bytes(8 * MIB, 2);
    let src = write_src(tmp.path(), "u", &v2);
    assert!(cli(&["update", "u", &src, "--node", &a0], &id)
        .status
        .success());
    let mut current = digest(&v2);
    let full_ms = t.elapsed().as_millis() as u64;
    eprintln!("an uninterrupted 8 MiB update takes {full_ms} ms");
    for (k, fraction) in [0.15, 0.5, 0.9, 1.3].iter().enumerate() {
        let next = common::random_bytes(8 * MIB, 10 + k as u64);
        let src = write_src(tmp.path(), "u", &next);
        let a0 = nodes[0].addr();
        let child = spawn(&["update", "u", &src, "--node", &a0], &id);
        let delay = (full_ms as f64 * fraction * rng.gen_range(0.9..1.1)) as u64;
        let acked = kill_during(&mut nodes, child, Duration::from_millis(delay));
        let seen = read(&id, &nodes[1].addr(), "u", &out);
        let new = digest(&next);
        assert!(
            seen == Some(current) || seen == Some(new),
            "update {k}: the file reads as the old or the new version, complete"
        );
        if acked {
            assert_eq!(
                seen,
                Some(new),
                "update {k}: an acknowledged update survives"
            );
        }
        eprintln!(
            "update {k}: killed after {delay} ms, acknowledged {acked}, reads as {}",
            if seen == Some(new) { "new" } else { "old" }
        );
        current = seen.unwrap();
    }

    // Rm: how long one takes (the client process included), then kills across it.
    let a0 = nodes[0].addr();
    put(
        tmp.path(),
        &id,
        &a0,
        "r",
        &common::random_bytes(2 * MIB, 99),
    );
    let t = Instant::now();
    assert!(cli(&["rm", "r", "--node", &a0], &id).status.success());
    let rm_ms = t.elapsed().as_millis() as u64;
    eprintln!("an uninterrupted rm takes {rm_ms} ms");
    for (k, fraction) in [0.3, 0.6, 0.8, 0.95, 1.2].iter().enumerate() {
        let k = k as u64;
        let name = format!("r{k}");
        let data = common::random_bytes(2 * MIB + 1000, 100 + k);
        let a0 = nodes[0].addr();
        put(tmp.path(), &id, &a0, &name, &data);
        let child = spawn(&["rm", &name, "--node", &a0], &id);
        let delay = (rm_ms as f64 * fraction * rng.gen_range(0.9..1.1)) as u64;
        let acked = kill_during(&mut nodes, child, Duration::from_millis(delay));
        let seen = read(&id, &nodes[1].addr(), &name, &out);
        assert!(
            seen.is_none() || seen == Some(digest(&data)),
            "rm {k}: present and complete, or gone"
        );
        if acked {
            assert!(seen.is_none(), "rm {k}: an acknowledged rm stays done");
        }
        eprintln!(
            "rm {k}: killed after {delay} ms, acknowledged {acked}, file {}",
            if seen.is_none() { "gone" } else { "present" }
        );
    }

    // GC: remove files, then kill nodes while the sweeps (every ~1 s after a 2 s grace) run.
    let keep: Vec<(String, Vec<u8>)> = (0..3)
        .map(|k| (format!("keep{k}"), common::random_bytes(3 * MIB, 200 + k)))
        .collect();
    for (name, data) in &keep {
        put(tmp.path(), &id, &nodes[0].addr(), name, data);
    }
    for k in 0..3 {
        let name = format!("gone{k}");
        let a0 = nodes[0].addr();
        put(
            tmp.path(),
            &id,
            &a0,
            &name,
            &common::random_bytes(3 * MIB, 300 + k),
        );
        assert!(cli(&["rm", &name, "--node", &a0], &id).status.success());
    }
    for round in 0..4 {
        let victim = rng.gen_range(1..nodes.len());
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        nodes[victim].kill9();
        nodes[victim].assert_clean("after a kill during GC");
        let boot = vec![nodes[0].addr()];
        nodes[victim].restart(&boot);
        eprintln!("gc round {round}: killed and restarted n{victim}");
    }
    std::thread::sleep(Duration::from_secs(3));
    for (name, data) in &keep {
        assert_eq!(
            read(&id, &nodes[0].addr(), name, &out),
            Some(digest(data)),
            "{name} survives GC and the kills"
        );
    }
    for k in 0..3 {
        assert_eq!(read(&id, &nodes[0].addr(), &format!("gone{k}"), &out), None);
    }
    assert_eq!(read(&id, &nodes[0].addr(), "u", &out), Some(current));
    for n in nodes.iter_mut() {
        n.terminate();
        n.assert_clean("at the end");
    }
}

/// Live holders of every block of `name` other than `dead`.
fn live_copies(id: &Path, node: &str, name: &str, dead: &str) -> Vec<usize> {
    let stat = json(&cli(&["stat", name, "--json", "--node", node], id));
    stat["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            b["holders"]
                .as_array()
                .map(|h| h.iter().filter(|p| p.as_str() != Some(dead)).count())
                .unwrap_or(0)
        })
        .collect()
}

fn peer_of(addr: &str) -> String {
    addr.rsplit("/p2p/").next().unwrap().to_string()
}

#[test]
fn sigkill_during_repair_and_drain_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let id = tmp.path().join("client.key");
    let mut nodes = swarm(tmp.path(), 5, &["--drain"]);
    wait_live(&nodes[0].addr(), 4, &id);
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let out = tmp.path().join("out.bin");
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|k| (format!("f{k}"), common::random_bytes(3 * MIB, 400 + k)))
        .collect();
    for (name, data) in &files {
        put(tmp.path(), &id, &nodes[0].addr(), name, data);
    }

    // Repair: n4 dies for good; while the roots copy its blocks, kill and restart others.
    let dead = peer_of(&nodes[4].addr());
    nodes[4].kill9();
    for (round, victim) in [1, 2, 3].into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(rng.gen_range(2000..4500)));
        nodes[victim].kill9();
        nodes[victim].assert_clean("after a kill during repair");
        let boot = vec![nodes[0].addr()];
        nodes[victim].restart(&boot);
        eprintln!("repair round {round}: killed and restarted n{victim}");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for (name, data) in &files {
        loop {
            let copies = live_copies(&id, &nodes[0].addr(), name, &dead);
            if copies.iter().all(|c| *c >= 3) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: repair never restored 3 live copies: {copies:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_eq!(
            read(&id, &nodes[0].addr(), name, &out),
            Some(digest(data)),
            "{name} after repair"
        );
    }

    // Drain: SIGTERM n3 (it runs with --drain) and SIGKILL it part-way, twice; then a full drain.
    for round in 0..2 {
        let pid = nodes[3].pid().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..600)));
        nodes[3].kill9();
        nodes[3].assert_clean("after a kill during drain");
        let boot = vec![nodes[0].addr()];
        nodes[3].restart(&boot);
        wait_live(&nodes[3].addr(), 3, &id);
        eprintln!("drain round {round}: killed part-way and restarted");
    }
    let status = nodes[3].terminate().expect("drained node exits");
    assert!(status.success(), "a full drain exits 0: {status:?}");
    nodes[3].assert_clean("after a full drain");
    for (name, data) in &files {
        assert_eq!(
            read(&id, &nodes[0].addr(), name, &out),
            Some(digest(data)),
            "{name} with n3 drained and n4 dead"
        );
    }
    for n in nodes.iter_mut().take(3) {
        n.kill9();
        n.assert_clean("at the end");
    }
}
