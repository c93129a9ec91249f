//! How many bytes of blocks a peer may make this node store unasked.
//!
//! A holder takes a new block when it was assigned to: it is among the peers placement picks
//! for the block's id (a put), the request comes from a peer of the file's replica set (repair,
//! hand-over) or from this node itself (a balancing decision). Anything else comes out of a
//! small per-peer [`Allowance`], refilled over an hour, so a stranger can fill at most that
//! much of a disk, and garbage collection removes what no record references after its grace.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Bytes a peer may store here unasked, per [`REFILL`].
pub const UNSOLICITED_BYTES: u64 = 16 << 20;
/// How long a spent allowance takes to come back in full.
pub const REFILL: Duration = Duration::from_secs(3600);
/// Peers remembered; the longest idle one is forgotten first (it gets a full allowance back,
/// at most `UNSOLICITED_BYTES` more per forgotten id: ids are cheap, so this bounds memory,
/// not a determined attacker, whose junk garbage collection removes).
const MAX_PEERS: usize = 4096;

struct Bucket {
    left: u64,
    at: Instant,
}

#[derive(Default)]
pub struct Allowance {
    buckets: Mutex<HashMap<PeerId, Bucket>>,
}

impl Allowance {
    /// Takes `bytes` from `peer`'s allowance; false (and nothing taken) if it has not enough.
    pub fn take(&self, peer: PeerId, bytes: u64) -> bool {
        self.take_at(peer, bytes, Instant::now())
    }

    fn take_at(&self, peer: PeerId, bytes: u64, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_PEERS && !buckets.contains_key(&peer) {
            if let Some(idle) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(p, _)| *p) {
                buckets.remove(&idle);
            }
        }
        let b = buckets.entry(peer).or_insert(Bucket {
            left: UNSOLICITED_BYTES,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at);
        let refill =
            (UNSOLICITED_BYTES as f64 * elapsed.as_secs_f64() / REFILL.as_secs_f64()) as u64;
        b.left = b.left.saturating_add(refill).min(UNSOLICITED_BYTES);
        b.at = now;
        if b.left < bytes {
            return false;
        }
        b.left -= bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_allowance_and_no_more_until_it_refills() {
        let a = Allowance::default();
        let p = PeerId::random();
        let t0 = Instant::now();
        assert!(a.take_at(p, UNSOLICITED_BYTES - 1, t0));
        assert!(!a.take_at(p, 2, t0), "spent");
        assert!(
            a.take_at(PeerId::random(), 1 << 20, t0),
            "another peer has its own"
        );
        assert!(a.take_at(p, 1 << 20, t0 + REFILL / 8), "an eighth refilled");
        assert!(!a.take_at(p, UNSOLICITED_BYTES, t0 + REFILL / 8));
        assert!(
            a.take_at(p, UNSOLICITED_BYTES, t0 + REFILL * 2),
            "full again, never more"
        );
        assert!(!a.take_at(p, 1, t0 + REFILL * 2));
    }
}
