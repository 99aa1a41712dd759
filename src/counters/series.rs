//! What one event updates at once: the atomic `/admin/stats` reads and the
//! Prometheus series `/metrics` renders. Each series is registered, with its help
//! text, in the metrics recorder current when it is made.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};

/// A count that only grows: a Prometheus counter.
pub(super) struct Total {
    count: AtomicU64,
    series: Counter,
}

impl Total {
    pub(super) fn new(name: &'static str, help: &'static str) -> Self {
        describe_counter!(name, help);
        Self {
            count: AtomicU64::new(0),
            series: counter!(name),
        }
    }

    pub(super) fn add_one(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.series.increment(1);
    }

    pub(super) fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// A level that goes up and down: a Prometheus gauge.
pub(super) struct Level {
    value: AtomicU64,
    series: Gauge,
}

impl Level {
    pub(super) fn new(name: &'static str, help: &'static str) -> Self {
        describe_gauge!(name, help);
        Self {
            value: AtomicU64::new(0),
            series: gauge!(name),
        }
    }

    /// For a level one owner sets (the pool, the broker's connection).
    pub(super) fn set(&self, value: u64) {
        self.value.store(value, Ordering::Relaxed);
        self.series.set(value as f64);
    }

    /// For a level many threads move: each step is applied to both sides rather
    /// than a value copied, so concurrent steps cannot leave the gauge stale.
    pub(super) fn raise(&self) {
        self.value.fetch_add(1, Ordering::Relaxed);
        self.series.increment(1.0);
    }

    pub(super) fn lower(&self) {
        self.value.fetch_sub(1, Ordering::Relaxed);
        self.series.decrement(1.0);
    }

    pub(super) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// A Prometheus histogram of durations, in seconds.
pub(super) fn seconds(name: &'static str, help: &'static str) -> Histogram {
    describe_histogram!(name, help);
    histogram!(name)
}

/// A Prometheus counter with one label, for counts only `/metrics` reports.
pub(super) fn labelled(
    name: &'static str,
    help: &'static str,
    label: &'static str,
    value: &'static str,
) -> Counter {
    describe_counter!(name, help);
    counter!(name, label => value)
}
