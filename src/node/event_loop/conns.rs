//! Connection bookkeeping for reachability: which open connections to each peer are direct and
//! which relayed, since when a peer has had a direct one, and when we last dialed a relayed
//! peer directly.
//!
//! The swarm knows its connections but not whether a peer is reachable without a relay, which
//! is what the direct-only rule for blocks and the relay clean-up need. No I/O; the clock is a
//! parameter, and [`reach`](super::reach) feeds it connection events and acts on its answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::PeerId;

/// A relayed connection is closed this long after a direct one to the same peer came up (the
/// grace lets requests already on it finish).
const RELAY_GRACE: Duration = Duration::from_secs(10);
/// Between two direct-dial attempts to the same relayed peer.
const DIRECT_DIAL_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Conns {
    /// Open connections per peer, and whether each is relayed.
    conns: HashMap<PeerId, HashMap<ConnectionId, bool>>,
    /// When each peer's first current direct connection came up.
    direct_since: HashMap<PeerId, Instant>,
    /// When each relayed peer was last dialed directly.
    direct_dialed: HashMap<PeerId, Instant>,
}

impl Conns {
    pub fn has_direct(&self, peer: &PeerId) -> bool {
        self.conns
            .get(peer)
            .is_some_and(|c| c.values().any(|relayed| !relayed))
    }

    pub fn has_relayed(&self, peer: &PeerId) -> bool {
        self.conns
            .get(peer)
            .is_some_and(|c| c.values().any(|relayed| *relayed))
    }

    /// Connected, but only through a relay: blocks cannot go to this peer yet.
    pub fn relay_only(&self, peer: &PeerId) -> bool {
        self.has_relayed(peer) && !self.has_direct(peer)
    }

    /// Connection `id` to `peer` came up at `now`. A direct one starts the relay grace if it is
    /// the peer's first current direct connection.
    pub fn opened(&mut self, peer: PeerId, id: ConnectionId, relayed: bool, now: Instant) {
        self.conns.entry(peer).or_default().insert(id, relayed);
        if !relayed {
            self.direct_since.entry(peer).or_insert(now);
        }
    }

    /// Connection `id` to `peer` closed. Returns whether the peer is now without a direct
    /// connection (also true when it had none before).
    pub fn closed(&mut self, peer: PeerId, id: ConnectionId) -> bool {
        if let Some(c) = self.conns.get_mut(&peer) {
            c.remove(&id);
            if c.is_empty() {
                self.conns.remove(&peer);
            }
        }
        if self.has_direct(&peer) {
            return false;
        }
        self.direct_since.remove(&peer);
        true
    }

    /// The relayed connections to close at `now`: those to peers that have had a direct
    /// connection for at least `RELAY_GRACE`. Asked every tick, so a close that has not taken
    /// effect yet is asked for again.
    pub fn replaced_relays(&self, now: Instant) -> Vec<ConnectionId> {
        let mut close = Vec::new();
        for (peer, since) in &self.direct_since {
            if now.duration_since(*since) < RELAY_GRACE {
                continue;
            }
            if let Some(c) = self.conns.get(peer) {
                close.extend(c.iter().filter(|(_, r)| **r).map(|(id, _)| *id));
            }
        }
        close
    }

    /// Whether to dial relayed `peer` directly at `now`: at most once per
    /// `DIRECT_DIAL_COOLDOWN`. A yes counts as the attempt.
    pub fn may_dial_direct(&mut self, peer: PeerId, now: Instant) -> bool {
        if self
            .direct_dialed
            .get(&peer)
            .is_some_and(|t| now.duration_since(*t) < DIRECT_DIAL_COOLDOWN)
        {
            return false;
        }
        // Only attempts inside the cooldown matter: drop the rest once the map grows, so
        // relayed peers that come and go cannot grow it without bound.
        if self.direct_dialed.len() >= DIRECT_DIALED_PRUNE {
            self.direct_dialed
                .retain(|_, t| now.duration_since(*t) < DIRECT_DIAL_COOLDOWN);
        }
        self.direct_dialed.insert(peer, now);
        true
    }
}

/// Size of the direct-dial map at which expired attempts are dropped.
const DIRECT_DIALED_PRUNE: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn conn(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    #[test]
    fn direct_and_relayed_are_told_apart_per_peer() {
        let now = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut c = Conns::default();
        assert!(!c.has_direct(&a) && !c.has_relayed(&a) && !c.relay_only(&a));
        c.opened(a, conn(1), true, now);
        assert!(c.relay_only(&a));
        assert!(
            !c.has_relayed(&b),
            "another peer's connection does not count"
        );
        c.opened(a, conn(2), false, now);
        assert!(c.has_direct(&a) && c.has_relayed(&a) && !c.relay_only(&a));
    }

    #[test]
    fn closing_the_last_direct_connection_is_reported() {
        let now = Instant::now();
        let peer = PeerId::random();
        let mut c = Conns::default();
        c.opened(peer, conn(1), false, now);
        c.opened(peer, conn(2), false, now);
        c.opened(peer, conn(3), true, now);
        assert!(
            !c.closed(peer, conn(1)),
            "another direct connection is left"
        );
        assert!(c.closed(peer, conn(2)));
        assert!(c.relay_only(&peer));
        assert!(c.closed(peer, conn(3)), "still without a direct connection");
        assert!(!c.has_relayed(&peer));
    }

    #[test]
    fn a_relayed_connection_is_closed_after_the_grace_of_a_direct_one() {
        let t0 = Instant::now();
        let peer = PeerId::random();
        let mut c = Conns::default();
        c.opened(peer, conn(1), true, t0);
        assert!(
            c.replaced_relays(t0 + RELAY_GRACE).is_empty(),
            "no direct one yet"
        );
        c.opened(peer, conn(2), false, t0 + SEC);
        // A second direct connection does not restart the grace.
        c.opened(peer, conn(3), false, t0 + 5 * SEC);
        assert!(c.replaced_relays(t0 + RELAY_GRACE).is_empty());
        assert_eq!(c.replaced_relays(t0 + SEC + RELAY_GRACE), vec![conn(1)]);
        // Losing every direct connection cancels it.
        c.closed(peer, conn(2));
        c.closed(peer, conn(3));
        assert!(c.replaced_relays(t0 + 60 * SEC).is_empty());
    }

    #[test]
    fn expired_direct_dial_attempts_are_forgotten() {
        let mut c = Conns::default();
        let start = Instant::now();
        for _ in 0..DIRECT_DIALED_PRUNE * 3 {
            assert!(c.may_dial_direct(PeerId::random(), start));
        }
        let later = start + DIRECT_DIAL_COOLDOWN + SEC;
        assert!(c.may_dial_direct(PeerId::random(), later));
        assert_eq!(
            c.direct_dialed.len(),
            1,
            "only the attempt inside the cooldown is kept"
        );
    }

    #[test]
    fn a_relayed_peer_is_dialed_directly_at_most_once_per_cooldown() {
        let now = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut c = Conns::default();
        assert!(c.may_dial_direct(a, now));
        assert!(!c.may_dial_direct(a, now + DIRECT_DIAL_COOLDOWN - SEC));
        assert!(c.may_dial_direct(b, now), "the cooldown is per peer");
        assert!(c.may_dial_direct(a, now + DIRECT_DIAL_COOLDOWN));
        assert!(!c.may_dial_direct(a, now + DIRECT_DIAL_COOLDOWN + SEC));
    }
}
