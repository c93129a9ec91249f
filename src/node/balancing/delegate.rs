//! Delegated record reads (load balancing of a hot file's root): the delegate takes a lease
//! by a decision and serves the file's state, the root pushes every change to it before it
//! acknowledges the change, and access nodes read through a live delegate when there is one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::apply::short;
use super::holdings::Delegation;
use crate::ids::FileKey;
use crate::node::{access, Ctx};
use crate::protocol::client::ClientResponse;
use crate::protocol::gossip::DecisionState;
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::{now_ms, FileState};

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
    match access::read_state(ctx, name, None).await {
        Ok(Some((_, _, state))) => {
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
        if let Ok(Some((_, _, state))) = access::read_state(ctx, &name, None).await {
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

/// Delegate side: a pushed state replaces ours if it verifies and is not older.
pub fn on_delegate_state(ctx: &Arc<Ctx>, key: FileKey, state: FileState) -> MetaResponse {
    if state.versions.is_empty()
        || state
            .versions
            .iter()
            .any(|r| r.key() != key || r.verify().is_err())
    {
        return MetaResponse::Error {
            message: "pushed state does not verify".into(),
        };
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

/// Access side: a record read through the file's live delegate, if it has one. `None` means
/// "read the replica set as usual" (no delegate, or it failed: availability first).
pub async fn read_via_delegate(
    ctx: &Arc<Ctx>,
    name: &str,
    reader: Option<PeerId>,
) -> Option<ClientResponse> {
    let key = FileKey::for_name(name);
    if let Some(state) = ctx.balance.delegated_state(&key) {
        // We are the delegate ourselves.
        ctx.balance.meter.record_read(key);
        let set = ctx.replica_set(name).await;
        let root = set.first().copied().unwrap_or(ctx.local);
        return Some(access::file_response(
            ctx,
            name,
            root,
            set,
            state,
            reader.is_some(),
        ));
    }
    let d = ctx
        .balance
        .delegate_for_read(&key, |p| ctx.peers.is_live(p))?;
    match ctx.meta_to(d, MetaRequest::Fetch { key, reader }).await {
        Ok(MetaResponse::State { state: Some(state) }) => {
            let set = ctx.replica_set(name).await;
            let root = set.first().copied().unwrap_or(d);
            Some(access::file_response(
                ctx,
                name,
                root,
                set,
                state,
                reader.is_some(),
            ))
        }
        _ => None,
    }
}
