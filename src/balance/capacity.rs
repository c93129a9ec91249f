//! Serving capacity learned from what a node observes, for nodes not told theirs
//! (`--bandwidth` unset).
//!
//! A node that cannot keep up queues: the time from a block request's arrival to its data
//! being ready rises well above what it takes when the node is idle. The throughput at which
//! that happens is the node's capacity (the "knee" TCP Vegas and BBR look for). So each round
//! the estimator takes the round's served work units per second and the mean and least
//! serving delay:
//! - the *base delay* is the least delay of any request seen (drifting up slowly while the
//!   node is not saturated, so a disk that got slower for good is learned too): what a
//!   request costs when nothing waits ahead of it;
//! - a round whose mean delay is several times the base is *saturated*: its throughput is
//!   what the node can serve, and the estimate moves toward it;
//! - a round that served more than the estimate without queueing raises it (the node can do
//!   at least that).
//!
//! Until the first saturated rounds there is no estimate, and the node reports the configured
//! yardstick. Rounds with few requests say nothing and are skipped. Pure: the node feeds it.

/// Requests a round needs before its delay means anything.
pub const MIN_REQUESTS: u64 = 8;
/// A round is saturated when its mean delay exceeds the base by this factor ...
const SATURATED_FACTOR: f64 = 4.0;
/// ... and by this much at least (a base of microseconds is noise-sized).
const SATURATED_MIN_EXTRA_S: f64 = 0.020;
/// Consecutive saturated rounds before the first estimate (one slow round is noise).
const ROUNDS_TO_TRUST: u32 = 2;
/// How far the estimate moves toward a saturated round's throughput.
const GAIN: f64 = 0.3;
/// Upward drift of the base delay per round, as a fraction of the gap.
const BASE_DRIFT: f64 = 0.01;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CapacityEstimator {
    base_delay: Option<f64>,
    estimate: Option<f64>,
    saturated_in_a_row: u32,
}

impl CapacityEstimator {
    /// Takes in one round: work units served per second, the mean and the least serving
    /// delay (seconds) and how many requests they are over. Returns the estimate after it.
    pub fn observe(
        &mut self,
        throughput: f64,
        mean_delay: f64,
        min_delay: f64,
        requests: u64,
    ) -> Option<f64> {
        let finite = throughput.is_finite() && mean_delay.is_finite() && min_delay.is_finite();
        if requests == 0 || !finite {
            return self.estimate;
        }
        let (x, d) = (throughput.max(0.0), mean_delay.max(0.0));
        let base = match self.base_delay {
            Some(b) => b.min(min_delay.max(0.0)),
            None => min_delay.max(0.0),
        };
        let saturated = requests >= MIN_REQUESTS
            && d > base * SATURATED_FACTOR
            && d > base + SATURATED_MIN_EXTRA_S;
        if !saturated && requests >= MIN_REQUESTS && d > base {
            self.base_delay = Some(base + (d - base) * BASE_DRIFT);
        } else {
            self.base_delay = Some(base);
        }
        if requests < MIN_REQUESTS {
            return self.estimate;
        }
        if saturated {
            self.saturated_in_a_row = self.saturated_in_a_row.saturating_add(1);
            if self.saturated_in_a_row >= ROUNDS_TO_TRUST {
                self.estimate = Some(match self.estimate {
                    Some(e) => e + (x - e) * GAIN,
                    None => x,
                });
            }
        } else {
            self.saturated_in_a_row = 0;
            if let Some(e) = self.estimate {
                if x > e {
                    self.estimate = Some(x);
                }
            }
        }
        self.estimate
    }

    pub fn estimate(&self) -> Option<f64> {
        self.estimate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node of capacity `cap` offered `offered`: it serves min(offered, cap), and past the
    /// knee its queue (and so the delay) grows.
    fn round(e: &mut CapacityEstimator, cap: f64, offered: f64) -> Option<f64> {
        let served = offered.min(cap);
        let delay = if offered < cap * 0.9 { 0.002 } else { 0.5 };
        e.observe(served, delay, delay * 0.5, 100)
    }

    #[test]
    fn an_idle_or_unsaturated_node_has_no_estimate() {
        let mut e = CapacityEstimator::default();
        for offered in [1e5, 5e5, 2e6, 3e6] {
            assert_eq!(round(&mut e, 10e6, offered), None);
        }
        assert_eq!(
            e.observe(1e9, 5.0, 4.0, MIN_REQUESTS - 1),
            None,
            "too few requests"
        );
    }

    #[test]
    fn a_saturated_node_learns_its_capacity_and_more_when_it_serves_more() {
        let mut e = CapacityEstimator::default();
        for _ in 0..5 {
            round(&mut e, 4e6, 1e6);
        }
        assert_eq!(
            round(&mut e, 4e6, 8e6),
            None,
            "one slow round is not trusted"
        );
        for _ in 0..10 {
            round(&mut e, 4e6, 8e6);
        }
        let est = e.estimate().expect("an estimate");
        assert!((est - 4e6).abs() < 1e3, "{est}");
        // Faster hardware (or the load got cheaper): more served without queueing.
        round(&mut e, 6e6, 5e6);
        assert_eq!(e.estimate(), Some(5e6));
    }

    #[test]
    fn noise_and_nonsense_do_not_move_it() {
        let mut e = CapacityEstimator::default();
        for _ in 0..5 {
            e.observe(1e6, 0.002, 0.001, 50);
        }
        for bad in [f64::NAN, f64::INFINITY] {
            assert_eq!(e.observe(bad, 1.0, 1.0, 50), None);
            assert_eq!(e.observe(1e6, bad, 1.0, 50), None);
            assert_eq!(e.observe(1e6, 1.0, bad, 50), None);
        }
        // Slower by 3x only: not saturated.
        assert_eq!(e.observe(1e6, 0.003, 0.001, 50), None);
    }

    #[test]
    fn the_base_comes_from_the_quickest_request_even_in_quiet_rounds() {
        let mut e = CapacityEstimator::default();
        // A quiet start: a request now and then, each served at once.
        for _ in 0..10 {
            e.observe(1e5, 0.003, 0.003, 1);
        }
        // Then saturated from the first busy round on: still recognised.
        for _ in 0..4 {
            e.observe(2e6, 0.25, 0.2, 60);
        }
        let est = e.estimate().expect("an estimate");
        assert!((est - 2e6).abs() < 1.0, "{est}");
    }
}
