//! The block-holder role: serves `/swarmstore/block/1` from the local block store.
//!
//! Every block given to us is checked against its id before it is stored; every block read
//! back is checked before it is served (the store does both), so wrong bytes are answered with
//! an error, never stored or passed on.

use std::sync::Arc;

use libp2p::PeerId;

use super::Ctx;
use crate::ids::BlockId;
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::record::now_ms;
use crate::store::BlockError;

pub async fn handle(ctx: &Arc<Ctx>, from: PeerId, req: BlockRequest) -> BlockResponse {
    match req {
        BlockRequest::Put { id, file, data } => put(ctx, from, id, &file, data).await,
        BlockRequest::Get { id } => get(ctx, id).await,
    }
}

async fn put(
    ctx: &Arc<Ctx>,
    from: PeerId,
    id: BlockId,
    file: &str,
    data: Vec<u8>,
) -> BlockResponse {
    if let Some(free) = ctx.local_free() {
        if !ctx.store.blocks.contains(&id) && free < data.len() as u64 {
            return BlockResponse::Error {
                message: format!("node {} is full ({free} bytes free)", ctx.local),
            };
        }
    }
    let store = ctx.store.clone();
    let file = file.to_string();
    let result = tokio::task::spawn_blocking(move || {
        store.blocks.put(&id, &data)?;
        if let Err(e) = store.records.add_block_ref(&id, &file, now_ms()) {
            // Without a ref the block is never collected: a leak, not a loss.
            tracing::warn!(block = %id, "cannot note block ref: {e}");
        }
        Ok::<_, BlockError>(())
    })
    .await;
    match result {
        Ok(Ok(())) => BlockResponse::Stored,
        Ok(Err(e @ BlockError::WrongHash(..))) => {
            tracing::warn!(peer = %from, "rejected block: {e}");
            BlockResponse::Error {
                message: e.to_string(),
            }
        }
        Ok(Err(e)) => {
            tracing::error!(block = %id, "cannot store block: {e}");
            BlockResponse::Error {
                message: e.to_string(),
            }
        }
        Err(e) => BlockResponse::Error {
            message: format!("store task failed: {e}"),
        },
    }
}

async fn get(ctx: &Arc<Ctx>, id: BlockId) -> BlockResponse {
    let store = ctx.store.clone();
    match tokio::task::spawn_blocking(move || store.blocks.get(&id)).await {
        Ok(Ok(Some(data))) => BlockResponse::Data { data },
        Ok(Ok(None)) => BlockResponse::NotFound,
        Ok(Err(e)) => BlockResponse::Error {
            message: e.to_string(),
        },
        Err(e) => BlockResponse::Error {
            message: format!("store task failed: {e}"),
        },
    }
}
