//! Balancing inside a node: the state request handlers share with the balancing task
//! ([`Balance`]: the load meter, the published view, what this node holds because of
//! decisions), and the glue that runs the pure balancer core (`crate::balance`) here.
//!
//! [`service`] is the task (measure and report every T, elect, plan as manager, take in
//! gossip), [`apply`] carries decisions out, [`holdings`] is what decisions left on this node,
//! [`delegate`] serves delegated record reads, [`report`] builds load reports.
//!
//! The manager is never on the data path: readers consult the view when it helps and fall back
//! to plain holder lists when it is empty, so losing the manager (or the whole service)
//! degrades balance, never availability.

pub mod apply;
pub mod delegate;
mod expiring;
pub mod history;
pub mod holdings;
pub mod persist;
pub mod report;
pub mod service;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::balance::capacity::CapacityEstimator;
use crate::balance::election::Election;
use crate::balance::load::{LoadMeter, Sample, Served};
use crate::balance::view::{SwarmView, Tracked};
use crate::balance::BalanceConfig;
use crate::ids::{BlockId, FileKey};
use crate::node::serve_limit::ServeLimit;
use crate::protocol::gossip as wire;
use crate::protocol::status::{BalanceStatus, DecisionRow, ManagerInfo, NodeRow};
use crate::record::now_ms;
use holdings::Holdings;

/// A learned capacity is never reported below this (work units/s): a few slow rounds must
/// not make a node look a thousand times busier than it is.
const MIN_LEARNED_CAPACITY: f64 = 64.0 * 1024.0;

/// One gossip message as the event loop hands it over.
pub struct Gossip {
    /// The signed author (`message.source`), not the forwarding neighbour.
    pub source: Option<PeerId>,
    pub topic: String,
    pub data: Vec<u8>,
}

/// Balancing state shared by the service task and the request handlers.
pub struct Balance {
    pub config: BalanceConfig,
    pub meter: LoadMeter,
    /// The serving cap, when `serve_limit` is set.
    pub limit: Option<ServeLimit>,
    local: PeerId,
    state: Mutex<State>,
    inbound: mpsc::Sender<Gossip>,
    pub(super) inbound_rx: Mutex<Option<mpsc::Receiver<Gossip>>>,
    ignored: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) report_seq: AtomicU64,
    pub(super) housekeeping: AtomicBool,
    /// Capacity learned from queueing delay, when none is configured.
    capacity: Mutex<CapacityEstimator>,
    /// The dashboard's chart and term history.
    history: Mutex<history::LoadHistory>,
    /// What `persist` last wrote to the data dir.
    saved: Mutex<Option<persist::Saved>>,
}

pub struct State {
    pub election: Election<PeerId, wire::Vote>,
    pub view: SwarmView,
    pub holdings: Holdings,
    /// Next decision batch number (as manager).
    pub batch_seq: u64,
    /// Rounds spent as manager in the current term (plans start after the first).
    pub manager_rounds: u32,
}

impl Balance {
    pub fn new(config: BalanceConfig, local: PeerId) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let round = config.report_interval;
        let election = Election::new(
            local,
            config.manager_peers.iter().copied(),
            round.as_millis() as u64,
            mono_ms(),
        );
        Self {
            meter: LoadMeter::new(config.bandwidth as f64),
            limit: config.serve_limit.map(ServeLimit::new),
            local,
            state: Mutex::new(State {
                election,
                view: SwarmView::new(round, config.policy.hold_ms),
                holdings: Holdings::default(),
                batch_seq: 1,
                manager_rounds: 0,
            }),
            inbound: tx,
            inbound_rx: Mutex::new(Some(rx)),
            ignored: Mutex::new(BTreeMap::new()),
            // Peers ignore a report whose seq is not above the last they took from us, and
            // keep that one for good: starting from the clock makes a restarted node's reports
            // count at once (from 0 they were ignored for as many rounds as it ran before).
            report_seq: AtomicU64::new(now_ms()),
            housekeeping: AtomicBool::new(false),
            capacity: Mutex::new(CapacityEstimator::default()),
            history: Mutex::new(history::LoadHistory::new(round)),
            saved: Mutex::new(None),
            config,
        }
    }

    /// Waits for a serving slot of `cost` work units under the cap (at once without one);
    /// `false` when the node is too busy to serve it soon.
    pub async fn serve_slot(&self, cost: u64) -> bool {
        match &self.limit {
            Some(limit) => limit.take(cost).await,
            None => true,
        }
    }

    /// The capacity to report for a round just sampled: the configured one, or (none
    /// configured) the one learned from queueing delay, the yardstick until then.
    pub(super) fn reported_capacity(&self, s: &Sample) -> f64 {
        let configured = self.config.bandwidth as f64;
        if !self.config.measure_capacity {
            return configured;
        }
        let mut e = self.capacity.lock().unwrap_or_else(|p| p.into_inner());
        e.observe(s.window_load, s.mean_delay, s.min_delay, s.delay_reqs)
            .map_or(configured, |c| c.max(MIN_LEARNED_CAPACITY))
    }

    pub(super) fn saved(&self) -> MutexGuard<'_, Option<persist::Saved>> {
        self.saved.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many entries each bounded map of balancing holds now, by name (for `/metrics`).
    pub fn map_sizes(&self) -> Vec<(&'static str, usize)> {
        let st = self.state();
        let v = st.view.sizes();
        let h = &st.holdings;
        vec![
            ("view_reports", v.reports),
            ("view_blocks", v.blocks),
            ("view_granted", v.granted),
            ("decision_history", v.history),
            ("view_decisions", v.decisions),
            ("view_batches", v.batches),
            ("extras", h.extras.len()),
            ("delegations", h.delegated.len()),
            ("decisions_started", h.started.len()),
            ("block_names", h.block_names.len()),
            ("file_names", h.file_names.len()),
            ("unlisted", h.unlisted.len()),
            ("listed", h.listed.len()),
        ]
    }

    /// Called by the event loop for every gossip message; never blocks it.
    pub fn on_gossip(&self, source: Option<PeerId>, topic: &str, data: Vec<u8>) {
        let g = Gossip {
            source,
            topic: topic.to_string(),
            data,
        };
        if self.inbound.try_send(g).is_err() {
            self.count("dropped (queue full)");
        }
    }

    pub fn count(&self, what: &'static str) {
        *self
            .ignored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(what)
            .or_insert(0) += 1;
    }

    /// Adds this round's view of the swarm's load to the history.
    pub fn record_history(&self) {
        let (points, manager) = {
            let st = self.state();
            let points = st
                .view
                .reports()
                .map(|(p, r)| history::Point {
                    peer: *p,
                    load: r.load,
                    util: r.load / r.bandwidth.max(1.0),
                })
                .collect();
            (points, st.election.manager())
        };
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(now_ms(), points, manager);
    }

    /// Load samples newer than `since_ms` and the manager's terms, for the dashboard.
    pub fn history(&self, since_ms: u64) -> (Vec<history::Sample>, Vec<history::Term>) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        (h.samples_since(since_ms), h.terms())
    }

    /// The newest `n` decisions, newest first.
    pub fn decision_rows(&self, n: usize) -> Vec<DecisionRow> {
        self.state()
            .view
            .decisions()
            .rev()
            .take(n)
            .map(decision_row)
            .collect()
    }

    pub fn ignored(&self) -> BTreeMap<String, u64> {
        self.ignored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// The manager this node follows and its term.
    pub fn manager(&self) -> Option<(PeerId, u64)> {
        self.state().election.manager()
    }

    /// Holders to try for one block read, best first: the record's holders plus live extra
    /// replicas; the first is the less loaded of two drawn at random (or our own copy if we are
    /// no busier), the rest follow least loaded first.
    pub fn order_holders(
        &self,
        block: &BlockId,
        holders: Vec<PeerId>,
        local_has: bool,
        live: impl Fn(&PeerId) -> bool,
    ) -> Vec<PeerId> {
        let st = self.state();
        let mut cands: Vec<PeerId> = holders
            .into_iter()
            .filter(|p| *p != self.local && live(p))
            .collect();
        for x in st.view.extras_of(block) {
            if x != self.local && live(&x) && !cands.contains(&x) {
                cands.push(x);
            }
        }
        // Random order first, so holders of equal load share reads.
        use rand::seq::SliceRandom;
        let mut rng = rand::thread_rng();
        cands.shuffle(&mut rng);
        let mut order = st.view.read_order(cands, &mut rng);
        if local_has {
            // Our own copy costs no network hop: it goes first unless it is busier than the
            // remote holder we would pick; otherwise it keeps its place for failover.
            let mine = st.view.estimated_util(&self.local);
            let pos = match order.first() {
                Some(first) if mine > st.view.estimated_util(first) => order
                    .iter()
                    .position(|p| st.view.estimated_util(p) >= mine)
                    .unwrap_or(order.len())
                    .max(1),
                _ => 0,
            };
            order.insert(pos, self.local);
        }
        order
    }

    /// Notes work sent to `peer` so the next read sees it busier.
    pub fn note_dispatch(&self, peer: PeerId, bytes: u64) {
        self.state().view.note_dispatch(peer, bytes as f64);
    }

    /// The live delegate serving record reads of `file`, if it is not this node.
    pub fn delegate_for_read(
        &self,
        file: &FileKey,
        live: impl Fn(&PeerId) -> bool,
    ) -> Option<PeerId> {
        let st = self.state();
        st.view
            .delegate_of(file, now_ms(), live)
            .filter(|d| *d != self.local)
    }

    /// The file state this node serves as a delegate, if it is one for `file`.
    pub fn delegated_state(&self, file: &FileKey) -> Option<crate::record::FileState> {
        self.state().holdings.delegated_state(file, now_ms())
    }

    /// Whether this node keeps `block` because of a decision: an extra replica, or the source
    /// of a move still in progress (garbage collection leaves those alone).
    pub fn holds_for_decision(&self, block: &BlockId) -> bool {
        let st = self.state();
        st.holdings.extras.contains_key(block)
            || st.holdings.moves_out.iter().any(|m| m.block == *block)
    }

    pub fn served(&self) -> Served {
        self.meter.served()
    }

    /// Blocks this node holds as extra replicas.
    pub fn extra_replicas(&self) -> Vec<BlockId> {
        self.state()
            .holdings
            .extras_list()
            .into_iter()
            .map(|x| x.id)
            .collect()
    }

    /// Files this node serves record reads for as a delegate.
    pub fn delegations(&self) -> Vec<FileKey> {
        self.state()
            .holdings
            .delegations_list(now_ms())
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}

/// Milliseconds on a monotonic clock (for the election, which must not jump).
pub(super) fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Balance {
    pub fn status(&self) -> BalanceStatus {
        let st = self.state();
        let mut nodes: Vec<NodeRow> = st
            .view
            .reports()
            .map(|(p, r)| NodeRow {
                peer: *p,
                load: r.load,
                used: r.used,
                capacity: r.capacity,
                util: r.load / r.bandwidth.max(1.0),
                bandwidth: r.bandwidth,
                zone: r.zone.clone(),
                role: r.role.as_str().to_string(),
                served_blocks: r.served_blocks,
                extras: r.extras.len(),
                delegations: r.delegations.len(),
            })
            .collect();
        nodes.sort_by_key(|n| n.peer);
        let decisions = st
            .view
            .decisions()
            .rev()
            .take(32)
            .map(decision_row)
            .collect();
        BalanceStatus {
            manager: st
                .election
                .manager()
                .map(|(peer, term)| ManagerInfo { peer, term }),
            role: st.election.role().as_str().to_string(),
            term: st.election.term(),
            nodes,
            decisions,
            ignored: self.ignored(),
        }
    }
}

fn decision_row(t: &Tracked) -> DecisionRow {
    let (object, from, to) = t.item.decision.parts();
    DecisionRow {
        kind: t.item.decision.kind().into(),
        object,
        from,
        to,
        state: t.state.label(),
        term: t.id.term,
        seq: t.id.seq,
        file: t.item.name.clone(),
    }
}
