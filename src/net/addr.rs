//! Address helpers: which multiaddrs are relayed, QUIC or loopback, and which one a local
//! client should dial.

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

/// Whether an address goes through a relay (`/p2p-circuit`).
pub fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// Whether an address is QUIC (unusable in a private swarm).
pub fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

pub fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// The address a local CLI should use: loopback TCP if we listen on it, else any TCP, else any.
pub fn preferred_addr(addrs: &[Multiaddr]) -> Option<Multiaddr> {
    let is_tcp = |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::Tcp(_)));
    addrs
        .iter()
        .find(|a| is_tcp(a) && is_loopback(a))
        .or_else(|| addrs.iter().find(|a| is_tcp(a)))
        .or_else(|| addrs.first())
        .cloned()
}
