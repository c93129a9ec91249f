//! Graceful leave (`swarmstore node --drain`, or [`Node::drain`](super::Node::drain)).
//!
//! The node stops taking data (it drops out of every candidate list), copies each record it
//! holds to the replica set that forms without it, and hands each block copy the records list
//! it as holding to a new holder (the new holder pulls it from us), telling the file's root to
//! swap us for it. While leaving it takes no new block copies, and a record replica that
//! arrives late (from a root that does not know we leave) is passed on at once. When drain
//! returns, leaving loses no replica.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::{quorum, root, Ctx, NodeError};
use crate::ids::FileKey;
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::FileState;

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
    let mut handed: HashMap<FileKey, u64> = HashMap::new();
    hand_records(ctx, &mut handed, &mut report).await;

    let refs = match ctx.store.block_refs().await {
        Ok(refs) => refs,
        Err(e) => {
            // Records are handed over; block copies stay for repair to find elsewhere.
            report.failures.push(format!("cannot list block refs: {e}"));
            Vec::new()
        }
    };
    let jobs: Vec<(crate::ids::BlockId, String)> = refs
        .into_iter()
        .filter(|(id, _)| ctx.store.blocks.contains(id))
        .flat_map(|(id, r)| r.files.into_iter().map(move |f| (id, f)))
        .collect();
    let results: Vec<Option<Result<(), NodeError>>> = stream::iter(jobs)
        .map(|(id, file)| async move { hand_over(ctx, id, &file).await })
        .buffer_unordered(4)
        .collect()
        .await;
    for r in results.into_iter().flatten() {
        report.blocks += 1;
        match r {
            Ok(()) => report.blocks_handed += 1,
            Err(e) => report.failures.push(e.to_string()),
        }
    }
    // Versions that reached us meanwhile (late replicas) go too.
    hand_records(ctx, &mut handed, &mut report).await;
    tracing::info!(?report, "drained");
    report
}

/// Hands every record that is new or changed since it was last handed, pass after pass, until
/// a pass finds nothing new (replicas keep arriving from roots that do not know we leave).
async fn hand_records(
    ctx: &Arc<Ctx>,
    handed: &mut HashMap<FileKey, u64>,
    report: &mut DrainReport,
) {
    for _ in 0..4 {
        let records = match ctx.store.states().await {
            Ok(records) => records,
            Err(e) => {
                report.failures.push(format!("cannot list records: {e}"));
                return;
            }
        };
        let fresh: Vec<(FileKey, FileState)> = records
            .into_iter()
            // Only newer versions: our copy of a handed version may already be stale (the new
            // root swaps holders in its own), and an equal version would overwrite that.
            .filter(|(key, state)| {
                handed
                    .get(key)
                    .is_none_or(|v| state.position().version > *v)
            })
            .collect();
        if fresh.is_empty() {
            return;
        }
        for (key, state) in fresh {
            let first = !handed.contains_key(&key);
            if first {
                report.records += 1;
            }
            match hand_record(ctx, key, &state).await {
                Ok(()) if first => report.records_handed += 1,
                Ok(()) => {}
                Err(e) => report.failures.push(e.to_string()),
            }
            handed.insert(key, state.position().version);
        }
    }
}

/// Passes the record we hold for `key` on to the replica set that forms without us (a replica
/// that reached us after drain began).
pub async fn forward_record(ctx: &Arc<Ctx>, key: FileKey) {
    if let Some(state) = ctx.stored_state(key).await {
        if let Err(e) = hand_record(ctx, key, &state).await {
            tracing::warn!("leaving: {e}");
        }
    }
}

/// Copies one record to every member of its new replica set, a few tries each: a majority
/// would keep it readable, but with repair slow a missing copy would stay missing.
async fn hand_record(ctx: &Arc<Ctx>, key: FileKey, state: &FileState) -> Result<(), NodeError> {
    let Some(name) = state.head().map(|h| h.name.clone()) else {
        return Ok(());
    };
    let set = ctx.replica_set(&name).await;
    let mut missing: Vec<libp2p::PeerId> = set.clone();
    let mut errors = Vec::new();
    for attempt in 0..3 {
        if missing.is_empty() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        let replies = futures::future::join_all(missing.iter().map(|peer| {
            let req = MetaRequest::Replicate {
                key,
                state: root::vouched(ctx, &key, state),
            };
            async move { (*peer, ctx.net.meta(*peer, req).await) }
        }))
        .await;
        missing.clear();
        errors.clear();
        for (peer, reply) in replies {
            match reply {
                Ok(MetaResponse::Replicated) => {}
                Ok(other) => {
                    missing.push(peer);
                    errors.push(format!("{peer}: {other:?}"));
                }
                Err(e) => {
                    missing.push(peer);
                    errors.push(format!("{peer}: {e}"));
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NodeError::Refused(format!(
            "record {name:?}: {} of {} copies ({})",
            set.len() - missing.len(),
            set.len(),
            errors.join("; ")
        )))
    }
}

/// Hands our copy of `id` (listed for `file`) to a new holder. `None` when the file's records
/// do not list us for this block (nothing to hand over).
async fn hand_over(
    ctx: &Arc<Ctx>,
    id: crate::ids::BlockId,
    file: &str,
) -> Option<Result<(), NodeError>> {
    let (root, _, state) = quorum::read_state(ctx, file, None).await.ok()??;
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
            other => Err(NodeError::Refused(format!(
                "block {id}: root did not take the new holder: {other:?}"
            ))),
        });
    }
    Some(Err(NodeError::Refused(format!(
        "block {id} of {file:?}: no peer took it"
    ))))
}
