//! A bound on how long one answer may grow.
//!
//! A model that streams without end would make the gateway's memory, the stored
//! history and every later prompt of the conversation grow without bound. The
//! model's own token limit (`llm.max_tokens`) is not enough: a remote agent or a
//! misbehaving server may ignore it. [`cap_answer`] counts the bytes of the answer
//! text and of the model's reasoning; once the next piece would go past the limit,
//! the answer keeps what fits and the turn ends as if the model had hit its token
//! limit (`done`/`length`), the model's request dropped at once.

use futures_util::stream::{self, StreamExt};

use super::{AgentError, AgentEvent, AgentStream};
use crate::conversation::{FinishReason, TurnEvent};

type Item = Result<AgentEvent, AgentError>;

enum State {
    /// Still reading the inner stream; `used` bytes counted so far.
    Open {
        events: AgentStream,
        used: usize,
    },
    /// The limit was reached and the part that fit sent: the end comes next.
    Capped,
    Done,
}

/// Passes `events` on until its answer and reasoning text together would exceed
/// `max_bytes`; then sends the part of that piece that fits (cut at a character
/// boundary, left out when empty) and `Finished(Length)`, and drops `events`
/// (which cancels the model's request). Every other event passes unchanged.
pub fn cap_answer(events: AgentStream, max_bytes: usize) -> AgentStream {
    stream::unfold(State::Open { events, used: 0 }, move |state| async move {
        match state {
            State::Open { mut events, used } => {
                let item = events.next().await?;
                let Some(size) = counted_bytes(&item) else {
                    return Some((item, State::Open { events, used }));
                };
                let room = max_bytes.saturating_sub(used);
                if size <= room {
                    let used = used + size;
                    return Some((item, State::Open { events, used }));
                }
                // Dropped before anything more is sent, so the model stops now
                // rather than when whoever reads this stream lets go of it.
                drop(events);
                match cut(item, room) {
                    Some(part) => Some((part, State::Capped)),
                    None => Some((length(), State::Done)),
                }
            }
            State::Capped => Some((length(), State::Done)),
            State::Done => None,
        }
    })
    .boxed()
}

fn length() -> Item {
    Ok(AgentEvent::Finished(FinishReason::Length))
}

/// The bytes `item` counts against the limit, if it counts at all.
fn counted_bytes(item: &Item) -> Option<usize> {
    match item {
        Ok(AgentEvent::Text(text) | AgentEvent::Event(TurnEvent::Reasoning { text })) => {
            Some(text.len())
        }
        _ => None,
    }
}

/// The first `room` bytes at most of a counted `item`'s text, ending on a
/// character boundary; `None` when nothing is left (pieces are never empty).
fn cut(item: Item, room: usize) -> Option<Item> {
    let shorten = |mut text: String| {
        let end = (0..=room.min(text.len()))
            .rev()
            .find(|&end| text.is_char_boundary(end))
            .unwrap_or(0);
        text.truncate(end);
        Some(text).filter(|text| !text.is_empty())
    };
    match item {
        Ok(AgentEvent::Text(text)) => shorten(text).map(|text| Ok(AgentEvent::Text(text))),
        Ok(AgentEvent::Event(TurnEvent::Reasoning { text })) => {
            shorten(text).map(|text| Ok(AgentEvent::Event(TurnEvent::Reasoning { text })))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn text(piece: &str) -> Item {
        Ok(AgentEvent::Text(piece.into()))
    }

    fn thought(piece: &str) -> Item {
        Ok(AgentEvent::Event(TurnEvent::Reasoning {
            text: piece.into(),
        }))
    }

    fn finished(reason: FinishReason) -> Item {
        Ok(AgentEvent::Finished(reason))
    }

    async fn capped(items: Vec<Item>, max_bytes: usize) -> Vec<Item> {
        cap_answer(stream::iter(items).boxed(), max_bytes)
            .collect()
            .await
    }

    #[tokio::test]
    async fn an_answer_within_the_limit_is_unchanged() {
        let items = vec![
            thought("hm "),
            text("a "),
            text("b"),
            finished(FinishReason::Stop),
        ];
        assert_eq!(capped(items.clone(), 6).await, items);
    }

    #[tokio::test]
    async fn text_is_cut_at_a_character_boundary() {
        // "é" is two bytes: a limit of 4 ends inside the second one.
        let items = vec![text("ab"), text("éé"), finished(FinishReason::Stop)];
        assert_eq!(
            capped(items, 5).await,
            vec![text("ab"), text("é"), finished(FinishReason::Length)]
        );
        // Nothing of the piece fits: no empty chunk, only the end.
        let items = vec![text("ab"), text("é"), text("c")];
        assert_eq!(
            capped(items, 3).await,
            vec![text("ab"), finished(FinishReason::Length)]
        );
    }

    #[tokio::test]
    async fn reasoning_counts_against_the_limit() {
        let items = vec![thought("think"), text("answer"), text("more")];
        assert_eq!(
            capped(items, 8).await,
            vec![
                thought("think"),
                text("ans"),
                finished(FinishReason::Length)
            ]
        );
        let items = vec![thought("thinking on"), text("answer")];
        assert_eq!(
            capped(items, 5).await,
            vec![thought("think"), finished(FinishReason::Length)]
        );
    }

    /// Endless text; sets its flag when dropped.
    struct Endless(Arc<AtomicBool>);

    impl Drop for Endless {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_inner_stream_is_dropped_once_capped() {
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = Endless(dropped.clone());
        let endless = stream::repeat_with(move || {
            let _keep = &guard;
            text("more ")
        })
        .boxed();
        let mut events = cap_answer(endless, 12);
        assert_eq!(events.next().await, Some(text("more ")));
        assert_eq!(events.next().await, Some(text("more ")));
        assert!(!dropped.load(Ordering::SeqCst));
        assert_eq!(events.next().await, Some(text("mo")));
        assert!(dropped.load(Ordering::SeqCst), "the model still streams");
        assert_eq!(events.next().await, Some(finished(FinishReason::Length)));
        assert_eq!(events.next().await, None);
    }

    #[tokio::test]
    async fn errors_and_other_events_pass() {
        let tool_results = Ok(AgentEvent::Event(TurnEvent::References {
            sources: Vec::new(),
        }));
        let failure = Err(AgentError::Upstream("broken".into()));
        let items = vec![tool_results.clone(), text("abc"), failure.clone()];
        assert_eq!(
            capped(items, 3).await,
            vec![tool_results, text("abc"), failure]
        );
    }
}
