//! Reads of a file's state that no single peer can roll back or forge.
//!
//! Every member of the replica set is asked; every answer is checked like any copy
//! (`root::check_copy`: owner signatures, key, one owner chain, attested root-kept fields) and
//! a bad one is dropped and counted. Of the answers that remain, the newest wins — unless two
//! of them are of different histories (another owner's chain, or another record at one
//! version), and then only a history that a majority of the replica set holds can win. So a
//! lying member can neither serve a forged file nor, with an honest majority, roll a reader
//! back: it can only fail to answer. Members found behind are sent the winning state (read
//! repair). A holder list that hides real holders (a lying root's) costs readers no data: they
//! fall back to the peers placement would choose for the block (`access::file_response`).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use libp2p::PeerId;

use super::root::{check_copy_why, CopyRefusal};
use super::{Ctx, NodeError};
use crate::ids::FileKey;
use crate::placement::majority;
use crate::protocol::meta::{MetaRequest, MetaResponse};
use crate::record::{compatible, DownloadNote, FileState, RecordError};

/// How long a read waits for the rest of the replica set once a majority has answered.
const STRAGGLER_GRACE: Duration = Duration::from_secs(3);

/// What a read of a file's replica set found.
pub struct ReadOutcome {
    /// The root (closest member holding the winning version), the members holding that
    /// version, and the state itself.
    pub best: Option<(PeerId, Vec<PeerId>, FileState)>,
    /// The winning state exactly as its signer attested it (the same as `best`'s today; kept
    /// apart so callers that pass a state on never get one a reader has reordered).
    pub signed: Option<FileState>,
    /// Members that answered with something that verified (a state, or "none").
    pub answered: usize,
    pub set_size: usize,
}

impl ReadOutcome {
    /// A "no such file" is trustworthy only when a majority of the replica set said so.
    pub fn is_authoritative(&self) -> bool {
        self.answered >= majority(self.set_size.max(1))
    }
}

/// Why no state could be chosen.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// Index of the winner among the answers, the indices of answers of the same version
    /// (replicas) and of answers behind it (to repair).
    Winner {
        winner: usize,
        replicas: Vec<usize>,
        behind: Vec<usize>,
    },
    /// No answer held a state.
    Nothing,
    /// Answers of different histories, none held by a majority of the set.
    Conflict,
}

/// Picks the state a read returns from verified answers, in replica-set order (closest
/// first). Pure, so the rule is tested on its own.
pub fn choose(answers: &[FileState], set_size: usize) -> Choice {
    if answers.is_empty() {
        return Choice::Nothing;
    }
    let support: Vec<usize> = answers
        .iter()
        .map(|a| answers.iter().filter(|b| compatible(a, b)).count())
        .collect();
    let conflict = support.iter().any(|s| *s < answers.len());
    let need = if conflict {
        majority(set_size.max(1))
    } else {
        1
    };
    // Newest first; ties go to the closest member (the root keeps the user list).
    let winner = (0..answers.len())
        .filter(|i| support[*i] >= need)
        .max_by(|a, b| {
            answers[*a]
                .position()
                .cmp(&answers[*b].position())
                .then(b.cmp(a))
        });
    let Some(winner) = winner else {
        return Choice::Conflict;
    };
    let w = &answers[winner];
    let head = w.head().map(|h| (h.version, h.signature.clone()));
    let mut replicas = Vec::new();
    let mut behind = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if !compatible(a, w) {
            continue;
        }
        if a.head().map(|h| (h.version, h.signature.clone())) == head {
            replicas.push(i);
        } else {
            behind.push(i);
        }
    }
    Choice::Winner {
        winner,
        replicas,
        behind,
    }
}

/// Reads a file's state from every member of its replica set; see the module doc for the
/// rule. `note` (a downloader's signed note) goes to the root only.
pub async fn read_state_detailed(
    ctx: &Arc<Ctx>,
    name: &str,
    note: Option<DownloadNote>,
) -> Result<ReadOutcome, NodeError> {
    loop {
        let set = ctx.replica_set(name).await;
        let (outcome, outside_window) = read_once(ctx, name, note.clone(), set).await;
        // A node that has just (re)started may not yet see the peer that signed a file's
        // root-kept fields, and refuses every copy as signed by a stranger. Refusing is safe;
        // answering "not found" is not: ask again while the view forms, a few seconds at most.
        let nothing_won = outcome.as_ref().map_or(true, |o| o.best.is_none());
        if nothing_won && outside_window > 0 && !ctx.view_forming() {
            // Copies exist but were refused only for who signed them: the file is there and
            // cannot be checked now, which is "unavailable", never "not found".
            return Err(NodeError::NoReplica {
                name: name.to_string(),
                failures: format!(
                    "{outside_window} copies are signed by peers this node does not see in \
                     the key's window; try again later or through another node"
                ),
            });
        }
        if !(nothing_won && outside_window > 0) {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`read_state_detailed`] from a given replica set (a hand-over reads back from exactly the
/// set it is handing to, not from whatever the view says a moment later).
pub async fn read_from(
    ctx: &Arc<Ctx>,
    name: &str,
    note: Option<DownloadNote>,
    set: Vec<PeerId>,
) -> Result<ReadOutcome, NodeError> {
    read_once(ctx, name, note, set).await.0
}

/// One read of the set, and how many copies were refused only for their signer's place.
async fn read_once(
    ctx: &Arc<Ctx>,
    name: &str,
    note: Option<DownloadNote>,
    set: Vec<PeerId>,
) -> (Result<ReadOutcome, NodeError>, usize) {
    let key = FileKey::for_name(name);
    let mut replies: FuturesUnordered<_> = set
        .iter()
        .enumerate()
        .map(|(i, peer)| {
            let ctx = ctx.clone();
            let peer = *peer;
            let note = if i == 0 { note.clone() } else { None };
            async move {
                let reply = ctx.meta_to(peer, MetaRequest::Fetch { key, note }).await;
                (i, peer, reply)
            }
        })
        .collect();
    let mut answers: Vec<(usize, PeerId, FileState)> = Vec::new();
    let mut failures = Vec::new();
    let mut answered = 0;
    let mut outside_window = 0;
    let needed = majority(set.len().max(1));
    loop {
        // Once a majority answered, a silent member gets a short grace, not a full timeout.
        let next = if answered >= needed {
            match tokio::time::timeout(STRAGGLER_GRACE, replies.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        } else {
            replies.next().await
        };
        let Some((i, peer, reply)) = next else { break };
        match reply {
            Ok(MetaResponse::State { state: None }) => answered += 1,
            Ok(MetaResponse::State { state: Some(state) }) => {
                match check_copy_why(ctx, &key, &state) {
                    Ok(()) => {
                        answered += 1;
                        answers.push((i, peer, state));
                    }
                    Err(refusal) => {
                        if matches!(refusal, CopyRefusal::OutsideWindow(_)) {
                            outside_window += 1;
                        }
                        let e = RecordError::from(refusal);
                        ctx.refusals.refuse("invalid state read", Some(peer), &e);
                        failures.push(format!("{peer}: {e}"));
                    }
                }
            }
            Ok(other) => failures.push(format!("{peer}: {other:?}")),
            Err(e) => failures.push(format!("{peer}: {e}")),
        }
    }
    if answered == 0 && !failures.is_empty() {
        let error = NodeError::NoReplica {
            name: name.to_string(),
            failures: failures.join("; "),
        };
        return (Err(error), outside_window);
    }
    answers.sort_by_key(|(i, _, _)| *i);
    let states: Vec<FileState> = answers.iter().map(|(_, _, s)| s.clone()).collect();
    let mut signed = None;
    let best = match choose(&states, set.len()) {
        Choice::Nothing => None,
        Choice::Conflict => {
            let error = NodeError::Refused(format!(
                "the replica set of {name:?} holds conflicting histories and none has a majority"
            ));
            return (Err(error), outside_window);
        }
        Choice::Winner {
            winner,
            replicas,
            behind,
        } => {
            let state = states[winner].clone();
            let members: Vec<PeerId> = replicas.iter().map(|i| answers[*i].1).collect();
            repair_behind(
                ctx,
                key,
                &states[winner],
                behind.iter().map(|i| answers[*i].1),
            );
            let root = members.first().copied().unwrap_or(ctx.local);
            signed = Some(states[winner].clone());
            Some((root, members, state))
        }
    };
    let outcome = ReadOutcome {
        best,
        signed,
        answered,
        set_size: set.len(),
    };
    (Ok(outcome), outside_window)
}

/// Sends the winning state to members found behind, in the background.
fn repair_behind(
    ctx: &Arc<Ctx>,
    key: FileKey,
    winner: &FileState,
    behind: impl Iterator<Item = PeerId>,
) {
    let state = super::root::vouched(ctx, &key, winner);
    for peer in behind {
        let ctx = ctx.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _ = ctx
                .meta_to(peer, MetaRequest::Replicate { key, state })
                .await;
        });
    }
}

/// The winning state of a file across its replica set, with its root and replicas.
pub async fn read_state(
    ctx: &Arc<Ctx>,
    name: &str,
    note: Option<DownloadNote>,
) -> Result<Option<(PeerId, Vec<PeerId>, FileState)>, NodeError> {
    read_state_detailed(ctx, name, note).await.map(|r| r.best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{record, state_of};
    use libp2p::identity::Keypair;

    #[test]
    fn the_newest_answer_wins_when_all_agree() {
        let o = Keypair::generate_ed25519();
        let v1 = state_of(vec![record(&o, 1, &[b"a"])]);
        let v2 = state_of(vec![record(&o, 1, &[b"a"]), record(&o, 2, &[b"b"])]);
        match choose(&[v1.clone(), v2.clone(), v1], 3) {
            Choice::Winner {
                winner,
                replicas,
                behind,
            } => {
                assert_eq!(winner, 1);
                assert_eq!(replicas, vec![1]);
                assert_eq!(behind, vec![0, 2]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_forged_answer_cannot_win_against_an_honest_majority() {
        let owner = Keypair::generate_ed25519();
        let thief = Keypair::generate_ed25519();
        let real = state_of(vec![record(&owner, 1, &[b"a"]), record(&owner, 2, &[b"b"])]);
        let forged = state_of(vec![record(&thief, 7, &[b"evil"])]);
        match choose(&[forged.clone(), real.clone(), real.clone()], 3) {
            Choice::Winner { winner, .. } => assert_ne!(winner, 0, "the forged history lost"),
            other => panic!("{other:?}"),
        }
        // One honest and one forged answer out of three: nobody has a majority.
        assert_eq!(choose(&[forged, real], 3), Choice::Conflict);
        assert_eq!(choose(&[], 3), Choice::Nothing);
    }

    #[test]
    fn a_stale_answer_loses_and_is_marked_behind() {
        let o = Keypair::generate_ed25519();
        let old = state_of(vec![record(&o, 1, &[b"a"])]);
        let new = state_of(vec![record(&o, 1, &[b"a"]), record(&o, 2, &[b"b"])]);
        match choose(&[old, new.clone(), new], 3) {
            Choice::Winner { winner, behind, .. } => {
                assert_eq!(winner, 1);
                assert_eq!(behind, vec![0]);
            }
            other => panic!("{other:?}"),
        }
    }
}
