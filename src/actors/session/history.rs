//! The conversation a session remembers: a window of its latest messages, which
//! every question carries to the agent.

use std::collections::VecDeque;

use uuid::Uuid;

use super::reassembly::TurnEnd;
use crate::conversation::{ChatMessage, Role};
use crate::protocol::HistoryEntry;

/// The latest messages of a conversation, oldest first, within a [`HistoryWindow`]
/// (passed in rather than kept, as it is the same for every session).
#[derive(Debug, Default)]
pub struct History {
    messages: VecDeque<Remembered>,
    /// The bytes of the messages' text.
    bytes: usize,
}

/// How much of a conversation a session keeps in memory and sends the agent: the
/// latest `messages` (`agent.max_history_messages`) that hold at most `bytes` of
/// text together (`agent.max_history_bytes`). The newest message always stays.
#[derive(Clone, Copy, Debug)]
pub struct HistoryWindow {
    pub messages: usize,
    pub bytes: usize,
}

/// A message, and the turn it belongs to (none for a conversation a client brought
/// along to `POST /chat`).
#[derive(Debug)]
struct Remembered {
    message: ChatMessage,
    turn_id: Option<Uuid>,
}

impl History {
    /// The last `window` of `messages` (oldest first).
    pub fn seeded(messages: Vec<ChatMessage>, window: HistoryWindow) -> Self {
        let mut history = Self::default();
        for message in messages {
            history.remember(message, None, window);
        }
        history
    }

    /// The bytes of the messages' text: most of what a session holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The messages to send with a question, oldest first.
    pub fn messages(&self) -> Vec<ChatMessage> {
        self.messages.iter().map(|m| m.message.clone()).collect()
    }

    /// The messages a `POST /chat` client brought along (those of no turn), oldest
    /// first.
    pub fn brought_along(&self) -> impl Iterator<Item = &ChatMessage> {
        (self.messages.iter())
            .filter(|m| m.turn_id.is_none())
            .map(|m| &m.message)
    }

    /// What a client coming back is shown: the user's and the assistant's messages,
    /// oldest first, with their turns.
    pub fn entries(&self) -> Vec<HistoryEntry> {
        self.messages
            .iter()
            .filter(|m| m.message.role != Role::System)
            .map(|m| HistoryEntry {
                role: m.message.role,
                content: m.message.content.clone(),
                turn_id: m.turn_id,
            })
            .collect()
    }

    /// A turn asking `question` ended with `answer` so far. A finished turn joins
    /// the conversation (a cancelled one too: the user saw what was said); a failed
    /// one does not, so asking again starts clean.
    pub fn turn_ended(&mut self, turn: TurnText, end: &TurnEnd, window: HistoryWindow) {
        if let TurnEnd::Failed(..) = end {
            return;
        }
        let turn_id = Some(turn.turn_id);
        self.remember(ChatMessage::user(turn.question), turn_id, window);
        if !turn.answer.is_empty() {
            self.remember(ChatMessage::assistant(turn.answer), turn_id, window);
        }
    }

    pub(super) fn remember(
        &mut self,
        message: ChatMessage,
        turn_id: Option<Uuid>,
        window: HistoryWindow,
    ) {
        if window.messages == 0 {
            return;
        }
        let size = message.content.len();
        while !self.messages.is_empty()
            && (self.messages.len() >= window.messages || self.bytes + size > window.bytes)
        {
            if let Some(forgotten) = self.messages.pop_front() {
                self.bytes -= forgotten.message.content.len();
            }
        }
        self.bytes += size;
        self.messages.push_back(Remembered { message, turn_id });
    }
}

/// What a turn said: the user's question and the answer passed on.
#[derive(Debug)]
pub struct TurnText {
    pub turn_id: Uuid,
    pub question: String,
    pub answer: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ChatError, ErrorCode, FinishReason};

    fn window(messages: usize) -> HistoryWindow {
        HistoryWindow {
            messages,
            bytes: usize::MAX,
        }
    }

    fn said(question: &str, answer: &str) -> TurnText {
        TurnText {
            turn_id: Uuid::nil(),
            question: question.into(),
            answer: answer.into(),
        }
    }

    #[test]
    fn entries_name_their_turns_and_leave_system_messages_out() {
        let seed = vec![
            ChatMessage::system("be brief"),
            ChatMessage::user("earlier"),
        ];
        let mut history = History::seeded(seed, window(10));
        let turn_id = Uuid::new_v4();
        let turn = TurnText {
            turn_id,
            question: "hi".into(),
            answer: "hello".into(),
        };
        history.turn_ended(turn, &finished(), window(10));
        let entries = history.entries();
        let shown: Vec<_> = entries
            .iter()
            .map(|e| (e.role, e.content.as_str(), e.turn_id))
            .collect();
        assert_eq!(
            shown,
            [
                (Role::User, "earlier", None),
                (Role::User, "hi", Some(turn_id)),
                (Role::Assistant, "hello", Some(turn_id)),
            ]
        );
    }

    fn finished() -> TurnEnd {
        TurnEnd::Finished(FinishReason::Stop)
    }

    #[test]
    fn a_finished_turn_joins_with_its_answer() {
        let mut history = History::default();
        history.turn_ended(said("hi", "hello"), &finished(), window(10));
        assert_eq!(
            history.messages(),
            vec![ChatMessage::user("hi"), ChatMessage::assistant("hello")]
        );
    }

    #[test]
    fn a_cancelled_turn_joins_with_what_was_said() {
        let mut history = History::default();
        let cancelled = TurnEnd::Finished(FinishReason::Cancelled);
        history.turn_ended(said("tell me", "Once"), &cancelled, window(10));
        history.turn_ended(said("stop", ""), &cancelled, window(10));
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
        history.turn_ended(said("hi", "hel"), &failed, window(10));
        assert_eq!(history.messages(), vec![]);
    }

    #[test]
    fn the_window_keeps_the_latest_messages() {
        let seed = (0..5).map(|n| ChatMessage::user(n.to_string())).collect();
        let mut history = History::seeded(seed, window(3));
        let kept = |history: &History| {
            let messages = history.messages();
            messages.into_iter().map(|m| m.content).collect::<Vec<_>>()
        };
        assert_eq!(kept(&history), ["2", "3", "4"]);
        history.turn_ended(said("q", "a"), &finished(), window(3));
        assert_eq!(kept(&history), ["4", "q", "a"]);
    }

    #[test]
    fn the_window_keeps_the_latest_messages_that_fit_its_bytes() {
        let bytes = HistoryWindow {
            messages: 100,
            bytes: 10,
        };
        let mut history = History::seeded(vec![ChatMessage::user("0123")], bytes);
        history.turn_ended(said("4567", "89ab"), &finished(), bytes);
        let kept: Vec<String> = history.messages().into_iter().map(|m| m.content).collect();
        assert_eq!(kept, ["4567", "89ab"], "12 bytes do not fit in 10");
        // A message bigger than the window alone is still kept: it is the newest.
        history.turn_ended(said("a question of many bytes", ""), &finished(), bytes);
        assert_eq!(history.messages().len(), 1);
        history.turn_ended(said("q", "a"), &finished(), bytes);
        let kept: Vec<String> = history.messages().into_iter().map(|m| m.content).collect();
        assert_eq!(kept, ["q", "a"]);
    }
}
