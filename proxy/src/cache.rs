//! A map whose entries go away once nothing else holds them for a while.
//!
//! The proxy keeps state per name it resolved, per upstream target and per
//! metric series; all three are keyed by things clients and service
//! discovery choose, so none may grow for ever. Each keeps its values here:
//! a value is shared as an `Arc`, and while anything outside the cache holds
//! it (a connection, a balancer, a request in flight) it is in use. Once only
//! the cache holds it, it is idle; idle for `retain_idle`, it is dropped, and
//! whatever it owned (a destination stream, pooled connections, a series)
//! goes with it. Asked for again, it is made anew.
//!
//! Holding is the signal, not last use, so the request path pays nothing
//! beyond the lookup: a read lock and a hash on a miss of the caller's own
//! per-connection cache, no write to shared state.

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::{Arc, RwLock, Weak},
    time::{Duration, Instant},
};

#[derive(Debug)]
pub(crate) struct IdleCache<K, V> {
    retain_idle: Duration,
    entries: RwLock<HashMap<K, Entry<V>>>,
}

#[derive(Debug)]
struct Entry<V> {
    value: Arc<V>,
    /// When a sweep first found it held only by the cache.
    idle_since: Option<Instant>,
}

impl<K: Hash + Eq, V> IdleCache<K, V> {
    pub(crate) fn new(retain_idle: Duration) -> Self {
        Self {
            retain_idle,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The value for `key`, if there is one.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.read().unwrap();
        entries.get(key).map(|e| e.value.clone())
    }

    /// The value for `key`, made by `make` if there is none.
    pub(crate) fn get_or_insert_with<Q>(&self, key: &Q, make: impl FnOnce(&Q) -> (K, V)) -> Arc<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(value) = self.get(key) {
            return value;
        }
        let mut entries = self.entries.write().unwrap();
        // Another caller may have made it between the two locks.
        if let Some(entry) = entries.get(key) {
            return entry.value.clone();
        }
        let (key, value) = make(key);
        let value = Arc::new(value);
        entries.insert(
            key,
            Entry {
                value: value.clone(),
                idle_since: None,
            },
        );
        value
    }

    /// Drops the entries idle for `retain_idle` as of `now`, and notes which
    /// ones became idle. Between sweeps an entry may be idle a little longer
    /// than `retain_idle`: sweeping every `retain_idle / N` bounds the excess.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let mut entries = self.entries.write().unwrap();
        let before = entries.len();
        entries.retain(|_, entry| {
            // Under the write lock nobody can take a new reference, so a
            // count of one means nothing outside holds it.
            if Arc::strong_count(&entry.value) > 1 {
                entry.idle_since = None;
                return true;
            }
            let since = *entry.idle_since.get_or_insert(now);
            now.saturating_duration_since(since) < self.retain_idle
        });
        // A map keeps the table of its largest size: after a burst of
        // names, that is most of what the burst cost.
        let len = entries.len();
        if entries.capacity() > 64 && len * 4 < entries.capacity() {
            entries.shrink_to(len * 2);
        }
        before - len
    }

    /// The values as of now, for encoding metrics without holding the lock
    /// the request path takes. Weak, so that reading them does not count as
    /// holding them: a value a scrape is walking can still go idle.
    pub(crate) fn values(&self) -> Vec<Weak<V>> {
        let entries = self.entries.read().unwrap();
        entries.values().map(|e| Arc::downgrade(&e.value)).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.read().unwrap().len()
    }
}

/// How often to sweep a cache that keeps idle entries for `retain_idle`:
/// often enough that an entry outlives its idleness by a quarter at most,
/// rarely enough that sweeping costs nothing worth measuring.
pub(crate) fn sweep_interval(retain_idle: Duration) -> Duration {
    (retain_idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> IdleCache<String, u32> {
        IdleCache::new(Duration::from_secs(10))
    }

    #[test]
    fn a_value_is_made_once_and_shared() {
        let cache = cache();
        let mut made = 0;
        let a = cache.get_or_insert_with("a", |k| {
            made += 1;
            (k.to_string(), 1)
        });
        let b = cache.get_or_insert_with("a", |k| {
            made += 1;
            (k.to_string(), 2)
        });
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((made, *b), (1, 1));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn an_unheld_value_goes_once_idle_for_the_retention() {
        let cache = cache();
        let t0 = Instant::now();
        drop(cache.get_or_insert_with("a", |k| (k.to_string(), 1)));
        assert_eq!(cache.sweep(t0), 0, "the first sweep only notes it idle");
        assert_eq!(cache.sweep(t0 + Duration::from_secs(9)), 0);
        assert!(cache.get("a").is_some());
        assert_eq!(cache.sweep(t0 + Duration::from_secs(10)), 1);
        assert!(cache.get("a").is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn a_held_value_stays_and_its_idleness_restarts_when_let_go() {
        let cache = cache();
        let t0 = Instant::now();
        drop(cache.get_or_insert_with("a", |k| (k.to_string(), 1)));
        cache.sweep(t0);
        // Taken again before it went: in use, so no longer idle.
        let held = cache.get_or_insert_with("a", |k| (k.to_string(), 2));
        assert_eq!(*held, 1, "still the same value");
        assert_eq!(cache.sweep(t0 + Duration::from_secs(60)), 0);
        drop(held);
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(cache.sweep(t1), 0, "idle from this sweep on");
        assert_eq!(cache.sweep(t1 + Duration::from_secs(9)), 0);
        assert_eq!(cache.sweep(t1 + Duration::from_secs(10)), 1);
    }

    #[test]
    fn a_value_made_again_after_eviction_is_new() {
        let cache = cache();
        let t0 = Instant::now();
        drop(cache.get_or_insert_with("a", |k| (k.to_string(), 1)));
        cache.sweep(t0);
        cache.sweep(t0 + Duration::from_secs(10));
        let again = cache.get_or_insert_with("a", |k| (k.to_string(), 2));
        assert_eq!(*again, 2);
        assert_eq!(cache.values().len(), 1);
    }

    #[test]
    fn reading_the_values_is_not_holding_them() {
        let cache = cache();
        let t0 = Instant::now();
        drop(cache.get_or_insert_with("a", |k| (k.to_string(), 1)));
        let read = cache.values();
        cache.sweep(t0);
        assert_eq!(cache.sweep(t0 + Duration::from_secs(10)), 1);
        assert!(read[0].upgrade().is_none());
    }

    #[test]
    fn the_table_shrinks_when_most_entries_went() {
        let cache = cache();
        let t0 = Instant::now();
        for i in 0..10_000 {
            drop(cache.get_or_insert_with(&i.to_string(), |k| (k.to_string(), i)));
        }
        let kept = cache.get_or_insert_with("1", |k| (k.to_string(), 0));
        cache.sweep(t0);
        cache.sweep(t0 + Duration::from_secs(10));
        assert_eq!(cache.len(), 1);
        assert!(cache.entries.read().unwrap().capacity() < 100);
        drop(kept);
    }

    #[test]
    fn sweeps_are_a_quarter_of_the_retention_within_bounds() {
        assert_eq!(
            sweep_interval(Duration::from_secs(600)),
            Duration::from_secs(10)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(10)),
            Duration::from_millis(50)
        );
    }
}
