//! `share`, `unshare`, `cap` and `whoami`: who may read a private file.

use clap::Args;
use libp2p::PeerId;

use super::files::{connect, settings};
use super::output::print_json;
use super::AccessArgs;

#[derive(Args, Debug)]
pub struct ShareArgs {
    /// Name of a private file you own.
    pub name: String,
    /// The reader's client peer id (the reader prints it with `swarmstore whoami`).
    #[arg(long, value_name = "PEER_ID")]
    pub to: PeerId,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct UnshareArgs {
    /// Name of a private file you own.
    pub name: String,
    /// The reader to drop.
    #[arg(long, value_name = "PEER_ID")]
    pub from: PeerId,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct CapArgs {
    /// Name of a private file you can read.
    pub name: String,
    /// A capability for this version only (default: the newest version).
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub access: AccessArgs,
}

/// Prints this client's peer id (what an owner shares to); no network.
pub fn whoami(args: WhoamiArgs, json: bool) -> anyhow::Result<()> {
    let settings = settings(&args.access)?;
    let path = args
        .access
        .identity
        .clone()
        .or(settings.identity)
        .unwrap_or_else(crate::identity::default_client_identity);
    let peer = crate::identity::load_or_create(&path)?
        .public()
        .to_peer_id();
    if json {
        return print_json(&serde_json::json!({
            "peer_id": peer.to_string(), "identity": path.display().to_string(),
        }));
    }
    println!("{peer}");
    Ok(())
}

pub async fn share(args: ShareArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    let version = client.share(&args.name, &args.to).await?;
    if json {
        return print_json(
            &serde_json::json!({ "name": args.name, "version": version, "to": args.to.to_string() }),
        );
    }
    println!(
        "shared {:?} with {} (version {version})",
        args.name, args.to
    );
    Ok(())
}

pub async fn unshare(args: UnshareArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    let (outcome, cap) = client.unshare(&args.name, &args.from).await?;
    let cap = cap.to_secret_string();
    if json {
        return print_json(&serde_json::json!({
            "name": outcome.name, "version": outcome.version, "capability": cap,
        }));
    }
    println!(
        "unshared {:?} from {}: version {} is sealed under a new key",
        outcome.name, args.from, outcome.version
    );
    println!("  what that reader already read, it keeps; earlier capabilities open no new version");
    println!("  new read capability (keep it secret):");
    println!("  {cap}");
    Ok(())
}

pub async fn cap(args: CapArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    let cap = client.capability(&args.name, args.version).await?;
    let s = cap.to_secret_string();
    if json {
        return print_json(
            &serde_json::json!({ "name": args.name, "version": cap.version(), "capability": s }),
        );
    }
    println!("{s}");
    Ok(())
}
