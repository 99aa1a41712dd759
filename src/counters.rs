//! Process-wide totals that `/admin/stats` reports. Atomics, so any actor on any
//! thread can count without a message.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

#[derive(Debug, Default)]
pub struct Counters {
    pub sessions_created: AtomicU64,
    pub turns_started: AtomicU64,
    pub turns_completed: AtomicU64,
    pub turns_failed: AtomicU64,
    pub turns_cancelled: AtomicU64,
    pub worker_restarts: AtomicU64,
    pub questions_published: AtomicU64,
    pub questions_consumed: AtomicU64,
    pub questions_redelivered: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TurnTotals {
    pub started_total: u64,
    pub completed_total: u64,
    pub failed_total: u64,
    pub cancelled_total: u64,
}

impl Counters {
    /// Turns started and not yet ended.
    pub fn turns_in_flight(&self) -> u64 {
        let turns = self.turns();
        let ended = turns.completed_total + turns.failed_total + turns.cancelled_total;
        turns.started_total.saturating_sub(ended)
    }

    pub fn turns(&self) -> TurnTotals {
        TurnTotals {
            started_total: read(&self.turns_started),
            completed_total: read(&self.turns_completed),
            failed_total: read(&self.turns_failed),
            cancelled_total: read(&self.turns_cancelled),
        }
    }
}
