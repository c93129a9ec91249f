//! Block repair: every root keeps each block of its files on R live holders.
//!
//! Every `repair_interval` a node walks the files it is root for (first of the replica set),
//! probes each listed holder with one batched `Has` per peer, and counts a block's good
//! holders: live peers that say they have it and, for a random sample of blocks each round,
//! prove it by answering a fresh challenge over the bytes (`BlockRequest::Prove`, checked
//! against our own copy or the answer most holders agree on). Below R, new holders chosen by the placement
//! rules pull the block straight from a good holder (one network copy per lost replica, checked
//! against the block id by the puller), and the record's holder lists are updated and copied
//! to the replica set. A holder that is down, lost its copy, or serves wrong bytes counts as not
//! holding the block. Repair bandwidth is capped so it never starves clients.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use libp2p::PeerId;

use super::holders::{apply_holder_changes, HolderChange};
use super::Ctx;
use crate::ids::{BlockId, Nonce, Proof};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::status::RepairStatus;

/// Repair counters, shown by `status`.
#[derive(Default)]
pub struct RepairStats {
    pub under_replicated: AtomicUsize,
    pub queue: AtomicUsize,
    pub lost: AtomicUsize,
    pub repaired_blocks: AtomicU64,
    pub repaired_bytes: AtomicU64,
    pub rounds: AtomicU64,
}

impl RepairStats {
    pub fn snapshot(&self) -> RepairStatus {
        RepairStatus {
            under_replicated: self.under_replicated.load(Ordering::Relaxed),
            queue: self.queue.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            repaired_blocks: self.repaired_blocks.load(Ordering::Relaxed),
            repaired_bytes: self.repaired_bytes.load(Ordering::Relaxed),
            rounds: self.rounds.load(Ordering::Relaxed),
        }
    }
}

/// A byte-rate limiter: each copy waits for its share of the repair bandwidth.
struct Throttle {
    bytes_per_sec: f64,
    next_free: tokio::sync::Mutex<Instant>,
}

impl Throttle {
    async fn take(&self, bytes: u64) {
        let wait = {
            let mut next = self.next_free.lock().await;
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec.max(1.0));
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

pub async fn run(ctx: Arc<Ctx>) {
    let throttle = Throttle {
        bytes_per_sec: ctx.config.repair_bandwidth as f64,
        next_free: tokio::sync::Mutex::new(Instant::now()),
    };
    let mut tick = tokio::time::interval(ctx.config.repair_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut surplus = Surplus::new();
    loop {
        tick.tick().await;
        round(&ctx, &throttle, &mut surplus).await;
    }
}

/// Blocks listed on more than R live, proven holders, and since when. Bounded by the blocks
/// this node is root for: an entry not seen surplus in a round is forgotten.
type Surplus = HashMap<(String, BlockId), Instant>;

/// How long a block may stay on more than R listed holders before its root unlists the
/// surplus. A move lists its target before the source lets go, so R + 1 is normal for a
/// balancing round or two; past ten rounds (and six repair rounds, so a probe that failed
/// once is not the reason) the move is stuck (its source could not prove the others' copies
/// in time, or gave up before the target listed itself) and is rolled back. Without this a
/// stuck move left R + 1 copies for good.
fn surplus_grace(repair_interval: Duration, report_interval: Duration) -> Duration {
    (repair_interval * 6).max(report_interval * 10)
}

/// One block of one file as the root sees it.
struct Tracked {
    file: String,
    len: u32,
    listed: Vec<PeerId>,
}

async fn round(ctx: &Arc<Ctx>, throttle: &Throttle, surplus: &mut Surplus) {
    let stats = &ctx.repair;
    let all = match ctx.store.states().await {
        Ok(all) => all,
        Err(e) => return tracing::warn!("repair: cannot list records: {e}"),
    };
    // Blocks of every retained, live version of the files we are root for.
    let mut blocks: BTreeMap<(String, BlockId), Tracked> = BTreeMap::new();
    for (_, state) in all {
        let Some(head) = state.head() else { continue };
        if head.tombstone || ctx.replica_set(&head.name).await.first() != Some(&ctx.local) {
            continue;
        }
        for version in &state.versions {
            // Inline bytes are copied with the record; only held blocks need holders.
            for b in version.blocks.iter().filter(|b| !b.is_inline()) {
                let t = blocks
                    .entry((head.name.clone(), b.id))
                    .or_insert_with(|| Tracked {
                        file: head.name.clone(),
                        len: b.len,
                        listed: Vec::new(),
                    });
                for h in &b.holders {
                    if !t.listed.contains(h) {
                        t.listed.push(*h);
                    }
                }
            }
        }
    }
    stats.rounds.fetch_add(1, Ordering::Relaxed);
    if blocks.is_empty() {
        stats.under_replicated.store(0, Ordering::Relaxed);
        stats.lost.store(0, Ordering::Relaxed);
        return;
    }

    // One probe per listed holder: which of our blocks do you really have?
    let mut asks: HashMap<PeerId, HashSet<BlockId>> = HashMap::new();
    for ((_, id), t) in &blocks {
        for h in &t.listed {
            asks.entry(*h).or_default().insert(*id);
        }
    }
    let mut held: HashMap<PeerId, HashSet<BlockId>> = stream::iter(asks)
        .map(|(peer, ids)| async move {
            let have = probe(ctx, peer, ids.into_iter().collect()).await;
            (peer, have)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // `Has` is a claim: a sample of the claimed copies must also prove possession, and a
    // copy that fails counts as missing (so repair re-creates it elsewhere).
    for (peer, id) in audit(ctx, &blocks, &held).await {
        if let Some(ids) = held.get_mut(&peer) {
            ids.remove(&id);
        }
    }

    let r = ctx.config.replication;
    let mut under = 0;
    let mut lost = 0;
    let mut jobs = Vec::new();
    let mut trims = Vec::new();
    let now = Instant::now();
    let grace = surplus_grace(
        ctx.config.repair_interval,
        ctx.balance.config.report_interval,
    );
    let mut still_surplus = Surplus::new();
    for (key @ (_, id), t) in &blocks {
        let good: Vec<PeerId> = t
            .listed
            .iter()
            .filter(|h| held.get(h).is_some_and(|s| s.contains(id)))
            .copied()
            .collect();
        let bad: Vec<PeerId> = t
            .listed
            .iter()
            .filter(|h| !good.contains(h))
            .copied()
            .collect();
        if good.len() > r {
            let since = surplus.get(key).copied().unwrap_or(now);
            if now.duration_since(since) >= grace {
                // Unlist the last-listed surplus (a stuck move's target), atomically checked
                // to leave R of the proven holders listed whatever else changes meanwhile.
                let mut remove = good[r..].to_vec();
                tracing::info!(block = %id, file = %t.file, unlisted = ?remove,
                    "more than R holders for {} s: unlisting the surplus", grace.as_secs());
                remove.extend(bad.iter().copied());
                let change = HolderChange {
                    block: *id,
                    add: Vec::new(),
                    remove,
                    keep: Some((good.clone(), r)),
                };
                trims.push((t.file.clone(), change));
                continue;
            }
            still_surplus.insert(key.clone(), since);
        }
        if good.len() >= r {
            if !bad.is_empty() {
                // Enough copies elsewhere: just stop listing the ones that are gone.
                jobs.push((t.file.clone(), *id, t.len, good, bad));
            }
            continue;
        }
        under += 1;
        if good.is_empty() {
            lost += 1;
            tracing::error!(block = %id, file = %t.file, "no live holder has this block");
            continue;
        }
        jobs.push((t.file.clone(), *id, t.len, good, bad));
    }
    stats.under_replicated.store(under, Ordering::Relaxed);
    stats.lost.store(lost, Ordering::Relaxed);
    let copies: usize = jobs.iter().map(|j| needed(r, &j.3)).sum();
    stats.queue.store(copies, Ordering::Relaxed);

    let results: Vec<(String, HolderChange)> = stream::iter(jobs)
        .map(|(file, id, len, good, bad)| async move {
            let mut added = Vec::new();
            let want = needed(r, &good);
            if want > 0 {
                let targets: Vec<PeerId> = ctx
                    .block_targets(&id, u64::from(len))
                    .into_iter()
                    .filter(|p| !good.contains(p))
                    .collect();
                for target in targets {
                    if added.len() >= want {
                        break;
                    }
                    throttle.take(u64::from(len)).await;
                    if copy(ctx, target, id, &file, &good).await {
                        added.push(target);
                        stats.queue.fetch_sub(1, Ordering::Relaxed);
                        stats.repaired_blocks.fetch_add(1, Ordering::Relaxed);
                        stats
                            .repaired_bytes
                            .fetch_add(u64::from(len), Ordering::Relaxed);
                    }
                }
                tracing::info!(
                    block = %id, %file, from = good.len(), to = good.len() + added.len(),
                    "repaired block"
                );
            }
            let change = HolderChange {
                block: id,
                add: added,
                remove: bad,
                keep: None,
            };
            (file, change)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    *surplus = still_surplus;
    let mut per_file: BTreeMap<String, Vec<HolderChange>> = BTreeMap::new();
    for (file, change) in results {
        per_file.entry(file).or_default().push(change);
    }
    for (file, changes) in per_file {
        if let Err(e) = apply_holder_changes(ctx, &file, changes).await {
            tracing::warn!(%file, "repair: cannot update holders: {e}");
        }
    }
    // Apart from the repairs: a refused trim (its check failed) must not undo a repair.
    for (file, change) in trims {
        if let Err(e) = apply_holder_changes(ctx, &file, vec![change]).await {
            tracing::info!(%file, "repair: surplus holder stays: {e}");
        }
    }
    stats.queue.store(0, Ordering::Relaxed);
}

fn needed(r: usize, good: &[PeerId]) -> usize {
    r.saturating_sub(good.len())
}

/// Blocks whose claimed copies are challenged per repair round: each challenge costs every
/// holder a read of the block, so an audit samples rather than scans.
const AUDIT_BLOCKS: usize = 4;

/// Challenges the claimed holders of a random sample of blocks with one fresh nonce and
/// returns the (holder, block) pairs that failed. The answer is checked against this node's
/// own copy when it has one, else against the answer most holders agree on (only a peer with
/// the bytes can compute it); with no agreement to go by, nobody is failed.
async fn audit(
    ctx: &Arc<Ctx>,
    blocks: &BTreeMap<(String, BlockId), Tracked>,
    held: &HashMap<PeerId, HashSet<BlockId>>,
) -> Vec<(PeerId, BlockId)> {
    use rand::seq::IteratorRandom;
    let sample: Vec<BlockId> = blocks
        .keys()
        .map(|(_, id)| *id)
        .choose_multiple(&mut rand::thread_rng(), AUDIT_BLOCKS);
    if sample.is_empty() {
        return Vec::new();
    }
    let nonce = Nonce::random();
    let mut asks: HashMap<PeerId, Vec<BlockId>> = HashMap::new();
    for id in &sample {
        for (peer, ids) in held {
            if ids.contains(id) && *peer != ctx.local {
                asks.entry(*peer).or_default().push(*id);
            }
        }
    }
    let answers: Vec<(PeerId, Vec<(BlockId, Proof)>)> = stream::iter(asks)
        .map(|(peer, ids)| async move {
            let proofs = match ctx.block_to(peer, BlockRequest::Prove { nonce, ids }).await {
                Ok(BlockResponse::Proofs { proofs }) => proofs,
                _ => Vec::new(),
            };
            (peer, proofs)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut failed = Vec::new();
    for id in sample {
        let claimed: Vec<PeerId> = held
            .iter()
            .filter(|(p, ids)| **p != ctx.local && ids.contains(&id))
            .map(|(p, _)| *p)
            .collect();
        let proof_of = |peer: &PeerId| {
            answers
                .iter()
                .find(|(p, _)| p == peer)
                .and_then(|(_, proofs)| proofs.iter().find(|(b, _)| *b == id))
                .map(|(_, proof)| *proof)
        };
        let expected = match ctx.store.prove_block(id, nonce).await {
            Ok(Some(own)) => Some(own),
            _ => {
                let mut counts: HashMap<Proof, usize> = HashMap::new();
                for p in &claimed {
                    if let Some(proof) = proof_of(p) {
                        *counts.entry(proof).or_default() += 1;
                    }
                }
                counts
                    .into_iter()
                    .filter(|(_, c)| *c * 2 > claimed.len())
                    .map(|(proof, _)| proof)
                    .next()
            }
        };
        let Some(expected) = expected else { continue };
        for p in claimed {
            if proof_of(&p) != Some(expected) {
                ctx.refusals.refuse(
                    "failed possession audit",
                    Some(p),
                    format!("claims block {id} but cannot prove it"),
                );
                failed.push((p, id));
            }
        }
    }
    failed
}

/// The subset of `ids` that `peer` holds; empty if it cannot be reached.
async fn probe(ctx: &Arc<Ctx>, peer: PeerId, ids: Vec<BlockId>) -> HashSet<BlockId> {
    let mut have = HashSet::new();
    for chunk in ids.chunks(4096) {
        match ctx
            .block_to(
                peer,
                BlockRequest::Has {
                    ids: chunk.to_vec(),
                },
            )
            .await
        {
            Ok(BlockResponse::Have { ids }) => have.extend(ids),
            _ => return HashSet::new(),
        }
    }
    have
}

/// Asks `target` to pull block `id` from `sources`.
async fn copy(ctx: &Arc<Ctx>, target: PeerId, id: BlockId, file: &str, sources: &[PeerId]) -> bool {
    let mut sources = sources.to_vec();
    // Connected sources first: no dial on the data path.
    sources.sort_by_key(|p| !ctx.peers.is_connected(p));
    let req = BlockRequest::Pull {
        id,
        file: file.to_string(),
        sources,
    };
    match ctx.block_to(target, req).await {
        Ok(BlockResponse::Stored) => true,
        Ok(other) => {
            tracing::debug!(%target, block = %id, "repair copy refused: {other:?}");
            false
        }
        Err(e) => {
            tracing::debug!(%target, block = %id, "repair copy failed: {e}");
            false
        }
    }
}
