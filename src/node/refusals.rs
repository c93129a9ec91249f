//! Input this node refused, counted by cause and logged at a bounded rate.
//!
//! A hostile or broken peer can send the same bad message thousands of times a second; a log
//! line per message would turn that into a disk-filling attack on the operator. So every
//! refusal is counted (shown in `status` and as `swarmstore_refused_total{kind}`), and logged
//! at most once per cause per [`LOG_EVERY`], with how many more came since the last line.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::metrics::KindLabels;

/// At most one log line per cause this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Cause {
    total: u64,
    /// Refusals since the last log line.
    unlogged: u64,
    last_log: Option<Instant>,
}

pub struct Refusals {
    causes: Mutex<BTreeMap<&'static str, Cause>>,
    counter: Family<KindLabels, Counter>,
}

impl Refusals {
    pub fn new(counter: Family<KindLabels, Counter>) -> Self {
        Self {
            causes: Mutex::new(BTreeMap::new()),
            counter,
        }
    }

    /// Counts one refusal of `cause` (a short fixed label) from `peer`, and logs it unless a
    /// line for this cause went out within [`LOG_EVERY`].
    pub fn refuse(
        &self,
        cause: &'static str,
        peer: Option<PeerId>,
        detail: impl std::fmt::Display,
    ) {
        self.counter
            .get_or_create(&KindLabels {
                kind: cause.to_string(),
            })
            .inc();
        let more = {
            let mut causes = self.causes.lock().unwrap_or_else(|p| p.into_inner());
            let c = causes.entry(cause).or_default();
            c.total += 1;
            c.unlogged += 1;
            let due = c.last_log.is_none_or(|at| at.elapsed() >= LOG_EVERY);
            if !due {
                return;
            }
            c.last_log = Some(Instant::now());
            std::mem::take(&mut c.unlogged) - 1
        };
        let peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        if more > 0 {
            tracing::warn!(%peer, "refused ({cause}): {detail} (and {more} more since the last line)");
        } else {
            tracing::warn!(%peer, "refused ({cause}): {detail}");
        }
    }

    /// Refusals so far, by cause.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.causes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, c)| (k.to_string(), c.total))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_counts_but_few_are_logged() {
        let r = Refusals::new(Family::default());
        for _ in 0..10_000 {
            r.refuse("forged record", None, "x");
        }
        r.refuse("oversized", None, "y");
        let counts = r.counts();
        assert_eq!(counts.get("forged record"), Some(&10_000));
        assert_eq!(counts.get("oversized"), Some(&1));
        let causes = r.causes.lock().expect("lock");
        assert_eq!(
            causes.get("forged record").map(|c| c.unlogged),
            Some(9_999),
            "one line logged, the rest summed up for the next"
        );
    }
}
