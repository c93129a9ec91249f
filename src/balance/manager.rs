//! The manager's round: turn the view into the planner's input, run the pure planner, and
//! keep out of its output what the swarm already refused.
//!
//! Planning is the planner's business ([`super::plan::plan`]); this file only adapts. A
//! decision whose object recently came back skipped or failed (unknown block, dead peer, no
//! source) is not re-issued for a while, so nothing is retried forever.

use std::sync::Arc;
use std::time::Duration;

use libp2p::PeerId;

use super::plan::{plan, Decision};
use super::service::State;
use super::wire::{DecisionState, Item};
use crate::ids::FileKey;
use crate::node::Ctx;
use crate::placement;

/// Rounds during which a refused decision is not re-issued.
const REFUSED_ROUNDS: u32 = 10;

/// The decisions of this round, with the file names appliers need.
pub fn plan_round(ctx: &Arc<Ctx>, st: &State, now_ms: u64) -> Vec<Item> {
    let local = ctx.local;
    let live = |p: &PeerId| *p == local || ctx.peers.is_live(p);
    let candidates = ctx.peers.candidates(ctx.local_free(), true);
    let root_of = |k: &FileKey| {
        placement::closest(&k.0, candidates.clone(), 1)
            .first()
            .map(|c| c.peer)
    };
    let (view, names) = st
        .view
        .cluster_view(now_ms, ctx.config.replication, live, root_of);
    let decisions = plan(&view, &ctx.balance.config.policy, &st.view.history);
    tracing::debug!(
        nodes = view.nodes.len(),
        blocks = view.blocks.len(),
        files = view.files.len(),
        loads = ?view.nodes.iter().map(|n| (n.load / n.serve_capacity.max(1.0) * 100.0).round() / 100.0).collect::<Vec<_>>(),
        hot = ?view.blocks.iter().map(|b| (b.heat.round(), b.holders.len(), b.extra.len())).collect::<Vec<_>>(),
        decisions = decisions.len(),
        "planned"
    );
    let round = ctx.balance.config.report_interval;
    let mut out = Vec::with_capacity(decisions.len());
    for d in decisions {
        if refused_recently(st, &d, round * REFUSED_ROUNDS) {
            continue;
        }
        let Some(name) = names.get(file_of(&d)).cloned() else {
            continue;
        };
        out.push(Item { decision: d, name });
    }
    out
}

fn file_of(d: &Decision<PeerId>) -> &[u8; 32] {
    match d {
        Decision::Replicate { file, .. }
        | Decision::Delegate { file, .. }
        | Decision::Move { file, .. }
        | Decision::Drop { file, .. }
        | Decision::EndDelegation { file, .. } => file,
    }
}

/// Same kind, object and target as a decision that came back skipped or failed lately.
fn refused_recently(st: &State, d: &Decision<PeerId>, within: Duration) -> bool {
    st.view.decisions().rev().any(|t| {
        matches!(
            t.state,
            DecisionState::Skipped(_) | DecisionState::Failed(_)
        ) && t.at.elapsed() < within
            && same_object(&t.item.decision, d)
    })
}

pub fn same_object(a: &Decision<PeerId>, b: &Decision<PeerId>) -> bool {
    use Decision::*;
    match (a, b) {
        (
            Replicate {
                block: x, to: t, ..
            },
            Replicate {
                block: y, to: u, ..
            },
        ) => x == y && t == u,
        (
            Move {
                block: x, to: t, ..
            },
            Move {
                block: y, to: u, ..
            },
        ) => x == y && t == u,
        (
            Drop {
                block: x, at: t, ..
            },
            Drop {
                block: y, at: u, ..
            },
        ) => x == y && t == u,
        (Delegate { file: x, to: t, .. }, Delegate { file: y, to: u, .. }) => x == y && t == u,
        (EndDelegation { file: x, at: t }, EndDelegation { file: y, at: u }) => x == y && t == u,
        _ => false,
    }
}
