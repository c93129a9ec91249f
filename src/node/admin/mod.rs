//! The admin endpoint (`--metrics ADDR`): `/metrics` (Prometheus text), `/health`, the
//! dashboard at `/` and the JSON it reads under `/api/` ([`api`]).
//!
//! Read-only: GET and HEAD only, no action that changes the node. Everything it answers comes
//! from state the node already keeps (atomics, the balance state's mutex, the store on the
//! blocking pool), never from the event loop, so a scrape answers while the node is busy
//! moving data. Only `/api/file` reads over the network (a quorum read, as `stat` does),
//! bounded by a timeout.
//!
//! The HTTP side is hand-rolled (one request per connection, a bounded head) rather than hyper
//! or axum: it serves a handful of fixed paths to a scraper and a browser, and a web framework
//! would be the largest dependency in the tree. The S3 and gateway servers, which speak the
//! full protocol to arbitrary clients, are another matter.

mod api;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::Ctx;

/// The page, embedded: no CDN, works offline and behind a firewall.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The longest request head read; anything longer is refused.
const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` and serves until the returned task is aborted. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ctx: Arc<Ctx>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::debug!("admin endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let registry = registry.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &registry, &ctx).await {
                    tracing::debug!("admin endpoint: {e}");
                }
            });
        }
    });
    Ok((bound, task))
}

/// One response: status line, content type, body.
pub(super) struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: &'static str, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }

    fn json(status: &'static str, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status, "application/json", body),
            Err(e) => Self::new(
                "500 Internal Server Error",
                "text/plain",
                format!("cannot encode: {e}\n"),
            ),
        }
    }

    fn not_found() -> Self {
        Self::json(
            "404 Not Found",
            &serde_json::json!({
                "error": "no such path",
                "paths": ["/", "/metrics", "/health", "/api/status", "/api/history",
                          "/api/decisions", "/api/file?name=NAME"],
            }),
        )
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry, ctx: &Arc<Ctx>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            let r = Reply::new("431 Request Header Fields Too Large", "text/plain", "");
            return respond(&mut stream, r, false).await;
        }
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let r = Reply::new("405 Method Not Allowed", "text/plain", "GET or HEAD only\n");
        return respond(&mut stream, r, false).await;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let reply = route(path, query, registry, ctx).await;
    respond(&mut stream, reply, head_only).await
}

async fn route(path: &str, query: &str, registry: &Registry, ctx: &Arc<Ctx>) -> Reply {
    match path {
        "/" | "/index.html" => Reply::new("200 OK", "text/html; charset=utf-8", DASHBOARD),
        "/metrics" => {
            refresh_gauges(ctx);
            let mut body = String::new();
            if prometheus_client::encoding::text::encode(&mut body, registry).is_err() {
                return Reply::new("500 Internal Server Error", "text/plain", "");
            }
            Reply::new(
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            )
        }
        "/health" => {
            if ctx.net.is_running() {
                Reply::new("200 OK", "text/plain", "serving\n")
            } else {
                Reply::new("503 Service Unavailable", "text/plain", "stopped\n")
            }
        }
        p if p.starts_with("/api/") => api::route(&p[5..], query, ctx).await,
        _ => Reply::not_found(),
    }
}

/// Gauges that are sampled rather than counted (store sizes), set before a scrape.
fn refresh_gauges(ctx: &Ctx) {
    let m = &ctx.metrics;
    m.blocks_stored.set(ctx.store.blocks.count() as i64);
    m.bytes_stored.set(ctx.store.blocks.used_bytes() as i64);
    m.live_peers.set(ctx.peers.live_peers().len() as i64);
    let repair = ctx.repair.snapshot();
    m.repair_queue.set(repair.queue as i64);
    m.blocks_under_replicated
        .set(repair.under_replicated as i64);
    m.blocks_lost.set(repair.lost as i64);
    let heap = super::metrics::heap_usage().unwrap_or_default();
    m.heap_in_use
        .set(i64::try_from(heap.in_use).unwrap_or(i64::MAX));
    m.heap_held
        .set(i64::try_from(heap.held).unwrap_or(i64::MAX));
    let peers = ("peers", ctx.peers.len());
    for (map, n) in ctx.balance.map_sizes().into_iter().chain([peers]) {
        m.map_entries
            .get_or_create(&super::metrics::MapLabels { map })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

async fn respond(stream: &mut TcpStream, r: Reply, head_only: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(&r.body).await?;
    }
    stream.shutdown().await
}

/// The value of `key` in a query string, percent-decoded (`+` is a space).
pub(super) fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_and_decoded() {
        assert_eq!(
            query_param("a=1&name=dir%2Fmy+file%zz&x", "name").as_deref(),
            Some("dir/my file%zz")
        );
        assert_eq!(query_param("x", "x").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "b"), None);
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%41%"), "A%");
    }
}
