//! What an A2A agent remembers of each conversation (`contextId`): the messages
//! of its completed tasks, so a later message in the same context sees the
//! earlier ones.
//!
//! Bounded three ways: each context keeps its newest messages within the agent's
//! history window (messages and bytes), contexts untouched for [`IDLE_LIMIT`] are
//! forgotten, and beyond [`MAX_CONTEXTS`] the least recently used one goes. It is
//! memory of one process: agents behind a load balancer use the stateless mode,
//! where the caller sends the history with each message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::conversation::ChatMessage;

/// Contexts kept at once.
pub const MAX_CONTEXTS: usize = 10_000;
/// A context not used for this long is forgotten.
pub const IDLE_LIMIT: Duration = Duration::from_secs(3_600);

/// The conversations of an A2A agent, by `contextId`.
pub struct Contexts {
    max_messages: usize,
    max_bytes: usize,
    inner: Mutex<HashMap<String, Remembered>>,
}

struct Remembered {
    messages: Vec<ChatMessage>,
    touched: Instant,
}

impl Contexts {
    /// Contexts that each keep at most `max_messages` messages of at most
    /// `max_bytes` of text together.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            max_messages,
            max_bytes,
            inner: Mutex::default(),
        }
    }

    /// The messages of `context_id` so far, oldest first (none for a new one).
    pub fn history(&self, context_id: &str) -> Vec<ChatMessage> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.get_mut(context_id) {
            Some(remembered) if now - remembered.touched < IDLE_LIMIT => {
                remembered.touched = now;
                remembered.messages.clone()
            }
            Some(_) => {
                inner.remove(context_id);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Adds a completed exchange to `context_id`.
    pub fn remember(&self, context_id: &str, question: ChatMessage, answer: ChatMessage) {
        let mut inner = self.lock();
        let now = Instant::now();
        if !inner.contains_key(context_id) {
            inner.retain(|_, remembered| now - remembered.touched < IDLE_LIMIT);
            if inner.len() >= MAX_CONTEXTS
                && let Some(oldest) = inner
                    .iter()
                    .min_by_key(|(_, remembered)| remembered.touched)
                    .map(|(id, _)| id.clone())
            {
                inner.remove(&oldest);
            }
        }
        let remembered = inner
            .entry(context_id.to_owned())
            .or_insert_with(|| Remembered {
                messages: Vec::new(),
                touched: now,
            });
        remembered.touched = now;
        remembered.messages.push(question);
        remembered.messages.push(answer);
        let mut bytes: usize = remembered.messages.iter().map(|m| m.content.len()).sum();
        let mut drop = 0;
        let messages = &remembered.messages;
        while drop < messages.len()
            && (messages.len() - drop > self.max_messages || bytes > self.max_bytes)
        {
            bytes -= messages[drop].content.len();
            drop += 1;
        }
        remembered.messages.drain(..drop);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Remembered>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(messages: &[ChatMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn a_context_remembers_its_exchanges_and_others_are_apart() {
        let contexts = Contexts::new(64, 1 << 20);
        assert!(contexts.history("a").is_empty());
        contexts.remember("a", ChatMessage::user("q1"), ChatMessage::assistant("a1"));
        contexts.remember("a", ChatMessage::user("q2"), ChatMessage::assistant("a2"));
        contexts.remember("b", ChatMessage::user("x"), ChatMessage::assistant("y"));
        assert_eq!(contents(&contexts.history("a")), ["q1", "a1", "q2", "a2"]);
        assert_eq!(contents(&contexts.history("b")), ["x", "y"]);
    }

    #[test]
    fn a_context_keeps_its_newest_messages_within_the_window() {
        let contexts = Contexts::new(3, 1 << 20);
        for turn in 0..3 {
            let question = ChatMessage::user(format!("q{turn}"));
            contexts.remember("a", question, ChatMessage::assistant(format!("a{turn}")));
        }
        assert_eq!(contents(&contexts.history("a")), ["a1", "q2", "a2"]);
        let by_bytes = Contexts::new(64, 10);
        by_bytes.remember(
            "a",
            ChatMessage::user("12345"),
            ChatMessage::assistant("678"),
        );
        by_bytes.remember("a", ChatMessage::user("abc"), ChatMessage::assistant("de"));
        assert_eq!(contents(&by_bytes.history("a")), ["678", "abc", "de"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_context_is_forgotten() {
        let contexts = Contexts::new(64, 1 << 20);
        contexts.remember("a", ChatMessage::user("q"), ChatMessage::assistant("a"));
        tokio::time::advance(IDLE_LIMIT - Duration::from_secs(1)).await;
        assert_eq!(contexts.history("a").len(), 2, "used: kept and touched");
        tokio::time::advance(IDLE_LIMIT).await;
        assert!(contexts.history("a").is_empty());
    }
}
