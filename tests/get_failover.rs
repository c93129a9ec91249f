//! A get whose busiest holder dies mid-transfer completes from the other holders (issue 13's
//! acceptance), with every peer a separate OS process: `swarmstore node` processes of the built
//! binary and `swarmstore get NAME -o FILE` as its own CLI process through a node that stays up.
//!
//! While the get runs (its temporary file beside the destination has grown past an eighth of
//! the file), the test reads every node's `/metrics`, SIGKILLs the holder that has served the
//! most block reads to it since it started, and then requires the get to exit 0 with output
//! byte-identical to what was put (SHA-256), printing how long it took next to an undisturbed
//! get of the same file through the same node.
//!
//! - `busiest_holder_dies_mid_get`: 4 nodes, R = 3; the victim is any holder but the access
//!   node.
//! - `holder_of_every_block_dies_mid_get`: 3 nodes take the put (R = 3, so each holds every
//!   block), a 4th joins and serves the get as its access node holding none of them; the victim
//!   is listed by every block, so whatever was in flight from it must fail over.
//! - `holder_of_every_block_stalls_mid_get`: the same, but the victim is SIGSTOPped (a silent
//!   holder, sockets open) rather than killed, and resumed after the get.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::procs::{cli, finish, free_port, json, sha256_of, wait_live, NodeProc, BIN};

/// Size of the file: big enough that a get is still running after its first eighth.
const FILE_SIZE: u64 = 128 << 20;
/// How long a get may take, disturbed or not, before the test calls it stuck.
const GET_DEADLINE: Duration = Duration::from_secs(45);

/// The cases run one at a time: each is 4 nodes and a CLI on a small machine, and their
/// timings are compared.
static SERIAL: Mutex<()> = Mutex::new(());

/// A node process with its metrics endpoint.
struct Node {
    proc: NodeProc,
    addr: String,
    peer: String,
    metrics: SocketAddr,
}

impl Node {
    fn start(dir: &Path, bootstrap: Option<&str>) -> Node {
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let m = metrics.to_string();
        let boot: Vec<String> = bootstrap.into_iter().map(str::to_string).collect();
        let proc = NodeProc::start(dir, &boot, &["--metrics", &m]);
        let addr = proc.addr();
        let peer = addr
            .rsplit("/p2p/")
            .next()
            .expect("address ends in /p2p/PEER")
            .to_string();
        Node {
            proc,
            addr,
            peer,
            metrics,
        }
    }

    /// Block reads this node has served (`requests_served{protocol="block",kind="get"}`).
    fn block_gets(&self) -> u64 {
        let mut s = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2))
            .expect("connect to /metrics");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            .expect("write request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read /metrics");
        let prefix = "swarmstore_requests_served_total{protocol=\"block\",kind=\"get\"}";
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}")) as u64
    }
}

/// `FILE_SIZE` random bytes at `path`; their SHA-256.
fn random_file(path: &Path) -> [u8; 32] {
    let mut src = std::fs::File::open("/dev/urandom")
        .expect("open /dev/urandom")
        .take(FILE_SIZE);
    let mut dst = std::fs::File::create(path).expect("create source file");
    let n = std::io::copy(&mut src, &mut dst).expect("write source file");
    assert_eq!(n, FILE_SIZE);
    sha256_of(path)
}

/// The CLI's temporary file for a get into `dest` by process `pid` (`cli/files.rs`).
fn temp_path(dest: &Path, pid: u32) -> PathBuf {
    let name = dest
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    dest.with_file_name(format!(".{name}.swarmstore-{pid}.tmp"))
}

fn spawn_get(name: &str, dest: &Path, access: &Node, id: &Path) -> Child {
    Command::new(BIN)
        .args(["get", name, "-o"])
        .arg(dest)
        .args(["--json", "--node", &access.addr, "--identity"])
        .arg(id)
        .env_remove("SWARMSTORE_NODE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn get")
}

/// An undisturbed get of `name` through `access`; how long it took.
fn plain_get(name: &str, dest: &Path, access: &Node, id: &Path, want: &[u8; 32]) -> Duration {
    let started = Instant::now();
    let out = finish(
        spawn_get(name, dest, access, id),
        started,
        GET_DEADLINE,
        "get",
    );
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "undisturbed get failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sha256_of(dest) == *want,
        "undisturbed get is byte-identical"
    );
    std::fs::remove_file(dest).expect("remove output");
    took
}

/// What happens to the busiest holder mid-get.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    /// SIGKILL: its connections reset, requests to it fail at once.
    Kill,
    /// SIGSTOP: its sockets stay open and silent, so requests to it hang until the reader
    /// gives up on them or asks another holder. Resumed (SIGCONT) after the get.
    Stall,
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// Runs a get of `name` through `nodes[access]` and, once an eighth of the file has arrived,
/// applies `fault` to whichever of `candidates` has served the most block reads since the
/// get started. Returns the victim's index and how long the get took.
#[allow(clippy::too_many_arguments)]
fn get_disturbing_busiest(
    name: &str,
    dest: &Path,
    nodes: &mut [Node],
    access: usize,
    candidates: &[usize],
    id: &Path,
    want: &[u8; 32],
    fault: Fault,
) -> (usize, Duration) {
    let before: Vec<u64> = nodes.iter().map(Node::block_gets).collect();
    let started = Instant::now();
    let mut child = spawn_get(name, dest, &nodes[access], id);
    let tmp = temp_path(dest, child.id());
    let arrived = loop {
        let len = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
        if len >= FILE_SIZE / 8 {
            break len;
        }
        if let Some(status) = child.try_wait().expect("poll get") {
            let out = child.wait_with_output().expect("get output");
            panic!(
                "get ended ({status}) before an eighth of the file arrived ({len} bytes in \
                 {tmp:?}), too early to kill a holder: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started.elapsed() < GET_DEADLINE,
            "only {len} bytes arrived in {GET_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let served: HashMap<usize, u64> = candidates
        .iter()
        .map(|&i| (i, nodes[i].block_gets() - before[i]))
        .collect();
    let (&victim, &victim_served) = served.iter().max_by_key(|(_, n)| **n).expect("a candidate");
    assert!(
        victim_served > 0,
        "no candidate served this get: {served:?}"
    );
    let at = started.elapsed();
    match fault {
        Fault::Kill => nodes[victim].proc.kill9(),
        Fault::Stall => signal(nodes[victim].proc.pid(), "-STOP"),
    }
    assert!(
        child.try_wait().expect("poll get").is_none(),
        "the get finished before the {fault:?}"
    );
    let out = finish(child, started, GET_DEADLINE, "get");
    let took = started.elapsed();
    if fault == Fault::Stall {
        signal(nodes[victim].proc.pid(), "-CONT");
    }
    assert!(
        out.status.success(),
        "get failed after its busiest holder got {fault:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sha256_of(dest) == *want,
        "the get is byte-identical after its busiest holder got {fault:?}"
    );
    assert!(!tmp.exists(), "no temporary file left behind");
    let others: Vec<(usize, u64)> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(i, n)| (i, n.block_gets() - before[i]))
        .collect();
    eprintln!(
        "{fault:?} node {victim} at {at:?} ({arrived} bytes written; reads served since the get \
         started: {served:?}); reads served by the others over the whole get, repair copies \
         after the death included: {others:?}"
    );
    (victim, took)
}

fn holders_by_block(stat: &serde_json::Value) -> Vec<Vec<String>> {
    stat["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| {
            b["holders"]
                .as_array()
                .expect("holders")
                .iter()
                .map(|h| h.as_str().expect("peer id").to_string())
                .collect()
        })
        .collect()
}

fn put(src: &Path, name: &str, node: &Node, id: &Path) {
    let put = json(&cli(
        &[
            "put",
            src.to_str().expect("utf-8 path"),
            "--name",
            name,
            "--json",
            "--node",
            &node.addr,
        ],
        id,
    ));
    assert_eq!(put["size"], FILE_SIZE, "{put}");
    assert_eq!(put["under_replicated"], 0, "{put}");
}

#[test]
fn busiest_holder_dies_mid_get() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().expect("temp dir");
    let id = tmp.path().join("client.key");
    let first = Node::start(&tmp.path().join("n0"), None);
    let boot = first.addr.clone();
    let mut nodes = vec![first];
    for i in 1..4 {
        nodes.push(Node::start(&tmp.path().join(format!("n{i}")), Some(&boot)));
    }
    for n in &nodes {
        wait_live(&n.addr, 3, &id);
    }

    let src = tmp.path().join("big.bin");
    let want = random_file(&src);
    let name = "failover/big.bin";
    put(&src, name, &nodes[0], &id);

    // Every block on 3 of the 4 nodes; the get goes through node 0, which stays up.
    let stat = json(&cli(
        &["stat", name, "--json", "--node", &nodes[0].addr],
        &id,
    ));
    let blocks = holders_by_block(&stat);
    assert_eq!(blocks.len() as u64, FILE_SIZE >> 20);
    for h in &blocks {
        assert!(h.len() >= 3, "a block with {} holders", h.len());
    }
    let access = 0;
    let dest = tmp.path().join("copy.bin");
    let plain = plain_get(name, &dest, &nodes[access], &id, &want);

    let (victim, took) = get_disturbing_busiest(
        name,
        &dest,
        &mut nodes,
        access,
        &[1, 2, 3],
        &id,
        &want,
        Fault::Kill,
    );
    let listed = blocks
        .iter()
        .filter(|h| h.contains(&nodes[victim].peer))
        .count();
    eprintln!(
        "busiest_holder_dies_mid_get: {} MiB, undisturbed {plain:?}, with node {victim} (holder \
         of {listed} of {} blocks) killed mid-get {took:?}",
        FILE_SIZE >> 20,
        blocks.len()
    );
}

/// 3 nodes take the put, a 4th that holds none of it is the access node, and `fault` hits the
/// busiest holder listed by every block mid-get.
fn holder_of_every_block_mid_get(fault: Fault) {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::tempdir().expect("temp dir");
    let id = tmp.path().join("client.key");
    let first = Node::start(&tmp.path().join("n0"), None);
    let boot = first.addr.clone();
    let mut nodes = vec![first];
    for i in 1..3 {
        nodes.push(Node::start(&tmp.path().join(format!("n{i}")), Some(&boot)));
    }
    for n in &nodes {
        wait_live(&n.addr, 2, &id);
    }
    let src = tmp.path().join("big.bin");
    let want = random_file(&src);
    let name = "failover/every.bin";
    put(&src, name, &nodes[0], &id);

    // A 4th node joins after the put and is the access node: it holds none of the blocks, so
    // every block is read from the three that hold them all.
    nodes.push(Node::start(&tmp.path().join("n3"), Some(&boot)));
    for n in &nodes {
        wait_live(&n.addr, 3, &id);
    }
    let access = 3;
    let dest = tmp.path().join("copy.bin");
    let plain = plain_get(name, &dest, &nodes[access], &id, &want);

    // Checked after the undisturbed get, just before the one that matters: the holders that
    // every block lists (the access node's own copies, if any moved to it, are not candidates).
    let stat = json(&cli(
        &["stat", name, "--json", "--node", &nodes[access].addr],
        &id,
    ));
    let blocks = holders_by_block(&stat);
    let candidates: Vec<usize> = (0..3)
        .filter(|&i| blocks.iter().all(|h| h.contains(&nodes[i].peer)))
        .collect();
    assert!(
        !candidates.is_empty(),
        "no node is listed by every block: {blocks:?}"
    );
    let (victim, took) = get_disturbing_busiest(
        name,
        &dest,
        &mut nodes,
        access,
        &candidates,
        &id,
        &want,
        fault,
    );
    eprintln!(
        "holder_of_every_block_mid_get: {} MiB, undisturbed {plain:?}, with node {victim} \
         (holder of all {} blocks) {fault:?} mid-get {took:?}",
        FILE_SIZE >> 20,
        blocks.len()
    );
}

#[test]
fn holder_of_every_block_dies_mid_get() {
    holder_of_every_block_mid_get(Fault::Kill);
}

/// A holder that goes silent (SIGSTOP: connections open, nothing answered) mid-get: requests
/// to it are hedged to the other holders, and the get completes byte-identical.
#[test]
fn holder_of_every_block_stalls_mid_get() {
    holder_of_every_block_mid_get(Fault::Stall);
}
