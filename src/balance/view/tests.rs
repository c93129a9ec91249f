//! Unit tests of the swarm view: what a report may make it hold, how its maps stay bounded, and
//! the planner input it builds.

use super::*;
use crate::protocol::gossip::{BlockHeat, ExtraHeld, FileHeat, Outcome, RoleTag};

fn report(seq: u64, load: f64) -> LoadReport {
    LoadReport {
        seq,
        at_ms: 0,
        load,
        bandwidth: 1000.0,
        meta_rps: 0.0,
        block_rps: 0.0,
        block_bps: 0.0,
        inflight: 0,
        used: 10,
        capacity: 100,
        zone: None,
        role: RoleTag::Follower,
        term: 1,
        served_blocks: 0,
        hot_blocks: vec![],
        hot_files: vec![],
        extras: vec![],
        delegations: vec![],
        outcomes: vec![],
    }
}

#[test]
fn reports_from_a_flood_of_fresh_keys_stay_bounded() {
    let mut v = SwarmView::new(Duration::from_secs(1), 120_000);
    let first = PeerId::random();
    assert!(v.on_report(first, report(1, 1.0)));
    let mut last = first;
    for _ in 0..MAX_REPORTS + 100 {
        last = PeerId::random();
        assert!(v.on_report(last, report(1, 1.0)));
    }
    assert!(v.reports.len() <= MAX_REPORTS, "{}", v.reports.len());
    assert!(v.report(&last).is_some(), "the newest stays");
    assert!(v.report(&first).is_none(), "the oldest went");
}

#[test]
fn the_decision_history_is_kept_for_fifteen_holds() {
    assert_eq!(SwarmView::history_retention(120_000), 1_800_000);
    assert_eq!(
        SwarmView::history_retention(5_000),
        900_000,
        "at least fifteen minutes"
    );
    assert_eq!(SwarmView::history_retention(u64::MAX), u64::MAX);
    let v = SwarmView::new(Duration::from_secs(1), 120_000);
    assert_eq!(
        v.sizes(),
        ViewSizes::default(),
        "an empty view holds nothing"
    );
}

#[test]
fn blocks_named_by_a_stream_of_reports_stay_bounded() {
    let mut v = SwarmView::new(Duration::from_secs(1), 120_000);
    let peer = PeerId::random();
    let mut n = 0u32;
    // Each report names 16 blocks never seen before (the cut applies to the list).
    for seq in 1..=(KEEP_BLOCKS as u64 / 16 + 64) {
        let mut r = report(seq, 1.0);
        r.hot_blocks = (0..16)
            .map(|_| {
                n += 1;
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&n.to_be_bytes());
                BlockHeat {
                    id: BlockId(id),
                    file: "f".into(),
                    size: 1,
                    heat: 1.0,
                    extra: false,
                }
            })
            .collect();
        assert!(v.on_report(peer, r));
        assert!(v.blocks.len() <= KEEP_BLOCKS, "{}", v.blocks.len());
    }
    assert!(v.blocks.len() >= trimmed(KEEP_BLOCKS), "{}", v.blocks.len());
    let mut newest = [0u8; 32];
    newest[..4].copy_from_slice(&n.to_be_bytes());
    assert!(v.blocks.contains_key(&BlockId(newest)), "the newest stays");
}

#[test]
fn a_block_or_a_peer_no_report_names_any_more_is_forgotten() {
    // Rounds of 1 ms: a block unnamed for 100 rounds (100 ms) is forgotten at the next sweep.
    let mut v = SwarmView::new(Duration::from_millis(1), 120_000);
    let peer = PeerId::random();
    let heat = |b: u8| BlockHeat {
        id: BlockId([b; 32]),
        file: "f".into(),
        size: 1,
        heat: 1.0,
        extra: false,
    };
    let mut seq = 0;
    let mut send = |v: &mut SwarmView, b: u8| {
        seq += 1;
        let mut r = report(seq, 1.0);
        r.hot_blocks = vec![heat(b)];
        assert!(v.on_report(peer, r));
    };
    send(&mut v, 1);
    // A peer that reports once and falls silent (it left the swarm for good).
    let gone = PeerId::random();
    assert!(v.on_report(gone, report(1, 1.0)));
    assert_eq!(v.sizes().reports, 2);
    assert!(v.block(&BlockId([1; 32])).is_some());
    std::thread::sleep(Duration::from_millis(150));
    for _ in 0..SWEEP_EVERY {
        send(&mut v, 2);
    }
    assert!(v.block(&BlockId([1; 32])).is_none(), "cold for 100 rounds");
    assert!(v.block(&BlockId([2; 32])).is_some(), "still named");
    assert_eq!(
        v.sizes().reports,
        1,
        "the silent peer's report is gone, not only stale"
    );
    assert!(v.report(&peer).is_some(), "still reporting");
}

#[test]
fn a_report_is_clamped_and_lists_only_granted_extras() {
    let mut v = SwarmView::new(Duration::from_secs(10), 120_000);
    let liar = PeerId::random();
    let mut r = report(1, f64::INFINITY);
    r.bandwidth = f64::NAN;
    r.capacity = u64::MAX;
    r.used = u64::MAX;
    r.extras = vec![ExtraHeld {
        id: BlockId([7; 32]),
        file: "f".into(),
        size: u64::MAX,
        base: vec![],
    }];
    v.on_report(liar, r);
    let kept = v.report(&liar).expect("kept");
    assert_eq!(kept.load, 0.0, "infinite load reads as zero");
    assert_eq!(kept.bandwidth, 1.0);
    assert!(kept.capacity <= MAX_CAPACITY && kept.used <= kept.capacity);
    assert!(kept.extras.is_empty(), "no decision gave it an extra copy");
    assert!(v.extras_of(&BlockId([7; 32])).is_empty());
}

#[test]
fn the_planner_input_joins_reports_extras_and_pending_decisions() {
    let (a, b, c, d) = (
        PeerId::random(),
        PeerId::random(),
        PeerId::random(),
        PeerId::random(),
    );
    let block = BlockId([1; 32]);
    let hot = |extra| BlockHeat {
        id: block,
        file: "f".into(),
        size: 1 << 20,
        heat: 300.0,
        extra,
    };
    let mut v = SwarmView::new(Duration::from_secs(10), 120_000);
    let mut ra = report(1, 500.0);
    ra.hot_blocks = vec![hot(false)];
    ra.hot_files = vec![FileHeat {
        name: "f".into(),
        heat: 40.0,
        root: true,
    }];
    let mut rb = report(1, 400.0);
    rb.hot_blocks = vec![hot(false)];
    let mut rc = report(1, 100.0);
    rc.hot_blocks = vec![hot(true)];
    rc.extras = vec![ExtraHeld {
        id: block,
        file: "f".into(),
        size: 1 << 20,
        base: vec![a, b],
    }];
    assert!(v.on_report(a, ra.clone()));
    assert!(!v.on_report(a, ra), "a replayed report is ignored");
    v.on_report(b, rb);
    // c's extra copy counts only because a decision granted it.
    let grant = |to: PeerId, seq: u64| DecisionBatch {
        term: 1,
        seq,
        now_ms: 1,
        items: vec![Item {
            decision: Decision::Replicate {
                block,
                file: FileKey::for_name("f"),
                from: a,
                to,
                heat: 0.0,
            },
            name: "f".into(),
        }],
    };
    v.on_batch(a, &grant(c, 0));
    v.on_report(c, rc);
    // A Replicate to d is published but not done yet: it counts as pending.
    let key = FileKey::for_name("f");
    v.on_batch(
        a,
        &DecisionBatch {
            term: 1,
            seq: 1,
            now_ms: 5,
            items: vec![Item {
                decision: Decision::Replicate {
                    block,
                    file: key,
                    from: a,
                    to: d,
                    heat: 0.0,
                },
                name: "f".into(),
            }],
        },
    );
    let (view, names) = v.cluster_view(5, 3, |_| true, |_| None);
    assert_eq!(view.nodes.len(), 3);
    let bv = &view.blocks[0];
    assert_eq!(bv.heat, 900.0);
    let mut base = vec![a, b];
    base.sort();
    assert_eq!(bv.holders, base);
    assert_eq!(
        bv.extra.len(),
        2,
        "c holds one, d is pending: {:?}",
        bv.extra
    );
    assert_eq!(view.files.len(), 1);
    assert_eq!(view.files[0].root, a);
    assert_eq!(names.get(&key.0).map(String::as_str), Some("f"));
    assert_eq!(v.extras_of(&block), vec![c]);
    // The least loaded holder comes first.
    assert_eq!(v.rank(vec![a, b, c], |_| 0), vec![c, b, a]);
}

#[test]
fn moves_a_target_skipped_are_found_by_source_and_reason() {
    let (me, target, other) = (PeerId::random(), PeerId::random(), PeerId::random());
    let mut v = SwarmView::new(Duration::from_secs(10), 120_000);
    let mv = |block: u8, from: PeerId| Item {
        decision: Decision::Move {
            block: BlockId([block; 32]),
            file: FileKey::for_name("f"),
            from,
            to: target,
            bytes: 1,
        },
        name: "f".into(),
    };
    v.on_batch(
        other,
        &DecisionBatch {
            term: 1,
            seq: 0,
            now_ms: 1,
            items: vec![mv(1, me), mv(2, me), mv(3, other)],
        },
    );
    let skipped = |idx: u32, why: &str| Outcome {
        id: DecisionId {
            term: 1,
            seq: 0,
            idx,
        },
        state: DecisionState::Skipped(why.into()),
    };
    let mut r = report(1, 1.0);
    r.outcomes = vec![
        skipped(0, "unlisted source"),
        skipped(1, "something else"),
        skipped(2, "unlisted source"),
    ];
    assert!(v.on_report(target, r));
    assert_eq!(
        v.moves_skipped(&me, "unlisted source"),
        vec![BlockId([1; 32])],
        "ours, skipped for that reason"
    );
    assert!(v.moves_skipped(&other, "something else").is_empty());
}

#[test]
fn a_target_that_already_holds_a_block_counts_as_its_holder() {
    let (src, target, manager) = (PeerId::random(), PeerId::random(), PeerId::random());
    let block = BlockId([4; 32]);
    let mut v = SwarmView::new(Duration::from_secs(10), 120_000);
    // The source offers the block as cold: the view knows it as the only holder.
    let mut rs = report(1, 10.0);
    rs.hot_blocks = vec![BlockHeat {
        id: block,
        file: "f".into(),
        size: 1 << 20,
        heat: 0.0,
        extra: false,
    }];
    assert!(v.on_report(src, rs));
    let holders = |v: &SwarmView| {
        let (view, _) = v.cluster_view(5, 3, |_| true, |_| None);
        view.blocks
            .iter()
            .find(|b| b.id == block.0)
            .map(|b| b.holders.clone())
            .unwrap_or_default()
    };
    assert_eq!(holders(&v), vec![src]);
    v.on_batch(
        manager,
        &DecisionBatch {
            term: 1,
            seq: 0,
            now_ms: 1,
            items: vec![Item {
                decision: Decision::Move {
                    block,
                    file: FileKey::for_name("f"),
                    from: src,
                    to: target,
                    bytes: 1 << 20,
                },
                name: "f".into(),
            }],
        },
    );
    let mut rt = report(1, 10.0);
    rt.outcomes = vec![Outcome {
        id: DecisionId {
            term: 1,
            seq: 0,
            idx: 0,
        },
        state: DecisionState::Skipped(TARGET_ALREADY_HOLDS.into()),
    }];
    assert!(v.on_report(target, rt));
    let mut want = vec![src, target];
    want.sort();
    assert_eq!(holders(&v), want, "the planner must not choose it again");
}

#[test]
fn a_delegated_files_heat_is_what_its_root_and_its_delegate_serve() {
    // The delegate serves most of the record's reads: the root alone would see the heat
    // gone and end the delegation, then see it back and delegate again.
    let mut v = SwarmView::new(Duration::from_secs(1), 60_000);
    let (root, delegate, other) = (PeerId::random(), PeerId::random(), PeerId::random());
    let hot = |heat: f64, root: bool| FileHeat {
        name: "f".into(),
        heat,
        root,
    };
    let mut r = report(1, 1.0);
    r.hot_files = vec![hot(10.0, true)];
    assert!(v.on_report(root, r));
    let mut d = report(1, 1.0);
    d.hot_files = vec![hot(90.0, false)];
    d.delegations = vec![(FileKey::for_name("f"), 10_000)];
    assert!(v.on_report(delegate, d));
    // Another replica of the set sees the same reads as the root: not added.
    let mut o = report(1, 1.0);
    o.hot_files = vec![hot(10.0, false)];
    assert!(v.on_report(other, o));
    let (view, _) = v.cluster_view(5, 3, |_| true, |_| None);
    assert_eq!(view.files.len(), 1);
    assert_eq!(view.files[0].delegate, Some((delegate, 10_000)));
    assert_eq!(view.files[0].heat, 100.0);
    // Once the lease is over, the root's figure is the heat again.
    let (view, _) = v.cluster_view(10_000, 3, |_| true, |_| None);
    assert_eq!(view.files[0].heat, 10.0);
}

#[test]
fn a_moves_outcome_tells_the_view_who_holds_the_block() {
    let (src, target, other, manager) = (
        PeerId::random(),
        PeerId::random(),
        PeerId::random(),
        PeerId::random(),
    );
    let block = BlockId([5; 32]);
    let mut v = SwarmView::new(Duration::from_secs(10), 120_000);
    let named = |seq: u64| {
        let mut r = report(seq, 10.0);
        r.hot_blocks = vec![BlockHeat {
            id: block,
            file: "f".into(),
            size: 1 << 20,
            heat: 1.0,
            extra: false,
        }];
        r
    };
    assert!(v.on_report(src, named(1)));
    assert!(v.on_report(other, named(1)));
    // The view's base holders of the block (a block with a move in flight is left out of
    // the planner's input for a few rounds, so they are read here directly).
    let holders = |v: &SwarmView| {
        v.blocks
            .get(&block)
            .map(|b| b.base.clone())
            .unwrap_or_default()
    };
    let sorted = |mut h: Vec<PeerId>| {
        h.sort();
        h
    };
    assert_eq!(holders(&v), sorted(vec![src, other]));
    let publish = |v: &mut SwarmView, seq: u64, from: PeerId, to: PeerId| {
        v.on_batch(
            manager,
            &DecisionBatch {
                term: 1,
                seq,
                now_ms: 1,
                items: vec![Item {
                    decision: Decision::Move {
                        block,
                        file: FileKey::for_name("f"),
                        from,
                        to,
                        bytes: 1 << 20,
                    },
                    name: "f".into(),
                }],
            },
        );
    };
    let outcome = |seq: u64, state: DecisionState| Outcome {
        id: DecisionId {
            term: 1,
            seq,
            idx: 0,
        },
        state,
    };
    // A move done: the copy left its source for its target.
    publish(&mut v, 0, src, target);
    let mut rt = report(1, 10.0);
    rt.outcomes = vec![outcome(0, DecisionState::Applied)];
    assert!(v.on_report(target, rt));
    assert_eq!(holders(&v), sorted(vec![other, target]));
    // A move its target refused because no record lists the source there: the source is
    // no holder. (Before, every report ever naming a block kept its author a holder, and
    // the same refused move was planned again every few rounds.)
    publish(&mut v, 1, other, src);
    let mut rs = report(2, 10.0);
    rs.outcomes = vec![outcome(1, DecisionState::Skipped(SOURCE_UNLISTED.into()))];
    assert!(v.on_report(src, rs));
    assert_eq!(holders(&v), vec![target]);
}
