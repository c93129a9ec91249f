//! Storage membership by what a peer speaks: a peer that serves the swarmstore DHT and block
//! protocols is a storage peer, whatever its identify protocol-version says (another libp2p
//! implementation may not let it be set); a client, which serves neither, is not.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use libp2p::identify;
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::request_response::ProtocolSupport;
use libp2p::swarm::NetworkBehaviour;
use swarmstore::net::{rr, BlockRR};
use swarmstore::protocol::{block, KAD_PROTOCOL};

#[derive(NetworkBehaviour)]
struct Foreign {
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
    block: BlockRR,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_with_another_version_string_joins_the_dht() {
    let swarm = TestSwarm::start(4, 3).await;
    let key = Keypair::generate_ed25519();
    let me = key.public().to_peer_id();
    let mut foreign = tcp_swarm(key, |k| {
        let local = k.public().to_peer_id();
        let mut kad = kad::Behaviour::with_config(
            local,
            MemoryStore::new(local),
            kad::Config::new(KAD_PROTOCOL),
        );
        kad.set_mode(Some(kad::Mode::Server));
        Foreign {
            kad,
            identify: identify::Behaviour::new(identify::Config::new(
                "/some-other-implementation/0.1".into(),
                k.public(),
            )),
            block: rr(
                block::PROTOCOL,
                ProtocolSupport::Inbound,
                block::FRAME_LIMIT,
                Duration::from_secs(10),
            ),
        }
    });
    foreign
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    foreign.dial(swarm.node(0).addr()).expect("dial");
    let driver = tokio::spawn(async move {
        loop {
            let _ = foreign.select_next_some().await;
        }
    });

    // Node 0 takes it in as a storage peer; the others find it through the DHT.
    let joined = eventually(Duration::from_secs(30), || async {
        swarm.node(0).live_peers().contains(&me)
    })
    .await;
    assert!(joined, "node 0 counts the foreign peer as a storage peer");
    let found = eventually(Duration::from_secs(30), || async {
        match swarm.node(3).lookup("anything").await {
            Ok(l) => l.peers.iter().any(|(p, _)| *p == me),
            Err(_) => false,
        }
    })
    .await;
    assert!(
        found,
        "FIND_NODE from another node returns the foreign peer"
    );

    // A client serves neither protocol: never a storage peer.
    let client = swarm.client(1).await;
    assert!(!swarm.node(1).live_peers().contains(&client.peer_id()));
    driver.abort();
    swarm.shutdown().await;
}
