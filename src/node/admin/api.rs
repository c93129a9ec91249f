//! The dashboard's JSON, under `/api/`. Field names are stable (README documents them):
//!
//! * `status`: what `swarmstore status --json` prints (the node, its store, its peers, repair,
//!   balance with the manager, per-node load and the latest decisions, refusals);
//! * `history?since=MS`: the load ring (`samples`: per-node load and utilisation each report
//!   interval, with the swarm's peak and mean) and the manager's `terms`;
//! * `decisions?kind=K&limit=N`: the newest decisions first, optionally of one kind;
//! * `file?name=NAME`: a file's record as a quorum read finds it (version, size, blocks with
//!   holders and extra replicas, root, replicas, delegate). The users who downloaded it are
//!   left out: they are for the owner to see, and this endpoint has no owner.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{query_param, Reply};
use crate::ids::{validate_name, FileKey};
use crate::node::balancing::history::{Sample, Term, WINDOW};
use crate::node::{access, quorum, Ctx};
use crate::protocol::status::DecisionRow;
use crate::record::now_ms;

/// Most decisions one answer lists (the view keeps 512).
const MAX_DECISIONS: usize = 512;
/// How long a file lookup may take before it answers 504.
const FILE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn route(path: &str, query: &str, ctx: &Arc<Ctx>) -> Reply {
    match path {
        "status" => Reply::json("200 OK", &access::status(ctx).await),
        "history" => history(ctx, query),
        "decisions" => decisions(ctx, query),
        "file" => file(ctx, query).await,
        _ => Reply::not_found(),
    }
}

#[derive(Serialize)]
struct History {
    peer: libp2p::PeerId,
    now_ms: u64,
    interval_ms: u64,
    window_s: u64,
    manager: Option<libp2p::PeerId>,
    term: u64,
    samples: Vec<Sample>,
    terms: Vec<Term>,
}

fn history(ctx: &Arc<Ctx>, query: &str) -> Reply {
    let since = query_param(query, "since")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (samples, terms) = ctx.balance.history(since);
    let manager = ctx.balance.manager();
    Reply::json(
        "200 OK",
        &History {
            peer: ctx.local,
            now_ms: now_ms(),
            interval_ms: ctx.balance.config.report_interval.as_millis() as u64,
            window_s: WINDOW.as_secs(),
            manager: manager.map(|m| m.0),
            term: manager.map(|m| m.1).unwrap_or(0),
            samples,
            terms,
        },
    )
}

#[derive(Serialize)]
struct Decisions {
    decisions: Vec<DecisionRow>,
}

fn decisions(ctx: &Arc<Ctx>, query: &str) -> Reply {
    let limit = query_param(query, "limit")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(100)
        .min(MAX_DECISIONS);
    let kind = query_param(query, "kind").filter(|k| !k.is_empty());
    let decisions = ctx
        .balance
        .decision_rows(MAX_DECISIONS)
        .into_iter()
        .filter(|d| {
            kind.as_deref()
                .is_none_or(|k| d.kind.eq_ignore_ascii_case(k))
        })
        .take(limit)
        .collect();
    Reply::json("200 OK", &Decisions { decisions })
}

#[derive(Serialize)]
struct FileView {
    name: String,
    key: FileKey,
    root: libp2p::PeerId,
    replicas: Vec<libp2p::PeerId>,
    version: u64,
    size: u64,
    block_size: u32,
    owner: libp2p::PeerId,
    deleted: bool,
    inline: bool,
    versions: Vec<u64>,
    created_ms: u64,
    modified_ms: u64,
    blocks: Vec<BlockView>,
    delegate: Option<libp2p::PeerId>,
}

#[derive(Serialize)]
struct BlockView {
    id: String,
    len: u32,
    holders: Vec<libp2p::PeerId>,
    extras: Vec<libp2p::PeerId>,
}

async fn file(ctx: &Arc<Ctx>, query: &str) -> Reply {
    let Some(name) = query_param(query, "name") else {
        return Reply::json(
            "400 Bad Request",
            &serde_json::json!({"error": "say which file: /api/file?name=NAME"}),
        );
    };
    if let Err(e) = validate_name(&name) {
        return Reply::json("400 Bad Request", &serde_json::json!({ "error": e }));
    }
    let read = tokio::time::timeout(FILE_TIMEOUT, quorum::read_state(ctx, &name, None)).await;
    let (root, replicas, state) = match read {
        Err(_) => {
            return Reply::json(
                "504 Gateway Timeout",
                &serde_json::json!({"error": "the file's replica set did not answer in time"}),
            )
        }
        Ok(Err(e)) => {
            return Reply::json(
                "502 Bad Gateway",
                &serde_json::json!({ "error": e.to_string() }),
            )
        }
        Ok(Ok(None)) => {
            return Reply::json(
                "404 Not Found",
                &serde_json::json!({ "error": format!("no file named {name}") }),
            )
        }
        Ok(Ok(Some(found))) => found,
    };
    let Some(head) = state.head() else {
        return Reply::json(
            "404 Not Found",
            &serde_json::json!({ "error": format!("no file named {name}") }),
        );
    };
    let key = FileKey::for_name(&name);
    let (blocks, delegate) = {
        let st = ctx.balance.state();
        let blocks = head
            .blocks
            .iter()
            .map(|b| BlockView {
                id: b.id.to_hex(),
                len: b.len,
                holders: b.holders.clone(),
                extras: if b.is_inline() {
                    Vec::new()
                } else {
                    st.view.extras_of(&b.id)
                },
            })
            .collect();
        (blocks, st.view.delegate_of(&key, now_ms(), |_| true))
    };
    Reply::json(
        "200 OK",
        &FileView {
            name: head.name.clone(),
            key,
            root,
            replicas,
            version: head.version,
            size: head.size,
            block_size: head.block_size,
            owner: head.owner,
            deleted: head.tombstone,
            inline: head.blocks.iter().any(|b| b.is_inline()),
            versions: state.versions.iter().map(|r| r.version).collect(),
            created_ms: head.created_ms,
            modified_ms: head.modified_ms,
            blocks,
            delegate,
        },
    )
}
