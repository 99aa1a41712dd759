//! Stopping well on SIGTERM/SIGINT: take no new turns, let running turns finish
//! within a grace period, then close the sockets and the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::counters::Counters;

/// Set once the process has started to stop; sessions refuse new turns then.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn begin(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Resolves on the first SIGTERM or SIGINT, naming it.
pub async fn signalled() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

/// Waits until no turn runs, or `grace` has passed. Answers the turns still running.
pub async fn let_running_turns_finish(counters: &Counters, grace: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let running = counters.turns_in_flight();
        if running == 0 || tokio::time::Instant::now() >= deadline {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
