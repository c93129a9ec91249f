//! The serving cap: with `--bandwidth` set, a node serves at most that many work units
//! (bytes of blocks, [`META_COST`](crate::balance::config::META_COST) per record read) per
//! second.
//!
//! Capacity has to be real for balancing to mean anything: a node that reports 10 MB/s but
//! serves 100 MB/s never looks hot, and a devnet of equal processes on one machine cannot
//! show what moving load buys. The cap is a virtual-clock token bucket (GCRA): each request
//! books its cost at the end of the schedule and waits until its slot starts, so bursts up
//! to [`BURST`] pass at once and the long-run rate never exceeds the cap. A request whose
//! slot is more than [`MAX_QUEUE`] away is refused instead (the reader tries another
//! holder), so a flood cannot park unbounded work here; the cost is charged before the
//! block is read, so waiting requests hold no block bytes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Work that may pass at once after an idle spell, as time at the full rate.
const BURST: Duration = Duration::from_millis(100);
/// Longest a request may wait for its slot; later ones are refused as busy.
pub const MAX_QUEUE: Duration = Duration::from_secs(5);

pub struct ServeLimit {
    per_sec: f64,
    /// When the schedule is next free (never earlier than `now - BURST` when booked).
    next_free: Mutex<Instant>,
}

/// The answer to a request for a serving slot.
#[derive(Debug, PartialEq, Eq)]
pub enum Slot {
    /// Serve after this wait.
    After(Duration),
    /// The queue is more than [`MAX_QUEUE`] deep: answer busy.
    Busy,
}

impl ServeLimit {
    pub fn new(per_sec: u64) -> Self {
        Self {
            per_sec: per_sec.max(1) as f64,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Books `cost` work units and waits for the slot; `false` if the node is too busy.
    pub async fn take(&self, cost: u64) -> bool {
        match self.book(cost, Instant::now()) {
            Slot::After(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                true
            }
            Slot::Busy => false,
        }
    }

    fn book(&self, cost: u64, now: Instant) -> Slot {
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        // Idle time earns at most a burst's worth of credit.
        let start = (*next).max(now.checked_sub(BURST).unwrap_or(now));
        let wait = start.saturating_duration_since(now);
        if wait > MAX_QUEUE {
            return Slot::Busy;
        }
        *next = start + Duration::from_secs_f64(cost as f64 / self.per_sec);
        Slot::After(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booked_work_never_runs_ahead_of_the_rate() {
        let limit = ServeLimit::new(1_000_000);
        let t0 = Instant::now() + Duration::from_secs(1);
        // 100 KB requests all arriving at once, at 1 MB/s: each starts 0.1 s after the one
        // before (after the burst's credit), until the queue is MAX_QUEUE deep.
        let mut waits = Vec::new();
        while let Slot::After(w) = limit.book(100_000, t0) {
            waits.push(w.as_secs_f64());
            assert!(waits.len() < 1000, "the queue never filled");
        }
        for pair in waits.windows(2).skip(1) {
            assert!((pair[1] - pair[0] - 0.1).abs() < 1e-6, "{pair:?}");
        }
        let last = waits.last().copied().unwrap_or_default();
        assert!(last <= MAX_QUEUE.as_secs_f64() && last > MAX_QUEUE.as_secs_f64() - 0.11);
        assert_eq!(limit.book(1, t0), Slot::Busy, "a full queue refuses");
    }

    #[test]
    fn idle_time_earns_only_a_burst() {
        let limit = ServeLimit::new(1_000_000);
        let t0 = Instant::now() + Duration::from_secs(1);
        assert_eq!(limit.book(100_000, t0), Slot::After(Duration::ZERO));
        // An hour idle: still only 100 ms of credit, so the second 100 KB waits 0 and the
        // third waits for the first's time.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(limit.book(100_000, later), Slot::After(Duration::ZERO));
        assert_eq!(limit.book(100_000, later), Slot::After(Duration::ZERO));
        let Slot::After(third) = limit.book(100_000, later) else {
            panic!("refused");
        };
        assert_eq!(third.as_millis(), 100);
    }
}
