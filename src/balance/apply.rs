//! Applying the manager's decisions on this node, idempotently, and what this node holds
//! because of them ([`Holdings`]): extra replicas, delegated file states, moves in progress.
//!
//! Every decision addressed to us ends in an [`Outcome`] that goes out with the next load
//! reports: applied, skipped (not applicable: unknown block or file, dead peers, nothing left
//! to do) or failed. Skips and failures are final for that decision; the manager does not
//! re-issue the same one for a while. Safety rules are checked here again, not trusted to the
//! planner: a drop never removes a copy the record lists as a base holder, nor one whose block
//! has fewer than R live base holders.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::plan::Decision;
use super::wire::{BlockHeat, DecisionId, DecisionState, ExtraHeld, FileHeat, Item, Outcome};
use crate::ids::{BlockId, FileKey};
use crate::node::{access, Ctx};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::client::ClientResponse;
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::{now_ms, FileState};

/// Outcomes kept (and re-sent with every report, so a lost report loses nothing).
const KEEP_OUTCOMES: usize = 32;
/// How long the root waits for a delegate to take an update before acknowledging anyway.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds a source waits for a move's target to be listed before giving up.
const MOVE_ROUNDS: u32 = 10;
/// Rounds between refreshes of a delegated state from the replica set (pushes keep it
/// current in between; this is the backstop).
const REFRESH_ROUNDS: u32 = 5;

struct Delegation {
    name: String,
    expires: u64,
    state: FileState,
    refreshed: Instant,
}

struct MoveOut {
    id: DecisionId,
    block: BlockId,
    name: String,
    to: PeerId,
    deadline: Instant,
}

#[derive(Default)]
pub struct Holdings {
    extras: BTreeMap<BlockId, ExtraHeld>,
    delegated: HashMap<FileKey, Delegation>,
    /// Delegations of files we are root of: where updates must be pushed.
    my_delegates: HashMap<FileKey, (PeerId, u64)>,
    outcomes: VecDeque<Outcome>,
    started: HashSet<DecisionId>,
    moves_out: Vec<MoveOut>,
    block_names: HashMap<BlockId, String>,
    file_names: HashMap<FileKey, (String, bool, Instant)>,
}

impl Holdings {
    pub fn extras_list(&self) -> Vec<ExtraHeld> {
        self.extras.values().cloned().collect()
    }

    pub fn delegations_list(&self, now_ms: u64) -> Vec<(FileKey, u64)> {
        let mut v: Vec<(FileKey, u64)> = self
            .delegated
            .iter()
            .filter(|(_, d)| d.expires > now_ms)
            .map(|(k, d)| (*k, d.expires))
            .collect();
        v.sort();
        v
    }

    pub fn recent_outcomes(&self) -> Vec<Outcome> {
        self.outcomes.iter().cloned().collect()
    }

    pub fn delegated_state(&self, file: &FileKey, now_ms: u64) -> Option<FileState> {
        self.delegated
            .get(file)
            .filter(|d| d.expires > now_ms)
            .map(|d| d.state.clone())
    }

    /// Every node sees every accepted decision; the root of a delegated file remembers its
    /// delegate so it can push updates to it.
    pub fn note_decision(&mut self, me: PeerId, d: &Decision<PeerId>) {
        match d {
            Decision::Delegate {
                file,
                root,
                to,
                expires_at,
            } if *root == me => {
                self.my_delegates.insert(FileKey(*file), (*to, *expires_at));
            }
            Decision::EndDelegation { file, .. } => {
                self.my_delegates.remove(&FileKey(*file));
            }
            _ => {}
        }
    }

    fn finish(&mut self, id: DecisionId, state: DecisionState) {
        self.outcomes.retain(|o| o.id != id);
        self.outcomes.push_back(Outcome { id, state });
        while self.outcomes.len() > KEEP_OUTCOMES {
            self.outcomes.pop_front();
        }
    }
}

fn live(ctx: &Arc<Ctx>, p: &PeerId) -> bool {
    *p == ctx.local || ctx.peers.is_live(p)
}

fn short(s: impl std::fmt::Display) -> String {
    let s = s.to_string();
    if s.chars().count() > 160 {
        let cut = s.char_indices().nth(160).map(|(i, _)| i).unwrap_or(s.len());
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// Applies one decision addressed to this node and records its outcome.
pub async fn apply(ctx: &Arc<Ctx>, id: DecisionId, item: Item) {
    {
        let mut st = ctx.balance.state();
        if !st.holdings.started.insert(id) {
            return; // already applied or in progress: idempotent
        }
        if st.holdings.started.len() > 8192 {
            st.holdings.started.clear();
            st.holdings.started.insert(id);
        }
    }
    let state = match item.decision.clone() {
        Decision::Replicate { block, from, .. } => {
            replicate(ctx, BlockId(block), &item.name, from).await
        }
        Decision::Drop { block, .. } => drop_extra(ctx, BlockId(block)).await,
        Decision::Delegate {
            file, expires_at, ..
        } => delegate(ctx, FileKey(file), &item.name, expires_at).await,
        Decision::EndDelegation { file, .. } => {
            let had = ctx
                .balance
                .state()
                .holdings
                .delegated
                .remove(&FileKey(file));
            if had.is_some() {
                DecisionState::Applied
            } else {
                DecisionState::Skipped("not a delegate of this file".into())
            }
        }
        Decision::Move {
            block, from, to, ..
        } => {
            let block = BlockId(block);
            if to == ctx.local {
                move_in(ctx, block, &item.name, from).await
            } else {
                // The source lets go once the root lists the target (see `housekeeping`).
                let round = ctx.balance.config.report_interval;
                ctx.balance.state().holdings.moves_out.push(MoveOut {
                    id,
                    block,
                    name: item.name.clone(),
                    to,
                    deadline: Instant::now() + round * MOVE_ROUNDS,
                });
                return;
            }
        }
    };
    match &state {
        DecisionState::Applied => {
            tracing::info!(?id, decision = ?item.decision, "decision applied")
        }
        other => tracing::info!(?id, decision = ?item.decision, "decision {}", other.label()),
    }
    finish(ctx, id, state);
}

fn finish(ctx: &Arc<Ctx>, id: DecisionId, state: DecisionState) {
    let mut st = ctx.balance.state();
    st.view.set_state(id, state.clone());
    st.holdings.finish(id, state);
}

/// The holders the record lists for `block` (in the head version that has it).
async fn record_holders(
    ctx: &Arc<Ctx>,
    name: &str,
    block: &BlockId,
) -> Result<Option<Vec<PeerId>>, String> {
    let state = access::read_state(ctx, name, None).await?;
    Ok(state.and_then(|(_, _, s)| {
        s.versions
            .iter()
            .rev()
            .flat_map(|v| v.blocks.iter())
            .find(|b| b.id == *block)
            .map(|b| b.holders.clone())
    }))
}

async fn replicate(ctx: &Arc<Ctx>, block: BlockId, name: &str, from: PeerId) -> DecisionState {
    if ctx.balance.state().holdings.extras.contains_key(&block) {
        return DecisionState::Applied;
    }
    if ctx.store.blocks.contains(&block) {
        return DecisionState::Skipped("already a holder".into());
    }
    let base = match record_holders(ctx, name, &block).await {
        Ok(Some(h)) => h,
        Ok(None) => return DecisionState::Skipped("unknown block".into()),
        Err(e) => return DecisionState::Failed(short(e)),
    };
    let mut sources: Vec<PeerId> = vec![from];
    {
        let st = ctx.balance.state();
        sources.extend(base.iter().copied());
        sources.extend(st.view.extras_of(&block));
    }
    sources.dedup();
    sources.retain(|p| *p != ctx.local && ctx.peers.is_live(p));
    if sources.is_empty() {
        return DecisionState::Skipped("no live source".into());
    }
    let req = BlockRequest::Pull {
        id: block,
        file: name.to_string(),
        sources,
    };
    match ctx.block_to(ctx.local, req).await {
        Ok(BlockResponse::Stored) => {
            let size = ctx
                .balance
                .state()
                .view
                .block(&block)
                .map(|b| b.size)
                .unwrap_or(0);
            let mut st = ctx.balance.state();
            st.holdings.extras.insert(
                block,
                ExtraHeld {
                    id: block,
                    file: name.to_string(),
                    size,
                    base,
                },
            );
            DecisionState::Applied
        }
        Ok(BlockResponse::Error { message }) => DecisionState::Failed(short(message)),
        Ok(other) => DecisionState::Failed(short(format!("{other:?}"))),
        Err(e) => DecisionState::Failed(short(e)),
    }
}

/// Files other than the extra's own that reference `block` on this node.
async fn ref_files(ctx: &Arc<Ctx>, block: BlockId) -> Vec<String> {
    let store = ctx.store.clone();
    tokio::task::spawn_blocking(move || store.records.block_ref(&block))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .map(|r| r.files)
        .unwrap_or_default()
}

async fn drop_extra(ctx: &Arc<Ctx>, block: BlockId) -> DecisionState {
    let Some(extra) = ctx.balance.state().holdings.extras.get(&block).cloned() else {
        return DecisionState::Skipped("no extra copy here".into());
    };
    let mut files = ref_files(ctx, block).await;
    if !files.contains(&extra.file) {
        files.push(extra.file.clone());
    }
    for f in &files {
        match record_holders(ctx, f, &block).await {
            Ok(Some(holders)) => {
                if holders.contains(&ctx.local) {
                    // The record made us a base holder (repair or a later put): keep it.
                    ctx.balance.state().holdings.extras.remove(&block);
                    return DecisionState::Skipped("listed as a base holder".into());
                }
                let good = holders.iter().filter(|p| live(ctx, p)).count();
                if good < ctx.config.replication {
                    return DecisionState::Skipped(format!(
                        "only {good} live base holders; keeping the extra copy"
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => return DecisionState::Failed(short(e)),
        }
    }
    let store = ctx.store.clone();
    let removed = tokio::task::spawn_blocking(move || {
        let r = store.blocks.remove(&block);
        let _ = store.records.remove_block_refs(&block);
        r
    })
    .await;
    ctx.balance.state().holdings.extras.remove(&block);
    match removed {
        Ok(Ok(_)) => DecisionState::Applied,
        Ok(Err(e)) => DecisionState::Failed(short(e)),
        Err(e) => DecisionState::Failed(short(e)),
    }
}

async fn delegate(ctx: &Arc<Ctx>, key: FileKey, name: &str, expires: u64) -> DecisionState {
    if FileKey::for_name(name) != key {
        return DecisionState::Skipped("file name does not match its key".into());
    }
    if expires <= now_ms() {
        return DecisionState::Skipped("lease already expired".into());
    }
    match access::read_state(ctx, name, None).await {
        Ok(Some((_, _, state))) => {
            ctx.balance.state().holdings.delegated.insert(
                key,
                Delegation {
                    name: name.to_string(),
                    expires,
                    state,
                    refreshed: Instant::now(),
                },
            );
            DecisionState::Applied
        }
        Ok(None) => DecisionState::Skipped("unknown file".into()),
        Err(e) => DecisionState::Failed(short(e)),
    }
}

async fn move_in(ctx: &Arc<Ctx>, block: BlockId, name: &str, from: PeerId) -> DecisionState {
    if !ctx.store.blocks.contains(&block) {
        if !ctx.peers.is_live(&from) {
            return DecisionState::Skipped("source is down".into());
        }
        let req = BlockRequest::Pull {
            id: block,
            file: name.to_string(),
            sources: vec![from],
        };
        match ctx.block_to(ctx.local, req).await {
            Ok(BlockResponse::Stored) => {}
            Ok(other) => return DecisionState::Failed(short(format!("{other:?}"))),
            Err(e) => return DecisionState::Failed(short(e)),
        }
    }
    set_holders(ctx, name, block, vec![ctx.local], vec![]).await
}

async fn set_holders(
    ctx: &Arc<Ctx>,
    name: &str,
    block: BlockId,
    add: Vec<PeerId>,
    remove: Vec<PeerId>,
) -> DecisionState {
    let set = ctx.replica_set(name).await;
    let Some(root) = set.first().copied() else {
        return DecisionState::Failed("no root for the file".into());
    };
    let req = MetaRequest::SetHolders {
        name: name.to_string(),
        block,
        add,
        remove,
    };
    match ctx.meta_to(root, req).await {
        Ok(MetaResponse::HoldersSet) => DecisionState::Applied,
        Ok(other) => DecisionState::Failed(short(format!("{other:?}"))),
        Err(e) => DecisionState::Failed(short(e)),
    }
}

/// Once per round: finish moves whose target the root now lists, end lapsed delegations and
/// refresh delegated states.
pub async fn housekeeping(ctx: &Arc<Ctx>) {
    let now = now_ms();
    let round = ctx.balance.config.report_interval;
    let (moves, refresh) = {
        let mut st = ctx.balance.state();
        st.holdings.delegated.retain(|_, d| d.expires > now);
        st.holdings.my_delegates.retain(|_, (_, exp)| *exp > now);
        let moves = std::mem::take(&mut st.holdings.moves_out);
        let refresh: Vec<(FileKey, String)> = st
            .holdings
            .delegated
            .iter()
            .filter(|(_, d)| d.refreshed.elapsed() >= round * REFRESH_ROUNDS)
            .map(|(k, d)| (*k, d.name.clone()))
            .collect();
        (moves, refresh)
    };
    for (key, name) in refresh {
        if let Ok(Some((_, _, state))) = access::read_state(ctx, &name, None).await {
            if let Some(d) = ctx.balance.state().holdings.delegated.get_mut(&key) {
                if newer_or_same(&state, &d.state) {
                    d.state = state;
                }
                d.refreshed = Instant::now();
            }
        }
    }
    let mut keep = Vec::new();
    for m in moves {
        match record_holders(ctx, &m.name, &m.block).await {
            Ok(Some(h)) if h.contains(&m.to) => {
                let state = set_holders(ctx, &m.name, m.block, vec![], vec![ctx.local]).await;
                if state == DecisionState::Applied {
                    let others = ref_files(ctx, m.block).await;
                    let mut listed_elsewhere = false;
                    for f in others.iter().filter(|f| **f != m.name) {
                        if let Ok(Some(h)) = record_holders(ctx, f, &m.block).await {
                            listed_elsewhere |= h.contains(&ctx.local);
                        }
                    }
                    if !listed_elsewhere {
                        let store = ctx.store.clone();
                        let block = m.block;
                        let _ = tokio::task::spawn_blocking(move || {
                            let _ = store.blocks.remove(&block);
                            let _ = store.records.remove_block_refs(&block);
                        })
                        .await;
                    }
                }
                finish(ctx, m.id, state);
            }
            _ if Instant::now() > m.deadline => {
                finish(
                    ctx,
                    m.id,
                    DecisionState::Failed("target never listed by the root".into()),
                );
            }
            _ => keep.push(m),
        }
    }
    ctx.balance.state().holdings.moves_out.extend(keep);
}

fn newer_or_same(a: &FileState, b: &FileState) -> bool {
    a.position() >= b.position()
}

/// Root side: after a file's state changed, push it to the file's delegate (if any) before
/// the change is acknowledged, so reads through the delegate see every acknowledged write.
pub async fn push_to_delegate(ctx: &Arc<Ctx>, key: FileKey, state: &FileState) {
    let target = ctx
        .balance
        .state()
        .holdings
        .my_delegates
        .get(&key)
        .filter(|(_, exp)| *exp > now_ms())
        .map(|(p, _)| *p);
    let Some(d) = target else { return };
    let req = MetaRequest::DelegateState {
        key,
        state: state.clone(),
    };
    match tokio::time::timeout(PUSH_TIMEOUT, ctx.meta_to(d, req)).await {
        Ok(Ok(MetaResponse::Replicated)) => {}
        other => {
            tracing::debug!(delegate = %d, %key, "delegate did not take the update: {other:?}")
        }
    }
}

/// Delegate side: a pushed state replaces ours if it verifies and is not older.
pub fn on_delegate_state(ctx: &Arc<Ctx>, key: FileKey, state: FileState) -> MetaResponse {
    if state.versions.is_empty()
        || state
            .versions
            .iter()
            .any(|r| r.key() != key || r.verify().is_err())
    {
        return MetaResponse::Error {
            message: "pushed state does not verify".into(),
        };
    }
    let mut st = ctx.balance.state();
    match st.holdings.delegated.get_mut(&key) {
        Some(d) => {
            if newer_or_same(&state, &d.state) {
                d.state = state;
                d.refreshed = Instant::now();
            }
            MetaResponse::Replicated
        }
        None => MetaResponse::Error {
            message: "not a delegate of this file".into(),
        },
    }
}

/// Access side: a record read through the file's live delegate, if it has one. `None` means
/// "read the replica set as usual" (no delegate, or it failed: availability first).
pub async fn read_via_delegate(
    ctx: &Arc<Ctx>,
    name: &str,
    reader: Option<PeerId>,
) -> Option<ClientResponse> {
    let key = FileKey::for_name(name);
    if let Some(state) = ctx.balance.delegated_state(&key) {
        // We are the delegate ourselves.
        ctx.balance.meter.record_read(key);
        let set = ctx.replica_set(name).await;
        let root = set.first().copied().unwrap_or(ctx.local);
        return Some(access::file_response(
            ctx,
            name,
            root,
            set,
            state,
            reader.is_some(),
        ));
    }
    let d = ctx
        .balance
        .delegate_for_read(&key, |p| ctx.peers.is_live(p))?;
    match ctx.meta_to(d, MetaRequest::Fetch { key, reader }).await {
        Ok(MetaResponse::State { state: Some(state) }) => {
            let set = ctx.replica_set(name).await;
            let root = set.first().copied().unwrap_or(d);
            Some(access::file_response(
                ctx,
                name,
                root,
                set,
                state,
                reader.is_some(),
            ))
        }
        _ => None,
    }
}

/// Names and flags for the hottest blocks of a sample.
pub async fn describe_blocks(ctx: &Arc<Ctx>, hot: &[(BlockId, f64, u64)]) -> Vec<BlockHeat> {
    let mut out = Vec::with_capacity(hot.len());
    for &(id, heat, size) in hot {
        let (known, extra) = {
            let st = ctx.balance.state();
            let extra = st.holdings.extras.get(&id).map(|x| x.file.clone());
            let known = extra
                .clone()
                .or_else(|| st.holdings.block_names.get(&id).cloned());
            (known, extra.is_some())
        };
        let name = match known {
            Some(n) => n,
            None => {
                let Some(n) = ref_files(ctx, id).await.into_iter().next() else {
                    continue; // served but not ours to describe (no ref yet)
                };
                let mut st = ctx.balance.state();
                if st.holdings.block_names.len() > 4096 {
                    st.holdings.block_names.clear();
                }
                st.holdings.block_names.insert(id, n.clone());
                n
            }
        };
        out.push(BlockHeat {
            id,
            file: name,
            size,
            heat,
            extra,
        });
    }
    out
}

/// Names and root flags for the hottest files of a sample.
pub async fn describe_files(ctx: &Arc<Ctx>, hot: &[(FileKey, f64)]) -> Vec<FileHeat> {
    let round = ctx.balance.config.report_interval;
    let mut out = Vec::with_capacity(hot.len());
    for &(key, heat) in hot {
        let cached = {
            let st = ctx.balance.state();
            if let Some(d) = st.holdings.delegated.get(&key) {
                Some((d.name.clone(), false))
            } else {
                st.holdings
                    .file_names
                    .get(&key)
                    .filter(|(_, _, at)| at.elapsed() < round * 10)
                    .map(|(n, r, _)| (n.clone(), *r))
            }
        };
        let (name, root) = match cached {
            Some(c) => c,
            None => {
                let state = ctx.stored_state(key).await;
                let Some(name) = state.and_then(|s| s.head().map(|h| h.name.clone())) else {
                    continue;
                };
                let root = ctx.replica_set(&name).await.first() == Some(&ctx.local);
                let mut st = ctx.balance.state();
                if st.holdings.file_names.len() > 4096 {
                    st.holdings.file_names.clear();
                }
                st.holdings
                    .file_names
                    .insert(key, (name.clone(), root, Instant::now()));
                (name, root)
            }
        };
        out.push(FileHeat { name, heat, root });
    }
    out
}
