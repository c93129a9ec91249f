//! Load balancing on real nodes: manager election (start, failover, injected messages,
//! partitions) and a hot file whose reads spread once the manager's decisions are applied.
//!
//! Timers are short (T = 300–400 ms) through the Tune closure. Assertions are about outcomes
//! (one manager, its term, who served what), never about wall-clock speed; elapsed times are
//! printed for the record.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gossip::GossipPeer;
use common::{eventually, random_bytes, TestSwarm, Tune};
use libp2p::PeerId;
use swarmstore::balance::plan::Policy;
use swarmstore::ids::{BlockId, FileKey};
use swarmstore::protocol::gossip::{self as wire, Decision, DecisionBatch, Item, ManagerMsg, Vote};
use swarmstore::{Node, NodeConfig};

const T: Duration = Duration::from_millis(300);

fn fast(t: Duration) -> Tune {
    Arc::new(move |c: NodeConfig| c.report_interval(t).liveness(Duration::from_secs(2)))
}

/// The manager every given node follows, if they all agree and exactly one of them is it.
fn settled<'a>(nodes: impl Iterator<Item = &'a Node>) -> Option<(PeerId, u64)> {
    let nodes: Vec<&Node> = nodes.collect();
    let first = nodes.first()?.manager()?;
    let agree = nodes.iter().all(|n| n.manager() == Some(first));
    let managers = nodes.iter().filter(|n| n.is_manager()).count();
    (agree && managers == 1).then_some(first)
}

async fn wait_settled(
    swarm: &TestSwarm,
    which: &[usize],
    timeout: Duration,
) -> Option<(PeerId, u64)> {
    let mut found = None;
    eventually(timeout, || {
        found = settled(which.iter().map(|i| swarm.node(*i)));
        let ok = found.is_some();
        async move { ok }
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seven_nodes_elect_one_manager_and_replace_it_when_it_dies() {
    let started = Instant::now();
    let mut swarm = TestSwarm::start_with(7, 3, fast(T)).await;
    let all: Vec<usize> = (0..7).collect();
    let (m, term) = wait_settled(&swarm, &all, Duration::from_secs(30))
        .await
        .expect("one manager that every node follows");
    println!(
        "first manager {m} at term {term}, settled {:?} after start",
        started.elapsed()
    );
    assert!(term <= 2, "one election, not a cascade (term {term})");
    // It stays: several rounds later, same manager, same term, still exactly one.
    tokio::time::sleep(T * 6).await;
    assert_eq!(settled(swarm.running()), Some((m, term)));

    let dead = swarm.index_of(&m);
    let killed = Instant::now();
    swarm.stop_node(dead).await;
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != dead).collect();
    let (m2, term2) = wait_settled(&swarm, &rest, Duration::from_secs(30))
        .await
        .expect("a new manager every survivor follows");
    println!(
        "new manager {m2} at term {term2}, {:?} after the kill",
        killed.elapsed()
    );
    assert_ne!(m2, m);
    assert_eq!(term2, term + 1, "exactly one new election");
    tokio::time::sleep(T * 6).await;
    assert_eq!(settled(swarm.running()), Some((m2, term2)), "stable");
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manager_messages_from_others_are_ignored_and_counted() {
    let swarm = TestSwarm::start_with(5, 3, fast(T)).await;
    let all: Vec<usize> = (0..5).collect();
    let (m, term) = wait_settled(&swarm, &all, Duration::from_secs(30))
        .await
        .expect("a manager");
    // A file whose block the impostor will try to have copied elsewhere.
    let client = swarm.client(0).await;
    let data = random_bytes(100_000, 7);
    client.put_bytes("target.bin", &data).await.expect("put");
    let info = client.stat("target.bin").await.expect("stat");
    let entry = info.blocks[0].clone();
    let outsider = swarm
        .peer_ids()
        .into_iter()
        .find(|p| !entry.holders.contains(p))
        .expect("a node that does not hold the block");
    let impostor_idx = (0..5)
        .find(|i| swarm.node(*i).peer_id() != m && swarm.node(*i).peer_id() != outsider)
        .expect("an impostor");
    let impostor = swarm.node(impostor_idx);

    let forged = DecisionBatch {
        term,
        seq: 1_000,
        now_ms: swarmstore::record::now_ms(),
        items: vec![Item {
            decision: Decision::Replicate {
                block: entry.id,
                file: info.key,
                from: entry.holders[0],
                to: outsider,
                heat: 0.0,
            },
            name: "target.bin".into(),
        }],
    };
    let send = |kind: &'static str, bytes: Vec<u8>| impostor.publish_raw(kind, bytes);
    send("decisions", wire::encode(&forged).expect("encodes"))
        .await
        .expect("published");
    send("decisions", b"\x9f\xff not cbor".to_vec())
        .await
        .expect("published");
    send(
        "manager",
        wire::encode(&ManagerMsg::Candidacy { term: term + 1 }).expect("encodes"),
    )
    .await
    .expect("published");
    if term > 1 {
        send(
            "manager",
            wire::encode(&ManagerMsg::Heartbeat {
                term: term - 1,
                beat: 1,
                cert: vec![],
            })
            .expect("encodes"),
        )
        .await
        .expect("published");
    }
    tokio::time::sleep(T * 8).await;

    // Nothing changed hands (the manager may have stood again above the stray candidacy,
    // once), and nothing was copied.
    let (m_after, t_after) = settled(swarm.running()).expect("one manager");
    assert_eq!(m_after, m);
    assert!(t_after <= term + 2, "term {term} -> {t_after}");
    let out = swarm.node(swarm.index_of(&outsider));
    assert!(out.extra_replicas().is_empty());
    assert!(
        !out.store().blocks.contains(&entry.id),
        "forged decision applied"
    );
    // ... and every other node counted what it ignored.
    for (i, n) in swarm.running().enumerate() {
        if i == impostor_idx {
            continue;
        }
        let ignored: HashMap<String, u64> = n.balance_status().ignored.into_iter().collect();
        let count = |k: &str| ignored.get(k).copied().unwrap_or(0);
        assert!(
            count("decisions: not from the manager") >= 1,
            "node {i}: {ignored:?}"
        );
        assert!(count("malformed decisions") >= 1, "node {i}: {ignored:?}");
        if n.peer_id() != m {
            // Ignored as a candidacy against a live manager, or, if the manager's own new
            // candidacy got there first, as stale.
            assert!(
                count("election: manager alive") + count("election: stale term") >= 1,
                "node {i}: {ignored:?}"
            );
        }
    }
    swarm.shutdown().await;
}

/// Terms without votes behind them: from a gossip peer that is no storage node, from a
/// storage node with no certificate, with a certificate of votes it forged or borrowed, and
/// at `u64::MAX`. Each is ignored and counted; the manager stays; nobody panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_terms_are_ignored_and_counted_and_the_manager_stays() {
    let swarm = TestSwarm::start_with(5, 3, fast(T)).await;
    let all: Vec<usize> = (0..5).collect();
    let (m, term) = wait_settled(&swarm, &all, Duration::from_secs(30))
        .await
        .expect("a manager");
    let topic = "swarmstore/main/manager";
    let heartbeat = |term: u64, cert: Vec<Vote>| {
        wire::encode(&ManagerMsg::Heartbeat {
            term,
            beat: 1,
            cert,
        })
        .expect("encodes")
    };

    // A stranger that speaks only gossip.
    let mut stranger = GossipPeer::new();
    stranger.join(swarm.node(0).addr(), topic).await;
    stranger.publish(topic, heartbeat(term + 1, vec![])).await;

    // A storage node that claims terms: no votes; u64::MAX; votes signed by itself in the
    // name of others (they do not verify); and real votes of another term.
    let impostor_idx = (0..5)
        .find(|i| swarm.node(*i).peer_id() != m)
        .expect("an impostor");
    let impostor = swarm.node(impostor_idx);
    let me = impostor.peer_id();
    let send = |bytes: Vec<u8>| impostor.publish_raw("manager", bytes);
    send(heartbeat(term + 1, vec![])).await.expect("published");
    send(heartbeat(u64::MAX, vec![])).await.expect("published");
    send(wire::encode(&ManagerMsg::Candidacy { term: u64::MAX }).expect("encodes"))
        .await
        .expect("published");
    let key = libp2p::identity::Keypair::generate_ed25519();
    let forged: Vec<Vote> = swarm
        .peer_ids()
        .into_iter()
        .map(|voter| Vote {
            voter,
            ..Vote::sign(topic, term + 2, me, &key)
        })
        .collect();
    send(heartbeat(term + 2, forged)).await.expect("published");
    tokio::time::sleep(T * 8).await;

    assert_eq!(
        settled(swarm.running()),
        Some((m, term)),
        "the manager stays"
    );
    for (i, n) in swarm.running().enumerate() {
        let ignored: HashMap<String, u64> = n.balance_status().ignored.into_iter().collect();
        let count = |k: &str| ignored.get(k).copied().unwrap_or(0);
        if i == 0 {
            assert!(
                count("election: not a storage peer") >= 1,
                "node 0: {ignored:?}"
            );
        }
        if i == impostor_idx {
            continue;
        }
        assert!(
            count("election: no valid certificate") >= 1,
            "node {i}: {ignored:?}"
        );
        assert!(
            count("election: term too high") >= 2,
            "node {i}: {ignored:?}"
        );
        assert!(count("election: forged vote") >= 1, "node {i}: {ignored:?}");
    }
    swarm.shutdown().await;
}

async fn cut(swarm: &TestSwarm, a: &[usize], b: &[usize], blocked: bool) {
    for &i in a {
        for &j in b {
            let (pi, pj) = (swarm.node(i).peer_id(), swarm.node(j).peer_id());
            swarm.node(i).set_blocked(pj, blocked).await;
            swarm.node(j).set_blocked(pi, blocked).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_groups_each_elect_and_one_manager_survives_the_heal() {
    let mut swarm = TestSwarm::start_with(7, 3, fast(T)).await;
    let all: Vec<usize> = (0..7).collect();
    let (m, term) = wait_settled(&swarm, &all, Duration::from_secs(30))
        .await
        .expect("a manager");
    // The manager dies as the rest splits in two: both halves must elect on their own.
    let dead = swarm.index_of(&m);
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != dead).collect();
    let (a, b) = rest.split_at(3);
    cut(&swarm, a, b, true).await;
    swarm.stop_node(dead).await;
    let (ma, ta) = wait_settled(&swarm, a, Duration::from_secs(30))
        .await
        .expect("group A elects");
    let (mb, tb) = wait_settled(&swarm, b, Duration::from_secs(30))
        .await
        .expect("group B elects");
    println!("partitioned: A {ma} term {ta}, B {mb} term {tb}");
    assert!(a.iter().any(|i| swarm.node(*i).peer_id() == ma));
    assert!(b.iter().any(|i| swarm.node(*i).peer_id() == mb));
    assert!(ta > term && tb > term);

    cut(&swarm, a, b, false).await;
    let (mh, th) = wait_settled(&swarm, &rest, Duration::from_secs(30))
        .await
        .expect("one manager after the heal");
    println!("healed: {mh} term {th}");
    // Neither half's votes are a majority of the healed swarm: the managers stand again and
    // one wins a term above both.
    assert!(
        th > ta.max(tb),
        "a new term after the heal ({th} vs {ta}, {tb})"
    );
    tokio::time::sleep(T * 6).await;
    assert_eq!(
        settled(swarm.running()),
        Some((mh, th)),
        "stable after the heal"
    );
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_file_gets_extra_replicas_and_its_reads_spread() {
    let t = Duration::from_millis(400);
    let tune: Tune = Arc::new(move |c: NodeConfig| {
        c.report_interval(t)
            .liveness(Duration::from_secs(2))
            // ~6 MB/s of reads: the file's two holders run at ~50% while the swarm as a
            // whole sits near 15% (the planner relieves only what the swarm can absorb).
            .bandwidth(6_000_000)
            .balance_policy(Policy {
                // A restored extra goes after one hold unless a decision grants it again, so
                // the restart below must be reported within it: 5 s was missed once on a
                // machine running a soak, a devnet and the rest of the suite beside this.
                hold_ms: 10_000,
                // The swarm holds a few MB in all: let a copy take a node up to twice the
                // mean storage (the band exists to spread big stores, not to block this).
                storage_aim: 1.0,
                ..NodeConfig::local(".").balance.policy
            })
    });
    let swarm = TestSwarm::start_with(7, 2, tune).await;
    let all: Vec<usize> = (0..7).collect();
    wait_settled(&swarm, &all, Duration::from_secs(30))
        .await
        .expect("a manager");
    let data = Arc::new(random_bytes(200_000, 42));
    let writer = swarm.client(0).await;
    for i in 0..14 {
        let cold = random_bytes(200_000, 100 + i);
        writer
            .put_bytes(&format!("cold-{i}.bin"), &cold)
            .await
            .expect("put cold file");
    }
    writer.put_bytes("hot.bin", &data).await.expect("put");
    let info = writer.stat("hot.bin").await.expect("stat");
    let base = info.blocks[0].holders.clone();
    assert_eq!(base.len(), 2);

    // Readers on three access nodes, gets checked byte for byte throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(AtomicU64::new(0));
    // (access node, its own stop, the task): a reader whose access node is restarted below
    // stops first, since a client has one access node.
    let mut readers = Vec::new();
    for i in [1usize, 3, 5] {
        let client = swarm.client(i).await;
        let (stop, gets, data) = (stop.clone(), gets.clone(), data.clone());
        let mine = Arc::new(AtomicBool::new(false));
        let stop_mine = mine.clone();
        readers.push((
            i,
            mine,
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(100));
                while !stop.load(Ordering::Relaxed) && !stop_mine.load(Ordering::Relaxed) {
                    every.tick().await;
                    let got = client.get_bytes("hot.bin").await.expect("get");
                    assert!(got == *data, "a get returned wrong bytes");
                    gets.fetch_add(1, Ordering::Relaxed);
                }
            }),
        ));
    }

    let applied = eventually(Duration::from_secs(60), || {
        let ok = swarm.running().any(|n| {
            n.balance_status()
                .decisions
                .iter()
                .any(|d| (d.kind == "replicate" || d.kind == "delegate") && d.state == "applied")
        });
        async move { ok }
    })
    .await;
    let decisions = swarm.node(0).balance_status().decisions;
    assert!(applied, "no replicate/delegate applied: {decisions:?}");
    // The metric counts what was applied.
    let counted: f64 = swarm
        .running()
        .map(|n| {
            let mut registry = prometheus_client::registry::Registry::default();
            n.metrics().register(&mut registry);
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
            text.lines()
                .filter(|l| l.starts_with("swarmstore_decisions_applied_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum();
    assert!(counted >= 1.0, "decisions_applied counted {counted}");

    // After the decisions: who serves the block now?
    tokio::time::sleep(t * 2).await;
    let before: Vec<u64> = swarm.running().map(|n| n.served().blocks).collect();
    tokio::time::sleep(t * 8).await;
    let after: Vec<u64> = swarm.running().map(|n| n.served().blocks).collect();

    // Balancing state is durable: a node holding an extra replica restarts, with the reads
    // still on, and comes back with it; its peers take its reports at once and count the
    // extra again (granted before the restart). A clean stop saves what the node holds then
    // (a round's save alone missed an extra granted since: CI failed so).
    let mut swarm = swarm;
    tokio::time::sleep(t * 3).await;
    // A node no reader reaches the swarm through, where one holds an extra.
    let holding: Vec<usize> = (0..7)
        .filter(|&i| !swarm.node(i).extra_replicas().is_empty())
        .collect();
    let i = holding
        .iter()
        .copied()
        .find(|i| readers.iter().all(|(a, _, _)| a != i))
        .or(holding.first().copied())
        .expect("a node holds an extra replica");
    if let Some(k) = readers.iter().position(|(a, _, _)| *a == i) {
        let (_, mine, task) = readers.remove(k);
        mine.store(true, Ordering::Relaxed);
        task.await.expect("reader ran without a wrong byte");
    }
    let (extras, delegations) = (swarm.node(i).extra_replicas(), swarm.node(i).delegations());
    let peer_i = swarm.node(i).peer_id();
    let saved = swarm.data_dir(i).join("balancing.cbor");
    assert!(
        saved.exists(),
        "balancing state written to {}",
        saved.display()
    );
    swarm.stop_node(i).await;
    swarm.start_node(i).await;
    let restarted = Instant::now();
    let mut back = swarm.node(i).extra_replicas();
    let mut want = extras.clone();
    back.sort();
    want.sort();
    assert_eq!(back, want, "extras after the restart");
    let j = (i + 1) % 7;
    let counted = eventually(Duration::from_secs(10), || {
        let row = swarm
            .node(j)
            .balance_status()
            .nodes
            .into_iter()
            .find(|r| r.peer == peer_i);
        // served_blocks restarts from 0: a row showing the old total is the old report.
        let ok = row.is_some_and(|r| r.extras == want.len() && r.served_blocks < after[i]);
        async move { ok }
    })
    .await;
    assert!(
        counted,
        "node {j} takes the restarted node's reports and counts its {} extras",
        want.len()
    );
    if !delegations.is_empty() {
        let back = eventually(Duration::from_secs(20), || {
            let d = swarm.node(i).delegations();
            let ok = delegations.iter().all(|k| d.contains(k));
            async move { ok }
        })
        .await;
        assert!(back, "delegations {delegations:?} after the restart");
    }
    println!(
        "node {i} restarted with its {} extra replicas and {} delegations, counted by its \
         peers {:?} after the start",
        want.len(),
        delegations.len(),
        restarted.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    for (_, _, r) in readers {
        r.await.expect("reader ran without a wrong byte");
    }
    let servers: Vec<PeerId> = swarm
        .running()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| a > b)
        .map(|(n, _)| n.peer_id())
        .collect();
    let deltas: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
    println!(
        "{} gets; served per node in the window: {deltas:?}; base holders {base:?}",
        gets.load(Ordering::Relaxed)
    );
    assert!(
        servers.len() > base.len(),
        "reads still on the {} base holders only: {deltas:?}",
        base.len()
    );
    assert!(
        servers.iter().any(|p| !base.contains(p)),
        "an extra replica served reads"
    );

    // With the reads gone, the extras go (after the 10 s hold), the restored ones included:
    // a manager drops those it counts, the holder those no decision confirmed.
    let cooled = Instant::now();
    let gone = eventually(Duration::from_secs(60), || {
        let ok = swarm.running().all(|n| n.extra_replicas().is_empty());
        async move { ok }
    })
    .await;
    let left: Vec<usize> = swarm.running().map(|n| n.extra_replicas().len()).collect();
    assert!(
        gone,
        "extra replicas left a minute after the reads stopped: {left:?}"
    );
    println!(
        "all extras dropped {:?} after the reads stopped",
        cooled.elapsed()
    );
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_naming_unknown_things_are_skipped_and_reported() {
    let swarm = TestSwarm::start_with(4, 3, fast(T)).await;
    let all: Vec<usize> = (0..4).collect();
    let (m, term) = wait_settled(&swarm, &all, Duration::from_secs(30))
        .await
        .expect("a manager");
    let target = swarm
        .peer_ids()
        .into_iter()
        .find(|p| *p != m)
        .expect("a non-manager");
    let ghost = FileKey::for_name("no-such-file");
    let batch = DecisionBatch {
        term,
        seq: 0,
        now_ms: swarmstore::record::now_ms(),
        items: vec![
            Item {
                decision: Decision::Replicate {
                    block: BlockId([7; 32]),
                    file: ghost,
                    from: m,
                    to: target,
                    heat: 0.0,
                },
                name: "no-such-file".into(),
            },
            Item {
                decision: Decision::Drop {
                    block: BlockId([8; 32]),
                    file: ghost,
                    at: target,
                },
                name: "no-such-file".into(),
            },
        ],
    };
    // Published by the real manager: accepted, then skipped by the target as inapplicable.
    let manager = swarm.node(swarm.index_of(&m));
    manager
        .publish_raw("decisions", wire::encode(&batch).expect("encodes"))
        .await
        .expect("published");
    let node = swarm.node(swarm.index_of(&target));
    let observer = swarm
        .running()
        .find(|n| n.peer_id() != m && n.peer_id() != target)
        .expect("a third node");
    let reported = eventually(Duration::from_secs(20), || {
        // The outcome travels in the target's load report: a third node's view shows it.
        let states: Vec<String> = observer
            .balance_status()
            .decisions
            .iter()
            .filter(|d| d.term == term && d.seq == 0)
            .map(|d| d.state.clone())
            .collect();
        let ok = states.len() == 2 && states.iter().all(|s| s.starts_with("skipped"));
        async move { ok }
    })
    .await;
    let seen = observer.balance_status().decisions;
    assert!(reported, "outcomes not reported: {seen:?}");
    assert!(node.extra_replicas().is_empty());
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_json_names_the_manager_nodes_and_decisions() {
    let swarm = TestSwarm::start_with(3, 3, fast(T)).await;
    let all: Vec<usize> = (0..3).collect();
    let (m, term) = wait_settled(&swarm, &all, Duration::from_secs(30))
        .await
        .expect("a manager");
    // Every node's report must have arrived before the table is complete.
    eventually(Duration::from_secs(10), || {
        let ok = swarm.node(1).balance_status().nodes.len() == 3;
        async move { ok }
    })
    .await;
    let id = swarm.dir.path().join("client.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmstore"))
        .args([
            "status",
            "--json",
            "--node",
            &swarm.node(1).addr().to_string(),
        ])
        .arg("--identity")
        .arg(&id)
        .env_remove("SWARMSTORE_NODE")
        .output()
        .expect("run the cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["manager"]["peer"], m.to_string());
    assert_eq!(v["manager"]["term"], term);
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        for key in ["peer", "load", "used", "capacity"] {
            assert!(!n[key].is_null(), "node row lacks {key}: {n}");
        }
    }
    assert!(v["decisions"].is_array());
    // The fields that were there before stay.
    assert!(v["peers"].is_array() && v["repair"].is_object());
    swarm.shutdown().await;
}
