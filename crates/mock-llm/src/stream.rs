//! A streamed answer: its server-sent events, batched by send time, and the body
//! that sends each batch when it is due.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::MockLlmOptions;
use crate::answer::answer_chunks;
use crate::fault::InjectedFault;
use crate::stats::MockStats;

/// The streamed answer as body chunks, each with its send time (an offset from the
/// request's arrival). Events due at the same time share one chunk.
pub(crate) fn stream_batches(
    id: &str,
    created: u64,
    model: &str,
    answer: &str,
    fault: Option<InjectedFault>,
    options: MockLlmOptions,
) -> Vec<(Duration, Bytes)> {
    // Every event is `data: {head}{delta}{tail}\n\n`.
    let model_json = serde_json::to_string(model).unwrap_or_else(|_| "\"\"".into());
    let head = format!(
        "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":{model_json},\"choices\":[{{\"index\":0,\"delta\":"
    );
    const OPEN_TAIL: &[u8] = b",\"finish_reason\":null}]}\n\n";
    let mut buffer = Vec::with_capacity((head.len() + 64) * (answer.len() / 4 + 3));
    let mut events: Vec<(Duration, Range<usize>)> = Vec::new();
    let mut push = |buffer: &mut Vec<u8>, due: Duration, write: &dyn Fn(&mut Vec<u8>)| {
        let start = buffer.len();
        buffer.extend_from_slice(head.as_bytes());
        write(buffer);
        match events.last_mut() {
            Some((last_due, range)) if *last_due == due => range.end = buffer.len(),
            _ => events.push((due, start..buffer.len())),
        }
    };

    push(&mut buffer, Duration::ZERO, &|b| {
        b.extend_from_slice(b"{\"role\":\"assistant\"}");
        b.extend_from_slice(OPEN_TAIL);
    });
    let content_limit = match fault {
        Some(InjectedFault::Hang) => 0,
        Some(InjectedFault::StallAfter(count)) => count,
        _ => usize::MAX,
    };
    let mut due = options.ttft;
    for (index, word) in answer_chunks(answer).take(content_limit).enumerate() {
        due = options.ttft + options.token_interval * (index as u32);
        push(&mut buffer, due, &|b| {
            b.extend_from_slice(b"{\"content\":");
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *b, word);
            b.push(b'}');
            b.extend_from_slice(OPEN_TAIL);
        });
    }
    if fault.is_none() {
        push(&mut buffer, due, &|b| {
            b.extend_from_slice(b"{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
        });
    }
    let buffer = Bytes::from(buffer);
    events
        .into_iter()
        .map(|(due, range)| (due, buffer.slice(range)))
        .collect()
}

/// The body of a streamed answer: sends each batch at its time. Dropped before the
/// last batch went out means the client cut the stream off; the drop counts it.
pub(crate) struct WordStream {
    batches: std::vec::IntoIter<(Duration, Bytes)>,
    next: Option<(Duration, Bytes)>,
    /// After the last batch, stay silent forever instead of ending (hang, stall).
    stall: bool,
    received: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    finished: bool,
    stats: Arc<MockStats>,
}

impl WordStream {
    pub(crate) fn new(
        batches: Vec<(Duration, Bytes)>,
        stall: bool,
        received: Instant,
        stats: Arc<MockStats>,
    ) -> Self {
        stats.streams_active.fetch_add(1, Ordering::Relaxed);
        let mut batches = batches.into_iter();
        let next = batches.next();
        Self {
            batches,
            next,
            stall,
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
            // A stalled stream is never woken again; it ends when the client leaves.
            return if this.stall {
                Poll::Pending
            } else {
                Poll::Ready(None)
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
        if this.next.is_none() && !this.stall {
            this.finished = true;
        }
        Poll::Ready(Some(Ok(bytes)))
    }
}

impl Drop for WordStream {
    fn drop(&mut self) {
        self.stats.streams_active.fetch_sub(1, Ordering::Relaxed);
        let counter = if self.finished {
            &self.stats.streams_completed
        } else {
            &self.stats.streams_cancelled
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(options: MockLlmOptions, fault: Option<InjectedFault>) -> Vec<(Duration, Bytes)> {
        stream_batches("chatcmpl-1", 0, "m", "a b c", fault, options)
    }

    #[test]
    fn zero_pacing_sends_one_chunk() {
        let all = batches(MockLlmOptions::default(), None);
        assert_eq!(all.len(), 1);
        let text = std::str::from_utf8(&all[0].1).unwrap();
        assert_eq!(
            text.matches("data: ").count(),
            6,
            "role, 3 words, finish, [DONE]: {text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn paced_batches_follow_the_schedule() {
        let ms = Duration::from_millis;
        let options = MockLlmOptions {
            ttft: ms(100),
            token_interval: ms(10),
        };
        let dues: Vec<Duration> = batches(options, None).iter().map(|b| b.0).collect();
        // Role at once; words at 100, 110, 120 (the finish shares the last word's chunk).
        assert_eq!(dues, [ms(0), ms(100), ms(110), ms(120)]);
        let stalled = batches(options, Some(InjectedFault::StallAfter(2)));
        assert_eq!(stalled.len(), 3);
        assert!(
            !std::str::from_utf8(&stalled[2].1)
                .unwrap()
                .contains("finish_reason\":\"stop")
        );
        assert_eq!(batches(options, Some(InjectedFault::Hang)).len(), 1);
    }
}
