//! Delegated record reads (load balancing of a hot file's root): the delegate takes a lease
//! by a decision and serves the file's state, the root pushes every change to it before it
//! acknowledges the change, and access nodes read through a live delegate when there is one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::apply::short;
use super::holdings::Delegation;
use crate::balance::config::META_COST;
use crate::ids::FileKey;
use crate::node::access::{self, View};
use crate::node::root::check_copy;
use crate::node::{quorum, Ctx};
use crate::protocol::client::ClientResponse;
use crate::protocol::gossip::DecisionState;
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::{now_ms, DownloadNote, FileState, RecordError};

/// How long the root waits for a delegate to take an update before acknowledging anyway.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds between refreshes of a delegated state from the replica set (pushes keep it
/// current in between; this is the backstop).
const REFRESH_ROUNDS: u32 = 5;

/// Takes up a delegation: the file's state now, served until the lease expires.
pub(super) async fn take(ctx: &Arc<Ctx>, key: FileKey, name: &str, expires: u64) -> DecisionState {
    if FileKey::for_name(name) != key {
        return DecisionState::Skipped("file name does not match its key".into());
    }
    if expires <= now_ms() {
        return DecisionState::Skipped("lease already expired".into());
    }
    match quorum::read_state_detailed(ctx, name, None)
        .await
        .map(|r| r.signed)
    {
        Ok(Some(state)) => {
            ctx.balance.state().holdings.delegated.insert(
                key,
                Delegation {
                    name: name.to_string(),
                    expires,
                    state,
                    refreshed: Instant::now(),
                },
            );
            DecisionState::Applied
        }
        Ok(None) => DecisionState::Skipped("unknown file".into()),
        Err(e) => DecisionState::Failed(short(e)),
    }
}

/// Ends lapsed delegations (ours and the ones we are root for) and refreshes delegated states
/// that no push has refreshed for a while.
pub(super) async fn refresh(ctx: &Arc<Ctx>) {
    let now = now_ms();
    let round = ctx.balance.config.report_interval;
    let stale: Vec<(FileKey, String)> = {
        let mut st = ctx.balance.state();
        st.holdings.delegated.retain(|_, d| d.expires > now);
        st.holdings.my_delegates.retain(|_, (_, exp)| *exp > now);
        st.holdings
            .delegated
            .iter()
            .filter(|(_, d)| d.refreshed.elapsed() >= round * REFRESH_ROUNDS)
            .map(|(k, d)| (*k, d.name.clone()))
            .collect()
    };
    for (key, name) in stale {
        let read = quorum::read_state_detailed(ctx, &name, None).await;
        if let Ok(Some(state)) = read.map(|r| r.signed) {
            if let Some(d) = ctx.balance.state().holdings.delegated.get_mut(&key) {
                if newer_or_same(&state, &d.state) {
                    d.state = state;
                }
                d.refreshed = Instant::now();
            }
        }
    }
}

fn newer_or_same(a: &FileState, b: &FileState) -> bool {
    a.position() >= b.position()
}

/// Root side: after a file's state changed, push it to the file's delegate (if any) before
/// the change is acknowledged, so reads through the delegate see every acknowledged write.
pub async fn push_to_delegate(ctx: &Arc<Ctx>, key: FileKey, state: &FileState) {
    let target = ctx
        .balance
        .state()
        .holdings
        .my_delegates
        .get(&key)
        .filter(|(_, exp)| *exp > now_ms())
        .map(|(p, _)| *p);
    let Some(d) = target else { return };
    let req = MetaRequest::DelegateState {
        key,
        state: state.clone(),
    };
    match tokio::time::timeout(PUSH_TIMEOUT, ctx.meta_to(d, req)).await {
        Ok(Ok(MetaResponse::Replicated)) => {}
        other => {
            tracing::debug!(delegate = %d, %key, "delegate did not take the update: {other:?}")
        }
    }
}

/// Delegate side: a pushed state replaces ours if it comes from a peer of the key's window,
/// verifies like any copy, and is not older.
pub fn on_delegate_state(
    ctx: &Arc<Ctx>,
    from: PeerId,
    key: FileKey,
    state: FileState,
) -> MetaResponse {
    let checked = if ctx.in_key_window(&key, &from) {
        check_copy(ctx, &key, &state)
    } else {
        Err(RecordError::Unauthorized(format!(
            "{from} is not in the replica set of this key"
        )))
    };
    if let Err(error) = checked {
        ctx.refusals
            .refuse("invalid delegate state", Some(from), &error);
        return MetaResponse::Rejected { error };
    }
    let mut st = ctx.balance.state();
    match st.holdings.delegated.get_mut(&key) {
        Some(d) => {
            if newer_or_same(&state, &d.state) {
                d.state = state;
                d.refreshed = Instant::now();
            }
            MetaResponse::Replicated
        }
        None => MetaResponse::Error {
            message: "not a delegate of this file".into(),
        },
    }
}

/// Whether a delegate's answer is as new as what a majority of the replica set holds: the
/// members are asked only for their positions (a few bytes each), so the delegate still
/// carries the bulk of the reads, but a delegate serving an older version is caught.
async fn is_current(ctx: &Arc<Ctx>, name: &str, key: FileKey, state: &FileState) -> bool {
    let set = ctx.replica_set(name).await;
    let needed = crate::placement::majority(set.len().max(1));
    let asks = set.iter().map(|peer| {
        let req = MetaRequest::Digest {
            entries: vec![(key, state.position())],
        };
        async move { ctx.meta_to(*peer, req).await }
    });
    let answers = futures::future::join_all(asks).await;
    let mut heard = 0;
    for a in answers {
        if let Ok(MetaResponse::Digest { entries }) = a {
            heard += 1;
            let theirs = entries.iter().find(|(k, _)| *k == key).map(|(_, p)| *p);
            if theirs.is_some_and(|p| p.version > state.position().version) {
                return false;
            }
        }
    }
    heard >= needed
}

/// Access side: a record read through the file's live delegate, if it has one. `None` means
/// "read the replica set as usual" (no delegate, it failed, or it is behind: availability
/// and freshness first).
pub async fn read_via_delegate(
    ctx: &Arc<Ctx>,
    name: &str,
    note: Option<DownloadNote>,
    view: View,
) -> Option<ClientResponse> {
    let key = FileKey::for_name(name);
    if let Some(state) = ctx.balance.delegated_state(&key) {
        // We are the delegate ourselves.
        ctx.balance.meter.record_read(key);
        if !ctx.balance.serve_slot(META_COST as u64).await {
            return None; // too busy: the replica set serves this read
        }
        if !is_current(ctx, name, key, &state).await {
            return None;
        }
        let set = ctx.replica_set(name).await;
        let root = set.first().copied().unwrap_or(ctx.local);
        return Some(access::file_response(ctx, name, root, set, state, view));
    }
    let d = ctx
        .balance
        .delegate_for_read(&key, |p| ctx.peers.is_live(p))?;
    let reply = ctx.meta_to(d, MetaRequest::Fetch { key, note }).await;
    let Ok(MetaResponse::State { state: Some(state) }) = reply else {
        return None;
    };
    if let Err(e) = check_copy(ctx, &key, &state) {
        ctx.refusals.refuse("invalid delegate answer", Some(d), e);
        return None;
    }
    if !is_current(ctx, name, key, &state).await {
        ctx.refusals
            .refuse("stale delegate answer", Some(d), format!("{name:?}"));
        return None;
    }
    let set = ctx.replica_set(name).await;
    let root = set.first().copied().unwrap_or(d);
    Some(access::file_response(ctx, name, root, set, state, view))
}
