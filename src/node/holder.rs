//! The block-holder role: serves `/swarmstore/block/1` from the local block store.
//!
//! Every block given to us is checked against its id before it is stored; every block read
//! back is checked before it is served (the store does both), so wrong bytes are answered with
//! an error, never stored or passed on.

use std::sync::Arc;

use libp2p::PeerId;

use super::allowance::UNSOLICITED_BYTES;
use super::ctx::WINDOW_SLACK;
use super::Ctx;
use crate::ids::{hash_block, validate_name, BlockId, FileKey};
use crate::protocol::block::{BlockRequest, BlockResponse, MAX_CHAIN, MAX_PROVE};
use crate::record::now_ms;
use crate::record::MAX_BLOCK_SIZE;
use crate::store::{BlockError, StoreError};

/// Most ids one `Has` may ask about, and most sources one `Pull` may name.
pub const MAX_HAS: usize = 8192;
pub const MAX_SOURCES: usize = 16;
/// The answer of a node whose serving cap is booked [`MAX_QUEUE`] ahead.
///
/// [`MAX_QUEUE`]: super::serve_limit::MAX_QUEUE
pub const BUSY: &str = "busy: serving queue full, try another holder";

pub async fn handle(ctx: &Arc<Ctx>, from: PeerId, req: BlockRequest) -> BlockResponse {
    if let Err(message) = check_request(&req) {
        ctx.refusals
            .refuse("invalid block request", Some(from), &message);
        return BlockResponse::Error { message };
    }
    match req {
        BlockRequest::Put { id, file, data } => {
            if let Err(message) = admit(ctx, from, &id, &file, data.len() as u64) {
                ctx.refusals
                    .refuse("unsolicited block", Some(from), &message);
                return BlockResponse::Error { message };
            }
            put(ctx, from, id, &file, data).await
        }
        BlockRequest::PutChain {
            id,
            file,
            data,
            then,
        } => {
            if let Err(message) = admit(ctx, from, &id, &file, data.len() as u64) {
                ctx.refusals
                    .refuse("unsolicited block", Some(from), &message);
                return BlockResponse::Error { message };
            }
            put_chain(ctx, from, id, file, data, then).await
        }
        BlockRequest::Get { id } => {
            // Load measurement: every block served counts, whoever asked.
            let _busy = ctx.balance.meter.begin();
            let arrived = std::time::Instant::now();
            // Charged before the read, so a request waiting for its slot holds no bytes.
            let cost = ctx.store.blocks.len_of(&id).unwrap_or(0);
            if !ctx.balance.serve_slot(u64::from(cost)).await {
                ctx.metrics.serve_busy.inc();
                return BlockResponse::Error {
                    message: BUSY.into(),
                };
            }
            let resp = get(ctx, id).await;
            if let BlockResponse::Data { data } = &resp {
                ctx.balance.meter.block_delay(arrived.elapsed());
                ctx.balance.meter.block_served(id, data.len() as u64);
                ctx.metrics.block_bytes_served.inc_by(data.len() as u64);
            }
            resp
        }
        BlockRequest::Has { ids } => BlockResponse::Have {
            ids: ids
                .into_iter()
                .filter(|id| ctx.store.blocks.contains(id))
                .collect(),
        },
        BlockRequest::Pull { id, file, sources } => {
            // The size is not known yet: a pull counts as the largest block against an
            // allowance.
            if let Err(message) = admit(ctx, from, &id, &file, u64::from(MAX_BLOCK_SIZE)) {
                ctx.refusals
                    .refuse("unsolicited block", Some(from), &message);
                return BlockResponse::Error { message };
            }
            pull(ctx, id, &file, sources).await
        }
        BlockRequest::Prove { nonce, ids } => {
            let _busy = ctx.balance.meter.begin();
            let mut proofs = Vec::new();
            for id in ids.into_iter().filter(|id| ctx.store.blocks.contains(id)) {
                match ctx.store.prove_block(id, nonce).await {
                    Ok(Some(proof)) => proofs.push((id, proof)),
                    Ok(None) => {}
                    // A copy that fails its own check is no copy: leave it out of the proofs.
                    Err(e) => tracing::warn!(block = %id, "cannot prove possession: {e}"),
                }
            }
            BlockResponse::Proofs { proofs }
        }
    }
}

/// One link of a put's write pipeline: stores our copy while forwarding the block to the next
/// peer of the chain, then answers with every peer that stored it (us first).
///
/// The next hop must be a live peer this node would itself place the block on (among the
/// first `R + slack` placement targets): a client cannot make an honest holder push its
/// bytes, or spend its allowance, at peers that would not take them from the client itself.
/// What the rest of the chain reports is kept only for peers the chain named; the root checks
/// every listed holder at publish anyway.
async fn put_chain(
    ctx: &Arc<Ctx>,
    from: PeerId,
    id: BlockId,
    file: String,
    data: Vec<u8>,
    then: Vec<PeerId>,
) -> BlockResponse {
    let len = data.len() as u64;
    let placed: Vec<PeerId> = ctx
        .block_targets(&id, len)
        .into_iter()
        .take(ctx.config.replication + WINDOW_SLACK)
        .collect();
    let next = then
        .first()
        .copied()
        .filter(|p| *p != ctx.local && *p != from && ctx.peers.is_live(p) && placed.contains(p));
    if next.is_none() && !then.is_empty() {
        tracing::debug!(block = %id, "chain ends here: the next hop is not one of ours");
    }
    // One copy of the bytes for the next hop, made before our own store consumes them.
    let onward = next.map(|next| {
        let req = BlockRequest::PutChain {
            id,
            file: file.clone(),
            data: data.clone(),
            then: then[1..].to_vec(),
        };
        (next, req)
    });
    let forward = async {
        let Some((next, req)) = onward else {
            return Vec::new();
        };
        match ctx.net.block(next, req).await {
            Ok(BlockResponse::StoredBy { holders }) => {
                holders.into_iter().filter(|p| then.contains(p)).collect()
            }
            Ok(BlockResponse::Stored) => vec![next],
            Ok(other) => {
                tracing::debug!(block = %id, peer = %next, "chain link refused: {other:?}");
                Vec::new()
            }
            Err(e) => {
                tracing::debug!(block = %id, peer = %next, "chain link failed: {e}");
                Vec::new()
            }
        }
    };
    let (local, downstream) = tokio::join!(put(ctx, from, id, &file, data), forward);
    let mut holders = Vec::with_capacity(1 + downstream.len());
    let mine = match local {
        BlockResponse::Stored => {
            holders.push(ctx.local);
            None
        }
        other => Some(other),
    };
    for p in downstream {
        if !holders.contains(&p) {
            holders.push(p);
        }
    }
    match mine {
        Some(err) if holders.is_empty() => err,
        _ => BlockResponse::StoredBy { holders },
    }
}

/// Whether this node takes a new block of `len` bytes for `file` from `from`: it already has
/// it, or it was assigned (placement picks it for the block, or the request comes from the
/// file's replica set or from this node), or the sender's unsolicited allowance covers it.
fn admit(ctx: &Arc<Ctx>, from: PeerId, id: &BlockId, file: &str, len: u64) -> Result<(), String> {
    if ctx.store.blocks.contains(id) || from == ctx.local {
        return Ok(());
    }
    let placed = ctx
        .block_targets(id, len)
        .iter()
        .take(ctx.config.replication + WINDOW_SLACK)
        .any(|p| *p == ctx.local);
    if placed || ctx.in_key_window(&FileKey::for_name(file), &from) {
        return Ok(());
    }
    if ctx.allowance.take(from, len) {
        return Ok(());
    }
    Err(format!(
        "node {} was not assigned block {id}, and {from} has used its allowance of {} MiB of \
         unsolicited blocks",
        ctx.local,
        UNSOLICITED_BYTES >> 20
    ))
}

/// Bounds on what a block request may carry: a valid file name for the block's ref (names are
/// stored), and short id and source lists.
fn check_request(req: &BlockRequest) -> Result<(), String> {
    match req {
        BlockRequest::Put { file, data, .. } => {
            validate_name(file)?;
            if data.len() > MAX_BLOCK_SIZE as usize {
                return Err(format!(
                    "a block of {} bytes; at most {MAX_BLOCK_SIZE}",
                    data.len()
                ));
            }
            Ok(())
        }
        BlockRequest::PutChain {
            file, data, then, ..
        } => {
            validate_name(file)?;
            if data.len() > MAX_BLOCK_SIZE as usize {
                return Err(format!(
                    "a block of {} bytes; at most {MAX_BLOCK_SIZE}",
                    data.len()
                ));
            }
            if then.len() > MAX_CHAIN {
                return Err(format!("a chain of {}; at most {MAX_CHAIN}", then.len()));
            }
            Ok(())
        }
        BlockRequest::Pull { file, sources, .. } => {
            validate_name(file)?;
            if sources.len() > MAX_SOURCES {
                return Err(format!("{} sources; at most {MAX_SOURCES}", sources.len()));
            }
            Ok(())
        }
        BlockRequest::Has { ids } if ids.len() > MAX_HAS => {
            Err(format!("{} ids in one Has; at most {MAX_HAS}", ids.len()))
        }
        BlockRequest::Prove { ids, .. } if ids.len() > MAX_PROVE => Err(format!(
            "{} ids in one Prove; at most {MAX_PROVE}",
            ids.len()
        )),
        _ => Ok(()),
    }
}

/// Copies a block from the first source that returns the right bytes. A source that answers
/// with wrong bytes or nothing is skipped (and logged): it does not really hold the block.
async fn pull(ctx: &Arc<Ctx>, id: BlockId, file: &str, sources: Vec<PeerId>) -> BlockResponse {
    if ctx.store.blocks.contains(&id) {
        if let Err(e) = ctx
            .store
            .add_block_ref(id, file.to_string(), now_ms())
            .await
        {
            tracing::warn!(block = %id, "cannot note block ref: {e}");
        }
        return BlockResponse::Stored;
    }
    let mut failures = Vec::new();
    for source in sources.into_iter().filter(|s| *s != ctx.local) {
        match ctx.net.block(source, BlockRequest::Get { id }).await {
            Ok(BlockResponse::Data { data }) if data.len() > MAX_BLOCK_SIZE as usize => {
                failures.push(format!("{source}: a block over {MAX_BLOCK_SIZE} bytes"));
            }
            Ok(BlockResponse::Data { data }) => {
                let (actual, data) = hash_block(data).await;
                if actual != id {
                    tracing::warn!(peer = %source, block = %id, "source returned wrong bytes");
                    failures.push(format!("{source}: wrong bytes"));
                    continue;
                }
                return put(ctx, source, id, file, data).await;
            }
            Ok(other) => failures.push(format!("{source}: {other:?}")),
            Err(e) => failures.push(format!("{source}: {e}")),
        }
    }
    BlockResponse::Error {
        message: format!("no source returned block {id}: {}", failures.join("; ")),
    }
}

async fn put(
    ctx: &Arc<Ctx>,
    from: PeerId,
    id: BlockId,
    file: &str,
    data: Vec<u8>,
) -> BlockResponse {
    // A draining node has already handed its copies over; one taken now would leave with it.
    if ctx.is_leaving() {
        return BlockResponse::Error {
            message: format!("node {} is leaving the swarm", ctx.local),
        };
    }
    if let Some(free) = ctx.local_free() {
        if !ctx.store.blocks.contains(&id) && free < data.len() as u64 {
            return BlockResponse::Error {
                message: format!("node {} is full ({free} bytes free)", ctx.local),
            };
        }
    }
    let result = ctx.store.put_block(id, data).await;
    if result.is_ok() {
        // Off the answer path: the ref only tells GC which files to ask about, and a block
        // without one is kept (a leak after a crash, never a loss).
        let ctx = ctx.clone();
        let file = file.to_string();
        tokio::spawn(async move {
            if let Err(e) = ctx.store.add_block_ref(id, file, now_ms()).await {
                tracing::warn!(block = %id, "cannot note block ref: {e}");
            }
        });
    }
    match result {
        Ok(()) => BlockResponse::Stored,
        Err(e @ StoreError::Blocks(BlockError::WrongHash(..))) => {
            tracing::warn!(peer = %from, "rejected block: {e}");
            BlockResponse::Error {
                message: e.to_string(),
            }
        }
        Err(e) => {
            tracing::error!(block = %id, "cannot store block: {e}");
            BlockResponse::Error {
                message: e.to_string(),
            }
        }
    }
}

async fn get(ctx: &Arc<Ctx>, id: BlockId) -> BlockResponse {
    match ctx.store.get_block(id).await {
        Ok(Some(data)) => BlockResponse::Data { data },
        Ok(None) => BlockResponse::NotFound,
        Err(e) => BlockResponse::Error {
            message: e.to_string(),
        },
    }
}
