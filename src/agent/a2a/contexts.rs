//! What the A2A agent remembers of each conversation (`contextId`): the
//! exchanges of its completed tasks, kept in the conversation storage
//! (docs/storage.md), so a later message in the same context sees the earlier
//! ones — after a restart too, and on any agent sharing the same PostgreSQL.
//!
//! A context is stored as a session whose id is derived from the user and the
//! `contextId` (a name-based UUID), so two users' contexts of the same name are
//! two conversations, and a context never takes the id of a chat session.
//! Bounded as sessions are: the model sees the newest messages within the
//! agent's history window (messages and bytes), and contexts untouched for
//! `storage.retention_days` are purged with the sessions.

use std::sync::Arc;

use uuid::Uuid;

use crate::conversation::ChatMessage;
use crate::storage::{SessionRecord, Storage, StorageError, StoredMessage, Write};

/// The namespace of the session ids of A2A contexts.
const CONTEXT_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_2c4e_9b3d_4f8a_8e27_5d0c_1b9a_3e64);

/// The conversations of an A2A agent, by user and `contextId`.
pub struct Contexts {
    storage: Arc<dyn Storage>,
    max_messages: usize,
    max_bytes: usize,
}

impl Contexts {
    /// Contexts kept in `storage`, each read as at most `max_messages` messages
    /// of at most `max_bytes` of text together.
    pub fn new(storage: Arc<dyn Storage>, max_messages: usize, max_bytes: usize) -> Self {
        Self {
            storage,
            max_messages,
            max_bytes,
        }
    }

    /// The newest messages of `owner`'s context `context_id` within the window,
    /// oldest first (none for a new one).
    pub async fn history(
        &self,
        owner: Option<&str>,
        context_id: &str,
    ) -> Result<Vec<ChatMessage>, StorageError> {
        let id = session_id(owner, context_id);
        let Some(session) = self.storage.load_session(id, self.max_messages).await? else {
            return Ok(Vec::new());
        };
        let messages = session.messages.iter().filter(|message| !message.pending);
        Ok(newest_within(
            messages.map(|message| message.to_chat()).collect(),
            self.max_bytes,
        ))
    }

    /// Adds a completed exchange to `owner`'s context `context_id`.
    pub async fn remember(
        &self,
        owner: Option<&str>,
        context_id: &str,
        question: String,
        answer: String,
    ) -> Result<(), StorageError> {
        let id = session_id(owner, context_id);
        let turn_id = Uuid::new_v4();
        let writes = [
            Write::Session(SessionRecord {
                id,
                user_id: owner.map(str::to_owned),
                gateway: None,
            }),
            Write::Message(id, StoredMessage::user(turn_id, question)),
            Write::Message(id, StoredMessage::assistant(turn_id, answer)),
        ];
        self.storage.apply(&writes).await
    }
}

/// The session id of `owner`'s context `context_id`.
fn session_id(owner: Option<&str>, context_id: &str) -> Uuid {
    // The owner comes first and ends at a NUL, which no user id contains.
    let name = format!("{}\0{context_id}", owner.unwrap_or_default());
    Uuid::new_v5(&CONTEXT_NAMESPACE, name.as_bytes())
}

/// The newest of `messages` holding at most `max_bytes` of text together.
fn newest_within(mut messages: Vec<ChatMessage>, max_bytes: usize) -> Vec<ChatMessage> {
    let mut bytes: usize = messages.iter().map(|message| message.content.len()).sum();
    let mut drop = 0;
    while drop < messages.len() && bytes > max_bytes {
        bytes -= messages[drop].content.len();
        drop += 1;
    }
    messages.drain(..drop);
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;

    fn contents(messages: &[ChatMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    fn contexts(max_messages: usize, max_bytes: usize) -> Contexts {
        Contexts::new(Arc::new(MemoryStorage::default()), max_messages, max_bytes)
    }

    async fn remember(contexts: &Contexts, owner: Option<&str>, context: &str, q: &str, a: &str) {
        contexts
            .remember(owner, context, q.into(), a.into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_context_remembers_its_exchanges_and_others_are_apart() {
        let contexts = contexts(64, 1 << 20);
        assert!(contexts.history(None, "a").await.unwrap().is_empty());
        remember(&contexts, None, "a", "q1", "a1").await;
        remember(&contexts, None, "a", "q2", "a2").await;
        remember(&contexts, None, "b", "x", "y").await;
        remember(&contexts, Some("alice"), "a", "hers", "yes").await;
        let history = contexts.history(None, "a").await.unwrap();
        assert_eq!(contents(&history), ["q1", "a1", "q2", "a2"]);
        let history = contexts.history(None, "b").await.unwrap();
        assert_eq!(contents(&history), ["x", "y"]);
        let history = contexts.history(Some("alice"), "a").await.unwrap();
        assert_eq!(contents(&history), ["hers", "yes"], "a user's own context");
    }

    #[tokio::test]
    async fn a_context_is_read_within_the_window() {
        let contexts = contexts(3, 1 << 20);
        for turn in 0..3 {
            let (question, answer) = (format!("q{turn}"), format!("a{turn}"));
            remember(&contexts, None, "a", &question, &answer).await;
        }
        let history = contexts.history(None, "a").await.unwrap();
        assert_eq!(contents(&history), ["a1", "q2", "a2"]);
        let by_bytes = self::contexts(64, 10);
        remember(&by_bytes, None, "a", "12345", "678").await;
        remember(&by_bytes, None, "a", "abc", "de").await;
        let history = by_bytes.history(None, "a").await.unwrap();
        assert_eq!(contents(&history), ["678", "abc", "de"]);
    }

    #[test]
    fn context_ids_are_stable_and_apart_per_user() {
        assert_eq!(session_id(None, "c"), session_id(None, "c"));
        assert_ne!(session_id(None, "c"), session_id(Some("alice"), "c"));
        assert_eq!(session_id(None, "c").get_version_num(), 5);
    }
}
