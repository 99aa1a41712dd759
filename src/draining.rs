//! The flag that says this process has started to stop. [`crate::shutdown`] sets
//! it; sessions read it to refuse new turns and the readiness routes to answer 503.
//! A leaf of its own, so that the actors that read it need not import the
//! shutdown sequence that drives them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
