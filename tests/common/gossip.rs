//! A gossip-only stranger: it speaks gossipsub and nothing else (no DHT, no storage
//! protocols), so no node counts it as a storage peer. Tests publish election messages
//! through it.

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, Swarm};

pub struct GossipPeer {
    swarm: Swarm<gossipsub::Behaviour>,
}

impl GossipPeer {
    pub fn new() -> Self {
        let key = Keypair::generate_ed25519();
        let swarm = super::tcp_swarm(key, |k| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Strict)
                .flood_publish(true)
                .build()
                .expect("gossipsub config");
            gossipsub::Behaviour::new(MessageAuthenticity::Signed(k.clone()), config)
                .expect("gossipsub")
        });
        GossipPeer { swarm }
    }

    /// Dials `addr`, subscribes to `topic` and waits until the node there subscribes back.
    pub async fn join(&mut self, addr: Multiaddr, topic: &str) {
        let topic = IdentTopic::new(topic);
        self.swarm
            .behaviour_mut()
            .subscribe(&topic)
            .expect("subscribe");
        self.swarm.dial(addr).expect("dial");
        let joined = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let libp2p::swarm::SwarmEvent::Behaviour(gossipsub::Event::Subscribed {
                    ..
                }) = self.swarm.select_next_some().await
                {
                    return;
                }
            }
        })
        .await;
        assert!(joined.is_ok(), "the node never subscribed back");
    }

    /// Publishes `data` on `topic`, signed by this peer, and keeps the swarm running a while
    /// so that it goes out.
    pub async fn publish(&mut self, topic: &str, data: Vec<u8>) {
        self.swarm
            .behaviour_mut()
            .publish(IdentTopic::new(topic), data)
            .expect("publish");
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                self.swarm.select_next_some().await;
            }
        })
        .await;
    }
}
