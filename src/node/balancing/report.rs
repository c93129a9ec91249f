//! This node's load report: the meter's smoothed figures, storage, and the hottest blocks and
//! files with the names the manager needs to act on them (looked up in the local store, and
//! cached, so a slow lookup costs a report its hot items, never the round).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::apply::ref_files;
use crate::ids::{BlockId, FileKey};
use crate::node::Ctx;
use crate::protocol::gossip::{self as wire, BlockHeat, FileHeat, LoadReport};
use crate::record::now_ms;

/// This node's load report for the round that just ended (`secs` long).
pub async fn build(ctx: &Arc<Ctx>, secs: f64) -> LoadReport {
    let b = &ctx.balance;
    let sample = b.meter.sample(secs, wire::TOP_BLOCKS, wire::TOP_FILES);
    let used = ctx.store.blocks.used_bytes();
    let capacity = ctx
        .config
        .capacity
        .unwrap_or_else(|| used.saturating_add(free_disk(&ctx.config.data_dir)));
    // Names come from the local store (and, for files, the replica set in large swarms): a
    // slow answer costs this report its hot items, never the round.
    let budget = b.config.report_interval / 2;
    let hot_blocks = tokio::time::timeout(budget, describe_blocks(ctx, &sample.hot_blocks))
        .await
        .unwrap_or_default();
    let hot_files = tokio::time::timeout(budget, describe_files(ctx, &sample.hot_files))
        .await
        .unwrap_or_default();
    let seq = b.report_seq.fetch_add(1, Ordering::Relaxed) + 1;
    let st = b.state();
    LoadReport {
        seq,
        at_ms: now_ms(),
        load: sample.load,
        bandwidth: b.config.bandwidth as f64,
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

/// Free bytes on the file system of `dir` (0 if unknown).
fn free_disk(dir: &std::path::Path) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return 0;
        };
        let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is a valid C string and `s` a writable statvfs; we read it only when
        // the call reports success.
        let rc = unsafe { libc::statvfs(path.as_ptr(), s.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        // SAFETY: statvfs returned 0, so it filled `s`.
        let s = unsafe { s.assume_init() };
        // The field types differ between platforms (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        let (avail, frsize) = (s.f_bavail as u64, s.f_frsize as u64);
        avail.saturating_mul(frsize)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        0
    }
}

/// Names and flags for the hottest blocks of a sample.
pub async fn describe_blocks(ctx: &Arc<Ctx>, hot: &[(BlockId, f64, u64)]) -> Vec<BlockHeat> {
    let mut out = Vec::with_capacity(hot.len());
    for &(id, heat, size) in hot {
        let (known, extra) = {
            let st = ctx.balance.state();
            let extra = st.holdings.extras.get(&id).map(|x| x.file.clone());
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
                if st.holdings.block_names.len() > 4096 {
                    st.holdings.block_names.clear();
                }
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
                if st.holdings.file_names.len() > 4096 {
                    st.holdings.file_names.clear();
                }
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
