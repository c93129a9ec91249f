//! Relay listeners: the circuit addresses the operator configured (kept open), the one relay
//! picked automatically behind NAT (auto-relay), and the relay-capable peers to pick from.
//!
//! Bookkeeping only: it says which circuits to (re-)open, and [`reach`](super::reach) calls
//! `listen_on` and reports each listener back. No clock is needed: re-opening is driven by the
//! loop's tick and by relays connecting.

use std::collections::HashMap;

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::super::nat::Reachability;

#[derive(Default)]
pub(super) struct Relays {
    /// Peers offering the relay hop protocol, with a direct address: for auto-relay.
    candidates: HashMap<PeerId, Multiaddr>,
    /// Relays we listen through (auto-relay), by listener.
    auto: HashMap<ListenerId, PeerId>,
    /// Circuit addresses the operator asked to listen on, by listener; re-opened when they
    /// close (libp2p closes one at once if its dial to the relay raced another dial).
    configured: HashMap<ListenerId, Multiaddr>,
    /// Configured circuit addresses waiting to be re-opened.
    retry: Vec<Multiaddr>,
}

/// A relay listener closed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Closed {
    /// One the operator configured: it waits to be re-opened (at once if `relay` is directly
    /// connected).
    Configured {
        addr: Multiaddr,
        relay: Option<PeerId>,
    },
    /// The auto-relay listener through `relay`: that relay is no longer a candidate.
    Auto(PeerId),
}

impl Relays {
    /// The operator's circuit listeners, already opened.
    pub fn listening_through(&mut self, listeners: Vec<(ListenerId, Multiaddr)>) {
        self.configured.extend(listeners);
    }

    pub fn has_retry(&self) -> bool {
        !self.retry.is_empty()
    }

    /// Takes the configured circuits to re-open now: all that wait, or only those through
    /// `relay` (just connected). Each is handed back with [`reopened`](Self::reopened) or
    /// [`retry_later`](Self::retry_later).
    pub fn take_retry(&mut self, relay: Option<PeerId>) -> Vec<Multiaddr> {
        let waiting = std::mem::take(&mut self.retry);
        let (now, later): (Vec<Multiaddr>, Vec<Multiaddr>) = waiting
            .into_iter()
            .partition(|addr| relay.is_none() || relay_of(addr) == relay);
        self.retry = later;
        now
    }

    /// A configured circuit is listening again, as `id`.
    pub fn reopened(&mut self, id: ListenerId, addr: Multiaddr) {
        self.configured.insert(id, addr);
    }

    /// A configured circuit could not be re-opened; it waits for the next try.
    pub fn retry_later(&mut self, addr: Multiaddr) {
        self.retry.push(addr);
    }

    /// Identify says `peer`, directly connected, offers the relay hop protocol at `addr`.
    pub fn candidate(&mut self, peer: PeerId, addr: Multiaddr) {
        self.candidates.insert(peer, addr);
    }

    /// The circuit to listen through automatically, if any: only when not publicly reachable
    /// (`reachability` is private) and no relay listener exists or is being re-opened, auto or
    /// configured. The relay and its circuit address.
    pub fn auto_relay(&self, reachability: Reachability) -> Option<(PeerId, Multiaddr)> {
        if reachability != Reachability::Private
            || !self.auto.is_empty()
            || !self.configured.is_empty()
            || !self.retry.is_empty()
        {
            return None;
        }
        let (relay, addr) = self.candidates.iter().next()?;
        let circuit = addr
            .clone()
            .with_p2p(*relay)
            .unwrap_or_else(|a| a)
            .with(Protocol::P2pCircuit);
        Some((*relay, circuit))
    }

    /// Listening through `relay` automatically, as `id`.
    pub fn auto_listening(&mut self, id: ListenerId, relay: PeerId) {
        self.auto.insert(id, relay);
    }

    /// `relay` could not be listened through: do not pick it again.
    pub fn drop_candidate(&mut self, relay: &PeerId) {
        self.candidates.remove(relay);
    }

    /// Listener `id` closed. A configured circuit is queued to be re-opened; an auto-relay
    /// listener drops its relay from the candidates. `None` for listeners that are not ours.
    pub fn listener_closed(&mut self, id: ListenerId) -> Option<Closed> {
        if let Some(addr) = self.configured.remove(&id) {
            let relay = relay_of(&addr);
            self.retry.push(addr.clone());
            return Some(Closed::Configured { addr, relay });
        }
        let relay = self.auto.remove(&id)?;
        self.candidates.remove(&relay);
        Some(Closed::Auto(relay))
    }
}

/// The relay in a circuit address: the peer id just before `/p2p-circuit`.
fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => last = Some(peer),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_addr() -> Multiaddr {
        "/ip4/10.0.0.9/tcp/4001".parse().unwrap()
    }

    fn circuit(relay: PeerId) -> Multiaddr {
        relay_addr()
            .with_p2p(relay)
            .unwrap()
            .with(Protocol::P2pCircuit)
    }

    #[test]
    fn the_relay_of_a_circuit_is_the_peer_before_p2p_circuit() {
        let (relay, target) = (PeerId::random(), PeerId::random());
        assert_eq!(relay_of(&circuit(relay)), Some(relay));
        let full = circuit(relay).with_p2p(target).unwrap();
        assert_eq!(relay_of(&full), Some(relay));
        assert_eq!(relay_of(&relay_addr().with_p2p(target).unwrap()), None);
    }

    #[test]
    fn a_closed_configured_listener_is_re_opened_through_its_relay() {
        let (r1, r2) = (PeerId::random(), PeerId::random());
        let (l1, l2) = (ListenerId::next(), ListenerId::next());
        let mut r = Relays::default();
        r.listening_through(vec![(l1, circuit(r1)), (l2, circuit(r2))]);
        assert_eq!(
            r.listener_closed(l1),
            Some(Closed::Configured {
                addr: circuit(r1),
                relay: Some(r1)
            })
        );
        r.listener_closed(l2);
        // The first relay connects: only its circuit is re-opened.
        assert_eq!(r.take_retry(Some(r1)), vec![circuit(r1)]);
        assert!(r.has_retry());
        // It fails again and waits with the other for the periodic retry of all.
        r.retry_later(circuit(r1));
        let mut all = r.take_retry(None);
        all.sort();
        let mut want = vec![circuit(r1), circuit(r2)];
        want.sort();
        assert_eq!(all, want);
        assert!(!r.has_retry());
        // Re-opened, it is configured again and closes the same way.
        let l3 = ListenerId::next();
        r.reopened(l3, circuit(r1));
        assert!(matches!(
            r.listener_closed(l3),
            Some(Closed::Configured { .. })
        ));
    }

    #[test]
    fn auto_relay_only_when_private_and_without_a_relay_listener() {
        let relay = PeerId::random();
        let mut r = Relays::default();
        assert_eq!(r.auto_relay(Reachability::Private), None, "no candidate");
        r.candidate(relay, relay_addr());
        assert_eq!(r.auto_relay(Reachability::Public), None);
        assert_eq!(r.auto_relay(Reachability::Unknown), None);
        assert_eq!(
            r.auto_relay(Reachability::Private),
            Some((relay, circuit(relay)))
        );
        let id = ListenerId::next();
        r.auto_listening(id, relay);
        assert_eq!(
            r.auto_relay(Reachability::Private),
            None,
            "one relay is enough"
        );
        // Its listener closes: that relay is not picked again.
        assert_eq!(r.listener_closed(id), Some(Closed::Auto(relay)));
        assert_eq!(r.auto_relay(Reachability::Private), None);
        assert_eq!(r.listener_closed(ListenerId::next()), None, "not ours");
    }

    #[test]
    fn a_configured_relay_or_one_waiting_to_re_open_rules_out_auto_relay() {
        let (configured, candidate) = (PeerId::random(), PeerId::random());
        let id = ListenerId::next();
        let mut r = Relays::default();
        r.candidate(candidate, relay_addr());
        r.listening_through(vec![(id, circuit(configured))]);
        assert_eq!(r.auto_relay(Reachability::Private), None);
        r.listener_closed(id);
        assert_eq!(
            r.auto_relay(Reachability::Private),
            None,
            "waiting to re-open"
        );
        r.take_retry(None);
        assert!(r.auto_relay(Reachability::Private).is_some());
        r.drop_candidate(&candidate);
        assert_eq!(r.auto_relay(Reachability::Private), None);
    }
}
