//! Group commit of index page changes, and a short cache of bucket records: what lets one
//! client (an S3 front door, say) put many objects at once without its own page writes
//! conflicting with each other.
//!
//! Changes to one page queue up; whoever holds the page's lock reads the page once, applies
//! every queued change and publishes one new version, so N concurrent puts into one page cost
//! one or two page writes instead of N compare-and-set rounds. A change stays queued until
//! the write that applied it succeeded, so a writer dropped half-way (its request cancelled)
//! loses nothing: the next one applies the change again, and changes are idempotent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::index::Page;
use super::BucketInfo;

/// A change to a page; says whether it changed anything.
pub type Change = Arc<dyn Fn(&mut Page) -> bool + Send + Sync>;

/// How long a bucket's record is trusted without reading it again. Only its owner changes
/// it (create, delete), and this client forgets it when it does so itself.
const BUCKET_TTL: Duration = Duration::from_secs(10);
/// Entries kept before the maps are trimmed.
const MAX_ENTRIES: usize = 4096;

/// Per-client bucket state.
#[derive(Default)]
pub struct BucketState {
    slots: Mutex<HashMap<String, Arc<PageSlot>>>,
    buckets: Mutex<HashMap<String, (Instant, BucketInfo)>>,
}

/// One page's queue and writer lock.
#[derive(Default)]
pub struct PageSlot {
    pub lock: tokio::sync::Mutex<()>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    next: u64,
    pending: BTreeMap<u64, Change>,
    /// Outcomes of applied tickets whose submitters have not looked yet.
    done: HashMap<u64, Result<(), String>>,
}

impl BucketState {
    /// The queue of page `name`.
    pub fn slot(&self, name: &str) -> Arc<PageSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_ENTRIES {
            // Drop the idle ones (only the map holds them).
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        slots.entry(name.to_string()).or_default().clone()
    }

    pub fn cached(&self, bucket: &str) -> Option<BucketInfo> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .get(bucket)
            .filter(|(at, _)| at.elapsed() < BUCKET_TTL)
            .map(|(_, info)| info.clone())
    }

    pub fn remember(&self, info: &BucketInfo) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_ENTRIES {
            buckets.retain(|_, (at, _)| at.elapsed() < BUCKET_TTL);
        }
        buckets.insert(info.name.clone(), (Instant::now(), info.clone()));
    }

    pub fn forget(&self, bucket: &str) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.remove(bucket);
    }
}

impl PageSlot {
    /// Queues a change; returns its ticket.
    pub fn submit(&self, change: Change) -> u64 {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = q.next;
        q.next += 1;
        q.pending.insert(ticket, change);
        ticket
    }

    /// The outcome of `ticket` if a write already applied it.
    pub fn outcome(&self, ticket: u64) -> Option<Result<(), String>> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.done.remove(&ticket)
    }

    /// Every queued change, oldest first (they stay queued until [`Self::finish`]).
    pub fn batch(&self) -> Vec<(u64, Change)> {
        let q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.pending.iter().map(|(t, c)| (*t, c.clone())).collect()
    }

    /// Records the outcome of a write that applied `tickets` (`me` is the writer's own,
    /// which it returns itself).
    pub fn finish(&self, tickets: &[u64], me: u64, outcome: &Result<(), String>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.done.len() >= MAX_ENTRIES {
            // Submitters that went away never collect theirs.
            q.done.clear();
        }
        for t in tickets {
            q.pending.remove(t);
            if *t != me {
                q.done.insert(*t, outcome.clone());
            }
        }
    }
}
