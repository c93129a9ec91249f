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
        // `localhost` and its subdomains always resolve to loopback (RFC 6761). A peer that
        // dialed us as /dns4/localhost reached us over loopback, and its loopback listen
        // addresses are the ones to keep (they were dropped, and the DHT learned nothing).
        Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) | Protocol::Dnsaddr(h) => {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            h == "localhost" || h.ends_with(".localhost")
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_loopback_and_other_names_are_not() {
        for a in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip6/::1/tcp/1",
            "/dns4/localhost/tcp/1",
            "/dns/LOCALHOST./tcp/1",
            "/dns6/node1.localhost/tcp/1",
        ] {
            assert!(is_loopback(&a.parse().unwrap()), "{a}");
        }
        for a in [
            "/ip4/10.0.0.1/tcp/1",
            "/dns4/node1/tcp/1",
            "/dns4/localhost.example.com/tcp/1",
            "/dns4/notlocalhost/tcp/1",
        ] {
            assert!(!is_loopback(&a.parse().unwrap()), "{a}");
        }
    }
}
