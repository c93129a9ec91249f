//! Applying the manager's decisions on this node, idempotently, and what this node holds
//! because of them ([`Holdings`]): extra replicas, delegated file states, moves in progress.
//!
//! Every decision addressed to us ends in an [`Outcome`] that goes out with the next load
//! reports: applied, skipped (not applicable: unknown block or file, dead peers, nothing left
//! to do) or failed. Skips and failures are final for that decision; the manager does not
//! re-issue the same one for a while. Safety rules are checked here again, not trusted to the
//! planner: a drop never removes a copy the record lists as a base holder, nor one whose block
//! has fewer than R live base holders.

use std::sync::Arc;
use std::time::Instant;

use libp2p::PeerId;

use super::delegate;
use super::holdings::MoveOut;
use crate::ids::BlockId;
use crate::node::{quorum, Ctx, NodeError};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::gossip::{Decision, DecisionId, DecisionState, ExtraHeld, Item};
use crate::protocol::meta::{MetaRequest, MetaResponse};

/// Rounds a source waits for a move's target to be listed before giving up.
const MOVE_ROUNDS: u32 = 10;

fn live(ctx: &Arc<Ctx>, p: &PeerId) -> bool {
    *p == ctx.local || ctx.peers.is_live(p)
}

pub(super) fn short(s: impl std::fmt::Display) -> String {
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
        Decision::Replicate { block, from, .. } => replicate(ctx, block, &item.name, from).await,
        Decision::Drop { block, .. } => drop_extra(ctx, block).await,
        Decision::Delegate {
            file, expires_at, ..
        } => delegate::take(ctx, file, &item.name, expires_at).await,
        Decision::EndDelegation { file, .. } => {
            let had = ctx.balance.state().holdings.delegated.remove(&file);
            if had.is_some() {
                DecisionState::Applied
            } else {
                DecisionState::Skipped("not a delegate of this file".into())
            }
        }
        Decision::Move {
            block, from, to, ..
        } => {
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
) -> Result<Option<Vec<PeerId>>, NodeError> {
    let state = quorum::read_state(ctx, name, None).await?;
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
pub(super) async fn ref_files(ctx: &Arc<Ctx>, block: BlockId) -> Vec<String> {
    match ctx.store.block_ref(block).await {
        Ok(refs) => refs.map(|r| r.files).unwrap_or_default(),
        Err(e) => {
            tracing::warn!(%block, "cannot read block refs: {e}");
            Vec::new()
        }
    }
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
    let removed = ctx.store.remove_block(block).await;
    ctx.balance.state().holdings.extras.remove(&block);
    match removed {
        Ok(_) => DecisionState::Applied,
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

/// Once per round: end lapsed delegations, refresh delegated states, and finish moves whose
/// target the root now lists.
pub async fn housekeeping(ctx: &Arc<Ctx>) {
    delegate::refresh(ctx).await;
    let moves = std::mem::take(&mut ctx.balance.state().holdings.moves_out);
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
                        if let Err(e) = ctx.store.remove_block(m.block).await {
                            tracing::warn!(block = %m.block, "moved away, but cannot delete: {e}");
                        }
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
