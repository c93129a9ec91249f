//! Prometheus metrics: swarmstore's own counters ([`Metrics`], shared by every part of a node
//! through its `Ctx`), served with the dashboard by the admin endpoint (`super::admin`).
//!
//! Every metric is an atomic, so recording never takes a lock and scraping never touches the
//! event loop. libp2p's own metrics (`libp2p-metrics`, recorded by the event loop) live in the
//! same registry under `libp2p_`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::protocol::block::BlockRequest;
use crate::protocol::client::ClientRequest;
use crate::protocol::gossip::Decision;
use crate::protocol::meta::MetaRequest;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `client`, `meta` or `block`.
    pub protocol: &'static str,
    /// The request variant, e.g. `put_block`, `fetch`, `publish`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `block` (one block placed on or read from holders) or `record` (publish or fetch).
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabels {
    /// Which bounded in-memory map, e.g. `view_blocks`, `decision_history`.
    pub map: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `s3` or `gateway`.
    pub api: &'static str,
    /// The S3 operation (`PutObject`, `ListObjectsV2`, ...), the gateway's own (`get`,
    /// `head`, `index`), or `unknown` for a request refused before it was identified (a bad
    /// signature, an unparsable request).
    pub op: &'static str,
    /// The HTTP status answered.
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpOpLabels {
    pub api: &'static str,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

type Histograms = Family<StageLabels, Histogram, fn() -> Histogram>;
type HttpHistograms = Family<HttpOpLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// swarmstore's own metrics. Cheap to clone (each metric is an `Arc` of atomics); increment
/// from anywhere.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Blocks in this node's store (refreshed at every scrape).
    pub blocks_stored: Gauge,
    /// Bytes of block data in this node's store (refreshed at every scrape).
    pub bytes_stored: Gauge,
    /// Inbound requests this node served, by protocol and kind.
    pub requests_served: Family<RequestLabels, Counter>,
    /// Bytes of blocks this node served to readers (what `--bandwidth` caps).
    pub block_bytes_served: Counter,
    /// Reads refused because the serving cap was booked too far ahead.
    pub serve_busy: Counter,
    /// Access-node time to serve a client's put: `block` (placing one block on R holders) and
    /// `record` (publishing the record to a majority of the replica set).
    pub put_latency: Histograms,
    /// Access-node time to serve a client's get: `record` (reading the replica set) and
    /// `block` (fetching and verifying one block from a holder).
    pub get_latency: Histograms,
    /// Block copies the repair loop still has to make this round (sampled at every scrape).
    pub repair_queue: Gauge,
    /// Blocks below R good holders at the last repair round (sampled).
    pub blocks_under_replicated: Gauge,
    /// Blocks with no good holder left at the last repair round (sampled).
    pub blocks_lost: Gauge,
    /// This node's current smoothed load score. Set by the balancer.
    pub load_score: Gauge<f64, AtomicU64>,
    /// Term of the manager this node currently follows. Set by the election.
    pub manager_term: Gauge,
    /// Balancer decisions this node applied, by kind. Incremented by the balancer.
    pub decisions_applied: Family<KindLabels, Counter>,
    /// Input refused (forged, oversized, unauthorized, ...), by cause.
    pub refused: Family<KindLabels, Counter>,
    /// Live storage peers this node sees.
    pub live_peers: Gauge,
    /// What AutoNAT found: 0 unknown, 1 private (reachable only through relays), 2 public.
    pub reachability: Gauge,
    /// Bytes the allocator has handed out and not had back (sampled at every scrape; 0 where
    /// the platform cannot say). Beside the resident size it tells a leak from fragmentation.
    pub heap_in_use: Gauge,
    /// Bytes the allocator holds from the system, in use or free (sampled).
    pub heap_held: Gauge,
    /// Entries in each bounded map of balancing (sampled): a soak shows each reach its bound
    /// and stay, where the heap alone shows only a sum.
    pub map_entries: Family<MapLabels, Gauge>,
    /// Requests the S3 API and the HTTP gateway answered, by api, operation and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Time from a request's head to its response's head (a streamed body's transfer is the
    /// client's pace, not ours), by api and operation.
    pub http_latency: HttpHistograms,
    /// Totals for `status` (all, 4xx, 5xx) of the S3 API and of the gateway: the family
    /// above has no cheap sum.
    http_s3: [Counter; 3],
    http_gateway: [Counter; 3],
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            blocks_stored: Gauge::default(),
            bytes_stored: Gauge::default(),
            requests_served: Family::default(),
            block_bytes_served: Counter::default(),
            serve_busy: Counter::default(),
            put_latency: Family::new_with_constructor(latency_histogram),
            get_latency: Family::new_with_constructor(latency_histogram),
            repair_queue: Gauge::default(),
            blocks_under_replicated: Gauge::default(),
            blocks_lost: Gauge::default(),
            load_score: Gauge::default(),
            manager_term: Gauge::default(),
            decisions_applied: Family::default(),
            refused: Family::default(),
            live_peers: Gauge::default(),
            reachability: Gauge::default(),
            heap_in_use: Gauge::default(),
            heap_held: Gauge::default(),
            map_entries: Family::default(),
            http_requests: Family::default(),
            http_latency: Family::new_with_constructor(latency_histogram),
            http_s3: Default::default(),
            http_gateway: Default::default(),
        }
    }
}

/// Label values created up front, so every series shows (at 0) before its first event.
const REQUEST_KINDS: &[(&str, &[&str])] = &[
    ("client", ClientRequest::KINDS),
    ("meta", MetaRequest::KINDS),
    ("block", BlockRequest::KINDS),
];

impl Metrics {
    /// Registers every metric under the `swarmstore_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        for (protocol, kinds) in REQUEST_KINDS {
            for kind in *kinds {
                let _ = self
                    .requests_served
                    .get_or_create(&RequestLabels { protocol, kind });
            }
        }
        for stage in ["block", "record", "holder"] {
            let _ = self.put_latency.get_or_create(&StageLabels { stage });
            let _ = self.get_latency.get_or_create(&StageLabels { stage });
        }
        for kind in Decision::KINDS {
            let _ = self.decisions_applied.get_or_create(&KindLabels {
                kind: kind.to_string(),
            });
        }
        let r = registry.sub_registry_with_prefix("swarmstore");
        r.register(
            "blocks_stored",
            "Blocks in this node's store",
            self.blocks_stored.clone(),
        );
        r.register(
            "bytes_stored",
            "Bytes of block data in this node's store",
            self.bytes_stored.clone(),
        );
        r.register(
            "requests_served",
            "Inbound requests served, by protocol and kind",
            self.requests_served.clone(),
        );
        r.register(
            "block_bytes_served",
            "Bytes of blocks served to readers",
            self.block_bytes_served.clone(),
        );
        r.register(
            "serve_busy",
            "Reads refused because the serving cap (--bandwidth) was booked too far ahead",
            self.serve_busy.clone(),
        );
        r.register(
            "put_latency_seconds",
            "Access-node time to store one block (stage=block) or publish a record (stage=record)",
            self.put_latency.clone(),
        );
        r.register(
            "get_latency_seconds",
            "Access-node time to read a record (stage=record) or fetch one block (stage=block)",
            self.get_latency.clone(),
        );
        r.register(
            "repair_queue",
            "Block copies the repair loop still has to make this round",
            self.repair_queue.clone(),
        );
        r.register(
            "blocks_under_replicated",
            "Blocks below R good holders at the last repair round",
            self.blocks_under_replicated.clone(),
        );
        r.register(
            "blocks_lost",
            "Blocks with no good holder left at the last repair round",
            self.blocks_lost.clone(),
        );
        r.register(
            "load_score",
            "This node's current smoothed load score",
            self.load_score.clone(),
        );
        r.register(
            "manager_term",
            "Term of the manager this node follows",
            self.manager_term.clone(),
        );
        r.register(
            "decisions_applied",
            "Balancer decisions applied, by kind",
            self.decisions_applied.clone(),
        );
        r.register(
            "refused",
            "Input refused from peers and clients, by cause",
            self.refused.clone(),
        );
        r.register(
            "live_peers",
            "Live storage peers this node sees",
            self.live_peers.clone(),
        );
        r.register(
            "reachability",
            "AutoNAT result: 0 unknown, 1 private (relay only), 2 public",
            self.reachability.clone(),
        );
        r.register(
            "heap_in_use_bytes",
            "Bytes the allocator has handed out and not had back",
            self.heap_in_use.clone(),
        );
        r.register(
            "heap_held_bytes",
            "Bytes the allocator holds from the system, in use or free",
            self.heap_held.clone(),
        );
        r.register(
            "map_entries",
            "Entries in each bounded in-memory map of balancing",
            self.map_entries.clone(),
        );
        r.register(
            "http_requests",
            "Requests the S3 API and the HTTP gateway answered, by api, op and status code",
            self.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "S3 API and gateway time from request head to response head, by api and op",
            self.http_latency.clone(),
        );
    }

    /// Records one answered S3 or gateway request.
    pub fn observe_http(&self, api: &'static str, op: &'static str, code: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels { api, op, code })
            .inc();
        self.http_latency
            .get_or_create(&HttpOpLabels { api, op })
            .observe(took.as_secs_f64());
        let t = if api == "s3" {
            &self.http_s3
        } else {
            &self.http_gateway
        };
        t[0].inc();
        match code {
            400..=499 => t[1].inc(),
            500..=599 => t[2].inc(),
            _ => 0,
        };
    }

    /// Requests answered by `api` so far: all, and those answered 4xx and 5xx.
    pub fn http_totals(&self, api: &str) -> (u64, u64, u64) {
        let t = if api == "s3" {
            &self.http_s3
        } else {
            &self.http_gateway
        };
        (t[0].get(), t[1].get(), t[2].get())
    }

    pub fn served(&self, protocol: &'static str, kind: &'static str) {
        self.requests_served
            .get_or_create(&RequestLabels { protocol, kind })
            .inc();
    }

    /// Records how long the access node took for a client request, in the put or get
    /// histogram it belongs to (status requests are not timed).
    pub fn observe_client(&self, kind: &'static str, took: Duration) {
        let (family, stage) = match kind {
            "put_block" => (&self.put_latency, "block"),
            "publish" => (&self.put_latency, "record"),
            "fetch" => (&self.get_latency, "record"),
            "get_block" => (&self.get_latency, "block"),
            _ => return,
        };
        family
            .get_or_create(&StageLabels { stage })
            .observe(took.as_secs_f64());
    }

    /// Records how long this node took to store or serve one block for any peer (clients
    /// read and write blocks straight from holders, so this is where block latency lives).
    pub fn observe_block(&self, kind: &'static str, took: Duration) {
        let family = match kind {
            // A chained put's time includes the rest of the chain: what its sender waits.
            "put" | "put-chain" => &self.put_latency,
            "get" => &self.get_latency,
            _ => return,
        };
        family
            .get_or_create(&StageLabels { stage: "holder" })
            .observe(took.as_secs_f64());
    }

    pub fn decision_applied(&self, kind: &str) {
        self.decisions_applied
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
    }
}

/// The allocator's own account of this process's heap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapUsage {
    /// Handed out and not freed: what the program holds.
    pub in_use: u64,
    /// Taken from the system, in use or free: what the allocator holds.
    pub held: u64,
}

/// glibc's totals over all arenas and its large mappings; `None` on other platforms.
pub fn heap_usage() -> Option<HeapUsage> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters (under its arena locks) and
        // returns them by value.
        let m = unsafe { libc::mallinfo2() };
        let mapped = m.hblkhd as u64;
        Some(HeapUsage {
            in_use: (m.uordblks as u64).saturating_add(mapped),
            held: (m.arena as u64).saturating_add(mapped),
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}
