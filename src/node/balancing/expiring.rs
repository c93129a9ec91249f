//! A map whose entries expire by age, for the balancing caches (names of hot blocks and
//! files, decisions already started, copies found unlisted).
//!
//! These caches used to be cleared only when they reached a few thousand entries, so in a
//! swarm whose hot set keeps changing each grew for hours before its first clear (the soak's
//! gauges showed them rising for the whole run). Expired entries are now swept every
//! [`SWEEP_EVERY`] inserts, so a map holds about what arrived within its age; the hard cap
//! still bounds a burst (past it the map starts again: forgetting costs a lookup or a
//! repeated skip, never correctness).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Inserts between sweeps of expired entries.
const SWEEP_EVERY: u32 = 64;

pub(super) struct Expiring<K, V> {
    map: HashMap<K, (V, Instant)>,
    max_age: Duration,
    cap: usize,
    since_sweep: u32,
}

impl<K: Eq + Hash, V> Expiring<K, V> {
    pub(super) fn new(max_age: Duration, cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            max_age,
            cap: cap.max(1),
            since_sweep: 0,
        }
    }

    /// Inserts or refreshes `key`; whether it was absent (or expired).
    pub(super) fn insert(&mut self, key: K, value: V) -> bool {
        self.insert_at(key, value, Instant::now())
    }

    fn insert_at(&mut self, key: K, value: V, now: Instant) -> bool {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY || self.map.len() >= self.cap {
            self.since_sweep = 0;
            let max_age = self.max_age;
            self.map
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < max_age);
            if self.map.len() >= self.cap {
                self.map.clear();
            }
        }
        let fresh = !self.contains_at(&key, now);
        self.map.insert(key, (value, now));
        fresh
    }

    /// The value of `key`, unless it has expired.
    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &K, now: Instant) -> Option<&V> {
        self.map
            .get(key)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.max_age)
            .map(|(v, _)| v)
    }

    fn contains_at(&self, key: &K, now: Instant) -> bool {
        self.get_at(key, now).is_some()
    }

    pub(super) fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn remove(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Entries held, expired ones not yet swept included (what the memory gauge reports).
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_are_swept_and_the_cap_holds() {
        let t0 = Instant::now();
        let mut m: Expiring<u32, ()> = Expiring::new(Duration::from_secs(10), 1000);
        assert!(m.insert_at(1, (), t0));
        assert!(!m.insert_at(1, (), t0), "present: not new");
        assert!(m.get_at(&1, t0 + Duration::from_secs(9)).is_some());
        assert!(
            m.get_at(&1, t0 + Duration::from_secs(10)).is_none(),
            "expired"
        );
        assert!(
            m.insert_at(1, (), t0 + Duration::from_secs(11)),
            "new again once expired"
        );
        // A steady stream of new keys: the map holds about what arrived within its age, far
        // below the cap.
        let mut max = 0;
        for i in 0..10_000u32 {
            m.insert_at(100 + i, (), t0 + Duration::from_millis(u64::from(i) * 100));
            max = max.max(m.len());
        }
        assert!(max <= 100 + SWEEP_EVERY as usize + 1, "held {max}");
        // A burst: never past the cap.
        let mut burst: Expiring<u32, ()> = Expiring::new(Duration::from_secs(3600), 50);
        for i in 0..500 {
            burst.insert_at(i, (), t0);
            assert!(burst.len() <= 50);
        }
        assert!(burst.contains_at(&499, t0), "the newest stays");
    }
}
