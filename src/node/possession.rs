//! Possession checks: the rule that a copy is let go of only when others provably hold it.
//!
//! A listed holder, a `Has` answer or a load report is a claim; a peer can make any of them
//! without a byte on disk. Before this node releases a copy (a move's source, a dropped extra,
//! garbage collection of an unlisted copy) it challenges the other holders with a fresh nonce
//! per peer and checks each answer against its own bytes ([`Proof::of`]): only a peer that
//! holds the block can answer, and only a peer that holds it can check. So whatever a manager
//! decides and whatever peers claim, this node's copy goes only when R others are proven.

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use libp2p::PeerId;

use super::{quorum, Ctx, NodeError};
use crate::ids::{BlockId, Nonce, Proof};
use crate::protocol::block::{BlockRequest, BlockResponse};

/// The holders the record of `name` lists for `block` (in the newest retained version that
/// has it), from a verified quorum read; `None` if no version references it.
pub async fn listed_holders(
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

/// Of `peers`, the ones that prove they hold `id`, checked concurrently against this node's
/// own copy. Empty if this node does not hold a good copy itself: it cannot check then.
pub async fn verified(ctx: &Arc<Ctx>, id: BlockId, peers: &[PeerId]) -> Vec<PeerId> {
    let data = match ctx.store.get_block(id).await {
        Ok(Some(data)) => Arc::new(data),
        Ok(None) => return Vec::new(),
        Err(e) => {
            tracing::warn!(block = %id, "cannot check possession: own copy unreadable: {e}");
            return Vec::new();
        }
    };
    let mut others: Vec<PeerId> = peers.iter().copied().filter(|p| *p != ctx.local).collect();
    others.dedup();
    stream::iter(others)
        .map(|peer| {
            let data = data.clone();
            async move { proves(ctx, peer, id, data).await.then_some(peer) }
        })
        .buffer_unordered(8)
        .filter_map(|p| async move { p })
        .collect()
        .await
}

/// Challenges `peer` for block `id` with a fresh nonce and checks the answer against `data`.
async fn proves(ctx: &Arc<Ctx>, peer: PeerId, id: BlockId, data: Arc<Vec<u8>>) -> bool {
    let nonce = Nonce::random();
    let req = BlockRequest::Prove {
        nonce,
        ids: vec![id],
    };
    let answer = match ctx.block_to(peer, req).await {
        Ok(BlockResponse::Proofs { proofs }) => proofs
            .into_iter()
            .find(|(got, _)| *got == id)
            .map(|(_, proof)| proof),
        other => {
            tracing::debug!(%peer, block = %id, "no possession proof: {other:?}");
            None
        }
    };
    let Some(answer) = answer else { return false };
    // Hashing a block of several MiB would stall the executor: off it.
    let expected = tokio::task::spawn_blocking(move || Proof::of(&nonce, &id, &data)).await;
    let ok = expected.is_ok_and(|e| e == answer);
    if !ok {
        ctx.refusals.refuse(
            "false possession proof",
            Some(peer),
            format!("answered a wrong proof for block {id}"),
        );
    }
    ok
}

/// Whether this node may let go of its copy of `block` of file `name`: at least R holders
/// other than itself, listed by a verified read of the file's record, prove possession.
/// `Err` says why not.
pub async fn safe_to_release(ctx: &Arc<Ctx>, name: &str, block: BlockId) -> Result<(), String> {
    let listed = match listed_holders(ctx, name, &block).await {
        Ok(Some(listed)) => listed,
        // No retained version references it: nothing relies on its holders.
        Ok(None) => return Ok(()),
        Err(e) => return Err(format!("cannot read the record of {name}: {e}")),
    };
    let proven = verified(ctx, block, &listed).await;
    let r = ctx.config.replication;
    if proven.len() >= r {
        Ok(())
    } else {
        Err(format!(
            "only {} of the {} other listed holders prove they hold the block; {r} must",
            proven.len(),
            listed.iter().filter(|p| **p != ctx.local).count()
        ))
    }
}
