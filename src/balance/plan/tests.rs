//! Unit tests of the planner as a whole: each builds a small view by hand,
//! runs [`plan`] and checks one rule (bands and hysteresis, the hold time,
//! the R floor, the decision cap, determinism, who may be a target).

use super::predict::water_level;
use super::*;
use std::collections::BTreeMap;

const CAP: f64 = 100.0;
const GB: u64 = 1 << 30;

fn bid(i: u32) -> BlockId {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&i.to_be_bytes());
    id
}

fn fkey(i: u32) -> FileKey {
    let mut id = [0xffu8; 32];
    id[..4].copy_from_slice(&i.to_be_bytes());
    id
}

fn node(id: u32, util: f64) -> NodeView<u32> {
    NodeView {
        id,
        alive: true,
        serve_capacity: CAP,
        load: util * CAP,
        storage_used: 10 * GB,
        storage_capacity: 100 * GB,
    }
}

fn block(i: u32, holders: &[u32], heat: f64) -> BlockView<u32> {
    BlockView {
        id: bid(i),
        file: fkey(i),
        size: 1 << 20,
        holders: holders.to_vec(),
        extra: vec![],
        heat,
    }
}

/// `n` nodes at utilisation 0.5, except node 0..3 which hold one hot block.
fn hot_cluster(n: u32, hot_heat: f64) -> ClusterView<u32> {
    let mut nodes: Vec<_> = (0..n).map(|i| node(i, 0.5)).collect();
    for nd in nodes.iter_mut().take(3) {
        nd.load = (hot_heat / 3.0).min(2.0 * CAP);
    }
    ClusterView {
        now: 1_000_000,
        replication: 3,
        nodes,
        files: vec![],
        blocks: vec![block(1, &[0, 1, 2], hot_heat)],
    }
}

fn replicas_to(ds: &[Decision<u32>]) -> Vec<u32> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::Replicate { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn hot_block_gets_replicas_on_light_nodes() {
    let view = hot_cluster(40, 600.0);
    let ds = plan(&view, &Policy::default(), &History::new());
    let to = replicas_to(&ds);
    assert!(!to.is_empty(), "{ds:?}");
    assert!(to.iter().all(|t| *t >= 3), "targets must be new holders");
}

#[test]
fn hysteresis_inside_band_triggers_nothing() {
    // Utilisation oscillating inside the band: every node between the
    // mean and the upper band, blocks warm but below the upper band.
    let policy = Policy::default();
    let mut history = History::new();
    for round in 0..20u64 {
        let wobble = if round % 2 == 0 { 1.08 } else { 0.95 };
        let mut nodes: Vec<_> = (0..30).map(|i| node(i, 0.6)).collect();
        for nd in nodes.iter_mut().take(3) {
            nd.load = 0.6 * wobble * CAP; // up to 1.08 x mean < 1.2 x mean
        }
        let view = ClusterView {
            now: round * 10_000,
            replication: 3,
            nodes,
            files: vec![],
            // per-capacity heat 0.6·1.08 ≈ 0.65, below hi ≈ 0.72
            blocks: vec![block(1, &[0, 1, 2], 3.0 * 0.6 * wobble * CAP)],
        };
        let ds = plan(&view, &policy, &history);
        assert!(ds.is_empty(), "round {round}: {ds:?}");
        history.record(&ds, view.now);
    }
}

#[test]
fn no_drop_within_hold_time_of_replicate() {
    let policy = Policy::default();
    let mut view = hot_cluster(40, 600.0);
    let mut history = History::new();
    let ds = plan(&view, &policy, &history);
    history.record(&ds, view.now);
    let added = replicas_to(&ds);
    assert!(!added.is_empty());
    // The heat vanishes right away: extras are droppable, but not within the hold time.
    view.blocks[0].extra = added.clone();
    view.blocks[0].heat = 1.0;
    for n in view.nodes.iter_mut() {
        // Drops need the remaining holders below the mean.
        n.load = if added.contains(&n.id) || n.id < 3 {
            0.3
        } else {
            0.6
        } * CAP;
    }
    view.now += policy.hold_ms - 1;
    let ds = plan(&view, &policy, &history);
    assert!(
        !ds.iter().any(|d| matches!(d, Decision::Drop { .. })),
        "{ds:?}"
    );
    // After the hold time they go, but never below R holders.
    view.now += 1;
    let ds = plan(&view, &policy, &history);
    let drops = ds
        .iter()
        .filter(|d| matches!(d, Decision::Drop { .. }))
        .count();
    assert_eq!(drops, added.len(), "{ds:?}");
}

#[test]
fn a_cold_blocks_extras_go_even_when_a_holder_is_busy_with_other_work() {
    // Nobody reads block 1 any more; its base holder 0 is above the mean with other work
    // (background traffic on real nodes). The extras must still go: dropping them moves
    // no reads onto anyone. (On real nodes they stayed for good.)
    let mut nodes: Vec<_> = (0..10).map(|i| node(i, 0.05)).collect();
    nodes[0].load = 0.11 * CAP;
    let mut b = block(1, &[0, 1, 2], 0.0);
    b.extra = vec![5, 6, 7];
    let view = ClusterView {
        now: 10_000_000,
        replication: 3,
        nodes,
        files: vec![],
        blocks: vec![b],
    };
    let ds = plan(&view, &Policy::default(), &History::new());
    let drops = ds
        .iter()
        .filter(|d| matches!(d, Decision::Drop { .. }))
        .count();
    assert_eq!(drops, 3, "{ds:?}");
}

#[test]
fn never_drops_below_r_live_holders() {
    // Block with 2 live base holders (one dead) and 2 cold extras: at most
    // one extra may go.
    let mut nodes: Vec<_> = (0..10)
        .map(|i| node(i, if i < 7 { 0.3 } else { 0.7 }))
        .collect();
    nodes[2].alive = false;
    let mut b = block(1, &[0, 1, 2], 0.5);
    b.extra = vec![5, 6];
    let view = ClusterView {
        now: 10_000_000,
        replication: 3,
        nodes,
        files: vec![],
        blocks: vec![b],
    };
    let ds = plan(&view, &Policy::default(), &History::new());
    let drops: Vec<_> = ds
        .iter()
        .filter(|d| matches!(d, Decision::Drop { .. }))
        .collect();
    assert_eq!(drops.len(), 1, "{ds:?}");
}

#[test]
fn decisions_per_round_are_capped() {
    let mut view = hot_cluster(400, 600.0);
    for i in 2..50u32 {
        let h = [i * 3 % 400, (i * 3 + 1) % 400, (i * 3 + 2) % 400];
        view.blocks.push(block(i, &h, 600.0));
    }
    let policy = Policy {
        max_decisions: 7,
        ..Policy::default()
    };
    let ds = plan(&view, &policy, &History::new());
    assert_eq!(ds.len(), 7);
}

#[test]
fn no_target_pushed_over_its_band() {
    // Many hot blocks competing for a few light nodes: every target's
    // committed load stays within the upper band.
    let mut nodes: Vec<_> = (0..60).map(|i| node(i, 0.7)).collect();
    for nd in nodes.iter_mut().skip(50) {
        nd.load = 0.1 * CAP; // the only light nodes
    }
    let blocks: Vec<_> = (0..10u32)
        .map(|i| block(i, &[i * 3, i * 3 + 1, i * 3 + 2], 400.0))
        .collect();
    let view = ClusterView {
        now: 0,
        replication: 3,
        nodes,
        files: vec![],
        blocks,
    };
    let policy = Policy::default();
    let ds = plan(&view, &policy, &History::new());
    let mean = view.nodes.iter().map(|n| n.load).sum::<f64>() / (60.0 * CAP);
    let hi = (mean * policy.hot_rel).clamp(policy.util_floor, policy.util_ceiling);
    // Each block spreads over its holders; a target holding k new blocks
    // carries at most its budget for each, so its total stays under hi.
    let mut per_target: BTreeMap<u32, usize> = BTreeMap::new();
    for t in replicas_to(&ds) {
        *per_target.entry(t).or_default() += 1;
    }
    assert!(!per_target.is_empty());
    for (&t, &k) in &per_target {
        assert!(t >= 50, "only light nodes are targets, got {t}");
        // Worst case each new block brings its whole per-holder level.
        let load: f64 = view.nodes[t as usize].load;
        assert!(load <= hi * CAP, "{t}: {load} > {}", hi * CAP);
        assert!(k <= 10);
    }
}

#[test]
fn same_input_same_output() {
    let mut view = hot_cluster(200, 900.0);
    for i in 2..40u32 {
        view.blocks.push(block(
            i,
            &[i % 200, (i * 7) % 200, (i * 13 + 1) % 200],
            150.0,
        ));
    }
    view.files.push(FileView {
        key: fkey(9),
        root: 0,
        delegate: None,
        heat: 30.0,
    });
    let policy = Policy::default();
    let a = plan(&view, &policy, &History::new());
    let b = plan(&view, &policy, &History::new());
    assert_eq!(a, b);
    // Input order does not matter for nodes either.
    let mut shuffled = view.clone();
    shuffled.nodes.reverse();
    assert_eq!(plan(&shuffled, &policy, &History::new()), a);
}

#[test]
fn dead_nodes_are_never_targets_nor_sources() {
    let mut view = hot_cluster(40, 600.0);
    // The lightest nodes are dead: they must not be picked.
    for i in 20..40 {
        view.nodes[i].alive = false;
        view.nodes[i].load = 0.0;
    }
    view.nodes[0].alive = false; // a dead holder cannot be the copy source
    let ds = plan(&view, &Policy::default(), &History::new());
    assert!(!ds.is_empty());
    for d in &ds {
        match d {
            Decision::Replicate { from, to, .. } => {
                assert!(*to < 20 && *to >= 3, "{d:?}");
                assert_ne!(*from, 0, "{d:?}");
            }
            Decision::Delegate { to, .. } | Decision::Move { to, .. } => {
                assert!(*to < 20, "{d:?}")
            }
            _ => {}
        }
    }
}

#[test]
fn storage_band_moves_off_full_nodes() {
    let mut nodes: Vec<_> = (0..10).map(|i| node(i, 0.5)).collect();
    nodes[0].storage_used = 60 * GB; // mean ≈ 15 GB: far above the band
    let blocks: Vec<_> = (0..50u32)
        .map(|i| BlockView {
            size: GB,
            ..block(i, &[0, 1 + i % 3, 4 + i % 3], 0.01)
        })
        .collect();
    let view = ClusterView {
        now: 0,
        replication: 3,
        nodes,
        files: vec![],
        blocks,
    };
    let policy = Policy {
        max_move_bytes: 20 * GB,
        ..Policy::default()
    };
    let ds = plan(&view, &policy, &History::new());
    let moved: u64 = ds
        .iter()
        .map(|d| match d {
            Decision::Move { from, bytes, .. } => {
                assert_eq!(*from, 0);
                *bytes
            }
            _ => 0,
        })
        .sum();
    assert!(moved > 0 && moved <= 20 * GB, "{ds:?}");
}

#[test]
fn hot_record_is_delegated_and_ended_when_cold() {
    let policy = Policy::default();
    let mut nodes: Vec<_> = (0..20).map(|i| node(i, 0.5)).collect();
    nodes[0].load = 1.5 * CAP;
    let mut view = ClusterView {
        now: 0,
        replication: 3,
        nodes,
        files: vec![FileView {
            key: fkey(1),
            root: 0,
            delegate: None,
            heat: 40.0,
        }],
        blocks: vec![],
    };
    let mut history = History::new();
    let ds = plan(&view, &policy, &history);
    let Some(Decision::Delegate { to, expires_at, .. }) = ds.first().cloned() else {
        panic!("expected a delegation: {ds:?}");
    };
    assert_ne!(to, 0);
    history.record(&ds, view.now);
    // Heat gone, root cool: ended, but only after the hold time.
    view.files[0].delegate = Some((to, expires_at));
    view.files[0].heat = 0.1;
    view.nodes[0].load = 0.3 * CAP;
    view.now = policy.hold_ms - 1;
    assert!(plan(&view, &policy, &history).is_empty());
    view.now = policy.hold_ms;
    let ds = plan(&view, &policy, &history);
    assert_eq!(
        ds,
        vec![Decision::EndDelegation {
            file: fkey(1),
            at: to
        }]
    );
}

#[test]
fn water_level_fills_least_utilised_first() {
    // (load, capacity): utilisations 0.5, 0, 2.0; 2.5 more levels the
    // first two at (2.5 + 0.5) / 4 = 0.75 and leaves the third alone.
    let mut lv = vec![(0.5, 1.0), (0.0, 3.0), (2.0, 1.0)];
    assert!((water_level(&mut lv, 2.5) - 0.75).abs() < 1e-12);
}

#[test]
fn move_target_accounts_for_how_readers_route() {
    // Node 0 is far above the storage band and offers one warm block
    // whose other holders are busy: readers would send the new holder
    // enough of it to level up with them. Node 3 is idle but small,
    // node 4 is idle and large enough to absorb it inside its band.
    let mut nodes: Vec<_> = (0..12).map(|i| node(i, 0.5)).collect();
    nodes[0].storage_used = 60 * GB;
    nodes[1].load = 0.95 * CAP;
    nodes[2].load = 0.95 * CAP;
    nodes[3].load = 0.0;
    nodes[3].storage_used = 0;
    nodes[4].load = 0.0;
    nodes[4].serve_capacity = 10.0 * CAP;
    nodes[4].storage_used = GB;
    nodes[4].storage_capacity = 1000 * GB;
    let view = ClusterView {
        now: 0,
        replication: 3,
        nodes,
        files: vec![],
        blocks: vec![BlockView {
            size: GB,
            ..block(1, &[0, 1, 2], 1.2 * CAP)
        }],
    };
    let policy = Policy {
        replicate: false,
        delegate: false,
        max_move_bytes: 20 * GB,
        ..Policy::default()
    };
    let ds = plan(&view, &policy, &History::new());
    let to: Vec<u32> = ds
        .iter()
        .filter_map(|d| match d {
            Decision::Move { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(to, vec![4], "{ds:?}");
}

#[test]
fn node_overloaded_by_several_blocks_hands_one_off() {
    // Node 0 serves its capacity share of three warm blocks that each
    // already have many holders; an extra replica would relieve it of a
    // sliver, handing its copy to a light node relieves the whole share.
    let mut nodes: Vec<_> = (0..40).map(|i| node(i, 0.15)).collect();
    nodes[0].load = 1.5 * CAP;
    nodes[28].load = 0.9 * CAP;
    nodes[29].load = 0.9 * CAP;
    for nd in nodes.iter_mut().skip(30) {
        nd.load = 0.0;
    }
    let blocks: Vec<_> = (0..3u32)
        .map(|k| {
            let holders: Vec<u32> = std::iter::once(0).chain(1 + k * 9..10 + k * 9).collect();
            block(k, &holders, 10.0 * 0.1 * CAP)
        })
        .collect();
    let view = ClusterView {
        now: 0,
        replication: 3,
        nodes,
        files: vec![],
        blocks,
    };
    let ds = plan(&view, &Policy::default(), &History::new());
    assert!(
        ds.iter()
            .any(|d| matches!(d, Decision::Move { from: 0, to, .. } if *to >= 30)),
        "{ds:?}"
    );
    assert!(replicas_to(&ds).is_empty(), "{ds:?}");
}

#[test]
fn history_rebuilds_from_published_decisions() {
    let view = hot_cluster(40, 600.0);
    let ds = plan(&view, &Policy::default(), &History::new());
    let mut a = History::new();
    a.record(&ds, view.now);
    let mut b: History<u32> = History::new();
    b.record(&ds.clone(), view.now);
    assert_eq!(a, b);
    assert!(!a.is_empty());
}

#[test]
fn steady_heat_keeps_its_extras_after_the_hold() {
    // An extra on node 5 was decided for a heat of 100. Its holders have cooled since
    // (the band rule alone would drop it once the hold is over), but the block is read
    // about as much as then: relief stays until the heat falls below a quarter.
    let policy = Policy::default();
    let mut history = History::new();
    history.record(
        &[Decision::Replicate {
            block: bid(1),
            file: fkey(1),
            from: 0,
            to: 5,
            heat: 100.0,
        }],
        0,
    );
    let nodes: Vec<_> = (0..40)
        .map(|i| node(i, if i < 3 || i == 5 { 0.3 } else { 0.6 }))
        .collect();
    let mut view = ClusterView {
        now: policy.hold_ms + 1,
        replication: 3,
        nodes,
        files: vec![],
        blocks: vec![BlockView {
            extra: vec![5],
            ..block(1, &[0, 1, 2], 30.0)
        }],
    };
    let drops = |ds: &[Decision<u32>]| {
        ds.iter()
            .filter(|d| matches!(d, Decision::Drop { at: 5, .. }))
            .count()
    };
    let ds = plan(&view, &policy, &history);
    assert_eq!(drops(&ds), 0, "heat 30 of 100 granted: {ds:?}");
    view.blocks[0].heat = 20.0;
    let ds = plan(&view, &policy, &history);
    assert_eq!(drops(&ds), 1, "heat 20 of 100 granted: {ds:?}");
    // A manager that gave no heat (or a NaN one) leaves the band rule alone in charge.
    let mut unknown = History::new();
    unknown.record(
        &[Decision::Replicate {
            block: bid(1),
            file: fkey(1),
            from: 0,
            to: 5,
            heat: f64::NAN,
        }],
        0,
    );
    view.blocks[0].heat = 30.0;
    let ds = plan(&view, &policy, &unknown);
    assert_eq!(drops(&ds), 1, "no granted heat: {ds:?}");
}

#[test]
fn the_storage_band_does_not_move_on_what_a_decision_put_there() {
    // Node 0 is far above the storage band; blocks 0..10 were moved onto it by decisions
    // longer than a hold ago. It sheds others, never those, and nothing goes back to
    // node 9, where a decision took blocks 0..10 from.
    let mut nodes: Vec<_> = (0..10).map(|i| node(i, 0.5)).collect();
    nodes[0].storage_used = 60 * GB;
    let blocks: Vec<_> = (0..50u32)
        .map(|i| BlockView {
            size: GB,
            heat: if i < 10 { 0.0 } else { 0.01 }, // the coldest: moved first if allowed
            ..block(i, &[0, 1 + i % 3, 4 + i % 3], 0.01)
        })
        .collect();
    let policy = Policy {
        max_move_bytes: 20 * GB,
        ..Policy::default()
    };
    let mut history = History::new();
    let arrivals: Vec<Decision<u32>> = (0..10u32)
        .map(|i| Decision::Move {
            block: bid(i),
            file: fkey(i),
            from: 9,
            to: 0,
            bytes: GB,
        })
        .collect();
    history.record(&arrivals, 0);
    let view = ClusterView {
        now: policy.hold_ms + 1,
        replication: 3,
        nodes,
        files: vec![],
        blocks,
    };
    let ds = plan(&view, &policy, &history);
    let moved: Vec<(BlockId, u32)> = ds
        .iter()
        .filter_map(|d| match d {
            Decision::Move { block, to, .. } => Some((*block, *to)),
            _ => None,
        })
        .collect();
    assert!(!moved.is_empty(), "{ds:?}");
    assert!(
        moved.iter().all(|(b, _)| !(0..10).any(|i| bid(i) == *b)),
        "{moved:?}"
    );
    // The same blocks with no remembered arrival are the first to go.
    let ds = plan(&view, &policy, &History::new());
    assert!(
        ds.iter()
            .any(|d| matches!(d, Decision::Move { block, .. } if *block == bid(0))),
        "{ds:?}"
    );
}
