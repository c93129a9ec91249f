//! What this node holds because of the manager's decisions: extra replicas, delegated file
//! states, moves in progress, and the outcomes it reports back. The root of a delegated file
//! also remembers its delegate here, to push updates to it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::expiring::Expiring;
use crate::ids::{BlockId, FileKey};
use crate::protocol::gossip::{Decision, DecisionId, DecisionState, ExtraHeld, Outcome};
use crate::record::FileState;

/// Outcomes kept (and re-sent with every report, so a lost report loses nothing).
const KEEP_OUTCOMES: usize = 32;

pub(super) struct Delegation {
    pub(super) name: String,
    pub(super) expires: u64,
    pub(super) state: FileState,
    pub(super) refreshed: Instant,
}

pub(super) struct MoveOut {
    pub(super) id: DecisionId,
    pub(super) block: BlockId,
    pub(super) name: String,
    pub(super) to: PeerId,
    pub(super) deadline: Instant,
    /// The root has listed the target: the move is half done.
    pub(super) listed: bool,
}

/// An extra replica this node holds, and what decides when it goes by itself.
///
/// The manager drops extras whose heat is gone. Two cases it cannot see, so the holder
/// handles them: an extra cold for twice the hold time (a manager that lost track of it, or
/// none elected), and an extra taken back after a restart, which no manager elected since
/// may have seen granted. That one stays for one hold time (serving the readers whose views
/// still know it) and then goes, unless a decision grants it again.
pub(super) struct Extra {
    pub(super) held: ExtraHeld,
    /// When its heat on this node last read zero, if it does now.
    pub(super) cold_since: Option<Instant>,
    /// For a restored extra not granted again yet: when it goes.
    pub(super) unconfirmed_until: Option<Instant>,
}

impl Extra {
    pub(super) fn granted(held: ExtraHeld) -> Self {
        Self {
            held,
            cold_since: None,
            unconfirmed_until: None,
        }
    }

    /// Notes this round's heat; whether the extra has outlived its use at `now`.
    pub(super) fn expired(&mut self, heat: f64, now: Instant, cold_for: Duration) -> bool {
        if heat > 0.0 {
            self.cold_since = None;
        } else if self.cold_since.is_none() {
            self.cold_since = Some(now);
        }
        let cold = self
            .cold_since
            .is_some_and(|since| now.saturating_duration_since(since) >= cold_for);
        let lapsed = self.unconfirmed_until.is_some_and(|until| now >= until);
        cold || lapsed
    }
}

pub struct Holdings {
    pub(super) extras: BTreeMap<BlockId, Extra>,
    pub(super) delegated: HashMap<FileKey, Delegation>,
    /// Delegations of files we are root of: where updates must be pushed.
    pub(super) my_delegates: HashMap<FileKey, (PeerId, u64)>,
    pub(super) outcomes: VecDeque<Outcome>,
    /// Decisions applied or in progress (applying is idempotent), for [`CACHE_AGE`].
    pub(super) started: Expiring<DecisionId, ()>,
    pub(super) moves_out: Vec<MoveOut>,
    /// Names of hot blocks and files this node described in its reports lately.
    pub(super) block_names: Expiring<BlockId, String>,
    pub(super) file_names: Expiring<FileKey, (String, bool, Instant)>,
    /// Copies a move found no record lists here: not offered as cold blocks again for
    /// [`UNLISTED_FOR`] (see `report::cold_blocks`).
    pub(super) unlisted: Expiring<BlockId, ()>,
    /// Copies a record was lately read to list here: offered as cold blocks without reading
    /// it again for [`LISTED_FOR`].
    pub(super) listed: Expiring<BlockId, ()>,
    /// Bytes copied for decisions this round, and when the round began.
    pub(super) work: (Instant, u64),
}

impl Default for Holdings {
    fn default() -> Self {
        Self {
            extras: BTreeMap::new(),
            delegated: HashMap::new(),
            my_delegates: HashMap::new(),
            outcomes: VecDeque::new(),
            started: Expiring::new(CACHE_AGE, 8192),
            moves_out: Vec::new(),
            block_names: Expiring::new(CACHE_AGE, 4096),
            file_names: Expiring::new(CACHE_AGE, 4096),
            unlisted: Expiring::new(UNLISTED_FOR, MAX_UNLISTED),
            listed: Expiring::new(LISTED_FOR, MAX_UNLISTED),
            work: (Instant::now(), 0),
        }
    }
}

/// How long a copy found unlisted is left out of the cold blocks offered for moves (by then
/// garbage collection has taken it, or a record lists it after all).
pub(super) const UNLISTED_FOR: std::time::Duration = std::time::Duration::from_secs(600);
/// How long a record's word that it lists a copy here is trusted before it is read again: a
/// copy stays listed until it is moved away (then it leaves the store) or its versions are
/// collected, so a stale verdict costs one move its target skips. 2 minutes was too long
/// under steady updates (the soak: 9 of n0's last 32 decisions skipped that way).
pub(super) const LISTED_FOR: std::time::Duration = std::time::Duration::from_secs(30);
/// Copies remembered as unlisted (or as listed) at most (past it the memory starts again).
const MAX_UNLISTED: usize = 4096;
/// How long the name caches and the started decisions are kept: long past the redelivery of
/// a published batch (so no decision is applied twice), and short enough that the caches
/// hold only what is hot lately.
pub(super) const CACHE_AGE: Duration = Duration::from_secs(600);

impl Holdings {
    /// Remembers that no record lists this node's copy of `block`.
    pub(super) fn note_unlisted(&mut self, block: BlockId) {
        self.listed.remove(&block);
        self.unlisted.insert(block, ());
    }

    /// Whether a move lately found this node's copy of `block` unlisted.
    pub(super) fn lately_unlisted(&self, block: &BlockId) -> bool {
        self.unlisted.contains_key(block)
    }

    /// Remembers that a record lists this node's copy of `block`.
    pub(super) fn note_listed(&mut self, block: BlockId) {
        self.listed.insert(block, ());
    }

    /// Whether a record read lately listed this node's copy of `block`.
    pub(super) fn lately_listed(&self, block: &BlockId) -> bool {
        self.listed.contains_key(block)
    }

    pub fn extras_list(&self) -> Vec<ExtraHeld> {
        self.extras.values().map(|x| x.held.clone()).collect()
    }

    pub fn delegations_list(&self, now_ms: u64) -> Vec<(FileKey, u64)> {
        let mut v: Vec<(FileKey, u64)> = self
            .delegated
            .iter()
            .filter(|(_, d)| d.expires > now_ms)
            .map(|(k, d)| (*k, d.expires))
            .collect();
        v.sort();
        v
    }

    pub fn recent_outcomes(&self) -> Vec<Outcome> {
        self.outcomes.iter().cloned().collect()
    }

    pub fn delegated_state(&self, file: &FileKey, now_ms: u64) -> Option<FileState> {
        self.delegated
            .get(file)
            .filter(|d| d.expires > now_ms)
            .map(|d| d.state.clone())
    }

    /// Every node sees every accepted decision; the root of a delegated file remembers its
    /// delegate so it can push updates to it.
    pub fn note_decision(&mut self, me: PeerId, d: &Decision) {
        match d {
            Decision::Delegate {
                file,
                root,
                to,
                expires_at,
            } if *root == me => {
                self.my_delegates.insert(*file, (*to, *expires_at));
            }
            Decision::EndDelegation { file, .. } => {
                self.my_delegates.remove(file);
            }
            _ => {}
        }
    }

    pub(super) fn finish(&mut self, id: DecisionId, state: DecisionState) {
        self.outcomes.retain(|o| o.id != id);
        self.outcomes.push_back(Outcome { id, state });
        while self.outcomes.len() > KEEP_OUTCOMES {
            self.outcomes.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra() -> Extra {
        Extra::granted(ExtraHeld {
            id: BlockId([1; 32]),
            file: "f".into(),
            size: 1,
            base: vec![],
        })
    }

    #[test]
    fn copies_found_unlisted_are_remembered_within_a_bound() {
        let mut h = Holdings::default();
        let id = |i: u32| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_be_bytes());
            BlockId(b)
        };
        h.note_unlisted(id(0));
        assert!(h.lately_unlisted(&id(0)));
        assert!(!h.lately_unlisted(&id(1)));
        for i in 1..=(MAX_UNLISTED as u32 * 2) {
            h.note_unlisted(id(i));
            assert!(h.unlisted.len() <= MAX_UNLISTED);
        }
        assert!(
            h.lately_unlisted(&id(MAX_UNLISTED as u32 * 2)),
            "the newest stays"
        );
    }

    #[test]
    fn an_extra_goes_after_being_cold_for_the_whole_period_and_heat_resets_it() {
        let (t0, cold_for) = (Instant::now(), Duration::from_secs(10));
        let mut x = extra();
        assert!(!x.expired(0.0, t0, cold_for), "cold from now on");
        assert!(!x.expired(0.0, t0 + Duration::from_secs(9), cold_for));
        assert!(
            !x.expired(5.0, t0 + Duration::from_secs(9), cold_for),
            "read again"
        );
        assert!(!x.expired(0.0, t0 + Duration::from_secs(12), cold_for));
        assert!(!x.expired(0.0, t0 + Duration::from_secs(21), cold_for));
        assert!(x.expired(0.0, t0 + Duration::from_secs(22), cold_for));
    }

    #[test]
    fn an_unconfirmed_extra_goes_at_its_deadline_however_hot() {
        let (t0, cold_for) = (Instant::now(), Duration::from_secs(10));
        let mut x = extra();
        x.unconfirmed_until = Some(t0 + Duration::from_secs(3));
        assert!(!x.expired(9.0, t0, cold_for));
        assert!(x.expired(9.0, t0 + Duration::from_secs(3), cold_for));
        x.unconfirmed_until = None;
        assert!(
            !x.expired(9.0, t0 + Duration::from_secs(3), cold_for),
            "granted again"
        );
    }
}
