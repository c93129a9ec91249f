//! The root and replica roles: serves `/swarmstore/meta/1`.
//!
//! A root accepts an owner-signed version only if it verifies and follows the held head
//! ([`check_successor`]), stores it durably, copies the file state to the rest of the replica
//! set and acknowledges once a majority of the set holds it. A replica adopts a copied state
//! only if every version verifies and it is not older than what it holds. Reads return the
//! state and note the downloader in the user list off the response path.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;

use super::balancing::delegate;
use super::{drain, Ctx, NodeError};
use crate::ids::FileKey;
use crate::placement::majority;
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::{
    check_successor, now_ms, FileRecord, FileState, Position, RecordError, Succession,
};
use crate::store::Change;

/// Boxed with a concrete `Send` type: a root answering its own publish (access node and root
/// being the same node) reaches this function again through `Ctx::meta_to`.
pub fn handle(ctx: &Arc<Ctx>, from: PeerId, req: MetaRequest) -> BoxFuture<'_, MetaResponse> {
    Box::pin(async move {
        match req {
            MetaRequest::Publish { record } => publish(ctx, from, record).await,
            MetaRequest::Replicate { key, state } => replicate_in(ctx, from, key, state).await,
            MetaRequest::Fetch { key, reader } => fetch(ctx, key, reader).await,
            MetaRequest::Digest { entries } => digest(ctx, entries).await,
            MetaRequest::SetHolders {
                name,
                block,
                add,
                remove,
            } => set_holders(ctx, from, &name, block, add, remove).await,
            MetaRequest::DelegateState { key, state } => {
                delegate::on_delegate_state(ctx, key, state)
            }
        }
    })
}

fn internal(e: impl std::fmt::Display) -> MetaResponse {
    MetaResponse::Error {
        message: e.to_string(),
    }
}

async fn publish(ctx: &Arc<Ctx>, from: PeerId, record: FileRecord) -> MetaResponse {
    if let Err(error) = record.verify() {
        tracing::warn!(peer = %from, name = %record.name, "rejected record: {error}");
        return MetaResponse::Rejected { error };
    }
    let key = record.key();
    let name = record.name.clone();
    let version = record.version;
    let keep = ctx.config.keep_versions;
    // A root that just joined the replica set (or was down) may lack the history this version
    // follows: catch up from the rest of the set before judging it.
    let held = match ctx.store.positions(vec![key]).await {
        Ok(positions) => positions.first().map(|(_, p)| p.version).unwrap_or(0),
        Err(e) => return internal(e),
    };
    if held + 1 < version {
        catch_up(ctx, &name, key).await;
    }
    let stored = ctx
        .store
        .update(key, true, move |current| {
            let mut state = current.unwrap_or(FileState {
                versions: Vec::new(),
                users: Vec::new(),
                rev: 0,
            });
            match check_successor(state.head(), &record)? {
                Succession::Same => Ok::<_, RecordError>(Change::Keep(state)),
                Succession::Newer => {
                    state.push(record, keep);
                    Ok(Change::Write(state.clone(), state))
                }
            }
        })
        .await;
    let state = match stored {
        Ok(Ok(state)) => state,
        Ok(Err(error)) => {
            tracing::info!(%name, "publish refused: {error}");
            return MetaResponse::Rejected { error };
        }
        Err(e) => return internal(e),
    };

    // Copy to the rest of the replica set; answer once a majority (counting us) holds it.
    let set = ctx.replica_set(&name).await;
    let needed = majority(set.len().max(1));
    let mut acked = vec![ctx.local];
    let mut pending: FuturesUnordered<_> = set
        .iter()
        .filter(|p| **p != ctx.local)
        .map(|p| {
            let ctx = ctx.clone();
            let peer = *p;
            let req = MetaRequest::Replicate {
                key,
                state: state.clone(),
            };
            async move { (peer, ctx.meta_to(peer, req).await) }
        })
        .collect();
    let mut failures = Vec::new();
    while acked.len() < needed {
        match pending.next().await {
            Some((peer, Ok(MetaResponse::Replicated))) => acked.push(peer),
            Some((peer, Ok(other))) => failures.push(format!("{peer}: {other:?}")),
            Some((peer, Err(e))) => failures.push(format!("{peer}: {e}")),
            None => break,
        }
    }
    if !pending.is_empty() {
        // The remaining copies complete in the background; repair covers any that fail.
        tokio::spawn(async move { while pending.next().await.is_some() {} });
    }
    if acked.len() < needed {
        tracing::warn!(%name, version, "record reached {} of {needed} replicas", acked.len());
        return MetaResponse::Error {
            message: format!(
                "record stored on {} of the {needed} replicas a majority needs: {}",
                acked.len(),
                failures.join("; ")
            ),
        };
    }
    // A delegated file's delegate must see the version before the writer is told it is stored.
    delegate::push_to_delegate(ctx, key, &state).await;
    tracing::info!(%name, version, replicas = acked.len(), ?set, "published");
    MetaResponse::Published {
        version,
        replicas: acked,
    }
}

/// Why a copied state is refused, if it is.
fn check_copy(key: &FileKey, state: &FileState) -> Result<(), RecordError> {
    if state.versions.is_empty() {
        return Err(RecordError::Invalid("empty file state".into()));
    }
    for r in &state.versions {
        if r.key() != *key {
            return Err(RecordError::Invalid(format!(
                "version of {:?} sent under another key",
                r.name
            )));
        }
        r.verify()?;
    }
    Ok(())
}

async fn replicate_in(
    ctx: &Arc<Ctx>,
    from: PeerId,
    key: FileKey,
    state: FileState,
) -> MetaResponse {
    if let Err(error) = check_copy(&key, &state) {
        tracing::warn!(peer = %from, %key, "rejected replica: {error}");
        return MetaResponse::Rejected { error };
    }
    let result = ctx
        .store
        .update(key, true, move |current| {
            let incoming = state.head().map(|h| h.version).unwrap_or(0);
            match current {
                None => Ok(Change::Write(state, ())),
                Some(mine) => {
                    let held = mine.head().map(|h| h.version).unwrap_or(0);
                    let same_head = match (mine.head(), state.head()) {
                        (Some(a), Some(b)) => a.same_content(b),
                        _ => false,
                    };
                    if incoming > held || (same_head && state.rev > mine.rev) {
                        // Newer, or the same version with root-maintained fields updated.
                        Ok(Change::Write(state, ()))
                    } else if incoming == held && !same_head {
                        Err(RecordError::Stale {
                            current: held,
                            attempted: incoming,
                        })
                    } else {
                        Ok(Change::Keep(()))
                    }
                }
            }
        })
        .await;
    match result {
        Ok(Ok(())) => {
            if ctx.is_leaving() {
                // Arrived after drain took its snapshot: pass it on before we go.
                drain::forward_record(ctx, key).await;
            }
            MetaResponse::Replicated
        }
        Ok(Err(error)) => MetaResponse::Rejected { error },
        Err(e) => internal(e),
    }
}

async fn fetch(ctx: &Arc<Ctx>, key: FileKey, reader: Option<PeerId>) -> MetaResponse {
    let _busy = ctx.balance.meter.begin();
    ctx.balance.meter.record_read(key);
    // A delegate serves the file's record reads from the state its root pushes to it.
    if let Some(state) = ctx.balance.delegated_state(&key) {
        return MetaResponse::State { state: Some(state) };
    }
    let state = match ctx.store.state(key).await {
        Ok(state) => state,
        Err(e) => return internal(e),
    };
    if let (Some(reader), Some(_)) = (reader, &state) {
        // Off the response path: recording a download never slows or fails it.
        let ctx = ctx.clone();
        let limit = ctx.config.max_users;
        tokio::spawn(async move {
            let at = now_ms();
            let noted = ctx
                .store
                .update(key, false, move |current| {
                    Ok::<_, RecordError>(match current {
                        Some(mut s) => {
                            s.note_user(reader, at, limit);
                            Change::Write(s, ())
                        }
                        None => Change::Keep(()),
                    })
                })
                .await;
            if let Err(e) = noted {
                tracing::warn!(%key, "cannot record downloader: {e}");
            }
        });
    }
    MetaResponse::State { state }
}

async fn digest(ctx: &Arc<Ctx>, entries: Vec<(FileKey, Position)>) -> MetaResponse {
    let keys: Vec<FileKey> = entries.into_iter().map(|(k, _)| k).collect();
    match ctx.store.positions(keys).await {
        Ok(entries) => MetaResponse::Digest { entries },
        Err(e) => internal(e),
    }
}

/// Pulls a file's newest state from the other members of its replica set.
pub async fn catch_up(ctx: &Arc<Ctx>, name: &str, key: FileKey) {
    let others: Vec<PeerId> = ctx
        .replica_set(name)
        .await
        .into_iter()
        .filter(|p| *p != ctx.local)
        .collect();
    for peer in others {
        if let Ok(MetaResponse::State { state: Some(state) }) = ctx
            .net
            .meta(peer, MetaRequest::Fetch { key, reader: None })
            .await
        {
            let _ = replicate_in(ctx, peer, key, state).await;
        }
    }
}

/// Changes to one block's holder list.
pub struct HolderChange {
    pub block: crate::ids::BlockId,
    pub add: Vec<PeerId>,
    pub remove: Vec<PeerId>,
}

/// Applies holder changes to every retained version of a file, durably, then copies the state
/// to the rest of the replica set in the background. Holder lists are root-maintained data:
/// the owner's signature does not cover them.
pub async fn apply_holder_changes(
    ctx: &Arc<Ctx>,
    name: &str,
    changes: Vec<HolderChange>,
) -> Result<bool, NodeError> {
    let key = FileKey::for_name(name);
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
                            if !entry.holders.contains(a) {
                                entry.holders.push(*a);
                            }
                        }
                        changed |= entry.holders != before;
                    }
                }
            }
            Ok::<_, std::convert::Infallible>(if changed {
                // A hybrid clock, not a counter: a new root (after hand-over) starts from the
                // old root's revision, and its later change must still count as later.
                state.rev = (state.rev + 1).max(now_ms());
                Change::Write(state.clone(), Some(state))
            } else {
                Change::Keep(None)
            })
        })
        .await?;
    let Ok(updated) = updated;
    let Some(state) = updated else {
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

/// Which of `peers` answer that they hold `block`.
pub async fn holding(ctx: &Arc<Ctx>, block: crate::ids::BlockId, peers: &[PeerId]) -> Vec<PeerId> {
    use crate::protocol::block::{BlockRequest, BlockResponse};
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

async fn set_holders(
    ctx: &Arc<Ctx>,
    from: PeerId,
    name: &str,
    block: crate::ids::BlockId,
    add: Vec<PeerId>,
    remove: Vec<PeerId>,
) -> MetaResponse {
    // Trust, but verify: an added holder must hold the block, and a removed one must be the
    // sender itself (leaving) or a peer that does not hold it.
    let add = holding(ctx, block, &add).await;
    let still = holding(ctx, block, &remove).await;
    let remove: Vec<PeerId> = remove
        .into_iter()
        .filter(|p| *p == from || !still.contains(p))
        .collect();
    let change = HolderChange { block, add, remove };
    match apply_holder_changes(ctx, name, vec![change]).await {
        Ok(_) => MetaResponse::HoldersSet,
        Err(e) => internal(e),
    }
}
