//! The node's view of other storage peers: who is connected, who is known dead, their points
//! in the key space and addresses.
//!
//! The event loop is the only writer; request handlers read snapshots to pick replica sets and
//! block holders without a round trip through the loop. Locks are std locks held for a few
//! map operations, never across an `.await`.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Instant;

use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use crate::ids::peer_point;
use crate::placement::Candidate;

#[derive(Clone, Debug)]
pub struct PeerState {
    pub point: [u8; 32],
    pub addrs: Vec<Multiaddr>,
    pub connections: usize,
    /// Confirmed to be a storage node of our swarm (speaks our Kademlia protocol).
    pub storage: bool,
    /// Set when a connection failed or a request could not reach it; cleared on reconnect.
    pub down_since: Option<Instant>,
    pub last_seen: Instant,
    /// Free storage it last reported, if any.
    pub free: Option<u64>,
    /// IP addresses we saw it connect from or reached it at: the only ones its advertised
    /// addresses may point to (so a peer cannot make us or our clients dial other hosts).
    pub ips: Vec<IpAddr>,
}

/// IPs remembered per peer.
const MAX_IPS: usize = 4;
/// Peers remembered at most. A peer that is not a storage node (a client, a stranger) is
/// forgotten when its last connection closes; storage peers are kept while down, since key
/// windows count them, but anyone can make fresh ids that speak our protocols, so past this
/// the unconnected ones longest out of touch go (down to 7/8). Connected peers are never
/// evicted: the connection limits bound them.
const MAX_PEERS: usize = 16_384;

/// The first IP of an address, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The relay a circuit address goes through (`.../p2p/RELAY/p2p-circuit...`).
fn relay_in(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => last = Some(id),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

pub struct PeerTable {
    local: PeerId,
    local_point: [u8; 32],
    inner: RwLock<HashMap<PeerId, PeerState>>,
}

impl PeerTable {
    pub fn new(local: PeerId) -> Self {
        Self {
            local,
            local_point: peer_point(&local),
            inner: RwLock::new(HashMap::new()),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PeerId, PeerState>> {
        // Entries are replaced whole; a poisoned lock holds consistent data.
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PeerId, PeerState>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn entry<R>(&self, peer: PeerId, f: impl FnOnce(&mut PeerState) -> R) -> R {
        let mut map = self.write();
        if map.len() >= MAX_PEERS && !map.contains_key(&peer) {
            evict_unconnected(&mut map);
        }
        let st = map.entry(peer).or_insert_with(|| PeerState {
            point: peer_point(&peer),
            addrs: Vec::new(),
            connections: 0,
            storage: false,
            down_since: None,
            last_seen: Instant::now(),
            free: None,
            ips: Vec::new(),
        });
        f(st)
    }

    /// A peer confirmed as one of our storage nodes, with addresses to reach it.
    pub fn storage_peer(&self, peer: PeerId, addrs: &[Multiaddr]) {
        if peer == self.local {
            return;
        }
        self.entry(peer, |st| {
            st.storage = true;
            for a in addrs {
                if !st.addrs.contains(a) {
                    st.addrs.push(a.clone());
                }
            }
            st.addrs.truncate(8);
        });
    }

    /// A connection to `peer` came up, with `remote` the address of its other end.
    pub fn connected(&self, peer: PeerId, remote: &Multiaddr) {
        self.entry(peer, |st| {
            st.connections += 1;
            st.down_since = None;
            st.last_seen = Instant::now();
            if let Some(ip) = ip_of(remote) {
                if !st.ips.contains(&ip) {
                    st.ips.push(ip);
                    // The oldest go first: a peer moves, a list must not grow.
                    if st.ips.len() > MAX_IPS {
                        st.ips.remove(0);
                    }
                }
            }
        });
    }

    /// A connection closed; `failed` when it closed on an error rather than by idling out.
    pub fn disconnected(&self, peer: PeerId, remaining: usize, failed: bool) {
        let mut map = self.write();
        let Some(st) = map.get_mut(&peer) else {
            return;
        };
        st.connections = remaining;
        if remaining > 0 {
            return;
        }
        if !st.storage {
            // A client or a stranger: nothing of it is needed once it is gone, and keeping
            // it would let anyone grow this table by connecting under fresh ids.
            map.remove(&peer);
        } else if failed {
            tracing::debug!(%peer, "last connection failed: down");
            st.down_since.get_or_insert_with(Instant::now);
        }
    }

    /// Peers remembered now.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// We could not reach the peer (dial failure, failed ping, request without connection).
    pub fn unreachable(&self, peer: PeerId) {
        if peer == self.local {
            return;
        }
        let mut map = self.write();
        if let Some(st) = map.get_mut(&peer) {
            if st.connections == 0 {
                tracing::debug!(%peer, "unreachable: down");
                st.down_since.get_or_insert_with(Instant::now);
            }
        }
    }

    /// The peer stopped answering on a connection we still hold (pings time out on a silent
    /// link): down now, whatever its connection count, until it connects again.
    pub fn mark_down(&self, peer: PeerId) {
        if peer == self.local {
            return;
        }
        let mut map = self.write();
        if let Some(st) = map.get_mut(&peer) {
            st.connections = 0;
            st.down_since.get_or_insert_with(Instant::now);
        }
    }

    pub fn set_free(&self, peer: PeerId, free: u64) {
        self.entry(peer, |st| st.free = Some(free));
    }

    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.read().get(peer).is_some_and(|s| s.connections > 0)
    }

    pub fn is_live(&self, peer: &PeerId) -> bool {
        *peer == self.local
            || self
                .read()
                .get(peer)
                .is_some_and(|s| s.storage && s.down_since.is_none())
    }

    /// The addresses of `peer` we will dial or hand to clients: those it advertised whose IP
    /// we have seen it at (for a relayed address, the relay's IP we have seen the relay at).
    pub fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let map = self.read();
        let Some(st) = map.get(peer) else {
            return Vec::new();
        };
        st.addrs
            .iter()
            .filter(|a| {
                let Some(ip) = ip_of(a) else { return false };
                match relay_in(a) {
                    Some(relay) => map.get(&relay).is_some_and(|r| r.ips.contains(&ip)),
                    None => st.ips.contains(&ip),
                }
            })
            .cloned()
            .collect()
    }

    /// Live storage peers other than ourselves.
    pub fn live_peers(&self) -> Vec<PeerId> {
        self.read()
            .iter()
            .filter(|(_, s)| s.storage && s.down_since.is_none())
            .map(|(p, _)| *p)
            .collect()
    }

    /// Live storage peers, plus ourselves unless we are leaving, as placement candidates.
    pub fn candidates(&self, local_free: Option<u64>, include_local: bool) -> Vec<Candidate> {
        let map = self.read();
        let mut out: Vec<Candidate> = map
            .iter()
            .filter(|(_, s)| s.storage && s.down_since.is_none())
            .map(|(p, s)| Candidate {
                peer: *p,
                point: s.point,
                free: s.free,
            })
            .collect();
        if include_local {
            out.push(Candidate {
                peer: self.local,
                point: self.local_point,
                free: local_free,
            });
        }
        out
    }

    /// Every storage peer we know, live or down, as placement candidates (the key windows of
    /// `Ctx::key_window`).
    pub fn known_storage(&self) -> Vec<Candidate> {
        self.read()
            .iter()
            .filter(|(_, s)| s.storage)
            .map(|(p, s)| Candidate {
                peer: *p,
                point: s.point,
                free: s.free,
            })
            .collect()
    }

    pub fn snapshot(&self) -> Vec<(PeerId, PeerState)> {
        self.read().iter().map(|(p, s)| (*p, s.clone())).collect()
    }
}

/// Forgets the unconnected peers that connected least lately until the table is at 7/8 of
/// [`MAX_PEERS`]: a down storage peer forgotten only leaves key windows until it connects
/// again.
fn evict_unconnected(map: &mut HashMap<PeerId, PeerState>) {
    let keep = MAX_PEERS - MAX_PEERS / 8;
    let mut idle: Vec<(Instant, PeerId)> = map
        .iter()
        .filter(|(_, s)| s.connections == 0)
        .map(|(p, s)| (s.last_seen, *p))
        .collect();
    idle.sort();
    let excess = map.len().saturating_sub(keep);
    for (_, p) in idle.into_iter().take(excess) {
        map.remove(&p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/4001").parse().expect("addr")
    }

    #[test]
    fn a_client_is_forgotten_when_it_leaves_and_a_storage_peer_is_kept_down() {
        let t = PeerTable::new(PeerId::random());
        let (client, storage) = (PeerId::random(), PeerId::random());
        t.connected(client, &addr("10.0.0.1"));
        t.connected(storage, &addr("10.0.0.2"));
        t.storage_peer(storage, &[addr("10.0.0.2")]);
        assert_eq!(t.len(), 2);
        t.disconnected(client, 0, false);
        t.disconnected(storage, 0, true);
        assert_eq!(t.len(), 1, "the client is gone");
        assert!(!t.is_live(&storage), "the storage peer is down");
        assert_eq!(t.known_storage().len(), 1, "and still known");
        // A close for a peer never seen adds nothing.
        t.disconnected(PeerId::random(), 0, true);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_flood_of_fresh_ids_keeps_the_table_bounded_and_the_connected() {
        let t = PeerTable::new(PeerId::random());
        let honest = PeerId::random();
        t.connected(honest, &addr("10.0.0.9"));
        t.storage_peer(honest, &[addr("10.0.0.9")]);
        // Fresh ids that claim to be storage peers and go quiet: they are kept while down.
        for _ in 0..MAX_PEERS + 100 {
            let p = PeerId::random();
            t.connected(p, &addr("10.0.0.3"));
            t.storage_peer(p, &[addr("10.0.0.3")]);
            t.disconnected(p, 0, true);
            assert!(t.len() <= MAX_PEERS);
        }
        assert!(t.is_live(&honest), "a connected peer is never evicted");
    }
}
