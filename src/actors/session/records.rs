//! What a session writes down, so that it outlives its gateway's memory: itself
//! when it starts, a question when it is accepted, an answer when its turn ends
//! (docs/storage.md). Writes go through the gateway's
//! [`Recorder`](crate::storage::Recorder), in order and off the turn's path; a
//! session loaded back from storage starts from what was written.

use uuid::Uuid;

use super::SessionActor;
use super::history::History;
use super::reassembly::TurnEnd;
use crate::conversation::{ChatError, ErrorCode};
use crate::storage::{SavedMessage, SessionRecord, StoredMessage, StoredSession, Write};

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

    /// Writes the answer of a turn that ended (a failed one has none worth keeping).
    pub(super) fn record_answer(&self, turn_id: Uuid, answer: &str, end: &TurnEnd) {
        if matches!(end, TurnEnd::Failed(_)) || answer.is_empty() {
            return;
        }
        let message = StoredMessage::assistant(turn_id, answer);
        self.deps.recorder.record(Write::Message(self.id, message));
    }
}

impl History {
    /// The history of a session loaded from storage: its last `window` messages.
    pub fn restored(messages: &[SavedMessage], window: usize) -> Self {
        let mut history = Self::default();
        for message in messages {
            history.remember(message.to_chat(), Some(message.turn_id), window);
        }
        history
    }
}
