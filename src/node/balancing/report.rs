//! This node's load report: the meter's smoothed figures, storage, and the hottest blocks and
//! files with the names the manager needs to act on them (looked up in the local store, and
//! cached, so a slow lookup costs a report its hot items, never the round).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};

use super::apply::ref_files;
use crate::balance::view::SOURCE_UNLISTED;
use crate::ids::{BlockId, FileKey};
use crate::node::possession::listed_holders;
use crate::node::Ctx;
use crate::protocol::gossip::{self as wire, BlockHeat, FileHeat, LoadReport};
use crate::record::now_ms;
use crate::store::free_disk;

/// This node's load report for the round that just ended (`secs` long).
pub async fn build(ctx: &Arc<Ctx>, secs: f64) -> LoadReport {
    let b = &ctx.balance;
    let sample = b.meter.sample(secs, wire::TOP_BLOCKS, wire::TOP_FILES);
    let bandwidth = b.reported_capacity(&sample);
    let used = ctx.store.blocks.used_bytes();
    let capacity = ctx
        .config
        .capacity
        .unwrap_or_else(|| used.saturating_add(free_disk(&ctx.config.data_dir).unwrap_or(0)));
    // Names come from the local store (and, for files, the replica set in large swarms): a
    // slow answer costs this report its hot items, never the round.
    let budget = b.config.report_interval / 2;
    let mut hot_blocks = tokio::time::timeout(budget, describe_blocks(ctx, &sample.hot_blocks))
        .await
        .unwrap_or_default();
    {
        // A base copy no record lists here is not ours to report: named, it made the view
        // count this node a holder, and the manager planned the same move off it again and
        // again, each skipped by its target (a jitter run: one block five times in 100 s).
        // Reads of it still count in the node's load; it goes at collection.
        let mut st = b.state();
        note_refused_sources(&mut st, &ctx.local);
        hot_blocks.retain(|h| h.extra || !st.holdings.lately_unlisted(&h.id));
    }
    if hot_blocks.len() < wire::TOP_BLOCKS && above_storage_band(ctx, used, capacity) {
        let room = wire::TOP_BLOCKS - hot_blocks.len();
        let offered = tokio::time::timeout(budget, cold_blocks(ctx, &hot_blocks, room))
            .await
            .unwrap_or_default();
        hot_blocks.extend(offered);
    }
    let hot_files = tokio::time::timeout(budget, describe_files(ctx, &sample.hot_files))
        .await
        .unwrap_or_default();
    let seq = b.report_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let st = b.state();
    LoadReport {
        seq,
        at_ms: now_ms(),
        load: sample.load,
        bandwidth,
        meta_rps: sample.meta_rps,
        block_rps: sample.block_rps,
        block_bps: sample.block_bps,
        inflight: sample.inflight,
        used,
        capacity,
        zone: b.config.zone.clone(),
        role: st.election.role(),
        term: st.election.term(),
        served_blocks: b.meter.served().blocks,
        hot_blocks,
        hot_files,
        extras: st.holdings.extras_list(),
        delegations: st.holdings.delegations_list(now_ms()),
        outcomes: st.holdings.recent_outcomes(),
    }
}

/// Whether this node holds more than the storage band allows, by the storage figures of the
/// reports it has (its own included): only then does it offer cold blocks for moves.
fn above_storage_band(ctx: &Arc<Ctx>, used: u64, capacity: u64) -> bool {
    let util = |used: u64, cap: u64| used as f64 / cap.max(1) as f64;
    let st = ctx.balance.state();
    let (mut sum, mut n) = (util(used, capacity), 1usize);
    for (peer, r) in st.view.reports() {
        if *peer != ctx.local {
            sum += util(r.used.min(r.capacity), r.capacity);
            n += 1;
        }
    }
    let mean = sum / n as f64;
    n > 1 && util(used, capacity) > mean * (1.0 + ctx.balance.config.policy.storage_band)
}

/// Up to `room` base blocks nobody reads, from a random place in the store, offered at heat 0
/// beside the hot ones. The manager knows only the blocks reports name, and moves only blocks
/// it knows: without this offer a full node whose blocks are cold is never relieved (HDFS's
/// balancer moves any block; so must the storage band). Copies a move lately found no record
/// lists are left out: offered, they were planned again every round and skipped again (the
/// 1-hour soak: 325 of the last 500 decisions).
async fn cold_blocks(ctx: &Arc<Ctx>, hot: &[BlockHeat], room: usize) -> Vec<BlockHeat> {
    let start = rand::random::<u64>() as usize;
    let sampled = ctx.store.blocks.sample(start, room.saturating_mul(2));
    let picked: Vec<(BlockId, f64, u64)> = {
        // (`build` has noted the copies our moves' targets found unlisted.)
        let st = ctx.balance.state();
        sampled
            .into_iter()
            .filter(|(id, _)| !hot.iter().any(|h| h.id == *id))
            .filter(|(id, _)| !st.holdings.lately_unlisted(id))
            // Being moved away already: offered again, it was planned onto a second target
            // that then found this copy unlisted.
            .filter(|(id, _)| !st.holdings.moves_out.iter().any(|m| m.block == *id))
            .map(|(id, len)| (id, 0.0, u64::from(len)))
            .collect()
    };
    let described: Vec<BlockHeat> = describe_blocks(ctx, &picked)
        .await
        .into_iter()
        .filter(|b| !b.extra)
        .collect();
    // Only copies a record lists here are offered: a node above the band also holds copies
    // awaiting collection (old versions' blocks, moved-away copies), and each one offered
    // became a move its source skipped (the soak: a steady trickle of them, one failed move
    // per copy). One quorum read per copy, its verdict cached.
    let mut checked = stream::iter(described)
        .map(|b| async move { listed_here(ctx, &b).await.then_some(b) })
        .buffer_unordered(8);
    let mut out = Vec::with_capacity(room);
    while let Some(b) = checked.next().await {
        if let Some(b) = b {
            out.push(b);
            if out.len() == room {
                break;
            }
        }
    }
    out
}

/// Moves of ours a target skipped because no record lists our copy: such copies are
/// remembered as unlisted (the same copies offered again were planned again every round; the
/// soak: 20 of n0's last 32 decisions). A lying target only keeps a copy from moving and its
/// heat from our report: balance, not data.
fn note_refused_sources(st: &mut super::State, local: &libp2p::PeerId) {
    for b in st.view.moves_skipped(local, SOURCE_UNLISTED) {
        if !st.holdings.lately_unlisted(&b) {
            st.holdings.note_unlisted(b);
        }
    }
}

/// Whether the record of `b.file` lists this node as a holder of `b.id` (cached either way; a
/// read that fails says no for this round only).
async fn listed_here(ctx: &Arc<Ctx>, b: &BlockHeat) -> bool {
    if ctx.balance.state().holdings.lately_listed(&b.id) {
        return true;
    }
    match listed_holders(ctx, &b.file, &b.id).await {
        Ok(Some(holders)) if holders.contains(&ctx.local) => {
            ctx.balance.state().holdings.note_listed(b.id);
            true
        }
        Ok(_) => {
            ctx.balance.state().holdings.note_unlisted(b.id);
            false
        }
        Err(_) => false,
    }
}

/// Names and flags for the hottest blocks of a sample.
pub async fn describe_blocks(ctx: &Arc<Ctx>, hot: &[(BlockId, f64, u64)]) -> Vec<BlockHeat> {
    let mut out = Vec::with_capacity(hot.len());
    for &(id, heat, size) in hot {
        let (known, extra) = {
            let st = ctx.balance.state();
            let extra = st.holdings.extras.get(&id).map(|x| x.held.file.clone());
            let known = extra
                .clone()
                .or_else(|| st.holdings.block_names.get(&id).cloned());
            (known, extra.is_some())
        };
        let name = match known {
            Some(n) => n,
            None => {
                let Some(n) = ref_files(ctx, id).await.into_iter().next() else {
                    continue; // served but not ours to describe (no ref yet)
                };
                let mut st = ctx.balance.state();
                st.holdings.block_names.insert(id, n.clone());
                n
            }
        };
        out.push(BlockHeat {
            id,
            file: name,
            size,
            heat,
            extra,
        });
    }
    out
}

/// Names and root flags for the hottest files of a sample.
pub async fn describe_files(ctx: &Arc<Ctx>, hot: &[(FileKey, f64)]) -> Vec<FileHeat> {
    let round = ctx.balance.config.report_interval;
    let mut out = Vec::with_capacity(hot.len());
    for &(key, heat) in hot {
        let cached = {
            let st = ctx.balance.state();
            if let Some(d) = st.holdings.delegated.get(&key) {
                Some((d.name.clone(), false))
            } else {
                st.holdings
                    .file_names
                    .get(&key)
                    .filter(|(_, _, at)| at.elapsed() < round * 10)
                    .map(|(n, r, _)| (n.clone(), *r))
            }
        };
        let (name, root) = match cached {
            Some(c) => c,
            None => {
                let state = ctx.stored_state(key).await;
                let Some(name) = state.and_then(|s| s.head().map(|h| h.name.clone())) else {
                    continue;
                };
                let root = ctx.replica_set(&name).await.first() == Some(&ctx.local);
                let mut st = ctx.balance.state();
                st.holdings
                    .file_names
                    .insert(key, (name.clone(), root, Instant::now()));
                (name, root)
            }
        };
        out.push(FileHeat { name, heat, root });
    }
    out
}
