//! What the dashboard charts: a bounded ring of the swarm's load as this node saw it each
//! report interval (from the load reports it already receives), and the manager's terms.
//!
//! Bounded whatever the swarm does: [`WINDOW`] of samples at the report interval, each with at
//! most [`MAX_NODES`] nodes (the most loaded, if more report), and the last [`MAX_TERMS`]
//! manager changes. About 15 minutes at T = 2 s is 450 samples of up to 64 small rows.

use std::collections::VecDeque;
use std::time::Duration;

use libp2p::PeerId;
use serde::Serialize;

/// How far back the chart goes.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Nodes kept per sample; the rest (least loaded) are left out of the chart.
pub const MAX_NODES: usize = 64;
/// Manager changes remembered.
pub const MAX_TERMS: usize = 64;

/// One node's load in one sample.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub peer: PeerId,
    /// Smoothed bytes served per second.
    pub load: f64,
    /// load / the node's bandwidth.
    pub util: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Unix ms.
    pub t_ms: u64,
    pub nodes: Vec<Point>,
    /// The swarm's peak and mean utilisation in this sample.
    pub peak_util: f64,
    pub mean_util: f64,
}

/// A manager as this node first followed it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Term {
    pub term: u64,
    pub manager: PeerId,
    /// Unix ms when this node first saw it.
    pub since_ms: u64,
}

#[derive(Debug, Default)]
pub struct LoadHistory {
    samples: VecDeque<Sample>,
    terms: VecDeque<Term>,
    keep: usize,
}

impl LoadHistory {
    /// A ring long enough for [`WINDOW`] at `interval`.
    pub fn new(interval: Duration) -> Self {
        let keep = (WINDOW.as_millis() / interval.as_millis().max(1)).clamp(1, 100_000) as usize;
        Self {
            samples: VecDeque::with_capacity(keep.min(1024)),
            terms: VecDeque::new(),
            keep,
        }
    }

    pub fn record(&mut self, t_ms: u64, mut nodes: Vec<Point>, manager: Option<(PeerId, u64)>) {
        nodes.sort_by(|a, b| b.util.total_cmp(&a.util));
        nodes.truncate(MAX_NODES);
        nodes.sort_by_key(|p| p.peer);
        let (peak, sum) = nodes
            .iter()
            .fold((0.0f64, 0.0f64), |(p, s), n| (p.max(n.util), s + n.util));
        let mean = if nodes.is_empty() {
            0.0
        } else {
            sum / nodes.len() as f64
        };
        self.samples.push_back(Sample {
            t_ms,
            nodes,
            peak_util: peak,
            mean_util: mean,
        });
        while self.samples.len() > self.keep {
            self.samples.pop_front();
        }
        if let Some((manager, term)) = manager {
            let changed = self
                .terms
                .back()
                .is_none_or(|t| t.term != term || t.manager != manager);
            if changed {
                self.terms.push_back(Term {
                    term,
                    manager,
                    since_ms: t_ms,
                });
                while self.terms.len() > MAX_TERMS {
                    self.terms.pop_front();
                }
            }
        }
    }

    /// Samples newer than `since_ms`, oldest first.
    pub fn samples_since(&self, since_ms: u64) -> Vec<Sample> {
        self.samples
            .iter()
            .filter(|s| s.t_ms > since_ms)
            .cloned()
            .collect()
    }

    /// Manager changes, oldest first.
    pub fn terms(&self) -> Vec<Term> {
        self.terms.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(peer: PeerId, util: f64) -> Point {
        Point {
            peer,
            load: util * 1e6,
            util,
        }
    }

    #[test]
    fn the_ring_keeps_its_window_and_the_most_loaded_nodes() {
        let mut h = LoadHistory::new(Duration::from_secs(60));
        assert_eq!(h.keep, 15);
        let peers: Vec<PeerId> = (0..MAX_NODES + 10).map(|_| PeerId::random()).collect();
        for t in 0..40u64 {
            let nodes = peers
                .iter()
                .enumerate()
                .map(|(i, p)| point(*p, i as f64 / 100.0))
                .collect();
            h.record(t, nodes, Some((peers[0], 1 + t / 20)));
        }
        let all = h.samples_since(0);
        assert_eq!(all.len(), 15, "bounded by the window");
        assert_eq!(all[0].t_ms, 25);
        assert!(all.iter().all(|s| s.nodes.len() == MAX_NODES));
        // The least loaded ten were dropped.
        assert!(all[0].nodes.iter().all(|n| n.util >= 0.10));
        assert!((all[0].peak_util - (MAX_NODES + 9) as f64 / 100.0).abs() < 1e-9);
        assert_eq!(h.terms().len(), 2, "one entry per manager change");
        assert_eq!(h.samples_since(38).len(), 1);
    }
}
