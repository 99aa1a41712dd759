//! A batch of writes regrouped by kind, so that an engine stores it in a few
//! statements (one per kind and [`ROWS_PER_STATEMENT`] rows) instead of one or two
//! per write: each statement is a round trip (to SQLite's worker thread, or to
//! PostgreSQL over the network), parsed and run on its own.
//!
//! Regrouping changes the order writes are applied in, but not what they leave:
//! - sessions go first: a session that exists sooner only lets its messages in,
//!   and creating one is idempotent;
//! - messages keep their order among themselves, which is the conversation's
//!   order (the engines number them as they are inserted);
//! - outcomes go last: an outcome names a question stored before it (earlier in
//!   the batch or in an earlier batch), and no other write of a batch touches it.

use uuid::Uuid;

use super::{SessionRecord, StoredMessage, TurnOutcome, Write};

/// The most rows one statement writes, which keeps every statement well under the
/// engines' limits on bound parameters (SQLite 32,766, PostgreSQL 65,535).
pub const ROWS_PER_STATEMENT: usize = 256;

/// One batch's writes, by kind.
#[derive(Default)]
pub struct GroupedWrites<'a> {
    pub sessions: Vec<&'a SessionRecord>,
    /// Each with its session, in the order they were written.
    pub messages: Vec<(Uuid, &'a StoredMessage)>,
    /// The sessions `messages` belong to, each once (sorted): their updated time
    /// becomes now, and each must exist.
    pub sessions_written_to: Vec<Uuid>,
    /// Session, turn, outcome; in the order they were written.
    pub outcomes: Vec<(Uuid, Uuid, TurnOutcome)>,
}

impl<'a> GroupedWrites<'a> {
    pub fn of(writes: &'a [Write]) -> Self {
        let mut grouped = Self::default();
        for write in writes {
            match write {
                Write::Session(session) => grouped.sessions.push(session),
                Write::Message(session_id, message) => {
                    grouped.messages.push((*session_id, message));
                    grouped.sessions_written_to.push(*session_id);
                }
                Write::TurnEnd {
                    session_id,
                    turn_id,
                    outcome,
                } => grouped.outcomes.push((*session_id, *turn_id, *outcome)),
            }
        }
        grouped.sessions_written_to.sort_unstable();
        grouped.sessions_written_to.dedup();
        grouped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StoredRole;

    #[test]
    fn writes_are_grouped_by_kind_keeping_the_order_of_each() {
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let (turn_a, turn_b) = (Uuid::new_v4(), Uuid::new_v4());
        let session = |id| SessionRecord {
            id,
            user_id: None,
            gateway: None,
        };
        let writes = vec![
            Write::Session(session(first)),
            Write::Message(first, StoredMessage::new(turn_a, StoredRole::User, "a?")),
            Write::Session(session(second)),
            Write::Message(second, StoredMessage::new(turn_b, StoredRole::User, "b?")),
            Write::TurnEnd {
                session_id: second,
                turn_id: turn_b,
                outcome: TurnOutcome::Dropped,
            },
            Write::Message(
                first,
                StoredMessage::new(turn_a, StoredRole::Assistant, "a."),
            ),
        ];
        let grouped = GroupedWrites::of(&writes);

        let sessions: Vec<Uuid> = grouped.sessions.iter().map(|session| session.id).collect();
        assert_eq!(sessions, [first, second]);
        let messages: Vec<(Uuid, &str)> = grouped
            .messages
            .iter()
            .map(|(session_id, message)| (*session_id, message.content.as_str()))
            .collect();
        assert_eq!(messages, [(first, "a?"), (second, "b?"), (first, "a.")]);
        let mut written_to = [first, second];
        written_to.sort_unstable();
        assert_eq!(grouped.sessions_written_to, written_to);
        assert_eq!(grouped.outcomes, [(second, turn_b, TurnOutcome::Dropped)]);
    }
}
