//! `put`, `get` and `stat`: client commands against an access node.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use libp2p::Multiaddr;

use futures::StreamExt;

use super::download::{self, Sink};
use super::output::{print_json, progress_bar};
use super::AccessArgs;
use crate::client::seal::ContentKey;
use crate::client::{Capability, Client, FileInfo, GetOutcome, Progress};
use crate::client_config::{self, ClientSettings};
use crate::identity;
use crate::record::FileRecord;
use crate::units::human_bytes;

#[derive(Args, Debug)]
pub struct PutArgs {
    /// File to publish ("-" reads stdin).
    pub path: PathBuf,
    /// Name in the swarm (default: the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Encrypt on this client before anything leaves it: holders store only ciphertext; the
    /// owner reads it, and prints a read capability for others (a per-client default through
    /// SWARMSTORE_PRIVATE=true or `private = true` in the client config).
    #[arg(long, env = "SWARMSTORE_PRIVATE", conflicts_with = "plain")]
    pub private: bool,
    /// Store this file unencrypted even where the client config makes private the default.
    #[arg(long)]
    pub plain: bool,
    /// The name is an object key in this bucket (see `swarmstore mb` and `ls`).
    #[arg(long, short = 'b', value_name = "BUCKET")]
    pub bucket: Option<String>,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Name of the file in the swarm, or a read capability (swarmstore:cap:...).
    pub name: String,
    /// Where to write it ("-" for stdout; default: the name's last path component).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// An older retained version instead of the newest.
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// Sync the file and its directory to disk before reporting success (default: like curl
    /// and wget, leave it to the page cache; the file appears only complete either way).
    #[arg(long)]
    pub fsync: bool,
    /// The name is an object key in this bucket (see `swarmstore mb` and `ls`).
    #[arg(long, short = 'b', value_name = "BUCKET")]
    pub bucket: Option<String>,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct StatArgs {
    /// Name of the file in the swarm.
    pub name: String,
    /// The name is an object key in this bucket (see `swarmstore mb` and `ls`).
    #[arg(long, short = 'b', value_name = "BUCKET")]
    pub bucket: Option<String>,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Name of the file in the swarm.
    pub name: String,
    /// The new content ("-" reads stdin).
    pub path: PathBuf,
    /// Fail with a conflict unless the current version is N.
    #[arg(long, value_name = "N")]
    pub if_version: Option<u64>,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Name of the file in the swarm.
    pub name: String,
    /// Fail with a conflict unless the current version is N.
    #[arg(long, value_name = "N", conflicts_with = "bucket")]
    pub if_version: Option<u64>,
    /// The name is an object key in this bucket (see `swarmstore mb` and `ls`).
    #[arg(long, short = 'b', value_name = "BUCKET")]
    pub bucket: Option<String>,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub access: AccessArgs,
}

/// The client config file this command reads (see `client_config`).
pub fn settings(args: &AccessArgs) -> anyhow::Result<ClientSettings> {
    Ok(ClientSettings::load(args.client_config.as_deref())?)
}

/// `--node`, else `SWARMSTORE_NODE` (clap reads both), else the client config's `node`, else
/// the local node's address file.
pub fn access_addr(args: &AccessArgs, settings: &ClientSettings) -> anyhow::Result<Multiaddr> {
    if let Some(addr) = args.node.as_ref().or(settings.node.as_ref()) {
        return Ok(addr.clone());
    }
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(identity::default_data_dir);
    let file = dir.join("node.addr");
    match std::fs::read_to_string(&file) {
        Ok(s) => s
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a multiaddr", file.display())),
        Err(_) => anyhow::bail!(
            "no access node: pass --node MULTIADDR, set SWARMSTORE_NODE or `node` in {}, or \
             run a local node (it writes {})",
            client_config::default_path().display(),
            file.display()
        ),
    }
}

pub async fn connect(args: &AccessArgs) -> anyhow::Result<Client> {
    connect_with(args, &settings(args)?).await
}

pub async fn connect_with(args: &AccessArgs, settings: &ClientSettings) -> anyhow::Result<Client> {
    let addr = access_addr(args, settings)?;
    let id_path = args
        .identity
        .clone()
        .or_else(|| settings.identity.clone())
        .unwrap_or_else(identity::default_client_identity);
    let key = identity::load_or_create(&id_path)?;
    let swarm_key = args
        .swarm_key
        .as_deref()
        .or(settings.swarm_key.as_deref())
        .map(crate::net::read_swarm_key)
        .transpose()?;
    Ok(Client::connect_with(addr, key, swarm_key).await?)
}

pub async fn put(args: PutArgs, json: bool) -> anyhow::Result<()> {
    let stdin = args.path.as_os_str() == "-";
    let name = match (&args.name, stdin) {
        (Some(n), _) => n.clone(),
        (None, true) => anyhow::bail!("reading stdin needs --name NAME"),
        (None, false) => args
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("cannot derive a name from the path; pass --name")?,
    };
    let settings = settings(&args.access)?;
    // A bucket's objects are sealed or not as the bucket says.
    let private = args.bucket.is_none() && (args.private || (settings.private && !args.plain));
    if args.bucket.is_some() && args.private {
        anyhow::bail!("a bucket's objects are private when the bucket is (mb --private)");
    }
    let client = connect_with(&args.access, &settings).await?;
    let put = |reader, progress| async {
        if let Some(bucket) = &args.bucket {
            let meta = crate::client::ObjectMeta::default();
            let (outcome, _) = client
                .put_object(bucket, &name, reader, meta, progress)
                .await?;
            Ok((outcome, None))
        } else if private {
            let (outcome, cap) = client.put_private(&name, reader, progress).await?;
            Ok::<_, crate::Error>((outcome, Some(cap)))
        } else {
            Ok((client.put(&name, reader, progress).await?, None))
        }
    };
    let (outcome, cap) = if stdin {
        let stdin: Box<dyn tokio::io::AsyncRead + Unpin + Send> = Box::new(tokio::io::stdin());
        put(stdin, None).await?
    } else {
        let (reader, bar, progress) = open_upload(&args.path, json, "put").await?;
        let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = Box::new(reader);
        let outcome = put(reader, progress).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        outcome?
    };
    if json {
        #[derive(serde::Serialize)]
        struct Put<'a> {
            #[serde(flatten)]
            outcome: &'a crate::client::PutOutcome,
            #[serde(skip_serializing_if = "Option::is_none")]
            capability: Option<String>,
        }
        return print_json(&Put {
            outcome: &outcome,
            capability: cap.map(|c| c.to_secret_string()),
        });
    }
    println!(
        "put {:?}: version {}, {} in {} blocks",
        outcome.name,
        outcome.version,
        human_bytes(outcome.size),
        outcome.blocks
    );
    println!("  key   {}", outcome.key);
    println!("  root  {}", outcome.root);
    if let Some(cap) = cap {
        println!("  private: sealed on this client; read capability (keep it secret):");
        println!("  {}", cap.to_secret_string());
    }
    if outcome.under_replicated > 0 {
        eprintln!(
            "warning: {} blocks reached fewer holders than the replication target; the swarm \
             will repair them as peers join",
            outcome.under_replicated
        );
    }
    Ok(())
}

pub async fn get(mut args: GetArgs, json: bool) -> anyhow::Result<()> {
    let cap = if Capability::looks_like(&args.name) {
        let cap: Capability = args.name.parse()?;
        args.name = cap.name().to_string();
        args.version = args.version.or(cap.version());
        Some(cap)
    } else {
        None
    };
    let client = connect(&args.access).await?;
    let key_name = args.name.clone();
    if let Some(bucket) = &args.bucket {
        args.name = client.object_file(bucket, &args.name).await?;
    }
    let record = client.record_for_get(&args.name, args.version).await?;
    // A private file without a key fails here, before any file is created.
    let key = client.reader_key(&record, cap.as_ref())?;
    let to_stdout = args.output.as_deref() == Some(Path::new("-"));
    if to_stdout {
        let sink = Sink::new(Box::new(std::io::stdout()))?;
        let outcome = download(&client, &record, key, sink, None, false).await?;
        if json {
            eprintln!("{}", serde_json::to_string(&outcome)?);
        }
        return Ok(());
    }
    let dest = match &args.output {
        Some(p) => p.clone(),
        None => PathBuf::from(
            Path::new(&key_name)
                .file_name()
                .context("cannot derive an output path from the name; pass -o PATH")?,
        ),
    };
    let tmp = temp_path_for(&dest);
    let result = async {
        let sink =
            Sink::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let (bar, progress) = progress_bar(record.plain_size(), json, "get");
        let outcome = download(&client, &record, key, sink, progress, args.fsync).await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let outcome = outcome.with_context(|| format!("cannot write {}", tmp.display()))?;
        tokio::fs::rename(&tmp, &dest)
            .await
            .with_context(|| format!("cannot move the download to {}", dest.display()))?;
        if args.fsync {
            download::sync_dir_of(&dest)
                .with_context(|| format!("cannot sync the directory of {}", dest.display()))?;
        }
        anyhow::Ok(outcome)
    }
    .await;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if json {
        #[derive(serde::Serialize)]
        struct Got<'a> {
            #[serde(flatten)]
            outcome: &'a crate::client::GetOutcome,
            path: &'a Path,
        }
        return print_json(&Got {
            outcome: &outcome,
            path: &dest,
        });
    }
    println!(
        "got {:?} version {} ({}) -> {}",
        outcome.name,
        outcome.version,
        human_bytes(outcome.size),
        dest.display()
    );
    Ok(())
}

/// Opens a local file to upload, with a progress bar sized to it (on a terminal).
async fn open_upload(
    path: &Path,
    json: bool,
    verb: &str,
) -> anyhow::Result<(
    tokio::io::BufReader<tokio::fs::File>,
    Option<indicatif::ProgressBar>,
    Option<crate::client::Progress>,
)> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let total = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let (bar, progress) = progress_bar(total, json, verb);
    Ok((
        tokio::io::BufReader::with_capacity(1 << 20, file),
        bar,
        progress,
    ))
}

/// A hidden temp file beside `dest`, so the final rename stays on one filesystem.
/// Streams `record`'s blocks, verified, into `sink` (the transfer runs ahead of the writer
/// by the client's window plus the sink's queue), checking the total against the record.
async fn download(
    client: &Client,
    record: &FileRecord,
    key: Option<ContentKey>,
    mut sink: Sink,
    progress: Option<Progress>,
    fsync: bool,
) -> anyhow::Result<GetOutcome> {
    let mut blocks = std::pin::pin!(client.blocks_opened(record, key));
    let mut written: u64 = 0;
    while let Some(block) = blocks.next().await {
        let block = block?;
        let len = block.len() as u64;
        sink.write(block).await?;
        written = written.saturating_add(len);
        if let Some(p) = &progress {
            p(len);
        }
    }
    if written != record.plain_size() {
        anyhow::bail!(
            "integrity: got {written} bytes, the record says {}",
            record.plain_size()
        );
    }
    sink.finish(fsync).await?;
    Ok(GetOutcome::of(record))
}

fn temp_path_for(dest: &Path) -> PathBuf {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    dir.join(format!(".{name}.swarmstore-{}.tmp", std::process::id()))
}

pub async fn stat(args: StatArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    let name = match &args.bucket {
        Some(bucket) => client.object_file(bucket, &args.name).await?,
        None => args.name.clone(),
    };
    let info = client.stat(&name).await?;
    if json {
        return print_json(&info);
    }
    print_stat(&info)?;
    Ok(())
}

fn print_stat(info: &FileInfo) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "name      {}", info.name)?;
    writeln!(out, "key       {}", info.key)?;
    writeln!(
        out,
        "version   {}{}",
        info.version,
        if info.deleted { " (deleted)" } else { "" }
    )?;
    writeln!(out, "versions  {:?}", info.versions)?;
    writeln!(
        out,
        "size      {} ({} bytes, block size {})",
        human_bytes(info.size),
        info.size,
        human_bytes(u64::from(info.block_size))
    )?;
    if info.private {
        writeln!(
            out,
            "private   sealed on its owner's client; {} keys can open it (owner and \
             capability included)",
            info.readers
        )?;
    }
    writeln!(out, "owner     {}", info.owner)?;
    writeln!(out, "root      {}", info.root)?;
    for r in &info.replicas {
        writeln!(out, "replica   {r}")?;
    }
    if info.inline {
        writeln!(
            out,
            "blocks    {} (inline: kept in the record)",
            info.blocks.len()
        )?;
    } else {
        writeln!(out, "blocks    {}", info.blocks.len())?;
    }
    for (i, b) in info.blocks.iter().enumerate() {
        let holders: Vec<String> = b
            .holders
            .iter()
            .map(|h| short_peer(&h.to_string()))
            .collect();
        writeln!(
            out,
            "  {i:>5} {} {:>9}  {}",
            &b.id.to_hex()[..16],
            human_bytes(u64::from(b.len)),
            holders.join(" ")
        )?;
    }
    writeln!(out, "users     {}", info.users.len())?;
    for u in &info.users {
        writeln!(
            out,
            "  {:<10} {} count {} last {}",
            format!("{:?}", u.role).to_lowercase(),
            u.peer,
            u.count,
            u.at
        )?;
    }
    Ok(())
}

fn short_peer(p: &str) -> String {
    if p.len() > 12 {
        format!("…{}", &p[p.len() - 8..])
    } else {
        p.to_string()
    }
}

pub async fn status(args: StatusArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    let status = client.status().await?;
    if json {
        // Balancing fields at the top level: manager {peer, term}, nodes [...], decisions [...].
        let mut value = serde_json::to_value(&status)?;
        if let Some(obj) = value.as_object_mut() {
            if let Some(serde_json::Value::Object(b)) = obj.remove("balance") {
                for (k, v) in b {
                    let key = if obj.contains_key(&k) {
                        format!("balance_{k}")
                    } else {
                        k
                    };
                    obj.insert(key, v);
                }
            }
        }
        return print_json(&value);
    }
    println!("node      {}", status.peer);
    for a in &status.addrs {
        println!("  addr    {a}");
    }
    println!(
        "store     {} blocks, {}{}, {} records",
        status.blocks,
        human_bytes(status.used),
        status
            .capacity
            .map(|c| format!(" of {}", human_bytes(c)))
            .unwrap_or_default(),
        status.records
    );
    println!(
        "peers     {} (replication {})",
        status.peers.len(),
        status.replication
    );
    let r = &status.repair;
    println!(
        "repair    {} under-replicated, {} queued, {} lost; {} blocks ({}) repaired",
        r.under_replicated,
        r.queue,
        r.lost,
        r.repaired_blocks,
        human_bytes(r.repaired_bytes)
    );
    for p in &status.peers {
        let state = match (p.live, p.connected) {
            (true, true) => "connected",
            (true, false) => "known",
            (false, _) => "down",
        };
        println!("  {:<10} {}", state, p.peer);
    }
    for d in &status.front_doors {
        let name = if d.api == "s3" { "S3 API" } else { "gateway" };
        println!(
            "{:<9} http://{}: {} requests, {} refused (4xx), {} failed (5xx)",
            name, d.addr, d.requests, d.client_errors, d.server_errors
        );
    }
    print_balance(&status.balance);
    Ok(())
}

fn print_balance(b: &crate::protocol::status::BalanceStatus) {
    match &b.manager {
        Some(m) => println!(
            "manager   {} (term {}); this node: {}",
            m.peer, m.term, b.role
        ),
        None => println!(
            "manager   none known (term {}); this node: {}",
            b.term, b.role
        ),
    }
    if !b.nodes.is_empty() {
        println!(
            "  {:<14} {:>10} {:>6} {:>10} {:>10} {:>8} {:<9} {:>6}",
            "node", "load/s", "util", "used", "capacity", "zone", "role", "extras"
        );
        for n in &b.nodes {
            println!(
                "  {:<14} {:>10} {:>5.0}% {:>10} {:>10} {:>8} {:<9} {:>6}",
                short_peer(&n.peer.to_string()),
                human_bytes(n.load as u64),
                n.util * 100.0,
                human_bytes(n.used),
                human_bytes(n.capacity),
                n.zone.as_deref().unwrap_or("-"),
                n.role,
                n.extras
            );
        }
    }
    if !b.decisions.is_empty() {
        println!("decisions (newest first)");
        for d in b.decisions.iter().take(10) {
            println!(
                "  t{}#{} {:<14} {:<12} {} -> {}  {}",
                d.term,
                d.seq,
                d.kind,
                &d.object[..12.min(d.object.len())],
                d.from
                    .map(|p| short_peer(&p.to_string()))
                    .unwrap_or("-".into()),
                d.to.map(|p| short_peer(&p.to_string()))
                    .unwrap_or("-".into()),
                d.state
            );
        }
    }
    if !b.ignored.is_empty() {
        let parts: Vec<String> = b.ignored.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("ignored   {}", parts.join(", "));
    }
}

pub async fn update(args: UpdateArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    let outcome = if args.path.as_os_str() == "-" {
        client
            .update(&args.name, tokio::io::stdin(), args.if_version, None)
            .await?
    } else {
        let (reader, bar, progress) = open_upload(&args.path, json, "update").await?;
        let outcome = client
            .update(&args.name, reader, args.if_version, progress)
            .await;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        outcome?
    };
    if json {
        return print_json(&outcome);
    }
    println!(
        "updated {:?} to version {}: {} in {} blocks ({} new, {} reused)",
        outcome.name,
        outcome.version,
        human_bytes(outcome.size),
        outcome.blocks,
        outcome.new_blocks,
        outcome.reused_blocks
    );
    Ok(())
}

pub async fn rm(args: RmArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    if let Some(bucket) = &args.bucket {
        let gone = client.delete_object(bucket, &args.name).await?;
        if json {
            return print_json(&serde_json::json!({
                "bucket": bucket, "key": args.name, "version": gone, "deleted": gone.is_some()
            }));
        }
        match gone {
            Some(v) => println!("removed {bucket}/{} (tombstone version {v})", args.name),
            None => println!("{bucket}/{} was not there; nothing to remove", args.name),
        }
        return Ok(());
    }
    let version = client.remove(&args.name, args.if_version).await?;
    if json {
        return print_json(
            &serde_json::json!({ "name": args.name, "version": version, "deleted": true }),
        );
    }
    println!("removed {:?} (tombstone version {version})", args.name);
    Ok(())
}
