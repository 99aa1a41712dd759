//! Conversation storage (docs/storage.md): sessions and their messages, kept so a
//! conversation survives a restart and can move from one gateway to another.
//!
//! One [`Storage`] trait, three engines chosen by `storage.url`: SQLite in
//! `<data_dir>/parlor.db` (the default), PostgreSQL (shared by several gateways) and
//! memory (tests, benchmarks). Messages are stored whole — a user message when it
//! is accepted, an answer when its turn ends — never per chunk.
//!
//! Times are [`Timestamp`]s, milliseconds since the Unix epoch, stored as integers
//! by every engine, so both schemas read alike and no date library is needed.

mod error;
mod grouped;
mod memory;
mod postgres;
mod recorder;
mod retention;
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::config::{StorageConfig, StorageUrl};
use crate::conversation::{ChatMessage, Role};

pub use error::StorageError;
pub use memory::MemoryStorage;
pub use postgres::PostgresStorage;
pub use recorder::Recorder;
pub use retention::{PURGE_INTERVAL, PurgerHandle, spawn_purger};
pub use sqlite::SqliteStorage;

/// Where conversations are kept. Every engine behaves the same (the conformance
/// tests in `tests/storage.rs` run against each).
pub trait Storage: Send + Sync + 'static {
    /// `"memory"`, `"sqlite"` or `"postgres"`.
    fn kind(&self) -> &'static str;

    /// Stores a new session, created and updated now. A session that already
    /// exists is left as it is (the call is idempotent).
    fn create_session(&self, session: SessionRecord) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Appends `message` to the session's conversation and makes its updated time
    /// now. [`StorageError::NotFound`] if there is no such session.
    fn append_message(
        &self,
        session_id: Uuid,
        message: StoredMessage,
    ) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Records how the turn of a stored question ended (see [`TurnOutcome`]).
    /// Nothing changes if the session or the question is not there.
    fn end_turn(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        outcome: TurnOutcome,
    ) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Stores the question of a turn whose gateway went away before storing it
    /// (see [`crate::broker::Orphan`]): pending, so the session asks it again when
    /// it is loaded next. Nothing changes if the session has a message of that turn
    /// already; a session that is missing is created (with no user and no holder).
    fn adopt_question(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        text: String,
    ) -> BoxFuture<'_, Result<(), StorageError>>;

    /// The session with its `latest` most recent messages, oldest first, leaving
    /// out the questions whose turns were dropped; `None` if there is no such session.
    fn load_session(
        &self,
        session_id: Uuid,
        latest: usize,
    ) -> BoxFuture<'_, Result<Option<StoredSession>, StorageError>>;

    /// Makes `gateway` the session's holder and answers the one it takes over from:
    /// `None` when nobody held it or `gateway` already did. Atomic, so of two
    /// gateways claiming at once each learns about the other.
    /// [`StorageError::NotFound`] if there is no such session.
    fn claim(
        &self,
        session_id: Uuid,
        gateway: String,
    ) -> BoxFuture<'_, Result<Option<String>, StorageError>>;

    /// Deletes the sessions last updated before `cutoff`, with their messages, and
    /// answers how many sessions went.
    fn purge_older_than(&self, cutoff: Timestamp) -> BoxFuture<'_, Result<u64, StorageError>>;

    /// Answers once the database can be reached (for readiness).
    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Applies `writes` in order: all of them or (where the engine has
    /// transactions) none. One transaction for many writes is what lets a gateway
    /// keep up with thousands of turns a second; the default applies them one by one.
    fn apply<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            for write in writes {
                match write {
                    Write::Session(record) => self.create_session(record.clone()).await?,
                    Write::Message(session_id, message) => {
                        self.append_message(*session_id, message.clone()).await?
                    }
                    Write::TurnEnd {
                        session_id,
                        turn_id,
                        outcome,
                    } => self.end_turn(*session_id, *turn_id, *outcome).await?,
                }
            }
            Ok(())
        })
    }
}

/// One thing to store: a new session, a message of one, or how a turn ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Session(SessionRecord),
    Message(Uuid, StoredMessage),
    TurnEnd {
        session_id: Uuid,
        turn_id: Uuid,
        outcome: TurnOutcome,
    },
}

/// How a turn ended, as stored with its question. A question stored with neither
/// an outcome nor an answer is *pending*: its turn was running or waiting when its
/// gateway stopped, died or gave the session away, and whoever loads the session
/// next asks it again. (An answer is outcome enough: a turn that ended with one
/// needs no second write.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TurnOutcome {
    /// It finished or was cancelled: the question (and the answer, if any) is part
    /// of the conversation.
    Kept,
    /// It failed, or never started (its client left first): the question is left
    /// out of the conversation, as the session leaves it out of the history it
    /// sends the model, so that asking again starts clean.
    Dropped,
}

impl TurnOutcome {
    /// As the schemas write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnOutcome::Kept => "kept",
            TurnOutcome::Dropped => "dropped",
        }
    }
}

/// Opens the engine `config.url` names, creating and migrating its schema when
/// needed. Fails with [`StorageError::Unavailable`] naming the engine (never the
/// URL) when the database cannot be reached.
pub async fn open(config: &StorageConfig) -> Result<Arc<dyn Storage>, StorageError> {
    Ok(match &config.url {
        StorageUrl::Memory => Arc::new(MemoryStorage::new()),
        StorageUrl::Sqlite => Arc::new(SqliteStorage::open(&config.sqlite_path()).await?),
        StorageUrl::Postgres(url) => {
            Arc::new(PostgresStorage::open(url.expose(), config.pool_size).await?)
        }
    })
}

/// A session as it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: Uuid,
    /// Who the session belongs to, when the client said.
    pub user_id: Option<String>,
    /// The gateway holding it (see [`Storage::claim`]).
    pub gateway: Option<String>,
}

/// A session as it is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    pub record: SessionRecord,
    pub created: Timestamp,
    /// When the last message was appended (or the session created).
    pub updated: Timestamp,
    /// The latest messages asked for, oldest first.
    pub messages: Vec<SavedMessage>,
}

/// A message as it is appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The turn it belongs to: a question and its answer share one.
    pub turn_id: Uuid,
    pub role: StoredRole,
    pub content: String,
    /// Names this write. A database connection that drops during a commit leaves
    /// the batch's outcome unknown, and the writer stores the batch again; the
    /// engines keep one message per id, so a batch that had gone through is not
    /// stored twice. Time-ordered (UUIDv7), so the engines' index of these ids
    /// grows at its end.
    pub write_id: Uuid,
}

impl StoredMessage {
    pub fn new(turn_id: Uuid, role: StoredRole, content: impl Into<String>) -> Self {
        Self {
            turn_id,
            role,
            content: content.into(),
            write_id: Uuid::now_v7(),
        }
    }

    pub fn user(turn_id: Uuid, content: impl Into<String>) -> Self {
        Self::new(turn_id, StoredRole::User, content)
    }

    pub fn assistant(turn_id: Uuid, content: impl Into<String>) -> Self {
        Self::new(turn_id, StoredRole::Assistant, content)
    }
}

/// A message as it is loaded: what was appended, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedMessage {
    pub turn_id: Uuid,
    pub role: StoredRole,
    pub content: String,
    pub created: Timestamp,
    /// A question whose turn has neither an outcome nor an answer yet (see
    /// [`TurnOutcome`]); never an answer.
    pub pending: bool,
}

impl SavedMessage {
    /// The message as a model reads it in a conversation's history.
    pub fn to_chat(&self) -> ChatMessage {
        ChatMessage {
            role: self.role.into(),
            content: self.content.clone(),
        }
    }
}

/// Who said a stored message. System prompts come from the configuration and are
/// never stored, so there are two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoredRole {
    User,
    Assistant,
}

impl StoredRole {
    /// As the schemas write it.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredRole::User => "user",
            StoredRole::Assistant => "assistant",
        }
    }

    fn parse(text: &str) -> Result<Self, StorageError> {
        match text {
            "user" => Ok(StoredRole::User),
            "assistant" => Ok(StoredRole::Assistant),
            other => Err(StorageError::Corrupt(format!(
                "a stored message has the role {other:?}"
            ))),
        }
    }
}

impl From<StoredRole> for Role {
    fn from(role: StoredRole) -> Role {
        match role {
            StoredRole::User => Role::User,
            StoredRole::Assistant => Role::Assistant,
        }
    }
}

impl TryFrom<Role> for StoredRole {
    type Error = Role;

    /// `Err(Role::System)`: system messages are not stored.
    fn try_from(role: Role) -> Result<Self, Role> {
        match role {
            Role::User => Ok(StoredRole::User),
            Role::Assistant => Ok(StoredRole::Assistant),
            Role::System => Err(role),
        }
    }
}

/// A moment, in milliseconds since the Unix epoch (UTC); what every engine stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// `age` before this moment (the epoch's start at the earliest).
    pub fn minus(self, age: Duration) -> Self {
        let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(age).max(0))
    }
}

/// `usize` as the `i64` a `LIMIT` takes; larger than any table anyway.
fn sql_limit(latest: usize) -> i64 {
    i64::try_from(latest).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_count_milliseconds_since_the_epoch() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let now = Timestamp::now().as_millis();
        assert!((before..before + 1_000).contains(&now), "{before} {now}");
        let moment = Timestamp::from_millis(10_000);
        assert_eq!(moment.minus(Duration::from_secs(3)).as_millis(), 7_000);
        assert_eq!(moment.minus(Duration::from_secs(30)).as_millis(), 0);
        assert_eq!(moment.minus(Duration::MAX).as_millis(), 0);
    }

    #[test]
    fn stored_roles_are_user_and_assistant() {
        for role in [StoredRole::User, StoredRole::Assistant] {
            assert_eq!(StoredRole::parse(role.as_str()).unwrap(), role);
            assert_eq!(StoredRole::try_from(Role::from(role)), Ok(role));
        }
        assert_eq!(StoredRole::try_from(Role::System), Err(Role::System));
        assert!(matches!(
            StoredRole::parse("system"),
            Err(StorageError::Corrupt(_))
        ));
        let message = SavedMessage {
            turn_id: Uuid::new_v4(),
            role: StoredRole::Assistant,
            content: "hi".into(),
            created: Timestamp::now(),
            pending: false,
        };
        assert_eq!(message.to_chat(), ChatMessage::assistant("hi"));
    }

    #[tokio::test]
    async fn open_picks_the_engine_from_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StorageConfig {
            data_dir: dir.path().join("data"),
            url: StorageUrl::Memory,
            ..StorageConfig::default()
        };
        assert_eq!(open(&config).await.unwrap().kind(), "memory");
        assert!(!config.data_dir.exists(), "memory writes nothing");
        config.url = StorageUrl::Sqlite;
        let storage = open(&config).await.unwrap();
        assert_eq!(storage.kind(), "sqlite");
        assert!(config.sqlite_path().is_file());
    }
}
