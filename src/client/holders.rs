//! Which holder a reader tries first, and how long it waits for one: a holder that was slow,
//! silent or wrong is tried last for a while ([`DEMOTE_FOR`]), and the wait for a block adapts
//! to how fast blocks have been arriving, so a lying or stalled holder costs a reader one
//! short timeout, not a full one per block.

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
/// Demoted holders remembered at most.
const MAX_DEMOTED: usize = 4096;

#[derive(Default)]
struct Inner {
    demoted: HashMap<PeerId, Instant>,
    /// Smoothed time to fetch one block (EWMA), once any block arrived.
    usual: Option<Duration>,
}

#[derive(Default)]
pub(super) struct HolderOrder {
    inner: Mutex<Inner>,
}

impl HolderOrder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `listed` in the access node's order, holders demoted lately moved to the back.
    pub(super) fn order(&self, listed: &[PeerId]) -> Vec<PeerId> {
        let mut inner = self.lock();
        inner.demoted.retain(|_, at| at.elapsed() < DEMOTE_FOR);
        let (good, bad): (Vec<PeerId>, Vec<PeerId>) = listed
            .iter()
            .copied()
            .partition(|p| !inner.demoted.contains_key(p));
        good.into_iter().chain(bad).collect()
    }

    pub(super) fn demote(&self, peer: PeerId) {
        let mut inner = self.lock();
        if inner.demoted.len() >= MAX_DEMOTED {
            inner.demoted.clear();
        }
        inner.demoted.insert(peer, Instant::now());
    }

    /// A block arrived after `took`.
    pub(super) fn served(&self, took: Duration) {
        let mut inner = self.lock();
        inner.usual = Some(match inner.usual {
            None => took,
            Some(u) => (u * 7 + took) / 8,
        });
    }

    /// How long to wait for a block from one holder.
    pub(super) fn patience(&self) -> Duration {
        match self.lock().usual {
            None => MAX_PATIENCE,
            Some(u) => (u * PATIENCE_FACTOR).clamp(MIN_PATIENCE, MAX_PATIENCE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_holder_goes_last_and_patience_follows_the_usual_block_time() {
        let h = HolderOrder::default();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        assert_eq!(h.order(&[a, b, c]), vec![a, b, c]);
        h.demote(a);
        assert_eq!(h.order(&[a, b, c]), vec![b, c, a]);
        assert_eq!(h.patience(), MAX_PATIENCE, "nothing measured yet");
        for _ in 0..20 {
            h.served(Duration::from_millis(10));
        }
        assert_eq!(h.patience(), MIN_PATIENCE, "fast blocks: a short wait");
        for _ in 0..100 {
            h.served(Duration::from_secs(1));
        }
        let p = h.patience();
        assert!(
            p > Duration::from_millis(7900) && p <= Duration::from_secs(8),
            "slow blocks: a longer wait ({p:?})"
        );
    }
}
