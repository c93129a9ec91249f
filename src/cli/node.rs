//! `node` (one storage node) and `devnet` (a local swarm in one process).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use libp2p::Multiaddr;

use super::output::{human_bytes, parse_bytes, parse_duration, print_json};
use crate::identity;
use crate::node::{Node, NodeConfig};
use crate::store::Store;

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Data directory (identity, blocks, records, node.addr) [default: platform data dir]
    #[arg(long, value_name = "DIR", env = "SWARMSTORE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address; repeatable [default: TCP and QUIC on 0.0.0.0 port 4001]
    #[arg(long, value_name = "MULTIADDR", help_heading = "Network")]
    pub listen: Vec<Multiaddr>,
    /// A peer to join through; repeatable.
    #[arg(long, value_name = "MULTIADDR", help_heading = "Network")]
    pub bootstrap: Vec<Multiaddr>,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long, help_heading = "Network")]
    pub no_mdns: bool,
    /// Copies kept of every block and record.
    #[arg(long, default_value_t = 3, value_name = "N", help_heading = "Storage")]
    pub replication: usize,
    /// Block storage offered, e.g. 50G [default: no limit beyond the disk]
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, help_heading = "Storage")]
    pub capacity: Option<u64>,
    /// Versions of each file a root retains.
    #[arg(long, default_value_t = 3, value_name = "K", help_heading = "Storage")]
    pub keep_versions: usize,
    /// How long a block stays unreferenced before it is deleted, e.g. 10m, 30s.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration, help_heading = "Storage")]
    pub gc_grace: Duration,
    /// How often replica sets compare record versions, e.g. 30s.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration, help_heading = "Storage")]
    pub sync_interval: Duration,
    /// Upper bound on noticing a dead peer, e.g. 10s.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration, help_heading = "Durability")]
    pub liveness: Duration,
    /// How often roots check that every block has R live holders.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration, help_heading = "Durability")]
    pub repair_interval: Duration,
    /// Bandwidth repair copies may use, e.g. 64M (per second).
    #[arg(long, default_value = "64M", value_name = "BYTES", value_parser = parse_bytes, help_heading = "Durability")]
    pub repair_bandwidth: u64,
    /// On SIGTERM/Ctrl-C, hand records and block copies to other nodes before exiting.
    #[arg(long, help_heading = "Durability")]
    pub drain: bool,
    /// Check the store (every block's hash, every record's signature) and exit.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Where the nodes keep their data [default: a fresh temp dir, removed on exit]
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// Copies kept of every block and record.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub replication: usize,
}

pub async fn run_node(args: NodeArgs, json: bool) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(identity::default_data_dir);
    if args.check {
        let local = std::fs::read(data_dir.join("identity.key"))
            .ok()
            .and_then(|b| libp2p::identity::Keypair::from_protobuf_encoding(&b).ok())
            .map(|k| k.public().to_peer_id());
        let report = Store::open(&data_dir)?.check(local)?;
        if json {
            print_json(&report)?;
        } else {
            println!(
                "{} blocks ({}), {} records",
                report.blocks,
                human_bytes(report.block_bytes),
                report.records
            );
            for id in &report.corrupt_blocks {
                println!("corrupt block (moved aside): {id}");
            }
            for p in &report.problems {
                println!("problem: {p}");
            }
        }
        if !report.is_clean() {
            anyhow::bail!("store check found problems in {}", data_dir.display());
        }
        return Ok(());
    }
    let mut config = NodeConfig::new(&data_dir)
        .bootstrap(args.bootstrap)
        .mdns(!args.no_mdns)
        .replication(args.replication)
        .capacity(args.capacity);
    config = config
        .keep_versions(args.keep_versions)
        .gc_grace(args.gc_grace)
        .sync_interval(args.sync_interval)
        .liveness(args.liveness)
        .repair_interval(args.repair_interval)
        .repair_bandwidth(args.repair_bandwidth);
    if !args.listen.is_empty() {
        config = config.listen_on(args.listen);
    }
    let node = Node::start(config).await?;
    if json {
        print_json(&serde_json::json!({
            "peer": node.peer_id().to_string(),
            "addrs": node.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "data_dir": data_dir,
        }))?;
    } else {
        println!("swarmstore node {}", node.peer_id());
        for a in node.listen_addrs() {
            println!("  listening on {a}");
        }
        println!("  data in {}", data_dir.display());
    }
    wait_for_signal().await;
    if args.drain {
        tracing::info!("draining before exit");
        let report = node.drain().await;
        if !report.failures.is_empty() {
            tracing::warn!(failures = ?report.failures, "drain could not hand over everything");
        }
    }
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run_devnet(args: DevnetArgs, json: bool) -> anyhow::Result<()> {
    if args.nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let (base, _cleanup) = match args.base_dir {
        Some(dir) => (dir, None),
        None => {
            let dir = tempfile_dir()?;
            (dir.clone(), Some(RemoveOnDrop(dir)))
        }
    };
    let mut nodes: Vec<Node> = Vec::with_capacity(args.nodes);
    for i in 0..args.nodes {
        let bootstrap = nodes.first().map(|n| vec![n.addr()]).unwrap_or_default();
        let config = NodeConfig::local(base.join(format!("node{i}")))
            .bootstrap(bootstrap)
            .replication(args.replication);
        nodes.push(Node::start(config).await?);
    }
    let first = nodes[0].addr();
    std::fs::write(base.join("node.addr"), format!("{first}\n"))?;
    let want = args.nodes - 1;
    for n in &nodes {
        n.wait_for_peers(want, Duration::from_secs(10)).await;
    }
    if json {
        print_json(&serde_json::json!({
            "base_dir": base,
            "replication": args.replication,
            "nodes": nodes.iter().enumerate().map(|(i, n)| serde_json::json!({
                "peer": n.peer_id().to_string(),
                "addr": n.addr().to_string(),
                "data_dir": base.join(format!("node{i}")),
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "devnet: {} nodes, replication {}, data under {}",
            args.nodes,
            args.replication,
            base.display()
        );
        for (i, n) in nodes.iter().enumerate() {
            println!("  node {i:<3} {}", n.addr());
        }
        println!();
        println!("Try, in another terminal:");
        println!("  export SWARMSTORE_NODE={first}");
        println!("  swarmstore put README.md");
        println!("  swarmstore stat README.md");
        println!("  swarmstore get README.md -o /tmp/README.copy");
        println!();
        println!("Ctrl-C stops the swarm.");
    }
    wait_for_signal().await;
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("swarmstore-devnet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Simulated storage nodes.
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Zipf exponent of file popularity.
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Measured rounds (after warm-up).
    #[arg(long, default_value_t = 60)]
    pub rounds: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write CSV and SVG here (e.g. docs/sim).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let table = crate::balance::sim::run_cli(
        args.nodes,
        args.zipf,
        args.rounds,
        args.seed,
        args.out.as_deref(),
    )?;
    println!("{table}");
    Ok(())
}
