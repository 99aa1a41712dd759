//! Merging answer text that is already there into fewer, larger pieces.
//!
//! A fast model hands over many tiny pieces at once (one per token); passing each
//! on as its own chunk costs a broker message, an actor message and a WebSocket
//! frame apiece. [`coalesce`] joins the pieces that are ready together — waiting at
//! most `window` for more — so the answer and its order stay the same while the
//! per-chunk work drops. A reasoning model's thinking comes token by token too and
//! is joined the same way (never with answer text). With a zero window nothing is
//! ever delayed.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{self, StreamExt};

use super::{AgentError, AgentEvent, AgentStream};
use crate::conversation::TurnEvent;

/// A merged piece stops growing at this size, so chunks stay small messages.
pub const MAX_CHUNK_BYTES: usize = 16 * 1024;

type Item = Result<AgentEvent, AgentError>;

/// What the inner stream yields next, when already known.
enum Lookahead {
    Unknown,
    Item(Item),
    Ended,
}

/// Joins consecutive text pieces of `events` that arrive within `window` of the
/// first (with a zero window: that are ready at once), up to [`MAX_CHUNK_BYTES`].
/// Every other event passes unchanged and in order.
pub fn coalesce(events: AgentStream, window: Duration) -> AgentStream {
    stream::unfold(
        (events, Lookahead::Unknown),
        move |(mut events, lookahead)| async move {
            let first = match lookahead {
                Lookahead::Item(item) => item,
                Lookahead::Unknown => events.next().await?,
                Lookahead::Ended => return None,
            };
            let mut piece = match Piece::of(first) {
                Joinable::Yes(piece) => piece,
                Joinable::No(other) => return Some((other, (events, Lookahead::Unknown))),
            };
            let deadline = tokio::time::Instant::now() + window;
            let mut lookahead = Lookahead::Unknown;
            while piece.text.len() < MAX_CHUNK_BYTES {
                let next = if window.is_zero() {
                    events.next().now_or_never()
                } else {
                    tokio::time::timeout_at(deadline, events.next()).await.ok()
                };
                match next {
                    None => break, // nothing more yet: send what we have
                    Some(Some(item)) if piece.joins(&item) => piece.push(item),
                    Some(Some(other)) => {
                        lookahead = Lookahead::Item(other);
                        break;
                    }
                    Some(None) => {
                        lookahead = Lookahead::Ended;
                        break;
                    }
                }
            }
            Some((Ok(piece.into_event()), (events, lookahead)))
        },
    )
    .boxed()
}

enum Joinable {
    Yes(Piece),
    No(Item),
}

/// Text being joined: answer text or reasoning.
struct Piece {
    reasoning: bool,
    text: String,
}

impl Piece {
    /// The piece `item` starts, or `item` back when it cannot be joined.
    fn of(item: Item) -> Joinable {
        match item {
            Ok(AgentEvent::Text(text)) => Joinable::Yes(Self {
                reasoning: false,
                text,
            }),
            Ok(AgentEvent::Event(TurnEvent::Reasoning { text })) => Joinable::Yes(Self {
                reasoning: true,
                text,
            }),
            other => Joinable::No(other),
        }
    }

    /// Whether `item` continues this piece.
    fn joins(&self, item: &Item) -> bool {
        match item {
            Ok(AgentEvent::Text(_)) => !self.reasoning,
            Ok(AgentEvent::Event(TurnEvent::Reasoning { .. })) => self.reasoning,
            _ => false,
        }
    }

    fn push(&mut self, item: Item) {
        if let Ok(AgentEvent::Text(more) | AgentEvent::Event(TurnEvent::Reasoning { text: more })) =
            item
        {
            self.text.push_str(&more);
        }
    }

    fn into_event(self) -> AgentEvent {
        if self.reasoning {
            AgentEvent::Event(TurnEvent::Reasoning { text: self.text })
        } else {
            AgentEvent::Text(self.text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::FinishReason;

    fn text(piece: &str) -> Item {
        Ok(AgentEvent::Text(piece.into()))
    }

    fn finished() -> Item {
        Ok(AgentEvent::Finished(FinishReason::Stop))
    }

    async fn collect(events: AgentStream, window: Duration) -> Vec<Item> {
        coalesce(events, window).collect().await
    }

    #[tokio::test]
    async fn pieces_ready_together_become_one_chunk() {
        let events = stream::iter([text("a "), text("b "), text("c"), finished()]).boxed();
        assert_eq!(
            collect(events, Duration::ZERO).await,
            vec![text("a b c"), finished()]
        );
    }

    #[tokio::test]
    async fn pieces_apart_in_time_stay_apart_with_no_window() {
        let events = stream::iter([text("a "), text("b")])
            .then(|item| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                item
            })
            .chain(stream::iter([finished()]))
            .boxed();
        let merged = collect(events, Duration::ZERO).await;
        assert_eq!(merged, vec![text("a "), text("b"), finished()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_waits_for_close_pieces() {
        let delays = [0, 2, 4, 50];
        let events = stream::iter(delays.into_iter().zip(["a ", "b ", "c ", "d"]))
            .then(|(delay, piece)| async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                text(piece)
            })
            .chain(stream::iter([finished()]))
            .boxed();
        let merged = collect(events, Duration::from_millis(10)).await;
        assert_eq!(merged, vec![text("a b c "), text("d"), finished()]);
    }

    #[tokio::test]
    async fn errors_and_the_end_keep_their_place() {
        let failure = Err(AgentError::Upstream("broken".into()));
        let events = stream::iter([text("a "), text("b"), failure.clone()]).boxed();
        assert_eq!(
            collect(events, Duration::ZERO).await,
            vec![text("a b"), failure]
        );
        let events = stream::iter([text("only")]).boxed();
        assert_eq!(collect(events, Duration::ZERO).await, vec![text("only")]);
    }

    fn thought(piece: &str) -> Item {
        Ok(AgentEvent::Event(TurnEvent::Reasoning {
            text: piece.into(),
        }))
    }

    #[tokio::test]
    async fn reasoning_is_joined_apart_from_the_answer() {
        let events = stream::iter([
            thought("let "),
            thought("me see"),
            text("a "),
            text("b"),
            thought("hm"),
            finished(),
        ])
        .boxed();
        assert_eq!(
            collect(events, Duration::ZERO).await,
            vec![
                thought("let me see"),
                text("a b"),
                thought("hm"),
                finished()
            ]
        );
    }

    #[tokio::test]
    async fn chunks_stop_growing_at_the_cap() {
        let piece = "x".repeat(MAX_CHUNK_BYTES / 2 + 1);
        let events = stream::iter([text(&piece), text(&piece), text(&piece)]).boxed();
        let sizes: Vec<usize> = collect(events, Duration::ZERO)
            .await
            .into_iter()
            .map(|item| match item {
                Ok(AgentEvent::Text(text)) => text.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, vec![piece.len() * 2, piece.len()]);
    }
}
