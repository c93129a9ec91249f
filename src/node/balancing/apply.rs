//! Applying the manager's decisions on this node, idempotently, and what this node holds
//! because of them ([`Holdings`]): extra replicas, delegated file states, moves in progress.
//!
//! Every decision addressed to us ends in an [`Outcome`] that goes out with the next load
//! reports: applied, skipped (not applicable: unknown block or file, dead peers, nothing left
//! to do) or failed. Skips and failures are final for that decision; the manager does not
//! re-issue the same one for a while. Safety rules are checked here again, not trusted to the
//! manager, which may be legitimately elected and still wrong: a copy is released (a move's
//! source, a dropped extra) only when R other holders the record lists prove possession
//! (`node::possession`); a drop never removes a copy the record lists as a base holder; a move
//! goes only to a live storage peer; and the bytes a node copies for decisions are capped per
//! round, so a bad manager can waste bounded bandwidth and nothing else.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::delegate;
use super::holdings::{Extra, MoveOut};
use crate::balance::view::{NOT_LISTED_HERE, SOURCE_UNLISTED, TARGET_ALREADY_HOLDS};
use crate::ids::BlockId;
use crate::ids::FileKey;
use crate::node::possession::{self, listed_holders};
use crate::node::Ctx;
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::gossip::{Decision, DecisionId, DecisionState, ExtraHeld, Item};
use crate::protocol::meta::{MetaRequest, MetaResponse};

use crate::record::MAX_BLOCK_SIZE;

/// Rounds a source waits for a move's target to be listed before giving up.
const MOVE_ROUNDS: u32 = 10;
/// How long past a move's deadline its source keeps trying to let go once the target is
/// listed (a loaded root or a slow possession check must not leave R + 1 holders for good).
const RELEASE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);
/// Bytes a node copies for decisions per balancing round, at most.
pub const DECISION_BYTES_PER_ROUND: u64 = 128 << 20;

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
        if !st.holdings.started.insert(id, ()) {
            return; // already applied or in progress: idempotent
        }
    }
    if FileKey::for_name(&item.name) != item.decision.file() {
        let state = DecisionState::Skipped("the file name does not match its key".into());
        return finish(ctx, id, state);
    }
    if let Err(why) = take_work(ctx, &item.decision) {
        return finish(ctx, id, DecisionState::Skipped(why));
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
            } else if !ctx.peers.is_live(&to) {
                DecisionState::Skipped("the target is not a live storage peer".into())
            } else if !source_is_listed(ctx, &item.name, &block).await {
                // A copy no record lists (a stranger's unsolicited block, a copy garbage
                // collection is about to take) is nothing to move; holding it for the move
                // would also keep it from collection for the move's whole deadline. It is
                // not offered again: offered, the manager planned it again every round.
                ctx.balance.state().holdings.note_unlisted(block);
                DecisionState::Skipped(NOT_LISTED_HERE.into())
            } else {
                // The source lets go once the root lists the target (see `housekeeping`).
                let round = ctx.balance.config.report_interval;
                ctx.balance.state().holdings.moves_out.push(MoveOut {
                    id,
                    block,
                    name: item.name.clone(),
                    to,
                    deadline: Instant::now() + round * MOVE_ROUNDS,
                    listed: false,
                });
                return;
            }
        }
    };
    match &state {
        DecisionState::Applied => {
            ctx.metrics.decision_applied(item.decision.kind());
            tracing::info!(?id, decision = ?item.decision, "decision applied")
        }
        other => tracing::info!(?id, decision = ?item.decision, "decision {}", other.label()),
    }
    finish(ctx, id, state);
}

/// Whether the file's record lists this node as a holder of `block`.
async fn source_is_listed(ctx: &Arc<Ctx>, name: &str, block: &BlockId) -> bool {
    matches!(listed_holders(ctx, name, block).await, Ok(Some(h)) if h.contains(&ctx.local))
}

/// Charges the bytes a decision makes this node copy to the round's budget.
fn take_work(ctx: &Arc<Ctx>, decision: &Decision) -> Result<(), String> {
    let bytes = match decision {
        Decision::Replicate { block, .. } => ctx
            .balance
            .state()
            .view
            .block(block)
            .map(|b| b.size)
            .unwrap_or(u64::from(MAX_BLOCK_SIZE)),
        Decision::Move { to, bytes, .. } if *to == ctx.local => {
            (*bytes).min(u64::from(MAX_BLOCK_SIZE))
        }
        _ => return Ok(()),
    };
    let round = ctx.balance.config.report_interval;
    let mut st = ctx.balance.state();
    let work = &mut st.holdings.work;
    if work.0.elapsed() >= round {
        *work = (Instant::now(), 0);
    }
    let total = work.1.saturating_add(bytes);
    if total > DECISION_BYTES_PER_ROUND {
        return Err(format!(
            "over this round's budget of {} MiB copied for decisions",
            DECISION_BYTES_PER_ROUND >> 20
        ));
    }
    work.1 = total;
    Ok(())
}

fn finish(ctx: &Arc<Ctx>, id: DecisionId, state: DecisionState) {
    let mut st = ctx.balance.state();
    st.view.set_state(id, state.clone());
    st.holdings.finish(id, state);
}

async fn replicate(ctx: &Arc<Ctx>, block: BlockId, name: &str, from: PeerId) -> DecisionState {
    if let Some(x) = ctx.balance.state().holdings.extras.get_mut(&block) {
        // Granted again: a restored extra is confirmed.
        x.unconfirmed_until = None;
        return DecisionState::Applied;
    }
    if ctx.store.blocks.contains(&block) {
        return DecisionState::Skipped("already a holder".into());
    }
    let base = match listed_holders(ctx, name, &block).await {
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
                Extra::granted(ExtraHeld {
                    id: block,
                    file: name.to_string(),
                    size,
                    base,
                }),
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
    let Some(extra) = ctx
        .balance
        .state()
        .holdings
        .extras
        .get(&block)
        .map(|x| x.held.clone())
    else {
        return DecisionState::Skipped("no extra copy here".into());
    };
    let mut files = ref_files(ctx, block).await;
    if !files.contains(&extra.file) {
        files.push(extra.file.clone());
    }
    for f in &files {
        match listed_holders(ctx, f, &block).await {
            Ok(Some(holders)) => {
                if holders.contains(&ctx.local) {
                    // The record made us a base holder (repair or a later put): keep it.
                    ctx.balance.state().holdings.extras.remove(&block);
                    return DecisionState::Skipped("listed as a base holder".into());
                }
                let proven = possession::verified(ctx, block, &holders).await.len();
                if proven < ctx.config.replication {
                    return DecisionState::Skipped(format!(
                        "only {proven} base holders prove possession; keeping the extra copy"
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
    // A manager that knows a cold block only from its source's report does not know the
    // other holders: a move onto one of them would leave R - 1 once the source let go (the
    // source's possession check would refuse, but the copy and the wait are waste).
    // Only a listed copy is moved: a copy no record lists (a stranger's junk that a lying
    // report offered as cold) would be copied here for nothing and then collected.
    match listed_holders(ctx, name, &block).await {
        Ok(Some(h)) if h.contains(&ctx.local) => {
            return DecisionState::Skipped(TARGET_ALREADY_HOLDS.into());
        }
        Ok(Some(h)) if h.contains(&from) => {}
        Ok(_) => return DecisionState::Skipped(SOURCE_UNLISTED.into()),
        Err(e) => return DecisionState::Failed(short(e)),
    }
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

/// Drops, by this node's own judgement, the extras no manager will (see `holdings::Extra`):
/// cold for twice the hold time, or restored after a restart and not granted again within
/// one hold time. Never a base copy: `drop_extra` keeps a copy the record lists here, and
/// deletes one only while R base holders prove theirs.
async fn expire_extras(ctx: &Arc<Ctx>) {
    let hold = Duration::from_millis(ctx.balance.config.policy.hold_ms);
    let now = Instant::now();
    let expired: Vec<BlockId> = {
        let mut st = ctx.balance.state();
        st.holdings
            .extras
            .iter_mut()
            .filter_map(|(id, x)| {
                let heat = ctx.balance.meter.heat_of(id);
                x.expired(heat, now, hold.saturating_mul(2)).then_some(*id)
            })
            .collect()
    };
    for block in expired {
        let state = drop_extra(ctx, block).await;
        tracing::info!(%block, "extra replica outlived its use: {}", state.label());
    }
}

/// Once per round: end lapsed delegations, refresh delegated states, finish moves whose
/// target the root now lists, and drop extras that outlived their use.
pub async fn housekeeping(ctx: &Arc<Ctx>) {
    delegate::refresh(ctx).await;
    expire_extras(ctx).await;
    let moves = std::mem::take(&mut ctx.balance.state().holdings.moves_out);
    let mut keep = Vec::new();
    for mut m in moves {
        match listed_holders(ctx, &m.name, &m.block).await {
            Ok(Some(h)) if h.contains(&m.to) => match release(ctx, &m).await {
                Ok(()) => {
                    // Our copy is no longer listed: our reports stop naming it (reads of it
                    // from stale records would have made us its holder again in the view).
                    ctx.balance.state().holdings.note_unlisted(m.block);
                    ctx.metrics.decision_applied("move");
                    finish(ctx, m.id, DecisionState::Applied)
                }
                Err(why) if Instant::now() > m.deadline + RELEASE_PATIENCE => {
                    // The target stays listed beside us: one copy more than R, never less.
                    tracing::info!(block = %m.block, file = %m.name, "move not finished: {why}");
                    finish(ctx, m.id, DecisionState::Failed(short(why)));
                }
                Err(why) => {
                    // Half done (the target is listed): finish it in a later round.
                    tracing::debug!(block = %m.block, file = %m.name, "move waits: {why}");
                    m.listed = true;
                    keep.push(m);
                }
            },
            _ if m.listed => {
                // The target was listed and no longer is (repair found it lacking): stay.
                let why = "the target was unlisted before the move finished";
                finish(ctx, m.id, DecisionState::Failed(why.into()));
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
    super::persist::save_if_changed(ctx).await;
}

/// The source's half of a move whose target the root lists: once the target proves its copy
/// and R proven holders remain without ours, leave the list, then delete our copy unless a
/// fresh read still lists us or another file does.
async fn release(ctx: &Arc<Ctx>, m: &MoveOut) -> Result<(), String> {
    possession::safe_to_release(ctx, &m.name, m.block).await?;
    match set_holders(ctx, &m.name, m.block, vec![], vec![ctx.local]).await {
        DecisionState::Applied => {}
        other => return Err(other.label()),
    }
    match listed_holders(ctx, &m.name, &m.block).await {
        Ok(Some(h)) if !h.contains(&ctx.local) => {}
        Ok(None) => {}
        Ok(Some(_)) => return Err("the root still lists this node".into()),
        Err(e) => return Err(format!("cannot confirm the holder change: {e}")),
    }
    let others = ref_files(ctx, m.block).await;
    for f in others.iter().filter(|f| **f != m.name) {
        if let Ok(Some(h)) = listed_holders(ctx, f, &m.block).await {
            if h.contains(&ctx.local) {
                return Ok(()); // still a holder for another file: the copy stays
            }
        }
    }
    if let Err(e) = ctx.store.remove_block(m.block).await {
        tracing::warn!(block = %m.block, "moved away, but cannot delete: {e}");
    }
    Ok(())
}
