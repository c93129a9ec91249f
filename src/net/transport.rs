//! Builds a `Swarm` with the transports every swarmstore peer uses: TCP (optionally behind a
//! private-network pre-shared key), QUIC (public swarms only), DNS, the relay client, and
//! libp2p's bandwidth metrics. Nodes and clients share it so both speak the same stack.
//!
//! Why QUIC is off in private swarms: libp2p's pnet wraps a byte stream before Noise, which
//! only TCP has; QUIC does its own TLS handshake and would let any peer in regardless of the key.
//! So with a swarm key a node neither listens on nor dials QUIC addresses.

use std::time::Duration;

use futures::future::Either;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{OptionalTransport, Transport};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::metrics::Registry;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{noise, quic, relay, tcp, yamux, Swarm};

use super::TransportError;

/// How long a TCP connection may take from socket to multiplexer. Also how long a dial to a
/// peer with another swarm key takes to fail: pnet has no key check of its own, the two sides
/// just read each other's scrambled bytes until this runs out.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams open at once on one connection. Each of our request-response protocols allows
/// [`super::MAX_STREAMS_PER_PROTOCOL`]; the rest is for Kademlia, identify, ping, gossipsub
/// and relay/DCUtR. Yamux's default of 512, each with a 256 KiB receive window, let one
/// connection make a node buffer 128 MiB that no reader had asked for.
pub const MAX_STREAMS_PER_CONNECTION: usize = 128;

/// Yamux with [`MAX_STREAMS_PER_CONNECTION`].
pub fn yamux_config() -> yamux::Config {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    c
}

/// Builds a swarm whose behaviour `make` composes from the key and the relay client.
/// `registry` receives libp2p's bandwidth metrics.
pub fn build_swarm<B, F>(
    key: Keypair,
    swarm_key: Option<PreSharedKey>,
    registry: &mut Registry,
    idle_timeout: Duration,
    make: F,
) -> Result<Swarm<B>, TransportError>
where
    B: NetworkBehaviour,
    F: FnOnce(&Keypair, relay::client::Behaviour) -> Result<B, TransportError>,
{
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                let noise = noise::Config::new(key)?;
                Ok(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .and_then(move |socket, _| async move {
                            match swarm_key {
                                Some(psk) => PnetConfig::new(psk)
                                    .handshake(socket)
                                    .await
                                    .map(Either::Left),
                                None => Ok(Either::Right(socket)),
                            }
                        })
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux_config())
                        .timeout(UPGRADE_TIMEOUT),
                )
            },
        )
        .map_err(|e| TransportError::setup("TCP", e))?
        .with_other_transport(|key| {
            // QUIC already caps what a connection may have in flight (15 MB by default).
            let mut config = quic::Config::new(key);
            config.max_concurrent_stream_limit = MAX_STREAMS_PER_CONNECTION as u32;
            let quic = quic::tokio::Transport::new(config)
                .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)));
            if swarm_key.is_some() {
                OptionalTransport::none()
            } else {
                OptionalTransport::some(quic)
            }
        })
        .map_err(|e| TransportError::setup("QUIC", e))?
        .with_dns()
        .map_err(|e| TransportError::setup("DNS", e))?
        .with_relay_client(noise::Config::new, yamux_config)
        .map_err(|e| TransportError::setup("the relay client", e))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay| make(key, relay).map_err(Into::into))
        .map_err(|e| TransportError::setup("the behaviour", e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
        .build();
    Ok(swarm)
}

/// Reads a swarm key file in the standard `/key/swarm/psk/1.0.0/` format (as written by
/// `ipfs-swarm-key-gen` and `swarmstore swarm-key`).
pub fn read_swarm_key(path: &std::path::Path) -> Result<PreSharedKey, TransportError> {
    let bad = |reason: String| TransportError::SwarmKey {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    // libp2p's parser slices the key line by bytes and panics inside a multi-byte character.
    if !text.is_ascii() {
        return Err(bad(
            "not a swarm key (non-ASCII text); expected three lines: /key/swarm/psk/1.0.0/, /base16/, 64 hex digits".into(),
        ));
    }
    text.parse::<PreSharedKey>().map_err(|e| {
        bad(format!(
            "not a swarm key ({e}); expected three lines: /key/swarm/psk/1.0.0/, /base16/, 64 hex digits"
        ))
    })
}

/// A fresh random swarm key, in the key file format.
pub fn new_swarm_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    PreSharedKey::new(bytes).to_key_file()
}
