//! The counters behind `GET /stats`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Counters behind `GET /stats`.
#[derive(Debug, Default)]
pub struct MockStats {
    pub(crate) requests: AtomicU64,
    pub(crate) streams_active: AtomicU64,
    pub(crate) streams_completed: AtomicU64,
    pub(crate) streams_cancelled: AtomicU64,
}

/// A copy of the [`MockStats`] counters at one moment; the JSON of `GET /stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockStatsSnapshot {
    /// Chat completion requests received (streaming or not, failed or not).
    pub requests: u64,
    /// Streamed answers being sent now.
    pub streams_active: u64,
    /// Streamed answers sent up to their final event.
    pub streams_completed: u64,
    /// Streamed answers whose client went away before the final event.
    pub streams_cancelled: u64,
}

impl MockStats {
    pub fn snapshot(&self) -> MockStatsSnapshot {
        MockStatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            streams_active: self.streams_active.load(Ordering::Relaxed),
            streams_completed: self.streams_completed.load(Ordering::Relaxed),
            streams_cancelled: self.streams_cancelled.load(Ordering::Relaxed),
        }
    }
}
