//! What this node holds because of the manager's decisions: extra replicas, delegated file
//! states, moves in progress, and the outcomes it reports back. The root of a delegated file
//! also remembers its delegate here, to push updates to it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use libp2p::PeerId;

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

pub struct Holdings {
    pub(super) extras: BTreeMap<BlockId, ExtraHeld>,
    pub(super) delegated: HashMap<FileKey, Delegation>,
    /// Delegations of files we are root of: where updates must be pushed.
    pub(super) my_delegates: HashMap<FileKey, (PeerId, u64)>,
    pub(super) outcomes: VecDeque<Outcome>,
    pub(super) started: HashSet<DecisionId>,
    pub(super) moves_out: Vec<MoveOut>,
    pub(super) block_names: HashMap<BlockId, String>,
    pub(super) file_names: HashMap<FileKey, (String, bool, Instant)>,
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
            started: HashSet::new(),
            moves_out: Vec::new(),
            block_names: HashMap::new(),
            file_names: HashMap::new(),
            work: (Instant::now(), 0),
        }
    }
}

impl Holdings {
    pub fn extras_list(&self) -> Vec<ExtraHeld> {
        self.extras.values().cloned().collect()
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
