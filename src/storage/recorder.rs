//! Writing conversations down without making anyone wait: sessions hand their
//! writes to a [`Recorder`], whose one task applies them in order.
//!
//! - **Off the hot path.** A write is queued and the session goes on: storing a
//!   question must not delay it on its way to a worker.
//! - **In order.** One queue, one writer: a session's answer is never stored
//!   before its question, nor a message before its session.
//! - **In batches.** The writer takes every write waiting (up to [`MAX_BATCH`])
//!   and applies them in one transaction, so it keeps up with thousands of turns a
//!   second where one transaction per write would fall behind. Batches start at
//!   most every [`BATCH_INTERVAL`]: a lone write goes at once, but under load the
//!   writes of a few milliseconds share one commit, where a batch per write would
//!   spend a fifth of the gateway's CPU committing.
//! - **Nothing accepted is lost.** A write the database refuses for being
//!   unreachable is retried, with backoff, until it goes through; later writes wait
//!   behind it. Meanwhile the recorder reports the outage ([`Recorder::problem`]),
//!   and the gateway refuses new turns and answers `/readyz` with 503, so the queue
//!   only grows by the turns already under way.
//! - **It notices by itself.** Between writes it pings the database now and then,
//!   so an outage shows (and its end) even when nobody chats.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Storage, StorageError, Write};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// The first wait before retrying a write the database refused; doubled each
/// time, up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(50);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);
/// The most writes applied in one transaction.
pub const MAX_BATCH: usize = 256;
/// The least time from one batch's start to the next one's: a database commit at
/// most 200 times a second, whatever the load; the writes arriving meanwhile wait
/// (in memory, as they would behind a busy database) and join the next batch.
const BATCH_INTERVAL: Duration = Duration::from_millis(5);
/// How often an idle recorder checks that the database still answers.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// The longest a ping may take before the database counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A handle on the writer; cheap to clone. The writer stops when every handle is
/// gone and its queue is empty.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::UnboundedSender<Job>,
    health: Arc<Health>,
}

/// What the writer is handed: a write, or a request to say when every write
/// before it is stored.
enum Job {
    Write(Write),
    Flush(oneshot::Sender<()>),
}

/// Why the database cannot be written to now, if it cannot.
#[derive(Default)]
struct Health {
    problem: Mutex<Option<String>>,
}

impl Health {
    fn set(&self, problem: Option<String>) {
        let mut current = self
            .problem
            .lock()
            .expect("the health lock is never poisoned");
        if *current != problem {
            match &problem {
                Some(problem) => tracing::warn!(%problem, "conversation storage is unavailable"),
                None if current.is_some() => tracing::info!("conversation storage is back"),
                None => {}
            }
            *current = problem;
        }
    }
}

impl Recorder {
    /// Starts the writer on the current runtime.
    pub fn start(storage: Arc<dyn Storage>) -> Self {
        let (queue, writes) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        tokio::spawn(write_in_order(storage, writes, health.clone()));
        Self { queue, health }
    }

    /// Queues `write`; it is stored after every write queued before it.
    pub fn record(&self, write: Write) {
        // The writer outlives every handle, so the queue is open while `self` is.
        let _ = self.queue.send(Job::Write(write));
    }

    /// Waits until every write queued so far is stored, or `within` has passed;
    /// answers whether they all are. For a process about to exit.
    pub async fn flush(&self, within: Duration) -> bool {
        let (done, stored) = oneshot::channel();
        if self.queue.send(Job::Flush(done)).is_err() {
            return true;
        }
        matches!(tokio::time::timeout(within, stored).await, Ok(Ok(())))
    }

    /// Whether conversations can be stored now (checked for every new turn, so it
    /// copies nothing).
    pub fn is_available(&self) -> bool {
        self.health
            .problem
            .lock()
            .expect("the health lock is never poisoned")
            .is_none()
    }

    /// Why conversations cannot be stored now; `None` when they can.
    pub fn problem(&self) -> Option<String> {
        self.health
            .problem
            .lock()
            .expect("the health lock is never poisoned")
            .clone()
    }
}

async fn write_in_order(
    storage: Arc<dyn Storage>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    health: Arc<Health>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    let mut last_batch: Option<Instant> = None;
    loop {
        let job = match tokio::time::timeout(PING_INTERVAL, jobs.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(_) => {
                check(&*storage, &health).await;
                continue;
            }
        };
        if let Some(next_batch) = last_batch.map(|last| last + BATCH_INTERVAL)
            && Instant::now() < next_batch
        {
            tokio::time::sleep_until(next_batch).await;
        }
        last_batch = Some(Instant::now());
        let mut next = Some(job);
        while let Some(job) = next.take() {
            match job {
                Job::Write(write) => batch.push(write),
                // Answered once the batch it closes is stored.
                Job::Flush(done) => flushes.push(done),
            }
            if batch.len() < MAX_BATCH && flushes.is_empty() {
                next = jobs.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            store(&*storage, &batch, &health).await;
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Stores `batch`, retrying through an outage until it goes through.
async fn store(storage: &dyn Storage, batch: &[Write], health: &Health) {
    let mut wait = FIRST_RETRY_WAIT;
    loop {
        match storage.apply(batch).await {
            Ok(()) => {
                health.set(None);
                return;
            }
            Err(StorageError::Unavailable(problem)) => {
                health.set(Some(problem));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
            // Not an outage: one of the writes was refused (its session was purged
            // meanwhile, or the database rejected the data), and with it the whole
            // transaction. The writes go one at a time, so only that one is lost.
            Err(_) if batch.len() > 1 => {
                for write in batch {
                    Box::pin(store(storage, std::slice::from_ref(write), health)).await;
                }
                return;
            }
            Err(error) => {
                tracing::error!(%error, write = ?batch[0], "a conversation write was refused");
                return;
            }
        }
    }
}

async fn check(storage: &dyn Storage, health: &Health) {
    let problem = match tokio::time::timeout(PING_TIMEOUT, storage.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some(format!(
            "the database did not answer within {} s",
            PING_TIMEOUT.as_secs()
        )),
    };
    health.set(problem);
}

#[cfg(test)]
mod tests;
