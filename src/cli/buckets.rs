//! `mb`, `rb` and `ls`: buckets and listing. Objects go in and out with `put`, `get`, `stat`
//! and `rm` given `--bucket`.

use clap::Args;

use super::files::connect;
use super::output::print_json;
use super::AccessArgs;
use crate::client::bucket::{ListQuery, Listing};
use crate::client::BucketOptions;
use crate::units::{human_bytes, utc_time};

#[derive(Args, Debug)]
pub struct MbArgs {
    /// Bucket name: 3 to 63 lowercase letters, digits, '.' and '-'.
    pub bucket: String,
    /// Index pages: a listing reads all of them, a write one; more pages for buckets of many
    /// millions of keys keep each page small.
    #[arg(long, default_value_t = crate::client::bucket::index::DEFAULT_SHARDS)]
    pub pages: u16,
    /// Anyone may read and list it (the HTTP gateway serves it without a signature).
    #[arg(long)]
    pub public_read: bool,
    /// Its objects are sealed on the client, readable by the owner.
    #[arg(long, conflicts_with = "public_read")]
    pub private: bool,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct RbArgs {
    /// The bucket to delete (it must be empty).
    pub bucket: String,
    #[command(flatten)]
    pub access: AccessArgs,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// BUCKET or BUCKET/PREFIX; without it, your buckets.
    pub target: Option<String>,
    /// Every key under the prefix, not rolled up into "folders" at '/'.
    #[arg(long, short)]
    pub recursive: bool,
    /// Stop after this many keys and folders.
    #[arg(long, value_name = "N")]
    pub max_keys: Option<usize>,
    #[command(flatten)]
    pub access: AccessArgs,
}

pub async fn mb(args: MbArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    let opts = BucketOptions {
        shards: args.pages,
        public_read: args.public_read,
        private: args.private,
    };
    let info = client.create_bucket(&args.bucket, opts).await?;
    if json {
        return print_json(&info);
    }
    println!(
        "made bucket {} ({} index pages)",
        info.name, info.meta.shards
    );
    Ok(())
}

pub async fn rb(args: RbArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    client.delete_bucket(&args.bucket).await?;
    if json {
        return print_json(&serde_json::json!({ "bucket": args.bucket, "deleted": true }));
    }
    println!("removed bucket {}", args.bucket);
    Ok(())
}

pub async fn ls(args: LsArgs, json: bool) -> anyhow::Result<()> {
    let client = connect(&args.access).await?;
    let Some(target) = &args.target else {
        let buckets = client.list_buckets().await?;
        if json {
            let list: Vec<_> = buckets
                .iter()
                .map(|(name, at)| serde_json::json!({ "name": name, "created_ms": at }))
                .collect();
            return print_json(&list);
        }
        for (name, at) in buckets {
            println!("{}  {name}", utc_time(at));
        }
        return Ok(());
    };
    let (bucket, prefix) = match target.split_once('/') {
        Some((b, p)) => (b, p),
        None => (target.as_str(), ""),
    };
    let mut query = ListQuery {
        prefix: prefix.to_string(),
        delimiter: (!args.recursive).then(|| "/".to_string()),
        after: None,
        max_keys: crate::client::bucket::index::MAX_LIST_KEYS,
    };
    let limit = args.max_keys.unwrap_or(usize::MAX);
    let mut all = Listing::default();
    loop {
        let room = limit.saturating_sub(all.objects.len() + all.common_prefixes.len());
        if room == 0 {
            break;
        }
        query.max_keys = query.max_keys.min(room);
        let page = client.list_objects(bucket, &query).await?;
        all.objects.extend(page.objects);
        all.common_prefixes.extend(page.common_prefixes);
        match page.next_after {
            Some(after) => query.after = Some(after),
            None => break,
        }
    }
    if json {
        return print_json(&serde_json::json!({
            "bucket": bucket,
            "prefix": prefix,
            "objects": all.objects,
            "common_prefixes": all.common_prefixes,
        }));
    }
    for p in &all.common_prefixes {
        println!("{:>19}  {:>10}  {p}", "", "PRE");
    }
    for o in &all.objects {
        println!(
            "{}  {:>10}  {}",
            utc_time(o.modified_ms),
            human_bytes(o.size),
            o.key
        );
    }
    Ok(())
}
