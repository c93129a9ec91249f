//! The published view every node keeps: the latest load report of each peer, what is known
//! about hot blocks, and the decisions accepted from the manager with their states.
//!
//! Every node builds it from the same gossip, so it serves three purposes: readers rank block
//! holders (extra replicas included) and find a file's live delegate from it, the manager
//! turns it into the planner's [`ClusterView`], and a node that becomes manager after a
//! failover already has the history of published decisions the planner needs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::plan::{self, BlockView, ClusterView, FileView, History, NodeView};
use crate::ids::{BlockId, FileKey};
use crate::protocol::gossip::{
    Decision, DecisionBatch, DecisionId, DecisionState, Item, LoadReport, MAX_EXTRAS, MAX_OUTCOMES,
    TOP_BLOCKS, TOP_FILES,
};
use crate::record::{MAX_BLOCK_SIZE, MAX_HOLDERS};

/// Decisions remembered for status and for the planner's pending-work view.
const KEEP_DECISIONS: usize = 512;
/// Blocks remembered between rounds (hot ones and ones with extra replicas).
const KEEP_BLOCKS: usize = 4096;
/// Blocks not named for [`FORGET_ROUNDS`] are swept once per this many reports taken.
const SWEEP_EVERY: u64 = 256;
/// Reports kept at most. Any signed author's report is taken (gossip forwards reports of peers
/// we are not connected to), so without a bound one peer forwarding reports signed by fresh
/// keys would grow this map without end; past it, reports unheard of for [`FORGET_ROUNDS`]
/// go, then the oldest (down to 7/8 of it). A flood can evict honest reports (they return with the next round):
/// balance degrades, memory does not.
const MAX_REPORTS: usize = 4096;
/// How many objects at most the decisions of published batches are remembered for, for the
/// hold rule: an elected manager can publish a full batch (thousands of decisions, up to the
/// gossip frame limit) every round, so even a few minutes of them would be millions of marks
/// (hundreds of MiB). 65,536 marks are a few MiB; past them the oldest go. How long they are
/// kept is [`SwarmView::history_retention`].
const MAX_HISTORY: usize = 1 << 16;
/// A report not renewed for this many rounds is forgotten when the map is full.
const FORGET_ROUNDS: u32 = 100;
/// Ceilings for figures in load reports (1 TB/s, 1 EiB): anything larger is a lie.
const MAX_RATE: f64 = 1e12;
const MAX_CAPACITY: u64 = 1 << 60;
/// A decision not reported done within this many rounds is no longer counted as pending.
const PENDING_ROUNDS: u32 = 5;
/// A move's target says so when the file's record already lists it for the block: the view
/// learns holders only from the reports that name a block, so a cold block's other holders
/// are unknown to it, and without this the planner kept choosing them (the soak: 7 of n0's
/// last 32 decisions). Taken at its word: a lying target only keeps moves off itself.
pub const TARGET_ALREADY_HOLDS: &str = "already a listed holder of the block";
/// A move's target says so when no record lists the source for the block; the source says
/// [`NOT_LISTED_HERE`] of itself. Either way the view stops counting the source a holder of
/// it (its base holders came from its reports, and nothing took one out: a block moved
/// away in a jitter run was planned off its old holder 20 times in six minutes, every move
/// skipped). A liar keeps moves off a real holder: balance, not data.
pub const SOURCE_UNLISTED: &str = "the source is not a listed holder of the block";
/// A move's source says so when no record lists its copy (see [`SOURCE_UNLISTED`]).
pub const NOT_LISTED_HERE: &str = "this node is not a listed holder of the block";
/// Rounds a `Move` counts as in flight: its source lets go up to this long after the target
/// is listed (the source's own bound is the same), and until then the reports of both still
/// show the block where it was. A block in flight is not planned on again, and both nodes'
/// storage is counted as if the move were done, or the next rounds would move more off the
/// same source, and the same block again (seen on a devnet: one block moved three times in
/// eight seconds).
const MOVE_ROUNDS: u32 = 10;

#[derive(Clone, Debug)]
pub struct BlockInfo {
    pub file: String,
    pub size: u64,
    /// Base holders (the record's), as learned from holders' reports: sorted, at most
    /// [`MAX_HOLDERS`]. A `Vec`: a `BTreeSet` of peer ids allocates a ~1 KB node even for one
    /// holder, and the view keeps thousands of blocks (heaptrack on a soak's node: the
    /// largest live allocation of the view).
    pub base: Vec<PeerId>,
    seen: Instant,
}

impl BlockInfo {
    fn add_base(&mut self, peer: PeerId) {
        if let Err(i) = self.base.binary_search(&peer) {
            if self.base.len() < MAX_HOLDERS {
                self.base.insert(i, peer);
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Tracked {
    pub id: DecisionId,
    pub item: Item,
    pub state: DecisionState,
    pub at: Instant,
}

pub struct SwarmView {
    round: Duration,
    reports: HashMap<PeerId, (LoadReport, Instant)>,
    blocks: HashMap<BlockId, BlockInfo>,
    decisions: VecDeque<Tracked>,
    /// The planner's memory, rebuilt from every accepted batch (so any node can take over).
    pub history: History<PeerId>,
    /// Work this node sent each peer since that peer's last report (readers' water-filling).
    dispatched: HashMap<PeerId, f64>,
    /// Batches already taken in (author, term, seq): gossip may reorder, so a set, not a max.
    seen_batches: VecDeque<(PeerId, u64, u64)>,
    /// Extra replicas accepted decisions gave: (holder, block). Only these count in reports.
    granted: HashMap<(PeerId, BlockId), Instant>,
    /// Reports taken in, for the periodic sweep of blocks no report names any more.
    reports_taken: u64,
}

/// What a bounded map is cut down to once over its bound: 7/8 of it, so the sort that picks
/// the oldest runs once per `bound / 8` new entries, not on every one past the bound.
fn trimmed(bound: usize) -> usize {
    bound - bound / 8
}

/// How many entries each of the view's maps holds now: `/metrics` shows them, so a soak can
/// tell a map at its bound from one that grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewSizes {
    pub reports: usize,
    pub blocks: usize,
    pub granted: usize,
    pub history: usize,
    pub decisions: usize,
    pub batches: usize,
}

impl SwarmView {
    /// How long the decisions of published batches are remembered, for a hold of `hold_ms`:
    /// fifteen holds, at least fifteen minutes. The hold rule looks back one hold, but a
    /// remembered copy is also what keeps steady load from undoing its own relief: an extra
    /// replica stays while its block's heat has not fallen well below the heat it was
    /// decided for, and a copy a decision put on a node is not moved on by the storage band
    /// (two holds let a block be moved on 70 s after it arrived, in a jitter run on real
    /// nodes). Bounded by `MAX_HISTORY` entries whatever the rate of decisions.
    pub fn history_retention(hold_ms: u64) -> u64 {
        hold_ms.saturating_mul(15).max(15 * 60_000)
    }

    /// An empty view for rounds of `round`, remembering decisions for the hold rule of a
    /// `hold_ms` hold.
    pub fn new(round: Duration, hold_ms: u64) -> Self {
        Self {
            round,
            reports: HashMap::new(),
            blocks: HashMap::new(),
            decisions: VecDeque::new(),
            history: History::with_limits(Self::history_retention(hold_ms), MAX_HISTORY),
            dispatched: HashMap::new(),
            seen_batches: VecDeque::new(),
            granted: HashMap::new(),
            reports_taken: 0,
        }
    }

    /// The entries each map holds now.
    pub fn sizes(&self) -> ViewSizes {
        ViewSizes {
            reports: self.reports.len(),
            blocks: self.blocks.len(),
            granted: self.granted.len(),
            history: self.history.len(),
            decisions: self.decisions.len(),
            batches: self.seen_batches.len(),
        }
    }

    /// Reports older than this are not trusted: the node may be gone.
    fn fresh_for(&self) -> Duration {
        self.round * 3
    }

    pub fn report(&self, peer: &PeerId) -> Option<&LoadReport> {
        self.reports
            .get(peer)
            .filter(|(_, at)| at.elapsed() < self.fresh_for())
            .map(|(r, _)| r)
    }

    pub fn reports(&self) -> impl Iterator<Item = (&PeerId, &LoadReport)> {
        let fresh = self.fresh_for();
        self.reports
            .iter()
            .filter(move |(_, (_, at))| at.elapsed() < fresh)
            .map(|(p, (r, _))| (p, r))
    }

    /// Takes in a report; a replayed or older report of the same peer is ignored (false).
    /// A report is a hint: its figures are clamped to sane ranges and it may list only the
    /// extra replicas an accepted decision gave its author.
    pub fn on_report(&mut self, peer: PeerId, report: LoadReport) -> bool {
        if let Some((old, _)) = self.reports.get(&peer) {
            if report.seq <= old.seq {
                return false;
            }
        }
        let report = self.sanitize(peer, report);
        let now = Instant::now();
        for b in &report.hot_blocks {
            let info = self.block_info(b.id, &b.file, b.size, now);
            if !b.extra {
                info.add_base(peer);
            }
        }
        for x in &report.extras {
            let info = self.block_info(x.id, &x.file, x.size, now);
            for p in &x.base {
                info.add_base(*p);
            }
            info.base.retain(|p| *p != peer);
        }
        // A peer reports on the decisions addressed to it, never on anyone else's.
        for o in &report.outcomes {
            let addressed = self
                .decisions
                .iter()
                .any(|t| t.id == o.id && t.item.decision.involves(peer));
            if addressed {
                self.set_state(o.id, o.state.clone());
            }
        }
        self.dispatched.remove(&peer);
        self.reports.insert(peer, (report, now));
        if self.reports.len() > MAX_REPORTS {
            self.forget_reports();
        }
        // A block no report has named for FORGET_ROUNDS is neither hot nor an extra's: the
        // planner has no use for it. Without this the map filled to its bound (about 1 KB a
        // block, 4 MiB in all) on every node of a swarm whose hot set keeps changing.
        self.reports_taken = self.reports_taken.wrapping_add(1);
        if self.reports_taken.is_multiple_of(SWEEP_EVERY) {
            let forget = self.round * FORGET_ROUNDS;
            self.blocks.retain(|_, b| b.seen.elapsed() < forget);
            // Likewise the report of a peer silent that long (gone, or down: its next report
            // brings it back). Kept until the bound, every identity that ever joined stayed
            // in the view with its hot lists (the soak's churn joins fresh ids all the time).
            self.reports.retain(|_, (_, at)| at.elapsed() < forget);
        }
        if self.blocks.len() > KEEP_BLOCKS {
            let mut ages: Vec<(Instant, BlockId)> =
                self.blocks.iter().map(|(id, b)| (b.seen, *id)).collect();
            ages.sort();
            for (_, id) in ages.iter().take(self.blocks.len() - trimmed(KEEP_BLOCKS)) {
                self.blocks.remove(id);
            }
        }
        true
    }

    /// Brings the reports back under [`MAX_REPORTS`]: the long-silent first, then the oldest.
    fn forget_reports(&mut self) {
        let forget = self.round * FORGET_ROUNDS;
        self.reports.retain(|_, (_, at)| at.elapsed() < forget);
        // Down to 7/8 of the bound, so that a swarm of more live nodes than the bound sorts
        // once per MAX_REPORTS / 8 reports, not once per report.
        let keep = trimmed(MAX_REPORTS);
        if self.reports.len() > keep {
            let mut ages: Vec<(Instant, PeerId)> =
                self.reports.iter().map(|(p, (_, at))| (*at, *p)).collect();
            ages.sort();
            for (_, p) in ages.iter().take(self.reports.len() - keep) {
                self.reports.remove(p);
            }
        }
    }

    fn block_info(&mut self, id: BlockId, file: &str, size: u64, now: Instant) -> &mut BlockInfo {
        let info = self.blocks.entry(id).or_insert_with(|| BlockInfo {
            file: file.to_string(),
            size,
            base: Vec::new(),
            seen: now,
        });
        info.seen = now;
        info
    }

    /// Bounds every figure of a report and keeps only the extra replicas granted to `peer`.
    fn sanitize(&self, peer: PeerId, mut r: LoadReport) -> LoadReport {
        let rate = |x: f64| {
            if x.is_finite() {
                x.clamp(0.0, MAX_RATE)
            } else {
                0.0
            }
        };
        r.load = rate(r.load);
        r.bandwidth = rate(r.bandwidth).max(1.0);
        r.meta_rps = rate(r.meta_rps);
        r.block_rps = rate(r.block_rps);
        r.block_bps = rate(r.block_bps);
        r.capacity = r.capacity.min(MAX_CAPACITY);
        r.used = r.used.min(r.capacity);
        r.hot_blocks.truncate(TOP_BLOCKS);
        r.hot_files.truncate(TOP_FILES);
        for b in &mut r.hot_blocks {
            b.heat = rate(b.heat);
            b.size = b.size.min(u64::from(MAX_BLOCK_SIZE));
        }
        for f in &mut r.hot_files {
            f.heat = rate(f.heat);
        }
        r.extras
            .retain(|x| self.granted.contains_key(&(peer, x.id)));
        r.extras.truncate(MAX_EXTRAS);
        for x in &mut r.extras {
            x.base.truncate(MAX_HOLDERS);
            x.size = x.size.min(u64::from(MAX_BLOCK_SIZE));
        }
        r.outcomes.truncate(MAX_OUTCOMES);
        r
    }

    pub fn block(&self, id: &BlockId) -> Option<&BlockInfo> {
        self.blocks.get(id)
    }

    /// Is this batch new (not a replay of one already taken in)?
    pub fn is_new_batch(&self, from: PeerId, batch: &DecisionBatch) -> bool {
        !self.seen_batches.contains(&(from, batch.term, batch.seq))
    }

    /// Takes in an accepted batch: its decisions become pending and enter the history.
    pub fn on_batch(&mut self, from: PeerId, batch: &DecisionBatch) {
        self.seen_batches.push_back((from, batch.term, batch.seq));
        if self.seen_batches.len() > 1024 {
            self.seen_batches.pop_front();
        }
        let decisions: Vec<plan::Decision<PeerId>> =
            batch.items.iter().map(|i| (&i.decision).into()).collect();
        for item in &batch.items {
            match &item.decision {
                Decision::Replicate { block, to, .. } => {
                    self.granted.insert((*to, *block), Instant::now());
                }
                Decision::Drop { block, at, .. } => {
                    self.granted.remove(&(*at, *block));
                }
                _ => {}
            }
        }
        if self.granted.len() > KEEP_BLOCKS {
            let mut ages: Vec<(Instant, (PeerId, BlockId))> =
                self.granted.iter().map(|(k, at)| (*at, *k)).collect();
            ages.sort();
            for (_, k) in ages.iter().take(self.granted.len() - trimmed(KEEP_BLOCKS)) {
                self.granted.remove(k);
            }
        }
        self.history.record(&decisions, batch.now_ms);
        let now = Instant::now();
        for (idx, item) in batch.items.iter().enumerate() {
            let id = DecisionId {
                term: batch.term,
                seq: batch.seq,
                idx: idx as u32,
            };
            if self.decisions.iter().any(|t| t.id == id) {
                continue;
            }
            self.decisions.push_back(Tracked {
                id,
                item: item.clone(),
                state: DecisionState::Published,
                at: now,
            });
        }
        while self.decisions.len() > KEEP_DECISIONS {
            self.decisions.pop_front();
        }
    }

    pub fn set_state(&mut self, id: DecisionId, state: DecisionState) {
        let Some(t) = self.decisions.iter_mut().find(|t| t.id == id) else {
            return;
        };
        // A final state is never overwritten by a late "published".
        if !state.is_final() && t.state.is_final() {
            return;
        }
        // What a move's outcome says of the block's base holders: a move done took the copy
        // off its source and put it on its target; a move refused for an unlisted source
        // says the source holds no listed copy.
        let holders = match (&t.item.decision, &state) {
            (
                Decision::Move {
                    block, from, to, ..
                },
                DecisionState::Applied,
            ) => Some((*block, *from, Some(*to))),
            (Decision::Move { block, from, .. }, DecisionState::Skipped(why))
                if why == SOURCE_UNLISTED || why == NOT_LISTED_HERE =>
            {
                Some((*block, *from, None))
            }
            _ => None,
        };
        t.state = state;
        if let Some((block, from, to)) = holders {
            if let Some(info) = self.blocks.get_mut(&block) {
                info.base.retain(|p| *p != from);
                if let Some(to) = to {
                    info.add_base(to);
                }
            }
        }
    }

    pub fn decisions(&self) -> impl DoubleEndedIterator<Item = &Tracked> {
        self.decisions.iter()
    }

    /// The blocks of moves from `source` that their target skipped, saying `why`.
    pub fn moves_skipped(&self, source: &PeerId, why: &str) -> Vec<BlockId> {
        self.decisions
            .iter()
            .filter_map(|t| match (&t.item.decision, &t.state) {
                (Decision::Move { block, from, .. }, DecisionState::Skipped(said))
                    if from == source && said == why =>
                {
                    Some(*block)
                }
                _ => None,
            })
            .collect()
    }

    /// Moves published in the last [`MOVE_ROUNDS`] rounds and not refused: block → (source,
    /// target, bytes).
    fn moves_in_flight(&self) -> BTreeMap<BlockId, (PeerId, PeerId, u64)> {
        let mut out = BTreeMap::new();
        for t in self.decisions.iter() {
            let Decision::Move {
                block,
                from,
                to,
                bytes,
                ..
            } = t.item.decision
            else {
                continue;
            };
            let given_up = matches!(
                t.state,
                DecisionState::Failed(_) | DecisionState::Skipped(_)
            );
            if !given_up && t.at.elapsed() < self.round * MOVE_ROUNDS {
                out.insert(block, (from, to, bytes.min(u64::from(MAX_BLOCK_SIZE))));
            }
        }
        out
    }

    fn pending(&self, t: &Tracked) -> bool {
        t.state == DecisionState::Published && t.at.elapsed() < self.round * PENDING_ROUNDS
    }

    /// Peers holding `block` as an extra replica by their latest report.
    pub fn extras_of(&self, block: &BlockId) -> Vec<PeerId> {
        self.reports()
            .filter(|(_, r)| r.extras.iter().any(|x| x.id == *block))
            .map(|(p, _)| *p)
            .collect()
    }

    /// The live delegate serving record reads of `file`, if any. A delegation counts only
    /// when an accepted manager decision made it and its delegate reported it applied (a load
    /// report alone never makes a peer a delegate), until its lease runs out or a later
    /// decision ends it.
    pub fn delegate_of(
        &self,
        file: &FileKey,
        now_ms: u64,
        live: impl Fn(&PeerId) -> bool,
    ) -> Option<PeerId> {
        let mut current = None;
        for t in &self.decisions {
            match &t.item.decision {
                Decision::Delegate {
                    file: f,
                    to,
                    expires_at,
                    ..
                } if f == file && t.state == DecisionState::Applied => {
                    current = Some((*to, *expires_at));
                }
                Decision::EndDelegation { file: f, .. } if f == file => current = None,
                _ => {}
            }
        }
        current
            .filter(|(to, exp)| *exp > now_ms && live(to))
            .map(|(to, _)| to)
    }

    /// Estimated utilisation of `peer`: its last report plus what we sent it since.
    pub fn estimated_util(&self, peer: &PeerId) -> f64 {
        match self.report(peer) {
            Some(r) => {
                let extra = self.dispatched.get(peer).copied().unwrap_or(0.0)
                    / self.round.as_secs_f64().max(1e-3);
                (r.load + extra) / r.bandwidth.max(1.0)
            }
            // Unknown load: assume average rather than best or worst.
            None => 0.5,
        }
    }

    pub fn note_dispatch(&mut self, peer: PeerId, work: f64) {
        *self.dispatched.entry(peer).or_insert(0.0) += work;
    }

    /// Orders candidate holders for one block read: least estimated utilisation first, with
    /// `tiebreak` (e.g. random) among equals.
    pub fn rank(
        &self,
        mut candidates: Vec<PeerId>,
        tiebreak: impl Fn(&PeerId) -> u64,
    ) -> Vec<PeerId> {
        candidates.sort_by(|a, b| {
            self.estimated_util(a)
                .total_cmp(&self.estimated_util(b))
                .then_with(|| tiebreak(a).cmp(&tiebreak(b)))
        });
        candidates
    }

    /// The read order for one block: the less loaded of two holders drawn at random first
    /// (power of two choices: every access node acting on the same, round-old reports would
    /// otherwise send all its reads to the same "least loaded" holder and make it the most
    /// loaded one), then the rest least loaded first, for failover.
    pub fn read_order(&self, candidates: Vec<PeerId>, rng: &mut impl rand::Rng) -> Vec<PeerId> {
        let mut order = self.rank(candidates, |_| 0);
        if order.len() >= 2 {
            let i = rng.gen_range(0..order.len());
            let mut j = rng.gen_range(0..order.len() - 1);
            if j >= i {
                j += 1;
            }
            // `order` is sorted (stably, from a shuffled list): the lower index is the less
            // loaded of the two, and equals are in random order.
            let first = order.remove(i.min(j));
            order.insert(0, first);
        }
        order
    }

    /// The planner's input for this round. `live` says which peers are reachable; `root_of`
    /// names a file's root when no report claims it. File names the decisions need come back
    /// in the second map.
    pub fn cluster_view(
        &self,
        now_ms: u64,
        replication: usize,
        live: impl Fn(&PeerId) -> bool,
        root_of: impl Fn(&FileKey) -> Option<PeerId>,
    ) -> (ClusterView<PeerId>, BTreeMap<[u8; 32], String>) {
        let mut names: BTreeMap<[u8; 32], String> = BTreeMap::new();
        let mut nodes: Vec<NodeView<PeerId>> = self
            .reports()
            .map(|(p, r)| NodeView {
                id: *p,
                alive: live(p),
                serve_capacity: r.bandwidth,
                load: r.load,
                // Base storage only: extras are load's copies, dropped once the heat is
                // gone; counted here, replicating a hot block made its new holder "full" and
                // the storage band moved base blocks off it, and back after the drop.
                storage_used: r.used.saturating_sub(
                    r.extras
                        .iter()
                        .map(|x| x.size)
                        .fold(0u64, u64::saturating_add),
                ),
                storage_capacity: r.capacity.max(1),
            })
            .collect();
        nodes.sort_by_key(|n| n.id);
        let moving = self.moves_in_flight();
        for (from, to, size) in moving.values() {
            if let Ok(i) = nodes.binary_search_by_key(from, |n| n.id) {
                nodes[i].storage_used = nodes[i].storage_used.saturating_sub(*size);
            }
            if let Ok(i) = nodes.binary_search_by_key(to, |n| n.id) {
                let n = &mut nodes[i];
                n.storage_used = n.storage_used.saturating_add(*size).min(n.storage_capacity);
            }
        }

        // Blocks: everything hot by a report, everything with (pending) extras.
        let mut blocks: BTreeMap<BlockId, (f64, BTreeSet<PeerId>)> = BTreeMap::new();
        for (p, r) in self.reports() {
            for b in &r.hot_blocks {
                blocks.entry(b.id).or_default().0 += b.heat;
            }
            for x in &r.extras {
                blocks.entry(x.id).or_default().1.insert(*p);
            }
        }
        for t in self.decisions.iter().filter(|t| self.pending(t)) {
            if let Decision::Replicate { block, to, .. } = t.item.decision {
                blocks.entry(block).or_default().1.insert(to);
            }
        }
        let mut known_holders: BTreeMap<BlockId, BTreeSet<PeerId>> = BTreeMap::new();
        for t in self.decisions.iter() {
            if let (Decision::Move { block, to, .. }, DecisionState::Skipped(why)) =
                (&t.item.decision, &t.state)
            {
                if why == TARGET_ALREADY_HOLDS {
                    known_holders.entry(*block).or_default().insert(*to);
                }
            }
        }
        let mut block_views = Vec::with_capacity(blocks.len());
        for (id, (heat, extra)) in blocks {
            let Some(info) = self.blocks.get(&id) else {
                continue; // an extra we know nothing about yet: next round
            };
            if moving.contains_key(&id) {
                continue; // a move in flight: planned on again once it is done
            }
            let file = FileKey::for_name(&info.file);
            names.insert(file.0, info.file.clone());
            let holders: Vec<PeerId> = info
                .base
                .iter()
                .chain(known_holders.get(&id).into_iter().flatten())
                .copied()
                .filter(|p| !extra.contains(p))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            block_views.push(BlockView {
                id: id.0,
                file: file.0,
                size: info.size,
                holders,
                extra: extra.into_iter().collect(),
                heat,
            });
        }

        // Files: hot by a report, or delegated (live lease, or a pending delegation).
        let mut files: BTreeMap<FileKey, (f64, Option<PeerId>, String)> = BTreeMap::new();
        // What each non-root reporter saw of a file: a delegate's share of its reads.
        let mut seen_by: BTreeMap<(FileKey, PeerId), f64> = BTreeMap::new();
        for (p, r) in self.reports() {
            for f in &r.hot_files {
                let key = FileKey::for_name(&f.name);
                let e = files.entry(key).or_insert((0.0, None, f.name.clone()));
                // Each replica of the set sees the same reads; the root's figure counts.
                if f.root {
                    e.0 = f.heat;
                    e.1 = Some(*p);
                } else {
                    if e.1.is_none() {
                        e.0 = e.0.max(f.heat);
                    }
                    seen_by.insert((key, *p), f.heat);
                }
            }
        }
        let mut delegates: BTreeMap<FileKey, (PeerId, u64)> = BTreeMap::new();
        for (p, r) in self.reports() {
            for (k, exp) in &r.delegations {
                if *exp > now_ms {
                    delegates.insert(*k, (*p, *exp));
                }
            }
        }
        for t in self.decisions.iter() {
            match (&t.item.decision, &t.state) {
                (
                    Decision::Delegate {
                        file,
                        to,
                        expires_at,
                        ..
                    },
                    DecisionState::Published,
                ) if self.pending(t) && *expires_at > now_ms => {
                    delegates.insert(*file, (*to, *expires_at));
                    files
                        .entry(*file)
                        .or_insert((0.0, None, t.item.name.clone()));
                }
                (Decision::EndDelegation { file, .. }, DecisionState::Published)
                    if self.pending(t) =>
                {
                    delegates.remove(file);
                }
                _ => {}
            }
        }
        for k in delegates.keys() {
            if !files.contains_key(k) {
                if let Some(name) = self
                    .decisions
                    .iter()
                    .rev()
                    .find(|t| matches!(t.item.decision, Decision::Delegate { file, .. } if file == *k))
                    .map(|t| t.item.name.clone())
                {
                    files.insert(*k, (0.0, None, name));
                }
            }
        }
        let mut file_views = Vec::with_capacity(files.len());
        for (key, (mut heat, reporting_root, name)) in files {
            let Some(root) = reporting_root.or_else(|| root_of(&key)) else {
                continue;
            };
            let delegate = delegates.get(&key).copied();
            // A delegation moves the record's reads from the root to the delegate: the
            // file's heat is what both serve. (The root's figure alone fell once delegated,
            // which ended the delegation after one hold and started it again after the
            // next, every two minutes for as long as a jitter run on real nodes lasted.)
            if let (Some(_), Some((d, _))) = (reporting_root, delegate) {
                if let Some(share) = seen_by.get(&(key, d)) {
                    heat += share;
                }
            }
            names.insert(key.0, name);
            file_views.push(FileView {
                key: key.0,
                root,
                delegate,
                heat,
            });
        }
        (
            ClusterView {
                now: now_ms,
                replication,
                nodes,
                files: file_views,
                blocks: block_views,
            },
            names,
        )
    }
}

#[cfg(test)]
mod tests;
