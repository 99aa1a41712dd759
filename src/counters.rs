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
}

/// Adds one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TurnTotals {
    pub started_total: u64,
    pub completed_total: u64,
    pub failed_total: u64,
    pub cancelled_total: u64,
}

impl Counters {
    pub fn turns(&self) -> TurnTotals {
        TurnTotals {
            started_total: self.turns_started.load(Ordering::Relaxed),
            completed_total: self.turns_completed.load(Ordering::Relaxed),
            failed_total: self.turns_failed.load(Ordering::Relaxed),
            cancelled_total: self.turns_cancelled.load(Ordering::Relaxed),
        }
    }
}
