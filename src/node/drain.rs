//! Graceful leave (`swarmstore node --drain`, or [`Node::drain`](super::Node::drain)).
//!
//! The node stops taking data (it drops out of every candidate list), copies each record it
//! holds to the replica set that forms without it, and hands each block copy the records list
//! it as holding to a new holder (the new holder pulls it from us), telling the file's root to
//! swap us for it. When drain returns, leaving loses no replica.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::{access, Ctx};
use crate::placement::majority;
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::meta::{MetaRequest, MetaResponse};

#[derive(Debug, Default, Clone, Serialize)]
pub struct DrainReport {
    pub records: usize,
    pub records_handed: usize,
    pub blocks: usize,
    pub blocks_handed: usize,
    pub failures: Vec<String>,
}

pub async fn drain(ctx: &Arc<Ctx>) -> DrainReport {
    ctx.leaving.store(true, Ordering::Relaxed);
    let mut report = DrainReport::default();

    let store = ctx.store.clone();
    let records = tokio::task::spawn_blocking(move || store.records.all())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    report.records = records.len();
    for (key, state) in records {
        let Some(name) = state.head().map(|h| h.name.clone()) else {
            continue;
        };
        let set = ctx.replica_set(&name).await;
        let mut acked = 0;
        for peer in &set {
            let req = MetaRequest::Replicate {
                key,
                state: state.clone(),
            };
            if let Ok(MetaResponse::Replicated) = ctx.net.meta(*peer, req).await {
                acked += 1;
            }
        }
        if acked >= majority(set.len().max(1)) {
            report.records_handed += 1;
        } else {
            report
                .failures
                .push(format!("record {name:?}: {acked} of {} copies", set.len()));
        }
    }

    let store = ctx.store.clone();
    let refs = tokio::task::spawn_blocking(move || store.records.block_refs())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let jobs: Vec<(crate::ids::BlockId, String)> = refs
        .into_iter()
        .filter(|(id, _)| ctx.store.blocks.contains(id))
        .flat_map(|(id, r)| r.files.into_iter().map(move |f| (id, f)))
        .collect();
    let results: Vec<Option<Result<(), String>>> = stream::iter(jobs)
        .map(|(id, file)| async move { hand_over(ctx, id, &file).await })
        .buffer_unordered(4)
        .collect()
        .await;
    for r in results.into_iter().flatten() {
        report.blocks += 1;
        match r {
            Ok(()) => report.blocks_handed += 1,
            Err(e) => report.failures.push(e),
        }
    }
    tracing::info!(?report, "drained");
    report
}

/// Hands our copy of `id` (listed for `file`) to a new holder. `None` when the file's records
/// do not list us for this block (nothing to hand over).
async fn hand_over(
    ctx: &Arc<Ctx>,
    id: crate::ids::BlockId,
    file: &str,
) -> Option<Result<(), String>> {
    let (root, _, state) = access::read_state(ctx, file, None).await.ok()??;
    let listed: Vec<libp2p::PeerId> = state
        .versions
        .iter()
        .flat_map(|v| v.blocks.iter())
        .filter(|b| b.id == id)
        .flat_map(|b| b.holders.iter().copied())
        .collect();
    if !listed.contains(&ctx.local) {
        return None;
    }
    let targets: Vec<libp2p::PeerId> = ctx
        .block_targets(&id, 1)
        .into_iter()
        .filter(|p| !listed.contains(p))
        .collect();
    for target in targets {
        let req = BlockRequest::Pull {
            id,
            file: file.to_string(),
            sources: vec![ctx.local],
        };
        if !matches!(ctx.net.block(target, req).await, Ok(BlockResponse::Stored)) {
            continue;
        }
        let set = MetaRequest::SetHolders {
            name: file.to_string(),
            block: id,
            add: vec![target],
            remove: vec![ctx.local],
        };
        return Some(match ctx.meta_to(root, set).await {
            Ok(MetaResponse::HoldersSet) => Ok(()),
            other => Err(format!(
                "block {id}: root did not take the new holder: {other:?}"
            )),
        });
    }
    Some(Err(format!("block {id} of {file:?}: no peer took it")))
}
