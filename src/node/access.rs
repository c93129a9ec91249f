//! The access-node role: serves `/swarmstore/client/1`.
//!
//! For a client it places blocks on R holders, hands signed records to the file's root, reads
//! records from the replica set (highest version wins, so a read sees every acknowledged
//! write), and fetches blocks from holders with failover and hash checks.

use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;

use super::balancing::delegate;
use super::{quorum, Ctx};
use crate::ids::{hash_block, validate_name, BlockId, FileKey};
use crate::protocol::block::{BlockRequest, BlockResponse};
use crate::protocol::client::{ClientRequest, ClientResponse};
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::protocol::status::{FrontDoorStatus, NodeStatus, PeerStatus};
use crate::record::{DownloadNote, FileRecord, FileState, UserRole, MAX_BLOCK_SIZE, MAX_HOLDERS};

pub async fn handle(ctx: &Arc<Ctx>, client: PeerId, req: ClientRequest) -> ClientResponse {
    if !matches!(req, ClientRequest::Status) {
        ctx.wait_ready().await;
    }
    match req {
        ClientRequest::PutBlock { id, file, data } => put_block(ctx, id, file, data).await,
        ClientRequest::Publish { record } => publish(ctx, record).await,
        ClientRequest::Fetch { name, note } => fetch(ctx, client, &name, note).await,
        ClientRequest::GetBlock { id, holders } => get_block(ctx, id, holders).await,
        ClientRequest::Status => ClientResponse::Status(Box::new(status(ctx).await)),
        ClientRequest::Peers => ClientResponse::Peers {
            replication: ctx.config.replication,
            candidates: ctx
                .peers
                .candidates(ctx.local_free(), !ctx.is_leaving())
                .into_iter()
                .map(|c| crate::protocol::client::Candidate {
                    addrs: if c.peer == ctx.local {
                        ctx.listen_addrs()
                    } else {
                        ctx.peers.addrs(&c.peer)
                    },
                    peer: c.peer,
                    free: c.free,
                })
                .collect(),
        },
    }
}

fn error(message: impl Into<String>) -> ClientResponse {
    ClientResponse::Error {
        message: message.into(),
    }
}

async fn put_block(ctx: &Arc<Ctx>, id: BlockId, file: String, data: Vec<u8>) -> ClientResponse {
    if let Err(e) = validate_name(&file) {
        return error(e);
    }
    if data.is_empty() || data.len() > MAX_BLOCK_SIZE as usize {
        return error(format!(
            "block of {} bytes outside 1..={MAX_BLOCK_SIZE}",
            data.len()
        ));
    }
    let (actual, data) = hash_block(data).await;
    if actual != id {
        return error(format!(
            "block hash mismatch: named {id}, content is {actual}"
        ));
    }
    let targets = ctx.block_targets(&id, data.len() as u64);
    let want = ctx.config.replication.min(targets.len());
    let data = Arc::new(data);
    let mut next = 0;
    let mut holders = Vec::new();
    let mut failures = Vec::new();
    let mut inflight = FuturesUnordered::new();
    let store_on = |peer: PeerId| {
        let ctx = ctx.clone();
        let data = data.clone();
        let file = file.clone();
        async move {
            let req = BlockRequest::Put {
                id,
                file,
                data: data.as_ref().clone(),
            };
            (peer, ctx.block_to(peer, req).await)
        }
    };
    while holders.len() < want {
        while holders.len() + inflight.len() < want && next < targets.len() {
            inflight.push(store_on(targets[next]));
            next += 1;
        }
        match inflight.next().await {
            Some((peer, Ok(BlockResponse::Stored))) => holders.push(peer),
            Some((peer, Ok(other))) => failures.push(format!("{peer}: {other:?}")),
            Some((peer, Err(e))) => failures.push(format!("{peer}: {e}")),
            None => break,
        }
    }
    if holders.is_empty() {
        return error(format!(
            "no holder could store block {id}: {}",
            failures.join("; ")
        ));
    }
    if holders.len() < ctx.config.replication {
        tracing::warn!(block = %id, "block stored on {} of {} holders", holders.len(), ctx.config.replication);
    }
    ClientResponse::BlockStored { holders }
}

async fn publish(ctx: &Arc<Ctx>, record: FileRecord) -> ClientResponse {
    if let Err(error) = record.verify() {
        return ClientResponse::Rejected { error };
    }
    let key = record.key();
    let set = ctx.replica_set(&record.name).await;
    let mut failures = Vec::new();
    // The root is the closest live peer; if it cannot be reached the next one takes over.
    for peer in set {
        let req = MetaRequest::Publish {
            record: record.clone(),
        };
        match ctx.meta_to(peer, req).await {
            Ok(MetaResponse::Published { version, replicas }) => {
                return ClientResponse::Published {
                    key,
                    version,
                    root: peer,
                    replicas,
                }
            }
            Ok(MetaResponse::Rejected { error }) => return ClientResponse::Rejected { error },
            Ok(other) => failures.push(format!("{peer}: {other:?}")),
            Err(e) => failures.push(format!("{peer}: {e}")),
        }
    }
    error(format!(
        "no root accepted the record: {}",
        failures.join("; ")
    ))
}

/// Peers beyond the listed holders a reader may try for a block (see `file_response`).
const FALLBACK_HOLDERS: usize = 2;
/// Longest wait for one holder's copy of a block before trying the next holder.
const HOLDER_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(15);

async fn fetch(
    ctx: &Arc<Ctx>,
    client: PeerId,
    name: &str,
    note: Option<DownloadNote>,
) -> ClientResponse {
    if let Err(e) = validate_name(name) {
        return error(e);
    }
    if let Some(n) = &note {
        // A note names its signer: a client cannot note someone else's download.
        if n.reader != client {
            ctx.refusals
                .refuse("download note of another peer", Some(client), n.reader);
            return error("the download note is not signed by this client");
        }
    }
    let view = View {
        client,
        download: note.is_some(),
    };
    if let Some(resp) = delegate::read_via_delegate(ctx, name, note.clone(), view).await {
        return resp;
    }
    match quorum::read_state(ctx, name, note).await {
        Ok(Some((root, replicas, state))) => file_response(ctx, name, root, replicas, state, view),
        Ok(None) => ClientResponse::NotFound {
            name: name.to_string(),
        },
        Err(e) => error(e.to_string()),
    }
}

/// Who reads a state through this access node, and for what.
#[derive(Clone, Copy)]
pub struct View {
    pub client: PeerId,
    /// A get (rank holders for reading), not a stat.
    pub download: bool,
}

/// A file's state for a client, with the addresses of its block holders so the client can
/// read blocks straight from them. For a download, each block's holders are ranked for
/// reading: least loaded first by the published view, extra replicas included, our own copy
/// first unless we are busier. Holder lists are root-maintained, so ranking them does not
/// touch what the owner signed. Downloaders are shown to the file's owner only.
pub fn file_response(
    ctx: &Arc<Ctx>,
    name: &str,
    root: PeerId,
    replicas: Vec<PeerId>,
    mut state: FileState,
    view: View,
) -> ClientResponse {
    let owner = state.head().map(|h| h.owner);
    if owner != Some(view.client) {
        state.users.retain(|u| u.role == UserRole::Owner);
    }
    if view.download {
        for version in &mut state.versions {
            for b in &mut version.blocks {
                if b.is_inline() {
                    continue;
                }
                let local_has = b.holders.contains(&ctx.local) && ctx.store.blocks.contains(&b.id);
                let listed = std::mem::take(&mut b.holders);
                let mut order = ctx
                    .balance
                    .order_holders(&b.id, listed, local_has, |p| ctx.peers.is_live(p));
                // Last resort, tried only if every listed holder fails: the peers placement
                // would pick for the block (a list that lost or hides holders still reads).
                let fallback: Vec<PeerId> = ctx
                    .block_targets(&b.id, u64::from(b.len))
                    .into_iter()
                    .filter(|p| !order.contains(p))
                    .take(FALLBACK_HOLDERS)
                    .collect();
                order.extend(fallback);
                order.truncate(MAX_HOLDERS);
                b.holders = order;
            }
        }
    }
    let mut holders: Vec<PeerId> = state
        .versions
        .iter()
        .flat_map(|v| v.blocks.iter().flat_map(|b| b.holders.iter().copied()))
        .collect();
    holders.sort();
    holders.dedup();
    let addrs = holders
        .into_iter()
        .map(|p| {
            let a = if p == ctx.local {
                ctx.listen_addrs()
            } else {
                ctx.peers.addrs(&p)
            };
            (p, a)
        })
        .filter(|(_, a)| !a.is_empty())
        .collect();
    ClientResponse::File {
        key: FileKey::for_name(name),
        root,
        replicas,
        state,
        addrs,
    }
}

async fn get_block(ctx: &Arc<Ctx>, id: BlockId, holders: Vec<PeerId>) -> ClientResponse {
    // Least-loaded live holder first, extra replicas included (the published view).
    let local_has = ctx.store.blocks.contains(&id);
    let order = ctx
        .balance
        .order_holders(&id, holders, local_has, |p| ctx.peers.is_live(p));
    let mut failures = Vec::new();
    for peer in order {
        let attempt =
            tokio::time::timeout(HOLDER_ATTEMPT, ctx.block_to(peer, BlockRequest::Get { id }));
        let reply = attempt.await.unwrap_or_else(|_| {
            Err(crate::Error::Network(format!(
                "no answer within {HOLDER_ATTEMPT:?}"
            )))
        });
        match reply {
            Ok(BlockResponse::Data { data }) => {
                let (actual, data) = hash_block(data).await;
                if actual == id {
                    ctx.balance.note_dispatch(peer, data.len() as u64);
                    return ClientResponse::Block { data };
                }
                tracing::warn!(%peer, block = %id, "holder returned wrong bytes; trying another");
                failures.push(format!("{peer}: wrong bytes"));
            }
            Ok(BlockResponse::NotFound) => failures.push(format!("{peer}: not found")),
            Ok(other) => failures.push(format!("{peer}: {other:?}")),
            Err(e) => failures.push(format!("{peer}: {e}")),
        }
    }
    error(format!(
        "no holder returned block {id}: {}",
        if failures.is_empty() {
            "no live holder".to_string()
        } else {
            failures.join("; ")
        }
    ))
}

pub(super) async fn status(ctx: &Arc<Ctx>) -> NodeStatus {
    let records = match ctx.store.run(|s| s.records.heads().map(|h| h.len())).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("status: cannot count records: {e}");
            0
        }
    };
    let mut peers: Vec<PeerStatus> = ctx
        .peers
        .snapshot()
        .into_iter()
        .filter(|(_, s)| s.storage)
        .map(|(peer, s)| PeerStatus {
            peer,
            connected: s.connections > 0,
            live: s.down_since.is_none(),
        })
        .collect();
    peers.sort_by_key(|p| p.peer);
    NodeStatus {
        peer: ctx.local,
        addrs: ctx.listen_addrs(),
        replication: ctx.config.replication,
        blocks: ctx.store.blocks.count(),
        used: ctx.store.blocks.used_bytes(),
        capacity: ctx.config.capacity,
        records,
        peers,
        repair: ctx.repair.snapshot(),
        balance: ctx.balance.status(),
        refused: ctx.refusals.counts(),
        front_doors: front_doors(ctx),
    }
}

fn front_doors(ctx: &Ctx) -> Vec<FrontDoorStatus> {
    let doors = match ctx.front_doors.lock() {
        Ok(d) => d.clone(),
        Err(_) => return Vec::new(),
    };
    doors
        .into_iter()
        .map(|(api, addr)| {
            let (requests, client_errors, server_errors) = ctx.metrics.http_totals(api);
            FrontDoorStatus {
                api: api.to_string(),
                addr: addr.to_string(),
                requests,
                client_errors,
                server_errors,
            }
        })
        .collect()
}
