//! `node` (one storage node) and `devnet` (a local swarm in one process).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use libp2p::Multiaddr;

use super::output::print_json;
use crate::config::{BalanceSettings, NodeSettings};
use crate::identity;
use crate::node::{Node, NodeConfig, ServeMode};
use crate::store::Store;
use crate::units::{human_bytes, parse_bytes, parse_duration};
use crate::workload::{self, parse_workload, BenchConfig};

/// `swarmstore node`. Each setting can also come from the config file (`--config`, same key
/// names) or from `SWARMSTORE_<NAME>`; flags beat the environment, which beats the file.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// TOML file with any of the settings below (keys are the flag names, e.g. gc-grace).
    #[arg(long, value_name = "FILE", env = "SWARMSTORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (identity, blocks, records, node.addr) [default: platform data dir]
    #[arg(long, value_name = "DIR", env = "SWARMSTORE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listen address; repeatable. A `/p2p/RELAY/p2p-circuit` address listens through a relay
    /// [default: TCP and QUIC on 0.0.0.0 port 4001]
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "SWARMSTORE_LISTEN",
        value_delimiter = ',',
        help_heading = "Network"
    )]
    pub listen: Vec<Multiaddr>,
    /// A peer to join through, e.g. /dns4/seed.example/tcp/4001[/p2p/PEER]; repeatable.
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "SWARMSTORE_BOOTSTRAP",
        value_delimiter = ',',
        help_heading = "Network"
    )]
    pub bootstrap: Vec<String>,
    /// An address this node is reachable at (advertised without an AutoNAT test); repeatable.
    #[arg(
        long,
        value_name = "MULTIADDR",
        env = "SWARMSTORE_EXTERNAL_ADDR",
        value_delimiter = ',',
        help_heading = "Network"
    )]
    pub external_addr: Vec<Multiaddr>,
    /// Do not discover peers on the LAN with mDNS.
    #[arg(long, env = "SWARMSTORE_NO_MDNS", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL", help_heading = "Network")]
    pub no_mdns: Option<bool>,
    /// Serve as a relay for peers behind NAT: auto (while AutoNAT confirms this node is
    /// public), on, off. Circuits carry at most 16 MiB for 10 min; blocks never use them.
    /// [default: auto]
    #[arg(long, env = "SWARMSTORE_RELAY_SERVER", num_args = 0..=1, default_missing_value = "on",
          value_name = "auto|on|off", help_heading = "Network")]
    pub relay_server: Option<ServeMode>,
    /// Answer other peers' AutoNAT reachability tests: auto (while public), on, off
    /// [default: auto]
    #[arg(
        long,
        env = "SWARMSTORE_AUTONAT_SERVER",
        value_name = "auto|on|off",
        help_heading = "Network"
    )]
    pub autonat_server: Option<ServeMode>,
    /// Private swarm: a pre-shared key file (/key/swarm/psk/1.0.0/ format; make one with
    /// `swarmstore swarm-key`). Peers without the same key cannot connect. Disables QUIC.
    #[arg(
        long,
        value_name = "FILE",
        env = "SWARMSTORE_SWARM_KEY",
        help_heading = "Network"
    )]
    pub swarm_key: Option<PathBuf>,
    /// Serve the dashboard at http://ADDR/, Prometheus metrics at /metrics and /health, e.g.
    /// 127.0.0.1:9090 (a bare port means 127.0.0.1)
    #[arg(
        long,
        value_name = "ADDR",
        env = "SWARMSTORE_METRICS",
        value_parser = crate::config::parse_admin_addr,
        help_heading = "Network"
    )]
    pub metrics: Option<SocketAddr>,
    /// Copies kept of every block and record [default: 3]
    #[arg(
        long,
        value_name = "N",
        env = "SWARMSTORE_REPLICATION",
        help_heading = "Storage"
    )]
    pub replication: Option<usize>,
    /// Block storage offered, e.g. 50G [default: no limit beyond the disk]
    #[arg(long, value_name = "BYTES", env = "SWARMSTORE_CAPACITY", value_parser = parse_bytes, help_heading = "Storage")]
    pub capacity: Option<u64>,
    /// Versions of each file a root retains [default: 3]
    #[arg(
        long,
        value_name = "K",
        env = "SWARMSTORE_KEEP_VERSIONS",
        help_heading = "Storage"
    )]
    pub keep_versions: Option<usize>,
    /// How long a block stays unreferenced before it is deleted, e.g. 10m, 30s [default: 10m]
    #[arg(long, value_name = "DURATION", env = "SWARMSTORE_GC_GRACE", value_parser = parse_duration, help_heading = "Storage")]
    pub gc_grace: Option<Duration>,
    /// How often replica sets compare record versions, e.g. 30s [default: 10s]
    #[arg(long, value_name = "DURATION", env = "SWARMSTORE_SYNC_INTERVAL", value_parser = parse_duration, help_heading = "Storage")]
    pub sync_interval: Option<Duration>,
    /// Upper bound on noticing a dead peer, e.g. 10s [default: 10s]
    #[arg(long, value_name = "DURATION", env = "SWARMSTORE_LIVENESS", value_parser = parse_duration, help_heading = "Durability")]
    pub liveness: Option<Duration>,
    /// How often roots check that every block has R live holders [default: 10s]
    #[arg(long, value_name = "DURATION", env = "SWARMSTORE_REPAIR_INTERVAL", value_parser = parse_duration, help_heading = "Durability")]
    pub repair_interval: Option<Duration>,
    /// Bandwidth repair copies may use, e.g. 64M (per second) [default: 64M]
    #[arg(long, value_name = "BYTES", env = "SWARMSTORE_REPAIR_BANDWIDTH", value_parser = parse_bytes, help_heading = "Durability")]
    pub repair_bandwidth: Option<u64>,
    /// On SIGTERM/Ctrl-C, hand records and block copies to other nodes before exiting.
    #[arg(long, env = "SWARMSTORE_DRAIN", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL", help_heading = "Durability")]
    pub drain: Option<bool>,
    #[command(flatten)]
    pub balance: BalanceSettings,
    /// Serve an S3-compatible API on this address, e.g. 127.0.0.1:9000 (path-style requests,
    /// SigV4-signed with keys from `swarmstore s3-key create`).
    #[arg(
        long,
        value_name = "ADDR",
        env = "SWARMSTORE_S3",
        help_heading = "Front doors"
    )]
    pub s3: Option<std::net::SocketAddr>,
    /// Serve a plain HTTP gateway on this address, e.g. 127.0.0.1:8080: GET /b/BUCKET/KEY of
    /// public-read buckets (Range, ETag), HTML indexes, and S3 presigned URLs.
    #[arg(
        long,
        value_name = "ADDR",
        env = "SWARMSTORE_GATEWAY",
        help_heading = "Front doors"
    )]
    pub gateway: Option<std::net::SocketAddr>,
    /// Check the store (every block's hash, every record's signature) and exit.
    #[arg(long)]
    pub check: bool,
}

impl NodeArgs {
    /// The flags (and environment) as a settings layer.
    fn settings(&self) -> NodeSettings {
        NodeSettings {
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            bootstrap: self.bootstrap.clone(),
            external_addr: self.external_addr.clone(),
            no_mdns: self.no_mdns,
            replication: self.replication,
            capacity: self.capacity,
            keep_versions: self.keep_versions,
            gc_grace: self.gc_grace,
            sync_interval: self.sync_interval,
            liveness: self.liveness,
            repair_interval: self.repair_interval,
            repair_bandwidth: self.repair_bandwidth,
            drain: self.drain,
            relay_server: self.relay_server,
            autonat_server: self.autonat_server,
            swarm_key: self.swarm_key.clone(),
            metrics: self.metrics,
            s3: self.s3,
            gateway: self.gateway,
            balance: self.balance.clone(),
        }
    }

    /// The settings in force: the config file, then environment and flags over it.
    pub fn merged(&self) -> anyhow::Result<NodeSettings> {
        let file = match &self.config {
            Some(path) => NodeSettings::from_file(path)?,
            None => NodeSettings::default(),
        };
        Ok(file.overlay(self.settings()))
    }

    /// The node to run: defaults, then the config file, then environment and flags.
    pub fn node_config(&self) -> anyhow::Result<NodeConfig> {
        Ok(self.merged()?.into_config(identity::default_data_dir())?)
    }
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
    /// Where the first node serves its dashboard (and /metrics); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    pub dashboard: std::net::SocketAddr,
    /// Emulate nodes of different speeds: node i serves at most --bandwidth times the i-th
    /// multiplier (cycled), e.g. 1x,3x,10x. Use with --bandwidth (without it the base is 100M).
    #[arg(long, value_delimiter = ',', value_name = "Nx,...", value_parser = workload::parse_capacity)]
    pub capacities: Vec<f64>,
    /// Drive reads against the swarm: zipf or zipf:S (file popularity exponent S, default 1).
    /// Prints per-node load per interval with peak/mean.
    #[arg(long, value_name = "zipf[:S]", value_parser = parse_workload, help_heading = "Workload")]
    pub workload: Option<f64>,
    /// Files the workload reads (uploaded first).
    #[arg(long, default_value_t = 16, help_heading = "Workload")]
    pub files: usize,
    /// Size of each workload file, e.g. 256K.
    #[arg(long, default_value = "256K", value_parser = parse_bytes, help_heading = "Workload")]
    pub file_size: u64,
    /// Gets per second offered, all readers together.
    #[arg(long, default_value_t = 60.0, help_heading = "Workload")]
    pub rate: f64,
    /// How long the workload runs [default: until Ctrl-C]; with --compare, per mode.
    #[arg(long, value_parser = parse_duration, help_heading = "Workload")]
    pub duration: Option<Duration>,
    /// Run the workload on a fresh swarm with the planner off, then on, and print both.
    #[arg(long, help_heading = "Workload")]
    pub compare: bool,
    #[command(flatten)]
    pub balance: BalanceSettings,
}

pub async fn run_node(args: NodeArgs, json: bool) -> anyhow::Result<()> {
    if args.check {
        let data_dir = args
            .merged()?
            .data_dir
            .unwrap_or_else(identity::default_data_dir);
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
    let settings = args.merged()?;
    let drain = settings.drain.unwrap_or(false);
    let config = args.node_config()?;
    let data_dir = config.data_dir.clone();
    let swarm_key = config.swarm_key;
    let node = Node::start(config).await?;
    let mut own = node.addr();
    if !own
        .iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
    {
        own.push(libp2p::multiaddr::Protocol::P2p(node.peer_id()));
    }
    // The front doors report each answered request to the node's metrics.
    let metrics = node.metrics().clone();
    let observe: crate::gateway::Observer =
        std::sync::Arc::new(move |api, op, code, took| metrics.observe_http(api, op, code, took));
    let s3 = match settings.s3 {
        Some(addr) => {
            let s3 =
                crate::gateway::serve_s3(addr, own.clone(), swarm_key, &data_dir, observe.clone())
                    .await?;
            node.add_front_door("s3", s3.addr);
            Some(s3)
        }
        None => None,
    };
    let gateway = match settings.gateway {
        Some(addr) => {
            let gw =
                crate::gateway::serve_gateway(addr, own, swarm_key, &data_dir, observe).await?;
            node.add_front_door("gateway", gw.addr);
            Some(gw)
        }
        None => None,
    };
    if json {
        print_json(&serde_json::json!({
            "peer": node.peer_id().to_string(),
            "addrs": node.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "data_dir": data_dir,
            "metrics": node.metrics_addr().map(|a| format!("http://{a}/metrics")),
            "s3": s3.as_ref().map(|s| format!("http://{}", s.addr)),
            "gateway": gateway.as_ref().map(|s| format!("http://{}", s.addr)),
        }))?;
    } else {
        println!("swarmstore node {}", node.peer_id());
        for a in node.listen_addrs() {
            println!("  listening on {a}");
        }
        println!("  data in {}", data_dir.display());
        if let Some(a) = node.metrics_addr() {
            println!("  metrics at http://{a}/metrics");
        }
        if let Some(s) = &s3 {
            println!("  S3 API at http://{}", s.addr);
        }
        if let Some(g) = &gateway {
            println!("  HTTP gateway at http://{}/b/BUCKET/KEY", g.addr);
        }
    }
    wait_for_signal().await;
    drop((s3, gateway));
    if drain {
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
    if args.compare {
        let cfg = BenchConfig {
            nodes: args.nodes,
            replication: args.replication,
            files: args.files,
            file_size: args.file_size as usize,
            zipf: args.workload.unwrap_or(1.0),
            rate: args.rate,
            report_interval: args.balance.effective().report_interval,
            bandwidth: args.balance.effective().bandwidth,
            // An explicit --bandwidth is a cap here too, as on every node.
            capacities: if args.capacities.is_empty() && args.balance.bandwidth.is_some() {
                vec![1.0]
            } else {
                args.capacities.clone()
            },
            hold: Duration::from_millis(args.balance.effective().policy.hold_ms),
            duration: args.duration.unwrap_or(Duration::from_secs(30)),
            verbose: !json,
            ..BenchConfig::default()
        };
        let (off, on) = workload::compare(&cfg).await?;
        print!("{}", workload::table(&cfg, &off, &on));
        if off.mismatches + on.mismatches > 0 {
            anyhow::bail!("gets returned wrong bytes");
        }
        return Ok(());
    }
    let (base, _cleanup) = match args.base_dir.clone() {
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
            .replication(args.replication)
            .metrics((i == 0).then_some(args.dashboard));
        let mut config = args.balance.apply(config);
        if let Some(cap) = workload::capacity_of(i, config.balance.bandwidth, &args.capacities) {
            config = config.bandwidth(cap).serve_limit(Some(cap));
        }
        nodes.push(Node::start(config).await?);
    }
    let first = nodes[0].addr();
    let dashboard = nodes[0]
        .metrics_addr()
        .map(|a| format!("http://{a}/"))
        .unwrap_or_default();
    std::fs::write(base.join("node.addr"), format!("{first}\n"))?;
    let want = args.nodes - 1;
    for n in &nodes {
        n.wait_for_peers(want, Duration::from_secs(10)).await;
    }
    if json {
        print_json(&serde_json::json!({
            "base_dir": base,
            "replication": args.replication,
            "dashboard": dashboard,
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
            match n.serve_limit() {
                Some(cap) => println!(
                    "  node {i:<3} {}  (serves ≤ {}/s)",
                    n.addr(),
                    human_bytes(cap)
                ),
                None => println!("  node {i:<3} {}", n.addr()),
            }
        }
        println!();
        println!("Dashboard: {dashboard}");
        println!();
        println!("Try, in another terminal:");
        println!("  export SWARMSTORE_NODE={first}");
        println!("  swarmstore put README.md");
        println!("  swarmstore stat README.md");
        println!("  swarmstore get README.md -o /tmp/README.copy");
        println!();
        println!("Ctrl-C stops the swarm.");
    }
    if let Some(s) = args.workload {
        run_workload(&nodes, &args, s).await?;
    } else {
        wait_for_signal().await;
    }
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

#[derive(Args, Debug)]
pub struct SwarmKeyArgs {
    /// Write the key to this file (refuses to overwrite) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Prints (or writes) a fresh pre-shared key for a private swarm.
pub fn run_swarm_key(args: SwarmKeyArgs) -> anyhow::Result<()> {
    let key = crate::net::new_swarm_key();
    match args.out {
        None => print!("{key}"),
        Some(path) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            f.write_all(key.as_bytes())?;
        }
    }
    Ok(())
}

/// Uploads the workload's files, then reads them Zipf(s) until Ctrl-C or `--duration`,
/// printing per-node load per interval.
async fn run_workload(nodes: &[Node], args: &DevnetArgs, s: f64) -> anyhow::Result<()> {
    use libp2p::identity::Keypair;
    let writer = crate::Client::connect(nodes[0].addr(), Keypair::generate_ed25519()).await?;
    let files =
        workload::populate(&writer, "workload", args.files, args.file_size as usize, 7).await?;
    let mut clients = Vec::new();
    for node in nodes.iter().take(4) {
        clients.push(crate::Client::connect(node.addr(), Keypair::generate_ed25519()).await?);
    }
    println!(
        "workload: {} files of {}, Zipf {s}, {} gets/s; per-node load in MB/s every {:?}",
        args.files,
        human_bytes(args.file_size),
        args.rate,
        args.balance.effective().report_interval * 2
    );
    let run = workload::Workload::start(clients, files, s, args.rate, 11);
    let mut sampler = workload::LoadSampler::new(nodes);
    let started = std::time::Instant::now();
    let mut every = tokio::time::interval(args.balance.effective().report_interval * 2);
    every.tick().await;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = every.tick() => {
                let loads = sampler.sample(nodes);
                println!("{}", workload::format_loads(started.elapsed().as_secs_f64(), &loads));
                if args.duration.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
            }
            _ = &mut signal => break,
        }
    }
    let stats = run.stop().await;
    let ordering = std::sync::atomic::Ordering::Relaxed;
    println!(
        "{} gets, {} errors, {} with wrong bytes",
        stats.gets.load(ordering),
        stats.errors.load(ordering),
        stats.mismatches.load(ordering)
    );
    if stats.mismatches.load(ordering) > 0 {
        anyhow::bail!("gets returned wrong bytes");
    }
    Ok(())
}
