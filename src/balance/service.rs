//! The balancing service of a node: one task that measures and reports load every T, runs
//! the election, plans as manager, and takes in gossip; plus [`Balance`], the state request
//! handlers share with it (the meter, the view, what this node holds for balancing).
//!
//! The manager is never on the data path: readers consult the view when it helps and fall back
//! to plain holder lists when it is empty, so losing the manager (or the whole service)
//! degrades balance, never availability.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::apply::{self, Holdings};
use super::config::BalanceConfig;
use super::election::{Election, Ignored};
use super::load::{LoadMeter, Served};
use super::manager;
use super::plan::Decision;
use super::view::SwarmView;
use super::wire::{self, DecisionBatch, LoadReport, ManagerMsg};
use crate::ids::{BlockId, FileKey};
use crate::node::net::Command;
use crate::node::{Ctx, Node};
use crate::record::now_ms;

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
    local: PeerId,
    state: Mutex<State>,
    inbound: mpsc::Sender<Gossip>,
    inbound_rx: Mutex<Option<mpsc::Receiver<Gossip>>>,
    ignored: Mutex<BTreeMap<&'static str, u64>>,
    report_seq: AtomicU64,
    housekeeping: AtomicBool,
}

pub struct State {
    pub election: Election<PeerId>,
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
            local,
            state: Mutex::new(State {
                election,
                view: SwarmView::new(round),
                holdings: Holdings::default(),
                batch_seq: 1,
                manager_rounds: 0,
            }),
            inbound: tx,
            inbound_rx: Mutex::new(Some(rx)),
            ignored: Mutex::new(BTreeMap::new()),
            report_seq: AtomicU64::new(0),
            housekeeping: AtomicBool::new(false),
            config,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    pub fn served(&self) -> Served {
        self.meter.served()
    }
}

/// Milliseconds on a monotonic clock (for the election, which must not jump).
fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Subscribes the node's gossipsub to the swarm's three balancing topics.
pub fn subscribe(
    gossipsub: &mut libp2p::gossipsub::Behaviour,
    config: &BalanceConfig,
) -> anyhow::Result<()> {
    for kind in ["load", "manager", "decisions"] {
        let topic = libp2p::gossipsub::IdentTopic::new(config.topic(kind));
        gossipsub
            .subscribe(&topic)
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {}: {e}", config.topic(kind)))?;
    }
    Ok(())
}

async fn publish(ctx: &Arc<Ctx>, kind: &str, data: Vec<u8>) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let topic = ctx.balance.config.topic(kind);
    ctx.net
        .send(Command::Publish {
            topic,
            data,
            reply: tx,
        })
        .await
        .map_err(|e| e.to_string())?;
    rx.await.map_err(|e| e.to_string())?
}

/// The service task: a round every T, gossip in between.
pub async fn run(ctx: Arc<Ctx>) {
    let Some(mut rx) = ctx
        .balance
        .inbound_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    let every = ctx.balance.config.report_interval;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let secs = last.elapsed().as_secs_f64();
                last = Instant::now();
                round(&ctx, secs).await;
            }
            Some(g) = rx.recv() => on_gossip(&ctx, g).await,
        }
    }
}

async fn round(ctx: &Arc<Ctx>, secs: f64) {
    let b = &ctx.balance;
    // Election first: a heartbeat must never wait behind slow store reads.
    let msg = b.state().election.tick(mono_ms());
    if let Some(msg) = msg {
        if let Some(bytes) = wire::encode(&msg) {
            if let Err(e) = publish(ctx, "manager", bytes).await {
                tracing::debug!("election message not sent: {e}");
            }
        }
        if let ManagerMsg::Candidacy { term } = msg {
            tracing::info!(term, "standing for manager");
        }
    }
    let report = build_report(ctx, secs).await;
    let bytes = wire::encode_report(&report);
    b.state().view.on_report(ctx.local, report);
    if let Err(e) = publish(ctx, "load", bytes).await {
        tracing::debug!("load report not sent: {e}");
    }
    // Housekeeping reads records over the network: never let it hold up the next heartbeat.
    if !b.housekeeping.swap(true, Ordering::AcqRel) {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            apply::housekeeping(&ctx).await;
            ctx.balance.housekeeping.store(false, Ordering::Release);
        });
    }
    let plan_now = {
        let mut st = b.state();
        if st.election.is_manager() {
            st.manager_rounds += 1;
        } else {
            st.manager_rounds = 0;
        }
        // A fresh manager first hears a full round of reports before it plans.
        st.election.is_manager() && st.manager_rounds >= 2 && b.config.planner
    };
    if plan_now {
        manager_round(ctx).await;
    }
}

async fn manager_round(ctx: &Arc<Ctx>) {
    let b = &ctx.balance;
    let now = now_ms();
    let (term, first_seq, items) = {
        let st = b.state();
        let items = manager::plan_round(ctx, &st, now);
        (st.election.term(), st.batch_seq, items)
    };
    if items.is_empty() {
        return;
    }
    let batches = wire::encode_batches(term, first_seq, now, items);
    {
        let mut st = b.state();
        st.batch_seq = first_seq + batches.len() as u64;
    }
    for batch in batches {
        tracing::info!(
            term,
            seq = batch.seq,
            decisions = batch.items.len(),
            "publishing decisions"
        );
        if let Some(bytes) = wire::encode(&batch) {
            if let Err(e) = publish(ctx, "decisions", bytes).await {
                tracing::debug!("decisions not sent: {e}");
            }
        }
        // We do not receive our own gossip: take the batch in directly.
        take_batch(ctx, ctx.local, batch);
    }
}

async fn build_report(ctx: &Arc<Ctx>, secs: f64) -> LoadReport {
    let b = &ctx.balance;
    let sample = b.meter.sample(secs, wire::TOP_BLOCKS, wire::TOP_FILES);
    let used = ctx.store.blocks.used_bytes();
    let capacity = ctx
        .config
        .capacity
        .unwrap_or_else(|| used.saturating_add(free_disk(&ctx.config.data_dir)));
    // Names come from the local store (and, for files, the replica set in large swarms): a
    // slow answer costs this report its hot items, never the round.
    let budget = b.config.report_interval / 2;
    let hot_blocks = tokio::time::timeout(budget, apply::describe_blocks(ctx, &sample.hot_blocks))
        .await
        .unwrap_or_default();
    let hot_files = tokio::time::timeout(budget, apply::describe_files(ctx, &sample.hot_files))
        .await
        .unwrap_or_default();
    let seq = b.report_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let st = b.state();
    LoadReport {
        seq,
        at_ms: now_ms(),
        load: sample.load,
        bandwidth: b.config.bandwidth as f64,
        meta_rps: sample.meta_rps,
        block_rps: sample.block_rps,
        block_bps: sample.block_bps,
        inflight: sample.inflight,
        used,
        capacity,
        zone: b.config.zone.clone(),
        role: st.election.role(),
        term: st.election.term(),
        served_blocks: b.meter.served().blocks,
        hot_blocks,
        hot_files,
        extras: st.holdings.extras_list(),
        delegations: st.holdings.delegations_list(now_ms()),
        outcomes: st.holdings.recent_outcomes(),
    }
}

/// Free bytes on the file system of `dir` (0 if unknown).
fn free_disk(dir: &std::path::Path) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return 0;
        };
        let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a valid C string and `s` a writable statvfs; we read it only when
        // the call reports success.
        let rc = unsafe { libc::statvfs(path.as_ptr(), s.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        // SAFETY: statvfs returned 0, so it filled `s`.
        let s = unsafe { s.assume_init() };
        // The field types differ between platforms (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        let (avail, frsize) = (s.f_bavail as u64, s.f_frsize as u64);
        avail.saturating_mul(frsize)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        0
    }
}

async fn on_gossip(ctx: &Arc<Ctx>, g: Gossip) {
    let b = &ctx.balance;
    let Some(source) = g.source else {
        b.count("unsigned message");
        return;
    };
    let kind = g.topic.rsplit('/').next().unwrap_or("");
    if g.topic != b.config.topic(kind) {
        b.count("unknown topic");
        return;
    }
    match kind {
        "load" => match wire::decode::<LoadReport>(&g.data) {
            Some(r) => {
                if r.capacity > 0 && ctx.config.capacity.is_some() {
                    ctx.peers
                        .set_free(source, r.capacity.saturating_sub(r.used));
                }
                if !b.state().view.on_report(source, r) {
                    b.count("replayed report");
                }
            }
            None => {
                b.count("malformed report");
                tracing::debug!(peer = %source, "malformed load report");
            }
        },
        "manager" => match wire::decode::<ManagerMsg>(&g.data) {
            Some(m) => {
                let (r, answer) = {
                    let mut st = b.state();
                    let r = st.election.on_message(source, m, mono_ms());
                    // A candidacy we ignore as manager: tell its author at once.
                    let answer = match (m, r) {
                        (ManagerMsg::Candidacy { .. }, Err(_)) => st.election.reassert(),
                        _ => None,
                    };
                    (r, answer)
                };
                if let Err(why) = r {
                    b.count(ignored_key("election", why));
                    tracing::debug!(peer = %source, ?m, "election message ignored: {}", why.as_str());
                }
                if let Some(bytes) = answer.and_then(|a| wire::encode(&a)) {
                    let _ = publish(ctx, "manager", bytes).await;
                }
            }
            None => {
                b.count("malformed election message");
                tracing::debug!(peer = %source, "malformed election message");
            }
        },
        "decisions" => match wire::decode::<DecisionBatch>(&g.data) {
            Some(batch) => {
                let verdict = b.state().election.accepts_decisions(source, batch.term);
                match verdict {
                    Ok(()) => take_batch(ctx, source, batch),
                    Err(why) => {
                        b.count(ignored_key("decisions", why));
                        tracing::warn!(
                            peer = %source,
                            term = batch.term,
                            "decisions ignored: {}",
                            why.as_str()
                        );
                    }
                }
            }
            None => {
                b.count("malformed decisions");
                tracing::debug!(peer = %source, "malformed decision batch");
            }
        },
        _ => b.count("unknown topic"),
    }
}

fn ignored_key(what: &str, why: Ignored) -> &'static str {
    match (what, why) {
        ("decisions", Ignored::Stale) => "decisions: stale term",
        ("decisions", _) => "decisions: not from the manager",
        (_, Ignored::NotEligible) => "election: not eligible",
        (_, Ignored::Stale) => "election: stale term",
        (_, Ignored::Conflict) => "election: conflicting claim",
        (_, Ignored::Sticky) => "election: manager alive",
        (_, Ignored::NotManager) => "election: not the manager",
    }
}

/// Takes in an accepted batch and starts applying what is addressed to this node.
fn take_batch(ctx: &Arc<Ctx>, from: PeerId, batch: DecisionBatch) {
    let mut st = ctx.balance.state();
    if !st.view.is_new_batch(from, &batch) {
        drop(st);
        ctx.balance.count("decisions: replayed batch");
        return;
    }
    st.view.on_batch(from, &batch);
    // The root of a delegated file learns where to push updates.
    for item in &batch.items {
        st.holdings.note_decision(ctx.local, &item.decision);
    }
    drop(st);
    for (idx, item) in batch.items.into_iter().enumerate() {
        if !involves(&item.decision, ctx.local) {
            continue;
        }
        let id = wire::DecisionId {
            term: batch.term,
            seq: batch.seq,
            idx: idx as u32,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move { apply::apply(&ctx, id, item).await });
    }
}

fn involves(d: &Decision<PeerId>, me: PeerId) -> bool {
    match d {
        Decision::Replicate { to, .. } => *to == me,
        Decision::Delegate { to, .. } => *to == me,
        Decision::Move { from, to, .. } => *from == me || *to == me,
        Decision::Drop { at, .. } => *at == me,
        Decision::EndDelegation { at, .. } => *at == me,
    }
}

/// What `status` shows about balancing.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BalanceStatus {
    pub manager: Option<ManagerInfo>,
    pub role: String,
    pub term: u64,
    pub nodes: Vec<NodeRow>,
    pub decisions: Vec<DecisionRow>,
    /// Messages ignored, by reason (bad input is counted, never applied).
    pub ignored: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagerInfo {
    pub peer: PeerId,
    pub term: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRow {
    pub peer: PeerId,
    /// Smoothed work units (bytes) served per second.
    pub load: f64,
    pub used: u64,
    pub capacity: u64,
    /// load / bandwidth.
    pub util: f64,
    pub zone: Option<String>,
    pub role: String,
    pub served_blocks: u64,
    pub extras: usize,
    pub delegations: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionRow {
    pub kind: String,
    /// Block id or file key (hex).
    pub object: String,
    pub from: Option<PeerId>,
    pub to: Option<PeerId>,
    pub state: String,
    pub term: u64,
    pub seq: u64,
    pub file: String,
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

fn decision_row(t: &super::view::Tracked) -> DecisionRow {
    let (kind, object, from, to) = match &t.item.decision {
        Decision::Replicate {
            block, from, to, ..
        } => ("replicate", hex::encode(block), Some(*from), Some(*to)),
        Decision::Delegate { file, root, to, .. } => {
            ("delegate", hex::encode(file), Some(*root), Some(*to))
        }
        Decision::Move {
            block, from, to, ..
        } => ("move", hex::encode(block), Some(*from), Some(*to)),
        Decision::Drop { block, at, .. } => ("drop", hex::encode(block), Some(*at), None),
        Decision::EndDelegation { file, at } => {
            ("end-delegation", hex::encode(file), Some(*at), None)
        }
    };
    DecisionRow {
        kind: kind.into(),
        object,
        from,
        to,
        state: t.state.label(),
        term: t.id.term,
        seq: t.id.seq,
        file: t.item.name.clone(),
    }
}

/// Balancing as seen through a running [`Node`]: for tests, benchmarks and the devnet.
impl Node {
    pub fn balance_status(&self) -> BalanceStatus {
        self.ctx().balance.status()
    }

    /// The manager this node follows and its term.
    pub fn manager(&self) -> Option<(PeerId, u64)> {
        self.ctx().balance.manager()
    }

    pub fn is_manager(&self) -> bool {
        self.ctx().balance.state().election.is_manager()
    }

    /// What this node served since it started.
    pub fn served(&self) -> Served {
        self.ctx().balance.served()
    }

    /// Publishes raw bytes on one of the swarm's balancing topics (`load`, `manager` or
    /// `decisions`), signed by this node: for tests of bad input.
    pub async fn publish_raw(&self, kind: &str, data: Vec<u8>) -> Result<(), String> {
        publish(self.ctx(), kind, data).await
    }

    /// Refuses (or again allows) every connection with `peer`: tests partition swarms with it.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) {
        let _ = self
            .ctx()
            .net
            .send(Command::SetBlocked { peer, blocked })
            .await;
    }

    /// Blocks this node holds as extra replicas.
    pub fn extra_replicas(&self) -> Vec<BlockId> {
        self.ctx()
            .balance
            .state()
            .holdings
            .extras_list()
            .into_iter()
            .map(|x| x.id)
            .collect()
    }

    /// Files this node serves record reads for as a delegate.
    pub fn delegations(&self) -> Vec<FileKey> {
        self.ctx()
            .balance
            .state()
            .holdings
            .delegations_list(now_ms())
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }
}
