//! What balancing decisions left on this node, kept across restarts: its extra replicas,
//! the delegations it serves and the delegates of the files it is root of.
//!
//! Without this a restarted node forgot its extras (it stopped reporting them, readers
//! stopped being sent to them, and garbage collection deleted them after its grace, so
//! the relief they gave was lost with every restart), forgot the delegations it was serving
//! until their lease, and, as a root, stopped pushing updates to its files' delegates.
//!
//! The file is `balancing.cbor` in the data dir, rewritten (to a temporary file, synced,
//! then renamed over the old one) at the end of a round when it changed. On start the node
//! takes back the leases that have not expired and the extras whose block it still has;
//! it re-reads every delegated state from the replica set before serving it (a state saved
//! on disk could be old). Everything restored is reconciled the usual way: extras go out in
//! the next load report; a manager that saw them granted drops them when their heat is gone,
//! and the node drops by itself those no decision confirms within one hold time. A lease
//! ends when it expires or the manager ends it. A file that does not decode is logged and
//! ignored: balancing state is an optimisation, never a reason not to start.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::delegate;
use super::holdings::Extra;
use crate::ids::{validate_name, FileKey};
use crate::node::Ctx;
use crate::protocol::gossip::ExtraHeld;
use crate::record::now_ms;

/// Entries of each kind restored at most (and the largest file read), so a damaged or
/// planted file cannot make the node allocate without bound.
const MAX_ENTRIES: usize = 65_536;
const MAX_FILE_BYTES: u64 = 64 << 20;
/// How long a restarted node waits for peers before re-reading its delegated states.
const PEER_WAIT: Duration = Duration::from_secs(30);

/// The saved state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub extras: Vec<ExtraHeld>,
    /// Delegations this node serves: file, name, lease expiry (unix ms).
    pub delegations: Vec<(FileKey, String, u64)>,
    /// Files this node is root of that have a delegate: file, delegate, lease expiry.
    pub delegates: Vec<(FileKey, PeerId, u64)>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("balancing.cbor")
}

/// What the holdings hold now, in a stable order (so an unchanged state compares equal).
pub fn snapshot(ctx: &Ctx) -> Saved {
    let st = ctx.balance.state();
    let h = &st.holdings;
    let mut delegations: Vec<_> = h
        .delegated
        .iter()
        .map(|(k, d)| (*k, d.name.clone(), d.expires))
        .collect();
    delegations.sort();
    let mut delegates: Vec<_> = h
        .my_delegates
        .iter()
        .map(|(k, (p, exp))| (*k, *p, *exp))
        .collect();
    delegates.sort();
    Saved {
        extras: h.extras.values().map(|x| x.held.clone()).collect(),
        delegations,
        delegates,
    }
}

/// Writes the state if it differs from what was last written.
pub async fn save_if_changed(ctx: &Arc<Ctx>) {
    let now = snapshot(ctx);
    if ctx.balance.saved().as_ref() == Some(&now) {
        return;
    }
    let file = path(&ctx.config.data_dir);
    let bytes = match cbor4ii::serde::to_vec(Vec::new(), &now) {
        Ok(b) => b,
        Err(e) => return tracing::warn!("cannot encode balancing state: {e}"),
    };
    let written = tokio::task::spawn_blocking(move || write_atomically(&file, &bytes)).await;
    match written {
        Ok(Ok(())) => *ctx.balance.saved() = Some(now),
        Ok(Err(e)) => tracing::warn!("cannot save balancing state: {e}"),
        Err(e) => tracing::warn!("cannot save balancing state: {e}"),
    }
}

fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = file.with_extension("cbor.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}

/// Reads the saved state; empty (and logged) when there is none or it does not decode.
pub fn load(data_dir: &Path) -> Saved {
    let file = path(data_dir);
    let read = std::fs::metadata(&file).and_then(|m| {
        if m.len() > MAX_FILE_BYTES {
            Err(std::io::Error::other(format!("{} bytes", m.len())))
        } else {
            std::fs::read(&file)
        }
    });
    let bytes = match read {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Saved::default(),
        Err(e) => {
            tracing::warn!(file = %file.display(), "balancing state not read: {e}");
            return Saved::default();
        }
    };
    match cbor4ii::serde::from_slice::<Saved>(&bytes) {
        Ok(mut s) => {
            s.extras.truncate(MAX_ENTRIES);
            s.delegations.truncate(MAX_ENTRIES);
            s.delegates.truncate(MAX_ENTRIES);
            s
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), "balancing state ignored: {e}");
            Saved::default()
        }
    }
}

/// Takes back what `saved` holds that is still true: extras whose block is here, unexpired
/// delegates of our files, and (in the background, once peers answer) unexpired
/// delegations, each re-read from the file's replica set.
pub fn restore(ctx: &Arc<Ctx>, saved: Saved) {
    let now = now_ms();
    {
        let mut st = ctx.balance.state();
        // A manager counts only the extras it saw granted: one elected after the restart
        // (or this node, elected again with a fresh view) may never have, and would never
        // drop them. So a restored extra serves for one hold time and then goes by itself
        // unless a decision grants it again (`apply::expire_extras`).
        let until = Instant::now() + Duration::from_millis(ctx.balance.config.policy.hold_ms);
        for held in saved.extras {
            if ctx.store.blocks.contains(&held.id) && validate_name(&held.file).is_ok() {
                let mut extra = Extra::granted(held);
                extra.unconfirmed_until = Some(until);
                st.holdings.extras.insert(extra.held.id, extra);
            }
        }
        for (key, peer, expires) in saved.delegates {
            if expires > now {
                st.holdings.my_delegates.insert(key, (peer, expires));
            }
        }
    }
    let leases: Vec<_> = saved
        .delegations
        .into_iter()
        .filter(|(key, name, expires)| *expires > now && FileKey::for_name(name) == *key)
        .collect();
    if leases.is_empty() {
        return;
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        while ctx.peers.live_peers().is_empty() && start.elapsed() < PEER_WAIT {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (key, name, expires) in leases {
            let state = delegate::take(&ctx, key, &name, expires).await;
            tracing::info!(file = %name, "delegation after restart: {}", state.label());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BlockId;

    #[test]
    fn a_saved_state_loads_back_and_a_damaged_one_loads_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), Saved::default(), "no file yet");
        let peer = PeerId::random();
        let saved = Saved {
            extras: vec![ExtraHeld {
                id: BlockId([3; 32]),
                file: "a/b".into(),
                size: 1 << 20,
                base: vec![peer],
            }],
            delegations: vec![(FileKey::for_name("a/b"), "a/b".into(), 42)],
            delegates: vec![(FileKey::for_name("c"), peer, 7)],
        };
        let bytes = cbor4ii::serde::to_vec(Vec::new(), &saved).expect("encode");
        write_atomically(&path(dir.path()), &bytes).expect("write");
        assert_eq!(load(dir.path()), saved);
        for damaged in [&bytes[..bytes.len() / 2], b"not cbor at all", &[0xff; 3]] {
            std::fs::write(path(dir.path()), damaged).expect("write");
            assert_eq!(load(dir.path()), Saved::default());
        }
    }
}
