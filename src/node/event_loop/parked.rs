//! The direct-only rule for blocks, as bookkeeping: block requests parked until their peer is
//! reachable without a relay, the memory of peers for which that wait failed, and the block
//! requests handed to request-response that may never reach a connection.
//!
//! Blocks never travel over relays (a circuit carries at most `RELAY_CIRCUIT_BYTES` for a
//! bounded time, meant for record traffic), so a request for a peer we reach only through one
//! waits, bounded, for DCUtR or a direct dial. No I/O here and the clock is a parameter; [`reach`](super::reach) sends what is
//! released and fails what expires. Generic over the parked payload and the request id, so
//! tests need neither oneshots nor a swarm.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a block request waits for a direct connection to a peer reached only through a
/// relay (DCUtR makes up to three attempts, usually within a few seconds) before it fails.
/// Checked on the loop's 5 s tick, so a wait ends within 8-13 s: inside the access node's
/// 15 s per-holder bound, so the caller sees this error rather than a bare timeout.
const DIRECT_WAIT: Duration = Duration::from_secs(8);
/// After a wait for a direct connection failed, block requests to that peer fail at once for
/// this long (instead of each waiting `DIRECT_WAIT` again).
const NO_DIRECT_MEMORY: Duration = Duration::from_secs(60);

/// A request parked until the peer is reachable without a relay.
struct Entry<T> {
    item: T,
    deadline: Instant,
}

/// Requests waiting for a direct connection, per peer, and the peers a wait recently failed
/// for.
pub(super) struct Parked<T> {
    parked: HashMap<PeerId, Vec<Entry<T>>>,
    /// Peers a wait for a direct connection recently failed for.
    no_direct: HashMap<PeerId, Instant>,
}

impl<T> Default for Parked<T> {
    fn default() -> Self {
        Self {
            parked: HashMap::new(),
            no_direct: HashMap::new(),
        }
    }
}

impl<T> Parked<T> {
    /// A wait for a direct connection to `peer` failed recently: fail a new request at once
    /// rather than park it. The memory is pruned on [`expire`](Self::expire), so it lasts
    /// `NO_DIRECT_MEMORY` up to the next tick.
    pub fn fails_fast(&self, peer: &PeerId) -> bool {
        self.no_direct.contains_key(peer)
    }

    /// Parks `item` for `peer` until `now + DIRECT_WAIT`.
    pub fn park(&mut self, peer: PeerId, item: T, now: Instant) {
        self.parked.entry(peer).or_default().push(Entry {
            item,
            deadline: now + DIRECT_WAIT,
        });
    }

    /// A direct connection to `peer` came up: it is no longer "no direct", and its parked
    /// requests go out now, in the order they came.
    pub fn direct_up(&mut self, peer: &PeerId) -> Vec<T> {
        self.no_direct.remove(peer);
        self.parked
            .remove(peer)
            .map(|list| list.into_iter().map(|p| p.item).collect())
            .unwrap_or_default()
    }

    /// The requests whose wait is over at `now`, to be failed. Their peers are remembered as
    /// "no direct" from `now`; memories older than `NO_DIRECT_MEMORY` are dropped.
    pub fn expire(&mut self, now: Instant) -> Vec<(PeerId, T)> {
        let mut expired = Vec::new();
        for (peer, list) in self.parked.iter_mut() {
            let (gone, keep): (Vec<Entry<T>>, Vec<Entry<T>>) =
                list.drain(..).partition(|p| p.deadline <= now);
            *list = keep;
            expired.extend(gone.into_iter().map(|p| (*peer, p.item)));
        }
        self.parked.retain(|_, l| !l.is_empty());
        for (peer, _) in &expired {
            self.no_direct.insert(*peer, now);
        }
        self.no_direct
            .retain(|_, at| now.duration_since(*at) < NO_DIRECT_MEMORY);
        expired
    }
}

/// Block requests handed to request-response, with when. Request-response has no timer while
/// it waits for a dial, and a relayed connection never admits the block protocol, so a request
/// can sit there for ever; these are found and failed.
pub(super) struct InFlight<K> {
    sent: HashMap<K, Instant>,
}

impl<K> Default for InFlight<K> {
    fn default() -> Self {
        Self {
            sent: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Copy> InFlight<K> {
    pub fn sent(&mut self, id: K, now: Instant) {
        self.sent.insert(id, now);
    }

    /// A response or a failure came back for `id`.
    pub fn done(&mut self, id: &K) {
        self.sent.remove(id);
    }

    /// The requests sent more than the block timeout plus `DIRECT_WAIT` before `now`: they
    /// never reached a connection. Forgotten here; the caller fails them.
    pub fn stale(&mut self, now: Instant) -> Vec<K> {
        let limit = crate::net::BLOCK_TIMEOUT + DIRECT_WAIT;
        let stale: Vec<K> = self
            .sent
            .iter()
            .filter(|(_, at)| now.duration_since(**at) > limit)
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            self.sent.remove(id);
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_direct_connection_releases_the_parked_requests_in_order() {
        let now = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut p = Parked::default();
        p.park(a, 1, now);
        p.park(b, 2, now);
        p.park(a, 3, now + SEC);
        assert_eq!(p.direct_up(&a), vec![1, 3]);
        assert!(p.direct_up(&a).is_empty(), "released once");
        // The other peer's request still waits, and expires on its own.
        assert_eq!(p.expire(now + DIRECT_WAIT), vec![(b, 2)]);
    }

    #[test]
    fn a_request_expires_at_its_deadline_not_before() {
        let now = Instant::now();
        let peer = PeerId::random();
        let mut p = Parked::default();
        p.park(peer, "early", now);
        p.park(peer, "late", now + 2 * SEC);
        assert!(p.expire(now + DIRECT_WAIT - SEC).is_empty());
        assert!(!p.fails_fast(&peer), "nothing has failed yet");
        assert_eq!(p.expire(now + DIRECT_WAIT), vec![(peer, "early")]);
        assert_eq!(p.expire(now + DIRECT_WAIT + 2 * SEC), vec![(peer, "late")]);
        assert!(p.direct_up(&peer).is_empty(), "an expired request is gone");
    }

    #[test]
    fn an_expired_wait_makes_later_requests_fail_fast() {
        let now = Instant::now();
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut p = Parked::default();
        p.park(peer, (), now);
        let failed_at = now + DIRECT_WAIT;
        assert_eq!(p.expire(failed_at).len(), 1);
        assert!(p.fails_fast(&peer));
        assert!(!p.fails_fast(&other));
        // Remembered for NO_DIRECT_MEMORY, then forgotten on the next expiry pass.
        p.expire(failed_at + NO_DIRECT_MEMORY - SEC);
        assert!(p.fails_fast(&peer));
        p.expire(failed_at + NO_DIRECT_MEMORY);
        assert!(!p.fails_fast(&peer));
    }

    #[test]
    fn a_direct_connection_clears_the_no_direct_memory() {
        let now = Instant::now();
        let peer = PeerId::random();
        let mut p = Parked::default();
        p.park(peer, (), now);
        p.expire(now + DIRECT_WAIT);
        assert!(p.fails_fast(&peer));
        assert!(p.direct_up(&peer).is_empty());
        assert!(!p.fails_fast(&peer));
    }

    #[test]
    fn a_request_in_flight_goes_stale_after_the_block_timeout_and_the_wait() {
        let now = Instant::now();
        let limit = crate::net::BLOCK_TIMEOUT + DIRECT_WAIT;
        let mut f = InFlight::default();
        f.sent(1u64, now);
        f.sent(2, now + SEC);
        f.sent(3, now);
        f.done(&3);
        assert!(
            f.stale(now + limit).is_empty(),
            "at the limit is not past it"
        );
        assert_eq!(f.stale(now + limit + SEC / 2), vec![1]);
        assert!(f.stale(now + limit + SEC / 2).is_empty(), "reported once");
        assert_eq!(f.stale(now + limit + 2 * SEC), vec![2]);
    }
}
