//! Private swarms: nodes with the same pre-shared key connect; a node or client with another
//! key, or none, is refused at connection time, and the node says why in its log.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use swarmstore::{Client, Node, NodeConfig};

const BIN: &str = env!("CARGO_BIN_EXE_swarmstore");

fn key(seed: u8) -> PreSharedKey {
    PreSharedKey::new([seed; 32])
}

async fn start(
    dir: &std::path::Path,
    name: &str,
    psk: Option<PreSharedKey>,
    boot: Vec<libp2p::Multiaddr>,
) -> Node {
    Node::start(
        NodeConfig::local(dir.join(name))
            .swarm_key(psk)
            .bootstrap(boot)
            .replication(2),
    )
    .await
    .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_connects_other_keys_do_not() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let a1 = start(dir.path(), "a1", Some(key(1)), vec![]).await;
    let a2 = start(dir.path(), "a2", Some(key(1)), vec![a1.addr()]).await;
    assert!(
        a2.wait_for_peers(1, Duration::from_secs(20)).await,
        "same key: no connection"
    );

    let other = start(dir.path(), "b", Some(key(2)), vec![a1.addr()]).await;
    let open = start(dir.path(), "c", None, vec![a1.addr()]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // No connection at all (a bootstrap peer may be listed as known before its dial fails).
    assert!(
        other.direct_peers().is_empty(),
        "other key connected to {:?}",
        other.direct_peers()
    );
    assert!(
        open.direct_peers().is_empty(),
        "keyless node connected to {:?}",
        open.direct_peers()
    );
    let strangers = [other.peer_id(), open.peer_id()];
    assert!(!a1.direct_peers().iter().any(|p| strangers.contains(p)));
    assert_eq!(a1.live_peers(), vec![a2.peer_id()], "a1 let a stranger in");

    // Clients too: the right key works, another key or none is refused.
    let data = random_bytes(300_000, 3);
    let ok = Client::connect_with(a1.addr(), Keypair::generate_ed25519(), Some(key(1)))
        .await
        .expect("client with the key connects");
    ok.put_bytes("private/file", &data).await.expect("put");
    assert!(ok.get_bytes("private/file").await.expect("get") == data);
    let refused = Client::connect_with(a1.addr(), Keypair::generate_ed25519(), Some(key(9))).await;
    assert!(refused.is_err(), "client with another key connected");
    let refused = Client::connect(a1.addr(), Keypair::generate_ed25519()).await;
    assert!(refused.is_err(), "client without a key connected");

    for n in [a1, a2, other, open] {
        n.shutdown().await;
    }
}

/// The node with the wrong key explains the refusal in one log line naming the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_logged_clearly() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let a = start(dir.path(), "a", Some(key(1)), vec![]).await;
    let key_file = dir.path().join("other.key");
    std::fs::write(&key_file, key(2).to_key_file()).expect("write key");
    let target = a.addr().to_string();
    // The dial fails once the upgrade times out (10 s): pnet has no key check of its own.
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut child = Command::new(BIN)
            .args([
                "node",
                "--no-mdns",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--bootstrap",
            ])
            .arg(&target)
            .arg("--swarm-key")
            .arg(&key_file)
            .arg("--data-dir")
            .arg(key_file.with_extension("dir"))
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
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        let found = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("does not use this swarm's key") => break Some(l),
                Ok(l) => seen.push(l),
                Err(_) => break None,
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        found.unwrap_or_else(|| panic!("no clear line in:\n{}", seen.join("\n")))
    })
    .await
    .expect("join");
    assert!(line.contains(&a.addr().to_string()), "{line}");
    assert!(a.live_peers().is_empty());
    a.shutdown().await;
}
