//! The body of a streamed reply: sends each batch of events (see `events`) when
//! it is due, then what follows them (nothing, silence, or endless words), and
//! counts how the stream ended.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::more_words::MoreWords;
use crate::stats::MockStats;

/// What a reply's body does after its last batch.
pub(crate) enum Then {
    /// Ends (the last batch held the finish).
    End,
    /// Stays silent forever instead of ending (hang, stall).
    Stall,
    /// Goes on with generated words (`[mock:endless]`).
    More(MoreWords),
}

/// The body of a streamed answer: sends each batch at its time. Dropped before the
/// last batch went out means the client cut the stream off; the drop counts it.
pub(crate) struct WordStream {
    batches: std::vec::IntoIter<(Duration, Bytes)>,
    next: Option<(Duration, Bytes)>,
    then: Then,
    received: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    finished: bool,
    stats: Arc<MockStats>,
}

impl WordStream {
    pub(crate) fn new(
        batches: Vec<(Duration, Bytes)>,
        then: Then,
        received: Instant,
        stats: Arc<MockStats>,
    ) -> Self {
        stats.streams_active.fetch_add(1, Ordering::Relaxed);
        let mut batches = batches.into_iter();
        let next = batches.next();
        Self {
            batches,
            next,
            then,
            received,
            timer: None,
            finished: false,
            stats,
        }
    }
}

impl Stream for WordStream {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = Pin::into_inner(self);
        let Some((offset, _)) = &this.next else {
            return match &mut this.then {
                Then::End => Poll::Ready(None),
                // A stalled stream is never woken again; it ends when the client leaves.
                Then::Stall => Poll::Pending,
                Then::More(words) => Pin::new(words).poll_next(cx).map(|words| words.map(Ok)),
            };
        };
        if !offset.is_zero() {
            let due = this.received + *offset;
            if Instant::now() < due {
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if timer.deadline() != due {
                    timer.as_mut().reset(due);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        let (_, bytes) = this.next.take().expect("checked above");
        this.next = this.batches.next();
        if this.next.is_none() && matches!(this.then, Then::End) {
            this.finished = true;
        }
        Poll::Ready(Some(Ok(bytes)))
    }
}

impl Drop for WordStream {
    fn drop(&mut self) {
        self.stats.streams_active.fetch_sub(1, Ordering::Relaxed);
        let finished = match &self.then {
            Then::More(words) => words.finished(),
            Then::End | Then::Stall => self.finished,
        };
        let counter = if finished {
            &self.stats.streams_completed
        } else {
            &self.stats.streams_cancelled
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
