//! The tail of an endless answer (`[mock:endless]`): the word `more ` again and
//! again, one every `token_interval`, made as it goes out — the batches of
//! `events` are computed before the first is sent, which an answer without end
//! cannot be.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::events::{OPEN_TAIL, write_finish};
use crate::plan::LENGTH;

/// The word an endless answer repeats.
pub const ENDLESS_WORD: &str = "more ";

/// With no interval, words go out this many to a body chunk: as fast as the
/// client reads, without a chunk (and a wake-up) per word.
const WORDS_PER_CHUNK: usize = 32;

/// Sends [`ENDLESS_WORD`] events: `left` of them, then the finish (`length`) and
/// `[DONE]`; or, with `left` none, until it is dropped.
pub(crate) struct MoreWords {
    /// One whole word event.
    word: Bytes,
    /// The final event and `[DONE]`.
    finish: Bytes,
    left: Option<usize>,
    interval: Duration,
    next_due: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    finished: bool,
}

impl MoreWords {
    /// Words of events starting with `head` (see `events::event_head`), the first
    /// due at `first_due`, then one every `interval`.
    pub(crate) fn new(
        head: &str,
        left: Option<usize>,
        first_due: Instant,
        interval: Duration,
    ) -> Self {
        let mut word = head.as_bytes().to_vec();
        let delta = serde_json::json!({ "content": ENDLESS_WORD });
        word.extend_from_slice(delta.to_string().as_bytes());
        word.extend_from_slice(OPEN_TAIL);
        let mut finish = head.as_bytes().to_vec();
        write_finish(&mut finish, LENGTH);
        Self {
            word: word.into(),
            finish: finish.into(),
            left,
            interval,
            next_due: first_due,
            timer: None,
            finished: false,
        }
    }

    /// Whether the final event went out.
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// Whether the next word is due; if not, the timer wakes the task when it is.
    fn due(&mut self, cx: &mut Context<'_>) -> bool {
        let due = self.next_due;
        if Instant::now() >= due {
            return true;
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.deadline() != due {
            timer.as_mut().reset(due);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

impl Stream for MoreWords {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = Pin::into_inner(self);
        if this.finished {
            return Poll::Ready(None);
        }
        if this.left == Some(0) {
            this.finished = true;
            return Poll::Ready(Some(this.finish.clone()));
        }
        if !this.due(cx) {
            return Poll::Pending;
        }
        let mut words = if this.interval.is_zero() {
            WORDS_PER_CHUNK
        } else {
            1
        };
        if let Some(left) = &mut this.left {
            words = words.min(*left);
            *left -= words;
        }
        let mut chunk = BytesMut::with_capacity(this.word.len() * words + this.finish.len());
        for _ in 0..words {
            chunk.extend_from_slice(&this.word);
        }
        // The finish shares the last word's chunk, as in a precomputed reply.
        if this.left == Some(0) {
            chunk.extend_from_slice(&this.finish);
            this.finished = true;
        }
        this.next_due += this.interval;
        Poll::Ready(Some(chunk.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn body(chunks: &[Bytes]) -> String {
        chunks
            .iter()
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn counted_words_end_with_length() {
        let words = MoreWords::new("data: ", Some(40), Instant::now(), Duration::ZERO);
        let chunks: Vec<Bytes> = words.collect().await;
        assert_eq!(chunks.len(), 2, "{WORDS_PER_CHUNK} words to a chunk");
        let body = body(&chunks);
        assert_eq!(body.matches("{\"content\":\"more \"}").count(), 40);
        assert!(body.ends_with("\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n"));
    }

    #[tokio::test]
    async fn no_words_left_is_the_finish_alone() {
        let words = MoreWords::new("data: ", Some(0), Instant::now(), Duration::ZERO);
        let chunks: Vec<Bytes> = words.collect().await;
        assert_eq!(chunks.len(), 1);
        assert!(body(&chunks).starts_with("data: {},\"finish_reason\":\"length\""));
    }

    #[tokio::test(start_paused = true)]
    async fn paced_words_come_one_per_interval_without_end() {
        let start = Instant::now();
        let interval = Duration::from_millis(10);
        let mut words = MoreWords::new("data: ", None, start + interval, interval);
        for n in 1..=100u32 {
            let chunk = words.next().await.unwrap();
            assert_eq!(chunk.as_ref(), words.word.as_ref());
            assert_eq!(Instant::now() - start, interval * n);
        }
        assert!(!words.finished());
    }
}
