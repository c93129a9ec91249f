//! Manager election over gossip: a small state machine with pure transitions.
//!
//! Every eligible node may stand. There are no votes (a partitioned group must still elect),
//! so conflicts are settled by a total order known to everyone: the higher term wins, and
//! within one term the lowest peer id wins. The rules, with T the report interval:
//! * a follower that has heard no heartbeat from its manager for 3·T (2·T before it has ever
//!   known one) stands for `term + 1` by publishing a candidacy;
//! * a candidate that heard no better candidacy (same term, lower id) or any higher term during
//!   one round becomes manager and heartbeats every round;
//! * a heartbeat of a higher term is always adopted (that is how a healed partition settles);
//!   of the same term it is adopted if it comes from a lower id than the manager we know (a
//!   candidate yields to any manager of its term); of a lower term it is stale and ignored;
//! * a manager answers a candidacy it ignores with an immediate heartbeat ([`Election::reassert`]),
//!   so a node that missed it (a late joiner) yields within the round;
//! * while a follower hears its manager, candidacies for higher terms are ignored ("sticky"
//!   managers), so a stray or injected candidacy cannot unseat a live manager; the follower
//!   remembers it and yields to it if its own timer later runs out;
//! * decisions are accepted only from the manager of the term we hold.
//!
//! Time is passed in (ms) and messages are returned, so the tests drive whole swarms of these
//! machines through partitions and failures without a network or a clock.

use std::collections::BTreeSet;
use std::fmt::Debug;

use crate::protocol::gossip::{ManagerMsg, RoleTag};

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
}

impl Ignored {
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::NotEligible => "not eligible",
            Ignored::Stale => "stale term",
            Ignored::Conflict => "conflicting claim",
            Ignored::Sticky => "manager alive",
            Ignored::NotManager => "not the manager",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Election<N> {
    me: N,
    /// Empty: everyone may stand.
    eligible: BTreeSet<N>,
    round_ms: u64,
    term: u64,
    role: RoleTag,
    /// The manager of `term`, once known.
    manager: Option<N>,
    /// When we last heard our manager (or adopted a candidacy, or started).
    last_heard: u64,
    ever_had_manager: bool,
    /// A candidacy ignored while our manager was alive: (term, lowest candidate, when).
    deferred: Option<(u64, N, u64)>,
    beat: u64,
}

impl<N: Copy + Ord + Debug> Election<N> {
    pub fn new(me: N, eligible: impl IntoIterator<Item = N>, round_ms: u64, now: u64) -> Self {
        Self {
            me,
            eligible: eligible.into_iter().collect(),
            round_ms: round_ms.max(1),
            term: 0,
            role: RoleTag::Follower,
            manager: None,
            last_heard: now,
            ever_had_manager: false,
            deferred: None,
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

    pub fn is_eligible(&self, peer: &N) -> bool {
        self.eligible.is_empty() || self.eligible.contains(peer)
    }

    fn timeout(&self) -> u64 {
        if self.ever_had_manager {
            3 * self.round_ms
        } else {
            2 * self.round_ms
        }
    }

    fn manager_alive(&self, now: u64) -> bool {
        match self.role {
            RoleTag::Manager => true,
            RoleTag::Candidate => false,
            RoleTag::Follower => {
                self.manager.is_some() && now.saturating_sub(self.last_heard) < self.timeout()
            }
        }
    }

    fn follow(&mut self, term: u64, manager: Option<N>, now: u64) {
        self.term = term;
        self.role = RoleTag::Follower;
        self.manager = manager;
        self.last_heard = now;
        if manager.is_some() {
            self.ever_had_manager = true;
        }
        if self.deferred.is_some_and(|(t, _, _)| t <= term) {
            self.deferred = None;
        }
    }

    /// Called once per round (every T). Returns what to publish, if anything.
    pub fn tick(&mut self, now: u64) -> Option<ManagerMsg> {
        match self.role {
            RoleTag::Manager => {
                self.beat += 1;
                Some(ManagerMsg::Heartbeat {
                    term: self.term,
                    beat: self.beat,
                })
            }
            RoleTag::Candidate => {
                // A whole round without hearing a better candidate: we won.
                self.role = RoleTag::Manager;
                self.manager = Some(self.me);
                self.ever_had_manager = true;
                self.last_heard = now;
                self.beat += 1;
                Some(ManagerMsg::Heartbeat {
                    term: self.term,
                    beat: self.beat,
                })
            }
            RoleTag::Follower => {
                if now.saturating_sub(self.last_heard) < self.timeout() {
                    return None;
                }
                let term = self.term + 1;
                // Someone stood while we still heard our manager: yield to them if they win
                // the tie-break, rather than splitting the vote.
                if let Some((t, c, at)) = self.deferred.take() {
                    let recent = now.saturating_sub(at) < self.timeout();
                    if recent && t >= term && (c < self.me || !self.is_eligible(&self.me)) {
                        self.follow(t, None, now);
                        return None;
                    }
                }
                if !self.is_eligible(&self.me) {
                    // Keep waiting for an eligible peer; do not spin.
                    self.manager = None;
                    self.last_heard = now;
                    return None;
                }
                self.term = term;
                self.role = RoleTag::Candidate;
                self.manager = None;
                self.last_heard = now;
                Some(ManagerMsg::Candidacy { term })
            }
        }
    }

    /// Handles an election message authored by `from`.
    pub fn on_message(&mut self, from: N, msg: ManagerMsg, now: u64) -> Result<(), Ignored> {
        if from == self.me {
            return Ok(());
        }
        if !self.is_eligible(&from) {
            return Err(Ignored::NotEligible);
        }
        match msg {
            ManagerMsg::Heartbeat { term, .. } => self.on_heartbeat(from, term, now),
            ManagerMsg::Candidacy { term } => self.on_candidacy(from, term, now),
        }
    }

    fn on_heartbeat(&mut self, from: N, term: u64, now: u64) -> Result<(), Ignored> {
        if term < self.term {
            return Err(Ignored::Stale);
        }
        if term > self.term {
            self.follow(term, Some(from), now);
            return Ok(());
        }
        match self.role {
            // A manager already holds our term (we missed it, e.g. we just joined): yield
            // rather than make a second one.
            RoleTag::Candidate => {
                self.follow(term, Some(from), now);
                Ok(())
            }
            RoleTag::Manager => {
                if from < self.me {
                    self.follow(term, Some(from), now);
                    Ok(())
                } else {
                    Err(Ignored::Conflict)
                }
            }
            RoleTag::Follower => match self.manager {
                Some(m) if m != from && m < from => Err(Ignored::Conflict),
                _ => {
                    self.follow(term, Some(from), now);
                    Ok(())
                }
            },
        }
    }

    fn on_candidacy(&mut self, from: N, term: u64, now: u64) -> Result<(), Ignored> {
        if term < self.term {
            return Err(Ignored::Stale);
        }
        if term > self.term {
            if self.manager_alive(now) {
                let better = match self.deferred {
                    Some((t, c, _)) => term > t || (term == t && from < c),
                    None => true,
                };
                if better {
                    self.deferred = Some((term, from, now));
                }
                return Err(Ignored::Sticky);
            }
            // No live manager: the first higher-term candidacy we hear is the election.
            self.follow(term, None, now);
            return Ok(());
        }
        match self.role {
            RoleTag::Candidate if from < self.me => {
                self.follow(term, None, now);
                Ok(())
            }
            RoleTag::Candidate => Ok(()), // we beat them; they will yield or hear our heartbeat
            RoleTag::Manager => Err(Ignored::Conflict),
            RoleTag::Follower if self.manager.is_some() => Err(Ignored::Conflict),
            RoleTag::Follower => Ok(()),
        }
    }

    /// A heartbeat to publish right away (answering a stray candidacy), if we are manager.
    pub fn reassert(&mut self) -> Option<ManagerMsg> {
        (self.role == RoleTag::Manager).then(|| {
            self.beat += 1;
            ManagerMsg::Heartbeat {
                term: self.term,
                beat: self.beat,
            }
        })
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
mod tests {
    use super::*;

    const T: u64 = 100;

    /// A swarm of election machines on a lossless network with an adjustable cut.
    struct Net {
        nodes: Vec<Option<Election<u32>>>,
        /// group[i]: nodes only hear nodes of the same group.
        group: Vec<u8>,
        now: u64,
    }

    impl Net {
        fn new(n: u32) -> Self {
            Self::with_eligible(n, &[])
        }

        fn with_eligible(n: u32, eligible: &[u32]) -> Self {
            Net {
                nodes: (0..n)
                    .map(|i| Some(Election::new(i, eligible.iter().copied(), T, 0)))
                    .collect(),
                group: vec![0; n as usize],
                now: 0,
            }
        }

        /// One round: every node ticks (in a rotating order), messages reach its group.
        fn round(&mut self) {
            self.now += T;
            let n = self.nodes.len();
            let start = (self.now / T) as usize % n;
            let mut sent = Vec::new();
            for k in 0..n {
                let i = (start + k) % n;
                if let Some(e) = self.nodes[i].as_mut() {
                    if let Some(m) = e.tick(self.now) {
                        sent.push((i, m));
                    }
                }
            }
            for (from, m) in sent {
                for to in 0..n {
                    if to != from && self.group[to] == self.group[from] {
                        if let Some(e) = self.nodes[to].as_mut() {
                            let _ = e.on_message(from as u32, m, self.now);
                        }
                    }
                }
            }
        }

        fn managers(&self) -> Vec<(u32, u64)> {
            self.nodes
                .iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    e.as_ref()
                        .filter(|e| e.is_manager())
                        .map(|e| (i as u32, e.term()))
                })
                .collect()
        }

        fn managers_in(&self, g: u8) -> Vec<(u32, u64)> {
            self.managers()
                .into_iter()
                .filter(|(i, _)| self.group[*i as usize] == g)
                .collect()
        }

        /// Every live node follows the same manager at the same term.
        fn agreed(&self) -> Option<(u32, u64)> {
            let mut views = self.nodes.iter().flatten().map(|e| e.manager());
            let first = views.next()??;
            views.all(|v| v == Some(first)).then_some(first)
        }
    }

    #[test]
    fn seven_nodes_elect_exactly_one_manager_within_three_rounds() {
        let mut net = Net::new(7);
        for _ in 0..3 {
            net.round();
        }
        assert_eq!(net.managers(), vec![(0, 1)], "lowest id wins term 1");
        assert_eq!(net.agreed(), Some((0, 1)));
        for _ in 0..20 {
            net.round();
            assert_eq!(net.managers(), vec![(0, 1)], "stable: no re-election");
        }
    }

    #[test]
    fn a_killed_manager_is_replaced_once_within_three_rounds_plus_one() {
        let mut net = Net::new(7);
        for _ in 0..5 {
            net.round();
        }
        assert_eq!(net.managers(), vec![(0, 1)]);
        net.nodes[0] = None;
        let mut rounds = 0;
        while net.managers().is_empty() {
            net.round();
            rounds += 1;
            assert!(rounds <= 4, "no manager after {rounds} rounds");
        }
        assert_eq!(net.managers(), vec![(1, 2)]);
        for _ in 0..10 {
            net.round();
        }
        assert_eq!(net.agreed(), Some((1, 2)));
    }

    #[test]
    fn partitioned_groups_each_elect_and_the_highest_term_survives_the_heal() {
        let mut net = Net::new(6);
        for _ in 0..5 {
            net.round();
        }
        // Cut {0,1,2} from {3,4,5}: group 1 loses its manager (0) and elects.
        net.group = vec![0, 0, 0, 1, 1, 1];
        for _ in 0..8 {
            net.round();
        }
        assert_eq!(net.managers_in(0), vec![(0, 1)]);
        assert_eq!(net.managers_in(1), vec![(3, 2)]);
        net.group = vec![0; 6];
        net.round();
        for _ in 0..3 {
            net.round();
        }
        assert_eq!(net.managers(), vec![(3, 2)], "the higher term wins");
        assert_eq!(net.agreed(), Some((3, 2)));
    }

    #[test]
    fn groups_split_from_the_start_settle_equal_terms_by_lowest_id() {
        let mut net = Net::new(6);
        net.group = vec![1, 0, 1, 0, 1, 0];
        for _ in 0..5 {
            net.round();
        }
        assert_eq!(net.managers(), vec![(0, 1), (1, 1)]);
        net.group = vec![0; 6];
        for _ in 0..3 {
            net.round();
        }
        assert_eq!(net.managers(), vec![(0, 1)]);
        assert_eq!(net.agreed(), Some((0, 1)));
    }

    #[test]
    fn only_listed_peers_stand_and_others_are_ignored() {
        let mut net = Net::with_eligible(5, &[3, 4]);
        for _ in 0..4 {
            net.round();
        }
        assert_eq!(net.managers(), vec![(3, 1)]);
        let e = net.nodes[1].as_mut().expect("node 1");
        let now = net.now;
        assert_eq!(
            e.on_message(0, ManagerMsg::Heartbeat { term: 9, beat: 1 }, now),
            Err(Ignored::NotEligible)
        );
        assert_eq!(e.manager(), Some((3, 1)));
    }

    #[test]
    fn stale_heartbeats_and_candidacies_while_the_manager_lives_are_ignored() {
        let mut net = Net::new(4);
        for _ in 0..6 {
            net.round();
        }
        let now = net.now;
        let e = net.nodes[2].as_mut().expect("node 2");
        assert_eq!(e.manager(), Some((0, 1)));
        assert_eq!(
            e.on_message(3, ManagerMsg::Heartbeat { term: 0, beat: 9 }, now),
            Err(Ignored::Stale)
        );
        assert_eq!(
            e.on_message(3, ManagerMsg::Candidacy { term: 2 }, now),
            Err(Ignored::Sticky)
        );
        assert_eq!(
            e.on_message(3, ManagerMsg::Heartbeat { term: 1, beat: 9 }, now),
            Err(Ignored::Conflict),
            "same term, higher id than our manager"
        );
        assert_eq!(e.manager(), Some((0, 1)));
        // A stray candidacy does not disturb the swarm at all.
        for _ in 0..10 {
            net.round();
        }
        assert_eq!(net.agreed(), Some((0, 1)));
    }

    #[test]
    fn a_late_candidate_yields_to_the_manager_that_answers_it() {
        let mut net = Net::new(3);
        for _ in 0..4 {
            net.round();
        }
        assert_eq!(net.managers(), vec![(0, 1)]);
        // A joiner that heard nothing stands for term 1, which node 0 already holds.
        let mut late = Election::new(9u32, [], T, net.now);
        let now = net.now + 2 * T;
        let Some(ManagerMsg::Candidacy { term: 1 }) = late.tick(now) else {
            panic!("the joiner stands");
        };
        let m = net.nodes[0].as_mut().expect("manager");
        assert_eq!(
            m.on_message(9, ManagerMsg::Candidacy { term: 1 }, now),
            Err(Ignored::Conflict)
        );
        let beat = m.reassert().expect("the manager answers");
        late.on_message(0, beat, now + 1).expect("adopted");
        assert_eq!(late.manager(), Some((0, 1)));
        assert_eq!(late.tick(now + T), None, "no second manager");
    }

    #[test]
    fn decisions_are_accepted_only_from_the_manager_of_our_term() {
        let mut net = Net::new(3);
        for _ in 0..4 {
            net.round();
        }
        let e = net.nodes[2].as_ref().expect("node 2");
        assert_eq!(e.accepts_decisions(0, 1), Ok(()));
        assert_eq!(e.accepts_decisions(1, 1), Err(Ignored::NotManager));
        assert_eq!(e.accepts_decisions(0, 0), Err(Ignored::Stale));
        assert_eq!(e.accepts_decisions(0, 2), Err(Ignored::NotManager));
    }

    #[test]
    fn a_deferred_candidacy_is_honoured_when_our_own_timer_runs_out() {
        let mut e = Election::new(5u32, [], T, 0);
        e.on_message(7, ManagerMsg::Heartbeat { term: 1, beat: 1 }, 0)
            .expect("adopted");
        assert_eq!(
            e.on_message(2, ManagerMsg::Candidacy { term: 2 }, 250),
            Err(Ignored::Sticky)
        );
        // Timer runs out: yield to the lower-id candidate instead of standing.
        assert_eq!(e.tick(300), None);
        assert_eq!(e.term(), 2);
        assert_eq!(e.role(), RoleTag::Follower);
        e.on_message(2, ManagerMsg::Heartbeat { term: 2, beat: 1 }, 310)
            .expect("winner adopted");
        assert_eq!(e.manager(), Some((2, 2)));
    }
}
