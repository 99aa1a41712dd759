//! `storage.url = "memory"`: conversations in a map, gone when the process ends.
//!
//! For tests and benchmarks, so it is deliberately unbounded: nothing is evicted
//! but by retention ([`Storage::purge_older_than`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use futures_util::future::{BoxFuture, FutureExt, ready};
use uuid::Uuid;

use super::{
    SavedMessage, SessionRecord, Storage, StorageError, StoredMessage, StoredRole, StoredSession,
    Timestamp, TurnOutcome,
};

/// Sessions and their messages in memory.
#[derive(Default)]
pub struct MemoryStorage {
    sessions: Mutex<HashMap<Uuid, MemorySession>>,
}

struct MemorySession {
    record: SessionRecord,
    created: Timestamp,
    updated: Timestamp,
    messages: Vec<MemoryMessage>,
    /// The messages' [`StoredMessage::write_id`]s: each is stored once.
    write_ids: HashSet<Uuid>,
}

impl MemorySession {
    fn new(record: SessionRecord, now: Timestamp) -> Self {
        Self {
            record,
            created: now,
            updated: now,
            messages: Vec::new(),
            write_ids: HashSet::new(),
        }
    }
}

struct MemoryMessage {
    saved: SavedMessage,
    /// A question whose turn was dropped: kept, but not loaded (as in the SQL engines).
    dropped: bool,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<Uuid, MemorySession>> {
        // A panic while the lock was held cannot leave the map half-changed: every
        // change below is a single insert, push or retain.
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn create_session(&self, session: SessionRecord) -> BoxFuture<'_, Result<(), StorageError>> {
        let now = Timestamp::now();
        self.sessions()
            .entry(session.id)
            .or_insert_with(|| MemorySession::new(session, now));
        ready(Ok(())).boxed()
    }

    fn append_message(
        &self,
        session_id: Uuid,
        message: StoredMessage,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        let result = match self.sessions().get_mut(&session_id) {
            // Stored before: its batch is being stored again.
            Some(session) if session.write_ids.contains(&message.write_id) => Ok(()),
            Some(session) => {
                session.write_ids.insert(message.write_id);
                let now = Timestamp::now();
                if message.role == StoredRole::Assistant {
                    // An answer ends its question's turn.
                    let questions = (session.messages.iter_mut())
                        .filter(|stored| stored.saved.turn_id == message.turn_id);
                    questions.for_each(|question| question.saved.pending = false);
                }
                // Never backwards, as in the SQL engines.
                session.updated = session.updated.max(now);
                session.messages.push(MemoryMessage {
                    saved: SavedMessage {
                        turn_id: message.turn_id,
                        pending: message.role == StoredRole::User,
                        role: message.role,
                        content: message.content,
                        created: now,
                    },
                    dropped: false,
                });
                Ok(())
            }
            None => Err(StorageError::NotFound),
        };
        ready(result).boxed()
    }

    fn adopt_question(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        text: String,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        let now = Timestamp::now();
        let mut sessions = self.sessions();
        let session = sessions.entry(session_id).or_insert_with(|| {
            let record = SessionRecord {
                id: session_id,
                user_id: None,
                gateway: None,
            };
            MemorySession::new(record, now)
        });
        if !(session.messages.iter()).any(|message| message.saved.turn_id == turn_id) {
            session.updated = session.updated.max(now);
            session.messages.push(MemoryMessage {
                saved: SavedMessage {
                    turn_id,
                    role: StoredRole::User,
                    content: text,
                    created: now,
                    pending: true,
                },
                dropped: false,
            });
        }
        ready(Ok(())).boxed()
    }

    fn end_turn(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        outcome: TurnOutcome,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        if let Some(session) = self.sessions().get_mut(&session_id) {
            let questions = session.messages.iter_mut().filter(|message| {
                message.saved.turn_id == turn_id && message.saved.role == StoredRole::User
            });
            for question in questions {
                question.saved.pending = false;
                question.dropped = outcome == TurnOutcome::Dropped;
            }
        }
        ready(Ok(())).boxed()
    }

    fn load_session(
        &self,
        session_id: Uuid,
        latest: usize,
    ) -> BoxFuture<'_, Result<Option<StoredSession>, StorageError>> {
        let loaded = self.sessions().get(&session_id).map(|session| {
            let mut messages: Vec<SavedMessage> = (session.messages.iter().rev())
                .filter(|message| !message.dropped)
                .take(latest)
                .map(|message| message.saved.clone())
                .collect();
            messages.reverse();
            StoredSession {
                record: session.record.clone(),
                created: session.created,
                updated: session.updated,
                messages,
            }
        });
        ready(Ok(loaded)).boxed()
    }

    fn claim(
        &self,
        session_id: Uuid,
        gateway: String,
    ) -> BoxFuture<'_, Result<Option<String>, StorageError>> {
        let result = match self.sessions().get_mut(&session_id) {
            Some(session) => {
                let previous = session.record.gateway.replace(gateway);
                Ok(previous.filter(|previous| Some(previous) != session.record.gateway.as_ref()))
            }
            None => Err(StorageError::NotFound),
        };
        ready(result).boxed()
    }

    fn purge_older_than(&self, cutoff: Timestamp) -> BoxFuture<'_, Result<u64, StorageError>> {
        let mut sessions = self.sessions();
        let before = sessions.len();
        sessions.retain(|_, session| session.updated >= cutoff);
        let purged = (before - sessions.len()) as u64;
        ready(Ok(purged)).boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        ready(Ok(())).boxed()
    }
}
