//! The root and replica roles: serves `/swarmstore/meta/1`.
//!
//! Every state this node stores passes the one acceptance rule of `record::rules`. A root
//! takes an owner-signed version only if it follows the held head ([`check_successor`]) and
//! every block it lists is held by at least one of its listed holders; it signs the state's
//! root-kept fields (an attestation), stores it durably, copies it to the rest of the replica
//! set and acknowledges once a majority holds it. A replica takes a copy only if it verifies
//! on its own, is attested by a peer of the key's window, extends what it holds, and the
//! replica is itself in the key's window. A copy that conflicts with what is held (another
//! owner's history, or a different record at a held version) is refused, and the majority of
//! the replica set settles which history stays ([`settle`]). Reads return the state and note
//! a downloader (on its signed note) off the response path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;

use super::balancing::delegate;
use super::{drain, holders, quorum, Ctx, NodeError};
use crate::balance::config::META_COST;
use crate::ids::FileKey;
use crate::placement::majority;
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::{
    accept_copy, check_state, check_successor, compatible, now_ms, Adopt, DownloadNote, FileRecord,
    FileState, Position, RecordError, Succession,
};
use crate::store::Change;

/// Most keys one digest may ask about (twice what our own sync sends).
pub const MAX_DIGEST: usize = 8192;

/// Boxed with a concrete `Send` type: a root answering its own publish (access node and root
/// being the same node) reaches this function again through `Ctx::meta_to`.
pub fn handle(ctx: &Arc<Ctx>, from: PeerId, req: MetaRequest) -> BoxFuture<'_, MetaResponse> {
    Box::pin(async move {
        #[cfg(feature = "test-hooks")]
        if ctx
            .lie_about_records
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return match req {
                MetaRequest::Digest { entries } => MetaResponse::Digest { entries },
                MetaRequest::Fetch { .. } => MetaResponse::State { state: None },
                _ => MetaResponse::Replicated,
            };
        }
        match req {
            MetaRequest::Publish { record } => publish(ctx, from, record).await,
            MetaRequest::Replicate { key, state } => replicate_in(ctx, from, key, state).await,
            MetaRequest::Fetch { key, note } => fetch(ctx, from, key, note).await,
            MetaRequest::Digest { entries } => digest(ctx, from, entries).await,
            MetaRequest::SetHolders {
                name,
                block,
                add,
                remove,
            } => holders::set_holders(ctx, from, &name, block, add, remove).await,
            MetaRequest::DelegateState { key, state } => {
                delegate::on_delegate_state(ctx, from, key, state)
            }
        }
    })
}

pub(super) fn internal(e: impl std::fmt::Display) -> MetaResponse {
    MetaResponse::Error {
        message: e.to_string(),
    }
}

/// Refuses with `error`, counted under `cause`.
pub(super) fn refuse(
    ctx: &Ctx,
    cause: &'static str,
    from: PeerId,
    error: RecordError,
) -> MetaResponse {
    ctx.refusals.refuse(cause, Some(from), &error);
    MetaResponse::Rejected { error }
}

/// Moves the revision of the root-kept fields on (a hybrid clock, not a counter: a new root
/// after a hand-over starts from the old root's revision, and its later change must still
/// count as later) and signs them as this node.
pub(super) fn attest_change(ctx: &Ctx, key: &FileKey, state: &mut FileState) {
    state.rev = state.rev.saturating_add(1).max(now_ms());
    state.attest(key, &ctx.key);
}

async fn publish(ctx: &Arc<Ctx>, from: PeerId, mut record: FileRecord) -> MetaResponse {
    if let Err(error) = record.verify() {
        return refuse(ctx, "invalid record", from, error);
    }
    let key = record.key();
    let name = record.name.clone();
    let version = record.version;
    let keep = ctx.config.keep_versions;
    if !ctx.in_key_window(&key, &ctx.local) {
        return refuse(
            ctx,
            "publish outside the replica set",
            from,
            RecordError::Unauthorized(format!(
                "{} is not in the replica set of {name:?}",
                ctx.local
            )),
        );
    }
    // A root that just joined the replica set (or was down) may lack the history this version
    // follows: catch up from the rest of the set before judging it.
    let held = match ctx.store.positions(vec![key]).await {
        Ok(positions) => positions.first().map(|(_, p)| p.version).unwrap_or(0),
        Err(e) => return internal(e),
    };
    if held.saturating_add(1) < version {
        catch_up(ctx, &name, key).await;
    }
    // An acknowledged put must be readable: every block it lists is on one of its holders
    // now (GC may have taken the blocks of a very slow upload, or a client may lie).
    if let Err(error) = holders::check_listed(ctx, &mut record).await {
        return refuse(ctx, "blocks not stored", from, error);
    }
    let node = ctx.clone();
    let stored = ctx
        .store
        .update(key, true, move |current| {
            let mut state = current.unwrap_or_else(FileState::empty);
            match check_successor(&state, &record)? {
                Succession::Same => Ok::<_, RecordError>(Change::Keep(state)),
                Succession::Newer => {
                    state.push(record, keep);
                    attest_change(&node, &key, &mut state);
                    Ok(Change::Write(state.clone(), state))
                }
            }
        })
        .await;
    let state = match stored {
        Ok(Ok(state)) => state,
        Ok(Err(error)) => {
            tracing::info!(%name, "publish refused: {error}");
            return MetaResponse::Rejected { error };
        }
        Err(e) => return internal(e),
    };

    // Copy to the rest of the replica set; answer once a majority (counting us) holds it.
    let set = ctx.replica_set(&name).await;
    let needed = majority(set.len().max(1));
    let mut acked = vec![ctx.local];
    let mut pending: FuturesUnordered<_> = set
        .iter()
        .filter(|p| **p != ctx.local)
        .map(|p| {
            let ctx = ctx.clone();
            let peer = *p;
            let req = MetaRequest::Replicate {
                key,
                state: state.clone(),
            };
            async move { (peer, ctx.meta_to(peer, req).await) }
        })
        .collect();
    let mut failures = Vec::new();
    while acked.len() < needed {
        match pending.next().await {
            Some((peer, Ok(MetaResponse::Replicated))) => acked.push(peer),
            Some((peer, Ok(other))) => failures.push(format!("{peer}: {other:?}")),
            Some((peer, Err(e))) => failures.push(format!("{peer}: {e}")),
            None => break,
        }
    }
    if !pending.is_empty() {
        // The remaining copies complete in the background; repair covers any that fail.
        tokio::spawn(async move { while pending.next().await.is_some() {} });
    }
    if acked.len() < needed {
        tracing::warn!(%name, version, "record reached {} of {needed} replicas", acked.len());
        return MetaResponse::Error {
            message: format!(
                "record stored on {} of the {needed} replicas a majority needs: {}",
                acked.len(),
                failures.join("; ")
            ),
        };
    }
    // A delegated file's delegate must see the version before the writer is told it is stored.
    delegate::push_to_delegate(ctx, key, &state).await;
    tracing::info!(%name, version, replicas = acked.len(), ?set, "published");
    MetaResponse::Published {
        version,
        replicas: acked,
    }
}

/// Why [`check_copy_why`] refused a copy.
pub enum CopyRefusal {
    /// Not sound on its own: a bad signature, key, chain or attestation.
    Invalid(RecordError),
    /// Sound, but its root-kept fields were signed by a peer outside this node's view of the
    /// key's window: forged, or signed by a member this node does not see yet.
    OutsideWindow(PeerId),
}

impl From<CopyRefusal> for RecordError {
    fn from(refusal: CopyRefusal) -> Self {
        match refusal {
            CopyRefusal::Invalid(e) => e,
            CopyRefusal::OutsideWindow(signer) => RecordError::Unauthorized(format!(
                "root-kept fields signed by {signer}, who is not in the replica set"
            )),
        }
    }
}

/// Checks a copy of a file's state on its own and its attestation: every version valid and
/// of `key`, and the root-kept fields signed by a peer of the key's window. The check every
/// path applies to a state it did not make itself (replicas, sync, drain, reads).
pub fn check_copy(ctx: &Ctx, key: &FileKey, state: &FileState) -> Result<(), RecordError> {
    check_copy_why(ctx, key, state).map_err(RecordError::from)
}

/// [`check_copy`], saying whether a refusal was for the signer's place alone (a reader that
/// has just started asks again on that while its view forms).
pub fn check_copy_why(ctx: &Ctx, key: &FileKey, state: &FileState) -> Result<(), CopyRefusal> {
    check_state(key, state).map_err(CopyRefusal::Invalid)?;
    let signer = state
        .check_attestation(key, now_ms())
        .map_err(CopyRefusal::Invalid)?;
    if !ctx.in_key_window(key, &signer) {
        return Err(CopyRefusal::OutsideWindow(signer));
    }
    Ok(())
}

/// A state as this node forwards it: if whoever last signed its root-kept fields is no
/// longer in the key's window as this node sees it (a root that left), this node, a member,
/// signs it anew, so receivers that check the signer against their own view still take it.
pub fn vouched(ctx: &Ctx, key: &FileKey, state: &FileState) -> FileState {
    // Judged by the live window, stricter than the window readers accept by: a reader that
    // never knew a departed signer (it restarted, or joined after the signer left) refuses
    // its attestation even while we still count the signer as "known, down".
    let signer_ok = state
        .attest
        .as_ref()
        .is_some_and(|a| ctx.live_window(key).contains(&a.by));
    let mut out = state.clone();
    if !signer_ok && ctx.in_key_window(key, &ctx.local) {
        out.attest(key, &ctx.key);
    }
    out
}

async fn replicate_in(
    ctx: &Arc<Ctx>,
    from: PeerId,
    key: FileKey,
    state: FileState,
) -> MetaResponse {
    if let Err(error) = check_copy(ctx, &key, &state) {
        return refuse(ctx, "invalid copy", from, error);
    }
    if !ctx.in_key_window(&key, &ctx.local) {
        // Only the replica set keeps a file's record: no peer can make us store others.
        return refuse(
            ctx,
            "copy outside the replica set",
            from,
            RecordError::Unauthorized(format!(
                "{} is not in the replica set of this key",
                ctx.local
            )),
        );
    }
    let name = state.head().map(|h| h.name.clone()).unwrap_or_default();
    let result = ctx
        .store
        .update(key, true, move |current| {
            match accept_copy(current.as_ref(), &state)? {
                Adopt::Take => Ok::<_, RecordError>(Change::Write(state, ())),
                Adopt::Keep => Ok(Change::Keep(())),
            }
        })
        .await;
    match result {
        Ok(Ok(())) => {
            if ctx.is_leaving() {
                // Arrived after drain took its snapshot: pass it on before we go.
                drain::forward_record(ctx, key).await;
            }
            MetaResponse::Replicated
        }
        Ok(Err(error @ RecordError::Stale { .. })) => MetaResponse::Rejected { error },
        Ok(Err(error)) => {
            // Another history than ours: the replica set's majority decides, never one peer.
            settle_later(ctx, name);
            refuse(ctx, "conflicting copy", from, error)
        }
        Err(e) => internal(e),
    }
}

async fn fetch(
    ctx: &Arc<Ctx>,
    from: PeerId,
    key: FileKey,
    note: Option<DownloadNote>,
) -> MetaResponse {
    let _busy = ctx.balance.meter.begin();
    ctx.balance.meter.record_read(key);
    if !ctx.balance.serve_slot(META_COST as u64).await {
        ctx.metrics.serve_busy.inc();
        return MetaResponse::Error {
            message: super::holder::BUSY.into(),
        };
    }
    // A delegate serves the file's record reads from the state its root pushes to it.
    if let Some(state) = ctx.balance.delegated_state(&key) {
        return MetaResponse::State { state: Some(state) };
    }
    let state = match ctx.store.state(key).await {
        Ok(state) => state,
        Err(e) => return internal(e),
    };
    if let (Some(note), Some(_)) = (note, &state) {
        if let Err(e) = note.verify(&key, now_ms()) {
            ctx.refusals.refuse("bad download note", Some(from), e);
        } else {
            note_downloader(ctx, key, note);
        }
    }
    // A copy last attested by a root that has since left (and dropped out of the key's window
    // as later peers joined nearer the key) would be refused by every reader, making an
    // untouched file unreadable: a member answers with its own attestation instead. The soak
    // found this after about forty minutes of joins and leaves.
    // Not for our own reads, and not while our view of the swarm is still forming after a
    // start: then the signer may only look absent, and vouching for our own (possibly stale)
    // copy would let it win over newer copies we cannot check yet.
    let state = match state {
        Some(s) if from != ctx.local && !ctx.view_forming() => Some(vouched(ctx, &key, &s)),
        other => other,
    };
    MetaResponse::State { state }
}

/// Adds a verified note's reader to the user list, off the response path: recording a
/// download never slows or fails it. Only the root keeps the list.
fn note_downloader(ctx: &Arc<Ctx>, key: FileKey, note: DownloadNote) {
    let ctx = ctx.clone();
    let limit = ctx.config.max_users;
    tokio::spawn(async move {
        let node = ctx.clone();
        let noted = ctx
            .store
            .update(key, false, move |current| {
                Ok::<_, RecordError>(match current {
                    Some(mut s) => {
                        let before = s.users.clone();
                        s.note_user(note.reader, note.at_ms, limit);
                        if s.users == before {
                            Change::Keep(())
                        } else {
                            // Same revision: the list rides along with the next holder
                            // change; the signature must cover it now.
                            s.attest(&key, &node.key);
                            Change::Write(s, ())
                        }
                    }
                    None => Change::Keep(()),
                })
            })
            .await;
        if let Err(e) = noted {
            tracing::warn!(%key, "cannot record downloader: {e}");
        }
    });
}

async fn digest(ctx: &Arc<Ctx>, from: PeerId, entries: Vec<(FileKey, Position)>) -> MetaResponse {
    if entries.len() > MAX_DIGEST {
        let error = RecordError::Invalid(format!(
            "a digest of {} keys; at most {MAX_DIGEST}",
            entries.len()
        ));
        return refuse(ctx, "oversized digest", from, error);
    }
    let keys: Vec<FileKey> = entries.into_iter().map(|(k, _)| k).collect();
    match ctx.store.positions(keys).await {
        Ok(entries) => MetaResponse::Digest { entries },
        Err(e) => internal(e),
    }
}

/// Pulls a file's newest state from the other members of its replica set.
pub async fn catch_up(ctx: &Arc<Ctx>, name: &str, key: FileKey) {
    let others: Vec<PeerId> = ctx
        .replica_set(name)
        .await
        .into_iter()
        .filter(|p| *p != ctx.local)
        .collect();
    for peer in others {
        if let Ok(MetaResponse::State { state: Some(state) }) = ctx
            .net
            .meta(peer, MetaRequest::Fetch { key, note: None })
            .await
        {
            let _ = replicate_in(ctx, peer, key, state).await;
        }
    }
}

/// Files whose history is being settled right now (one settle per file at a time, so a peer
/// sending conflicting copies in a loop costs one quorum read, not one per copy).
fn settling() -> &'static Mutex<HashSet<String>> {
    static SETTLING: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SETTLING.get_or_init(|| Mutex::new(HashSet::new()))
}

fn settle_later(ctx: &Arc<Ctx>, name: String) {
    if name.is_empty() {
        return;
    }
    let fresh = settling()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone());
    if !fresh {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = settle(&ctx, &name).await {
            tracing::debug!(%name, "cannot settle the file's history: {e}");
        }
        settling()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
    });
}

/// Two histories of one file met here: reads the replica set (every answer verified) and, if
/// the majority's history is not ours, replaces ours with it.
pub async fn settle(ctx: &Arc<Ctx>, name: &str) -> Result<(), NodeError> {
    let key = FileKey::for_name(name);
    let read = quorum::read_state_detailed(ctx, name, None).await?;
    let Some(winner) = read.signed else {
        return Ok(());
    };
    let ours = ctx.stored_state(key).await;
    if ours.as_ref().is_some_and(|o| compatible(o, &winner)) {
        return Ok(());
    }
    check_copy(ctx, &key, &winner).map_err(|e| NodeError::Refused(e.to_string()))?;
    ctx.store
        .update(key, true, move |_| {
            Ok::<_, RecordError>(Change::Write(winner, ()))
        })
        .await?
        .map_err(|e| NodeError::Refused(e.to_string()))?;
    tracing::warn!(%name, "replaced a history the replica set's majority does not hold");
    Ok(())
}
