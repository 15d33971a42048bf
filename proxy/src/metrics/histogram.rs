//! A fixed-bucket histogram that records with atomics only.
//!
//! prometheus-client's own histogram takes a mutex on every observation; on the
//! proxy's per-request path that is a lock shared by every request to the same
//! destination, so we keep buckets as plain atomic counters and build the
//! cumulative view only when Prometheus scrapes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Linkerd's latency buckets, in milliseconds.
pub(crate) const LATENCY_MS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1_000.0, 2_000.0, 3_000.0, 4_000.0, 5_000.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0, 50_000.0,
];

/// Connection lifetimes span milliseconds to days, so the buckets are decades.
pub(crate) const DURATION_MS: &[f64] = &[
    1.0,
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
    100_000_000.0,
];

#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One counter per bound plus the `+Inf` overflow, not cumulative.
    counts: Box<[AtomicU64]>,
    /// Sum of observations in microseconds, so it stays an integer.
    sum_us: AtomicU64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub(crate) fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let ms = us as f64 / 1_000.0;
        // Bounds are few and sorted; partition_point is a binary search.
        let i = self.bounds.partition_point(|b| *b < ms);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// (sum in ms, count, per-bucket counts including `+Inf`). The buckets
    /// are not cumulative: prometheus-client's encoder sums them as it writes.
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Relaxed);
            total += n;
            let le = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((le, n));
        }
        (self.sum_us.load(Relaxed) as f64 / 1_000.0, total, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        let h = Histogram::new(LATENCY_MS);
        h.observe(Duration::from_micros(500)); // le=1
        h.observe(Duration::from_millis(1)); // le=1: bounds are inclusive
        h.observe(Duration::from_millis(7)); // le=10
        h.observe(Duration::from_secs(3600)); // +Inf
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 3_600_008.5).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (1.0, 2));
        assert_eq!(buckets[4], (5.0, 0));
        assert_eq!(buckets[5], (10.0, 1));
        assert_eq!(buckets[LATENCY_MS.len() - 1], (50_000.0, 0));
        assert_eq!(*buckets.last().unwrap(), (f64::INFINITY, 1));
        assert_eq!(buckets.len(), LATENCY_MS.len() + 1);
    }
}
