//! Core network acceptance: five nodes in one process over TCP on 127.0.0.1.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use swarmstore::ids::FileKey;
use swarmstore::Error;

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_through_one_get_through_another() {
    let swarm = TestSwarm::start(5, 3).await;
    let writer = swarm.client(0).await;
    let reader = swarm.client(3).await;
    let sizes = [0usize, 1, MIB, 20 * MIB + 7];
    for (i, size) in sizes.iter().enumerate() {
        let name = format!("file-{size}");
        let data = random_bytes(*size, i as u64);
        let put = writer.put_bytes(&name, &data).await.expect("put");
        assert_eq!(put.size, *size as u64);
        assert_eq!(put.version, 1);
        assert_eq!(put.blocks, size.div_ceil(MIB));
        assert_eq!(put.key, FileKey::for_name(&name));
        // Every block reached R holders (an inline one needs none: it rides in the record).
        assert_eq!(put.under_replicated, 0, "{name}: under-replicated at put");

        let got = reader.get_bytes(&name).await.expect("get");
        assert!(got == data, "{name}: bytes differ");

        let info = reader.stat(&name).await.expect("stat");
        assert_eq!(info.size, *size as u64);
        assert_eq!(info.blocks.len(), put.blocks);
        // A file of a few KiB rides in its record: its copies are the R record replicas.
        let small = *size > 0 && *size <= swarmstore::record::INLINE_MAX as usize;
        assert_eq!(info.inline, small, "{name}: inline only when small");
        if small {
            assert!(info.blocks.iter().all(|b| b.holders.is_empty()));
            assert_eq!(info.replicas.len(), 3, "{name}: R copies of the record");
        }
        for b in info.blocks.iter().filter(|_| !small) {
            let distinct: HashSet<_> = b.holders.iter().collect();
            assert_eq!(b.holders.len(), 3, "block {} holders {:?}", b.id, b.holders);
            assert_eq!(distinct.len(), 3, "holders must be distinct");
        }
        let expected = swarm.expected_root(&name);
        assert_eq!(
            info.root, expected,
            "{name}: root is the closest peer by XOR"
        );
        assert_eq!(put.root, expected);
        assert_eq!(info.replicas.len(), 3, "record on the whole replica set");
        let want: HashSet<_> = closest_to(&info.key.0, &swarm.peer_ids())
            .into_iter()
            .take(3)
            .collect();
        assert_eq!(info.replicas.iter().copied().collect::<HashSet<_>>(), want);
    }

    // The same small file stored as a block (inline off): R distinct holders, same bytes.
    let block_writer = swarm.client(1).await.with_inline_max(0);
    let data = random_bytes(1, 1);
    block_writer
        .put_bytes("file-1-held", &data)
        .await
        .expect("put");
    assert!(reader.get_bytes("file-1-held").await.expect("get") == data);
    let info = reader.stat("file-1-held").await.expect("stat");
    assert!(!info.inline);
    assert_eq!(info.blocks.len(), 1);
    let holders: HashSet<_> = info.blocks[0].holders.iter().collect();
    assert_eq!((info.blocks[0].holders.len(), holders.len()), (3, 3));

    // The root recorded the reading client in the user list, the owner first; only the
    // owner sees who downloaded.
    let info = reader.stat("file-1").await.expect("stat");
    assert_eq!(info.owner, writer.peer_id());
    assert_eq!(info.users[0].peer, writer.peer_id());
    assert!(
        eventually(Duration::from_secs(5), || async {
            writer
                .stat("file-1")
                .await
                .map(|i| i.users.iter().any(|u| u.peer == reader.peer_id()))
                .unwrap_or(false)
        })
        .await,
        "the downloader is in the user list the owner sees"
    );
    let seen_by_reader = reader.stat("file-1").await.expect("stat");
    assert!(
        seen_by_reader
            .users
            .iter()
            .all(|u| u.peer == writer.peer_id()),
        "a stranger sees no downloaders: {:?}",
        seen_by_reader.users
    );

    match reader.get_bytes("no-such-file").await {
        Err(Error::NotFound(_)) => {}
        other => panic!("expected not found, got {other:?}"),
    }
    match writer.put_bytes("file-1", b"again").await {
        Err(Error::AlreadyExists { version: 1, .. }) => {}
        other => panic!("expected already exists, got {other:?}"),
    }
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_keeps_everything() {
    let swarm = TestSwarm::start(5, 3).await;
    let data = random_bytes(3 * MIB + 123, 7);
    swarm
        .client(1)
        .await
        .put_bytes("survivor", &data)
        .await
        .expect("put");
    let ids_before = swarm.peer_ids();
    let dir = swarm.shutdown().await;

    // Same data dirs, new ports: the identities and stores carry over.
    let mut swarm = TestSwarm {
        dir,
        nodes: Vec::new(),
        replication: 3,
        tune: std::sync::Arc::new(|c| c),
    };
    for i in 0..5 {
        swarm.start_node(i).await;
    }
    swarm.wait_mesh().await;
    assert_eq!(swarm.peer_ids(), ids_before, "identities persist");
    let got = swarm
        .client(4)
        .await
        .get_bytes("survivor")
        .await
        .expect("get");
    assert!(got == data);
    swarm.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_block_copies_are_detected_and_avoided() {
    let swarm = TestSwarm::start(5, 3).await;
    let data = random_bytes(2 * MIB + 5, 11);
    let client = swarm.client(0).await;
    client.put_bytes("fragile", &data).await.expect("put");
    let info = client.stat("fragile").await.expect("stat");
    let ids = swarm.peer_ids();
    let block = &info.blocks[0];

    // Flip a byte of the block on its first holder, then read through that very holder: its
    // local copy is the first one tried, fails its hash, and another holder serves.
    let bad = block.holders[0];
    let bad_idx = ids
        .iter()
        .position(|p| *p == bad)
        .expect("holder is a node");
    flip_block_file(&swarm.data_dir(bad_idx), &block.id.to_hex());
    let got = swarm
        .client(bad_idx)
        .await
        .get_bytes("fragile")
        .await
        .expect("get");
    assert!(got == data, "right bytes despite a corrupt copy");
    assert!(
        !swarm.node(bad_idx).store().blocks.contains(&block.id),
        "the corrupt copy is moved aside"
    );

    // Two of three copies bad, read through a node that holds none: still right.
    let second = block.holders[1];
    let second_idx = ids.iter().position(|p| *p == second).expect("holder");
    flip_block_file(&swarm.data_dir(second_idx), &block.id.to_hex());
    let outsider = (0..5)
        .find(|i| !block.holders.contains(&ids[*i]))
        .expect("a node that is not a holder");
    let got = swarm
        .client(outsider)
        .await
        .get_bytes("fragile")
        .await
        .expect("get");
    assert!(got == data);
    swarm.shutdown().await;
}

fn flip_block_file(data_dir: &std::path::Path, hex: &str) {
    let path = data_dir.join("blocks").join(&hex[..2]).join(hex);
    let mut bytes = std::fs::read(&path).expect("block file exists");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&path, bytes).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_access_node_fails_fast() {
    let key = libp2p::identity::Keypair::generate_ed25519();
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let addr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let start = std::time::Instant::now();
    let result = swarmstore::Client::connect(addr, key).await;
    assert!(matches!(result, Err(Error::Unreachable { .. })));
    assert!(start.elapsed() < Duration::from_secs(11));
}

/// A reader that fails after `ok` bytes, like a disk error or a vanished source mid-put.
struct FailingReader {
    ok: usize,
    sent: usize,
}

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.sent >= self.ok {
            return std::task::Poll::Ready(Err(std::io::Error::other("source failed")));
        }
        let n = buf.remaining().min(self.ok - self.sent).min(64 * 1024);
        buf.put_slice(&vec![0x42; n]);
        self.sent += n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_failing_midway_leaves_nothing_visible() {
    let swarm = TestSwarm::start(3, 3).await;
    let client = swarm.client(0).await;
    let reader = FailingReader {
        ok: 3 * MIB + 10,
        sent: 0,
    };
    match client.put("half-done", reader, None).await {
        Err(Error::Io(_)) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
    match client.stat("half-done").await {
        Err(Error::NotFound(_)) => {}
        other => panic!("no record may be visible, got {other:?}"),
    }
    // The name is still free for a complete put.
    client
        .put_bytes("half-done", b"complete")
        .await
        .expect("put");
    assert_eq!(client.get_bytes("half-done").await.unwrap(), b"complete");

    // The library's streaming read yields verified blocks in order.
    use futures::StreamExt;
    let data = random_bytes(2 * MIB + 3, 9);
    client.put_bytes("streamed", &data).await.unwrap();
    let mut stream = std::pin::pin!(client.get_stream("streamed", None).await.unwrap());
    let mut joined = Vec::new();
    while let Some(chunk) = stream.next().await {
        joined.extend(chunk.unwrap());
    }
    assert!(joined == data);
    swarm.shutdown().await;
}
