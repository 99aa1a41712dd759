//! What a session writes down, so that it outlives its gateway's memory: itself
//! (with any conversation a `POST /chat` client brought along) when it starts, a
//! question when it is accepted, its answer — or how its turn ended, if without
//! one — when the turn ends (docs/storage.md). Writes go through the gateway's
//! [`Recorder`](crate::storage::Recorder), in order and off the turn's path.
//!
//! A session loaded back from storage starts from what was written: the
//! conversation, and the questions whose turns never ended (their gateway stopped,
//! died or gave the session away), which it asks again.

use uuid::Uuid;

use super::SessionActor;
use super::history::{History, HistoryWindow};
use super::reassembly::TurnEnd;
use crate::conversation::{ChatError, ErrorCode, UserMessage};
use crate::storage::{
    SavedMessage, SessionRecord, StoredMessage, StoredRole, StoredSession, TurnOutcome, Write,
};

/// How a WebSocket's session begins.
pub enum Opening {
    /// A new session.
    New,
    /// The client asked for this session id, which is nowhere: a new session, and
    /// the client is told.
    Unknown(String),
    /// A session loaded from storage, to go on with.
    Stored(StoredSession),
}

impl SessionActor {
    /// Writes the session down (nothing changes if it already is).
    pub(super) fn record_session(&self) {
        self.deps.recorder.record(Write::Session(SessionRecord {
            id: self.id,
            user_id: self.user_id.clone(),
            gateway: Some(self.deps.gateway_id.clone()),
        }));
    }

    /// Writes down the conversation a `POST /chat` client brought along, which the
    /// session starts from, so that it comes back with the session: each question,
    /// with the answer after it, as a turn of its own that ended. (System messages
    /// are not stored.)
    pub(super) fn record_brought_history(&self) {
        let mut turn_id = None;
        for message in self.history.brought_along() {
            let role = match StoredRole::try_from(message.role) {
                Ok(role) => role,
                Err(_) => continue,
            };
            let turn = match (role, turn_id) {
                (StoredRole::Assistant, Some(turn)) => turn,
                _ => *turn_id.insert(Uuid::new_v4()),
            };
            let stored = StoredMessage::new(turn, role, message.content.clone());
            self.deps.recorder.record(Write::Message(self.id, stored));
            if role == StoredRole::User {
                self.record_outcome(turn, TurnOutcome::Kept);
            }
        }
    }

    /// Refuses a new turn while conversations cannot be stored: it could not be
    /// kept.
    pub(super) fn check_storage(&self) -> Result<(), ChatError> {
        if self.deps.recorder.is_available() {
            return Ok(());
        }
        Err(ChatError::new(
            ErrorCode::Unavailable,
            "conversations cannot be stored right now; try again shortly",
        ))
    }

    pub(super) fn record_question(&self, turn_id: Uuid, text: String) {
        let message = StoredMessage::user(turn_id, text);
        self.deps.recorder.record(Write::Message(self.id, message));
    }

    /// Writes how a turn ended: its answer, or else its outcome (a failed turn has
    /// no answer worth keeping). One write either way, as an answer ends its turn.
    pub(super) fn record_turn_end(&self, turn_id: Uuid, answer: &str, end: &TurnEnd) {
        match end {
            TurnEnd::Finished(_) if !answer.is_empty() => {
                let message = StoredMessage::assistant(turn_id, answer);
                self.deps.recorder.record(Write::Message(self.id, message));
            }
            TurnEnd::Finished(_) => self.record_outcome(turn_id, TurnOutcome::Kept),
            TurnEnd::Failed(_) => self.record_outcome(turn_id, TurnOutcome::Dropped),
        }
    }

    /// Writes that turns which never started were dropped (their client left).
    pub(super) fn record_dropped(&self, turn_ids: Vec<Uuid>) {
        for turn_id in turn_ids {
            self.record_outcome(turn_id, TurnOutcome::Dropped);
        }
    }

    fn record_outcome(&self, turn_id: Uuid, outcome: TurnOutcome) {
        self.deps.recorder.record(Write::TurnEnd {
            session_id: self.id,
            turn_id,
            outcome,
        });
    }
}

/// A stored session's conversation as the session takes it back: the history,
/// and the questions still to answer, oldest first.
pub(super) fn take_back(
    messages: &[SavedMessage],
    window: HistoryWindow,
) -> (History, Vec<(Uuid, UserMessage)>) {
    let mut history = History::default();
    let mut pending = Vec::new();
    for message in in_turn_order(messages) {
        if message.pending {
            // Asked again with every tool: which ones it named was not stored.
            pending.push((message.turn_id, UserMessage::from(message.content.as_str())));
        } else {
            history.remember(message.to_chat(), Some(message.turn_id), window);
        }
    }
    (history, pending)
}

/// `messages` (in the order they were stored) with every answer right after its
/// question: a question that waited for an earlier turn was stored before that
/// turn's answer, but the conversation is question, answer, question, answer.
fn in_turn_order(messages: &[SavedMessage]) -> Vec<&SavedMessage> {
    let mut ordered: Vec<&SavedMessage> = Vec::with_capacity(messages.len());
    for message in messages {
        let question = (message.role == StoredRole::Assistant)
            .then(|| {
                ordered.iter().rposition(|earlier| {
                    earlier.turn_id == message.turn_id && earlier.role == StoredRole::User
                })
            })
            .flatten();
        match question {
            Some(at) => ordered.insert(at + 1, message),
            None => ordered.push(message),
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ChatMessage, Role};
    use crate::storage::Timestamp;

    fn saved(turn_id: Uuid, role: StoredRole, content: &str, pending: bool) -> SavedMessage {
        SavedMessage {
            turn_id,
            role,
            content: content.into(),
            created: Timestamp::now(),
            pending,
        }
    }

    #[test]
    fn answers_follow_their_questions_and_pending_questions_are_asked_again() {
        let [one, two, three] = [(); 3].map(|()| Uuid::new_v4());
        // `two` waited for `one`; `three` was running when the gateway died.
        let stored = [
            saved(one, StoredRole::User, "q1", false),
            saved(two, StoredRole::User, "q2", false),
            saved(one, StoredRole::Assistant, "a1", false),
            saved(two, StoredRole::Assistant, "a2", false),
            saved(three, StoredRole::User, "q3", true),
        ];
        let (history, pending) = take_back(
            &stored,
            HistoryWindow {
                messages: 10,
                bytes: usize::MAX,
            },
        );
        assert_eq!(
            history.messages(),
            [
                ChatMessage::user("q1"),
                ChatMessage::assistant("a1"),
                ChatMessage::user("q2"),
                ChatMessage::assistant("a2"),
            ]
        );
        assert_eq!(history.entries()[1].turn_id, Some(one));
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].0, pending[0].1.text.as_str()), (three, "q3"));
        assert_eq!(pending[0].1.tools, None);
    }

    #[test]
    fn an_answer_whose_question_is_outside_the_window_stays_first() {
        let turn = Uuid::new_v4();
        let stored = [
            saved(turn, StoredRole::Assistant, "a", false),
            saved(Uuid::new_v4(), StoredRole::User, "q", false),
        ];
        let (history, pending) = take_back(
            &stored,
            HistoryWindow {
                messages: 10,
                bytes: usize::MAX,
            },
        );
        let roles: Vec<Role> = history.messages().iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::Assistant, Role::User]);
        assert!(pending.is_empty());
    }
}
