//! The node's settings from a TOML file, the environment and flags; and a node started from a
//! config file whose bootstrap list mixes good, unreachable and malformed addresses.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use libp2p::identity::Keypair;
use swarmstore::{cli, Node, NodeConfig};

const BIN: &str = env!("CARGO_BIN_EXE_swarmstore");

/// One test, because it sets environment variables (process-wide).
#[test]
fn config_file_env_and_flags_describe_the_same_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display().to_string();
    std::fs::write(
        dir.path().join("swarm.key"),
        swarmstore::net::new_swarm_key(),
    )
    .expect("key");
    let file = dir.path().join("node.toml");
    std::fs::write(
        &file,
        format!(
            r#"
# every key is a flag name
data-dir = "{d}/data"
listen = ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"]
bootstrap = ["/dns4/seed.example.org/tcp/4001", "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWGzBqm4s6ZjAnpUMNLWAvnNhRbbd9qEHE1kgq8HtEsBxT"]
external-addr = ["/ip4/203.0.113.7/tcp/4001"]
no-mdns = true
replication = 2
capacity = "5G"
keep-versions = 4
gc-grace = "30s"
sync-interval = "5s"
liveness = "4s"
repair-interval = "3s"
repair-bandwidth = "8M"
relay-server = "off"
autonat-server = "on"
swarm-key = "swarm.key"
metrics = "127.0.0.1:9090"
"#
        ),
    )
    .expect("write config");

    let flags = [
        "--data-dir",
        &format!("{d}/data"),
        "--listen",
        "/ip4/127.0.0.1/tcp/4001",
        "--listen",
        "/ip4/127.0.0.1/udp/4001/quic-v1",
        "--bootstrap",
        "/dns4/seed.example.org/tcp/4001",
        "--bootstrap",
        "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWGzBqm4s6ZjAnpUMNLWAvnNhRbbd9qEHE1kgq8HtEsBxT",
        "--external-addr",
        "/ip4/203.0.113.7/tcp/4001",
        "--no-mdns",
        "--replication",
        "2",
        "--capacity",
        "5G",
        "--keep-versions",
        "4",
        "--gc-grace",
        "30s",
        "--sync-interval",
        "5s",
        "--liveness",
        "4s",
        "--repair-interval",
        "3s",
        "--repair-bandwidth",
        "8M",
        "--relay-server",
        "off",
        "--autonat-server",
        "on",
        "--swarm-key",
        &format!("{d}/swarm.key"),
        "--metrics",
        "127.0.0.1:9090",
    ];
    let from_flags = cli::node_config(flags).expect("flags parse");
    let from_file =
        cli::node_config(["--config", &file.display().to_string()]).expect("file parses");
    assert_eq!(from_file, from_flags);
    assert_eq!(from_file.bootstrap.len(), 2);
    assert!(from_file.swarm_key.is_some());
    assert_ne!(from_file, NodeConfig::new(format!("{d}/data")));

    // The environment overrides the file; flags override both.
    std::env::set_var("SWARMSTORE_REPLICATION", "5");
    std::env::set_var(
        "SWARMSTORE_BOOTSTRAP",
        "/ip4/127.0.0.1/tcp/9,/ip4/127.0.0.1/tcp/10",
    );
    let c = cli::node_config(["--config", &file.display().to_string()]).expect("parses");
    assert_eq!(c.replication, 5);
    assert_eq!(c.bootstrap.len(), 2);
    assert_eq!(c.bootstrap[0].to_string(), "/ip4/127.0.0.1/tcp/9");
    assert_eq!(
        c.keep_versions, 4,
        "file values the environment leaves alone stay"
    );
    let c = cli::node_config([
        "--config",
        &file.display().to_string(),
        "--replication",
        "4",
    ])
    .expect("parses");
    assert_eq!(c.replication, 4);
    std::env::remove_var("SWARMSTORE_REPLICATION");
    std::env::remove_var("SWARMSTORE_BOOTSTRAP");

    // A bad value is one clear line naming the key.
    std::fs::write(&file, "gc-grace = \"soon\"\n").expect("write");
    let e = cli::node_config(["--config", &file.display().to_string()]).expect_err("bad value");
    assert!(format!("{e:#}").contains("gc-grace"), "{e:#}");
    std::fs::write(&file, "listen-on = []\n").expect("write");
    let e = cli::node_config(["--config", &file.display().to_string()]).expect_err("bad key");
    assert!(format!("{e:#}").contains("listen-on"), "{e:#}");
}

/// A node started with `--config` joins through the good bootstrap address while each bad one
/// (unreachable, unresolvable, not a multiaddr) is reported once, with its address; the
/// file's `s3` key starts the S3 API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_from_config_joins_and_reports_bad_bootstrap_addresses() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = Node::start(NodeConfig::local(dir.path().join("seed")))
        .await
        .expect("seed starts");
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let unreachable = format!("/ip4/127.0.0.1/tcp/1/p2p/{stranger}");
    let unresolvable = "/dns4/swarmstore-no-such-host.invalid/tcp/4001";
    let file = dir.path().join("node.toml");
    let s3_port = common::procs::free_port();
    std::fs::write(
        &file,
        format!(
            "data-dir = \"node\"\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nno-mdns = true\n\
             s3 = \"{s3_port}\"\n\
             bootstrap = [\"{unreachable}\", \"{unresolvable}\", \"not-an-address\", \"{}\"]\n",
            seed.addr()
        ),
    )
    .expect("write config");
    // A clean environment: the other test here sets SWARMSTORE_* variables, and this node
    // must read only its file.
    let mut child = Command::new(BIN)
        .env_clear()
        .args(["node", "--config"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });

    let joined = seed.wait_for_peers(1, Duration::from_secs(30)).await;
    // Collect until every bad address was reported, then two seconds more (well inside the
    // 10 s backoff before a second attempt).
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut settle: Option<Instant> = None;
    while Instant::now() < deadline && settle.is_none_or(|t| Instant::now() < t) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
        let all = [unreachable.as_str(), unresolvable, "not-an-address"]
            .iter()
            .all(|a| lines.iter().any(|l| l.contains(a)));
        if all && settle.is_none() {
            settle = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    let s3_open = std::net::TcpStream::connect(("127.0.0.1", s3_port)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    assert!(
        s3_open,
        "the file's s3 key did not start the S3 API:\n{log}"
    );
    assert!(
        joined,
        "the node did not join through the good address:\n{log}"
    );
    for bad in [unreachable.as_str(), unresolvable, "not-an-address"] {
        let n = lines.iter().filter(|l| l.contains(bad)).count();
        assert_eq!(n, 1, "{bad} reported {n} times:\n{log}");
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(&seed.peer_id().to_string())),
        "the good address was reported:\n{log}"
    );
    seed.shutdown().await;
}
