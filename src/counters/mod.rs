//! What the process counts, each event recorded once, where it happens. One method
//! per event updates, at the same moment, the atomic that `/admin/stats` reads (and
//! that the drain waits on) and the Prometheus series that `/metrics` renders;
//! nothing is computed when either is asked. Atomics, so any actor on any thread
//! records without a message.
//!
//! The series are registered with the metrics recorder that is current when the
//! [`Counters`] are made — the process-wide one `telemetry::install_metrics`
//! installs, so make them after it — and show from the start, at 0. No label
//! names a session. The series and their meaning: docs/protocol.md#metrics.

mod series;

use std::time::Duration;

use metrics::{Counter, Histogram};
use serde::Serialize;
use tokio::sync::Notify;

use self::series::{Level, Total, labelled, seconds};
use crate::actors::agent_worker::TurnOutcome;

pub struct Counters {
    sessions_created: Total,
    sessions_active: Level,
    turns_started: Total,
    turns_completed: Total,
    turns_failed: Total,
    turns_cancelled: Total,
    /// Woken by each turn's end, for [`Counters::until_no_turn_runs`].
    turn_ended: Notify,
    first_chunk: Histogram,
    turn_duration: Histogram,
    questions_published: Total,
    questions_consumed: Total,
    questions_redelivered: Total,
    broker_connected: Level,
    workers_size: Level,
    workers_busy: Level,
    worker_restarts: Total,
    turns_run: TurnsRun,
    turn_run_duration: Histogram,
}

/// How a session's turn ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnResult {
    /// `done` with `stop` or `length`.
    Completed,
    /// `done` with `cancelled`.
    Cancelled,
    /// An `error`.
    Failed,
}

/// The turns a worker pool ran, by [`TurnOutcome`].
struct TurnsRun {
    completed: Counter,
    cancelled: Counter,
    failed: Counter,
    nobody_listening: Counter,
    given_back: Counter,
}

impl TurnsRun {
    fn new() -> Self {
        let by = |outcome| {
            let help = "Turns a worker pool ran, by how they ended";
            labelled("parlor_worker_turns_total", help, "outcome", outcome)
        };
        Self {
            completed: by("completed"),
            cancelled: by("cancelled"),
            failed: by("failed"),
            nobody_listening: by("nobody_listening"),
            given_back: by("given_back"),
        }
    }

    fn of(&self, outcome: TurnOutcome) -> &Counter {
        match outcome {
            TurnOutcome::Completed => &self.completed,
            TurnOutcome::Cancelled => &self.cancelled,
            TurnOutcome::Failed => &self.failed,
            TurnOutcome::NobodyListening => &self.nobody_listening,
            TurnOutcome::GivenBack => &self.given_back,
        }
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            sessions_created: Total::new("parlor_sessions_created_total", "Sessions created"),
            sessions_active: Level::new("parlor_sessions_active", "Sessions alive now"),
            turns_started: Total::new("parlor_turns_started_total", "Turns started"),
            turns_completed: Total::new(
                "parlor_turns_completed_total",
                "Turns that ended with done, stop or length",
            ),
            turns_failed: Total::new(
                "parlor_turns_failed_total",
                "Turns that ended with an error",
            ),
            turns_cancelled: Total::new(
                "parlor_turns_cancelled_total",
                "Turns that ended with done, cancelled",
            ),
            turn_ended: Notify::new(),
            first_chunk: seconds(
                "parlor_turn_first_chunk_seconds",
                "From the start of a turn to its first chunk",
            ),
            turn_duration: seconds(
                "parlor_turn_duration_seconds",
                "From the start of a turn to its end",
            ),
            questions_published: Total::new(
                "parlor_broker_published_total",
                "Questions published to the broker",
            ),
            questions_consumed: Total::new(
                "parlor_broker_consumed_total",
                "Questions taken from the broker",
            ),
            questions_redelivered: Total::new(
                "parlor_broker_redelivered_total",
                "Questions taken from the broker more than once",
            ),
            broker_connected: Level::new(
                "parlor_broker_connected",
                "1 while the broker is connected, else 0",
            ),
            workers_size: Level::new(
                "parlor_workers_size",
                "Turns the worker pool can run at once",
            ),
            workers_busy: Level::new("parlor_workers_busy", "Turns the worker pool runs now"),
            worker_restarts: Total::new(
                "parlor_worker_restarts_total",
                "Agent workers that died and were replaced",
            ),
            turns_run: TurnsRun::new(),
            turn_run_duration: seconds(
                "parlor_worker_turn_duration_seconds",
                "From a worker pool taking a question to the end of its turn",
            ),
        }
    }
}

/// Events.
impl Counters {
    /// A session started (and registered).
    pub fn session_created(&self) {
        self.sessions_created.add_one();
        self.sessions_active.raise();
    }

    /// A session stopped (and left the registry).
    pub fn session_closed(&self) {
        self.sessions_active.lower();
    }

    pub fn turn_started(&self) {
        self.turns_started.add_one();
    }

    /// A turn's first chunk reached its session, `after` the turn started.
    pub fn first_chunk(&self, after: Duration) {
        self.first_chunk.record(after);
    }

    /// A turn ended after running `lasted`; how is told by [`Counters::turn_ended`].
    pub fn turn_lasted(&self, lasted: Duration) {
        self.turn_duration.record(lasted);
    }

    pub fn turn_ended(&self, result: TurnResult) {
        match result {
            TurnResult::Completed => self.turns_completed.add_one(),
            TurnResult::Cancelled => self.turns_cancelled.add_one(),
            TurnResult::Failed => self.turns_failed.add_one(),
        }
        self.turn_ended.notify_waiters();
    }

    pub fn question_published(&self) {
        self.questions_published.add_one();
    }

    /// A worker pool took a question, delivered for the `attempt`th time.
    pub fn question_consumed(&self, attempt: u32) {
        self.questions_consumed.add_one();
        if attempt > 1 {
            self.questions_redelivered.add_one();
        }
    }

    pub fn worker_restarted(&self) {
        self.worker_restarts.add_one();
    }

    /// A worker pool's turn ended with `outcome`, `took` after the pool took its
    /// question: the model's request and the publishing of its answer.
    pub fn turn_run(&self, outcome: TurnOutcome, took: Duration) {
        self.turns_run.of(outcome).increment(1);
        self.turn_run_duration.record(took);
    }

    /// The worker pool can run `size` turns at once and runs `busy`.
    pub fn pool_status(&self, size: usize, busy: usize) {
        self.workers_size.set(size as u64);
        self.workers_busy.set(busy as u64);
    }

    pub fn broker_connection(&self, connected: bool) {
        self.broker_connected.set(u64::from(connected));
    }
}

/// Everything `/admin/stats` reports from the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub sessions_active: u64,
    pub sessions_created: u64,
    pub turns: TurnTotals,
    pub workers_size: u64,
    pub workers_busy: u64,
    pub worker_restarts: u64,
    pub broker_connected: bool,
    pub questions_published: u64,
    pub questions_consumed: u64,
    pub questions_redelivered: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TurnTotals {
    pub started_total: u64,
    pub completed_total: u64,
    pub failed_total: u64,
    pub cancelled_total: u64,
}

/// Readings.
impl Counters {
    pub fn totals(&self) -> Totals {
        Totals {
            sessions_active: self.sessions_active.get(),
            sessions_created: self.sessions_created.get(),
            turns: self.turns(),
            workers_size: self.workers_size.get(),
            workers_busy: self.workers_busy.get(),
            worker_restarts: self.worker_restarts.get(),
            broker_connected: self.broker_connected.get() == 1,
            questions_published: self.questions_published.get(),
            questions_consumed: self.questions_consumed.get(),
            questions_redelivered: self.questions_redelivered.get(),
        }
    }

    pub fn turns(&self) -> TurnTotals {
        TurnTotals {
            started_total: self.turns_started.get(),
            completed_total: self.turns_completed.get(),
            failed_total: self.turns_failed.get(),
            cancelled_total: self.turns_cancelled.get(),
        }
    }

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
}

#[cfg(test)]
mod tests;
