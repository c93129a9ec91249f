//! The manager's round: turn the view into the planner's input, run the pure planner, and
//! keep out of its output what the swarm already refused. Also the conversions between the
//! planner's generic decisions and their wire form.
//!
//! Planning is the planner's business ([`super::plan::plan`]); this file only adapts. A
//! decision whose object recently came back skipped or failed (unknown block, dead peer, no
//! source) is not re-issued for a while, so nothing is retried forever. What only the node
//! knows (who is live, which peer is a file's root) comes in as closures.

use std::time::Duration;

use libp2p::PeerId;

use super::plan::{self, plan, Policy};
use super::view::SwarmView;
use crate::ids::{BlockId, FileKey};
use crate::protocol::gossip::{Decision, DecisionState, Item};

/// Rounds during which a refused decision is not re-issued.
const REFUSED_ROUNDS: u32 = 10;

/// What one manager round needs besides the view.
pub struct RoundInput<'a> {
    pub policy: &'a Policy,
    pub replication: usize,
    /// The report interval T.
    pub round: Duration,
    /// Unix ms.
    pub now_ms: u64,
}

/// The decisions of this round, with the file names appliers need.
pub fn plan_round(
    view: &SwarmView,
    input: RoundInput<'_>,
    live: impl Fn(&PeerId) -> bool,
    root_of: impl Fn(&FileKey) -> Option<PeerId>,
) -> Vec<Item> {
    let (cluster, names) = view.cluster_view(input.now_ms, input.replication, live, root_of);
    let decisions = plan(&cluster, input.policy, &view.history);
    tracing::debug!(
        nodes = cluster.nodes.len(),
        blocks = cluster.blocks.len(),
        files = cluster.files.len(),
        loads = ?cluster.nodes.iter().map(|n| (n.load / n.serve_capacity.max(1.0) * 100.0).round() / 100.0).collect::<Vec<_>>(),
        storage = ?cluster.nodes.iter().map(|n| (n.storage_used >> 10, n.storage_capacity >> 20, n.alive)).collect::<Vec<_>>(),
        hot = ?cluster.blocks.iter().map(|b| (b.heat.round(), b.holders.len(), b.extra.len())).collect::<Vec<_>>(),
        decisions = decisions.len(),
        "planned"
    );
    let mut out = Vec::with_capacity(decisions.len());
    for d in decisions {
        let decision = Decision::from(d);
        if refused_recently(view, &decision, input.round * REFUSED_ROUNDS) {
            continue;
        }
        let Some(name) = names.get(&decision.file().0).cloned() else {
            continue;
        };
        out.push(Item { decision, name });
    }
    out
}

/// Same kind, object and target as a decision that came back skipped or failed lately.
fn refused_recently(view: &SwarmView, d: &Decision, within: Duration) -> bool {
    view.decisions().rev().any(|t| {
        matches!(
            t.state,
            DecisionState::Skipped(_) | DecisionState::Failed(_)
        ) && t.at.elapsed() < within
            && t.item.decision.same_object(d)
    })
}

impl From<plan::Decision<PeerId>> for Decision {
    fn from(d: plan::Decision<PeerId>) -> Self {
        match d {
            plan::Decision::Replicate {
                block,
                file,
                from,
                to,
                heat,
            } => Decision::Replicate {
                block: BlockId(block),
                file: FileKey(file),
                from,
                to,
                heat,
            },
            plan::Decision::Delegate {
                file,
                root,
                to,
                expires_at,
            } => Decision::Delegate {
                file: FileKey(file),
                root,
                to,
                expires_at,
            },
            plan::Decision::Move {
                block,
                file,
                from,
                to,
                bytes,
            } => Decision::Move {
                block: BlockId(block),
                file: FileKey(file),
                from,
                to,
                bytes,
            },
            plan::Decision::Drop { block, file, at } => Decision::Drop {
                block: BlockId(block),
                file: FileKey(file),
                at,
            },
            plan::Decision::EndDelegation { file, at } => Decision::EndDelegation {
                file: FileKey(file),
                at,
            },
        }
    }
}

impl From<&Decision> for plan::Decision<PeerId> {
    fn from(d: &Decision) -> Self {
        match *d {
            Decision::Replicate {
                block,
                file,
                from,
                to,
                heat,
            } => plan::Decision::Replicate {
                block: block.0,
                file: file.0,
                from,
                to,
                // A manager's figure: `History::record` reads a NaN, infinite or negative one
                // as none.
                heat,
            },
            Decision::Delegate {
                file,
                root,
                to,
                expires_at,
            } => plan::Decision::Delegate {
                file: file.0,
                root,
                to,
                expires_at,
            },
            Decision::Move {
                block,
                file,
                from,
                to,
                bytes,
            } => plan::Decision::Move {
                block: block.0,
                file: file.0,
                from,
                to,
                bytes,
            },
            Decision::Drop { block, file, at } => plan::Decision::Drop {
                block: block.0,
                file: file.0,
                at,
            },
            Decision::EndDelegation { file, at } => {
                plan::Decision::EndDelegation { file: file.0, at }
            }
        }
    }
}
