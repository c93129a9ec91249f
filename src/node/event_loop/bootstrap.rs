//! Bootstrap back-off: which bootstrap addresses to dial now, and what a failed or successful
//! dial does to each.
//!
//! A state machine with no I/O, handed the clock (as rust-libp2p's kad does): it answers with
//! the dials to make, and [`reach`](super::reach) makes them and reports back. Each address
//! keeps its own back-off, so one dead entry in the list neither holds up nor floods the
//! others.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// Below this many routing-table entries the node dials its bootstrap list again.
const ROUTING_LOW: usize = 4;
/// Backoff between attempts on one bootstrap address.
const BOOTSTRAP_MIN_BACKOFF: Duration = Duration::from_secs(10);
const BOOTSTRAP_MAX_BACKOFF: Duration = Duration::from_secs(300);

struct BootEntry {
    addr: Multiaddr,
    /// The peer this address reached last (from `/p2p/` or a successful dial).
    peer: Option<PeerId>,
    next_try: Instant,
    backoff: Duration,
}

/// A bootstrap address that is due: dial `addr` (as an unknown peer), and tell Kademlia about
/// `peer` first when it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BootDial {
    /// Which entry this is, to hand back to [`Bootstrap::dialing`] or [`Bootstrap::failed`].
    pub index: usize,
    pub addr: Multiaddr,
    pub peer: Option<PeerId>,
}

/// The bootstrap list with a back-off per address, and the dials in flight.
pub(super) struct Bootstrap {
    boot: Vec<BootEntry>,
    /// Bootstrap dials in flight: connection id → index into `boot`.
    dials: HashMap<ConnectionId, usize>,
}

impl Bootstrap {
    /// Every address is due at `now`; an address ending in `/p2p/<id>` starts with its peer
    /// known.
    pub fn new(bootstrap: &[Multiaddr], now: Instant) -> Self {
        Self {
            boot: bootstrap
                .iter()
                .map(|addr| BootEntry {
                    addr: addr.clone(),
                    peer: match addr.iter().last() {
                        Some(Protocol::P2p(p)) => Some(p),
                        _ => None,
                    },
                    next_try: now,
                    backoff: BOOTSTRAP_MIN_BACKOFF,
                })
                .collect(),
            dials: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.boot.is_empty()
    }

    /// Whether the node should dial its bootstrap list: it knows no live peer, or its routing
    /// table has fewer than `ROUTING_LOW` entries.
    pub fn routing_low(routing: usize, live: usize) -> bool {
        live == 0 || routing < ROUTING_LOW
    }

    /// The addresses to dial now: back-off elapsed, no dial already in flight, and not an
    /// address whose peer is connected (`connected` asks the swarm).
    pub fn due(&self, now: Instant, connected: impl Fn(&PeerId) -> bool) -> Vec<BootDial> {
        let mut due = Vec::new();
        for (i, entry) in self.boot.iter().enumerate() {
            if entry.next_try > now || self.dials.values().any(|j| *j == i) {
                continue;
            }
            if entry.peer.is_some_and(|p| connected(&p)) {
                continue;
            }
            due.push(BootDial {
                index: i,
                addr: entry.addr.clone(),
                peer: entry.peer,
            });
        }
        due
    }

    /// The dial for entry `index` started as connection `id`.
    pub fn dialing(&mut self, id: ConnectionId, index: usize) {
        self.dials.insert(id, index);
    }

    /// An attempt on entry `index` failed: wait its back-off, then double the back-off (up to
    /// `BOOTSTRAP_MAX_BACKOFF`).
    pub fn failed(&mut self, index: usize, now: Instant) {
        if let Some(entry) = self.boot.get_mut(index) {
            entry.next_try = now + entry.backoff;
            entry.backoff = (entry.backoff * 2).min(BOOTSTRAP_MAX_BACKOFF);
        }
    }

    /// Dial `id` failed. If it was a bootstrap dial, backs its entry off and returns the
    /// address, so the failure is reported once, with its address; other dials are not ours.
    pub fn dial_failed(&mut self, id: &ConnectionId, now: Instant) -> Option<Multiaddr> {
        let i = self.dials.remove(id)?;
        let addr = self.boot[i].addr.clone();
        self.failed(i, now);
        Some(addr)
    }

    /// Connection `id` came up with `peer`. If it was a bootstrap dial, the entry remembers the
    /// peer (so it is skipped while connected) and its back-off starts over.
    pub fn established(&mut self, id: &ConnectionId, peer: PeerId) {
        if let Some(i) = self.dials.remove(id) {
            if let Some(entry) = self.boot.get_mut(i) {
                entry.peer = Some(peer);
                entry.backoff = BOOTSTRAP_MIN_BACKOFF;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()
    }

    fn conn(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    fn nobody(_: &PeerId) -> bool {
        false
    }

    fn indices(due: &[BootDial]) -> Vec<usize> {
        due.iter().map(|d| d.index).collect()
    }

    /// Fails entry 0 through a real dial (start, then error), returning when it is due again.
    fn fail_once(b: &mut Bootstrap, id: usize, now: Instant) -> Instant {
        b.dialing(conn(id), 0);
        assert_eq!(b.dial_failed(&conn(id), now), Some(addr(1)));
        b.boot[0].next_try
    }

    #[test]
    fn every_address_is_due_at_start() {
        let now = Instant::now();
        let b = Bootstrap::new(&[addr(1), addr(2)], now);
        let due = b.due(now, nobody);
        assert_eq!(indices(&due), vec![0, 1]);
        assert_eq!(due[1].addr, addr(2));
        assert_eq!(due[1].peer, None);
    }

    #[test]
    fn a_p2p_suffix_names_the_peer() {
        let peer = PeerId::random();
        let with_id = addr(1).with_p2p(peer).unwrap();
        let b = Bootstrap::new(std::slice::from_ref(&with_id), Instant::now());
        let due = b.due(Instant::now(), nobody);
        assert_eq!(due[0].peer, Some(peer));
        assert_eq!(due[0].addr, with_id);
    }

    #[test]
    fn an_address_with_a_dial_in_flight_is_not_dialed_again() {
        let now = Instant::now();
        let mut b = Bootstrap::new(&[addr(1), addr(2)], now);
        b.dialing(conn(7), 0);
        assert_eq!(indices(&b.due(now, nobody)), vec![1]);
    }

    #[test]
    fn back_off_doubles_up_to_the_max() {
        let t0 = Instant::now();
        let mut b = Bootstrap::new(&[addr(1)], t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for id in 0..7 {
            let next = fail_once(&mut b, id, now);
            waits.push((next - now).as_secs());
            // Not due a moment before its time, due at it.
            assert!(b.due(next - Duration::from_millis(1), nobody).is_empty());
            assert_eq!(indices(&b.due(next, nobody)), vec![0]);
            now = next;
        }
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn a_dial_that_cannot_start_backs_off_too() {
        let now = Instant::now();
        let mut b = Bootstrap::new(&[addr(1)], now);
        b.failed(0, now);
        assert!(b.due(now + Duration::from_secs(9), nobody).is_empty());
        assert_eq!(
            indices(&b.due(now + BOOTSTRAP_MIN_BACKOFF, nobody)),
            vec![0]
        );
    }

    #[test]
    fn a_success_resets_the_back_off() {
        let t0 = Instant::now();
        let mut b = Bootstrap::new(&[addr(1)], t0);
        let mut now = t0;
        for id in 0..4 {
            now = fail_once(&mut b, id, now);
        }
        let peer = PeerId::random();
        b.dialing(conn(10), 0);
        b.established(&conn(10), peer);
        // The next failure waits the minimum again.
        let next = fail_once(&mut b, 11, now);
        assert_eq!(next - now, BOOTSTRAP_MIN_BACKOFF);
    }

    #[test]
    fn an_address_with_a_known_peer_is_skipped_while_connected() {
        let now = Instant::now();
        let mut b = Bootstrap::new(&[addr(1), addr(2)], now);
        let peer = PeerId::random();
        b.dialing(conn(1), 0);
        b.established(&conn(1), peer);
        assert_eq!(indices(&b.due(now, |p| *p == peer)), vec![1]);
        // Once the peer is gone, the address is dialed again, with the peer named.
        let due = b.due(now, nobody);
        assert_eq!(indices(&due), vec![0, 1]);
        assert_eq!(due[0].peer, Some(peer));
    }

    #[test]
    fn other_dials_are_not_bootstrap_dials() {
        let now = Instant::now();
        let mut b = Bootstrap::new(&[addr(1)], now);
        assert_eq!(b.dial_failed(&conn(3), now), None);
        b.established(&conn(3), PeerId::random());
        let due = b.due(now, nobody);
        assert_eq!(due[0].peer, None, "an unrelated connection names no peer");
    }

    #[test]
    fn a_reported_dial_is_forgotten() {
        let now = Instant::now();
        let mut b = Bootstrap::new(&[addr(1)], now);
        b.dialing(conn(1), 0);
        assert!(b.dial_failed(&conn(1), now).is_some());
        // A second report for the same connection is not a second failure.
        assert_eq!(b.dial_failed(&conn(1), now), None);
        assert_eq!(b.boot[0].backoff, BOOTSTRAP_MIN_BACKOFF * 2);
    }

    #[test]
    fn the_routing_table_is_low_when_alone_or_below_the_mark() {
        assert!(Bootstrap::routing_low(100, 0));
        assert!(Bootstrap::routing_low(ROUTING_LOW - 1, 5));
        assert!(!Bootstrap::routing_low(ROUTING_LOW, 5));
        assert!(Bootstrap::is_empty(&Bootstrap::new(&[], Instant::now())));
    }
}
