//! The conversation a session remembers: a window of its latest messages, which
//! every question carries to the agent.

use std::collections::VecDeque;

use super::reassembly::TurnEnd;
use crate::conversation::ChatMessage;

/// The latest messages of a conversation, oldest first, at most `window` of them
/// (`agent.max_history_messages`; passed in rather than kept, as it is the same for
/// every session).
#[derive(Debug, Default)]
pub struct History {
    messages: VecDeque<ChatMessage>,
}

impl History {
    /// The last `window` of `messages` (oldest first).
    pub fn seeded(messages: Vec<ChatMessage>, window: usize) -> Self {
        let mut history = Self::default();
        for message in messages {
            history.remember(message, window);
        }
        history
    }

    /// The messages to send with a question, oldest first.
    pub fn messages(&self) -> Vec<ChatMessage> {
        self.messages.iter().cloned().collect()
    }

    /// A turn asking `question` ended with `answer` so far. A finished turn joins
    /// the conversation (a cancelled one too: the user saw what was said); a failed
    /// one does not, so asking again starts clean.
    pub fn turn_ended(&mut self, question: String, answer: String, end: &TurnEnd, window: usize) {
        if let TurnEnd::Failed(..) = end {
            return;
        }
        self.remember(ChatMessage::user(question), window);
        if !answer.is_empty() {
            self.remember(ChatMessage::assistant(answer), window);
        }
    }

    fn remember(&mut self, message: ChatMessage, window: usize) {
        while !self.messages.is_empty() && self.messages.len() >= window {
            self.messages.pop_front();
        }
        if window > 0 {
            self.messages.push_back(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ChatError, ErrorCode, FinishReason};

    fn finished() -> TurnEnd {
        TurnEnd::Finished(FinishReason::Stop)
    }

    #[test]
    fn a_finished_turn_joins_with_its_answer() {
        let mut history = History::default();
        history.turn_ended("hi".into(), "hello".into(), &finished(), 10);
        assert_eq!(
            history.messages(),
            vec![ChatMessage::user("hi"), ChatMessage::assistant("hello")]
        );
    }

    #[test]
    fn a_cancelled_turn_joins_with_what_was_said() {
        let mut history = History::default();
        let cancelled = TurnEnd::Finished(FinishReason::Cancelled);
        history.turn_ended("tell me".into(), "Once".into(), &cancelled, 10);
        history.turn_ended("stop".into(), String::new(), &cancelled, 10);
        assert_eq!(
            history.messages(),
            vec![
                ChatMessage::user("tell me"),
                ChatMessage::assistant("Once"),
                ChatMessage::user("stop"),
            ]
        );
    }

    #[test]
    fn a_failed_turn_does_not_join() {
        let mut history = History::default();
        let failed = TurnEnd::Failed(ChatError::new(ErrorCode::Upstream, "model down"));
        history.turn_ended("hi".into(), "hel".into(), &failed, 10);
        assert_eq!(history.messages(), vec![]);
    }

    #[test]
    fn the_window_keeps_the_latest_messages() {
        let seed = (0..5).map(|n| ChatMessage::user(n.to_string())).collect();
        let mut history = History::seeded(seed, 3);
        let kept = |history: &History| {
            let messages = history.messages();
            messages.into_iter().map(|m| m.content).collect::<Vec<_>>()
        };
        assert_eq!(kept(&history), ["2", "3", "4"]);
        history.turn_ended("q".into(), "a".into(), &finished(), 3);
        assert_eq!(kept(&history), ["4", "q", "a"]);
    }
}
