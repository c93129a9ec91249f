//! NAT traversal in one process: node A has no direct listen address and is reachable only
//! through relay R. B reaches A through the relay, a direct connection replaces the relayed
//! one (DCUtR, or a direct dial once identify told A where B listens), blocks move only on
//! direct connections, and a client reading through A (over the relay) gets the bytes back.

mod common;

use std::time::Duration;

use common::*;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use swarmstore::net::is_relayed;
use swarmstore::node::ServeMode;
use swarmstore::{Client, Node, NodeConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_only_node_gets_direct_connection_and_serves_a_file() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");

    // R: a relay (on by operator choice: on loopback AutoNAT cannot say "public").
    let relay = Node::start(
        NodeConfig::local(dir.path().join("r"))
            .relay_server(ServeMode::On)
            .metrics(Some("127.0.0.1:0".parse().expect("addr"))),
    )
    .await
    .expect("relay starts");
    let r_addr = relay.addr();

    // B: an ordinary node with a direct address.
    let b = Node::start(NodeConfig::local(dir.path().join("b")).bootstrap(vec![r_addr.clone()]))
        .await
        .expect("B starts");

    // A: listens only through R.
    let circuit = r_addr.clone().with(Protocol::P2pCircuit);
    let a = Node::start(
        NodeConfig::local(dir.path().join("a"))
            .listen_on(vec![circuit])
            .bootstrap(vec![r_addr.clone()]),
    )
    .await
    .expect("A starts behind the relay");
    assert!(
        a.listen_addrs().iter().all(is_relayed),
        "A must have no direct listen address: {:?}",
        a.listen_addrs()
    );
    let a_addr = a.addr();
    assert!(is_relayed(&a_addr));

    // B reaches A through the relay.
    b.dial(a_addr.clone()).await.expect("dial A");
    assert!(
        b.wait_for_peers(2, Duration::from_secs(30)).await,
        "B sees {:?}",
        b.live_peers()
    );
    assert!(
        a.wait_for_peers(2, Duration::from_secs(30)).await,
        "A sees {:?}",
        a.live_peers()
    );
    // The relay carried a circuit between them. (A may also have dialled B directly first, so
    // the peers can see each other before the circuit is up: wait for it.)
    let metrics = relay.metrics_addr().expect("relay metrics");
    let circuit_accepted = |scraped: &str| {
        scraped
            .lines()
            .any(|l| l.contains("CircuitReqAccepted") && !l.trim_end().ends_with(" 0"))
    };
    eventually(Duration::from_secs(30), || async {
        circuit_accepted(&scrape(metrics).await)
    })
    .await;
    let scraped = scrape(metrics).await;
    assert!(
        circuit_accepted(&scraped),
        "no circuit accepted by the relay:\n{}",
        scraped
            .lines()
            .filter(|l| l.contains("relay"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A direct connection between A and B replaces the relayed one.
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    assert!(
        eventually(Duration::from_secs(30), || async {
            a.direct_peers().contains(&b_id) && b.direct_peers().contains(&a_id)
        })
        .await,
        "no direct connection: A has {:?}, B has {:?}",
        a.direct_peers(),
        b.direct_peers()
    );

    // 4 MiB put through B: with R=3 on three nodes every block lands on A too, over the
    // direct connection (blocks never ride the relay).
    let data = random_bytes(4 * 1024 * 1024, 7);
    let put_client = Client::connect(b.addr(), Keypair::generate_ed25519())
        .await
        .expect("client connects to B");
    let put = put_client
        .put_bytes("relay/big.bin", &data)
        .await
        .expect("put on B");
    assert_eq!(put.version, 1);
    assert!(
        a.store().blocks.count() >= 4,
        "A holds {} blocks",
        a.store().blocks.count()
    );

    // Read through A, whose only address is the relay circuit.
    let get_client = Client::connect(a_addr, Keypair::generate_ed25519())
        .await
        .expect("client connects to A through the relay");
    let back = get_client
        .get_bytes("relay/big.bin")
        .await
        .expect("get through A");
    assert!(back == data, "bytes differ");

    a.shutdown().await;
    b.shutdown().await;
    relay.shutdown().await;
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// Two nodes that can reach each other only through a relay (neither has a direct address):
/// records still flow, but a block that only the other holds cannot, and the error says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_only_path_is_reported_plainly() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let relay = Node::start(
        NodeConfig::local(dir.path().join("r"))
            .relay_server(ServeMode::On)
            .replication(1),
    )
    .await
    .expect("relay starts");
    let circuit = relay.addr().with(Protocol::P2pCircuit);
    let behind = |name: &str| {
        NodeConfig::local(dir.path().join(name))
            .listen_on(vec![circuit.clone()])
            .bootstrap(vec![relay.addr()])
            .replication(1)
    };
    let a = Node::start(behind("a")).await.expect("A starts");
    let b = Node::start(behind("b")).await.expect("B starts");
    b.dial(a.addr()).await.expect("dial A");
    assert!(a.wait_for_peers(2, Duration::from_secs(30)).await);
    assert!(b.wait_for_peers(2, Duration::from_secs(30)).await);

    // R = 1 and 64 KiB blocks: each block has one holder; about a third land on B.
    let data = random_bytes(32 * 65536, 5);
    let put_client = Client::connect(b.addr(), Keypair::generate_ed25519())
        .await
        .expect("client reaches B through the relay")
        .with_block_size(65536);
    put_client
        .put_bytes("relay/only", &data)
        .await
        .expect("put on B (blocks meant for A go elsewhere)");
    assert!(b.store().blocks.count() > 0, "no block landed on B");
    assert!(!a.direct_peers().contains(&b.peer_id()));
    assert!(!b.direct_peers().contains(&a.peer_id()));

    let get_client = Client::connect(a.addr(), Keypair::generate_ed25519())
        .await
        .expect("client reaches A through the relay");
    let err = get_client
        .get_bytes("relay/only")
        .await
        .expect_err("A cannot fetch B's blocks");
    let msg = err.to_string();
    assert!(
        msg.contains("reachable only through a relay") && msg.contains(&b.peer_id().to_string()),
        "unclear error: {msg}"
    );

    a.shutdown().await;
    b.shutdown().await;
    relay.shutdown().await;
}

/// AutoNAT v2: a node learns it is reachable once a server dials back the address a peer
/// observed for it; only then does it advertise that address (and, in auto mode, relay).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autonat_confirms_a_reachable_address() {
    use swarmstore::node::Reachability;
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    // On loopback nothing is "public", so this server answers by operator choice.
    let server = Node::start(NodeConfig::local(dir.path().join("s")).autonat_server(ServeMode::On))
        .await
        .expect("server starts");
    let node = Node::start(NodeConfig::local(dir.path().join("n")).bootstrap(vec![server.addr()]))
        .await
        .expect("node starts");
    assert_eq!(node.reachability(), Reachability::Unknown);
    assert!(
        eventually(Duration::from_secs(40), || async {
            node.reachability() == Reachability::Public
        })
        .await,
        "still {:?}",
        node.reachability()
    );
    // The server itself was never tested (its peer serves no AutoNAT): still unknown.
    assert_eq!(server.reachability(), Reachability::Unknown);

    // Now public, the node relays in auto mode: a third node can listen through it.
    let circuit = node.addr().with(Protocol::P2pCircuit);
    let behind = Node::start(
        NodeConfig::local(dir.path().join("z"))
            .listen_on(vec![circuit])
            .bootstrap(vec![node.addr()]),
    )
    .await
    .expect("a node listens through the auto-enabled relay");
    assert!(behind.listen_addrs().iter().all(is_relayed));
    behind.shutdown().await;

    // The server was never confirmed public, so in auto mode it offers no relay.
    let refused = Node::start(
        NodeConfig::local(dir.path().join("y"))
            .listen_on(vec![server.addr().with(Protocol::P2pCircuit)])
            .bootstrap(vec![server.addr()]),
    )
    .await;
    assert!(refused.is_err(), "a node not known to be public relayed");
    node.shutdown().await;
    server.shutdown().await;
}
