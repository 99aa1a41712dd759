//! What a load test measured: HDR latency histograms (microsecond resolution) and
//! counters, gathered per shard while the test runs and merged at its end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram holds exactly (one hour, in microseconds); larger
/// values are clamped to it.
const HIGHEST_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept: 0.1 % relative error.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency(
            Histogram::new_with_bounds(1, HIGHEST_MICROS, SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid"),
        )
    }
}

impl Latency {
    pub fn record(&mut self, duration: Duration) {
        self.record_micros(duration.as_micros().min(u128::from(HIGHEST_MICROS)) as u64);
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.0.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The percentiles of the summary, in milliseconds (all zero when empty).
    pub fn summary(&self) -> Percentiles {
        if self.0.is_empty() {
            return Percentiles::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            p50: ms(self.0.value_at_quantile(0.50)),
            p90: ms(self.0.value_at_quantile(0.90)),
            p99: ms(self.0.value_at_quantile(0.99)),
            max: ms(self.0.max()),
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// How one turn went, as far as the numbers are concerned.
#[derive(Debug, Default)]
pub struct TurnRecord<'a> {
    pub ok: bool,
    pub ttft: Option<Duration>,
    /// Inter-chunk gaps in microseconds.
    pub itl_micros: &'a [u64],
    /// Send to end, for a turn that ended well.
    pub turn: Option<Duration>,
    pub chunks: u64,
    pub wrong_answer: bool,
    pub isolation_violations: u64,
    pub resets: u64,
    /// The failure's code, for a turn that did not end well.
    pub error: Option<&'a str>,
}

/// Everything measured, for one shard or (merged) for the whole run.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    pub connect: Latency,
    pub ttft: Latency,
    pub itl: Latency,
    pub turn: Latency,
    pub turns_ok: u64,
    pub turns_failed: u64,
    /// Turns never sent because their session had already failed (in `turns_failed`).
    pub turns_skipped: u64,
    pub chunks: u64,
    pub wrong_answers: u64,
    pub isolation_violations: u64,
    pub resets: u64,
    /// Failures by code: error frame codes, `http_NNN`, `connect`, `closed`, `timeout`...
    pub errors: BTreeMap<String, u64>,
}

impl Recorder {
    pub fn record_turn(&mut self, turn: &TurnRecord<'_>) {
        if turn.ok {
            self.turns_ok += 1;
        } else {
            self.turns_failed += 1;
        }
        if let Some(ttft) = turn.ttft {
            self.ttft.record(ttft);
        }
        for &gap in turn.itl_micros {
            self.itl.record_micros(gap);
        }
        if let Some(latency) = turn.turn {
            self.turn.record(latency);
        }
        self.chunks += turn.chunks;
        self.wrong_answers += u64::from(turn.wrong_answer);
        self.isolation_violations += turn.isolation_violations;
        self.resets += turn.resets;
        if let Some(code) = turn.error {
            self.count_error(code);
        }
    }

    pub fn count_error(&mut self, code: &str) {
        match self.errors.get_mut(code) {
            Some(count) => *count += 1,
            None => {
                self.errors.insert(code.to_owned(), 1);
            }
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.connect.merge(&other.connect);
        self.ttft.merge(&other.ttft);
        self.itl.merge(&other.itl);
        self.turn.merge(&other.turn);
        self.turns_ok += other.turns_ok;
        self.turns_failed += other.turns_failed;
        self.turns_skipped += other.turns_skipped;
        self.chunks += other.chunks;
        self.wrong_answers += other.wrong_answers;
        self.isolation_violations += other.isolation_violations;
        self.resets += other.resets;
        for (code, count) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += count;
        }
    }
}

/// Recorders behind a few locks, so that thousands of sessions can record their
/// turns without all waiting on one mutex (and without a histogram each).
pub struct ShardedRecorder {
    shards: Vec<Mutex<Recorder>>,
}

impl ShardedRecorder {
    pub fn new(shards: usize) -> Self {
        ShardedRecorder {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Recorder::default()))
                .collect(),
        }
    }

    /// Runs `f` on the shard of session `index`.
    pub fn with<R>(&self, index: u64, f: impl FnOnce(&mut Recorder) -> R) -> R {
        let shard = &self.shards[(index % self.shards.len() as u64) as usize];
        let mut recorder = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut recorder)
    }

    pub fn merged(&self) -> Recorder {
        let mut total = Recorder::default();
        for shard in &self.shards {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            total.merge(&shard);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        // 3 significant digits: within 0.1 % (plus rounding of the ms conversion).
        (actual - expected).abs() <= expected * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_a_known_sample() {
        let mut latency = Latency::default();
        // 1 ms, 2 ms, ..., 1000 ms.
        for ms in 1..=1000u64 {
            latency.record(Duration::from_millis(ms));
        }
        let p = latency.summary();
        assert!(close(p.p50, 500.0), "{p:?}");
        assert!(close(p.p90, 900.0), "{p:?}");
        assert!(close(p.p99, 990.0), "{p:?}");
        assert!(close(p.max, 1000.0), "{p:?}");
        assert_eq!(latency.count(), 1000);
    }

    #[test]
    fn sub_millisecond_values_keep_their_decimals() {
        let mut latency = Latency::default();
        latency.record(Duration::from_micros(250));
        let p = latency.summary();
        assert_eq!(p.p50, 0.25);
        assert_eq!(p.max, 0.25);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        assert_eq!(Latency::default().summary(), Percentiles::default());
    }

    #[test]
    fn shards_merge_into_totals() {
        let sharded = ShardedRecorder::new(4);
        for index in 0..10u64 {
            let gaps = [100, 200];
            sharded.with(index, |r| {
                r.record_turn(&TurnRecord {
                    ok: index != 3,
                    ttft: Some(Duration::from_millis(index + 1)),
                    itl_micros: &gaps,
                    turn: Some(Duration::from_millis(20)),
                    chunks: 3,
                    error: (index == 3).then_some("timeout"),
                    ..TurnRecord::default()
                })
            });
        }
        let total = sharded.merged();
        assert_eq!(total.turns_ok, 9);
        assert_eq!(total.turns_failed, 1);
        assert_eq!(total.chunks, 30);
        assert_eq!(total.ttft.count(), 10);
        assert_eq!(total.itl.count(), 20);
        assert_eq!(total.errors.get("timeout"), Some(&1));
        assert!(close(total.ttft.summary().max, 10.0));
    }
}
