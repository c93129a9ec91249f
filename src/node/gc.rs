//! Garbage collection of copies nothing needs: blocks no retained version of any file
//! references, and copies no retained version lists *this node* as holding.
//!
//! Holder-driven mark and sweep. Each block carries the names of the files it was stored for;
//! a sweep asks each such file's replica set for its state (every answer verified, see
//! `node::quorum`). A block that no retained version of any of its files references, by a
//! majority of each file's replica set, is marked; if it is still unreferenced a full grace
//! period later, it is deleted. A copy that is referenced but where no retained version lists
//! this node as a holder (a stranger's `Pull` naming a real file, a repair copy the root never
//! listed, an extra replica forgotten in a restart) is marked the same way and deleted after
//! the grace period only if R listed holders prove possession (`node::possession`): an
//! unlisted copy may be the last good one, and then it stays. Copies kept for a decision (an
//! extra replica, a move in progress) are left alone. Anything uncertain keeps the block: a file whose replica set
//! does not answer with a majority, a block without refs, a block younger than the grace period
//! (a put may still be uploading; a publish whose blocks were collected meanwhile is refused).
//! Blocks shared by several files survive until the last reference goes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use super::{possession, quorum, Ctx};
use crate::ids::BlockId;
use crate::record::now_ms;
use crate::store::BlockRefs;

/// What a sweep learned about one file.
enum Referenced {
    /// The blocks its retained versions reference (none once deleted or never published), and
    /// for each whether some version lists this node as a holder.
    Blocks(BTreeMap<BlockId, bool>),
    /// Not enough of its replica set answered: keep everything it might reference.
    Unknown,
}

pub fn sweep_interval(grace: Duration) -> Duration {
    (grace / 4).clamp(Duration::from_millis(250), Duration::from_secs(60))
}

pub async fn run(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(sweep_interval(ctx.config.gc_grace));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sweep(&ctx).await;
    }
}

pub async fn sweep(ctx: &Arc<Ctx>) {
    let grace_ms = ctx.config.gc_grace.as_millis() as u64;
    let now = now_ms();
    let refs = match ctx.store.block_refs().await {
        Ok(refs) => refs,
        Err(e) => return tracing::warn!("gc: cannot list block refs: {e}"),
    };
    let mut candidates: Vec<(BlockId, BlockRefs)> = Vec::new();
    for (id, r) in refs {
        if !ctx.store.blocks.contains(&id) {
            if let Err(e) = ctx.store.remove_block_refs(id).await {
                tracing::warn!(block = %id, "gc: cannot drop the refs of a block gone: {e}");
            }
            continue;
        }
        if now.saturating_sub(r.stored_ms) >= grace_ms && !r.files.is_empty() {
            candidates.push((id, r));
        }
    }
    if candidates.is_empty() {
        return;
    }
    let files: BTreeSet<String> = candidates
        .iter()
        .flat_map(|(_, r)| r.files.iter().cloned())
        .collect();
    let verdicts: HashMap<String, Referenced> = stream::iter(files)
        .map(|name| async move {
            // Only a majority of the replica set, every answer verified, can say what a file
            // no longer references: one stale or lying member must not free a block.
            let verdict = match quorum::read_state_detailed(ctx, &name, None).await {
                Ok(read) if read.is_authoritative() => {
                    let mut blocks = BTreeMap::new();
                    if let Some((_, _, state)) = read.best {
                        for b in state.versions.iter().flat_map(|v| v.blocks.iter()) {
                            *blocks.entry(b.id).or_insert(false) |= b.holders.contains(&ctx.local);
                        }
                    }
                    Referenced::Blocks(blocks)
                }
                _ => Referenced::Unknown,
            };
            (name, verdict)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (id, mut r) in candidates {
        // Needed: some file we cannot judge, or one that lists us as a holder. Referenced
        // only: others are meant to hold it; ours goes once they prove they do.
        let mut needed = ctx.balance.holds_for_decision(&id);
        let mut referenced_by = Vec::new();
        for f in &r.files {
            match verdicts.get(f) {
                Some(Referenced::Blocks(blocks)) => match blocks.get(&id) {
                    Some(true) => needed = true,
                    Some(false) => referenced_by.push(f.clone()),
                    None => {}
                },
                Some(Referenced::Unknown) | None => needed = true,
            }
        }
        if needed {
            if r.unreferenced_since.take().is_some() {
                if let Err(e) = ctx.store.set_block_refs(id, r).await {
                    tracing::warn!(block = %id, "gc: cannot clear its mark: {e}");
                }
            }
            continue;
        }
        if r.unreferenced_since
            .is_some_and(|since| now.saturating_sub(since) >= grace_ms)
        {
            let mut unsafe_reason = None;
            for f in &referenced_by {
                if let Err(why) = possession::safe_to_release(ctx, f, id).await {
                    unsafe_reason = Some(format!("{f}: {why}"));
                    break;
                }
            }
            if let Some(why) = unsafe_reason {
                tracing::info!(block = %id, "gc: keeping an unlisted copy: {why}");
                continue;
            }
        }
        match r.unreferenced_since {
            None => {
                r.unreferenced_since = Some(now);
                if let Err(e) = ctx.store.set_block_refs(id, r).await {
                    tracing::warn!(block = %id, "gc: cannot mark it unreferenced: {e}");
                }
            }
            Some(since) if now.saturating_sub(since) >= grace_ms => {
                let files = r.files.join(", ");
                match ctx.store.remove_block(id).await {
                    Ok(_) => {
                        tracing::info!(block = %id, %files, "gc: collected a copy nothing needs")
                    }
                    Err(e) => tracing::warn!(block = %id, "gc: cannot remove block: {e}"),
                }
            }
            Some(_) => {}
        }
    }
}
