//! `storage.url = ""`: SQLite in `<data_dir>/parlor.db`, for a single process.
//!
//! WAL mode, so loading a conversation never waits for a write; ids are stored as
//! hyphenated text, so the file reads plainly in the `sqlite3` shell.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

use super::grouped::{GroupedWrites, ROWS_PER_STATEMENT};
use super::{
    SavedMessage, SessionRecord, Storage, StorageError, StoredMessage, StoredRole, StoredSession,
    Timestamp, TurnOutcome, Write, sql_limit,
};

static MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite has one writer at a time; a few connections let reads run beside it.
const POOL_SIZE: u32 = 4;
/// How long a write waits for another to finish before failing as `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Conversations in a SQLite file.
pub struct SqliteStorage {
    pool: SqlitePool,
    /// One connection for the writer's batches ([`Storage::apply`]): its page
    /// cache stays warm from one batch to the next, where batches dealt over the
    /// pool's connections read back from the file the pages another one changed.
    batches: SqlitePool,
}

type SessionRow = (String, Option<String>, Option<String>, i64, i64);
type MessageRow = (String, String, String, i64, bool);

impl SqliteStorage {
    /// Opens (creating the folder and the file if missing) the database at `path`
    /// and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StorageError> {
        Self::connect(path)
            .await
            .map_err(|error| error.in_engine(&format!("SQLite at {}", path.display())))
    }

    async fn connect(path: &Path) -> Result<Self, StorageError> {
        if let Some(folder) = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).map_err(|error| {
                StorageError::Unavailable(format!("cannot create its folder: {error}"))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses at most the last commits on a power cut, never
            // the file's consistency.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // A statement of many rows keeps a journal of its own to undo it alone;
            // in a file, that was an open, writes and a close per statement.
            .pragma("temp_store", "memory")
            .busy_timeout(BUSY_TIMEOUT);
        // A file does not go stale as a network connection does: no test query
        // before each use.
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(BUSY_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        MIGRATIONS.run(&pool).await?;
        let batches = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(BUSY_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Self { pool, batches })
    }

    async fn load(
        &self,
        session_id: Uuid,
        latest: usize,
    ) -> Result<Option<StoredSession>, StorageError> {
        let id = session_id.hyphenated().to_string();
        let session: Option<SessionRow> = sqlx::query_as(
            "SELECT id, user_id, gateway, created_ms, updated_ms FROM sessions WHERE id = ?",
        )
        .bind(&id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((_, user_id, gateway, created, updated)) = session else {
            return Ok(None);
        };
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT turn_id, role, content, created_ms, \
             role = 'user' AND outcome IS NULL AND NOT EXISTS (SELECT 1 FROM messages AS a \
             WHERE a.session_id = m.session_id AND a.turn_id = m.turn_id AND a.role = 'assistant') \
             FROM messages AS m WHERE session_id = ?1 AND outcome IS NOT 'dropped' \
             ORDER BY seq DESC LIMIT ?2",
        )
        .bind(&id)
        .bind(sql_limit(latest))
        .fetch_all(&self.pool)
        .await?;
        let mut messages = rows
            .into_iter()
            .map(|(turn_id, role, content, created, pending)| {
                Ok(SavedMessage {
                    turn_id: parse_id(&turn_id)?,
                    role: StoredRole::parse(&role)?,
                    content,
                    created: Timestamp::from_millis(created),
                    pending,
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        messages.reverse();
        Ok(Some(StoredSession {
            record: SessionRecord {
                id: session_id,
                user_id,
                gateway,
            },
            created: Timestamp::from_millis(created),
            updated: Timestamp::from_millis(updated),
            messages,
        }))
    }

    /// The writes in one transaction, which takes the write lock at once: one
    /// commit (one WAL append) for the whole batch, in a few statements
    /// ([`GroupedWrites`]).
    async fn apply_all(&self, writes: &[Write]) -> Result<(), StorageError> {
        let now = Timestamp::now().as_millis();
        let writes = GroupedWrites::of(writes);
        let mut transaction = self.batches.begin_with("BEGIN IMMEDIATE").await?;
        for sessions in writes.sessions.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO sessions (id, user_id, gateway, created_ms, updated_ms) ",
            );
            insert.push_values(sessions, |mut row, session| {
                row.push_bind(session.id.hyphenated().to_string())
                    .push_bind(&session.user_id)
                    .push_bind(&session.gateway)
                    .push_bind(now)
                    .push_bind(now);
            });
            insert.push(" ON CONFLICT (id) DO NOTHING");
            // Statements of every row count would crowd out the cached ones.
            insert
                .build()
                .persistent(false)
                .execute(&mut *transaction)
                .await?;
        }
        for sessions in writes.sessions_written_to.chunks(ROWS_PER_STATEMENT) {
            let mut bump =
                QueryBuilder::<Sqlite>::new("UPDATE sessions SET updated_ms = MAX(updated_ms, ");
            bump.push_bind(now).push(") WHERE id IN (");
            let mut ids = bump.separated(", ");
            for id in sessions {
                ids.push_bind(id.hyphenated().to_string());
            }
            bump.push(")");
            let bumped = bump
                .build()
                .persistent(false)
                .execute(&mut *transaction)
                .await?;
            if bumped.rows_affected() < sessions.len() as u64 {
                return Err(StorageError::NotFound);
            }
        }
        for messages in writes.messages.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages (session_id, turn_id, role, content, created_ms, write_id) ",
            );
            insert.push_values(messages, |mut row, (session_id, message)| {
                row.push_bind(session_id.hyphenated().to_string())
                    .push_bind(message.turn_id.hyphenated().to_string())
                    .push_bind(message.role.as_str())
                    .push_bind(&message.content)
                    .push_bind(now)
                    .push_bind(message.write_id.hyphenated().to_string());
            });
            // A message this batch stored before, when the batch is stored again.
            insert.push(" ON CONFLICT (write_id) DO NOTHING");
            insert
                .build()
                .persistent(false)
                .execute(&mut *transaction)
                .await?;
        }
        for (session_id, turn_id, outcome) in writes.outcomes {
            sqlx::query(
                "UPDATE messages SET outcome = ? \
                 WHERE session_id = ? AND turn_id = ? AND role = 'user'",
            )
            .bind(outcome.as_str())
            .bind(session_id.hyphenated().to_string())
            .bind(turn_id.hyphenated().to_string())
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// See [`Storage::adopt_question`]: three statements in one transaction.
    async fn adopt(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        text: String,
    ) -> Result<(), StorageError> {
        let now = Timestamp::now().as_millis();
        let (id, turn) = (
            session_id.hyphenated().to_string(),
            turn_id.hyphenated().to_string(),
        );
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, gateway, created_ms, updated_ms) \
             VALUES (?1, NULL, NULL, ?2, ?2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&id)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO messages (session_id, turn_id, role, content, created_ms) \
             SELECT ?1, ?2, 'user', ?3, ?4 WHERE NOT EXISTS \
             (SELECT 1 FROM messages WHERE session_id = ?1 AND turn_id = ?2)",
        )
        .bind(&id)
        .bind(&turn)
        .bind(&text)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() > 0 {
            sqlx::query("UPDATE sessions SET updated_ms = MAX(updated_ms, ?) WHERE id = ?")
                .bind(now)
                .bind(&id)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn claim_for(
        &self,
        session_id: Uuid,
        gateway: String,
    ) -> Result<Option<String>, StorageError> {
        let id = session_id.hyphenated().to_string();
        // IMMEDIATE takes the write lock before the read, so no other claim can come
        // between reading the holder and replacing it.
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let holder: Option<(Option<String>,)> =
            sqlx::query_as("SELECT gateway FROM sessions WHERE id = ?")
                .bind(&id)
                .fetch_optional(&mut *transaction)
                .await?;
        let Some((previous,)) = holder else {
            return Err(StorageError::NotFound);
        };
        if previous.as_deref() == Some(gateway.as_str()) {
            return Ok(None);
        }
        sqlx::query("UPDATE sessions SET gateway = ? WHERE id = ?")
            .bind(&gateway)
            .bind(&id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(previous)
    }
}

fn parse_id(text: &str) -> Result<Uuid, StorageError> {
    Uuid::from_str(text).map_err(|_| StorageError::Corrupt(format!("{text:?} is not a UUID")))
}

impl Storage for SqliteStorage {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn create_session(&self, session: SessionRecord) -> BoxFuture<'_, Result<(), StorageError>> {
        async move { self.apply_all(&[Write::Session(session)]).await }.boxed()
    }

    fn append_message(
        &self,
        session_id: Uuid,
        message: StoredMessage,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        async move { self.apply_all(&[Write::Message(session_id, message)]).await }.boxed()
    }

    fn adopt_question(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        text: String,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        self.adopt(session_id, turn_id, text).boxed()
    }

    fn end_turn(
        &self,
        session_id: Uuid,
        turn_id: Uuid,
        outcome: TurnOutcome,
    ) -> BoxFuture<'_, Result<(), StorageError>> {
        let write = Write::TurnEnd {
            session_id,
            turn_id,
            outcome,
        };
        async move { self.apply_all(&[write]).await }.boxed()
    }

    fn load_session(
        &self,
        session_id: Uuid,
        latest: usize,
    ) -> BoxFuture<'_, Result<Option<StoredSession>, StorageError>> {
        self.load(session_id, latest).boxed()
    }

    fn claim(
        &self,
        session_id: Uuid,
        gateway: String,
    ) -> BoxFuture<'_, Result<Option<String>, StorageError>> {
        self.claim_for(session_id, gateway).boxed()
    }

    fn purge_older_than(&self, cutoff: Timestamp) -> BoxFuture<'_, Result<u64, StorageError>> {
        async move {
            // Messages go with their session (ON DELETE CASCADE).
            let purged = sqlx::query("DELETE FROM sessions WHERE updated_ms < ?")
                .bind(cutoff.as_millis())
                .execute(&self.pool)
                .await?;
            Ok(purged.rows_affected())
        }
        .boxed()
    }

    fn apply<'a>(&'a self, writes: &'a [Write]) -> BoxFuture<'a, Result<(), StorageError>> {
        self.apply_all(writes).boxed()
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
