//! Mailbox and throughput counters for actors, which actix does not expose.
//!
//! Senders go through [`Tracked`], which wraps each message in a [`Counted`]
//! envelope and counts it into the mailbox. The envelope counts it out again when
//! it is dropped — after its handler opened it, or with the mailbox of an actor
//! that stopped first — so the mailbox length cannot drift, and an actor cannot
//! forget to count: a message reaches it through `Tracked` only if it handles the
//! envelope, which [`counted_messages!`](crate::counted_messages) implements by
//! forwarding to the plain handler. Stream items are counted as they are read
//! ([`ActorStats::count_items`]). The admin endpoint reads the [`ActorDirectory`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use actix::dev::ToEnvelope;
use actix::prelude::*;
use futures_util::StreamExt;
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

    /// Counts each item of `stream` as handled as the actor reads it (stream items
    /// never sit in the mailbox).
    pub fn count_items<S: Stream>(
        self: &Arc<Self>,
        stream: S,
    ) -> impl Stream<Item = S::Item> + use<S> {
        let stats = self.clone();
        stream.inspect(move |_| {
            stats.handled.fetch_add(1, Ordering::Relaxed);
        })
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

/// A message sent through [`Tracked`]; see the module doc.
pub struct Counted<M> {
    message: M,
    ticket: MailboxTicket,
}

impl<M: Message> Message for Counted<M> {
    type Result = M::Result;
}

impl<M> Counted<M> {
    /// The message, for its handler: it counts as handled.
    pub fn open(self) -> M {
        self.ticket.0.handled.fetch_add(1, Ordering::Relaxed);
        self.message
    }
}

/// Counts its message out of the mailbox when dropped, whatever happened to it.
struct MailboxTicket(Arc<ActorStats>);

impl MailboxTicket {
    fn issue(stats: &Arc<ActorStats>) -> Self {
        stats.enqueued.fetch_add(1, Ordering::Relaxed);
        Self(stats.clone())
    }
}

impl Drop for MailboxTicket {
    fn drop(&mut self) {
        self.0.dequeued.fetch_add(1, Ordering::Relaxed);
    }
}

/// Lets an actor take `Counted` messages by forwarding each to its plain handler:
/// `counted_messages!(MyActor => MessageA, MessageB);`.
#[macro_export]
macro_rules! counted_messages {
    ($actor:ty => $($message:ty),+ $(,)?) => {$(
        impl ::actix::Handler<$crate::actors::stats::Counted<$message>> for $actor {
            type Result = <$actor as ::actix::Handler<$message>>::Result;

            fn handle(
                &mut self,
                counted: $crate::actors::stats::Counted<$message>,
                ctx: &mut Self::Context,
            ) -> Self::Result {
                <$actor as ::actix::Handler<$message>>::handle(self, counted.open(), ctx)
            }
        }
    )+};
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
        A: Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        self.addr.do_send(self.counted(message));
    }

    /// Sends and waits for the handler's result.
    pub fn send<M>(&self, message: M) -> actix::dev::Request<A, Counted<M>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        self.addr.send(self.counted(message))
    }

    fn counted<M>(&self, message: M) -> Counted<M> {
        Counted {
            message,
            ticket: MailboxTicket::issue(&self.stats),
        }
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

    /// Answers `Add` with the running total; `Hold` makes it wait before it takes
    /// its next message.
    struct Adder {
        total: u64,
    }

    impl Actor for Adder {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u64")]
    struct Add(u64);

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Hold(std::time::Duration);

    impl Handler<Add> for Adder {
        type Result = u64;

        fn handle(&mut self, Add(n): Add, _: &mut Self::Context) -> u64 {
            self.total += n;
            self.total
        }
    }

    impl Handler<Hold> for Adder {
        type Result = ();

        fn handle(&mut self, Hold(pause): Hold, ctx: &mut Self::Context) {
            ctx.wait(actix::fut::wrap_future(tokio::time::sleep(pause)));
        }
    }

    crate::counted_messages!(Adder => Add, Hold);

    #[actix::test]
    async fn every_message_counts_in_and_out_of_the_mailbox() {
        let stats = ActorStats::new("adder", "1");
        let adder = Tracked::new(Adder { total: 0 }.start(), stats.clone());
        assert_eq!(adder.send(Add(2)).await.unwrap(), 2);
        adder.do_send(Hold(std::time::Duration::from_millis(200)));
        for _ in 0..3 {
            adder.do_send(Add(1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let waiting = stats.snapshot();
        assert_eq!(waiting.mailbox_len, 3, "three wait behind the hold");
        assert_eq!(waiting.handled_total, 2);
        assert_eq!(adder.send(Add(0)).await.unwrap(), 5);
        let after = stats.snapshot();
        assert_eq!(after.mailbox_len, 0);
        assert_eq!(after.handled_total, 6);
    }

    #[actix::test]
    async fn messages_an_actor_never_took_leave_the_mailbox_count() {
        let stats = ActorStats::new("adder", "2");
        let arbiter = Arbiter::new();
        let addr = Adder::start_in_arbiter(&arbiter.handle(), |_| Adder { total: 0 });
        let adder = Tracked::new(addr, stats.clone());
        adder.do_send(Hold(std::time::Duration::from_secs(60)));
        adder.do_send(Add(1));
        adder.do_send(Add(1));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(stats.snapshot().mailbox_len, 2);
        // The actor's thread ends with two messages still queued: the mailbox goes
        // with it, and so do their counts.
        arbiter.stop();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while stats.snapshot().mailbox_len > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.mailbox_len, 0);
        assert_eq!(snapshot.handled_total, 1, "only the hold was handled");
    }

    #[tokio::test]
    async fn stream_items_count_as_handled() {
        let stats = ActorStats::new("reader", "1");
        let items: Vec<u32> = stats
            .count_items(futures_util::stream::iter([1, 2, 3]))
            .collect()
            .await;
        assert_eq!(items, [1, 2, 3]);
        assert_eq!(stats.snapshot().handled_total, 3);
        assert_eq!(stats.snapshot().mailbox_len, 0);
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
