//! Load measurement: what a node served, smoothed once per report interval.
//!
//! Handlers call [`LoadMeter::block_served`] and [`LoadMeter::record_read`] on the serving path
//! (an atomic add and a short map update). Every interval [`LoadMeter::sample`] turns the
//! counts into rates and smooths them with an asymmetric EWMA, fast up and slow down ("attack
//! fast, release slow", as in the simulator): a flash crowd is seen within one round, while
//! relief is undone only once heat stays low. Only the hottest blocks and files go into a
//! report; rates that decay below a floor are forgotten so idle nodes report exactly zero.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use super::config::META_COST;
use crate::ids::{BlockId, FileKey};

/// EWMA weight of a sample above the smoothed value, and below it.
pub const ALPHA_UP: f64 = 0.8;
pub const ALPHA_DOWN: f64 = 0.5;
/// Smoothed rates under this many work units/s always count as zero (a few bytes of trickle
/// must not keep a cold replica alive, nor an idle node look busy). A meter may raise it.
const FLOOR: f64 = 64.0;

pub fn smooth(prev: Option<f64>, x: f64) -> f64 {
    smooth_to(prev, x, FLOOR)
}

/// [`smooth`] with a floor of `floor` work units/s.
pub fn smooth_to(prev: Option<f64>, x: f64, floor: f64) -> f64 {
    let s = match prev {
        Some(p) => {
            let a = if x > p { ALPHA_UP } else { ALPHA_DOWN };
            a * x + (1.0 - a) * p
        }
        None => x,
    };
    if s < floor.max(FLOOR) {
        0.0
    } else {
        s
    }
}

#[derive(Default)]
struct Window {
    blocks: HashMap<BlockId, u64>,
    sizes: HashMap<BlockId, u64>,
    files: HashMap<FileKey, u64>,
}

#[derive(Default)]
struct Smoothed {
    load: Option<f64>,
    meta_rps: Option<f64>,
    block_rps: Option<f64>,
    block_bps: Option<f64>,
    blocks: HashMap<BlockId, f64>,
    sizes: HashMap<BlockId, u64>,
    files: HashMap<FileKey, f64>,
}

/// Counters on the serving path plus the smoothing state.
#[derive(Default)]
pub struct LoadMeter {
    block_reqs: AtomicU64,
    block_bytes: AtomicU64,
    meta_reqs: AtomicU64,
    inflight: AtomicI64,
    /// Block requests timed this window (arrival to data ready), and their summed delay.
    delay_reqs: AtomicU64,
    delay_us: AtomicU64,
    /// The quickest of them (`u64::MAX` when none).
    delay_min_us: AtomicU64,
    /// Totals since start (never reset), for status and tests.
    total_blocks: AtomicU64,
    total_block_bytes: AtomicU64,
    total_meta: AtomicU64,
    window: Mutex<Window>,
    smoothed: Mutex<Smoothed>,
    /// Work units/s below which a smoothed load or heat reads as zero.
    floor: f64,
}

/// One interval's smoothed figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub load: f64,
    pub meta_rps: f64,
    pub block_rps: f64,
    pub block_bps: f64,
    pub inflight: u32,
    /// This window alone (not smoothed): work units served per second, and the mean
    /// serving delay of blocks in seconds over `delay_reqs` timed requests (for `capacity`).
    pub window_load: f64,
    pub mean_delay: f64,
    pub min_delay: f64,
    pub delay_reqs: u64,
    /// Hottest blocks (with their size) and files, hottest first, in work units/s.
    pub hot_blocks: Vec<(BlockId, f64, u64)>,
    pub hot_files: Vec<(FileKey, f64)>,
}

/// Keeps `inflight` right however the handler exits.
pub struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Totals since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Served {
    pub blocks: u64,
    pub block_bytes: u64,
    pub record_reads: u64,
}

impl LoadMeter {
    /// A meter for a node serving `bandwidth` work units/s: anything under 1% of that is
    /// noise, so after a burst ends the node reads idle within a few rounds (and the extra
    /// replicas made for the burst can go).
    pub fn new(bandwidth: f64) -> Self {
        Self {
            floor: (bandwidth / 100.0).max(FLOOR),
            delay_min_us: AtomicU64::new(u64::MAX),
            ..Self::default()
        }
    }

    /// Marks a request as being served until the guard drops.
    pub fn begin(&self) -> InFlight<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.inflight)
    }

    pub fn block_served(&self, id: BlockId, bytes: u64) {
        self.block_reqs.fetch_add(1, Ordering::Relaxed);
        self.block_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.total_blocks.fetch_add(1, Ordering::Relaxed);
        self.total_block_bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        *w.blocks.entry(id).or_insert(0) += bytes;
        w.sizes.insert(id, bytes);
    }

    /// How long a block request took from arrival to its data being ready (the wait for a
    /// serving slot and the read): the queueing signal `capacity` learns from.
    pub fn block_delay(&self, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.delay_reqs.fetch_add(1, Ordering::Relaxed);
        self.delay_us.fetch_add(us, Ordering::Relaxed);
        self.delay_min_us.fetch_min(us, Ordering::Relaxed);
    }

    pub fn record_read(&self, key: FileKey) {
        self.meta_reqs.fetch_add(1, Ordering::Relaxed);
        self.total_meta.fetch_add(1, Ordering::Relaxed);
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        *w.files.entry(key).or_insert(0) += 1;
    }

    pub fn served(&self) -> Served {
        Served {
            blocks: self.total_blocks.load(Ordering::Relaxed),
            block_bytes: self.total_block_bytes.load(Ordering::Relaxed),
            record_reads: self.total_meta.load(Ordering::Relaxed),
        }
    }

    /// A block's smoothed heat as of the last sample (0 once it decayed below the floor).
    pub fn heat_of(&self, id: &BlockId) -> f64 {
        let s = self.smoothed.lock().unwrap_or_else(|p| p.into_inner());
        s.blocks.get(id).copied().unwrap_or(0.0)
    }

    /// Closes the current window of `secs` seconds and returns the smoothed figures, keeping
    /// the `top_blocks` / `top_files` hottest items.
    pub fn sample(&self, secs: f64, top_blocks: usize, top_files: usize) -> Sample {
        let secs = secs.max(1e-3);
        let block_reqs = self.block_reqs.swap(0, Ordering::Relaxed) as f64 / secs;
        let block_bytes = self.block_bytes.swap(0, Ordering::Relaxed) as f64 / secs;
        let meta_reqs = self.meta_reqs.swap(0, Ordering::Relaxed) as f64 / secs;
        let delay_reqs = self.delay_reqs.swap(0, Ordering::Relaxed);
        let delay_us = self.delay_us.swap(0, Ordering::Relaxed);
        let mean_delay = delay_us as f64 / 1e6 / delay_reqs.max(1) as f64;
        let min_delay = match self.delay_min_us.swap(u64::MAX, Ordering::Relaxed) {
            u64::MAX => 0.0,
            us => us as f64 / 1e6,
        };
        let window = std::mem::take(&mut *self.window.lock().unwrap_or_else(|p| p.into_inner()));
        let mut s = self.smoothed.lock().unwrap_or_else(|p| p.into_inner());
        let f = self.floor;
        let load = smooth_to(s.load, block_bytes + META_COST * meta_reqs, f);
        s.load = Some(load);
        let meta_rps = smooth(s.meta_rps.map(|x| x * META_COST), meta_reqs * META_COST) / META_COST;
        s.meta_rps = Some(meta_rps);
        let block_rps = smooth(s.block_rps.map(|x| x * 1e6), block_reqs * 1e6) / 1e6;
        s.block_rps = Some(block_rps);
        let block_bps = smooth_to(s.block_bps, block_bytes, f);
        s.block_bps = Some(block_bps);
        s.blocks = decay(std::mem::take(&mut s.blocks), window.blocks, secs, 1.0, f);
        s.sizes.extend(window.sizes);
        let Smoothed { blocks, sizes, .. } = &mut *s;
        sizes.retain(|id, _| blocks.contains_key(id));
        s.files = decay(
            std::mem::take(&mut s.files),
            window.files,
            secs,
            META_COST,
            f,
        );
        Sample {
            load,
            meta_rps,
            block_rps,
            block_bps,
            inflight: self.inflight.load(Ordering::Relaxed).max(0) as u32,
            window_load: block_bytes + META_COST * meta_reqs,
            mean_delay,
            min_delay,
            delay_reqs,
            hot_blocks: top(&s.blocks, top_blocks)
                .into_iter()
                .map(|(id, h)| (id, h, s.sizes.get(&id).copied().unwrap_or(0)))
                .collect(),
            hot_files: top(&s.files, top_files),
        }
    }
}

/// Smooths every item seen now or before; items that decayed to zero are forgotten.
fn decay<K: std::hash::Hash + Eq + Copy>(
    prev: HashMap<K, f64>,
    seen: HashMap<K, u64>,
    secs: f64,
    unit: f64,
    floor: f64,
) -> HashMap<K, f64> {
    let mut out = HashMap::with_capacity(prev.len().max(seen.len()));
    for (k, p) in &prev {
        let x = seen.get(k).copied().unwrap_or(0) as f64 * unit / secs;
        let s = smooth_to(Some(*p), x, floor);
        if s > 0.0 {
            out.insert(*k, s);
        }
    }
    for (k, n) in seen {
        if !prev.contains_key(&k) {
            let s = smooth_to(None, n as f64 * unit / secs, floor);
            if s > 0.0 {
                out.insert(k, s);
            }
        }
    }
    out
}

/// The `k` largest entries, largest first; ties by key so reports are deterministic.
fn top<K: Ord + Copy>(map: &HashMap<K, f64>, k: usize) -> Vec<(K, f64)> {
    let mut v: Vec<(K, f64)> = map.iter().map(|(k, h)| (*k, *h)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_rises_fast_and_falls_slowly_to_exactly_zero() {
        let up = smooth(Some(0.0), 1000.0);
        assert_eq!(up, 800.0);
        let down = smooth(Some(1000.0), 0.0);
        assert_eq!(down, 500.0);
        let mut x = 1e6;
        let mut rounds = 0;
        while x > 0.0 {
            x = smooth(Some(x), 0.0);
            rounds += 1;
            assert!(rounds < 100, "never reaches zero");
        }
    }

    #[test]
    fn rates_and_hot_items_come_from_one_window() {
        let m = LoadMeter::default();
        let hot = BlockId([1; 32]);
        let cold = BlockId([2; 32]);
        for _ in 0..10 {
            m.block_served(hot, 1000);
        }
        m.block_served(cold, 1000);
        m.record_read(FileKey([9; 32]));
        let s = m.sample(2.0, 1, 4);
        assert_eq!(s.block_bps, 5500.0);
        assert_eq!(s.block_rps, 5.5);
        assert_eq!(s.meta_rps, 0.5);
        assert_eq!(s.load, 5500.0 + 0.5 * META_COST);
        assert_eq!(s.hot_blocks, vec![(hot, 5000.0, 1000)]);
        assert_eq!(s.hot_files, vec![(FileKey([9; 32]), 0.5 * META_COST)]);
        assert_eq!(m.served().blocks, 11);
        // Nothing served next round: the figures decay, the totals stay.
        let s2 = m.sample(2.0, 4, 4);
        assert_eq!(s2.block_bps, 2750.0);
        assert_eq!(s2.hot_blocks[0], (hot, 2500.0, 1000));
        assert_eq!(m.served().blocks, 11);
    }

    #[test]
    fn a_meter_reads_idle_below_one_percent_of_its_bandwidth() {
        let m = LoadMeter::new(1_000_000.0);
        m.block_served(BlockId([1; 32]), 100_000);
        assert_eq!(m.sample(1.0, 4, 4).load, 100_000.0);
        let mut rounds = 0;
        while m.sample(1.0, 4, 4).load > 0.0 {
            rounds += 1;
        }
        assert_eq!(rounds, 3, "100k -> 50k -> 25k -> 12.5k -> below 10k");
        assert!(m.sample(1.0, 4, 4).hot_blocks.is_empty());
    }

    #[test]
    fn inflight_counts_requests_until_their_guard_drops() {
        let m = LoadMeter::default();
        let a = m.begin();
        let b = m.begin();
        drop(a);
        assert_eq!(m.sample(1.0, 0, 0).inflight, 1);
        drop(b);
        assert_eq!(m.sample(1.0, 0, 0).inflight, 0);
    }
}
