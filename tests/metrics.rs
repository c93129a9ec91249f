//! `/metrics` over HTTP: our counters and libp2p's are there, ours move after a put and a get,
//! `/health` answers, and a stuck scraper does not hold up another.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("answer within 5 s")
        .expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http response");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the sample whose name and labels start with `prefix`, or 0.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_endpoint_shows_our_counters_moving() {
    let tune: Tune = Arc::new(|c| c.metrics(Some("127.0.0.1:0".parse().expect("addr"))));
    let swarm = TestSwarm::start_with(3, 3, tune).await;
    let addr = swarm.node(0).metrics_addr().expect("metrics served");

    let (status, before) = http_get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    for name in [
        "swarmstore_blocks_stored",
        "swarmstore_bytes_stored",
        "swarmstore_requests_served",
        "swarmstore_put_latency_seconds",
        "swarmstore_get_latency_seconds",
        "swarmstore_repair_queue",
        "swarmstore_blocks_under_replicated",
        "swarmstore_blocks_lost",
        "swarmstore_load_score",
        "swarmstore_manager_term",
        "swarmstore_decisions_applied",
        "swarmstore_live_peers",
        "swarmstore_reachability",
        "swarmstore_heap_in_use_bytes",
        "swarmstore_map_entries{map=\"decision_history\"}",
        // libp2p-metrics
        "libp2p_swarm_connections",
        "libp2p_identify",
        "libp2p_kad",
        "libp2p_bandwidth",
    ] {
        assert!(before.contains(name), "{name} missing from:\n{before}");
    }
    assert_eq!(sample(&before, "swarmstore_live_peers"), 2.0);
    // The view holds the load reports of the three nodes once a round has passed (its own
    // included): the gauge counts real entries.
    let reports = eventually(Duration::from_secs(10), || async move {
        let (_, text) = http_get(addr, "/metrics").await;
        sample(&text, "swarmstore_map_entries{map=\"view_reports\"}") >= 2.0
    })
    .await;
    assert!(
        reports,
        "the view's reports counted in swarmstore_map_entries"
    );

    // A stuck scraper (connected, silent) does not hold up the next one.
    let _stuck = tokio::net::TcpStream::connect(addr).await.expect("connect");

    let data = random_bytes(3 * 1024 * 1024 + 5, 11);
    let client = swarm.client(0).await;
    client.put_bytes("metrics/file", &data).await.expect("put");
    assert!(client.get_bytes("metrics/file").await.expect("get") == data);

    let (_, after) = http_get(addr, "/metrics").await;
    let moved = |prefix: &str| sample(&after, prefix) - sample(&before, prefix);
    // Clients write and read blocks straight from holders: with R = 3 on three nodes this node
    // stores every one of the 4 blocks, and serves its share of the reads (the client spreads them).
    let served = "swarmstore_requests_served_total{protocol=\"client\",kind=";
    let block = "swarmstore_requests_served_total{protocol=\"block\",kind=";
    // They arrive down the write pipeline (`put-chain`), or straight from the client.
    let stored = moved(&format!("{block}\"put\"")) + moved(&format!("{block}\"put-chain\""));
    assert_eq!(stored, 4.0, "{after}");
    assert_eq!(moved(&format!("{served}\"publish\"")), 1.0);
    assert!(moved(&format!("{served}\"fetch\"")) >= 1.0);
    let gets = moved(&format!("{block}\"get\""));
    assert!(
        (1.0..=4.0).contains(&gets),
        "{gets} block reads served here"
    );
    assert_eq!(
        moved("swarmstore_put_latency_seconds_count{stage=\"holder\"}"),
        4.0
    );
    assert_eq!(
        moved("swarmstore_put_latency_seconds_count{stage=\"record\"}"),
        1.0
    );
    assert_eq!(
        moved("swarmstore_get_latency_seconds_count{stage=\"holder\"}"),
        gets
    );
    // With R = 3 on three nodes every node holds every block.
    assert_eq!(sample(&after, "swarmstore_blocks_stored"), 4.0);
    assert_eq!(sample(&after, "swarmstore_bytes_stored"), data.len() as f64);
    assert!(moved("libp2p_bandwidth_bytes_total") > data.len() as f64);

    let (status, body) = http_get(addr, "/health").await;
    assert!(
        status.contains("200") && body.contains("serving"),
        "{status} {body}"
    );
    let (status, _) = http_get(addr, "/nope").await;
    assert!(status.contains("404"), "{status}");

    swarm.shutdown().await;
    // Once the node is gone, so is the endpoint.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// A stranger connecting again and again under fresh ids (a client identity costs nothing)
/// leaves nothing behind in the node's peer table once each connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_under_fresh_ids_leave_no_trace_in_the_peer_table() {
    let tune: Tune = Arc::new(|c| c.metrics(Some("127.0.0.1:0".parse().expect("addr"))));
    let swarm = TestSwarm::start_with(3, 3, tune).await;
    let addr = swarm.node(0).metrics_addr().expect("metrics served");
    let peers = |text: &str| sample(text, "swarmstore_map_entries{map=\"peers\"}");
    let (_, before) = http_get(addr, "/metrics").await;
    assert_eq!(peers(&before), 2.0, "the two other nodes");
    for _ in 0..100 {
        let stranger = swarm.client(0).await;
        stranger.status().await.expect("status");
        drop(stranger);
    }
    let forgotten = eventually(Duration::from_secs(20), || async move {
        let (_, text) = http_get(addr, "/metrics").await;
        peers(&text) <= 3.0
    })
    .await;
    let (_, after) = http_get(addr, "/metrics").await;
    assert!(
        forgotten,
        "{} peers remembered after 100 strangers came and went",
        peers(&after)
    );
    swarm.shutdown().await;
}
