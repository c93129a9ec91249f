//! Holder lists, the root-kept half of a record: who may change them, what a holder must show
//! before it is listed, and how a change reaches the replica set.
//!
//! A holder enters a list only after a check that it holds the block ([`holding`]); at publish
//! every block must be on at least one of the holders the client listed ([`check_listed`]).
//! `SetHolders` from a peer outside the key's window may only speak for the sender itself: add
//! itself, or remove itself and add the replacement it handed its copy to (a graceful leave).
//! Every change bumps the state's revision and is signed by this node (`root::attest_change`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use libp2p::PeerId;

use super::balancing::delegate;
use super::root::{attest_change, internal, refuse};
use super::{Ctx, NodeError};
use crate::ids::{validate_name, BlockId, FileKey};
use crate::net::is_relayed;
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::{FileRecord, RecordError, MAX_HOLDERS};
use crate::store::Change;

/// Blocks asked about per `Has` request.
const HAS_CHUNK: usize = 4096;
/// Pauses before asking again a holder a publish could not ask at all.
const ASK_AGAIN_AFTER: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// Changes to one block's holder list.
pub struct HolderChange {
    pub block: BlockId,
    pub add: Vec<PeerId>,
    pub remove: Vec<PeerId>,
    /// For a holder leaving a list it still holds for: the other holders verified to hold
    /// the block, and how many of them must stay listed. Checked inside the update, so two
    /// holders that leave at once cannot together take the block below R.
    pub keep: Option<(Vec<PeerId>, usize)>,
}

/// Applies holder changes to every retained version of a file, durably, signs the new state,
/// then copies it to the rest of the replica set in the background.
pub async fn apply_holder_changes(
    ctx: &Arc<Ctx>,
    name: &str,
    changes: Vec<HolderChange>,
) -> Result<bool, NodeError> {
    let key = FileKey::for_name(name);
    let node = ctx.clone();
    let updated = ctx
        .store
        .update(key, true, move |current| {
            let Some(mut state) = current else {
                return Ok(Change::Keep(None));
            };
            let mut changed = false;
            for version in &mut state.versions {
                for entry in &mut version.blocks {
                    for c in changes.iter().filter(|c| c.block == entry.id) {
                        let before = entry.holders.clone();
                        entry.holders.retain(|h| !c.remove.contains(h));
                        for a in &c.add {
                            if !entry.holders.contains(a) && entry.holders.len() < MAX_HOLDERS {
                                entry.holders.push(*a);
                            }
                        }
                        if let Some((verified, least)) = &c.keep {
                            let stay = entry.holders.iter().filter(|h| verified.contains(h));
                            if stay.count() < *least {
                                return Err(NodeError::Refused(format!(
                                    "block {}: fewer than {least} verified holders would stay \
                                     listed",
                                    c.block
                                )));
                            }
                        }
                        changed |= entry.holders != before;
                    }
                }
            }
            Ok::<_, NodeError>(if changed {
                attest_change(&node, &key, &mut state);
                Change::Write(state.clone(), Some(state))
            } else {
                Change::Keep(None)
            })
        })
        .await?;
    let Some(state) = updated? else {
        return Ok(false);
    };
    delegate::push_to_delegate(ctx, key, &state).await;
    let set = ctx.replica_set(name).await;
    for peer in set.into_iter().filter(|p| *p != ctx.local) {
        let ctx = ctx.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _ = ctx
                .net
                .meta(peer, MetaRequest::Replicate { key, state })
                .await;
        });
    }
    Ok(true)
}

/// Which of `peers` hold `block` now.
pub async fn holding(ctx: &Arc<Ctx>, block: BlockId, peers: &[PeerId]) -> Vec<PeerId> {
    let mut out = Vec::new();
    for p in peers {
        let req = BlockRequest::Has { ids: vec![block] };
        if let Ok(BlockResponse::Have { ids }) = ctx.block_to(*p, req).await {
            if ids.contains(&block) {
                out.push(*p);
            }
        }
    }
    out
}

/// The holders this node's copy of the file lists for `block` (every retained version).
async fn listed_holders(ctx: &Arc<Ctx>, key: FileKey, block: BlockId) -> Vec<PeerId> {
    let mut out: Vec<PeerId> = Vec::new();
    if let Some(state) = ctx.stored_state(key).await {
        for b in state.versions.iter().flat_map(|v| v.blocks.iter()) {
            if b.id == block {
                for h in &b.holders {
                    if !out.contains(h) {
                        out.push(*h);
                    }
                }
            }
        }
    }
    out
}

/// The blocks of `ids` that `peer` holds; `None` if it could not be asked.
async fn has_many(ctx: &Arc<Ctx>, peer: PeerId, ids: Vec<BlockId>) -> Option<Vec<BlockId>> {
    let mut have = Vec::new();
    for chunk in ids.chunks(HAS_CHUNK) {
        let req = BlockRequest::Has {
            ids: chunk.to_vec(),
        };
        match ctx.block_to(peer, req).await {
            Ok(BlockResponse::Have { ids }) => have.extend(ids),
            other => {
                tracing::debug!(%peer, "has: {other:?}");
                return None;
            }
        }
    }
    Some(have)
}

/// Before a root stores a new version: every block the record lists must be on at least one
/// of its listed holders, asked now; holders that lack their block are dropped from its list.
/// A block on no holder refuses the publish, so an acknowledged put is always readable.
///
/// One exception: a live member this node reaches only through a relay cannot be asked
/// (blocks, and so `Has`, never travel over relays), and stays listed unverified. That costs
/// nothing a liar could not get by withholding: the client's own access node placed the block
/// there, and repair audits count such a copy as missing until someone proves it.
pub async fn check_listed(ctx: &Arc<Ctx>, record: &mut FileRecord) -> Result<(), RecordError> {
    let mut asks: HashMap<PeerId, Vec<BlockId>> = HashMap::new();
    for b in record.blocks.iter().filter(|b| !b.is_inline()) {
        for h in &b.holders {
            asks.entry(*h).or_default().push(b.id);
        }
    }
    if asks.is_empty() && record.blocks.iter().all(|b| b.is_inline()) {
        return Ok(());
    }
    let held: HashMap<PeerId, Vec<BlockId>> = stream::iter(asks)
        .map(|(peer, ids)| async move {
            let asked = ids.clone();
            match has_many(ctx, peer, ids).await {
                Some(have) => (peer, have),
                None if relay_only_member(ctx, peer) => {
                    tracing::debug!(%peer, "holder reachable only through a relay: listed unverified");
                    (peer, asked)
                }
                None => (peer, ask_unreached(ctx, peer, asked).await),
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for b in record.blocks.iter_mut().filter(|b| !b.is_inline()) {
        b.holders
            .retain(|h| held.get(h).is_some_and(|ids| ids.contains(&b.id)));
        if b.holders.is_empty() {
            return Err(RecordError::Invalid(format!(
                "block {} of {:?} is not stored on any of its listed holders (an upload older \
                 than the garbage-collection grace may have lost it; put the file again)",
                b.id, record.name
            )));
        }
    }
    Ok(())
}

/// Asks again, a few times, a holder that could not be asked (no answer, not a "no"). A root
/// that has just joined may not yet know the address of a peer the access node placed a block
/// on: each try first looks the peer up in the DHT (the answers carry addresses). Bounded, so
/// a holder that is really gone costs the publish a few seconds, not a hang.
async fn ask_unreached(ctx: &Arc<Ctx>, peer: PeerId, ids: Vec<BlockId>) -> Vec<BlockId> {
    for pause in ASK_AGAIN_AFTER {
        tokio::time::sleep(pause).await;
        let _ = tokio::time::timeout(pause * 2, ctx.net.lookup(peer.to_bytes())).await;
        if let Some(have) = has_many(ctx, peer, ids.clone()).await {
            return have;
        }
    }
    tracing::debug!(%peer, "holder could not be asked: counted as not holding");
    Vec::new()
}

/// A live storage peer with no direct connection to us and no direct address to dial.
fn relay_only_member(ctx: &Arc<Ctx>, peer: PeerId) -> bool {
    ctx.peers.is_live(&peer)
        && !ctx.reach.direct_peers().contains(&peer)
        && ctx.peers.addrs(&peer).iter().all(is_relayed)
}

pub(super) async fn set_holders(
    ctx: &Arc<Ctx>,
    from: PeerId,
    name: &str,
    block: BlockId,
    add: Vec<PeerId>,
    remove: Vec<PeerId>,
) -> MetaResponse {
    if let Err(e) = validate_name(name) {
        return refuse(ctx, "invalid holder change", from, RecordError::Invalid(e));
    }
    if add.len() > MAX_HOLDERS || remove.len() > MAX_HOLDERS {
        let e = RecordError::Invalid(format!("more than {MAX_HOLDERS} holders in one change"));
        return refuse(ctx, "invalid holder change", from, e);
    }
    let key = FileKey::for_name(name);
    // A peer outside the key's window speaks only for itself: it adds itself, or it leaves
    // and names the peer it handed its copy to.
    let member = ctx.in_key_window(&key, &from);
    let only_self =
        remove.iter().all(|p| *p == from) && (add.iter().all(|p| *p == from) || remove == [from]);
    if !member && !only_self {
        let e = RecordError::Unauthorized(format!(
            "{from} may change only its own place in holder lists"
        ));
        return refuse(ctx, "unauthorized holder change", from, e);
    }
    // A holder is listed only once it holds the block; a removed one must be the sender
    // itself (leaving) or a peer that no longer holds it. A leaving holder is removed only if
    // its replacement was verified, so no block loses a copy on a claim.
    let add = holding(ctx, block, &add).await;
    let still = holding(ctx, block, &remove).await;
    // A holder may leave a list it still holds for once enough verified copies remain
    // without it (a move's source, once its target is listed).
    let r = ctx.config.replication;
    let leaving = remove.contains(&from) && still.contains(&from) && add.is_empty();
    let mut keep = None;
    if leaving {
        let listed = listed_holders(ctx, key, block).await;
        let others: Vec<PeerId> = listed.into_iter().filter(|p| *p != from).collect();
        let verified = holding(ctx, block, &others).await;
        if verified.len() < r {
            let e = RecordError::Unauthorized(format!(
                "{from} may not leave the holders of block {block}: only {} other verified \
                 holders, {r} must remain",
                verified.len()
            ));
            return refuse(ctx, "holder change refused", from, e);
        }
        keep = Some((verified, r));
    }
    let others_ok = keep.is_some();
    let replaced = !add.is_empty();
    let remove: Vec<PeerId> = remove
        .into_iter()
        .filter(|p| {
            let gone = !still.contains(p);
            if *p == from {
                replaced || gone || others_ok
            } else {
                member && gone
            }
        })
        .collect();
    let change = HolderChange {
        block,
        add,
        remove,
        keep,
    };
    match apply_holder_changes(ctx, name, vec![change]).await {
        Ok(_) => MetaResponse::HoldersSet,
        Err(NodeError::Refused(why)) => refuse(
            ctx,
            "holder change refused",
            from,
            RecordError::Unauthorized(why),
        ),
        Err(e) => internal(e),
    }
}
