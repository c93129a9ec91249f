//! Replica-set anti-entropy: records converge to the newest valid signed version.
//!
//! Every `sync_interval` a node sends, to each other member of the replica sets of the files it
//! holds, the `(key, position)` pairs they share (position: head version, then holder-list
//! revision). The answer carries the peer's positions; whichever side is behind gets the newer
//! state (pushed with `Replicate`, or pulled with `Fetch` and checked exactly like a copy from
//! a root). A lower version never overwrites a higher one, and a copy that missed a holder
//! change catches up. This also hands records to peers that join a replica set.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use libp2p::PeerId;

use super::{quorum, root, Ctx};
use crate::ids::FileKey;
use crate::placement::majority;
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::{compatible, FileState, Position};

/// Keys per digest message: keeps each frame far below the meta protocol's limit.
const DIGEST_CHUNK: usize = 4096;

pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(ctx.config.sync_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        round(&ctx).await;
    }
}

/// One anti-entropy round over every record this node holds.
pub async fn round(ctx: &Arc<Ctx>) {
    let all = match ctx.store.states().await {
        Ok(all) => all,
        Err(e) => return tracing::warn!("sync: cannot list records: {e}"),
    };
    let mut per_peer: HashMap<PeerId, Vec<(FileKey, Position)>> = HashMap::new();
    let mut states: HashMap<FileKey, FileState> = HashMap::new();
    // Keys we hold but whose replica set (of full size R) no longer includes us.
    let mut outside: HashMap<FileKey, (u64, Vec<PeerId>)> = HashMap::new();
    for (key, state) in all {
        let Some(head) = state.head() else { continue };
        let version = head.version;
        let position = state.position();
        let set = ctx.replica_set(&head.name).await;
        if !set.contains(&ctx.local) && set.len() >= ctx.config.replication {
            outside.insert(key, (version, set.clone()));
        }
        for peer in set {
            if peer != ctx.local {
                per_peer.entry(peer).or_default().push((key, position));
            }
        }
        states.insert(key, state);
    }
    let states = Arc::new(states);
    let confirmed: Vec<Vec<FileKey>> = stream::iter(per_peer)
        .map(|(peer, entries)| {
            let states = states.clone();
            async move {
                let mut ok = Vec::new();
                for chunk in entries.chunks(DIGEST_CHUNK) {
                    ok.extend(exchange(ctx, peer, chunk.to_vec(), &states).await);
                }
                ok
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    // Hand-over complete: every member of the new set holds at least our version.
    let mut counts: HashMap<FileKey, usize> = HashMap::new();
    for key in confirmed.into_iter().flatten() {
        *counts.entry(key).or_default() += 1;
    }
    for (key, (version, set)) in outside {
        if counts.get(&key).copied().unwrap_or(0) < set.len() {
            continue;
        }
        // The members said they have it; before our copy goes, read it back and check it.
        let Some(state) = states.get(&key) else {
            continue;
        };
        if !handed_over(ctx, state, set).await {
            continue;
        }
        match ctx.store.remove_state(key).await {
            Ok(()) => tracing::info!(%key, version, "handed record over to its new replica set"),
            Err(e) => tracing::warn!(%key, "sync: cannot drop a handed-over record: {e}"),
        }
    }
}

/// Whether a majority of the new replica set `set` (the one that claimed it) holds,
/// verified, our version of the file or a newer one of the same history: only then may we
/// drop our copy.
async fn handed_over(ctx: &Arc<Ctx>, ours: &FileState, set: Vec<PeerId>) -> bool {
    let Some(head) = ours.head() else {
        return false;
    };
    let set_len = set.len();
    match quorum::read_from(ctx, &head.name, None, set).await {
        Ok(read) => read.best.is_some_and(|(_, holding, winner)| {
            holding.len() >= majority(set_len.max(1))
                && winner.position().version >= head.version
                && compatible(ours, &winner)
        }),
        Err(e) => {
            tracing::debug!(name = %head.name, "sync: hand-over not confirmed: {e}");
            false
        }
    }
}

/// Exchanges one digest with `peer` and settles the differences. Returns the keys the peer
/// now holds at our version or newer.
async fn exchange(
    ctx: &Arc<Ctx>,
    peer: PeerId,
    entries: Vec<(FileKey, Position)>,
    states: &HashMap<FileKey, FileState>,
) -> Vec<FileKey> {
    let mine: HashMap<FileKey, Position> = entries.iter().copied().collect();
    let theirs = match ctx.net.meta(peer, MetaRequest::Digest { entries }).await {
        Ok(MetaResponse::Digest { entries }) => entries,
        Ok(other) => {
            tracing::debug!(%peer, "sync: unexpected digest reply {other:?}");
            return Vec::new();
        }
        Err(e) => {
            tracing::debug!(%peer, "sync: {e}");
            return Vec::new();
        }
    };
    let mut confirmed = Vec::new();
    for (key, theirs) in theirs {
        let Some(mine) = mine.get(&key).copied() else {
            continue; // not something we asked about
        };
        // Hand-over needs the version only; the holder revision is settled below.
        if theirs.version >= mine.version {
            confirmed.push(key);
        }
        if theirs < mine {
            if let Some(state) = states.get(&key) {
                let req = MetaRequest::Replicate {
                    key,
                    state: root::vouched(ctx, &key, state),
                };
                match ctx.net.meta(peer, req).await {
                    Ok(MetaResponse::Replicated) => {
                        if theirs.version < mine.version {
                            confirmed.push(key);
                        }
                        tracing::info!(%peer, %key, from = ?theirs, to = ?mine, "sync: pushed newer record")
                    }
                    Ok(other) => tracing::debug!(%peer, %key, "sync: push refused: {other:?}"),
                    Err(e) => tracing::debug!(%peer, %key, "sync: push failed: {e}"),
                }
            }
        } else if theirs > mine {
            let req = MetaRequest::Fetch { key, note: None };
            if let Ok(MetaResponse::State { state: Some(state) }) = ctx.net.meta(peer, req).await {
                // Through the same checks as any copy a root sends.
                let reply = root::handle(ctx, peer, MetaRequest::Replicate { key, state }).await;
                match reply {
                    MetaResponse::Replicated => {
                        tracing::info!(%peer, %key, from = ?mine, to = ?theirs, "sync: pulled newer record")
                    }
                    other => tracing::warn!(%peer, %key, "sync: pulled record refused: {other:?}"),
                }
            }
        }
    }
    confirmed
}
