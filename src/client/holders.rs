//! Which holder serves each block of a read, and how long a reader waits for it.
//!
//! Blocks are striped across their holders by expected finish time: a holder's cost is its
//! requests in flight from this client plus one, times its own measured block time, so a
//! fast holder takes more of the file and a loaded one (slower answers, whoever loads it)
//! takes less. The access node's ranking reflects the swarm's load reports and the
//! balancer's decisions (the less loaded holders first, extra replicas included), so it decides
//! among holders whose block times are within [`TIE_FACTOR`] of the fastest: a reader's own
//! measurements override the swarm's view only when they differ clearly, and a holder
//! never measured is assumed to be as fast as the usual one, so a new replica gets tried.
//! A request that runs well past the usual block time is hedged to another holder, and the
//! overdue holder is tried last until it answers again (or [`SLOW_FOR`] passes), so a holder
//! that stalls mid-transfer loses its share at once. A holder that failed (error, timeout, wrong bytes)
//! is tried last for a while ([`DEMOTE_FOR`]). A lying or stalled holder costs a reader one
//! short wait, not one per block.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// How long a holder that failed a read stays at the back of the order.
pub const DEMOTE_FOR: Duration = Duration::from_secs(60);
/// Bounds on the wait for one block from one holder.
const MIN_PATIENCE: Duration = Duration::from_secs(2);
const MAX_PATIENCE: Duration = Duration::from_secs(15);
/// Wait this many times the usual block time before giving up on a holder.
const PATIENCE_FACTOR: u32 = 8;
/// Ask a second holder once a request has taken this many times the usual block time.
const HEDGE_FACTOR: u32 = 4;
/// Never hedge sooner than this: on a busy machine block times jitter by tens of ms, and a
/// hedge costs a second copy of the block on the wire.
const MIN_HEDGE: Duration = Duration::from_millis(200);
/// How long a holder that was overdue (hedged or overtaken) is tried last unless it answers:
/// long enough to route a transfer around a stall, short enough that a holder slowed by a
/// moment's jitter is soon back in the stripe.
const SLOW_FOR: Duration = Duration::from_secs(20);
/// Block time assumed for a holder never measured while nothing has been (only ratios
/// between holders matter); once any block arrived, an unmeasured holder is assumed usual.
const UNMEASURED: Duration = Duration::from_millis(10);
/// Block times within this factor of the fastest holder's count as equal, so list order
/// picks among equally loaded holders: measured jitter on a busy machine is often 1.3x, and
/// it must not override the swarm's ranking.
const TIE_FACTOR: f64 = 1.5;
/// Holders remembered at most (demoted, or with a measured block time).
const MAX_TRACKED: usize = 4096;
/// Blocks in flight per distinct holder of a file, and bounds on the whole window: enough
/// to keep every holder's pipe full, bounded so a get holds at most `MAX_WINDOW` blocks.
const DEPTH_PER_HOLDER: usize = 4;
const MIN_WINDOW: usize = 8;
const MAX_WINDOW: usize = 24;

#[derive(Default)]
struct Holder {
    in_flight: u32,
    /// Smoothed time this holder took per block (EWMA), once measured.
    block_time: Option<Duration>,
    /// When it was last overdue (a request hedged or overtaken), unless it answered since.
    slow: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    demoted: HashMap<PeerId, Instant>,
    holders: HashMap<PeerId, Holder>,
    /// Smoothed time to fetch one block from anyone (EWMA), once any block arrived.
    usual: Option<Duration>,
}

impl Inner {
    /// Failed lately, or overdue lately without having answered since: tried last.
    fn shunned(&self, peer: &PeerId) -> bool {
        self.demoted.contains_key(peer)
            || self
                .holders
                .get(peer)
                .and_then(|h| h.slow)
                .is_some_and(|at| at.elapsed() < SLOW_FOR)
    }

    /// The measured block time of `peer`, or the usual one if it was never measured.
    fn block_time(&self, peer: &PeerId) -> Duration {
        let usual = self.usual.unwrap_or(UNMEASURED);
        self.holders
            .get(peer)
            .and_then(|h| h.block_time)
            .unwrap_or(usual)
    }

    /// Expected time until a new request to `peer` is answered: its block time, counted as
    /// `fastest` when within [`TIE_FACTOR`] of it, times its requests in flight plus one.
    fn cost(&self, peer: &PeerId, fastest: Duration) -> Duration {
        let time = self.block_time(peer);
        let time = if time < fastest.mul_f64(TIE_FACTOR) {
            fastest
        } else {
            time
        };
        let in_flight = self.holders.get(peer).map_or(0, |h| h.in_flight);
        time.saturating_mul(in_flight.saturating_add(1))
    }

    fn holder(&mut self, peer: PeerId) -> &mut Holder {
        if self.holders.len() >= MAX_TRACKED && !self.holders.contains_key(&peer) {
            self.holders.retain(|_, h| h.in_flight > 0);
        }
        self.holders.entry(peer).or_default()
    }
}

#[derive(Default)]
pub(super) struct HolderOrder {
    inner: Mutex<Inner>,
}

/// One request in flight to one holder; dropping it (served, failed, or cancelled because
/// another holder answered first) ends the request's share of the holder's load.
pub(super) struct Lease<'a> {
    order: &'a HolderOrder,
    peer: PeerId,
    started: Instant,
    done: bool,
}

impl Lease<'_> {
    pub(super) fn peer(&self) -> PeerId {
        self.peer
    }

    /// The block arrived, verified.
    pub(super) fn served(mut self) {
        self.done = true;
        let took = self.started.elapsed();
        let mut inner = self.order.lock();
        inner.usual = Some(match inner.usual {
            None => took,
            Some(u) => (u * 7 + took) / 8,
        });
        let h = inner.holder(self.peer);
        h.in_flight = h.in_flight.saturating_sub(1);
        h.slow = None;
        h.block_time = Some(match h.block_time {
            None => took,
            Some(t) => (t * 3 + took) / 4,
        });
    }

    /// Error, timeout or wrong bytes: the holder goes to the back for a while.
    pub(super) fn failed(mut self) {
        self.done = true;
        let mut inner = self.order.lock();
        let h = inner.holder(self.peer);
        h.in_flight = h.in_flight.saturating_sub(1);
        if inner.demoted.len() >= MAX_TRACKED {
            inner.demoted.clear();
        }
        inner.demoted.insert(self.peer, Instant::now());
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut inner = self.order.lock();
        let h = inner.holder(self.peer);
        h.in_flight = h.in_flight.saturating_sub(1);
    }
}

impl HolderOrder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The holder to ask next among `listed` (in the access node's order), skipping `tried`:
    /// holders neither failed nor overdue lately first, then the lowest expected finish time
    /// (block times within [`TIE_FACTOR`] of the fastest counting as equal), then list order.
    pub(super) fn pick(&self, listed: &[PeerId], tried: &[PeerId]) -> Option<Lease<'_>> {
        let mut inner = self.lock();
        inner.demoted.retain(|_, at| at.elapsed() < DEMOTE_FOR);
        let candidates: Vec<(usize, PeerId, bool)> = listed
            .iter()
            .enumerate()
            .filter(|(_, p)| !tried.contains(p))
            .map(|(rank, p)| (rank, *p, inner.shunned(p)))
            .collect();
        let fastest = candidates
            .iter()
            .filter(|(_, _, shunned)| !shunned)
            .map(|(_, p, _)| inner.block_time(p))
            .min()
            .unwrap_or(UNMEASURED);
        let peer = candidates
            .iter()
            .min_by_key(|(rank, p, shunned)| (*shunned, inner.cost(p, fastest), *rank))
            .map(|(_, p, _)| *p)?;
        let h = inner.holder(peer);
        h.in_flight = h.in_flight.saturating_add(1);
        Some(Lease {
            order: self,
            peer,
            started: Instant::now(),
            done: false,
        })
    }

    /// `peer` has not answered a request well past the usual block time: new blocks go to
    /// other holders first until it answers one or [`SLOW_FOR`] passes.
    pub(super) fn overdue(&self, peer: PeerId) {
        self.lock().holder(peer).slow = Some(Instant::now());
    }

    /// How long to wait for a block from one holder before giving up on it.
    pub(super) fn patience(&self) -> Duration {
        match self.lock().usual {
            None => MAX_PATIENCE,
            Some(u) => (u * PATIENCE_FACTOR).clamp(MIN_PATIENCE, MAX_PATIENCE),
        }
    }

    /// How long a request may run before the same block is asked of another holder.
    pub(super) fn hedge_after(&self) -> Duration {
        match self.lock().usual {
            None => MIN_PATIENCE,
            Some(u) => (u * HEDGE_FACTOR).clamp(MIN_HEDGE, MIN_PATIENCE),
        }
    }

    /// Blocks to keep in flight for a file whose blocks sit on `holders` distinct peers.
    pub(super) fn window(holders: usize) -> usize {
        holders
            .saturating_mul(DEPTH_PER_HOLDER)
            .clamp(MIN_WINDOW, MAX_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served_in(order: &HolderOrder, peer: PeerId, took: Duration) {
        let lease = order.pick(&[peer], &[]).expect("a holder");
        let mut lease = lease;
        lease.started = Instant::now() - took;
        lease.served();
    }

    #[test]
    fn blocks_stripe_across_holders_by_load_and_speed() {
        let h = HolderOrder::default();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        // Unmeasured and idle: the access node's order; then each in flight pushes to the next.
        let first: Vec<Lease> = (0..3).filter_map(|_| h.pick(&[a, b, c], &[])).collect();
        let peers: Vec<PeerId> = first.iter().map(Lease::peer).collect();
        assert_eq!(
            peers,
            vec![a, b, c],
            "one request each before any holder gets two"
        );
        drop(first);
        // b measured three times slower than a and c: it gets the smallest share.
        served_in(&h, a, Duration::from_millis(10));
        served_in(&h, c, Duration::from_millis(10));
        served_in(&h, b, Duration::from_millis(30));
        let leases: Vec<Lease> = (0..10).filter_map(|_| h.pick(&[a, b, c], &[])).collect();
        let count = |p| leases.iter().filter(|l| l.peer() == p).count();
        assert!(count(a) >= 4 && count(c) >= 4, "fast holders take most");
        assert!(
            (1..=2).contains(&count(b)),
            "slow holder takes less ({})",
            count(b)
        );
    }

    #[test]
    fn the_swarms_ranking_decides_unless_a_holder_is_clearly_slower() {
        let h = HolderOrder::default();
        let (base, extra) = (PeerId::random(), PeerId::random());
        // A reader that has read only from the base holder, then sees an extra replica
        // listed first (the balancer's decision): the new replica is tried, not ignored.
        for _ in 0..5 {
            served_in(&h, base, Duration::from_millis(5));
        }
        let lease = h.pick(&[extra, base], &[]).expect("a holder");
        assert_eq!(
            lease.peer(),
            extra,
            "an unmeasured replica is assumed usual"
        );
        drop(lease);
        // Jitter (here 1.3x) does not override the ranking ...
        served_in(&h, extra, Duration::from_millis(6));
        let lease = h.pick(&[extra, base], &[]).expect("a holder");
        assert_eq!(lease.peer(), extra, "within the tie band: list order");
        drop(lease);
        // ... a clearly slower holder loses its turn.
        for _ in 0..10 {
            served_in(&h, extra, Duration::from_millis(20));
        }
        let lease = h.pick(&[extra, base], &[]).expect("a holder");
        assert_eq!(lease.peer(), base, "4x slower: the faster holder first");
    }

    #[test]
    fn a_failed_or_overdue_holder_goes_last_until_it_answers() {
        let h = HolderOrder::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let lease = h.pick(&[a, b], &[]).expect("a holder");
        assert_eq!(lease.peer(), a);
        lease.failed();
        let lease = h.pick(&[a, b], &[]).expect("a holder");
        assert_eq!(lease.peer(), b, "a failed: tried last");
        drop(lease);
        assert_eq!(
            h.pick(&[a, b], &[b]).map(|l| l.peer()),
            Some(a),
            "still tried when nothing else is left"
        );
        // A stalled holder overtaken by a hedge is tried last until it answers again.
        let h = HolderOrder::default();
        served_in(&h, a, Duration::from_millis(10));
        served_in(&h, b, Duration::from_millis(10));
        let stalled = h.pick(&[a, b], &[]).expect("a holder");
        let (slow, other) = if stalled.peer() == a { (a, b) } else { (b, a) };
        h.overdue(slow);
        drop(stalled);
        let leases: Vec<Lease> = (0..20).filter_map(|_| h.pick(&[a, b], &[])).collect();
        assert!(
            leases.iter().all(|l| l.peer() == other),
            "20 in flight to one holder before one to the stalled {slow}"
        );
        drop(leases);
        served_in(&h, slow, Duration::from_millis(10));
        let next: Vec<PeerId> = (0..2)
            .filter_map(|_| h.pick(&[a, b], &[]).map(|l| l.peer()))
            .collect();
        assert!(
            next.contains(&slow),
            "back in the stripe once it answered: {next:?}"
        );
    }

    #[test]
    fn patience_hedging_and_window_follow_what_was_measured() {
        let h = HolderOrder::default();
        let a = PeerId::random();
        assert_eq!(h.patience(), MAX_PATIENCE, "nothing measured yet");
        assert_eq!(h.hedge_after(), MIN_PATIENCE);
        for _ in 0..20 {
            served_in(&h, a, Duration::from_millis(10));
        }
        assert_eq!(h.patience(), MIN_PATIENCE, "fast blocks: a short wait");
        assert_eq!(h.hedge_after(), MIN_HEDGE);
        for _ in 0..100 {
            served_in(&h, a, Duration::from_secs(1));
        }
        let p = h.patience();
        assert!(
            p > Duration::from_millis(7900) && p <= Duration::from_secs(8),
            "slow blocks: a longer wait ({p:?})"
        );
        assert_eq!(HolderOrder::window(1), MIN_WINDOW);
        assert_eq!(HolderOrder::window(3), 12);
        assert_eq!(HolderOrder::window(100), MAX_WINDOW);
    }
}
