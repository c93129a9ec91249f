//! The `swarmstore` command line: a thin front on the library. Argument parsing lives here;
//! each group of commands has its own file. Errors are one line on stderr with a non-zero exit
//! code, never a panic.

mod buckets;
mod download;
mod files;
mod node;
mod output;
mod private;
mod s3key;
mod soak;
mod soak_report;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;

#[derive(Parser, Debug)]
#[command(
    name = "swarmstore",
    version,
    about = "A peer-to-peer file storage network on libp2p",
    long_about = "A peer-to-peer file storage network on libp2p.\n\n\
        Storage nodes form a Kademlia DHT and keep files as replicated, content-addressed blocks. \
        Clients put, get and stat files through an access node.\n\n\
        Quick start:  swarmstore devnet --nodes 5     (a local swarm in one process)\n\
        then:         swarmstore put FILE --node ADDR  (ADDR is printed by devnet)",
    after_help = "Exit codes: 0 ok, 1 error, 2 not found or deleted, 3 conflict or already exists, \
        4 permission denied or no read capability, 5 access node unreachable."
)]
pub struct Cli {
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a storage node.
    Node(Box<node::NodeArgs>),
    /// Publish a file.
    Put(files::PutArgs),
    /// Download a file.
    Get(files::GetArgs),
    /// Publish a new version of a file you own (only changed blocks are uploaded).
    Update(files::UpdateArgs),
    /// Delete a file you own (a signed tombstone; blocks are collected after a grace period).
    Rm(files::RmArgs),
    /// Show a file's record: version, size, blocks and holders, root, replicas, users.
    Stat(files::StatArgs),
    /// Let another client read a private file you own (a new version with its key wrapped to
    /// the reader).
    Share(private::ShareArgs),
    /// Stop sharing a private file: a new version under a new key, and a new capability.
    Unshare(private::UnshareArgs),
    /// Print a read capability for one version of a private file you can read.
    Cap(private::CapArgs),
    /// Print this client's peer id (what an owner passes to `share --to`).
    Whoami(private::WhoamiArgs),
    /// Make a bucket you own (a namespace of objects; see `put --bucket`).
    Mb(buckets::MbArgs),
    /// Remove an empty bucket you own.
    Rb(buckets::RbArgs),
    /// List your buckets, or a bucket's objects (folders rolled up at '/').
    Ls(buckets::LsArgs),
    /// Manage the access keys of a node's S3 API (in its data dir).
    S3Key(s3key::S3KeyArgs),
    /// Show the access node's view: its store and the peers it sees.
    Status(files::StatusArgs),
    /// Run the balancer simulator: our planner beside baselines, printed as a table.
    Sim(node::SimArgs),
    /// Run a local swarm of N nodes in one process (for demos and benchmarks).
    Devnet(node::DevnetArgs),
    /// Run node processes under a mixed workload with churn, sampling memory and descriptors.
    Soak(soak::SoakArgs),
    /// Print a new pre-shared key for a private swarm (use with `node --swarm-key FILE`).
    SwarmKey(node::SwarmKeyArgs),
}

/// How a client command finds its access node and identity.
#[derive(Args, Debug, Clone)]
pub struct AccessArgs {
    /// Access node multiaddr, ending in /p2p/<peer id>.
    #[arg(
        long,
        env = "SWARMSTORE_NODE",
        value_name = "MULTIADDR",
        help_heading = "Access node"
    )]
    pub node: Option<Multiaddr>,

    /// Data dir of a local node whose node.addr to use when --node is not given.
    #[arg(long, value_name = "DIR", help_heading = "Access node")]
    pub data_dir: Option<PathBuf>,

    /// Client identity key (created on first use).
    #[arg(
        long,
        env = "SWARMSTORE_IDENTITY",
        value_name = "FILE",
        help_heading = "Access node"
    )]
    pub identity: Option<PathBuf>,

    /// Swarm key of a private swarm (the file its nodes use).
    #[arg(
        long,
        env = "SWARMSTORE_SWARM_KEY",
        value_name = "FILE",
        help_heading = "Access node"
    )]
    pub swarm_key: Option<PathBuf>,

    /// Client config file with defaults for these settings and `private` (default:
    /// ~/.config/swarmstore/client.toml, if it exists).
    #[arg(
        long,
        env = "SWARMSTORE_CLIENT_CONFIG",
        value_name = "FILE",
        help_heading = "Access node"
    )]
    pub client_config: Option<PathBuf>,
}

/// The node `swarmstore node ARGS...` would run (`argv` without the program name), without
/// running it: how tests check that a config file and flags describe the same node.
pub fn node_config<I, T>(argv: I) -> anyhow::Result<crate::NodeConfig>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(
        std::iter::once(std::ffi::OsString::from("swarmstore"))
            .chain(std::iter::once("node".into()))
            .chain(argv.into_iter().map(Into::into)),
    )
    .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
    match cli.command {
        Command::Node(args) => args.node_config(),
        _ => anyhow::bail!("not a node command"),
    }
}

/// Parses arguments, runs the command, and returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let is_node = matches!(cli.command, Command::Node(_) | Command::Devnet(_));
    init_tracing(if is_node { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let json = cli.json;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Node(args) => node::run_node(*args, json).await,
            Command::Devnet(args) => node::run_devnet(args, json).await,
            Command::Sim(args) => node::run_sim(args),
            Command::Put(args) => files::put(args, json).await,
            Command::Get(args) => files::get(args, json).await,
            Command::Stat(args) => files::stat(args, json).await,
            Command::Update(args) => files::update(args, json).await,
            Command::Rm(args) => files::rm(args, json).await,
            Command::Status(args) => files::status(args, json).await,
            Command::Mb(args) => buckets::mb(args, json).await,
            Command::Rb(args) => buckets::rb(args, json).await,
            Command::Ls(args) => buckets::ls(args, json).await,
            Command::S3Key(args) => s3key::run(args, json),
            Command::Share(args) => private::share(args, json).await,
            Command::Unshare(args) => private::unshare(args, json).await,
            Command::Cap(args) => private::cap(args, json).await,
            Command::Whoami(args) => private::whoami(args, json),
            Command::SwarmKey(args) => node::run_swarm_key(args),
            Command::Soak(args) => soak::run_soak(args, json).await,
        }
    });
    // Let the clients' connections close (a QUIC node learns of an exit only this way).
    runtime.block_on(crate::client::wait_closed(
        std::time::Duration::from_millis(500),
    ));
    // Background tasks (connections, timers) must not hold the process open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => 0,
        Err(e) => {
            let code = e
                .downcast_ref::<crate::Error>()
                .map(crate::Error::exit_code)
                .unwrap_or(1);
            eprintln!("error: {}", one_line(&e));
            code
        }
    }
}

/// An error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
