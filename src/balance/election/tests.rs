//! Whole swarms of election machines on a lossless network with an adjustable cut. A vote's
//! payload is its voter's id (the node layer checks signatures; here they cannot be forged).

use super::*;

const T: u64 = 100;

type E = Election<u32, u32>;

struct Net {
    nodes: Vec<Option<E>>,
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

    fn hears(&self, a: usize, b: usize) -> bool {
        a != b && self.group[a] == self.group[b] && self.nodes[b].is_some()
    }

    /// Delivers `out` from `from` to its group, and everything it causes, until quiet.
    fn deliver(&mut self, from: usize, out: Out<u32, u32>) {
        let mut queue = vec![(from, out)];
        while let Some((src, out)) = queue.pop() {
            // A candidate's own vote goes in first, as the node does.
            if let Out::Candidacy { term } = &out {
                let term = *term;
                if let Some(Some(e)) = self.nodes.get_mut(src) {
                    if let Some(hb) = e.on_vote(src as u32, term, src as u32, src as u32) {
                        queue.push((src, hb));
                    }
                }
            }
            for to in 0..self.nodes.len() {
                if !self.hears(src, to) {
                    continue;
                }
                let now = self.now;
                let Some(e) = self.nodes[to].as_mut() else {
                    continue;
                };
                let reply = match &out {
                    Out::Candidacy { term } => e.on_candidacy(src as u32, *term, now).ok(),
                    Out::Vote { term, candidate } => {
                        e.on_vote(src as u32, *term, *candidate, src as u32)
                    }
                    Out::Heartbeat { term, cert, .. } => {
                        let _ = e.on_heartbeat(src as u32, *term, cert, now);
                        None
                    }
                };
                if let Some(r) = reply {
                    queue.push((to, r));
                }
            }
        }
    }

    /// One round: electorates refreshed (the live nodes of one's group), every node ticks
    /// in a rotating order.
    fn round(&mut self) {
        self.now += T;
        let n = self.nodes.len();
        for i in 0..n {
            let members: Vec<u32> = (0..n)
                .filter(|j| self.group[*j] == self.group[i] && self.nodes[*j].is_some())
                .map(|j| j as u32)
                .collect();
            if let Some(e) = self.nodes[i].as_mut() {
                e.set_electorate(members);
            }
        }
        let start = (self.now / T) as usize % n;
        for k in 0..n {
            let i = (start + k) % n;
            let now = self.now;
            if let Some(out) = self.nodes[i].as_mut().and_then(|e| e.tick(now)) {
                self.deliver(i, out);
            }
        }
    }

    fn rounds(&mut self, k: usize) {
        for _ in 0..k {
            self.round();
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
fn seven_nodes_elect_exactly_one_manager_in_one_term() {
    let mut net = Net::new(7);
    net.rounds(4);
    assert_eq!(
        net.managers(),
        vec![(0, 1)],
        "the lowest rank stands alone and wins"
    );
    assert_eq!(net.agreed(), Some((0, 1)));
    for _ in 0..20 {
        net.round();
        assert_eq!(net.managers(), vec![(0, 1)], "stable: no re-election");
    }
}

#[test]
fn a_killed_manager_is_replaced_once() {
    let mut net = Net::new(7);
    net.rounds(5);
    assert_eq!(net.managers(), vec![(0, 1)]);
    net.nodes[0] = None;
    let mut rounds = 0;
    while net.managers().is_empty() {
        net.round();
        rounds += 1;
        assert!(rounds <= 6, "no manager after {rounds} rounds");
    }
    assert_eq!(net.managers(), vec![(1, 2)]);
    net.rounds(10);
    assert_eq!(net.agreed(), Some((1, 2)));
}

#[test]
fn a_minority_cannot_certify_a_term_to_the_majority() {
    let mut net = Net::new(5);
    net.rounds(5);
    assert_eq!(net.agreed(), Some((0, 1)));
    // Node 4 hears only itself: alone it wins its own electorate of one ...
    net.group[4] = 1;
    net.rounds(8);
    let (m4, t4) = net.nodes[4]
        .as_ref()
        .and_then(|e| e.manager())
        .expect("4 elects");
    assert_eq!(m4, 4);
    // ... but its certificate means nothing to the others, who keep their manager.
    let e = net.nodes[2].as_mut().expect("node 2");
    assert_eq!(
        e.on_heartbeat(4, t4, &[4], net.now),
        Err(Ignored::NoCertificate)
    );
    assert_eq!(e.manager(), Some((0, 1)));
}

#[test]
fn partitioned_groups_settle_on_one_manager_after_the_heal() {
    let mut net = Net::new(6);
    net.rounds(5);
    net.group = vec![0, 0, 0, 1, 1, 1];
    net.rounds(10);
    assert_eq!(net.managers_in(0).len(), 1);
    assert_eq!(net.managers_in(1).len(), 1);
    net.group = vec![0; 6];
    let mut rounds = 0;
    while net.agreed().is_none() || net.managers().len() != 1 {
        net.round();
        rounds += 1;
        assert!(
            rounds <= 20,
            "not settled after {rounds} rounds: {:?}",
            net.managers()
        );
    }
    let settled = net.agreed();
    net.rounds(10);
    assert_eq!(net.agreed(), settled, "stable after the heal");
}

#[test]
fn only_listed_peers_stand_and_others_are_ignored() {
    let mut net = Net::with_eligible(5, &[3, 4]);
    net.rounds(6);
    assert_eq!(net.managers(), vec![(3, 1)]);
    let now = net.now;
    let e = net.nodes[1].as_mut().expect("node 1");
    assert_eq!(
        e.on_heartbeat(0, 9, &[0, 1, 2], now),
        Err(Ignored::NotEligible)
    );
    assert_eq!(e.on_candidacy(0, 2, now), Err(Ignored::NotEligible));
    assert_eq!(e.manager(), Some((3, 1)));
}

#[test]
fn forged_terms_are_refused_without_arithmetic_on_them() {
    let mut net = Net::new(4);
    net.rounds(5);
    let now = net.now;
    let e = net.nodes[2].as_mut().expect("node 2");
    assert_eq!(e.manager(), Some((0, 1)));
    for term in [u64::MAX, MAX_TERM + 1] {
        assert_eq!(
            e.on_heartbeat(3, term, &[0, 1, 2, 3], now),
            Err(Ignored::TermTooHigh)
        );
        assert_eq!(e.on_candidacy(3, term, now), Err(Ignored::TermTooHigh));
    }
    assert_eq!(e.on_heartbeat(3, 5, &[3], now), Err(Ignored::NoCertificate));
    assert_eq!(e.on_heartbeat(3, 5, &[], now), Err(Ignored::NoCertificate));
    assert_eq!(
        e.on_candidacy(3, 1 + MAX_STEP + 1, now),
        Err(Ignored::TermJump)
    );
    assert_eq!(e.on_candidacy(3, 2, now), Err(Ignored::Sticky));
    assert_eq!(
        e.on_heartbeat(3, 0, &[0, 1, 2, 3], now),
        Err(Ignored::Stale)
    );
    assert_eq!(e.manager(), Some((0, 1)));
    net.rounds(10);
    assert_eq!(net.agreed(), Some((0, 1)), "nothing moved");
}

#[test]
fn one_vote_per_term() {
    let mut e: E = Election::new(5, [], T, 0);
    e.set_electorate([1, 2, 5]);
    assert_eq!(
        e.on_candidacy(1, 1, 10),
        Ok(Out::Vote {
            term: 1,
            candidate: 1
        })
    );
    assert_eq!(e.on_candidacy(2, 1, 11), Err(Ignored::AlreadyVoted));
    assert_eq!(
        e.on_candidacy(2, 2, 12),
        Ok(Out::Vote {
            term: 2,
            candidate: 2
        }),
        "a later term gets a vote: the first election may have failed"
    );
}

#[test]
fn a_late_joiner_follows_a_certified_manager() {
    let mut net = Net::new(3);
    net.rounds(5);
    assert_eq!(net.managers(), vec![(0, 1)]);
    let mut late: E = Election::new(9, [], T, net.now);
    late.set_electorate([0, 1, 2, 9]);
    late.on_heartbeat(0, 1, &[0, 1, 2], net.now)
        .expect("three of four is a majority");
    assert_eq!(late.manager(), Some((0, 1)));
    assert_eq!(late.tick(net.now + T), None, "no second manager");
}

#[test]
fn decisions_are_accepted_only_from_the_manager_of_our_term() {
    let mut net = Net::new(3);
    net.rounds(5);
    let e = net.nodes[2].as_ref().expect("node 2");
    assert_eq!(e.accepts_decisions(0, 1), Ok(()));
    assert_eq!(e.accepts_decisions(1, 1), Err(Ignored::NotManager));
    assert_eq!(e.accepts_decisions(0, 0), Err(Ignored::Stale));
    assert_eq!(e.accepts_decisions(0, 2), Err(Ignored::NotManager));
}
