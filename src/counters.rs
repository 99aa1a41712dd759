//! Process-wide totals that `/admin/stats` reports. Atomics, so any actor on any
//! thread can count without a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::Notify;

#[derive(Debug)]
pub struct Counters {
    pub sessions_created: AtomicU64,
    pub turns_started: AtomicU64,
    pub turns_completed: TurnEnds,
    pub turns_failed: TurnEnds,
    pub turns_cancelled: TurnEnds,
    pub worker_restarts: AtomicU64,
    pub questions_published: AtomicU64,
    pub questions_consumed: AtomicU64,
    pub questions_redelivered: AtomicU64,
    /// Shared by the three [`TurnEnds`].
    turn_ended: Arc<Notify>,
}

impl Default for Counters {
    fn default() -> Self {
        let turn_ended = Arc::new(Notify::new());
        let ends = || TurnEnds {
            count: AtomicU64::new(0),
            ended: turn_ended.clone(),
        };
        Self {
            sessions_created: AtomicU64::new(0),
            turns_started: AtomicU64::new(0),
            turns_completed: ends(),
            turns_failed: ends(),
            turns_cancelled: ends(),
            worker_restarts: AtomicU64::new(0),
            questions_published: AtomicU64::new(0),
            questions_consumed: AtomicU64::new(0),
            questions_redelivered: AtomicU64::new(0),
            turn_ended,
        }
    }
}

/// Something [`bump`] adds to and [`read`] reads.
pub trait Count {
    fn add_one(&self);
    fn value(&self) -> u64;
}

impl Count for AtomicU64 {
    fn add_one(&self) {
        self.fetch_add(1, Ordering::Relaxed);
    }

    fn value(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
}

/// A count of turns that ended one way; each end wakes whoever waits in
/// [`Counters::until_no_turn_runs`].
#[derive(Debug)]
pub struct TurnEnds {
    count: AtomicU64,
    ended: Arc<Notify>,
}

impl Count for TurnEnds {
    fn add_one(&self) {
        self.count.add_one();
        self.ended.notify_waiters();
    }

    fn value(&self) -> u64 {
        self.count.value()
    }
}

/// Adds one to a counter.
pub fn bump(counter: &impl Count) {
    counter.add_one();
}

/// Reads a counter.
pub fn read(counter: &impl Count) -> u64 {
    counter.value()
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

    /// Resolves once no turn runs, woken by each turn's end rather than by looking
    /// again and again.
    pub async fn until_no_turn_runs(&self) {
        loop {
            let ended = self.turn_ended.notified();
            let mut ended = std::pin::pin!(ended);
            // Wait before looking, so an end between the look and the wait wakes us.
            ended.as_mut().enable();
            if self.turns_in_flight() == 0 {
                return;
            }
            ended.await;
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_running_turns_ends_with_the_last_turn() {
        let counters = Arc::new(Counters::default());
        bump(&counters.turns_started);
        bump(&counters.turns_started);
        let ending = counters.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            bump(&ending.turns_completed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            bump(&ending.turns_cancelled);
        });
        let start = tokio::time::Instant::now();
        counters.until_no_turn_runs().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
