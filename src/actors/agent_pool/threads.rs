//! The threads a pool's workers run on: one arbiter per thread, workers dealt
//! round-robin, so that the turns' tasks — the model client's requests, its
//! stream parsing, the publishing of answers — use every core instead of the
//! System arbiter's one.

use actix::prelude::*;

/// The arbiters a pool starts its workers on. Dropping it stops the threads it
/// started (their workers with them).
pub struct WorkerThreads {
    places: Vec<Place>,
}

enum Place {
    /// A thread started for the pool, with what it is called in `top -H` and
    /// `/proc/<pid>/task/*/comm`.
    Own { arbiter: Arbiter, name: String },
    /// The arbiter that built the pool (the in-process tests use paused time,
    /// which only the current thread's runtime sees).
    Current(ArbiterHandle),
}

impl WorkerThreads {
    /// `count` threads of their own (at least one), named `parlor-turns-N`.
    pub fn start(count: usize) -> Self {
        let places = (0..count.max(1)).map(Place::start).collect();
        Self { places }
    }

    /// No thread of its own: every worker runs on the caller's arbiter.
    pub fn current() -> Self {
        Self {
            places: vec![Place::Current(Arbiter::current())],
        }
    }

    /// Where the worker at `index` runs. A thread that is gone (an arbiter only
    /// ends when its own loop panics) is started again first, so the pool never
    /// restarts a worker on a thread that cannot run it.
    pub fn for_worker(&mut self, index: usize) -> ArbiterHandle {
        let slot = index % self.places.len();
        let place = &mut self.places[slot];
        if let Place::Own { arbiter, name } = place
            && !arbiter.spawn(async {})
        {
            tracing::error!(thread = %name, "a worker thread is gone; starting it again");
            *place = Place::start(slot);
        }
        match place {
            Place::Own { arbiter, .. } => arbiter.handle(),
            Place::Current(handle) => handle.clone(),
        }
    }
}

impl Place {
    fn start(slot: usize) -> Self {
        let arbiter = Arbiter::new();
        let name = format!("parlor-turns-{slot}");
        let thread_name = name.clone();
        arbiter.spawn_fn(move || name_this_thread(&thread_name));
        Place::Own { arbiter, name }
    }
}

impl Drop for WorkerThreads {
    fn drop(&mut self) {
        for place in &self.places {
            if let Place::Own { arbiter, .. } = place {
                arbiter.stop();
            }
        }
    }
}

/// Names the calling thread for `top -H` and per-thread CPU figures (Linux keeps
/// 15 bytes of it). Best effort: elsewhere the arbiter's own name stays.
fn name_this_thread(name: &str) {
    let _ = std::fs::write("/proc/thread-self/comm", name);
}

/// One thread per core: a turn is mostly waiting, and what it computes (parsing the
/// model's stream, encoding answers) is spread over every core this way.
pub fn one_per_core() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name_on(handle: &ArbiterHandle) -> std::sync::mpsc::Receiver<Option<String>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        handle.spawn_fn(move || {
            let _ = sender.send(std::thread::current().name().map(str::to_owned));
        });
        receiver
    }

    #[actix::test]
    async fn workers_are_dealt_round_robin_over_threads_of_their_own() {
        let mut threads = WorkerThreads::start(2);
        assert_eq!(threads.places.len(), 2);
        let first = threads.for_worker(0);
        let second = threads.for_worker(1);
        let third = threads.for_worker(2);
        let (first, second, third) = (
            thread_name_on(&first).recv().unwrap(),
            thread_name_on(&second).recv().unwrap(),
            thread_name_on(&third).recv().unwrap(),
        );
        assert_ne!(first, second);
        assert_eq!(first, third);
        let current = std::thread::current().name().map(str::to_owned);
        assert_ne!(first, current);
    }

    #[actix::test]
    async fn a_thread_that_is_gone_is_started_again() {
        let mut threads = WorkerThreads::start(1);
        let Place::Own { arbiter, .. } = &threads.places[0] else {
            unreachable!("started threads are its own");
        };
        arbiter.stop();
        let stopped = arbiter.handle();
        // Stopping is a message; wait until the thread no longer takes work.
        for _ in 0..1000 {
            if !stopped.spawn(async {}) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!stopped.spawn(async {}), "the arbiter did not stop");
        let replaced = threads.for_worker(0);
        assert!(replaced.spawn(async {}));
    }
}
