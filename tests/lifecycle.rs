//! File lifecycle: signed ownership, versioned updates, deletion with garbage collection, the
//! user list, and replica convergence.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use libp2p::identity::Keypair;
use swarmstore::ids::FileKey;
use swarmstore::record::RecordError;
use swarmstore::{Client, Error};

const MIB: usize = 1024 * 1024;

fn quick_timers() -> Tune {
    Arc::new(|c| {
        c.gc_grace(Duration::from_secs(2))
            .sync_interval(Duration::from_millis(500))
    })
}

fn total_blocks(swarm: &TestSwarm) -> usize {
    swarm.running().map(|n| n.store().blocks.count()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_reuses_blocks_and_keeps_versions() {
    let swarm = TestSwarm::start(4, 3).await;
    let owner = Keypair::generate_ed25519();
    let client = swarm.client_with(0, &owner).await;
    let v1 = random_bytes(20 * MIB, 1);
    let put = client.put_bytes("doc", &v1).await.unwrap();
    assert_eq!(put.blocks, 20);
    assert_eq!(put.new_blocks, 20);
    let before = total_blocks(&swarm);

    let mut v2 = v1.clone();
    v2[7 * MIB + 100] ^= 0xff; // one byte of block 7
    let up = client.update("doc", &v2[..], None, None).await.unwrap();
    assert_eq!(up.version, 2);
    assert_eq!(
        (up.new_blocks, up.reused_blocks),
        (1, 19),
        "only the changed block is uploaded"
    );
    assert_eq!(
        total_blocks(&swarm),
        before + 3,
        "one new block, on R holders"
    );

    let reader = swarm.client(2).await;
    assert!(reader.get_bytes("doc").await.unwrap() == v2);
    let mut old = Vec::new();
    reader
        .get_into("doc", Some(1), &mut old, None)
        .await
        .unwrap();
    assert!(old == v1, "version 1 is still readable");
    assert_eq!(reader.stat("doc").await.unwrap().versions, vec![1, 2]);

    // --if-version: conflict unless current.
    match client.update("doc", &b"x"[..], Some(1), None).await {
        Err(Error::Rejected(RecordError::Conflict { current: 2, .. })) => {}
        other => panic!("expected a conflict naming version 2, got {other:?}"),
    }
    let up3 = client
        .update("doc", &b"three"[..], Some(2), None)
        .await
        .unwrap();
    assert_eq!(up3.version, 3);

    // Retention: the node keeps 3 versions by default.
    client
        .update("doc", &b"four"[..], None, None)
        .await
        .unwrap();
    let info = reader.stat("doc").await.unwrap();
    assert_eq!(info.versions, vec![2, 3, 4]);
    match reader.get_into("doc", Some(1), &mut Vec::new(), None).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("version 1 is no longer retained, got {other:?}"),
    }
    match client.update("missing", &b"x"[..], None, None).await {
        Err(Error::NotFound(_)) => {}
        other => panic!("update of an unknown name: {other:?}"),
    }
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_exactly_one_wins() {
    let swarm = TestSwarm::start(4, 3).await;
    let owner = Keypair::generate_ed25519();
    let a = swarm.client_with(0, &owner).await;
    let b = swarm.client_with(3, &owner).await;
    a.put_bytes("race", b"v1").await.unwrap();
    for round in 0..5u64 {
        let base = 1 + round;
        let da = random_bytes(300_000, 100 + round);
        let db = random_bytes(300_000, 200 + round);
        let (ra, rb) = tokio::join!(
            a.update("race", &da[..], Some(base), None),
            b.update("race", &db[..], Some(base), None)
        );
        let oks = [ra.is_ok(), rb.is_ok()].iter().filter(|x| **x).count();
        assert_eq!(oks, 1, "round {round}: exactly one wins: {ra:?} / {rb:?}");
        let loser = if ra.is_ok() { rb } else { ra };
        match loser {
            Err(Error::Rejected(RecordError::Conflict { current, .. })) => {
                assert_eq!(current, base + 1, "the conflict names the current version")
            }
            other => panic!("the loser gets a conflict, got {other:?}"),
        }
        let info = a.stat("race").await.unwrap();
        assert_eq!(info.version, base + 1, "exactly version + 1");
    }
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_owner_cannot_update_or_remove() {
    let swarm = TestSwarm::start(4, 3).await;
    let owner = swarm.client(0).await;
    let data = random_bytes(2 * MIB, 3);
    owner.put_bytes("mine", &data).await.unwrap();
    let before = owner.stat("mine").await.unwrap();
    let blocks_before = total_blocks(&swarm);

    let stranger = swarm.client(1).await;
    match stranger.update("mine", &b"hijack"[..], None, None).await {
        Err(Error::Rejected(RecordError::PermissionDenied { .. })) => {}
        other => panic!("expected permission denied, got {other:?}"),
    }
    match stranger.remove("mine", None).await {
        Err(Error::Rejected(RecordError::PermissionDenied { .. })) => {}
        other => panic!("expected permission denied, got {other:?}"),
    }
    let after = owner.stat("mine").await.unwrap();
    assert_eq!(after.version, before.version);
    assert_eq!(after.blocks, before.blocks);
    assert_eq!(total_blocks(&swarm), blocks_before);
    assert!(stranger.get_bytes("mine").await.unwrap() == data);
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remove_then_collect_unshared_blocks() {
    let swarm = TestSwarm::start_with(4, 3, quick_timers()).await;
    let owner = Keypair::generate_ed25519();
    let client = swarm.client_with(0, &owner).await;
    // Block 0 is shared with another file; blocks 1 and 2 belong to "doomed" alone.
    let shared = random_bytes(MIB, 50);
    let mut doomed = shared.clone();
    doomed.extend(random_bytes(2 * MIB, 51));
    client.put_bytes("keeper", &shared).await.unwrap();
    client.put_bytes("doomed", &doomed).await.unwrap();
    let info = client.stat("doomed").await.unwrap();
    let shared_id = info.blocks[0].id;
    let own_ids: Vec<_> = info.blocks[1..]
        .iter()
        .map(|b| (b.id, b.holders.clone()))
        .collect();

    let v = client.remove("doomed", None).await.unwrap();
    assert_eq!(v, 2);
    match client.get_bytes("doomed").await {
        Err(Error::Deleted { version: 2, .. }) => {}
        other => panic!("expected deleted, got {other:?}"),
    }
    let stranger = swarm.client(2).await;
    match stranger.get_bytes("doomed").await {
        Err(Error::Deleted { .. }) => {}
        other => panic!("deleted for everyone, got {other:?}"),
    }

    // After the grace period the unshared blocks are gone from every holder's disk.
    let gone = eventually(Duration::from_secs(30), || async {
        own_ids.iter().all(|(id, holders)| {
            holders
                .iter()
                .all(|h| !swarm.has_block_file(swarm.index_of(h), id))
        })
    })
    .await;
    assert!(gone, "unshared blocks collected from every holder");
    for i in 0..4 {
        // Whoever held the shared block still does.
        let _ = swarm.has_block_file(i, &shared_id);
    }
    let shared_holders = &client.stat("keeper").await.unwrap().blocks[0].holders;
    for h in shared_holders {
        assert!(
            swarm.has_block_file(swarm.index_of(h), &shared_id),
            "shared block survives"
        );
    }
    assert!(client.get_bytes("keeper").await.unwrap() == shared);

    // The same owner can put the name again: a fresh history continuing the numbering.
    let put = client.put_bytes("doomed", b"reborn").await.unwrap();
    assert_eq!(put.version, 3);
    let info = client.stat("doomed").await.unwrap();
    assert_eq!(info.versions, vec![3]);
    assert_eq!(client.get_bytes("doomed").await.unwrap(), b"reborn");
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_down_during_update_catches_up() {
    let mut swarm = TestSwarm::start_with(5, 3, quick_timers()).await;
    let owner = Keypair::generate_ed25519();
    let name = "catch-up";
    let replicas = closest_to(&FileKey::for_name(name).0, &swarm.peer_ids());
    // Access through a node outside the replica set, stop a non-root replica.
    let outsider = swarm.index_of(&replicas[4]);
    let sleeper = swarm.index_of(&replicas[2]);
    let client = swarm.client_with(outsider, &owner).await;
    client.put_bytes(name, b"version one").await.unwrap();
    swarm.stop_node(sleeper).await;

    let up = client
        .update(name, &b"version two"[..], None, None)
        .await
        .unwrap();
    assert_eq!(up.version, 2);
    assert_eq!(client.get_bytes(name).await.unwrap(), b"version two");

    swarm.start_node(sleeper).await;
    let key = FileKey::for_name(name);
    let caught_up = eventually(Duration::from_secs(30), || async {
        swarm
            .node(sleeper)
            .store()
            .records
            .get(&key)
            .ok()
            .flatten()
            .and_then(|s| s.head().map(|h| h.version))
            == Some(2)
    })
    .await;
    assert!(caught_up, "the restarted replica converges to version 2");
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_list_records_downloaders() {
    let swarm = TestSwarm::start(3, 3).await;
    let owner = swarm.client(0).await;
    owner.put_bytes("popular", b"hello").await.unwrap();
    let readers: Vec<_> = futures::future::join_all((0..3).map(|i| swarm.client(i))).await;
    for r in &readers {
        r.get_bytes("popular").await.unwrap();
        r.get_bytes("popular").await.unwrap();
    }
    let ok = eventually(Duration::from_secs(10), || async {
        let info = owner.stat("popular").await.unwrap();
        readers.iter().all(|r| {
            info.users
                .iter()
                .any(|u| u.peer == r.peer_id() && u.count == 2)
        })
    })
    .await;
    assert!(ok, "each downloader appears once with its count");
    let info = owner.stat("popular").await.unwrap();
    assert_eq!(info.users.len(), 4, "owner + three downloaders");
    assert_eq!(info.users[0].peer, owner.peer_id());
    swarm.shutdown().await;
}

/// A node dropped without `shutdown` stops: it no longer answers, and its data dir (whose store
/// it held locked) opens again for a new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_node_stops_and_frees_its_store() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = swarmstore::NodeConfig::local(dir.path().join("node"));
    let node = swarmstore::Node::start(config.clone())
        .await
        .expect("starts");
    let addr = node.addr();
    let client = Client::connect(addr.clone(), Keypair::generate_ed25519())
        .await
        .expect("connects");
    client.put_bytes("x", b"hello").await.expect("put");
    drop(client);
    drop(node);
    let gone = eventually(Duration::from_secs(10), || {
        let addr = addr.clone();
        async move {
            Client::connect(addr, Keypair::generate_ed25519())
                .await
                .is_err()
        }
    })
    .await;
    assert!(gone, "a dropped node still answers");
    let reopened = eventually(Duration::from_secs(10), || {
        let config = config.clone();
        async move { swarmstore::Node::start(config).await.is_ok() }
    })
    .await;
    assert!(
        reopened,
        "the data dir stays locked after the node was dropped"
    );
}
