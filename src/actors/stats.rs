//! Mailbox and throughput counters for actors, which actix does not expose.
//!
//! Senders go through [`Tracked`], which counts a message into the mailbox; the
//! actor's handlers call [`ActorStats::took_message`] (mailbox messages) or
//! [`ActorStats::handled_event`] (stream items, which never sit in the mailbox).
//! The admin endpoint reads the [`ActorDirectory`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use serde::Serialize;

#[derive(Debug)]
pub struct ActorStats {
    kind: &'static str,
    id: String,
    enqueued: AtomicU64,
    dequeued: AtomicU64,
    handled: AtomicU64,
}

impl ActorStats {
    pub fn new(kind: &'static str, id: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            kind,
            id: id.into(),
            enqueued: AtomicU64::new(0),
            dequeued: AtomicU64::new(0),
            handled: AtomicU64::new(0),
        })
    }

    /// A message sent through [`Tracked`] was taken out of the mailbox and handled.
    pub fn took_message(&self) {
        self.dequeued.fetch_add(1, Ordering::Relaxed);
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// A stream item (not a mailbox message) was handled.
    pub fn handled_event(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ActorSnapshot {
        let dequeued = self.dequeued.load(Ordering::Relaxed);
        let enqueued = self.enqueued.load(Ordering::Relaxed);
        ActorSnapshot {
            kind: self.kind,
            id: self.id.clone(),
            mailbox_len: enqueued.saturating_sub(dequeued),
            handled_total: self.handled.load(Ordering::Relaxed),
        }
    }
}

/// One actor's counters at one moment (an entry of `/admin/stats`'s `actors`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActorSnapshot {
    pub kind: &'static str,
    pub id: String,
    pub mailbox_len: u64,
    pub handled_total: u64,
}

/// An actor's address that counts what it sends into the mailbox.
pub struct Tracked<A: Actor> {
    addr: Addr<A>,
    stats: Arc<ActorStats>,
}

impl<A: Actor> Clone for Tracked<A> {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<A: Actor> Tracked<A> {
    pub fn new(addr: Addr<A>, stats: Arc<ActorStats>) -> Self {
        Self { addr, stats }
    }

    /// Whether the actor is still running.
    pub fn connected(&self) -> bool {
        self.addr.connected()
    }

    /// Sends without waiting for the result. Like [`Addr::do_send`] this ignores the
    /// mailbox bound; callers say why an unbounded queue is harmless there.
    pub fn do_send<M>(&self, message: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        self.addr.do_send(message);
    }

    /// Sends and waits for the handler's result.
    pub fn send<M>(&self, message: M) -> actix::dev::Request<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.stats.enqueued.fetch_add(1, Ordering::Relaxed);
        self.addr.send(message)
    }
}

/// Every tracked actor alive in the process, for the admin endpoint.
#[derive(Clone, Default)]
pub struct ActorDirectory {
    entries: Arc<Mutex<Vec<Weak<ActorStats>>>>,
}

impl ActorDirectory {
    /// Lists `stats` until it is dropped (when its actor and every sender are gone).
    pub fn register(&self, stats: &Arc<ActorStats>) {
        let mut entries = self.entries.lock().expect("actor directory");
        entries.retain(|entry| entry.strong_count() > 0);
        entries.push(Arc::downgrade(stats));
    }

    pub fn snapshot(&self) -> Vec<ActorSnapshot> {
        let entries = self.entries.lock().expect("actor directory");
        entries
            .iter()
            .filter_map(Weak::upgrade)
            .map(|stats| stats.snapshot())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_length_is_sent_minus_taken() {
        let stats = ActorStats::new("test", "1");
        stats.enqueued.fetch_add(3, Ordering::Relaxed);
        stats.took_message();
        stats.handled_event();
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.mailbox_len, 2);
        assert_eq!(snapshot.handled_total, 2);
    }

    #[test]
    fn the_directory_forgets_dropped_actors() {
        let directory = ActorDirectory::default();
        let kept = ActorStats::new("kept", "a");
        directory.register(&kept);
        directory.register(&ActorStats::new("gone", "b"));
        let kinds: Vec<_> = directory.snapshot().into_iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec!["kept"]);
    }
}
