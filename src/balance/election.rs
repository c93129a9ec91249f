//! Manager election over gossip: Raft-style terms and votes, as a state machine with pure
//! transitions (time is passed in, messages are returned).
//!
//! A term is legitimate only with a majority behind it. The electorate is the storage peers a
//! node currently considers live, itself included (the caller sets it every round); a vote is
//! a signed statement the node layer has already checked, so here a voter is just an id.
//! With T the report interval:
//! * a follower that has heard no manager for 3·T (2·T after a start, so a restarted node
//!   first listens) stands for `term + 1`; lower-ranked peers wait a round longer per rank, so
//!   one candidate usually stands alone and votes do not split;
//! * a peer votes at most once per term, for a term at most [`MAX_STEP`] above its own and at
//!   most [`MAX_TERM`], and never while it hears a live manager (other than the candidate):
//!   a stray or injected candidacy cannot unseat a manager;
//! * a candidate with votes from a majority of its electorate is manager; its heartbeats
//!   carry those votes (the certificate), and a node follows a heartbeat only if the votes
//!   in it that come from its own electorate are a majority of it. A higher certified term
//!   is adopted whatever its distance: a majority granted it, one step at a time;
//! * a candidate that has not won after two rounds gives up; the next try is a new term;
//! * a manager whose votes are no longer a majority of what it sees stands again; a
//!   certified manager that sees a candidacy above its term stands again above it (at most
//!   once per ten rounds), and its followers vote for it: that is how a healed partition,
//!   or a swarm grown past its manager's certificate, settles on one manager;
//! * decisions are accepted only from the manager of the term we hold.
//!
//! All term arithmetic is checked; nothing here can panic on what a peer sends.

use std::collections::BTreeSet;
use std::fmt::Debug;

use crate::protocol::gossip::{RoleTag, MAX_CERT, MAX_TERM};

/// How far above its own term a peer votes: enough for stragglers that missed a few failed
/// elections, too little for anyone to spend the term space.
pub const MAX_STEP: u64 = 8;

/// Rounds between two re-elections a certified manager holds because someone stood above it.
const RESTAND_ROUNDS: u64 = 10;

/// Why a message was not acted upon (each is counted and visible in `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// The author may not be manager (`--manager-peers`).
    NotEligible,
    /// An older term than ours.
    Stale,
    /// A second claim for our term that loses the tie-break.
    Conflict,
    /// A candidacy while our manager is alive.
    Sticky,
    /// A decision from a peer that is not our manager, or for a term we do not hold.
    NotManager,
    /// A heartbeat whose votes are not a majority of our electorate.
    NoCertificate,
    /// A candidacy too far above our term.
    TermJump,
    /// A term above [`MAX_TERM`].
    TermTooHigh,
    /// A second candidacy in a term we already voted in.
    AlreadyVoted,
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::NotEligible => "not eligible",
            Ignored::Stale => "stale term",
            Ignored::Conflict => "conflicting claim",
            Ignored::Sticky => "manager alive",
            Ignored::NotManager => "not the manager",
            Ignored::NoCertificate => "no valid certificate",
            Ignored::TermJump => "term jump",
            Ignored::TermTooHigh => "term too high",
            Ignored::AlreadyVoted => "already voted",
        }
    }
}

/// What the machine asks its node to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out<N, V> {
    /// Stand for `term` (the node also feeds its own signed vote back in).
    Candidacy { term: u64 },
    /// Sign and publish a vote for `candidate` in `term`.
    Vote { term: u64, candidate: N },
    /// Publish a heartbeat with these votes as its certificate.
    Heartbeat { term: u64, beat: u64, cert: Vec<V> },
}

#[derive(Clone, Debug)]
pub struct Election<N, V> {
    me: N,
    /// Empty: everyone may stand.
    eligible: BTreeSet<N>,
    /// Live storage peers, `me` included.
    electorate: BTreeSet<N>,
    round_ms: u64,
    term: u64,
    role: RoleTag,
    /// The manager of `term`, once known.
    manager: Option<N>,
    /// When we last heard our manager (or voted, or started, or stood).
    last_heard: u64,
    ever_had_manager: bool,
    /// The term we last voted in (for ourselves as candidate, too).
    voted: u64,
    /// As candidate: the votes for us in `term`; as manager: our certificate.
    votes: Vec<(N, V)>,
    /// Rounds spent as candidate in this term.
    candidate_rounds: u32,
    /// When we last stood again as a certified manager (see [`Self::on_candidacy`]).
    restood_at: Option<u64>,
    beat: u64,
}

impl<N: Copy + Ord + Debug, V: Clone> Election<N, V> {
    pub fn new(me: N, eligible: impl IntoIterator<Item = N>, round_ms: u64, now: u64) -> Self {
        Self {
            me,
            eligible: eligible.into_iter().collect(),
            electorate: BTreeSet::from([me]),
            round_ms: round_ms.max(1),
            term: 0,
            role: RoleTag::Follower,
            manager: None,
            last_heard: now,
            ever_had_manager: false,
            voted: 0,
            votes: Vec::new(),
            candidate_rounds: 0,
            restood_at: None,
            beat: 0,
        }
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn role(&self) -> RoleTag {
        self.role
    }

    pub fn is_manager(&self) -> bool {
        self.role == RoleTag::Manager
    }

    /// The manager we follow (ourselves if we are it) and its term.
    pub fn manager(&self) -> Option<(N, u64)> {
        match self.role {
            RoleTag::Manager => Some((self.me, self.term)),
            _ => self.manager.map(|m| (m, self.term)),
        }
    }

    /// Whether a heartbeat from `from` for `term` is one we already follow (the node can skip
    /// checking its certificate again).
    pub fn follows(&self, from: N, term: u64) -> bool {
        self.role == RoleTag::Follower && self.manager == Some(from) && self.term == term
    }

    pub fn is_eligible(&self, peer: &N) -> bool {
        self.eligible.is_empty() || self.eligible.contains(peer)
    }

    /// The live storage peers, as this node sees them now (itself is always in).
    pub fn set_electorate(&mut self, peers: impl IntoIterator<Item = N>) {
        self.electorate = peers.into_iter().collect();
        self.electorate.insert(self.me);
    }

    fn majority(&self, voters: impl IntoIterator<Item = N>) -> bool {
        let counted: BTreeSet<N> = voters
            .into_iter()
            .filter(|v| self.electorate.contains(v))
            .collect();
        counted.len() * 2 > self.electorate.len()
    }

    /// As manager: whether our certificate is still a majority of the electorate we see.
    fn certified(&self) -> bool {
        self.majority(self.votes.iter().map(|(v, _)| *v))
    }

    /// A heartbeat to publish right away (answering a candidacy we ignored), if we are manager.
    pub fn reassert(&mut self) -> Option<Out<N, V>> {
        (self.role == RoleTag::Manager).then(|| self.heartbeat())
    }

    fn timeout(&self) -> u64 {
        let base = if self.ever_had_manager { 3 } else { 2 };
        // Rank among the eligible live peers other than the manager we lost: the lowest
        // stands first, the others a round later each (at most three rounds later).
        let rank = self
            .electorate
            .iter()
            .filter(|p| self.is_eligible(p) && Some(**p) != self.manager)
            .take_while(|p| **p != self.me)
            .count()
            .min(3) as u64;
        (base + rank) * self.round_ms
    }

    fn manager_alive(&self, now: u64) -> bool {
        match self.role {
            RoleTag::Manager => true,
            RoleTag::Candidate => false,
            RoleTag::Follower => {
                self.manager.is_some() && now.saturating_sub(self.last_heard) < 2 * self.round_ms
            }
        }
    }

    fn follow(&mut self, term: u64, manager: Option<N>, now: u64) {
        self.term = term;
        self.role = RoleTag::Follower;
        self.manager = manager;
        self.last_heard = now;
        self.votes.clear();
        if manager.is_some() {
            self.ever_had_manager = true;
        }
    }

    fn stand(&mut self, term: u64, now: u64) -> Option<Out<N, V>> {
        if term > MAX_TERM || !self.is_eligible(&self.me) {
            return None;
        }
        self.term = term;
        self.voted = term;
        self.role = RoleTag::Candidate;
        self.manager = None;
        self.last_heard = now;
        self.votes.clear();
        self.candidate_rounds = 0;
        Some(Out::Candidacy { term })
    }

    fn heartbeat(&mut self) -> Out<N, V> {
        self.beat = self.beat.wrapping_add(1);
        Out::Heartbeat {
            term: self.term,
            beat: self.beat,
            cert: self.votes.iter().map(|(_, v)| v.clone()).collect(),
        }
    }

    /// Called once per round (every T). Returns what to publish, if anything.
    pub fn tick(&mut self, now: u64) -> Option<Out<N, V>> {
        match self.role {
            RoleTag::Manager if self.certified() => Some(self.heartbeat()),
            RoleTag::Manager => {
                // Our votes are no longer a majority of the swarm we see: win it again.
                let term = self.term.checked_add(1)?;
                self.stand(term, now)
            }
            RoleTag::Candidate => {
                self.candidate_rounds += 1;
                if self.candidate_rounds >= 2 {
                    // Not won in two rounds (split votes, or no majority reachable): give up
                    // and try again later, for a new term.
                    self.follow(self.term, None, now);
                }
                None
            }
            RoleTag::Follower => {
                if now.saturating_sub(self.last_heard) < self.timeout() {
                    return None;
                }
                let term = self.term.max(self.voted).checked_add(1)?;
                if !self.is_eligible(&self.me) || term > MAX_TERM {
                    // Keep waiting for an eligible peer; do not spin.
                    self.manager = None;
                    self.last_heard = now;
                    return None;
                }
                self.stand(term, now)
            }
        }
    }

    /// A candidacy for `term` by `from`: our vote, or why not.
    pub fn on_candidacy(&mut self, from: N, term: u64, now: u64) -> Result<Out<N, V>, Ignored> {
        if from == self.me {
            return Err(Ignored::Stale);
        }
        if !self.is_eligible(&from) {
            return Err(Ignored::NotEligible);
        }
        if term > MAX_TERM {
            return Err(Ignored::TermTooHigh);
        }
        let floor = self.term.max(self.voted);
        if term <= floor {
            return Err(if term == self.voted && term == self.term {
                if self.role == RoleTag::Manager {
                    Ignored::Conflict
                } else {
                    Ignored::AlreadyVoted
                }
            } else {
                Ignored::Stale
            });
        }
        if term > floor.saturating_add(MAX_STEP) {
            return Err(Ignored::TermJump);
        }
        if self.role == RoleTag::Manager && self.certified() {
            // Someone stands above a certified manager: a healed partition's other half, or
            // peers that missed us. Stand again above them (our followers vote for us), at
            // most once per RESTAND_ROUNDS, so a stray candidate costs a round of balance now
            // and then, never the role.
            let due = self
                .restood_at
                .is_none_or(|at| now.saturating_sub(at) >= RESTAND_ROUNDS * self.round_ms);
            if due {
                if let Some(out) = term.checked_add(1).and_then(|t| self.stand(t, now)) {
                    self.restood_at = Some(now);
                    return Ok(out);
                }
            }
            return Err(Ignored::Sticky);
        }
        // A manager whose votes no longer make a majority (a healed partition, a swarm grown
        // past its certificate) yields to the candidate like a follower without a manager.
        if self.role != RoleTag::Manager && self.manager_alive(now) && self.manager != Some(from) {
            return Err(Ignored::Sticky);
        }
        self.follow(term, None, now);
        self.voted = term;
        Ok(Out::Vote {
            term,
            candidate: from,
        })
    }

    /// A vote (already verified by the node) for `candidate` in `term`. Our own vote counts
    /// too. Returns the first heartbeat once the votes are a majority.
    pub fn on_vote(&mut self, voter: N, term: u64, candidate: N, vote: V) -> Option<Out<N, V>> {
        if self.role == RoleTag::Follower || term != self.term || candidate != self.me {
            return None; // a vote for someone else, or too late: ordinary traffic
        }
        if !self.electorate.contains(&voter)
            || self.votes.iter().any(|(v, _)| *v == voter)
            || self.votes.len() >= MAX_CERT
        {
            return None;
        }
        // Late votes still go into a manager's certificate: the more voters it shows, the
        // longer it stays a majority as peers come and go.
        self.votes.push((voter, vote));
        if self.role == RoleTag::Manager {
            return None;
        }
        if self.majority(self.votes.iter().map(|(v, _)| *v)) {
            self.role = RoleTag::Manager;
            self.manager = Some(self.me);
            self.ever_had_manager = true;
            return Some(self.heartbeat());
        }
        None
    }

    /// A heartbeat from `from` for `term`, whose certificate's votes (verified by the node:
    /// signed, for `from` and `term`, distinct) come from `voters`.
    pub fn on_heartbeat(
        &mut self,
        from: N,
        term: u64,
        voters: &[N],
        now: u64,
    ) -> Result<(), Ignored> {
        if from == self.me {
            return Ok(());
        }
        if !self.is_eligible(&from) {
            return Err(Ignored::NotEligible);
        }
        if term > MAX_TERM {
            return Err(Ignored::TermTooHigh);
        }
        if term < self.term {
            return Err(Ignored::Stale);
        }
        if self.follows(from, term) {
            self.last_heard = now;
            return Ok(());
        }
        if !self.majority(voters.iter().copied()) {
            return Err(Ignored::NoCertificate);
        }
        if term == self.term {
            // Two certified managers of one term can only come from electorates that saw
            // different swarms: the lowest id wins, the other yields.
            let rival = match self.role {
                RoleTag::Manager => Some(self.me),
                RoleTag::Follower => self.manager,
                RoleTag::Candidate => None,
            };
            if rival.is_some_and(|r| r < from) {
                return Err(Ignored::Conflict);
            }
        }
        self.follow(term, Some(from), now);
        self.voted = self.voted.max(term);
        Ok(())
    }

    /// May a decision batch of `term` from `from` be applied?
    pub fn accepts_decisions(&self, from: N, term: u64) -> Result<(), Ignored> {
        if term < self.term {
            return Err(Ignored::Stale);
        }
        match self.manager() {
            Some((m, t)) if m == from && t == term => Ok(()),
            _ => Err(Ignored::NotManager),
        }
    }
}

#[cfg(test)]
mod tests;
