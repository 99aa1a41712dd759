//! Splitting a response body into server-sent events (the `text/event-stream`
//! format of the HTML standard), in time linear in the body's length and in memory
//! bounded by [`MAX_EVENT_BYTES`].
//!
//! Each byte is looked at once: the buffer remembers how far it has been searched
//! for a line end, so a long line arriving in many small pieces is not searched from
//! its start again with every piece. A model that sends a line (or an event) longer
//! than the bound gets an error instead of the gateway's memory.

use std::fmt::Display;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::Stream;

/// The longest event (and so the longest line) a model may send. A streamed chunk of
/// a chat completion is a few hundred bytes; even a tool call's arguments arrive in
/// fragments, so 1 MiB leaves room without letting one event take the memory.
pub(crate) const MAX_EVENT_BYTES: usize = 1 << 20;

/// One event: its `event` field (empty when absent) and its `data` lines, joined by
/// `\n`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Why the events could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("the body could not be read: {0}")]
    Body(String),
    #[error("the model sent an event longer than {MAX_EVENT_BYTES} bytes")]
    TooLong,
}

/// The events of a body, as a stream. Ends after the body ends (or after its first
/// error).
pub(crate) struct EventDecoder<S> {
    body: S,
    lines: LineSplitter,
    event: PendingEvent,
    body_ended: bool,
    failed: bool,
}

impl<S> EventDecoder<S> {
    pub(crate) fn new(body: S) -> Self {
        Self {
            body,
            lines: LineSplitter::default(),
            event: PendingEvent::default(),
            body_ended: false,
            failed: false,
        }
    }

    /// The next complete event already buffered, if any.
    fn next_buffered(&mut self) -> Result<Option<SseEvent>, DecodeError> {
        while let Some(line) = self.lines.next_line()? {
            if let Some(event) = self.event.take_line(&line)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }
}

impl<S, B, E> Stream for EventDecoder<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: Display,
{
    type Item = Result<SseEvent, DecodeError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = Pin::into_inner(self);
        loop {
            if this.failed {
                return Poll::Ready(None);
            }
            match this.next_buffered() {
                Ok(Some(event)) => return Poll::Ready(Some(Ok(event))),
                Ok(None) => {}
                Err(error) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            if this.body_ended {
                // A last line without its line end, and a last event without the
                // blank line after it, still count: some servers end that way.
                this.failed = true;
                let last = this.lines.rest();
                let event = match this.event.take_line(&last) {
                    Ok(Some(event)) => Some(event),
                    Ok(None) => this.event.finish(),
                    Err(error) => return Poll::Ready(Some(Err(error))),
                };
                return Poll::Ready(event.map(Ok));
            }
            match Pin::new(&mut this.body).poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.lines.push(bytes.as_ref()),
                Poll::Ready(Some(Err(error))) => {
                    this.failed = true;
                    return Poll::Ready(Some(Err(DecodeError::Body(error.to_string()))));
                }
                Poll::Ready(None) => this.body_ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Bytes cut into lines ended by `\n`, `\r\n` or `\r`.
#[derive(Default)]
struct LineSplitter {
    buffer: Vec<u8>,
    /// Where the next line starts.
    start: usize,
    /// How far past `start` is known to hold no line end.
    searched: usize,
    /// The last line ended with `\r` at the end of the buffer: a `\n` that comes
    /// next belongs to that line end.
    after_cr: bool,
}

impl LineSplitter {
    fn push(&mut self, bytes: &[u8]) {
        // Drop the lines already taken, so the buffer holds one partial line at most;
        // what is moved is at most what arrived since the last line end.
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.searched -= self.start;
            self.start = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    fn next_line(&mut self) -> Result<Option<String>, DecodeError> {
        if self.after_cr && self.start < self.buffer.len() {
            self.after_cr = false;
            if self.buffer[self.start] == b'\n' {
                self.start += 1;
                self.searched = self.searched.max(self.start);
            }
        }
        let from = self.searched.max(self.start);
        let found = self.buffer[from..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r');
        let Some(offset) = found else {
            self.searched = self.buffer.len();
            if self.buffer.len() - self.start > MAX_EVENT_BYTES {
                return Err(DecodeError::TooLong);
            }
            return Ok(None);
        };
        let end = from + offset;
        if end - self.start > MAX_EVENT_BYTES {
            return Err(DecodeError::TooLong);
        }
        let line = String::from_utf8_lossy(&self.buffer[self.start..end]).into_owned();
        if self.buffer[end] == b'\r' {
            match self.buffer.get(end + 1) {
                Some(b'\n') => self.start = end + 2,
                Some(_) => self.start = end + 1,
                None => {
                    self.start = end + 1;
                    self.after_cr = true;
                }
            }
        } else {
            self.start = end + 1;
        }
        self.searched = self.start;
        Ok(Some(line))
    }

    /// What is left after the last line end.
    fn rest(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.buffer[self.start..]).into_owned();
        self.start = self.buffer.len();
        self.searched = self.start;
        rest
    }
}

/// The fields of the event being read.
#[derive(Default)]
struct PendingEvent {
    event: String,
    data: String,
    has_data: bool,
}

impl PendingEvent {
    /// Takes one line; a blank line ends the event, which is returned if it has data
    /// (an event without data is dispatched to nobody).
    fn take_line(&mut self, line: &str) -> Result<Option<SseEvent>, DecodeError> {
        if line.is_empty() {
            return Ok(self.finish());
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > MAX_EVENT_BYTES {
                    return Err(DecodeError::TooLong);
                }
            }
            // `id` and `retry` matter to reconnecting browsers, not to one response.
            _ => {}
        }
        Ok(None)
    }

    fn finish(&mut self) -> Option<SseEvent> {
        let pending = std::mem::take(self);
        pending.has_data.then_some(SseEvent {
            event: pending.event,
            data: pending.data,
        })
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use futures_util::stream;

    use super::*;

    fn decode(pieces: &[&[u8]]) -> Vec<Result<SseEvent, DecodeError>> {
        let body = stream::iter(
            pieces
                .iter()
                .map(|piece| Ok::<_, std::convert::Infallible>(piece.to_vec()))
                .collect::<Vec<_>>(),
        );
        collect(EventDecoder::new(body))
    }

    fn collect<S: Stream + Unpin>(stream: S) -> Vec<S::Item> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(stream.collect())
    }

    fn data(text: &str) -> Result<SseEvent, DecodeError> {
        Ok(SseEvent {
            event: String::new(),
            data: text.into(),
        })
    }

    #[test]
    fn events_end_at_a_blank_line_whatever_the_line_ends() {
        let events = decode(&[b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata:d\n\n"]);
        assert_eq!(events, vec![data("a"), data("b"), data("c"), data("d")]);
    }

    #[test]
    fn pieces_may_cut_anywhere_even_between_cr_and_lf() {
        let whole = b"event: error\r\ndata: {\"x\":\n\r\ndata: y\r\n\r\n";
        let expected = decode(&[whole]);
        for cut in 0..whole.len() {
            let (left, right) = whole.split_at(cut);
            assert_eq!(decode(&[left, right]), expected, "cut at {cut}");
        }
        let one_by_one: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(decode(&one_by_one), expected);
        assert_eq!(
            expected,
            vec![
                Ok(SseEvent {
                    event: "error".into(),
                    data: "{\"x\":".into()
                }),
                data("y")
            ]
        );
    }

    #[test]
    fn data_lines_join_comments_and_other_fields_are_skipped() {
        let events = decode(&[b": keep-alive\nid: 7\nretry: 10\ndata: one\ndata\ndata: two\n\n"]);
        assert_eq!(events, vec![data("one\n\ntwo")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(decode(&[b"event: ping\n\n"]), vec![]);
    }

    #[test]
    fn the_last_event_counts_without_its_blank_line_or_line_end() {
        assert_eq!(
            decode(&[b"data: a\n\ndata: [DONE]"]),
            vec![data("a"), data("[DONE]")]
        );
        assert_eq!(decode(&[b"data: [DONE]\n"]), vec![data("[DONE]")]);
    }

    #[test]
    fn a_line_past_the_bound_is_an_error_even_before_it_ends() {
        let huge = vec![b'x'; MAX_EVENT_BYTES + 10];
        let events = decode(&[
            b"data: ",
            &huge[..MAX_EVENT_BYTES / 2],
            &huge[MAX_EVENT_BYTES / 2..],
        ]);
        assert_eq!(events, vec![Err(DecodeError::TooLong)]);
    }

    #[test]
    fn an_event_past_the_bound_in_many_lines_is_an_error() {
        let line = format!("data: {}\n", "y".repeat(1000));
        let body = line.repeat(MAX_EVENT_BYTES / 1000 + 2);
        assert_eq!(decode(&[body.as_bytes()]), vec![Err(DecodeError::TooLong)]);
    }

    #[test]
    fn a_body_error_ends_the_stream() {
        let body = stream::iter(vec![Ok(b"data: a\n\n".to_vec()), Err("reset by peer")]);
        let events = collect(EventDecoder::new(body));
        assert_eq!(
            events,
            vec![data("a"), Err(DecodeError::Body("reset by peer".into()))]
        );
    }

    #[test]
    fn a_long_line_may_arrive_in_many_small_pieces() {
        let piece = vec![b'z'; 1024];
        let mut pieces: Vec<&[u8]> = vec![b"data: "];
        pieces.extend(std::iter::repeat_n(&piece[..], 1023));
        pieces.push(b"\n\n");
        let events = decode(&pieces);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().map(|e| e.data.len()), Ok(1023 * 1024));
    }
}
