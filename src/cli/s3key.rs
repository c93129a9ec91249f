//! `s3-key create | list | revoke`: the access keys a node's S3 API accepts, in its data dir.
//! Run beside the node (it re-reads the key file when it changes).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output::print_json;
use crate::gateway::KeyStore;
use crate::identity;
use crate::units::utc_time;

#[derive(Args, Debug)]
pub struct S3KeyArgs {
    #[command(subcommand)]
    pub command: S3KeyCommand,
    /// The node's data dir [default: the platform data dir].
    #[arg(long, value_name = "DIR", env = "SWARMSTORE_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum S3KeyCommand {
    /// Make a key; prints its id and secret (the secret is shown only now).
    Create {
        /// A label to tell keys apart.
        #[arg(long)]
        name: Option<String>,
        /// The client identity the key acts as (owns what it writes) [default: this user's
        /// client identity].
        #[arg(long, value_name = "FILE", env = "SWARMSTORE_IDENTITY")]
        identity: Option<PathBuf>,
    },
    /// List keys (never their secrets).
    List,
    /// Delete a key: requests signed with it are refused from then on.
    Revoke { access_key: String },
}

pub fn run(args: S3KeyArgs, json: bool) -> anyhow::Result<()> {
    let dir = args.data_dir.unwrap_or_else(identity::default_data_dir);
    let store = KeyStore::new(&dir);
    match args.command {
        S3KeyCommand::Create { name, identity: id } => {
            let path = id.unwrap_or_else(identity::default_client_identity);
            let key = identity::load_or_create(&path)?;
            let owner = key.public().to_peer_id();
            let (access_key, secret) = store.create(&key, name.as_deref().unwrap_or(""))?;
            if json {
                return print_json(&serde_json::json!({
                    "access_key": access_key, "secret_key": secret, "owner": owner.to_string(),
                }));
            }
            println!("access key  {access_key}");
            println!("secret key  {secret}");
            println!("acts as     {owner}");
        }
        S3KeyCommand::List => {
            let keys = store.list()?;
            if json {
                return print_json(&keys);
            }
            for k in keys {
                println!(
                    "{}  {}  {}  {}",
                    k.access_key,
                    utc_time(k.created_ms),
                    k.owner,
                    k.label
                );
            }
        }
        S3KeyCommand::Revoke { access_key } => {
            if !store.revoke(&access_key)? {
                anyhow::bail!("no access key {access_key} in {}", dir.display());
            }
            if json {
                return print_json(
                    &serde_json::json!({ "access_key": access_key, "revoked": true }),
                );
            }
            println!("revoked {access_key}");
        }
    }
    Ok(())
}
